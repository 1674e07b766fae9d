"""Which candidate to keep per passage: choice rules replayed on one opener run's candidates (T split).

    python bench/openers.py --split T --variants openers-both          # writes the candidates and their pmi
    python bench/choice_rules.py runs/openers/T/synth-openers-both runs/openers/T/curated-openers-both \\
        --backward runs/openers/backward

Every candidate that passed the filters has its pmi (curated scores.jsonl and the select/ rows of
rejected.jsonl). Each rule picks one per passage; reported against T's real instructions: question
share, leading-word TV, length ratio (words), forced share, and a **base-model proxy for instruction
use**: under the plain SmolLM2 instruct model, mean over passages of NLL(response | a deranged real
instruction) - NLL(response | the chosen instruction), divided by the same with the real instruction
on the same passages (1 = the chosen instructions tell a base model as much about their responses as
the real ones do).
Rules: the free candidate; best mean pmi (the product's rule); best total pmi (mean pmi x instruction
tokens: information, not per-token fit); toward the seed's mix (curate/target_mix.py) on either; the
best by the proxy itself (an oracle, not a rule); dropping the lowest-pmi 10-30% (a fit floor).
T only: nothing here reads U or H.
"""

from __future__ import annotations

import json
import statistics as st
from pathlib import Path

from harness import parser, write_json
from openers import splits


def candidates(synth: Path, cur: Path, real: dict) -> dict[str, list[dict]]:
    """Scored candidates by segment, for the passages whose real instruction is known."""
    pmi = {}
    for line in (cur / "scores.jsonl").read_text().splitlines():
        x = json.loads(line)
        pmi[x["id"]] = x["scores"]["pmi"]
    for line in (cur / "rejected.jsonl").read_text().splitlines():
        x = json.loads(line)
        if x["reason"].startswith("select"):
            pmi[x["id"]] = x["record"]["meta"]["scores"]["pmi"]
    segs: dict[str, list[dict]] = {}
    for f in sorted((synth / "shards").glob("*[0-9].jsonl")):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            if r["id"] in pmi and r["output"].strip() in real:
                segs.setdefault(r["meta"]["segment_id"], []).append({**r, "pmi": pmi[r["id"]]})
    return segs


def main():
    from revgen.curate import target_mix
    from revgen.dolly import load_pairs
    from revgen.evaluate.forward import derangement, resolve_system
    from revgen.evaluate.mix import compare_mix
    from revgen.lm import Scorer, load_causal_lm

    ap = parser(__doc__)
    ap.add_argument("synth", type=Path)
    ap.add_argument("curated", type=Path)
    ap.add_argument("--backward", type=Path, required=True, help="the adapter (its openers.json: the seed's mix)")
    ap.add_argument("--output", default=None, help="JSON of the table (default CURATED/choice_rules.json)")
    args = ap.parse_args()
    real = {r["response"].strip(): r["instruction"] for r in splits(load_pairs())[2]}
    segs = candidates(args.synth, args.curated, real)
    keys = sorted(segs)
    base, _, tmpl = resolve_system("smollm2-135m", "auto")
    model, tok = load_causal_lm(base, None, "float32")
    scorer = Scorer(model, tok, 16, 512)
    flat = [c for k in keys for c in segs[k]]
    for c in flat:
        c["pmi_total"] = c["pmi"] * len(tok(c["instruction"], add_special_tokens=False)["input_ids"])
    nll = scorer.nll([tmpl.prompt(c["instruction"], "", tok) for c in flat], [c["output"] for c in flat])
    for c, (s, n) in zip(flat, nll):
        c["fwd"] = -s / max(n, 1)  # higher: the instruction makes the response likelier
    outs = [segs[k][0]["output"] for k in keys]
    reals = [real[o.strip()] for o in outs]
    swapped = [
        s / max(n, 1) for s, n in scorer.nll([tmpl.prompt(reals[j], "", tok) for j in derangement(len(keys), 0)], outs)
    ]
    own = [s / max(n, 1) for s, n in scorer.nll([tmpl.prompt(x, "", tok) for x in reals], outs)]
    counts = json.loads((args.backward / "openers.json").read_text())["counts"]
    target = target_mix.target_from_openers(counts)
    groups, i = [], 0
    for k in keys:
        groups.append(list(range(i, i + len(segs[k]))))
        i += len(segs[k])

    def best(key):
        return [max(segs[k], key=lambda c: c[key]) for k in keys]

    def toward_seed(key, margin):
        chosen, _ = target_mix.choose(groups, [c[key] for c in flat], [c["instruction"] for c in flat], target, margin)
        return [flat[j] for j in chosen]

    def measure(chosen, idx=None):
        idx = list(range(len(keys))) if idx is None else idx
        mix = compare_mix([chosen[i]["instruction"] for i in idx], [reals[i] for i in idx])
        return {"n": len(idx), "questions": mix["synthetic"]["kind"].get("question", 0),
                "real_questions": mix["real"]["kind"].get("question", 0), "tv_leading_word": mix["tv_leading_word"],
                "info_vs_real": round(st.fmean(swapped[i] + chosen[i]["fwd"] for i in idx)
                                      / st.fmean(swapped[i] - own[i] for i in idx), 3),
                "length_ratio": round(st.fmean(len(chosen[i]["instruction"].split()) for i in idx)
                                      / st.fmean(len(reals[i].split()) for i in idx), 2),
                "forced": round(st.fmean(chosen[i]["meta"].get("opener") is not None for i in idx), 2)}  # fmt: skip

    res = {"free (its own candidate where it passed the filters)":
           measure([next((c for c in segs[k] if c["meta"].get("opener") is None), segs[k][0]) for k in keys]),
           "best mean pmi": measure(best("pmi")), "best total pmi": measure(best("pmi_total")),
           "mean pmi toward the seed's mix (margin 0.5)": measure(toward_seed("pmi", 0.5))}  # fmt: skip
    for m in (1, 5):
        res[f"total pmi toward the seed's mix (margin {m} nats)"] = measure(toward_seed("pmi_total", m))
    res["oracle: best by the proxy itself"] = measure(best("fwd"))
    chosen = best("pmi")
    for q in (0.1, 0.2, 0.3):
        cut = sorted(c["pmi"] for c in chosen)[int(q * len(chosen))]
        res[f"best mean pmi, lowest {q:.0%} dropped"] = measure(
            chosen, [i for i, c in enumerate(chosen) if c["pmi"] >= cut]
        )
    write_json(
        args.output or args.curated / "choice_rules.json",
        {"passages": len(keys), "candidates": len(flat), "rules": res},
    )
    cols = ["n", "questions", "real_questions", "tv_leading_word", "info_vs_real", "length_ratio", "forced"]
    print(f"| rule | {' | '.join(cols)} |\n|---|{'---|' * len(cols)}")
    for name, r in res.items():
        print(f"| {name} | {' | '.join(str(r[c]) for c in cols)} |")


if __name__ == "__main__":
    main()
