"""Interest-shift evaluation: does the top-10 follow a user whose interest has just changed?

Two measures, one definition of a switch episode (a user's history, then the events of a new
interest, fed one at a time):

- ``replay``: the benchmark's. Episodes come from ground truth (the synthetic generator's held-out
  switch episodes) or are detected from the category mix (``detect_episodes``). After each new
  event, the top-k (history excluded) is recorded: how many events until half of it is in the new
  interest, the new-interest share after 1/3/5/10 events, and next-event HR@k over all steps.
- ``spliced_switch_set``: the validation shift score used to fit the switch gate and to select
  the packaged model. Each validation user's input history is followed by 1..``n_fed`` consecutive
  events of another user (the least similar by text of a few random candidates); the target is
  that user's next event. HR@k / NDCG@k over these rows is the *validation shift score*. No ground
  truth needed, so it works on any dataset, and stationary training data gets switches to test.

Reference rows beside every model: a static profile (mean text embedding of the whole history)
and the three-line heuristic "most popular items of the majority category of the last 3 events".
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.data import EvalSet, UserSequence, eval_batches, pad_left
from models.metrics import target_ranks


@dataclass
class Episode:
    user: str
    hist: np.ndarray      # item indices before the switch, oldest first
    hist_ts: np.ndarray
    new: np.ndarray       # the new interest's events, in order
    new_ts: np.ndarray
    interest: str         # the new interest (a category)


def _step_set(episodes: list[Episode], j: int, max_len: int) -> EvalSet:
    """The state after ``j`` new events of every episode that has them: input = history + new[:j],
    target = new[j] (the last step of an episode repeats its last event: no next event to score)."""
    eps = [e for e in episodes if len(e.new) >= j]
    seq, ts, tg, tts, ex = [], [], [], [], []
    for e in eps:
        items, times = np.concatenate([e.hist, e.new[:j]]), np.concatenate([e.hist_ts, e.new_ts[:j]])
        seq.append(pad_left(items, max_len))
        ts.append(pad_left(times, max_len))
        nxt = min(j, len(e.new) - 1)
        tg.append(e.new[nxt])
        tts.append(e.new_ts[nxt])
        ex.append(np.unique(items))
    return EvalSet([e.user for e in eps], np.array(seq).reshape(-1, max_len), np.array(ts).reshape(-1, max_len),
                   np.array(tg, dtype=np.int64), ex, np.array(tts))


@torch.no_grad()
def replay(model: nn.Module, episodes: list[Episode], primary: dict[int, str], max_len: int, k: int = 10,
           batch_size: int = 256) -> dict:
    """The shift benchmark's figures for one model (any ``score_all``) over ``episodes``."""
    steps = max((len(e.new) for e in episodes), default=0)
    shares: list[list[float]] = [[] for _ in episodes]
    hits: list[float] = []
    row_of = {id(e): i for i, e in enumerate(episodes)}
    for j in range(1, steps + 1):
        data = _step_set(episodes, j, max_len)
        eps = [e for e in episodes if len(e.new) >= j]
        for rows, x, exclude in eval_batches(data, batch_size, "cpu"):
            ranks, masked = target_ranks(model.score_all(x["seq"], x["ts"], x["now"]), x["targets"], exclude)
            top = masked.topk(k, dim=1).indices.numpy()
            for r, rank, t in zip(rows, ranks.numpy(), top):
                e = eps[r]
                shares[row_of[id(e)]].append(float(np.mean([primary.get(int(i)) == e.interest for i in t])))
                if j < len(e.new):
                    hits.append(float(rank <= k))
    return summarize(shares, hits, steps)


def summarize(shares: list[list[float]], hits: list[float], cap: int) -> dict:
    """events to half the top-k (median, p90, never), share after 1/3/5/10 events, next-event HR."""
    to_half = [next((n for n, s in enumerate(sh, 1) if s >= 0.5), None) for sh in shares]
    filled = np.array([c if c is not None else cap + 1 for c in to_half], dtype=float)
    curve = {}
    for n in (1, 3, 5, 10):
        vals = [sh[min(n, len(sh)) - 1] for sh in shares if sh]
        curve[str(n)] = round(float(np.mean(vals)), 4) if vals else float("nan")
    return {"users": len(shares), "median_events_to_half": float(np.median(filled)) if len(filled) else float("nan"),
            "p90_events_to_half": float(np.percentile(filled, 90)) if len(filled) else float("nan"),
            "never_share": round(float(np.mean([c is None for c in to_half])), 4) if to_half else float("nan"),
            "cap": cap, "new_interest_share_after": curve,
            "next_event_hr@10": round(float(np.mean(hits)), 4) if hits else float("nan"), "steps": len(hits)}


def episodes_from_truth(truth: pd.DataFrame, pos: dict[str, int], max_events: int, max_users: int | None = None) -> list[Episode]:
    """Each switching user's history before the first switch and the first ``max_events`` events
    of the episode after it (held-out episodes when the generator kept switches out of training)."""
    from features.transforms import unix_seconds

    out = []
    for user, g in truth[truth["shifts"]].groupby("user_id", sort=True):
        before, after = g[g["episode"] == 0], g[g["episode"] == 1].head(max_events)
        if before.empty or len(after) < 2:
            continue
        out.append(Episode(user, before["item_id"].map(pos).to_numpy(np.int64), unix_seconds(before["ts"]),
                           after["item_id"].map(pos).to_numpy(np.int64), unix_seconds(after["ts"]),
                           str(after["true_interest"].iloc[0])))
        if max_users and len(out) >= max_users:
            break
    return out


def detect_episodes(seqs: dict[str, UserSequence], primary: dict[int, str], max_events: int, min_history: int = 10,
                    probe: int = 5, min_share: float = 0.6, max_prior_share: float = 0.1,
                    max_users: int | None = None) -> list[Episode]:
    """Switches found in the category mix, for data without ground truth: the first position p
    (after ``min_history`` events) where the majority category of the next ``probe`` events holds
    at least ``min_share`` of them and at most ``max_prior_share`` of the events before p; the
    episode starts at that category's first event among them."""
    out = []
    for user, s in seqs.items():
        cats = [primary.get(int(i)) for i in s.items]
        for p in range(min_history, len(cats) - probe + 1):
            ahead = Counter(c for c in cats[p:p + probe] if c)
            if not ahead:
                continue
            new, n = ahead.most_common(1)[0]
            before = Counter(c for c in cats[:p] if c)
            if n >= min_share * probe and before[new] <= max_prior_share * p:
                p = next(q for q in range(p, p + probe) if cats[q] == new)  # the switch starts at its first event
                end = p + max_events
                out.append(Episode(user, s.items[:p], s.ts[:p], s.items[p:end], s.ts[p:end], new))
                break
        if max_users and len(out) >= max_users:
            break
    return out


def spliced_switch_set(seqs: dict[str, UserSequence], text_emb: torch.Tensor, max_len: int, n_fed: int = 5,
                       max_users: int = 500, candidates: int = 5, seed: int = 0) -> EvalSet:
    """Validation switches made by splicing (see the module docstring). Recipients' inputs are their
    validation histories (all but the last two events); donors' events come from their training part
    and are re-timed to continue the recipient's clock at the donor's own pace."""
    rng = np.random.default_rng(seed)
    users = [u for u, s in seqs.items() if len(s.items) >= 3]
    donors = [u for u in users if len(seqs[u].items) - 2 >= n_fed + 1]
    if not users or not donors:
        return EvalSet([], np.zeros((0, max_len), np.int64), np.zeros((0, max_len), np.int64), np.zeros(0, np.int64), [], np.zeros(0))
    text = F.normalize(text_emb.float(), dim=-1).numpy()
    centroid = {u: _unit(text[seqs[u].items[:-2]].mean(0)) for u in set(users) | set(donors)}
    recipients = [users[i] for i in rng.permutation(len(users))[:max_users]]
    rows: dict[str, list] = {k: [] for k in ("users", "seq", "ts", "tg", "ex", "tts")}
    for r in recipients:
        picks = [donors[i] for i in rng.choice(len(donors), size=min(candidates, len(donors)), replace=False) if donors[i] != r]
        if not picks:
            continue
        d = min(picks, key=lambda u: float(centroid[u] @ centroid[r]))
        hist, hts = seqs[r].items[:-2], seqs[r].ts[:-2]
        ds, dts = seqs[d].items[:-2], seqs[d].ts[:-2]
        a = int(rng.integers(0, len(ds) - n_fed))
        seg, gaps = ds[a:a + n_fed + 1], np.diff(dts[a:a + n_fed + 1], prepend=dts[a] - 3600).clip(min=1)
        seg_ts = hts[-1] + np.cumsum(gaps)
        for k in range(1, n_fed + 1):
            items = np.concatenate([hist, seg[:k]])
            rows["users"].append(f"{r}<{d}:{k}")
            rows["seq"].append(pad_left(items, max_len))
            rows["ts"].append(pad_left(np.concatenate([hts, seg_ts[:k]]), max_len))
            rows["tg"].append(seg[k])
            rows["tts"].append(seg_ts[k])
            rows["ex"].append(np.unique(items))
    return EvalSet(rows["users"], np.array(rows["seq"]).reshape(-1, max_len), np.array(rows["ts"]).reshape(-1, max_len),
                   np.array(rows["tg"], dtype=np.int64), rows["ex"], np.array(rows["tts"]))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-8)


class StaticProfile(nn.Module):
    """Reference row: recency-blind, the cosine of every item's text to the mean of the whole history."""

    def __init__(self, text_emb: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("text", F.normalize(text_emb.float(), dim=-1))
        self.n_items = len(text_emb) - 1

    def score_all(self, seq: torch.Tensor, ts: torch.Tensor, now: torch.Tensor | None = None) -> torch.Tensor:
        mask = (seq > 0).float().unsqueeze(-1)
        return F.normalize((self.text[seq] * mask).sum(1), dim=-1) @ self.text.T


class RecentMajority(nn.Module):
    """Reference row, the three-line heuristic: the most popular items (training counts) of the
    majority category of the user's last ``last`` events (ties: the newest event's category)."""

    def __init__(self, primary_index: torch.Tensor, popularity: torch.Tensor, last: int = 3) -> None:
        super().__init__()
        self.register_buffer("primary", primary_index.long())  # (N+1,) category index, -1 for none
        self.register_buffer("pop", popularity.float())
        self.last = last
        self.n_items = len(primary_index) - 1

    def score_all(self, seq: torch.Tensor, ts: torch.Tensor, now: torch.Tensor | None = None) -> torch.Tensor:
        out = torch.zeros(seq.shape[0], len(self.primary))
        rank = self.pop / (self.pop.max() + 1)  # popularity inside the category breaks ties
        for b, row in enumerate(seq[:, -self.last:].tolist()):
            cats = [int(self.primary[i]) for i in row if i > 0 and int(self.primary[i]) >= 0]
            if not cats:
                continue
            counts = Counter(cats)
            top = max(counts.values())
            major = next(c for c in reversed(cats) if counts[c] == top)
            out[b] = (self.primary == major).float() + rank
        return out


def primary_categories(categories: Iterable[list[str]]) -> dict[int, str]:
    """item index (1-based) -> its first category (items without one are left out)."""
    return {k + 1: str(c[0]) for k, c in enumerate(categories) if len(c)}
