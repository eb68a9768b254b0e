"""The server loop: the main thread reads and validates request lines, one worker thread runs the
generation so that `cancel` and `ping` are answered while it streams faces."""

from __future__ import annotations

import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from typing import IO, Any

import numpy as np

from backend import __version__
from backend.server import protocol as P

# How long shutdown waits for a cancelled generation to notice before exiting anyway.
JOIN_TIMEOUT_S = 10.0
SHUTDOWN_SIGNALS = ("SIGINT", "SIGTERM")


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: shut down like `shutdown`, but tell the client why.
    A BaseException so that no `except Exception` on the way swallows it."""


def read_lines(stream: IO[bytes], max_bytes: int = P.MAX_LINE_BYTES) -> Iterator[bytes | None]:
    """Lines from a binary stream; an over-long line is skipped in bounded memory and yields None."""
    while True:
        line = stream.readline(max_bytes + 1)
        if not line:
            return
        if len(line) > max_bytes and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = stream.readline(max_bytes + 1)
            yield None
        else:
            yield line


class Server:
    """Protocol state for one connection. `generator` is a backend.decoding.pipeline.Generator."""

    def __init__(self, generator: Any, out: IO[bytes]):
        self._generator = generator
        self._out = out
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._job: tuple[str, threading.Event] | None = None
        self._worker: threading.Thread | None = None
        self._gone = threading.Event()  # the reader of our stdout went away
        self._interrupted: str | None = None  # the signal that is shutting us down

    # -- output -------------------------------------------------------------------------------
    def emit(self, line: bytes) -> None:
        if self._gone.is_set():
            return
        with self._write_lock:
            try:
                self._out.write(line)
                self._out.flush()
            except (BrokenPipeError, OSError, ValueError):
                self._gone.set()
                self._cancel_job()

    def ready(self) -> None:
        self.emit(P.encode_event(
            "ready", protocol=P.PROTOCOL_VERSION, version=__version__, model=self._generator.info,
            limits={"max_line_bytes": P.MAX_LINE_BYTES, "min_points": P.MIN_POINTS,
                    "max_points": P.MAX_POINTS, "max_faces": P.MAX_FACES, "max_heads": P.MAX_HEADS}))

    # -- input --------------------------------------------------------------------------------
    def run(self, stream: IO[bytes]) -> None:
        """Serve until `shutdown` or end of input; always leaves no generation running."""
        try:
            for line in read_lines(stream):
                if not self.handle_line(line):
                    break
        except Interrupted as exc:
            self._interrupted = str(exc)
        finally:
            self.stop()

    def handle_line(self, line: bytes | None) -> bool:
        """Answer one request line; False means shut down."""
        if line is None:
            self.emit(P.error_event(P.LINE_TOO_LONG, f"request line longer than {P.MAX_LINE_BYTES} bytes"))
            return True
        if not line.strip():
            return True  # blank lines are keep-alives, not errors
        try:
            request = P.parse_request(line)
        except P.ProtocolError as exc:
            self.emit(P.error_event(exc.code, str(exc), exc.request_id))
            return True
        except Exception as exc:  # a validation bug must cost one request, never the server
            traceback.print_exc(file=sys.stderr)
            self.emit(P.error_event(P.INVALID_REQUEST, f"the request could not be read ({type(exc).__name__}: "
                                                       f"{str(exc)[:200]})"))
            return True
        if isinstance(request, P.Shutdown):
            return False
        if isinstance(request, P.Ping):
            self.emit(P.encode_event("pong", id=request.id, protocol=P.PROTOCOL_VERSION))
        elif isinstance(request, P.Cancel):
            self._cancel_job(request.id)
        else:
            self._start(request)
        return True

    def stop(self) -> None:
        self._cancel_job()
        if self._worker is not None:
            self._worker.join(JOIN_TIMEOUT_S)

    # -- generation ---------------------------------------------------------------------------
    def _cancel_job(self, request_id: str | None = None) -> None:
        """Cancel the running job (only if it has `request_id`, when given). Cancelling a job that
        already finished is not an error: the two messages may cross."""
        with self._state_lock:
            if self._job is not None and request_id in (None, self._job[0]):
                self._job[1].set()

    def _start(self, request: P.Generate) -> None:
        with self._state_lock:
            running = self._job[0] if self._job is not None else None
            if running is None:
                cancel = threading.Event()
                self._job = (request.id, cancel)
        if running is not None:  # emit outside the lock: emit may take it to cancel
            self.emit(P.error_event(P.BUSY, f"generation {running!r} is still running; "
                                            "cancel it or wait for its done event", request.id))
            return
        self._worker = threading.Thread(target=self._generate, args=(request, cancel),
                                        name=f"generate-{request.id}", daemon=True)
        self._worker.start()

    def _finish(self, line: bytes) -> None:
        # Clear the job before the final event so that a client reacting to `done` with a new
        # `generate` is never told the server is busy.
        with self._state_lock:
            self._job = None
        self.emit(line)

    def _generate(self, request: P.Generate, cancel: threading.Event) -> None:
        from backend.decoding.pipeline import DoneEvent, FacesEvent, ProgressEvent

        try:
            options = self._options(request.options)
            vertices: list[np.ndarray] = [np.zeros((0, 3))]
            faces: list[np.ndarray] = [np.zeros((0, 3), np.int64)]
            for event in self._generator.stream(request.points, request.normals, options, cancel,
                                                    mesh=request.mesh):
                if isinstance(event, FacesEvent):
                    vertices.append(np.asarray(event.vertices, np.float64).reshape(-1, 3))
                    faces.append(np.asarray(event.faces, np.int64).reshape(-1, 3))
                    self.emit(P.encode_event(
                        "faces", id=request.id,
                        vertices=np.round(np.asarray(event.vertices, np.float64), 6).tolist(),
                        faces=np.asarray(event.faces, np.int64).tolist()))
                elif isinstance(event, ProgressEvent):
                    self.emit(P.encode_event("progress", id=request.id, **_progress(event)))
                elif isinstance(event, DoneEvent):
                    if self._interrupted is not None and cancel.is_set():
                        # Nobody asked for this cancel: say so instead of a `cancelled` done.
                        self._finish(P.error_event(
                            P.INTERRUPTED, f"the backend received {self._interrupted} and shut down; the "
                            f"{event.stats.get('faces', 0)} faces sent so far are valid", request.id, fatal=True))
                    else:
                        edits = finish_edits(request.points, request.normals, np.concatenate(vertices),
                                             np.concatenate(faces))
                        self._finish(P.encode_event("done", id=request.id, stats={**event.stats, **edits["stats"]},
                                                    drop=edits["drop"], flip=edits["flip"]))
                    return
            self._finish(P.error_event(P.GENERATION_FAILED, "generation ended without a done event", request.id))
        except Exception as exc:  # any failure becomes an error event; the server keeps serving
            traceback.print_exc(file=sys.stderr)
            self._finish(P.error_event(P.GENERATION_FAILED, f"{type(exc).__name__}: {exc}", request.id))

    def _options(self, fields: dict[str, Any]) -> Any:
        from backend.options import GenerateOptions

        fields = dict(fields)
        heads = fields.pop("heads", None)
        if heads == 0:  # "no drafting heads" is plain autoregressive decoding
            fields["mode"] = "ar"
        elif heads is not None:
            fields["heads"] = heads
        return GenerateOptions(**fields)


def finish_edits(points: np.ndarray, normals: np.ndarray | None, vertices: np.ndarray,
                 faces: np.ndarray) -> dict[str, Any]:
    """What `specmesh generate` does to the mesh before writing it, as edits of the streamed faces
    (indices in the order they were sent): `drop` (covered by coplanar faces) and `flip` (reverse
    the winding for outward orientation), and `stats`: `mesh_report` of the result. The add-on
    applies them so that Blender and the CLI end with the same faces."""
    from backend.commands.generate import quantization_step
    from backend.mesh.cleanup import outward_edits

    drop, flip, report = outward_edits(vertices, faces, 0.25 * quantization_step(points), points, normals)
    return {"drop": drop.tolist(), "flip": flip.tolist(), "stats": report}


def _progress(event: Any) -> dict[str, Any]:
    elapsed = float(event.elapsed)
    return {"tokens": int(event.tokens), "faces": int(event.faces),
            "forward_passes": int(event.forward_passes), "elapsed": round(elapsed, 4),
            "tokens_per_second": round(event.tokens / elapsed, 2) if elapsed > 0 else 0.0,
            "scr": round(event.tokens / event.forward_passes, 3) if event.forward_passes else 0.0}


def _raise_interrupted(signum: int, _frame: Any) -> None:
    for name in SHUTDOWN_SIGNALS:  # once is enough: a second signal must not break the shutdown
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    raise Interrupted(signal.Signals(signum).name)


def serve(model_dir: str | None, device: str, stdin: IO[bytes], stdout: IO[bytes],
          threads: int | None = None) -> int:
    """Load the model once, announce `ready`, then serve requests until shutdown, EOF, SIGINT or
    SIGTERM (all of them a clean shutdown with status 0). Torch threads: `threads`, or the
    batch-1 decoding choice (`backend.commands.decoding_threads`)."""
    if threading.current_thread() is threading.main_thread():
        for name in SHUTDOWN_SIGNALS:
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), _raise_interrupted)
    try:
        return _serve(model_dir, device, stdin, stdout, threads)
    except Interrupted:  # before `ready`: nothing runs yet, nothing to report
        return 0


def _serve(model_dir: str | None, device: str, stdin: IO[bytes], stdout: IO[bytes], threads: int | None) -> int:
    from backend.commands import set_decoding_threads
    from backend.decoding.pipeline import Generator

    try:
        generator = Generator.load(model_dir, device=device)
        generator.info["threads"] = set_decoding_threads(threads, generator)
    except Exception as exc:  # report why in-band: the add-on shows this message to the user
        traceback.print_exc(file=sys.stderr)
        stdout.write(P.error_event(P.MODEL_LOAD_FAILED, f"could not load the model: {exc}", fatal=True))
        stdout.flush()
        return 1
    server = Server(generator, stdout)
    server.ready()
    server.run(stdin)
    return 0
