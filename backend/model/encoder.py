"""Point encoder: a surface point cloud (xyz + normals) -> the context tokens [B, L, d] that the
decoder and the drafting heads cross-attend to.

Fourier features of xyz (plus raw xyz) concatenated with the normals are projected to d_model.
Two conditions (ModelConfig.condition):
- "latents": L learned latents cross-attend to all points once (Michelangelo / BPT style
  Perceiver); a 64-vector bottleneck that let the decoder read the shape only coarsely.
- "points": the first n_context_points projected points are the context themselves, so fine
  positions stay addressable, plus n_candidates vertex candidates (a decimated copy of the input,
  backend.mesh.candidates) embedded with the model's own token embedding of their block and
  offset tokens: attending to a candidate hands the tied LM head the very vector of the token
  that would place a vertex there, which makes copying a coordinate easy.
`enc_layers` self-attention blocks then mix the context."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from backend.mesh.candidates import PAD
from backend.mesh.quantize import LEVELS
from backend.model.config import ModelConfig
from backend.model.layers import MLP, CrossAttention, SelfAttention
from backend.tokenizer.vocab import BLOCK_SIZE, BLOCKS_PER_AXIS, OFFSET_START


class FourierFeatures(nn.Module):
    """xyz -> [xyz, sin(2^i pi xyz), cos(2^i pi xyz)], always computed in float32: high
    frequencies lose their phase in bf16. No buffer, so `model.to(bf16)` cannot round them."""

    def __init__(self, n_fourier: int) -> None:
        super().__init__()
        self.n_fourier = n_fourier

    @property
    def out_dim(self) -> int:
        return 3 * (2 * self.n_fourier + 1)

    def forward(self, xyz: Tensor) -> Tensor:
        xyz = xyz.float()
        freqs = (2.0 ** torch.arange(self.n_fourier, device=xyz.device)) * math.pi
        angles = (xyz[..., None] * freqs).flatten(-2)  # [B, N, 3F]
        return torch.cat([xyz, angles.sin(), angles.cos()], dim=-1)


class LatentSelfBlock(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = SelfAttention(cfg.d_model, cfg.n_heads, cfg.dropout)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg.d_model, cfg.d_ff, cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x), causal=False)
        return x + self.mlp(self.ln2(x))


class CandidateEmbedding(nn.Module):
    """Grid cells [B, K, 3] (xyz, 0..127; PAD rows are empty slots) -> [B, K, d]: the token
    embedding of the cell's block and offset tokens plus Fourier features of its centre; empty
    slots all get one learned vector, so a bare point cloud (every slot empty) is a valid input."""

    def __init__(self, cfg: ModelConfig, fourier: FourierFeatures) -> None:
        super().__init__()
        self.fourier = fourier
        self.proj = nn.Linear(fourier.out_dim, cfg.d_model)
        self.empty = nn.Parameter(torch.zeros(cfg.d_model))

    def forward(self, cells: Tensor, token_embedding: nn.Module) -> Tensor:
        filled = cells[..., 0] != PAD
        cells = cells.clamp(0, LEVELS - 1)
        abc = cells[..., [2, 0, 1]]  # the tokenizer's axis order (z, x, y)
        hi, lo = abc // BLOCK_SIZE, abc % BLOCK_SIZE
        block = (hi[..., 0] * BLOCKS_PER_AXIS + hi[..., 1]) * BLOCKS_PER_AXIS + hi[..., 2]
        offset = OFFSET_START + (lo[..., 0] * BLOCK_SIZE + lo[..., 1]) * BLOCK_SIZE + lo[..., 2]
        centres = (cells.float() + 0.5) / LEVELS * 2.0 - 1.0
        dtype = self.proj.weight.dtype
        x = token_embedding(block) + token_embedding(offset) + self.proj(self.fourier(centres).to(dtype))
        return torch.where(filled[..., None], x, self.empty.to(x.dtype))


class PointEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.condition = cfg.condition
        self.n_context_points = cfg.n_context_points
        self.fourier = FourierFeatures(cfg.n_fourier)
        self.input_proj = nn.Linear(self.fourier.out_dim + 3, cfg.d_model)
        self.ln_points = nn.LayerNorm(cfg.d_model)
        if cfg.condition == "latents":
            self.latents = nn.Parameter(torch.randn(cfg.n_latents, cfg.d_model) * 0.02)
            self.ln_latents = nn.LayerNorm(cfg.d_model)
            self.cross = CrossAttention(cfg.d_model, cfg.n_heads, cfg.dropout)
            self.ln_cross_mlp = nn.LayerNorm(cfg.d_model)
            self.cross_mlp = MLP(cfg.d_model, cfg.d_ff, cfg.dropout)
        self.candidates = CandidateEmbedding(cfg, self.fourier) if cfg.n_candidates else None
        self.blocks = nn.ModuleList(LatentSelfBlock(cfg) for _ in range(cfg.enc_layers))
        self.ln_out = nn.LayerNorm(cfg.d_model)

    def forward(self, points: Tensor, normals: Tensor, candidates: Tensor | None = None,
                token_embedding: nn.Module | None = None) -> Tensor:
        """points, normals [B, N, 3] (+ candidate cells [B, K, 3] read through the decoder's
        `token_embedding`) -> context [B, L, d]"""
        if points.ndim != 3 or points.shape[-1] != 3 or normals.shape != points.shape:
            raise ValueError(f"points and normals must both be [B, N, 3], got "
                             f"{tuple(points.shape)} and {tuple(normals.shape)}")
        if self.condition == "points":
            points, normals = points[:, :self.n_context_points], normals[:, :self.n_context_points]
        dtype = self.input_proj.weight.dtype
        feats = torch.cat([self.fourier(points), normals.float()], dim=-1).to(dtype)
        x = self.ln_points(self.input_proj(feats))
        if self.condition == "latents":
            k, v = self.cross.context_kv(x)
            x = self.latents.expand(points.shape[0], -1, -1)
            x = x + self.cross(self.ln_latents(x), k, v)
            x = x + self.cross_mlp(self.ln_cross_mlp(x))
        elif self.candidates is not None:
            if candidates is None or token_embedding is None:
                raise ValueError("this model reads vertex candidates: pass candidate cells [B, K, 3] "
                                 "(all PAD for none) and the token embedding")
            x = torch.cat([x, self.candidates(candidates, token_embedding)], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.ln_out(x)
