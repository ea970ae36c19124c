"""Device: unit tests over a scripted transport that answers with real Pixel outputs, then
end-to-end tests against the simulated phone (a real TCP ADB peer) including its faults."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from pathlib import Path

import pytest

from device_runner.device import EXIT_MARKER, Device, wrap_with_exit_marker
from device_runner.errors import (
    AppStartError,
    AuthorizationError,
    ConnectionLostError,
    DeviceStorageFullError,
    InstallError,
    PushVerificationError,
    RemoteFileNotFoundError,
    ShellError,
    UnexpectedOutputError,
)
from device_runner.profiles import profile_for_properties

OUTPUTS = Path(__file__).resolve().parent / "device_outputs"


def body(name: str) -> str:
    lines = (OUTPUTS / name).read_text(encoding="utf-8").splitlines(keepends=True)
    i = 0
    while i < len(lines) and lines[i].startswith("#"):
        i += 1
    return "".join(lines[i:])


# =========================================================================================== scripted


class ScriptedTransport:
    """Answers shell commands from a table; unknown commands answer like mksh (exit 127).

    ``drops``: how many of the next calls fail with ConnectionLostError. Every scripted command must
    be used by the test (checked by ``assert_all_used``), so stale expectations fail loudly.
    """

    address = "10.0.0.7:5555"

    def __init__(self, table: dict[str, tuple[str, int]], *, drops: int = 0) -> None:
        self.table = dict(table)
        self.used: set[str] = set()
        self.calls: list[str] = []
        self.drops = drops
        self.opens = 0
        self.is_open = True

    def open(self, timeout_s: float) -> None:
        self.opens += 1
        self.is_open = True

    def close(self) -> None:
        self.is_open = False

    def shell(self, command: str, timeout_s: float) -> bytes:
        assert self.is_open, "shell on a closed transport"
        suffix = f'; echo "{EXIT_MARKER}$?"'
        assert command.endswith(suffix), command
        cmd = command[: -len(suffix)]
        self.calls.append(cmd)
        if self.drops:
            self.drops -= 1
            raise ConnectionLostError("scripted drop")
        if cmd in self.table:
            self.used.add(cmd)
            out, code = self.table[cmd]
        else:
            out, code = f"/system/bin/sh: {cmd.split()[0]}: inaccessible or not found\n", 127
        return f"{out}{EXIT_MARKER}{code}\n".encode()

    def push(self, *a, **k):  # pragma: no cover - not scripted
        raise AssertionError("unexpected push")

    pull = stat = push

    def assert_all_used(self) -> None:
        unused = set(self.table) - self.used
        assert not unused, f"scripted commands never called: {sorted(unused)}"


PIXEL = {
    "getprop": (body("getprop_pixel8_android15_user.txt"), 0),
    "dumpsys battery": (body("dumpsys_battery_discharging.txt"), 0),
    "cat /sys/class/power_supply/battery/uevent": (body("cat_battery_uevent_discharging.txt"), 0),
}


def scripted(table: dict[str, tuple[str, int]], *, drops: int = 0,
             profile: str | None = None) -> tuple[Device, ScriptedTransport]:
    t = ScriptedTransport(table, drops=drops)
    return Device(t, serial=t.address, retry_delay_s=0.0, profile=profile), t


def test_shell_exit_code_and_output() -> None:
    dev, t = scripted({"ls /data/local/tmp/missing": (body("ls_l_missing.txt"), 1),
                       "echo -n hi": ("hi", 0)})
    r = dev.shell("ls /data/local/tmp/missing")
    assert r.exit_code == 1 and "No such file" in r.stdout and EXIT_MARKER not in r.stdout
    assert dev.shell("echo -n hi").stdout == "hi"  # output without a final newline keeps its text
    assert dev.shell("foo").exit_code == 127
    t.assert_all_used()


def test_exit_marker_wrapping_keeps_valid_shell() -> None:
    assert wrap_with_exit_marker("ls") == f'ls; echo "{EXIT_MARKER}$?"'
    assert wrap_with_exit_marker("ls; ") == f'ls; echo "{EXIT_MARKER}$?"'
    assert wrap_with_exit_marker("sleep 1 &") == f'sleep 1 & echo "{EXIT_MARKER}$?"'
    assert wrap_with_exit_marker("a && b") == f'a && b; echo "{EXIT_MARKER}$?"'


def test_shell_error_carries_the_facts() -> None:
    dev, _ = scripted({"ls /x": ("ls: /x: No such file or directory\n", 1)})
    with pytest.raises(ShellError) as info:
        dev.shell("ls /x", check=True)
    err = info.value
    assert (err.command, err.exit_code, err.serial) == ("ls /x", 1, "10.0.0.7:5555")
    assert "No such file" in err.stdout and "No such file" in str(err) and "10.0.0.7:5555" in str(err)


def test_missing_exit_marker_is_reported() -> None:
    class NoMarker(ScriptedTransport):
        def shell(self, command: str, timeout_s: float) -> bytes:
            return b"partial output"

    dev = Device(NoMarker({}), serial="x")
    with pytest.raises(UnexpectedOutputError, match="exit status"):
        dev.shell("exit 3")


def test_properties_from_real_getprop() -> None:
    dev, t = scripted({"getprop": PIXEL["getprop"]})
    p = dev.properties()
    assert (p.model, p.manufacturer, p.soc, p.abi) == ("Pixel 8", "Google", "Tensor G3", "arm64-v8a")
    assert (p.android_version, p.sdk_int, p.device, p.serial) == ("15", 35, "shiba", "3A271FDJH00W7Q")
    assert dev.profile.name == "pixel"
    assert dev.properties() is p  # cached
    t.assert_all_used()


def test_soc_falls_back_to_board_platform() -> None:
    text = "\n".join(ln for ln in body("getprop_pixel8_android15_user.txt").splitlines()
                     if not ln.startswith("[ro.soc.")) + "\n"
    text = text.replace("[ro.product.manufacturer]: [Google]", "[ro.product.manufacturer]: [samsung]")
    dev, _ = scripted({"getprop": (text, 0)})
    assert dev.properties().soc == "zuma"
    assert dev.profile.name == "generic"


@pytest.mark.parametrize(
    "dump, uevent, status, plugged, current",
    [("dumpsys_battery_discharging.txt", "cat_battery_uevent_discharging.txt", "discharging", None, -312500),
     ("dumpsys_battery_usb_charging.txt", "cat_battery_uevent_usb_charging.txt", "charging", "usb", 437500)],
)
def test_battery_pixel(dump, uevent, status, plugged, current) -> None:
    dev, t = scripted({"dumpsys battery": (body(dump), 0),
                       "cat /sys/class/power_supply/battery/uevent": (body(uevent), 0)}, profile="pixel")
    b = dev.battery()
    assert (b.status, b.plugged, b.current_ua) == (status, plugged, current)
    assert b.level_pct == 80 and b.charge_counter_uah == 3560000
    assert 4000 <= b.voltage_mv <= 4300 and 29 < b.temperature_c < 32
    assert b.energy_counter_nwh is None  # Pixel does not expose one
    t.assert_all_used()


def test_battery_when_sysfs_is_denied_and_vendor_prints_ma() -> None:
    denied = "cat: /sys/class/power_supply/battery/uevent: Permission denied\n"
    dump = body("dumpsys_battery_discharging.txt") + "  current now: 350\n"  # mA, positive on discharge
    dev, _ = scripted({"dumpsys battery": (dump, 0),
                       "cat /sys/class/power_supply/battery/uevent": (denied, 1)}, profile="generic")
    b = dev.battery()
    assert b.current_ua == -350000 and b.source == "dumpsys battery"
    dev2, _ = scripted({"dumpsys battery": (body("dumpsys_battery_discharging.txt"), 0),
                        "cat /sys/class/power_supply/battery/uevent": (denied, 1)}, profile="generic")
    assert dev2.battery().current_ua is None


def test_thermal_and_rails_and_packages() -> None:
    dev, t = scripted({
        "dumpsys thermalservice": (body("dumpsys_thermalservice_throttled.txt"), 0),
        "dumpsys android.hardware.power.stats.IPowerStats/default": (body("dumpsys_ipowerstats_default.txt"), 0),
        "pm list packages -3": (body("pm_list_packages_3.txt"), 0),
        "pm path com.example.benchrunner": (body("pm_path.txt"), 0),
        "pm path com.nope": ("", 1),
    })
    assert dev.thermal_status() == 2
    rails = dev.power_rails()
    assert rails is not None and rails["S2M_VDD_CPUCL2"].energy_uws == 1490120320
    assert "com.termux" in dev.packages(third_party=True)
    assert dev.is_installed("com.example.benchrunner") and not dev.is_installed("com.nope")
    t.assert_all_used()


def test_no_odpm_gives_none() -> None:
    dev, _ = scripted({"dumpsys android.hardware.power.stats.IPowerStats/default":
                       ("Can't find service: android.hardware.power.stats.IPowerStats/default\n", 0)})
    assert dev.power_rails() is None


def test_app_start_and_stop() -> None:
    ok_cmd = "am start -W -n com.example.benchrunner/.MainActivity --es job /data/local/tmp/job.json"
    bad_cmd = "am start -W -n com.example.benchrunner/.NoSuchActivity --es job /data/local/tmp/job.json"
    dev, t = scripted({ok_cmd: (body("am_start_W_success.txt"), 0),
                       bad_cmd: (body("am_start_W_class_not_found.txt"), 1),
                       "am force-stop com.example.benchrunner": ("", 0)})
    r = dev.start_app("com.example.benchrunner/.MainActivity", {"job": "/data/local/tmp/job.json"})
    assert r.total_time_ms == 612
    with pytest.raises(AppStartError, match="does not exist"):
        dev.start_app("com.example.benchrunner/.NoSuchActivity", {"job": "/data/local/tmp/job.json"})
    dev.force_stop("com.example.benchrunner")
    t.assert_all_used()


def test_dropped_connection_reconnects_then_gives_up() -> None:
    dev, t = scripted({"getprop ro.product.model": (body("getprop_single_key.txt"), 0)}, drops=2)
    assert dev.getprop("ro.product.model") == "Pixel 8"  # 2 drops, retries=2
    assert t.opens == 2 and dev.reconnects == 2
    t.drops = 3
    with pytest.raises(ConnectionLostError, match="3 times"):
        dev.getprop("ro.product.model")


def test_app_start_is_not_rerun_after_a_drop() -> None:
    dev, t = scripted({}, drops=1)
    with pytest.raises(ConnectionLostError, match="may have run"):
        dev.start_app("a.b/.C")
    assert len(t.calls) == 1


def test_install_failure_names_the_code(tmp_path: Path) -> None:
    class InstallTransport(ScriptedTransport):
        def __init__(self) -> None:
            super().__init__({})
            self.files: dict[str, bytes] = {}

        def stat(self, remote, timeout_s):
            return (0o100644, len(self.files[remote]), 0) if remote in self.files else (0, 0, 0)

        def push(self, local, remote, progress, timeout_s):
            self.files[remote] = Path(local).read_bytes()

        def shell(self, command, timeout_s):
            cmd = command.split(f'; echo "{EXIT_MARKER}')[0]
            self.calls.append(cmd)
            if cmd.startswith("sha256sum "):
                path = cmd.split(" ", 1)[1]
                return f"{hashlib.sha256(self.files[path]).hexdigest()}  {path}\n{EXIT_MARKER}0\n".encode()
            if cmd.startswith("mv -f "):
                _, _, src, dst = cmd.split()
                self.files[dst] = self.files.pop(src)
                return f"{EXIT_MARKER}0\n".encode()
            if cmd.startswith("rm -f "):
                self.files.pop(cmd.split()[-1], None)
                return f"{EXIT_MARKER}0\n".encode()
            if cmd.startswith("pm install"):
                return (body("pm_install_failure.txt") + f"{EXIT_MARKER}1\n").encode()
            raise AssertionError(cmd)

    apk = tmp_path / "app.apk"
    apk.write_bytes(b"PK\x03\x04fake")
    t = InstallTransport()
    dev = Device(t, serial="x")
    with pytest.raises(InstallError, match="INSTALL_FAILED_UPDATE_INCOMPATIBLE") as info:
        dev.install(apk)
    assert "Uninstall" in str(info.value)
    assert t.files == {}  # the pushed APK was removed again


# =========================================================================================== simulated phone


@pytest.fixture(scope="module", autouse=True)
def _private_adb_key(adb_keypair):
    """Never touch the user's ~/.android: use the key the conftest makes once per session."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ANDROID_USER_HOME", str(adb_keypair[1].parent))
        yield


@pytest.fixture
def phone(sim_phone):
    """The simulated Pixel 8 from tests/device_runner/conftest.py (a real TCP ADB peer)."""
    return sim_phone


@pytest.fixture
def dev(phone):
    d = Device.connect(phone.serial, timeout_s=5.0, retries=2, profile="sim")
    d.retry_delay_s = 0.05
    yield d
    d.close()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name) if folder.exists() else []


def test_sim_properties_battery_thermal_rails(phone, dev: Device) -> None:
    p = dev.properties()
    assert p.model and p.manufacturer and p.abi and p.sdk_int and p.sdk_int >= 21
    assert p.serial
    b = dev.battery()
    assert 0 <= b.level_pct <= 100
    assert b.status == "discharging" and b.plugged is None
    assert b.current_ua is not None and b.current_ua < 0  # Android convention
    assert 3000 <= b.voltage_mv <= 4500 and 10 < b.temperature_c < 60
    assert dev.thermal_status() == 0
    rails = dev.power_rails()
    if p.manufacturer == "Google":
        assert rails and all(r.energy_uws >= 0 for r in rails.values())
    json.dumps(dev.info())  # JSON-able


def test_sim_shell_exit_codes(dev: Device) -> None:
    assert dev.shell("echo hello").stdout == "hello\n"
    missing = dev.shell("ls -l /data/local/tmp/definitely-missing")
    assert missing.exit_code == 1 and "No such file" in missing.stdout
    assert dev.shell("definitely-not-a-command").exit_code == 127
    assert dev.shell("echo a;").stdout == "a\n"
    assert dev.shell("ls /data/local/tmp/definitely-missing || echo fallback").stdout.endswith("fallback\n")
    assert dev.shell("echo x > /data/local/tmp/x.txt && cat /data/local/tmp/x.txt").stdout == "x\n"
    with pytest.raises(ShellError):
        dev.shell("ls /data/local/tmp/definitely-missing", check=True)


def test_sim_push_5mb_with_progress_then_pull(phone, dev: Device, tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(5 * 1024 * 1024 + 123))
    seen: list[tuple[int, int]] = []
    r = dev.push(src, "/data/local/tmp/model.bin", progress=lambda d, t: seen.append((d, t)))
    assert r.attempts == 1 and r.size_bytes == src.stat().st_size
    assert seen[-1] == (src.stat().st_size, src.stat().st_size)
    assert all(b[0] >= a[0] for a, b in zip(seen, seen[1:], strict=False)) and len(seen) > 10
    on_phone = phone.host_path("/data/local/tmp/model.bin")
    assert hashlib.sha256(on_phone.read_bytes()).hexdigest() == r.sha256
    assert _leftovers(on_phone.parent) == []
    assert dev.sha256("/data/local/tmp/model.bin") == r.sha256
    # into a folder: the local name is kept
    r2 = dev.push(src, "/data/local/tmp/")
    assert r2.remote == "/data/local/tmp/model.bin"

    back = tmp_path / "back" / "model.bin"
    back.parent.mkdir()
    got: list[tuple[int, int]] = []
    dev.pull("/data/local/tmp/model.bin", back, progress=lambda d, t: got.append((d, t)))
    assert back.read_bytes() == src.read_bytes()
    assert got[-1] == (src.stat().st_size, src.stat().st_size)
    assert _leftovers(back.parent) == []
    with pytest.raises(RemoteFileNotFoundError, match="missing.bin"):
        dev.pull("/data/local/tmp/missing.bin", tmp_path / "back" / "missing.bin")
    assert not (tmp_path / "back" / "missing.bin").exists() and _leftovers(back.parent) == []


def test_sim_dropped_connection_reconnects(phone, dev: Device, tmp_path: Path) -> None:
    from device_runner.sim import Faults

    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(2 * 1024 * 1024))
    phone.faults = Faults(drop_after_bytes=300_000, drop_connections=1)
    r = dev.push(src, "/data/local/tmp/f.bin")
    assert dev.reconnects >= 1
    assert hashlib.sha256(phone.host_path("/data/local/tmp/f.bin").read_bytes()).hexdigest() == r.sha256
    assert dev.shell("echo ok").stdout == "ok\n"


def test_sim_connection_that_keeps_dropping_gives_up_without_a_final_file(phone, dev: Device,
                                                                          tmp_path: Path) -> None:
    from device_runner.sim import Faults

    src = tmp_path / "g.bin"
    src.write_bytes(os.urandom(1024 * 1024))
    phone.faults = Faults(drop_after_bytes=100_000, drop_connections=None)
    with pytest.raises(ConnectionLostError, match="g.bin"):
        dev.push(src, "/data/local/tmp/g.bin")
    phone.faults = Faults()
    assert not phone.host_path("/data/local/tmp/g.bin").exists()


def test_sim_corrupted_push_retries_then_fails_cleanly(phone, dev: Device, tmp_path: Path) -> None:
    from device_runner.sim import Faults

    src = tmp_path / "c.bin"
    src.write_bytes(os.urandom(300_000))
    phone.faults = Faults(corrupt_push=True)
    with pytest.raises(PushVerificationError) as info:
        dev.push(src, "/data/local/tmp/c.bin")
    err = info.value
    local_hash = hashlib.sha256(src.read_bytes()).hexdigest()
    assert local_hash in str(err) and err.facts["remote_sha256"] and err.facts["remote_sha256"] != local_hash
    assert "c.bin" in str(err) and "push again" in str(err)
    folder = phone.host_path("/data/local/tmp")
    assert not (folder / "c.bin").exists() and _leftovers(folder) == []


def test_sim_full_disk(phone, dev: Device, tmp_path: Path) -> None:
    from device_runner.sim import Faults

    src = tmp_path / "d.bin"
    src.write_bytes(os.urandom(200_000))
    phone.faults = Faults(full_disk=True)
    with pytest.raises(DeviceStorageFullError, match="no space"):
        dev.push(src, "/data/local/tmp/d.bin")
    folder = phone.host_path("/data/local/tmp")
    assert not (folder / "d.bin").exists() and _leftovers(folder) == []


def test_sim_throttled_thermal_and_charging(phone, dev: Device) -> None:
    from device_runner.sim import Faults

    phone.faults = Faults(thermal_status=3, charging=True)
    assert dev.thermal_status() == 3
    b = dev.battery()
    assert b.status == "charging" and b.plugged is not None and b.current_ua > 0


def test_sim_refused_auth(phone) -> None:
    from device_runner.sim import Faults

    phone.faults = Faults(refuse_auth=True)
    with pytest.raises(AuthorizationError, match="accept the USB debugging prompt on the phone"):
        Device.connect(phone.serial, timeout_s=3.0, retries=0, auth_timeout_s=1.0)


def test_sim_packages_and_apps(dev: Device) -> None:
    pkgs = dev.packages()
    assert "org.vitpalette.bench" in pkgs
    assert dev.is_installed("org.vitpalette.bench") and not dev.is_installed("com.example.nope")
    with pytest.raises(AppStartError):
        dev.start_app("org.vitpalette.bench/.NoSuchActivity", {"job": "/data/local/tmp/none.json"})
    dev.force_stop("org.vitpalette.bench")


def test_sim_remote_helpers(dev: Device, phone) -> None:
    dev.makedirs("/data/local/tmp/a/b")
    assert dev.stat("/data/local/tmp/a/b") is not None
    assert dev.exists("/data/local/tmp/a") and not dev.exists("/data/local/tmp/zzz")
    dev.remove("/data/local/tmp/zzz")  # -f: no error
    assert dev.sha256("/data/local/tmp/zzz") is None
    assert posixpath.basename("/data/local/tmp/a/b") == "b"


def test_sim_generic_phone_reports_ma_and_has_no_rails(generic_phone) -> None:
    with Device.connect(generic_phone.serial, timeout_s=5.0) as d:
        assert d.profile.name == "sim"  # the sim says so (ro.vitpalette.simulated), whatever it plays
        props = {k: v for k, v in d.properties().to_dict().items() if k != "simulated"}
        assert profile_for_properties(props).name == "generic"  # manufacturer is not Google
    with Device.connect(generic_phone.serial, timeout_s=5.0, profile="generic") as d:
        raw = int(d.shell("cat /sys/class/power_supply/battery/current_now", check=True).stdout)
        b = d.battery()
        assert b.current_ua is not None and b.current_ua < 0
        assert 0 < abs(raw) < 20_000  # mA on the wire ...
        assert abs(b.current_ua + abs(raw) * 1000) <= 0.25 * abs(raw) * 1000  # ... uA out (read a moment later)
        assert d.power_rails() is None
        assert d.energy_method().value == "battery"


def test_sim_command_timeout_then_next_command_works(dev: Device) -> None:
    from device_runner.errors import DeviceTimeoutError

    with pytest.raises(DeviceTimeoutError, match="within 0.5 s"):
        dev.shell("sleep 3", timeout_s=0.5)
    assert dev.shell("echo back").stdout == "back\n"  # reconnected after the timeout


# =========================================================================================== a real phone


@pytest.mark.device
def test_real_phone_round_trip(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Run with `pytest -m device --device SERIAL|HOST:PORT` against a phone (uses ~/.android/adbkey)."""
    address = request.config.getoption("--device")
    from device_runner.profiles import resolve_device

    spec = resolve_device(address)
    with Device.connect(spec.address or address, timeout_s=10.0, profile=spec.profile) as d:
        p = d.properties()
        assert p.model and p.manufacturer and p.sdk_int
        b = d.battery()
        assert 0 <= (b.level_pct or 0) <= 100 and b.status in ("charging", "discharging", "not_charging", "full",
                                                                  "unknown")
        assert 0 <= d.thermal_status() <= 6
        assert d.shell("ls /data/local/tmp/vpb-definitely-missing").exit_code != 0
        src = tmp_path / "probe.bin"
        src.write_bytes(os.urandom(3 * 1024 * 1024))
        r = d.push(src, "/data/local/tmp/vpb-probe.bin")
        try:
            d.pull(r.remote, tmp_path / "back.bin")
            assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()
        finally:
            d.remove(r.remote)
