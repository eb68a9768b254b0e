import copy
import dataclasses
import functools
import itertools
from collections import Counter

import pytest
import torch
from scipy.stats import chisquare

from backend.decoding.autoregressive import stream_ar
from backend.decoding.grammar_mask import GrammarMasks
from backend.decoding.sampling import SamplingConfig, distribution, make_generator
from backend.decoding.speculative import SpeculativeDecoder, stream_speculative
from backend.decoding.tree import PRUNE, DraftTree, HeadScores, build_tree
from backend.model.heads import build_heads
from backend.model.io import load_model
from backend.tokenizer.bpt import decode
from backend.tokenizer.grammar import GrammarState
from backend.tokenizer.vocab import BOS, EOS, OFFSET_START, PATCH_START, VOCAB_SIZE
from devices import DEVICES

GREEDY = SamplingConfig(greedy=True)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    # float64: the verify pass (T tokens) and AR steps (1 token) then agree far beyond any argmax tie
    model, heads, _ = load_model(tiny_model_dir)
    return model.double(), heads.double()


def on(device: str, tiny):
    """The tiny model and heads on `device` (copies: the fixture stays on the CPU)."""
    model, heads = tiny
    return copy.deepcopy(model).to(device), copy.deepcopy(heads).to(device)


def latents(model, seed: int, n: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    points = torch.rand(1, n, 3, generator=g, dtype=torch.float64) * 1.9 - 0.95
    normals = torch.nn.functional.normalize(torch.randn(1, n, 3, generator=g, dtype=torch.float64), dim=-1)
    with torch.inference_mode():
        return model.encode_points(points.to(device), normals.to(device))


def ar_tokens(model, lat, sampling, max_tokens, seed=0) -> list[int]:
    return [t for p in stream_ar(model, lat, sampling, max_tokens, make_generator(seed)) for t in p]


@functools.cache
def identity() -> torch.Tensor:
    return torch.eye(VOCAB_SIZE, dtype=torch.float64)


class LogitsHeads:
    """Base of the test doubles, which say what to draft as logits [1, n, V] (`draft`): decoding
    reads features and output matrices, so the logits are the features and every head's output
    matrix is the identity."""

    token_input = False

    def prepare(self, latents):
        return None

    def out_weight(self, head: int) -> torch.Tensor:
        return identity()

    def draft_features(self, hidden_last, prepared, num_heads=None, token_embedding=None):
        return self.draft(hidden_last, prepared, num_heads, token_embedding)


class OracleHeads(LogitsHeads):
    """Test double for trained heads: drafts the known continuation `target`, except at the
    positions in `wrong`, so that acceptance, partial acceptance and rollback all happen."""

    def __init__(self, target: list[int], wrong: set[int], num_heads: int = 4) -> None:
        self.target, self.wrong, self.num_heads = target, wrong, num_heads
        self.decoder: SpeculativeDecoder | None = None

    def draft(self, hidden_last, prepared, num_heads=None, token_embedding=None):
        n = len(self.decoder.tokens)
        logits = torch.zeros(1, num_heads, 5122, dtype=torch.float64)
        for i in range(num_heads):
            index = n + i  # head i drafts x_{n+1+i} = target[n+i]
            token = self.target[index] if index < len(self.target) else EOS
            logits[0, i, (token + 1) % 5120 if index in self.wrong else token] = 30.0
        return logits


class LookaheadHeads(LogitsHeads):
    """A draft model that knows the backbone: head i gives the backbone's logits i tokens ahead
    along its greedy path, times `factor`. With factor < 1 the drafts use the backbone's own
    candidates with flatter weights, so exact verification must both accept and resample."""

    def __init__(self, model, latents, factor: float, num_heads: int = 4) -> None:
        self.model, self.latents, self.factor, self.num_heads = model, latents, factor, num_heads
        self.masks = GrammarMasks("cpu")
        self.decoder: SpeculativeDecoder | None = None

    def draft(self, hidden_last, prepared, num_heads=None, token_embedding=None):
        state = GrammarState()
        for token in self.decoder.tokens:
            state.advance(token)
        sequence, rows = [BOS, *self.decoder.tokens], []
        for _ in range(num_heads):
            logits, _ = self.model(torch.tensor([sequence]), self.latents)
            rows.append(logits[0, -1] * self.factor)
            token = int(rows[-1].masked_fill(~self.masks(state), float("-inf")).argmax())
            state.advance(token)
            sequence.append(token)
        return torch.stack(rows)[None]


def run_decoder(decoder: SpeculativeDecoder, on_pass=None) -> tuple[list[int], int]:
    passes = [decoder.prefill()]
    while not decoder.finished:
        passes.append(decoder.step())
        if on_pass is not None:
            on_pass(decoder)
    return [t for p in passes for t in p], len(passes)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("draft", ["is", "pts"])
def test_greedy_speculative_equals_ar_greedy_with_random_heads(tiny, draft, device):
    model, heads = on(device, tiny)
    for seed, num_heads in itertools.product(range(2), (1, 2, 4)):
        lat = latents(model, seed)
        expected = ar_tokens(model, lat, GREEDY, 40)
        passes = list(stream_speculative(model, heads, lat, GREEDY, 40, make_generator(seed),
                                         delta=0.5, num_heads=num_heads, draft=draft))
        assert [t for p in passes for t in p] == expected
        assert all(1 <= len(p) <= num_heads + 1 for p in passes)


@pytest.mark.parametrize("verify", ["threshold", "exact"])
def test_greedy_with_good_drafts_is_exact_and_compresses(tiny, verify):
    model, _ = tiny
    lat = latents(model, 3)
    expected = ar_tokens(model, lat, GREEDY, 60)
    oracle = OracleHeads(expected, wrong={5, 6, 20, 33})
    decoder = SpeculativeDecoder(model, oracle, lat, GREEDY, 60, make_generator(0), verify=verify)
    oracle.decoder = decoder
    tokens, passes = run_decoder(decoder)
    assert tokens == expected
    assert len(tokens) / passes > 2.5  # SCR: mostly whole drafts accepted


def test_rollback_leaves_the_cache_of_a_fresh_prefill(tiny):
    model, _ = tiny
    lat = latents(model, 4)
    expected = ar_tokens(model, lat, GREEDY, 40)
    oracle = OracleHeads(expected, wrong={3, 4, 9, 15, 16, 17, 25})
    decoder = SpeculativeDecoder(model, oracle, lat, GREEDY, 40, make_generator(0))
    oracle.decoder = decoder
    checked = []

    def compare_with_fresh_prefill(dec: SpeculativeDecoder) -> None:
        pos = dec.cache.pos
        assert pos == len(dec.tokens)  # BOS + every accepted token but the pending last one
        if dec.finished:
            return
        with torch.inference_mode():
            fresh = model.new_cache(1, 40, lat)
            model(torch.tensor([[BOS, *dec.tokens[:-1]]]), cache=fresh)
            assert torch.allclose(dec.cache.k[:, :, :, :pos], fresh.k[:, :, :, :pos], atol=1e-10)
            assert torch.allclose(dec.cache.v[:, :, :, :pos], fresh.v[:, :, :, :pos], atol=1e-10)
            nxt = torch.tensor([[dec.tokens[-1]]])
            logits, _ = model(nxt, cache=dec.cache)
            fresh_logits, _ = model(nxt, cache=fresh)
            dec.cache.pos = pos  # undo the probe
        assert torch.allclose(logits, fresh_logits, atol=1e-9)
        checked.append(pos)

    tokens, _ = run_decoder(decoder, compare_with_fresh_prefill)
    assert tokens == expected
    assert len(checked) >= 5


def test_sampled_speculative_streams_decode(tiny):
    model, heads = tiny
    lat = latents(model, 5)
    for draft, verify in itertools.product(("is", "pts"), ("threshold", "exact")):
        passes = list(stream_speculative(model, heads, lat, SamplingConfig(temperature=1.0), 30,
                                         make_generator(1), delta=0.1, draft=draft, verify=verify))
        tokens = [t for p in passes for t in p]
        assert len(tokens) <= 30 and (tokens[-1] == EOS or len(tokens) == 30)
        assert EOS not in tokens[:-1]
        decode(tokens)
        again = [t for p in stream_speculative(model, heads, lat, SamplingConfig(temperature=1.0), 30,
                                               make_generator(1), delta=0.1, draft=draft,
                                               verify=verify) for t in p]
        assert again == tokens  # reproducible per seed


def joint_first_tokens(model, lat, cfg: SamplingConfig, depth: int) -> dict[tuple[int, ...], float]:
    """Exact probabilities of every prefix of `depth` tokens under AR sampling."""
    masks = GrammarMasks("cpu")
    joint = {(): 1.0}
    for _ in range(depth):
        grown = {}
        for prefix, weight in joint.items():
            state = GrammarState()
            for token in prefix:
                state.advance(token)
            with torch.inference_mode():
                logits, _ = model(torch.tensor([[BOS, *prefix]]), lat)
            probs = distribution(logits[0, -1], masks(state), cfg)
            for token in probs.nonzero().flatten().tolist():
                grown[(*prefix, token)] = weight * float(probs[token])
        joint = grown
    return joint


def first_tokens_speculative(model, heads, lat, cfg, runs: int, **kwargs) -> Counter:
    counts = Counter()
    for seed in range(runs):
        decoder = SpeculativeDecoder(model, heads, lat, cfg, 4, make_generator(seed), num_heads=2, **kwargs)
        heads.decoder = decoder
        decoder.prefill()
        while len(decoder.tokens) < 3:
            decoder.step()
        counts[tuple(decoder.tokens[:3])] += 1
    return counts


def chi_square_p(expected: dict, counts: Counter, runs: int) -> float:
    keys = sorted(expected)
    observed = [counts[k] for k in keys]
    assert sum(observed) == runs  # nothing outside the backbone's support
    return float(chisquare(observed, [expected[k] * runs for k in keys]).pvalue)


@pytest.mark.parametrize("draft", ["is", "pts", "tree"])
def test_exact_verification_preserves_the_backbone_distribution(tiny, draft):
    model, _ = tiny
    lat = latents(model, 6)
    # A random tiny model is nearly uniform: a low temperature gives the backbone a shape.
    cfg = SamplingConfig(temperature=0.05, top_k=3, top_p=1.0)  # 27 outcomes for 3 tokens
    expected = joint_first_tokens(model, lat, cfg, 3)
    flat = LookaheadHeads(model, lat, factor=0.2)
    runs = 200
    counts = first_tokens_speculative(model, flat, lat, cfg, runs, verify="exact", draft=draft)
    assert chi_square_p(expected, counts, runs) > 1e-3
    if draft == "is":
        # Accepting every draft (threshold 0) samples from the heads instead: the test must see that.
        naive = first_tokens_speculative(model, flat, lat, cfg, runs, verify="threshold", delta=0.0)
        assert chi_square_p(expected, naive, runs) < 1e-6


def test_pts_paths_are_valid_top_k_paths_of_the_tree(tiny):
    model, heads = tiny
    lat = latents(model, 7)
    masks = GrammarMasks("cpu")
    cfg = SamplingConfig(temperature=1.0, top_k=5, top_p=1.0)
    with torch.inference_mode():
        _, hidden = model(torch.tensor([[BOS, 4608 + 73]]), lat)  # after a patch start
        head_logits = heads.draft(hidden[:, -1], heads.prepare(lat))[0]
    state = GrammarState()
    state.advance(4608 + 73)
    tree = build_tree(scores_of(head_logits), state, masks, cfg, k=3, budget=256)
    assert tree.tokens and all(w >= PRUNE for w in tree.weights) and tree.rows <= 1 + 3 + 9 + 27 + 81
    depth = [0]
    for parent in tree.parents:
        depth.append(depth[parent] + 1)
    generator = make_generator(0)
    for _ in range(20):
        chain = tree.sample_path(generator, with_q=True)
        assert chain.parents == list(range(len(chain.tokens)))
        check = clone(state)
        product = 1.0
        for d, token in enumerate(chain.tokens):
            assert torch.equal(chain.masks[d], masks(check))
            probs = torch.softmax(head_logits[d].masked_fill(~masks(check), float("-inf")), -1)
            assert token in probs.topk(3).indices.tolist()
            product *= float(probs[token])
            assert chain.q[d, token] > 0 and float(chain.q[d].sum()) == pytest.approx(1.0)
            check.advance(token)  # raises if the path breaks the grammar
        assert product >= PRUNE
        assert len(chain.tokens) == max(depth) or chain.tokens[-1] == EOS  # the deepest level, or an EOS leaf

    greedy = build_tree(scores_of(head_logits), state, masks, GREEDY, k=3, budget=256)  # still K_s candidates a node
    assert greedy.sample_path(generator, with_q=False).tokens[0] in greedy.tokens


def scores_of(logits: torch.Tensor) -> HeadScores:
    """Tree drafting's scores for head logits [L, V]: features the logits, weights the identity."""
    eye = identity().float().numpy()
    return HeadScores(logits.float().numpy(), [eye] * len(logits))


def clone(state):
    return copy.copy(state)


def test_invalid_arguments(tiny):
    model, heads = tiny
    lat = latents(model, 0)
    for kwargs in ({"num_heads": 5}, {"num_heads": 0}, {"draft": "x"}, {"verify": "x"}, {"delta": 1.5},
                   {"draft": "pts", "pts_k": 0}):
        with pytest.raises(ValueError):
            SpeculativeDecoder(model, heads, lat, GREEDY, 10, None, **kwargs)
    with pytest.raises(ValueError):
        next(stream_speculative(model, None, lat, GREEDY, 10, None))


class RunnerUpHeads(OracleHeads):
    """Like OracleHeads, but at the `wrong` positions the right token is the heads' second
    choice (p ~ 0.27), so a token tree holds it on a side branch and must move its cache slots."""

    def draft(self, hidden_last, prepared, num_heads=None, token_embedding=None):
        logits = super().draft(hidden_last, prepared, num_heads)
        n = len(self.decoder.tokens)
        for i in range(num_heads):
            if n + i in self.wrong and n + i < len(self.target):
                logits[0, i, self.target[n + i]] = 29.0
        return logits


def test_tree_step_keeps_the_cache_of_a_fresh_prefill(tiny):
    model, _ = tiny
    lat = latents(model, 4)
    expected = ar_tokens(model, lat, GREEDY, 40)
    heads = RunnerUpHeads(expected, wrong={3, 4, 9, 15, 16, 17, 25})
    decoder = SpeculativeDecoder(model, heads, lat, GREEDY, 40, make_generator(0), draft="tree",
                                 pts_k=2, tree_nodes=8)
    heads.decoder = decoder
    moved = []

    def compare_with_fresh_prefill(dec: SpeculativeDecoder) -> None:
        pos = dec.cache.pos
        assert pos == len(dec.tokens)
        with torch.inference_mode():
            fresh = model.new_cache(1, 40, lat)
            model(torch.tensor([[BOS, *dec.tokens[:-1]]]), cache=fresh)
        assert torch.allclose(dec.cache.k[:, :, :, :pos], fresh.k[:, :, :, :pos], atol=1e-10)
        assert torch.allclose(dec.cache.v[:, :, :, :pos], fresh.v[:, :, :, :pos], atol=1e-10)
        moved.append(pos)

    tokens, passes = run_decoder(decoder, compare_with_fresh_prefill)
    assert tokens == expected
    assert len(tokens) / passes > 2.5  # the runner-up branches were accepted, not resampled


def test_tree_attention_of_a_chain_is_the_causal_verify(tiny):
    model, heads = tiny
    lat = latents(model, 6)
    tokens = torch.tensor([[BOS, 4700, 600, 700, 800, 900]])
    chain = DraftTree([600, 700, 800, 900], [0, 1, 2, 3], torch.ones(5, 5122, dtype=torch.bool))
    assert torch.equal(chain.attention(), torch.tril(torch.ones(5, 5, dtype=torch.bool)))
    with torch.inference_mode():
        causal, tree = model.new_cache(1, 10, lat), model.new_cache(1, 10, lat)
        model(tokens[:, :1], cache=causal), model(tokens[:, :1], cache=tree)
        expected, _ = model(tokens[:, 1:], cache=causal)
        got, _ = model(tokens[:, 1:], cache=tree, tree=chain.attention())
    torch.testing.assert_close(got, expected)


def test_tree_sees_siblings_apart(tiny):
    """Two siblings at depth 1 get the same position and do not see each other: each one's
    logits equal those of a chain holding only that sibling."""
    model, _ = tiny
    lat = latents(model, 7)
    siblings = DraftTree([600, 601, 700], [0, 0, 2], torch.ones(4, 5122, dtype=torch.bool))
    with torch.inference_mode():
        cache = model.new_cache(1, 10, lat)
        model(torch.tensor([[BOS]]), cache=cache)
        got, _ = model(torch.tensor([[4700, 600, 601, 700]]), cache=cache, tree=siblings.attention())
        cache.pos = 1
        alone, _ = model(torch.tensor([[4700, 601, 700]]), cache=cache)
    torch.testing.assert_close(got[0, [0, 2, 3]], alone[0])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("verify", ["threshold", "exact"])
@pytest.mark.parametrize("k, nodes", [(2, 4), (3, 8)])
def test_greedy_tree_equals_ar_greedy_with_random_heads(tiny, k, nodes, verify, device):
    model, heads = on(device, tiny)
    for seed, num_heads in itertools.product(range(2), (1, 4)):
        lat = latents(model, seed)
        expected = ar_tokens(model, lat, GREEDY, 40)
        passes = list(stream_speculative(model, heads, lat, GREEDY, 40, make_generator(seed), delta=0.5,
                                         num_heads=num_heads, draft="tree", pts_k=k, tree_nodes=nodes,
                                         verify=verify))
        assert [t for p in passes for t in p] == expected
        assert all(1 <= len(p) <= num_heads + 1 for p in passes)


def test_token_input_heads_keep_greedy_tree_equal_to_ar(tiny):
    model, heads = tiny
    config = dataclasses.replace(model.config, head_token_input=True)
    reading = build_heads(config, model.lm_head).double().eval()
    reading.load_state_dict(heads.state_dict(), strict=False)
    with torch.no_grad():
        reading.tok_w.normal_(std=0.05)
    lat = latents(model, 0)
    expected = ar_tokens(model, lat, GREEDY, 40)
    # These heads raise without x_n's embedding, so getting through proves the decoder passes it.
    passes = list(stream_speculative(model, reading, lat, GREEDY, 40, make_generator(0), delta=0.5, draft="tree"))
    assert [t for p in passes for t in p] == expected
    assert all(1 <= len(p) <= reading.num_heads + 1 for p in passes)


def test_build_tree_takes_the_likeliest_nodes_parents_first(tiny):
    logits = torch.full((2, 5122), -30.0)
    logits[0, [4608, 4609, 4610]] = torch.tensor([2.0, 1.0, 0.0])  # patch starts (the grammar's first)
    logits[1, [600, 601]] = torch.tensor([1.0, 0.0])               # offsets
    tree = build_tree(scores_of(logits), GrammarState(), GrammarMasks("cpu"), SamplingConfig(temperature=1.0), k=2, budget=4)
    assert tree.tokens[:2] == [4608, 600] and tree.parents[:2] == [0, 1]
    assert all(parent <= node for node, parent in enumerate(tree.parents))
    assert len(tree.tokens) == 4 and tree.masks.shape == (5, 5122)
    assert set(tree.tokens) <= {4608, 4609, 600, 601}


def test_a_drafted_eos_row_is_a_distribution():
    """Nothing follows EOS, yet its tree row is verified with the rest: it must not be NaN."""
    state = GrammarState()
    for token in (PATCH_START + 9, OFFSET_START + 1, OFFSET_START + 2, OFFSET_START + 3):  # one face
        state.advance(token)
    logits = torch.full((2, VOCAB_SIZE), -30.0)
    logits[0, EOS] = 5.0
    tree = build_tree(scores_of(logits), state, GrammarMasks("cpu"), SamplingConfig(temperature=1.0), k=2, budget=4)
    eos_row = tree.tokens.index(EOS) + 1
    probs = distribution(torch.randn(tree.rows, VOCAB_SIZE), tree.masks, SamplingConfig())
    assert torch.isfinite(probs).all() and probs[eos_row, EOS] == 1.0
