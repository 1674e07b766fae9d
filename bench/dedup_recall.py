"""Near-dedup recall per exact-Jaccard band: how often a pair at true 5-gram Jaccard J is dropped.

    python bench/dedup_recall.py --pairs 200

Pairs come from real text (bundled Dolly responses of 40+ words): the second text is the first with
words replaced until the pair's exact Jaccard of 5-gram shingle sets (revgen's normalisation) lands
in a band. Each pair goes through revgen's NearDedup on outputs (the in-process chain; the staged
path decides from the same signatures, tests/curate/test_staged.py) and, for comparison, through
the datasketch MinHashLSH revgen used before 2026-11-30 (same bands, rows and threshold check).
"""

from __future__ import annotations

import json
import random

import numpy as np
from harness import parser

BANDS = [(0.4, 0.5), (0.5, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.0)]


def shingles(text: str, n: int = 5) -> set:
    from revgen.curate.signatures import normalize

    toks = normalize(text).split()
    return {" ".join(toks[i : i + n]) for i in range(max(len(toks) - n + 1, 1))}


def jaccard(a: str, b: str) -> float:
    x, y = shingles(a), shingles(b)
    return len(x & y) / len(x | y)


def mutate_into(text: str, lo: float, hi: float, rng) -> str | None:
    words = text.split()
    out = list(words)
    for _ in range(len(words)):
        j = jaccard(text, " ".join(out))
        if lo <= j < hi:
            return " ".join(out)
        if j < lo:
            return None
        out[rng.randrange(len(out))] = rng.choice(["indeed", "quite", "often", "rarely", "perhaps", "notably"])
    return None


def old_datasketch(a: str, b: str) -> bool:
    import xxhash
    from datasketch import MinHash, MinHashLSH

    def sig(text):
        m = MinHash(num_perm=112, seed=1, scheme="affine32", hashfunc=xxhash.xxh32_intdigest)
        m.update_batch([s.encode() for s in shingles(text)])
        return m

    lsh = MinHashLSH(num_perm=112, params=(14, 8))
    ma, mb = sig(a), sig(b)
    lsh.insert("a", ma)
    return any(float((mb.hashvalues == ma.hashvalues).mean()) >= 0.72 for _ in lsh.query(mb))


def main():
    from revgen.curate.dedup import NearDedup
    from revgen.dolly import load_pairs

    ap = parser(__doc__)
    ap.add_argument("--pairs", type=int, default=200, help="pairs per band")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    texts = [r["response"] for r in load_pairs() if len(r["response"].split()) >= 40]
    res = []
    for lo, hi in BANDS:
        pairs = []
        while len(pairs) < args.pairs:
            a = rng.choice(texts)
            b = mutate_into(a, lo, hi, rng)
            if b is not None:
                pairs.append((a, b))
        new = old = 0
        for a, b in pairs:
            d = NearDedup("output")
            d({"id": "a", "output": a})
            new += d({"id": "b", "output": b}) is not True
            old += old_datasketch(a, b)
        res.append({"band": f"[{lo}, {hi})", "pairs": len(pairs), "mean_jaccard": round(float(np.mean([jaccard(a, b) for a, b in pairs])), 3),
                    "dropped_revgen": round(new / len(pairs), 3), "dropped_old_datasketch": round(old / len(pairs), 3)})  # fmt: skip
        print(json.dumps(res[-1]), flush=True)


if __name__ == "__main__":
    main()
