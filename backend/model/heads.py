"""XSpecMesh drafting heads: D heads read the backbone's final hidden state h_s and each
predicts one later token, `p^(d) = softmax(W^(d) . f^(d)(h_s, c))` (XSpecMesh eq. 4).

Tensor index d (0-based) at position s predicts token s + d + 2 (the backbone predicts s + 1).

With `config.head_token_input` each head also reads the embedding of x_n, the token the backbone
sampled from h_s: h_s predicted x_n but cannot know which token the sampler drew, and every later
token depends on it (EAGLE, Li et al. 2024, feeds the sampled token to its drafter for the same
reason). The embedding enters through a per-head projection added to h_s, zero at the start.

The D heads' weights are stacked along a leading head axis so that all heads run as a handful
of batched matmuls, which is what keeps a batch-1 draft step cheap on a CPU. `num_heads=n`
runs only the first n heads (a slice of the stacks, no extra cost)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backend.model.config import ModelConfig
from backend.model.layers import vocab_logits



@dataclass
class PreparedLatents:
    """Latent keys/values of every cross-attention head, [B, D*H, L, Dh] each."""
    k: Tensor
    v: Tensor


def _stacked(d: int, n_in: int, n_out: int, std: float) -> nn.Parameter:
    return nn.Parameter(torch.randn(d, n_in, n_out) * std if std else torch.zeros(d, n_in, n_out))


def _linear(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """Per-head linear: x [..., n, i], w [n, i, o], b [n, o] -> [..., n, o]. One batched matmul
    over the heads (1.3-1.9x faster than the equivalent einsum for a batch-1 draft on a CPU)."""
    *lead, n, i = x.shape
    rows = x.reshape(-1, n, i).transpose(0, 1)                      # [n, R, i]
    out = torch.baddbmm(b[:, None, :], rows, w)                      # [n, R, o]
    return out.transpose(0, 1).reshape(*lead, n, w.shape[-1])


def _norm(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """Per-head LayerNorm: x [..., n, d], affine w, b [n, d]."""
    return F.layer_norm(x, x.shape[-1:]) * w + b


class DraftHeads(nn.Module):
    """Common part of both head types: the vocabulary projections W^(d).

    By default every head owns its W^(d) [V, d], initialised from the backbone's LM head (which
    makes distillation converge faster). With `config.head_shared_out` all heads reuse the
    backbone's LM head instead: a batch-1 draft then reads the vocabulary matrix once for all D
    heads rather than D times, which on a small CPU model is most of a draft's cost."""

    def __init__(self, cfg: ModelConfig, lm_head: nn.Linear | None = None) -> None:
        super().__init__()
        self.num_heads = cfg.spec_heads
        d, v = cfg.d_model, cfg.vocab_size
        if lm_head is not None and lm_head.weight.shape != (v, d):
            raise ValueError(f"lm_head weight must be [{v}, {d}], got {tuple(lm_head.weight.shape)}")
        self.out: nn.Parameter | None = None
        if cfg.head_shared_out:
            if lm_head is None:
                raise ValueError("config.head_shared_out needs the backbone's lm_head "
                                 "(build_heads(config, lm_head=model.lm_head))")
            # Held outside the module tree: saved, loaded and trained with the backbone only.
            self.__dict__["shared_lm_head"] = lm_head
        elif lm_head is not None:
            self.out = nn.Parameter(
                lm_head.weight.detach().to(torch.float32).expand(self.num_heads, v, d).clone())
        else:
            self.out = nn.Parameter(torch.randn(self.num_heads, v, d) * 0.02)  # [D, V, d]
        self.token_input = cfg.head_token_input
        if self.token_input:
            self.tok_w, self.tok_b = _stacked(self.num_heads, d, d, 0.0), nn.Parameter(torch.zeros(self.num_heads, d))

    def _count(self, num_heads: int | None) -> int:
        n = self.num_heads if num_heads is None else num_heads
        if not 1 <= n <= self.num_heads:
            raise ValueError(f"num_heads must be in 1..{self.num_heads}, got {n}")
        return n

    def _logits(self, feats: Tensor) -> Tensor:
        """Per-head features [..., n, d] -> logits [..., n, V]"""
        if self.out is None:
            return vocab_logits(self.__dict__["shared_lm_head"].weight, feats)  # W is [V, d]
        return torch.einsum("...nc,nvc->...nv", feats, self.out[:feats.shape[-2]])

    def prepare(self, latents: Tensor | None) -> PreparedLatents | None:
        """Per-generation work on the point latents [B, L, d] (nothing for MLP heads)."""
        return None

    def head_inputs(self, hidden: Tensor, token_embedding: Tensor | None, n: int) -> Tensor:
        """Each head's input [B, T, n, d]: h_s, plus its projection of x_n's embedding [B, T, d]
        when the heads read it."""
        b, t, d = hidden.shape
        x = hidden[:, :, None, :].expand(b, t, n, d)
        if not self.token_input:
            return x
        if token_embedding is None or token_embedding.shape != hidden.shape:
            raise ValueError(f"these heads read the sampled token: token_embedding must be {tuple(hidden.shape)}")
        return x + _linear(token_embedding[:, :, None, :].expand(b, t, n, d), self.tok_w[:n], self.tok_b[:n])

    def features(self, x: Tensor, prepared: PreparedLatents | None) -> Tensor:
        """Head inputs [B, T, n, d] -> per-head features [B, T, n, d] (before W^(d))."""
        raise NotImplementedError

    def forward(self, hidden: Tensor, latents: Tensor | None, num_heads: int | None = None,
                token_embedding: Tensor | None = None) -> Tensor:
        """hidden [B, T, d], latents [B, L, d] (and the embeddings [B, T, d] of the tokens each
        hidden state predicted, for heads that read them) -> logits [B, T, n, V]"""
        n = self._count(num_heads)
        return self._logits(self.features(self.head_inputs(hidden, token_embedding, n), self.prepare(latents)))

    def draft(self, hidden_last: Tensor, prepared: PreparedLatents | None, num_heads: int | None = None,
              token_embedding: Tensor | None = None) -> Tensor:
        """Hidden at one position [B, d] (and x_n's embedding [B, d]) -> logits [B, n, V]."""
        return self._logits(self.draft_features(hidden_last, prepared, num_heads, token_embedding))

    def draft_features(self, hidden_last: Tensor, prepared: PreparedLatents | None, num_heads: int | None = None,
                       token_embedding: Tensor | None = None) -> Tensor:
        """Decoding's path: `draft` before the output matrices, [B, n, d]; decoding scores only
        the tokens its masks allow (`out_weight`)."""
        n = self._count(num_heads)
        embedding = None if token_embedding is None else token_embedding[:, None]
        return self.features(self.head_inputs(hidden_last[:, None], embedding, n), prepared)[:, 0]

    def out_weight(self, head: int) -> Tensor:
        """Head `head`'s output matrix W^(d) [V, d] (the backbone's LM head when shared)."""
        return self.__dict__["shared_lm_head"].weight if self.out is None else self.out[head]


class CrossAttentionHeads(DraftHeads):
    """XSpecMesh heads: per head, a pre-norm cross-attention block from h_s to the point
    latents and a small FFN, both residual, then a LayerNorm and W^(d)."""

    def __init__(self, cfg: ModelConfig, lm_head: nn.Linear | None = None) -> None:
        super().__init__(cfg, lm_head)
        n, d, f = cfg.spec_heads, cfg.d_model, cfg.head_d_ff
        self.n_attn_heads = cfg.n_heads
        ones, zeros = torch.ones(n, d), torch.zeros(n, d)
        self.ln1_w, self.ln1_b = nn.Parameter(ones.clone()), nn.Parameter(zeros.clone())
        self.wq, self.bq = _stacked(n, d, d, 0.02), nn.Parameter(zeros.clone())
        self.wkv, self.bkv = _stacked(n, d, 2 * d, 0.02), nn.Parameter(torch.zeros(n, 2 * d))
        # Residual outputs start at zero, so an untrained head reads h_s itself through W^(d).
        self.wo, self.bo = _stacked(n, d, d, 0.0), nn.Parameter(zeros.clone())
        self.ln2_w, self.ln2_b = nn.Parameter(ones.clone()), nn.Parameter(zeros.clone())
        self.w1, self.b1 = _stacked(n, d, f, 0.02), nn.Parameter(torch.zeros(n, f))
        self.w2, self.b2 = _stacked(n, f, d, 0.0), nn.Parameter(zeros.clone())
        self.ln3_w, self.ln3_b = nn.Parameter(ones.clone()), nn.Parameter(zeros.clone())

    def prepare(self, latents: Tensor | None) -> PreparedLatents:
        if latents is None or latents.ndim != 3:
            raise ValueError("cross-attention heads need latents [B, L, d]")
        b, l, d = latents.shape
        n, h = self.num_heads, self.n_attn_heads
        kv = torch.einsum("blc,nce->blne", latents, self.wkv) + self.bkv  # [B, L, D, 2d]
        kv = kv.view(b, l, n, 2, h, d // h).permute(3, 0, 2, 4, 1, 5)     # [2, B, D, H, L, Dh]
        kv = kv.reshape(2, b, n * h, l, d // h)
        return PreparedLatents(k=kv[0], v=kv[1])

    def features(self, x: Tensor, prepared: PreparedLatents | None) -> Tensor:
        if prepared is None:
            raise ValueError("cross-attention heads need prepared latents (heads.prepare)")
        b, t, n, d = x.shape
        h = self.n_attn_heads
        q = _linear(_norm(x, self.ln1_w[:n], self.ln1_b[:n]), self.wq[:n], self.bq[:n])
        q = q.reshape(b, t, n * h, d // h).transpose(1, 2)               # [B, n*H, T, Dh]
        att = F.scaled_dot_product_attention(q, prepared.k[:, :n * h], prepared.v[:, :n * h])
        att = att.transpose(1, 2).reshape(b, t, n, d)
        x = x + _linear(att, self.wo[:n], self.bo[:n])
        ff = F.gelu(_linear(_norm(x, self.ln2_w[:n], self.ln2_b[:n]), self.w1[:n], self.b1[:n]),
                    approximate="tanh")
        x = x + _linear(ff, self.w2[:n], self.b2[:n])
        return _norm(x, self.ln3_w[:n], self.ln3_b[:n])


class MLPHeads(DraftHeads):
    """Medusa-style ablation baseline: h + SiLU(W1^(d) h + b), then W^(d). Ignores the latents."""

    def __init__(self, cfg: ModelConfig, lm_head: nn.Linear | None = None) -> None:
        super().__init__(cfg, lm_head)
        n, d = cfg.spec_heads, cfg.d_model
        self.w1, self.b1 = _stacked(n, d, d, 0.0), nn.Parameter(torch.zeros(n, d))

    def features(self, x: Tensor, prepared: PreparedLatents | None) -> Tensor:
        n = x.shape[2]
        return x + F.silu(_linear(x, self.w1[:n], self.b1[:n]))


HEAD_CLASSES: dict[str, type[DraftHeads]] = {"ca": CrossAttentionHeads, "mlp": MLPHeads}


def build_heads(cfg: ModelConfig, lm_head: nn.Linear | None = None) -> DraftHeads:
    """Heads of `cfg.head_type` with `cfg.spec_heads` heads, each W^(d) copied from the
    backbone's `lm_head` when given."""
    return HEAD_CLASSES[cfg.head_type](cfg, lm_head)
