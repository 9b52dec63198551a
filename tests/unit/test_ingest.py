"""Synthetic generator, the ingest stage and the file adapters, all on tiny local fixtures."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from core import eventlog, schema
from features import ingest
from features.adapters import movielens, synthetic
from core.params import DATA_DIR_ENV, SyntheticParams, load_params

SMALL = SyntheticParams(n_users=30, n_items=60)


def _params(tmp_path: Path, data: dict, ingest_cfg: dict | None = None):
    """A params.yaml inside tmp_path, so every relative output path lands there."""
    cfg = {"data": {"raw_dir": "data/raw", **data}}
    if ingest_cfg:
        cfg["ingest"] = ingest_cfg
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return load_params(p)


# ---------------------------------------------------------------- synthetic generator


def test_synthetic_same_seed_same_frames():
    a = synthetic.generate(SMALL)
    b = synthetic.generate(SMALL)
    for x, y in zip(a, b):
        pd.testing.assert_frame_equal(x, y)


def test_synthetic_different_seed_different_frames():
    a_int, a_items, _ = synthetic.generate(SMALL)
    b_int, b_items, _ = synthetic.generate(dataclasses.replace(SMALL, seed=SMALL.seed + 1))
    assert not a_int.equals(b_int)
    assert not a_items["text"].equals(b_items["text"])


def test_synthetic_events_reference_existing_items_and_users_have_min_events():
    inter, items, _ = synthetic.generate(SMALL)
    assert items["item_id"].is_unique
    assert len(items) == SMALL.n_items
    assert set(inter["item_id"]) <= set(items["item_id"])
    assert inter["user_id"].nunique() == SMALL.n_users
    assert inter.groupby("user_id").size().min() >= 5
    # every item's categories are drawn from the first n_categories of the vocabulary
    allowed = set(list(synthetic.CATEGORY_WORDS)[: SMALL.n_categories])
    assert all(set(c) <= allowed and len(c) >= 1 for c in items["categories"])


@pytest.mark.parametrize("p", [SMALL, SyntheticParams(n_users=200, n_items=60, events_per_user=60, days=3, seed=3)])
def test_synthetic_timestamps_inside_configured_days(p):
    inter, _, _ = synthetic.generate(p)
    t0 = pd.Timestamp("2026-01-01", tz="UTC").value // 10**9
    assert inter["ts"].min() >= t0
    assert inter["ts"].max() <= t0 + p.days * 86400
    assert all(g.is_monotonic_increasing for _, g in inter.groupby("user_id")["ts"])


def test_synthetic_ground_truth_one_row_per_event():
    inter, _, truth = synthetic.generate(SMALL)
    assert len(truth) == len(inter)
    assert truth["user_id"].tolist() == inter["user_id"].tolist()
    assert truth["item_id"].tolist() == inter["item_id"].tolist()
    assert (truth["ts"] == pd.to_datetime(inter["ts"], unit="s", utc=True)).all()
    assert truth["shifts"].dtype == bool
    # shifts is a per-user flag
    assert (truth.groupby("user_id")["shifts"].nunique() == 1).all()
    # only shifting users ever pass a switch, and the true interest follows the switch
    assert not truth.loc[~truth["shifts"], "after_switch"].any()
    first_two = truth[truth["episode"] <= 1]  # before the first switch, and the episode right after it
    expected = first_two["interest_after"].where(first_two["after_switch"], first_two["interest_before"])
    assert (first_two["true_interest"] == expected).all()
    assert ((truth["episode"] > 0) == truth["after_switch"]).all()
    shifting = truth[truth["shifts"]]
    assert (shifting["interest_before"] != shifting["interest_after"]).all()
    # a user's events are chronological, so after_switch and the episode never go back
    for _, g in truth.groupby("user_id", sort=False):
        assert g["ts"].is_monotonic_increasing
        assert g["after_switch"].is_monotonic_increasing
        assert g["episode"].is_monotonic_increasing


def test_synthetic_later_switches_change_interest_and_last_long_enough():
    p = SyntheticParams(n_users=300, n_items=60, events_per_user=40, shift_fraction=1.0, max_switches=3)
    _, _, truth = synthetic.generate(p)
    per_user = truth.groupby("user_id")["episode"].max()
    assert per_user.min() >= 1 and per_user.max() == 3  # every user switches, some three times
    assert (per_user >= 2).mean() > 0.4  # two of three draws give a later switch (when it fits)
    for _, g in truth.groupby("user_id", sort=False):
        episodes = g.groupby("episode", sort=True)
        assert (episodes["true_interest"].nunique() == 1).all()  # one interest per episode
        interests = episodes["true_interest"].first().tolist()
        assert all(a != b for a, b in zip(interests, interests[1:]))  # each switch really changes it
        lengths = episodes.size().tolist()
        assert all(n >= synthetic.MIN_EPISODE for n in lengths[1:]) or len(lengths) == 2


def test_synthetic_single_switch_is_unchanged_by_max_switches_1():
    """max_switches=1: one switch per shifting user, the true interest is the second one after it."""
    p = SyntheticParams(n_users=50, n_items=60, events_per_user=20, max_switches=1)
    _, _, truth = synthetic.generate(p)
    assert truth["episode"].max() == 1
    expected = truth["interest_after"].where(truth["after_switch"], truth["interest_before"])
    assert (truth["true_interest"] == expected).all()


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.5, 1.0])
def test_synthetic_shift_fraction_roughly_respected(fraction):
    p = SyntheticParams(n_users=400, n_items=60, events_per_user=5, shift_fraction=fraction)
    _, _, truth = synthetic.generate(p)
    share = truth.groupby("user_id")["shifts"].first().mean()
    # binomial sd at n=400 is <= 0.025; 0.08 is > 3 sd
    assert abs(share - fraction) <= 0.08


# ---------------------------------------------------------------- ingest stage


def test_ingest_synthetic_writes_tables_and_report(tmp_path):
    params = _params(
        tmp_path,
        {"dataset": "synthetic"},
        {"synthetic": {"n_users": 30, "n_items": 60}},
    )
    result = ingest.run(params)
    raw = tmp_path / "data" / "raw"
    for name in ("interactions", "items", "quarantine", "ground_truth"):
        assert (raw / f"{name}.parquet").exists(), name

    inter = pd.read_parquet(raw / "interactions.parquet")
    items = pd.read_parquet(raw / "items.parquet")
    quarantine = pd.read_parquet(raw / "quarantine.parquet")
    truth = pd.read_parquet(raw / "ground_truth.parquet")
    src_int, src_items, _ = synthetic.generate(params.ingest.synthetic)

    assert len(items) == 60
    assert inter["user_id"].nunique() == 30
    assert len(quarantine) == 0  # the generator only emits valid rows
    assert len(inter) == len(src_int) == len(truth)
    assert list(inter.columns) == schema.INTERACTION_COLUMNS
    assert inter["ts"].is_monotonic_increasing

    report = json.loads((tmp_path / "reports" / "ingest.json").read_text())
    assert report == {k: v for k, v in result.summary().items() if k != "raw_dir"}  # no machine paths in metrics
    assert Path(result.raw_dir) == raw
    assert report["dataset"] == "synthetic"
    assert report["rows_in"] == len(src_int) + len(src_items)
    assert report["rows_clean"] == len(inter) + len(items)
    assert report["rows_quarantined"] == 0
    assert report["items"] == 60
    assert report["users"] == 30
    assert report["bad_fraction"] == 0.0


def _write_csv_source(src: Path, n_good: int, n_items: int = 10) -> tuple[int, int]:
    """interactions.csv with n_good good rows and 3 bad ones; returns (rows_in, n_bad)."""
    src.mkdir(parents=True, exist_ok=True)
    item_lines = ["item_id,title,text,categories"]
    item_lines += [f"m{i},Title {i},Some text about {i},drama|comedy" for i in range(n_items)]
    (src / "items.csv").write_text("\n".join(item_lines) + "\n")

    lines = ["user_id,item_id,ts,event,value"]
    for k in range(n_good):
        lines.append(f"u{k % 7},m{k % n_items},{1_700_000_000 + k},view,")
    bad = [
        f",m1,{1_700_000_500},view,",            # missing user id
        "u1,m1,not-a-date,view,",                # unparsable timestamp
        f"u2,ghost,{1_700_000_600},click,1.5",   # unknown item
    ]
    lines[1:1] = bad[:1]  # one bad row at the top, the rest at the end
    lines += bad[1:]
    (src / "interactions.csv").write_text("\n".join(lines) + "\n")
    return n_good + len(bad) + n_items, len(bad)


def test_ingest_csv_too_many_bad_rows_fails_after_writing(tmp_path):
    rows_in, n_bad = _write_csv_source(tmp_path / "src", n_good=97)  # 3 of 100 interactions are bad
    params = _params(tmp_path, {"dataset": "csv", "source_dir": "src"}, {"max_bad_fraction": 0.01})
    with pytest.raises(ingest.IngestError, match="max_bad_fraction"):
        ingest.run(params)

    raw = tmp_path / "data" / "raw"
    q = pd.read_parquet(raw / "quarantine.parquet")
    assert len(q) == n_bad
    assert sorted(q["reason"]) == sorted([schema.MISSING_USER, schema.BAD_TIMESTAMP, schema.UNKNOWN_ITEM])
    assert (q["table"] == "interactions").all()
    assert q.set_index("reason").loc[schema.BAD_TIMESTAMP, "ts_raw"] == "not-a-date"
    assert q.set_index("reason").loc[schema.UNKNOWN_ITEM, "item_id"] == "ghost"

    report = json.loads((tmp_path / "reports" / "ingest.json").read_text())
    assert report["rows_in"] == rows_in
    assert report["rows_quarantined"] == n_bad
    assert report["rows_clean"] == rows_in - n_bad
    assert report["bad_fraction"] == pytest.approx(n_bad / rows_in)
    assert report["bad_fraction"] > 0.01
    assert report["quarantine_counts"] == {
        "interactions.missing_user_id": 1,
        "interactions.unparsable_timestamp": 1,
        "interactions.unknown_item": 1,
    }
    # the clean tables are written too
    assert len(pd.read_parquet(raw / "interactions.parquet")) == 97


def test_ingest_csv_within_tolerance_succeeds(tmp_path):
    rows_in, n_bad = _write_csv_source(tmp_path / "src", n_good=97)
    params = _params(tmp_path, {"dataset": "csv", "source_dir": "src"}, {"max_bad_fraction": 0.5})
    result = ingest.run(params)
    assert result.rows_quarantined == n_bad
    assert result.rows_clean + result.rows_quarantined == rows_in
    assert result.bad_fraction == pytest.approx(n_bad / rows_in)
    assert result.items == 10
    assert result.users == 7
    items = pd.read_parquet(tmp_path / "data" / "raw" / "items.parquet")
    assert [list(c) for c in items["categories"]] == [["drama", "comedy"]] * 10


def test_ingest_csv_without_source_dir_names_env_var(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    params = _params(tmp_path, {"dataset": "csv", "source_dir": ""})
    with pytest.raises(FileNotFoundError, match=DATA_DIR_ENV):
        ingest.run(params)


@pytest.mark.parametrize("dataset", ["movielens-100k", "movielens-1m"])
@pytest.mark.parametrize("source", ["empty-dir", "unset"])
def test_movielens_missing_files_offline_names_env_var(tmp_path, monkeypatch, dataset, source):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    if source == "empty-dir":
        (tmp_path / "empty").mkdir()
        data = {"dataset": dataset, "source_dir": str(tmp_path / "empty"), "download": False}
    else:
        data = {"dataset": dataset, "source_dir": "", "download": False}
    params = _params(tmp_path, data)
    with pytest.raises(movielens.DatasetNotFound, match=DATA_DIR_ENV) as exc:
        ingest.run(params)
    marker = "u.data" if dataset == "movielens-100k" else "ratings.dat"
    assert marker in str(exc.value)
    assert "download from" not in str(exc.value)  # data.download false: no download was attempted
    assert not (tmp_path / "data" / "raw").exists()  # nothing written when there is no source
    assert not (tmp_path / ".cache" / "datasets").exists()


def test_movielens_env_var_is_used_when_source_dir_empty(tmp_path, monkeypatch):
    d = tmp_path / "env" / "ml-100k"
    d.mkdir(parents=True)
    (d / "u.data").write_text("1\t1\t5\t881250949\n")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    params = _params(tmp_path, {"dataset": "movielens-100k", "source_dir": "", "download": False})
    assert movielens.locate(movielens.ML_100K, params) == d


def test_read_movies_dat_latin1(tmp_path):
    text = (
        "1::Toy Story (1995)::Animation|Children's|Comedy\n"
        "2::Misérables, Les (1995)::Drama|Musical\n"
        "3::Café au Lait (Métisse) (1993)::Comedy\n"
    )
    path = tmp_path / "movies.dat"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(UnicodeDecodeError):  # the fixture really is not UTF-8
        path.read_bytes().decode("utf-8")

    items = movielens.read_movies_dat(path)
    assert items["item_id"].tolist() == ["1", "2", "3"]
    assert items["title"].tolist() == ["Toy Story (1995)", "Misérables, Les (1995)", "Café au Lait (Métisse) (1993)"]
    assert items["categories"].tolist() == [["Animation", "Children's", "Comedy"], ["Drama", "Musical"], ["Comedy"]]
    for title, cats, txt in zip(items["title"], items["categories"], items["text"]):
        assert txt.startswith(title)
        assert all(c in txt for c in cats)

    v = schema.validate(pd.DataFrame({"user_id": ["u"], "item_id": ["2"], "ts": [0]}), items)
    assert v.quarantine.empty
    assert v.items["categories"].tolist()[1] == ["Drama", "Musical"]


def test_read_items_log_skips_torn_and_invalid_lines_with_a_warning(tmp_path, caplog):
    log_file = tmp_path / "items.jsonl"
    log_file.write_text(
        json.dumps({"item_id": "a", "title": "A", "text": "first", "categories": ["x"]}) + "\n"
        + "[1, 2]\n"                                   # valid JSON, not an object
        + json.dumps({"title": "no id", "text": "t"}) + "\n"
        + json.dumps({"item_id": "a", "title": "A2", "text": "second", "categories": []}) + "\n"
        + '{"item_id": "b", "title": "B", "te'          # torn last line: a writer killed mid-append
    )
    with caplog.at_level("WARNING", logger="features.ingest"):
        got = eventlog.read_items_log(log_file)
    assert got["item_id"].tolist() == ["a"] and got["title"].tolist() == ["A2"]  # the latest line wins
    assert list(got.columns) == ["item_id", "title", "text", "categories"]
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "line 2: not a JSON object" in warned and "line 3: no item_id" in warned and "line 5: not valid JSON" in warned
    assert "skipped 3 invalid line(s)" in warned
