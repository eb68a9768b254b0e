"""Distillation labels: the backbone's own generations on training conditions (XSpecMesh §3.3),
sampled in batches with the KV cache and cached as npz chunks, so an interrupted or resumed run
never regenerates a finished chunk."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from backend.decoding.autoregressive import generate_ar_batch
from backend.decoding.sampling import SamplingConfig
from backend.fileio import atomic_path
from backend.model.decoder import MeshTransformer
from backend.training.augment import AugmentConfig, augmented_vertices, point_condition

SAMPLING = SamplingConfig(temperature=0.5, top_k=50, top_p=0.95)  # BPT's settings


@dataclass
class Labels:
    points: np.ndarray   # [n, N, 3] float32: the exact condition each label was sampled from
    normals: np.ndarray  # [n, N, 3] float32
    tokens: list[np.ndarray]  # int64, ending with EOS when the generation finished

    def __len__(self) -> int:
        return len(self.tokens)


def _conditions(meshes, first: int, count: int, n_points: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Conditions for labels first..first+count-1: label i uses mesh i mod len(meshes) with its
    own augmentation, so asking for more labels than meshes still gives distinct conditions."""
    points, normals = [], []
    for i in range(first, first + count):
        record = meshes[i % len(meshes)]
        rng = np.random.default_rng([seed, i])
        v = augmented_vertices(record.vertices, rng, AugmentConfig())
        p, n = point_condition(v, record.faces, n_points, rng, AugmentConfig())
        points.append(p)
        normals.append(n)
    return np.stack(points), np.stack(normals)


def _save_chunk(path: Path, points: np.ndarray, normals: np.ndarray, rows: list[np.ndarray]) -> None:
    offsets = np.cumsum([0] + [len(r) for r in rows]).astype(np.int64)
    flat = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, points=points, normals=normals, tokens=flat.astype(np.int16), offsets=offsets)


def _load_chunk(path: Path) -> Labels:
    with np.load(path, allow_pickle=False) as z:
        offsets, flat = z["offsets"], z["tokens"].astype(np.int64)
        tokens = [flat[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
        return Labels(z["points"], z["normals"], tokens)


def make_labels(model: MeshTransformer, meshes, directory: Path, count: int, batch: int,
                max_tokens: int, seed: int, stop: threading.Event | None = None) -> Labels | None:
    """Generate (or reuse) `count` labels in chunks of `batch` under `directory`; None when
    `stop` is set first (finished chunks are kept)."""
    if count < 1 or batch < 1:
        raise ValueError(f"labels count and batch must be positive, got {count} and {batch}")
    directory.mkdir(parents=True, exist_ok=True)
    n_points = model.config.n_points
    chunks = []
    for c, first in enumerate(tqdm(range(0, count, batch), desc="labels")):
        if stop is not None and stop.is_set():
            return None
        path = directory / f"chunk-{c:05d}.npz"
        size = min(batch, count - first)
        if not path.exists():
            points, normals = _conditions(meshes, first, size, n_points, seed)
            rows = generate_ar_batch(model, points, normals, SAMPLING, max_tokens, seed=seed * 100_003 + c)
            _save_chunk(path, points, normals, rows)
        chunk = _load_chunk(path)
        if len(chunk) != size or chunk.points.shape[1] != n_points:
            raise ValueError(f"{path} does not match this run (labels count/batch/model changed?); "
                             f"remove {directory} to regenerate")
        chunks.append(chunk)
    return Labels(np.concatenate([c.points for c in chunks]), np.concatenate([c.normals for c in chunks]),
                  [t for c in chunks for t in c.tokens])
