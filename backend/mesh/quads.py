"""Triangles to quads, as Blender's Tris to Quads does it, and writing the result.

`join_triangles` pairs two triangles that share a consistently wound manifold edge into one quad
when the pair is near-planar (the angle between their normals is at most `max_normal_angle`) and
near-rectangular (convex, every corner within `max_corner_deviation` of 90°). Candidates are
taken best first (flattest and squarest), each triangle in at most one quad. The defaults are
Blender's (40° and 40°), so `specmesh generate --quads` and the add-on's Quads checkbox (which
calls `bmesh.ops.join_triangles`) make about the same choices.

`write_polygons` writes triangles and quads to .obj or ASCII .ply, the formats
that keep quads (glTF stores triangles only).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.fileio import atomic_write
from backend.mesh.cleanup import _as_arrays, _edges, _manifold_pairs

QUAD_FORMATS = (".obj", ".ply")
DEFAULT_MAX_NORMAL_ANGLE = 40.0  # degrees; bmesh.ops.join_triangles' angle_face_threshold in the UI
DEFAULT_MAX_CORNER_DEVIATION = 40.0  # degrees; its angle_shape_threshold


@dataclass
class PolyMesh:
    vertices: np.ndarray   # float64 (n, 3)
    triangles: np.ndarray  # int64 (t, 3)
    quads: np.ndarray      # int64 (q, 4), corners in the winding of the triangles they replace

    @property
    def quad_fraction(self) -> float:
        """Share of the faces that are quads."""
        faces = len(self.triangles) + len(self.quads)
        return len(self.quads) / faces if faces else 0.0


def _unit(v: np.ndarray) -> np.ndarray:
    length = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(length > 0, length, 1.0)


def _quad_of(f: np.ndarray, g: np.ndarray) -> np.ndarray | None:
    """The quad (a, b, d, c) of triangles f = (a, b, c) and g = (c, b, d) sharing b-c, with f
    rotated as needed; None when they share no edge in opposite directions."""
    for r in range(3):
        a, b, c = f[r], f[(r + 1) % 3], f[(r + 2) % 3]
        for s in range(3):
            if g[s] == c and g[(s + 1) % 3] == b:
                return np.array([a, b, g[(s + 2) % 3], c])
    return None


def _quad_error(p: np.ndarray, normal_angle: float, max_normal: float, max_corner: float) -> float | None:
    """Error of the quad with corners p (4, 3) in the [0, 2] range, or None when it is not convex,
    or a corner deviates more than `max_corner` degrees from a right angle."""
    nxt, prv = np.roll(p, -1, axis=0) - p, np.roll(p, 1, axis=0) - p
    cos = np.einsum("ij,ij->i", _unit(nxt), _unit(prv))
    deviation = np.abs(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))) - 90.0)
    if deviation.max() > max_corner:
        return None
    normal = np.cross(p[2] - p[0], p[3] - p[1])  # a quad's normal: the cross of its diagonals
    turns = np.cross(nxt, np.roll(nxt, -1, axis=0)) @ normal
    if (turns <= 0).any():
        return None
    return normal_angle / max_normal + deviation.mean() / max_corner


def join_triangles(vertices: np.ndarray, faces: np.ndarray,
                   max_normal_angle: float = DEFAULT_MAX_NORMAL_ANGLE,
                   max_corner_deviation: float = DEFAULT_MAX_CORNER_DEVIATION) -> PolyMesh:
    """Pair triangles into quads (see the module docstring). Orient the mesh first
    (`backend.mesh.cleanup.orient_outward`): only pairs that agree on their winding are joined."""
    vertices, faces = _as_arrays(vertices, faces)
    if len(faces) == 0:
        return PolyMesh(vertices, faces.copy(), np.zeros((0, 4), np.int64))
    a, b, same = _manifold_pairs(_edges(faces))
    tri = vertices[faces]
    normals = _unit(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]))
    candidates: list[tuple[float, int, int, np.ndarray]] = []
    for f, g in zip(a[~same].tolist(), b[~same].tolist()):
        angle = float(np.degrees(np.arccos(np.clip(normals[f] @ normals[g], -1.0, 1.0))))
        if angle > max_normal_angle:
            continue
        quad = _quad_of(faces[f], faces[g])
        if quad is None:
            continue
        error = _quad_error(vertices[quad], angle, max_normal_angle, max_corner_deviation)
        if error is not None:
            candidates.append((error, f, g, quad))
    candidates.sort(key=lambda c: (c[0], c[1], c[2]))
    used = np.zeros(len(faces), bool)
    quads = []
    for _, f, g, quad in candidates:
        if not used[f] and not used[g]:
            used[f] = used[g] = True
            quads.append(quad)
    return PolyMesh(vertices, faces[~used], np.asarray(quads, np.int64).reshape(-1, 4))


def write_polygons(path: str | Path, mesh: PolyMesh) -> None:
    """Write triangles and quads to .obj or ASCII .ply (both text)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in QUAD_FORMATS:
        raise ValueError(f"quads can be written to {' or '.join(QUAD_FORMATS)}, not {suffix or path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".obj":
        _write_obj(path, mesh)
    else:
        _write_ply(path, mesh)


def _write_obj(path: Path, mesh: PolyMesh) -> None:
    lines = ["# SpecMesh"]
    lines += [f"v {x:.9g} {y:.9g} {z:.9g}" for x, y, z in mesh.vertices.tolist()]
    lines += ["f " + " ".join(str(i + 1) for i in face) for face in mesh.triangles.tolist()]
    lines += ["f " + " ".join(str(i + 1) for i in face) for face in mesh.quads.tolist()]
    atomic_write(path, "\n".join(lines) + "\n")


def _write_ply(path: Path, mesh: PolyMesh) -> None:
    # ASCII: readers (trimesh among them) take a binary face list to have one length throughout.
    faces = len(mesh.triangles) + len(mesh.quads)
    lines = ["ply", "format ascii 1.0", "comment SpecMesh", f"element vertex {len(mesh.vertices)}",
             "property double x", "property double y", "property double z", f"element face {faces}",
             "property list uchar int vertex_indices", "end_header"]
    lines += [f"{x:.9g} {y:.9g} {z:.9g}" for x, y, z in mesh.vertices.tolist()]
    lines += [f"{len(face)} " + " ".join(map(str, face)) for face in mesh.triangles.tolist() + mesh.quads.tolist()]
    atomic_write(path, "\n".join(lines) + "\n")
