"""models.settings and artifacts.history_length: one source for the model's settings (issue 12, item 4).

The interest model's config is built from the train params by the names both declare, with the
same defaults; serving cuts histories to the length the artifact records, not to a default."""
from __future__ import annotations

from dataclasses import MISSING, fields, replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from core.params import TrainParams
from models import artifacts
from models.baselines import StaticScores
from models.inference import Engine
from models.interest import InterestConfig, InterestModel
from models.settings import MODEL_ONLY, SASREC_FROM_TRAIN, model_config, shared_fields
from serving import state as state_mod
from serving.state import load_state, online_half_lives, online_history_len
from tests.unit.helpers import T0, random_text_emb, tiny_config

N_ITEMS, TEXT_DIM = 20, 8
IDS = [f"i{k}" for k in range(1, N_ITEMS + 1)]


def _defaults(cls: type) -> dict:
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


def _changed(value: object) -> object:
    """A value of the same type that differs from ``value``: shows which fields were copied."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 3
    return "sasrec" if value != "sasrec" else "preln"


def test_shared_settings_have_the_same_defaults():
    train, model = _defaults(TrainParams), _defaults(InterestConfig)
    assert {"max_len", "dim", "use_trend", "cold_neighbours"} <= set(shared_fields())
    assert {n: (train[n], model[n]) for n in shared_fields() if train[n] != model[n]} == {}


def test_every_model_setting_comes_from_params_or_is_declared_model_only():
    unsourced = {f.name for f in fields(InterestConfig)} - set(shared_fields()) - set(MODEL_ONLY)
    assert unsourced == set(), "add the setting to TrainParams (params.yaml) or to models.settings.MODEL_ONLY"


def test_model_config_copies_every_shared_setting():
    tp = replace(TrainParams(), **{n: _changed(getattr(TrainParams(), n)) for n in shared_fields()})
    cfg = model_config("interest", tp, n_items=N_ITEMS, text_dim=TEXT_DIM)
    assert {n: getattr(cfg, n) for n in shared_fields()} == {n: getattr(tp, n) for n in shared_fields()}
    assert (cfg.n_items, cfg.text_dim, cfg.init) == (N_ITEMS, TEXT_DIM, "normal")
    s = model_config("sasrec", tp, n_items=N_ITEMS, text_dim=TEXT_DIM)
    assert {n: getattr(s, n) for n in SASREC_FROM_TRAIN} == {n: getattr(tp, n) for n in SASREC_FROM_TRAIN}
    assert (s.use_trend, s.use_transition, s.gate_init) == (False, False, 0.0)  # sasrec's parts stay fixed


# ---------------------------------------------------------------- the served history length


def _artifact(out: Path, max_len: int) -> InterestModel:
    torch.manual_seed(0)
    model = InterestModel(tiny_config(max_len=max_len), random_text_emb(0)).eval()
    artifacts.save(out, IDS, model.text_emb, {"interest": model}, {"dataset": "t"}, IDS, [["a"]] * N_ITEMS)
    return model


def test_a_max_len_7_model_is_served_with_7_long_histories(tmp_path, monkeypatch):
    model = _artifact(tmp_path / "model", 7)
    monkeypatch.setattr(state_mod, "TextEncoder", lambda *a, **kw: None)
    meta = {"selected": "interest", "encoder": "e"}  # a packaged model whose metadata has no max_len
    packaged = SimpleNamespace(tag="pulse-recommender:v1", path=str(tmp_path / "model"), info=SimpleNamespace(metadata=meta))
    engine = load_state(packaged, ["a"], tmp_path / "items.jsonl").engine
    assert engine.max_len == 7
    items = [1 + k % N_ITEMS for k in range(12)]
    ts = [T0 + 600 * k for k in range(12)]
    r = engine.recommend([IDS[i - 1] for i in items], ts, k=N_ITEMS, exclude_seen=False)
    with torch.no_grad():
        want = model.score_all(torch.tensor(items[-7:]).unsqueeze(0), torch.tensor(ts[-7:]).unsqueeze(0))[0, 1:]
        longer = model.score_all(torch.tensor(items[-8:]).unsqueeze(0), torch.tensor(ts[-8:]).unsqueeze(0))[0, 1:]
    got = torch.tensor([it["score"] for it in sorted(r.items, key=lambda it: IDS.index(it["item_id"]))])
    assert torch.allclose(got, want, atol=1e-5) and not torch.allclose(got, longer, atol=1e-5)
    assert Engine(tmp_path / "model", "interest", packaged={"max_len": 50}).max_len == 7  # the model's own config wins


def test_history_length_of_models_without_a_config(tmp_path):
    scores = StaticScores(torch.arange(N_ITEMS + 1, dtype=torch.float32))
    text = random_text_emb(0)
    artifacts.save(tmp_path / "a", IDS, text, {"popularity": scores}, {"max_len": 9})  # train records train.max_len
    assert artifacts.history_length(tmp_path / "a", "popularity") == 9
    artifacts.save(tmp_path / "b", IDS, text, {"popularity": scores}, {})
    assert artifacts.history_length(tmp_path / "b", "popularity", {"max_len": 4}) == 4  # packaged metadata
    with pytest.raises(ValueError, match="no history length"):
        Engine(tmp_path / "b", "popularity")
    _artifact(tmp_path / "c", 5)
    assert artifacts.history_length(tmp_path / "c", "hybrid") == 5  # a model built on the interest model


def test_online_history_len_is_read_from_the_packaged_metadata():
    assert online_history_len({"history_len": 120}) == 120
    with pytest.raises(ValueError, match="history_len"):
        online_history_len({})


def test_online_half_lives_are_read_from_the_packaged_metadata_never_guessed():
    meta = {"short_half_life_days": 2.0, "long_half_life_days": 40.0, "recent_half_life_events": 3.0}
    assert online_half_lives(meta) == (2.0, 40.0, 3.0)
    for key in meta:
        with pytest.raises(ValueError, match=key):
            online_half_lives({k: v for k, v in meta.items() if k != key})
