"""How an attempt's replica exits decide the job's fate (pure; no I/O).

Per task role (OpenPAI semantics, which generalise the single-replica case):
- ``min_failed`` (default 1; -1 = never): that many failed replicas of the role fail the
  attempt at once, and the remaining replicas are stopped.
- ``min_succeeded`` (default: unset): that many successes of the role end the attempt as a
  success at once. Otherwise the attempt succeeds when every replica has exited and no role
  reached its failure threshold.
A lost replica (its supervisor vanished) counts as failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from pier.spec import JobSpec

__all__ = ["AttemptState", "Outcome", "Verdict", "retry_delay"]

MAX_RETRY_DELAY = 300.0


class Verdict(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    NOT_STARTED = "not_started"


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    exit_code: int | None
    reason: str
    message: str


@dataclass(slots=True)
class AttemptState:
    job_id: str
    attempt: int
    spec: JobSpec
    exits: dict[str, int | None] = field(default_factory=dict)
    """Replica name -> exit code (None when lost)."""
    lost: dict[str, str] = field(default_factory=dict)
    not_started: set[str] = field(default_factory=set)
    outcome: Outcome | None = None
    recovered: bool = False
    started_at: float | None = None
    """When the attempt's first replica really started (known after a re-attach)."""
    ended_at: float | None = None
    """When the last replica that decided the outcome really ended."""
    platform_failure: str | None = None
    """Why the executor's platform lost replicas (``ReplicaLost(reason="PlatformLost")``):
    the attempt is requeued like one that never started, not counted as a failure."""

    @property
    def replicas(self) -> list[str]:
        return [f"{t.name}-{i}" for t in self.spec.tasks for i in range(t.replicas)]

    @property
    def live(self) -> list[str]:
        return [r for r in self.replicas if r not in self.exits and r not in self.not_started]

    def record_exit(
        self,
        replica: str,
        exit_code: int | None,
        lost: str | None = None,
        at: float | None = None,
    ) -> None:
        if at is not None and self.outcome is None:
            self.ended_at = at if self.ended_at is None else max(self.ended_at, at)
        self.exits.setdefault(replica, exit_code)
        if lost is not None:
            self.lost.setdefault(replica, lost)

    def decide(self) -> Outcome | None:
        """The attempt's outcome once it is known (then fixed), else None."""
        if self.outcome is not None:
            return self.outcome
        if self.not_started and len(self.not_started) + len(self.exits) == len(self.replicas):
            self.outcome = Outcome(
                Verdict.NOT_STARTED,
                None,
                "PlatformFailure" if self.platform_failure else "RequeuedAfterRestart",
                self.platform_failure
                or "the server stopped before this attempt started; it will run again",
            )
            return self.outcome
        for task in self.spec.tasks:
            names = [f"{task.name}-{i}" for i in range(task.replicas)]
            failed = [n for n in names if n in self.exits and self.exits[n] != 0]
            succeeded = [n for n in names if self.exits.get(n) == 0]
            min_failed = 1 if task.min_failed is None else task.min_failed
            if min_failed > 0 and len(failed) >= min_failed:
                first = failed[0]
                code = self.exits[first]
                if first in self.lost:
                    reason, message = "SupervisorLost", self.lost[first]
                else:
                    reason, message = "Error", f"replica {first} exited with code {code}"
                self.outcome = Outcome(Verdict.FAILED, code, reason, message)
                return self.outcome
            if task.min_succeeded is not None and 0 < task.min_succeeded <= len(succeeded):
                self.outcome = Outcome(
                    Verdict.SUCCEEDED,
                    0,
                    "Completed",
                    f"{len(succeeded)} replica(s) of {task.name} succeeded",
                )
                return self.outcome
        if not self.live:
            self.outcome = Outcome(Verdict.SUCCEEDED, 0, "Completed", "all replicas exited 0")
            return self.outcome
        return None


def retry_delay(retries: int) -> float:
    """Exponential backoff before retry number ``retries + 1``: 1 s, 2 s, 4 s ... 5 min."""
    return float(min(MAX_RETRY_DELAY, 2.0**retries))
