"""revgen's own static-cache decode loop (``engine.decode: graphs``): one prefill, then every decode
step as one CUDA graph replay, captured per batch.

transformers' ``generate`` runs each decode step as a few hundred kernel launches from Python: for a
7B model at a few dozen sequences (a 24 GB card) that overhead, not the GPU, sets the pace. Here the
step ``model(token, position, mask, static cache)`` reads and writes only fixed buffers, so it is
captured once per batch (a warm-up step, then the capture: milliseconds, no compiler) and replayed.
Sampling runs outside the graph with transformers' own operations in its order (minimum new tokens,
temperature, top-p, softmax, multinomial on the global generator), so on CPU, where the same loop
runs without capture, the tokens equal ``generate``'s (tested). On CUDA they can differ from
``generate``'s: batches are cut at exact widths, not power-of-two buckets, and bf16 kernels round
differently with shape.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)
ALIGN = 8  # prompt width and cache length are padded to a multiple of this
CHECK_EVERY = 4  # decode steps between checks whether every sequence has stopped (each check syncs)


def generate(model, ids, mask, *, max_new: int, n: int, greedy: bool, temperature: float, top_p: float,
             stop_ids: list[int], ignore_eos: bool, pad_id: int, graphs: bool):  # fmt: skip
    """New tokens, ``(len(ids) * n, <= max_new)``, rows as ``generate``'s ``num_return_sequences``."""
    import torch
    from transformers import StaticCache

    if n > 1:
        ids, mask = ids.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)
    if ids.shape[1] % ALIGN:  # SDPA's memory-efficient kernel wants aligned mask rows (else it pads a copy)
        pad = ALIGN - ids.shape[1] % ALIGN
        ids = torch.nn.functional.pad(ids, (pad, 0), value=pad_id)
        mask = torch.nn.functional.pad(mask, (pad, 0), value=0)
    rows, width = ids.shape
    length = width + -(-max_new // ALIGN) * ALIGN
    device = ids.device
    cache = StaticCache(config=model.config, max_cache_len=length)
    position = (mask.long().cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=position, past_key_values=cache, use_cache=True,
                logits_to_keep=1)  # fmt: skip
    stops = torch.tensor(stop_ids, device=device, dtype=torch.long)
    unfinished = torch.ones(rows, dtype=torch.bool, device=device)

    def pick(logits):
        return sample(logits[:, -1, :], greedy=greedy, temperature=temperature, top_p=top_p,
                      banned=stops if ignore_eos and len(stop_ids) else None)  # fmt: skip

    # the decode step's inputs: fixed buffers, filled in place before each step
    token = torch.empty(rows, 1, dtype=torch.long, device=device)
    pos = position[:, -1:].clone()
    attend = torch.zeros(rows, 1, 1, length, dtype=torch.bool, device=device)
    attend[:, 0, 0, :width] = mask.bool()

    def step():
        return model(input_ids=token, attention_mask=attend, position_ids=pos, past_key_values=cache,
                     use_cache=True).logits  # fmt: skip

    new = []
    logits, graph, graph_out = out.logits, None, None
    for t in range(max_new):
        nxt = pick(logits)
        if not ignore_eos:  # as generate: a finished row continues with padding
            nxt = torch.where(unfinished, nxt, torch.full_like(nxt, pad_id))
            unfinished &= ~torch.isin(nxt, stops)
        new.append(nxt)
        if t == max_new - 1 or (not ignore_eos and (t + 1) % CHECK_EVERY == 0 and not bool(unfinished.any())):
            break
        token[:, 0] = nxt
        pos += 1
        attend[:, 0, 0, width + t] = True
        if graph is not None:
            graph.replay()
            logits = graph_out
        elif graphs and t == 0:
            logits, graph, graph_out = _capture(step)
        else:
            logits = step()
    return torch.stack(new, dim=1)


def sample(logits, *, greedy: bool, temperature: float, top_p: float, banned=None):
    """One token per row from last-position logits ``(rows, vocab)``, with transformers' operations in
    its order: banned tokens (min_new_tokens), temperature, top-p, softmax, multinomial."""
    import torch

    logits = logits.to(dtype=torch.float32, copy=True)
    if banned is not None:  # min_new_tokens = max_new_tokens
        logits[:, banned] = -float("inf")
    if greedy:
        return logits.argmax(-1)
    if temperature != 1.0:
        logits = logits / temperature
    if top_p < 1.0:  # transformers' TopPLogitsWarper
        ordered, order = torch.sort(logits, descending=False)
        drop = ordered.softmax(dim=-1).cumsum(dim=-1) <= (1 - top_p)
        drop[..., -1:] = 0
        logits = logits.masked_fill(drop.scatter(1, order, drop), -float("inf"))
    return torch.multinomial(torch.softmax(logits, dim=-1), num_samples=1).squeeze(1)


def _capture(step):
    """Run ``step`` once for real (the warm-up CUDA graphs need), then capture it: the warm-up's
    logits are this step's; the graph serves the next ones. A step that cannot be captured runs
    eagerly from then on (logged once)."""
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        logits = step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            graph_out = step()
    except Exception as exc:  # noqa: BLE001 - an uncapturable model still generates, only slower
        if not getattr(_capture, "warned", False):
            log.warning("decode: CUDA graph capture failed (%s): decoding eagerly", exc)
            _capture.warned = True
        return logits, None, None
    return logits, graph, graph_out
