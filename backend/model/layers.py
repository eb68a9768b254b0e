"""Attention and MLP building blocks shared by the point encoder and the decoder.

Layout convention: activations are [B, T, d]; attention keys/values are [B, H, T, Dh], which is
what `F.scaled_dot_product_attention` and the static KV cache both use."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


SMALL_BATCH_ROWS = 16


def vocab_logits(weight: Tensor, x: Tensor) -> Tensor:
    """x [..., d] @ weight [V, d]^T -> [..., V]. Decoding has only a few rows: W @ x^T then runs
    as a skinny GEMM over the vocabulary matrix instead of repacking all of W per call (about
    1.5-2x faster on a CPU for 1-16 rows); many rows (training) take the plain linear."""
    rows = x.reshape(-1, x.shape[-1])
    if rows.shape[0] > SMALL_BATCH_ROWS:
        return F.linear(x, weight)
    return (weight @ rows.T).T.reshape(*x.shape[:-1], weight.shape[0])


def split_heads(x: Tensor, n_heads: int) -> Tensor:
    """[B, T, H*Dh] -> [B, H, T, Dh]"""
    b, t, d = x.shape
    return x.view(b, t, n_heads, d // n_heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """[B, H, T, Dh] -> [B, T, H*Dh]"""
    b, h, t, dh = x.shape
    return x.transpose(1, 2).reshape(b, t, h * dh)


class MLP(nn.Module):
    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_ff)
        self.fc2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.fc2(F.gelu(self.fc1(x), approximate="tanh")))


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused qkv projection (one matmul per step on CPU)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, *, causal: bool, cache_k: Tensor | None = None,
                cache_v: Tensor | None = None, slots: Tensor | None = None, keys: int = 0,
                mask: Tensor | None = None) -> Tensor:
        """Without a cache: plain (causal or bidirectional) attention over x.

        With a cache ([B, H, T_max, Dh] buffers): the new keys/values are written at the cache
        `slots` [T] (`index_copy_`, no reallocation) and the queries attend to the first `keys`
        cached rows under `mask` ([T, keys] bool, or None where every one of them is visible)."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        if cache_k is not None and cache_v is not None:
            cache_k.index_copy_(2, slots, k)
            cache_v.index_copy_(2, slots, v)
            k, v = cache_k[:, :, :keys], cache_v[:, :, :keys]
            causal = False  # `mask` carries the causal structure relative to the cache
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p,
                                             is_causal=causal and t > 1)
        return self.resid_dropout(self.proj(merge_heads(out)))


class CrossAttention(nn.Module):
    """Queries from x, keys/values from a context (the point latents). `context_kv` is split
    out so that decoding computes the latent keys/values once per generation."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)

    def context_kv(self, context: Tensor) -> tuple[Tensor, Tensor]:
        k, v = self.kv(context).chunk(2, dim=-1)
        return split_heads(k, self.n_heads), split_heads(v, self.n_heads)

    def forward(self, x: Tensor, k: Tensor, v: Tensor) -> Tensor:
        q = split_heads(self.q(x), self.n_heads)
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        return self.resid_dropout(self.proj(merge_heads(out)))


def init_weights(module: nn.Module, n_residual_layers: int) -> None:
    """GPT-2 style: N(0, 0.02), zero biases, residual output projections scaled down by
    sqrt(2 * layers) so that the residual stream does not grow with depth."""
    for name, m in module.named_modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            std = 0.02
            if isinstance(m, nn.Linear) and (name.endswith(".proj") or name.endswith(".fc2")):
                std = 0.02 / (2 * n_residual_layers) ** 0.5
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def cache_layout(t: int, pos: int, tree: Tensor | None, keys: int | None, device: torch.device
                 ) -> tuple[Tensor, Tensor, Tensor | None, int]:
    """Where T new tokens go in a KV cache holding `pos` tokens: (positions [T], cache slots [T],
    attention mask [T, keys] or None, keys). Token i is written at slot pos + i; its position is
    pos + i, or pos + its depth in `tree` ([T, T] bool, row i sees row j), and it sees every
    cached token plus the new ones the causal order (or the tree) lets it see. `keys` None
    attends to pos + T keys (eager; one token needs no mask); a static cache passes its full
    length so that every pass with T tokens has the same shapes."""
    slots = torch.arange(pos, pos + t, device=device)
    if tree is None:
        positions = slots
        if t == 1 and keys is None:
            return positions, slots, None, pos + 1
        block = torch.ones(t, t, dtype=torch.bool, device=device).tril_()
    else:
        block = tree.to(device)
        positions = pos + block.sum(-1) - 1
    keys = pos + t if keys is None else keys
    mask = torch.cat([block.new_ones(t, pos), block, block.new_zeros(t, keys - pos - t)], dim=1)
    return positions, slots, mask, keys
