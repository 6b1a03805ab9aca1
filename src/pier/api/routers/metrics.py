"""``GET /metrics``: Prometheus text format.

Authenticated like the rest of the API (``Authorization: Bearer pier_...``; a scraper uses a
long-lived token: ``bearer_token_file`` in Prometheus' scrape config), and a caller sees
only the projects whose jobs they may see, so scrape with an admin's token for the whole
cluster. ``PIER_METRICS_PUBLIC=true`` serves everything without a token (for a scraper on a
trusted network).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool

from pier import __version__
from pier.api.deps import Context, get_principal
from pier.services import metrics
from pier.status import JobStatus

router = APIRouter(tags=["metrics"])


class _UsageCollector(Collector):
    def __init__(self, usage: metrics.Usage) -> None:
        self._usage = usage

    def collect(self) -> Iterable[Metric]:
        return list(_families(self._usage))


def _families(usage: metrics.Usage) -> Iterator[Metric]:
    info = InfoMetricFamily("pier", "pier server")
    info.add_metric([], {"version": __version__})
    yield info
    yield GaugeMetricFamily(
        "pier_queue_pending_jobs", "Jobs waiting to be scheduled", value=usage.pending
    )
    by_status = GaugeMetricFamily(
        "pier_jobs", "Live jobs by project and status", labels=["project", "status"]
    )
    pending = GaugeMetricFamily(
        "pier_project_pending_jobs", "Jobs waiting to be scheduled", labels=["project"]
    )
    allocated = GaugeMetricFamily(
        "pier_project_gpus_allocated", "GPUs held by placed jobs", labels=["project"]
    )
    quota = GaugeMetricFamily("pier_project_gpu_quota", "Deserved GPUs (quota)", labels=["project"])
    limit = GaugeMetricFamily(
        "pier_project_gpu_limit", "Hard limit on GPUs, where one is set", labels=["project"]
    )
    for project in usage.projects:
        for status in JobStatus:
            by_status.add_metric([project.name, status.value], project.jobs[status])
        pending.add_metric([project.name], project.jobs[JobStatus.PENDING])
        allocated.add_metric([project.name], project.gpus_allocated)
        quota.add_metric([project.name], project.gpu_quota)
        if project.max_gpu is not None:
            limit.add_metric([project.name], project.max_gpu)
    yield from (by_status, pending, allocated, quota, limit)
    gpus = GaugeMetricFamily("pier_node_gpus", "GPUs of a node", labels=["node", "pool"])
    cpus = GaugeMetricFamily("pier_node_cpus", "CPUs of a node", labels=["node", "pool"])
    memory = GaugeMetricFamily(
        "pier_node_memory_bytes", "Memory of a node", labels=["node", "pool"]
    )
    for node in usage.nodes:
        gpus.add_metric([node.name, node.pool], node.gpus)
        cpus.add_metric([node.name, node.pool], node.cpus)
        memory.add_metric([node.name, node.pool], node.memory_bytes)
    yield from (gpus, cpus, memory)


@router.get("/metrics", response_class=Response)
async def prometheus_metrics(request: Request, ctx: Context) -> Response:
    public = bool(getattr(request.app.state, "metrics_public", False))
    caller = None if public else await get_principal(request, ctx)
    usage = await run_in_threadpool(metrics.collect, ctx, caller)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_UsageCollector(usage))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
