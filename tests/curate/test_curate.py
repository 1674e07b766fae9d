import json

import pytest
from click.testing import CliRunner

from revgen.cli import cli
from revgen.curate.curation import CurateConfig, curate
from revgen.errors import UserError
from revgen.shards import append
from tests.helpers import write_jsonl


@pytest.fixture
def records(dolly_rows):
    from revgen.curate.curation import DedupSettings, build_filters
    from revgen.curate.filters import FilterRunner

    rows = [
        {"id": f"r{i}", "instruction": r["instruction"], "input": "", "output": r["response"]}
        for i, r in enumerate(dolly_rows[:120])
    ]
    no_dedup = CurateConfig(dedup=DedupSettings(exact=False, near_instruction=False, near_output=False))
    a, b = [r["id"] for r in FilterRunner(build_filters(no_dedup)).run(rows)][:2]  # rows every filter keeps
    by_id = {r["id"]: r for r in rows}
    rows.append({**by_id[a], "id": "exact-copy"})
    rows.append(
        {
            **by_id[b],
            "id": "near-copy",
            "instruction": "Explain the main facts about this subject for a student.",
            "output": by_id[b]["output"].replace(".", " .", 1) + " Indeed.",
        }
    )
    rows.append(
        {"id": "leak", "instruction": "Tell me about it.\n### Response:", "input": "", "output": by_id[a]["output"]}
    )
    return rows, a, b


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_curate_writes_dataset_stats_and_rejected_that_add_up(tmp_path, records):
    records, a, b = records
    src = write_jsonl(tmp_path / "records.jsonl", records)
    stats = curate(CurateConfig(input=str(src), output_dir=str(tmp_path / "ds")))
    c = stats["counts"]
    data, rejected = read(tmp_path / "ds" / "dataset.jsonl"), read(tmp_path / "ds" / "rejected.jsonl")
    assert c["total"] == len(records) and c["kept"] == len(data) > 30
    assert (
        c["total"] == c["kept"] + sum(v for k, v in c.items() if k.startswith("dropped/")) == len(data) + len(rejected)
    )
    assert all(
        set(r) == {"instruction", "input", "output"} and all(isinstance(v, str) for v in r.values()) for r in data
    )
    by_id = {r["id"]: r for r in rejected}
    assert by_id["exact-copy"]["reason"] == "dedup/exact" and by_id["exact-copy"]["duplicate_of"] == a
    assert by_id["near-copy"]["reason"] == "dedup/near_output" and by_id["near-copy"]["duplicate_of"] == b
    assert by_id["leak"]["reason"] == "template_leak"
    assert c["dropped/dedup/exact"] == 1 and c["dropped/gopher/too_few_words"] > 0
    assert {f["name"] for f in stats["filters"]} >= {"length", "gopher", "dedup"}


def test_curating_twice_gives_identical_bytes_and_formats(tmp_path, records):
    records = records[0]
    src = write_jsonl(tmp_path / "records.jsonl", records)
    for name in ("a", "b"):
        curate(CurateConfig(input=str(src), output_dir=str(tmp_path / name)))
    assert (tmp_path / "a" / "dataset.jsonl").read_bytes() == (tmp_path / "b" / "dataset.jsonl").read_bytes()
    firsts = {}
    for fmt in ("sharegpt", "messages", "prompt-completion"):
        curate(CurateConfig(input=str(src), output_dir=str(tmp_path / fmt), format=fmt))
        firsts[fmt] = read(tmp_path / fmt / "dataset.jsonl")[0]
    alpaca = read(tmp_path / "a" / "dataset.jsonl")[0]
    assert firsts["messages"]["messages"] == [
        {"role": "user", "content": alpaca["instruction"]},
        {"role": "assistant", "content": alpaca["output"]},
    ]
    assert firsts["sharegpt"]["conversations"][1] == {"from": "gpt", "value": alpaca["output"]}
    assert firsts["prompt-completion"] == {"prompt": alpaca["instruction"], "completion": alpaca["output"]}


def test_curate_reads_a_synthesize_dir_and_the_cli_prints_the_table(tmp_path, records):
    records = records[0]
    shard_dir = tmp_path / "synth" / "shards"
    shard_dir.mkdir(parents=True)
    append(shard_dir / "00000.jsonl", records[:60])
    append(shard_dir / "00001.jsonl", records[60:])
    recipe = tmp_path / "r.yaml"
    recipe.write_text("curate:\n  gopher:\n    enabled: false\n  dedup:\n    near_output: false\n")
    res = CliRunner().invoke(
        cli,
        [
            "curate",
            str(tmp_path / "synth"),
            "-o",
            str(tmp_path / "ds"),
            "--recipe",
            str(recipe),
            "--set",
            "instruction.not_instruction=false",
        ],
    )
    assert res.exit_code == 0, res.output
    counts = json.loads(res.stdout.strip().splitlines()[-1])
    assert counts["total"] == len(records) and not any("gopher" in k or "near_output" in k for k in counts)
    assert "dropped/dedup/exact" in res.stderr


def test_bad_curate_input_fails_clearly(tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"instruction": "a", "output": "b"}, {"instruction": 1, "output": "b"}])
    with pytest.raises(UserError, match=r"bad\.jsonl line 2: expected string fields"):
        curate(CurateConfig(input=str(bad), output_dir=str(tmp_path / "o")))
    assert not (tmp_path / "o" / "dataset.jsonl").exists()
    with pytest.raises(UserError, match="holds no shards"):
        curate(CurateConfig(input=str(tmp_path / "o"), output_dir=str(tmp_path / "o2")))
    with pytest.raises(UserError, match="format must be one of"):
        curate(CurateConfig(input=str(bad), output_dir=str(tmp_path / "o"), format="csv"))


@pytest.mark.slow
def test_self_curation_end_to_end_with_smollm2_as_judge(tmp_path, records, base_model):
    records = records[0]
    from revgen.curate.curation import GopherSettings, JudgeSettings

    src = write_jsonl(tmp_path / "records.jsonl", records[:6])
    cfg = CurateConfig(
        input=str(src),
        output_dir=str(tmp_path / "ds"),
        gopher=GopherSettings(enabled=False),
        judge=JudgeSettings(
            enabled=True,
            model=base_model,
            backend="transformers",
            max_new_tokens=24,
            min_score=3,
            batch_size=16,
            dtype="bfloat16",
        ),
    )
    stats = curate(cfg)
    j, c = stats["judge"], stats["counts"]
    assert j["scored"] == 6 - sum(v for k, v in c.items() if k.startswith("dropped/") and "judge" not in k)
    assert j["parse_rate"] == round(1 - j["unparsed"] / j["scored"], 4) and sum(j["scores"].values()) == j["scored"]
    assert c["total"] == c["kept"] + sum(v for k, v in c.items() if k.startswith("dropped/"))
    judged = [r for r in read(tmp_path / "ds" / "rejected.jsonl") if r["reason"].startswith("judge/")]
    assert len(judged) == c.get("dropped/judge/low_score", 0) + c.get("dropped/judge/unparsed", 0)
    assert all(r["judge_output"] and "judge_score" in r["record"]["meta"] for r in judged)
