"""Training batches: augmented samples, length-bucketed batch order and padding.

The batch order is a pure function of (seed, epoch) and each sample's augmentation is seeded by
(seed, epoch, index), so "where we are in the data" is just (epoch, batch) and a resumed run
sees exactly the batches an uninterrupted one would have. Each distributed rank takes every
world-th batch of the same order."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from backend.tokenizer.vocab import BOS, EOS, PAD_LABEL
from backend.training.augment import AugmentConfig, make_sample

# Batches per shuffled chunk that is sorted by length: large enough that a batch holds similar
# lengths, small enough that the order stays random.
BUCKET_BATCHES = 32


@dataclass(frozen=True)
class DataPosition:
    epoch: int = 0
    batch: int = 0  # batches of this epoch already consumed (by this rank)


class AugmentedMeshes(Dataset):
    """Map-style dataset indexed by (epoch, mesh index); returns one training example:
    `inputs` = [BOS] + tokens (without EOS), `labels` = tokens (with EOS), points, normals."""

    def __init__(self, meshes: Sequence, n_points: int, max_len: int, seed: int,
                 augment: AugmentConfig, n_candidates: int = 0) -> None:
        self.meshes = meshes
        self.n_points = n_points
        self.n_candidates = n_candidates
        self.max_len = max_len
        self.seed = seed
        self.augment = augment

    def __len__(self) -> int:
        return len(self.meshes)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, np.ndarray]:
        epoch, index = key
        record = self.meshes[index]
        rng = np.random.default_rng([self.seed, epoch, index])
        sample = make_sample(record.vertices, record.faces, self.n_points, rng, self.augment,
                             self.n_candidates)
        return example(sample.tokens, sample.points, sample.normals, self.max_len, sample.candidates)


def example(tokens: np.ndarray, points: np.ndarray, normals: np.ndarray, max_len: int,
            candidates: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Teacher-forcing pair. A sequence longer than `max_len` is truncated: its labels then stop
    without EOS, so the model never learns to end a mesh early."""
    tokens = np.asarray(tokens, dtype=np.int64)[:max_len]
    inputs = np.concatenate([[BOS], tokens[:-1]])
    item = {"inputs": inputs, "labels": tokens, "points": points, "normals": normals}
    if candidates is not None:
        item["candidates"] = candidates
    return item


def collate(items: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Right-pad to the longest sequence: causal attention keeps padding invisible to real
    tokens and its labels are ignored."""
    width = max(len(it["inputs"]) for it in items)
    inputs = np.full((len(items), width), EOS, dtype=np.int64)
    labels = np.full((len(items), width), PAD_LABEL, dtype=np.int64)
    for row, it in enumerate(items):
        inputs[row, :len(it["inputs"])] = it["inputs"]
        labels[row, :len(it["labels"])] = it["labels"]
    batch = {
        "inputs": torch.from_numpy(inputs),
        "labels": torch.from_numpy(labels),
        "points": torch.from_numpy(np.stack([it["points"] for it in items])),
        "normals": torch.from_numpy(np.stack([it["normals"] for it in items])),
    }
    if "candidates" in items[0]:
        batch["candidates"] = torch.from_numpy(np.stack([it["candidates"] for it in items]))
    return batch


def epoch_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Shuffle, sort each chunk of BUCKET_BATCHES batches by length, cut into batches and
    shuffle the batches. Drops the ragged last batch so every batch is full."""
    rng = np.random.default_rng([seed, epoch, 0x5EED])
    order = rng.permutation(len(lengths))
    chunk = batch_size * BUCKET_BATCHES
    batches = []
    for start in range(0, len(order), chunk):
        part = order[start:start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i:i + batch_size] for i in range(0, len(part) - batch_size + 1, batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


class BucketBatchSampler:
    """Endless stream of batches of (epoch, index) keys for this rank, starting at `start`."""

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, rank: int = 0,
                 world: int = 1, start: DataPosition = DataPosition()) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world = world
        self.start = start
        # The batch count does not depend on the epoch's shuffle, only on the chunking.
        total = len(epoch_batches(self.lengths, batch_size, seed, 0))
        self.per_epoch = total // world  # equal step counts on every rank
        if self.per_epoch == 0:
            raise ValueError(f"{len(self.lengths)} sequences are too few for batch size "
                             f"{batch_size} on {world} process(es)")

    def rank_batches(self, epoch: int) -> list[np.ndarray]:
        batches = epoch_batches(self.lengths, self.batch_size, self.seed, epoch)
        return batches[self.rank:self.per_epoch * self.world:self.world]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, skip = self.start.epoch, self.start.batch
        while True:
            for batch in self.rank_batches(epoch)[skip:]:
                yield [(epoch, int(i)) for i in batch]
            epoch, skip = epoch + 1, 0

    def advance(self, position: DataPosition) -> DataPosition:
        """The position after consuming one more batch from `position`."""
        if position.batch + 1 < self.per_epoch:
            return DataPosition(position.epoch, position.batch + 1)
        return DataPosition(position.epoch + 1, 0)
