"""Store side of running jobs: claim admissions, record starts and outcomes, recover.

Called by the runtime loop from a worker thread, one short transaction at a time; no
transaction is held while an executor is called. Every write is guarded (``WHERE status``,
``WHERE attempt``, ``WHERE allocation IS NULL``) so a second server replica sharing the
database can never apply the same change twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from pier import lifecycle
from pier.attempts import AttemptState, Outcome, Verdict, retry_delay
from pier.executors.base import LaunchRequest, ReplicaPlacement
from pier.scheduler.types import Admission, Failure
from pier.services.exposure import http_env
from pier.services.snapshot import CycleInputs, SpecCache, placements_of
from pier.status import TERMINAL, JobStatus, Reason
from pier.store.tables import jobs, projects

__all__ = [
    "active_launches",
    "apply_outcomes",
    "claim",
    "expire",
    "fail_unschedulable",
    "find_expired",
    "mark_reattached",
    "mark_started",
    "request_preemption",
]

_ACTIVE = (JobStatus.PENDING.value, JobStatus.RUNNING.value, JobStatus.UNKNOWN.value)

# Prebuilt (bound per call, compiled once): the statements run for every job that starts
# and ends. Bind names must differ from column names in an UPDATE's SET clause.
_CLAIM = (
    update(jobs)
    .where(jobs.c.id == bindparam("w_id"))
    .where(jobs.c.status == JobStatus.PENDING.value)
    .where(jobs.c.allocation.is_(None))
    .where(jobs.c.stop_requested_at.is_(None))
    .values(
        allocation=bindparam("v_allocation", type_=jobs.c.allocation.type),
        attempt=jobs.c.attempt + 1,
        updated_at=bindparam("v_updated_at"),
    )
    .returning(jobs.c.attempt)
)
_OUTCOME_ROWS = select(
    jobs.c.id,
    jobs.c.stop_requested_at,
    jobs.c.retries,
    jobs.c.preempt_requested_at,
    jobs.c.preempt_message,
    jobs.c.started_at,
    jobs.c.gpu,
    jobs.c.attained_gpu_seconds,
).where(jobs.c.id.in_(bindparam("ids", expanding=True)))


def _launch(
    job_id: str, attempt: int, inputs_spec: Any, name: str, project: str, allocation: Any
) -> LaunchRequest:
    return LaunchRequest(
        job_id=job_id,
        attempt=attempt,
        spec=inputs_spec,
        placements=tuple(
            ReplicaPlacement(p.task, p.index, p.node, p.devices, p.gpu_fraction)
            for p in placements_of(allocation)
        ),
        env={"PIER_JOB_NAME": name, "PIER_PROJECT": project, **http_env(job_id, inputs_spec)},
    )


def claim(
    conn: Connection, admissions: Sequence[Admission], inputs: CycleInputs, now: float
) -> list[LaunchRequest]:
    """Record each admission's placement and open a new attempt; jobs changed meanwhile
    (stopped, claimed by another replica) are skipped."""
    project_of = {j.id: j.project for j in inputs.snapshot.pending}
    launches = []
    for admission in admissions:
        allocation = [
            {
                "task": p.task,
                "index": p.index,
                "node": p.node,
                "devices": list(p.devices),
                "gpu_fraction": p.gpu_fraction,
            }
            for p in admission.placements
        ]
        attempt = conn.execute(
            _CLAIM, {"w_id": admission.job_id, "v_allocation": allocation, "v_updated_at": now}
        ).scalar()
        if attempt is None:
            continue
        launches.append(
            _launch(
                admission.job_id,
                attempt,
                inputs.specs[admission.job_id],
                inputs.names[admission.job_id],
                project_of[admission.job_id],
                allocation,
            )
        )
    return launches


def mark_started(
    conn: Connection,
    started: Sequence[LaunchRequest],
    failed: Sequence[tuple[LaunchRequest, str]],
    now: float,
) -> None:
    transitions = [
        lifecycle.Transition(
            launch.job_id,
            JobStatus.RUNNING,
            Reason.STARTED.value,
            f"Started on {', '.join(sorted({p.node for p in launch.placements}))}",
            expect=frozenset({JobStatus.PENDING}),
            attempt=launch.attempt,
            values={"started_at": now},
        )
        for launch in started
    ]
    transitions += [
        lifecycle.Transition(
            launch.job_id,
            JobStatus.FAILED,
            Reason.START_FAILED.value,
            message,
            attempt=launch.attempt,
        )
        for launch, message in failed
    ]
    lifecycle.apply(conn, transitions, now)


def mark_reattached(conn: Connection, attempts: Sequence[AttemptState], now: float) -> None:
    """Replicas found alive after a restart: their job is Running again."""
    lifecycle.apply(
        conn,
        [
            lifecycle.Transition(
                a.job_id,
                JobStatus.RUNNING,
                Reason.REATTACHED.value,
                "Re-attached after a server restart",
                expect=frozenset({JobStatus.PENDING, JobStatus.UNKNOWN}),
                attempt=a.attempt,
                values={"started_at": a.started_at or now},
            )
            for a in attempts
        ],
        now,
    )


def fail_unschedulable(conn: Connection, failures: Sequence[Failure], now: float) -> None:
    lifecycle.apply(
        conn,
        [
            lifecycle.Transition(
                f.job_id,
                JobStatus.FAILED,
                f.reason,
                f.message,
                expect=frozenset({JobStatus.PENDING}),
                values={"allocation": None},
            )
            for f in failures
        ],
        now,
    )


def request_preemption(
    conn: Connection, victims: Sequence[Failure], inputs: CycleInputs, now: float
) -> list[tuple[str, int, float]]:
    """Mark the policy's victims as being preempted; returns the stops to send
    ``(job id, attempt, grace seconds)``. A victim that changed meanwhile (ended, stopped by
    its user, preempted or restarted by another replica) is skipped: the guard names the
    attempt the policy saw."""
    stops = []
    for victim in victims:
        spec = inputs.specs.get(victim.job_id)
        attempt = inputs.attempts.get(victim.job_id)
        if spec is None or attempt is None:
            continue
        row = conn.execute(
            update(jobs)
            .where(jobs.c.id == victim.job_id)
            .where(jobs.c.status.in_(_ACTIVE))
            .where(jobs.c.attempt == attempt)
            .where(jobs.c.allocation.is_not(None))
            .where(jobs.c.stop_requested_at.is_(None))
            .where(jobs.c.preempt_requested_at.is_(None))
            .values(preempt_requested_at=now, preempt_message=victim.message, updated_at=now)
            .returning(jobs.c.id)
        ).first()
        if row is not None:
            stops.append((victim.job_id, attempt, spec.lifecycle.stop_grace_period))
    return stops


def apply_outcomes(
    conn: Connection, decided: Sequence[tuple[AttemptState, Outcome]], now: float
) -> None:
    """Turn each finished attempt into the job's next status: done, retried, or requeued."""
    if not decided:
        return
    ids = [a.job_id for a, _ in decided]
    rows = {r.id: r for r in conn.execute(_OUTCOME_ROWS, {"ids": ids}).all()}
    transitions = []
    for attempt, outcome in decided:
        row = rows.get(attempt.job_id)
        if row is None:
            continue
        transitions.append(_next_status(attempt, outcome, row, now))
    lifecycle.apply(conn, transitions, now)


def _next_status(
    attempt: AttemptState, outcome: Outcome, row: Any, now: float
) -> lifecycle.Transition:
    transition = _next_transition(attempt, outcome, row, now)
    if outcome.verdict is not Verdict.NOT_STARTED and row.started_at is not None:
        # Attained service (least-attained-service ordering): GPU-seconds over all attempts.
        end = attempt.ended_at if attempt.ended_at is not None else now
        start = attempt.started_at if attempt.started_at is not None else row.started_at
        served = (row.attained_gpu_seconds or 0.0) + row.gpu * max(0.0, min(end, now) - start)
        transition = replace(
            transition, values={**(transition.values or {}), "attained_gpu_seconds": served}
        )
    if transition.target in TERMINAL and attempt.ended_at is not None:
        return replace(transition, at=min(attempt.ended_at, now))
    return transition


def _preempted(attempt: AttemptState, outcome: Outcome, row: Any) -> bool:
    """The attempt ended because the scheduler preempted it (not one that had already
    succeeded before the preemption was asked for)."""
    if row.preempt_requested_at is None:
        return False
    return not (
        outcome.verdict is Verdict.SUCCEEDED
        and attempt.ended_at is not None
        and attempt.ended_at < row.preempt_requested_at
    )


def _next_transition(
    attempt: AttemptState, outcome: Outcome, row: Any, now: float
) -> lifecycle.Transition:
    n = attempt.attempt
    if row.stop_requested_at is not None:
        return lifecycle.Transition(
            attempt.job_id,
            JobStatus.STOPPED,
            Reason.STOPPED_BY_USER.value,
            "Stopped by user",
            exit_code=outcome.exit_code,
            attempt=n,
        )
    requeue = {"pending_since": now, "preempt_requested_at": None, "preempt_message": None}
    if _preempted(attempt, outcome, row):
        # Not a failure: back to the queue at its old place (created_at is kept), no
        # back-off and no retry counted.
        return lifecycle.Transition(
            attempt.job_id,
            JobStatus.PENDING,
            Reason.PREEMPTED.value,
            row.preempt_message or "preempted by the scheduler",
            exit_code=outcome.exit_code,
            attempt=n,
            values={**requeue, "not_before": None},
        )
    if outcome.verdict is Verdict.NOT_STARTED:
        return lifecycle.Transition(
            attempt.job_id,
            JobStatus.PENDING,
            outcome.reason,
            outcome.message,
            attempt=n,
            values=requeue,
        )
    if outcome.verdict is Verdict.SUCCEEDED:
        return lifecycle.Transition(
            attempt.job_id,
            JobStatus.SUCCEEDED,
            outcome.reason,
            outcome.message,
            exit_code=0,
            attempt=n,
        )
    limit = attempt.spec.backoff_limit
    if row.retries < limit:
        delay = retry_delay(row.retries)
        return lifecycle.Transition(
            attempt.job_id,
            JobStatus.PENDING,
            Reason.BACKOFF_RETRY.value,
            f"{outcome.message}; retry {row.retries + 1} of {limit} in {delay:g}s",
            exit_code=outcome.exit_code,
            values={**requeue, "retries": row.retries + 1, "not_before": now + delay},
            attempt=n,
        )
    reason = Reason.BACKOFF_LIMIT_EXCEEDED.value if limit > 0 else outcome.reason
    message = outcome.message + (f" (after {limit} retries)" if limit > 0 else "")
    return lifecycle.Transition(
        attempt.job_id,
        JobStatus.FAILED,
        reason,
        message,
        exit_code=outcome.exit_code,
        attempt=n,
    )


def active_launches(conn: Connection, specs: SpecCache) -> list[LaunchRequest]:
    """Every attempt the store believes is placed: what the executor must recover."""
    rows = conn.execute(
        select(
            jobs.c.id,
            jobs.c.attempt,
            jobs.c.spec,
            jobs.c.name,
            jobs.c.allocation,
            projects.c.name.label("project"),
        )
        .join(projects, projects.c.id == jobs.c.project_id)
        .where(jobs.c.status.in_(_ACTIVE))
        .where(jobs.c.allocation.is_not(None))
    ).all()
    return [
        _launch(r.id, r.attempt, specs.get(r.id, r.spec), r.name, r.project, r.allocation)
        for r in rows
    ]


def find_expired(conn: Connection, now: float) -> list[str]:
    """Jobs past their ``ttl_after_finish`` (a read: no write lock while scanning)."""
    return list(
        conn.execute(
            select(jobs.c.id)
            .where(jobs.c.ttl_after_finish.is_not(None))
            .where(jobs.c.deleted_at.is_(None))
            .where(jobs.c.finished_at.is_not(None))
            .where(jobs.c.finished_at + jobs.c.ttl_after_finish <= now)
        ).scalars()
    )


def expire(conn: Connection, job_ids: Sequence[str], now: float) -> None:
    """Expired jobs disappear from listings, as Kubernetes deletes finished Jobs."""
    conn.execute(
        update(jobs)
        .where(jobs.c.id.in_(job_ids))
        .where(jobs.c.deleted_at.is_(None))
        .values(deleted_at=now)
    )
