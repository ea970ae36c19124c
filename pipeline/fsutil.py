"""Files that never masquerade as complete: temp name in the same folder, fsync, then rename.

Also the one check every command runs on its output folder before doing any work, so an
unwritable ``--out`` fails in a second with one line, not after minutes of export.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pipeline.errors import OutputError


def ensure_writable_dir(path: str | os.PathLike[str], *, flag: str = "--out") -> Path:
    """Create ``path`` if needed and prove it is writable with a real write (``os.access`` lies to root)."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputError(f"cannot write to the output folder {folder} ({err.strerror or err})",
                          next_step=f"Pick a writable {flag} folder.", path=str(folder)) from None
    return folder


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same folder; readable like a normal file."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], doc: Any) -> Path:
    return atomic_write_text(path, json.dumps(doc, indent=2) + "\n")
