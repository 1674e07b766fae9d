"""``revgen eval --task forward``: how good is a forward model on held-out (instruction, response) pairs?

Per row, teacher-forced (batched, no generation): the per-token NLL of the gold response given the
instruction, and **instruction use**, NLL(response | another row's instruction) - NLL(response |
its own): how much the model listens to the instruction. Greedy responses on the first
``generate_rows`` rows give ROUGE-L against the gold response and the response length. Every
number is a mean with a seeded bootstrap 95% interval (NLL also token-weighted); with
``--against B`` the paired difference B - A with its interval; per category where rows have one.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from revgen import config as cfgmod
from revgen import dtypes, runinfo
from revgen.errors import UserError
from revgen.stats import paired_ci, runs_ci

METRICS = ("nll", "instruction_use", "rouge_l", "response_words")


@dataclass
class ForwardEvalConfig:
    model_dir: str = "runs/forward"  # a forward adapter dir from `revgen train --task forward`, or a model
    against: str | None = None  # a second model, compared pairwise on the same rows
    data: str = ""  # held-out pairs in any forward format; default MODEL_DIR/heldout.jsonl
    template: str = "auto"  # auto: the adapter dir's forward template, else alpaca; or chat / a file
    tag: str | None = None  # the system-prompt tag the models read; default the template's (a tagged model's seed tag)
    output_dir: str = "runs/eval-forward"
    max_rows: int | None = None
    generate_rows: int | None = 32  # greedy responses (ROUGE-L, length) for the first N rows; 0: none
    max_new_tokens: int = 128
    max_length: int = 1024  # tokens of prompt + response scored (longer rows are cut at the end)
    batch_size: int = 8
    dtype: str = "auto"
    bootstrap: int = 1000
    seed: int = 0
    threads: int | None = None


def derangement(n: int, seed: int) -> list[int]:
    """A seeded permutation with no fixed point: row i borrows the instruction of row perm[i]."""
    if n < 2:
        raise UserError("instruction use needs at least 2 rows")
    perm = list(range(n))
    random.Random(seed).shuffle(perm)
    return [perm[(perm.index(i) + 1) % n] for i in range(n)]


def resolve_system(ref: str, template: str = "auto", tag: str | None = None):
    """``(base model, adapter or None, forward template)`` for a forward adapter dir or a plain model."""
    from revgen.models import adapter_base_model, resolve_model

    path = Path(ref)
    if (path / "adapter_config.json").is_file():
        return adapter_base_model(path), str(path), forward_template(ref, template, tag)
    return resolve_model(ref), None, forward_template(ref, template, tag)


def forward_template(ref: str, template: str = "auto", tag: str | None = None):
    """The template ``ref`` reads: an adapter dir's own (``auto``) or ``template``; ``tag``
    (``seed``, ``augmented`` or its text) replaces its inference tag."""
    from dataclasses import replace

    from revgen.prompts import FORWARD_TEMPLATE_FILE, get_forward_template
    from revgen.train.forward_data import tag_text

    path = Path(ref)
    own = (path / "adapter_config.json").is_file() and template == "auto"
    if own and not (path / FORWARD_TEMPLATE_FILE).is_file():
        raise UserError(f"{path} is not a forward model (no {FORWARD_TEMPLATE_FILE}); train one with --task forward")
    tpl = get_forward_template(str(path) if own else template)
    return tpl if tag is None else replace(tpl, tag=tag_text(tag))


def score_rows(ref: str, rows: list[dict], cfg: ForwardEvalConfig) -> list[dict]:
    """Per-row numbers for one model (see the module doc)."""
    from revgen.evaluate.backward import rouge_l
    from revgen.lm import Scorer, load_causal_lm

    base, adapter, template = resolve_system(ref, cfg.template, cfg.tag)
    model, tok = load_causal_lm(base, adapter, cfg.dtype)
    scorer = Scorer(model, tok, cfg.batch_size, cfg.max_length)
    prompts = [template.prompt(r["instruction"], r["input"], tok) for r in rows]
    other = derangement(len(rows), cfg.seed)
    own = scorer.nll(prompts, [r["output"] for r in rows])
    swapped = scorer.nll([prompts[j] for j in other], [r["output"] for r in rows])
    n_gen = len(rows) if cfg.generate_rows is None else min(cfg.generate_rows, len(rows))
    responses = _greedy(base, adapter, tok, prompts[:n_gen], cfg) if n_gen else []
    out = []
    for i, (r, (s, n), (s2, n2)) in enumerate(zip(rows, own, swapped)):
        row = {"category": r["category"], "nll_sum": s, "tokens": n, "nll": s / max(n, 1),
               "instruction_use": s2 / max(n2, 1) - s / max(n, 1)}  # fmt: skip
        if i < n_gen:
            row.update(response=responses[i], rouge_l=rouge_l(r["output"], responses[i]),
                       response_words=len(responses[i].split()))  # fmt: skip
        out.append(row)
    del model
    return out


def _greedy(base, adapter, tok, prompts, cfg) -> list[str]:
    from revgen.generate import Sampling, get_generator
    from revgen.prompts import encode_prompt

    gen = get_generator("transformers", base, adapter, merge=True, dtype=cfg.dtype, batch_size=cfg.batch_size).load()
    try:
        outs = gen.generate([encode_prompt(tok, p) for p in prompts],
                            Sampling(temperature=0.0, max_new_tokens=cfg.max_new_tokens), [cfg.seed] * len(prompts))  # fmt: skip
    finally:
        gen.close()
    return [o[0].text.strip() for o in outs]


def summarize(runs: list[list[dict]], n: int = 1000, seed: int = 0) -> dict:
    """Overall and per-category means with intervals over rows (and runs, when several seeds)."""
    rows = runs[0]
    tokens = [float(r["tokens"]) for r in rows]
    out = {"nll": runs_ci([[r["nll"] for r in run] for run in runs], None, n, seed),
           "nll_token_weighted": runs_ci([[r["nll_sum"] for r in run] for run in runs], tokens, n, seed),
           "instruction_use": runs_ci([[r["instruction_use"] for r in run] for run in runs], None, n, seed)}  # fmt: skip
    gen = [i for i, r in enumerate(rows) if "rouge_l" in r]
    if gen:
        for m in ("rouge_l", "response_words"):
            out[m] = runs_ci([[run[i][m] for i in gen] for run in runs], None, n, seed)
    cats = sorted({r["category"] for r in rows if r["category"]})
    per_cat = {c: {"n": sum(r["category"] == c for r in rows),
                   "nll": round(sum(run[i]["nll"] for run in runs for i, r in enumerate(rows) if r["category"] == c)
                                / (len(runs) * sum(r["category"] == c for r in rows)), 4)} for c in cats}  # fmt: skip
    return {"overall": out, "per_category": per_cat}


def compare(a: list[list[dict]], b: list[list[dict]], n: int = 1000, seed: int = 0) -> dict:
    """Paired B - A on the same rows for every metric (negative NLL difference: B is better)."""
    tokens = [float(r["tokens"]) for r in a[0]]
    out = {m: paired_ci([[r[m] for r in run] for run in a], [[r[m] for r in run] for run in b], None, n, seed)
           for m in ("nll", "instruction_use")}  # fmt: skip
    out["nll_token_weighted"] = paired_ci([[r["nll_sum"] for r in run] for run in a],
                                          [[r["nll_sum"] for r in run] for run in b], tokens, n, seed)  # fmt: skip
    gen = [i for i, r in enumerate(a[0]) if "rouge_l" in r and "rouge_l" in b[0][i]]
    if gen:
        out["rouge_l"] = paired_ci([[run[i]["rouge_l"] for i in gen] for run in a],
                                   [[run[i]["rouge_l"] for i in gen] for run in b], None, n, seed)  # fmt: skip
    return out


def evaluate_forward(cfg: ForwardEvalConfig) -> dict:
    from revgen.train.forward_data import load_forward_rows

    runinfo.set_threads(cfg.threads)
    data = cfg.data or str(Path(cfg.model_dir) / "heldout.jsonl")
    if not cfg.data and not Path(data).is_file():
        raise UserError(f"{cfg.model_dir} has no heldout.jsonl; pass --data with held-out pairs")
    rows = load_forward_rows(data)[0][: cfg.max_rows]
    systems = {"A": cfg.model_dir} | ({"B": cfg.against} if cfg.against else {})
    for ref in systems.values():  # every system resolves (folder, adapter, template) before any model loads
        resolve_system(ref, cfg.template, cfg.tag)
    scored = {name: score_rows(ref, rows, cfg) for name, ref in systems.items()}
    info = {"command": "eval", "task": "forward", "config": cfgmod.to_dict(cfg), "config_hash": cfgmod.config_hash(cfg),
            "data": data, "rows": len(rows),
            "systems": {k: {"model": systems[k], "tag": forward_template(systems[k], cfg.template, cfg.tag).tag,
                            **summarize([v], cfg.bootstrap, cfg.seed)} for k, v in scored.items()},
            "compute": {"generate": dtypes.choice(cfg.dtype), "score": dtypes.choice(cfg.dtype, stage="score")},
            "versions": runinfo.versions()}  # fmt: skip
    if cfg.against:
        info["difference_B_minus_A"] = compare([scored["A"]], [scored["B"]], cfg.bootstrap, cfg.seed)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    runinfo.write_json(out / "eval.json", info)
    with (out / "examples.jsonl").open("w", encoding="utf-8") as fh:
        for name, rs in scored.items():
            fh.writelines(
                json.dumps({"system": name, **r, **rows[i]}, ensure_ascii=False) + "\n" for i, r in enumerate(rs)
            )
    (out / "eval.md").write_text(table(info), encoding="utf-8")
    from revgen.publish.report import write_eval

    write_eval(out)  # report.html: per-category bars with intervals
    return info


def _fmt(x: dict) -> str:
    return f"{x['mean']:+.3f} [{x['ci95'][0]:+.3f}, {x['ci95'][1]:+.3f}]"


def table(info: dict) -> str:
    metrics = ["nll", "nll_token_weighted", "instruction_use", "rouge_l", "response_words"]
    lines = ["| system | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for name, res in info["systems"].items():
        cells = [_fmt(res["overall"][m]) if m in res["overall"] else "-" for m in metrics]
        tag = f" (tag: {res['tag']})" if res.get("tag") else ""
        lines.append(f"| {name}: {res['model']}{tag} | " + " | ".join(cells) + " |")
    if "difference_B_minus_A" in info:
        d = info["difference_B_minus_A"]
        lines.append("| B - A (paired) | " + " | ".join(_fmt(d[m]) if m in d else "-" for m in metrics) + " |")
    return "\n".join(lines) + f"\n\n{info['rows']} pairs; mean [bootstrap 95% interval]; NLL in nats per token\n"
