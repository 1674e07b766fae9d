"""Openers: learned at training, forced at synthesis, chosen by fit (pmi) at curation."""

import json
import logging
import math

import pytest

from revgen import openers, shards
from revgen.curate.curation import CurateConfig, ScoreSettings, curate
from revgen.errors import UserError
from revgen.evaluate.mix import kind
from revgen.synthesize.run import SynthConfig, synthesize
from tests.helpers import write_jsonl


def test_learned_openers_are_the_seed_first_words_and_draws_are_seeded(trained_adapter, dolly_rows):
    adapter, info = trained_adapter
    counts = openers.load(adapter)
    firsts = {openers.first_word(r["instruction"]) for r in dolly_rows}
    assert counts and set(counts) <= firsts and sum(counts.values()) == info["data"]["train_rows"]
    assert list(counts.values()) == sorted(counts.values(), reverse=True)
    seed = openers.learn(r["instruction"] for r in dolly_rows)
    assert list(seed)[0] == "What" and {"List", "Give", "Classify", "Write"} <= set(seed)
    a, b = openers.draw(seed, 3, seed=5), openers.draw(seed, 3, seed=5)
    assert a == b and len(set(a)) == 3 and set(a) <= set(list(seed)[: openers.TOP])
    assert len({tuple(openers.draw(seed, 3, seed=s)) for s in range(20)}) > 10
    requests = openers.restrict(seed, "requests")
    assert {"List", "Give", "Classify", "Write"} <= set(requests)
    assert not {"What", "Who", "How", "Is", "What's", "Whats"} & set(requests) and {"What's", "Whats"} <= set(seed)
    assert all(kind(f"{w} the passage") == "request" for w in requests)
    assert openers.restrict(seed, "any") == seed == openers.restrict(seed, "both")
    for s in range(20):  # both: ceil(k/2) request openers, then question openers, distinct, seeded
        drawn = openers.draw(seed, 3, seed=s, kinds="both")
        assert drawn == openers.draw(seed, 3, seed=s, kinds="both") and len(set(drawn)) == 3
        assert [openers.opens_question(w.lower()) for w in drawn] == [False, False, True]
    assert openers.draw(requests, 2, seed=1, kinds="both") == openers.draw(requests, 2, seed=1)  # one kind only
    with pytest.raises(UserError, match="opener_kinds must be one of"):
        openers.restrict(seed, "questions")


@pytest.mark.slow
def test_opener_candidates_begin_with_their_opener_and_curation_keeps_the_best_fit(
    trained_adapter, dolly_rows, tmp_path, caplog
):
    adapter = trained_adapter[0]
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"text": r["response"]} for r in dolly_rows[230:238]])
    out = tmp_path / "synth"
    cfg = SynthConfig(corpus=str(corpus), adapter=str(adapter), output_dir=str(out), backend="transformers",
                      temperature=0.7, max_new_tokens=24, batch_size=4, micro_batch_size=8, shard_size=4, min_words=8,
                      openers=2)  # fmt: skip
    info = synthesize(cfg)
    rows = list(shards.iter_records(out)) + list(shards.iter_records(out, dropped=True))
    assert len(rows) == 3 * info["counts"]["selected"]  # one free + two forced per selected segment, nothing vanishes
    by_seg: dict = {}
    for r in rows:
        by_seg.setdefault(r["meta"]["segment_id"], []).append(r)
    for seg_rows in by_seg.values():
        ops = [r["meta"]["opener"] for r in sorted(seg_rows, key=lambda r: r["meta"]["candidate"])]
        assert ops[0] is None and len(set(ops[1:])) == 2 and all(o in openers.load(adapter) for o in ops[1:])
        assert [openers.opens_question(o.lower()) for o in ops[1:]] == [False, True]  # opener_kinds: both, the default
        for r in seg_rows:
            if r["meta"]["opener"] and "instruction" in r and "reason" not in r:
                assert r["instruction"].startswith(r["meta"]["opener"])
    assert synthesize(cfg)["generated_tokens_this_run"] == 0  # finished segments count three lines each

    stats = curate(CurateConfig(input=str(out), output_dir=str(tmp_path / "cur"), report=False,
                                score=ScoreSettings(scorers=["pmi", "cycle"], best_of_candidates=True,
                                                    select={"score": "pmi"})))  # fmt: skip
    assert stats["candidates"] == {"per_passage": 3, "chosen": True}
    assert stats["scores"]["scored_in_synthesis"] == ["pmi", "cycle"]  # read from the records, no model loaded
    assert all(set(r["meta"]["scores"]) == {"pmi", "cycle"} for r in shards.iter_records(out))
    kept = [json.loads(line) for line in (tmp_path / "cur" / "scores.jsonl").read_text().splitlines()]
    segs = [k["id"].rsplit(":", 1)[0] for k in kept]
    assert len(segs) == len(set(segs)) > 0  # one record per segment
    assert all(abs(k["scores"]["pmi"]) < 20 and k["scores"]["cycle"] <= 0 for k in kept)
    mix = stats["instruction_mix"]
    assert mix["n"] == len(kept) and sum(mix["openers"].values()) == pytest.approx(1, abs=1e-3)
    assert 0 <= mix["tv_leading_word_vs_seed"] <= 1 and mix["seed_leading_words"]

    # toward the seed's first words: any candidate may be kept (a wide margin), one per segment still
    toward = curate(CurateConfig(input=str(out), output_dir=str(tmp_path / "mix"), report=False,
                                 score=ScoreSettings(scorers=["pmi"], best_of_candidates=True, select={"score": "pmi"},
                                                     target_mix="seed", fit_margin=100.0)))  # fmt: skip
    moved = toward["scores"]["target_mix"]
    assert moved["tv_leading_word_to_target_after"] <= moved["tv_leading_word_to_target_before"]
    kept_mix = [json.loads(line) for line in (tmp_path / "mix" / "scores.jsonl").read_text().splitlines()]
    assert len({k["id"].rsplit(":", 1)[0] for k in kept_mix}) == len(kept_mix) == len(kept)
    # not further from the seed's words (a switch may also fix the kind at an equal word distance; shares are
    # rounded to 4 places each, so equal distances can differ in the last place)
    assert toward["instruction_mix"]["tv_leading_word_vs_seed"] <= mix["tv_leading_word_vs_seed"] + 1e-3
    with pytest.raises(UserError, match="needs score.best_of_candidates"):
        curate(CurateConfig(input=str(out), output_dir=str(tmp_path / "bad"), report=False,
                            score=ScoreSettings(scorers=["pmi"], select={"score": "pmi"}, target_mix="seed")))  # fmt: skip

    # curated without a choice (--preset none): every candidate kept, and said (log and stats.json), not silent
    with caplog.at_level(logging.WARNING, logger="revgen.curate.curation"):
        every = curate(CurateConfig(input=str(out), output_dir=str(tmp_path / "every"), report=False, preset="none"))
    assert every["candidates"] == {"per_passage": 3, "chosen": False} and "--preset openers" in caplog.text
    assert every["counts"]["kept"] > len(kept)

    # --preset openers: the same choice toward the seed's mix, the worst-fitting fifth of passages dropped
    from revgen import config as cfgmod

    preset = curate(cfgmod.load(CurateConfig, "curate", None, {"input": str(out), "output_dir": str(tmp_path / "preset"),
                                                               "report": False, "preset": "openers"}))  # fmt: skip
    assert preset["scores"]["selection"]["top_fraction"] == 0.8 and preset["scores"]["target_mix"]["target"] == "seed"
    fifth = [json.loads(line) for line in (tmp_path / "preset" / "scores.jsonl").read_text().splitlines()]
    assert len(fifth) == math.ceil(0.8 * len(kept)) and len({k["id"].rsplit(":", 1)[0] for k in fifth}) == len(fifth)
    # no preset named: a run with several candidates per passage is curated with openers, the same dataset
    auto = curate(CurateConfig(input=str(out), output_dir=str(tmp_path / "auto"), report=False))
    assert auto["config"]["preset"] == "openers" and auto["counts"] == preset["counts"]
    assert (tmp_path / "auto" / "dataset.jsonl").read_bytes() == (tmp_path / "preset" / "dataset.jsonl").read_bytes()
    # a score setting that names no other method (here the batch size) goes on top of the preset, not instead of it
    tuned = curate(CurateConfig(input=str(out), output_dir=str(tmp_path / "tuned"), report=False,
                                score=ScoreSettings(batch_size=3)))  # fmt: skip
    assert tuned["config"]["preset"] == "openers" and tuned["config"]["score"]["batch_size"] == 3
    assert (tmp_path / "tuned" / "dataset.jsonl").read_bytes() == (tmp_path / "auto" / "dataset.jsonl").read_bytes()
    assert stats["config"]["preset"] is None  # the first curation above named its own scorers and choice

    # a mix of the user's own, met from the same candidates: only the request openers drawn here
    reqs = sorted(
        {
            r["meta"]["opener"]
            for r in rows
            if r["meta"]["opener"] and not openers.opens_question(r["meta"]["opener"].lower())
        }
    )
    spec = ",".join(f"{w}=1" for w in reqs)
    own = curate(CurateConfig(input=str(out), output_dir=str(tmp_path / "own"), report=False,
                              score=ScoreSettings(scorers=["pmi"], best_of_candidates=True, select={"score": "pmi"},
                                                  target_mix=spec, fit_margin=100.0)))  # fmt: skip
    moved = own["scores"]["target_mix"]
    assert moved["target"] == spec and moved["switched"] > 0
    assert moved["tv_leading_word_to_target_after"] < moved["tv_leading_word_to_target_before"]

    def instructions(d):
        return [json.loads(x)["instruction"] for x in (tmp_path / d / "dataset.jsonl").read_text().splitlines()]

    requests = lambda texts: sum(t.split()[0] in reqs for t in texts if t.split())  # noqa: E731
    assert len(instructions("own")) == len(kept) and requests(instructions("own")) > requests(instructions("cur"))
    with pytest.raises(UserError, match=r"score.target_mix: expected seed or WORD=WEIGHT.*'List'"):
        curate(CurateConfig(input=str(out), output_dir=str(tmp_path / "bad2"), report=False,
                            score=ScoreSettings(scorers=["pmi"], best_of_candidates=True, select={"score": "pmi"},
                                                target_mix="List")))  # fmt: skip
    assert not (tmp_path / "bad2" / "dataset.jsonl").exists()  # refused before any model loads or file is written

    # chosen by one score, ranked by another (Humpback's loop: pmi picks the candidate, ifd ranks passages);
    # the ranking score is computed for each segment's pick only
    two = curate(CurateConfig(input=str(out), output_dir=str(tmp_path / "two"), report=False,
                              score=ScoreSettings(scorers=["pmi", "ifd"], best_of_candidates=True, choose_by="pmi",
                                                  select={"score": "ifd", "top_fraction": 0.5})))  # fmt: skip
    kept_two = [json.loads(line) for line in (tmp_path / "two" / "scores.jsonl").read_text().splitlines()]
    rejected = [json.loads(line) for line in (tmp_path / "two" / "rejected.jsonl").read_text().splitlines()]
    considered = {k["id"]: k["scores"] for k in kept_two} | {
        r["id"]: r["scores"] for r in rejected if r["reason"].startswith("select/")
    }  # past the filters, with the scores curation gave them
    best: dict = {}
    for r in (r for r in shards.iter_records(out) if r["id"] in considered):  # each segment's pmi winner
        seg = r["meta"]["segment_id"]
        if seg not in best or r["meta"]["scores"]["pmi"] > best[seg]["meta"]["scores"]["pmi"]:
            best[seg] = r
    picks = {r["id"] for r in best.values()}
    assert {i for i, sc in considered.items() if "ifd" in sc} == picks  # ifd only where it ranks
    ranked = sorted(picks, key=lambda i: considered[i]["ifd"])[: math.ceil(0.5 * len(picks))]  # lower is better
    assert sorted(k["id"] for k in kept_two) == sorted(ranked) and two["scores"]["selection"]["score"] == "ifd"
    with pytest.raises(UserError, match=r"score.choose_by 'pmi' .* needs score.best_of_candidates"):
        curate(CurateConfig(input=str(out), output_dir=str(tmp_path / "bad3"), report=False,
                            score=ScoreSettings(scorers=["pmi"], choose_by="pmi", select={"score": "pmi"})))  # fmt: skip
    assert not (tmp_path / "bad3" / "dataset.jsonl").exists()


def test_target_mix_switches_only_to_candidates_that_fit_cheapest_first():
    from revgen.curate.target_mix import choose, target_from_openers

    target = target_from_openers({"What": 50, "what": 0, "List": 50})
    assert target == {"what": 0.5, "list": 0.5}
    # four segments: a "What" best and a "List" runner-up losing 0.1, 0.2, 0.3 or 2.0 of fit
    groups = [[0, 1], [2, 3], [4, 5], [6, 7]]
    values = [1.0, 0.9, 1.0, 0.8, 1.0, 0.7, 1.0, -1.0]
    texts = ["What is it?", "List them.", "What is it?", "List them.", "What is it?", "List them.", "What?", "List."]
    chosen, moved = choose(groups, values, texts, target, margin=0.5)
    assert chosen == [1, 3, 4, 6]  # the two cheapest switches reach 2/2; the third would overshoot
    assert moved["switched"] == 2 and moved["tv_leading_word_to_target_after"] == 0
    assert choose(groups, values, texts, target, margin=0.15)[0] == [1, 2, 4, 6]  # only the first fits
    assert choose(groups, values, texts, {"what": 1.0}, margin=5)[0] == [0, 2, 4, 6]  # already on target
    assert choose([[0, 1]], [None, None], ["a", "b"], target, 1.0)[0] == [None]


def test_target_mix_also_moves_the_share_of_questions_toward_the_target():
    from revgen.curate.target_mix import choose

    # every segment's best asks "What"; its runner-up is a request whose first word the target lacks, so
    # by words alone a switch gains nothing ("what" one nearer, "describe" one further)
    target = {"what": 0.5, "list": 0.25, "give": 0.25}
    groups = [[0, 1], [2, 3], [4, 5], [6, 7]]
    values = [1.0, 0.9, 1.0, 0.8, 1.0, 0.7, 1.0, 0.6]
    texts = ["What is it?", "Describe it."] * 4
    chosen, moved = choose(groups, values, texts, target, margin=0.5)
    assert chosen == [1, 3, 4, 6]  # the two cheapest switches bring the questions to the target's half
    assert (moved["question_share_before"], moved["question_share_after"], moved["question_share_target"]) == (
        1,
        0.5,
        0.5,
    )
    # a question for a question fixes no kind: only the word counts ("who" is not in the target either)
    assert choose(groups, values, ["What is it?", "Who is it?"] * 4, target, margin=0.5)[0] == [0, 2, 4, 6]


def test_the_fit_floor_drops_the_passages_whose_best_fits_worst_before_the_switch_toward_the_mix(tmp_path):
    from collections import Counter

    from revgen.curate.curation import score_and_select

    # four passages, each a "What" best and a "List" runner-up 0.3 behind; the passages' best fits 5, 4, 3, 2.
    # Ranked after the switch, the floor dropped the switched picks first and undid the mix (RESULTS #41)
    (tmp_path / "run.json").write_text(json.dumps({"status": "complete", "adapter": str(tmp_path / "backward")}))
    records = [{"id": f"s{g}:{c}", "instruction": text, "output": f"passage {g}",
                "meta": {"segment_id": f"s{g}", "scores": {"pmi": best - 0.3 * c}}}
               for g, best in enumerate([5.0, 4.0, 3.0, 2.0]) for c, text in enumerate(["What is it?", "List them."])]  # fmt: skip
    cfg = CurateConfig(input=str(tmp_path), score=ScoreSettings(scorers=["pmi"], best_of_candidates=True,
                                                                 target_mix="List=1,What=1", fit_margin=0.5,
                                                                 select={"score": "pmi", "top_fraction": 0.5}))  # fmt: skip
    counts, dropped = Counter(kept=len(records)), []
    kept, stats = score_and_select(records, cfg, counts, lambda r, reason, detail: dropped.append(r["id"]))
    assert stats["scored_in_synthesis"] == ["pmi"]  # read from the records, no model
    assert [r["id"] for r in kept] == ["s0:1", "s1:0"]  # the two best passages, one switched: the target's 1:1
    assert {d.split(":")[0] for d in dropped} == {"s0", "s1", "s2", "s3"} and counts["kept"] == 2
    moved = stats["target_mix"]
    assert moved["switched"] == 1 and moved["tv_leading_word_to_target_after"] == 0


def test_a_target_mix_of_the_users_own_first_words():
    from revgen.curate.target_mix import target_from_spec

    assert target_from_spec("List=3, What=1,what=4 ,Give=2") == {"list": 0.3, "what": 0.5, "give": 0.2}
    assert target_from_spec({"Summarize": 1, "Name": 0}) == {"summarize": 1.0, "name": 0.0}
    for bad, match in (("List", "expected seed or WORD=WEIGHT.*'List'"), ("List=x", "'List=x'"), ("=2", "'=2'"),
                       ("List=-1", "non-negative"), ("List=0,What=0", "positive sum"), ("List=nan", "non-negative"),
                       ({"List": "3"}, "non-negative"), ({"List": True}, "non-negative")):  # fmt: skip
        with pytest.raises(UserError, match=match):
            target_from_spec(bad)


def test_openers_need_an_adapter_that_learned_them(trained_adapter, tmp_path, dolly_rows):
    import shutil

    adapter = tmp_path / "adapter"
    shutil.copytree(trained_adapter[0], adapter)
    (adapter / openers.FILE).unlink()
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"text": dolly_rows[0]["response"]}])
    with pytest.raises(UserError, match="--openers needs .*openers.json"):
        synthesize(SynthConfig(corpus=str(corpus), adapter=str(adapter), output_dir=str(tmp_path / "o"),
                               backend="transformers", openers=2))  # fmt: skip
    # openers not set: the default is 3 where the adapter has the file, one free instruction where not
    from revgen.synthesize.run import resolve

    unset = dict(corpus=str(corpus), output_dir=str(tmp_path / "o"), backend="transformers")
    assert resolve(SynthConfig(adapter=str(adapter), **unset)).openers == 0
    assert resolve(SynthConfig(adapter=str(trained_adapter[0]), **unset)).openers == openers.DEFAULT == 3


def test_bad_openers_files_and_counts_are_one_error_before_any_model_loads(trained_adapter, tmp_path, dolly_rows):
    import shutil

    adapter = tmp_path / "adapter"
    shutil.copytree(trained_adapter[0], adapter)
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"text": dolly_rows[0]["response"]}])

    def run(**kw):
        return synthesize(SynthConfig(corpus=str(corpus), adapter=str(adapter), output_dir=str(tmp_path / "o"),
                                      backend="transformers", **kw))  # fmt: skip

    most = openers.capacity(openers.load(adapter), "both")
    with pytest.raises(
        UserError, match=rf"--openers 500: .*openers.json gives at most {most} .*--openers {most} or fewer"
    ):
        run(openers=500)  # run.json must never say 500 while fewer are drawn
    good = json.loads((adapter / openers.FILE).read_text())
    requests_only = {w: n for w, n in good["counts"].items() if not openers.opens_question(w.lower())}
    (adapter / openers.FILE).write_text(json.dumps({**good, "counts": requests_only}))
    with pytest.raises(UserError, match="--opener-kinds both: .*has no questions.*--opener-kinds any"):
        run(openers=2)
    for bad, what in (({"What": -3, "List": 5}, r"counts\['What'\] must be an integer >= 0, got -3"),
                      ({"What": 1.5}, r"counts\['What'\] must be an integer"), ({"What": 0}, "every count is 0")):  # fmt: skip
        (adapter / openers.FILE).write_text(json.dumps({**good, "counts": bad}))
        with pytest.raises(UserError, match=rf"{adapter / openers.FILE}: {what}"):
            run(openers=2)
    assert not (tmp_path / "o" / "shards").exists()
