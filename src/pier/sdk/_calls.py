"""What the sync and async clients share: building each request and reading each answer.

Every endpoint is a function returning a :class:`Call` (method, path, query, body and the
parser of a successful answer). The clients only send calls; they hold no endpoint logic.
No I/O here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from pier.models import (
    ErrorBody,
    HistoryEntry,
    JobTelemetryView,
    JobView,
    MemberAdd,
    NodeView,
    Page,
    ProjectCreate,
    ProjectUpdate,
    ProjectView,
    TokenCreate,
    TokenView,
    UserCreate,
    UserView,
)
from pier.sdk.errors import ApiError, InvalidRequest, PierClientError, PierConnectionError
from pier.spec import JobSpec
from pier.status import JobStatus

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

StatusFilter = JobStatus | str | Sequence[JobStatus | str] | None
Params = tuple[tuple[str, str], ...]

MAX_POLL = 2.0
PAGE_MAX = 100
"""The largest page the client asks for (the server's default page size)."""


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Params = ()
    body: Any = None


# ---- answers -------------------------------------------------------------------------------


def _model(cls: type[M]) -> Callable[[httpx.Response], M]:
    def parse(response: httpx.Response) -> M:
        return cls.model_validate_json(response.content)

    return parse


def _adapter(adapter: TypeAdapter[T]) -> Callable[[httpx.Response], T]:
    def parse(response: httpx.Response) -> T:
        return adapter.validate_json(response.content)

    return parse


def _nothing(response: httpx.Response) -> None:
    return None


_JOB = _model(JobView)
_PROJECT = _model(ProjectView)
_JOBS_PAGE = _model(Page[JobView])
_HISTORY = _adapter(TypeAdapter(list[HistoryEntry]))
_PROJECTS = _adapter(TypeAdapter(list[ProjectView]))
_USERS = _adapter(TypeAdapter(list[UserView]))
_TOKENS = _adapter(TypeAdapter(list[TokenView]))
_NODES = _adapter(TypeAdapter(list[NodeView]))
_HEALTH = _adapter(TypeAdapter(dict[str, Any]))


def api_error(response: httpx.Response) -> ApiError:
    """The :class:`ApiError` for a 4xx/5xx answer (its body must have been read)."""
    status = response.status_code
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        try:
            body = ErrorBody.model_validate(payload["error"])
        except ValidationError:
            pass
        else:
            return ApiError(status, body.code, body.message, body.details)
    if isinstance(payload, dict) and isinstance(payload.get("detail"), str):
        return ApiError(status, f"http_{status}", payload["detail"])
    text = response.text.strip() if payload is None else ""
    message = f"HTTP {status} {response.reason_phrase}".strip()
    if text and len(text) <= 200 and "<" not in text:
        message = f"{message}: {text}"
    return ApiError(status, f"http_{status}", message)


def decode(call: Call[T], response: httpx.Response) -> T:
    """The parsed answer, or :class:`ApiError` for a 4xx/5xx."""
    if not response.is_success:
        raise api_error(response)
    try:
        return call.parse(response)
    except (ValidationError, ValueError) as exc:
        raise PierClientError(
            f"unexpected answer from {response.request.url}: {_first_line(exc)}"
        ) from exc


def connection_error(url: str, exc: httpx.HTTPError) -> PierConnectionError:
    if isinstance(exc, httpx.TimeoutException):
        reason = "no answer in time (timed out)"
    else:
        reason = str(exc) or type(exc).__name__
    return PierConnectionError(url, reason)


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def validate(cls: type[M], what: str, value: M | Mapping[str, Any]) -> M:
    """``value`` as a ``cls``; :class:`InvalidRequest` names what is wrong."""
    if isinstance(value, cls):
        return value
    try:
        return cls.model_validate(value)
    except ValidationError as exc:
        raise InvalidRequest.from_validation(what, exc) from exc


# ---- requests ------------------------------------------------------------------------------


def _seg(value: str) -> str:
    if not value:
        raise InvalidRequest("a name or id must not be empty")
    return quote(value, safe="")


def _query(**values: str | int | bool | Sequence[str] | None) -> Params:
    params: list[tuple[str, str]] = []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            params.append((key, "true" if value else "false"))
        elif isinstance(value, str | int):
            params.append((key, str(value)))
        else:
            params.extend((key, item) for item in value)
    return tuple(params)


def status_values(status: StatusFilter) -> list[str] | None:
    """``"running"`` -> ``["Running"]``; unknown names pass through for the server to judge."""
    if status is None:
        return None
    items = [status] if isinstance(status, str) else list(status)
    by_lower = {s.value.lower(): s.value for s in JobStatus}
    return [by_lower.get(str(item).lower(), str(item)) for item in items]


def health() -> Call[dict[str, Any]]:
    return Call("GET", "/v1/health", _HEALTH)


def login(
    username: str, password: str, *, name: str | None, expires_in: int | None
) -> Call[TokenView]:
    body = validate(
        TokenCreate,
        "login",
        {"username": username, "password": password, "name": name, "expires_in": expires_in},
    )
    return Call("POST", "/v1/tokens", _model(TokenView), body=body.model_dump(exclude_none=True))


def list_tokens() -> Call[list[TokenView]]:
    return Call("GET", "/v1/tokens", _TOKENS)


def revoke_token(token_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/tokens/{_seg(token_id)}", _nothing)


def me() -> Call[UserView]:
    return Call("GET", "/v1/users/me", _model(UserView))


def list_users() -> Call[list[UserView]]:
    return Call("GET", "/v1/users", _USERS)


def create_user(user: UserCreate | str, fields: Mapping[str, Any]) -> Call[UserView]:
    body = _body(UserCreate, "user", user, fields)
    return Call("POST", "/v1/users", _model(UserView), body=body.model_dump(exclude_none=True))


def list_projects() -> Call[list[ProjectView]]:
    return Call("GET", "/v1/projects", _PROJECTS)


def create_project(project: ProjectCreate | str, fields: Mapping[str, Any]) -> Call[ProjectView]:
    body = _body(ProjectCreate, "project", project, fields)
    return Call("POST", "/v1/projects", _PROJECT, body=body.model_dump(exclude_none=True))


def get_project(name: str) -> Call[ProjectView]:
    return Call("GET", f"/v1/projects/{_seg(name)}", _PROJECT)


def update_project(
    name: str, update: ProjectUpdate | None, fields: Mapping[str, Any]
) -> Call[ProjectView]:
    if update is not None and fields:
        raise TypeError("give a ProjectUpdate or keyword fields, not both")
    body = update if update is not None else validate(ProjectUpdate, "project update", fields)
    return Call(
        "PATCH", f"/v1/projects/{_seg(name)}", _PROJECT, body=body.model_dump(exclude_unset=True)
    )


def add_member(project: str, user: str, role: str) -> Call[ProjectView]:
    body = validate(MemberAdd, "member", {"user": user, "role": role})
    return Call("POST", f"/v1/projects/{_seg(project)}/members", _PROJECT, body=body.model_dump())


def remove_member(project: str, user: str) -> Call[ProjectView]:
    return Call("DELETE", f"/v1/projects/{_seg(project)}/members/{_seg(user)}", _PROJECT)


def submit(spec: JobSpec | Mapping[str, Any]) -> Call[JobView]:
    body = validate(JobSpec, "job spec", spec)
    return Call("POST", "/v1/jobs", _JOB, body=body.dump())


def list_jobs_page(
    *,
    project: str | None,
    status: StatusFilter,
    owner: str | None,
    name: str | None,
    limit: int | None,
    cursor: str | None,
) -> Call[Page[JobView]]:
    params = _query(
        project=project,
        status=status_values(status),
        owner=owner,
        name=name,
        limit=limit,
        cursor=cursor,
    )
    return Call("GET", "/v1/jobs", _JOBS_PAGE, params=params)


def get_job(ref: str, project: str | None) -> Call[JobView]:
    return Call("GET", f"/v1/jobs/{_seg(ref)}", _JOB, params=_query(project=project))


def stop_job(ref: str, project: str | None) -> Call[JobView]:
    return Call("POST", f"/v1/jobs/{_seg(ref)}/stop", _JOB, params=_query(project=project))


def delete_job(ref: str, project: str | None) -> Call[None]:
    return Call("DELETE", f"/v1/jobs/{_seg(ref)}", _nothing, params=_query(project=project))


def job_history(ref: str, project: str | None) -> Call[list[HistoryEntry]]:
    path = f"/v1/jobs/{_seg(ref)}/history"
    return Call("GET", path, _HISTORY, params=_query(project=project))


def logs(
    ref: str, project: str | None, *, follow: bool, replica: str | None, attempt: int | None
) -> Call[None]:
    """The request of a log stream (its body is read by the client, not parsed)."""
    params = _query(project=project, follow=follow, replica=replica, attempt=attempt)
    return Call("GET", f"/v1/jobs/{_seg(ref)}/logs", _nothing, params=params)


def telemetry(ref: str, project: str | None, *, interval: float | None, follow: bool) -> Call[None]:
    """The request of a telemetry stream (one JSON object per line; see ``telemetry_line``)."""
    params = _query(
        project=project,
        follow=follow,
        interval=None if interval is None else f"{interval:g}",
    )
    return Call("GET", f"/v1/jobs/{_seg(ref)}/telemetry", _nothing, params=params)


def telemetry_line(line: str) -> JobTelemetryView | None:
    """One sample from one line of a telemetry stream (None for a blank line)."""
    if not line.strip():
        return None
    try:
        return JobTelemetryView.model_validate_json(line)
    except ValidationError as exc:
        raise PierClientError(f"unexpected telemetry sample: {_first_line(exc)}") from exc


def nodes() -> Call[list[NodeView]]:
    return Call("GET", "/v1/nodes", _NODES)


def _body(cls: type[M], what: str, value: M | str, fields: Mapping[str, Any]) -> M:
    if isinstance(value, str):
        return validate(cls, what, {"name": value, **fields})
    if fields:
        raise TypeError(f"give a {cls.__name__} or a name with keyword fields, not both")
    return value


# ---- helpers for loops that both clients run -----------------------------------------------


def stream_timeout(timeout: float | None, follow: bool) -> httpx.Timeout:
    """A followed log may stay quiet for as long as the job runs: no read timeout then."""
    return httpx.Timeout(timeout, read=None if follow else timeout)


def next_poll(current: float, poll: float) -> float:
    """Poll quickly at first, then back off to at most ``max(poll, 2s)``."""
    return min(current * 1.5, max(poll, MAX_POLL))


def page_limit(limit: int | None, seen: int) -> int | None:
    """How many items to ask the next page for, given ``seen`` so far (None: server's size)."""
    return None if limit is None else min(limit - seen, PAGE_MAX)


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}
