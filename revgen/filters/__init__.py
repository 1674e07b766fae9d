"""Record filters: small named callables ``(record) -> bool | (bool, reason)`` and one runner."""

from revgen.filters.base import Filter, FilterRunner
from revgen.filters.instruction import instruction_filters
from revgen.filters.text import GopherQuality

__all__ = ["Filter", "FilterRunner", "GopherQuality", "instruction_filters"]
