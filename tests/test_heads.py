"""XSpecMesh drafting heads: shapes, draft fast path, initialisation, training signal."""

from __future__ import annotations

import pytest
import torch

from backend.model.config import ModelConfig, load_preset
from backend.model.decoder import MeshTransformer
from backend.model.heads import CrossAttentionHeads, MLPHeads, build_heads


def setup(head_type: str, spec_heads: int = 4, shared: bool = False):
    torch.manual_seed(0)
    cfg = ModelConfig.from_dict({**load_preset("tiny").to_dict(), "head_type": head_type,
                                 "spec_heads": spec_heads, "head_shared_out": shared})
    model = MeshTransformer(cfg).eval()
    heads = build_heads(cfg, model.lm_head).eval()
    for p in heads.parameters():  # move away from the zero-initialised residual branches
        torch.nn.init.normal_(p, std=0.05) if p.ndim == 3 else None
    latents = model.encode_points(torch.rand(2, 32, 3), torch.rand(2, 32, 3))
    hidden = torch.randn(2, 7, cfg.d_model)
    return cfg, model, heads, latents, hidden


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("head_type", ["ca", "mlp"])
@torch.no_grad()
def test_forward_shape_and_draft_matches_forward(head_type, shared):
    cfg, _, heads, latents, hidden = setup(head_type, shared=shared)
    logits = heads(hidden, latents)
    assert logits.shape == (2, 7, cfg.spec_heads, cfg.vocab_size)
    prepared = heads.prepare(latents)
    drafted = heads.draft(hidden[:, -1], prepared)
    assert drafted.shape == (2, cfg.spec_heads, cfg.vocab_size)
    torch.testing.assert_close(drafted, logits[:, -1], atol=1e-5, rtol=0)
    # the first n heads alone give the same logits as the full set
    torch.testing.assert_close(heads.draft(hidden[:, -1], prepared, num_heads=2),
                               logits[:, -1, :2], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="num_heads"):
        heads.draft(hidden[:, -1], prepared, num_heads=cfg.spec_heads + 1)


def test_build_heads_type_and_count():
    for head_type, cls in (("ca", CrossAttentionHeads), ("mlp", MLPHeads)):
        for d in (1, 8):
            cfg, *_ = setup(head_type, d)
            heads = build_heads(cfg)
            assert isinstance(heads, cls) and heads.num_heads == d


@torch.no_grad()
def test_ca_heads_use_the_latents_and_mlp_heads_do_not():
    _, _, ca, latents, hidden = setup("ca")
    other = torch.randn_like(latents)
    assert not torch.allclose(ca(hidden, latents), ca(hidden, other), atol=1e-4)
    _, _, mlp, latents, hidden = setup("mlp")
    assert torch.equal(mlp(hidden, latents), mlp(hidden, None))
    with pytest.raises(ValueError, match="latents"):
        ca(hidden, None)


@pytest.mark.parametrize("head_type", ["ca", "mlp"])
@torch.no_grad()
def test_fresh_heads_start_from_the_backbone_lm_head(head_type):
    cfg = load_preset("tiny")
    cfg = ModelConfig.from_dict({**cfg.to_dict(), "head_type": head_type})
    model = MeshTransformer(cfg).eval()
    heads = build_heads(cfg, model.lm_head)
    for d in range(cfg.spec_heads):
        assert torch.equal(heads.out[d], model.lm_head.weight)
    assert heads.out.data_ptr() != model.lm_head.weight.data_ptr()  # own copy, trained apart
    # residual branches start at zero: a fresh MLP head reads h_s itself through W^(d)
    if head_type == "mlp":
        hidden = torch.randn(1, 3, cfg.d_model)
        expected = hidden @ model.lm_head.weight.T
        torch.testing.assert_close(heads(hidden, None)[:, :, 0], expected, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="lm_head weight"):
        build_heads(cfg, torch.nn.Linear(3, 3))


@torch.no_grad()
def test_shared_out_heads_project_with_the_backbone_lm_head():
    cfg, model, heads, latents, hidden = setup("ca", shared=True)
    assert heads.out is None
    assert not any("out" in k for k in heads.state_dict())  # saved with the backbone only
    feats = heads.features(heads.head_inputs(hidden, None, cfg.spec_heads), heads.prepare(latents))
    torch.testing.assert_close(heads(hidden, latents), feats @ model.lm_head.weight.T)
    with pytest.raises(ValueError, match="head_shared_out"):
        build_heads(cfg)


@pytest.mark.parametrize("head_type", ["ca", "mlp"])
def test_heads_learn_a_shifted_target(head_type):
    cfg, _, heads, latents, hidden = setup(head_type, spec_heads=2)
    heads.train()
    target = torch.randint(0, cfg.vocab_size, (2, 7, 2))
    opt = torch.optim.AdamW(heads.parameters(), lr=1e-2)
    losses = []
    for _ in range(10):
        logits = heads(hidden, latents.detach())
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 2), target.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.7


@pytest.mark.parametrize("head_type", ["ca", "mlp"])
@torch.no_grad()
def test_token_input_heads_read_the_sampled_token(head_type):
    cfg = load_preset("tiny")
    plain_cfg = ModelConfig.from_dict({**cfg.to_dict(), "head_type": head_type, "head_shared_out": True})
    token_cfg = ModelConfig.from_dict({**plain_cfg.to_dict(), "head_token_input": True})
    model = MeshTransformer(plain_cfg).eval()
    torch.manual_seed(0)
    plain = build_heads(plain_cfg, model.lm_head).eval()
    with_token = build_heads(token_cfg, model.lm_head).eval()
    with_token.load_state_dict(plain.state_dict(), strict=False)
    latents = torch.randn(2, cfg.n_latents, cfg.d_model)
    hidden, embedding = torch.randn(2, 3, cfg.d_model), torch.randn(2, 3, cfg.d_model)
    # The token projection starts at zero: a fresh token-input head drafts like a plain one.
    torch.testing.assert_close(with_token(hidden, latents, token_embedding=embedding), plain(hidden, latents))
    with_token.tok_w.normal_(std=0.1)
    moved = with_token(hidden, latents, token_embedding=embedding)
    assert not torch.allclose(moved, plain(hidden, latents))
    # The decoding fast path agrees with the training forward at the last position.
    draft = with_token.draft(hidden[:, -1], with_token.prepare(latents), token_embedding=embedding[:, -1])
    torch.testing.assert_close(draft, moved[:, -1], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="sampled token"):
        with_token(hidden, latents)
