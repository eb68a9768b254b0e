"""Perceiver point encoder: a surface point cloud (xyz + normals) -> L latent vectors.

Fourier features of xyz (plus raw xyz) concatenated with the normals are projected to d_model;
L learned latents cross-attend to all points once, then `enc_layers` self-attention blocks mix
the latents (Michelangelo / BPT style conditioning)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from backend.model.config import ModelConfig
from backend.model.layers import MLP, CrossAttention, SelfAttention


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


class PointEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.fourier = FourierFeatures(cfg.n_fourier)
        self.input_proj = nn.Linear(self.fourier.out_dim + 3, cfg.d_model)
        self.latents = nn.Parameter(torch.randn(cfg.n_latents, cfg.d_model) * 0.02)
        self.ln_latents = nn.LayerNorm(cfg.d_model)
        self.ln_points = nn.LayerNorm(cfg.d_model)
        self.cross = CrossAttention(cfg.d_model, cfg.n_heads, cfg.dropout)
        self.ln_cross_mlp = nn.LayerNorm(cfg.d_model)
        self.cross_mlp = MLP(cfg.d_model, cfg.d_ff, cfg.dropout)
        self.blocks = nn.ModuleList(LatentSelfBlock(cfg) for _ in range(cfg.enc_layers))
        self.ln_out = nn.LayerNorm(cfg.d_model)

    def forward(self, points: Tensor, normals: Tensor) -> Tensor:
        """points, normals [B, N, 3] -> latents [B, L, d]"""
        if points.ndim != 3 or points.shape[-1] != 3 or normals.shape != points.shape:
            raise ValueError(f"points and normals must both be [B, N, 3], got "
                             f"{tuple(points.shape)} and {tuple(normals.shape)}")
        dtype = self.input_proj.weight.dtype
        feats = torch.cat([self.fourier(points), normals.float()], dim=-1).to(dtype)
        tokens = self.ln_points(self.input_proj(feats))
        x = self.latents.expand(points.shape[0], -1, -1)
        k, v = self.cross.context_kv(tokens)
        x = x + self.cross(self.ln_latents(x), k, v)
        x = x + self.cross_mlp(self.ln_cross_mlp(x))
        for block in self.blocks:
            x = block(x)
        return self.ln_out(x)
