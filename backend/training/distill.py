"""XSpecMesh distillation of the drafting heads (XSpecMesh §3.3).

Stage 1: backbone frozen, heads trained on the backbone's own generations with
`sum_d 0.8^d CE_d`; with `soft_targets` each CE_d is taken against the backbone's whole
distribution at the target position instead of its one sampled token (self-distillation as in
Medusa-2). The frozen backbone's hidden states on the labels are computed once, so a stage-1
step costs only the heads. Both stages evaluate the head loss at `head_positions` random
positions per sequence instead of all of them: the [B, T, D, V] head logits are what make a step
expensive, and neighbouring positions of one sequence teach the heads much the same. Stage 2
(optional): LoRA on the decoder's linear layers (peft) trained jointly with the heads on
`lambda * L_backbone + L_heads`; the LoRA is then merged so the exported model is a plain
MeshTransformer. Checkpoints resume exactly within either stage."""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from backend.data.dataset import MeshDataset
from backend.model.decoder import MeshTransformer
from backend.model.heads import DraftHeads, build_heads
from backend.model.io import load_model
from backend.tokenizer.vocab import PAD_LABEL
from backend.training import checkpoint as ckpt
from backend.training.batches import BucketBatchSampler, DataPosition, collate, example
from backend.training.labels import Labels, make_labels
from backend.training.pretrain import lm_loss, to_device
from backend.training.runtime import Every, MetricsLog, Runtime, adamw, update
from backend.training.schedule import cosine_lr

CHECKPOINT = "checkpoint.safetensors"
METRICS = "metrics.jsonl"
HEAD_DECAY = 0.8      # weight of head d is 0.8^d (d = 1..D)
BETAS = (0.9, 0.99)
GRAD_CLIP = 1.0
DONE = 3              # stage number once both stages have finished


@dataclass
class DistillOptions:
    model: str
    data: str
    labels_count: int = 1024
    label_batch: int = 16
    label_max_tokens: int | None = None   # None: the model's max_seq_len
    stage1_steps: int = 2000
    stage2_steps: int = 1000
    batch_size: int = 8
    heads: int | None = None              # None: the model config's spec_heads
    head_type: str | None = None          # None: the model config's head_type
    token_input: bool | None = None       # heads read the sampled token; None: the config's
    lora: bool = True
    lora_rank: int = 16
    lora_alpha: int = 32
    backbone_weight: float = 50.0         # lambda in lambda * L_backbone + L_heads
    head_positions: int = 64              # positions per sequence in the head loss (0: all)
    soft_targets: bool = False            # heads learn the backbone's distributions, not its samples
    stage1_lr: tuple[float, float] = (5e-4, 5e-5)
    stage2_lr: tuple[float, float] = (1e-4, 1e-5)
    seed: int = 0
    log_every: int = 10
    checkpoint_minutes: float = 5.0


def head_targets(labels: Tensor, n: int) -> Tensor:
    """[B, T] backbone labels -> [B, T, n]: head d (0-based) at t predicts labels[t + d + 1]."""
    b, t = labels.shape
    targets = labels.new_full((b, t, n), PAD_LABEL)
    for d in range(min(n, t - 1)):
        targets[:, :t - d - 1, d] = labels[:, d + 1:]
    return targets


def heads_loss(logits: Tensor, targets: Tensor, teacher: Tensor | None = None) -> tuple[Tensor, list[float]]:
    """`sum_d 0.8^d CE_d` over heads d = 1..D for logits [B, K, D, V] and targets [B, K, D], and
    each head's CE (for the log). With `teacher` ([B, K, D, V] probabilities) CE_d is taken
    against those distributions instead of the target tokens, at the positions that have a target."""
    total, per_head = logits.new_zeros((), dtype=torch.float32), []
    for d in range(logits.shape[2]):
        valid = targets[:, :, d] != PAD_LABEL
        count = valid.sum().clamp(min=1)
        if teacher is None:
            ce = F.cross_entropy(logits[:, :, d].float().flatten(0, 1), targets[:, :, d].flatten(),
                                 ignore_index=PAD_LABEL, reduction="sum") / count
        else:
            log_q = logits[:, :, d].float().log_softmax(-1)
            ce = -(teacher[:, :, d] * log_q).sum(-1)[valid].sum() / count
        total = total + HEAD_DECAY ** (d + 1) * ce
        per_head.append(ce.item())
    return total, per_head


def teacher_distributions(lm_head: nn.Module, hidden: Tensor, index: Tensor, n: int) -> Tensor:
    """The backbone's distributions [B, K, n, V] over the tokens that the n heads at positions
    `index` [B, K] predict: head d (0-based) at t predicts labels[t + d + 1], which the backbone
    predicts from its hidden state at t + d + 1 (clamped at the end, where targets are padding)."""
    b, k = index.shape
    later = (index[:, :, None] + 1 + torch.arange(n, device=index.device)).clamp(max=hidden.shape[1] - 1)
    states = hidden.detach().gather(1, later.reshape(b, k * n, 1).expand(-1, -1, hidden.shape[-1]))
    with torch.no_grad():
        return lm_head(states).float().softmax(-1).view(b, k, n, -1)


def sample_positions(valid: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """[B, T] bool -> [B, K] distinct positions per row, uniformly among the valid ones (a row with
    fewer than K valid positions takes them all plus invalid ones, whose targets are ignored).
    k == 0 or k >= T: every position."""
    b, t = valid.shape
    if k == 0 or k >= t:
        return torch.arange(t, device=valid.device).expand(b, t)
    scores = torch.rand(b, t, generator=generator).to(valid.device).masked_fill(~valid, -1.0)
    return scores.topk(k, dim=1).indices


def head_loss_at_positions(heads: DraftHeads, model: MeshTransformer, hidden: Tensor, latents: Tensor,
                           labels: Tensor, k: int, generator: torch.Generator,
                           soft_targets: bool = False) -> tuple[Tensor, list[float]]:
    """The heads' loss on backbone hidden states [B, T, d] at `k` sampled positions per row; with
    `soft_targets`, against the backbone's distributions rather than its sampled labels. Heads that
    read the sampled token get labels[t], the token the hidden state at t predicted (x_n)."""
    targets = head_targets(labels, heads.num_heads)  # [B, T, D]
    index = sample_positions(targets[:, :, 0] != PAD_LABEL, k, generator)
    teacher = teacher_distributions(model.lm_head, hidden, index, heads.num_heads) if soft_targets else None
    index = index[:, :, None]
    at_positions = hidden.gather(1, index.expand(-1, -1, hidden.shape[-1]))
    targets = targets.gather(1, index.expand(-1, -1, targets.shape[-1]))
    embedding = None
    if heads.token_input:
        embedding = model.tok_emb(labels.gather(1, index[:, :, 0]).clamp(min=0))  # padding: masked anyway
    return heads_loss(heads(at_positions, latents, token_embedding=embedding), targets, teacher)


class DistillNet(nn.Module):
    """Stage 2 on a teacher-forced batch: LoRA backbone and heads, `lambda * L_backbone + L_heads`."""

    def __init__(self, model: MeshTransformer, heads: DraftHeads, backbone_weight: float,
                 head_positions: int, soft_targets: bool) -> None:
        super().__init__()
        self.model, self.heads = model, heads
        self.backbone_weight, self.head_positions, self.soft_targets = backbone_weight, head_positions, soft_targets

    def forward(self, inputs: Tensor, labels: Tensor, points: Tensor, normals: Tensor,
                generator: torch.Generator) -> tuple[Tensor, float, list[float]]:
        latents = self.model.encode_points(points, normals)
        logits, hidden = self.model(inputs, latents)
        loss, per_head = head_loss_at_positions(self.heads, self.model, hidden, latents, labels,
                                                self.head_positions, generator, self.soft_targets)
        backbone = lm_loss(logits, labels)
        return loss + self.backbone_weight * backbone, backbone.item(), per_head


@dataclass
class FrozenFeatures:
    """What stage 1 reads from the frozen backbone, computed once: per label its final hidden
    states [T_i, d] and point latents [L, d], and the backbone's CE on its own labels."""
    hidden: list[Tensor]
    latents: Tensor
    labels: list[Tensor]
    backbone_loss: float

    @classmethod
    @torch.no_grad()
    def compute(cls, model: MeshTransformer, examples: Dataset, batch: int, device: torch.device) -> "FrozenFeatures":
        hidden, latents, labels = [], [], []
        total, count = 0.0, 0
        keys = [(0, i) for i in range(len(examples))]
        for start in tqdm(range(0, len(keys), batch), desc="backbone features", leave=False):
            items = [examples[key] for key in keys[start:start + batch]]
            b = to_device(collate(items), device)
            lat = model.encode_points(b["points"], b["normals"])
            logits, h = model(b["inputs"], lat)
            mask = b["labels"] != PAD_LABEL
            total += F.cross_entropy(logits[mask].float(), b["labels"][mask], reduction="sum").item()
            count += int(mask.sum())
            for row, item in enumerate(items):
                n = len(item["labels"])
                hidden.append(h[row, :n].float().cpu())
                labels.append(b["labels"][row, :n].cpu())
            latents.append(lat.float().cpu())
        return cls(hidden, torch.cat(latents), labels, total / max(count, 1))

    def batch(self, indices: list[int]) -> dict[str, Tensor]:
        """Right-padded hidden [B, T, d] and labels [B, T] (PAD_LABEL), latents [B, L, d]."""
        width = max(len(self.labels[i]) for i in indices)
        hidden = torch.zeros(len(indices), width, self.hidden[0].shape[-1])
        labels = torch.full((len(indices), width), PAD_LABEL, dtype=torch.long)
        for row, i in enumerate(indices):
            hidden[row, :len(self.labels[i])] = self.hidden[i]
            labels[row, :len(self.labels[i])] = self.labels[i]
        return {"hidden": hidden, "labels": labels, "latents": self.latents[indices]}


class LabelExamples(Dataset):
    """Teacher-forcing examples from the cached labels, keyed by (epoch, index) like training."""

    def __init__(self, labels: Labels, max_len: int) -> None:
        self.labels, self.max_len = labels, max_len

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, np.ndarray]:
        i = key[1]
        return example(self.labels.tokens[i], self.labels.points[i], self.labels.normals[i], self.max_len)


def lora_targets(model: MeshTransformer) -> str:
    """A regex (peft full-matches it against module names) for the decoder's attention and MLP
    linear layers. Plain names would also suffix-match the point encoder's `blocks.*`."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.startswith("blocks.")]
    return "|".join(re.escape(n) for n in names)


def add_lora(model: MeshTransformer, rank: int, alpha: int) -> PeftModel:
    """Wraps `model` in place (its decoder linears gain LoRA adapters; all else is frozen)."""
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=lora_targets(model))
    return get_peft_model(model, config)


def trainable(module: nn.Module) -> dict[str, nn.Parameter]:
    return {n: p for n, p in module.named_parameters() if p.requires_grad}


def load_trainable(module: nn.Module, tensors: dict[str, Tensor]) -> None:
    """Load a checkpoint's adapter weights; every trainable parameter must be covered."""
    missing = set(trainable(module)) - set(tensors)
    unexpected = set(tensors) - dict(module.named_parameters()).keys()
    if missing or unexpected:
        raise ValueError(f"checkpoint does not match the LoRA layout (missing {sorted(missing)[:3]}, "
                         f"unexpected {sorted(unexpected)[:3]})")
    module.load_state_dict(tensors, strict=False)


@dataclass
class StageState:
    stage: int = 1
    step: int = 0
    position: DataPosition = DataPosition()


class Distiller:
    """Holds the run: backbone, heads, labels, and the checkpoint that ties them together."""

    def __init__(self, options: DistillOptions, out_dir: Path, rt: Runtime, stop: threading.Event,
                 resume: bool = False, on_step: Callable[[int, int, float], None] | None = None) -> None:
        self.options, self.out_dir, self.rt, self.stop, self.on_step = options, out_dir, rt, stop, on_step
        out_dir.mkdir(parents=True, exist_ok=True)
        model, _, config = load_model(options.model, rt.device)
        # The drafting-head settings live in the config that is exported with the heads.
        token_input = config.head_token_input if options.token_input is None else options.token_input
        self.config = dataclasses.replace(config, spec_heads=options.heads or config.spec_heads,
                                          head_type=options.head_type or config.head_type,
                                          head_token_input=token_input)
        model.config = self.config
        self.model = model.requires_grad_(False)
        self.peft: PeftModel | None = None
        self.labels: Labels | None = None
        torch.manual_seed(options.seed)
        self.heads = build_heads(self.config, lm_head=model.lm_head).to(rt.device)
        self.state = StageState()
        self.optimizer_tensors: dict[str, Tensor] = {}
        self.optimizer_meta: dict | None = None
        if resume:
            self._restore()
        self.log = MetricsLog(out_dir / METRICS)

    # -- checkpoints -------------------------------------------------------------------------
    def _restore(self) -> None:
        tensors, state = ckpt.load_checkpoint(self.out_dir / CHECKPOINT)
        if state.get("kind") != "distill":
            raise ValueError(f"{self.out_dir} does not hold a distillation checkpoint")
        self.heads.load_state_dict(ckpt.unprefixed("heads", tensors))
        lora = ckpt.unprefixed("lora", tensors)
        if lora:
            self._enable_lora()
            load_trainable(self.model, lora)
        ckpt.load_rng_state(ckpt.unprefixed("rng", tensors))
        self.state = StageState(state["stage"], state["step"], DataPosition(**state["position"]))
        self.optimizer_tensors = ckpt.unprefixed("optim", tensors)
        self.optimizer_meta = state.get("optimizer")

    def save(self, optimizer: torch.optim.Optimizer | None) -> None:
        tensors = {**ckpt.prefixed("heads", self.heads.state_dict()), **ckpt.prefixed("rng", ckpt.rng_state())}
        if self.peft is not None:
            tensors.update(ckpt.prefixed("lora", trainable(self.model)))
        meta = None
        if optimizer is not None:
            optim_tensors, meta = ckpt.optimizer_state(optimizer)
            tensors.update(ckpt.prefixed("optim", optim_tensors))
        ckpt.save_checkpoint(self.out_dir / CHECKPOINT, tensors, {
            "kind": "distill", "stage": self.state.stage, "step": self.state.step,
            "position": dataclasses.asdict(self.state.position), "optimizer": meta,
            "options": dataclasses.asdict(self.options), "config": self.config.to_dict()})

    def _enable_lora(self) -> None:
        if self.peft is None:
            self.peft = add_lora(self.model, self.options.lora_rank, self.options.lora_alpha)

    # -- stages ------------------------------------------------------------------------------
    def run(self) -> tuple[MeshTransformer, DraftHeads] | None:
        """Runs the remaining stages; None when stopped early (a checkpoint was written)."""
        o = self.options
        with self.rt.autocast():
            self.labels = make_labels(self.model, MeshDataset(o.data), self.out_dir / "labels", o.labels_count,
                                      o.label_batch, o.label_max_tokens or self.config.max_seq_len, o.seed,
                                      stop=self.stop)
        if self.labels is None:
            return None
        if self.state.stage == 1:
            if not self._stage(o.stage1_steps, o.stage1_lr, train_backbone=False):
                return None
            self._next_stage(2 if o.lora else DONE)
        if self.state.stage == 2:
            self._enable_lora()
            if not self._stage(o.stage2_steps, o.stage2_lr, train_backbone=True):
                return None
            self._next_stage(DONE)
        model = self.peft.merge_and_unload() if self.peft is not None else self.model
        return model.eval(), self.heads.eval()

    def _next_stage(self, stage: int) -> None:
        self.state = StageState(stage)
        self.optimizer_tensors, self.optimizer_meta = {}, None
        self.save(None)

    def _stage(self, steps: int, lr_range: tuple[float, float], train_backbone: bool) -> bool:
        """Train the current stage to `steps`; False if stopped first."""
        if train_backbone:
            self._enable_lora()
        params = {**trainable(self.heads), **{f"backbone.{k}": v for k, v in trainable(self.model).items()}}
        optimizer = adamw(list(params.items()), lr_range[0], BETAS, weight_decay=0.0)
        if self.optimizer_meta is not None:
            ckpt.load_optimizer_state(optimizer, self.optimizer_tensors, self.optimizer_meta)
        self.model.train(train_backbone)
        self.heads.train()

        o, st = self.options, self.state
        examples = LabelExamples(self.labels, self.config.max_seq_len)
        lengths = np.array([len(t) for t in self.labels.tokens])
        sampler = BucketBatchSampler(lengths, o.batch_size, o.seed + st.stage, start=st.position)
        if train_backbone:
            net = DistillNet(self.model, self.heads, o.backbone_weight, o.head_positions, o.soft_targets)
            batches = DataLoader(examples, batch_sampler=sampler, collate_fn=collate)

            def step_loss(batch: dict[str, Tensor], generator: torch.Generator) -> tuple[Tensor, float, list[float]]:
                return net(**batch, generator=generator)
        else:
            with self.rt.autocast():
                features = FrozenFeatures.compute(self.model, examples, o.label_batch, self.rt.device)
            batches = (features.batch([i for _, i in keys]) for keys in sampler)

            def step_loss(batch: dict[str, Tensor], generator: torch.Generator) -> tuple[Tensor, float, list[float]]:
                loss, per_head = head_loss_at_positions(self.heads, self.model, batch["hidden"], batch["latents"],
                                                        batch["labels"], o.head_positions, generator, o.soft_targets)
                return loss, features.backbone_loss, per_head

        timer = Every(o.checkpoint_minutes * 60)
        bar = tqdm(total=steps, initial=st.step, desc=f"distill stage {st.stage}", dynamic_ncols=True)
        t0, tokens = time.time(), 0.0
        for batch in batches if st.step < steps else ():
            lr = cosine_lr(st.step, steps, lr_range[0], lr_range[1])
            batch = to_device(batch, self.rt.device)
            # Positions are drawn from a generator seeded by the step, so a resumed run draws the same.
            generator = torch.Generator().manual_seed(o.seed * 1_000_003 + st.stage * 100_003 + st.step)
            with self.rt.autocast():
                loss, backbone, per_head = step_loss(batch, generator)
            update(loss, optimizer, list(params.values()), lr, GRAD_CLIP)
            loss_value = loss.item()
            st.step, st.position = st.step + 1, sampler.advance(st.position)
            tokens += float((batch["labels"] != PAD_LABEL).sum())
            bar.update(1)
            if self.on_step is not None:
                self.on_step(st.stage, st.step, loss_value)
            if st.step % o.log_every == 0 or st.step == steps:
                rate = tokens / max(time.time() - t0, 1e-9)
                self.log.write(stage=st.stage, step=st.step, loss=round(loss_value, 5),
                               backbone_loss=round(backbone, 5), head_losses=[round(x, 4) for x in per_head],
                               lr=lr, tokens_per_s=round(rate, 1))
                bar.set_postfix(loss=f"{loss_value:.3f}", h1=f"{per_head[0]:.2f}", lr=f"{lr:.1e}")
                t0, tokens = time.time(), 0.0
            stopping = self.stop.is_set()
            if stopping or timer.due():
                self.save(optimizer)
            if stopping:
                bar.close()
                return False
            if st.step >= steps:
                break
        bar.close()
        return True
