"""Packages and activities on the simulated phone: ``pm``, ``am``, and the simulated benchmark app.

``am start -n org.vitpalette.bench/.BenchmarkActivity --es job <path>`` starts the benchmark app:
``device_runner.sim.benchmark_app.run_job(job_path, fs=..., device_info=..., battery=...)`` runs in
a background thread (one job at a time, like the one app process), and ``am start`` returns at
once, as on a phone. When that module is not there the start is only recorded.

``pm install <apk>`` reads the package name and activities from the APK's AndroidManifest.xml
(binary AXML as built by aapt2, or plain XML), so the real app APK installs like on a phone.
"""

from __future__ import annotations

import importlib
import logging
import re
import secrets
import struct
import threading
import time
import zipfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from device_runner.sim.phone import SimulatedPhone
    from device_runner.sim.shell import Shell

log = logging.getLogger(__name__)
Result = tuple[int, bytes, bytes]


def _b64_random() -> str:
    import base64

    return base64.urlsafe_b64encode(secrets.token_bytes(16)).decode()


# --- pm ---------------------------------------------------------------------------------------

def pm(sh: Shell, args: list[str]) -> Result:
    phone = sh.phone
    if args[:2] == ["list", "packages"]:
        opts = [a for a in args[2:] if a.startswith("-")]
        filters = [a for a in args[2:] if not a.startswith("-")]
        names = list(phone.packages)
        lines = []
        for name in names:
            pkg = phone.packages[name]
            if "-3" in opts and pkg.system:
                continue
            if "-s" in opts and not pkg.system:
                continue
            if filters and filters[0] not in name:
                continue
            prefix = f"package:{_apk_path(pkg)}=" if "-f" in opts else "package:"
            lines.append(prefix + name + "\n")
        return 0, "".join(lines).encode(), b""
    if args[:1] == ["path"] and len(args) >= 2:
        pkg = phone.packages.get(args[-1])
        if pkg is None:
            return 1, b"", b""
        return 0, f"package:{_apk_path(pkg)}\n".encode(), b""
    if args[:1] == ["install"]:
        return _install(sh, [a for a in args[1:] if not a.startswith("-")])
    if args[:1] == ["uninstall"] and len(args) >= 2:
        pkg = phone.packages.get(args[-1])
        if pkg is None or pkg.system:
            return 1, b"Failure [DELETE_FAILED_INTERNAL_ERROR]\n", b""
        del phone.packages[args[-1]]
        phone.running.pop(args[-1], None)
        return 0, b"Success\n", b""
    if args[:1] == ["clear"] and len(args) >= 2:
        if args[-1] not in phone.packages:
            return 1, b"Failed\n", b""
        import shutil

        shutil.rmtree(phone.fs.host_path(f"/data/data/{args[-1]}"), ignore_errors=True)
        phone.fs.host_path(f"/data/data/{args[-1]}/files").mkdir(parents=True, exist_ok=True)
        return 0, b"Success\n", b""
    return 255, b"", f"Unknown command: {' '.join(args[:1])}\n".encode()


def _apk_path(pkg) -> str:
    if pkg.system:
        short = pkg.name.rsplit(".", 1)[-1]
        return f"/product/app/{short}/{short}.apk"
    if not pkg.apk_path:
        pkg.apk_path = f"/data/app/~~{_b64_random()}/{pkg.name}-{_b64_random()}/base.apk"
    return pkg.apk_path


def _install(sh: Shell, operands: list[str]) -> Result:
    if not operands:
        return 1, b"", b"Error: must either specify a package size or an APK file\n"
    path = operands[-1]
    data = None if sh.denied(path) else sh.read_file(path)
    if data is None:
        msg = (f"Error: Unable to open file: {path}\nConsider using a file under /data/local/tmp/\n"
               f"Error: Can't open file: {path}\n")
        return 1, b"", msg.encode()
    return install_file(sh, sh.host(path), path)


def install_file(sh: Shell, host_path, shown_path: str) -> Result:
    """Install the APK at ``host_path``; ``shown_path`` is how errors name it."""
    try:
        name, activities = read_manifest(host_path)
    except ValueError:
        return 1, (f"Failure [INSTALL_PARSE_FAILED_NOT_APK: Failed to parse {shown_path}: "
                   f"Failed to load asset path {shown_path}]\n").encode(), b""
    sh.phone.install_package(name, debuggable=True, activities=activities)
    return 0, b"Success\n", b""


def read_manifest(apk) -> tuple[str, set[str]]:
    """(package name, fully qualified activity names) from an APK; ValueError if it is not one."""
    try:
        with zipfile.ZipFile(apk) as z:
            raw = z.read("AndroidManifest.xml")
    except (zipfile.BadZipFile, KeyError, OSError) as err:
        raise ValueError(f"not an APK: {err}") from None
    if raw.lstrip().startswith(b"<"):
        text = raw.decode("utf-8", "replace")
        m = re.search(r'<manifest[^>]*\bpackage="([^"]+)"', text)
        if not m:
            raise ValueError("manifest without package")
        pkg = m.group(1)
        acts = re.findall(r'<activity[^>]*\bandroid:name="([^"]+)"', text)
        return pkg, {pkg + a if a.startswith(".") else a for a in acts}
    return _read_axml(raw)


def _read_axml(raw: bytes) -> tuple[str, set[str]]:
    """Minimal binary-XML reader: the string pool, then element attributes."""
    if len(raw) < 8 or struct.unpack_from("<H", raw, 0)[0] != 0x0003:
        raise ValueError("not binary XML")
    strings: list[str] = []
    pos = 8
    package = ""
    activities: set[str] = set()
    while pos + 8 <= len(raw):
        ctype, header_size, size = struct.unpack_from("<HHI", raw, pos)
        if size < 8:
            raise ValueError("bad chunk")
        if ctype == 0x0001:  # string pool
            count, _styles, flags, strings_start, _ = struct.unpack_from("<5I", raw, pos + 8)
            utf8 = bool(flags & 0x100)
            offsets = struct.unpack_from(f"<{count}I", raw, pos + header_size)
            base = pos + strings_start
            for off in offsets:
                strings.append(_pool_string(raw, base + off, utf8))
        elif ctype == 0x0102:  # start element
            _ns, name_idx, attr_start, attr_size, attr_count = struct.unpack_from("<IIHHH", raw, pos + 16)
            element = strings[name_idx] if name_idx < len(strings) else ""
            attrs = {}
            for k in range(attr_count):
                a = pos + header_size + attr_start + k * attr_size
                _ans, aname, raw_value, _sz, _res, dtype, data = struct.unpack_from("<IIIHBBI", raw, a)
                key = strings[aname] if aname < len(strings) else ""
                if raw_value != 0xFFFFFFFF and raw_value < len(strings):
                    attrs[key] = strings[raw_value]
                elif dtype == 0x03 and data < len(strings):
                    attrs[key] = strings[data]
            if element == "manifest":
                package = attrs.get("package", "")
            elif element in ("activity", "activity-alias") and "name" in attrs:
                n = attrs["name"]
                activities.add(package + n if n.startswith(".") else n if "." in n else f"{package}.{n}")
        pos += size
    if not package:
        raise ValueError("manifest without package")
    return package, activities


def _pool_string(raw: bytes, at: int, utf8: bool) -> str:
    if utf8:
        n = raw[at]
        at += 2 if n & 0x80 else 1
        length = raw[at]
        if length & 0x80:
            length = ((length & 0x7F) << 8) | raw[at + 1]
            at += 2
        else:
            at += 1
        return raw[at:at + length].decode("utf-8", "replace")
    length = struct.unpack_from("<H", raw, at)[0]
    at += 2
    if length & 0x8000:
        length = ((length & 0x7FFF) << 16) | struct.unpack_from("<H", raw, at)[0]
        at += 2
    return raw[at:at + 2 * length].decode("utf-16-le", "replace")


# --- am -----------------------------------------------------------------------------------------

_job_lock = threading.Lock()


def am(sh: Shell, args: list[str]) -> Result:
    phone = sh.phone
    if not args:
        return 1, b"", b"Error: no command\n"
    sub, rest = args[0], args[1:]
    if sub in ("force-stop", "kill", "stop-app"):
        names = [a for a in rest if not a.startswith("--") and not a.isdigit()]
        for name in names:
            phone.running.pop(name, None)
            if getattr(phone, "foreground", None) and phone.foreground[0] == name:
                phone.foreground = None
        return 0, b"", b""
    if sub in ("start", "start-activity"):
        return _start(phone, rest)
    return 255, b"", f"Unknown command: {sub}\n".encode()


def _start(phone: SimulatedPhone, args: list[str]) -> Result:
    wait = False
    component = action = None
    extras: dict[str, object] = {}
    i = 0
    while i < len(args):
        a = args[i]
        if a == "-W":
            wait = True
        elif a in ("-S", "-R", "--activity-clear-top", "--activity-single-top", "--activity-clear-task",
                   "--activity-new-task"):
            if a == "-R":
                i += 1
        elif a == "-n" and i + 1 < len(args):
            component = args[i + 1]
            i += 1
        elif a == "-a" and i + 1 < len(args):
            action = args[i + 1]
            i += 1
        elif a in ("--es", "--ei", "--ez", "--el", "--ef", "-e") and i + 2 < len(args):
            key, value = args[i + 1], args[i + 2]
            conv = {"--ei": int, "--el": int, "--ef": float, "--ez": lambda v: v.lower() == "true"}.get(a, str)
            try:
                extras[key] = conv(value)
            except ValueError:
                return 255, b"", f"Error: Invalid value for {a}: {value}\n".encode()
            i += 2
        elif a in ("--user", "-d", "-t", "-c", "-f", "--display", "--windowingMode") and i + 1 < len(args):
            i += 1
        i += 1
    if component is None or "/" not in component:
        return 1, b"", b"Error: Activity not started, unable to resolve Intent\n"
    pkg_name, cls = component.split("/", 1)
    full_cls = pkg_name + cls if cls.startswith(".") else cls
    short = f"{pkg_name}/{cls if cls.startswith('.') else ('.' + cls[len(pkg_name) + 1:] if cls.startswith(pkg_name + '.') else cls)}"
    intent = (f"act={action} " if action else "") + f"cmp={short}" + (" (has extras)" if extras else "")
    out = [f"Starting: Intent {{ {intent} }}"]
    pkg = phone.packages.get(pkg_name)
    if pkg is None or full_cls not in pkg.activities:
        out += ["Error type 3", f"Error: Activity class {{{pkg_name}/{full_cls}}} does not exist."]
        text = "\n".join(out) + "\n"
        return (1, text.encode(), b"") if wait else (1, out[0].encode() + b"\n", "\n".join(out[1:]).encode() + b"\n")
    launch_state = "WARM" if pkg_name in phone.running else "COLD"
    started = time.monotonic()
    if pkg_name not in phone.running:
        phone.running[pkg_name] = phone.new_pid()
    phone.foreground = (pkg_name, full_cls)
    phone.screen_on = True
    record = {"package": pkg_name, "activity": full_cls, "action": action, "extras": extras, "time": time.time()}
    phone.started_intents.append(record)
    _launch_app(phone, pkg_name, full_cls, extras)
    if wait:
        total_ms = int((time.monotonic() - started) * 1000) + (412 if launch_state == "COLD" else 96)
        out += ["Status: ok", f"LaunchState: {launch_state}", f"Activity: {short}", f"TotalTime: {total_ms}",
                f"WaitTime: {total_ms + 6}", "Complete"]
    return 0, ("\n".join(out) + "\n").encode(), b""


def _launch_app(phone: SimulatedPhone, pkg_name: str, activity: str, extras: dict) -> None:
    from device_runner.sim.profiles import BENCH_ACTIVITY, BENCH_PACKAGE

    if pkg_name != BENCH_PACKAGE or activity != BENCH_ACTIVITY:
        return
    job_path = extras.get("job")
    if not isinstance(job_path, str):
        return
    try:
        module = importlib.import_module("device_runner.sim.benchmark_app")
    except ModuleNotFoundError as err:
        if err.name != "device_runner.sim.benchmark_app":
            raise
        log.info("no simulated benchmark app module; start of %s recorded only", job_path)
        return

    def work() -> None:
        with _job_lock:
            if phone.faults.app_crash:
                log.info("simulated benchmark app crash (fault) on %s", job_path)
                phone.running.pop(pkg_name, None)
                return
            try:
                module.run_job(job_path, fs=phone.fs, device_info=phone.device_info(), battery=phone.battery)
            except Exception:  # the app "crashes": its process goes away, as on a phone
                log.exception("simulated benchmark app crashed on %s", job_path)
                phone.running.pop(pkg_name, None)

    thread = threading.Thread(target=work, name="sim-bench-app", daemon=True)
    phone.jobs = [t for t in phone.jobs if t.is_alive()] + [thread]
    thread.start()


def dump_activities(phone: SimulatedPhone) -> str:
    fg = getattr(phone, "foreground", None)
    if not fg:
        return "ACTIVITY MANAGER ACTIVITIES (dumpsys activity activities)\n"
    pkg, cls = fg
    short = "." + cls[len(pkg) + 1:] if cls.startswith(pkg + ".") else cls
    return ("ACTIVITY MANAGER ACTIVITIES (dumpsys activity activities)\n"
            f"  mResumedActivity: ActivityRecord{{8e1f2a7 u0 {pkg}/{short} t231}}\n"
            f"  ResumedActivity: ActivityRecord{{8e1f2a7 u0 {pkg}/{short} t231}}\n")


def dump_window(phone: SimulatedPhone) -> str:
    fg = getattr(phone, "foreground", None)
    focus = f"Window{{5b2c1e0 u0 {fg[0]}/{fg[1]}}}" if fg else "Window{1f3a2b9 u0 NotificationShade}"
    return f"WINDOW MANAGER WINDOWS (dumpsys window windows)\n  mCurrentFocus={focus}\n  mFocusedApp=null\n"
