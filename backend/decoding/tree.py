"""Token trees: the one draft record of speculative decoding, its one builder, and its verification.

Every drafter proposes a `DraftTree` that the backbone verifies in one forward pass (tree attention
as in SpecInfer and Medusa, here on XSpecMesh's heads): "is" and "pts" propose a chain (one node per
depth), "tree" the `tree_nodes` likeliest nodes of the heads' top-K_s tree, so that when the best
draft is rejected a sibling can still be accepted. Row 0 of a tree is the last accepted token x_n;
node i is row i + 1, and every parent is listed before its children.

`build_tree` picks nodes best-first by the product of the heads' probabilities along their path
(softmax of the grammar-masked head logits at the sampling temperature, 1 for greedy decoding, so
that greedy decoding still gets K_s candidates per node). A child's product never exceeds its
parent's, so the chosen set is closed under parents. Verification (`threshold_path`, `exact_path`)
walks down from row 0 over the backbone's distributions `probs` [rows, V]."""

from __future__ import annotations

import functools
import heapq
import itertools
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from backend.decoding.grammar_mask import GrammarMasks, clone_state
from backend.decoding.sampling import SamplingConfig, sample, uniform
from backend.tokenizer.grammar import GrammarState
from backend.tokenizer.vocab import EOS

PRUNE = 1e-5  # paths less likely than this under the heads are never drafted
PTS_NODES = 256  # PTS samples among the deepest nodes of at most this many of the likeliest


@dataclass
class DraftTree:
    tokens: list[int]          # node tokens, parents first
    parents: list[int]         # row of each node's parent (0 = x_n)
    masks: Tensor              # [rows, V] bool: grammar mask after x_n (row 0) and after each node's path
    q: Tensor | None = None    # [rows - 1, V]: for a sampled chain, what node i was drawn from (exact verify)
    weights: list[float] | None = None  # each node's product of head probabilities (build_tree)

    @property
    def rows(self) -> int:
        return 1 + len(self.tokens)

    def attention(self) -> Tensor:
        """[rows, rows] bool: each row sees itself and its ancestors (built once per topology)."""
        return tree_attention(tuple(self.parents))

    def children(self) -> dict[int, dict[int, int]]:
        """Row -> {drafted token: child row}, children in node order (siblings' tokens differ)."""
        children: dict[int, dict[int, int]] = {}
        for node, (parent, token) in enumerate(zip(self.parents, self.tokens)):
            children.setdefault(parent, {})[token] = node + 1
        return children

    def threshold_path(self, probs: Tensor, delta: float) -> list[int]:
        """Rows of the longest chain the backbone accepts: at each row the child whose token has
        the highest backbone p (the first of equals, like argmax), if p > delta. One gather
        brings every node's p to the host."""
        if not self.tokens:
            return []
        parents = torch.tensor(self.parents, device=probs.device)
        node_p = [0.0, *probs[parents, torch.tensor(self.tokens, device=probs.device)].tolist()]
        children, path, row = self.children(), [], 0
        while row in children:
            best = max(children[row].values(), key=node_p.__getitem__)
            if not node_p[best] > delta:
                break
            row = best
            path.append(row)
        return path

    def exact_path(self, probs: Tensor, generator: torch.Generator | None) -> tuple[list[int], int | None]:
        """Lossless verification: (accepted rows, the token drawn at the row after them, or None
        when the whole chain was accepted and the next token is still to be drawn)."""
        if self.q is not None:  # a chain drawn from q: speculative sampling
            count = len(self.tokens)
            rows, index = torch.arange(count, device=probs.device), torch.tensor(self.tokens, device=probs.device)
            ok = uniform((count,), generator, like=probs) * self.q[rows, index] < probs[rows, index]
            k = int(ok.int().cumprod(0).sum())
            if k == count:
                return list(range(1, count + 1)), None
            residual = (probs[k] - self.q[k]).clamp_min(0.0)
            total = residual.sum()
            # p == q leaves no residual mass, but then the draft could not have been rejected
            # (only rounding gets here), so falling back to p keeps the distribution.
            p = torch.where(total > 0, residual / total.clamp_min(1e-30), probs[k])
            return list(range(1, k + 1)), int(sample(p, generator))
        draws = sample(probs, generator).tolist()  # the backbone's own token at every row
        children, path, row = self.children(), [], 0
        while draws[row] in children.get(row, {}):
            row = children[row][draws[row]]
            path.append(row)
        return path, draws[row]

    def chain(self, nodes: list[int], q: Tensor | None = None) -> "DraftTree":
        """The path through `nodes` (rows, root first excluded) as a tree of its own."""
        return DraftTree([self.tokens[r - 1] for r in nodes], list(range(len(nodes))),
                         self.masks[[0, *nodes]], q)

    def sample_path(self, generator: torch.Generator | None, with_q: bool) -> "DraftTree":
        """PTS: one path to a deepest node (or an EOS node), drawn by its product, as a chain.
        It is drawn top-down: at each row a child by the leaf weight under it; with `with_q`
        those conditionals are the chain's q, so that exact verification stays lossless."""
        depth = [0]
        for parent in self.parents:
            depth.append(depth[parent] + 1)
        mass, deepest = [0.0] * self.rows, max(depth)  # leaf weight under each row
        for row in range(self.rows - 1, 0, -1):
            if depth[row] == deepest or self.tokens[row - 1] == EOS:
                mass[row] += self.weights[row - 1]
            mass[self.parents[row - 1]] += mass[row]
        children, nodes, qs, row = self.children(), [], [], 0
        while row in children:
            q = torch.zeros(self.masks.shape[-1], dtype=torch.float64)
            for token, child in children[row].items():
                q[token] = mass[child]
            qs.append(q / q.sum())
            row = children[row][int(sample(qs[-1], generator))]
            nodes.append(row)
        return self.chain(nodes, torch.stack(qs).to(self.masks.device) if with_q and qs else None)


@functools.lru_cache(maxsize=1024)
def tree_attention(parents: tuple[int, ...], pad: int = 0) -> Tensor:
    """[rows + pad, rows + pad] bool, built once per topology: each row sees itself and its
    ancestors; `pad` extra rows (a static-shape pass) see only themselves."""
    visible = torch.eye(1 + len(parents) + pad, dtype=torch.bool)
    for node, parent in enumerate(parents):
        visible[node + 1] |= visible[parent]
    return visible


class HeadScores:
    """The drafting heads' logits for a few token ids at a time, on the host: head d's score of
    token t is features[d] · weights[d][t]. Only the tokens a node's grammar state allows are
    ever scored, so a pass reads a few hundred rows of the [V, d] output matrices, not all of
    them once per head (issue 22)."""

    def __init__(self, features: np.ndarray, weights: list[np.ndarray]) -> None:
        self.features, self.weights = features, weights  # [L, d]; L matrices [V, d]

    def __len__(self) -> int:
        return len(self.features)

    def __call__(self, head: int, ids: np.ndarray) -> np.ndarray:
        return self.weights[head][ids] @ self.features[head]


def build_tree(scores: HeadScores, state: GrammarState, masks: GrammarMasks, sampling: SamplingConfig,
               k: int, budget: int) -> DraftTree:
    """The `budget` likeliest nodes of the top-`k` tree over the heads' distributions (head d
    gives depth d + 1), every node under the grammar state its path reaches. The search runs on
    the host in numpy: a handful of tiny kernels and a device sync per node would cost more than
    the search itself."""
    temperature = 1.0 if sampling.greedy else sampling.temperature
    tops: dict[tuple[int, tuple], list[tuple[float, int]]] = {}
    order = itertools.count()  # tie-breaker, so the heap never compares states
    heap: list[tuple[float, int, int, int, int, GrammarState]] = []

    def push_children(row: int, path_state: GrammarState, weight: float, depth: int) -> None:
        if depth > len(scores):
            return
        key = (depth, path_state.mask_key())
        if key not in tops:
            allowed = masks.allowed_ids(path_state)
            tops[key] = top_k_probabilities(scores(depth - 1, allowed) / temperature, allowed, k)
        for p, token in tops[key]:
            if weight * p >= PRUNE:
                heapq.heappush(heap, (-weight * p, next(order), row, depth, token, path_state))

    tokens: list[int] = []
    parents: list[int] = []
    weights: list[float] = []
    node_masks = [masks(state)]
    push_children(0, state, 1.0, 1)
    while heap and len(tokens) < budget:
        neg_weight, _, parent, depth, token, parent_state = heapq.heappop(heap)
        node_state = clone_state(parent_state)
        node_state.advance(token)
        tokens.append(token)
        parents.append(parent)
        weights.append(-neg_weight)
        node_masks.append(masks(node_state))
        if token != EOS:
            push_children(len(tokens), node_state, -neg_weight, depth + 1)
    return DraftTree(tokens, parents, torch.stack(node_masks), weights=weights)


def top_k_probabilities(values: np.ndarray, allowed: np.ndarray, k: int) -> list[tuple[float, int]]:
    """(p, token) of the k likeliest tokens, likeliest first, of the softmax of `values`, the
    logits of the `allowed` token ids; tokens whose p underflows to 0 are left out."""
    probs = np.exp(values - values.max())
    probs /= probs.sum()
    pick = np.argpartition(-probs, k - 1)[:k] if len(probs) > k else np.arange(len(probs))
    pick = pick[np.argsort(-probs[pick], kind="stable")]
    return [(float(probs[i]), int(allowed[i])) for i in pick if probs[i] > 0]
