"""The job state machine: the full table of allowed transitions."""

from __future__ import annotations

import pytest

from pier.lifecycle import sources_for
from pier.status import ACTIVE, ALLOWED, TERMINAL, IllegalTransition, JobStatus

P, R, S, F, X, U = (
    JobStatus.PENDING,
    JobStatus.RUNNING,
    JobStatus.SUCCEEDED,
    JobStatus.FAILED,
    JobStatus.STOPPED,
    JobStatus.UNKNOWN,
)

# (from, to) -> allowed. Written out in full so a change to the machine is a visible diff.
TABLE: dict[JobStatus, set[JobStatus]] = {
    P: {R, F, X},
    R: {S, F, X, U, P},
    U: {R, S, F, X, P},
    S: set(),
    F: set(),
    X: set(),
}


@pytest.mark.parametrize("source", list(JobStatus))
@pytest.mark.parametrize("target", list(JobStatus))
def test_transition_table(source: JobStatus, target: JobStatus) -> None:
    assert (target in ALLOWED[source]) == (target in TABLE[source])


def test_every_status_has_an_entry() -> None:
    assert set(ALLOWED) == set(JobStatus)


def test_terminal_and_active_partition_the_statuses() -> None:
    assert {S, F, X} == TERMINAL
    assert {P, R, U} == ACTIVE
    assert TERMINAL.isdisjoint(ACTIVE)
    assert set(JobStatus) == TERMINAL | ACTIVE
    for status in JobStatus:
        assert status.is_terminal == (status in TERMINAL)
        if status.is_terminal:
            assert not ALLOWED[status], f"{status} must be final"


def test_no_self_transitions() -> None:
    for status, targets in ALLOWED.items():
        assert status not in targets


def test_pending_cannot_succeed_without_running() -> None:
    assert S not in ALLOWED[P]


def test_sources_for_inverts_the_table() -> None:
    assert sources_for(R) == {P, U}
    assert sources_for(P) == {R, U}
    assert sources_for(X) == {P, R, U}
    assert sources_for(S) == {R, U}
    assert sources_for(U) == {R}


def test_statuses_use_their_wire_names() -> None:
    assert [s.value for s in JobStatus] == [
        "Pending",
        "Running",
        "Succeeded",
        "Failed",
        "Stopped",
        "Unknown",
    ]


def test_illegal_transition_message() -> None:
    exc = IllegalTransition(S, R)
    assert str(exc) == "job cannot go from Succeeded to Running"
    assert exc.current is S and exc.target is R
