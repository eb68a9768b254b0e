"""Shared fixtures. Tests run on the CPU with small thread counts so they behave the same on a
2-core CI machine; the real shipped model is used only by tests that are about it."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _limit_threads() -> None:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def untrained():
    """A `backend.decoding.pipeline.Generator` over a random-weight tiny model with 2 heads: what
    decoding does when the model knows nothing (the rules alone)."""
    import torch

    from backend.decoding.pipeline import Generator
    from backend.model.config import ModelConfig, load_preset
    from backend.model.decoder import MeshTransformer
    from backend.model.heads import build_heads

    torch.manual_seed(0)
    cfg = ModelConfig.from_dict({**load_preset("tiny").to_dict(), "spec_heads": 2})
    model = MeshTransformer(cfg).eval()
    return Generator(model, build_heads(cfg, model.lm_head).eval(), cfg)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight `tiny` model (backbone + cross-attention heads) saved like a real one."""
    import torch

    from backend.model.config import load_preset
    from backend.model.decoder import MeshTransformer
    from backend.model.heads import build_heads
    from backend.model.io import save_model

    torch.manual_seed(0)
    config = load_preset("tiny")
    model = MeshTransformer(config)
    heads = build_heads(config, lm_head=model.lm_head)
    out = tmp_path_factory.mktemp("tiny_model")
    save_model(out, model, heads)
    return out


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16-mesh procedural training set in the real shard format."""
    from backend.data.dataset import build

    out = tmp_path_factory.mktemp("data")
    build(16, 0, out, workers=1, progress=False)
    return out
