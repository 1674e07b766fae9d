"""What every bench script shares: the repo on sys.path, a parser, timing, RESULT lines, JSON and tables.

    from harness import ROOT, emit, markdown_table, parser, timed, write_json

Each script stays one question; this module is only the plumbing they would otherwise repeat.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
for p in (str(ROOT), str(BENCH)):
    if p not in sys.path:
        sys.path.insert(0, p)


def parser(doc: str | None, *, threads: bool = False, output: str | None = None) -> argparse.ArgumentParser:
    """An ArgumentParser described by the script's first doc line; ``--threads`` (torch CPU threads)
    and ``--output`` (the JSON report) when asked for, so every script spells them the same."""
    ap = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    if threads:
        ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default $REVGEN_THREADS)")
    if output is not None:
        ap.add_argument("--output", default=output, help="where the JSON report goes")
    return ap


class Timer:
    """Wall-clock seconds of a ``with timed() as t:`` block (``t.s``), with CUDA synchronised when asked."""

    def __init__(self, cuda: bool = False):
        self.cuda, self.s = cuda, 0.0

    def sync(self):
        if self.cuda:
            import torch

            torch.cuda.synchronize()


@contextmanager
def timed(cuda: bool = False):
    t = Timer(cuda)
    t.sync()
    start = time.perf_counter()
    try:
        yield t
    finally:
        t.sync()
        t.s = time.perf_counter() - start


def emit(row: dict) -> None:
    """One result as a ``RESULT {json}`` line on stdout (parents of subprocess benches parse these)."""
    print("RESULT " + json.dumps(row), flush=True)


def parse_results(text: str) -> list[dict]:
    """The ``RESULT`` lines a child process printed."""
    return [json.loads(line[len("RESULT ") :]) for line in text.splitlines() if line.startswith("RESULT ")]


def write_json(path: str | Path, obj) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    return path


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """A GitHub markdown table (cells formatted by the caller)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
