"""Grammar masks as device tensors, cached so the per-token cost is a dict lookup.

A grammar state's allowed set is its kind's class mask minus at most one forbidden block token
(the previous vertex's block), so a mask is keyed by (kind, forbidden token): at most a few
thousand small masks, built lazily, never copied from the host again."""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from backend.tokenizer.grammar import GrammarState


class GrammarMasks:
    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self._masks: dict[tuple[int, int], Tensor] = {}

    @staticmethod
    def key(state: GrammarState) -> tuple[int, int]:
        """States with equal keys allow the same tokens."""
        return int(state.kind), state.forbidden_token

    def __call__(self, state: GrammarState) -> Tensor:
        """Bool mask (V,) of the tokens `state` allows, on `self.device`."""
        key = self.key(state)
        mask = self._masks.get(key)
        if mask is None:
            allowed = state.allowed().copy()
            if key[1] >= 0:
                allowed[key[1]] = False
            mask = self._masks[key] = torch.from_numpy(allowed).to(self.device)
        return mask


def clone_state(state: GrammarState) -> GrammarState:
    """An independent copy (drafts advance a copy; the accepted state moves only on acceptance)."""
    return copy.copy(state)
