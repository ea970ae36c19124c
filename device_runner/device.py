"""``Device``: one phone behind an injected transport (adb-shell over TCP/USB, or anything alike).

What the rest of the project calls: shell with an exit code, verified pushes, atomic pulls,
properties, battery, thermal status, power rails, packages, app start / force-stop. Every method
takes ``timeout_s``. A dropped connection is reconnected and the operation retried up to
``retries`` times, then :class:`ConnectionLostError` is raised.

Files never appear half-written under their final name: a push goes to a temporary name in the
target folder, is checked with ``sha256sum`` on the phone, and only then ``mv``-ed into place; a pull
goes to a temporary local name and is ``os.replace``-d into place.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import secrets
import shlex
import stat as stat_mod
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from device_runner import parsers
from device_runner.errors import (
    AppStartError,
    ConnectionLostError,
    DeviceNotFoundError,
    DeviceTimeoutError,
    InstallError,
    PushVerificationError,
    RemoteFileNotFoundError,
    ShellError,
    TransferError,
    UnexpectedOutputError,
)
from device_runner.parsers import AmStartResult, RailEnergy, ThermalService
from device_runner.profiles import DeviceProfile, EnergyMethod, get_profile, profile_for_properties
from device_runner.transport import Progress, Transport

EXIT_MARKER = "__VPB_EXIT__"
DEFAULT_TIMEOUT_S = 30.0
UEVENT_PATH = "/sys/class/power_supply/battery/uevent"
IPOWERSTATS_SERVICE = "android.hardware.power.stats.IPowerStats/default"
HASH_CHUNK_BYTES = 1 << 20


# --------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ShellResult:
    """A finished shell command. ``stdout`` holds stdout and stderr together (adb's shell protocol v1
    merges them), without the exit-status marker."""

    command: str
    exit_code: int
    stdout: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True)
class DeviceProperties:
    model: str | None
    manufacturer: str | None
    brand: str | None
    device: str | None  # product device code name, e.g. "shiba"
    soc: str | None  # ro.soc.model, else ro.board.platform, else ro.hardware
    soc_manufacturer: str | None
    abi: str | None
    android_version: str | None
    sdk_int: int | None
    serial: str | None
    fingerprint: str | None
    simulated: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BatteryStatus:
    """Battery with units in names. ``current_ua``: Android convention (negative = discharging),
    already normalised by the device profile; None when the phone does not expose it."""

    level_pct: int | None
    status: str  # charging | discharging | not_charging | full | unknown
    plugged: str | None  # ac | usb | wireless | dock | None (on battery)
    current_ua: int | None
    voltage_mv: int | None
    charge_counter_uah: int | None
    temperature_c: float | None
    energy_counter_nwh: int | None
    source: str  # which commands the values came from

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PushResult:
    remote: str
    size_bytes: int
    sha256: str
    attempts: int
    elapsed_s: float


@dataclass(frozen=True)
class PullResult:
    local: Path
    size_bytes: int
    elapsed_s: float


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(HASH_CHUNK_BYTES), b""):
            h.update(chunk)
    return h.hexdigest()


def _q(text: str) -> str:
    return shlex.quote(text)


def wrap_with_exit_marker(command: str) -> str:
    """``command; echo "MARKER$?"``: adb-shell's shell service gives no exit status, so the command
    prints it. A trailing ``;`` is dropped and a trailing ``&`` kept (``cmd &; echo`` is a syntax error)."""
    cmd = command.rstrip()
    if cmd.endswith(";") and not cmd.endswith(";;"):
        cmd = cmd[:-1].rstrip()
    sep = " " if cmd.endswith("&") and not cmd.endswith("&&") else "; "
    return f'{cmd}{sep}echo "{EXIT_MARKER}$?"'


# --------------------------------------------------------------------------------------------- Device


class Device:
    """One phone. ``transport`` is injected (``AdbTransport`` or a test double); it may be closed, the
    device opens it on first use and after a dropped connection."""

    def __init__(
        self,
        transport: Transport,
        *,
        serial: str | None = None,
        profile: DeviceProfile | str | None = None,
        retries: int = 2,
        connect_timeout_s: float = 10.0,
        retry_delay_s: float = 0.2,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.transport = transport
        self.serial = serial or getattr(transport, "address", None) or "device"
        self._profile = get_profile(profile) if isinstance(profile, str) else profile
        self.retries = retries
        self.connect_timeout_s = connect_timeout_s
        self.retry_delay_s = retry_delay_s
        self.reconnects = 0
        self._properties: DeviceProperties | None = None
        # adb-shell's device object is not thread-safe: one command (and one reconnect) at a time,
        # so a sampler thread and the main thread can share a Device
        self._lock = threading.RLock()

    @classmethod
    def connect(
        cls,
        address: str,
        *,
        timeout_s: float = 10.0,
        retries: int = 2,
        profile: DeviceProfile | str | None = None,
        signer: object | None = None,
        auth_timeout_s: float = 30.0,
    ) -> Device:
        """Connect to ``host:port``, ``usb`` or ``usb:SERIAL`` and return an open Device."""
        from device_runner.transport import AdbTransport

        transport = AdbTransport(address, signer=signer, auth_timeout_s=auth_timeout_s)
        serial = transport.serial or address
        dev = cls(transport, serial=serial, profile=profile, retries=retries, connect_timeout_s=timeout_s)
        dev._open_with_retries("connect")
        return dev

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _is_open(self) -> bool:
        return bool(getattr(self.transport, "is_open", True))

    def _open_with_retries(self, what: str) -> None:
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                self.transport.open(self.connect_timeout_s)
                return
            except (ConnectionLostError, DeviceTimeoutError) as err:
                last = err
            except DeviceNotFoundError as err:
                if what == "connect":
                    raise
                last = err  # the phone may be restarting adbd: retry within the budget
            time.sleep(self.retry_delay_s * (2**attempt))
        raise ConnectionLostError(
            f"cannot reach {self.serial} for {what} after {self.retries + 1} attempts ({last})",
            next_step="Check the cable or Wi-Fi and that the phone is awake, then try again.",
            device=self.serial,
        ) from last

    def _call(self, what: str, fn: Callable[[], Any], *, retry: bool = True) -> Any:
        """Run ``fn`` with the transport open; reconnect and rerun after a dropped connection."""
        with self._lock:
            return self._call_locked(what, fn, retry=retry)

    def _call_locked(self, what: str, fn: Callable[[], Any], *, retry: bool) -> Any:
        failures = 0
        while True:
            if not self._is_open():
                self._open_with_retries(what)
                if failures:
                    self.reconnects += 1
            try:
                return fn()
            except ConnectionLostError as err:
                failures += 1
                self.transport.close()
                if not retry or failures > self.retries:
                    raise ConnectionLostError(
                        f"lost the connection to {self.serial} during {what} "
                        f"({failures} time{'s' if failures > 1 else ''}; {err.message})",
                        next_step="Check the cable or Wi-Fi (a phone on Wi-Fi must stay awake), then try again."
                        if retry else "The command may have run on the phone; check its state before trying again.",
                        device=self.serial,
                    ) from err
                time.sleep(self.retry_delay_s * (2 ** (failures - 1)))

    @property
    def profile(self) -> DeviceProfile:
        if self._profile is None:
            self._profile = profile_for_properties(self.properties())
        return self._profile

    # ------------------------------------------------------------------ shell

    def shell(self, command: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, check: bool = False,
              retry: bool = True) -> ShellResult:
        """Run ``command`` in the phone's shell; the exit status comes from an appended ``echo $?``.

        ``check=True`` raises :class:`ShellError` for a non-zero exit status.
        """
        wrapped = wrap_with_exit_marker(command)

        def run() -> bytes:
            return self.transport.shell(wrapped, timeout_s)

        raw = self._call(f"`{command[:60]}`", run, retry=retry)
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else str(raw)
        text = text.replace("\r\n", "\n")
        idx = text.rfind(EXIT_MARKER)
        if idx < 0:
            raise UnexpectedOutputError(
                f"`{command}` on {self.serial} ended without reporting its exit status",
                next_step="The command may have called `exit` or been killed; run it without `exit`.",
                device=self.serial, command=command, output=text[-2000:],
            )
        tail = text[idx + len(EXIT_MARKER):].strip().splitlines()
        try:
            code = int(tail[0]) if tail else -1
        except ValueError:
            code = -1
        result = ShellResult(command=command, exit_code=code, stdout=text[:idx])
        if check:
            self._check(result)
        return result

    def _check(self, result: ShellResult, what: str | None = None, next_step: str | None = None) -> ShellResult:
        if result.exit_code != 0:
            out = result.stdout.strip()
            short = out.splitlines()[-1][:300] if out else "no output"
            raise ShellError(
                f"{what or '`' + result.command + '`'} failed on {self.serial} with exit code "
                f"{result.exit_code}: {short}",
                command=result.command, stdout=result.stdout, exit_code=result.exit_code, serial=self.serial,
                next_step=next_step or "Run the same command with `python -m device_runner --device "
                f"{self.serial} shell ...` to see the whole output.",
            )
        return result

    # ------------------------------------------------------------------ files

    def stat(self, remote: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[int, int, int] | None:
        """(mode, size_bytes, mtime) of a remote path, or None when it does not exist."""
        mode, size, mtime = self._call(f"stat {remote}", lambda: self.transport.stat(remote, timeout_s))
        if mode == 0:
            return None
        return mode, size, mtime

    def exists(self, remote: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
        return self.stat(remote, timeout_s=timeout_s) is not None

    def remove(self, remote: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.shell(f"rm -f {_q(remote)}", timeout_s=timeout_s, check=True)

    def makedirs(self, remote: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.shell(f"mkdir -p {_q(remote)}", timeout_s=timeout_s, check=True)

    def sha256(self, remote: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> str | None:
        """sha256 of a remote file via toybox ``sha256sum``; None when the file does not exist."""
        r = self.shell(f"sha256sum {_q(remote)}", timeout_s=timeout_s)
        digest = parsers.parse_sha256sum(r.stdout, remote)
        if digest is None and (r.exit_code != 0 or parsers.is_missing_file_message(r.stdout)):
            if parsers.is_missing_file_message(r.stdout):
                return None
            self._check(r, next_step="The phone's toybox may lack sha256sum (Android 6 or older).")
        if digest is None:
            raise UnexpectedOutputError(
                f"`sha256sum {remote}` on {self.serial} printed no hash",
                next_step="Report the output with --debug.", device=self.serial, output=r.stdout[:500],
            )
        return digest

    def read_text(self, remote: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> str:
        r = self.shell(f"cat {_q(remote)}", timeout_s=timeout_s)
        if r.exit_code != 0 and parsers.is_missing_file_message(r.stdout):
            raise RemoteFileNotFoundError(f"{remote} does not exist on {self.serial}",
                                          next_step="Check the path.", device=self.serial, path=remote)
        return self._check(r).stdout

    def _remote_target(self, local: Path, remote: str, timeout_s: float) -> str:
        if remote.endswith("/"):
            return remote + local.name
        st = self.stat(remote, timeout_s=timeout_s)
        if st is not None and stat_mod.S_ISDIR(st[0]):
            return posixpath.join(remote, local.name)
        return remote

    def push(self, local: str | os.PathLike[str], remote: str, *, progress: Progress | None = None,
             timeout_s: float = 60.0, verify: bool = True) -> PushResult:
        """Push ``local`` to ``remote`` (a file path, or a folder ending in ``/`` or existing).

        The file is written to a temporary name beside the target, its sha256 on the phone is
        compared with the local one (one retry on a mismatch, then :class:`PushVerificationError`),
        and it is then moved into place. ``progress(bytes_done, bytes_total)`` is called per chunk.
        ``timeout_s`` is the longest pause without progress.
        """
        local = Path(local)
        if not local.is_file():
            raise TransferError(f"{local} is not a file", next_step="Give the path of an existing file to push.",
                                path=str(local))
        started = time.monotonic()
        size = local.stat().st_size
        local_hash = sha256_file(local) if verify else ""
        target = self._remote_target(local, remote, timeout_s)
        folder, name = posixpath.split(target)
        attempts = 0
        remote_hash: str | None = None
        for attempt in (1, 2):
            attempts = attempt
            tmp = posixpath.join(folder or ".", f".{name}.partial-{secrets.token_hex(4)}")
            try:
                self._call(f"push of {local.name}",
                           lambda tmp=tmp: self.transport.push(local, tmp, progress, timeout_s))
                if not verify:
                    remote_hash = local_hash
                    break
                remote_hash = self.sha256(tmp, timeout_s=max(timeout_s, 30.0))
                if remote_hash == local_hash:
                    break
            except BaseException:
                self._cleanup(tmp)
                raise
            self._cleanup(tmp)
        else:
            raise PushVerificationError(
                f"push of {local} to {target} on {self.serial} arrived corrupted twice: local sha256 "
                f"{local_hash}, phone sha256 {remote_hash}; nothing was left at {target}",
                next_step="Check the cable or Wi-Fi and free space on the phone, then push again.",
                device=self.serial, path=str(local), remote=target, local_sha256=local_hash,
                remote_sha256=remote_hash,
            )
        try:
            self._check(self.shell(f"mv -f {_q(tmp)} {_q(target)}", timeout_s=timeout_s),
                        what=f"moving the pushed file into place at {target}")
        except BaseException:
            self._cleanup(tmp)
            raise
        return PushResult(remote=target, size_bytes=size, sha256=local_hash, attempts=attempts,
                          elapsed_s=time.monotonic() - started)

    def _cleanup(self, remote_tmp: str) -> None:
        """Best effort: remove a temporary remote file; one quick reconnect if the connection is gone."""
        try:
            if not self._is_open():
                self.transport.open(min(self.connect_timeout_s, 3.0))
            self.transport.shell(f"rm -f {_q(remote_tmp)}", 10.0)
        except Exception:  # noqa: BLE001 - cleanup must not hide the real error
            pass

    def pull(self, remote: str, local: str | os.PathLike[str], *, progress: Progress | None = None,
             timeout_s: float = 60.0) -> PullResult:
        """Pull ``remote`` into ``local`` (a file path or an existing folder), atomically."""
        started = time.monotonic()
        st = self.stat(remote, timeout_s=timeout_s)
        if st is None:
            raise RemoteFileNotFoundError(
                f"{remote} does not exist on {self.serial}",
                next_step=f"List the folder with `python -m device_runner --device {self.serial} shell ls -l "
                f"{posixpath.dirname(remote) or '/'}`.",
                device=self.serial, path=remote,
            )
        if stat_mod.S_ISDIR(st[0]):
            raise TransferError(f"{remote} on {self.serial} is a folder; pull takes one file",
                                next_step="Pull the files inside it one by one.", device=self.serial, path=remote)
        local = Path(local)
        if local.is_dir():
            local = local / posixpath.basename(remote)
        if not local.parent.is_dir():
            from pipeline.errors import OutputError

            raise OutputError(f"folder {local.parent} does not exist", next_step="Create it first.",
                              path=str(local))
        tmp = local.with_name(f".{local.name}.partial-{secrets.token_hex(4)}")
        try:
            self._call(f"pull of {remote}", lambda: self.transport.pull(remote, tmp, progress, timeout_s))
            got = tmp.stat().st_size
            if got != st[1]:
                raise TransferError(
                    f"pull of {remote} from {self.serial} got {got} of {st[1]} bytes",
                    next_step="Check the connection and pull again.", device=self.serial, path=remote,
                )
            os.replace(tmp, local)
        finally:
            if tmp.exists():
                tmp.unlink()
        return PullResult(local=local, size_bytes=st[1], elapsed_s=time.monotonic() - started)

    # ------------------------------------------------------------------ what the phone is

    def getprop(self, key: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> str | None:
        return parsers.parse_getprop_value(self.shell(f"getprop {_q(key)}", timeout_s=timeout_s, check=True).stdout)

    def properties(self, *, timeout_s: float = DEFAULT_TIMEOUT_S, refresh: bool = False) -> DeviceProperties:
        if self._properties is not None and not refresh:
            return self._properties
        props = parsers.parse_getprop(self.shell("getprop", timeout_s=timeout_s, check=True).stdout)
        if not props:
            raise UnexpectedOutputError(f"`getprop` on {self.serial} printed no properties",
                                        next_step="Report the output with --debug.", device=self.serial)

        def first(*keys: str) -> str | None:
            for k in keys:
                if props.get(k):
                    return props[k]
            return None

        sdk = first("ro.build.version.sdk")
        self._properties = DeviceProperties(
            model=first("ro.product.model", "ro.product.system.model", "ro.product.vendor.model"),
            manufacturer=first("ro.product.manufacturer", "ro.product.system.manufacturer",
                               "ro.product.vendor.manufacturer"),
            brand=first("ro.product.brand"),
            device=first("ro.product.device", "ro.product.vendor.device"),
            soc=first("ro.soc.model", "ro.board.platform", "ro.hardware"),
            soc_manufacturer=first("ro.soc.manufacturer"),
            abi=first("ro.product.cpu.abi"),
            android_version=first("ro.build.version.release_or_codename", "ro.build.version.release"),
            sdk_int=int(sdk) if sdk and sdk.isdigit() else None,
            serial=first("ro.serialno", "ro.boot.serialno") or self.serial,
            fingerprint=first("ro.build.fingerprint", "ro.vendor.build.fingerprint"),
            simulated=first("ro.vitpalette.simulated") in ("1", "true"),
        )
        return self._properties

    def battery(self, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> BatteryStatus:
        """``dumpsys battery`` (always allowed) plus the battery sysfs ``uevent`` when readable
        (current, energy); the current goes through the profile's unit/sign normalisation."""
        dump = parsers.parse_dumpsys_battery(
            self.shell("dumpsys battery", timeout_s=timeout_s, check=True).stdout)
        sources = ["dumpsys battery"]
        ev: dict[str, str] = {}
        r = self.shell(f"cat {UEVENT_PATH}", timeout_s=timeout_s)
        if r.ok:
            ev = parsers.parse_uevent(r.stdout)
            if ev:
                sources.append("sysfs uevent")
        status = (parsers.battery_status_word(dump.status_code) if dump.status_code is not None
                  else parsers.battery_status_word(ev.get("status")))
        if dump.ac_powered:
            plugged = "ac"
        elif dump.usb_powered:
            plugged = "usb"
        elif dump.wireless_powered:
            plugged = "wireless"
        elif dump.dock_powered:
            plugged = "dock"
        else:
            plugged = None
        raw_current = parsers._to_int(ev.get("current_now"))
        if raw_current is None:
            raw_current = dump.current_now_raw
        current_ua = self.profile.normalize_current_ua(raw_current, status) if raw_current is not None else None
        level = dump.level
        if level is not None and dump.scale and dump.scale != 100:
            level = round(level * 100 / dump.scale)
        voltage_mv = dump.voltage_mv
        if voltage_mv is None and ev.get("voltage_now"):
            voltage_mv = (parsers._to_int(ev["voltage_now"]) or 0) // 1000
        temp_decic = dump.temperature_decic
        if temp_decic is None:
            temp_decic = parsers._to_int(ev.get("temp"))
        charge = dump.charge_counter_uah
        if charge is None:
            charge = parsers._to_int(ev.get("charge_counter"))
        energy_nwh = None
        if ev.get("energy_counter") is not None:  # nWh (BatteryManager.BATTERY_PROPERTY_ENERGY_COUNTER)
            energy_nwh = parsers._to_int(ev["energy_counter"])
        elif ev.get("energy_now") is not None:  # Linux power_supply ABI: uWh
            e = parsers._to_int(ev["energy_now"])
            energy_nwh = e * 1000 if e is not None else None
        return BatteryStatus(
            level_pct=level, status=status, plugged=plugged, current_ua=current_ua, voltage_mv=voltage_mv,
            charge_counter_uah=charge, temperature_c=temp_decic / 10.0 if temp_decic is not None else None,
            energy_counter_nwh=energy_nwh, source=" + ".join(sources),
        )

    def thermal(self, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> ThermalService:
        r = self.shell("dumpsys thermalservice", timeout_s=timeout_s, check=True)
        return parsers.parse_thermalservice(r.stdout)

    def thermal_status(self, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> int:
        """Android thermal status: 0 none, 1 light, 2 moderate, 3 severe, 4 critical, 5 emergency, 6 shutdown."""
        return self.thermal(timeout_s=timeout_s).status

    def power_rails(self, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, RailEnergy] | None:
        """Cumulative energy per On-Device Power Monitor rail (uWs), or None without ODPM."""
        r = self.shell(f"dumpsys {IPOWERSTATS_SERVICE}", timeout_s=timeout_s)
        if not r.ok:
            return None
        rails = parsers.parse_ipowerstats(r.stdout)
        return rails or None

    def energy_method(self, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> EnergyMethod:
        if EnergyMethod.ODPM in self.profile.energy_methods:
            return self.profile.energy_method(has_rails=self.power_rails(timeout_s=timeout_s) is not None)
        return self.profile.energy_method(has_rails=False)

    # ------------------------------------------------------------------ apps

    def packages(self, *, third_party: bool = False, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[str]:
        cmd = "pm list packages -3" if third_party else "pm list packages"
        return parsers.parse_pm_list_packages(self.shell(cmd, timeout_s=timeout_s, check=True).stdout)

    def is_installed(self, package: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
        r = self.shell(f"pm path {_q(package)}", timeout_s=timeout_s)
        return r.ok and bool(parsers.parse_pm_path(r.stdout))

    def install(self, apk_path: str | os.PathLike[str], *, timeout_s: float = 120.0,
                progress: Progress | None = None) -> None:
        """Push the APK to /data/local/tmp and ``pm install -r -t`` it (replacing an older build)."""
        apk = Path(apk_path)
        remote = f"/data/local/tmp/{secrets.token_hex(4)}-{apk.name}"
        self.push(apk, remote, progress=progress, timeout_s=timeout_s)
        try:
            r = self.shell(f"pm install -r -t {_q(remote)}", timeout_s=timeout_s)
        finally:
            self._cleanup(remote)
        outcome = parsers.parse_pm_install(r.stdout)
        if not outcome.ok:
            step = "Uninstall the old app first (`adb uninstall PACKAGE`), then install again." \
                if outcome.code in ("INSTALL_FAILED_UPDATE_INCOMPATIBLE", "INSTALL_FAILED_VERSION_DOWNGRADE") \
                else "Check the APK (built for this ABI and SDK? signed?) and the phone's free space."
            raise InstallError(f"installing {apk.name} on {self.serial} failed: {outcome.message}",
                               next_step=step, device=self.serial, path=str(apk), code=outcome.code)

    def start_app(self, component: str, extras: Mapping[str, Any] | None = None, *, wait: bool = True,
                  timeout_s: float = DEFAULT_TIMEOUT_S) -> AmStartResult:
        """``am start [-W] -n PKG/.Activity`` with typed extras (str --es, bool --ez, int --el/--ei, float --ef).

        Not rerun after a dropped connection (the app may already have started).
        """
        parts = ["am", "start"]
        if wait:
            parts.append("-W")
        parts += ["-n", _q(component)]
        for key, value in (extras or {}).items():
            if isinstance(value, bool):
                parts += ["--ez", _q(key), "true" if value else "false"]
            elif isinstance(value, int):
                parts += ["--ei" if -(2**31) <= value < 2**31 else "--el", _q(key), str(value)]
            elif isinstance(value, float):
                parts += ["--ef", _q(key), repr(value)]
            else:
                parts += ["--es", _q(key), _q(str(value))]
        r = self.shell(" ".join(parts), timeout_s=timeout_s, retry=False)
        result = parsers.parse_am_start(r.stdout)
        if not result.ok or (r.exit_code != 0 and result.error is None):
            raise AppStartError(
                f"starting {component} on {self.serial} failed: {result.error or r.stdout.strip()[:300]}",
                next_step="Check that the app is installed (`python -m device_runner ... shell pm path PKG`) and "
                "the activity name is right.",
                device=self.serial, component=component, exit_code=r.exit_code,
            )
        return result

    def force_stop(self, package: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.shell(f"am force-stop {_q(package)}", timeout_s=timeout_s, check=True)

    # ------------------------------------------------------------------ summary

    def info(self, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
        """Everything ``python -m device_runner info`` prints, as plain JSON-able data."""
        props = self.properties(timeout_s=timeout_s)
        rails = self.power_rails(timeout_s=timeout_s)
        profile = self.profile
        try:
            thermal: int | None = self.thermal_status(timeout_s=timeout_s)
        except UnexpectedOutputError:
            thermal = None
        return {
            "address": getattr(self.transport, "address", self.serial),
            "profile": profile.name,
            "simulated": profile.simulated or props.simulated,
            "properties": props.to_dict(),
            "battery": self.battery(timeout_s=timeout_s).to_dict(),
            "thermal_status": thermal,
            "power_rails": {
                "present": rails is not None,
                "count": len(rails) if rails else 0,
                "names": sorted(rails) if rails else [],
            },
            "energy_method": profile.energy_method(has_rails=rails is not None).value,
        }
