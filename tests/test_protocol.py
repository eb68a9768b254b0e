"""The request validator of the line protocol, on its own (no model, no threads)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.server import protocol as P


def _cloud(n: int = 32) -> tuple[list, list]:
    rng = np.random.default_rng(0)
    points = rng.normal(size=(n, 3))
    normals = points / np.linalg.norm(points, axis=1, keepdims=True)
    return points.tolist(), normals.tolist()


def _generate(**overrides) -> str:
    points, normals = _cloud()
    message = {"op": "generate", "id": "g1", "points": points, "normals": normals, **overrides}
    return json.dumps({k: v for k, v in message.items() if v is not None})


def _code(line: str | bytes) -> str:
    with pytest.raises(P.ProtocolError) as info:
        P.parse_request(line)
    return info.value.code


def test_valid_requests_parse() -> None:
    assert P.parse_request('{"op": "ping", "id": "a"}') == P.Ping("a")
    assert P.parse_request('{"op": "ping", "protocol": 4}') == P.Ping(None)
    assert P.parse_request('{"op": "cancel", "id": "g1"}') == P.Cancel("g1")
    assert P.parse_request('{"op": "shutdown"}') == P.Shutdown()
    request = P.parse_request(_generate(delta=0.7, heads=2, max_faces=100, seed=3, mode="ar", greedy=True,
                                         verify="exact"))
    assert isinstance(request, P.Generate) and request.id == "g1"
    assert request.points.shape == (32, 3) and request.points.dtype == np.float32
    assert request.options == {"delta": 0.7, "heads": 2, "max_faces": 100, "seed": 3, "mode": "ar", "greedy": True,
                               "verify": "exact"}


@pytest.mark.parametrize("line, code", [
    ("not json", P.INVALID_JSON),
    (b"\xff\xfe", P.INVALID_JSON),
    ("[1, 2]", P.INVALID_REQUEST),
    ('{"id": "x"}', P.INVALID_REQUEST),
    ('{"op": "explode"}', P.UNKNOWN_OP),
    ('{"op": "ping", "protocol": 3}', P.UNSUPPORTED_PROTOCOL),
    ('{"op": "ping", "protocol": true}', P.UNSUPPORTED_PROTOCOL),
    ('{"op": "ping", "colour": "red"}', P.INVALID_REQUEST),
    ('{"op": "cancel"}', P.INVALID_FIELD),
    ('{"op": "cancel", "id": ""}', P.INVALID_FIELD),
    ('{"op": "ping", "id": 5}', P.INVALID_FIELD),
    ('{"op": "generate", "id": "g", "points": NaN}', P.NOT_FINITE),
    ("[" * 100000 + "]" * 100000, P.INVALID_JSON),
])
def test_bad_lines_have_codes(line: str | bytes, code: str) -> None:
    assert _code(line) == code


def test_generate_field_errors() -> None:
    points, normals = _cloud()
    assert _code(_generate(points="abc")) == P.INVALID_SHAPE
    assert _code(_generate(points=points[:5], normals=normals[:5])) == P.INVALID_SHAPE
    assert _code(_generate(normals=normals[:-1])) == P.INVALID_SHAPE
    assert _code(_generate(points=[p[:2] for p in points])) == P.INVALID_SHAPE
    assert _code(_generate(points=[[str(c) for c in p] for p in points])) == P.INVALID_SHAPE
    assert _code(_generate(points=[[True, 0, 0]] + points[1:])) == P.INVALID_SHAPE
    assert _code(_generate(points=[[1e300 * 10, 0, 0]] + points[1:])) == P.NOT_FINITE
    assert _code(_generate(points=[[10**400, 0, 0]] + points[1:])) == P.NOT_FINITE
    assert _code(_generate(points=[[1.0, 2.0, 3.0]] * 32)) == P.INVALID_FIELD
    assert _code(_generate(points=[[0.0, 0.0, 0.0]] * (P.MAX_POINTS + 1))) == P.TOO_LARGE
    assert _code(_generate(delta=1.5)) == P.INVALID_FIELD
    assert _code(_generate(delta="high")) == P.INVALID_FIELD
    assert _code(_generate(heads=2.5)) == P.INVALID_FIELD
    assert _code(_generate(heads=True)) == P.INVALID_FIELD
    assert _code(_generate(max_faces=0)) == P.INVALID_FIELD
    assert _code(_generate(mode="fast")) == P.INVALID_FIELD
    assert _code(_generate(verify="lossless")) == P.INVALID_FIELD
    assert _code(_generate(verify=1)) == P.INVALID_FIELD
    assert _code(_generate(greedy=1)) == P.INVALID_FIELD
    assert _code(_generate(id=None)) == P.INVALID_FIELD


def test_errors_carry_the_request_id() -> None:
    with pytest.raises(P.ProtocolError) as info:
        P.parse_request(_generate(id="job-7", delta=-1))
    assert info.value.request_id == "job-7"


def test_events_are_single_json_lines() -> None:
    line = P.encode_event("done", id="g", stats={"scr": float("nan"), "faces": np.int64(3),
                                                  "v": np.arange(2)})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"event": "done", "id": "g", "stats": {"scr": None, "faces": 3, "v": [0, 1]}}
    error = json.loads(P.error_event(P.BUSY, "busy\nnow", "g"))
    assert error == {"event": "error", "id": "g", "code": "busy", "message": "busy\nnow", "fatal": False}


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200),
                 st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
                              lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                              max_leaves=20).map(json.dumps)))
def test_fuzz_parse_never_raises_anything_else(line: str | bytes) -> None:
    try:
        P.parse_request(line)
    except P.ProtocolError as exc:
        assert exc.code and str(exc)


def test_addon_speaks_the_same_protocol_version() -> None:
    from addon_fixtures import load_addon_module

    assert load_addon_module("client").PROTOCOL_VERSION == P.PROTOCOL_VERSION


def test_verify_choices_are_the_decoders() -> None:
    """The protocol keeps its own copy of the decoder's verification modes (it imports no torch)."""
    from backend.options import VERIFICATIONS
    assert P.VERIFY_MODES == VERIFICATIONS


def test_a_line_of_millions_of_tiny_rows_is_refused_before_parsing() -> None:
    import time

    line = b'{"op":"generate","id":"t","points":[' + b"[0,0,0]," * 2_000_000 + b'[0,0,0]],"normals":[]}'
    assert len(line) < P.MAX_LINE_BYTES
    started = time.perf_counter()
    with pytest.raises(P.ProtocolError) as info:
        P.parse_request(line)
    assert info.value.code == P.TOO_LARGE and time.perf_counter() - started < 1.0


def test_generate_takes_the_source_mesh() -> None:
    points, normals = _cloud()
    mesh = {"vertices": [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], "faces": [[0, 1, 2], [0, 1, 3]]}
    request = P.parse_request(_generate(mesh=mesh, snap=False, attempts=4))
    assert request.options["attempts"] == 4
    assert _code(_generate(attempts=17)) == P.INVALID_FIELD
    vertices, faces = request.mesh
    assert vertices.shape == (4, 3) and faces.tolist() == [[0, 1, 2], [0, 1, 3]]
    assert request.options["snap"] is False
    assert P.parse_request(_generate()).mesh is None
    assert _code(_generate(mesh={"vertices": mesh["vertices"]})) == P.INVALID_FIELD
    assert _code(_generate(mesh={**mesh, "faces": [[0, 1, 9]]})) == P.INVALID_FIELD
    assert _code(_generate(mesh={**mesh, "faces": [[0, 1, 2.5]]})) == P.INVALID_SHAPE
    assert _code(_generate(mesh={**mesh, "vertices": [[0, 0, float("nan")]] * 4})) in (P.NOT_FINITE, P.INVALID_JSON)
    from addon_fixtures import load_addon_module

    assert load_addon_module("pointcloud").MAX_MESH_FACES == P.MAX_MESH_FACES
    assert load_addon_module("pointcloud").MAX_MESH_VERTICES == P.MAX_MESH_VERTICES


def test_an_old_client_gets_a_clear_error() -> None:
    with pytest.raises(P.ProtocolError, match="update the SpecMesh add-on") as info:
        P.parse_request('{"op": "ping", "protocol": 1}')
    assert info.value.code == P.UNSUPPORTED_PROTOCOL


_json = st.recursive(st.none() | st.booleans() | st.integers(min_value=-10**30, max_value=10**30) | st.floats()
                     | st.text(max_size=5), lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(fields=st.dictionaries(st.sampled_from(["op", "id", "points", "normals", "mesh", "delta", "heads", "seed",
                                               "max_faces", "temperature", "top_k", "top_p", "greedy", "snap",
                                               "mode", "verify", "protocol"]), _json, max_size=6),
       mesh=st.fixed_dictionaries({"vertices": _json, "faces": st.lists(st.lists(st.integers(-10**30, 10**30),
                                                                              min_size=3, max_size=3), max_size=3)}))
def test_any_json_request_is_accepted_or_refused_with_a_protocol_error(fields, mesh) -> None:
    rows = [[0.1 * i, 0.2 * (i % 3), 0.3 * (i % 5)] for i in range(16)]
    request = {"op": "generate", "id": "x", "points": rows, "normals": rows, "mesh": mesh, **fields}
    try:
        P.parse_request(json.dumps(request))
    except P.ProtocolError:
        pass
