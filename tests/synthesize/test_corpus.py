import pytest

from revgen.errors import UserError
from revgen.synthesize.corpus import CorpusStats, content_id, read_documents
from revgen.synthesize.segment import Segmenter
from tests.helpers import write_jsonl


def docs(source, **kw):
    return list(read_documents(str(source), **kw))


def test_jsonl_with_text_and_id_fields(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"body": "alpha beta", "key": 7}, {"body": "gamma", "key": "x"}])
    got = docs(path, text_field="body", id_field="key")
    assert [(d.id, d.text) for d in got] == [("7", "alpha beta"), ("x", "gamma")]
    assert got[1].source.endswith("c.jsonl line 2")


def test_content_ids_are_stable_and_content_derived(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"text": "same"}, {"text": "other"}])
    first, second = docs(path), docs(path)
    assert [d.id for d in first] == [d.id for d in second] == [content_id("same"), content_id("other")]


def test_txt_files_as_documents_or_paragraphs_and_folders(tmp_path):
    (tmp_path / "b.txt").write_text("Para one line one.\nline two.\n\n\nPara two.\n")
    (tmp_path / "a.txt").write_text("Only one.")
    whole = docs(tmp_path)
    assert [d.text for d in whole] == ["Only one.", "Para one line one.\nline two.\n\n\nPara two.\n"]
    paras = docs(tmp_path / "b.txt", txt_mode="paragraphs")
    assert [(d.text, d.source.split()[-1]) for d in paras] == [
        ("Para one line one.\nline two.", "1"),
        ("Para two.", "5"),
    ]


def test_parquet_streams_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{"text": f"doc {i}"} for i in range(2500)]), tmp_path / "c.parquet")
    got = docs(tmp_path / "c.parquet")
    assert len(got) == 2500 and got[-1].text == "doc 2499" and got[-1].source.endswith("row 2499")


@pytest.mark.parametrize(
    "rows, match",
    [
        ([{"text": "ok"}, "{not json"], r"c\.jsonl line 2: malformed JSON"),
        ([{"text": "ok"}, {"text": "ok"}, {"body": "x"}], r"c\.jsonl line 3: missing text field 'text'"),
        ([{"text": ["a"]}], r"c\.jsonl line 1: text field 'text' must be a string, got list"),
    ],
)
def test_bad_rows_stop_with_file_and_line(tmp_path, rows, match):
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    with pytest.raises(UserError, match=match) as err:
        docs(path)
    assert "--on-bad-row skip" in str(err.value)


def test_bad_rows_can_be_skipped_and_counted(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"text": "a"}, "{oops", {"text": 3}, {"text": "b"}])
    stats = CorpusStats()
    got = docs(path, on_bad_row="skip", stats=stats)
    assert [d.text for d in got] == ["a", "b"] and stats.bad_rows == 2 and stats.documents == 2
    assert "line 2" in stats.bad_row_examples[0] and "line 3" in stats.bad_row_examples[1]


def test_missing_sources_and_bad_options(tmp_path):
    with pytest.raises(UserError, match="is not a file, a folder or a Hub dataset id"):
        docs(tmp_path / "nope.jsonl")
    with pytest.raises(UserError, match="could not load corpus 'nobody/nothing'"):
        docs("nobody/nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no"):
        docs(tmp_path / "empty")
    with pytest.raises(UserError, match="txt_mode"):
        docs(tmp_path, txt_mode="lines")


def test_segmenter_splits_long_documents_within_budget(tokenizer):
    paragraphs = [
        " ".join(f"Sentence {p}.{s} talks about topic {p} at some length." for s in range(6)) for p in range(8)
    ]
    doc = "\n\n".join(paragraphs)
    seg = Segmenter(tokenizer, max_tokens=120, min_words=5)
    parts = seg(doc)
    assert len(parts) > 1 and seg.stats.split_documents == 1
    assert all(len(tokenizer(p, add_special_tokens=False)["input_ids"]) <= 120 for p in parts)
    assert " ".join(" ".join(parts).split()) == " ".join(doc.split())  # nothing lost, nothing invented
    huge = "word " * 1000  # no sentence boundary at all: cut at token boundaries
    assert all(len(tokenizer(p, add_special_tokens=False)["input_ids"]) <= 120 for p in seg(huge))


def test_segmenter_keeps_short_documents_whole_and_skips_tiny_ones(tokenizer):
    seg = Segmenter(tokenizer, max_tokens=200, min_words=5)
    assert seg("One two three four five six.") == ["One two three four five six."]
    assert seg("Too short.") == [] and seg("   ") == []
    assert (seg.stats.segments, seg.stats.skipped_short, seg.stats.skipped_empty) == (1, 1, 1)
