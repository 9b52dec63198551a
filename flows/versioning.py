"""DVC from the Prefect side: record a stage's outputs in dvc.lock, push them, read the data version.

After a flow runs a stage, ``dvc commit <stage>`` writes the same lock entry ``dvc repro``
would have, so the two front doors agree and a later ``dvc repro`` has nothing to redo.
"""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import yaml

log = logging.getLogger(__name__)


class VersioningError(RuntimeError):
    pass


def is_dvc_repo(root: Path) -> bool:
    return (root / ".dvc").is_dir() and (root / "dvc.yaml").exists()


def dvc(root: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise VersioningError(f"dvc {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def commit_stage(root: Path, stage: str) -> None:
    """Hash the stage's deps and outs into dvc.lock and its outs into the DVC cache."""
    dvc(root, "commit", "--force", "--quiet", stage)


def push(root: Path, stage: str) -> str:
    return dvc(root, "push", stage)


def stage_outs(root: Path, stage: str) -> dict[str, str]:
    """{out path: md5} of a stage, from dvc.lock."""
    lock = yaml.safe_load((root / "dvc.lock").read_text()) if (root / "dvc.lock").exists() else {}
    outs = (lock.get("stages") or {}).get(stage, {}).get("outs") or []
    return {o["path"]: o.get("md5", "") for o in outs}
