"""Shape distances as BPT reports them: both meshes normalized to [-0.95, 0.95], 1024 surface
samples each, Chamfer = mean nearest-neighbour L2 distance (not squared) in both directions
summed, Hausdorff = the largest such distance. Sampling noise alone gives a non-zero value, so
`noise_floor` measures it for a mesh against a second sampling of itself."""

from __future__ import annotations

from typing import Protocol

import numpy as np
from scipy.spatial import cKDTree

from backend.mesh.normalize import Normalization
from backend.mesh.sample import sample_surface


class MeshLike(Protocol):  # trimesh.Trimesh, QuantizedMesh, ...
    vertices: np.ndarray
    faces: np.ndarray


def _normalized_samples(mesh: MeshLike, n: int, seed: int) -> np.ndarray:
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    return sample_surface(Normalization.fit(vertices).apply(vertices), mesh.faces, n, seed)[0]


def chamfer_hausdorff(mesh_a: MeshLike, mesh_b: MeshLike, n: int = 1024, seed: int = 0) -> tuple[float, float]:
    """(Chamfer, Hausdorff); mesh_a is sampled with `seed`, mesh_b with `seed + 1`, so a mesh
    against itself gives exactly its `noise_floor`."""
    a = _normalized_samples(mesh_a, n, seed)
    b = _normalized_samples(mesh_b, n, seed + 1)
    a_to_b = cKDTree(b).query(a)[0]
    b_to_a = cKDTree(a).query(b)[0]
    return float(a_to_b.mean() + b_to_a.mean()), float(max(a_to_b.max(), b_to_a.max()))


def noise_floor(mesh: MeshLike, n: int = 1024, seed: int = 0) -> tuple[float, float]:
    """(Chamfer, Hausdorff) of a mesh against an independent sampling of itself."""
    return chamfer_hausdorff(mesh, mesh, n, seed)


def cloud_chamfer(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, n: int = 1024,
                  seed: int = 0) -> float:
    """Chamfer distance between a point cloud and a mesh in the cloud's own frame (best-of-N
    compares samples of one input, so no per-mesh normalization)."""
    points = np.asarray(points, np.float64)
    samples = sample_surface(np.asarray(vertices, np.float64), np.asarray(faces), n, seed)[0]
    return float(cKDTree(points).query(samples)[0].mean() + cKDTree(samples).query(points)[0].mean())
