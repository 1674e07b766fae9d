"""The one place that picks a generator backend (above the backends: none of them imports this)."""

from __future__ import annotations

import importlib.util

from revgen.errors import UserError
from revgen.generate.base import Generator

BACKENDS = ("auto", "vllm", "transformers", "openai")


def resolve_backend(name: str) -> str:
    if name not in BACKENDS:
        raise UserError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name == "auto":
        return "vllm" if importlib.util.find_spec("vllm") else "transformers"
    if name == "openai" and not importlib.util.find_spec("openai"):
        raise UserError("backend openai needs the openai package (pip install openai)")
    if name == "vllm" and not importlib.util.find_spec("vllm"):
        raise UserError("backend vllm needs the vllm package (pip install 'revgen[gpu]' or 'revgen[cpu-vllm]')")
    return name


def get_generator(backend: str, model: str, adapter: str | None = None, **kwargs) -> Generator:
    backend = resolve_backend(backend)
    if backend == "vllm":
        from revgen.generate.vllm import VLLMGenerator as cls
    elif backend == "openai":
        from revgen.generate.openai_server import OpenAIGenerator as cls
    else:
        from revgen.generate.hf import HFGenerator as cls
    return cls(model, adapter, **kwargs)
