"""Curation records/s: revgen's filters + exact + MinHash dedup vs a plain datasketch loop.

    python bench/curate_throughput.py --records 100000

Records are built from real text: sentences of the bundled Dolly sample (responses and contexts)
recombined into outputs of 2-5 sentences, with instructions spliced from halves of two Dolly
instructions (so most records run the whole chain); 5% are planted exact copies
and 5% near copies (one word changed). Both sides run in this process, one after the other, on
the same records; each is single-threaded, so records/s is per core.
"""

from __future__ import annotations

import json
import random
import re

from harness import parser, timed


def build_records(n: int, seed: int = 0) -> list[dict]:
    from revgen.dolly import load_pairs

    rows = load_pairs()
    sentences = [s.strip() for r in rows for t in (r["response"], r["context"])
                 for s in re.split(r"(?<=[.!?])\s+", t) if len(s.split()) >= 6]  # fmt: skip
    instructions = [r["instruction"] for r in rows]
    rng = random.Random(seed)
    out = []
    for i in range(n):
        roll = rng.random()
        if out and roll < 0.05:
            src = out[rng.randrange(len(out))]
            out.append({**src, "id": f"r{i}"})
            continue
        if out and roll < 0.10:
            src = out[rng.randrange(len(out))]
            words = src["output"].split()
            words[rng.randrange(len(words))] = "indeed"
            out.append({**src, "id": f"r{i}", "output": " ".join(words)})
            continue
        body = " ".join(rng.sample(sentences, rng.randint(2, 5)))
        a, b = rng.choice(instructions).split(), rng.choice(instructions).split()  # spliced: few exact repeats
        instruction = " ".join(a[: max(len(a) // 2, 1)] + b[len(b) // 2 :])
        out.append({"id": f"r{i}", "instruction": instruction, "input": "", "output": body})
    return out


def revgen_pipeline(records):
    from revgen.curate.curation import CurateConfig, build_filters
    from revgen.curate.filters import FilterRunner

    runner = FilterRunner(build_filters(CurateConfig()))
    with timed() as t:
        kept = sum(1 for _ in runner.run(records))
    return t.s, kept, dict(runner.counts)


def plain_datasketch(records):
    """The loop most scripts write: MinHash(128) per output, per-shingle update, LSH query+insert."""
    from datasketch import MinHash, MinHashLSH

    lsh, kept = MinHashLSH(threshold=0.72, num_perm=128), 0
    with timed() as t:
        for r in records:
            m = MinHash(num_perm=128)
            toks = r["output"].lower().split()
            for i in range(max(len(toks) - 4, 1)):
                m.update(" ".join(toks[i : i + 5]).encode())
            if not lsh.query(m):
                lsh.insert(r["id"], m)
                kept += 1
    return t.s, kept


def main():
    ap = parser(__doc__)
    ap.add_argument("--records", type=int, default=100_000)
    args = ap.parse_args()
    with timed() as t:
        records = build_records(args.records)
    build_s = t.s
    rs, rk, counts = revgen_pipeline(records)
    ps, pk = plain_datasketch(records)
    res = {"records": args.records, "build_s": round(build_s, 1),
           "revgen": {"seconds": round(rs, 1), "records_per_s": round(args.records / rs), "kept": rk, "counts": counts},
           "plain_datasketch_near_dedup_only": {"seconds": round(ps, 1), "records_per_s": round(args.records / ps), "kept": pk},
           "revgen_over_plain": round(ps / rs, 2),
           "projected_1M_minutes_one_core": round(1_000_000 / (args.records / rs) / 60, 1)}  # fmt: skip
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
