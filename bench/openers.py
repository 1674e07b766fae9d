"""The CPU probe for instruction variety: free candidates vs free + opener-forced ones chosen by fit.

    python bench/openers.py                        # value-bench split of the bundled sample, SmolLM2
    python bench/openers.py --openers 3 --candidates 1

The value bench's split (bench/value.py: context-free Dolly rows, seed 1234): a backward model
trained on S (60 pairs, 30 steps) writes instructions for U's 120 responses, whose real
instructions it never saw. Variants, all through `revgen synthesize` + `revgen curate`:

    free        one sampled candidate per response (the default)
    free-best   ``--candidates`` + ``--openers`` free candidates, the best by pmi (same budget)
    openers     one free + ``--openers`` opener-forced candidates, the best by pmi
    openers-requests  the same, openers drawn only among those that begin requests (``--opener-kinds requests``)
    openers-mix the openers' candidates, kept toward the seed's first words under a fit floor
                (``score.target_mix: seed``, the default ``fit_margin``: 0.5 when first run, 1.0 since 2026-12-07)
    openers-requests-mix  the request openers' candidates, kept toward the seed's first words
    openers-both          one free + ``--openers`` openers, half requests, half questions (``--opener-kinds both``)
    openers-both-mix      the same candidates, kept toward the seed's first words
    openers-both-mix-floor  the same, the lowest-pmi 20% of the winners dropped (``select.top_fraction: 0.8``)
    default               synthesize and curate with no method options: what a user gets (openers by
                          synthesize's default, curate's preset auto)

``--split T`` runs on the bundled sample's rows that are in none of this bench's S, U and H (its
context-free leftovers and every row with a context, their responses as passages): the split to
choose a setting on, so that U is only ever measured. ``--split UH`` measures on U and H together
(184 held-out responses, the same backward model): a larger held-out set for the mix, whose
leading-word TV is mostly sampling noise at 120 rows.

Reports, against the split's real instructions: question share, leading-word TV, ROUGE-L to the real
instruction, and how often the chosen candidate was forced. Nothing here was tuned on U: each
variant is one setting, fixed before it was run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from harness import markdown_table, parser, write_json
from value import backward, split, write_jsonl


def splits(rows: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """``(S, U, T)``: the value bench's seed and held-out response splits, and T, the rows in none of its splits."""
    S, U, H = split(rows, (60, 120, 64), 1234)
    used = {id(r) for r in S + U + H}
    return S, U, [r for r in rows if id(r) not in used]


def run_variant(
    args,
    U,
    out: Path,
    adapter: Path,
    name: str,
    candidates: int,
    n_openers: int | None,
    choose: bool,
    kinds: str | None = "any",
    synth_name: str | None = None,
    target_mix: str | None = None,
    keep: float | None = None,
):
    from revgen.curate.curation import CurateConfig, GopherSettings, ScoreSettings, curate
    from revgen.synthesize.run import SynthConfig, synthesize
    from revgen.synthesize.select import SelectSettings

    kinds = kinds or SynthConfig.opener_kinds  # None: synthesize's default
    corpus = write_jsonl(out / "U.corpus.jsonl", ({"id": f"u{i}", "text": r["response"]} for i, r in enumerate(U)))
    synth, cur = out / f"synth-{synth_name or name}", out / f"curated-{name}"  # same synth name: resumed, not redone
    synthesize(SynthConfig(corpus=corpus, id_field="id", adapter=str(adapter), output_dir=str(synth), backend=args.backend,
                           max_input_tokens=1024, min_words=1, temperature=0.7, max_new_tokens=64, seed=0,
                           shard_size=64, batch_size=64, num_candidates=candidates, openers=n_openers,
                           opener_kinds=kinds, select=SelectSettings(gopher=GopherSettings(enabled=False))))  # fmt: skip
    # Gopher off before generation as after it: these are human Dolly answers, short ones included
    select = {"score": "pmi", **({"top_fraction": keep} if keep else {})}  # keep: a fit floor over the winners
    score = ScoreSettings(scorers=["pmi"], backward=str(adapter), best_of_candidates=True, select=select,
                          target_mix=target_mix) if choose else ScoreSettings()  # fmt: skip
    curate(CurateConfig(input=str(synth), output_dir=str(cur), gopher=GopherSettings(enabled=False), score=score,
                        report=False))  # fmt: skip
    return cur


def measure(U, cur: Path) -> dict:
    from revgen.evaluate.backward import rouge_l
    from revgen.evaluate.mix import compare_mix

    kept = [json.loads(x) for x in (cur / "dataset.jsonl").read_text().splitlines()]
    by_output = {r["response"].strip(): r for r in U}
    pairs = [(k, by_output[k["output"].strip()]) for k in kept if k["output"].strip() in by_output]
    stats = json.loads((cur / "stats.json").read_text())
    mix = compare_mix([k["instruction"] for k, _ in pairs], [r["instruction"] for _, r in pairs])
    return {"kept": len(kept), "questions": mix["synthetic"]["kind"].get("question", 0),
            "real_questions": mix["real"]["kind"].get("question", 0), "tv_kind": mix["tv_kind"],
            "tv_leading_word": mix["tv_leading_word"],
            "rouge_l": round(sum(rouge_l(r["instruction"], k["instruction"]) for k, r in pairs) / max(len(pairs), 1), 4),
            "forced_share": stats["instruction_mix"].get("openers", {}) and round(1 - stats["instruction_mix"]["openers"].get("(free)", 0), 4),
            "top_words": dict(list(mix["synthetic"]["leading_words"].items())[:6])}  # fmt: skip


def main():
    from revgen.dolly import load_pairs

    ap = parser(__doc__)
    ap.add_argument("--output-dir", default="runs/openers")
    ap.add_argument("--openers", type=int, default=3)
    ap.add_argument("--candidates", type=int, default=1, help="free candidates beside the openers")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--variants", nargs="+", default=["free", "free-best", "openers", "openers-requests", "openers-mix"],
                    choices=["free", "free-best", "openers", "openers-requests", "openers-mix", "openers-requests-mix",
                             "openers-both", "openers-both-mix", "openers-both-mix-floor", "default"])  # fmt: skip
    ap.add_argument(
        "--split",
        choices=["U", "T", "UH"],
        default="U",
        help="U: the value bench's held-out split; "
        "T: the rows in no split of this bench, to choose a setting on; UH: U and H, held out together",
    )
    args = ap.parse_args()
    args.model, args.max_length, args.dtype, args.backward_steps, args.batch, args.lr = (
        "smollm2-135m",
        160,
        "auto",
        30,
        4,
        3e-4,
    )  # bench/value.py's defaults
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = load_pairs()
    S, U, T = splits(rows)
    if args.split != "U":  # another split: its own runs, the same backward model
        U = T if args.split == "T" else U + split(rows, (60, 120, 64), 1234)[2]
        out = out / args.split
        out.mkdir(exist_ok=True)
    adapter = backward(args, S, out.parent if args.split != "U" else out, "backward")
    res = {}
    for name in args.variants:
        kinds = "requests" if "requests" in name else "both" if "both" in name else "any"
        mix = "seed" if name.endswith(("-mix", "-mix-floor")) else None
        keep = 0.8 if name.endswith("-floor") else None  # the lowest-pmi 20% of winners dropped (chosen on T's replay)
        synth = {"any": "openers", "requests": "openers-requests", "both": "openers-both"}[kinds]
        if args.openers != 3 and name.startswith("openers"):  # another count: its own synthesis and curation
            synth, name = f"{synth}-o{args.openers}", f"{name}-o{args.openers}"
        if name == "default":  # no openers count, kinds or score given: the defaults decide (preset auto)
            cur = run_variant(args, U, out, adapter, name, 1, None, False, None)
        elif name == "free":
            cur = run_variant(args, U, out, adapter, name, 1, 0, False)
        elif name == "free-best":
            cur = run_variant(args, U, out, adapter, name, args.candidates + args.openers, 0, True)
        else:  # the -mix variants reuse their openers' candidates (same synth name: resumed, not redone)
            cur = run_variant(args, U, out, adapter, name, args.candidates, args.openers, True, kinds, synth, mix, keep)
        res[name] = measure(U, cur)
        print(name, json.dumps(res[name]), file=sys.stderr, flush=True)
    from revgen.evaluate.mix import compare_mix

    seed = compare_mix([r["instruction"] for r in S], [r["instruction"] for r in U])  # what a perfect match to S gives
    res["reference: S's own instructions"] = {"kept": len(S), "questions": seed["synthetic"]["kind"].get("question", 0),
                                               "real_questions": seed["real"]["kind"].get("question", 0),
                                               "tv_kind": seed["tv_kind"], "tv_leading_word": seed["tv_leading_word"],
                                               "rouge_l": None, "forced_share": None}  # fmt: skip
    write_json(out / "openers.json", res)
    cols = ["kept", "questions", "real_questions", "tv_kind", "tv_leading_word", "rouge_l", "forced_share"]
    print(markdown_table(["variant", *cols], [[n, *[r[c] for c in cols]] for n, r in res.items()]))


if __name__ == "__main__":
    main()
