"""Errors the SDK raises. Every one derives from :class:`PierClientError`.

Named ``PierClientError`` (not ``PierError``) so it is never confused with the server's domain
error :class:`pier.errors.PierError`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import ValidationError

from pier.models import ErrorDetail

__all__ = [
    "ApiError",
    "CredentialsError",
    "InvalidRequest",
    "PierClientError",
    "PierConnectionError",
    "PierTimeoutError",
    "format_loc",
]

_LOC_PREFIXES = frozenset({"body", "query", "path", "header"})


class PierClientError(Exception):
    """Base class of every error raised by :mod:`pier.sdk`."""


class _Detailed(PierClientError):
    """An error with a message and per-field details, shown as one readable line."""

    message: str
    details: list[ErrorDetail]

    @property
    def fields(self) -> list[str]:
        """The dotted names of the fields that were wrong (``tasks.0.resources.gpu``)."""
        return [format_loc(d.loc) for d in self.details if d.loc]

    def __str__(self) -> str:
        """The message, then each field (and its problem, unless the message says it)."""
        extra: list[str] = []
        for detail in self.details:
            loc = format_loc(detail.loc)
            if detail.msg and detail.msg in self.message:
                item = loc if loc and not _mentions(self.message, loc) else ""
            else:
                item = f"{loc}: {detail.msg}" if loc else detail.msg
            if item and item not in extra:
                extra.append(item)
        return f"{self.message} ({'; '.join(extra)})" if extra else self.message


class ApiError(_Detailed):
    """The server answered with a 4xx or 5xx status."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        details: Sequence[ErrorDetail] = (),
    ) -> None:
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = list(details)
        super().__init__(status_code, code, message, self.details)

    def __repr__(self) -> str:
        return f"ApiError({self.status_code}, {self.code!r}, {self.message!r})"


class InvalidRequest(_Detailed, ValueError):
    """A request body failed validation before it was sent (same models as the server)."""

    def __init__(self, message: str, details: Sequence[ErrorDetail] = ()) -> None:
        self.message = message
        self.details = list(details)
        super().__init__(message)

    @classmethod
    def from_validation(cls, what: str, exc: ValidationError) -> InvalidRequest:
        """``invalid <what> (field: problem; ...)`` from a pydantic ValidationError."""
        details = [
            ErrorDetail(
                loc=list(e["loc"]),
                msg=e["msg"].removeprefix("Value error, "),
                type=e["type"],
            )
            for e in exc.errors()
        ]
        return cls(f"invalid {what}", details)


class PierConnectionError(PierClientError):
    """The server could not be reached, or did not answer in time."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"cannot reach pier at {url}: {reason}")


class PierTimeoutError(PierClientError, TimeoutError):
    """:meth:`Client.wait` gave up before the job finished."""


class CredentialsError(PierClientError):
    """The stored credentials file cannot be read or written."""


def _mentions(text: str, name: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(name)}(?![\w.])", text) is not None


def format_loc(loc: Sequence[str | int]) -> str:
    """``["body", "tasks", 0, "resources", "gpu"]`` -> ``"tasks.0.resources.gpu"``."""
    items = list(loc)
    if items and items[0] in _LOC_PREFIXES:
        items = items[1:]
    return ".".join(str(item) for item in items)
