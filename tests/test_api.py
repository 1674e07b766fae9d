"""The Python API (revgen/api.py) on the real model: datasets in and out, the CLI's bytes, its errors."""

import dataclasses
import json
import pydoc
from pathlib import Path

import pytest
from click.testing import CliRunner

import revgen
from revgen.cli import cli
from revgen.curate.curation import CurateConfig
from revgen.synthesize.core import SynthConfig
from revgen.train.trainer import TrainConfig
from tests.helpers import write_jsonl

pytestmark = pytest.mark.slow

SYNTH = dict(backend="transformers", temperature=0.0, max_new_tokens=24, batch_size=4, micro_batch_size=4,
             shard_size=4, min_words=8, openers=0)  # fmt: skip
SYNTH_FLAGS = ["--backend", "transformers", "--greedy", "--max-new-tokens", "24", "--batch-size", "4", "--openers", "0",
               "--set", "micro_batch_size=4", "--set", "shard_size=4", "--set", "min_words=8"]  # fmt: skip


@pytest.fixture(scope="module")
def rows(dolly_rows):
    return [{"text": r["response"]} for r in dolly_rows[300:310]]


@pytest.fixture(scope="module")
def api_run(trained_adapter, rows, tmp_path_factory):
    import datasets

    out = tmp_path_factory.mktemp("api") / "synth"
    return revgen.synthesize(datasets.Dataset.from_list(rows), adapter=trained_adapter[0], output_dir=out, **SYNTH)


def _shard_bytes(out):
    return {p.name: p.read_bytes() for p in sorted((out / "shards").glob("*.jsonl"))}


def _records(out):
    rows = [json.loads(line) for p in sorted((out / "shards").glob("*.jsonl")) for line in p.read_text().splitlines()]
    for r in rows:
        r["meta"].pop("source")  # names the file the rows were read from
    return rows


def test_synthesize_gives_the_clis_bytes_and_takes_a_dataset(api_run, trained_adapter, rows, tmp_path):
    import datasets

    corpus = write_jsonl(tmp_path / "corpus.jsonl", rows)
    res = CliRunner().invoke(cli, ["synthesize", str(corpus), "--adapter", str(trained_adapter[0]),
                                   "-o", str(tmp_path / "cli"), *SYNTH_FLAGS])  # fmt: skip
    assert res.exit_code == 0, res.output
    same = revgen.synthesize(corpus, adapter=trained_adapter[0], output_dir=tmp_path / "api", **SYNTH)
    assert _shard_bytes(tmp_path / "cli") == _shard_bytes(tmp_path / "api")  # same settings, same bytes
    assert isinstance(api_run, datasets.Dataset) and api_run.stats["status"] == "complete"
    assert len(api_run) == api_run.stats["counts"]["records"] == len(same) > 0
    assert {"instruction", "input", "output", "id", "meta"} <= set(api_run.column_names)
    assert _records(Path(api_run.run_dir)) == _records(tmp_path / "cli")  # a Dataset of the rows is the same corpus


def test_the_same_rows_again_resume_and_other_shapes_of_them_are_the_same_corpus(api_run, trained_adapter, rows):
    import pandas as pd

    again = revgen.synthesize(pd.DataFrame(rows), adapter=trained_adapter[0], output_dir=api_run.run_dir, **SYNTH)
    assert again.stats["generated_tokens_this_run"] == 0 and again["id"] == api_run["id"]  # resumed, nothing new
    listed = revgen.synthesize(rows, adapter=trained_adapter[0], output_dir=api_run.run_dir, **SYNTH)
    assert listed["instruction"] == api_run["instruction"]


def test_curate_takes_the_synthesize_result_and_matches_the_cli(api_run, tmp_path):
    kept = revgen.curate(api_run, output_dir=tmp_path / "api", format="alpaca")
    assert kept.column_names[:3] == ["instruction", "input", "output"]
    assert len(kept) == kept.stats["counts"]["kept"]
    res = CliRunner().invoke(cli, ["curate", api_run.run_dir, "-o", str(tmp_path / "cli"), "--format", "alpaca"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "api" / "dataset.jsonl").read_bytes() == (tmp_path / "cli" / "dataset.jsonl").read_bytes()
    nested = revgen.curate(api_run, output_dir=tmp_path / "strict", gopher={"min_words": 1000})
    assert len(nested) == 0 and nested.stats["counts"].get("kept", 0) == 0  # nested settings as dicts, as in a recipe


def test_unknown_options_are_type_errors_and_bad_values_user_errors(tmp_path):
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['temprature'\]"):
        revgen.synthesize("corpus.jsonl", temprature=0.5)
    with pytest.raises(TypeError, match="max_step"):
        revgen.train(max_step=3)
    with pytest.raises(revgen.UserError, match="top_p must be a number in"):
        revgen.synthesize(str(tmp_path), top_p=2.0)
    with pytest.raises(revgen.UserError, match="records: no rows given"):
        revgen.curate([], output_dir=tmp_path / "x")


def test_help_lists_every_option_with_its_default():
    for fn, cls, own in ((revgen.synthesize, SynthConfig, {"corpus", "adapter", "output_dir"}),
                         (revgen.curate, CurateConfig, {"input", "output_dir"}),
                         (revgen.train, TrainConfig, {"data", "output_dir"})):  # fmt: skip
        text = pydoc.render_doc(fn, renderer=pydoc.plaintext)
        for f in dataclasses.fields(cls):
            if f.name not in own:
                default = f.default if f.default is not dataclasses.MISSING else None
                line = next((ln for ln in text.splitlines() if ln.strip().startswith(f"{f.name} = ")), None)
                assert line is not None, f"{fn.__name__}: {f.name} undocumented"
                if isinstance(default, (int, float, bool)) and not isinstance(default, str):
                    assert line.split("=", 1)[1].split("#")[0].strip() == repr(default)


def test_train_takes_rows(base_model, dolly_rows, tmp_path):
    rows = [{k: r[k] for k in ("instruction", "context", "response", "category")} for r in dolly_rows[:8]]
    info = revgen.train(
        rows,
        output_dir=tmp_path / "bw",
        model=base_model,
        max_length=128,
        lora={"r": 4, "alpha": 8},
        trainer={"max_steps": 1, "per_device_train_batch_size": 4},
    )
    assert info["steps"] == 1 and info["output_dir"] == str(tmp_path / "bw")
    saved = json.loads((tmp_path / "bw" / "run.json").read_text())
    assert saved["config"]["data"].endswith(".jsonl")  # the rows, written once to the cache
