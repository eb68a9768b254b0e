"""XSpecMesh multi-head speculative decoding (Algorithm 1), batch 1.

Invariant between passes: `tokens` holds the accepted tokens x_1..x_n; the cache holds BOS and
x_1..x_{n-1} (cache.pos == n); x_n is the backbone's own sample (always accepted) and `hidden`
is the backbone's final hidden state at position n-1, the one that predicted x_n.

One pass: the heads read that hidden state and draft x_{n+1}..x_{n+L} (head d predicts the token
d positions after x_n); the backbone runs ONE forward over [x_n, drafts] at positions n..n+L and
gives its own distribution for x_{n+1}..x_{n+L+1}. Drafts are accepted left to right; at the
first rejection the backbone samples that position itself, and when all are accepted the last
position gives a bonus token. So every pass (the BOS prefill included) yields 1..L+1 tokens and
SCR = tokens / passes counts honestly. Rolling back is `cache.pos = n + 1 + accepted`.

Acceptance ("verify"):
- "threshold" (paper): accept x while p_backbone(x) > delta; resample the rejected position from
  p_backbone. With greedy sampling p_backbone is one-hot on its argmax, so a draft is accepted iff
  it equals the argmax and the output is exactly the AR greedy output for any delta < 1.
- "exact": standard speculative sampling, accept with probability min(1, p(x)/q(x)) and resample
  from norm(max(0, p - q)); the output has exactly the backbone's (processed) distribution.
p and q are the distributions the sampler draws from (grammar mask, temperature, top-k, top-p).

Drafting ("draft"): "is" samples each head independently; "pts" builds the tree of each head's
top-K_s tokens, prunes paths whose probability product falls below 1e-5, and samples one whole
path by its product; "tree" sends the `tree_nodes` likeliest nodes of that top-K_s tree to the
backbone at once and accepts the longest chain of it (`backend/decoding/tree.py`); with
"exact" the tree is verified by drawing the backbone's own token at each node and following the
child that drafted it, which is lossless. Every draft is sampled under the grammar state its
predecessors reach."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from backend.decoding.autoregressive import token_limit
from backend.decoding.grammar_mask import GrammarMasks, clone_state
from backend.decoding.sampling import SamplingConfig, distribution, sample, uniform
from backend.decoding.tree import PRUNE, DraftTree, build_tree
from backend.model.decoder import MeshTransformer
from backend.tokenizer.grammar import GrammarState
from backend.tokenizer.vocab import BOS, EOS

DRAFT_MODES = ("is", "pts", "tree")
VERIFY_MODES = ("threshold", "exact")
PTS_PRUNE = PRUNE


@dataclass
class Draft:
    tokens: list[int]
    masks: Tensor      # [len+1, V]: row j is the grammar mask after x_n and tokens[:j]
    q: Tensor | None   # [len, V]: distribution tokens[j] was drawn from given tokens[:j] (exact mode)


class SpeculativeDecoder:
    """Algorithm 1 as a small state machine; `stream_speculative` drives it. The cache and the
    accepted tokens are attributes so tests can check the rollback."""

    def __init__(self, model: MeshTransformer, heads: nn.Module, latents: Tensor, sampling: SamplingConfig,
                 max_tokens: int, generator: torch.Generator | None, *, delta: float = 0.5,
                 num_heads: int | None = None, draft: str = "is", pts_k: int = 3,
                 verify: str = "threshold", tree_nodes: int = 8) -> None:
        trained = heads.num_heads
        num_heads = trained if num_heads is None else int(num_heads)
        if not 1 <= num_heads <= trained:
            raise ValueError(f"num_heads must be in 1..{trained} (heads trained), got {num_heads}")
        if draft not in DRAFT_MODES:
            raise ValueError(f"draft must be one of {DRAFT_MODES}, got {draft!r}")
        if verify not in VERIFY_MODES:
            raise ValueError(f"verify must be one of {VERIFY_MODES}, got {verify!r}")
        if not 0.0 <= delta <= 1.0:
            raise ValueError(f"delta must be in [0, 1], got {delta}")
        if draft in ("pts", "tree") and not 1 <= pts_k <= 16:
            raise ValueError(f"pts_k must be in 1..16, got {pts_k}")
        if draft == "tree" and not 1 <= tree_nodes <= 64:
            raise ValueError(f"tree_nodes must be in 1..64, got {tree_nodes}")
        self.model, self.heads, self.latents = model, heads, latents
        self.sampling, self.generator = sampling, generator
        self.delta, self.num_heads, self.draft_mode, self.pts_k, self.verify = (
            float(delta), num_heads, draft, int(pts_k), verify)
        self.tree_nodes = int(tree_nodes)
        self.limit = token_limit(model, max_tokens)
        with torch.inference_mode():
            self.cache = model.new_cache(1, self.limit, latents)
            self.prepared = heads.prepare(latents)  # the heads' latent K/V, once per generation
        self.masks = GrammarMasks(latents.device)
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
        self.hidden = hidden
        return new

    @torch.inference_mode()
    def prefill(self) -> list[int]:
        logits, hidden = self.model(torch.tensor([[BOS]], device=self.latents.device), cache=self.cache)
        token = int(sample(distribution(logits[0, -1], self.masks(self.state), self.sampling), self.generator))
        return self._accept([token], hidden[:, -1])

    @torch.inference_mode()
    def step(self) -> list[int]:
        """One backbone forward pass; returns the 1..L+1 tokens it accepted."""
        if self.draft_mode == "tree":
            return self._tree_step()
        n = len(self.tokens)
        draft = self._draft(min(self.num_heads, self.limit - n - 1))
        fed = torch.tensor([[self.tokens[-1], *draft.tokens]], device=self.latents.device)
        logits, hidden = self.model(fed, cache=self.cache)
        probs = distribution(logits[0], draft.masks, self.sampling)  # [L+1, V]
        accepted = self._verify(draft, probs)
        k = len(accepted)
        self.cache.pos = n + 1 + k  # keep x_n and the accepted drafts; forget the rest
        if k < len(draft.tokens):  # rejected at row k: the backbone samples that position
            extra = [self._resample(probs[k], None if draft.q is None else draft.q[k])]
        elif accepted and accepted[-1] == EOS:
            extra = []
        else:  # all accepted: the last row is a free backbone token
            extra = [int(sample(probs[k], self.generator))]
        return self._accept(accepted + extra, hidden[:, k])

    def _tree_step(self) -> list[int]:
        n = len(self.tokens)
        depth = min(self.num_heads, self.limit - n - 1)
        budget = min(self.tree_nodes, self.cache.max_len - n - 1)  # nodes take cache slots
        if depth <= 0 or budget <= 0:  # at the token limit: a plain AR step
            tree = DraftTree([], [], self.masks(self.state)[None])
        else:
            tree = build_tree(self._head_logits(depth), self.state, self.masks, self.sampling, self.pts_k, budget)
        fed = torch.tensor([[self.tokens[-1], *tree.tokens]], device=self.latents.device)
        logits, hidden = self.model(fed, cache=self.cache, tree=tree.attention())
        probs = distribution(logits[0], tree.masks, self.sampling)
        if self.verify == "exact":
            path, extra = tree.sampled_path(probs, self.generator)
        else:
            path, extra = tree.accepted_path(probs, self.delta), None
        # The accepted nodes sit at slots n + row; move them to n + depth, then forget the rest.
        rows, depths = [n + r for r in path], [n + 1 + i for i in range(len(path))]
        if rows != depths:
            self.cache.k[:, :, :, depths] = self.cache.k[:, :, :, rows]
            self.cache.v[:, :, :, depths] = self.cache.v[:, :, :, rows]
        self.cache.pos = n + 1 + len(path)
        accepted = [tree.tokens[r - 1] for r in path]
        last = path[-1] if path else 0
        if accepted and accepted[-1] == EOS:
            return self._accept(accepted, hidden[:, last])
        if extra is None:  # threshold: the backbone samples the position after the accepted branch
            extra = int(sample(probs[last], self.generator))
        return self._accept([*accepted, extra], hidden[:, last])

    def _verify(self, draft: Draft, probs: Tensor) -> list[int]:
        count = len(draft.tokens)
        if count == 0:
            return []
        rows = torch.arange(count, device=probs.device)
        index = torch.tensor(draft.tokens, device=probs.device)
        p = probs[rows, index]
        if self.verify == "threshold":
            ok = p > self.delta
        else:  # accept with probability min(1, p/q), i.e. u * q < p
            u = uniform((count,), self.generator, like=probs)
            ok = u * draft.q[rows, index] < p
        k = int(ok.int().cumprod(0).sum())
        return draft.tokens[:k]

    def _resample(self, p: Tensor, q: Tensor | None) -> int:
        if q is not None:
            residual = (p - q).clamp_min(0.0)
            total = residual.sum()
            # p == q leaves no residual mass, but then the draft could not have been rejected
            # (only rounding gets here), so falling back to p keeps the distribution.
            p = torch.where(total > 0, residual / total.clamp_min(1e-30), p)
        return int(sample(p, self.generator))

    # --- drafting -------------------------------------------------------------------------
    def _draft(self, length: int) -> Draft:
        if length <= 0:  # at the token limit: a plain AR step
            return Draft([], self.masks(self.state).unsqueeze(0), None)
        head_logits = self._head_logits(length)
        if self.draft_mode == "is":
            return self._draft_independent(head_logits)
        return self._draft_tree(head_logits)

    def _head_logits(self, length: int) -> Tensor:
        """The first `length` heads' logits [length, V] for the tokens after x_n."""
        assert self.hidden is not None, "prefill() first"
        embedding = None
        if self.heads.token_input:
            embedding = self.model.tok_emb(torch.tensor([self.tokens[-1]], device=self.latents.device))
        return self.heads.draft(self.hidden, self.prepared, num_heads=length, token_embedding=embedding)[0]

    def _draft_independent(self, head_logits: Tensor) -> Draft:
        state = clone_state(self.state)
        tokens: list[int] = []
        masks = [self.masks(state)]
        qs: list[Tensor] = []
        for logits in head_logits:
            q = distribution(logits, masks[-1], self.sampling)
            token = int(sample(q, self.generator))
            state.advance(token)
            tokens.append(token)
            masks.append(self.masks(state))
            qs.append(q)
            if token == EOS:
                break
        return Draft(tokens, torch.stack(masks), torch.stack(qs) if self.verify == "exact" else None)

    def _draft_tree(self, head_logits: Tensor) -> Draft:
        leaves = probability_tree(head_logits, self.state, self.masks, self.sampling, self.pts_k)
        weights = torch.tensor([w for _, w, _ in leaves], dtype=torch.float64, device=self.latents.device)
        path, _, states = leaves[int(sample(weights, self.generator))]
        masks = torch.stack([self.masks(s) for s in states])
        q = _tree_conditionals(leaves, path, head_logits) if self.verify == "exact" else None
        return Draft(list(path), masks, q)


Leaf = tuple[tuple[int, ...], float, list[GrammarState]]


def probability_tree(head_logits: Tensor, state: GrammarState, masks: GrammarMasks,
                     sampling: SamplingConfig, k: int, prune: float = PTS_PRUNE) -> list[Leaf]:
    """Leaves (path, product of probabilities, grammar states along the path, root first) of the
    top-k tree over the heads' distributions [L, V]. Branches whose product falls below `prune`
    are cut; the deepest level that still has paths is returned (paths ending in EOS stop
    early and stay). A tree with no surviving child returns the empty path."""
    frontier: list[Leaf] = [((), 1.0, [clone_state(state)])]
    for logits in head_logits:
        # One batched distribution + top-k per level: a row per distinct grammar mask.
        groups: dict[tuple, GrammarState] = {}
        for path, _, states in frontier:
            if not _ended(path):
                groups.setdefault(states[-1].mask_key(), states[-1])
        if not groups:
            break
        mask = torch.stack([masks(s) for s in groups.values()])
        values, index = distribution(logits.expand(len(groups), -1), mask, sampling).topk(k, dim=-1)
        top = dict(zip(groups, zip(values.tolist(), index.tolist())))
        children: list[Leaf] = []
        grew = False
        for path, weight, states in frontier:
            if _ended(path):
                children.append((path, weight, states))
                continue
            for p, token in zip(*top[states[-1].mask_key()]):
                if weight * p < prune:
                    continue
                child = clone_state(states[-1])
                child.advance(token)
                children.append(((*path, token), weight * p, [*states, child]))
                grew = True
        if not grew:
            break
        frontier = children
    return frontier


def _ended(path: tuple[int, ...]) -> bool:
    return bool(path) and path[-1] == EOS


def _tree_conditionals(leaves: list[Leaf], path: tuple[int, ...], head_logits: Tensor) -> Tensor:
    """q[j] = probability that path sampling puts token t at depth j given path[:j] (the
    normalized leaf weight under each child), so exact verification stays lossless with PTS."""
    q = torch.zeros(len(path), head_logits.shape[-1], dtype=torch.float64)
    for j in range(len(path)):
        for other, weight, _ in leaves:
            if len(other) > j and other[:j] == path[:j]:
                q[j, other[j]] += weight
    return (q / q.sum(-1, keepdim=True)).to(head_logits.device)


def stream_speculative(model: MeshTransformer, heads: nn.Module | None, latents: Tensor,
                       sampling: SamplingConfig, max_tokens: int, generator: torch.Generator | None, *,
                       delta: float = 0.5, num_heads: int | None = None, draft: str = "is", pts_k: int = 3,
                       verify: str = "threshold", tree_nodes: int = 8) -> Iterator[list[int]]:
    """Yield the tokens accepted by each backbone forward pass until EOS or `max_tokens`."""
    if heads is None:
        raise ValueError("speculative decoding needs drafting heads; this model has none (use mode 'ar')")
    decoder = SpeculativeDecoder(model, heads, latents, sampling, max_tokens, generator, delta=delta,
                                 num_heads=num_heads, draft=draft, pts_k=pts_k, verify=verify,
                                 tree_nodes=tree_nodes)
    yield decoder.prefill()
    while not decoder.finished:
        yield decoder.step()
