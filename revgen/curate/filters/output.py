"""The output-only checks (Gopher quality, output language) with their settings: one implementation
that ``revgen curate`` runs on records and ``revgen synthesize``'s selection runs on passages
before any prompt is built (revgen/synthesize/select.py), so both judge a passage the same way."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from revgen.curate.filters.text import GopherQuality


@dataclass
class LanguageSettings:
    # instruction and output in different languages (lingua, offline). Off by default: high
    # accuracy costs ~14 ms per record on one core; limit `languages` to speed it up.
    enabled: bool = False
    min_confidence: float = 0.5  # both sides must be identified at least this surely to drop
    allowed: list | None = None  # e.g. [english]: also drop outputs confidently in other languages
    languages: list | None = None  # candidate languages (default: all lingua knows)


@dataclass
class GopherSettings:
    enabled: bool = True
    min_words: int | None = 20  # Gopher's 50 is for web documents; segments are shorter
    max_words: int | None = 100_000
    min_mean_word_length: float | None = 3
    max_mean_word_length: float | None = 10
    min_alpha_ratio: float | None = 0.8
    min_stop_words: int | None = 2
    max_duplicate_line_ratio: float | None = 0.3
    max_top_2gram_ratio: float | None = 0.2


def output_filters(gopher: GopherSettings, language: LanguageSettings, field: str = "output") -> list:
    """The chain's output-side filters in curation's order: language (when on), then Gopher."""
    chain = []
    if language.enabled:
        from revgen.curate.filters.language import LanguageMismatch

        chain.append(LanguageMismatch(language.min_confidence, language.allowed, language.languages))
    g = asdict(gopher)
    if g.pop("enabled"):
        chain.append(GopherQuality(field=field, **g))
    return chain
