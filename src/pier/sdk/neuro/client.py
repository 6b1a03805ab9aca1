"""The Neuro SDK's ``Jobs`` API over pier's REST API, asynchronous and synchronous.

``async with pier.sdk.get() as client: job = await client.jobs.run(container)``; scripts
without an event loop use ``with pier.sdk.get_sync() as client: client.jobs.run(...)``.
The url and token come from the arguments, else ``PIER_URL``/``PIER_TOKEN``, else the
CLI's stored login (``pier login``), as for :class:`pier.sdk.AsyncClient`.
"""

from __future__ import annotations

import asyncio
from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    Coroutine,
    Generator,
    Iterator,
)
from types import TracebackType
from typing import Any, Self, TypeVar

from pier.sdk.async_client import AsyncClient
from pier.sdk.client import DEFAULT_TIMEOUT
from pier.sdk.errors import ApiError

from . import translate
from .types import Container, JobDescription, JobStatus, JobTelemetry

__all__ = ["Client", "Jobs", "SyncClient", "SyncJobs", "get", "get_sync"]

T = TypeVar("T")


class Jobs:
    """Jobs subsystem: start, list, inspect, follow and kill jobs."""

    def __init__(self, api: AsyncClient) -> None:
        self._api = api

    async def run(
        self,
        container: Container,
        *,
        name: str | None = None,
        description: str | None = None,
        is_preemptible: bool = False,
        schedule_timeout: float | None = None,
    ) -> JobDescription:
        """Start a job in the caller's default project. ``schedule_timeout``: seconds it may
        wait for resources before it fails with the reason ``Unschedulable``."""
        spec = translate.to_spec(
            container,
            name=name,
            description=description,
            is_preemptible=is_preemptible,
            schedule_timeout=schedule_timeout,
        )
        return translate.describe(await self._api.submit(spec), self._api.url)

    async def list(
        self, *, statuses: Collection[JobStatus] | None = None, name: str | None = None
    ) -> list[JobDescription]:
        """Jobs the user may see (their projects'), newest first."""
        wanted = translate.pier_statuses(statuses) if statuses else None
        if wanted == []:
            return []
        return [
            translate.describe(view, self._api.url)
            async for view in self._api.list_jobs(status=wanted, name=name)
        ]

    async def status(self, id: str) -> JobDescription:
        return translate.describe(await self._api.get_job(id), self._api.url)

    async def kill(self, id: str) -> None:
        """Stop the job (SIGTERM, then SIGKILL after its grace period); a job that has
        already ended is left as it is."""
        try:
            await self._api.stop_job(id)
        except ApiError as exc:
            if exc.status_code != 409:
                raise

    async def monitor(self, id: str) -> AsyncIterator[bytes]:
        """The job's output as it is written, until the job ends."""
        chunks = self._api.logs(id, follow=True)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await _aclose(chunks)

    async def top(self, id: str, *, interval: float | None = None) -> AsyncIterator[JobTelemetry]:
        """Usage samples of the running job (every ``interval`` s, server default 1 s),
        until it ends."""
        samples = self._api.telemetry(id, interval=interval)
        try:
            async for sample in samples:
                yield translate.telemetry(sample)
        finally:
            await _aclose(samples)


async def _aclose(source: AsyncIterator[Any]) -> None:
    """Close a stream we wrap when our own generator is closed (a ``break`` in the caller's
    loop), so that its HTTP response is released now, in order, not at garbage collection."""
    close = getattr(source, "aclose", None)
    if close is not None:
        await close()


class Client:
    """What ``get()`` opens: ``client.jobs``; close it (or use ``async with``)."""

    def __init__(
        self, url: str | None = None, token: str | None = None, *, timeout: float | None = None
    ) -> None:
        self._api = AsyncClient(url, token, timeout=DEFAULT_TIMEOUT if timeout is None else timeout)
        self.jobs = Jobs(self._api)

    @property
    def url(self) -> str:
        return self._api.url

    async def close(self) -> None:
        await self._api.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class _Opening:
    """``get()``'s answer: ``async with get() as client`` or ``client = await get()``."""

    def __init__(self, make: Callable[[], Client]) -> None:
        self._make = make
        self._client: Client | None = None

    def __await__(self) -> Generator[Any, None, Client]:
        return self._open().__await__()

    async def _open(self) -> Client:
        return self._make()

    async def __aenter__(self) -> Client:
        self._client = self._make()
        return self._client

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            await self._client.close()


def get(
    url: str | None = None, token: str | None = None, *, timeout: float | None = None
) -> _Opening:
    """A client of the pier server at ``url`` (else ``PIER_URL``, else the stored login)."""
    return _Opening(lambda: Client(url, token, timeout=timeout))


# ---- synchronous ---------------------------------------------------------------------------


class SyncJobs:
    """:class:`Jobs` for scripts: the same methods, blocking; iterators are generators."""

    def __init__(self, run: Callable[[Coroutine[Any, Any, Any]], Any], jobs: Jobs) -> None:
        self._run = run
        self._jobs = jobs

    def run(
        self,
        container: Container,
        *,
        name: str | None = None,
        description: str | None = None,
        is_preemptible: bool = False,
        schedule_timeout: float | None = None,
    ) -> JobDescription:
        result: JobDescription = self._run(
            self._jobs.run(
                container,
                name=name,
                description=description,
                is_preemptible=is_preemptible,
                schedule_timeout=schedule_timeout,
            )
        )
        return result

    def list(
        self, *, statuses: Collection[JobStatus] | None = None, name: str | None = None
    ) -> list[JobDescription]:
        result: list[JobDescription] = self._run(self._jobs.list(statuses=statuses, name=name))
        return result

    def status(self, id: str) -> JobDescription:
        result: JobDescription = self._run(self._jobs.status(id))
        return result

    def kill(self, id: str) -> None:
        self._run(self._jobs.kill(id))

    def monitor(self, id: str) -> Iterator[bytes]:
        return self._iterate(self._jobs.monitor(id))

    def top(self, id: str, *, interval: float | None = None) -> Iterator[JobTelemetry]:
        return self._iterate(self._jobs.top(id, interval=interval))

    def _iterate(self, source: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    item: T = self._run(_next(source))
                except StopAsyncIteration:
                    return
                yield item
        finally:
            closer = getattr(source, "aclose", None)
            if closer is not None:
                self._run(closer())  # an async generator's aclose() is a coroutine


async def _next(source: AsyncIterator[T]) -> T:
    return await anext(source)


class SyncClient:
    """``with pier.sdk.get_sync() as client: client.jobs.run(...)``: its own event loop."""

    def __init__(
        self, url: str | None = None, token: str | None = None, *, timeout: float | None = None
    ) -> None:
        self._runner = asyncio.Runner()
        self._client = self._runner.run(self._open(url, token, timeout))
        self.jobs = SyncJobs(self._runner.run, self._client.jobs)

    @staticmethod
    async def _open(url: str | None, token: str | None, timeout: float | None) -> Client:
        return Client(url, token, timeout=timeout)  # made inside the loop that will use it

    @property
    def url(self) -> str:
        return self._client.url

    def close(self) -> None:
        try:
            self._runner.run(self._client.close())
        finally:
            self._runner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def get_sync(
    url: str | None = None, token: str | None = None, *, timeout: float | None = None
) -> SyncClient:
    return SyncClient(url, token, timeout=timeout)
