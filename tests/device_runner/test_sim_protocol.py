"""ADB framing, keys, and the stream layer of the simulated phone, tested with a raw socket client."""

from __future__ import annotations

import struct
import threading
import time

import pytest

from device_runner.sim import SimulatedPhone
from device_runner.sim import protocol as p

from .conftest import RawClient

# --- framing ----------------------------------------------------------------------------------


def test_header_round_trip_and_magic() -> None:
    data = b"host::features=shell_v2\0"
    raw = p.pack_message(p.Message(p.A_CNXN, 0x01000000, 4096, data))
    assert len(raw) == p.HEADER_SIZE + len(data)
    command, arg0, arg1, length, crc = p.unpack_header(raw[:24])
    assert (command, arg0, arg1, length) == (p.A_CNXN, 0x01000000, 4096, len(data))
    assert crc == sum(data)
    assert struct.unpack("<I", raw[20:24])[0] == p.A_CNXN ^ 0xFFFFFFFF
    assert raw[:4] == b"CNXN"


def test_checksum_is_byte_sum_for_small_and_large_payloads() -> None:
    small = bytes(range(256))
    large = bytes(range(256)) * 1000 + b"\xff" * 3
    assert p.checksum(small) == sum(small)
    assert p.checksum(large) == sum(large) & 0xFFFFFFFF
    assert p.checksum(b"") == 0


def test_checksum_skipped_for_new_peers() -> None:
    header = p.pack_header(p.A_WRTE, 1, 2, b"abc", with_checksum=False)
    assert struct.unpack("<6I", header)[4] == 0


@pytest.mark.parametrize("bad", [b"\0" * 23, struct.pack("<6I", p.A_OKAY, 1, 2, 0, 0, 12345)])
def test_unpack_rejects_short_header_and_bad_magic(bad: bytes) -> None:
    with pytest.raises(p.ProtocolError):
        p.unpack_header(bad)


def test_sync_records() -> None:
    assert p.sync_record(p.ID_DATA, 3, b"abc") == b"DATA\x03\x00\x00\x00abc"
    assert p.sync_fail("No space left on device") == b"FAIL" + struct.pack("<I", 23) + b"No space left on device"


def test_public_key_parse_and_signature_verify(adb_keypair) -> None:
    signer, path = adb_keypair
    key = p.parse_public_key(path.with_suffix(".pub").read_text())
    assert key.exponent == 65537
    assert key.modulus.bit_length() == 2048
    token = bytes(range(20))
    signature = signer.Sign(token)
    assert key.verify(token, signature)
    assert not key.verify(bytes(20), signature)
    assert not key.verify(token, signature[:-1] + bytes([signature[-1] ^ 1]))
    assert p.read_keys_file("# comment\n\nnot-a-key\n" + path.with_suffix(".pub").read_text()) == [key]


# --- a raw client (RawClient in conftest.py) ---------------------------------------------------


def test_handshake_banner_and_limits(sim_phone: SimulatedPhone, pubkey: bytes) -> None:
    client = RawClient(sim_phone.port)
    cnxn = client.authenticate(pubkey)
    banner = cnxn.data.decode()
    assert cnxn.arg0 == p.DEVICE_VERSION and cnxn.arg1 == 256 * 1024
    assert banner.startswith("device::ro.product.name=shiba;ro.product.model=Pixel 8;ro.product.device=shiba;")
    features = banner.split("features=", 1)[1].split(",")
    assert "shell_v2" in features and "delayed_ack" not in features
    client.close()


def test_old_peer_gets_checksums(sim_phone: SimulatedPhone, pubkey: bytes) -> None:
    client = RawClient(sim_phone.port, version=p.VERSION_MIN)
    client.authenticate(pubkey)
    client.send(p.A_OPEN, 7, 0, b"shell:echo hello\0")
    msg = client.recv()
    assert msg.command == p.A_OKAY and msg.arg1 == 7
    msg = client.recv()
    assert msg.command == p.A_WRTE and msg.data == b"hello\n"  # recv() checked the checksum
    client.close()


def test_unknown_service_is_refused_with_clse(sim_phone: SimulatedPhone, pubkey: bytes) -> None:
    client = RawClient(sim_phone.port)
    client.authenticate(pubkey)
    client.send(p.A_OPEN, 5, 0, b"jdwp:1234\0")
    msg = client.recv()
    assert (msg.command, msg.arg0, msg.arg1) == (p.A_CLSE, 0, 5)
    client.close()


def test_open_before_auth_is_ignored(sim_phone: SimulatedPhone) -> None:
    client = RawClient(sim_phone.port)
    assert client.recv().command == p.A_AUTH
    client.send(p.A_OPEN, 1, 0, b"shell:echo no\0")
    client.sock.settimeout(0.5)
    with pytest.raises(TimeoutError):
        client.recv()
    client.close()


def test_many_streams_at_once(sim_phone: SimulatedPhone, pubkey: bytes) -> None:
    """30 streams opened back to back on one connection all complete with their own output."""
    client = RawClient(sim_phone.port)
    client.authenticate(pubkey)
    n = 30
    for i in range(1, n + 1):
        client.send(p.A_OPEN, i, 0, f"shell:echo stream-{i}; sleep 0.05; echo done-{i}\0".encode())
    outputs = {i: b"" for i in range(1, n + 1)}
    remote = {}
    closed = set()
    while len(closed) < n:
        msg = client.recv()
        if msg.command == p.A_OKAY:
            remote[msg.arg1] = msg.arg0
        elif msg.command == p.A_WRTE:
            outputs[msg.arg1] += msg.data
            client.send(p.A_OKAY, msg.arg1, msg.arg0)
        elif msg.command == p.A_CLSE:
            closed.add(msg.arg1)
    assert len(set(remote.values())) == n  # the phone gave every stream its own id
    for i in range(1, n + 1):
        assert outputs[i] == f"stream-{i}\ndone-{i}\n".encode()
    client.close()


def test_flow_control_one_write_in_flight(sim_phone: SimulatedPhone, pubkey: bytes) -> None:
    """The phone sends the next WRTE of a stream only after the OKAY for the previous one."""
    (sim_phone.host_path("/data/local/tmp/big.txt")).write_bytes(b"x" * (3 * 256 * 1024 + 10))
    client = RawClient(sim_phone.port, max_payload=64 * 1024)
    client.authenticate(pubkey)
    client.send(p.A_OPEN, 9, 0, b"exec:cat /data/local/tmp/big.txt\0")
    okay = client.recv()
    assert okay.command == p.A_OKAY
    first = client.recv()
    assert first.command == p.A_WRTE and len(first.data) == 64 * 1024  # the peer's max payload is respected
    client.sock.settimeout(0.4)
    with pytest.raises(TimeoutError):
        client.recv()
    client.sock.settimeout(10)
    total = len(first.data)
    client.send(p.A_OKAY, 9, okay.arg0)
    while True:
        msg = client.recv()
        if msg.command == p.A_CLSE:
            break
        total += len(msg.data)
        client.send(p.A_OKAY, 9, okay.arg0)
    assert total == 3 * 256 * 1024 + 10
    client.close()


def test_peer_close_is_answered(sim_phone: SimulatedPhone, pubkey: bytes) -> None:
    client = RawClient(sim_phone.port)
    client.authenticate(pubkey)
    client.send(p.A_OPEN, 3, 0, b"sync:\0")
    okay = client.recv()
    client.send(p.A_CLSE, 3, okay.arg0)
    msg = client.recv()
    assert (msg.command, msg.arg0, msg.arg1) == (p.A_CLSE, okay.arg0, 3)
    client.close()


def test_stop_closes_connections(tmp_path, pubkey: bytes) -> None:
    with SimulatedPhone(tmp_path / "p", port=0) as phone:
        client = RawClient(phone.port)
        client.authenticate(pubkey)
        done = threading.Event()
        t0 = time.monotonic()
    # after the with block the socket is closed by the phone
    assert client.read_exact(24) == b""
    done.set()
    assert time.monotonic() - t0 < 10
    client.close()


def test_receive_side_okay_is_held_when_the_service_falls_behind(sim_phone: SimulatedPhone, pubkey: bytes) -> None:
    """WRTEs are acknowledged at once while little is queued; past the buffer the OKAY waits for the service."""
    from device_runner.sim.transport import RECEIVE_BUFFER_BYTES

    client = RawClient(sim_phone.port)
    client.authenticate(pubkey)
    client.send(p.A_OPEN, 4, 0, b"shell:sleep 2\0")  # a service that never reads its input
    okay = client.recv()
    chunk = b"z" * (256 * 1024)
    acknowledged = 0
    client.sock.settimeout(0.5)
    for _ in range(RECEIVE_BUFFER_BYTES // len(chunk) + 2):
        client.send(p.A_WRTE, 4, okay.arg0, chunk)
        try:
            msg = client.recv()
        except TimeoutError:
            break
        assert msg.command == p.A_OKAY
        acknowledged += len(chunk)
    assert acknowledged == RECEIVE_BUFFER_BYTES
    client.close()


def test_cli_serves_until_terminated(tmp_path, pubkey: bytes) -> None:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "device_runner.sim", "--port", "0", "--profile", "generic",
                             "--root", str(tmp_path / "cli-phone")], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "listening on 127.0.0.1:" in line and "SM-S911B" in line
        port = int(line.split("127.0.0.1:", 1)[1].split(";", 1)[0])
        client = RawClient(port)
        assert "ro.product.model=SM-S911B" in client.authenticate(pubkey).data.decode()
        client.close()
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
    bad = subprocess.run([sys.executable, "-m", "device_runner.sim", "--profile", "nokia", "--root", str(tmp_path)],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "nokia" in bad.stderr


def _v2_packets(client: RawClient, local_id: int) -> list[tuple[int, bytes]]:
    """Read a shell-v2 stream to its CLSE; returns (kind, payload) packets."""
    data = b""
    while True:
        msg = client.recv()
        if msg.command == p.A_CLSE:
            break
        if msg.command == p.A_WRTE:
            data += msg.data
            client.send(p.A_OKAY, local_id, msg.arg0)
    packets = []
    while data:
        kind, length = struct.unpack("<BI", data[:5])
        packets.append((kind, data[5:5 + length]))
        data = data[5 + length:]
    return packets


def test_shell_v2_separates_streams_and_sends_exit_code(sim_phone: SimulatedPhone, pubkey: bytes) -> None:
    client = RawClient(sim_phone.port)
    client.authenticate(pubkey)
    client.send(p.A_OPEN, 2, 0, b"shell,v2,raw:echo out; ls /nothing\0")
    assert client.recv().command == p.A_OKAY
    assert _v2_packets(client, 2) == [(1, b"out\n"), (2, b"ls: /nothing: No such file or directory\n"), (3, b"\x01")]
    client.close()


def test_shell_v2_interactive_reads_stdin(sim_phone: SimulatedPhone, pubkey: bytes) -> None:
    client = RawClient(sim_phone.port)
    client.authenticate(pubkey)
    client.send(p.A_OPEN, 6, 0, b"shell,v2,raw:\0")
    okay = client.recv()
    script = b"echo hi\nexit 4\necho never\n"
    client.send(p.A_WRTE, 6, okay.arg0, struct.pack("<BI", 0, len(script)) + script + struct.pack("<BI", 4, 0))
    assert client.recv().command == p.A_OKAY
    assert _v2_packets(client, 6) == [(1, b"hi\n"), (3, b"\x04")]
    client.close()


@pytest.mark.parametrize("corruption", ["magic", "checksum"])
def test_malformed_messages_drop_the_connection(sim_phone: SimulatedPhone, pubkey: bytes, corruption: str) -> None:
    client = RawClient(sim_phone.port, version=p.VERSION_MIN)  # an old peer: its checksums are checked
    client.authenticate(pubkey)
    data = b"shell:echo hi\0"
    header = bytearray(p.pack_header(p.A_OPEN, 1, 0, data, with_checksum=True))
    field = 20 if corruption == "magic" else 16
    header[field] ^= 0x01
    client.sock.sendall(bytes(header) + data)
    assert client.read_exact(24) == b""  # closed by the phone, nothing answered
    client.close()
    again = RawClient(sim_phone.port)  # the phone itself keeps serving
    assert again.authenticate(pubkey).command == p.A_CNXN
    again.close()
