"""models.baselines.EASE: the closed form against hand-computed and independent answers, the one
model interface (history exclusion by the evaluator, added items), the λ search, the artifact."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from models import artifacts
from models.baselines import EASE, ease, ease_weights, interaction_gram
from models.data import ItemIndex, leave_one_out, pad_left, user_sequences
from models.evaluate import rank_targets
from models.fitting import BASELINES, HYBRID_COMPONENTS, fit_ease

T0 = pd.Timestamp("2024-01-01", tz="UTC")


def _frame(seqs: dict[str, list[str]]) -> pd.DataFrame:
    rows = [(u, i, T0 + pd.Timedelta(days=d)) for u, items in seqs.items() for d, i in enumerate(items)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "ts"]).assign(event="view", value=1.0)


def _index(n: int) -> ItemIndex:
    return ItemIndex(tuple(f"i{k}" for k in range(1, n + 1)))


def test_two_items_match_the_hand_computed_closed_form():
    # item 1 consumed by 3 users, item 2 by 2, both by 1 (user a): G = [[3, 1], [1, 2]]
    train = _frame({"a": ["i1", "i2", "i1"], "b": ["i1"], "c": ["i1"], "d": ["i2"]})  # a's repeat counts once
    gram = interaction_gram(train, _index(2))
    np.testing.assert_array_equal(gram, [[0, 0, 0], [0, 3, 1], [0, 1, 2]])
    lam = 2.0
    B = ease_weights(gram, lam).numpy()
    # P = (G + λI)⁻¹ ∝ [[2+λ, -1], [-1, 3+λ]], so B[1,2] = -P12/P22 = 1/(3+λ) and B[2,1] = 1/(2+λ)
    assert B[1, 2] == pytest.approx(1 / (3 + lam), rel=1e-6)
    assert B[2, 1] == pytest.approx(1 / (2 + lam), rel=1e-6)
    assert B[1, 1] == 0 and B[2, 2] == 0
    assert np.all(B[0] == 0) and np.all(B[:, 0] == 0)


def test_each_column_is_the_ridge_regression_of_that_item_on_the_others():
    rng = np.random.default_rng(0)
    X = (rng.random((40, 6)) < 0.35).astype(float)
    seqs = {f"u{u}": [f"i{j + 1}" for j in np.flatnonzero(X[u])] for u in range(len(X)) if X[u].any()}
    lam = 3.0
    B = ease(_frame(seqs), _index(6), lam).B.numpy()[1:, 1:]
    assert np.all(np.diag(B) == 0)
    for j in range(6):
        others = [i for i in range(6) if i != j]
        A = X[:, others]
        want = np.linalg.solve(A.T @ A + lam * np.eye(5), A.T @ X[:, j])  # min ||x_j - A b||² + λ||b||²
        np.testing.assert_allclose(B[others, j], want, rtol=1e-4, atol=1e-6)


def test_scores_are_the_binary_history_times_b():
    m = EASE(torch.arange(16, dtype=torch.float32).reshape(4, 4), lam=1.0)
    seq = torch.tensor([[0, 0, 1, 3], [2, 2, 2, 1], [0, 0, 0, 0]])
    s = m.score_all(seq, torch.zeros_like(seq))
    B = m.B
    torch.testing.assert_close(s[0], B[1] + B[3])
    torch.testing.assert_close(s[1], B[2] + B[1])  # a repeated item counts once
    torch.testing.assert_close(s[2], torch.zeros(4))  # padding (row 0) is never part of a history
    assert m.n_items == 3
    w = m.interest_weights(seq, torch.zeros_like(seq))
    torch.testing.assert_close(w[0], torch.tensor([0.0, 0.0, 0.5, 0.5]))


def test_evaluator_excludes_the_history_but_ranks_the_target():
    # i1 and i2 co-occur most, so each is the other's best score: both seen, both must be excluded
    train = _frame({**{f"u{k}": ["i1", "i2"] for k in range(5)}, **{f"v{k}": ["i1", "i3"] for k in range(2)}})
    m = ease(train, _index(6), 1.0)
    test = leave_one_out(user_sequences(_frame({"x": ["i2", "i1", "i4", "i3"]}), _index(6)), "test", 5)
    raw = m.score_all(torch.as_tensor(test.seq), torch.as_tensor(test.ts))[0]
    assert int(raw[1:].argmax()) + 1 in (1, 2) and raw[1] > raw[3] and raw[2] > raw[3]  # unmasked, seen items lead
    ranks, top = rank_targets(m, test, k=3)
    assert not {1, 2, 4} & set(top[0].tolist())  # history excluded
    allowed = [j for j in range(1, 7) if j not in (1, 2, 4)]
    want = sorted(allowed, key=lambda j: -float(raw[j]))
    assert set(top[0].tolist()) == set(want) and top[0][0] == want[0]  # i5, i6 tie at 0
    assert ranks[0] == want.index(3) + 1  # the target (i3) is still rankable


def test_add_items_and_borrow_rows_keep_a_zero_diagonal():
    m = ease(_frame({"a": ["i1", "i2"], "b": ["i2", "i3"], "c": ["i1", "i3"]}), _index(3), 1.0)
    before = m.B.clone()
    m.add_items(torch.zeros(2, 8))
    assert m.B.shape == (6, 6) and m.n_items == 5
    torch.testing.assert_close(m.B[:4, :4], before)
    assert torch.all(m.B[4:] == 0) and torch.all(m.B[:, 4:] == 0)
    m.borrow_rows(torch.tensor([[1, 2]]), torch.tensor([[0.5, 0.5]]))
    assert m.B.shape == (7, 7)
    torch.testing.assert_close(m.B[6, :4], 0.5 * (before[1] + before[2]))
    torch.testing.assert_close(m.B[:4, 6], 0.5 * (before[:, 1] + before[:, 2]))
    assert torch.all(m.B.diagonal() == 0)


def test_fit_ease_picks_the_regularisation_on_validation():
    seqs = {f"u{k}": ["i1", "i2", "i3", "i4"] if k % 2 else ["i3", "i4", "i1", "i2"] for k in range(12)}
    inter = _frame(seqs)
    index = _index(12)  # i5..i12 never seen: a catalogue larger than k
    us = user_sequences(inter, index)
    valid = leave_one_out(us, "valid", 5)
    train = inter.groupby("user_id", sort=False).head(2)
    lambdas = (1.0, 10.0, 1000.0)
    model, search = fit_ease(train, index, lambdas, valid)
    assert [r["lambda"] for r in search] == list(lambdas)
    best = max(search, key=lambda r: r["valid_ndcg@10"])
    assert model.lam == best["lambda"]
    torch.testing.assert_close(model.B, ease(train, index, model.lam).B)
    with pytest.raises(ValueError, match="validation"):
        fit_ease(train, index, lambdas, None)
    assert fit_ease(train, index, (5.0,), None)[0].lam == 5.0
    with pytest.raises(ValueError, match="positive"):
        ease(train, index, 0.0)
    assert "ease" in BASELINES and "ease" in HYBRID_COMPONENTS  # seed-free, and a part the hybrid can weigh


def test_the_hybrid_weighs_ease_as_a_component_and_round_trips(tmp_path):
    from models.hybrid import Hybrid, log_normalised
    from models.interest import InterestConfig, InterestModel

    m = ease(_frame({"a": ["i1", "i2", "i3"], "b": ["i2", "i3"], "c": ["i3", "i1"], "d": ["i1", "i2"]}), _index(3), 1.0)
    torch.manual_seed(0)
    text = torch.randn(4, 4)
    text[0] = 0
    base = InterestModel(InterestConfig(n_items=3, text_dim=4, dim=8, max_len=4, n_layers=1, n_heads=2, dropout=0.0), text).eval()
    hybrid = Hybrid(base, {"ease": m}, {"ease": 2.0}).eval()
    seq = torch.as_tensor(pad_left(np.array([1]), 4)).unsqueeze(0)
    ts = torch.zeros_like(seq)
    expected = hybrid.base_log_probs(seq, ts) + 2.0 * log_normalised(m.score_all(seq, ts), 1e-3)
    got = hybrid.score_all(seq, ts)
    assert torch.isfinite(got[0, 1:]).all()  # EASE's negative scores count as "no evidence", never NaN
    torch.testing.assert_close(got[:, 1:], expected[:, 1:])
    artifacts.save(tmp_path, ["i1", "i2", "i3"], text, {"interest": base, "ease": m, "hybrid": hybrid}, {"dataset": "t"})
    loaded = artifacts.load_models(tmp_path)["hybrid"]
    torch.testing.assert_close(loaded.score_all(seq, ts), got)
    hybrid.add_items(torch.randn(1, 4))  # a new item borrows EASE rows by text, as it does item-kNN's
    assert hybrid.components["ease"].B.shape == (5, 5)


def test_artifact_round_trip(tmp_path):
    m = ease(_frame({"a": ["i1", "i2", "i3"], "b": ["i2", "i3"], "c": ["i3", "i1"]}), _index(3), 2.5)
    artifacts.save(tmp_path, ["i1", "i2", "i3"], torch.zeros(4, 2), {"ease": m}, {"dataset": "t"})
    loaded = artifacts.load_models(tmp_path)["ease"]
    assert isinstance(loaded, EASE) and loaded.lam == 2.5
    torch.testing.assert_close(loaded.B, m.B)
    seq = torch.as_tensor(pad_left(np.array([1, 3]), 4)).unsqueeze(0)
    torch.testing.assert_close(loaded.score_all(seq, torch.zeros_like(seq)), m.score_all(seq, torch.zeros_like(seq)))
