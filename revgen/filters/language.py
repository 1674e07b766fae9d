"""Language filters with lingua-language-detector (models ship inside the wheel: fully offline).

``LanguageMismatch`` drops a record whose instruction and output are both identified with at
least ``min_confidence`` and in different languages; short or ambiguous text is kept (no guess is
made on it). ``allowed`` (e.g. ``["english"]``) also drops outputs confidently in another language.
"""

from __future__ import annotations

from functools import lru_cache

from revgen.errors import UserError
from revgen.filters.base import Filter


@lru_cache(maxsize=1)
def _detector():
    try:
        from lingua import LanguageDetectorBuilder
    except ImportError:
        raise UserError("the language filter needs lingua-language-detector (pip install lingua-language-detector)")
    return LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode().build()


def detect(text: str) -> tuple[str | None, float]:
    values = _detector().compute_language_confidence_values(text)
    return (values[0].language.name.lower(), values[0].value) if values else (None, 0.0)


class LanguageMismatch(Filter):
    name = "language"

    def __init__(self, min_confidence: float = 0.5, allowed: list[str] | None = None):
        self.min_confidence = min_confidence
        self.allowed = [a.lower() for a in allowed] if allowed else None
        _detector()  # fail at set-up, not on the first record

    def __call__(self, r):
        out_lang, out_conf = detect(r["output"])
        if self.allowed and out_conf >= self.min_confidence and out_lang not in self.allowed:
            return False, "not_allowed", {"output_language": out_lang}
        ins_lang, ins_conf = detect(r["instruction"])
        if min(out_conf, ins_conf) >= self.min_confidence and ins_lang != out_lang:
            return False, "mismatch", {"instruction_language": ins_lang, "output_language": out_lang}
        return True
