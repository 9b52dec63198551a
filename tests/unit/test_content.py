"""The content component (``models.content.TextSimilarity``): item text against the newest behaviours' text."""
from __future__ import annotations

import pytest
import torch

from models.content import content
from models.hybrid import Hybrid
from models.interest import InterestModel
from tests.unit.helpers import N_ITEMS, TEXT_DIM, padded_batch, random_text_emb, tiny_config


def _text() -> torch.Tensor:
    text = random_text_emb()
    text[5] = text[3] * 2.0 + 0.01 * text[4]  # item 5 reads almost like item 3
    return text


def test_the_item_closest_in_text_to_the_newest_behaviour_scores_highest_and_padding_zero():
    m = content(_text(), n_recent=3, decay=0.5, temp=20.0)
    seq, ts = padded_batch([[1, 2, 3], [3, 1, 2]])
    s = m.score_all(seq, ts)
    assert s.shape == (2, N_ITEMS + 1) and (s[:, 0] == 0).all()
    assert (s[:, 1:] > 0).all() and (s <= 1.0 + 1e-6).all()  # exp(temp * (cos - 1)), cos <= 1
    others = [j for j in range(1, N_ITEMS + 1) if j not in (1, 2, 3, 5)]
    assert s[0, 5] > s[0, others].max()  # the newest behaviour (3) weighs most: its near-duplicate wins
    assert s[1, 5] < s[0, 5]  # 3 two steps back counts a quarter as much
    torch.testing.assert_close(m.score_items(seq, torch.tensor([5, 7, 1])), s[:, [5, 7, 1]])
    w = m.interest_weights(seq, ts)
    torch.testing.assert_close(w[0, -3:], torch.tensor([0.25, 0.5, 1.0]) / 1.75)
    empty, ts0 = torch.zeros(1, seq.shape[1], dtype=torch.long), torch.zeros(1, seq.shape[1], dtype=torch.long)
    assert torch.isfinite(m.score_all(empty, ts0)).all()  # no history: every item the same, nothing NaN


def test_new_items_are_scored_by_their_own_text_through_the_hybrid():
    text = _text()
    torch.manual_seed(0)
    base = InterestModel(tiny_config(n_layers=1), text).eval()
    m = content(text, n_recent=1)  # the query is the newest behaviour alone
    h = Hybrid(base, {"content": m}, {"content": 5.0}).eval()
    new = text[3:4] * 3.0  # a new item whose text is item 3's
    h.add_items(new)
    assert m.n_items == N_ITEMS + 1 == h.n_items
    seq, ts = padded_batch([[1, 2, 3]])
    with torch.no_grad():
        s = m.score_all(seq, ts)
    assert s[0, N_ITEMS + 1] == pytest.approx(1.0, abs=1e-5)  # the same text as the newest behaviour
    h.set_item_text(N_ITEMS + 1, text[7])  # its text changes: the component reads the new one
    assert torch.allclose(m.text[N_ITEMS + 1], torch.nn.functional.normalize(text[7], dim=0))
    h.set_item_text(2, text[9])  # a trained item's text too
    assert torch.allclose(m.text[2], torch.nn.functional.normalize(text[9], dim=0))
    m.borrow_rows(torch.tensor([[1]]), torch.tensor([[1.0]]), at=4)  # an existing item keeps its own text
    assert torch.allclose(m.text[4], torch.nn.functional.normalize(text[4], dim=0))
    with pytest.raises(ValueError, match="own text"):
        m.borrow_rows(torch.tensor([[1]]), torch.tensor([[1.0]]))
    assert m.text.shape[1] == TEXT_DIM
