"""The sync sub-protocol of the simulated phone: raw records, and adb-shell's own client against it."""

from __future__ import annotations

import hashlib
import os
import stat
import struct
from pathlib import Path

import pytest
from adb_shell.adb_device import AdbDeviceTcp

from device_runner.sim import SimulatedPhone
from device_runner.sim import protocol as p

from .conftest import RawClient


class SyncSession:
    """A ``sync:`` stream over a RawClient; sends records split at awkward places on purpose."""

    def __init__(self, client: RawClient) -> None:
        self.client = client
        client.send(p.A_OPEN, 1, 0, b"sync:\0")
        okay = client.recv()
        assert okay.command == p.A_OKAY
        self.remote = okay.arg0
        self.buffer = b""
        self.closed = False

    def write(self, data: bytes, piece: int = 7) -> None:
        """Send ``data`` in WRTE packets of ``piece`` bytes, waiting for each OKAY."""
        for i in range(0, len(data), piece):
            self.client.send(p.A_WRTE, 1, self.remote, data[i:i + piece])
            while True:
                msg = self.client.recv()
                if msg.command == p.A_OKAY:
                    break
                self._take(msg)

    def _take(self, msg: p.Message) -> None:
        if msg.command == p.A_WRTE:
            self.buffer += msg.data
            self.client.send(p.A_OKAY, 1, self.remote)
        elif msg.command == p.A_CLSE:
            self.closed = True

    def read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if self.closed:
                raise EOFError("stream closed")
            self._take(self.client.recv())
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def request(self, ident: bytes, path: str, piece: int = 7) -> None:
        raw = path.encode()
        self.write(ident + struct.pack("<I", len(raw)) + raw, piece)


@pytest.fixture
def sync(sim_phone: SimulatedPhone, pubkey: bytes):
    client = RawClient(sim_phone.port)
    client.authenticate(pubkey)
    yield SyncSession(client)
    client.close()


def test_stat_missing_and_present(sim_phone: SimulatedPhone, sync: SyncSession) -> None:
    sync.request(p.ID_STAT, "/data/local/tmp/nothing")
    assert sync.read(16) == b"STAT" + bytes(12)
    sim_phone.host_path("/sdcard/Download/a.txt").write_bytes(b"12345")
    sync.request(p.ID_STAT, "/storage/emulated/0/Download/a.txt")  # alias of /sdcard
    ident, mode, size, mtime = struct.unpack("<4s3I", sync.read(16))
    assert ident == b"STAT" and stat.S_ISREG(mode) and size == 5 and mtime > 0


def test_list_gives_dents_then_done(sim_phone: SimulatedPhone, sync: SyncSession) -> None:
    for name in ("b.bin", "a.bin"):
        sim_phone.host_path(f"/data/local/tmp/{name}").write_bytes(b"x" * 3)
    sync.request(p.ID_LIST, "/data/local/tmp")
    names = []
    while True:
        ident, mode, size, mtime, namelen = struct.unpack("<4s4I", sync.read(20))
        if ident == p.ID_DONE:
            break
        assert ident == p.ID_DENT
        names.append(sync.read(namelen).decode())
    assert names == [".", "..", "a.bin", "b.bin"]


def test_send_with_records_split_across_packets(sim_phone: SimulatedPhone, sync: SyncSession) -> None:
    payload = os.urandom(150_000)
    records = b"".join(p.sync_record(p.ID_DATA, len(payload[i:i + 65536]), payload[i:i + 65536])
                       for i in range(0, len(payload), 65536))
    spec = b"/data/local/tmp/new/dir/f.bin,33188"
    sync.write(p.ID_SEND + struct.pack("<I", len(spec)) + spec, piece=5)
    sync.write(records + p.sync_record(p.ID_DONE, 1_700_000_000), piece=40_001)
    assert sync.read(8) == b"OKAY" + bytes(4)
    host = sim_phone.host_path("/data/local/tmp/new/dir/f.bin")
    assert host.read_bytes() == payload  # folders were made, like fixed_push_mkdir
    assert stat.S_IMODE(host.stat().st_mode) == 0o644 and int(host.stat().st_mtime) == 1_700_000_000


def test_recv_chunks_and_fail_for_missing(sim_phone: SimulatedPhone, sync: SyncSession) -> None:
    payload = os.urandom(200_000)
    sim_phone.host_path("/data/local/tmp/r.bin").write_bytes(payload)
    sync.request(p.ID_RECV, "/data/local/tmp/r.bin")
    got = b""
    while True:
        ident, n = struct.unpack("<4sI", sync.read(8))
        if ident == p.ID_DONE:
            break
        assert ident == p.ID_DATA and n <= 64 * 1024
        got += sync.read(n)
    assert got == payload
    sync.request(p.ID_RECV, "/data/local/tmp/missing.bin")
    ident, n = struct.unpack("<4sI", sync.read(8))
    assert ident == p.ID_FAIL and sync.read(n) == b"No such file or directory"


def test_recv_of_virtual_sysfs_node(sync: SyncSession) -> None:
    sync.request(p.ID_RECV, "/sys/class/power_supply/battery/capacity")
    ident, n = struct.unpack("<4sI", sync.read(8))
    assert ident == p.ID_DATA
    assert sync.read(n).decode().strip().isdigit()


def test_app_private_folder_is_closed_to_the_shell_user(sync: SyncSession) -> None:
    sync.request(p.ID_STAT, "/data/user/0/org.vitpalette.bench/files")
    assert sync.read(16) == b"STAT" + bytes(12)


def test_quit_closes_the_stream(sync: SyncSession) -> None:
    sync.write(p.ID_QUIT + bytes(4))
    with pytest.raises(EOFError):
        sync.read(1)


# --- adb-shell's client (what the project's transport wraps) --------------------------------------


@pytest.fixture
def adb(sim_phone: SimulatedPhone, adb_keypair):
    dev = AdbDeviceTcp("127.0.0.1", sim_phone.port, default_transport_timeout_s=10)
    dev.connect(rsa_keys=[adb_keypair[0]], auth_timeout_s=5)
    yield dev
    dev.close()


def test_adb_shell_push_pull_stat_list(adb: AdbDeviceTcp, sim_phone: SimulatedPhone, tmp_path: Path) -> None:
    src = tmp_path / "model.onnx"
    src.write_bytes(os.urandom(1_500_000))
    adb.push(str(src), "/data/local/tmp/model.onnx")
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    assert adb.shell("sha256sum /data/local/tmp/model.onnx") == f"{digest}  /data/local/tmp/model.onnx\n"
    adb.pull("/data/local/tmp/model.onnx", str(tmp_path / "back.onnx"))
    assert (tmp_path / "back.onnx").read_bytes() == src.read_bytes()
    mode, size, _ = adb.stat("/data/local/tmp/model.onnx")
    assert stat.S_ISREG(mode) and size == 1_500_000
    names = sorted(f.filename.decode() for f in adb.list("/data/local/tmp"))
    assert names == [".", "..", "model.onnx"]
    assert not [n for n in os.listdir(sim_phone.host_path("/data/local/tmp")) if n.startswith(".sim-")]


def test_adb_shell_services(adb: AdbDeviceTcp) -> None:
    assert adb.shell("getprop ro.product.model") == "Pixel 8\n"
    assert adb.shell("foo; echo $?") == "/system/bin/sh: foo: inaccessible or not found\n127\n"
    assert adb.exec_out("echo out") == "out\n"
