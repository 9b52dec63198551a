"""Events end to end: batch validation (serving.validate), the JSONL event log (core.eventlog), the online
behaviour merge (features.online), and ingest reading the log."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from core import eventlog, schema
from features import ingest
from core.eventlog import Event, EventLog, events_by_user
from core.params import load_params
from features.transforms import SECONDS_PER_DAY, category_matrix, decayed_shares, recent_shares
from features.online import merge_behaviour, merge_behaviours, unapplied
from serving.validate import EventRejected, TimeWindow, parse_events
from tests.unit.helpers import locked_appends_from_threads

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
KNOWN = {"a", "b", "c"}


# ---------------------------------------------------------------- parse_events


def test_parse_single_valid_event():
    out = parse_events([{"user_id": " u1 ", "item_id": "a", "ts": T0, "event": "click", "value": 2}], KNOWN, now=T0 + 99)
    assert out == [Event("u1", "a", T0, "click", 2.0)]
    assert isinstance(out[0].value, float) and isinstance(out[0].ts, int)


def test_parse_ts_defaults_to_now_and_event_to_interaction():
    out = parse_events([{"user_id": "u1", "item_id": "b"}], KNOWN, now=T0 + 5)
    assert out == [Event("u1", "b", T0 + 5, "interaction", None)]


@pytest.mark.parametrize("ts", ["2026-01-01T00:00:00Z", "2026-01-01T01:00:00+01:00", "2026-01-01 00:00:00"])
def test_parse_iso_ts_string(ts):
    (e,) = parse_events([{"user_id": "u1", "item_id": "a", "ts": ts}], KNOWN, now=T0 + 60)
    assert e.ts == T0  # naive strings are UTC


def test_integer_seconds_parse_as_the_same_number_in_any_form():
    """The fast path for whole unix seconds gives what the ingest parser gives for the same moment."""
    forms = [T0, float(T0), str(T0), "2026-01-01T00:00:00Z"]
    assert [e.ts for e in parse_events([{"user_id": "u", "item_id": "a", "ts": f} for f in forms], KNOWN, now=T0)] == [T0] * 4
    with pytest.raises(EventRejected, match="") as exc:  # too large to be seconds: unparsable, as in ingest
        parse_events([{"user_id": "u", "item_id": "a", "ts": 10**12}], KNOWN, now=T0)
    assert "unparsable ts" in exc.value.reasons[0]["reason"]


def test_parse_batch_is_all_or_nothing_with_every_reason():
    raw = [
        {"user_id": "u1", "item_id": "a", "ts": T0},           # 0 fine
        {"user_id": "u1", "item_id": "ghost", "ts": T0},       # 1 unknown item
        {"item_id": "b", "ts": T0},                            # 2 missing user
        {"user_id": "u2", "item_id": "c", "ts": "soon"},       # 3 unparsable ts
        {"user_id": "u3", "item_id": "a", "ts": T0 + 1},       # 4 fine
    ]
    with pytest.raises(EventRejected) as exc:
        parse_events(raw, KNOWN, now=T0)
    reasons = exc.value.reasons
    assert [r["index"] for r in reasons] == [1, 2, 3]
    by_index = {r["index"]: r["reason"] for r in reasons}
    assert "unknown item_id" in by_index[1] and "ghost" in by_index[1]
    assert by_index[2] == "missing user_id"
    assert "unparsable ts" in by_index[3] and "soon" in by_index[3]
    assert isinstance(exc.value, ValueError)
    assert "event 1:" in str(exc.value) and "event 3:" in str(exc.value)


def test_parse_non_dict_entry():
    with pytest.raises(EventRejected) as exc:
        parse_events([{"user_id": "u", "item_id": "a"}, ["u", "a"], "x"], KNOWN, now=T0)
    assert exc.value.reasons == [{"index": 1, "reason": "not a JSON object"}, {"index": 2, "reason": "not a JSON object"}]


def test_parse_non_numeric_value():
    with pytest.raises(EventRejected) as exc:
        parse_events([{"user_id": "u", "item_id": "a", "value": "lots"}], KNOWN, now=T0)
    assert exc.value.reasons == [{"index": 0, "reason": "value must be a number"}]


def test_parse_reports_several_reasons_for_one_event():
    with pytest.raises(EventRejected) as exc:
        parse_events([{"item_id": "zzz", "ts": "nope", "value": "x"}], KNOWN, now=T0)
    (r,) = exc.value.reasons
    assert r["index"] == 0
    for part in ("missing user_id", "unknown item_id 'zzz'", "unparsable ts 'nope'", "value must be a number"):
        assert part in r["reason"]


@pytest.mark.parametrize("user_id, why", [
    ("u\x00x", "user_id has control or non-printable characters"),
    ("a\nb", "user_id has control or non-printable characters"),
    ("u\x1b[31m", "user_id has control or non-printable characters"),
    ("x" * 257, "user_id is longer than 256 characters (257)"),
    (["u"], "user_id must be a string"),
    (True, "user_id must be a string"),
])
def test_parse_rejects_ids_with_control_chars_too_long_or_not_strings(user_id, why):
    with pytest.raises(EventRejected) as exc:
        parse_events([{"user_id": user_id, "item_id": "a", "ts": T0}], KNOWN, now=T0)
    assert exc.value.reasons == [{"index": 0, "reason": why}]


def test_parse_accepts_ids_at_the_limit_and_integer_ids():
    out = parse_events([{"user_id": "x" * 256, "item_id": "a", "ts": T0}, {"user_id": 42, "item_id": "a", "ts": T0}], KNOWN, now=T0)
    assert [e.user_id for e in out] == ["x" * 256, "42"]


@pytest.mark.parametrize("ts", [-1, 0, "1900-01-01", T0 - 3651 * SECONDS_PER_DAY, T0 + 2 * SECONDS_PER_DAY, "2200-01-01T00:00:00Z"])
def test_parse_rejects_ts_outside_the_window(ts):
    with pytest.raises(EventRejected) as exc:
        parse_events([{"user_id": "u", "item_id": "a", "ts": ts}], KNOWN, now=T0)
    assert "outside the accepted window 2016-01-04T00:00:00Z .. 2026-01-02T00:00:00Z" in exc.value.reasons[0]["reason"]


def test_parse_window_edges_and_a_configured_window(monkeypatch):
    ok = parse_events([{"user_id": "u", "item_id": "a", "ts": T0 - 3650 * SECONDS_PER_DAY},
                       {"user_id": "u", "item_id": "a", "ts": T0 + SECONDS_PER_DAY}], KNOWN, now=T0)
    assert len(ok) == 2
    monkeypatch.setenv("PULSE_MAX_EVENT_AGE_DAYS", "7")
    monkeypatch.setenv("PULSE_MAX_EVENT_AHEAD_DAYS", "0")
    window = TimeWindow.from_env()
    assert window == TimeWindow(7.0, 0.0)
    with pytest.raises(EventRejected) as exc:
        parse_events([{"user_id": "u", "item_id": "a", "ts": T0 - 8 * SECONDS_PER_DAY}, {"user_id": "u", "item_id": "a", "ts": T0 + 1}],
                     KNOWN, now=T0, window=window)
    assert [r["index"] for r in exc.value.reasons] == [0, 1]
    monkeypatch.setenv("PULSE_MAX_EVENT_AGE_DAYS", "ten")
    with pytest.raises(ValueError, match="PULSE_MAX_EVENT_AGE_DAYS='ten' is not a number of days"):
        TimeWindow.from_env()


@pytest.mark.parametrize("ts", [True, None.__class__, [T0], float("nan"), float("inf")])
def test_parse_rejects_ts_of_the_wrong_kind(ts):
    ts = {} if ts is None.__class__ else ts
    with pytest.raises(EventRejected) as exc:
        parse_events([{"user_id": "u", "item_id": "a", "ts": ts}], KNOWN, now=T0)
    assert "unparsable ts" in exc.value.reasons[0]["reason"]


@pytest.mark.parametrize("value, why", [(float("nan"), "finite"), (float("inf"), "finite"), (float("-inf"), "finite"),
                                        (json.loads("1e309"), "finite"), (True, "must be a number")])
def test_parse_rejects_non_finite_values(value, why):
    with pytest.raises(EventRejected) as exc:
        parse_events([{"user_id": "u", "item_id": "a", "ts": T0, "value": value}], KNOWN, now=T0)
    assert why in exc.value.reasons[0]["reason"]


def test_parse_limits_the_event_kind_like_an_id():
    with pytest.raises(EventRejected) as exc:
        parse_events([{"user_id": "u", "item_id": "a", "ts": T0, "event": "v" * 300}], KNOWN, now=T0)
    assert exc.value.reasons[0]["reason"] == "event is longer than 256 characters (300)"


# ---------------------------------------------------------------- EventLog


def test_append_writes_one_json_line_per_event(tmp_path):
    log = EventLog(tmp_path / "events" / "events.jsonl")
    evs = [Event("u1", "a", T0), Event("u2", "b", T0 + 1, "click", 1.5)]
    log.append(evs)
    log.append([Event("u3", "c", T0 + 2)])
    lines = log.path.read_text().splitlines()
    assert [json.loads(x) for x in lines] == [
        {"user_id": "u1", "item_id": "a", "ts": T0, "event": "interaction", "value": None},
        {"user_id": "u2", "item_id": "b", "ts": T0 + 1, "event": "click", "value": 1.5},
        {"user_id": "u3", "item_id": "c", "ts": T0 + 2, "event": "interaction", "value": None},
    ]


def test_concurrent_locked_appends_never_interleave(tmp_path):
    log = EventLog(tmp_path / "events.jsonl")
    n_threads, per_thread = 8, 125
    errors = locked_appends_from_threads(log, n_threads, per_thread,
                                         lambda t, k: Event(f"user-{t}", "a" * 50 + str(k), T0 + k, "view", float(k)))
    assert not errors
    lines = log.path.read_text().splitlines()
    assert len(lines) == n_threads * per_thread == 1000
    rows = [json.loads(x) for x in lines]  # every line is one whole JSON object
    seen = {(r["user_id"], r["ts"]) for r in rows}
    assert len(seen) == 1000
    for t in range(n_threads):  # each thread's own events stay in its order
        assert [r["ts"] for r in rows if r["user_id"] == f"user-{t}"] == [T0 + k for k in range(per_thread)]

    df = eventlog.read_event_frame(log.path)
    assert list(df.columns) == schema.INTERACTION_COLUMNS
    assert len(df) == 1000


def test_events_by_user_keeps_first_appearance_and_log_order():
    evs = [Event("u2", "a", T0), Event("u1", "b", T0 + 1), Event("u2", "c", T0 - 5), Event("u1", "a", T0 + 2)]
    assert events_by_user(evs) == {"u2": [evs[0], evs[2]], "u1": [evs[1], evs[3]]}
    assert list(events_by_user(evs)) == ["u2", "u1"] and events_by_user([]) == {}


def test_read_event_frame_gives_canonical_columns(tmp_path):
    log = EventLog(tmp_path / "events.jsonl")
    log.append([Event("007", "12", T0, "click", None), Event("u2", "a", T0 + 1, "interaction", 2.5)])
    df = eventlog.read_event_frame(log.path)
    assert list(df.columns) == schema.INTERACTION_COLUMNS
    assert df["user_id"].tolist() == ["007", "u2"]  # id-like strings stay strings
    assert df["item_id"].tolist() == ["12", "a"]
    assert pd.to_numeric(df["ts"]).tolist() == [T0, T0 + 1]
    assert df["event"].tolist() == ["click", "interaction"]
    assert np.isnan(df["value"].iloc[0]) and df["value"].iloc[1] == 2.5
    # missing or empty log: empty frame with the same columns
    assert list(eventlog.read_event_frame(tmp_path / "absent.jsonl").columns) == schema.INTERACTION_COLUMNS
    (tmp_path / "empty.jsonl").write_text("")
    assert eventlog.read_event_frame(tmp_path / "empty.jsonl").empty


def test_repair_cuts_only_a_torn_last_line_and_read_gives_events(tmp_path):
    log = EventLog(tmp_path / "events.jsonl")
    assert log.repair() == 0 and log.read() == []  # no file yet
    log.append([Event("u1", "a", T0), Event("u2", "b", T0 + 1, "click", 1.5)])
    whole = log.path.read_bytes()
    assert log.repair() == 0 and log.path.read_bytes() == whole
    torn = b'{"user_id": "u3", "item_id": "c", "ts": 17'  # killed in the middle of an append
    with log.path.open("ab") as f:
        f.write(torn)
    assert log.repair() == len(torn)
    assert log.path.read_bytes() == whole
    log.append([Event("u3", "c", T0 + 2)])  # the next append starts on a line of its own
    assert log.read() == [Event("u1", "a", T0), Event("u2", "b", T0 + 1, "click", 1.5), Event("u3", "c", T0 + 2)]
    (tmp_path / "one.jsonl").write_bytes(b'{"user_id": "u1", "item_')  # a torn first and only line
    assert EventLog(tmp_path / "one.jsonl").repair() == 24 and (tmp_path / "one.jsonl").read_bytes() == b""


def test_unapplied_skips_what_the_state_holds_and_repeats():
    state = {"hist_item_ids": ["a", "b"], "hist_ts": [T0, T0 + 10]}
    evs = [Event("u", "a", T0), Event("u", "a", T0 + 5), Event("u", "b", T0 + 10, "click"), Event("u", "c", T0 + 20),
           Event("u", "c", T0 + 20)]
    assert unapplied(state, evs) == [Event("u", "a", T0 + 5), Event("u", "c", T0 + 20)]
    assert unapplied({}, evs[:2]) == evs[:2] and unapplied({"hist_item_ids": None, "hist_ts": None}, []) == []
    # a replay leaves out what is older than a full history: it cannot be told apart and would fall off
    assert unapplied(state, [Event("u", "c", T0 - 1), Event("u", "d", T0 + 1)], history_len=2) == [Event("u", "d", T0 + 1)]
    assert unapplied(state, [Event("u", "c", T0 - 1)], history_len=3) == [Event("u", "c", T0 - 1)]  # not full yet


def test_replaying_a_log_after_a_crash_restores_the_state_exactly():
    """Log appended, online write lost for the last two events, then the client retries one of them."""
    evs = [Event("u", i, T0 + 60 * k) for k, i in enumerate("abcab")]
    full = _merge({}, evs)
    crashed = _merge({}, evs[:3])
    replayed = _merge(crashed, unapplied(crashed, evs, history_len=10))
    assert replayed == full
    retried = _merge(replayed, unapplied(replayed, [evs[4]]))
    assert retried == full


# ---------------------------------------------------------------- merge_behaviour

CATS = ["x", "y"]
ITEMS = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "categories": [["x"], ["y"], ["x", "y"], []]})
VEC = category_matrix(ITEMS, CATS)
SHORT_D, LONG_D = 1.0, 10.0


def _merge(state: dict, events: list[Event], history_len: int = 10) -> dict:
    return merge_behaviour(state, events, history_len, VEC, len(CATS), SHORT_D, LONG_D)


def _state(ids: list[str], ts: list[int], count: int | None = None) -> dict:
    return {"hist_item_ids": ids, "hist_ts": ts, "event_count": len(ids) if count is None else count}


def test_merging_many_users_at_once_gives_each_users_own_row():
    """``merge_behaviours`` (a batch's users in one pass) must write exactly what one merge per user would."""
    updates = [(_state(["a", "b"], [T0, T0 + 10]), [Event("u1", "c", T0 + 20)]),
               (_state([], []), [Event("u2", "d", T0 + 5), Event("u2", "a", T0 + 7)]),
               (_state(["b"] * 9, [T0 + k for k in range(9)]), [Event("u3", "a", T0 + 3), Event("u3", "c", T0 + 99)])]
    many = merge_behaviours(updates, 10, VEC, len(CATS), SHORT_D, LONG_D)
    assert many == [_merge(state, events) for state, events in updates]
    assert many[1]["hist_item_ids"] == ["d", "a"] and many[2]["event_count"] == 11


def test_merge_appends_in_timestamp_order():
    s = _merge(_state(["a", "b"], [T0, T0 + 10]), [Event("u", "c", T0 + 20), Event("u", "d", T0 + 30)])
    assert s["hist_item_ids"] == ["a", "b", "c", "d"]
    assert s["hist_ts"] == [T0, T0 + 10, T0 + 20, T0 + 30]
    assert s["last_event_ts"] == T0 + 30
    assert s["event_count"] == 4


def test_merge_inserts_a_late_event_at_its_time():
    s = _merge(_state(["a", "b", "c"], [T0, T0 + 10, T0 + 20]), [Event("u", "d", T0 + 5)])
    assert s["hist_item_ids"] == ["a", "d", "b", "c"]
    assert s["hist_ts"] == [T0, T0 + 5, T0 + 10, T0 + 20]
    assert s["last_event_ts"] == T0 + 20


def test_merge_equal_timestamps_keep_arrival_order():
    s = _merge(_state(["a", "b"], [T0, T0]), [Event("u", "d", T0), Event("u", "c", T0)])
    assert s["hist_item_ids"] == ["a", "b", "d", "c"]
    # also when the prior items would sort before them by id
    s = _merge(_state(["d"], [T0]), [Event("u", "c", T0), Event("u", "a", T0), Event("u", "b", T0)])
    assert s["hist_item_ids"] == ["d", "c", "a", "b"]


def test_merge_truncates_to_the_newest_history_len():
    s = _merge(_state(["a", "b", "c"], [T0, T0 + 10, T0 + 20], count=100),
               [Event("u", "d", T0 + 30), Event("u", "a", T0 + 15)], history_len=3)
    assert s["hist_item_ids"] == ["a", "c", "d"]
    assert s["hist_ts"] == [T0 + 15, T0 + 20, T0 + 30]
    assert s["event_count"] == 102  # counts every event, not just the kept ones
    # a late event older than the whole kept window falls off at once
    s2 = _merge(s, [Event("u", "b", T0 - 100)], history_len=3)
    assert s2["hist_item_ids"] == ["a", "c", "d"] and s2["event_count"] == 103


def test_merge_cat_shares_formula_two_categories():
    day = int(SECONDS_PER_DAY)
    # a (x) at T0, b (y) one short half-life later: x decays to 0.5 before b lands
    s = _merge(_state(["a"], [T0]), [Event("u", "b", T0 + day)])
    assert s["cat_share_short"] == pytest.approx([0.5 / 1.5, 1.0 / 1.5], abs=1e-6)
    lw = 0.5 ** (1 / LONG_D)
    assert s["cat_share_long"] == pytest.approx([lw / (lw + 1), 1 / (lw + 1)], abs=1e-6)
    # then c (x and y, half each) two days later
    s = _merge(s, [Event("u", "c", T0 + 3 * day)])
    acc = np.array([0.5, 1.0]) * 0.25 + 0.5
    assert s["cat_share_short"] == pytest.approx((acc / acc.sum()).tolist(), abs=1e-6)
    assert all(isinstance(v, float) for v in s["cat_share_short"] + s["cat_share_long"])


def test_merge_cat_shares_are_decayed_shares_of_the_kept_history():
    ids = ["a", "b", "c", "a", "d", "b", "b"]
    ts = [T0 + 3600 * k * k for k in range(len(ids))]
    s = _merge(_state(ids[:4], ts[:4]), [Event("u", i, t) for i, t in zip(ids[4:], ts[4:])], history_len=5)
    kept_ids, kept_ts = ids[-5:], np.array(ts[-5:], dtype=np.float64)
    assert s["hist_item_ids"] == kept_ids
    vecs = np.stack([VEC[i] for i in kept_ids])
    # exactly what the offline features hold for the same history (float32, as stored)
    assert s["cat_share_short"] == decayed_shares(kept_ts, vecs, SHORT_D * SECONDS_PER_DAY)[-1].astype(np.float32).tolist()
    assert s["cat_share_long"] == decayed_shares(kept_ts, vecs, LONG_D * SECONDS_PER_DAY)[-1].astype(np.float32).tolist()
    assert s["cat_share_recent"] == recent_shares(vecs, 2.0)[-1].astype(np.float32).tolist()
    assert sum(s["cat_share_short"]) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("prior", [{}, {"hist_item_ids": None, "hist_ts": None, "event_count": None}])
def test_merge_from_empty_state(prior):
    s = _merge(prior, [Event("u", "b", T0 + 7), Event("u", "a", T0)])
    assert s["hist_item_ids"] == ["a", "b"] and s["hist_ts"] == [T0, T0 + 7]
    assert s["event_count"] == 2 and s["last_event_ts"] == T0 + 7
    assert len(s["cat_share_short"]) == len(s["cat_share_long"]) == 2
    # an item without categories only: all-zero shares, never NaN
    z = _merge({}, [Event("u", "d", T0)])
    assert z["cat_share_short"] == [0.0, 0.0] and z["cat_share_long"] == [0.0, 0.0]
    # no events and no history
    e = _merge({}, [])
    assert e["hist_item_ids"] == [] and e["event_count"] == 0 and e["last_event_ts"] == 0
    assert e["cat_share_short"] == [0.0, 0.0]


# ---------------------------------------------------------------- ingest reads the event log


def test_ingest_appends_the_event_log(tmp_path: Path):
    events = tmp_path / "data" / "events" / "events.jsonl"
    events.parent.mkdir(parents=True)
    rows = [
        {"user_id": "live-user", "item_id": "i00001", "ts": T0 + 200 * 86400, "event": "click", "value": 1.0},
        {"user_id": "live-user", "item_id": "i00002", "ts": T0 + 200 * 86400 + 60, "event": "interaction", "value": None},
        {"user_id": "live-user", "item_id": "ghost", "ts": T0 + 200 * 86400 + 120, "event": "interaction", "value": None},
    ]
    events.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {
        "data": {"dataset": "synthetic", "raw_dir": "data/raw", "event_log": "data/events/events.jsonl"},
        "ingest": {"max_bad_fraction": 0.5, "synthetic": {"n_users": 10, "n_items": 20, "events_per_user": 6}},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(cfg))
    params = load_params(tmp_path / "params.yaml")

    result = ingest.run(params)
    raw = tmp_path / "data" / "raw"
    inter = pd.read_parquet(raw / "interactions.parquet")
    quarantine = pd.read_parquet(raw / "quarantine.parquet")

    live = inter[inter["user_id"] == "live-user"]
    assert live["item_id"].tolist() == ["i00001", "i00002"]
    assert live["ts"].tolist() == [pd.Timestamp(T0 + 200 * 86400, unit="s", tz="UTC"),
                                   pd.Timestamp(T0 + 200 * 86400 + 60, unit="s", tz="UTC")]
    assert live["event"].tolist() == ["click", "interaction"]
    assert live.index.max() == len(inter) - 1  # the newest events, last in time order

    assert len(quarantine) == 1
    q = quarantine.iloc[0]
    assert q["reason"] == schema.UNKNOWN_ITEM and q["table"] == "interactions"
    assert q["item_id"] == "ghost" and q["user_id"] == "live-user"
    assert result.rows_quarantined == 1
    assert result.quarantine_counts == {"interactions.unknown_item": 1}
    assert result.users == 11
    assert result.rows_in == len(inter) + 20 + 1


def test_fresh_events_then_write_merged_is_apply_events():
    """The service reads, logs only the fresh events, then writes: the same row as apply_events."""
    from features.online import BehaviourSpec, apply_events, fresh_events, write_merged

    class Rows:  # an online store of dict rows
        def __init__(self):
            self.rows: dict[str, dict] = {}

        def read(self, users):
            return [dict(self.rows.get(u, {})) for u in users]

        def write(self, rows):
            for r in rows:
                self.rows[r["user_id"]] = {k: v for k, v in r.items() if k not in ("user_id", "event_timestamp")}

    spec = BehaviourSpec(5, {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0])}, 2, 1.0, 30.0)
    evs = {"u": [Event("u", "a", T0), Event("u", "b", T0 + 60)], "v": [Event("v", "a", T0)]}
    one, two = Rows(), Rows()
    assert apply_events(one, evs, spec) == 3
    states, fresh = fresh_events(two, evs)
    assert write_merged(two, states, fresh, spec) == 3 and two.rows == one.rows
    states, fresh = fresh_events(two, {"u": [Event("u", "b", T0 + 60), Event("u", "b", T0 + 61)]})
    assert fresh == {"u": [Event("u", "b", T0 + 61)]}  # the retry is not fresh, the new second is


# ---------------------------------------------------------------- forgetting a user


def test_a_tombstone_erases_the_users_earlier_events_from_every_reader(tmp_path):
    from core.eventlog import EventLog, forgotten_users, read_event_frame, read_events, tombstone

    log_file = tmp_path / "events.jsonl"
    log = EventLog(log_file)
    log.append([Event("gone", "a", T0), Event("kept", "b", T0 + 1), Event("gone", "c", T0 + 2)])
    log.append([tombstone("gone", T0 + 10)])
    log.append([Event("gone", "d", T0 + 20)])  # came back after the forget: a new history
    assert [(e.user_id, e.item_id) for e in read_events(log_file)] == [("kept", "b"), ("gone", "d")]
    frame = read_event_frame(log_file)
    assert frame[["user_id", "item_id", "ts"]].values.tolist() == [["kept", "b", str(T0 + 1)], ["gone", "d", str(T0 + 20)]]
    assert forgotten_users(log_file) == {"gone": T0 + 10}


def test_drop_forgotten_removes_source_rows_up_to_the_tombstone_and_unreadable_ones():
    from core.eventlog import drop_forgotten

    rows = pd.DataFrame({"user_id": ["gone", "gone", "gone", "kept"], "item_id": ["a", "b", "c", "a"],
                         "ts": [str(T0), "not a time", str(T0 + 100), str(T0)]})
    left, n = drop_forgotten(rows, {"gone": T0 + 10})
    assert n == 2 and left["item_id"].tolist() == ["c", "a"]  # after the forget: kept; unreadable: forgotten
    parsed = rows.assign(ts=pd.to_datetime([T0, T0, T0 + 100, T0], unit="s", utc=True))
    assert drop_forgotten(parsed, {"gone": T0 + 10})[1] == 2 and drop_forgotten(parsed, {})[1] == 0


def test_ingest_drops_a_forgotten_user_from_source_and_log(tmp_path: Path):
    """The user is in the source data and in the log; after the tombstone, ingest keeps none of it,
    and an event they sent after the forget starts a new history."""
    from core.eventlog import tombstone

    events = tmp_path / "data" / "events" / "events.jsonl"
    cfg = {"data": {"dataset": "synthetic", "raw_dir": "data/raw", "event_log": "data/events/events.jsonl"},
           "ingest": {"max_bad_fraction": 0.5, "synthetic": {"n_users": 10, "n_items": 20, "events_per_user": 6}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(cfg))
    params = load_params(tmp_path / "params.yaml")
    ingest.run(params)
    raw = pd.read_parquet(tmp_path / "data" / "raw" / "interactions.parquet")
    user, others = raw["user_id"].iloc[0], raw["user_id"].nunique() - 1
    forget_at = int(raw["ts"].max().timestamp()) + 10
    log = EventLog(events)
    log.append([Event(user, raw["item_id"].iloc[0], forget_at - 5), tombstone(user, forget_at),
                Event(user, raw["item_id"].iloc[1], forget_at + 5)])
    result = ingest.run(params)
    after = pd.read_parquet(tmp_path / "data" / "raw" / "interactions.parquet")
    mine = after[after["user_id"] == user]
    assert mine["ts"].tolist() == [pd.Timestamp(forget_at + 5, unit="s", tz="UTC")]  # only the new history
    assert after["user_id"].nunique() == others + 1 and result.rows_clean == len(after) + len(pd.read_parquet(tmp_path / "data" / "raw" / "items.parquet"))
