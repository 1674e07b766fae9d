"""Task-type conditioning: the backward model names the task type before it writes the instruction.

A backward model trained with ``task_types: true`` learns completions ``[category] instruction``
(Dolly's category, e.g. ``[classification] Classify each of ...``). At synthesis it either names
the type itself (``task_mix: auto``: the type follows from the passage) or is handed one drawn,
per segment and seeded, from a target mix (``task_mix: seed`` for the seed data's own mix, or
``classification=0.3,open_qa=0.7``) and writes an instruction of that type. This is the lever
against a backward model that turns every passage into "What is X?" (Bonito conditions its
generator on the task type the same way). The types and their seed counts are saved beside the
adapter in ``task-types.json``.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from revgen.config import parse_weights
from revgen.errors import UserError
from revgen.io import read_counts, write_counts

FILE = "task-types.json"
_TAG = re.compile(r"^\s*\[([A-Za-z][\w\- ]{0,40})\]\s*")
_NAME = re.compile(r"^[A-Za-z][\w\-]{0,40}$")


def tag(task_type: str, instruction: str) -> str:
    """The completion a typed backward model learns: ``[type] instruction``."""
    return f"[{task_type}] {instruction}"


def prefix(task_type: str) -> str:
    """What a forced type appends to the prompt (no trailing space: the instruction's first token
    carries its own, exactly as in training)."""
    return f"[{task_type}]"


def split(text: str) -> tuple[str | None, str]:
    """``(type, instruction)`` of a typed completion; ``(None, text)`` when it names no type."""
    m = _TAG.match(text)
    return (m.group(1).strip(), text[m.end() :].strip()) if m else (None, text.strip())


def save(directory: str | Path, counts: dict) -> Path:
    return write_counts(Path(directory) / FILE, counts, format="[{type}] {instruction}")


def load(directory: str | Path) -> dict | None:
    """The seed counts per type of a typed backward model; None for an untyped one."""
    return read_counts(Path(directory) / FILE, "a task-types file")


def check_names(rows: list[dict], source: str, keep=lambda row: True) -> None:
    """Every training row (that ``keep`` keeps) needs a category usable as a type (one word, no
    brackets); the error names the row's position in ``source``, counting from 1."""
    for i, row in enumerate(rows, 1):
        if not keep(row):
            continue
        cat = str(row.get("category") or "").strip()
        if not _NAME.match(cat):
            raise UserError(f"{source}: row {i}: task_types needs a one-word `category` (letters, digits, _ or -), "
                            f"got {cat!r}")  # fmt: skip


def parse_mix(spec: str | dict | None, counts: dict | None, adapter: str) -> dict | None:
    """The target mix (type -> share, summing to 1), or None when the model names the type itself.

    ``spec``: None/``auto`` (the model chooses), ``seed`` (the adapter's seed mix), a dict or a string
    ``type=weight,type=weight``. Types must be ones the adapter was trained on."""
    if spec in (None, "auto"):
        return None
    if counts is None:
        raise UserError(
            f"task_mix {spec!r} needs a backward model trained with task_types: true; {adapter} has no {FILE}"
        )
    weights = (
        dict(counts) if spec == "seed" else parse_weights(spec, "task_mix", "auto, seed or TYPE=WEIGHT,TYPE=WEIGHT")
    )
    unknown = sorted(set(weights) - set(counts))
    if unknown:
        raise UserError(f"task_mix: {unknown} not among the adapter's task types {sorted(counts)}")
    total = sum(weights.values())
    return {k: w / total for k, w in sorted(weights.items()) if w > 0}


def draw(mix: dict, seed: int) -> str:
    """The type for one segment: a seeded draw from ``mix`` (same segment, same seed, same type)."""
    names = list(mix)
    return random.Random(seed).choices(names, weights=[mix[n] for n in names])[0]
