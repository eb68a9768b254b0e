"""Streaming detokenizer: faces come out as soon as their third vertex's offset token arrives."""

from __future__ import annotations

import numpy as np

from backend.tokenizer.grammar import GrammarState, Kind
from backend.tokenizer.vocab import OFFSET_START, PATCH_START, xyz_from_tokens

Vertex = tuple[int, int, int]


class IncrementalDecoder:
    """Feed tokens one by one with `push`; each completed face is a (3, 3) int64 array of
    quantized xyz corners, orientation (centre, v_j, v_j+1). Degenerate faces and repeats of an
    earlier face (same corner set) are dropped, as the encoder's clean-up would."""

    def __init__(self) -> None:
        self.grammar = GrammarState()
        self.num_faces = 0
        self._centre: Vertex | None = None
        self._previous: Vertex | None = None
        self._seen: set[frozenset[Vertex]] = set()

    @property
    def finished(self) -> bool:
        return self.grammar.kind == Kind.DONE

    def push(self, token: int) -> list[np.ndarray]:
        token = int(token)
        self.grammar.advance(token)  # raises on a token the grammar does not allow
        if not OFFSET_START <= token < PATCH_START:
            return []
        vertex = xyz_from_tokens(self.grammar.block, token)
        kind = self.grammar.kind
        if kind == Kind.CENTRE_DONE:
            self._centre = vertex
            return []
        previous, self._previous = self._previous, vertex
        if kind == Kind.ONE_VERTEX:
            return []
        corners = frozenset((self._centre, previous, vertex))
        if len(corners) < 3 or corners in self._seen:
            return []
        self._seen.add(corners)
        self.num_faces += 1
        return [np.array((self._centre, previous, vertex), dtype=np.int64)]
