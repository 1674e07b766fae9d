"""``--data-parallel N``: N engine processes on one machine, one per GPU, disjoint shards.

Every worker reads and segments the whole corpus (cheap next to generation) so that all agree on
which units make up shard i; worker r generates the shards with ``i % N == r``. Seeds are per
segment and batches are cut within a shard exactly as in a single process, so the records are
the ones a single-process run writes, whoever writes them. The parent holds the run's directory
lock, restarts a worker that dies (its shard resumes without duplicates, see shards.py) up to
``max_restarts`` times, and shows progress from the shards' ``.done`` markers.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from revgen import config as cfgmod
from revgen.errors import UserError

log = logging.getLogger(__name__)


def visible_devices() -> list[str] | None:
    """CUDA device ids a worker may be pinned to (None: no GPU, workers share the CPU)."""
    import torch

    if not torch.cuda.is_available():
        return None
    ids = os.environ.get("CUDA_VISIBLE_DEVICES")
    return (
        [d.strip() for d in ids.split(",") if d.strip()] if ids else [str(i) for i in range(torch.cuda.device_count())]
    )


def run_data_parallel(ctx, out: Path) -> dict:
    cfg, n = ctx.cfg, ctx.cfg.data_parallel
    devices = visible_devices()
    if devices is not None and n > len(devices):
        raise UserError(f"--data-parallel {n} needs {n} GPUs; {len(devices)} visible ({','.join(devices)})")
    work_dir = out / ".workers"
    work_dir.mkdir(exist_ok=True)
    spec = work_dir / "config.json"
    spec.write_text(json.dumps(cfgmod.to_dict(cfg)))
    for stale in [*work_dir.glob("rank-*.json"), *work_dir.glob("rank-*.error")]:
        stale.unlink()
    if ctx.merge and ctx.backend == "vllm":  # merge once here, not N times in parallel
        from revgen.models import merged_dir

        merged_dir(ctx.adapter, ctx.base, ctx.cfg.dtype)
    procs = {r: _start(spec, out, r, n, devices) for r in range(n)}
    restarts = dict.fromkeys(procs, 0)
    started, last = time.time(), -1
    try:
        while procs:
            for r, p in list(procs.items()):
                code = p.poll()
                if code is None:
                    continue
                del procs[r]
                if code == 0:
                    continue
                error = work_dir / f"rank-{r}.error"
                if error.exists():  # bad input, not a crash: restarting would fail the same way
                    raise UserError(error.read_text())
                if restarts[r] >= cfg.max_restarts:
                    raise UserError(f"data-parallel worker {r} failed (exit {code}) after {restarts[r]} restarts; "
                                    f"rerun the same command to resume (log: {work_dir}/rank-{r}.log)")  # fmt: skip
                restarts[r] += 1
                log.warning("worker %d exited with %s; restarting it (%d/%d)", r, code, restarts[r], cfg.max_restarts)
                procs[r] = _start(spec, out, r, n, devices)
            done = len(list((out / "shards").glob("*.done")))
            if done != last:
                print(f"synthesize: {done} shards done, {len(procs)} workers running, "
                      f"{time.time() - started:.0f}s", file=sys.stderr, flush=True)  # fmt: skip
                last = done
            time.sleep(0.5)
    finally:
        for p in procs.values():
            p.kill()
    results = [json.loads((work_dir / f"rank-{r}.json").read_text()) for r in range(n)]
    passed = results[0]  # every worker made the same corpus pass; tokens add up
    passed["tokens"] = sum(r["tokens"] for r in results)
    passed["prompt_tokens"] = sum(r.get("prompt_tokens", 0) for r in results)
    passed["generate_s"] = max(r["generate_s"] for r in results)  # the workers generate side by side
    passed["workers"] = [{"rank": r, "tokens": x["tokens"], "generate_s": x["generate_s"], "restarts": restarts[r]}
                         for r, x in enumerate(results)]  # fmt: skip
    return passed


def _start(spec: Path, out: Path, rank: int, world: int, devices: list[str] | None) -> subprocess.Popen:
    env = dict(os.environ)
    if devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = devices[rank]
    cmd = [sys.executable, "-m", "revgen.synthesize.parallel", str(spec), str(out), str(rank), str(world)]
    with open(spec.parent / f"rank-{rank}.log", "a") as log_file:
        return subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT)


def worker_main(spec: str, out: str, rank: int, world: int) -> None:
    from revgen import runinfo
    from revgen.progress import Progress
    from revgen.synthesize.core import Context, SynthConfig, work

    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s rank {rank} %(levelname)s %(name)s: %(message)s")
    cfg = cfgmod.build(SynthConfig, json.loads(Path(spec).read_text()), spec)
    runinfo.set_threads(cfg.threads)
    try:
        passed = work(Context.build(cfg), Path(out), rank, world, Progress(cfg.corpus, disable=True))
    except UserError as exc:
        (Path(spec).parent / f"rank-{rank}.error").write_text(exc.message)
        raise SystemExit(3) from None
    runinfo.write_json(Path(spec).parent / f"rank-{rank}.json", passed)


if __name__ == "__main__":
    worker_main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
