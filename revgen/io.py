"""JSON and JSONL reading with line numbers: the one place a malformed line becomes a clear error."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

from revgen.errors import UserError, where


def iter_jsonl(path: str | Path, errors: str = "raise") -> Iterator[tuple[int, object]]:
    """``(line number, parsed value)`` for every non-blank line.

    A malformed line raises ``UserError("file line N: malformed JSON (...)")``, or with
    ``errors="yield"`` is yielded as a ``ValueError`` so the caller can count and skip it.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder, expected a .jsonl file")
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                problem = f"not UTF-8 text (byte {exc.start}); is this a binary file?"
            else:
                if not line.strip():
                    continue
                try:
                    yield n, json.loads(line)
                    continue
                except json.JSONDecodeError as exc:
                    problem = f"malformed JSON ({exc.msg})"
            if errors != "yield":
                raise UserError(f"{where(path, n)}: {problem}")
            yield n, ValueError(problem)


def read_json(path: str | Path):
    """A whole .json file; malformed JSON names the line, non-UTF-8 bytes name the offset."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{where(path, exc.lineno)}: malformed JSON ({exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}); is this a binary file?") from None


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so a reader (or a rerun after a kill) never sees half of it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_counts(path: str | Path, counts: dict, **extra) -> Path:
    """A small ``{..., "counts": {name: n}}`` JSON file saved beside a model (task types, openers)."""
    path = Path(path)
    path.write_text(json.dumps({**extra, "counts": counts}, indent=2) + "\n", encoding="utf-8")
    return path


def read_counts(path: str | Path, what: str) -> dict | None:
    """``{name: n}`` from a file ``write_counts`` wrote; None when it is absent, one clear error when it is not one."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        counts = json.loads(path.read_text(encoding="utf-8"))["counts"]
        items = list(counts.items())
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{path}: not {what} written by `revgen train` ({exc})") from None
    for name, n in items:  # the counts become sampling weights: a bad one must not reach random.choices
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise UserError(f"{path}: counts[{name!r}] must be an integer >= 0, got {n!r}")
    if items and not any(n for _, n in items):
        raise UserError(f"{path}: every count is 0 (nothing to draw from)")
    return {str(k): v for k, v in items}
