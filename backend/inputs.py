"""Reading what the user hands to `specmesh generate`: a mesh file (sampled into an oriented
point cloud) or a point cloud (.ply or .npy, with or without normals).

Everything stays in the file's own frame and scale; the pipeline normalizes internally and maps
its output back, so the generated mesh lands where the input was.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from backend.mesh.io import MAX_COORDINATE, MeshLoadError, check_input_file, load_mesh
from backend.mesh.sample import sample_surface

DEFAULT_POINTS = 4096
# A .npy cloud is memory-mapped and subsampled, so its size costs little; this bounds the scan.
MAX_CLOUD_POINTS = 100_000_000
SCAN_ROWS = 1 << 20  # rows checked at a time
# Neighbours used to fit a tangent plane when a point cloud comes without normals.
NORMAL_NEIGHBOURS = 16


@dataclass
class InputCloud:
    points: np.ndarray  # (n, 3) float32, input frame
    normals: np.ndarray  # (n, 3) float32, unit length
    mesh: trimesh.Trimesh | None  # the source mesh when IN was a mesh (eval measures against it)
    normals_estimated: bool = False

    @property
    def source_mesh(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(vertices, faces) when the input was a mesh: where vertex candidates come from."""
        if self.mesh is None:
            return None
        return np.asarray(self.mesh.vertices), np.asarray(self.mesh.faces)


def read_input(path: str | Path, count: int = DEFAULT_POINTS, seed: int = 0) -> InputCloud:
    """Mesh files are sampled (area-weighted, `count` points); point clouds are read as they are
    (subsampled to `count` when larger) and get estimated normals when they have none."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _cloud(_read_npy(path), count, seed)
    if suffix == ".ply":
        check_input_file(path)
        try:
            geometry = trimesh.load(path, process=False)
        except Exception as exc:  # trimesh raises many types for corrupt files
            raise MeshLoadError(f"{path}: cannot read PLY ({type(exc).__name__}: {exc})") from exc
        if isinstance(geometry, trimesh.PointCloud):
            return _cloud(_ply_columns(geometry), count, seed)
    return from_mesh(load_mesh(path), count, seed)


def from_mesh(mesh: trimesh.Trimesh, count: int = DEFAULT_POINTS, seed: int = 0) -> InputCloud:
    if len(mesh.faces) == 0:
        raise ValueError("the input mesh has no faces to sample points from")
    if not np.isfinite(mesh.vertices).all() or np.abs(mesh.vertices).max() > MAX_COORDINATE:
        raise ValueError(f"the input mesh has a coordinate that is not finite or beyond ±{MAX_COORDINATE:g}")
    points, normals = sample_surface(np.asarray(mesh.vertices), np.asarray(mesh.faces), count, seed)
    return InputCloud(np.asarray(points, np.float32), np.asarray(normals, np.float32), mesh)


def _read_npy(path: Path) -> np.ndarray:
    """The array, memory-mapped (nothing is read until rows are used); real numbers only."""
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r")
    except Exception as exc:  # ValueError, EOFError (empty file), OSError, UnpicklingError...
        raise ValueError(f"{path}: not a plain numeric .npy array ({type(exc).__name__}: {exc})") from None
    if array.dtype.kind == "c":
        raise ValueError(f"{path}: holds complex numbers ({array.dtype}); coordinates must be real")
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{path}: holds {array.dtype} values; coordinates must be real numbers")
    if array.ndim != 2 or array.shape[1] not in (3, 6):
        raise ValueError(f"{path}: expected an array of shape (N, 3) or (N, 6), got {array.shape}")
    if len(array) > MAX_CLOUD_POINTS:
        raise ValueError(f"{path}: {len(array)} points is more than {MAX_CLOUD_POINTS}; subsample it first")
    return array


def _ply_columns(cloud: trimesh.PointCloud) -> np.ndarray:
    """xyz, plus nx ny nz when the file has them. trimesh keeps the raw PLY vertex columns in
    metadata (a dict for ASCII files, a structured array for binary ones)."""
    points = np.asarray(cloud.vertices)
    raw = cloud.metadata.get("_ply_raw", {}).get("vertex", {}).get("data")
    names = (raw.keys() if isinstance(raw, dict) else raw.dtype.names or ()) if raw is not None else ()
    if all(n in names for n in ("nx", "ny", "nz")):
        normals = np.stack([np.asarray(raw[n], np.float64).ravel() for n in ("nx", "ny", "nz")], axis=1)
        return np.hstack([points, normals])
    return points


def _cloud(array: np.ndarray, count: int, seed: int) -> InputCloud:
    if len(array) < 3:
        raise ValueError(f"a point cloud needs at least 3 points, got {len(array)}")
    for start in range(0, len(array), SCAN_ROWS):  # in pieces: a memory-mapped array stays on disk
        rows = np.asarray(array[start:start + SCAN_ROWS], np.float64)
        if not np.isfinite(rows).all():
            raise ValueError("the point cloud contains NaN or infinite values")
        if np.abs(rows).max() > MAX_COORDINATE:
            raise ValueError(f"the point cloud has a coordinate beyond ±{MAX_COORDINATE:g}")
    if len(array) > count:
        keep = np.random.default_rng(seed).choice(len(array), count, replace=False)
        array = array[np.sort(keep)]
    array = np.asarray(array, np.float64)
    if np.ptp(array[:, :3].astype(np.float32), axis=0).max() <= 0.0:
        raise ValueError("the point cloud's points are all the same point; there is no shape to follow")
    points = array[:, :3]
    estimated = array.shape[1] == 3
    normals = estimate_normals(points) if estimated else _unit(array[:, 3:6])
    return InputCloud(points.astype(np.float32), normals.astype(np.float32), None, estimated)


def estimate_normals(points: np.ndarray, k: int = NORMAL_NEIGHBOURS) -> np.ndarray:
    """Normal of the least-squares plane through each point's k nearest neighbours, flipped to
    point away from the centroid (right for the closed, roughly star-shaped objects users send)."""
    k = min(k, len(points))
    _, idx = cKDTree(points).query(points, k=k)
    neighbours = points[idx] - points[idx].mean(axis=1, keepdims=True)
    cov = np.einsum("nki,nkj->nij", neighbours, neighbours)
    _, vectors = np.linalg.eigh(cov)  # ascending eigenvalues: column 0 is the plane normal
    normals = vectors[:, :, 0]
    outward = points - points.mean(axis=0)
    normals[np.einsum("ij,ij->i", normals, outward) < 0] *= -1
    return _unit(normals)


def _unit(vectors: np.ndarray) -> np.ndarray:
    length = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(length > 0, length, 1.0)


def check_cloud(points: np.ndarray, normals: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """float64 (N, 3) points and unit normals (or None); ValueError on anything else."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise ValueError(f"points must be a non-empty (N, 3) array, got shape {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("points contain NaN or infinite values")
    if normals is None:
        return points, None
    normals = np.asarray(normals, dtype=np.float64)
    if normals.shape != points.shape:
        raise ValueError(f"normals must have the points' shape {points.shape}, got {normals.shape}")
    if not np.isfinite(normals).all():
        raise ValueError("normals contain NaN or infinite values")
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return points, normals / np.where(length > 0, length, 1.0)


def resample(points: np.ndarray, normals: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Exactly `count` points: a random subset, or with repeats when the cloud is smaller."""
    if len(points) == count:
        return points, normals
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(points), count, replace=len(points) < count)
    return points[pick], normals[pick]
