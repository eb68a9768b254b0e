"""Install Backend's plan and runner (bpy-free), with real subprocesses standing in for pip."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from addon_fixtures import REPO_ROOT, load_addon_module, process_gone

installer = load_addon_module("installer")


def _run(steps, log: Path, timeout: float = 60):
    run = installer.Installer(steps, log)
    run.start()
    run.join(timeout)
    assert not run.running, run.message
    return run


def test_plan_checks_python_then_installs_torch_and_a_copy_of_the_backend(tmp_path: Path) -> None:
    steps = installer.install_steps("/usr/bin/python3.11", tmp_path / "venv", tmp_path / "backend_src", "cpu")
    python = str(tmp_path / "venv" / "bin" / "python")
    labels = [s.label for s in steps]
    assert labels[0] == "Checking the Python version" and steps[0].argv[0] == "/usr/bin/python3.11"
    assert steps[1].argv == ["/usr/bin/python3.11", "-m", "venv", str(tmp_path / "venv")]
    assert steps[2].argv[:4] == [python, "-m", "pip", "install"]
    assert f"torch=={installer.TORCH_VERSION}" in steps[2].argv and installer.CPU_WHEELS in steps[2].argv
    copy, pip = steps[3], steps[4]
    assert copy.action is not None and copy.cleanup is not None
    assert pip.argv[-1] == str(copy.cleanup / "backend_src")  # pip builds in the temporary copy
    assert steps[5].argv == [python, "-P", "-m", "backend", "--help"]
    # device auto: the CPU build unless an NVIDIA driver is present.
    auto = installer.install_steps("python3", tmp_path / "venv", tmp_path / "src", "auto", cuda_present=False)
    assert installer.CPU_WHEELS in auto[2].argv
    cuda = installer.install_steps("python3", tmp_path / "venv", tmp_path / "src", "auto", cuda_present=True)
    assert installer.CPU_WHEELS not in cuda[2].argv  # CUDA users get PyPI's default build
    for plan in (steps, auto, cuda):
        plan[3].cleanup.rmdir()


def test_runner_logs_every_line_and_reaches_done(tmp_path: Path) -> None:
    steps = [installer.Step(f"step {i}", [sys.executable, "-c", f"for k in range(5): print('line {i}', k)"])
             for i in range(2)]
    run = _run(steps, tmp_path / "install.log")
    assert run.state is installer.InstallState.DONE and run.fraction == 1.0
    assert "line 1 4" in run.lines and run.message == "Backend installed"
    assert "line 0 0" in (tmp_path / "install.log").read_text()


def test_runner_stops_at_the_first_failure_and_says_why(tmp_path: Path) -> None:
    steps = [installer.Step("fails", [sys.executable, "-c", "import sys; print('bad thing'); sys.exit(3)"]),
             installer.Step("never", [sys.executable, "-c", "print('ran')"])]
    run = _run(steps, tmp_path / "install.log")
    assert run.state is installer.InstallState.FAILED and "exit code 3" in run.message and "bad thing" in run.message
    assert "ran" not in run.lines and run.fraction < 1.0


def test_an_exception_in_any_step_ends_in_failed_with_the_reason(tmp_path: Path) -> None:
    def explode() -> None:
        raise PermissionError("the disk said no")

    staging = tmp_path / "staging"
    staging.mkdir()
    steps = [installer.Step("explodes", action=explode, cleanup=staging)]
    run = _run(steps, tmp_path / "install.log")
    assert run.state is installer.InstallState.FAILED and "the disk said no" in run.message
    assert not staging.exists()  # temporary folders go, whatever happened
    # An unwritable log folder is an exception too, before any step runs.
    (tmp_path / "file").write_text("")
    run = _run([installer.Step("never", [sys.executable, "-c", "pass"])], tmp_path / "file" / "install.log")
    assert run.state is installer.InstallState.FAILED and "Installation failed" in run.message
    # A missing program is a failed step, not a crash.
    run = _run([installer.Step("missing", [str(tmp_path / "no-such-python"), "-c", "pass"])], tmp_path / "i.log")
    assert run.state is installer.InstallState.FAILED and "exit code 127" in run.message


def test_cancel_ends_the_whole_process_group(tmp_path: Path) -> None:
    # The step starts a grandchild (as pip starts its build backend) and waits.
    script = ("import subprocess, sys, time\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
              "print('go', child.pid, flush=True)\n"
              "time.sleep(120)\n")
    run = installer.Installer([installer.Step("slow", [sys.executable, "-c", script])], tmp_path / "install.log")
    run.start()
    deadline = time.monotonic() + 30
    while not any(line.startswith("go") for line in run.lines):
        assert time.monotonic() < deadline
        run.join(0.05)
    grandchild = int(next(line for line in run.lines if line.startswith("go")).split()[1])
    step_pid = run._proc.pid
    run.cancel()
    run.join(10)
    assert run.state is installer.InstallState.FAILED and run.message == "Installation cancelled"
    deadline = time.monotonic() + 10
    while not (process_gone(grandchild) and process_gone(step_pid)):
        assert time.monotonic() < deadline, "a cancelled step left a process behind"
        time.sleep(0.05)


def test_copy_leaves_the_source_untouched(tmp_path: Path) -> None:
    before = sorted(p.name for p in REPO_ROOT.iterdir())
    staging = tmp_path / "copy"
    installer.copy_source(REPO_ROOT, staging)
    assert sorted(p.name for p in staging.iterdir()) == ["README.md", "backend", "pyproject.toml"]
    assert (staging / "backend" / "cli.py").is_file() and not list(staging.rglob("__pycache__"))
    assert sorted(p.name for p in REPO_ROOT.iterdir()) == before


def test_python_version_is_checked(tmp_path: Path) -> None:
    ok = _run([installer.version_check_step(sys.executable)], tmp_path / "a.log")
    assert ok.state is installer.InstallState.DONE
    too_new = _run([installer.version_check_step(sys.executable, ((3, 0), (3, 1)))], tmp_path / "b.log")
    assert too_new.state is installer.InstallState.FAILED
    assert "is not supported: SpecMesh needs Python 3.0 to 3.1" in too_new.message


def test_base_python_lookup(tmp_path: Path) -> None:
    assert Path(installer.find_base_python()).is_file()
    with pytest.raises(FileNotFoundError, match="missing"):
        installer.find_base_python(str(tmp_path / "missing"))
