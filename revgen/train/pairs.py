"""Turn instruction/response rows into reverse (response -> instruction) training pairs.

Nothing is cut or dropped silently: :class:`PairStats` counts every row that was filtered by
category or context, truncated or dropped for length, and ``revgen train`` reports it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from revgen.errors import UserError
from revgen.prompts import Template

CONTEXT_MODES = ("ignore", "append", "drop")
OVERLONG_MODES = ("truncate", "drop")
MIN_TEXT_TOKENS = 16  # a truncated input shorter than this is dropped instead


@dataclass
class PairStats:
    rows: int = 0
    kept: int = 0
    dropped_category: int = 0
    dropped_context: int = 0
    dropped_empty: int = 0
    truncated: int = 0
    dropped_overlong: int = 0
    categories: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def source_text(row: dict, context: str) -> str:
    """The text the backward model reads: the response, plus Dolly's context if asked."""
    if context == "append" and row["context"].strip():
        return f"{row['response']}\n\n{row['context']}"
    return row["response"]


def build_pairs(
    rows: list[dict],
    template: Template,
    tokenizer=None,
    *,
    context: str = "ignore",
    categories: list[str] | None = None,
    max_length: int | None = None,
    overlong: str = "truncate",
) -> tuple[list[dict], PairStats]:
    """Reverse pairs ``{"prompt", "completion", "text", "category"}`` and counts of what happened.

    ``max_length`` counts tokens of prompt + completion + EOS, as trl will see them. Over-long rows
    have their *input* text cut (the instruction, the training target, is kept whole) or are dropped.
    """
    if context not in CONTEXT_MODES:
        raise UserError(f"context must be one of {CONTEXT_MODES}, got {context!r}")
    if overlong not in OVERLONG_MODES:
        raise UserError(f"overlong must be one of {OVERLONG_MODES}, got {overlong!r}")
    if max_length is not None and tokenizer is None:
        raise ValueError("max_length needs a tokenizer")
    wanted = set(categories) if categories else None
    stats, out = PairStats(rows=len(rows)), []
    for row in rows:
        if wanted is not None and row["category"] not in wanted:
            stats.dropped_category += 1
            continue
        if context == "drop" and row["context"].strip():
            stats.dropped_context += 1
            continue
        text, instruction = source_text(row, context).strip(), row["instruction"].strip()
        if not text or not instruction:
            stats.dropped_empty += 1
            continue
        if max_length is not None:
            text = _fit(text, instruction, template, tokenizer, max_length, overlong, stats)
            if text is None:
                continue
        pair = template.pair(text, instruction)
        pair.update(text=text, category=row["category"])
        out.append(pair)
        stats.categories[row["category"]] = stats.categories.get(row["category"], 0) + 1
    stats.kept = len(out)
    return out, stats


def _n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text)["input_ids"])


def _fit(text, instruction, template, tokenizer, max_length, overlong, stats):
    full = _n_tokens(tokenizer, template.render(text, instruction)) + 1  # + EOS
    if full <= max_length:
        return text
    if overlong == "drop":
        stats.dropped_overlong += 1
        return None
    text_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    budget = len(text_ids) - (full - max_length)
    while budget >= MIN_TEXT_TOKENS:
        cut = tokenizer.decode(text_ids[:budget]).rstrip()
        if _n_tokens(tokenizer, template.render(cut, instruction)) + 1 <= max_length:
            stats.truncated += 1
            return cut
        budget -= 8  # re-tokenizing at the seam can add a token or two
    stats.dropped_overlong += 1
    return None
