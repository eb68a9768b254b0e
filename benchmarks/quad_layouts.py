"""Quad output: which candidate layout, measured (issue 19, item 2; docs/experiments/quads.md).

    python benchmarks/quad_layouts.py [--inputs out/retopo_inputs] [--faces 300] [--decode]
        [--out docs/bench/quads/layouts.json]

For every input (the retopology benchmark's held-out meshes, cached by
benchmarks/retopo_compare.py) at the triangle count `specmesh generate --quads --faces N` asks
for (2N):
  - the layouts alone: the decimation and Instant Meshes' quad remesh (pyinstantmeshes), their
    mean two-sided distance to the input (the ratio is what `choose_layout` compares with
    QUAD_SHAPE_SLACK) and the share of quads Tris to Quads makes of each (`join_triangles`);
  - with --decode, `specmesh generate --quads` with each layout forced (the shape check set to
    never / always pass), measured with retopo_compare's own metrics: quad ratio, CD / noise,
    watertight, sliver fraction.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

import retopo_compare as retopo  # noqa: E402
from backend.cli import main as specmesh  # noqa: E402
from backend.mesh import layout as layouts  # noqa: E402
from backend.mesh.normalize import Normalization  # noqa: E402
from backend.mesh.quads import join_triangles  # noqa: E402
from backend.mesh.sample import sample_surface  # noqa: E402

FORCED = {"decimation quads": 0.0, "remesh quads": float("inf")}  # QUAD_SHAPE_SLACK that forces each


def layout_row(vertices: np.ndarray, faces: np.ndarray, triangles: int) -> dict:
    vertices = Normalization.fit(vertices).apply(vertices)
    samples = sample_surface(vertices, faces, layouts.SHAPE_SAMPLES)[0]
    row: dict = {"input_triangles": len(faces)}
    started = time.perf_counter()
    decimation = layouts.decimation_layout(vertices, faces, triangles, quads=True)
    row["decimation_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    remesh = layouts.quad_layout(vertices, faces, triangles // 2)
    row["remesh_seconds"] = time.perf_counter() - started
    for name, layout in (("decimation", decimation), ("remesh", remesh)):
        row[f"{name}_triangles"] = len(layout.faces)
        row[f"{name}_distance"] = layouts._distance(layout, samples)
        row[f"{name}_quads"] = join_triangles(layout.vertices, layout.faces).quad_fraction
    row["distance_ratio"] = row["remesh_distance"] / row["decimation_distance"]
    return row


def decoded_row(path: Path, kind: str, faces: int, scratch: Path) -> dict:
    layouts.QUAD_SHAPE_SLACK = FORCED[kind]
    out, stats = scratch / f"{path.stem}_{kind.split()[0]}.obj", scratch / f"{path.stem}_{kind.split()[0]}.json"
    started = time.perf_counter()
    specmesh(["generate", str(path), "-o", str(out), "--quads", "--faces", str(faces), "--threads", "1",
              "--stats-json", str(stats)])
    seconds = time.perf_counter() - started
    vertices, polygons = retopo.read_obj(path)
    row = retopo.measure(*retopo.read_obj(out), retopo.Reference(vertices, polygons))
    keep = ("triangles", "quad_ratio", "cd_noise", "watertight", "sliver_fraction", "pieces", "input_pieces")
    return {"layout": json.loads(stats.read_text())["layout"], "seconds": seconds, **{k: row.get(k) for k in keep}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", default="out/retopo_inputs", help="folder of .obj inputs")
    parser.add_argument("--faces", type=int, default=300, help="quads asked for (triangles: twice as many)")
    parser.add_argument("--decode", action="store_true", help="also generate with each layout forced")
    parser.add_argument("--out", default="out/quads/layouts.json")
    args = parser.parse_args()
    inputs = sorted(Path(args.inputs).glob("*.obj"))
    if not inputs:
        raise SystemExit(f"no .obj inputs in {args.inputs}: run benchmarks/retopo_compare.py once to cache them")
    scratch = Path(args.out).with_suffix("")
    scratch.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in inputs:
        vertices, polygons = retopo.read_obj(path)
        row = {"input": path.stem, **layout_row(vertices, retopo.fan_triangles(polygons), 2 * args.faces)}
        if args.decode:
            row["decoded"] = {kind: decoded_row(path, kind, args.faces, scratch) for kind in FORCED}
        rows.append(row)
        print(json.dumps(row), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv), "faces": args.faces, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
