"""Where a benchmark's figures go: one JSON file (its folder made if missing), echoed to stdout.

Why a module: notes and docs quote these files, so every benchmark writes them the same way."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def write_report(path: str | Path, report: dict[str, Any]) -> Path:
    """Write ``report`` as indented JSON to ``path`` and print it; returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2)
    out.write_text(text)
    print(text)
    return out


def percentiles(ms: Any) -> dict[str, float]:
    """p50 / p90 / p99 / max of latencies in ms, rounded to 0.01 ms ({} for none): one shape for every HTTP benchmark."""
    v = np.asarray(ms, dtype=float)
    if not len(v):
        return {}
    return {q: round(float(np.percentile(v, int(q[1:]))), 2) for q in ("p50", "p90", "p99")} | {"max": round(float(v.max()), 2)}
