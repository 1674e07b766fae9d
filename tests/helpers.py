import json
from pathlib import Path


def write_jsonl(path: Path, rows) -> Path:
    """Rows as JSON lines; a str row is written verbatim (for malformed-line cases)."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path
