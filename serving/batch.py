"""Batch scoring: top-k lists for a JSONL file of user histories (offline evaluation, backfills).

Input lines: ``{"user_id": "u1", "history": ["i1", "i2"], "ts": [1700000000, 1700000100]}``
(``ts`` optional: then the history is taken as evenly spaced, one hour apart). Output lines:
``{"user_id", "items": [...], "because": [...], "cold_start"}``; a malformed line becomes
``{"line": n, "error": "..."}`` in the output and is counted, never dropped.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from features.cli import configure_logging
from features.params import load_params
from models.inference import Engine

log = logging.getLogger(__name__)


def score_file(engine: Engine, src: Path, dst: Path, k: int) -> dict[str, int]:
    counts = {"ok": 0, "error": 0}
    with src.open() as fin, dst.open("w") as fout:
        for n, line in enumerate(fin, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):  # valid JSON but not an object (a list, a number): an error line, not a crash
                    raise TypeError(f"expected a JSON object, got {type(row).__name__}")
                hist = [str(i) for i in row.get("history", [])]
                ts = row.get("ts") or [1_700_000_000 + 3600 * j for j in range(len(hist))]
                if len(ts) != len(hist):
                    raise ValueError("history and ts have different lengths")
                rec = engine.recommend(hist, [int(t) for t in ts], k)
                out = {"user_id": str(row["user_id"]), "items": rec.items, "because": rec.because, "cold_start": rec.cold_start}
                counts["ok"] += 1
            except (ValueError, KeyError, TypeError) as e:
                out = {"line": n, "error": f"{type(e).__name__}: {e}"}
                counts["error"] += 1
            fout.write(json.dumps(out) + "\n")
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description="top-k recommendations for a JSONL file of histories")
    ap.add_argument("input", type=Path)
    ap.add_argument("output", type=Path)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--model", default="", help="model name (default: the one selected by evaluate)")
    args = ap.parse_args()
    configure_logging()
    params = load_params(args.params)
    model = args.model or json.loads(params.path(params.evaluate.out).read_text())["selected"]
    engine = Engine(params.path(params.train.out_dir), model, params.train.max_len)
    counts = score_file(engine, args.input, args.output, args.k)
    log.info("wrote %s: %d scored, %d errors", args.output, counts["ok"], counts["error"])
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
