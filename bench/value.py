"""The value bench: does revgen's data make a better forward model, and how close do synthetic
instructions come to real ones?

    python bench/value.py                                   # bundled Dolly sample, SmolLM2, CPU
    python bench/value.py --data databricks/databricks-dolly-15k --model meta-llama/Llama-2-7b-hf \
        --sizes 3000 5000 1000 --steps 300 --seeds 3         # full size, on a GPU

Context-free Dolly rows (the response alone is the "unlabeled text") are split, seeded, into S
(seed pairs), U (responses whose instructions are withheld) and H (held out, never trained or
tuned on). A backward model is trained on S, writes instructions for U's responses, and revgen
curates them. Forward models are then trained with the same steps and settings, each with
``--seeds`` training seeds, and scored on H (revgen/evaluate/forward.py):

    base        no forward training
    S           seed pairs only
    S+syn       S + U with synthetic instructions, uncurated
    S+syn-cur   S + U with synthetic instructions, curated
    S+real      S + U with the real instructions (the ceiling)
    S+real-kept the ceiling restricted to the U rows curation kept (selection vs instruction quality)
    S+default-real  the same for the rows the default path keeps (in EXTRA)

Reports held-out NLL (row mean and token-weighted), instruction use, ROUGE-L of greedy responses,
paired differences against S with intervals over rows and seeds, value recovered, and the mix of
synthetic vs real instructions. Everything lands in OUT/value.json; finished models are reused.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import sys
import time
from pathlib import Path
from unittest import mock

from harness import markdown_table, parser, write_json

LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]  # Llama-style names
VARIANTS = ("S", "S+syn", "S+syn-cur", "S+real", "S+real-kept")
# further variants, each one more step of the pipeline (run with --variants ... or --all)
EXTRA = (
    "S+syn-cycle",
    "S+syn-rw",
    "S+typed-cur",
    "S+typed-mix-cur",
    "S+best-cur",
    "S+openers-cur",
    "S+mix-cur",
    "S+floor-cur",
    "S+floor-real",
    "S+default",
    "S+default-words",
    "S+default-floor",
    "S+default-sep",
    "S+default-rescore",
    "S+default-seed",
    "S+default-ifd",
    "S+default-pmirate",
    "S+default-margin",
    "S+default-total",
    "S+default-real",
)
# S+best-cur: the best of 4 free candidates by pmi; S+openers-cur: 1 free + 3 opener-forced, the best by pmi;
# S+mix-cur: the openers' candidates kept toward the seed's first words under a fit floor (score.target_mix: seed)
# S+floor-cur: S+mix-cur's winners, the lowest-pmi (1 - --floor-keep) of them dropped (select.top_fraction);
# S+floor-real: the real instructions of the same kept U rows (selection vs instruction quality)
# S+default: what synthesize and curate do with no method options (openers and curate's preset auto:
# today 1 free + 3 openers of both kinds, the best fit per passage toward the seed's mix, a fit floor)
# S+default-words: S+default's candidates, a switch toward the seed's mix judged on first words alone (no
# count for moving the share of questions: target_mix.choose's rule before 2026-12-05)
# S+default-floor: S+default's candidates, the fit floor keeping --floor-keep of the winners (the preset: 0.8)
# S+default-sep: S+default synthesized with every candidate decoded on its own (no shared prefill; the fit
# then re-scored by curation), as synthesis did before 2026-12-04
# S+default-rescore: S+default's candidates, their fit re-scored by curation (score.backward) instead of read
# from synthesis
# S+default-seed: S+default with a backward model trained on a larger seed, S plus the data's rows with a
# context (none of them in U or H; context ignored, as `revgen train` does by default), for --seed-steps; forward
# S unchanged
# S+default-ifd: S+default's candidates, the pmi choice toward the seed's mix kept, the fit floor by IFD under the
# base model instead of pmi (the --floor-keep of winners whose instruction lowers their response's loss most)
# S+default-pmirate: S+default's winners (no floor in curation), the floor by pmi x instruction tokens / output
# tokens: the backward model's pointwise mutual information per response token (by Bayes the same quantity as
# the forward model's instruction use), --floor-keep of them kept, best first
# S+default-margin: S+default's candidates, the switch toward the seed's mix within --fit-margin of a passage's
# best fit (the preset: 1.0, 0.5 before 2026-12-07)
# S+default-total: S+default's candidates and floor (the same passages kept), each passage's pick by total pmi (pmi x
# instruction tokens: information, not per-token fit) toward the seed's mix within --total-margin nats; the rule
# bench/choice_rules.py found most informative on T under the question-share limit (5 nats there)
# any variant + "-tag" (e.g. S+mix-cur-tag, S+real-tag): the same data with Humpback's system-prompt tags,
# S's rows tagged seed and the rest augmented; scored on H with the seed tag. With S-tag and S+real-tag
# run too, a tagged variant's value recovered and instruction use are against those (the prompts differ)


def write_jsonl(path: Path, rows) -> str:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:  # unchanged files keep their mtime
        path.write_text(text, encoding="utf-8")
    return str(path)


def split(rows: list[dict], sizes: tuple[int, int, int], seed: int) -> tuple[list, list, list]:
    """Context-free rows shuffled with ``seed`` and cut into H, S, U (disjoint, deterministic)."""
    free = [r for r in rows if not r["context"].strip() and r["instruction"].strip() and r["response"].strip()]
    s, u, h = sizes
    if s + u + h > len(free):
        raise SystemExit(f"--sizes {s} {u} {h} need {s + u + h} context-free rows; the data has {len(free)}")
    order = list(range(len(free)))
    random.Random(seed).shuffle(order)
    pick = [free[i] for i in order]
    return pick[h : h + s], pick[h + s : h + s + u], pick[:h]


def alpaca(r: dict) -> dict:
    return {"instruction": r["instruction"], "input": "", "output": r["response"], "category": r["category"]}


def backward(args, S, out: Path, name: str, typed: bool = False, steps: int | None = None) -> Path:
    """The backward model trained on the pairs S for ``steps`` (--backward-steps by default; typed: it names the
    task type first, revgen/tasktypes.py)."""
    from revgen.train.trainer import LoraSettings, TrainConfig, train

    back = out / name
    if not (back / "run.json").is_file():
        train(TrainConfig(model=args.model, data=write_jsonl(out / f"{name}.dolly.jsonl", S), output_dir=str(back),
                          max_length=args.max_length, lora=LoraSettings(r=16, alpha=32, target_modules="all-linear"),
                          dtype=args.dtype, seed=0, task_types=typed, overwrite=True,
                          trainer={**trainer_args(args, steps or args.backward_steps)}))  # fmt: skip
    return back


def synth_set(
    args,
    U,
    out: Path,
    name: str,
    adapter: Path,
    task_mix=None,
    score=None,
    cur_name=None,
    candidates: int = 1,
    openers: int | None = 0,
    opener_kinds: str = "any",
):
    """Synthesize U's responses with ``adapter`` (``candidates`` free + ``openers`` opener-forced per
    response; None: synthesize's default), curate (``score``: self-curation on top of the filters; none:
    curate's default preset, which picks the openers' curation for a run of several candidates); returns (the first candidate
    of every response, the curated rows as curation wrote them, curate counts)."""
    from revgen import shards
    from revgen.curate.curation import CurateConfig, GopherSettings, ScoreSettings, curate
    from revgen.synthesize.run import SynthConfig, synthesize
    from revgen.synthesize.select import SelectSettings

    corpus = write_jsonl(out / "U.corpus.jsonl", ({"id": f"u{i}", "text": r["response"]} for i, r in enumerate(U)))
    synth = out / f"synth-{name}"
    synthesize(SynthConfig(corpus=corpus, id_field="id", adapter=str(adapter), output_dir=str(synth), backend=args.backend,
                           max_input_tokens=1024, min_words=1, temperature=args.temperature, max_new_tokens=64,
                           seed=args.synth_seed, shard_size=64, batch_size=64, task_mix=task_mix, num_candidates=candidates,
                           openers=openers, opener_kinds=opener_kinds,
                           select=SelectSettings(gopher=GopherSettings(enabled=False))))  # fmt: skip
    # Gopher's output checks are for web text; the outputs here are human Dolly answers, so only
    # the instruction side and dedup are judged (as the curated variant of the issue asks), before
    # generation as after it (selection runs curation's output checks on passages; with Gopher on
    # there it dropped ~40% of U, short answers curation would have kept: runs of 2026-12-05).
    cur_dir = out / f"curated-{cur_name or name}"
    curate(CurateConfig(input=str(synth), output_dir=str(cur_dir), gopher=GopherSettings(enabled=False),
                        score=ScoreSettings(**score) if score else ScoreSettings(), report=False))  # fmt: skip
    by_doc: dict[int, list] = {}
    for rec in shards.iter_records(synth):
        by_doc.setdefault(int(rec["meta"]["doc_id"][1:]), []).append(rec)

    def row(i, rec):
        return {**alpaca(U[i]), "instruction": rec["instruction"], "u": i, "task_type": rec["meta"].get("task_type")}

    syn = [row(i, recs[0]) for i, recs in sorted(by_doc.items())]
    lines = (cur_dir / "dataset.jsonl").read_text().splitlines()
    kept = {(k["output"].strip(), k["instruction"].strip()) for k in map(json.loads, lines)}
    cur = [
        row(i, r)
        for i, recs in sorted(by_doc.items())
        for r in [next((r for r in recs if (r["output"].strip(), r["instruction"].strip()) in kept), None)]
        if r
    ]
    stats = json.loads((cur_dir / "stats.json").read_text())
    return syn, cur, stats.get("counts", stats)


def token_count(args):
    """A text's token count under ``--model``'s tokenizer (no special tokens)."""
    from revgen import models

    tok = models.load_tokenizer(models.resolve_model(args.model))
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


def pmi_rate_floor(args, synth: Path, rows: list[dict]) -> list[dict]:
    """``rows`` (one winner per passage), the ``--floor-keep`` share with the highest pmi x instruction tokens /
    output tokens, in their order; pmi as synthesis scored it."""
    import math

    from revgen import shards

    tokens = token_count(args)
    pmi = {(int(r["meta"]["doc_id"][1:]), r["instruction"].strip()): r["meta"].get("scores", {}).get("pmi")
           for r in shards.iter_records(synth)}  # fmt: skip
    n = lambda text: max(tokens(text), 1)  # noqa: E731
    rate = [pmi[(r["u"], r["instruction"].strip())] * n(r["instruction"]) / n(r["output"]) for r in rows]
    keep = set(sorted(range(len(rows)), key=lambda i: -rate[i])[: math.ceil(args.floor_keep * len(rows))])
    return [r for i, r in enumerate(rows) if i in keep]


def by_total(args, choose):
    """``target_mix.choose`` on total pmi (fit x the instruction's tokens) within ``--total-margin`` nats."""
    tokens = token_count(args)

    def total(groups, values, instructions, target, margin, **kw):
        n = [tokens(t) for t in instructions]
        values = [None if v is None else v * k for v, k in zip(values, n)]
        return choose(groups, values, instructions, target, args.total_margin, **kw)

    return total


def rewritten(args, U, out: Path, cur: list[dict], name: str) -> tuple[list[dict], dict]:
    """The curated rows with responses rewritten from the passage (back-and-forth translation)."""
    from revgen import shards
    from revgen.rewrite import RewriteConfig, rewrite

    if not cur:
        return [], {"counts": {"input": 0}, "examples": []}
    src = write_jsonl(out / f"{name}.records.jsonl", ({"id": f"u{r['u']}", "instruction": r["instruction"],
                                                       "input": "", "output": r["output"]} for r in cur))  # fmt: skip
    rw = out / f"rewrite-{name}"
    info = rewrite(RewriteConfig(input=src, output_dir=str(rw), model=args.rewriter, backend=args.backend_rewrite,
                                 max_new_tokens=args.rewrite_tokens, batch_size=32))  # fmt: skip
    by_u = {int(r["meta"]["source_id"][1:]): r for r in shards.iter_records(rw)}
    rows = [
        {**alpaca(U[i]), "instruction": r["instruction"], "output": r["output"], "u": i}
        for i, r in sorted(by_u.items())
    ]
    examples = [{"instruction": r["instruction"], "passage": r["meta"]["passage"][:300], "rewrite": r["output"][:300]}
                for _, r in sorted(by_u.items())[:3]]  # fmt: skip
    return rows, {"counts": info["counts"], "examples": examples}


def eval_backward(args, out: Path, adapter: Path, H: list[dict], name: str) -> dict:
    """Instruction recovery on H: greedy vs best-of-N (revgen eval), with the paired difference."""
    from revgen.evaluate.backward import EvalConfig, evaluate

    res = evaluate(EvalConfig(data=write_jsonl(out / "H.dolly.jsonl", H), adapter=str(adapter),
                              output_dir=str(out / f"eval-{name}"), backend=args.backend_rewrite, compare_base=False,
                              num_candidates=args.best_of, select_by=args.select_by, cosine=False, bootstrap=1000))  # fmt: skip
    return {"systems": {k: {m: v["overall"][m] for m in ("rouge_l", "passes_filters")} for k, v in res["systems"].items()},
            "paired": res["paired"], "mix": res["instruction_mix"]}  # fmt: skip


def trainer_args(args, steps: int) -> dict:
    return {"max_steps": steps, "per_device_train_batch_size": args.batch, "learning_rate": args.lr,
            "lr_scheduler_type": "cosine", "warmup_steps": max(1, steps // 10), "logging_steps": 1,
            "save_strategy": "no"}  # fmt: skip


def forward_key(args, data: list, H_path: str, seed: int) -> str:
    """What a forward run is made from: its training files' bytes and tags, H, and the training and scoring
    settings. A cached run with another key is stale (a resume keeps a run; a changed variant redoes it)."""
    from revgen.config import config_hash

    items = [i if isinstance(i, dict) else {"source": i} for i in [*data, H_path]]
    files = [{**i, "source": hashlib.sha256(Path(i["source"]).read_bytes()).hexdigest()} for i in items]
    keys = ("model", "steps", "batch", "lr", "layers", "max_length", "dtype", "eval_dtype", "generate_rows",
            "max_new_tokens")  # fmt: skip
    return config_hash({"files": files, "seed": seed, **{k: getattr(args, k) for k in keys}})


def forward_runs(args, name: str, data: list[str], H_path: str, out: Path) -> list[list[dict]]:
    """Train ``--seeds`` forward models on ``data`` and score each on H (cached per seed)."""
    from revgen.evaluate.forward import ForwardEvalConfig, score_rows
    from revgen.train.forward_data import load_forward_rows
    from revgen.train.trainer import LoraSettings, TrainConfig, train

    H = load_forward_rows(H_path)[0]
    runs = []
    for seed in range(args.seeds):
        d = out / "forward" / f"{name.replace('+', '_')}-s{seed}"
        scored, stamp = d / "scored.json", d / "data.key"
        key = forward_key(args, data, H_path, seed)
        if d.exists() and (stamp.read_text() if stamp.is_file() else None) != key:
            shutil.rmtree(d)  # made from other data or settings (another --seed-steps, --floor-keep, ...): again
        if not scored.is_file():
            if name != "base" and not (d / "run.json").is_file():  # trained, not yet scored: score it
                train(TrainConfig(task="forward", model=args.model, data=data, output_dir=str(d), max_length=args.max_length,
                                  lora=LoraSettings(r=16, alpha=32, target_modules=LINEAR, layers=args.layers),
                                  dtype=args.dtype, seed=seed, trainer=trainer_args(args, args.steps)))  # fmt: skip
            d.mkdir(parents=True, exist_ok=True)
            stamp.write_text(key)
            cfg = ForwardEvalConfig(generate_rows=args.generate_rows, max_new_tokens=args.max_new_tokens,
                                    batch_size=args.eval_batch, dtype=args.eval_dtype, max_length=args.max_length)  # fmt: skip
            scored.write_text(json.dumps(score_rows(str(d) if name != "base" else args.model, H, cfg)))
        runs.append(json.loads(scored.read_text()))
        if name == "base":
            break  # no training: one run
        print(f"  {name} seed {seed}: done ({time.time() - START:.0f}s)", file=sys.stderr)
    return runs


START = time.time()


def main():
    ap = parser(__doc__, threads=True)
    ap.add_argument("--data", default="dolly-sample", help="Dolly-format pairs (bundled sample, file or Hub id)")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--output-dir", default="runs/value")
    ap.add_argument("--sizes", type=int, nargs=3, default=[60, 120, 64], metavar=("S", "U", "H"))
    ap.add_argument("--split-seed", type=int, default=1234)
    ap.add_argument("--steps", type=int, default=16, help="forward training steps (every variant)")
    ap.add_argument("--layers", type=int, default=10, help="forward LoRA on the last N decoder layers (0: all)")
    ap.add_argument("--backward-steps", type=int, default=30)
    ap.add_argument("--seed-steps", type=int, help="S+default-seed: its backward model's steps (--backward-steps)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--max-length", type=int, default=160)
    ap.add_argument("--dtype", default="auto", help="training dtype")
    ap.add_argument("--eval-dtype", default="bfloat16", help="scoring dtype (bf16: 1.6x faster on this CPU)")
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--synth-seed", type=int, default=0, help="synthesis sampling seed (a replicate of the same split)")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--generate-rows", type=int, default=16, help="greedy responses for ROUGE-L on the first N of H")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--eval-batch", type=int, default=8)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS))
    ap.add_argument("--all", action="store_true", help="also the variants " + ", ".join(EXTRA))
    ap.add_argument(
        "--cycle-fraction", type=float, default=0.7, help="S+syn-cycle: keep this top fraction by cycle score"
    )
    ap.add_argument("--rewriter", default="smollm2-135m", help="S+syn-rw: the instruct model that rewrites")
    ap.add_argument("--rewrite-tokens", type=int, default=192)
    ap.add_argument("--backend-rewrite", default="transformers", help="backend for rewrite and backward eval")
    ap.add_argument("--best-of", type=int, default=4, help="backward eval on H: best-of-N beside greedy (1: off)")
    ap.add_argument("--select-by", default="cycle", choices=["cycle", "pmi"])
    ap.add_argument(
        "--opener-kinds",
        default="any",
        choices=["any", "requests", "both"],
        help="S+openers-cur, S+mix-cur: the openers' kinds (synthesize --opener-kinds)",
    )
    ap.add_argument(
        "--openers",
        type=int,
        default=3,
        help="S+openers-cur, S+mix-cur: opener-forced candidates beside the free one (synthesize --openers)",
    )
    ap.add_argument("--fit-margin", type=float, default=0.5, help="S+default-margin: the switch's fit margin")
    ap.add_argument("--total-margin", type=float, default=5.0, help="S+default-total: the switch's margin, total nats")
    ap.add_argument(
        "--floor-keep", type=float, default=0.8, help="S+floor-cur: the share of winners kept, best pmi first"
    )
    args = ap.parse_args()
    args.layers = args.layers or None

    from revgen import runinfo
    from revgen.dolly import load_pairs
    from revgen.evaluate.forward import summarize
    from revgen.evaluate.mix import compare_mix

    runinfo.set_threads(args.threads)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    pairs = load_pairs(args.data)
    S, U, H = split(pairs, tuple(args.sizes), args.split_seed)
    H_path = write_jsonl(out / "H.jsonl", map(alpaca, H))
    t0 = time.time()
    variants = list(args.variants) + (list(EXTRA) if args.all else [])
    wanted = set(variants) | {v.removesuffix("-tag") for v in variants}
    back = backward(args, S, out, "backward")
    syn, cur, counts = synth_set(args, U, out, "plain", back)
    sets = {"plain": (syn, cur, counts)}
    extra: dict = {}
    if "S+syn-cycle" in wanted:
        score = {"scorers": ["cycle"], "select": {"score": "cycle", "top_fraction": args.cycle_fraction}}
        sets["cycle"] = synth_set(
            args, U, out, "plain", back, score=score, cur_name="cycle"
        )  # same synthesis, scored curation
    if {"S+typed-cur", "S+typed-mix-cur"} & wanted:
        typed = backward(args, S, out, "backward-typed", typed=True)
        sets["typed"] = synth_set(args, U, out, "typed", typed)
        if "S+typed-mix-cur" in wanted:
            sets["typed-mix"] = synth_set(args, U, out, "typed-mix", typed, task_mix="seed")
        if args.best_of > 1:
            extra["eval_backward_typed"] = eval_backward(args, out, typed, H, "typed")
    pmi = {"scorers": ["pmi"], "backward": str(back), "best_of_candidates": True, "select": {"score": "pmi"}}
    if "S+best-cur" in wanted:
        sets["best"] = synth_set(args, U, out, "best", back, score=pmi, candidates=4)
    kinds = args.opener_kinds
    tag = ("" if kinds == "any" else f"-{kinds}") + ("" if args.openers == 3 else f"-o{args.openers}")
    synth_openers = f"openers{tag}"
    if "S+openers-cur" in wanted:
        sets["openers"] = synth_set(args, U, out, synth_openers, back, score=pmi, candidates=1, openers=args.openers,
                                    opener_kinds=kinds)  # fmt: skip
    if "S+mix-cur" in wanted:  # the same synthesis as S+openers-cur (resumed if done), curated toward the seed's mix
        sets["mix"] = synth_set(args, U, out, synth_openers, back, score={**pmi, "target_mix": "seed"}, candidates=1,
                                openers=args.openers, cur_name=f"mix{tag}", opener_kinds=kinds)  # fmt: skip
    if {"S+floor-cur", "S+floor-real"} & wanted:  # the same candidates, the weakest winners by pmi dropped
        floor = {**pmi, "target_mix": "seed", "select": {"score": "pmi", "top_fraction": args.floor_keep}}
        sets["floor"] = synth_set(args, U, out, synth_openers, back, score=floor, candidates=1, openers=args.openers,
                                  cur_name=f"floor{tag}-{args.floor_keep}", opener_kinds=kinds)  # fmt: skip
    from revgen.curate.curation import CurateConfig
    from revgen.synthesize.run import SynthConfig

    method = CurateConfig.PRESETS["openers"]["score"]  # what curate's preset auto gives a run of openers

    def default_set(name="default", adapter=back, **kw):  # synthesize's default openers (resumed when done)
        return synth_set(args, U, out, name, adapter, openers=None, opener_kinds=SynthConfig.opener_kinds, **kw)

    if wanted & {"S+default", "S+default-real"}:  # no method options: synthesize's openers, curate's auto
        sets["default"] = default_set()
    if "S+default-words" in wanted:  # the same synthesis, curated with word-only switches
        from functools import partial

        from revgen.curate import target_mix

        with mock.patch.object(target_mix, "choose", partial(target_mix.choose, count_kinds=False)):
            sets["default-words"] = default_set(cur_name="default-words")
    if "S+default-floor" in wanted:  # the same synthesis, another share of winners kept
        floor = {**method, "select": {**method["select"], "top_fraction": args.floor_keep}}
        sets["default-floor"] = default_set(score=floor, cur_name=f"default-floor-{args.floor_keep}")
    if "S+default-ifd" in wanted:  # the same synthesis, the floor by IFD under the base model
        ifd = {**method, "scorers": ["pmi", "ifd"], "forward": args.model, "choose_by": "pmi",
               "select": {"score": "ifd", "top_fraction": args.floor_keep}}  # fmt: skip
        sets["default-ifd"] = default_set(score=ifd, cur_name=f"default-ifd-{args.floor_keep}")
    if "S+default-pmirate" in wanted:  # the same winners, the floor by pmi per response token
        nofloor = {**method, "select": {**method["select"], "top_fraction": 1.0}}
        syn_all, cur_all, counts_all = default_set(score=nofloor, cur_name="default-nofloor")
        sets["default-pmirate"] = (syn_all, pmi_rate_floor(args, out / "synth-default", cur_all), counts_all)
    if "S+default-margin" in wanted:  # the same synthesis, a wider switch toward the seed's mix
        margin = {**method, "fit_margin": args.fit_margin}
        sets["default-margin"] = default_set(score=margin, cur_name=f"default-margin-{args.fit_margin}")
    if "S+default-total" in wanted:  # the same synthesis and floor, each pick by total pmi
        from revgen.curate import target_mix

        with mock.patch.object(target_mix, "choose", by_total(args, target_mix.choose)):
            sets["default-total"] = default_set(cur_name=f"default-total-{args.total_margin}")
    if "S+default-rescore" in wanted:  # the same synthesis, the fit scored again by curation
        sets["default-rescore"] = default_set(score={"backward": str(back)}, cur_name="default-rescore")
    if "S+default-sep" in wanted:  # every candidate decoded on its own
        from revgen.generate.hf import HFGenerator

        with mock.patch.object(HFGenerator, "shares_prefix", property(lambda self: False)):
            sets["default-sep"] = default_set("default-sep")
    if "S+default-seed" in wanted:  # a backward model on S + the rows with a context, none in U or H
        seed = S + [r for r in pairs if r["context"].strip()]
        steps = args.seed_steps or args.backward_steps
        steps_tag = "" if steps == args.backward_steps else f"-{steps}"  # at --backward-steps: the names as before
        sets["default-seed"] = default_set(
            f"default-seed{steps_tag}", backward(args, seed, out, f"backward-seed{steps_tag}", steps=steps)
        )
        extra["backward_seed_pairs"] = len(seed)
    if args.best_of > 1:
        extra["eval_backward"] = eval_backward(args, out, back, H, "plain")
    if "S+syn-rw" in wanted:
        rw_rows, extra["rewrite"] = rewritten(args, U, out, cur, "syn-cur")
    stage_s = {"backward+synthesize+curate": round(time.time() - t0, 1)}
    kept_u = {r["u"] for r in cur}
    files = {"S": [write_jsonl(out / "S.jsonl", map(alpaca, S))],
             "S+syn": [write_jsonl(out / "syn.jsonl", syn)], "S+syn-cur": [write_jsonl(out / "syn-cur.jsonl", cur)],
             "S+real": [write_jsonl(out / "real.jsonl", map(alpaca, U))],
             "S+real-kept": [write_jsonl(out / "real-kept.jsonl", (alpaca(U[i]) for i in sorted(kept_u)))]}  # fmt: skip
    for key in ("default", "floor"):  # S+<key>-real: the real instructions of the passages a set keeps
        if f"S+{key}-real" in wanted:
            real_kept = (alpaca(U[r["u"]]) for r in sets[key][1])
            files[f"S+{key}-real"] = [write_jsonl(out / f"{key}-real.jsonl", real_kept)]
    for key, name in (
        ("cycle", "S+syn-cycle"),
        ("typed", "S+typed-cur"),
        ("typed-mix", "S+typed-mix-cur"),
        ("best", "S+best-cur"),
        ("openers", "S+openers-cur"),
        ("mix", "S+mix-cur"),
        ("floor", "S+floor-cur"),
        ("default", "S+default"),
        ("default-words", "S+default-words"),
        ("default-floor", "S+default-floor"),
        ("default-sep", "S+default-sep"),
        ("default-rescore", "S+default-rescore"),
        ("default-seed", "S+default-seed"),
        ("default-ifd", "S+default-ifd"),
        ("default-pmirate", "S+default-pmirate"),
        ("default-margin", "S+default-margin"),
        ("default-total", "S+default-total"),
    ):
        if key in sets:
            files[name] = [write_jsonl(out / f"{key}-cur.jsonl", sets[key][1])]
    if "S+syn-rw" in wanted:
        files["S+syn-rw"] = [write_jsonl(out / "syn-rw.jsonl", rw_rows)]
    for name in files:
        if name != "S":
            files[name] = files["S"] + files[name]
    for name in [v for v in variants if v.endswith("-tag")]:
        base = files[name.removesuffix("-tag")]
        files[name] = [{"source": f, "tag": "seed" if f == files["S"][0] else "augmented"} for f in base]
    runs = {"base": forward_runs(args, "base", [], H_path, out)}
    for name in variants:
        t0 = time.time()
        runs[name] = forward_runs(args, name, files[name], H_path, out)
        stage_s[name] = round(time.time() - t0, 1)

    real_by_u = {i: U[i] for i in range(len(U))}

    def mix_of(rows):
        typed = [r for r in rows if r.get("task_type")]  # a typed model's rows that name a type
        out = compare_mix([r["instruction"] for r in rows], [real_by_u[r["u"]]["instruction"] for r in rows],
                          [r["task_type"] for r in typed], [real_by_u[r["u"]]["category"] for r in typed])  # fmt: skip
        return {**out, "typed_share": round(len(typed) / len(rows), 3)} if typed and rows else out

    report = {"args": vars(args), "sizes": {"S": len(S), "U": len(U), "H": len(H), "U_synthesized": len(syn),
                                            "U_curated": len(cur)},
              "curated": {k: len(v[1]) for k, v in sets.items()},
              "variants": {k: summarize(v)["overall"] for k, v in runs.items()}, **forward_report(runs),
              "mix": mix_of(syn), "mix_curated": mix_of(cur),
              "mix_sets": {k: {"all": mix_of(v[0]), "curated": mix_of(v[1])} for k, v in sets.items()}, **extra}  # fmt: skip
    report["wall_time_s"] = round(time.time() - START, 1)
    report["stage_s"] = stage_s
    write_json(out / "value.json", report)
    print(markdown(report))


def refs(k: str, runs: dict) -> tuple[str, str]:
    """The floor and ceiling a variant is measured against: a tagged one against the tagged S and
    S+real when they ran (same prompts), any other against S and S+real."""
    tagged = k.endswith("-tag") and {"S-tag", "S+real-tag"} <= set(runs)
    return ("S-tag", "S+real-tag") if tagged else ("S", "S+real")


def forward_report(runs: dict) -> dict:
    """Paired differences (vs S, vs S+syn-cur, tagged vs untagged, S+default-* vs S+default), value
    recovered and instruction use relative to the real instructions, from every variant's scored runs."""
    from revgen.evaluate.forward import compare
    from revgen.stats import ratio_ci

    rep = {"vs_S": {k: compare(*same_tokens(runs[refs(k, runs)[0]], v)) for k, v in runs.items()
                    if k != refs(k, runs)[0] and refs(k, runs)[0] in runs},
           "vs_syn_cur": {k: compare(runs["S+syn-cur"], runs[k]) for k in runs if k in EXTRA and "S+syn-cur" in runs},
           "vs_untagged": {k: compare(*same_tokens(runs[k.removesuffix("-tag")], runs[k])) for k in runs
                           if k.endswith("-tag") and k.removesuffix("-tag") in runs},
           "vs_default": {k: compare(runs["S+default"], runs[k]) for k in runs
                          if k.startswith("S+default-") and "S+default" in runs}}  # fmt: skip
    if {"S", "S+real"} <= set(runs):
        nll_sum = {k: [[r["nll_sum"] for r in run] for run in v] for k, v in runs.items()}
        use = {k: runs_mean([[r["instruction_use"] for r in run] for run in v]) for k, v in runs.items()}
        weights = {k: [float(r["tokens"]) for r in v[0]] for k, v in runs.items()}
        rep["value_recovered"] = {k: ratio_ci(nll_sum[lo], nll_sum[k], nll_sum[hi], weights[lo])
                                  for k in runs if k != "base" for lo, hi in [refs(k, runs)] if k not in (lo, hi)}  # fmt: skip
        rep["instruction_use_vs_real"] = {
            k: round(use[k] / use[refs(k, runs)[1]], 3) for k in use if use[refs(k, runs)[1]]
        }
    return rep


def same_tokens(a: list[list[dict]], b: list[list[dict]]) -> tuple[list, list]:
    """Both runs on the rows scored over the same response tokens: a tag lengthens the prompt, so
    ``--max-length`` cuts some long responses shorter, and sums over different tokens do not pair."""
    keep = [i for i, (x, y) in enumerate(zip(a[0], b[0])) if x["tokens"] == y["tokens"]]
    return [[run[i] for i in keep] for run in a], [[run[i] for i in keep] for run in b]


def runs_mean(runs):
    return sum(sum(r) / len(r) for r in runs) / len(runs)


def markdown(rep: dict) -> str:
    from revgen.evaluate.forward import _fmt as _f

    rows = [[k, _f(v["nll"]), _f(v["nll_token_weighted"]), _f(v["instruction_use"]),
             _f(v["rouge_l"]) if "rouge_l" in v else "-",
             _f(rep["vs_S"][k]["nll_token_weighted"]) if k in rep["vs_S"] else "-"] for k, v in rep["variants"].items()]  # fmt: skip
    lines = [markdown_table(["variant", "NLL (row mean)", "NLL (token-weighted)", "instruction use", "ROUGE-L",
                             "vs S: NLL (token-w.)"], rows)]  # fmt: skip
    for k, v in rep.get("value_recovered", {}).items():
        lines.append(f"\nvalue recovered {k}: {_f(v)} (ceiling gain {v['ceiling_gain']:+.4f}, "
                     f"distinguishable from zero: {v['ceiling_distinct']})")  # fmt: skip
    lines.append(f"\ninstruction use / S+real: {rep.get('instruction_use_vs_real')}")
    for k, v in rep.get("vs_syn_cur", {}).items():
        lines.append(f"{k} - S+syn-cur, NLL token-weighted (paired): {_f(v['nll_token_weighted'])}")
    for k, v in rep.get("vs_untagged", {}).items():
        lines.append(f"{k} - untagged (paired, the {v['nll']['n']} rows cut alike): NLL token-weighted "
                     f"{_f(v['nll_token_weighted'])}, instruction use {_f(v['instruction_use'])}")  # fmt: skip
    for name, both in rep.get("mix_sets", {"plain": {"all": rep["mix"]}}).items():
        for which, m in both.items():
            lines.append(f"mix {name}/{which}: questions {m['synthetic']['kind'].get('question', 0):.3f} vs real "
                         f"{m['real']['kind'].get('question', 0):.3f}: TV kind {m['tv_kind']}, TV leading word "
                         f"{m['tv_leading_word']}" + (f", TV type {m['tv_type']}" if "tv_type" in m else ""))  # fmt: skip
    for key in ("eval_backward", "eval_backward_typed"):
        if key in rep:
            e = rep[key]
            lines.append(f"{key}: " + ", ".join(f"{s} ROUGE-L {_f(v['rouge_l'])}" for s, v in e["systems"].items())
                         + "; paired " + ", ".join(f"{k}: {_f(v['rouge_l'])}" for k, v in e["paired"].items()))  # fmt: skip
    if "rewrite" in rep:
        lines.append(f"rewrite: {rep['rewrite']['counts']}")
    lines.append(f"sizes {rep['sizes']}; wall time {rep['wall_time_s']:.0f} s; stages {rep['stage_s']}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
