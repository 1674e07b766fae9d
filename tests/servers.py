"""Real servers on 127.0.0.1 for tests and benches: `vllm serve` (CPU build) and a fault-injecting proxy."""

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VLLMServer:
    """``with VLLMServer(model_dir, name, tmp) as url:`` — `vllm serve` on loopback, killed on exit
    (its whole process group), whatever happens; RuntimeError with the log's tail if it never comes up."""

    def __init__(self, model: str, name: str, tmp: Path, timeout: float = 420, extra_args: tuple = ()):
        self.model, self.name, self.tmp, self.timeout, self.extra = model, name, Path(tmp), timeout, list(extra_args)

    def __enter__(self) -> str:
        port = free_port()
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CACHE_ROOT": str(self.tmp / "cache"),
               "TMPDIR": str(self.tmp)}  # fmt: skip
        self.log = self.tmp / "serve.log"
        self.proc = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model,
                                      "--host", "127.0.0.1", "--port", str(port), "--served-model-name", self.name,
                                      "--enforce-eager", "--max-model-len", "1024", "--dtype", "float32",
                                      "--no-enable-chunked-prefill", "--max-num-batched-tokens", "2048", *self.extra],
                                     env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
                                     start_new_session=True)  # fmt: skip
        url = f"http://127.0.0.1:{port}/v1"
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("vllm serve exited: " + self.log.read_text()[-3000:])
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
                    if r.status == 200:
                        return url
            except OSError:
                time.sleep(2)
        self.__exit__()
        raise RuntimeError(f"vllm serve did not come up in {self.timeout:.0f} s")

    def __exit__(self, *exc):
        try:
            os.killpg(self.proc.pid, 9)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)


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
