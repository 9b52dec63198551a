"""Request validation for every endpoint: ids, text sizes, the event time window, HTML-safe text,
and the all-or-nothing batch parsers of ``/events`` (``parse_events``) and ``/items`` (``parse_items``).
A request they reject raises ``BadRequest``, whose ``error`` and ``rejected`` the endpoint answers as its 400.

One definition of a valid id for the whole service (``/recommend``, ``/events``, ``/items``): a
string (an integer is taken as its decimal string) of at most ``MAX_ID_LEN`` printable characters,
not blank. Printable means ``str.isprintable``: no control characters (NUL, newline, tab, ESC ...),
which would otherwise end up in the logs and in ids ``/recommend`` could never be asked for.
"""
from __future__ import annotations

import html
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from core.eventlog import Event
from core.schema import parse_timestamps
from serving.env import number_from_env

log = logging.getLogger(__name__)

MAX_ID_LEN = 256
MAX_TITLE_LEN = 500
MAX_TEXT_LEN = 20_000
MAX_CATEGORIES = 50
MAX_EVENTS = 10_000  # per /events batch
MAX_ITEMS = 1_000  # per /items batch
SECONDS_PER_DAY = 86_400

AGE_ENV, AHEAD_ENV = "PULSE_MAX_EVENT_AGE_DAYS", "PULSE_MAX_EVENT_AHEAD_DAYS"
DEFAULT_AGE_DAYS, DEFAULT_AHEAD_DAYS = 3650.0, 1.0


class BadRequest(ValueError):
    """A request the service rejects whole, nothing written: ``error`` and ``rejected`` are the body
    of its 400 (``serving.guard.bad_request``)."""

    def __init__(self, error: str, rejected: list[dict] | None = None) -> None:
        super().__init__(error)
        self.error, self.rejected = error, list(rejected or [])


class Rejected(BadRequest):
    """A batch of ``total`` entries with at least one bad one: nothing of it was written.
    ``reasons``: one ``{"index", "reason"}`` per bad entry."""

    what = "entry"

    def __init__(self, reasons: list[dict], total: int) -> None:
        super().__init__(f"{len(reasons)} of {total} {self.what}(s) rejected, none written", reasons)
        self.reasons = reasons

    def __str__(self) -> str:
        return "; ".join(f"{self.what} {r['index']}: {r['reason']}" for r in self.reasons)


def id_problem(value: Any, name: str) -> str | None:
    """Why ``value`` is not a valid id (``None`` when it is)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return f"missing {name}"
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return f"{name} must be a string"
    s = str(value).strip()
    if len(s) > MAX_ID_LEN:
        return f"{name} is longer than {MAX_ID_LEN} characters ({len(s)})"
    if not s.isprintable():
        return f"{name} has control or non-printable characters"
    return None


def _given(value: Any) -> bool:
    """A field is given unless it is missing, null or blank (``0`` and ``False`` are given)."""
    return value is not None and str(value).strip() != ""


def text_problem(value: Any, name: str, max_len: int, required: bool = False) -> str | None:
    """Why ``value`` is not an acceptable text field of at most ``max_len`` characters."""
    if value is None or value == "":
        return f"missing {name}" if required else None
    if not isinstance(value, str):
        return f"{name} must be a string"
    if required and not value.strip():
        return f"missing {name}"
    if len(value) > max_len:
        return f"{name} is longer than {max_len:,} characters ({len(value):,})"
    if "\x00" in value:
        return f"{name} has a NUL character"
    return None


def safe_text(s: str, quote: bool = True) -> str:
    """HTML-escaped text (``<``, ``>``, ``&``; quotes too unless ``quote=False``), so a title
    posted as ``<script>...`` is stored and served as inert text."""
    return html.escape(s, quote=quote)


@dataclass(frozen=True)
class TimeWindow:
    """Accepted event times: from ``max_age_days`` before now to ``ahead_days`` after it."""

    max_age_days: float = DEFAULT_AGE_DAYS
    ahead_days: float = DEFAULT_AHEAD_DAYS

    @classmethod
    def from_env(cls) -> "TimeWindow":
        return cls(number_from_env(AGE_ENV, DEFAULT_AGE_DAYS, "a number of days >= 0"),
                   number_from_env(AHEAD_ENV, DEFAULT_AHEAD_DAYS, "a number of days >= 0"))

    def bounds(self, now: int) -> tuple[int, int]:
        return int(now - self.max_age_days * SECONDS_PER_DAY), int(now + self.ahead_days * SECONDS_PER_DAY)


def parse_items(raw: list[Any]) -> list[dict]:
    """All-or-nothing validation of an ``/items`` batch; returns rows ready to store (title and
    text HTML-escaped) or raises ``ItemsRejected`` with every reason."""
    rows, reasons = [], []
    for i, it in enumerate(raw):
        if not isinstance(it, dict):
            reasons.append({"index": i, "reason": "not a JSON object"})
            continue
        if not _given(it.get("item_id")) or not _given(it.get("text")):  # (an id 0 is given: "0")
            reasons.append({"index": i, "reason": "item_id and text are required"})
            continue
        why = [p for p in (id_problem(it.get("item_id"), "item_id"),
                           text_problem(it.get("text"), "text", MAX_TEXT_LEN, required=True),
                           text_problem(it.get("title"), "title", MAX_TITLE_LEN)) if p]
        cats = it.get("categories")
        if cats is not None and not isinstance(cats, list):
            why.append("categories must be a list of strings")
        elif cats:
            if len(cats) > MAX_CATEGORIES:
                why.append(f"more than {MAX_CATEGORIES} categories ({len(cats)})")
            bad = [p for p in (id_problem(c, "category") for c in cats) if p]
            if bad:
                why.append(bad[0])
        if why:
            reasons.append({"index": i, "reason": ", ".join(why)})
            continue
        item_id = str(it["item_id"]).strip()
        # the title is served (in any HTML context: quotes too); the text is only stored and
        # encoded, so its apostrophes and quotes stay readable for the encoder
        rows.append({"item_id": item_id, "title": safe_text(str(it.get("title") or item_id)),
                     "text": safe_text(it["text"], quote=False), "categories": [str(c).strip() for c in cats or []]})
    if reasons:
        raise ItemsRejected(reasons, len(raw))
    return rows


class ItemsRejected(Rejected):
    what = "item"


class EventRejected(Rejected):
    """A batch with at least one bad event: nothing of it was written."""

    what = "event"


def _short(v: object, n: int = 40) -> str:
    s = str(v)
    return s if len(s) <= n else s[:n] + "..."


def parse_events(raw: list[dict], known_items: set[str], now: int | None = None, window: TimeWindow | None = None) -> list[Event]:
    """All-or-nothing validation of a batch: every reason is reported, or every event is returned.

    Ids follow ``id_problem``; ``ts`` (unix seconds or ISO-8601, default now)
    must fall inside ``window`` around now; ``value`` must be a finite number.
    """
    now = int(datetime.now(timezone.utc).timestamp()) if now is None else now
    bounds = (window or TimeWindow()).bounds(now)
    out, reasons = [], []
    for i, e in enumerate(raw):
        if not isinstance(e, dict):
            reasons.append({"index": i, "reason": "not a JSON object"})
            continue
        ts, why = _event_time(e.get("ts"), now, bounds)
        why = _id_problems(e, known_items) + why + _value_and_kind_problems(e.get("value"), e.get("event"))
        if why:
            reasons.append({"index": i, "reason": ", ".join(why)})
        else:
            kind, value = e.get("event"), e.get("value")
            out.append(Event(str(e["user_id"]).strip(), str(e["item_id"]).strip(), int(ts),
                             str(kind).strip() if _given(kind) else "interaction", None if value is None else float(value)))
    if reasons:
        raise EventRejected(reasons, len(raw))
    return out


def _id_problems(e: dict, known_items: set[str]) -> list[str]:
    """What is wrong with an event's user and item ids (an item must be known)."""
    why = [p for p in (id_problem(e.get("user_id"), "user_id"), id_problem(e.get("item_id"), "item_id")) if p]
    item = str(e["item_id"]).strip() if _given(e.get("item_id")) else ""
    if not any("item_id" in w for w in why) and item not in known_items:
        why.append(f"unknown item_id '{_short(item)}'")
    return why


def _event_time(ts: Any, now: int, bounds: tuple[int, int]) -> tuple[int | None, list[str]]:
    """An event's ``ts`` as unix seconds (``now`` when not given), or ``None`` and what is wrong with it."""
    if ts is None:
        return now, []
    if isinstance(ts, bool) or not isinstance(ts, (int, float, str)) or (isinstance(ts, float) and not math.isfinite(ts)):
        return None, [f"unparsable ts '{_short(ts)}': unix seconds or ISO-8601 expected"]
    # the same parser as ingest: unix seconds (number or numeric string) or ISO-8601;
    # whole unix seconds in range, the common case, skip the pandas parse (~1.5 ms of an event's ~5)
    parsed = ts if isinstance(ts, int) and abs(ts) < 1e11 else parse_timestamps(pd.Series([ts], dtype=object)).iloc[0]
    if not isinstance(parsed, int) and pd.isna(parsed):
        return None, [f"unparsable ts '{_short(ts)}'"]
    seconds = parsed if isinstance(parsed, int) else int(parsed.timestamp())
    lo, hi = bounds
    if not lo <= seconds <= hi:
        return seconds, [f"ts {seconds} is outside the accepted window {_iso(lo)} .. {_iso(hi)} ({AGE_ENV} back, {AHEAD_ENV} ahead)"]
    return seconds, []


def _value_and_kind_problems(value: Any, kind: Any) -> list[str]:
    """What is wrong with an event's ``value`` (a finite number, optional) and ``event`` (like an id, optional)."""
    why = []
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            why.append("value must be a number")
        elif not math.isfinite(value):
            why.append("value must be a finite number (not NaN or Infinity)")
    if kind is not None and kind != "" and (p := id_problem(kind, "event")):
        why.append(p)
    return why


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
