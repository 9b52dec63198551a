"""MovieLens 100K and 1M, read from a local folder or downloaded from GroupLens.

The files are never committed (their licence forbids redistribution): they are read from
``data.source_dir`` or ``$PULSE_DATA_DIR`` (the folder itself or its parent holding
``ml-100k/`` or ``ml-1m/``), else downloaded from the official URL and checked against its
published MD5.
"""
from __future__ import annotations

import hashlib
import logging
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from core.params import DATA_DIR_ENV, Params

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MovieLensRelease:
    name: str          # folder name inside the zip
    marker: str        # the file that must be present
    url: str
    md5: str           # published at <url>.md5


ML_100K = MovieLensRelease("ml-100k", "u.data", "https://files.grouplens.org/datasets/movielens/ml-100k.zip", "0e33842e24a9c977be4e0107933c0723")
ML_1M = MovieLensRelease("ml-1m", "ratings.dat", "https://files.grouplens.org/datasets/movielens/ml-1m.zip", "c4d9eecfca2ab87c1945afe126590906")


class DatasetNotFound(FileNotFoundError):
    pass


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(rel: MovieLensRelease, cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    zpath = cache / f"{rel.name}.zip"
    log.info("downloading %s from %s", rel.name, rel.url)
    with urllib.request.urlopen(rel.url, timeout=30) as r, zpath.open("wb") as f:  # noqa: S310 (fixed https URL)
        f.write(r.read())
    got = _md5(zpath)
    if got != rel.md5:
        zpath.unlink()
        raise ValueError(f"{rel.url}: MD5 {got} does not match the published {rel.md5}")
    with zipfile.ZipFile(zpath) as z:
        z.extractall(cache)
    return cache / rel.name


def locate(rel: MovieLensRelease, params: Params) -> Path:
    """The folder holding the release's files: configured, cached, or freshly downloaded."""
    candidates: list[Path] = []
    src = params.data.resolved_source_dir()
    if src:
        base = params.path(src)
        candidates += [base, base / rel.name]
    cache = params.path(".cache/datasets")
    candidates.append(cache / rel.name)
    for c in candidates:
        if (c / rel.marker).exists():
            return c
    why = f"{rel.marker} not found in {[str(c) for c in candidates]}"
    if params.data.download:
        try:
            return _download(rel, cache)
        except Exception as e:  # offline machines land here
            why += f"; download from {rel.url} failed ({e})"
    raise DatasetNotFound(
        f"{rel.name}: {why}. Put the unzipped files in a folder and set data.source_dir in "
        f"params.yaml or the {DATA_DIR_ENV} environment variable to it."
    )


def _genre_text(title: str, genres: list[str]) -> str:
    return f"{title}. Genres: {', '.join(genres) if genres else 'unknown'}."


def load_100k(params: Params) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, pd.DataFrame]]:
    d = locate(ML_100K, params)
    ratings = pd.read_csv(d / "u.data", sep="\t", header=None, names=["user_id", "item_id", "value", "ts"], dtype=str)
    genres = [g.split("|")[0] for g in (d / "u.genre").read_text(encoding="latin-1").splitlines() if g.strip()]
    raw = pd.read_csv(d / "u.item", sep="|", header=None, encoding="latin-1", dtype=str, keep_default_na=False)
    flags = raw.iloc[:, 5 : 5 + len(genres)].astype(int).to_numpy()
    cats = [[g for g, f in zip(genres, row) if f] for row in flags]
    items = pd.DataFrame({"item_id": raw[0], "title": raw[1], "categories": cats})
    items["text"] = [_genre_text(t, c) for t, c in zip(items["title"], items["categories"])]
    ratings["event"] = "rate"
    return ratings[["user_id", "item_id", "ts", "event", "value"]], items, {}


def load_1m(params: Params) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, pd.DataFrame]]:
    d = locate(ML_1M, params)
    ratings = pd.read_csv(d / "ratings.dat", sep="::", header=None, engine="python", names=["user_id", "item_id", "value", "ts"], dtype=str)
    items = read_movies_dat(d / "movies.dat")
    ratings["event"] = "rate"
    return ratings[["user_id", "item_id", "ts", "event", "value"]], items, {}


def read_movies_dat(path: Path) -> pd.DataFrame:
    """MovieLens-1M movies.dat (latin-1, ``id::title::Genre|Genre``) as raw items."""
    rows = [line.split("::") for line in path.read_text(encoding="latin-1").splitlines() if line.strip()]
    items = pd.DataFrame(rows, columns=["item_id", "title", "genres"])
    items["categories"] = items["genres"].str.split("|")
    items["text"] = [_genre_text(t, c) for t, c in zip(items["title"], items["categories"])]
    return items[["item_id", "title", "text", "categories"]]
