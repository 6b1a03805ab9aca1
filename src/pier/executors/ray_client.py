"""Ray's synchronous Jobs API client, as the Ray executor uses it: built on first use (its
constructor already talks to the cluster), a timeout on every request, and the batches of
calls one executor step makes. Runs in the executor's own threads, never on the event loop."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import requests
from ray.job_submission import JobDetails, JobSubmissionClient

from pier.executors.ray_mapping import ReplicaSubmission

__all__ = ["Missing", "RayJobs", "missing", "unreachable"]


class _Client(JobSubmissionClient):
    """Ray's client with a timeout on every request (it sets none: a hung head would hang
    a thread forever) and each version check made once."""

    request_timeout: float = 30.0
    _versions_checked: frozenset[str] = frozenset()

    def _do_request(self, method: str, endpoint: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.request_timeout)
        return super()._do_request(method, endpoint, **kwargs)

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
            _Client.request_timeout = self._timeout
            client = self._client = _Client(self._address, headers=dict(self._headers))
        return client

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
