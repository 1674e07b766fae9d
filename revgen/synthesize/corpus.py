"""Read unlabeled corpora as a stream of documents with stable ids.

Sources: a ``.jsonl``/``.json``/``.parquet``/``.txt`` file, a folder of them (sorted, recursive),
or a Hub dataset id (``datasets.load_dataset(..., streaming=True)``). Local files are streamed
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

log = logging.getLogger(__name__)
SUFFIXES = (".jsonl", ".json", ".parquet", ".txt")
TXT_MODES = ("document", "paragraphs")


@dataclass
class Document:
    id: str
    text: str
    source: str  # "file line N" / "hub-id row N"


@dataclass
class CorpusStats:
    documents: int = 0
    bad_rows: int = 0
    bad_row_examples: list = field(default_factory=list)


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
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
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
) -> Iterator[Document]:
    """Yield documents in a stable order; ``stats`` (if given) counts documents and bad rows."""
    if txt_mode not in TXT_MODES:
        raise UserError(f"txt_mode must be one of {TXT_MODES}, got {txt_mode!r}")
    if on_bad_row not in ("error", "skip"):
        raise UserError(f"on_bad_row must be 'error' or 'skip', got {on_bad_row!r}")
    stats = stats if stats is not None else CorpusStats()
    path = Path(source).expanduser()
    if path.exists():
        streams = []
        for f in _files(path):
            suffix = f.suffix.lower()
            if suffix not in SUFFIXES:
                raise UserError(f"{f}: unsupported corpus file type {suffix!r}; expected {SUFFIXES}")
            if suffix == ".jsonl":
                streams.append((f, iter_jsonl(f, errors="yield")))
            else:
                rows = {".json": _rows_json, ".parquet": _rows_parquet}.get(suffix)
                streams.append((f, rows(f) if rows else _rows_txt(f, txt_mode)))
    elif "/" in source and not source.startswith((".", "/", "~")) and source.count("/") == 1:
        streams = [(source, _rows_hub(source, split))]
    else:
        raise UserError(f"corpus {source!r} is not a file, a folder or a Hub dataset id")
    for src, rows in streams:
        for line, row in rows:
            problem = _check(row, text_field, id_field)
            if problem:
                msg = f"{where(src, line)}: {problem}"
                if on_bad_row == "error":
                    raise UserError(msg + " (use --on-bad-row skip to count and skip such rows)")
                stats.bad_rows += 1
                if len(stats.bad_row_examples) < 20:
                    stats.bad_row_examples.append(msg)
                continue
            text = row[text_field]
            doc_id = str(row[id_field]) if id_field else content_id(text)
            stats.documents += 1
            yield Document(doc_id, text, where(src, line))
    if stats.bad_rows:
        log.warning("skipped %d bad corpus rows, e.g. %s", stats.bad_rows, stats.bad_row_examples[0])


def _check(row, text_field: str, id_field: str | None) -> str | None:
    if isinstance(row, Exception):
        return str(row)
    if not isinstance(row, dict):
        return f"expected a JSON object, got {type(row).__name__}"
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
