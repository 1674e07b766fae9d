"""Credentials never leave in what revgen stores or prints: one rule for every URL.

A key put inside a URL (``https://user:KEY@host/v1``, ``...?api_key=KEY``) is stripped from every
run record (:func:`revgen.runinfo.write_json` calls :func:`redact`) and from every log line,
including the HTTP client's request log (:class:`LogFilter`, installed by the CLI). The URL the
client connects with keeps them: only what is written or shown is cleaned.
"""

from __future__ import annotations

import logging
import re

USERINFO = re.compile(r"\b([a-z][a-z0-9+.-]*://)[^\s/@]+@", re.I)
SECRET_PARAM = re.compile(r"([?&](?:api[_-]?key|key|token|access[_-]?token|password|secret)=)[^&\s#\"']+", re.I)


def redact_text(text: str) -> str:
    return SECRET_PARAM.sub(r"\1***", USERINFO.sub(r"\1", text))


def redact(value):
    """``value`` (str, dict, list, nested) with credentials removed from every URL in it."""
    if isinstance(value, str):
        return redact_text(value) if "://" in value or "=" in value else value
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


class LogFilter(logging.Filter):
    """Redacts each record's final message (httpx logs 'HTTP Request: POST https://u:KEY@host/...')."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
