"""Resumable, append-only output: ``shards/NNNNN.jsonl`` + ``NNNNN.dropped.jsonl`` + ``NNNNN.done``.

Each batch is appended and fsync'ed. A unit of work (one segment, all its candidates) is complete
when all of its lines are present in either file; on resume, a torn last line or a half-written
unit is cut away and redone, so a crash or Ctrl-C loses at most one batch and never duplicates.
A run holds an exclusive lock on the output directory so two runs never interleave.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections import Counter
from pathlib import Path

from revgen.errors import UserError

RECORD_GLOB = "[0-9]*[0-9].jsonl"  # record shards (not NNNNN.dropped.jsonl)


class DirLock:
    """Exclusive, non-blocking lock on ``directory/.lock``; released when the process dies."""

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / ".lock"
        self.fh = None

    def __enter__(self):
        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.close()
            raise UserError(f"{self.path.parent} is in use by another revgen run (lock {self.path})") from None
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(str(os.getpid()))
        self.fh.flush()
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def shard_paths(shard_dir: Path, index: int) -> tuple[Path, Path, Path]:
    stem = shard_dir / f"{index:05d}"
    return stem.with_suffix(".jsonl"), Path(f"{stem}.dropped.jsonl"), stem.with_suffix(".done")


def _read(path: Path) -> tuple[list[dict], bool]:
    """Parsed lines and whether the file ended cleanly (False: a torn tail from a crash, ignored)."""
    if not path.exists():
        return [], True
    rows = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.endswith("\n"):
                return rows, False
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                return rows, False
    return rows, True


def _read_lines(path: Path) -> list[dict]:
    return _read(path)[0]


def recover(shard_dir: Path, index: int, unit_key, per_unit: int) -> set:
    """Units already complete in shard ``index``; rewrites its files without partial units."""
    kept, dropped, _ = shard_paths(shard_dir, index)
    read = {p: _read(p) for p in (kept, dropped)}
    counts = Counter(unit_key(r) for lines, _ in read.values() for r in lines)
    complete = {u for u, c in counts.items() if c >= per_unit}
    for path, (lines, clean) in read.items():
        good = [r for r in lines if unit_key(r) in complete]
        if len(good) != len(lines) or not clean:
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(dumps(r) for r in good), encoding="utf-8")
            os.replace(tmp, path)
    return complete


def dumps(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False) + "\n"


def append(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    with path.open("a", encoding="utf-8") as fh:
        fh.write("".join(dumps(r) for r in rows))
        fh.flush()
        os.fsync(fh.fileno())


def mark_done(shard_dir: Path, index: int) -> None:
    shard_paths(shard_dir, index)[2].write_text("")


def is_done(shard_dir: Path, index: int) -> bool:
    return shard_paths(shard_dir, index)[2].exists()


def iter_records(directory: str | Path, dropped: bool = False, problems: dict | None = None):
    """Every record (or dropped line) of a run directory, in shard order.

    With ``problems``, unreadable lines are skipped and counted there (``bad_line`` in the middle of a
    shard, ``torn_tail`` for an unfinished last line) instead of ending the shard's records."""
    shard_dir = Path(directory) / "shards" if (Path(directory) / "shards").is_dir() else Path(directory)
    pattern = "*.dropped.jsonl" if dropped else RECORD_GLOB
    for path in sorted(shard_dir.glob(pattern)):
        yield from iter_file(path, problems)


def iter_file(path: Path, problems: dict | None = None):
    """One shard's records; with ``problems``, unreadable lines are counted there and skipped."""
    if problems is None:
        yield from _read_lines(path)
        return
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            try:
                yield json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                kind = "bad_line" if raw.endswith(b"\n") else "torn_tail"
                problems[kind] = problems.get(kind, 0) + 1
                examples = problems.setdefault("examples", [])
                if len(examples) < 5:
                    examples.append(f"{path.name} line {n} ({kind})")
