"""`specmesh tokenize`: encode mesh files as BPT tokens and check that they decode exactly."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

COLUMNS = ("vertices", "faces", "quantized_faces", "tokens", "tokens_per_face", "roundtrip_exact", "seconds")


def configure(p: argparse.ArgumentParser) -> None:
    p.description = ("Normalize, quantize (7 bits) and BPT-encode each mesh file, decode the tokens "
                     "again and compare with the quantized faces. A file that fails is reported and the others "
                     "still run; the exit status is non-zero if any failed.")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="mesh files (obj, ply, stl, glb, off, ...)")
    p.add_argument("--json", action="store_true", help="one JSON object per file per line instead of a table")
    p.set_defaults(func=run)


def tokenize_file(path: Path) -> dict:
    """Statistics of one file's tokenization; raises ValueError for a bad file."""
    from backend.mesh.io import load_mesh
    from backend.tokenizer.bpt import decode, encode, face_set, normalize_and_quantize

    mesh = load_mesh(path)
    start = time.perf_counter()
    qmesh, _ = normalize_and_quantize(mesh)
    tokens = encode(qmesh)
    seconds = time.perf_counter() - start
    return {
        "file": str(path),
        "vertices": len(mesh.vertices),
        "faces": len(mesh.faces),
        "quantized_faces": len(qmesh.faces),
        "tokens": len(tokens),
        "tokens_per_face": round(len(tokens) / len(qmesh.faces), 4),
        "roundtrip_exact": face_set(decode(tokens)) == face_set(qmesh),
        "seconds": round(seconds, 6),  # normalize + quantize + encode
    }


def run(args: argparse.Namespace) -> int:
    failed = 0
    if not args.json:
        print(f"{'file':<32} {'verts':>7} {'faces':>7} {'qfaces':>7} {'tokens':>7} {'tok/face':>8} {'exact':>5} {'ms':>8}")
    for path in args.files:
        try:
            row = tokenize_file(path)
        except ValueError as exc:  # MeshLoadError included: report and go on with the next file
            failed += 1
            if args.json:
                print(json.dumps({"file": str(path), "error": str(exc)}), flush=True)
            else:
                print(f"specmesh tokenize: error: {exc}", file=sys.stderr)
            continue
        failed += not row["roundtrip_exact"]
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(f"{row['file'][-32:]:<32} {row['vertices']:>7} {row['faces']:>7} {row['quantized_faces']:>7} "
                  f"{row['tokens']:>7} {row['tokens_per_face']:>8.3f} {str(row['roundtrip_exact']):>5} "
                  f"{row['seconds'] * 1e3:>8.2f}")
    return 1 if failed else 0
