"""The small shared command line of every stage (``python -m <package>.<stage> --params params.yaml``)."""
from __future__ import annotations

import argparse
import json
import logging
import os
from typing import Any, Callable, Sequence

import yaml

from core.params import Params, load_params


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``["train.epochs=3"]`` -> ``{"train.epochs": 3}`` (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"--set expects key=value, got '{pair}'")
        key, value = pair.split("=", 1)
        out[key] = yaml.safe_load(value)
    return out


def stage_main(run: Callable[[Params], Any], description: str, argv: Sequence[str] | None = None,
               flags: dict[str, str] | None = None) -> Any:
    """Parse --params/--set (and shortcut flags such as ``--device`` -> ``train.device``), run the
    stage, print its result summary as JSON."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a param, e.g. train.epochs=3")
    for flag, key in (flags or {}).items():
        ap.add_argument(flag, dest=key, default=None, help=f"shortcut for --set {key}=...")
    args = ap.parse_args(argv)
    configure_logging()
    overrides = parse_overrides(args.set)
    overrides.update({key: getattr(args, key) for key in (flags or {}).values() if getattr(args, key) is not None})
    result = run(load_params(args.params, overrides))
    summary = result.summary() if hasattr(result, "summary") else result
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one summary: rank 0's
        print(json.dumps(summary, indent=2, default=str))
    return result
