"""Baselines behind the same interface as the interest model (``score_all(seq, ts, now=None)``).

They ignore the sequence on purpose: they are the floor any sequential model must clear.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from models.data import ItemIndex


class StaticScores(nn.Module):
    """Same score vector for every user (popularity-style baselines)."""

    def __init__(self, scores: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("scores", scores.float())

    def score_all(self, seq: torch.Tensor, ts: torch.Tensor, now: torch.Tensor | None = None) -> torch.Tensor:
        return self.scores.unsqueeze(0).expand(seq.shape[0], -1)

    def add_items(self, text_rows: torch.Tensor) -> None:
        """New items have no interactions yet: score 0."""
        self.scores = torch.cat([self.scores, self.scores.new_zeros(len(text_rows))])

    def borrow_rows(self, idx: torch.Tensor, w: torch.Tensor, at: int | None = None) -> None:
        """New items (appended, or the one at index ``at``) score the ``w``-weighted mean of their
        neighbours ``idx`` (m, k): what the hybrid gives items it knows only by their text."""
        rows = (w.to(self.scores) * self.scores[idx]).sum(-1)
        if at is None:
            self.scores = torch.cat([self.scores, rows])
        else:
            self.scores[at] = rows[0]

    def interest_weights(self, seq: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        """No interest model: the most recent behaviours explain, equally."""
        w = (seq > 0).float()
        return w / w.sum(1, keepdim=True).clamp(min=1)


def _counts(train: pd.DataFrame, index: ItemIndex) -> torch.Tensor:
    pos = index.pos
    v = np.zeros(len(index) + 1)
    for item, c in train["item_id"].value_counts().items():
        if item in pos:
            v[pos[item]] = c
    return torch.tensor(v)


def popularity(train: pd.DataFrame, index: ItemIndex) -> StaticScores:
    """Train-set interaction counts."""
    return StaticScores(_counts(train, index))


def recent_popularity(train: pd.DataFrame, index: ItemIndex, days: float) -> StaticScores:
    """Counts over the last ``days`` before the latest train event (all-time counts break ties)."""
    cutoff = train["ts"].max() - pd.Timedelta(days=days)
    recent = _counts(train[train["ts"] > cutoff], index)
    return StaticScores(recent + _counts(train, index) / (len(train) + 1.0))


class ItemKNN(nn.Module):
    """Item-to-item co-occurrence: items consumed close together in train sequences are neighbours.

    sim = cosine over co-occurrence counts within a window of ``window`` steps; a user's score
    for item j sums sim(i, j) over the last ``n_recent`` items i of their history, newer ones
    weighted more (decay ** age).
    """

    def __init__(self, sim: torch.Tensor, n_recent: int = 5, decay: float = 0.8) -> None:
        super().__init__()
        self.register_buffer("sim", sim.float())
        self.n_recent, self.decay = n_recent, decay
        self.n_trained = sim.shape[0]  # items (+ padding) it was fitted on; later ones are added

    @property
    def scores(self) -> torch.Tensor:  # the catalogue size, as the evaluator reads it
        return self.sim[0]

    def add_items(self, text_rows: torch.Tensor) -> None:
        """New items co-occur with nothing yet: zero similarity."""
        self.sim = torch.nn.functional.pad(self.sim, (0, len(text_rows), 0, len(text_rows)))

    def borrow_rows(self, idx: torch.Tensor, w: torch.Tensor, at: int | None = None) -> None:
        """New items (appended, or the one at index ``at``) get the ``w``-weighted mean similarity
        rows (and columns) of their neighbours ``idx`` (m, k) over the trained items; to items
        added after training, none (so the result does not depend on how items were batched)."""
        n, trained = self.sim.shape[0], self.n_trained
        rows = torch.einsum("mk,mkn->mn", w.to(self.sim), self.sim[idx][:, :, :trained])  # (m, trained)
        if at is None:
            m = len(rows)
            sim = torch.nn.functional.pad(self.sim, (0, m, 0, m))
            sim[n:, :trained] = rows
            sim[:trained, n:] = rows.T
            self.sim = sim
        else:
            self.sim[at, :] = 0.0
            self.sim[:, at] = 0.0
            self.sim[at, :trained] = rows[0]
            self.sim[:trained, at] = rows[0]

    def score_all(self, seq: torch.Tensor, ts: torch.Tensor, now: torch.Tensor | None = None) -> torch.Tensor:
        recent = seq[:, -self.n_recent :]  # (B, m), newest last
        w = self.decay ** torch.arange(recent.shape[1] - 1, -1, -1, device=seq.device, dtype=torch.float32)
        w = w.unsqueeze(0) * (recent > 0).float()  # (B, m)
        return torch.einsum("bm,bmn->bn", w, self.sim[recent])

    def interest_weights(self, seq: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        w = torch.zeros_like(seq, dtype=torch.float32)
        m = min(self.n_recent, seq.shape[1])
        w[:, -m:] = self.decay ** torch.arange(m - 1, -1, -1, device=seq.device, dtype=torch.float32)
        w = w * (seq > 0).float()
        return w / w.sum(1, keepdim=True).clamp(min=1e-9)


def cooccurrence_similarity(train: pd.DataFrame, index: ItemIndex, window: int = 5) -> torch.Tensor:
    """(N+1, N+1) cosine over co-occurrence counts of items consumed within ``window`` steps
    (weight 1/distance); row and column 0 (padding) are zero. Shared by item-kNN and the
    interest model's transition prior, so both read the same evidence."""
    pos = index.pos
    n = len(index) + 1
    co = np.zeros((n, n), dtype=np.float32)
    for _, g in train.groupby("user_id", sort=False):
        s = g["item_id"].map(pos).dropna().astype(np.int64).to_numpy()
        for d in range(1, window + 1):
            if len(s) > d:
                np.add.at(co, (s[:-d], s[d:]), 1.0 / d)
    co = co + co.T
    np.fill_diagonal(co, 0.0)
    norm = np.sqrt(np.maximum(co.sum(1), 1e-9))
    return torch.from_numpy(co / norm[:, None] / norm[None, :])


def item_knn(train: pd.DataFrame, index: ItemIndex, window: int = 5, n_recent: int = 5) -> ItemKNN:
    return ItemKNN(cooccurrence_similarity(train, index, window), n_recent)


class EASE(nn.Module):
    """EASE (Steck, WWW 2019): a linear item-to-item model with a closed form, scored from the
    user's whole history as a set (order and time are ignored).

    B = I - P / diag(P) with P = (XᵀX + λI)⁻¹ (X: binary user x item train matrix), so B has a zero
    diagonal (an item never explains itself) and B[i, j] = -P[i, j] / P[j, j]; a user's scores are
    their binary history vector times B. Strong on sparse, short-history data such as Amazon
    Scientific, where it beats SASRec (docs/benchmarks.md).

    Cost: B is a dense (N+1) x (N+1) float32 matrix and the fit inverts an N x N matrix in float64
    (O(N²) memory, O(N³) time): 77 MB and seconds for N = 4,385, but 40 GB at N = 100k, so a
    catalogue of that size needs a sparse approximation instead.
    """

    def __init__(self, B: torch.Tensor, lam: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("B", B.float())
        self.lam = float(lam)
        self.n_trained = B.shape[0]  # items (+ padding) it was fitted on; later ones are added

    @property
    def n_items(self) -> int:  # the catalogue size, as the evaluator reads it (row 0 is padding)
        return self.B.shape[0] - 1

    def history_matrix(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, N+1) binary: 1 for every item in the window, repeats counted once, padding 0."""
        x = torch.zeros(seq.shape[0], self.B.shape[0], device=seq.device, dtype=self.B.dtype)
        x.scatter_(1, seq, 1.0)
        x[:, 0] = 0.0
        return x

    def score_all(self, seq: torch.Tensor, ts: torch.Tensor, now: torch.Tensor | None = None) -> torch.Tensor:
        return self.history_matrix(seq) @ self.B

    def add_items(self, text_rows: torch.Tensor) -> None:
        """New items co-occur with nothing yet: zero rows and columns (score 0, explain nothing)."""
        self.B = torch.nn.functional.pad(self.B, (0, len(text_rows), 0, len(text_rows)))

    def borrow_rows(self, idx: torch.Tensor, w: torch.Tensor, at: int | None = None) -> None:
        """As ``ItemKNN.borrow_rows``: new items get the ``w``-weighted mean rows (what they explain)
        and columns (what explains them) of their text neighbours ``idx`` (m, k) over the trained items."""
        n, trained = self.B.shape[0], self.n_trained
        rows = torch.einsum("mk,mkn->mn", w.to(self.B), self.B[idx][:, :, :trained])  # (m, trained)
        cols = torch.einsum("mk,mkn->mn", w.to(self.B), self.B[:trained].T[idx][:, :, :trained])
        if at is None:
            m = len(rows)
            B = torch.nn.functional.pad(self.B, (0, m, 0, m))
            B[n:, :trained] = rows
            B[:trained, n:] = cols.T
            self.B = B
        else:
            self.B[at, :] = 0.0
            self.B[:, at] = 0.0
            self.B[at, :trained] = rows[0]
            self.B[:trained, at] = cols[0]
        self.B.diagonal().zero_()

    def interest_weights(self, seq: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        """EASE reads the history as a set: every behaviour explains equally."""
        w = (seq > 0).float()
        return w / w.sum(1, keepdim=True).clamp(min=1)


def interaction_gram(train: pd.DataFrame, index: ItemIndex) -> np.ndarray:
    """(N+1, N+1) float64 XᵀX of the binary user x item matrix of ``train`` (a user who consumed an
    item twice counts once); row and column 0 (padding) are zero."""
    from scipy import sparse

    pos = index.pos
    cols = train["item_id"].map(pos)
    pairs = pd.DataFrame({"u": train["user_id"].to_numpy(), "i": cols.to_numpy()}).dropna().drop_duplicates()
    users = pd.factorize(pairs["u"])[0]
    X = sparse.csr_matrix((np.ones(len(pairs)), (users, pairs["i"].astype(np.int64).to_numpy())),
                          shape=(int(users.max()) + 1 if len(users) else 0, len(index) + 1))
    return (X.T @ X).toarray()


def ease_weights(gram: np.ndarray, lam: float) -> torch.Tensor:
    """B = I - P / diag(P), P = (G + λI)⁻¹, over the real items (padding row and column stay zero)."""
    if lam <= 0:
        raise ValueError(f"EASE needs a positive regularisation, got {lam}")
    g = torch.from_numpy(gram[1:, 1:]).double()
    g.diagonal().add_(lam)
    P = torch.cholesky_inverse(torch.linalg.cholesky(g))  # G + λI is symmetric positive definite
    B = -P / P.diagonal().unsqueeze(0)  # B[i, j] = -P[i, j] / P[j, j]
    B.diagonal().zero_()
    out = torch.zeros(gram.shape[0], gram.shape[0], dtype=torch.float32)
    out[1:, 1:] = B.float()
    return out


def ease(train: pd.DataFrame, index: ItemIndex, lam: float, gram: np.ndarray | None = None) -> EASE:
    """EASE fitted on ``train`` with regularisation ``lam`` (``gram``: a precomputed ``interaction_gram``)."""
    return EASE(ease_weights(interaction_gram(train, index) if gram is None else gram, lam), lam)
