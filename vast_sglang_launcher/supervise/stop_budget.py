"""How one stop spends `LAUNCHER_STOP_TIMEOUT`: a bounded share for leaving the gateway
(worker mode), the rest for SGLang's own drain, then SIGKILL to the whole tree.

SGLang's drain, read in every release from 0.5.6.post2 to 0.5.23 (managers/
tokenizer_manager.py): SIGTERM only sets `gracefully_exit` (`SignalHandler.sigterm_handler`);
`TokenizerManager.sigterm_watchdog` looks at it every 5 s, then every 5 s again while
requests remain, and with none left ends the schedulers and itself. An idle server therefore
exits within 5 s of SIGTERM (plus its tree's exit); a request in flight completes when it
ends before the budget does.
"""

from __future__ import annotations

SGLANG_WATCHDOG_PERIOD = 5.0
"""`sigterm_watchdog`'s `asyncio.sleep(5)` (every release)."""

SERVER_EXIT_ALLOWANCE = 1.0
"""What the server's tree needs after the watchdog's last look: SIGKILL to the schedulers
(`kill_process_tree`), their exit, the launcher seeing it."""

GATEWAY_SHARE = 0.25
"""The share of a short stop budget that deregistration may take (see `deregister_limit`)."""


def deregister_limit(stop_timeout: float, gateway_drain_timeout: float) -> float:
    """Seconds that leaving the gateway may take out of one stop's budget.

    Everything beyond what an idle server needs to exit on its own (the 5 s watchdog period
    plus its exit), or a quarter of the budget when that is more; never more than
    LAUNCHER_GATEWAY_DRAIN_TIMEOUT. The server's drain starts when this is spent, whatever
    the gateway does.
    """
    needed = SGLANG_WATCHDOG_PERIOD + SERVER_EXIT_ALLOWANCE
    share = max(stop_timeout - needed, stop_timeout * GATEWAY_SHARE)
    return max(0.0, min(gateway_drain_timeout, share))
