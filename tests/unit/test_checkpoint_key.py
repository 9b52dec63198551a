"""models.train.run keys its checkpoint folder by dataset, data version and params, so an
interrupted run never resumes on other data that happens to have the same item count."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from core.params import load_params
from models import train as train_mod


class _Stop(Exception):
    """Raised by the fake fit_models once it has seen the checkpoint folder."""


def _write_raw(raw: Path, users: list[str]) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    items = pd.DataFrame({"item_id": ["a", "b", "c"], "title": ["A", "B", "C"], "text": ["a", "b", "c"],
                          "categories": [["x"], ["y"], ["x"]]})
    ts = pd.to_datetime([1_700_000_000 + 60 * i for i in range(len(users))], unit="s", utc=True)
    inter = pd.DataFrame({"user_id": users, "item_id": ["a", "b", "c"] * (len(users) // 3), "ts": ts,
                          "event": "view", "value": float("nan")})
    items.to_parquet(raw / "items.parquet", index=False)
    inter.to_parquet(raw / "interactions.parquet", index=False)


def _checkpoint_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, users: list[str], dataset: str) -> Path:
    tmp_path.mkdir(parents=True)
    (tmp_path / "params.yaml").write_text("{}\n")
    params = load_params(tmp_path / "params.yaml", {"data.dataset": dataset, "train.models": ["popularity"]})
    _write_raw(params.path(params.data.raw_dir), users)
    seen: dict[str, Path] = {}

    def fake_fit_models(*args, **kwargs):
        seen["ck_dir"] = args[-1]
        raise _Stop

    monkeypatch.setattr(train_mod, "encode_items", lambda p, items, *a, **k: torch.zeros(len(items) + 1, 4))
    monkeypatch.setattr(train_mod, "fit_models", fake_fit_models)
    with pytest.raises(_Stop):
        train_mod.run(params)
    return seen["ck_dir"]


def test_checkpoint_dir_names_dataset_and_data_version(tmp_path, monkeypatch):
    first = _checkpoint_dir(tmp_path / "one", monkeypatch, ["u1", "u2", "u3"], "csv")
    same = _checkpoint_dir(tmp_path / "two", monkeypatch, ["u1", "u2", "u3"], "csv")
    other_data = _checkpoint_dir(tmp_path / "three", monkeypatch, ["u1", "u1", "u9"], "csv")
    other_name = _checkpoint_dir(tmp_path / "four", monkeypatch, ["u1", "u2", "u3"], "parquet")
    assert first.name.startswith("csv-")
    assert first.name == same.name              # same data, same params: resume is allowed
    assert other_data.name != first.name        # same item count, other data: never resume
    assert other_name.name != first.name
    assert other_name.name.startswith("parquet-")
