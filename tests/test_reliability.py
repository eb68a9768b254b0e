"""The fault and fuzz suite of docs/reliability.md: hostile working directories, signals, hangs,
starved pipes, failed writes and malformed lines, against the real processes. Each test prints
the figure it keeps true (shown with `pytest -s`, and in the summary of `pytest -rA`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from addon_fixtures import (REPO_ROOT, client, backend_children, generate_request, load_addon_module,  # noqa: F401
                            long_model_dir, process_gone, serve_argv, serve_env, wait_for)
from backend.server import protocol as P

client_module = load_addon_module("client")
installer_module = load_addon_module("installer")


def figure(text: str) -> None:
    """One measured figure, printed past pytest's capture."""
    sys.__stdout__.write(f"\n[reliability] {text}\n")
    sys.__stdout__.flush()


# -- a hostile `backend/` in the working directory --------------------------------------------

HOSTILE_MAIN = """
import json, os, pathlib, sys
pathlib.Path(os.environ["HOSTILE_MARKER"]).write_text("ran from " + os.getcwd())
print(json.dumps({"event": "ready", "protocol": 1, "hostile": True}), flush=True)
sys.stdin.read()
"""


@pytest.fixture
def hostile_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder holding a fake `backend` package that records that it ran, made the working
    directory of this test (as if Blender had been started from it)."""
    folder = tmp_path / "hostile"
    (folder / "backend").mkdir(parents=True)
    (folder / "backend" / "__init__.py").write_text("")
    (folder / "backend" / "__main__.py").write_text(HOSTILE_MAIN)
    monkeypatch.chdir(folder)
    monkeypatch.setenv("HOSTILE_MARKER", str(tmp_path / "hostile-ran"))
    return folder


def test_the_hostile_package_would_run_without_the_safe_path(hostile_dir: Path, tmp_path: Path) -> None:
    # The control: the attack is real, so the next tests can fail.
    subprocess.run([sys.executable, "-m", "backend", "serve"], input=b"", capture_output=True, timeout=60,
                   env={**os.environ, "PYTHONSAFEPATH": ""})
    assert (tmp_path / "hostile-ran").is_file()


def test_a_hostile_backend_folder_in_the_working_directory_is_never_imported(
        hostile_dir: Path, tmp_path: Path, long_model_dir: Path) -> None:
    launches = 0
    # The client's own working directory (the log's folder), and even the hostile one itself:
    # -P and PYTHONSAFEPATH keep the working directory off sys.path either way.
    for cwd in (None, hostile_dir):
        client = client_module.BackendClient(serve_argv(long_model_dir), tmp_path / "logs" / "backend.log",
                                             env=serve_env(), cwd=cwd, startup_timeout=120)
        try:
            client.send({"op": "ping", "id": "p"})
            events = wait_for(client, lambda e: e["event"] in ("pong", "error"))
            assert [e["event"] for e in events] == ["ready", "pong"] and "hostile" not in events[0]
            launches += 1
        finally:
            client.shutdown()
    # The installer's check step runs the same way.
    steps = installer_module.install_steps(sys.executable, tmp_path / "venv", REPO_ROOT, "cpu")
    steps[3].cleanup.rmdir()
    check = steps[-1]
    assert check.argv[1:] == ["-P", "-m", "backend", "--help"]
    run = installer_module.Installer([installer_module.Step(check.label, [sys.executable, *check.argv[1:]])],
                                     tmp_path / "logs" / "install.log")
    run.start()
    run.join(120)
    assert run.state is installer_module.InstallState.DONE, run.message
    assert not (tmp_path / "hostile-ran").exists()
    figure(f"hostile backend/ in the working directory: imported 0 times in {launches + 1} launches")


# -- signals ----------------------------------------------------------------------------------



def test_sigint_to_the_backend_is_a_shutdown_reported_as_such(client) -> None:
    client.send(generate_request("g", max_faces=20000))
    wait_for(client, lambda e: e["event"] == "faces")
    pid, started = client.pid, time.monotonic()
    os.kill(pid, signal.SIGINT)
    events = wait_for(client, lambda e: e["event"] in ("done", "error"), timeout=30)
    error = events[-1]
    assert error["event"] == "error" and error["code"] == "interrupted" and error["id"] == "g", error
    assert "SIGINT" in error["message"] and error["fatal"]
    assert client._proc is None or client._proc.popen.wait(10) == 0  # a clean exit, status 0
    assert process_gone(pid)
    figure(f"SIGINT to the backend: reported as 'interrupted' in {time.monotonic() - started:.2f} s, exit 0")


ADDON_SCRIPT = """
import signal, sys, threading, time
sys.path.insert(0, {tests!r})
from pathlib import Path
from addon_fixtures import generate_request, load_addon_module, serve_argv, serve_env
client_module = load_addon_module("client")
c = client_module.BackendClient(serve_argv(Path({model!r})), {log!r}, env=serve_env(), startup_timeout=120)
c.send(generate_request("g", max_faces=20000))
# Ctrl+C as a flag: the add-on's synchronous loop (operators.run_to_end) turns it into a cancel.
# A KeyboardInterrupt raised at a random point of this script could drop a polled batch of
# events, which is the script's problem, not the one under test: whether the backend survives.
interrupted = threading.Event()
signal.signal(signal.SIGINT, lambda *_: interrupted.set())
while not interrupted.is_set():
    for e in c.poll(0.05):
        if e["event"] == "faces":
            print("faces", c.pid, flush=True)
    c.wait(0.05)
c.send({{"op": "cancel", "id": "g"}})
end = None
while end is None:
    end = next((e for e in c.poll(0.05) if e["event"] in ("done", "error")), None)
    c.wait(0.05)
print("end", end["event"], end.get("stats", {{}}).get("stop_reason") or end.get("code"), flush=True)
c.send({{"op": "ping", "id": "after"}})
pong = None
while pong is None:
    pong = next((e for e in c.poll(0.05) if e["event"] in ("pong", "error")), None)
    c.wait(0.05)
print("after", pong["event"], c.pid, flush=True)
c.shutdown()
"""


def test_ctrl_c_in_the_addon_terminal_cancels_and_keeps_the_backend(long_model_dir: Path, tmp_path: Path) -> None:
    script = ADDON_SCRIPT.format(tests=str(REPO_ROOT / "tests"), model=str(long_model_dir),
                                 log=str(tmp_path / "backend.log"))
    # The "add-on" leads its own process group, as Blender does in a terminal; Ctrl+C is SIGINT to that group.
    addon = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
    guard = threading.Timer(180, os.killpg, (addon.pid, signal.SIGKILL))  # a hang fails, never blocks the suite
    guard.start()
    try:
        first = addon.stdout.readline().split()
        assert first[0] == "faces", addon.stderr.read()
        backend_pid = int(first[1])
        os.killpg(addon.pid, signal.SIGINT)
        out, err = addon.communicate(timeout=120)
    finally:
        guard.cancel()
        if addon.poll() is None:
            os.killpg(addon.pid, signal.SIGKILL)
    lines = [line.split() for line in out.splitlines() if not line.startswith("faces")]
    assert lines[0] == ["end", "done", "cancelled"], (out, err)  # the user's cancel, not a dead backend
    assert lines[1] == ["after", "pong", str(backend_pid)]  # the same warm backend still answers
    assert addon.returncode == 0 and process_gone(backend_pid)
    figure("Ctrl+C (SIGINT to the add-on's process group): the backend kept running, 1 cancel, 0 orphans")


def test_a_killed_backend_is_reported_with_its_last_words(client) -> None:
    client.send(generate_request("g", max_faces=20000))
    wait_for(client, lambda e: e["event"] == "faces")
    pid, started = client.pid, time.monotonic()
    os.kill(pid, signal.SIGKILL)
    error = wait_for(client, lambda e: e["event"] == "error", timeout=30)[-1]
    reported = time.monotonic() - started
    assert error["code"] == client_module.BACKEND_EXITED and error["id"] == "g" and "signal 9" in error["message"]
    assert process_gone(pid) and not backend_children()
    client.send({"op": "ping", "id": "again"})  # the next request starts a fresh backend
    assert wait_for(client, lambda e: e["event"] in ("pong", "error"))[-1]["event"] == "pong" and client.pid != pid
    # Killed again, now between generations (the OOM killer, say): the next generation must not
    # fail on that old news, it just gets a fresh backend.
    idle = client.pid
    os.kill(idle, signal.SIGKILL)
    while client.alive:
        time.sleep(0.02)
    client.send(generate_request("next", max_faces=3))
    end = wait_for(client, lambda e: e["event"] in ("done", "error"), timeout=60)[-1]
    assert end["event"] == "done" and end["id"] == "next", end
    assert client.pid not in (pid, idle) and process_gone(idle)
    figure(f"backend killed (SIGKILL) mid-generation: 'backend_exited' for the running id in {reported * 1000:.0f} ms, "
           "0 orphans, restarted on the next request; killed between generations: the next one succeeds")


def test_a_stopped_backend_never_blocks_the_caller_and_is_reported(client) -> None:
    client.write_timeout, client.stall_timeout = 1.0, 600.0
    client.send({"op": "ping", "id": "p"})
    wait_for(client, lambda e: e["event"] == "pong")
    pid = client.pid
    os.kill(pid, signal.SIGSTOP)  # it reads nothing more: the pipe (64 KB) fills at the first request
    slowest, started = 0.0, time.monotonic()
    for k in range(6):  # ~270 KB each, 1.6 MB in all
        t = time.perf_counter()
        client.send(generate_request(f"g{k}", max_faces=10))
        slowest = max(slowest, time.perf_counter() - t)
    error = wait_for(client, lambda e: e["event"] == "error", timeout=20)[-1]
    reported = time.monotonic() - started
    assert error["code"] == client_module.BACKEND_HUNG and "stopped reading" in error["message"], error
    assert slowest < 0.5 and process_gone(pid) and not client.alive
    figure(f"backend stopped (SIGSTOP) while 1.6 MB of requests were sent: slowest send() {slowest * 1000:.1f} ms, "
           f"reported in {reported:.1f} s (write timeout 1 s)")


def test_a_starved_backend_is_waited_for_and_a_stopped_one_is_not(client) -> None:
    client.stall_timeout = 2.5
    client.send(generate_request("g", max_faces=20000))
    wait_for(client, lambda e: e["event"] == "faces")
    pid = client.pid
    # Starved: no CPU for 1 s (under the stall timeout), then it goes on; no false alarm.
    os.kill(pid, signal.SIGSTOP)
    time.sleep(1.0)
    os.kill(pid, signal.SIGCONT)
    events = wait_for(client, lambda e: e["event"] == "progress", timeout=30)
    assert not any(e["event"] == "error" for e in events) and client.alive
    # Stopped for good: nobody calls poll(), the watchdog thread must act on its own.
    os.kill(pid, signal.SIGSTOP)
    stopped = time.monotonic()
    while not process_gone(pid):
        assert time.monotonic() - stopped < 10, "the watchdog never fired"
        time.sleep(0.05)
    killed = time.monotonic() - stopped
    error = wait_for(client, lambda e: e["event"] == "error", timeout=10)[-1]  # queued as the kill finishes
    assert error["code"] == client_module.BACKEND_HUNG and error["id"] == "g"
    figure(f"backend starved of CPU for 1 s mid-generation: no false alarm; then stopped (SIGSTOP) with nobody "
           f"polling: killed and reported by the watchdog after {killed:.2f} s (stall timeout 2.5 s)")


def test_a_python_without_safe_path_is_named(tmp_path: Path) -> None:
    old = tmp_path / "python3.10"  # what Python 3.10 says to -P
    old.write_text("#!/bin/sh\necho 'Unknown option: -P' >&2\necho 'usage: python3.10 [option] ...' >&2\n"
                   "echo \"Try 'python -h' for more information.\" >&2\nexit 2\n")
    old.chmod(0o755)
    c = client_module.BackendClient([str(old), "-P", "-m", "backend", "serve"], tmp_path / "log")
    c.send(generate_request("g"))
    error = wait_for(c, lambda e: e["event"] == "error", timeout=30)[-1]
    assert error["code"] == client_module.BACKEND_EXITED and "older than 3.11" in error["message"]


def test_a_slow_start_is_not_mistaken_for_a_backend_that_stopped_reading(tmp_path: Path) -> None:
    # Loading torch and the model can take a while, and the backend reads no request meanwhile:
    # a 270 KB request waits in a full pipe, which is no hang before `ready`.
    slow = tmp_path / "slow.py"
    slow.write_text(textwrap.dedent("""
        import json, sys, time
        time.sleep(2.5)
        print(json.dumps({"event": "ready", "protocol": 1}), flush=True)
        request = json.loads(sys.stdin.readline())
        print(json.dumps({"event": "done", "id": request["id"], "stats": {}}), flush=True)
        sys.stdin.read()
    """))
    c = client_module.BackendClient([sys.executable, str(slow)], tmp_path / "log", write_timeout=1.0)
    try:
        request = generate_request("g")
        request["points"] = request["points"] * 8  # ~270 KB, as the add-on sends: more than a pipe holds
        c.send(request)
        events = wait_for(c, lambda e: e["event"] in ("done", "error"), timeout=30)
    finally:
        c.shutdown()
    assert [e["event"] for e in events] == ["ready", "done"], events


def test_an_endless_line_from_the_backend_is_read_in_bounded_memory(tmp_path: Path) -> None:
    fake = tmp_path / "fake.py"
    fake.write_text(textwrap.dedent("""
        import sys
        out = sys.stdout.buffer
        out.write(b'{"event":"ready","protocol":1}\\n')
        chunk = b"x" * (1 << 20)
        for _ in range(64):
            out.write(chunk)
        out.write(b'\\n{"event":"pong","id":"p","protocol":1}\\n')
        out.flush()
        sys.stdin.read()
    """))
    c = client_module.BackendClient([sys.executable, str(fake)], tmp_path / "log", max_line_bytes=1 << 20)
    try:
        c.start()
        events = wait_for(c, lambda e: e["event"] == "pong", timeout=30)
    finally:
        c.shutdown()
    kinds = [(e["event"], e.get("code")) for e in events]
    assert kinds == [("ready", None), ("error", client_module.BACKEND_UNREADABLE), ("pong", None)]
    assert "67108865 bytes" in events[1]["message"]
    figure("a 64 MiB line from the backend: skipped with 1 error, read in 1 MiB pieces, the next event delivered")


def test_serve_and_generate_need_only_the_runtime_dependencies(long_model_dir: Path, tmp_path: Path) -> None:
    import tomllib

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    training_only = [req.split(">")[0].split("=")[0].replace("-", "_")
                     for req in project["optional-dependencies"]["train"]]
    # As if the training extras were not installed (None in sys.modules: `import` fails, find_spec says absent).
    code = ("import sys\n"
            f"sys.modules.update(dict.fromkeys({training_only!r}))\n"
            "from backend.cli import main\n"
            f"sys.exit(main(['generate', {str(REPO_ROOT / 'examples' / 'chair.obj')!r}, '-o', "
            f"{str(tmp_path / 'out.obj')!r}, '--model', {str(long_model_dir)!r}, '--max-faces', '5', '--device', 'cpu']))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env=serve_env(), cwd=tmp_path)
    assert result.returncode in (0, 1), result.stderr  # 1: the random model made no face, which is fine here
    assert "needs the package" not in result.stderr


# -- protocol fuzzing against the real process ------------------------------------------------

def _malformed_lines(count: int, seed: int = 0) -> list[bytes]:
    """`count` request lines that are each wrong in some way (bytes, JSON, types, ranges, shapes,
    sizes), made from a valid request by seeded random damage."""
    import random

    rng = random.Random(seed)
    points = [[rng.uniform(-1, 1) for _ in range(3)] for _ in range(16)]
    valid = {"op": "generate", "id": "g", "points": points, "normals": points, "max_faces": 5,
             "mesh": {"vertices": points, "faces": [[0, 1, 2], [1, 2, 3]]}}
    bad_values = ["NaN", "Infinity", "-Infinity", "1e400", "-1", str(10**30), '"x"', "[]", "{}", "null", "true",
                  "[[1,2]]", '[["a","b","c"]]', "[[true,false,true]]", "[" * 5000 + "]" * 5000, '"' + "i" * 70 + '"',
                  "[[1,2,3]]", "3.5", '"\\ud800"']
    fields = ["op", "id", "points", "normals", "delta", "heads", "max_faces", "seed", "mode", "verify", "temperature",
              "top_k", "top_p", "greedy", "protocol", "mesh", "snap", "bogus"]
    tri = '[[0, 1, 2]]'
    bad_values += ['{"vertices": %s, "faces": %s}' % (json.dumps(points), faces) for faces in (
        "[[0, 1, 99]]", "[[0, 1, -1]]", f"[[0, 1, {10**30}]]", f"[[0, 1, {-10**30}]]", '[[0, 1, "2"]]', "[[0, 1]]",
        "[]", "[[0.5, 1, 2]]", "[[true, 1, 2]]")]
    bad_values += ['{"vertices": [[0, 0]], "faces": %s}' % tri, '{"vertices": [], "faces": %s}' % tri,
                   '{"faces": %s}' % tri, '{"vertices": [[0, 0, 1e400]], "faces": %s}' % tri]
    text = json.dumps(valid)
    lines: list[bytes] = []
    while len(lines) < count:
        kind = rng.randrange(8)
        if kind in (4, 7) and rng.random() < 0.9:  # big lines: a few of them are enough
            kind = rng.randrange(4)
        if kind == 0:  # random bytes
            line = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        elif kind == 1:  # cut short
            line = text[:rng.randrange(1, len(text) - 1)].encode()
        elif kind == 2:  # one field set to a bad value
            name, value = rng.choice(fields), rng.choice(bad_values)
            body = json.dumps({k: v for k, v in valid.items() if k != name})
            line = (body[:-1] + f', "{name}": {value}}}').encode()
        elif kind == 3:  # a byte flipped somewhere
            raw = bytearray(text.encode())
            raw[rng.randrange(len(raw))] = rng.randrange(256)
            line = bytes(raw)
        elif kind == 4:  # wrong shapes and sizes
            rows = rng.choice([points[:rng.randrange(0, 16)], [p[:2] for p in points], [p + [0] for p in points],
                               [[0.0, 0.0, 0.0]] * 16, [[0, 0, 0]] * (P.MAX_POINTS + 1)])
            line = json.dumps({**valid, rng.choice(["points", "normals"]): rows}).encode()
        elif kind == 5:  # not an object, or not a request
            line = rng.choice([b"[]", b"42", b'"generate"', b'{"op": 3}', b'{"op": "fly"}', b'{"id": "x"}',
                               b'{"op": "cancel"}', b'{"op": "ping", "id": ""}', b"[" * 100000])
        elif kind == 6:  # invalid UTF-8 inside a string
            line = text.replace('"g"', '"\xff\xfe"').encode("latin-1")
        else:  # a huge number of tiny rows (refused before parsing)
            rows = P._MAX_BRACKETS + 1000  # just past what a request may hold
            line = b'{"op":"generate","id":"t","points":[' + b"[0,0,0]," * rows + b'[0,0,0]],"normals":[]}'
        line = line.replace(b"\n", b" ").replace(b"\r", b" ")
        if not line.strip():
            continue
        try:
            P.parse_request(line)
        except P.ProtocolError:
            lines.append(line + b"\n")
    return lines


def test_fuzz_a_thousand_malformed_lines_never_kill_the_server(long_model_dir: Path) -> None:
    import psutil

    lines = _malformed_lines(1200)
    lines.append(b"x" * (P.MAX_LINE_BYTES + 100) + b"\n")  # one over-long line
    proc = subprocess.Popen(serve_argv(long_model_dir), env=serve_env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    guard = threading.Timer(180, proc.kill)  # a hung server fails the test instead of blocking the suite
    guard.start()
    try:
        assert json.loads(proc.stdout.readline())["event"] == "ready"
        rss_before = psutil.Process(proc.pid).memory_info().rss

        def write() -> None:
            for line in lines:
                proc.stdin.write(line)
            proc.stdin.write(b'{"op":"ping","id":"end"}\n')
            proc.stdin.flush()

        started = time.monotonic()
        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        errors, codes = 0, {}
        while True:
            event = json.loads(proc.stdout.readline())
            if event["event"] == "pong":
                break
            assert event["event"] == "error" and not event["fatal"], event
            errors += 1
            codes[event["code"]] = codes.get(event["code"], 0) + 1
        seconds = time.monotonic() - started
        rss_after = psutil.Process(proc.pid).memory_info().rss
        writer.join(10)
        assert errors == len(lines) and proc.poll() is None  # one error per line, and it lives
        proc.stdin.write(b'{"op":"shutdown"}\n')
        proc.stdin.flush()
        assert proc.wait(30) == 0
    finally:
        guard.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            try:
                pipe.close()
            except OSError:  # stdin: the server may be gone with bytes still buffered
                pass
    figure(f"{len(lines)} malformed protocol lines: {errors} error events, 0 server deaths, {seconds:.1f} s, "
           f"server memory {rss_before / 2**20:.0f} -> {rss_after / 2**20:.0f} MiB; codes {dict(sorted(codes.items()))}")
