"""The pulse hybrid: the interest model's next-item distribution, sharpened by item-to-item evidence.

Why a hybrid: on MovieLens-100K the interest model (text + ids + elapsed time, over the whole
history) and item-kNN (co-occurrence with the last few items) are about equally good alone and
wrong on different users. Adding their log-scores ("late fusion", a product of experts) beat
both by about 20% NDCG@10 over 3 seeds (docs/benchmarks.md), far more than any change to the
interest model itself did.

    score(item) = log_softmax(interest)(item) + sum_c w_c * log_normalised(c)(item)

where ``log_normalised(s) = log(max(s, 0) + eps)`` shifted so that it sums to one in probability
space: each component becomes a distribution over the catalogue, and ``w_c`` says how sharp it
is trusted to be. The weights are picked on the validation split (``fit_hybrid``); a weight of 0
turns a component off, so the hybrid is never worse than the interest model on validation.

Items added after training (``add_items``) have no co-occurrence or popularity yet; kNN would
give them ``log(eps)``, i.e. bury them. Instead they borrow the rows of their nearest trained
items by text, as the interest model borrows id embeddings.
"""
from __future__ import annotations

import itertools
import logging

import numpy as np
import torch
import torch.nn as nn

from models.data import EvalSet, eval_batches
from models.interface import HybridComponent
from models.interest import InterestModel
from models.metrics import metrics_from_ranks, seen_mask, target_ranks

log = logging.getLogger(__name__)


def log_normalised(scores: torch.Tensor, eps: float) -> torch.Tensor:
    """(B, N+1) non-negative scores -> log-probabilities: ``log(s + eps)`` minus its logsumexp."""
    ls = torch.log(scores.float().clamp(min=0) + eps)
    ls[:, 0] = float("-inf")  # padding
    return ls - torch.logsumexp(ls, -1, keepdim=True)


def _fuse(base: torch.Tensor, parts: list[torch.Tensor], weights: tuple[float, ...]) -> torch.Tensor:
    n = min([base.shape[1], *(p.shape[1] for p in parts)])  # items being added meanwhile: score the common prefix
    out = base[:, :n].clone()
    for w, p in zip(weights, parts):
        if w:
            out += w * p[:, :n]
    return out


class Hybrid(nn.Module):
    """Behind the one model interface (``models.interface``: ``ScoringModel``, ``Explainer``); the
    explanation (interest weights) is the interest model's. Its components are ``HybridComponent``s:
    they score, and new items borrow their rows (``borrow_rows``)."""

    def __init__(self, base: InterestModel, components: dict[str, HybridComponent], weights: dict[str, float],
                 eps: float = 1e-3) -> None:
        super().__init__()
        missing = set(components) - set(weights)
        if missing:
            raise ValueError(f"hybrid weights missing for {sorted(missing)}")
        self.base = base
        self.components = nn.ModuleDict(components)
        self.weights = {c: float(weights[c]) for c in components}
        self.eps = eps
        self.warmed: list[int] = []  # catalogue items training never showed, warmed in the components (models.untrained)

    @property
    def text_proj(self) -> nn.Module | None:  # ranks items known only by text, as its base does
        return self.base.text_proj

    @property
    def text_emb(self) -> torch.Tensor:
        return self.base.text_emb

    @property
    def n_items(self) -> int:  # the base's catalogue: components grow first on add_items, scoring reads the common prefix
        return self.base.n_items

    def config(self) -> dict:
        cfg = {"base": "interest", "weights": self.weights, "eps": self.eps}
        return cfg | ({"warmed_items": self.warmed} if self.warmed else {})

    def base_log_probs(self, seq: torch.Tensor, ts: torch.Tensor, now: torch.Tensor | None = None) -> torch.Tensor:
        return self._base_explained(seq, ts, now)[0]

    def _base_explained(self, seq: torch.Tensor, ts: torch.Tensor, now: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        s, w = self.base.score_and_explain(seq, ts, now)
        s = s.float()
        s[:, 0] = float("-inf")
        return torch.log_softmax(s, -1), w

    def component_log_probs(self, seq: torch.Tensor, ts: torch.Tensor, now: torch.Tensor | None = None) -> list[torch.Tensor]:
        return [log_normalised(m.score_all(seq, ts, now), self.eps) for m in self.components.values()]

    def score_all(self, seq: torch.Tensor, ts: torch.Tensor, now: torch.Tensor | None = None) -> torch.Tensor:
        return self.score_and_explain(seq, ts, now)[0]

    def score_and_explain(self, seq: torch.Tensor, ts: torch.Tensor, now: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """(``score_all``, ``interest_weights``): the base model's encoder runs once for both."""
        active = [(w, m) for w, m in zip(self.weights.values(), self.components.values()) if w]  # weight 0: not scored at all
        parts = [log_normalised(m.score_all(seq, ts, now), self.eps) for _, m in active]
        base, weights = self._base_explained(seq, ts, now)
        return _fuse(base, parts, tuple(w for w, _ in active)), weights

    def interest_weights(self, seq: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        return self.base.interest_weights(seq, ts)

    def _neighbours(self, text_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.base.text_proj is None or self.base.cfg.cold_neighbours <= 0:
            return None
        return self.base.text_neighbours(text_rows)

    def add_items(self, text_rows: torch.Tensor) -> None:
        """New items: the base model appends them (text + borrowed id rows); every component
        borrows its evidence from the same text neighbours (zero when the base has no text)."""
        nb = self._neighbours(text_rows.to(self.base.text_emb))
        for m in self.components.values():  # components first: scoring reads the common prefix
            if nb is None or getattr(m, "reads_text", False):  # the content component scores the item's own text
                m.add_items(text_rows)
            else:
                m.borrow_rows(*nb)
        self.base.add_items(text_rows, nb)

    @torch.no_grad()
    def set_item_text(self, index: int, text_row: torch.Tensor) -> None:
        """Replace one item's text; an item added after training also re-borrows its rows (the
        content component reads the new text for every item)."""
        cold = index > self.base.cfg.n_items
        nb = self._neighbours(text_row.to(self.base.text_emb).unsqueeze(0)) if cold else None
        self.base.set_item_text(index, text_row, nb)
        for m in self.components.values():
            if getattr(m, "reads_text", False):
                m.set_item_text(index, text_row)
            elif nb is not None:
                m.borrow_rows(*nb, at=index)


class _ValidScores:
    """The validation users' interest log-probabilities and component log-scores, batch by batch:
    with ``keep``, kept in memory when they fit in ``keep_bytes`` (coordinate ascent makes one pass
    per step, and then each pass only adds), otherwise recomputed at every pass (the full grid
    makes one pass, with every combination in it)."""

    def __init__(self, probe: "Hybrid", valid: EvalSet, batch_size: int, device: str, keep: bool,
                 keep_bytes: float = 1.5e9) -> None:
        self.probe, self.valid, self.batch_size, self.device = probe, valid, batch_size, device
        size = len(valid.targets) * (probe.n_items + 1) * ((1 + len(probe.components)) * 4 + 1)  # scores + the seen mask
        self.kept = list(self._compute()) if keep and size <= keep_bytes else None

    def _compute(self):
        for _, x, exclude in eval_batches(self.valid, self.batch_size, self.device):
            lp = self.probe.base_log_probs(x["seq"], x["ts"], x["now"])
            yield lp, self.probe.component_log_probs(x["seq"], x["ts"], x["now"]), x["targets"], seen_mask(lp, exclude)

    def ndcg(self, combos: list[tuple[float, ...]], k: int) -> np.ndarray:
        """Validation NDCG@k of each weight combination (users in batch order: NDCG is a mean, order-free)."""
        ranks: list[list[np.ndarray]] = [[] for _ in combos]
        for lp, parts, targets, exclude in (self.kept if self.kept is not None else self._compute()):
            for j, w in enumerate(combos):
                r, _ = target_ranks(_fuse(lp, parts, w), targets, exclude)
                ranks[j].append(r.cpu().numpy())
        return np.array([metrics_from_ranks(np.concatenate(r), k)[f"ndcg@{k}"] if r else 0.0 for r in ranks])


def _coordinate_ascent(scores: _ValidScores, values: list[float], n: int, k: int, max_rounds: int = 4
                       ) -> tuple[list[tuple[float, ...]], np.ndarray]:
    """From all weights 0 (the interest model alone), each component in turn takes the grid value
    that gives the best validation NDCG@k with the others fixed; rounds until no weight moves.
    Returns every combination tried and its NDCG@k (the first is all zero)."""
    current = tuple(0.0 for _ in range(n))
    seen = {current: float(scores.ndcg([current], k)[0])}  # every combination scored once, in the order tried
    for _ in range(max_rounds):
        moved = False
        for i in range(n):
            combos = [c for c in (current[:i] + (v,) + current[i + 1:] for v in values) if c not in seen]
            if combos:
                seen.update(zip(combos, (float(x) for x in scores.ndcg(combos, k))))
            best = max((current[:i] + (v,) + current[i + 1:] for v in values), key=lambda c: seen[c])
            if seen[best] > seen[current] + 1e-9:  # strictly better only: a tie keeps the weight it has
                current, moved = best, True
        if not moved:
            break
    return list(seen), np.array(list(seen.values()))


@torch.no_grad()
def fit_hybrid(base: InterestModel, components: dict[str, HybridComponent], valid: EvalSet, grid: tuple[float, ...],
               k: int = 10, device: str = "cpu", eps: float = 1e-3, batch_size: int = 512,
               max_cells: float = 2.0e9) -> tuple[Hybrid, dict]:
    """The hybrid whose component weights give the best validation NDCG@k: every combination of
    ``grid`` values when combinations x validation users x catalogue items is at most ``max_cells``
    (each combination ranks every validation user's whole catalogue: 12-17 s per 10^9 cells on one
    core), otherwise coordinate ascent over the same grid (``_coordinate_ascent``: about a hundred
    combinations instead of 9^4 = 6,561 for four components, at the risk of a local optimum: on one
    synthetic fit it stopped at 0.7114 validation NDCG@10 where the grid's best was 0.7140). Each model
    scores the validation users once when their scores fit in memory; the combinations only add.
    Returns the model and a report of the search (validation NDCG@k per combination tried)."""
    if not components:
        raise ValueError("the hybrid needs at least one component besides the interest model (train.hybrid_with)")
    names = list(components)
    # 0 always: the interest model alone is one of the candidates, so validation never ranks the hybrid below it
    values = sorted({0.0, *(float(g) for g in grid)})
    probe = Hybrid(base, components, {c: 0.0 for c in names}, eps).eval()  # scores on the models' own device
    full_grid = len(values) ** len(names) * len(valid.targets) * (base.n_items + 1) <= max_cells
    scores = _ValidScores(probe, valid, batch_size, device, keep=not full_grid)
    if full_grid:
        combos, method = list(itertools.product(values, repeat=len(names))), "grid"
        ndcg = scores.ndcg(combos, k)
    else:
        combos, ndcg = _coordinate_ascent(scores, values, len(names), k)
        method = "coordinate ascent"
    best = int(np.argmax(ndcg))  # ties: the first tried (on the grid: the smallest weights)
    weights = dict(zip(names, combos[best]))
    log.info("hybrid weights %s (%s, %d combinations): validation ndcg@%d %.4f (interest alone %.4f)",
             weights, method, len(combos), k, ndcg[best], ndcg[0])
    search = {"weights": weights, "valid_ndcg": float(ndcg[best]), "method": method,
              "grid": [{"weights": dict(zip(names, w)), "valid_ndcg": float(v)} for w, v in zip(combos, ndcg)]}
    return Hybrid(base, components, weights, eps).eval(), search
