"""Per-step training throughput: tokens/s (median after warm-up), peak GPU memory, FLOP use.

Attached to every ``revgen train`` run; its summary lands in run.json under ``throughput``.
"""

from __future__ import annotations

import statistics
import time

from transformers import TrainerCallback

# Dense bf16 peak of the H100/H200 SXM (vendor datasheet), the usual MFU denominator.
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def train_flops_per_token(n_params: int, n_layers: int, hidden: int, seq_len: int, checkpointing: bool) -> float:
    """Matmul FLOPs per trained token for LoRA (frozen base: no weight gradients).

    forward 2N + backward through activations 2N (+2N recompute with checkpointing), plus
    attention scores 4*L*h*s per pass-equivalent (Kaplan/Chinchilla-style accounting).
    """
    passes = 3 if checkpointing else 2  # fwd, bwd-activations, (re-fwd)
    attention = 2 * n_layers * hidden * seq_len * 2  # QK^T and AV, causal half counted fully
    return passes * (2 * n_params + attention)


class ThroughputCallback(TrainerCallback):
    """Seconds and tokens of every optimizer step, each step's own tokens (the trainer's
    ``num_input_tokens_seen`` before and after it), so the rate is right whatever ``logging_steps`` is."""

    def __init__(self, warmup_steps: int = 2):
        self.warmup = warmup_steps
        self.steps: list[tuple[float, float]] = []  # (seconds, tokens) per step
        self._t = None
        self._seen = 0

    def _sync(self):
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_train_begin(self, args, state, control, **kwargs):
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def on_step_begin(self, args, state, control, **kwargs):
        self._sync()
        self._t = time.perf_counter()
        self._seen = state.num_input_tokens_seen

    def on_step_end(self, args, state, control, **kwargs):
        self._sync()
        if self._t is not None:
            self.steps.append((time.perf_counter() - self._t, float(state.num_input_tokens_seen - self._seen)))

    def summary(self, model=None, checkpointing: bool = False, seq_len: int | None = None) -> dict:
        import torch

        timed = [(s, t) for s, t in self.steps[self.warmup :] if t]
        out = {"steps_timed": len(timed), "warmup_steps": self.warmup}
        if timed:
            rates = [t / s for s, t in timed]
            out.update(tokens_per_s_median=round(statistics.median(rates), 1),
                       step_s_median=round(statistics.median(s for s, _ in timed), 3))  # fmt: skip
        if torch.cuda.is_available():
            out["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            out["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
            name = torch.cuda.get_device_name()
            peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)
            if model is not None and peak and timed and seq_len:
                cfg = model.config
                n = sum(p.numel() for p in model.parameters())
                if getattr(model, "is_loaded_in_4bit", False) or any(
                    p.dtype == torch.uint8 for p in model.parameters()
                ):
                    n = _logical_params(cfg) or n  # 4-bit weights are packed two per byte
                fpt = train_flops_per_token(n, cfg.num_hidden_layers, cfg.hidden_size, seq_len, checkpointing)
                out["mfu"] = round(fpt * out["tokens_per_s_median"] / peak, 4)
                out["flops_per_token"] = fpt
        return out


def _logical_params(cfg) -> int | None:
    """Parameter count of a Llama-style config (for 4-bit models whose tensors are packed)."""
    try:
        h, i, v, n_layers = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size, cfg.num_hidden_layers
        kv = h * getattr(cfg, "num_key_value_heads", cfg.num_attention_heads) // cfg.num_attention_heads
    except AttributeError:
        return None
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h
    return n_layers * per_layer + 2 * v * h + h
