"""The OpenAI-compatible backend against a real `vllm serve` (CPU build) on 127.0.0.1, directly and
through a local fault proxy (429 with Retry-After, 500, a dropped connection, a slow reply)."""

import http.server
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from revgen import shards
from revgen.synthesize.run import SynthConfig, synthesize
from tests.helpers import write_jsonl

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

if importlib.util.find_spec("vllm") is None and not os.environ.get("REVGEN_REQUIRE_VLLM"):
    pytest.skip("vllm is not installed (CI sets REVGEN_REQUIRE_VLLM=1)", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(trained_adapter, tmp_path_factory):
    """`vllm serve` on the merged demo adapter, loopback only; stopped at the end, whatever happens."""
    from revgen.models import adapter_base_model
    from revgen.synthesize.shardwork import merged_dir

    merged = merged_dir(trained_adapter[0], adapter_base_model(trained_adapter[0]))
    tmp = tmp_path_factory.mktemp("vllm-serve")
    port = free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CACHE_ROOT": str(tmp / "cache"), "TMPDIR": str(tmp)}
    log = open(tmp / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(merged), "--host", "127.0.0.1",
                             "--port", str(port), "--served-model-name", "revgen-demo", "--enforce-eager",
                             "--max-model-len", "1024", "--dtype", "float32", "--no-enable-chunked-prefill",
                             "--max-num-batched-tokens", "2048"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 420
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail("vllm serve exited: " + (tmp / "serve.log").read_text()[-3000:])
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(2)
    else:
        proc.kill()
        pytest.fail("vllm serve did not come up in 420 s")
    yield url
    os.killpg(proc.pid, 9)
    proc.wait(timeout=30)


class FaultProxy:
    """Forwards to the server; the first requests get a 429 (Retry-After: 1), a 500, a dropped
    connection and a 2-second delay, in that order; later ones pass straight through."""

    def __init__(self, target: str):
        self.target, self.faults, self.seen = target.rstrip("/"), ["429", "500", "drop", "slow"], []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                self._forward(None)

            def do_POST(self):
                self._forward(self.rfile.read(int(self.headers.get("Content-Length", 0))))

            def _forward(self, body):
                fault = proxy.faults.pop(0) if proxy.faults and self.command == "POST" else None
                proxy.seen.append(fault or "ok")
                if fault == "429":
                    self.send_response(429)
                    self.send_header("Retry-After", "1")
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"error": {"message": "slow down"}}')
                    return
                if fault == "500":
                    self.send_response(500)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"error": {"message": "boom"}}')
                    return
                if fault == "drop":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.connection.close()
                    return
                if fault == "slow":
                    time.sleep(2)
                req = urllib.request.Request(proxy.target + self.path.removeprefix("/v1"), data=body,
                                             method=self.command, headers={"Content-Type": "application/json"})  # fmt: skip
                with urllib.request.urlopen(req, timeout=120) as r:
                    data = r.read()
                    self.send_response(r.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def run(adapter, corpus, out, base_url, **kw):
    return synthesize(SynthConfig(corpus=str(corpus), adapter=str(adapter), output_dir=str(out), backend="openai",
                                  base_url=base_url, served_model="revgen-demo", temperature=0.0, max_new_tokens=24,
                                  batch_size=4, shard_size=4, min_words=8, concurrency=4, **kw))  # fmt: skip


def test_synthesize_through_a_server_matches_in_process_and_survives_faults(server, trained_adapter, dolly_rows,
                                                                           tmp_path, monkeypatch):  # fmt: skip
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-test-key-123")
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"text": r["response"]} for r in dolly_rows[300:312]])
    direct = run(trained_adapter[0], corpus, tmp_path / "direct", server.replace("127.0.0.1", "user:pw@127.0.0.1"))
    recs = {r["id"]: r for r in shards.iter_records(tmp_path / "direct")}
    assert direct["counts"]["records"] == len(recs) >= 6
    assert all(r["meta"]["backend"] == "openai" and r["meta"]["served_model"] == "revgen-demo" for r in recs.values())
    saved = (tmp_path / "direct" / "run.json").read_text()
    assert "user:pw" not in saved and "sk-secret" not in saved and json.loads(saved)["server"] == server
    # in-process, the same prompts token for token; the server runs the bf16-merged copy, transformers
    # merges in fp32, so greedy text may part at a near-tie
    local = synthesize(SynthConfig(corpus=str(corpus), adapter=str(trained_adapter[0]), output_dir=str(tmp_path / "local"),
                                   backend="transformers", temperature=0.0, max_new_tokens=24, min_words=8, dtype="float32",
                                   merge=True))  # fmt: skip
    local_recs = {r["id"]: r for r in shards.iter_records(tmp_path / "local")}
    assert local["counts"]["records"] >= 6
    both = recs.keys() & local_recs.keys()
    assert len(both) >= 6 and all(recs[k]["meta"]["prompt_tokens"] == local_recs[k]["meta"]["prompt_tokens"] for k in both)
    same = sum(recs[k]["instruction"] == local_recs[k]["instruction"] for k in both)
    assert same >= 0.5 * len(both), same
    proxy = FaultProxy(server)
    try:
        faulty = run(trained_adapter[0], corpus, tmp_path / "faulty", proxy.url)
    finally:
        proxy.close()
    assert proxy.seen[:4] == ["429", "500", "drop", "slow"]
    got = [r["id"] for r in shards.iter_records(tmp_path / "faulty")]
    assert len(got) == len(set(got)) and sorted(got) == sorted(recs)  # every record once
    assert faulty["counts"]["records"] == direct["counts"]["records"]


def test_an_unreachable_server_fails_clearly_and_keeps_nothing_half_written(trained_adapter, dolly_rows, tmp_path):
    from revgen.errors import UserError

    corpus = write_jsonl(tmp_path / "c.jsonl", [{"text": r["response"]} for r in dolly_rows[300:304]])
    with pytest.raises(UserError, match=r"server http://127.0.0.1:\d+/v1 unreachable after retries"):
        run(trained_adapter[0], corpus, tmp_path / "o", f"http://127.0.0.1:{free_port()}/v1", engine={"max_retries": 1})
    assert not list(shards.iter_records(tmp_path / "o"))
