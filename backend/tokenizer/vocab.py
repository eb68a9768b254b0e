"""BPT token vocabulary (see docs/architecture.md). Coordinates (a, b, c) are the 7-bit grid
indices after the axis permutation [2, 0, 1], i.e. (z, x, y); each axis splits into a block
(high 3 bits) and an offset (low 4 bits)."""

from __future__ import annotations

import numpy as np

BLOCK_SIZE = 16  # grid cells per block along an axis
BLOCKS_PER_AXIS = 8
NUM_BLOCKS = BLOCKS_PER_AXIS**3  # 512
NUM_OFFSETS = BLOCK_SIZE**3  # 4096

BLOCK_START = 0
OFFSET_START = NUM_BLOCKS  # 512
PATCH_START = OFFSET_START + NUM_OFFSETS  # 4608
EOS = PATCH_START + NUM_BLOCKS  # 5120
BOS = EOS + 1  # 5121
VOCAB_SIZE = BOS + 1  # 5122
PAD_LABEL = -100  # ignored label in training

AXIS_PERMUTATION = (2, 0, 1)  # xyz -> (a, b, c) = (z, x, y)


def is_block(token: int) -> bool:
    return BLOCK_START <= token < OFFSET_START


def is_offset(token: int) -> bool:
    return OFFSET_START <= token < PATCH_START


def is_patch_start(token: int) -> bool:
    return PATCH_START <= token < EOS


def block_of(abc: np.ndarray) -> np.ndarray:
    """Block index 0..511 of permuted coordinates (..., 3)."""
    hi = np.asarray(abc) // BLOCK_SIZE
    return hi[..., 0] * 64 + hi[..., 1] * 8 + hi[..., 2]


def offset_of(abc: np.ndarray) -> np.ndarray:
    """Offset index 0..4095 (token minus OFFSET_START) of permuted coordinates (..., 3)."""
    lo = np.asarray(abc) % BLOCK_SIZE
    return lo[..., 0] * 256 + lo[..., 1] * 16 + lo[..., 2]


def xyz_from_tokens(block: int, offset_token: int) -> tuple[int, int, int]:
    """Quantized xyz coordinates of a vertex from its block (0..511) and offset token."""
    o = offset_token - OFFSET_START
    a = (block >> 6) * BLOCK_SIZE + (o >> 8)
    b = ((block >> 3) & 7) * BLOCK_SIZE + ((o >> 4) & 15)
    c = (block & 7) * BLOCK_SIZE + (o & 15)
    return b, c, a  # (a, b, c) = (z, x, y)
