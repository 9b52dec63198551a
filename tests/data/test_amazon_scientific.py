"""The real Amazon Scientific RecBole files (never committed): read from $PULSE_DATA_DIR or ../shared/data.

Every test skips, with the reason, when the files are not on this machine.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from features.adapters import recbole
from core.params import DATA_DIR_ENV
from core.schema import validate
from models.data import item_index, leave_one_out, user_sequences

pytestmark = pytest.mark.data

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
DS = recbole.AMAZON_SCIENTIFIC


def _folder() -> Path:
    base = Path(os.environ[DATA_DIR_ENV]) if os.environ.get(DATA_DIR_ENV) else SHARED_DATA
    for d in (base / DS.name, base):
        if (d / f"{DS.prefix}.test.inter").exists():
            return d
    pytest.skip(f"{DS.name}/{DS.prefix}.test.inter not found under {base} (set {DATA_DIR_ENV} to the folder holding {DS.name}/)")


@pytest.fixture(scope="module")
def sci():
    d = _folder()
    inter, items, extra = recbole.load_folder(d, DS)
    v = validate(inter, items)
    return d, v, extra


def test_counts_match_provenance(sci):
    _, v, extra = sci
    # PROVENANCE.md: 8,442 users, 4,385 items, 59,384 interactions in the test sequences (histories
    # truncated to 50); 3 users have more than 51 events, whose 43 earliest come from train.inter
    assert len(v.quarantine) == 0
    assert v.interactions["user_id"].nunique() == 8442
    assert len(v.items) == 4385 and len(extra["item_map"]) == 4385
    assert len(v.interactions) == 59_384 + 43
    assert v.interactions.groupby("user_id").size().min() >= 5  # 5-core


def test_leave_one_out_reproduces_the_files_split(sci):
    d, v, _ = sci
    index = item_index(v.items)
    seqs = user_sequences(v.interactions, index)
    for split in ("valid", "test"):
        rows = recbole.read_inter(d / f"{DS.prefix}.{split}.inter").set_index("user")
        ev = leave_one_out(seqs, split, max_len=200)
        assert len(ev.users) == len(rows) == 8442
        want = rows.loc[ev.users]
        np.testing.assert_array_equal(ev.targets - 1, want["target"].astype(int).to_numpy())
        for seq, hist in zip(ev.seq, want["hist"]):
            assert (seq[seq > 0] - 1)[-50:].tolist() == [int(i) for i in hist]


def test_items_text_and_categories(sci):
    _, v, _ = sci
    items = v.items
    assert (items["text"].str.len() > 20).all()
    assert (items["title"].str.len() > 0).all()
    with_path = items["categories"].map(len) == 1
    assert with_path.sum() > 4200  # PROVENANCE: title + category path + brand; a few items lack a path
    assert all(c[0] in t for c, t in zip(items["categories"][with_path], items["text"][with_path]))
