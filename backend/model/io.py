"""Model directories: `config.json` + `model.safetensors` (+ optional `heads.safetensors`).

safetensors refuses tensors that share memory, so the weights go through
`safetensors.torch.save_model` / `load_model`, which drop and restore tied duplicates
(the LM head tied to the token embedding)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import load_model as st_load_model
from safetensors.torch import save_model as st_save_model
from torch import nn

from backend.fileio import atomic_path
from backend.model.config import ModelConfig
from backend.model.decoder import MeshTransformer
from backend.model.heads import HEAD_CLASSES, DraftHeads, build_heads

CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
HEADS_FILE = "heads.safetensors"


def save_model(directory: str | Path, model: MeshTransformer, heads: DraftHeads | None = None) -> None:
    directory = Path(directory)
    config = model.config
    if heads is not None:
        if not isinstance(heads, HEAD_CLASSES[config.head_type]):
            raise ValueError(f"heads are {type(heads).__name__} but config.head_type is "
                             f"{config.head_type!r}")
        if heads.num_heads != config.spec_heads:
            raise ValueError(f"heads have {heads.num_heads} heads but config.spec_heads is "
                             f"{config.spec_heads}")
    directory.mkdir(parents=True, exist_ok=True)
    config.save(directory / CONFIG_FILE)
    with atomic_path(directory / MODEL_FILE) as tmp:
        st_save_model(model, str(tmp))
    heads_path = directory / HEADS_FILE
    if heads is not None:
        with atomic_path(heads_path) as tmp:
            st_save_model(heads, str(tmp))
    elif heads_path.exists():
        heads_path.unlink()  # stale heads from an earlier save would not match this backbone


def _load_weights(module: nn.Module, path: Path, device: str | torch.device) -> None:
    try:
        st_load_model(module, str(path), strict=True, device=str(device))
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"cannot read weights {path}: {exc}") from exc
    except RuntimeError as exc:  # missing / unexpected keys, shape mismatches
        raise ValueError(f"weights {path} do not match {path.parent / CONFIG_FILE}: {exc}") from exc
    for name, tensor in module.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"weights {path} contain NaN or infinite values ({name}): the model would "
                             "produce NaN")


def _check_size(params: int, path: Path, what: str) -> None:
    """Refuse a config whose model could not be in `path` (at least 2 bytes a parameter) before
    allocating it: an absurd config.json must not cost gigabytes of memory."""
    try:
        with safe_open(str(path), framework="pt"):  # the header only
            pass
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"cannot read weights {path}: {exc}") from exc
    need, have = 2 * params, path.stat().st_size
    if need > have + (1 << 20):
        raise ValueError(f"{path.parent / CONFIG_FILE} describes a {what} of {params / 1e6:.1f}M parameters "
                         f"(at least {need / 2**20:.0f} MiB) but {path.name} holds {have / 2**20:.1f} MiB: "
                         "the config does not match the weights")


def _least_parameters(config: ModelConfig) -> tuple[int, int]:
    """Lower bounds on the parameters of the backbone and of the heads' own (not shared) weights,
    from their largest matrices alone: the decoder blocks' feed-forward layers and the vocabulary;
    a d x d matrix per head and, unless shared, its output matrix. Enough to refuse a config that
    could not be in the file before allocating it (building the model on the meta device took
    seconds of start-up); the strict load names any other mismatch."""
    d = config.d_model
    backbone = config.n_layers * 2 * d * config.d_ff + config.vocab_size * d
    heads = config.spec_heads * d * (d + (0 if config.head_shared_out else config.vocab_size))
    return backbone, heads


def init_from(model: MeshTransformer, directory: str | Path) -> list[str]:
    """Warm start: copy every weight of the model in `directory` whose name and shape match
    `model` (a design change keeps what it can reuse). Returns the names that stayed new."""
    path = Path(directory) / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"model weights not found: {path}")
    source = load_file(str(path))
    own = model.state_dict()
    # A tied tensor is stored under one of its names only (see the module docstring).
    aliases: dict[int, list[str]] = {}
    for name, tensor in own.items():
        aliases.setdefault(tensor.data_ptr(), []).append(name)
    matching = {}
    for names in aliases.values():
        stored = next((source[n] for n in names if n in source), None)
        if stored is not None and stored.shape == own[names[0]].shape:
            matching.update({n: stored for n in names})
    model.load_state_dict(matching, strict=False)
    return sorted(k for k in own if k not in matching)


def load_model(directory: str | Path, device: str | torch.device = "cpu"
               ) -> tuple[MeshTransformer, DraftHeads | None, ModelConfig]:
    """Load a model directory in eval mode. Raises FileNotFoundError for a missing directory or
    file and ValueError for a corrupt file or weights that do not match the config."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"model directory not found: {directory}")
    config = ModelConfig.load(directory / CONFIG_FILE)
    model_path = directory / MODEL_FILE
    if not model_path.is_file():
        raise FileNotFoundError(f"model weights not found: {model_path}")
    heads_path = directory / HEADS_FILE
    backbone_params, heads_params = _least_parameters(config)
    _check_size(backbone_params, model_path, "backbone")
    if heads_path.is_file():
        _check_size(heads_params, heads_path, "set of drafting heads")
    model = MeshTransformer(config).to(device)
    _load_weights(model, model_path, device)
    heads = None
    if heads_path.is_file():
        heads = build_heads(config, model.lm_head).to(device)
        _load_weights(heads, heads_path, device)
        heads.eval()
    return model.eval(), heads, config
