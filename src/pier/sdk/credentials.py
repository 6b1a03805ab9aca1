"""The stored login: ``$PIER_HOME/credentials.json`` = ``{"url", "token", "user"}``, mode 0600.

Resolution used by :class:`pier.sdk.Client` when it is not given a url or a token:

- url: ``PIER_URL`` (or ``url`` in the config file), else the stored credentials' url, else
  ``http://127.0.0.1:<PIER_PORT>``.
- token: ``PIER_TOKEN``, else the stored token, but only when it was issued by the same url
  (a token is never sent to a server other than the one that issued it).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from pier.config import Settings
from pier.sdk.errors import CredentialsError

__all__ = [
    "TOKEN_ENV",
    "Credentials",
    "Resolved",
    "credentials_path",
    "delete_credentials",
    "load_credentials",
    "normalize_url",
    "resolve",
    "save_credentials",
]

TOKEN_ENV = "PIER_TOKEN"


class Credentials(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    url: str
    token: str
    user: str | None = None


@dataclass(frozen=True, slots=True)
class Resolved:
    url: str
    token: str | None
    user: str | None


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    return url


def credentials_path(settings: Settings | None = None) -> Path:
    return (settings or Settings()).credentials_file


def load_credentials(path: Path | None = None) -> Credentials | None:
    """The stored credentials, or None when there are none."""
    path = path or credentials_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CredentialsError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return Credentials.model_validate_json(text)
    except ValidationError as exc:
        raise CredentialsError(
            f"{path} is not a valid credentials file; run `pier login` again"
        ) from exc


def save_credentials(credentials: Credentials, path: Path | None = None) -> Path:
    """Write atomically, readable by the owner only (0600; the folder 0700 when created)."""
    path = path or credentials_path()
    data = json.dumps(credentials.model_dump(), indent=2) + "\n"
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".credentials-", dir=path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise CredentialsError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path


def delete_credentials(path: Path | None = None) -> bool:
    """Remove the stored credentials; False when there were none."""
    path = path or credentials_path()
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise CredentialsError(f"cannot remove {path}: {exc.strerror or exc}") from exc
    return True


def resolve(url: str | None = None, token: str | None = None) -> Resolved:
    """The url and token a client uses when given none (see the module docstring)."""
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"PIER_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
        )
        raise CredentialsError(f"invalid pier configuration: {problems}") from exc
    if token is None:
        token = os.environ.get(TOKEN_ENV) or None
    explicit = normalize_url(url) if url else normalize_url(settings.url) if settings.url else None
    stored = None
    if explicit is None or token is None:
        stored = load_credentials(settings.credentials_file)
    if explicit is not None:
        target = explicit
    elif stored is not None:
        target = normalize_url(stored.url)
    else:
        target = settings.effective_url
    user: str | None = None
    if token is None and stored is not None and normalize_url(stored.url) == target:
        token, user = stored.token, stored.user
    return Resolved(url=target, token=token, user=user)
