"""The staged (datatrove) curation path gives the in-process chain's bytes: any task count, any
executor, after a kill, with unreadable shard lines."""

import importlib.util
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from revgen.curate.curation import CurateConfig, curate
from revgen.curate.staged import EngineSettings
from revgen.errors import UserError

ray_missing = importlib.util.find_spec("ray") is None and not os.environ.get("REVGEN_REQUIRE_RAY")


def _slurm_up() -> bool:
    """A Slurm controller answers here (.ci/slurm-up starts a one-node cluster)."""
    try:
        return bool(
            subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        return False


slurm_missing = not os.environ.get("REVGEN_REQUIRE_SLURM") and not _slurm_up()
FILES = ("dataset.jsonl", "rejected.jsonl")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, dolly_rows):
    """Three shards of real Dolly pairs with planted exact and near copies, across and within shards."""
    rng = random.Random(0)
    rows = [{"id": f"r{i}", "instruction": r["instruction"], "input": "", "output": r["response"]}
            for i, r in enumerate(dolly_rows)]  # fmt: skip
    for i in range(150):
        src = rows[rng.randrange(len(rows))]
        if i % 3 == 0:
            rows.append({**src, "id": f"exact{i}"})
        elif i % 3 == 1:
            words = src["output"].split()
            words[rng.randrange(len(words))] = "indeed"
            rows.append({**src, "id": f"near{i}", "output": " ".join(words)})
        else:
            rows.append({**src, "id": f"instr{i}", "output": rows[rng.randrange(len(rows))]["output"]})
    rng.shuffle(rows)
    root = tmp_path_factory.mktemp("staged") / "synth"
    (root / "shards").mkdir(parents=True)
    third = len(rows) // 3 + 1
    for k in range(3):
        text = "".join(json.dumps(r) + "\n" for r in rows[k * third : (k + 1) * third])
        (root / "shards" / f"{k:05d}.jsonl").write_text(text)
    return root


def cfg(src, out, **engine):
    return CurateConfig(input=str(src), output_dir=str(out), report=False, engine=EngineSettings(**engine))


def outputs(out: Path) -> dict:
    return {name: (out / name).read_bytes() for name in FILES}


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("inprocess")
    stats = curate(cfg(corpus, out))
    c = stats["counts"]
    assert c["dropped/dedup/exact"] >= 20 and c["dropped/dedup/near_output"] >= 10 and c["kept"] > 180
    return outputs(out), stats


@pytest.mark.parametrize("tasks", [1, 3])
def test_local_executor_writes_the_in_process_bytes_at_any_task_count(corpus, reference, tmp_path, tasks):
    ref, ref_stats = reference
    stats = curate(cfg(corpus, tmp_path, executor="local", tasks=tasks))
    assert outputs(tmp_path) == ref
    assert stats["counts"] == ref_stats["counts"] and stats["filters"] == ref_stats["filters"]
    assert stats["engine"]["tasks"] == tasks and stats["engine"]["input_files"] == 3
    assert not (tmp_path / ".staged").exists()  # intermediates go once the dataset is written
    rejected = [json.loads(line) for line in ref["rejected.jsonl"].decode().splitlines()]
    assert all(r["duplicate_of"] for r in rejected if r["reason"].startswith("dedup/"))


def test_a_run_killed_in_the_bucket_stage_resumes_to_the_same_bytes(corpus, reference, tmp_path):
    ref, _ = reference
    work = tmp_path / "work"
    c = cfg(corpus, tmp_path / "out", executor="local", tasks=2, work_dir=str(work), keep_work_dir=True)
    curate(c)
    # what a SIGKILL in band 5 of the instruction buckets leaves: bands 0-4 marked complete, band 5 torn,
    # nothing after it; the later stages' markers and files are gone
    buckets = work / "logs" / "buckets-instruction" / "completions"
    for band in range(5, 14):
        (buckets / f"{band:05d}").unlink()
    torn = work / "dups" / "instruction" / "00005_00.dups"
    torn.write_bytes(torn.read_bytes()[: len(torn.read_bytes()) // 2 + 3])
    for name in ("buckets-output", "buckets-exact", "decide", "write"):
        shutil.rmtree(work / "logs" / name)
    for sub in ("dups/output", "remove", "parts"):
        shutil.rmtree(work / sub, ignore_errors=True)
    for name in FILES:
        (tmp_path / "out" / name).unlink()
    curate(c)
    assert outputs(tmp_path / "out") == ref


def test_sigkill_mid_run_then_rerun_gives_the_same_bytes(corpus, reference, tmp_path):
    ref, _ = reference
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "revgen", "curate", str(corpus), "-o", str(out), "--set", "report=false",
           "--set", "engine.executor=local", "--set", "engine.tasks=2"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while (
        not (out / ".staged" / "logs" / "buckets-instruction").exists()
        and proc.poll() is None
        and time.time() < deadline
    ):
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "dataset.jsonl").exists()  # killed before the merge: no partial dataset under the final name
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert outputs(out) == ref


def test_sigkill_of_the_parent_alone_leaves_no_child_process_running(corpus, tmp_path):
    psutil = pytest.importorskip("psutil")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "revgen", "curate", str(corpus), "-o", str(out), "--set", "report=false",
           "--set", "engine.executor=local", "--set", "engine.tasks=2"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    parent = psutil.Process(proc.pid)
    deadline, children = time.time() + 120, []
    while proc.poll() is None and time.time() < deadline:  # datatrove's Manager and pool workers are up
        children = parent.children(recursive=True)
        if len(children) >= 2 and (out / ".staged" / "logs").exists():
            break
        time.sleep(0.01)
    assert proc.poll() is None and len(children) >= 2, "the staged run ended before its workers could be seen"
    os.kill(proc.pid, signal.SIGKILL)  # the parent only, as an OOM killer or `kill -9 PID` does
    proc.wait()
    _, alive = psutil.wait_procs(children, timeout=5)
    try:
        assert not alive, [(p.pid, p.cmdline()[:4]) for p in alive]
    finally:
        for p in alive:
            p.kill()


def test_unreadable_shard_lines_are_counted_as_in_process(corpus, tmp_path):
    src = tmp_path / "synth"
    shutil.copytree(corpus, src)
    shard = src / "shards" / "00001.jsonl"
    lines = shard.read_text().splitlines(keepends=True)
    shard.write_text("".join(lines[:5]) + "{not json\n" + "".join(lines[5:]) + '{"id": "torn", "instr')
    a = curate(cfg(src, tmp_path / "a"))
    b = curate(cfg(src, tmp_path / "b", executor="local", tasks=2))
    assert a["counts"]["unreadable/bad_line"] == b["counts"]["unreadable/bad_line"] == 1
    assert a["counts"]["unreadable/torn_tail"] == b["counts"]["unreadable/torn_tail"] == 1
    assert outputs(tmp_path / "a") == outputs(tmp_path / "b")


SHORT = [{"id": f"short{i}", "instruction": "What is it?", "input": "", "output": "A word."} for i in range(8)]
SHAPES = {  # the shards a short or broken synthesis run can leave beside good ones
    "all_filtered": SHORT,
    "empty": b"",
    "non_json": b"not json\n{also not\n",
    "random_bytes": bytes(range(256)) * 4,
    "torn": b'{"id": "t", "instruction": "Name',
    "one_record": None,  # one good record
}


@pytest.mark.parametrize("tasks", [1, 4])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_odd_shards_give_the_in_process_bytes_and_counts(dolly_rows, tmp_path, shape, tasks):
    good = [{"id": f"g{i}", "instruction": r["instruction"], "input": "", "output": r["response"]}
            for i, r in enumerate(dolly_rows[:40])]  # fmt: skip
    odd = SHAPES[shape] if SHAPES[shape] is not None else good[-1:]
    src = tmp_path / "synth" / "shards"
    src.mkdir(parents=True)
    for k, content in enumerate([good[:20], odd, good[20:39]] if shape != "all_filtered" else [odd, odd]):
        data = content if isinstance(content, bytes) else "".join(json.dumps(r) + "\n" for r in content).encode()
        (src / f"{k:05d}.jsonl").write_bytes(data)
    a = curate(cfg(src.parent, tmp_path / "a"))
    b = curate(cfg(src.parent, tmp_path / "b", executor="local", tasks=tasks))
    assert outputs(tmp_path / "a") == outputs(tmp_path / "b")
    assert a["counts"] == b["counts"] and a["instruction_mix"] == b["instruction_mix"]
    assert a["counts"]["total"] == a["counts"].get("kept", 0) + sum(
        v for k, v in a["counts"].items() if k.startswith("dropped/")
    )


def test_bad_engine_settings_fail_clearly(corpus, tmp_path):
    with pytest.raises(UserError, match="engine.executor must be one of"):
        cfg(corpus, tmp_path, executor="spark")
    from revgen import config as cfgmod

    for key, value, what in (("tasks", -2, "tasks must be an integer >= 0"), ("workers", 0, "workers must be -1")):
        with pytest.raises(UserError, match=what):  # checked where the recipe is read, before any stage runs
            cfgmod.build(CurateConfig, {"input": str(corpus), "engine": {"executor": "local", key: value}})
    c = cfg(corpus, tmp_path, executor="local")
    with pytest.raises(UserError, match="judge, score and semantic dedup"):
        curate(replace(c, score=replace(c.score, scorers=["ifd"])))


@pytest.mark.slow
@pytest.mark.skipif(ray_missing, reason="ray is not installed (CI sets REVGEN_REQUIRE_RAY=1)")
def test_ray_executor_on_a_local_two_cpu_cluster_gives_the_same_dataset(corpus, reference, tmp_path):
    import ray

    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    try:
        stats = curate(cfg(corpus, tmp_path, executor="ray", tasks=2, workers=2))
    finally:
        ray.shutdown()
    assert outputs(tmp_path) == reference[0]
    assert stats["counts"] == reference[1]["counts"]


@pytest.mark.slow
@pytest.mark.skipif(slurm_missing, reason="no Slurm here (.ci/slurm-up starts a one-node cluster)")
def test_slurm_executor_submits_then_a_rerun_writes_the_in_process_bytes(corpus, reference, tmp_path):
    """On a real one-node Slurm cluster: the first run submits the stages as dependent jobs and says
    so (no dataset yet); the same command after the jobs finish writes the in-process bytes."""
    cmd = [
        sys.executable,
        "-m",
        "revgen",
        "curate",
        str(corpus),
        "-o",
        str(tmp_path),
        "--set",
        "report=false",
        "--executor",
        "slurm",
        "--tasks",
        "2",
        "--set",
        'engine.slurm={"partition": "cpu", "time": "00:20:00"}',
    ]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr[-2000:]
    said = json.loads(first.stdout.strip().splitlines()[-1])
    assert said["submitted"] is True and Path(said["logs"]).is_dir() and not (tmp_path / "dataset.jsonl").exists()

    def ours():  # the jobs Slurm lists that log under this test's work dir
        queue = subprocess.run(["squeue", "-h", "-O", "ArrayJobID:20,STDOUT:1000"], capture_output=True, text=True)
        return {line.split()[0] for line in queue.stdout.splitlines() if str(tmp_path) in line}

    submitted = ours()
    assert submitted
    early = subprocess.run(cmd, capture_output=True, text=True, timeout=120)  # before they end: nothing resubmitted
    assert json.loads(early.stdout.strip().splitlines()[-1])["submitted"] is True
    assert ours() <= submitted
    deadline = time.time() + 600
    while ours() and time.time() < deadline:
        time.sleep(2)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout.strip().splitlines()[-1]) == reference[1]["counts"]
    assert outputs(tmp_path) == reference[0]


def test_candidates_of_one_segment_are_not_each_others_output_duplicates(dolly_rows, tmp_path):
    """best_of_candidates picks among a segment's candidates: dedup must leave them all to it."""
    src = tmp_path / "synth"
    (src / "shards").mkdir(parents=True)
    rows = []
    long = [r for r in dolly_rows if len(r["response"].split()) >= 40 and not r["context"]][:60]
    for i, r in enumerate(long):
        for k, instruction in enumerate([r["instruction"], f"Summarize what this says about {r['category']}."]):
            rows.append({"id": f"s{i}:{k}", "instruction": instruction, "input": "", "output": r["response"],
                         "meta": {"segment_id": f"s{i}", "candidate": k}})  # fmt: skip
    rows.append(
        {
            **rows[0],
            "id": "s99:0",
            "meta": {"segment_id": "s99", "candidate": 0},
            "instruction": "Tell me something else about this.",
        }
    )  # another segment, the same passage
    for k in range(2):
        (src / "shards" / f"{k:05d}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[k::2]))
    a = curate(cfg(src, tmp_path / "a"))
    b = curate(cfg(src, tmp_path / "b", executor="local", tasks=2))
    assert outputs(tmp_path / "a") == outputs(tmp_path / "b") and a["counts"] == b["counts"]
    rejected = {
        json.loads(line)["id"]: json.loads(line)
        for line in (tmp_path / "a" / "rejected.jsonl").read_text().splitlines()
    }
    assert rejected["s99:0"]["reason"] == "dedup/near_output" and rejected["s99:0"]["duplicate_of"] == "s0:0"
    assert not any(r["reason"] == "dedup/near_output" for i, r in rejected.items() if i != "s99:0")
    assert a["counts"]["dropped/dedup/near_output"] == 1


def test_a_bad_line_in_a_jsonl_input_is_one_error_line_on_the_staged_path_too(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "Why is the sky blue?", "output": "Rayleigh scattering."}\n{not json\n')
    cmd = [sys.executable, "-m", "revgen", "curate", str(bad), "-o", str(tmp_path / "out"), "--executor", "local"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert [line for line in done.stderr.splitlines() if line.startswith("Error:")] == [
        f"Error: {bad} line 2: malformed JSON (Expecting property name enclosed in double quotes)"
    ]
    assert not (tmp_path / "out" / "dataset.jsonl").exists()


@pytest.fixture(scope="module")
def boilerplate(tmp_path_factory):
    """Records sharing a long boilerplate (estimated Jaccard ~0.5: band collisions, few true duplicates),
    so band groups hold dozens of distinct kept records, plus planted near copies."""
    rng = random.Random(1)
    head = (
        "write a short summary of the following report about the regional water supply its budget and the "
        "works planned for the coming year"
    ).split()
    tail = (
        "the report was prepared by the planning office and reviewed by the board before it went to the "
        "council for a vote in the spring session"
    ).split()

    def words(n):
        return [f"w{rng.randrange(10**6)}" for _ in range(n)]

    rows = [{"id": f"b{i}", "instruction": " ".join(head + words(8)), "input": "",
             "output": " ".join(tail + words(14))} for i in range(300)]  # fmt: skip
    for i in range(40):
        src = dict(rows[rng.randrange(len(rows))])
        key = "output" if i % 2 else "instruction"
        w = src[key].split()
        w[-1 - rng.randrange(3)] = "changed"
        src[key] = " ".join(w)
        if key == "output":  # a fresh instruction: the copy is found by the output signal
            src["instruction"] = " ".join(head + words(8))
        rows.append({**src, "id": f"copy{i}"})
    rng.shuffle(rows)
    root = tmp_path_factory.mktemp("boilerplate") / "synth"
    (root / "shards").mkdir(parents=True)
    for k in range(2):
        (root / "shards" / f"{k:05d}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[k::2]))
    return root


@pytest.mark.parametrize("hot", [None, 2])  # default, and nearly every group held as an array
def test_hot_band_groups_are_checked_from_memory_with_the_in_process_decisions(boilerplate, tmp_path, monkeypatch, hot):
    from revgen.curate import decide

    ref = curate(cfg(boilerplate, tmp_path / "ref"))
    assert ref["counts"]["dropped/dedup/near_instruction"] >= 10 and ref["counts"]["dropped/dedup/near_output"] >= 10
    if hot:
        monkeypatch.setattr(decide, "HOT", hot)
    hot_sizes = []
    keep = decide._KeptGroups.keep

    def spy(self, at, gids):
        keep(self, at, gids)
        hot_sizes.append(max((self.count[g] for g in self.hot), default=0))

    monkeypatch.setattr(decide._KeptGroups, "keep", spy)  # the decide task runs in this process (one worker)
    stats = curate(cfg(boilerplate, tmp_path / "staged", executor="local", tasks=2, workers=1))
    assert outputs(tmp_path / "staged") == outputs(tmp_path / "ref")
    assert stats["counts"] == ref["counts"]
    assert max(hot_sizes) > 2 * decide.HOT  # a group outgrew its first array and was checked from the grown one
