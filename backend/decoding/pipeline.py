"""Point cloud in, stream of face events out: what `specmesh generate`, `serve`, `eval` and
`bench` all run.

`Generator.stream` validates the cloud, fits BPT's normalization on it, resamples it to the
model's point count, encodes it, runs the AR or speculative decoder, turns tokens into faces with
the `IncrementalDecoder`, merges vertices by quantized coordinate and maps them back to the
caller's frame. One FacesEvent per forward pass that completed faces, so a viewer sees the mesh
grow at the decoder's pace."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from backend.decoding.autoregressive import stream_ar, token_limit
from backend.decoding.sampling import make_generator
from backend.decoding.speculative import stream_speculative
from backend.decoding.constraint import InputConstraint, input_constraint
from backend.device import resolve_device
from backend.inputs import check_cloud, estimate_normals, resample
from backend.mesh.candidates import candidate_grid
from backend.mesh.metrics import cloud_chamfer
from backend.mesh.normalize import Normalization
from backend.mesh.quantize import dequantize
from backend.mesh.reconstruct import reconstruct
from backend.mesh.symmetry import Mirror, Symmetry, check as check_symmetry
from backend.model.config import ModelConfig
from backend.model.decoder import MeshTransformer, count_parameters
from backend.model.heads import DraftHeads
from backend.model.io import load_model
from backend.options import GenerateOptions
from backend.tokenizer.incremental import IncrementalDecoder

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL_DIR = REPO_ROOT / "models" / "default"
MODEL_DIR_ENV = "SPECMESH_MODEL_DIR"
PROGRESS_INTERVAL = 0.2  # seconds between ProgressEvents
# A weak model can fall into a loop that repeats vertices and never adds a face; a real face costs
# about 2.6 tokens and a new patch fewer than 10, so this many tokens without a new face is a loop.
STALL_TOKENS = 128
SourceMesh = tuple[np.ndarray, np.ndarray]  # (vertices (n, 3), faces (m, 3)) of a mesh input


@dataclass
class FacesEvent:
    vertices: np.ndarray  # float64 (k, 3): the NEW vertices, caller's frame
    faces: np.ndarray     # int64 (m, 3): indices into all vertices sent so far


@dataclass
class ProgressEvent:
    tokens: int
    faces: int
    forward_passes: int
    elapsed: float  # seconds since the generation started (point encoding included)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def scr(self) -> float:
        """Tokens per backbone forward pass so far."""
        return self.tokens / self.forward_passes if self.forward_passes else 0.0


@dataclass
class DoneEvent:
    stats: dict
    tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # the whole sequence


Event = FacesEvent | ProgressEvent | DoneEvent


class MeshAssembler:
    """Quantized face corners -> indexed mesh in the caller's frame, built incrementally.
    Vertices are merged by quantized coordinate; zero-area faces (collinear corners, which the
    grammar cannot rule out) and repeats of a face already made (same three vertices) are
    dropped and counted. With a `mirror`, each face comes with its mirror image (one half decoded,
    backend.mesh.symmetry): the plane's vertices are their own images, so the halves share them."""

    def __init__(self, normalization: Normalization, mirror: Mirror | None = None) -> None:
        self.normalization = normalization
        self.mirror = mirror
        self.per_face = 1 if mirror is None else 2  # faces made per decoded face
        self.index: dict[tuple[int, int, int], int] = {}
        self.num_faces = 0
        self.degenerate = 0
        self.duplicates = 0
        self._faces: set[frozenset[int]] = set()

    def room(self, max_faces: int) -> int:
        """Decoded faces that may still be added without going past `max_faces` in all."""
        return max(max_faces - self.num_faces, 0) // self.per_face

    def add(self, corners: list[np.ndarray]) -> FacesEvent | None:
        new_vertices: list[tuple[int, int, int]] = []
        faces: list[list[int]] = []
        if self.mirror is not None:
            corners = [made for face in corners for made in (face, self.mirror.image(face))]
        for face in corners:
            if not np.cross(face[1] - face[0], face[2] - face[0]).any():
                self.degenerate += 1
                continue
            row = []
            for corner in map(tuple, face.tolist()):
                if corner not in self.index:
                    self.index[corner] = len(self.index)
                    new_vertices.append(corner)
                row.append(self.index[corner])
            if frozenset(row) in self._faces:
                self.duplicates += 1
                continue
            self._faces.add(frozenset(row))
            faces.append(row)
        if not faces:
            return None
        self.num_faces += len(faces)
        vertices = self.normalization.invert(dequantize(np.asarray(new_vertices, np.int64).reshape(-1, 3)))
        return FacesEvent(vertices, np.asarray(faces, np.int64))


def _symmetry(options: GenerateOptions, mesh: SourceMesh | None) -> Symmetry | None:
    """The symmetry check asked for by `options` (None: not asked for)."""
    if options.symmetry is None:
        return None
    if mesh is None or not options.snap:
        return Symmetry(options.symmetry, None, "it needs a mesh input decoded on its surface")
    return check_symmetry(mesh[0], mesh[1], options.symmetry, options.seed)


def resolve_model_dir(model_dir: str | Path | None) -> Path:
    if model_dir is None:
        model_dir = os.environ.get(MODEL_DIR_ENV) or DEFAULT_MODEL_DIR
    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no model at {path} (expected config.json and model.safetensors); "
                                f"pass a model directory or set {MODEL_DIR_ENV}")
    return path


def _stop_reason(detok: IncrementalDecoder, faces: int, max_faces: int, tokens_since_face: int,
                 cancel: threading.Event | None) -> str | None:
    if detok.finished:
        return "eos"
    if faces >= max_faces:
        return "max_faces"
    if tokens_since_face >= STALL_TOKENS:
        return "stalled"
    if cancel is not None and cancel.is_set():
        return "cancelled"
    return None


@dataclass
class _Run:
    """One generation's running totals, across the contexts it decodes."""
    started: float
    assembler: MeshAssembler
    profile: dict[str, float] | None
    tokens: list[int] = field(default_factory=list)
    passes: int = 0
    contexts: int = 0
    first_face: float | None = None


class Generator:
    profile = False  # True: DoneEvent stats carry "profile", seconds per decoding section (bench)

    def __init__(self, model: MeshTransformer, heads: DraftHeads | None, config: ModelConfig,
                 name: str = "model") -> None:
        self.model, self.heads, self.config = model.eval(), heads, config
        self.device = next(model.parameters()).device
        self.info = {
            "name": name,
            "device": str(self.device),
            "parameters": count_parameters(model),
            "config": config.to_dict(),
            "heads": 0 if heads is None else heads.num_heads,
            "head_type": None if heads is None else config.head_type,
        }

    @classmethod
    def load(cls, model_dir: str | Path | None = None, device: str = "auto", compile: bool = False) -> "Generator":
        """None -> $SPECMESH_MODEL_DIR or <repo>/models/default; device auto -> cuda if available;
        compile: decode through torch.compile (backend/decoding/compiled.py; eager if it cannot)."""
        path = resolve_model_dir(model_dir)
        model, heads, config = load_model(path, resolve_device(device))
        generator = cls(model, heads, config, name=path.name)
        if compile:
            from backend.decoding.compiled import compile_decoding

            generator.info["compiled"] = compile_decoding(generator.model, generator.heads)
        return generator

    def stream(self, points: np.ndarray, normals: np.ndarray | None, options: GenerateOptions,
               cancel: threading.Event | None = None, mesh: SourceMesh | None = None) -> Iterator[Event]:
        """`mesh` (vertices, faces in the points' frame), when the input was a mesh, gives the
        vertex candidates (read by models trained with them) and, with `options.snap`, keeps
        decoding on the input mesh (backend.decoding.constraint).

        With `options.attempts` N > 1 (best-of-N), N generations run with seeds seed..seed+N-1,
        reporting progress only, and the one closest to the input cloud (Chamfer distance) comes
        as one FacesEvent before the DoneEvent: nothing streams live then.

        A bare cloud (no `mesh`) with `options.snap` is decoded on a surface reconstructed from it
        (backend.mesh.reconstruct), or by the model alone when there is none; stats say which."""
        if mesh is None and options.snap:
            yield from self._on_surface(points, normals, options, cancel)
            return
        if options.attempts == 1:
            yield from self._stream_once(points, normals, options, cancel, mesh)
            return
        attempts: list[tuple[list[FacesEvent], DoneEvent]] = []
        scores: list[float] = []
        for attempt in range(options.attempts):
            single = dataclasses.replace(options, seed=options.seed + attempt, attempts=1)
            faces: list[FacesEvent] = []
            for event in self._stream_once(points, normals, single, cancel, mesh):
                if isinstance(event, FacesEvent):
                    faces.append(event)
                elif isinstance(event, ProgressEvent):
                    yield event
                else:
                    attempts.append((faces, event))
            triangles = np.concatenate([np.zeros((0, 3), np.int64)] + [e.faces for e in faces])
            vertices = np.concatenate([np.zeros((0, 3))] + [e.vertices for e in faces])
            scores.append(cloud_chamfer(points, vertices, triangles) if len(triangles) else float("inf"))
            if attempts[-1][1].stats["stop_reason"] == "cancelled":
                break
        kept = int(np.argmin(scores))
        faces, done = attempts[kept]
        if faces:
            yield FacesEvent(np.concatenate([e.vertices for e in faces]), np.concatenate([e.faces for e in faces]))
        yield DoneEvent({**done.stats, "attempts": len(scores), "attempt_chamfer": [round(x, 6) for x in scores],
                         "attempt_kept": kept}, done.tokens)

    def _on_surface(self, points: np.ndarray, normals: np.ndarray | None, options: GenerateOptions,
                    cancel: threading.Event | None) -> Iterator[Event]:
        points, normals = check_cloud(points, normals)  # a bad cloud fails as it would without this
        surface = reconstruct(points, normals)
        inner = options if surface.mesh is not None else dataclasses.replace(options, snap=False)
        for event in self.stream(points, normals, inner, cancel, surface.mesh):
            if isinstance(event, DoneEvent):
                event.stats.update(surface.stats)
            yield event

    def _stream_once(self, points: np.ndarray, normals: np.ndarray | None, options: GenerateOptions,
                     cancel: threading.Event | None, mesh: SourceMesh | None) -> Iterator[Event]:
        started = time.perf_counter()
        symmetry = _symmetry(options, mesh)
        mirror = Mirror.of(*mesh, options.symmetry) if symmetry is not None and symmetry.applied else None
        normalization, latents, constraint = self.encode(points, normals, options, mesh, mirror)
        run = _Run(started, MeshAssembler(normalization, mirror), {} if self.profile else None)
        # The model's context holds max_seq_len tokens; past it, decoding goes on from a fresh
        # context while the constraint carries the faces made (patches start on their boundary).
        while True:
            faces_before = run.assembler.num_faces
            stop_reason = yield from self._segment(latents, options, constraint, run, cancel)
            if (constraint is None or stop_reason not in ("max_tokens", "stalled")
                    or run.assembler.num_faces == faces_before or constraint.may_end):
                break
        if constraint is not None and stop_reason not in ("cancelled", "max_faces"):  # what the model left open
            filled = constraint.finish()
            if mirror is not None:  # where the half's border leaves the plane
                filled += mirror.seal(constraint.mesh, constraint.cells, constraint.surface)
            event = run.assembler.add(filled[:run.assembler.room(options.max_faces)])
            if event is not None:
                yield event
        seconds = time.perf_counter() - started
        yield ProgressEvent(len(run.tokens), run.assembler.num_faces, run.passes, seconds)
        stats = {
            "tokens": len(run.tokens),
            "faces": run.assembler.num_faces,
            "forward_passes": run.passes,
            "seconds": seconds,
            "tokens_per_second": len(run.tokens) / seconds if seconds > 0 else 0.0,
            "time_to_first_face": run.first_face,
            "valid": run.assembler.num_faces > 0,
            "scr": len(run.tokens) / run.passes if run.passes else 0.0,
            "stop_reason": stop_reason,
            **self._decoding_stats(options),
            "degenerate_dropped": run.assembler.degenerate,
            "duplicates_dropped": run.assembler.duplicates,
            "vertices": len(run.assembler.index),
            "contexts": run.contexts,
            # share of the input's surface the faces stand for (mesh inputs decoded on the input)
            "coverage": None if constraint is None else round(constraint.covered_fraction(), 4),
            "candidates": None if constraint is None else constraint.candidates,
            "layout": None if constraint is None else constraint.layout,  # backend.mesh.layout.Layout.kind
            "filled_faces": 0 if constraint is None else constraint.filled,
            "input_pieces": None if constraint is None else len(constraint.pieces),
            "symmetry": None if symmetry is None else symmetry.report(),
        }
        if run.profile is not None:  # seconds per section, summed over passes (`specmesh bench`)
            stats["profile"] = run.profile
        yield DoneEvent(stats, np.asarray(run.tokens, np.int64))

    def _segment(self, latents: torch.Tensor, options: GenerateOptions, constraint: InputConstraint | None,
                 run: "_Run", cancel: threading.Event | None) -> Iterator[Event]:
        """Decode one context's worth of tokens into `run`; -> (as the generator's return value)
        why it stopped."""
        tokens_stream = self._decode(latents, options, run.profile, constraint)
        run.contexts += 1
        detok = IncrementalDecoder()
        tokens_at_last_face = len(run.tokens)
        last_progress = time.perf_counter()
        try:
            for accepted in tokens_stream:
                run.passes += 1
                received = time.perf_counter()
                corners: list[np.ndarray] = []
                for token in accepted:
                    run.tokens.append(token)
                    corners += detok.push(token)
                corners = corners[:run.assembler.room(options.max_faces)]
                if constraint is not None:  # faces that break its rules are left out, the rest wound
                    corners = [face for face in map(constraint.admit, corners) if face is not None]
                event = run.assembler.add(corners)
                now = time.perf_counter()
                if event is not None:
                    run.first_face = now - run.started if run.first_face is None else run.first_face
                    tokens_at_last_face = len(run.tokens)
                    yield event
                stop_reason = _stop_reason(detok, run.assembler.num_faces, options.max_faces,
                                           len(run.tokens) - tokens_at_last_face, cancel)
                if stop_reason is not None:
                    return stop_reason
                if run.profile is not None:
                    run.profile["pipeline"] = run.profile.get("pipeline", 0.0) + time.perf_counter() - received
                if now - last_progress >= PROGRESS_INTERVAL:
                    last_progress = now
                    yield ProgressEvent(len(run.tokens), run.assembler.num_faces, run.passes, now - run.started)
            return "max_tokens"
        finally:
            tokens_stream.close()  # release the decoder's cache now, not at garbage collection

    def _speculative(self, options: GenerateOptions) -> bool:
        return options.mode == "speculative" and self.heads is not None

    def _decoding_stats(self, options: GenerateOptions) -> dict[str, object]:
        """What decoding ran: the mode after the no-heads fallback, the heads and the verification."""
        if not self._speculative(options):
            return {"mode": "ar", "heads_used": 0, "verify": None}
        return {"mode": "speculative", "heads_used": self._num_heads(options), "verify": options.verify}

    def _num_heads(self, options: GenerateOptions) -> int:
        """Heads asked for, clamped to those trained (a UI slider may ask for more)."""
        trained = self.heads.num_heads if self.heads is not None else 0
        return trained if options.heads is None else min(options.heads, trained)

    def encode(self, points: np.ndarray, normals: np.ndarray | None, options: GenerateOptions,
               mesh: SourceMesh | None = None, mirror: Mirror | None = None
               ) -> tuple[Normalization, torch.Tensor, InputConstraint | None]:
        """A point cloud in the caller's frame -> (its normalization, context [1, L, d], the
        input constraint when `mesh` is given and `options.snap`) as generation sees it: BPT's
        normalization, normals estimated when missing, `options.seed` picking the model's points,
        vertex candidates from `mesh` decimated to `options.faces`. With a `mirror` the
        normalization puts its plane on the grid and the constraint covers the half on its
        positive side with half the faces (the model still reads the whole cloud)."""
        points, normals = check_cloud(points, normals)
        normalization = Normalization.fit(points)
        if mirror is not None:
            normalization = mirror.normalization(normalization)
        if normals is None:
            normals = estimate_normals(points)
        points, normals = resample(normalization.apply(points), normals, self.config.n_points, options.seed)
        cells, constraint = None, None
        if mesh is not None and options.snap:
            vertices, faces = normalization.apply(np.asarray(mesh[0], np.float64)), np.asarray(mesh[1], np.int64)
            target, layout = options.faces, None
            if mirror is not None:
                half = mirror.half(vertices, faces)
                layout = mirror.layout(vertices, faces, half, max(options.faces // 2, 2))
                (vertices, faces), target = half, len(layout[1])
            built = input_constraint(vertices, faces, target, options.seed, options.quads, layout_mesh=layout)
            cells, constraint = built if built is not None else (None, None)
            if mirror is not None and constraint is not None:
                mirror.forbid_chords(constraint.cells, constraint.seeds, constraint.edges, constraint.flip)
        # A model that reads candidates gets its number of slots (None: all empty, a bare cloud).
        read = None
        if self.config.n_candidates and cells is not None:
            slots = candidate_grid(dequantize(cells[:self.config.n_candidates]), self.config.n_candidates)
            read = torch.as_tensor(slots, device=self.device)[None]
        dtype = next(self.model.parameters()).dtype
        with torch.inference_mode():
            latents = self.model.encode_points(torch.as_tensor(points, dtype=dtype, device=self.device)[None],
                                               torch.as_tensor(normals, dtype=dtype, device=self.device)[None],
                                               read)
        return normalization, latents, constraint

    def _decode(self, latents: torch.Tensor, options: GenerateOptions, profile: dict[str, float] | None = None,
                constraint: InputConstraint | None = None) -> Iterator[list[int]]:
        generator = make_generator(options.seed)
        max_tokens = token_limit(self.model, self.config.max_seq_len)
        if not self._speculative(options):
            return stream_ar(self.model, latents, options.sampling(), max_tokens, generator, profile=profile,
                             constraint=constraint)
        return stream_speculative(self.model, self.heads, latents, options.sampling(), max_tokens, generator,
                                  delta=options.delta, num_heads=self._num_heads(options), draft=options.draft,
                                  pts_k=options.pts_k, verify=options.verify, tree_nodes=options.tree_nodes,
                                  profile=profile, constraint=constraint)
