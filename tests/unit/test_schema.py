"""core.schema.validate: every raw row ends up clean or quarantined with a reason."""
from __future__ import annotations

import pandas as pd
import pytest

from core import schema
from core.schema import INTERACTION_COLUMNS, ITEM_COLUMNS, parse_timestamps, validate

T0 = 1_700_000_000  # 2023-11-14 22:13:20 UTC


def _items(ids=("a", "b", "c")) -> pd.DataFrame:
    return pd.DataFrame({"item_id": list(ids), "title": [f"T{i}" for i in ids], "categories": ["x|y"] * len(ids)})


def _events(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "ts"])


def _reasons(v) -> list[tuple[str, str]]:
    return list(zip(v.quarantine["table"], v.quarantine["reason"]))


@pytest.mark.parametrize(
    "bad_row, reason",
    [
        ((None, "a", T0 + 5), schema.MISSING_USER),
        (("", "a", T0 + 5), schema.MISSING_USER),
        (("   ", "a", T0 + 5), schema.MISSING_USER),
        (("u9", None, T0 + 5), schema.MISSING_ITEM),
        (("u9", "", T0 + 5), schema.MISSING_ITEM),
        (("u9", "a", "not-a-date"), schema.BAD_TIMESTAMP),
        (("u9", "zzz", T0 + 5), schema.UNKNOWN_ITEM),
    ],
)
def test_single_bad_row_is_quarantined_with_its_reason(bad_row, reason):
    good = [("u1", "a", T0), ("u2", "b", T0 + 1)]
    v = validate(_events(good + [bad_row]), _items())
    assert len(v.interactions) == len(good)
    assert _reasons(v) == [("interactions", reason)]
    assert v.counts == {f"interactions.{reason}": 1}
    # the clean table keeps only the good rows
    assert list(v.interactions["user_id"]) == ["u1", "u2"]


def test_exact_duplicate_keeps_first_and_quarantines_second():
    rows = [("u1", "a", T0), ("u2", "b", T0 + 1), ("u1", "a", T0)]
    ev = _events(rows)
    ev["event"] = ["view", "view", "view"]
    v = validate(ev, _items())
    assert len(v.interactions) == 2
    assert _reasons(v) == [("interactions", schema.DUPLICATE)]
    # the quarantined copy is the later row (original index 2), the first one stays clean
    assert v.quarantine["user_id"].tolist() == ["u1"]
    assert v.interactions["user_id"].tolist() == ["u1", "u2"]


def test_same_user_item_ts_with_different_event_is_not_a_duplicate():
    ev = _events([("u1", "a", T0), ("u1", "a", T0)])
    ev["event"] = ["view", "click"]
    v = validate(ev, _items())
    assert len(v.interactions) == 2
    assert v.quarantine.empty


def test_first_applicable_reason_wins():
    # missing user AND unknown item AND bad timestamp: missing user is checked first
    v = validate(_events([("u1", "a", T0), (None, "zzz", "garbage")]), _items())
    assert _reasons(v) == [("interactions", schema.MISSING_USER)]


def test_quarantine_keeps_raw_timestamp_text():
    rows = [("u1", "a", T0), ("u2", "a", "not-a-date"), (None, "b", "2024-02-30T99:00")]
    v = validate(_events(rows), _items())
    q = v.quarantine.set_index("reason")
    assert q.loc[schema.BAD_TIMESTAMP, "ts_raw"] == "not-a-date"
    assert q.loc[schema.MISSING_USER, "ts_raw"] == "2024-02-30T99:00"


def test_mixed_bad_rows_account_for_every_input_row():
    items = pd.DataFrame(
        {"item_id": ["a", "b", "b", None, "c"], "title": ["A", "B", "B again", "nobody", "C"], "categories": ["x"] * 5}
    )
    rows = [
        ("u1", "a", T0),
        (None, "a", T0),
        ("", "b", T0),
        ("u2", None, T0),
        ("u3", "a", "not-a-date"),
        ("u4", "nope", T0),
        ("u5", "c", T0 + 3),
        ("u5", "c", T0 + 3),
        ("u6", "b", "2024-01-01T00:00:00Z"),
    ]
    ev = _events(rows)
    v = validate(ev, items)
    n_in = len(ev) + len(items)
    assert len(v.interactions) + len(v.items) + len(v.quarantine) == n_in
    assert sum(v.counts.values()) == len(v.quarantine)
    assert v.counts == {
        "items.missing_item_id": 1,
        "items.duplicate_item_id": 1,
        "interactions.missing_user_id": 2,
        "interactions.missing_item_id": 1,
        "interactions.unparsable_timestamp": 1,
        "interactions.unknown_item": 1,
        "interactions.exact_duplicate": 1,
    }
    assert len(v.interactions) == 3  # u1, u5 (first copy), u6
    assert set(v.interactions["user_id"]) == {"u1", "u5", "u6"}
    assert list(v.interactions.columns) == INTERACTION_COLUMNS
    assert list(v.items.columns) == ITEM_COLUMNS


def test_duplicate_item_ids_quarantined_first_kept():
    items = pd.DataFrame({"item_id": ["a", "b", "a", " a "], "title": ["first", "B", "second", "third"]})
    v = validate(_events([("u1", "a", T0)]), items)
    assert v.items["item_id"].tolist() == ["a", "b"]
    assert v.items.set_index("item_id").loc["a", "title"] == "first"
    q = v.quarantine[v.quarantine["table"] == "items"]
    assert (q["reason"] == schema.DUPLICATE_ITEM).all()
    assert q["title"].tolist() == ["second", "third"]
    assert v.counts["items.duplicate_item_id"] == 2


def test_timestamps_unix_seconds_int_and_string_and_iso_to_utc():
    ts = parse_timestamps(pd.Series([T0, str(T0), "2024-01-01T00:00:00Z", "2024-01-01T02:00:00+02:00", "2024-03-05"], dtype=object))
    assert str(ts.dtype) == "datetime64[ns, UTC]"
    expected_unix = pd.Timestamp(T0 * 10**9, tz="UTC")
    assert ts.iloc[0] == expected_unix
    assert ts.iloc[1] == expected_unix
    assert ts.iloc[2] == pd.Timestamp("2024-01-01 00:00:00", tz="UTC")
    assert ts.iloc[3] == pd.Timestamp("2024-01-01 00:00:00", tz="UTC")  # offset converted to UTC
    assert ts.iloc[4] == pd.Timestamp("2024-03-05", tz="UTC")


def test_timestamps_pure_int_column_and_bad_values():
    ts = parse_timestamps(pd.Series([0, 86_400]))
    assert ts.tolist() == [pd.Timestamp("1970-01-01", tz="UTC"), pd.Timestamp("1970-01-02", tz="UTC")]
    bad = parse_timestamps(pd.Series(["not-a-date", None, ""], dtype=object))
    assert bad.isna().all()


def test_validated_ts_column_is_utc_and_sorted():
    rows = [("u1", "a", "2024-01-02T00:00:00Z"), ("u2", "b", T0), ("u3", "c", str(T0 - 10))]
    v = validate(_events(rows), _items())
    assert str(v.interactions["ts"].dtype) == "datetime64[ns, UTC]"
    assert v.interactions["ts"].is_monotonic_increasing
    assert v.interactions["user_id"].tolist() == ["u3", "u2", "u1"]


def test_equal_timestamps_keep_original_row_order():
    # four events on the same second, interleaved with earlier/later ones
    rows = [
        ("u_late", "a", T0 + 100),
        ("tie1", "c", T0),
        ("tie2", "a", T0),
        ("u_early", "b", T0 - 100),
        ("tie3", "b", str(T0)),
        ("tie4", "a", pd.Timestamp(T0 * 10**9, tz="UTC").isoformat()),
    ]
    v = validate(_events(rows), _items())
    assert v.interactions["user_id"].tolist() == ["u_early", "tie1", "tie2", "tie3", "tie4", "u_late"]


def test_categories_from_pipe_strings_and_lists():
    items = pd.DataFrame(
        {
            "item_id": ["s", "l", "t", "n", "e"],
            "title": ["S", "L", "T", "N", "E"],
            "categories": ["drama| comedy ||", ["horror", "sci-fi"], ("war",), None, ""],
        }
    )
    v = validate(_events([("u1", "s", T0)]), items)
    cats = dict(zip(v.items["item_id"], v.items["categories"]))
    assert cats == {"s": ["drama", "comedy"], "l": ["horror", "sci-fi"], "t": ["war"], "n": [], "e": []}


def test_text_falls_back_to_title_and_ids_normalised():
    items = pd.DataFrame({"item_id": [1, 2], "title": ["One", "Two"]})
    ev = pd.DataFrame({"user_id": [7.0, 8.0], "item_id": ["1.0", " 2 "], "ts": [T0, T0 + 1]})
    v = validate(ev, items)
    assert v.items["text"].tolist() == ["One", "Two"]
    assert v.interactions["item_id"].tolist() == ["1", "2"]
    assert v.interactions["user_id"].tolist() == ["7", "8"]
    assert v.quarantine.empty
