"""7-bit quantization of a normalized mesh, with the clean-up BPT applies before tokenizing:
merge vertices that share a grid cell, drop degenerate faces, drop duplicate faces (same vertex
set, the first one kept, so a double-sided pair keeps the first side), drop unused vertices."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BITS = 7
LEVELS = 1 << BITS  # 128


@dataclass(frozen=True)
class QuantizedMesh:
    """Integer grid mesh in xyz order: `vertices` int64 (n, 3) in 0..127, `faces` int64 (m, 3)."""

    vertices: np.ndarray
    faces: np.ndarray

    def __post_init__(self) -> None:
        if self.vertices.ndim != 2 or self.vertices.shape[1] != 3:
            raise ValueError(f"vertices must be (n, 3), got {self.vertices.shape}")
        if self.faces.ndim != 2 or self.faces.shape[1] != 3:
            raise ValueError(f"faces must be (m, 3), got {self.faces.shape}")


def quantize_coords(vertices: np.ndarray) -> np.ndarray:
    """Float coordinates in [-1, 1] to grid indices 0..127 (BPT's rounding)."""
    q = np.round((np.asarray(vertices, dtype=np.float64) + 1.0) / 2.0 * LEVELS - 0.5)
    return np.clip(q, 0, LEVELS - 1).astype(np.int64)


def dequantize(q: np.ndarray) -> np.ndarray:
    """Grid indices to the centres of their cells in [-1, 1]."""
    return (np.asarray(q, dtype=np.float64) + 0.5) / LEVELS * 2.0 - 1.0


def clean_faces(faces: np.ndarray) -> np.ndarray:
    """Drop faces with a repeated vertex and later faces whose vertex set was already seen."""
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])]
    _, first = np.unique(np.sort(faces, axis=1), axis=0, return_index=True)
    return faces[np.sort(first)]


def compact(vertices: np.ndarray, faces: np.ndarray) -> QuantizedMesh:
    """Merge identical vertices, clean faces and drop vertices no face uses."""
    unique, inverse = np.unique(vertices, axis=0, return_inverse=True)
    faces = clean_faces(inverse.reshape(-1)[faces])
    used, remap = np.unique(faces, return_inverse=True)
    return QuantizedMesh(unique[used].astype(np.int64), remap.reshape(-1, 3).astype(np.int64))


def quantize_mesh(vertices: np.ndarray, faces: np.ndarray) -> QuantizedMesh:
    """Quantize a mesh already normalized into [-1, 1] (see `Normalization`) and clean it."""
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must be (n, 3), got {vertices.shape}")
    if faces.size == 0:
        faces = faces.reshape(0, 3)
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must be (m, 3) triangles, got {faces.shape}")
    if not np.isfinite(vertices).all():
        raise ValueError("vertices contain NaN or infinite values")
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError(f"face indices must lie in 0..{len(vertices) - 1}")
    return compact(quantize_coords(vertices), faces.astype(np.int64))
