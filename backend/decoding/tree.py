"""Tree drafts: the backbone verifies a small tree of the heads' likeliest continuations in its one
forward pass, instead of a single drafted path (tree attention as in SpecInfer and Medusa, here
on XSpecMesh's heads). When the best draft is rejected, a sibling can still be accepted.

Why it pays: a forward over 9 tokens costs only 0-40 % more than one over 5 on the CPU and about
the same on a GPU (`benchmarks/model_speed.py`), while every extra accepted token saves a pass.
The tree is verified by threshold (`accepted_path`) or losslessly (`sampled_path`).

Nodes are chosen best-first by the product of the heads' probabilities along their path (softmax
of the grammar-masked head logits at the sampling temperature, 1 for greedy decoding, so that
greedy decoding still gets K_s candidates per node), up to `budget` nodes. A child's product
never exceeds its parent's, so the chosen set is closed under parents and every parent is listed
before its children. Row 0 of a tree is the last accepted token x_n; node i is row i + 1."""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from backend.decoding.grammar_mask import GrammarMasks, clone_state
from backend.decoding.sampling import SamplingConfig, sample
from backend.tokenizer.grammar import GrammarState
from backend.tokenizer.vocab import EOS

PRUNE = 1e-5  # paths less likely than this under the heads are not drafted (PTS prunes alike)


@dataclass
class DraftTree:
    tokens: list[int]   # node tokens, parents first
    parents: list[int]  # row of each node's parent (0 = x_n)
    masks: Tensor       # [1 + N, V]: grammar mask after x_n (row 0) and after each node's path

    @property
    def rows(self) -> int:
        return 1 + len(self.tokens)

    def attention(self) -> Tensor:
        """[rows, rows] bool: each row sees itself and its ancestors."""
        visible = torch.eye(self.rows, dtype=torch.bool)
        for node, parent in enumerate(self.parents):
            visible[node + 1] |= visible[parent]
        return visible

    def children(self) -> dict[int, dict[int, int]]:
        """Row -> {drafted token: child row}, children in node order (siblings' tokens differ)."""
        children: dict[int, dict[int, int]] = {}
        for node, (parent, token) in enumerate(zip(self.parents, self.tokens)):
            children.setdefault(parent, {})[token] = node + 1
        return children

    def accepted_path(self, probs: Tensor, delta: float) -> list[int]:
        """Threshold verification: rows of the longest chain the backbone accepts, walking down
        from x_n: at each row the child whose token has the highest backbone probability p (row's
        distribution), if p > delta. One gather brings every node's p to the host."""
        if not self.tokens:
            return []
        parents = torch.tensor(self.parents, device=probs.device)
        node_p = [0.0, *probs[parents, torch.tensor(self.tokens, device=probs.device)].tolist()]  # by row
        children, path, row = self.children(), [], 0
        while row in children:
            best = max(children[row].values(), key=node_p.__getitem__)  # the first of equals, like argmax
            if not node_p[best] > delta:
                break
            row = best
            path.append(row)
        return path

    def sampled_path(self, probs: Tensor, generator: torch.Generator | None) -> tuple[list[int], int]:
        """Lossless verification ("exact"): draw the backbone's own token at every row (one draw
        per row, made together), follow the child that drafted the draw, and stop at the first
        row whose draw no child drafted. Returns the accepted rows and the token drawn at the last
        row, which comes next. Every token is a sample of the backbone's distribution given the
        accepted prefix, as in AR decoding; the tree only decides how many arrive in one pass."""
        draws = sample(probs, generator).tolist()
        children, path, row = self.children(), [], 0
        while draws[row] in children.get(row, {}):
            row = children[row][draws[row]]
            path.append(row)
        return path, draws[row]


def build_tree(head_logits: Tensor, state: GrammarState, masks: GrammarMasks, sampling: SamplingConfig,
               k: int, budget: int) -> DraftTree:
    """The `budget` likeliest nodes of the top-`k` tree over the heads' distributions [L, V]
    (head d gives depth d + 1), every node under the grammar state its path reaches. The heads'
    logits come to the host once and the search runs in numpy: a handful of tiny kernels and a
    device sync per node would cost more than the search itself."""
    temperature = 1.0 if sampling.greedy else sampling.temperature
    logits = head_logits.float().cpu().numpy() / temperature
    tops: dict[tuple[int, tuple], list[tuple[float, int]]] = {}
    order = itertools.count()  # tie-breaker, so the heap never compares states
    heap: list[tuple[float, int, int, int, int, GrammarState]] = []

    def push_children(row: int, path_state: GrammarState, weight: float, depth: int) -> None:
        if depth > len(logits):
            return
        key = (depth, path_state.mask_key())
        if key not in tops:
            tops[key] = top_k_probabilities(logits[depth - 1], masks.allowed_ids(path_state), k)
        for p, token in tops[key]:
            if weight * p >= PRUNE:
                heapq.heappush(heap, (-weight * p, next(order), row, depth, token, path_state))

    tokens: list[int] = []
    parents: list[int] = []
    node_masks = [masks(state)]
    push_children(0, state, 1.0, 1)
    while heap and len(tokens) < budget:
        neg_weight, _, parent, depth, token, parent_state = heapq.heappop(heap)
        node_state = clone_state(parent_state)
        node_state.advance(token)
        tokens.append(token)
        parents.append(parent)
        node_masks.append(masks(node_state))
        if token != EOS:
            push_children(len(tokens), node_state, -neg_weight, depth + 1)
    return DraftTree(tokens, parents, torch.stack(node_masks))


def top_k_probabilities(logits: np.ndarray, allowed: np.ndarray, k: int) -> list[tuple[float, int]]:
    """(p, token) of the k likeliest tokens, likeliest first, of softmax(logits) restricted to the
    `allowed` token ids; tokens whose p underflows to 0 are left out."""
    values = logits[allowed]
    probs = np.exp(values - values.max())
    probs /= probs.sum()
    pick = np.argpartition(-probs, k - 1)[:k] if len(probs) > k else np.arange(len(probs))
    pick = pick[np.argsort(-probs[pick], kind="stable")]
    return [(float(probs[i]), int(allowed[i])) for i in pick if probs[i] > 0]
