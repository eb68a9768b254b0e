"""XSpecMesh distillation on the tiny preset: head target indexing, a frozen backbone in stage 1,
LoRA merge equivalence and resume in stage 2, and the `specmesh distill` command."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from backend.cli import main
from backend.model.heads import MLPHeads
from backend.model.io import load_model, save_model
from backend.tokenizer.vocab import PAD_LABEL
from backend.data.dataset import MeshDataset
from backend.training.batches import collate
from backend.training.distill import (Distiller, DistillOptions, FrozenFeatures, LabelExamples, head_targets,
                                     heads_loss, sample_positions, teacher_distributions)
from backend.training.labels import make_labels
from backend.training.runtime import Runtime

CPU = Runtime(torch.device("cpu"))


def options(model: Path, data: Path, **changes) -> DistillOptions:
    base = dict(model=str(model), data=str(data), labels_count=4, label_batch=4, label_max_tokens=40,
                stage1_steps=3, stage2_steps=3, batch_size=2, log_every=1, checkpoint_minutes=0)
    return DistillOptions(**{**base, **changes})


def test_head_d_at_t_targets_token_t_plus_d_plus_2() -> None:
    labels = torch.tensor([[10, 11, 12, 13, PAD_LABEL]])  # labels[t] = token t+1 of the input
    targets = head_targets(labels, 2)
    assert targets[0, :, 0].tolist() == [11, 12, 13, PAD_LABEL, PAD_LABEL]
    assert targets[0, :, 1].tolist() == [12, 13, PAD_LABEL, PAD_LABEL, PAD_LABEL]


def test_soft_targets_are_the_backbone_where_it_predicts_the_heads_token() -> None:
    hidden = torch.randn(1, 5, 8)
    lm_head = nn.Linear(8, 11, bias=False)
    teacher = teacher_distributions(lm_head, hidden, torch.tensor([[0, 2]]), 2)  # [1, 2 positions, 2 heads, V]
    backbone = lm_head(hidden).softmax(-1).detach()
    # Head d at t targets labels[t + d + 1], which the backbone predicts from position t + d + 1.
    torch.testing.assert_close(teacher[0, 0, 0], backbone[0, 1])
    torch.testing.assert_close(teacher[0, 1, 1], backbone[0, 4])


def test_soft_loss_against_one_hot_teachers_is_the_hard_loss() -> None:
    logits = torch.randn(2, 3, 2, 11)
    targets = torch.randint(0, 11, (2, 3, 2))
    targets[0, 2, 1] = PAD_LABEL
    hard, hard_heads = heads_loss(logits, targets)
    soft, soft_heads = heads_loss(logits, targets, F.one_hot(targets.clamp(min=0), 11).float())
    torch.testing.assert_close(soft, hard)
    assert soft_heads == pytest.approx(hard_heads)


def test_soft_target_distillation_runs_both_stages(tiny_model_dir: Path, dataset: Path, tmp_path: Path) -> None:
    run = Distiller(options(tiny_model_dir, dataset, soft_targets=True), tmp_path, CPU, threading.Event())
    heads_before = {k: v.clone() for k, v in run.heads.state_dict().items()}
    _, heads = run.run()
    assert any(not torch.equal(v, heads_before[k]) for k, v in heads.state_dict().items())
    assert all(torch.isfinite(v).all() for v in heads.state_dict().values())


def test_token_input_heads_distill_save_and_load(tiny_model_dir: Path, dataset: Path, tmp_path: Path) -> None:
    model, heads = Distiller(options(tiny_model_dir, dataset, token_input=True), tmp_path, CPU,
                             threading.Event()).run()
    assert heads.token_input and heads.tok_w.abs().sum() > 0  # the projection learned from zero
    save_model(tmp_path / "model", model, heads)
    _, loaded, config = load_model(tmp_path / "model")
    assert config.head_token_input and torch.equal(loaded.tok_w, heads.tok_w)


def test_stage1_trains_heads_and_leaves_backbone(tiny_model_dir: Path, dataset: Path, tmp_path: Path) -> None:
    run = Distiller(options(tiny_model_dir, dataset, lora=False), tmp_path, CPU, threading.Event())
    heads_before = {k: v.clone() for k, v in run.heads.state_dict().items()}
    model, heads = run.run()
    original, _, _ = load_model(tiny_model_dir)
    assert all(torch.equal(v, original.state_dict()[k]) for k, v in model.state_dict().items())
    changed = [k for k, v in heads.state_dict().items() if not torch.equal(v, heads_before[k])]
    assert changed


def test_stage2_merge_equals_peft_and_resume_finishes(tiny_model_dir: Path, dataset: Path, tmp_path: Path) -> None:
    opts = options(tiny_model_dir, dataset)
    stop = threading.Event()
    run = Distiller(opts, tmp_path, CPU, stop, on_step=lambda stage, step, _: stage == 2 and step == 2 and stop.set())
    assert run.run() is None and run.peft is not None
    chunks = {p: p.stat().st_mtime_ns for p in (tmp_path / "labels").glob("*.npz")}

    tokens = torch.tensor([[5121, 4700, 600, 700, 800]])
    points = torch.rand(1, 64, 3) * 2 - 1
    normals = torch.nn.functional.normalize(torch.randn(1, 64, 3), dim=-1)
    with torch.no_grad():
        lora_logits, _ = run.model(tokens, run.model.encode_points(points, normals))
        base, _, _ = load_model(tiny_model_dir)
        base_logits, _ = base(tokens, base.encode_points(points, normals))
        merged = run.peft.merge_and_unload()
        merged_logits, _ = merged(tokens, merged.encode_points(points, normals))
    assert not torch.allclose(lora_logits, base_logits)  # the adapters learned something
    assert type(merged).__name__ == "MeshTransformer" and not any("lora" in k for k in merged.state_dict())
    torch.testing.assert_close(merged_logits, lora_logits, atol=1e-5, rtol=1e-5)

    resumed = Distiller(opts, tmp_path, CPU, threading.Event(), resume=True)
    assert resumed.state.stage == 2 and resumed.state.step == 2
    model, heads = resumed.run()
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "labels").glob("*.npz")} == chunks

    # The interrupted run ends exactly where an uninterrupted one does.
    full_model, full_heads = Distiller(opts, tmp_path / "full", CPU, threading.Event()).run()
    for a, b in ((model, full_model), (heads, full_heads)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_distill_command_exports_loadable_model(tiny_model_dir: Path, dataset: Path, tmp_path: Path) -> None:
    export = tmp_path / "model"
    argv = ["distill", "--model", str(tiny_model_dir), "--data", str(dataset), "--out", str(tmp_path / "run"),
            "--labels-count", "2", "--label-batch", "2", "--label-max-tokens", "24", "--stage1-steps", "2",
            "--batch-size", "2", "--heads", "2", "--head-type", "mlp", "--no-lora", "--threads", "1",
            "--export", str(export)]
    assert main(argv) == 0
    model, heads, config = load_model(export)
    assert isinstance(heads, MLPHeads) and heads.num_heads == 2 and config.spec_heads == 2
    assert main(argv[:-2] + ["--resume"]) == 0  # a finished run resumes straight to the export


def test_sampled_positions_are_distinct_and_valid_first() -> None:
    valid = torch.zeros(2, 10, dtype=torch.bool)
    valid[0, :8], valid[1, :2] = True, True
    positions = sample_positions(valid, 4, torch.Generator().manual_seed(0))
    assert positions.shape == (2, 4)
    assert all(len(set(row.tolist())) == 4 for row in positions)
    assert valid[0, positions[0]].all()  # enough valid positions: only those are drawn
    assert set(positions[1].tolist()) >= {0, 1}  # too few: all valid ones, padded by ignored ones
    assert sample_positions(valid, 0, torch.Generator()).tolist() == [list(range(10))] * 2


def test_frozen_features_match_a_teacher_forced_forward(tiny_model_dir: Path, dataset: Path, tmp_path: Path) -> None:
    run = Distiller(options(tiny_model_dir, dataset), tmp_path, CPU, threading.Event())
    labels = make_labels(run.model, MeshDataset(str(dataset)), tmp_path / "labels", 3, 3, 40, 0)
    examples = LabelExamples(labels, run.config.max_seq_len)
    features = FrozenFeatures.compute(run.model, examples, 2, torch.device("cpu"))
    item = examples[(0, 2)]
    batch = collate([item])
    with torch.no_grad():
        _, hidden = run.model(batch["inputs"], run.model.encode_points(batch["points"], batch["normals"]))
    torch.testing.assert_close(features.hidden[2], hidden[0], atol=1e-5, rtol=1e-5)
    padded = features.batch([0, 2])
    assert padded["hidden"].shape[:2] == padded["labels"].shape and padded["latents"].shape[0] == 2
