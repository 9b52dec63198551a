"""The service's door: an ASGI middleware in front of the API routes, and its one error shape.

``RequestGuard`` (added with ``Recommender.add_asgi_middleware``) runs before BentoML reads a body:

* the write endpoints (``/events``, ``/items``, ``/forget``, ``/reload``) need the API key when
  ``PULSE_API_KEY`` is set: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``, else 401;
* every POST must be ``application/json`` (a body of another type gets 415; a ``text/plain``,
  form or multipart body is what a web page can post cross-site without a preflight, and BentoML
  answered a malformed multipart body with a 500); a body over ``PULSE_MAX_BODY_BYTES`` gets 413;
* with ``PULSE_RATE_LIMIT`` set, each client (its API key, else its IP address) gets that many
  requests per second on average (bursts of twice that), else 429 with ``Retry-After``
  (``serving/ratelimit.py``; off by default, see there why);
* every 4xx answer of those routes, whoever made it (BentoML's pydantic validation, its own
  exceptions, which it wraps in a one-element array, or the service), leaves as one plain JSON
  object ``{"error": "...", "rejected": [...]}`` and is logged at INFO in one line.

BentoML logs every exception of an endpoint at ERROR with a traceback, 4xx included;
``quiet_client_errors`` drops those records for client errors (the guard's INFO line says it).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
from typing import Any, Awaitable, Callable

from serving.env import number_from_env
from serving.ratelimit import RateLimiter, rate_from_env

log = logging.getLogger(__name__)

API_KEY_ENV = "PULSE_API_KEY"
MAX_BODY_ENV = "PULSE_MAX_BODY_BYTES"
DEFAULT_MAX_BODY = 64 * 1024 * 1024  # 1,000 items of 20,000 characters, JSON-escaped, fit
API_PATHS = frozenset({"/recommend", "/events", "/items", "/forget", "/reload"})
PROTECTED_PATHS = frozenset({"/events", "/items", "/forget", "/reload"})
BENTOML_HTTP_LOGGER = "bentoml._internal.server.http_app"
MAX_LOGGED_ERROR = 300

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def error_body(error: str, rejected: list | None = None) -> dict:
    return {"error": error, "rejected": list(rejected or [])}


def bad_request(error: str, rejected: list | None = None, status: int = 400):
    """The response an endpoint returns for a request it rejects (BentoML passes a returned
    starlette Response through as is)."""
    from starlette.responses import JSONResponse

    return JSONResponse(error_body(error, rejected), status_code=status)


def normalise_error(body: bytes) -> dict:
    """Any 4xx body as ``{"error", "rejected"}``: BentoML's ``[{"error": ...}]`` (an exception's
    message in a one-element array), its pydantic ``{"error", "detail": [...]}``, the service's own
    shape, or plain text (starlette's "Method Not Allowed")."""
    try:
        data = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        text = body.decode("utf-8", "replace").strip()
        return error_body(text[:1000] or "bad request")
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
        data = data[0]
    if not isinstance(data, dict):
        return error_body(str(data)[:1000] if data is not None else "bad request")
    rejected = data.get("rejected")
    error = str(data.get("error") or "bad request")
    if rejected is None and isinstance(data.get("detail"), list):  # pydantic's validation errors
        rejected = [{"field": ".".join(str(p) for p in d.get("loc", ())) or "body", "reason": str(d.get("msg", ""))}
                    for d in data["detail"] if isinstance(d, dict)]
        if rejected:
            error = "invalid request: " + "; ".join(f"{r['field']}: {r['reason']}" for r in rejected[:5])
    return error_body(error, rejected if isinstance(rejected, list) else [])


class _ClientErrorFilter(logging.Filter):
    """Drops BentoML's ERROR-with-traceback record of an exception that became a 4xx."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info and record.exc_info[1] is not None else None
        if exc is None:
            return True
        from pydantic import ValidationError

        from bentoml.exceptions import BentoMLException

        if isinstance(exc, ValidationError):
            return False
        if isinstance(exc, BentoMLException) and int(getattr(exc.error_code, "value", exc.error_code)) < 500:
            return False
        return True


_FILTER = _ClientErrorFilter()


def quiet_client_errors() -> None:
    """Install the filter on BentoML's HTTP app logger (idempotent)."""
    logger = logging.getLogger(BENTOML_HTTP_LOGGER)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


def api_key_from_env() -> str | None:
    return os.environ.get(API_KEY_ENV) or None


def max_body_from_env() -> int:
    """``PULSE_MAX_BODY_BYTES``: the largest request body accepted (413 above it)."""
    return int(number_from_env(MAX_BODY_ENV, DEFAULT_MAX_BODY, "a number of bytes >= 1", low=1.0))


class RequestGuard:
    """Pure ASGI middleware: authentication, a rate limit, JSON-only bodies, a body size limit, one error shape."""

    def __init__(self, app: Callable, api_key: str | None = None, max_body_bytes: int | None = None,
                 api_paths: frozenset[str] = API_PATHS, protected_paths: frozenset[str] = PROTECTED_PATHS,
                 from_env: bool = True, limiter: RateLimiter | None = None) -> None:
        self.app = app
        self.limiter = limiter if limiter is not None else RateLimiter(rate_from_env() if from_env else 0.0)
        self.api_key = api_key if api_key is not None or not from_env else api_key_from_env()
        self.max_body = max_body_bytes if max_body_bytes is not None else (max_body_from_env() if from_env else DEFAULT_MAX_BODY)
        self.api_paths, self.protected = api_paths, protected_paths
        quiet_client_errors()

    def authorized(self, headers: dict[str, str]) -> bool:
        if not self.api_key:
            return True
        given = headers.get("x-api-key")
        auth = headers.get("authorization", "")
        if given is None and auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        return given is not None and hmac.compare_digest(given.encode(), self.api_key.encode())

    @staticmethod
    def client_of(scope: Scope, headers: dict[str, str]) -> str:
        """Whom a request counts against: its API key when it sends one (so clients behind one
        proxy are told apart), else the peer address."""
        auth = headers.get("authorization", "")
        key = headers.get("x-api-key") or (auth[7:].strip() if auth[:7].lower() == "bearer " else "")
        if key:
            return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]  # no key kept in memory as sent
        client = scope.get("client") or ("unknown", 0)
        return "ip:" + str(client[0])

    def check(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str, dict[str, str]] | None:
        """The rejection (status, reason, extra headers) of a request, or None to let it through."""
        path = scope["path"]
        if path in self.protected and not self.authorized(headers):
            return 401, (f"{path} needs the API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>' "
                         f"(the key is the server's {API_KEY_ENV})"), {"www-authenticate": "Bearer"}
        wait = self.limiter.allow(self.client_of(scope, headers))
        if wait > 0:
            return 429, (f"too many requests: this client may make {self.limiter.rate:g} per second "
                         f"(bursts of {self.limiter.burst:g}); retry after {wait:.2f} s"), {"retry-after": str(max(1, math.ceil(wait)))}
        if scope["method"] != "POST":
            return None
        length = headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                return 400, f"invalid Content-Length '{length[:40]}'", {}
            if int(length) > self.max_body:
                return 413, f"request body of {int(length):,} bytes is over the limit of {self.max_body:,} ({MAX_BODY_ENV})", {}
        ctype = headers.get("content-type", "")
        media = ctype.split(";")[0].strip().lower()
        has_body = (length is not None and int(length) > 0) or "transfer-encoding" in headers
        if media != "application/json" and (media or has_body):
            return 415, f"Content-Type must be application/json (got '{ctype[:80] or 'none'}')", {}
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.api_paths:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        rejection = self.check(scope, headers)
        if rejection is not None:
            status, reason, extra = rejection
            log.info("rejected %s %s: %d %s", scope["method"], scope["path"], status, reason)
            await _send_json(send, status, error_body(reason), extra)
            return
        if scope["method"] == "POST" and "content-length" not in headers:  # chunked: the limit is counted, not declared
            messages, over = await self._read_bounded(receive)
            if over:
                reason = f"request body over the limit of {self.max_body:,} bytes ({MAX_BODY_ENV})"
                log.info("rejected %s %s: 413 %s", scope["method"], scope["path"], reason)
                await _send_json(send, 413, error_body(reason))
                return
            receive = _replaying(messages, receive)
        await self.app(scope, receive, self._normalising(scope, send))

    async def _read_bounded(self, receive: Receive) -> tuple[list[Message], bool]:
        """The messages of a body sent without ``Content-Length``, read up to the limit: (what was
        read, whether it went over). Without this, a chunked body was read whole whatever its size."""
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":  # the client went away
                return messages, False
            size += len(message.get("body", b""))
            if size > self.max_body:
                return messages, True
            if not message.get("more_body", False):
                return messages, False

    def _normalising(self, scope: Scope, send: Send) -> Send:
        """``send`` that passes 2xx/3xx/5xx through and rewrites a 4xx body into the one shape."""
        held: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
                held["start"] = message
                return
            if "start" not in held or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            start = held.pop("start")
            body = normalise_error(b"".join(chunks))
            error = body["error"] if len(body["error"]) <= MAX_LOGGED_ERROR else body["error"][:MAX_LOGGED_ERROR] + "..."
            log.info("bad request %s %s: %d %s%s", scope["method"], scope["path"], start["status"],
                     " ".join(error.split()), f" ({len(body['rejected'])} rejected)" if body["rejected"] else "")
            keep = [(k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-length", b"content-type")]
            await _send_json(send, start["status"], body, raw_headers=keep)

        return wrapped


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` that gives ``messages`` (already read) first, then what ``receive`` gives."""
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()
    return replayed


async def _send_json(send: Send, status: int, body: dict, extra: dict[str, str] | None = None,
                     raw_headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body).encode()
    headers = list(raw_headers or []) + [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (extra or {}).items()]
    headers += [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
