"""Coordinate-factorized token embedding, tied with the output projection.

A BPT token names a class (block, offset, patch start, EOS, BOS) and, for the coordinate
classes, three digits: the block's high bits per axis (0..7) or the offset's low bits per axis
(0..15). A plain embedding learns each of the 4,096 offset and 512 block rows on its own, from
the few times that token is seen; here every row is the sum of shared parts (its class and one
vector per digit) plus a per-token residual, so what is learned about "a = 5" transfers across
all tokens with that digit. On the procedural data this is what lets a CPU-sized training run
get past the unigram plateau (see models/MODEL_CARD.md). Same shape and cost as a tied
nn.Embedding + nn.Linear at inference: the full [V, d] matrix is cached while the weights do
not change."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backend.tokenizer.vocab import (BLOCK_SIZE, BLOCKS_PER_AXIS, BOS, EOS, NUM_BLOCKS, NUM_OFFSETS,
                                     OFFSET_START, PATCH_START, VOCAB_SIZE)

_CLASSES = 5  # block, offset, patch start, EOS, BOS
_BLOCK_DIGITS = _CLASSES  # 3 axes x 8 values, shared by block and patch-start tokens
_OFFSET_DIGITS = _BLOCK_DIGITS + 3 * BLOCKS_PER_AXIS  # 3 axes x 16 values
_NONE = _OFFSET_DIGITS + 3 * BLOCK_SIZE  # the all-zero part of EOS and BOS
NUM_PARTS = _NONE + 1


def token_parts() -> Tensor:
    """[VOCAB_SIZE, 4] indices of each token's parts: class, then one digit per axis."""
    parts = torch.full((VOCAB_SIZE, 4), _NONE, dtype=torch.long)
    blocks = torch.arange(NUM_BLOCKS)
    block_digits = torch.stack([blocks // 64, blocks // 8 % 8, blocks % 8], 1)
    block_digits = block_digits + _BLOCK_DIGITS + torch.arange(3) * BLOCKS_PER_AXIS
    for cls, start in ((0, 0), (2, PATCH_START)):
        parts[start:start + NUM_BLOCKS, 0] = cls
        parts[start:start + NUM_BLOCKS, 1:] = block_digits
    offsets = torch.arange(NUM_OFFSETS)
    offset_digits = torch.stack([offsets // 256, offsets // 16 % 16, offsets % 16], 1)
    parts[OFFSET_START:OFFSET_START + NUM_OFFSETS, 0] = 1
    parts[OFFSET_START:OFFSET_START + NUM_OFFSETS, 1:] = (offset_digits + _OFFSET_DIGITS
                                                          + torch.arange(3) * BLOCK_SIZE)
    parts[EOS, 0], parts[BOS, 0] = 3, 4
    return parts


class FactorizedVocab(nn.Module):
    """Used both as the token embedding (integer input -> [.., d]) and as the tied LM head
    (float hidden [.., d] -> logits [.., V]); `weight` is the full [V, d] matrix either way, so
    drafting heads that share the LM head read it like an nn.Linear's."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.register_buffer("parts", token_parts(), persistent=False)
        self.part_emb = nn.Embedding(NUM_PARTS, d_model, padding_idx=_NONE)
        self.residual = nn.Embedding(VOCAB_SIZE, d_model)
        self._cache: tuple[tuple, Tensor] | None = None
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.02) -> None:
        """Parts N(0, std), the padding part zero, residuals zero: rows start as pure sums of
        shared parts and only specialise where the data asks for it."""
        nn.init.normal_(self.part_emb.weight, std=std)
        with torch.no_grad():
            self.part_emb.weight[_NONE].zero_()
        nn.init.zeros_(self.residual.weight)

    def _full(self) -> Tensor:
        return self.part_emb(self.parts).sum(1) + self.residual.weight

    @property
    def weight(self) -> Tensor:
        if torch.is_grad_enabled():
            return self._full()
        if torch.compiler.is_compiling() and self._cache is not None:
            return self._cache[1]  # a compiled decoding step reads the matrix cached before compiling
        key = (self.part_emb.weight._version, self.residual.weight._version,
               self.part_emb.weight.data_ptr(), self.residual.weight.data_ptr())
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._full())
        return self._cache[1]

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype in (torch.int64, torch.int32):
            return self.part_emb(self.parts[x]).sum(-2) + self.residual(x)
        return F.linear(x, self.weight)
