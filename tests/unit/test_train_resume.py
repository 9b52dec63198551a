"""models.interest_fit: fit_interest's checkpoint/resume; models.fitting: optimizer_params, fit_models;
models.settings: model_config; and the stage CLI (stage_main flags).

Tiny configurations on CPU, a few epochs of a few batches each.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core.cli import stage_main
from core.params import TrainParams
from models import interest_fit
from models.data import EvalSet, ItemIndex, pad_left
from models.fitting import fit_models, optimizer_params
from models.interest import InterestConfig
from models.interest_fit import fit_interest
from models.settings import model_config
from tests.unit.helpers import DIM, HOUR, L, N_ITEMS, T0, random_text_emb, tiny_config

def _cfg(**kw) -> InterestConfig:
    return tiny_config(**{"n_layers": 1, "dropout": 0.2, **kw})


def _windows(n: int = 96, seed: int = 0):
    """Windows of the pattern i -> i+1 (wrapping), various history lengths."""
    rng = np.random.default_rng(seed)
    seq, ts, lab = [], [], []
    for _ in range(n):
        s = int(rng.integers(1, N_ITEMS + 1))
        run = [(s - 1 + j) % N_ITEMS + 1 for j in range(L + 1)]
        run = run[L - int(rng.integers(1, L + 1)) :]
        seq.append(pad_left(np.array(run[:-1]), L))
        lab.append(pad_left(np.array(run[1:]), L))
        ts.append(pad_left(T0 + HOUR * np.arange(len(run) - 1), L))
    ts_ = np.stack(ts)
    return np.stack(seq), ts_, np.stack(lab), np.where(ts_ > 0, ts_ + HOUR, 0)


def _valid() -> EvalSet:
    seq, ts, tg, ex = [], [], [], []
    for s in range(1, N_ITEMS + 1):
        run = [(s - 1 + j) % N_ITEMS + 1 for j in range(5)]
        seq.append(pad_left(np.array(run[:-1]), L))
        ts.append(pad_left(T0 + HOUR * np.arange(4), L))
        tg.append(run[-1])
        ex.append(np.unique(run[:-1]))
    return EvalSet([str(s) for s in range(N_ITEMS)], np.stack(seq), np.stack(ts), np.array(tg), ex, np.zeros(N_ITEMS, dtype=np.int64))


def _tp(epochs: int, **kw) -> TrainParams:
    # lr high enough that every epoch changes the weights and the validation score moves
    base = dict(lr=5e-3, weight_decay=0.01, batch_size=32, epochs=epochs, patience=100, seed=3, dropout=0.2)
    base.update(kw)
    return TrainParams(**base)


def _fit(epochs: int, checkpoint: Path | None = None, cfg: InterestConfig | None = None, **kw):
    return fit_interest(cfg or _cfg(), random_text_emb(), _windows(), _valid(), _tp(epochs, **kw), "cpu", k=10, checkpoint=checkpoint)


def _run_interrupted(monkeypatch, ck: Path, epochs: int, **kw):
    """A run whose final clean-up never happens (as if killed right after its last checkpoint)."""
    real_unlink = Path.unlink

    def unlink(self, missing_ok=False):
        if Path(self) == ck:
            return None
        return real_unlink(self, missing_ok=missing_ok)

    with monkeypatch.context() as m:
        m.setattr(Path, "unlink", unlink)
        res = _fit(epochs, ck, **kw)
    assert ck.exists()
    return res


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module, atol: float = 1e-5) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        torch.testing.assert_close(sa[name], sb[name], rtol=0, atol=atol, msg=lambda m: f"{name}: {m}")


def _history_close(h1: list[dict], h2: list[dict]) -> None:
    assert [h["epoch"] for h in h1] == [h["epoch"] for h in h2]
    for a, b in zip(h1, h2):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (a["epoch"], key)


# ---------------------------------------------------------------- resume


def test_checkpoint_resume_equals_a_straight_run(tmp_path, monkeypatch, caplog):
    ck = tmp_path / "ck" / "interest.pt"
    first = _run_interrupted(monkeypatch, ck, epochs=2)
    saved = torch.load(ck, weights_only=False)
    assert saved["epoch"] == 2 and len(saved["history"]) == 2
    assert saved["cfg"] == _cfg().to_dict() and saved["seed"] == 3
    assert not ck.with_suffix(".tmp").exists()  # atomic save leaves no temporary file behind

    calls = []
    real_eval = interest_fit.evaluate_model

    def counting_eval(*a, **kw):
        calls.append(1)
        return real_eval(*a, **kw)

    monkeypatch.setattr(interest_fit, "evaluate_model", counting_eval)
    with caplog.at_level(logging.INFO, logger="models.interest_fit"):
        resumed = _fit(4, ck)
    assert "resuming from" in caplog.text and "after epoch 2" in caplog.text
    assert len(calls) == 2  # only epochs 3 and 4 were trained and validated
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    assert resumed.history[:2] == saved["history"] == first.history
    assert not ck.exists()  # a completed run removes its checkpoint
    monkeypatch.setattr(interest_fit, "evaluate_model", real_eval)

    straight = _fit(4)
    _history_close(resumed.history, straight.history)
    assert resumed.best_epoch == straight.best_epoch
    assert resumed.best_valid == pytest.approx(straight.best_valid, rel=1e-6)
    # the same final (best, restored) weights: dropout masks included, the resumed run saw the same randomness
    _assert_same_weights(resumed.model, straight.model)
    # and the weights really moved after epoch 2 (the comparison is not vacuous)
    assert not torch.allclose(saved["model"]["text_proj.weight"], straight.model.state_dict()["text_proj.weight"])


def test_checkpoint_of_another_config_or_seed_is_ignored(tmp_path, monkeypatch):
    ck = tmp_path / "interest.pt"
    _run_interrupted(monkeypatch, ck, epochs=2, cfg=_cfg(dim=8))
    other = _cfg()  # dim 16: a different model
    res = _fit(2, ck, cfg=other)
    assert [h["epoch"] for h in res.history] == [1, 2]  # started from scratch
    fresh = _fit(2, cfg=other)
    _history_close(res.history, fresh.history)
    _assert_same_weights(res.model, fresh.model)
    assert not ck.exists()

    _run_interrupted(monkeypatch, ck, epochs=2, seed=11)
    res = _fit(3, ck)  # seed 3
    assert [h["epoch"] for h in res.history] == [1, 2, 3]
    _history_close(res.history, _fit(3).history)
    assert not ck.exists()


def test_checkpoint_written_every_epoch_and_removed_at_the_end(tmp_path, monkeypatch):
    ck = tmp_path / "sub" / "dir" / "m.pt"  # parent folders are created
    epochs_saved = []
    real_save = interest_fit._save_checkpoint

    def spy(path, state):
        epochs_saved.append((path, state["epoch"], len(state["history"])))
        real_save(path, state)
        assert path.exists()

    monkeypatch.setattr(interest_fit, "_save_checkpoint", spy)
    res = _fit(3, ck)
    assert epochs_saved == [(ck, 1, 1), (ck, 2, 2), (ck, 3, 3)]
    assert len(res.history) == 3
    assert not ck.exists() and not ck.with_suffix(".tmp").exists()
    assert ck.parent.is_dir()


def test_resume_after_early_stop_does_not_train_again(tmp_path, monkeypatch):
    ck = tmp_path / "interest.pt"
    first = _run_interrupted(monkeypatch, ck, epochs=5, lr=0.0, patience=2)  # lr 0: epoch 1 stays best, stops after 3
    assert len(first.history) == 3 and first.best_epoch == 1
    res = _fit(5, ck, lr=0.0, patience=2)
    assert res.history == first.history and res.best_epoch == 1
    _assert_same_weights(res.model, first.model)
    assert not ck.exists()


# ---------------------------------------------------------------- model_config and fit_models


def test_model_config_sasrec_is_the_id_only_interest_model():
    tp = TrainParams(dim=24, max_len=12, n_layers=3, n_heads=4, dropout=0.1, use_text=True, use_time_decay=True,
                     use_long_term=True, use_id_embedding=False, use_position=False)
    s = model_config("sasrec", tp, n_items=50, text_dim=8)
    assert (s.use_text, s.use_time_decay, s.use_long_term) == (False, False, False)
    assert s.use_id_embedding is True and s.use_position is True
    assert (s.n_items, s.text_dim, s.dim, s.max_len, s.n_layers, s.n_heads, s.dropout) == (50, 8, 24, 12, 3, 4, 0.1)
    i = model_config("interest", tp, n_items=50, text_dim=8)
    assert (i.use_text, i.use_id_embedding, i.use_time_decay, i.use_long_term, i.use_position) == (True, False, True, True, False)
    assert (i.dim, i.max_len, i.n_layers, i.n_heads) == (24, 12, 3, 4)
    assert (i.block, i.gate_init) == (tp.block, tp.gate_init)


def test_sasrec_reference_copies_rectools_layer_init_and_optimizer():
    tp = TrainParams(block="preln", weight_decay=0.01, adam_beta2=0.999, grad_clip=1.0, sasrec_reference=True)
    s = model_config("sasrec", tp, n_items=50, text_dim=8)
    assert (s.block, s.init) == ("sasrec", "xavier")
    o = optimizer_params("sasrec", tp)
    assert (o.weight_decay, o.adam_beta2, o.grad_clip) == (0.0, 0.98, 0.0)
    assert optimizer_params("interest", tp) == tp  # the interest model keeps its own recipe
    plain = TrainParams(sasrec_reference=False)
    assert model_config("sasrec", plain, n_items=50, text_dim=8).block == plain.block
    assert optimizer_params("sasrec", plain) == plain


def test_fit_models_trains_each_requested_model(tmp_path):
    index = ItemIndex(tuple(f"i{k}" for k in range(1, N_ITEMS + 1)))
    t = pd.Timestamp("2024-01-01", tz="UTC")
    train = pd.DataFrame({"user_id": ["u"] * 6, "item_id": [f"i{k}" for k in range(1, 7)],
                          "ts": [t + pd.Timedelta(hours=k) for k in range(6)]})
    tp = _tp(1, dim=DIM, max_len=L, n_layers=1)
    models, fits = fit_models(("popularity", "item_knn", "sasrec"), train, index, random_text_emb(), _windows(32), _valid(), tp, "cpu",
                              checkpoint_dir=tmp_path / "ck")
    assert set(models) == {"popularity", "item_knn", "sasrec"} and set(fits) == {"sasrec"}
    assert models["sasrec"].text_proj is None and not models["sasrec"].cfg.use_long_term
    assert len(fits["sasrec"].history) == 1
    assert not (tmp_path / "ck" / "sasrec.pt").exists()
    with pytest.raises(ValueError, match="unknown model"):
        fit_models(("bert4rec",), train, index, random_text_emb(), None, None, tp, "cpu")


# ---------------------------------------------------------------- stage CLI


def test_stage_main_flags_and_overrides(tmp_path, capsys):
    params_file = tmp_path / "params.yaml"
    params_file.write_text("train:\n  device: auto\n  epochs: 7\n")
    seen = []

    def run(p):
        seen.append(p)
        return {"device": p.train.device, "epochs": p.train.epochs}

    flags = {"--device": "train.device"}
    out = stage_main(run, "test", ["--params", str(params_file)], flags=flags)
    assert out == {"device": "auto", "epochs": 7}  # no flag: the params file decides
    assert seen[-1].root == str(tmp_path)
    assert json.loads(capsys.readouterr().out) == out  # the summary is printed as JSON

    out = stage_main(run, "test", ["--params", str(params_file), "--device", "cpu", "--set", "train.epochs=3"], flags=flags)
    assert out == {"device": "cpu", "epochs": 3}
    # the shortcut flag wins over a --set of the same key
    out = stage_main(run, "test", ["--params", str(params_file), "--set", "train.device=cuda", "--device", "cpu"], flags=flags)
    assert out["device"] == "cpu"
    with pytest.raises(SystemExit):
        stage_main(run, "test", ["--params", str(params_file), "--device", "cpu"])  # flag not declared for this stage
    with pytest.raises(SystemExit):
        stage_main(run, "test", ["--params", str(params_file), "--set", "train.epochs"], flags=flags)  # no '='


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_checkpoint_resume_on_cuda(tmp_path, monkeypatch):
    ck = tmp_path / "interest.pt"
    real_unlink = Path.unlink
    with monkeypatch.context() as m:
        m.setattr(Path, "unlink", lambda self, missing_ok=False: None if Path(self) == ck else real_unlink(self, missing_ok=missing_ok))
        fit_interest(_cfg(), random_text_emb(), _windows(), _valid(), _tp(2), "cuda", checkpoint=ck)
    res = fit_interest(_cfg(), random_text_emb(), _windows(), _valid(), _tp(3), "cuda", checkpoint=ck)
    assert [h["epoch"] for h in res.history] == [1, 2, 3]
    assert not ck.exists()


def test_epoch_log_lines_say_how_long_at_most_remains():
    from models.interest_fit import _duration

    assert [_duration(s) for s in (0, 44.6, 600, 5400 + 65)] == ["0 s", "45 s", "10 min", "1 h 31 min"]
    assert _duration(-5) == "0 s"
