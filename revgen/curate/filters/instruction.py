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


def _headings() -> str:
    """Every '### Heading:' a revgen template renders (seed, Alpaca with and without input), plus
    the other roles prompt formats use, so any of them leaking into an instruction is caught."""
    from revgen import prompts

    found = {m.lower() for t in (prompts.SEED_TEMPLATE, prompts.ALPACA, prompts.ALPACA_INPUT)
             for m in re.findall(r"###\s*(\w+):", t)}  # fmt: skip
    found |= {"output", "answer", "question", "context", "assistant", "user", "system", "human", "explanation"}
    return "|".join(sorted(found))


ROLES = r"(?:question|instruction|input|response|answer|output|context|query|prompt|task|q|a)"


class TemplateLeak(_Patterns):
    """A prompt format in the instruction: a template's '### Heading:', any markdown heading of level
    2 or more ("### Example:"), a role label opening a line ("Question: ...", "Instruction:",
    "Q:"), chat markers."""

    name = "template_leak"
    patterns = (
        rf"###\s*(?:{_headings()})\b",
        r"(?:^|\n)\s*#{2,6}\s*\w",
        rf"(?:^|\n)\s*{ROLES}\s*:",
        r"<\|im_(?:start|end)\|>",
        r"</?s>",
    )

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
                r"\bthe (?:text|passage|paragraph|information|answer) (?:above|below|provided|given)\b",
                r"\bbased on (?:the|this) (?:information|text|passage|input|context)\b",
                r"\b(?:above|aforementioned)\b", r"\baccording to the (?:text|passage|article|author)\b")  # fmt: skip

    NOUN = re.compile(r"\b(?:this|the|above|given|following|provided|preceding) (\w+)", re.I)
    # "What is the output of the following code?", "...of this command?", "Which of the following is
    # true?": code, options or a list the instruction points at but does not hold. The record's
    # reader sees the instruction alone, so the passage holding the code does not help; only the
    # instruction itself holding it after the reference does ("...the following code: print(2)").
    DANGLING = re.compile(r"\b(?:this|these|the following|the above|the below|the preceding|the previous)\s+"
                          r"(?:[\w-]+\s+){0,2}?(?:code|snippets?|programs?|commands?|scripts?|quer(?:y|ies)|regex|"
                          r"expressions?|options?|lists?|tables?|choices|sentences?|statements?|examples?|"
                          r"functions?|methods?|classes|items)\b|\b(?:which|what|who|any|one|none) of the "
                          r"following\b", re.I)  # fmt: skip

    def __call__(self, r):
        if r.get("input", "").strip():
            return True
        if _dangles(self.DANGLING, r["instruction"]):
            return False, "dangling_reference"
        if not self.hit(r["instruction"]):
            return True
        # "Return the text with tabs expanded" about a function whose parameter is `text`: the passage
        # names it as code, so "the text" is that parameter, not a text the reader cannot see.
        text = r["instruction"]
        masked = self.NOUN.sub(lambda m: "" if _identifier(m.group(1), r.get("output", "")) or _introduced(m, text)
                               else m.group(0), text)  # fmt: skip
        return not self.hit(masked)


def _dangles(pattern: re.Pattern, text: str) -> bool:
    """A reference ``pattern`` finds whose object the instruction does not hold after it: no colon
    or line break followed by content, no code in backticks, no list of items (two commas, or a
    comma and an "or"/"and")."""
    for m in pattern.finditer(text):
        after = text[m.end() :]
        holds = (re.search(r"[:\n]\s*\S", after) or "`" in after or after.count(",") >= 2
                 or ("," in after and re.search(r"\b(?:or|and)\b", after)))  # fmt: skip
        if not holds:
            return True
    return False


def _introduced(m: re.Match, text: str) -> bool:
    """ "Write a short story about X. The story should ...": the noun names what the instruction
    itself asked for earlier ("a short story"), not a text the reader lacks."""
    return bool(re.search(rf"\ban?\s+(?:[\w-]+\s+){{0,3}}{re.escape(m.group(1))}\b", text[: m.start()], re.I))


def _identifier(name: str, passage: str) -> bool:
    """``name`` appears in the passage as code: in backticks, as a parameter (``f(text, n)``,
    ``text=``), or a parameter list entry (``text: str``)."""
    n = re.escape(name)
    return bool(re.search(rf"`{n}`|[(,*]\s*{n}\s*[,)=:]|\b{n}\s*=[^=]|^\s*{n}\s*:", passage, re.M))


class MediaWords(_Patterns):
    """Alpaca's blacklist: asks for things a text-only model cannot perceive or produce."""

    name = "media_word"
    # Alpaca's list less "music", "file(s)" and "plot": a model can discuss music, files and a story's
    # plot; those three rejected good human instructions (bench/scoring.py, tuned on the S+U split).
    # A media word counts only in media context: something to make or perceive ("draw a map",
    # "generate an image of", "watch the video"), or one to look at that the reader lacks ("the
    # attached picture", "in the image", "the diagram below"). "the encoding map from a decoding
    # map", "a graph and a tree" and "video compression" are about things a text can discuss.
    VISUAL = (
        r"(?:image|images|picture|pictures|photo|photos|photograph|video|videos|audio|flowchart|flowcharts|"
        r"diagram|diagrams|chart|charts|drawing)"
    )
    MEDIA = rf"(?:{VISUAL}|map|maps|graph|graphs)"  # a map or graph may also be a data structure
    MAKE = (
        r"(?:generate|create|make|produce|design|render|show|display|upload|attach|record|film|take|edit|watch|"
        r"listen to|view|look at|see|observe)"
    )
    patterns = (rf"\b{MAKE}\W+(?:(?:an?|the|this|that|some|your|my)\W+)?(?:\w+\W+){{0,2}}?{VISUAL}\b",
                r"^\s*(?:please\s+)?(?:draw|sketch|paint|plot)\b",
                rf"\b(?:draw|sketch|paint)\W+(?:\w+\W+){{0,3}}?{MEDIA}\b",
                rf"\b(?:this|that|these|those|attached|following|above|below|given|provided|shown)\s+{MEDIA}\b",
                rf"\b{MEDIA}\s+(?:below|above|attached|provided|shown)\b",
                rf"\bin\s+(?:the|this)\s+{MEDIA}\b",
                rf"\b(?:describe|caption|label|analy[sz]e|interpret)\s+(?:the|this|these)\s+{MEDIA}\b",
                r"\bgo to\b")  # fmt: skip

    def __call__(self, r):
        return not self.hit(r["instruction"])


class CopiesOutput(Filter):
    """The instruction restates the output: share of its word n-grams found in the output.

    Questions and requests are exempt: human answers restate the question they answer ("Who is the
    best F1 driver" -> "Who is the best F1 driver has been debated..."), and the items a request
    names ("Classify each of the following as a title by Asimov or Verne: ...", "Name all the books
    in ..."), which is good data, while a statement that copies the text ("The Nile is the longest
    river in Africa.") is what this catches."""

    name = "copies_output"

    def __init__(self, n: int = 3, max_overlap: float | None = 0.6):
        self.n, self.max_overlap = n, max_overlap

    def __call__(self, r):
        if self.max_overlap is None:
            return True
        iw, ow = words(r["instruction"]), words(r["output"])
        if (
            len(iw) < self.n
            or r["instruction"].rstrip().endswith("?")
            or (iw and iw[0] in QUESTION_WORDS | IMPERATIVES)
        ):
            return True
        grams = {tuple(iw[i : i + self.n]) for i in range(len(iw) - self.n + 1)}
        out = {tuple(ow[i : i + self.n]) for i in range(len(ow) - self.n + 1)}
        return len(grams & out) / len(grams) <= self.max_overlap


QUESTION_WORDS = {
    "what",
    "who",
    "whom",
    "whose",
    "where",
    "when",
    "why",
    "how",
    "which",
    "is",
    "are",
    "was",
    "were",
    "do",
    "does",
    "did",
    "can",
    "could",
    "should",
    "would",
    "will",
    "may",
    "might",
    "has",
    "have",
    "am",
}
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


# A leading condition before the request: "Given X, ...", "Using X, ...", "If X, ...", "For each X, ...".
LEAD_CLAUSE = re.compile(
    r"^\s*(?:given|using|with|for(?: each| every)?|from|if|when|assuming|based on|in|after|"
    r"before|starting from)\b[^,.;:?!]{1,160},\s*",
    re.I,
)


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
        text = LEAD_CLAUSE.sub("", text)  # "Given a module name, find ..." is the request "find ..."
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
