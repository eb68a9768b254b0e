"""How much the decoder reads its condition: per token class, the mean NLL of teacher-forced
sequences with their own point cloud (and candidates) and with another mesh's. A model that
ignores the input scores the same either way; the gap, in nats, is the fastest signal that
geometry is being read (block tokens: where, coarsely; offsets: where exactly)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from backend.model.decoder import MeshTransformer
from backend.tokenizer.vocab import EOS, OFFSET_START, PAD_LABEL, PATCH_START
from backend.training.augment import AugmentConfig, make_sample
from backend.training.batches import collate, example

TOKEN_CLASSES = ("block", "offset", "patch_start", "eos")
CONDITION_KEYS = ("points", "normals", "candidates")


def token_classes(labels: Tensor) -> Tensor:
    """Index into TOKEN_CLASSES per label, -1 for padding."""
    cls = torch.full_like(labels, -1)
    cls[(labels >= 0) & (labels < OFFSET_START)] = 0
    cls[(labels >= OFFSET_START) & (labels < PATCH_START)] = 1
    cls[(labels >= PATCH_START) & (labels < EOS)] = 2
    cls[labels == EOS] = 3
    return cls


def _token_nll(model: MeshTransformer, batch: dict[str, Tensor], shift: int) -> Tensor:
    condition = {k: batch[k].roll(shift, dims=0) for k in CONDITION_KEYS if k in batch}
    logits, _ = model(batch["inputs"], model.encode_points(**condition))
    return F.cross_entropy(logits.float().transpose(1, 2), batch["labels"], ignore_index=PAD_LABEL,
                           reduction="none")


@torch.no_grad()
def condition_gap(model: MeshTransformer, batches: Iterable[dict[str, Tensor]],
                  device: torch.device | str = "cpu") -> dict[str, dict[str, float]]:
    """{class: {"own", "other", "gap", "tokens"}} over `batches` (each with at least two
    sequences: "other" gives every sequence its batch neighbour's condition)."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(2, len(TOKEN_CLASSES), dtype=torch.float64)
    counts = torch.zeros(len(TOKEN_CLASSES), dtype=torch.float64)
    for batch in batches:
        if batch["inputs"].shape[0] < 2:
            continue
        batch = {k: v.to(device) for k, v in batch.items()}
        cls = token_classes(batch["labels"]).flatten()
        keep = cls >= 0
        for row, shift in enumerate((0, 1)):
            nll = _token_nll(model, batch, shift).flatten()
            sums[row].index_add_(0, cls[keep].cpu(), nll[keep].double().cpu())
        counts.index_add_(0, cls[keep].cpu(), torch.ones(int(keep.sum()), dtype=torch.float64))
    model.train(was_training)
    report = {}
    for i, name in enumerate(TOKEN_CLASSES):
        n = max(float(counts[i]), 1.0)
        own, other = float(sums[0, i]) / n, float(sums[1, i]) / n
        report[name] = {"own": round(own, 4), "other": round(other, 4), "gap": round(other - own, 4),
                        "tokens": int(counts[i])}
    return report


def mesh_batches(meshes: Sequence[tuple[np.ndarray, np.ndarray]], model: MeshTransformer,
                 batch_size: int = 8, seed: int = 0) -> list[dict[str, Tensor]]:
    """Teacher-forcing batches of held-out (vertices, faces) meshes, un-augmented, as validation
    builds them; meshes whose sequence does not fit the model are left out."""
    cfg, limit = model.config, model.config.max_seq_len
    items = []
    for index, (vertices, faces) in enumerate(meshes):
        rng = np.random.default_rng([seed, index])
        sample = make_sample(vertices, faces, cfg.n_points, rng, AugmentConfig.off(), cfg.n_candidates)
        if len(sample.tokens) <= limit:
            items.append(example(sample.tokens, sample.points, sample.normals, limit, sample.candidates))
    items.sort(key=lambda item: len(item["inputs"]))
    return [collate(items[i:i + batch_size]) for i in range(0, len(items), batch_size)]


def format_gap(report: dict[str, dict[str, float]]) -> str:
    return "condition gap (nats): " + ", ".join(f"{k} {v['gap']:+.3f}" for k, v in report.items())
