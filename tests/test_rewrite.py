"""Back-and-forth translation: the rewrite prompt, the grounding filters, a real SmolLM2 rewrite and its resume."""

import json

import pytest

from revgen import shards
from revgen.errors import UserError
from revgen.rewrite import RewriteConfig, grounding, prompt_text, rewrite
from tests.helpers import write_jsonl

PASSAGE = "The Nile is the longest river in Africa. It flows north through Egypt into the Mediterranean Sea."


def test_prompt_renders_instruction_and_passage_exactly():
    text = prompt_text("Where does the Nile flow? {passage}", PASSAGE)
    assert text.endswith(f"Instruction: Where does the Nile flow? {{passage}}\n\nPassage:\n{PASSAGE}")


@pytest.mark.parametrize("rewrite_text, finish, reason", [
    ("The Nile flows north through Egypt and into the Mediterranean Sea; it is Africa's longest river.", "stop", None),
    ("The Nile flows north through Egypt into the Mediterranean Sea and", "length", "cut_by_length"),
    ("I'm sorry, I cannot answer that.", "stop", "refusal"),
    ("Passage: The Nile is the longest river in Africa.", "stop", "prompt_leak"),
    ("It is a river.", "stop", "drops_content"),
    ("The Nile, longest river in Africa, flows north through Egypt to the Mediterranean Sea, home to crocodiles, "
     "pharaohs, pyramids, feluccas, papyrus, tourism, dams, irrigation, agriculture, fishermen, sunsets.", "stop", "adds_content"),
    ("   ", "stop", "empty"),
])  # fmt: skip
def test_grounding_filters_keep_and_drop_named_cases(rewrite_text, finish, reason):
    assert grounding("Where does the Nile flow?", PASSAGE, rewrite_text, finish, 0.3, 0.5) == reason


def test_bad_input_is_one_clear_error(tmp_path):
    bad = write_jsonl(tmp_path / "r.jsonl", [{"instruction": "Q", "output": "A passage."}, {"instruction": "Q2"}])
    with pytest.raises(UserError, match=r"r.jsonl line 2: expected a record with string instruction and output"):
        rewrite(RewriteConfig(input=str(bad), output_dir=str(tmp_path / "o")))
    empty = write_jsonl(tmp_path / "e.jsonl", [{"instruction": "Q", "output": "  "}])
    with pytest.raises(UserError, match="has no output"):
        rewrite(RewriteConfig(input=str(empty), output_dir=str(tmp_path / "o2")))


@pytest.mark.slow
def test_rewrite_end_to_end_and_resume_gives_the_same_records(tmp_path, dolly_rows, base_model):
    rows = [{"id": f"d{i}", "instruction": r["instruction"], "output": r["context"]}
            for i, r in enumerate(dolly_rows) if r["context"] and len(r["context"]) < 600][:6]  # fmt: skip
    src = write_jsonl(tmp_path / "recs.jsonl", rows)
    cfg = dict(input=str(src), model=base_model, max_new_tokens=48, batch_size=2, shard_size=3, keep_original=True,
               dtype="float32")  # fmt: skip
    ref = rewrite(RewriteConfig(output_dir=str(tmp_path / "a"), **cfg))
    assert ref["counts"]["input"] == 6
    lines = list(shards.iter_records(tmp_path / "a")) + list(shards.iter_records(tmp_path / "a", dropped=True))
    assert sorted(r["meta"]["source_id"] for r in lines) == sorted([r["id"] for r in rows] * 2)
    rewritten = [r for r in lines if r["meta"]["variant"] == "rewritten"]
    assert all(
        r["meta"]["passage"] in {x["output"] for x in rows} and r["meta"]["rewriter"] == base_model for r in rewritten
    )
    # a run killed mid-shard: second shard half written, torn last line, no .done
    rewrite(RewriteConfig(output_dir=str(tmp_path / "b"), **cfg))
    part = tmp_path / "b" / "shards" / "00001.jsonl"
    text = part.read_text()
    part.write_text(text[: len(text) // 2])
    (tmp_path / "b" / "shards" / "00001.done").unlink()
    again = rewrite(RewriteConfig(output_dir=str(tmp_path / "b"), **cfg))
    assert again["counts"] == ref["counts"]
    for name in ("00000.jsonl", "00001.jsonl"):
        a = sorted(json.dumps(r, sort_keys=True) for r in shards.iter_records(tmp_path / "a" / "shards" / name))
        b = sorted(json.dumps(r, sort_keys=True) for r in shards.iter_records(tmp_path / "b" / "shards" / name))
        assert a == b, name
