"""Generation options, their choices and bounds, in one torch-free module.

The pipeline, the decoders, `specmesh generate`/`eval`/`bench`, the server's request validator and
the docs all read the names, defaults and limits from here, so they cannot drift apart. Nothing
here imports torch: the server validates requests and the CLI builds its parser without it."""

from __future__ import annotations

from dataclasses import dataclass, fields

MODES = ("ar", "speculative")          # speculative falls back to ar when the model has no heads
DRAFTS = ("is", "pts", "tree")         # independent sampling, probability-tree path, token tree
VERIFICATIONS = ("threshold", "exact")  # accept while p > delta (paper) | lossless speculative sampling
DEVICES = ("auto", "cpu", "cuda")
SYMMETRY_AXES = ("x", "y", "z")  # mirror planes: through the input's centre, across this axis

MAX_HEADS = 8          # drafting heads a request may ask for (more than trained are clamped)
MAX_FACES = 20000
MAX_SEED = 2**31 - 1

# Numeric bounds (inclusive), checked by GenerateOptions and by the server's request validator.
BOUNDS: dict[str, tuple[float, float]] = {
    "delta": (0.0, 1.0),
    "pts_k": (1, 16),
    "tree_nodes": (1, 64),
    "temperature": (0.01, 2.0),
    "top_k": (0, 10000),
    "top_p": (0.01, 1.0),
    "max_faces": (1, MAX_FACES),
    "faces": (4, MAX_FACES),
    "seed": (0, MAX_SEED),
    "attempts": (1, 16),
}
CHOICES: dict[str, tuple[str, ...]] = {"mode": MODES, "draft": DRAFTS, "verify": VERIFICATIONS}
# Decoding internals: `specmesh generate --help` lists these in its "advanced" group.
ADVANCED = ("draft", "pts_k", "tree_nodes", "verify", "top_k", "top_p")


@dataclass
class GenerateOptions:
    mode: str = "speculative"  # "ar" | "speculative"
    delta: float = 0.5         # acceptance threshold of threshold verification
    heads: int | None = None   # drafting heads to use; None = all the model has
    # Tree drafts measured fastest on the shipped model (docs/bench); "is" is the paper's sampler.
    draft: str = "tree"        # "is" | "pts" | "tree"
    pts_k: int = 2             # K_s: candidates per head for "pts" and "tree"
    tree_nodes: int = 8        # drafted tokens verified per pass with "tree"
    verify: str = "threshold"  # "threshold" (paper) | "exact" (lossless speculative sampling)
    temperature: float = 0.5
    top_k: int = 50            # 0 disables top-k
    top_p: float = 0.95        # 1.0 disables top-p
    greedy: bool = False
    max_faces: int = 2000      # hard cap on decoded faces
    # Mesh inputs: the triangle count to aim for (the candidates are the input decimated to it;
    # a closed piece made of all of them has about this many faces).
    faces: int = 300
    # Mesh inputs: lay the candidates out for quads (a quad remesh where it keeps the shape).
    quads: bool = False
    seed: int = 0
    # Mesh inputs: every vertex is one of the input's decimated vertices (backend.mesh.candidates).
    snap: bool = True
    attempts: int = 1          # samples (seeds seed, seed+1, ...); the closest to the input is kept
    # Mesh inputs: decode one half and mirror it when the input is symmetric about the plane
    # through its centre across this axis (backend.mesh.symmetry); None: off.
    symmetry: str | None = None

    def __post_init__(self) -> None:
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        for name, (low, high) in BOUNDS.items():
            value = getattr(self, name)
            if name == "temperature" and self.greedy:
                continue
            if not low <= value <= high:
                raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
        if self.symmetry is not None and self.symmetry not in SYMMETRY_AXES:
            raise ValueError(f"symmetry must be one of {SYMMETRY_AXES} (or None for off), got {self.symmetry!r}")
        if self.heads is not None and self.heads < 1:  # above the trained count: clamped by the pipeline
            raise ValueError(f"heads must be >= 1 (or None for all), got {self.heads}")

    def sampling(self):
        """The decoders' SamplingConfig (imports torch)."""
        from backend.decoding.sampling import SamplingConfig

        return SamplingConfig(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p,
                              greedy=self.greedy)


DEFAULTS = GenerateOptions()
OPTION_NAMES = tuple(f.name for f in fields(GenerateOptions))


def check_decoding(*, draft: str, verify: str, delta: float, pts_k: int, tree_nodes: int, heads: int,
                   trained_heads: int) -> None:
    """The decoder's own arguments (it may be called without GenerateOptions): ValueError if out of range."""
    if not 1 <= heads <= trained_heads:
        raise ValueError(f"num_heads must be in 1..{trained_heads} (heads trained), got {heads}")
    GenerateOptions(draft=draft, verify=verify, delta=delta, pts_k=pts_k, tree_nodes=tree_nodes)
