"""The content component (``content``): the language-model encoder's item vectors against the text of
the user's newest behaviours, with no training; a baseline of its own and a default hybrid component."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.baselines import recency_weights
from models.interface import ScoresThenWeights


class TextSimilarity(ScoresThenWeights, nn.Module):
    """Content-based scores from the language-model encoder alone: how close each item's text is to
    the text of the user's newest behaviours (``n_recent`` of them, newer ones weighted more,
    ``decay ** age``), as ``exp(temp * (cosine - 1))``. No training: it reads ``text_emb``, the
    encoder's item vectors, so an item posted through ``POST /items`` is scored by its own text at
    once, with nothing borrowed.

    Why a component of its own: the interest model sees the text only through a projection trained
    with the id embeddings on next-item prediction, which mostly learns what co-occurs; the raw
    cosine keeps "reads like what you just took". On Amazon Scientific (item text = title +
    category path + brand) it lifted the hybrid's validation NDCG@10 from 0.1021 to 0.1076
    (docs/benchmarks.md, "The content component"); its weight is picked on validation like the others.
    """

    reads_text = True  # the hybrid gives it new items' text (add_items), not borrowed rows

    def __init__(self, text_emb: torch.Tensor, n_recent: int = 3, decay: float = 0.5, temp: float = 20.0) -> None:
        super().__init__()
        self.register_buffer("text", F.normalize(text_emb.float(), dim=-1))  # row 0 (padding) stays 0
        self.n_recent, self.decay, self.temp = n_recent, decay, temp

    @property
    def n_items(self) -> int:  # the catalogue size (models.interface; row 0 is padding)
        return len(self.text) - 1

    def add_items(self, text_rows: torch.Tensor) -> None:
        self.text = torch.cat([self.text, F.normalize(text_rows.to(self.text), dim=-1)])

    def set_item_text(self, index: int, text_row: torch.Tensor) -> None:
        self.text[index] = F.normalize(text_row.to(self.text), dim=-1)

    def borrow_rows(self, idx: torch.Tensor, w: torch.Tensor, at: int | None = None) -> None:
        """Nothing to borrow: an item already in the catalogue (``at``) is scored by its own text.
        Appending needs the text itself (``add_items``)."""
        if at is None:
            raise ValueError("TextSimilarity scores an item by its own text: append items with add_items, not borrow_rows")

    def _recent(self, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        recent, w = recency_weights(seq, self.n_recent, self.decay)
        known = recent <= self.n_items  # an item this component has no text for: no weight (padding has none already)
        return recent.clamp(max=self.n_items), w * known.float()

    def query(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, text_dim) unit vector of the newest behaviours' text (zero for an empty history)."""
        recent, w = self._recent(seq)
        q = (self.text[recent] * w.unsqueeze(-1)).sum(1)
        return F.normalize(q, dim=-1)

    def score_items(self, seq: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(B, C) scores of the catalogue positions ``items`` (C,) only: what ANN re-ranking needs."""
        return torch.exp(self.temp * (self.query(seq) @ self.text[items].T - 1.0))

    def score_all(self, seq: torch.Tensor, ts: torch.Tensor, now: torch.Tensor | None = None) -> torch.Tensor:
        s = torch.exp(self.temp * (self.query(seq) @ self.text.T - 1.0))
        s[:, 0] = 0.0
        return s

    def interest_weights(self, seq: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(seq, dtype=torch.float32)
        recent, w = self._recent(seq)
        out[:, -recent.shape[1]:] = w
        return out / out.sum(1, keepdim=True).clamp(min=1e-9)


def content(text_emb: torch.Tensor, n_recent: int = 3, decay: float = 0.5, temp: float = 20.0) -> TextSimilarity:
    """The text component (``content``): item text against the newest behaviours' text."""
    return TextSimilarity(text_emb, n_recent, decay, temp)
