import json

import pytest

from revgen.evaluate.backward import EvalConfig, evaluate, exact_match, length_ratio, mean_ci, rouge_l


def test_rouge_l_on_hand_checked_cases():
    assert rouge_l("the cat sat on the mat", "the cat lay on the mat") == pytest.approx(5 / 6)  # LCS 5 of 6 each way
    assert rouge_l("Who wrote Hamlet?", "Who wrote Hamlet?") == 1.0
    assert rouge_l("Who wrote Hamlet?", "Name three rivers.") == 0.0
    # LCS "who hamlet" = 2: precision 2/6, recall 2/3 -> F1 4/9
    assert rouge_l("Who wrote Hamlet?", "Who was the author of Hamlet?") == pytest.approx(4 / 9)


def test_exact_match_and_length_ratio():
    assert exact_match("Who wrote Hamlet?", "who  wrote hamlet") == 1.0
    assert exact_match("Who wrote Hamlet?", "Who wrote Macbeth?") == 0.0
    assert length_ratio("one two three four", "one two") == 0.5


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    values = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0] * 5
    a, b = mean_ci(values, 500, seed=3), mean_ci(values, 500, seed=3)
    assert a == b and a["ci95"][0] <= a["mean"] <= a["ci95"][1] and a["ci95"][0] < a["ci95"][1]
    assert mean_ci([1.0] * 8)["ci95"] == [1.0, 1.0] and mean_ci([])["mean"] is None


@pytest.mark.slow
def test_eval_end_to_end_adapter_vs_base_is_deterministic(trained_adapter, tmp_path):
    adapter = trained_adapter[0]
    cfg = dict(data=str(adapter / "heldout.jsonl"), adapter=str(adapter), max_new_tokens=16, bootstrap=200)
    first = evaluate(EvalConfig(output_dir=str(tmp_path / "a"), **cfg))
    second = evaluate(EvalConfig(output_dir=str(tmp_path / "b"), **cfg))
    assert first["systems"] == second["systems"]  # greedy: same generations, same numbers
    assert set(first["systems"]) == {"adapter", "base"} and first["rows"] == 4
    for res in first["systems"].values():
        assert set(res["overall"]) == {
            "rouge_l",
            "cosine",
            "exact_match",
            "length_ratio",
            "passes_filters",
            "cut_by_length",
        }
        assert all(
            0 <= res["overall"][m]["mean"] <= 1 for m in ("rouge_l", "exact_match", "passes_filters", "cut_by_length")
        )
        assert sum(c["n"] for c in res["per_category"].values()) == 4
    examples = [json.loads(line) for line in (tmp_path / "a" / "examples.jsonl").read_text().splitlines()]
    assert len(examples) == 8 and {e["system"] for e in examples} == {"adapter", "base"}
    assert "| adapter |" in (tmp_path / "a" / "eval.md").read_text()
