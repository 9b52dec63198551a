"""Batch scoring: top-k lists for a JSONL file of user histories (offline evaluation, backfills).

Input lines: ``{"user_id": "u1", "history": ["i1", "i2"], "ts": [1700000000, 1700000100]}``
(``ts`` optional: then the history is taken as evenly spaced, one hour apart). Output lines:
``{"user_id", "items": [...], "because": [...], "cold_start"}`` in input order; a malformed line
becomes ``{"line": n, "error": "..."}`` in the output and is counted, never dropped.

Histories are scored ``batch_size`` at a time in one forward pass (``Engine.recommend_many``).
The model is the packaged one (``--model-tag pulse-recommender:latest``, from the BentoML model
store, what the service serves) or the train stage's artifacts (``--model``).

    python -m serving.batch histories.jsonl recs.jsonl --model-tag pulse-recommender:latest
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from core.cli import configure_logging
from core.params import load_params
from models.inference import Engine

log = logging.getLogger(__name__)

READ_CHUNK = 1024  # input lines held in memory at once


def _parse(line: str) -> tuple[str, list[str], list[int]]:
    row = json.loads(line)
    if not isinstance(row, dict):  # valid JSON but not an object (a list, a number): an error line, not a crash
        raise TypeError(f"expected a JSON object, got {type(row).__name__}")
    hist = [str(i) for i in row.get("history", [])]
    ts = row.get("ts") or [1_700_000_000 + 3600 * j for j in range(len(hist))]
    if len(ts) != len(hist):
        raise ValueError("history and ts have different lengths")
    return str(row["user_id"]), hist, [int(t) for t in ts]


def _flush(engine: Engine, pending: list[tuple[int, object]], fout, k: int, batch_size: int, counts: dict[str, int]) -> None:
    """Score the parsed lines of ``pending`` together and write every line's output in input order."""
    ok = [(n, p) for n, p in pending if isinstance(p, tuple)]
    recs = iter(engine.recommend_many([(h, t) for _, (_, h, t) in ok], k, batch_size=batch_size))
    for n, p in pending:
        if isinstance(p, tuple):
            rec = next(recs)
            out = {"user_id": p[0], "items": rec.items, "because": rec.because, "cold_start": rec.cold_start}
            counts["ok"] += 1
        else:
            out = {"line": n, "error": p}
            counts["error"] += 1
        fout.write(json.dumps(out) + "\n")


def score_file(engine: Engine, src: Path, dst: Path, k: int, batch_size: int = 64) -> dict[str, int]:
    counts = {"ok": 0, "error": 0}
    pending: list[tuple[int, object]] = []  # (line number, parsed tuple or error text)
    with src.open() as fin, dst.open("w") as fout:
        for n, line in enumerate(fin, 1):
            if not line.strip():
                continue
            try:
                pending.append((n, _parse(line)))
            except (ValueError, KeyError, TypeError) as e:
                pending.append((n, f"{type(e).__name__}: {e}"))
            if len(pending) >= READ_CHUNK:
                _flush(engine, pending, fout, k, batch_size, counts)
                pending = []
        _flush(engine, pending, fout, k, batch_size, counts)
    return counts


def engine_from_store(tag: str) -> Engine:
    """The engine of a packaged model (the BentoML model store): the model the service serves."""
    import bentoml

    model = bentoml.models.get(tag)
    meta = model.info.metadata
    return Engine(Path(model.path), meta["selected"], packaged=meta)


def main() -> None:
    ap = argparse.ArgumentParser(description="top-k recommendations for a JSONL file of histories")
    ap.add_argument("input", type=Path)
    ap.add_argument("output", type=Path)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=64, help="histories scored in one forward pass")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--model-tag", default="", help="a packaged model, e.g. pulse-recommender:latest (what the service serves)")
    ap.add_argument("--model", default="", help="without --model-tag: a model of the train stage's artifacts (default: the selected one)")
    ap.add_argument("--stats-out", type=Path, default=None, help="also write the counts and users/s here (JSON), for benchmarks")
    args = ap.parse_args()
    configure_logging()
    if args.model_tag:
        engine = engine_from_store(args.model_tag)
    else:
        params = load_params(args.params)
        model = args.model or json.loads(params.path(params.evaluate.out).read_text())["selected"]
        engine = Engine(params.path(params.train.out_dir), model)
    t0 = time.perf_counter()
    counts = score_file(engine, args.input, args.output, args.k, args.batch_size)
    seconds = time.perf_counter() - t0
    counts_out = {**counts, "seconds": round(seconds, 2), "users_per_s": round(counts["ok"] / seconds, 1) if seconds else None}
    log.info("wrote %s: %d scored, %d errors, %.1f users/s (%s)", args.output, counts["ok"], counts["error"],
             counts_out["users_per_s"] or 0, engine.model_name)
    if args.stats_out:
        args.stats_out.parent.mkdir(parents=True, exist_ok=True)
        args.stats_out.write_text(json.dumps({**counts_out, "model": engine.model_name, "batch_size": args.batch_size,
                                              "command": "python -m serving.batch " + " ".join(sys.argv[1:])}, indent=2))
    print(json.dumps(counts_out))


if __name__ == "__main__":
    main()
