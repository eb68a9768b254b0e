"""Area-weighted surface sampling with face normals (vectorised, seedable)."""

from __future__ import annotations

import numpy as np


def sample_surface(vertices: np.ndarray, faces: np.ndarray, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` points uniformly distributed over the surface area, with the unit normal of the
    face each point lies on. Returns float32 (count, 3) points and normals."""
    return sample_surface_faces(vertices, faces, count, seed)[:2]


def sample_surface_faces(vertices: np.ndarray, faces: np.ndarray, count: int, seed: int = 0
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`sample_surface` plus the index of the face each point lies on."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if count < 1:
        raise ValueError(f"count must be positive, got {count}")
    corners = v[f]  # (m, 3, 3)
    cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    doubled_area = np.linalg.norm(cross, axis=1)
    total = doubled_area.sum()
    if not np.isfinite(total) or total <= 0.0:
        raise ValueError("mesh has no surface area to sample")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(f), size=count, p=doubled_area / total)
    # Uniform point in a triangle: fold the unit square onto the lower triangle.
    r = rng.random((count, 2))
    flip = r.sum(axis=1) > 1.0
    r[flip] = 1.0 - r[flip]
    tri = corners[chosen]
    points = tri[:, 0] + r[:, :1] * (tri[:, 1] - tri[:, 0]) + r[:, 1:] * (tri[:, 2] - tri[:, 0])
    normals = cross[chosen] / np.maximum(doubled_area[chosen], 1e-300)[:, None]
    return points.astype(np.float32), normals.astype(np.float32), chosen
