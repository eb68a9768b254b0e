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
