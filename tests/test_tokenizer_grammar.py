"""Grammar mask: every sequence sampled under the mask decodes, and agrees with the streaming decoder."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.tokenizer import vocab
from backend.tokenizer.bpt import decode, encode, face_set
from backend.tokenizer.grammar import MASKS, GrammarState, Kind
from backend.tokenizer.incremental import IncrementalDecoder


def sample_walk(rng: np.random.Generator, max_tokens: int) -> list[int]:
    """A sampler obeying the mask; half the picks come from a few tokens so that vertices repeat
    (degenerate and duplicate faces, revisited blocks)."""
    state, tokens = GrammarState(), []
    while state.kind != Kind.DONE and len(tokens) < max_tokens:
        choices = np.flatnonzero(state.sampling_mask())
        if state.kind == Kind.IN_FAN and rng.random() < 0.08:
            token = vocab.EOS
        elif rng.random() < 0.5:
            few = choices[np.isin(choices, [0, 1, 512, 513, 514, 4608, 4609])]
            token = int(rng.choice(few if len(few) else choices))
        else:
            token = int(rng.choice(choices))
        state.advance(token)
        tokens.append(token)
    return tokens


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 80))
def test_masked_walks_decode_and_stream_the_same(seed, max_tokens):
    tokens = sample_walk(np.random.default_rng(seed), max_tokens)
    mesh = decode(tokens)  # must not raise
    decoder = IncrementalDecoder()
    streamed = [face for t in tokens for face in decoder.push(t)]
    assert decoder.finished == (tokens[-1] == vocab.EOS)
    assert len(streamed) == len(mesh.faces)
    corners = mesh.vertices[mesh.faces]
    assert {tuple(map(tuple, f.tolist())) for f in streamed} == {tuple(map(tuple, f)) for f in corners.tolist()}
    # decoded faces are clean, so they survive another round trip unchanged
    assert all(len({tuple(c) for c in f}) == 3 for f in corners.tolist())
    if len(mesh.faces):
        assert face_set(decode(encode(mesh))) == face_set(mesh)


def test_masks_per_kind():
    assert all(not mask[vocab.BOS] for mask in MASKS.values())
    assert all(not mask.flags.writeable for mask in MASKS.values())
    assert np.flatnonzero(MASKS[Kind.START]).tolist() == list(range(4608, 5120))
    assert MASKS[Kind.IN_FAN].sum() == 5121 and not MASKS[Kind.DONE].any()
    assert MASKS[Kind.CENTRE_DONE][0] and not MASKS[Kind.CENTRE_DONE][vocab.EOS]


def test_state_transitions_and_forbidden_block():
    state = GrammarState()
    assert state.forbidden_token == -1
    kinds = []
    for token in [4608 + 9, 600, 10, 700, 800, 4608, 512, 513, 514, vocab.EOS]:
        state.advance(token)
        kinds.append(state.kind)
    assert kinds == [Kind.AFTER_PATCH_START, Kind.CENTRE_DONE, Kind.AFTER_BLOCK, Kind.ONE_VERTEX, Kind.IN_FAN,
                     Kind.AFTER_PATCH_START, Kind.CENTRE_DONE, Kind.ONE_VERTEX, Kind.IN_FAN, Kind.DONE]
    state = GrammarState()
    state.advance(4608 + 9)
    state.advance(600)
    assert state.forbidden_token == 9  # the centre's block may not be repeated
    with pytest.raises(ValueError, match="not allowed"):
        state.advance(9)
    with pytest.raises(ValueError):
        state.advance(vocab.BOS)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_sampling_mask_never_repeats_a_vertex_of_the_face_being_made(seed):
    """Walks under the sampling mask (biased towards a few tokens, so vertices would repeat
    often) never emit a zero-area fan face nor the previous fan face reversed."""
    tokens = sample_walk(np.random.default_rng(seed), 120)
    decoder = IncrementalDecoder()
    previous = None
    for token in tokens:
        if token >= vocab.PATCH_START:
            previous = None  # a new fan
        for face in decoder.push(token):
            corners = {tuple(c) for c in face.tolist()}
            assert len(corners) == 3
            assert previous is None or corners != previous
            previous = corners


def test_repeated_vertices_still_decode_though_samplers_never_pick_them():
    block, a, b = 9, vocab.OFFSET_START + 1, vocab.OFFSET_START + 2
    centre_then_a_b_a = [vocab.PATCH_START + block, vocab.OFFSET_START, a, b, a, vocab.EOS]
    state = GrammarState()
    for token in centre_then_a_b_a[:4]:
        state.advance(token)
    assert state.repeating_offsets() == (vocab.OFFSET_START, a, b)
    assert not state.sampling_mask()[a] and state.is_allowed(a)
    assert len(decode(centre_then_a_b_a).faces) == 1  # the reversed repeat adds no face
