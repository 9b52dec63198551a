"""Stage `package`: put the selected model into the BentoML model store with its metrics.

The store lives in $BENTOML_HOME (default ~/bentoml). The service serves
``<package.model_name>:latest`` (or the tag in $PULSE_MODEL_TAG). Only the default run packages
under that name (``serving.promotion.should_promote``); a run with overrides or inside
``dvc exp run`` packages under ``package.candidate_name``, so BentoML's "latest" of the served
name never moves to an experiment. Every version is labelled with its data version, params
hash and git commit. A catalogue of ``package.ann_min_items`` items or more also gets its ANN
index (``ann.faiss``) here, beside the weights.
"""
from __future__ import annotations

import json
import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from core.cli import stage_main
from core.params import Params
from models.candidates import AnnSettings
from serving.promotion import should_promote

log = logging.getLogger(__name__)


@dataclass
class PackageResult:
    tag: str
    selected: str
    metadata: dict
    promoted: bool = True
    reason: str = ""
    serve: str = ""

    def summary(self) -> dict:
        return self.__dict__


def git_commit(root: Path) -> str:
    """Short commit of the code that packaged the model ('none' outside git): with the data version
    and params hash, what is needed to reproduce a candidate."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "none"
    return sha.stdout.strip() if sha.returncode == 0 and sha.stdout.strip() else "none"


def ann_index(model_dir: Path, selected: str, settings: AnnSettings) -> Path | None:
    """The FAISS index over the selected model's item vectors, written into the packaged model
    when its catalogue reaches ``package.ann_min_items`` (models/candidates.py); None below."""
    from models import artifacts
    from models.candidates import package_index

    if len(artifacts.load_item_ids(model_dir)) < settings.min_items:
        return None
    return package_index(model_dir, artifacts.load_models(model_dir)[selected], settings)


def project_relative(params: Params, configured: str) -> str:
    """A configured path as the packaged model records it: relative to the project root (POSIX
    separators). A path configured absolute outside the project stays as configured."""
    path = Path(configured)
    if not path.is_absolute():
        return path.as_posix()
    try:
        return path.resolve().relative_to(Path(params.root).resolve()).as_posix()
    except ValueError:
        log.warning("%s is outside the project: the packaged model records it as an absolute path", configured)
        return str(path)


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
        # where the service finds the Feast repo and the event log: relative to the project root
        # (the service's working directory, or PULSE_PROJECT_DIR), never this machine's absolute
        # paths; PULSE_FEATURE_REPO / PULSE_EVENT_LOG override them where the model is served
        "feature_repo": project_relative(params, params.features.repo_dir),
        "event_log": project_relative(params, params.data.event_log),
        "short_half_life_days": params.features.short_half_life_days,
        "long_half_life_days": params.features.long_half_life_days,
        "recent_half_life_events": params.features.recent_half_life_events,
        **{f"ann_{k}": getattr(params.package, f"ann_{k}") for k in ("min_items", "index", "ef_search", "nprobe", "candidates", "nlist")},
    }
    for split in ("valid", "test"):
        for k, v in report["models"][selected][split].items():
            metadata[f"{split}_{k}"] = v
    promoted, reason = should_promote(params)
    name = params.package.model_name if promoted else params.package.candidate_name
    labels = {"model": selected, "dataset": str(meta["dataset"]), "data_version": str(meta["data_version"]),
              "params_hash": str(meta["params_hash"]), "git_commit": git_commit(Path(params.root)),
              "role": "served" if promoted else "candidate"}
    with bentoml.models.create(name, labels=labels, metadata=metadata) as ref:
        shutil.copytree(model_dir, ref.path, dirs_exist_ok=True)
        ann_index(Path(ref.path), selected, AnnSettings.from_metadata(metadata))
        shutil.copy(params.path(params.evaluate.out), ref.path_of("metrics.json"))
    tag = str(ref.tag)
    serve = "make serve" if promoted else f"PULSE_MODEL_TAG={tag} make serve"
    out = params.path(params.package.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"tag": tag, "selected": selected, "promoted": promoted, "reason": reason,
                               "labels": labels, "metadata": metadata, "serve": serve}, indent=2))
    if promoted:
        log.info("packaged %s as %s (%s): %s:latest now serves it", selected, tag, reason, params.package.model_name)
    else:
        log.info("packaged %s as candidate %s (%s); %s:latest is unchanged", selected, tag, reason, params.package.model_name)
    return PackageResult(tag, selected, metadata, promoted, reason, serve)


def main() -> None:
    stage_main(run, "package: save the selected model into the BentoML model store")


if __name__ == "__main__":
    main()
