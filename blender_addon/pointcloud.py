"""What the backend gets of a Blender object: an oriented point cloud and the triangles.

Points are area-weighted samples of the *evaluated* mesh (modifiers applied) in the object's
local space: the generated object gets the source's matrix_world, so the two line up whatever
the transform. The sampling mirrors backend.mesh.sample.sample_surface (face normals, uniform
over area); it is re-implemented here because the add-on cannot import the backend. The
triangles themselves go along too (protocol 2's `mesh`), up to the protocol's size: the backend
decimates them into the vertex candidates and keeps the generated faces on their surface, the
same way `specmesh generate` does for a mesh file. A denser mesh (any real sculpt) is reduced
first by vertex clustering (`reduce_triangles`), so that the constraint stays on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_POINTS = 4096
# backend.server.protocol's MAX_MESH_VERTICES / MAX_MESH_FACES (a test keeps them equal). A larger
# mesh is reduced to fit.
MAX_MESH_VERTICES = 65536
MAX_MESH_FACES = 131072
# Clustering cells across the longest side to try first: one per two steps of the model's 7-bit
# grid (121.6 across the points' box), so vertices move by about a grid step at most, within the
# backend constraint's tolerance (~1.9 steps). Finer is worse, not better: the backend picks its
# vertex candidates by quadric decimation, which places them poorly on a finely clustered mesh's
# slivers and folds. For Suzanne at 1M triangles (benchmarks/dense_addon.py), 32/48/64 cells gave
# 188-191 faces covering 75-85 % of the surface, 80/96 cells 90-108 faces, 128+ cells under 80
# faces covering 7 %; Blender's Decimate (collapse) to 114k triangles 187 faces, 69 %.
FIRST_CELLS = 64
# What a result still beyond the limits is rescaled towards: below them, since the count only
# roughly follows the square of the cells.
TARGET_FACES = 100_000
MAX_ROUNDS = 8


class PointCloudError(ValueError):
    """The object cannot be sampled; the message is meant for the user."""


def fan_triangles(loop_start: np.ndarray, corner_vert: np.ndarray) -> np.ndarray:
    """Triangulate polygons as fans from their first corner: (m, 3) vertex indices. Exact for
    convex polygons (a sculpt's quads); enough for area-weighted sampling of the rest."""
    sizes = np.diff(np.append(loop_start, len(corner_vert)))
    per_polygon = np.maximum(sizes - 2, 0)
    start = np.repeat(loop_start, per_polygon)
    # j = index of each triangle within its polygon
    j = np.arange(len(start)) - np.repeat(np.cumsum(per_polygon) - per_polygon, per_polygon)
    return np.stack([corner_vert[start], corner_vert[start + j + 1], corner_vert[start + j + 2]], axis=1)


def _doubled_areas(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """|cross(b - a, c - a)| per triangle, written out: np.cross is several times slower."""
    a = vertices[triangles[:, 0]]
    u = vertices[triangles[:, 1]] - a
    v = vertices[triangles[:, 2]] - a
    x = u[:, 1] * v[:, 2] - u[:, 2] * v[:, 1]
    y = u[:, 2] * v[:, 0] - u[:, 0] * v[:, 2]
    z = u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]
    return np.sqrt(x * x + y * y + z * z)


def sample_triangles(vertices: np.ndarray, triangles: np.ndarray, count: int = DEFAULT_POINTS,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` points uniform over the triangles' area, with unit face normals: float32 (count, 3) each."""
    cumulative = np.cumsum(_doubled_areas(vertices, triangles), dtype=np.float64)
    if len(cumulative) == 0 or not np.isfinite(cumulative[-1]) or cumulative[-1] <= 0.0:
        raise PointCloudError("has no surface area to sample")
    rng = np.random.default_rng(seed)
    chosen = np.searchsorted(cumulative, rng.random(count) * cumulative[-1], side="right")
    tri = vertices[triangles[np.minimum(chosen, len(cumulative) - 1)]].astype(np.float64)  # (count, 3, 3)
    r = rng.random((count, 2))
    flip = r.sum(axis=1) > 1.0  # fold the unit square onto the triangle
    r[flip] = 1.0 - r[flip]
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    points = tri[:, 0] + r[:, :1] * e1 + r[:, 1:] * e2
    normals = np.cross(e1, e2)
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-30)
    return points.astype(np.float32), normals.astype(np.float32)


def fits(vertices: np.ndarray, triangles: np.ndarray) -> bool:
    """Within the protocol's `mesh` limits."""
    return 3 <= len(vertices) <= MAX_MESH_VERTICES and 1 <= len(triangles) <= MAX_MESH_FACES


def cluster_vertices(vertices: np.ndarray, triangles: np.ndarray, cell: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Vertex clustering: the vertices in each `cell`-sized grid cube merge into their mean, the
    triangles that collapse drop out, and only the clusters still used remain."""
    cells = np.floor((vertices - vertices.min(axis=0)) / cell).astype(np.int64)
    size = cells.max(axis=0) + 1
    keys = (cells[:, 0] * size[1] + cells[:, 1]) * size[2] + cells[:, 2]
    _, cluster = np.unique(keys, return_inverse=True)
    cluster = cluster.reshape(-1)  # numpy 2.0 shaped the inverse like its input
    merged = cluster[triangles]
    a, b, c = merged.T
    used, merged = np.unique(merged[(a != b) & (b != c) & (a != c)], return_inverse=True)
    members = np.bincount(cluster)[used, None]
    sums = np.stack([np.bincount(cluster, vertices[:, k])[used] for k in range(3)], axis=1)
    return (sums / members).astype(np.float32), merged.reshape(-1, 3).astype(np.int32)


def reduce_triangles(vertices: np.ndarray, triangles: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray] | None:
    """The mesh clustered at the model's resolution, coarser if it still does not fit the protocol;
    None if nothing is left of it. Vertex clustering is numpy sorting and counting, ~0.1 s a round
    for 1M triangles, where Blender's Decimate (collapse) modifier took 16 s on the same Suzanne
    (benchmarks/dense_addon.py), all of it on Blender's main thread."""
    extent = float(np.ptp(vertices, axis=0).max())
    cells = float(FIRST_CELLS)
    for _ in range(MAX_ROUNDS):
        reduced = cluster_vertices(vertices, triangles, extent / cells)
        if fits(*reduced):
            return reduced
        if len(reduced[1]) == 0:
            return None
        # A surface's triangles (about twice its vertices) follow the square of the cells across
        # it; at least 10 % fewer cells a round, should they not.
        cells *= min(0.9, (TARGET_FACES / max(len(reduced[1]), 2 * len(reduced[0]))) ** 0.5)
    return None


@dataclass
class ObjectSample:
    """What the backend gets of one object."""
    points: np.ndarray   # float32 (count, 3), object space
    normals: np.ndarray  # float32 (count, 3), unit
    mesh: tuple[np.ndarray, np.ndarray] | None  # (vertices, triangles) within the protocol's limits
    source_triangles: int  # of the evaluated mesh, before any reduction

    @property
    def note(self) -> str:
        """What was done to the object's triangles, for the status line ("" if they went as they are)."""
        if self.mesh is None:
            return f"{_count(self.source_triangles)} triangles too dense to send: decoded without them"
        if len(self.mesh[1]) == self.source_triangles:
            return ""
        return f"reduced {_count(self.source_triangles)} → {_count(len(self.mesh[1]))} triangles for the backend"


def _count(n: int) -> str:
    return f"{n / 1e6:.1f} M" if n >= 999_500 else f"{n / 1e3:.0f} k" if n >= 10_000 else str(n)


def evaluated_triangles(obj, depsgraph) -> tuple[np.ndarray, np.ndarray]:
    """The evaluated mesh of `obj` (modifiers applied), object space: float32 (n, 3) vertices and
    its polygons fanned into int32 (m, 3) triangles. Raises PointCloudError with a plain message."""
    if obj.type != "MESH":
        raise PointCloudError(f"'{obj.name}' is a {obj.type.lower().replace('_', ' ')}, not a mesh; "
                              "select a mesh object")
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        # Attribute arrays take numpy's fast path; mesh.loop_triangles would cost ~1 s per 1M faces.
        vertices = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
        loop_start = np.empty(len(mesh.polygons), dtype=np.int32)
        corner_vert = np.empty(len(mesh.loops), dtype=np.int32)
        if len(loop_start):
            mesh.attributes["position"].data.foreach_get("vector", vertices)
            mesh.polygons.foreach_get("loop_start", loop_start)
            mesh.attributes[".corner_vert"].data.foreach_get("value", corner_vert)
    finally:
        evaluated.to_mesh_clear()
    if len(loop_start) == 0:
        raise PointCloudError(f"'{obj.name}' has no faces (after modifiers); there is no surface to follow")
    return vertices.reshape(-1, 3), fan_triangles(loop_start, corner_vert)


def object_point_cloud(obj, depsgraph, count: int = DEFAULT_POINTS, seed: int = 0) -> ObjectSample:
    """Sample the evaluated mesh of `obj` (a bpy Object) and take its triangles, reduced when they
    are beyond the protocol's size. Raises PointCloudError with a plain message."""
    vertices, triangles = evaluated_triangles(obj, depsgraph)
    try:
        # From the full surface, not the reduced one: it costs ~0.1 s for 1M triangles, and the
        # points (what the model reads) stay the same whether or not the mesh had to be reduced.
        points, normals = sample_triangles(vertices, triangles, count, seed)
    except PointCloudError as exc:
        raise PointCloudError(f"'{obj.name}' {exc}") from None
    mesh = (vertices, triangles) if fits(vertices, triangles) else reduce_triangles(vertices, triangles)
    return ObjectSample(points, normals, mesh, len(triangles))
