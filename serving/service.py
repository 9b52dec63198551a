"""The pulse HTTP service: `POST /recommend` (and BentoML's own /healthz, /readyz, /metrics).

The user's behaviour is read from Feast's online store at request time, so what the store
holds now is what the recommendation reflects.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import bentoml
from bentoml.exceptions import InvalidArgument
from pydantic import Field

from features.store import get_store, online_user_behaviour
from models.inference import Recommender as Engine

log = logging.getLogger(__name__)

MODEL_TAG = os.environ.get("PULSE_MODEL_TAG", "pulse-recommender:latest")


@bentoml.service(traffic={"timeout": 30})
class Recommender:
    model_ref = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        meta = self.model_ref.info.metadata
        self.engine = Engine(Path(self.model_ref.path), meta["selected"], int(meta.get("max_len", 50)))
        self.store = get_store(Path(os.environ.get("PULSE_FEATURE_REPO", meta["feature_repo"])))
        log.info("serving %s (%s)", self.model_ref.tag, meta["selected"])

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
