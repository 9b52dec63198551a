"""The HTTP service's response bodies as pydantic models, and its OpenAPI description.

BentoML builds each endpoint's OpenAPI response schema from its return annotation, so the
endpoints return these models (Swagger at ``/`` then shows typed responses and examples). A
model serializes exactly the keys it was given (``_Body``): an optional key the endpoint left out
(``reason`` of ``/reload``, ``note`` of ``/items``, the switch fields of ``interest`` for a model
without the gate) stays out of the JSON rather than appearing as ``null``, and a key the models
do not name is kept, so the bodies are the dicts the endpoints built, key for key. ``/recommend``
and ``/events`` return their model's JSON as a starlette response (``answer``: the same bytes,
cheaper), and a rejected request a ``JSONResponse`` (``serving.guard.bad_request``): BentoML passes a
returned Response through as is, without the return annotation's validation.
"""
from __future__ import annotations

from importlib import metadata
from typing import Any

import attrs
import bentoml
from bentoml._internal.service.openapi.specification import MediaType, Reference, Response, Schema
from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer
from starlette.responses import Response as PlainResponse

from serving.requests import ID, KIND

TITLE = "pulse recommender"
DESCRIPTION = """Recommendations that follow each user's changing interests.

- `POST /recommend`: the top-k items for a user (each with its profile from the feature store: categories,
  popularity, recent popularity), the past behaviours that weighed most (`because`) and the user's
  short-term interest (`interest`: whether the switch gate sees a change of interest, and the recent category mix).
- `POST /events`: behaviour events, one or a batch; each changes the user's very next recommendation (no retraining).
- `POST /items`: add or update items; recommendable at once by their text where the model reads text.
- `POST /forget`: forget a user now; their data is dropped at the next pipeline run.
- `POST /reload`: serve the newest packaged model without a restart.

`/events`, `/items`, `/forget` and `/reload` need `Authorization: Bearer <key>` (or `X-API-Key`) when the service
has `PULSE_API_KEY`. Every 4xx answer is `{"error": "...", "rejected": [...]}`."""


class _Body(BaseModel):
    """A response body: serializes the keys it was built with, no more (no ``null`` for an
    optional key that was left out) and no fewer (a key the model does not name is kept)."""

    model_config = ConfigDict(extra="allow")

    @model_serializer(mode="wrap")
    def _given_keys(self, handler: SerializerFunctionWrapHandler):  # noqa: ANN202 (no return type: the schema stays the model's)
        data = handler(self)
        given = self.model_fields_set | set(self.model_extra or {})
        return {k: v for k, v in data.items() if k in given}


def answer(body: BaseModel) -> PlainResponse:
    """``body`` as the endpoint's 200 answer: the JSON BentoML writes for a returned model
    (``model_dump_json``, byte for byte), in one plain response.

    Why not return the model: BentoML then wraps it in another model, dumps it once to Python
    objects and again to JSON, and streams the JSON in two body messages (no Content-Length), each
    passing every middleware (its OpenTelemetry span per message among them). A returned starlette
    Response is passed through as is, as ``bad_request`` relies on; the return annotation still
    gives OpenAPI the body's schema."""
    return PlainResponse(body.model_dump_json(), media_type="application/json")


class ItemProfile(_Body):
    """The item's ``item_profile`` row in Feast's online store (feature service ``item_profile_v1``),
    as the last materialization wrote it; every value is null for an item it lacks (one posted
    through ``/items`` since). A feature the service adds appears under its own name."""

    categories: list[str] | None = Field(None, description="the item's categories", examples=[["science", "nature"]])
    popularity: int | None = Field(None, description="events on the item up to the snapshot (as_of)", examples=[412])
    recent_popularity: int | None = Field(None, description="events in the recent window before the snapshot", examples=[37])
    as_of: int | None = Field(None, description="unix seconds of the snapshot: the latest event when the features were computed",
                              examples=[1777636800])


class ScoredItem(_Body):
    item_id: str = Field(examples=["i00100"])
    title: str = Field(examples=["Deep sea vents and the origin of life"])
    score: float = Field(description="the model's score (higher ranks first)", examples=[-2.61])
    profile: ItemProfile | None = Field(description="the item's profile from the online store; null when it "
                                                          "cannot be read now (the items are served all the same)")


class BecauseItem(_Body):
    item_id: str = Field(examples=["i00041"])
    title: str = Field(examples=["A field guide to hydrothermal systems"])
    weight: float = Field(description="the behaviour's interest weight in this recommendation", examples=[0.51])


class CategoryShare(_Body):
    category: str = Field(examples=["science"])
    share: float = Field(description="share of the user's recent behaviour (decayed per event)", examples=[0.71])


class Interest(_Body):
    in_switch: bool | None = Field(
        description="the switch gate sees a change of interest; null for a model without the gate", examples=[True])
    gate: float | None = Field(None, description="weight of the short-term view (0..1)", examples=[0.93])
    evidence: float | None = Field(None, description="how much better the short view predicted the user's newest events", examples=[6.2])
    expert: str | None = Field(None, description="the short-term view that leads", examples=["recent 3"])
    window: int | None = Field(None, description="how many newest behaviours that view reads", examples=[3])
    recent_items: list[str] | None = Field(None, description="the behaviours that view read, newest first",
                                           examples=[["i00041", "i00039", "i00012"]])
    recent_categories: list[CategoryShare] = Field(description="top categories of the recent category mix")


class RecommendResponse(_Body):
    """Top-k items for the user, with the past behaviours that weighed most."""

    model_config = ConfigDict(json_schema_extra={"example": {
        "user_id": "u00001", "model": "hybrid_switch", "model_tag": "pulse-recommender:3xq5ybqkd2g2oaav", "cold_start": False,
        "items": [{"item_id": "i00100", "title": "Deep sea vents and the origin of life", "score": -2.61,
                   "profile": {"categories": ["science", "nature"], "popularity": 412, "recent_popularity": 37, "as_of": 1777636800}}],
        "because": [{"item_id": "i00041", "title": "A field guide to hydrothermal systems", "weight": 0.51}],
        "interest": {"in_switch": True, "gate": 0.93, "evidence": 6.2, "expert": "recent 3", "window": 3,
                     "recent_items": ["i00041", "i00039", "i00012"],
                     "recent_categories": [{"category": "science", "share": 0.71}, {"category": "music", "share": 0.2}]},
    }})

    user_id: str = Field(examples=["u00001"])
    model: str = Field(description="the served model's name", examples=["hybrid_switch"])
    model_tag: str = Field(description="the served BentoML model version", examples=["pulse-recommender:3xq5ybqkd2g2oaav"])
    cold_start: bool = Field(description="the user has no history: popular items", examples=[False])
    items: list[ScoredItem]
    because: list[BecauseItem] = Field(description="the past behaviours that weighed most, heaviest first")
    interest: Interest


class EventsResponse(_Body):
    model_config = ConfigDict(json_schema_extra={"example": {"accepted": 2, "duplicates": 0, "users": ["u00001"]}})

    accepted: int = Field(description="events accepted (all of the request's, or the request is rejected)", examples=[2])
    duplicates: int = Field(description="of those, retries of an event the user's history already holds: acknowledged, not logged again",
                            examples=[0])
    users: list[str] = Field(description="the users whose state changed", examples=[["u00001"]])


class ItemsResponse(_Body):
    model_config = ConfigDict(json_schema_extra={"example":
        {"accepted": 1, "new": ["i90001"], "updated": [], "ranked_by_text_now": True}})

    accepted: int = Field(examples=[1])
    new: list[str] = Field(description="ids the service did not know", examples=[["i90001"]])
    updated: list[str] = Field(description="known ids whose text or categories were replaced", examples=[[]])
    ranked_by_text_now: bool = Field(description="the served model ranks new items by their text at once", examples=[True])
    note: str | None = Field(None, description="only when the served model has no text representation")


class ForgetResponse(_Body):
    model_config = ConfigDict(json_schema_extra={"example": {
        "forgotten": "u00001", "at": 1767225600, "online_events_removed": 42,
        "note": "the user's logged and ingested events are dropped from the data and the feature store at the next pipeline run"}})

    forgotten: str = Field(description="the user id", examples=["u00001"])
    at: int = Field(description="unix seconds of the tombstone: events up to it are dropped", examples=[1767225600])
    online_events_removed: int = Field(examples=[42])
    note: str


class ReloadResponse(_Body):
    model_config = ConfigDict(json_schema_extra={"example":
        {"reloaded": True, "model_tag": "pulse-recommender:4ab7c2qkd2g2oaav", "previous_tag": "pulse-recommender:3xq5ybqkd2g2oaav"}})

    reloaded: bool = Field(examples=[True])
    model_tag: str = Field(description="the version served now", examples=["pulse-recommender:4ab7c2qkd2g2oaav"])
    previous_tag: str = Field(examples=["pulse-recommender:3xq5ybqkd2g2oaav"])
    reason: str | None = Field(None, description="why not reloaded (already the latest, or the error)")


class Rejected(BaseModel):
    field: str | None = Field(None, examples=["user_id"])
    reason: str | None = Field(None, examples=["must not be blank"])


class ErrorResponse(BaseModel):
    """Every 4xx body (serving/guard.py): the reason, and per field or per event what was rejected."""

    error: str = Field(examples=["1 of 2 event(s) rejected, none written"])
    rejected: list[dict[str, Any]] = Field(examples=[[{"index": 1, "field": "item_id", "reason": "unknown item"}]])


PROTECTED = ("events", "items", "forget", "reload")  # serving/guard.py's PROTECTED_PATHS, without the slash
ERRORS = {400: "the request was rejected: nothing was written", 401: "the endpoint needs the API key",
          413: "the body is over PULSE_MAX_BODY_BYTES", 429: "too many requests from this client (see Retry-After)"}


def _oas30_examples(node: Any) -> None:
    """BentoML writes OpenAPI 3.0, whose schemas take one ``example``; pydantic writes JSON
    Schema's ``examples`` list. Give every schema that has ``examples`` its first as ``example``
    too, so Swagger UI fills the request and response samples with them."""
    if isinstance(node, dict):
        if isinstance(node.get("examples"), list) and node["examples"] and "example" not in node:
            node["example"] = node["examples"][0]
        for value in node.values():
            _oas30_examples(value)
    elif isinstance(node, list):
        for value in node:
            _oas30_examples(value)
    elif attrs.has(type(node)):
        for field in attrs.fields(type(node)):
            _oas30_examples(getattr(node, field.name))


# What the service accepts, declared as exactly as a schema can (issue 14: Schemathesis against the spec).
# BentoML's inline request schemas drop the `null` of optional fields (`value: float | None` became
# `type: number`) and leave the body optional; the bodies below are built from each endpoint's own
# input model (pydantic), its events and items (serving/requests.py's EventIn, ItemIn) inlined, with
# OpenAPI 3.0's `nullable` for `null`, the body required where the endpoint has required fields, and
# the ids' patterns. What no schema can say stays a 400 at run time: an item id the catalogue lacks,
# a ts outside the window around now, an id with an unprintable character (serving/validate.py).
REQUEST_PATCHES: dict[str, dict[str, dict]] = {
    "/recommend": {"user_id": ID},
    "/forget": {"user_id": ID},
    # the top-level fields are typed (str, int | str) by the endpoint's signature: no integer ids, no float ts there;
    # an empty batch is the service's 400 ("no events given"), not pydantic's
    "/events": {"events": {"minItems": 1}, "user_id": ID, "item_id": ID,
                "ts": {"anyOf": [{"type": "integer"}, {"type": "string"}], "nullable": True},
                "event": {**KIND, "nullable": True}},
}
SECURITY_SCHEMES = {"bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <PULSE_API_KEY>"},
                    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "X-API-Key: <PULSE_API_KEY>"}}


def _nullable(node: Any) -> Any:
    """JSON Schema's ``anyOf: [X, {"type": "null"}]`` (pydantic's ``X | None``) as OpenAPI 3.0's
    ``X`` with ``nullable: true``, everywhere in ``node``."""
    if isinstance(node, list):
        return [_nullable(v) for v in node]
    if not isinstance(node, dict):
        return node
    node = {k: _nullable(v) for k, v in node.items()}
    options = node.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        node.pop("anyOf")
        node.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
        node["nullable"] = True
    return node


def _inlined(node: Any, defs: dict[str, Any]) -> Any:
    """``node`` with every ``{"$ref": "#/$defs/X"}`` replaced by the schema of ``X`` (the request
    models have no cycles): the request body stands alone, and reads the same in Swagger."""
    if isinstance(node, list):
        return [_inlined(v, defs) for v in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref", "")
    if ref.startswith("#/$defs/"):
        return _inlined({**defs[ref.removeprefix("#/$defs/")], **{k: v for k, v in node.items() if k != "$ref"}}, defs)
    return {k: _inlined(v, defs) for k, v in node.items()}


def request_body(route: str, input_schema: dict) -> dict:
    """The OpenAPI request body of an endpoint from its input model's JSON schema."""
    schema = _nullable(_inlined({k: v for k, v in input_schema.items() if k != "$defs"}, input_schema.get("$defs", {})))
    for name, patch in REQUEST_PATCHES.get(route, {}).items():
        prop = schema["properties"][name]
        if "anyOf" in patch:  # a replaced type: drop the generated one
            for key in ("type", "anyOf", "minLength", "maxLength", "pattern"):
                prop.pop(key, None)
        prop.update({k: v for k, v in patch.items() if k != "description" or "description" not in prop})
    body: dict[str, Any] = {"content": {"application/json": {"schema": schema}}}
    if schema.get("required") or route == "/events":
        body["required"] = True
    if route == "/events":  # one event (user_id, item_id at the top) or a batch (events)
        schema["anyOf"] = [{"required": ["events"], "properties": {"events": {"type": "array"}}}, {"required": ["user_id", "item_id"]}]
    return body


def api_version() -> str:
    try:
        return metadata.version("pulse")
    except metadata.PackageNotFoundError:
        return "0.1.0"


class PulseService(bentoml.Service):
    """BentoML's service with pulse's own OpenAPI title, description and version (BentoML's
    default is "<class name>:dev ... created with BentoML") and the service's error body for 4xx."""

    @property
    def openapi_spec(self):  # noqa: ANN201 (BentoML's OpenAPISpecification)
        spec = super().openapi_spec
        info = attrs.evolve(spec.info, title=TITLE, description=DESCRIPTION, version=api_version(), contact=None)
        spec = attrs.evolve(spec, info=info)
        spec.components["schemas"]["ErrorResponse"] = Schema(**ErrorResponse.model_json_schema())
        spec.components["securitySchemes"] = SECURITY_SCHEMES
        error = {status: Response(description=why, content={"application/json": MediaType(
            schema=Reference("#/components/schemas/ErrorResponse"))}) for status, why in ERRORS.items()}
        for api in self.apis.values():
            op = spec.paths[api.route].post
            responses = op["responses"] if isinstance(op, dict) else op.responses
            responses.pop(404, None)  # BentoML's NotFound: no endpoint here answers it
            responses.update(error)
            body = request_body(api.route, api.input_spec.model_json_schema())
            if isinstance(op, dict):
                op["requestBody"] = body
            else:
                op.requestBody = body
            if api.route.lstrip("/") in PROTECTED:  # the key is needed only when PULSE_API_KEY is set
                if isinstance(op, dict):
                    op["security"] = [{"bearer": []}, {"apiKey": []}]
                else:
                    op.security = [{"bearer": []}, {"apiKey": []}]
        _oas30_examples(spec)
        return spec
