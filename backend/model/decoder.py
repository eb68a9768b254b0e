"""The backbone: point encoder + pre-norm decoder transformer with a static KV cache.

Decoding never copies the cache: a forward writes its T tokens at [pos, pos+T) and advances
`pos`; rolling back rejected speculative tokens is `cache.pos = n`. The cross-attention keys and
values of the point latents are computed once, when the cache is created."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from backend.mesh.candidates import PAD
from backend.model.config import ModelConfig
from backend.model.encoder import PointEncoder
from backend.model.layers import MLP, CrossAttention, SelfAttention, cache_layout, init_weights, vocab_logits
from backend.model.vocab_embedding import FactorizedVocab

STATIC_MARGIN = 72  # spare static cache rows: a padded verify pass (<= 65 rows) writes past the end


@dataclass
class KVCache:
    k: Tensor        # [n_layers, B, H, T_max, Dh] self-attention keys
    v: Tensor        # [n_layers, B, H, T_max, Dh] self-attention values
    cross_k: Tensor  # [n_layers, B, H, L, Dh] latent keys (fixed for a generation)
    cross_v: Tensor  # [n_layers, B, H, L, Dh]
    pos: int = 0     # tokens written; set it lower to roll back
    static: bool = False  # full-length attention every pass (fixed shapes for a compiled step)

    @property
    def batch(self) -> int:
        return self.k.shape[1]

    @property
    def max_len(self) -> int:
        return self.k.shape[3]


class DecoderBlock(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = SelfAttention(cfg.d_model, cfg.n_heads, cfg.dropout)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.cross = CrossAttention(cfg.d_model, cfg.n_heads, cfg.dropout)
        self.ln3 = nn.LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg.d_model, cfg.d_ff, cfg.dropout)

    def forward(self, x: Tensor, cross_k: Tensor, cross_v: Tensor, *, cache_k: Tensor | None = None,
                cache_v: Tensor | None = None, slots: Tensor | None = None, keys: int = 0,
                mask: Tensor | None = None) -> Tensor:
        x = x + self.attn(self.ln1(x), causal=True, cache_k=cache_k, cache_v=cache_v,
                          slots=slots, keys=keys, mask=mask)
        x = x + self.cross(self.ln2(x), cross_k, cross_v)
        return x + self.mlp(self.ln3(x))


class MeshTransformer(nn.Module):
    compiled_step = None  # a torch.compile'd `step` (backend.decoding.compiled); caches are then static
    _static_buffers = None
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = PointEncoder(config)
        self.pos_emb = nn.Embedding(config.max_seq_len, config.d_model)
        self.emb_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(DecoderBlock(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        if config.factorized_vocab:  # one module is both the embedding and the tied LM head
            self.tok_emb: nn.Module = FactorizedVocab(config.d_model)
            self.lm_head: nn.Module = self.tok_emb
        else:
            self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
            self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        init_weights(self, config.n_layers)
        if config.factorized_vocab:
            self.tok_emb.reset_parameters()
        elif config.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight

    def encode_points(self, points: Tensor, normals: Tensor, candidates: Tensor | None = None) -> Tensor:
        """[B, N, 3], [B, N, 3] (+ candidate cells [B, K, 3], None for none) -> context [B, L, d]"""
        if self.config.n_candidates and candidates is None:
            candidates = empty_candidates(points.shape[0], self.config.n_candidates, points.device)
        return self.encoder(points, normals, candidates, self.tok_emb)

    def cross_kv(self, latents: Tensor) -> tuple[Tensor, Tensor]:
        """Latent keys/values of every block, each [n_layers, B, H, L, Dh]."""
        kvs = [block.cross.context_kv(latents) for block in self.blocks]
        return torch.stack([k for k, _ in kvs]), torch.stack([v for _, v in kvs])

    def new_cache(self, batch: int, max_len: int, latents: Tensor) -> KVCache:
        """Preallocate self-attention buffers for `max_len` tokens and compute the latent K/V.
        `latents` is [batch, L, d] or [1, L, d] (shared by the whole batch)."""
        cfg = self.config
        if not 1 <= max_len <= cfg.max_seq_len:
            raise ValueError(f"cache length must be in 1..{cfg.max_seq_len}, got {max_len}")
        if latents.ndim != 3 or latents.shape[0] not in (1, batch):
            raise ValueError(f"latents must be [{batch} or 1, L, d], got {tuple(latents.shape)}")
        latents = latents.expand(batch, -1, -1)
        cross_k, cross_v = self.cross_kv(latents)
        shape = (cfg.n_layers, batch, cfg.n_heads, max_len, cfg.head_dim)
        if self.compiled_step is not None:  # one set of static buffers, reused by every generation
            return self._static_cache(batch, cross_k, cross_v)
        k = torch.zeros(shape, dtype=cross_k.dtype, device=cross_k.device)
        return KVCache(k=k, v=torch.zeros_like(k), cross_k=cross_k, cross_v=cross_v)

    def _static_cache(self, batch: int, cross_k: Tensor, cross_v: Tensor) -> KVCache:
        """A cache at fixed addresses and the longest length (max_seq_len + STATIC_MARGIN rows, so
        that a padded verify pass never runs off the end): a compiled step (CUDA graphs) then sees
        the same buffers in every generation. One generation at a time per model."""
        cfg = self.config
        shape = (cfg.n_layers, batch, cfg.n_heads, cfg.max_seq_len + STATIC_MARGIN, cfg.head_dim)
        key = (shape, cross_k.shape, cross_k.dtype, cross_k.device)
        if self._static_buffers is None or self._static_buffers[0] != key:
            k = torch.zeros(shape, dtype=cross_k.dtype, device=cross_k.device)
            buffers = (k, torch.zeros_like(k), torch.zeros_like(cross_k), torch.zeros_like(cross_v))
            for buffer in buffers:
                torch._dynamo.mark_static_address(buffer)
            self._static_buffers = (key, buffers)
        k, v, ck, cv = self._static_buffers[1]
        ck.copy_(cross_k)
        cv.copy_(cross_v)
        return KVCache(k=k, v=v, cross_k=ck, cross_v=cv, static=True)

    def forward(self, tokens: Tensor, latents: Tensor | None = None, cache: KVCache | None = None,
                start_pos: int = 0, tree: Tensor | None = None, logits: bool = True) -> tuple[Tensor | None, Tensor]:
        """tokens [B, T] -> (logits [B, T, V], final-normed hidden [B, T, d]); with `logits` False
        the logits are None: decoding scores only the tokens its masks allow
        (`backend.decoding.sampling.allowed_distribution` over `output_weight`).

        Without a cache the T tokens sit at positions [start_pos, start_pos+T) and attend
        causally among themselves (training, scoring). With a cache they sit at
        [cache.pos, cache.pos+T), also see every cached token, and cache.pos advances by T;
        `latents` may then be None (the cache holds their keys/values).

        `tree` ([T, T] bool, row i sees row j; needs a cache) replaces the causal order among the
        new tokens by a token tree (tree verification): a token sees the cache and its tree
        ancestors, and its position is cache.pos + its depth (the rows it sees, minus one). Its
        keys/values are still written at cache.pos + row."""
        if tokens.ndim != 2:
            raise ValueError(f"tokens must be [B, T], got {tuple(tokens.shape)}")
        b, t = tokens.shape
        if cache is not None:
            if start_pos not in (0, cache.pos):
                raise ValueError(f"start_pos {start_pos} disagrees with cache.pos {cache.pos}")
            if b != cache.batch:
                raise ValueError(f"batch {b} does not match the cache's batch {cache.batch}")
            start_pos = cache.pos
            if start_pos + t > cache.max_len:
                raise ValueError(f"cache overflow: {start_pos} + {t} tokens > {cache.max_len}")
            cross_k, cross_v = cache.cross_k, cache.cross_v
        elif latents is None:
            raise ValueError("latents are required when no cache is given")
        else:
            cross_k, cross_v = self.cross_kv(latents.expand(b, -1, -1))
        if start_pos + t > self.config.max_seq_len and not (cache is not None and cache.static):
            raise ValueError(f"positions up to {start_pos + t} exceed max_seq_len "
                             f"{self.config.max_seq_len}")

        if cache is None:
            if tree is not None:
                raise ValueError("a tree needs a cache")
            x = self.emb_dropout(self.tok_emb(tokens) + self.pos_emb.weight[start_pos:start_pos + t])
            for i, block in enumerate(self.blocks):
                x = block(x, cross_k[i], cross_v[i])
            hidden = self.ln_f(x)
            return self.lm_head(hidden), hidden
        if tree is not None and tree.shape != (t, t):
            raise ValueError(f"tree must be [{t}, {t}]")
        positions, slots, mask, keys = cache_layout(t, start_pos, tree, cache.max_len if cache.static else None,
                                                    tokens.device)
        step = self.compiled_step if cache.static and self.compiled_step is not None else self.step
        hidden = step(tokens, positions, slots, mask, cache.k, cache.v, cache.cross_k, cache.cross_v, keys)
        cache.pos = start_pos + t
        return (vocab_logits(self.output_weight, hidden) if logits else None), hidden

    @property
    def output_weight(self) -> Tensor:
        """The LM head's [V, d] matrix (tied with the token embedding, or its own)."""
        return self.lm_head.weight

    def step(self, tokens: Tensor, positions: Tensor, slots: Tensor, mask: Tensor | None, k: Tensor, v: Tensor,
             cross_k: Tensor, cross_v: Tensor, keys: int) -> Tensor:
        """One decoding pass on tensors only (what `torch.compile` captures): tokens [B, T] at
        `positions` [T], their keys/values written into the cache buffers k, v at `slots` [T],
        attending to the first `keys` cached rows under `mask` (see `layers.cache_layout`);
        -> the final-normed hidden states [B, T, d]."""
        x = self.tok_emb(tokens) + self.pos_emb(positions)
        for i, block in enumerate(self.blocks):
            x = block(x, cross_k[i], cross_v[i], cache_k=k[i], cache_v=v[i], slots=slots, keys=keys, mask=mask)
        return self.ln_f(x)


def empty_candidates(batch: int, count: int, device: torch.device | str = "cpu") -> Tensor:
    """[batch, count, 3] candidate cells that are all empty slots (a bare point cloud)."""
    return torch.full((batch, count, 3), PAD, dtype=torch.long, device=device)


def count_parameters(module: nn.Module) -> int:
    """Unique parameters (tied weights counted once)."""
    return sum(p.numel() for p in module.parameters())
