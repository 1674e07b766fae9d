"""``revgen run RECIPE``: the stages a recipe lists, in order, each in its own dir under one root.

A recipe's ``run:`` section names a root and a list of stages::

    run:
      root: runs/demo
      stages:
        - {name: backward, kind: train}
        - {name: synthesize, kind: synthesize, set: {adapter: "@backward"}}
        - {name: curate, kind: curate, set: {input: "@synthesize"}}

A stage's config is the recipe's section for its kind (``train``, ``forward``, ``synthesize``,
``curate``, ``eval_forward``), then the stage's ``set:``, with ``output_dir`` = ROOT/NAME; a value
``"@name"`` is that earlier stage's output dir (``"@name/heldout.jsonl"`` a file in it). A stage is skipped when its ``stage.json`` says it
completed with the same hash (its config plus the hashes of the stages it reads); a changed stage
reruns, and so does everything downstream of it. A killed run resumes inside its stage (every
command resumes on its own).
"""

from __future__ import annotations

import copy
import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import click
import yaml

from revgen import config as cfgmod
from revgen import runinfo
from revgen.errors import UserError

log = logging.getLogger(__name__)
KINDS = {"train": "train", "forward": "forward", "synthesize": "synthesize", "curate": "curate",
         "eval_forward": "eval_forward", "rewrite": "rewrite", "card": None}  # kind -> recipe section  # fmt: skip
STAGE_FILE = "stage.json"
STAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass
class Stage:
    name: str
    kind: str
    line: int
    inputs: list = field(default_factory=list)
    values: dict = field(default_factory=dict)  # the resolved config values (output_dir included)
    hash: str = ""
    action: str = ""  # run | skip
    why: str = ""


def _stage_lines(text: str) -> list[int]:
    """The recipe line of each stage (1-based), for error messages."""
    node = yaml.compose(text)
    for key, value in getattr(node, "value", []):
        if key.value == "run":
            for k2, v2 in value.value:
                if k2.value == "stages":
                    return [item.start_mark.line + 1 for item in v2.value]
    return []


def _refs(value, found: list):
    if isinstance(value, str) and value.startswith("@"):
        found.append(value[1:].split("/", 1)[0])
    elif isinstance(value, dict):
        for v in value.values():
            _refs(v, found)
    elif isinstance(value, list):
        for v in value:
            _refs(v, found)
    return found


def _resolve(value, dirs: dict):
    """``"@name"`` -> that stage's dir, ``"@name/file"`` -> a file in it."""
    if isinstance(value, str) and value.startswith("@"):
        name, _, rest = value[1:].partition("/")
        return f"{dirs[name]}/{rest}" if rest else dirs[name]
    if isinstance(value, dict):
        return {k: _resolve(v, dirs) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, dirs) for v in value]
    return value


def plan(recipe: str | Path, start: str | None = None, until: str | None = None) -> tuple[Path, list[Stage]]:
    """The stages in order, each with its hash and whether it runs or is skipped (and why)."""
    path = Path(recipe)
    sections = cfgmod.read_recipe(path)
    run = sections.get("run") or {}
    where = f"recipe {path}"
    if not isinstance(run.get("stages"), list) or not run["stages"]:
        raise UserError(f"{where}: no `run:` section with a list of `stages`")
    root = Path(run.get("root") or "runs/pipeline")
    lines = _stage_lines(path.read_text(encoding="utf-8"))
    stages: list[Stage] = []
    dirs: dict = {}
    for i, item in enumerate(run["stages"]):
        line = lines[i] if i < len(lines) else 0
        at = f"{where} line {line}"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or item.get("kind") not in KINDS:
            raise UserError(f"{at}: a stage needs a `name` and a `kind` out of {sorted(KINDS)}, got {item!r}")
        unknown = sorted(set(item) - {"name", "kind", "set"})
        if unknown:
            raise UserError(f"{at}: unknown stage key(s) {unknown}; expected name, kind, set")
        name = item["name"]
        if not STAGE_NAME.fullmatch(name):
            raise UserError(
                f"{at}: stage name {name!r} must be letters, digits, '-', '_' or '.' (it names a folder "
                f"under {root}), not a path"
            )
        if item.get("set") is not None and not isinstance(item["set"], dict):
            raise UserError(
                f"{at}: stage {name!r}: `set:` must be a mapping of key: value, got {type(item['set']).__name__}"
            )
        if name in dirs:
            raise UserError(f"{at}: stage name {name!r} is used twice")
        inputs = _refs(item.get("set") or {}, [])
        for ref in inputs:
            if ref not in dirs:
                later = any(isinstance(s, dict) and s.get("name") == ref for s in run["stages"][i:])
                raise UserError(f"{at}: stage {name!r} reads '@{ref}', " + (
                    "a stage that comes later (stages run in the order listed; a cycle?)" if later
                    else "which is not a stage of this recipe"))  # fmt: skip
        dirs[name] = str(root / name)
        values = copy.deepcopy(sections.get(KINDS[item["kind"]]) or {}) if KINDS[item["kind"]] else {}
        if item["kind"] == "synthesize":  # selection drops what the recipe's curation would, no more
            from revgen.synthesize.select import follow_curate

            values = follow_curate(values, sections.get("curate"))
        values = cfgmod.merge(values, _resolve(item.get("set") or {}, dirs))
        key = "path" if item["kind"] == "card" else "output_dir"
        values[key] = dirs[name] if item["kind"] != "card" else values.get("path", dirs[inputs[0]] if inputs else "")
        stage = Stage(name, item["kind"], line, inputs, values)
        try:
            _build(stage, f"{at} (stage {name!r})")  # a bad value fails now, before anything runs
        except UserError as exc:
            if at not in exc.message:
                raise UserError(f"{at} (stage {name!r}): {exc.message}") from None
            raise
        upstream = [s.hash for s in stages if s.name in inputs]
        # hashed relative to the root: a finished root copied or moved elsewhere is still finished
        stage.hash = cfgmod.config_hash(
            {"kind": stage.kind, "values": _relative(values, str(root)), "inputs": upstream}
        )
        stages.append(stage)
    names = [s.name for s in stages]
    for flag, value in (("--from", start), ("--until", until)):
        if value and value not in names:
            raise UserError(f"{flag} {value!r}: not a stage of {path} ({', '.join(names)})")
    if start and until and names.index(until) < names.index(start):
        raise UserError(f"--until {until!r} comes before --from {start!r} in {path} ({', '.join(names)})")
    forced = set(names[names.index(start) :]) if start else set()
    stop = names.index(until) if until else len(names) - 1
    dirty: set = set()
    for i, s in enumerate(stages):
        done = _done(Path(dirs[s.name]) if s.kind != "card" else Path(s.values["path"]), s)
        if i > stop:
            s.action, s.why = "skip", f"after --until {until}"
        elif s.name in forced:
            s.action, s.why = "run", "--from"
        elif done and not any(x in dirty for x in s.inputs):
            s.action, s.why = "skip", "finished with the same config and inputs"
        else:
            s.action, s.why = "run", _why(Path(dirs[s.name]) if s.kind != "card" else Path(s.values["path"]), s,
                                          [x for x in s.inputs if x in dirty])  # fmt: skip
        if s.action == "run":
            dirty.add(s.name)
    return root, stages


def _why(out: Path, stage: Stage, rerun_inputs: list) -> str:
    """Why a stage runs, in the words a user reads right."""
    marker = out / STAGE_FILE if stage.kind != "card" else out / f"card.{STAGE_FILE}"
    if marker.is_file():
        if rerun_inputs:
            return f"input {', '.join(rerun_inputs)} changed"
        return "config changed" if json.loads(marker.read_text()).get("status") == "complete" else "resumes"
    if stage.kind != "card" and out.is_dir() and any(out.iterdir()):
        return "resumes an unfinished run"
    return "first run"


def _relative(value, root: str):
    if isinstance(value, str):
        return "@ROOT" + value[len(root) :] if value == root or value.startswith(root + "/") else value
    if isinstance(value, dict):
        return {k: _relative(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_relative(v, root) for v in value]
    return value


def _done(out: Path, stage: Stage) -> bool:
    f = out / STAGE_FILE if stage.kind != "card" else out / f"card.{STAGE_FILE}"
    if not f.is_file():
        return False
    info = json.loads(f.read_text())
    return info.get("status") == "complete" and info.get("hash") == stage.hash


def _build(stage: Stage, source: str):
    if stage.kind == "card":
        return None
    if stage.kind in ("train", "forward"):
        from revgen.train.trainer import TrainConfig as cls

        values = {**stage.values, "task": "forward" if stage.kind == "forward" else "backward", "overwrite": True}
    elif stage.kind == "synthesize":
        from revgen.synthesize.run import SynthConfig as cls

        values = {**stage.values, "overwrite": True}
    elif stage.kind == "curate":
        from revgen.curate.curation import CurateConfig as cls

        values = stage.values
    elif stage.kind == "rewrite":
        from revgen.rewrite import RewriteConfig as cls

        values = stage.values
    else:
        from revgen.evaluate.forward import ForwardEvalConfig as cls

        values = stage.values
    return cfgmod.build(cls, values, source)


def _execute(stage: Stage) -> dict:
    """Run one stage; returns its key numbers."""
    cfg = _build(stage, f"stage {stage.name!r}")
    if stage.kind in ("train", "forward"):
        from revgen.train.trainer import train

        info = train(cfg)
        return {"loss": round(info["train_loss"], 4), "steps": info["steps"]}
    if stage.kind == "synthesize":
        from revgen.synthesize.run import synthesize

        return {"records": synthesize(cfg)["counts"]["records"]}
    if stage.kind == "curate":
        from revgen.curate.curation import curate

        stats = curate(cfg)
        if stats.get("submitted"):  # the stage is not done: later stages need its dataset
            raise UserError(f"stage {stage.name!r}: curation was submitted to Slurm (logs: {stats['submitted']}); "
                            f"run the same `revgen run` again once the jobs finish")  # fmt: skip
        counts = stats["counts"]
        return {"records": counts.get("total", 0), "kept": counts.get("kept", 0)}
    if stage.kind == "rewrite":
        from revgen.rewrite import rewrite

        return {"records": rewrite(cfg)["counts"]["records"]}
    if stage.kind == "eval_forward":
        from revgen.evaluate.forward import evaluate_forward

        res = evaluate_forward(cfg)["systems"]["A"]["overall"]
        return {"nll": res["nll_token_weighted"]["mean"]}
    from revgen.publish.card import write

    return {"card": str(write(stage.values["path"], license=stage.values.get("license")))}


def run(recipe: str | Path, start: str | None = None, until: str | None = None, dry_run: bool = False) -> dict:
    root, stages = plan(recipe, start, until)
    if dry_run:
        return {"root": str(root), "stages": [{"name": s.name, "kind": s.kind, "action": s.action, "why": s.why,
                                               "hash": s.hash} for s in stages]}  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    summary = {"recipe": str(recipe), "root": str(root), "stages": []}
    for s in stages:
        row = {"name": s.name, "kind": s.kind, "hash": s.hash, "action": s.action, "why": s.why}
        if s.action == "run":
            click.echo(f"[{s.name}] {s.kind}: running ({s.why})", err=True)
            t = time.time()
            row["numbers"] = _execute(s)
            row["wall_time_s"] = round(time.time() - t, 1)
            out = Path(s.values["path"]) if s.kind == "card" else Path(s.values["output_dir"])
            marker = out / (f"card.{STAGE_FILE}" if s.kind == "card" else STAGE_FILE)
            runinfo.write_json(marker, {"status": "complete", "hash": s.hash, "name": s.name, "kind": s.kind,
                                        "numbers": row["numbers"], "wall_time_s": row["wall_time_s"]})  # fmt: skip
            click.echo(f"[{s.name}] done in {row['wall_time_s']}s: {row['numbers']}", err=True)
        else:
            click.echo(f"[{s.name}] skipped: {s.why}", err=True)
        summary["stages"].append(row)
        runinfo.write_json(root / "pipeline.json", summary)
    return summary


def table(summary: dict) -> str:
    lines = ["| stage | kind | status | why | wall time | key numbers |", "|---|---|---|---|---|---|"]
    for s in summary["stages"]:
        status = ("ran" if "numbers" in s else "did not run") if s["action"] == "run" else "skipped"
        wall = f"{s['wall_time_s']} s" if "wall_time_s" in s else "-"
        lines.append(f"| {s['name']} | {s['kind']} | {status} | {s['why']} | {wall} | {s.get('numbers', '')} |")
    return "\n".join(lines)
