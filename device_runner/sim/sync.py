"""The ``sync:`` service: STAT, LIST, SEND, RECV, QUIT (the v1 records that every adb client speaks).

SEND writes to a temporary name in the target folder and renames it on DONE, so a dropped
connection or a failure never leaves a partial file. On failure the service keeps swallowing the
client's DATA until DONE, then answers FAIL with the reason and closes the stream. (adbd sends the
FAIL as soon as it fails; clients that wait for one reply after DONE, such as adb-shell, can miss
a FAIL that arrives while they are still sending, so the simulator answers after DONE, which every
client reads.)
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
import struct
from typing import TYPE_CHECKING

from device_runner.sim import protocol as p
from device_runner.sim.transport import BufferedWriter, Stream, StreamClosed, StreamReader

if TYPE_CHECKING:
    from device_runner.sim.phone import SimulatedPhone

MAX_PATH_BYTES = 1024


class SyncFailure(Exception):
    """A request that gets a FAIL record with this message."""


def serve_sync(phone: SimulatedPhone, stream: Stream) -> None:
    reader = StreamReader(stream)
    writer = BufferedWriter(stream)
    while True:
        try:
            head = reader.read_exact(8)
        except StreamClosed:
            return
        ident, length = head[:4], struct.unpack("<I", head[4:])[0]
        if ident == p.ID_QUIT:
            return
        if length > MAX_PATH_BYTES:
            writer.write(p.sync_fail(f"path too long ({length} bytes)"))
            writer.flush()
            return
        path = reader.read_exact(length).decode("utf-8", "replace")
        if ident == p.ID_STAT:
            _stat(phone, path, writer)
        elif ident == p.ID_LIST:
            _list(phone, path, writer)
        elif ident == p.ID_RECV:
            if not _recv(phone, path, writer):
                writer.flush()
                return
        elif ident == p.ID_SEND:
            writer.flush()
            if not _send(phone, path, reader, writer):
                writer.flush()
                return
        else:
            writer.write(p.sync_fail(f"unknown sync command {ident!r}"))
            writer.flush()
            return
        writer.flush()


def _mtime(st: os.stat_result) -> int:
    return int(st.st_mtime) & 0xFFFFFFFF


def _stat(phone: SimulatedPhone, path: str, writer: BufferedWriter) -> None:
    st = None if phone.fs.is_private(path) else phone.fs.stat(path)
    if st is None:
        writer.write(p.ID_STAT + struct.pack("<3I", 0, 0, 0))
    else:
        writer.write(p.ID_STAT + struct.pack("<3I", st.st_mode & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF, _mtime(st)))


def _dent(name: str, st: os.stat_result) -> bytes:
    raw = name.encode()
    return p.ID_DENT + struct.pack("<4I", st.st_mode & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF, _mtime(st),
                                   len(raw)) + raw


def _list(phone: SimulatedPhone, path: str, writer: BufferedWriter) -> None:
    fs = phone.fs
    host = fs.host_path(path)
    if not fs.is_private(path) and host.is_dir():
        for name in (".", ".."):
            writer.write(_dent(name, os.stat(host)))
        for entry in sorted(os.scandir(host), key=lambda e: e.name):
            if entry.name.startswith(".sim-"):
                continue  # the simulator's own temp files
            try:
                writer.write(_dent(entry.name, entry.stat(follow_symlinks=False)))
            except OSError:
                continue
    writer.write(p.ID_DONE + struct.pack("<4I", 0, 0, 0, 0))


def _recv(phone: SimulatedPhone, path: str, writer: BufferedWriter) -> bool:
    fs = phone.fs
    if fs.is_private(path):
        writer.write(p.sync_fail(f"remote object '{path}' does not exist"))  # what adbd says for EACCES
        return False
    virtual = fs.read_virtual(path)
    if virtual is not None:
        chunks = [virtual[i:i + p.SYNC_DATA_MAX_BYTES] for i in range(0, len(virtual), p.SYNC_DATA_MAX_BYTES)]
        for chunk in chunks:
            writer.write(p.sync_record(p.ID_DATA, len(chunk), chunk))
        writer.write(p.sync_record(p.ID_DONE, 0))
        return True
    host = fs.host_path(path)
    try:
        f = open(host, "rb")
    except OSError as err:
        writer.write(p.sync_fail(os.strerror(err.errno or errno.ENOENT)))
        return False
    with f:
        if stat_mod.S_ISDIR(os.fstat(f.fileno()).st_mode):
            writer.write(p.sync_fail(os.strerror(errno.EISDIR)))
            return False
        while True:
            chunk = f.read(p.SYNC_DATA_MAX_BYTES)
            if not chunk:
                break
            writer.write(p.sync_record(p.ID_DATA, len(chunk), chunk))
    writer.write(p.sync_record(p.ID_DONE, 0))
    return True


def _send(phone: SimulatedPhone, spec: str, reader: StreamReader, writer: BufferedWriter) -> bool:
    path, _, mode_text = spec.rpartition(",")
    if not path:
        path, mode_text = spec, "420"
    try:
        mode = int(mode_text) & 0o7777 if mode_text else 0o644
    except ValueError:
        path, mode = spec, 0o644
    fs = phone.fs
    host = fs.host_path(path)
    tmp = host.parent / f".sim-{host.name}.{os.getpid()}.{id(reader):x}.part"
    failure: str | None = None
    out = None
    if fs.is_private(path):
        failure = f"couldn't create file: {os.strerror(errno.EACCES)}"
    elif phone.faults.full_disk:
        failure = os.strerror(errno.ENOSPC)
    elif host.is_dir():
        failure = f"couldn't create file: {os.strerror(errno.EISDIR)}"
    else:
        try:
            host.parent.mkdir(parents=True, exist_ok=True)  # fixed_push_mkdir: adbd makes the folders
            out = open(tmp, "wb")
        except OSError as err:
            failure = f"couldn't create file: {os.strerror(err.errno or errno.EIO)}"
    try:
        while True:
            head = reader.read_exact(8)
            ident, value = head[:4], struct.unpack("<I", head[4:])[0]
            if ident == p.ID_DATA:
                if value > p.SYNC_DATA_MAX_BYTES * 4:
                    raise SyncFailure(f"DATA record of {value} bytes is too large")
                remaining = value
                while remaining:
                    chunk = reader.read_some(remaining)
                    remaining -= len(chunk)
                    if out is not None:
                        try:
                            out.write(chunk)
                        except OSError as err:
                            out.close()
                            out = None
                            tmp.unlink(missing_ok=True)
                            failure = os.strerror(err.errno or errno.EIO)
                if phone.faults.full_disk and out is not None:  # fault switched on mid-transfer
                    out.close()
                    out = None
                    tmp.unlink(missing_ok=True)
                    failure = os.strerror(errno.ENOSPC)
            elif ident == p.ID_DONE:
                break
            else:
                raise SyncFailure(f"unexpected {ident!r} during SEND")
    except (StreamClosed, SyncFailure) as err:
        if out is not None:
            out.close()
        tmp.unlink(missing_ok=True)
        if isinstance(err, SyncFailure):
            writer.write(p.sync_fail(failure or str(err)))
        return False
    if failure or out is None:
        writer.write(p.sync_fail(failure or "couldn't create file"))
        return False
    out.close()
    try:
        os.chmod(tmp, mode)
        os.utime(tmp, (value, value))
        os.replace(tmp, host)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        writer.write(p.sync_fail(f"couldn't finish file: {os.strerror(err.errno or errno.EIO)}"))
        return False
    if phone.faults.corrupt_push:
        _flip_one_byte(host)
    writer.write(p.sync_record(p.ID_OKAY, 0))
    return True


def _flip_one_byte(host) -> None:
    size = os.path.getsize(host)
    if not size:
        return
    with open(host, "r+b") as f:
        f.seek(size // 2)
        b = f.read(1)
        f.seek(size // 2)
        f.write(bytes([b[0] ^ 0xFF]))
