"""serving.state: one model version's serving state, logged items re-applied to it, and the reload watcher."""
from __future__ import annotations

import json
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from models import artifacts
from models.interest import InterestConfig, InterestModel
from serving import state as state_mod
from serving.state import apply_logged_items, load_state, start_watcher

CATS = ["a", "b"]
DIM = 8


class FakeEncoder:
    """Deterministic text vectors of the model's text width, without loading a transformer."""

    def __init__(self, name: str, max_length: int = 128, cache_dir: Path | None = None, pooling: str | None = None) -> None:
        self.name, self.max_length, self.cache_dir, self.pooling = name, max_length, cache_dir, pooling

    def encode(self, texts: list[str], progress: bool = True) -> np.ndarray:
        return np.stack([np.random.default_rng(len(t)).standard_normal(DIM).astype(np.float32) for t in texts])


@pytest.fixture()
def model(tmp_path, monkeypatch) -> SimpleNamespace:
    """A packaged-model look-alike: what load_state reads of a BentoML model."""
    monkeypatch.setattr(state_mod, "TextEncoder", FakeEncoder)
    torch.manual_seed(0)
    n = 6
    text = torch.randn(n + 1, DIM)
    text[0] = 0
    cfg = InterestConfig(n_items=n, text_dim=DIM, dim=16, max_len=6, n_layers=1, n_heads=2, dropout=0.0)
    ids = [f"i{k}" for k in range(n)]
    artifacts.save(tmp_path / "model", ids, text, {"interest": InterestModel(cfg, text)}, {"dataset": "t"}, ids, [["a"]] * n)
    meta = {"selected": "interest", "max_len": 6, "encoder": "some-encoder"}
    return SimpleNamespace(tag="pulse-recommender:v1", path=str(tmp_path / "model"), info=SimpleNamespace(metadata=meta))


def _log_items(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def test_load_state_builds_everything_one_version_needs(model, tmp_path):
    s = load_state(model, CATS, tmp_path / "items.jsonl")  # no items log yet
    assert s.tag == "pulse-recommender:v1" and s.encoder_name == "some-encoder" and s.encoder is None
    assert s.known_items == {f"i{k}" for k in range(6)} == set(s.engine.ids)
    assert s.cat_vectors["i0"].tolist() == [1.0, 0.0]
    assert s.engine.recommend(["i1"], [1_700_000_000], k=3).items
    (Path(model.path) / "encoder").mkdir()  # a fine-tuned encoder travels with the model
    assert load_state(model, CATS, tmp_path / "items.jsonl").encoder_name == str(Path(model.path) / "encoder")


def test_posted_items_are_encoded_with_the_pooling_and_length_the_model_was_trained_with(model, tmp_path):
    model.info.metadata.update(encoder_pooling="last_token", encoder_max_length=64)
    s = load_state(model, CATS, tmp_path / "items.jsonl")
    s.encode(["a new item"])
    assert (s.encoder.pooling, s.encoder.max_length) == ("last_token", 64)
    del model.info.metadata["encoder_pooling"], model.info.metadata["encoder_max_length"]  # a model packaged before
    s = load_state(model, CATS, tmp_path / "items.jsonl")
    s.encode(["a new item"])
    assert (s.encoder.pooling, s.encoder.max_length) == (None, 128)  # the encoder's own pooling (mean), as trained then


def test_logged_items_the_catalogue_lacks_are_reapplied(model, tmp_path):
    items_log = tmp_path / "items.jsonl"
    _log_items(items_log, [{"item_id": "fresh", "title": "Fresh", "text": "new text", "categories": ["b"]},
                           {"item_id": "i0", "title": "Renamed", "text": "other", "categories": ["b"]},
                           {"item_id": "fresh", "title": "Fresh v2", "text": "newer text", "categories": ["b"]}])
    s = load_state(model, CATS, items_log)
    assert "fresh" in s.known_items and s.engine.ids[-1] == "fresh" and s.engine.titles[-1] == "Fresh v2"
    assert s.cat_vectors["fresh"].tolist() == [0.0, 1.0]
    assert s.engine.titles[0] == "i0"  # in the catalogue: the model's own version is kept
    got = [i["item_id"] for i in s.engine.recommend(["i1", "i2"], [1_700_000_000, 1_700_000_060], k=7).items]
    assert "fresh" in got  # recommendable
    assert apply_logged_items(s, items_log, CATS) == []  # nothing twice
    assert s.encoder.cache_dir == tmp_path / state_mod.ENCODER_CACHE  # posted items' vectors survive a restart
    _log_items(items_log, [{"item_id": "later", "title": "", "text": "posted while a reload was loading", "categories": None}])
    assert apply_logged_items(s, items_log, CATS) == ["later"] and s.engine.titles[-1] == "later"
    assert s.cat_vectors["later"].tolist() == [0.0, 0.0]


def test_a_replaced_state_is_freed_without_the_cycle_collector(model, tmp_path):
    """The service exempts its loaded objects from the cyclic collector (``exempt_from_gc``: a full
    collection rescanned them for 150 ms); a state a reload replaces must still be freed, by
    reference counting alone: no reference cycle in it (items posted, requests scored)."""
    import gc
    import weakref

    items_log = tmp_path / "items.jsonl"
    _log_items(items_log, [{"item_id": "fresh", "title": "Fresh", "text": "new text", "categories": ["b"]}])
    s = load_state(model, CATS, items_log)
    s.engine.recommend(["i1", "fresh"], [1_700_000_000, 1_700_000_060], k=3)
    refs = [weakref.ref(x) for x in (s, s.engine, s.engine.model, s.encoder)]
    gc.disable()
    try:
        del s
        assert [r() for r in refs] == [None] * len(refs)
        state_mod.exempt_from_gc()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.enable()


def test_watcher_calls_reload_until_stopped_and_survives_errors():
    assert start_watcher(lambda: {}, 0) is None  # 0: off
    calls: list[int] = []
    done, stop = threading.Event(), threading.Event()

    def reload() -> dict:
        calls.append(1)
        if len(calls) >= 3:
            done.set()
        if len(calls) == 1:
            raise RuntimeError("store unreachable")
        return {"reloaded": False}

    thread = start_watcher(reload, 0.01, stop)
    assert thread is not None and thread.daemon
    assert done.wait(10), "the watcher stopped after a failing call"
    stop.set()
    thread.join(5)
    assert not thread.is_alive()


def test_a_torn_items_log_line_does_not_stop_the_service_from_starting(model, tmp_path, caplog):
    items_log = tmp_path / "items.jsonl"
    _log_items(items_log, [{"item_id": "fresh", "title": "Fresh", "text": "new text", "categories": ["b"]}])
    with items_log.open("a") as f:
        f.write('{"item_id": "torn", "title": "half a li')  # killed mid-append: no newline, not JSON
    with caplog.at_level("WARNING"):
        s = load_state(model, CATS, items_log)
    assert "fresh" in s.known_items and "torn" not in s.known_items
    assert any("skipping line 2" in r.getMessage() for r in caplog.records)
