"""features.adapters.recbole on a tiny fixture written in the RecBole atomic format of UniSRec's files.

The point of the adapter is that pulse's own leave-one-out split (last event = test, the one
before = valid) is exactly the split the files encode; these tests rebuild it and compare.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from features import adapters
from features.adapters import recbole
from core.params import DATA_DIR_ENV, load_params
from core.schema import DataError, validate
from models.data import item_index, leave_one_out, train_interactions, user_sequences

DS = recbole.RecBoleDataset("tiny-recbole", "Tiny", "Industrial & Scientific")
MAX_HIST = 50  # the files truncate every history to its last 50 items

TEXTS = {
    "B01": "Blue Tape 2in. Industrial & Scientific Tapes, Adhesives & Sealants Adhesive Tapes. 3M. ",
    "B02": "Caliper No. 5. Industrial & Scientific Test, Measure & Inspect Calipers. Mitutoyo. ",  # ". " inside the title
    "B03": "Exhaust Fan, 24 Diameter. . TPI. ",  # no category path
    "B04": "PLA Filament 1.75mm. Industrial & Scientific Additive Manufacturing Products 3D Printing Filament. eSUN. ",
    "B05": 'Glue "Super" 20g. Industrial & Scientific Tapes, Adhesives & Sealants Cyanoacrylate Adhesives. Loctite. ',
}
ASINS = list(TEXTS)  # item id k (file id) = ASINS[k]

# user id -> whole sequence of file item ids; user 2 repeats an item, user 3 is longer than 51 events
SEQUENCES = {
    "0": [0, 1, 2, 3, 4],
    "1": [4, 3, 2],  # 3 events: no train row at all
    "2": [1, 1, 2, 0, 3, 2],
    "3": [k % 5 for k in range(54)],
}


def write_recbole(d: Path, seqs: dict[str, list[int]], prefix: str = "Tiny") -> None:
    """The three .inter files as RecBole writes them: per user, train rows from the latest position to
    the earliest, histories truncated to the last MAX_HIST items; plus .text and the id maps."""
    d.mkdir(parents=True, exist_ok=True)
    head = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    rows = {s: [] for s in recbole.SPLITS}
    for u, s in seqs.items():
        def row(p: int) -> str:
            return f"{u}\t{' '.join(map(str, s[max(0, p - MAX_HIST):p]))}\t{s[p]}\n"
        rows["test"].append(row(len(s) - 1))
        rows["valid"].append(row(len(s) - 2))
        rows["train"] += [row(p) for p in range(len(s) - 3, 0, -1)]
    for split, lines in rows.items():
        (d / f"{prefix}.{split}.inter").write_text(head + "".join(lines))
    (d / f"{prefix}.text").write_text("item_id:token\ttext:token_seq\n" + "".join(f"{a}\t{t}\n" for a, t in TEXTS.items()))
    (d / f"{prefix}.item2index").write_text("".join(f"{a}\t{k}\n" for k, a in enumerate(ASINS)))
    (d / f"{prefix}.user2index").write_text("".join(f"A{u}\t{u}\n" for u in seqs))


@pytest.fixture()
def loaded(tmp_path):
    write_recbole(tmp_path, SEQUENCES)
    return recbole.load_folder(tmp_path, DS)


def test_sequences_rebuilt_exactly(loaded):
    inter, items, extra = loaded
    got = {u: g["item_id"].astype(int).tolist() for u, g in inter.groupby("user_id", sort=False)}
    assert got == SEQUENCES  # order, repeats and the events before a truncated history all kept
    assert list(items["item_id"]) == [str(k) for k in range(len(ASINS))]  # file id order
    assert list(extra["item_map"]["asin"]) == ASINS


def test_leave_one_out_is_the_files_split(tmp_path, loaded):
    v = validate(*loaded[:2])
    assert len(v.quarantine) == 0
    index = item_index(v.items)
    assert index.pos["0"] == 1 and index.pos["4"] == 5  # pulse index = file id + 1
    seqs = user_sequences(v.interactions, index)
    files = {s: recbole.read_inter(tmp_path / f"Tiny.{s}.inter").set_index("user") for s in recbole.SPLITS}
    for split in ("valid", "test"):
        ev = leave_one_out(seqs, split, max_len=200)
        assert sorted(ev.users) == sorted(SEQUENCES)
        for u, target, seq in zip(ev.users, ev.targets, ev.seq):
            row = files[split].loc[u]
            assert target - 1 == int(row["target"])
            hist = (seq[seq > 0] - 1).tolist()
            assert hist[-MAX_HIST:] == [int(i) for i in row["hist"]]
    # pulse's train events (all but each user's last two) are the train file's targets plus each user's first item
    train = train_interactions(v.interactions)
    firsts = train.groupby("user_id", sort=False).head(1)
    rest = train.drop(firsts.index)
    assert sorted(zip(rest["user_id"], rest["item_id"])) == sorted(zip(files["train"].index, files["train"]["target"]))


def test_synthetic_timestamps_one_day_apart_last_on_the_same_day(loaded):
    v = validate(*loaded[:2])
    for u, g in v.interactions.groupby("user_id"):
        ts = g["ts"].reset_index(drop=True)
        assert ts.iloc[-1] == recbole.SYNTHETIC_END
        assert (ts.diff().dropna() == pd.Timedelta(days=1)).all(), u


def test_item_text_title_and_category_path(loaded):
    items = loaded[1].set_index("item_id")
    assert items.loc["0", "title"] == "Blue Tape 2in"
    assert items.loc["0", "categories"] == ["Tapes, Adhesives & Sealants Adhesive Tapes"]
    assert items.loc["1", "title"] == "Caliper No. 5"
    assert items.loc["1", "categories"] == ["Test, Measure & Inspect Calipers"]
    assert items.loc["2", "title"] == "Exhaust Fan, 24 Diameter" and items.loc["2", "categories"] == []
    assert items.loc["4", "text"] == TEXTS["B05"].strip()  # the whole text, quotes and brand included
    assert "Loctite" in items.loc["4", "text"]


def test_inconsistent_files_are_an_error(tmp_path):
    write_recbole(tmp_path, SEQUENCES)
    p = tmp_path / "Tiny.valid.inter"
    p.write_text(p.read_text().replace("0\t0 1 2\t3", "0\t0 2 1\t3"))
    with pytest.raises(DataError, match="user 0"):
        recbole.load_folder(tmp_path, DS)


def test_dataset_registered_and_missing_folder_names_the_path(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump({"data": {"dataset": "amazon-scientific", "source_dir": str(tmp_path / "nowhere")}}))
    with pytest.raises(recbole.DatasetNotFound) as exc:
        adapters.load(load_params(p))
    msg = str(exc.value)
    assert str(tmp_path / "nowhere" / "amazon-scientific") in msg and DATA_DIR_ENV in msg and "Scientific.test.inter" in msg
    p.write_text(yaml.safe_dump({"data": {"dataset": "amazon-scientific"}}))
    with pytest.raises(recbole.DatasetNotFound, match=DATA_DIR_ENV):
        adapters.load(load_params(p))


def test_parent_folder_or_env_variable_is_found(tmp_path, monkeypatch):
    write_recbole(tmp_path / "amazon-scientific", {"0": [0, 1, 2, 3]}, prefix="Scientific")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump({"data": {"dataset": "amazon-scientific"}}))
    inter, items, _ = adapters.load(load_params(p))
    assert inter["item_id"].tolist() == ["0", "1", "2", "3"]
    assert np.all(np.diff(inter["ts"].astype("int64")) > 0)
