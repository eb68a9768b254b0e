"""The backend process seen from Blender: `<python> -P -m backend serve` on pipes, no sockets.

Plain Python (no bpy), so that tests can drive it directly. Nothing here blocks the calling
thread (Blender's main thread) for longer than it takes to queue a line:
- a writer thread writes requests from a bounded queue, so a backend that stops reading fills
  the queue, not Blender's UI;
- a reader thread turns stdout lines (each at most `max_line_bytes`) into dicts on a queue that
  Blender's timer drains;
- a watchdog thread, independent of `poll()`, kills a backend that is silent too long or that
  stops reading its input.
Failures of the process itself are reported as ordinary `error` events (codes below), so the
caller has one path for all errors.

Launching safely: the backend runs with `-P` and `PYTHONSAFEPATH=1` (the working directory is not
on `sys.path`) and with a working directory of its own (the log's folder), so a `backend/`
folder wherever Blender was started from is never imported. It runs in its own session
(`start_new_session`), so Ctrl+C in Blender's terminal does not reach it.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import signal
import subprocess
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PROTOCOL_VERSION = 4  # must equal backend.server.protocol.PROTOCOL_VERSION (a test checks)

# Error codes made on this side of the pipe (the backend's own codes are in docs/protocol.md).
BACKEND_EXITED = "backend_exited"
BACKEND_HUNG = "backend_hung"
BACKEND_UNREADABLE = "backend_unreadable"
MAX_LOG_BYTES = 5 * 1024 * 1024
# The longest event line read from the backend. Its events are small (a faces event carries one
# forward pass worth of faces); a longer line is skipped in bounded memory and reported.
MAX_EVENT_BYTES = 4 * 1024 * 1024
OUTBOX_LINES = 8          # requests queued for the writer thread (a generate line is ~270 KB)
WRITE_TIMEOUT_S = 15.0    # a write that waits longer than this means the backend stopped reading
WATCHDOG_INTERVAL_S = 0.25
_TERM, _KILL = signal.SIGTERM, getattr(signal, "SIGKILL", signal.SIGTERM)  # Windows has no SIGKILL

_live: weakref.WeakSet[BackendClient] = weakref.WeakSet()


class _Process:
    """One started backend: the Popen, its request queue and the state its threads share."""

    def __init__(self, popen: subprocess.Popen[bytes]):
        self.popen = popen
        self.outbox: queue.Queue[bytes | None] = queue.Queue(maxsize=OUTBOX_LINES)
        self.writing_since: float | None = None  # monotonic time the current write started
        self.write_failed = False
        # Monotonic time the reader saw `ready`: before it the backend is loading and does not read
        # its input yet, so a blocked write is not a hang then (the startup timeout applies).
        self.ready_at: float | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid


class BackendClient:
    """One backend process, started lazily, kept warm between generations, restarted on demand.

    `startup_timeout` bounds the wait for `ready` (importing torch + loading the model);
    `stall_timeout` bounds the silence while a generation is running (the backend sends
    progress many times a second); `write_timeout` bounds a single request write. Past any of
    them, the process is killed as hung. `cwd` is the backend's working directory (default: the
    log's folder, which belongs to the add-on).
    """

    def __init__(self, argv: Sequence[str], log_path: str | Path, *, env: dict[str, str] | None = None,
                 cwd: str | Path | None = None, startup_timeout: float = 300.0, stall_timeout: float = 60.0,
                 write_timeout: float = WRITE_TIMEOUT_S, max_line_bytes: int = MAX_EVENT_BYTES):
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self.env = env
        self.cwd = Path(cwd) if cwd is not None else self.log_path.parent
        self.startup_timeout = startup_timeout
        self.stall_timeout = stall_timeout
        self.write_timeout = write_timeout
        self.max_line_bytes = max_line_bytes
        self.ready_info: dict[str, Any] | None = None
        self._proc: _Process | None = None
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._taken: deque[dict[str, Any]] = deque()  # events `wait` took off the queue early
        self._lock = threading.RLock()
        self._last_heard = 0.0
        self._waiting_for: str | None = None  # id of the generation we expect events for
        self._stopping = False
        _live.add(self)

    # -- process lifecycle --------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        proc = self._proc
        return proc is not None and proc.popen.poll() is None

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None else None

    def start(self) -> None:
        """Start the process unless it is running (so a crashed backend is restarted here)."""
        with self._lock:
            if self.alive:
                return
            self._reap()
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self.cwd.mkdir(parents=True, exist_ok=True)
            if self.log_path.is_file() and self.log_path.stat().st_size > MAX_LOG_BYTES:
                self.log_path.replace(self.log_path.with_suffix(".old.log"))  # keep one previous log
            self.ready_info = None
            self._stopping = False
            # What is still queued came from a process that is gone (its exit, if it died while
            # idle, included): the new process's first request must not fail on it.
            self._taken.clear()
            while True:
                try:
                    self._events.get_nowait()
                except queue.Empty:
                    break
            with open(self.log_path, "ab") as log:
                log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(self.argv)}\n".encode())
                log.flush()
                try:
                    popen = subprocess.Popen(
                        self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                        env=self._environment(), cwd=str(self.cwd), close_fds=True, start_new_session=True)
                except OSError as exc:
                    raise BackendStartError(f"could not start the backend ({self.argv[0]}): {exc}") from exc
            proc = self._proc = _Process(popen)
            self._last_heard = time.monotonic()
            for target, name in ((self._read, "reader"), (self._write, "writer"), (self._watch, "watchdog")):
                threading.Thread(target=target, args=(proc,), name=f"specmesh-{name}", daemon=True).start()

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ if self.env is None else self.env)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONSAFEPATH"] = "1"  # like -P: never import from the working directory
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
            if proc.popen.poll() is None:
                for line in (b'{"op":"shutdown"}\n', None):  # None: the writer closes stdin (EOF)
                    try:
                        proc.outbox.put_nowait(line)
                    except queue.Full:  # not reading: no point in asking
                        break
                for stop in (None, _TERM, _KILL):
                    if stop is not None:
                        _signal_group(proc, stop)
                    try:
                        proc.popen.wait(timeout)
                        break
                    except subprocess.TimeoutExpired:
                        continue
            self._reap()

    def _reap(self) -> None:
        """Forget a process that has exited (its reader thread closes stdout at EOF)."""
        proc = self._proc
        if proc is not None and proc.popen.poll() is not None:
            try:
                proc.outbox.put_nowait(None)  # lets the writer thread end
            except queue.Full:
                pass
            self._proc = None
        self._waiting_for = None

    def _kill(self, proc: _Process) -> None:
        """Kill `proc` and its process group; the caller reports why."""
        self._stopping = True  # an exit we cause is no news
        _signal_group(proc, _KILL)
        proc.popen.wait()
        self._reap()

    # -- messages -----------------------------------------------------------------------------
    def send(self, request: dict[str, Any], encoded: dict[str, str] | None = None) -> None:
        """Queue one request line, starting the backend first if needed. Never waits for the
        backend: a backend that does not take the line is reported as an `error` event.
        `encoded`: more fields, given as JSON text (large arrays the caller encodes faster)."""
        line = json.dumps({"protocol": PROTOCOL_VERSION, **request}, allow_nan=False, separators=(",", ":"))
        if encoded:
            line = line[:-1] + "".join(f",{json.dumps(key)}:{text}" for key, text in encoded.items()) + "}"
        with self._lock:
            self.start()
            if request.get("op") == "generate":
                # Before writing: should the backend die on this very line, its exit is reported for this id.
                self._waiting_for = request.get("id")
                self._last_heard = time.monotonic()
            proc = self._proc
            try:
                proc.outbox.put_nowait(line.encode() + b"\n")
            except queue.Full:
                if request.get("op") == "generate":
                    self._not_reading(proc, f"{OUTBOX_LINES} requests are waiting")

    def send_line(self, line: bytes) -> bool:
        """Queue raw bytes (one or more lines); False if they could not be queued (the backend is
        gone or not reading). An exit is reported by the reader thread with the log's last words."""
        with self._lock:
            self.start()
            proc = self._proc
            try:
                proc.outbox.put_nowait(line)
            except queue.Full:
                return False
            return not proc.write_failed

    def poll(self, budget_s: float = 0.004, max_events: int = 1000) -> list[dict[str, Any]]:
        """Events received so far, within a time budget."""
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
            with self._lock:
                self._waiting_for = None

    # -- threads ------------------------------------------------------------------------------
    def _watch(self, proc: _Process) -> None:
        """The watchdog: runs until `proc` exits, whether or not anyone calls `poll()`."""
        while proc.popen.poll() is None:
            time.sleep(WATCHDOG_INTERVAL_S)
            self._check(proc)

    def _check(self, proc: _Process) -> None:
        with self._lock:
            if proc is not self._proc or proc.popen.poll() is not None:
                return
            since, ready_at = proc.writing_since, proc.ready_at
            if since is not None and ready_at is not None:
                waited = time.monotonic() - max(since, ready_at)
                if waited > self.write_timeout:
                    self._not_reading(proc, f"a request waited {waited:.0f} s to be read")
                    return
            if self._waiting_for is None:
                return
            limit = self.startup_timeout if ready_at is None else self.stall_timeout
            silent = time.monotonic() - self._last_heard
            if silent > limit:
                request_id = self._waiting_for
                self._kill(proc)
                self._events.put(_error(BACKEND_HUNG, f"The backend did not answer for {silent:.0f} s and was "
                                        f"stopped. It restarts on the next generation. Log: {self.log_path}",
                                        request_id))

    def _not_reading(self, proc: _Process | None, why: str) -> None:
        with self._lock:
            request_id = self._waiting_for
            if proc is not None and proc is self._proc:
                self._kill(proc)
            self._events.put(_error(BACKEND_HUNG, f"The backend stopped reading its input ({why}) and was "
                                    f"stopped. It restarts on the next generation. Log: {self.log_path}",
                                    request_id))

    def _write(self, proc: _Process) -> None:
        stdin = proc.popen.stdin
        try:
            while True:
                line = proc.outbox.get()
                if line is None:
                    break
                proc.writing_since = time.monotonic()
                stdin.write(line)
                stdin.flush()
                proc.writing_since = None
        except (BrokenPipeError, OSError, ValueError):
            proc.write_failed = True  # the process is gone; the reader reports its exit
        finally:
            proc.writing_since = None
            try:
                stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass

    def _read(self, proc: _Process) -> None:
        with proc.popen.stdout:
            self._read_lines(proc)
        code = proc.popen.wait()
        # An exit we caused (shutdown, watchdog, or a newer process replacing this one) is no news.
        with self._lock:
            if proc is self._proc and not self._stopping:
                self._events.put(_error(BACKEND_EXITED, _exit_message(code, self.log_path), self._waiting_for))

    def _read_lines(self, proc: _Process) -> None:
        stdout, cap = proc.popen.stdout, self.max_line_bytes
        while True:
            raw = stdout.readline(cap + 1)
            if not raw:
                return
            self._last_heard = time.monotonic()
            if len(raw) > cap and not raw.endswith(b"\n"):
                skipped = len(raw)
                while raw and not raw.endswith(b"\n"):  # skip the rest in bounded memory
                    raw = stdout.readline(cap + 1)
                    skipped += len(raw)
                    self._last_heard = time.monotonic()
                self._events.put(_error(BACKEND_UNREADABLE, f"The backend wrote a line of {skipped} bytes, more "
                                        f"than the {cap} an event may have; it was skipped", self._waiting_for))
                continue
            try:
                event = json.loads(raw)
                if not isinstance(event, dict) or not isinstance(event.get("event"), str):
                    raise ValueError("not an event object")
                if event["event"] == "ready" and proc.ready_at is None:
                    proc.ready_at = time.monotonic()
            except (ValueError, RecursionError):
                event = _error(BACKEND_UNREADABLE, f"The backend wrote a line that is not a protocol event: "
                                                   f"{raw[:120]!r}")
            self._events.put(event)


class BackendStartError(RuntimeError):
    pass


def _signal_group(proc: _Process, sig: int) -> None:
    """Signal the backend's whole process group (it leads its own session); the process only
    while it has not been reaped, so that a recycled id is never signalled."""
    if proc.popen.poll() is not None:
        return
    try:
        if os.name == "posix":
            os.killpg(proc.pid, sig)
        elif sig == _TERM:
            proc.popen.terminate()
        else:
            proc.popen.kill()
    except (ProcessLookupError, PermissionError):
        pass


def _error(code: str, message: str, request_id: str | None = None) -> dict[str, Any]:
    return {"event": "error", "id": request_id, "code": code, "message": message, "fatal": True}


def _exit_message(code: int, log_path: Path) -> str:
    how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
    if "Unknown option: -P" in _log_tail(log_path):  # Python 3.10 or older: no safe-path flag
        return (f"The backend {how}: its Python is older than 3.11, which SpecMesh needs (it does not know "
                f"the -P option). Set Backend Python to Python 3.11 or newer. Log: {log_path}")
    last = _last_log_line(log_path)
    return f"The backend {how}{f' ({last})' if last else ''}. Log: {log_path}"


def _log_tail(log_path: Path, tail_bytes: int = 4096) -> str:
    try:
        with open(log_path, "rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - tail_bytes))
            return log.read().decode(errors="replace")
    except OSError:
        return ""


def _last_log_line(log_path: Path) -> str:
    """The last line the backend wrote to stderr: usually the exception that stopped it."""
    lines = [ln.strip() for ln in _log_tail(log_path).splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("===")]
    return lines[-1][:200] if lines else ""


@atexit.register
def shutdown_all() -> None:
    """No orphans: stop every backend this Python started (Blender runs atexit on quit)."""
    for client in list(_live):
        client.shutdown()
