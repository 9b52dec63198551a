"""Baselines behind the same interface as the interest model (``models.interface``: ``n_items``,
``score_all(seq, ts, now=None)``, ``add_items``, ``interest_weights``; ``borrow_rows`` as hybrid components).

They ignore the sequence on purpose: they are the floor any sequential model must clear.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from models.data import ItemIndex
from models.interface import ScoresThenWeights
from models.sparse import CsrMatrix


class StaticScores(ScoresThenWeights, nn.Module):
    """Same score vector for every user (popularity-style baselines)."""

    def __init__(self, scores: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("scores", scores.float())

    @property
    def n_items(self) -> int:  # the catalogue size (models.interface; row 0 is padding)
        return len(self.scores) - 1

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


def recency_weights(seq: torch.Tensor, n_recent: int, decay: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``n_recent`` newest behaviours of left-padded histories ``seq`` (B, L), newest last, and their
    weights ``decay ** age`` (0 for padding): what item-kNN, the Markov chain and the content component read."""
    recent = seq[:, -n_recent:]
    w = decay ** torch.arange(recent.shape[1] - 1, -1, -1, device=seq.device, dtype=torch.float32)
    return recent, w.unsqueeze(0) * (recent > 0).float()


class ItemKNN(ScoresThenWeights, nn.Module):
    """Item-to-item scores: a user's score for item j sums sim(i, j) over the last ``n_recent``
    items i of their history, newer ones weighted more (decay ** age).

    Two matrices make two models: item-kNN (``item_knn``), the cosine over co-occurrence counts
    within a window of steps (symmetric: "consumed close together"), and the first-order Markov
    chain (``markov``), P(next = j | last = i) (directional: "taken right after"). ``sim`` is
    sparse (``models.sparse.CsrMatrix``: the non-zeros only, or each row's ``top_k`` largest), so
    its memory grows with the data, not the square of the catalogue; a dense tensor is converted.
    """

    def __init__(self, sim: torch.Tensor | CsrMatrix, n_recent: int = 5, decay: float = 0.8, symmetric: bool = True) -> None:
        super().__init__()
        self.sim = sim if isinstance(sim, CsrMatrix) else CsrMatrix.from_dense(sim.float())
        self.n_recent, self.decay, self.symmetric = n_recent, decay, symmetric
        self.n_trained = self.sim.n  # items (+ padding) it was fitted on; later ones are added

    @property
    def n_items(self) -> int:  # the catalogue size (models.interface; row 0 is padding)
        return self.sim.n - 1

    def add_items(self, text_rows: torch.Tensor) -> None:
        """New items co-occur with nothing yet: zero similarity."""
        self.sim = self.sim.padded(len(text_rows))

    def borrow_rows(self, idx: torch.Tensor, w: torch.Tensor, at: int | None = None) -> None:
        """New items (appended, or the one at index ``at``) get the ``w``-weighted mean similarity
        rows and columns of their neighbours ``idx`` (m, k) over the trained items (one and the
        same for a symmetric matrix; a directional one's columns, "what came before", from its
        transpose); to items added after training, none (so the result does not depend on how
        items were batched)."""
        n, trained = self.sim.n, self.n_trained
        rows = self.sim.weighted_rows(idx, w)[:, :trained]  # (m, trained)
        cols = rows if self.symmetric else self.sim.transposed().weighted_rows(idx, w)[:, :trained]
        j, c = rows.nonzero(as_tuple=True)
        jc, cc = (j, c) if cols is rows else cols.nonzero(as_tuple=True)
        new = (lambda x: n + x) if at is None else (lambda x: torch.full_like(x, at))  # noqa: E731
        entries = torch.cat([new(j), cc]), torch.cat([c, new(jc)]), torch.cat([rows[j, c], cols[jc, cc]])
        if at is None:
            self.sim = self.sim.with_entries(*entries, n + len(rows))
        else:
            self.sim = self.sim.with_entries(*entries, clear=at)

    def score_all(self, seq: torch.Tensor, ts: torch.Tensor, now: torch.Tensor | None = None) -> torch.Tensor:
        return self.sim.weighted_rows(*recency_weights(seq, self.n_recent, self.decay))

    def neighbours(self, seq: torch.Tensor) -> torch.Tensor:
        """Item indices with a non-zero score for these histories (B, L): the items ``score_all`` can lift."""
        recent = seq[:, -self.n_recent :].reshape(-1)
        _, c, _ = self.sim._gather(recent[recent > 0])
        return c.unique()

    def interest_weights(self, seq: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        w = torch.zeros_like(seq, dtype=torch.float32)
        m = min(self.n_recent, seq.shape[1])
        w[:, -m:] = self.decay ** torch.arange(m - 1, -1, -1, device=seq.device, dtype=torch.float32)
        w = w * (seq > 0).float()
        return w / w.sum(1, keepdim=True).clamp(min=1e-9)


def cooccurrence_similarity(train: pd.DataFrame, index: ItemIndex, window: int = 5, top_k: int = 0) -> CsrMatrix:
    """(N+1, N+1) sparse cosine over co-occurrence counts of items consumed within ``window``
    steps (weight 1/distance); row and column 0 (padding) are empty. Shared by item-kNN and the
    interest model's transition prior, so both read the same evidence. ``top_k`` > 0 keeps each
    row's k largest similarities (after the cosine, so the kept values are the full data's); 0
    keeps every non-zero, which equals the former dense matrix entry for entry.

    Built from the pairs themselves (no N x N array at any point): peak memory is a few arrays of
    ``2 * window * events`` entries (docs/scaling.md, "Sparse item-kNN")."""
    n = len(index) + 1
    s, users = _user_ordered(train, index)
    rows, cols, vals = [], [], []
    for d in range(1, window + 1):
        same = users[:-d] == users[d:]
        a, b = s[:-d][same], s[d:][same]
        rows += [a, b]  # co + co.T
        cols += [b, a]
        vals.append(np.full(2 * len(a), 1.0 / d))
    r = torch.from_numpy(np.concatenate(rows)) if rows else torch.zeros(0, dtype=torch.long)
    c = torch.from_numpy(np.concatenate(cols)) if cols else torch.zeros(0, dtype=torch.long)
    v = torch.from_numpy(np.concatenate(vals)) if vals else torch.zeros(0, dtype=torch.float64)
    off = r != c  # the diagonal (an item repeated within the window) is zero
    r, c, v = r[off], c[off], v[off]
    degree = torch.zeros(n, dtype=torch.float64).index_add_(0, r, v)
    norm = degree.clamp(min=1e-9).sqrt()
    return CsrMatrix.from_coo(r, c, v / norm[r] / norm[c], n, top_k)


def _user_ordered(train: pd.DataFrame, index: ItemIndex) -> tuple[np.ndarray, np.ndarray]:
    """(item indices, user codes) of the known items, each user's rows together in their original
    (time) order, as a groupby would give them."""
    items = train["item_id"].map(index.pos)
    known = items.notna().to_numpy()
    s = items.to_numpy()[known].astype(np.int64)
    users = pd.factorize(train["user_id"].to_numpy()[known])[0]
    order = np.argsort(users, kind="stable")
    return s[order], users[order]


def item_knn(train: pd.DataFrame, index: ItemIndex, window: int = 5, n_recent: int = 5, top_k: int = 0) -> ItemKNN:
    return ItemKNN(cooccurrence_similarity(train, index, window, top_k), n_recent)


def transition_probabilities(train: pd.DataFrame, index: ItemIndex, top_k: int = 0) -> CsrMatrix:
    """(N+1, N+1) sparse P(next = j | last = i): each user's consecutive pairs, counted and divided
    by the row's total. Directional, unlike the co-occurrence cosine: what is taken *after* an item
    (a sequel, a complement) is what a user who has just taken it, or has just switched to its
    interest, takes next, whatever the rest of their history says (docs/benchmarks.md, "The
    first-order Markov component")."""
    n = len(index) + 1
    s, users = _user_ordered(train, index)
    same = users[:-1] == users[1:]
    r, c = torch.from_numpy(s[:-1][same]), torch.from_numpy(s[1:][same])
    totals = torch.bincount(r, minlength=n).double()
    return CsrMatrix.from_coo(r, c, 1.0 / totals[r].clamp(min=1), n, top_k)


def markov(train: pd.DataFrame, index: ItemIndex, top_k: int = 0) -> ItemKNN:
    """The first-order Markov chain over the last two behaviours (the one before weighs half)."""
    return ItemKNN(transition_probabilities(train, index, top_k), n_recent=2, decay=0.5, symmetric=False)


class EASE(ScoresThenWeights, nn.Module):
    """EASE (Steck, WWW 2019): a linear item-to-item model with a closed form, scored from the
    user's whole history as a set (order and time are ignored).

    B = I - P / diag(P) with P = (XᵀX + λI)⁻¹ (X: binary user x item train matrix), so B has a zero
    diagonal (an item never explains itself) and B[i, j] = -P[i, j] / P[j, j]; a user's scores are
    their binary history vector times B. Strong on sparse, short-history data such as Amazon
    Scientific, where it beats SASRec (docs/benchmarks.md).

    Cost: B is a dense (N+1) x (N+1) float32 matrix and the fit inverts an N x N matrix in float64
    (O(N²) memory, O(N³) time): 77 MB and seconds for N = 4,385, but 40 GB at N = 100k. The dense
    inverse is EASE's definition, so it stays dense (the one item x item matrix in pulse that does,
    docs/scaling.md); it is not in the default models, and a catalogue of that size needs
    item-kNN (sparse) instead.
    """

    def __init__(self, B: torch.Tensor, lam: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("B", B.float())
        self.lam = float(lam)
        self.n_trained = B.shape[0]  # items (+ padding) it was fitted on; later ones are added

    @property
    def n_items(self) -> int:  # the catalogue size (models.interface; row 0 is padding)
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
