"""``sdpa_gqa``: SDPA that lets torch handle grouped-query attention natively, mask or not.

transformers' ``sdpa`` copies every layer's KV cache ``num_key_value_groups`` times per decode
step (``repeat_kv``) whenever an attention mask is present, which left-padded batch generation
always has. On CPU that copy was 59% of decode time for SmolLM2 (9 query / 3 KV heads, batch 64).
torch's SDPA takes ``enable_gqa=True`` with a mask, so nothing is copied.

On CUDA, decode goes to SDPA itself (cuDNN reads a masked cache at 0.87-1.0x copy bandwidth on
an H200, bench/attention_decode.py), and models without grouped heads use transformers' own
``sdpa``, which compiles into the static-cache CUDA graph best (7,117 vs 4,676 tokens/s for a
Llama-2-7B shape; bench/RESULTS.md). :func:`choose` makes that call.
"""

from __future__ import annotations

NAME = "sdpa_gqa"


def sdpa_gqa_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs):
    import torch

    if attention_mask is not None and attention_mask.dim() == 4:
        attention_mask = attention_mask[:, :, :, : key.shape[-2]]
    groups = getattr(module, "num_key_value_groups", 1)
    if query.shape[2] == 1 and not module.training and not query.is_cuda:
        return _decode(query, key, value, attention_mask, groups, scaling), None
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = query.shape[2] > 1 and attention_mask is None and causal
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout if module.training else 0.0, scale=scaling,
        is_causal=causal, enable_gqa=groups > 1,
    )  # fmt: skip
    return out.transpose(1, 2).contiguous(), None


def _decode(query, key, value, mask, groups, scaling):
    """One query token: grouped matmuls broadcast over the KV heads, nothing copied."""
    import torch

    b, h, _, d = query.shape
    kvh, length = key.shape[1], key.shape[2]
    q = query.view(b, kvh, groups, d)  # (b, kvh, g, d)
    scores = torch.matmul(q, key.transpose(-1, -2)) * (scaling if scaling is not None else d**-0.5)  # (b, kvh, g, L)
    if mask is not None:
        mask = mask.reshape(mask.shape[0], 1, 1, length)  # batch dim may be broadcast (1)
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    probs = torch.softmax(scores.float(), dim=-1).to(value.dtype)
    out = torch.matmul(probs, value)  # (b, kvh, g, d)
    return out.view(b, h, 1, d).transpose(1, 2).contiguous()  # (b, 1, h, d) like SDPA's return


def register() -> str:
    """Register ``sdpa_gqa`` with transformers (idempotent); returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, sdpa_gqa_forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME


def choose(config, cuda: bool) -> str:
    """The attention implementation for generation: ``sdpa`` for plain multi-head models on CUDA,
    else ``sdpa_gqa`` (registered here)."""
    heads = getattr(config, "num_attention_heads", None)
    if cuda and heads and getattr(config, "num_key_value_heads", heads) == heads:
        return "sdpa"
    return register()
