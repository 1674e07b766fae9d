"""Generator backends behind one small interface (base.Generator); choose.py picks one."""

from revgen.generate.base import Completion, Generator, Sampling
from revgen.generate.choose import BACKENDS, get_generator, resolve_backend

__all__ = ["BACKENDS", "Completion", "Generator", "Sampling", "get_generator", "resolve_backend"]
