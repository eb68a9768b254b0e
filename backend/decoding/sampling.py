"""Token sampling: logits + grammar mask -> probability distribution -> token.

The grammar mask is applied first (disallowed logits become -inf), then temperature, top-k and
top-p, so that the filters only ever choose among tokens the grammar allows. Greedy decoding is
the one-hot distribution on the masked argmax, which lets the speculative verifier treat greedy
and sampled decoding alike (a draft is accepted iff it is the argmax)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from backend.model.layers import vocab_logits


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 0.5  # BPT's settings
    top_k: int = 50           # 0 disables top-k
    top_p: float = 0.95       # 1.0 disables top-p
    greedy: bool = False

    def __post_init__(self) -> None:
        if not self.greedy and not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 (use greedy for argmax), got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


def distribution(logits: Tensor, mask: Tensor | None, cfg: SamplingConfig) -> Tensor:
    """Probabilities (..., V) the sampler draws from, given logits (..., V) and an optional bool
    mask of allowed tokens broadcastable to them. Rows must allow at least one token."""
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    if mask is not None:
        logits = torch.where(mask, logits, float("-inf"))
    if cfg.greedy:
        return torch.zeros_like(logits).scatter_(-1, logits.argmax(-1, keepdim=True), 1.0)
    vocab = logits.shape[-1]
    k = vocab if cfg.top_k == 0 else min(cfg.top_k, vocab)
    values, index = logits.topk(k, dim=-1)  # sorted, descending; the temperature keeps the order
    probs = (values / cfg.temperature).softmax(-1)
    if cfg.top_p < 1.0:
        # Keep the smallest prefix whose mass reaches top_p (the first token always survives).
        before = probs.cumsum(-1) - probs
        probs = probs.masked_fill(before >= cfg.top_p, 0.0)
        probs = probs / probs.sum(-1, keepdim=True)
    return torch.zeros_like(logits).scatter_(-1, index, probs)


def allowed_distribution(hidden: Tensor, weight: Tensor, masks: Tensor, cfg: SamplingConfig) -> Tensor:
    """`distribution(hidden @ weight.T, masks, cfg)` [R, V] for hidden states [R, d] and masks
    [R, V], scoring only the tokens some row allows. The grammar and the input mesh allow a few
    dozen of the 5,122 tokens at a step, and a masked token's score never reaches the softmax, so
    gathering those rows of the [V, d] output matrix gives the same probabilities for a fraction
    of the reading (issue 22: the LM head was about 0.6 ms of a 6 ms CPU pass)."""
    ids = masks.any(0).nonzero().squeeze(1)
    probs = distribution(vocab_logits(weight.index_select(0, ids), hidden), masks[:, ids], cfg)
    return torch.zeros(masks.shape, dtype=probs.dtype, device=probs.device).index_copy_(1, ids, probs)


def sample(probs: Tensor, generator: torch.Generator | None) -> Tensor:
    """One token per row of `probs` (V,) or (B, V), drawn with `generator` (reproducible per seed).

    Inverse-CDF sampling: one uniform per row instead of the V exponentials `torch.multinomial`
    draws, which made sampling cost as much as a small model's forward pass on a CPU. A token
    with zero probability is never picked (its CDF step is empty)."""
    flat = probs.reshape(-1, probs.shape[-1])
    cdf = flat.cumsum(-1)
    if not bool(torch.isfinite(cdf[:, -1]).all()):  # NaN weights, or an overflow upstream
        raise FloatingPointError("the model produced NaN or infinite scores; its weights or inputs are broken")
    u = uniform((flat.shape[0], 1), generator, like=cdf)
    index = torch.searchsorted(cdf, u * cdf[:, -1:], right=True)
    # u * total can round up to total itself: fall back to the last token with mass.
    last = (flat > 0).cumsum(-1).argmax(-1, keepdim=True)
    return torch.minimum(index, last).reshape(probs.shape[:-1])


def sample_token(logits: Tensor, mask: Tensor | None, cfg: SamplingConfig,
                 generator: torch.Generator | None) -> int:
    """Sample one token id from a single row of logits (V,)."""
    return int(sample(distribution(logits, mask, cfg), generator))


def make_generator(seed: int) -> torch.Generator:
    """A seeded CPU generator. Decoding draws its random numbers on the CPU on every device (see
    `uniform`), so a seed gives the same mesh on CUDA as on the CPU wherever the two devices'
    probabilities agree to rounding."""
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return generator


def uniform(shape: tuple[int, ...], generator: torch.Generator | None, like: Tensor) -> Tensor:
    """Uniform [0, 1) numbers of `like`'s dtype on `like`'s device, drawn from the CPU `generator`:
    the stream is the same whatever device the model runs on."""
    return torch.rand(shape, generator=generator, dtype=like.dtype).to(like.device)
