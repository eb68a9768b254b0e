"""A surface for a bare point cloud, so that it is decoded on that surface like a mesh input.

Left alone on a point cloud the model places free vertices and ends early (a 4,096-point torus
came back as 15 faces near an eighth of it); decoding on the input surface covers it
(backend.decoding.constraint). PyMeshLab's screened Poisson reconstruction gives that surface:
octree depth 8, with the cloud's normals or, when it has none, the closer to the points of two
surfaces (normals oriented by MeshLab, and outward from the centroid), then decimated to at most
`MAX_TRIANGLES`. Measured against ball pivoting, a fast winding number (point-cloud-utils) and a
voxel fill in docs/experiments/point_clouds.md. PyMeshLab is a large optional dependency
(`pip install 'specmesh[scans]'`); without it, or when reconstruction fails, `reconstruct` says
why and the caller decodes with the model alone.

MeshLab runs in a child process (`python -m backend.mesh.reconstruct`, arrays as .npz through
pipes): used from the server's worker thread it corrupts the heap (glibc aborts the backend at
exit), and a crash or a hang there must cost one surface, never the backend.
"""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import fast_simplification
import numpy as np

from backend.mesh.normalize import Normalization

METHOD = "screened Poisson"
POISSON_DEPTH = 8       # octree depth: about 20-30k triangles over the normalized box
NORMAL_NEIGHBOURS = 10  # MeshLab's default for fitting and orienting point normals
MAX_TRIANGLES = 20_000  # the surface the constraint indexes (and samples) stays this small
MIN_POINTS = 16
# The cloud's second-largest principal extent over its largest: below this it is a line.
MIN_SPREAD = 1e-3
TIMEOUT_S = 120.0  # a child still reconstructing after this is stopped (4,096 points take 1-5 s)
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # where the child imports `backend` from


@dataclass
class Reconstruction:
    vertices: np.ndarray | None  # (n, 3) float64 in the points' frame, or None when it failed
    faces: np.ndarray | None     # (m, 3) int64
    reason: str                  # what was made, or why nothing was
    seconds: float

    @property
    def mesh(self) -> tuple[np.ndarray, np.ndarray] | None:
        return None if self.vertices is None else (self.vertices, self.faces)

    @property
    def stats(self) -> dict[str, object]:
        return {"surface": self.reason, "surface_seconds": round(self.seconds, 3)}


def reconstruct(points: np.ndarray, normals: np.ndarray | None = None) -> Reconstruction:
    """A closed surface through `points` (unit `normals` used when given, else estimated), or
    vertices None and the reason, never an exception for a bad cloud."""
    started = time.perf_counter()
    surface, reason = _surface(np.asarray(points, np.float64), normals)
    seconds = time.perf_counter() - started
    if surface is None:
        return Reconstruction(None, None, f"model alone: {reason}", seconds)
    return Reconstruction(*surface, f"reconstructed ({METHOD}, {reason}, {len(surface[1])} triangles)", seconds)


def _surface(points: np.ndarray, normals: np.ndarray | None
             ) -> tuple[tuple[np.ndarray, np.ndarray] | None, str]:
    """(surface, which normals made it) or (None, why there is none)."""
    problem = _degenerate(points)
    if problem:
        return None, problem
    if importlib.util.find_spec("pymeshlab") is None:
        return None, "surface reconstruction needs PyMeshLab (pip install 'specmesh[scans]')"
    # Fitted in the normalized box, so that depth and neighbourhoods mean the same at any scale.
    normalization = Normalization.fit(points)
    arrays = {"points": normalization.apply(points)}
    if normals is not None:
        arrays["normals"] = np.asarray(normals, np.float64)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        child = subprocess.run([sys.executable, "-m", "backend.mesh.reconstruct"], input=_pack(arrays),
                               capture_output=True, timeout=TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        return None, f"screened Poisson took longer than {TIMEOUT_S:.0f} s"
    if child.returncode != 0:
        last = (child.stderr.decode(errors="replace").strip().splitlines() or [f"exit status {child.returncode}"])[-1]
        return None, f"screened Poisson failed ({last[:160]})"
    result = np.load(io.BytesIO(child.stdout), allow_pickle=False)
    vertices, faces = result["vertices"], result["faces"]
    if len(faces) == 0 or not np.isfinite(vertices).all():
        return None, "screened Poisson gave no surface"
    vertices, faces = _bounded(np.asarray(vertices, np.float64), np.asarray(faces, np.int64))
    return (normalization.invert(vertices), faces), f"{result['normals']} normals"


def _poisson(points: np.ndarray, normals: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """MeshLab's screened Poisson surface of normalized points (run in the child process)."""
    import pymeshlab

    meshset = pymeshlab.MeshSet()
    if normals is None:
        meshset.add_mesh(pymeshlab.Mesh(vertex_matrix=points))
        meshset.compute_normal_for_point_clouds(k=NORMAL_NEIGHBOURS)
    else:
        meshset.add_mesh(pymeshlab.Mesh(vertex_matrix=points, v_normals_matrix=normals))
    # One thread: MeshLab's default of 16 thrashes a CPU shared with decoding (5x slower on 2 cores).
    meshset.generate_surface_reconstruction_screened_poisson(depth=POISSON_DEPTH, preclean=True, threads=1)
    result = meshset.current_mesh()
    return result.vertex_matrix(), result.face_matrix()


def _closest_poisson(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """Without normals, two orientations each fail on some shapes: MeshLab's propagated normals
    flip across thin boards (a shelf: CD / noise 5.3), outward-from-centroid ones turn a ring's
    inner side inside out (a torus: 2.0). Both surfaces are made; the one closer to the points wins."""
    from backend.inputs import estimate_normals
    from backend.mesh.metrics import cloud_chamfer

    made = [(*_poisson(points, None), "MeshLab's"), (*_poisson(points, estimate_normals(points)), "centroid")]
    return min(made, key=lambda m: cloud_chamfer(points, m[0], m[1]) if len(m[1]) else np.inf)


def _pack(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _degenerate(points: np.ndarray) -> str:
    """Why no surface can be fitted through these points ("" if one can)."""
    if points.ndim != 2 or points.shape[1] != 3 or len(points) < MIN_POINTS:
        return f"too few points for a surface ({len(points)}; at least {MIN_POINTS})"
    if not np.isfinite(points).all():
        return "the points contain NaN or infinite values"
    spread = np.sqrt(np.maximum(np.linalg.eigvalsh(np.cov(points.T)), 0.0))  # ascending
    if spread[2] <= 0 or spread[1] < MIN_SPREAD * spread[2]:
        return "the points lie on a line; there is no surface to follow"
    return ""


def _bounded(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(faces) <= MAX_TRIANGLES:
        return vertices, faces
    vertices, faces = fast_simplification.simplify(vertices.astype(np.float32), faces, target_count=MAX_TRIANGLES)
    return np.asarray(vertices, np.float64), np.asarray(faces, np.int64)


def _child() -> None:
    """stdin: .npz of `points` (and `normals`); stdout: .npz of `vertices` and `faces`."""
    arrays = np.load(io.BytesIO(sys.stdin.buffer.read()), allow_pickle=False)
    if "normals" in arrays.files:
        vertices, faces, orientation = *_poisson(arrays["points"], arrays["normals"]), "given"
    else:
        vertices, faces, orientation = _closest_poisson(arrays["points"])
    sys.stdout.buffer.write(_pack({"vertices": vertices, "faces": faces, "normals": np.array(orientation)}))


if __name__ == "__main__":
    _child()
