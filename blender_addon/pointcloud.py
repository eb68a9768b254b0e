"""Oriented point cloud of a Blender object, as the backend expects it.

Points are area-weighted samples of the *evaluated* mesh (modifiers applied) in the object's
local space: the generated object gets the source's matrix_world, so the two line up whatever
the transform. The sampling mirrors backend.mesh.sample.sample_surface (face normals, uniform
over area); it is re-implemented here because the add-on cannot import the backend.
"""

from __future__ import annotations

import numpy as np

DEFAULT_POINTS = 4096


class PointCloudError(ValueError):
    """The object cannot be sampled; the message is meant for the user."""


def sample_triangles(vertices: np.ndarray, triangles: np.ndarray, count: int = DEFAULT_POINTS,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` points uniform over the triangles' area, with unit face normals: float32 (count, 3) each."""
    corners = vertices[triangles]  # (m, 3, 3) float32: half the memory of float64 for big sculpts
    cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    doubled_area = np.sqrt(np.einsum("ij,ij->i", cross, cross))
    cumulative = np.cumsum(doubled_area, dtype=np.float64)
    if len(cumulative) == 0 or not np.isfinite(cumulative[-1]) or cumulative[-1] <= 0.0:
        raise PointCloudError("has no surface area to sample")
    rng = np.random.default_rng(seed)
    chosen = np.searchsorted(cumulative, rng.random(count) * cumulative[-1], side="right")
    chosen = np.minimum(chosen, len(cumulative) - 1)
    r = rng.random((count, 2), dtype=np.float32)
    flip = r.sum(axis=1) > 1.0  # fold the unit square onto the triangle
    r[flip] = 1.0 - r[flip]
    tri = corners[chosen]
    points = tri[:, 0] + r[:, :1] * (tri[:, 1] - tri[:, 0]) + r[:, 1:] * (tri[:, 2] - tri[:, 0])
    normals = cross[chosen] / np.maximum(doubled_area[chosen], 1e-30)[:, None]
    return points.astype(np.float32), normals.astype(np.float32)


def object_point_cloud(obj, depsgraph, count: int = DEFAULT_POINTS,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sample the evaluated mesh of `obj` (a bpy Object). Raises PointCloudError with a plain message."""
    if obj.type != "MESH":
        raise PointCloudError(f"'{obj.name}' is a {obj.type.lower().replace('_', ' ')}, not a mesh; "
                              "select a mesh object")
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        mesh.calc_loop_triangles()
        vertices = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", vertices)
        triangles = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int32)
        mesh.loop_triangles.foreach_get("vertices", triangles)
    finally:
        evaluated.to_mesh_clear()
    if len(triangles) == 0:
        raise PointCloudError(f"'{obj.name}' has no faces (after modifiers); there is no surface to follow")
    try:
        return sample_triangles(vertices.reshape(-1, 3), triangles.reshape(-1, 3), count, seed)
    except PointCloudError as exc:
        raise PointCloudError(f"'{obj.name}' {exc}") from None
