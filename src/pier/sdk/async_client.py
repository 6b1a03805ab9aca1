"""The asynchronous client: the same surface as :class:`pier.sdk.Client`, awaitable.

Requests and answers are built and parsed in :mod:`pier.sdk._calls`; see
:class:`pier.sdk.Client` for what each method does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from pier.models import (
    HistoryEntry,
    JobTelemetryView,
    JobView,
    NodeView,
    Page,
    ProjectCreate,
    ProjectUpdate,
    ProjectView,
    TokenView,
    UserCreate,
    UserView,
)
from pier.sdk import _calls as calls
from pier.sdk._calls import StatusFilter
from pier.sdk.client import DEFAULT_TIMEOUT, http_options
from pier.sdk.credentials import Credentials, resolve, save_credentials
from pier.sdk.errors import PierClientError, PierTimeoutError
from pier.spec import JobSpec

__all__ = ["AsyncClient"]

T = TypeVar("T")


class AsyncClient:
    """``async with AsyncClient() as pier: job = await pier.submit(spec)``.

    ``transport`` may be ``httpx.ASGITransport(app)`` to drive an app in-process.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        resolved = resolve(url, token)
        self.url = resolved.url
        self.user = resolved.user
        self.timeout = timeout
        self._token = resolved.token
        self._http = httpx.AsyncClient(
            transport=transport, **http_options(self.url, self._token, timeout)
        )

    # ---- plumbing -------------------------------------------------------------------------

    @property
    def token(self) -> str | None:
        return self._token

    @token.setter
    def token(self, value: str | None) -> None:
        self._token = value
        self._http.headers.pop("Authorization", None)
        self._http.headers.update(calls.bearer(value))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncClient(url={self.url!r}, user={self.user!r})"

    async def _send(self, call: calls.Call[T]) -> T:
        try:
            response = await self._http.request(
                call.method, call.path, params=call.params, json=call.body
            )
        except httpx.TransportError as exc:
            raise calls.connection_error(self.url, exc) from exc
        return calls.decode(call, response)

    # ---- server and auth ------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        return await self._send(calls.health())

    async def login(
        self,
        username: str,
        password: str,
        *,
        expires_in: int | None = None,
        name: str | None = None,
    ) -> TokenView:
        view = await self._send(calls.login(username, password, name=name, expires_in=expires_in))
        self.token = view.token
        self.user = view.user
        return view

    def save_credentials(self, path: Path | None = None) -> Path:
        if not self.token:
            raise PierClientError("no token to save: log in first")
        creds = Credentials(url=self.url, token=self.token, user=self.user)
        return save_credentials(creds, path)

    async def list_tokens(self) -> list[TokenView]:
        return await self._send(calls.list_tokens())

    async def revoke_token(self, token_id: str = "current") -> None:
        await self._send(calls.revoke_token(token_id))

    # ---- users ----------------------------------------------------------------------------

    async def me(self) -> UserView:
        return await self._send(calls.me())

    async def list_users(self) -> list[UserView]:
        return await self._send(calls.list_users())

    async def create_user(self, user: UserCreate | str, **fields: Any) -> UserView:
        return await self._send(calls.create_user(user, fields))

    # ---- projects -------------------------------------------------------------------------

    async def list_projects(self) -> list[ProjectView]:
        return await self._send(calls.list_projects())

    async def create_project(self, project: ProjectCreate | str, **fields: Any) -> ProjectView:
        return await self._send(calls.create_project(project, fields))

    async def get_project(self, name: str) -> ProjectView:
        return await self._send(calls.get_project(name))

    async def update_project(
        self, name: str, update: ProjectUpdate | None = None, **fields: Any
    ) -> ProjectView:
        return await self._send(calls.update_project(name, update, fields))

    async def add_member(self, project: str, user: str, role: str = "member") -> ProjectView:
        return await self._send(calls.add_member(project, user, role))

    async def remove_member(self, project: str, user: str) -> ProjectView:
        return await self._send(calls.remove_member(project, user))

    # ---- jobs -----------------------------------------------------------------------------

    async def submit(self, spec: JobSpec | Mapping[str, Any]) -> JobView:
        return await self._send(calls.submit(spec))

    async def list_jobs_page(
        self,
        project: str | None = None,
        status: StatusFilter = None,
        owner: str | None = None,
        name: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[JobView]:
        return await self._send(
            calls.list_jobs_page(
                project=project, status=status, owner=owner, name=name, limit=limit, cursor=cursor
            )
        )

    async def list_jobs(
        self,
        project: str | None = None,
        status: StatusFilter = None,
        owner: str | None = None,
        name: str | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[JobView]:
        cursor: str | None = None
        seen = 0
        while limit is None or seen < limit:
            page = await self.list_jobs_page(
                project, status, owner, name, calls.page_limit(limit, seen), cursor
            )
            for job in page.items[: None if limit is None else limit - seen]:
                seen += 1
                yield job
            if not page.items or not page.next_cursor or page.next_cursor == cursor:
                return
            cursor = page.next_cursor

    async def get_job(self, ref: str, project: str | None = None) -> JobView:
        return await self._send(calls.get_job(ref, project))

    async def stop_job(self, ref: str, project: str | None = None) -> JobView:
        return await self._send(calls.stop_job(ref, project))

    async def delete_job(self, ref: str, project: str | None = None) -> None:
        await self._send(calls.delete_job(ref, project))

    async def job_history(self, ref: str, project: str | None = None) -> list[HistoryEntry]:
        return await self._send(calls.job_history(ref, project))

    async def logs(
        self,
        ref: str,
        project: str | None = None,
        follow: bool = False,
        replica: str | None = None,
        attempt: int | None = None,
    ) -> AsyncIterator[bytes]:
        call = calls.logs(ref, project, follow=follow, replica=replica, attempt=attempt)
        timeout = calls.stream_timeout(self.timeout, follow)
        try:
            async with self._http.stream(
                call.method, call.path, params=call.params, timeout=timeout
            ) as response:
                if not response.is_success:
                    await response.aread()
                    raise calls.api_error(response)
                async for chunk in response.aiter_bytes():
                    yield chunk
        except httpx.TransportError as exc:
            raise calls.connection_error(self.url, exc) from exc

    async def telemetry(
        self,
        ref: str,
        project: str | None = None,
        interval: float | None = None,
        follow: bool = True,
    ) -> AsyncIterator[JobTelemetryView]:
        call = calls.telemetry(ref, project, interval=interval, follow=follow)
        timeout = calls.stream_timeout(self.timeout, follow)
        try:
            async with self._http.stream(
                call.method, call.path, params=call.params, timeout=timeout
            ) as response:
                if not response.is_success:
                    await response.aread()
                    raise calls.api_error(response)
                async for line in response.aiter_lines():
                    sample = calls.telemetry_line(line)
                    if sample is not None:
                        yield sample
        except httpx.TransportError as exc:
            raise calls.connection_error(self.url, exc) from exc

    async def wait(
        self,
        ref: str,
        project: str | None = None,
        timeout: float | None = None,
        poll: float = 0.2,
    ) -> JobView:
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = poll
        job = await self.get_job(ref, project)
        while not job.status.is_terminal:
            if deadline is not None and time.monotonic() >= deadline:
                raise PierTimeoutError(f"job {job.name} is still {job.status} after {timeout:g}s")
            pause = interval if deadline is None else min(interval, deadline - time.monotonic())
            await asyncio.sleep(max(pause, 0.0))
            interval = calls.next_poll(interval, poll)
            job = await self.get_job(job.id, project)
        return job

    # ---- cluster --------------------------------------------------------------------------

    async def nodes(self) -> list[NodeView]:
        return await self._send(calls.nodes())
