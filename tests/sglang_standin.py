"""Stand-in for the SGLang server process (``sglang serve ...``), for tests without a GPU.

Stdlib only. Run as ``python3 tests/sglang_standin.py [SGLang server options...]``.

Options are parsed by a real ``argparse`` parser built from an option table (the JSON
files in ``vast_sglang_launcher/plan/data``), so unknown and ambiguous options fail exactly as
they do with the real server (exit status 2, argparse's message on stderr).

Behaviour is driven by environment variables (times in seconds, floats allowed, unset =
off), all measured from process start unless noted:

``STANDIN_OPTION_TABLE``    path of the option table (default: server-args-0.5.6.post2.json)
``STANDIN_BIND_DELAY``      wait this long before binding host:port (weight loading)
``STANDIN_WARMUP``          after binding, /health answers 503 this long (then 200 + ready line)
``STANDIN_CHILDREN``        spawn N child processes (same process group, die with the parent)
``STANDIN_CRASH_AFTER``     print STANDIN_CRASH_MESSAGE to stderr, SIGKILL children and itself
``STANDIN_EXIT_AFTER``      print STANDIN_CRASH_MESSAGE (if set), exit with STANDIN_EXIT_CODE
``STANDIN_EXIT_CODE``       exit status for STANDIN_EXIT_AFTER (default 0)
``STANDIN_CRASH_MESSAGE``   text printed to stderr before a crash / exit
``STANDIN_CRASH_WHEN``      a path: once it exists, crash as STANDIN_CRASH_AFTER does (a test
                          creates it when the server is ready: a crash after ready that no
                          timing decides; added for the failure-hint tests of issue 17)
``STANDIN_HANG_AFTER``      stop answering HTTP (connections accepted, requests never answered)
``STANDIN_IGNORE_SIGTERM``  ``1``: ignore SIGTERM
``STANDIN_DRAIN``           a request of the server's own that is still in flight this long
                            after SIGTERM (the drain waits for it like for any other)
``STANDIN_WATCHDOG_PERIOD`` seconds between the checks of SGLang's SIGTERM watchdog (default
                            5, SGLang's; see "The stop" below)
``STANDIN_STATE_DIR``       write ``start-<n>.json`` there at start (pid, pgid, sid, args, env)
``STANDIN_STREAM_INTERVAL`` seconds between streamed chat chunks (default 0.2)
``STANDIN_STREAM_GATE``     a path: a stream stops after its first chunk until it exists (a
                          test sees a chunk arrive before the answer could be complete)
``STANDIN_ACCESS_LOG``      ``1``: log each HTTP request to stderr
``STANDIN_FAILURE``         fail at start as the real release does, with its exact last lines:
                          ``no_accelerator``, ``unsupported_arch``, ``model_not_found``,
                          ``gated``, ``tp_heads`` (see FAILURES; the release is
                          STANDIN_RELEASE, default: read from the option table's file name)
``STANDIN_CHATTER``         print this many log lines every 10 ms, from start until exit
``STANDIN_HEALTH_HANG``     ``1``: a /health request before ready never gets an answer
``STANDIN_ORPHANS``         ``1``: the STANDIN_CHILDREN outlive the server (no PDEATHSIG)
``STANDIN_STATE_DIR``       also gets ``signals-<pid>.txt``: one line per signal received,
                          and ``armed-<pid>`` from each child once its PDEATHSIG is set
``STANDIN_API_KEY``         every request but ``/health*`` needs ``Authorization: Bearer`` this
                            (401 otherwise), as SGLang's ``--api-key`` and the edge ask
``STANDIN_REQUEST_LOG``     append one JSON line per answered request to this file
                            (time, method, path, status, pid, authorization present), and
                            one per SIGTERM/SIGINT received (time, signal, pid)
``STANDIN_SHARDS``          safetensors shards to "load" (SGLang's progress bar on stderr:
                            redrawn after ``\r`` from 0.5.10, one line each before)
``STANDIN_SHARD_TIME``      seconds per shard
``--startup-weight-load-mode overlap``: "Load weight end" comes after the graph capture
``STANDIN_CAPTURE``         seconds between SGLang's "Capture cuda graph begin" and "end" lines,
                            printed (with "KV Cache is allocated" and "Memory pool end") after
                            "Load weight end" and before binding (default 0)

The stop, as SGLang does it (read in every release from 0.5.6.post2 to 0.5.23):

- SIGTERM to the main process only sets a flag (``tokenizer_manager.py``
  ``SignalHandler.sigterm_handler``: ``gracefully_exit = True``); ``/health`` then answers 503
  (0.5.6.post2 ``entrypoints/http_server.py`` ``health``; 0.5.20+ ``is_healthy``).
- ``TokenizerManager.sigterm_watchdog`` looks at the flag every 5 s (``asyncio.sleep(5)``,
  started with the server), then drains: while requests remain it logs "Gracefully exiting...
  Remaining number of requests N" and looks again 5 s later; with none left it ends the tree.
  0.5.6.post2-0.5.14: ``kill_process_tree(os.getpid(), include_parent=True)`` (SIGKILL to the
  schedulers, then to itself); 0.5.16/0.5.18: ``ShutdownReq`` to the schedulers, up to 15 s
  for them to exit, then the same SIGKILL of the tree and itself; 0.5.20+: ``ShutdownReq``, up
  to ``_SCHEDULER_EXIT_TIMEOUT_SECS`` (15 s), ``kill_process_tree(include_parent=False)``, then
  ``sys.exit(0)``. ``SGL_FORCE_SHUTDOWN`` set: no drain, the tree ends at the first check.
- The schedulers (STANDIN_CHILDREN) install no SIGTERM handler (0.5.23
  ``mem_cache/allocator/unified_sub_pool.py`` says so) and die of it; they die with the main
  process (``scheduler.py`` ``run_scheduler_process`` -> ``kill_itself_when_parent_died``).
  A request whose scheduler is gone never gets another chunk: it hangs.
- 0.5.22+, ``--node-rank`` >= 1: SIGTERM is logged and ignored; the main process waits for
  rank 0 to stop its schedulers (``entrypoints/engine.py`` ``_launch_subprocesses``).

Endpoints: ``/health``, ``/health_generate``, ``/ready`` (0.5.20+), ``/v1/models``,
``/model_info`` and ``/get_model_info``, ``/server_info`` and ``/get_server_info``,
``POST /v1/chat/completions`` and ``POST /v1/completions`` (both also streamed) and
``POST /generate``: what SGLang's gateway (smg, sglang-router) and Vast's serverless worker
ask of a server.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

START = time.monotonic()

DEFAULT_TABLE = (
    Path(__file__).resolve().parent.parent
    / "vast_sglang_launcher"
    / "plan"
    / "data"
    / "server-args-0.5.6.post2.json"
)

READY_LINE = "The server is fired up and ready to roll!"

# Child process: die with the parent (PR_SET_PDEATHSIG=SIGKILL), otherwise sleep forever.
CHILD_CODE = """\
import ctypes, os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_DFL)
signal.signal(signal.SIGINT, signal.SIG_IGN)
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)
except Exception:
    pass
if os.environ.get("STANDIN_STATE_DIR"):  # armed: tests wait for this, not for a while
    open(os.path.join(os.environ["STANDIN_STATE_DIR"], f"armed-{os.getpid()}"), "w").close()
ppid = int(sys.argv[1])
while os.getppid() == ppid:
    time.sleep(1.0)
os._exit(0)
"""

# Child process that outlives the server (a worker that escaped PDEATHSIG): sleeps forever.
ORPHAN_CODE = """\
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_DFL)
signal.signal(signal.SIGINT, signal.SIG_IGN)
while True:
    time.sleep(1.0)
"""

# The real releases' last lines for failures that no restart fixes, and how the process ends
# ("exit": status 1 from the main process; "crash": a scheduler failed, the tree is SIGKILLed).
# Sources (read in each release's wheel): sglang/srt/utils/common.py get_device(),
# sglang/srt/models/registry.py, sglang/srt/distributed/utils.py ensure_divisibility(); the
# model lookups are transformers / huggingface_hub errors raised through SGLang's get_config.
FAILURES: dict[str, tuple[str, list[str]]] = {
    "no_accelerator": (
        "exit",
        [
            "Traceback (most recent call last):",
            '  File "/usr/local/lib/python3.12/dist-packages/sglang/srt/server_args.py", '
            "in __post_init__",
            "    self._handle_missing_default_values()",
            '  File "/usr/local/lib/python3.12/dist-packages/sglang/srt/utils/common.py", '
            "in get_device",
            "{no_accelerator}",
        ],
    ),
    "unsupported_arch": (
        "crash",
        [
            "[2025-01-01 00:00:00 TP0] Scheduler hit an exception: Traceback (most recent "
            "call last):",
            '  File "/usr/local/lib/python3.12/dist-packages/sglang/srt/models/registry.py", '
            "in resolve_model_cls",
            "ValueError: Model architectures ['FancyNewForCausalLM'] are not supported for now. "
            "Supported architectures: dict_keys(['LlamaForCausalLM', 'Qwen2ForCausalLM'])",
        ],
    ),
    "model_not_found": (
        "exit",
        [
            "Traceback (most recent call last):",
            "huggingface_hub.errors.RepositoryNotFoundError: 404 Client Error. (Request ID: "
            "Root=1-0000)",
            "",
            "Repository Not Found for url: https://huggingface.co/api/models/no-such-org/"
            "no-such-model/revision/main.",
            "OSError: no-such-org/no-such-model is not a local folder and is not a valid model "
            "identifier listed on 'https://huggingface.co/models'",
        ],
    ),
    "gated": (
        "exit",
        [
            "Traceback (most recent call last):",
            "huggingface_hub.errors.GatedRepoError: 401 Client Error. (Request ID: Root=1-0000)",
            "",
            "Cannot access gated repo for url https://huggingface.co/meta-llama/Llama-3.1-8B/"
            "resolve/main/config.json.",
            "OSError: You are trying to access a gated repo.",
        ],
    ),
    "tp_heads": (
        "crash",
        [
            "[2025-01-01 00:00:00 TP0] Scheduler hit an exception: Traceback (most recent "
            "call last):",
            '  File "/usr/local/lib/python3.12/dist-packages/sglang/srt/distributed/utils.py", '
            "in ensure_divisibility",
            "AssertionError: 14 is not divisible by 4",
        ],
    ),
}

# srt/utils/common.py get_device(): the wording from each release on (read in all ten releases
# 0.5.6.post2 .. 0.5.23; a release reads like the newest entry not after it).
NO_ACCELERATOR = {
    "0.5.6.post2": "RuntimeError: No accelerator (CUDA, XPU, HPU, NPU) is available.",
    "0.5.10": "RuntimeError: No accelerator (CUDA, XPU, HPU, NPU, MUSA, MPS) is available.",
    "0.5.14": "RuntimeError: No accelerator (CUDA, XPU, HPU, NPU, MUSA, MPS) or platform plugin "
    "is available.",
}


def no_accelerator_line(release: str) -> str:
    def key(version: str) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", version))

    since = [v for v in NO_ACCELERATOR if key(v) <= key(release)]
    return NO_ACCELERATOR[max(since, key=key)] if since else NO_ACCELERATOR["0.5.6.post2"]


# ServerArgs field names that differ from the argparse dest (ServerArgs.from_cli_args).
SERVER_ARGS_ALIASES = {
    "tensor_parallel_size": "tp_size",
    "pipeline_parallel_size": "pp_size",
    "data_parallel_size": "dp_size",
    "expert_parallel_size": "ep_size",
}

STREAM_PIECES = ["This", " is", " a", " stand-in", " reply."]


def env_float(name: str) -> float | None:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else None


def log(msg: str) -> None:
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    print(f"[{stamp}] {msg}", flush=True)


def build_parser(table_path: Path) -> argparse.ArgumentParser:
    table = json.loads(table_path.read_text())
    parser = argparse.ArgumentParser(
        prog="sglang serve", allow_abbrev=bool(table.get("allow_abbrev", True))
    )
    for opt in table["options"]:
        dest = opt["dest"]
        if dest == "help":
            continue
        kind = opt["kind"]
        kwargs: dict[str, Any] = {"dest": dest, "default": opt.get("default")}
        if kind == "flag":
            kwargs["action"] = "store_true"
        else:
            choices = opt.get("choices")
            value_type: type = str
            if choices:
                kinds = {type(c) for c in choices}
                if len(kinds) == 1 and kinds != {str}:
                    value_type = kinds.pop()
                kwargs["choices"] = choices
            kwargs["type"] = value_type
            if kind == "list":
                kwargs["nargs"] = "*"
            elif kind == "optional":
                kwargs["nargs"] = "?"
        parser.add_argument(*opt["options"], **kwargs)
    return parser


def _is_json(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool, list, dict))


def show(value: Any) -> str:
    if isinstance(value, str) and value.isdigit():
        return value
    return repr(value)


class State:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.model = args.model_path
        served = getattr(args, "served_model_name", None)
        self.model_id = served or args.model_path
        self.ready = False
        self.term_at = 0.0
        self.hung = False
        self.stream_interval = env_float("STANDIN_STREAM_INTERVAL")
        if self.stream_interval is None:
            self.stream_interval = 0.2
        self.access_log = os.environ.get("STANDIN_ACCESS_LOG") == "1"
        self.api_key = os.environ.get("STANDIN_API_KEY") or None
        self.request_log = os.environ.get("STANDIN_REQUEST_LOG") or None
        self.release = "0.5.6.post2"
        self.gracefully_exit = False
        """SGLang's flag, set by SIGTERM (tokenizer_manager.py SignalHandler.sigterm_handler)."""
        self.schedulers: list[subprocess.Popen[bytes]] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        """SGLang's len(rid_to_state): the requests that the drain waits for."""

    def schedulers_alive(self) -> bool:
        return all(child.poll() is None for child in self.schedulers)

    @contextlib.contextmanager
    def request(self) -> Any:
        with self.lock:
            self.in_flight += 1
        try:
            yield
        finally:
            with self.lock:
                self.in_flight -= 1

    def wait_for_scheduler(self) -> None:
        """A request needs its scheduler: with one gone, no output ever comes (the
        detokenizer never sends): the request hangs until the process ends."""
        while not self.schedulers_alive():
            time.sleep(3600)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "uvicorn"
    sys_version = ""

    @property
    def state(self) -> State:
        return self.server.standin_state  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        if self.state.access_log:
            super().log_message(format, *args)

    def _hang_if_needed(self) -> None:
        if self.state.hung:
            while True:
                time.sleep(3600)

    def _send(self, status: int, body: bytes = b"", ctype: str = "application/json") -> None:
        self.send_response(status)
        if body:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _send_json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode())

    def send_response(self, code: int, message: str | None = None) -> None:
        super().send_response(code, message)
        log_path = self.state.request_log
        if log_path and hasattr(self, "headers"):  # not for a request line it cannot parse
            entry = {
                "t": time.time(),
                "method": self.command,
                "path": self.path,
                "status": code,
                "pid": os.getpid(),
                "auth": bool(self.headers.get("Authorization")),
            }
            with open(log_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry) + "\n")

    def _refused(self) -> bool:
        """401 unless the request carries the key; ``/health*``, ``/ready*`` and
        ``/metrics*`` never need it (0.5.20+ utils/auth.py: "Health/readiness/metrics
        endpoints are always allowed")."""
        key = self.state.api_key
        if not key or self.path.startswith(("/health", "/ready", "/metrics")):
            return False
        if self.headers.get("Authorization") == f"Bearer {key}":
            return False
        if self.command == "POST":
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
        self._send_json(401, {"error": "Unauthorized"})
        return True

    def do_GET(self) -> None:
        self._hang_if_needed()
        if self._refused():
            return
        st = self.state
        path = self.path.split("?", 1)[0]
        if path == "/ready" and release_key(st.release) >= (0, 5, 20):
            # 0.5.20+ http_server.py ready: TokenizerManager.is_ready() (up, not paused, not
            # shutting down); earlier releases have no such route (404 below).
            self._send(200 if st.ready and not st.gracefully_exit else 503)
        elif path in ("/health", "/health_generate"):
            if not st.ready and os.environ.get("STANDIN_HEALTH_HANG") == "1":
                while True:  # a health check stuck in the loading server: no answer ever
                    time.sleep(3600)
            self._send(200 if st.ready and not st.gracefully_exit else 503)
        elif path == "/v1/models":
            self._send_json(
                200,
                {
                    "object": "list",
                    "data": [
                        {
                            "id": st.model_id,
                            "object": "model",
                            "created": int(time.time()),
                            "owned_by": "sglang",
                            "root": st.model_id,
                        }
                    ],
                },
            )
        elif path in ("/model_info", "/get_model_info"):
            self._send_json(200, {"model_path": st.model, "is_generation": True})
        elif path in ("/server_info", "/get_server_info"):
            info = {k: v for k, v in vars(st.args).items() if _is_json(v)}
            self._send_json(200, {**info, "version": "0.0.0-standin"})
        else:
            self._send_json(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        self._hang_if_needed()
        if self._refused():
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        if path not in ("/v1/chat/completions", "/v1/completions", "/generate"):
            self._send_json(404, {"detail": "Not Found"})
            return
        error = None
        try:
            req = json.loads(raw or b"{}")
        except ValueError as exc:
            req, error = None, f"invalid JSON body: {exc}"
        if not isinstance(req, dict):
            message = error or "body is not a JSON object"
            self._send_json(400, {"object": "error", "message": message, "code": 400})
            return
        with self.state.request():
            self.state.wait_for_scheduler()
            if path == "/v1/completions" and req.get("stream"):
                self._stream(req, completion=True)
            elif path == "/v1/completions":
                self._text_completion(req)
            elif path == "/generate":
                self._generate()
            elif req.get("stream"):
                self._stream(req)
            else:
                self._complete(req)

    def _text_completion(self, req: dict[str, Any]) -> None:
        self._send_json(
            200,
            {
                "id": uuid.uuid4().hex,
                "object": "text_completion",
                "created": int(time.time()),
                "model": req.get("model") or self.state.model_id,
                "choices": [{"index": 0, "text": "".join(STREAM_PIECES), "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": 10,
                    "completion_tokens": len(STREAM_PIECES),
                    "total_tokens": 10 + len(STREAM_PIECES),
                },
            },
        )

    def _generate(self) -> None:
        self._send_json(
            200,
            {
                "text": "".join(STREAM_PIECES),
                "meta_info": {
                    "id": uuid.uuid4().hex,
                    "finish_reason": {"type": "stop"},
                    "prompt_tokens": 10,
                    "completion_tokens": len(STREAM_PIECES),
                },
            },
        )

    def _complete(self, req: dict[str, Any]) -> None:
        text = "".join(STREAM_PIECES)
        self._send_json(
            200,
            {
                "id": uuid.uuid4().hex,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": req.get("model") or self.state.model_id,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": 10,
                    "completion_tokens": len(STREAM_PIECES),
                    "total_tokens": 10 + len(STREAM_PIECES),
                },
            },
        )

    def _stream(self, req: dict[str, Any], completion: bool = False) -> None:
        """Server-sent events, as SGLang streams chat (`chat.completion.chunk` with a delta)
        and, with `completion`, completions (`text_completion` chunks with the text: 0.5.23
        `entrypoints/openai/serving_completions.py` `_generate_completion_stream`,
        `protocol.py` `CompletionStreamResponse`), ending with `data: [DONE]`."""
        chunked = self.request_version != "HTTP/1.0"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()

        def emit(data: bytes) -> None:
            if chunked:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            else:
                self.wfile.write(data)
            self.wfile.flush()

        cid = uuid.uuid4().hex
        model = req.get("model") or self.state.model_id
        try:
            for i, piece in enumerate(STREAM_PIECES):
                if i:
                    time.sleep(self.state.stream_interval or 0.0)
                self.state.wait_for_scheduler()
                delta: dict[str, Any] = {"content": piece}
                if i == 0:
                    delta["role"] = "assistant"
                last = i == len(STREAM_PIECES) - 1
                finish = "stop" if last else None
                chunk = {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
                if completion:
                    chunk["object"] = "text_completion"
                    chunk["choices"] = [
                        {"index": 0, "text": piece, "logprobs": None, "finish_reason": finish}
                    ]
                emit(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                gate = os.environ.get("STANDIN_STREAM_GATE")
                while i == 0 and gate and not os.path.exists(gate):
                    time.sleep(0.01)  # held after the first chunk until the test lets go
            emit(b"data: [DONE]\n\n")
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def spawn_children(n: int, orphans: bool = False) -> list[subprocess.Popen[bytes]]:
    children = []
    for i in range(n):
        code = ORPHAN_CODE if orphans else CHILD_CODE
        children.append(
            subprocess.Popen(
                [sys.executable, "-c", code, str(os.getpid()), f"standin-child-{i}"],
                stdin=subprocess.DEVNULL,
            )
        )
    return children


def release_of(table: Path) -> str:
    name = table.name
    if name.startswith("server-args-") and name.endswith(".json"):
        return name[len("server-args-") : -len(".json")]
    return "0.5.6.post2"


def fail_like_sglang(kind: str, release: str, children: list[subprocess.Popen[bytes]]) -> None:
    how, lines = FAILURES[kind]
    text = no_accelerator_line(release)
    for line in lines:
        print(line.replace("{no_accelerator}", text), file=sys.stderr, flush=True)
    sys.stdout.flush()
    if how == "crash":
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)
    os._exit(1)


def record_signals() -> None:
    """Append each delivered signal to STANDIN_STATE_DIR/signals-<pid>.txt: one line per
    delivery, counted from the wake-up fd (Python runs a handler once for signals that arrive
    together; the C-level handler writes one byte for each)."""
    state_dir = os.environ.get("STANDIN_STATE_DIR")
    if not state_dir:
        return
    path = Path(state_dir) / f"signals-{os.getpid()}.txt"
    read_fd, write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)

    def pump() -> None:
        while True:
            select.select([read_fd], [], [])
            with contextlib.suppress(BlockingIOError):
                data = os.read(read_fd, 64)
                with contextlib.suppress(OSError), open(path, "a") as fh:
                    fh.write("".join(signal.Signals(b).name + "\n" for b in data))

    threading.Thread(target=pump, daemon=True).start()


def stop_children(children: list[subprocess.Popen[bytes]], sig: int, grace: float) -> None:
    for child in children:
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(sig)
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


SGLANG_WATCHDOG_PERIOD = 5.0
"""tokenizer_manager.py TokenizerManager.sigterm_watchdog: ``await asyncio.sleep(5)`` between
looks at the flag, and between looks at the remaining requests (every release)."""
SCHEDULER_EXIT_TIMEOUT = 15.0
"""0.5.16+ sigterm_watchdog: how long the schedulers get to exit after ShutdownReq (0.5.20+:
``_SCHEDULER_EXIT_TIMEOUT_SECS = 15``)."""


def release_key(release: str) -> tuple[int, ...]:
    parts = []
    for part in release.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def force_shutdown() -> bool:
    # sigterm_watchdog: get_bool_env_var("SGL_FORCE_SHUTDOWN") (utils/common.py: "true"/"1")
    return os.environ.get("SGL_FORCE_SHUTDOWN", "false").lower() in ("true", "1")


def sigterm_watchdog(state: State, period: float, drain: float, release: str) -> None:
    """TokenizerManager.sigterm_watchdog, started with the handle loop (see the module doc)."""
    while not state.gracefully_exit:
        time.sleep(period)
    while True:
        own = 1 if time.monotonic() < state.term_at + drain else 0  # STANDIN_DRAIN
        remaining = state.in_flight + own
        if force_shutdown():
            log("Signal SIGTERM received while force shutdown flag set. Force exiting.")
            break
        log(f"Gracefully exiting... Remaining number of requests {remaining}.")
        if remaining > 0:
            time.sleep(period)
        else:
            break
    children = state.schedulers
    if release_key(release) >= (0, 5, 16):
        # ShutdownReq: each scheduler leaves its loop and exits; up to 15 s for them.
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + SCHEDULER_EXIT_TIMEOUT
        while time.monotonic() < deadline and any(c.poll() is None for c in children):
            time.sleep(0.1)
    # utils/common.py kill_process_tree: SIGKILL to every descendant.
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
    sys.stdout.flush()
    sys.stderr.flush()
    if release_key(release) >= (0, 5, 20):
        os._exit(0)  # include_parent=False, then sys.exit(0)
    os.kill(os.getpid(), signal.SIGKILL)  # include_parent=True: itself.kill()


def load_shards(release: str) -> None:
    """STANDIN_SHARDS safetensors files loaded STANDIN_SHARD_TIME apart, with SGLang's tqdm
    bar on stderr (model_loader/weight_utils.py, desc "Loading safetensors checkpoint
    shards"). Its bar format ends in a newline in 0.5.6.post2 (weight_utils.py _BAR_FORMAT)
    and 0.5.8 (utils/common.py BAR_FORMAT); from 0.5.10 it does not, so tqdm redraws the bar
    in place after a carriage return and prints the newline only when it closes."""
    total = int(os.environ.get("STANDIN_SHARDS") or 0)
    if not total:
        return
    pause = env_float("STANDIN_SHARD_TIME") or 0.0
    newline = "\n" if release_key(release) < (0, 5, 10) else ""
    started = time.monotonic()
    for done in range(total + 1):
        if done:
            time.sleep(pause)
        elapsed = time.monotonic() - started
        bar = (
            f"Loading safetensors checkpoint shards: {100 * done // total:3d}% Completed | "
            f"{done}/{total} [00:{int(elapsed):02d}<00:00, {done / max(elapsed, 1e-3):.2f}it/s]"
        )
        sys.stderr.write("\r" + bar + newline)
        sys.stderr.flush()
    if not newline:
        sys.stderr.write("\n")
        sys.stderr.flush()


def write_state(state_dir: str, args: argparse.Namespace, children: list[Any]) -> None:
    directory = Path(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "pid": os.getpid(),
        "pgid": os.getpgid(0),
        "sid": os.getsid(0),
        "argv": sys.argv[1:],
        "args": vars(args),
        "children": [c.pid for c in children],
        "env": {
            "SGLANG_MODEL": os.environ.get("SGLANG_MODEL"),
            "MODEL_NAME": os.environ.get("MODEL_NAME"),
            "HOME": os.environ.get("HOME"),
            "SGLANG_PORT": os.environ.get("SGLANG_PORT"),  # SGLang's own (get_open_port)
            "cwd": os.getcwd(),
        },
    }
    data = json.dumps(payload, indent=1, default=str).encode()
    # Written whole under a private name, then linked to the first free start-<n>.json: a
    # reader never sees the file empty or half written, and two starts never share a number.
    tmp = directory / f".start-{os.getpid()}.tmp"
    tmp.write_bytes(data)
    n = 1
    try:
        while True:
            try:
                os.link(tmp, directory / f"start-{n}.json")
                return
            except FileExistsError:
                n += 1
    finally:
        tmp.unlink()


def main() -> None:
    table = Path(os.environ.get("STANDIN_OPTION_TABLE") or DEFAULT_TABLE)
    args = build_parser(table).parse_args()

    host = str(args.host or "127.0.0.1")
    port = int(args.port if args.port is not None else 30000)

    fields = ", ".join(f"{SERVER_ARGS_ALIASES.get(k, k)}={show(v)}" for k, v in vars(args).items())
    log(f"server_args=ServerArgs({fields})")

    orphans = os.environ.get("STANDIN_ORPHANS") == "1"
    children = spawn_children(int(os.environ.get("STANDIN_CHILDREN") or 0), orphans)

    def finish(code: int) -> None:
        stop_children(children, signal.SIGTERM, 2.0)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    request_log = os.environ.get("STANDIN_REQUEST_LOG")
    release = os.environ.get("STANDIN_RELEASE") or release_of(table)
    state = State(args)
    state.release = release
    state.schedulers = children
    node_rank = int(getattr(args, "node_rank", 0) or 0)
    waits_for_rank_0 = node_rank >= 1 and release_key(release) >= (0, 5, 22)

    def on_signal(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if request_log:
            with open(request_log, "a", encoding="utf-8") as fh:
                event = {"t": time.time(), "signal": name}
                fh.write(json.dumps({**event, "pid": os.getpid()}) + "\n")
        if waits_for_rank_0:
            # 0.5.22+ entrypoints/engine.py _launch_subprocesses (node_rank >= 1): logged and
            # ignored; rank 0's ShutdownReq stops the schedulers.
            log(
                f"SIGTERM received on node_rank {node_rank}; waiting for the rank-0 "
                "ShutdownReq broadcast to stop the schedulers."
            )
            return
        if not state.ready or node_rank >= 1:
            # Before 0.5.22 a rank above 0 has no handler (engine.py _launch_subprocesses
            # joins its schedulers). On rank 0 the handler comes with the tokenizer
            # manager's handle loop, made by the first generate request (0.5.6.post2
            # tokenizer_manager.py generate_request -> auto_create_handle_loop), i.e.
            # SGLang's own warmup: before that a signal has its default action (the
            # schedulers follow by PDEATHSIG).
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if not state.gracefully_exit:
            # tokenizer_manager.py SignalHandler.sigterm_handler (SIGINT: the launcher never
            # sends it to the server; taken the same way here).
            log(
                f"SIGTERM received. signum={signum} frame=None. Draining requests and "
                "shutting down..."
            )
            state.term_at = time.monotonic()
            state.gracefully_exit = True

    record_signals()
    if os.environ.get("STANDIN_IGNORE_SIGTERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    state_dir = os.environ.get("STANDIN_STATE_DIR")
    if state_dir:
        write_state(state_dir, args, children)

    bind_delay = env_float("STANDIN_BIND_DELAY") or 0.0
    warmup = env_float("STANDIN_WARMUP") or 0.0
    drain = env_float("STANDIN_DRAIN") or 0.0
    period = env_float("STANDIN_WATCHDOG_PERIOD")
    period = SGLANG_WATCHDOG_PERIOD if period is None else period
    crash_after = env_float("STANDIN_CRASH_AFTER")
    crash_when = os.environ.get("STANDIN_CRASH_WHEN")
    exit_after = env_float("STANDIN_EXIT_AFTER")
    exit_code = int(os.environ.get("STANDIN_EXIT_CODE") or 0)
    hang_after = env_float("STANDIN_HANG_AFTER")
    message = os.environ.get("STANDIN_CRASH_MESSAGE")

    failure = os.environ.get("STANDIN_FAILURE")
    if failure:
        fail_like_sglang(failure, release, children)
    chatter = int(os.environ.get("STANDIN_CHATTER") or 0)
    chatter_line = "Decode batch. #running-req: 1, #token: 512, token usage: 0.01, " + "x" * 60
    for i in range(len(children)):
        log(f"Scheduler process {i} started (pid={children[i].pid})")
    log("Load weight begin. avail mem=78.50 GB")

    bind_at = START + bind_delay
    ready_at: float | None = None
    server: Server | None = None

    while True:
        now = time.monotonic()
        crash_now = crash_when is not None and os.path.exists(crash_when)
        if crash_now or (crash_after is not None and now >= START + crash_after):
            if message:
                print(message, file=sys.stderr, flush=True)
            sys.stdout.flush()
            for child in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)
        if exit_after is not None and now >= START + exit_after:
            if message:
                print(message, file=sys.stderr, flush=True)
            finish(exit_code)
        if hang_after is not None and not state.hung and now >= START + hang_after:
            state.hung = True
        if server is None and now >= bind_at:
            load_shards(release)
            overlap = getattr(args, "startup_weight_load_mode", None) == "overlap"
            if not overlap:
                log("Load weight end. type=StandIn, dtype=torch.bfloat16, mem usage=0.00 GB.")
            # SGLang's own milestone lines, in its order (ModelRunner: memory pool, graphs).
            log("KV Cache is allocated. #tokens: 1036794, K size: 35.60 GB, V size: 35.60 GB")
            log("Memory pool end. avail mem=7.46 GB")
            log("Capture cuda graph begin. This can take up to several minutes. avail mem=7.21 GB")
            capture = env_float("STANDIN_CAPTURE") or 0.0
            time.sleep(capture)
            log(
                f"Capture cuda graph end. Time elapsed: {capture:.2f} s. mem usage=0.43 GB. "
                "avail mem=6.78 GB."
            )
            if overlap:
                # 0.5.18+ model_runner_components/startup_weight_load.py: the real weights
                # are committed after the graphs are captured.
                log("Load weight end. Committed real weights after CUDA graph capture in 0.00 s")
            try:
                server = Server((host, port), Handler)
            except OSError as exc:
                print(
                    f"ERROR: [Errno {exc.errno}] error while attempting to bind on address "
                    f"({host!r}, {port}): {exc.strerror}",
                    file=sys.stderr,
                    flush=True,
                )
                finish(1)
                return
            server.standin_state = state  # type: ignore[attr-defined]
            threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            ).start()
            log(f"INFO:     Started server process [{os.getpid()}]")
            log("INFO:     Waiting for application startup.")
            log("INFO:     Application startup complete.")
            log(f"INFO:     Uvicorn running on http://{host}:{port} (Press CTRL+C to quit)")
            ready_at = now + warmup
        for _ in range(chatter):
            log(chatter_line)
        ready_due = ready_at is not None and now >= ready_at
        if ready_due and not state.ready:
            state.ready = True  # the warmup request made the handle loop: the watchdog runs
            threading.Thread(
                target=sigterm_watchdog, args=(state, period, drain, release), daemon=True
            ).start()
            log(READY_LINE)
        time.sleep(0.01)


if __name__ == "__main__":
    main()
