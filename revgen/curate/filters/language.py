"""Language filters with lingua-language-detector (models ship inside the wheel: fully offline).

``LanguageMismatch`` drops a record whose instruction and output are both identified with at
least ``min_confidence`` and in different languages; short or ambiguous text is kept (no guess is
made on it). ``allowed`` (e.g. ``["english"]``) also drops outputs confidently in another language.

High-accuracy mode: the low-accuracy (trigram) mode misread 6% of short English instructions as
French, Czech or German at 0.6-0.8 confidence; high accuracy flagged 0.2% of the same records but
costs ~7 ms per text on one core (bench/RESULTS.md). ``languages`` limits the candidates (faster).
"""

from __future__ import annotations

from functools import lru_cache

from revgen.curate.filters.base import Filter
from revgen.errors import UserError


@lru_cache(maxsize=4)
def _detector(languages: tuple[str, ...] | None = None):
    try:
        from lingua import Language, LanguageDetectorBuilder
    except ImportError:
        raise UserError("the language filter needs lingua-language-detector (pip install lingua-language-detector)")
    if not languages:
        return LanguageDetectorBuilder.from_all_languages().build()
    try:
        chosen = [getattr(Language, name.upper()) for name in languages]
    except AttributeError as exc:
        raise UserError(f"language filter: unknown language {exc.name!r}") from None
    return LanguageDetectorBuilder.from_languages(*chosen).build()


def detect(text: str, languages: tuple[str, ...] | None = None) -> tuple[str | None, float]:
    values = _detector(languages).compute_language_confidence_values(text)
    return (values[0].language.name.lower(), values[0].value) if values else (None, 0.0)


class LanguageMismatch(Filter):
    name = "language"

    def __init__(self, min_confidence: float = 0.5, allowed: list[str] | None = None,
                 languages: list[str] | None = None):  # fmt: skip
        self.min_confidence = min_confidence
        self.allowed = [a.lower() for a in allowed] if allowed else None
        self.languages = tuple(sorted(x.lower() for x in languages)) if languages else None
        _detector(self.languages)  # fail at set-up, not on the first record

    def __call__(self, r):
        out_lang, out_conf = detect(r["output"], self.languages)
        if self.allowed and out_conf >= self.min_confidence and out_lang not in self.allowed:
            return False, "not_allowed", {"output_language": out_lang}
        ins_lang, ins_conf = detect(r["instruction"], self.languages)
        if min(out_conf, ins_conf) >= self.min_confidence and ins_lang != out_lang:
            return False, "mismatch", {"instruction_language": ins_lang, "output_language": out_lang}
        return True
