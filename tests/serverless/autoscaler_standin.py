"""A loopback stand-in for Vast's serverless autoscaler, as the worker in vastai 1.9.1 talks
to it (`vastai/serverless/server/lib/`):

- `GET {REPORT_ADDR}/pubkey/`: the PEM public key whose private half signs each request's
  `auth_data` (`backend.py` `_fetch_pubkey`, `__check_signature`: PKCS#1 v1.5 over SHA-256 of
  `json.dumps({"url": auth_data.url}, indent=4, sort_keys=True)`);
- `POST {REPORT_ADDR}/worker_status/`: the worker's report, a `WorkerStatusData` as JSON
  (`metrics.py` `__send_metrics_and_reset`), recorded here with the time it came;
- `POST {REPORT_ADDR}/delete_requests/`: the requests the worker finished
  (`metrics.py` `__send_delete_requests_and_reset`), recorded.

`sign()` makes the `auth_data` the autoscaler's router would send with a request.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from Crypto.Hash import SHA256
from Crypto.PublicKey import RSA
from Crypto.Signature import pkcs1_15


class Autoscaler:
    def __init__(self) -> None:
        self.key = RSA.generate(2048)
        self.reports: list[dict[str, Any]] = []
        self.deleted: list[dict[str, Any]] = []
        self.pubkey_fetches = 0
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/pubkey/":
                    with owner.lock:
                        owner.pubkey_fetches += 1
                    self._answer(200, owner.key.publickey().export_key(), "text/plain")
                else:
                    self._answer(404, b"{}")

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with owner.lock:
                    if self.path == "/worker_status/":
                        owner.reports.append({**body, "_t": time.time()})
                    elif self.path == "/delete_requests/":
                        owner.deleted.append(body)
                    else:
                        self._answer(404, b"{}")
                        return
                self._answer(200, b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def sign(self, worker_url: str, endpoint: str, reqnum: int) -> dict[str, Any]:
        message = json.dumps({"url": worker_url}, indent=4, sort_keys=True)
        signature = pkcs1_15.new(self.key).sign(SHA256.new(message.encode()))
        return {
            "cost": "100",
            "endpoint": endpoint,
            "reqnum": reqnum,
            "request_idx": reqnum,
            "signature": base64.b64encode(signature).decode(),
            "url": worker_url,
        }

    def seen(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.reports)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
