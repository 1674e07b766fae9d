"""A passage's candidates on vLLM, with their fit read off vLLM's own log-probabilities.

vLLM's prefix cache already prefills a passage once for all its candidates (in whole KV blocks: 128
tokens on CPU). What generate/shared.py reads off the logits of its shared prefill, vLLM returns per
request: each generated token's log-probability (``logprobs=0``; vLLM's default ``logprobs_mode``
is the raw logits' log-softmax, before temperature and top-p, as in generate/shared.py), and a
forced opener token's through ``logprob_token_ids`` on a request whose prompt ends where that token
begins. That is the free candidate's own request for an opener's first token; an opener of several
tokens adds a one-token probe per further token (on the prefix cache, so it costs the last block).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Request:
    prompt: list[int]
    seed: int
    n: int = 1
    probe: bool = False  # one new token, only to read ``score``'s log-probabilities at its first position
    score: list[int] = field(default_factory=list)  # token ids whose log p at the first new position is read
    members: list[int] = field(default_factory=list)  # the candidates it samples for (flat index)


def plan(groups: list[list[tuple[list[int], int]]], seeds: list[list[int]]) -> tuple[list[Request], list, list]:
    """Requests for every group's candidates ``(prompt ids, forced tokens at its end)``, seeded by
    ``seeds[g][j]``; returns them, each candidate's (group, j), and for each candidate its forced
    tokens as ``(request index, token id)``. Identical consecutive free candidates (same prompt and
    seed) are one request of ``n`` samples, as vLLM draws them distinct."""
    requests: list[Request] = []
    cands: list[tuple[int, int]] = []
    ends: dict[tuple, int] = {}  # a prompt -> the request that ends with it
    for g, group in enumerate(groups):
        for j, (prompt, forced) in enumerate(group):
            if j and not forced and group[j - 1] == (prompt, 0) and seeds[g][j - 1] == seeds[g][j]:
                requests[-1].n += 1  # the previous candidate's request: one more sample
            else:
                ends.setdefault(tuple(prompt), len(requests))
                requests.append(Request(list(prompt), seeds[g][j]))
            requests[-1].members.append(len(cands))
            cands.append((g, j))
    forced_at: list[list[tuple[int, int]]] = []
    for g, j in cands:
        prompt, forced = groups[g][j]
        at = []
        for pos in range(len(prompt) - forced, len(prompt)):
            head = tuple(prompt[:pos])
            if head not in ends:
                ends[head] = len(requests)
                requests.append(Request(list(head), seeds[g][j], probe=True))
            r = requests[ends[head]]
            if prompt[pos] not in r.score:
                r.score.append(prompt[pos])
            at.append((ends[head], prompt[pos]))
        forced_at.append(at)
    return requests, cands, forced_at
