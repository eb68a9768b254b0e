"""Symmetry against the whole-input decode at the same --faces (issue 20, item 4).

    python benchmarks/symmetry.py [--faces 300] [--seed 0] [--out out/symmetry] [--only NAME ...]
    # inputs: the retopology benchmark's cached held-out meshes (out/retopo_inputs/*.obj, made by
    # benchmarks/retopo_compare.py), each with the axis it is symmetric about

For every input, `specmesh generate IN -o OUT.obj --faces N --threads 1` runs as a subprocess
twice, without and with `--symmetry AXIS`. Each output file is read back and measured with
retopo_compare's own metrics (CD / noise against the input, watertight: 0 boundary, 0
non-manifold, 0 misoriented edges), plus, for the symmetric run, whether the file is its own
mirror image: every vertex's reflection across the plane through the input's bounding-box centre
is a vertex (within 1e-9 of the size) and the reflected faces, wound back, are the same faces;
and how many faces cross the plane. Wall seconds are the whole subprocess (model load included).
Writes OUT/results.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.retopo_compare import Reference, fan_triangles, measure, read_obj, weld  # noqa: E402

INPUTS = {"suzanne": "x", "suzanne_subdiv": "x", "uv_sphere": "x", "cylinder_subdiv": "x", "torus_subdiv": "y",
          "cube_bevel_subdiv": "z", "pipe_solidify": "x", "test0001": "y", "test0003": "x"}


def run(source: Path, out: Path, faces: int, symmetry: str | None, seed: int) -> tuple[dict, float]:
    stats = out.with_suffix(".stats.json")
    command = [sys.executable, "-m", "backend", "generate", str(source), "-o", str(out), "--faces", str(faces),
               "--threads", "1", "--seed", str(seed), "--stats-json", str(stats)] + (["--symmetry", symmetry] if symmetry else [])
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=1200)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{source.name}: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(stats.read_text()), seconds


def mirror_check(vertices: np.ndarray, faces: np.ndarray, source: np.ndarray, axis: int) -> dict:
    """Whether (vertices, faces) is its own mirror image across the source's centre plane."""
    plane = (source[:, axis].min() + source[:, axis].max()) / 2
    reflected = vertices.copy()
    reflected[:, axis] = 2 * plane - reflected[:, axis]
    size = float(np.ptp(vertices, axis=0).max())
    distance, index = cKDTree(vertices).query(reflected)
    matched = distance <= 1e-9 * size
    canonical = lambda rows: {tuple(np.roll(f, -int(np.argmin(f)))) for f in rows.tolist()}  # noqa: E731
    same = bool(matched.all()) and canonical(faces) == canonical(index[faces[:, ::-1]])
    side = vertices[faces, axis] - plane
    crossing = int(((side.min(axis=1) < -1e-9 * size) & (side.max(axis=1) > 1e-9 * size)).sum())
    return {"mirror_exact": same, "unmatched_vertices": int((~matched).sum()), "faces_crossing_plane": crossing,
            "max_mirror_error": float(distance.max() / size)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=300)
    parser.add_argument("--out", type=Path, default=REPO / "out" / "symmetry")
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, axis in INPUTS.items():
        if args.only and name not in args.only:
            continue
        source = REPO / "out" / "retopo_inputs" / f"{name}.obj"
        src_v, src_f = read_obj(source)
        reference = Reference(src_v, src_f)
        row = {"name": name, "axis": axis}
        for label, symmetry in (("whole", None), ("mirrored", axis)):
            out = args.out / f"{name}_{label}.obj"
            stats, seconds = run(source, out, args.faces, symmetry, args.seed)
            v, f = read_obj(out)
            metrics = measure(v, f, reference)
            row[label] = {"seconds": round(seconds, 1), "decode_seconds": round(stats["seconds"], 1),
                          "faces": metrics["faces"], "cd_noise": round(metrics["cd_noise"], 3),
                          "watertight": metrics["watertight"], "boundary": metrics["boundary_edges"],
                          "nonmanifold": metrics["nonmanifold_edges"], "misoriented": metrics["misoriented_edges"],
                          "symmetry": stats.get("symmetry")}
            if symmetry:
                welded_v, welded_f, _ = weld(v, f)
                row[label].update(mirror_check(welded_v, fan_triangles(welded_f), np.asarray(src_v, np.float64),
                                               "xyz".index(axis)))
        row["cd_ratio"] = round(row["mirrored"]["cd_noise"] / row["whole"]["cd_noise"], 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    print("| input | axis | faces whole / mirrored | CD/noise whole | CD/noise mirrored | ratio | watertight "
          "whole / mirrored | mirror exact | faces crossing | seconds whole / mirrored |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        w, m = r["whole"], r["mirrored"]
        print(f"| {r['name']} | {r['axis']} | {w['faces']} / {m['faces']} | {w['cd_noise']:.2f} | {m['cd_noise']:.2f} "
              f"| {r['cd_ratio']:.2f} | {w['watertight']} / {m['watertight']} | {m['mirror_exact']} "
              f"| {m['faces_crossing_plane']} | {w['seconds']:.0f} / {m['seconds']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
