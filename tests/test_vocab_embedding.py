"""The coordinate-factorized tied vocabulary: parts are right, it behaves as an embedding and
an LM head, its inference cache follows weight updates, and it saves/loads like any model."""

from __future__ import annotations

import dataclasses

import torch

from backend.model.config import load_preset
from backend.model.decoder import MeshTransformer
from backend.model.heads import build_heads
from backend.model.io import load_model, save_model
from backend.model.vocab_embedding import FactorizedVocab, token_parts
from backend.tokenizer.vocab import BOS, EOS, OFFSET_START, PATCH_START


def _config():
    return dataclasses.replace(load_preset("tiny"), factorized_vocab=True, head_shared_out=True)


def test_tokens_sharing_a_digit_share_that_part():
    parts = token_parts()
    # offsets (a%16, b%16, c%16) = (3, 4, 5) and (3, 9, 1) share the first-axis digit only
    t1, t2 = OFFSET_START + 3 * 256 + 4 * 16 + 5, OFFSET_START + 3 * 256 + 9 * 16 + 1
    assert parts[t1, 0] == parts[t2, 0] and parts[t1, 1] == parts[t2, 1]
    assert parts[t1, 2] != parts[t2, 2] and parts[t1, 3] != parts[t2, 3]
    # a block and the patch start of the same block differ only in their class
    assert parts[7, 0] != parts[PATCH_START + 7, 0]
    assert torch.equal(parts[7, 1:], parts[PATCH_START + 7, 1:])
    # every token has a distinct part combination, so the parts alone can tell them apart
    assert len({tuple(row) for row in parts.tolist()}) == len(parts)
    assert parts[EOS, 0] != parts[BOS, 0]


def test_embedding_and_head_use_the_same_rows():
    vocab = FactorizedVocab(16)
    with torch.no_grad():
        vocab.residual.weight.normal_()
    tokens = torch.tensor([[0, OFFSET_START + 77, PATCH_START + 3, EOS]])
    rows = vocab(tokens)
    torch.testing.assert_close(rows, vocab.weight[tokens])
    hidden = torch.randn(2, 16)
    torch.testing.assert_close(vocab(hidden), hidden @ vocab.weight.T)


def test_inference_cache_follows_weight_updates():
    vocab = FactorizedVocab(8)
    with torch.no_grad():
        before = vocab.weight.clone()
        assert vocab.weight is vocab.weight  # cached while nothing changes
        vocab.part_emb.weight.add_(1.0)  # an optimizer step is an in-place update like this
        assert not torch.equal(vocab.weight, before)
        torch.testing.assert_close(vocab.weight, vocab.part_emb(vocab.parts).sum(1) + vocab.residual.weight)


def test_factorized_model_caches_decode_and_round_trips(tmp_path):
    torch.manual_seed(0)
    config = _config()
    model = MeshTransformer(config).eval()
    heads = build_heads(config, model.lm_head).eval()
    latents = torch.randn(1, config.n_latents, config.d_model)
    tokens = torch.randint(0, EOS, (1, 12))
    with torch.inference_mode():
        full, _ = model(tokens, latents)
        cache = model.new_cache(1, 32, latents)
        stepped = torch.cat([model(tokens[:, i:i + 1], cache=cache)[0] for i in range(12)], 1)
    torch.testing.assert_close(stepped, full, atol=1e-4, rtol=1e-4)

    save_model(tmp_path, model, heads)
    loaded, loaded_heads, _ = load_model(tmp_path)
    assert loaded.lm_head is loaded.tok_emb
    with torch.inference_mode():
        torch.testing.assert_close(loaded(tokens, latents)[0], full)
        hidden = torch.randn(1, config.d_model)
        torch.testing.assert_close(loaded_heads.draft(hidden, loaded_heads.prepare(latents)),
                                   heads.draft(hidden, heads.prepare(latents)))
