"""Push/pull throughput to the simulated phone: this project's transport vs Debian's ``adb``, side by side.

    .venv/bin/python benchmarks/bench_transport.py [--size-mb 50] [--rounds 3] [--profile pixel-8]

The simulated phone runs in its own process (``python -m device_runner.sim --port 0``) so that
neither client shares an interpreter with it. Each round pushes and pulls the same random file
with: ``AdbTransport`` (this project's adb-shell wrapper, a bare push/pull), ``Device.push/pull``
(the same plus the on-phone sha256 check, the temp-name rename and the size check), and
Debian's ``adb`` client (``adb push`` / ``adb pull``, one process per transfer, its server already
running on a private port). The order of the clients alternates between rounds. Medians are
printed, with the ratio of each to ``adb`` (goal: this tool within 1.5x of adb).

A fourth row, ``AdbTransport`` with ``fast_wire = False``, uses adb-shell's own handshake and
framing (protocol 0x01000000: every payload byte summed in Python on both ends), to show what the
transport's faster framing buys.

Device: the simulated phone on loopback (simulated, host CPU), not a real phone. Figures depend
on the host's CPU load; run it on a quiet machine and compare only ratios from one run.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sim(root: Path, profile: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "device_runner.sim", "--port", "0", "--profile", profile,
                             "--root", str(root)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if "listening on " not in line:
        proc.kill()
        raise SystemExit(f"the simulated phone did not start: {line!r}")
    address = line.split("listening on ", 1)[1].split(";", 1)[0].strip()
    return proc, address


class DebianAdb:
    def __init__(self, home: Path) -> None:
        self.port = free_port()
        self.env = {**os.environ, "HOME": str(home), "ANDROID_USER_HOME": str(home / ".android")}

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(["adb", "-P", str(self.port), *args], env=self.env, capture_output=True, text=True,
                              timeout=600)
        if check and proc.returncode != 0:
            raise SystemExit(f"adb {' '.join(args)} failed: {proc.stdout}{proc.stderr}")
        return proc

    def connect(self, serial: str) -> None:
        self("start-server")
        self("connect", serial, check=False)
        end = time.monotonic() + 20
        while time.monotonic() < end:
            if f"{serial}\tdevice" in self("devices").stdout:
                return
            time.sleep(0.2)
        raise SystemExit(f"adb could not connect to {serial}")


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=50.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", default="pixel-8")
    args = parser.parse_args(argv)
    if shutil.which("adb") is None:
        raise SystemExit("Debian's adb is not on PATH: apt-get install -y adb")

    from adb_shell.auth.keygen import keygen
    from adb_shell.auth.sign_pythonrsa import PythonRSASigner

    from device_runner.device import Device
    from device_runner.transport import AdbTransport

    work = Path(tempfile.mkdtemp(prefix="bench-transport-"))
    size = int(args.size_mb * 1024 * 1024)
    src = work / "payload.bin"
    src.write_bytes(os.urandom(size))
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    keygen(str(work / "adbkey"))
    signer = PythonRSASigner.FromRSAKeyPath(str(work / "adbkey"))
    sim, serial = start_sim(work / "phone", args.profile)
    adb = DebianAdb(work / "home")
    (work / "home").mkdir()
    names = ["transport", "slow_wire", "device", "adb"]
    results: dict[str, dict[str, list[float]]] = {k: {"push": [], "pull": []} for k in names}
    try:
        transport = AdbTransport(serial, signer=signer, auth_timeout_s=10)
        transport.open(10)
        slow = AdbTransport(serial, signer=signer, auth_timeout_s=10)
        if hasattr(slow, "fast_wire"):
            slow.fast_wire = False
        else:
            names.remove("slow_wire")
        slow.open(10)
        device = Device.connect(serial, signer=signer, auth_timeout_s=10)
        adb.connect(serial)

        def run(name: str) -> None:
            remote = f"/data/local/tmp/bench_{name}.bin"
            back = work / f"back_{name}.bin"
            back.unlink(missing_ok=True)
            if name in ("transport", "slow_wire"):
                client = transport if name == "transport" else slow
                push = timed(lambda: client.push(src, remote, None, 600))
                pull = timed(lambda: client.pull(remote, back, None, 600))
            elif name == "device":
                push = timed(lambda: device.push(src, remote, timeout_s=600))
                pull = timed(lambda: device.pull(remote, back, timeout_s=600))
            else:
                push = timed(lambda: adb("-s", serial, "push", str(src), remote))
                pull = timed(lambda: adb("-s", serial, "pull", remote, str(back)))
            if hashlib.sha256(back.read_bytes()).hexdigest() != digest:
                raise SystemExit(f"{name}: pulled file differs from the pushed one")
            results[name]["push"].append(push)
            results[name]["pull"].append(pull)

        for r in range(args.rounds):
            for name in (names if r % 2 == 0 else names[::-1]):
                run(name)
        transport.close()
        slow.close()
        device.close()
    finally:
        adb("kill-server", check=False)
        sim.terminate()
        try:
            sim.wait(10)
        except subprocess.TimeoutExpired:
            sim.kill()
        shutil.rmtree(work, ignore_errors=True)

    mb = size / 1e6
    print(f"push/pull of {args.size_mb:g} MiB to the simulated phone ({args.profile}, simulated, loopback TCP), "
          f"{args.rounds} rounds, medians; host {platform.machine()} {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    print(f"{'client':<40s} {'push s':>8s} {'MB/s':>7s} {'x adb':>6s}   {'pull s':>8s} {'MB/s':>7s} {'x adb':>6s}")
    labels = {"transport": "AdbTransport (project transport)", "slow_wire": "AdbTransport, adb-shell framing",
              "device": "Device.push/pull (+sha256, rename)", "adb": "Debian adb (adb push/pull)"}
    adb_push = statistics.median(results["adb"]["push"])
    adb_pull = statistics.median(results["adb"]["pull"])
    for name in names:
        push = statistics.median(results[name]["push"])
        pull = statistics.median(results[name]["pull"])
        print(f"{labels[name]:<40s} {push:8.3f} {mb / push:7.1f} {push / adb_push:6.2f}   "
              f"{pull:8.3f} {mb / pull:7.1f} {pull / adb_pull:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
