"""Install backend: make a venv and pip-install PyTorch and the bundled backend into it.

Runs the commands one after another in a background thread and keeps the log and a progress
fraction for the preferences panel to draw. No bpy here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections import deque
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

TORCH_VERSION = "2.13.0"  # the build the backend is tested with
CPU_WHEELS = "https://download.pytorch.org/whl/cpu"  # CPU-only torch: a tenth of the CUDA download
# pip prints roughly this many lines for a fresh torch install; it only paces the progress bar.
EXPECTED_LINES_PER_STEP = 40


@dataclass(frozen=True)
class Step:
    label: str
    argv: list[str]


def venv_python(venv_dir: str | Path) -> Path:
    venv_dir = Path(venv_dir)
    return venv_dir / "Scripts" / "python.exe" if os.name == "nt" else venv_dir / "bin" / "python"


def find_base_python(choice: str = "") -> str:
    """The interpreter that creates the venv: the user's choice, else python3.11/python3 on PATH."""
    if choice:
        if not Path(choice).is_file():
            raise FileNotFoundError(f"Python interpreter not found: {choice}")
        return choice
    for name in ("python3.11", "python3.12", "python3.10", "python3", "python"):
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError("No Python 3.10+ found on PATH; install Python 3.11 or set 'Python for the venv'")


def install_steps(base_python: str, venv_dir: str | Path, source_dir: str | Path, device: str) -> list[Step]:
    python = str(venv_python(venv_dir))
    torch = [python, "-m", "pip", "install", "--progress-bar", "off", f"torch=={TORCH_VERSION}"]
    if device == "cpu":
        torch += ["--index-url", CPU_WHEELS]
    return [
        Step("Creating the virtual environment", [base_python, "-m", "venv", str(venv_dir)]),
        Step("Installing PyTorch", torch),
        Step("Installing the SpecMesh backend",
             [python, "-m", "pip", "install", "--progress-bar", "off", str(source_dir)]),
        Step("Checking the backend", [python, "-m", "backend", "--help"]),
    ]


class InstallState(Enum):
    IDLE = "idle"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Installer:
    def __init__(self, steps: list[Step], log_path: str | Path, max_lines: int = 200):
        self.steps = steps
        self.log_path = Path(log_path)
        self.lines: deque[str] = deque(maxlen=max_lines)
        self.state = InstallState.IDLE
        self.message = ""
        self.fraction = 0.0
        self._cancelled = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.state is InstallState.RUNNING

    def start(self) -> None:
        self.state = InstallState.RUNNING
        self._thread = threading.Thread(target=self._run, name="specmesh-install", daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        self._cancelled.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "w", encoding="utf-8") as log:
            for index, step in enumerate(self.steps):
                self.message = f"{step.label} ({index + 1}/{len(self.steps)})"
                self._say(log, f"$ {' '.join(step.argv)}")
                code = self._run_step(step, index, log)
                if self._cancelled.is_set():
                    self._end(log, InstallState.FAILED, "Installation cancelled")
                    return
                if code != 0:
                    self._end(log, InstallState.FAILED, f"{step.label} failed (exit code {code}); see the log")
                    return
            self.fraction = 1.0
            self._end(log, InstallState.DONE, "Backend installed")

    def _run_step(self, step: Step, index: int, log) -> int:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
        try:
            self._proc = subprocess.Popen(step.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, text=True, errors="replace", env=env)
        except OSError as exc:
            self._say(log, str(exc))
            return 127
        seen = 0
        for line in self._proc.stdout:
            self._say(log, line.rstrip())
            seen += 1
            # Within a step, creep towards its end without reaching it: pip's length is unknown.
            within = seen / (seen + EXPECTED_LINES_PER_STEP)
            self.fraction = (index + within) / len(self.steps)
        code = self._proc.wait()
        self.fraction = (index + 1) / len(self.steps)
        return code

    def _say(self, log, line: str) -> None:
        self.lines.append(line)
        log.write(line + "\n")
        log.flush()

    def _end(self, log, state: InstallState, message: str) -> None:
        self._say(log, message)
        self.message = message
        self.state = state

