"""Store side of an executor losing sight of running replicas (a remote cluster's head is
unreachable): their jobs show ``Unknown`` with the reason until the executor finds them
again (``Running``, reason ``Reattached``) or decides their fate."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection

from pier import lifecycle
from pier.status import JobStatus

__all__ = ["EXECUTOR_UNREACHABLE", "mark_unreachable"]

EXECUTOR_UNREACHABLE = "ExecutorUnreachable"


def mark_unreachable(conn: Connection, lost: Sequence[tuple[str, int, str]], now: float) -> None:
    """``lost``: (job id, attempt, message) of each attempt the executor cannot see."""
    lifecycle.apply(
        conn,
        [
            lifecycle.Transition(
                job_id,
                JobStatus.UNKNOWN,
                EXECUTOR_UNREACHABLE,
                message,
                expect=frozenset({JobStatus.RUNNING}),
                attempt=attempt,
            )
            for job_id, attempt, message in lost
        ],
        now,
    )
