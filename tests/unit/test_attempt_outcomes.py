"""How replica exits decide an attempt's outcome (pier.attempts)."""

from __future__ import annotations

from typing import Any

import pytest

from pier.attempts import MAX_RETRY_DELAY, AttemptState, Verdict, retry_delay
from pier.spec import JobSpec


def _state(*tasks: dict[str, Any]) -> AttemptState:
    roles = [{"command": ["x"], **t} for t in tasks] or [{"command": ["x"]}]
    return AttemptState("job", 1, JobSpec.model_validate({"tasks": roles}))


def test_single_replica_success() -> None:
    state = _state()
    assert state.replicas == ["main-0"]
    assert state.decide() is None
    state.record_exit("main-0", 0)
    outcome = state.decide()
    assert outcome is not None
    assert outcome.verdict is Verdict.SUCCEEDED and outcome.exit_code == 0
    assert outcome.reason == "Completed"
    assert state.live == []


def test_single_replica_failure_keeps_exit_code() -> None:
    state = _state()
    state.record_exit("main-0", 3)
    outcome = state.decide()
    assert outcome is not None
    assert outcome.verdict is Verdict.FAILED
    assert outcome.exit_code == 3
    assert outcome.reason == "Error"
    assert outcome.message == "replica main-0 exited with code 3"


def test_outcome_is_fixed_once_decided() -> None:
    state = _state({"replicas": 2})
    state.record_exit("main-0", 1)
    first = state.decide()
    state.record_exit("main-1", 0)
    assert state.decide() is first
    assert state.outcome is first


def test_first_exit_of_a_replica_wins() -> None:
    state = _state({"replicas": 2})
    state.record_exit("main-0", 0)
    state.record_exit("main-0", 9)
    assert state.exits["main-0"] == 0
    assert state.decide() is None  # main-1 still live
    assert state.live == ["main-1"]


def test_gang_default_fails_on_first_failure() -> None:
    state = _state({"replicas": 3})
    state.record_exit("main-1", 0)
    assert state.decide() is None
    state.record_exit("main-2", 137)
    outcome = state.decide()
    assert outcome is not None
    assert outcome.verdict is Verdict.FAILED and outcome.exit_code == 137
    assert state.live == ["main-0"]  # the runtime stops what is still running


def test_gang_succeeds_when_all_exit_zero() -> None:
    state = _state({"replicas": 2}, {"name": "ps", "replicas": 1})
    for name in ("main-0", "main-1"):
        state.record_exit(name, 0)
        assert state.decide() is None
    state.record_exit("ps-0", 0)
    outcome = state.decide()
    assert outcome is not None and outcome.verdict is Verdict.SUCCEEDED


def test_min_failed_threshold() -> None:
    state = _state({"replicas": 4, "min_failed": 2})
    state.record_exit("main-0", 1)
    assert state.decide() is None
    state.record_exit("main-3", 2)
    outcome = state.decide()
    assert outcome is not None
    assert outcome.verdict is Verdict.FAILED
    assert outcome.exit_code == 1  # the first failed replica (by index) names the code
    assert "main-0" in outcome.message


def test_min_failed_minus_one_never_fails() -> None:
    state = _state({"replicas": 2, "min_failed": -1})
    state.record_exit("main-0", 1)
    assert state.decide() is None
    state.record_exit("main-1", 1)
    outcome = state.decide()
    assert outcome is not None and outcome.verdict is Verdict.SUCCEEDED


def test_min_succeeded_ends_the_attempt_early() -> None:
    state = _state({"name": "worker", "replicas": 3, "min_succeeded": 2})
    state.record_exit("worker-0", 0)
    assert state.decide() is None
    state.record_exit("worker-2", 0)
    outcome = state.decide()
    assert outcome is not None
    assert outcome.verdict is Verdict.SUCCEEDED and outcome.exit_code == 0
    assert outcome.message == "2 replica(s) of worker succeeded"
    assert state.live == ["worker-1"]


def test_failure_in_one_role_fails_the_gang() -> None:
    state = _state({"name": "worker", "replicas": 2, "min_failed": -1}, {"name": "ps"})
    state.record_exit("worker-0", 5)
    assert state.decide() is None
    state.record_exit("ps-0", 4)
    outcome = state.decide()
    assert outcome is not None and outcome.exit_code == 4


def test_lost_replica_counts_as_failed() -> None:
    state = _state({"replicas": 2})
    state.record_exit("main-1", None, lost="supervisor of main-1 vanished")
    outcome = state.decide()
    assert outcome is not None
    assert outcome.verdict is Verdict.FAILED
    assert outcome.exit_code is None
    assert outcome.reason == "SupervisorLost"
    assert outcome.message == "supervisor of main-1 vanished"


def test_not_started_attempt_is_requeued() -> None:
    state = _state({"replicas": 2})
    state.not_started.update({"main-0", "main-1"})
    outcome = state.decide()
    assert outcome is not None
    assert outcome.verdict is Verdict.NOT_STARTED
    assert outcome.reason == "RequeuedAfterRestart"
    assert outcome.exit_code is None


def test_partly_not_started_waits_for_the_rest() -> None:
    state = _state({"replicas": 2})
    state.not_started.add("main-0")
    assert state.decide() is None
    assert state.live == ["main-1"]
    state.record_exit("main-1", 0)
    outcome = state.decide()
    assert outcome is not None and outcome.verdict is Verdict.NOT_STARTED


@pytest.mark.parametrize(
    ("retries", "delay"), [(0, 1.0), (1, 2.0), (2, 4.0), (8, 256.0), (9, MAX_RETRY_DELAY)]
)
def test_retry_delay_doubles_up_to_a_cap(retries: int, delay: float) -> None:
    assert retry_delay(retries) == delay
    assert retry_delay(100) == MAX_RETRY_DELAY
