"""Each filter keeps and drops what it should (named cases, datatrove's check_filter style)."""

import pytest

from revgen.curate.dedup import ExactDedup, NearDedup
from revgen.curate.filters import FilterRunner, GopherQuality
from revgen.curate.filters.instruction import (
    CopiesOutput,
    Empty,
    MediaWords,
    NotInstruction,
    Refusal,
    TemplateLeak,
    UnseenReference,
    WordCount,
    instruction_filters,
)

OUT = (
    "The Eiffel Tower was built for the 1889 World's Fair in Paris. It was designed by the engineering firm of "
    "Gustave Eiffel and is one of the most visited monuments in the world, with millions of visitors every year."
)


def rec(instruction, output=OUT, input="", id="r"):
    return {"id": id, "instruction": instruction, "input": input, "output": output}


def check(f, instruction, keep, reason=None, **kw):
    verdict = f(rec(instruction, **kw))
    got_keep, got_reason = (
        (verdict[0], verdict[1] if len(verdict) > 1 else "") if isinstance(verdict, tuple) else (verdict, "")
    )
    assert got_keep is keep, (f.name, instruction, verdict)
    if reason:
        assert got_reason == reason


@pytest.mark.parametrize(
    "f, instruction, keep, reason",
    [
        (Empty(), "   ", False, None),
        (Empty(), "Why was the Eiffel Tower built?", True, None),
        (WordCount(), "Describe Paris.", False, "too_short"),
        (WordCount(), "Describe the history of Paris.", True, None),
        (WordCount(max_words=5), "Describe the long and winding history of Paris.", False, "too_long"),
        (WordCount(min_words=None, max_words=None), "Hi", True, None),
        (TemplateLeak(), "Tell me about the tower.\n### Response:", False, None),
        (TemplateLeak(), "Tell me about the tower's response to wind.", True, None),
        (Refusal(), "I'm sorry, but I cannot help with that request.", False, None),
        (Refusal(), "As an AI language model, describe the tower.", False, None),
        (Refusal(), "Explain why some people are sorry they missed the fair.", True, None),
        (UnseenReference(), "Summarize the passage above in two sentences.", False, None),
        (UnseenReference(), "Based on the information provided, when was it built?", False, None),
        (UnseenReference(), "When was the Eiffel Tower built and by whom?", True, None),
        (UnseenReference(), "What is the output of `ls -l` when both paths are symlinks?", True, None),
        (UnseenReference(), "What is the story of how film started in the United States?", True, None),
        (UnseenReference(), "What is the output of the above code?", False, None),
        (UnseenReference(), "What are the output of the following code?", False, None),
        (UnseenReference(), "Summarize the story.", False, None),
        (UnseenReference(), "What does the following code print: print(2 + 2)", True, None),
        # dangling references, each class with the (tuning) case and one written after the change
        (UnseenReference(), "What is the output of the following code snippet?", False, "dangling_reference"),
        (UnseenReference(), "What does this script print when it is run twice?", False, "dangling_reference"),
        (UnseenReference(), "What is the output of this command?", False, "dangling_reference"),
        (UnseenReference(), "Explain what these options do to the archive.", False, "dangling_reference"),
        (
            UnseenReference(),
            "Which of the following is not a common outcome of a stalemate?",
            False,
            "dangling_reference",
        ),
        (UnseenReference(), "Which one of the following rivers is the longest?", False, "dangling_reference"),
        (UnseenReference(), "Which of the following are rivers: Nile, Seine, Everest?", True, None),
        (UnseenReference(), "Tell me which of the following are birds, sparrows, trout or robins", True, None),
        (UnseenReference(), "Classify each of the following as a fruit or a vegetable", True, None),
        (UnseenReference(), "What does this command do: `tar -xzf a.tgz`?", True, None),
        (UnseenReference(), "How do I sort a list in Python?", True, None),
        # template headings and role labels
        (TemplateLeak(), "### Example:\nShow how to use the tower's lift.", False, None),
        (TemplateLeak(), "## Usage\nDescribe the tower.", False, None),
        (TemplateLeak(), "Question: When was the Eiffel Tower built?", False, None),
        (TemplateLeak(), "Why was the tower built?\nAnswer: for the fair", False, None),
        (TemplateLeak(), "What question did the engineers answer: how tall can iron go?", True, None),
        (MediaWords(), "Draw a picture of the Eiffel Tower.", False, None),
        (MediaWords(), "Why is the Eiffel Tower famous?", True, None),
        (NotInstruction(), "The Eiffel Tower is in Paris.", False, None),
        (NotInstruction(), "Tell me about the Eiffel Tower.", True, None),
        (NotInstruction(), "The tower is tall. Why was it built?", True, None),
        (NotInstruction(), "I am visiting Paris next week. Suggest some monuments to see.", True, None),
    ],
)
def test_instruction_filters(f, instruction, keep, reason):
    check(f, instruction, keep, reason)


def test_unseen_reference_is_fine_when_the_input_is_there():
    check(UnseenReference(), "Summarize the passage above.", True, input="Some passage.")


def test_copying_the_output_is_caught_and_can_be_disabled():
    copy = "The Eiffel Tower was built for the 1889 World's Fair in Paris."
    check(CopiesOutput(), copy, False)
    check(CopiesOutput(), "When and why was the Eiffel Tower built?", True)
    check(CopiesOutput(max_overlap=None), copy, True)


@pytest.mark.parametrize(
    "text, keep, reason",
    [
        (OUT, True, None),
        ("Too short to be a document.", False, "too_few_words"),
        ("aaaa bbbb " * 20 + "the and of", False, "repeated_2gram"),
        ("1234 5678 9012 3456 " * 10 + "the and", False, "not_alphabetic"),
        ("Supercalifragilisticexpialidocious antidisestablishmentarianism " * 10 + "the of", False, "long_words"),
        ("Cats sleep a lot. Dogs bark loudly. Birds sing early every morning in spring.", False, "few_stop_words"),
        # under 50 words one stop word will do (a docstring paragraph); from 50 words Gopher's two
        (
            "Dict subclass for counting hashable items. Sometimes called a bag or multiset. Elements are stored as "
            "dictionary keys and their counts are stored as dictionary values.",
            True,
            None,
        ),
        (
            "Cats sleep a lot. Dogs bark loudly. Birds sing early every morning in spring. " * 4 + "the end",
            False,
            "few_stop_words",
        ),
        (
            "\n".join(["Same line repeated here with the and of words."] * 5 + ["A different line of the text."]),
            False,
            "duplicate_lines",
        ),
    ],
)
def test_gopher_quality(text, keep, reason):
    check(GopherQuality(min_words=10), "Why?", keep, reason, output=text)


def test_list_markers_do_not_count_against_the_alphabetic_share():
    numbered = "Three rivers:\n1. Nile\n2. Amazon\n3. Yangtze"  # 4 of 7 tokens have letters; of the words, all
    check(GopherQuality(min_words=3, min_stop_words=None), "Name three rivers.", True, output=numbered)
    check(
        GopherQuality(min_words=3, min_stop_words=None),
        "Why?",
        False,
        "not_alphabetic",
        output="1990 1995 2001 2010 and",
    )


def test_gopher_thresholds_turn_off_with_none():
    off = dict(
        min_words=None,
        max_words=None,
        min_mean_word_length=None,
        max_mean_word_length=None,
        min_alpha_ratio=None,
        min_stop_words=None,
        max_duplicate_line_ratio=None,
        max_top_2gram_ratio=None,
    )
    check(GopherQuality(**off), "Why?", True, output="1234 5678")


def test_exact_dedup_normalises_and_names_the_first_occurrence():
    d = ExactDedup()
    assert d(rec("Why was it built?", id="a")) == (True,)
    verdict = d(rec("why was it built", output=OUT.upper(), id="b"))
    assert verdict == (False, "exact", {"duplicate_of": "a"})
    assert d(rec("When was it built?", id="c")) == (True,)


def test_near_dedup_catches_small_edits_and_keeps_distinct_texts():
    d = NearDedup("output", ngram=3)
    base = OUT + " It stands 330 metres tall and was the tallest structure in the world until 1930."
    assert d(rec("q", output=base, id="a")) is True
    edited = base.replace("millions of", "many millions of").replace("1930", "1931")
    assert d(rec("q", output=edited, id="b")) == (False, "near_output", {"duplicate_of": "a"})
    other = "Photosynthesis converts light energy into chemical energy stored in glucose molecules inside plant cells."
    assert d(rec("q", output=other, id="c")) is True


def test_runner_counts_add_up_and_reports_reasons():
    dropped = []
    runner = FilterRunner(
        instruction_filters() + [ExactDedup()], lambda r, reason, detail: dropped.append((r["id"], reason, detail))
    )
    rows = [
        rec("Why was the Eiffel Tower built?", id="1"),
        rec("Draw a map of Paris please.", id="2"),
        rec("Why was the Eiffel tower built", id="3"),
        rec("", id="4"),
        rec("Paris.", id="5"),
    ]
    kept = [r["id"] for r in runner.run(rows)]
    c = runner.counts
    assert kept == ["1"] and c["total"] == 5 and c["kept"] == 1
    assert c["total"] == c["kept"] + sum(v for k, v in c.items() if k.startswith("dropped/"))
    assert dropped == [
        ("2", "media_word", {}),
        ("3", "dedup/exact", {"duplicate_of": "1"}),
        ("4", "empty", {}),
        ("5", "length/too_short", {}),
    ]


@pytest.mark.parametrize(
    "text, score",
    [
        ("The answer is complete.\nScore: 4", 4),
        ("Reasoning...\n\n**Score:** 5\n", 5),
        ("Reasoning\nScore: 3/5", 3),
        ("score: 2.", 2),
        ("Score: 4\nBut maybe 5.", None),  # the score must be the last line
        ("I would rate it a 4.", None),
        ("Score: 7", None),
        ("Score: 4.5", None),
        ("", None),
    ],
)
def test_self_curation_parser_is_strict(text, score):
    from revgen.curate.judge import parse_score

    assert parse_score(text) == score


@pytest.mark.parametrize(
    "instruction, output, keep, reason",
    [
        ("Why was the Eiffel Tower built?", OUT, True, None),
        ("Pourquoi la tour Eiffel a-t-elle été construite et par qui ?", OUT, False, "mismatch"),
        ("Warum wurde der Eiffelturm für die Weltausstellung gebaut?", OUT, False, "mismatch"),
        ("Ok?", OUT, True, None),  # too short to identify: kept, not guessed
    ],
)
def test_language_mismatch(instruction, output, keep, reason):
    from revgen.curate.filters.language import LanguageMismatch

    check(LanguageMismatch(), instruction, keep, reason, output=output)


def test_language_allow_list():
    from revgen.curate.filters.language import LanguageMismatch

    german = (
        "Der Eiffelturm wurde für die Weltausstellung 1889 in Paris gebaut und ist eines der meistbesuchten Denkmäler."
    )
    check(
        LanguageMismatch(allowed=["english"]), "Warum wurde der Eiffelturm gebaut?", False, "not_allowed", output=german
    )
    check(LanguageMismatch(), "Warum wurde der Eiffelturm gebaut?", True, output=german)


def test_semantic_dedup_catches_paraphrases_and_keeps_other_topics():
    from revgen.curate.dedup import SemanticDedup

    d = SemanticDedup("instruction", threshold=0.85)
    assert d(rec("Why was the Eiffel Tower built?", id="a")) is True
    keep, reason, detail = d(rec("For what reason was the Eiffel Tower constructed?", id="b"))
    assert (keep, reason, detail["duplicate_of"]) == (False, "semantic_instruction", "a") and detail["cosine"] >= 0.85
    assert d(rec("How do plants turn sunlight into energy?", id="c")) is True


@pytest.mark.parametrize("instruction, output", [
    ("I want you to break these emotions down into happy and sad groups: joy, grief, glee", "Happy: joy, glee. Sad: grief."),
    ("Of the following, which are characters from Star Wars: Yoda, Frodo, Leia?", "Yoda and Leia."),
    ("Implement a function that reverses a linked list in Python.", "def reverse(head): ..."),
    ("Who is the best Formula 1 driver", "Who is the best Formula 1 driver has been debated for decades by fans."),
    ("How do I open a file in Python?", "Use open(path) and read the file with a context manager."),
    ("What is the plot of Harry Potter?", "A young wizard attends a school of magic and fights a dark lord."),
    ("What is Terraform?", "Terraform is an infrastructure as code tool."),
    ("Recommend some music for a road trip", "Try classic rock: Queen, Fleetwood Mac and Tom Petty."),
])  # fmt: skip
def test_good_human_instructions_pass_the_default_chain(instruction, output):
    """Cases that the earlier defaults rejected (bench/scoring.py's false-reject table)."""
    runner = FilterRunner(instruction_filters())
    assert runner.check({"instruction": instruction, "input": "", "output": output}) is None


def test_a_request_that_copies_its_output_is_still_caught():
    rec = {
        "instruction": "The Nile is the longest river in Africa and flows north.",
        "input": "",
        "output": "The Nile is the longest river in Africa and flows north into the Mediterranean.",
    }
    assert FilterRunner(instruction_filters()).check(rec)[0] == "copies_output"
