"""Filter contract and runner (datatrove's BaseFilter): every drop is counted with its reason.

A filter is a callable ``(record) -> bool | (bool, reason) | (bool, reason, detail)`` with a
``name`` (``detail`` is a dict kept with the dropped record, e.g. which record it duplicates). Thresholds are
keyword arguments; ``None`` turns that check off. The runner applies filters in order, counts
``total``, ``kept`` and ``dropped/<filter>/<reason>``, and hands dropped records to a sink with
their reason, so ``total == kept + sum(drops)`` always holds.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Iterable, Iterator


class Filter:
    name = "filter"

    def __call__(self, record: dict) -> bool | tuple[bool, str]:
        raise NotImplementedError

    def settings(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


class FilterRunner:
    def __init__(self, filters: Iterable[Callable], on_drop: Callable[[dict, str, dict], None] | None = None):
        self.filters = list(filters)
        self.on_drop = on_drop
        self.counts: Counter = Counter()

    def check(self, record: dict) -> tuple[str, dict] | None:
        """``(filter/reason, detail)`` for the first filter that drops the record, else None."""
        for f in self.filters:
            verdict = f(record)
            verdict = tuple(verdict) if isinstance(verdict, tuple) else (verdict,)
            keep, reason, detail = verdict + ("", {})[len(verdict) - 1 :]
            if not keep:
                name = getattr(f, "name", type(f).__name__)
                return (f"{name}/{reason}" if reason else name), detail
        return None

    def run(self, records: Iterable[dict]) -> Iterator[dict]:
        for record in records:
            self.counts["total"] += 1
            verdict = self.check(record)
            if verdict is None:
                self.counts["kept"] += 1
                yield record
            else:
                reason, detail = verdict
                self.counts[f"dropped/{reason}"] += 1
                if self.on_drop:
                    self.on_drop(record, reason, detail)

    def settings(self) -> list[dict]:
        return [{"name": getattr(f, "name", type(f).__name__), **(f.settings() if hasattr(f, "settings") else {})}
                for f in self.filters]  # fmt: skip
