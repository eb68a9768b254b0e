"""What an artist gets from `specmesh generate` on held-out inputs: orientation, pieces, holes and
quads, raw (as the model wrote it) and after the clean-up `generate` applies.

    python benchmarks/artist_output.py [--count 20] [--model models/default] [--json out.json]

For each of the first COUNT items of the procedural test split (never trained on): generate with
the Quick start's settings, then report for the raw and the cleaned mesh `mesh_report`'s figures
(pieces, boundary edges, flipped edges, closed patches, inward patches) and, with quads joined,
the share of the surface facing the way the source does ("outward_area", mean over outputs:
raw, cleaned without and with the input's normals), the share of faces that are quads (and, for comparison, of the input's own triangles joined the
same way). "Box-like" outputs are those whose faces are at least 80 %
(by area) within 10 degrees of an axis direction. Also counts what welding neighbouring grid
points (one step apart) would do, which `generate` does not do."""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from backend.commands import set_decoding_threads
from backend.commands.generate import quantization_step
from backend.decoding.pipeline import GenerateOptions, Generator
from backend.evaluation import procedural_cases
from backend.generation import generate
from backend.inputs import from_mesh
from backend.mesh.cleanup import clean_mesh, mesh_report, weld
from backend.mesh.quads import join_triangles


def axis_aligned_share(vertices: np.ndarray, faces: np.ndarray, degrees: float = 10.0) -> float:
    tri = vertices[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = np.linalg.norm(normal, axis=1)
    unit = normal / np.where(area > 0, area, 1.0)[:, None]
    aligned = np.abs(unit).max(axis=1) >= np.cos(np.radians(degrees))
    return float(area[aligned].sum() / area.sum()) if area.sum() > 0 else 0.0


def outward_share(vertices: np.ndarray, faces: np.ndarray, source) -> float:
    """Share of the surface (by area) whose faces point the way the nearest face of the (outward,
    watertight) source points."""
    import trimesh

    tri = vertices[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = np.linalg.norm(normal, axis=1)
    reference = trimesh.Trimesh(source.vertices, source.faces, process=True)
    _, _, nearest = trimesh.proximity.closest_point(reference, tri.mean(axis=1))
    agree = np.einsum("ij,ij->i", normal, reference.face_normals[nearest]) > 0
    return float(area[agree].sum() / area.sum()) if area.sum() > 0 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--model", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the rows and the summary here")
    args = parser.parse_args()
    generator = Generator.load(args.model, device="cpu")
    threads = set_decoding_threads(None, generator)
    rows = []
    for case in procedural_cases(args.count):
        cloud = from_mesh(case.mesh, seed=args.seed)
        started = time.perf_counter()
        result = generate(generator, cloud.points, cloud.normals, GenerateOptions(seed=args.seed),
                          mesh=cloud.source_mesh)  # as `specmesh generate` does with a mesh input
        seconds = time.perf_counter() - started
        if len(result.faces) == 0:
            rows.append({"case": case.name, "faces": 0})
            continue
        step = quantization_step(cloud.points)
        cleaned = clean_mesh(result.vertices, result.faces, weld_distance=0.5 * step, plane_distance=0.25 * step,
                             points=cloud.points, normals=cloud.normals)
        centre_only = clean_mesh(result.vertices, result.faces, weld_distance=0.5 * step,
                                 plane_distance=0.25 * step)
        quads = join_triangles(cleaned.vertices, cleaned.faces)
        neighbours = weld(result.vertices, result.faces, 1.01 * step)
        source = clean_mesh(case.mesh.vertices, case.mesh.faces, weld_distance=1e-9)
        source_quads = join_triangles(source.vertices, source.faces)
        rows.append({
            "case": case.name, "faces": len(result.faces), "tokens_per_second": result.stats["tokens_per_second"],
            "seconds": seconds,
            "raw": mesh_report(result.vertices, result.faces),
            "clean": {k: cleaned.stats[k] for k in ("pieces", "boundary_edges", "nonmanifold_edges",
                                                    "flipped_edges", "closed_patches", "inward_patches",
                                                    "flipped_faces", "duplicate_faces", "welded_vertices",
                                                    "covered_faces")},
            "quads": len(quads.quads), "triangles": len(quads.triangles), "quad_fraction": quads.quad_fraction,
            "axis_aligned": axis_aligned_share(cleaned.vertices, cleaned.faces),
            "outward_area": outward_share(cleaned.vertices, cleaned.faces, case.mesh),
            "outward_area_raw": outward_share(result.vertices, result.faces, case.mesh),
            "outward_area_without_input_normals": outward_share(centre_only.vertices, centre_only.faces, case.mesh),
            "input": {"faces": len(case.mesh.faces), "quad_fraction": source_quads.quad_fraction,
                      "quads": len(source_quads.quads), "triangles": len(source_quads.triangles),
                      "axis_aligned": axis_aligned_share(source.vertices, source.faces)},
            "weld_one_step": {"merged": neighbours[2], "faces": len(neighbours[1]),
                              **{k: v for k, v in mesh_report(neighbours[0], neighbours[1]).items()
                                 if k in ("pieces", "boundary_edges", "nonmanifold_edges")}},
        })
        r = rows[-1]
        print(f"{case.name:28s} {r['faces']:4d} faces {r['tokens_per_second']:5.0f} tok/s  raw: flipped "
              f"{r['raw']['flipped_edges']:3d} inward {r['raw']['inward_patches']}/{r['raw']['closed_patches']}  "
              f"clean: flipped {r['clean']['flipped_edges']} inward {r['clean']['inward_patches']}/"
              f"{r['clean']['closed_patches']} pieces {r['clean']['pieces']} boundary {r['clean']['boundary_edges']}"
              f"  quads {r['quad_fraction']:.0%}  axis {r['axis_aligned']:.0%}  input quads "
              f"{r['input']['quad_fraction']:.0%}", flush=True)
    made = [r for r in rows if r["faces"]]
    box_like = [r for r in made if r["axis_aligned"] >= 0.8]

    def total(side: str, key: str) -> int:
        return int(sum(r[side][key] for r in made))

    def share(group: list[dict]) -> float | None:
        faces = sum(r["quads"] + r["triangles"] for r in group)
        return sum(r["quads"] for r in group) / faces if faces else None

    summary = {
        "inputs": len(rows), "with_faces": len(made), "threads": threads,
        "raw": {k: total("raw", k) for k in ("flipped_edges", "closed_patches", "inward_patches")},
        "clean": {k: total("clean", k) for k in ("flipped_edges", "closed_patches", "inward_patches",
                                                 "pieces", "boundary_edges", "nonmanifold_edges",
                                                 "covered_faces")},
        "raw_faces": int(sum(r["faces"] for r in made)),
        "raw_nonmanifold_edges": total("raw", "nonmanifold_edges"),
        "outward_area": float(np.mean([r["outward_area"] for r in made])),
        "outward_area_raw": float(np.mean([r["outward_area_raw"] for r in made])),
        "outward_area_without_input_normals": float(np.mean([r["outward_area_without_input_normals"]
                                                             for r in made])),
        "quad_fraction_all": share(made), "box_like_outputs": len(box_like), "quad_fraction_box_like": share(box_like),
        "median_quad_fraction_box_like": float(np.median([r["quad_fraction"] for r in box_like])) if box_like else None,
        "input_quad_fraction_box_like": share([r["input"] for r in made if r["input"]["axis_aligned"] >= 0.8]),
        "input_box_like": sum(r["input"]["axis_aligned"] >= 0.8 for r in made),
        "weld_one_step": {"merged": int(sum(r["weld_one_step"]["merged"] for r in made)),
                          "boundary_edges": int(sum(r["weld_one_step"]["boundary_edges"] for r in made)),
                          "nonmanifold_edges": int(sum(r["weld_one_step"]["nonmanifold_edges"] for r in made))},
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"summary": summary, "rows": rows}, out, indent=2)
            out.write("\n")


if __name__ == "__main__":
    main()
