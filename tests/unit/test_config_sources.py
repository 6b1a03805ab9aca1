"""Settings come from PIER_* variables, then the TOML config file, then defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pier.config import DEFAULT_PORT, Settings


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("PIER_PORT", "PIER_HOST", "PIER_URL", "PIER_DATABASE_URL", "PIER_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIER_HOME", str(tmp_path))


def test_defaults(tmp_path: Path) -> None:
    s = Settings()
    assert s.home == tmp_path
    assert (s.host, s.port) == ("127.0.0.1", DEFAULT_PORT)
    assert s.effective_database_url == f"sqlite:///{tmp_path / 'pier.db'}"
    assert s.effective_url == f"http://127.0.0.1:{DEFAULT_PORT}"
    assert s.credentials_file == tmp_path / "credentials.json"


def test_config_file_in_home_is_read(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('port = 8123\nlocal_gpus = 2\nlocal_gpu_model = "a100"\n')
    s = Settings()
    assert (s.port, s.local_gpus, s.local_gpu_model) == (8123, 2, "a100")


def test_environment_wins_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config.toml").write_text("port = 8123\n")
    monkeypatch.setenv("PIER_PORT", "9001")
    assert Settings().port == 9001


def test_pier_config_points_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other.toml"
    other.write_text('host = "0.0.0.0"\n')
    monkeypatch.setenv("PIER_CONFIG", str(other))
    s = Settings()
    assert s.host == "0.0.0.0"
    assert s.effective_url == f"http://127.0.0.1:{DEFAULT_PORT}"  # the CLI dials loopback


def test_unknown_key_in_the_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("prot = 1\n")
    with pytest.raises(ValidationError, match="prot"):
        Settings()
