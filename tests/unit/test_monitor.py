"""The monitor a product owner reads and a scheduler trusts: dated category mixes in the page, and
a retrain only when interests move beyond what a no-drift control (time order shuffled) shows."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core.params import Params, load_params
from models import artifacts, baselines, monitor
from models.data import item_index
from models.drift import split_windows
from models.interest_mix import category_mix, category_mix_over_time, retrain_threshold, shuffle_time

ROOT = Path(__file__).resolve().parents[2]
T0 = pd.Timestamp("2026-01-05", tz="UTC")  # a Monday


def catalogue(n_per_cat: int = 10, cats: tuple[str, ...] = ("jazz", "rock", "folk", "pop")) -> pd.DataFrame:
    ids = [f"{c}{k}" for c in cats for k in range(n_per_cat)]
    return pd.DataFrame({"item_id": ids, "title": ids, "text": ids, "categories": [[i.rstrip("0123456789")] for i in ids]})


def events(items: pd.DataFrame, shift: bool, n_users: int = 80, per_user: int = 30, days: int = 84, seed: int = 0) -> pd.DataFrame:
    """Every user consumes one main category; with ``shift`` the whole population moves from
    folk/jazz to pop/rock halfway through (real drift), else each user keeps theirs (no drift).
    Activity grows over time in both cases (more events late), as in the synthetic data."""
    rng = np.random.default_rng(seed)
    cats = sorted({c[0] for c in items["categories"]})
    rows = []
    for u in range(n_users):
        t = np.sort(rng.beta(2.0, 1.2, per_user)) * days  # busier later
        early = cats[u % 2] if shift else cats[u % len(cats)]
        late = cats[2 + u % 2] if shift else early
        for d in t:
            c = early if d < days / 2 else late
            rows.append((f"u{u:03d}", f"{c}{rng.integers(10)}", T0 + pd.Timedelta(days=float(d))))
    ev = pd.DataFrame(rows, columns=["user_id", "item_id", "ts"])
    ev["event"], ev["value"] = "view", 1.0
    return ev.sort_values(["user_id", "ts"]).reset_index(drop=True)


def project(tmp_path: Path, ev: pd.DataFrame, items: pd.DataFrame, **monitor_over) -> Params:
    """A params.yaml in tmp_path with raw tables, an item-kNN model and metrics.json selecting it."""
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    params = load_params(tmp_path / "params.yaml", {f"monitor.{k}": v for k, v in monitor_over.items()})
    raw = params.path(params.data.raw_dir)
    raw.mkdir(parents=True)
    ev.to_parquet(raw / "interactions.parquet", index=False)
    items.to_parquet(raw / "items.parquet", index=False)
    index = item_index(items)
    model = baselines.item_knn(ev, index)
    artifacts.save(params.path(params.train.out_dir), list(index.ids), torch.zeros(len(index) + 1, 4), {"item_knn": model},
                   {"data_version": "t"}, items["title"].tolist(), [list(c) for c in items["categories"]])
    params.path(params.evaluate.out).parent.mkdir(parents=True, exist_ok=True)
    params.path(params.evaluate.out).write_text(json.dumps({"selected": "item_knn", "models": {}}))
    return params


def test_retrain_threshold_is_the_control_plus_margin_but_never_below_the_floor():
    assert retrain_threshold(0.5, 0.9, 0.1) == pytest.approx(1.0)
    assert retrain_threshold(0.5, 0.1, 0.1) == pytest.approx(0.5)
    assert retrain_threshold(0.5, None, 0.1) == 0.5


def test_shuffle_keeps_each_windows_event_count_and_users_histories_in_time_order():
    items = catalogue()
    ev = events(items, shift=True)
    w = split_windows(ev, 0.3, 0.3)
    sh = shuffle_time(ev, [(w[0], w[1]), (w[2], w[3])], seed=1)
    for s, e in ((w[0], w[1]), (w[2], w[3])):
        assert ((sh["ts"] >= s) & (sh["ts"] < e)).sum() == ((ev["ts"] >= s) & (ev["ts"] < e)).sum()
    assert sorted(sh["ts"]) == sorted(ev["ts"])
    assert not category_mix(sh, items, ["folk", "jazz", "pop", "rock"], w[2], w[3]).equals(
        category_mix(ev, items, ["folk", "jazz", "pop", "rock"], w[2], w[3]))  # the shuffle moved events between windows
    assert sh.groupby("user_id")["ts"].apply(lambda s: s.is_monotonic_increasing).all()


def test_weekly_mix_is_dated_and_labels_the_windows():
    items = catalogue()
    ev = events(items, shift=True)
    cats = ["folk", "jazz", "pop", "rock"]
    tl = category_mix_over_time(ev, items, cats, split_windows(ev, 0.3, 0.3), "W")
    assert tl["period"].iloc[0] == "2026-01-05" and list(tl.columns[:3]) == ["period", "window", "events"]
    assert tl["window"].iloc[0] == "reference" and tl["window"].iloc[-1] == "current" and "between" in set(tl["window"])
    assert np.allclose(tl[cats].sum(axis=1), 1.0) and tl["events"].sum() == len(ev)
    # the population moved from folk/jazz to pop/rock halfway: the first week has no pop, the last no jazz
    assert tl["pop"].iloc[0] == 0 and tl["jazz"].iloc[-1] == 0 and tl["jazz"].iloc[0] > 0.3


@pytest.mark.parametrize("shift", [True, False])
def test_monitor_retrains_on_real_drift_only(tmp_path, shift):
    items = catalogue()
    params = project(tmp_path, events(items, shift=shift), items)
    res = monitor.run(params)
    mon = json.loads(params.path(params.monitor.summary).read_text())
    compact = json.loads(params.path(params.tracking.metrics_dir).joinpath("monitor.json").read_text())
    assert compact["retrain"] == res.retrain == mon["retrain"] and compact["drift_share"] == round(res.drift_share, 4)
    assert res.control_drift_share is not None and res.retrain_threshold >= params.monitor.drift_threshold
    if shift:  # everyone changed interest: far beyond the shuffled control
        assert res.retrain and res.drift_share >= res.control_drift_share + params.monitor.control_margin
    else:  # nobody did; activity still grows, which alone makes share columns "drift": the control absorbs it
        assert not res.retrain
    page = params.path(params.monitor.html).read_text()
    assert "2026-01-05" in page and "Category mix over time" in page and "<svg" in page
    assert "What we recommend" in page and "Evidently statistics" in page and "srcdoc=" in page
    assert ("<b>retrain</b>" in page) == shift
    summary = json.loads(params.path(params.monitor.json).read_text())["summary"]
    assert summary["timeline"][0]["period"] == "2026-01-05" and summary["recommendation_mix"]


def test_without_a_control_the_floor_decides(tmp_path):
    items = catalogue()
    params = project(tmp_path, events(items, shift=False), items, control_repeats=0, drift_threshold=0.0)
    res = monitor.run(params)
    assert res.control_drift_share is None and res.retrain_threshold == 0.0 and res.retrain
