"""Job status state machine (no I/O).

``Pending -> Running -> Succeeded | Failed``, plus ``Stopped`` (by a user) and ``Unknown``
(the executor lost track). Retries and preemption return a job to ``Pending`` with a reason.
Only :mod:`pier.lifecycle` writes a status, and it checks every write against ``ALLOWED``.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ACTIVE", "ALLOWED", "TERMINAL", "IllegalTransition", "JobStatus", "Reason"]


class JobStatus(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    STOPPED = "Stopped"
    UNKNOWN = "Unknown"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED})
ACTIVE = frozenset({JobStatus.PENDING, JobStatus.RUNNING, JobStatus.UNKNOWN})

ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset({JobStatus.RUNNING, JobStatus.FAILED, JobStatus.STOPPED}),
    JobStatus.RUNNING: frozenset(
        {
            JobStatus.SUCCEEDED,
            JobStatus.FAILED,
            JobStatus.STOPPED,
            JobStatus.UNKNOWN,
            JobStatus.PENDING,
        }
    ),
    JobStatus.UNKNOWN: frozenset(
        {
            JobStatus.RUNNING,
            JobStatus.SUCCEEDED,
            JobStatus.FAILED,
            JobStatus.STOPPED,
            JobStatus.PENDING,
        }
    ),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.STOPPED: frozenset(),
}


class Reason(StrEnum):
    """Machine-readable reasons recorded with history entries."""

    SUBMITTED = "Submitted"
    STARTED = "Started"
    COMPLETED = "Completed"
    ERROR = "Error"
    STOPPED_BY_USER = "StoppedByUser"
    PREEMPTED = "Preempted"
    BACKOFF_RETRY = "BackoffRetry"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    UNSCHEDULABLE = "Unschedulable"
    START_FAILED = "StartFailed"
    SUPERVISOR_LOST = "SupervisorLost"
    REATTACHED = "Reattached"
    REQUEUED_AFTER_RESTART = "RequeuedAfterRestart"


class IllegalTransition(Exception):
    def __init__(self, current: JobStatus, target: JobStatus) -> None:
        super().__init__(f"job cannot go from {current} to {target}")
        self.current = current
        self.target = target
