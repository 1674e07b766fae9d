"""transformers backend: batched ``generate`` with left padding and length-bucketed batches.

Prompts are sorted by length and cut into batches, so each batch pads to a similar length and no
compute is wasted on padding; results come back in the caller's order. Attention comes from
attention.choose: decode steps without copying the KV cache per query group, the fastest kernel
per device.

On CUDA the batches are planned from memory, not a fixed count: a token budget from the free
device memory after the weights (KV-cache bytes per token from the model config, plus transient
activations) divided by each batch's (prompt + new tokens), at most ``batch_size`` sequences. With
a static cache the prompt width is bucketed to a power of two and a short batch is padded to its
bucket's size, so compilation happens once per width bucket. An out-of-memory error halves the
batch and retries (logged) instead of ending the run.
"""

from __future__ import annotations

import logging
import os

from revgen.errors import UserError
from revgen.generate import attention
from revgen.generate.base import Completion, Generator, Sampling

log = logging.getLogger(__name__)
DECODE_MODES = ("generate", "graphs")


class HFGenerator(Generator):
    name = "transformers"

    def load(self) -> "HFGenerator":
        # shard after shard, buckets of other shapes reuse freed memory instead of fragmenting it (under
        # a 24 GiB cap the third shard ran at 0.86x the first without, 0.93x with; bench/RESULTS.md)
        os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        from revgen import dtypes

        cuda = torch.cuda.is_available()
        dtype = self.compute_dtype = dtypes.resolve(self.dtype)
        self.device = "cuda" if cuda else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(self.adapter or self.model)
        attn = self.options.get("attn_implementation") or attention.choose(AutoConfig.from_pretrained(self.model), cuda)
        model = AutoModelForCausalLM.from_pretrained(self.model, dtype=getattr(torch, dtype), attn_implementation=attn,
                                                     **self.options.get("model_kwargs", {}))  # fmt: skip
        if self.adapter:
            from peft import PeftModel

            from revgen.models import check_adapter_weights

            check_adapter_weights(self.adapter)
            model = PeftModel.from_pretrained(model, self.adapter)
            if self.merge:
                model = model.merge_and_unload()
        self.hf_model = model.to(self.device).eval()
        self._bucket_sizes: dict = {}  # static cache: the batch size each width bucket compiled for
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.tokenizer.eos_token_id
        self.stop_ids = sorted(
            {i for i in _ids(self.tokenizer.eos_token_id) + _ids(self.hf_model.generation_config.eos_token_id)}
        )
        log.info("transformers backend: %s%s on %s, %s", self.model,
                 f" + adapter {self.adapter}" + (" (merged)" if self.merge else "") if self.adapter else "",
                 self.device, dtype)  # fmt: skip
        return self

    def generate(self, prompts, sampling: Sampling, seeds):
        results: list = [None] * len(prompts)
        budget = self.token_budget(sampling.n)
        for idx in plan_batches([len(p) for p in prompts], sampling.max_new_tokens, self.batch_size, budget,
                                self.static):  # fmt: skip
            for i, out in zip(idx, self._fit([prompts[i] for i in idx], sampling, seeds[idx[0]])):
                results[i] = out
        return results

    @property
    def shares_prefix(self) -> bool:
        """Whether ``generate_shared`` is available: the dynamic-cache path (not graphs or static)."""
        return not self.graphs and not self.static

    def generate_shared(self, groups: list[list[tuple[list[int], int]]], sampling: Sampling, seeds: list[int],
                        candidate_seeds: list[list[int]] | None = None):  # fmt: skip
        """Per passage, its candidates' ``(prompt ids, forced instruction tokens at the prompt's end)``
        decoded on one prefill of the passage (generate/shared.py), one sample each; batches of at most
        ``batch_size`` candidates, each seeded by its first passage's seed (one torch generator for the
        batch, so ``candidate_seeds`` is not used)."""
        import torch

        from revgen.generate import shared

        results: list = [None] * len(groups)
        per = max(len(g) for g in groups)
        for idx in plan_batches([max(len(p) for p, _ in g) for g in groups], sampling.max_new_tokens,
                                max(1, self.batch_size // per), None):  # fmt: skip
            torch.manual_seed(seeds[idx[0]])
            with torch.inference_mode():
                out = shared.generate(self.hf_model, [[p for p, _ in groups[i]] for i in idx],
                                      max_new=sampling.max_new_tokens, greedy=sampling.greedy,
                                      temperature=sampling.temperature, top_p=sampling.top_p, stop_ids=self.stop_ids,
                                      ignore_eos=sampling.ignore_eos, pad_id=self.pad_id)  # fmt: skip
            for i, cands in zip(idx, out):
                results[i] = [self._shared_completion(p, forced, c) for (p, forced), c in zip(groups[i], cands)]
        return results

    def continuation_nll(self, prompt: list[int], continuations: list[list[int]]) -> list[float]:
        """Summed NLL of each continuation after ``prompt``: the prompt once, 64 continuations a pass."""
        from revgen.lm import Scorer

        scorer = Scorer(self.hf_model, self.tokenizer)
        return [v for k in range(0, len(continuations), 64)
                for v in scorer._batch([prompt], [(0, c) for c in continuations[k : k + 64]])]  # fmt: skip

    def _shared_completion(self, prompt: list[int], forced: int, cand) -> Completion:
        toks, prompt_lp, new_lp = cand
        stopped = bool(toks) and toks[-1] in self.stop_ids
        text_toks = toks[:-1] if stopped else toks
        text = self.tokenizer.decode(text_toks, skip_special_tokens=True)
        fit_ids = (prompt[len(prompt) - forced :] if forced else []) + toks
        fit_lp = (prompt_lp[len(prompt_lp) - forced :] if forced else []) + new_lp
        return Completion(text, "stop" if stopped else "length", len(text_toks), len(prompt), fit_ids, fit_lp)

    @property
    def static(self) -> bool:
        return not self.graphs and self.options.get("generate_kwargs", {}).get("cache_implementation") == "static"

    @property
    def graphs(self) -> bool:
        """``engine.decode: graphs``: revgen's decode loop (generate/decode.py), CUDA graphs on a GPU."""
        mode = self.options.get("decode", "generate")
        if mode not in DECODE_MODES:
            raise UserError(f"engine.decode must be one of {DECODE_MODES}, got {mode!r}")
        ignored = set(self.options.get("generate_kwargs", {})) - {"cache_implementation", "disable_compile"}
        if mode == "graphs" and ignored:
            raise UserError(f"engine.decode: graphs samples by itself and would ignore engine.generate_kwargs "
                            f"{sorted(ignored)}: drop them, or use engine.decode: generate")  # fmt: skip
        return mode == "graphs"

    def token_budget(self, n: int = 1) -> int | None:
        """Tokens (prompt + new, all sequences) one batch may hold on this device; None: unbounded (CPU)."""
        import torch

        if self.device != "cuda":
            return None
        cfg = self.hf_model.config
        heads = cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        size = self.hf_model.dtype.itemsize
        kv = 2 * cfg.num_hidden_layers * getattr(cfg, "num_key_value_heads", heads) * head_dim * size
        act = (4 * cfg.hidden_size + 3 * getattr(cfg, "intermediate_size", 4 * cfg.hidden_size)) * size
        free, _ = torch.cuda.mem_get_info()
        # what PyTorch holds cached but not in use is free to the next batch: counting it as used
        # shrank every call after the first (a shard's KV cache stays reserved after its call)
        allocated = torch.cuda.memory_allocated()
        free += torch.cuda.memory_reserved() - allocated
        if self.options.get("max_memory_gib"):  # a smaller card, or a share of this one
            free = min(free, int(float(self.options["max_memory_gib"]) * 2**30) - allocated)
        fraction = float(self.options.get("memory_fraction", 0.7))
        return max(1, int(fraction * free / ((kv + act) * n)))

    def _fit(self, batch, sampling, seed, depth: int = 0):
        """Generate ``batch``; on CUDA out-of-memory, halve it and retry (each half seeded as the whole)."""
        import gc

        import torch

        try:
            return self._batch(batch, sampling, seed)
        except torch.cuda.OutOfMemoryError:
            if len(batch) == 1 or depth > 8:
                raise
        # retried outside the except block: the exception's frames hold the failed attempt's cache
        gc.collect()
        torch.cuda.empty_cache()
        half = len(batch) // 2
        if self.static:  # the bucket compiles again at the smaller size, and stays there
            self._bucket_sizes[bucket(max(map(len, batch)))] = half
        log.warning("out of GPU memory at %d sequences: retrying as %d + %d", len(batch), half, len(batch) - half)
        return self._fit(batch[:half], sampling, seed, depth + 1) + self._fit(batch[half:], sampling, seed, depth + 1)

    def _batch(self, batch: list[list[int]], sampling: Sampling, seed: int) -> list[list[Completion]]:
        import torch

        real = len(batch)
        width = max(len(p) for p in batch)
        if self.static:  # shapes from a few buckets: one compilation per bucket, not per batch
            width = bucket(width)
            size = self._bucket_sizes.setdefault(width, len(batch))
            batch = batch + [batch[-1]] * max(0, size - len(batch))
            # transformers sizes a new static cache to the longest any earlier call used
            # (_previous_max_cache_length): after one wide bucket, every narrow batch of later shards
            # got a cache as long as the widest prompt and ran out of memory. Each bucket its own length.
            self.hf_model._previous_max_cache_length = -1
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, p in enumerate(batch):  # left padding: every prompt ends at the same column
            ids[row, width - len(p) :] = torch.tensor(p)
            mask[row, width - len(p) :] = 1
        kwargs = {"do_sample": False} if sampling.greedy else {
            "do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": 0}  # fmt: skip
        if sampling.ignore_eos:
            kwargs["min_new_tokens"] = sampling.max_new_tokens
        torch.manual_seed(seed)
        if self.graphs:
            from revgen.generate import decode

            with torch.inference_mode():
                new = decode.generate(self.hf_model, ids.to(self.device), mask.to(self.device),
                                      max_new=sampling.max_new_tokens, n=sampling.n, greedy=sampling.greedy,
                                      temperature=sampling.temperature, top_p=sampling.top_p, stop_ids=self.stop_ids,
                                      ignore_eos=sampling.ignore_eos, pad_id=self.pad_id,
                                      graphs=self.device == "cuda").tolist()  # fmt: skip
            return self._completions(batch[:real], new, sampling)
        with torch.inference_mode():
            out = self.hf_model.generate(
                input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                max_new_tokens=sampling.max_new_tokens, num_return_sequences=sampling.n,
                eos_token_id=self.stop_ids, pad_token_id=self.pad_id, **kwargs, **self.options.get("generate_kwargs", {}),
            )  # fmt: skip
        return self._completions(batch[:real], out[:, width:].tolist(), sampling)

    def _completions(self, batch, new, sampling) -> list[list[Completion]]:
        results = []
        for row, p in enumerate(batch):
            cands = []
            for k in range(sampling.n):
                toks = new[row * sampling.n + k]
                stop = (
                    None if sampling.ignore_eos else next((j for j, t in enumerate(toks) if t in self.stop_ids), None)
                )
                toks = toks if stop is None else toks[:stop]
                text = self.tokenizer.decode(toks, skip_special_tokens=True)
                cands.append(Completion(text, "length" if stop is None else "stop", len(toks), len(p)))
            results.append(cands)
        return results


def bucket(width: int, smallest: int = 128) -> int:
    """The power of two (at least ``smallest``) a prompt width is padded to."""
    b = smallest
    while b < width:
        b *= 2
    return b


def plan_batches(
    lengths: list[int], new_tokens: int, cap: int, budget: int | None, static: bool = False
) -> list[list[int]]:
    """Indices in length order cut into batches of at most ``cap`` sequences whose (padded prompt +
    new tokens) x sequences stays within ``budget`` (None: no budget)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        width = bucket(lengths[i]) if static else lengths[i]  # sorted: the newcomer is the widest
        if current and (len(current) >= cap or (budget is not None and (len(current) + 1) * (width + new_tokens) > budget)
                        or (static and bucket(lengths[current[0]]) != width)):  # fmt: skip
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def _ids(value) -> list[int]:
    if value is None:
        return []
    return [value] if isinstance(value, int) else list(value)
