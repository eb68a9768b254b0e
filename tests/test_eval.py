"""`specmesh eval`: model vs quadric-decimation baseline, on a random-weight tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh

from backend.cli import main
from backend.evaluation import decimate, is_valid, summarize

FIELDS = {"faces", "valid", "chamfer", "hausdorff", "noise_floor_ratio"}


@pytest.fixture(scope="module")
def inputs_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("eval_inputs")
    trimesh.creation.icosphere(subdivisions=2, radius=3.0).export(directory / "a_sphere.obj")
    box = trimesh.creation.box(extents=(1.0, 2.0, 0.5))
    box.apply_translation((10, 0, 0))
    box.export(directory / "b_box.ply")
    (directory / "notes.txt").write_text("not a mesh: ignored")
    return directory


def test_eval_inputs_dir_reports_model_and_baseline(tmp_path, tiny_model_dir, inputs_dir):
    out = tmp_path / "eval.json"
    code = main(["eval", "--inputs", str(inputs_dir), "--out", str(out), "--model", str(tiny_model_dir),
                 "--device", "cpu", "--max-faces", "10", "--ar"])
    assert code == 0
    report = json.loads(out.read_text())
    assert [c["name"] for c in report["cases"]] == ["a_sphere.obj", "b_box.ply"]
    for case in report["cases"]:
        assert FIELDS <= set(case["model"]) and FIELDS <= set(case["decimation"])
        assert {"seconds", "tokens", "scr", "stop_reason", "degenerate_dropped"} <= set(case["model"])
        assert case["noise_floor"] > 0 and case["winner"] in {"model", "decimation", "tie"}
        assert 0 < case["model"]["faces"] <= 10
        # The baseline is decimated to the model's face count (the box has only 12 to begin with).
        assert case["decimation"]["faces"] <= max(case["model"]["faces"] + 2, 12)
        assert case["decimation"]["noise_floor_ratio"] == pytest.approx(
            case["decimation"]["chamfer"] / case["noise_floor"])
    summary = report["summary"]
    assert summary["count"] == 2 and summary["wins"] + summary["losses"] + summary["ties"] == 2
    for side in ("model", "decimation"):
        assert {"validity_rate", "median_chamfer", "median_hausdorff", "median_noise_floor_ratio",
                "median_faces"} <= set(summary[side])
    assert report["options"]["mode"] == "ar"


def test_eval_procedural_held_out(tmp_path, tiny_model_dir):
    out = tmp_path / "eval.json"
    code = main(["eval", "--procedural", "2", "--seed", "3", "--out", str(out), "--model", str(tiny_model_dir),
                 "--device", "cpu", "--max-faces", "8"])
    assert code == 0
    report = json.loads(out.read_text())
    names = [c["name"] for c in report["cases"]]
    assert len(names) == 2 and names[0].startswith("test0003-") and names[1].startswith("test0004-")


def test_eval_errors(tmp_path, capsys):
    assert main(["eval", "--inputs", str(tmp_path / "none"), "--out", str(tmp_path / "e.json")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["eval", "--inputs", str(tmp_path), "--out", str(tmp_path / "e.json")]) == 2
    assert "no mesh files" in capsys.readouterr().err


def test_decimate_hits_the_target_and_keeps_small_meshes():
    sphere = trimesh.creation.icosphere(subdivisions=3)
    reduced = decimate(sphere, 100)
    assert abs(len(reduced.faces) - 100) <= 4 and is_valid(reduced)
    box = trimesh.creation.box()
    assert len(decimate(box, 100).faces) == 12


def test_validity_catches_degenerate_faces():
    good = trimesh.creation.box()
    assert is_valid(good)
    assert not is_valid(trimesh.Trimesh(good.vertices, np.zeros((0, 3), int), process=False))
    repeated = trimesh.Trimesh(good.vertices, np.vstack([good.faces, [[0, 0, 1]]]), process=False)
    assert not is_valid(repeated)
    collinear = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [2, 0, 0]], [[0, 1, 2]], process=False)
    assert not is_valid(collinear)


def test_summary_counts_invalid_outputs_as_losses():
    def side(cd, valid=True, faces=10):
        return {"faces": faces, "valid": valid, "chamfer": cd, "hausdorff": cd, "noise_floor_ratio": cd, "seconds": 1.0}

    rows = [
        {"model": side(0.1), "decimation": side(0.2), "winner": "model"},
        {"model": side(None, valid=False, faces=0), "decimation": side(0.3), "winner": "decimation"},
    ]
    summary = summarize(rows)
    assert summary["model"]["validity_rate"] == 0.5 and summary["decimation"]["validity_rate"] == 1.0
    assert summary["model"]["median_chamfer"] == pytest.approx(0.1)
    assert summary["decimation"]["median_chamfer"] == pytest.approx(0.25)
    assert (summary["wins"], summary["losses"], summary["ties"]) == (1, 1, 0)
