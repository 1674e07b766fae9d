"""``revgen report DIR``: one self-contained ``report.html`` of a curated dataset, with its plots.

The curation funnel (records in -> each filter -> kept), instruction and output lengths (kept vs
dropped), the instruction mix (questions vs requests, leading words: Self-Instruct's verb picture),
every curation score's distribution, and random kept and dropped examples side by side with each
drop's reason. Plots are matplotlib PNGs written beside the page (``report/``) and inlined into it,
so the page opens with no network and no other file.
"""

from __future__ import annotations

import base64
import html
import random
from collections import Counter
from pathlib import Path

from revgen.errors import UserError
from revgen.evaluate.mix import kind, leading_word

REPORT_FILE = "report.html"
PLOTS_DIR = "report"


def _rows(path: Path) -> list[dict]:
    """Every readable object of a JSONL file (unreadable lines are curate's to count, not the report's)."""
    from revgen.io import iter_jsonl

    if not path.is_file():
        return []
    return [r for _, r in iter_jsonl(path, errors="yield") if isinstance(r, dict)]


def _fields(row: dict) -> tuple[str, str]:
    from revgen.train.forward_data import normalize

    triple = normalize(row)
    return (triple[0], triple[2]) if triple else ("", "")


def funnel(counts: dict) -> list[tuple[str, int]]:
    """(step, records left after it): total, then each filter's drops in the order they happen."""
    steps, left = [("records in", counts.get("total", 0))], counts.get("total", 0)
    by_filter: dict = {}
    for key, n in counts.items():
        if key.startswith("dropped/"):
            name = key.split("/")[1]
            by_filter[name] = by_filter.get(name, 0) + n
    for name, n in by_filter.items():
        left -= n
        steps.append((f"after {name} (-{n})", left))
    steps.append(("kept", counts.get("kept", left)))
    return steps


def _plots(stats: dict, kept: list[dict], dropped: list[dict], out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    files = {}
    steps = funnel(stats.get("counts", {}))
    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.45 * len(steps)))
    ax.barh([s for s, _ in steps][::-1], [n for _, n in steps][::-1], color="#4c72b0")
    for i, (_, n) in enumerate(steps[::-1]):
        ax.text(n, i, f" {n}", va="center")
    ax.set_xlabel("records")
    ax.set_title("Curation funnel")
    files["funnel"] = _save(fig, out / "funnel.png")

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, which in zip(axes, ("instruction", "output")):
        k = [len(_fields(r)[0 if which == "instruction" else 1].split()) for r in kept]
        d = [len(str(r.get(which, "")).split()) for r in dropped]
        ax.hist([k, d], bins=20, label=["kept", "dropped"], color=["#55a868", "#c44e52"])
        ax.set_title(f"{which} length (words)")
        ax.legend()
    files["lengths"] = _save(fig, out / "lengths.png")

    instructions = [_fields(r)[0] for r in kept]
    words = Counter(leading_word(i) for i in instructions).most_common(15)
    kinds = Counter(kind(i) for i in instructions)
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar([w or "(empty)" for w, _ in words], [n / max(len(instructions), 1) for _, n in words], color="#8172b2")
    ax.set_ylabel("share of kept instructions")
    ax.set_title(f"Leading words ({kinds.get('question', 0)} questions, {kinds.get('request', 0)} requests)")
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right")
    files["mix"] = _save(fig, out / "mix.png")

    scores = {}
    for r in kept + dropped:
        for name, v in ((r.get("meta") or {}).get("scores") or (r.get("scores") or {})).items():
            scores.setdefault(name, []).append(v)
    if scores:
        fig, axes = plt.subplots(1, len(scores), figsize=(4 * len(scores), 3.2), squeeze=False)
        for ax, (name, vals) in zip(axes[0], sorted(scores.items())):
            ax.hist(vals, bins=20, color="#dd8452")
            ax.set_title(f"score: {name}")
        files["scores"] = _save(fig, out / "scores.png")
    return files


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _examples(kept: list[dict], dropped: list[dict], n: int = 6, seed: int = 0) -> str:
    rng = random.Random(seed)
    rows = [("kept", "", *_fields(r)) for r in rng.sample(kept, min(n, len(kept)))]
    rows += [
        ("dropped", d.get("reason") or "", str(d.get("instruction", "")), str(d.get("output", "")))
        for d in rng.sample(dropped, min(n, len(dropped)))
    ]
    cells = "".join(f"<tr class='{s}'><td>{s}</td><td>{html.escape(why)}</td><td>{html.escape(i[:300])}</td>"
                    f"<td>{html.escape(o[:400])}</td></tr>" for s, why, i, o in rows)  # fmt: skip
    return f"<table><tr><th></th><th>reason</th><th>instruction</th><th>output</th></tr>{cells}</table>"


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}table{border-collapse:collapse;width:100%;font-size:.9em}
td,th{border:1px solid #ddd;padding:.3em .5em;vertical-align:top;text-align:left}tr.dropped td:first-child{color:#c44e52}
tr.kept td:first-child{color:#55a868}"""


def write_eval(path: Path) -> Path:
    """report.html for a ``revgen eval`` dir: per-category bars with bootstrap 95% intervals per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from revgen.stats import mean_ci

    info = _record(path / "eval.json")
    rows = _rows(path / "examples.jsonl")
    metric = "nll" if info.get("task") == "forward" else "rouge_l"
    systems = sorted({r["system"] for r in rows})
    cats = sorted({r.get("category") or "(none)" for r in rows})
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(cats) * len(systems)), 4))
    width = 0.8 / max(len(systems), 1)
    for k, system in enumerate(systems):
        cis = [mean_ci([r[metric] for r in rows if r["system"] == system and (r.get("category") or "(none)") == c
                        and metric in r]) for c in cats]  # fmt: skip
        means = [c["mean"] or 0 for c in cis]
        err = [[m - (c["ci95"][0] if c["ci95"][0] is not None else m) for m, c in zip(means, cis)],
               [(c["ci95"][1] if c["ci95"][1] is not None else m) - m for m, c in zip(means, cis)]]  # fmt: skip
        ax.bar([i + k * width for i in range(len(cats))], means, width, yerr=err, capsize=3, label=system)
    ax.set_xticks([i + width * (len(systems) - 1) / 2 for i in range(len(cats))], cats, rotation=30, ha="right")
    ax.set_ylabel(f"{metric} (mean, 95% interval)")
    ax.set_title(f"{metric} per category")
    ax.legend()
    (path / PLOTS_DIR).mkdir(exist_ok=True)
    png = _save(fig, path / PLOTS_DIR / "categories.png")
    table = html.escape((path / "eval.md").read_text()) if (path / "eval.md").is_file() else ""
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>revgen eval: {html.escape(path.name)}</title>"
            f"<style>{STYLE}</style></head><body><h1>revgen eval report: {html.escape(path.name)}</h1>"
            f"<p>{info.get('rows')} held-out pairs.</p><h2>Per category</h2>{_img(png, 'per-category bars')}"
            f"<h2>Overall</h2><pre>{table}</pre></body></html>")  # fmt: skip
    out = path / REPORT_FILE
    out.write_text(page, encoding="utf-8")
    return out


def _record(file: Path, key: str | None = None) -> dict:
    """A run record revgen wrote, checked for the shape the report reads: one clear error if it is
    truncated, hand-edited or from something else."""
    from revgen.io import read_json

    info = read_json(file)
    counts = (info.get(key) if key else info) if isinstance(info, dict) else None
    if not isinstance(counts, dict) or (
        key == "counts" and not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in counts.values())
    ):
        raise UserError(
            f"{file}: not a revgen {file.stem} record (expected a mapping"
            + (f" {key!r} of numbers" if key else "")
            + "); rerun the command that writes it"
        )
    return info


SYNTH_STEPS = ("documents", "extracted", "segments", "selected", "records")


def _synthesis_funnel(stats: dict) -> list[str]:
    """The synthesize run's funnel, documents to records, with what each step left out and why."""
    counts = (stats.get("source_run") or {}).get("counts") or {}
    if not isinstance(counts, dict) or "documents" not in counts:
        return []
    rows = [(k, v) for k, v in counts.items() if isinstance(v, int) and v and (
        k in SYNTH_STEPS or k.startswith(("extract/", "boilerplate/", "select/", "skipped_", "dropped/")))]  # fmt: skip
    table = "".join(f"<tr><td>{'<b>' + html.escape(k) + '</b>' if k in SYNTH_STEPS else html.escape(k)}</td><td>{v}</td></tr>"
                    for k, v in rows)  # fmt: skip
    return ["<h2>From documents to records (synthesize)</h2>",
            "<p>Boilerplate counts are lines removed; select/ and skipped_ counts are passages left out before "
            "generation (segments.dropped.jsonl in the run); dropped/ are generations cut or empty.</p>",
            f"<table><tr><th>step</th><th>count</th></tr>{table}</table>"]  # fmt: skip


def write(path: str | Path) -> Path:
    """Write ``path/report.html`` (and the PNGs under ``path/report/``) for a ``revgen curate`` dir
    (or a ``revgen eval`` dir: per-category bars with intervals)."""
    path = Path(path)
    stats_file = path / "stats.json"
    if not stats_file.is_file() and (path / "eval.json").is_file():
        return write_eval(path)
    if not stats_file.is_file():
        raise UserError(f"{path} has no stats.json or eval.json (expected a `revgen curate` or `revgen eval` dir)")
    stats = _record(stats_file, "counts")
    kept, rejected = _rows(path / "dataset.jsonl"), _rows(path / "rejected.jsonl")
    dropped = [{**(d.get("record") or {}), "reason": d.get("reason"), "scores": d.get("scores")} for d in rejected]
    plots = _plots(stats, kept, dropped, path / PLOTS_DIR)
    counts = stats.get("counts", {})
    total = counts.get("total", 0) or 1
    table = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v}</td><td>{100 * v / total:.1f}%</td></tr>" for k, v in counts.items()
    )
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>revgen report: {html.escape(path.name)}</title>",
             f"<style>{STYLE}</style></head><body><h1>revgen dataset report: {html.escape(path.name)}</h1>",
             f"<p>{counts.get('kept', 0)} of {counts.get('total', 0)} records kept "
             f"({html.escape(stats.get('config', {}).get('format', ''))} format).</p>",
             "<h2>Curation funnel</h2>", _img(plots["funnel"], "curation funnel"),
             f"<table><tr><th>step</th><th>records</th><th>share</th></tr>{table}</table>",
             "<h2>Lengths</h2>", _img(plots["lengths"], "instruction and output lengths"),
             "<h2>Instruction mix</h2>", _img(plots["mix"], "leading words of kept instructions")]  # fmt: skip
    if "scores" in plots:
        parts += ["<h2>Curation scores</h2>", _img(plots["scores"], "score distributions")]
    parts += _synthesis_funnel(stats)
    parts += ["<h2>Examples, kept and dropped</h2>", _examples(kept, dropped), "</body></html>"]
    out = path / REPORT_FILE
    out.write_text("\n".join(parts), encoding="utf-8")
    return out
