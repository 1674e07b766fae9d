"""Curation at corpus scale on datatrove: bounded memory, any number of tasks, Local/Ray/Slurm.

``revgen curate --executor local|ray|slurm --tasks N`` runs the same filters and dedup as the
in-process chain as datatrove stages over the input's shard files, with everything between stages
on disk under ``work_dir`` (default ``OUTPUT_DIR/.staged``):

1. ``filter`` (N tasks over input files): revgen's filter chain per file; survivors to
   ``records/F.jsonl``, rejections and counts beside them; datatrove MinHash signatures of the
   exact key, the instruction and the output (``sig/SIGNAL/bucket_B/F.minhash.sig``), and each
   survivor's full near signature (``full/SIGNAL/F.npy``) for the Jaccard check.
2. ``buckets`` (datatrove's ``MinhashDedupBuckets``, one task per band): merge-sorts each band's
   signature files and writes the colliding pairs.
3. ``decide`` (one task, ``revgen/curate/decide.py``): replays the in-process chain's decision on the colliding records only
   (exact, then near instruction, then near output; a record is a duplicate of the earliest kept
   record it collides with whose estimated Jaccard is >= threshold), in input order. Memory grows
   with the number of colliding records, not with the corpus.
4. ``write`` (N tasks over input files): the dataset part, the rejected part of each file.

The parts are concatenated in input order into the usual ``dataset.jsonl``/``rejected.jsonl``, so
the output is byte-for-byte the in-process chain's whatever N or the executor is. Files are named
by the input file's position, not the task, so a rerun with another N reuses nothing wrongly;
each stage has datatrove's per-task completion markers (``logs/STAGE``), so a killed run resumes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from revgen import shards
from revgen.curate.decide import DecideStage, near_settings
from revgen.errors import UserError
from revgen.io import atomic_write_text

log = logging.getLogger(__name__)
EXECUTORS = ("inprocess", "local", "ray", "slurm")
SIGNALS = ("exact", "instruction", "output")
BUFFER_LINES = (
    4096  # signature lines read at once per file by the bucket stage (datatrove's default: 5); 10M: 11% less CPU
)


@dataclass
class EngineSettings:
    executor: str = "inprocess"  # inprocess | local | ray | slurm (datatrove; bounded memory)
    tasks: int = 0  # tasks per parallel stage; 0: one per input file, at most the CPU count
    workers: int = -1  # tasks run at once; -1: local: the CPU count, ray: all
    work_dir: str | None = None  # staged intermediates; default OUTPUT_DIR/.staged (kept for resume)
    ray_address: str | None = None  # ray: a running cluster ("auto", "ray://host:10001"); none: a local one
    slurm: dict = field(default_factory=dict)  # slurm: SlurmPipelineExecutor options (partition, time, ...)
    keep_work_dir: bool = False  # keep the intermediates after a finished run


def input_files(source: str) -> list[Path]:
    path = Path(source)
    if path.is_file():
        return [path]
    shard_dir = path / "shards" if (path / "shards").is_dir() else path
    files = sorted(shard_dir.glob(shards.RECORD_GLOB))
    if not files:
        raise UserError(f"{path} holds no shards (expected the output dir of `revgen synthesize`)")
    return files


class _Stage:
    """A datatrove pipeline block over input files: task ``rank`` takes files rank, rank + N, ..."""

    name = "stage"

    def __init__(self, cfg, files: list[Path], work: Path):
        self.cfg, self.files, self.work = cfg, [str(f) for f in files], str(work)

    def __call__(self, data, rank: int = 0, world_size: int = 1):
        for index in range(rank, len(self.files), world_size):
            self.one(index)

    def one(self, index: int):
        raise NotImplementedError


def _signer(cfg, signal: str, work: Path):
    from revgen.curate.signatures import ExactSigner, Signer

    folder = str(work / "sig" / signal)
    if signal == "exact":
        return ExactSigner(folder)
    d = cfg.dedup
    return Signer(folder, ngram=d.ngram, bands=d.bands, rows=d.rows)


class FilterStage(_Stage):
    name = "filter"

    def one(self, index: int):
        from revgen.curate.chain import build_filters, read_records
        from revgen.curate.filters import FilterRunner
        from revgen.curate.signatures import exact_key, segment_key

        work, stem = Path(self.work), f"{index:05d}"
        for sub in ("records", "rejected", "counts", "full/instruction", "full/output", "full/segment"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        problems: dict = {}
        kept = []
        with open(work / "rejected" / f"{stem}.jsonl.tmp", "w", encoding="utf-8") as rej:

            def on_drop(record, reason, detail):
                rej.write(shards.dumps({"n": state["n"], "row": {"id": record.get("id"), "reason": reason, **detail,
                                                                  "record": record}}))  # fmt: skip

            state = {"n": 0}  # the input ordinal of the record being filtered: rejections merge back in order
            runner = FilterRunner(build_filters(self.cfg, dedup=False), on_drop)
            source = self.files[index]
            records = (
                read_records(source) if Path(self.cfg.input).is_file() else shards.iter_file(Path(source), problems)
            )
            for state["n"], record in enumerate(records, 1):
                kept.extend({"n": state["n"], "r": r} for r in runner.run([record]))
        os.replace(work / "rejected" / f"{stem}.jsonl.tmp", work / "rejected" / f"{stem}.jsonl")
        atomic_write_text(work / "records" / f"{stem}.jsonl", "".join(shards.dumps(k) for k in kept))
        for signal, on in near_settings(self.cfg):
            if not on:
                continue
            signer = _signer(self.cfg, signal, work)
            if signal == "exact":  # datatrove's sorted bucket files, named by the input file
                signer.write_buckets(np.array([exact_key(k["r"]) for k in kept], dtype=np.uint64), rank=index)
                continue
            if signal == "output":  # candidates of one segment are not each other's duplicates
                np.save(
                    work / "full" / "segment" / f"{stem}.npy",
                    np.array([segment_key(k["r"]) for k in kept], dtype=np.uint64).reshape(-1, 1),
                )
            width = signer.config.num_buckets * signer.config.hashes_per_bucket
            sigs = np.array([signer.hashvalues(k["r"][signal]) for k in kept], dtype=np.uint32).reshape(-1, width)
            np.save(work / "full" / signal / f"{stem}.npy", sigs)
            signer.write_buckets(sigs, rank=index)
        counts = dict(runner.counts)
        atomic_write_text(work / "counts" / f"{stem}.json", json.dumps({"counts": counts, "problems": problems}))


class WriteStage(_Stage):
    name = "write"

    def one(self, index: int):
        from revgen.curate.chain import export
        from revgen.evaluate.mix import Tally

        work, stem = Path(self.work), f"{index:05d}"
        remove = {}
        for line in (work / "remove" / f"{stem}.jsonl").read_text(encoding="utf-8").splitlines():
            d, reason, first = json.loads(line)
            remove[d] = (reason, first)
        counts = json.loads((work / "counts" / f"{stem}.json").read_text())["counts"]
        dropped, tally = {}, Tally()
        (work / "parts").mkdir(exist_ok=True)
        with open(work / "parts" / f"{stem}.dataset.tmp", "w", encoding="utf-8") as ds, \
                open(work / "parts" / f"{stem}.rejected.tmp", "w", encoding="utf-8") as rj, \
                open(work / "rejected" / f"{stem}.jsonl", encoding="utf-8") as fr, \
                open(work / "records" / f"{stem}.jsonl", encoding="utf-8") as kr:  # fmt: skip
            filtered = (json.loads(line) for line in fr)
            nxt = next(filtered, None)
            for i, line in enumerate(kr):
                k = json.loads(line)
                while nxt is not None and nxt["n"] < k["n"]:  # rejections in input order
                    rj.write(shards.dumps(nxt["row"]))
                    nxt = next(filtered, None)
                if i in remove:
                    reason, first = remove[i]
                    record = k["r"]
                    rj.write(shards.dumps({"id": record.get("id"), "reason": f"dedup/{reason}",
                                           "duplicate_of": first, "record": record}))  # fmt: skip
                    dropped[f"dropped/dedup/{reason}"] = dropped.get(f"dropped/dedup/{reason}", 0) + 1
                else:
                    tally.add(k["r"])
                    ds.write(shards.dumps(export(k["r"], self.cfg.format)))
            while nxt is not None:
                rj.write(shards.dumps(nxt["row"]))
                nxt = next(filtered, None)
        for key, v in dropped.items():
            counts["kept"] -= v
            counts[key] = counts.get(key, 0) + v
        os.replace(work / "parts" / f"{stem}.dataset.tmp", work / "parts" / f"{stem}.dataset.jsonl")
        os.replace(work / "parts" / f"{stem}.rejected.tmp", work / "parts" / f"{stem}.rejected.jsonl")
        atomic_write_text(work / "parts" / f"{stem}.counts.json", json.dumps({"counts": counts, "mix": tally.counts()}))


def _executor(eng: EngineSettings, pipeline, tasks: int, logs: Path, name: str, depends=None):
    if eng.executor == "local":
        from datatrove.executor import LocalPipelineExecutor

        workers = min(
            eng.workers if eng.workers > 0 else os.cpu_count() or 1, tasks
        )  # 14 bands need not be 14 processes
        return LocalPipelineExecutor(pipeline, tasks=tasks, workers=workers,
                                     logging_dir=str(logs / name), depends=depends,
                                     start_method="fork")  # fmt: skip
    if eng.executor == "ray":
        from datatrove.executor.ray import RayPipelineExecutor

        return RayPipelineExecutor(pipeline, tasks=tasks, workers=eng.workers, logging_dir=str(logs / name),
                                   depends=depends)  # fmt: skip
    from datatrove.executor.slurm import SlurmPipelineExecutor

    opts = {"time": "24:00:00", "partition": "cpu", **(eng.slurm or {})}
    if "venv_path" not in opts and "condaenv" not in opts and sys.prefix != sys.base_prefix:
        opts["venv_path"] = str(Path(sys.prefix) / "bin" / "activate")  # the jobs run this Python, revgen included
    return SlurmPipelineExecutor(pipeline, tasks=tasks, logging_dir=str(logs / name), depends=depends,
                                 job_name=f"revgen-curate-{name}", **opts)  # fmt: skip


def run(cfg, eng: EngineSettings, out: Path, problems: dict) -> dict:
    """The staged chain; writes ``dataset.jsonl``/``rejected.jsonl`` into ``out`` and returns counts, or
    ``{"submitted": LOGS}`` when Slurm jobs were submitted (a rerun once they finish writes the output)."""
    from datatrove.pipeline.dedup.minhash import MinhashDedupBuckets

    if eng.executor not in EXECUTORS[1:]:
        raise UserError(f"engine.executor must be one of {EXECUTORS}, got {eng.executor!r}")
    if cfg.judge.enabled or cfg.score.scorers or cfg.dedup.semantic:
        raise UserError("judge, score and semantic dedup load a model per record: run them with engine.executor "
                        "inprocess (on the staged output as input, if the corpus is large)")  # fmt: skip
    files = input_files(cfg.input)
    work = Path(eng.work_dir or out / ".staged")
    _check_work(work, cfg, files)
    tasks = eng.tasks or max(1, min(len(files), os.cpu_count() or 1))
    logs = work / "logs"
    if eng.executor == "ray":
        _ray_init(eng)
    stages = [_executor(eng, [FilterStage(cfg, files, work)], tasks, logs, "filter")]
    for signal, on in near_settings(cfg):
        if on:
            sigcfg = _signer(cfg, signal, work).config
            step = MinhashDedupBuckets(str(work / "sig" / signal), str(work / "dups" / signal), config=sigcfg,
                                       lines_to_buffer=BUFFER_LINES)  # fmt: skip
            stages.append(_executor(eng, [step], sigcfg.num_buckets, logs, f"buckets-{signal}", stages[-1]))
    stages.append(_executor(eng, [DecideStage(cfg, files, work)], 1, logs, "decide", stages[-1]))
    stages.append(_executor(eng, [WriteStage(cfg, files, work)], tasks, logs, "write", stages[-1]))
    _quiet_datatrove()
    if eng.executor == "slurm" and _queued(work):  # a rerun before the jobs end must not submit them twice
        return {"submitted": str(logs)}
    log.info("curate on datatrove (%s): %d input files, %d tasks, work dir %s", eng.executor, len(files), tasks, work)
    with children_die_with_parent():
        stages[-1].run()  # each executor runs what it depends on first
    if eng.executor == "slurm" and stages[-1].get_incomplete_ranks(range(tasks)):
        return {"submitted": str(logs)}
    return _merge(files, work, out, problems, eng, tasks)


_OWNER: list[int] = []  # the pid whose forked children must not outlive it (set while a staged run is on)


def _on_fork() -> None:
    """In a child forked during a staged run (datatrove's pool workers, its Manager's server): ask the kernel
    to SIGKILL it when its parent dies, so a SIGKILLed ``revgen curate`` leaves nothing running."""
    if not _OWNER or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    parent = _OWNER[-1]
    _OWNER[:] = [os.getpid()]  # its own children (a worker's) die with it in turn
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took hold
        os._exit(1)


class children_die_with_parent:
    """While active, every process this one forks is killed by the kernel when this one dies."""

    registered = False

    def __enter__(self):
        if not children_die_with_parent.registered:
            os.register_at_fork(after_in_child=_on_fork)
            children_die_with_parent.registered = True
        _OWNER[:] = [os.getpid()]

    def __exit__(self, *exc):
        _OWNER.clear()


def _queued(work: Path) -> list[str]:
    """The Slurm jobs (pending or running) that log under this work dir: an earlier run's, still going."""
    import subprocess

    logs = str((work / "logs").resolve())
    try:
        listed = subprocess.run(["squeue", "-h", "-O", "ArrayJobID:20,STDOUT:4096"], capture_output=True, text=True,
                                timeout=60).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        raise UserError(f"engine.executor slurm: cannot run squeue ({exc})") from None
    queued = sorted({line.split()[0] for line in listed.splitlines() if logs in line})
    if queued:
        log.info("Slurm still lists jobs %s of this run: rerun once they finish", ", ".join(queued))
    return queued


def _check_work(work: Path, cfg, files):
    """A work dir belongs to one input and one config: anything else starts it afresh."""
    from revgen import config as cfgmod

    key = {
        "config": cfgmod.config_hash(cfg),
        "files": [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files],
    }
    stamp = work / "input.json"
    if stamp.is_file() and json.loads(stamp.read_text()) != key:
        log.info("staged work dir %s is for another input or config: starting afresh", work)
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    if not stamp.is_file():
        atomic_write_text(stamp, json.dumps(key))


def _ray_init(eng: EngineSettings):
    from revgen.reach import check_ray_address

    check_ray_address(eng.ray_address, "engine.ray_address")  # before ray.init's 30 s of retries
    import ray

    if not ray.is_initialized():
        if eng.ray_address:
            ray.init(address=eng.ray_address, log_to_driver=False)
        else:
            ray.init(num_cpus=eng.workers if eng.workers > 0 else None, log_to_driver=False, include_dashboard=False)


def _quiet_datatrove():
    """datatrove logs every task to stderr at INFO; keep its per-task log files, show warnings only."""
    from datatrove.executor import base
    from datatrove.utils import logging as dt_logging
    from loguru import logger

    def default():  # warnings only: an error comes back as the task's exception and revgen prints it once
        logger.remove()
        logger.add(
            sys.stderr,
            level="WARNING",
            colorize=False,
            format="datatrove: {message}",
            filter=lambda r: r["level"].no < 40 and r["exception"] is None,
        )

    def add_task_logger(logging_dir, rank, local_rank=0, node_rank=-1):
        default()
        logfile = logging_dir.open(f"logs/task_{rank:05d}.log", "w")
        logger.add(logfile, level="DEBUG", colorize=False)
        return logfile

    base.add_task_logger = add_task_logger
    dt_logging.setup_default_logger = default
    default()


def _merge(files, work: Path, out: Path, problems: dict, eng: EngineSettings, tasks: int) -> dict:
    from collections import Counter

    from revgen.evaluate.mix import Tally

    counts, tally = Counter(), Tally()
    for i in range(len(files)):
        part = json.loads((work / "parts" / f"{i:05d}.counts.json").read_text())
        counts.update(part["counts"])
        tally.merge(part["mix"])
        for kind, v in json.loads((work / "counts" / f"{i:05d}.json").read_text())["problems"].items():
            if kind == "examples":
                problems.setdefault("examples", []).extend(v[: 5 - len(problems.get("examples", []))])
            else:
                problems[kind] = problems.get(kind, 0) + v
    for name in ("dataset", "rejected"):
        tmp = out / f".{name}.jsonl.tmp"
        with open(tmp, "wb") as dst:
            for i in range(len(files)):
                with open(work / "parts" / f"{i:05d}.{name}.jsonl", "rb") as src:
                    shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(tmp, out / f"{name}.jsonl")
    if not eng.keep_work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "counts": counts,
        "mix": tally.counts(),
        "engine": {**asdict(eng), "tasks": tasks, "input_files": len(files)},
    }
