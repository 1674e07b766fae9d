"""Selection before generation: curation's output-only checks run on passages, before any prompt.

Every check that ``revgen curate`` makes on a record's output alone (Gopher quality, the output's
language, exact and near duplicates of the output) would drop a record whatever instruction it got,
so it runs here on the segment instead: the same classes (revgen/curate/filters/output.py,
revgen/curate/dedup.py) with the same defaults, in corpus order, so a kept passage passes them again
in curation and no generation is spent on a passage curation would throw away. Together with the
line pass (boilerplate.py) and the segmenter's block labels this is the funnel from documents to
prompts; every passage left out is written with its reason to ``segments.dropped.jsonl``.
"""

from __future__ import annotations

import json
import typing
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from revgen.curate.dedup import ExactDedup, NearDedup
from revgen.curate.filters.base import FilterRunner
from revgen.curate.filters.output import GopherSettings, LanguageSettings, output_filters

DROPPED = "segments.dropped.jsonl"


@dataclass
class SelectSettings:
    enabled: bool = True  # off: every segment is generated for (the old behaviour; `--select off`)
    boilerplate: bool = True  # remove navigation, TOC, link lists and repeated page lines (boilerplate.py)
    keep_blocks: list = field(default_factory=list)  # segments mostly of these labels are kept: table, code, toc
    gopher: GopherSettings = field(default_factory=GopherSettings)  # curate's defaults (curate.gopher)
    language: LanguageSettings = field(default_factory=LanguageSettings)  # curate's `allowed` check on passages
    dedup: bool = True  # exact and near duplicate passages (curate's ExactDedup / NearDedup on the output)
    near_threshold: float | None = 0.72  # MinHash 14 x 8 bands of 5-grams, as curate.dedup
    preset: str | None = None

    # `clean`: text that is already clean prose (Dolly contexts, docstrings): no line pass;
    # `short-answers`: keep passages of 3+ words, as curate's preset of that name; `keep-tables`: a
    # table or listing is a passage too (for corpora of reference tables); `off`: no selection.
    PRESETS: typing.ClassVar[dict] = {
        "off": {"enabled": False},
        "clean": {"boilerplate": False},
        "short-answers": {"gopher": {"min_words": 3, "min_stop_words": None, "max_top_2gram_ratio": None}},
        "keep-tables": {"keep_blocks": ["table", "code"]},
    }


class Selector:
    """``selector(unit, doc, text) -> bool`` (kept?); what it drops, and what the segmenter skipped
    (``skipped``), goes to the sink file with its reason when one is given."""

    def __init__(self, settings: SelectSettings, sink: Path | None = None):
        chain = output_filters(settings.gopher, settings.language)
        if settings.dedup:
            chain += [ExactDedup(fields=("output",)), NearDedup("output", threshold=settings.near_threshold)]
        self.runner = FilterRunner(chain)
        self.counts: Counter = Counter()
        self._sink = sink.open("w", encoding="utf-8") if sink is not None else None

    def __call__(self, unit: str, doc, text: str) -> bool:
        verdict = self.runner.check({"id": unit, "instruction": "", "output": text, "meta": {"segment_id": unit}})
        if verdict is None:
            self.counts["selected"] += 1
            return True
        reason, detail = verdict
        self.counts[f"select/{reason}"] += 1
        self._write({"segment_id": unit, "doc_id": doc.id, "source": doc.source, "reason": reason, **detail,
                     "text": text})  # fmt: skip
        return False

    def skipped(self, doc, pieces: list[tuple[str, str]]) -> None:
        for reason, text in pieces:
            self._write({"doc_id": doc.id, "source": doc.source, "reason": f"segment/{reason}", "text": text})

    def _write(self, row: dict) -> None:
        if self._sink is not None:
            self._sink.write(json.dumps(row, ensure_ascii=False) + "\n")

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()

    def settings(self) -> list[dict]:
        return self.runner.settings()


def follow_curate(synth: dict, curate: dict | None) -> dict:
    """A recipe's synthesize values with ``select.gopher``/``select.language`` taken from its curate
    section (and curate's preset) where the recipe does not set them: selection then drops exactly
    what that curation would, no more (a `short-answers` curation keeps short passages to curate)."""
    if not curate:
        return synth
    from revgen.config import merge
    from revgen.curate.curation import CurateConfig

    resolved = merge(CurateConfig.PRESETS.get(curate.get("preset") or "", {}), curate)
    select = synth.get("select", {})
    if not isinstance(select, dict):
        return synth  # `select: null` (off) or a bad value the config check reports
    select = dict(select)
    for key in ("gopher", "language"):
        if key in resolved and key not in select:
            select[key] = resolved[key] if resolved[key] is not None else {"enabled": False}
    return {**synth, "select": select} if select else synth
