"""Backbone: config, encoder, cached decoding equivalence, rollback, save/load."""

from __future__ import annotations

import json

import pytest
import torch

from backend.model.config import ModelConfig, load_preset, preset_names
from backend.model.decoder import MeshTransformer, count_parameters
from backend.model.heads import build_heads
from backend.model.io import load_model, save_model
from devices import DEVICES

ATOL = 1e-4


def make_model(device: str = "cpu", **overrides) -> MeshTransformer:
    torch.manual_seed(0)
    cfg = ModelConfig.from_dict({**load_preset("tiny").to_dict(), **overrides})
    return MeshTransformer(cfg).to(device).eval()


def make_inputs(model: MeshTransformer, batch: int = 1, length: int = 24, n_points: int = 64):
    gen = torch.Generator().manual_seed(1)
    device = next(model.parameters()).device
    points = (torch.rand(batch, n_points, 3, generator=gen) * 2 - 1).to(device)
    normals = torch.nn.functional.normalize(torch.randn(batch, n_points, 3, generator=gen), dim=-1).to(device)
    tokens = torch.randint(0, model.config.vocab_size, (batch, length), generator=gen).to(device)
    with torch.no_grad():
        latents = model.encode_points(points, normals)
    return points, normals, latents, tokens


def test_presets_load_and_validate():
    assert {"tiny", "default", "large"} <= set(preset_names())
    cfg = load_preset("tiny")
    assert cfg.d_model == 64 and cfg.n_layers == 2
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown model preset"):
        load_preset("nope")
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig.from_dict({**cfg.to_dict(), "n_heads": 3})
    with pytest.raises(ValueError, match="unknown ModelConfig field"):
        ModelConfig.from_dict({**cfg.to_dict(), "colour": 1})
    with pytest.raises(ValueError, match="spec_heads"):
        ModelConfig.from_dict({**cfg.to_dict(), "spec_heads": 9})


def test_encoder_shapes_and_point_count_freedom():
    model = make_model()
    cfg = model.config
    for n in (16, 100):
        _, _, latents, _ = make_inputs(model, batch=2, n_points=n)
        assert latents.shape == (2, cfg.n_latents, cfg.d_model)
        assert torch.isfinite(latents).all()
    with pytest.raises(ValueError, match=r"\[B, N, 3\]"):
        model.encode_points(torch.zeros(1, 10, 3), torch.zeros(1, 9, 3))


def test_latents_condition_the_output():
    model = make_model()
    _, _, lat_a, tokens = make_inputs(model)
    lat_b = model.encode_points(torch.rand(1, 64, 3), torch.rand(1, 64, 3))
    with torch.no_grad():
        a, _ = model(tokens, lat_a)
        b, _ = model(tokens, lat_b)
    assert not torch.allclose(a, b, atol=1e-3)


@pytest.mark.parametrize("device", DEVICES)
@torch.no_grad()
def test_cached_single_token_decoding_matches_full_forward(device):
    model = make_model(device)
    _, _, latents, tokens = make_inputs(model, length=20)
    full_logits, full_hidden = model(tokens, latents)
    cache = model.new_cache(1, 32, latents)
    for t in range(tokens.shape[1]):
        logits, hidden = model(tokens[:, t:t + 1], cache=cache)
        assert cache.pos == t + 1
        torch.testing.assert_close(logits[:, 0], full_logits[:, t], atol=ATOL, rtol=0)
        torch.testing.assert_close(hidden[:, 0], full_hidden[:, t], atol=ATOL, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
@torch.no_grad()
def test_verify_step_at_offset_matches_full_forward(device):
    model = make_model(device)
    _, _, latents, tokens = make_inputs(model, length=12)
    full_logits, full_hidden = model(tokens, latents)
    cache = model.new_cache(1, 16, latents)
    model(tokens[:, :7], cache=cache)  # prefill k=7
    logits, hidden = model(tokens[:, 7:12], cache=cache, start_pos=7)  # verify T=5
    assert cache.pos == 12
    torch.testing.assert_close(logits, full_logits[:, 7:12], atol=ATOL, rtol=0)
    torch.testing.assert_close(hidden, full_hidden[:, 7:12], atol=ATOL, rtol=0)


@torch.no_grad()
def test_rollback_overwrites_rejected_tokens():
    model = make_model()
    _, _, latents, tokens = make_inputs(model, length=16)
    cache = model.new_cache(1, 24, latents)
    model(tokens[:, :6], cache=cache)
    wrong = (tokens[:, 6:11] + 1) % model.config.vocab_size
    model(wrong, cache=cache)            # rejected drafts
    cache.pos = 6                        # roll back, no copy
    logits, hidden = model(tokens[:, 6:16], cache=cache)
    fresh_logits, fresh_hidden = model(tokens[:, :16], latents)
    torch.testing.assert_close(logits, fresh_logits[:, 6:16], atol=ATOL, rtol=0)
    torch.testing.assert_close(hidden, fresh_hidden[:, 6:16], atol=ATOL, rtol=0)


@torch.no_grad()
def test_batched_cache_matches_per_sequence_forward():
    model = make_model()
    _, _, latents, tokens = make_inputs(model, batch=3, length=10)
    full_logits, _ = model(tokens, latents)
    cache = model.new_cache(3, 10, latents)
    model(tokens[:, :4], cache=cache)
    steps = [model(tokens[:, t:t + 1], cache=cache)[0] for t in range(4, 10)]
    torch.testing.assert_close(torch.cat(steps, 1), full_logits[:, 4:], atol=ATOL, rtol=0)
    # one set of latents shared by a batch of 3 (distillation label generation)
    shared = model.new_cache(3, 10, latents[:1])
    logits, _ = model(tokens, cache=shared)
    solo, _ = model(tokens, latents[:1].expand(3, -1, -1))
    torch.testing.assert_close(logits, solo, atol=ATOL, rtol=0)


@torch.no_grad()
def test_cache_and_position_limits_are_clear_errors():
    model = make_model()
    _, _, latents, tokens = make_inputs(model, length=8)
    cache = model.new_cache(1, 6, latents)
    with pytest.raises(ValueError, match="cache overflow"):
        model(tokens, cache=cache)
    with pytest.raises(ValueError, match="cache length"):
        model.new_cache(1, model.config.max_seq_len + 1, latents)
    with pytest.raises(ValueError, match="max_seq_len"):
        model(tokens, latents, start_pos=model.config.max_seq_len - 4)
    with pytest.raises(ValueError, match="latents are required"):
        model(tokens)


def test_training_step_reduces_loss():
    model = make_model(dropout=0.1).train()
    points, normals, _, tokens = make_inputs(model, batch=2, length=16)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        logits, _ = model(tokens[:, :-1], model.encode_points(points, normals))
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5
    assert model.encoder.input_proj.weight.grad is not None  # encoder trains end to end


@pytest.mark.parametrize("tie,shared", [(False, False), (True, False), (True, True)])
@torch.no_grad()
def test_save_load_round_trip(tmp_path, tie, shared):
    model = make_model(tie_embeddings=tie, head_shared_out=shared)
    heads = build_heads(model.config, model.lm_head)
    torch.nn.init.normal_(heads.wo)  # make sure the heads are not at their default init
    save_model(tmp_path, model, heads)
    loaded, loaded_heads, cfg = load_model(tmp_path)
    assert cfg == model.config and loaded_heads is not None
    assert (loaded.lm_head.weight is loaded.tok_emb.weight) == tie
    _, _, latents, tokens = make_inputs(model)
    assert torch.equal(model(tokens, latents)[0], loaded(tokens, latents)[0])
    hidden = model(tokens, latents)[1]
    assert torch.equal(heads(hidden, latents), loaded_heads(hidden, latents))


def test_save_without_heads_removes_stale_heads(tmp_path):
    model = make_model()
    save_model(tmp_path, model, build_heads(model.config))
    save_model(tmp_path, model)
    assert load_model(tmp_path)[1] is None


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="model directory"):
        load_model(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="config"):
        load_model(tmp_path)
    model = make_model()
    save_model(tmp_path, model)
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="cannot read weights"):
        load_model(tmp_path)
    save_model(tmp_path, model)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "d_ff": 96}))
    with pytest.raises(ValueError, match="do not match"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model weights"):
        load_model(tmp_path)


def test_save_rejects_heads_that_disagree_with_config(tmp_path):
    model = make_model()
    other = ModelConfig.from_dict({**model.config.to_dict(), "spec_heads": 2})
    with pytest.raises(ValueError, match="spec_heads"):
        save_model(tmp_path, model, build_heads(other))
    mlp = ModelConfig.from_dict({**model.config.to_dict(), "head_type": "mlp"})
    with pytest.raises(ValueError, match="head_type"):
        save_model(tmp_path, model, build_heads(mlp))


def test_parameter_counts_of_presets():
    with torch.device("meta"):
        default = MeshTransformer(load_preset("default"))
        large = MeshTransformer(load_preset("large"))
    assert 5e6 <= count_parameters(default) <= 10e6  # fp32 weights well under 40 MB
    assert 4e8 <= count_parameters(large) <= 6e8     # BPT-sized


def test_shared_tiny_model_dir_fixture_loads(tiny_model_dir):
    model, heads, cfg = load_model(tiny_model_dir)
    assert cfg == load_preset("tiny") and heads is not None and not model.training
