"""Read unlabeled corpora as a stream of documents with stable ids.

Sources: a ``.jsonl``/``.json``/``.parquet``/``.txt`` file, an ``.html``/``.htm`` page, a WARC/WET
archive, a folder of them (sorted, recursive), or a Hub dataset id (``datasets.load_dataset(...,
streaming=True)``). HTML (pages, WARC responses, or rows' ``html_field``) goes through datatrove's
trafilatura extractor (extract.py); a page without text is counted, not an error. Local files are streamed
line by line / batch by batch so a bad row is reported with its file and line; by default it
stops the run, with ``on_bad_row="skip"`` it is counted and reported instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import xxhash

from revgen.errors import UserError, where
from revgen.io import iter_jsonl, read_json
from revgen.synthesize.extract import HTML_SUFFIXES, WARC_SUFFIXES, Extractor, is_html, is_warc, read_html, warc_rows

log = logging.getLogger(__name__)
SUFFIXES = (".jsonl", ".json", ".parquet", ".txt", *HTML_SUFFIXES, *WARC_SUFFIXES)
TXT_MODES = ("document", "paragraphs")


@dataclass
class Document:
    id: str
    text: str
    source: str  # "file line N" / "hub-id row N"
    site: str = ""  # pages that share chrome: a page's folder, a rows file, a WARC record's host


@dataclass
class CorpusStats:
    documents: int = 0
    bad_rows: int = 0
    bad_row_examples: list = field(default_factory=list)
    extracted: int = 0  # HTML pages turned into text
    extract_skipped: dict = field(default_factory=dict)  # pages without text, by reason


def content_id(text: str) -> str:
    return "doc-" + xxhash.xxh64_hexdigest(text.encode("utf-8"))


def fingerprint(source: str, split: str = "train") -> dict:
    """The corpus's identity for resume checks: size and mtime of every local file (by name relative
    to the corpus root, so the same files under another spelling of the path match), or the Hub id."""
    path = Path(source).expanduser()
    if not path.exists():
        return {"hub": f"{source}:{split}"}
    root = path if path.is_dir() else path.parent
    files = {}
    for f in _files(path):
        st = f.stat()
        files[str(f.relative_to(root))] = [st.st_size, st.st_mtime_ns]
    return {"files": files}


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(SUFFIXES))
    if not files:
        raise UserError(f"corpus folder {path} holds no {'/'.join(SUFFIXES)} files")
    return files


def _rows_json(path: Path):
    data = read_json(path)
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON list of objects")
    yield from ((f"item {i}", row) for i, row in enumerate(data))


def _rows_parquet(path: Path):
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:
        raise UserError(f"{path}: not a readable parquet file ({exc})") from None
    i = 0
    for batch in pf.iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            yield f"row {i}", row
            i += 1


def _rows_txt(path: Path, txt_mode: str):
    text = path.read_text(encoding="utf-8", errors="replace")
    if txt_mode == "document":
        yield None, {"text": text}
        return
    line, para, start = 0, [], 1
    for line, raw in enumerate(text.splitlines(), 1):
        if raw.strip():
            if not para:
                start = line
            para.append(raw)
        elif para:
            yield start, {"text": "\n".join(para)}
            para = []
    if para:
        yield start, {"text": "\n".join(para)}


def _rows_hub(name: str, split: str):
    import datasets

    try:
        ds = datasets.load_dataset(name, split=split, streaming=True)
    except Exception as exc:
        raise UserError(f"could not load corpus {name!r} (split {split!r}): {exc}") from None
    yield from ((f"row {i}", row) for i, row in enumerate(ds))


def read_documents(
    source: str,
    *,
    text_field: str = "text",
    id_field: str | None = None,
    txt_mode: str = "document",
    on_bad_row: str = "error",
    split: str = "train",
    stats: CorpusStats | None = None,
    html_field: str | None = None,
    extract: bool = True,
) -> Iterator[Document]:
    """Yield documents in a stable order; ``stats`` (if given) counts documents, bad rows and pages
    the extractor found no text in. ``html_field``: rows whose text is that field's HTML;
    ``extract=False`` passes over HTML rows (a quick first pass over the text documents only)."""
    if txt_mode not in TXT_MODES:
        raise UserError(f"txt_mode must be one of {TXT_MODES}, got {txt_mode!r}")
    if on_bad_row not in ("error", "skip"):
        raise UserError(f"on_bad_row must be 'error' or 'skip', got {on_bad_row!r}")
    stats = stats if stats is not None else CorpusStats()
    path = Path(source).expanduser()
    if path.exists():
        streams = []
        for f in _files(path):
            name = f.name.lower()
            if not name.endswith(SUFFIXES):
                raise UserError(f"{f}: unsupported corpus file type {f.suffix!r}; expected {SUFFIXES}")
            if is_html(f):  # a page per file: the folder is the site
                if extract:
                    streams.append((f, iter([(None, {"html": read_html(f)})]), "text", "html", str(f.parent)))
            elif is_warc(f):  # HTML responses under "html", WET text under "text"; the site is the URL's host
                streams.append((f, warc_rows(f), "text", "html", None))
            elif name.endswith(".jsonl"):
                streams.append((f, iter_jsonl(f, errors="yield"), text_field, html_field, str(f)))
            else:
                rows = {".json": _rows_json, ".parquet": _rows_parquet}.get(f.suffix.lower())
                site = str(f) if rows else str(f.parent)  # rows of one file, or a page per .txt file
                streams.append((f, rows(f) if rows else _rows_txt(f, txt_mode), text_field, html_field, site))
    elif "/" in source and not source.startswith((".", "/", "~")) and source.count("/") == 1:
        streams = [(source, _rows_hub(source, split), text_field, html_field, source)]
    else:
        raise UserError(f"corpus {source!r} is not a file, a folder or a Hub dataset id")
    extractor = None
    try:
        for src, rows, text_key, html_key, site in streams:
            for line, row in rows:
                if html_key and isinstance(row, dict) and isinstance(row.get(html_key), str):
                    if not extract:
                        continue
                    extractor = extractor or Extractor()
                    text = extractor(row[html_key])
                    if text is None:
                        continue
                    stats.extracted += 1
                    row = {**row, text_key: text}
                problem = _check(row, text_key, id_field, html_key)
                if problem:
                    msg = f"{where(src, line)}: {problem}"
                    if on_bad_row == "error":
                        raise UserError(msg + " (use --on-bad-row skip to count and skip such rows)")
                    stats.bad_rows += 1
                    if len(stats.bad_row_examples) < 20:
                        stats.bad_row_examples.append(msg)
                    continue
                text = row[text_key]
                doc_id = str(row[id_field]) if id_field else content_id(text)
                stats.documents += 1
                yield Document(doc_id, text, where(src, line), site if site is not None else _host(row.get("id")))
    finally:
        if extractor is not None:
            stats.extract_skipped = dict(sorted(extractor.skipped.items()))
            extractor.close()
    if stats.bad_rows:
        log.warning("skipped %d bad corpus rows, e.g. %s", stats.bad_rows, stats.bad_row_examples[0])


def _host(url) -> str:
    from urllib.parse import urlsplit

    return urlsplit(str(url or "")).netloc


def _check(row, text_field: str, id_field: str | None, html_field: str | None = None) -> str | None:
    if isinstance(row, Exception):
        return str(row)
    if not isinstance(row, dict):
        return f"expected a JSON object, got {type(row).__name__}"
    if html_field and text_field not in row:  # not extracted: the HTML is missing or not text
        if html_field in row:
            return f"html field {html_field!r} must be a string, got {type(row[html_field]).__name__}"
        return f"missing html field {html_field!r} (keys: {sorted(row)[:8]})"
    if text_field not in row:
        return f"missing text field {text_field!r} (set --text-field; keys: {sorted(row)[:8]})"
    if not isinstance(row[text_field], str):
        return f"text field {text_field!r} must be a string, got {type(row[text_field]).__name__}"
    if id_field is not None:
        if id_field not in row:
            return f"missing id field {id_field!r}"
        if not isinstance(row[id_field], (str, int)) or isinstance(row[id_field], bool):
            return f"id field {id_field!r} must be a string or integer, got {type(row[id_field]).__name__}"
    return None
