"""Domain errors raised by services; each API dialect renders them in its own shape."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "Conflict",
    "Forbidden",
    "Invalid",
    "NotFound",
    "PierError",
    "Unauthenticated",
    "Unschedulable",
]


class PierError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, loc: Sequence[str | int] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.loc = list(loc)


class Invalid(PierError):
    """The request is well-formed but cannot be accepted (names the field in ``loc``)."""

    status_code = 422
    code = "invalid"


class NotFound(PierError):
    """Missing, or not visible to the caller: both answer the same, so ids don't leak."""

    status_code = 404
    code = "not_found"


class Conflict(PierError):
    status_code = 409
    code = "conflict"


class Forbidden(PierError):
    status_code = 403
    code = "forbidden"


class Unauthenticated(PierError):
    status_code = 401
    code = "unauthenticated"


class Unschedulable(Invalid):
    """No node could ever run the job as asked; ``problem`` says why."""

    code = "unschedulable"

    def __init__(self, message: str, *, loc: Sequence[str | int] = (), problem: str = "") -> None:
        super().__init__(message, loc=loc)
        self.problem = problem or message
