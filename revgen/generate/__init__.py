"""Generator backends behind one small interface (see base.Generator)."""

from revgen.generate.base import Completion, Generator, Sampling, get_generator, resolve_backend

__all__ = ["Completion", "Generator", "Sampling", "get_generator", "resolve_backend"]
