"""Faces over vertex ids kept an oriented 2-manifold while they are made, one face at a time.

The rules (every one a guarantee an artist needs, none of which the model knows):
- each directed edge belongs to at most one face: an edge carries at most two faces, and the
  second runs it opposite to the first (winding is decided when a face is made, never guessed);
- a face touching a vertex that already has faces shares an edge there: the faces around a vertex
  stay one fan (no pinched vertices), so a piece grows as one front and its boundary stays simple
  loops;
- a face with no used vertex starts a new piece only where the caller allows it.

`fill_holes` closes what is left open by ear clipping each boundary loop, so a closed input
piece always ends closed."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Face = tuple[int, int, int]


class HalfEdges:
    def __init__(self, count: int) -> None:
        self.edge = np.zeros((count, count), dtype=bool)  # edge[a, b]: a face runs a -> b
        self.used = np.zeros(count, dtype=bool)
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
        fan_a = ~used[a] | shares_ab | shares_xa
        fan_b = ~used[b] | shares_ab | shares_bx
        fan_x = ~used[x] | shares_bx | shares_xa
        attached = used[a] | used[b] | used[x] | may_start
        return free & fan_a & fan_b & fan_x & attached & (x != a) & (x != b)

    def made(self, a: int, b: int, c: int) -> bool:
        return frozenset((a, b, c)) in self._vertex_sets

    def add(self, face: Face) -> None:
        a, b, c = face
        self.edge[[a, b, c], [b, c, a]] = True
        self.used[[a, b, c]] = True
        self.faces.append((a, b, c))
        self._vertex_sets.add(frozenset(face))

    @property
    def boundary(self) -> np.ndarray:
        """(k, 2) directed edges a -> b of one face whose reverse no face runs."""
        return np.argwhere(self.edge & ~self.edge.T)

    def boundary_loops(self) -> list[list[int]]:
        """Each hole as its vertices in order, v0 -> v1 -> ... along the faces' edges (the faces
        that close it run them the other way). The fan rule keeps one outgoing boundary edge per
        vertex, so the loops are simple."""
        following = {int(a): int(b) for a, b in self.boundary}
        loops = []
        while following:
            start, vertex = next(iter(following.items()))
            loop = [start]
            del following[start]
            while vertex != start and vertex in following:
                loop.append(vertex)
                vertex = following.pop(vertex)
            loops.append(loop)
        return loops


def _min_angle(corners: np.ndarray) -> float:
    edges = [corners[(i + 1) % 3] - corners[i] for i in range(3)]
    lengths = [float(np.linalg.norm(e)) for e in edges]
    if min(lengths) < 1e-12:
        return 0.0
    angles = [np.arccos(np.clip(-(edges[i - 1] @ edges[i]) / (lengths[i - 1] * lengths[i]), -1, 1)) for i in range(3)]
    return float(min(angles))


def fill_holes(mesh: HalfEdges, positions: np.ndarray, loops: list[list[int]],
               on_surface: Callable[[np.ndarray], bool]) -> list[Face]:
    """Close each loop by ear clipping: an ear (next, v, previous) runs the loop's two edges at v
    backwards and adds one edge, which must not exist yet (else an edge would get a third face).
    Ears on the surface come first, then the widest (largest smallest angle). A loop with no such
    ear left stays open. -> the faces added (also added to `mesh`)."""
    added: list[Face] = []
    for loop in loops:
        loop = list(loop)
        while len(loop) >= 3:
            best, best_score = None, -1.0
            for i, v in enumerate(loop):
                previous, following = loop[i - 1], loop[(i + 1) % len(loop)]
                closing = len(loop) == 3
                if not closing and (mesh.edge[previous, following] or mesh.edge[following, previous]):
                    continue
                if closing and mesh.edge[previous, following]:
                    continue
                corners = positions[[following, v, previous]]
                score = _min_angle(corners) + (10.0 if on_surface(corners) else 0.0)
                if score > best_score:
                    best, best_score = i, score
            if best is None:
                break
            v = loop[best]
            face = (loop[(best + 1) % len(loop)], v, loop[best - 1])
            mesh.add(face)
            added.append(face)
            del loop[best]
            if len(loop) == 2:
                break
    return added
