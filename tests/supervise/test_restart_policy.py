"""The restart policy on its own: backoff, bounded start retries, the failures given up at
once, `reset` after a person's restart, and the restart history. The hints that decide
`permanent` are read by `diagnose` (tests/supervise/test_failure_hints.py). The mutation run
(scripts/mutation.py) uses these for supervise/restart_policy.py."""

from __future__ import annotations

import pytest

from vast_sglang_launcher.supervise.restart_policy import (
    Failure,
    Outcome,
    RestartHistory,
    RestartPolicy,
)


def policy(retries: int = 2, initial: float = 2, maximum: float = 10) -> RestartPolicy:
    return RestartPolicy(
        backoff_initial=initial, backoff_max=maximum, backoff_reset=600, start_retries=retries
    )


def crash(ready_for: float | None = None, rc: int = -9) -> Outcome:
    if ready_for is None:
        return Outcome(Failure.EXITED, returncode=rc)
    return Outcome(Failure.EXITED, was_ready=True, ready_for=ready_for, returncode=rc)


def test_crashes_after_ready_back_off_exponentially_up_to_the_max() -> None:
    p = policy()
    delays = [p.decide(crash(ready_for=5)).delay for _ in range(6)]
    assert delays == [2, 4, 8, 10, 10, 10]
    assert not any(p.decide(crash(ready_for=5)).give_up for _ in range(20))


def test_a_max_below_the_initial_delay_is_the_initial_delay() -> None:
    p = policy(initial=5, maximum=1)
    assert [p.decide(crash(ready_for=1)).delay for _ in range(2)] == [5, 5]


def test_backoff_resets_after_a_stable_period() -> None:
    p = policy()
    for _ in range(4):
        p.decide(crash(ready_for=5))
    assert p.decide(crash(ready_for=600)).delay == 2
    assert p.decide(crash(ready_for=5)).delay == 4
    assert p.decide(crash(ready_for=599)).delay == 8


def test_failures_before_ready_are_bounded() -> None:
    p = policy(retries=2)
    first, second = p.decide(crash()), p.decide(crash())
    assert (first.give_up, first.delay) == (False, 2)
    assert (second.give_up, second.delay) == (False, 4)
    third = p.decide(crash())
    assert (
        third.give_up
        and third.reason == "the server failed before becoming ready, 3 times in a row"
    )


def test_zero_retries_gives_up_at_the_first_failure_and_says_once() -> None:
    verdict = policy(retries=0).decide(Outcome(Failure.STARTUP_TIMEOUT))
    assert verdict.give_up
    assert verdict.reason == "the server failed before becoming ready, 1 time in a row"


def test_becoming_ready_resets_the_start_failure_count() -> None:
    p = policy(retries=1)
    assert not p.decide(crash()).give_up
    assert not p.decide(crash(ready_for=3)).give_up
    assert not p.decide(crash()).give_up
    assert p.decide(crash()).give_up


def test_bad_argument_is_never_retried_but_exit_2_after_ready_is() -> None:
    verdict = policy(retries=5).decide(crash(rc=2))
    assert verdict.give_up and "exit status 2" in verdict.reason
    assert not policy().decide(crash(ready_for=1, rc=2)).give_up
    assert not policy().decide(Outcome(Failure.UNHEALTHY, returncode=2)).give_up
    assert not policy().decide(crash(rc=1)).give_up


def test_unexecutable_command_is_not_retried() -> None:
    verdict = policy(retries=5).decide(Outcome(Failure.NOT_EXECUTABLE))
    assert verdict.give_up and verdict.reason == "the server cannot be started"


def test_a_permanent_failure_before_ready_is_not_retried() -> None:
    verdict = policy(retries=5).decide(Outcome(Failure.EXITED, returncode=1, permanent=True))
    assert verdict.give_up and "a restart cannot fix" in verdict.reason
    # once it served, the same outcome is restarted (the hint then says so too)
    served = Outcome(Failure.EXITED, was_ready=True, ready_for=1, returncode=1, permanent=True)
    assert not policy().decide(served).give_up


@pytest.mark.parametrize("failure", [Failure.PORT_BUSY, Failure.UNHEALTHY, Failure.EXITED])
def test_other_failures_count_like_any_start_failure(failure: Failure) -> None:
    p = policy(retries=1)
    first = p.decide(Outcome(failure))
    assert not first.give_up and first.delay == 2 and first.reason == ""
    assert p.decide(Outcome(failure)).give_up
    q = policy(retries=0)
    assert not q.decide(Outcome(failure, was_ready=True, ready_for=1)).give_up


def test_outcomes_are_transient_unless_said() -> None:
    outcome = Outcome(Failure.EXITED)
    assert (outcome.was_ready, outcome.ready_for, outcome.permanent) == (False, 0.0, False)
    assert outcome.returncode is None


def test_manual_reset_forgets_failures() -> None:
    p = policy(retries=1)
    p.decide(crash())
    p.decide(crash(ready_for=1))
    p.reset()
    assert p.next_delay() == 2
    assert not p.has_served(crash())
    assert not p.decide(crash()).give_up


def test_reset_clears_the_start_failures_so_a_restart_gets_every_retry() -> None:
    p = policy(retries=2)
    assert not p.decide(crash()).give_up
    assert not p.decide(crash()).give_up
    p.reset()  # `restart`: a person changed the configuration
    assert not p.decide(crash()).give_up
    assert not p.decide(crash()).give_up
    assert p.decide(crash()).give_up


def test_the_policy_knows_whether_the_plan_ever_served() -> None:
    p = policy()
    assert not p.has_served(crash())
    assert p.has_served(crash(ready_for=1))
    p.decide(crash(ready_for=1))
    assert p.has_served(crash())


def test_restart_history_counts_the_last_window() -> None:
    h = RestartHistory(window=10)
    assert [h.record(t) for t in (0, 1, 5)] == [1, 2, 3]
    assert h.count(10) == 2  # the restart at 0 is exactly one window old
    assert h.count(14.5) == 1
    assert h.record(20) == 1
    assert RestartHistory().window == 3600
