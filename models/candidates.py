"""Candidates from the ANN index, re-ranked exactly by the model: ``/recommend`` above ``package.ann_min_items`` items.

Which models, and how exactly:

- ``interest``: score = user . item (+ the transition and trend priors, off by default). The index
  searches that inner product over the model's own item vectors; the candidates are scored with
  the same formula, so their order and their scores are those of exact scoring. Priors can lift
  an item the inner product would not propose, so their items join the candidates: the transition
  rows of the newest behaviours, the top of the trend table.
- ``hybrid``: score = log_softmax(user . item) + sum_c w_c log_normalised(c). The log-partitions
  are per-request constants, so the order is set by user . item + sum_c w_c log(c + eps). The
  candidates are the index's proposals for the interest part, the item-kNN neighbours of the
  newest behaviours (the only items kNN scores above zero) and the top ``popular`` items of each
  popularity component; they are re-ranked with the hybrid's own formula. The scores returned
  differ from exact scoring by one constant per request, the interest model's log-partition over
  the whole catalogue (which is exactly the full scan the index avoids), and the content
  component's (its text is compared with the candidates' only); the order does not. The content
  component proposes no candidates of its own: an item only it would lift is missed.
- switch-gated models (``*_switch``, the default package): not supported, they score exactly. The
  gate weighs its experts by how well each predicted the newest events, with log-probabilities
  normalised over the whole catalogue; from candidates alone those normalisers, hence the gate,
  would be approximations, not the model. Package ``hybrid`` or ``interest``
  (``evaluate.select_from``) for a catalogue above the threshold (docs/scaling.md).

An item outside every candidate source is missed: that is the recall the benchmark measures.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.baselines import ItemKNN, StaticScores
from models.content import TextSimilarity
from models.hybrid import Hybrid
from models.interface import HybridComponent, ScoringModel
from models.interest import InterestModel
from models.retrieval import INDEX_FILE, AnnConfig, AnnIndex

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnnSettings:
    """How serving uses the index (``package.ann_*`` in params.yaml, recorded in the model's metadata)."""

    min_items: int = 100_000  # catalogue size from which /recommend retrieves candidates; below it scoring is exact
    index: str = "hnsw"       # hnsw | ivf: HNSW keeps recall on the model's 64-wide vectors (docs/scaling.md)
    ef_search: int = 512      # hnsw: search beam per request: recall@10 0.982 at 10^6 items (docs/scaling.md)
    nprobe: int = 32          # ivf: lists searched per request
    candidates: int = 200     # proposals of the index per request
    popular: int = 50         # top items of each popularity component added to the candidates (hybrid)
    nlist: int = 0            # ivf: inverted lists when the index is built (0: sqrt(N))

    @classmethod
    def from_metadata(cls, meta: dict) -> "AnnSettings":
        kinds = {"index": str}
        return cls(**{k: kinds.get(k, int)(meta[f"ann_{k}"]) for k in cls.__dataclass_fields__ if f"ann_{k}" in meta})

    def index_config(self) -> AnnConfig:
        return AnnConfig(kind=self.index, nlist=self.nlist, nprobe=self.nprobe, candidates=self.candidates,
                         ef_search=self.ef_search)

    def effort(self) -> int:
        return self.index_config().effort()


def interest_part(model: ScoringModel) -> InterestModel | None:
    """The interest model whose user . item the index searches, or None where ANN is not supported."""
    if isinstance(model, InterestModel):
        return model
    if isinstance(model, Hybrid):
        return model.base
    return None


@torch.no_grad()
def item_rows(base: InterestModel, idx: torch.Tensor) -> torch.Tensor:
    """(len(idx), D) rows ``idx`` of ``base.item_vectors()``, computed for those rows only (an item
    added or re-texted through /items: recomputing a million rows would take seconds)."""
    text_emb = base.text_emb
    out = torch.zeros(len(idx), base.cfg.dim, dtype=text_emb.dtype, device=text_emb.device)
    if base.text_proj is not None:
        out = out + base.text_proj(text_emb[idx])
    if base.id_emb is not None:
        weight, cold = base.id_emb.weight, base.cold_id
        trained = idx < weight.shape[0]
        out[trained] += weight[idx[trained]]
        c = idx - weight.shape[0]
        added = ~trained & (c < len(cold))
        out[added] += cold[c[added]]
    out[idx == 0] = 0.0
    return out


def item_vectors(model: ScoringModel) -> np.ndarray:
    """(N, D) float32 vectors of items 1..N that the index is built over (its ids are 1..N)."""
    base = interest_part(model)
    if base is None:
        raise ValueError(f"ANN retrieval supports the interest model and the hybrid, not {type(model).__name__}")
    with torch.no_grad():
        return base.item_vectors()[1:].float().cpu().numpy()


def build_index(model: ScoringModel, settings: AnnSettings) -> AnnIndex:
    return AnnIndex.build(item_vectors(model), cfg=settings.index_config())


def package_index(model_dir: Path, model: ScoringModel, settings: AnnSettings) -> Path | None:
    """Write ``ann.faiss`` beside the weights when the catalogue reaches ``min_items`` and the model
    is supported (the package stage); None otherwise."""
    n = model.n_items
    if n < settings.min_items:
        return None
    if interest_part(model) is None:
        log.warning("catalogue of %d items >= package.ann_min_items (%d), but %s is scored exactly: ANN retrieval "
                    "supports interest and hybrid only (models/candidates.py)", n, settings.min_items, type(model).__name__)
        return None
    index = build_index(model, settings)
    path = Path(model_dir) / INDEX_FILE
    index.save(path)
    log.info("ANN index (%s) over %d items written to %s", index.kind, index.ntotal, path)
    return path


class CandidateScorer:
    """What ``Engine.recommend`` calls instead of scoring the whole catalogue."""

    def __init__(self, model: ScoringModel, index: AnnIndex, settings: AnnSettings) -> None:
        base = interest_part(model)
        if base is None:
            raise ValueError(f"ANN retrieval supports the interest model and the hybrid, not {type(model).__name__}")
        self.model, self.base, self.index, self.settings = model, base, index, settings
        with torch.no_grad():
            self.items = base.item_vectors().detach()  # (N+1, D): the scoring vectors, computed once, not per request
        if index.ntotal != len(self.items) - 1:
            raise ValueError(f"the index holds {index.ntotal} items, the model {len(self.items) - 1}")
        self.components: list[tuple[float, HybridComponent]] = (
            [(w, m) for w, m in zip(model.weights.values(), model.components.values()) if w] if isinstance(model, Hybrid) else [])
        self.popular = self._popular()
        # FAISS indexes are not safe to search while an add runs: /items adds on a request thread,
        # /recommend searches on the scoring thread
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model: ScoringModel, model_dir: Path, settings: AnnSettings) -> "CandidateScorer":
        """From the packaged ``ann.faiss``, or built now when the package has none."""
        path = Path(model_dir) / INDEX_FILE
        n = model.n_items
        if path.exists():
            index = AnnIndex.load(path, settings.effort())
            if index.ntotal < n:  # items added since the index was written (the service re-applies /items at load)
                index.add(item_vectors(model)[index.ntotal:], np.arange(index.ntotal + 1, n + 1))
        else:
            log.info("no %s in %s: building the ANN index over %d items now", INDEX_FILE, model_dir, n)
            index = build_index(model, settings)
        return cls(model, index, settings)

    def _popular(self) -> torch.Tensor:
        tops = [m.scores[1:].topk(min(self.settings.popular, len(m.scores) - 1)).indices + 1
                for _, m in self.components if isinstance(m, StaticScores)]
        if self.base.cfg.use_trend:
            row = self.base.trend[-1, 1:]
            tops.append(row.topk(min(self.settings.popular, len(row))).indices + 1)
        return torch.cat(tops).unique() if tops else torch.zeros(0, dtype=torch.long)

    @torch.no_grad()
    def sync(self, updated: list[int] | None = None) -> None:
        """After ``add_items`` / ``set_item_text`` on the model: append the new items' vectors to the
        index (no rebuild) and replace those of ``updated`` positions."""
        n_have, n_now = len(self.items), self.base.text_emb.shape[0]
        if n_now > n_have:
            idx = torch.arange(n_have, n_now)
            rows = item_rows(self.base, idx)
            self.items = torch.cat([self.items, rows])  # before the index: every id it returns has a row
            with self._lock:
                self.index.add(rows.float().numpy(), idx.numpy())
        if updated:
            idx = torch.as_tensor(sorted(set(updated)), dtype=torch.long)
            rows = item_rows(self.base, idx)
            items = self.items.clone()  # a reader mid-request keeps the old tensor
            items[idx] = rows
            self.items = items
            with self._lock:
                self.index.update(idx.numpy(), rows.float().numpy())
        self.popular = self._popular()

    def candidates(self, seq: torch.Tensor, user: torch.Tensor, n_rows: int | None = None) -> torch.Tensor:
        """Positions to re-rank for one history ``seq`` (1, L) with interest vector ``user`` (D,),
        below ``n_rows`` (the item vectors the caller holds; default all)."""
        with self._lock:
            found = torch.from_numpy(self.index.search(user.detach().float().numpy(), self.settings.candidates)[0])
        parts = [found[found > 0], self.popular]
        for _, m in self.components:
            if isinstance(m, ItemKNN):
                parts.append(m.neighbours(seq))
        if self.base.cfg.use_transition:
            recent = seq[:, -self.base.cfg.transition_recent:].reshape(-1)
            parts.append(self.base.transition._gather(recent[recent > 0])[1])
        cand = torch.cat(parts).unique()
        return cand[(cand > 0) & (cand < (len(self.items) if n_rows is None else n_rows))]

    @torch.no_grad()
    def score(self, seq: torch.Tensor, ts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(candidate positions (C,), their scores (C,), interest weights (L,)) of one history (1, L)."""
        items = self.items
        user, weights = self.base.encode(seq, ts, items, last_only=True)
        user, weights = user[0, -1], weights[0, -1]
        cand = self.candidates(seq, user, len(items))
        scores = items[cand] @ user
        if self.base.cfg.use_transition:
            last = torch.zeros_like(seq, dtype=torch.bool)
            last[:, -1] = True
            prior = self.base.transition_prior(seq, last)[0]
            scores = scores + torch.where(cand < len(prior), prior[cand.clamp(max=len(prior) - 1)], 0.0)
        if self.base.cfg.use_trend:
            prior = self.base.trend_prior(None, ts[:, -1])[0]
            scores = scores + torch.where(cand < len(prior), prior[cand.clamp(max=len(prior) - 1)], 0.0)
        for w, m in self.components:  # the hybrid: each component's log_normalised, over the whole catalogue
            if isinstance(m, TextSimilarity):  # its row would cost a pass over every item's text: the candidates' only,
                part = torch.log(m.score_items(seq, cand.clamp(max=m.n_items))[0] + self.model.eps)  # normaliser left out
                scores = scores + w * torch.where(cand <= m.n_items, part, np.log(self.model.eps))
                continue
            row = m.score_all(seq, ts)[0].float()
            z = torch.log(row[1:].clamp(min=0).sum() + (len(row) - 1) * self.model.eps)
            part = torch.log(row[cand.clamp(max=len(row) - 1)].clamp(min=0) + self.model.eps) - z
            scores = scores + w * torch.where(cand < len(row), part, np.log(self.model.eps) - z)
        return cand, scores, weights
