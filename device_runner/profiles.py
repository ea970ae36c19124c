"""Device profiles (pixel, generic, sim) and resolving ``--device`` to an address and a profile.

A profile says how to read a phone: the unit and sign of its battery current, and which energy
method to prefer. Conventions:

* ``pixel`` (any phone whose manufacturer is Google): sysfs ``current_now`` in uA, **negative while
  discharging** (google_battery negates the fuel gauge). Energy from the On-Device Power Monitor
  rails when the phone has them (Pixel 6 and later), else from the battery.
* ``generic``: vendors differ (some report mA, some flip the sign), so both are detected: a
  magnitude under 20 000 is taken as mA (a phone running a benchmark draws >= 50 mA = 50 000 uA),
  and the sign is fixed from the charging status. Energy from the battery.
* ``sim``: the simulated phone plays either a Pixel (uA, negative while discharging) or a generic
  phone (mA), so unit and sign are detected as for ``generic``; its energy method is ``simulated``.
  The profile starts nothing; the deploy command starts a sim.

Everything leaves :func:`normalize_current_ua` in Android's ``BatteryManager`` convention: uA,
positive = into the battery (charging), negative = out of it (discharging).

``--device`` accepts, tried in this order: a name from ``devices.yaml`` (``--devices FILE`` or
``./devices.yaml``), a profile name (``pixel``/``generic``: the one phone on USB; ``sim``: a simulated
phone that the caller starts), ``host:port`` (TCP, ``adb tcpip 5555`` or wireless debugging; a bare
IPv4 address means port 5555), ``usb`` / ``usb:SERIAL``, or a USB serial.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from device_runner.errors import ENABLE_DEBUGGING_STEPS, DeviceNotFoundError
from pipeline.errors import ConfigError


class CurrentUnit(StrEnum):
    UA = "ua"
    MA = "ma"
    AUTO = "auto"


class CurrentSign(StrEnum):
    NEGATIVE_IS_DISCHARGE = "negative_is_discharge"  # Android BatteryManager, Pixel sysfs
    POSITIVE_IS_DISCHARGE = "positive_is_discharge"  # some vendors' fuel gauges
    AUTO = "auto"  # decide from the charging status


class EnergyMethod(StrEnum):
    ODPM = "odpm"
    BATTERY = "battery"
    SIMULATED = "simulated"
    NONE = "none"


# Below this magnitude an AUTO current is taken as mA (see the module docstring).
AUTO_MA_THRESHOLD = 20_000


def normalize_current_ua(raw: int, *, unit: CurrentUnit, sign: CurrentSign, status: str | None) -> int:
    """The one place where battery current gets its unit and sign: returns uA, negative = discharging.

    ``status`` is the battery status word (``charging``, ``discharging``, ``not_charging``, ``full``,
    ``unknown``); it is used only with ``CurrentSign.AUTO``. In AUTO, a reading whose sign disagrees
    with a charging/discharging status is flipped; other statuses keep the printed sign.
    """
    unit = CurrentUnit(unit)
    sign = CurrentSign(sign)
    value = int(raw)
    if unit is CurrentUnit.MA or (unit is CurrentUnit.AUTO and 0 < abs(value) < AUTO_MA_THRESHOLD):
        value *= 1000
    if sign is CurrentSign.POSITIVE_IS_DISCHARGE:
        value = -value
    elif sign is CurrentSign.AUTO:
        if status == "discharging" and value > 0:
            value = -value
        elif status == "charging" and value < 0:
            value = -value
    return value


@dataclass(frozen=True)
class DeviceProfile:
    """How to read one kind of phone. Validated when built."""

    name: str
    description: str
    current_unit: CurrentUnit
    current_sign: CurrentSign
    energy_methods: tuple[EnergyMethod, ...]  # preferred first
    simulated: bool = False

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", self.name):
            raise ConfigError(f"profile name {self.name!r} is invalid", next_step="Use lower-case letters, digits, - and _.")
        try:
            object.__setattr__(self, "current_unit", CurrentUnit(self.current_unit))
            object.__setattr__(self, "current_sign", CurrentSign(self.current_sign))
            object.__setattr__(self, "energy_methods", tuple(EnergyMethod(m) for m in self.energy_methods))
        except ValueError as err:
            raise ConfigError(
                f"profile {self.name!r}: {err}",
                next_step=f"current_unit is one of {[u.value for u in CurrentUnit]}, current_sign one of "
                f"{[s.value for s in CurrentSign]}, energy methods from {[m.value for m in EnergyMethod]}.",
            ) from None
        if not self.energy_methods:
            raise ConfigError(f"profile {self.name!r} has no energy method", next_step="Give at least 'none'.")

    def normalize_current_ua(self, raw: int, status: str | None) -> int:
        return normalize_current_ua(raw, unit=self.current_unit, sign=self.current_sign, status=status)

    def energy_method(self, *, has_rails: bool) -> EnergyMethod:
        """The first preferred method that this phone can serve."""
        for method in self.energy_methods:
            if method is EnergyMethod.ODPM and not has_rails:
                continue
            return method
        return EnergyMethod.NONE


PROFILES: dict[str, DeviceProfile] = {
    "pixel": DeviceProfile(
        name="pixel",
        description="Google Pixel: sysfs current in uA, negative while discharging; ODPM rails on Pixel 6+",
        current_unit=CurrentUnit.UA,
        current_sign=CurrentSign.NEGATIVE_IS_DISCHARGE,
        energy_methods=(EnergyMethod.ODPM, EnergyMethod.BATTERY),
    ),
    "generic": DeviceProfile(
        name="generic",
        description="any Android phone: current unit (uA/mA) and sign detected, energy from the battery",
        current_unit=CurrentUnit.AUTO,
        current_sign=CurrentSign.AUTO,
        energy_methods=(EnergyMethod.BATTERY,),
    ),
    "sim": DeviceProfile(
        name="sim",
        description="the simulated phone (device_runner.sim), playing a Pixel (uA) or a generic phone (mA); "
        "simulated energy",
        current_unit=CurrentUnit.AUTO,
        current_sign=CurrentSign.AUTO,
        energy_methods=(EnergyMethod.SIMULATED,),
        simulated=True,
    ),
}


def get_profile(name: str) -> DeviceProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(
            f"unknown device profile {name!r}", next_step=f"Use one of: {', '.join(sorted(PROFILES))}."
        ) from None


def profile_for_properties(props: Any) -> DeviceProfile:
    """Pick a profile from what the phone says about itself (``DeviceProperties`` or a getprop dict)."""
    get = props.get if isinstance(props, dict) else lambda k, d=None: getattr(props, k, d)
    if get("simulated", False) or get("ro.vitpalette.simulated") in ("1", "true"):
        return PROFILES["sim"]
    manufacturer = get("manufacturer") or get("ro.product.manufacturer") or ""
    if str(manufacturer).strip().lower() == "google":
        return PROFILES["pixel"]
    return PROFILES["generic"]


# ------------------------------------------------------------------------------------------ --device


@dataclass(frozen=True)
class DeviceSpec:
    """Where a phone is and how to read it, resolved from ``--device``.

    ``address``: ``host:port`` for TCP, ``usb`` (the first phone on USB) or ``usb:SERIAL``, or None for
    ``sim`` (the caller starts a simulated phone and connects to its address). ``profile`` None means
    "detect from the phone's properties".
    """

    address: str | None
    profile: str | None = None
    name: str | None = None
    source: str = ""  # how it was resolved, for messages
    tried: tuple[str, ...] = field(default=(), compare=False)  # forms ruled out before this one

    def __post_init__(self) -> None:
        if self.profile is not None and self.profile not in PROFILES:
            raise ConfigError(
                f"device {self.name or self.address!r}: unknown profile {self.profile!r}",
                next_step=f"Use one of: {', '.join(sorted(PROFILES))}.",
            )


_HOST_PORT_RE = re.compile(r"^(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$")
_IPV4_RE = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_SERIAL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def parse_tcp_address(text: str) -> tuple[str, int] | None:
    """``host:port`` (or ``[ipv6]:port``, or a bare IPv4 address = port 5555) -> (host, port)."""
    text = text.strip()
    if text.startswith("tcp:"):
        text = text[4:]
    m = _HOST_PORT_RE.match(text)
    if m:
        port = int(m.group("port"))
        if not 0 < port < 65536:
            return None
        return m.group("host").strip("[]"), port
    if _IPV4_RE.match(text):
        return text, 5555
    return None


@dataclass
class DevicesFile:
    path: Path
    devices: dict[str, DeviceSpec] = field(default_factory=dict)


def load_devices_yaml(path: Path) -> DevicesFile:
    """``devices.yaml``: ``devices: {NAME: {address: HOST:PORT|usb:SERIAL, profile: pixel}}``.

    A plain string value is an address. Unknown keys are rejected (a typo should not be ignored).
    """
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as err:
        raise ConfigError(f"cannot read devices file {path}: {err.strerror}",
                          next_step="Check the path given to --devices.") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"devices file {path} is not valid YAML: {err}",
                          next_step="Fix the YAML syntax.") from None
    if not isinstance(data, dict):
        raise ConfigError(f"devices file {path} must hold a mapping", next_step="Start it with 'devices:'.")
    unknown = set(data) - {"devices"}
    if unknown:
        raise ConfigError(f"devices file {path}: unknown top-level key(s) {sorted(unknown)}",
                          next_step="The only top-level key is 'devices'.")
    entries = data.get("devices") or {}
    if not isinstance(entries, dict):
        raise ConfigError(f"devices file {path}: 'devices' must map names to phones",
                          next_step="Write 'devices:' then 'NAME: {address: HOST:PORT, profile: pixel}'.")
    out = DevicesFile(path=Path(path))
    for name, entry in entries.items():
        if isinstance(entry, str):
            entry = {"address": entry}
        if not isinstance(entry, dict):
            raise ConfigError(f"devices file {path}: device {name!r} must be an address or a mapping",
                              next_step="Write '{address: HOST:PORT, profile: pixel}'.")
        bad = set(entry) - {"address", "profile", "serial", "description"}
        if bad:
            raise ConfigError(f"devices file {path}: device {name!r} has unknown key(s) {sorted(bad)}",
                              next_step="Allowed keys: address, serial, profile, description.")
        address = entry.get("address")
        if address is None and entry.get("serial"):
            address = f"usb:{entry['serial']}"
        if address is None and entry.get("profile") != "sim":
            raise ConfigError(f"devices file {path}: device {name!r} has no address",
                              next_step="Add 'address: HOST:PORT' or 'serial: USB_SERIAL'.")
        if address is not None:
            address = _normalise_address(str(address))
        out.devices[str(name)] = DeviceSpec(address=address, profile=entry.get("profile"), name=str(name),
                                            source=f"{path}")
    return out


def _normalise_address(text: str) -> str:
    tcp = parse_tcp_address(text)
    if tcp:
        host, port = tcp
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if text == "usb" or text.startswith("usb:"):
        return text
    if _SERIAL_RE.match(text):
        return f"usb:{text}"
    raise ConfigError(f"device address {text!r} is neither host:port nor a USB serial",
                      next_step="Use HOST:PORT (after `adb tcpip 5555`) or the serial shown by `adb devices`.")


def default_devices_file(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    if explicit is not None:
        return Path(explicit)
    candidate = Path.cwd() / "devices.yaml"
    return candidate if candidate.is_file() else None


def resolve_device(text: str, *, devices_file: str | os.PathLike[str] | None = None) -> DeviceSpec:
    """``--device`` -> DeviceSpec (see the module docstring for the order in which forms are tried)."""
    text = (text or "").strip()
    tried: list[str] = []
    path = default_devices_file(devices_file)
    if path is not None:
        if devices_file is not None and not Path(path).is_file():
            raise ConfigError(f"devices file {path} does not exist", next_step="Check the path given to --devices.")
        known = load_devices_yaml(path)
        if text in known.devices:
            return known.devices[text]
        tried.append(f"a name in {path} (known: {', '.join(sorted(known.devices)) or 'none'})")
    else:
        tried.append("a name in ./devices.yaml (no such file)")
    if text in PROFILES:
        if text == "sim":
            return DeviceSpec(address=None, profile="sim", name="sim", source="profile")
        return DeviceSpec(address="usb", profile=text, name=text, source="profile (first phone on USB)")
    tried.append(f"a profile name ({', '.join(sorted(PROFILES))})")
    if parse_tcp_address(text):
        return DeviceSpec(address=_normalise_address(text), source="host:port", tried=tuple(tried))
    tried.append("host:port")
    if text == "usb" or text.startswith("usb:"):
        return DeviceSpec(address=text, source="usb", tried=tuple(tried))
    if _SERIAL_RE.match(text):
        return DeviceSpec(address=f"usb:{text}", source="USB serial", tried=tuple(tried))
    tried.append("a USB serial")
    raise DeviceNotFoundError(
        f"--device {text!r} names no known phone; tried: " + "; ".join(tried),
        next_step=ENABLE_DEBUGGING_STEPS,
        device=text,
        tried=tried,
    )
