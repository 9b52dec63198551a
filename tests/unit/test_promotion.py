"""serving.promotion.decide against a real BentoML model store in the session's temporary BENTOML_HOME.

BentoML reads $BENTOML_HOME lazily, on the first access to its store (not at import), and then
caches it; tests/conftest.py sets it before any test runs. ``_store`` checks that the cached
home really is that temporary folder before anything is written, so ~/bentoml is never touched.
"""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from core.params import load_params
from models import artifacts
from models.baselines import popularity
from models.data import ItemIndex, leave_one_out, user_sequences
from models.evaluate import evaluate_model
from serving import package
from serving.promotion import champion, decide

IDS = [f"i{k}" for k in range(1, 9)]
T0 = 1_700_000_000
MAX_LEN = 5


@pytest.fixture
def _store(isolated_homes):
    """The BentoML store, checked to live in the temporary BENTOML_HOME."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    home = Path(os.environ["BENTOML_HOME"]).resolve()
    assert home == Path(isolated_homes["BENTOML_HOME"]).resolve()
    assert home != (Path.home() / "bentoml").resolve()
    assert Path(BentoMLContainer.bentoml_home.get()).resolve() == home
    assert Path(BentoMLContainer.model_store_dir.get()).resolve() == home / "models"
    return home


def _interactions() -> pd.DataFrame:
    """5 users, 5 events each, with a popularity signal the popularity model half-gets."""
    seqs = {
        "u1": ["i1", "i2", "i3", "i1", "i5"],
        "u2": ["i2", "i1", "i4", "i2", "i6"],
        "u3": ["i1", "i3", "i2", "i7", "i1"],
        "u4": ["i3", "i4", "i5", "i6", "i2"],
        "u5": ["i2", "i3", "i8", "i1", "i4"],
    }
    rows = [(u, item, T0 + 3600 * (10 * n + j), "interaction", None)
            for n, (u, items) in enumerate(seqs.items()) for j, item in enumerate(items)]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "ts", "event", "value"])
    df["ts"] = pd.to_datetime(df["ts"], unit="s", utc=True)
    df["value"] = df["value"].astype("float64")
    return df.sort_values("ts", kind="stable").reset_index(drop=True)


def _setup(root: Path, model_name: str) -> tuple:
    """params.yaml, data/raw/interactions.parquet, the artifact dir and reports/metrics.json under root."""
    (root / "params.yaml").write_text(yaml.safe_dump({
        "train": {"max_len": MAX_LEN, "out_dir": "artifacts/model"},
        "evaluate": {"k": 3, "select_metric": "ndcg@3", "out": "reports/metrics.json"},
        "package": {"model_name": model_name, "out": "reports/package.json"},
    }))
    params = load_params(root / "params.yaml")
    inter = _interactions()
    raw = params.path(params.data.raw_dir)
    raw.mkdir(parents=True)
    inter.to_parquet(raw / "interactions.parquet", index=False)

    index = ItemIndex(tuple(IDS))
    model = popularity(inter, index)
    text_emb = torch.zeros(len(IDS) + 1, 4)
    artifacts.save(params.path(params.train.out_dir), IDS, text_emb, {"popularity": model},
                   {"dataset": "synthetic", "data_version": "v1", "params_hash": "p1", "encoder": "none"})
    seqs = user_sequences(inter, index)
    valid = evaluate_model(model, leave_one_out(seqs, "valid", MAX_LEN), k=3)
    test = evaluate_model(model, leave_one_out(seqs, "test", MAX_LEN), k=3)
    assert 0.0 < valid["ndcg@3"] < 1.0  # a real, non-trivial score
    _write_report(params, valid, test)
    return params, valid, test


def _write_report(params, valid: dict, test: dict) -> None:
    out = params.path(params.evaluate.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"selected": "popularity", "select_metric": "ndcg@3", "k": 3,
                               "models": {"popularity": {"valid": valid, "test": test}}}))


def _name() -> str:
    return f"pulse-test-{uuid.uuid4().hex[:8]}"  # a fresh name per test: tests never see each other's models


def test_empty_store_promotes(tmp_path, _store):
    params, valid, _ = _setup(tmp_path, _name())
    assert champion(params.package.model_name) is None
    d = decide(params)
    assert d.promote is True
    assert d.basis == "no model packaged yet"
    assert d.champion is None and d.champion_tag is None
    assert d.challenger == pytest.approx(valid["ndcg@3"])


def test_same_model_is_not_promoted_then_a_better_one_is(tmp_path, _store):
    params, valid, test = _setup(tmp_path, _name())
    result = package.run(params)
    assert result.tag.startswith(params.package.model_name + ":")
    tag, path, meta = champion(params.package.model_name)
    assert tag == result.tag
    assert path.resolve().is_relative_to(_store / "models")  # written to the temporary store
    assert meta["selected"] == "popularity" and meta["max_len"] == MAX_LEN
    assert meta["valid_ndcg@3"] == pytest.approx(valid["ndcg@3"])
    assert json.loads(params.path(params.package.out).read_text())["tag"] == tag

    d = decide(params)
    assert d.basis == "both scored on the new validation split"
    assert d.champion_tag == tag
    assert d.champion == pytest.approx(d.challenger)  # the very same model, re-scored on the same split
    assert d.promote is False  # equal is not strictly better

    _write_report(params, {**valid, "ndcg@3": valid["ndcg@3"] + 1e-3}, test)
    better = decide(params)
    assert better.promote is True and better.basis == "both scored on the new validation split"
    assert better.champion == pytest.approx(valid["ndcg@3"])


def test_changed_catalogue_uses_the_stored_metric(tmp_path, _store):
    params, valid, test = _setup(tmp_path, _name())
    tag = package.run(params).tag

    # retrained on a catalogue with one more item: the champion cannot score it
    items = params.path(params.train.out_dir) / "items.json"
    d = json.loads(items.read_text())
    d["ids"].append("i9")
    d["titles"].append("i9")
    d["categories"].append([])
    items.write_text(json.dumps(d))
    # and the raw data moved on: no longer what the champion's metric came from (must not be read)
    (params.path(params.data.raw_dir) / "interactions.parquet").unlink()

    for new, promote in ((valid["ndcg@3"] + 0.05, True), (valid["ndcg@3"] - 0.05, False)):
        _write_report(params, {**valid, "ndcg@3": new}, test)
        dec = decide(params)
        assert "catalogues differ" in dec.basis
        assert dec.champion == pytest.approx(valid["ndcg@3"])  # the metric stored at packaging time
        assert dec.challenger == pytest.approx(new)
        assert dec.champion_tag == tag
        assert dec.promote is promote


def test_only_the_default_run_moves_the_served_latest(tmp_path, _store, monkeypatch):
    """After an experiment (an override, or dvc exp run), <model_name>:latest, what `make serve`
    serves, is still the default run's model; the experiment is a labelled candidate."""
    import bentoml

    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    name = _name()
    _setup(tmp_path, name)
    cfg = yaml.safe_load((tmp_path / "params.yaml").read_text())
    cfg["package"]["candidate_name"] = f"{name}-candidates"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(cfg))
    params = load_params(tmp_path / "params.yaml")
    served = package.run(params)
    assert served.promoted is True and served.serve == "make serve"
    assert str(bentoml.models.get(f"{name}:latest").tag) == served.tag

    experiment = load_params(tmp_path / "params.yaml", {"package.out": "reports/package-exp.json"})
    cand = package.run(experiment)
    assert cand.promoted is False and "package.out" in cand.reason
    assert cand.tag.startswith(f"{name}-candidates:") and cand.tag in cand.serve
    model = bentoml.models.get(cand.tag)
    assert model.info.labels["role"] == "candidate"
    assert model.info.labels["data_version"] == "v1" and model.info.labels["params_hash"] == "p1"
    assert model.info.labels["git_commit"]  # a short sha, or 'none' outside git
    assert str(bentoml.models.get(f"{name}:latest").tag) == served.tag  # unchanged

    monkeypatch.setenv("DVC_EXP_NAME", "exp-abc")  # `dvc exp run` with params.yaml edited in place
    in_exp = package.run(params)  # the very params of the default run: only the environment differs
    assert in_exp.promoted is False and "DVC experiment" in in_exp.reason
    assert str(bentoml.models.get(f"{name}:latest").tag) == served.tag

    forced = load_params(tmp_path / "params.yaml", {"package.promote": "always"})
    again = package.run(forced)
    assert again.promoted is True and str(bentoml.models.get(f"{name}:latest").tag) == again.tag


def test_promote_mode_is_checked(tmp_path):
    from serving.promotion import should_promote

    (tmp_path / "params.yaml").write_text("{}\n")
    assert should_promote(load_params(tmp_path / "params.yaml"), {})[0] is True
    assert should_promote(load_params(tmp_path / "params.yaml", {"package.promote": "never"}), {})[0] is False
    with pytest.raises(ValueError, match="package.promote"):
        should_promote(load_params(tmp_path / "params.yaml", {"package.promote": "yes"}), {})
