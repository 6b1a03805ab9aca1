"""The node inventory with what is allocated on it."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select

from pier.models import DeviceView, NodeView
from pier.services.context import Principal, ServiceContext
from pier.services.snapshot import placements_of
from pier.status import JobStatus
from pier.store.tables import jobs

__all__ = ["list_nodes"]


def list_nodes(ctx: ServiceContext, caller: Principal) -> list[NodeView]:
    """Every authenticated user may see the inventory (as with `runai list nodes`)."""
    with ctx.db.read() as conn:
        rows = conn.execute(
            select(jobs.c.allocation)
            .where(jobs.c.allocation.is_not(None))
            .where(jobs.c.status.in_([JobStatus.PENDING.value, JobStatus.RUNNING.value]))
        ).scalars()
        used: dict[tuple[str, int], float] = defaultdict(float)
        for allocation in rows:
            for p in placements_of(allocation):
                for d in p.devices:
                    used[(p.node, d)] += p.gpu_fraction or 1.0
    views = []
    for node in ctx.scheduler.nodes():
        devices = [
            DeviceView(
                index=d.index,
                model=d.model,
                memory_bytes=d.memory_bytes,
                allocated=round(used[(node.name, d.index)], 6),
            )
            for d in node.gpus
        ]
        views.append(
            NodeView(
                name=node.name,
                pool=node.pool,
                labels=dict(node.labels),
                cpus=node.cpus,
                memory_bytes=node.memory_bytes,
                gpus=devices,
                gpu_allocated=round(sum(d.allocated for d in devices), 6),
            )
        )
    return views
