"""vLLM backend: ``LLM.generate`` over token-id prompts, one seeded ``SamplingParams`` per prompt.

A LoRA adapter is served unmerged through ``LoRARequest`` (``max_lora_rank`` read from
adapter_config.json), or pre-merged into a copy of the base in the compute dtype (the default on CPU, where
vLLM's LoRA path is ~20x slower). On CPU, ``VLLM_CPU_KVCACHE_SPACE`` defaults to 2 GiB. A passage's
candidates come with their fit (``generate_shared``, generate/vllm_shared.py), so curation reads it.
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

    def _params(self, sampling: Sampling, seed: int, **extra):
        from vllm import SamplingParams

        return SamplingParams(
            n=sampling.n,
            temperature=sampling.temperature,
            top_p=sampling.top_p if not sampling.greedy else 1.0,
            top_k=0 if not sampling.greedy else -1,
            max_tokens=sampling.max_new_tokens,
            seed=seed,
            stop_token_ids=[] if sampling.ignore_eos else [self.tokenizer.eos_token_id],
            skip_special_tokens=True,
            ignore_eos=sampling.ignore_eos,
            **extra,
        )  # fmt: skip

    def _run(self, prompts: list[list[int]], params: list) -> list:
        from vllm.inputs import TokensPrompt

        return self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False,
                                 lora_request=self.lora)  # fmt: skip

    def _completion(self, c, prompt: list[int]) -> Completion:
        toks = [t for t in c.token_ids if t != self.tokenizer.eos_token_id]
        return Completion(c.text, "stop" if c.finish_reason == "stop" else "length", len(toks), len(prompt))

    def generate(self, prompts, sampling: Sampling, seeds):
        outs = self._run(prompts, [self._params(sampling, seed) for seed in seeds])
        return [[self._completion(c, p) for c in out.outputs] for out, p in zip(outs, prompts)]

    @property
    def shares_prefix(self) -> bool:
        """A passage's candidates share its prefill through the prefix cache and come with their fit;
        not for an unmerged adapter, whose LoRA logits path in vLLM 0.32 (CPU) fails on prompt
        log-probabilities (einsum shape error in punica_cpu's bgmv_shrink): curation scores those."""
        return self.lora is None

    def generate_shared(self, groups: list[list[tuple[list[int], int]]], sampling: Sampling, seeds: list[int],
                        candidate_seeds: list[list[int]] | None = None):  # fmt: skip
        """Per passage, its candidates' ``(prompt ids, forced instruction tokens at the prompt's end)``, one
        sample each (seeded by ``candidate_seeds[g][j]``, else the passage's seed + j), with each
        instruction token's log p given the passage (generate/vllm_shared.py)."""
        import dataclasses

        from revgen.generate import vllm_shared

        each = candidate_seeds or [[s + j for j in range(len(g))] for g, s in zip(groups, seeds)]
        requests, cands, forced_at = vllm_shared.plan(groups, each)
        params = []
        for r in requests:  # vLLM returns the sampled token's log p with either; with ids, exactly those
            asked = {"logprob_token_ids": r.score} if r.score else {"logprobs": 0}
            mine = dataclasses.replace(sampling, n=r.n, max_new_tokens=1 if r.probe else sampling.max_new_tokens)
            params.append(self._params(mine, r.seed, **asked))
        outs = self._run([r.prompt for r in requests], params)
        first = [out.outputs[0].logprobs[0] if r.score else {} for r, out in zip(requests, outs)]
        results: list[list] = [[None] * len(g) for g in groups]
        for r, out in zip(requests, outs):
            for k, member in enumerate(r.members):
                g, j = cands[member]
                prompt, forced = groups[g][j]
                c = out.outputs[k]
                done = self._completion(c, prompt)
                done.fit_ids = prompt[len(prompt) - forced :] + list(c.token_ids)
                done.fit_logprobs = ([first[q][t].logprob for q, t in forced_at[member]]
                                     + [lp[t].logprob for lp, t in zip(c.logprobs, c.token_ids)])  # fmt: skip
                results[g][j] = done
        return results

    def continuation_nll(self, prompt: list[int], continuations: list[list[int]]) -> list[float]:
        """Summed NLL of each continuation after ``prompt`` (one prompt-logprobs pass per row)."""
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, temperature=0, prompt_logprobs=0)
        outs = self._run([prompt + c for c in continuations], [params] * len(continuations))
        return [-sum(lp[t].logprob for lp, t in zip(out.prompt_logprobs[len(prompt) :], c))
                for out, c in zip(outs, continuations)]  # fmt: skip

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
