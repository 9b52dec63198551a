"""The ranking benchmark's fit log: every finished fit as one JSON line, keyed by its settings, so
an interrupted benchmark resumes (``--resume``) and seeds run as separate processes pool into one
report."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

from core.params import Params, TrainParams

log = logging.getLogger(__name__)

# bump when a protocol's split or evaluation changes, so --resume never mixes fits of two definitions
# (2: the temporal protocol validates on a nested temporal split and refits seed-free models for the test;
#  3: the cold protocol's seed-free models no longer count the validation target)
PROTOCOLS_VERSION = 3


class FitLog:
    """Every finished fit, appended as one JSON line, so a long benchmark that is interrupted
    resumes (``--resume``) without redoing the fits it already has. Lines carry a key of the
    settings (dataset, train params, encoder), and only lines with this run's key are reused."""

    def __init__(self, path: Path, key: str, resume: bool) -> None:
        self.path, self.key = path, key
        self.done: dict[tuple[str, str, int], dict] = {}
        if resume and path.exists():
            for line in path.read_text().splitlines():
                try:
                    d = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn last line
                if d.get("key") == key:
                    self.done[(d["protocol"], d["name"], d["seed"])] = d["result"]
            log.info("resuming: %d fit(s) already in %s", len(self.done), path)
        elif path.exists():
            path.unlink()

    def get(self, protocol: str, name: str, seed: int) -> dict | None:
        return self.done.get((protocol, name, seed))

    def add(self, protocol: str, name: str, seed: int, result: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps({"key": self.key, "protocol": protocol, "name": name, "seed": seed, "result": result}) + "\n")


# train params added after fit logs already existed: left out of the key at their default, so a log
# written before they were added still resumes (any other value is part of the key)
KEY_ADDED_LATER = {"ease_lambdas": TrainParams().ease_lambdas}


def fit_key(dataset: str, params: Params) -> str:
    """The settings a logged fit must share to be reused: dataset, train and encoder params, except
    the base seed (each line records its own seed), so that seeds run as separate processes
    (``--set train.seed=43 --seeds 1``) can be pooled into one report with ``--resume``."""
    train = {k: v for k, v in dataclasses.asdict(params.train).items()
             if k != "seed" and not (k in KEY_ADDED_LATER and v == KEY_ADDED_LATER[k])}
    return hashlib.md5(json.dumps([dataset, train, dataclasses.asdict(params.encoder), PROTOCOLS_VERSION],
                                  sort_keys=True, default=str).encode()).hexdigest()[:12]
