"""What the service needs to answer with one packaged model version, built whole so it can be swapped.

The service holds one ``ServingState`` in one attribute. ``load_state`` builds it from a BentoML
model (engine, category vectors, known items, encoder) and re-applies the items posted through
``/items`` that the model's catalogue lacks. A hot reload builds the next state off to the side and
replaces the attribute in a single assignment: a request that already took the old state finishes
on it, the next one gets the new state, and no request ever sees a half-built one.
"""
from __future__ import annotations

import gc
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import torch

from core.eventlog import EventLog, LogLike, as_log, read_items_log
from features.transforms import category_matrix
from models import artifacts
from models.candidates import AnnSettings
from models.encoder import TextEncoder
from models.inference import Engine

log = logging.getLogger(__name__)

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
# beside the items log: the vectors of posted items, by text hash (issue 14: re-encoding every logged
# item at each start took start-up from 11 s to 92 s after a few large /items requests)
ENCODER_CACHE = "encoder-cache"


@dataclass
class ServingState:
    """One model version and everything derived from it; only ``/items`` mutates it (under the log lock)."""

    tag: str
    engine: Engine
    cat_vectors: dict[str, np.ndarray]
    known_items: set[str]
    encoder_name: str
    encoder_pooling: str | None = None  # as trained (model metadata); None: the encoder's own or mean
    encoder_max_length: int = 128
    encoder: Any = field(default=None, repr=False)  # a TextEncoder, loaded on first use
    cache_dir: Path | None = None  # the encoder's text-hash cache: a restart does not re-encode posted items

    def encode(self, texts: list[str]) -> torch.Tensor:
        """Text vectors from this version's own encoder: a fine-tuned one travels with its model,
        and an item encoded by another version's encoder would not match its catalogue (the cache
        is keyed by encoder name, so versions never share vectors)."""
        if self.encoder is None:
            self.encoder = TextEncoder(self.encoder_name, self.encoder_max_length, cache_dir=self.cache_dir,
                                       pooling=self.encoder_pooling)
        return torch.as_tensor(self.encoder.encode(texts, progress=False))

    def upsert_items(self, rows: list[dict], vectors: torch.Tensor, categories: list[str]) -> list[str]:
        """Make items (item_id, title, categories) recommendable and known to ``/events``; returns the new ids."""
        ids = [r["item_id"] for r in rows]
        new = self.engine.upsert_items(ids, [r["title"] for r in rows], vectors)
        self.known_items.update(ids)
        frame = pd.DataFrame({"item_id": ids, "categories": [r["categories"] for r in rows]})
        self.cat_vectors.update(category_matrix(frame, categories))
        return new


def load_state(model: Any, categories: list[str], items_log: LogLike, cache_dir: Path | None = None) -> ServingState:
    """The serving state of a BentoML model (anything with ``tag``, ``path`` and ``info.metadata``),
    with the items posted through ``/items`` since its catalogue was made already applied.
    ``cache_dir``: the encoder's cache (default: beside a file items log; a Redis one has no folder)."""
    meta = model.info.metadata
    model_dir = Path(model.path)
    engine = Engine(model_dir, meta["selected"], ann=AnnSettings.from_metadata(meta), packaged=meta)
    items = pd.DataFrame({"item_id": engine.ids, "categories": artifacts.load_item_categories(model_dir)})
    tuned = model_dir / "encoder"  # a fine-tuned encoder travels with the model
    encoder_name = str(tuned) if tuned.is_dir() else str(meta.get("encoder", DEFAULT_ENCODER))
    state = ServingState(str(model.tag), engine, category_matrix(items, categories), set(engine.ids), encoder_name,
                         meta.get("encoder_pooling"), int(meta.get("encoder_max_length", 128)),
                         cache_dir=cache_dir or default_cache_dir(items_log))
    apply_logged_items(state, items_log, categories)
    return state


ONLINE_SETTINGS = ("history_len", "short_half_life_days", "long_half_life_days", "recent_half_life_events")


def _recorded(meta: Mapping[str, Any], key: str) -> Any:
    if key not in meta:
        raise ValueError(f"the packaged model's metadata records no {key} (features.{key}): package it again")
    return meta[key]


def online_history_len(meta: Mapping[str, Any]) -> int:
    """The behaviours the online store keeps per user, as recorded when the model was packaged
    (``features.history_len``): events merged at serving time must be cut where materialisation cut
    them, so a model packaged without it is an error, never a guessed length."""
    return int(_recorded(meta, "history_len"))


def online_half_lives(meta: Mapping[str, Any]) -> tuple[float, float, float]:
    """(short, long half-life in days, recent half-life in events) of the online category mixes, as
    recorded when the model was packaged: an event merged at serving time must decay the mixes as
    materialisation did, so a model packaged without them is an error, never a guessed default."""
    return tuple(float(_recorded(meta, k)) for k in ONLINE_SETTINGS[1:])  # type: ignore[return-value]


def default_cache_dir(items_log: LogLike) -> Path | None:
    """The encoder cache beside a file items log (None for a stream: the caller names a local folder)."""
    source = as_log(items_log)
    return source.path.parent / ENCODER_CACHE if isinstance(source, EventLog) else None


def apply_logged_items(state: ServingState, items_log: LogLike, categories: list[str]) -> list[str]:
    """Re-apply the logged items that ``state``'s catalogue lacks, so an item posted through
    ``/items`` stays recommendable across restarts and reloads until a pipeline run (whose ingest
    reads the same log) puts it in the catalogue. Returns the ids applied."""
    logged = read_items_log(items_log)
    logged = logged[~logged["item_id"].isin(state.known_items)]
    if logged.empty:
        return []
    rows = [{"item_id": str(r.item_id), "title": r.title if isinstance(r.title, str) and r.title else str(r.item_id),
             "categories": [str(c) for c in r.categories] if isinstance(r.categories, list) else []}
            for r in logged.itertuples()]
    state.upsert_items(rows, state.encode([str(t) for t in logged["text"]]), categories)
    log.info("re-applied %d item(s) from %s to %s", len(rows), as_log(items_log).name, state.tag)
    return [r["item_id"] for r in rows]


def exempt_from_gc() -> None:
    """Take every object alive now (the loaded model, Feast's registry, the imported libraries:
    about 380,000 with the default model) out of the cyclic garbage collector's scans.

    Why: they live as long as the process, yet each full collection rescans them all, 150 ms with
    the GIL held in the middle of some request. A ``ServingState`` has no reference cycles
    (tested), so the one a reload replaces is still freed, by reference counting. Called once
    the service has loaded and again after each reload."""
    gc.freeze()


def start_watcher(reload: Callable[[], dict], interval_s: float, stop: threading.Event | None = None) -> threading.Thread | None:
    """Call ``reload`` every ``interval_s`` seconds in a daemon thread (none when the interval is 0),
    so a newly packaged model goes live without anyone calling ``/reload``. A failing call is
    logged and the watcher keeps going: the old model keeps serving."""
    if interval_s <= 0:
        return None
    stop = stop or threading.Event()

    def loop() -> None:
        while not stop.wait(interval_s):
            try:
                reload()
            except Exception:  # reload reports its own errors; this is the last line of defence
                log.exception("model watcher: reload failed")

    thread = threading.Thread(target=loop, name="pulse-model-watcher", daemon=True)
    thread.start()
    log.info("model watcher: checking for a new model every %.1f s", interval_s)
    return thread
