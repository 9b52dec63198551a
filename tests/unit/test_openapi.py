"""The service's OpenAPI description (issue 13): pulse's title, typed responses with examples,
request examples, the service's error body for 4xx; and response bodies that keep their keys.
Built in process from the service class: no model, no server."""
from __future__ import annotations

import json

import pytest

from serving import schemas

KEYS = {
    "/recommend": {"user_id", "model", "model_tag", "cold_start", "items", "because", "interest"},
    "/events": {"accepted", "duplicates", "users"},
    "/items": {"accepted", "new", "updated", "ranked_by_text_now", "note"},
    "/forget": {"forgotten", "at", "online_events_removed", "note"},
    "/reload": {"reloaded", "model_tag", "previous_tag", "reason"},
}


@pytest.fixture(scope="module")
def spec() -> dict:
    from serving.service import Recommender

    return json.loads(json.dumps(Recommender.openapi_spec.asdict(), default=str))


def test_title_description_version(spec):
    info = spec["info"]
    assert info["title"] == "pulse recommender"
    assert "created with BentoML" not in info["description"] and "/recommend" in info["description"]
    assert info["version"] not in ("", "None", "dev")


@pytest.mark.parametrize("route", sorted(KEYS))
def test_typed_responses_with_examples(spec, route):
    op = spec["paths"][route]["post"]
    ok = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(ok["properties"]) == KEYS[route]
    assert ok["required"]  # typed, not BentoML's untyped "object" of a dict return
    example = ok.get("example") or next(p["example"] for p in ok["properties"].values() if "example" in p)
    assert example is not None
    for status in ("400", "401", "413", "429"):
        assert op["responses"][status]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    assert set(spec["components"]["schemas"]["ErrorResponse"]["properties"]) == {"error", "rejected"}


def test_recommended_items_carry_their_profile(spec):
    """Each /recommend item has its profile (item_profile_v1 from the online store): always present,
    null when unreadable, its features null for an item the store lacks; the example shows one."""
    schemas_ = spec["components"]["schemas"]
    item = schemas_["ScoredItem"]
    assert "profile" in item["required"]
    assert {"$ref": "#/components/schemas/ItemProfile"} in item["properties"]["profile"]["anyOf"]
    assert set(schemas_["ItemProfile"]["properties"]) == {"categories", "popularity", "recent_popularity", "as_of"}
    ok = spec["paths"]["/recommend"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(ok["example"]["items"][0]["profile"]) == set(schemas_["ItemProfile"]["properties"])


def test_request_examples(spec):
    def props(route: str) -> dict:
        return spec["paths"][route]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]

    assert props("/recommend")["user_id"]["example"] == "u00001"
    assert props("/recommend")["k"]["example"] == 5
    assert props("/events")["events"]["example"][0]["item_id"]
    assert props("/items")["items"]["example"][0]["item_id"]
    assert props("/forget")["user_id"]["example"]


def test_bodies_keep_exactly_the_given_keys():
    """Optional keys left out stay out (no nulls), unnamed keys are kept, values unchanged."""
    no_reason = {"reloaded": True, "model_tag": "m:2", "previous_tag": "m:1"}
    assert json.loads(schemas.ReloadResponse.model_validate(no_reason).model_dump_json()) == no_reason
    with_reason = {**no_reason, "reloaded": False, "reason": "already serving the latest"}
    assert json.loads(schemas.ReloadResponse.model_validate(with_reason).model_dump_json()) == with_reason
    rec = {"user_id": "u1", "model": "interest", "model_tag": "m:1", "cold_start": False,
           "items": [{"item_id": "i1", "title": "t", "score": -2.5,
                      "profile": {"categories": ["a"], "popularity": 3, "recent_popularity": 1, "as_of": 1700000000}},
                     {"item_id": "i9", "title": "new", "score": -3.0,  # posted after the last materialization
                      "profile": {"categories": None, "popularity": None, "recent_popularity": None, "as_of": None}},
                     {"item_id": "i8", "title": "u", "score": -3.5, "profile": None}],  # profiles unreadable now
           "because": [{"item_id": "i2", "title": "u", "weight": 0.5}],
           "interest": {"in_switch": None, "recent_categories": [{"category": "science", "share": 0.7}]}}
    assert json.loads(schemas.RecommendResponse.model_validate(rec).model_dump_json()) == rec
    rec["interest"] = {"in_switch": True, "gate": 0.93, "evidence": 6.2, "expert": "recent 3", "window": 3,
                       "recent_items": ["i2"], "recent_categories": [], "extra": 1}
    assert json.loads(schemas.RecommendResponse.model_validate(rec).model_dump_json()) == rec
    items = {"accepted": 1, "new": [], "updated": ["i1"], "ranked_by_text_now": False, "note": "n"}
    assert json.loads(schemas.ItemsResponse.model_validate(items).model_dump_json()) == items


def test_rejections_pass_through_unvalidated():
    """A 4xx is a starlette Response, which BentoML returns as is (not checked against the
    return annotation): the endpoints' ``bad_request`` keeps working with typed returns."""
    import inspect

    from starlette.responses import Response

    from _bentoml_impl.server import app
    from serving.guard import bad_request

    assert isinstance(bad_request("no events given"), Response)
    assert "isinstance(output, Response)" in inspect.getsource(app.ServiceAppFactory.api_endpoint)


def test_bentoml_serializes_the_returned_model_with_its_keys():
    """The path BentoML takes for a returned model (the API's output spec and JSON serde)."""
    import asyncio

    from _bentoml_impl.serde import JSONSerde
    from serving.service import Recommender

    body = {"reloaded": True, "model_tag": "m:2", "previous_tag": "m:1"}
    api = Recommender.apis["reload"]

    async def render() -> bytes:
        response = await api.output_spec.to_http_response(schemas.ReloadResponse.model_validate(body), JSONSerde())
        sent: list[bytes] = []

        async def receive() -> dict:
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message.get("body", b""))

        await response({"type": "http", "method": "POST", "path": "/reload", "headers": []}, receive, send)
        return b"".join(sent)

    assert json.loads(asyncio.run(render())) == body


def test_request_bodies_say_what_the_service_accepts(spec):
    """Schemathesis (tests/e2e/test_service_replicas.py) generates requests from these: optional
    fields are nullable, bodies with required fields are required, events and items are spelled
    out, and the write endpoints declare the API key."""
    def body(route: str) -> dict:
        return spec["paths"][route]["post"]["requestBody"]

    events = body("/events")["content"]["application/json"]["schema"]
    assert body("/events")["required"] is True and body("/recommend")["required"] is True
    assert "required" not in body("/reload")  # an empty body is fine
    assert events["properties"]["value"]["nullable"] is True and {"type": "null"} not in events["properties"]["value"]["anyOf"]
    assert events["properties"]["events"]["items"]["required"] == ["user_id", "item_id"]
    assert events["properties"]["events"]["minItems"] == 1
    item = body("/items")["content"]["application/json"]["schema"]["properties"]["items"]["items"]
    assert item["required"] == ["item_id", "text"] and item["properties"]["text"]["maxLength"] == 20_000
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert spec["paths"]["/events"]["post"]["security"] and "security" not in spec["paths"]["/recommend"]["post"]


def test_package_metadata_paths_are_relative_to_the_project(tmp_path):
    from core.params import load_params
    from serving.package import project_relative

    (tmp_path / "params.yaml").write_text("{}")
    params = load_params(tmp_path / "params.yaml")
    assert project_relative(params, "features/repo") == "features/repo"
    assert project_relative(params, str(tmp_path / "data/events/events.jsonl")) == "data/events/events.jsonl"
    assert project_relative(params, "/elsewhere/events.jsonl") == "/elsewhere/events.jsonl"  # configured so: kept
