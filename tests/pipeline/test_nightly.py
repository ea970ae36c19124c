"""Nightly runs on farms of simulated phones: drop-outs, regressions, re-runs, leases, PostgreSQL.

One module-scoped export (default model, ONNX + TFLite, dense) is shared by every test; jobs are
tiny (3 runs) except in the regression test, which needs medians steady enough to compare.
The phones are real TCP ADB peers on loopback; the collector a real HTTP server.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path

import pytest

from device_runner.sim import Faults, SimulatedPhone
from pipeline.nightly.farm import FarmConfig, Matrix, NightSettings, PhoneSpec
from pipeline.nightly.history import job_key_of
from pipeline.nightly.regressions import RegressionRule
from pipeline.nightly.run import NightOptions, build_night_bundles, run_nightly
from pipeline.steps import Steps
from results.store import ResultStore, RunFilter

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
FAST = dict(runs=3, warmup=1, min_duration_s=0.0, cooldown_s=0.0, idle_baseline_s=0.0, eval_limit=50)
MATRIX = Matrix(formats=("onnx", "tflite"), modes=("dense",))


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    out = tmp_path_factory.mktemp("nightly-shared")
    farm = FarmConfig(phones=(PhoneSpec("x", "127.0.0.1:5555"),), matrix=MATRIX, settings=NightSettings(**FAST))
    built = build_night_bundles(farm, farm.jobs(), out, Steps(total=3, interactive=False))
    return built, out / "models" / "default" / "bundles"


@contextmanager
def sim_phones(root: Path, names: list[str], faults: dict[str, Faults] | None = None):
    with ExitStack() as stack:
        yield {n: stack.enter_context(SimulatedPhone(root=root / f"phone-{n}", profile="pixel-8", port=0,
                                                     serial=f"SER-{n.upper()}", faults=(faults or {}).get(n)))
               for n in names}


def farm_of(phones: dict[str, SimulatedPhone], *, matrix: Matrix = MATRIX, **settings) -> FarmConfig:
    return FarmConfig(phones=tuple(PhoneSpec(n, p.serial, profile="sim") for n, p in phones.items()),
                      matrix=matrix, settings=NightSettings(**{**FAST, **settings}))


def farm_yaml(path: Path, phones: dict[str, SimulatedPhone], **settings) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({
        "phones": [{"name": n, "address": p.serial, "profile": "sim"} for n, p in phones.items()],
        "matrix": {"formats": list(MATRIX.formats), "modes": list(MATRIX.modes)},
        "settings": {**FAST, **settings},
    }))
    return path


def night(out: Path, name: str, **kw) -> NightOptions:
    return NightOptions(farm="(given)", night=name, out=str(out), interactive=False, lease_ttl_s=10, **kw)


def stored(db_url: str, run_set: str) -> list[dict]:
    store = ResultStore(db_url)
    try:
        return store.documents(RunFilter(run_set=run_set))
    finally:
        store.close()


def local_db(out: Path) -> str:
    return f"sqlite:///{out / 'nightly.db'}"


def test_a_phone_that_drops_out_hands_its_jobs_over(bundles, tmp_path: Path) -> None:
    built, _ = bundles
    drop = Faults(drop_after_bytes=100_000, drop_connections=None)  # every push dies half-way
    with sim_phones(tmp_path, ["a", "b", "c"], {"c": drop}) as phones:
        farm = farm_of(phones)
        out = tmp_path / "out"
        outcome = run_nightly(night(out, "drop"), farm=farm, bundles=built)
    docs = stored(local_db(out), "drop")
    keys = Counter(job_key_of(d["run_id"]) for d in docs)
    assert set(keys) == {j.key for j in farm.jobs()} and set(keys.values()) == {1}  # one result per job
    assert all(d["status"] == "ok" for d in docs), [(d["run_id"], d["status"], d["error"]) for d in docs]
    moved = [d for d in docs if d["host"]["nightly"]["home_phone"] == "c"]
    assert len(moved) == 2
    for d in moved:
        assert d["host"]["nightly"]["phone"] in ("a", "b") and d["device"]["serial"] != "SER-C"
    # the job that was running when c dropped keeps the story of its failed attempts
    assert any("on c:" in e for d in moved for e in d["host"]["nightly"]["earlier_attempts"])
    assert outcome.exit_code == 0 and not outcome.regressions
    assert (out / "nights" / "drop" / "report.html").is_file()
    assert len(json.loads((out / "nights" / "drop" / "results.json").read_text())) == 6


def test_a_slowed_phone_is_the_only_regression(bundles, tmp_path: Path) -> None:
    """Four nights; on the last one phone runs 3x slower. Only its configurations are reported.

    These simulated phones share the host's CPU with each other (and CI's other jobs), so
    night-to-night noise is far above a real phone's; the floor is raised to 50% here, the rule
    (median + MAD of previous nights + within-run standard error) is the shipped one.
    """
    from pipeline.nightly.__main__ import main

    built, bundle_dir = bundles
    steady = dict(runs=20, warmup=2, min_duration_s=0.2)
    out = tmp_path / "out"
    with sim_phones(tmp_path, ["a", "b", "c"]) as phones:
        farm = farm_of(phones, **steady)
        rule = RegressionRule(min_change_latency=0.5, min_change_energy=0.5)
        for name in ("base-1", "base-2", "base-3"):
            base = run_nightly(night(out, name, rule=rule), farm=farm, bundles=built)
            assert base.exit_code == 0, base.regressions
        phones["b"].faults = Faults(slow_factor=3.0)
        f = farm_yaml(tmp_path / "farm.yaml", phones, **steady)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            code = main(["--farm", str(f), "--night", "slow", "--out", str(out), "--bundles", str(bundle_dir),
                         "--min-change-latency", "0.5", "--min-change-energy", "0.5"])
    text = printed.getvalue()
    assert code == 1, text
    regs = json.loads((out / "nights" / "slow" / "regressions.json").read_text())
    trends = json.loads((out / "nights" / "slow" / "trends.json").read_text())
    assert {r["device"] for r in regs} == {"Pixel 8 (SER-B)"}, (regs, trends)
    assert "latency_median_ms" in {r["metric"] for r in regs}
    for r in regs:
        assert r["now"] > r["threshold"] > r["previous"]
    assert "regression" in text and "SER-B" in text and "threshold" in text
    assert [r["night"] for r in trends].count("slow") == 6 and {r["night"] for r in trends} == {
        "base-1", "base-2", "base-3", "slow"}


def test_rerunning_a_night_runs_only_what_is_missing(bundles, tmp_path: Path) -> None:
    built, _ = bundles
    out = tmp_path / "out"
    drop = Faults(drop_after_bytes=100_000, drop_connections=None)
    with sim_phones(tmp_path, ["a", "b", "c"], {"c": drop}) as phones:
        # first try: only the ONNX part ran (as if stopped half-way), and phone c failed its job
        first = run_nightly(night(out, "n1", max_attempts=1, phone_failures=1),
                            farm=farm_of(phones, matrix=Matrix(formats=("onnx",), modes=("dense",))), bundles=built)
        assert sorted(d["status"] for d in first.ran) == ["cancelled", "ok", "ok"]
        assert first.exit_code == 3
        phones["c"].faults = Faults()
        full = farm_of(phones)
        second = run_nightly(night(out, "n1"), farm=full, bundles=built)
        third = run_nightly(night(out, "n1"), farm=full, bundles=built)
    assert second.jobs_skipped == 2 and len(second.ran) == 4
    assert all(d["status"] == "ok" for d in second.ran)
    assert {job_key_of(d["run_id"]) for d in second.ran} >= {
        j.key for j in full.jobs() if j.phone == "c" and j.format == "onnx"}
    assert third.ran == [] and third.jobs_skipped == 6 and third.exit_code == 0
    docs = stored(local_db(out), "n1")
    assert len(docs) == 7  # 6 jobs + the cancelled first try, kept
    newest = {}
    for d in sorted(docs, key=lambda d: d["started_at"]):
        newest[job_key_of(d["run_id"])] = d["status"]
    assert set(newest.values()) == {"ok"} and len(newest) == 6


def _intervals(docs: list[dict]) -> dict[str, list[tuple[datetime, datetime, str]]]:
    by_phone = defaultdict(list)
    for d in docs:
        t0 = datetime.fromisoformat(d["started_at"].replace("Z", "+00:00"))
        t1 = datetime.fromisoformat(d["finished_at"].replace("Z", "+00:00"))
        by_phone[d["device"]["serial"]].append((t0, t1, d["host"]["nightly"]["holder"]))
    return by_phone


def _nightly_proc(args: list[str], log: Path) -> subprocess.Popen:
    """A nightly process; tiny runs are too noisy to judge, so only a 100x change would count."""
    env = {**os.environ, "CI": "1"}
    quiet = ["--min-change-latency", "100", "--min-change-energy", "100"]
    return subprocess.Popen([sys.executable, "-m", "pipeline.nightly", *args, *quiet], cwd=ROOT, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def _wait(procs: list[subprocess.Popen], logs: list[Path]) -> None:
    for p, log in zip(procs, logs, strict=True):
        try:
            code = p.wait(timeout=240)
        except subprocess.TimeoutExpired:
            p.kill()
            raise
        assert code == 0, log.read_text()[-3000:]


def test_two_processes_sharing_phones_take_turns(bundles, tmp_path: Path) -> None:
    from results.collector import start_collector_in_thread

    _, bundle_dir = bundles
    db = f"sqlite:///{tmp_path / 'farm.db'}"
    with sim_phones(tmp_path, ["a", "b"]) as phones, start_collector_in_thread(db) as collector:
        f = farm_yaml(tmp_path / "farm.yaml", phones)
        logs = [tmp_path / "p1.log", tmp_path / "p2.log"]
        procs = [_nightly_proc(["--farm", str(f), "--night", f"team-{i}", "--out", str(tmp_path / f"out{i}"),
                                "--collector", collector.url, "--lease-db", db, "--bundles", str(bundle_dir),
                                "--lease-ttl-s", "10"], logs[i]) for i in range(2)]
        _wait(procs, logs)
    docs = stored(db, "team-0") + stored(db, "team-1")
    assert len(docs) == 8 and all(d["status"] == "ok" for d in docs)
    assert len({d["host"]["nightly"]["holder"] for d in docs}) == 2
    for serial, spans in _intervals(docs).items():
        spans.sort()
        for (_a0, a1, ha), (b0, _b1, hb) in zip(spans, spans[1:], strict=False):
            assert b0 >= a1, f"{serial}: {ha} and {hb} used the phone at the same time"
    from sqlalchemy import create_engine, text

    with create_engine(db).connect() as conn:
        assert conn.execute(text("select count(*) from phone_leases")).scalar() == 0  # all given back


# --------------------------------------------------------------------------------------- PostgreSQL

@pytest.mark.postgres
def test_two_farm_hosts_report_to_one_postgres_collector(bundles, tmp_path: Path, postgres_url: str) -> None:
    from results.collector import start_collector_in_thread

    _, bundle_dir = bundles
    with sim_phones(tmp_path, ["a1", "a2", "b1"]) as phones, \
            start_collector_in_thread(postgres_url) as collector:
        fa = farm_yaml(tmp_path / "farm-a.yaml", {k: v for k, v in phones.items() if k.startswith("a")})
        fb = farm_yaml(tmp_path / "farm-b.yaml", {"b1": phones["b1"]})
        logs = [tmp_path / "a.log", tmp_path / "b.log"]
        procs = [_nightly_proc(["--farm", str(f), "--night", "pg-night", "--out", str(tmp_path / f"out-{i}"),
                                "--collector", collector.url, "--lease-db", postgres_url,
                                "--bundles", str(bundle_dir)], log)
                 for i, (f, log) in enumerate(zip([fa, fb], logs, strict=True))]
        _wait(procs, logs)
    docs = stored(postgres_url, "pg-night")
    assert len(docs) == 6 and all(d["status"] == "ok" for d in docs)
    assert Counter(d["host"]["nightly"]["home_phone"] for d in docs) == {"a1": 2, "a2": 2, "b1": 2}
    assert len({job_key_of(d["run_id"]) for d in docs}) == 6
    assert len({d["host"]["nightly"]["holder"] for d in docs}) == 2
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_url)
    with engine.connect() as conn:
        assert conn.execute(text("select count(*) from phone_leases")).scalar() == 0
    engine.dispose()


def test_dynamic_configurations_are_jobs_of_their_own(bundles, tmp_path: Path) -> None:
    """matrix.dynamic [[], [blocks.0.attn]]: two jobs, one stored result each, two series; bundles reused."""
    import shutil

    _, bundle_dir = bundles
    out = tmp_path / "out"
    # the full model's bundles of the shared export are reused (same request); the skip one is exported here
    shutil.copytree(bundle_dir.parent, out / "models" / "default")
    matrix = Matrix(formats=("onnx",), modes=("dense",), dynamic=((), ("blocks.0.attn",)))
    with sim_phones(tmp_path, ["a"]) as phones:
        farm = farm_of(phones, matrix=matrix)
        first = run_nightly(night(out, "d1"), farm=farm)
        exported = sorted((out / "models" / "default" / "dynamic").glob("onnx-dense-skip1-*/*.onnx"))
        assert len(exported) == 1
        stamp = exported[0].stat().st_mtime_ns
        # latency on shared CI cores is too noisy to compare here; size and accuracy are exact: had the two
        # configurations shared a series, the full model's bigger file would be a size regression
        loose = RegressionRule(min_change_latency=10.0, min_change_energy=10.0)
        second = run_nightly(night(out, "d2", rule=loose), farm=farm)
    assert exported[0].stat().st_mtime_ns == stamp  # the next night reuses the skip configuration's bundle
    assert second.previous_nights == ["d1"]
    assert first.exit_code == 0 and second.exit_code == 0 and not second.regressions
    jobs = farm.jobs()
    assert len(jobs) == 2 and {j.dynamic for j in jobs} == {None, "blocks.0.attn"}
    for name in ("d1", "d2"):
        docs = stored(local_db(out), name)
        assert Counter(job_key_of(d["run_id"]) for d in docs) == Counter({j.key: 1 for j in jobs})
        assert all(d["status"] == "ok" for d in docs), [(d["run_id"], d["error"]) for d in docs]
        by_cfg = {d["host"]["dynamic_config"]: d for d in docs}
        assert set(by_cfg) == {"full", "blocks.0.attn"}
        assert "-skip1-" in by_cfg["blocks.0.attn"]["run_id"] and "-skip" not in by_cfg["full"]["run_id"]
        # the skipped branch's weights are not in the file
        assert by_cfg["blocks.0.attn"]["model"]["bytes"] < by_cfg["full"]["model"]["bytes"]
        assert by_cfg["blocks.0.attn"]["host"]["accuracy_top1"] is not None
        # stored under its own model name, so every grouping by model (trends, report) keeps them apart
        assert [by_cfg[c]["model"]["name"] for c in ("full", "blocks.0.attn")] == [
            "default", "default skip[blocks.0.attn]"]
    trends = json.loads((out / "nights" / "d2" / "trends.json").read_text())
    assert Counter((r["model"], r["dynamic"]) for r in trends) == Counter(
        {("default", ""): 2, ("default skip[blocks.0.attn]", "blocks.0.attn"): 2})


def test_dynamic_configurations_carry_the_nights_palette_settings(tmp_path: Path) -> None:
    """A night's fidelity settings (a 5-bit budget) decide its skip configurations' palettes; the
    bundle is reused while they stay and exported again when they change."""
    from pipeline.nightly.dynamic_bundles import build_dynamic_bundles

    def build(settings: NightSettings):
        steps = Steps(total=4, interactive=False, stream=io.StringIO())
        return build_dynamic_bundles("default", ["blocks.0.attn"], ("onnx",), ("palette",), settings, tmp_path, steps)

    budget = NightSettings(**FAST, target_bits=5.0)
    (first,) = build(budget).values()
    recorded = first.manifest["palettize_config"]
    assert not first.reused and recorded["target_bits"] == 5.0 and recorded["overrides"]
    clusters = {t["clusters"] for t in first.manifest["palette"]["tensors"]}
    assert len(clusters) > 1, "the budget gives layers different cluster counts"
    request = json.loads((first.path.parent / f"{first.path.name}.request.json").read_text())
    assert request["palettize_config"]["target_bits"] == 5.0
    assert first.top1_agreement is not None and first.top1_agreement > 0.9
    (again,) = build(budget).values()
    assert again.reused
    (plain,) = build(NightSettings(**FAST)).values()
    assert not plain.reused and plain.manifest["palettize_config"]["target_bits"] is None
    assert {t["clusters"] for t in plain.manifest["palette"]["tensors"]} == {64}


def test_a_night_palettizes_each_model_once_for_its_full_and_skip_bundles(tmp_path: Path) -> None:
    """GPTQ-budget palettes of the full model are made (and calibrated) once a night; the skip
    configuration's file holds the same per-layer layout as the full model's for the layers it keeps."""
    matrix = Matrix(formats=("onnx",), modes=("palette",), dynamic=((), ("blocks.0.attn",)))
    settings = NightSettings(**FAST, target_bits=5.0, sensitivity="activation", assignment="gptq", calibration=32)
    farm = FarmConfig(phones=(PhoneSpec("x", "127.0.0.1:5555"),), matrix=matrix, settings=settings)
    log = io.StringIO()
    bundles = build_night_bundles(farm, farm.jobs(), tmp_path, Steps(total=6, interactive=False, stream=log))
    text = log.getvalue()
    assert text.count("calibration: 32 inputs") == 1, text
    assert "palettes of palette: the ones made earlier in this run" in text
    full = bundles[("default", "onnx", "palette")]
    skip = bundles[("default", "onnx", "palette", "blocks.0.attn")]
    layout = {t["name"]: t["clusters"] for t in full.manifest["palette"]["tensors"]}
    kept = {t["name"]: t["clusters"] for t in skip.manifest["palette"]["tensors"]}
    assert len(set(layout.values())) > 1 and kept and len(kept) < len(layout)
    assert all(layout[n] == k for n, k in kept.items())
    assert skip.manifest["palettize_config"]["overrides"] == full.manifest["palettize_config"]["overrides"]
