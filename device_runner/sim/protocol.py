"""The ADB wire format, device side: message header, checksum, sync sub-protocol records, RSA keys.

Every ADB message is a 24-byte little-endian header (command, arg0, arg1, data_length,
data_crc32, magic) followed by ``data_length`` bytes. ``magic`` is ``command ^ 0xffffffff``.
``data_crc32`` is, despite its name, the plain sum of the payload bytes; peers that announce
protocol version 0x01000001 or later skip it (send 0 and ignore it), older peers (adb-shell
announces 0x01000000) verify it, so the sender computes it for them.

The ``sync:`` service speaks 8-byte records (4-byte id, 4-byte length or argument) inside the
stream's byte flow; records may straddle WRTE packets.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass

HEADER_FORMAT = "<6I"
HEADER_SIZE = struct.calcsize(HEADER_FORMAT)  # 24

VERSION_MIN = 0x01000000
VERSION_SKIP_CHECKSUM = 0x01000001
DEVICE_VERSION = VERSION_SKIP_CHECKSUM
DEVICE_MAX_PAYLOAD_BYTES = 256 * 1024
SYNC_DATA_MAX_BYTES = 64 * 1024

AUTH_TOKEN = 1
AUTH_SIGNATURE = 2
AUTH_RSAPUBLICKEY = 3
TOKEN_BYTES = 20


def _cmd(name: bytes) -> int:
    return struct.unpack("<I", name)[0]


A_SYNC = _cmd(b"SYNC")
A_CNXN = _cmd(b"CNXN")
A_AUTH = _cmd(b"AUTH")
A_OPEN = _cmd(b"OPEN")
A_OKAY = _cmd(b"OKAY")
A_CLSE = _cmd(b"CLSE")
A_WRTE = _cmd(b"WRTE")
A_STLS = _cmd(b"STLS")
COMMAND_NAMES = {A_SYNC: "SYNC", A_CNXN: "CNXN", A_AUTH: "AUTH", A_OPEN: "OPEN", A_OKAY: "OKAY",
                 A_CLSE: "CLSE", A_WRTE: "WRTE", A_STLS: "STLS"}

# sync sub-protocol ids
ID_STAT = b"STAT"
ID_LIST = b"LIST"
ID_SEND = b"SEND"
ID_RECV = b"RECV"
ID_QUIT = b"QUIT"
ID_DENT = b"DENT"
ID_DATA = b"DATA"
ID_DONE = b"DONE"
ID_OKAY = b"OKAY"
ID_FAIL = b"FAIL"


class ProtocolError(Exception):
    """A malformed message from the peer; the connection is dropped, as adbd does."""


def checksum(data: bytes | bytearray | memoryview) -> int:
    """Sum of the payload bytes modulo 2**32 (what the header calls ``data_crc32``)."""
    if len(data) < 4096:
        return sum(bytes(data)) & 0xFFFFFFFF
    import numpy as np  # fast path for large payloads; numpy is light and already a dependency

    return int(np.frombuffer(data, dtype=np.uint8).sum(dtype=np.uint64)) & 0xFFFFFFFF


@dataclass(frozen=True)
class Message:
    """One decoded ADB message."""

    command: int
    arg0: int
    arg1: int
    data: bytes = b""

    @property
    def name(self) -> str:
        return COMMAND_NAMES.get(self.command, f"0x{self.command:08x}")


def pack_header(command: int, arg0: int, arg1: int, data: bytes | memoryview, *, with_checksum: bool) -> bytes:
    """The 24-byte header for ``data``; the checksum is 0 when the peer skips it."""
    crc = checksum(data) if (with_checksum and len(data)) else 0
    return struct.pack(HEADER_FORMAT, command, arg0 & 0xFFFFFFFF, arg1 & 0xFFFFFFFF, len(data), crc,
                       command ^ 0xFFFFFFFF)


def pack_message(msg: Message, *, with_checksum: bool = True) -> bytes:
    return pack_header(msg.command, msg.arg0, msg.arg1, msg.data, with_checksum=with_checksum) + msg.data


def unpack_header(header: bytes) -> tuple[int, int, int, int, int]:
    """Decode a header: (command, arg0, arg1, data_length, data_checksum); raises ProtocolError."""
    if len(header) != HEADER_SIZE:
        raise ProtocolError(f"short ADB header ({len(header)} of {HEADER_SIZE} bytes)")
    command, arg0, arg1, length, crc, magic = struct.unpack(HEADER_FORMAT, header)
    if magic != command ^ 0xFFFFFFFF:
        raise ProtocolError(f"bad magic 0x{magic:08x} for command 0x{command:08x}")
    return command, arg0, arg1, length, crc


def sync_record(ident: bytes, value: int, data: bytes = b"") -> bytes:
    """An 8-byte sync record header plus its data (``value`` is the length or an argument)."""
    return ident + struct.pack("<I", value) + data


def sync_fail(message: str) -> bytes:
    raw = message.encode()
    return sync_record(ID_FAIL, len(raw), raw)


# --- RSA keys as adb stores them --------------------------------------------------------------

_SHA1_DIGEST_INFO = bytes.fromhex("3021300906052b0e03021a05000414")


@dataclass(frozen=True)
class AdbPublicKey:
    """An Android-format RSA public key (the base64 blob in ``adbkey.pub``)."""

    modulus: int
    exponent: int
    blob_b64: str

    @property
    def fingerprint(self) -> str:
        return hashlib.md5(base64.b64decode(self.blob_b64)).hexdigest()  # what Android shows in the prompt

    def verify(self, token: bytes, signature: bytes) -> bool:
        """True when ``signature`` is PKCS#1 v1.5 over ``token`` taken as a SHA-1 digest (adb's scheme)."""
        size = (self.modulus.bit_length() + 7) // 8
        if len(signature) != size:
            return False
        em = pow(int.from_bytes(signature, "big"), self.exponent, self.modulus).to_bytes(size, "big")
        expected_tail = b"\x00" + _SHA1_DIGEST_INFO + token
        padding_len = size - len(expected_tail) - 2
        return padding_len >= 8 and em == b"\x00\x01" + b"\xff" * padding_len + expected_tail


def parse_public_key(text: bytes | str) -> AdbPublicKey:
    """Parse ``base64blob [user@host]`` (NUL-terminated on the wire); raises ValueError."""
    if isinstance(text, bytes):
        text = text.split(b"\0", 1)[0].decode("ascii", "replace")
    parts = text.strip().split()
    if not parts:
        raise ValueError("empty public key")
    blob = base64.b64decode(parts[0], validate=False)
    if len(blob) < 12:
        raise ValueError("public key too short")
    words = struct.unpack_from("<I", blob, 0)[0]
    nbytes = words * 4
    if len(blob) < 8 + 2 * nbytes + 4:
        raise ValueError("public key truncated")
    modulus = int.from_bytes(blob[8:8 + nbytes], "little")
    exponent = struct.unpack_from("<I", blob, 8 + 2 * nbytes)[0]
    return AdbPublicKey(modulus=modulus, exponent=exponent, blob_b64=parts[0])


def read_keys_file(text: str) -> list[AdbPublicKey]:
    """Keys from an ``adb_keys``-style file (one per line); unreadable lines are skipped."""
    keys = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            try:
                keys.append(parse_public_key(line))
            except (ValueError, struct.error):
                continue
    return keys
