"""Synthesis on several processes: --data-parallel (local workers) and --engine ray (a local Ray cluster).

Both must write exactly the records of a single-process run, and survive a worker or actor
being killed mid-run without losing or duplicating a record.
"""

import importlib.util
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from revgen import shards
from revgen.curate.curation import CurateConfig, curate
from revgen.synthesize.run import SynthConfig, synthesize
from tests.helpers import write_jsonl

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, dolly_rows):
    return write_jsonl(
        tmp_path_factory.mktemp("pcorpus") / "c.jsonl",
        [{"text": r["response"]} for r in dolly_rows[200:400] if len(r["response"].split()) >= 40][:15],
    )


def run(adapter, corpus, out, **kw):
    args = dict(corpus=str(corpus), adapter=str(adapter), output_dir=str(out), backend="transformers",
                temperature=0.7, seed=3, max_new_tokens=16, batch_size=2, micro_batch_size=2, shard_size=3,
                min_words=8, threads=1)  # fmt: skip
    return synthesize(SynthConfig(**{**args, **kw}))


@pytest.fixture(scope="module")
def reference(trained_adapter, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    return out, run(trained_adapter[0], corpus, out)


def shard_files(out: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted((out / "shards").glob("*.jsonl"))}


def record_ids(out: Path) -> list:
    return [r["id"] for r in shards.iter_records(out)]


def kill_when_started(out: Path, marker: str, killed: list, total_shards: int):
    """SIGKILL the first process whose command line holds ``marker`` once a record is on disk."""

    def go():
        deadline = time.time() + 300
        while time.time() < deadline:
            written = (
                any(p.stat().st_size for p in (out / "shards").glob("*.jsonl")) if (out / "shards").is_dir() else False
            )
            pids = _pids(marker)
            if written and pids:
                done = len(list((out / "shards").glob("*.done")))
                os.kill(pids[0], signal.SIGKILL)
                killed.append((pids[0], done))
                return
            time.sleep(0.1)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


def _pids(marker: str) -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) != os.getpid():
            try:
                if marker in (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    pids.append(int(p.name))
            except OSError:
                continue
    return sorted(pids)


def test_data_parallel_writes_the_single_process_records(reference, trained_adapter, corpus, tmp_path):
    ref, ref_info = reference
    info = run(trained_adapter[0], corpus, tmp_path / "dp", data_parallel=2)
    assert shard_files(tmp_path / "dp") == shard_files(ref)  # same shards, same bytes, sampled at temperature 0.7
    assert info["counts"] == ref_info["counts"] and [w["rank"] for w in info["workers"]] == [0, 1]
    assert all(w["tokens"] > 0 for w in info["workers"])  # both workers generated
    # curation (exact + MinHash dedup) over shards from two workers == over the single-process shards
    a, b = (
        curate(CurateConfig(input=str(d), output_dir=str(tmp_path / f"cur-{i}")))
        for i, d in enumerate([ref, tmp_path / "dp"])
    )
    assert a["counts"] == b["counts"]
    assert (tmp_path / "cur-0" / "dataset.jsonl").read_bytes() == (tmp_path / "cur-1" / "dataset.jsonl").read_bytes()


def test_data_parallel_worker_killed_mid_run_is_restarted_without_loss_or_duplicates(
    reference, trained_adapter, corpus, tmp_path
):
    ref, ref_info = reference
    out, killed = tmp_path / "dpkill", []
    t = kill_when_started(
        out, f"revgen.synthesize.parallel {out}/.workers/config.json", killed, ref_info["counts"]["shards"]
    )
    info = run(trained_adapter[0], corpus, out, data_parallel=2)
    t.join()
    assert killed and killed[0][1] < ref_info["counts"]["shards"]  # killed while shards were still pending
    assert sum(w["restarts"] for w in info["workers"]) == 1
    ids = record_ids(out)
    assert len(ids) == len(set(ids)) and sorted(ids) == sorted(record_ids(ref))
    assert shard_files(out) == shard_files(ref)


def test_data_parallel_bad_corpus_row_stops_with_the_file_and_line(trained_adapter, dolly_rows, tmp_path):
    from revgen.errors import UserError

    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": dolly_rows[0]["response"]}, "{not json", {"text": "x"}])
    with pytest.raises(UserError, match=r"bad\.jsonl.*line 2"):
        run(trained_adapter[0], bad, tmp_path / "out", data_parallel=2)


ray_missing = importlib.util.find_spec("ray") is None and not os.environ.get("REVGEN_REQUIRE_RAY")


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.mark.skipif(ray_missing, reason="ray is not installed (CI sets REVGEN_REQUIRE_RAY=1)")
def test_ray_engine_writes_the_single_process_records(ray_cluster, reference, trained_adapter, corpus, tmp_path):
    ref, ref_info = reference
    info = run(trained_adapter[0], corpus, tmp_path / "ray", executor="ray", data_parallel=2)
    assert shard_files(tmp_path / "ray") == shard_files(ref)
    assert info["counts"] == ref_info["counts"]
    again = run(trained_adapter[0], corpus, tmp_path / "ray", executor="ray", data_parallel=2)  # resume: nothing to do
    assert again["generated_tokens_this_run"] == 0 and shard_files(tmp_path / "ray") == shard_files(ref)


@pytest.mark.skipif(ray_missing, reason="ray is not installed (CI sets REVGEN_REQUIRE_RAY=1)")
def test_ray_actor_killed_mid_run_is_retried_without_loss_or_duplicates(
    ray_cluster, reference, trained_adapter, corpus, tmp_path
):
    ref, ref_info = reference
    out, killed = tmp_path / "raykill", []
    t = kill_when_started(out, "MapBatches(_Generate)", killed, ref_info["counts"]["shards"])
    run(trained_adapter[0], corpus, out, executor="ray", data_parallel=2)
    t.join()
    assert killed and killed[0][1] < ref_info["counts"]["shards"]
    ids = record_ids(out)
    assert len(ids) == len(set(ids)) and sorted(ids) == sorted(record_ids(ref))
    assert shard_files(out) == shard_files(ref)
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


@pytest.mark.skipif(ray_missing, reason="ray is not installed (CI sets REVGEN_REQUIRE_RAY=1)")
def test_ray_bad_corpus_row_stops_with_the_file_and_line(ray_cluster, trained_adapter, dolly_rows, tmp_path):
    from revgen.errors import UserError

    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": dolly_rows[0]["response"]}, {"body": "no text field"}])
    with pytest.raises(UserError, match=r"bad\.jsonl line 2: missing text field 'text'"):
        run(trained_adapter[0], bad, tmp_path / "out", executor="ray")
