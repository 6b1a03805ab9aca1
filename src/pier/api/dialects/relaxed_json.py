"""JSON as the seeds write it: a job platform's own examples sometimes have a comma before a
closing bracket (``"gpu": 1,}``) or ``=`` between a key and its value (``{"KEY"=50}``). Valid
JSON never has either outside a string, so reading them cannot change a valid document's
meaning. Pure; no I/O."""

from __future__ import annotations

import json
from typing import Any

from pier.errors import PierError

__all__ = ["MalformedBody", "loads"]


class MalformedBody(PierError):
    status_code = 400
    code = "malformed_json"


def _relax(text: str) -> str:
    """Drop a comma before ``}``/``]`` and read ``=`` as ``:``, outside strings only."""
    out: list[str] = []
    in_string = escaped = False
    for ch in text:
        if in_string:
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "}]":
            j = len(out) - 1
            while j >= 0 and out[j] in " \t\r\n":
                j -= 1
            if j >= 0 and out[j] == ",":
                del out[j]
        elif ch == "=":
            ch = ":"
        out.append(ch)
    return "".join(out)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def loads(raw: bytes) -> Any:
    """The body as JSON, tolerating the seed's trailing commas and ``=`` separators."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedBody("the body is not UTF-8 text", loc=["body"]) from None
    try:
        return json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as strict_error:
        try:
            return json.loads(_relax(text), parse_constant=_no_constants)
        except (ValueError, RecursionError):
            raise MalformedBody(
                f"the body is not valid JSON: {strict_error.msg} at line "
                f"{strict_error.lineno} column {strict_error.colno}",
                loc=["body"],
            ) from None
    except (ValueError, RecursionError) as error:
        raise MalformedBody(f"the body is not valid JSON: {error}", loc=["body"]) from None
