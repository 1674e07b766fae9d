"""Task-type conditioning: a typed backward model, forced types at synthesis, best-of-N in eval."""

import json
from collections import Counter

import pytest

from revgen import tasktypes
from revgen.errors import UserError
from revgen.prompts import encode_prompt, get_template
from tests.helpers import write_jsonl


@pytest.fixture(scope="module")
def typed_adapter(tmp_path_factory, base_model):
    from revgen.train.trainer import LoraSettings, TrainConfig, train

    out = tmp_path_factory.mktemp("typed")
    info = train(TrainConfig(model=base_model, output_dir=str(out), max_length=192, max_rows=12, eval_holdout=2,
                             task_types=True, lora=LoraSettings(r=8, alpha=16, target_modules="all-linear"),
                             trainer={"max_steps": 2, "learning_rate": 1e-3, "per_device_train_batch_size": 4}))  # fmt: skip
    return out, info


def test_typed_training_records_the_seed_mix_and_untagged_heldout(typed_adapter, dolly_rows):
    out, info = typed_adapter
    counts = tasktypes.load(out)
    assert counts == info["task_types"] and sum(counts.values()) == 10  # 12 rows, 2 held out
    assert set(counts) <= {r["category"] for r in dolly_rows[:12]}
    held = [json.loads(x) for x in (out / "heldout.jsonl").read_text().splitlines()]
    by_text = {r["instruction"].strip(): r for r in dolly_rows[:12]}
    assert len(held) == 2 and all(h["instruction"] in by_text and not h["instruction"].startswith("[") for h in held)


def test_forced_prefix_tokenizes_as_in_training(tokenizer):
    # A forced "[type]" ends the prompt; the instruction's first token must carry its own space,
    # exactly as trl tokenized "[type] instruction" in training.
    prompt = get_template("seed").prompt("Some passage about birds.") + tasktypes.prefix("classification")
    full = tokenizer(prompt + " Classify each of the following as bird or fish.")["input_ids"]
    assert full[: len(encode_prompt(tokenizer, prompt))] == encode_prompt(tokenizer, prompt)


def test_forced_types_follow_the_mix_and_are_recorded(typed_adapter):
    from revgen.generate import get_generator
    from revgen.synthesize.core import Context, SynthConfig
    from revgen.synthesize.shardwork import generate_batch

    out, _ = typed_adapter
    counts = tasktypes.load(out)
    two = sorted(counts)[:2]
    cfg = SynthConfig(adapter=str(out), backend="transformers", task_mix=f"{two[0]}=1,{two[1]}=3",
                      max_new_tokens=6, temperature=0.0, openers=0)  # fmt: skip
    ctx = Context.build(cfg)
    assert ctx.task_mix == {two[0]: 0.25, two[1]: 0.75}

    class Doc:
        id, source = "d", "t"

    batch = [(f"u{i}", Doc, 0, f"Passage number {i} lists sparrows, robins and trout.") for i in range(8)]
    gen = get_generator("transformers", ctx.base, str(out), merge=False, dtype="float32", batch_size=8).load()
    try:
        kept, dropped, _, _ = generate_batch(ctx, gen, 0, batch)
        again = generate_batch(ctx, gen, 0, batch)
    finally:
        gen.close()
    lines = kept + dropped
    assert len(lines) == 8 and all(r["meta"]["task_type_forced"] for r in lines)
    types = {r["meta"]["segment_id"]: r["meta"]["task_type"] for r in lines}
    assert set(types.values()) <= set(two)
    assert types == {r["meta"]["segment_id"]: r["meta"]["task_type"] for r in again[0] + again[1]}  # seeded
    prompt_len = {i: len(encode_prompt(ctx.tokenizer, ctx.template.prompt(t) + tasktypes.prefix(types[u])))
                  for u, _, _, t in batch for i in [u]}  # fmt: skip
    assert all(r["meta"]["prompt_tokens"] == prompt_len[r["meta"]["segment_id"]] for r in lines)
    drawn = Counter(tasktypes.draw(ctx.task_mix, s) for s in range(2000))
    assert 0.70 < drawn[two[1]] / 2000 < 0.80


def test_split_and_mix_errors(typed_adapter, trained_adapter):
    out, _ = typed_adapter
    assert tasktypes.split("[open_qa] What is a dragon?") == ("open_qa", "What is a dragon?")
    assert tasktypes.split("What is [x]?") == (None, "What is [x]?")
    counts = tasktypes.load(out)
    with pytest.raises(UserError, match="task_types: true"):
        tasktypes.parse_mix("seed", tasktypes.load(trained_adapter[0]), str(trained_adapter[0]))
    with pytest.raises(UserError, match="not among the adapter's task types"):
        tasktypes.parse_mix("poetry=1", counts, str(out))
    with pytest.raises(UserError, match="TYPE=WEIGHT"):
        tasktypes.parse_mix("open_qa", counts, str(out))
    with pytest.raises(UserError, match="non-negative"):
        tasktypes.parse_mix({k: -1 for k in counts}, counts, str(out))
    assert tasktypes.parse_mix("auto", counts, str(out)) is None
    assert sum(tasktypes.parse_mix("seed", counts, str(out)).values()) == pytest.approx(1)


def test_typed_training_needs_a_category(tmp_path, base_model):
    from revgen.train.trainer import TrainConfig, train

    data = write_jsonl(tmp_path / "d.jsonl", [{"instruction": "Name a bird.", "context": "", "response": "A robin.",
                                               "category": "open_qa"},
                                              {"instruction": "Name a fish.", "context": "", "response": "A trout.",
                                               "category": ""}])  # fmt: skip
    with pytest.raises(UserError, match=r"d.jsonl: row 2: task_types needs a one-word `category`"):
        train(TrainConfig(model=base_model, data=str(data), output_dir=str(tmp_path / "o"), task_types=True))
    with pytest.raises(UserError, match="conditions the backward model"):
        TrainConfig(task="forward", task_types=True)


def test_eval_best_of_n_keeps_the_best_scored_candidate(trained_adapter, tmp_path):
    from revgen.evaluate.backward import EvalConfig, evaluate

    out, _ = trained_adapter
    info = evaluate(EvalConfig(data=str(out / "heldout.jsonl"), adapter=str(out), output_dir=str(tmp_path),
                               max_rows=3, max_new_tokens=12, compare_base=False, num_candidates=3, bootstrap=100))  # fmt: skip
    assert set(info["systems"]) == {"adapter", "best-of-3"}
    diff = info["paired"]["best-of-3 - adapter"]["rouge_l"]
    best = info["systems"]["best-of-3"]["overall"]["rouge_l"]["mean"]
    greedy = info["systems"]["adapter"]["overall"]["rouge_l"]["mean"]
    assert diff["mean"] == pytest.approx(best - greedy, abs=2e-4) and diff["ci95"][0] <= diff["mean"] <= diff["ci95"][1]
    rows = [json.loads(x) for x in (tmp_path / "examples.jsonl").read_text().splitlines()]
    for r in (r for r in rows if r["system"] == "best-of-3"):
        assert 1 <= len(r["candidates"]) <= 3 and all(c["cycle"] < 0 for c in r["candidates"])
        top = max(r["candidates"], key=lambda c: c["cycle"])
        assert r["generated"] == top["text"].strip()
    with pytest.raises(UserError, match="select_by"):
        EvalConfig(select_by="rouge")
