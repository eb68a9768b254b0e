"""Plain autoregressive decoding with the static KV cache: one backbone forward pass per token.

`ar_step` is the one AR step: the batch-1 stream, the batched label generator and the speculative
decoder's prefill all run it. `stream_ar` is the baseline the pipeline runs; `generate_ar_batch`
runs many conditions in lockstep to produce the backbone's own generations as distillation labels."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from backend.decoding.constraint import InputConstraint
from backend.decoding.grammar_mask import GrammarMasks
from backend.decoding.sampling import SamplingConfig, allowed_distribution, make_generator, sample
from backend.model.decoder import KVCache, MeshTransformer
from backend.tokenizer.grammar import GrammarState
from backend.tokenizer.vocab import BOS, EOS


def token_limit(model: MeshTransformer, max_tokens: int) -> int:
    """Most tokens a generation may produce: the last one is never fed back, so a sequence of
    n tokens occupies positions 0..n-1 (BOS first) and n may reach max_seq_len."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    return min(int(max_tokens), model.config.max_seq_len)


def ar_step(model: MeshTransformer, cache: KVCache, fed: Tensor, masks: Tensor, sampling: SamplingConfig,
            generator: torch.Generator | None, clock: "Clock | None" = None) -> tuple[Tensor, Tensor]:
    """Feed one token per row (fed [B, 1]) and sample the next under the grammar masks [B, V]:
    (next tokens [B], the final hidden states [B, d] that predicted them)."""
    clock = clock or Clock(None)
    _, hidden = model(fed, cache=cache, logits=False)
    clock("model")
    token = sample(allowed_distribution(hidden[:, -1], model.output_weight, masks, sampling), generator)
    clock("sampling")
    return token, hidden[:, -1]


class Clock:
    """Adds the seconds since the previous call to `profile[section]`; a no-op without a profile."""

    def __init__(self, profile: dict[str, float] | None) -> None:
        self.profile, self.last = profile, time.perf_counter()

    def __call__(self, section: str) -> None:
        if self.profile is not None:
            now = time.perf_counter()
            self.profile[section] = self.profile.get(section, 0.0) + now - self.last
            self.last = now


@torch.inference_mode()
def stream_ar(model: MeshTransformer, latents: Tensor, sampling: SamplingConfig, max_tokens: int,
              generator: torch.Generator | None, profile: dict[str, float] | None = None,
              constraint: InputConstraint | None = None) -> Iterator[list[int]]:
    """Yield [token] per forward pass (BOS prefill first) until EOS or `max_tokens`; with
    `constraint`, decoding stays on the input mesh."""
    limit = token_limit(model, max_tokens)
    cache = model.new_cache(1, limit, latents)
    masks = GrammarMasks(latents.device, constraint)
    state = GrammarState()
    token = BOS
    for _ in range(limit):
        clock = Clock(profile)
        fed = torch.tensor([[token]], device=latents.device)
        token = int(ar_step(model, cache, fed, masks(state)[None], sampling, generator, clock)[0])
        state.advance(token)
        clock("host")
        yield [token]
        if token == EOS:
            return


@torch.inference_mode()
def generate_ar_batch(model: MeshTransformer, points: np.ndarray | Tensor, normals: np.ndarray | Tensor,
                      sampling: SamplingConfig, max_tokens: int, seed: int) -> list[np.ndarray]:
    """Sample one sequence per condition (points, normals [B, N, 3], already normalized) in
    lockstep. Finished rows keep being fed EOS (their grammar mask allows only EOS) and are
    ignored; the loop ends when every row has finished or `max_tokens` is reached. Each returned
    int64 array ends with EOS if it finished."""
    weight = next(model.parameters())
    device = weight.device
    points = torch.as_tensor(points, dtype=weight.dtype, device=device)
    normals = torch.as_tensor(normals, dtype=weight.dtype, device=device)
    if points.ndim != 3 or points.shape[-1] != 3 or normals.shape != points.shape:
        raise ValueError(f"points and normals must both be [B, N, 3], got {tuple(points.shape)} "
                         f"and {tuple(normals.shape)}")
    batch = points.shape[0]
    limit = token_limit(model, max_tokens)
    latents = model.encode_points(points, normals)
    cache = model.new_cache(batch, limit, latents)
    masks = GrammarMasks(device)
    generator = make_generator(seed)
    states = [GrammarState() for _ in range(batch)]
    rows: list[list[int]] = [[] for _ in range(batch)]
    active = set(range(batch))
    fed = torch.full((batch, 1), BOS, dtype=torch.long, device=device)
    for _ in range(limit):
        fed = ar_step(model, cache, fed, torch.stack([masks(s) for s in states]), sampling, generator)[0][:, None]
        for i, token in enumerate(fed.view(-1).tolist()):
            if i in active:
                states[i].advance(token)
                rows[i].append(token)
                if token == EOS:
                    active.discard(i)
        if not active:
            break
    return [np.asarray(row, dtype=np.int64) for row in rows]
