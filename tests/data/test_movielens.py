"""The real MovieLens files (never committed): read from $PULSE_DATA_DIR or ../shared/data.

Every test skips, with the reason, when the files are not on this machine.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from features import ingest
from features.adapters import movielens
from core.params import DATA_DIR_ENV, load_params

pytestmark = pytest.mark.data

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _data_dir() -> Path:
    return Path(os.environ[DATA_DIR_ENV]) if os.environ.get(DATA_DIR_ENV) else SHARED_DATA


def _release_dir(rel: movielens.MovieLensRelease, marker: str | None = None) -> Path:
    """The folder with the release's files (the data dir itself or its <release>/ child), or skip."""
    base = _data_dir()
    marker = marker or rel.marker
    for d in (base / rel.name, base):
        if (d / marker).exists():
            return d
    pytest.skip(f"{rel.name}/{marker} not found under {base} (set {DATA_DIR_ENV} to the folder holding {rel.name}/)")


def _params(tmp_path: Path, dataset: str, source_dir: Path):
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump({"data": {"dataset": dataset, "source_dir": str(source_dir), "download": False}}))
    return load_params(p)


@pytest.fixture(scope="module")
def ml100k(tmp_path_factory):
    d = _release_dir(movielens.ML_100K)
    tmp = tmp_path_factory.mktemp("ml100k")
    result = ingest.run(_params(tmp, "movielens-100k", d))
    raw = tmp / "data" / "raw"
    return {
        "result": result,
        "report": json.loads((tmp / "reports" / "ingest.json").read_text()),
        "interactions": pd.read_parquet(raw / "interactions.parquet"),
        "items": pd.read_parquet(raw / "items.parquet"),
        "quarantine": pd.read_parquet(raw / "quarantine.parquet"),
    }


def test_ml100k_counts(ml100k):
    inter, items = ml100k["interactions"], ml100k["items"]
    # documented facts of MovieLens 100K (its README): 100,000 ratings, 943 users, 1,682 movies
    assert len(inter) == 100_000
    assert inter["user_id"].nunique() == 943
    assert len(items) == 1682
    assert items["item_id"].is_unique
    assert len(ml100k["quarantine"]) == 0
    assert set(inter["item_id"]) <= set(items["item_id"])
    # each user has rated at least 20 movies (README)
    assert inter.groupby("user_id").size().min() >= 20
    assert set(inter["value"].unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    rep = ml100k["report"]
    assert rep["rows_in"] == 100_000 + 1682
    assert rep["rows_clean"] == rep["rows_in"]
    assert rep["rows_quarantined"] == 0
    assert rep["users"] == 943 and rep["items"] == 1682
    assert rep["bad_fraction"] == 0.0


def test_ml100k_time_range_utc(ml100k):
    ts = ml100k["interactions"]["ts"]
    assert str(ts.dtype) == "datetime64[ns, UTC]"
    assert ts.is_monotonic_increasing
    assert ts.min().date() == pd.Timestamp("1997-09-20").date()
    assert ts.max().date() == pd.Timestamp("1998-04-22").date()


def test_ml100k_items_have_text_and_categories(ml100k):
    items = ml100k["items"]
    assert (items["text"].str.strip().str.len() > 0).all()
    assert all(len(c) >= 1 for c in items["categories"])
    genres = {g.split("|")[0] for g in (_release_dir(movielens.ML_100K) / "u.genre").read_text(encoding="latin-1").splitlines() if g.strip()}
    assert len(genres) == 19
    assert set().union(*map(set, items["categories"])) <= genres
    # the text carries the title and the genres
    for title, cats, text in zip(items["title"], items["categories"], items["text"]):
        assert title in text
        assert all(c in text for c in cats)


def test_ml100k_latin1_titles_decoded(ml100k):
    titles = ml100k["items"]["title"]
    non_ascii = titles[titles.map(lambda t: not t.isascii())]
    assert len(non_ascii) > 0
    assert titles.str.contains("é").any()
    # decoded as latin-1, not mojibake or replacement characters
    assert not titles.str.contains("\ufffd").any()
    assert not titles.str.contains("Ã").any()


def test_ml1m_movies_dat():
    d = _release_dir(movielens.ML_1M, marker="movies.dat")
    items = movielens.read_movies_dat(d / "movies.dat")
    assert len(items) == 3883  # documented: 3,883 movies in movies.dat
    assert items["item_id"].is_unique
    assert items["item_id"].astype(int).max() == 3952
    assert all(len(c) >= 1 for c in items["categories"])
    assert items["title"].map(lambda t: not t.isascii()).any()
    assert not items["title"].str.contains("\ufffd").any()


def test_ml1m_ingest_without_ratings_fails_clearly(tmp_path, monkeypatch):
    d = _release_dir(movielens.ML_1M, marker="movies.dat")
    if (d / "ratings.dat").exists():
        pytest.skip(f"{d / 'ratings.dat'} is present: the missing-ratings error cannot be exercised")
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with pytest.raises(movielens.DatasetNotFound, match=DATA_DIR_ENV) as exc:
        ingest.run(_params(tmp_path, "movielens-1m", d.parent if d.name == "ml-1m" else d))
    assert "ratings.dat" in str(exc.value)
    assert not (tmp_path / "data" / "raw").exists()
