"""``python -m pipeline.nightly --farm farm.yaml|sim:N [--collector URL] [--night NAME] [--out DIR]``.

Exit status: 0 when the night ran and nothing regressed, 1 when a regression was found (the table
is printed), 3 when some jobs did not end with a final result (no regression), 2 for bad input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pipeline.cli_support import run_cli
from pipeline.nightly.regressions import RegressionRule


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.nightly",
        description="Run a night of benchmarks on a farm of phones, store every result in the collector and "
        "report what got slower, hungrier, less accurate or bigger than on previous nights.",
    )
    p.add_argument("--farm", required=True, help="farm.yaml (phones, matrix, settings) or sim:N (N simulated phones, "
                   "default matrix)")
    p.add_argument("--collector", default=None, help="collector URL; default: a local one storing into OUT/nightly.db")
    p.add_argument("--collector-token", default=None)
    p.add_argument("--night", default=None, help="name of the night (run set); default: today's UTC date")
    p.add_argument("--out", default="out/nightly", help="bundles, per-night results.json, regressions.json, report")
    p.add_argument("--lease-db", default=None, help="database for phone leases (postgresql://... when hosts share "
                   "phones); default: the local collector's database")
    p.add_argument("--lease-ttl-s", type=float, default=60.0, help="a dead holder's lease expires after this")
    p.add_argument("--lease-wait-s", type=float, default=3 * 3600.0,
                   help="how long to wait for a phone another process holds before moving its jobs")
    p.add_argument("--bundles", default=None, help="use bundles exported beforehand (a bundles/ folder) "
                   "instead of exporting; host accuracy is then not measured")
    p.add_argument("--history", type=int, default=7, help="previous nights to compare against")
    p.add_argument("--k-sigma", type=float, default=RegressionRule.k_sigma)
    p.add_argument("--min-change-latency", type=float, default=RegressionRule.min_change_latency,
                   help="smallest relative latency increase reported (default 0.05)")
    p.add_argument("--min-change-energy", type=float, default=RegressionRule.min_change_energy,
                   help="smallest relative energy increase reported (default 0.10)")
    p.add_argument("--accuracy-drop", type=float, default=RegressionRule.accuracy_drop)
    p.add_argument("--max-attempts", type=int, default=3, help="tries per job (across phones)")
    p.add_argument("--phone-failures", type=int, default=2, help="failures in a row after which a phone is dropped")
    for name, typ in (("runs", int), ("warmup", int), ("min-duration-s", float), ("cooldown-s", float),
                      ("idle-baseline-s", float), ("eval-limit", int)):
        p.add_argument(f"--{name}", type=typ, default=None, help="overrides the farm file's settings")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from pipeline.nightly.regressions import regressions_table
    from pipeline.nightly.run import NightOptions, run_nightly

    a = build_parser().parse_args(list(argv) if argv is not None else None)
    overrides = {k: v for k, v in (("runs", a.runs), ("warmup", a.warmup), ("min_duration_s", a.min_duration_s),
                                   ("cooldown_s", a.cooldown_s), ("idle_baseline_s", a.idle_baseline_s),
                                   ("eval_limit", a.eval_limit)) if v is not None}
    rule = RegressionRule(k_sigma=a.k_sigma, min_change_latency=a.min_change_latency,
                          min_change_energy=a.min_change_energy, accuracy_drop=a.accuracy_drop)
    opts = NightOptions(farm=a.farm, collector=a.collector, collector_token=a.collector_token, night=a.night,
                        out=a.out, lease_db=a.lease_db, lease_ttl_s=a.lease_ttl_s, lease_wait_s=a.lease_wait_s,
                        history=a.history, rule=rule, max_attempts=a.max_attempts, phone_failures=a.phone_failures,
                        overrides=overrides)
    from pipeline.nightly.run import load_bundles_dir

    outcome = run_nightly(opts, bundles=load_bundles_dir(a.bundles) if a.bundles else None)
    ok = sum(1 for d in outcome.ran if d.get("status") == "ok")
    print(f"night {outcome.night}: {len(outcome.ran)} job(s) run ({ok} ok), {outcome.jobs_skipped} already stored, "
          f"{outcome.jobs_total} in the matrix; {outcome.wall_s:.1f} s")
    print(f"compared with {len(outcome.previous_nights)} previous night(s)"
          + (f": {', '.join(outcome.previous_nights)}" if outcome.previous_nights else ""))
    for err in outcome.errors:
        print(f"warning: {err}", file=sys.stderr)
    if outcome.regressions:
        print(f"\n{len(outcome.regressions)} regression(s):")
        print(regressions_table(outcome.regressions))
    else:
        print("no regressions")
    print(f"results: {outcome.out / 'results.json'}\nreport:  {outcome.out / 'report.html'}")
    return outcome.exit_code


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
