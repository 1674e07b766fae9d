"""vLLM backend: ``LLM.generate`` over token-id prompts, one seeded ``SamplingParams`` per prompt.

A LoRA adapter is served unmerged through ``LoRARequest`` (``max_lora_rank`` read from
adapter_config.json), or pre-merged into a copy of the base in the compute dtype (the default on CPU, where
vLLM's LoRA path is ~20x slower). On CPU, ``VLLM_CPU_KVCACHE_SPACE`` defaults to 2 GiB.
"""

from __future__ import annotations

import logging
import os

from revgen.generate.base import Completion, Generator, Sampling, adapter_rank

log = logging.getLogger(__name__)


class VLLMGenerator(Generator):
    name = "vllm"

    def load(self) -> "VLLMGenerator":
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # stdout carries data only
        # The engine runs inside this process: a killed run leaves no EngineCore (~1 GB) behind.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        import torch
        from vllm import LLM

        from revgen import dtypes
        from revgen.models import merged_dir

        self.compute_dtype = dtypes.resolve(self.dtype)
        model = self.model
        if self.adapter and self.merge:  # vLLM serves plain folders: merge once into revgen's cache
            model = str(merged_dir(self.adapter, self.model, self.compute_dtype))
        kwargs = {"model": model, "tokenizer": self.adapter or self.model, "max_model_len": self.max_model_len,
                  "dtype": self.compute_dtype, "seed": 0,
                  "enforce_eager": True, "disable_log_stats": True}  # fmt: skip
        if not torch.cuda.is_available():
            # vLLM-CPU's chunked prefill crashed seeded sampling on long prompts ("CPU Generator does not
            # use offset"): prefill every prompt whole, so any prompt the config allows fits one step.
            kwargs.update(enable_chunked_prefill=False, max_num_batched_tokens=max(self.max_model_len, 2048))
        self.lora = None
        if self.adapter and not self.merge:
            from vllm.lora.request import LoRARequest

            from revgen.models import check_adapter_weights

            check_adapter_weights(self.adapter)
            kwargs.update(enable_lora=True, max_lora_rank=_vllm_rank(adapter_rank(self.adapter)), max_loras=1)
            self.lora = LoRARequest("revgen-adapter", 1, str(self.adapter))
        kwargs.update(self.options)  # e.g. {"enforce_eager": False, "tensor_parallel_size": 2}
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        log.info("vLLM backend: %s%s, %s", model, f" + LoRA {self.adapter}" if self.lora else "", self.compute_dtype)
        return self

    def generate(self, prompts, sampling: Sampling, seeds):
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        stop_ids = [self.tokenizer.eos_token_id]
        params = [
            SamplingParams(
                n=sampling.n,
                temperature=sampling.temperature,
                top_p=sampling.top_p if not sampling.greedy else 1.0,
                top_k=0 if not sampling.greedy else -1,
                max_tokens=sampling.max_new_tokens,
                seed=seed,
                stop_token_ids=[] if sampling.ignore_eos else stop_ids,
                skip_special_tokens=True,
                ignore_eos=sampling.ignore_eos,
            )  # fmt: skip
            for seed in seeds
        ]
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params,
                                 use_tqdm=False, lora_request=self.lora)  # fmt: skip
        results = []
        for out, p in zip(outs, prompts):
            cands = []
            for c in out.outputs:
                toks = [t for t in c.token_ids if t not in stop_ids]
                reason = "stop" if c.finish_reason == "stop" else "length"
                cands.append(Completion(c.text, reason, len(toks), len(p)))
            results.append(cands)
        return results

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            engine = getattr(llm, "llm_engine", None)
            shutdown = getattr(engine, "shutdown", None) or getattr(
                getattr(engine, "engine_core", None), "shutdown", None
            )
            if shutdown:
                shutdown()
            self.llm = None


def _vllm_rank(rank: int) -> int:
    """vLLM accepts only some max_lora_rank values; take the smallest that fits."""
    for allowed in (1, 8, 16, 32, 64, 128, 256, 320, 512):
        if rank <= allowed:
            return allowed
    return rank
