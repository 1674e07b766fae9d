"""Record filters: small named callables ``(record) -> bool | (bool, reason)`` and one runner."""

from revgen.curate.filters.base import Filter, FilterRunner
from revgen.curate.filters.instruction import instruction_filters
from revgen.curate.filters.text import GopherQuality

__all__ = ["Filter", "FilterRunner", "GopherQuality", "instruction_filters"]
