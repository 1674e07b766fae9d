"""Instruction-side filters (the generated text), with the rule each comes from.

- length: Alpaca dropped instructions of <= 3 or > 150 words; revgen keeps 3 ("What is Terraform?":
  6 of 180 good Dolly instructions were 3 words).
- media words: Alpaca's blacklist of things a text model cannot see or make.
- unseen reference: REInstruct's "this passage", "based on the information provided"... when
  the record's input is empty the reader has no passage to look at.
- refusal, template leakage, copying the output, not an instruction at all.
"""

from __future__ import annotations

import re

from revgen.curate.filters.base import Filter

WORD = re.compile(r"\w+(?:'\w+)?")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


class Empty(Filter):
    name = "empty"

    def __call__(self, r):
        return bool(r["instruction"].strip())


class WordCount(Filter):
    name = "length"

    def __init__(self, min_words: int | None = 4, max_words: int | None = 150):
        self.min_words, self.max_words = min_words, max_words

    def __call__(self, r):
        n = len(r["instruction"].split())
        if self.min_words is not None and n < self.min_words:
            return False, "too_short"
        if self.max_words is not None and n > self.max_words:
            return False, "too_long"
        return True


class _Patterns(Filter):
    patterns: tuple = ()

    def __init__(self, patterns: list[str] | None = None):
        self.patterns = tuple(patterns) if patterns is not None else self.patterns
        self._re = re.compile("|".join(f"(?:{p})" for p in self.patterns), re.I) if self.patterns else None

    def hit(self, text: str) -> bool:
        return bool(self._re and self._re.search(text))


class TemplateLeak(_Patterns):
    name = "template_leak"
    patterns = (r"###\s*(?:response|input|instruction)\b", r"<\|im_(?:start|end)\|>", r"</?s>")

    def __call__(self, r):
        return not self.hit(r["instruction"])


class Refusal(_Patterns):
    name = "refusal"
    patterns = (r"\bI(?:'m| am) (?:sorry|unable|not able)\b", r"\bI (?:cannot|can't|can not|won't)\b",
                r"\bas an (?:AI|artificial intelligence|language model)\b", r"\bI apologi[sz]e\b",
                r"\b(?:sorry|unfortunately), (?:but )?I\b")  # fmt: skip

    def __call__(self, r):
        return not self.hit(r["instruction"])


class UnseenReference(_Patterns):
    """References to a text the reader of the instruction cannot see (REInstruct)."""

    name = "unseen_reference"
    # "the output of `ls`", "the story of how film started" name what they mean (technical text,
    # Dolly), so input/output/story count only when no "of" follows; an instruction that ends on
    # "the following code" points at code it does not hold (tuned on bench/tech_docs.py's tuning
    # modules).
    patterns = (r"\b(?:this|the|above|given|following|provided|preceding) (?:passage|text|paragraph|article|"
                r"excerpt|document|response|(?:input|output|story)(?! of\b)|answer|essay|reference text)\b",
                r"\bthe following (?:code|snippet|program|command|function)s?\s*[?.:]?\s*$",
                r"\bthe (?:text|passage|paragraph|information|answer) (?:above|below|provided|given)\b",
                r"\bbased on (?:the|this) (?:information|text|passage|input|context)\b",
                r"\b(?:above|aforementioned)\b", r"\baccording to the (?:text|passage|article|author)\b")  # fmt: skip

    def __call__(self, r):
        return bool(r.get("input", "").strip()) or not self.hit(r["instruction"])


class MediaWords(_Patterns):
    """Alpaca's blacklist: asks for things a text-only model cannot perceive or produce."""

    name = "media_word"
    # Alpaca's list less "music", "file(s)" and "plot": a model can discuss music, files and a story's
    # plot; those three rejected good human instructions (bench/scoring.py, tuned on the S+U split).
    patterns = (r"\b(?:image|images|graph|graphs|picture|pictures|map|maps|draw|video|videos|"
                r"audio|flowchart|diagram|diagrams)\b", r"\bgo to\b")  # fmt: skip

    def __call__(self, r):
        return not self.hit(r["instruction"])


class CopiesOutput(Filter):
    """The instruction restates the output: share of its word n-grams found in the output.

    Questions are exempt: human answers restate the question they answer ("Who is the best F1
    driver" -> "Who is the best F1 driver has been debated..."), which is good data, while a request
    that copies the text ("The Nile is the longest river in Africa.") is what this catches."""

    name = "copies_output"

    def __init__(self, n: int = 3, max_overlap: float | None = 0.6):
        self.n, self.max_overlap = n, max_overlap

    def __call__(self, r):
        if self.max_overlap is None:
            return True
        iw, ow = words(r["instruction"]), words(r["output"])
        if len(iw) < self.n or r["instruction"].rstrip().endswith("?") or (iw and iw[0] in QUESTION_WORDS):
            return True
        grams = {tuple(iw[i : i + self.n]) for i in range(len(iw) - self.n + 1)}
        out = {tuple(ow[i : i + self.n]) for i in range(len(ow) - self.n + 1)}
        return len(grams & out) / len(grams) <= self.max_overlap


QUESTION_WORDS = {"what", "who", "whom", "whose", "where", "when", "why", "how", "which", "is", "are", "was", "were",
                  "do", "does", "did", "can", "could", "should", "would", "will", "may", "might", "has", "have", "am"}
IMPERATIVES = {
    "write", "list", "give", "describe", "explain", "tell", "name", "provide", "summarize", "summarise", "classify",
    "identify", "extract", "create", "generate", "compose", "suggest", "compare", "define", "discuss", "outline",
    "recommend", "find", "make", "help", "share", "show", "draft", "rewrite", "translate", "categorize",
    "categorise", "brainstorm", "imagine", "convert", "calculate", "choose", "select", "sort", "rank", "rate",
    "evaluate", "analyze", "analyse", "propose", "plan", "design", "develop", "offer", "state", "recall", "detail",
    "elaborate", "highlight", "paraphrase", "please", "let's", "consider", "determine", "decide", "predict",
    "estimate", "answer", "complete", "fill", "edit", "correct", "fix", "improve", "add", "use", "pretend", "act",
    "think", "put", "turn", "separate", "group", "order", "arrange", "pick", "recite", "teach",
    "introduce", "present", "argue", "justify", "critique", "review", "assess", "illustrate", "demonstrate",
    "note", "mention", "enumerate", "specify", "clarify", "interpret", "break", "walk", "guide", "instruct",
    "implement", "want", "need", "like", "please", "tell", "convert", "refactor", "debug", "configure", "install",
}  # fmt: skip


class NotInstruction(Filter):
    """Neither a question nor a request: no '?', no question word or imperative in the first words."""

    name = "not_instruction"

    def __init__(self, lookahead: int | None = 3):
        self.lookahead = lookahead

    def __call__(self, r):
        if self.lookahead is None:
            return True
        text = r["instruction"]
        if "?" in text:
            return True
        for sentence in re.split(r"(?<=[.!:;])\s+", text):
            head = words(sentence)[: self.lookahead]
            if any(w in QUESTION_WORDS or w in IMPERATIVES for w in head):
                return True
        return False


def instruction_filters(
    *,
    min_words: int | None = 3,
    max_words: int | None = 150,
    template_leak: bool = True,
    refusal: bool = True,
    unseen_reference: bool = True,
    media_words: bool = True,
    copy_ngram: int = 3,
    max_copy_overlap: float | None = 0.6,
    not_instruction: bool = True,
) -> list[Filter]:
    """The default instruction-side chain; every check can be turned off."""
    chain: list[Filter] = [Empty(), WordCount(min_words, max_words)]
    chain += [TemplateLeak()] if template_leak else []
    chain += [Refusal()] if refusal else []
    chain += [UnseenReference()] if unseen_reference else []
    chain += [MediaWords()] if media_words else []
    chain += [CopiesOutput(copy_ngram, max_copy_overlap)] if max_copy_overlap is not None else []
    chain += [NotInstruction()] if not_instruction else []
    return chain
