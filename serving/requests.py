"""The request bodies of ``/events`` and ``/items``: the ``EventIn`` and ``ItemIn`` models, and the
endpoints' typed parameters.

The models describe, ``serving/validate.py`` decides. Each field is typed ``Any`` and carries the
JSON schema of what the service accepts (``WithJsonSchema``: types, limits, examples), so OpenAPI
and Swagger show an event's and an item's shape, while BentoML's validation lets any JSON object
through as an event or an item. A strict pydantic type would reject a bad field before the
service sees the batch, with BentoML's per-field error; the service instead checks every field of
every entry itself and answers a bad batch once, all or nothing, with each bad entry's index and
every reason (``parse_events``, ``parse_items``). What no schema can say (an item id the catalogue
lacks, a time outside the window around now, a character ``str.isprintable`` refuses) is a 400 at
run time all the same.

``/events`` takes a batch, ``{"events": [...]}`` (canonical), or one event with its fields at the
top level (the shorthand); the top-level fields are typed strictly (``str``, ``int | str``) by the
endpoint's signature, as they always were.
"""
from __future__ import annotations

from typing import Annotated, Any, Callable

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, WithJsonSchema

from serving.validate import MAX_EVENTS, MAX_ID_LEN, MAX_ITEMS, MAX_TEXT_LEN, MAX_TITLE_LEN, MAX_CATEGORIES, BadRequest, id_problem

_NO_CONTROL = "\\u0000-\\u001f\\u007f-\\u009f"
ID = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LEN, "pattern": rf"^[^{_NO_CONTROL}]*[^\s{_NO_CONTROL}][^{_NO_CONTROL}]*$",
      "description": f"at most {MAX_ID_LEN} printable characters, not blank"}
ID_OR_INT = {"anyOf": [ID, {"type": "integer"}], "description": "an id (an integer is read as its digits)"}
KIND = {"type": "string", "maxLength": MAX_ID_LEN, "pattern": rf"^[^{_NO_CONTROL}]*$"}
_NULL = {"type": "null"}


def _described(schema: dict, description: str | None = None, example: Any = None) -> Any:
    """A field of any JSON value whose OpenAPI schema is ``schema`` (see the module's docstring)."""
    extra = {"description": description} if description else {}
    return WithJsonSchema({**schema, **extra, **({"examples": [example]} if example is not None else {})})


def _requires(*names: str) -> Callable[[dict], None]:
    """The model schema's ``required``: the fields default to ``None`` only so that the validator,
    not pydantic, reports a missing one (with the entry's index); the schema says they are needed."""
    def extra(schema: dict) -> None:
        schema["required"] = list(names)
        for name in names:
            schema["properties"][name].pop("default", None)
    return extra


class EventIn(BaseModel):
    """One behaviour event."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_requires("user_id", "item_id"))

    user_id: Annotated[Any, _described(ID_OR_INT, "the user", "u00001")] = None
    item_id: Annotated[Any, _described(ID_OR_INT, "a known item (the catalogue or POST /items)", "i00041")] = None
    ts: Annotated[Any, _described({"anyOf": [{"type": "integer"}, {"type": "number"}, {"type": "string"}, _NULL]},
                                  "unix seconds or ISO-8601, within the accepted window around now; default now", 1777636800)] = None
    event: Annotated[Any, _described({"anyOf": [KIND, {"type": "integer"}, _NULL]},
                                     "the kind of event (an integer is read as its digits); default interaction", "click")] = None
    value: Annotated[Any, _described({"anyOf": [{"type": "number"}, _NULL]}, "a finite number", 1.0)] = None


class ItemIn(BaseModel):
    """One catalogue item to add or update."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_requires("item_id", "text"))

    item_id: Annotated[Any, _described(ID_OR_INT, None, "i90001")] = None
    text: Annotated[Any, _described({"type": "string", "minLength": 1, "maxLength": MAX_TEXT_LEN, "pattern": r"^[^\u0000]*\S[^\u0000]*$"},
                                    "what the encoder reads: not blank, no NUL", "A guide to the creatures of rock pools after dark.")] = None
    title: Annotated[Any, _described({"anyOf": [{"type": "string", "maxLength": MAX_TITLE_LEN, "pattern": r"^[^\u0000]*$"}, _NULL]},
                                     "what the service shows (default: the id)", "Tide pools at night")] = None
    categories: Annotated[Any, _described({"anyOf": [{"type": "array", "maxItems": MAX_CATEGORIES, "items": ID_OR_INT}, _NULL]},
                                          "the item's categories (ids)", ["science", "travel"])] = None


EXAMPLE_EVENTS = [{"user_id": "u00001", "item_id": "i00041", "ts": "2026-05-01T12:00:00Z", "event": "click"},
                  {"user_id": "u00001", "item_id": "i00039", "event": "purchase", "value": 1.0}]
EXAMPLE_ITEMS = [{"item_id": "i90001", "title": "Tide pools at night", "text": "A guide to the creatures of rock pools after dark.",
                  "categories": ["science", "travel"]}]

# the parameters of /events: a batch, or one event's fields at the top level
Events = Annotated[list[EventIn] | None, Field(max_length=MAX_EVENTS, description="a batch of events, all or nothing (the canonical form)",
                                               examples=[EXAMPLE_EVENTS])]
OneUserId = Annotated[str | None, Field(description="one event (the shorthand): the user", examples=["u00001"])]
OneItemId = Annotated[str | None, Field(description="one event: the item", examples=["i00041"])]
# strict, as the schema says: `true` is no time and `false` no value (pydantic's lax mode read them as 1 and 0.0)
OneTs = Annotated[StrictInt | StrictStr | None, Field(description="one event: unix seconds or ISO-8601; default now", examples=[1777636800])]
OneKind = Annotated[str | None, Field(examples=["click"])]
OneValue = Annotated[StrictFloat | StrictInt | None, Field(examples=[1.0])]
Items = Annotated[list[ItemIn], Field(min_length=1, max_length=MAX_ITEMS, description="items to add or update", examples=[EXAMPLE_ITEMS])]


def as_dict(entry: BaseModel) -> dict:
    """An event or item as the JSON object it was sent as: its fields and any others, values as
    given (two dicts merged: ``dict(model)`` took ~35 times as long per entry, ``model_dump`` ~6)."""
    return {**entry.__dict__, **(entry.__pydantic_extra__ or {})}


def event_dicts(events: list[EventIn] | None, one: dict[str, Any]) -> list[dict]:
    """The events of an ``/events`` request as plain dicts for ``parse_events``: the batch, or the
    one event whose fields ``one`` holds. Beside a batch, top-level fields are ignored but must
    still be what the schema allows; an empty batch is refused (``BadRequest``)."""
    if events is None:
        return [one]
    for name in ("user_id", "item_id", "event"):
        given = one.get(name)
        if given is not None and (given != "" or name != "event") and (why := id_problem(given, name)):
            raise BadRequest(why, [{"field": name, "reason": why}])
    if not events:
        raise BadRequest("no events given")
    return [as_dict(e) for e in events]
