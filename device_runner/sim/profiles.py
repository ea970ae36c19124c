"""Phone profiles the simulator can play: what ``getprop`` says, which packages exist, the power model.

``pixel-8``: Google Pixel 8 (shiba, Tensor G3 / zuma), Android 15, with the On-Device Power
Monitor (IPowerStats rails). Its ``getprop`` listing and system package set are the reference
outputs in ``data/`` (see shared/device-outputs/README.md for their provenance).

``generic``: a Samsung-like phone (Galaxy S23, Snapdragon 8 Gen 2 / kalama), Android 14, no
power rails (``dumpsys`` says the IPowerStats service is not found), and a vendor battery driver
that reports ``current_now`` in mA, as some vendors do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources

from device_runner.sim.battery import BatteryConfig
from pipeline.errors import ConfigError

BENCH_PACKAGE = "org.vitpalette.bench"
BENCH_ACTIVITY = "org.vitpalette.bench.BenchmarkActivity"

# Pixel 8 ODPM rails in dump order: (rail, subsystem, cumulative mWs in the reference dump)
PIXEL8_RAILS: tuple[tuple[str, str, float], ...] = (
    ("S1S_VDD_CAM", "Multimedia", 91664.48), ("S2S_VDD_G3D", "GPU", 2103166.85),
    ("S4S_VDD2H_MEM", "DDR", 1371907.07), ("S5S_VDDQ_MEM", "DDR", 1825437.31),
    ("S8S_VDD_G3D_L2", "GPU", 415962.02), ("S9S_VDD_AOC", "AOC", 635544.06),
    ("L2S_PLL_MIPI_UFS", "PLL", 174340.10), ("L9S_GNSS_CORE", "GPS", 81900.39),
    ("L21S_VDD2L_MEM", "DDR", 287740.86), ("VSYS_PWR_DISPLAY", "Display", 4760217.09),
    ("VSYS_PWR_WLAN_BT", "WLAN-BT", 1964744.06), ("S12S_VDD_AUR", "AUR", 58928.16),
    ("S1M_VDD_MIF", "MIF", 2515985.92), ("S2M_VDD_CPUCL2", "CPU(BIG)", 1490120.32),
    ("S3M_VDD_CPUCL1", "CPU(MID)", 2930925.31), ("S4M_VDD_CPUCL0", "CPU(LITTLE)", 4477172.74),
    ("S5M_VDD_INT", "INT", 2017201.79), ("S6M_LLDO1", "LDO", 975691.97),
    ("S7M_VDD_TPU", "TPU", 431186.50), ("S8M_LLDO2", "LDO", 801981.38),
    ("L22M_DISP", "Display", 256912.64), ("S9M_VDD_CPUCL0_M", "CPU(LITTLE)", 764649.28),
    ("VSYS_PWR_MODEM", "MODEM", 3915995.39), ("VSYS_PWR_RFFE", "Cellular", 1231289.09),
)
_RAIL_TOTAL = sum(r[2] for r in PIXEL8_RAILS)
PIXEL8_IDLE_SHARES = {name: mws / _RAIL_TOTAL for name, _, mws in PIXEL8_RAILS}
PIXEL8_ACTIVE_SHARES = {"S2M_VDD_CPUCL2": 0.35, "S3M_VDD_CPUCL1": 0.35, "S4M_VDD_CPUCL0": 0.05,
                        "S1M_VDD_MIF": 0.15, "S4S_VDD2H_MEM": 0.05, "S5S_VDDQ_MEM": 0.05}


@dataclass(frozen=True)
class Profile:
    name: str
    props: dict[str, str]
    system_packages: tuple[str, ...]
    battery: BatteryConfig
    has_power_stats: bool
    current_unit: str                     # unit of sysfs current_now: "ua" or "ma"
    cores: int
    hostname: str
    screen_size: str = "1080x2400"
    screen_density: int = 420
    cpu_sysfs: dict[str, str] = field(default_factory=dict)

    @property
    def model(self) -> str:
        return self.props["ro.product.model"]

    def device_info(self, serial: str) -> dict:
        """What the benchmark app reports as ``device`` (result schema)."""
        pr = self.props
        return {
            "model": pr["ro.product.model"],
            "manufacturer": pr["ro.product.manufacturer"],
            "android_version": pr["ro.build.version.release"],
            "sdk_int": int(pr["ro.build.version.sdk"]),
            "soc": pr.get("ro.soc.model", ""),
            "abi": pr["ro.product.cpu.abi"],
            "serial": serial,
            "simulated": True,
            "cores": self.cores,
        }


def _data(name: str) -> str:
    return resources.files("device_runner.sim.data").joinpath(name).read_text(encoding="utf-8")


def _parse_getprop(text: str) -> dict[str, str]:
    props = {}
    for m in re.finditer(r"^\[([^\]]*)\]: \[(.*)\]$", text, re.M):
        props[m.group(1)] = m.group(2)
    return props


_PIXEL8_CPU_SYSFS = {
    "/sys/devices/system/cpu/possible": "0-8\n",
    "/sys/devices/system/cpu/present": "0-8\n",
    "/sys/devices/system/cpu/online": "0-8\n",
    **{f"/sys/devices/system/cpu/cpu{i}/cpufreq/scaling_cur_freq": f"{f}\n" for i, f in enumerate(
        (1197000, 324000, 324000, 324000, 2130000, 1945000, 1945000, 2130000, 500000))},
    "/sys/devices/system/cpu/cpufreq/policy0/scaling_available_frequencies":
        "324000 610000 820000 955000 1098000 1197000 1328000 1425000 1548000 1704000 \n",
    "/sys/devices/system/cpu/cpufreq/policy4/scaling_available_frequencies":
        "402000 578000 697000 712000 910000 1065000 1221000 1328000 1418000 1572000 1836000 1945000 2130000 "
        "2245000 2367000 \n",
    "/sys/devices/system/cpu/cpufreq/policy8/scaling_available_frequencies":
        "500000 880000 1164000 1298000 1557000 1745000 1885000 2049000 2147000 2294000 2363000 2556000 2687000 "
        "2850000 2914000\n",
}


def _pixel8() -> Profile:
    return Profile(
        name="pixel-8",
        props=_parse_getprop(_data("getprop_pixel8.txt")),
        system_packages=tuple(line.split(":", 1)[1] for line in _data("packages_pixel8.txt").splitlines()
                              if line.startswith("package:")),
        battery=BatteryConfig(idle_power_w=0.6, core_power_w=1.5, capacity_uah=4_452_000,
                              design_capacity_uah=4_550_000, idle_rail_shares=PIXEL8_IDLE_SHARES,
                              active_rail_shares=PIXEL8_ACTIVE_SHARES),
        has_power_stats=True,
        current_unit="ua",
        cores=9,
        hostname="shiba",
        cpu_sysfs=_PIXEL8_CPU_SYSFS,
    )


_GENERIC_PROPS = {
    "dalvik.vm.heapsize": "512m",
    "gsm.version.baseband": "S911BXXS6CXK2",
    "persist.sys.timezone": "Europe/Berlin",
    "ro.board.platform": "kalama",
    "ro.boot.hardware": "qcom",
    "ro.boot.serialno": "R5CW20ABCDE",
    "ro.build.characteristics": "phone",
    "ro.build.display.id": "UP1A.231005.007.S911BXXS6CXK2",
    "ro.build.fingerprint": "samsung/dm1qxxx/dm1q:14/UP1A.231005.007/S911BXXS6CXK2:user/release-keys",
    "ro.build.id": "UP1A.231005.007",
    "ro.build.tags": "release-keys",
    "ro.build.type": "user",
    "ro.build.version.codename": "REL",
    "ro.build.version.incremental": "S911BXXS6CXK2",
    "ro.build.version.release": "14",
    "ro.build.version.release_or_codename": "14",
    "ro.build.version.sdk": "34",
    "ro.build.version.security_patch": "2024-11-01",
    "ro.debuggable": "0",
    "ro.hardware": "qcom",
    "ro.product.board": "kalama",
    "ro.product.brand": "samsung",
    "ro.product.cpu.abi": "arm64-v8a",
    "ro.product.cpu.abilist": "arm64-v8a,armeabi-v7a,armeabi",
    "ro.product.cpu.abilist32": "armeabi-v7a,armeabi",
    "ro.product.cpu.abilist64": "arm64-v8a",
    "ro.product.device": "dm1q",
    "ro.product.first_api_level": "33",
    "ro.product.locale": "en-GB",
    "ro.product.manufacturer": "samsung",
    "ro.product.model": "SM-S911B",
    "ro.product.name": "dm1qxxx",
    "ro.secure": "1",
    "ro.serialno": "R5CW20ABCDE",
    "ro.soc.manufacturer": "QTI",
    "ro.soc.model": "SM8550",
    "sys.boot_completed": "1",
}

_GENERIC_PACKAGES = (
    "android", "com.android.settings", "com.android.systemui", "com.android.shell", "com.android.phone",
    "com.samsung.android.app.launcher", "com.sec.android.app.launcher", "com.sec.android.app.camera",
    "com.samsung.android.messaging", "com.google.android.gms", "com.android.vending", "com.android.chrome",
    "com.google.android.webview", "com.samsung.android.lool", "com.sec.android.app.myfiles",
)


def _generic() -> Profile:
    return Profile(
        name="generic",
        props=dict(_GENERIC_PROPS),
        system_packages=_GENERIC_PACKAGES,
        battery=BatteryConfig(idle_power_w=0.7, core_power_w=1.8, capacity_uah=3_900_000,
                              design_capacity_uah=3_900_000, start_level_pct=72.0),
        has_power_stats=False,
        current_unit="ma",
        cores=8,
        hostname="dm1q",
        screen_density=480,
        cpu_sysfs={"/sys/devices/system/cpu/possible": "0-7\n", "/sys/devices/system/cpu/present": "0-7\n",
                   "/sys/devices/system/cpu/online": "0-7\n"},
    )


PROFILES = {"pixel-8": _pixel8, "generic": _generic}


def load_profile(name: str) -> Profile:
    try:
        return PROFILES[name]()
    except KeyError:
        raise ConfigError(f"unknown simulated phone profile {name!r}; choose one of: {', '.join(PROFILES)}",
                          next_step="Use pixel-8 or generic (--profile of device_runner.sim, --sim-profile of pipeline.deploy).") from None
