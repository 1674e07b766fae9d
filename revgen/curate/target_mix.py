"""Best-of-N toward a target mix of leading words (``score.target_mix``), under a fit floor.

Plain best-of-N keeps each segment's best candidate by fit (pmi). A backward model's best is still
"What ...?" for most passages, so the kept set asks questions where real data would list, name or
explain. With a target mix (the seed data's first words, openers.json), a segment may keep another
of its candidates instead, but only one that fits nearly as well as its best (score >= best -
``fit_margin``), and only when the switch brings the kept set's leading-word mix closer to the
target (total variation). Switches are taken cheapest first (smallest loss of fit), each segment
at most once: a passage is never given a kind of instruction that does not fit it. A switch counts
twice when it also moves the share of questions toward the target's (a "What" to "Who" switch
fixes a word, a "What" to "List" one also fixes the kind): word-level TV alone left the quick start's
kept set at 0.78 questions against the seed's 0.66 (bench/RESULTS.md, issue #41). A fit floor
(``select.top_fraction``) drops passages by their best candidate's fit before the switch, so the
mix it reaches is the kept set's (ranked after it, the switched picks were the first dropped).

The target is ``seed`` (the backward model's openers.json) or the user's own mix of first words,
``"List=3,Give=2,What=5"`` or the same as a mapping (weights, normalised; case does not matter).
"""

from __future__ import annotations

from revgen.config import parse_weights
from revgen.evaluate.mix import kind, leading_word, total_variation
from revgen.openers import opens_question


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
           margin: float, count_kinds: bool = True) -> tuple[list[int], dict]:  # fmt: skip
    """One index per group (``values[i]``: fit, higher is better; None: not scored); and what moved.
    ``count_kinds=False``: a switch is judged on the first words alone (the rule before 2026-12-05,
    kept for the value bench's ablation, bench/value.py ``S+default-words``)."""
    words = [leading_word(t) for t in instructions]
    kinds = [kind(t) for t in instructions]
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
    question_share = sum(share for w, share in target.items() if opens_question(w))
    want = {w: share * n for w, share in target.items()}
    want_kind = {"question": question_share * n, "request": (1 - question_share) * n}
    have: dict[str, int] = {}
    have_kind = {"question": 0, "request": 0}
    for c in chosen:
        if c is not None:
            have[words[c]] = have.get(words[c], 0) + 1
            have_kind[kinds[c]] += 1
    before, questions_before = _tv(have, target, n), _share(have_kind, n)
    moved: set[int] = set()
    for loss, g, i in sorted(moves):
        old, new = chosen[g], i
        if g in moved or words[old] == words[new]:
            continue
        gain = _gain(have, want, words[old], words[new])
        if count_kinds and kinds[old] != kinds[new]:
            gain += _gain(have_kind, want_kind, kinds[old], kinds[new])
        if gain <= 0:
            continue
        have[words[old]] -= 1
        have[words[new]] = have.get(words[new], 0) + 1
        have_kind[kinds[old]] -= 1
        have_kind[kinds[new]] += 1
        chosen[g] = i
        moved.add(g)
    return chosen, {"fit_margin": margin, "switched": len(moved), "tv_leading_word_to_target_before": before,
                    "tv_leading_word_to_target_after": _tv(have, target, n),
                    "question_share_target": round(question_share, 4), "question_share_before": questions_before,
                    "question_share_after": _share(have_kind, n)}  # fmt: skip


def _gain(have: dict, want: dict, old: str, new: str) -> float:
    """How much closer to ``want`` the counts come when one of ``old`` becomes one of ``new``."""
    return (abs(have.get(old, 0) - want.get(old, 0)) - abs(have.get(old, 0) - 1 - want.get(old, 0))
            + abs(have.get(new, 0) - want.get(new, 0)) - abs(have.get(new, 0) + 1 - want.get(new, 0)))  # fmt: skip


def _share(have_kind: dict, n: int) -> float:
    return round(have_kind["question"] / max(n, 1), 4)


def _tv(have: dict, target: dict, n: int) -> float:
    return total_variation({w: c / max(n, 1) for w, c in have.items()}, target)
