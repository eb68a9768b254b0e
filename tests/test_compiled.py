"""The compiled decoding path (`--compile`) gives the very tokens of eager decoding for a seed, and
falls back to eager with a one-line notice where it cannot compile. Compiling takes tens of
seconds on a CPU, so the token comparison runs only with SPECMESH_TEST_COMPILE=1 (and on the GPU
machine)."""

import os

import numpy as np
import pytest
import torch

from backend.decoding import compiled
from backend.decoding.pipeline import Generator
from backend.model.io import load_model
from backend.options import GenerateOptions


def sphere(n=256, seed=0):
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(n, 3))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points, points.copy()


def tokens(generator, options):
    *_, done = generator.stream(*sphere(), options)
    return done.tokens.tolist(), done.stats["forward_passes"]


def test_static_cache_decodes_like_the_eager_cache(tiny_model_dir):
    """The static layout (full-length attention, padded verify passes) without compiling: a
    compiled step is this very function, so equal tokens here leave only the compiler to trust."""
    eager = Generator(*load_model(tiny_model_dir))
    static = Generator(*load_model(tiny_model_dir))
    static.model.compiled_step = static.model.step  # static caches, the eager function
    for options in (GenerateOptions(mode="ar", max_faces=12), GenerateOptions(max_faces=12, seed=3),
                    GenerateOptions(draft="is", verify="exact", max_faces=12)):
        assert tokens(static, options) == tokens(eager, options)


def test_without_a_compiler_decoding_stays_eager(tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setattr(compiled.shutil, "which", lambda name: None)
    monkeypatch.delenv("CXX", raising=False)
    model, heads, _ = load_model(tiny_model_dir)
    assert compiled.compile_decoding(model, heads) is False
    assert model.compiled_step is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "decoding eagerly" in err


def test_a_failing_compile_falls_back_once(capsys):
    def broken(*args):
        raise RuntimeError("inductor exploded\nlong trace")

    guarded = compiled._Guarded(broken, lambda x: x + 1, "backbone step")
    assert guarded(1) == 2 and guarded(2) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "inductor exploded" in err and "long trace" not in err


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("SPECMESH_TEST_COMPILE") != "1" and not torch.cuda.is_available(),
                    reason="compiling takes tens of seconds on a CPU: set SPECMESH_TEST_COMPILE=1")
def test_compiled_decoding_gives_the_eager_tokens(tiny_model_dir):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    eager = Generator.load(tiny_model_dir, device=device)
    fast = Generator.load(tiny_model_dir, device=device, compile=True)
    assert fast.info["compiled"]
    for options in (GenerateOptions(mode="ar", max_faces=12), GenerateOptions(max_faces=12, seed=3)):
        assert tokens(fast, options) == tokens(eager, options)
