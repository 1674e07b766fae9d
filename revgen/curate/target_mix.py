"""Best-of-N toward a target mix of leading words (``score.target_mix``), under a fit floor.

Plain best-of-N keeps each segment's best candidate by fit (pmi). A backward model's best is still
"What ...?" for most passages, so the kept set asks questions where real data would list, name or
explain. With a target mix (the seed data's first words, openers.json), a segment may keep another
of its candidates instead, but only one that fits nearly as well as its best (score >= best -
``fit_margin``), and only when the switch brings the kept set's leading-word mix closer to the
target (total variation). Switches are taken cheapest first (smallest loss of fit), each segment
at most once: a passage is never given a kind of instruction that does not fit it.

The target is ``seed`` (the backward model's openers.json) or the user's own mix of first words,
``"List=3,Give=2,What=5"`` or the same as a mapping (weights, normalised; case does not matter).
"""

from __future__ import annotations

from revgen.config import parse_weights
from revgen.evaluate.mix import leading_word, total_variation


def target_from_openers(counts: dict) -> dict[str, float]:
    """The seed's first words (as openers.json writes them, "What", "List") as shares of lowercase words."""
    merged: dict[str, float] = {}
    for word, n in counts.items():
        key = leading_word(word)
        merged[key] = merged.get(key, 0) + n
    total = sum(merged.values()) or 1
    return {w: n / total for w, n in merged.items()}


def target_from_spec(spec: str | dict) -> dict[str, float]:
    """A user's mix, ``"WORD=WEIGHT,WORD=WEIGHT"`` or a mapping, as shares of lowercase first words."""
    return target_from_openers(
        parse_weights(spec, "score.target_mix", "seed or WORD=WEIGHT,WORD=WEIGHT (e.g. List=3,What=5)")
    )


def choose(groups: list[list[int]], values: list, instructions: list[str], target: dict[str, float],
           margin: float) -> tuple[list[int], dict]:  # fmt: skip
    """One index per group (``values[i]``: fit, higher is better; None: not scored); and what moved."""
    words = [leading_word(t) for t in instructions]
    chosen, moves = [], []
    for g, members in enumerate(groups):
        scored = [i for i in members if values[i] is not None]
        if not scored:
            chosen.append(None)
            continue
        best = max(scored, key=lambda i: values[i])
        chosen.append(best)
        moves += [(values[best] - values[i], g, i) for i in scored if i != best and values[best] - values[i] <= margin]
    n = sum(c is not None for c in chosen)
    want = {w: share * n for w, share in target.items()}
    have: dict[str, int] = {}
    for c in chosen:
        if c is not None:
            have[words[c]] = have.get(words[c], 0) + 1
    before = _tv(have, target, n)
    moved: set[int] = set()
    for loss, g, i in sorted(moves):
        old, new = words[chosen[g]], words[i]
        if g in moved or old == new:
            continue
        gain = (abs(have[old] - want.get(old, 0)) - abs(have[old] - 1 - want.get(old, 0))
                + abs(have.get(new, 0) - want.get(new, 0)) - abs(have.get(new, 0) + 1 - want.get(new, 0)))  # fmt: skip
        if gain <= 0:
            continue
        have[old] -= 1
        have[new] = have.get(new, 0) + 1
        chosen[g] = i
        moved.add(g)
    return chosen, {"fit_margin": margin, "switched": len(moved), "tv_leading_word_to_target_before": before,
                    "tv_leading_word_to_target_after": _tv(have, target, n)}  # fmt: skip


def _tv(have: dict, target: dict, n: int) -> float:
    return total_variation({w: c / max(n, 1) for w, c in have.items()}, target)
