"""What ``/metrics`` exports: queue, job and per-project usage, read from the store.

Jobs by status and project count live (not deleted) jobs; allocated GPUs count every
placed attempt still active (a deleted job holds its GPUs until it has stopped). A caller
sees only the projects whose jobs they may see (admins, and a public endpoint, all).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import func, select

from pier.services.context import Principal, ServiceContext
from pier.services.projects import visible_project_ids
from pier.status import ACTIVE, JobStatus
from pier.store.tables import jobs, projects

__all__ = ["NodeUsage", "ProjectUsage", "Usage", "collect"]


@dataclass(slots=True)
class ProjectUsage:
    name: str
    gpu_quota: float
    max_gpu: float | None
    jobs: dict[JobStatus, int] = field(default_factory=lambda: dict.fromkeys(JobStatus, 0))
    gpus_allocated: float = 0.0


@dataclass(frozen=True, slots=True)
class NodeUsage:
    name: str
    pool: str
    gpus: int
    cpus: float
    memory_bytes: int


@dataclass(frozen=True, slots=True)
class Usage:
    projects: list[ProjectUsage]
    nodes: list[NodeUsage]

    @property
    def pending(self) -> int:
        return sum(p.jobs[JobStatus.PENDING] for p in self.projects)


def collect(ctx: ServiceContext, caller: Principal | None) -> Usage:
    """Usage the caller may see; ``caller`` None: everything (a public endpoint)."""
    with ctx.db.read() as conn:
        visible = visible_project_ids(conn, caller) if caller is not None else None
        stmt = select(projects.c.id, projects.c.name, projects.c.gpu_quota, projects.c.max_gpu)
        if visible is not None:
            stmt = stmt.where(projects.c.id.in_(visible))
        by_id = {
            row.id: ProjectUsage(row.name, float(row.gpu_quota), row.max_gpu)
            for row in conn.execute(stmt.order_by(projects.c.name))
        }
        counts = conn.execute(
            select(jobs.c.project_id, jobs.c.status, func.count())
            .where(jobs.c.deleted_at.is_(None))
            .group_by(jobs.c.project_id, jobs.c.status)
        ).all()
        allocated = conn.execute(
            select(jobs.c.project_id, func.coalesce(func.sum(jobs.c.gpu), 0.0))
            .where(jobs.c.allocation.is_not(None))
            .where(jobs.c.status.in_([s.value for s in ACTIVE]))
            .group_by(jobs.c.project_id)
        ).all()
    totals: dict[str, float] = defaultdict(float)
    for project_id, gpus in allocated:
        totals[project_id] += float(gpus)
    for project_id, status, count in counts:
        usage = by_id.get(project_id)
        if usage is not None:
            usage.jobs[JobStatus(status)] += int(count)
    for project_id, usage in by_id.items():
        usage.gpus_allocated = totals.get(project_id, 0.0)
    nodes = [
        NodeUsage(n.name, n.pool, len(n.gpus), n.cpus, n.memory_bytes)
        for n in ctx.scheduler.nodes()
    ]
    return Usage(list(by_id.values()), nodes)
