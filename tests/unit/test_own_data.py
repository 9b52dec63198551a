"""Own data through the csv adapter: errors that name the file, the column and the fix; categories
as a JSON list or '|'-separated; schema errors are not retried by the Prefect flows."""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest
from prefect.states import Failed

from features import ingest
from core.params import load_params
from core.schema import DataError, SchemaError, parse_categories, validate
from flows.stages import features_task, ingest_task, retry_unless_data_error

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "own-data"


def _csv_params(tmp_path: Path, src: Path):
    (tmp_path / "params.yaml").write_text("{}\n")
    return load_params(tmp_path / "params.yaml", {"data.dataset": "csv", "data.source_dir": str(src),
                                                  "data.event_log": str(tmp_path / "events.jsonl")})


def _write(src: Path, interactions: str, items: str) -> Path:
    src.mkdir(parents=True, exist_ok=True)
    (src / "interactions.csv").write_text(interactions)
    (src / "items.csv").write_text(items)
    return src


ITEMS = 'item_id,title,text,categories\na,A,About a,"[""jazz"", ""rock""]"\nb,B,About b,pop|rock\n'


def test_missing_ts_column_names_the_file_the_column_and_the_fix(tmp_path):
    src = _write(tmp_path / "src", "user_id,item_id,timestamp\nu1,a,1700000000\n", ITEMS)
    with pytest.raises(SchemaError) as e:
        ingest.run(_csv_params(tmp_path, src))
    msg = str(e.value)
    assert str(src / "interactions.csv") in msg
    assert "no 'ts' column" in msg and "rename its column 'timestamp' to 'ts'" in msg
    assert "Your own data" in msg


def test_missing_column_without_a_known_alias_says_to_add_it():
    with pytest.raises(SchemaError, match="add a 'user_id' column"):
        validate(pd.DataFrame({"item_id": ["a"], "ts": [1]}), pd.DataFrame({"item_id": ["a"]}))


def test_categories_accept_a_json_list_or_bars(tmp_path):
    src = _write(tmp_path / "src", "user_id,item_id,ts\nu1,a,1700000000\nu1,b,1700000060\n", ITEMS)
    ingest.run(_csv_params(tmp_path, src))
    items = pd.read_parquet(tmp_path / "data" / "raw" / "items.parquet")
    assert [list(c) for c in items["categories"]] == [["jazz", "rock"], ["pop", "rock"]]


@pytest.mark.parametrize("cell, expected", [
    ('["jazz", "rock"]', ["jazz", "rock"]), ("jazz|rock", ["jazz", "rock"]), (" jazz ", ["jazz"]),
    ("[]", []), ("", []), (None, []), (["a", " b "], ["a", "b"]),
])
def test_parse_categories(cell, expected):
    assert parse_categories(cell) == expected


def test_broken_json_list_names_the_item():
    items = pd.DataFrame({"item_id": ["a", "b"], "categories": ["jazz", '["rock", pop]']})
    with pytest.raises(SchemaError, match="item 'b'.*not a JSON list"):
        validate(pd.DataFrame({"user_id": ["u"], "item_id": ["a"], "ts": [1_700_000_000]}), items)


def test_other_separators_are_kept_whole_with_a_warning(caplog):
    items = pd.DataFrame({"item_id": ["a"], "categories": ["jazz;rock"]})
    with caplog.at_level(logging.WARNING, logger="core.schema"):
        v = validate(pd.DataFrame({"user_id": ["u"], "item_id": ["a"], "ts": [1_700_000_000]}), items)
    assert list(v.items["categories"][0]) == ["jazz;rock"]
    assert "separate categories with '|'" in caplog.text


def test_missing_source_files_are_a_data_error_naming_the_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="interactions.csv"):
        ingest.run(_csv_params(tmp_path, tmp_path / "empty"))


def test_schema_and_validation_errors_are_not_retried_transient_ones_are():
    assert ingest_task.retries == 2 and features_task.retries == 2
    assert ingest_task.retry_condition_fn is retry_unless_data_error
    for exc in (SchemaError("no 'ts'"), ingest.IngestError("too many bad rows")):
        assert retry_unless_data_error(ingest_task, None, Failed(data=exc)) is False
    assert retry_unless_data_error(ingest_task, None, Failed(data=OSError("disk busy"))) is True


def test_the_readme_example_ingests_cleanly(tmp_path):
    result = ingest.run(_csv_params(tmp_path, EXAMPLE))
    assert result.rows_quarantined == 0
    assert result.items >= 10 and result.users >= 5
    items = pd.read_parquet(tmp_path / "data" / "raw" / "items.parquet")
    assert all(len(c) >= 1 for c in items["categories"])
