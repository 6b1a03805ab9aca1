"""The synchronous client of pier's native REST API (``/v1``).

>>> with Client() as pier:                                       # doctest: +SKIP
...     job = pier.submit({"tasks": [{"command": ["python", "train.py"]}]})
...     print(pier.wait(job.id).status)

Requests and answers are built and parsed in :mod:`pier.sdk._calls`, shared with
:class:`pier.sdk.AsyncClient`; this class only sends them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

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
from pier.sdk.credentials import Credentials, resolve, save_credentials
from pier.sdk.errors import PierClientError, PierTimeoutError
from pier.spec import JobSpec

__all__ = ["DEFAULT_TIMEOUT", "USER_AGENT", "Client"]

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0
try:
    USER_AGENT = f"pier-sdk/{version('pier')}"
except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
    USER_AGENT = "pier-sdk"


def http_options(url: str, token: str | None, timeout: float | None) -> dict[str, Any]:
    """Keyword arguments for ``httpx.Client`` / ``httpx.AsyncClient`` (shared by both)."""
    try:
        httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise PierClientError(f"invalid pier url {url!r}: {exc}") from exc
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **calls.bearer(token)}
    return {"base_url": url, "timeout": timeout, "headers": headers}


class Client:
    """Talks to one pier server; use as a context manager, or call :meth:`close`.

    ``url`` defaults to ``PIER_URL``, else the stored login's url, else the local server;
    ``token`` to ``PIER_TOKEN``, else the stored login's token (see :mod:`.credentials`).
    ``transport`` replaces the network (e.g. starlette's test transport for an in-process app).
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        resolved = resolve(url, token)
        self.url = resolved.url
        self.user = resolved.user
        self.timeout = timeout
        self._token = resolved.token
        self._http = httpx.Client(
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

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(url={self.url!r}, user={self.user!r})"

    def _send(self, call: calls.Call[T]) -> T:
        try:
            response = self._http.request(
                call.method, call.path, params=call.params, json=call.body
            )
        except httpx.TransportError as exc:
            raise calls.connection_error(self.url, exc) from exc
        return calls.decode(call, response)

    # ---- server and auth ------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``{"status": "ok", "version": ...}``; needs no token."""
        return self._send(calls.health())

    def login(
        self,
        username: str,
        password: str,
        *,
        expires_in: int | None = None,
        name: str | None = None,
    ) -> TokenView:
        """Create a token and use it from now on. :meth:`save_credentials` stores it."""
        view = self._send(calls.login(username, password, name=name, expires_in=expires_in))
        self.token = view.token
        self.user = view.user
        return view

    def save_credentials(self, path: Path | None = None) -> Path:
        """Store url, token and user (``$PIER_HOME/credentials.json``, mode 0600)."""
        if not self.token:
            raise PierClientError("no token to save: log in first")
        creds = Credentials(url=self.url, token=self.token, user=self.user)
        return save_credentials(creds, path)

    def list_tokens(self) -> list[TokenView]:
        return self._send(calls.list_tokens())

    def revoke_token(self, token_id: str = "current") -> None:
        """Revoke one of the caller's tokens; ``"current"`` is the one this client uses."""
        self._send(calls.revoke_token(token_id))

    # ---- users ----------------------------------------------------------------------------

    def me(self) -> UserView:
        return self._send(calls.me())

    def list_users(self) -> list[UserView]:
        return self._send(calls.list_users())

    def create_user(self, user: UserCreate | str, **fields: Any) -> UserView:
        """``create_user("ana", password="...", projects=["vision"])`` or a UserCreate."""
        return self._send(calls.create_user(user, fields))

    # ---- projects -------------------------------------------------------------------------

    def list_projects(self) -> list[ProjectView]:
        return self._send(calls.list_projects())

    def create_project(self, project: ProjectCreate | str, **fields: Any) -> ProjectView:
        """``create_project("vision", gpu_quota=4)`` or a ProjectCreate."""
        return self._send(calls.create_project(project, fields))

    def get_project(self, name: str) -> ProjectView:
        return self._send(calls.get_project(name))

    def update_project(
        self, name: str, update: ProjectUpdate | None = None, **fields: Any
    ) -> ProjectView:
        """Change only the given fields: ``update_project("vision", gpu_quota=8)``."""
        return self._send(calls.update_project(name, update, fields))

    def add_member(self, project: str, user: str, role: str = "member") -> ProjectView:
        return self._send(calls.add_member(project, user, role))

    def remove_member(self, project: str, user: str) -> ProjectView:
        return self._send(calls.remove_member(project, user))

    # ---- jobs -----------------------------------------------------------------------------

    def submit(self, spec: JobSpec | Mapping[str, Any]) -> JobView:
        """Submit a job; a mapping is validated as a :class:`JobSpec` before it is sent."""
        return self._send(calls.submit(spec))

    def list_jobs_page(
        self,
        project: str | None = None,
        status: StatusFilter = None,
        owner: str | None = None,
        name: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[JobView]:
        """One page; pass its ``next_cursor`` back as ``cursor`` for the next."""
        return self._send(
            calls.list_jobs_page(
                project=project, status=status, owner=owner, name=name, limit=limit, cursor=cursor
            )
        )

    def list_jobs(
        self,
        project: str | None = None,
        status: StatusFilter = None,
        owner: str | None = None,
        name: str | None = None,
        limit: int | None = None,
    ) -> Iterator[JobView]:
        """Every matching job the caller may see (at most ``limit``), following cursors.

        Without ``project``, jobs of every project the caller may see.
        """
        cursor: str | None = None
        seen = 0
        while limit is None or seen < limit:
            page = self.list_jobs_page(
                project, status, owner, name, calls.page_limit(limit, seen), cursor
            )
            for job in page.items[: None if limit is None else limit - seen]:
                seen += 1
                yield job
            if not page.items or not page.next_cursor or page.next_cursor == cursor:
                return
            cursor = page.next_cursor

    def get_job(self, ref: str, project: str | None = None) -> JobView:
        """A job by id or name (names resolve in ``project``, else the default project)."""
        return self._send(calls.get_job(ref, project))

    def stop_job(self, ref: str, project: str | None = None) -> JobView:
        return self._send(calls.stop_job(ref, project))

    def delete_job(self, ref: str, project: str | None = None) -> None:
        self._send(calls.delete_job(ref, project))

    def job_history(self, ref: str, project: str | None = None) -> list[HistoryEntry]:
        return self._send(calls.job_history(ref, project))

    def logs(
        self,
        ref: str,
        project: str | None = None,
        follow: bool = False,
        replica: str | None = None,
        attempt: int | None = None,
    ) -> Iterator[bytes]:
        """The job's output as it arrives; with ``follow``, until the job ends."""
        call = calls.logs(ref, project, follow=follow, replica=replica, attempt=attempt)
        timeout = calls.stream_timeout(self.timeout, follow)
        try:
            with self._http.stream(
                call.method, call.path, params=call.params, timeout=timeout
            ) as response:
                if not response.is_success:
                    response.read()
                    raise calls.api_error(response)
                yield from response.iter_bytes()
        except httpx.TransportError as exc:
            raise calls.connection_error(self.url, exc) from exc

    def telemetry(
        self,
        ref: str,
        project: str | None = None,
        interval: float | None = None,
        follow: bool = True,
    ) -> Iterator[JobTelemetryView]:
        """Usage samples of a running job every ``interval`` seconds (server default 1 s),
        until it ends; without ``follow``, one sample (none unless it runs)."""
        call = calls.telemetry(ref, project, interval=interval, follow=follow)
        timeout = calls.stream_timeout(self.timeout, follow)
        try:
            with self._http.stream(
                call.method, call.path, params=call.params, timeout=timeout
            ) as response:
                if not response.is_success:
                    response.read()
                    raise calls.api_error(response)
                for line in response.iter_lines():
                    sample = calls.telemetry_line(line)
                    if sample is not None:
                        yield sample
        except httpx.TransportError as exc:
            raise calls.connection_error(self.url, exc) from exc

    def wait(
        self,
        ref: str,
        project: str | None = None,
        timeout: float | None = None,
        poll: float = 0.2,
    ) -> JobView:
        """Poll until the job is Succeeded, Failed or Stopped; :class:`PierTimeoutError`
        after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = poll
        job = self.get_job(ref, project)
        while not job.status.is_terminal:
            if deadline is not None and time.monotonic() >= deadline:
                raise PierTimeoutError(f"job {job.name} is still {job.status} after {timeout:g}s")
            pause = interval if deadline is None else min(interval, deadline - time.monotonic())
            time.sleep(max(pause, 0.0))
            interval = calls.next_poll(interval, poll)
            job = self.get_job(job.id, project)
        return job

    # ---- Kubernetes manifests (seed 001) ---------------------------------------------------

    def apply_manifests(self, text: str, project: str | None = None) -> list[JobView]:
        """Submit every ``batch/v1 Job`` / ``apps/v1 StatefulSet`` of a YAML (or JSON) text,
        all or none; ``project`` is for documents without ``metadata.namespace``."""
        params = {"project": project} if project is not None else None
        headers = {"Content-Type": "application/yaml"}
        try:
            response = self._http.post(
                "/v1/manifests", params=params, content=text.encode(), headers=headers
            )
        except httpx.TransportError as exc:
            raise calls.connection_error(self.url, exc) from exc
        if not response.is_success:
            raise calls.api_error(response)
        return [JobView.model_validate(item["job"]) for item in response.json()["items"]]

    def export_manifest(self, ref: str, project: str | None = None, fmt: str = "yaml") -> str:
        """The job as a Kubernetes manifest (``yaml`` or ``json`` text)."""
        params = {"format": fmt, **({"project": project} if project is not None else {})}
        path = f"/v1/jobs/{quote(ref, safe='')}/manifest"
        try:
            response = self._http.get(path, params=params)
        except httpx.TransportError as exc:
            raise calls.connection_error(self.url, exc) from exc
        if not response.is_success:
            raise calls.api_error(response)
        return response.text

    # ---- cluster --------------------------------------------------------------------------

    def nodes(self) -> list[NodeView]:
        return self._send(calls.nodes())
