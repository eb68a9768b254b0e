"""The SpecMesh line protocol, version 4 (docs/protocol.md is the reference).

One JSON object per line, UTF-8, both ways. This module only parses and validates requests and
encodes events; it knows nothing about threads or models, so every rule here is testable alone.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backend.options import BOUNDS, MAX_FACES, MAX_HEADS, MODES, SYMMETRY_AXES, VERIFICATIONS  # noqa: F401 (re-exported)

# 2: generate takes the source `mesh`; 3: and `faces`, the triangle count to aim for; 4: and
# `symmetry`, the axis to mirror across, and `quads`, candidates laid out for quad output
PROTOCOL_VERSION = 4
MAX_LINE_BYTES = 16 * 1024 * 1024   # 65536 points + normals as JSON fit comfortably
MIN_POINTS = 16
MAX_POINTS = 65536
MAX_ID_CHARS = 64
MAX_MESH_VERTICES = 65536  # a larger source mesh is decimated by the add-on first
MAX_MESH_FACES = 131072
# Coordinates beyond this are refused (the CLI's input readers use the same bound): the pipeline
# works in float32, whose range ends at 3.4e38.
MAX_COORDINATE = 1e30

# Error codes (docs/protocol.md lists them with their meaning).
INVALID_JSON = "invalid_json"
LINE_TOO_LONG = "line_too_long"
INVALID_REQUEST = "invalid_request"
UNKNOWN_OP = "unknown_op"
UNSUPPORTED_PROTOCOL = "unsupported_protocol"
INVALID_FIELD = "invalid_field"
INVALID_SHAPE = "invalid_shape"
NOT_FINITE = "not_finite"
TOO_LARGE = "too_large"
BUSY = "busy"
MODEL_LOAD_FAILED = "model_load_failed"
GENERATION_FAILED = "generation_failed"
INTERRUPTED = "interrupted"


class ProtocolError(ValueError):
    def __init__(self, code: str, message: str, request_id: str | None = None):
        super().__init__(message)
        self.code = code
        self.request_id = request_id


@dataclass(frozen=True)
class Ping:
    id: str | None = None


@dataclass(frozen=True)
class Cancel:
    id: str


@dataclass(frozen=True)
class Shutdown:
    pass


@dataclass(frozen=True)
class Generate:
    id: str
    points: np.ndarray    # (n, 3) float32
    normals: np.ndarray   # (n, 3) float32
    options: dict[str, Any] = field(default_factory=dict)  # GenerateOptions fields, validated
    mesh: tuple[np.ndarray, np.ndarray] | None = None  # source (vertices float64, triangles int64)


Request = Ping | Cancel | Shutdown | Generate

# Optional generate fields: name -> (python types, lower bound, upper bound). Booleans are
# excluded from the numeric types explicitly because `bool` is a subclass of `int`.
_NUMBER = (int, float)
_OPTION_RULES: dict[str, tuple[tuple[type, ...], float | None, float | None]] = {
    **{name: ((int,) if all(isinstance(b, int) for b in BOUNDS[name]) else _NUMBER, *BOUNDS[name])
       for name in ("delta", "temperature", "top_k", "top_p", "faces", "max_faces", "seed", "attempts")},  # bounds: backend.options
    "heads": ((int,), 0, MAX_HEADS),  # 0: no drafting heads, plain autoregressive decoding
    "greedy": ((bool,), None, None),
    "snap": ((bool,), None, None),
    "quads": ((bool,), None, None),
    "mode": ((str,), None, None),
    "verify": ((str,), None, None),
    "symmetry": ((str,), None, None),
}
VERIFY_MODES = VERIFICATIONS
_CHOICES = {"mode": MODES, "verify": VERIFY_MODES, "symmetry": SYMMETRY_AXES}
_FIELDS = {
    "ping": {"op", "protocol", "id"},
    "cancel": {"op", "protocol", "id"},
    "shutdown": {"op", "protocol"},
    "generate": {"op", "protocol", "id", "points", "normals", "mesh", *_OPTION_RULES},
}


def _reject_constant(name: str) -> float:
    raise ProtocolError(NOT_FINITE, f"{name} is not a number JSON allows")


# Every row of `points` and `normals` opens one bracket; a line with far more brackets than two
# full lists can hold is refused before parsing (2 million tiny rows would cost ~1 GB as Python lists).
_MAX_BRACKETS = 2 * MAX_POINTS + MAX_MESH_VERTICES + MAX_MESH_FACES + 4 * MAX_ID_CHARS


def parse_request(line: bytes | str) -> Request:
    """Validate one request line; raise ProtocolError (with the request id when known)."""
    brackets = line.count(b"[" if isinstance(line, bytes) else "[")
    if brackets > _MAX_BRACKETS:
        raise ProtocolError(TOO_LARGE, f"the request holds {brackets} lists; at most {MAX_POINTS} rows of "
                                       f"'points' and of 'normals' and {MAX_MESH_VERTICES} vertices and "
                                       f"{MAX_MESH_FACES} faces of 'mesh' are allowed")
    try:
        message = json.loads(line, parse_constant=_reject_constant)
    except ProtocolError:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ProtocolError(INVALID_JSON, f"not valid JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError(INVALID_REQUEST, "a request must be a JSON object")
    request_id = message.get("id") if isinstance(message.get("id"), str) else None
    try:
        return _parse_message(message)
    except ProtocolError as exc:
        exc.request_id = request_id
        raise


def _parse_message(message: dict[str, Any]) -> Request:
    op = message.get("op")
    if not isinstance(op, str):
        raise ProtocolError(INVALID_REQUEST, "missing string field 'op'")
    if op not in _FIELDS:
        raise ProtocolError(UNKNOWN_OP, f"unknown op {op[:40]!r}; expected one of {sorted(_FIELDS)}")
    version = message.get("protocol", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise ProtocolError(UNSUPPORTED_PROTOCOL,
                            f"protocol {str(version)[:20]} is not supported; this backend speaks protocol "
                            f"{PROTOCOL_VERSION}: update the SpecMesh add-on and its backend together")
    unknown = sorted(set(message) - _FIELDS[op])
    if unknown:
        raise ProtocolError(INVALID_REQUEST, f"unknown field(s) for {op}: {', '.join(unknown)[:200]}")
    if op == "shutdown":
        return Shutdown()
    if op == "ping":
        return Ping(_request_id(message, required=False))
    if op == "cancel":
        return Cancel(_request_id(message, required=True))
    return _parse_generate(message)


def _request_id(message: dict[str, Any], required: bool) -> str | None:
    value = message.get("id")
    if value is None and not required:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_CHARS:
        raise ProtocolError(INVALID_FIELD, f"'id' must be a string of 1..{MAX_ID_CHARS} characters")
    return value


def _parse_generate(message: dict[str, Any]) -> Generate:
    request_id = _request_id(message, required=True)
    points = _vectors(message, "points")
    normals = _vectors(message, "normals")
    if normals.shape != points.shape:
        raise ProtocolError(INVALID_SHAPE, f"'normals' has {len(normals)} rows but 'points' has {len(points)}")
    if np.ptp(points, axis=0).max() <= 0.0:
        raise ProtocolError(INVALID_FIELD, "'points' are all the same point; there is no shape to follow")
    options = {name: _option(name, message[name]) for name in _OPTION_RULES if name in message}
    mesh = _mesh(message["mesh"]) if "mesh" in message else None
    return Generate(request_id, points, normals, options, mesh)


def _mesh(value: Any) -> tuple[np.ndarray, np.ndarray]:
    """{"vertices": [[x, y, z], ...], "faces": [[i, j, k], ...]} -> (float64 (n, 3), int64 (m, 3))."""
    if not isinstance(value, dict) or set(value) != {"vertices", "faces"}:
        raise ProtocolError(INVALID_FIELD, "'mesh' must be an object with exactly 'vertices' and 'faces'")
    vertices, faces = value["vertices"], value["faces"]
    if not isinstance(vertices, list) or not 3 <= len(vertices) <= MAX_MESH_VERTICES:
        raise ProtocolError(INVALID_SHAPE, f"'mesh.vertices' must hold 3..{MAX_MESH_VERTICES} [x, y, z] rows")
    if not isinstance(faces, list) or not 1 <= len(faces) <= MAX_MESH_FACES:
        raise ProtocolError(INVALID_SHAPE, f"'mesh.faces' must hold 1..{MAX_MESH_FACES} [i, j, k] rows")
    if not all(isinstance(f, list) and len(f) == 3 and all(type(i) is int for i in f) for f in faces):
        raise ProtocolError(INVALID_SHAPE, "every row of 'mesh.faces' must be three vertex indices")
    array = _vectors({"mesh.vertices": vertices}, "mesh.vertices", minimum=3, maximum=MAX_MESH_VERTICES)
    try:
        triangles = np.asarray(faces, dtype=np.int64)
    except OverflowError:  # an index beyond int64
        raise ProtocolError(INVALID_FIELD, "'mesh.faces' holds an index beyond any vertex") from None
    if triangles.min() < 0 or triangles.max() >= len(array):
        raise ProtocolError(INVALID_FIELD, f"'mesh.faces' indices must be in 0..{len(array) - 1}")
    return array.astype(np.float64), triangles


def _vectors(message: dict[str, Any], name: str, minimum: int = MIN_POINTS, maximum: int = MAX_POINTS) -> np.ndarray:
    """A list of [x, y, z] numbers -> float32 (n, 3); checks shape, types and finiteness."""
    rows = message.get(name)
    if not isinstance(rows, list):
        raise ProtocolError(INVALID_SHAPE, f"'{name}' must be a list of [x, y, z] rows")
    if len(rows) > maximum:
        raise ProtocolError(TOO_LARGE, f"'{name}' has {len(rows)} rows; the limit is {maximum}")
    if len(rows) < minimum:
        raise ProtocolError(INVALID_SHAPE, f"'{name}' has {len(rows)} rows; at least {minimum} are needed")
    for row in rows:
        if not (isinstance(row, list) and len(row) == 3
                and all(type(c) in _NUMBER for c in row)):  # type(): no bools, no numeric strings
            raise ProtocolError(INVALID_SHAPE, f"every row of '{name}' must be [x, y, z] numbers, got {str(row)[:60]}")
    try:
        array = np.asarray(rows, dtype=np.float64)
    except OverflowError:  # integers beyond float range
        raise ProtocolError(NOT_FINITE, f"'{name}' has a value beyond float range") from None
    if not np.isfinite(array).all() or np.abs(array).max() > MAX_COORDINATE:
        raise ProtocolError(NOT_FINITE, f"'{name}' contains a non-finite or absurdly large value")
    return array.astype(np.float32)


def _option(name: str, value: Any) -> Any:
    types, low, high = _OPTION_RULES[name]
    if isinstance(value, bool) != (types == (bool,)) or not isinstance(value, types):
        kind = "true or false" if types == (bool,) else "a string" if types == (str,) else \
            "an integer" if types == (int,) else "a number"
        raise ProtocolError(INVALID_FIELD, f"'{name}' must be {kind}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ProtocolError(NOT_FINITE, f"'{name}' must be finite")
    if low is not None and not low <= value <= high:
        raise ProtocolError(INVALID_FIELD, f"'{name}' must be in [{low}, {high}], got {value}")
    if name in _CHOICES and value not in _CHOICES[name]:
        raise ProtocolError(INVALID_FIELD, f"'{name}' must be one of {_CHOICES[name]}, got {value[:40]!r}")
    return value


def check_options(fields: dict[str, Any], flags: bool = False) -> dict[str, Any]:
    """Validate generate options against the protocol's bounds (ProtocolError, a ValueError, on
    the first bad one). `specmesh generate` uses this too, so the CLI and the add-on accept the
    same values; with `flags` the message names the option as a command-line flag."""
    for name, value in fields.items():
        try:
            _option(name, value)
        except ProtocolError as exc:
            if not flags:
                raise
            raise ProtocolError(exc.code, str(exc).replace(f"'{name}'", "--" + name.replace("_", "-"))) from None
    return fields


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def encode_event(event: str, **fields: Any) -> bytes:
    """One event line. NaN/inf are turned into null so that a line is always valid JSON."""
    payload = {"event": event, **fields}
    try:
        text = json.dumps(payload, default=_jsonable, allow_nan=False, separators=(",", ":"))
    except ValueError:  # a NaN in stats: send null rather than break the stream
        text = json.dumps(_nan_to_none(payload), default=_jsonable, separators=(",", ":"))
    return text.encode() + b"\n"


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        return None
    return value


def error_event(code: str, message: str, request_id: str | None = None, fatal: bool = False) -> bytes:
    return encode_event("error", id=request_id, code=code, message=message, fatal=fatal)
