"""Plot the conditioning A/B runs (docs/experiments/conditioning.md): validation loss and the
condition gap on block and offset tokens against training steps, one line per design.

    python benchmarks/plot_conditioning.py docs/experiments/conditioning
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RUNS = {"ab_default": "Perceiver, 64 latents (baseline)", "ab_points": "512 point tokens",
        "ab_candidates": "point tokens + 256 vertex candidates",
        "candidates_long": "candidates, continued (new cosine leg)"}


def main(folder: Path) -> None:
    figure, axes = plt.subplots(1, 3, figsize=(14, 4))
    for stem, label in RUNS.items():
        path = folder / f"{stem}.metrics.jsonl"
        if not path.is_file():
            continue
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        rows = [r for r in rows if "val_loss" in r]
        steps = [r["step"] for r in rows]
        axes[0].plot(steps, [r["val_loss"] for r in rows], marker="o", label=label)
        for ax, token in zip(axes[1:], ("block", "offset")):
            ax.plot(steps, [r["condition_gap"][token]["gap"] for r in rows], marker="o", label=label)
    axes[0].set_title("validation loss (nats/token)")
    axes[1].set_title("condition gap, block tokens (nats)")
    axes[2].set_title("condition gap, offset tokens (nats)")
    for ax in axes:
        ax.set_xlabel("steps from the shipped weights")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    out = folder / "curves.png"
    tmp = out.with_name("curves.tmp.png")
    figure.savefig(tmp, dpi=110)
    tmp.replace(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/experiments/conditioning"))
