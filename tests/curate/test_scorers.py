"""Curation scores on the real SmolLM2: log-prob rubric, IFD, cycle; selection; curate integration."""

import json
import shutil

import pytest

from revgen.curate import scorers
from revgen.curate.curation import CurateConfig, ScoreSettings, curate
from revgen.errors import UserError
from tests.helpers import write_jsonl


def test_selection_keeps_exactly_what_it_should():
    cycle, ifd, rubric = [-0.1, -0.9, -0.5, -0.5, -0.3], [0.9, 0.1, 0.5, 0.5, 0.7], [4.6, 1.2, 3.0, 3.0, 4.1]
    assert scorers.Selection("cycle", top_k=2).keep(cycle) == [True, False, False, False, True]
    assert scorers.Selection("ifd", top_k=2).keep(ifd) == [
        False,
        True,
        True,
        False,
        False,
    ]  # lower is better; ties: first
    assert scorers.Selection("rubric", threshold=3.0).keep(rubric) == [True, False, True, True, True]
    assert scorers.Selection("ifd", threshold=0.5).keep(ifd) == [False, True, True, True, False]
    assert scorers.Selection("cycle", top_fraction=0.4).keep(cycle) == [True, False, False, False, True]
    assert scorers.Selection("cycle", threshold=-0.4, top_k=1).keep(cycle) == [True, False, False, False, False]


def test_a_selection_threshold_is_on_its_scores_scale_through_the_config():
    """The README's `select: {score: rubric, threshold: 4.0}` and a (negative) cycle threshold are
    accepted where a recipe puts them; a threshold off the named score's scale is refused naming it."""
    from revgen import config as cfgmod

    for sel in ({"score": "rubric", "threshold": 4.0}, {"score": "cycle", "threshold": -1.5},
                {"score": "ifd", "threshold": 1.2}, {"score": "rubric_argmax", "threshold": 4}):  # fmt: skip
        assert cfgmod.build(scorers.Selection, sel, "recipe r.yaml").threshold == sel["threshold"]
    for sel, match in (({"score": "rubric", "threshold": 0.5}, r"for rubric must be the rubric's expected score in \[1, 5\]"),
                       ({"score": "cycle", "threshold": 0.5}, r"for cycle must be a mean log-probability <= 0 \(e.g. -1.5\), got 0.5"),
                       ({"score": "ifd", "threshold": 0}, r"for ifd must be a perplexity ratio > 0")):  # fmt: skip
        with pytest.raises(UserError, match=match):
            cfgmod.build(scorers.Selection, sel, "recipe r.yaml")


@pytest.mark.parametrize("kwargs, match", [
    ({"score": "vibes"}, "select.score must be one of"),
    ({"score": "cycle_argmax"}, "select.score must be one of"),
    ({"score": "cycle", "top_k": 0}, "top_k must be at least 1"),
    ({"score": "cycle", "top_fraction": 1.5}, r"top_fraction must be in \(0, 1\]"),
])  # fmt: skip
def test_bad_selection_settings_fail_clearly(kwargs, match):
    with pytest.raises(UserError, match=match):
        scorers.Selection(**kwargs)


def test_unknown_scorer_and_bad_select_fail_before_loading_a_model(tmp_path):
    recs = write_jsonl(tmp_path / "r.jsonl", [{"instruction": "Name a river in Egypt.", "output": "The Nile."}])
    for score, match in ((ScoreSettings(scorers=["vibes"]), "unknown scorer"),
                         (ScoreSettings(scorers=["ifd"], select={"score": "ifd", "top_k": 0}), "top_k must be"),
                         (ScoreSettings(scorers=["ifd"], select={"score": "ifd", "threshold": "high"}), "threshold must be"),
                         (ScoreSettings(scorers=["ifd"], select={"score": "ifd", "cutoff": 1}), r"unknown key\(s\) \['cutoff'\]")):  # fmt: skip
        with pytest.raises(UserError, match=match):
            curate(CurateConfig(input=str(recs), output_dir=str(tmp_path / "d"), score=score))


@pytest.fixture(scope="module")
def smol(base_model):
    return scorers.load_model(base_model, "float32")


@pytest.mark.slow
def test_rubric_scores_are_the_softmax_over_the_five_score_tokens(smol):
    import torch

    model, tok, _ = smol
    rubric = scorers.Rubric(model, tok)
    rec = {"instruction": "What is the capital of France?", "output": "The capital of France is Paris."}
    probs = rubric.probabilities([rec, {**rec, "output": "Bananas are yellow."}])
    ids = torch.tensor([tok(rubric.prompt(rec))["input_ids"]])
    with torch.no_grad():
        direct = torch.softmax(model(ids).logits[0, -1, rubric.ids].float(), -1).tolist()
    assert probs[0] == pytest.approx(direct, abs=1e-4) and sum(probs[0]) == pytest.approx(1.0)
    s = rubric.score([rec])[0]
    assert 1 <= s["rubric"] <= 5 and s["rubric_argmax"] == max(range(5), key=lambda i: direct[i]) + 1
    assert [tok.decode([i]).strip() for i in rubric.ids] == ["1", "2", "3", "4", "5"]


@pytest.mark.slow
def test_rubric_works_with_and_without_a_chat_template(base_model, tmp_path):
    plain = shutil.copytree(base_model, tmp_path / "plain")
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    cfg = json.loads((plain / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(cfg))
    rec = {"instruction": "Name a river.", "output": "The Nile is a river in Africa."}
    prompts = []
    for ref in (base_model, str(plain)):
        model, tok, _ = scorers.load_model(ref, "float32")
        r = scorers.Rubric(model, tok)
        prompts.append(r.prompt(rec))
        assert 1 <= r.score([rec])[0]["rubric"] <= 5
    assert "<|im_start|>" in prompts[0] and "<|im_start|>" not in prompts[1]


def test_shared_prompts_score_as_one_pass_per_row(smol):
    """Candidates of one passage share its prompt's cache; every sum equals a plain teacher-forced
    pass over that row alone, whatever the batch size, for shared, unique, empty and cut prompts."""
    import torch

    from revgen.lm import Scorer
    from revgen.prompts import teacher_forced_ids

    model, tok, _ = smol
    passage = "Paris is the capital and largest city of France, home to about two million people on the Seine."
    rows = [(f"Response:\n{passage}\n\nInstruction:", c) for c in
            ("What is the capital of France?", "List three facts about Paris.", "Who")]  # fmt: skip
    rows += [("Response:\nCats sleep up to sixteen hours a day.\n\nInstruction:", "Why do cats sleep so much?"),
             ("", "Hello there."), (f"Response:\n{passage}\n\nInstruction:", "Describe the Seine " * 20)]  # fmt: skip

    def alone(prompt, completion, max_length):
        ids, n = teacher_forced_ids(tok, prompt, completion)
        ids, n = ([tok.eos_token_id] + ids, 1) if n == 0 else (ids, n)
        ids = ids[: max(max_length, n + 1)]
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([ids])).logits[0].float()
        return float(
            torch.nn.functional.cross_entropy(logits[n - 1 : -1], torch.tensor(ids[n:]), reduction="sum")
        ), len(ids) - n

    want = [alone(p, c, 60) for p, c in rows]
    assert want[-1][1] < len(teacher_forced_ids(tok, *rows[-1])[0]) - teacher_forced_ids(tok, *rows[-1])[1]  # cut at 60
    for batch in (1, 2, 8):
        got = Scorer(model, tok, batch, max_length=60).nll([p for p, _ in rows], [c for _, c in rows])
        assert [n for _, n in got] == [n for _, n in want]
        assert max(abs(g - w) for (g, _), (w, _) in zip(got, want)) < 5e-3, (batch, got, want)


@pytest.mark.slow
def test_fit_scores_read_the_merged_copy_synthesis_made(trained_adapter):
    """With synthesis's merged copy of the adapter in the cache, curation loads it instead of
    merging again, and scores the same."""
    from revgen.models import adapter_base_model, merged_dir

    adapter = trained_adapter[0]
    rec = [{"instruction": "What is the capital of France?", "output": "The capital of France is Paris."}]
    fresh, _, _ = scorers.load_model(str(adapter), "float32")  # merged on the fly (or a copy already made)
    made = merged_dir(adapter, adapter_base_model(adapter), "float32")
    model, tok, d = scorers.load_model(str(adapter), "float32")
    assert model.name_or_path == str(made) and d == adapter
    a, b = scorers.PMI(fresh, tok, d).score(rec), scorers.PMI(model, tok, d).score(rec)
    assert a[0]["pmi"] == pytest.approx(b[0]["pmi"], abs=1e-3)


@pytest.mark.slow
def test_ifd_and_cycle_prefer_true_pairs_to_shuffled_ones(smol, dolly_rows, trained_adapter):
    model, tok, _ = smol
    rows = [r for r in dolly_rows if not r["context"] and 20 < len(r["response"]) < 400][:10]
    true = [{"instruction": r["instruction"], "output": r["response"]} for r in rows]
    shuffled = [{**t, "instruction": true[(i + 1) % len(true)]["instruction"]} for i, t in enumerate(true)]
    ifd = scorers.IFD(model, tok)
    a, b = ifd.score(true), ifd.score(shuffled)
    assert sum(x["ifd"] < y["ifd"] for x, y in zip(a, b)) >= 8  # lower: the instruction explains the output
    bmodel, btok, bdir = scorers.load_model(str(trained_adapter[0]), "float32")
    cycle = scorers.Cycle(bmodel, btok, bdir)
    a, b = cycle.score(true), cycle.score(shuffled)
    assert sum(x["cycle"] > y["cycle"] for x, y in zip(a, b)) >= 8


@pytest.mark.slow
def test_curate_scores_select_and_keeps_scores_in_rejected(tmp_path, dolly_rows, base_model):
    rows = [r for r in dolly_rows if not r["context"] and 30 < len(r["response"]) < 300][:6]
    recs = [{"id": f"s{i}:0:{k}", "instruction": r["instruction"] if k == 0 else rows[(i + 1) % 6]["instruction"],
             "output": r["response"], "meta": {"segment_id": f"s{i}"}} for i, r in enumerate(rows) for k in (0, 1)]  # fmt: skip
    src = write_jsonl(tmp_path / "recs.jsonl", recs)
    cfg = dict(input=str(src), gopher={"enabled": False}, instruction={"not_instruction": False, "min_words": 1},
               dedup={"exact": False, "near_instruction": False, "near_output": False})  # fmt: skip
    from revgen import config as cfgmod

    def run(out, **score):
        c = cfgmod.build(CurateConfig, {**cfg, "output_dir": str(tmp_path / out),
                                        "score": {"scorers": ["ifd"], "forward": base_model, **score}})  # fmt: skip
        return curate(c)

    stats = run("a", select={"score": "ifd"}, best_of_candidates=True)  # Best-of-2 by IFD: one per segment
    assert stats["counts"]["kept"] == 6 and stats["counts"]["dropped/select/ifd"] == 6
    rejected = [json.loads(x) for x in (tmp_path / "a" / "rejected.jsonl").read_text().splitlines()]
    assert all(r["reason"] == "select/ifd" and "ifd" in r["scores"] for r in rejected)
    kept_true = sum(r["record"]["id"].endswith(":1") for r in rejected)
    assert kept_true >= 5  # the mismatched candidate loses in (nearly) every segment
    assert stats["scores"]["distribution"]["ifd"]["n"] == 12
    # with best-of-N, top_fraction ranks the segments' winners: the better-fitting half of the 6 stays
    half = run("d", select={"score": "ifd", "top_fraction": 0.5}, best_of_candidates=True)
    side_a = (tmp_path / "a" / "scores.jsonl").read_text().splitlines()
    winners = {json.loads(x)["id"]: json.loads(x)["scores"]["ifd"] for x in side_a}
    kept_half = [json.loads(x)["id"] for x in (tmp_path / "d" / "scores.jsonl").read_text().splitlines()]
    assert half["counts"]["kept"] == 3 and set(kept_half) <= set(winners)
    assert max(winners[i] for i in kept_half) <= min(
        v for i, v in winners.items() if i not in kept_half
    )  # lower is better
    again = run("b", select={"score": "ifd"}, best_of_candidates=True)
    assert (tmp_path / "a" / "dataset.jsonl").read_bytes() == (tmp_path / "b" / "dataset.jsonl").read_bytes()
    assert again["scores"]["distribution"] == stats["scores"]["distribution"]
    top = run("c", select={"score": "ifd", "top_k": 3, "threshold": 50.0})
    assert top["counts"]["kept"] == 3
    # every kept row's scores travel beside the strict-schema data: line i of scores.jsonl is row i
    data = (tmp_path / "c" / "dataset.jsonl").read_text().splitlines()
    side = [json.loads(x) for x in (tmp_path / "c" / "scores.jsonl").read_text().splitlines()]
    by_id = {r["id"]: r for r in recs}
    assert [s["row"] for s in side] == [0, 1, 2] and all(
        set(json.loads(d)) == {"instruction", "input", "output"} for d in data
    )
    assert [(by_id[s["id"]]["instruction"], by_id[s["id"]]["output"]) for s in side] == [
        (json.loads(d)["instruction"], json.loads(d)["output"]) for d in data
    ]
    kept_scores = [s["scores"]["ifd"] for s in side]
    stats_c = json.loads((tmp_path / "c" / "stats.json").read_text())
    dropped = [json.loads(x)["scores"]["ifd"] for x in (tmp_path / "c" / "rejected.jsonl").read_text().splitlines()]
    assert max(kept_scores) <= min(dropped) and stats_c["scores"]["distribution"]["ifd"]["n"] == 12
    from revgen.publish.card import write as write_card

    card = write_card(tmp_path / "c", license="cc-by-sa-3.0").read_text()
    assert "### Curation scores" in card and "`scores.jsonl`" in card and '"top_k": 3' in card
    curate(cfgmod.build(CurateConfig, {**cfg, "output_dir": str(tmp_path / "c")}))  # unscored: no stale sidecar
    assert not (tmp_path / "c" / "scores.jsonl").exists()


def _tok(token, logprob, top=()):
    from types import SimpleNamespace as NS

    return NS(token=token, logprob=logprob, top_logprobs=[NS(token=t, logprob=lp) for t, lp in top])


def test_server_digit_probabilities_are_read_where_the_score_is():
    import math

    from revgen.curate.rubric import digit_probabilities

    lp = {"1": -5.0, "2": -4.0, " 3": -3.0, "4": -0.5, "5": -1.0}
    content = [
        _tok("Score", -0.1, [("Score", -0.1)]),
        _tok(":", -0.2),
        _tok(" 4", -0.5, list(lp.items()) + [("x", -0.01)]),
    ]
    p = digit_probabilities(content)
    z = sum(math.exp(v) for v in lp.values())
    assert p == pytest.approx([math.exp(lp[k]) / z for k in ("1", "2", " 3", "4", "5")])
    assert digit_probabilities([_tok(" ", -0.1, [(" ", -0.1)])] + content[2:]) == pytest.approx(p)
    assert digit_probabilities([_tok("45", -0.1), _tok("no", -0.1)]) is None  # "45" is no score digit
    missing = digit_probabilities([_tok("5", -0.1, [("4", -2.0)])])  # the chosen token counts too
    assert missing[:3] == [0.0, 0.0, 0.0] and sum(missing) == pytest.approx(1.0)


def test_unscored_records_are_never_selected():
    sel = scorers.Selection(score="rubric", top_k=2)
    assert sel.keep([None, 3.0, 4.5, None, 2.0]) == [False, True, True, False, False]
    assert scorers.Selection(score="rubric", threshold=1.0).keep([None, 1.5]) == [False, True]


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_rubric_equals_the_transformers_rubric(smol, base_model):
    import importlib.util
    import os

    if importlib.util.find_spec("vllm") is None and not os.environ.get("REVGEN_REQUIRE_VLLM"):
        pytest.skip("vllm is not installed (CI sets REVGEN_REQUIRE_VLLM=1)")
    from revgen.curate.rubric import VLLMRubric

    recs = [{"instruction": "What is the capital of France?", "output": "The capital of France is Paris."},
            {"instruction": "Name three birds.", "output": "Bananas are yellow."}]  # fmt: skip
    model, tok, _ = smol
    local = scorers.Rubric(model, tok).probabilities(recs)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    judge = VLLMRubric(base_model, dtype="float32")
    try:
        remote = judge.probabilities(recs)
        scored = judge.score(recs)
    finally:
        judge.close()
    for a, b in zip(local, remote):
        assert b == pytest.approx(a, abs=0.01) and sum(b) == pytest.approx(1.0)
    assert judge.parse_rate == 1.0 and all(1 <= s["rubric"] <= 5 for s in scored)


def test_pmi_of_a_cut_instruction_compares_the_same_tokens(smol):
    """An output long enough that max_length cuts the instruction off: pmi is the mean difference
    over the instruction tokens the conditional pass scored (both passes on them), not the whole
    instruction's unconditional sum over a few tokens (which gave pmi of 50 and more)."""
    import torch

    from revgen.prompts import get_template, teacher_forced_ids

    model, tok, _ = smol
    rec = {"instruction": "Describe the long history of the city of Paris in several detailed sentences.",
           "output": "Paris grew from a small settlement on an island in the Seine into a capital. " * 6}  # fmt: skip
    template = get_template("seed")
    ids, n = teacher_forced_ids(tok, template.prompt(rec["output"]), rec["instruction"])
    assert len(ids) - n > 10
    got = scorers.PMI(model, tok, batch_size=2, max_length=n + 3).score([rec])[0]["pmi"]

    def first3(prompt):  # summed NLL of the instruction's first 3 tokens, one plain forward pass
        ids, k = teacher_forced_ids(tok, prompt, rec["instruction"])
        ids = ids[: k + 3]
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([ids])).logits[0].float()
        return float(torch.nn.functional.cross_entropy(logits[k - 1 : -1], torch.tensor(ids[k:]), reduction="sum"))

    want = (first3(template.prompt("")) - first3(template.prompt(rec["output"]))) / 3
    assert got == pytest.approx(want, abs=2e-3)
    assert abs(got) < 10
