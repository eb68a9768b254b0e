import threading

import numpy as np
import pytest

from backend.decoding.pipeline import (STALL_TOKENS, DoneEvent, FacesEvent, GenerateOptions, Generator, MeshAssembler,
                                       ProgressEvent, resolve_model_dir)
from backend.generation import generate
from backend.mesh.normalize import Normalization
from backend.mesh.quantize import quantize_coords
from backend.tokenizer.bpt import decode
from backend.tokenizer.vocab import OFFSET_START, PATCH_START
from conftest import REPO_ROOT
from devices import CUDA

STATS = {"tokens", "faces", "forward_passes", "seconds", "tokens_per_second", "time_to_first_face", "valid",
         "scr", "stop_reason"}


@pytest.fixture(scope="module")
def generator(tiny_model_dir) -> Generator:
    return Generator.load(tiny_model_dir, device="cpu")


def sphere_cloud(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    normals = np.random.default_rng(seed).normal(size=(n, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    return normals * 0.8, normals


def drain(generator: Generator, points, normals, options):
    result = generate(generator, points, normals, options)
    return result.vertices, result.faces, result.stats


def collect(generator: Generator, points, normals, options, cancel=None):
    events = list(generator.stream(points, normals, options, cancel))
    assert isinstance(events[-1], DoneEvent)
    assert not any(isinstance(e, DoneEvent) for e in events[:-1])
    return events


def assemble(events) -> tuple[np.ndarray, np.ndarray]:
    vertices, faces = [np.zeros((0, 3))], [np.zeros((0, 3), np.int64)]
    for event in events:
        if isinstance(event, FacesEvent):
            start = sum(len(v) for v in vertices)
            assert event.faces.shape[1] == 3 and len(event.faces) > 0
            assert event.faces.max() < start + len(event.vertices)  # only vertices sent so far
            # every new vertex is used by this event's faces
            assert set(range(start, start + len(event.vertices))) <= set(event.faces.ravel().tolist())
            vertices.append(event.vertices)
            faces.append(event.faces)
    return np.concatenate(vertices), np.concatenate(faces)


@pytest.mark.parametrize("mode", ["ar", "speculative"])
def test_stream_is_consistent_with_the_token_sequence(generator, mode):
    points, normals = sphere_cloud()
    options = GenerateOptions(mode=mode, max_faces=25, seed=1, snap=False)  # the model alone: no surface
    events = collect(generator, points, normals, options)
    done = events[-1]
    stats = done.stats
    assert STATS <= set(stats)
    vertices, faces = assemble(events)
    assert stats["faces"] == len(faces) and stats["tokens"] == len(done.tokens)
    assert stats["scr"] == pytest.approx(stats["tokens"] / stats["forward_passes"])
    assert stats["mode"] == mode
    if mode == "ar":
        assert stats["forward_passes"] == stats["tokens"]
    assert stats["stop_reason"] in ("eos", "max_faces", "max_tokens", "stalled")
    if stats["stop_reason"] == "max_faces":
        assert len(faces) == 25
    assert stats["valid"] == (len(faces) > 0)
    assert stats["time_to_first_face"] is not None and stats["time_to_first_face"] <= stats["seconds"]
    faces_events = sum(isinstance(e, FacesEvent) for e in events)
    assert faces_events <= stats["forward_passes"]
    assert isinstance(events[-2], ProgressEvent) and events[-2].tokens == stats["tokens"]

    # The streamed mesh is the decoded token sequence (minus zero-area faces), in the input frame.
    normalization = Normalization.fit(points)
    streamed = quantize_coords(normalization.apply(vertices))[faces]
    decoded = decode(done.tokens)
    corners = decoded.vertices[decoded.faces]
    area = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]).any(axis=1)
    assert np.array_equal(streamed, corners[area][:len(faces)])
    assert len(np.unique(vertices, axis=0)) == len(vertices)  # vertices merged


def test_vertices_come_back_in_the_callers_frame(generator):
    points, normals = sphere_cloud(seed=2)
    options = GenerateOptions(mode="ar", greedy=True, max_faces=15)
    v1, f1, _ = drain(generator, points, normals, options)
    moved = points * 10.0 + np.array([5.0, -3.0, 100.0])
    v2, f2, _ = drain(generator, moved, normals, options)
    assert len(f1) > 0 and np.array_equal(f1, f2)
    assert np.allclose(v2, v1 * 10.0 + np.array([5.0, -3.0, 100.0]), atol=1e-9)
    # The quantization grid spans [-1, 1] after BPT's normalization of the input.
    inside = Normalization.fit(moved).apply(v2)
    assert np.abs(inside).max() <= 1.0


def test_missing_normals_are_estimated(generator):
    points, _ = sphere_cloud(seed=3)
    _, faces, stats = drain(generator, points, None, GenerateOptions(mode="ar", max_faces=5))
    assert stats["tokens"] > 0 and len(faces) == stats["faces"]


def test_cancel_stops_with_cancelled(generator):
    points, normals = sphere_cloud()
    cancel = threading.Event()
    cancel.set()
    events = collect(generator, points, normals, GenerateOptions(max_faces=1000), cancel)
    assert events[-1].stats["stop_reason"] == "cancelled"
    assert events[-1].stats["forward_passes"] == 1


def test_falls_back_to_ar_without_heads(generator):
    plain = Generator(generator.model, None, generator.config)
    points, normals = sphere_cloud()
    _, _, stats = drain(plain, points, normals, GenerateOptions(mode="speculative", max_faces=5))
    assert stats["mode"] == "ar" and stats["scr"] == 1.0
    assert plain.info["heads"] == 0 and generator.info["heads"] == generator.config.spec_heads


def test_speculative_greedy_output_equals_ar_greedy(generator):
    points, normals = sphere_cloud(seed=4)
    ar = drain(generator, points, normals, GenerateOptions(mode="ar", greedy=True, max_faces=20, snap=False))
    spec = drain(generator, points, normals, GenerateOptions(mode="speculative", greedy=True, max_faces=20,
                                                               heads=9, snap=False))  # clamped to the trained 4
    assert np.array_equal(ar[1], spec[1])
    assert np.allclose(ar[0], spec[0])


@pytest.mark.parametrize("points, normals", [
    (np.zeros((10, 2)), None),
    (np.zeros((0, 3)), None),
    (np.array([[0.0, 0.0, np.nan], [1.0, 1.0, 1.0]]), None),
    (np.random.default_rng(0).normal(size=(10, 3)), np.ones((9, 3))),
    (np.random.default_rng(0).normal(size=(10, 3)), np.full((10, 3), np.inf)),
    (np.ones((10, 3)), None),  # all points coincide
])
def test_bad_inputs_raise_value_error(generator, points, normals):
    with pytest.raises(ValueError):
        next(generator.stream(points, normals, GenerateOptions()))


@pytest.mark.parametrize("kwargs", [{"mode": "beam"}, {"delta": 2.0}, {"heads": 0}, {"draft": "beam"},
                                    {"tree_nodes": 0}, {"verify": "lossy"},
                                    {"temperature": 0.0}, {"max_faces": 0}, {"top_p": 0.0}])
def test_bad_options_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        GenerateOptions(**kwargs)


def test_model_dir_resolution(tmp_path, monkeypatch, tiny_model_dir):
    with pytest.raises(FileNotFoundError):
        Generator.load(tmp_path / "nowhere")
    monkeypatch.setenv("SPECMESH_MODEL_DIR", str(tiny_model_dir))
    assert resolve_model_dir(None) == tiny_model_dir
    monkeypatch.setenv("SPECMESH_MODEL_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="SPECMESH_MODEL_DIR"):
        resolve_model_dir(None)
    with pytest.raises(ValueError):
        Generator.load(tiny_model_dir, device="quantum")


class LoopingGenerator(Generator):
    """Stands in for a model stuck in a loop: one face (centre, A, B), then A, B, A, B... which
    only repeats that face."""

    def _decode(self, latents, options, profile=None, constraint=None):
        loop = [OFFSET_START + 5, OFFSET_START + 80]  # offsets (0,0,5) and (0,5,0) in block 0
        yield [PATCH_START, OFFSET_START, *loop]
        while True:
            yield loop


def test_a_looping_model_stops_as_stalled_without_repeated_faces(generator):
    looping = LoopingGenerator(generator.model, generator.heads, generator.config)
    events = collect(looping, *sphere_cloud(), GenerateOptions(mode="ar", max_faces=100, snap=False))
    stats = events[-1].stats
    _, faces = assemble(events)
    assert len(faces) == stats["faces"] == 1
    assert stats["stop_reason"] == "stalled"
    assert stats["tokens"] - 4 < STALL_TOKENS + 2


def test_assembler_drops_repeated_faces():
    assembler = MeshAssembler(Normalization.fit(sphere_cloud()[0]))
    face = np.array([[0, 0, 0], [0, 0, 5], [0, 5, 0]])
    event = assembler.add([face, face[[1, 2, 0]], face[[0, 2, 1]]])
    assert len(event.faces) == assembler.num_faces == 1 and assembler.duplicates == 2


@pytest.mark.parametrize("device", [CUDA])
@pytest.mark.parametrize("mode", ["ar", "speculative"])
def test_a_seed_gives_the_same_mesh_on_cuda_as_on_the_cpu(device, mode):
    """Same code, same results: the shipped model samples from a CPU random stream on every
    device, so only rounding differences between the devices could part the two meshes."""
    model_dir = REPO_ROOT / "models" / "default"
    on_cpu, on_cuda = Generator.load(model_dir, device="cpu"), Generator.load(model_dir, device=device)
    for seed in range(3):
        points, normals = sphere_cloud(2048, seed)
        options = GenerateOptions(mode=mode, max_faces=60, seed=seed)
        expected, got = generate(on_cpu, points, normals, options), generate(on_cuda, points, normals, options)
        assert len(expected.faces) > 0
        np.testing.assert_array_equal(got.faces, expected.faces)
        np.testing.assert_allclose(got.vertices, expected.vertices)


def test_progress_events_carry_faces_rate_and_scr(generator):
    """What the CLI's progress line and the add-on's panel show: faces so far, tokens/s and SCR,
    ending on the done event's own figures."""
    points, normals = sphere_cloud()
    events = collect(generator, points, normals, GenerateOptions(mode="speculative", max_faces=25, seed=1))
    progress = [e for e in events if isinstance(e, ProgressEvent)]
    done = events[-1].stats
    assert progress and [p.faces for p in progress] == sorted(p.faces for p in progress)
    last = progress[-1]
    assert (last.tokens, last.faces, last.forward_passes) == (done["tokens"], done["faces"], done["forward_passes"])
    assert last.scr == pytest.approx(done["scr"]) and last.scr >= 1.0
    assert last.tokens_per_second == pytest.approx(done["tokens_per_second"])
    assert ProgressEvent(0, 0, 0, 0.0).scr == 0.0 and ProgressEvent(0, 0, 0, 0.0).tokens_per_second == 0.0
