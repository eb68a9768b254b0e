"""Model hyper-parameters, stored as `config.json` beside the weights.

Presets live in `backend/model/presets/<name>.json`: `tiny` (tests), `default` (ships, trained
on CPU) and `large` (BPT-sized, for GPU users)."""

from __future__ import annotations

import dataclasses
import json
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PRESET_DIR = Path(__file__).parent / "presets"
HEAD_TYPES = ("ca", "mlp")
CONDITIONS = ("latents", "points")
MAX_SPEC_HEADS = 8
# Upper bounds far above any real preset (large.json is BPT-sized): a config beyond them is a
# mistake or an attack, and is refused before anything is allocated.
MAX_FIELD = {"d_model": 16384, "n_layers": 512, "n_heads": 512, "d_ff": 131072, "n_latents": 65536,
             "enc_layers": 512, "n_fourier": 64, "n_points": 1 << 20, "max_seq_len": 1 << 18,
             "vocab_size": 1 << 20, "head_d_ff": 131072}


@dataclass
class ModelConfig:
    d_model: int
    n_layers: int          # decoder blocks
    n_heads: int           # attention heads everywhere (encoder, decoder, drafting heads)
    d_ff: int              # MLP width of encoder and decoder blocks
    n_latents: int         # Perceiver latents the decoder cross-attends to
    enc_layers: int        # self-attention blocks over the latents
    n_fourier: int         # Fourier frequencies per axis: sin/cos(2^i * pi * x), i < n_fourier
    n_points: int          # surface points the encoder is trained with (it accepts any count)
    max_seq_len: int       # learned positions, so also the longest sequence the model can decode
    vocab_size: int = 5122  # backend.tokenizer.vocab.VOCAB_SIZE
    dropout: float = 0.0
    tie_embeddings: bool = False  # share the token embedding with the LM head
    factorized_vocab: bool = False  # tied embedding built from class + coordinate-digit parts
    spec_heads: int = 4    # D drafting heads
    head_type: str = "ca"  # "ca" (XSpecMesh cross-attention) | "mlp" (Medusa-style ablation)
    head_d_ff: int = 512   # FFN width inside each cross-attention drafting head
    head_shared_out: bool = False  # heads reuse the backbone LM head as W^(d) (cheap CPU drafts)
    head_token_input: bool = False  # heads also read the embedding of the token x_n just sampled
    # What the decoder cross-attends to: "latents" (a Perceiver bottleneck of n_latents) or
    # "points" (n_context_points surface points directly, plus n_candidates vertex candidates).
    condition: str = "latents"
    n_context_points: int = 512
    n_candidates: int = 0  # candidate slots (backend.mesh.candidates); 0: no candidates

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layers", "n_heads", "d_ff", "n_latents", "n_fourier",
                     "n_points", "max_seq_len", "vocab_size", "head_d_ff"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                raise ValueError(f"ModelConfig.{name} must be an integer, got {value!r}")
            if not 0 < value <= MAX_FIELD[name]:
                raise ValueError(f"ModelConfig.{name} must be in 1..{MAX_FIELD[name]}, got {value}")
        if self.condition not in CONDITIONS:
            raise ValueError(f"condition must be one of {CONDITIONS}, got {self.condition!r}")
        if not 0 <= self.n_candidates <= 1 << 16 or not 0 < self.n_context_points <= 1 << 20:
            raise ValueError("n_candidates must be in 0..65536 and n_context_points in 1..1048576")
        if self.n_candidates and self.condition != "points":
            raise ValueError("vertex candidates need condition 'points'")
        if not isinstance(self.enc_layers, numbers.Integral) or not 0 <= self.enc_layers <= MAX_FIELD["enc_layers"]:
            raise ValueError(f"ModelConfig.enc_layers must be in 0..{MAX_FIELD['enc_layers']}, got {self.enc_layers}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if not 1 <= self.spec_heads <= MAX_SPEC_HEADS:
            raise ValueError(f"spec_heads must be in 1..{MAX_SPEC_HEADS}, got {self.spec_heads}")
        if self.head_type not in HEAD_TYPES:
            raise ValueError(f"head_type must be one of {HEAD_TYPES}, got {self.head_type!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig field(s): {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:  # missing required fields
            raise ValueError(f"incomplete ModelConfig: {exc}") from exc

    def save(self, path: str | Path) -> None:
        from backend.fileio import atomic_write

        atomic_write(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "ModelConfig":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"model config not found: {path}")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a JSON object")
        try:
            return cls.from_dict(data)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def load_preset(name: str) -> ModelConfig:
    path = PRESET_DIR / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"unknown model preset {name!r}; choose one of {preset_names()}")
    return ModelConfig.load(path)
