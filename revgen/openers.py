"""Openers: the words real instructions start with, learned from the backward model's training data.

A backward model trained on Dolly writes "What is X?" for nearly every passage, although a third of
real instructions are requests ("List ...", "Summarize ...", "Classify ...", "Given ..., write ...").
``revgen train`` saves the first word of every training instruction with its count beside the adapter
(``openers.json``). ``revgen synthesize --openers N`` then adds, per segment, N candidates whose
decoding is forced to begin with an opener drawn (seeded, without replacement, weighted by the seed
counts) from that list; the free candidates stay. Which candidate fits its passage is curation's
job (``score: {scorers: [pmi], best_of_candidates: true, ...}``): a type is never forced onto a
passage that does not fit it. ``--opener-kinds both`` (the default) draws half of each segment's
openers among requests and half among questions (the extra one a request), so every passage has
candidates of both kinds to be chosen from; ``requests`` draws only openers that begin requests.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

from revgen.errors import UserError
from revgen.evaluate.mix import QUESTION_START
from revgen.io import read_counts, write_counts

FILE = "openers.json"
DEFAULT = 3  # synthesize's openers per passage when the adapter has its openers file (bench/RESULTS.md)
TOP = 40  # openers drawn from; the tail of one-off first words is noise (kept in the file for the mix)
_FIRST = re.compile(r"[A-Za-z][A-Za-z']*")


def first_word(instruction: str) -> str | None:
    m = _FIRST.match(instruction.strip())
    return m.group(0) if m else None


def learn(instructions) -> dict:
    """Every first word (as written: "List", "What") with its count, most common first."""
    return dict(Counter(w for w in map(first_word, instructions) if w).most_common())


def save(directory: str | Path, counts: dict) -> Path:
    return write_counts(Path(directory) / FILE, counts)


def load(directory: str | Path) -> dict | None:
    return read_counts(Path(directory) / FILE, "an openers file")


KINDS = ("any", "requests", "both")


def restrict(counts: dict, kinds: str) -> dict:
    """The openers of ``kinds``: ``any``, ``requests`` (first words that do not open a question,
    revgen/evaluate/mix.py: a backward model that asks "What ...?" freely needs requests forced, not
    more questions), or ``both`` (all of them; ``draw`` splits them by kind)."""
    if kinds not in KINDS:
        raise UserError(f"opener_kinds must be one of {KINDS}, got {kinds!r}")
    if kinds != "requests":
        return counts
    return _of_kind(counts, question=False)


def _of_kind(counts: dict, question: bool) -> dict:
    return {w: n for w, n in counts.items() if opens_question(w.lower()) == question}


def opens_question(word: str) -> bool:
    """ "What", and the contractions and misspellings seed data has ("What's", "Whats", "Who's")."""
    return any(w in QUESTION_START for w in (word, word.removesuffix("'s"), word.removesuffix("s")))


def draw(counts: dict, k: int, seed: int, kinds: str = "any") -> list[str]:
    """``k`` distinct openers from the ``TOP`` most common, weighted by their seed counts, the same
    for the same seed; with ``kinds`` ``both``, ``ceil(k / 2)`` of them among the requests and the
    rest among the questions (each weighted within its kind)."""
    rng = random.Random(seed)
    if kinds != "both":
        return _draw(counts, k, rng)
    requests, questions = _of_kind(counts, question=False), _of_kind(counts, question=True)
    first = _draw(requests, (k + 1) // 2 if questions else k, rng)
    return first + _draw(questions, k - len(first), rng)


def capacity(counts: dict, kinds: str = "any") -> int:
    """How many distinct openers ``draw`` can give a segment: at most ``TOP`` per pool it draws from."""
    if kinds != "both":
        return min(TOP, len(counts))
    return sum(min(TOP, len(_of_kind(counts, question=q))) for q in (False, True))


def _draw(counts: dict, k: int, rng: random.Random) -> list[str]:
    pool, out = dict(Counter(counts).most_common(TOP)), []
    while pool and len(out) < k:
        words, weights = zip(*pool.items())
        pick = rng.choices(words, weights)[0]
        out.append(pick)
        del pool[pick]
    return out


def default_count(directory: str | Path, kinds: str) -> tuple[int, str]:
    """``(openers, why)`` for a run that did not set ``openers``: ``DEFAULT`` (or as many as the file
    gives) when the adapter has its openers file with openers of every kind ``kinds`` draws, else 0."""
    found = load(directory)
    if not found:
        return 0, f"no {FILE} beside the adapter (trained before 2026-11-30?): one free instruction per passage"
    found = restrict(found, kinds) if kinds in KINDS else found
    if kinds == "both" and len({opens_question(w.lower()) for w in found}) < 2:
        return 0, f"{FILE} lacks requests or questions for opener_kinds both: one free instruction per passage"
    n = min(DEFAULT, capacity(found, kinds))
    return n, f"{n} openers per passage from {FILE} (the default; --openers 0 for one free instruction)"
