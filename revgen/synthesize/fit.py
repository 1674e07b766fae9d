"""The ``pmi`` fit of each candidate, scored where it was generated (``fit_score``, on by default).

``pmi`` (revgen/curate/scorers.py) is the mean over an instruction's tokens of log p(token | the
passage) minus log p(token | the template around an empty passage), under the backward model. When
the backend decodes a passage's candidates together the first half comes with
the generated tokens (generate/shared.py, generate/vllm_shared.py); the second is one short batched
pass (template + instruction, ~50 tokens) on the model the generator already holds. The scores go
into each record's ``meta["scores"]``, where ``revgen curate`` reads them instead of loading the
backward model again.
"""

from __future__ import annotations

from revgen.prompts import encode_prompt


def score(generator, template, completions: list) -> None:
    """Set ``c.scores = {"pmi", "cycle"}`` on every completion that stopped by itself."""
    todo = [c for c in completions if c.fit_ids and c.finish_reason == "stop"]
    if not todo:
        return
    plain = encode_prompt(generator.tokenizer, template.prompt(""))
    for c, unconditioned in zip(todo, generator.continuation_nll(plain, [c.fit_ids for c in todo])):
        n, cond = len(c.fit_ids), -sum(c.fit_logprobs)
        c.scores = {"pmi": round((unconditioned - cond) / n, 4), "cycle": round(-cond / n, 4)}
