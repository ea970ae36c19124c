"""Wall time of a night on a farm of N simulated phones vs the same jobs on one phone.

    .venv/bin/python -m benchmarks.bench_nightly [--phones 3] [--runs 30] [--warmup 5]
        [--min-duration-s 1.0] [--cooldown-s 2.0] [--idle-baseline-s 2.0] [--out DIR]

The default matrix (default model; ONNX and TFLite; dense, palette, palette-int8; 1 thread) is
exported once (reused from ``--out`` when it is already there), then the N x 6 jobs of the night
run twice through the nightly scheduler, each time with fresh simulated phones, a fresh
collector and lease table: once on N phones (one worker each), once all on one phone. Both
figures and their ratio are printed from this one run. The phones are simulated: they run the
models on this host's CPU, so phones running at once compete for its cores (printed with the
load average); the waits of a night (cooldown, idle baseline, pushes) overlap fully.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path


def run_jobs(n_phones: int, jobs, bundles, settings, root: Path) -> tuple[float, int]:
    from device_runner.sim import SimulatedPhone
    from pipeline.deploy import ResultStorage
    from pipeline.nightly.farm import PhoneSpec
    from pipeline.nightly.leases import LeaseManager
    from pipeline.nightly.scheduler import PhoneState, Scheduler
    from results.collector import start_collector_in_thread

    root.mkdir(parents=True, exist_ok=True)
    db = f"sqlite:///{root / 'bench.db'}"
    stored: list[dict] = []
    with ExitStack() as stack:
        collector = stack.enter_context(start_collector_in_thread(db))
        storage = ResultStorage(collector.url, None, f"sqlite:///{root / 'local.db'}", print)
        stack.callback(storage.close)
        leases = stack.enter_context(LeaseManager(db, ttl_s=60))
        phones = []
        for i in range(n_phones):
            phone = stack.enter_context(SimulatedPhone(root=root / f"phone-{i}", profile="pixel-8", port=0,
                                                       serial=f"BENCH{i:02d}"))
            phones.append(PhoneState(spec=PhoneSpec(f"sim-{i + 1}", phone.serial, profile="sim"),
                                     address=phone.serial))

        def store(doc: dict) -> None:
            storage.store(doc)
            stored.append(doc)

        sched = Scheduler(night=f"bench-{n_phones}", phones=phones, jobs=jobs, bundles=bundles, settings=settings,
                          leases=leases, store=store, runs_dir=root / "runs", log=lambda text: None)
        t0 = time.perf_counter()
        sched.run()
        wall = time.perf_counter() - t0
    bad = [d for d in stored if d.get("status") != "ok"]
    if len(stored) != len(jobs) or bad:
        raise SystemExit(f"{n_phones} phone(s): {len(stored)} results for {len(jobs)} jobs, {len(bad)} not ok")
    return wall, len(stored)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--phones", type=int, default=3)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--min-duration-s", type=float, default=1.0)
    p.add_argument("--cooldown-s", type=float, default=2.0)
    p.add_argument("--idle-baseline-s", type=float, default=2.0)
    p.add_argument("--out", default=None, help="work folder (bundles are reused from it); default: a temp folder")
    a = p.parse_args(argv)

    from pipeline.nightly.farm import NightSettings, sim_farm
    from pipeline.nightly.run import build_night_bundles
    from pipeline.steps import Steps

    out = Path(a.out or tempfile.mkdtemp(prefix="bench-nightly-"))
    farm = sim_farm(a.phones)
    settings = NightSettings(runs=a.runs, warmup=a.warmup, min_duration_s=a.min_duration_s, cooldown_s=a.cooldown_s,
                             idle_baseline_s=a.idle_baseline_s, eval_limit=200)
    jobs = farm.jobs()
    t0 = time.perf_counter()
    bundles = build_night_bundles(farm, jobs, out, Steps(total=3, interactive=False))
    export_s = time.perf_counter() - t0

    farm_s, n = run_jobs(a.phones, jobs, bundles, settings, out / "farm")
    one_s, _ = run_jobs(1, jobs, bundles, settings, out / "one")
    print(f"\nnightly bench: {n} jobs = {a.phones} simulated phones (Pixel 8 profile, host CPU) x default matrix "
          f"(default model; onnx, tflite; dense, palette, palette-int8; 1 thread)")
    print(f"settings: runs {a.runs}, warmup {a.warmup}, min_duration_s {a.min_duration_s}, cooldown_s {a.cooldown_s}, "
          f"idle_baseline_s {a.idle_baseline_s}; host: {os.cpu_count()} CPUs, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}; python {sys.version.split()[0]}")
    print(f"export (once per night, {len(bundles)} bundles): {export_s:.1f} s")
    print(f"{a.phones} phones: {farm_s:.1f} s")
    print(f"1 phone : {one_s:.1f} s")
    print(f"ratio (1 phone / {a.phones} phones): {one_s / farm_s:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
