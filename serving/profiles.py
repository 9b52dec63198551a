"""The profile of each recommended item, from Feast's online store: what ``/recommend`` shows beside the score.

The ``features`` stage materializes ``item_profile`` (categories, all-time and recent popularity as
of its snapshot) for every catalogue item; the service reads it through the feature service
``item_profile_v1`` (``features/store.py``), so the feature list is the registry's, not a list here.
A response reads only its own k items (a batch of responses: theirs), in one batched online read,
never the whole catalogue (measured on the 2-core machine, local SQLite store: 0.5 ms p50 for 10
items, beside 0.2 ms for the user's behaviour row).

Profiles change only when the ``features`` stage materializes a new snapshot, so each worker keeps
the ones it read for ``PULSE_PROFILE_TTL`` seconds (default 30; 0: read every time): under load the
read was a tenth of a ``/recommend``'s CPU (docs/deploying.md), and a new snapshot shows within the TTL.

A profile never fails a recommendation: an item the store lacks (posted through ``/items`` after
the last materialization) gets null features, and a registry without the service (a repo applied
before it existed) or a failing read gives ``profile: null``, logged, with the items still served.
"""
from __future__ import annotations

import logging
import time

from features.rows import ServiceRows
from features.store import ITEM_SERVICE, item_service, online_item_profiles
from serving.env import number_from_env

log = logging.getLogger(__name__)

TTL_ENV = "PULSE_PROFILE_TTL"


def profile_ttl_from_env(default: float = 30.0) -> float:
    """``PULSE_PROFILE_TTL``: seconds a worker keeps an item profile it read (0: none kept)."""
    return number_from_env(TTL_ENV, default, "a number of seconds >= 0")


class ItemProfiles:
    """The ``item_profile_v1`` rows of recommended items, with the feature service resolved once:
    resolving it from the registry costs more than the read itself (as for ``OnlineBehaviour``)."""

    def __init__(self, store, ttl_s: float = 0.0, clock=time.monotonic) -> None:
        self.store, self.ttl_s, self.clock = store, ttl_s, clock
        self.rows = self._resolve(store)
        self._kept: dict[str, tuple[float, dict | None]] = {}  # item id -> (read at, profile); one writer: the scoring thread

    @staticmethod
    def _resolve(store) -> ServiceRows | None:
        """The feature service's rows, or None (logged) when the registry lacks it: the service still
        starts and recommends, without profiles, until a ``features`` run registers it."""
        try:
            return ServiceRows(store, item_service(store))
        except Exception as e:
            log.warning("no feature service %s in the Feast registry (%s: %s): /recommend items carry profile null "
                        "until a `features` run applies it and the service restarts", ITEM_SERVICE, type(e).__name__, e)
            return None

    def read(self, item_ids: list[str]) -> list[dict | None]:
        """Each item's profile (None values for an item the store lacks), or None for every item
        when profiles cannot be read now: a recommendation is worth more than its profile. Profiles
        read less than ``ttl_s`` ago are not read again; a failed read is not kept."""
        if self.rows is None or not item_ids:
            return [None] * len(item_ids)
        now = self.clock()
        fresh = {i: kept[1] for i in item_ids if (kept := self._kept.get(i)) is not None and now - kept[0] < self.ttl_s}
        missing = [i for i in dict.fromkeys(item_ids) if i not in fresh]
        if missing:
            try:
                read = online_item_profiles(self.store, missing, self.rows)
            except Exception:
                log.warning("reading the profiles of %d item(s) from the online store failed; answering without them",
                            len(missing), exc_info=True)
                read = [None] * len(missing)
            else:
                if self.ttl_s > 0:
                    if len(self._kept) > 100_000:  # a bound for huge catalogues: start again
                        self._kept = {}
                    self._kept.update((i, (now, p)) for i, p in zip(missing, read))
            fresh.update(zip(missing, read))
        return [fresh[i] for i in item_ids]

    def attach(self, answers: list[list[dict]]) -> list[list[dict]]:
        """Each answer's items (``Engine``'s dicts, with ``item_id``) each with its ``profile``, from
        one online read of every distinct item: a batch of ``/recommend`` (``serving/scoring.py``)
        reads once, not once per request."""
        ids = list(dict.fromkeys(str(i["item_id"]) for items in answers for i in items))
        found = dict(zip(ids, self.read(ids)))
        return [[{**item, "profile": found[str(item["item_id"])]} for item in items] for items in answers]
