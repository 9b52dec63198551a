"""Unit tests of models.baselines: item-kNN (co-occurrence similarity, decayed scoring) and the popularity baselines.

Every expectation is a hand-computed formula on a tiny hand-made train frame.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from models.baselines import ItemKNN, StaticScores, item_knn, markov, popularity, recent_popularity, transition_probabilities
from models.data import ItemIndex, pad_left

T0 = pd.Timestamp("2024-01-01", tz="UTC")
DAY = pd.Timedelta(days=1)
INDEX = ItemIndex(tuple(f"i{k}" for k in range(1, 8)))  # i1..i7 -> indices 1..7


def _frame(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    """rows of (user, item, day offset from T0), in row order."""
    return pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "ts": pd.to_datetime([T0 + r[2] * DAY for r in rows], utc=True).astype("datetime64[ns, UTC]"),
            "event": "view",
            "value": 1.0,
        }
    )


def _knn_train() -> pd.DataFrame:
    """Two 'series': users a, b read i1 -> i2 -> i3; users c, d read i4 -> i5 -> i6 (interleaved rows). i7 never occurs."""
    rows = []
    for k, (u, items) in enumerate([("a", "123"), ("c", "456"), ("b", "123"), ("d", "456")]):
        rows += [(u, f"i{i}", j + 0.1 * k) for j, i in enumerate(items)]
    return _frame(rows).sort_values("ts", kind="stable").reset_index(drop=True)


# hand-computed: co(1,2) = 2 users x 1 (distance 1), co(1,3) = 2 x 1/2 (distance 2), co(2,3) = 2 x 1
# row sums r1 = 3, r2 = 4, r3 = 3; sim = co / sqrt(r_i r_j)
S12 = 2 / math.sqrt(3 * 4)
S13 = 1 / math.sqrt(3 * 3)


def _scores(model, hist: list[int], length: int = 6) -> torch.Tensor:
    seq = torch.as_tensor(pad_left(np.array(hist), length)).unsqueeze(0)
    return model.score_all(seq, torch.zeros_like(seq))[0]


# ---------------------------------------------------------------- item-kNN similarity


def test_item_knn_similarity_matrix():
    m = item_knn(_knn_train(), INDEX)
    sim = m.sim.to_dense().numpy()
    assert sim.shape == (8, 8)
    np.testing.assert_allclose(sim, sim.T, atol=1e-7)  # symmetric
    assert np.all(np.diag(sim) == 0)
    assert np.all(sim[0] == 0) and np.all(sim[:, 0] == 0)  # padding has no neighbours
    assert np.all(sim[7] == 0)  # never consumed: no neighbours
    for a, b, c in ((1, 2, 3), (4, 5, 6)):  # both series give the same numbers
        assert sim[a, b] == pytest.approx(S12, rel=1e-6)
        assert sim[b, c] == pytest.approx(S12, rel=1e-6)
        assert sim[a, c] == pytest.approx(S13, rel=1e-6)
    # adjacent beats distance 2 beats never co-occurring (exactly 0)
    assert sim[1, 2] > sim[1, 3] > 0
    for i in (1, 2, 3):
        for j in (4, 5, 6, 7):
            assert sim[i, j] == 0.0


def test_item_knn_window_limits_co_occurrence():
    train = _frame([("u", f"i{k}", k) for k in range(1, 7)])  # one user: i1 .. i6 in a row
    sim = item_knn(train, INDEX, window=2).sim.to_dense().numpy()
    assert sim[1, 2] > sim[1, 3] > 0
    assert sim[1, 4] == 0.0 and sim[1, 6] == 0.0  # farther apart than the window
    # co(1,2) = 1, co(1,3) = 1/2; r1 = 3/2, r2 = 1 + 1 + 1/2 = 5/2, r3 = 1/2 + 1 + 1 + 1/2 = 3
    assert sim[1, 2] == pytest.approx(1 / math.sqrt(1.5 * 2.5), rel=1e-6)
    assert sim[1, 3] == pytest.approx(0.5 / math.sqrt(1.5 * 3.0), rel=1e-6)


def test_item_knn_ignores_items_outside_the_index():
    train = _frame([("u", "i1", 0), ("u", "zz", 1), ("u", "i2", 2)])
    sim = item_knn(train, INDEX).sim.to_dense().numpy()
    assert sim.shape == (8, 8)
    assert sim[1, 2] > 0  # the unknown item is dropped from the sequence


# ---------------------------------------------------------------- item-kNN scoring


def test_item_knn_ranks_the_follower_of_the_last_item_first():
    m = item_knn(_knn_train(), INDEX)
    s = _scores(m, [1])
    assert int(s[1:].argmax()) + 1 == 2  # i2 followed i1 in every train sequence
    s = _scores(m, [4, 5])
    top = int(s[1:].argmax()) + 1
    assert top == 6  # i6 followed i5 (i4 is a neighbour of i5 too, but weighs less: older history item)


def test_item_knn_newer_history_items_weigh_more():
    m = item_knn(_knn_train(), INDEX)
    sim = m.sim.to_dense()
    d = m.decay
    assert d == pytest.approx(0.8)
    # [i4, i1]: i1 newest -> its neighbour i2 first; [i1, i4]: i4 newest -> i5 first
    s = _scores(m, [4, 1])
    torch.testing.assert_close(s, sim[1] + d * sim[4])
    assert torch.argsort(s[1:], descending=True)[:4].add(1).tolist() == [2, 5, 3, 6]
    s = _scores(m, [1, 4])
    torch.testing.assert_close(s, sim[4] + d * sim[1])
    assert torch.argsort(s[1:], descending=True)[:4].add(1).tolist() == [5, 2, 6, 3]


def test_item_knn_only_the_last_n_recent_items_count():
    m = item_knn(_knn_train(), INDEX, n_recent=3)
    assert m.n_recent == 3
    s = _scores(m, [4, 7, 7, 1])  # i4 is the 4th newest: outside the 3 most recent
    sim = m.sim.to_dense()
    torch.testing.assert_close(s, sim[1] + 0.8 * sim[7] + 0.64 * sim[7])
    assert s[5].item() == 0.0 and s[6].item() == 0.0
    # batch of two with left padding: padding never contributes
    seq = torch.tensor([[0, 0, 0, 1], [4, 7, 7, 1]])
    out = m.score_all(seq, torch.zeros_like(seq))
    torch.testing.assert_close(out[0], sim[1])
    torch.testing.assert_close(out[1], s)


def test_item_knn_interest_weights():
    m = ItemKNN(torch.zeros(8, 8), n_recent=3, decay=0.5)
    seq = torch.tensor([[0, 0, 2, 3], [5, 6, 1, 2], [0, 0, 0, 0]])
    w = m.interest_weights(seq, torch.zeros_like(seq))
    torch.testing.assert_close(w[0], torch.tensor([0.0, 0.0, 0.5, 1.0]) / 1.5)
    torch.testing.assert_close(w[1], torch.tensor([0.0, 0.25, 0.5, 1.0]) / 1.75)
    assert torch.all(w[2] == 0)  # no history: nothing explains
    assert m.n_items == 7 and not hasattr(m, "scores")  # the catalogue size is stated, not read off a score vector


# ---------------------------------------------------------------- popularity


def _pop_train() -> pd.DataFrame:
    return _frame(
        [
            ("u1", "i1", 0), ("u1", "i1", 1), ("u2", "i1", 2), ("u2", "i2", 3),
            ("u3", "i2", 8),  # exactly at the recent cut-off (10 - 2 days): outside the window
            ("u3", "i3", 9), ("u4", "i4", 9), ("u5", "i2", 9.5), ("u4", "i4", 10),
            ("u5", "zz", 5),  # unknown item: counted nowhere
        ]
    )


def test_popularity_is_the_train_count():
    m = popularity(_pop_train(), INDEX)
    assert isinstance(m, StaticScores)
    assert m.scores.tolist() == [0, 3, 3, 1, 2, 0, 0, 0]
    seq = torch.tensor([[0, 1, 2], [3, 4, 5]])
    out = m.score_all(seq, seq)
    assert out.shape == (2, 8) and torch.equal(out[0], out[1])  # the same for every user
    w = m.interest_weights(seq, seq)
    torch.testing.assert_close(w, torch.tensor([[0.0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]]))


def test_recent_popularity_window_and_tie_break():
    train = _pop_train()
    m = recent_popularity(train, INDEX, days=2)
    n = len(train)
    alltime = np.array([0, 3, 3, 1, 2, 0, 0, 0], dtype=float)
    recent = np.array([0, 0, 1, 1, 2, 0, 0, 0], dtype=float)  # ts > day 8: i2 at 9.5, i3 at 9, i4 at 9 and 10
    np.testing.assert_allclose(m.scores.numpy(), recent + alltime / (n + 1), rtol=1e-6)
    # recent counts decide; all-time counts only break ties (their term stays below 1)
    order = torch.argsort(m.scores[1:], descending=True, stable=True).add(1).tolist()
    assert order == [4, 2, 3, 1, 5, 6, 7]  # i2 and i3 tie on recent (1 each): i2 has more all-time events
    assert np.all(np.floor(m.scores.numpy()) == recent)
    # a window covering everything is all-time popularity (up to the tie-break term)
    wide = recent_popularity(train, INDEX, days=365)
    np.testing.assert_allclose(wide.scores.numpy(), alltime * (1 + 1 / (n + 1)), rtol=1e-6)


# ---------------------------------------------------------------- the first-order Markov chain


def test_markov_is_p_next_given_last_and_directional():
    """Users a, b read i1 -> i2 -> i3, c, d read i4 -> i5 -> i6: P(i2 | i1) = 1, never P(i1 | i2)."""
    m = markov(_knn_train(), INDEX)
    p = m.sim.to_dense()
    assert p[1, 2] == 1.0 and p[2, 3] == 1.0 and p[4, 5] == 1.0
    assert p[2, 1] == 0.0 and p[3, 2] == 0.0 and p[1, 3] == 0.0  # not symmetric, not beyond one step
    assert p[3].sum() == 0.0 and p[7].sum() == 0.0  # nothing followed i3; i7 never occurs
    assert (m.n_recent, m.decay, m.symmetric) == (2, 0.5, False)


def test_markov_rows_sum_to_one_over_what_followed():
    train = _frame([("a", "i1", 0), ("a", "i2", 1), ("b", "i1", 0), ("b", "i3", 1), ("c", "i1", 0), ("c", "i2", 1)])
    p = transition_probabilities(train, INDEX).to_dense()
    torch.testing.assert_close(p[1, 1:4], torch.tensor([0.0, 2 / 3, 1 / 3]))


def test_markov_scores_the_last_two_behaviours_the_older_at_half():
    m = markov(_knn_train(), INDEX)
    p = m.sim.to_dense()
    s = _scores(m, [4, 1, 5])  # i5 newest, i1 before it, i4 beyond the two newest
    torch.testing.assert_close(s, p[5] + 0.5 * p[1])
    assert int(s[1:].argmax()) + 1 == 6


def test_a_borrowing_markov_item_gets_its_neighbours_rows_and_columns_apart():
    """A directional matrix lends "what follows" as a row and "what came before" as a column;
    the symmetric item-kNN lends one vector for both (as it always did)."""
    m = markov(_knn_train(), INDEX)
    p = m.sim.to_dense()
    m.add_items(torch.zeros(1, 4))
    m.borrow_rows(torch.tensor([[2]]), torch.tensor([[1.0]]), at=8)
    q = m.sim.to_dense()
    torch.testing.assert_close(q[8, :8], p[2])  # it is followed by what follows i2 (i3)
    torch.testing.assert_close(q[:8, 8], p[:, 2])  # and follows what i2 follows (i1)
    assert q[8, 3] == 1.0 and q[1, 8] == 1.0 and q[8, 1] == 0.0
