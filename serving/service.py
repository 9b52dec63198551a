"""The pulse HTTP service: `POST /recommend`, `POST /events` (and BentoML's /healthz, /readyz, /metrics).

The user's behaviour is read from Feast's online store at request time, and `/events` writes
it there (after appending to the durable event log), so an accepted event changes the very
next recommendation with no retraining.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated, Any

import bentoml
import pandas as pd
import torch
from bentoml.exceptions import InvalidArgument
from pydantic import Field

from features.ingest import items_log_path
from features.store import get_store, online_user_behaviour
from features.transforms import category_matrix
from models import artifacts
from models.encoder import TextEncoder
from models.inference import Recommender as Engine
from serving.events import EventLog, EventRejected, merge_behaviour, parse_events

log = logging.getLogger(__name__)

MODEL_TAG = os.environ.get("PULSE_MODEL_TAG", "pulse-recommender:latest")


@bentoml.service(traffic={"timeout": 30})
class Recommender:
    model_ref = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        meta = self.model_ref.info.metadata
        model_dir = Path(self.model_ref.path)
        self.engine = Engine(model_dir, meta["selected"], int(meta.get("max_len", 50)))
        repo = Path(os.environ.get("PULSE_FEATURE_REPO", meta["feature_repo"]))
        self.store = get_store(repo)
        self.event_log = EventLog(Path(os.environ.get("PULSE_EVENT_LOG", meta["event_log"])))
        self.history_len = int(meta.get("history_len", 50))
        self.half_lives = (float(meta.get("short_half_life_days", 3.0)), float(meta.get("long_half_life_days", 60.0)))
        items = pd.DataFrame({"item_id": self.engine.ids, "categories": artifacts.load_item_categories(model_dir)})
        self.categories = json.loads((repo / "data" / "categories.json").read_text())
        self.cat_vectors = category_matrix(items, self.categories)
        self.known_items = set(self.engine.ids)
        self.items_log = EventLog(items_log_path(self.event_log.path))
        tuned = model_dir / "encoder"  # a fine-tuned encoder travels with the model
        self.encoder_name = str(tuned) if tuned.is_dir() else meta.get("encoder", "all-MiniLM-L6-v2")
        self._encoder = None
        log.info("serving %s (%s); event log %s", self.model_ref.tag, meta["selected"], self.event_log.path)

    @bentoml.api
    def recommend(
        self,
        user_id: Annotated[str, Field(min_length=1, max_length=256, description="user id")],
        k: Annotated[int, Field(ge=1, le=100, description="how many items")] = 10,
        exclude_seen: bool = True,
    ) -> dict:
        """Top-k items for the user, with the past behaviours that weighed most ("because")."""
        if not user_id.strip():
            raise InvalidArgument("user_id must not be blank")
        state = online_user_behaviour(self.store, [user_id])[0]
        rec = self.engine.recommend(state.get("hist_item_ids") or [], state.get("hist_ts") or [], k, exclude_seen)
        return {"user_id": user_id, "model": self.engine.model_name, "cold_start": rec.cold_start,
                "items": rec.items, "because": rec.because}

    @bentoml.api
    def events(
        self,
        events: Annotated[list[dict[str, Any]] | None, Field(max_length=10_000, description="a batch of events")] = None,
        user_id: str | None = None,
        item_id: str | None = None,
        ts: int | str | None = None,
        event: str | None = None,
        value: float | None = None,
    ) -> dict:
        """Accept one event (fields at the top level) or a batch (`events: [...]`), all or nothing.

        Each event: user_id, item_id, ts (unix seconds or ISO-8601; default now), event, value.
        """
        raw = events if events is not None else [{"user_id": user_id, "item_id": item_id, "ts": ts, "event": event, "value": value}]
        if not raw:
            raise InvalidArgument("no events given")
        try:
            parsed = parse_events(raw, self.known_items)
        except EventRejected as e:
            raise InvalidArgument(json.dumps({"accepted": 0, "rejected": e.reasons})) from None
        by_user: dict[str, list] = {}
        for e in parsed:
            by_user.setdefault(e.user_id, []).append(e)
        with self.event_log.locked():  # read-modify-write of each user's sequence is serialised
            self.event_log.append(parsed)
            rows = []
            for user, evs in by_user.items():
                state = online_user_behaviour(self.store, [user])[0]
                new = merge_behaviour(state, evs, self.history_len, self.cat_vectors, len(self.categories), *self.half_lives)
                rows.append({"user_id": user, "event_timestamp": pd.Timestamp(new["last_event_ts"], unit="s", tz="UTC"), **new})
            self.store.write_to_online_store("user_behaviour", pd.DataFrame(rows))
        return {"accepted": len(parsed), "users": sorted(by_user)}

    @bentoml.api
    def items(
        self,
        items: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=1_000, description="items to add or update")],
    ) -> dict:
        """Upsert items (item_id, title, text, categories): encoded with the packaged encoder and
        recommendable at once by their text; recorded for the next pipeline run."""
        bad = [{"index": i, "reason": "item_id and text are required"} for i, it in enumerate(items)
               if not isinstance(it, dict) or not str(it.get("item_id") or "").strip() or not str(it.get("text") or "").strip()]
        if bad:
            raise InvalidArgument(json.dumps({"accepted": 0, "rejected": bad}))
        rows = [{"item_id": str(it["item_id"]).strip(), "title": str(it.get("title") or it["item_id"]), "text": str(it["text"]),
                 "categories": [str(c) for c in (it.get("categories") or [])]} for it in items]
        if self._encoder is None:
            self._encoder = TextEncoder(self.encoder_name)
        vectors = torch.as_tensor(self._encoder.encode([r["text"] for r in rows], progress=False))
        with self.event_log.locked():
            self.items_log.append(rows)
            new = self.engine.upsert_items([r["item_id"] for r in rows], [r["title"] for r in rows], vectors)
            self.known_items.update(r["item_id"] for r in rows)
            frame = pd.DataFrame({"item_id": [r["item_id"] for r in rows], "categories": [r["categories"] for r in rows]})
            self.cat_vectors.update(category_matrix(frame, self.categories))
        return {"accepted": len(rows), "new": new, "updated": sorted({r["item_id"] for r in rows} - set(new))}
