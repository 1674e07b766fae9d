"""Forward SFT (instruction -> response) and its evaluation, on the real SmolLM2 with real trl steps."""

import importlib.util
import json

import pytest

from revgen.errors import UserError
from revgen.prompts import ALPACA, get_forward_template, teacher_forced_ids
from revgen.stats import paired_ci, ratio_ci, runs_ci
from revgen.train.forward_data import load_forward_rows, normalize
from tests.helpers import write_jsonl

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def test_every_curate_format_reads_as_the_same_pair(tmp_path):
    from revgen.curate.curation import FORMATS, export

    rec = {"instruction": "Name a river.", "input": "", "output": "The Nile."}
    for fmt in FORMATS:
        assert normalize(export(rec, fmt)) == ("Name a river.", "", "The Nile."), fmt
    dolly = {"instruction": "Q", "context": "C", "response": "A", "category": "closed_qa"}
    assert normalize(dolly) == ("Q", "C", "A")
    rows, stats = load_forward_rows(str(write_jsonl(tmp_path / "d.jsonl", [dolly, rec])), context="drop")
    assert [r["output"] for r in rows] == ["The Nile."] and stats.dropped_context == 1


def test_sources_mix_with_per_source_caps(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"instruction": f"a{i}", "output": "x"} for i in range(5)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"instruction": f"b{i}", "response": "y"} for i in range(5)])
    rows, stats = load_forward_rows([str(a), {"source": str(b), "max_rows": 2}])
    assert [r["instruction"] for r in rows] == ["a0", "a1", "a2", "a3", "a4", "b0", "b1"]
    assert stats.per_source == {str(a): 5, str(b): 2}
    with pytest.raises(UserError, match="max_rows must be a positive integer"):
        load_forward_rows([{"source": str(b), "max_rows": 0}])


def test_tagged_sources_render_each_rows_tag_and_the_seed_tag_at_inference(tmp_path, tokenizer):
    from revgen.prompts import ForwardTemplate
    from revgen.train.forward_data import NAMED_TAGS, build_forward_pairs
    from revgen.train.trainer import TrainConfig, _inference_tag

    a = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Name a river.", "output": "The Nile."}])
    b = write_jsonl(tmp_path / "b.jsonl", [{"instruction": "Name a {tag}.", "output": "Oak."}])
    data = [{"source": str(a), "tag": "seed"}, {"source": str(b), "tag": "From the web."}, str(a)]
    rows, _ = load_forward_rows(data)
    assert [r["tag"] for r in rows] == [NAMED_TAGS["seed"], "From the web.", ""]
    t = ForwardTemplate(tag=_inference_tag(TrainConfig(task="forward", data=data)))
    pairs, _ = build_forward_pairs(rows, t, tokenizer, None)
    plain = get_forward_template("alpaca").prompt("Name a river.")
    assert pairs[0]["prompt"] == "Answer in the style of an AI Assistant.\n\n" + plain
    assert pairs[1]["prompt"].startswith("From the web.\n\n") and "Name a {tag}." in pairs[1]["prompt"]  # literal text
    assert pairs[2]["prompt"] == plain  # an untagged source reads no tag, whatever the inference tag
    assert t.prompt("Name a river.") == pairs[0]["prompt"]  # at inference: the seed's
    chat = ForwardTemplate("chat", "", "", tag="From the web.").prompt("Hi", "", tokenizer)
    assert (
        "<|im_start|>system\nFrom the web.<|im_end|>" in chat and "SmolLM" not in chat
    )  # the tag replaces the default
    custom = ForwardTemplate("custom", "<{tag}> {instruction}\n{response}", "<{tag}> {instruction}\n{response}", "T")
    assert (custom.prompt("x"), custom.prompt("x", tag="")) == ("<T> x\n", "<> x\n")
    custom.save(tmp_path)
    assert get_forward_template(str(tmp_path)) == custom


@pytest.mark.parametrize("data, kw, expected", [
    ([{"source": "a", "tag": ""}], {}, r"data\[0\]\.tag must be seed, augmented or the tag's own text"),
    ([{"source": "a", "tag": 3}], {}, r"data\[0\]\.tag must be"),
    ([{"source": "a", "tag": "seed", "weight": 2}], {}, r"data\[0\] must be a path / Hub id or a mapping"),
    (["a", {"source": "b", "tag": "augmented"}], {"inference_tag": "seed"}, r"inference_tag 'seed' is none of the data's tags"),
    ([{"source": "a", "tag": "seed"}], {"task": "backward"}, r"data tags and inference_tag are for forward training"),
])  # fmt: skip
def test_bad_tags_are_one_error_before_any_model_loads(data, kw, expected):
    from revgen.train.trainer import TrainConfig

    with pytest.raises(UserError, match=expected):
        TrainConfig(**{"task": "forward", "data": data, **kw})


@pytest.mark.parametrize("rows, expected", [
    ([{"instruction": "ok", "output": "fine"}, {"instruction": "no answer"}], r"x\.jsonl line 2: expected instruction\+output"),
    ([{"prompt": "p"}], r"x\.jsonl line 1: expected"),
    (["{not json"], r"x\.jsonl line 1: malformed JSON"),
    ([], r"x\.jsonl: no rows"),
])  # fmt: skip
def test_bad_forward_data_is_one_error_naming_file_and_line(tmp_path, rows, expected):
    path = write_jsonl(tmp_path / "x.jsonl", rows)
    with pytest.raises(UserError, match=expected):
        load_forward_rows(str(path))


def test_forward_template_renders_alpaca_exactly():
    t = get_forward_template("alpaca")
    assert t.prompt("Name a river.") + "The Nile." == ALPACA.replace("{instruction}", "Name a river.").replace(
        "{response}", "The Nile.")  # fmt: skip
    with_input = t.prompt("Summarize.", "Some text.")
    assert "### Input:\nSome text.\n\n### Response:\n" in with_input and with_input.endswith("### Response:\n")


def test_paired_bootstrap_on_known_inputs():
    a = [[1.0, 2.0, 3.0, 4.0]]
    b = [[0.5, 1.5, 2.5, 3.5]]  # every row 0.5 lower: the difference has no spread
    assert paired_ci(a, b, n=200) == {"mean": -0.5, "ci95": [-0.5, -0.5], "n": 4}
    noisy = paired_ci(a, [[1.5, 1.0, 3.5, 3.0]], n=500, seed=1)
    assert noisy["mean"] == -0.25 and noisy["ci95"][0] < -0.25 < noisy["ci95"][1]
    assert paired_ci(a, [[1.5, 1.0, 3.5, 3.0]], n=500, seed=1) == noisy  # seeded
    # token-weighted: sum(values) / sum(weights)
    assert runs_ci([[2.0, 6.0]], weights=[1.0, 3.0], n=100)["mean"] == 2.0
    # seeds add spread: two runs that disagree widen the interval over one run
    one, two = runs_ci([[1.0, 1.0, 1.0]], n=300), runs_ci([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]], n=300)
    assert one["ci95"] == [1.0, 1.0] and two["ci95"][0] < two["ci95"][1]
    r = ratio_ci([[3.0, 3.0]], [[2.5, 2.5]], [[2.0, 2.0]], n=100)
    assert r["mean"] == 0.5 and r["ceiling_distinct"] is True


def _bench():
    import sys

    if str(ROOT / "bench") not in sys.path:  # the bench scripts import their shared harness
        sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("bench_value", ROOT / "bench" / "value.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_value_bench_split_is_deterministic_disjoint_and_context_free(dolly_rows):
    split = _bench().split
    S, U, H = split(dolly_rows, (60, 120, 64), 1234)
    assert (S, U, H) == split(dolly_rows, (60, 120, 64), 1234)
    keys = [{r["instruction"] + r["response"] for r in part} for part in (S, U, H)]
    assert [len(k) for k in keys] == [60, 120, 64] and not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    assert all(not r["context"].strip() for part in (S, U, H) for r in part)
    assert split(dolly_rows, (60, 120, 64), 99)[2] != H


@pytest.mark.slow
def test_trl_tokenizes_forward_pairs_as_eval_scores_them(tokenizer, dolly_rows, base_model):
    """The ids and loss mask trl trains on are the ids and positions the forward NLL scores."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    t = get_forward_template("alpaca")
    rows = [r for r in dolly_rows if not r["context"]][:6]
    pairs = [t.pair(r["instruction"], "", r["response"]) for r in rows]
    args = SFTConfig(output_dir="/tmp/unused", use_cpu=True, bf16=False, report_to="none", max_length=4096)
    trainer = SFTTrainer(
        model=base_model, args=args, processing_class=tokenizer, train_dataset=Dataset.from_list(pairs)
    )
    for ex, p in zip(trainer.train_dataset, pairs):
        ids, n = teacher_forced_ids(tokenizer, p["prompt"], p["completion"])
        assert ex["input_ids"] == ids and ex["labels"] == [-100] * n + ids[n:]
        assert ids[-1] == tokenizer.eos_token_id


@pytest.mark.slow
def test_forward_training_moves_loss_and_its_nll_prefers_true_pairs(trained_forward, tmp_path):
    from revgen.evaluate.forward import ForwardEvalConfig, evaluate_forward, score_rows

    out, info = trained_forward
    assert info["task"] == "forward" and info["losses"][-1] < info["losses"][0]
    template = json.loads((out / "forward-template.json").read_text())
    assert (template["name"], template["tag"]) == ("alpaca", "Answer in the style of an AI Assistant.")  # the seed's
    held = [json.loads(line) for line in (out / "heldout.jsonl").read_text().splitlines()]
    assert len(held) == 4 and set(held[0]) == {"instruction", "input", "output", "category"}
    # on its own training pairs: NLL of the true response is below NLL under a shuffled instruction
    train_file = write_jsonl(tmp_path / "train.jsonl", info["_train_rows"])
    res = evaluate_forward(ForwardEvalConfig(model_dir=str(out), against="smollm2-135m", data=str(train_file),
                                             output_dir=str(tmp_path / "ev"), generate_rows=2, max_new_tokens=8,
                                             bootstrap=200))  # fmt: skip
    a = res["systems"]["A"]["overall"]
    assert a["instruction_use"]["mean"] > 0  # NLL(response | other instruction) > NLL(response | own)
    assert res["difference_B_minus_A"]["nll"]["mean"] > 0  # the base model fits the training pairs worse
    assert 0 <= a["rouge_l"]["mean"] <= 1 and res["rows"] == 12
    lines = (tmp_path / "ev" / "examples.jsonl").read_text().splitlines()
    assert len(lines) == 24 and "| B - A (paired) |" in (tmp_path / "ev" / "eval.md").read_text()
    assert res["systems"]["A"]["tag"] == template["tag"] and res["systems"]["B"]["tag"] == ""
    # the model reads its tag: the same rows under the other tag score differently
    rows = load_forward_rows(str(train_file))[0]
    seed_mode = score_rows(str(out), rows, ForwardEvalConfig(generate_rows=0))
    web_mode = score_rows(str(out), rows, ForwardEvalConfig(generate_rows=0, tag="augmented"))
    a_nll = [e["nll"] for e in map(json.loads, lines) if e["system"] == "A"]
    assert [r["nll"] for r in seed_mode] == pytest.approx(a_nll, abs=1e-5)  # by default: the seed tag
    assert all(abs(x["nll"] - y["nll"]) > 1e-4 for x, y in zip(seed_mode, web_mode))
    # a missing B is one error before model A loads and scores (seconds, not minutes)
    import time

    started = time.perf_counter()
    with pytest.raises(UserError, match="neither a local folder nor a Hub id"):
        evaluate_forward(ForwardEvalConfig(model_dir=str(out), against=str(tmp_path / "missing" / "m"), data=str(train_file),
                                           output_dir=str(tmp_path / "ev2")))  # fmt: skip
    assert time.perf_counter() - started < 5 and not (tmp_path / "ev2").exists()


def test_instruction_mix_counts_questions_requests_and_their_distance():
    from revgen.evaluate.mix import compare_mix, kind

    assert [kind(x) for x in ("What is X?", "Name three rivers.", "Is it red", "Classify these: a, b")] == [
        "question", "request", "question", "request"]  # fmt: skip
    m = compare_mix(["What is a dragon?"] * 4, ["What is a dragon?", "Classify these animals.", "Name a bird.", "Why?"])
    assert m["synthetic"]["kind"] == {"question": 1.0} and m["real"]["kind"] == {"question": 0.5, "request": 0.5}
    assert m["tv_kind"] == 0.5 and m["tv_leading_word"] == 0.75  # 0.5 * (0.75 + 3 * 0.25)
