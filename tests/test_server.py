"""`specmesh serve` with the real pipeline and a random tiny model: in-process for the fuzzing,
as a subprocess (through the add-on's own client) for everything about the process."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from addon_fixtures import (REPO_ROOT, client, generate_request, load_addon_module, long_model_dir,  # noqa: F401
                            process_gone, serve_argv, serve_env, wait_for)
from backend.server import Server
from backend.server import protocol as P


class Capture(io.RawIOBase):
    """The server's stdout, thread-safe enough for one writer lock (the server's)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.data += b
        return len(b)

    def events(self) -> list[dict]:
        return [json.loads(line) for line in bytes(self.data).splitlines()]


@pytest.fixture(scope="module")
def generator(tiny_model_dir):
    from backend.decoding.pipeline import Generator

    return Generator.load(tiny_model_dir, device="cpu")


def _server(generator) -> tuple[Server, Capture]:
    out = Capture()
    return Server(generator, out), out


def _wait_done(out: Capture, request_id: str, timeout: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = out.events()
        if any(e["event"] in ("done", "error") and e.get("id") == request_id for e in events):
            return events
        time.sleep(0.02)
    raise AssertionError(f"{request_id} did not finish")


def test_generate_streams_faces_then_done(generator) -> None:
    server, out = _server(generator)
    server.ready()
    assert server.handle_line(json.dumps(generate_request("g1", max_faces=25, heads=2, delta=0.3)).encode())
    events = _wait_done(out, "g1")
    assert events[0]["event"] == "ready" and events[0]["protocol"] == 4
    assert events[0]["model"]["heads"] == 4 and events[0]["limits"]["max_points"] == P.MAX_POINTS
    faces_events = [e for e in events if e["event"] == "faces"]
    done = events[-1]
    assert done["event"] == "done" and done["stats"]["stop_reason"] in ("max_faces", "eos", "max_tokens", "stalled")
    vertices = np.concatenate([np.reshape(e["vertices"], (-1, 3)) for e in faces_events])
    faces = np.concatenate([np.reshape(e["faces"], (-1, 3)) for e in faces_events])
    assert len(faces) == done["stats"]["faces"] <= 25 and faces.max() < len(vertices)
    # The pipeline maps vertices back to the caller's frame: the unit sphere's box, give or take a cell.
    assert np.abs(vertices).max() < 1.1
    assert any(e["event"] == "progress" for e in events)
    # `done` lists the faces to drop (covered by coplanar ones) and to reverse for outward winding,
    # as `specmesh generate` writes them, and the result's topology.
    from backend.commands.generate import quantization_step
    from backend.mesh.cleanup import mesh_report, outward_edits

    request = generate_request("g1")
    points, normals = np.asarray(request["points"]), np.asarray(request["normals"])
    drop, flip, report = outward_edits(vertices, faces, 0.25 * quantization_step(points), points, normals)
    assert done["drop"] == drop.tolist() and done["flip"] == flip.tolist()
    assert report["flipped_edges"] == 0 and {k: done["stats"][k] for k in report} == report
    oriented = faces.copy()
    oriented[flip] = oriented[flip][:, [0, 2, 1]]
    assert mesh_report(vertices, np.delete(oriented, drop, axis=0)) == report
    server.stop()


def test_best_of_n_sends_the_kept_mesh_once(generator) -> None:
    server, out = _server(generator)
    server.ready()
    assert server.handle_line(json.dumps(generate_request("g2", max_faces=15, mode="ar", attempts=3)).encode())
    events = _wait_done(out, "g2")
    faces_events = [e for e in events if e["event"] == "faces"]
    done = events[-1]
    assert done["event"] == "done" and done["stats"]["attempts"] == 3 and len(faces_events) <= 1
    scores = done["stats"]["attempt_chamfer"]
    assert done["stats"]["attempt_kept"] == int(np.argmin(scores))
    assert sum(len(e["faces"]) for e in faces_events) == done["stats"]["faces"]
    server.stop()


def test_busy_cancel_and_ping_while_generating(generator) -> None:
    server, out = _server(generator)
    server.handle_line(json.dumps(generate_request("long", max_faces=5000)).encode())
    server.handle_line(b'{"op":"ping","id":"p"}')
    server.handle_line(json.dumps(generate_request("second")).encode())
    server.handle_line(b'{"op":"cancel","id":"long"}')
    events = _wait_done(out, "long")
    assert {"event": "pong", "id": "p", "protocol": 4} in events
    assert any(e["event"] == "error" and e["code"] == P.BUSY and e["id"] == "second" for e in events)
    done = [e for e in events if e["event"] == "done"]
    assert done and done[0]["stats"]["stop_reason"] == "cancelled"
    # The job is cleared before `done` is written, so the next generate is accepted at once.
    server.handle_line(json.dumps(generate_request("next", max_faces=3)).encode())
    assert _wait_done(out, "next")[-1]["event"] == "done"
    server.stop()


def test_generation_failure_is_an_error_event(generator) -> None:
    class Broken:  # a bug inside the pipeline, which the real one cannot be made to have
        info = generator.info

        def stream(self, *args, **kwargs):
            raise RuntimeError("boom")
            yield

    server, out = _server(Broken())
    server.handle_line(json.dumps(generate_request("bad", max_faces=3)).encode())
    events = _wait_done(out, "bad")
    assert events[-1] == {"event": "error", "id": "bad", "code": P.GENERATION_FAILED,
                          "message": "RuntimeError: boom", "fatal": False}
    server.handle_line(b'{"op":"ping"}')  # and it still serves
    assert out.events()[-1]["event"] == "pong"
    server.stop()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.one_of(
    st.binary(min_size=1, max_size=120),
    st.text(min_size=1, max_size=120),
    st.fixed_dictionaries({"op": st.sampled_from(["generate", "ping", "cancel", "nope"])},
                          optional={"id": st.one_of(st.text(max_size=70), st.integers()),
                                    "points": st.lists(st.lists(st.floats(), max_size=4), max_size=20),
                                    "delta": st.one_of(st.floats(), st.text(max_size=3)),
                                    "heads": st.integers(-3, 12), "protocol": st.integers(0, 4)}
                          ).map(json.dumps)), min_size=1, max_size=8))
def test_fuzz_every_bad_line_gets_one_error_and_the_server_lives(generator, lines) -> None:
    server, out = _server(generator)
    lines = [line.encode() if isinstance(line, str) else line for line in lines]
    lines = [line.replace(b"\n", b" ") + b"\n" for line in lines]
    bad = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            request = P.parse_request(line)
        except P.ProtocolError:
            bad += 1
        else:
            assume(isinstance(request, (P.Ping, P.Cancel)))  # no generation or shutdown here
        assert server.handle_line(line)
    server.handle_line(b'{"op":"ping","id":"alive"}')
    events = out.events()
    assert sum(e["event"] == "error" for e in events) == bad
    assert events[-1] == {"event": "pong", "id": "alive", "protocol": 4}
    server.stop()


def test_read_lines_skips_an_overlong_line_in_bounded_memory() -> None:
    from backend.server.loop import read_lines

    stream = io.BytesIO(b"a" * 50 + b"\n" + b"b" * 1000 + b"\nok\n")
    assert list(read_lines(stream, max_bytes=100)) == [b"a" * 50 + b"\n", None, b"ok\n"]


# -- the real process -------------------------------------------------------------------------

client_module = load_addon_module("client")




def test_process_speaks_only_protocol_on_stdout(client) -> None:
    assert client.pid is None  # started lazily, on the first request
    client.send({"op": "ping", "id": "1"})
    events = wait_for(client, lambda e: e["event"] == "pong")
    assert [e["event"] for e in events] == ["ready", "pong"]
    assert events[0]["version"] and events[0]["model"]["config"]["max_seq_len"] == 3072
    assert events[0]["model"]["threads"] == 1  # batch-1 decoding of a small model on the CPU
    client.send_line(b"{oops\n" + b"x" * (P.MAX_LINE_BYTES + 10) + b"\n")
    client.send(generate_request("g", max_faces=10))
    events = wait_for(client, lambda e: e["event"] in ("done", "error") and e.get("id") == "g")
    codes = [e["code"] for e in events if e["event"] == "error"]
    assert codes == [P.INVALID_JSON, P.LINE_TOO_LONG]
    assert events[-1]["event"] == "done" and events[-1]["stats"]["faces"] <= 10
    assert client.alive


def test_process_exits_cleanly_on_eof(long_model_dir) -> None:
    proc = subprocess.Popen(serve_argv(long_model_dir) + ["--threads", "2"], env=serve_env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    request = json.dumps(generate_request("g", max_faces=20000)).encode() + b"\n"
    proc.stdin.write(request)
    proc.stdin.close()  # EOF in the middle of a generation: cancel it and leave
    out = proc.stdout.read()
    assert proc.wait(timeout=60) == 0
    events = [json.loads(line) for line in out.splitlines()]
    assert events[0]["event"] == "ready" and events[0]["model"]["threads"] == 2  # --threads overrides


def test_model_load_failure_is_reported_in_band(tmp_path) -> None:
    result = subprocess.run([sys.executable, "-m", "backend", "serve", "--model", str(tmp_path / "nothing")],
                            input=b"", capture_output=True, timeout=120)
    assert result.returncode == 1
    (event,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert event["event"] == "error" and event["code"] == P.MODEL_LOAD_FAILED and event["fatal"]
    assert "no model at" in event["message"]


# A killed, stopped, interrupted or starved backend: tests/test_reliability.py.


def test_start_failure_names_the_interpreter(tmp_path) -> None:
    c = client_module.BackendClient(["/nonexistent/python", "-m", "backend", "serve"], tmp_path / "log")
    with pytest.raises(client_module.BackendStartError, match="/nonexistent/python"):
        c.send({"op": "ping"})


def test_shutdown_all_leaves_no_process(long_model_dir, tmp_path) -> None:
    clients = [client_module.BackendClient(serve_argv(long_model_dir), tmp_path / f"{i}.log", env=serve_env())
               for i in range(2)]
    for c in clients:
        c.start()
    pids = [c.pid for c in clients]
    client_module.shutdown_all()
    assert all(process_gone(pid) for pid in pids)


def test_no_orphan_when_the_parent_exits_without_cleaning_up(long_model_dir, tmp_path) -> None:
    # The parent starts a backend and simply returns: atexit (and the stdin EOF) must end the child.
    script = (f"import sys; sys.path.insert(0, {str(REPO_ROOT / 'tests')!r})\n"
              "from addon_fixtures import load_addon_module, serve_argv, serve_env\n"
              "client = load_addon_module('client')\n"
              f"c = client.BackendClient(serve_argv(__import__('pathlib').Path({str(long_model_dir)!r})), "
              f"{str(tmp_path / 'log')!r}, env=serve_env())\n"
              "c.start(); print(c.pid, flush=True)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    pid = int(result.stdout.split()[0])
    assert process_gone(pid)
