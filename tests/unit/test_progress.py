"""flows.progress: the train stage's epoch records become one Prefect progress artifact per model."""
from __future__ import annotations

import logging

import prefect.artifacts

from flows.progress import TRAIN_LOGGER, artifact_key, epoch_progress


def test_epoch_records_update_one_progress_artifact_per_model(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger=TRAIN_LOGGER)  # as flows.console.show_project_logs sets it in a flow
    calls = []
    monkeypatch.setattr(prefect.artifacts, "create_progress_artifact",
                        lambda progress, key=None, description=None: calls.append(("create", key, progress, description)) or key)
    monkeypatch.setattr(prefect.artifacts, "update_progress_artifact",
                        lambda artifact_id, progress, description=None: calls.append(("update", artifact_id, progress, description)))
    log = logging.getLogger(TRAIN_LOGGER)
    with epoch_progress() as handler:
        log.info("training interest")  # not an epoch record: ignored
        for model, epoch in (("interest", 1), ("interest", 2), ("sasrec", 1)):
            log.info("epoch", extra={"train_model": model, "epoch": epoch, "epochs": 4, "loss": 5.0, "valid_ndcg": 0.25, "time_left": "3 s"})
    log.info("epoch", extra={"train_model": "interest", "epoch": 3, "epochs": 4})  # after the block: not mirrored
    assert [c[:3] for c in calls] == [("create", "train-progress-interest", 25.0), ("update", "train-progress-interest", 50.0),
                                      ("create", "train-progress-sasrec", 25.0)]
    assert "interest: epoch 2 of at most 4, loss 5.0000, validation NDCG@10 0.2500, at most 3 s left" == calls[1][3]
    assert handler.seen == [("interest", 1, 4), ("interest", 2, 4), ("sasrec", 1, 4)]
    assert handler not in log.handlers


def test_a_failing_prefect_call_never_fails_training(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger=TRAIN_LOGGER)
    def boom(*a, **k):
        raise RuntimeError("no API")

    monkeypatch.setattr(prefect.artifacts, "create_progress_artifact", boom)
    with epoch_progress() as handler:
        logging.getLogger(TRAIN_LOGGER).info("epoch", extra={"train_model": "x", "epoch": 1, "epochs": 2})
    assert handler.seen == [("x", 1, 2)]
    assert artifact_key("Hybrid_Switch") == "train-progress-hybrid-switch"


def test_it_listens_to_the_logger_of_the_training_loop():
    """The epoch records come from fit_interest's module: a move of the loop must move the listener."""
    from models import interest_fit

    assert interest_fit.log.name == TRAIN_LOGGER
