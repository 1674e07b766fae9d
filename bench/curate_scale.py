"""Curation memory and speed against corpus size: the in-process chain vs the staged (datatrove) path.

    python bench/curate_scale.py --records 100000 1000000 --paths inprocess local --tasks 2

Writes a corpus of N records as ``--shards`` JSONL shards (streamed: never held in memory), built as
bench/curate_throughput.py builds them (Dolly sentences recombined, 5% exact and 5% near copies of
a recent record; instructions spliced from two Dolly instructions with two of the passage's words
between, unless ``--spliced``), then runs ``revgen curate`` on it once per path in a fresh subprocess and samples
the RSS and PSS (shared pages counted once) of that whole process tree (workers included) every 0.2 s. Reports wall time, CPU time
(getrusage of all descendants),
records/s per CPU second, peak tree RSS, and whether the datasets are byte-identical.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import parser

ROOT = Path(__file__).resolve().parents[1]


def write_corpus(n: int, shards: int, out: Path, seed: int = 0, varied: bool = True) -> Path:
    from revgen.dolly import load_pairs

    rows = load_pairs()
    sentences = [s.strip() for r in rows for t in (r["response"], r["context"])
                 for s in re.split(r"(?<=[.!?])\s+", t) if len(s.split()) >= 6]  # fmt: skip
    instructions = [r["instruction"] for r in rows]
    rng, recent = random.Random(seed), []
    (out / "shards").mkdir(parents=True, exist_ok=True)
    per = -(-n // shards)
    files = [open(out / "shards" / f"{k:05d}.jsonl", "w", encoding="utf-8") for k in range(shards)]
    for i in range(n):
        roll = rng.random()
        if recent and roll < 0.10:
            src = recent[rng.randrange(len(recent))]
            rec = {**src, "id": f"r{i}"}
            if roll >= 0.05:
                words = src["output"].split()
                words[rng.randrange(len(words))] = "indeed"
                rec["output"] = " ".join(words)
        else:
            body = " ".join(rng.sample(sentences, rng.randint(2, 5)))
            a, b = rng.choice(instructions).split(), rng.choice(instructions).split()
            # varied: two words of the passage between the halves, as real instructions name their passage's
            # subject (spliced halves alone repeat at corpus scale: 382 instructions give ~146k pairs)
            middle = rng.sample(body.split(), 2) if varied else []
            rec = {"id": f"r{i}", "instruction": " ".join(a[: max(len(a) // 2, 1)] + middle + b[len(b) // 2 :]),
                   "input": "", "output": body}  # fmt: skip
        recent.append(rec)
        if len(recent) > 10_000:  # copies come from a bounded window, so the generator stays small
            recent.pop(rng.randrange(len(recent)))
        files[i // per].write(json.dumps(rec) + "\n")
    for f in files:
        f.close()
    return out


def run(corpus: Path, out: Path, path: str, tasks: int, keep_work: bool = False) -> dict:
    import psutil

    cmd = [sys.executable, "-m", "revgen", "curate", str(corpus), "-o", str(out), "--set", "report=false"]
    if path != "inprocess":
        cmd += ["--executor", path, "--tasks", str(tasks)] + (
            ["--set", "engine.keep_work_dir=true"] if keep_work else []
        )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    top, peak, peak_pss = psutil.Process(proc.pid), 0, 0
    while proc.poll() is None:
        try:
            procs = [top] + top.children(recursive=True)
            rss = pss = 0
            for p in procs:
                try:
                    mem = p.memory_full_info()  # pss: shared pages of forked workers counted once
                    rss, pss = rss + mem.rss, pss + mem.pss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            peak, peak_pss = max(peak, rss), max(peak_pss, pss)
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.2)
    wall = time.time() - start
    stdout, stderr = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{path} failed:\n{stderr[-3000:]}")
    counts = json.loads(stdout.strip().splitlines()[-1])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # every waited-for descendant, workers included
    cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    digest = hashlib.sha256((out / "dataset.jsonl").read_bytes()).hexdigest()[:16]
    return {"path": path, "tasks": tasks if path != "inprocess" else 1, "wall_s": round(wall, 1),
            "cpu_s": round(cpu_s, 1), "records_per_cpu_s": round(counts["total"] / max(cpu_s, 1e-9)),
            "records_per_s_wall": round(counts["total"] / wall), "peak_tree_rss_mib": round(peak / 2**20),
            "peak_tree_pss_mib": round(peak_pss / 2**20),
            "kept": counts["kept"], "dataset_sha256": digest,
            **({"stage_wall_s": stage_walls(out / ".staged" / "logs")} if keep_work and path != "inprocess" else {})}  # fmt: skip


def stage_walls(logs: Path) -> dict:
    """Each staged step's wall time: from its executor.json to its last completion marker."""
    walls = {}
    for stage in sorted(logs.iterdir(), key=lambda d: (d / "executor.json").stat().st_mtime):
        done = [f.stat().st_mtime for f in (stage / "completions").iterdir()]
        walls[stage.name] = round(max(done) - (stage / "executor.json").stat().st_mtime, 1)
    return walls


def main():
    ap = parser(__doc__)
    ap.add_argument("--records", type=int, nargs="+", default=[100_000])
    ap.add_argument("--paths", nargs="+", default=["inprocess", "local"])
    ap.add_argument("--tasks", type=int, default=2)
    ap.add_argument("--shards", type=int, default=0, help="input shards (default: one per 50k records, >= 4)")
    ap.add_argument("--spliced", action="store_true", help="instructions as bench/curate_throughput.py splices them")
    ap.add_argument("--work", default=None, help="where corpora and outputs go (default: a temp dir)")
    ap.add_argument(
        "--keep-work-dir", action="store_true", help="keep the staged intermediates; report each stage's wall time"
    )
    args = ap.parse_args()
    base = Path(args.work or tempfile.mkdtemp(prefix="curate-scale-"))
    results = []
    for n in args.records:
        corpus = base / f"corpus-{n}{'-spliced' if args.spliced else ''}"
        if not (corpus / "shards").is_dir():
            t = time.time()
            write_corpus(n, args.shards or max(4, n // 50_000), corpus, varied=not args.spliced)
            print(f"corpus {n}: {time.time() - t:.0f} s", file=sys.stderr)
        for path in args.paths:
            out = base / f"out-{n}-{path}"
            if out.exists():  # a fresh run, not a resumed one
                shutil.rmtree(out)
            res = {"records": n, **run(corpus, out, path, args.tasks, args.keep_work_dir)}
            print(json.dumps(res), flush=True)
            results.append(res)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
