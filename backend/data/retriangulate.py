"""Delaunay edge flips inside flat regions.

Booleans and polygon caps come out of manifold3d ear-clipped: a plate face with holes is
covered by long slivers that would collapse under 7-bit quantization and that no artist would
make. Flipping the shared edge of two coplanar triangles whenever the opposite angles sum to
more than pi (Lawson's algorithm) turns every flat region into its constrained Delaunay
triangulation without moving a vertex or touching a crease."""

from __future__ import annotations

import numpy as np
import trimesh

COPLANAR_COS = 1.0 - 1e-10
MAX_PASSES = 100


def _angle(at: np.ndarray, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    u, v = p - at, q - at
    cos = np.einsum("ij,ij->i", u, v) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1) + 1e-30)
    return np.arccos(np.clip(cos, -1.0, 1.0))


def _flip_candidates(vertices: np.ndarray, faces: np.ndarray):
    """Interior edges between coplanar faces whose flip raises the smaller angles: for each,
    the two faces, the replacement faces and the gain (opposite angles' sum minus pi)."""
    n_v = len(vertices)
    u, v, w = faces.reshape(-1), faces[:, [1, 2, 0]].reshape(-1), faces[:, [2, 0, 1]].reshape(-1)
    face_of = np.repeat(np.arange(len(faces)), 3)
    key = u * n_v + v
    order = np.argsort(key)
    sorted_keys = key[order]
    twin = order[np.clip(np.searchsorted(sorted_keys, v * n_v + u), 0, len(key) - 1)]
    i = np.flatnonzero((u < v) & (key[twin] == v * n_v + u))  # each shared edge once
    j = twin[i]
    f, g = face_of[i], face_of[j]
    p = vertices[faces]
    normals = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    unit = normals / (np.linalg.norm(normals, axis=1, keepdims=True) + 1e-30)
    flat = np.einsum("ij,ij->i", unit[f], unit[g]) > COPLANAR_COS
    i, j, f, g = i[flat], j[flat], f[flat], g[flat]
    a, b, c, d = u[i], v[i], w[i], w[j]  # face f is (a, b, c); face g is (b, a, d)
    gain = _angle(vertices[c], vertices[a], vertices[b]) + _angle(vertices[d], vertices[a], vertices[b]) - np.pi
    new1, new2 = np.stack([a, d, c], axis=1), np.stack([d, b, c], axis=1)

    def area_along_normal(tri: np.ndarray) -> np.ndarray:
        q = vertices[tri]
        return np.einsum("ij,ij->i", np.cross(q[:, 1] - q[:, 0], q[:, 2] - q[:, 0]), unit[f])

    # Flip only where the quad is strictly convex and the new edge is not already an edge.
    tiny = 1e-12 * np.ptp(vertices, axis=0).max() ** 2
    exists = sorted_keys[np.clip(np.searchsorted(sorted_keys, c * n_v + d), 0, len(key) - 1)] == c * n_v + d
    ok = (gain > 1e-9) & (area_along_normal(new1) > tiny) & (area_along_normal(new2) > tiny) & ~exists
    return f[ok], g[ok], new1[ok], new2[ok], gain[ok]


def delaunay_flip(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """A copy of a closed mesh with flat regions re-triangulated; vertices are unchanged."""
    vertices, faces = np.asarray(mesh.vertices, dtype=np.float64), mesh.faces.copy()
    for _ in range(MAX_PASSES):
        f, g, new1, new2, gain = _flip_candidates(vertices, faces)
        used = np.zeros(len(faces), dtype=bool)
        flipped = 0
        for k in np.argsort(-gain):
            if used[f[k]] or used[g[k]]:
                continue  # one flip per face per pass keeps every flip's quad valid
            used[f[k]] = used[g[k]] = True
            faces[f[k]], faces[g[k]] = new1[k], new2[k]
            flipped += 1
        if not flipped:
            break
    return trimesh.Trimesh(vertices, faces, process=False)
