"""Signals between every process of every replica that shares one Redis online store.

With the online store on Redis (``PULSE_ONLINE_STORE``), user state is already shared: an event
written by one process is in every other's next read. What each process holds in memory is not:
the model version (``/reload``) and the items posted through ``/items``. ``Broadcast`` publishes
those changes on a Redis pub/sub channel and a daemon thread in each process applies what the
others published, so a ``/reload`` or an ``/items`` call on one worker of one replica reaches all.

Pub/sub is at most once: a process that is down (or disconnected) when a message is sent misses
it. A restarted process serves ``<name>:latest`` anyway; an item it missed reaches it at the next
pipeline run (or a later ``/items`` of it). The receiving side is best effort and never raises.
"""
from __future__ import annotations

import json
import logging
import threading
import uuid
from typing import Any, Callable

log = logging.getLogger(__name__)

CHANNEL = "pulse:service-signals"


class Broadcast:
    """Publish ``{"kind", ...}`` messages to the other processes; hand theirs to ``handlers[kind]``."""

    def __init__(self, client: Any, handlers: dict[str, Callable[[dict], Any]], channel: str = CHANNEL) -> None:
        self.client = client
        self.handlers = handlers
        self.channel = channel
        self.sender = uuid.uuid4().hex  # this process: its own messages are not applied twice
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.received = 0
        self.thread: threading.Thread | None = None

    def publish(self, kind: str, **payload: Any) -> int:
        """Send to every subscribed process (this one ignores its own); returns how many got it
        (0 on a Redis error, which is logged: the change stays local)."""
        try:
            return int(self.client.publish(self.channel, json.dumps({"kind": kind, "from": self.sender, **payload})))
        except Exception as e:  # noqa: BLE001 (the request that changed this process succeeded: report, do not fail it)
            log.warning("could not broadcast %s to the other service processes: %s", kind, e)
            return 0

    def handle(self, raw: bytes | str) -> bool:
        """Apply one message of another process; returns whether a handler ran."""
        try:
            msg = json.loads(raw)
        except ValueError:
            log.warning("ignored a malformed message on %s", self.channel)
            return False
        if not isinstance(msg, dict) or msg.get("from") == self.sender or msg.get("kind") not in self.handlers:
            return False
        try:
            self.handlers[msg["kind"]](msg)
        except Exception:  # noqa: BLE001 (the listener must survive any one bad message)
            log.exception("applying a %s broadcast failed", msg.get("kind"))
            return False
        self.received += 1
        return True

    def _listen(self) -> None:
        backoff = 0.5
        while not self.stop.is_set():
            pubsub = None
            try:
                pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                self.ready.set()
                backoff = 0.5
                while not self.stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message and message.get("type") == "message":
                        self.handle(message["data"])
            except Exception as e:  # noqa: BLE001 (Redis restarted, network): resubscribe after a pause
                self.ready.clear()
                log.warning("broadcast listener lost Redis (%s); resubscribing in %.1f s", e, backoff)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # noqa: BLE001
                        pass

    def start(self, wait_s: float = 10.0) -> "Broadcast":
        self.thread = threading.Thread(target=self._listen, name="pulse-broadcast", daemon=True)
        self.thread.start()
        if not self.ready.wait(wait_s):
            log.warning("broadcast listener not subscribed after %.0f s; it keeps trying", wait_s)
        return self

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(5)
