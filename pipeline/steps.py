"""Step reporting for long commands: a rich progress bar on a terminal, one line per step in CI.

    steps = Steps(total=10)
    with steps.step("export bundles", total=6) as advance:
        ...; advance(1)

On a terminal each step gets a bar; elsewhere (CI, pipes) each step prints one line when it
starts and one when it ends, with its wall time, and nothing in between.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pipeline.cli_support import is_interactive


class Steps:
    def __init__(self, total: int, *, interactive: bool | None = None, stream=None) -> None:
        self.total = total
        self.index = 0
        self.interactive = is_interactive() if interactive is None else interactive
        self.stream = stream or sys.stderr
        self.timings_s: dict[str, float] = {}

    def log(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    @contextmanager
    def step(self, name: str, total: int | None = None) -> Iterator[Callable[[float], None]]:
        self.index += 1
        label = f"[{self.index}/{self.total}] {name}"
        t0 = time.perf_counter()
        if self.interactive:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f}"),
                          TimeElapsedColumn(), transient=False) as bar:
                task = bar.add_task(label, total=total or 1)
                yield lambda n=1: bar.advance(task, n)
                bar.update(task, completed=total or 1)
        else:
            self.log(f"{label} ...")
            yield lambda n=1: None
        elapsed = time.perf_counter() - t0
        self.timings_s[name] = elapsed
        if not self.interactive:
            self.log(f"{label} done in {elapsed:.1f} s")
