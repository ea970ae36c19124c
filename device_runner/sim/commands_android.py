"""The commands the simulated shell knows: toybox file tools and Android's getprop/am/pm/dumpsys/...

Each command is ``fn(shell, argv, stdin) -> (exit_code, stdout_bytes, stderr_bytes)`` and prints
what a Pixel prints (shared/device-outputs), errors included.
"""

from __future__ import annotations

import base64
import hashlib
import os
import posixpath
import shutil
import stat as stat_mod
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from device_runner.sim import apps, dumps

if TYPE_CHECKING:
    from device_runner.sim.shell import Shell

Result = tuple[int, bytes, bytes]
COMMANDS: dict[str, Callable[[Shell, list[str], bytes], Result]] = {}


def command(*names: str):
    def register(fn):
        for name in names:
            COMMANDS[name] = fn
        return fn
    return register


def ok(text: str = "") -> Result:
    return 0, text.encode(), b""


def fail(text: str, code: int = 1, stdout: str = "") -> Result:
    return code, stdout.encode(), text.encode()


def split_flags(args: list[str], known: str) -> tuple[set[str], list[str]]:
    """toybox-style short flags (``-rf``) before and between operands; ``--`` ends them."""
    flags: set[str] = set()
    rest: list[str] = []
    only_operands = False
    for a in args:
        if not only_operands and a == "--":
            only_operands = True
        elif not only_operands and a.startswith("-") and len(a) > 1 and all(ch in known for ch in a[1:]):
            flags.update(a[1:])
        else:
            rest.append(a)
    return flags, rest


# --- shell builtins ------------------------------------------------------------------------------

@command("echo")
def _echo(sh: Shell, argv: list[str], stdin: bytes) -> Result:
    args = argv[1:]
    newline = True
    while args and args[0] in ("-n", "-e", "-E", "-ne", "-en"):
        if "n" in args[0]:
            newline = False
        args = args[1:]
    return ok(" ".join(args) + ("\n" if newline else ""))


@command("true", ":")
def _true(sh, argv, stdin):
    return ok()


@command("false")
def _false(sh, argv, stdin):
    return 1, b"", b""


@command("exit")
def _exit(sh, argv, stdin):
    sh.exit_requested = True
    try:
        return int(argv[1]) if len(argv) > 1 else sh.status, b"", b""
    except ValueError:
        return 2, b"", f"{sh.name}: exit: {argv[1]}: bad number\n".encode()


@command("cd")
def _cd(sh, argv, stdin):
    target = argv[1] if len(argv) > 1 else "/"
    st = sh.stat(target)
    if st is None or not stat_mod.S_ISDIR(st.st_mode):
        return fail(f"{sh.name}: cd: {target}: No such file or directory\n", 2)
    from device_runner.sim.fs import normalize

    sh.cwd = normalize(target, sh.cwd)
    return ok()


@command("pwd")
def _pwd(sh, argv, stdin):
    return ok(sh.cwd + "\n")


@command("sh", "mksh")
def _sh(sh, argv, stdin):
    from device_runner.sim.shell import Shell

    if len(argv) >= 3 and argv[1] == "-c":
        sub = Shell(sh.phone, user=sh.user, cwd=sh.cwd, name="sh")
        out = sub.run(argv[2])
        return out.code, out.stdout(), out.stderr()
    if len(argv) >= 2:
        script = sh.read_file(argv[1])
        if script is None:
            return fail(f"sh: {argv[1]}: No such file or directory\n", 127)
        sub = Shell(sh.phone, user=sh.user, cwd=sh.cwd, name=argv[1])
        out = sub.run(script.decode("utf-8", "replace"))
        return out.code, out.stdout(), out.stderr()
    sub = Shell(sh.phone, user=sh.user, cwd=sh.cwd, name="sh")
    out = sub.run(stdin.decode("utf-8", "replace"))
    return out.code, out.stdout(), out.stderr()


@command("test", "[")
def _test(sh, argv, stdin):
    args = argv[1:]
    if argv[0] == "[":
        if not args or args[-1] != "]":
            return fail("[: missing ]\n", 2)
        args = args[:-1]
    negate = False
    if args and args[0] == "!":
        negate, args = True, args[1:]
    result = False
    if len(args) == 2 and args[0] in ("-e", "-f", "-d", "-s", "-r", "-w", "-x", "-L"):
        st = sh.stat(args[1])
        op = args[0]
        result = st is not None and (
            op in ("-e", "-r", "-w")
            or (op == "-f" and stat_mod.S_ISREG(st.st_mode))
            or (op == "-d" and stat_mod.S_ISDIR(st.st_mode))
            or (op == "-s" and st.st_size > 0)
            or (op == "-x" and bool(st.st_mode & 0o111))
            or (op == "-L" and stat_mod.S_ISLNK(st.st_mode)))
    elif len(args) == 2 and args[0] in ("-z", "-n"):
        result = (args[1] == "") == (args[0] == "-z")
    elif len(args) == 3 and args[1] in ("=", "==", "!="):
        result = (args[0] == args[2]) == (args[1] != "!=")
    elif len(args) == 3 and args[1] in ("-eq", "-ne", "-lt", "-le", "-gt", "-ge"):
        try:
            a, b = int(args[0]), int(args[2])
        except ValueError:
            return fail(f"{argv[0]}: bad number\n", 2)
        result = {"-eq": a == b, "-ne": a != b, "-lt": a < b, "-le": a <= b, "-gt": a > b, "-ge": a >= b}[args[1]]
    elif len(args) == 1:
        result = args[0] != ""
    return (0 if result != negate else 1), b"", b""


@command("sleep")
def _sleep(sh, argv, stdin):
    try:
        time.sleep(min(float(argv[1]), 60.0))
    except (IndexError, ValueError):
        return fail("sleep: needs 1 argument\n")
    return ok()


@command("id")
def _id(sh, argv, stdin):
    if sh.user == "shell":
        return ok("uid=2000(shell) gid=2000(shell) groups=2000(shell),1004(input),1007(log),1011(adb),1015(sdcard_rw),"
                  "1028(sdcard_r),3001(net_bt_admin),3002(net_bt),3003(inet),3006(net_bw_stats) "
                  "context=u:r:shell:s0\n")
    return ok("uid=10234(u0_a234) gid=10234(u0_a234) groups=10234(u0_a234),3003(inet) context=u:r:untrusted_app:s0\n")


@command("whoami")
def _whoami(sh, argv, stdin):
    return ok(("shell" if sh.user == "shell" else "u0_a234") + "\n")


@command("uname")
def _uname(sh, argv, stdin):
    flags = set("".join(a[1:] for a in argv[1:] if a.startswith("-")))
    if "a" in flags:
        return ok(f"Linux localhost 5.15.137-android14-11 #1 SMP PREEMPT {sh.phone.profile.hostname} aarch64 Toybox\n")
    if "m" in flags:
        return ok("aarch64\n")
    if "r" in flags:
        return ok("5.15.137-android14-11\n")
    return ok("Linux\n")


@command("nproc")
def _nproc(sh, argv, stdin):
    return ok(f"{sh.phone.profile.cores}\n")


@command("date")
def _date(sh, argv, stdin):
    if len(argv) > 1 and argv[1] == "+%s":
        return ok(f"{int(time.time())}\n")
    if len(argv) > 1 and argv[1] == "+%s.%N":  # toybox date: seconds.nanoseconds
        now = time.time_ns()
        return ok(f"{now // 1_000_000_000}.{now % 1_000_000_000:09d}\n")
    return ok(time.strftime("%a %b %d %H:%M:%S %Z %Y", time.localtime()) + "\n")


# --- toybox file tools ---------------------------------------------------------------------------

@command("cat")
def _cat(sh, argv, stdin):
    _, paths = split_flags(argv[1:], "uvtAe")
    if not paths:
        return 0, stdin, b""
    out, err, code = [], [], 0
    for path in paths:
        if sh.denied(path):
            err.append(f"cat: {path}: Permission denied\n")
            code = 1
            continue
        st = sh.stat(path)
        if st is not None and stat_mod.S_ISDIR(st.st_mode):
            err.append(f"cat: {path}: Is a directory\n")
            code = 1
            continue
        data = sh.read_file(path)
        if data is None:
            err.append(f"cat: {path}: No such file or directory\n")
            code = 1
        else:
            out.append(data)
    return code, b"".join(out), "".join(err).encode()


def _ls_line(sh: Shell, name: str, st: os.stat_result) -> str:
    owner = "shell" if sh.user == "shell" else "u0_a234"
    mtime = time.strftime("%Y-%m-%d %H:%M", time.localtime(st.st_mtime))
    size = st.st_size if not stat_mod.S_ISDIR(st.st_mode) else 3452
    return f"{stat_mod.filemode(st.st_mode)} {st.st_nlink} {owner} {owner} {size} {mtime} {name}"


@command("ls")
def _ls(sh, argv, stdin):
    flags, paths = split_flags(argv[1:], "laA1dhRtSrsZn")
    long_format = "l" in flags or "n" in flags
    show_all = "a" in flags or "A" in flags
    paths = paths or ["."]
    out, err, code = [], [], 0
    files, dirs = [], []
    for path in paths:
        if sh.denied(path):
            err.append(f"ls: {path}: Permission denied\n")
            code = 1
            continue
        st = sh.stat(path)
        if st is None:
            err.append(f"ls: {path}: No such file or directory\n")
            code = 1
        elif stat_mod.S_ISDIR(st.st_mode) and "d" not in flags:
            dirs.append(path)
        else:
            files.append((path, st))
    for path, st in files:
        out.append((_ls_line(sh, path, st) if long_format else path) + "\n")
    for index, path in enumerate(dirs):
        if len(paths) > 1:
            out.append(("\n" if files or index else "") + f"{path}:\n")
        host = sh.host(path)
        names = [n for n in os.listdir(host) if not n.startswith(".sim-")]
        names = sorted(set(names) | set(sh.phone.fs.virtual_children(posixpath.join(sh.cwd, path))))
        if not show_all:
            names = [n for n in names if not n.startswith(".")]
        elif "a" in flags:
            names = [".", ".."] + names
        entries = []
        for n in names:
            st = sh.stat(posixpath.join(path, n)) or os.stat(host)
            entries.append((n, st))
        if long_format:
            total = sum((getattr(st, "st_blocks", 0) or 0) // 2 for _, st in entries)
            out.append(f"total {total}\n")
            out.extend(_ls_line(sh, n, st) + "\n" for n, st in entries)
        else:
            out.extend(n + "\n" for n, _ in entries)
    return code, "".join(out).encode(), "".join(err).encode()


@command("rm")
def _rm(sh, argv, stdin):
    flags, paths = split_flags(argv[1:], "fRrvi")
    force, recursive = "f" in flags, bool({"r", "R"} & flags)
    if not paths:
        return (0, b"", b"") if force else fail("rm: Needs 1 argument (see \"rm --help\")\n")
    err, code = [], 0
    for path in paths:
        if sh.denied(path):
            err.append(f"rm: {path}: Permission denied\n")
            code = 1
            continue
        host = sh.host(path)
        if not os.path.lexists(host):
            if not force:
                err.append(f"rm: {path}: No such file or directory\n")
                code = 1
            continue
        if host.is_dir() and not host.is_symlink():
            if not recursive:
                err.append(f"rm: {path}: Is a directory\n")
                code = 1
                continue
            shutil.rmtree(host)
        else:
            host.unlink()
    return code, b"", "".join(err).encode()


@command("rmdir")
def _rmdir(sh, argv, stdin):
    err, code = [], 0
    for path in argv[1:]:
        try:
            os.rmdir(sh.host(path))
        except OSError as e:
            err.append(f"rmdir: {path}: {e.strerror}\n")
            code = 1
    return code, b"", "".join(err).encode()


@command("mkdir")
def _mkdir(sh, argv, stdin):
    args = argv[1:]
    mode = None
    if "-m" in args:
        i = args.index("-m")
        mode = int(args[i + 1], 8) if i + 1 < len(args) else None
        del args[i:i + 2]
    flags, paths = split_flags(args, "pv")
    err, code = [], 0
    for path in paths:
        if sh.denied(path):
            err.append(f"mkdir: '{path}': Permission denied\n")
            code = 1
            continue
        host = sh.host(path)
        try:
            if "p" in flags:
                host.mkdir(parents=True, exist_ok=True)
            else:
                host.mkdir()
            if mode is not None:
                os.chmod(host, mode)
        except FileExistsError:
            err.append(f"mkdir: '{path}': File exists\n")
            code = 1
        except OSError as e:
            err.append(f"mkdir: '{path}': {e.strerror}\n")
            code = 1
    return code, b"", "".join(err).encode()


@command("touch")
def _touch(sh, argv, stdin):
    _, paths = split_flags(argv[1:], "acm")
    err, code = [], 0
    for path in paths:
        try:
            sh.host(path).touch()
        except OSError as e:
            err.append(f"touch: '{path}': {e.strerror}\n")
            code = 1
    return code, b"", "".join(err).encode()


@command("chmod")
def _chmod(sh, argv, stdin):
    flags, args = split_flags(argv[1:], "Rfv")
    if len(args) < 2:
        return fail("chmod: Needs 2 arguments (see \"chmod --help\")\n")
    mode_text, paths = args[0], args[1:]
    err, code = [], 0
    for path in paths:
        host = sh.host(path)
        if sh.denied(path) or not os.path.lexists(host):
            err.append(f"chmod: {path}: {'Permission denied' if sh.denied(path) else 'No such file or directory'}\n")
            code = 1
            continue
        current = os.stat(host).st_mode & 0o7777
        try:
            new = _parse_mode(mode_text, current)
        except ValueError:
            return fail(f"chmod: bad mode '{mode_text}'\n")
        os.chmod(host, new)
    return code, b"", "".join(err).encode()


def _parse_mode(text: str, current: int) -> int:
    if text.isdigit():
        return int(text, 8)
    mode = current
    for clause in text.split(","):
        who = ""
        i = 0
        while i < len(clause) and clause[i] in "ugoa":
            who += clause[i]
            i += 1
        if i >= len(clause) or clause[i] not in "+-=":
            raise ValueError(text)
        op, perms = clause[i], clause[i + 1:]
        bits = 0
        for w in (who or "a"):
            shifts = {"u": [6], "g": [3], "o": [0], "a": [6, 3, 0]}[w]
            for s in shifts:
                for p in perms:
                    bits |= {"r": 4, "w": 2, "x": 1}.get(p, 0) << s
        if op == "+":
            mode |= bits
        elif op == "-":
            mode &= ~bits
        else:
            mode = bits
    return mode


@command("sha256sum", "sha1sum", "md5sum", "sha512sum")
def _hashsum(sh, argv, stdin):
    algo = argv[0].split("/")[-1].replace("sum", "")
    _, paths = split_flags(argv[1:], "bc")
    if not paths:
        return ok(f"{hashlib.new(algo, stdin).hexdigest()}  -\n")
    out, err, code = [], [], 0
    for path in paths:
        if sh.denied(path):
            err.append(f"{argv[0]}: {path}: Permission denied\n")
            code = 1
            continue
        host = sh.host(path)
        virtual = sh.phone.fs.read_virtual(path, sh.cwd)
        if virtual is not None:
            out.append(f"{hashlib.new(algo, virtual).hexdigest()}  {path}\n")
            continue
        if host.is_dir():
            err.append(f"{argv[0]}: {path}: Is a directory\n")
            code = 1
            continue
        try:
            h = hashlib.new(algo)
            with open(host, "rb") as f:
                for block in iter(lambda f=f: f.read(1 << 20), b""):
                    h.update(block)
            out.append(f"{h.hexdigest()}  {path}\n")
        except OSError:
            err.append(f"{argv[0]}: {path}: No such file or directory\n")
            code = 1
    return code, "".join(out).encode(), "".join(err).encode()


@command("stat")
def _stat(sh, argv, stdin):
    args = argv[1:]
    fmt = None
    if "-c" in args:
        i = args.index("-c")
        fmt = args[i + 1] if i + 1 < len(args) else ""
        del args[i:i + 2]
    out, err, code = [], [], 0
    for path in args:
        st = None if sh.denied(path) else sh.stat(path)
        if st is None:
            err.append(f"stat: '{path}': {'Permission denied' if sh.denied(path) else 'No such file or directory'}\n")
            code = 1
            continue
        if fmt is None:
            out.append(f"  File: {path}\n  Size: {st.st_size}\n")
            continue
        kind = "directory" if stat_mod.S_ISDIR(st.st_mode) else "regular file"
        subst = {"s": str(st.st_size), "Y": str(int(st.st_mtime)), "a": f"{st.st_mode & 0o7777:o}",
                 "n": path, "F": kind, "U": "shell", "G": "shell", "A": stat_mod.filemode(st.st_mode), "%": "%"}
        text, i = "", 0
        while i < len(fmt):
            if fmt[i] == "%" and i + 1 < len(fmt):
                text += subst.get(fmt[i + 1], "?")
                i += 2
            else:
                text += fmt[i]
                i += 1
        out.append(text + "\n")
    return code, "".join(out).encode(), "".join(err).encode()


@command("mv", "cp")
def _mv_cp(sh, argv, stdin):
    flags, args = split_flags(argv[1:], "frRpna")
    if len(args) < 2:
        return fail(f"{argv[0]}: Needs 2 arguments\n")
    *sources, dest = args
    dest_host = sh.host(dest)
    err, code = [], 0
    for src in sources:
        src_host = sh.host(src)
        if sh.denied(src) or sh.denied(dest) or not src_host.exists():
            reason = "Permission denied" if sh.denied(src) or sh.denied(dest) else "No such file or directory"
            err.append(f"{argv[0]}: {src}: {reason}\n")
            code = 1
            continue
        target = dest_host / src_host.name if dest_host.is_dir() else dest_host
        if argv[0] == "mv":
            os.replace(src_host, target)
        elif src_host.is_dir():
            if not {"r", "R", "a"} & flags:
                err.append(f"cp: {src}: Is a directory (use -r)\n")
                code = 1
                continue
            shutil.copytree(src_host, target, dirs_exist_ok=True)
        else:
            shutil.copyfile(src_host, target)
    return code, b"", "".join(err).encode()


def _input_text(sh: Shell, paths: list[str], stdin: bytes) -> tuple[bytes, str, int]:
    if not paths:
        return stdin, "", 0
    data, err, code = b"", "", 0
    for path in paths:
        content = None if sh.denied(path) else sh.read_file(path)
        if content is None:
            err += f"{path}: No such file or directory\n"
            code = 1
        else:
            data += content
    return data, err, code


@command("head", "tail")
def _head_tail(sh, argv, stdin):
    args = argv[1:]
    count = 10
    rest = []
    i = 0
    while i < len(args):
        if args[i] == "-n" and i + 1 < len(args):
            count = int(args[i + 1].lstrip("+"))
            i += 2
            continue
        if args[i].startswith("-") and args[i][1:].isdigit():
            count = int(args[i][1:])
        else:
            rest.append(args[i])
        i += 1
    data, err, code = _input_text(sh, rest, stdin)
    lines = data.splitlines(keepends=True)
    picked = lines[:count] if argv[0] == "head" else lines[-count:] if count else []
    return code, b"".join(picked), (f"{argv[0]}: {err}" if err else "").encode()


@command("wc")
def _wc(sh, argv, stdin):
    flags, paths = split_flags(argv[1:], "lcwm")
    data, err, code = _input_text(sh, paths, stdin)
    if flags == {"c"}:
        return code, f"{len(data)}\n".encode(), err.encode()
    lines = data.count(b"\n")
    if flags == {"l"}:
        return code, f"{lines}\n".encode(), err.encode()
    return code, f"{lines} {len(data.split())} {len(data)}\n".encode(), err.encode()


@command("grep")
def _grep(sh, argv, stdin):
    import re

    flags, args = split_flags(argv[1:], "vicqFEwnxo")
    if not args:
        return fail("grep: no pattern\n", 2)
    pattern, paths = args[0], args[1:]
    data, err, _ = _input_text(sh, paths, stdin)
    if "F" in flags:
        source = re.escape(pattern)
    elif "E" in flags:
        source = pattern
    else:
        source = _bre_to_python(pattern)
    regex = re.compile(source, re.I if "i" in flags else 0)
    hits = []
    for line in data.decode("utf-8", "replace").splitlines():
        found = bool(regex.fullmatch(line) if "x" in flags else regex.search(line))
        if found != ("v" in flags):
            hits.append(line)
    if "q" in flags:
        return (0 if hits else 1), b"", b""
    if "c" in flags:
        return (0 if hits else 1), f"{len(hits)}\n".encode(), err.encode()
    return (0 if hits else 1), "".join(h + "\n" for h in hits).encode(), err.encode()


def _bre_to_python(pattern: str) -> str:
    """POSIX basic regex (with the GNU ``\\|`` alternation toybox accepts) to Python syntax."""
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            out += nxt if nxt in "|(){}+?" else "\\" + nxt
            i += 2
            continue
        out += "\\" + c if c in "|(){}+?" else c
        i += 1
    return out


@command("df")
def _df(sh, argv, stdin):
    full = sh.phone.faults.full_disk
    used, size = (116_000_000, 116_000_000) if full else (41_251_804, 116_000_000)
    avail = size - used
    pct = f"{used * 100 // size}%"
    return ok("Filesystem       1K-blocks     Used Available Use% Mounted on\n"
              f"/dev/block/dm-48 {size:9d} {used:8d} {avail:9d} {pct:>4s} /data\n"
              f"/dev/fuse        {size:9d} {used:8d} {avail:9d} {pct:>4s} /storage/emulated\n")


# --- Android tools --------------------------------------------------------------------------------

@command("getprop")
def _getprop(sh, argv, stdin):
    props = sh.phone.props
    if len(argv) == 1:
        return ok("".join(f"[{k}]: [{v}]\n" for k, v in sorted(props.items())))
    default = argv[2] if len(argv) > 2 else ""
    return ok(props.get(argv[1], default) + "\n")


@command("setprop")
def _setprop(sh, argv, stdin):
    return fail(f"Failed to set property '{argv[1] if len(argv) > 1 else ''}'. See dmesg for error reason.\n")


@command("settings")
def _settings(sh, argv, stdin):
    args = [a for a in argv[1:] if not a.startswith("--user")]
    if len(args) >= 3 and args[0] == "get":
        return ok(sh.phone.settings.get((args[1], args[2]), "null") + "\n")
    if len(args) >= 4 and args[0] == "put":
        sh.phone.settings[(args[1], args[2])] = args[3]
        return ok()
    if len(args) >= 3 and args[0] == "delete":
        sh.phone.settings.pop((args[1], args[2]), None)
        return ok("Deleted 1 rows\n")
    return fail("Invalid command: settings " + " ".join(args) + "\n", 255)


@command("svc")
def _svc(sh, argv, stdin):
    if len(argv) >= 4 and argv[1] == "power" and argv[2] == "stayon":
        values = {"true": "7", "false": "0", "usb": "2", "ac": "1", "wireless": "4"}
        if argv[3] not in values:
            return fail(f"Unknown stayon value {argv[3]}\n", 1)
        sh.phone.settings[("global", "stay_on_while_plugged_in")] = values[argv[3]]
        return ok()
    return ok()


@command("input")
def _input(sh, argv, stdin):
    if len(argv) >= 3 and argv[1] == "keyevent":
        for key in argv[2:]:
            if key in ("KEYCODE_WAKEUP", "224", "KEYCODE_MENU", "82"):
                sh.phone.screen_on = True
            elif key in ("KEYCODE_SLEEP", "223"):
                sh.phone.screen_on = False
            elif key in ("KEYCODE_POWER", "26"):
                sh.phone.screen_on = not sh.phone.screen_on
    return ok()


@command("wm")
def _wm(sh, argv, stdin):
    if len(argv) >= 2 and argv[1] == "size":
        return ok(f"Physical size: {sh.phone.profile.screen_size}\n")
    if len(argv) >= 2 and argv[1] == "density":
        return ok(f"Physical density: {sh.phone.profile.screen_density}\n")
    return ok()


@command("pidof")
def _pidof(sh, argv, stdin):
    pids = [str(sh.phone.running[name]) for name in argv[1:] if name in sh.phone.running]
    return (0, (" ".join(pids) + "\n").encode(), b"") if pids else (1, b"", b"")


@command("dumpsys")
def _dumpsys(sh, argv, stdin):
    phone = sh.phone
    service = argv[1] if len(argv) > 1 else ""
    if service == "battery":
        sub = argv[2] if len(argv) > 2 else ""
        if sub == "unplug":
            phone.battery_reporting_unplugged = True
            return ok()
        if sub == "reset":
            phone.battery_reporting_unplugged = False
            return ok()
        return ok(dumps.dumpsys_battery(phone))
    if service == "thermalservice":
        return ok(dumps.thermalservice(phone))
    if service == "power":
        return ok(dumps.dumpsys_power(phone))
    if service == "android.hardware.power.stats.IPowerStats/default" and phone.profile.has_power_stats:
        return ok(dumps.ipowerstats(phone))
    if service == "activity" and len(argv) > 2 and argv[2] in ("activities", "a"):
        return ok(apps.dump_activities(phone))
    if service == "window":
        return ok(apps.dump_window(phone))
    if service == "":
        return ok("Currently running services:\n  activity\n  battery\n  power\n  thermalservice\n")
    return 0, b"", f"Can't find service: {service}\n".encode()


@command("cmd")
def _cmd(sh, argv, stdin):
    if len(argv) >= 2 and argv[1] == "package":
        return _pm(sh, ["pm"] + argv[2:], stdin)
    if len(argv) >= 2 and argv[1] == "activity":
        return _am(sh, ["am"] + argv[2:], stdin)
    if len(argv) >= 3 and argv[1] == "battery":
        if argv[2] == "unplug":
            sh.phone.battery_reporting_unplugged = True
        elif argv[2] == "reset":
            sh.phone.battery_reporting_unplugged = False
        return ok()
    if len(argv) >= 2 and argv[1] in ("settings",):
        return _settings(sh, ["settings"] + argv[2:], stdin)
    return fail(f"cmd: Can't find service: {argv[1] if len(argv) > 1 else ''}\n", 20)


@command("am")
def _am(sh, argv, stdin):
    return apps.am(sh, argv[1:])


@command("pm")
def _pm(sh, argv, stdin):
    return apps.pm(sh, argv[1:])


@command("run-as")
def _run_as(sh, argv, stdin):
    from device_runner.sim.shell import Shell

    if len(argv) < 2:
        return fail("run-as: usage: run-as <package-name> [--user <uid>] <command> [<args>]\n")
    pkg_name = argv[1]
    args = argv[2:]
    if args[:1] == ["--user"]:
        args = args[2:]
    pkg = sh.phone.packages.get(pkg_name)
    if pkg is None:
        return fail(f"run-as: unknown package: {pkg_name}\n")
    if not pkg.debuggable:
        return fail(f"run-as: package not debuggable: {pkg_name}\n")
    sub = Shell(sh.phone, user=pkg_name, cwd=f"/data/data/{pkg_name}", name="/system/bin/sh")
    if not args:
        return ok()
    line = " ".join(_quote(a) for a in args)
    out = sub.run(line)
    return out.code, out.stdout(), out.stderr()


def _quote(arg: str) -> str:
    if arg and all(ch.isalnum() or ch in "@%+=:,./-_" for ch in arg):
        return arg
    return "'" + arg.replace("'", "'\\''") + "'"


@command("base64")
def _base64(sh, argv, stdin):
    flags, paths = split_flags(argv[1:], "dw")
    data, err, code = _input_text(sh, [p for p in paths if not p.isdigit()], stdin)
    if "d" in flags:
        return code, base64.b64decode(data), err.encode()
    return code, base64.b64encode(data) + b"\n", err.encode()
