"""Candidates that share a passage, decoded on one prefill of it, with their fit read off the logits.

``synthesize --openers N`` asks for 1 + N instructions per passage whose prompts differ only in the
last few tokens (a forced opener: "List", "Which"). ``generate`` runs the common prefix of a
passage's prompts once, copies its KV cache to every candidate, feeds each candidate's remaining
prompt tokens, and then decodes all candidates together. The prefill is most of a CPU job's compute
(a passage is ~300 tokens, an instruction ~20), so N + 1 candidates cost about one.

The same logits give ``log p(token | passage)`` of every instruction token: the forced opener's
(from the prompt positions) and each generated one (raw logits, before temperature and top-p),
the stop token included as trl trains it. That is the conditional half of the ``pmi`` fit score
(revgen/curate/scorers.py) without another pass over the passage.
"""

from __future__ import annotations


def common_prefix(prompts: list[list[int]]) -> int:
    """Length of the prefix every prompt shares, leaving each at least one token of its own."""
    n = min(len(p) for p in prompts) - 1
    first = prompts[0]
    for i in range(n):
        if any(p[i] != first[i] for p in prompts[1:]):
            return i
    return n


def generate(model, groups: list[list[list[int]]], *, max_new: int, greedy: bool, temperature: float, top_p: float,
             stop_ids: list[int], ignore_eos: bool, pad_id: int) -> list[list[tuple[list[int], list[float], list[float]]]]:  # fmt: skip
    """Per group (a passage's prompts), per prompt: ``(new tokens, log-probabilities of its prompt
    tokens after the shared prefix, log-probabilities of the new tokens)``; new tokens stop at (and
    include) the first stop token."""
    import torch

    from revgen.generate.decode import sample

    device = model.device
    cut = [max(common_prefix(g), 1) if min(map(len, g)) > 1 else 0 for g in groups]
    if not all(cut):  # a one-token prompt has nothing to share
        raise ValueError("every prompt needs at least two tokens")
    heads = [g[0][:c] for g, c in zip(groups, cut)]
    width = max(map(len, heads))
    ids = torch.full((len(heads), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, h in enumerate(heads):  # left padding: every head ends at the last column
        ids[r, width - len(h) :], mask[r, width - len(h) :] = torch.tensor(h), 1
    ids, mask = ids.to(device), mask.to(device)
    first = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0), use_cache=True,
                  logits_to_keep=1)  # fmt: skip
    rows = [(g, p[c:]) for g, (prompts, c) in enumerate(zip(groups, cut)) for p in prompts]
    which = torch.tensor([g for g, _ in rows], device=device)
    cache = first.past_key_values
    cache.reorder_cache(which)  # each candidate continues its passage's cache
    span = max(len(t) for _, t in rows)
    tail = torch.full((len(rows), span), pad_id, dtype=torch.long)
    tmask = torch.zeros_like(tail)
    for r, (_, t) in enumerate(rows):  # left padding inside the tail: every prompt ends at the last column
        tail[r, span - len(t) :], tmask[r, span - len(t) :] = torch.tensor(t), 1
    tail, tmask = tail.to(device), tmask.to(device)
    starts = torch.tensor([len(heads[g]) for g, _ in rows], device=device)[:, None]
    attend = torch.cat([mask[which], tmask], 1)
    out = model(input_ids=tail, attention_mask=attend, position_ids=starts + (tmask.cumsum(1) - 1).clamp(min=0),
                past_key_values=cache, use_cache=True)  # fmt: skip
    # a tail token is predicted by the position before it: the head's last for the first, then the tail's own
    before = torch.cat([first.logits[which, -1:], out.logits[:, :-1]], 1).float().log_softmax(-1)
    prompt_lp = before.gather(2, tail[:, :, None]).squeeze(2).tolist()
    forced = [prompt_lp[r][span - len(t) :] for r, (_, t) in enumerate(rows)]
    stops = set(stop_ids)
    banned = torch.tensor(stop_ids, device=device, dtype=torch.long) if ignore_eos and stop_ids else None
    tokens: list[list[int]] = [[] for _ in rows]
    logprobs: list[list[float]] = [[] for _ in rows]
    alive = list(range(len(rows)))  # rows still decoding; a finished row leaves the batch (and the cache)
    position = starts + tmask.sum(1, keepdim=True)
    logits, cache = out.logits[:, -1, :], out.past_key_values
    for step in range(max_new):
        nxt = sample(logits, greedy=greedy, temperature=temperature, top_p=top_p, banned=banned)
        lp = logits.float().log_softmax(-1).gather(1, nxt[:, None]).squeeze(1)
        done = []
        for k, (r, t, v) in enumerate(zip(alive, nxt.tolist(), lp.tolist())):
            tokens[r].append(t)
            logprobs[r].append(v)
            if t in stops and not ignore_eos:
                done.append(k)
        if step == max_new - 1 or len(done) == len(alive):
            break
        if done:  # drop the finished rows: decoding costs what is still being generated, not the batch
            keep = torch.tensor([k for k in range(len(alive)) if k not in set(done)], device=device)
            cache.reorder_cache(keep)
            alive = [alive[k] for k in keep.tolist()]
            nxt, attend, position = nxt[keep], attend[keep], position[keep]
        attend = torch.cat([attend, torch.ones_like(attend[:, :1])], 1)
        out = model(input_ids=nxt[:, None], attention_mask=attend, position_ids=position, past_key_values=cache,
                    use_cache=True)  # fmt: skip
        position = position + 1
        logits = out.logits[:, -1, :]
    results: list[list] = [[] for _ in groups]
    for r, (g, _) in enumerate(rows):
        results[g].append((tokens[r], forced[r], logprobs[r]))
    return results
