"""Errors between the host and a phone, all under :class:`pipeline.errors.DeviceError`.

Each error names the device (address or serial) and, where one exists, the file or command, and
ends with the next step. Facts travel as attributes (``err.command``, ``err.exit_code``, ...) and in
``err.facts`` so that programs can act on them without parsing the message.
"""

from __future__ import annotations

from typing import Any

from pipeline.errors import DeviceError

ENABLE_DEBUGGING_STEPS = (
    "On the phone: Settings > About phone > tap 'Build number' 7 times, then Settings > System > "
    "Developer options > enable 'USB debugging'. For a phone on Wi-Fi: connect it by USB once and run "
    "`adb tcpip 5555` (`adb connect PHONE_IP:5555` checks it), then pass --device PHONE_IP:5555. "
    "The TLS port of Android 11+ 'Wireless debugging' is not supported; use `adb tcpip 5555`."
)


class DeviceNotFoundError(DeviceError):
    """No phone answers at the address, serial or name that was given."""


class AuthorizationError(DeviceError):
    """The phone refused our RSA key or has not answered the USB debugging prompt yet."""


class UsbUnavailableError(DeviceError):
    """USB support (libusb1) is missing, or another program (an `adb server`) holds the phone."""


class AdbKeyError(DeviceError):
    """The adb RSA key cannot be read or created."""


class ConnectionLostError(DeviceError):
    """The connection dropped and reconnecting did not help within the retry budget."""


class DeviceTimeoutError(DeviceError):
    """A command or transfer did not finish within its timeout."""


class ShellError(DeviceError):
    """A shell command on the phone exited with a non-zero status (or printed an error)."""

    def __init__(
        self,
        message: str,
        *,
        command: str,
        stdout: str,
        exit_code: int | None,
        serial: str | None,
        next_step: str | None = None,
        **facts: Any,
    ) -> None:
        self.command = command
        self.stdout = stdout
        self.exit_code = exit_code
        self.serial = serial
        super().__init__(
            message, next_step=next_step, command=command, stdout=stdout, exit_code=exit_code,
            serial=serial, **facts,
        )


class TransferError(DeviceError):
    """A push or pull failed (missing file, no permission, the phone refused the write)."""


class RemoteFileNotFoundError(TransferError):
    """A file that should exist on the phone does not."""


class DeviceStorageFullError(TransferError):
    """The phone has no space left for a pushed file."""


class PushVerificationError(TransferError):
    """The sha256 of a pushed file on the phone differs from the local file's, twice."""


class InstallError(DeviceError):
    """`pm install` refused an APK."""


class AppStartError(DeviceError):
    """`am start` could not start the activity."""


class UnexpectedOutputError(DeviceError):
    """The phone printed something the parser does not understand (names the command and shows the text)."""


class UnsupportedFeatureError(DeviceError):
    """The phone does not offer what was asked (for example no thermal service on old Android)."""


__all__ = [
    "ENABLE_DEBUGGING_STEPS",
    "AdbKeyError",
    "AppStartError",
    "AuthorizationError",
    "ConnectionLostError",
    "DeviceError",
    "DeviceNotFoundError",
    "DeviceStorageFullError",
    "DeviceTimeoutError",
    "InstallError",
    "PushVerificationError",
    "RemoteFileNotFoundError",
    "ShellError",
    "TransferError",
    "UnexpectedOutputError",
    "UnsupportedFeatureError",
    "UsbUnavailableError",
]
