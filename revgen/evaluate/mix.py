"""The mix of instruction kinds: questions vs requests, leading words, and how far two mixes differ.

A backward model that turns every passage into "What is X?" makes less useful data than one that
also asks to list, classify, write or compare; these numbers make that visible. The distance
between two mixes is total variation, 0 (same) to 1 (disjoint).
"""

from __future__ import annotations

import re
from collections import Counter

QUESTION_START = {"what", "who", "whom", "whose", "where", "when", "why", "how", "which", "is", "are", "was", "were",
                  "do", "does", "did", "can", "could", "should", "would", "will", "has", "have", "am", "may"}  # fmt: skip
_WORD = re.compile(r"[a-z']+")


def kind(instruction: str) -> str:
    """``question`` (ends in '?' or opens with a question word) or ``request``."""
    text = instruction.strip().lower()
    first = _WORD.findall(text)[:1]
    return "question" if text.endswith("?") or (first and first[0] in QUESTION_START) else "request"


def leading_word(instruction: str) -> str:
    found = _WORD.findall(instruction.lower())
    return found[0] if found else ""


def distribution(values) -> dict:
    counts = Counter(values)
    total = sum(counts.values()) or 1
    return {k: round(v / total, 4) for k, v in counts.most_common()}


def total_variation(p: dict, q: dict) -> float:
    return round(0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q)), 4)


def mix(instructions: list[str], top: int = 15) -> dict:
    """Shares of questions/requests and of the most common leading words."""
    words = distribution(leading_word(i) for i in instructions)
    return {"n": len(instructions), "kind": distribution(kind(i) for i in instructions),
            "leading_words": dict(list(words.items())[:top])}  # fmt: skip


def compare_mix(
    synthetic: list[str], real: list[str], synthetic_types: list | None = None, real_types: list | None = None
) -> dict:
    """Both mixes and their total-variation distances (kind; leading word over all words; task
    type / Dolly category where both sides know it)."""
    out = {"synthetic": mix(synthetic), "real": mix(real),
           "tv_kind": total_variation(distribution(map(kind, synthetic)), distribution(map(kind, real))),
           "tv_leading_word": total_variation(distribution(map(leading_word, synthetic)),
                                              distribution(map(leading_word, real)))}  # fmt: skip
    if synthetic_types and real_types:
        a, b = distribution(synthetic_types), distribution(real_types)
        out.update(synthetic_types=a, real_types=b, tv_type=total_variation(a, b))
    return out


class Tally:
    """Streaming counts of kept instructions' kinds, leading words and openers (bounded by vocabulary)."""

    def __init__(self, counts: dict | None = None):
        counts = counts or {}
        self.kind = Counter(counts.get("kind", {}))
        self.lead = Counter(counts.get("lead", {}))
        self.opener = Counter(counts.get("opener", {}))

    def add(self, record: dict) -> None:
        instruction = str(record.get("instruction", ""))
        self.kind[kind(instruction)] += 1
        self.lead[leading_word(instruction)] += 1
        meta = record.get("meta") or {}
        if "opener" in meta:
            self.opener[meta["opener"] or "(free)"] += 1

    def counts(self) -> dict:
        return {"kind": dict(self.kind), "lead": dict(self.lead), "opener": dict(self.opener)}

    def merge(self, counts: dict) -> None:
        other = Tally(counts)
        self.kind.update(other.kind)
        self.lead.update(other.lead)
        self.opener.update(other.opener)

    def summary(self, seed_openers: dict | None = None, top: int = 15) -> dict:
        """Shares of the kept set, and its leading-word distance to the seed's first words."""
        lead = distribution(self.lead.elements())
        out = {"n": sum(self.kind.values()), "kind": distribution(self.kind.elements()),
               "leading_words": dict(list(lead.items())[:top])}  # fmt: skip
        if self.opener:
            out["openers"] = distribution(self.opener.elements())
        if seed_openers:
            seed = distribution(w.lower() for w, c in seed_openers.items() for _ in range(c))
            out["seed_leading_words"] = dict(list(seed.items())[:top])
            out["tv_leading_word_vs_seed"] = total_variation(lead, seed)
        return out
