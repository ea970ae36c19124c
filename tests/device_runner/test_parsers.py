"""Parsers against what a Pixel 8 prints (tests/device_runner/device_outputs, a copy of
shared/device-outputs) and against variations (reordered keys, extra lines, CRLF, mA vs uA) that
prove the parsers read by key and not by line position."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from device_runner import parsers
from device_runner.errors import UnexpectedOutputError
from device_runner.profiles import PROFILES, CurrentSign, CurrentUnit, normalize_current_ua

OUTPUTS = Path(__file__).resolve().parent / "device_outputs"


def body(name: str) -> str:
    """The exact device output: drop the leading '#' header lines, keep the rest byte for byte."""
    lines = (OUTPUTS / name).read_text(encoding="utf-8").splitlines(keepends=True)
    i = 0
    while i < len(lines) and lines[i].startswith("#"):
        i += 1
    return "".join(lines[i:])


def shuffled_lines(text: str, seed: int = 0) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    random.Random(seed).shuffle(lines)
    return "\n".join(lines) + "\n"


def test_every_output_file_is_parsed_by_some_test() -> None:
    covered = {
        "am_force_stop.txt", "am_start_W_class_not_found.txt", "am_start_W_success.txt",
        "cat_battery_capacity.txt", "cat_battery_charge_counter.txt", "cat_battery_current_now.txt",
        "cat_battery_status.txt", "cat_battery_temp.txt", "cat_battery_uevent_discharging.txt",
        "cat_battery_uevent_real_pixel8_kerneltoast_issue4.txt", "cat_battery_uevent_usb_charging.txt",
        "cat_battery_voltage_now.txt", "dumpsys_battery_discharging.txt", "dumpsys_battery_usb_charging.txt",
        "dumpsys_ipowerstats_default.txt", "dumpsys_powerstats.txt", "dumpsys_thermalservice_normal.txt",
        "dumpsys_thermalservice_throttled.txt", "getprop_pixel8_android14_userdebug_cpuinfo_subset.txt",
        "getprop_pixel8_android15_user.txt", "getprop_single_key.txt", "ls_l.txt", "ls_l_missing.txt",
        "pm_install_failure.txt", "pm_install_success.txt", "pm_list_packages.txt", "pm_list_packages_3.txt",
        "pm_path.txt", "run_as_not_debuggable.txt", "run_as_unknown_package.txt", "sha256sum.txt",
        "sha256sum_missing.txt", "unknown_command.txt",
        # cpu files are read by the run-hygiene code, not by these parsers
        "cpu_possible.txt", "cpu_scaling_available_frequencies.txt", "cpu_scaling_cur_freq.txt",
    }
    present = {p.name for p in OUTPUTS.glob("*.txt")}
    assert present <= covered, f"new device output files without a parser test: {sorted(present - covered)}"


# ------------------------------------------------------------------------------------------- getprop


@pytest.mark.parametrize(
    "name, release, sdk",
    [("getprop_pixel8_android15_user.txt", "15", "35"),
     ("getprop_pixel8_android14_userdebug_cpuinfo_subset.txt", "14", "34")],
)
def test_getprop_full_listing(name: str, release: str, sdk: str) -> None:
    props = parsers.parse_getprop(body(name))
    assert props["ro.product.model"] == "Pixel 8"
    assert props["ro.product.manufacturer"] == "Google"
    assert props["ro.build.version.release"] == release
    assert props["ro.build.version.sdk"] == sdk
    assert props["ro.product.cpu.abi"] == "arm64-v8a"
    assert props["ro.board.platform"] == "zuma"
    # empty values are kept as empty strings, not dropped
    assert all(isinstance(v, str) for v in props.values())
    assert len(props) > 100


def test_getprop_reordered_multiline_and_crlf() -> None:
    text = body("getprop_pixel8_android15_user.txt")
    shuffled = shuffled_lines(text, seed=3).replace("\n", "\r\n")
    shuffled += "[ro.test.multiline]: [first line\r\nsecond line]\r\n[ro.after]: [x]\r\n"
    props = parsers.parse_getprop(shuffled)
    assert props["ro.soc.model"] == "Tensor G3"
    assert props["ro.test.multiline"] == "first line\nsecond line"
    assert props["ro.after"] == "x"
    assert parsers.parse_getprop(text).keys() <= props.keys()


def test_getprop_single_key_and_unset_key() -> None:
    assert parsers.parse_getprop_value(body("getprop_single_key.txt")) == "Pixel 8"
    assert parsers.parse_getprop_value("\n") is None


# ------------------------------------------------------------------------------------------- battery


def test_dumpsys_battery_discharging() -> None:
    b = parsers.parse_dumpsys_battery(body("dumpsys_battery_discharging.txt"))
    assert (b.level, b.scale, b.status_code) == (80, 100, 3)
    assert (b.ac_powered, b.usb_powered, b.wireless_powered) == (False, False, False)
    assert b.voltage_mv == 4061 and b.temperature_decic == 296 and b.charge_counter_uah == 3560000
    assert b.current_now_raw is None
    assert parsers.battery_status_word(b.status_code) == "discharging"


def test_dumpsys_battery_charging_reordered_with_android16_lines() -> None:
    text = body("dumpsys_battery_usb_charging.txt")
    first, *rest = text.splitlines()
    variant = "\n".join([first, "  (UPDATES STOPPED -- use 'reset' to restart)", "  Capacity level: 3",
                         *reversed(rest), "  current now: -412"]) + "\n"
    b = parsers.parse_dumpsys_battery(variant)
    assert b.usb_powered is True and b.ac_powered is False
    assert parsers.battery_status_word(b.status_code) == "charging"
    assert b.voltage_mv == 4213 and b.temperature_decic == 312
    assert b.current_now_raw == -412 and b.updates_stopped


def test_dumpsys_battery_without_level_is_an_error_that_names_the_command() -> None:
    with pytest.raises(UnexpectedOutputError, match="dumpsys battery"):
        parsers.parse_dumpsys_battery("Can't find service: battery\n")


@pytest.mark.parametrize(
    "name, status, current",
    [("cat_battery_uevent_discharging.txt", "discharging", -312500),
     ("cat_battery_uevent_usb_charging.txt", "charging", 437500),
     ("cat_battery_uevent_real_pixel8_kerneltoast_issue4.txt", "not_charging", -268750)],
)
def test_uevent(name: str, status: str, current: int) -> None:
    ev = parsers.parse_uevent(body(name))
    assert parsers.battery_status_word(ev["status"]) == status
    assert int(ev["current_now"]) == current
    assert ev["technology"] == "Li-ion"
    # reordered keys give the same mapping
    assert parsers.parse_uevent(shuffled_lines(body(name), seed=7)) == ev


def test_real_pixel8_uevent_values() -> None:
    ev = parsers.parse_uevent(body("cat_battery_uevent_real_pixel8_kerneltoast_issue4.txt"))
    assert ev["capacity"] == "99"
    assert ev["voltage_now"] == "4290625"  # uV
    assert ev["temp"] == "368"  # 0.1 degC
    assert ev["charge_counter"] == "18398000"


@pytest.mark.parametrize(
    "name, value",
    [("cat_battery_capacity.txt", 80), ("cat_battery_charge_counter.txt", 3560000),
     ("cat_battery_current_now.txt", -312500), ("cat_battery_temp.txt", 296),
     ("cat_battery_voltage_now.txt", 4061250)],
)
def test_sysfs_single_values(name: str, value: int) -> None:
    assert parsers.parse_sysfs_int(body(name)) == value


def test_sysfs_status_word() -> None:
    assert parsers.battery_status_word(body("cat_battery_status.txt")) == "discharging"
    assert parsers.battery_status_word("Not charging\n") == "not_charging"
    assert parsers.battery_status_word("weird") == "unknown"


# ------------------------------------------------------------------------------------------- current units


@pytest.mark.parametrize(
    "raw, unit, sign, status, expected",
    [
        (-312500, CurrentUnit.UA, CurrentSign.NEGATIVE_IS_DISCHARGE, "discharging", -312500),
        (437500, CurrentUnit.UA, CurrentSign.NEGATIVE_IS_DISCHARGE, "charging", 437500),
        (-312, CurrentUnit.MA, CurrentSign.NEGATIVE_IS_DISCHARGE, "discharging", -312000),
        (312, CurrentUnit.MA, CurrentSign.POSITIVE_IS_DISCHARGE, "discharging", -312000),
        (312500, CurrentUnit.UA, CurrentSign.POSITIVE_IS_DISCHARGE, "discharging", -312500),
        (-312, CurrentUnit.AUTO, CurrentSign.AUTO, "discharging", -312000),  # small -> mA
        (312500, CurrentUnit.AUTO, CurrentSign.AUTO, "discharging", -312500),  # flipped by status
        (-437500, CurrentUnit.AUTO, CurrentSign.AUTO, "charging", 437500),
        (-268750, CurrentUnit.AUTO, CurrentSign.AUTO, "not_charging", -268750),  # kept as printed
    ],
)
def test_normalize_current(raw, unit, sign, status, expected) -> None:
    assert normalize_current_ua(raw, unit=unit, sign=sign, status=status) == expected


def test_profiles_state_their_current_convention() -> None:
    assert PROFILES["pixel"].current_unit is CurrentUnit.UA
    assert PROFILES["pixel"].current_sign is CurrentSign.NEGATIVE_IS_DISCHARGE
    assert PROFILES["generic"].current_unit is CurrentUnit.AUTO
    # the same mA reading from a generic phone and the same uA reading from a Pixel agree
    assert PROFILES["generic"].normalize_current_ua(300, "discharging") == \
        PROFILES["pixel"].normalize_current_ua(-300000, "discharging") == -300000


# ------------------------------------------------------------------------------------------- thermal


def test_thermal_normal_and_throttled() -> None:
    normal = parsers.parse_thermalservice(body("dumpsys_thermalservice_normal.txt"))
    hot = parsers.parse_thermalservice(body("dumpsys_thermalservice_throttled.txt"))
    assert normal.status == 0 and hot.status == 2
    assert hot.override is False
    # fresh readings come from "Current temperatures from HAL", not the stale cache
    assert hot.temperatures["VIRTUAL-SKIN"].value_c == pytest.approx(43.63515)
    assert hot.temperatures["VIRTUAL-SKIN"].status == 2
    assert hot.temperatures["BIG"].value_c == pytest.approx(79.0)


def test_thermal_status_found_by_key_after_reordering() -> None:
    text = body("dumpsys_thermalservice_throttled.txt")
    lines = text.splitlines()
    status_line = [ln for ln in lines if ln.startswith("Thermal Status")][0]
    rest = [ln for ln in lines if ln != status_line]
    variant = "\n".join(["ThermalHAL AIDL 3 extra banner", *rest, status_line.replace("2", "5")]) + "\n"
    assert parsers.parse_thermalservice(variant).status == 5


def test_thermal_missing_status_is_an_error() -> None:
    with pytest.raises(UnexpectedOutputError, match="thermalservice"):
        parsers.parse_thermalservice("Can't find service: thermalservice\n")


# ------------------------------------------------------------------------------------------- power rails


def test_ipowerstats_rails() -> None:
    rails = parsers.parse_ipowerstats(body("dumpsys_ipowerstats_default.txt"))
    assert len(rails) == 24
    little = rails["S4M_VDD_CPUCL0"]
    assert little.subsystem == "CPU(LITTLE)"
    assert little.energy_uws == 4477172740
    assert rails["S2M_VDD_CPUCL2"].subsystem == "CPU(BIG)"
    # Pixel 6/7 names do not exist on a Pixel 8
    assert "S10M_VDD_TPU" not in rails and "L2S_VDD_AOC_RET" not in rails
    # consumers ("CPUCL0 : ... mWs") are not rails
    assert "CPUCL0" not in rails


def test_ipowerstats_reordered_and_without_meter() -> None:
    text = body("dumpsys_ipowerstats_default.txt")
    start = text.index("============= PowerStats HAL 2.0 energy meter")
    end = text.index("========== End of PowerStats HAL 2.0 energy meter")
    meter = text[start:end].splitlines()
    banner, header, rows = meter[0], meter[1], meter[2:]
    variant = "\n".join([banner, header, *reversed(rows), text[end:].splitlines()[0]]) + "\n"
    variant = text[:start] + variant  # meter section moved to the end and rows reversed
    assert parsers.parse_ipowerstats(variant) == parsers.parse_ipowerstats(text)
    assert parsers.parse_ipowerstats(text[:start]) == {}
    # `dumpsys powerstats` lists channels but prints no energy values
    assert parsers.parse_ipowerstats(body("dumpsys_powerstats.txt")) == {}
    assert parsers.parse_ipowerstats("") == {}


# ------------------------------------------------------------------------------------------- packages


def test_pm_list_packages() -> None:
    everything = parsers.parse_pm_list_packages(body("pm_list_packages.txt"))
    third = parsers.parse_pm_list_packages(body("pm_list_packages_3.txt"))
    assert "com.google.android.apps.nexuslauncher" in everything or len(everything) > 100
    assert third == ["com.whatsapp", "com.spotify.music", "com.example.benchrunner", "org.mozilla.firefox",
                     "com.termux"]
    with_paths = "package:/data/app/~~x==/com.a-y==/base.apk=com.a\r\npackage:/system/app/B/B.apk=com.b\r\n"
    assert parsers.parse_pm_list_packages(with_paths) == ["com.a", "com.b"]
    assert parsers.parse_pm_list_packages("") == []


def test_pm_path() -> None:
    paths = parsers.parse_pm_path(body("pm_path.txt"))
    assert len(paths) == 1 and paths[0].endswith("/com.example.benchrunner-kutf_uauL-w61xx3dTFXjw==/base.apk")
    assert parsers.parse_pm_path("") == []


def test_pm_install_success_and_failure() -> None:
    assert parsers.parse_pm_install(body("pm_install_success.txt")).ok
    fail = parsers.parse_pm_install(body("pm_install_failure.txt"))
    assert not fail.ok
    assert fail.code == "INSTALL_FAILED_UPDATE_INCOMPATIBLE"
    assert "signatures do not match" in fail.message
    noisy = "Performing Streamed Install\nFailure [INSTALL_FAILED_TEST_ONLY: installPackageLI]\n"
    assert parsers.parse_pm_install(noisy).code == "INSTALL_FAILED_TEST_ONLY"
    assert not parsers.parse_pm_install("Error: something odd\n").ok


# ------------------------------------------------------------------------------------------- am


def test_am_start_success() -> None:
    r = parsers.parse_am_start(body("am_start_W_success.txt"))
    assert r.ok and r.status == "ok" and r.launch_state == "COLD"
    assert r.total_time_ms == 612 and r.wait_time_ms == 618


def test_am_start_class_not_found_and_reordered() -> None:
    r = parsers.parse_am_start(body("am_start_W_class_not_found.txt"))
    assert not r.ok
    assert "does not exist" in (r.error or "")
    variant = "Status: ok\nTotalTime: 5\nWarning: Activity not started, intent has been delivered\n" \
              "LaunchState: HOT\nStarting: Intent { cmp=a/.B }\nComplete\n"
    v = parsers.parse_am_start(variant)
    assert v.ok and v.launch_state == "HOT" and v.total_time_ms == 5 and v.warning


def test_am_force_stop_prints_nothing() -> None:
    assert body("am_force_stop.txt") == ""


# ------------------------------------------------------------------------------------------- files


def test_sha256sum() -> None:
    digest = parsers.parse_sha256sum(body("sha256sum.txt"), "/data/local/tmp/x")
    assert digest == hashlib.sha256(b'{"job": "bench"}\n').hexdigest()
    assert parsers.parse_sha256sum(body("sha256sum_missing.txt")) is None
    assert parsers.is_missing_file_message(body("sha256sum_missing.txt"))
    two = f"{'a' * 64}  /x\n{'B' * 64}  /y\n"
    assert parsers.parse_sha256sum(two, "/y") == "b" * 64
    assert parsers.parse_sha256sum(two) == "a" * 64


def test_ls_l() -> None:
    (entry,) = parsers.parse_ls_l(body("ls_l.txt"))
    assert entry.size_bytes == 17 and entry.name == "/data/local/tmp/x"
    assert entry.owner == "shell" and entry.group == "shell" and entry.modified == "2024-11-05 09:26"
    assert not entry.is_dir
    assert parsers.parse_ls_l(body("ls_l_missing.txt")) == []
    assert parsers.is_missing_file_message(body("ls_l_missing.txt"))
    listing = ("total 24\r\ndrwxrwx--x 3 shell shell 4096 2024-11-05 09:26 models\r\n"
               "lrwxrwxrwx 1 root root 7 2024-11-05 09:27 link name -> target\r\n"
               "-rw-r--r-- 1 shell shell 5242880 2024-11-05 09:28 big file.bin\r\n")
    d, link, big = parsers.parse_ls_l(listing)
    assert d.is_dir and d.name == "models"
    assert link.name == "link name" and link.link_target == "target"
    assert big.size_bytes == 5242880 and big.name == "big file.bin"


def test_shell_error_messages() -> None:
    assert parsers.is_not_found_command(body("unknown_command.txt"))
    assert not parsers.is_not_found_command("ok\n")
    assert "not debuggable" in body("run_as_not_debuggable.txt")
    assert "unknown package" in body("run_as_unknown_package.txt")
    assert parsers.is_permission_denied("cat: /sys/class/power_supply/battery/uevent: Permission denied\n")
