"""Teacher-forced log-likelihoods: one batched forward pass per batch, no generation.

Used by forward evaluation (NLL of a gold response), and by the fit scores of self-curation (IFD,
cycle). Sequences are built with :func:`revgen.prompts.teacher_forced_ids`, the same tokens trl
trains on, so a model's NLL on its own training pairs is exactly its training loss.
"""

from __future__ import annotations

import logging
from pathlib import Path

from revgen.prompts import teacher_forced_ids

log = logging.getLogger(__name__)


def load_causal_lm(model_ref: str, adapter: str | None = None, dtype: str = "auto"):
    """``(model, tokenizer)``: base + adapter merged, eval mode, on CUDA when there is one."""
    import torch
    from transformers import AutoModelForCausalLM

    from revgen import dtypes
    from revgen.models import load_tokenizer

    cuda = torch.cuda.is_available()
    dtype = dtypes.resolve(dtype, stage="score")
    model = AutoModelForCausalLM.from_pretrained(model_ref, dtype=getattr(torch, dtype))
    if adapter:
        from peft import PeftModel

        from revgen.models import check_adapter_weights

        check_adapter_weights(adapter)
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    tok_src = adapter if adapter and (Path(adapter) / "tokenizer_config.json").exists() else model_ref
    return model.to("cuda" if cuda else "cpu").eval(), load_tokenizer(tok_src)


class Scorer:
    """Sum of token NLLs of each completion given its prompt, and the number of tokens scored."""

    def __init__(self, model, tokenizer, batch_size: int = 8, max_length: int | None = None):
        self.model, self.tokenizer, self.batch_size, self.max_length = model, tokenizer, batch_size, max_length

    def nll(self, prompts: list[str], completions: list[str]) -> list[tuple[float, int]]:
        seqs = []
        for p, c in zip(prompts, completions):
            ids, n = teacher_forced_ids(self.tokenizer, p, c)
            if n == 0:  # nothing to condition the first token on: start from EOS as a neutral context
                ids, n = [self.tokenizer.eos_token_id] + ids, 1
            if self.max_length and len(ids) > self.max_length:  # cut the end, as trl truncates
                ids = ids[: max(self.max_length, n + 1)]
            seqs.append((ids, n))
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i][0]))
        out: list = [None] * len(seqs)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            for i, r in zip(idx, self._batch([seqs[i] for i in idx])):
                out[i] = r
        return out

    def _batch(self, seqs):
        import torch

        width = max(len(ids) for ids, _ in seqs)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        for row, (s, n) in enumerate(seqs):  # right padding: positions (and so results) match unpadded
            ids[row, : len(s)] = torch.tensor(s)
            mask[row, : len(s)] = 1
            labels[row, n : len(s)] = torch.tensor(s[n:])
        device = self.model.device
        with torch.inference_mode():
            logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            target = labels[:, 1:].to(device)
            nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), target.clamp(min=0), reduction="none")
            nll = (nll * (target != -100)).sum(1).tolist()
        return [(float(v), len(s) - n) for v, (s, n) in zip(nll, seqs)]
