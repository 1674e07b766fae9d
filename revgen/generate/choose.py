"""The one place that picks a generator backend (above the backends: none of them imports this)."""

from __future__ import annotations

import importlib.util

from revgen.errors import UserError
from revgen.generate.base import Generator

BACKENDS = ("auto", "vllm", "transformers", "openai")
# Below this many tokens to generate (an upper bound: prompts x candidates x max_new_tokens) the
# transformers backend finishes first: vLLM generates 1.6-1.9x faster on CPU but starts in ~20-25 s
# against ~1 s (bench/generate_cpu.py, AVX2 and AMX CPUs: break-even at ~2,000-4,300 tokens).
SMALL_JOB_TOKENS = 4096


def resolve_backend(name: str, job_tokens: int | None = None) -> str:
    """The backend to use; ``auto``: vLLM when importable, unless the job is known to be small."""
    return choose_backend(name, job_tokens)[0]


def choose_backend(name: str, job_tokens: int | None = None) -> tuple[str, str]:
    """``(backend, why)``; ``job_tokens`` bounds the tokens a run will generate, when it is known."""
    if name not in BACKENDS:
        raise UserError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name == "auto":
        if not importlib.util.find_spec("vllm"):
            return "transformers", "vLLM is not installed"
        if job_tokens is not None and job_tokens <= SMALL_JOB_TOKENS:
            return "transformers", (f"a small job (<= {job_tokens} tokens to generate): vLLM's start-up costs "
                                    "more than its faster generation saves")  # fmt: skip
        return "vllm", "vLLM is installed and generates fastest on this machine"
    if name == "openai" and not importlib.util.find_spec("openai"):
        raise UserError("backend openai needs the openai package (pip install openai)")
    if name == "vllm" and not importlib.util.find_spec("vllm"):
        raise UserError("backend vllm needs the vllm package (pip install 'revgen[gpu]' or 'revgen[cpu-vllm]')")
    return name, "set explicitly"


def get_generator(backend: str, model: str, adapter: str | None = None, **kwargs) -> Generator:
    backend = resolve_backend(backend)
    if backend == "vllm":
        from revgen.generate.vllm import VLLMGenerator as cls
    elif backend == "openai":
        from revgen.generate.openai_server import OpenAIGenerator as cls
    else:
        from revgen.generate.hf import HFGenerator as cls
    return cls(model, adapter, **kwargs)
