"""`specmesh generate IN -o OUT`: a mesh file or point cloud in, an artist-style mesh out."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from backend.commands import add_threads_argument, check_threads, set_decoding_threads
from backend.fileio import atomic_path, atomic_write, check_output_path

OUTPUT_FORMATS = (".obj", ".ply", ".glb")


def configure(p: argparse.ArgumentParser) -> None:
    p.description = ("IN is a mesh file (any format trimesh reads) or a point cloud (.ply, or .npy "
                     "of shape (N,3) or (N,6) with normals). The output keeps the input's frame and scale.")
    p.add_argument("input", metavar="IN", help="mesh file or point cloud (.ply/.npy)")
    p.add_argument("-o", "--output", metavar="OUT", required=True, help="output mesh: .obj, .ply or .glb")
    p.add_argument("--stats-json", metavar="FILE", help="write generation stats as JSON ('-' for stdout)")
    p.add_argument("--quads", action="store_true",
                   help="join near-planar, near-rectangular triangle pairs into quads (.obj and .ply output)")
    p.add_argument("--raw", action="store_true",
                   help="write the model's triangles as they came: no welding, duplicate removal or "
                        "outward orientation")
    add_model_arguments(p)
    add_decoding_arguments(p)
    p.set_defaults(func=run)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="DIR", help="model directory (default: $SPECMESH_MODEL_DIR or models/default)")
    from backend.options import DEVICES

    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--compile", action="store_true",
                   help="decode through torch.compile (CUDA graphs on a GPU); pays a one-time compile "
                        "(tens of seconds) and falls back to eager with a notice where it cannot compile")
    add_threads_argument(p, decoding=True)


def add_decoding_arguments(p: argparse.ArgumentParser) -> None:
    """Decoding options shared by generate, eval and bench (bench sweeps some of them); names,
    defaults and choices come from backend.options. Decoding internals sit in their own group."""
    from backend.options import DEFAULTS as D, DRAFTS, SYMMETRY_AXES, VERIFICATIONS

    p.add_argument("--seed", type=int, default=D.seed, help=f"sampling seed (default {D.seed})")
    p.add_argument("--faces", type=int, default=D.faces, metavar="N",
                   help=f"mesh inputs: faces to aim for, quads with --quads (default {D.faces})")
    p.add_argument("--max-faces", type=int, default=D.max_faces,
                   help=f"hard cap on decoded triangles (default {D.max_faces})")
    p.add_argument("--temperature", type=float, default=D.temperature,
                   help=f"sampling temperature (default {D.temperature})")
    p.add_argument("--greedy", action="store_true", help="always take the most likely token")
    p.add_argument("--ar", action="store_true", help="plain autoregressive decoding (no speculation)")
    p.add_argument("--delta", type=float, default=D.delta,
                   help=f"acceptance threshold δ in [0, 1]: higher is closer to AR, lower is faster (default {D.delta})")
    p.add_argument("--heads", type=int, metavar="D",
                   help="decoding heads to use (default: all the model has; 0: plain autoregressive, as --ar)")
    p.add_argument("--attempts", type=int, default=D.attempts, metavar="N",
                   help=f"generate N samples and keep the one closest to the input (default {D.attempts})")
    p.add_argument("--symmetry", choices=SYMMETRY_AXES, metavar="AXIS",
                   help="mesh inputs: x, y or z; when the input is symmetric about the plane through its "
                        "centre across AXIS, decode one half and mirror it (else say so and decode it all)")
    p.add_argument("--free-vertices", dest="snap", action="store_false",
                   help="mesh inputs: let vertices go anywhere instead of onto the input's decimated vertices")
    advanced = p.add_argument_group("advanced (decoding internals)")
    advanced.add_argument("--draft", choices=DRAFTS, default=D.draft,
                          help=f"tree: verify a token tree of the heads' top candidates; is: independent "
                               f"sampling (the paper's); pts: one sampled probability-tree path (default {D.draft})")
    advanced.add_argument("--pts-k", type=int, default=D.pts_k, metavar="K",
                          help=f"top-K per head for pts and tree (default {D.pts_k})")
    advanced.add_argument("--tree-nodes", type=int, default=D.tree_nodes, metavar="N",
                          help=f"drafted tokens verified per pass with --draft tree (default {D.tree_nodes})")
    advanced.add_argument("--verify", choices=VERIFICATIONS, default=D.verify,
                          help="threshold: accept while p > δ (paper); exact: lossless speculative sampling "
                               f"(default {D.verify})")
    advanced.add_argument("--top-k", type=int, default=D.top_k, help=f"top-k filter, 0 = off (default {D.top_k})")
    advanced.add_argument("--top-p", type=float, default=D.top_p, help=f"top-p filter, 1 = off (default {D.top_p})")


def options_from_args(args: argparse.Namespace):
    """The protocol's bounds first (the add-on gets the same ones), then GenerateOptions' own
    checks (bounds from backend.options); both raise ValueError naming the option."""
    from backend.options import BOUNDS, GenerateOptions
    from backend.server.protocol import check_options

    bounded = {name: getattr(args, name) for name in ("seed", "faces", "max_faces", "temperature", "delta", "top_k", "top_p")}
    if args.heads is not None:
        bounded["heads"] = args.heads
    check_options(bounded, flags=True)
    for name in ("pts_k", "tree_nodes"):  # not request fields: checked here with the flag's name
        (low, high), value = BOUNDS[name], getattr(args, name)
        if not low <= value <= high:
            raise ValueError(f"--{name.replace('_', '-')} must be in [{low}, {high}], got {value}")

    autoregressive = args.ar or args.heads == 0  # no drafting heads is plain AR, as in the add-on
    return GenerateOptions(
        mode="ar" if autoregressive else "speculative", delta=args.delta,
        heads=None if autoregressive else args.heads, draft=args.draft,
        pts_k=args.pts_k, tree_nodes=args.tree_nodes, verify=args.verify, temperature=args.temperature,
        top_k=args.top_k, top_p=args.top_p, greedy=args.greedy, max_faces=args.max_faces, seed=args.seed,
        faces=2 * args.faces if getattr(args, "quads", False) else args.faces,  # a quad is two triangles
        quads=getattr(args, "quads", False), snap=args.snap, attempts=args.attempts, symmetry=args.symmetry,
    )


def load_generator(args: argparse.Namespace):
    from backend.decoding.pipeline import Generator

    check_threads(args.threads)
    generator = Generator.load(args.model, device=args.device, compile=args.compile)
    generator.info["threads"] = set_decoding_threads(args.threads, generator)
    return generator


def run(args: argparse.Namespace) -> int:
    from backend.generation import generate
    from backend.inputs import read_input

    output = Path(args.output)
    if output.suffix.lower() not in OUTPUT_FORMATS:
        raise ValueError(f"output must end in one of {', '.join(OUTPUT_FORMATS)}: {output}")
    if args.quads and output.suffix.lower() not in (".obj", ".ply"):
        raise ValueError(f"--quads needs an .obj or .ply output (glTF stores triangles only): {output}")
    if args.quads and args.raw:
        raise ValueError("--quads and --raw do not go together: quads are made from the cleaned mesh")
    # Every path is checked before the input is read or the model loaded: a typo must not cost
    # a whole generation.
    check_output_path(output, "output")
    if args.stats_json not in (None, "-"):
        check_output_path(args.stats_json, "--stats-json")
    options = options_from_args(args)
    cloud = read_input(args.input, seed=args.seed)  # before the model load: bad input fails fast
    if cloud.normals_estimated:
        print(f"{args.input}: no normals in the point cloud; estimated them from neighbours", file=sys.stderr)
    started = time.perf_counter()
    generator = load_generator(args)
    load_seconds = time.perf_counter() - started

    # Estimated normals stay out of generation: a bare cloud's surface reconstruction orients its own.
    result = generate(generator, cloud.points, None if cloud.normals_estimated else cloud.normals, options,
                      progress=True, mesh=cloud.source_mesh)
    if "surface" in result.stats:
        print(f"specmesh generate: surface {result.stats['surface']}", file=sys.stderr)
    if (result.stats.get("symmetry") or {}).get("note"):
        print(f"specmesh generate: {result.stats['symmetry']['note']}", file=sys.stderr)
    stats = {**result.stats, "model_load_seconds": load_seconds, "threads": generator.info.get("threads"),
             "input": str(args.input), "output": str(output)}
    if len(result.faces) == 0:
        print(f"specmesh generate: the model produced no faces (stop: {stats.get('stop_reason', '?')}); "
              f"nothing written. Try another --seed, a higher --temperature or a larger --max-faces.",
              file=sys.stderr)
        write_json(args.stats_json, stats)
        return 1
    if args.raw:
        write_mesh(result.to_trimesh(), output)
    else:
        stats.update(write_artist_mesh(output, result.vertices, result.faces, quantization_step(cloud.points),
                                       quads=args.quads, points=cloud.points, normals=cloud.normals))
    print(_summary(stats, output), file=sys.stderr)
    write_json(args.stats_json, stats)
    return 0


def quantization_step(points) -> float:
    """The model's grid step (2 / 128 in normalized units) in the caller's frame for this cloud."""
    from backend.mesh.normalize import Normalization
    from backend.mesh.quantize import LEVELS

    return 2.0 / LEVELS / Normalization.fit(points).scale


def write_artist_mesh(output: Path, vertices, faces, step: float, quads: bool, points=None, normals=None) -> dict:
    """Clean the generated triangles (weld vertices closer than the grid `step`, drop duplicate
    faces and faces covered by coplanar ones, orient outward: open patches by the input's
    `points` and `normals` when given), optionally join quads, write the file; -> the clean-up and topology
    stats. Distinct grid vertices lie at least one step apart (a few ulps less after the mapping
    back to the caller's frame), so welding at half a step merges exactly the vertices that are
    the same grid point and never two neighbouring ones."""
    import numpy as np
    import trimesh

    from backend.mesh.cleanup import clean_mesh
    from backend.mesh.quads import PolyMesh, join_triangles, write_polygons

    cleaned = clean_mesh(vertices, faces, weld_distance=0.5 * step, plane_distance=0.25 * step,
                         points=points, normals=normals)
    if quads:
        mesh = join_triangles(cleaned.vertices, cleaned.faces)
        with replacing(output) as tmp:
            write_polygons(tmp, mesh)
    else:
        mesh = PolyMesh(cleaned.vertices, cleaned.faces, np.zeros((0, 4), np.int64))
        write_mesh(trimesh.Trimesh(cleaned.vertices, cleaned.faces, process=False), output)
    return {**cleaned.stats, "output_vertices": len(mesh.vertices), "output_triangles": len(mesh.triangles),
            "output_quads": len(mesh.quads), "quad_ratio": round(mesh.quad_fraction, 4)}


def _summary(stats: dict, output: Path) -> str:
    first = stats.get("time_to_first_face")
    first_text = f"{first:.2f} s" if first is not None else "n/a"
    shape = ""
    if "pieces" in stats:
        quads = f", {stats['output_quads']} quads" if stats.get("output_quads") else ""
        shape = f"; {stats['pieces']} pieces, {stats['boundary_edges']} boundary edges{quads}"
    return (
        f"{stats['faces']} faces, {stats['tokens']} tokens in {stats['seconds']:.2f} s "
        f"({stats['tokens_per_second']:.0f} tok/s, SCR {stats.get('scr', 1.0):.2f}, first face {first_text}, "
        f"{stats['mode']}, stop: {stats.get('stop_reason', '?')}, valid: {stats.get('valid')}{shape}) -> {output}"
    )


def write_json(target: str | Path | None, data: dict) -> None:
    """Write `data` as JSON to a file, to stdout for '-', or nowhere for None."""
    if target is None:
        return
    text = json.dumps(data, indent=2, default=_jsonable)
    if str(target) == "-":
        print(text)
    else:
        atomic_write(target, text + "\n")


@contextlib.contextmanager
def replacing(output: Path) -> Iterator[Path]:
    """A temporary path that replaces OUT in one step when the block succeeds: a failed write
    (full disk, file-size limit) leaves the old file as it was."""
    try:
        with atomic_path(output) as tmp:
            yield tmp
    except OSError as exc:
        raise OSError(f"cannot write {output}: {exc.strerror or exc}") from exc


def write_mesh(mesh, output: Path) -> None:
    """Encode in memory, then replace OUT in one step."""
    data = mesh.export(file_type=output.suffix.lower().lstrip("."))
    with replacing(output) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def _jsonable(value):
    """numpy scalars and arrays in stats become plain JSON."""
    return value.tolist() if hasattr(value, "tolist") else str(value)
