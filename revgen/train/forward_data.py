"""Forward (instruction -> response) training data: any revgen dataset format, Dolly, or a mix.

A source is a ``.jsonl``/``.json``/``.parquet`` file, a ``revgen curate`` output dir (its
``dataset.jsonl``), ``dolly-sample`` or a Hub id. Each row may be Alpaca (``instruction``,
``input``, ``output``), Dolly (``instruction``, ``context``, ``response``), prompt-completion,
``messages`` or ShareGPT ``conversations``: everything ``revgen curate`` writes. A row in none of
these shapes is one error naming the file and line. Sources can be capped one by one
(``{"source": ..., "max_rows": N}`` in a recipe, ``--data PATH --data-cap N`` on the CLI).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from revgen.dolly import BUNDLED, _read_hub, _read_json, _read_parquet, bundled_sample_path
from revgen.errors import UserError, where
from revgen.io import iter_jsonl

SHAPES = "instruction+output (alpaca), instruction+response (dolly), prompt+completion, messages or conversations"


# Humpback's system prompts (Li et al. 2023, "Self-Alignment with Instruction Backtranslation"):
# seed pairs and augmented pairs are told apart in training, and the seed's is used at inference.
NAMED_TAGS = {"seed": "Answer in the style of an AI Assistant.", "augmented": "Answer with knowledge from web search."}


def tag_text(tag: str) -> str:
    """``seed`` / ``augmented`` -> Humpback's tag; any other string is the tag itself."""
    return NAMED_TAGS.get(tag, tag).strip()


def sources(data) -> list[tuple[str, int | None, str]]:
    """``data`` (a string, or a list of strings / ``{source, max_rows, tag}``) -> ``[(source, cap, tag)]``.

    ``tag`` is the system-prompt tag of that source's rows (``seed`` and ``augmented`` name
    Humpback's two; any other string is the tag itself); "" when untagged.
    """
    items = data if isinstance(data, list) else [data]
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str) and item:
            out.append((item, None, ""))
        elif (
            isinstance(item, dict)
            and isinstance(item.get("source"), str)
            and set(item) <= {"source", "max_rows", "tag"}
        ):
            cap, tag = item.get("max_rows"), item.get("tag")
            if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
                raise UserError(f"data[{i}].max_rows must be a positive integer or null, got {cap!r}")
            if tag is not None and (not isinstance(tag, str) or not tag.strip()):
                raise UserError(f"data[{i}].tag must be seed, augmented or the tag's own text, got {tag!r}")
            out.append((item["source"], cap, tag_text(tag) if tag else ""))
        else:
            raise UserError(f"data[{i}] must be a path / Hub id or a mapping {{source, max_rows, tag}}, got {item!r}")
    if not out:
        raise UserError("data: no source given")
    return out


def _rows(source: str):
    path = bundled_sample_path() if source == BUNDLED else Path(source)
    if path.is_dir() and (path / "dataset.jsonl").is_file():
        path = path / "dataset.jsonl"
    if path.is_file():
        readers = {".jsonl": iter_jsonl, ".json": _read_json, ".parquet": _read_parquet}
        if path.suffix.lower() not in readers:
            raise UserError(f"{path}: unsupported file type {path.suffix!r}; expected .jsonl, .json or .parquet")
        return path, readers[path.suffix.lower()](path)
    if path.exists() or source.count("/") != 1 or source.startswith((".", "/", "~")):
        raise UserError(f"data {source!r} is not a data file, a `revgen curate` output dir or a Hub dataset id")
    return source, _read_hub(source, "train")


def _turns(turns, role_key: str, text_key: str, user: str, assistant: str):
    if not isinstance(turns, list) or len(turns) < 2 or not all(isinstance(t, dict) for t in turns):
        return None
    first, second = turns[0], turns[1]
    if first.get(role_key) != user or second.get(role_key) != assistant:
        return None
    if not isinstance(first.get(text_key), str) or not isinstance(second.get(text_key), str):
        return None
    return first[text_key], "", second[text_key]


def normalize(row) -> tuple[str, str, str] | None:
    """``(instruction, input, output)`` from any supported row shape, or None."""
    if not isinstance(row, dict):
        return None

    def s(key):
        v = row.get(key)
        return v if isinstance(v, str) else ("" if v is None else None)

    if isinstance(row.get("instruction"), str):
        out = s("output") if "output" in row else s("response") if "response" in row else None
        extra = s("input") if "input" in row else s("context")
        if out is not None and extra is not None:
            return row["instruction"], extra, out
        return None
    if isinstance(row.get("prompt"), str) and isinstance(row.get("completion"), str):
        return row["prompt"], "", row["completion"]
    if "messages" in row:
        return _turns(row["messages"], "role", "content", "user", "assistant")
    if "conversations" in row:
        return _turns(row["conversations"], "from", "value", "human", "gpt")
    return None


@dataclass
class ForwardStats:
    rows: int = 0
    kept: int = 0
    dropped_empty: int = 0
    dropped_context: int = 0
    per_source: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def load_forward_rows(data, context: str = "append") -> tuple[list[dict], ForwardStats]:
    """Rows ``{instruction, input, output, category, source, tag}`` from every source, each capped.

    ``context``: ``append`` keeps an input/context as the Alpaca input, ``ignore`` drops the input
    and keeps the row, ``drop`` drops rows that have one.
    """
    stats, out = ForwardStats(), []
    for source, cap, tag in sources(data):
        src, rows = _rows(source)
        taken = 0
        for line, row in rows:
            if cap is not None and taken >= cap:
                break
            triple = normalize(row)
            if triple is None:
                keys = sorted(row)[:8] if isinstance(row, dict) else type(row).__name__
                raise UserError(f"{where(src, line)}: expected {SHAPES}; got {keys}")
            instruction, extra, output = (t.strip() for t in triple)
            stats.rows += 1
            if not instruction or not output:
                stats.dropped_empty += 1
                continue
            if extra and context == "drop":
                stats.dropped_context += 1
                continue
            category = row.get("category") if isinstance(row.get("category"), str) else ""
            out.append({"instruction": instruction, "input": extra if context == "append" else "", "output": output,
                        "category": category, "source": str(source), "tag": tag})  # fmt: skip
            taken += 1
        if taken == 0 and stats.rows == 0:
            raise UserError(f"{src}: no rows")
        stats.per_source[str(source)] = taken
    stats.kept = len(out)
    return out, stats


def build_forward_pairs(rows: list[dict], template, tokenizer, max_length: int | None, overlong: str = "truncate"):
    """trl prompt-completion pairs; over-long pairs are counted (``truncate``: trl cuts the end) or dropped."""
    pairs, truncated, dropped = [], 0, 0
    for row in rows:
        pair = template.pair(row["instruction"], row["input"], row["output"], tokenizer, row.get("tag", ""))
        if max_length is not None and len(tokenizer(pair["prompt"] + pair["completion"])["input_ids"]) + 1 > max_length:
            if overlong == "drop":
                dropped += 1
                continue
            truncated += 1
        pair.update(category=row["category"], row=row)
        pairs.append(pair)
    return pairs, {"truncated": truncated, "dropped_overlong": dropped}
