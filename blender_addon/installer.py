"""Install backend: make a venv and pip-install PyTorch and the bundled backend into it.

Runs the steps one after another in a background thread and keeps the log and a progress
fraction for the preferences panel to draw. No bpy here. The guarantees (docs/reliability.md):
- it always ends, in DONE or in FAILED with the reason (an exception in any step included);
- every command runs in its own process group, and cancelling ends the whole group;
- the backend is built from a temporary copy, so nothing is written into the extension folder;
- only the runtime dependencies are installed (the training extras are optional);
- the CPU build of torch is chosen when there is no NVIDIA driver (or the device is "cpu");
- a base Python outside SUPPORTED_PYTHON is refused before anything is created.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

TORCH_VERSION = "2.13.0"  # the build the backend is tested with
CPU_WHEELS = "https://download.pytorch.org/whl/cpu"  # CPU-only torch: a tenth of the CUDA download
SUPPORTED_PYTHON = ((3, 11), (3, 14))  # inclusive; 3.11 is the first with `python -P`
# pip prints roughly this many lines for a fresh torch install; it only paces the progress bar.
EXPECTED_LINES_PER_STEP = 40
CANCEL_GRACE_S = 3.0  # between SIGTERM and SIGKILL to a cancelled step's process group
# Build leftovers never copied into the staging folder.
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "dist", "*.egg-info", ".*")


@dataclass(frozen=True)
class Step:
    label: str
    argv: list[str] = field(default_factory=list)
    action: Callable[[], None] | None = None  # run in-process instead of argv
    cleanup: Path | None = None  # removed when the installation ends, however it ends


def venv_python(venv_dir: str | Path) -> Path:
    venv_dir = Path(venv_dir)
    return venv_dir / "Scripts" / "python.exe" if os.name == "nt" else venv_dir / "bin" / "python"


def find_base_python(choice: str = "") -> str:
    """The interpreter that creates the venv: the user's choice, else python3.11/python3 on PATH."""
    if choice:
        if not Path(choice).is_file():
            raise FileNotFoundError(f"Python interpreter not found: {choice}")
        return choice
    for name in ("python3.11", "python3.12", "python3.13", "python3", "python"):
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError("No Python 3.11+ found on PATH; install Python 3.11 or set 'Python for the venv'")


def has_nvidia_driver() -> bool:
    """Whether CUDA could work here (an NVIDIA driver is installed)."""
    if sys.platform == "darwin":
        return False
    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


def torch_index(device: str, cuda_present: bool | None = None) -> str | None:
    """The wheel index for torch: the CPU build unless CUDA is wanted and possible. None means
    PyPI's default (CUDA builds on Linux)."""
    if cuda_present is None:
        cuda_present = has_nvidia_driver()
    if device == "cpu" or (device == "auto" and not cuda_present):
        return CPU_WHEELS
    return None


def version_check_step(base_python: str, supported: tuple[tuple[int, int], tuple[int, int]] = SUPPORTED_PYTHON
                       ) -> Step:
    (lo_major, lo_minor), (hi_major, hi_minor) = supported
    low, high = f"{lo_major}.{lo_minor}", f"{hi_major}.{hi_minor}"
    script = ("import sys; v = sys.version_info[:2]; ok = "
              f"{supported[0]!r} <= v <= {supported[1]!r}; "
              f"print(('Python %d.%d' % v) + (' is supported' if ok else ' is not supported: SpecMesh needs "
              f"Python {low} to {high}; set Python for the venv')); sys.exit(0 if ok else 3)")
    return Step("Checking the Python version", [base_python, "-c", script])


def install_steps(base_python: str, venv_dir: str | Path, source_dir: str | Path, device: str,
                  cuda_present: bool | None = None) -> list[Step]:
    python = str(venv_python(venv_dir))
    torch = [python, "-m", "pip", "install", "--progress-bar", "off", f"torch=={TORCH_VERSION}"]
    index = torch_index(device, cuda_present)
    if index is not None:
        torch += ["--index-url", index]
    staging_root = Path(tempfile.mkdtemp(prefix="specmesh-install-"))
    staging = staging_root / "backend_src"
    return [
        version_check_step(base_python),
        Step("Creating the virtual environment", [base_python, "-m", "venv", str(venv_dir)]),
        Step("Installing PyTorch", torch),
        Step("Copying the backend source", action=lambda: copy_source(source_dir, staging), cleanup=staging_root),
        # Runtime dependencies only: the training extras are `specmesh[train]`.
        Step("Installing the SpecMesh backend", [python, "-m", "pip", "install", "--progress-bar", "off", str(staging)]),
        # -P: never import a `backend` from the working directory (which is ours anyway).
        Step("Checking the backend", [python, "-P", "-m", "backend", "--help"]),
    ]


def copy_source(source_dir: str | Path, staging: Path) -> None:
    """What pip needs to build the backend (as build_addon.py bundles it), without build leftovers:
    pip builds in the copy, so the extension folder (or checkout) is never written to."""
    source_dir = Path(source_dir)
    staging.mkdir(parents=True)
    shutil.copytree(source_dir / "backend", staging / "backend", ignore=_IGNORE)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(source_dir / name, staging / name)


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
        self._proc_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.state is InstallState.RUNNING

    def start(self) -> None:
        self.state = InstallState.RUNNING
        self._thread = threading.Thread(target=self._run, name="specmesh-install", daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        """Stop the running step's whole process group (pip's own children too)."""
        self._cancelled.set()
        with self._proc_lock:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
        if proc is not None:
            threading.Thread(target=self._kill_later, args=(proc,), daemon=True).start()

    @staticmethod
    def _kill_later(proc: subprocess.Popen) -> None:
        try:
            proc.wait(CANCEL_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(proc, getattr(signal, "SIGKILL", signal.SIGTERM), even_if_exited=True)

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        log = None
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = open(self.log_path, "w", encoding="utf-8")
            self._run_steps(log)
        except BaseException as exc:  # whatever happens, the panel must not say "installing" forever
            if log is not None:
                log.write(traceback.format_exc())
            self._end(log, InstallState.FAILED, f"Installation failed: {type(exc).__name__}: {exc}")
        finally:
            for step in self.steps:
                if step.cleanup is not None:
                    shutil.rmtree(step.cleanup, ignore_errors=True)
            if log is not None:
                log.close()

    def _run_steps(self, log) -> None:
        for index, step in enumerate(self.steps):
            if self._cancelled.is_set():
                break
            self.message = f"{step.label} ({index + 1}/{len(self.steps)})"
            if step.action is not None:
                self._say(log, f"# {step.label}")
                step.action()
                code = 0
            else:
                self._say(log, f"$ {' '.join(step.argv)}")
                code = self._run_step(step, index, log)
            if self._cancelled.is_set():
                break
            if code != 0:
                last = self.lines[-1] if self.lines else ""
                self._end(log, InstallState.FAILED, f"{step.label} failed (exit code {code}): {last[:160]}")
                return
            self.fraction = (index + 1) / len(self.steps)
        if self._cancelled.is_set():
            self._end(log, InstallState.FAILED, "Installation cancelled")
            return
        self.fraction = 1.0
        self._end(log, InstallState.DONE, "Backend installed")

    def _run_step(self, step: Step, index: int, log) -> int:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
        env["PYTHONSAFEPATH"] = "1"
        with self._proc_lock:
            if self._cancelled.is_set():
                return 1
            try:
                # Its own session: cancel signals the whole group, and Ctrl+C in Blender's terminal
                # does not reach it. The working directory is the add-on's own folder.
                self._proc = subprocess.Popen(step.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL, text=True, errors="replace", env=env,
                                              cwd=str(self.log_path.parent), start_new_session=True)
            except OSError as exc:
                self._say(log, f"cannot run {step.argv[0]}: {exc}")
                return 127
        seen = 0
        with self._proc.stdout:
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
        if log is not None:
            log.write(line + "\n")
            log.flush()

    def _end(self, log, state: InstallState, message: str) -> None:
        try:
            self._say(log, message)
        except (OSError, ValueError):
            pass
        self.message = message
        self.state = state


def _signal_group(proc: subprocess.Popen, sig: int, even_if_exited: bool = False) -> None:
    """Signal the process group `proc` leads. After it exited (`even_if_exited`) its group may
    still hold grandchildren; the group id stays reserved while any member lives."""
    if proc.poll() is not None and not even_if_exited:
        return
    try:
        if os.name == "posix":
            os.killpg(proc.pid, sig)
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError, OSError):
        pass
