"""BPT encode/decode: exact round trip, token format and the streaming decoder."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.mesh.quantize import QuantizedMesh, compact
from backend.tokenizer import vocab
from backend.tokenizer.bpt import decode, encode, encode_mesh, face_set, normalize_and_quantize
from backend.tokenizer.incremental import IncrementalDecoder


def qmesh(vertices, faces) -> QuantizedMesh:
    return QuantizedMesh(np.asarray(vertices, np.int64).reshape(-1, 3), np.asarray(faces, np.int64).reshape(-1, 3))


def assert_round_trip(q: QuantizedMesh) -> np.ndarray:
    tokens = encode(q)
    assert tokens[-1] == vocab.EOS and (tokens[:-1] != vocab.EOS).all()
    assert ((tokens >= 0) & (tokens < vocab.BOS)).all()
    assert face_set(decode(tokens)) == face_set(compact(q.vertices, q.faces))
    return tokens


def test_vocab_constants():
    assert (vocab.OFFSET_START, vocab.PATCH_START, vocab.EOS, vocab.BOS, vocab.VOCAB_SIZE) == (512, 4608, 5120, 5121, 5122)
    abc = np.array([[127, 0, 17]])
    assert vocab.block_of(abc)[0] == 7 * 64 + 0 * 8 + 1
    assert vocab.offset_of(abc)[0] == 15 * 256 + 0 * 16 + 1
    # xyz_from_tokens undoes the [2, 0, 1] permutation: (a, b, c) = (z, x, y).
    assert vocab.xyz_from_tokens(int(vocab.block_of(abc)[0]), int(vocab.offset_of(abc)[0]) + 512) == (0, 17, 127)
    assert vocab.is_block(511) and vocab.is_offset(512) and vocab.is_patch_start(4608) and not vocab.is_patch_start(5120)


def test_single_face_tokens():
    q = qmesh([[0, 0, 0], [20, 0, 0], [0, 20, 0]], [[0, 1, 2]])
    tokens = assert_round_trip(q)
    # patch-start + offset for the centre, then two vertices, then EOS; blocks only when they change.
    assert vocab.is_patch_start(tokens[0]) and vocab.is_offset(tokens[1])
    assert len(tokens) == 2 + 2 + 2 + 1  # both fan vertices sit in a new block


def test_orientation_is_kept():
    q = qmesh([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 2, 1]])
    assert face_set(decode(encode(q))) == {((0, 0, 0), (0, 1, 0), (1, 0, 0))}


@pytest.mark.parametrize(
    "mesh",
    [
        trimesh.creation.box(),
        trimesh.creation.icosphere(subdivisions=3),
        trimesh.creation.cylinder(radius=1, height=2, sections=24),
        trimesh.creation.torus(major_radius=1, minor_radius=0.3),
        trimesh.creation.annulus(r_min=0.5, r_max=1, height=0.3),
    ],
    ids=["box", "icosphere3", "cylinder", "torus", "annulus"],
)
def test_primitives_round_trip(mesh):
    q, _ = normalize_and_quantize(mesh)
    tokens = assert_round_trip(q)
    assert np.array_equal(tokens, encode_mesh(mesh))
    assert len(tokens) / len(q.faces) < 3.2  # fans make closed meshes cheaper than 9 tokens/face


def test_dense_icosphere_is_compact():
    q, _ = normalize_and_quantize(trimesh.creation.icosphere(subdivisions=3))
    assert len(q.faces) == 1280
    assert len(encode(q)) / len(q.faces) < 2.6


def test_non_manifold_and_components():
    vertices = [[20, 20, 20], [30, 20, 20], [20, 30, 20], [20, 20, 30], [20, 10, 20], [50, 50, 50], [60, 50, 50], [50, 60, 50]]
    # three faces on one edge (0, 1), a bowtie through vertex 0, an isolated triangle, a flipped pair.
    faces = [[0, 1, 2], [1, 0, 3], [0, 1, 4], [0, 2, 3], [5, 6, 7], [3, 2, 0]]
    assert_round_trip(qmesh(vertices, faces))


def test_duplicates_and_degenerates_are_dropped():
    vertices = [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]]  # vertex 3 duplicates vertex 0
    q = qmesh(vertices, [[0, 1, 2], [3, 1, 2], [1, 2, 0], [0, 0, 1], [2, 1, 0]])
    assert len(compact(q.vertices, q.faces).faces) == 1
    assert len(decode(assert_round_trip(q)).faces) == 1


def test_encode_rejects_empty_and_out_of_range():
    with pytest.raises(ValueError, match="no non-degenerate faces"):
        encode(qmesh([[0, 0, 0], [1, 1, 1]], [[0, 1, 1]]))
    with pytest.raises(ValueError, match="0..127"):
        encode(qmesh([[0, 0, 0], [1, 1, 1], [128, 0, 0]], [[0, 1, 2]]))


def test_decode_rejects_bad_grammar_and_ignores_tail():
    with pytest.raises(ValueError, match="not allowed"):
        decode([vocab.OFFSET_START])
    tokens = encode(qmesh([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], [[0, 1, 3], [0, 3, 2]]))
    assert len(decode(tokens[:-1]).faces) == 2  # no EOS yet: complete faces still decode
    assert len(decode(tokens[:-2]).faces) == 1
    assert len(decode(np.r_[tokens, 7, 7]).faces) == 2  # everything after EOS is ignored


soup = st.integers(3, 12).flatmap(
    lambda n: st.tuples(
        st.lists(st.tuples(*[st.integers(0, 127)] * 3), min_size=n, max_size=n),
        st.lists(st.tuples(*[st.integers(0, n - 1)] * 3), min_size=1, max_size=40),
    )
)


@settings(max_examples=200, deadline=None)
@given(soup)
def test_random_soup_round_trip(data):
    vertices, faces = data
    q = qmesh(vertices, faces)
    if len(compact(q.vertices, q.faces).faces) == 0:
        with pytest.raises(ValueError):
            encode(q)
        return
    assert_round_trip(q)


@settings(max_examples=100, deadline=None)
@given(soup)
def test_incremental_agrees_with_decode(data):
    q = qmesh(*data)
    if len(compact(q.vertices, q.faces).faces) == 0:
        return
    tokens = encode(q)
    decoder = IncrementalDecoder()
    streamed = []
    for i, token in enumerate(tokens.tolist()):
        new = decoder.push(token)
        assert not new or vocab.is_offset(token)  # a face completes on its third offset token
        streamed += new
        # what has streamed so far is exactly what decode makes of the prefix
        assert len(streamed) == len(decode(tokens[: i + 1]).faces)
    assert decoder.finished and decoder.num_faces == len(streamed)
    assert all(f.shape == (3, 3) and f.dtype == np.int64 for f in streamed)
    assert face_set(qmesh(np.concatenate(streamed), np.arange(3 * len(streamed)).reshape(-1, 3))) == face_set(decode(tokens))


def test_tokens_do_not_depend_on_input_numbering():
    q, _ = normalize_and_quantize(trimesh.creation.icosphere(subdivisions=2))
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(q.vertices))
    inverse = np.argsort(perm)
    faces = inverse[q.faces][rng.permutation(len(q.faces))]
    faces = np.roll(faces, 1, axis=1)  # cyclic rotation keeps orientation
    shuffled = QuantizedMesh(q.vertices[perm], faces)
    assert np.array_equal(encode(shuffled), encode(q))
    flipped = QuantizedMesh(q.vertices, q.faces[:, ::-1])
    assert not np.array_equal(encode(flipped), encode(q))
    assert face_set(decode(encode(flipped))) == face_set(flipped)
