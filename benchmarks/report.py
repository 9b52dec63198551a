"""Where a benchmark's figures go: one JSON file (its folder made if missing), echoed to stdout.

Why a module: notes and docs quote these files, so every benchmark writes them the same way."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_report(path: str | Path, report: dict[str, Any]) -> Path:
    """Write ``report`` as indented JSON to ``path`` and print it; returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2)
    out.write_text(text)
    print(text)
    return out
