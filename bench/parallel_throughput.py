"""Synthesis throughput with 1 and N processes: scaling efficiency of --data-parallel / --engine ray.

    python bench/parallel_throughput.py --processes 1,2                       # CPU: SmolLM2 + runs/backward
    python bench/parallel_throughput.py --gpu --processes 1,2 --docs 2048     # GPUs: Llama-2-7B shape

Every measurement is a fresh ``revgen synthesize`` process on a fresh output dir over the same
corpus (distinct passages built from the bundled Dolly responses), greedy. Rate = segments
processed / wall time of the whole command (model loading included, as a user sees it; on CPU
prompt prefill, not generated tokens, dominates); scaling efficiency = rate(N) / (N x rate(1)).
The records of every N are checked equal to N=1's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from harness import ROOT, emit, parser, timed


def make_corpus(path: Path, docs: int) -> Path:
    from revgen.dolly import load_pairs

    rows = [r["response"] for r in load_pairs() if len(r["response"].split()) >= 30]
    with path.open("w") as fh:
        for i in range(docs):
            fh.write(json.dumps({"id": f"d{i}", "text": f"Passage {i}. {rows[i % len(rows)]}"}) + "\n")
    return path


def gpu_adapter(workdir: Path) -> Path:
    """A revgen adapter dir (random LoRA r16 q/v + tokenizer + template) on the 7B-shaped random model."""
    from generate_throughput import make_adapter
    from train_throughput import build
    from transformers import AutoTokenizer

    from revgen.prompts import get_template

    model_dir, _ = build(workdir, 32, rows=10)
    adapter = workdir / "revgen-adapter"
    if not (adapter / "adapter_config.json").exists():
        make_adapter(model_dir, adapter)
        AutoTokenizer.from_pretrained(model_dir).save_pretrained(adapter)
        get_template("seed").save(adapter)
    return adapter


def generations(out: Path) -> dict:
    """Segment-candidate id -> generated instruction, kept and dropped alike."""
    from revgen import shards

    return {r["id"]: r["instruction"] for dropped in (False, True) for r in shards.iter_records(out, dropped)}


def main():
    ap = parser(__doc__)
    ap.add_argument("--workdir", default="/tmp/rgpar")
    ap.add_argument("--adapter", default=str(ROOT / "runs" / "backward"))
    ap.add_argument("--gpu", action="store_true", help="Llama-2-7B-shaped random model, transformers backend")
    ap.add_argument("--processes", default="1,2")
    ap.add_argument("--engine", default="local", choices=["local", "ray"])
    ap.add_argument("--docs", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--micro-batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process (CPU)")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    adapter = gpu_adapter(work) if args.gpu else Path(args.adapter)
    corpus = make_corpus(work / f"corpus-{args.docs}.jsonl", args.docs)
    results, base = [], None
    for n in [int(x) for x in args.processes.split(",")]:
        out = work / f"out-{args.engine}-{n}"
        subprocess.run(["rm", "-rf", str(out)], check=True)
        cmd = [sys.executable, "-m", "revgen", "-q", "synthesize", str(corpus), "--adapter", str(adapter), "-o", str(out),
               "--backend", "transformers", "--greedy", "--max-new-tokens", str(args.max_new_tokens),
               "--batch-size", str(args.batch_size), "--threads", str(args.threads), "--data-parallel", str(n),
               "--engine", args.engine, "--set", f"micro_batch_size={args.micro_batch_size}",
               "--set", f"shard_size={max(args.batch_size, args.docs // 8)}"] + (["--merge"] if args.gpu else [])  # fmt: skip
        with timed() as t:
            subprocess.run(cmd, check=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        wall = t.s
        info = json.loads((out / "run.json").read_text())
        tokens = info["generated_tokens_this_run"]
        row = {"processes": n, "engine": args.engine, "wall_s": round(wall, 1), "segments": info["counts"]["segments"],
               "records": info["counts"]["records"], "generated_tokens": tokens,
               "segments_per_s": round(info["counts"]["segments"] / wall, 2), "tokens_per_s": round(tokens / wall, 1)}  # fmt: skip
        gens = generations(out)
        row["generate_s"] = info.get("generate_s")
        row["generate_tokens_per_s"] = info.get("generate_tokens_per_s")
        base = base or (row, gens)
        row["same_generations_as_first"] = round(sum(gens.get(k) == v for k, v in base[1].items()) / len(base[1]), 4)
        ref = n / base[0]["processes"]
        row["efficiency"] = round(row["segments_per_s"] / (ref * base[0]["segments_per_s"]), 3)
        if row["generate_tokens_per_s"] and base[0]["generate_tokens_per_s"]:
            row["efficiency_generation"] = round(
                row["generate_tokens_per_s"] / (ref * base[0]["generate_tokens_per_s"]), 3
            )
        results.append(row)
        emit(row)
    for r in results:
        print(f"{r['engine']:<6} N={r['processes']}  {r['segments_per_s']:>8} segments/s  {r['tokens_per_s']:>9} tok/s  "
              f"wall {r['wall_s']:>7}s  efficiency {r['efficiency']:.2f} (generation alone "
              f"{r.get('efficiency_generation')})  same generations: {r['same_generations_as_first']}", file=sys.stderr)  # fmt: skip


if __name__ == "__main__":
    main()
