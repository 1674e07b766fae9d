"""Output-side (human text) quality: Gopher's heuristics (Rae et al. 2021, appendix A).

Published defaults: 50-100,000 words, mean word length 3-10, >= 80% of words with an alphabetic
character, >= 2 English stop words (1 under 50 words), <= 30% duplicated lines, top 2-gram <= 20% of characters.
Word length and alphabetic share are measured on the prose around any code the text quotes
(``prose_tokens``), so a docstring with ``f(x) == [1, 2]`` in it is judged by its sentences.
For short segments lower ``min_words``; any threshold set to None is off. Never applied to
instructions.
"""

from __future__ import annotations

import re
from collections import Counter

from revgen.curate.filters.base import Filter

STOP_WORDS = {"the", "be", "to", "of", "and", "that", "have", "with"}
# Code quoted in prose (docstrings, READMEs): backticked spans, doctest and indented lines, and
# tokens shaped like code (calls, operators, brackets, dotted or snake_case names).
CODE_SPAN = re.compile(r"```.*?```|`[^`\n]+`|^(?:>>>|\.\.\.|    |\t).*$", re.S | re.M)
CODE_TOKEN = re.compile(r"^(?:>>>|\.\.\.)$|[()\[\]{}=<>|\\]|^[-+*/%^&~]+$|\w[._]\w")


CODE_CHARS = frozenset("`()[]{}=<>|\\_")


def prose_tokens(text: str) -> list[str]:
    """The words of ``text`` outside the code it quotes: what Gopher's word-shape rules are about."""
    if CODE_CHARS.isdisjoint(text) and ">>>" not in text and "    " not in text and "\t" not in text:
        return text.split()  # plain prose (most web text): no regex per token
    return [t for t in CODE_SPAN.sub(" ", text).split() if not CODE_TOKEN.search(t)]


class GopherQuality(Filter):
    name = "gopher"

    def __init__(self, field: str = "output", min_words: int | None = 50, max_words: int | None = 100_000,
                 min_mean_word_length: float | None = 3, max_mean_word_length: float | None = 10,
                 min_alpha_ratio: float | None = 0.8, min_stop_words: int | None = 2,
                 max_duplicate_line_ratio: float | None = 0.3, max_top_2gram_ratio: float | None = 0.2):  # fmt: skip
        self.field = field
        self.min_words, self.max_words = min_words, max_words
        self.min_mean_word_length, self.max_mean_word_length = min_mean_word_length, max_mean_word_length
        self.min_alpha_ratio, self.min_stop_words = min_alpha_ratio, min_stop_words
        self.max_duplicate_line_ratio, self.max_top_2gram_ratio = max_duplicate_line_ratio, max_top_2gram_ratio

    def stop_words_needed(self, n_words: int) -> int:
        """Gopher's stop-word count is for documents of 50+ words; a shorter segment (a paragraph of
        technical documentation: "Elements are stored as dictionary keys and their counts ...")
        needs one. Tuned on standard-library docstrings (bench/tech_docs.py, tuning modules)."""
        return self.min_stop_words if n_words >= 50 else min(self.min_stop_words, 1)

    def __call__(self, r):
        text = r[self.field]
        toks = text.split()
        n = len(toks)
        if self.min_words is not None and n < self.min_words:
            return False, "too_few_words"
        if self.max_words is not None and n > self.max_words:
            return False, "too_many_words"
        if n == 0:
            return False, "empty"
        # word shape (length, alphabetic share) is judged on the prose; text that is mostly code keeps
        # all its tokens, so a page of symbols still fails
        prose = prose_tokens(text)
        shape = prose if len(prose) >= max(5, n // 3) else toks
        mean = sum(map(len, shape)) / len(shape)
        if self.min_mean_word_length is not None and mean < self.min_mean_word_length:
            return False, "short_words"
        if self.max_mean_word_length is not None and mean > self.max_mean_word_length:
            return False, "long_words"
        if self.min_alpha_ratio is not None and alpha_share(shape) < self.min_alpha_ratio:
            return False, "not_alphabetic"
        lower = [t.lower().strip(".,;:!?\"'()") for t in toks]
        if self.min_stop_words is not None and sum(t in STOP_WORDS for t in lower) < self.stop_words_needed(n):
            return False, "few_stop_words"
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        if self.max_duplicate_line_ratio is not None and lines:
            dup = sum(c - 1 for c in Counter(lines).values())
            if dup / len(lines) > self.max_duplicate_line_ratio:
                return False, "duplicate_lines"
        if self.max_top_2gram_ratio is not None and n >= 4:
            grams = Counter(zip(lower, lower[1:]))
            gram, count = grams.most_common(1)[0]
            if count > 1 and count * (len(gram[0]) + len(gram[1])) / max(len(text), 1) > self.max_top_2gram_ratio:
                return False, "repeated_2gram"
        return True


LIST_MARKER = re.compile(r"^(?:\(?\d{1,3}[.)]|[-*\u2022\u2013])$")


def alpha_share(tokens: list[str]) -> float:
    """Share of tokens with a letter, list markers ("1.", "2)", "-", "*") not counted: a numbered
    list of names is prose, a table of numbers is not."""
    words = [t for t in tokens if not LIST_MARKER.match(t)] or tokens
    return sum(any(c.isalpha() for c in t) for t in words) / len(words)
