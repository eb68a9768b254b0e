"""Per-sample augmentation for training: a random quarter turn about Z (up) and per-axis scale
jitter of the float mesh, then renormalization and re-tokenization (so tokens always describe
the augmented mesh), a noisy, partly dropped-out surface point cloud as the condition, and, for
models that read them, vertex candidates made as inference makes them (sometimes from a
densified, jittered copy standing in for a dense user input; sometimes none at all, so that a
bare point cloud still works)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.mesh.candidates import candidate_grid, decimated_vertices, densified
from backend.mesh.normalize import Normalization
from backend.mesh.quantize import quantize_mesh
from backend.mesh.sample import sample_surface
from backend.tokenizer.bpt import encode


@dataclass(frozen=True)
class AugmentConfig:
    rotate: bool = True            # k * 90 degrees about Z
    scale_min: float = 0.75        # per-axis scale jitter in [scale_min, 1]
    point_noise: float = 0.005     # std of gaussian noise on the normalized points
    max_dropout: float = 0.1       # up to this fraction of points replaced by others
    candidate_dropout: float = 0.1  # probability of no candidates at all
    dense_candidates: float = 0.45  # probability of candidates from a densified, jittered copy
    candidate_jitter: float = 0.002  # std of that jitter (a grid cell is 0.0156)

    @classmethod
    def off(cls) -> AugmentConfig:
        return cls(rotate=False, scale_min=1.0, point_noise=0.0, max_dropout=0.0,
                   candidate_dropout=0.0, dense_candidates=0.0)


@dataclass
class Sample:
    tokens: np.ndarray   # int64 BPT tokens of the augmented mesh, ending with EOS
    points: np.ndarray   # (n, 3) float32
    normals: np.ndarray  # (n, 3) float32
    candidates: np.ndarray | None = None  # (k, 3) int64 grid cells, PAD rows empty


def transform_vertices(vertices: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    v = np.asarray(vertices, dtype=np.float64)
    if cfg.rotate:
        k = int(rng.integers(4))
        c, s = np.round(np.cos(k * np.pi / 2)), np.round(np.sin(k * np.pi / 2))
        v = v @ np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
    if cfg.scale_min < 1.0:
        v = v * rng.uniform(cfg.scale_min, 1.0, size=3)
    return v


def perturb_points(points: np.ndarray, normals: np.ndarray, rng: np.random.Generator,
                   cfg: AugmentConfig) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian noise plus dropout; dropped points are replaced by copies of kept ones (with
    their normals), so the count stays fixed (batches need equal counts) but the density has holes."""
    n = len(points)
    index = np.arange(n)
    if cfg.max_dropout > 0 and n > 1:
        drop = rng.random(n) < rng.uniform(0.0, cfg.max_dropout)
        kept = np.flatnonzero(~drop)
        if 0 < len(kept) < n:
            index[drop] = rng.choice(kept, size=int(drop.sum()))
    points = points[index]
    if cfg.point_noise > 0:
        points = points + rng.normal(0.0, cfg.point_noise, size=points.shape)
    return points.astype(np.float32), normals[index].astype(np.float32)


def augmented_vertices(vertices: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Turn and stretch, then renormalize as BPT does (bbox centred, longest side to +-0.95)."""
    v = transform_vertices(vertices, rng, cfg)
    return Normalization.fit(v).apply(v)


def point_condition(vertices: np.ndarray, faces: np.ndarray, n_points: int, rng: np.random.Generator,
                    cfg: AugmentConfig) -> tuple[np.ndarray, np.ndarray]:
    """The model's input for a normalized mesh: area-weighted surface samples, then noise/dropout."""
    points, normals = sample_surface(vertices, faces, n_points, seed=int(rng.integers(2**31)))
    return perturb_points(np.asarray(points), np.asarray(normals), rng, cfg)


def candidate_condition(vertices: np.ndarray, faces: np.ndarray, count: int, rng: np.random.Generator,
                        cfg: AugmentConfig) -> np.ndarray:
    """Candidate cells for a normalized mesh: none, from a densified jittered copy, or its own."""
    draw = rng.random()
    if draw < cfg.candidate_dropout:
        return candidate_grid(np.zeros((0, 3)), count)
    if draw < cfg.candidate_dropout + cfg.dense_candidates:
        vertices, faces = densified(vertices, faces, rng, cfg.candidate_jitter)
    return candidate_grid(decimated_vertices(vertices, faces, count), count)


def make_sample(vertices: np.ndarray, faces: np.ndarray, n_points: int, rng: np.random.Generator,
                cfg: AugmentConfig, n_candidates: int = 0) -> Sample:
    """Augment, re-tokenize (tokens always describe the augmented mesh) and sample the condition."""
    v = augmented_vertices(vertices, rng, cfg)
    tokens = encode(quantize_mesh(v, faces)).astype(np.int64)
    points, normals = point_condition(v, faces, n_points, rng, cfg)
    candidates = candidate_condition(v, faces, n_candidates, rng, cfg) if n_candidates else None
    return Sample(tokens, points, normals, candidates)
