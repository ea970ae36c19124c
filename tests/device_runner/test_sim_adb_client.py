"""Debian's real ``adb`` client against the simulated phone (apt package ``adb``; skipped without it)."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from device_runner.sim import SimulatedPhone

pytestmark = [
    pytest.mark.adb,
    pytest.mark.skipif(shutil.which("adb") is None, reason="Debian's adb is not on PATH (apt-get install adb)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Adb:
    """``adb`` with a private server port and HOME, so it never meets the user's adb server or keys."""

    def __init__(self, home: Path) -> None:
        self.port = free_port()
        self.env = {**os.environ, "HOME": str(home), "ANDROID_SDK_HOME": str(home),
                    "ANDROID_USER_HOME": str(home / ".android")}
        self.env.pop("ADB_VENDOR_KEYS", None)
        self.env.pop("ANDROID_SERIAL", None)

    def __call__(self, *args: str, timeout_s: float = 60.0, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(["adb", "-P", str(self.port), *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout_s)
        if check and proc.returncode != 0:
            raise AssertionError(f"adb {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def state(self, serial: str) -> str:
        for line in self("devices").stdout.splitlines()[1:]:
            parts = line.split()
            if parts and parts[0] == serial:
                return parts[1]
        return ""

    def wait_state(self, serial: str, wanted: str, timeout_s: float = 15.0) -> str:
        end = time.monotonic() + timeout_s
        state = ""
        while time.monotonic() < end:
            state = self.state(serial)
            if state == wanted:
                return state
            time.sleep(0.2)
        return state


@pytest.fixture
def adb(tmp_path: Path):
    client = Adb(tmp_path / "home")
    (tmp_path / "home").mkdir()
    client("start-server", timeout_s=30)
    yield client
    client("kill-server", check=False, timeout_s=30)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_connect_shell_push_pull_20mb(adb: Adb, sim_phone: SimulatedPhone, tmp_path: Path) -> None:
    serial = sim_phone.serial
    adb("connect", serial, check=False)  # the first connection may print "failed to authenticate" (prompt)
    assert adb.wait_state(serial, "device") == "device"
    assert adb("-s", serial, "shell", "getprop", "ro.product.model").stdout == "Pixel 8\n"
    proc = adb("-s", serial, "shell", "ls /data/local/tmp/missing", check=False)
    assert proc.returncode == 1 and "No such file or directory" in proc.stderr  # shell_v2: code and stderr
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(20 * 1024 * 1024))
    adb("-s", serial, "push", str(src), "/data/local/tmp/")
    assert sha256(sim_phone.host_path("/data/local/tmp/model.bin")) == sha256(src)
    remote = adb("-s", serial, "shell", "sha256sum", "/data/local/tmp/model.bin").stdout.split()[0]
    assert remote == sha256(src)
    back = tmp_path / "back.bin"
    adb("-s", serial, "pull", "/data/local/tmp/model.bin", str(back))
    assert sha256(back) == sha256(src)
    apk = tmp_path / "app.apk"
    with zipfile.ZipFile(apk, "w") as z:
        z.writestr("AndroidManifest.xml", '<manifest xmlns:android="x" package="com.example.installed">'
                                          '<application><activity android:name=".Main"/></application></manifest>')
    assert "Success" in adb("-s", serial, "install", str(apk)).stdout  # streamed install over exec:cmd
    assert "package:com.example.installed" in adb("-s", serial, "shell", "pm", "list", "packages", "-3").stdout
    adb("disconnect", serial, check=False)


def test_unauthorized_key_is_reported(adb: Adb, tmp_path: Path, pubkey: bytes) -> None:
    keys = tmp_path / "adb_keys"
    keys.write_bytes(pubkey + b"\n")  # only the test session's key, not the one adb makes in HOME
    with SimulatedPhone(tmp_path / "locked", port=0, authorized_keys=keys) as phone:
        adb("connect", phone.serial, check=False)
        assert adb.wait_state(phone.serial, "unauthorized", timeout_s=10) == "unauthorized"
        adb("disconnect", phone.serial, check=False)
