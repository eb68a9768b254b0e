"""Side-by-side retopology benchmark: SpecMesh against Blender's Decimate and QuadriFlow at the
same triangle count, on held-out inputs (issue 19, item 4).

    python benchmarks/retopo_compare.py [--quick] [--limit N] [--out out/retopo] [--name results]
        [--specmesh-args "--faces 300"] [--specmesh-rev HEAD] [--procedural 10]
    # needs bpy==5.0.1 (headless); --specmesh-rev runs SpecMesh from a `git archive` copy of
    # that commit, so other people's uncommitted backend edits stay out of the numbers

For every input mesh:
  (a) SpecMesh: `specmesh generate IN -o OUT.obj --quads --threads 1 --stats-json F` as a
      subprocess, plus whatever `--specmesh-args` adds; its triangle count T (a quad counts as
      two triangles) sets the size for the others;
  (b) Blender's Decimate modifier (collapse, default settings) to T triangles;
  (c) Blender's QuadriFlow remesh (`bpy.ops.object.quadriflow_remesh`) with target faces T / 2
      (all quads, so T triangles).
Every output is written as .obj, read back and measured by `measure` below: one metrics
function of this script's own, independent of the backend's clean-up (it welds vertices by
position itself, and samples and compares surfaces itself):
  valid (non-empty, finite), faces, triangles (n-gon = n - 2), CD / noise (Chamfer distance
  between 10k surface samples of the output and of the input, divided by the Chamfer distance
  between two independent 10k-sample sets of the input; both meshes in the INPUT's
  normalization, longest side spanning [-0.95, 0.95], so a shrunk or shifted output counts),
  watertight (0 boundary, 0 non-manifold, 0 misoriented edges), boundary edges per face,
  non-manifold edges (> 2 faces), misoriented edges (two faces run the edge the same way),
  pieces (edge-connected parts; `vertex_pieces`: vertex-connected) of output and of input, sliver fraction (triangles, with quads
  and n-gons fan-split, whose smallest angle is < 10 degrees), quad ratio (quads / faces), wall
  seconds (SpecMesh: the whole subprocess, model load included; Blender: the operator, with its
  one size correction included).
Writes OUT/NAME.json (per-input rows, medians per method) and OUT/NAME.png, prints markdown
tables. Inputs are cached as .obj in out/retopo_inputs/, outputs in out/retopo_meshes/.

Inputs (never trained on; the model saw only its own procedural data): Blender's Suzanne, UV
sphere, cylinder, torus and a bevelled cube, each as created and with Subdivision Surface level
2, an open cylinder with Solidify (a pipe), and the first items of the procedural test split.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

REPO = Path(__file__).resolve().parents[1]
METHODS = ("specmesh", "decimate", "quadriflow")
SAMPLES = 10_000
SLIVER_DEGREES = 10.0
QUICK = ("suzanne", "torus_subdiv", "cube_bevel", "test0000")


# ----------------------------------------------------------------------------- OBJ files

def read_obj(path: str | Path) -> tuple[np.ndarray, list[list[int]]]:
    """Vertices (n, 3) and polygons (0-based vertex lists) of an .obj; texture/normal indices and
    everything but `v` and `f` lines are ignored, negative (relative) indices resolved."""
    vertices: list[list[float]] = []
    faces: list[list[int]] = []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "v":
            vertices.append([float(x) for x in parts[1:4]])
        elif parts[0] == "f":
            face = []
            for token in parts[1:]:
                index = int(token.split("/")[0])
                face.append(index - 1 if index > 0 else len(vertices) + index)
            faces.append(face)
    return np.asarray(vertices, np.float64).reshape(-1, 3), faces


def write_obj(path: str | Path, vertices: np.ndarray, faces: list[list[int]]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"v {x:.7g} {y:.7g} {z:.7g}" for x, y, z in np.asarray(vertices, np.float64)]
    lines += ["f " + " ".join(str(int(i) + 1) for i in face) for face in faces]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


# ----------------------------------------------------------------------------- metrics

def weld(vertices: np.ndarray, faces: list[list[int]], tolerance: float = 1e-6
         ) -> tuple[np.ndarray, list[list[int]], int]:
    """Merge vertices closer than `tolerance` x the bounding-box diagonal; drop repeated corners
    in a row and polygons left with fewer than 3 distinct corners. Returns (vertices, faces,
    polygons dropped)."""
    vertices = np.asarray(vertices, np.float64).reshape(-1, 3)
    if len(vertices) == 0:
        return vertices, [], len(faces)
    diagonal = float(np.linalg.norm(vertices.max(0) - vertices.min(0)))
    pairs = cKDTree(vertices).query_pairs(max(diagonal * tolerance, 1e-12), output_type="ndarray")
    n = len(vertices)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n)) if len(pairs) else \
        coo_matrix((n, n))
    _, label = connected_components(graph, directed=False)
    welded = np.zeros((label.max() + 1, 3))
    np.add.at(welded, label, vertices)
    welded /= np.bincount(label)[:, None]
    out, dropped = [], 0
    for face in faces:
        ring = [int(label[i]) for i in face]
        ring = [v for k, v in enumerate(ring) if v != ring[k - 1]] if len(ring) > 1 else ring
        if len(set(ring)) < 3:
            dropped += 1
        else:
            out.append(ring)
    return welded, out, dropped


def fan_triangles(faces: list[list[int]]) -> np.ndarray:
    """Triangles of the polygons, each split as a fan from its first corner (a quad into two)."""
    tris = [(f[0], f[k], f[k + 1]) for f in faces for k in range(1, len(f) - 1)]
    return np.asarray(tris, np.int64).reshape(-1, 3)


def sample_points(vertices: np.ndarray, triangles: np.ndarray, count: int, seed: int) -> np.ndarray:
    """`count` points uniformly over the triangles' area."""
    corners = vertices[triangles]
    area = np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    if not np.isfinite(area.sum()) or area.sum() <= 0:
        raise ValueError("no surface area to sample")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(triangles), size=count, p=area / area.sum())
    r = rng.random((count, 2))
    flip = r.sum(1) > 1
    r[flip] = 1 - r[flip]
    c = corners[chosen]
    return c[:, 0] + r[:, :1] * (c[:, 1] - c[:, 0]) + r[:, 1:] * (c[:, 2] - c[:, 0])


def chamfer(a: np.ndarray, b: np.ndarray) -> float:
    """Mean nearest-neighbour distance (not squared) both ways, summed."""
    return float(cKDTree(b).query(a)[0].mean() + cKDTree(a).query(b)[0].mean())


class Reference:
    """The input as the yardstick: its normalization (bbox centre, longest side -> 1.9), two
    independent sample sets, their Chamfer (the noise floor) and its piece count."""

    def __init__(self, vertices: np.ndarray, faces: list[list[int]], samples: int = SAMPLES, seed: int = 0):
        v, f, _ = weld(vertices, faces)
        lo, hi = v.min(0), v.max(0)
        self.center, self.scale = (lo + hi) / 2, 1.9 / float((hi - lo).max())
        tris = fan_triangles(f)
        self.points = sample_points(self.normalize(v), tris, samples, seed + 1)
        self.noise = chamfer(self.points, sample_points(self.normalize(v), tris, samples, seed + 2))
        self.pieces = count_pieces(len(v), f)
        self.samples, self.seed = samples, seed

    def normalize(self, vertices: np.ndarray) -> np.ndarray:
        return (np.asarray(vertices, np.float64) - self.center) * self.scale


def count_pieces(n_vertices: int, faces: list[list[int]], by: str = "edge") -> int:
    """Connected parts of the surface: faces sharing an edge are connected (two parts touching
    at a single vertex, like Suzanne's eyes and head once welded, stay two); `by="vertex"`
    connects faces sharing a vertex (Blender's loose parts)."""
    if not faces:
        return 0
    a = np.concatenate([np.asarray(f, np.int64) for f in faces])
    b = np.concatenate([np.roll(np.asarray(f, np.int64), -1) for f in faces])
    if by == "vertex":
        graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n_vertices, n_vertices))
        return int(len(np.unique(connected_components(graph, directed=False)[1][a])))
    face_of = np.repeat(np.arange(len(faces)), [len(f) for f in faces])
    keys = np.minimum(a, b) * (n_vertices + 1) + np.maximum(a, b)
    order = np.argsort(keys, kind="stable")
    same = keys[order][1:] == keys[order][:-1]
    left, right = face_of[order][:-1][same], face_of[order][1:][same]
    graph = coo_matrix((np.ones(len(left)), (left, right)), shape=(len(faces), len(faces)))
    return int(connected_components(graph, directed=False)[0])


def edge_counts(faces: list[list[int]]) -> dict[str, int]:
    """Boundary (1 face), non-manifold (> 2 faces) and misoriented (2 faces running the edge the
    same way) edges."""
    if not faces:
        return {"edges": 0, "boundary_edges": 0, "nonmanifold_edges": 0, "misoriented_edges": 0}
    a = np.concatenate([np.asarray(f, np.int64) for f in faces])
    b = np.concatenate([np.roll(np.asarray(f, np.int64), -1) for f in faces])
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    forward = (a < b).astype(np.int64)
    keys = lo * (int(max(a.max(), b.max())) + 1) + hi
    unique, inverse, count = np.unique(keys, return_inverse=True, return_counts=True)
    forward_count = np.bincount(inverse, weights=forward, minlength=len(unique))
    two = count == 2
    return {"edges": int(len(unique)), "boundary_edges": int((count == 1).sum()),
            "nonmanifold_edges": int((count > 2).sum()),
            "misoriented_edges": int((two & ((forward_count == 0) | (forward_count == 2))).sum())}


def min_angles(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Smallest interior angle (degrees) of each triangle; 0 for a degenerate one."""
    c = vertices[triangles]
    angles = []
    for i in range(3):
        u, w = c[:, (i + 1) % 3] - c[:, i], c[:, (i + 2) % 3] - c[:, i]
        nu, nw = np.linalg.norm(u, axis=1), np.linalg.norm(w, axis=1)
        ok = (nu > 0) & (nw > 0)
        cos = np.where(ok, np.einsum("ij,ij->i", u, w) / np.where(ok, nu * nw, 1), 1.0)
        angles.append(np.degrees(np.arccos(np.clip(cos, -1, 1))))
    return np.min(angles, axis=0) if len(triangles) else np.zeros(0)


def measure(vertices: np.ndarray, faces: list[list[int]], reference: Reference | None = None) -> dict:
    """All figures of one output mesh (see the module docstring); `reference` (the input) adds
    CD / noise and the input's pieces."""
    vertices = np.asarray(vertices, np.float64).reshape(-1, 3)
    row: dict = {"valid": False, "faces": len(faces)}
    if len(faces) == 0 or len(vertices) == 0 or not np.isfinite(vertices).all():
        return row
    v, f, dropped = weld(vertices, faces)
    tris = fan_triangles(f)
    quads = sum(len(p) == 4 for p in f)
    edges = edge_counts(f)
    angles = min_angles(v, tris)
    row.update({
        "valid": len(f) > 0,
        "faces": len(f),
        "triangles": int(len(tris)),
        "quads": int(quads),
        "ngons": int(sum(len(p) > 4 for p in f)),
        "degenerate_faces": int(dropped),
        "duplicate_faces": int(len(f) - len({tuple(sorted(p)) for p in f})),
        **edges,
        "watertight": bool(len(f) > 0 and edges["boundary_edges"] == 0 and edges["nonmanifold_edges"] == 0
                           and edges["misoriented_edges"] == 0),
        "boundary_per_face": edges["boundary_edges"] / max(len(f), 1),
        "pieces": count_pieces(len(v), f),
        "vertex_pieces": count_pieces(len(v), f, by="vertex"),
        "sliver_fraction": float((angles < SLIVER_DEGREES).mean()) if len(angles) else 0.0,
        "quad_ratio": quads / max(len(f), 1),
    })
    if reference is not None:
        row["input_pieces"] = reference.pieces
        try:
            points = sample_points(reference.normalize(v), tris, reference.samples, reference.seed)
            row["cd"] = chamfer(points, reference.points)
            row["cd_noise"] = row["cd"] / reference.noise
        except ValueError:  # no area at all
            row["valid"] = False
    return row


# ----------------------------------------------------------------------------- Blender

def _bpy():
    import bpy  # noqa: PLC0415  (bpy is only needed for inputs and the Blender methods)

    return bpy


def _new_object(vertices: np.ndarray, faces: list[list[int]]):
    bpy = _bpy()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    mesh = bpy.data.meshes.new("input")
    mesh.from_pydata([tuple(map(float, p)) for p in vertices], [], [list(map(int, f)) for f in faces])
    mesh.validate()
    mesh.update()
    obj = bpy.data.objects.new("input", mesh)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    obj.select_set(True)
    return obj


def _mesh_data(mesh) -> tuple[np.ndarray, list[list[int]]]:
    vertices = np.array([v.co[:] for v in mesh.vertices], np.float64).reshape(-1, 3)
    return vertices, [list(p.vertices) for p in mesh.polygons]


def _triangles(faces: list[list[int]]) -> int:
    return sum(len(f) - 2 for f in faces)


def blender_decimate(vertices: np.ndarray, faces: list[list[int]], target_triangles: int
                     ) -> tuple[np.ndarray, list[list[int]], dict]:
    """Decimate modifier (collapse, otherwise default settings) with the ratio that gives about
    `target_triangles` triangles (quads count two): first ratio = target / input triangles, then
    one correction by the ratio asked / got; the closer result is kept. An input already at or
    under the target comes back as it is."""
    bpy = _bpy()
    obj = _new_object(vertices, faces)
    have = _triangles(faces)
    info = {"input_triangles": have, "ratios": []}
    if target_triangles >= have:
        info["note"] = "input has no more triangles than the target"
        return *_mesh_data(obj.data), info
    modifier = obj.modifiers.new("decimate", "DECIMATE")
    modifier.decimate_type = "COLLAPSE"
    best = None
    ratio = target_triangles / have
    for _ in range(2):
        modifier.ratio = min(max(ratio, 1e-4), 1.0)
        depsgraph = bpy.context.evaluated_depsgraph_get()
        evaluated = obj.evaluated_get(depsgraph)
        result = _mesh_data(evaluated.to_mesh())
        evaluated.to_mesh_clear()
        got = _triangles(result[1])
        info["ratios"].append([modifier.ratio, got])
        if best is None or abs(got - target_triangles) < abs(best[2] - target_triangles):
            best = (*result, got)
        if got == 0 or abs(got - target_triangles) <= 0.02 * target_triangles:
            break
        ratio = modifier.ratio * target_triangles / got
    return best[0], best[1], info


def blender_quadriflow(vertices: np.ndarray, faces: list[list[int]], target_triangles: int, seed: int = 0
                       ) -> tuple[np.ndarray, list[list[int]], dict]:
    """QuadriFlow remesh with target faces = target_triangles / 2 (defaults otherwise, fixed
    seed); one correction by faces asked / got when the result is more than 10 % off; the closer
    result is kept. Raises RuntimeError when QuadriFlow refuses the mesh (e.g. non-manifold)."""
    bpy = _bpy()
    target = max(1, round(target_triangles / 2))
    info = {"target_faces": target, "tries": []}
    best = None
    ask = target
    for _ in range(2):
        obj = _new_object(vertices, faces)
        result = bpy.ops.object.quadriflow_remesh(target_faces=int(ask), mode="FACES", seed=seed)
        got_mesh = _mesh_data(obj.data)
        got = len(got_mesh[1])
        info["tries"].append([int(ask), got, sorted(result)])
        if "FINISHED" not in result:
            raise RuntimeError(f"quadriflow_remesh returned {sorted(result)}")
        if best is None or abs(got - target) < abs(len(best[1]) - target):
            best = got_mesh
        if got == 0 or abs(got - target) <= 0.1 * target:
            break
        ask = max(1, round(ask * target / got))
    return best[0], best[1], info


# ----------------------------------------------------------------------------- inputs

def _blender_primitive(name: str):
    bpy = _bpy()
    ops = bpy.ops.mesh
    base = name.removesuffix("_subdiv")
    if base == "suzanne":
        ops.primitive_monkey_add()
    elif base == "uv_sphere":
        ops.primitive_uv_sphere_add(segments=24, ring_count=12)
    elif base == "cylinder":
        ops.primitive_cylinder_add(vertices=16)
    elif base == "torus":
        ops.primitive_torus_add(major_segments=24, minor_segments=8)
    elif base == "cube_bevel":
        ops.primitive_cube_add()
    elif base == "pipe_solidify":
        ops.primitive_cylinder_add(vertices=24, end_fill_type="NOTHING")
    else:
        raise ValueError(name)
    obj = bpy.context.active_object
    stack = []
    if base == "cube_bevel":
        stack.append(("BEVEL", {"width": 0.2, "segments": 3}))
    if base == "pipe_solidify":
        stack.append(("SOLIDIFY", {"thickness": 0.15}))
    if name.endswith("_subdiv"):
        stack.append(("SUBSURF", {"levels": 2}))
    for kind, settings in stack:
        modifier = obj.modifiers.new(kind.lower(), kind)
        for key, value in settings.items():
            setattr(modifier, key, value)
        bpy.ops.object.modifier_apply(modifier=modifier.name)
    return _mesh_data(obj.data)


BLENDER_INPUTS = ("suzanne", "suzanne_subdiv", "uv_sphere", "uv_sphere_subdiv", "cylinder", "cylinder_subdiv",
                  "torus", "torus_subdiv", "cube_bevel", "cube_bevel_subdiv", "pipe_solidify")


def build_inputs(cache: Path, procedural: int) -> list[tuple[str, Path]]:
    """(name, .obj path) of every input, written to `cache` once."""
    cache.mkdir(parents=True, exist_ok=True)
    inputs = []
    for name in BLENDER_INPUTS:
        path = cache / f"{name}.obj"
        if not path.exists():
            _bpy().ops.wm.read_factory_settings(use_empty=True)
            write_obj(path, *_blender_primitive(name))
        inputs.append((name, path))
    if procedural > 0:
        from backend.evaluation import procedural_cases  # the data's test split (never trained on)

        for index, case in enumerate(procedural_cases(procedural)):
            name = f"test{index:04d}"
            path = cache / f"{name}.obj"
            if not path.exists():
                write_obj(path, case.mesh.vertices, case.mesh.faces.tolist())
            (cache / f"{name}.family").write_text(case.name)
            inputs.append((name, path))
    return inputs


# ----------------------------------------------------------------------------- runs

def run_specmesh(source: Path, out: Path, extra: list[str], timeout: float, checkout: Path = REPO
                 ) -> tuple[Path | None, dict]:
    """`specmesh generate` of the backend in `checkout` (run as `python -m backend` there)."""
    stats = out.with_suffix(".stats.json")
    command = [sys.executable, "-m", "backend", "generate", str(source.resolve()), "-o", str(out.resolve()),
               "--quads", "--stats-json", str(stats.resolve())]
    if "--threads" not in extra:
        command += ["--threads", "1"]
    command += extra
    out.unlink(missing_ok=True)
    started = time.perf_counter()
    try:
        env = {**os.environ, "PYTHONPATH": str(checkout)}
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=checkout, env=env)
    except subprocess.TimeoutExpired:
        return None, {"error": f"timed out after {timeout:.0f} s", "seconds": time.perf_counter() - started}
    info: dict = {"seconds": time.perf_counter() - started, "returncode": done.returncode}
    if stats.exists():
        try:
            s = json.loads(stats.read_text())
            info["stats"] = {k: s.get(k) for k in ("faces", "tokens", "seconds", "tokens_per_second", "scr",
                                                    "output_triangles", "output_quads") if k in s}
        except json.JSONDecodeError:
            pass
    if done.returncode != 0 or not out.exists():
        tail = (done.stderr or done.stdout).strip().splitlines()
        info["error"] = tail[-1] if tail else f"exit {done.returncode}"
        return None, info
    return out, info


def checkout(rev: str) -> tuple[Path, str]:
    """A `git archive` copy of `rev` under out/retopo_checkouts/SHA (made once): SpecMesh as
    committed, whatever is being edited in this tree."""
    import io
    import tarfile

    sha = subprocess.run(["git", "rev-parse", "--short", rev], capture_output=True, text=True, cwd=REPO,
                         check=True).stdout.strip()
    dest = REPO / "out" / "retopo_checkouts" / sha
    if not (dest / "backend" / "__main__.py").exists():
        archive = subprocess.run(["git", "archive", sha], capture_output=True, cwd=REPO, check=True).stdout
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(dest, filter="data")
    return dest, sha


def median(values: list) -> float | None:
    values = [float(v) for v in values if v is not None]
    return float(np.median(values)) if values else None


def summarize(rows: list[dict]) -> dict:
    summary = {}
    for method in METHODS:
        mine = [r for r in rows if r["method"] == method]
        valid = [r for r in mine if r.get("valid")]
        summary[method] = {
            "inputs": len(mine), "valid": len(valid),
            "watertight": sum(bool(r.get("watertight")) for r in valid),
            "pieces_match": sum(r.get("pieces") == r.get("input_pieces") for r in valid),
            **{key: median([r.get(key) for r in valid]) for key in (
                "faces", "triangles", "cd_noise", "boundary_per_face", "boundary_edges", "nonmanifold_edges",
                "misoriented_edges", "pieces", "sliver_fraction", "quad_ratio", "seconds")},
        }
    return summary


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.{digits}f}"
    return str(int(value))


def markdown(rows: list[dict], summary: dict) -> str:
    head = ("| method | valid | faces | tris | CD/noise | watertight | bnd/face | non-manif. | misor. | "
            "pieces = input | sliver | quads | s |")
    lines = ["Medians over valid outputs (watertight, pieces = input: counts).", "", head,
             "|" + "---|" * (head.count("|") - 1)]
    for method, s in summary.items():
        lines.append(f"| {method} | {s['valid']}/{s['inputs']} | {_fmt(s['faces'], 0)} | {_fmt(s['triangles'], 0)} | "
                     f"{_fmt(s['cd_noise'])} | {s['watertight']}/{s['valid']} | {_fmt(s['boundary_per_face'], 3)} | "
                     f"{_fmt(s['nonmanifold_edges'], 1)} | {_fmt(s['misoriented_edges'], 1)} | "
                     f"{s['pieces_match']}/{s['valid']} | {_fmt(s['sliver_fraction'], 3)} | "
                     f"{_fmt(s['quad_ratio'])} | {_fmt(s['seconds'], 1)} |")
    lines += ["", "Per input (CD/noise, tris, watertight W, boundary edges b, non-manifold n, misoriented m, "
                  "pieces out/in, sliver %, quad %):", "",
              "| input | " + " | ".join(METHODS) + " |", "|---|" + "---|" * len(METHODS)]
    by_input: dict[str, dict] = {}
    for r in rows:
        by_input.setdefault(r["input"], {})[r["method"]] = r
    for name, methods in by_input.items():
        cells = []
        for method in METHODS:
            r = methods.get(method, {})
            if not r.get("valid"):
                cells.append("FAIL" + (f": {r['error'][:60]}" if r.get("error") else ""))
                continue
            cells.append(f"{r['cd_noise']:.2f}, {r['triangles']}t, {'W' if r['watertight'] else '-'} "
                         f"b{r['boundary_edges']} n{r['nonmanifold_edges']} m{r['misoriented_edges']}, "
                         f"{r['pieces']}/{r['input_pieces']}p, {100 * r['sliver_fraction']:.0f}%s, "
                         f"{100 * r['quad_ratio']:.0f}%q")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], summary: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["input"] for r in rows))
    colours = {"specmesh": "tab:blue", "decimate": "tab:orange", "quadriflow": "tab:green"}
    panels = [("cd_noise", "CD / noise floor (log)", True), ("boundary_per_face", "boundary edges per face", False),
              ("sliver_fraction", "sliver fraction (min angle < 10°)", False), ("quad_ratio", "quad ratio", False),
              ("triangles", "triangles", False), ("seconds", "wall seconds (log)", True)]
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(10, 0.55 * len(names) + 3), 3.0 * len(panels)),
                             sharex=True)
    x = np.arange(len(names))
    width = 0.27
    for ax, (key, label, log) in zip(axes, panels):
        for k, method in enumerate(METHODS):
            lookup = {r["input"]: r for r in rows if r["method"] == method}
            values = [lookup.get(n, {}).get(key) if lookup.get(n, {}).get("valid") else None for n in names]
            heights = [v if v is not None else np.nan for v in values]
            bars = ax.bar(x + (k - 1) * width, heights, width, color=colours[method],
                          label=f"{method} (median {_fmt(summary[method][key], 3)})")
            for bar, v in zip(bars, values):
                if v is None:
                    ax.text(bar.get_x() + width / 2, 0.02, "×", ha="center", va="bottom", color=colours[method],
                            transform=ax.get_xaxis_transform())
        if log:
            ax.set_yscale("log")
        if key == "cd_noise":
            ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_ylabel(label, fontsize=8)
        ax.legend(fontsize=7, loc="upper left", ncol=3)
    axes[-1].set_xticks(x, names, rotation=60, ha="right", fontsize=8)
    wt = ", ".join(f"{m} {summary[m]['watertight']}/{summary[m]['valid']}" for m in METHODS)
    fig.suptitle(f"{title}\nwatertight: {wt}; × = no valid output", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/retopo", help="folder for NAME.json and NAME.png")
    parser.add_argument("--name", default="results", help="file stem of the JSON and the plot")
    parser.add_argument("--limit", type=int, default=None, help="first N inputs only")
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    parser.add_argument("--procedural", type=int, default=10, help="items of the procedural test split")
    parser.add_argument("--specmesh-args", default="", help="extra `specmesh generate` options, one string")
    parser.add_argument("--inputs-cache", default="out/retopo_inputs")
    parser.add_argument("--meshes", default="out/retopo_meshes", help="where the outputs' .obj files go")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per SpecMesh run")
    parser.add_argument("--specmesh-rev", default=None,
                        help="run SpecMesh as committed at this revision (a `git archive` copy under "
                             "out/retopo_checkouts/), so uncommitted edits in this tree do not leak into a baseline")
    parser.add_argument("--specmesh-repo", default=str(REPO),
                        help="checkout whose backend runs SpecMesh (default: this tree as it is)")
    args = parser.parse_args(argv)
    os.chdir(REPO)
    extra = shlex.split(args.specmesh_args)
    if args.specmesh_rev:
        specmesh_repo, commit = checkout(args.specmesh_rev)
    else:
        specmesh_repo = Path(args.specmesh_repo).resolve()
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=REPO).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "backend"],
                               capture_output=True, text=True, cwd=REPO).stdout.strip()
        if specmesh_repo != REPO:
            commit = f"tree at {specmesh_repo}"
        elif dirty:
            commit += "+uncommitted backend edits"
    inputs = build_inputs(Path(args.inputs_cache), args.procedural)
    if args.quick:
        inputs = [i for i in inputs if i[0] in QUICK]
    if args.limit is not None:
        inputs = inputs[:args.limit]
    meshes = Path(args.meshes)
    meshes.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for name, path in inputs:
        vertices, faces = read_obj(path)
        reference = Reference(vertices, faces)
        input_row = measure(vertices, faces)
        family = path.with_suffix(".family")
        base = {"input": name, "source": family.read_text() if family.exists() else name,
                "input_faces": input_row["faces"], "input_triangles": input_row["triangles"],
                "input_watertight": input_row["watertight"], "input_pieces": reference.pieces}
        # (a) SpecMesh
        produced, info = run_specmesh(path, meshes / f"{name}.specmesh.obj", extra, args.timeout, specmesh_repo)
        row = {**base, "method": "specmesh", "seconds": info["seconds"]}
        if "stats" in info:
            row["specmesh_stats"] = info["stats"]
        if produced is None:
            row.update({"valid": False, "error": info.get("error")})
            print(f"{name}: specmesh FAILED: {info.get('error')}", file=sys.stderr, flush=True)
        else:
            row.update(measure(*read_obj(produced), reference))
        rows.append(row)
        target = row.get("triangles") if row.get("valid") else None
        # (b), (c) Blender at SpecMesh's triangle count
        for method, helper in (("decimate", blender_decimate), ("quadriflow", blender_quadriflow)):
            out = {**base, "method": method, "target_triangles": target}
            if not target:
                out.update({"valid": False, "error": "no SpecMesh triangle count to match"})
                rows.append(out)
                continue
            started = time.perf_counter()
            try:
                v, f, meta = helper(vertices, faces, target)
                out["seconds"] = time.perf_counter() - started
                out["blender"] = meta
                write_obj(meshes / f"{name}.{method}.obj", v, f)
                out.update(measure(*read_obj(meshes / f"{name}.{method}.obj"), reference))
            except Exception as error:  # noqa: BLE001  (a refusal is a result: record it)
                out.update({"valid": False, "seconds": time.perf_counter() - started,
                            "error": f"{type(error).__name__}: {str(error).strip().splitlines()[-1] if str(error).strip() else ''}"})
            rows.append(out)
        line = "  ".join(f"{r['method']} {r.get('triangles', '-')}t cd/n {_fmt(r.get('cd_noise'))} "
                         f"{'W' if r.get('watertight') else '-'} {r['seconds']:.1f}s"
                         for r in rows[-3:])
        print(f"{name} ({input_row['triangles']} tris): {line}", file=sys.stderr, flush=True)
    summary = summarize(rows)
    table = markdown(rows, summary)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"command": "python benchmarks/retopo_compare.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
              "commit": commit, "specmesh_repo": str(specmesh_repo),
              "specmesh_args": ["--quads", *extra] + ([] if "--threads" in extra else ["--threads", "1"]),
              "samples": SAMPLES, "sliver_degrees": SLIVER_DEGREES,
              "medians": summary, "rows": rows}
    json_path = out_dir / f"{args.name}.json"
    json_path.write_text(json.dumps(report, indent=1) + "\n")
    plot(rows, summary, out_dir / f"{args.name}.png",
         f"SpecMesh vs Blender Decimate vs QuadriFlow at equal triangle count ({len(inputs)} inputs, {commit})")
    print(table)
    print(f"\nwrote {json_path} and {out_dir / (args.name + '.png')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
