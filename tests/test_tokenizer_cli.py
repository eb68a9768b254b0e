"""`specmesh tokenize` through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys

from pathlib import Path

import trimesh

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend", "tokenize", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)


def test_json_lines_and_bad_file(tmp_path):
    good = tmp_path / "box.obj"
    trimesh.creation.box().export(good)
    bad = tmp_path / "bad.ply"
    bad.write_text("not a mesh")
    result = run_cli(str(good), str(bad), str(tmp_path / "missing.stl"), str(good), "--json")
    assert result.returncode == 1
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [("error" in r) for r in rows] == [False, True, True, False]
    ok = rows[0]
    assert ok["faces"] == ok["quantized_faces"] == 12 and ok["vertices"] == 8
    assert ok["roundtrip_exact"] is True and abs(ok["tokens_per_face"] - ok["tokens"] / 12) < 1e-4
    assert ok["seconds"] > 0 and "no such file" in rows[2]["error"]


def test_table_output(tmp_path):
    path = tmp_path / "sphere.stl"
    trimesh.creation.icosphere(subdivisions=2).export(path)
    result = run_cli(str(path))
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()
    assert "tok/face" in header and "sphere.stl" in row and "True" in row
