"""Text a phone prints about its battery, temperatures and power rails, computed from the models.

Formats follow shared/device-outputs (Pixel 8, Android 15); numbers come from the battery model,
so a parser that reads these by key sees values that move consistently with the simulated work.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING

from device_runner.sim.battery import BatterySnapshot

if TYPE_CHECKING:
    from device_runner.sim.phone import SimulatedPhone

SYSFS_BATTERY = "/sys/class/power_supply/battery"


def float32_str(value: float) -> str:
    """Java ``Float.toString`` of a float32: shortest round-trip digits, at least one decimal."""
    import numpy as np

    return np.format_float_positional(np.float32(value), unique=True, trim="0")


def _level_word(level: int) -> str:
    if level >= 100:
        return "Full"
    if level > 80:
        return "High"
    if level > 30:
        return "Normal"
    if level > 5:
        return "Low"
    return "Critical"


def _current_for_sysfs(phone: SimulatedPhone, snap: BatterySnapshot) -> int:
    if phone.profile.current_unit == "ma":
        return int(round(snap.current_ua / 1000))
    return snap.current_ua


def battery_status_word(snap: BatterySnapshot) -> str:
    if snap.charging:
        return "Full" if snap.level_pct >= 100 else "Charging"
    return "Discharging"


def uevent(phone: SimulatedPhone) -> str:
    snap = phone.battery.snapshot()
    cfg = phone.profile.battery
    cur = _current_for_sysfs(phone, snap)
    hours_left = -1 if snap.charging else int(snap.charge_counter_uah / max(1, -snap.current_ua) * 3600)
    ttf = int((cfg.capacity_uah - snap.charge_counter_uah) / max(1, snap.current_ua) * 3600) if snap.charging else -1
    lines = [
        "POWER_SUPPLY_NAME=battery",
        "POWER_SUPPLY_TYPE=Battery",
        f"POWER_SUPPLY_CAPACITY={snap.level_pct}",
        f"POWER_SUPPLY_CAPACITY_LEVEL={_level_word(snap.level_pct)}",
        f"POWER_SUPPLY_CHARGE_COUNTER={snap.charge_counter_uah}",
        f"POWER_SUPPLY_CHARGE_FULL={cfg.capacity_uah}",
        f"POWER_SUPPLY_CHARGE_FULL_DESIGN={cfg.design_capacity_uah}",
        f"POWER_SUPPLY_CURRENT_AVG={cur}",
        f"POWER_SUPPLY_CURRENT_NOW={cur}",
        "POWER_SUPPLY_CYCLE_COUNT=112",
        "POWER_SUPPLY_HEALTH=Good",
        "POWER_SUPPLY_PRESENT=1",
        "POWER_SUPPLY_SERIAL_NUMBER=13G8230041207AA29U01F2E01183201809207731R",
        f"POWER_SUPPLY_STATUS={battery_status_word(snap)}",
        f"POWER_SUPPLY_TEMP={snap.temperature_decic}",
        "POWER_SUPPLY_TECHNOLOGY=Li-ion",
        f"POWER_SUPPLY_TIME_TO_EMPTY_AVG={0 if snap.charging else hours_left}",
        f"POWER_SUPPLY_TIME_TO_FULL_NOW={ttf}",
        f"POWER_SUPPLY_VOLTAGE_NOW={snap.voltage_mv * 1000}",
        f"POWER_SUPPLY_VOLTAGE_OCV={snap.voltage_mv * 1000 + (-snap.current_ua // 10 if not snap.charging else 0)}",
    ]
    return "\n".join(lines) + "\n"


def _sysfs_node(phone: SimulatedPhone, node: str) -> str:
    snap = phone.battery.snapshot()
    cfg = phone.profile.battery
    values = {
        "capacity": snap.level_pct,
        "charge_counter": snap.charge_counter_uah,
        "current_now": _current_for_sysfs(phone, snap),
        "current_avg": _current_for_sysfs(phone, snap),
        "voltage_now": snap.voltage_mv * 1000,
        "status": battery_status_word(snap),
        "temp": snap.temperature_decic,
        "charge_full": cfg.capacity_uah,
        "charge_full_design": cfg.design_capacity_uah,
        "present": 1,
        "health": "Good",
        "technology": "Li-ion",
        "type": "Battery",
        "capacity_level": _level_word(snap.level_pct),
        "cycle_count": 112,
    }
    return f"{values[node]}\n"


SYSFS_NODES = ("capacity", "capacity_level", "charge_counter", "charge_full", "charge_full_design",
               "current_avg", "current_now", "cycle_count", "health", "present", "status", "technology",
               "temp", "type", "voltage_now")


def install_virtual_nodes(phone: SimulatedPhone) -> None:
    fs = phone.fs
    fs.add_virtual(f"{SYSFS_BATTERY}/uevent", lambda: uevent(phone).encode())
    for node in SYSFS_NODES:
        fs.add_virtual(f"{SYSFS_BATTERY}/{node}", lambda node=node: _sysfs_node(phone, node).encode())
    fs.add_virtual("/proc/version", lambda: b"Linux version 5.15.137-android14-11-gd1a3b1f3c9a4 "
                                            b"(build-user@build-host) #1 SMP PREEMPT\n")
    fs.add_virtual("/proc/cpuinfo", lambda: _cpuinfo(phone).encode())
    for path, text in phone.profile.cpu_sysfs.items():
        host = fs.host_path(path)
        host.parent.mkdir(parents=True, exist_ok=True)
        if not host.exists():
            host.write_text(text)


def _cpuinfo(phone: SimulatedPhone) -> str:
    blocks = [f"processor\t: {i}\nBogoMIPS\t: 49.15\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n"
              for i in range(phone.profile.cores)]
    return "\n".join(blocks) + f"\nHardware\t: {phone.profile.props.get('ro.soc.model', 'unknown')}\n"


def dumpsys_battery(phone: SimulatedPhone) -> str:
    snap = phone.battery.snapshot()
    usb = snap.charging and not phone.battery_reporting_unplugged
    status = 2 if usb else 3
    lines = ["Current Battery Service state:"]
    if phone.battery_reporting_unplugged:
        lines.append("  (UPDATES STOPPED -- use 'reset' to restart)")
    lines += [
        "  AC powered: false",
        f"  USB powered: {'true' if usb else 'false'}",
        "  Wireless powered: false",
        "  Dock powered: false",
        f"  Max charging current: {500000 if usb else 0}",
        f"  Max charging voltage: {5000000 if usb else 0}",
        f"  Charge counter: {snap.charge_counter_uah}",
        f"  status: {status}",
        "  health: 2",
        "  present: true",
        f"  level: {snap.level_pct}",
        "  scale: 100",
        f"  voltage: {snap.voltage_mv}",
        f"  temperature: {snap.temperature_decic}",
        "  technology: Li-ion",
        "  Charging state: 1",
        "  Charging policy: 1",
    ]
    return "\n".join(lines) + "\n"


# --- thermalservice ----------------------------------------------------------------------------

_TEMP_RE = re.compile(r"Temperature\{mValue=([-0-9.E]+), mType=(-?\d+), mName=([^,]+), mStatus=(\d+)\}")
# how strongly each sensor follows the skin temperature (CPU clusters run hotter under load)
_GAIN = {"BIG": 3.0, "MID": 2.7, "LITTLE": 2.0, "G3D": 2.5, "TPU": 1.5, "battery": 0.8, "soc": 0.0}
_HOT_TYPES = {"0", "1", "2", "3", "5", "9"}
_BASE_SKIN_C = 29.36543


@lru_cache(maxsize=1)
def _thermal_template() -> str:
    from importlib import resources

    return resources.files("device_runner.sim.data").joinpath("thermalservice_pixel8.txt").read_text()


def _sensor_value(name: str, typ: str, base: float, delta: float) -> float | None:
    if typ in _HOT_TYPES or name.endswith("_therm") or name.startswith("VIRTUAL-SKIN"):
        return base + _GAIN.get(name, 1.0) * delta
    return None


def thermalservice(phone: SimulatedPhone) -> str:
    snap = phone.battery.snapshot()
    if phone.profile.name != "pixel-8":
        return _generic_thermalservice(snap)
    delta = snap.skin_temperature_c - _BASE_SKIN_C
    status = snap.thermal_status
    out = []
    section = ""
    for line in _thermal_template().splitlines():
        if line.startswith("Thermal Status:"):
            out.append(f"Thermal Status: {status}")
            continue
        if not line.startswith("\t"):
            section = line
        m = _TEMP_RE.search(line)
        if m and section.startswith(("Current temperatures", "Cached temperatures")):
            value, typ, name, st = m.groups()
            if name == "VIRTUAL-SKIN" or section.startswith("Current"):
                new = _sensor_value(name, typ, float(value), delta)
                if name == "VIRTUAL-SKIN":
                    new, st = snap.skin_temperature_c, str(status)
                if section.startswith("Cached") and status == 0:
                    out.append(line)  # the boot-time snapshot stays until a severity callback
                    continue
                if new is not None:
                    line = f"\tTemperature{{mValue={float32_str(new)}, mType={typ}, mName={name}, mStatus={st}}}"
        out.append(line)
    return "\n".join(out) + "\n"


def _generic_thermalservice(snap: BatterySnapshot) -> str:
    skin = snap.skin_temperature_c
    sensors = [("AP", 0, skin + 12.0), ("BAT", 2, snap.temperature_decic / 10), ("SKIN", 3, skin),
               ("USB", 4, skin - 1.5), ("PA", 5, skin + 1.0)]
    temps = "".join(f"\tTemperature{{mValue={float32_str(v)}, mType={t}, mName={n}, "
                    f"mStatus={snap.thermal_status if t == 3 else 0}}}\n" for n, t, v in sensors)
    return ("IsStatusOverride: false\nThermalEventListeners:\n\tcallbacks: 3\n\tkilled: false\n"
            "\tbroadcasts count: -1\nThermalStatusListeners:\n\tcallbacks: 2\n\tkilled: false\n"
            f"\tbroadcasts count: -1\nThermal Status: {snap.thermal_status}\nCached temperatures:\n{temps}"
            f"HAL Ready: true\nHAL connection:\n\tThermalHAL AIDL 1  connected: yes\n"
            f"Current temperatures from HAL:\n{temps}Current cooling devices from HAL:\n"
            "\tCoolingDevice{mValue=0, mType=2, mName=cpufreq-cpu0}\n"
            "Temperature static thresholds from HAL:\n"
            "\tTemperatureThreshold{mType=3, mName=SKIN, mHotThrottlingThresholds=[NaN, 39.0, 43.0, 45.0, 46.5, "
            "52.0, 55.0], mColdThrottlingThresholds=[NaN, NaN, NaN, NaN, NaN, NaN, NaN]}\n")


# --- IPowerStats HAL dump ------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _residency_section() -> str:
    from importlib import resources

    return resources.files("device_runner.sim.data").joinpath("powerstats_residency_pixel8.txt").read_text()


def _mws(uws: int) -> float:
    import numpy as np

    return float(np.float32(uws)) / 1000.0  # the HAL prints static_cast<float>(uWs) / 1000.0


def ipowerstats(phone: SimulatedPhone) -> str:
    from device_runner.sim.profiles import PIXEL8_RAILS

    rails = phone.battery.snapshot().rails_energy_uws
    consumers = [("CPUCL0", ["S4M_VDD_CPUCL0"], None), ("CPUCL1", ["S3M_VDD_CPUCL1"], None),
                 ("CPUCL2", ["S2M_VDD_CPUCL2"], None), ("GPS", ["L9S_GNSS_CORE"], None),
                 ("TPU", ["S7M_VDD_TPU"], [(10164, 0.41), (10212, 0.22), (1047, 0.09)]),
                 ("GPU", ["S2S_VDD_G3D", "S8S_VDD_G3D_L2"],
                  [(1000, 0.38), (10153, 0.17), (10117, 0.12), (10238, 0.07), (1047, 0.02)]),
                 ("DISPLAY", ["VSYS_PWR_DISPLAY"], None)]
    lines = ["", _residency_section().rstrip("\n"), "",
             "============= PowerStats HAL 2.0 energy consumers =============="]
    for name, parts, attribution in consumers:
        total = sum(rails.get(r, 0) for r in parts)
        lines.append(f"{name:<12s} : {_mws(total):14.2f} mWs")
        for uid, share in attribution or []:
            lines.append(f"  {uid:10d} - {_mws(int(total * share)):14.2f} mWs")
    lines += ["========== End of PowerStats HAL 2.0 energy consumers ==========", "",
              "============= PowerStats HAL 2.0 energy meter ==============",
              "                           Channel    Cumulative Energy"]
    for rail, subsystem, _ in PIXEL8_RAILS:
        lines.append(f"  {'[' + rail + ']:' + subsystem:>32s}   {_mws(rails.get(rail, 0)):14.2f} mWs")
    lines.append("========== End of PowerStats HAL 2.0 energy meter ==========")
    return "\n".join(lines) + "\n"


def dumpsys_power(phone: SimulatedPhone) -> str:
    stay_on = phone.settings.get(("global", "stay_on_while_plugged_in"), "0")
    wake = "Awake" if phone.screen_on else "Asleep"
    return ("POWER MANAGER (dumpsys power)\n\nPower Manager State:\n"
            f"  mWakefulness={wake}\n  mWakefulnessChanging=false\n"
            f"  mIsPowered={'true' if phone.faults.charging else 'false'}\n"
            f"  mStayOn={'true' if stay_on != '0' and phone.faults.charging else 'false'}\n"
            f"  mStayOnWhilePluggedInSetting={stay_on}\n"
            f"  mHoldingDisplaySuspendBlocker={'true' if phone.screen_on else 'false'}\n"
            f"Display Power: state={'ON' if phone.screen_on else 'OFF'}\n")
