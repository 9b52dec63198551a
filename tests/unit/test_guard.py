"""serving.guard in front of a real (model-free) BentoML service, in process: the API key, JSON-only
bodies, the size limit, one plain error shape for every 4xx, and 4xx logged at INFO in one line."""
from __future__ import annotations

import logging
from typing import Annotated

import bentoml
import pytest
from bentoml.exceptions import InvalidArgument
from pydantic import Field
from starlette.testclient import TestClient

from serving.guard import RequestGuard, bad_request, normalise_error
from serving.validate import parse_items, ItemsRejected

KEY = "s3cret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@bentoml.service
class Toy:
    """The endpoints' names and BentoML's own ways of failing, without a model."""

    @bentoml.api
    def recommend(self, user_id: Annotated[str, Field(min_length=1, max_length=256)], k: Annotated[int, Field(ge=1)] = 10) -> dict:
        if user_id == "raise":
            raise InvalidArgument("user_id must not be raise")  # BentoML answers [{"error": ...}]
        if user_id == "own":
            return bad_request("own reason", [{"index": 0, "reason": "x"}])
        return {"user_id": user_id, "k": k}

    @bentoml.api
    def reload(self) -> dict:
        return {"reloaded": False}

    @bentoml.api
    def events(self, user_id: str = "") -> dict:
        return {"accepted": 1}


Toy.add_asgi_middleware(RequestGuard, api_key=KEY, max_body_bytes=10_000, from_env=False)


@pytest.fixture(scope="module")
def client():
    with TestClient(Toy.to_asgi(), raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize("path", ["/events", "/reload"])
def test_write_endpoints_need_the_key(client, path):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"}, {"Authorization": KEY}):
        r = client.post(path, json={}, headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.json()["rejected"] == [] and "PULSE_API_KEY" in r.json()["error"]
        assert r.headers["www-authenticate"] == "Bearer"
    assert client.post(path, json={}, headers=AUTH).status_code == 200
    assert client.post(path, json={}, headers={"X-API-Key": KEY}).status_code == 200
    assert client.post(path, json={}, headers={"authorization": f"bearer {KEY}"}).status_code == 200


def test_recommend_needs_no_key(client):
    r = client.post("/recommend", json={"user_id": "a"})
    assert r.status_code == 200 and r.json() == {"user_id": "a", "k": 10}


def test_without_a_key_configured_everything_is_open():
    guard = RequestGuard(lambda *a: None, api_key=None, from_env=False)
    assert guard.authorized({}) is True
    assert guard.check({"path": "/events", "method": "POST"}, {"content-type": "application/json", "content-length": "2"}) is None


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                   "multipart/form-data; boundary=xyz", "application/xml"])
def test_only_json_bodies_are_accepted_never_a_5xx(client, ctype):
    for path in ("/recommend", "/reload", "/events"):
        r = client.post(path, content=b"{}", headers={"content-type": ctype, **AUTH})
        assert r.status_code == 415, (path, r.text)
        assert r.json() == {"error": f"Content-Type must be application/json (got '{ctype}')", "rejected": []}


def test_a_body_without_content_type_is_refused_an_empty_one_is_not(client):
    r = client.post("/reload", content=b'{"a": 1}', headers={**AUTH, "content-type": ""})
    assert r.status_code == 415
    assert client.post("/reload", headers=AUTH).status_code == 200  # curl -XPOST .../reload with no body


def test_a_body_over_the_limit_gets_413(client):
    r = client.post("/events", json={"user_id": "x" * 20_000}, headers=AUTH)
    assert r.status_code == 413 and "over the limit of 10,000" in r.json()["error"]


def test_every_4xx_is_one_plain_json_object(client):
    raised = client.post("/recommend", json={"user_id": "raise"})
    assert raised.status_code == 400 and raised.json() == {"error": "user_id must not be raise", "rejected": []}
    pyd = client.post("/recommend", json={"user_id": "a", "k": 0})
    assert pyd.status_code == 400
    assert pyd.json() == {"error": "invalid request: k: Input should be greater than or equal to 1",
                          "rejected": [{"field": "k", "reason": "Input should be greater than or equal to 1"}]}
    own = client.post("/recommend", json={"user_id": "own"})
    assert own.json() == {"error": "own reason", "rejected": [{"index": 0, "reason": "x"}]}
    broken = client.post("/recommend", content=b"{", headers={"content-type": "application/json"})
    assert broken.status_code == 400 and broken.json()["error"].startswith("invalid request: body: Invalid JSON")
    assert int(broken.headers["content-length"]) == len(broken.content)


def test_bad_requests_are_logged_at_info_in_one_line_without_traceback(client, caplog):
    with caplog.at_level(logging.INFO):
        client.post("/recommend", json={"user_id": "raise"})
        client.post("/recommend", json={"user_id": "a", "k": 0})
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert errors == [], [r.getMessage() for r in errors]
    mine = [r for r in caplog.records if r.name == "serving.guard"]
    assert [r.levelno for r in mine] == [logging.INFO, logging.INFO]
    assert mine[0].getMessage() == "bad request POST /recommend: 400 user_id must not be raise"
    assert all("\n" not in r.getMessage() and r.exc_info is None for r in mine)


def test_a_real_server_error_is_still_logged_with_its_traceback(caplog):
    from serving.guard import _FILTER

    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "Exception on /events [POST]", None, sys.exc_info())
    assert _FILTER.filter(rec) is True


@pytest.mark.parametrize("body, want", [
    (b'[{"error": "x"}]', {"error": "x", "rejected": []}),
    (b"Method Not Allowed", {"error": "Method Not Allowed", "rejected": []}),
    (b"", {"error": "bad request", "rejected": []}),
    (b'{"error": "e", "rejected": [1]}', {"error": "e", "rejected": [1]}),
])
def test_normalise_error(body, want):
    assert normalise_error(body) == want


# ---------------------------------------------------------------- /items rules


def test_items_text_and_title_are_html_escaped():
    (row,) = parse_items([{"item_id": " n1 ", "title": "<script>alert('x')</script>", "text": "Tom's <b>tale</b> & more",
                           "categories": ["fantasy"]}])
    assert row == {"item_id": "n1", "title": "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;",
                   "text": "Tom's &lt;b&gt;tale&lt;/b&gt; &amp; more", "categories": ["fantasy"]}
    assert parse_items([{"item_id": "n2", "text": "t"}])[0]["title"] == "n2"


@pytest.mark.parametrize("item, why", [
    ({"item_id": "x"}, "item_id and text are required"),
    ({"item_id": "a\nb", "text": "t"}, "item_id has control or non-printable characters"),
    ({"item_id": "x" * 257, "text": "t"}, "item_id is longer than 256 characters (257)"),
    ({"item_id": "x", "text": "t" * 20_001}, "text is longer than 20,000 characters (20,001)"),
    ({"item_id": "x", "text": "t", "title": "T" * 501}, "title is longer than 500 characters (501)"),
    ({"item_id": "x", "text": "t", "title": 5}, "title must be a string"),
    ({"item_id": "x", "text": "t", "categories": "fantasy"}, "categories must be a list of strings"),
    ({"item_id": "x", "text": "t", "categories": ["ok", "bad\x07"]}, "category has control or non-printable characters"),
    ("x", "not a JSON object"),
])
def test_items_field_limits(item, why):
    with pytest.raises(ItemsRejected) as exc:
        parse_items([{"item_id": "fine", "text": "fine"}, item])
    assert exc.value.reasons == [{"index": 1, "reason": why}]


def test_items_at_the_limits_are_accepted():
    (row,) = parse_items([{"item_id": "x" * 256, "text": "t" * 20_000, "title": "T" * 500}])
    assert len(row["text"]) == 20_000 and len(row["title"]) == 500


def test_rate_limiter_token_bucket_with_a_fake_clock():
    from serving.ratelimit import RateLimiter

    now = [0.0]
    lim = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0], max_clients=2)
    assert [lim.allow("a") for _ in range(3)] == [0.0, 0.0, 0.0]  # the burst
    assert lim.allow("a") == pytest.approx(0.5)  # one token comes back every 0.5 s
    assert lim.allow("b") == 0.0  # other clients have their own bucket
    now[0] = 0.5
    assert lim.allow("a") == 0.0 and lim.allow("a") > 0
    lim.allow("c")  # a third client: the least recently seen bucket (b) is dropped, memory stays bounded
    assert set(lim._buckets) == {"a", "c"}
    assert RateLimiter(rate=0).allow("x") == 0.0 and not RateLimiter(rate=0).enabled


def test_rate_limit_from_env(monkeypatch):
    from serving.ratelimit import DEFAULT_RATE, RATE_ENV, rate_from_env

    monkeypatch.delenv(RATE_ENV, raising=False)
    assert rate_from_env() == DEFAULT_RATE == 0.0  # off unless set (proxies: see serving/ratelimit.py)
    monkeypatch.setenv(RATE_ENV, "0")
    assert rate_from_env() == 0.0
    for bad in ("fast", "-1", "inf"):
        monkeypatch.setenv(RATE_ENV, bad)
        with pytest.raises(ValueError, match=RATE_ENV):
            rate_from_env()


def test_a_client_over_its_rate_gets_429_with_retry_after_others_do_not():
    from serving.ratelimit import RateLimiter

    async def app(scope, receive, send):  # any ASGI app behind the guard; BentoML's is tested above
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}"})

    guarded = RequestGuard(app, api_key=None, from_env=False, limiter=RateLimiter(rate=0.01, burst=2))
    c = TestClient(guarded, raise_server_exceptions=False)  # no lifespan: the toy app has none
    codes = [c.post("/recommend", json={"user_id": "a"}).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    r = c.post("/recommend", json={"user_id": "a"})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert r.json()["error"].startswith("too many requests") and r.json()["rejected"] == []
    # a client with its own API key counts apart from the address it shares
    assert c.post("/recommend", json={"user_id": "a"}, headers={"X-API-Key": "other"}).status_code == 200
    assert c.get("/healthz").status_code == 200  # only the API routes are limited


def test_a_chunked_body_over_the_limit_gets_413_and_one_within_it_arrives_whole():
    """A body without Content-Length (chunked) is counted as it arrives: over the limit a 413 before
    the app reads it all, within it the app gets every byte."""
    got = {}

    async def app(scope, receive, send):
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        got["body"] = body
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}"})

    c = TestClient(RequestGuard(app, api_key=None, max_body_bytes=1_000, from_env=False), raise_server_exceptions=False)
    big = (b"x" * 300 for _ in range(10))  # a generator: sent chunked, no Content-Length
    r = c.post("/recommend", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "over the limit of 1,000 bytes" in r.json()["error"] and "body" not in got
    small = (b'{"user_id": "%d"}' % i for i in range(2))
    r = c.post("/recommend", content=small, headers={"content-type": "application/json"})
    assert r.status_code == 200 and got["body"] == b'{"user_id": "0"}{"user_id": "1"}'
