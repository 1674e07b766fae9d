"""Self-curation (Humpback, Li et al. 2023): a judge model rates each pair 1-5 with the paper's
rubric; records scoring below ``min_score`` are dropped. The parser is strict (the last non-empty
line must read ``Score: N``), and the share it could not parse is reported, never hidden.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RUBRIC = """Below is an instruction from an user and a candidate answer. Evaluate whether or not the answer is a good example of how AI Assistant should respond to the user's instruction. Please assign a score using the following 5-point scale:
1: It means the answer is incomplete, vague, off-topic, controversial, or not exactly what the user asked for. For example, some content seems missing, numbered list does not start from the beginning, the opening sentence repeats user's question. Or the response is from another person's perspective with their personal experience (e.g. taken from blog posts), or looks like an answer from a forum. Or it contains promotional text, navigation text, or other irrelevant information.
2: It means the answer addresses most of the asks from the user. It does not directly address the user's question. For example, it only provides a high-level methodology instead of the exact solution to user's question.
3: It means the answer is helpful but not written by an AI Assistant. It addresses all the basic asks from the user. It is complete and self contained with the drawback that the response is not written from an AI assistant's perspective, but from other people's perspective. The content looks like an excerpt from a blog post, web page, or web search results. For example, it contains personal experience or opinion, mentions comments section, or share on social media, etc.
4: It means the answer is written from an AI assistant's perspective with a clear focus of addressing the instruction. It provide a complete, clear, and comprehensive response to user's question or instruction without missing or irrelevant information. It is well organized, self-contained, and written in a helpful tone. It has minor room for improvement, e.g. more concise and focused.
5: It means it is a perfect answer from an AI Assistant. It has a clear focus on being a helpful AI Assistant, where the response looks like intentionally written to address the user's question or instruction without any irrelevant sentences. The answer provides high quality content, demonstrating expert knowledge in the area, is very well written, logical, easy-to-follow, engaging and insightful.

Please first provide a brief reasoning you used to derive the rating score, and then write "Score: <rating>" in the last line.

{instruction}

{output}"""

_SCORE = re.compile(r"^\W*score\W*:?\s*\**\s*([1-5])(?:\s*/\s*5)?\s*\**\.?\s*$", re.I)


def parse_score(text: str) -> int | None:
    """The score on the last non-empty line (``Score: 4``, ``**Score:** 4``, ``Score: 4/5``), else None."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return None
    m = _SCORE.match(lines[-1].strip())
    return int(m.group(1)) if m else None


@dataclass
class Judged:
    score: int | None
    raw: str
    finish_reason: str


class Judge:
    """Wraps any generator backend; prompts go through the judge's own chat template."""

    def __init__(self, generator, max_new_tokens: int = 256):
        self.generator, self.max_new_tokens = generator, max_new_tokens

    def prompt_ids(self, record: dict) -> list[int]:
        text = RUBRIC.replace("{instruction}", record["instruction"]).replace("{output}", record["output"])
        tok = self.generator.tokenizer
        if getattr(tok, "chat_template", None):
            enc = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                          tokenize=True, return_dict=True)  # fmt: skip
            return list(enc["input_ids"])
        return tok(text)["input_ids"]

    def score(self, records: list[dict]) -> list[Judged]:
        from revgen.generate import Sampling

        sampling = Sampling(temperature=0.0, max_new_tokens=self.max_new_tokens)
        outs = self.generator.generate([self.prompt_ids(r) for r in records], sampling, [0] * len(records))
        return [Judged(parse_score(c[0].text), c[0].text, c[0].finish_reason) for c in outs]
