"""The request models of /events and /items (serving/requests.py) in front of the real endpoints:
BentoML in process, the service's state, logs and online store replaced by small fakes (no model,
no Feast). The wire format stays: a batch or one event at the top level; every 4xx one plain JSON
object with each bad entry's index and reasons, all or nothing; a retry logged once."""
from __future__ import annotations

import contextlib
import os
import types

import numpy as np
import pytest
from starlette.testclient import TestClient

from serving import service
from serving.event_writer import EventWriter
from serving.requests import EventIn, ItemIn, event_dicts
from serving.validate import BadRequest, TimeWindow
from tests.unit.helpers import DictOnlineStore

T0 = 1_780_000_000


class FakeLog:
    name = "fake"

    def __init__(self) -> None:
        self.lines: list = []

    @contextlib.contextmanager
    def locked(self):  # noqa: ANN201
        yield

    def append(self, records: list) -> None:
        self.lines += list(records)

    def repair(self) -> int:
        return 0


@pytest.fixture(scope="module")
def served():
    """(a client of the real service, its fakes): ``__init__`` replaced, the endpoints as they are.
    BentoML registers its request metrics in prometheus' process-wide registry, which another app
    of the same process (tests/unit/test_guard.py's) holds already: this one gets a registry of its own."""
    fakes = types.SimpleNamespace(log=FakeLog(), items_log=FakeLog(), online=DictOnlineStore())

    def init(self) -> None:
        self.window, self.online, self.event_log, self.items_log = TimeWindow(), fakes.online, fakes.log, fakes.items_log
        self.logs = types.SimpleNamespace(shared=False, events=fakes.log, items=fakes.items_log)
        self.categories, self.history_len, self.half_lives, self.broadcast = ["a", "b"], 50, (3.0, 60.0, 2.0), None
        engine = types.SimpleNamespace(ranks_by_text=True, model_name="fake")
        self.state = types.SimpleNamespace(
            known_items={"i1", "i2"}, cat_vectors={"i1": np.array([1.0, 0.0]), "i2": np.array([0.0, 1.0])}, engine=engine,
            encoder_name="e", tag="fake:1", encode=lambda texts: [None] * len(texts),
            upsert_items=lambda rows, vectors, cats: [r["item_id"] for r in rows if r["item_id"] not in self.state.known_items])
        self.writer = EventWriter(self.event_log, self.online, self._spec)

    from bentoml._internal.configuration.containers import BentoMLContainer
    from prometheus_client import CollectorRegistry

    metrics = BentoMLContainer.metrics_client.get()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(service.Recommender.inner, "__init__", init)
        mp.setattr(metrics, "_registry", CollectorRegistry())
        mp.setattr(metrics, "_pid", os.getpid())  # what the client checks of a registry it made itself
        with TestClient(service.Recommender.to_asgi(), raise_server_exceptions=False) as client:
            yield client, fakes


@pytest.fixture()
def app(served):
    """The served app with empty logs and online store."""
    client, fakes = served
    fakes.log.lines.clear()
    fakes.items_log.lines.clear()
    fakes.online.rows.clear()
    return client, fakes


def test_one_event_at_the_top_level_or_a_batch_and_a_retry_is_logged_once(app):
    client, fakes = app
    one = {"user_id": "u1", "item_id": "i1", "ts": T0, "event": "click"}
    assert client.post("/events", json=one).json() == {"accepted": 1, "duplicates": 0, "users": ["u1"]}
    assert client.post("/events", json=one).json() == {"accepted": 1, "duplicates": 1, "users": ["u1"]}
    batch = [{"user_id": "u2", "item_id": 7, "ts": T0, "event": 3, "value": 2}, {"user_id": 42, "item_id": "i2", "x": {"any": 1}}]
    r = client.post("/events", json={"events": batch})
    assert r.status_code == 400 and r.json()["rejected"] == [{"index": 0, "reason": "unknown item_id '7'"}]
    batch[0]["item_id"] = "i1"
    assert client.post("/events", json={"events": batch}).json() == {"accepted": 2, "duplicates": 0, "users": ["42", "u2"]}
    assert [(e.user_id, e.item_id, e.event, e.value) for e in fakes.log.lines] == [
        ("u1", "i1", "click", None), ("u2", "i1", "3", 2.0), ("42", "i2", "interaction", None)]  # request order, the retry once
    assert fakes.online.rows["u2"]["hist_item_ids"] == ["i1"]


@pytest.mark.parametrize("body, error, rejected", [
    ({"events": [{"user_id": "u1", "item_id": "i1", "ts": T0}, {"user_id": "u1", "item_id": "nope"},
                 {"user_id": "", "item_id": "i2", "ts": "yesterday"}, {"user_id": True, "item_id": "i1", "value": "x"}]},
     "3 of 4 event(s) rejected, none written",
     [{"index": 1, "reason": "unknown item_id 'nope'"}, {"index": 2, "reason": "missing user_id, unparsable ts 'yesterday'"},
      {"index": 3, "reason": "user_id must be a string, value must be a number"}]),
    ({"events": []}, "no events given", []),
    ({"user_id": "u1"}, "1 of 1 event(s) rejected, none written", [{"index": 0, "reason": "missing item_id"}]),
    ({"events": [{"user_id": "u1", "item_id": "i1"}], "user_id": "a\u0000b"}, "user_id has control or non-printable characters",
     [{"field": "user_id", "reason": "user_id has control or non-printable characters"}]),
    ({"events": [1, []]}, "invalid request: events.0: Input should be an object; events.1: Input should be an object",
     [{"field": "events.0", "reason": "Input should be an object"}, {"field": "events.1", "reason": "Input should be an object"}]),
])
def test_a_bad_event_request_is_one_plain_body_and_nothing_is_written(app, body, error, rejected):
    client, fakes = app
    r = client.post("/events", json=body)
    assert r.status_code == 400 and r.json() == {"error": error, "rejected": rejected}
    assert fakes.log.lines == [] and fakes.online.rows == {}


def test_items_accept_any_object_and_reject_with_the_services_reasons(app):
    client, fakes = app
    ok = client.post("/items", json={"items": [{"item_id": "n1", "text": "Tom's tale", "title": "<b>", "categories": ["a"]},
                                               {"item_id": "i1", "text": "t"}]})
    assert ok.json() == {"accepted": 2, "new": ["n1"], "updated": ["i1"], "ranked_by_text_now": True}
    assert fakes.items_log.lines[0]["title"] == "&lt;b&gt;"
    bad = client.post("/items", json={"items": [{"item_id": "x"}, {"item_id": "y", "text": {"a": 1}, "title": 5}]})
    assert bad.status_code == 400 and bad.json() == {"error": "2 of 2 item(s) rejected, none written", "rejected": [
        {"index": 0, "reason": "item_id and text are required"}, {"index": 1, "reason": "text must be a string, title must be a string"}]}
    assert len(fakes.items_log.lines) == 2


def test_the_models_pass_every_field_through_for_the_validator():
    """Loose on purpose: a wrong type is the validator's to report (with the entry's index)."""
    e = EventIn.model_validate({"user_id": True, "ts": [1], "extra": {"a": 1}})
    assert dict(e) == {"user_id": True, "item_id": None, "ts": [1], "event": None, "value": None, "extra": {"a": 1}}
    assert dict(ItemIn.model_validate({"item_id": 0, "text": 5})) == {"item_id": 0, "text": 5, "title": None, "categories": None}
    assert event_dicts(None, {"user_id": "u"}) == [{"user_id": "u"}]
    with pytest.raises(BadRequest, match="no events given"):
        event_dicts([], {})
    with pytest.raises(BadRequest) as exc:
        event_dicts([e], {"item_id": "x" * 300})
    assert exc.value.rejected == [{"field": "item_id", "reason": "item_id is longer than 256 characters (300)"}]


def test_the_models_describe_each_field_with_an_example():
    for model, required in ((EventIn, ["user_id", "item_id"]), (ItemIn, ["item_id", "text"])):
        schema = model.model_json_schema()
        assert schema["required"] == required and all("default" not in schema["properties"][n] for n in required)
        assert all(p.get("examples") for p in schema["properties"].values())
