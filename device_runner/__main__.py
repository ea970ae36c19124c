"""``python -m device_runner --device DEVICE (info | push SRC DST | pull SRC DST | shell CMD...)``.

``--device`` takes a name from devices.yaml, a profile name, ``host:port``, ``usb`` or a USB serial
(see device_runner.profiles). ``shell`` exits with the remote command's exit code. Progress bars
are drawn for push/pull only on an interactive terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from device_runner.errors import DeviceNotFoundError
from device_runner.profiles import PROFILES
from pipeline.cli_support import is_interactive, run_cli


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m device_runner",
        description="Talk to an Android phone over adb (TCP or USB) without the adb binary.",
    )
    p.add_argument("--device", default=os.environ.get("VPB_DEVICE"),
                   help="devices.yaml name | profile (pixel, generic) | HOST:PORT | usb | USB serial "
                   "(default: $VPB_DEVICE)")
    p.add_argument("--devices", default=None, help="devices.yaml naming phones (default: ./devices.yaml if present)")
    p.add_argument("--timeout-s", dest="timeout_s", type=float, default=60.0, help="seconds per command / longest pause in a transfer")
    p.add_argument("--retries", type=_non_negative_int, default=2,
                   help="reconnect attempts after a dropped connection")
    p.add_argument("--profile", default=None, choices=sorted(PROFILES),
                   help="override the profile detected from the phone")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print the device (properties, battery, thermal, rails) as JSON")
    push = sub.add_parser("push", help="push a file (verified with sha256 on the phone)")
    push.add_argument("src")
    push.add_argument("dst")
    pull = sub.add_parser("pull", help="pull a file")
    pull.add_argument("src")
    pull.add_argument("dst")
    shell = sub.add_parser("shell", help="run a shell command; exits with its exit code")
    shell.add_argument("cmd", nargs=argparse.REMAINDER)
    return p


class _Bar:
    """A tqdm bar on stderr when interactive; a no-op otherwise."""

    def __init__(self, label: str) -> None:
        self._bar = None
        self._label = label

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=self._label,
                             file=sys.stderr, leave=False)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.device:
        raise DeviceNotFoundError(
            "no device given",
            next_step="Pass --device HOST:PORT (after `adb tcpip 5555`), --device usb, a USB serial, or a name "
            "from devices.yaml (or set VPB_DEVICE).",
        )
    from device_runner.device import Device
    from device_runner.profiles import resolve_device

    spec = resolve_device(args.device, devices_file=args.devices)
    if spec.address is None:
        raise DeviceNotFoundError(
            f"--device {args.device!r} is the simulated-phone profile, which has no address by itself",
            next_step="Start one with `python -m device_runner.sim --port 5555 --root DIR` and pass "
            "--device 127.0.0.1:5555 --profile sim.",
        )
    try:
        dev = Device.connect(spec.address, timeout_s=min(args.timeout_s, 30.0), retries=args.retries,
                             profile=args.profile or spec.profile)
    except DeviceNotFoundError as err:
        if not spec.tried:
            raise
        raise DeviceNotFoundError(
            f"--device {args.device!r} is not {'; not '.join(spec.tried)}; as a {spec.source}: {err.message}",
            next_step=err.next_step, device=args.device, tried=[*spec.tried, spec.source],
        ) from err
    try:
        if args.command == "info":
            print(json.dumps(dev.info(timeout_s=args.timeout_s), indent=2, sort_keys=False))
            return 0
        if args.command == "shell":
            cmd = " ".join(args.cmd).strip()
            if not cmd:
                from pipeline.errors import ConfigError

                raise ConfigError("shell needs a command", next_step="Example: shell getprop ro.product.model")
            result = dev.shell(cmd, timeout_s=args.timeout_s)
            sys.stdout.write(result.stdout)
            sys.stdout.flush()
            return result.exit_code
        bar = _Bar(os.path.basename(args.src)) if is_interactive() else None
        try:
            if args.command == "push":
                r = dev.push(args.src, args.dst, progress=bar, timeout_s=args.timeout_s)
                print(f"{args.src} -> {r.remote}: {r.size_bytes} bytes, sha256 {r.sha256} verified on the phone, "
                      f"{r.elapsed_s:.2f} s", file=sys.stderr)
            else:
                r2 = dev.pull(args.src, args.dst, progress=bar, timeout_s=args.timeout_s)
                print(f"{args.src} -> {r2.local}: {r2.size_bytes} bytes, {r2.elapsed_s:.2f} s", file=sys.stderr)
        finally:
            if bar is not None:
                bar.close()
        return 0
    finally:
        dev.close()


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
