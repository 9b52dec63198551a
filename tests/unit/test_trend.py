"""models.trend (point-in-time item counts per day) and the interest model's trend prior."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from models.data import ItemIndex, pad_left
from models.interest import InterestModel
from models.trend import DAY, day_rows, trend_table
from tests.unit.helpers import HOUR, L, N_ITEMS, random_text_emb, tiny_config

IDS = [f"i{k}" for k in range(1, N_ITEMS + 1)]
INDEX = ItemIndex(tuple(IDS))
MIDNIGHT = 1_699_920_000  # 2023-11-14 00:00 UTC
assert MIDNIGHT % DAY == 0


def _events(rows: list[tuple[str, float]]) -> pd.DataFrame:
    """(item, day offset from MIDNIGHT) -> interactions."""
    return pd.DataFrame({"user_id": [f"u{k}" for k in range(len(rows))], "item_id": [i for i, _ in rows],
                         "ts": pd.to_datetime([MIDNIGHT + d * DAY for _, d in rows], unit="s", utc=True)})


def test_rows_count_only_the_window_before_the_day():
    # i1 on days 0, 1, 1; i2 on day 3; an unknown item is ignored
    table, start = trend_table(_events([("i1", 0.5), ("i1", 1.2), ("i1", 1.9), ("i2", 3.1), ("nope", 2.0)]), INDEX, 2)
    assert start == MIDNIGHT
    counts = np.expm1(table.numpy()).round().astype(int)
    assert counts.shape == (5, N_ITEMS + 1)  # days 0..3 and one past the data
    assert counts[:, 1].tolist() == [0, 1, 3, 2, 0]  # day d counts days d-2 and d-1, never day d itself
    assert counts[:, 2].tolist() == [0, 0, 0, 0, 1]  # the last row: the window that ends with the newest event
    assert counts[:, 0].sum() == 0 and counts[:, 3:].sum() == 0


def test_day_rows_clamps_to_the_table():
    now = torch.tensor([MIDNIGHT - 5, MIDNIGHT, MIDNIGHT + DAY + 1, MIDNIGHT + 100 * DAY])
    assert day_rows(now, torch.tensor(MIDNIGHT), 5).tolist() == [0, 0, 1, 4]


def test_bad_window_is_a_clear_error():
    with pytest.raises(ValueError, match="trend_days"):
        trend_table(_events([("i1", 0.0)]), INDEX, 0)


def _model(trend: tuple[torch.Tensor, int], gap: float = 0.0) -> InterestModel:
    torch.manual_seed(0)
    m = InterestModel(tiny_config(use_trend=True), random_text_emb(), trend=trend).eval()
    with torch.no_grad():
        m.trend_scale.fill_(1.0)
        m.trend_gap.fill_(gap)
    return m


def _user(day: float) -> tuple[torch.Tensor, torch.Tensor]:
    seq = torch.tensor(pad_left(np.array([3, 4]), L))[None]
    ts = torch.tensor(pad_left(np.array([MIDNIGHT + day * DAY - HOUR, MIDNIGHT + day * DAY]), L))[None]
    return seq, ts


def test_prior_adds_the_counts_of_the_request_day():
    # i5 trends on days 0-1, i6 on days 5-6
    events = _events([("i5", 0.1)] * 9 + [("i5", 1.1)] * 9 + [("i6", 5.2)] * 30 + [("i6", 6.2)] * 30)
    table, start = trend_table(events, INDEX, 2)
    m = _model((table, start))
    off = InterestModel(tiny_config(), random_text_emb())
    off.load_state_dict(m.state_dict(), strict=False)  # same weights, no prior
    seq, ts = _user(1.0)
    with torch.no_grad():
        base = off.score_all(seq, ts)[0]
        early = m.score_all(seq, ts, torch.tensor([MIDNIGHT + 2 * DAY]))[0] - base  # reads day 2: i5 x18
        late = m.score_all(seq, ts, None)[0] - base  # after the data: the last 2 days, i6 x60
    assert early[5] == pytest.approx(np.log1p(18), abs=1e-5) and early[6] == pytest.approx(0.0, abs=1e-5)
    assert late[6] == pytest.approx(np.log1p(60), abs=1e-5) and late[5] == pytest.approx(0.0, abs=1e-5)


def test_the_prior_grows_with_the_time_away_when_trend_gap_is_positive():
    table, start = trend_table(_events([("i7", 0.5)] * 5), INDEX, 3)
    m = _model((table, start), gap=0.5)
    seq, ts = _user(0.0)
    with torch.no_grad():
        back = m.trend_prior(ts[:, -1] + 3 * DAY, ts[:, -1])[0]
        away = m.trend_prior(ts[:, -1] + 3 * DAY, ts[:, -1] - 30 * DAY)[0]
    assert away[7] > back[7] > 0


def test_loss_needs_the_labels_timestamps_and_learns_the_trend_weight():
    table, start = trend_table(_events([("i9", d + 0.5) for d in range(10) for _ in range(20)]), INDEX, 2)
    m = _model((table, start))
    seq, ts = _user(5.0)
    lab = torch.roll(seq, -1, 1)
    lab[0, -1] = 9
    lab[seq == 0] = 0
    with pytest.raises(ValueError, match="label_ts"):
        m.loss(seq, ts, lab)
    m.train()
    opt = torch.optim.SGD([m.trend_scale], lr=0.5)
    before = m.trend_scale.item()
    for _ in range(5):  # a label that is the trending item: the trend weight must go up
        only9 = torch.where(lab > 0, torch.full_like(lab, 9), lab)
        loss = m.loss(seq, ts, only9, torch.where(lab > 0, ts + HOUR, 0))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert m.trend_scale.item() > before


def test_set_trend_and_added_items():
    m = _model(trend_table(_events([("i1", 0.5)]), INDEX, 2))
    copy_ = copy.deepcopy(m)
    table, start = trend_table(_events([("i2", 10.5), ("i2", 11.5)]), INDEX, 2)
    copy_.set_trend(table, start)
    assert torch.equal(copy_.trend, table) and int(copy_.trend_start) == start
    assert m.trend.shape[0] == 2 and int(m.trend_start) == MIDNIGHT  # the original keeps its own
    copy_.add_items(random_text_emb(1, 2)[1:])
    assert copy_.trend.shape[1] == N_ITEMS + 3 and copy_.trend[:, -2:].abs().sum() == 0  # no counts for new items yet
    seq, ts = _user(12.0)
    with torch.no_grad():
        assert copy_.score_all(seq, ts).shape == (1, N_ITEMS + 3)


def test_evaluation_scores_at_each_targets_own_moment():
    # the target trends on day 1; the same user and target rank better when the request is on day 2
    # (the evaluator must pass target_ts as `now`) than when it is before the data
    from models.data import EvalSet
    from models.evaluate import rank_targets
    from models.metrics import target_ranks

    m = _model(trend_table(_events([("i1", 1.5)]), INDEX, 2))
    seq, ts = _user(0.0)
    with torch.no_grad():  # the target: the item the model ranks last without the trend
        plain = m.score_all(seq, ts, torch.tensor([MIDNIGHT - 10 * DAY]))[0]
    plain[[0, 3, 4]] = float("inf")
    target = int(plain.argmin())
    m.set_trend(*trend_table(_events([(f"i{target}", 1.5)] * 20), INDEX, 2))
    data = EvalSet(["a", "b"], np.repeat(seq.numpy(), 2, 0), np.repeat(ts.numpy(), 2, 0), np.array([target, target]),
                   [np.array([3, 4])] * 2, np.array([MIDNIGHT + 2 * DAY, MIDNIGHT - 10 * DAY]))
    ranks, _ = rank_targets(m, data, k=5)
    with torch.no_grad():
        want, _ = target_ranks(m.score_all(torch.as_tensor(data.seq), torch.as_tensor(data.ts), torch.as_tensor(data.target_ts)),
                               torch.as_tensor(data.targets), data.exclude)
    assert ranks.tolist() == want.tolist()
    assert ranks[0] < ranks[1] == N_ITEMS - 2  # last of the 18 rankable items without the trend


def test_temporal_test_recounts_the_trend_up_to_the_cut_off():
    # the benchmark's temporal protocol keeps the neural weights but recounts the table (data) over
    # every pre-cut-off event; the fitted model, which its seed's hybrid reuses, keeps its own
    from core.params import TrainParams
    from models.baselines import popularity
    from benchmarks.ranking import _for_test
    from models.hybrid import Hybrid

    early = _events([("i1", 0.5)])
    later = _events([("i1", 0.5), ("i2", 6.5), ("i2", 7.5)])
    m = _model(trend_table(early, INDEX, 2))
    tp = TrainParams(trend_days=2)
    fresh = _for_test(m, "interest", later, INDEX, random_text_emb(), tp, "cpu")
    want, start = trend_table(later, INDEX, 2)
    assert fresh is not m and torch.equal(fresh.trend, want) and int(fresh.trend_start) == start
    assert m.trend.shape[0] == 2  # unchanged
    hybrid = Hybrid(m, {"popularity": popularity(early, INDEX)}, {"popularity": 1.0})
    for_test = _for_test(hybrid, "hybrid", later, INDEX, random_text_emb(), tp, "cpu")
    assert torch.equal(for_test.base.trend, want) and torch.equal(hybrid.base.trend, m.trend)
    assert for_test.components["popularity"].scores[2] == 2  # the components are refit on the later events too
