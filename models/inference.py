"""Recommendations from a behaviour history: the one code path behind the service and batch scoring.

Input is what the online store holds (item ids and unix timestamps, oldest first); unknown
item ids in a history are ignored, an empty history is a cold start (recent popularity).
Above ``ann.min_items`` items a single request scores the ANN index's candidates only
(``models/candidates.py``); batch scoring (``recommend_many``) stays exact.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from models import artifacts
from models.candidates import AnnSettings, CandidateScorer, interest_part
from models.data import pad_left
from models.interface import ServableModel, require
from models.memo import LikelihoodMemo
from models.metrics import mask_seen
from models.switch import SwitchGate

log = logging.getLogger(__name__)


@dataclass
class Recommendation:
    items: list[dict]
    because: list[dict] = field(default_factory=list)
    cold_start: bool = False
    switch: dict | None = None  # a switch-gated model's view of the user: {in_switch, gate, evidence}


class Engine:
    """One packaged model, loaded for scoring: its catalogue (ids, titles), the cold-start
    fallback, and ``recommend``. The HTTP service (``serving.service.Recommender``) and batch
    scoring (``serving.batch``) both hold one."""

    def __init__(self, model_dir: Path, model_name: str, device: str = "cpu", ann: AnnSettings | None = None,
                 packaged: Mapping[str, Any] | None = None) -> None:
        """``ann``: retrieve candidates from an ANN index and re-rank them exactly when the catalogue
        has at least ``ann.min_items`` items and the model supports it (``models/candidates.py``);
        None, a smaller catalogue or an unsupported model: exact scoring of every item.
        ``packaged``: a packaged model's metadata. Histories are cut to the length the artifact
        records (``artifacts.history_length``), never to a length the caller picks."""
        models = artifacts.load_models(Path(model_dir), device)
        if model_name not in models:
            raise ValueError(f"model '{model_name}' not in {model_dir} (has {sorted(models)})")
        require(models[model_name], ServableModel, f"serving {model_name!r}")
        self.model: ServableModel = models[model_name]
        self.model_name, self.device = model_name, device
        if isinstance(self.model, SwitchGate):  # a user's past evidence is not scored again at every request
            self.model.memo = LikelihoodMemo()
        self.max_len = artifacts.history_length(Path(model_dir), model_name, packaged)
        self.ids = artifacts.load_item_ids(Path(model_dir))
        self.titles = artifacts.load_item_titles(Path(model_dir))
        self.pos = {i: k + 1 for k, i in enumerate(self.ids)}
        fallback = models.get("recent_popularity") or models.get("popularity")
        self.cold_scores = fallback.scores if fallback is not None else torch.zeros(len(self.ids) + 1)
        self.retrieval: CandidateScorer | None = None
        if ann is not None and len(self.ids) >= ann.min_items:
            if interest_part(self.model) is None:
                log.warning("%d items >= ann_min_items %d, but %s scores exactly (ANN supports interest and hybrid)",
                            len(self.ids), ann.min_items, model_name)
            else:
                self.retrieval = CandidateScorer.load(self.model, Path(model_dir), ann)
                log.info("%d items >= ann_min_items %d: %s retrieves %d candidates per request (%s index) and re-ranks them",
                         len(self.ids), ann.min_items, model_name, ann.candidates, ann.index)

    @property
    def ranks_by_text(self) -> bool:
        """Whether items known only by their text (``upsert_items``) can reach the top-k: only a model
        with a text projection, or the content component, scores them; others (SASRec, item-kNN, popularity) give them nothing
        until the next pipeline run trains on them."""
        return getattr(self.model, "text_proj", None) is not None or getattr(self.model, "reads_text", False)

    def upsert_items(self, item_ids: list[str], titles: list[str], text_vectors: torch.Tensor) -> list[str]:
        """Make items recommendable at once: new ids are appended (represented by their text), known
        ids get their title and text vector replaced. Returns the ids that were new.

        Safe next to concurrent ``recommend`` calls without a lock: ids and titles grow before the
        score tensors do, so every index a reader can score already has an id.
        """
        new = [k for k, i in enumerate(item_ids) if i not in self.pos]
        set_text = getattr(self.model, "set_item_text", None)
        for k, i in enumerate(item_ids):
            if i in self.pos:
                self.titles[self.pos[i] - 1] = titles[k]
                if set_text is not None:
                    set_text(self.pos[i], text_vectors[k])
        updated = [self.pos[i] for i in item_ids if i in self.pos]
        if self.retrieval is not None and set_text is not None and updated:  # re-texted items: their index vectors too
            self.retrieval.sync(updated)
        if new:
            base = len(self.ids)
            for k in new:
                self.ids.append(item_ids[k])
                self.titles.append(titles[k])
            shared = self.cold_scores is getattr(self.model, "scores", None)
            if not shared:
                self.cold_scores = torch.cat([self.cold_scores, self.cold_scores.new_zeros(len(new))])
            self.model.add_items(text_vectors[new])
            if shared:
                self.cold_scores = self.model.scores
            if self.retrieval is not None:  # into the ANN index, no rebuild
                self.retrieval.sync()
            for j, k in enumerate(new):  # last: a history can name the item only once its scores exist
                self.pos[item_ids[k]] = base + j + 1
        return [item_ids[k] for k in new]

    def _item(self, idx: int, score: float) -> dict:
        return {"item_id": self.ids[idx - 1], "title": self.titles[idx - 1], "score": round(float(score), 6)}

    @torch.inference_mode()
    def recommend(self, hist_item_ids: list[str], hist_ts: list[int], k: int = 10, exclude_seen: bool = True,
                  n_because: int = 3) -> Recommendation:
        pairs = self._pairs(hist_item_ids, hist_ts)
        if not pairs:
            return self._cold(k)
        seq = np.array([p for p, _ in pairs])[-self.max_len :]
        ts = np.array([t for _, t in pairs])[-self.max_len :]
        # no padding columns: positions count back from the newest behaviour, so the scores are
        # those of a max_len window (models.data.trim_padding), at a fraction of the work
        s = torch.as_tensor(seq, device=self.device).unsqueeze(0)
        t = torch.as_tensor(ts, device=self.device).unsqueeze(0)
        if self.retrieval is not None:  # a large catalogue: the index's candidates, re-ranked by the model
            cand, scores, weights = self.retrieval.score(s, t)
            return self._finish(pairs, seq, scores, weights.cpu().numpy()[-len(seq):], None, k, exclude_seen, n_because, cand)
        scores, weights, switches = self._score(s, t)
        return self._finish(pairs, seq, scores[0], weights[0][-len(seq):], switches[0], k, exclude_seen, n_because)

    @torch.no_grad()
    def recommend_many(self, histories: list[tuple[list[str], list[int]]], k: int = 10, exclude_seen: bool = True,
                       n_because: int = 3, batch_size: int = 64) -> list[Recommendation]:
        """``recommend`` for many users at once (batch scoring): the histories of a batch are
        left-padded to a common width and scored in one pass, which is what makes offline scoring
        fast (padding is masked and positions count back from the newest behaviour, so each row
        scores as it does alone, up to float rounding)."""
        out: list[Recommendation | None] = [None] * len(histories)
        warm = []
        for n, (ids, tss) in enumerate(histories):
            pairs = self._pairs(ids, tss)
            if pairs:
                warm.append((n, pairs))
            else:
                out[n] = self._cold(k)
        for start in range(0, len(warm), batch_size):
            chunk = warm[start:start + batch_size]
            seqs = [np.array([p for p, _ in pairs])[-self.max_len:] for _, pairs in chunk]
            width = max(len(q) for q in seqs)
            s = torch.as_tensor(np.stack([pad_left(q, width) for q in seqs]), device=self.device)
            t = torch.as_tensor(np.stack([pad_left(np.array([x for _, x in pairs])[-self.max_len:], width) for _, pairs in chunk]),
                                device=self.device)
            scores, weights, switches = self._score(s, t)
            for row, ((n, pairs), seq) in enumerate(zip(chunk, seqs)):
                out[n] = self._finish(pairs, seq, scores[row].clone(), weights[row][-len(seq):], switches[row], k, exclude_seen, n_because)
        return [r for r in out if r is not None]

    def _pairs(self, hist_item_ids: list[str], hist_ts: list[int]) -> list[tuple[int, int]]:
        """(catalogue position, unix seconds) of the known items of a history, oldest first."""
        return [(self.pos[i], int(t)) for i, t in zip(hist_item_ids or [], hist_ts or []) if i in self.pos]

    def _cold(self, k: int) -> Recommendation:
        scores = mask_seen(self.cold_scores.clone().float().unsqueeze(0), [[]])[0]
        top = scores.topk(min(k, int(torch.isfinite(scores).sum())))
        return Recommendation(items=[self._item(int(i), v) for v, i in zip(top.values, top.indices)], cold_start=True)

    def _finish(self, pairs: list[tuple[int, int]], seq: np.ndarray, scores: torch.Tensor, weights: np.ndarray,
                switch: dict | None, k: int, exclude_seen: bool, n_because: int,
                candidates: torch.Tensor | None = None) -> Recommendation:
        """Top-k, the behaviours that weighed most and the switch view of one scored history.
        ``candidates``: the positions ``scores`` belong to (ANN retrieval); None: every position."""
        # the whole known history, as the evaluation excludes it, not only the newest max_len
        seen = np.unique([p for p, _ in pairs]) if exclude_seen else []
        if candidates is None:
            mask_seen(scores.unsqueeze(0), [seen])
        elif len(seen):
            scores = scores.masked_fill(torch.isin(candidates, torch.as_tensor(seen, dtype=torch.long)), float("-inf"))
        k = min(k, int(torch.isfinite(scores).sum()))
        top = scores.topk(k)
        index = top.indices if candidates is None else candidates[top.indices]
        items = [self._item(int(i), v) for v, i in zip(top.values, index)]
        because = [{"item_id": self.ids[seq[j] - 1], "title": self.titles[seq[j] - 1], "weight": round(float(weights[j]), 4)}
                   for j in np.argsort(-weights, kind="stable")[:n_because]]
        if switch is not None:  # the behaviours the short-term expert read: what moved the interest, newest first
            switch["recent_items"] = [self.ids[i - 1] for i in seq[-switch["window"]:][::-1]]
        return Recommendation(items=items, because=because, cold_start=False, switch=switch)

    def _score(self, s: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, np.ndarray, list[dict | None]]:
        """(scores (B, N+1), interest weights (B, L), a switch view per row) of left-padded
        histories: one pass through the switch gate's experts serves the scores and the explanation."""
        if isinstance(self.model, SwitchGate):
            experts, evidence, scores, weights = self.model.switch_state(s, t)
            switches = []
            for row in range(len(s)):
                g = 1 - float(experts[row, 0])
                lead = int(experts[row, 1:].argmax())  # the short expert that leads: its window moved the interest
                switches.append({"in_switch": g >= 0.5, "gate": round(g, 4), "evidence": round(float(evidence[row, lead]), 3),
                                 "expert": self.model.expert_names[lead], "window": self.model.expert_window(lead)})
            return scores.float().cpu().clone(), weights.cpu().numpy(), switches
        scores, weights = self.model.score_and_explain(s, t)  # one encoder pass for both, where the model shares one
        return scores.float().cpu().clone(), weights.cpu().numpy(), [None] * len(s)
