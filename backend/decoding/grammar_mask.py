"""Grammar masks as device tensors, cached so the per-token cost is a dict lookup.

A state's sampling mask is its kind's class mask minus at most one block token (the previous
vertex's block) and at most three offset tokens (those repeating a vertex of the face being
made), so masks are keyed by `GrammarState.mask_key()`. One `GrammarMasks` serves one
generation: at most a few thousand small masks, built lazily, each copied to the device once.

With an `InputConstraint` (backend.decoding.constraint) the masks are also narrowed to what
lies on the input mesh: candidate vertices, on-surface faces, EOS once the input is covered.

A finished sequence (after EOS) allows nothing, but rows conditioned on one still occur: a drafted
EOS's row in a verify pass, a finished row in a batch. They get the EOS-only mask, so every row
is a proper distribution and batched sampling stays free of NaNs; what is drawn there is never used."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor

from backend.decoding.constraint import InputConstraint
from backend.tokenizer.grammar import GrammarState, Kind
from backend.tokenizer.vocab import EOS


class GrammarMasks:
    def __init__(self, device: torch.device | str, constraint: InputConstraint | None = None) -> None:
        self.device = torch.device(device)
        self.constraint = constraint
        self._cache: dict[tuple, tuple[Tensor, np.ndarray]] = {}  # key -> (device mask, allowed ids)
        self._version = 0  # the constraint's version the cached masks were built for

    def _entry(self, state: GrammarState) -> tuple[Tensor, np.ndarray]:
        """Both forms of one state's mask, built once (the constraint's narrowing is the costly
        part). A constraint's masks depend on the faces made so far: when it reports a new one,
        the cached masks are forgotten rather than kept under keys that never come back."""
        key = state.mask_key()
        if self.constraint is not None:
            if self.constraint.version != self._version:
                self._cache.clear()
                self._version = self.constraint.version
            key = (*key, *self.constraint.key(state))
        entry = self._cache.get(key)
        if entry is None:
            allowed = self._allowed(state)
            entry = self._cache[key] = (torch.from_numpy(allowed).to(self.device), np.flatnonzero(allowed))
        return entry

    def _allowed(self, state: GrammarState) -> np.ndarray:
        allowed = state.sampling_mask()
        if state.kind == Kind.DONE:
            allowed[EOS] = True
        elif self.constraint is not None:
            allowed = self.constraint.restrict(allowed, state)
        return allowed

    def __call__(self, state: GrammarState) -> Tensor:
        """Bool mask (V,) of the tokens `state` allows, on `self.device` (EOS alone after EOS)."""
        return self._entry(state)[0]

    def allowed_ids(self, state: GrammarState) -> np.ndarray:
        """Token ids `state` allows, ascending, on the host (for drafting done in numpy)."""
        return self._entry(state)[1]


def clone_state(state: GrammarState) -> GrammarState:
    """An independent copy (drafts advance a copy; the accepted state moves only on acceptance)."""
    return copy.copy(state)
