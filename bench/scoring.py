"""The probe bench: how well does each curation score (and each heuristic filter) separate true
(instruction, response) pairs from bad ones?

    python bench/scoring.py                      # held-out Dolly pairs, SmolLM2 on CPU
    python bench/scoring.py --backward runs/value/backward --forward runs/value/forward/S-s0

Positives: held-out context-free Dolly pairs (the value bench's H split: never trained or tuned
on). Negatives for the same responses: (a) ``mismatch``, another pair's instruction; (b)
``zero_shot``, the base model's own instruction for the response, asked plainly; (c) ``truncated``,
the instruction cut to its first three words. For every score: ROC AUC per negative kind and over
all (bootstrap 95% interval), precision at the cut that keeps 80% of the true pairs, records/s. For
every heuristic instruction filter: its false-reject rate on true pairs and catch rate per kind.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

from harness import markdown_table, parser, timed, write_json

KINDS = ("mismatch", "zero_shot", "truncated")
ZERO_SHOT = (
    "Write the question or instruction that the following text answers. Reply with the instruction only.\n\n{text}"
)


def auc(pos: list[float], neg: list[float], higher: bool) -> float:
    """P(score of a random positive beats a random negative), ties count half (Mann-Whitney)."""
    sign = 1 if higher else -1
    wins = sum((sign * p > sign * n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def auc_ci(pos, neg, higher, n=500, seed=0) -> dict:
    rng = random.Random(seed)
    draws = sorted(auc(rng.choices(pos, k=len(pos)), rng.choices(neg, k=len(neg)), higher) for _ in range(n))
    return {
        "auc": round(auc(pos, neg, higher), 3),
        "ci95": [round(draws[int(0.025 * n)], 3), round(draws[int(0.975 * n) - 1], 3)],
    }


def precision_at_recall(pos, neg, higher, recall=0.8) -> dict:
    sign = 1 if higher else -1
    cut = sorted((sign * p for p in pos), reverse=True)[max(0, int(recall * len(pos)) - 1)]
    kept_neg = sum(sign * x >= cut for x in neg)
    kept_pos = sum(sign * x >= cut for x in pos)
    return {"cut": round(sign * cut, 4), "recall": round(kept_pos / len(pos), 3),
            "precision": round(kept_pos / max(kept_pos + kept_neg, 1), 3)}  # fmt: skip


def zero_shot(model_ref: str, texts: list[str], max_new_tokens: int) -> list[str]:
    from revgen.generate import Sampling, get_generator
    from revgen.models import resolve_model

    gen = get_generator("transformers", resolve_model(model_ref), None, batch_size=16).load()
    tok = gen.tokenizer
    prompts = [tok.apply_chat_template([{"role": "user", "content": ZERO_SHOT.format(text=t)}], tokenize=True,
                                       add_generation_prompt=True, return_dict=True)["input_ids"] for t in texts]  # fmt: skip
    try:
        outs = gen.generate(
            [list(p) for p in prompts], Sampling(temperature=0.0, max_new_tokens=max_new_tokens), [0] * len(prompts)
        )
    finally:
        gen.close()
    return [o[0].text.strip().splitlines()[0] if o[0].text.strip() else "" for o in outs]


def main():
    ap = parser(__doc__, threads=True, output="runs/scoring.json")
    ap.add_argument("--data", default="dolly-sample")
    ap.add_argument("--model", default="smollm2-135m", help="base model: rubric judge, IFD model, zero-shot writer")
    ap.add_argument("--forward", help="a forward adapter dir for a second IFD (Humpback's M0)")
    ap.add_argument("--backward", default="runs/value/backward", help="backward adapter dir for the cycle score")
    ap.add_argument("--scores", nargs="+", default=["rubric", "ifd", "cycle", "pmi"], help="which scores to probe")
    ap.add_argument("--rows", type=int, default=48, help="true pairs (from the value bench's held-out split)")
    ap.add_argument("--rubric-rows", type=int, default=24, help="the rubric prompt is long: score this many per kind")
    args = ap.parse_args()

    from bench.value import split
    from revgen import runinfo
    from revgen.curate import scorers
    from revgen.curate.filters import FilterRunner, instruction_filters
    from revgen.dolly import load_pairs

    runinfo.set_threads(args.threads)
    start = time.time()
    H = split(load_pairs(args.data), (60, 120, 64), 1234)[2][: args.rows]
    pos = [{"instruction": r["instruction"], "input": "", "output": r["response"]} for r in H]
    n = len(pos)
    writes = zero_shot(args.model, [p["output"] for p in pos], 48)
    neg = {"mismatch": [{**p, "instruction": pos[(i + 7) % n]["instruction"]} for i, p in enumerate(pos)],
           "zero_shot": [{**p, "instruction": w} for p, w in zip(pos, writes)],
           "truncated": [{**p, "instruction": " ".join(p["instruction"].split()[:3])} for p in pos]}  # fmt: skip
    report = {"rows": n, "zero_shot_examples": writes[:5], "scores": {}, "filters": {}}

    systems = [("rubric", args.model), ("ifd", args.model), ("cycle", args.backward), ("pmi", args.backward)]
    if args.forward:
        systems.append(("ifd", args.forward))
    for name, ref in [(n, r) for n, r in systems if n in args.scores]:
        (scorer,) = scorers.build([name], judge=ref, forward=ref, backward=ref)
        k = args.rubric_rows if name == "rubric" else n
        with timed() as t:
            p_scores = [s[name] for s in scorer.score(pos[:k])]
            n_scores = {kind: [s[name] for s in scorer.score(recs[:k])] for kind, recs in neg.items()}
        rate = k * (1 + len(KINDS)) / t.s
        higher = scorers.HIGHER_IS_BETTER[name]
        every = [x for v in n_scores.values() for x in v]
        label = f"{name} ({Path(ref).name})"
        report["scores"][label] = {"rows": k, "records_per_s": round(rate, 2),
                                   **{kind: auc_ci(p_scores, v, higher) for kind, v in n_scores.items()},
                                   "all": auc_ci(p_scores, every, higher),
                                   "at_recall_0.8": precision_at_recall(p_scores, every, higher)}  # fmt: skip
        print(label, json.dumps(report["scores"][label]), file=sys.stderr)
    for f in instruction_filters():
        runner = FilterRunner([f])
        rejects = lambda recs: sum(runner.check(r) is not None for r in recs) / len(recs)  # noqa: E731
        report["filters"][f.name] = {"false_reject": round(rejects(pos), 3),
                                     **{f"catch_{kind}": round(rejects(v), 3) for kind, v in neg.items()}}  # fmt: skip
    chain = FilterRunner(instruction_filters())
    report["filters"]["whole chain"] = {"false_reject": round(sum(chain.check(r) is not None for r in pos) / n, 3),
                                        **{f"catch_{k}": round(sum(chain.check(r) is not None for r in v) / n, 3)
                                           for k, v in neg.items()}}  # fmt: skip
    report["wall_time_s"] = round(time.time() - start, 1)
    write_json(args.output, report)
    print(markdown(report))


def markdown(rep: dict) -> str:
    ci = lambda r: f"{r['auc']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]"  # noqa: E731
    scores = markdown_table(["score", "AUC mismatch", "AUC zero-shot", "AUC truncated", "AUC all", "precision @ recall 0.8",
                             "records/s"],
                            [[f"{name} (n={r['rows']})", *(ci(r[k]) for k in (*KINDS, "all")),
                              f"{r['at_recall_0.8']['precision']:.3f}", f"{r['records_per_s']:.1f}"]
                             for name, r in rep["scores"].items()])  # fmt: skip
    filters = markdown_table(["filter", "false reject (true pairs)", "catch mismatch", "catch zero-shot", "catch truncated"],
                             [[name, *(f"{r[k]:.3f}" for k in ("false_reject", "catch_mismatch", "catch_zero_shot",
                                                                "catch_truncated"))]
                              for name, r in rep["filters"].items()])  # fmt: skip
    return f"{scores}\n\n{filters}\n\n{rep['rows']} true pairs; wall time {rep['wall_time_s']:.0f} s"


if __name__ == "__main__":
    main()
