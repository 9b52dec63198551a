"""RecBole atomic sequence files (``<Name>.train/valid/test.inter`` + ``<Name>.text``) as canonical tables.

The layout is the one of UniSRec's processed Amazon datasets (``amazon-scientific``: see
``../shared/data/amazon-scientific/PROVENANCE.md``). Each ``.inter`` row is ``user  history  next``;
``test.inter`` holds each user's last item, ``valid.inter`` the second-last, ``train.inter`` every
earlier position. Histories are truncated to the last 50 items, so a user with more than 51 events
is rebuilt from the train rows too; every row of the three files is then checked against the rebuilt
sequence, and a mismatch is an error rather than a silently different split.

**The files have no timestamps, only each user's order.** Timestamps are synthesised: one event per
day, aligned so that every user's last (test) event falls on the same day, ``SYNTHETIC_END``; the
user's k-th event before it is k days earlier. Order-based parts (leave-one-out, sequences) are
exact; time-aware parts read only this order: the interest model's time decay sees one day between
consecutive events, "recent" windows (recent popularity, the trend prior) count each user's last
events, and a global temporal split means "the last events of the longest users", not a date.

Ids are kept as the files' integer ids (as strings), items in id order 0..N-1, so pulse's item
index is file id + 1 and pulse's leave-one-out split (last event = test, the one before = valid)
is exactly the files' split. ``item_map`` (item_id, asin) is saved beside the canonical tables.

The data folder is ``data.source_dir`` or ``$PULSE_DATA_DIR``: the folder itself or its parent
holding ``amazon-scientific/`` (as for MovieLens). Nothing is downloaded: the files' terms forbid
copying them into the repository.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.params import DATA_DIR_ENV, Params
from core.schema import DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
# the synthetic clock: every user's last event on this day (the Amazon 2018 dump ends in October 2018)
SYNTHETIC_END = pd.Timestamp("2018-10-01", tz="UTC")
SYNTHETIC_STEP = pd.Timedelta(days=1)
# UniSRec's item text is "<title>. <category path>. <brand>. "; the path's levels are joined by
# spaces (not separable), and it always starts at the root category of the dump
_TEXT = re.compile(r"^(?P<title>.*?)\. (?P<path>{root}.*?)?\. (?P<brand>.*?)\.?\s*$", re.S)


@dataclass(frozen=True)
class RecBoleDataset:
    name: str    # dataset name in params.yaml and the folder name
    prefix: str  # file prefix: <prefix>.train.inter, ...
    root_category: str  # first level of every category path in the item text


AMAZON_SCIENTIFIC = RecBoleDataset("amazon-scientific", "Scientific", "Industrial & Scientific")


class DatasetNotFound(DataError, FileNotFoundError):
    """The files are not where the configuration points: a path to fix, not a transient failure."""


def locate(ds: RecBoleDataset, params: Params) -> Path:
    """The folder holding ``<prefix>.test.inter``: ``data.source_dir`` / ``$PULSE_DATA_DIR`` or its ``<name>/`` child."""
    marker = f"{ds.prefix}.test.inter"
    src = params.data.resolved_source_dir()
    candidates = [params.path(src), params.path(src) / ds.name] if src else []
    for c in candidates:
        if (c / marker).exists():
            return c
    looked = f"looked in {[str(c) for c in candidates]}" if candidates else f"neither data.source_dir nor {DATA_DIR_ENV} is set"
    raise DatasetNotFound(
        f"{ds.name}: {marker} not found ({looked}). Set data.source_dir in params.yaml or the {DATA_DIR_ENV} "
        f"environment variable to the folder holding the RecBole files (or its parent holding {ds.name}/), "
        f"e.g. {DATA_DIR_ENV}=../shared/data. They are never downloaded."
    )


def read_inter(path: Path) -> pd.DataFrame:
    """One ``.inter`` file: columns user, hist (list of item ids, oldest first), target; file order kept."""
    rows = []
    with path.open(encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        if len(header) != 3 or not header[0].startswith("user_id") or not header[2].startswith("item_id"):
            raise DataError(f"{path}: header {header} is not 'user_id:token  item_id_list:token_seq  item_id:token'")
        for n, line in enumerate(f, 2):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3:
                raise DataError(f"{path}:{n}: expected 3 tab-separated fields, got {len(parts)}")
            rows.append((parts[0], parts[1].split(), parts[2]))
    return pd.DataFrame(rows, columns=["user", "hist", "target"])


def rebuild_sequences(splits: dict[str, pd.DataFrame]) -> dict[str, list[str]]:
    """Each user's whole ordered sequence, checked against every row of the three files.

    The sequence is the earliest row's history followed by the targets of all rows in position
    order: train rows (a user's rows by history length; equal, truncated lengths in reverse file
    order, the order the files list positions), then valid, then test. Raises DataError when any
    row's history is not the (at most ``len(history)``) items before its target in that sequence.
    """
    by_user: dict[str, list[tuple[int, int, int, list[str], str]]] = {}
    for rank, split in enumerate(SPLITS):
        df = splits[split]
        for row, (user, hist, target) in enumerate(zip(df["user"], df["hist"], df["target"])):
            by_user.setdefault(str(user), []).append((rank, len(hist), -row, hist, target))
    seqs: dict[str, list[str]] = {}
    for user, rows in by_user.items():
        rows.sort(key=lambda r: r[:3])
        for split in ("valid", "test"):
            n = sum(r[0] == SPLITS.index(split) for r in rows)
            if n != 1:
                raise DataError(f"user {user}: expected exactly one row in {split}.inter, found {n}")
        first = rows[0][3]
        seq = list(first) + [r[4] for r in rows]
        for k, (*_, hist, target) in enumerate(rows):
            at = len(first) + k  # position of this row's target
            if not hist or seq[at - len(hist): at] != hist:
                raise DataError(f"user {user}: a row's history {hist[-5:]}... -> {target} does not continue the "
                                f"sequence rebuilt from the files (position {at}); the files are not one leave-one-out split")
        seqs[user] = seq
    return seqs


def parse_text(text: str, root: str) -> tuple[str, str]:
    """(title, category path without the root) of a UniSRec item text; path '' when the item has none."""
    m = re.match(_TEXT.pattern.format(root=re.escape(root)), text, re.S)
    if not m:
        return text.strip().rstrip("."), ""
    path = (m.group("path") or "")[len(root):].strip()
    return m.group("title").strip(), path


def read_text(path: Path) -> pd.DataFrame:
    """``<prefix>.text``: asin, text (tab-separated, no quoting: texts may hold quotes)."""
    rows = []
    with path.open(encoding="utf-8") as f:
        f.readline()  # header: item_id:token  text:token_seq
        for line in f:
            if line.strip():
                asin, _, text = line.rstrip("\n").partition("\t")
                rows.append((asin, text))
    return pd.DataFrame(rows, columns=["asin", "text"])


def read_index(path: Path) -> dict[str, str]:
    """``item2index`` / ``user2index``: original id -> the integer id (as a string) of the .inter files."""
    out = {}
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                key, _, idx = line.rstrip("\n").partition("\t")
                out[key] = idx
    return out


def load_folder(d: Path, ds: RecBoleDataset) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, pd.DataFrame]]:
    """Canonical (interactions, items, {"item_map": item_id -> asin}) from the files in ``d``."""
    splits = {s: read_inter(d / f"{ds.prefix}.{s}.inter") for s in SPLITS}
    seqs = rebuild_sequences(splits)
    order = sorted(seqs, key=lambda x: (len(x), x))  # numeric order of the integer ids
    lengths = np.array([len(seqs[u]) for u in order])
    steps_back = np.concatenate([np.arange(n - 1, -1, -1) for n in lengths]) if len(order) else np.zeros(0, dtype=int)
    interactions = pd.DataFrame({"user_id": np.repeat(order, lengths), "item_id": [i for u in order for i in seqs[u]],
                                 "ts": SYNTHETIC_END - SYNTHETIC_STEP * steps_back, "event": "interaction", "value": 1.0})
    asin_of = {v: k for k, v in read_index(d / f"{ds.prefix}.item2index").items()}
    text = read_text(d / f"{ds.prefix}.text").set_index("asin")["text"]
    ids = sorted(asin_of, key=int)
    missing = [asin_of[i] for i in ids if asin_of[i] not in text.index]
    if missing:
        raise DataError(f"{d / (ds.prefix + '.text')}: no text for {len(missing)} item(s), e.g. {missing[:3]}")
    texts = [text[asin_of[i]].strip() for i in ids]
    parsed = [parse_text(t, ds.root_category) for t in texts]
    items = pd.DataFrame({"item_id": ids, "title": [p[0] for p in parsed], "text": texts,
                          "categories": [[p[1]] if p[1] else [] for p in parsed]})
    unknown = set(interactions["item_id"]) - set(ids)
    if unknown:
        raise DataError(f"{d}: {len(unknown)} item id(s) in the .inter files are not in {ds.prefix}.item2index, e.g. {sorted(unknown)[:3]}")
    log.info("%s: %d users, %d items, %d events rebuilt from the .inter files; timestamps synthesised (one day per event, "
             "order only); %d items without a category path", ds.name, len(seqs), len(items), len(interactions),
             sum(not c for c in items["categories"]))
    return interactions, items, {"item_map": pd.DataFrame({"item_id": ids, "asin": [asin_of[i] for i in ids]})}


def load_amazon_scientific(params: Params) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, pd.DataFrame]]:
    return load_folder(locate(AMAZON_SCIENTIFIC, params), AMAZON_SCIENTIFIC)
