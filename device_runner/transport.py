"""The wire to a phone: adb-shell over TCP or USB, with adb-shell's TCP write bug fixed.

Two layers:

* :class:`FullWriteTcpTransport` is an adb-shell ``BaseTransport`` for TCP. adb-shell's own
  ``TcpTransport.bulk_write`` does one non-blocking ``send()`` and ignores a partial write, so the
  rest of a large packet is silently dropped and a push of a few MB hangs (upstream issue "Pushing
  large files always timeouts"). This one sends every byte (``sendall`` semantics with a timeout
  that counts from the last progress), and it reports a peer that closed the socket as a lost
  connection instead of spinning on empty reads until a timeout.
* :class:`AdbTransport` wraps adb-shell's ``AdbDevice`` and is what :class:`device_runner.device.Device`
  talks to (``open``, ``close``, ``shell``, ``push``, ``pull``, ``stat``). It translates adb-shell's
  exceptions into this project's errors: a dropped connection becomes :class:`ConnectionLostError`
  (the Device reconnects and retries), a refused key :class:`AuthorizationError`, and so on. Tests
  can put any object with the same methods in its place (see ``Transport``).

Speed: adb-shell offers protocol version 0x01000000 and sums every byte of every message in Python
(about 150 MB/s of CPU). :class:`AdbTransport` swaps in a subclass of adb-shell's I/O manager that
offers 0x01000001 like Google's adb, so a phone that supports it (adbd since Android 9; the
simulated phone too) skips checksums both ways; older phones still get checked ones (summed with
numpy). Measured with ``benchmarks/bench_transport.py`` (50 MiB, simulated phone, 2 shared cores),
push went from about 11x slower than Debian's adb to about 1x, pull from about 6x to 0.4-1.4x.

USB needs the ``usb`` extra (libusb1); only :meth:`AdbTransport.open` of a ``usb`` address imports it.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from adb_shell.exceptions import TcpTimeoutException
from adb_shell.transport.tcp_transport import TcpTransport

from device_runner.errors import (
    ENABLE_DEBUGGING_STEPS,
    AuthorizationError,
    ConnectionLostError,
    DeviceNotFoundError,
    DeviceTimeoutError,
    RemoteFileNotFoundError,
    TransferError,
    UsbUnavailableError,
)

Progress = Callable[[int, int], None]  # (bytes_done, bytes_total)

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_AUTH_TIMEOUT_S = 30.0
AUTH_PROMPT_STEP = (
    "accept the USB debugging prompt on the phone (tick 'Always allow from this computer'), then try again. "
    "If no prompt shows, revoke USB debugging authorisations in Developer options and reconnect."
)
USB_EXTRA_STEP = "pip install 'vit-palette-bench[usb]'"
ADB_SERVER_STEP = (
    "A running `adb server` holds the USB device: run `adb kill-server` (or use the phone over TCP "
    "after `adb tcpip 5555`) and try again."
)


class Transport(Protocol):
    """What Device needs from a wire. ``AdbTransport`` is the real one; tests may script their own.

    Methods raise :class:`ConnectionLostError` for a dropped connection (Device then calls ``open``
    again and retries). An optional ``is_open`` attribute tells Device whether to ``open`` first
    (taken as True when absent). ``stat`` returns ``(mode, size_bytes, mtime)``, mode 0 = missing.
    """

    address: str

    def open(self, timeout_s: float) -> None: ...

    def close(self) -> None: ...

    def shell(self, command: str, timeout_s: float) -> bytes: ...

    def push(self, local: Path, remote: str, progress: Progress | None, timeout_s: float) -> None: ...

    def pull(self, remote: str, local: Path, progress: Progress | None, timeout_s: float) -> None: ...

    def stat(self, remote: str, timeout_s: float) -> tuple[int, int, int]: ...


class PeerClosedError(ConnectionResetError):
    """The phone (or the network) closed the TCP connection."""


class FullWriteTcpTransport(TcpTransport):
    """adb-shell's TCP transport with whole writes and EOF detection.

    ``sock``: an already-connected socket (tests use a socketpair); ``connect`` then keeps it.
    """

    def __init__(self, host: str, port: int = 5555, *, sock: socket.socket | None = None) -> None:
        super().__init__(host, port)
        self._given_sock = sock
        if sock is not None:
            sock.setblocking(False)
            self._connection = sock

    def connect(self, transport_timeout_s: float | None) -> None:
        if self._given_sock is not None:
            self._connection = self._given_sock
            return
        timeout = transport_timeout_s if transport_timeout_s else DEFAULT_TIMEOUT_S
        conn = socket.create_connection((self._host, self._port), timeout=timeout)
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        conn.setblocking(False)
        self._connection = conn

    def bulk_write(self, data: bytes, transport_timeout_s: float | None) -> int:
        """Send all of ``data``; raise ``TcpTimeoutException`` after ``transport_timeout_s`` without progress."""
        conn = self._require()
        view = memoryview(data)
        total = len(view)
        sent = 0
        timeout = transport_timeout_s if transport_timeout_s else None
        last_progress = time.monotonic()
        while sent < total:
            wait = None if timeout is None else max(0.0, timeout - (time.monotonic() - last_progress))
            _, writable, _ = select.select([], [conn], [], wait)
            if not writable:
                raise TcpTimeoutException(
                    f"Sending data to {self._host}:{self._port} timed out after {timeout} s "
                    f"({sent} of {total} bytes sent)"
                )
            try:
                n = conn.send(view[sent:])
            except (BlockingIOError, InterruptedError):
                continue
            if n:
                sent += n
                last_progress = time.monotonic()
        return total

    def bulk_read(self, numbytes: int, transport_timeout_s: float | None) -> bytes:
        conn = self._require()
        while True:
            readable, _, _ = select.select([conn], [], [], transport_timeout_s or None)
            if not readable:
                raise TcpTimeoutException(
                    f"Reading from {self._host}:{self._port} timed out ({transport_timeout_s} s)"
                )
            try:
                data = conn.recv(numbytes)
            except (BlockingIOError, InterruptedError):
                continue
            if not data:
                raise PeerClosedError(errno.ECONNRESET, f"{self._host}:{self._port} closed the connection")
            return data

    def _require(self) -> socket.socket:
        if self._connection is None:
            raise PeerClosedError(errno.ENOTCONN, f"not connected to {self._host}:{self._port}")
        return self._connection


# --------------------------------------------------------------------------------------------- wire speed

VERSION_SKIP_CHECKSUM = 0x01000001  # adb protocol version from which peers send checksum 0


def adb_checksum(data: bytes | bytearray | memoryview) -> int:
    """The ADB message checksum (sum of the bytes, 32 bit), with numpy: adb-shell's ``sum(data)``
    costs about 6 ns a byte, which caps a transfer near 150 MB/s of CPU on its own."""
    if len(data) < 4096:
        return sum(bytes(data)) & 0xFFFFFFFF
    import numpy as np

    return int(np.frombuffer(data, dtype=np.uint8).sum(dtype=np.uint64)) & 0xFFFFFFFF


def _fast_io_manager_class():
    """A subclass of adb-shell's private I/O manager that (1) offers protocol version 0x01000001 so
    that a phone which supports it (adbd since Android 9) skips checksums both ways, as Google's
    adb does, (2) verifies received checksums only when the phone sent one, with a fast sum, and
    (3) sends header and payload in one write over TCP. None if adb-shell's internals changed."""
    try:
        import struct

        from adb_shell import constants
        from adb_shell import exceptions as ex
        from adb_shell.adb_device import _AdbIOManager
        from adb_shell.adb_message import AdbMessage, int_to_cmd, unpack
    except ImportError:  # pragma: no cover - a future adb-shell
        return None
    needed = ("_send", "_read_packet_from_device", "_read_bytes_from_device",
              "_read_expected_packet_from_device", "_transport_lock", "_store_lock", "_packet_store")
    probe = _AdbIOManager.__init__.__code__.co_names + tuple(vars(_AdbIOManager))
    if not all(name in probe for name in needed):  # pragma: no cover - a future adb-shell
        return None

    class FastIOManager(_AdbIOManager):
        skip_checksum = False

        def connect(self, banner, rsa_keys, auth_timeout_s, auth_callback, adb_info):
            with self._transport_lock:
                self._transport.close()
                with self._store_lock:
                    self._packet_store.clear_all()
                self._transport.connect(adb_info.transport_timeout_s)
                self.skip_checksum = False
                hello = AdbMessage(constants.CNXN, VERSION_SKIP_CHECKSUM, constants.MAX_ADB_DATA,
                                   b"host::%s\0" % bytes(banner))
                self._send(hello, adb_info)
                cmd, arg0, arg1, data = self._read_expected_packet_from_device(
                    [constants.AUTH, constants.CNXN], adb_info)
                if cmd == constants.CNXN:
                    return self._online(arg0, arg1)
                if not rsa_keys:
                    self._transport.close()
                    raise ex.DeviceAuthError("Device authentication required, no keys available.")
                for key in rsa_keys:
                    if arg0 != constants.AUTH_TOKEN:
                        self._transport.close()
                        raise ex.InvalidResponseError(f"Unknown AUTH response: {arg0} {arg1} {data!r}")
                    self._send(AdbMessage(constants.AUTH, constants.AUTH_SIGNATURE, 0, key.Sign(data)), adb_info)
                    cmd, arg0, arg1, data = self._read_expected_packet_from_device(
                        [constants.CNXN, constants.AUTH], adb_info)
                    if cmd == constants.CNXN:
                        return self._online(arg0, arg1)
                # no key is trusted yet: offer ours; the phone shows "Allow USB debugging?"
                pubkey = rsa_keys[0].GetPublicKey()
                if not isinstance(pubkey, bytes | bytearray):
                    pubkey = pubkey.encode("utf-8")
                if auth_callback is not None:
                    auth_callback(self)
                self._send(AdbMessage(constants.AUTH, constants.AUTH_RSAPUBLICKEY, 0, bytes(pubkey) + b"\0"),
                           adb_info)
                adb_info.transport_timeout_s = auth_timeout_s
                _, arg0, arg1, _ = self._read_expected_packet_from_device([constants.CNXN], adb_info)
                return self._online(arg0, arg1)

        def _online(self, device_version: int, maxdata: int):
            self.skip_checksum = device_version >= VERSION_SKIP_CHECKSUM
            return True, maxdata

        def _send(self, msg, adb_info):
            data = msg.data or b""
            crc = 0 if (self.skip_checksum or not data) else adb_checksum(data)
            header = struct.pack(constants.MESSAGE_FORMAT, msg.command, msg.arg0, msg.arg1, len(data), crc,
                                 msg.magic)
            if data and isinstance(self._transport, FullWriteTcpTransport):
                self._transport.bulk_write(header + bytes(data), adb_info.transport_timeout_s)
                return
            self._transport.bulk_write(header, adb_info.transport_timeout_s)
            if data:  # USB: adbd reads the header and the payload as separate transfers
                self._transport.bulk_write(data, adb_info.transport_timeout_s)

        def _read_packet_from_device(self, adb_info):
            header = self._read_bytes_from_device(constants.MESSAGE_SIZE, adb_info)
            cmd, arg0, arg1, length, crc = unpack(header)
            command = constants.WIRE_TO_ID.get(cmd)
            if not command:
                raise ex.InvalidCommandError(
                    f"Unknown command: {cmd} = '{int_to_cmd(cmd)}' (arg0 = {arg0}, arg1 = {arg1})")
            if length == 0:
                return command, arg0, arg1, b""
            data = self._read_bytes_from_device(length, adb_info)
            if crc and adb_checksum(data) != crc:  # 0 = the phone skips checksums (version >= 0x01000001)
                raise ex.InvalidChecksumError(f"Received checksum {adb_checksum(data)} != {crc}")
            return command, arg0, arg1, data

    return FastIOManager


# --------------------------------------------------------------------------------------------- AdbTransport


_LOST_ERRNOS = {errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ECONNABORTED, errno.ETIMEDOUT,
                errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EBADF}


def _is_lost(err: BaseException) -> bool:
    """A connection-level failure (not a local file error, not a timeout)."""
    if isinstance(err, _lost_errors()):
        return True
    return isinstance(err, OSError) and err.errno in _LOST_ERRNOS and not isinstance(err, TimeoutError)


def _lost_errors() -> tuple[type[BaseException], ...]:
    from adb_shell import exceptions as ex

    return (
        ConnectionError,  # ConnectionResetError, BrokenPipeError, PeerClosedError, ...
        ex.AdbConnectionError,
        ex.InvalidChecksumError,
        ex.InvalidCommandError,
        ex.InvalidResponseError,
        ex.UsbReadFailedError,
        ex.UsbWriteFailedError,
    )


def _timeout_errors() -> tuple[type[BaseException], ...]:
    from adb_shell import exceptions as ex

    return (TcpTimeoutException, ex.AdbTimeoutError, socket.timeout, TimeoutError)


class AdbTransport:
    """One phone over adb-shell. ``address``: ``host:port``, ``usb`` (first phone) or ``usb:SERIAL``.

    ``signer``: an adb-shell signer; by default the user's ``~/.android/adbkey`` (created if missing).
    """

    def __init__(
        self,
        address: str,
        *,
        signer: object | None = None,
        key_path: Path | None = None,
        auth_timeout_s: float = DEFAULT_AUTH_TIMEOUT_S,
        banner: str | None = None,
    ) -> None:
        from device_runner.profiles import parse_tcp_address

        self.address = address
        self._signer = signer
        self._key_path = key_path
        self._auth_timeout_s = auth_timeout_s
        self._banner = banner or "vit-palette-bench"
        self.fast_wire = True  # False: adb-shell's own handshake and checksums (for comparison)
        self._adb = None
        tcp = parse_tcp_address(address)
        if tcp is not None:
            self.kind = "tcp"
            self.host, self.port = tcp
            self.serial: str | None = None
        elif address == "usb" or address.startswith("usb:"):
            self.kind = "usb"
            self.host, self.port = "", 0
            self.serial = address[4:] if address.startswith("usb:") and address[4:] else None
        else:
            raise DeviceNotFoundError(
                f"device address {address!r} is neither host:port nor usb:SERIAL",
                next_step=ENABLE_DEBUGGING_STEPS,
                device=address,
            )

    # ------------------------------------------------------------------ connection

    @property
    def is_open(self) -> bool:
        return self._adb is not None and bool(self._adb.available)

    def open(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        """Connect and authenticate (closing any earlier connection first)."""
        from adb_shell.adb_device import AdbDevice

        self.close()
        signer = self._signer
        if signer is None:
            from device_runner.keys import load_signer

            signer = self._signer = load_signer(self._key_path)
        transport = self._make_wire(timeout_s)
        adb = AdbDevice(transport, default_transport_timeout_s=timeout_s, banner=self._banner)
        fast = _fast_io_manager_class() if self.fast_wire else None
        if fast is not None and hasattr(adb, "_io_manager"):
            adb._io_manager = fast(transport)
        prompted: list[bool] = []
        try:
            adb.connect(
                rsa_keys=[signer],
                transport_timeout_s=timeout_s,
                auth_timeout_s=self._auth_timeout_s,
                read_timeout_s=timeout_s,
                auth_callback=lambda _dev: prompted.append(True),
            )
        except Exception as err:  # noqa: BLE001 - translated below, original chained
            try:
                adb.close()
            except Exception:  # noqa: BLE001
                pass
            raise self._connect_error(err, prompted=bool(prompted)) from err
        self._adb = adb

    def _make_wire(self, timeout_s: float):
        if self.kind == "tcp":
            return FullWriteTcpTransport(self.host, self.port)
        try:
            from adb_shell.transport.usb_transport import UsbTransport
        except ImportError:
            raise UsbUnavailableError(
                f"USB support is not installed, so {self.address!r} cannot be reached",
                next_step=f"Install it with `{USB_EXTRA_STEP}` (needs libusb-1.0 on the system), or use the "
                "phone over TCP after `adb tcpip 5555`.",
                device=self.address,
            ) from None
        except Exception as err:  # noqa: BLE001 - usb1 raises OSError without the libusb-1.0 library
            raise UsbUnavailableError(
                f"USB support cannot start, so {self.address!r} cannot be reached ({type(err).__name__}: {err})",
                next_step="Install the libusb-1.0 library (Debian: `apt-get install libusb-1.0-0`) and "
                f"`{USB_EXTRA_STEP}`, or use the phone over TCP after `adb tcpip 5555`.",
                device=self.address,
            ) from None
        from adb_shell import exceptions as ex

        try:
            return UsbTransport.find_adb(self.serial, None, timeout_s)
        except ex.UsbDeviceNotFoundError:
            found = self.list_usb_serials()
            raise DeviceNotFoundError(
                f"no phone with USB debugging found on USB{' with serial ' + self.serial if self.serial else ''}"
                f" (phones seen: {', '.join(found) or 'none'})",
                next_step=ENABLE_DEBUGGING_STEPS,
                device=self.address,
                seen=found,
            ) from None

    @staticmethod
    def list_usb_serials() -> list[str]:
        try:
            from adb_shell.transport.usb_transport import UsbTransport

            return [t.serial_number for t in UsbTransport.find_all_adb_devices()]
        except Exception:  # noqa: BLE001 - listing is only for the message
            return []

    def _connect_error(self, err: BaseException, *, prompted: bool) -> Exception:
        from adb_shell import exceptions as ex

        where = self.address
        if isinstance(err, ex.DeviceAuthError) or (prompted and (_is_lost(err) or isinstance(err, _timeout_errors()))):
            return AuthorizationError(
                f"{where} did not accept this computer's adb key", next_step=AUTH_PROMPT_STEP, device=where,
            )
        text = f"{type(err).__name__}: {err}"
        if "STLS" in text:
            from device_runner.errors import UnsupportedFeatureError

            return UnsupportedFeatureError(
                f"{where} asks for a TLS connection (the port of Android 11+ 'Wireless debugging'), which "
                "the adb-shell client cannot speak",
                next_step="Connect the phone by USB once and run `adb tcpip 5555`, then use --device PHONE_IP:5555.",
                device=where,
            )
        if self.kind == "usb" and ("BUSY" in text.upper() or "ACCESS" in text.upper()):
            if "ACCESS" in text.upper():
                step = ("No permission to open the USB device: install the udev rules (Debian: "
                        "`apt-get install android-sdk-platform-tools-common`) and replug the phone. " + ADB_SERVER_STEP)
            else:
                step = ADB_SERVER_STEP
            return UsbUnavailableError(f"cannot open {where} over USB ({text})", next_step=step, device=where)
        if isinstance(err, ConnectionRefusedError | socket.gaierror) or (
            isinstance(err, OSError) and err.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH)
        ):
            return DeviceNotFoundError(
                f"nothing answers at {where} ({text})", next_step=ENABLE_DEBUGGING_STEPS, device=where
            )
        if isinstance(err, _timeout_errors()):
            return DeviceNotFoundError(
                f"{where} did not answer in time ({text})", next_step=ENABLE_DEBUGGING_STEPS, device=where
            )
        if _is_lost(err):
            return ConnectionLostError(
                f"the connection to {where} dropped while connecting ({text})",
                next_step="Check the cable or Wi-Fi, then try again.", device=where,
            )
        return DeviceNotFoundError(f"cannot connect to {where} ({text})", next_step=ENABLE_DEBUGGING_STEPS,
                                   device=where)

    def close(self) -> None:
        adb, self._adb = self._adb, None
        if adb is not None:
            try:
                adb.close()
            except Exception:  # noqa: BLE001 - closing a dead connection may fail; nothing to do
                pass

    def _device(self):
        if self._adb is None:
            raise ConnectionLostError(f"not connected to {self.address}", next_step="Reconnect.",
                                      device=self.address)
        return self._adb

    def _run(self, what: str, fn: Callable[[], object], timeout_s: float) -> object:
        """Run an adb-shell call, translating its errors; a failed connection is closed."""
        from adb_shell import exceptions as ex

        try:
            return fn()
        except (ex.AdbCommandFailureException, ex.PushFailedError, ex.DevicePathInvalidError):
            raise
        except _timeout_errors() as err:
            self.close()
            raise DeviceTimeoutError(
                f"{what} on {self.address} did not finish within {timeout_s:g} s",
                next_step="Give a longer --timeout, or check that the phone is awake and connected.",
                device=self.address, timeout_s=timeout_s,
            ) from err
        except Exception as err:
            if not _is_lost(err):
                raise
            self.close()
            raise ConnectionLostError(
                f"the connection to {self.address} dropped during {what} ({type(err).__name__}: {err})",
                next_step="Check the cable or Wi-Fi and try again.", device=self.address,
            ) from err

    # ------------------------------------------------------------------ services

    def shell(self, command: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bytes:
        adb = self._device()
        return self._run(  # type: ignore[return-value]
            f"`{command[:80]}`",
            lambda: adb.shell(command, transport_timeout_s=timeout_s, read_timeout_s=timeout_s,
                              timeout_s=timeout_s, decode=False),
            timeout_s,
        )

    def stat(self, remote: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[int, int, int]:
        adb = self._device()
        return self._run(  # type: ignore[return-value]
            f"stat {remote}", lambda: tuple(adb.stat(remote, transport_timeout_s=timeout_s,
                                                     read_timeout_s=timeout_s)), timeout_s)

    def push(self, local: Path, remote: str, progress: Progress | None = None,
             timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        """Push one file. ``timeout_s`` is the longest pause without progress, not the whole transfer."""
        from adb_shell import exceptions as ex

        adb = self._device()
        total = os.path.getsize(local)
        done = [0]

        def cb(_path: str, n: int, _total: int) -> None:
            done[0] += n
            if progress is not None:
                progress(done[0], total)

        mode = 0o100000 | (os.stat(local).st_mode & 0o777 or 0o644)
        try:
            self._run(f"push of {local}", lambda: adb.push(str(local), remote, st_mode=mode, progress_callback=cb,
                                                            transport_timeout_s=timeout_s,
                                                            read_timeout_s=max(timeout_s, 10.0)), timeout_s)
        except (ex.AdbCommandFailureException, ex.PushFailedError) as err:
            text = err.args[0] if err.args else str(err)
            if isinstance(text, bytes | bytearray):
                text = bytes(text).decode("utf-8", "replace")
            raise _transfer_error("push", str(local), remote, str(text), self.address) from err

    def pull(self, remote: str, local: Path, progress: Progress | None = None,
             timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        """Pull one file into ``local`` (the caller chooses a temporary name and renames it)."""
        from adb_shell import exceptions as ex

        adb = self._device()
        done = [0]

        def cb(_path: str, n: int, total: int) -> None:  # adb-shell stats the file first for `total`
            done[0] += n
            if progress is not None:
                progress(done[0], total)

        try:
            self._run(f"pull of {remote}", lambda: adb.pull(remote, str(local),
                                                             progress_callback=cb if progress else None,
                                                             transport_timeout_s=timeout_s,
                                                             read_timeout_s=max(timeout_s, 10.0)), timeout_s)
        except ex.AdbCommandFailureException as err:
            raise _transfer_error("pull", remote, str(local), str(err), self.address) from err


def _transfer_error(kind: str, src: str, dst: str, text: str, device: str) -> TransferError:
    from device_runner.errors import DeviceStorageFullError

    low = text.lower()
    if "no space" in low or "enospc" in low:
        return DeviceStorageFullError(
            f"{device} has no space left for {dst} ({text.strip()})",
            next_step="Free space on the phone (delete old models under /data/local/tmp) and try again.",
            device=device, path=dst,
        )
    if "no such file" in low or "not found" in low:
        missing = src if kind == "pull" else dst
        return RemoteFileNotFoundError(
            f"{missing} does not exist on {device}" if kind == "pull"
            else f"cannot create {dst} on {device}: its folder does not exist ({text.strip()})",
            next_step="Check the path (`python -m device_runner --device ... shell ls -l DIR`).",
            device=device, path=missing,
        )
    return TransferError(
        f"{kind} of {src} to {dst} on {device} failed: {text.strip()}",
        next_step="Check the path and its permissions on the phone (/data/local/tmp is writable by adb).",
        device=device, path=dst,
    )


def connect(address: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, signer: object | None = None,
            auth_timeout_s: float = DEFAULT_AUTH_TIMEOUT_S) -> AdbTransport:
    """An open :class:`AdbTransport` to ``address`` (``host:port``, ``usb``, ``usb:SERIAL``)."""
    transport = AdbTransport(address, signer=signer, auth_timeout_s=auth_timeout_s)
    transport.open(timeout_s)
    return transport
