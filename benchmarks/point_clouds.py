"""Bare point clouds (issue 20, item 5): surface reconstruction candidates compared by what they
give the decoder.

    python benchmarks/point_clouds.py [--procedural 8] [--methods none,poisson,...] [--out out/point_clouds]
    python benchmarks/point_clouds.py --cli [--cli-args=--free-vertices]   # the shipped path

Inputs (never trained on): items 0.. of the procedural test split and five trimesh primitives
(torus, capsule, icosphere, box, cylinder). Each is sampled into 4,096 points WITHOUT normals
(seed 0) and saved as OUT/inputs/NAME.npy. Per input and method:
  reconstruction seconds and the reconstruction's CD / noise against the true mesh, then the
  surface decoded like a mesh input (`generate(..., mesh=surface)`, default options, one thread),
  cleaned as `specmesh generate` cleans it, and measured with backend.evaluation.measure (CD /
  noise against the true mesh, faces, watertight) plus `true_coverage`: the share of 4,096 samples
  of the true surface within two grid steps (4 / 128 of the normalized box) of the output.
Method `none` is the model alone (today's path: free vertices). `--cli` instead runs
`specmesh generate IN.npy -o OUT.obj --threads 1 --stats-json F` per input and measures its file.
Optional libraries are imported only by the methods that use them.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import trimesh
from scipy.spatial import cKDTree

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backend.evaluation import Case, input_noise_floor, measure, median, procedural_cases  # noqa: E402
from backend.mesh.normalize import Normalization  # noqa: E402
from backend.mesh.sample import sample_surface  # noqa: E402

POINTS = 4096
COVERAGE_STEPS = 2  # grid steps (2 / 128 each, normalized frame) counted as "covered"
Reconstruction = tuple[np.ndarray, np.ndarray] | None


def primitives() -> list[Case]:
    return [Case("torus", trimesh.creation.torus(1.0, 0.35)), Case("capsule", trimesh.creation.capsule(1.0, 0.5)),
            Case("icosphere", trimesh.creation.icosphere(3)), Case("box", trimesh.creation.box((1.0, 0.6, 0.4))),
            Case("cylinder", trimesh.creation.cylinder(0.5, 1.5))]


def cloud_of(mesh: trimesh.Trimesh) -> np.ndarray:
    points, _ = sample_surface(np.asarray(mesh.vertices), np.asarray(mesh.faces), POINTS, 0)
    return np.asarray(points, np.float32)


# -- candidate reconstructions: points (N, 3), no normals -> (vertices, faces) or None -----------
def poisson_meshlab_normals(points: np.ndarray) -> Reconstruction:
    """The shipped reconstruction (MeshLab's own oriented normals)."""
    from backend.mesh.reconstruct import reconstruct

    return reconstruct(points).mesh


def poisson_centroid_normals(points: np.ndarray) -> Reconstruction:
    """The same with backend.inputs' outward-from-centroid normals."""
    from backend.inputs import estimate_normals
    from backend.mesh.reconstruct import reconstruct

    return reconstruct(points, estimate_normals(points)).mesh


def ball_pivoting(points: np.ndarray) -> Reconstruction:
    import pymeshlab

    ms = pymeshlab.MeshSet()
    ms.add_mesh(pymeshlab.Mesh(vertex_matrix=points.astype(np.float64)))
    ms.compute_normal_for_point_clouds(k=10)
    ms.generate_surface_reconstruction_ball_pivoting()
    m = ms.current_mesh()
    return m.vertex_matrix(), m.face_matrix()


def _grid(points: np.ndarray, cells: int) -> tuple[np.ndarray, float, np.ndarray]:
    low, high = points.min(0), points.max(0)
    pitch = float((high - low).max()) / (cells - 4)
    origin = low - 2 * pitch
    shape = np.ceil((high - origin) / pitch).astype(int) + 3
    return origin, pitch, shape


def winding_pcu(points: np.ndarray, cells: int = 64) -> Reconstruction:
    """point-cloud-utils' fast winding number of the points (normals from backend.inputs) on a grid, cut at 1/2 by
    scikit-image's marching cubes."""
    import point_cloud_utils as pcu
    from skimage.measure import marching_cubes

    from backend.inputs import estimate_normals

    points = points.astype(np.float64)
    normals = estimate_normals(points)
    spacing = cKDTree(points).query(points, k=9)[0][:, 1:].mean(1)
    areas = np.pi * spacing ** 2 / 2
    origin, pitch, shape = _grid(points, cells)
    axes = [origin[i] + pitch * np.arange(shape[i]) for i in range(3)]
    query = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    wn = pcu.point_cloud_fast_winding_number(points, normals, areas, query).reshape(shape)
    if not wn.min() < 0.5 < wn.max():
        return None
    verts, faces, _, _ = marching_cubes(wn, 0.5, spacing=(pitch,) * 3)
    return verts + origin, faces[:, ::-1]


def voxel_fill(points: np.ndarray, cells: int = 48) -> Reconstruction:
    """Orientation-free: the voxels holding points, closed by one dilation, filled
    (scipy.ndimage), eroded back, cut by scikit-image's marching cubes."""
    from scipy import ndimage
    from skimage.measure import marching_cubes

    origin, pitch, shape = _grid(points.astype(np.float64), cells)
    occupied = np.zeros(shape, bool)
    occupied[tuple(np.floor((points - origin) / pitch).astype(int).T)] = True
    shell = ndimage.binary_dilation(occupied)
    solid = ndimage.binary_erosion(ndimage.binary_fill_holes(shell))
    if not solid.any():
        return None
    verts, faces, _, _ = marching_cubes(np.pad(solid, 1).astype(np.float32), 0.5, spacing=(pitch,) * 3)
    return verts + origin - pitch * 0.5, faces[:, ::-1]


METHODS: dict[str, Callable[[np.ndarray], Reconstruction] | None] = {
    "none": None, "poisson": poisson_meshlab_normals, "poisson_centroid": poisson_centroid_normals,
    "ball_pivoting": ball_pivoting, "winding": winding_pcu, "voxel": voxel_fill,
}


# -- measuring --------------------------------------------------------------------------------
def true_coverage(reference: trimesh.Trimesh, output: trimesh.Trimesh) -> float:
    normalization = Normalization.fit(np.asarray(reference.vertices))
    truth = sample_surface(normalization.apply(np.asarray(reference.vertices)), reference.faces, POINTS, 7)[0]
    dense = sample_surface(normalization.apply(np.asarray(output.vertices)), output.faces, 50_000, 8)[0]
    return float((cKDTree(dense).query(truth)[0] <= COVERAGE_STEPS * 2 / 128).mean())


def finished_output(result, points: np.ndarray) -> trimesh.Trimesh:
    """The mesh `specmesh generate` writes (cleaned, oriented), without writing it."""
    from backend.commands.generate import quantization_step
    from backend.mesh.cleanup import clean_mesh

    step = quantization_step(points)
    cleaned = clean_mesh(result.vertices, result.faces, weld_distance=0.5 * step, plane_distance=0.25 * step,
                         points=points, normals=None)
    return trimesh.Trimesh(cleaned.vertices, cleaned.faces, process=False)


def run_method(generator, case: Case, points: np.ndarray, method: str, floor: float) -> dict:
    from backend.generation import generate
    from backend.options import GenerateOptions

    row: dict = {"name": case.name, "method": method}
    surface = None
    if METHODS[method] is not None:
        started = time.perf_counter()
        surface = METHODS[method](points)
        row["reconstruction_seconds"] = round(time.perf_counter() - started, 3)
        if surface is not None and len(surface[1]):
            recon = trimesh.Trimesh(*surface, process=False)
            row["reconstruction_triangles"] = len(recon.faces)
            row["reconstruction_cd_noise"] = measure(case.mesh, recon, floor, 0)["noise_floor_ratio"]
        else:
            surface = None
    options = GenerateOptions(snap=surface is not None)
    result = generate(generator, points, None, options, mesh=surface)
    output = finished_output(result, points) if len(result.faces) else trimesh.Trimesh()
    measured = measure(case.mesh, output, floor, 0)
    row.update(faces=measured["faces"], cd_noise=measured["noise_floor_ratio"], watertight=measured.get("watertight"),
               coverage=result.stats.get("coverage"), seconds=round(result.stats["seconds"], 2),
               true_coverage=true_coverage(case.mesh, output) if len(output.faces) else 0.0)
    return row


def run_cli(case: Case, cloud: Path, out: Path, floor: float, extra: list[str]) -> dict:
    mesh_path, stats_path = out / f"{case.name}.obj", out / f"{case.name}.json"
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "backend", "generate", str(cloud), "-o", str(mesh_path),
                           "--threads", "1", "--stats-json", str(stats_path), *extra],
                          cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - started
    stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
    output = trimesh.load(mesh_path, process=False) if proc.returncode == 0 else trimesh.Trimesh()
    measured = measure(case.mesh, output, floor, 0)
    return {"name": case.name, "method": "cli " + " ".join(extra), "faces": measured["faces"],
            "cd_noise": measured["noise_floor_ratio"], "watertight": measured.get("watertight"),
            "coverage": stats.get("coverage"), "surface": stats.get("surface"), "wall_seconds": round(wall, 2),
            "true_coverage": true_coverage(case.mesh, output) if len(output.faces) else 0.0}


def summarize(rows: list[dict]) -> dict:
    keys = ("reconstruction_seconds", "reconstruction_cd_noise", "cd_noise", "faces", "true_coverage", "coverage",
            "seconds", "wall_seconds")
    return {key: median([r.get(key) for r in rows]) for key in keys}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--procedural", type=int, default=8)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--cli", action="store_true", help="run the shipped `specmesh generate` per input instead")
    parser.add_argument("--cli-args", default="", help="extra generate arguments with --cli")
    parser.add_argument("--out", default=str(REPO / "out" / "point_clouds"))
    parser.add_argument("--name", default="results")
    args = parser.parse_args()
    out = Path(args.out)
    (out / "inputs").mkdir(parents=True, exist_ok=True)
    cases = procedural_cases(args.procedural) + primitives()
    rows: list[dict] = []
    generator = None
    if not args.cli:
        import torch

        from backend.decoding.pipeline import Generator

        torch.set_num_threads(1)
        generator = Generator.load()
    for case in cases:
        cloud = out / "inputs" / f"{case.name}.npy"
        np.save(cloud, cloud_of(case.mesh))
        points = np.load(cloud).astype(np.float64)
        floor = input_noise_floor(case.mesh, 0)
        if args.cli:
            (out / "cli").mkdir(exist_ok=True)
            rows.append(run_cli(case, cloud, out / "cli", floor, shlex.split(args.cli_args)))
            print(json.dumps(rows[-1]), flush=True)
            continue
        for method in args.methods.split(","):
            rows.append(run_method(generator, case, points, method, floor))
            print(json.dumps(rows[-1]), flush=True)
    methods = sorted({r["method"] for r in rows}, key=[r["method"] for r in rows].index)
    summary = {m: summarize([r for r in rows if r["method"] == m]) for m in methods}
    (out / f"{args.name}.json").write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))
    for method, values in summary.items():
        print(method, json.dumps({k: round(v, 3) if v is not None else None for k, v in values.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
