"""Multi-node ranks: `--nnodes`, `--node-rank` and `--dist-init-addr`, from the SGLANG_*
settings, else from the orchestrator that started this node (pure).

- Kubernetes LeaderWorkerSet: `LWS_GROUP_SIZE` nodes, this pod is `LWS_WORKER_INDEX`, the
  head is `LWS_LEADER_ADDRESS`.
- SLURM: `SLURM_NNODES` nodes, this node is `SLURM_NODEID`, the head is the first host of
  `SLURM_JOB_NODELIST` (compressed: `node[01-04],gpu7` -> `node01`).

The head address gets `LAUNCHER_DIST_INIT_PORT`. Each value keeps its source for the plan's
decisions. Only rank 0 serves the API; the other ranks run SGLang's schedulers and a
stand-in `/health` (see `LaunchPlan.serves_api`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..settings import Settings


@dataclass(frozen=True)
class Ranked:
    value: object
    source: str


@dataclass(frozen=True)
class Ranks:
    nnodes: Ranked
    node_rank: Ranked
    dist_init_addr: Ranked | None
    orchestrator: str | None
    """"LeaderWorkerSet", "SLURM" or None (only SGLANG_* settings, or one node)."""
    warnings: list[str] = field(default_factory=list)


def first_host(nodelist: str) -> str | None:
    """The first host of a SLURM host list (`a[01-03,7]b,c` -> `a01b`); None if malformed."""
    depth = 0
    end = len(nodelist)
    for i, ch in enumerate(nodelist):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                return None
        elif ch == "," and depth == 0:
            end = i
            break
    if depth != 0:
        return None
    out: list[str] = []
    rest = nodelist[:end].strip()
    while rest:
        open_at = rest.find("[")
        if open_at < 0:
            out.append(rest)
            break
        close_at = rest.find("]", open_at)
        if close_at < 0 or "[" in rest[open_at + 1 : close_at]:
            return None
        inner = rest[open_at + 1 : close_at].split(",")[0].split("-")[0].strip()
        if not inner:
            return None
        out += [rest[:open_at], inner]
        rest = rest[close_at + 1 :]
    host = "".join(out)
    return host or None


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def discover_ranks(settings: Settings) -> Ranks:
    """Each value from its SGLANG_* setting when set, else from LWS or SLURM, else 1 / 0."""
    s = settings
    warnings: list[str] = []
    orchestrator: str | None = None
    nnodes: tuple[object, str] | None = None
    rank: tuple[object, str] | None = None
    head: tuple[object, str] | None = None
    if s.lws_group_size is not None or s.lws_leader_address:
        orchestrator = "LeaderWorkerSet"
        if s.lws_group_size is not None:
            nnodes = (s.lws_group_size, "LWS_GROUP_SIZE")
        if s.lws_worker_index is not None:
            rank = (s.lws_worker_index, "LWS_WORKER_INDEX")
        if s.lws_leader_address:
            head = (_host_port(s.lws_leader_address, s.dist_init_port), "LWS_LEADER_ADDRESS")
    elif s.slurm_nnodes is not None or s.slurm_job_nodelist:
        orchestrator = "SLURM"
        if s.slurm_nnodes is not None:
            nnodes = (s.slurm_nnodes, "SLURM_NNODES")
        if s.slurm_nodeid is not None:
            rank = (s.slurm_nodeid, "SLURM_NODEID")
        if s.slurm_job_nodelist:
            host = first_host(s.slurm_job_nodelist)
            if host is None:
                warnings.append(
                    f"SLURM_JOB_NODELIST={s.slurm_job_nodelist!r} is not a host list the "
                    "launcher can read: set SGLANG_DIST_INIT_ADDR"
                )
            else:
                head = (
                    _host_port(host, s.dist_init_port),
                    "SLURM_JOB_NODELIST (first host)",
                )
    if s.nnodes is not None:
        nnodes = (s.nnodes, "SGLANG_NNODES")
    if s.node_rank is not None:
        rank = (s.node_rank, "SGLANG_NODE_RANK")
    if s.dist_init_addr:
        head = (s.dist_init_addr, "SGLANG_DIST_INIT_ADDR")
    return Ranks(
        nnodes=Ranked(*(nnodes or (1, "default"))),
        node_rank=Ranked(*(rank or (0, "default"))),
        dist_init_addr=Ranked(*head) if head else None,
        orchestrator=orchestrator,
        warnings=warnings,
    )
