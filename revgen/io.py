"""JSONL reading with line numbers: the one place a malformed line becomes a clear error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from revgen.errors import UserError, where


def iter_jsonl(path: str | Path, errors: str = "raise") -> Iterator[tuple[int, object]]:
    """``(line number, parsed value)`` for every non-blank line.

    A malformed line raises ``UserError("file line N: malformed JSON (...)")``, or with
    ``errors="yield"`` is yielded as a ``ValueError`` so the caller can count and skip it.
    """
    path = Path(path)
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as exc:
                if errors != "yield":
                    raise UserError(f"{where(path, n)}: malformed JSON ({exc.msg})") from None
                yield n, ValueError(f"malformed JSON ({exc.msg})")
