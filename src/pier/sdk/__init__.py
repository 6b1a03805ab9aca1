"""pier's Python SDK: :class:`Client` (sync) and :class:`AsyncClient` over the REST API,
and the Neuro SDK's Jobs API (:mod:`pier.sdk.neuro`): ``async with pier.sdk.get() as c``.

``JobStatus`` of the Neuro API is :class:`pier.sdk.neuro.JobStatus` (pier's own is
:class:`pier.status.JobStatus`)."""

from pier.sdk.async_client import AsyncClient
from pier.sdk.client import Client
from pier.sdk.credentials import (
    Credentials,
    credentials_path,
    delete_credentials,
    load_credentials,
    save_credentials,
)
from pier.sdk.errors import (
    ApiError,
    CredentialsError,
    InvalidRequest,
    PierClientError,
    PierConnectionError,
    PierTimeoutError,
)
from pier.sdk.neuro import (
    Container,
    HTTPPort,
    JobDescription,
    Jobs,
    JobStatusHistory,
    JobTelemetry,
    RemoteImage,
    Resources,
    Volume,
    get,
    get_sync,
)

__all__ = [
    "ApiError",
    "AsyncClient",
    "Client",
    "Container",
    "Credentials",
    "CredentialsError",
    "HTTPPort",
    "InvalidRequest",
    "JobDescription",
    "JobStatusHistory",
    "JobTelemetry",
    "Jobs",
    "PierClientError",
    "PierConnectionError",
    "PierTimeoutError",
    "RemoteImage",
    "Resources",
    "Volume",
    "credentials_path",
    "delete_credentials",
    "get",
    "get_sync",
    "load_credentials",
    "neuro",
    "save_credentials",
]
