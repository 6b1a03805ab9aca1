"""How the SDK maps answers and failures to errors.

The canned answers come from an ``httpx.MockTransport``: these tests are about the SDK's own
mapping of bodies to exceptions, not about the server.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import httpx
import pytest

from pier.models import ErrorDetail
from pier.sdk import (
    ApiError,
    AsyncClient,
    Client,
    InvalidRequest,
    PierClientError,
    PierConnectionError,
)
from pier.sdk.errors import format_loc

URL = "http://pier.test"


def answering(
    status: int, *, json: object = None, text: str | None = None
) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        if json is not None:
            return httpx.Response(status, json=json)
        return httpx.Response(status, text=text or "")

    return handler


def client_for(handler: Callable[[httpx.Request], httpx.Response]) -> Client:
    return Client(URL, "tok", transport=httpx.MockTransport(handler))


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_native_error_body_becomes_api_error() -> None:
    body = {
        "error": {
            "code": "invalid",
            "message": "project 'nope' does not exist",
            "details": [{"loc": ["body", "project"], "msg": "no such project", "type": "invalid"}],
        }
    }
    with client_for(answering(422, json=body)) as client, pytest.raises(ApiError) as caught:
        client.get_job("x")
    err = caught.value
    assert err.status_code == 422
    assert err.code == "invalid"
    assert err.message == "project 'nope' does not exist"
    assert err.details == [
        ErrorDetail(loc=["body", "project"], msg="no such project", type="invalid")
    ]
    assert err.fields == ["project"]
    assert str(err) == "project 'nope' does not exist (project: no such project)"


def test_detail_repeating_the_message_adds_nothing() -> None:
    body = {
        "error": {
            "code": "not_found",
            "message": "project 'x' not found",
            "details": [{"loc": ["query", "project"], "msg": "project 'x' not found"}],
        }
    }
    with client_for(answering(404, json=body)) as client, pytest.raises(ApiError) as caught:
        client.list_projects()
    assert str(caught.value) == "project 'x' not found"


def test_field_name_is_added_when_the_message_does_not_say_it() -> None:
    body = {
        "error": {
            "code": "invalid",
            "message": "must be a member",
            "details": [{"loc": ["body", "owner"], "msg": "must be a member"}],
        }
    }
    with client_for(answering(422, json=body)) as client, pytest.raises(ApiError) as caught:
        client.me()
    assert str(caught.value) == "must be a member (owner)"


def test_summary_message_is_not_repeated() -> None:
    body = {
        "error": {
            "code": "invalid",
            "message": "tasks.0.resources.gpu: too many",
            "details": [{"loc": ["body", "tasks", 0, "resources", "gpu"], "msg": "too many"}],
        }
    }
    with client_for(answering(422, json=body)) as client, pytest.raises(ApiError) as caught:
        client.submit({"tasks": [{"command": ["true"]}]})
    assert str(caught.value) == "tasks.0.resources.gpu: too many"


def test_plain_text_error_from_a_proxy() -> None:
    with client_for(answering(502, text="upstream down")) as client, pytest.raises(ApiError) as c:
        client.me()
    assert c.value.status_code == 502
    assert c.value.code == "http_502"
    assert str(c.value) == "HTTP 502 Bad Gateway: upstream down"


def test_html_error_page_is_not_dumped() -> None:
    page = "<html><body><h1>404</h1></body></html>"
    with client_for(answering(404, text=page)) as client, pytest.raises(ApiError) as caught:
        client.me()
    assert str(caught.value) == "HTTP 404 Not Found"


def test_framework_style_detail() -> None:
    with (
        client_for(answering(405, json={"detail": "Method Not Allowed"})) as client,
        pytest.raises(ApiError) as caught,
    ):
        client.nodes()
    assert caught.value.message == "Method Not Allowed"


def test_success_with_an_unexpected_body() -> None:
    with (
        client_for(answering(200, json={"hello": "world"})) as client,
        pytest.raises(
            PierClientError, match=r"unexpected answer from http://pier\.test/v1/users/me"
        ),
    ):
        client.me()


def test_unreachable_server_is_a_connection_error() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    with Client(url, "tok", timeout=5) as client, pytest.raises(PierConnectionError) as caught:
        client.health()
    assert str(caught.value).startswith(f"cannot reach pier at {url}: ")
    assert caught.value.url == url


async def test_unreachable_server_async() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    async with AsyncClient(url, "tok", timeout=5) as client:
        with pytest.raises(PierConnectionError, match="cannot reach pier at"):
            await client.health()


def test_unreachable_server_while_streaming_logs() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    with Client(url, "tok", timeout=5) as client, pytest.raises(PierConnectionError):
        list(client.logs("job", follow=True))


def test_log_stream_error_body_is_read() -> None:
    body = {"error": {"code": "not_found", "message": "job 'x' not found", "details": []}}
    with client_for(answering(404, json=body)) as client, pytest.raises(ApiError) as caught:
        list(client.logs("x"))
    assert caught.value.code == "not_found"


def test_invalid_spec_is_rejected_before_sending() -> None:
    def never(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"nothing should be sent, got {request.url}")

    with client_for(never) as client, pytest.raises(InvalidRequest) as caught:
        client.submit({"tasks": [{"command": ["x"], "resources": {"gpu": 1.5}}]})
    assert caught.value.fields == ["tasks.0.resources.gpu"]
    assert "1.5 GPUs: use a whole number" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_invalid_url() -> None:
    with pytest.raises(PierClientError, match="invalid pier url"):
        Client("http://[::1", "tok")


@pytest.mark.parametrize(
    ("loc", "text"),
    [
        (["body", "tasks", 0, "resources", "gpu"], "tasks.0.resources.gpu"),
        (["query", "limit"], "limit"),
        (["name"], "name"),
        ([], ""),
    ],
)
def test_format_loc(loc: list[str | int], text: str) -> None:
    assert format_loc(loc) == text
