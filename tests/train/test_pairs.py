import pytest

from revgen.errors import UserError
from revgen.prompts import get_template
from revgen.train.pairs import build_pairs

T = get_template("seed")
ROWS = [
    {"instruction": "Who wrote it?", "context": "A book by Ann.", "response": "Ann wrote it.", "category": "closed_qa"},
    {"instruction": "Name a color.", "context": "", "response": "Blue.", "category": "open_qa"},
    {"instruction": "  ", "context": "", "response": "Empty instruction.", "category": "open_qa"},
]


def test_default_ignores_context_like_the_seed():
    pairs, stats = build_pairs(ROWS, T)
    assert [p["completion"] for p in pairs] == ["Who wrote it?", "Name a color."]
    assert pairs[0]["prompt"] == T.prompt("Ann wrote it.")
    assert (stats.rows, stats.kept, stats.dropped_empty) == (3, 2, 1)


def test_context_append_and_drop():
    pairs, _ = build_pairs(ROWS, T, context="append")
    assert pairs[0]["text"] == "Ann wrote it.\n\nA book by Ann."
    pairs, stats = build_pairs(ROWS, T, context="drop")
    assert [p["completion"] for p in pairs] == ["Name a color."] and stats.dropped_context == 1


def test_category_selection_counts_what_it_drops():
    pairs, stats = build_pairs(ROWS, T, categories=["closed_qa"])
    assert len(pairs) == 1 and stats.dropped_category == 2 and stats.categories == {"closed_qa": 1}


def test_bad_modes_are_errors():
    with pytest.raises(UserError, match="context must be one of"):
        build_pairs(ROWS, T, context="merge")
    with pytest.raises(UserError, match="overlong must be one of"):
        build_pairs(ROWS, T, overlong="cut")


def test_overlong_rows_are_truncated_or_dropped_and_counted(tokenizer, dolly_rows):
    max_length = 128
    pairs, stats = build_pairs(dolly_rows, T, tokenizer, max_length=max_length)
    assert stats.truncated > 0
    assert stats.kept + stats.dropped_overlong + stats.dropped_empty == stats.rows
    for p in pairs:  # prompt + completion + EOS fit, and the instruction is never cut
        assert len(tokenizer(p["prompt"] + p["completion"])["input_ids"]) + 1 <= max_length
    originals = {r["instruction"].strip() for r in dolly_rows}
    assert all(p["completion"] in originals for p in pairs)

    dropped, dstats = build_pairs(dolly_rows, T, tokenizer, max_length=max_length, overlong="drop")
    assert dstats.truncated == 0 and dstats.dropped_overlong >= stats.truncated
    assert len(dropped) == stats.rows - dstats.dropped_overlong - dstats.dropped_empty
