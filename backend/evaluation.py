"""Quality of generated meshes against their inputs, beside the baseline an artist would reach
for instead: quadric decimation of the input down to the same face count.

Distances follow BPT (`backend.mesh.metrics`): each mesh normalized to [-0.95, 0.95] on its own,
1024 samples, so numbers compare across inputs of any size. The noise-floor ratio divides the
Chamfer distance by that of the input against a second sampling of itself (1.0 = as close as
sampling noise allows).
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import fast_simplification
import numpy as np
import trimesh
from tqdm import tqdm

from backend.decoding.pipeline import GenerateOptions, Generator
from backend.generation import generate
from backend.inputs import from_mesh
from backend.mesh.cleanup import mesh_report
from backend.mesh.io import load_mesh
from backend.mesh.metrics import chamfer_hausdorff, noise_floor

MESH_SUFFIXES = (".obj", ".ply", ".glb", ".gltf", ".stl", ".off")
METRIC_POINTS = 1024


@dataclass
class Case:
    name: str
    mesh: trimesh.Trimesh


def cases_from_dir(directory: str | Path, limit: int | None = None) -> list[Case]:
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"inputs directory not found: {directory}")
    paths = sorted(p for p in directory.iterdir() if p.suffix.lower() in MESH_SUFFIXES)
    if not paths:
        raise ValueError(f"no mesh files ({', '.join(MESH_SUFFIXES)}) in {directory}")
    return [Case(p.name, load_mesh(p)) for p in paths[:limit]]


def procedural_cases(count: int, start: int = 0) -> list[Case]:
    """Held-out meshes: items start..start+count-1 of the data's test split (never trained on)."""
    from backend.data.registry import make_mesh, sample_family, split_seeds

    if count < 1:
        raise ValueError(f"--procedural needs a positive count, got {count}")
    cases = []
    for index, seed in enumerate(split_seeds("test", count, start), start=start):
        family = sample_family(int(seed))
        cases.append(Case(f"test{index:04d}-{family}", make_mesh(family, int(seed))))
    return cases


def is_valid(mesh: trimesh.Trimesh) -> bool:
    """Non-empty, finite, and no degenerate faces (repeated corners or zero area)."""
    faces = np.asarray(mesh.faces)
    if len(faces) == 0 or not np.isfinite(mesh.vertices).all():
        return False
    repeated = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 0] == faces[:, 2])
    return not repeated.any() and bool((mesh.area_faces > 1e-12 * mesh.scale**2).all())


def decimate(mesh: trimesh.Trimesh, faces: int) -> trimesh.Trimesh:
    """Quadric decimation to about `faces` faces (the input itself when it already has fewer)."""
    if faces >= len(mesh.faces):
        return mesh.copy()
    vertices, triangles = fast_simplification.simplify(
        np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces), target_count=max(faces, 1)
    )
    return trimesh.Trimesh(vertices, triangles, process=False)


def measure(reference: trimesh.Trimesh, candidate: trimesh.Trimesh, floor: float, seed: int) -> dict:
    valid = is_valid(candidate)
    row = {"faces": int(len(candidate.faces)), "valid": valid, "chamfer": None, "hausdorff": None,
           "noise_floor_ratio": None}
    if len(candidate.faces) == 0:
        return row
    cd, hd = chamfer_hausdorff(reference, candidate, n=METRIC_POINTS, seed=seed)
    row.update(chamfer=float(cd), hausdorff=float(hd), noise_floor_ratio=float(cd / floor) if floor > 0 else None)
    report = mesh_report(candidate.vertices, candidate.faces)
    watertight = report["boundary_edges"] == report["nonmanifold_edges"] == report["flipped_edges"] == 0
    row.update(report, watertight=watertight)
    return row


def input_noise_floor(mesh: trimesh.Trimesh, seed: int) -> float:
    """Chamfer distance of the input against an independent sampling of itself."""
    return float(noise_floor(mesh, n=METRIC_POINTS, seed=seed)[0])


def evaluate_case(generator: Generator, case: Case, options: GenerateOptions) -> dict:
    cloud = from_mesh(case.mesh, seed=options.seed)
    result = generate(generator, cloud.points, cloud.normals, options, mesh=cloud.source_mesh)
    output = result.to_trimesh()
    floor = input_noise_floor(case.mesh, options.seed)
    model = measure(case.mesh, output, floor, options.seed)
    model.update(valid=bool(model["valid"] and result.stats.get("valid", True)),
                 seconds=result.stats.get("seconds"), tokens=result.stats.get("tokens"),
                 scr=result.stats.get("scr"), stop_reason=result.stats.get("stop_reason"),
                 degenerate_dropped=result.stats.get("degenerate_dropped"),
                 filled_faces=result.stats.get("filled_faces"), input_pieces=result.stats.get("input_pieces"))
    baseline = measure(case.mesh, decimate(case.mesh, max(len(output.faces), 1)), floor, options.seed)
    return {"name": case.name, "input_faces": int(len(case.mesh.faces)), "noise_floor": floor,
            "model": model, "decimation": baseline, "winner": _winner(model, baseline)}


def _winner(model: dict, baseline: dict) -> str:
    """By Chamfer distance; an invalid or empty output always loses."""
    if not model["valid"] or model["chamfer"] is None:
        return "decimation"
    if baseline["chamfer"] is None or not baseline["valid"]:
        return "model"
    if np.isclose(model["chamfer"], baseline["chamfer"], rtol=1e-3):
        return "tie"
    return "model" if model["chamfer"] < baseline["chamfer"] else "decimation"


def evaluate(generator: Generator, cases: list[Case], options: GenerateOptions, progress: bool = True) -> dict:
    rows = [evaluate_case(generator, case, options)
            for case in tqdm(cases, desc="eval", unit="mesh", file=sys.stderr, disable=not progress)]
    return {"options": asdict(options), "model": generator.info,
            "summary": summarize(rows), "condition_gap": case_condition_gap(generator, cases), "cases": rows}


def case_condition_gap(generator: Generator, cases: list[Case]) -> dict:
    """Per token class, NLL of each input's own sequence with its own condition and with another
    input's (backend.training.condition_use): how much of the input the model reads."""
    from backend.training.condition_use import condition_gap, mesh_batches

    meshes = [(np.asarray(c.mesh.vertices), np.asarray(c.mesh.faces)) for c in cases]
    return condition_gap(generator.model, mesh_batches(meshes, generator.model), generator.device)


def summarize(rows: list[dict]) -> dict:
    def side(key: str) -> dict:
        entries = [r[key] for r in rows]
        return {
            "validity_rate": float(np.mean([e["valid"] for e in entries])) if entries else None,
            **{f"median_{m}": median([e.get(m) for e in entries if e["valid"]])
               for m in ("chamfer", "hausdorff", "noise_floor_ratio", "faces", "sliver_fraction")},
            "watertight": int(sum(bool(e.get("watertight")) for e in entries)),
        }

    winners = [r["winner"] for r in rows]
    summary = {"count": len(rows), "model": side("model"), "decimation": side("decimation"),
               "wins": winners.count("model"), "losses": winners.count("decimation"), "ties": winners.count("tie")}
    summary["model"]["median_seconds"] = median([r["model"]["seconds"] for r in rows])
    return summary


def median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None
