"""Which token classes may come next in a BPT sequence. A sampler that only picks allowed
tokens always produces a sequence that `decode` accepts.

    START -patch-start-> AFTER_PATCH_START -offset-> CENTRE_DONE -> ONE_VERTEX -> IN_FAN
    (a vertex = optional block token, then an offset token; a block moves to AFTER_BLOCK)
    IN_FAN -patch-start-> AFTER_PATCH_START ;  IN_FAN -EOS-> DONE

`allowed()` is one cached mask per `kind`; the only state-dependent exclusion, the block
token equal to the previous vertex's block (the encoder omits it), is `forbidden_token`.

`sampling_mask()` narrows that further for samplers: it also leaves out the offset tokens that
would repeat a vertex of the face being made (the fan's centre, its previous vertex, or the one
before, which would make a zero-area face or the previous face reversed). Such sequences still
decode, so `advance` accepts them, but they add no face. An undertrained model falls into loops
of exactly these tokens (two vertices alternating for hundreds of tokens without a new face);
ruling them out at sampling time makes it go on with a real face instead."""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from backend.tokenizer.vocab import EOS, OFFSET_START, PATCH_START, VOCAB_SIZE


class Kind(IntEnum):
    START = 0
    AFTER_PATCH_START = 1
    AFTER_BLOCK = 2
    CENTRE_DONE = 3
    ONE_VERTEX = 4
    IN_FAN = 5
    DONE = 6


def _mask(*ranges: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(VOCAB_SIZE, dtype=bool)
    for lo, hi in ranges:
        mask[lo:hi] = True
    mask.setflags(write=False)
    return mask


_BLOCKS = (0, OFFSET_START)
_OFFSETS = (OFFSET_START, PATCH_START)
_PATCH_STARTS = (PATCH_START, EOS)
_EOS = (EOS, EOS + 1)

MASKS: dict[Kind, np.ndarray] = {
    Kind.START: _mask(_PATCH_STARTS),
    Kind.AFTER_PATCH_START: _mask(_OFFSETS),
    Kind.AFTER_BLOCK: _mask(_OFFSETS),
    Kind.CENTRE_DONE: _mask(_BLOCKS, _OFFSETS),
    Kind.ONE_VERTEX: _mask(_BLOCKS, _OFFSETS),
    Kind.IN_FAN: _mask(_BLOCKS, _OFFSETS, _PATCH_STARTS, _EOS),
    Kind.DONE: _mask(),
}

# Kind after a completed vertex, by number of vertices written in the current patch.
_AFTER_VERTEX = (Kind.CENTRE_DONE, Kind.ONE_VERTEX, Kind.IN_FAN)


class GrammarState:
    """Tracks the grammar position; `block` is the block the next offset token belongs to
    (the pending block token, or else the previous vertex's block)."""

    __slots__ = ("kind", "block", "patch_vertices", "face_vertices")

    def __init__(self) -> None:
        self.kind = Kind.START
        self.block = -1
        self.patch_vertices = 0  # vertices completed in the current patch, centre included
        # (block, offset token) of the vertices the next vertex makes a face with: the centre,
        # then the last two chain vertices. A tuple, so copies of a state never share it.
        self.face_vertices: tuple[tuple[int, int], ...] = ()

    def allowed(self) -> np.ndarray:
        """Read-only bool mask (VOCAB_SIZE,) of the token classes allowed now."""
        return MASKS[self.kind]

    @property
    def forbidden_token(self) -> int:
        """Block token that repeats the previous vertex's block (never emitted), or -1."""
        return self.block if self.kind in _AFTER_VERTEX else -1

    def repeating_offsets(self) -> tuple[int, ...]:
        """Offset tokens that would complete a vertex of `face_vertices` now (sorted)."""
        if self.kind not in _AFTER_VERTEX and self.kind != Kind.AFTER_BLOCK:
            return ()
        return tuple(sorted({offset for block, offset in self.face_vertices if block == self.block}))

    def mask_key(self) -> tuple[int, int, tuple[int, ...]]:
        """States with equal keys have equal sampling masks."""
        return int(self.kind), self.forbidden_token, self.repeating_offsets()

    def sampling_mask(self) -> np.ndarray:
        """Bool mask (VOCAB_SIZE,) of the tokens a sampler may pick now (a fresh array)."""
        mask = MASKS[self.kind].copy()
        if self.forbidden_token >= 0:
            mask[self.forbidden_token] = False
        mask[list(self.repeating_offsets())] = False
        return mask

    def is_allowed(self, token: int) -> bool:
        return 0 <= token < VOCAB_SIZE and bool(MASKS[self.kind][token]) and token != self.forbidden_token

    def advance(self, token: int) -> None:
        """Consume one token; ValueError when the grammar does not allow it here."""
        token = int(token)
        if not self.is_allowed(token):
            raise ValueError(f"token {token} is not allowed in state {self.kind.name}")
        if token < OFFSET_START:
            self.block = token
            self.kind = Kind.AFTER_BLOCK
        elif token < PATCH_START:
            self.patch_vertices += 1
            self.kind = _AFTER_VERTEX[min(self.patch_vertices, 3) - 1]
            vertex = (self.block, token)
            if self.patch_vertices == 1:  # the centre
                self.face_vertices = (vertex,)
            else:  # the centre, the previous chain vertex, this one
                centre, *chain = self.face_vertices
                self.face_vertices = (centre, *chain[-1:], vertex)
        elif token < EOS:
            self.block = token - PATCH_START
            self.patch_vertices = 0
            self.face_vertices = ()
            self.kind = Kind.AFTER_PATCH_START
        else:
            self.kind = Kind.DONE
