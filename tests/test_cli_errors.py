"""Every `specmesh` failure is one line on stderr and exit status 2, outputs are checked before any
work starts, and a failed write never costs the user the file that was there (docs/reliability.md).
Plus property-based tests of the input readers."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import trimesh
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from backend.cli import main
from backend.inputs import read_input

REPO_ROOT = Path(__file__).resolve().parents[1]


def figure(text: str) -> None:
    """One measured figure, printed past pytest's capture (see docs/reliability.md)."""
    sys.__stdout__.write(f"\n[reliability] {text}\n")
    sys.__stdout__.flush()


def _one_line_error(capsys, code: int, *needles: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    mesh = trimesh.creation.icosphere(subdivisions=1)
    mesh.export(tmp_path / "ball.obj")
    np.save(tmp_path / "cloud.npy", np.random.default_rng(0).normal(size=(200, 3)))
    return tmp_path


# -- outputs are checked before the input is read or the model loaded ---------------------------

@pytest.mark.parametrize(("output", "stats", "needle"), [
    ("outdir.obj", None, "is a directory"),              # -o names a directory
    ("afile/out.obj", None, "is a file, not a directory"),  # -o under a file
    ("deep/afile/x/out.obj", None, "is a file, not a directory"),
    ("ok.obj", "outdir.obj", "--stats-json"),             # --stats-json names a directory
    ("ok.obj", "afile/s.json", "is a file, not a directory"),
])
def test_unwritable_outputs_are_refused_before_any_work(inputs: Path, capsys, monkeypatch, output, stats, needle) -> None:
    monkeypatch.chdir(inputs)
    (inputs / "outdir.obj").mkdir()
    (inputs / "afile").write_text("")
    (inputs / "deep").mkdir()
    (inputs / "deep" / "afile").write_text("")
    argv = ["generate", "ball.obj", "-o", output, "--model", str(inputs / "no-model")]
    if stats:
        argv += ["--stats-json", stats]
    started = time.perf_counter()
    _one_line_error(capsys, main(argv), needle)
    assert time.perf_counter() - started < 5  # the (missing) model was never looked at
    assert not (inputs / "ok.obj").exists()


@pytest.mark.parametrize("argv", [["generate"], ["generate", "a.obj", "-o", "b.obj", "--seed", "abc"], [],
                                  ["fly"], ["generate", "a.obj", "-o", "b.obj", "--device", "tpu"]])
def test_usage_errors_are_one_line_too(capsys, argv) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    _one_line_error(capsys, info.value.code, "error:", "--help")


# -- bad inputs ------------------------------------------------------------------------------

def _npy(path: Path, array: np.ndarray) -> str:
    np.save(path, array)
    return str(path)


@pytest.mark.parametrize(("make", "needle"), [
    (lambda d: (d / "empty.npy").write_bytes(b"") or str(d / "empty.npy"), "not a plain numeric .npy"),
    (lambda d: _npy(d / "none.npy", np.zeros((0, 3))), "at least 3 points"),
    (lambda d: _npy(d / "huge.npy", np.random.default_rng(0).normal(size=(100, 3)) * 1e160), "beyond"),
    (lambda d: _npy(d / "complex.npy", np.ones((100, 3), np.complex128)), "complex"),
    (lambda d: _npy(d / "strings.npy", np.full((100, 3), "a")), "real numbers"),
    (lambda d: _npy(d / "cube.npy", np.zeros((4, 4, 3))), "shape"),
    (lambda d: _npy(d / "same.npy", np.ones((100, 3))), "all the same point"),
    (lambda d: _npy(d / "nan.npy", np.full((100, 3), np.nan)), "NaN"),
])
def test_bad_point_clouds_give_one_line(inputs: Path, capsys, make, needle) -> None:
    path = make(inputs)
    _one_line_error(capsys, main(["generate", path, "-o", str(inputs / "o.obj"), "--model", str(inputs / "nm")]),
                    needle)


def test_archives_are_refused_unopened(inputs: Path, capsys) -> None:
    with zipfile.ZipFile(inputs / "mesh.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("big.obj", "v 0 0 0\n" * 200_000 + "f 1 1 1\n")
    shutil.copy(inputs / "mesh.zip", inputs / "disguised.obj")  # an archive by content, not by name
    for name in ("mesh.zip", "disguised.obj"):
        code = main(["generate", str(inputs / name), "-o", str(inputs / "o.obj"), "--model", str(inputs / "nm")])
        _one_line_error(capsys, code, "archive")


@pytest.mark.parametrize(("flag", "value", "needle"), [
    ("--temperature", "inf", "--temperature must be finite"),
    ("--temperature", "nan", "--temperature must be finite"),
    ("--temperature", "0", "--temperature must be in"),
    ("--seed", str(10**20), "--seed must be in [0, 2147483647]"),
    ("--seed", "-1", "--seed must be in"),
    ("--max-faces", "100000000", "--max-faces must be in [1, 20000]"),
    ("--heads", "99", "--heads must be in [0, 8]"),
    ("--delta", "nan", "--delta must be finite"),
    ("--pts-k", "1000", "--pts-k"),
])
def test_option_bounds_are_the_protocols(inputs: Path, capsys, flag, value, needle) -> None:
    code = main(["generate", str(inputs / "ball.obj"), "-o", str(inputs / "o.obj"), "--model", str(inputs / "nm"),
                 flag, value])
    _one_line_error(capsys, code, needle)


# -- broken models ---------------------------------------------------------------------------

def test_nan_weights_say_so(inputs: Path, tiny_model_dir: Path, capsys) -> None:
    from safetensors.numpy import load_file, save_file

    broken = inputs / "nan_model"
    shutil.copytree(tiny_model_dir, broken)
    weights = load_file(str(broken / "model.safetensors"))
    name = sorted(weights)[0]
    weights[name] = np.full_like(weights[name], np.nan)
    save_file(weights, str(broken / "model.safetensors"))
    code = main(["generate", str(inputs / "ball.obj"), "-o", str(inputs / "o.obj"), "--model", str(broken),
                 "--device", "cpu"])
    _one_line_error(capsys, code, "NaN")


def test_nan_scores_are_named_not_a_grammar_error() -> None:
    import torch

    from backend.decoding.sampling import sample

    with pytest.raises(FloatingPointError, match="the model produced NaN"):
        sample(torch.full((5,), float("nan")), torch.Generator())


def test_an_absurd_config_is_refused_before_allocating(inputs: Path, tiny_model_dir: Path, capsys) -> None:
    absurd = inputs / "absurd_model"
    shutil.copytree(tiny_model_dir, absurd)
    config = json.loads((absurd / "config.json").read_text())
    # ~17 GB of fp32 weights: d_model 8192 with 64 layers.
    (absurd / "config.json").write_text(json.dumps({**config, "d_model": 8192, "n_heads": 64, "n_layers": 64,
                                                    "d_ff": 4 * 8192}))
    started = time.perf_counter()
    code = main(["generate", str(inputs / "ball.obj"), "-o", str(inputs / "o.obj"), "--model", str(absurd),
                 "--device", "cpu"])
    _one_line_error(capsys, code, "does not match the weights")
    seconds = time.perf_counter() - started
    assert seconds < 20
    figure(f"a config describing ~17 GB of weights: refused in {seconds:.2f} s, nothing allocated")
    (absurd / "config.json").write_text(json.dumps({**config, "max_seq_len": 10**12}))
    _one_line_error(capsys, main(["generate", str(inputs / "ball.obj"), "-o", str(inputs / "o.obj"),
                                  "--model", str(absurd), "--device", "cpu"]), "max_seq_len must be in")


# -- a failed write keeps the previous output ------------------------------------------------

def test_a_failed_write_leaves_the_previous_output_byte_identical(inputs: Path, tiny_model_dir: Path) -> None:
    out, stats = inputs / "out.obj", inputs / "stats.json"
    previous = b"# the user's previous result\n" + b"v 0 0 0\n" * 10 + b"f 1 2 3\n"
    out.write_bytes(previous)
    stats.write_bytes(b'{"previous": true}\n')
    limit = 256  # bytes: RLIMIT_FSIZE makes any larger write fail with EFBIG, as a full disk would

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, "-m", "backend", "generate", str(inputs / "ball.obj"), "-o", str(out),
                           "--model", str(tiny_model_dir), "--device", "cpu", "--max-faces", "30", "--seed", "1",
                           "--threads", "1", "--stats-json", str(stats)],
                          env=env, capture_output=True, text=True, timeout=300, preexec_fn=small_files)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("specmesh")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert lines == [lines[-1]] and "cannot write" in lines[-1] and "too large" in lines[-1].lower(), proc.stderr
    assert out.read_bytes() == previous and stats.read_bytes() == b'{"previous": true}\n'
    assert sorted(p.name for p in inputs.iterdir()) == ["ball.obj", "cloud.npy", "out.obj", "stats.json"]  # no temp left
    figure(f"a write failing with EFBIG (file-size limit {limit} bytes): exit 2, one line, the previous output and "
           "stats byte-identical, 0 temporary files left")


def test_writes_replace_whole_files(tmp_path: Path) -> None:
    from backend.fileio import atomic_path, atomic_write

    target = tmp_path / "sub" / "f.bin"
    atomic_write(target, b"one")
    atomic_write(target, "two")
    assert target.read_bytes() == b"two"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"two" and [p.name for p in target.parent.iterdir()] == ["f.bin"]


# -- property-based tests of the input readers ------------------------------------------------

def _check_cloud(cloud) -> None:
    assert cloud.points.dtype == np.float32 and cloud.points.shape[1] == 3 and len(cloud.points) >= 3
    assert np.isfinite(cloud.points).all() and np.isfinite(cloud.normals).all()
    assert cloud.normals.shape == cloud.points.shape


_dtypes = st.sampled_from([np.float64, np.float32, np.float16, np.int32, np.int64, np.uint8, np.complex64,
                           np.bool_])
_values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-1e6, 1e6), st.sampled_from([1e160, -1e40]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(array=hnp.arrays(_dtypes, hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=40),
                        elements=None), data=st.data())
def test_npy_reader_returns_a_clean_cloud_or_a_value_error(tmp_path: Path, array, data) -> None:
    if array.dtype.kind == "f" and array.size:  # mix in the values users' files really hold
        array = array.astype(np.float64)
        array.flat[data.draw(st.integers(0, array.size - 1))] = data.draw(_values)
    path = tmp_path / "x.npy"
    np.save(path, array)
    try:
        cloud = read_input(path, count=64, seed=0)
    except ValueError as exc:
        assert str(exc) and "\n" not in str(exc).strip()
    else:
        _check_cloud(cloud)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.one_of(st.binary(max_size=300),
                      st.lists(st.sampled_from(["v 0 0 0", "v 1 0 0", "v 0 1 0", "v 1e400 0 0", "v nan 0 1",
                                                "f 1 2 3", "f 1 2 9", "f -1 -2 -3", "vn 0 0 1", "o x", "#",
                                                "ply", "format ascii 1.0", "element vertex 3", "end_header"]),
                               max_size=30).map(lambda rows: "\n".join(rows).encode())),
       suffix=st.sampled_from([".obj", ".ply", ".npy", ".stl", ".off"]))
def test_any_bytes_in_any_format_give_a_cloud_or_a_value_error(tmp_path: Path, blob: bytes, suffix: str) -> None:
    path = tmp_path / f"in{suffix}"
    path.write_bytes(blob)
    try:
        cloud = read_input(path, count=64, seed=0)
    except ValueError as exc:
        assert str(exc)
    else:
        _check_cloud(cloud)


def test_training_outputs_are_checked_before_training(tmp_path: Path, dataset: Path, tiny_model_dir: Path,
                                                      capsys) -> None:
    (tmp_path / "afile").write_text("")
    started = time.perf_counter()
    code = main(["train", "--data", str(dataset), "--config", "tiny", "--out", str(tmp_path / "run"),
                 "--steps", "1000000", "--export", str(tmp_path / "afile" / "model")])
    _one_line_error(capsys, code, "--export", "is a file")
    code = main(["distill", "--model", str(tiny_model_dir), "--data", str(dataset), "--out", str(tmp_path / "afile")])
    _one_line_error(capsys, code, "--out", "is a file")
    assert time.perf_counter() - started < 10  # nothing was trained
