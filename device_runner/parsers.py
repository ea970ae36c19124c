"""Parsers for what an Android shell prints, one function per command.

Every parser reads by key (``level: 80``, ``POWER_SUPPLY_CURRENT_NOW=-312500``, ``[ro.soc.model]``,
``Thermal Status: 2``), never by line position: Android versions and vendors add, drop and reorder
lines (Android 16 adds lines to ``dumpsys battery``; the thermal HAL lists come out of an unordered
map). Lines may end in CRLF (a PTY shell); that is tolerated everywhere.

The formats are documented with real and reconstructed Pixel 8 outputs in
``shared/device-outputs/`` (see its README); the tests parse every one of those files.
Parsers raise :class:`UnexpectedOutputError` only where a missing key makes the answer meaningless;
optional keys come back as ``None``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from device_runner.errors import UnexpectedOutputError


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _to_int(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        try:
            return int(float(value))
        except ValueError:
            return None


def _to_bool(value: str | None) -> bool | None:
    if value is None:
        return None
    v = value.strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    return None


# --------------------------------------------------------------------------------------------- getprop

def parse_getprop(text: str) -> dict[str, str]:
    """``getprop`` with no argument: ``[key]: [value]`` lines; values may span lines."""
    text = text.replace("\r\n", "\n")
    props: dict[str, str] = {}
    # A value may contain newlines: split at each line that starts a new "[key]: [" entry.
    entries = re.split(r"\n(?=\[[^\]\n]+\]: \[)", text.strip("\n"))
    for entry in entries:
        m = re.match(r"^\[([^\]\n]+)\]: \[(.*)\]\s*$", entry, re.DOTALL)
        if m:
            props[m.group(1)] = m.group(2)
    return props


def parse_getprop_value(text: str) -> str | None:
    """``getprop KEY``: the value and a newline; an unset key prints an empty line (-> None)."""
    value = text.replace("\r\n", "\n").rstrip("\n")
    return value if value else None


# --------------------------------------------------------------------------------------------- battery


@dataclass(frozen=True)
class DumpsysBattery:
    """``dumpsys battery`` in its own units (voltage mV, temperature 0.1 degC, charge counter uAh)."""

    level: int | None
    scale: int | None
    status_code: int | None  # BatteryManager.BATTERY_STATUS_*: 1 unknown, 2 charging, 3 discharging, 4 not charging, 5 full
    ac_powered: bool | None
    usb_powered: bool | None
    wireless_powered: bool | None
    dock_powered: bool | None
    voltage_mv: int | None
    temperature_decic: int | None
    charge_counter_uah: int | None
    current_now_raw: int | None  # only some vendors print "current now" here; unit and sign vary
    present: bool | None
    updates_stopped: bool
    fields: dict[str, str]


def parse_key_values(text: str, sep: str = ":") -> dict[str, str]:
    """``key: value`` lines (indentation ignored); the first occurrence of a key wins."""
    out: dict[str, str] = {}
    for line in _lines(text):
        if sep not in line:
            continue
        key, _, value = line.partition(sep)
        key = key.strip()
        if key and key not in out:
            out[key] = value.strip()
    return out


def parse_dumpsys_battery(text: str) -> DumpsysBattery:
    """``dumpsys battery``; keys are matched case-insensitively."""
    fields = {k.lower(): v for k, v in parse_key_values(text).items()}
    if "level" not in fields:
        raise UnexpectedOutputError(
            "`dumpsys battery` printed no 'level' line",
            next_step="Check that the phone runs Android 5 or later; report the output with --debug.",
            output=text[:2000],
        )
    current = fields.get("current now")
    return DumpsysBattery(
        level=_to_int(fields.get("level")),
        scale=_to_int(fields.get("scale")),
        status_code=_to_int(fields.get("status")),
        ac_powered=_to_bool(fields.get("ac powered")),
        usb_powered=_to_bool(fields.get("usb powered")),
        wireless_powered=_to_bool(fields.get("wireless powered")),
        dock_powered=_to_bool(fields.get("dock powered")),
        voltage_mv=_to_int(fields.get("voltage")),
        temperature_decic=_to_int(fields.get("temperature")),
        charge_counter_uah=_to_int(fields.get("charge counter")),
        current_now_raw=_to_int(current),
        present=_to_bool(fields.get("present")),
        updates_stopped="UPDATES STOPPED" in text,
        fields=fields,
    )


def parse_uevent(text: str) -> dict[str, str]:
    """``cat /sys/class/power_supply/<name>/uevent``: ``POWER_SUPPLY_KEY=value`` -> ``{"key": value}``.

    Keys come back lower case without the ``POWER_SUPPLY_`` prefix (``current_now``, ``status``).
    """
    out: dict[str, str] = {}
    for line in _lines(text):
        if "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip()
        if key.startswith("POWER_SUPPLY_"):
            key = key[len("POWER_SUPPLY_"):]
        if key:
            out[key.lower()] = value.strip()
    return out


def parse_sysfs_int(text: str) -> int | None:
    """One number from a sysfs node (``cat .../current_now``); None for empty or non-numeric text."""
    for line in _lines(text):
        if line.strip():
            return _to_int(line)
    return None


# Android BatteryManager status codes and the sysfs status words, mapped to one vocabulary.
STATUS_CODES = {1: "unknown", 2: "charging", 3: "discharging", 4: "not_charging", 5: "full"}
STATUS_WORDS = {
    "unknown": "unknown",
    "charging": "charging",
    "discharging": "discharging",
    "not charging": "not_charging",
    "full": "full",
}


def battery_status_word(value: str | int | None) -> str:
    """A dumpsys status code or a sysfs status word -> one of STATUS_CODES' values."""
    if value is None:
        return "unknown"
    if isinstance(value, int):
        return STATUS_CODES.get(value, "unknown")
    v = value.strip().lower().replace("_", " ")
    if v.isdigit():
        return STATUS_CODES.get(int(v), "unknown")
    return STATUS_WORDS.get(v, "unknown")


# --------------------------------------------------------------------------------------------- thermal


@dataclass(frozen=True)
class ThermalTemperature:
    name: str
    value_c: float
    type_code: int
    status: int


@dataclass(frozen=True)
class ThermalService:
    """``dumpsys thermalservice``: the overall status (0 none .. 6 shutdown) and the HAL readings."""

    status: int
    override: bool | None
    temperatures: dict[str, ThermalTemperature]  # "Current temperatures from HAL" (fresh), else cached


_TEMP_RE = re.compile(
    r"Temperature\{mValue=(?P<value>[-+0-9.eE]+|NaN),\s*mType=(?P<type>-?\d+),\s*mName=(?P<name>[^,]+),"
    r"\s*mStatus=(?P<status>-?\d+)\}"
)


def parse_thermalservice(text: str) -> ThermalService:
    status: int | None = None
    override: bool | None = None
    section = ""
    cached: dict[str, ThermalTemperature] = {}
    current: dict[str, ThermalTemperature] = {}
    for raw in _lines(text):
        line = raw.strip()
        if not line:
            continue
        low = line.lower()
        if low.startswith("thermal status:"):
            status = _to_int(line.split(":", 1)[1])
            continue
        if low.startswith("isstatusoverride:"):
            override = _to_bool(line.split(":", 1)[1])
            continue
        if line.endswith(":") and not line.startswith(("Temperature{", "CoolingDevice{")):
            section = low
            continue
        m = _TEMP_RE.search(line)
        if m:
            t = ThermalTemperature(
                name=m.group("name").strip(),
                value_c=float(m.group("value")),
                type_code=int(m.group("type")),
                status=int(m.group("status")),
            )
            if section.startswith("current temperatures"):
                current[t.name] = t
            elif section.startswith("cached temperatures"):
                cached[t.name] = t
    if status is None:
        raise UnexpectedOutputError(
            "`dumpsys thermalservice` printed no 'Thermal Status' line",
            next_step="The phone may run Android 9 or older (no thermal service); use a newer phone or "
            "report the output with --debug.",
            output=text[:2000],
        )
    return ThermalService(status=status, override=override, temperatures=current or cached)


# --------------------------------------------------------------------------------------------- power rails


@dataclass(frozen=True)
class RailEnergy:
    """One On-Device Power Monitor channel: cumulative energy since boot, in microwatt-seconds."""

    name: str  # rail, e.g. "S4M_VDD_CPUCL0"
    subsystem: str  # e.g. "CPU(LITTLE)"
    energy_uws: int


_METER_RE = re.compile(r"^\s*\[(?P<rail>[^\]]+)\]:(?P<sub>\S*)\s+(?P<mws>[-+0-9.eE]+)\s*mWs\b")


def parse_ipowerstats(text: str) -> dict[str, RailEnergy]:
    """The energy-meter section of ``dumpsys android.hardware.power.stats.IPowerStats/default``.

    Rows look like ``[S4M_VDD_CPUCL0]:CPU(LITTLE)   4477172.74 mWs``; the section is found by its
    banner, not its position. Returns {} when the phone has no meter (no ODPM). With the ``delta``
    argument the HAL prints two numbers; the first (cumulative) is taken.
    """
    rails: dict[str, RailEnergy] = {}
    in_meter = False
    saw_banner = False
    for line in _lines(text):
        low = line.lower()
        if "energy meter" in low and "====" in line:
            in_meter = not low.strip("= ").startswith("end of")
            saw_banner = True
            continue
        if "====" in line:
            in_meter = False
            continue
        if saw_banner and not in_meter:
            continue
        m = _METER_RE.match(line)
        if m:
            mws = float(m.group("mws"))
            rails[m.group("rail")] = RailEnergy(
                name=m.group("rail"), subsystem=m.group("sub"), energy_uws=int(round(mws * 1000.0))
            )
    return rails


# --------------------------------------------------------------------------------------------- packages


def parse_pm_list_packages(text: str) -> list[str]:
    """``pm list packages [-3] [-f]``: ``package:NAME`` (or ``package:/path/base.apk=NAME`` with -f)."""
    names: list[str] = []
    for line in _lines(text):
        line = line.strip()
        if not line.startswith("package:"):
            continue
        item = line[len("package:"):]
        if item.startswith("/") and "=" in item:
            item = item.rsplit("=", 1)[1]
        item = item.split()[0] if item.split() else ""
        if item:
            names.append(item)
    return names


def parse_pm_path(text: str) -> list[str]:
    """``pm path PKG``: one ``package:/path/base.apk`` line per APK; nothing for an unknown package."""
    return [line.strip()[len("package:"):] for line in _lines(text) if line.strip().startswith("package:")]


@dataclass(frozen=True)
class InstallOutcome:
    ok: bool
    code: str | None  # e.g. INSTALL_FAILED_UPDATE_INCOMPATIBLE
    message: str


_FAILURE_RE = re.compile(r"Failure \[(?P<body>.*)\]")


def parse_pm_install(text: str) -> InstallOutcome:
    """``pm install``: ``Success`` or ``Failure [CODE: message]`` (somewhere in the output)."""
    for line in _lines(text):
        stripped = line.strip()
        if stripped == "Success":
            return InstallOutcome(ok=True, code=None, message="Success")
        m = _FAILURE_RE.search(stripped)
        if m:
            body = m.group("body")
            code, _, _rest = body.partition(":")
            code = code.strip() if re.fullmatch(r"[A-Z_]+", code.strip()) else None
            return InstallOutcome(ok=False, code=code, message=body)
    return InstallOutcome(ok=False, code=None, message=text.strip()[:500] or "(no output)")


# --------------------------------------------------------------------------------------------- am


@dataclass(frozen=True)
class AmStartResult:
    """``am start -W``: Status (ok, timeout, ...), LaunchState, times in ms, or the error text."""

    ok: bool
    status: str | None
    launch_state: str | None
    total_time_ms: int | None
    wait_time_ms: int | None
    error: str | None
    warning: str | None


def parse_am_start(text: str) -> AmStartResult:
    fields = parse_key_values(text)
    error_lines = [
        line.strip()[len("Error:"):].strip()
        for line in _lines(text)
        if line.strip().startswith("Error:")
    ]
    error_type = fields.get("Error type")
    warning = fields.get("Warning")
    error: str | None = None
    if error_lines:
        error = error_lines[0]
    elif error_type is not None:
        error = f"error type {error_type}"
    status = fields.get("Status")
    ok = error is None and (status is None or status.lower() == "ok")
    if error is None and status is not None and status.lower() != "ok":
        error = f"status {status}"
    return AmStartResult(
        ok=ok,
        status=status,
        launch_state=fields.get("LaunchState"),
        total_time_ms=_to_int(fields.get("TotalTime")),
        wait_time_ms=_to_int(fields.get("WaitTime")),
        error=error,
        warning=warning,
    )


# --------------------------------------------------------------------------------------------- files

_SHA_RE = re.compile(r"^(?P<hash>[0-9a-fA-F]{64})\s+\*?(?P<path>.*)$")


def parse_sha256sum(text: str, path: str | None = None) -> str | None:
    """toybox ``sha256sum PATH``: ``<64 hex>  PATH``. None when the file is missing (or no hash line).

    With ``path`` given, the line for that path is chosen (several files may be listed).
    """
    first: str | None = None
    for line in _lines(text):
        m = _SHA_RE.match(line.strip())
        if not m:
            continue
        digest = m.group("hash").lower()
        if path is not None and m.group("path").strip() == path:
            return digest
        if first is None:
            first = digest
    return first


@dataclass(frozen=True)
class LsEntry:
    mode: str
    links: int | None
    owner: str | None
    group: str | None
    size_bytes: int | None
    modified: str | None  # as printed, e.g. "2024-11-05 09:26" (phone local time)
    name: str
    link_target: str | None

    @property
    def is_dir(self) -> bool:
        return self.mode.startswith("d")


_MODE_RE = re.compile(r"^[-dlcbps][-rwxsStT]{9}[.+@]?$")
_DATE_RE = re.compile(r"(?P<date>\d{4}-\d{2}-\d{2} \d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?: [-+]\d{4})?)")


def parse_ls_l(text: str) -> list[LsEntry]:
    """toybox ``ls -l``: entries by shape (mode field, then the date), ``total N`` and errors skipped.

    A missing file prints ``ls: PATH: No such file or directory`` (stderr) and yields [].
    """
    entries: list[LsEntry] = []
    for line in _lines(text):
        line = line.rstrip()
        parts = line.split()
        if not parts or not _MODE_RE.match(parts[0]):
            continue
        m = _DATE_RE.search(line)
        if m is None:
            # Older toolbox: "Nov  5 09:26" style; the size is then the field before the month.
            m2 = re.search(r"\s(?P<date>[A-Z][a-z]{2}\s+\d{1,2}\s+(?:\d{2}:\d{2}|\d{4}))\s", line)
            if m2 is None:
                continue
            head, date, tail = line[: m2.start()], m2.group("date"), line[m2.end():]
        else:
            head, date, tail = line[: m.start()], m.group("date"), line[m.end():]
        head_parts = head.split()
        size = _to_int(head_parts[-1]) if len(head_parts) >= 2 else None
        links = _to_int(head_parts[1]) if len(head_parts) >= 5 else None
        owner = head_parts[2] if len(head_parts) >= 5 else None
        group = head_parts[3] if len(head_parts) >= 5 else None
        name = tail.strip()
        target = None
        if parts[0].startswith("l") and " -> " in name:
            name, target = name.split(" -> ", 1)
        entries.append(
            LsEntry(mode=parts[0], links=links, owner=owner, group=group, size_bytes=size,
                    modified=date, name=name, link_target=target)
        )
    return entries


def is_missing_file_message(text: str) -> bool:
    """True for toybox's ``PATH: No such file or directory`` (any tool)."""
    return "No such file or directory" in text


def is_permission_denied(text: str) -> bool:
    return "Permission denied" in text or "Operation not permitted" in text


def is_not_found_command(text: str) -> bool:
    """mksh's answer to an unknown command (``inaccessible or not found`` / ``not found``)."""
    return bool(re.search(r": (inaccessible or )?not found\s*$", text.strip(), re.MULTILINE))
