"""How many tokens per pass threshold verification could accept with perfect drafts.

    python benchmarks/scr_ceiling.py [--model models/default] [--procedural 20] [--json out.json]

Threshold verification (XSpecMesh Algorithm 1) accepts a draft x only while the backbone's own
probability p(x) > delta, so the backbone's confidence caps the SCR whatever the heads do. For
each held-out input this samples an AR generation (the pipeline's defaults: T 0.5, top-k 50,
top-p 0.95, grammar mask), scores it with one teacher-forced forward pass and replays Algorithm 1
along it with two ideal drafters:
- "oracle": drafts exactly the tokens AR sampled; a pass takes the next token plus the drafts
  while p(draft) > delta, at most D of them. The SCR a drafter could reach on AR's own samples.
- "argmax": along the same sequence, the chain goes on while the backbone's likeliest token has
  p > delta (the only token that can pass delta >= 0.5). An estimate of the best any drafter can
  do: it follows AR's positions, not the slightly greedier sequence such drafts would make.
Compare with the SCR that `specmesh bench` measures for the trained heads."""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from backend.benchmark import prepare
from backend.decoding.grammar_mask import GrammarMasks
from backend.decoding.pipeline import DoneEvent, GenerateOptions, Generator
from backend.decoding.sampling import distribution
from backend.evaluation import procedural_cases
from backend.tokenizer.grammar import GrammarState
from backend.tokenizer.vocab import BOS

DELTAS = (0.1, 0.3, 0.5, 0.7, 0.9)
HEADS = (1, 2, 4, 6, 8)


def replay_scr(confidences: list[np.ndarray], delta: float, heads: int) -> float:
    """Tokens per pass when a pass yields one token plus the following drafts while their
    confidence exceeds delta (at most `heads` drafts)."""
    tokens = passes = 0
    for conf in confidences:
        i, n = 0, len(conf)
        while i < n:
            accepted = 0
            while accepted < heads and i + 1 + accepted < n and conf[i + 1 + accepted] > delta:
                accepted += 1
            i += 1 + accepted
            passes += 1
        tokens += n
    return tokens / passes


@torch.inference_mode()
def confidences(generator: Generator, points: np.ndarray, normals: np.ndarray,
                options: GenerateOptions) -> tuple[np.ndarray, np.ndarray]:
    """(p of each sampled token, p of the likeliest token) along one AR generation."""
    done = [event for event in generator.stream(points, normals, options) if isinstance(event, DoneEvent)][-1]
    tokens = done.tokens.tolist()
    # The stream keeps its latents to itself; encoding again with the same seed gives the very same
    # ones (one encoder pass per input, negligible next to the generation).
    _, latents, _ = generator.encode(points, normals, options)
    fed = torch.tensor([[BOS, *tokens[:-1]]], device=generator.device)
    logits, _ = generator.model(fed, latents)
    masks, state, rows = GrammarMasks(generator.device), GrammarState(), []
    for token in tokens:
        rows.append(masks(state))
        state.advance(token)
    probs = distribution(logits[0], torch.stack(rows), options.sampling())
    sampled = probs[torch.arange(len(tokens)), torch.tensor(tokens, device=probs.device)]
    return sampled.cpu().numpy(), probs.max(-1).values.cpu().numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the shipped one)")
    parser.add_argument("--procedural", type=int, default=20, help="held-out inputs")
    parser.add_argument("--max-faces", type=int, default=150)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = Generator.load(args.model, "cpu")
    options = GenerateOptions(mode="ar", max_faces=args.max_faces)
    sampled, likeliest = [], []
    for item in prepare(procedural_cases(args.procedural), options.seed):
        p_sampled, p_max = confidences(generator, item.points, item.normals, options)
        sampled.append(p_sampled)
        likeliest.append(p_max)
    every = np.concatenate(sampled)
    results = {
        "model": generator.info["name"], "inputs": args.procedural, "tokens": int(len(every)),
        "options": {"temperature": options.temperature, "top_k": options.top_k, "top_p": options.top_p},
        "share_sampled_above": {str(d): float((every > d).mean()) for d in DELTAS},
        "oracle_scr": {str(d): {str(h): replay_scr(sampled, d, h) for h in HEADS} for d in DELTAS},
        "argmax_scr": {str(d): {str(h): replay_scr(likeliest, d, h) for h in HEADS} for d in DELTAS},
    }
    print(f"{results['tokens']} tokens from {args.procedural} AR generations; SCR ceilings (D = {HEADS}):")
    for d in DELTAS:
        oracle = " ".join(f"{v:.2f}" for v in results["oracle_scr"][str(d)].values())
        argmax = " ".join(f"{v:.2f}" for v in results["argmax_scr"][str(d)].values())
        print(f"  delta {d}: oracle {oracle} | argmax {argmax}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
