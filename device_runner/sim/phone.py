"""``SimulatedPhone``: a device-side ADB endpoint on loopback (like ``adbd`` after ``adb tcpip``).

    with SimulatedPhone(tmp_path, profile="pixel-8", port=0) as phone:
        phone.serial              # "127.0.0.1:PORT"
        phone.host_path("/data/local/tmp/x")
        phone.faults = Faults(full_disk=True)

Authentication works like a phone: the host gets a random token; a signature from a trusted key
goes online at once; otherwise the host sends its public key and, by default, the phone accepts it
(as after tapping "Allow", remembering it in ``/data/misc/adb/adb_keys``). With
``authorized_keys`` given, other keys are refused: the prompt stays unanswered and the host
reports the device as unauthorized.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from device_runner.sim import protocol as p
from device_runner.sim.battery import BatteryModel
from device_runner.sim.faults import Faults
from device_runner.sim.fs import FileTree
from device_runner.sim.profiles import BENCH_ACTIVITY, BENCH_PACKAGE, Profile, load_profile
from device_runner.sim.transport import Connection, Stream
from pipeline.errors import ConfigError

log = logging.getLogger(__name__)

FEATURES = ("shell_v2", "cmd", "fixed_push_mkdir")


@dataclass
class Package:
    name: str
    system: bool = False
    debuggable: bool = False
    activities: set[str] = field(default_factory=set)
    apk_path: str = ""


class SimulatedPhone:
    """A simulated Android phone serving ADB over TCP on ``host``:``port`` (0 = a free port)."""

    def __init__(self, root: Path | str, profile: str | Profile = "pixel-8", port: int = 0,
                 faults: Faults | None = None, *, host: str = "127.0.0.1",
                 authorized_keys: Path | str | None = None, serial: str | None = None,
                 preinstall_bench_app: bool = True, clock: Callable[[], float] | None = None) -> None:
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"SimulatedPhone port must be 0..65535, got {port!r}")
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"cannot use {self.root} as the simulated phone's file folder: {err.strerror}",
                              next_step="Pass a writable folder as --root.") from None
        self.profile = profile if isinstance(profile, Profile) else load_profile(profile)
        self.host = host
        self._requested_port = port
        self._faults = faults or Faults()
        self._drops_left = self._faults.drop_connections
        self._fault_gen = 0
        self._lock = threading.Lock()
        self.fs = FileTree(self.root)
        battery_kwargs = {"clock": clock} if clock else {}
        self.battery = BatteryModel(self.profile.battery, faults=lambda: self._faults, **battery_kwargs)
        if self._faults.battery_level_pct is not None:
            self.battery.force_level(self._faults.battery_level_pct)
        self._authorized: list[p.AdbPublicKey] | None = None
        if authorized_keys is not None:
            try:
                self._authorized = p.read_keys_file(Path(authorized_keys).read_text())
            except OSError as err:
                raise ConfigError(f"cannot read authorized keys file {authorized_keys}: {err.strerror}",
                                  next_step="Pass a file with one adbkey.pub line per key.") from None
        self._serial_override = serial
        self.packages: dict[str, Package] = {
            name: Package(name, system=True) for name in self.profile.system_packages}
        if preinstall_bench_app:
            self.install_package(BENCH_PACKAGE, debuggable=True, activities={BENCH_ACTIVITY})
        self.settings: dict[tuple[str, str], str] = {("global", "stay_on_while_plugged_in"): "0",
                                                     ("system", "screen_off_timeout"): "30000"}
        self.screen_on = True
        self.battery_reporting_unplugged = False
        self.running: dict[str, int] = {}        # package -> pid
        self.foreground: tuple[str, str] | None = None  # (package, activity) on screen
        self.started_intents: list[dict] = []    # every successful `am start`, newest last
        self.jobs: list[threading.Thread] = []   # simulated app work started by `am start`
        self._next_pid = 12000
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._connections: set[Connection] = set()
        self._stopping = False
        from device_runner.sim.dumps import install_virtual_nodes

        install_virtual_nodes(self)

    # --- life cycle ----------------------------------------------------------------------------
    def start(self) -> SimulatedPhone:
        if self._listener is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self._requested_port))
        except OSError as err:
            sock.close()
            raise ConfigError(f"cannot listen on {self.host}:{self._requested_port}: {err.strerror}",
                              next_step="Choose another --port (0 picks a free one).") from None
        sock.listen(16)
        self._listener = sock
        self._stopping = False
        self._accept_thread = threading.Thread(target=self._accept_loop, name="adb-sim-accept", daemon=True)
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5)
        with self._lock:
            conns = list(self._connections)
        for conn in conns:
            conn.close()
        for conn in conns:
            conn.thread.join(timeout=5)
        for job in list(self.jobs):
            job.join(timeout=30)
        self._listener = None
        self._accept_thread = None

    def __enter__(self) -> SimulatedPhone:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        listener = self._listener
        while not self._stopping and listener is not None:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(self, sock, self._connection_ended)
            with self._lock:
                self._connections.add(conn)
            conn.thread.start()

    def _connection_ended(self, conn: Connection) -> None:
        with self._lock:
            self._connections.discard(conn)

    def drop_connections(self) -> None:
        """Close every open connection now (a cable pulled, Wi-Fi lost)."""
        with self._lock:
            conns = list(self._connections)
        for conn in conns:
            conn.close()

    # --- facts -------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._listener is None:
            raise ConfigError("the simulated phone is not started",
                              next_step="Start it first (use it as a context manager).")
        return self._listener.getsockname()[1]

    @property
    def serial(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def device_serial(self) -> str:
        """What ``ro.serialno`` says (the hardware serial, not the TCP address)."""
        return self._serial_override or self.profile.props.get("ro.serialno", "SIM0000001")

    @property
    def props(self) -> dict[str, str]:
        props = dict(self.profile.props)
        serial = self.device_serial
        for key in ("ro.serialno", "ro.boot.serialno"):
            if key in props or key == "ro.serialno":
                props[key] = serial
        props["service.adb.tcp.port"] = str(self._listener.getsockname()[1] if self._listener else 5555)
        # says "simulated" to any client that looks (device_runner.profiles reads it), so a sim reached
        # by host:port is still labelled simulated; a devices.yaml entry can still force another profile
        props["ro.vitpalette.simulated"] = "1"
        return props

    @property
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        if not isinstance(faults, Faults):
            raise ConfigError(f"phone.faults must be a Faults, got {type(faults).__name__}")
        old = self._faults
        with self._lock:
            self._faults = faults
            if faults.drop_after_bytes != old.drop_after_bytes or faults.drop_connections != old.drop_connections:
                self._drops_left = faults.drop_connections
                self._fault_gen += 1
        if faults.battery_level_pct is not None and faults.battery_level_pct != old.battery_level_pct:
            self.battery.force_level(faults.battery_level_pct)

    def host_path(self, device_path: str) -> Path:
        return self.fs.host_path(device_path)

    def device_info(self) -> dict:
        info = self.profile.device_info(self.device_serial)
        info["latency_multiplier"] = self._faults.slow_factor
        return info

    def banner(self) -> bytes:
        pr = self.profile.props
        text = (f"device::ro.product.name={pr['ro.product.name']};ro.product.model={pr['ro.product.model']};"
                f"ro.product.device={pr['ro.product.device']};features={','.join(FEATURES)}")
        return text.encode()

    def install_package(self, name: str, *, debuggable: bool = False, activities: set[str] | None = None,
                        apk_path: str = "") -> Package:
        pkg = self.packages.get(name) or Package(name)
        pkg.debuggable = debuggable or pkg.debuggable
        pkg.activities |= activities or set()
        pkg.apk_path = apk_path or pkg.apk_path
        self.packages[name] = pkg
        self.fs.host_path(f"/data/data/{name}/files").mkdir(parents=True, exist_ok=True)
        self.fs.host_path(f"/sdcard/Android/data/{name}/files").mkdir(parents=True, exist_ok=True)
        return pkg

    def new_pid(self) -> int:
        with self._lock:
            self._next_pid += 7
            return self._next_pid

    # --- hooks for the transport -----------------------------------------------------------------
    def _claim_drop_budget(self) -> int | None:
        """Byte count at which a new connection is dropped (drop fault), or None."""
        with self._lock:
            f = self._faults
            if f.drop_after_bytes is None:
                return None
            if self._drops_left is None:
                return f.drop_after_bytes
            if self._drops_left <= 0:
                return None
            self._drops_left -= 1
            return f.drop_after_bytes

    def _keys_file(self) -> Path:
        return self.fs.host_path("/data/misc/adb/adb_keys")

    def _trusted_keys(self) -> list[p.AdbPublicKey]:
        keys = list(self._authorized or [])
        try:
            keys += p.read_keys_file(self._keys_file().read_text())
        except OSError:
            pass
        return keys

    def _signature_trusted(self, token: bytes, signature: bytes) -> bool:
        return any(key.verify(token, signature) for key in self._trusted_keys())

    def _accept_public_key(self, data: bytes) -> bool:
        if self._faults.refuse_auth:
            return False
        try:
            key = p.parse_public_key(data)
        except (ValueError, Exception):
            return False
        if self._authorized is not None:
            return any(k.modulus == key.modulus for k in self._authorized)
        path = self._keys_file()
        line = data.split(b"\0", 1)[0].decode("ascii", "replace").strip()
        with self._lock:
            with open(path, "a") as f:
                f.write(line + "\n")
        return True

    def _service_for(self, service: str) -> Callable[[Stream], None] | None:
        from device_runner.sim.shell import shell_service
        from device_runner.sim.sync import serve_sync

        if service.startswith("sync:"):
            return lambda stream: serve_sync(self, stream)
        if service.startswith(("shell", "exec:")):
            return lambda stream: shell_service(self, stream, service)
        return None
