"""Faces over vertex ids kept an oriented 2-manifold while they are made, one face at a time.

The rules (every one a guarantee an artist needs, none of which the model knows):
- each directed edge belongs to at most one face: an edge carries at most two faces, and the
  second runs it opposite to the first (winding is decided when a face is made, never guessed);
- a face shares an edge with the faces made (a piece grows as one front), and a vertex it
  touches either shares an edge of the face or lies on the front's boundary: a face may bridge a
  crack in the front (the vertex across it gets a second fan, which later faces usually join);
  the only other way to close a crack would be a face over ground already covered;
- a face with no used vertex starts a new piece only where the caller allows it.

`fill_holes` closes what is left open by ear clipping each boundary loop, so a closed input
piece always ends closed."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from backend.mesh.cleanup import smallest_angles

Face = tuple[int, int, int]


class HalfEdges:
    def __init__(self, count: int) -> None:
        self.edge = np.zeros((count, count), dtype=bool)  # edge[a, b]: a face runs a -> b
        self.used = np.zeros(count, dtype=bool)
        self.open_fan = np.zeros(count, dtype=bool)  # has an edge only one face runs from it
        self.faces: list[Face] = []
        self._vertex_sets: set[frozenset[int]] = set()

    def legal(self, a: int, b: int, thirds: np.ndarray, may_start: bool) -> tuple[np.ndarray, np.ndarray]:
        """For the face {a, b, x} of each x in `thirds`: (legal wound (a, b, x), legal wound
        (b, a, x)). `may_start`: a face touching no used vertex may begin a new piece."""
        thirds = np.asarray(thirds, np.int64)
        return self._wound(a, b, thirds, may_start), self._wound(b, a, thirds, may_start)

    def _wound(self, a: int, b: int, x: np.ndarray, may_start: bool) -> np.ndarray:
        """Face (a, b, x): edges a->b, b->x, x->a; an edge is shared when its reverse exists."""
        e, used = self.edge, self.used
        free = ~e[a, b] & ~e[b, x] & ~e[x, a]
        shares_ab, shares_bx, shares_xa = e[b, a], e[x, b], e[a, x]
        open_fan = self.open_fan
        fan_a = ~used[a] | shares_ab | shares_xa | open_fan[a]
        fan_b = ~used[b] | shares_ab | shares_bx | open_fan[b]
        fan_x = ~used[x] | shares_bx | shares_xa | open_fan[x]
        attached = shares_ab | shares_bx | shares_xa | (may_start & ~used[a] & ~used[b] & ~used[x])
        return free & fan_a & fan_b & fan_x & attached & (x != a) & (x != b)

    def grow(self) -> int:
        """Room for one more vertex (a hole's centre); -> its id."""
        self.edge = np.pad(self.edge, ((0, 1), (0, 1)))
        self.used = np.append(self.used, False)
        self.open_fan = np.append(self.open_fan, False)
        return len(self.used) - 1

    def closes(self, face: Face) -> bool:
        """Whether the wound `face` shares all three of its edges (fills a triangular hole)."""
        a, b, c = face
        return bool(self.edge[b, a] and self.edge[c, b] and self.edge[a, c])

    def legal_face(self, face: Face, may_start: bool) -> bool:
        """`legal` for one wound face (a, b, c), without arrays: the witnesses' cheap check."""
        a, b, c = face
        e, used, open_fan = self.edge, self.used, self.open_fan
        if a == b or b == c or c == a or e[a, b] or e[b, c] or e[c, a]:
            return False
        ab, bc, ca = e[b, a], e[c, b], e[a, c]
        return bool((not used[a] or ab or ca or open_fan[a]) and (not used[b] or ab or bc or open_fan[b])
                    and (not used[c] or bc or ca or open_fan[c])
                    and (ab or bc or ca or (may_start and not (used[a] or used[b] or used[c]))))

    def made(self, a: int, b: int, c: int) -> bool:
        return frozenset((a, b, c)) in self._vertex_sets

    def add(self, face: Face) -> int:
        """Make `face` -> how many boundary edges it adds (3 alone, -3 closing a triangular hole)."""
        a, b, c = face
        shared = int(self.edge[[b, c, a], [a, b, c]].sum())
        self.edge[[a, b, c], [b, c, a]] = True
        self.used[[a, b, c]] = True
        self.faces.append((a, b, c))
        self._vertex_sets.add(frozenset(face))
        for v in face:
            self.open_fan[v] = bool((self.edge[v] & ~self.edge[:, v]).any())
        return 3 - 2 * shared

    @property
    def boundary(self) -> np.ndarray:
        """(k, 2) directed edges a -> b of one face whose reverse no face runs."""
        return np.argwhere(self.edge & ~self.edge.T)

    def boundary_loops(self, positions: np.ndarray, normals: np.ndarray) -> list[list[int]]:
        """Each hole as its vertices in order, v0 -> v1 -> ... along the faces' edges (the faces
        that close it run them the other way). At a vertex with two fans the hole goes on along
        the outgoing boundary edge met first turning counter-clockwise (about the vertex's
        `normals`) from the edge it came by: the next side of the same gap."""
        outgoing: dict[int, list[int]] = {}
        for a, b in self.boundary.tolist():
            outgoing.setdefault(a, []).append(b)
        loops = []
        while outgoing:
            start = next(iter(outgoing))
            loop, previous, vertex = [start], None, start
            while True:
                choices = outgoing.get(vertex)
                if not choices:
                    break
                following = choices[0] if len(choices) == 1 or previous is None else \
                    _first_counter_clockwise(positions, normals[vertex], vertex, previous, choices)
                choices.remove(following)
                if not choices:
                    del outgoing[vertex]
                previous, vertex = vertex, following
                if vertex == start:
                    break
                loop.append(vertex)
            if len(loop) >= 3:
                loops.append(loop)
        return loops


def _first_counter_clockwise(positions: np.ndarray, normal: np.ndarray, vertex: int, came_from: int,
                             choices: list[int]) -> int:
    back = positions[came_from] - positions[vertex]

    def angle(w: int) -> float:
        out = positions[w] - positions[vertex]
        return float(np.arctan2(np.cross(back, out) @ normal, back @ out)) % (2 * np.pi)

    return min(choices, key=angle)


def smallest_angle(corners: np.ndarray) -> float:
    """Smallest interior angle of one triangle (3, 3), in degrees (0 when degenerate)."""
    return float(smallest_angles(corners[None])[0])


FLAT_DEGREES = 0.0573  # 1 milliradian: three corners this close to a line make no face


def fill_holes(mesh: HalfEdges, positions: np.ndarray, loops: list[list[int]],
               score: Callable[[Face], float], added: Callable[[Face], None]) -> None:
    """Close each loop by ear clipping: an ear (next, v, previous) runs the loop's two edges at v
    backwards and adds one edge, which must not exist yet (else an edge would get a third face).
    The ear with the highest `score(face)` goes first (the caller ranks how well it sits on the
    surface), ties broken by the largest smallest angle; each face made is added to `mesh`, then
    reported to `added`. A loop with no such ear left stays open (`fan_hole` closes it)."""
    for loop in loops:
        loop = list(loop)
        while len(loop) >= 3:
            best, best_score = None, -np.inf
            for i, v in enumerate(loop):
                previous, following = loop[i - 1], loop[(i + 1) % len(loop)]
                if mesh.edge[previous, following] or (len(loop) > 3 and mesh.edge[following, previous]):
                    continue
                face = (following, v, previous)
                angle = smallest_angle(positions[list(face)])
                if angle < FLAT_DEGREES or mesh.made(*face):  # no face at all, or a face's back
                    continue
                rank = score(face) + angle / 180.0
                if rank > best_score:
                    best, best_score = i, rank
            if best is None:
                break
            face = (loop[(best + 1) % len(loop)], loop[best], loop[best - 1])
            mesh.add(face)
            added(face)
            del loop[best]


def fan_hole(mesh: HalfEdges, loop: list[int], centre: int, added: Callable[[Face], None]) -> None:
    """Close a loop of distinct vertices with a fan around a new vertex `centre` (every edge it
    adds is new, so no edge gets a third face)."""
    for a, b in zip(loop, loop[1:] + loop[:1]):
        face = (b, a, centre)
        mesh.add(face)
        added(face)
