"""`specmesh data build|preview`: the procedural artist-mesh dataset."""

from __future__ import annotations

import argparse
import time


def configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    b = sub.add_parser("build", help="Generate, tokenize and write a sharded dataset.")
    b.add_argument("--count", type=int, required=True, help="number of meshes")
    b.add_argument("--seed", type=int, default=0, help="first item of the split (items seed..seed+count-1)")
    b.add_argument("--out", required=True, help="output directory")
    b.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    b.add_argument("--split", choices=("train", "val", "test"), default="train",
                   help="seed range to draw from; splits never share a mesh (default train)")
    b.add_argument("--shard-size", type=int, default=1000, help="meshes per shard file")
    v = sub.add_parser("preview", help="Write a few .obj per family and a PNG contact sheet.")
    v.add_argument("--out", required=True, help="output directory")
    v.add_argument("--per-family", type=int, default=3, help="meshes per family (default 3)")
    v.add_argument("--seed", type=int, default=0, help="first seed")
    v.add_argument("--families", nargs="*", help="only these families (default all)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "build":
        from backend.data.dataset import build

        start = time.perf_counter()
        out = build(args.count, args.seed, args.out, workers=args.workers, split=args.split,
                    shard_size=args.shard_size)
        seconds = time.perf_counter() - start
        print(f"wrote {args.count} meshes to {out} in {seconds:.1f}s ({args.count / seconds:.1f} meshes/s)")
        return 0
    from backend.data.preview import preview

    sheet = preview(args.out, per_family=args.per_family, seed=args.seed, families=args.families)
    print(f"wrote meshes and {sheet}")
    return 0
