"""Every SDK unit test runs with a fresh PIER_HOME and no PIER_* settings of the machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def pier_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith("PIER_"):
            monkeypatch.delenv(key)
    home = tmp_path / "pier-home"
    monkeypatch.setenv("PIER_HOME", str(home))
    return home
