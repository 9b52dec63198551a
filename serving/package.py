"""Stage `package`: put the selected model into the BentoML model store with its metrics.

The store lives in $BENTOML_HOME (default ~/bentoml). The service then serves
``<package.model_name>:latest`` (or the tag in $PULSE_MODEL_TAG).
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass

from features.cli import stage_main
from features.params import Params

log = logging.getLogger(__name__)


@dataclass
class PackageResult:
    tag: str
    selected: str
    metadata: dict

    def summary(self) -> dict:
        return self.__dict__


def run(params: Params) -> PackageResult:
    import bentoml

    model_dir = params.path(params.train.out_dir)
    report = json.loads(params.path(params.evaluate.out).read_text())
    selected = report["selected"]
    meta = json.loads((model_dir / "meta.json").read_text())
    metadata: dict = {
        "selected": selected,
        "dataset": meta["dataset"],
        "data_version": meta["data_version"],
        "params_hash": meta["params_hash"],
        "encoder": meta["encoder"],
        "max_len": params.train.max_len,
        "history_len": params.features.history_len,
        "feature_repo": str(params.path(params.features.repo_dir).resolve()),
        "event_log": str(params.path(params.data.event_log).resolve()),
        "short_half_life_days": params.features.short_half_life_days,
        "long_half_life_days": params.features.long_half_life_days,
    }
    for split in ("valid", "test"):
        for k, v in report["models"][selected][split].items():
            metadata[f"{split}_{k}"] = v
    with bentoml.models.create(params.package.model_name, labels={"model": selected, "dataset": meta["dataset"]}, metadata=metadata) as ref:
        shutil.copytree(model_dir, ref.path, dirs_exist_ok=True)
        shutil.copy(params.path(params.evaluate.out), ref.path_of("metrics.json"))
    tag = str(ref.tag)
    out = params.path(params.package.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"tag": tag, "selected": selected, "metadata": metadata,
                               "serve": f"PULSE_MODEL_TAG={tag} bentoml serve serving.service:Recommender"}, indent=2))
    log.info("packaged %s as %s", selected, tag)
    return PackageResult(tag, selected, metadata)


def main() -> None:
    stage_main(run, "package: save the selected model into the BentoML model store")


if __name__ == "__main__":
    main()
