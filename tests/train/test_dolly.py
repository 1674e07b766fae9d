import json
from collections import Counter

import pytest

from revgen.dolly import data_hash, load_pairs
from revgen.errors import UserError
from tests.helpers import write_jsonl

ROW = {"instruction": "Name a color.", "context": "", "response": "Blue.", "category": "open_qa"}


def test_bundled_sample_is_the_first_382_dolly_rows(dolly_rows):
    assert len(dolly_rows) == 382
    assert Counter(r["category"] for r in dolly_rows)["open_qa"] == 98
    assert dolly_rows[0]["instruction"].startswith("When did Virgin Australia start operating?")
    assert data_hash("dolly-sample") == "52d16f07fd361e10a626c65c1082b7841460fd732d5c976187519e972d5fe104"


def test_jsonl_json_parquet_round_trip(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [ROW, {**ROW, "instruction": "Name a fruit.", "response": "Apple."}]
    write_jsonl(tmp_path / "d.jsonl", rows)
    (tmp_path / "d.json").write_text(json.dumps(rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    for name in ("d.jsonl", "d.json", "d.parquet"):
        assert load_pairs(str(tmp_path / name)) == rows


def test_optional_fields_default_to_empty(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"instruction": "a", "response": "b"}])
    assert load_pairs(str(path)) == [{"instruction": "a", "response": "b", "context": "", "category": ""}]


@pytest.mark.parametrize(
    "lines, match",
    [
        ([ROW, ROW, '{"instruction": "x", "response": '], r"d\.jsonl line 3: malformed JSON"),
        ([ROW, {"instruction": "x", "context": ""}], r"d\.jsonl line 2: missing key 'response'"),
        ([{**ROW, "response": 42}], r"d\.jsonl line 1: field 'response' must be a string, got int"),
        ([ROW, "[1, 2]"], r"d\.jsonl line 2: expected a JSON object"),
    ],
)
def test_bad_jsonl_names_file_and_line(tmp_path, lines, match):
    path = write_jsonl(tmp_path / "d.jsonl", lines)
    with pytest.raises(UserError, match=match):
        load_pairs(str(path))


def test_bad_parquet_row_is_named(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{**ROW, "instruction": 3}, {**ROW, "instruction": 4}]), tmp_path / "d.parquet")
    with pytest.raises(UserError, match=r"d\.parquet row 0: field 'instruction' must be a string, got int"):
        load_pairs(str(tmp_path / "d.parquet"))
    pq.write_table(pa.Table.from_pylist([{"instruction": "a", "text": "b"}]), tmp_path / "e.parquet")
    with pytest.raises(UserError, match=r"e\.parquet row 0: missing key 'response'"):
        load_pairs(str(tmp_path / "e.parquet"))


def test_unsupported_and_missing_sources(tmp_path):
    (tmp_path / "d.csv").write_text("a,b\n")
    with pytest.raises(UserError, match="unsupported file type '.csv'"):
        load_pairs(str(tmp_path / "d.csv"))
    with pytest.raises(UserError, match="not a .jsonl/.json/.parquet file or a Hub dataset id"):
        load_pairs(str(tmp_path / "nope.jsonl"))
    with pytest.raises(UserError, match="could not load dataset 'nobody/nothing'"):
        load_pairs("nobody/nothing")  # offline in tests: a clear error, not a traceback
    with pytest.raises(UserError, match="no rows"):
        load_pairs(str(write_jsonl(tmp_path / "empty.jsonl", [])))
