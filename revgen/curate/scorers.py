"""Curation scores for (instruction, output) pairs, each from one batched teacher-forced pass.

- ``rubric``: Humpback's 5-point rubric, then the probability the judge puts on "1".."5" right
  after a forced "Score:" (no generated text to parse, so every record gets a score). The score is
  the expected value over the five; ``rubric_argmax`` is kept beside it. Higher is better.
- ``ifd``: instruction-following difficulty (Li et al. 2023), PPL(output | instruction) /
  PPL(output) under a forward model; low means the instruction explains the output. Lower is better.
- ``cycle``: mean log p(instruction | output) under the backward model, with its own template:
  would the backward model write this instruction for this output? Higher is better.

Any scorer can use any model: the embedded default, a local folder, a Hub id, or an adapter dir
from ``revgen train`` (a forward model trained on the seed data is Humpback's M0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from revgen.errors import UserError

SCORERS = ("rubric", "ifd", "cycle")
RUBRIC_BACKENDS = ("transformers", "vllm", "openai")
HIGHER_IS_BETTER = {"rubric": True, "ifd": False, "cycle": True}


def load_model(ref: str, dtype: str = "auto"):
    """``(model, tokenizer, dir)``: an adapter dir (base + adapter, merged), or a plain model."""
    from revgen.lm import load_causal_lm
    from revgen.models import adapter_base_model, resolve_model

    path = Path(ref)
    if (path / "adapter_config.json").is_file():
        model, tok = load_causal_lm(adapter_base_model(path), str(path), dtype)
        return model, tok, path
    model, tok = load_causal_lm(resolve_model(ref), None, dtype)
    return model, tok, None


def score_token_ids(tokenizer) -> tuple[str, list[int]]:
    """A prompt suffix and the five token ids that can follow it for "1".."5" (one token each)."""
    for suffix, pad in (("Score:", " "), ("Score: ", "")):
        base = tokenizer(suffix, add_special_tokens=False)["input_ids"]
        ids = []
        for d in "12345":
            full = tokenizer(suffix + pad + d, add_special_tokens=False)["input_ids"]
            if full[: len(base)] != base or len(full) != len(base) + 1:
                break
            ids.append(full[-1])
        if len(ids) == 5 and len(set(ids)) == 5:
            return suffix, ids
    raise UserError("the judge's tokenizer has no single tokens for the scores 1-5 after 'Score:'")


def rubric_text(record: dict) -> str:
    """Humpback's rubric for one record, asking for the score alone ("Score: <rating>")."""
    from revgen.curate.judge import RUBRIC

    text = RUBRIC.replace("{instruction}", record["instruction"]).replace("{output}", record["output"])
    return text.replace('Please first provide a brief reasoning you used to derive the rating score, and then write '
                        '"Score: <rating>" in the last line.', 'Answer with "Score: <rating>".')  # fmt: skip


class Rubric:
    """Log-probability rubric scores (see the module doc)."""

    name = "rubric"

    def __init__(self, model, tokenizer, batch_size: int = 8):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.suffix, self.ids = score_token_ids(tokenizer)

    def prompt(self, record: dict) -> str:
        text = rubric_text(record)
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
        else:
            text += "\n\n"
        return text + self.suffix

    def probabilities(self, records: list[dict]) -> list[list[float]]:
        """P("1".."5" | prompt), renormalised over the five, for each record."""
        import torch

        out = []
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        prompts = [self.tokenizer(self.prompt(r))["input_ids"] for r in records]
        for start in range(0, len(prompts), self.batch_size):
            batch = prompts[start : start + self.batch_size]
            width = max(map(len, batch))
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, p in enumerate(batch):  # left padding: the last position is every prompt's end
                ids[row, width - len(p) :] = torch.tensor(p)
                mask[row, width - len(p) :] = 1
            with torch.inference_mode():
                logits = self.model(input_ids=ids.to(self.model.device), attention_mask=mask.to(self.model.device)).logits
            probs = torch.softmax(logits[:, -1, self.ids].float(), dim=-1)
            out.extend(probs.tolist())
        return out

    def score(self, records: list[dict]) -> list[dict]:
        """Expected score and argmax per record (None for a judge reply with no score digit)."""
        res = []
        for p in self.probabilities(records):
            if p is None:
                res.append({"rubric": None, "rubric_argmax": None})
                continue
            res.append({"rubric": round(sum((i + 1) * x for i, x in enumerate(p)), 4),
                        "rubric_argmax": max(range(5), key=lambda i: p[i]) + 1})  # fmt: skip
        return res

    parse_rate = 1.0  # log-probabilities of the score tokens: every record is scored

    def close(self) -> None:
        pass


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


@dataclass
class Selection:
    """Which records a score keeps: ``threshold`` (kept if at least / at most it, by the score's
    direction), ``top_k`` or ``top_fraction`` best; any combination applies all."""

    score: str = "cycle"
    threshold: float | None = None
    top_k: int | None = None
    top_fraction: float | None = None

    def __post_init__(self):
        base = self.score.removesuffix("_argmax")
        if base not in HIGHER_IS_BETTER:
            raise UserError(f"select.score must be one of {sorted(HIGHER_IS_BETTER)}, got {self.score!r}")
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
    judge can also run on an in-process vLLM engine or a server (revgen/curate/rubric_backends.py)."""
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
            from revgen.curate.rubric_backends import VLLMRubric

            out.append(VLLMRubric(judge, dtype=dtype))
        elif name == "rubric" and rubric_backend == "openai":
            from revgen.curate.rubric_backends import ServerRubric

            out.append(ServerRubric(**(server or {})))
        elif name == "rubric":
            model, tok, _ = get(judge)
            out.append(Rubric(model, tok, batch_size))
        elif name == "ifd":
            model, tok, d = get(forward)
            out.append(IFD(model, tok, d, batch_size))
        else:
            model, tok, d = get(backward)
            out.append(Cycle(model, tok, d, batch_size))
    return out
