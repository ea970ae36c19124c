"""Every fault the simulated phone can show, met by adb-shell's client (the library the transport wraps)."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
from adb_shell import exceptions as adb_exc
from adb_shell.adb_device import AdbDeviceTcp
from adb_shell.auth.keygen import keygen
from adb_shell.auth.sign_pythonrsa import PythonRSASigner

from device_runner.sim import Faults, SimulatedPhone
from pipeline.errors import ConfigError

#: what the raw adb-shell client raises when the phone drops, refuses or fails (not any Exception:
#: a NameError in the test must still fail it)
ADB_ERRORS = (OSError, adb_exc.AdbConnectionError, adb_exc.AdbTimeoutError, adb_exc.DeviceAuthError,
              adb_exc.InvalidResponseError, adb_exc.InvalidCommandError, adb_exc.InvalidChecksumError,
              adb_exc.PushFailedError, adb_exc.TcpTimeoutException, adb_exc.AdbCommandFailureException)


def connect(phone: SimulatedPhone, signer, *, auth_timeout_s: float = 5.0, timeout_s: float = 5.0) -> AdbDeviceTcp:
    """adb-shell's plain client (it notices a closed socket only when its read times out)."""
    dev = AdbDeviceTcp("127.0.0.1", phone.port, default_transport_timeout_s=timeout_s)
    dev.connect(rsa_keys=[signer], auth_timeout_s=auth_timeout_s, read_timeout_s=timeout_s)
    return dev


def leftovers(phone: SimulatedPhone, folder: str = "/data/local/tmp") -> list[str]:
    return sorted(os.listdir(phone.host_path(folder)))


def wait_until(predicate, timeout_s: float = 5.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "model.bin"
    path.write_bytes(os.urandom(1_000_000))
    return path


def test_drop_after_bytes_leaves_no_partial_file_and_next_connection_works(
        sim_phone: SimulatedPhone, adb_keypair, src: Path) -> None:
    sim_phone.faults = Faults(drop_after_bytes=200_000, drop_connections=1)
    dev = connect(sim_phone, adb_keypair[0], timeout_s=1.0)
    with pytest.raises(ADB_ERRORS):  # adb-shell raises its own mix of socket errors here
        dev.push(str(src), "/data/local/tmp/model.bin", transport_timeout_s=1, read_timeout_s=1)
    dev.close()
    assert wait_until(lambda: leftovers(sim_phone) == []), leftovers(sim_phone)
    dev = connect(sim_phone, adb_keypair[0])  # the fault hit one connection only
    dev.push(str(src), "/data/local/tmp/model.bin")
    assert sim_phone.host_path("/data/local/tmp/model.bin").read_bytes() == src.read_bytes()
    dev.close()


def test_drop_every_connection(sim_phone: SimulatedPhone, adb_keypair) -> None:
    sim_phone.faults = Faults(drop_after_bytes=0, drop_connections=None)
    for _ in range(2):
        with pytest.raises(ADB_ERRORS):
            connect(sim_phone, adb_keypair[0], auth_timeout_s=0.5, timeout_s=0.5)


def test_corrupt_push(sim_phone: SimulatedPhone, adb_keypair, src: Path) -> None:
    sim_phone.faults = Faults(corrupt_push=True)
    dev = connect(sim_phone, adb_keypair[0])
    dev.push(str(src), "/data/local/tmp/model.bin")
    remote = dev.shell("sha256sum /data/local/tmp/model.bin").split()[0]
    assert remote != hashlib.sha256(src.read_bytes()).hexdigest()
    assert sim_phone.host_path("/data/local/tmp/model.bin").stat().st_size == src.stat().st_size
    dev.close()


def test_full_disk_fails_with_message_and_leaves_nothing(sim_phone: SimulatedPhone, adb_keypair, src: Path) -> None:
    sim_phone.faults = Faults(full_disk=True)
    dev = connect(sim_phone, adb_keypair[0])
    with pytest.raises(ADB_ERRORS, match="No space left on device"):
        dev.push(str(src), "/data/local/tmp/model.bin")
    dev.close()
    assert leftovers(sim_phone) == []
    dev = connect(sim_phone, adb_keypair[0])
    assert " 100% /data" in dev.shell("df")
    dev.close()


def test_refuse_auth_never_goes_online(sim_phone: SimulatedPhone, adb_keypair) -> None:
    sim_phone.faults = Faults(refuse_auth=True)
    t0 = time.monotonic()
    with pytest.raises(ADB_ERRORS):  # adb-shell times out waiting for CNXN
        connect(sim_phone, adb_keypair[0], auth_timeout_s=0.5)
    assert time.monotonic() - t0 < 8


def test_authorized_keys_accept_signature_and_refuse_others(tmp_path: Path, adb_keypair) -> None:
    signer, key_path = adb_keypair
    keys_file = tmp_path / "adb_keys"
    keys_file.write_text(key_path.with_suffix(".pub").read_text())
    keygen(str(tmp_path / "other"))
    stranger = PythonRSASigner.FromRSAKeyPath(str(tmp_path / "other"))
    with SimulatedPhone(tmp_path / "p", port=0, authorized_keys=keys_file) as phone:
        dev = connect(phone, signer)
        assert dev.shell("echo in") == "in\n"
        dev.close()
        with pytest.raises(ADB_ERRORS):
            connect(phone, stranger, auth_timeout_s=0.5)
        assert not phone.host_path("/data/misc/adb/adb_keys").exists() or \
            "unknown" not in phone.host_path("/data/misc/adb/adb_keys").read_text()


def test_accepted_key_is_remembered(tmp_path: Path, adb_keypair) -> None:
    signer, key_path = adb_keypair
    with SimulatedPhone(tmp_path / "p", port=0) as phone:
        connect(phone, signer).close()
        stored = phone.host_path("/data/misc/adb/adb_keys").read_text()
        assert key_path.with_suffix(".pub").read_text().split()[0] in stored


def test_battery_faults_show_in_shell_and_snapshot(sim_phone: SimulatedPhone, adb_keypair) -> None:
    dev = connect(sim_phone, adb_keypair[0])
    sim_phone.faults = Faults(battery_level_pct=4, charging=True, no_energy_counter=True)
    out = dev.shell("dumpsys battery")
    assert "  level: 4\n" in out and "  USB powered: true\n" in out and "  status: 2\n" in out
    assert int(dev.shell("cat /sys/class/power_supply/battery/current_now")) > 0
    snap = sim_phone.battery.snapshot()
    assert snap.level_pct == 4 and snap.energy_counter_nwh is None and snap.charging
    sim_phone.faults = Faults()
    assert sim_phone.battery.snapshot().energy_counter_nwh is not None
    assert "  status: 3\n" in dev.shell("dumpsys battery")
    dev.close()


def test_thermal_fault(sim_phone: SimulatedPhone, adb_keypair) -> None:
    dev = connect(sim_phone, adb_keypair[0])
    sim_phone.faults = Faults(thermal_status=5)
    assert "Thermal Status: 5\n" in dev.shell("dumpsys thermalservice")
    assert sim_phone.battery.snapshot().thermal_status == 5
    dev.close()


def test_slow_factor_reaches_the_app(sim_phone: SimulatedPhone) -> None:
    sim_phone.faults = Faults(slow_factor=2.5)
    info = sim_phone.device_info()
    assert info["latency_multiplier"] == 2.5 and info["simulated"] is True and info["model"] == "Pixel 8"


@pytest.mark.parametrize("kwargs", [{"drop_after_bytes": -1}, {"drop_connections": 0}, {"battery_level_pct": 101},
                                    {"slow_factor": 0}])
def test_bad_faults_are_refused(kwargs) -> None:
    with pytest.raises(ConfigError):
        Faults(**kwargs)


def test_faults_must_be_a_faults(sim_phone: SimulatedPhone) -> None:
    with pytest.raises(ConfigError, match="Faults"):
        sim_phone.faults = {"full_disk": True}  # type: ignore[assignment]
