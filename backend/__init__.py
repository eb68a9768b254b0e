"""SpecMesh backend: BPT mesh transformer with XSpecMesh speculative decoding."""

__version__ = "0.1.0"
