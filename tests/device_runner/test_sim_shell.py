"""The simulated phone's shell: parsing, exit codes, and output shapes checked against real-phone outputs."""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from pathlib import Path

import pytest

from device_runner.sim import Faults, SimulatedPhone
from device_runner.sim.shell import Shell, ShellSyntaxError, parse

OUTPUTS = Path(__file__).parent / "device_outputs"


def body(name: str) -> str:
    """A reference output without its '#' header lines."""
    lines = (OUTPUTS / name).read_text().splitlines(keepends=True)
    i = 0
    while i < len(lines) and lines[i].startswith("#"):
        i += 1
    return "".join(lines[i:])


def keys(text: str, sep: str = ":") -> list[str]:
    return [line.split(sep, 1)[0].strip() for line in text.splitlines() if sep in line]


@pytest.fixture
def phone(tmp_path: Path) -> SimulatedPhone:
    return SimulatedPhone(tmp_path / "p", profile="pixel-8")  # not started: the shell needs no socket


@pytest.fixture
def sh(phone: SimulatedPhone) -> Shell:
    return Shell(phone)


def run(sh: Shell, line: str) -> tuple[str, str, int]:
    out = sh.run(line)
    return out.stdout().decode(), out.stderr().decode(), out.code


# --- parsing ------------------------------------------------------------------------------------

def test_operators_and_status(sh: Shell) -> None:
    assert run(sh, "false; echo $?") == ("1\n", "", 0)
    assert run(sh, "true && echo yes || echo no") == ("yes\n", "", 0)
    assert run(sh, "false && echo yes || echo no") == ("no\n", "", 0)
    assert run(sh, "echo 'a  b' \"c $? d\" e\\ f") == ("a  b c 0 d e f\n", "", 0)
    assert run(sh, "echo '$?'") == ("$?\n", "", 0)


def test_redirections(sh: Shell, phone: SimulatedPhone) -> None:
    assert run(sh, "nope 2>&1; echo $?") == ("/system/bin/sh: nope: inaccessible or not found\n127\n", "", 0)
    assert run(sh, "ls /nothing >/dev/null 2>&1; echo $?") == ("1\n", "", 0)
    assert run(sh, "ls /nothing 2>/dev/null") == ("", "", 1)
    assert run(sh, "echo hi > /data/local/tmp/f; echo more >> /data/local/tmp/f; cat < /data/local/tmp/f") == (
        "hi\nmore\n", "", 0)
    assert run(sh, "echo to-err >&2") == ("", "to-err\n", 0)
    assert phone.host_path("/data/local/tmp/f").read_text() == "hi\nmore\n"


def test_pipes_and_globs(sh: Shell) -> None:
    out, _, code = run(sh, "cat /sys/devices/system/cpu/cpu*/cpufreq/scaling_cur_freq | wc -l")
    assert (out, code) == ("9\n", 0)
    assert run(sh, "getprop | grep -c 'ro.product.model'") == ("1\n", "", 0)


@pytest.mark.parametrize("line", ["echo \"open", "&& echo x", "echo x |", "echo x &&"])
def test_syntax_errors(sh: Shell, line: str) -> None:
    _, err, code = run(sh, line)
    assert code == 2 and err.startswith("/system/bin/sh: ")


def test_parse_structure() -> None:
    program = parse("a 1 && b | c 2>&1; d")
    assert [conn for conn, _ in program] == [";", "&&", ";"]
    assert [len(pipeline) for _, pipeline in program] == [1, 2, 1]
    with pytest.raises(ShellSyntaxError):
        parse("| a")


# --- outputs a Pixel prints ----------------------------------------------------------------------

def test_unknown_command_like_mksh(sh: Shell) -> None:
    assert run(sh, "foo") == ("", body("unknown_command.txt"), 127)
    assert run(sh, "sh -c foo") == ("", "sh: foo: inaccessible or not found\n", 127)


def test_getprop(sh: Shell, phone: SimulatedPhone) -> None:
    assert run(sh, "getprop ro.product.model") == (body("getprop_single_key.txt"), "", 0)
    assert run(sh, "getprop no.such.key") == ("\n", "", 0)
    assert run(sh, "getprop no.such.key fallback") == ("fallback\n", "", 0)
    listing, _, code = run(sh, "getprop")
    lines = listing.splitlines()
    names = [line[1:line.index("]")] for line in lines]
    assert code == 0 and names == sorted(names)  # getprop sorts by name
    assert all(re.fullmatch(r"\[[^\]]+\]: \[.*\]", line) for line in lines)
    reference = set(re.findall(r"^\[([^\]]+)\]", body("getprop_pixel8_android15_user.txt"), re.M))
    assert reference <= set(re.findall(r"^\[([^\]]+)\]", listing, re.M))
    assert f"[ro.serialno]: [{phone.device_serial}]" in lines


def test_sha256sum_and_missing(sh: Shell, phone: SimulatedPhone) -> None:
    phone.host_path("/data/local/tmp/x").write_bytes(b'{"job": "bench"}\n')
    assert run(sh, "sha256sum /data/local/tmp/x") == (body("sha256sum.txt"), "", 0)
    assert run(sh, "sha256sum /data/local/tmp/missing") == ("", body("sha256sum_missing.txt"), 1)


def test_ls_l_shape(sh: Shell, phone: SimulatedPhone) -> None:
    phone.host_path("/data/local/tmp/x").write_bytes(b"x" * 17)
    out, _, code = run(sh, "ls -l /data/local/tmp/x")
    ref = body("ls_l.txt").split()
    got = out.split()
    assert code == 0 and len(got) == len(ref) and got[2:5] == ref[2:5] and got[-1] == ref[-1]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", got[5]) and re.fullmatch(r"\d\d:\d\d", got[6])
    assert run(sh, "ls -l /data/local/tmp/missing") == ("", body("ls_l_missing.txt"), 1)
    listing, _, _ = run(sh, "ls -l /data/local/tmp")
    assert listing.startswith("total ") and listing.rstrip().endswith(" x")


def test_file_tools(sh: Shell, phone: SimulatedPhone) -> None:
    assert run(sh, "mkdir /data/local/tmp/a/b")[2] == 1
    assert run(sh, "mkdir -p /data/local/tmp/a/b && ls /data/local/tmp/a") == ("b\n", "", 0)
    assert run(sh, "rm /data/local/tmp/a") == ("", "rm: /data/local/tmp/a: Is a directory\n", 1)
    assert run(sh, "rm -rf /data/local/tmp/a; echo $?") == ("0\n", "", 0)
    assert run(sh, "rm /data/local/tmp/none") == ("", "rm: /data/local/tmp/none: No such file or directory\n", 1)
    assert run(sh, "rm -f /data/local/tmp/none") == ("", "", 0)
    phone.host_path("/data/local/tmp/s").write_text("x")
    assert run(sh, "chmod 755 /data/local/tmp/s && stat -c %a /data/local/tmp/s") == ("755\n", "", 0)
    assert run(sh, "[ -f /data/local/tmp/s ] && echo file") == ("file\n", "", 0)
    assert run(sh, "test -d /data/local/tmp/s || echo notdir") == ("notdir\n", "", 0)


def test_am_start_success_and_class_not_found(sh: Shell, phone: SimulatedPhone) -> None:
    out, _, code = run(sh, "am start -W -n org.vitpalette.bench/.BenchmarkActivity --es job /data/local/tmp/j.json")
    assert code == 0
    assert keys(out) == keys(body("am_start_W_success.txt"))
    assert out.splitlines()[0] == "Starting: Intent { cmp=org.vitpalette.bench/.BenchmarkActivity (has extras) }"
    assert phone.started_intents[-1]["extras"] == {"job": "/data/local/tmp/j.json"}
    assert run(sh, "pidof org.vitpalette.bench")[2] == 0
    ref = "am start -W -n com.example.benchrunner/.NoSuchActivity --es job /data/local/tmp/job.json"
    assert run(sh, ref) == (body("am_start_W_class_not_found.txt"), "", 1)
    assert run(sh, "am force-stop org.vitpalette.bench") == (body("am_force_stop.txt"), "", 0)
    assert run(sh, "pidof org.vitpalette.bench")[2] == 1


def test_pm(sh: Shell, phone: SimulatedPhone) -> None:
    listing, _, code = run(sh, "pm list packages")
    assert code == 0 and "package:com.google.android.gms\n" in listing and "package:org.vitpalette.bench\n" in listing
    assert run(sh, "pm list packages -3") == ("package:org.vitpalette.bench\n", "", 0)
    out, _, code = run(sh, "pm path org.vitpalette.bench")
    assert code == 0 and re.fullmatch(r"package:/data/app/~~[\w-]+==/org\.vitpalette\.bench-[\w-]+==/base\.apk\n", out)
    assert run(sh, "pm path com.example.nothing") == ("", "", 1)


def test_pm_install_reads_the_manifest(sh: Shell, phone: SimulatedPhone) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("AndroidManifest.xml", '<manifest xmlns:android="x" package="com.example.other">'
                                          '<application><activity android:name=".Main"/></application></manifest>')
    phone.host_path("/data/local/tmp/app.apk").write_bytes(buf.getvalue())
    assert run(sh, "pm install -r /data/local/tmp/app.apk") == (body("pm_install_success.txt"), "", 0)
    assert "com.example.other" in phone.packages
    assert run(sh, "am start -n com.example.other/.Main")[2] == 0
    phone.host_path("/data/local/tmp/bad.apk").write_bytes(b"not a zip")
    out, _, code = run(sh, "pm install /data/local/tmp/bad.apk")
    assert code == 1 and out.startswith("Failure [INSTALL_PARSE_FAILED_NOT_APK")


def test_run_as(sh: Shell, phone: SimulatedPhone) -> None:
    assert run(sh, "run-as com.example.nosuchpkg cat files/x") == ("", body("run_as_unknown_package.txt"), 1)
    err = body("run_as_not_debuggable.txt").replace("com.example.benchrunner", "com.google.android.gms")
    assert run(sh, "run-as com.google.android.gms cat files/x") == ("", err, 1)
    phone.host_path("/data/data/org.vitpalette.bench/files/r.json").write_text("{}")
    assert run(sh, "cat /data/user/0/org.vitpalette.bench/files/r.json")[2] == 1  # private to the app
    assert run(sh, "run-as org.vitpalette.bench cat files/r.json") == ("{}", "", 0)


def test_dumpsys_battery_and_sysfs_shapes(sh: Shell) -> None:
    out, _, code = run(sh, "dumpsys battery")
    assert code == 0 and keys(out) == keys(body("dumpsys_battery_discharging.txt"))
    uevent, _, _ = run(sh, "cat /sys/class/power_supply/battery/uevent")
    assert keys(uevent, "=") == keys(body("cat_battery_uevent_discharging.txt"), "=")
    fields = dict(line.split("=", 1) for line in uevent.splitlines())
    assert int(fields["POWER_SUPPLY_CURRENT_NOW"]) < 0 and fields["POWER_SUPPLY_STATUS"] == "Discharging"
    for node in ("capacity", "charge_counter", "current_now", "voltage_now", "temp"):
        value, _, code = run(sh, f"cat /sys/class/power_supply/battery/{node}")
        assert code == 0 and re.fullmatch(r"-?\d+\n", value)
    assert run(sh, "cat /sys/class/power_supply/battery/status") == ("Discharging\n", "", 0)


def test_thermalservice_shape(sh: Shell, phone: SimulatedPhone) -> None:
    out, _, _ = run(sh, "dumpsys thermalservice")
    ref = body("dumpsys_thermalservice_normal.txt")
    section_lines = [line for line in out.splitlines() if not line.startswith("\t")]
    assert section_lines == [line for line in ref.splitlines() if not line.startswith("\t")]
    assert "Thermal Status: 0" in out
    phone.faults = Faults(thermal_status=2)
    out, _, _ = run(sh, "dumpsys thermalservice")
    assert "Thermal Status: 2" in out
    skin = re.findall(r"mValue=([\d.]+), mType=3, mName=VIRTUAL-SKIN, mStatus=2", out)
    assert skin and all(43.0 <= float(v) < 45.0 for v in skin)


def test_ipowerstats_rails(sh: Shell, phone: SimulatedPhone) -> None:
    out, _, code = run(sh, "dumpsys android.hardware.power.stats.IPowerStats/default")
    ref = body("dumpsys_ipowerstats_default.txt")
    assert code == 0 and out.startswith("\n=====")
    rail_re = r"^\s+\[(\w+)\]:(\S+)\s+([\d.]+) mWs$"
    assert [m[:2] for m in re.findall(rail_re, out, re.M)] == [m[:2] for m in re.findall(rail_re, ref, re.M)]
    before = {m[0]: float(m[2]) for m in re.findall(rail_re, out, re.M)}
    phone.battery.add_cpu_work(cpu_s=10.0, wall_s=10.0)
    after = {m[0]: float(m[2]) for m in re.findall(rail_re, run(sh, "dumpsys android.hardware.power."
                                                                      "stats.IPowerStats/default")[0], re.M)}
    assert after["S2M_VDD_CPUCL2"] - before["S2M_VDD_CPUCL2"] > 1000  # 15 J of work, 35 % on the big core
    assert all(after[k] >= before[k] for k in before)


def test_generic_profile_differs(tmp_path: Path) -> None:
    phone = SimulatedPhone(tmp_path / "g", profile="generic")
    sh = Shell(phone)
    assert run(sh, "getprop ro.product.manufacturer") == ("samsung\n", "", 0)
    out, err, code = run(sh, "dumpsys android.hardware.power.stats.IPowerStats/default")
    assert (out, code) == ("", 0) and err == "Can't find service: android.hardware.power.stats.IPowerStats/default\n"
    current = int(run(sh, "cat /sys/class/power_supply/battery/current_now")[0])
    assert -2000 < current < 0  # mA, as this vendor reports it
    assert "Thermal Status: 0" in run(sh, "dumpsys thermalservice")[0]


def test_settings_svc_input(sh: Shell, phone: SimulatedPhone) -> None:
    assert run(sh, "settings get global stay_on_while_plugged_in") == ("0\n", "", 0)
    assert run(sh, "svc power stayon usb; settings get global stay_on_while_plugged_in") == ("2\n", "", 0)
    assert run(sh, "settings put system screen_brightness 10; settings get system screen_brightness") == ("10\n", "", 0)
    assert run(sh, "settings get system nothing") == ("null\n", "", 0)
    run(sh, "input keyevent KEYCODE_SLEEP")
    assert "Display Power: state=OFF" in run(sh, "dumpsys power")[0]
    run(sh, "input keyevent KEYCODE_WAKEUP")
    assert "mWakefulness=Awake" in run(sh, "dumpsys power")[0]


def test_hash_of_large_file_streams(sh: Shell, phone: SimulatedPhone) -> None:
    data = b"0123456789" * 300_000
    phone.host_path("/sdcard/Download/big").write_bytes(data)
    out, _, _ = run(sh, "sha256sum /storage/emulated/0/Download/big")
    assert out == f"{hashlib.sha256(data).hexdigest()}  /storage/emulated/0/Download/big\n"


def binary_manifest(package: str, activity: str, *, utf8: bool) -> bytes:
    """A minimal binary AndroidManifest.xml (AXML) as aapt2 writes it: string pool, then elements."""
    import struct

    strings = ["manifest", "package", package, "activity", "name", activity]
    data = b""
    offsets = []
    for text in strings:
        offsets.append(len(data))
        if utf8:
            raw = text.encode()
            data += bytes([len(text), len(raw)]) + raw + b"\0"
        else:
            data += struct.pack("<H", len(text)) + text.encode("utf-16-le") + b"\0\0"
    data += b"\0" * (-len(data) % 4)
    header_size = 28
    strings_start = header_size + 4 * len(strings)
    pool = struct.pack("<HHI5I", 0x0001, header_size, strings_start + len(data), len(strings), 0,
                       0x100 if utf8 else 0, strings_start, 0) + struct.pack(f"<{len(strings)}I", *offsets) + data

    def element(name_idx: int, attr_name: int, attr_value: int) -> bytes:
        attr = struct.pack("<IIIHBBI", 0xFFFFFFFF, attr_name, attr_value, 8, 0, 3, attr_value)
        ext = struct.pack("<II", 0xFFFFFFFF, name_idx) + struct.pack("<HHHHHH", 20, 20, 1, 0, 0, 0)
        chunk = struct.pack("<II", 1, 0xFFFFFFFF) + ext + attr  # line number, comment, element, attribute
        return struct.pack("<HHI", 0x0102, 16, 8 + len(chunk)) + chunk

    resource_map = struct.pack("<HHII", 0x0180, 8, 12, 0x01010003)
    xml = pool + resource_map + element(0, 1, 2) + element(3, 4, 5)
    return struct.pack("<HHI", 0x0003, 8, 8 + len(xml)) + xml


@pytest.mark.parametrize("utf8", [False, True])
def test_pm_install_reads_a_binary_manifest(sh: Shell, phone: SimulatedPhone, utf8: bool) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("AndroidManifest.xml", binary_manifest("com.example.binary", ".Bench", utf8=utf8))
        z.writestr("classes.dex", b"dex\n035\0")
    phone.host_path("/data/local/tmp/bin.apk").write_bytes(buf.getvalue())
    assert run(sh, "pm install -r -t /data/local/tmp/bin.apk") == ("Success\n", "", 0)
    assert phone.packages["com.example.binary"].activities == {"com.example.binary.Bench"}
