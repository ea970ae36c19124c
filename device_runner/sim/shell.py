"""A small ``/system/bin/sh`` for the simulated phone, and the ``shell:`` / ``exec:`` services.

The command line is parsed like mksh does for the simple cases clients send: ``;``, ``&&``, ``||``,
pipes, single and double quotes, backslash escapes, ``$?`` and a few variables, globs, and the
redirections ``>``, ``>>``, ``<``, ``2>``, ``2>&1``, ``>&2``. Each command answers with the output
format and exit code of a Pixel (see shared/device-outputs); commands it does not know answer
``/system/bin/sh: <cmd>: inaccessible or not found`` with exit code 127, as the phone does.

With the ``shell_v2`` service (``shell,v2,raw:<cmd>``) stdout, stderr and the exit code travel
separately; the legacy ``shell:<cmd>`` and ``exec:<cmd>`` send stdout and stderr together.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import shlex
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from device_runner.sim import commands_android
from device_runner.sim.transport import Stream

if TYPE_CHECKING:
    from device_runner.sim.phone import SimulatedPhone

OPERATORS = ("&&", "||", ";", "|", "&", "\n")
REDIRECTS = ("2>&1", "1>&2", ">&2", "2>>", "2>", "1>>", "1>", ">>", "&>", ">", "<")


@dataclass
class Word:
    """A word with its pieces: (text, quoted) literals and (name, "var") variable references."""

    parts: list[tuple[str, bool | str]] = field(default_factory=list)

    def add(self, text: str, quoted: bool) -> None:
        self.parts.append((text, quoted))


@dataclass
class Command:
    words: list[Word] = field(default_factory=list)
    redirects: list[tuple[str, Word | None]] = field(default_factory=list)


class ShellSyntaxError(Exception):
    pass


def tokenize(line: str) -> list[Word | str]:
    """Words and operator strings; variables stay unexpanded until the command runs."""
    out: list[Word | str] = []
    i, n = 0, len(line)
    word: Word | None = None

    def flush() -> None:
        nonlocal word
        if word is not None:
            out.append(word)
            word = None

    while i < n:
        c = line[i]
        if c in " \t\r":
            flush()
            i += 1
            continue
        if c == "#" and word is None:
            while i < n and line[i] != "\n":
                i += 1
            continue
        matched = None
        if word is None or (c in "&|;<>\n"):
            for op in REDIRECTS + OPERATORS:
                if line.startswith(op, i):
                    # "2>" only counts as a redirect at the start of a word
                    if op[0] in "12" and word is not None:
                        continue
                    matched = op
                    break
        if matched:
            flush()
            out.append(matched)
            i += len(matched)
            continue
        if word is None:
            word = Word()
        if c == "'":
            end = line.find("'", i + 1)
            if end < 0:
                raise ShellSyntaxError("unterminated '")
            word.add(line[i + 1:end], True)
            i = end + 1
        elif c == '"':
            j = i + 1
            buf = ""
            while j < n and line[j] != '"':
                if line[j] == "\\" and j + 1 < n and line[j + 1] in '"\\$`':
                    buf += line[j + 1]
                    j += 2
                elif line[j] == "$":
                    if buf:
                        word.add(buf, True)
                        buf = ""
                    j = _read_var(line, j, word)
                else:
                    buf += line[j]
                    j += 1
            if j >= n:
                raise ShellSyntaxError('unterminated "')
            word.add(buf, True)
            i = j + 1
        elif c == "\\" and i + 1 < n:
            word.add(line[i + 1], True)
            i += 2
        elif c == "$":
            i = _read_var(line, i, word)
        else:
            j = i
            while j < n and line[j] not in " \t\r\n'\"\\$&|;<>":
                j += 1
            word.add(line[i:j], False)
            i = j
    flush()
    return out


def _read_var(line: str, i: int, word: Word) -> int:
    """Read ``$?``, ``$$``, ``$NAME`` or ``${NAME}`` at ``line[i] == '$'``; returns the next index."""
    j = i + 1
    if j < len(line) and line[j] in "?$#0":
        word.parts.append((line[j], "var"))
        return j + 1
    if j < len(line) and line[j] == "{":
        end = line.find("}", j)
        if end > 0:
            word.parts.append((line[j + 1:end], "var"))
            return end + 1
    k = j
    while k < len(line) and (line[k].isalnum() or line[k] == "_"):
        k += 1
    if k == j:
        word.add("$", True)
        return j
    word.parts.append((line[j:k], "var"))
    return k


def parse(line: str) -> list[tuple[str, list[Command]]]:
    """[(connector, pipeline)]: connector is ';', '&&' or '||' (how it joins the previous one)."""
    tokens = tokenize(line)
    result: list[tuple[str, list[Command]]] = []
    pipeline: list[Command] = []
    cmd = Command()
    connector = ";"
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if isinstance(t, Word):
            cmd.words.append(t)
        elif t in REDIRECTS:
            if t in ("2>&1", "1>&2", ">&2"):
                cmd.redirects.append((t, None))
            else:
                if i + 1 >= len(tokens) or not isinstance(tokens[i + 1], Word):
                    raise ShellSyntaxError(f"syntax error: '{t}' unexpected")
                cmd.redirects.append((t, tokens[i + 1]))
                i += 1
        elif t == "|":
            if not cmd.words:
                raise ShellSyntaxError("syntax error: '|' unexpected")
            pipeline.append(cmd)
            cmd = Command()
        else:  # ; && || & newline
            if cmd.words or cmd.redirects:
                pipeline.append(cmd)
            elif t in ("&&", "||") or pipeline:
                raise ShellSyntaxError(f"syntax error: '{t}' unexpected")
            if pipeline:
                result.append((connector, pipeline))
            pipeline, cmd = [], Command()
            connector = t if t in ("&&", "||") else ";"
        i += 1
    if cmd.words or cmd.redirects:
        pipeline.append(cmd)
    elif pipeline:
        raise ShellSyntaxError("syntax error: unexpected end of line after '|'")
    if pipeline:
        result.append((connector, pipeline))
    elif connector in ("&&", "||"):
        raise ShellSyntaxError(f"syntax error: unexpected end of line after '{connector}'")
    return result


@dataclass
class Output:
    """Ordered stdout/stderr pieces (fd 1 or 2) and the exit code of the last command."""

    events: list[tuple[int, bytes]] = field(default_factory=list)
    code: int = 0

    def stdout(self) -> bytes:
        return b"".join(d for fd, d in self.events if fd == 1)

    def stderr(self) -> bytes:
        return b"".join(d for fd, d in self.events if fd == 2)

    def merged(self) -> bytes:
        return b"".join(d for _, d in self.events)


class Shell:
    """One shell session: the phone, the user (``shell`` or a run-as package), cwd and ``$?``."""

    def __init__(self, phone: SimulatedPhone, *, user: str = "shell", cwd: str = "/", name: str = "/system/bin/sh"):
        self.phone = phone
        self.user = user
        self.cwd = cwd
        self.name = name
        self.status = 0
        self.exit_requested = False  # set by `exit`: the rest of the script is skipped
        self.env = {"HOME": "/", "PATH": "/product/bin:/apex/com.android.runtime/bin:/system/bin:/system/xbin",
                    "EXTERNAL_STORAGE": "/sdcard", "ANDROID_DATA": "/data", "TMPDIR": "/data/local/tmp",
                    "USER": user, "HOSTNAME": phone.profile.hostname, "SHELL": "/bin/sh"}

    # --- running -----------------------------------------------------------------------------
    def run(self, line: str) -> Output:
        out = Output()
        try:
            program = parse(line)
        except ShellSyntaxError as err:
            out.events.append((2, f"{self.name}: {err}\n".encode()))
            out.code = self.status = 2
            return out
        for connector, pipeline in program:
            if connector == "&&" and self.status != 0:
                continue
            if connector == "||" and self.status == 0:
                continue
            self.status = self._run_pipeline(pipeline, out)
            if self.exit_requested:
                break
        out.code = self.status
        return out

    def _run_pipeline(self, pipeline: list[Command], out: Output) -> int:
        stdin = b""
        code = 0
        for index, cmd in enumerate(pipeline):
            last = index == len(pipeline) - 1
            code, stdout, stderr = self._run_command(cmd, stdin)
            targets: dict[int, object] = {1: "out" if last else "pipe", 2: "err"}
            for op, target in cmd.redirects:
                if op == "2>&1":
                    targets[2] = targets[1]
                elif op in ("1>&2", ">&2"):
                    targets[1] = targets[2]
                elif op == "<" or target is None:
                    continue
                else:
                    path = self.expand(target)[0]
                    fd = 2 if op.startswith("2") else 1
                    dest: object = "null" if path == "/dev/null" else self._open_redirect(path, op.endswith(">>"), out)
                    targets[fd] = dest
                    if op == "&>":
                        targets[2] = dest
            pipe = b""
            for fd, data in ((1, stdout), (2, stderr)):
                t = targets[fd]
                if not data or t == "null":
                    continue
                if t == "out":
                    out.events.append((1, data))
                elif t == "err":
                    out.events.append((2, data))
                elif t == "pipe":
                    pipe += data
                elif t is not None:
                    with open(t, "ab") as f:  # type: ignore[arg-type]
                        f.write(data)
            stdin = pipe
        return code

    def _open_redirect(self, path: str, append: bool, out: Output):
        """Create (or truncate) a redirect target; returns its host path, or None when refused."""
        if self.denied(path):
            out.events.append((2, f"{self.name}: can't create {path}: Permission denied\n".encode()))
            return None
        host = self.phone.fs.host_path(path, self.cwd)
        try:
            with open(host, "ab" if append else "wb"):
                pass
        except OSError as err:
            out.events.append((2, f"{self.name}: can't create {path}: {err.strerror}\n".encode()))
            return None
        return host

    def expand(self, word: Word) -> list[str]:
        text = ""
        globbable = False
        for piece, quoted in word.parts:
            if quoted == "var":
                text += self._var(piece)
            else:
                text += piece
                if quoted is False and any(ch in piece for ch in "*?["):
                    globbable = True
        if globbable:
            matches = self.glob(text)
            if matches:
                return matches
        return [text]

    def _var(self, name: str) -> str:
        if name == "?":
            return str(self.status)
        if name == "$":
            return "4242"
        if name == "#":
            return "0"
        if name == "0":
            return self.name
        return self.env.get(name, "")

    def glob(self, pattern: str) -> list[str]:
        fs = self.phone.fs
        absolute = pattern.startswith("/")
        parts = [p for p in pattern.split("/") if p]
        paths = ["/" if absolute else ""]
        for part in parts:
            nxt = []
            for base in paths:
                full_base = base if absolute else posixpath.join(self.cwd, base) if base else self.cwd
                if any(ch in part for ch in "*?["):
                    host = fs.host_path(full_base or "/")
                    found = set(os.listdir(host)) if host.is_dir() else set()
                    found |= set(fs.virtual_children(full_base or "/"))
                    for name in sorted(found):
                        if fnmatch.fnmatchcase(name, part) and not (name.startswith(".") and not part.startswith(".")):
                            nxt.append(posixpath.join(base, name) if base else name)
                else:
                    nxt.append(posixpath.join(base, part) if base else part)
            paths = nxt
        return [p for p in paths if self.phone.fs.stat(p, self.cwd) is not None]

    def denied(self, path: str) -> bool:
        allowed = None if self.user == "shell" else self.user
        return self.phone.fs.is_private(path, self.cwd, allowed_pkg=allowed)

    def _run_command(self, cmd: Command, stdin: bytes) -> tuple[int, bytes, bytes]:
        for op, target in cmd.redirects:
            if op == "<" and target is not None:
                path = self.expand(target)[0]
                data = self.read_file(path)
                if data is None:
                    return 1, b"", f"{self.name}: can't open {path}: No such file or directory\n".encode()
                stdin = data
        argv: list[str] = []
        for w in cmd.words:
            argv.extend(self.expand(w))
        if not argv:
            return 0, b"", b""
        name = argv[0]
        if "=" in name and not name.startswith("=") and len(argv) == 1:
            key, _, value = name.partition("=")
            self.env[key] = value
            return 0, b"", b""
        base = posixpath.basename(name) if name.startswith("/") else name
        handler = commands_android.COMMANDS.get(base)
        if handler is None:
            return 127, b"", f"{self.name}: {name}: inaccessible or not found\n".encode()
        try:
            return handler(self, argv, stdin)
        except Exception as err:  # a bug in a command: answer like a crashed tool, never kill the phone
            import logging

            logging.getLogger(__name__).exception("simulated command %r failed", argv)
            return 1, b"", f"{base}: internal error: {err}\n".encode()

    # --- helpers for commands ------------------------------------------------------------------
    def read_file(self, path: str) -> bytes | None:
        fs = self.phone.fs
        virtual = fs.read_virtual(path, self.cwd)
        if virtual is not None:
            return virtual
        host = fs.host_path(path, self.cwd)
        try:
            return host.read_bytes()
        except OSError:
            return None

    def host(self, path: str):
        return self.phone.fs.host_path(path, self.cwd)

    def stat(self, path: str) -> os.stat_result | None:
        return self.phone.fs.stat(path, self.cwd)


# --- the services -------------------------------------------------------------------------------

def _v2_packet(kind: int, data: bytes) -> bytes:
    return struct.pack("<BI", kind, len(data)) + data


def shell_service(phone: SimulatedPhone, stream: Stream, service: str) -> None:
    head, _, command = service.partition(":")
    options = head.split(",")[1:]
    v2 = head.startswith("shell") and "v2" in options
    pty = "pty" in options
    shell = Shell(phone)
    if not command.strip():
        _interactive(shell, stream, v2, pty)
        return
    size = _streamed_install_size(command)
    out = shell.run(command) if size is None else _streamed_install(shell, stream, size)
    if v2:
        payload = b"".join(_v2_packet(fd, data.replace(b"\n", b"\r\n") if pty else data) for fd, data in out.events)
        payload += _v2_packet(3, bytes([out.code & 0xFF]))
        stream.write(payload)
    else:
        data = out.merged()
        if pty:
            data = data.replace(b"\n", b"\r\n")
        if data:
            stream.write(data)


def _streamed_install_size(command: str) -> int | None:
    """APK size when ``command`` is a streamed install (``cmd package install -S N``, what adb install sends)."""
    try:
        argv = [w for w in shlex.split(command)]
    except ValueError:
        return None
    if argv[:3] == ["cmd", "package", "install"]:
        rest = argv[3:]
    elif argv[:2] == ["pm", "install"]:
        rest = argv[2:]
    else:
        return None
    if "-S" in rest and rest.index("-S") + 1 < len(rest) and rest[rest.index("-S") + 1].isdigit():
        return int(rest[rest.index("-S") + 1])
    return None


def _streamed_install(shell: Shell, stream: Stream, size: int) -> Output:
    """Read the APK from the stream (stdin), then install it like ``pm install`` of a file."""
    from device_runner.sim.apps import install_file
    from device_runner.sim.transport import StreamReader

    reader = StreamReader(stream)
    tmp = shell.phone.fs.host_path(f"/data/local/tmp/.sim-install-{id(stream):x}.apk")
    try:
        with open(tmp, "wb") as f:
            remaining = size
            while remaining:
                chunk = reader.read_some(min(remaining, 1 << 20))
                f.write(chunk)
                remaining -= len(chunk)
        code, stdout, stderr = install_file(shell, tmp, "-")
    finally:
        tmp.unlink(missing_ok=True)
    return Output(events=[(fd, d) for fd, d in ((1, stdout), (2, stderr)) if d], code=code)


def _interactive(shell: Shell, stream: Stream, v2: bool, pty: bool) -> None:
    """``adb shell`` without a command: a prompt and echo on a pty, a plain script reader on raw."""
    prompt = f"{shell.phone.profile.hostname}:/ $ ".encode()

    def send(fd: int, data: bytes) -> None:
        if pty:
            data = data.replace(b"\n", b"\r\n")
        stream.write(_v2_packet(fd, data) if v2 else data)

    def finish() -> None:
        if v2:
            stream.write(_v2_packet(3, bytes([shell.status & 0xFF])))

    if pty:
        send(1, prompt)
    pending = b""
    buffer = b""
    stdin_closed = False
    while not stdin_closed:
        chunk = stream.read()
        if chunk is None:
            return
        if v2:
            buffer += chunk
            data = b""
            while len(buffer) >= 5:
                kind, length = struct.unpack("<BI", buffer[:5])
                if len(buffer) < 5 + length:
                    break
                if kind == 0:
                    data += buffer[5:5 + length]
                elif kind == 4:
                    stdin_closed = True
                buffer = buffer[5 + length:]
        else:
            data = chunk
        if pty and data:
            send(1, data)  # a terminal echoes what is typed
        pending += data.replace(b"\r", b"\n")
        if stdin_closed and pending and not pending.endswith(b"\n"):
            pending += b"\n"
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            text = line.decode("utf-8", "replace").strip()
            if text:
                out = shell.run(text)
                for fd, piece in out.events:
                    send(fd, piece)
                if shell.exit_requested:
                    finish()
                    return
            if pty:
                send(1, prompt)
    finish()
