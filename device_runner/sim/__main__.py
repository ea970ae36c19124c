"""``python -m device_runner.sim --port 5555 --profile pixel-8 --root DIR``: serve a simulated phone.

Prints one line with the address (``adb connect`` it), then serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from pipeline.cli_support import run_cli


def build_parser() -> argparse.ArgumentParser:
    from device_runner.sim.profiles import PROFILES

    parser = argparse.ArgumentParser(prog="python -m device_runner.sim",
                                     description="Serve a simulated Android phone over the ADB protocol (TCP).")
    parser.add_argument("--port", type=int, default=5555, help="TCP port (0 picks a free one; default 5555)")
    parser.add_argument("--profile", default="pixel-8", choices=sorted(PROFILES), help="phone to play")
    parser.add_argument("--root", type=Path, required=True, help="folder that holds the phone's files")
    parser.add_argument("--authorized-keys", type=Path, default=None,
                        help="adb_keys-style file; other keys are refused (default: accept any key)")
    parser.add_argument("--serial-host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--verbose", action="store_true", help="log protocol events")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    from device_runner.sim.phone import SimulatedPhone

    # The phone is I/O threads: a connection's reader must get the interpreter back quickly when a
    # packet arrives, or every OKAY waits out another thread's 5 ms time slice.
    sys.setswitchinterval(0.0005)
    phone = SimulatedPhone(args.root, profile=args.profile, port=args.port, host=args.serial_host,
                           authorized_keys=args.authorized_keys)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with phone:
        print(f"simulated {phone.profile.model} ({args.profile}) listening on {phone.serial}; "
              f"files in {phone.root}; Ctrl-C stops", flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
