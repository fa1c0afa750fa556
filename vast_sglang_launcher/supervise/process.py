"""The server's process tree: spawn it in a session of its own, find it again, take it down.

Nothing here kills by name. The launcher owns exactly one process group (the server's, whose
id is the server's pid because it starts a new session), plus whatever descends from the
launcher itself: the launcher makes itself a *child subreaper*, so a grandchild that escapes
the group and is orphaned is re-parented to the launcher instead of to init, and a psutil
sweep of the launcher's descendants still finds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
import signal
import socket
from collections.abc import Callable, Iterable

import psutil

from .. import pids

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

_LIBC: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL | None:
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(None, use_errno=True)
        except OSError:  # pragma: no cover - not Linux/glibc
            return None
    return _LIBC


def set_child_subreaper() -> bool:
    """Make orphaned descendants re-parent to this process (Linux); False when unsupported."""
    libc = _libc()
    if libc is None or not hasattr(libc, "prctl"):
        return False
    return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0


def pdeathsig_preexec() -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child get SIGKILL when the launcher dies.

    libc is loaded here, in the parent, so the child only makes one system call between
    fork and exec. If the launcher died before the call took effect, the child kills itself.
    """
    libc = _libc()
    parent = os.getpid()
    prctl = getattr(libc, "prctl", None) if libc is not None else None

    def preexec() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def describe_exit(returncode: int | None) -> str:
    """``exited with status 2`` or ``killed by SIGKILL``: how a user reads a wait status."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exited with status {returncode}"


def same_process(pid: int, started: float) -> psutil.Process | None:
    """The process ``pid`` if it is still the one that started at ``started`` (not reused)."""
    if not pids.is_running(pid, started):
        return None
    try:
        return psutil.Process(pid)
    except (psutil.Error, ValueError):
        return None


def recorded_or_gone(pid: int, started: float) -> bool:
    """True when ``pid`` is gone, or is still the process that started at ``started``, in
    whatever state (a zombie not yet reaped counts): False only when the pid was reused."""
    actual = pids.started_at(pid, zombie=True)
    return actual is None or pids.same_start(actual, started)


def started_after(proc: psutil.Process, started: float) -> bool:
    try:
        return bool(proc.create_time() >= started - pids.START_TOLERANCE)
    except psutil.Error:
        return False


# --- the tree -----------------------------------------------------------------------------


def _is_zombie(proc: psutil.Process) -> bool:
    try:
        return bool(proc.status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def group_members(pgid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and not _is_zombie(proc):
                found.append(proc)
        except (OSError, psutil.Error):
            continue
    return found


def descendants(root: psutil.Process) -> list[psutil.Process]:
    """Live descendants of ``root`` (empty when it is gone)."""
    try:
        kids = root.children(recursive=True)
    except psutil.Error:
        return []
    return [p for p in kids if not _is_zombie(p)]


def live(procs: Iterable[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and not _is_zombie(p):
                out.append(p)
        except psutil.Error:
            continue
    return out


def reap_strays(keep: Iterable[int] = ()) -> None:
    """Collect zombie children of this process that asyncio does not wait for.

    As a subreaper (or as PID 1) the launcher inherits orphaned descendants; once dead they
    stay zombies until reaped. ``keep`` lists the pids asyncio itself waits for.
    """
    skip = set(keep)
    try:
        kids = psutil.Process().children()
    except psutil.Error:
        return
    for kid in kids:
        if kid.pid in skip or not _is_zombie(kid):
            continue
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(kid.pid, os.WNOHANG)


class Tree:
    """A process group plus the descendants of some roots: everything one server consists of.

    ``leader`` is SGLang's main process (the one the launcher started): a stop sends SIGTERM
    to it alone. Only the main process drains: `TokenizerManager.sigterm_watchdog` (every
    release, managers/tokenizer_manager.py) waits for the requests in flight, then ends the
    schedulers itself; the schedulers install no SIGTERM handler (0.5.23
    mem_cache/allocator/unified_sub_pool.py), so a group-wide SIGTERM would kill them at once
    and every request in flight would hang until the final SIGKILL.
    """

    def __init__(
        self,
        pgid: int,
        roots: Iterable[psutil.Process],
        keep_pids: Iterable[int] = (),
        leader: psutil.Process | None = None,
    ) -> None:
        self.pgid = pgid
        self.roots = list(roots)
        self.keep_pids = set(keep_pids)
        self.leader = leader
        self.known: dict[int, psutil.Process] = {}

    def scan(self) -> list[psutil.Process]:
        """Every live process of the tree now; remembers them for a later sweep."""
        reap_strays(self.keep_pids)
        current: dict[int, psutil.Process] = {}
        for proc in [*live(self.roots), *group_members(self.pgid)]:
            current[proc.pid] = proc
        for root in self.roots:
            if root.pid == os.getpid():
                for proc in descendants(root):
                    current[proc.pid] = proc
        for proc in list(current.values()):
            if proc.pid != os.getpid():
                for child in descendants(proc):
                    current[child.pid] = child
        current.pop(os.getpid(), None)
        self.known.update(current)
        return live(self.known.values())

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the group, and to every remembered process outside it (pid reuse
        checked): each process gets the signal once (SGLang's leader handles every SIGTERM)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)
        for proc in live(self.known.values()):
            try:
                if os.getpgid(proc.pid) == self.pgid:
                    continue  # the group signal reached it
            except OSError:
                continue
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)

    def ask_to_stop(self) -> None:
        """SIGTERM to the leader alone while it runs (pid reuse checked); to the whole tree
        when it is gone (what is left then has nobody to end it: schedulers die of SIGTERM)."""
        leader = self.leader
        if leader is not None and live([leader]):
            with contextlib.suppress(psutil.Error):
                leader.send_signal(signal.SIGTERM)
                return
        self.signal(signal.SIGTERM)

    async def terminate(
        self,
        timeout: float,
        hurry: asyncio.Event | None = None,
        poll: float = 0.05,
        on_kill: Callable[[list[psutil.Process]], None] | None = None,
    ) -> bool:
        """SIGTERM (`ask_to_stop`), wait up to ``timeout`` (or until ``hurry`` is set) for the
        tree to end on its own, then SIGKILL to all of it, and sweep.

        Returns True when the tree went away after SIGTERM alone. Waits until no process of
        the tree remains (SIGKILL cannot be ignored; a process in uninterruptible sleep may
        take a while, so this keeps sending it).
        """
        if not self.scan():
            return True
        self.ask_to_stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline and not (hurry is not None and hurry.is_set()):
            if not self.scan():
                return True
            await _sleep_or(poll, hurry)
        remaining = self.scan()
        if not remaining:
            return True
        if on_kill is not None:
            on_kill(remaining)
        while remaining:
            self.signal(signal.SIGKILL)
            await asyncio.sleep(poll)
            remaining = self.scan()
        return False


async def _sleep_or(seconds: float, event: asyncio.Event | None) -> None:
    if event is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


# --- the port -----------------------------------------------------------------------------


def port_in_use(host: str, port: int) -> str | None:
    """None when ``host:port`` can be bound; else a sentence naming who holds it, if known."""
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror:
        return None  # the server will report an unknown host itself
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return None
        else:
            return None
    where = f"{host}:{port}"
    holder = port_holder(port)
    if holder:
        return f"port {where} is already in use by {holder}"
    return f"port {where} is already in use by another process"


def port_holder(port: int) -> str | None:
    """``pid N (cmdline)`` of a process listening on ``port``, when the system tells."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return None
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid is None:
                return None
            try:
                cmd = " ".join(psutil.Process(conn.pid).cmdline())[:200]
            except psutil.Error:
                cmd = "?"
            return f"pid {conn.pid} ({cmd})"
    return None
