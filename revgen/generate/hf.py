"""transformers backend: batched ``generate`` with left padding and length-bucketed batches.

Prompts are sorted by length and cut into batches, so each batch pads to a similar length and no
compute is wasted on padding; results come back in the caller's order. Attention comes from
attention.choose: decode steps without copying the KV cache per query group, the fastest kernel
per device.
"""

from __future__ import annotations

import logging

from revgen.generate import attention
from revgen.generate.base import Completion, Generator, Sampling

log = logging.getLogger(__name__)


class HFGenerator(Generator):
    name = "transformers"

    def load(self) -> "HFGenerator":
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        cuda = torch.cuda.is_available()
        dtype = self.dtype if self.dtype != "auto" else ("bfloat16" if cuda else "float32")
        self.device = "cuda" if cuda else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(self.adapter or self.model)
        attn = self.options.get("attn_implementation") or attention.choose(AutoConfig.from_pretrained(self.model), cuda)
        model = AutoModelForCausalLM.from_pretrained(self.model, dtype=getattr(torch, dtype), attn_implementation=attn,
                                                     **self.options.get("model_kwargs", {}))  # fmt: skip
        if self.adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, self.adapter)
            if self.merge:
                model = model.merge_and_unload()
        self.hf_model = model.to(self.device).eval()
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.tokenizer.eos_token_id
        self.stop_ids = sorted({i for i in _ids(self.tokenizer.eos_token_id) + _ids(self.hf_model.generation_config.eos_token_id)})
        log.info("transformers backend: %s%s on %s, %s", self.model,
                 f" + adapter {self.adapter}" + (" (merged)" if self.merge else "") if self.adapter else "",
                 self.device, dtype)  # fmt: skip
        return self

    def generate(self, prompts, sampling: Sampling, seeds):
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list = [None] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            outs = self._batch([prompts[i] for i in idx], sampling, seeds[idx[0]])
            for i, out in zip(idx, outs):
                results[i] = out
        return results

    def _batch(self, batch: list[list[int]], sampling: Sampling, seed: int) -> list[list[Completion]]:
        import torch

        width = max(len(p) for p in batch)
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
        with torch.inference_mode():
            out = self.hf_model.generate(
                input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                max_new_tokens=sampling.max_new_tokens, num_return_sequences=sampling.n,
                eos_token_id=self.stop_ids, pad_token_id=self.pad_id, **kwargs, **self.options.get("generate_kwargs", {}),
            )  # fmt: skip
        new = out[:, width:].tolist()
        results = []
        for row, p in enumerate(batch):
            cands = []
            for k in range(sampling.n):
                toks = new[row * sampling.n + k]
                stop = None if sampling.ignore_eos else next((j for j, t in enumerate(toks) if t in self.stop_ids), None)
                toks = toks if stop is None else toks[:stop]
                text = self.tokenizer.decode(toks, skip_special_tokens=True)
                cands.append(Completion(text, "length" if stop is None else "stop", len(toks), len(p)))
            results.append(cands)
        return results


def _ids(value) -> list[int]:
    if value is None:
        return []
    return [value] if isinstance(value, int) else list(value)
