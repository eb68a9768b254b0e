"""Mirror symmetry: check that the input is symmetric, decode one half, mirror it, weld on the plane.

The plane goes through the centre of the input's bounding box, across the chosen axis. Decoding
works on the model's 128-level grid, so the pipeline shifts its normalization by half a grid step
along that axis (`Mirror.normalization`): the plane then runs through the centres of grid cell
`PLANE_CELL`, the mirror image of a cell is a cell (i -> 2 * PLANE_CELL - i), and a vertex on the
plane is its own image. The assembler adds each decoded face's image (`Mirror.image`), so the two
halves share the plane's vertices by construction (welded exactly) and the output is its own mirror
image on the grid.

The half is the input cut at the plane without a cap (`Mirror.half`): an open piece whose border
lies on the plane, which the decoding rules leave open as they leave any input border open. The
candidates are laid out on the whole input's decimation cut the same way (`Mirror.layout`), its
border vertices exactly on the plane and every other vertex out of the plane's cell
(`Mirror.adjust`): an inner vertex there would be its own image too and pinch the halves together. Where the decoded half's border leaves the plane (a notch the rules
would not close, as it runs along the input's border), `Mirror.seal` fills it with a fan from the
plane vertex it starts at, so that the half meets the plane all along."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh
from scipy.spatial import cKDTree
from trimesh.intersections import slice_faces_plane

from backend.mesh.candidates import decimate
from backend.mesh.halfedges import HalfEdges
from backend.mesh.normalize import HALF_EXTENT, Normalization
from backend.mesh.quantize import LEVELS, dequantize
from backend.mesh.sample import sample_surface
from backend.mesh.surface import TOLERANCE, SurfaceIndex
from backend.options import SYMMETRY_AXES

PLANE_CELL = LEVELS // 2 - 1             # the grid cell the plane runs through
PLANE = float(dequantize(PLANE_CELL))    # its centre in the normalized frame: -1/128
STEP = 2.0 / LEVELS                      # one grid step in the normalized frame
CHECK_SAMPLES = 1000                     # surface samples mirrored to measure the asymmetry
CHECK_QUANTILE = 0.99                    # of their distances to the surface (a stray speck may differ)
EXACT_FACES = 50_000                     # up to this many triangles, trimesh's exact closest point
NEAREST_FACES = 64                       # beyond: triangles measured per mirrored sample
MAX_DEVIATION = 1.0                      # grid steps: asymmetry the output's grid could not show
ON_PLANE = 1e-5                         # normalized: a vertex this near the plane is on it
SNAP = TOLERANCE                         # a layout border vertex this near the plane is on it


@dataclass(frozen=True)
class Symmetry:
    """The check's outcome for one axis: how far the input's mirror image strays from its surface."""
    axis: str
    deviation: float | None  # CHECK_QUANTILE of the mirrored samples' distances, in grid steps; None: not checked
    reason: str | None = None  # why it was not checked

    @property
    def applied(self) -> bool:
        return self.deviation is not None and self.deviation <= MAX_DEVIATION

    @property
    def note(self) -> str | None:
        """One line for the user when symmetry was asked for but not used."""
        if self.applied:
            return None
        why = self.reason or (f"the input is not symmetric about its {self.axis} centre plane (its mirror image "
                              f"strays {self.deviation:.1f} grid steps from it, more than {MAX_DEVIATION:g})")
        return f"symmetry {self.axis} not used: {why}; decoded the whole input"

    def report(self) -> dict[str, object]:
        """The `symmetry` entry of the generation stats."""
        deviation = None if self.deviation is None else round(self.deviation, 3)
        return {"axis": self.axis, "applied": self.applied, "deviation_steps": deviation, "note": self.note}


def check(vertices: np.ndarray, faces: np.ndarray, axis: str, seed: int = 0) -> Symmetry:
    """Mirror surface samples about the plane through the bounding box's centre across `axis` and
    measure their distance to the surface, in output grid steps (the model's 2/128 of the box)."""
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    used = vertices[np.unique(faces)]
    k = SYMMETRY_AXES.index(axis)
    low, high = used.min(axis=0), used.max(axis=0)
    samples = sample_surface(vertices, faces, CHECK_SAMPLES, seed)[0].astype(np.float64)
    samples[:, k] = (low[k] + high[k]) - samples[:, k]
    if len(faces) <= EXACT_FACES:
        distance = trimesh.proximity.closest_point(trimesh.Trimesh(vertices, faces, process=False), samples)[1]
    else:
        distance = _surface_distance(vertices[faces], samples)
    step = STEP * float((high - low).max()) / (2 * HALF_EXTENT)  # a grid step in the input's units
    return Symmetry(axis, float(np.quantile(distance, CHECK_QUANTILE)) / step)


@dataclass(frozen=True)
class Mirror:
    """The mirror across the plane `coordinate` (input frame) along axis `axis` (0, 1, 2)."""
    axis: int
    coordinate: float

    @classmethod
    def of(cls, vertices: np.ndarray, faces: np.ndarray, axis: str) -> "Mirror":
        used = np.asarray(vertices, np.float64)[np.unique(np.asarray(faces, np.int64))]
        k = SYMMETRY_AXES.index(axis)
        return cls(k, float(used[:, k].min() + used[:, k].max()) / 2)

    def normalization(self, fitted: Normalization) -> Normalization:
        """`fitted` moved along the axis so that the plane lands on `PLANE` (a cell centre)."""
        center = np.array(fitted.center, np.float64)
        center[self.axis] = self.coordinate - PLANE / fitted.scale
        return Normalization(center, fitted.scale)

    def half(self, vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The normalized input cut at the plane, the positive side kept (no cap); vertices the
        cut makes lie exactly on the plane, and are merged (the cut makes one per face, and a
        decimation would take the seams between them for borders)."""
        normal = np.eye(3)[self.axis]
        vertices = np.array(vertices, np.float64)
        # Vertices a rounding error off the plane go onto it: a cut next to them would leave
        # slivers that welding at 1e-6 (backend.mesh.surface) collapses, border and all.
        vertices[np.abs(vertices[:, self.axis] - PLANE) < ON_PLANE, self.axis] = PLANE
        vertices, faces = slice_faces_plane(vertices, np.asarray(faces, np.int64), normal, PLANE * normal)[:2]
        vertices = np.array(vertices, np.float64)
        vertices[np.abs(vertices[:, self.axis] - PLANE) < ON_PLANE, self.axis] = PLANE
        half = trimesh.Trimesh(vertices, np.asarray(faces, np.int64).reshape(-1, 3), process=False)
        half.merge_vertices(merge_tex=True, merge_norm=True)
        # A face cut next to a corner leaves a sliver of no area that would seem to close the
        # border edge it lies along.
        # A face lying in the plane would be its own mirror image.
        half.update_faces((half.area_faces > 1e-12) & ~(half.vertices[half.faces][:, :, self.axis] == PLANE).all(axis=1))
        half.remove_unreferenced_vertices()
        return np.asarray(half.vertices, np.float64), np.asarray(half.faces, np.int64)

    def layout(self, vertices: np.ndarray, faces: np.ndarray, half: tuple[np.ndarray, np.ndarray],
               target_faces: int) -> tuple[np.ndarray, np.ndarray]:
        """The candidates' layout for the half (about `target_faces` faces): the whole normalized
        input decimated, then cut. Decimating the `half` itself would keep its whole cut border
        (quadric decimation does not collapse border edges): a torus cut across its axis kept 44
        of its 47 candidates on the plane. Vertices within half a cell of the plane go onto it
        first, so the cut passes through them instead of leaving slivers next to them; the cut's
        vertices then go onto the half's own border (a chord of the decimation lies inside a
        curved surface, and the rules leave open only what lies along the input's border)."""
        whole = 2 * target_faces
        for _ in range(2):  # the cut adds faces: aim the second decimation lower by as much
            decimated, decimated_faces = decimate(vertices, faces, whole)
            decimated = np.array(decimated, np.float64)
            decimated[np.abs(decimated[:, self.axis] - PLANE) < STEP / 2, self.axis] = PLANE
            cut, cut_faces = self.half(decimated, decimated_faces)
            whole = max(int(whole * target_faces / max(len(cut_faces), 1)), 4)
        cut = self.adjust(cut, cut_faces)
        on_plane = cut[:, self.axis] == PLANE
        cut[on_plane] = _nearest_on_segments(cut[on_plane], _border_segments(*half))
        return cut, cut_faces

    def adjust(self, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """The half's candidate layout (normalized) with its border vertices within `SNAP` of the
        plane exactly on it and every other vertex at least one grid cell off it."""
        vertices = np.array(vertices, np.float64)
        edges = np.sort(np.asarray(faces, np.int64)[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
        unique, count = np.unique(edges, axis=0, return_counts=True)
        border = np.zeros(len(vertices), dtype=bool)
        border[unique[count == 1].ravel()] = True
        x = vertices[:, self.axis]
        on_plane = border & (x - PLANE <= SNAP)
        x[~on_plane & (x < PLANE + STEP)] = PLANE + STEP
        x[on_plane] = PLANE
        return vertices

    def image(self, corners: np.ndarray) -> np.ndarray:
        """A face's corner cells (3, 3) -> its mirror image's, wound the other way (so that the
        image faces outward where the face does)."""
        image = np.array(corners[::-1], np.int64)
        image[:, self.axis] = 2 * PLANE_CELL - image[:, self.axis]
        return image

    def forbid_chords(self, cells: np.ndarray, layout_faces: np.ndarray, edges: np.ndarray, flips: np.ndarray) -> None:
        """Take out (in place, from the constraint's `edges` and `flips` matrices) every edge
        between two candidates on the plane but the layout's border edges: any face on such a
        chord would lie in the plane (a flip of three border vertices makes one), its own image."""
        on_plane = np.asarray(cells)[:, self.axis] == PLANE_CELL
        pairs = np.sort(np.asarray(layout_faces, np.int64)[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
        unique, count = np.unique(pairs, axis=0, return_counts=True)
        border = np.zeros_like(edges)
        border[unique[count == 1, 0], unique[count == 1, 1]] = True
        chord = on_plane[:, None] & on_plane[None, :] & ~(border | border.T)
        edges[chord] = False
        flips[chord] = False

    def seal(self, mesh: HalfEdges, cells: np.ndarray, surface: SurfaceIndex | None) -> list[np.ndarray]:
        """Faces (corner cells, added to `mesh`) closing each notch of the half's border: a run
        of border edges leaving the plane at vertex p and coming back at q, filled with a fan
        from p so that its last edge p -> q lies on the plane. A run along the input's own
        border (`surface`'s, away from the plane) stays open: that is a hole of the input."""
        on_plane = np.asarray(cells)[:, self.axis] == PLANE_CELL
        own_border = np.zeros(len(cells), dtype=bool)
        if surface is not None:
            positions = dequantize(np.asarray(cells))
            own_border = surface.on_border(positions) & (np.abs(positions[:, self.axis] - PLANE) > surface.tolerance)
        boundary = mesh.boundary.tolist()
        following: dict[int, int] = {}
        for a, b in boundary:
            following.setdefault(a, b)
        made: list[np.ndarray] = []
        for start, first in boundary:  # a plane vertex may start a notch besides a border edge on the plane
            if not on_plane[start] or on_plane[first]:
                continue
            path = [start, first]
            while not on_plane[path[-1]] and path[-1] in following and len(path) <= len(cells):
                path.append(following[path[-1]])
            if not on_plane[path[-1]] or path[-1] == start or own_border[path].any():
                continue
            for previous, vertex in zip(path[1:-1], path[2:]):
                face = (vertex, previous, start)  # runs the border edge previous -> vertex backwards
                if not mesh.legal_face(face, may_start=False):
                    break
                mesh.add(face)
                made.append(np.asarray(cells)[list(face)])
        return made


def _surface_distance(triangles: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Each point's distance to the nearest of the `NEAREST_FACES` triangles whose centroids are
    nearest it: a KD-tree instead of trimesh's R-tree, which took 8 s to build on 330k triangles.
    Where the true nearest triangle is not among them (long thin triangles: a few hundred-face
    model measured 6.4 steps instead of 0 with 32), the distance comes out too large, never too
    small: a symmetric input may be called asymmetric, an asymmetric one never symmetric."""
    count = min(NEAREST_FACES, len(triangles))
    near = cKDTree(triangles.mean(axis=1)).query(points, count)[1].reshape(len(points), count)
    repeated = np.repeat(points, count, axis=0)
    closest = trimesh.triangles.closest_point(triangles[near.ravel()], repeated)
    return np.linalg.norm(closest - repeated, axis=1).reshape(len(points), count).min(axis=1)


def _border_segments(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(k, 2, 3) the edges of one face only."""
    edges = np.sort(np.asarray(faces, np.int64)[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    unique, count = np.unique(edges, axis=0, return_counts=True)
    return np.asarray(vertices, np.float64)[unique[count == 1]]


def _nearest_on_segments(points: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """Each point's nearest point on any of `segments` (the points themselves when there are none)."""
    if len(segments) == 0 or len(points) == 0:
        return points
    start, direction = segments[:, 0], segments[:, 1] - segments[:, 0]
    t = np.einsum("pkd,kd->pk", points[:, None] - start[None], direction) / np.maximum((direction ** 2).sum(-1), 1e-18)
    nearest = start[None] + np.clip(t, 0.0, 1.0)[..., None] * direction[None]
    best = np.linalg.norm(nearest - points[:, None], axis=-1).argmin(axis=1)
    return nearest[np.arange(len(points)), best]
