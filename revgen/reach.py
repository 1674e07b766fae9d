"""A cluster address is checked to answer before a client waits on it (ray.init retries for ~30 s)."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from revgen.errors import UserError


def check_ray_address(address: str | None, what: str, timeout: float = 3.0) -> None:
    """``host:port`` (Ray's GCS, port 6379 by default) or ``ray://host:port`` (Ray Client, 10001) must accept a
    TCP connection within ``timeout`` seconds; ``None`` and ``auto`` (found by Ray itself) are left to Ray."""
    if not address or address == "auto":
        return
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port or (10001 if parts.scheme == "ray" else 6379)
    except ValueError:
        raise UserError(f"{what} {address!r}: expected HOST:PORT or ray://HOST:PORT") from None
    if not host:
        raise UserError(f"{what} {address!r}: expected HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise UserError(
            f"{what} {address!r}: nothing answers at {host}:{port} ({exc.strerror or exc}); "
            "start the cluster, or leave the address out for a local one"
        ) from None
