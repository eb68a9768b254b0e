"""The input surface as decoding sees it: is a point on it, which part of it do the faces made
so far stand over, which way does it face, and which loose piece of the input is where.

"On the surface" is a lookup in a voxel grid of half the tolerance (voxels holding a dense surface
sample, dilated by one): a KD-tree query per point cost more than the model's pass. Coverage is
kept per surface sample: the samples a face projects onto, within the tolerance of its plane,
are the ground it stands for, those facing its way (the EOS rule reads their fraction; a new
face may stand over few that are taken already)."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_dilation
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from backend.mesh.sample import sample_surface_faces

TOLERANCE = 0.03  # distance to the surface (normalized frame, longest side 1.9) that counts as on it
SURFACE_SAMPLES = 20000
_BARYCENTRIC = np.array([(i, j, 6 - i - j) for i in range(7) for j in range(7 - i)], np.float64) / 6.0


def triangle_samples(corners: np.ndarray) -> np.ndarray:
    """[..., 3, 3] triangle corners -> [..., 28, 3] points on a barycentric grid (edges included)."""
    return np.einsum("sk,...kd->...sd", _BARYCENTRIC, corners)


def over_triangle(points: np.ndarray, corners: np.ndarray, tolerance: float, margin: float = 0.0) -> np.ndarray:
    """(n,) True where a point projects inside the triangle `corners` (3, 3) within `tolerance`
    of its plane (barycentric weights down to -`margin` count as inside)."""
    a, b, c = corners
    normal = np.cross(b - a, c - a)
    area2 = float(normal @ normal)
    if area2 < 1e-18:
        return np.zeros(len(points), dtype=bool)
    rel = points - a
    u = np.cross(rel, c - a) @ normal / area2  # barycentric weight of b
    v = np.cross(b - a, rel) @ normal / area2  # weight of c
    plane = np.abs(rel @ normal) / np.sqrt(area2)
    return (u >= -margin) & (v >= -margin) & (u + v <= 1 + margin) & (plane <= tolerance)


def mesh_pieces(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(piece label per face, closed flag per piece, (k, 2, 3) border edges: those of one face)
    of a triangle mesh, vertices merged by position first (a file's UV seams split vertices that
    are one point of the surface). A piece is closed when each of its edges has exactly two faces."""
    vertices = np.asarray(vertices, np.float64)
    _, weld = np.unique(np.round(vertices, 6), axis=0, return_inverse=True)
    faces = weld.reshape(-1)[np.asarray(faces, np.int64)]
    m = len(faces)
    incidence = coo_matrix((np.ones(3 * m), (np.repeat(np.arange(m), 3), faces.ravel())),
                           shape=(m, int(faces.max()) + 1)).tocsr()
    count, label = connected_components(incidence @ incidence.T, directed=False)
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    unique, inverse, uses = np.unique(edges, axis=0, return_inverse=True, return_counts=True)
    open_edge = uses[inverse.reshape(-1)] != 2
    closed = np.ones(count, bool)
    closed[label[np.repeat(np.arange(m), 3)[open_edge]]] = False
    first = np.zeros(int(weld.max()) + 1, np.int64)
    first[weld.reshape(-1)] = np.arange(len(weld.reshape(-1)))
    border = unique[uses == 1]
    return label, closed, vertices[first[border]]


class SurfaceIndex:
    def __init__(self, vertices: np.ndarray, faces: np.ndarray, seed: int = 0,
                 tolerance: float = TOLERANCE, samples: int = SURFACE_SAMPLES) -> None:
        """A normalized input mesh. The tolerance grows with the spacing of the samples on large
        surfaces: a point on the surface can lie about that far from the nearest random sample."""
        vertices = np.asarray(vertices, np.float64)
        faces = np.asarray(faces, np.int64)
        points, normals, sampled_face = sample_surface_faces(vertices, faces, samples, seed)
        area = float(np.linalg.norm(np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]],
                                             vertices[faces[:, 2]] - vertices[faces[:, 0]]), axis=1).sum() / 2)
        self.tolerance = max(float(tolerance), 2 * np.sqrt(area / samples))
        self.points = np.asarray(points, np.float64)
        self.normals = np.asarray(normals, np.float64)
        face_piece, self.piece_closed, border = mesh_pieces(vertices, faces)
        t = np.linspace(0.0, 1.0, 8)[None, :, None]
        points_on_border = (border[:, :1] * (1 - t) + border[:, 1:] * t).reshape(-1, 3)
        self._border = cKDTree(points_on_border) if len(points_on_border) else None
        self.sample_piece = face_piece[sampled_face]
        # Which piece a point belongs to: that of the nearest input vertex (a small piece may
        # hold few of the random samples, but it has its own vertices).
        vertex_piece = np.zeros(len(vertices), np.int64)
        vertex_piece[faces.ravel()] = np.repeat(face_piece, 3)
        used = np.unique(faces)
        self._vertex_tree, self._vertex_piece = cKDTree(vertices[used]), vertex_piece[used]
        self.tree = cKDTree(self.points)
        self.covered = np.zeros(len(self.points), dtype=bool)
        self._cell = self.tolerance / 2
        self._origin = self.points.min(axis=0) - 2 * self._cell
        self._dims = np.ceil((self.points.max(axis=0) + 2 * self._cell - self._origin) / self._cell).astype(np.int64) + 1
        occupied = np.zeros(int(np.prod(self._dims)), dtype=bool)
        occupied[self._voxel(self.points)] = True
        self._near = binary_dilation(occupied.reshape(self._dims), np.ones((3, 3, 3), bool)).ravel()
        self._near[-1] = False  # the id every point outside the grid maps to

    def _voxel(self, points: np.ndarray) -> np.ndarray:
        """Flat voxel ids of points (..., 3); points outside the grid get the last id."""
        index = np.floor((points - self._origin) / self._cell).astype(np.int64)
        inside = ((index >= 0) & (index < self._dims - 1)).all(axis=-1)
        flat = np.ravel_multi_index(tuple(np.moveaxis(np.clip(index, 0, self._dims - 1), -1, 0)), self._dims)
        return np.where(inside, flat, int(np.prod(self._dims)) - 1)

    def on_surface(self, points: np.ndarray) -> np.ndarray:
        """[..., S, 3] -> [...] True where every sample lies near the surface (within about the
        tolerance)."""
        return self._near[self._voxel(points)].all(-1)

    def under(self, triangles: np.ndarray, shrink: float = 1.0) -> list[np.ndarray]:
        """The surface samples each triangle (m, 3, 3), scaled by `shrink` about its centroid,
        stands over (`cover` marks those of the whole triangle)."""
        if len(triangles) == 0:
            return []
        centres = triangles.mean(axis=1)
        triangles = centres[:, None] + shrink * (triangles - centres[:, None])
        reach = np.linalg.norm(triangles - centres[:, None], axis=2).max(axis=1) + self.tolerance
        result = []
        for triangle, near in zip(triangles, self.tree.query_ball_point(centres, r=reach)):
            near = np.asarray(near, dtype=np.int64)
            result.append(near[over_triangle(self.points[near], triangle, self.tolerance)] if len(near) else near)
        return result

    def cover(self, triangle: np.ndarray) -> None:
        """Account for a face made over the wound `triangle` (3, 3): the samples under it that
        face its way (not those of the other side of a thin part)."""
        samples = self.under(triangle[None])[0]
        normal = np.cross(triangle[1] - triangle[0], triangle[2] - triangle[0])
        self.covered[samples[self.normals[samples] @ normal > 0]] = True

    def covered_fraction(self, pieces: np.ndarray | None = None) -> float:
        """Share of the surface samples (of `pieces` only, when given) that faces stand over."""
        covered = self.covered if pieces is None else self.covered[np.isin(self.sample_piece, pieces)]
        return float(covered.mean()) if len(covered) else 1.0

    def piece_at(self, points: np.ndarray) -> np.ndarray:
        """The input piece each point (n, 3) lies on."""
        return self._vertex_piece[self._vertex_tree.query(points)[1]]

    def on_border(self, points: np.ndarray) -> np.ndarray:
        """(n,) True where a point lies within the tolerance of the input's open border."""
        if self._border is None:
            return np.zeros(len(points), dtype=bool)
        return self._border.query(points)[0] <= self.tolerance

    def nearest(self, points: np.ndarray) -> np.ndarray:
        """Index of the nearest surface sample of each point (..., 3)."""
        return self.tree.query(points)[1]
