"""Ray's synchronous Jobs API client, as the Ray executor uses it: built on first use (its
constructor already talks to the cluster), a timeout on every request, one keep-alive
connection per thread, and the batches of calls one executor step makes. Runs in the
executor's own threads, never on the event loop."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Any

import requests
from ray._private.authentication.http_token_authentication import (
    format_authentication_http_error,
)
from ray.exceptions import AuthenticationError
from ray.job_submission import JobDetails, JobSubmissionClient
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from pier.executors.ray_mapping import ReplicaSubmission

__all__ = ["Missing", "RayJobs", "missing", "unreachable"]


# A kept-alive connection the dashboard closed just as a request went out is tried once more
# on a fresh one (every call pier makes is safe to repeat: submits and stops by submission
# id), rather than reported as the cluster being unreachable.
RETRY = Retry(total=1, connect=1, read=1, status=0, other=0, allowed_methods=None)


class _Sessions:
    """One keep-alive ``requests.Session`` per thread (a session is not thread-safe)."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[requests.Session] = []

    def get(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(max_retries=RETRY, pool_connections=1, pool_maxsize=1)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.session = session
            with self._lock:
                self._all.append(session)
        return session

    def close(self) -> None:
        with self._lock:
            sessions, self._all = self._all, []
        for session in sessions:
            session.close()


class _Client(JobSubmissionClient):
    """Ray's client with a timeout on every request (it sets none: a hung head would hang
    a thread forever), each version check made once, and kept-alive connections: Ray's own
    opens a new connection per request (~25 % more CPU per status poll, on both sides)."""

    def __init__(self, address: str, headers: dict[str, str], timeout: float) -> None:
        self.request_timeout = timeout
        self.sessions = _Sessions()
        self._versions_checked: frozenset[str] = frozenset()
        super().__init__(address, headers=headers)  # asks the cluster's version

    def _do_request(
        self,
        method: str,
        endpoint: str,
        *,
        data: bytes | None = None,
        json_data: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        # Ray's own, but through this thread's session instead of ``requests.request``.
        kwargs.setdefault("timeout", self.request_timeout)
        response = self.sessions.get().request(
            method,
            self._address + endpoint,
            cookies=self._cookies,
            data=data,
            json=json_data,
            headers=self._headers,
            verify=self._verify,
            **kwargs,
        )
        refused = format_authentication_http_error(response.status_code, response.text)
        if refused:
            raise AuthenticationError(refused)
        return response

    def _check_connection_and_version(
        self, min_version: str = "1.9", version_error_message: str | None = None
    ) -> None:
        # Ray's client asks the cluster's version again before every submit that reserves
        # resources (one more round trip per job); once a minimum passed, it stays passed.
        if min_version in self._versions_checked:
            return
        if version_error_message is None:
            super()._check_connection_and_version(min_version)
        else:
            super()._check_connection_and_version(min_version, version_error_message)
        self._versions_checked = self._versions_checked | {min_version}


class Missing(Exception):
    """Ray does not know the job."""


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the cluster could not be reached (rather than answered no)."""
    return isinstance(
        exc, requests.ConnectionError | requests.Timeout | ConnectionError | TimeoutError
    )


def missing(exc: BaseException) -> bool:
    return isinstance(exc, RuntimeError) and "status code 404" in str(exc)


class RayJobs:
    def __init__(self, address: str, headers: dict[str, str], timeout: float) -> None:
        self._address = address
        self._headers = headers
        self._timeout = timeout
        self._client: _Client | None = None

    def _ray(self) -> _Client:
        client = self._client
        if client is None:  # its constructor checks the cluster's version over HTTP
            client = self._client = _Client(self._address, dict(self._headers), self._timeout)
        return client

    def close(self) -> None:
        """Close the kept-alive connections (a call still running opens a new one)."""
        if self._client is not None:
            self._client.sessions.close()

    def submit_all(self, submissions: Sequence[ReplicaSubmission]) -> None:
        client = self._ray()
        done: list[str] = []
        try:
            for sub in submissions:
                try:
                    client.submit_job(**sub.kwargs)
                except RuntimeError as exc:
                    if "already exists" not in str(exc):  # submitted before a crash: fine
                        raise
                done.append(sub.submission_id)
        except Exception:
            for sid in done:  # a gang starts whole or not at all
                with contextlib.suppress(Exception):
                    client.stop_job(sid)
            raise

    def stop_all(self, sids: Sequence[str]) -> None:
        client = self._ray()
        for sid in sids:
            try:
                client.stop_job(sid)
            except RuntimeError as exc:
                if not missing(exc):
                    raise

    def infos(self, sids: Sequence[str]) -> dict[str, JobDetails]:
        client = self._ray()
        found = {}
        for sid in sids:
            try:
                found[sid] = client.get_job_info(sid)
            except RuntimeError as exc:
                if not missing(exc):
                    raise
        return found

    def list_jobs(self) -> Sequence[JobDetails]:
        return list(self._ray().list_jobs())

    def status_of(self, sid: str) -> str:
        try:
            status = self._ray().get_job_status(sid)
        except RuntimeError as exc:
            if missing(exc):
                raise Missing(sid) from exc
            raise
        return str(status.value)

    def logs_of(self, sid: str) -> str:
        return self._ray().get_job_logs(sid)
