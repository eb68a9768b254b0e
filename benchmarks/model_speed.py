"""Speed of the model modules on this machine (random weights; speed does not depend on them).

    python benchmarks/model_speed.py [--preset default] [--threads 2] [--device cpu] [--json out.json]

Reports ms per batch-1 decode step with 256/1024/2048 tokens already cached, verify steps of
2..17 tokens at 1024 cached (a D=4 linear draft verifies 5, a tree of 8 nodes 9), a drafting-heads
step, point encoding, and training forward+backward tokens/s."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

import torch

from backend.model.config import load_preset
from backend.model.decoder import MeshTransformer, count_parameters
from backend.model.heads import build_heads

VERIFY_WIDTHS = (2, 3, 5, 9, 13, 17)


def timed_ms(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall time of fn in ms, after two warm-up calls."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--train-len", type=int, default=512)
    parser.add_argument("--no-train", action="store_true", help="skip the training measurement")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    cfg = load_preset(args.preset)
    model = MeshTransformer(cfg).to(device).eval()
    heads = build_heads(cfg, model.lm_head).to(device).eval()
    results: dict[str, object] = {
        "preset": args.preset, "device": str(device), "threads": args.threads,
        "torch": torch.__version__, "parameters": count_parameters(model),
        "head_parameters": count_parameters(heads),
        "load_average_before": os.getloadavg()[0],  # other processes on the CPU skew everything
    }
    points = torch.rand(1, cfg.n_points, 3, device=device) * 2 - 1
    normals = torch.nn.functional.normalize(torch.randn(1, cfg.n_points, 3, device=device), dim=-1)
    tok1 = torch.randint(0, 5120, (1, 1), device=device)

    with torch.inference_mode():
        results["encode_ms"] = timed_ms(lambda: model.encode_points(points, normals), 10, device)
        latents = model.encode_points(points, normals)
        cache = model.new_cache(1, cfg.max_seq_len, latents)

        def step(prefix: int, tokens: torch.Tensor) -> Callable[[], object]:
            def run() -> object:
                cache.pos = prefix  # rollback keeps every repeat at the same length
                return model(tokens, cache=cache)
            return run

        for prefix in (256, 1024, cfg.max_seq_len - 1):
            results[f"decode_step_ms@{prefix}"] = timed_ms(step(prefix, tok1), args.repeats, device)
        for width in VERIFY_WIDTHS:
            tokens = torch.randint(0, 5120, (1, width), device=device)
            results[f"verify{width}_step_ms@1024"] = timed_ms(step(1024, tokens), args.repeats, device)
        prepared = heads.prepare(latents)
        hidden = torch.randn(1, cfg.d_model, device=device)
        results["heads_prepare_ms"] = timed_ms(lambda: heads.prepare(latents), 10, device)
        results["heads_draft_ms"] = timed_ms(lambda: heads.draft(hidden, prepared), args.repeats,
                                             device)

    if not args.no_train:
        results.update(train_speed(model, args.train_batch, args.train_len, device))
    results["load_average_after"] = os.getloadavg()[0]
    for key, value in results.items():
        print(f"{key:>24}: {value:.2f}" if isinstance(value, float) else f"{key:>24}: {value}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


def train_speed(model: MeshTransformer, b: int, t: int, device: torch.device) -> dict[str, float]:
    """Forward + backward of a [b, t] batch with point encoding, as pretraining does it."""
    cfg = model.config
    model.train()
    tokens = torch.randint(0, 5120, (b, t + 1), device=device)
    pts = torch.rand(b, cfg.n_points, 3, device=device) * 2 - 1
    nrm = torch.nn.functional.normalize(torch.randn(b, cfg.n_points, 3, device=device), dim=-1)

    def train_step() -> None:
        logits, _ = model(tokens[:, :-1], model.encode_points(pts, nrm))
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        model.zero_grad(set_to_none=True)
        loss.backward()

    ms = timed_ms(train_step, 3, device)
    return {"train_step_ms": ms, "train_tokens_per_s": b * t / (ms / 1e3)}


if __name__ == "__main__":
    main()
