import numpy as np
import pytest
import torch

from backend.decoding.autoregressive import generate_ar_batch, stream_ar, token_limit
from backend.decoding.sampling import SamplingConfig, make_generator
from backend.model.io import load_model
from backend.tokenizer.bpt import decode
from backend.tokenizer.grammar import GrammarState
from backend.tokenizer.vocab import EOS


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    # float64 so that batched and single-sequence logits agree far beyond any argmax tie
    return load_model(tiny_model_dir)[0].double()


def cloud(seed: int, batch: int = 1, n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    points = torch.rand(batch, n, 3, generator=g, dtype=torch.float64) * 1.9 - 0.95
    normals = torch.nn.functional.normalize(torch.randn(batch, n, 3, generator=g, dtype=torch.float64), dim=-1)
    return points, normals


def latents(model, seed: int) -> torch.Tensor:
    with torch.inference_mode():
        return model.encode_points(*cloud(seed))


def run_ar(model, lat, sampling, max_tokens, seed) -> list[list[int]]:
    return list(stream_ar(model, lat, sampling, max_tokens, make_generator(seed)))


@pytest.mark.parametrize("greedy", [True, False])
def test_ar_stream_is_one_token_per_pass_and_always_decodes(model, greedy):
    for seed in range(2):
        passes = run_ar(model, latents(model, seed), SamplingConfig(greedy=greedy), 60, seed)
        assert all(len(p) == 1 for p in passes)
        tokens = [t for p in passes for t in p]
        assert len(tokens) <= 60 and (tokens[-1] == EOS or len(tokens) == 60)
        state = GrammarState()
        for token in tokens:
            state.advance(token)  # raises if the grammar was violated
        decode(tokens)


def test_ar_is_reproducible_per_seed(model):
    lat = latents(model, 0)
    cfg = SamplingConfig(temperature=1.0)
    assert run_ar(model, lat, cfg, 60, 5) == run_ar(model, lat, cfg, 60, 5)
    assert run_ar(model, lat, cfg, 60, 5) != run_ar(model, lat, cfg, 60, 6)


def test_token_limit_is_capped_by_max_seq_len(model):
    assert token_limit(model, 10**6) == model.config.max_seq_len
    assert token_limit(model, 7) == 7
    with pytest.raises(ValueError):
        token_limit(model, 0)


def test_greedy_batch_rows_equal_single_runs(model):
    points, normals = cloud(10, batch=3)
    rows = generate_ar_batch(model, points, normals, SamplingConfig(greedy=True), 40, seed=0)
    assert len(rows) == 3
    for i, row in enumerate(rows):
        with torch.inference_mode():
            lat = model.encode_points(points[i:i + 1], normals[i:i + 1])
        single = [t for p in run_ar(model, lat, SamplingConfig(greedy=True), 40, 0) for t in p]
        assert row.dtype == np.int64
        assert row.tolist() == single


def test_sampled_batch_rows_decode_and_stop_at_eos(model):
    points, normals = cloud(11, batch=3)
    cfg = SamplingConfig(temperature=1.0, top_k=0, top_p=1.0)
    rows = generate_ar_batch(model, points, normals, cfg, 40, seed=3)
    again = generate_ar_batch(model, points, normals, cfg, 40, seed=3)
    assert [r.tolist() for r in rows] == [r.tolist() for r in again]
    for row in rows:
        assert 1 <= len(row) <= 40
        assert EOS not in row[:-1].tolist()  # nothing after a row's EOS
        decode(row)


def test_batch_rejects_bad_shapes(model):
    points, normals = cloud(0, batch=2)
    with pytest.raises(ValueError):
        generate_ar_batch(model, points, normals[:1], SamplingConfig(), 10, 0)
    with pytest.raises(ValueError):
        generate_ar_batch(model, points, normals, SamplingConfig(), 0, 0)
