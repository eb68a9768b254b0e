"""Decoding on the input mesh: the model chooses and connects, the input says where, and the
rules guarantee the topology an artist needs.

Left alone, the model places vertices where its sequence statistics put them and ends a mesh
early (docs/experiments/conditioning.md). For a mesh input, `InputConstraint` narrows the grammar
masks of every decoder (AR, speculative drafts and verification alike):

- every vertex is a vertex candidate, and every edge an edge of the candidates' layout or a
  flipped diagonal (the input quadric-decimated, or quad-remeshed for quads: backend.mesh.layout);
- a face lies on the input surface (backend.mesh.surface), over surface no face covers yet (at
  most `OVERLAP` of it), and holds no other candidate over its area or on its edges (no
  T-junctions, and no candidate is skipped, so the face count follows the candidate count);
- the faces stay an oriented manifold (backend.mesh.halfedges): an edge carries at most two
  faces, wound opposite; faces around a vertex form one fan; each input piece grows as one
  front from one start;
- EOS is allowed once every closed input piece is closed and the open ones are covered, or once
  no candidate can start another face.

Rules that would leave no token fall back, in order, to any candidate vertex and then to the
grammar's own mask, so decoding never stalls. The pipeline hands every decoded face to `admit`,
which keeps it (wound as the rules say) only if it obeys the rules given the faces kept so far:
a speculative pass accepts several faces drafted together, and a fallback may break a rule.
`finish` closes the holes left on closed pieces by ear clipping."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from backend.mesh.candidates import PAD, candidate_grid
from backend.mesh.cleanup import SLIVER_DEGREES, smallest_angles
from backend.mesh.layout import Layout, choose_layout
from backend.mesh.halfedges import FLAT_DEGREES, HalfEdges, fan_hole, fill_holes, smallest_angle
from backend.mesh.quantize import dequantize, quantize_coords
from backend.mesh.surface import SurfaceIndex, triangle_samples
from backend.tokenizer.grammar import GrammarState, Kind
from backend.tokenizer.vocab import AXIS_PERMUTATION, EOS, OFFSET_START, PATCH_START, block_of, offset_of

COVERAGE = 0.99   # fraction of an open piece's surface samples to cover before EOS
OVERLAP = 0.5     # largest covered fraction of the samples under a new face's core
HOLE_COVERAGE = 0.2  # a loop is a hole to close once its piece is this covered (else it is most of the piece)
MIN_FACING = 1 / 3  # share of the samples under a face that must face its way (a thin part's two sides: about half)
FLIP_COS = np.cos(np.radians(40.0))  # two triangles whose normals differ less may swap their diagonal
CORE = 0.75       # the core: the face scaled about its centroid (on a curved surface the ground
                  # just inside a shared edge may also lie within tolerance of the neighbour's plane)
INSIDE_MARGIN = 0.01  # barycentric slack: a candidate this close to a face's edge counts as on it
ON_FACE = 1.0 / 128   # half a grid step: a candidate this near a face's plane lies on the face (a T-junction
                      # or a skipped vertex); a looser test would catch a side's vertex near a rim


def candidates_over(corners: np.ndarray, points: np.ndarray, tolerance: float) -> np.ndarray:
    """(m, n) True where point n projects onto triangle m (3, 3) or its edges, within
    `tolerance` of its plane (corners themselves included)."""
    a, b, c = corners[:, 0, None], corners[:, 1, None], corners[:, 2, None]
    normal = np.cross(b - a, c - a)
    area2 = np.maximum((normal * normal).sum(-1), 1e-18)
    rel = points[None] - a
    u = (np.cross(rel, c - a) * normal).sum(-1) / area2
    v = (np.cross(b - a, rel) * normal).sum(-1) / area2
    plane = np.abs((rel * normal).sum(-1)) / np.sqrt(area2)
    m = -INSIDE_MARGIN
    return (u >= m) & (v >= m) & (u + v <= 1 - m) & (plane <= tolerance)


class InputConstraint:
    def __init__(self, cells: np.ndarray, surface: SurfaceIndex, graph: EdgeGraph | None = None,
                 coverage: float = COVERAGE, layout: str = "decimation") -> None:
        """cells: candidate grid cells (k, 3) xyz (PAD rows ignored); surface: the normalized
        input; graph: the edges a face may have (None: any pair of candidates); layout: what the
        candidates were laid out by (backend.mesh.layout), for the stats."""
        cells = np.asarray(cells, np.int64).reshape(-1, 3)
        cells = cells[cells[:, 0] != PAD]
        if len(cells) == 0:
            raise ValueError("the input constraint needs at least one vertex candidate")
        self.cells = cells
        self.layout = layout
        self.candidates = len(cells)  # `finish` may add a vertex or two to `cells` for a hole
        abc = cells[:, list(AXIS_PERMUTATION)]
        self.blocks = block_of(abc)
        self.offsets = OFFSET_START + offset_of(abc)
        self.positions = dequantize(cells)
        self.index = {(int(b), int(o)): i for i, (b, o) in enumerate(zip(self.blocks, self.offsets))}
        self.surface, self.coverage = surface, float(coverage)
        self.tolerance = surface.tolerance
        self.piece = surface.piece_at(self.positions)
        self.pieces = np.unique(self.piece)
        self.closed_piece = surface.piece_closed[self.piece]
        self.started = np.zeros(len(surface.piece_closed), dtype=bool)
        self.open_edges = np.zeros(len(surface.piece_closed), np.int64)  # boundary edges per piece
        self.mesh = HalfEdges(len(cells))
        graph = graph or EdgeGraph.complete(len(cells))
        self.edges = _symmetric(graph.edges, len(cells))
        # A flip's faces are half of a flipped pair: one flip edge and two of the decimation's.
        self.flip = _symmetric(graph.flips, len(cells))
        self.seeds = graph.faces  # where `finish` may start a front the model left untouched
        self._seeded = set(self.seeds.ravel().tolist())
        self.blocked = np.zeros_like(self.edges)  # edges crossing one made
        self._crossing: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for first, second in graph.crossing.tolist():
            self._crossing.setdefault(tuple(first), []).append(tuple(second))
            self._crossing.setdefault(tuple(second), []).append(tuple(first))
        self.version = 0  # faces reported so far: the masks depend on them
        self.filled = 0   # faces added by `finish` rather than decoded
        # sorted (centre, last) -> `_triangles`: geometry only, so it never goes stale.
        self._geometry: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._seconds: dict[int, np.ndarray] = {}
        self._tree: cKDTree | None = None  # over `positions`, for `_candidates_near`
        self._thirds: dict[tuple[int, int], np.ndarray] = {}  # kept up to date by `_forget_thirds`
        self._witness: dict[int, tuple[int, int]] = {}  # centre -> (v, w) of a face still allowed
        # Open centres, kept up to date: a face changes what can be made only near itself (its
        # vertices' neighbours' faces are the ones it can block, overlap or complete).
        self._is_open = np.zeros(len(cells), dtype=bool)
        self._stale: np.ndarray | None = np.ones(len(cells), dtype=bool)  # None: none stale

    # -- geometry (static) --------------------------------------------------------------------

    def _second(self, centre: int) -> np.ndarray:
        """Candidates v whose edge (centre, v) lies on the surface."""
        if centre not in self._seconds:
            ends = np.flatnonzero(self.edges[centre])  # a few graph neighbours of thousands
            ends = ends[ends != centre]
            t = np.linspace(0.0, 1.0, 9)[None, :, None]
            edges = self.positions[centre] * (1 - t) + self.positions[ends, None, :] * t
            ok = np.zeros(len(self.positions), dtype=bool)
            ok[ends] = self.surface.on_surface(edges)
            self._seconds[centre] = ok
        return self._seconds[centre]

    def _triangles(self, centre: int, last: int) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray, int]]]:
        """(thirds v making a face (centre, last, v) on the surface with no other candidate on
        it, for each the samples under its core facing the way of (lo, hi, v), those facing
        the other way, and their number; lo, hi = sorted (centre, last))."""
        key = (min(centre, last), max(centre, last))
        if key not in self._geometry:
            third = np.flatnonzero(self._second(centre) & self._second(last))
            corners = np.concatenate([np.broadcast_to(self.positions[list(key)], (len(third), 2, 3)),
                                      self.positions[third, None, :]], axis=1)
            normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
            near = self._candidates_near(corners)
            own = (near[None, :] == third[:, None]) | (near == centre) | (near == last)
            over = candidates_over(corners, self.positions[near], ON_FACE) & ~own
            flips = self.flip[centre, last] + self.flip[centre, third].astype(int) + self.flip[last, third]
            # A flip is there to make a better triangle: never a sliver (the decimation's own may be).
            keep = (self.surface.on_surface(triangle_samples(corners)) & (np.linalg.norm(normal, axis=1) > 1e-6)
                    & ~over.any(axis=1) & ((flips == 0) | ((flips == 1) & (smallest_angles(corners) >= SLIVER_DEGREES))))
            self._geometry[key] = (third[keep], self._ground(corners[keep]))
        return self._geometry[key]

    def _candidates_near(self, corners: np.ndarray) -> np.ndarray:
        """Candidate rows within reach of any of the triangles (m, 3, 3): the only ones that can
        lie on them (a KD-tree instead of testing thousands of candidates per triangle)."""
        if self._tree is None or self._tree.n != len(self.positions):  # `finish` adds vertices
            self._tree = cKDTree(self.positions)
        centres = corners.mean(axis=1)
        # barycentric slack lets a point lie a little outside: 3 margins of the radius covers it
        reach = (1 + 3 * INSIDE_MARGIN) * np.linalg.norm(corners - centres[:, None], axis=2).max(axis=1) + ON_FACE
        rows = [np.asarray(r, np.int64) for r in self._tree.query_ball_point(centres, r=reach)]
        return np.unique(np.concatenate(rows)) if rows else np.zeros(0, np.int64)

    def _ground(self, corners: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, bool]]:
        """For triangles (m, 3, 3): the surface samples under each one's core facing its way,
        those facing the other way, and whether the sample nearest its centre faces its way
        (what decides for a face too small to stand over any sample)."""
        normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        nearest = self.surface.normals[self.surface.nearest(corners.mean(axis=1))]
        ground = []
        for samples, normal, near in zip(self.surface.under(corners, CORE), normals, nearest):
            facing = self.surface.normals[samples] @ normal > 0
            ground.append((samples[facing], samples[~facing], bool(near @ normal > 0)))
        return ground

    # -- topology and coverage (change with every face) -----------------------------------------
    def _third(self, centre: int, last: int) -> np.ndarray:
        """Candidates v such that face (centre, last, v) may be made now, in either winding
        (read-only; the masks, the witnesses and EOS ask for the same pairs many times, and a
        face changes the answer only near itself: `_forget_thirds`)."""
        key = (centre, last)
        entry = self._thirds.get(key)
        if entry is None or len(entry) != len(self.positions):  # `finish` may add a vertex
            entry = self._thirds[key] = self._compute_third(centre, last)
        return entry

    def _forget_thirds(self, near: np.ndarray | None) -> None:
        """Drop the answers a new face may have changed: those whose centre or last vertex is
        `near` it (its graph 2-ring: a face can only block, overlap, share an edge with or
        complete faces over its neighbours), or all of them (`near` None)."""
        if near is None:
            self._thirds.clear()
            return
        for key in [key for key in self._thirds if near[key[0]] or near[key[1]]]:
            del self._thirds[key]

    def _compute_third(self, centre: int, last: int) -> np.ndarray:
        third, ground = self._triangles(centre, last)
        ok = np.zeros(len(self.positions), dtype=bool)
        if len(third) == 0 or self.blocked[centre, last]:
            return ok
        forward, backward = self.mesh.legal(centre, last, third, not self.started[self.piece[centre]])
        crossing = self.blocked[centre, third] | self.blocked[last, third]
        ahead = centre < last  # (centre, last, v) runs as (lo, hi, v)
        for i in np.flatnonzero((forward | backward) & ~crossing):
            v = int(third[i])
            ok[v] = not self.mesh.made(centre, last, v) and (
                (forward[i] and self._free((centre, last, v), ground[i], ahead))
                or (backward[i] and self._free((last, centre, v), ground[i], not ahead)))
        return ok

    def _free(self, face: tuple[int, int, int], ground: tuple[np.ndarray, np.ndarray, bool], ahead: bool) -> bool:
        """Whether the wound `face` (running as (lo, hi, v) when `ahead`) may stand where it is:
        enough of the ground under it faces its way (else it is wound against the surface, a
        fold), little of that is taken already (the other side of a thin part is under it too
        and does not count), and it does not close its piece's last hole before the piece is
        covered (a small closed surface inside a thin part is still a closed surface)."""
        samples, others = (ground[0], ground[1]) if ahead else (ground[1], ground[0])
        total = len(samples) + len(others)
        if total == 0 and ground[2] != ahead:
            return False
        if total and (len(samples) < MIN_FACING * total or self.surface.covered[samples].mean() > OVERLAP):
            return False
        piece = self.piece[face[0]]
        if self.open_edges[piece] == 3 and self.mesh.closes(face):
            return self.surface.covered_fraction(np.array([piece])) >= self.coverage
        return True

    def _wound(self, ids: list[int], may_start: bool | None = None) -> tuple[int, int, int] | None:
        """The face over candidates `ids` wound as the rules allow, or None when it may not be
        made. `may_start`: whether it may begin a front of its own (default: only on a piece not
        started yet)."""
        a, b, c = ids
        third, ground = self._triangles(a, b)
        where = np.flatnonzero(third == c)
        if (len(where) == 0 or self.mesh.made(a, b, c) or self.blocked[a, b] or self.blocked[b, c]
                or self.blocked[c, a]):
            return None
        may_start = not self.started[self.piece[a]] if may_start is None else may_start
        forward, backward = self.mesh.legal_face((a, b, c), may_start), self.mesh.legal_face((b, a, c), may_start)
        if forward and backward:  # a new piece's first face: wound as most of the ground under it faces
            facing, others, near = ground[where[0]]
            ahead = len(facing) > len(others) or (len(facing) == len(others) and near)
            forward = ahead == (a < b)
            backward = not forward
        if forward and self._free((a, b, c), ground[where[0]], a < b):
            return a, b, c
        if backward and self._free((b, a, c), ground[where[0]], b < a):
            return b, a, c
        return None

    # -- what the pipeline reports ------------------------------------------------------------
    def admit(self, cells: np.ndarray) -> np.ndarray | None:
        """A decoded face, as quantized xyz corners (3, 3) -> the same corners wound as the rules
        say, once accounted for, or None when it breaks a rule given the faces kept before it."""
        corners = np.asarray(cells, np.int64).reshape(3, 3)
        abc = corners[:, list(AXIS_PERMUTATION)]
        ids = [self.index.get((int(b), int(o))) for b, o in zip(block_of(abc), OFFSET_START + offset_of(abc))]
        if None in ids:
            return None
        face = self._wound(ids)
        if face is None:
            return None
        self._add_face(face)
        return self.cells[list(face)]

    def _add_face(self, face: tuple[int, int, int]) -> None:
        self.version += 1
        piece = self.piece[face[0]]
        last_hole = self.open_edges[piece] <= 3  # closing the last hole waits for coverage:
        self.open_edges[piece] += self.mesh.add(face)
        last_hole |= self.open_edges[piece] <= 3  # a rule that reaches past the face's neighbours
        self._block_crossing(face)
        piece_started = not self.started[self.piece[list(face)]].all()
        self.started[self.piece[list(face)]] = True
        near = self._mark_stale(face, piece_started or last_hole)
        self._forget_thirds(None if piece_started or last_hole else near)
        self.surface.cover(self.positions[list(face)])

    def _block_crossing(self, face: tuple[int, int, int]) -> None:
        for u, v in ((face[0], face[1]), (face[1], face[2]), (face[2], face[0])):
            for p, q in self._crossing.get((min(u, v), max(u, v)), ()):
                self.blocked[p, q] = self.blocked[q, p] = True

    def finish(self) -> list[np.ndarray]:
        """Complete what the model left: grow every front by the rules alone (the widest legal
        face on a boundary edge first; a piece the model never started from one of the
        decimation's faces), then close the holes left on closed input pieces by ear clipping
        (ears that keep the rules go first) -> the faces added, as corner cells (3, 3), wound
        like their neighbours."""
        faces: list[tuple[int, int, int]] = []
        dead: set[tuple[int, int]] = set()  # boundary edges no face could go on (a face far away rarely changes that)
        face = None
        while (face := self._next_rule_face(face, dead)) is not None:
            self._add_face(face)
            faces.append(face)
        faces += self._close_holes()
        self.filled += len(faces)
        return [self.cells[list(face)] for face in faces]

    def _next_rule_face(self, recent: tuple[int, int, int] | None, dead: set[tuple[int, int]]
                        ) -> tuple[int, int, int] | None:
        """The next face the rules make: on a boundary edge of `recent` (the face made last) if
        one can go there, else on any other boundary edge not in `dead` (those that could not,
        as the scan finds them), else a new front."""
        edges = self.mesh.boundary.tolist()
        if recent is not None:
            own = {(recent[0], recent[1]), (recent[1], recent[2]), (recent[2], recent[0])}
            edges.sort(key=lambda edge: tuple(edge) not in own)
        for a, b in edges:  # a new face runs a boundary edge backwards
            if (a, b) in dead:
                continue
            for x in sorted(np.flatnonzero(self._third(b, a)).tolist(),
                            key=lambda x: -smallest_angle(self.positions[[b, a, x]])):
                if (face := self._wound([b, a, x])) is not None:
                    return face
            dead.add((a, b))
        for seed in self.seeds.tolist():  # a new front where the fronts so far cannot go on
            if not self.mesh.used[seed].any() and (face := self._wound(seed, may_start=True)) is not None:
                return face
        return None

    def _close_holes(self) -> list[tuple[int, int, int]]:
        loops = self._holes()

        def score(face: tuple[int, int, int]) -> float:
            corners = self.positions[list(face)]
            over = candidates_over(corners[None], self.positions, ON_FACE)[0]
            over[list(face)] = False
            a, b, c = face
            allowed = (self.edges[a, b] and self.edges[b, c] and self.edges[c, a]
                       and not (self.blocked[a, b] or self.blocked[b, c] or self.blocked[c, a]))
            return (8.0 * allowed + 4.0 * self._free(face, self._ground(corners[None])[0], True)
                    + 2.0 * (not over.any()) + 1.0 * bool(self.surface.on_surface(triangle_samples(corners[None]))[0]))

        faces: list[tuple[int, int, int]] = []

        def added(face: tuple[int, int, int]) -> None:
            self.version += 1
            self._block_crossing(face)
            self.surface.cover(self.positions[list(face)])
            faces.append(face)

        fill_holes(self.mesh, self.positions, loops, score, added)
        for loop in self._holes():  # no ear left: a fan around a new vertex on the surface
            for simple in _simple_loops(loop):
                centre = self._new_vertex(simple)
                if centre is not None:
                    fan_hole(self.mesh, simple, centre, added)
        return faces

    def _holes(self) -> list[list[int]]:
        """The holes to close: every boundary loop but those along the input's own open border
        (most of their vertices on it) and those of a piece still mostly bare."""
        normals = self.surface.normals[self.surface.nearest(self.positions)]
        border = self.surface.on_border(self.positions)
        covered = {piece: self.surface.covered_fraction(np.array([piece])) for piece in self.pieces}
        return [loop for loop in self.mesh.boundary_loops(self.positions, normals)
                if border[loop].mean() < 0.5 and covered.get(self.piece[loop[0]], 1.0) >= HOLE_COVERAGE]

    def _new_vertex(self, loop: list[int]) -> int | None:
        """A vertex to fan `loop` around, in a free grid cell near its centre (at the nearest
        surface sample, else at the centre, else one step off either) from which no fan face is
        flat; None when there is none."""
        point = self.positions[loop].mean(axis=0)
        sample = self.surface.points[self.surface.nearest(point)]
        steps = [np.zeros(3, np.int64)] + [np.eye(3, dtype=np.int64)[i] * sign for i in range(3) for sign in (1, -1)]
        for cell in [quantize_coords(sample)] + [quantize_coords(point) + step for step in steps]:
            position = dequantize(cell[None])[0]
            flat = any(smallest_angle(np.array([self.positions[b], self.positions[a], position])) < FLAT_DEGREES
                       for a, b in zip(loop, loop[1:] + loop[:1]))
            if not flat and not (self.cells == cell).all(axis=1).any() and ((cell >= 0) & (cell < 128)).all():
                piece = self.piece[loop[0]]
                self.cells = np.vstack([self.cells, cell])
                self.positions = np.vstack([self.positions, position[None]])
                self.piece = np.append(self.piece, piece)
                self.closed_piece = np.append(self.closed_piece, self.surface.piece_closed[piece])
                return self.mesh.grow()
        return None

    def covered_fraction(self) -> float:
        return self.surface.covered_fraction()

    def _starts_a_face(self, centre: int) -> bool:
        """Whether some face (centre, v, w) is still allowed; remembers one as a witness so that
        later checks usually cost one lookup instead of a scan."""
        witness = self._witness.get(centre)
        if witness is not None and self._wound([centre, *witness]) is not None:
            return True
        for v in np.flatnonzero(self._second(centre)):
            ok = self._third(centre, int(v))
            if ok.any():
                self._witness[centre] = (int(v), int(np.flatnonzero(ok)[0]))
                return True
        return False

    def open_centres(self) -> np.ndarray:
        """Candidates from which a face can still be made: vertices on a boundary of the faces
        made (a piece grows as one front), and any vertex of a piece not started yet."""
        if self._stale is not None:
            for centre in np.flatnonzero(self._stale):
                if not self.started[self.piece[centre]] and len(self.seeds):
                    # A piece not started yet: any corner of a decimation face can begin it (a
                    # scan of every candidate here cost seconds before the first face).
                    self._is_open[centre] = centre in self._seeded
                else:
                    self._is_open[centre] = self.mesh.open_fan[centre] and self._starts_a_face(int(centre))
            self._stale = None
        return self._is_open

    def _mark_stale(self, face: tuple[int, int, int], everywhere: bool) -> np.ndarray:
        """Open centres to check again after `face` (every candidate when `everywhere`); -> its
        graph 2-ring. A face only takes room away (edges, ground, crossings) except along its
        own edges, where a neighbour may now attach: so a centre in the 2-ring may close, but
        only one in the 1-ring may open."""
        ring = self.edges[list(face)].any(axis=0)
        ring[list(face)] = True
        two_ring = self.edges[ring].any(axis=0) | ring
        stale = np.ones(len(self._is_open), dtype=bool) if everywhere else ring | (two_ring & self._is_open)
        self._stale = stale if self._stale is None else self._stale | stale
        return two_ring

    @property
    def may_end(self) -> bool:
        closed = self.pieces[self.surface.piece_closed[self.pieces]]
        sealed = not self.open_edges[closed].any()  # boundary edges per piece, kept by `_add_face`
        open_pieces = self.pieces[~self.surface.piece_closed[self.pieces]]
        covered = self.surface.covered_fraction(open_pieces) >= self.coverage if len(open_pieces) else True
        done = self.started[self.pieces].all() and sealed and covered
        return done or not self.open_centres().any()

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
            second = np.zeros(len(self.positions), dtype=bool)
            for v in np.flatnonzero(self._second(centre)):
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


def _simple_loops(loop: list[int]) -> list[list[int]]:
    """A loop that passes a vertex twice, split there into loops that do not."""
    for i, v in enumerate(loop):
        if v in loop[i + 1:]:
            j = loop.index(v, i + 1)
            return _simple_loops(loop[i:j]) + _simple_loops(loop[j:] + loop[:i])
    return [loop] if len(loop) >= 3 else []


@dataclass(frozen=True)
class EdgeGraph:
    """The edges a face may have, as pairs of candidate rows: `edges` (the decimation's and their
    flips), `flips` (the flips alone), `crossing` (k, 2, 2) pairs of edges that cross (an edge
    and its flip, the flips of two edges of one triangle), `faces` the decimation's triangles."""
    edges: np.ndarray
    flips: np.ndarray
    crossing: np.ndarray
    faces: np.ndarray

    @classmethod
    def complete(cls, count: int) -> "EdgeGraph":
        """Every pair of `count` candidates, nothing crossing (a constraint built without a decimation)."""
        pairs = np.argwhere(np.triu(np.ones((count, count), dtype=bool), 1))
        none = np.zeros((0, 2), np.int64)
        return cls(pairs, none, none.reshape(0, 2, 2), none.reshape(0, 3))


def _symmetric(pairs: np.ndarray, count: int) -> np.ndarray:
    matrix = np.zeros((count, count), dtype=bool)
    matrix[pairs[:, 0], pairs[:, 1]] = matrix[pairs[:, 1], pairs[:, 0]] = True
    return matrix


def candidate_edges(cells: np.ndarray, layout: Layout) -> EdgeGraph:
    """The edge graph over `cells` of the layout: its edges and, for two of its triangles sharing
    an edge whose normals differ by less than 40°, the other diagonal (the flip a quad or a better
    triangle may need; across a crease it would cut the crease away). For quad output only the
    layout's quad diagonals flip, so every face stays half of a layout quad. Faces over other pairs would
    be long and thin: the layout already chose which vertices neighbour each other."""
    row = {tuple(c): i for i, c in enumerate(cells.tolist())}
    rows = np.array([row.get(tuple(c), -1) for c in quantize_coords(layout.vertices).tolist()], np.int64)
    ids = rows[layout.faces]
    ids = ids[(ids >= 0).all(axis=1) & (ids[:, 0] != ids[:, 1]) & (ids[:, 1] != ids[:, 2]) & (ids[:, 2] != ids[:, 0])]
    opposite: dict[tuple[int, int], list[int]] = {}
    for a, b, c in ids.tolist():
        for u, v, w in ((a, b, c), (b, c, a), (c, a, b)):
            opposite.setdefault((min(u, v), max(u, v)), []).append(w)
    positions = dequantize(cells)

    def flat(u: int, v: int, w: list[int]) -> bool:
        n1, n2 = (np.cross(positions[v] - positions[u], positions[x] - positions[u]) for x in w)
        return abs(float(n1 @ n2)) >= FLIP_COS * np.linalg.norm(n1) * np.linalg.norm(n2)

    flippable = None
    if layout.diagonals is not None:
        flippable = {(min(u, v), max(u, v)) for u, v in rows[layout.diagonals].tolist()}
    flip = {edge: (min(w), max(w)) for edge, w in opposite.items()
            if len(w) == 2 and w[0] != w[1] and (flippable is None or edge in flippable) and flat(*edge, w)}
    crossing = [(edge, flipped) for edge, flipped in flip.items()]
    for a, b, c in ids.tolist():
        sides = [flip.get((min(u, v), max(u, v))) for u, v in ((a, b), (b, c), (c, a))]
        sides = [side for side in sides if side is not None]
        crossing += [(sides[i], sides[j]) for i in range(len(sides)) for j in range(i + 1, len(sides))]
    flips = sorted(set(flip.values()) - set(opposite))  # a diagonal that is also an edge stays an edge
    return EdgeGraph(np.array(sorted(set(opposite) | set(flips)), np.int64).reshape(-1, 2),
                     np.array(flips, np.int64).reshape(-1, 2), np.array(crossing, np.int64).reshape(-1, 2, 2), ids)


def input_constraint(vertices: np.ndarray, faces: np.ndarray, target_faces: int, seed: int = 0,
                     quads: bool = False, layout_mesh: tuple[np.ndarray, np.ndarray] | None = None
                     ) -> tuple[np.ndarray, InputConstraint] | None:
    """(candidate cells, the constraint) for a normalized input mesh decoded to about
    `target_faces` triangles (laid out for quads with `quads`), or None when it has no candidate
    vertex. Faces may stray from the surface as far as the layout's own faces do (a coarse target
    on a curved input needs more room than the fine default tolerance)."""
    # `layout_mesh`: what to lay the candidates out on when not the input (symmetry: the whole
    # input's decimation cut at the plane, backend.mesh.symmetry); the surface stays the input.
    layout = choose_layout(*(layout_mesh or (vertices, faces)), target_faces, quads)
    cells = candidate_grid(layout.vertices, len(layout.vertices))
    if len(layout.vertices) == 0 or not (cells[:, 0] != PAD).any():
        return None
    probe = SurfaceIndex(vertices, faces, seed)
    samples = triangle_samples(layout.vertices[layout.faces]).reshape(-1, 3)
    deviation = float(probe.tree.query(samples)[0].max()) if len(samples) else 0.0
    surface = probe if deviation <= probe.tolerance else SurfaceIndex(vertices, faces, seed, tolerance=1.25 * deviation)
    return cells, InputConstraint(cells, surface, candidate_edges(cells, layout), layout=layout.kind)
