"""``revgen synthesize``: backward model over a corpus -> resumable shards of Alpaca records.

corpus -> documents -> segments -> prompts (the adapter's own template) -> generator -> records.
Records carry the Alpaca fields (instruction, input "", output = the source segment) plus
provenance under ``meta``. Generations cut by the length limit or empty are not records: they go
to ``NNNNN.dropped.jsonl`` with their reason and are counted in run.json.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from pathlib import Path

from revgen import config as cfgmod
from revgen import dtypes, openers, runinfo, shards
from revgen.errors import UserError
from revgen.synthesize.core import Context, SynthConfig, work
from revgen.synthesize.select import DROPPED

__all__ = ["Context", "SynthConfig", "dry_run", "synthesize", "work"]

log = logging.getLogger(__name__)
# Knobs that change speed or scope of work, not what a record says: a resume may change them.
# Paths are not part of a run's identity (out/run and ./out/run/ are one run): the corpus and the
# adapter are identified by their content instead (see identity()).
RESUMABLE = {"overwrite", "threads", "batch_size", "micro_batch_size", "data_parallel", "executor", "ray_address",
             "max_restarts", "output_dir", "corpus", "adapter", "base_url", "api_key_env", "concurrency"}  # fmt: skip
REPLACED = ".replaced"  # an --overwrite'n run waits here until the new run completes


def resume_hash(cfg: SynthConfig) -> str:
    values = {k: v for k, v in cfgmod.to_dict(cfg).items() if k not in RESUMABLE}
    if not values.get("openers"):  # no openers drawn: their kind changes nothing (and runs from before
        values["opener_kinds"] = "any"  # "both" became the default still resume)
    return cfgmod.config_hash(values)


def identity(cfg: SynthConfig) -> dict:
    """What a run's records depend on besides its config: the corpus's files and the adapter's weights."""
    from revgen.synthesize.corpus import fingerprint

    return {"corpus": fingerprint(cfg.corpus, cfg.split), "adapter_sha256": runinfo.dir_hash(cfg.adapter)}


def _changes(prev: dict, cfg: SynthConfig, ident: dict, config_only: bool = False) -> list[str]:
    changed = []
    old_cfg, new_cfg = prev.get("config", {}), cfgmod.to_dict(cfg)
    keys = sorted(k for k in set(old_cfg) | set(new_cfg) if k not in RESUMABLE and old_cfg.get(k) != new_cfg.get(k)
                  and (k in old_cfg or new_cfg.get(k) != SynthConfig.__dataclass_fields__[k].default))  # fmt: skip
    changed += [f"{k}: {old_cfg.get(k)!r} -> {new_cfg.get(k)!r}" for k in keys]
    if config_only:
        return changed
    old_ident = prev.get("identity", {})
    if old_ident.get("adapter_sha256") != ident["adapter_sha256"]:
        changed.append("the adapter's weights (retrained?)")
    old_files, new_files = old_ident.get("corpus", {}).get("files", {}), ident["corpus"].get("files", {})
    for name in sorted(set(old_files) | set(new_files)):
        if old_files.get(name) != new_files.get(name):
            what = "added" if name not in old_files else "removed" if name not in new_files else "rewritten"
            changed.append(f"corpus file {name} {what}")
    if old_ident.get("corpus", {}).get("hub") != ident["corpus"].get("hub"):
        changed.append("the Hub corpus")
    return changed or ["the run's config (its resume hash)"]


def _prepare_dir(out: Path, cfg: SynthConfig, ident: dict) -> Path | None:
    """Check what ``out`` holds. Returns the folder an --overwrite'n run was moved to (restored if the
    new run fails before writing anything, removed when it completes), else None."""
    run_json, shard_dir = out / "run.json", out / "shards"
    has_records = any(shards.iter_records(out)) if shard_dir.is_dir() else False
    if not run_json.exists():
        if not any(shard_dir.glob("*")) if shard_dir.is_dir() else True:
            return None
        if not cfg.overwrite:
            raise UserError(f"{shard_dir} holds shards but {out}/run.json is missing: what made them is unknown; "
                            "move them away or pass --overwrite")  # fmt: skip
    else:
        prev = json.loads(run_json.read_text())
        if prev.get("resume_hash") == resume_hash(cfg) and prev.get("identity") == ident:
            return None  # resume
        if "identity" not in prev and not _changes(prev, cfg, ident, config_only=True):
            log.warning("%s: a run from an older revgen (no content identity recorded): resuming on its config", out)
            return None
        if prev.get("status") != "complete" and not has_records:
            log.info("%s: replacing an earlier run that wrote no records (%s)", out, prev.get("status"))
            shutil.rmtree(shard_dir, ignore_errors=True)
            return None
        if not cfg.overwrite:
            raise UserError(f"{out} holds a run made differently ({'; '.join(_changes(prev, cfg, ident))}); "
                            "pass --overwrite to replace it (kept until the new run completes), or use another "
                            "--output-dir")  # fmt: skip
    aside = out / REPLACED
    shutil.rmtree(aside, ignore_errors=True)
    aside.mkdir()
    for name in ("shards", "run.json"):
        if (out / name).exists():
            os.replace(out / name, aside / name)
    log.warning("--overwrite: the previous run in %s waits in %s until this one completes", out, aside)
    return aside


def _restore(out: Path, aside: Path | None) -> None:
    """A failed run: put an --overwrite'n run back if the new one wrote no records."""
    if aside is None or not aside.exists():
        return
    if any(shards.iter_records(out)):
        log.warning("the run failed after writing records; the run it replaced is kept in %s", aside)
        return
    shutil.rmtree(out / "shards", ignore_errors=True)
    for name in ("shards", "run.json"):
        if (aside / name).exists():
            os.replace(aside / name, out / name)
    aside.rmdir()
    log.warning("the run failed before writing anything: the previous run in %s is back as it was", out)


def synthesize(cfg: SynthConfig) -> dict:
    """Run (or resume) synthesis into ``cfg.output_dir``; returns the final run.json dict."""
    cfg = resolve(cfg)
    out = Path(cfg.output_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"output dir {out} is a file, not a folder")
    runinfo.set_threads(cfg.threads)
    with shards.DirLock(out):
        return _run(cfg, Path(cfg.adapter), out)


def dry_run(cfg: SynthConfig, probe: int = 64) -> dict:
    """What ``synthesize(cfg)`` would do (estimate.py); nothing is written."""
    from revgen.synthesize.estimate import estimate

    cfg = resolve(cfg)
    runinfo.set_threads(cfg.threads)
    return estimate(cfg, probe)


def resolve(cfg: SynthConfig) -> SynthConfig:
    """``cfg`` checked, with the defaults that depend on the adapter filled in (``openers``)."""
    check(cfg)
    if cfg.openers is not None:
        return cfg
    n, why = openers.default_count(cfg.adapter, cfg.opener_kinds)
    log.info("openers: %s", why)
    return dataclasses.replace(cfg, openers=n)


def check(cfg: SynthConfig) -> None:
    """Every option checked before anything loads."""
    from revgen.synthesize.segment import LABELS

    if not cfg.corpus:
        raise UserError("no corpus given (CORPUS argument or synthesize.corpus in the recipe)")
    if cfg.num_candidates < 1 or cfg.max_new_tokens < 1:
        raise UserError("num_candidates and max_new_tokens must be at least 1")
    if cfg.openers is not None and cfg.openers < 0:
        raise UserError(f"openers must be 0 or more, got {cfg.openers}")
    if cfg.opener_kinds not in openers.KINDS:
        raise UserError(f"opener_kinds must be one of {openers.KINDS}, got {cfg.opener_kinds!r}")
    adapter = Path(cfg.adapter)
    if not (adapter / "adapter_config.json").is_file():
        raise UserError(f"{adapter} is not an adapter directory from `revgen train` (no adapter_config.json)")
    if cfg.executor not in ("local", "ray"):
        raise UserError(f"executor must be 'local' or 'ray', got {cfg.executor!r}")
    if cfg.executor == "ray":  # an address nobody answers at fails now, not after ray.init's 30 s of retries
        from revgen.reach import check_ray_address

        check_ray_address(cfg.ray_address, "ray_address")
    if cfg.data_parallel < 1:
        raise UserError(f"data_parallel must be at least 1, got {cfg.data_parallel}")
    unknown = sorted(set(cfg.select.keep_blocks) - set(LABELS))
    if unknown:
        raise UserError(f"select.keep_blocks: unknown block label(s) {unknown}; expected some of {list(LABELS)}")
    check_remote_code(cfg.engine, cfg.trust_remote_code)


def check_remote_code(options: dict, allowed: bool) -> None:
    """Remote code runs only when the user opted in with --trust-remote-code, never through engine options."""

    def walk(d):
        for k, v in d.items():
            if k == "trust_remote_code" and v:
                return True
            if isinstance(v, dict) and walk(v):
                return True
        return False

    if walk(options) and not allowed:
        raise UserError("engine options ask for trust_remote_code: remote code stays off unless you pass "
                        "--trust-remote-code (recipe key trust_remote_code: true)")  # fmt: skip
    if allowed:
        log.warning("trust_remote_code is on: the model's own Python code will run")


def _run(cfg: SynthConfig, adapter: Path, out: Path) -> dict:
    started = time.time()
    ctx = Context.build(cfg)  # validates the adapter before anything in `out` is touched
    ident = identity(cfg)
    aside = _prepare_dir(out, cfg, ident)
    (out / "shards").mkdir(parents=True, exist_ok=True)
    info = {"command": "synthesize", "status": "running", "config": cfgmod.to_dict(cfg),
            "resume_hash": resume_hash(cfg), "identity": ident, "trust_remote_code": cfg.trust_remote_code,
            "base_model": ctx.base, "adapter": str(adapter),
            "adapter_sha256": ctx.adapter_sha256, "backend": ctx.backend, "backend_why": ctx.backend_why, "merged": ctx.merge,
            "template": ctx.template.text, "sampling": ctx.sampling.as_dict(), "versions": runinfo.versions(),
            "environment": runinfo.device_info()}  # fmt: skip
    if ctx.backend != "openai":  # a server computes in its own dtype
        info["compute"] = dtypes.choice(cfg.dtype)
    if ctx.task_types:
        info.update(task_types=ctx.task_types, task_mix=ctx.task_mix or "auto")
    if cfg.base_url:  # never credentials in run.json
        from revgen.generate.openai_server import public_url

        info["config"]["base_url"] = public_url(cfg.base_url)
        info.update(server=public_url(cfg.base_url), served_model=cfg.served_model)
    runinfo.write_json(out / "run.json", info)
    if cfg.executor == "ray":
        from revgen.synthesize.ray_executor import run_ray as runner
    elif cfg.data_parallel > 1:
        from revgen.synthesize.parallel import run_data_parallel as runner
    else:
        runner = work
    try:
        passed = runner(ctx, out)
    except BaseException as exc:
        info.update(status="interrupted" if isinstance(exc, KeyboardInterrupt) else "failed", error=str(exc)[:500])
        runinfo.write_json(out / "run.json", info)
        _restore(out, aside)
        raise
    info.update(status="complete", counts=_count(out, passed), wall_time_s=round(time.time() - started, 1),
                generated_tokens_this_run=passed["tokens"], prompt_tokens_this_run=passed.get("prompt_tokens", 0),
                tokens_per_s=passed["tokens"] / max(time.time() - started, 1e-9))  # fmt: skip
    if passed.get("generate_s"):  # steady-state rate: generated tokens / time inside the generator
        info.update(
            generate_s=passed["generate_s"], generate_tokens_per_s=round(passed["tokens"] / passed["generate_s"], 1)
        )
    if "workers" in passed:
        info["workers"] = passed["workers"]  # data-parallel: tokens and restarts per worker
    counts = info["counts"]
    if not counts["records"]:
        info["status"] = "empty"
        runinfo.write_json(out / "run.json", info)
        _restore(out, aside)
        raise UserError(f"{cfg.corpus}: the run produced no records ({counts['documents']} documents, "
                        f"{counts['bad_rows']} bad rows skipped, {counts['segments']} segments, "
                        f"{counts['skipped_short']} shorter than min_words={cfg.min_words}, "
                        f"{counts.get('selected', 0) if cfg.select.enabled else counts['segments']} selected: see {out}/{DROPPED} for why passages were "
                        "left out, --select off to generate for all)")  # fmt: skip
    runinfo.write_json(out / "run.json", info)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    log.info("synthesis complete: %s", info["counts"])
    return info


def _count(out: Path, passed: dict) -> dict:
    from collections import Counter

    records = sum(1 for _ in shards.iter_records(out))
    reasons = Counter(r["reason"] for r in shards.iter_records(out, dropped=True))
    corpus = passed["corpus"]
    extract = {f"extract/{k}": v for k, v in corpus.get("extract_skipped", {}).items()}
    return {"documents": corpus["documents"], "bad_rows": corpus["bad_rows"],
            "bad_row_examples": corpus["bad_row_examples"], "extracted": corpus.get("extracted", 0), **extract,
            **passed["segments"], **passed.get("funnel", {}), **passed["counts"],
            "records": records, **{f"dropped/{k}": v for k, v in sorted(reasons.items())},
            "shards": len(list((out / "shards").glob("*.done")))}  # fmt: skip
