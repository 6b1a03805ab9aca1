"""A working podman for container-mode tests, or the reason there is none (tests skip).

No registry is reachable from a test machine, so the image is built here: a rootfs of a
static busybox (``/bin/busybox`` and its applets) imported with ``podman import`` and tagged
as the seeds' image (``gcr.io/run-ai-demo/quickstart``), whose CMD prints a greeting.

Nothing global is touched: podman gets its own ``storage.conf`` (vfs, graph and run roots in
a temporary directory) and ``containers.conf`` through ``CONTAINERS_STORAGE_CONF`` and
``CONTAINERS_CONF`` (the test server inherits them). The machine decides the rest, found by
trying: the OCI runtime (crun refuses a cgroup v1/v2 hybrid; runc does not) and the default
ulimits (without CAP_SYS_RESOURCE a container cannot get podman's default 1048576 open
files or processes).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from pier.executors.containers import ContainerRuntime

__all__ = ["GREETING", "IMAGE", "Podman", "make_podman"]

IMAGE = "gcr.io/run-ai-demo/quickstart"
GREETING = "hello from quickstart"
BUSYBOX = ("/bin/busybox", "/usr/bin/busybox")
INSTALL = "apt-get install podman crun runc busybox-static"


@dataclass(frozen=True)
class Podman:
    runtime: ContainerRuntime
    env: dict[str, str]
    """CONTAINERS_CONF and CONTAINERS_STORAGE_CONF: set them for whatever runs podman."""

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.runtime.cli, *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def containers(self) -> list[str]:
        """Names of all containers (running or not) in this storage."""
        done = self.run("ps", "-a", "--format", "{{.Names}}")
        return done.stdout.split()


def _busybox() -> str | None:
    for path in BUSYBOX:
        if os.path.isfile(path):
            with open(path, "rb") as f:
                head = f.read(4096)
            if head[:4] == b"\x7fELF" and b"/ld-linux" not in head and b"ld.so" not in head:
                return path  # no program interpreter named in its headers: static
    return None


def _rootfs(directory: Path, busybox: str) -> Path:
    tar_path = directory / "rootfs.tar"
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True)
    with tarfile.open(tar_path, "w") as tar:
        for name in ("bin", "tmp", "etc"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, "bin/busybox")
        for applet in applets.stdout.split():
            if applet != "busybox":
                info = tarfile.TarInfo(f"bin/{applet}")
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, "busybox", 0o777
                tar.addfile(info)
    return tar_path


def _confs(directory: Path, oci_runtime: str | None, ulimits: list[str]) -> dict[str, str]:
    storage = directory / "storage.conf"
    storage.write_text(
        "[storage]\n"
        'driver = "vfs"\n'
        f'runroot = "{directory / "run"}"\n'
        f'graphroot = "{directory / "graph"}"\n'
    )
    conf = directory / "containers.conf"
    limits = ", ".join(f'"{u}"' for u in ulimits)
    conf.write_text(
        "[containers]\n" + (f"default_ulimits = [{limits}]\n" if ulimits else "") + "[engine]\n"
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n' + (f'runtime = "{oci_runtime}"\n' if oci_runtime else "")
    )
    return {"CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage)}


def _ulimit_choices() -> list[list[str]]:
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)

    def cap(limit: tuple[int, int], most: int) -> str:
        soft, hard = (most if v < 0 else min(v, most) for v in limit)
        return f"{soft}:{hard}"

    own = cap(nofile, 1 << 20)
    return [
        [],
        [f"nofile={own}", f"nproc={cap(nproc, 1 << 20)}"],
        [f"nofile={own}", f"nproc={cap(nproc, 32768)}"],
    ]


def make_podman(directory: Path) -> Podman | str:
    """A podman that runs :data:`IMAGE` here, or why there is none."""
    cli = shutil.which("podman")
    if cli is None:
        return f"no podman CLI ({INSTALL})"
    busybox = _busybox()
    if busybox is None:
        return f"no static busybox to build a test image from ({INSTALL})"
    directory.mkdir(parents=True, exist_ok=True)
    tar_path = _rootfs(directory, busybox)
    runtime = ContainerRuntime("podman", cli)
    problems: list[str] = []
    oci_runtimes = [None, *(r for r in ("runc", "crun") if shutil.which(r))]
    imported = False
    for oci in oci_runtimes:
        for ulimits in _ulimit_choices():
            podman = Podman(runtime, _confs(directory, oci, ulimits))
            if not imported:
                done = podman.run(
                    "import",
                    "--change",
                    f'CMD ["/bin/sh", "-c", "echo {GREETING}"]',
                    "--change",
                    "ENV PATH=/bin",
                    str(tar_path),
                    IMAGE,
                )
                if done.returncode != 0:
                    return f"podman import failed: {done.stderr.strip()[-500:]}"
                imported = True
            done = podman.run("run", "--rm", "--pull", "never", IMAGE)
            if done.returncode == 0 and done.stdout.strip() == GREETING:
                return podman
            problems.append(f"{oci or 'default runtime'} {ulimits}: {done.stderr.strip()[-300:]}")
    return "podman cannot run a container here: " + " | ".join(problems)
