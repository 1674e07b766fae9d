"""Progress on stderr: documents read (with ETA when the corpus size is known), records/s, tokens/s."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tqdm.auto import tqdm  # a widget in a notebook, a bar in a terminal


def estimate_documents(source: str) -> int | None:
    """Documents in a local corpus, cheaply (line counts, parquet metadata); None if unknown."""
    path = Path(source)
    if not path.exists():
        return None
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    total = 0
    for f in files:
        suffix = f.suffix.lower()
        if suffix == ".jsonl":
            with f.open("rb") as fh:
                total += sum(1 for line in fh if line.strip())
        elif suffix == ".parquet":
            import pyarrow.parquet as pq

            try:
                total += pq.ParquetFile(f).metadata.num_rows
            except Exception:  # not parquet: the reader reports it with the file's name
                return None
        elif suffix in (".txt", ".json"):
            return None  # paragraphs / lists: unknown without parsing
    return total


class Progress:
    def __init__(self, source: str, disable: bool | None = None):
        self.bar = tqdm(total=estimate_documents(source), unit="doc", file=sys.stderr, dynamic_ncols=True,
                        disable=disable, desc="synthesize")  # fmt: skip
        self.start = time.time()
        self.records = self.tokens = self.skipped = 0

    def document(self) -> None:
        self.bar.update(1)

    def skip(self, n: int) -> None:
        self.skipped += n

    def update(self, records: int, tokens: int) -> None:
        self.records += records
        self.tokens += tokens
        dt = max(time.time() - self.start, 1e-9)
        self.bar.set_postfix(records=self.records, rec_s=f"{self.records / dt:.2f}", tok_s=f"{self.tokens / dt:.1f}",
                             resumed=self.skipped, refresh=False)  # fmt: skip

    def close(self) -> None:
        self.bar.close()
