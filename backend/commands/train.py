"""`specmesh train`: pre-train the backbone on a dataset directory (alone or under torchrun)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from backend.commands import add_threads_argument, set_threads
from backend.fileio import check_output_path
from backend.model.config import ModelConfig, load_preset
from backend.model.io import save_model
from backend.training import checkpoint as ckpt
from backend.training.pretrain import CHECKPOINT, TrainOptions, train
from backend.training.runtime import runtime, stop_on_signals

# Options that may differ between a run and its resumption without changing its trajectory.
TUNABLE = {"data", "val_data", "checkpoint_minutes", "workers", "log_every", "max_minutes"}


def configure(p: argparse.ArgumentParser) -> None:
    p.description = "Pre-train the mesh transformer. Launch with torchrun for several GPUs/processes; nothing else changes."
    p.add_argument("--data", required=True, help="dataset directory (specmesh data build)")
    p.add_argument("--config", help="model preset name or config JSON path (default: the default preset)")
    p.add_argument("--out", required=True, help="run directory: checkpoint, metrics.jsonl, config.json")
    defaults = TrainOptions(data="")
    p.add_argument("--steps", type=int, help=f"optimizer steps (default {defaults.steps})")
    p.add_argument("--batch-size", type=int, help=f"sequences per step and process (default {defaults.batch_size})")
    p.add_argument("--max-len", type=int, help="longest training sequence (default: the model's max_seq_len)")
    p.add_argument("--lr", type=float, help=f"peak learning rate (default {defaults.lr})")
    p.add_argument("--warmup", type=int, help=f"linear warmup steps (default {defaults.warmup})")
    p.add_argument("--val-data", help="held-out dataset directory (default: hold out 2%% of --data)")
    p.add_argument("--val-every", type=int, help=f"steps between validations (default {defaults.val_every})")
    p.add_argument("--log-every", type=int, help=f"steps between metrics lines (default {defaults.log_every})")
    p.add_argument("--seed", type=int, help=f"seed for init, data order, augmentation (default {defaults.seed})")
    p.add_argument("--checkpoint-minutes", type=float, help="minutes between checkpoints (default 5)")
    p.add_argument("--max-minutes", type=float,
                   help="wall-clock budget of this leg: checkpoint and stop (and --export) when spent")
    p.add_argument("--workers", type=int, help="data loader processes (default 1)")
    p.add_argument("--no-augment", dest="augment", action="store_const", const=False,
                   help="train on the meshes as stored")
    p.add_argument("--init", help="warm start from this model directory (weights whose names and shapes match)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    add_threads_argument(p)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--export", help="after training, write config.json + model.safetensors here")
    p.set_defaults(func=run)


def _config(spec: str) -> ModelConfig:
    path = Path(spec)
    return ModelConfig.load(path) if path.suffix == ".json" or path.is_file() else load_preset(spec)


def _given(args: argparse.Namespace) -> dict:
    fields = {f.name for f in dataclasses.fields(TrainOptions)}
    return {k: v for k, v in vars(args).items() if k in fields and v is not None}


def resolve(args: argparse.Namespace) -> tuple[TrainOptions, ModelConfig]:
    """Fresh run: options from the command line. Resume: the checkpoint's options and config,
    with only trajectory-neutral options (or an explicit --steps) taken from the command line."""
    given = _given(args)
    if not args.resume:
        return TrainOptions(**given), _config(args.config or "default")
    state = ckpt.read_state(Path(args.out) / CHECKPOINT)
    if state.get("kind") != "pretrain":
        raise ValueError(f"{args.out} does not hold a pre-training checkpoint")
    changed = {k: v for k, v in given.items() if k not in TUNABLE | {"steps"} and v != state["options"][k]}
    if changed:
        raise ValueError(f"cannot change {', '.join(sorted(changed))} when resuming (exact resume)")
    config = ModelConfig.from_dict(state["config"])
    if args.config and _config(args.config) != config:
        raise ValueError(f"--config {args.config} differs from the model of the run in {args.out}")
    return TrainOptions(**{**state["options"], **given}), config


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    options, config = resolve(args)
    if not Path(options.data).is_dir():
        raise FileNotFoundError(f"dataset directory not found: {options.data}")
    out = Path(args.out)
    if not args.resume and (out / CHECKPOINT).exists():
        raise ValueError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    # Before hours of training, not after: the run and the export must be writable folders.
    check_output_path(out / CHECKPOINT, "--out")
    if args.export:
        check_output_path(Path(args.export) / "config.json", "--export")
    with runtime(args.device) as rt, stop_on_signals() as stop:
        if rt.main:
            out.mkdir(parents=True, exist_ok=True)
            config.save(out / "config.json")
        model = train(options, config, out, rt, stop, resume=args.resume)
        if rt.main and stop.is_set():
            print(f"stopped early; continue with the same command plus --resume (run: {out})")
        elif rt.main and args.export:
            save_model(args.export, model)
            print(f"exported {args.export}")
    return 0
