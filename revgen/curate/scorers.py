"""Curation scores for (instruction, output) pairs, each from one batched teacher-forced pass.

- ``rubric``: Humpback's 5-point rubric, then the probability the judge puts on "1".."5" right
  after a forced "Score:" (no generated text to parse, so every record gets a score). The score is
  the expected value over the five; ``rubric_argmax`` is kept beside it. Higher is better.
- ``ifd``: instruction-following difficulty (Li et al. 2023), PPL(output | instruction) /
  PPL(output) under a forward model; low means the instruction explains the output. Lower is better.
- ``cycle``: mean log p(instruction | output) under the backward model, with its own template:
  would the backward model write this instruction for this output? Higher is better.
- ``pmi``: ``cycle`` minus the mean log p(instruction | an empty output): how much this output, not
  fluency or length, raises the instruction's probability. The fit score that picks among
  ``synthesize --openers`` candidates (``best_of_candidates``). Higher is better.

Any scorer can use any model: the embedded default, a local folder, a Hub id, or an adapter dir
from ``revgen train`` (a forward model trained on the seed data is Humpback's M0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from revgen.curate.rubric import Rubric, rubric_text, score_token_ids  # noqa: F401 (public here too)
from revgen.errors import UserError

SCORERS = ("rubric", "ifd", "cycle", "pmi")
RUBRIC_BACKENDS = ("transformers", "vllm", "openai")
HIGHER_IS_BETTER = {"rubric": True, "ifd": False, "cycle": True, "pmi": True}
# each score's scale, for checking a selection threshold: (low, high, in words)
SCALES = {"rubric": (1, 5, "the rubric's expected score in [1, 5]"),
          "rubric_argmax": (1, 5, "the rubric's most likely score in [1, 5]"),
          "ifd": (0, math.inf, "a perplexity ratio > 0 (lower is better; 1 = the instruction does not help)"),
          "cycle": (-math.inf, 0, "a mean log-probability <= 0 (e.g. -1.5)"),
          "pmi": (-math.inf, math.inf, "a mean log-probability difference (e.g. 0.5; > 0: the output helps)")}  # fmt: skip


def load_model(ref: str, dtype: str = "auto"):
    """``(model, tokenizer, dir)``: an adapter dir (base + adapter, merged), or a plain model."""
    from revgen import dtypes
    from revgen.lm import load_causal_lm
    from revgen.models import adapter_base_model, merged_dir, resolve_model

    path = Path(ref)
    if (path / "adapter_config.json").is_file():
        base = adapter_base_model(path)
        made = merged_dir(path, base, dtypes.resolve(dtype, stage="score"), create=False)  # synthesis's merged copy
        model, tok = load_causal_lm(str(made), None, dtype) if made else load_causal_lm(base, str(path), dtype)
        return model, tok, path
    model, tok = load_causal_lm(resolve_model(ref), None, dtype)
    return model, tok, None


class IFD:
    """PPL(output | instruction) / PPL(output) under a forward model (its own forward template)."""

    name = "ifd"

    def __init__(self, model, tokenizer, model_dir: Path | None = None, batch_size: int = 8, max_length: int = 1024):
        from revgen.lm import Scorer
        from revgen.prompts import FORWARD_TEMPLATE_FILE, get_forward_template

        has_template = model_dir is not None and (model_dir / FORWARD_TEMPLATE_FILE).is_file()
        self.template = get_forward_template(str(model_dir) if has_template else "alpaca")
        self.tokenizer, self.scorer = tokenizer, Scorer(model, tokenizer, batch_size, max_length)

    def score(self, records: list[dict]) -> list[dict]:
        outputs = [r["output"] for r in records]
        cond = self.scorer.nll([self.template.prompt(r["instruction"], r.get("input", ""), self.tokenizer)
                                for r in records], outputs)  # fmt: skip
        plain = self.scorer.nll([""] * len(records), outputs)
        return [{"ifd": round(math.exp(c / max(n, 1) - u / max(m, 1)), 4)} for (c, n), (u, m) in zip(cond, plain)]


class Cycle:
    """Mean log p(instruction | output) under the backward model and its template."""

    name = "cycle"

    def __init__(self, model, tokenizer, model_dir: Path | None = None, batch_size: int = 8, max_length: int = 1024):
        from revgen.lm import Scorer
        from revgen.prompts import get_template

        self.template = get_template(str(model_dir) if model_dir and (model_dir / "template.txt").is_file() else "seed")
        self.scorer = Scorer(model, tokenizer, batch_size, max_length)

    def score(self, records: list[dict]) -> list[dict]:
        res = self.scorer.nll([self.template.prompt(r["output"]) for r in records], [r["instruction"] for r in records])
        return [{"cycle": round(-s / max(n, 1), 4)} for s, n in res]


class PMI(Cycle):
    """``cycle`` minus mean log p(instruction | the template around an empty output)."""

    name = "pmi"

    def score(self, records: list[dict]) -> list[dict]:
        instructions = [r["instruction"] for r in records]
        cond = self.scorer.nll([self.template.prompt(r["output"]) for r in records], instructions)
        # the same instruction tokens in both passes: a long output cuts the conditional one at
        # max_length, and the whole instruction's unconditional sum over the cut one's few tokens
        # gave a pmi of 50 and more (such a candidate won its passage and passed any floor)
        plain = self.scorer.nll([self.template.prompt("")] * len(records), instructions, [n for _, n in cond])
        return [{"pmi": round((u - c) / max(n, 1), 4)} for (c, n), (u, _) in zip(cond, plain)]


@dataclass
class Selection:
    """Which records a score keeps: ``threshold`` (kept if at least / at most it, by the score's
    direction), ``top_k`` or ``top_fraction`` best; any combination applies all."""

    score: str = "cycle"
    threshold: float | None = None
    top_k: int | None = None
    top_fraction: float | None = None

    def __post_init__(self):
        if self.score not in SCALES:
            raise UserError(f"select.score must be one of {sorted(SCALES)}, got {self.score!r}")
        if self.threshold is not None:
            low, high, words = SCALES[self.score]
            if not low <= self.threshold <= high or (self.score == "ifd" and self.threshold == 0):
                raise UserError(f"select.threshold for {self.score} must be {words}, got {self.threshold}")
        if self.top_k is not None and self.top_k < 1:
            raise UserError(f"select.top_k must be at least 1, got {self.top_k}")
        if self.top_fraction is not None and not 0 < self.top_fraction <= 1:
            raise UserError(f"select.top_fraction must be in (0, 1], got {self.top_fraction}")

    def keep(self, scores: list[float | None]) -> list[bool]:
        """One flag per record, in order; ties at the cut are kept in input order; an unscored
        record (None: a server judge that wrote no score) is never kept by a selection."""
        higher = HIGHER_IS_BETTER[self.score.removesuffix("_argmax")]
        keep = [s is not None for s in scores]
        if self.threshold is not None:
            keep = [k and (s >= self.threshold if higher else s <= self.threshold) for k, s in zip(keep, scores)]
        n = len(scores)
        limits = [x for x in (self.top_k, math.ceil(self.top_fraction * n) if self.top_fraction else None) if x]
        if limits:
            rank = lambda i: math.inf if scores[i] is None else (-scores[i] if higher else scores[i])  # noqa: E731
            order = sorted(range(n), key=rank)  # stable: input order on ties
            best = set(order[: min(limits)])
            keep = [k and i in best for i, k in enumerate(keep)]
        return keep


def build(names: list[str], *, judge: str, forward: str, backward: str, dtype: str = "auto", batch_size: int = 8,
          rubric_backend: str = "transformers", server: dict | None = None):  # fmt: skip
    """The scorers named, each with its model loaded once (one model may serve several). The rubric
    judge can also run on an in-process vLLM engine or a server (revgen/curate/rubric.py)."""
    if rubric_backend not in RUBRIC_BACKENDS:
        raise UserError(f"score.rubric_backend must be one of {RUBRIC_BACKENDS}, got {rubric_backend!r}")
    unknown = sorted(set(names) - set(SCORERS))
    if unknown:
        raise UserError(f"unknown scorer(s) {unknown}; expected some of {list(SCORERS)}")
    loaded: dict = {}

    def get(ref):
        if ref not in loaded:
            loaded[ref] = load_model(ref, dtype)
        return loaded[ref]

    out = []
    for name in names:
        if name == "rubric" and rubric_backend == "vllm":
            from revgen.curate.rubric import VLLMRubric

            out.append(VLLMRubric(judge, dtype=dtype))
        elif name == "rubric" and rubric_backend == "openai":
            from revgen.curate.rubric import ServerRubric

            out.append(ServerRubric(**(server or {})))
        elif name == "rubric":
            model, tok, _ = get(judge)
            out.append(Rubric(model, tok, batch_size))
        elif name == "ifd":
            model, tok, d = get(forward)
            out.append(IFD(model, tok, d, batch_size))
        else:
            model, tok, d = get(backward)
            out.append((PMI if name == "pmi" else Cycle)(model, tok, d, batch_size))
    return out
