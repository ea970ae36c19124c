"""``python -m device_runner``: resolving --device, errors through run_cli, and the commands
against the simulated phone (in-process, plus one real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from device_runner.__main__ import main
from device_runner.errors import DeviceNotFoundError
from device_runner.profiles import DeviceSpec, load_devices_yaml, resolve_device
from pipeline.cli_support import run_cli
from pipeline.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------- --device


def test_resolve_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./devices.yaml here
    assert resolve_device("192.168.1.20:5555") == DeviceSpec(address="192.168.1.20:5555", source="host:port")
    assert resolve_device("192.168.1.20").address == "192.168.1.20:5555"
    assert resolve_device("3A271FDJH00W7Q").address == "usb:3A271FDJH00W7Q"
    assert resolve_device("usb").address == "usb"
    pixel = resolve_device("pixel")
    assert (pixel.address, pixel.profile) == ("usb", "pixel")
    sim = resolve_device("sim")
    assert (sim.address, sim.profile) == (None, "sim")


def test_devices_yaml_names_phones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "devices.yaml").write_text(
        "devices:\n"
        "  desk-pixel: {address: '10.0.0.5:5555', profile: pixel}\n"
        "  cable-phone: {serial: R5CW20ABCDE, profile: generic}\n"
        "  plain: 10.0.0.9\n"
    )
    monkeypatch.chdir(tmp_path)
    assert resolve_device("desk-pixel") == DeviceSpec(address="10.0.0.5:5555", profile="pixel", name="desk-pixel",
                                                      source=str(tmp_path / "devices.yaml"))
    assert resolve_device("cable-phone").address == "usb:R5CW20ABCDE"
    assert resolve_device("plain").address == "10.0.0.9:5555"
    other = tmp_path / "other.yaml"
    other.write_text("devices:\n  lab: {address: 'lab-host:6000'}\n")
    assert resolve_device("lab", devices_file=other).address == "lab-host:6000"


@pytest.mark.parametrize(
    "text, match",
    [("devices:\n  a: {adress: '1.2.3.4:5555'}\n", "unknown key"),
     ("phones: {}\n", "unknown top-level"),
     ("devices:\n  a: {address: '1.2.3.4:5555', profile: iphone}\n", "unknown profile"),
     ("devices: [1, 2\n", "not valid YAML")],
)
def test_devices_yaml_mistakes_are_named(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "devices.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_devices_yaml(path)


def test_unknown_device_lists_what_was_tried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DeviceNotFoundError) as info:
        resolve_device("my phone!")
    text = str(info.value)
    assert "devices.yaml" in text and "profile name" in text and "host:port" in text and "USB serial" in text
    assert "USB debugging" in text and "adb tcpip 5555" in text and "adb connect" in text


def test_cli_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, adb_keypair,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VPB_DEVICE", raising=False)
    assert run_cli(main, ["info"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no device given") and err.count("\n") == 1
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("ANDROID_USER_HOME", str(adb_keypair[1].parent))  # a key made once per session
    assert run_cli(main, ["--device", f"127.0.0.1:{port}", "info"]) == 2
    assert f"nothing answers at 127.0.0.1:{port}" in capsys.readouterr().err


def test_unknown_serial_says_what_was_tried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, adb_keypair,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A word that is not a name, profile or host:port is looked for on USB (none here, or no libusb)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANDROID_USER_HOME", str(adb_keypair[1].parent))  # a key made once per session
    assert run_cli(main, ["--device", "ZX1G22NOPE", "info"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ZX1G22NOPE" in err
    assert ("USB serial" in err and "not host:port" in err and "adb tcpip 5555" in err) or "libusb" in err


# ------------------------------------------------------------------------------------------- against the sim


@pytest.fixture
def phone(sim_phone, adb_keypair, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ANDROID_USER_HOME", str(adb_keypair[1].parent))  # a key made once per session
    monkeypatch.setenv("CI", "1")
    return sim_phone


def test_cli_info_shell_push_pull(phone, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--device", phone.serial, "--profile", "sim"]
    assert main([*base, "info"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["profile"] == "sim" and info["simulated"] is True
    assert info["properties"]["model"] and "level_pct" in info["battery"]
    assert isinstance(info["thermal_status"], int) and "present" in info["power_rails"]

    assert main([*base, "shell", "echo", "hi"]) == 0
    assert capsys.readouterr().out == "hi\n"
    assert main([*base, "shell", "ls", "/data/local/tmp/missing"]) == 1
    assert main([*base, "shell", "nosuchcmd"]) == 127
    assert main([*base, "shell", "ls", "-l", "/data/local/tmp/missing"]) == 1  # options reach the phone
    capsys.readouterr()

    src = tmp_path / "w.bin"
    src.write_bytes(os.urandom(700_000))
    assert main([*base, "push", str(src), "/data/local/tmp/w.bin"]) == 0
    assert "verified" in capsys.readouterr().err
    dst = tmp_path / "w2.bin"
    assert main([*base, "pull", "/data/local/tmp/w.bin", str(dst)]) == 0
    assert dst.read_bytes() == src.read_bytes()
    assert run_cli(main, [*base, "pull", "/data/local/tmp/nope.bin", str(tmp_path / "nope.bin")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "nope.bin").exists()


def test_cli_as_a_real_process(phone, tmp_path: Path) -> None:
    env = dict(os.environ, CI="1")  # ANDROID_USER_HOME set by the fixture
    out = subprocess.run(
        [sys.executable, "-m", "device_runner", "--device", phone.serial, "shell", "ls", "/nope"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 1, out.stderr
    assert "No such file" in out.stdout
