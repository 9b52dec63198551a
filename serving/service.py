"""The pulse HTTP service: `POST /recommend`, `/events`, `/items`, `/forget`, `/reload` (and BentoML's /healthz, /readyz, /metrics).

The user's behaviour is read from Feast's online store at request time, and `/events` writes
it there (after appending to the durable event log), so an accepted event changes the very
next recommendation with no retraining. Everything tied to the model version lives in one
``ServingState`` that `/reload` (or the watcher, every ``PULSE_RELOAD_INTERVAL`` seconds)
replaces whole, so a newly packaged model goes live without a restart or a failed request.
At start the event log is replayed into the online store, so an event logged by a process that
was killed before its online write is not missing there.

With ``PULSE_ONLINE_STORE=redis://...`` every worker of every replica reads and writes one online
store; read-modify-writes of user rows take a Redis lock as well as the event log's file lock,
and ``/reload`` and ``/items`` are broadcast to the other processes (``serving/broadcast.py``).
With ``PULSE_EVENT_LOG=redis://...`` the event log and the items log are Redis streams that every
replica shares (``core/streamlog.py``), so the next ingest reads every replica's events.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from pathlib import Path
from typing import Annotated, NamedTuple

import bentoml
from pydantic import Field

from core.streamlog import logs_from_env
from features.online import BehaviourSpec
from features.store import OnlineBehaviour, get_store
from serving.broadcast import Broadcast
from serving.event_writer import EventWriter, bulk_share_from_env
from serving.profiles import ItemProfiles, profile_ttl_from_env
from serving.settings import REQUIRE_KEY_ENV, check_settings, reload_interval_from_env, required_key
from serving.guard import (API_KEY_ENV, PROTECTED_PATHS, RequestGuard, api_key_from_env, bad_request, max_body_from_env,
                           quiet_client_errors)
from serving.requests import Events, Items, OneItemId, OneKind, OneTs, OneUserId, OneValue, as_dict, event_dicts
from serving.validate import BadRequest, TimeWindow, id_problem, parse_events, parse_items
from serving.schemas import (EventsResponse, ForgetResponse, ItemsResponse, PulseService, RecommendResponse, ReloadResponse,
                             answer)
from serving.scoring import Ask, Batcher, Scorer, linger_from_env, max_batch_from_env, recommend_all, torch_threads_from_env
from serving.state import (ENCODER_CACHE, ServingState, apply_logged_items, exempt_from_gc, load_state, online_half_lives,
                           online_history_len, start_watcher)

log = logging.getLogger(__name__)

MODEL_TAG = os.environ.get("PULSE_MODEL_TAG", "pulse-recommender:latest")
WORKERS_ENV = "PULSE_WORKERS"  # API worker processes (default 1)


def workers_from_env() -> int:
    """``PULSE_WORKERS``: how many API worker processes BentoML starts (each scores on one torch
    thread, so about one per core); SystemExit with the reason for anything but a whole number >= 1."""
    raw = (os.environ.get(WORKERS_ENV) or "1").strip()
    if not raw.isdigit() or int(raw) < 1:
        raise SystemExit(f"{WORKERS_ENV}={raw!r}: expected a whole number of API worker processes, 1 or more")
    return int(raw)


TRACING_ENV = "PULSE_TRACING"  # 1: BentoML's OpenTelemetry spans for the API routes as well
API_ROUTES = ("/recommend", "/events", "/items", "/forget", "/reload")


def tracing_from_env() -> dict:
    """BentoML's tracing settings: the API routes are left out of its OpenTelemetry middleware
    unless ``PULSE_TRACING`` is 1 (for an operator who exports traces: BentoML's ``tracing``
    exporter settings). Why: without an exporter the spans go nowhere, yet creating them (one per
    request and one per response message) cost about 1 ms of CPU of the ~5 of an ``/events`` on
    the 2-core machine (docs/deploying.md, "Workers and load")."""
    if os.environ.get(TRACING_ENV, "").strip().lower() in ("1", "true", "yes"):
        return {}
    return {"excluded_urls": list(API_ROUTES)}


PROJECT_DIR_ENV = "PULSE_PROJECT_DIR"  # what relative paths of the model's metadata are relative to (default: the working directory)


def served_path(path: str) -> Path:
    """A path of the model's metadata (relative to the project) or of the environment: a relative
    one is resolved against ``PULSE_PROJECT_DIR``, else the working directory (``make serve``'s is
    the project)."""
    p = Path(path)
    return p if p.is_absolute() else Path(os.environ.get(PROJECT_DIR_ENV) or ".").resolve() / p


def show_service_logs() -> None:
    """BentoML's worker logging keeps only WARNING and above outside its own loggers; the
    service's INFO lines (which key config, which model, each bad request in one line) are part
    of operating it, so the ``serving`` loggers pass INFO to its handler."""
    logger = logging.getLogger("serving")
    logger.disabled = False
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)


def check_api_key_config() -> None:
    """Refuse to start without a key where one is required (the Bento); warn when the write
    endpoints are open (local ``make serve``)."""
    if api_key_from_env():
        log.info("%s is set: %s need it", API_KEY_ENV, ", ".join(sorted(PROTECTED_PATHS)))
        return
    if os.environ.get(REQUIRE_KEY_ENV, "").strip().lower() in ("1", "true", "yes"):
        try:
            required_key()
        except ValueError as e:
            raise RuntimeError(str(e)) from None
    log.warning("%s is not set: the write endpoints %s are open to anyone who can reach this port "
                "(fine for a local `make serve` on 127.0.0.1, never for a shared host)", API_KEY_ENV, ", ".join(sorted(PROTECTED_PATHS)))


def interest_view(switch: dict | None, recent_shares: list[float] | None, categories: list[str], top: int = 3) -> dict:
    """The user's short-term interest as the response shows it: whether the switch gate sees a
    change of interest (``in_switch``, its ``gate`` and ``evidence``, the ``recent_items`` that
    moved it; null for a model without the gate) and the top categories of the recent category mix
    (the online store's ``cat_share_recent``, decayed per event)."""
    shares = list(recent_shares or [])
    order = sorted(range(len(shares)), key=lambda i: -shares[i])[:top] if len(shares) == len(categories) else []
    return {**(switch or {"in_switch": None}),
            "recent_categories": [{"category": categories[i], "share": round(float(shares[i]), 3)} for i in order if shares[i] > 0]}


def items_answer(rows: list[dict], new: list[str], engine) -> ItemsResponse:  # noqa: ANN001 (models.inference.Engine)
    """The ``/items`` answer: which ids were new, which updated, and whether the served model ranks
    them by their text now (else a note says when they become recommendable)."""
    out = {"accepted": len(rows), "new": new, "updated": sorted({r["item_id"] for r in rows} - set(new)),
           "ranked_by_text_now": engine.ranks_by_text}
    if not engine.ranks_by_text:
        out["note"] = (f"the served model ({engine.model_name}) has no text representation: new items are stored and "
                       "can be used in events, and become recommendable after the next pipeline run")
    return ItemsResponse.model_validate(out)


class RecommendAsk(NamedTuple):
    """One ``/recommend`` waiting for the scoring thread, with the serving state it took."""

    user_id: str
    k: int
    exclude_seen: bool
    serving: ServingState


check_settings()  # before BentoML starts anything: a bad PULSE_* value stops `bentoml serve` with its reason


@bentoml.service(workers=workers_from_env(), traffic={"timeout": 30}, tracing=tracing_from_env(),
                 service_class=PulseService)  # PulseService: the OpenAPI title and error bodies
class Recommender:
    """The BentoML service. Its name is the public entry point ``serving.service:Recommender``
    (bentofile.yaml, ``make serve``, packaged Bentos); the scoring itself is ``models.inference.Engine``."""

    model_ref = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        show_service_logs()
        check_api_key_config()
        quiet_client_errors()
        self.window = TimeWindow.from_env()
        self.scorer = Scorer(torch_threads_from_env())
        self.batcher = Batcher(self.scorer, self._answer_many, max_batch_from_env(), linger_from_env())
        model = self.model_ref  # resolved: the stored model, with its concrete version
        meta = model.info.metadata
        self.model_name = model.tag.name
        repo = served_path(os.environ.get("PULSE_FEATURE_REPO") or meta["feature_repo"])
        self.online = OnlineBehaviour(get_store(repo))  # feature service and view resolved once, not per request
        # /recommend reads on the scoring thread while /events writes on a request thread: its own store, so
        # its own SQLite connection, which sees committed rows only (one shared connection sees a write half done)
        self.reader = OnlineBehaviour(get_store(repo))
        self.profiles = ItemProfiles(self.reader.store, profile_ttl_from_env())  # item_profile_v1, shown with each recommended item
        # $PULSE_EVENT_LOG, read once here: a file per replica (default: the metadata's) or Redis streams all share
        self.logs = logs_from_env(served_path(meta["event_log"]), served_path)
        self.event_log, self.items_log = self.logs.events, self.logs.items
        self.encoder_cache = self.logs.local_dir / ENCODER_CACHE
        self.history_len = online_history_len(meta)
        self.half_lives = online_half_lives(meta)
        self.categories = json.loads((repo / "data" / "categories.json").read_text())
        with self.event_log.locked():  # a torn last line of the items log (never acknowledged) is cut, other bad lines skipped
            self.items_log.repair()
        self.state: ServingState = load_state(model, self.categories, self.items_log, self.encoder_cache)
        self._reload_lock = threading.Lock()
        self.writer = EventWriter(self.event_log, self.online, self._spec, run_chunk=lambda fn: self.scorer.submit(fn).result(),
                                  bulk_share=bulk_share_from_env())
        self.writer.replay()
        start_watcher(self.reload_model, reload_interval_from_env())
        # a shared (Redis) online store: /reload and /items reach every process of every replica
        self.broadcast = Broadcast(self.online.redis(), {"reload": lambda _msg: self.reload_model(),
                                                          "items": self._items_from_elsewhere}).start() \
            if self.online.shared else None
        if workers_from_env() > 1 and self.broadcast is None:
            log.warning("%s=%d on an online store the workers do not share news on: /items and /reload reach only the "
                        "worker that receives them (set PULSE_ONLINE_STORE=redis://..., or PULSE_RELOAD_INTERVAL for reloads)",
                        WORKERS_ENV, workers_from_env())
        log.info("serving %s (%s); online store %s; event log %s; scoring on one thread with %d torch thread(s), "
                 "up to %d request(s) a pass", self.state.tag, meta["selected"], self.online.store.config.online_store.type,
                 self.event_log.name, self.scorer.threads, self.batcher.max_batch)
        exempt_from_gc()

    def reload_model(self) -> dict:
        """Serve `<name>:latest` from the model store if it is not the version being served.

        The new state is built off to the side and swapped in with one assignment (under the log
        lock, after re-applying items posted while it loaded), so in-flight requests finish on the
        old one. Any error leaves the old one serving and is reported, not raised.
        """
        with self._reload_lock:  # the endpoint and the watcher: one reload at a time
            current = self.state.tag
            try:
                model = bentoml.models.get(f"{self.model_name}:latest")
                if str(model.tag) == current:
                    return {"reloaded": False, "model_tag": current, "previous_tag": current, "reason": "already serving the latest"}
                new = load_state(model, self.categories, self.items_log, self.encoder_cache)
                with self.event_log.locked():
                    apply_logged_items(new, self.items_log, self.categories)
                    self.state = new
                exempt_from_gc()
            except Exception as e:
                log.exception("reload of %s:latest failed; still serving %s", self.model_name, current)
                return {"reloaded": False, "model_tag": current, "previous_tag": current, "reason": f"{type(e).__name__}: {e}"}
        log.info("reloaded: serving %s (was %s)", new.tag, current)
        return {"reloaded": True, "model_tag": new.tag, "previous_tag": current}

    def _spec(self) -> BehaviourSpec:
        return BehaviourSpec(self.history_len, self.state.cat_vectors, len(self.categories), *self.half_lives)

    @bentoml.api
    async def recommend(
        self,
        user_id: Annotated[str, Field(min_length=1, max_length=256, description="user id", examples=["u00001"])],
        # strict: `"5"`, `5.0`, `0` or `"yes"` are not what the schema declares (pydantic's lax mode took them)
        k: Annotated[int, Field(ge=1, le=100, strict=True, description="how many items", examples=[5])] = 10,
        exclude_seen: Annotated[bool, Field(strict=True, description="leave out items the user already has", examples=[True])] = True,
    ) -> RecommendResponse:
        """Top-k items for the user, each with its profile (categories, popularity) from the online
        store, and the past behaviours that weighed most ("because")."""
        if why := id_problem(user_id, "user_id"):
            return bad_request(why, [{"field": "user_id", "reason": why}])
        # async, so that requests waiting for the scoring thread do not hold BentoML's one request
        # thread: they queue there together and are read and scored as one batch (serving/scoring.py)
        return await asyncio.wrap_future(self.batcher.submit(RecommendAsk(user_id.strip(), k, exclude_seen, self.state)))

    def _answer_many(self, asks: list[RecommendAsk]) -> list:
        """The ``/recommend`` answers of a batch, on the scoring thread: one online read for all its
        users, one scoring pass per compatible group (``recommend_all``), one read of the recommended
        items' profiles; each answer with its own state's model (one version for the whole request,
        even if a reload swaps it meanwhile)."""
        rows = self.reader.read([a.user_id for a in asks])
        recs = recommend_all([Ask(a.serving.engine, row.get("hist_item_ids") or [], row.get("hist_ts") or [], a.k, a.exclude_seen)
                              for a, row in zip(asks, rows)])
        items = self.profiles.attach([rec.items for rec in recs])
        return [answer(RecommendResponse.model_validate({
            "user_id": a.user_id, "model": a.serving.engine.model_name, "model_tag": a.serving.tag,
            "cold_start": rec.cold_start, "items": its, "because": rec.because,
            "interest": interest_view(rec.switch, row.get("cat_share_recent"), self.categories)}))
            for a, row, rec, its in zip(asks, rows, recs, items)]

    @bentoml.api
    def events(self, events: Events = None, user_id: OneUserId = None, item_id: OneItemId = None, ts: OneTs = None,
               event: OneKind = None, value: OneValue = None) -> EventsResponse:
        """Accept a batch of events (`events: [...]`), all or nothing, or one event with its fields
        at the top level (the shorthand). Each event: user_id, item_id, ts (unix seconds or ISO-8601;
        default now), event, value."""
        try:
            raw = event_dicts(events, {"user_id": user_id, "item_id": item_id, "ts": ts, "event": event, "value": value})
            parsed = parse_events(raw, self.state.known_items, window=self.window)
        except BadRequest as e:  # every reason, with each bad event's index
            return bad_request(e.error, e.rejected)
        return answer(EventsResponse(**vars(self.writer.write(parsed))))

    @bentoml.api
    def forget(self, user_id: Annotated[str, Field(min_length=1, max_length=256, description="the user to forget", examples=["u00001"])]) -> ForgetResponse:
        """Forget a user: their online row is emptied now (the next `/recommend` is a cold start),
        and a tombstone in the event log makes the next pipeline run drop every event of theirs
        up to now from the data, the offline store and the online rows. Events posted later start
        a new history."""
        if why := id_problem(user_id, "user_id"):
            return bad_request(why, [{"field": "user_id", "reason": why}])
        user_id = user_id.strip()
        at, removed = self.writer.forget(user_id)
        log.info("forgot user %s (%d online events removed)", user_id, removed)
        return ForgetResponse(forgotten=user_id, at=at, online_events_removed=removed,
                              note="the user's logged and ingested events are dropped from the data and the feature store at the next pipeline run")

    @bentoml.api
    def items(self, items: Items) -> ItemsResponse:
        """Upsert items (item_id, title, text, categories): encoded with the packaged encoder and
        recommendable at once by their text; recorded for the next pipeline run."""
        try:
            rows = parse_items([as_dict(it) for it in items])  # ids, sizes; title and text HTML-escaped
        except BadRequest as e:
            return bad_request(e.error, e.rejected)
        new, current = self.store_items(rows)
        if self.broadcast is not None:  # the other workers and replicas: encoded and logged by each
            self.broadcast.publish("items", rows=rows)
        return items_answer(rows, new, current.engine)

    def _items_from_elsewhere(self, msg: dict) -> None:
        """Items another worker or replica accepted (validated and escaped there): stored here too,
        and logged here only when each replica keeps a log of its own (a shared one has them already)."""
        new, _ = self.store_items(msg["rows"], log_rows=not self.logs.shared)
        log.info("stored %d item(s) posted to another service process (%d new)", len(msg["rows"]), len(new))

    def store_items(self, rows: list[dict], log_rows: bool = True) -> tuple[list[str], ServingState]:
        """Log validated item rows and make them recommendable in this process: (the new ids, the
        state they went into). ``/items`` and the items broadcast of another process."""
        serving = self.state
        vectors = serving.encode([r["text"] for r in rows])  # outside the lock: the slow part
        with self.event_log.locked():  # a reload swaps the state under this lock too
            if log_rows:
                self.items_log.append(rows)
            current = self.state
            if current.encoder_name != serving.encoder_name:  # swapped meanwhile to another encoder
                vectors = current.encode([r["text"] for r in rows])
            new = current.upsert_items(rows, vectors, self.categories)
        return new, current

    @bentoml.api
    def reload(self) -> ReloadResponse:
        """Serve the newest packaged version of the model now, without dropping a request:
        `{"reloaded": bool, "model_tag", "previous_tag"}`, plus a `reason` when not reloaded.
        On a shared (Redis) online store every other worker and replica is told to do the same."""
        out = self.reload_model()
        if self.broadcast is not None and out.get("reloaded"):
            self.broadcast.publish("reload", model_tag=out["model_tag"])
        return ReloadResponse.model_validate(out)


# before BentoML reads a body: the API key, JSON-only bodies, a size limit, and one error shape for every 4xx
Recommender.add_asgi_middleware(RequestGuard)
