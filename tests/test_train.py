"""Backbone training on the tiny preset and a tiny synthetic dataset: learning, exact resume,
pickle-free checkpoints, DDP synchronisation and the `specmesh train` command."""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

import pytest
import torch

from backend.cli import main
from backend.data.dataset import build
from backend.model.config import load_preset
from backend.model.io import load_model
from backend.training import checkpoint as ckpt
from backend.training.pretrain import CHECKPOINT, METRICS, TrainOptions, train
from backend.training.runtime import Runtime

CPU = Runtime(torch.device("cpu"))


def options(data: Path, **changes) -> TrainOptions:
    base = dict(data=str(data), steps=6, batch_size=4, warmup=2, workers=0, log_every=1, val_every=3,
                checkpoint_minutes=0)
    return TrainOptions(**{**base, **changes})


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / METRICS).read_text().splitlines()]


def test_overfits_two_sequences(tmp_path: Path) -> None:
    data = tmp_path / "two"
    build(2, 1, data, workers=1, progress=False)
    opts = options(data, steps=40, batch_size=2, lr=3e-3, warmup=4, augment=False, val_data=str(data),
                   val_every=100)
    train(opts, load_preset("tiny"), tmp_path / "run", CPU, threading.Event())
    losses = [m["loss"] for m in metrics(tmp_path / "run") if "loss" in m]
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1.5, losses


def test_resume_reproduces_uninterrupted_run(dataset: Path, tmp_path: Path) -> None:
    cfg, opts = load_preset("tiny"), options(dataset)
    full = train(opts, cfg, tmp_path / "full", CPU, threading.Event())

    stop = threading.Event()
    train(opts, cfg, tmp_path / "cut", CPU, stop, on_step=lambda step, _: step == 4 and stop.set())
    assert ckpt.read_state(tmp_path / "cut" / CHECKPOINT)["step"] == 4
    resumed = train(opts, cfg, tmp_path / "cut", CPU, threading.Event(), resume=True)

    a, b = full.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # Same batches in the same order: the resumed run's step losses match the full run's.
    full_losses = {m["step"]: m["loss"] for m in metrics(tmp_path / "full") if "loss" in m}
    cut_losses = {m["step"]: m["loss"] for m in metrics(tmp_path / "cut") if "loss" in m}
    assert full_losses == cut_losses


def test_checkpoint_is_safetensors_without_pickles(dataset: Path, tmp_path: Path) -> None:
    train(options(dataset, steps=2), load_preset("tiny"), tmp_path, CPU, threading.Event())
    raw = (tmp_path / CHECKPOINT).read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + header_len])
    assert {"model.tok_emb.weight", "rng.cpu"} <= set(header)
    assert any(k.startswith("optim.") for k in header)
    for path in tmp_path.rglob("*"):  # neither a raw pickle nor a torch.save zip
        assert path.read_bytes()[:1] != b"\x80" and path.read_bytes()[:2] != b"PK", path
    _, state = ckpt.load_checkpoint(tmp_path / CHECKPOINT)
    assert state["step"] == 2 and state["position"] == {"epoch": 0, "batch": 2}
    assert not list(tmp_path.glob("*.tmp"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, data: str, out: str) -> None:
    from safetensors.torch import save_file

    from backend.training.runtime import runtime

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank), LOCAL_RANK=str(rank))
    with runtime("cpu") as rt:
        model = train(options(Path(data), steps=3, batch_size=2), load_preset("tiny"), Path(out), rt,
                      threading.Event())
    save_file({k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight" or
               not model.config.tie_embeddings}, f"{out}/rank{rank}.safetensors")


def test_ddp_two_processes_stay_in_sync(dataset: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    torch.multiprocessing.start_processes(_ddp_worker, args=(2, _free_port(), str(dataset), str(tmp_path)),
                                          nprocs=2, start_method="fork")
    a, b = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    state = ckpt.read_state(tmp_path / CHECKPOINT)  # written once, by rank 0
    assert state["step"] == 3 and state["world"] == 2
    # The ranks saw different batches: rank 0 logged the mean of both ranks' losses.
    assert len(metrics(tmp_path)) >= 3


def test_train_command_end_to_end(dataset: Path, tmp_path: Path) -> None:
    run, export = tmp_path / "run", tmp_path / "model"
    argv = ["train", "--data", str(dataset), "--config", "tiny", "--out", str(run), "--steps", "3",
            "--batch-size", "4", "--warmup", "1", "--threads", "1"]
    assert main(argv + ["--export", str(export)]) == 0
    model, heads, config = load_model(export)
    assert heads is None and config.d_model == load_preset("tiny").d_model
    assert (run / "config.json").is_file() and metrics(run)[-1]["step"] == 3
    assert main(argv) == 2  # refuses to overwrite a run without --resume
    assert main(argv + ["--resume", "--lr", "0.5"]) == 2  # exact resume forbids changing the recipe


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_trains_on_cuda_under_bf16_autocast(dataset: Path, tmp_path: Path) -> None:
    rt = Runtime(torch.device("cuda"))
    model = train(options(dataset, steps=3), load_preset("tiny"), tmp_path, rt, threading.Event())
    assert all(p.device.type == "cuda" and p.dtype == torch.float32 and p.isfinite().all()
               for p in model.parameters())
    assert all(m["loss"] == m["loss"] for m in metrics(tmp_path) if "loss" in m)  # no NaN
