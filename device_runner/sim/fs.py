"""The simulated phone's private file tree: device paths mapped into one host folder.

``/data/local/tmp/x`` lives at ``<root>/data/local/tmp/x``. Android's aliases are folded first
(``/storage/emulated/0`` and ``/storage/self/primary`` and ``/mnt/sdcard`` -> ``/sdcard``,
``/data/user/0`` -> ``/data/data``), so every spelling of a path reaches the same host file.
A device path can never escape the root (``..`` is resolved on the device side first).

A few nodes are virtual (battery sysfs, ``/proc``): their content is computed on each read.
"""

from __future__ import annotations

import os
import posixpath
import stat
import time
from collections.abc import Callable
from pathlib import Path

ALIASES = (
    ("/storage/emulated/0", "/sdcard"),
    ("/storage/self/primary", "/sdcard"),
    ("/mnt/sdcard", "/sdcard"),
    ("/data/user/0", "/data/data"),
)

# folders every Android phone has; created under the root at start
STANDARD_DIRS = (
    "/data/local/tmp",
    "/data/data",
    "/data/app",
    "/data/misc/adb",
    "/sdcard/Download",
    "/sdcard/Android/data",
    "/system/bin",
    "/vendor",
    "/proc",
    "/sys/class/power_supply/battery",
    "/sys/devices/system/cpu",
)

# app-private folders: the shell user cannot read them (run-as can, for debuggable apps)
PRIVATE_PREFIX = "/data/data/"
# folders the shell user cannot list or read at all (SELinux / permissions on a user build)
CLOSED = ("/data", "/data/data", "/data/user", "/data/app", "/data/misc")
CLOSED_PREFIXES = ("/data/misc/", "/data/app/")


def normalize(device_path: str, cwd: str = "/") -> str:
    """Absolute, ``..``-free device path with Android's aliases folded."""
    if not device_path.startswith("/"):
        device_path = posixpath.join(cwd, device_path)
    path = posixpath.normpath(device_path)
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    for alias, target in ALIASES:
        if path == alias or path.startswith(alias + "/"):
            path = target + path[len(alias):]
            break
    return path


class FileTree:
    """Device paths -> host paths under ``root``, plus virtual read-only nodes."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.virtual: dict[str, Callable[[], bytes]] = {}
        for d in STANDARD_DIRS:
            self.host_path(d).mkdir(parents=True, exist_ok=True)

    def host_path(self, device_path: str, cwd: str = "/") -> Path:
        """Where ``device_path`` lives on the host (inside the root)."""
        path = normalize(device_path, cwd)
        return self.root.joinpath(*[p for p in path.split("/") if p])

    def device_path(self, host_path: Path) -> str:
        rel = Path(host_path).resolve().relative_to(self.root)
        return "/" + rel.as_posix() if str(rel) != "." else "/"

    def is_private(self, device_path: str, cwd: str = "/", *, allowed_pkg: str | None = None) -> bool:
        """True where the shell user (or the run-as package) gets Permission denied."""
        path = normalize(device_path, cwd)
        if path in CLOSED or path.startswith(CLOSED_PREFIXES):
            return True
        if not path.startswith(PRIVATE_PREFIX):
            return False
        pkg = path[len(PRIVATE_PREFIX):].split("/", 1)[0]
        return pkg != allowed_pkg

    def add_virtual(self, device_path: str, producer: Callable[[], bytes]) -> None:
        self.virtual[normalize(device_path)] = producer

    def read_virtual(self, device_path: str, cwd: str = "/") -> bytes | None:
        producer = self.virtual.get(normalize(device_path, cwd))
        return producer() if producer else None

    def virtual_children(self, device_dir: str) -> list[str]:
        base = normalize(device_dir).rstrip("/") + "/"
        return sorted({p[len(base):].split("/", 1)[0] for p in self.virtual if p.startswith(base)})

    def stat(self, device_path: str, cwd: str = "/") -> os.stat_result | None:
        """lstat of the host file, or a synthetic one for a virtual node; None when missing."""
        path = normalize(device_path, cwd)
        if path in self.virtual:
            now = int(time.time())
            return os.stat_result((stat.S_IFREG | 0o444, 0, 0, 1, 1000, 1000, 4096, now, now, now))
        try:
            return os.lstat(self.host_path(path))
        except OSError:
            return None
