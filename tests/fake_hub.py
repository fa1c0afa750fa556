"""A Hugging Face hub on loopback, answering what the real `huggingface_hub` client asks.

Routes (as the hub serves them, for model repos only):

- ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}`` (``?blobs=true``):
  model info with ``sha`` and ``siblings`` (sizes, blob ids, LFS info);
- ``GET /api/models/{repo}/tree/{rev}?recursive=...``: the file list;
- ``HEAD`` / ``GET /{repo}/resolve/{rev}/{path}``: the file, with ``X-Repo-Commit``, ``ETag``
  (the LFS sha256 for weight files, else the git blob id) and ``Content-Length``; ``Range``
  requests are answered 206.

Errors come with the hub's ``X-Error-Code``: an unknown repo is 404 ``RepoNotFound``, an
unknown revision 404 ``RevisionNotFound``, a gated repo 401 ``GatedRepo`` without a token
and 403 with a token that has no access; a renamed repo (``moved``) answers file requests
with a relative 307 to its new name. ``rate`` limits the bytes per second of all file
bodies together (for the benchmark). Every request is counted in ``requests`` (method, path).

Run by hand: ``python3 tests/fake_hub.py`` serves a demo repo ``org/tiny`` and prints its URL.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

LLAMA_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "hidden_size": 256,
}


@dataclass
class Repo:
    files: dict[str, bytes]
    sha: str = "0123456789abcdef0123456789abcdef01234567"
    gated: bool = False
    revisions: tuple[str, ...] = ("main",)
    advertised: dict[str, int] = field(default_factory=dict)
    """Sizes the file list announces instead of the real ones (a repo too big for the disk)."""

    def lfs(self, path: str) -> bool:
        return path.endswith((".safetensors", ".bin", ".pth", ".pt", ".gguf"))


def blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def tiny_repo(weights_mb: float = 4.0, shards: int = 2, with_bin: bool = True) -> Repo:
    """A small Llama-like repo: config, tokenizer, generation config, safetensors shards and
    (optionally) .bin duplicates that a prefetch must skip."""
    shard = int(weights_mb * 1024 * 1024 / shards)
    files: dict[str, bytes] = {
        "config.json": json.dumps(LLAMA_CONFIG).encode(),
        "generation_config.json": b'{"do_sample": false}',
        "tokenizer.json": b'{"version": "1.0", "model": {"type": "BPE"}}' + b" " * 20000,
        "tokenizer_config.json": b'{"model_max_length": 4096}',
        "special_tokens_map.json": b"{}",
        "README.md": b"# tiny\n",
        "model.safetensors.index.json": json.dumps(
            {
                "weight_map": {
                    f"w{i}": f"model-{i + 1:05d}-of-{shards:05d}.safetensors" for i in range(shards)
                }
            }
        ).encode(),
    }
    for i in range(shards):
        body = bytes([i + 1]) * shard
        files[f"model-{i + 1:05d}-of-{shards:05d}.safetensors"] = body
        if with_bin:
            files[f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"] = bytes([i + 7]) * shard
    return Repo(files)


@dataclass
class FakeHub:
    repos: dict[str, Repo] = field(default_factory=dict)
    token: str = "hf_fake_token"
    rate: float | None = None
    """Bytes per second of all file bodies together (None: as fast as loopback goes)."""
    requests: list[tuple[str, str]] = field(default_factory=list)
    flowing: threading.Event = field(default_factory=threading.Event)
    """Cleared: file bodies wait (after their headers) until it is set again."""
    held_after: int | None = None
    """Bytes of each file body sent before the body waits until `released` is set: a download
    that is mid-file for sure, however fast or slow the machine is."""
    released: threading.Event = field(default_factory=threading.Event)
    moved: dict[str, str] = field(default_factory=dict)
    """Renamed repos: old name -> new name (file requests get a relative 307)."""
    busy: list[int] = field(default_factory=list)
    """Statuses (429, 500, 503) the next model-info requests answer, one each, as the hub does
    under load (an error body, like every error of `_error`)."""

    def __post_init__(self) -> None:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                hub._handle(self, "GET")

            def do_HEAD(self) -> None:
                hub._handle(self, "HEAD")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._lock = threading.Lock()
        self._next_send = 0.0
        self.flowing.set()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.released.set()
        self.flowing.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- what was asked -----------------------------------------------------------------
    def weight_requests(self) -> list[tuple[str, str]]:
        """Requests for a weight file (HEAD or GET of a .safetensors / .bin)."""
        return [r for r in self.requests if "/resolve/" in r[1] and self._is_weight(r[1])]

    @staticmethod
    def _is_weight(path: str) -> bool:
        return path.split("?", maxsplit=1)[0].endswith((".safetensors", ".bin", ".pth"))

    def file_gets(self) -> list[str]:
        return [p for m, p in self.requests if m == "GET" and "/resolve/" in p]

    # --- answers ------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        with self._lock:
            self.requests.append((method, h.path))
        path = unquote(urlsplit(h.path).path)
        query = urlsplit(h.path).query
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)
        if m:
            with self._lock:
                busy = self.busy.pop(0) if self.busy else None
            if busy is not None:
                return self._error(h, method, busy, "", "Too many requests or server busy")
            return self._info(h, method, m.group(1), m.group(2) or "main", "blobs=" in query)
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(/.*)?", path)
        if m:
            return self._tree(h, method, m.group(1), m.group(2))
        m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if m:
            if m.group(1) in self.moved:
                h.send_response(307)
                h.send_header("Location", path.replace(m.group(1), self.moved[m.group(1)], 1))
                h.send_header("Content-Length", "0")
                h.end_headers()
                return None
            return self._file(h, method, m.group(1), m.group(2), m.group(3))
        self._error(h, method, 404, "", "not found")

    def _access(self, h: BaseHTTPRequestHandler, method: str, name: str, rev: str) -> Repo | None:
        repo = self.repos.get(name)
        if repo is None:
            self._error(h, method, 404, "RepoNotFound", "Repository not found")
            return None
        if repo.gated:
            auth = h.headers.get("Authorization")
            if auth is None:
                self._error(h, method, 401, "GatedRepo", "Access to model is restricted")
                return None
            if auth != f"Bearer {self.token}":
                self._error(h, method, 403, "GatedRepo", "Access to model is restricted")
                return None
        if rev not in repo.revisions and rev != repo.sha:
            self._error(h, method, 404, "RevisionNotFound", "Invalid rev id")
            return None
        return repo

    def _info(
        self, h: BaseHTTPRequestHandler, method: str, name: str, rev: str, blobs: bool
    ) -> None:
        repo = self._access(h, method, name, rev)
        if repo is None:
            return
        siblings: list[dict[str, Any]] = []
        for path, data in repo.files.items():
            entry: dict[str, Any] = {"rfilename": path}
            if blobs:
                size = repo.advertised.get(path, len(data))
                entry.update(size=size, blobId=blob_id(data))
                if repo.lfs(path):
                    entry["lfs"] = {
                        "size": size,
                        "sha256": hashlib.sha256(data).hexdigest(),
                        "pointerSize": 134,
                    }
            siblings.append(entry)
        doc = {
            "_id": name,
            "id": name,
            "modelId": name,
            "sha": repo.sha,
            "private": False,
            "gated": "manual" if repo.gated else False,
            "disabled": False,
            "tags": [],
            "siblings": siblings,
        }
        self._json(h, method, doc)

    def _tree(self, h: BaseHTTPRequestHandler, method: str, name: str, rev: str) -> None:
        repo = self._access(h, method, name, rev)
        if repo is None:
            return
        items = []
        for path, data in repo.files.items():
            item: dict[str, Any] = {
                "type": "file",
                "oid": blob_id(data),
                "size": len(data),
                "path": path,
            }
            if repo.lfs(path):
                item["lfs"] = {
                    "oid": hashlib.sha256(data).hexdigest(),
                    "size": len(data),
                    "pointerSize": 134,
                }
            items.append(item)
        self._json(h, method, items)

    def _file(self, h: BaseHTTPRequestHandler, method: str, name: str, rev: str, path: str) -> None:
        repo = self._access(h, method, name, rev)
        if repo is None:
            return
        data = repo.files.get(path)
        if data is None:
            self._error(h, method, 404, "EntryNotFound", f"{path} does not exist")
            return
        etag = hashlib.sha256(data).hexdigest() if repo.lfs(path) else blob_id(data)
        start, status = 0, 200
        rng = h.headers.get("Range")
        if rng and method == "GET":
            m = re.fullmatch(r"bytes=(\d+)-", rng.strip())
            if m:
                start, status = int(m.group(1)), 206
        body = data[start:]
        h.send_response(status)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("X-Repo-Commit", repo.sha)
        h.send_header("ETag", f'"{etag}"')
        h.send_header("Content-Length", str(len(body)))
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.end_headers()
        if method == "HEAD":
            return
        self._send_body(h, body)

    def _send_body(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        chunk = 64 * 1024
        sent = 0
        self.flowing.wait(60)
        try:
            while sent < len(body):
                if self.held_after is not None and sent >= self.held_after:
                    self.released.wait(60)
                piece = body[sent : sent + chunk]
                if self.rate:
                    self._pace(len(piece))
                h.wfile.write(piece)
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            return

    def _pace(self, n: int) -> None:
        """Wait for this piece's turn: `rate` holds for all connections together."""
        assert self.rate
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_send)
            self._next_send = start + n / self.rate
        delay = start + n / self.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def _json(self, h: BaseHTTPRequestHandler, method: str, doc: Any) -> None:
        body = json.dumps(doc).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if method == "GET":
            h.wfile.write(body)

    def _error(
        self, h: BaseHTTPRequestHandler, method: str, status: int, code: str, message: str
    ) -> None:
        body = json.dumps({"error": message}).encode()
        h.send_response(status)
        if code:
            h.send_header("X-Error-Code", code)
        h.send_header("X-Error-Message", message)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if method == "GET":
            h.wfile.write(body)


if __name__ == "__main__":
    hub = FakeHub({"org/tiny": tiny_repo()})
    print(hub.url, flush=True)
    try:
        hub.thread.join()
    except KeyboardInterrupt:
        hub.close()
    sys.exit(0)
