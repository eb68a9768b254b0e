"""Run one generation to completion: drain `Generator.stream` into a mesh plus its stats.

`specmesh generate`, `eval` and `bench` all need the whole mesh rather than the stream, so the
collecting (and the optional progress bar) lives here once. Best-of-N (`options.attempts`) is
the stream's own business (`Generator.stream`), so the add-on gets it too.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import trimesh
from tqdm import tqdm

from backend.decoding.pipeline import DoneEvent, FacesEvent, GenerateOptions, Generator, ProgressEvent, SourceMesh


@dataclass
class GenerationResult:
    vertices: np.ndarray  # (n, 3) float64, caller's frame
    faces: np.ndarray  # (m, 3) int64
    stats: dict

    def to_trimesh(self) -> trimesh.Trimesh:
        # process=False: keep exactly what the model produced (no merging that could hide defects).
        return trimesh.Trimesh(self.vertices, self.faces, process=False)


def progress_text(event: ProgressEvent) -> str:
    """What the progress line shows besides faces and elapsed time."""
    return f"{event.tokens} tokens, {event.tokens_per_second:.0f} tokens/s, SCR {event.scr:.2f}"


def generate(
    generator: Generator,
    points: np.ndarray,
    normals: np.ndarray,
    options: GenerateOptions,
    progress: bool = False,
    mesh: SourceMesh | None = None,
) -> GenerationResult:
    vertex_chunks: list[np.ndarray] = [np.zeros((0, 3))]
    face_chunks: list[np.ndarray] = [np.zeros((0, 3), np.int64)]
    stats: dict = {}
    # A mesh input is covered with about `options.faces` triangles: a real bar against that. A bare
    # cloud has no target (the face budget is a cap, not a forecast): faces so far, tokens, speed.
    target = options.faces if mesh is not None and options.snap else None
    bar = tqdm(total=target, unit="face", file=sys.stderr, disable=not progress, leave=False, dynamic_ncols=True,
               bar_format=("{n_fmt}/{total_fmt} faces |{bar:20}| {elapsed}{postfix}" if target
                           else "{n_fmt} faces, {elapsed}{postfix}"))
    with bar:
        for event in generator.stream(points, normals, options, mesh=mesh):
            if isinstance(event, FacesEvent):
                vertex_chunks.append(np.asarray(event.vertices, np.float64).reshape(-1, 3))
                face_chunks.append(np.asarray(event.faces, np.int64).reshape(-1, 3))
            elif isinstance(event, ProgressEvent):
                bar.n = event.faces
                bar.set_postfix_str(progress_text(event), refresh=False)
                bar.refresh()
            elif isinstance(event, DoneEvent):
                stats = dict(event.stats)
    return GenerationResult(np.concatenate(vertex_chunks), np.concatenate(face_chunks), stats)
