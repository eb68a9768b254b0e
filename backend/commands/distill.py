"""`specmesh distill`: train XSpecMesh drafting heads for a trained backbone (stage 1), then
LoRA-tune backbone and heads jointly (stage 2) and export the merged model."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from backend.commands import add_threads_argument, set_threads
from backend.fileio import check_output_path
from backend.model.config import HEAD_TYPES
from backend.model.io import save_model
from backend.training import checkpoint as ckpt
from backend.training.distill import CHECKPOINT, Distiller, DistillOptions
from backend.training.runtime import runtime, stop_on_signals

# Options that may change when resuming without changing what the run computes.
TUNABLE = {"data", "checkpoint_minutes", "log_every", "stage1_steps", "stage2_steps"}


def configure(p: argparse.ArgumentParser) -> None:
    p.description = "Labels are the backbone's own generations on the dataset's point clouds (cached under OUT/labels)."
    d = DistillOptions(model="", data="")
    p.add_argument("--model", required=True, help="trained model directory (config.json + model.safetensors)")
    p.add_argument("--data", required=True, help="dataset directory whose meshes give the conditions")
    p.add_argument("--out", required=True, help="run directory: labels, checkpoint, metrics.jsonl")
    p.add_argument("--labels-count", type=int, help=f"generations to distill from (default {d.labels_count})")
    p.add_argument("--label-batch", type=int, help=f"generations sampled together (default {d.label_batch})")
    p.add_argument("--label-max-tokens", type=int, help="longest generation (default: max_seq_len)")
    p.add_argument("--stage1-steps", type=int, help=f"head-only steps (default {d.stage1_steps})")
    p.add_argument("--stage2-steps", type=int, help=f"LoRA + heads steps (default {d.stage2_steps})")
    p.add_argument("--batch-size", type=int, help=f"sequences per step (default {d.batch_size})")
    p.add_argument("--head-positions", type=int,
                   help=f"positions per sequence in the head loss, 0 = all (default {d.head_positions})")
    p.add_argument("--heads", type=int, help="number of drafting heads D (default: the model config's)")
    p.add_argument("--head-type", choices=HEAD_TYPES, help="ca (XSpecMesh) or mlp (Medusa-style ablation)")
    p.add_argument("--token-input", action="store_const", const=True,
                   help="heads also read the token the backbone just sampled (default: as the model config)")
    p.add_argument("--soft-targets", action="store_const", const=True,
                   help="train the heads on the backbone's distributions instead of its sampled tokens")
    p.add_argument("--no-lora", dest="lora", action="store_const", const=False, help="skip stage 2")
    p.add_argument("--seed", type=int, help=f"seed (default {d.seed})")
    p.add_argument("--checkpoint-minutes", type=float, help="minutes between checkpoints (default 5)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    add_threads_argument(p)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--export", help="where to write the distilled model (default OUT/model)")
    p.set_defaults(func=run)


def resolve(args: argparse.Namespace) -> DistillOptions:
    fields = {f.name for f in dataclasses.fields(DistillOptions)}
    given = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    if not args.resume:
        return DistillOptions(**given)
    state = ckpt.read_state(Path(args.out) / CHECKPOINT)
    if state.get("kind") != "distill":
        raise ValueError(f"{args.out} does not hold a distillation checkpoint")
    changed = sorted(k for k, v in given.items() if k not in TUNABLE and v != state["options"].get(k))
    if changed:
        raise ValueError(f"cannot change {', '.join(changed)} when resuming")
    return DistillOptions(**{**state["options"], **given})


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    options = resolve(args)
    out = Path(args.out)
    export = Path(args.export or out / "model")
    if export.resolve() == Path(options.model).resolve():
        # A resumed run re-reads --model; overwriting it would apply the LoRA twice.
        raise ValueError("--export must differ from --model")
    if not args.resume and (out / CHECKPOINT).exists():
        raise ValueError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    check_output_path(out / CHECKPOINT, "--out")  # before the training, not after it
    check_output_path(export / "config.json", "--export")
    with runtime(args.device) as rt, stop_on_signals() as stop:
        if rt.distributed:
            raise ValueError("distill runs in one process; launch it without torchrun")
        result = Distiller(options, out, rt, stop, resume=args.resume).run()
    if result is None:
        print(f"stopped; continue with: specmesh distill ... --out {out} --resume")
        return 0
    save_model(export, *result)
    print(f"exported {export}")
    return 0
