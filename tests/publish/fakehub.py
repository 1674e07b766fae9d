"""A tiny stand-in for the Hugging Face Hub on 127.0.0.1: the endpoints ``revgen push`` uses.

It implements repo creation, preupload (every file "regular"), NDJSON commits with base64 file
contents, and ``resolve`` downloads, and records every request (method, path, Authorization
header, body) so tests can check what arrived, in which order, and where the token went.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REPO = r"/api/datasets/(?P<repo>[^/]+/[^/]+)"
# The Hub's vocabularies for the fields revgen writes (huggingface.co/docs/hub/datasets-cards)
SIZE_CATEGORIES = {"n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M", "100M<n<1B", "1B<n<10B",
                   "10B<n<100B", "100B<n<1T", "n>1T"}  # fmt: skip
TASK_CATEGORIES = {"text-generation", "question-answering", "summarization", "text-classification", "translation"}


def validate_card_metadata(readme: str) -> list[str]:
    """The dataset-card checks the Hub's validate-yaml endpoint makes on the fields revgen writes."""
    import yaml

    m = re.match(r"---\n(.*?)\n---\n", readme, re.S)
    if not m:
        return ["no YAML metadata block"]
    try:
        meta = yaml.safe_load(m.group(1))
    except yaml.YAMLError as exc:
        return [f"YAML does not parse: {exc}"]
    if not isinstance(meta, dict):
        return ["metadata is not a mapping"]
    errors = []
    lic = meta.get("license")
    if lic is not None and not (isinstance(lic, str) or all(isinstance(x, str) for x in lic)):
        errors.append("license must be a string or a list of strings")
    errors += [f"language {x!r} is not an ISO 639 code" for x in meta.get("language") or []
               if not re.fullmatch(r"[a-z]{2,3}", str(x))]  # fmt: skip
    errors += [f"size_categories {x!r} unknown" for x in meta.get("size_categories") or [] if x not in SIZE_CATEGORIES]
    errors += [f"task_categories {x!r} unknown" for x in meta.get("task_categories") or [] if x not in TASK_CATEGORIES]
    for cfg in meta.get("configs") or []:
        files = cfg.get("data_files") if isinstance(cfg, dict) else None
        if not cfg.get("config_name") or not files or not all(isinstance(f.get("path"), (str, list)) for f in files):
            errors.append(f"configs entry {cfg!r} needs config_name and data_files with paths")
    return errors


class FakeHub:
    def __init__(self):
        self.repos: dict[str, dict] = {}  # repo id -> {"private": bool, "files": {path: bytes}, "commits": [...]}
        self.requests: list[dict] = []
        self.validated: list[tuple[list[str], str]] = []  # (errors, README content) per validate-yaml call
        self.fail = None  # callable(request dict) -> HTTP status to answer instead, or None
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub._handle(self, head=True)

            def do_GET(self):
                hub._handle(self)

            def do_POST(self):
                hub._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def _handle(self, h: BaseHTTPRequestHandler, head: bool = False):
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0)) if h.command == "POST" else b""
        req = {"method": h.command, "path": h.path.split("?")[0], "auth": h.headers.get("Authorization"),
               "headers": dict(h.headers), "body": body}  # fmt: skip
        self.requests.append(req)
        status = self.fail(req) if self.fail else None
        if status:
            return _send(h, status, {"error": "injected failure"})
        path = req["path"]
        if h.command == "POST" and path == "/api/repos/create":
            p = json.loads(body)
            repo = f"{p['organization']}/{p['name']}" if p.get("organization") else p["name"]
            if repo in self.repos:
                return _send(
                    h, 409, {"error": "You already created this dataset repo", "url": f"{self.url}/datasets/{repo}"}
                )
            self.repos[repo] = {"private": p.get("visibility") == "private" or bool(p.get("private")), "files": {},
                                "commits": []}  # fmt: skip
            return _send(h, 200, {"url": f"{self.url}/datasets/{repo}", "name": repo})
        if h.command == "POST" and path == "/api/validate-yaml":
            errors = validate_card_metadata(json.loads(body)["content"])
            self.validated.append((errors, json.loads(body)["content"]))
            return _send(h, 400 if errors else 200, {"errors": [{"message": e} for e in errors], "warnings": []})
        if m := re.fullmatch(REPO + r"/preupload/main", path):
            if m["repo"] not in self.repos:
                return _send(h, 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                     for f in json.loads(body)["files"]]  # fmt: skip
            return _send(h, 200, {"files": files})
        if m := re.fullmatch(REPO + r"/commit/main", path):
            repo = self.repos.get(m["repo"])
            if repo is None:
                return _send(h, 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            lines = [json.loads(x) for x in body.splitlines() if x.strip()]
            header = next(x["value"] for x in lines if x["key"] == "header")
            added = {x["value"]["path"]: base64.b64decode(x["value"]["content"]) for x in lines if x["key"] == "file"}
            repo["files"].update(added)
            oid = hashlib.sha1(body).hexdigest()
            repo["commits"].append({"summary": header["summary"], "files": sorted(added), "oid": oid})
            return _send(h, 200, {"commitUrl": f"{self.url}/datasets/{m['repo']}/commit/{oid}", "commitOid": oid})
        if m := re.fullmatch(r"/datasets/(?P<repo>[^/]+/[^/]+)/resolve/main/(?P<file>.+)", path):
            data = self.repos.get(m["repo"], {}).get("files", {}).get(m["file"])
            if data is None:
                return _send(h, 404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"}, head)
            return _send_bytes(h, 200, data, head)
        return _send(h, 404, {"error": f"fake hub: no route for {h.command} {path}"})


def _send(h, status: int, payload: dict, headers: dict | None = None, head: bool = False):
    _send_bytes(h, status, json.dumps(payload).encode(), head, {"Content-Type": "application/json", **(headers or {})})


def _send_bytes(h, status: int, data: bytes, head: bool = False, headers: dict | None = None):
    h.send_response(status)
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    if not head:
        h.wfile.write(data)
