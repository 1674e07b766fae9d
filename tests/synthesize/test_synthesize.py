"""Synthesis end to end on the real SmolLM2 + a really trained adapter (transformers backend)."""

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from revgen import runinfo, shards
from revgen.cli import cli
from revgen.errors import UserError
from revgen.prompts import encode_prompt, get_template
from revgen.synthesize.run import SynthConfig, synthesize
from revgen.synthesize.select import SelectSettings
from tests.helpers import write_jsonl

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, dolly_rows):
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    return write_jsonl(path, [{"text": r["response"]} for r in dolly_rows[200:216]])


def run(adapter, corpus, out, **kw):
    args = dict(
        corpus=str(corpus),
        adapter=str(adapter),
        output_dir=str(out),
        backend="transformers",
        temperature=0.0,
        max_new_tokens=32,
        batch_size=4,
        micro_batch_size=4,
        shard_size=5,
        min_words=8,
        openers=0,
    )  # one free candidate per segment unless a test asks for more
    return synthesize(SynthConfig(**{**args, **kw}))


@pytest.fixture(scope="module")
def reference(trained_adapter, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    return out, run(trained_adapter[0], corpus, out)


def test_records_are_alpaca_with_provenance_and_counts_add_up(reference, trained_adapter, tokenizer):
    out, info = reference
    adapter = trained_adapter[0]
    records, dropped = list(shards.iter_records(out)), list(shards.iter_records(out, dropped=True))
    c = info["counts"]
    assert c["records"] == len(records) > 0 and c["segments"] >= 10
    assert c["selected"] == len(records) + len(dropped)  # one candidate each: nothing vanishes
    left_out = [json.loads(line) for line in (out / "segments.dropped.jsonl").open()]
    select_drops = sum(v for k, v in c.items() if k.startswith("select/"))
    assert c["segments"] == c["selected"] + select_drops == c["selected"] + sum("segment_id" in d for d in left_out)
    assert {d["reason"] for d in left_out if "segment_id" in d} <= {
        k.split("/", 1)[1] for k in c if k.startswith("select/")
    }
    assert c["documents"] == 16 and c["segments"] + c["skipped_short"] >= 16  # long documents split
    assert c["shards"] == math.ceil(c["selected"] / 5) == len(list((out / "shards").glob("*.done")))
    generated = records + dropped  # one prompt per segment: the run's prompt tokens are its records'
    assert info["prompt_tokens_this_run"] == sum(r["meta"]["prompt_tokens"] for r in generated)
    template = get_template(str(adapter))
    for r in records:
        assert {k: type(r[k]) for k in ("instruction", "input", "output")} == {
            "instruction": str,
            "input": str,
            "output": str,
        }
        assert r["input"] == "" and r["instruction"] and r["instruction"] == r["instruction"].strip()
        m = r["meta"]
        assert r["id"] == f"{m['segment_id']}:{m['candidate']}" and m["finish_reason"] == "stop"
        assert m["prompt_tokens"] == len(encode_prompt(tokenizer, template.prompt(r["output"])))
        assert m["adapter_sha256"] == runinfo.dir_hash(adapter) and m["sampling"]["temperature"] == 0.0
    for d in dropped:
        assert d["reason"] in ("length", "empty") and d["meta"]["completion_tokens"] <= 32
    saved = json.loads((out / "run.json").read_text())
    assert saved["status"] == "complete" and saved["template"] == template.text and saved["merged"] is True


def test_candidates_get_distinct_seeds_per_segment(trained_adapter, corpus, tmp_path):
    info = run(trained_adapter[0], corpus, tmp_path, temperature=0.7, num_candidates=2, max_docs=4)
    rows = list(shards.iter_records(tmp_path)) + list(shards.iter_records(tmp_path, dropped=True))
    assert len(rows) == 2 * info["counts"]["selected"]
    assert sorted({r["id"][-2:] for r in rows}) == [":0", ":1"]
    seeds = {r["meta"]["segment_id"]: r["meta"]["seed"] for r in rows}
    assert len(set(seeds.values())) == len(seeds)


def _cli(adapter, corpus, out):
    return [
        sys.executable,
        "-m",
        "revgen",
        "synthesize",
        str(corpus),
        "--adapter",
        str(adapter),
        "-o",
        str(out),
        "--backend",
        "transformers",
        "--greedy",
        "--max-new-tokens",
        "32",
        "--batch-size",
        "2",
        "--set",
        "shard_size=5",
        "--set",
        "micro_batch_size=4",
        "--set",
        "min_words=8",
        "--openers",
        "0",
    ]


def _lines(out: Path) -> int:
    return (
        sum(len(p.read_text().splitlines()) for p in (out / "shards").glob("*.jsonl"))
        if (out / "shards").exists()
        else 0
    )


def test_sigkill_mid_run_then_rerun_gives_exactly_the_uninterrupted_ids(reference, trained_adapter, corpus, tmp_path):
    ref_out, _ = reference
    out = tmp_path / "killed"
    proc = subprocess.Popen(_cli(trained_adapter[0], corpus, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while _lines(out) < 6 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "shards" / "00002.done").exists()
    current = max((out / "shards").glob("[0-9]*[0-9].jsonl"))
    with current.open("a") as fh:  # a write torn by the kill
        fh.write('{"id": "torn')
    res = subprocess.run(_cli(trained_adapter[0], corpus, out), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]

    def ids(directory):
        return [r["id"] for r in shards.iter_records(directory)] + [
            r["id"] for r in shards.iter_records(directory, dropped=True)
        ]

    got, want = ids(out), ids(ref_out)
    assert len(got) == len(set(got)) and sorted(got) == sorted(want)
    assert json.loads(res.stdout)["records"] == len(list(shards.iter_records(out)))


def test_concurrent_run_is_refused(trained_adapter, corpus, tmp_path):
    with shards.DirLock(tmp_path):
        with pytest.raises(UserError, match="in use by another revgen run"):
            run(trained_adapter[0], corpus, tmp_path)


def test_resume_with_another_config_is_refused_unless_overwrite(trained_adapter, corpus, tmp_path):
    run(trained_adapter[0], corpus, tmp_path, max_docs=2, select=SelectSettings(enabled=False))
    with pytest.raises(UserError, match="made differently.*select:.*--overwrite"):  # selection changes the records
        run(trained_adapter[0], corpus, tmp_path, max_docs=2)
    run(trained_adapter[0], corpus, tmp_path, max_docs=2, overwrite=True, select=SelectSettings(enabled=False))
    with pytest.raises(UserError, match="made differently.*max_new_tokens: 32 -> 16.*--overwrite"):
        run(trained_adapter[0], corpus, tmp_path, max_docs=2, max_new_tokens=16, select=SelectSettings(enabled=False))
    info = run(
        trained_adapter[0],
        corpus,
        tmp_path,
        max_docs=2,
        max_new_tokens=16,
        overwrite=True,
        select=SelectSettings(enabled=False),
    )
    assert info["config"]["max_new_tokens"] == 16
    assert all(r["meta"]["sampling"]["max_new_tokens"] == 16 for r in shards.iter_records(tmp_path))
    again = run(
        trained_adapter[0],
        corpus,
        tmp_path,
        max_docs=2,
        max_new_tokens=16,
        batch_size=1,
        select=SelectSettings(enabled=False),
    )
    assert again["counts"]["records"] == info["counts"]["records"]  # batch size may change on resume


def test_bad_row_mid_corpus_stops_clearly_and_keeps_what_was_written(trained_adapter, dolly_rows, tmp_path):
    rows = [{"text": r["response"]} for r in dolly_rows[200:260] if len(r["response"].split()) >= 40][
        :3
    ]  # all selected
    corpus = write_jsonl(tmp_path / "c.jsonl", rows + ["{broken"])
    args = [
        "synthesize",
        str(corpus),
        "--adapter",
        str(trained_adapter[0]),
        "-o",
        str(tmp_path / "o"),
        "--backend",
        "transformers",
        "--greedy",
        "--max-new-tokens",
        "16",
        "--set",
        "shard_size=1",
    ]
    res = CliRunner().invoke(
        cli, args
    )  # the line pass reads the corpus first: the bad row stops it before any generation
    assert res.exit_code == 1 and "c.jsonl line 4: malformed JSON" in res.output
    assert not list((tmp_path / "o" / "shards").glob("*.jsonl"))
    res = CliRunner().invoke(cli, [*args, "--select", "clean"])  # no line pass: found mid-run
    assert res.exit_code == 1 and "c.jsonl line 4: malformed JSON" in res.output
    out = tmp_path / "o"  # earlier shards are kept, whether their records were kept or dropped for length
    written = {r["meta"]["doc_id"] for dropped in (False, True) for r in shards.iter_records(out, dropped=dropped)}
    assert len(written) == 3 and len(list((tmp_path / "o" / "shards").glob("*.done"))) >= 3


def test_bad_arguments_fail_clearly(trained_adapter, tmp_path):
    with pytest.raises(UserError, match="not an adapter directory"):
        synthesize(SynthConfig(corpus=str(tmp_path), adapter=str(tmp_path), output_dir=str(tmp_path / "o")))
    with pytest.raises(UserError, match="no corpus"):
        synthesize(SynthConfig(adapter=str(trained_adapter[0])))
    res = CliRunner().invoke(
        cli,
        [
            "synthesize",
            str(tmp_path / "missing.jsonl"),
            "--adapter",
            str(trained_adapter[0]),
            "-o",
            str(tmp_path / "o2"),
            "--backend",
            "transformers",
        ],
    )
    assert res.exit_code == 1 and "is not a file, a folder or a Hub dataset id" in res.output


def test_opener_kinds_only_count_toward_resume_when_openers_are_drawn():
    from revgen.synthesize.run import SynthConfig, resume_hash

    def h(**kw):
        return resume_hash(SynthConfig(corpus="c.jsonl", adapter="a", output_dir="o", **kw))

    assert h() == h(opener_kinds="any") == h(opener_kinds="requests")  # no openers: a run from before "both" resumes
    assert h(openers=3) != h(openers=3, opener_kinds="any") != h(openers=3, opener_kinds="requests")
    assert h(openers=3) != h()
