"""The TCP transport over real sockets (a socketpair with a tiny send buffer), addresses, keys, USB."""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import sys
import threading
import time
from pathlib import Path

import pytest
from adb_shell.exceptions import TcpTimeoutException
from adb_shell.transport.tcp_transport import TcpTransport

from device_runner import keys
from device_runner.errors import AdbKeyError, DeviceNotFoundError, UsbUnavailableError
from device_runner.transport import AdbTransport, FullWriteTcpTransport, PeerClosedError

SMALL_BUF = 4096


def _pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUF)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUF)
    return a, b


def _slow_reader(sock: socket.socket, want: int, out: bytearray, delay_s: float = 0.0) -> None:
    sock.settimeout(10)
    while len(out) < want:
        chunk = sock.recv(8192)
        if not chunk:
            break
        out += chunk
        if delay_s:
            time.sleep(delay_s)


def test_upstream_tcp_transport_drops_the_rest_of_a_large_write() -> None:
    """The pitfall this module fixes: one non-blocking send() writes only what fits the buffer."""
    a, b = _pair()
    try:
        upstream = TcpTransport("socketpair", 0)
        a.setblocking(False)
        upstream._connection = a
        data = os.urandom(1 << 20)
        sent = upstream.bulk_write(data, 1.0)
        assert 0 < sent < len(data)  # the caller (AdbDevice._send) ignores this count
    finally:
        a.close()
        b.close()


def test_full_write_sends_every_byte_through_a_tiny_buffer() -> None:
    a, b = _pair()
    data = os.urandom(3 * (1 << 20) + 17)
    got = bytearray()
    reader = threading.Thread(target=_slow_reader, args=(b, len(data), got, 0.0005))
    reader.start()
    try:
        t = FullWriteTcpTransport("socketpair", 0, sock=a)
        # several packets, as AdbDevice writes them: header then payload
        assert t.bulk_write(data[:24], 5.0) == 24
        assert t.bulk_write(data[24:], 5.0) == len(data) - 24
        reader.join(20)
        assert not reader.is_alive()
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    finally:
        a.close()
        b.close()


def test_full_write_times_out_when_the_peer_stops_reading() -> None:
    a, b = _pair()
    try:
        t = FullWriteTcpTransport("socketpair", 0, sock=a)
        started = time.monotonic()
        with pytest.raises(TcpTimeoutException, match="bytes sent"):
            t.bulk_write(b"x" * (8 << 20), 0.3)
        assert time.monotonic() - started < 5
    finally:
        a.close()
        b.close()


def test_read_reports_a_closed_peer_instead_of_spinning() -> None:
    a, b = _pair()
    t = FullWriteTcpTransport("socketpair", 0, sock=a)
    b.sendall(b"abc")
    assert t.bulk_read(10, 1.0) == b"abc"
    b.close()
    started = time.monotonic()
    with pytest.raises(PeerClosedError):
        t.bulk_read(10, 5.0)
    assert time.monotonic() - started < 4.0  # noticed the closed peer, did not wait out the 5 s timeout
    a.close()


def test_read_times_out() -> None:
    a, b = _pair()
    try:
        t = FullWriteTcpTransport("socketpair", 0, sock=a)
        with pytest.raises(TcpTimeoutException):
            t.bulk_read(10, 0.2)
    finally:
        a.close()
        b.close()


# ------------------------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    "address, kind, host, port, serial",
    [("127.0.0.1:5555", "tcp", "127.0.0.1", 5555, None),
     ("192.168.1.20", "tcp", "192.168.1.20", 5555, None),
     ("phone.local:40123", "tcp", "phone.local", 40123, None),
     ("[::1]:5037", "tcp", "::1", 5037, None),
     ("usb", "usb", "", 0, None),
     ("usb:3A271FDJH00W7Q", "usb", "", 0, "3A271FDJH00W7Q")],
)
def test_addresses(address, kind, host, port, serial) -> None:
    t = AdbTransport(address, signer=object())
    assert (t.kind, t.host, t.port, t.serial) == (kind, host, port, serial)


def test_bad_address_names_the_steps() -> None:
    with pytest.raises(DeviceNotFoundError, match="adb tcpip 5555"):
        AdbTransport("not an address", signer=object())


def test_nothing_listening_is_device_not_found(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = AdbTransport(f"127.0.0.1:{port}", signer=object())
    with pytest.raises(DeviceNotFoundError, match=f"127.0.0.1:{port}") as info:
        t.open(2.0)
    assert "adb connect" in str(info.value)


def test_missing_usb_extra_names_the_extra_and_the_adb_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "adb_shell.transport.usb_transport", None)  # import fails
    t = AdbTransport("usb:ABC123", signer=object())
    with pytest.raises(UsbUnavailableError) as info:
        t.open(1.0)
    assert "pip install 'vit-palette-bench[usb]'" in str(info.value)


def test_usb_busy_explains_the_adb_server() -> None:
    t = AdbTransport("usb", signer=object())
    err = t._connect_error(RuntimeError("LIBUSB_ERROR_BUSY [-6]"), prompted=False)
    assert isinstance(err, UsbUnavailableError)
    assert "adb kill-server" in str(err)


def test_auth_failure_after_prompt_asks_to_accept_it() -> None:
    from device_runner.errors import AuthorizationError

    t = AdbTransport("127.0.0.1:5555", signer=object())
    err = t._connect_error(TcpTimeoutException("Reading timed out"), prompted=True)
    assert isinstance(err, AuthorizationError)
    assert "accept the USB debugging prompt on the phone" in str(err)


# ------------------------------------------------------------------------------------------- keys


def test_key_dir_follows_adb_rules(tmp_path: Path) -> None:
    assert keys.android_user_dir({"ANDROID_USER_HOME": str(tmp_path / "u"), "HOME": "/h"}) == tmp_path / "u"
    assert keys.android_user_dir({"ANDROID_SDK_HOME": "/sdk", "HOME": "/h"}) == Path("/sdk/.android")
    assert keys.default_key_path({"HOME": "/h"}) == Path("/h/.android/adbkey")


def test_key_created_once_private_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANDROID_USER_HOME", str(tmp_path / "android"))
    path = keys.ensure_key()
    assert path == tmp_path / "android" / "adbkey"
    assert path.is_file() and (tmp_path / "android" / "adbkey.pub").is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["adbkey", "adbkey.pub"]  # no temp left
    before = path.read_bytes()
    signer = keys.load_signer()
    assert keys.ensure_key() == path and path.read_bytes() == before
    assert len(signer.Sign(b"x" * 20)) == 256  # RSA-2048 signature
    # a lost .pub is rebuilt from the private key
    pub = path.with_name("adbkey.pub")
    old_pub = pub.read_bytes()
    pub.unlink()
    keys.ensure_key()
    assert pub.read_bytes().split()[0] == old_pub.split()[0]


def test_corrupt_key_is_a_readable_error(tmp_path: Path) -> None:
    bad = tmp_path / "adbkey"
    bad.write_text("not a key")
    (tmp_path / "adbkey.pub").write_text("nope")
    with pytest.raises(AdbKeyError, match="adbkey"):
        keys.load_signer(bad)


def test_tls_wireless_debugging_port_is_explained() -> None:
    from adb_shell.exceptions import InvalidCommandError

    from device_runner.errors import UnsupportedFeatureError

    t = AdbTransport("192.168.1.20:37099", signer=object())
    err = t._connect_error(InvalidCommandError("Unknown command: 1398033491 = 'STLS' (arg0 = 16777216)"),
                           prompted=False)
    assert isinstance(err, UnsupportedFeatureError) and "adb tcpip 5555" in str(err)


# ------------------------------------------------------------------------------------------- wire speed


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 300_001])
def test_fast_checksum_equals_the_byte_sum(size: int) -> None:
    from device_runner.transport import adb_checksum

    data = os.urandom(size)
    assert adb_checksum(data) == sum(data) & 0xFFFFFFFF
    assert adb_checksum(b"\xff" * (1 << 25)) == (255 << 25) & 0xFFFFFFFF  # wraps at 32 bits


def _packet(cmd: bytes, arg0: int, arg1: int, data: bytes, crc: int) -> bytes:
    import struct

    wire = int.from_bytes(cmd, "little")
    return struct.pack("<6I", wire, arg0, arg1, len(data), crc, wire ^ 0xFFFFFFFF) + data


def test_fast_wire_checks_checksums_only_when_the_phone_sends_them() -> None:
    from adb_shell.exceptions import InvalidChecksumError
    from adb_shell.hidden_helpers import _AdbTransactionInfo

    from device_runner.transport import _fast_io_manager_class

    cls = _fast_io_manager_class()
    assert cls is not None, "adb-shell internals changed: the fast wire is off"
    a, b = _pair()
    try:
        io = cls(FullWriteTcpTransport("socketpair", 0, sock=a))
        info = _AdbTransactionInfo(1, 2, transport_timeout_s=2.0, read_timeout_s=2.0)
        payload = os.urandom(70_000)
        b.sendall(_packet(b"WRTE", 2, 1, payload, sum(payload) & 0xFFFFFFFF))  # old phone: real checksum
        assert io._read_packet_from_device(info) == (b"WRTE", 2, 1, payload)
        b.sendall(_packet(b"WRTE", 2, 1, payload, 0))  # version >= 0x01000001: checksum skipped
        assert io._read_packet_from_device(info)[3] == payload
        b.sendall(_packet(b"WRTE", 2, 1, payload, (sum(payload) + 1) & 0xFFFFFFFF))
        with pytest.raises(InvalidChecksumError):
            io._read_packet_from_device(info)
    finally:
        a.close()
        b.close()


def test_fast_wire_sends_header_and_payload_whole() -> None:
    from adb_shell.adb_message import AdbMessage
    from adb_shell.hidden_helpers import _AdbTransactionInfo

    from device_runner.transport import _fast_io_manager_class

    a, b = _pair()
    got = bytearray()
    payload = os.urandom(600_000)
    reader = threading.Thread(target=_slow_reader, args=(b, 24 + len(payload), got))
    reader.start()
    try:
        io = _fast_io_manager_class()(FullWriteTcpTransport("socketpair", 0, sock=a))
        io._send(AdbMessage(b"WRTE", 1, 2, payload), _AdbTransactionInfo(1, 2, transport_timeout_s=5.0))
        reader.join(10)
        assert bytes(got) == _packet(b"WRTE", 1, 2, payload, sum(payload) & 0xFFFFFFFF)  # old-version checksum
    finally:
        a.close()
        b.close()
