"""Unit tests of models.interest (the interest-weight model), models.interest_fit (fit_interest) and
models.train (pick_device).

Tiny configurations on CPU; training tests run a few hundred steps at most.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.params import TrainParams
from models.data import EvalSet, pad_left
from models.evaluate import evaluate_model, rank_targets
from models.interest import InterestModel, SASRecBlock, TimeAwareAttention, elapsed_hours
from models.interest_fit import fit_interest
from models.metrics import target_ranks
from models.train import pick_device
from tests.unit.helpers import DIM, HOUR, L, N_ITEMS, T0, TEXT_DIM, padded_batch, random_text_emb, tiny_config

_cfg, _text_emb = tiny_config, random_text_emb


def _model(seed: int = 0, **kw) -> InterestModel:
    torch.manual_seed(seed)
    return InterestModel(_cfg(**kw), _text_emb(seed)).eval()


def _batch(seqs: list[list[int]], length: int = L) -> tuple[torch.Tensor, torch.Tensor]:
    return padded_batch(seqs, length)


def _pattern_windows(n: int, length: int = L, seed: int = 0, items: int = N_ITEMS):
    """Windows of the deterministic pattern i -> i+1 (wrapping within 1..items), labels shifted by one."""
    rng = np.random.default_rng(seed)
    seq, ts, lab = [], [], []
    for _ in range(n):
        s = int(rng.integers(1, items + 1))
        run = [(s - 1 + j) % items + 1 for j in range(length + 1)]
        keep = int(rng.integers(1, length + 1))  # a variety of history lengths (left padding)
        run = run[length - keep :]
        seq.append(pad_left(np.array(run[:-1]), length))
        lab.append(pad_left(np.array(run[1:]), length))
        ts.append(pad_left(T0 + HOUR * np.arange(len(run) - 1), length))
    ts_ = np.stack(ts)
    return np.stack(seq), ts_, np.stack(lab), np.where(ts_ > 0, ts_ + HOUR, 0)  # each label an hour after its input


def _pattern_eval(length: int = L, items: int = N_ITEMS, hist: int = 4) -> EvalSet:
    seq, ts, tg, ex = [], [], [], []
    for s in range(1, items + 1):
        run = [(s - 1 + j) % items + 1 for j in range(hist + 1)]
        seq.append(pad_left(np.array(run[:-1]), length))
        ts.append(pad_left(T0 + HOUR * np.arange(hist), length))
        tg.append(run[-1])
        ex.append(np.unique(run[:-1]))
    return EvalSet([str(s) for s in range(items)], np.stack(seq), np.stack(ts), np.array(tg), ex, np.zeros(items, dtype=np.int64))


def _train_steps(model: InterestModel, steps: int, lr: float = 1e-2, seed: int = 0) -> list[float]:
    seq, ts, lab, _ = (torch.as_tensor(a) for a in _pattern_windows(64, seed=seed))
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model.loss(seq, ts, lab)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


# ---------------------------------------------------------------- shapes


def test_output_shapes_and_padding_row():
    m = _model()
    seq, ts = _batch([[1, 2, 3], [4, 5, 6, 7, 8, 9, 10, 11]])
    user, w = m.encode(seq, ts)
    assert user.shape == (2, L, DIM) and w.shape == (2, L, L)
    assert m.score_all(seq, ts).shape == (2, N_ITEMS + 1)
    assert m.interest_weights(seq, ts).shape == (2, L)
    iv = m.item_vectors()
    assert iv.shape == (N_ITEMS + 1, DIM)
    assert torch.all(iv[0] == 0)
    assert torch.isfinite(m.score_all(seq, ts)).all()


def test_elapsed_hours_formula():
    ts = torch.tensor([[0, 3600, 7 * 3600]])
    e = elapsed_hours(ts)
    assert e[0, 2, 0].item() == pytest.approx(np.log1p(7.0))
    assert e[0, 1, 0].item() == pytest.approx(np.log1p(1.0))
    assert e[0, 0, 2].item() == 0.0  # future behaviours clamp to zero
    assert e[0, 1, 1].item() == 0.0


def test_needs_text_or_id_embedding():
    with pytest.raises(ValueError):
        InterestModel(_cfg(use_text=False, use_id_embedding=False))


# ---------------------------------------------------------------- causality and padding


@pytest.mark.parametrize("long_term", [True, False])
@pytest.mark.parametrize("block", ["preln", "sasrec"])
def test_causal_later_items_do_not_change_earlier_positions(long_term, block):
    m = _model(use_long_term=long_term, block=block)
    seq, ts = _batch([[3, 7, 1, 9, 4, 12, 15, 2]])
    u1, w1 = m.encode(seq, ts)
    seq2, ts2 = seq.clone(), ts.clone()
    seq2[0, 5:] = torch.tensor([19, 18, 17])
    ts2[0, 5:] += 1000 * HOUR
    u2, w2 = m.encode(seq2, ts2)
    torch.testing.assert_close(u1[:, :5], u2[:, :5])
    torch.testing.assert_close(w1[:, :5], w2[:, :5])
    assert not torch.allclose(u1[:, 5:], u2[:, 5:])  # the change is visible from position 5 on
    # interest weights never point to the future
    assert torch.all(torch.triu(w1[0], diagonal=1) == 0)


@pytest.mark.parametrize("kw", [{}, {"use_long_term": False}, {"use_position": False}, {"use_time_decay": False},
                                {"block": "sasrec"}, {"block": "sasrec", "init": "xavier", "use_text": False}])
def test_left_padding_does_not_change_newest_vector(kw):
    m = _model(**kw)
    hist = [5, 9, 2, 14, 7]
    seq5, ts5 = _batch([hist], length=5)
    seq8, ts8 = _batch([hist], length=8)
    assert seq8[0, :3].tolist() == [0, 0, 0]
    torch.testing.assert_close(m.score_all(seq5, ts5), m.score_all(seq8, ts8), rtol=1e-5, atol=1e-5)
    w5, w8 = m.interest_weights(seq5, ts5), m.interest_weights(seq8, ts8)
    torch.testing.assert_close(w8[:, 3:], w5, rtol=1e-5, atol=1e-6)


def test_interest_weights_sum_to_one_and_zero_on_padding():
    for kw in ({}, {"use_long_term": False}):
        m = _model(**kw)
        seq, ts = _batch([[1, 2], [3, 4, 5, 6, 7], list(range(1, 9)), [11]])
        w = m.interest_weights(seq, ts)
        torch.testing.assert_close(w.sum(1), torch.ones(4))
        assert torch.all(w[seq == 0] == 0)
        assert torch.all(w >= 0)
        assert w[3, -1].item() == pytest.approx(1.0)  # a single behaviour explains everything


# ---------------------------------------------------------------- ablations


@pytest.mark.parametrize(
    "kw",
    [
        {"use_id_embedding": False},
        {"use_text": False},
        {"use_time_decay": False},
        {"use_long_term": False},
        {"use_position": False},
        {"n_layers": 1},
        {"block": "sasrec"},
    ],
)
def test_each_ablation_builds_and_trains(kw):
    m = _model(**kw)
    if kw.get("use_id_embedding") is False:
        assert m.id_emb is None
    if kw.get("use_text") is False:
        assert m.text_proj is None
    if kw.get("use_time_decay") is False:
        assert all(b.attn.decay is None for b in m.blocks)
    if kw.get("use_long_term") is False:
        assert not hasattr(m, "gate")
    if kw.get("use_position") is False:
        assert m.pos_emb is None
    losses = _train_steps(m, 40)
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0] * 0.8


@pytest.mark.parametrize("long_term", [True, False])
def test_without_time_decay_timestamps_are_ignored(long_term):
    """The use_time_decay=False ablation must not look at elapsed time anywhere."""
    m = _model(use_time_decay=False, use_long_term=long_term)
    seq, ts = _batch([[4, 8, 15, 16, 2, 3]])
    ts_far = ts.clone()
    ts_far[0, -6] -= 1000 * 24 * HOUR  # the oldest behaviour moved 1000 days into the past
    torch.testing.assert_close(m.score_all(seq, ts), m.score_all(seq, ts_far))
    torch.testing.assert_close(m.interest_weights(seq, ts), m.interest_weights(seq, ts_far))


# ---------------------------------------------------------------- time decay


def test_time_decay_lowers_attention_to_old_behaviours_in_attention_layer():
    torch.manual_seed(0)
    cfg = _cfg(n_heads=2)
    att = TimeAwareAttention(cfg).eval()
    with torch.no_grad():
        att.decay.fill_(10.0)  # softplus(10) ~ 10: strong decay
    x = torch.randn(1, 4, DIM)
    mask = torch.tril(torch.ones(4, 4, dtype=torch.bool)).unsqueeze(0)
    same = torch.full((1, 4), T0)
    old = same.clone()
    old[0, 0] -= 1000 * 24 * HOUR
    _, a_same = att(x, elapsed_hours(same), mask)
    _, a_old = att(x, elapsed_hours(old), mask)
    # zero elapsed time: no penalty; 1000 days: penalty of softplus(10) * log1p(24000 h) on the logit
    assert torch.all(a_old[0, :, 3, 0] < a_same[0, :, 3, 0])
    ratio = (a_old[0, :, 3, 0] / a_old[0, :, 3, 1]) / (a_same[0, :, 3, 0] / a_same[0, :, 3, 1])
    expected = torch.exp(-torch.nn.functional.softplus(torch.tensor(10.0)) * np.log1p(1000 * 24))
    torch.testing.assert_close(ratio, expected.expand(2), rtol=1e-3, atol=1e-30)


@pytest.mark.parametrize("long_term", [True, False])
def test_time_decay_lowers_interest_weight_of_old_behaviour(long_term):
    m = _model(use_long_term=long_term)
    with torch.no_grad():
        for b in m.blocks:
            b.attn.decay.fill_(10.0)
        if long_term:
            m.long_decay.fill_(10.0)
    seq = torch.tensor([[3, 9, 12, 5]])
    recent = torch.full((1, 4), T0)
    old = recent.clone()
    old[0, 0] -= 1000 * 24 * HOUR
    w_recent = m.interest_weights(seq, recent)[0, 0].item()
    w_old = m.interest_weights(seq, old)[0, 0].item()
    assert w_old < w_recent
    assert w_old < 1e-6


# ---------------------------------------------------------------- cold items via text


def test_text_only_model_scores_cold_item_through_its_text():
    cold, twin = 20, 10
    emb = _text_emb(3)
    emb[cold] = emb[twin]  # the cold item has the same text as a warm one
    torch.manual_seed(0)
    m = InterestModel(_cfg(use_id_embedding=False, n_layers=1), emb)
    items = N_ITEMS - 1  # training pattern only ever uses items 1..19: item 20 is never seen
    seq, ts, lab, _ = (torch.as_tensor(a) for a in _pattern_windows(128, items=items))
    assert not (seq == cold).any() and not (lab == cold).any()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    m.train()
    for _ in range(150):
        loss = m.loss(seq, ts, lab)
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    s_seq, s_ts = _batch([[6, 7, 8, 9]])  # next in the pattern: item 10
    with torch.no_grad():
        scores = m.score_all(s_seq, s_ts)
    assert scores[0, cold].item() == pytest.approx(scores[0, twin].item(), rel=1e-5)
    ranks, _ = target_ranks(scores, torch.tensor([cold]), [np.array([6, 7, 8, 9])])
    assert ranks.item() <= 2  # only its text twin (tie, lower index) can be ahead

    # with an untrained id embedding added, the cold item is no longer a copy of its twin
    torch.manual_seed(0)
    m_id = InterestModel(_cfg(use_id_embedding=True, n_layers=1), emb).eval()
    iv = m_id.item_vectors()
    assert not torch.allclose(iv[cold], iv[twin])


def test_added_item_borrows_the_id_embedding_of_its_text_twin():
    """An item added after training gets the id row of its nearest trained items by text, so a new
    item with the same text as a trained one scores exactly like it."""
    torch.manual_seed(0)
    emb = _text_emb(3)
    m = InterestModel(_cfg(cold_neighbours=1, n_layers=1), emb).eval()
    twin = 7
    m.add_items(emb[twin].unsqueeze(0).clone())
    new = N_ITEMS + 1
    iv = m.item_vectors()
    assert iv.shape[0] == N_ITEMS + 2
    torch.testing.assert_close(iv[new], iv[twin])
    seq, ts = _batch([[3, 4, 5]])
    scores = m.score_all(seq, ts)
    assert scores[0, new].item() == pytest.approx(scores[0, twin].item(), rel=1e-5)


def test_borrowed_id_row_is_the_similarity_weighted_mean_of_the_neighbours():
    torch.manual_seed(0)
    emb = torch.zeros(N_ITEMS + 1, TEXT_DIM)
    emb[1:] = torch.randn(N_ITEMS, TEXT_DIM) * 0.01
    emb[2, 0], emb[5, 1] = 1.0, 1.0  # two clear neighbours of the new text below
    m = InterestModel(_cfg(cold_neighbours=2, n_layers=1), emb).eval()
    text = torch.zeros(1, TEXT_DIM)
    text[0, 0], text[0, 1] = 3.0, 1.0  # closer to item 2 than to item 5
    row = m.borrowed_id_rows(text)[0]
    c2 = torch.nn.functional.cosine_similarity(text[0], emb[2], dim=0)
    c5 = torch.nn.functional.cosine_similarity(text[0], emb[5], dim=0)
    expected = (c2 * m.id_emb.weight[2] + c5 * m.id_emb.weight[5]) / (c2 + c5)
    torch.testing.assert_close(row, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kw", [{"cold_neighbours": 0}, {"use_text": False}])
def test_no_borrowed_id_rows_without_text_or_when_switched_off(kw):
    """cold_neighbours=0 keeps the text-only vector; an ID-only model (SASRec) gets no text help."""
    m = _model(**kw)
    m.add_items(torch.randn(2, TEXT_DIM))
    assert len(m.cold_id) == 0
    iv = m.item_vectors()
    assert iv.shape[0] == N_ITEMS + 3
    if kw.get("use_text") is False:
        assert torch.all(iv[N_ITEMS + 1 :] == 0)  # nothing to score a new item by


def test_new_text_for_an_added_item_re_borrows_its_id_row():
    torch.manual_seed(0)
    emb = _text_emb(3)
    m = InterestModel(_cfg(cold_neighbours=1, n_layers=1), emb).eval()
    m.add_items(emb[7].unsqueeze(0).clone())
    new = N_ITEMS + 1
    torch.testing.assert_close(m.cold_id[0], m.id_emb.weight[7])
    m.set_item_text(new, emb[12])  # the item's text now reads like item 12
    torch.testing.assert_close(m.text_emb[new], emb[12])
    torch.testing.assert_close(m.cold_id[0], m.id_emb.weight[12])
    m.set_item_text(3, emb[5])  # a trained item: only its text changes
    torch.testing.assert_close(m.text_emb[3], emb[5])
    assert len(m.cold_id) == 1


def test_borrowed_rows_are_not_saved_with_the_weights():
    """Serving re-adds the posted items at every load, so the rows must not be in the state dict
    (an artifact saved before this buffer existed still loads)."""
    m = _model()
    m.add_items(torch.randn(2, TEXT_DIM))
    assert "cold_id" not in m.state_dict()


# ---------------------------------------------------------------- fit_interest and pick_device


def test_fit_interest_learns_next_item_pattern():
    windows = _pattern_windows(256, seed=1)
    valid = _pattern_eval()
    tp = TrainParams(lr=1e-2, weight_decay=0.0, batch_size=64, epochs=12, patience=12, seed=0, dropout=0.0)
    cfg = _cfg(n_layers=1)
    res = fit_interest(cfg, _text_emb(1), windows, valid, tp, "cpu", k=10)
    losses = [h["loss"] for h in res.history]
    assert len(res.history) >= 2
    assert losses[-1] < 0.5 * losses[0]
    assert res.best_valid == pytest.approx(max(h["valid_ndcg@10"] for h in res.history))
    assert res.history[res.best_epoch - 1]["valid_ndcg@10"] == pytest.approx(res.best_valid)
    # the best weights are restored: evaluating the returned model reproduces the best validation score
    m = evaluate_model(res.model, valid, k=10)
    assert m["ndcg@10"] == pytest.approx(res.best_valid, rel=1e-5)
    assert evaluate_model(res.model, valid, k=1)["hr@1"] >= 0.9


def test_fit_interest_early_stops():
    windows = _pattern_windows(32, seed=2)
    valid = _pattern_eval()
    tp = TrainParams(lr=0.0, weight_decay=0.0, batch_size=32, epochs=50, patience=2, seed=0)
    res = fit_interest(_cfg(n_layers=1), _text_emb(2), windows, valid, tp, "cpu")
    # lr 0: nothing changes, the first epoch stays best, and training stops after `patience` bad epochs
    assert res.best_epoch == 1
    assert len(res.history) == 1 + tp.patience


def test_pick_device(monkeypatch):
    assert pick_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto") == "cpu"
    with pytest.raises(RuntimeError):
        pick_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto") == "cuda"
    assert pick_device("cuda") == "cuda"


# ---------------------------------------------------------------- transition prior


def _transition(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(N_ITEMS + 1, N_ITEMS + 1, generator=g)
    t[0], t[:, 0] = 0, 0
    return t


def test_transition_prior_adds_the_lag_weighted_rows_of_the_last_behaviours():
    torch.manual_seed(0)
    m = InterestModel(_cfg(use_transition=True, transition_recent=3), _text_emb(), _transition()).eval()
    with torch.no_grad():
        m.transition_lag.copy_(torch.tensor([1.0, 0.0, -1.0]))
        m.transition_scale.fill_(2.5)
    seq, ts = _batch([[3, 5, 7, 9], [4]])
    with torch.no_grad():
        full = m.score_all(seq, ts)
        m.cfg.use_transition = False
        neural = m.score_all(seq, ts)
        m.cfg.use_transition = True
    w = torch.tensor([1.0, 0.0, -1.0]).softmax(0)
    t = _transition()
    expect0 = 2.5 * (w[0] * t[9] + w[1] * t[7] + w[2] * t[5])  # newest first; item 3 is beyond the last 3
    expect1 = 2.5 * w[0] * t[4]  # padding rows add nothing
    torch.testing.assert_close(full[0] - neural[0], expect0)
    torch.testing.assert_close(full[1] - neural[1], expect1)


def test_transition_prior_is_causal_in_training_loss():
    """The prior at position t may only read behaviours at t and before: changing a later
    behaviour leaves the prior of earlier positions unchanged."""
    torch.manual_seed(0)
    m = InterestModel(_cfg(use_transition=True, transition_recent=2), _text_emb(), _transition()).eval()
    seq, _ = _batch([[1, 2, 3, 4, 5]])
    keep = seq > 0
    a = m.transition_prior(seq, keep)
    seq2 = seq.clone()
    seq2[0, -1] = 11
    b = m.transition_prior(seq2, keep)
    torch.testing.assert_close(a[:-1], b[:-1])
    assert not torch.allclose(a[-1], b[-1])


def test_transition_prior_gives_new_items_nothing_and_keeps_their_text_score():
    torch.manual_seed(0)
    m = InterestModel(_cfg(use_transition=True), _text_emb(), _transition()).eval()
    m.add_items(torch.randn(2, TEXT_DIM))
    assert m.transition.shape == (N_ITEMS + 3, N_ITEMS + 3)
    t = m.transition.to_dense()
    assert t[N_ITEMS + 1 :].abs().sum() == 0 and t[:, N_ITEMS + 1 :].abs().sum() == 0
    seq, ts = _batch([[1, 2, 3]])
    with torch.no_grad():
        scores = m.score_all(seq, ts)
    assert scores.shape == (1, N_ITEMS + 3) and torch.isfinite(scores[0, 1:]).all()


def test_fit_models_shares_one_cooccurrence_matrix_with_item_knn():
    import pandas as pd

    from models.data import ItemIndex
    from models.fitting import fit_models

    index = ItemIndex(tuple(f"i{k}" for k in range(N_ITEMS)))
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"user_id": np.repeat([f"u{k}" for k in range(10)], 6),
                          "item_id": [f"i{k}" for k in rng.integers(0, N_ITEMS, 60)],
                          "ts": pd.to_datetime(T0 + HOUR * np.arange(60), unit="s", utc=True)})
    tp = TrainParams(dim=DIM, max_len=L, epochs=1, patience=1, use_transition=True, use_trend=True, batch_size=16)
    windows = _pattern_windows(32)
    valid_seq, valid_ts, _, _ = _pattern_windows(8, seed=1)
    valid = EvalSet([f"u{k}" for k in range(8)], valid_seq, valid_ts, np.arange(1, 9), [np.array([], dtype=np.int64)] * 8, np.zeros(8))
    models, _ = fit_models(("item_knn", "interest", "sasrec"), train, index, _text_emb(), windows, valid, tp, "cpu")
    assert torch.equal(models["interest"].transition.to_dense(), models["item_knn"].sim.to_dense())
    assert models["interest"].transition.val.abs().sum() > 0
    assert not models["sasrec"].cfg.use_transition and not hasattr(models["sasrec"], "transition")
    # the trend table is counted from the same training events (60 hours: 3 or 4 days, one row past them)
    assert models["interest"].trend.shape[0] in (4, 5) and np.expm1(models["interest"].trend[-1].numpy()).sum() > 0
    assert not models["sasrec"].cfg.use_trend and not hasattr(models["sasrec"], "trend")


# ---------------------------------------------------------------- length-bucketed batches


def test_length_bucketed_batches_cover_every_window_once_with_similar_lengths():
    from models.interest_fit import length_bucketed_batches

    lengths = torch.tensor(np.random.default_rng(0).integers(1, 200, 1000))
    batches = length_bucketed_batches(lengths, 128, torch.Generator().manual_seed(0))
    flat = torch.cat(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    spreads = [int(lengths[b].max() - lengths[b].min()) for b in batches]
    assert max(spreads) < 40  # sorted by length: a batch spans a narrow band, not 1..199
    again = length_bucketed_batches(lengths, 128, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(batches, again))  # deterministic given the generator
    other = length_bucketed_batches(lengths, 128, torch.Generator().manual_seed(1))
    assert not all(torch.equal(a, b) for a, b in zip(batches, other))


@pytest.mark.parametrize("kw", [{}, {"use_transition": True}, {"use_long_term": False}, {"use_trend": True}])
def test_trimming_padding_columns_leaves_the_loss_unchanged(kw):
    from models.data import trim_padding as _trim

    torch.manual_seed(0)
    trend = (torch.rand(3, N_ITEMS + 1), T0 - T0 % 86400)
    m = InterestModel(_cfg(**kw), _text_emb(), _transition(), trend).eval()
    seq, ts, lab, lab_ts = (torch.as_tensor(a) for a in _pattern_windows(16, length=L))
    short = seq.clone()
    short[:, : L // 2] = 0  # every row at most L/2 long: half the columns are padding
    lab2 = lab.clone()
    lab2[short == 0] = 0
    trimmed = _trim(short, ts, lab2, lab_ts)
    assert trimmed[0].shape[1] <= L - L // 2
    with torch.no_grad():
        torch.testing.assert_close(m.loss(*trimmed), m.loss(short, ts, lab2, lab_ts))


# ---------------------------------------------------------------- the SASRec layer, init and gate


def test_sasrec_block_takes_queries_from_the_norm_and_keys_values_from_raw_input():
    """The formula of the SASRec paper's layer (as in RecTools), written out by hand."""
    torch.manual_seed(0)
    cfg = tiny_config(block="sasrec", use_time_decay=False)
    block = SASRecBlock(cfg).eval()
    x = torch.randn(2, L, DIM) * 3 + 1  # far from normalised, so LN(x) and x differ a lot
    mask = torch.tril(torch.ones(L, L, dtype=torch.bool)).expand(2, L, L)
    out, _ = block(x, torch.zeros(2, L, L), mask)
    q_in = block.ln_1(x)
    w, b = block.attn.c_attn.weight, block.attn.c_attn.bias
    q = q_in @ w[:DIM].T + b[:DIM]
    k = x @ w[DIM : 2 * DIM].T + b[DIM : 2 * DIM]
    v = x @ w[2 * DIM :].T + b[2 * DIM :]
    heads = lambda t: t.view(2, L, cfg.n_heads, DIM // cfg.n_heads).transpose(1, 2)  # noqa: E731
    att = (heads(q) @ heads(k).transpose(-2, -1)) / (DIM // cfg.n_heads) ** 0.5
    att = att.masked_fill(~mask.unsqueeze(1), float("-inf")).softmax(-1)
    y = block.attn.c_proj((att @ heads(v)).transpose(1, 2).reshape(2, L, DIM))
    h = q_in + y
    f = block.ln_2(h)
    expected = f + block.mlp(f)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert block.mlp[0].out_features == DIM and isinstance(block.mlp[1], torch.nn.ReLU)  # d -> d ReLU feed-forward


def test_unknown_block_or_init_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown block"):
        InterestModel(tiny_config(block="bert"), random_text_emb())
    with pytest.raises(ValueError, match="unknown init"):
        InterestModel(tiny_config(init="kaiming"), random_text_emb())


def test_xavier_init_replaces_the_small_normal_embeddings():
    normal = _model(init="normal", use_text=False)
    xavier = _model(init="xavier", use_text=False)
    n, d = N_ITEMS + 1, DIM
    assert normal.id_emb.weight.std().item() == pytest.approx(0.02, rel=0.3)
    assert xavier.id_emb.weight.std().item() == pytest.approx((2 / (n + d)) ** 0.5, rel=0.3)


def test_gate_init_sets_the_short_term_share_at_the_start():
    seq, ts = _batch([[3, 7, 1, 9, 4, 12, 15, 2]])
    shares = {}
    for g in (0.0, 3.0):
        m = _model(gate_init=g)
        assert torch.all(m.gate.bias == g)
        seen = []
        m.gate.register_forward_hook(lambda _m, _i, out: seen.append(torch.sigmoid(out)))
        m.encode(seq, ts)
        shares[g] = seen[0][0, :, 0]
    # an even start mixes short and long term about half and half; +3 starts at ~sigmoid(3) = 0.95 short-term
    assert torch.all((shares[0.0] - 0.5).abs() < 0.2)
    assert torch.all(shares[3.0] > 0.9)


def test_shuffled_batches_cover_every_window_once_and_regroup_each_epoch():
    from models.interest_fit import shuffled_batches
    gen = torch.Generator().manual_seed(0)
    first, second = shuffled_batches(1000, 128, gen), shuffled_batches(1000, 128, gen)
    for batches in (first, second):
        assert sorted(torch.cat(batches).tolist()) == list(range(1000))
        assert [len(b) for b in batches] == [128] * 7 + [104]
    # the next epoch draws new batch compositions, not only a new order of the same batches
    assert {frozenset(b.tolist()) for b in first}.isdisjoint({frozenset(b.tolist()) for b in second})


@pytest.mark.parametrize("kw", [{}, {"block": "sasrec", "use_text": False, "use_long_term": False}])
def test_length_sorted_trimmed_evaluation_ranks_as_one_padded_batch(kw):
    # rank_targets batches users by history length and trims padding; the ranks must equal those
    # of scoring every user in one left-padded batch, in the users' own order
    model = _model(**kw).eval()
    rng = np.random.default_rng(3)
    lengths = [1, L, 3, 7, 2, L - 1, 5, 4]
    hists = [list(rng.integers(1, N_ITEMS + 1, size=n)) for n in lengths]
    seq, ts = _batch(hists)
    data = EvalSet([f"u{i}" for i in range(len(hists))], seq.numpy(), ts.numpy(), rng.integers(1, N_ITEMS + 1, size=len(hists)),
                   [np.unique(h) for h in hists], np.zeros(len(hists)))
    with torch.no_grad():
        want, masked = target_ranks(model.score_all(seq, ts), torch.as_tensor(data.targets), data.exclude)
    ranks, top = rank_targets(model, data, k=5, batch_size=3)
    assert ranks.tolist() == want.tolist()
    assert top.tolist() == masked.topk(5, dim=1).indices.tolist()


@pytest.mark.parametrize("kw", [{}, {"use_long_term": False}, {"use_time_decay": False}, {"use_position": False},
                                {"block": "sasrec", "use_text": False, "use_long_term": False, "use_time_decay": False},
                                {"block": "sasrec"}, {"n_layers": 1}])
def test_newest_position_only_equals_the_full_encoding(kw):
    # score_all and interest_weights encode the newest position only (last_only); it must be the
    # newest row of the full encoding, for every layer type and part, with left padding
    model = _model(**kw)
    seq, ts = _batch([[1, 2, 3], list(range(1, L + 1)), [5], [7, 7, 2, 9, 4]])
    with torch.no_grad():
        full_u, full_w = model.encode(seq, ts)
        last_u, last_w = model.encode(seq, ts, last_only=True)
        assert last_u.shape == (4, 1, DIM) and last_w.shape == (4, 1, L)
        torch.testing.assert_close(last_u[:, 0], full_u[:, -1], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(last_w[:, 0], full_w[:, -1], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model.score_all(seq, ts), full_u[:, -1] @ model.item_vectors().T, rtol=1e-5, atol=1e-5)


def test_split_invariant_dropout_is_torchs_unsplit_and_the_same_rows_split():
    """One process: torch's CPU dropout bit for bit (the same draw); a batch split across processes
    (``BatchRows.spread``): each part gets exactly the rows of the whole batch's masks."""
    import torch.nn.functional as F

    from models.dropout import BatchRows, SplitInvariantDropout

    rows = BatchRows()
    drop = SplitInvariantDropout(0.2, rows).train()
    x = torch.randn(6, 5, 7)
    torch.manual_seed(3)
    want = F.dropout(x, 0.2, True)
    torch.manual_seed(3)
    assert torch.equal(drop(x), want)
    for r in range(2):  # two "ranks", strided rows as models.distributed.shard gives them
        torch.manual_seed(3)
        with rows.spread(6, torch.arange(r, 6, 2)):
            assert torch.equal(drop(x[r::2]), want[r::2])
    assert rows.global_n is None  # the spread ends with its block
    assert torch.equal(drop.eval()(x), x)
