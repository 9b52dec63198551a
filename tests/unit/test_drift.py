"""Unit tests of models.drift (windows, per-user interest profiles) and models.drift_report (the Evidently report).

Expected values are computed by hand from the definitions, not by re-running the code.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from models.drift import safe_name, share_column, split_windows, window_profiles
from models.drift_report import drift_report
from tests.unit.helpers import events_frame

T0 = pd.Timestamp("2024-01-01", tz="UTC")
H = pd.Timedelta(hours=1)
D = pd.Timedelta(days=1)


ITEMS = pd.DataFrame(
    {
        "item_id": ["i1", "i2", "i3", "i4", "i5"],
        "title": ["t1", "t2", "t3", "t4", "t5"],
        "text": ["x1", "x2", "x3", "x4", "x5"],
        # i3 as a numpy array, the way parquet gives list columns back; i4 has no category;
        # i5 has one listed (a) and one unlisted (z) category
        "categories": [["a", "b"], ["a"], np.array(["c"]), [], ["a", "z"]],
    }
)


# ------------------------------------------------------------------ names


def test_safe_names():
    assert safe_name("Sci-Fi") == "sci_fi"
    assert safe_name("Children's") == "children_s"
    assert share_column("(no genres listed)") == "share_no_genres_listed"
    assert share_column("Film-Noir") == "share_film_noir"


def test_colliding_category_names_are_rejected():
    ev = events_frame([("u1", "i1", T0)])
    with pytest.raises(ValueError, match="same column name"):
        window_profiles(ev, ITEMS, T0, T0 + D, ["Sci-Fi", "sci fi"])


# ------------------------------------------------------------------ profiles


def test_window_profiles_by_formula():
    start, end = T0 + D, T0 + 3 * D
    ev = events_frame(
        [
            ("u1", "i3", T0),  # before the window: ignored
            ("u1", "i1", start),  # start is inclusive
            ("u1", "i2", start + 1 * H),
            ("u2", "i3", start + 2 * H),
            ("u2", "i4", start + 3 * H),
            ("u2", "i4", start + 4 * H),
            ("u3", "i5", start + 5 * H),
            ("u4", "i4", start + 6 * H),
            ("u5", "i1", end),  # end is exclusive: u5 is not active
        ]
    )
    out = window_profiles(ev, ITEMS, start, end, ["a", "b", "c"])
    assert list(out.columns) == [
        "user_id", "share_a", "share_b", "share_c", "dominant_category", "popularity_pct", "n_events"
    ]
    out = out.set_index("user_id")
    assert sorted(out.index) == ["u1", "u2", "u3", "u4"]

    # u1: i1 [a, b] counts 1/2 to a and b; i2 [a] counts 1 to a; 2 events
    assert out.loc["u1", "share_a"] == pytest.approx((0.5 + 1.0) / 2)
    assert out.loc["u1", "share_b"] == pytest.approx(0.5 / 2)
    assert out.loc["u1", "share_c"] == 0.0
    assert out.loc["u1", "dominant_category"] == "a"
    # u2: i3 [c] once, i4 (no category) twice: the uncategorised events stay in the denominator
    assert out.loc["u2", "share_c"] == pytest.approx(1 / 3)
    assert out.loc["u2", "share_a"] == 0.0
    assert out.loc["u2", "dominant_category"] == "c"
    # u3: i5 [a, z]: 1/2 to a, z is not a listed category
    assert out.loc["u3", "share_a"] == pytest.approx(0.5)
    assert out.loc["u3", "share_b"] + out.loc["u3", "share_c"] == 0.0
    # u4: only an uncategorised item
    assert out.loc["u4", "dominant_category"] == "none"
    assert out.loc[["u4"], ["share_a", "share_b", "share_c"]].to_numpy().sum() == 0.0

    assert out["n_events"].to_dict() == {"u1": 2, "u2": 3, "u3": 1, "u4": 1}
    assert out["n_events"].dtype.kind == "i"

    # window popularity: i4 has 3 events, i1 i2 i3 i5 one each. Average ranks: the four ties share
    # ranks 1..4 -> 2.5, pct 2.5 / 5 = 0.5; i4 has rank 5 -> pct 1.0
    assert out.loc["u1", "popularity_pct"] == pytest.approx(0.5)
    assert out.loc["u2", "popularity_pct"] == pytest.approx((0.5 + 1.0 + 1.0) / 3)
    assert out.loc["u3", "popularity_pct"] == pytest.approx(0.5)
    assert out.loc["u4", "popularity_pct"] == pytest.approx(1.0)


def test_dominant_category_tie_goes_to_first_listed_category():
    ev = events_frame([("u1", "i1", T0)])  # i1 is [a, b]: share 0.5 each
    assert window_profiles(ev, ITEMS, T0, T0 + D, ["a", "b"])["dominant_category"].tolist() == ["a"]
    assert window_profiles(ev, ITEMS, T0, T0 + D, ["b", "a"])["dominant_category"].tolist() == ["b"]


def test_item_counted_by_all_its_categories_even_unlisted_ones():
    # i1 is [a, b]; asking only for a still gives a 1/2 (b keeps its half)
    ev = events_frame([("u1", "i1", T0)])
    out = window_profiles(ev, ITEMS, T0, T0 + D, ["a"])
    assert out["share_a"].tolist() == [pytest.approx(0.5)]


def test_empty_window_gives_empty_frame_with_columns():
    ev = events_frame([("u1", "i1", T0)])
    out = window_profiles(ev, ITEMS, T0 + D, T0 + 2 * D, ["a", "Sci-Fi"])
    assert len(out) == 0
    assert list(out.columns) == [
        "user_id", "share_a", "share_sci_fi", "dominant_category", "popularity_pct", "n_events"
    ]


# ------------------------------------------------------------------ windows


def test_split_windows_boundaries():
    ev = events_frame([("u1", "i1", T0), ("u2", "i2", T0 + 40 * D), ("u3", "i3", T0 + 100 * D)])
    ref_start, ref_end, cur_start, cur_end = split_windows(ev, 0.3, 0.2)
    assert ref_start == T0
    assert ref_end == T0 + 30 * D
    assert cur_start == T0 + 80 * D
    assert cur_end > T0 + 100 * D  # the last event belongs to the current window...
    assert cur_end - (T0 + 100 * D) <= pd.Timedelta(1, "us")  # ...and nothing much later does
    cur = window_profiles(ev, ITEMS, cur_start, cur_end, ["a", "b", "c"])
    ref = window_profiles(ev, ITEMS, ref_start, ref_end, ["a", "b", "c"])
    assert cur["user_id"].tolist() == ["u3"]
    assert ref["user_id"].tolist() == ["u1"]


@pytest.mark.parametrize("ref,cur", [(0.0, 0.3), (0.3, 1.5), (0.6, 0.6)])
def test_split_windows_rejects_bad_fractions(ref, cur):
    ev = events_frame([("u1", "i1", T0), ("u2", "i2", T0 + D)])
    with pytest.raises(ValueError):
        split_windows(ev, ref, cur)


def test_split_windows_rejects_zero_span_and_empty():
    with pytest.raises(ValueError, match="one timestamp"):
        split_windows(events_frame([("u1", "i1", T0), ("u2", "i2", T0)]), 0.3, 0.3)
    with pytest.raises(ValueError, match="no interactions"):
        split_windows(events_frame([]), 0.3, 0.3)


# ------------------------------------------------------------------ drift report


def _shifted_frames(n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    cats = ["a", "b", "c"]
    p = [0.5, 0.3, 0.2]
    ref = pd.DataFrame(
        {
            "share_a": rng.beta(2, 5, n),  # mean 0.29
            "stable": rng.beta(2, 2, n),
            "dominant_category": rng.choice(cats, n, p=p),
        }
    )
    cur = pd.DataFrame(
        {
            "share_a": rng.beta(5, 2, n),  # flipped: mean 0.71
            "stable": rng.beta(2, 2, n),
            "dominant_category": rng.choice(cats, n, p=p),
        }
    )
    return ref, cur


@pytest.mark.parametrize("n", [200, 1200])  # Evidently uses p-values up to 1000 rows, distances above
def test_drift_report_flags_shifted_column_only(tmp_path, n):
    ref, cur = _shifted_frames(n)
    html = tmp_path / "deep" / "drift.html"
    js = tmp_path / "other" / "drift.json"
    summary = drift_report(ref, cur, html, js, ["share_a", "stable"], ["dominant_category"], drift_share=0.5)

    cols = summary["columns"]
    assert set(cols) == {"share_a", "stable", "dominant_category"}
    assert cols["share_a"]["drifted"] is True
    assert cols["stable"]["drifted"] is False
    assert cols["dominant_category"]["drifted"] is False
    assert summary["drifted_columns"] == 1
    assert summary["n_columns"] == 3
    assert summary["drift_share"] == pytest.approx(1 / 3)
    assert summary["dataset_drift"] is False
    assert summary["n_reference"] == n and summary["n_current"] == n
    for c in cols.values():
        assert isinstance(c["score"], float)
        assert isinstance(c["method"], str) and c["method"]
    if n <= 1000:  # p-values: the shifted column has a tiny one
        assert cols["share_a"]["score"] < 1e-6 < cols["stable"]["score"]
    else:  # distances: the shifted column is far
        assert cols["share_a"]["score"] > cols["stable"]["score"]

    assert html.exists() and html.stat().st_size > 1000
    saved = json.loads(js.read_text())
    assert saved["summary"] == summary
    assert "metrics" in saved and any("ValueDrift" in m["metric_name"] for m in saved["metrics"])


def test_drift_report_dataset_drift_follows_threshold(tmp_path):
    ref, cur = _shifted_frames(200)
    s = drift_report(ref, cur, tmp_path / "d.html", tmp_path / "d.json", ["share_a", "stable"], [], drift_share=0.5)
    assert s["drift_share"] == pytest.approx(0.5) and s["dataset_drift"] is True  # share >= threshold
    s = drift_report(ref, cur, tmp_path / "d.html", tmp_path / "d.json", ["stable"], [], drift_share=0.5)
    assert s["drift_share"] == 0.0 and s["dataset_drift"] is False


def test_drift_report_on_profiles_with_extra_score_column(tmp_path):
    """End to end: users move from category a to b; an unchanged caller-added score does not drift."""
    rng = np.random.default_rng(1)
    items = pd.DataFrame(
        {"item_id": ["ia", "ib"], "title": ["A", "B"], "text": ["A", "B"], "categories": [["a"], ["b"]]}
    )
    rows = []
    for u in range(80):
        for k in range(10):
            rows.append((f"u{u}", "ia" if rng.random() < 0.8 else "ib", T0 + k * H))  # early: mostly a
            rows.append((f"u{u}", "ib" if rng.random() < 0.8 else "ia", T0 + 9 * D + k * H))  # late: mostly b
    ev = events_frame(rows)
    rs, re_, cs, ce = split_windows(ev, 0.3, 0.3)
    ref = window_profiles(ev, items, rs, re_, ["a", "b"])
    cur = window_profiles(ev, items, cs, ce, ["a", "b"])
    assert len(ref) == len(cur) == 80
    ref["top_score"] = rng.normal(size=len(ref))
    cur["top_score"] = rng.normal(size=len(cur))
    s = drift_report(
        ref, cur, tmp_path / "p.html", tmp_path / "p.json",
        ["share_a", "share_b", "top_score"], ["dominant_category"], drift_share=0.5,
    )
    assert s["columns"]["share_a"]["drifted"] and s["columns"]["share_b"]["drifted"]
    assert s["columns"]["dominant_category"]["drifted"]
    assert not s["columns"]["top_score"]["drifted"]
    assert s["drifted_columns"] == 3 and s["dataset_drift"] is True


def test_drift_report_rejects_tiny_windows_and_missing_columns(tmp_path):
    ref, cur = _shifted_frames(50)
    with pytest.raises(ValueError, match="at least 2 rows"):
        drift_report(ref, cur.head(1), tmp_path / "x.html", tmp_path / "x.json", ["share_a"], [])
    with pytest.raises(ValueError, match="at least 2 rows"):
        drift_report(ref.head(0), cur, tmp_path / "x.html", tmp_path / "x.json", ["share_a"], [])
    with pytest.raises(ValueError, match="lacks columns"):
        drift_report(ref, cur.drop(columns="stable"), tmp_path / "x.html", tmp_path / "x.json", ["stable"], [])
    assert not (tmp_path / "x.html").exists()
