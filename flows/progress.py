"""Training epochs as a Prefect progress artifact, without the training code knowing Prefect.

``models.interest_fit`` (the train stage's training loop) logs one record per epoch with its fields
as attributes (``train_model``, ``epoch``, ``epochs``, ``loss``, ``valid_ndcg``, ``time_left``);
``epoch_progress`` listens to that logger while the train stage runs in a flow and keeps one
progress artifact per model up to date (``train-progress-<model>``: percent of the maximum epochs,
and the latest loss, validation NDCG@10 and time left). Early stopping ends a model's bar before 100%.
"""
from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from typing import Iterator
from uuid import UUID

TRAIN_LOGGER = "models.interest_fit"


def artifact_key(model: str) -> str:
    """Prefect artifact keys: lowercase letters, numbers and dashes."""
    return "train-progress-" + re.sub(r"[^a-z0-9-]+", "-", model.lower()).strip("-")


class EpochProgress(logging.Handler):
    """A logging handler that mirrors epoch records into progress artifacts (one per model)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.artifacts: dict[str, UUID] = {}
        self.seen: list[tuple[str, int, int]] = []  # (model, epoch, epochs): what it mirrored, for tests and logs

    def emit(self, record: logging.LogRecord) -> None:
        epoch, epochs, model = getattr(record, "epoch", None), getattr(record, "epochs", None), getattr(record, "train_model", None)
        if epoch is None or not epochs or model is None:
            return
        progress = min(100.0, 100.0 * epoch / epochs)
        description = (f"{model}: epoch {epoch} of at most {epochs}, loss {getattr(record, 'loss', float('nan')):.4f}, "
                       f"validation NDCG@10 {getattr(record, 'valid_ndcg', float('nan')):.4f}, "
                       f"at most {getattr(record, 'time_left', '?')} left")
        self.seen.append((model, epoch, epochs))
        try:
            from prefect.artifacts import create_progress_artifact, update_progress_artifact

            if model not in self.artifacts:
                self.artifacts[model] = create_progress_artifact(progress, key=artifact_key(model), description=description)
            else:
                update_progress_artifact(self.artifacts[model], progress, description=description)
        except Exception:  # progress reporting must never fail training (no API, no run context)
            logging.getLogger(__name__).debug("progress artifact not updated", exc_info=True)


@contextmanager
def epoch_progress() -> Iterator[EpochProgress]:
    """While the block runs, mirror the train stage's epochs into progress artifacts."""
    handler = EpochProgress()
    logger = logging.getLogger(TRAIN_LOGGER)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
