"""The Neuro SDK's Jobs API (``neuromation.api``) on pier: the seed's calls and dataclasses.

See ``docs/sdk-neuro.md``. ``async with pier.sdk.get() as client: await client.jobs.run(...)``.
"""

from .client import Client, Jobs, SyncClient, SyncJobs, get, get_sync
from .types import (
    Container,
    HTTPPort,
    JobDescription,
    JobStatus,
    JobStatusHistory,
    JobTelemetry,
    RemoteImage,
    Resources,
    Volume,
)

__all__ = [
    "Client",
    "Container",
    "HTTPPort",
    "JobDescription",
    "JobStatus",
    "JobStatusHistory",
    "JobTelemetry",
    "Jobs",
    "RemoteImage",
    "Resources",
    "SyncClient",
    "SyncJobs",
    "Volume",
    "get",
    "get_sync",
]
