"""Split documents into self-contained segments that fit the prompt budget.

A document that fits ``max_tokens`` is one segment. A longer one is packed greedily from its
paragraphs (blank-line separated); a paragraph that alone exceeds the budget is split at sentence
ends, and a sentence that still does is cut at a token boundary. Segments under ``min_words`` are
skipped and counted (Humpback trains on self-contained segments).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PARAGRAPH = re.compile(r"\n\s*\n")
SENTENCE = re.compile(r"(?<=[.!?。！？])\s+")


@dataclass
class SegmentStats:
    segments: int = 0
    split_documents: int = 0
    skipped_short: int = 0
    skipped_empty: int = 0


class Segmenter:
    def __init__(self, tokenizer, max_tokens: int = 768, min_words: int = 10):
        if max_tokens < 16:
            raise ValueError("max_tokens must be at least 16")
        self.tokenizer, self.max_tokens, self.min_words = tokenizer, max_tokens, min_words
        self.stats = SegmentStats()

    def _len(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def __call__(self, text: str) -> list[str]:
        text = text.strip()
        if not text:
            self.stats.skipped_empty += 1
            return []
        pieces = [text] if self._len(text) <= self.max_tokens else self._split(text)
        if len(pieces) > 1:
            self.stats.split_documents += 1
        out = []
        for piece in pieces:
            if len(piece.split()) < self.min_words:
                self.stats.skipped_short += 1
            else:
                out.append(piece)
        self.stats.segments += len(out)
        return out

    def _split(self, text: str) -> list[str]:
        units = []  # (text, separator before it, its token count)
        for para in PARAGRAPH.split(text):
            para = para.strip()
            if not para:
                continue
            n = self._len(para)
            if n <= self.max_tokens:
                units.append((para, "\n\n", n))
                continue
            for sent in SENTENCE.split(para):
                units.extend((piece, " ", self._len(piece)) for piece in self._hard_split(sent))
        return self._pack(units)

    def _hard_split(self, sentence: str) -> list[str]:
        if self._len(sentence) <= self.max_tokens:
            return [sentence]
        ids = self.tokenizer(sentence, add_special_tokens=False)["input_ids"]
        step = self.max_tokens - 8  # decode/re-encode at a seam may add a token or two
        return [self.tokenizer.decode(ids[i : i + step]).strip() for i in range(0, len(ids), step)]

    def _pack(self, units: list[tuple[str, str, int]]) -> list[str]:
        """Greedy packing on the units' own token counts (each unit tokenised once: linear in the
        document), one separator token allowed per seam; every packed segment is then tokenised once
        to confirm the budget, and one that merged across a seam past it is split in two."""
        groups, current, used = [], [], 0
        for unit in units:
            cost = unit[2] + (1 if current else 0)
            if current and used + cost > self.max_tokens:
                groups.append(current)
                current, cost = [], unit[2]
            current.append(unit)
            used = (used if len(current) > 1 else 0) + cost
        if current:
            groups.append(current)
        out = []
        while groups:
            group = groups.pop(0)
            text = group[0][0] + "".join(sep + u for u, sep, _ in group[1:])
            if len(group) > 1 and self._len(text) > self.max_tokens:
                half = len(group) // 2
                groups[:0] = [group[:half], group[half:]]
                continue
            out.append(text)
        return out
