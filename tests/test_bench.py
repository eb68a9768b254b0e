"""`specmesh bench`: AR vs speculative with sweeps, plots and a results table (tiny random model)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import trimesh

from backend.benchmark import aggregate, markdown, with_speedup
from backend.cli import main

SPEED_FIELDS = {"scr", "ms_per_pass", "tokens_per_second", "speedup", "wall_speedup", "median_time_to_first_face",
                "median_chamfer", "median_hausdorff", "validity_rate", "tokens", "forward_passes", "seconds"}


@pytest.fixture(scope="module")
def inputs_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("bench_inputs")
    trimesh.creation.icosphere(subdivisions=1).export(directory / "sphere.obj")
    trimesh.creation.cone(radius=1.0, height=2.0, sections=10).export(directory / "cone.obj")
    trimesh.creation.box().export(directory / "box.obj")  # a third input: --quick must use only two
    return directory


def test_bench_quick_writes_json_plots_and_table(tmp_path, tiny_model_dir, inputs_dir):
    out = tmp_path / "bench"
    code = main(["bench", "--inputs", str(inputs_dir), "--out", str(out), "--quick", "--model", str(tiny_model_dir),
                 "--device", "cpu", "--max-faces", "3"])
    assert code == 0
    report = json.loads((out / "bench.json").read_text())
    assert len(report["inputs"]) == 2
    assert {"cpu", "torch_threads", "torch", "device", "load_average_before"} <= set(report["hardware"])
    for result in [report["ar"], report["speculative"], *report["delta"], *report["heads"], *report["draft"]]:
        assert SPEED_FIELDS <= set(result)
        assert len(result["inputs"]) == 2 and result["forward_passes"] > 0
    assert report["ar"]["scr"] == pytest.approx(1.0) and report["ar"]["speedup"] == pytest.approx(1.0)
    assert report["speculative"]["scr"] >= 1.0
    assert [r["delta"] for r in report["delta"]] == [0.1, 0.5, 0.9]
    heads = report["model_heads"]
    assert [r["heads"] for r in report["heads"]] == sorted({1, min(heads, 6)})
    assert [r["draft"] for r in report["draft"]] == ["IS", "PTS(K_s=2)", "tree(K_s=2, N=8)"]
    # Same seed, same inputs: the AR run is what every speedup is measured against.
    assert report["speculative"]["speedup"] == pytest.approx(
        report["speculative"]["tokens_per_second"] / report["ar"]["tokens_per_second"])
    for name in ("delta.png", "heads.png"):
        assert (out / name).stat().st_size > 1000
    table = (out / "results.md").read_text()
    assert "| AR |" in table and "δ sweep" in table and "Heads sweep" in table


def test_bench_ablation_rows(tmp_path, tiny_model_dir, inputs_dir):
    backbone_only = tmp_path / "backbone"
    backbone_only.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_model_dir / name, backbone_only / name)
    out = tmp_path / "bench"
    code = main(["bench", "--inputs", str(inputs_dir), "--limit", "1", "--out", str(out), "--sweeps", "none",
                 "--model", str(tiny_model_dir), "--device", "cpu", "--max-faces", "3",
                 "--ablation", f"AR={backbone_only}", "--ablation", f"CA={tiny_model_dir}"])
    assert code == 0
    report = json.loads((out / "bench.json").read_text())
    rows = {r["name"]: r for r in report["ablation"]}
    assert rows["AR"]["mode"] == "ar" and rows["CA"]["mode"] == "speculative"
    assert rows["AR"]["speedup"] == pytest.approx(1.0)
    assert "delta" not in report and not (out / "delta.png").exists()
    assert "Ablation" in (out / "results.md").read_text()


def test_bench_rejects_bad_options(tmp_path, capsys):
    assert main(["bench", "--procedural", "1", "--out", str(tmp_path), "--sweeps", "delta,speed"]) == 2
    assert "unknown sweep" in capsys.readouterr().err
    assert main(["bench", "--procedural", "1", "--out", str(tmp_path), "--ablation", "no-equals-sign"]) == 2
    assert "NAME=DIR" in capsys.readouterr().err


def test_aggregate_and_speedup_are_totals():
    records = [
        {"tokens": 100, "faces": 40, "forward_passes": 50, "seconds": 1.0, "time_to_first_face": 0.1,
         "valid": True, "chamfer": 0.1, "hausdorff": 0.2},
        {"tokens": 300, "faces": 120, "forward_passes": 100, "seconds": 3.0, "time_to_first_face": 0.3,
         "valid": False, "chamfer": None, "hausdorff": None},
    ]
    result = aggregate(records)
    assert result["scr"] == pytest.approx(400 / 150)
    assert result["ms_per_pass"] == pytest.approx(4000 / 150)
    assert result["tokens_per_second"] == pytest.approx(100.0)
    assert result["validity_rate"] == 0.5 and result["median_chamfer"] == pytest.approx(0.1)
    reference = {"tokens_per_second": 50.0, "seconds": 8.0}
    result = with_speedup(result, reference)
    assert result["speedup"] == pytest.approx(2.0) and result["wall_speedup"] == pytest.approx(2.0)


def test_markdown_handles_ar_only_reports():
    row = {"scr": 1.0, "ms_per_pass": 10.0, "tokens_per_second": 100.0, "speedup": 1.0, "wall_speedup": 1.0,
           "median_time_to_first_face": None, "median_chamfer": None, "median_hausdorff": None, "validity_rate": 0.0,
           "options": {"mode": "ar"}}
    report = {"hardware": {"cpu": "x", "torch_threads": 2, "device": "cpu", "torch": "2"}, "model": {"name": "m"},
              "model_heads": 0, "inputs": ["a"], "ar": row,
              "base_options": {"seed": 0, "max_faces": 10, "temperature": 0.5, "greedy": False, "verify": "threshold"}}
    text = markdown(report)
    assert "| AR | 1.00 | 10.0 | 100 |" in text and "n/a" in text


def test_sweeps_build_only_the_tables_asked_for(tiny_model_dir):
    """Only the chosen tables are made, and they keep the base verification (trees included)."""
    from backend.benchmark import sweep_configs
    from backend.decoding.pipeline import GenerateOptions, Generator

    generator = Generator.load(tiny_model_dir, device="cpu")
    table = sweep_configs(generator, GenerateOptions(verify="exact"), ("draft",), quick=True)
    assert set(table) == {"main", "draft"}
    assert [row["draft"] for row, _ in table["draft"]] == ["IS", "PTS(K_s=2)", "tree(K_s=2, N=8)"]
    assert all(config.options.verify == "exact" for _, config in table["draft"])
