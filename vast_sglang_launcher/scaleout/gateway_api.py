"""The worker API of SGLang's gateway: the Shepherd Model Gateway (`smg` on PyPI, the image's
gateway) and its frozen predecessor `sglang-router` 0.3.2, which share it.

Read in smg's source (smg-project/smg, `model_gateway/src/server.rs` routes,
`model_gateway/src/worker/service.rs` `create_worker` / `delete_worker`,
`crates/protocols/src/worker.rs` `WorkerSpec`, `HealthCheckUpdate`, `WorkerStatus`) and
checked on smg 1.13.0 and sglang-router 0.3.2 by tests/scaleout:

- `POST /workers` takes the worker record (`WorkerSpec`: `url`, `api_key`, `worker_type`,
  `runtime`, `labels`, `priority`, `health`, ...), answers 202 and adds the worker in the
  background (the gateway probes its `/health`, then reads `/server_info` and `/model_info`).
  smg answers 409 while a worker with that URL is still known (also while it drains after a
  DELETE); sglang-router ignores the fields it does not know.
- `GET /workers` lists `{"workers": [{"id", "url", "status", ...}]}`; `DELETE /workers/{id}`
  takes the UUID from that list (not the URL) and answers 202. smg then marks the worker
  `"status": "draining"` at once (its policies stop choosing it) and keeps listing it for
  `drain_settle_secs` (5 s by default, `drain_workers.rs`) before it forgets it;
  sglang-router forgets it at once and shows no status.
- The gateway sends `api_key` as `Authorization: Bearer` on the requests it routes to the
  worker, but not on its `/health` probes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

LEAVING = frozenset({"draining"})
"""smg's `WorkerStatus` values of a worker it no longer routes to (`worker.rs`)."""


class GatewayError(Exception):
    """The gateway could not be reached, or answered something unexpected (one line)."""


@dataclass(frozen=True)
class GatewayApi:
    client: httpx.AsyncClient
    base_url: str
    token: str | None
    timeout: float
    record: dict[str, Any] = field(default_factory=dict)
    """The rest of the worker record sent on registration (worker type, runtime, labels,
    health settings), beside `url` and `api_key`."""

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def _call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        url = self.base_url.rstrip("/") + path
        try:
            return await self.client.request(
                method,
                url,
                json=body,
                headers=self._headers(),
                timeout=httpx.Timeout(self.timeout),
            )
        except httpx.ConnectError:
            raise GatewayError(f"cannot connect to the gateway at {self.base_url}") from None
        except httpx.TimeoutException:
            raise GatewayError(
                f"the gateway at {self.base_url} did not answer within {self.timeout:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise GatewayError(f"the gateway at {self.base_url}: {exc}") from None

    @staticmethod
    def _expect(resp: httpx.Response, ok: tuple[int, ...], what: str) -> None:
        if resp.status_code in ok:
            return
        hint = ""
        if resp.status_code in (401, 403):
            hint = " (LAUNCHER_GATEWAY_TOKEN)"
        detail = resp.text.strip().replace("\n", " ")[:200]
        raise GatewayError(f"{what}: HTTP {resp.status_code}{hint} {detail}".rstrip())

    async def workers(self) -> dict[str, str]:
        """The workers the gateway routes to: url -> id. A worker smg lists as draining (after
        its DELETE) is no longer routed to, so it does not count."""
        resp = await self._call("GET", "/workers")
        self._expect(resp, (200,), "listing the gateway's workers")
        try:
            items = resp.json().get("workers", [])
            return {
                _norm(str(w["url"])): str(w["id"]) for w in items if w.get("status") not in LEAVING
            }
        except (ValueError, AttributeError, KeyError, TypeError):
            raise GatewayError(
                f"{self.base_url}/workers did not answer a worker list: is "
                "LAUNCHER_GATEWAY_URL an SGLang gateway?"
            ) from None

    async def add(self, worker_url: str, api_key: str | None) -> None:
        body: dict[str, Any] = {**self.record, "url": worker_url}
        if api_key:
            body["api_key"] = api_key
        resp = await self._call("POST", "/workers", body)
        if resp.status_code == 409:
            raise GatewayError(
                f"the gateway still holds an earlier registration of {worker_url} (it drains a "
                "worker for a few seconds after removing it)"
            )
        self._expect(resp, (200, 201, 202), "registering with the gateway")

    async def remove(self, worker_id: str) -> None:
        resp = await self._call("DELETE", f"/workers/{worker_id}")
        self._expect(resp, (200, 202, 204, 404), "deregistering from the gateway")


def _norm(url: str) -> str:
    return url.rstrip("/")


def listed_id(workers: dict[str, str], worker_url: str) -> str | None:
    return workers.get(_norm(worker_url))
