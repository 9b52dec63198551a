"""The data version: a content hash of the canonical tables, recorded beside every artifact.

On the ground floor because ingest writes the tables it hashes and training records the hash;
neither stage should import the other for it."""
from __future__ import annotations

import hashlib
from pathlib import Path


def data_version(raw_dir: Path) -> str:
    """Content hash of the canonical tables: the data version recorded beside every artifact."""
    h = hashlib.md5()
    for name in ("interactions.parquet", "items.parquet"):
        h.update((Path(raw_dir) / name).read_bytes())
    return h.hexdigest()[:12]
