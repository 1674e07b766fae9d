"""The generator contract: ``load()`` then ``generate(prompts, sampling, seed)``.

Prompts are token-id lists made by :func:`revgen.prompts.encode_prompt`, so every backend feeds
the model exactly the tokens trl trained on. Sampling parameters are always explicit (vLLM would
otherwise apply the model's generation_config silently). Heavy imports happen inside ``load()``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.7  # Humpback's setting
    top_p: float = 0.9
    max_new_tokens: int = 128
    n: int = 1  # candidates per prompt
    ignore_eos: bool = False  # always generate max_new_tokens (fixed-length benchmarks)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Completion:
    text: str
    finish_reason: str  # "stop" (EOS or stop token) | "length" (hit max_new_tokens)
    n_tokens: int  # generated tokens, the stop token excluded
    prompt_tokens: int
    # backends that decode a passage's candidates together (generate_shared) also return the
    # instruction's token ids (forced opener + generated + stop) and log p of each given the passage
    fit_ids: list | None = None
    fit_logprobs: list | None = None
    scores: dict | None = None  # fit scores set by the synthesis (revgen/synthesize/fit.py)


class Generator:
    name = "base"

    def __init__(self, model: str, adapter: str | None = None, *, merge: bool = False, dtype: str = "auto",
                 max_model_len: int = 2048, batch_size: int = 32, options: dict | None = None):  # fmt: skip
        self.model, self.adapter, self.merge, self.dtype = model, adapter, merge, dtype
        self.max_model_len, self.batch_size, self.options = max_model_len, batch_size, options or {}
        self.tokenizer = None

    def load(self) -> "Generator":
        raise NotImplementedError

    def generate(self, prompts: list[list[int]], sampling: Sampling, seeds: list[int]) -> list[list[Completion]]:
        """``sampling.n`` completions per prompt; ``seeds[i]`` seeds prompt i where the backend can."""
        raise NotImplementedError

    def close(self) -> None:
        pass


def adapter_rank(adapter: str | Path) -> int:
    """LoRA rank from adapter_config.json (vLLM's max_lora_rank must be >= it: vllm #2847)."""
    cfg = json.loads((Path(adapter) / "adapter_config.json").read_text())
    ranks = [cfg.get("r", 8), *(cfg.get("rank_pattern") or {}).values()]
    return max(int(r) for r in ranks)
