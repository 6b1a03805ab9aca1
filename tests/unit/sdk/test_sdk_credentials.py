"""The stored login and how a client finds its url and token."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import httpx
import pytest

from pier.sdk import (
    Client,
    Credentials,
    CredentialsError,
    PierClientError,
    delete_credentials,
    load_credentials,
    save_credentials,
)
from pier.sdk.credentials import credentials_path, normalize_url, resolve


def test_save_is_owner_only_and_round_trips(pier_home: Path) -> None:
    creds = Credentials(url="http://h:1", token="t0", user="ana")
    path = save_credentials(creds)
    assert path == pier_home / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(pier_home.stat().st_mode) == 0o700
    assert json.loads(path.read_text()) == {"url": "http://h:1", "token": "t0", "user": "ana"}
    assert load_credentials() == creds
    assert [p.name for p in pier_home.iterdir()] == ["credentials.json"]


def test_overwrite_keeps_mode(pier_home: Path) -> None:
    save_credentials(Credentials(url="http://a", token="1"))
    path = save_credentials(Credentials(url="http://b", token="2"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_credentials() == Credentials(url="http://b", token="2")


def test_missing_file_means_no_credentials() -> None:
    assert load_credentials() is None
    assert delete_credentials() is False


def test_delete(pier_home: Path) -> None:
    save_credentials(Credentials(url="http://a", token="1"))
    assert delete_credentials() is True
    assert not credentials_path().exists()


def test_a_broken_file_says_what_to_do(pier_home: Path) -> None:
    pier_home.mkdir()
    (pier_home / "credentials.json").write_text("{not json")
    with pytest.raises(CredentialsError, match="run `pier login` again"):
        load_credentials()


def test_the_file_the_server_writes_is_read(pier_home: Path) -> None:
    pier_home.mkdir()
    (pier_home / "credentials.json").write_text(
        json.dumps({"url": "http://127.0.0.1:7437", "user": "admin", "token": "pier_x"})
    )
    with Client() as client:
        assert (client.url, client.token, client.user) == (
            "http://127.0.0.1:7437",
            "pier_x",
            "admin",
        )


def test_defaults_without_anything() -> None:
    resolved = resolve()
    assert resolved.url == "http://127.0.0.1:7437"
    assert resolved.token is None


def test_port_and_host_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIER_PORT", "9000")
    monkeypatch.setenv("PIER_HOST", "0.0.0.0")
    assert resolve().url == "http://127.0.0.1:9000"


def test_pier_url_beats_stored_url(monkeypatch: pytest.MonkeyPatch) -> None:
    save_credentials(Credentials(url="http://stored:1", token="stored-token"))
    assert resolve().url == "http://stored:1"
    monkeypatch.setenv("PIER_URL", "http://env:2/")
    resolved = resolve()
    assert resolved.url == "http://env:2"
    assert resolved.token is None, "a stored token is only sent to the server that issued it"
    assert resolve("http://stored:1").token == "stored-token"
    assert resolve("stored:1").url == "http://stored:1"


def test_token_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    save_credentials(Credentials(url="http://s", token="stored", user="ana"))
    assert resolve().token == "stored"
    assert resolve().user == "ana"
    monkeypatch.setenv("PIER_TOKEN", "from-env")
    assert resolve().token == "from-env"
    assert resolve(token="explicit").token == "explicit"
    assert resolve(token="").token == ""


def test_explicit_url_and_token_skip_a_broken_file(pier_home: Path) -> None:
    pier_home.mkdir()
    (pier_home / "credentials.json").write_text("garbage")
    assert resolve("http://x", "t").token == "t"


def test_bad_settings_are_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIER_PORT", "not-a-port")
    with pytest.raises(CredentialsError, match="invalid pier configuration: PIER_PORT"):
        resolve()


def test_client_sends_the_token_it_holds() -> None:
    seen: list[httpx.Headers] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        return httpx.Response(200, json={"status": "ok", "version": "0.1.0"})

    with Client("http://x", "abc", transport=httpx.MockTransport(record)) as client:
        client.health()
        client.token = None
        client.health()
        client.token = "def"
        client.health()
    assert [h.get("Authorization") for h in seen] == ["Bearer abc", None, "Bearer def"]
    assert seen[0]["User-Agent"].startswith("pier-sdk/")


def test_save_needs_a_token(pier_home: Path) -> None:
    with Client("http://x", "") as client, pytest.raises(PierClientError, match="log in first"):
        client.save_credentials()
    with Client("http://x/", "tok") as client:
        path = client.save_credentials()
    assert load_credentials(path) == Credentials(url="http://x", token="tok")


def test_normalize_url() -> None:
    assert normalize_url(" http://a:1/ ") == "http://a:1"
    assert normalize_url("a:1") == "http://a:1"
    assert normalize_url("https://a") == "https://a"
