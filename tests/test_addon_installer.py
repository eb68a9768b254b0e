"""Install Backend's plan and runner (bpy-free), with real subprocesses standing in for pip."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from addon_fixtures import load_addon_module

installer = load_addon_module("installer")


def test_plan_creates_a_venv_then_installs_torch_and_the_bundled_backend(tmp_path: Path) -> None:
    steps = installer.install_steps("/usr/bin/python3.11", tmp_path / "venv", tmp_path / "backend_src", "cpu")
    python = str(tmp_path / "venv" / "bin" / "python")
    assert steps[0].argv == ["/usr/bin/python3.11", "-m", "venv", str(tmp_path / "venv")]
    assert steps[1].argv[:4] == [python, "-m", "pip", "install"]
    assert f"torch=={installer.TORCH_VERSION}" in steps[1].argv and installer.CPU_WHEELS in steps[1].argv
    assert steps[2].argv[-1] == str(tmp_path / "backend_src")
    assert steps[3].argv == [python, "-m", "backend", "--help"]
    auto = installer.install_steps("python3", tmp_path / "venv", tmp_path / "src", "auto")
    assert installer.CPU_WHEELS not in auto[1].argv  # CUDA users get PyPI's default build


def test_runner_logs_every_line_and_reaches_done(tmp_path: Path) -> None:
    steps = [installer.Step(f"step {i}", [sys.executable, "-c", f"for k in range(5): print('line {i}', k)"])
             for i in range(2)]
    run = installer.Installer(steps, tmp_path / "install.log")
    run.start()
    run.join(30)
    assert run.state is installer.InstallState.DONE and run.fraction == 1.0
    assert "line 1 4" in run.lines and run.message == "Backend installed"
    assert "line 0 0" in (tmp_path / "install.log").read_text()


def test_runner_stops_at_the_first_failure(tmp_path: Path) -> None:
    steps = [installer.Step("fails", [sys.executable, "-c", "import sys; print('bad'); sys.exit(3)"]),
             installer.Step("never", [sys.executable, "-c", "print('ran')"])]
    run = installer.Installer(steps, tmp_path / "install.log")
    run.start()
    run.join(30)
    assert run.state is installer.InstallState.FAILED and "exit code 3" in run.message
    assert "ran" not in run.lines and run.fraction < 1.0


def test_runner_can_be_cancelled(tmp_path: Path) -> None:
    steps = [installer.Step("slow", [sys.executable, "-c", "import time; print('go', flush=True); time.sleep(60)"])]
    run = installer.Installer(steps, tmp_path / "install.log")
    run.start()
    while "go" not in run.lines:
        run.join(0.05)
    run.cancel()
    run.join(10)
    assert run.state is installer.InstallState.FAILED and run.message == "Installation cancelled"


def test_base_python_lookup(tmp_path: Path) -> None:
    assert Path(installer.find_base_python()).is_file()
    with pytest.raises(FileNotFoundError, match="missing"):
        installer.find_base_python(str(tmp_path / "missing"))
