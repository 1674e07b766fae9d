"""Load instruction/response pairs (databricks-dolly-15k schema) with strict validation.

Sources: the bundled 382-row sample (``dolly-sample``), a local ``.jsonl``/``.json``/``.parquet``
file, or a Hub dataset id. Every row must carry string ``instruction`` and ``response``;
``context`` and ``category`` are optional strings. A bad row is one error naming file and line.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

from revgen.errors import UserError, where
from revgen.io import iter_jsonl, read_json

BUNDLED = "dolly-sample"
REQUIRED = ("instruction", "response")
OPTIONAL = ("context", "category")


def bundled_sample_path() -> Path:
    return Path(str(resources.files("revgen") / "data" / "dolly-sample.jsonl"))


def validate_row(row, source, line) -> dict:
    if not isinstance(row, dict):
        raise UserError(f"{where(source, line)}: expected a JSON object, got {type(row).__name__}")
    for key in REQUIRED:
        if key not in row:
            raise UserError(f"{where(source, line)}: missing key {key!r} (expected {REQUIRED})")
    for key in REQUIRED + OPTIONAL:
        value = row.get(key)
        if key in row and value is not None and not isinstance(value, str):
            raise UserError(f"{where(source, line)}: field {key!r} must be a string, got {type(value).__name__}")
    return {k: row.get(k) or "" for k in REQUIRED + OPTIONAL}


def _read_json(path: Path):
    data = read_json(path)
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON list of objects")
    return ((f"item {i}", row) for i, row in enumerate(data))


def _read_parquet(path: Path):
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise UserError(f"{path}: not a readable parquet file ({exc})") from None
    return ((f"row {i}", row) for i, row in enumerate(table.to_pylist()))


def _read_hub(name: str, split: str):
    import datasets

    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as exc:  # offline, missing, private...
        raise UserError(f"could not load dataset {name!r} (split {split!r}): {exc}") from None
    return ((f"row {i}", row) for i, row in enumerate(ds))


def load_pairs(source: str = BUNDLED, split: str = "train") -> list[dict]:
    """Rows with keys instruction/context/response/category, in file order."""
    path = bundled_sample_path() if source == BUNDLED else Path(source)
    if path.is_file():
        suffix = path.suffix.lower()
        readers = {".jsonl": iter_jsonl, ".json": _read_json, ".parquet": _read_parquet}
        if suffix not in readers:
            raise UserError(f"{path}: unsupported file type {suffix!r}; expected .jsonl, .json or .parquet")
        rows = readers[suffix](path)
        src = path
    elif path.exists() or "/" not in source or source.startswith((".", "/")):
        raise UserError(f"data {source!r} is not a .jsonl/.json/.parquet file or a Hub dataset id")
    else:
        rows, src = _read_hub(source, split), source
    out = [validate_row(row, src, line) for line, row in rows]
    if not out:
        raise UserError(f"{src}: no rows")
    return out


def data_hash(source: str) -> str:
    """sha256 of the data file (or of the Hub id for remote data)."""
    path = bundled_sample_path() if source == BUNDLED else Path(source)
    h = hashlib.sha256()
    if path.is_file():
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    else:
        h.update(source.encode())
    return h.hexdigest()
