"""revgen from Python: ``revgen.train``, ``revgen.synthesize``, ``revgen.curate`` and ``revgen.run``.

Keyword arguments are the recipe keys of the command (``recipes/*.yaml``; ``help()`` of each function lists them);
nested settings are dicts (``gopher={"min_words": 3}``). Precedence is the CLI's: defaults < a
``recipe=`` file < the keyword arguments. An unknown keyword is a ``TypeError`` naming it; a bad value is
a :class:`revgen.UserError` naming the key and what is allowed, exactly as on the command line. The
output directory is a run's identity: calling again with the same settings resumes, as the CLI does.

Corpora and training data may be paths, ``datasets.Dataset`` / ``IterableDataset``, lists of dicts or a
pandas ``DataFrame``; rows are written once to a content-addressed jsonl in revgen's cache, so the same
rows give the same file (and a resumable run). Results come back as ``datasets.Dataset`` with the run's
statistics in ``.stats`` and its folder in ``.run_dir``.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path

from revgen import config as cfgmod
from revgen import shards
from revgen.errors import UserError
from revgen.io import atomic_write_text

__all__ = ["train", "synthesize", "curate", "run", "push"]


def _options(cls, options: dict, fn: str) -> dict:
    """Keyword arguments as config overrides: unknown names are a TypeError, None an explicit null."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise TypeError(f"revgen.{fn}() got unknown option(s) {unknown}; its options: {sorted(fields)}")
    return {k: cfgmod.NULL if v is None else v for k, v in options.items()}


def _rows_path(data, what: str):
    """A path as given; rows (Dataset, IterableDataset, DataFrame, list of dicts) as a cached jsonl."""
    if isinstance(data, (str, os.PathLike)):
        return str(data)
    run_dir = getattr(data, "run_dir", None)
    if run_dir:  # a result of revgen.synthesize: its run folder (run.json tells curation how it was made)
        return str(run_dir)
    if hasattr(data, "to_dict") and hasattr(data, "columns"):  # pandas
        data = data.to_dict("records")
    try:
        lines = [json.dumps(dict(row), ensure_ascii=False, sort_keys=True, default=str) for row in data]
    except (TypeError, ValueError) as e:
        raise UserError(f"{what}: expected a path, a datasets.Dataset, a DataFrame or a list of dicts ({e})") from None
    if not lines:
        raise UserError(f"{what}: no rows given")
    body = "\n".join(lines) + "\n"
    from revgen.models import cache_dir

    path = cache_dir() / "rows" / f"{hashlib.sha256(body.encode()).hexdigest()[:20]}.jsonl"
    if not path.exists():  # same rows, same file, same mtime: a rerun resumes
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, body)
    return str(path)


def _dataset(rows: list[dict], stats: dict, run_dir: Path):
    from datasets import Dataset

    try:
        ds = Dataset.from_list(rows)
    except (TypeError, ValueError):  # values Arrow cannot type alike (pyarrow errors are ValueErrors): meta as JSON
        ds = Dataset.from_list([{**r, "meta": json.dumps(r.get("meta"), ensure_ascii=False)} for r in rows])
    ds.stats, ds.run_dir = stats, str(run_dir)
    return ds


def train_config(recipe=None, overrides: dict | None = None):
    """The TrainConfig that ``revgen train`` and :func:`train` build (the recipe's forward section for forward)."""
    from revgen.train.trainer import TrainConfig

    section = "forward" if (overrides or {}).get("task") == "forward" else "train"
    return cfgmod.load(TrainConfig, section, recipe, overrides)


def synth_config(recipe=None, overrides: dict | None = None):
    """The SynthConfig that ``revgen synthesize`` and :func:`synthesize` build: selection follows the
    recipe's curation, so it drops what that curation would, no more."""
    from revgen.synthesize.core import SynthConfig

    values = None
    if recipe:
        from revgen.synthesize.select import follow_curate

        sections = cfgmod.read_recipe(recipe)
        values = follow_curate(sections.get("synthesize") or {}, sections.get("curate"))
    return cfgmod.load(SynthConfig, "synthesize", recipe, overrides or {}, values)


def curate_config(recipe=None, overrides: dict | None = None):
    """The CurateConfig that ``revgen curate`` and :func:`curate` build."""
    from revgen.curate.curation import CurateConfig

    return cfgmod.load(CurateConfig, "curate", recipe, overrides or {})


def train(data=None, *, output_dir: str | None = None, recipe=None, **options) -> dict:
    """Fine-tune the backward model (response -> instruction), or with ``task="forward"`` a forward model.

    ``data``: Dolly-style rows (path, Dataset, DataFrame or list of dicts; default: the bundled Dolly
    sample). Returns the run's run.json dict (train_loss, steps, tokens_per_s, ...) with ``output_dir``."""
    from revgen.train.trainer import TrainConfig
    from revgen.train.trainer import train as _train

    if data is not None:
        options["data"] = _rows_path(data, "train data")
    if output_dir is not None:
        options["output_dir"] = str(output_dir)
    cfg = train_config(recipe, _options(TrainConfig, options, "train"))
    return {**_train(cfg), "output_dir": cfg.output_dir}


def synthesize(
    corpus=None,
    *,
    adapter: str | None = None,
    output_dir: str | None = None,
    recipe=None,
    dry_run: bool = False,
    probe: int = 64,
    **options,
):
    """Write instructions for the passages of ``corpus`` with a backward model from :func:`train`.

    ``corpus``: a file or folder (jsonl, json, txt, parquet, html, warc), a Hub id, or rows (Dataset,
    DataFrame, list of dicts with a ``text`` field). Returns the records as a ``datasets.Dataset``
    (``.stats``: run.json; ``.run_dir``). ``dry_run=True`` returns the estimate dict instead, generating
    for ``probe`` passages only."""
    from revgen.synthesize.core import SynthConfig
    from revgen.synthesize.run import dry_run as _estimate
    from revgen.synthesize.run import synthesize as _synthesize

    for key, value in (("corpus", corpus), ("adapter", adapter), ("output_dir", output_dir)):
        if value is not None:
            options[key] = _rows_path(value, "corpus") if key == "corpus" else str(value)
    cfg = synth_config(recipe, _options(SynthConfig, options, "synthesize"))
    if dry_run:
        return _estimate(cfg, probe)
    info = _synthesize(cfg)
    out = Path(cfg.output_dir)
    return _dataset(list(shards.iter_records(out)), info, out)


def curate(records=None, *, output_dir: str | None = None, recipe=None, **options):
    """Filter, deduplicate and select ``records`` (a synthesize run dir or result, a .jsonl, or rows) into
    a dataset. Returns the kept set as a ``datasets.Dataset`` in the chosen ``format`` (``.stats``:
    stats.json; ``.run_dir``: the folder with dataset.jsonl, rejected.jsonl and stats.json)."""
    from revgen.curate.curation import CurateConfig
    from revgen.curate.curation import curate as _curate

    if records is not None:
        options["input"] = _rows_path(records, "records")
    if output_dir is not None:
        options["output_dir"] = str(output_dir)
    cfg = curate_config(recipe, _options(CurateConfig, options, "curate"))
    stats = _curate(cfg)
    out = Path(cfg.output_dir)
    path = out / "dataset.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []
    return _dataset(rows, stats, out)


def run(recipe, *, start: str | None = None, until: str | None = None, dry_run: bool = False) -> dict:
    """Run (or resume) every stage of a pipeline recipe, as ``revgen run``: train, synthesize, curate,
    forward... Returns the summary: each stage's folder and whether it ran, was up to date or is planned."""
    from revgen.pipeline import run as _run

    return _run(recipe, start=start, until=until, dry_run=dry_run)


def push(
    dataset, repo_id: str, *, private: bool = False, license: str | None = None, language: list | None = None
) -> dict:
    """Upload a result of :func:`curate` or :func:`synthesize` (or its folder) and its dataset card to the
    Hub, data first, as ``revgen push``. The token comes from HF_TOKEN; HF_ENDPOINT picks another Hub."""
    from revgen.publish.hub import push as _push

    path = getattr(dataset, "run_dir", None) or str(dataset)
    return _push(path, repo_id, private=private, license=license, language=language)


def _option_lines(module: str, name: str, skip=()) -> str:
    """``key = default  # comment`` for each field of config class ``name``, read from its source (no import:
    ``import revgen`` stays light)."""
    src = (Path(__file__).parent / module).read_text(encoding="utf-8")
    lines = src.splitlines()
    raw = [line.encode() for line in lines]  # ast offsets count UTF-8 bytes
    cls = next(n for n in ast.parse(src).body if isinstance(n, ast.ClassDef) and n.name == name)
    out = []
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)) or node.target.id in skip:
            continue
        default = _segment(raw, node.value) if node.value is not None else "(required)"
        factory = re.fullmatch(r"field\(default_factory=(\w+)\)", default)
        default = f"{factory.group(1)}()" if factory else default
        rest = raw[node.end_lineno - 1][node.end_col_offset :].decode()
        comment = rest.split("#", 1)[1].replace("fmt: skip", "").strip() if "#" in rest else ""
        out.append(f"        {node.target.id} = {default}" + (f"  # {comment}" if comment else ""))
    return "\n".join(out)


def _segment(raw: list[bytes], node) -> str:
    """The source text of ``node`` (ast.get_source_segment re-splits the whole file on every call)."""
    first, last = node.lineno - 1, node.end_lineno - 1
    if first == last:
        return raw[first][node.col_offset : node.end_col_offset].decode()
    parts = [raw[first][node.col_offset :], *raw[first + 1 : last], raw[last][: node.end_col_offset]]
    return b"\n".join(parts).decode()


def _document() -> None:
    """Every option and its default appended to the docstrings, so ``help(revgen.synthesize)`` lists them."""
    for fn, module, name, skip in ((train, "train/trainer.py", "TrainConfig", ("data", "output_dir")),
                                   (synthesize, "synthesize/core.py", "SynthConfig", ("corpus", "adapter", "output_dir")),
                                   (curate, "curate/curation.py", "CurateConfig", ("input", "output_dir"))):  # fmt: skip
        fn.__doc__ += f"\n\n    Options (keyword = default):\n{_option_lines(module, name, skip)}\n"


_document()
