"""The backend process seen from Blender: `<python> -m backend serve` on pipes, no sockets.

Plain Python (no bpy), so that tests can drive it directly. A reader thread turns stdout lines
into dicts on a queue; Blender's timer drains the queue. Failures of the process itself are
reported as ordinary `error` events (codes below), so the caller has one path for all errors.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import subprocess
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PROTOCOL_VERSION = 1  # must equal backend.server.protocol.PROTOCOL_VERSION (a test checks)

# Error codes made on this side of the pipe (the backend's own codes are in docs/protocol.md).
BACKEND_EXITED = "backend_exited"
BACKEND_HUNG = "backend_hung"
BACKEND_UNREADABLE = "backend_unreadable"
MAX_LOG_BYTES = 5 * 1024 * 1024

_live: weakref.WeakSet[BackendClient] = weakref.WeakSet()


class BackendClient:
    """One backend process, started lazily, kept warm between generations, restarted on demand.

    `startup_timeout` bounds the wait for `ready` (importing torch + loading the model);
    `stall_timeout` bounds the silence while a generation is running (the backend sends
    progress many times a second). Past either, the process is killed as hung.
    """

    def __init__(self, argv: Sequence[str], log_path: str | Path, *, env: dict[str, str] | None = None,
                 startup_timeout: float = 300.0, stall_timeout: float = 60.0):
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self.env = env
        self.startup_timeout = startup_timeout
        self.stall_timeout = stall_timeout
        self.ready_info: dict[str, Any] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._taken: deque[dict[str, Any]] = deque()  # events `wait` took off the queue early
        self._lock = threading.Lock()
        self._last_heard = 0.0
        self._waiting_for: str | None = None  # id of the generation we expect events for
        self._stopping = False
        _live.add(self)

    # -- process lifecycle --------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the process unless it is running (so a crashed backend is restarted here)."""
        with self._lock:
            if self.alive:
                return
            self._reap()
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            if self.log_path.is_file() and self.log_path.stat().st_size > MAX_LOG_BYTES:
                self.log_path.replace(self.log_path.with_suffix(".old.log"))  # keep one previous log
            self.ready_info = None
            self._stopping = False
            with open(self.log_path, "ab") as log:
                log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(self.argv)}\n".encode())
                log.flush()
                try:
                    self._proc = subprocess.Popen(
                        self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                        env=self._environment(), close_fds=True)
                except OSError as exc:
                    raise BackendStartError(f"could not start the backend ({self.argv[0]}): {exc}") from exc
            self._last_heard = time.monotonic()
            threading.Thread(target=self._read, args=(self._proc,), name="specmesh-reader", daemon=True).start()

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ if self.env is None else self.env)
        env["PYTHONUNBUFFERED"] = "1"
        # Blender sets these for its own interpreter; inherited, they would break another Python.
        for name in ("PYTHONHOME", "PYTHONPATH"):
            if self.env is None or name not in self.env:
                env.pop(name, None)
        return env

    def shutdown(self, timeout: float = 3.0) -> None:
        """Ask politely, then terminate, then kill: the process never outlives this call."""
        with self._lock:
            proc, self._stopping = self._proc, True
            if proc is None:
                return
            if proc.poll() is None:
                try:
                    proc.stdin.write(b'{"op":"shutdown"}\n')
                    proc.stdin.flush()
                    proc.stdin.close()  # EOF also means shutdown
                except (BrokenPipeError, OSError, ValueError):
                    pass
                for stop in (None, proc.terminate, proc.kill):
                    if stop is not None:
                        stop()
                    try:
                        proc.wait(timeout)
                        break
                    except subprocess.TimeoutExpired:
                        continue
            self._reap()

    def _reap(self) -> None:
        """Forget a process that has exited (its reader thread closes stdout at EOF)."""
        if self._proc is not None and self._proc.poll() is not None:
            try:
                self._proc.stdin.close()
            except (OSError, ValueError):
                pass
            self._proc = None
        self._waiting_for = None

    # -- messages -----------------------------------------------------------------------------
    def send(self, request: dict[str, Any]) -> None:
        """Write one request line, starting the backend first if needed."""
        line = json.dumps({"protocol": PROTOCOL_VERSION, **request}, allow_nan=False, separators=(",", ":"))
        self.start()
        if request.get("op") == "generate":
            # Before writing: should the backend die on this very line, its exit is reported for this id.
            self._waiting_for = request.get("id")
            self._last_heard = time.monotonic()
        self.send_line(line.encode() + b"\n")

    def send_line(self, line: bytes) -> bool:
        """Write raw bytes (one or more lines); False if the backend is gone, in which case the
        reader thread reports the exit with the log's last words."""
        self.start()
        try:
            self._proc.stdin.write(line)
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError, AttributeError):
            return False
        return True

    def poll(self, budget_s: float = 0.004, max_events: int = 1000) -> list[dict[str, Any]]:
        """Events received so far, within a time budget; also runs the hang watchdog."""
        events: list[dict[str, Any]] = []
        deadline = time.perf_counter() + budget_s
        while self._taken and len(events) < max_events:
            events.append(self._taken.popleft())
        while len(events) < max_events and time.perf_counter() < deadline:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                break
        for event in events:
            self._observe(event)
        self._watchdog()
        return events

    def wait(self, timeout: float) -> None:
        """Block until an event is queued or `timeout` passes (for synchronous callers)."""
        if self._taken:
            return
        try:
            self._taken.append(self._events.get(timeout=timeout))
        except queue.Empty:
            pass

    def _observe(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "ready":
            self.ready_info = event
        elif kind in ("done", "error") and event.get("id") in (None, self._waiting_for):
            self._waiting_for = None

    def _watchdog(self) -> None:
        if self._waiting_for is None or not self.alive:
            return
        limit = self.startup_timeout if self.ready_info is None else self.stall_timeout
        silent = time.monotonic() - self._last_heard
        if silent > limit:
            request_id = self._waiting_for
            self._stopping = True  # we report the hang ourselves; the exit is expected now
            self._proc.kill()
            self._proc.wait()
            self._reap()
            self._events.put(_error(BACKEND_HUNG, f"The backend did not answer for {silent:.0f} s and was "
                                    f"stopped. It restarts on the next generation. Log: {self.log_path}",
                                    request_id))

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        with proc.stdout:
            self._read_lines(proc)
        code = proc.wait()
        # An exit we caused (shutdown, watchdog, or a newer process replacing this one) is no news.
        if proc is self._proc and not self._stopping:
            self._events.put(_error(BACKEND_EXITED, _exit_message(code, self.log_path), self._waiting_for))

    def _read_lines(self, proc: subprocess.Popen[bytes]) -> None:
        for raw in proc.stdout:
            self._last_heard = time.monotonic()
            try:
                event = json.loads(raw)
                if not isinstance(event, dict) or not isinstance(event.get("event"), str):
                    raise ValueError("not an event object")
            except ValueError:
                event = _error(BACKEND_UNREADABLE, f"The backend wrote a line that is not a protocol event: "
                                                   f"{raw[:120]!r}")
            self._events.put(event)


class BackendStartError(RuntimeError):
    pass


def _error(code: str, message: str, request_id: str | None = None) -> dict[str, Any]:
    return {"event": "error", "id": request_id, "code": code, "message": message, "fatal": True}


def _exit_message(code: int, log_path: Path) -> str:
    how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
    last = _last_log_line(log_path)
    return f"The backend {how}{f' ({last})' if last else ''}. Log: {log_path}"


def _last_log_line(log_path: Path, tail_bytes: int = 4096) -> str:
    """The last line the backend wrote to stderr: usually the exception that stopped it."""
    try:
        with open(log_path, "rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - tail_bytes))
            lines = [ln.strip() for ln in log.read().decode(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [ln for ln in lines if ln and not ln.startswith("===")]
    return lines[-1][:200] if lines else ""


@atexit.register
def shutdown_all() -> None:
    """No orphans: stop every backend this Python started (Blender runs atexit on quit)."""
    for client in list(_live):
        client.shutdown()
