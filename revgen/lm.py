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
    """Sum of token NLLs of each completion given its prompt, and the number of tokens scored.

    Each batch runs in two passes: the distinct prompts once (left-padded, keeping only the last
    position's logits), then every completion on a copy of its prompt's KV cache. Candidates that
    share a passage (best-of-N, openers) pay for the passage once, and the LM head never projects
    prompt positions; the sums equal one teacher-forced pass over prompt + completion
    (tests/curate/test_scorers.py)."""

    def __init__(self, model, tokenizer, batch_size: int = 8, max_length: int | None = None):
        self.model, self.tokenizer, self.batch_size, self.max_length = model, tokenizer, batch_size, max_length

    def nll(
        self, prompts: list[str], completions: list[str], limits: list[int] | None = None
    ) -> list[tuple[float, int]]:
        """``limits[i]``: score at most that many of row i's completion tokens (its first ones)."""
        seqs = []
        for i, (p, c) in enumerate(zip(prompts, completions)):
            ids, n = teacher_forced_ids(self.tokenizer, p, c)
            if n == 0:  # nothing to condition the first token on: start from EOS as a neutral context
                ids, n = [self.tokenizer.eos_token_id] + ids, 1
            if self.max_length and len(ids) > self.max_length:  # cut the end, as trl truncates
                ids = ids[: max(self.max_length, n + 1)]
            if limits is not None:
                ids = ids[: n + max(limits[i], 1)]
            seqs.append((ids, n))
        groups: dict[tuple, list[int]] = {}  # prompt tokens -> the rows that continue them
        for i, (ids, n) in enumerate(seqs):
            groups.setdefault(tuple(ids[:n]), []).append(i)
        cap = 4 * self.batch_size  # completions per batch: a prompt shared by many rows is run once per chunk
        units = [
            (p, g[k : k + cap])
            for p, g in sorted(groups.items(), key=lambda x: len(x[0]))
            for k in range(0, len(g), cap)
        ]
        out: list = [None] * len(seqs)
        batch: list[tuple] = []
        rows = 0
        for j, (prompt, members) in enumerate(units):  # like lengths together
            batch.append((prompt, members))
            rows += len(members)
            if j == len(units) - 1 or len(batch) == self.batch_size or rows >= cap:
                pairs = [(g, i) for g, (_, ms) in enumerate(batch) for i in ms]
                sums = self._batch([list(p) for p, _ in batch], [(g, seqs[i][0][seqs[i][1] :]) for g, i in pairs])
                for (_, i), v in zip(pairs, sums):
                    out[i] = (v, len(seqs[i][0]) - seqs[i][1])
                batch, rows = [], 0
        return out

    def _batch(self, prompts: list[list[int]], rows: list[tuple[int, list[int]]]) -> list[float]:
        """Summed NLL of each ``(prompt index, completion ids)`` row."""
        import torch

        device, width = self.model.device, max(map(len, prompts))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, p in enumerate(prompts):  # left padding: every prompt ends at the last position
            ids[r, width - len(p) :], mask[r, width - len(p) :] = torch.tensor(p), 1
        which = torch.tensor([g for g, _ in rows], device=device)
        span = max(len(c) for _, c in rows)
        cids = torch.full((len(rows), span), pad, dtype=torch.long)
        cmask = torch.zeros_like(cids)
        for r, (_, c) in enumerate(rows):  # right padding after the prompt
            cids[r, : len(c)], cmask[r, : len(c)] = torch.tensor(c), 1
        positions = torch.tensor([len(prompts[g]) for g, _ in rows])[:, None] + torch.arange(span)
        ids, mask = ids.to(device), mask.to(device)
        with torch.inference_mode():
            first = self.model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0), use_cache=True,
                               logits_to_keep=1)  # fmt: skip
            cache = first.past_key_values
            cache.reorder_cache(which)  # each row continues its own prompt's cache
            rest = self.model(input_ids=cids.to(device), attention_mask=torch.cat([mask[which], cmask.to(device)], 1),
                              position_ids=positions.to(device), past_key_values=cache).logits  # fmt: skip
            # the completion's first token is read off the prompt's last position, the others off their own
            logits = torch.cat([first.logits[which, -1:], rest[:, :-1]], 1).float()
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), cids.to(device), reduction="none")
            return (nll * cmask.to(device)).sum(1).tolist()
