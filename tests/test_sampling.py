import numpy as np
import pytest
import torch

from backend.decoding.grammar_mask import GrammarMasks, clone_state
from backend.decoding.sampling import SamplingConfig, allowed_distribution, distribution, make_generator, sample, sample_token
from backend.tokenizer.grammar import GrammarState
from backend.tokenizer.vocab import EOS, OFFSET_START, PATCH_START, VOCAB_SIZE


def random_logits(seed: int, rows: int = 1) -> torch.Tensor:
    return torch.randn(rows, VOCAB_SIZE, generator=torch.Generator().manual_seed(seed))


def test_config_rejects_bad_values():
    for kwargs in ({"temperature": 0.0}, {"temperature": -1.0}, {"top_k": -1}, {"top_p": 0.0}, {"top_p": 1.5}):
        with pytest.raises(ValueError):
            SamplingConfig(**kwargs)
    SamplingConfig(temperature=0.0, greedy=True)  # temperature is irrelevant when greedy


def test_mask_applies_before_filters():
    logits = random_logits(0)[0]
    mask = torch.zeros(VOCAB_SIZE, dtype=torch.bool)
    mask[OFFSET_START:OFFSET_START + 7] = True
    logits[:OFFSET_START] += 100.0  # disallowed tokens dominate the raw logits
    probs = distribution(logits, mask, SamplingConfig(top_k=50, top_p=1.0))
    assert torch.isclose(probs.sum(), torch.tensor(1.0))
    assert (probs[~mask] == 0).all()
    assert (probs[mask] > 0).all()  # top-k over the allowed 7, not over the masked-out maxima


def test_top_k_keeps_the_k_largest():
    logits = random_logits(1)[0]
    probs = distribution(logits, None, SamplingConfig(temperature=1.0, top_k=10, top_p=1.0))
    kept = probs.nonzero().flatten()
    assert set(kept.tolist()) == set(logits.topk(10).indices.tolist())
    expected = torch.softmax(logits[kept], -1)
    assert torch.allclose(probs[kept], expected, atol=1e-6)


def test_top_p_keeps_the_smallest_prefix_reaching_p():
    logits = torch.full((VOCAB_SIZE,), -1e9)
    logits[:4] = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    probs = distribution(logits, None, SamplingConfig(temperature=1.0, top_k=0, top_p=0.7))
    assert torch.allclose(probs[:2], torch.tensor([0.625, 0.375]))
    assert probs[2:].sum() == 0


def test_temperature_sharpens():
    logits = random_logits(2)[0]
    cold = distribution(logits, None, SamplingConfig(temperature=0.25, top_k=0, top_p=1.0))
    warm = distribution(logits, None, SamplingConfig(temperature=1.0, top_k=0, top_p=1.0))
    assert cold.max() > warm.max()
    assert cold.argmax() == warm.argmax()


def test_greedy_is_one_hot_on_masked_argmax():
    logits = random_logits(3, rows=4)
    mask = torch.zeros(4, VOCAB_SIZE, dtype=torch.bool)
    mask[:, PATCH_START:EOS] = True
    probs = distribution(logits, mask, SamplingConfig(greedy=True))
    expected = logits.masked_fill(~mask, float("-inf")).argmax(-1)
    assert (probs.argmax(-1) == expected).all()
    assert (probs.sum(-1) == 1).all() and ((probs == 0) | (probs == 1)).all()


def test_sampling_is_reproducible_per_seed():
    logits = random_logits(4)[0]
    cfg = SamplingConfig(temperature=1.0, top_k=0, top_p=1.0)

    def draw(seed: int) -> list[int]:
        generator = make_generator(seed)
        return [sample_token(logits, None, cfg, generator) for _ in range(20)]

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)


def test_sample_follows_the_distribution():
    probs = torch.zeros(3, VOCAB_SIZE)
    probs[:, 10], probs[:, 20] = 0.8, 0.2
    draws = sample(probs.repeat(1000, 1), make_generator(0))
    assert set(draws.unique().tolist()) == {10, 20}
    assert abs((draws == 10).float().mean().item() - 0.8) < 0.05


def test_grammar_masks_match_the_grammar_and_forbidden_token():
    masks = GrammarMasks("cpu")
    state = GrammarState()
    for token in (PATCH_START + 9, OFFSET_START + 1):  # centre vertex in block 9
        state.advance(token)
    mask = masks(state)
    assert state.forbidden_token == 9
    assert not mask[9] and mask[8] and mask[OFFSET_START]
    assert not mask[OFFSET_START + 1]  # an offset-only vertex here would repeat the centre
    expected = state.allowed().copy()
    expected[[9, OFFSET_START + 1]] = False
    assert np.array_equal(mask.numpy(), expected)
    assert masks(state) is mask  # cached, not rebuilt

    copy = clone_state(state)
    copy.advance(OFFSET_START + 2)
    assert copy.kind != state.kind  # the clone moves independently


@pytest.mark.parametrize("cfg", [SamplingConfig(), SamplingConfig(temperature=1.0, top_k=0, top_p=1.0),
                                 SamplingConfig(temperature=0.7, top_k=5, top_p=0.8), SamplingConfig(greedy=True)])
def test_scoring_only_the_allowed_tokens_gives_the_full_distribution(cfg):
    """Equal up to the matrix product's rounding (float64 here; float32 agrees to about 1e-6)."""
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(9, 32, generator=generator, dtype=torch.float64)
    weight = torch.randn(5122, 32, generator=generator, dtype=torch.float64)
    masks = torch.rand(9, 5122, generator=generator) < 0.01  # a few dozen tokens per row, as decoding has
    masks[:, 7] = True  # every row allows something
    full = distribution(hidden @ weight.T, masks, cfg)
    torch.testing.assert_close(allowed_distribution(hidden, weight, masks, cfg), full, rtol=1e-12, atol=1e-14)
    # ...and so the same token for the same seed
    assert torch.equal(sample(allowed_distribution(hidden, weight, masks, cfg), make_generator(3)),
                       sample(full, make_generator(3)))
