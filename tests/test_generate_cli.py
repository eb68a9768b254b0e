"""`specmesh generate` end to end on a random-weight tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from backend.cli import main

REPO_ROOT = Path(__file__).resolve().parents[1]
STATS_KEYS = {"tokens", "faces", "forward_passes", "seconds", "tokens_per_second", "time_to_first_face",
              "valid", "scr", "stop_reason"}
SCALE, OFFSET = 100.0, np.array([250.0, -40.0, 12.0])
# Generated vertices live on the 7-bit grid of the normalized cube [-1, 1]; the input's bounding box
# maps to [-0.95, 0.95], so outputs may overshoot it by 0.05/0.95 of the half extent, plus a cell.
OVERSHOOT = 1.0 / 0.95 + 2.0 / 128


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    return subprocess.run([sys.executable, "-m", "backend", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def input_mesh(tmp_path_factory) -> tuple[Path, trimesh.Trimesh]:
    """A small mesh far from the origin and 100x the unit scale."""
    mesh = trimesh.creation.cylinder(radius=0.5, height=1.2, sections=12)
    mesh.apply_scale(SCALE)
    mesh.apply_translation(OFFSET)
    path = tmp_path_factory.mktemp("inputs") / "cylinder.obj"
    mesh.export(path)
    return path, mesh


def _assert_in_input_frame(output: trimesh.Trimesh, reference_bounds: np.ndarray) -> None:
    centre = reference_bounds.mean(axis=0)
    half = (reference_bounds[1] - reference_bounds[0]).max() / 2
    assert np.all(np.abs(output.vertices - centre) <= half * OVERSHOOT + 1e-6)
    # ...and not collapsed into the normalized cube near the origin.
    assert np.abs(output.vertices - centre).max() > 0.05 * half


def test_generate_mesh_file_via_subprocess(tmp_path, tiny_model_dir, input_mesh):
    path, mesh = input_mesh
    out, stats = tmp_path / "out.obj", tmp_path / "stats.json"
    proc = _run_cli("generate", str(path), "-o", str(out), "--model", str(tiny_model_dir), "--device", "cpu",
                    "--max-faces", "12", "--seed", "1", "--threads", "1", "--stats-json", str(stats))
    assert proc.returncode == 0, proc.stderr
    result = trimesh.load(out, process=False)
    data = json.loads(stats.read_text())
    assert STATS_KEYS <= set(data)
    assert data["faces"] == len(result.faces) > 0
    assert data["faces"] <= 12 and data["tokens"] >= data["forward_passes"] > 0
    assert data["mode"] == "speculative" and data["model_load_seconds"] > 0
    assert "faces" in proc.stderr and "tok/s" in proc.stderr  # the human summary
    # The progress line: faces so far, elapsed, tokens/s and SCR; no bar or ETA against the budget.
    assert "tokens/s, SCR" in proc.stderr and "/12" not in proc.stderr
    assert data["threads"] == 1 and data["pieces"] >= 1 and data["boundary_edges"] >= 0
    assert data["flipped_edges"] == 0 and data["inward_patches"] == 0
    _assert_in_input_frame(result, mesh.bounds)


def test_generate_npy_point_cloud_ar_to_ply_via_subprocess(tmp_path, tiny_model_dir, input_mesh):
    _, mesh = input_mesh
    points = np.asarray(mesh.sample(600, seed=0))
    np.save(tmp_path / "cloud.npy", points)
    out = tmp_path / "out.ply"
    proc = _run_cli("generate", str(tmp_path / "cloud.npy"), "-o", str(out), "--model", str(tiny_model_dir),
                    "--device", "cpu", "--ar", "--max-faces", "10", "--stats-json", "-")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["mode"] == "ar" and data["scr"] == pytest.approx(1.0)
    assert "estimated" in proc.stderr  # (N, 3) cloud: normals were estimated, and the user is told
    result = trimesh.load(out, process=False)
    assert len(result.faces) == data["faces"] > 0
    _assert_in_input_frame(result, np.array([points.min(axis=0), points.max(axis=0)]))


@pytest.mark.parametrize("suffix", [".glb", ".ply"])
def test_output_formats(tmp_path, tiny_model_dir, input_mesh, suffix):
    path, _ = input_mesh
    out = tmp_path / f"out{suffix}"
    code = main(["generate", str(path), "-o", str(out), "--model", str(tiny_model_dir), "--device", "cpu",
                 "--max-faces", "6", "--greedy"])
    assert code == 0
    loaded = trimesh.load(out, force="mesh", process=False)
    assert len(loaded.faces) > 0


def test_same_seed_same_mesh(tmp_path, tiny_model_dir, input_mesh):
    path, _ = input_mesh
    outputs = []
    for name in ("a.obj", "b.obj"):
        assert main(["generate", str(path), "-o", str(tmp_path / name), "--model", str(tiny_model_dir),
                     "--device", "cpu", "--max-faces", "8", "--seed", "5"]) == 0
        outputs.append((tmp_path / name).read_text())
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.obj", "-o", "x.obj"], "not found"),
        (["garbage.obj", "-o", "x.obj"], "garbage.obj"),
        (["cloud.npy", "-o", "x.stl"], "output must end in"),
        (["cloud.npy", "-o", "x.obj", "--delta", "1.5"], "delta"),
        (["cloud.npy", "-o", "x.obj", "--max-faces", "0"], "--max-faces must be in [1, 20000]"),
        (["cloud.npy", "-o", "x.obj", "--threads", "0"], "--threads"),
        (["cloud.npy", "-o", "x.obj", "--tree-nodes", "0"], "--tree-nodes"),
        (["cloud.npy", "-o", "x.glb", "--quads"], "--quads needs an .obj or .ply"),
        (["cloud.npy", "-o", "x.obj", "--heads", "-1"], "--heads"),
    ],
)
def test_bad_input_gives_one_clear_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "garbage.obj").write_text("this is not a mesh\n")
    np.save(tmp_path / "cloud.npy", np.random.default_rng(0).normal(size=(50, 3)))
    code = main(["generate", *args, "--model", str(tmp_path / "no-model")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "x.obj").exists()


def test_empty_output_writes_nothing_and_exits_1(tmp_path, tiny_model_dir, input_mesh, monkeypatch, capsys):
    """A model that stops before its first face: nothing is written, and the user is told why.
    (A random model rarely does this on its own, so the stream is replaced by an immediate stop.)"""
    from backend.decoding import pipeline

    def stop_at_once(self, points, normals, options, cancel=None, **kwargs):
        yield pipeline.DoneEvent({"tokens": 1, "faces": 0, "forward_passes": 1, "seconds": 0.01,
                                  "tokens_per_second": 100.0, "time_to_first_face": None, "valid": False,
                                  "scr": 1.0, "stop_reason": "eos"})

    monkeypatch.setattr(pipeline.Generator, "stream", stop_at_once)
    path, _ = input_mesh
    out = tmp_path / "empty.obj"
    code = main(["generate", str(path), "-o", str(out), "--model", str(tiny_model_dir), "--device", "cpu"])
    assert code == 1 and not out.exists()
    assert "no faces" in capsys.readouterr().err


def _stream_of(vertices: np.ndarray, faces: np.ndarray):
    """A Generator.stream that sends the given mesh as the model's output, in two events."""
    from backend.decoding import pipeline

    def stream(self, points, normals, options, cancel=None, **kwargs):
        half = len(faces) // 2
        used = faces[:half].max() + 1
        yield pipeline.FacesEvent(vertices[:used], faces[:half])
        yield pipeline.FacesEvent(vertices[used:], faces[half:])
        yield pipeline.ProgressEvent(3 * len(faces), len(faces), len(faces), 0.5)
        yield pipeline.DoneEvent({"tokens": 3 * len(faces), "faces": len(faces), "forward_passes": len(faces),
                                  "seconds": 0.5, "tokens_per_second": 6 * len(faces), "time_to_first_face": 0.1,
                                  "valid": True, "scr": 3.0, "stop_reason": "eos", "mode": "ar"})
    return stream


@pytest.mark.parametrize("suffix", [".obj", ".ply"])
def test_quads_come_out_outward_and_read_back(tmp_path, tiny_model_dir, input_mesh, monkeypatch, suffix):
    """The CLI's clean-up and --quads on a known output: two boxes (one inside out, one with mixed
    winding, a double-sided face) become 12 outward quads and 2 pieces."""
    from backend.decoding import pipeline
    from backend.mesh.cleanup import mesh_report

    a, b = trimesh.creation.box(), trimesh.creation.box()
    b.apply_translation((3.0, 0.0, 0.0))
    faces = np.concatenate([a.faces[:, [0, 2, 1]], b.faces + 8])
    faces[12::3] = faces[12::3, [0, 2, 1]]
    faces = np.concatenate([faces, faces[:1, [0, 2, 1]]])
    monkeypatch.setattr(pipeline.Generator, "stream", _stream_of(np.concatenate([a.vertices, b.vertices]), faces))
    path, _ = input_mesh
    out, stats_path = tmp_path / f"boxes{suffix}", tmp_path / "stats.json"
    code = main(["generate", str(path), "-o", str(out), "--model", str(tiny_model_dir), "--device", "cpu",
                 "--quads", "--stats-json", str(stats_path)])
    assert code == 0
    stats = json.loads(stats_path.read_text())
    assert stats["output_quads"] == 12 and stats["output_triangles"] == 0 and stats["duplicate_faces"] == 1
    assert stats["pieces"] == 2 and stats["boundary_edges"] == 0 and stats["closed_patches"] == 2
    loaded = trimesh.load(out, process=False)
    assert len(loaded.faces) == 24 and loaded.volume == pytest.approx(2.0)
    assert all(part.volume > 0 for part in loaded.split(only_watertight=False))
    assert mesh_report(loaded.vertices, loaded.faces)["inward_patches"] == 0


def test_raw_keeps_the_models_winding(tmp_path, tiny_model_dir, input_mesh, monkeypatch):
    from backend.decoding import pipeline

    box = trimesh.creation.box()
    monkeypatch.setattr(pipeline.Generator, "stream", _stream_of(box.vertices, box.faces[:, [0, 2, 1]]))
    path, _ = input_mesh
    for flag, sign in (("--raw", -1), (None, 1)):
        out = tmp_path / f"box{flag}.obj"
        args = ["generate", str(path), "-o", str(out), "--model", str(tiny_model_dir), "--device", "cpu"]
        assert main(args + ([flag] if flag else [])) == 0
        assert np.sign(trimesh.load(out, process=False).volume) == sign


def test_heads_0_is_plain_autoregressive(tmp_path, tiny_model_dir, input_mesh):
    path, _ = input_mesh
    stats = tmp_path / "stats.json"
    assert main(["generate", str(path), "-o", str(tmp_path / "ar.obj"), "--model", str(tiny_model_dir),
                 "--device", "cpu", "--heads", "0", "--max-faces", "5", "--stats-json", str(stats)]) == 0
    data = json.loads(stats.read_text())
    assert data["mode"] == "ar" and data["heads_used"] == 0
