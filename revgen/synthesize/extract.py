"""HTML pages and web archives to text, with the field's tools: datatrove's trafilatura extractor
(run in datatrove's sandbox process, so a page that hangs the parser times out instead of the run)
and warcio's WARC/WET reader, keeping what datatrove keeps (HTML responses, WET text conversions).

The text comes out as trafilatura's markdown: headings, paragraphs, lists, tables (``| a | b |``)
and code stay separate blocks, which is what the segmenter cuts at. A page that yields no text or
fails to parse is counted by reason (``extract/empty``, ``extract/error``, ``extract/timeout``), not
an error: crawls hold such pages.
"""

from __future__ import annotations

from pathlib import Path

from revgen.errors import UserError

HTML_SUFFIXES = (".html", ".htm", ".xhtml")
WARC_SUFFIXES = (".warc", ".warc.gz", ".wet", ".wet.gz")
HTML_TYPES = ("text/html", "application/xhtml+xml")


class Extractor:
    """``extractor(html) -> text or None``, counting pages without text in ``skipped`` by reason."""

    def __init__(self, timeout: float = 10.0):
        try:
            import trafilatura  # noqa: F401
            from datatrove.pipeline.extractors import Trafilatura
            from datatrove.pipeline.extractors.base import ExtractorSandbox
        except ImportError as exc:
            raise UserError(f"reading HTML needs trafilatura ({exc}): pip install trafilatura") from None
        self._step = Trafilatura(favour_precision=True, timeout=timeout, output_format="markdown", include_tables=True)
        self._sandbox = ExtractorSandbox(timeout=timeout, warmup_text="")
        self.skipped: dict[str, int] = {}

    def __call__(self, html: str) -> str | None:
        try:
            text = self._sandbox.process_document(html, self._step.extract)
        except TimeoutError:
            return self._skip("timeout")
        except EOFError:  # the sandbox process died (out of memory); the next page gets a new one
            return self._skip("error")
        except Exception:  # the parser's own error on a broken page
            return self._skip("error")
        text = clean_markdown(text or "")
        return text if text.strip() else self._skip("empty")

    def _skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        return None

    def close(self) -> None:
        """End the sandbox process (quietly: datatrove's own exit logs at INFO on every call)."""
        self._sandbox._cleanup_process()
        for proc in self._sandbox.all_processes:
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)


def clean_markdown(text: str) -> str:
    """Trafilatura's markdown without what only a renderer needs: bold/italic markers and the
    pilcrow anchors documentation generators put after headings ("5.1. New packages¶")."""
    import re

    text = re.sub(r"\*\*(\S(?:.*?\S)?)\*\*", r"\1", text)
    text = re.sub(r"(?<![\w*])\*(\S(?:[^*\n]*?\S)?)\*(?![\w*])", r"\1", text)
    return re.sub(r"[ \t]*¶", "", text)


def is_html(path: Path) -> bool:
    return path.name.lower().endswith(HTML_SUFFIXES)


def is_warc(path: Path) -> bool:
    return path.name.lower().endswith(WARC_SUFFIXES)


def read_html(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # every byte decodes; trafilatura reads the page's own charset meta


def warc_rows(path: Path):
    """(where, row) per usable record: ``{"html": ...}`` for an HTML response, ``{"text": ...}`` for a
    WET conversion; ``row["id"]`` is the record's target URI. Other records (requests, metadata,
    images) are passed over like datatrove's WarcReader does; a torn archive is one error naming it."""
    try:
        from warcio.archiveiterator import ArchiveIterator
        from warcio.exceptions import ArchiveLoadFailed
    except ImportError:
        raise UserError("reading WARC/WET files needs warcio: pip install warcio") from None
    import gzip

    if path.name.lower().endswith(".gz"):  # warcio stops at a torn member without a word: check the stream first
        try:
            with gzip.open(path, "rb") as fh:
                while fh.read(1 << 24):
                    pass
        except (OSError, EOFError, __import__("zlib").error) as exc:
            raise UserError(f"{path}: not a readable WARC/WET archive ({exc})") from None
    with path.open("rb") as fh:
        try:
            for n, record in enumerate(ArchiveIterator(fh), 1):
                row = _warc_row(record)
                if row is not None:
                    yield f"record {n}", row
        except (ArchiveLoadFailed, OSError, EOFError, ValueError) as exc:
            raise UserError(f"{path}: not a readable WARC/WET archive ({str(exc).strip()[:200]})") from None


def _warc_row(record) -> dict | None:
    if record.rec_type not in ("response", "conversion"):
        return None
    mime = record.rec_headers.get_header("WARC-Identified-Payload-Type")
    if mime is None and record.http_headers is not None:
        mime = (record.http_headers.get_header("Content-Type") or "").split(";")[0].strip().lower()
    if record.rec_type == "conversion" and mime in (None, "", "text/plain"):
        key = "text"
    elif mime in HTML_TYPES:
        key = "html"
    else:
        return None
    body = record.content_stream().read().decode("utf-8", errors="replace")
    return {
        key: body,
        "id": record.rec_headers.get_header("WARC-Target-URI") or record.rec_headers.get_header("WARC-Record-ID"),
    }
