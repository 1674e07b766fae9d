"""User-facing errors: one clear sentence, non-zero exit, no traceback."""

import click


class UserError(click.ClickException):
    """A mistake in the user's input (file, recipe, flag) rather than a bug in revgen."""


def where(path, line=None) -> str:
    """'file.jsonl line 7', 'file.parquet row 3' or 'file.jsonl' for error messages."""
    if line is None:
        return str(path)
    return f"{path} line {line}" if isinstance(line, int) else f"{path} {line}"
