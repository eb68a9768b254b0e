"""Decoding constrained to the input mesh: the model chooses and connects, the input says where.

Left alone, the model places vertices where its sequence statistics put them and ends a mesh
early (docs/experiments/conditioning.md). For a mesh input, `InputConstraint` narrows the grammar
masks of every decoder (AR, speculative drafts and verification alike):

- every vertex is a vertex candidate: the input quadric-decimated (backend.mesh.candidates);
- a vertex that closes a face must make a triangle lying on the input surface (samples of its
  edges and interior within `tolerance` of the surface) over surface that no face covers yet
  (at most `OVERLAP` of it covered: no stacked or folded faces), and the second vertex of a
  patch must start an edge on the surface;
- a patch starts only at a candidate from which such a face can still be made;
- EOS is allowed only once the faces cover `coverage` of the input's surface samples, or once
  no candidate can start another face.

Rules that would leave no token fall back, in order, to any candidate vertex and then to the
grammar's own mask, so decoding never stalls on the constraint. The pipeline hands every
decoded face to `admit`, which keeps it only if it obeys the rules given the faces kept so far
(a speculative pass accepts several faces at once) and drives coverage and duplicate avoidance.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_dilation
from scipy.spatial import cKDTree

from backend.mesh.candidates import PAD
from backend.mesh.quantize import dequantize
from backend.mesh.sample import sample_surface
from backend.tokenizer.grammar import GrammarState, Kind
from backend.tokenizer.vocab import AXIS_PERMUTATION, EOS, OFFSET_START, PATCH_START, VOCAB_SIZE, block_of, offset_of

COVERAGE = 0.99       # fraction of the input's surface samples a mesh must cover before EOS
OVERLAP = 0.1         # largest covered fraction of a new face's interior samples
TOLERANCE = 0.03      # distance to the surface (normalized frame, longest side 1.9) that counts as on it
SURFACE_SAMPLES = 20000
_BARYCENTRIC = np.array([(i, j, 6 - i - j) for i in range(7) for j in range(7 - i)], np.float64) / 6.0
_INTERIOR = (_BARYCENTRIC > 0).all(axis=1)  # the 10 samples off the edges: what overlap looks at


def triangle_samples(corners: np.ndarray) -> np.ndarray:
    """[..., 3, 3] triangle corners -> [..., 28, 3] points on a barycentric grid (edges included)."""
    return np.einsum("sk,...kd->...sd", _BARYCENTRIC, corners)


def over_triangle(points: np.ndarray, corners: np.ndarray, tolerance: float) -> np.ndarray:
    """(n,) True where a point projects inside the triangle `corners` (3, 3) within `tolerance`
    of its plane: the part of the surface the face stands for (not a band around its edges)."""
    a, b, c = corners
    normal = np.cross(b - a, c - a)
    area2 = float(normal @ normal)
    if area2 < 1e-18:
        return np.zeros(len(points), dtype=bool)
    rel = points - a
    u = np.cross(rel, c - a) @ normal / area2  # barycentric weight of b
    v = np.cross(b - a, rel) @ normal / area2  # weight of c
    plane = np.abs(rel @ normal) / np.sqrt(area2)
    return (u >= 0) & (v >= 0) & (u + v <= 1) & (plane <= tolerance)


class InputConstraint:
    def __init__(self, cells: np.ndarray, surface: np.ndarray, tolerance: float = TOLERANCE,
                 coverage: float = COVERAGE) -> None:
        """cells: candidate grid cells (k, 3) xyz (PAD rows ignored); surface: dense samples of
        the input surface, in the normalized frame."""
        cells = np.asarray(cells, np.int64).reshape(-1, 3)
        cells = cells[cells[:, 0] != PAD]
        if len(cells) == 0:
            raise ValueError("the input constraint needs at least one vertex candidate")
        abc = cells[:, list(AXIS_PERMUTATION)]
        self.blocks = block_of(abc)
        self.offsets = OFFSET_START + offset_of(abc)
        self.positions = dequantize(cells)
        self.index = {(int(b), int(o)): i for i, (b, o) in enumerate(zip(self.blocks, self.offsets))}
        self.tolerance, self.coverage = float(tolerance), float(coverage)
        surface = np.asarray(surface, np.float64)
        self.surface = cKDTree(surface)
        self.covered = np.zeros(len(surface), dtype=bool)
        # "On the surface" is a lookup in a voxel grid of half the tolerance: voxels holding a
        # sample, dilated by one (a KD-tree query per sample cost more than the model's pass).
        self._cell = self.tolerance / 2
        self._origin = surface.min(axis=0) - 2 * self._cell
        self._dims = np.ceil((surface.max(axis=0) + 2 * self._cell - self._origin) / self._cell).astype(np.int64) + 1
        self._sample_voxel = self._voxel(surface)
        occupied = np.zeros(int(np.prod(self._dims)), dtype=bool)
        occupied[self._sample_voxel] = True
        self._near = binary_dilation(occupied.reshape(self._dims), np.ones((3, 3, 3), bool)).ravel()
        self._near[-1] = False  # the id every point outside the grid maps to
        self._voxel_covered = np.zeros_like(occupied)
        self.version = 0  # faces reported so far: the masks depend on them
        self._made: dict[tuple[int, int], set[int]] = {}  # (a, b) -> c of every face made (a, b, c)
        # (centre, last) -> (thirds making a triangle on the surface, its samples' voxels)
        self._thirds: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._seconds: dict[int, np.ndarray] = {}
        # Coverage only grows, so a candidate that can start no face never can again.
        self._closed: set[int] = set()
        self._witness: dict[int, tuple[int, int, np.ndarray]] = {}  # centre -> (v, w, samples' voxels)
        self._open: tuple[int, np.ndarray] | None = None  # (version when computed, open centres)

    # -- geometry -------------------------------------------------------------------------
    def _voxel(self, points: np.ndarray) -> np.ndarray:
        """Flat voxel ids of points (..., 3); points outside the grid get the last id."""
        index = np.floor((points - self._origin) / self._cell).astype(np.int64)
        inside = ((index >= 0) & (index < self._dims - 1)).all(axis=-1)
        flat = np.ravel_multi_index(tuple(np.moveaxis(np.clip(index, 0, self._dims - 1), -1, 0)), self._dims)
        return np.where(inside, flat, int(np.prod(self._dims)) - 1)

    def _on_surface(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[..., S, 3] -> ([...] True where every sample lies near the surface (within about
        the tolerance), [..., S] each sample's voxel, for the coverage lookup)."""
        voxels = self._voxel(points)
        return self._near[voxels].all(-1), voxels

    def _second(self, centre: int) -> np.ndarray:
        """Candidates v whose edge (centre, v) lies on the surface."""
        if centre not in self._seconds:
            ends = self.positions
            t = np.linspace(0.0, 1.0, 9)[None, :, None]
            edges = self.positions[centre] * (1 - t) + ends[:, None, :] * t
            ok = self._on_surface(edges)[0]
            ok[centre] = False
            self._seconds[centre] = ok
        return self._seconds[centre]

    def _third(self, centre: int, last: int) -> np.ndarray:
        """Candidates v such that triangle (centre, last, v) is on the surface, not flat, not
        made yet and mostly over surface no face covers."""
        key = (centre, last)
        if key not in self._thirds:
            # Both new edges must lie on the surface: test whole triangles only for those.
            third = np.flatnonzero(self._second(centre) & self._second(last))
            corners = np.concatenate([np.broadcast_to(self.positions[[centre, last]], (len(third), 2, 3)),
                                      self.positions[third, None, :]], axis=1)
            normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
            on_surface, nearest = self._on_surface(triangle_samples(corners))
            keep = on_surface & (np.linalg.norm(normal, axis=1) > 1e-6)
            self._thirds[key] = (third[keep], nearest[keep])
        third, nearest = self._thirds[key]
        ok = np.zeros(len(self.positions), dtype=bool)
        ok[third[self._voxel_covered[nearest[:, _INTERIOR]].mean(axis=1) <= OVERLAP]] = True
        made = self._made.get(key)
        if made:
            ok[list(made)] = False
        return ok

    # -- what the pipeline reports ------------------------------------------------------------
    def admit(self, cells: np.ndarray) -> bool:
        """A decoded face, as quantized xyz corners (3, 3): keep it (and account for it) only if
        it obeys the rules given the faces kept before it. The masks guarantee that for a face
        decoded alone; a speculative pass accepts several faces drafted before any of them was
        kept, and a fallback may have had to break a rule."""
        corners = np.asarray(cells, np.int64).reshape(3, 3)
        ids = [self.index.get((int(block_of(c[list(AXIS_PERMUTATION)])),
                               int(OFFSET_START + offset_of(c[list(AXIS_PERMUTATION)])))) for c in corners]
        if None in ids or self._made_before(*ids):
            return False
        on_surface, voxels = self._on_surface(triangle_samples(dequantize(corners)[None]))
        if not on_surface[0] or self._voxel_covered[voxels[0, _INTERIOR]].mean() > OVERLAP:
            return False
        self._add_face(corners, ids)
        return True

    def _add_face(self, corners: np.ndarray, ids: list[int]) -> None:
        self.version += 1
        for i in range(3):
            for j in range(3):
                if i != j:
                    self._made.setdefault((ids[i], ids[j]), set()).add(ids[3 - i - j])
        triangle = dequantize(corners)
        centre = triangle.mean(axis=0)
        reach = float(np.linalg.norm(triangle - centre, axis=1).max()) + self.tolerance
        near = np.asarray(self.surface.query_ball_point(centre, r=reach), dtype=np.int64)
        if len(near):
            self.covered[near[over_triangle(self.surface.data[near], triangle, self.tolerance)]] = True
        # The face's footprint in the voxel grid, for the overlap test of later faces.
        steps = int(np.ceil(np.linalg.norm(triangle - np.roll(triangle, 1, axis=0), axis=1).max() / (self._cell / 2)))
        grid = np.array([(i, j, steps - i - j) for i in range(steps + 1) for j in range(steps + 1 - i)]) / max(steps, 1)
        self._voxel_covered[self._voxel(grid @ triangle)] = True

    @property
    def covered_fraction(self) -> float:
        return float(self.covered.mean())

    def _made_before(self, a: int, b: int, c: int) -> bool:
        return c in self._made.get((a, b), ())

    def _face_is_free(self, centre: int, last: int, third: int, nearest: np.ndarray) -> bool:
        return (self._voxel_covered[nearest[_INTERIOR]].mean() <= OVERLAP
                and not self._made_before(centre, last, third))

    def _starts_a_face(self, centre: int) -> bool:
        """Whether some face (centre, v, w) is still allowed; remembers it as a witness so that
        later checks usually cost one lookup instead of a scan."""
        witness = self._witness.get(centre)
        if witness is not None and self._face_is_free(centre, *witness):
            return True
        for v in np.flatnonzero(self._second(centre)):
            ok = self._third(centre, int(v))
            if ok.any():
                w = int(np.flatnonzero(ok)[0])
                third, nearest = self._thirds[(centre, int(v))]
                self._witness[centre] = (int(v), w, nearest[np.searchsorted(third, w)])
                return True
        return False

    def open_centres(self) -> np.ndarray:
        """Candidates from which a face can still be made."""
        if self._open is None or self._open[0] != self.version:
            for centre in range(len(self.positions)):
                if centre not in self._closed and not self._starts_a_face(centre):
                    self._closed.add(centre)
            is_open = np.ones(len(self.positions), dtype=bool)
            is_open[list(self._closed)] = False
            self._open = (self.version, is_open)
        return self._open[1]

    @property
    def may_end(self) -> bool:
        return self.covered_fraction >= self.coverage or not self.open_centres().any()

    # -- masks ----------------------------------------------------------------------------
    def _vertex(self, vertex: tuple[int, int]) -> int | None:
        return self.index.get((int(vertex[0]), int(vertex[1])))

    def _next_vertices(self, state: GrammarState) -> np.ndarray:
        """Candidates the next vertex of `state`'s patch may be."""
        every = np.ones(len(self.positions), dtype=bool)
        placed = state.patch_vertices
        if placed == 0 or not state.face_vertices:
            return self.open_centres()
        centre = self._vertex(state.face_vertices[0])
        if centre is None:
            return every
        if placed == 1:  # the next vertex must leave a face to make with it
            second = self._second(centre).copy()
            for v in np.flatnonzero(second):
                second[v] = self._third(centre, int(v)).any()
            return second
        last = self._vertex(state.face_vertices[-1])
        return every if last is None else self._third(centre, last)

    def key(self, state: GrammarState) -> tuple:
        """Together with the grammar's own key and `version` (the faces made), what the mask depends on."""
        return state.block, state.face_vertices, state.patch_vertices

    def _narrow(self, allowed: np.ndarray, state: GrammarState, vertices: np.ndarray) -> np.ndarray:
        narrowed = np.zeros_like(allowed)
        narrowed[self.blocks[vertices]] = True
        narrowed[self.offsets[vertices & (self.blocks == state.block)]] = True
        if state.kind in (Kind.START, Kind.IN_FAN):
            narrowed[PATCH_START + self.blocks[self.open_centres()]] = True
        if state.kind == Kind.IN_FAN and self.may_end:
            narrowed[EOS] = True
        return narrowed & allowed

    def restrict(self, allowed: np.ndarray, state: GrammarState) -> np.ndarray:
        """The grammar's sampling mask `allowed` narrowed by the rules above (with fallbacks)."""
        if state.kind == Kind.DONE:
            return allowed
        # Fallback: any candidate but the corners of the face being made (the grammar forbids
        # those offsets, and a block holding nothing else would leave no offset to take).
        others = np.ones(len(self.positions), dtype=bool)
        for vertex in state.face_vertices:
            index = self._vertex(vertex)
            if index is not None:
                others[index] = False
        for vertices in (self._next_vertices(state), others):
            narrowed = self._narrow(allowed, state, vertices)
            if narrowed.any():
                return narrowed
        return allowed


def input_constraint(cells: np.ndarray, vertices: np.ndarray, faces: np.ndarray,
                     seed: int = 0) -> InputConstraint | None:
    """The constraint for a normalized input mesh, or None when it has no candidate vertex.
    The tolerance grows with the spacing of the surface samples on large surfaces: a point on
    the surface can lie about that far from the nearest random sample."""
    if not (np.asarray(cells)[:, 0] != PAD).any():
        return None
    surface = np.asarray(sample_surface(vertices, faces, SURFACE_SAMPLES, seed)[0])
    area = float(np.linalg.norm(np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]],
                                         vertices[faces[:, 2]] - vertices[faces[:, 0]]), axis=1).sum() / 2)
    spacing = np.sqrt(area / SURFACE_SAMPLES)
    return InputConstraint(cells, surface, tolerance=max(TOLERANCE, 2 * spacing))
