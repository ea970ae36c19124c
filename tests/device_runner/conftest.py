"""Fixtures for device_runner tests: a real simulated phone on a free loopback port."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from device_runner.sim import Faults, SimulatedPhone
from device_runner.sim import protocol as p


@pytest.fixture
def sim_phone(tmp_path: Path) -> Iterator[SimulatedPhone]:
    """A started pixel-8 SimulatedPhone (port 0 = a free port) with its files under tmp_path/phone."""
    with SimulatedPhone(tmp_path / "phone", profile="pixel-8", port=0, faults=Faults()) as phone:
        yield phone


@pytest.fixture
def generic_phone(tmp_path: Path) -> Iterator[SimulatedPhone]:
    """A started non-Google phone (no power rails, current in mA)."""
    with SimulatedPhone(tmp_path / "generic-phone", profile="generic", port=0) as phone:
        yield phone


@pytest.fixture(scope="session")
def adb_keypair(tmp_path_factory: pytest.TempPathFactory):
    """An adb RSA key pair made once per session (key generation is slow): (signer, private key path)."""
    from adb_shell.auth.keygen import keygen
    from adb_shell.auth.sign_pythonrsa import PythonRSASigner

    folder = tmp_path_factory.mktemp("adbkey")
    path = folder / "adbkey"
    keygen(str(path))
    return PythonRSASigner.FromRSAKeyPath(str(path)), path


@pytest.fixture
def pubkey(adb_keypair) -> bytes:
    """The session key's public half as adb sends it (base64 blob and user@host)."""
    return adb_keypair[1].with_suffix(".pub").read_bytes().strip()


class RawClient:
    """The host side of ADB written out by hand, to test the phone without any client library."""

    def __init__(self, port: int, *, version: int = p.VERSION_SKIP_CHECKSUM, max_payload: int = 256 * 1024):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.version = version
        self.send(p.A_CNXN, version, max_payload, b"host::\0")

    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        self.sock.sendall(p.pack_header(command, arg0, arg1, data, with_checksum=True) + data)

    def read_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                return buf
            buf += chunk
        return buf

    def recv(self) -> p.Message:
        header = self.read_exact(24)
        command, arg0, arg1, length, crc = p.unpack_header(header)
        data = self.read_exact(length)
        if crc:
            assert p.checksum(data) == crc
        elif self.version < p.VERSION_SKIP_CHECKSUM:
            assert not data, "the phone must send checksums to old-version peers"
        return p.Message(command, arg0, arg1, data)

    def authenticate(self, pubkey: bytes) -> p.Message:
        msg = self.recv()
        assert msg.command == p.A_AUTH and msg.arg0 == p.AUTH_TOKEN and len(msg.data) == 20
        self.send(p.A_AUTH, p.AUTH_RSAPUBLICKEY, 0, pubkey + b"\0")
        msg = self.recv()
        assert msg.command == p.A_CNXN
        return msg

    def close(self) -> None:
        self.sock.close()


class TreeFS:
    """Stand-in for the sim's file tree: device paths under one host folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def host_path(self, device_path: str) -> Path:
        assert device_path.startswith("/"), device_path
        return self.root.joinpath(*[p for p in device_path.split("/") if p])

    def put(self, device_path: str, data: bytes) -> None:
        path = self.host_path(device_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@pytest.fixture
def fs(tmp_path: Path) -> TreeFS:
    """A TreeFS under tmp_path/device, for calling the simulated app's run_job directly."""
    return TreeFS(tmp_path / "device")
