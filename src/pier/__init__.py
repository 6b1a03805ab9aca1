"""pier: a self-hosted platform for GPU and ML jobs.

The package root exports the client SDK; the server lives in :mod:`pier.api` and below.
"""

from pier import sdk
from pier.sdk import (
    ApiError,
    AsyncClient,
    Client,
    InvalidRequest,
    PierClientError,
    PierConnectionError,
    PierTimeoutError,
)

__version__ = "0.1.0"

__all__ = [
    "ApiError",
    "AsyncClient",
    "Client",
    "InvalidRequest",
    "PierClientError",
    "PierConnectionError",
    "PierTimeoutError",
    "__version__",
    "sdk",
]
