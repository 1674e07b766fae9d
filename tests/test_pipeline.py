"""`revgen run`: plans, skips, reruns downstream of a change, resumes a killed run, clear recipe errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from revgen import pipeline
from revgen.errors import UserError
from tests.helpers import write_jsonl

RECIPES = sorted((Path(__file__).resolve().parent.parent / "recipes").glob("*.yaml"))


def recipe(tmp_path, stages: str, extra: str = "") -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(
        f"curate:\n  gopher: {{enabled: false}}\n{extra}run:\n  root: {tmp_path / 'root'}\n  stages:\n{stages}"
    )
    return path


@pytest.fixture
def records(tmp_path, dolly_rows):
    rows = [
        {"id": f"r{i}", "instruction": r["instruction"], "output": r["response"]} for i, r in enumerate(dolly_rows[:40])
    ]
    return write_jsonl(tmp_path / "recs.jsonl", rows + rows[:5])  # 5 exact duplicates for dedup to find


@pytest.mark.parametrize("path", [p for p in RECIPES if "run" in __import__("yaml").safe_load(p.read_text())],
                         ids=lambda p: p.name)  # fmt: skip
def test_every_shipped_pipeline_plans_strictly(path):
    root, stages = pipeline.plan(path)
    assert stages and len({s.name for s in stages}) == len(stages) and all(s.hash for s in stages)


def test_plan_skips_finished_stages_and_reruns_downstream_of_a_change(tmp_path, records):
    stages = (f"    - {{name: a, kind: curate, set: {{input: {records}}}}}\n"
              "    - {name: b, kind: curate, set: {input: '@a/dataset.jsonl'}}\n"
              "    - {name: c, kind: curate, set: {input: '@a/dataset.jsonl', format: messages}}\n")  # fmt: skip
    r = recipe(tmp_path, stages)
    assert [s.why for s in pipeline.plan(r)[1]] == ["first run"] * 3  # not "an input stage reruns"
    first = pipeline.run(r)
    assert "| a | curate | ran | first run |" in pipeline.table(first)
    assert [s["action"] for s in first["stages"]] == ["run", "run", "run"]
    kept = len((tmp_path / "root" / "a" / "dataset.jsonl").read_text().splitlines())
    assert first["stages"][0]["numbers"] == {"records": 45, "kept": kept} and kept <= 40  # 5 duplicates dropped
    assert json.loads((tmp_path / "root" / "pipeline.json").read_text())["stages"][2]["name"] == "c"
    again = pipeline.plan(r)[1]
    assert [(s.action, s.why) for s in again] == [("skip", "finished with the same config and inputs")] * 3
    # change b only: b reruns, a and c are skipped; change a: everything downstream of it reruns
    r.write_text(r.read_text().replace("'@a/dataset.jsonl'}", "'@a/dataset.jsonl', format: sharegpt}", 1))
    assert [s.action for s in pipeline.plan(r)[1]] == ["skip", "run", "skip"]
    r.write_text(r.read_text().replace("gopher: {enabled: false}", "gopher: {enabled: false}\n  dedup: {exact: false}"))
    assert [(s.action, s.why) for s in pipeline.plan(r)[1]] == [("run", "config changed"), ("run", "input a changed"),
                                                              ("run", "input a changed")]  # fmt: skip
    assert [s.action for s in pipeline.plan(r, start="c")[1]] == ["run", "run", "run"]
    assert [s.action for s in pipeline.plan(r, until="a")[1]] == ["run", "skip", "skip"]


def test_a_tagged_forward_stage_reads_a_curate_stage_and_its_tags_are_config(tmp_path, records):
    stages = (
        f"    - {{name: a, kind: curate, set: {{input: {records}}}}}\n"
        "    - {name: f, kind: forward, set: {data: [{source: dolly-sample, tag: seed}, {source: '@a', tag: augmented}]}}\n"
    )
    r = recipe(tmp_path, stages)
    _, (a, f) = pipeline.plan(r)
    assert f.inputs == ["a"] and f.values["data"][1] == {"source": str(tmp_path / "root" / "a"), "tag": "augmented"}
    r.write_text(r.read_text().replace("tag: augmented", "tag: From the web."))
    assert pipeline.plan(r)[1][1].hash != f.hash  # another tag: another model, so the stage reruns


@pytest.mark.parametrize("stages, match", [
    ("    - {name: a, kind: bake}\n", r"r.yaml line 6: a stage needs a `name` and a `kind`"),
    ("    - {name: a, kind: curate, set: {input: '@b'}}\n    - {name: b, kind: curate, set: {input: '@a'}}\n",
     r"r.yaml line 6: stage 'a' reads '@b', a stage that comes later .*cycle"),
    ("    - {name: a, kind: curate, set: {input: '@nope'}}\n", r"line 6: .*'@nope', which is not a stage"),
    ("    - {name: a, kind: curate}\n    - {name: a, kind: curate}\n", r"line 7: stage name 'a' is used twice"),
    ("    - {name: a, kind: curate, set: {format: yaml}}\n", r"format must be one of|format"),
    ("    - {name: a, kind: curate, set: {dedup: {bands: 0}}}\n", r"line 6 \(stage 'a'\) dedup: bands must be"),
    ("    - {name: ../escape, kind: curate}\n", r"line 6: stage name '../escape' must be letters.*not a path"),
    ("    - {name: /tmp/x, kind: curate}\n", r"line 6: stage name '/tmp/x' must be"),
    ("    - {name: a, kind: curate, set: [input, x]}\n", r"line 6: stage 'a': `set:` must be a mapping"),
    ("    - {name: f, kind: forward, set: {data: [dolly-sample, {source: x.jsonl, tag: ''}]}}\n",
     r"line 6 \(stage 'f'\): data\[1\]\.tag must be seed, augmented or the tag's own text"),
])  # fmt: skip
def test_bad_pipelines_fail_naming_the_recipe_line(tmp_path, stages, match):
    with pytest.raises(UserError, match=match):
        pipeline.run(recipe(tmp_path, stages))
    assert not (tmp_path / "root").exists()  # nothing ran


def test_until_before_from_is_refused(tmp_path, records):
    r = recipe(tmp_path, f"    - {{name: a, kind: curate, set: {{input: {records}}}}}\n"
                         "    - {name: b, kind: curate, set: {input: '@a/dataset.jsonl'}}\n")  # fmt: skip
    with pytest.raises(UserError, match=r"--until 'a' comes before --from 'b'"):
        pipeline.plan(r, start="b", until="a")


def test_a_finished_root_copied_elsewhere_is_still_finished(tmp_path, records):
    import shutil

    stages = (f"    - {{name: a, kind: curate, set: {{input: {records}}}}}\n"
              "    - {name: b, kind: curate, set: {input: '@a/dataset.jsonl'}}\n")  # fmt: skip
    pipeline.run(recipe(tmp_path, stages))
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copytree(tmp_path / "root", moved / "root")
    assert [s.action for s in pipeline.plan(recipe(moved, stages))[1]] == ["skip", "skip"]
    shutil.rmtree(moved / "root" / "b")
    assert [(s.action, s.why) for s in pipeline.plan(recipe(moved, stages))[1]] == [
        ("skip", "finished with the same config and inputs"),
        ("run", "first run"),
    ]


@pytest.mark.slow
def test_killed_run_resumes_inside_its_stage_and_ends_like_an_uninterrupted_one(tmp_path, base_model, dolly_rows):
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"text": r["response"]} for r in dolly_rows[200:240]
                                                if len(r["response"].split()) > 12][:24])  # fmt: skip
    extra = (f"train:\n  model: {base_model}\n  max_length: 128\n  max_rows: 8\n  lora: {{r: 4, target_modules: [q_proj]}}\n"
             "  trainer: {max_steps: 2, per_device_train_batch_size: 2}\n"
             f"synthesize:\n  corpus: {corpus}\n  backend: transformers\n  temperature: 0\n  max_new_tokens: 24\n"
             "  shard_size: 2\n  batch_size: 2\n  micro_batch_size: 2\n  min_words: 5\n")  # fmt: skip
    stages = ("    - {name: backward, kind: train}\n    - {name: synthesize, kind: synthesize, set: {adapter: '@backward'}}\n"
              "    - {name: curate, kind: curate, set: {input: '@synthesize'}}\n")  # fmt: skip

    def revgen_run(r, kill_after_shards=None):
        env = {**os.environ, "REVGEN_THREADS": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "revgen", "run", str(r)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
        if kill_after_shards is None:
            out, err = proc.communicate(timeout=900)
            assert proc.returncode == 0, err[-2000:]
            return err
        shard_dir = Path(r).parent / "root" / "synthesize" / "shards"
        deadline = time.time() + 600
        while time.time() < deadline and len(list(shard_dir.glob("*.done"))) < kill_after_shards:
            time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ra, rb = recipe(tmp_path / "a", stages, extra), recipe(tmp_path / "b", stages, extra)
    revgen_run(ra)
    revgen_run(rb, kill_after_shards=3)
    done = json.loads((tmp_path / "b" / "root" / "pipeline.json").read_text())["stages"]
    assert [s["name"] for s in done] == ["backward"]  # killed inside synthesize
    err = revgen_run(rb)
    assert "[backward] skipped" in err and "[synthesize] synthesize: running" in err

    def files(root):
        return {str(p.relative_to(root)): p.read_bytes() for d in ("synthesize/shards", "curate") for p in
                sorted((root / d).iterdir()) if p.suffix == ".jsonl"}  # fmt: skip

    a, b = files(tmp_path / "a" / "root"), files(tmp_path / "b" / "root")
    assert a == b and any(k.startswith("synthesize/shards/") for k in a) and "curate/dataset.jsonl" in a
