"""runtime_env packages (a ``working_dir`` the Ray client zipped and uploaded), kept per
project under ``files_dir/packages/<project id>/<protocol>/<name>``.

Ray names a package after a hash of the directory it was made from (``_ray_pkg_<sha1>.zip``)
and skips the upload when the server already has that name. The server cannot check that
hash (it covers the files, not the zip), so packages are kept per project: one project's
uploads are never another's, and whether a name exists says nothing across projects.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

from pier.errors import Invalid, PierError
from pier.services.context import Principal, ServiceContext
from pier.services.projects import resolve_project

__all__ = [
    "MAX_PACKAGE_BYTES",
    "PackagesDisabled",
    "TooLarge",
    "package_exists",
    "package_path",
    "require_package",
    "store_package",
    "tenant_project_id",
]

MAX_PACKAGE_BYTES = 100 * 1024 * 1024
"""Ray's own limit (the dashboard's ``client_max_size``)."""
PROTOCOLS = ("gcs",)
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]{0,254}$")
ARCHIVE_SUFFIXES = (".zip",)


class PackagesDisabled(PierError):
    """This server keeps no files (no ``files_dir``): uploads are refused up front."""

    status_code = 501
    code = "not_implemented"


class TooLarge(PierError):
    status_code = 413
    code = "too_large"


def _root(ctx: ServiceContext) -> Path:
    if ctx.files_dir is None:
        raise PackagesDisabled(
            "runtime_env package uploads are not supported by this server (it has no files "
            "directory)"
        )
    return ctx.files_dir / "packages"


def tenant_project_id(ctx: ServiceContext, caller: Principal, tenant: str | None) -> str:
    """The project a request acts in: ``X-Tenant-Id``, else the caller's default project."""
    with ctx.db.read() as conn:
        row = resolve_project(conn, caller, tenant, loc=("header", "X-Tenant-Id"))
    return str(row.id)


def _checked_name(protocol: str, name: str) -> None:
    if protocol not in PROTOCOLS:
        raise Invalid(
            f"package protocol '{protocol}' is not supported (only gcs://, as the Ray client "
            "uploads)",
            loc=["path", "protocol"],
        )
    if not _NAME.match(name) or ".." in name:
        raise Invalid(f"'{name}' is not a package name", loc=["path", "package_name"])
    if not name.endswith(ARCHIVE_SUFFIXES):
        raise Invalid(
            f"package '{name}': only .zip packages (a working_dir) are supported",
            loc=["path", "package_name"],
        )


def package_path(ctx: ServiceContext, project_id: str, protocol: str, name: str) -> Path:
    """Where a package is (or would be) kept; the name is checked first."""
    _checked_name(protocol, name)
    return _root(ctx) / project_id / protocol / name


def package_exists(
    ctx: ServiceContext, caller: Principal, tenant: str | None, protocol: str, name: str
) -> bool:
    path = package_path(ctx, tenant_project_id(ctx, caller, tenant), protocol, name)
    return path.is_file()


async def store_package(
    ctx: ServiceContext,
    caller: Principal,
    tenant: str | None,
    protocol: str,
    name: str,
    body: AsyncIterator[bytes],
) -> None:
    """Write an upload to a temporary file, check it is a zip, then move it into place, so a
    package is either whole or absent; the last upload of a name wins, as in Ray."""
    target = package_path(ctx, tenant_project_id(ctx, caller, tenant), protocol, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
    tmp = Path(tmp_name)
    try:
        size = 0
        with os.fdopen(fd, "wb") as out:
            async for chunk in body:
                size += len(chunk)
                if size > MAX_PACKAGE_BYTES:
                    raise TooLarge(
                        f"package '{name}' is larger than {MAX_PACKAGE_BYTES} bytes",
                        loc=["body"],
                    )
                out.write(chunk)
        if not zipfile.is_zipfile(tmp):
            raise Invalid(f"package '{name}' is not a zip archive", loc=["body"])
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def require_package(ctx: ServiceContext, project_id: str, uri: str) -> Path:
    """The stored file behind a ``gcs://`` URI of this project; Invalid if it was never
    uploaded here."""
    protocol, _, name = uri.partition("://")
    path = package_path(ctx, project_id, protocol, name)
    if not path.is_file():
        raise Invalid(
            f"runtime_env.working_dir: package {uri} was never uploaded to this project "
            "(the Ray client uploads a local working_dir before submitting)",
            loc=["body", "runtime_env", "working_dir"],
        )
    return path
