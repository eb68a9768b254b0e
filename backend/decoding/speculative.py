"""XSpecMesh multi-head speculative decoding (Algorithm 1), batch 1: propose -> verify -> commit.

Invariant between passes: `tokens` holds the accepted tokens x_1..x_n; the cache holds BOS and
x_1..x_{n-1} (cache.pos == n); x_n is the backbone's own sample (always accepted) and `hidden`
is the backbone's final hidden state at position n-1, the one that predicted x_n.

One pass (`step`): the heads read that hidden state (and x_n) and the drafter proposes a token tree
(`tree.py`: "is" and "pts" a chain, "tree" the likeliest nodes of the heads' top-K_s tree; every
draft under the grammar state its predecessors reach); ONE backbone forward over [x_n, nodes]
verifies it (threshold: p > delta, or exact: lossless); the accepted rows' K/V are committed to
consecutive slots. The next token is the walk's draw or the backbone's bonus sample after the
accepted path (none after a drafted EOS), so every pass yields 1..D+1 tokens and SCR = tokens /
passes counts honestly. p is the distribution the sampler draws from (grammar mask, temperature,
top-k, top-p); greedy makes it one-hot, so the output equals AR greedy for any delta < 1."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor, nn

from backend.decoding.autoregressive import Clock, ar_step, token_limit
from backend.decoding.constraint import InputConstraint
from backend.decoding.grammar_mask import GrammarMasks, clone_state
from backend.decoding.sampling import SamplingConfig, allowed_distribution, sample
from backend.decoding.tree import PTS_NODES, DraftTree, HeadScores, build_tree, tree_attention
from backend.model.decoder import MeshTransformer
from backend.options import check_decoding
from backend.tokenizer.grammar import GrammarState
from backend.tokenizer.vocab import BOS, EOS


class SpeculativeDecoder:
    """Algorithm 1 as a small state machine; `stream_speculative` drives it. The cache and the
    accepted tokens are attributes so tests can check the rollback."""

    def __init__(self, model: MeshTransformer, heads: nn.Module, latents: Tensor, sampling: SamplingConfig,
                 max_tokens: int, generator: torch.Generator | None, *, delta: float = 0.5,
                 num_heads: int | None = None, draft: str = "is", pts_k: int = 3,
                 verify: str = "threshold", tree_nodes: int = 8, profile: dict | None = None,
                 constraint: InputConstraint | None = None) -> None:
        num_heads = heads.num_heads if num_heads is None else int(num_heads)
        check_decoding(draft=draft, verify=verify, delta=delta, pts_k=pts_k, tree_nodes=tree_nodes,
                       heads=num_heads, trained_heads=heads.num_heads)
        self.model, self.heads, self.latents = model, heads, latents
        self.sampling, self.generator = sampling, generator
        self.delta, self.num_heads, self.draft, self.verify = float(delta), num_heads, draft, verify
        self.pts_k, self.tree_nodes = int(pts_k), int(tree_nodes)
        self.rows = 1 + (self.tree_nodes if draft == "tree" else num_heads)  # most rows a verify pass feeds
        self.limit = token_limit(model, max_tokens)
        self.profile = profile  # section -> seconds, filled when given (`specmesh bench`)
        with torch.inference_mode():
            self.cache = model.new_cache(1, self.limit, latents)
            self.prepared = heads.prepare(latents)  # the heads' latent K/V, once per generation
            self.host_weights = _host_matrices([heads.out_weight(j) for j in range(num_heads)])
        self.masks = GrammarMasks(latents.device, constraint)
        self.state = GrammarState()  # after every accepted token
        self.tokens: list[int] = []
        self.hidden: Tensor | None = None  # [1, d]

    @property
    def finished(self) -> bool:
        return bool(self.tokens) and (self.tokens[-1] == EOS or len(self.tokens) >= self.limit)

    def _accept(self, new: list[int], hidden: Tensor) -> list[int]:
        for token in new:
            self.state.advance(token)
        self.tokens.extend(new)
        self.hidden = hidden.clone()  # not a view of a pass's output (CUDA graphs reuse that memory)
        return new

    @torch.inference_mode()
    def prefill(self) -> list[int]:
        bos = torch.tensor([[BOS]], device=self.latents.device)
        token, hidden = ar_step(self.model, self.cache, bos, self.masks(self.state)[None], self.sampling,
                                self.generator)
        return self._accept([int(token)], hidden)

    @torch.inference_mode()
    def step(self) -> list[int]:
        """One backbone forward pass; returns the 1..D+1 tokens it accepted."""
        clock = Clock(self.profile)
        n = len(self.tokens)
        tree = self.propose(clock)
        clock("tree")
        # A static cache (compiled step) gets every verify pass padded to the same rows.
        pad = self.rows - tree.rows if self.cache.static else 0
        fed = torch.tensor([[self.tokens[-1], *tree.tokens, *[EOS] * pad]], device=self.latents.device)
        _, hidden = self.model(fed, cache=self.cache, tree=tree_attention(tuple(tree.parents), pad), logits=False)
        clock("model")
        probs = allowed_distribution(hidden[0, :tree.rows], self.model.output_weight, tree.masks, self.sampling)
        if self.verify == "exact":
            path, extra = tree.exact_path(probs, self.generator)
        else:
            path, extra = tree.threshold_path(probs, self.delta), None
        accepted = [tree.tokens[r - 1] for r in path]
        last = path[-1] if path else 0
        if accepted and accepted[-1] == EOS:
            new = accepted
        else:  # the token after the accepted path: drawn by the walk, or the backbone's bonus token
            new = [*accepted, int(sample(probs[last], self.generator)) if extra is None else extra]
        clock("sampling")
        self.commit(n, path)
        new = self._accept(new, hidden[:, last])
        clock("host")
        return new

    def commit(self, n: int, path: list[int]) -> None:
        """The accepted nodes sit at slots n + row: move them to n + depth, forget the rest."""
        rows = [n + r for r in path]
        slots = list(range(n + 1, n + 1 + len(path)))
        if rows != slots:
            src, dst = (torch.tensor(x, device=self.cache.k.device) for x in (rows, slots))
            for buffer in (self.cache.k, self.cache.v):
                buffer.index_copy_(3, dst, buffer.index_select(3, src))
        self.cache.pos = n + 1 + len(path)

    # --- proposing ------------------------------------------------------------------------
    def propose(self, clock: Clock) -> DraftTree:
        n = len(self.tokens)
        depth = min(self.num_heads, self.limit - n - 1)
        if depth <= 0:  # at the token limit: a plain AR step
            return DraftTree([], [], self.masks(self.state)[None])
        features = self._head_features(depth)
        clock("heads")
        if self.draft == "is":
            return self._independent(features)
        budget = self.tree_nodes if self.draft == "tree" else PTS_NODES
        scores = HeadScores(features.float().cpu().numpy(), self.host_weights[:depth])
        tree = build_tree(scores, self.state, self.masks, self.sampling, self.pts_k,
                          min(budget, self.cache.max_len - n - 1))  # nodes take cache slots
        return tree if self.draft == "tree" else tree.sample_path(self.generator, self.verify == "exact")

    def _head_features(self, length: int) -> Tensor:
        """The first `length` heads' features [length, d] for the tokens after x_n."""
        assert self.hidden is not None, "prefill() first"
        embedding = None
        if self.heads.token_input:
            embedding = self.model.tok_emb(torch.tensor([self.tokens[-1]], device=self.latents.device))
        # All heads every time (one shape for a compiled draft); the last passes use fewer.
        return self.heads.draft_features(self.hidden, self.prepared, num_heads=self.num_heads,
                                         token_embedding=embedding)[0, :length]

    def _independent(self, features: Tensor) -> DraftTree:
        """IS: each head samples its token under the grammar state the chain so far reaches."""
        state = clone_state(self.state)
        tokens: list[int] = []
        masks = [self.masks(state)]
        qs: list[Tensor] = []
        for head, feature in enumerate(features):
            q = allowed_distribution(feature[None], self.heads.out_weight(head), masks[-1][None], self.sampling)[0]
            token = int(sample(q, self.generator))
            state.advance(token)
            tokens.append(token)
            masks.append(self.masks(state))
            qs.append(q)
            if token == EOS:
                break
        q = torch.stack(qs) if self.verify == "exact" else None
        return DraftTree(tokens, list(range(len(tokens))), torch.stack(masks), q)


def _host_matrices(weights: list[Tensor]) -> list[np.ndarray]:
    """The heads' output matrices as float32 host arrays for tree drafting, each distinct matrix
    converted once (shared heads all read the backbone's)."""
    host: dict[int, np.ndarray] = {}
    for weight in weights:
        if weight.data_ptr() not in host:
            host[weight.data_ptr()] = weight.detach().float().cpu().numpy()
    return [host[weight.data_ptr()] for weight in weights]


def stream_speculative(model: MeshTransformer, heads: nn.Module | None, latents: Tensor,
                       sampling: SamplingConfig, max_tokens: int, generator: torch.Generator | None, *,
                       delta: float = 0.5, num_heads: int | None = None, draft: str = "is", pts_k: int = 3,
                       verify: str = "threshold", tree_nodes: int = 8, profile: dict | None = None,
                       constraint: InputConstraint | None = None) -> Iterator[list[int]]:
    """Yield the tokens accepted by each backbone forward pass until EOS or `max_tokens`; with
    `constraint`, decoding stays on the input mesh."""
    if heads is None:
        raise ValueError("speculative decoding needs drafting heads; this model has none (use mode 'ar')")
    decoder = SpeculativeDecoder(model, heads, latents, sampling, max_tokens, generator, delta=delta,
                                 num_heads=num_heads, draft=draft, pts_k=pts_k, verify=verify,
                                 tree_nodes=tree_nodes, profile=profile, constraint=constraint)
    yield decoder.prefill()
    while not decoder.finished:
        yield decoder.step()
