"""Split documents into self-contained segments that fit the prompt budget.

A document is read as blocks (blank-line separated; a fenced code block is one block however many
blank lines it holds), each labelled ``heading``, ``table``, ``code`` (listings, shell sessions and
their output), ``toc`` or ``prose``. A document that fits ``max_tokens`` is one segment. A longer one
is packed greedily from its blocks, starting a new segment at a heading once the current one holds
``SECTION_WORDS`` words; a table or code block is never cut (one over the budget is skipped as
``skipped_oversized``), a prose block over the budget is split at sentence ends, and a sentence that
still does is cut at a token boundary.

A segment that is mostly table, code or TOC (over half its characters) is skipped and counted by its
label, unless that label is in ``keep``: a reader cannot answer a request from a bare table. Segments
under ``min_words`` are skipped and counted (Humpback trains on self-contained segments). Every
skipped piece of the last document is in ``dropped`` as ``(reason, text)``. Given a ``boilerplate``
pass (boilerplate.py), each document goes through it first; ``removed`` counts its lines by reason.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from revgen.synthesize.boilerplate import TOC_HEAD, _is_toc_line, indexes

PARAGRAPH = re.compile(r"\n\s*\n")
SENTENCE = re.compile(r"(?<=[.!?。！？])\s+")
LABELS = ("table", "code", "toc")
SECTION_WORDS = 50  # a heading starts a new segment once the current one has this many words
PROMPT = re.compile(r"^\s*(?:\$|#|>>>|\.\.\.|%|[\w@.-]+[$#%])\s")  # shell and REPL prompts
COLUMNS = re.compile(r"\S(?: {3,}|\t+)\S")  # a gap of 3+ spaces between two cells
BOX = "│┃┆┊┌┐└┘├┤┬┴┼╭╮╰╯═║╔╗╚╝╠╣╦╩╬"  # a text browser's table borders
STOP = {"the", "a", "an", "is", "are", "to", "of", "and", "in", "that", "it", "for", "you", "this", "be", "with"}


@dataclass
class SegmentStats:
    segments: int = 0
    split_documents: int = 0
    skipped_short: int = 0
    skipped_empty: int = 0
    skipped_table: int = 0
    skipped_code: int = 0
    skipped_toc: int = 0
    skipped_oversized: int = 0  # a table or code block alone over the token budget


def _table_line(line: str) -> bool:
    s = line.strip()
    return s.count("|") >= 2 or any(c in s for c in BOX) or len(COLUMNS.findall(s)) >= 1 and not s.endswith(".")


def _code_line(line: str) -> bool:
    s = line.strip()
    if PROMPT.match(line) or s.startswith(("```", "#!")):
        return True
    words = s.split()
    symbols = sum(c in "{}[]();=<>|/\\$_&*`" for c in s)
    return bool(words) and symbols / max(len(s), 1) > 0.12 and not any(w.lower() in STOP for w in words)


def label(block: str, before: str = "", later=()) -> str:
    """``heading``, ``table``, ``code``, ``toc`` or ``prose`` for one block of text; ``before``: the
    block above it, ``later``: the stripped lines below it (a TOC is known by what it indexes)."""
    lines = [ln for ln in block.splitlines() if ln.strip()]
    if not lines:
        return "prose"
    if lines[0].lstrip().startswith("```") or (len(lines) > 1 and PROMPT.match(lines[0])):
        return "code"  # a fenced block, or a shell session: a prompt line and what it printed
    first = lines[0].strip()
    if len(lines) == 1 and (first.count("|") >= 2 or len(COLUMNS.findall(first)) >= 2 or any(c in first for c in BOX)):
        return "table"  # one row of a table whose rows a dump separated with blank lines
    if len(lines) == 1 and (
        re.match(r"#{1,6} \S", first)
        or (len(first.split()) <= 12 and not first.endswith((".", "!", "?", ":", ";", ",")) and not _code_line(first))
    ):
        return "heading"  # fmt: skip
    n = len(lines)
    for name, test in (("toc", _is_toc_line), ("table", _table_line), ("code", _code_line)):
        if sum(map(test, lines)) >= max(2, 0.6 * n) if n > 1 else False:
            if name == "toc" and not _signed(lines, before, later):
                continue  # a numbered list ("1. Mist 2. Drizzle 3. Sleet") is content
            return name
    return "prose"


def _signed(lines: list[str], before: str, later) -> bool:
    """Numbered titles are a table of contents only with a sign, as in the line pass
    (boilerplate.indexes): a Contents heading in or just above them, nested numbers, link marks, or
    a title that comes again below."""
    above = [ln for ln in before.splitlines() if ln.strip()][-1:]
    return any(TOC_HEAD.match(ln) for ln in lines + above) or indexes(lines, later)


class _Below:
    """The stripped lines after block ``i`` of a document, without a copy of the rest per block."""

    def __init__(self, last: dict, i: int):
        self.last, self.i = last, i

    def __contains__(self, line: str) -> bool:
        return self.last.get(line, -1) > self.i


def blocks(text: str) -> list[str]:
    """Blank-line separated blocks; a fenced code block stays one block."""
    out, fence = [], None
    for part in PARAGRAPH.split(text):
        if fence is not None:
            fence += "\n\n" + part
            if part.count("```") % 2:
                out.append(fence)
                fence = None
            continue
        if part.count("```") % 2:
            fence = part
            continue
        if part.strip():
            out.append(part.strip("\n"))
    if fence is not None:
        out.append(fence)
    return out


class Segmenter:
    def __init__(self, tokenizer, max_tokens: int = 768, min_words: int = 10, keep: tuple | list = (),
                 boilerplate=None):  # fmt: skip
        if max_tokens < 16:
            raise ValueError("max_tokens must be at least 16")
        unknown = sorted(set(keep) - set(LABELS))
        if unknown:
            raise ValueError(f"keep: unknown block label(s) {unknown}; expected some of {LABELS}")
        self.tokenizer, self.max_tokens, self.min_words, self.keep = tokenizer, max_tokens, min_words, set(keep)
        self.stats, self.boilerplate, self.removed = SegmentStats(), boilerplate, Counter()
        self.dropped: list[tuple[str, str]] = []  # the last document's skipped pieces: (reason, text)

    def _len(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def __call__(self, text: str, site: str = "") -> list[str]:
        """The document's segments; ``site`` names the pages whose repeated lines are chrome."""
        self.dropped = []
        if self.boilerplate is not None:
            text = self.boilerplate.clean(text, site)
            self.removed.update(self.boilerplate.last_removed)
        text = text.strip()
        if not text:
            self.stats.skipped_empty += 1
            return []
        parts = []
        found = blocks(text)
        last = {ln.strip(): i for i, b in enumerate(found) for ln in b.splitlines()}  # where each line last comes
        for i, b in enumerate(found):  # a table's or listing's rows separated by blank lines are one block
            kind = label(b, found[i - 1] if i else "", _Below(last, i))
            if parts and kind in ("table", "code") and parts[-1][1] == kind:
                parts[-1] = (parts[-1][0] + "\n\n" + b, kind)
            else:
                parts.append((b, kind))
        whole = self._len(text) <= self.max_tokens
        pieces = [parts] if whole else self._split(parts)
        if len(pieces) > 1:
            self.stats.split_documents += 1
        out = []
        for piece in pieces:
            body = text if whole else "\n\n".join(b for b, _ in piece)
            reason = self._skip_reason(piece, body)
            if reason:
                setattr(self.stats, f"skipped_{reason}", getattr(self.stats, f"skipped_{reason}") + 1)
                self.dropped.append((reason, body))
            else:
                out.append(body)
        self.stats.segments += len(out)
        return out

    def _skip_reason(self, piece: list[tuple[str, str]], body: str) -> str | None:
        if len(body.split()) < self.min_words:
            return "short"
        sizes: dict[str, int] = {}
        for b, kind in piece:
            sizes[kind] = sizes.get(kind, 0) + len(b)
        worst = max(LABELS, key=lambda k: sizes.get(k, 0))
        other = sum(sizes.get(k, 0) for k in LABELS if k not in self.keep)
        if other * 2 > sum(sizes.values()) and worst not in self.keep:
            return worst
        return None

    def _split(self, parts: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
        units = []  # (text, kind, separator before it, its token count)
        for block, kind in parts:
            n = self._len(block)
            if n <= self.max_tokens:
                units.append((block, kind, "\n\n", n))
            elif kind in LABELS:  # never cut a table or listing: a half table answers nothing
                self.stats.skipped_oversized += 1
                self.dropped.append(("oversized", block))
            else:
                pieces = [p for sent in SENTENCE.split(block) for p in self._hard_split(sent)]
                units.extend((p, kind, "\n\n" if i == 0 else " ", self._len(p)) for i, p in enumerate(pieces))
        return [self._pieces(group) for group in self._pack(units)]

    @staticmethod
    def _pieces(group: list[tuple]) -> list[tuple[str, str]]:
        """A packed group back as blocks (sentences of one split block rejoin with spaces)."""
        out = []
        for text, kind, sep, _ in group:
            if sep == " " and out:
                out[-1] = (out[-1][0] + " " + text, out[-1][1])
            else:
                out.append((text, kind))
        return out

    def _hard_split(self, sentence: str) -> list[str]:
        if self._len(sentence) <= self.max_tokens:
            return [sentence]
        ids = self.tokenizer(sentence, add_special_tokens=False)["input_ids"]
        step = self.max_tokens - 8  # decode/re-encode at a seam may add a token or two
        return [self.tokenizer.decode(ids[i : i + step]).strip() for i in range(0, len(ids), step)]

    def _pack(self, units: list[tuple]) -> list[list[tuple]]:
        """Greedy packing on the units' own token counts (each unit tokenised once: linear in the
        document), one separator token allowed per seam, a new group at a heading once the current
        one is a section's worth, a heading never last; every group is then tokenised once to confirm
        the budget, and one that merged across a seam past it is split in two."""
        groups, current, used, words = [], [], 0, 0
        for unit in units:
            cost = unit[3] + (1 if current else 0)
            full = current and used + cost > self.max_tokens
            section = current and unit[1] == "heading" and words >= SECTION_WORDS
            if full or section:
                carry = [current.pop()] if current[-1][1] == "heading" and len(current) > 1 else []
                groups.append(current)
                current = carry
                used = sum(u[3] + 1 for u in current)
                words = sum(len(u[0].split()) for u in current)
                cost = unit[3] + (1 if current else 0)
            current.append(unit)
            used += cost
            words += len(unit[0].split())
        if current:
            groups.append(current)
        out = []
        while groups:
            group = groups.pop(0)
            text = group[0][0] + "".join(sep + u for u, _, sep, _ in group[1:])
            if len(group) > 1 and self._len(text) > self.max_tokens:
                half = len(group) // 2
                groups[:0] = [group[:half], group[half:]]
                continue
            out.append(group)
        return out
