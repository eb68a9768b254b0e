"""Backbone pre-training: teacher forcing on augmented, re-tokenized meshes conditioned on their
point clouds. Runs alone or under torchrun (DDP) unchanged; resumes exactly from a checkpoint."""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from backend.data.dataset import MeshDataset
from backend.model.config import ModelConfig
from backend.model.decoder import MeshTransformer
from backend.model.io import init_from
from backend.tokenizer.vocab import PAD_LABEL
from backend.training import checkpoint as ckpt
from backend.training.augment import AugmentConfig
from backend.training.batches import AugmentedMeshes, BucketBatchSampler, DataPosition, collate
from backend.training.condition_use import condition_gap, format_gap
from backend.training.runtime import Every, MetricsLog, Runtime, adamw, update
from backend.training.schedule import cosine_lr

CHECKPOINT = "checkpoint.safetensors"
METRICS = "metrics.jsonl"
BETAS = (0.9, 0.95)
GRAD_CLIP = 1.0


@dataclass
class TrainOptions:
    data: str
    steps: int = 10000
    batch_size: int = 8
    max_len: int | None = None      # None: the model's max_seq_len
    lr: float = 1e-3
    final_lr_ratio: float = 0.1     # cosine decays to lr * final_lr_ratio
    warmup: int = 200
    weight_decay: float = 0.1
    seed: int = 0
    val_data: str | None = None     # None: hold out `val_fraction` of `data`
    val_fraction: float = 0.02
    val_every: int = 500
    val_batches: int = 8
    log_every: int = 10
    checkpoint_minutes: float = 5.0
    workers: int = 1
    augment: bool = True
    init: str | None = None         # warm start from this model directory's matching weights
    max_minutes: float | None = None  # wall-clock budget of this leg: checkpoint and end when spent


def lm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=PAD_LABEL)


class TeacherForcing(nn.Module):
    """Points -> latents -> logits -> mean token loss as one forward, which is what DDP wraps."""

    def __init__(self, model: MeshTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: Tensor, labels: Tensor, points: Tensor, normals: Tensor,
                candidates: Tensor | None = None) -> Tensor:
        logits, _ = self.model(inputs, self.model.encode_points(points, normals, candidates))
        return lm_loss(logits, labels)


def token_lengths(meshes: MeshDataset) -> np.ndarray:
    return np.array([len(meshes[i].tokens) for i in range(len(meshes))], dtype=np.int64)


@dataclass
class Split:
    meshes: Subset
    lengths: np.ndarray  # stored (un-augmented) token counts, for length bucketing


def split(data: MeshDataset, val_data: MeshDataset | None, max_len: int, options: TrainOptions
          ) -> tuple[Split, Split]:
    """Train and validation sets. Sequences longer than `max_len` are skipped; the augmented
    length differs a little from the stored one, and `example` truncates the rare excess."""
    lengths = token_lengths(data)
    usable = np.flatnonzero(lengths <= max_len)
    if len(usable) == 0:
        raise ValueError(f"no sequence in {options.data} fits max_len {max_len}")
    if val_data is not None:
        val_lengths = token_lengths(val_data)
        val_usable = np.flatnonzero(val_lengths <= max_len)
        return (Split(Subset(data, usable), lengths[usable]),
                Split(Subset(val_data, val_usable), val_lengths[val_usable]))
    order = np.random.default_rng([options.seed, 1]).permutation(usable)
    n_val = max(1, round(len(usable) * options.val_fraction))
    train_idx, val_idx = np.sort(order[n_val:]), np.sort(order[:n_val])
    return (Split(Subset(data, train_idx), lengths[train_idx]),
            Split(Subset(data, val_idx), lengths[val_idx]))


def to_device(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def validation_batches(val: Split, n_points: int, max_len: int, options: TrainOptions,
                       rt: Runtime, n_candidates: int = 0) -> list[dict[str, Tensor]]:
    """A fixed, un-augmented validation set (this rank's share), built once."""
    data = AugmentedMeshes(val.meshes, n_points, max_len, options.seed, AugmentConfig.off(), n_candidates)
    count = min(len(val.lengths), options.val_batches * options.batch_size)
    order = np.argsort(val.lengths[:count], kind="stable")
    batches = [order[i:i + options.batch_size] for i in range(0, count, options.batch_size)]
    return [collate([data[(0, int(i))] for i in b]) for b in batches[rt.rank::rt.world]]


@torch.no_grad()
def validate(net: nn.Module, batches: list[dict[str, Tensor]], rt: Runtime) -> float:
    net.eval()
    loss_sum, tokens = 0.0, 0.0
    for batch in batches:
        batch = to_device(batch, rt.device)
        with rt.autocast():
            loss = net(**batch)
        n = float((batch["labels"] != PAD_LABEL).sum())
        loss_sum, tokens = loss_sum + float(loss) * n, tokens + n
    net.train()
    loss_sum, tokens = rt.all_sum(loss_sum, tokens)
    return loss_sum / max(tokens, 1.0)


def checkpoint_tensors(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict]:
    optim_tensors, optim_meta = ckpt.optimizer_state(optimizer)
    tensors = {**ckpt.prefixed("model", model.state_dict()), **ckpt.prefixed("optim", optim_tensors),
               **ckpt.prefixed("rng", ckpt.rng_state())}
    return tensors, optim_meta


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # the worker tokenizes; leave the cores to the model
    # Ctrl-C reaches the whole process group and `pkill -f` matches the worker's command line
    # too; the main process checkpoints and then ends the worker (which also exits on its own
    # when the main process dies), so the worker must keep serving batches until then.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def train(options: TrainOptions, config: ModelConfig, out_dir: Path, rt: Runtime,
          stop: threading.Event, resume: bool = False,
          on_step: Callable[[int, float], None] | None = None) -> MeshTransformer:
    """Train until `options.steps` or `stop` is set; checkpoints periodically, on stop and at
    the end (rank 0 only). Returns the (unwrapped) model."""
    out_dir.mkdir(parents=True, exist_ok=True)
    max_len = min(options.max_len or config.max_seq_len, config.max_seq_len)
    data = MeshDataset(options.data)
    train_set, val_set = split(data, MeshDataset(options.val_data) if options.val_data else None,
                               max_len, options)

    torch.manual_seed(options.seed)
    model = MeshTransformer(config).to(rt.device)
    params = list(model.parameters())
    optimizer = adamw(list(model.named_parameters()), options.lr, BETAS, options.weight_decay)
    step, position = 0, DataPosition()
    path = out_dir / CHECKPOINT
    if options.init and not resume:
        new = init_from(model, options.init)
        if rt.main:
            print(f"warm start from {options.init}; {len(new)} new tensor(s)"
                  + (f": {', '.join(new[:8])}{' ...' if len(new) > 8 else ''}" if new else ""))
    if resume:
        tensors, state = ckpt.load_checkpoint(path)
        model.load_state_dict(ckpt.unprefixed("model", tensors))
        ckpt.load_optimizer_state(optimizer, ckpt.unprefixed("optim", tensors), state["optimizer"])
        ckpt.load_rng_state(ckpt.unprefixed("rng", tensors))
        step, position = state["step"], DataPosition(**state["position"])
        if state["world"] != rt.world and rt.main:
            print(f"note: resuming a {state['world']}-process run on {rt.world}: the data order "
                  "continues differently from the original run")

    net: nn.Module = TeacherForcing(model)
    if rt.distributed:
        net = DistributedDataParallel(net, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    sampler = BucketBatchSampler(train_set.lengths, options.batch_size, options.seed,
                                 rt.rank, rt.world, start=position)
    loader = DataLoader(AugmentedMeshes(train_set.meshes, config.n_points, max_len, options.seed,
                                        AugmentConfig() if options.augment else AugmentConfig.off(),
                                        config.n_candidates),
                        batch_sampler=sampler, collate_fn=collate, num_workers=options.workers,
                        worker_init_fn=_worker_init, pin_memory=rt.device.type == "cuda")
    # Every rank must join validation's all-reduce, even one whose share is empty.
    has_val = len(val_set.lengths) > 0
    val_batches = (validation_batches(val_set, config.n_points, max_len, options, rt, config.n_candidates)
                   if has_val else [])

    def save() -> None:
        if rt.main:
            tensors, optim_meta = checkpoint_tensors(model, optimizer)
            ckpt.save_checkpoint(path, tensors, {
                "kind": "pretrain", "step": step, "position": dataclasses.asdict(position),
                "options": dataclasses.asdict(options), "config": config.to_dict(),
                "optimizer": optim_meta, "world": rt.world})

    log = MetricsLog(out_dir / METRICS, enabled=rt.main)
    timer = Every(options.checkpoint_minutes * 60)
    bar = tqdm(total=options.steps, initial=step, disable=not rt.main, desc="train", dynamic_ncols=True)
    window_loss, window_tokens, window_steps, t_window = 0.0, 0.0, 0, time.time()
    t_leg = t_window
    net.train()
    for batch in loader if step < options.steps else ():
        lr = cosine_lr(step, options.steps, options.lr, options.lr * options.final_lr_ratio, options.warmup)
        batch = to_device(batch, rt.device)
        with rt.autocast():
            loss = net(**batch)
        update(loss, optimizer, params, lr, GRAD_CLIP)
        step, position = step + 1, sampler.advance(position)
        bar.update(1)

        loss_value = loss.item()
        window_loss += loss_value
        window_tokens += float((batch["labels"] != PAD_LABEL).sum())
        window_steps += 1
        if on_step is not None:
            on_step(step, loss_value)
        if step % options.log_every == 0 or step == options.steps:
            total_loss, total_tokens = rt.all_sum(window_loss, window_tokens)
            rate = total_tokens / max(time.time() - t_window, 1e-9)
            mean = total_loss / (window_steps * rt.world)
            log.write(step=step, loss=round(mean, 5), lr=lr, tokens_per_s=round(rate, 1),
                      epoch=position.epoch)
            bar.set_postfix(loss=f"{mean:.3f}", lr=f"{lr:.2e}", tok_s=f"{rate:.0f}")
            window_loss, window_tokens, window_steps, t_window = 0.0, 0.0, 0, time.time()
        if has_val and (step % options.val_every == 0 or step == options.steps):
            val_loss = validate(net, val_batches, rt)
            gap = condition_gap(model, val_batches, rt.device) if rt.main else {}
            log.write(step=step, val_loss=round(val_loss, 5), condition_gap=gap)
            bar.write(f"step {step}: val_loss {val_loss:.4f}; {format_gap(gap)}")
        stopping = rt.all_sum(float(stop.is_set()))[0] > 0
        out_of_time = options.max_minutes is not None and time.time() - t_leg > options.max_minutes * 60
        done = step >= options.steps or rt.all_sum(float(out_of_time))[0] > 0
        if stopping or done or timer.due():
            save()
        if stopping:
            bar.write(f"stopped at step {step}; continue with --resume")
        if stopping or done:
            break
    bar.close()
    return model
