"""Nightly: farm file validation, the regression rule and phone leases (no phones, no torch)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.nightly.farm import load_farm, parse_farm_mapping, sim_farm
from pipeline.nightly.history import job_key_of, nightly_run_id
from pipeline.nightly.leases import LeaseManager
from pipeline.nightly.regressions import RegressionRule, find_regressions, regressions_table, trend_rows

# ------------------------------------------------------------------------------------------- farm


def test_farm_yaml_gives_every_phone_the_whole_matrix(tmp_path: Path) -> None:
    f = tmp_path / "farm.yaml"
    f.write_text(textwrap.dedent("""
        phones:
          - {name: bench-1, address: 192.168.1.20:5555, profile: pixel, tags: [lab-a]}
          - {address: R5CW20ABCDE}
        matrix: {models: [default, "timm:deit_tiny_patch16_224"], formats: [onnx], modes: [dense, palette],
                 threads: [1, 4], dynamic: []}
        settings: {runs: 10, warmup: 2}
    """))
    farm = load_farm(f)
    assert [p.name for p in farm.phones] == ["bench-1", "R5CW20ABCDE"]
    assert farm.phones[1].address == "usb:R5CW20ABCDE" and farm.phones[0].tags == ("lab-a",)
    jobs = farm.jobs()
    assert len(jobs) == 2 * 2 * 1 * 2 * 2
    assert len({j.key for j in jobs}) == len(jobs)
    assert farm.settings.runs == 10 and farm.matrix.dynamic == ()


def test_job_keys_do_not_depend_on_the_rest_of_the_matrix() -> None:
    small = parse_farm_mapping({"phones": ["10.0.0.1:5555"], "matrix": {"formats": ["onnx"]}})
    full = parse_farm_mapping({"phones": ["10.0.0.1:5555"]})
    assert {j.key for j in small.jobs()} < {j.key for j in full.jobs()}


@pytest.mark.parametrize("data, words", [
    ({"phones": ["1.2.3.4:5555"], "matrx": {}}, ["matrx", "phones, matrix, settings"]),
    ({"phones": [{"address": "1.2.3.4:5555", "serial": "x"}]}, ["serial", "name, address, profile, tags"]),
    ({"phones": ["1.2.3.4:5555"], "matrix": {"modes": ["dense", "sparse"]}}, ["sparse", "palette-int8"]),
    ({"phones": ["1.2.3.4:5555"], "matrix": {"threads": [0]}}, ["threads"]),
    ({"phones": ["1.2.3.4:5555"], "settings": {"runz": 3}}, ["runz", "known keys"]),
    ({"phones": ["1.2.3.4:5555"], "settings": {"sensitivity": "hessian"}}, ["settings", "hessian", "output"]),
    ({"phones": ["1.2.3.4:5555"], "settings": {"target_bits": -1}}, ["settings", "target_bits"]),
    ({"phones": ["1.2.3.4:5555"], "settings": {"tune_epochs": -2}}, ["settings", "tune_epochs"]),
    ({"phones": ["1.2.3.4:5555"], "settings": {"calibration_augment": -1}}, ["settings", "calibration_augment"]),
    ({"phones": ["1.2.3.4:5555", "1.2.3.4:5555"]}, ["twice"]),
    ({"phones": [{"name": "a"}]}, ["no address"]),
    ({"phones": [{"address": "1.2.3.4:5555", "profile": "iphone"}]}, ["iphone", "pixel"]),
    ({"phones": []}, ["no phones"]),
    ({"phones": ["1.2.3.4:5555"], "matrix": {"dynamic": [{"skip": "blocks.0.attn"}]}}, ["matrix.dynamic", "+"]),
    ({"phones": ["1.2.3.4:5555"], "matrix": {"dynamic": [["blocks.0.attn", 3]]}}, ["matrix.dynamic", "3"]),
    ({"phones": ["1.2.3.4:5555"], "matrix": {"dynamic": ["blocks.0.attn+"]}}, ["matrix.dynamic", "unit name"]),
    ({"phones": ["1.2.3.4:5555"], "matrix": {"dynamic": ["blocks 0"]}}, ["blocks 0", "blocks.0.attn"]),
])
def test_bad_farm_files_name_the_problem(data: dict, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_farm_mapping(data, "farm.yaml")
    text = str(info.value) + " " + str(getattr(info.value, "next_step", ""))
    for w in words:
        assert w in text


def test_dynamic_configurations_multiply_the_matrix_and_keep_the_full_models_keys() -> None:
    plain = parse_farm_mapping({"phones": ["10.0.0.1:5555"], "matrix": {"formats": ["onnx"], "modes": ["dense"]}})
    farm = parse_farm_mapping({"phones": ["10.0.0.1:5555", "10.0.0.2:5555"], "matrix": {
        "formats": ["onnx"], "modes": ["dense", "palette"], "threads": [1, 4],
        # every spelling of "skip nothing" is one configuration; a list and its '+' string are one too
        "dynamic": [[], "full", "", ["blocks.1.mlp", "blocks.0.attn"], "blocks.0.attn+blocks.1.mlp", "blocks.2.attn"],
    }})
    assert farm.matrix.dynamic == ("full", "blocks.0.attn+blocks.1.mlp", "blocks.2.attn")
    jobs = farm.jobs()
    assert len(jobs) == 2 * 1 * 2 * 2 * 3 and len({j.key for j in jobs}) == len(jobs)
    assert {j.dynamic for j in jobs} == {None, "blocks.0.attn+blocks.1.mlp", "blocks.2.attn"}
    # the full model's jobs keep the keys of a farm without dynamic configurations (their history goes on)
    assert {j.key for j in plain.jobs()} < {j.key for j in jobs}
    dyn = next(j for j in jobs if j.dynamic == "blocks.2.attn")
    assert dyn.bundle_key == (dyn.model, dyn.format, dyn.mode, "blocks.2.attn") and "dyn=blocks.2.attn" in dyn.label()
    assert next(j for j in jobs if j.dynamic is None).bundle_key == (dyn.model, dyn.format, dyn.mode)
    only_full = parse_farm_mapping({"phones": ["10.0.0.1:5555"], "matrix": {"dynamic": "full"}})
    assert {j.key for j in only_full.jobs()} == {j.key for j in parse_farm_mapping({"phones": ["10.0.0.1:5555"]}).jobs()}


def test_dynamic_units_are_checked_against_the_model() -> None:
    from types import SimpleNamespace

    from pipeline.nightly.dynamic_bundles import check_configs

    units = [SimpleNamespace(name=n) for n in ("blocks.0.attn", "blocks.0.mlp", "blocks.1.attn", "blocks.1.mlp")]
    got = check_configs(["full", "blocks.0.attn+blocks.1.mlp"], units, "default")
    assert got == {"full": frozenset(), "blocks.0.attn+blocks.1.mlp": frozenset({"blocks.0.attn", "blocks.1.mlp"})}
    with pytest.raises(ConfigError) as info:
        check_configs(["blocks.0.attn+blocks.7.mlp"], units, "default")
    text = str(info.value) + " " + str(info.value.next_step)
    for word in ("blocks.7.mlp", "default", "blocks.0.attn, blocks.0.mlp, blocks.1.attn, blocks.1.mlp"):
        assert word in text


def test_sim_farm_and_bad_farm_arguments(tmp_path: Path) -> None:
    farm = load_farm("sim:3")
    assert len(farm.phones) == 3 and farm.simulated and len(farm.jobs()) == 3 * 2 * 3
    assert sim_farm(1).phones[0].name == "sim-1"
    for bad in ("sim:x", "sim:0", str(tmp_path / "missing.yaml")):
        with pytest.raises(ConfigError):
            load_farm(bad)


def test_run_ids_carry_the_job_key() -> None:
    rid = nightly_run_id("2026-11-23", "tflite", "palette-int8", 4, "0123456789ab", 2)
    assert job_key_of(rid) == "0123456789ab"
    assert job_key_of("20261123T010203-onnx-dense-abcdef12") is None
    a = nightly_run_id("2026-11-23", "onnx", "dense", 1, "0123456789ab", 1, "blocks.0.attn")
    b = nightly_run_id("2026-11-23", "onnx", "dense", 1, "0123456789ab", 1, "blocks.0.attn+blocks.1.mlp")
    assert len({a, b, nightly_run_id("2026-11-23", "onnx", "dense", 1, "0123456789ab", 1)}) == 3
    assert "-skip1-" in a and "-skip2-" in b and "+" not in b
    assert job_key_of(a) == job_key_of(b) == "0123456789ab"


# ------------------------------------------------------------------------------------ regressions

def _doc(night: int, serial: str, median_ms: float, *, std_ms: float = 0.5, runs: int = 30, mode: str = "dense",
         energy: float | None = 1.0, acc: float | None = 0.9, size: int = 1000, status: str = "ok") -> dict:
    return {
        "run_id": f"n.night{night}.onnx-{mode}-t1.{abs(hash((night, serial, mode))):012x}"[:60] + ".a1",
        "status": status, "started_at": f"2026-11-{10 + night:02d}T01:00:00Z",
        "device": {"model": "Pixel 8", "serial": serial, "simulated": False},
        "model": {"name": "default", "format": "onnx", "mode": mode, "bytes": size},
        "runtime": {"threads": 1},
        "latency": {"median_ms": median_ms, "std_ms": std_ms, "runs": runs} if status == "ok" else None,
        "energy": {"method": "battery", "per_inference_mj": energy},
        "host": {"accuracy_top1": acc},
    }


def _nights(values: dict[str, list[float]], **kw) -> list[list[dict]]:
    n = len(next(iter(values.values())))
    return [[_doc(i, serial, v[i], **kw) for serial, v in values.items()] for i in range(n)]


def test_only_the_slowed_phone_is_reported() -> None:
    hist = _nights({"A": [10.0, 10.4, 9.8], "B": [20.0, 21.0, 19.5]})
    now = [_doc(9, "A", 10.3), _doc(9, "B", 30.0)]
    regs = find_regressions(now, hist)
    assert [(r.device, r.metric) for r in regs] == [("Pixel 8 (B)", "latency_median_ms")]
    assert regs[0].previous == pytest.approx(20.0) and regs[0].now == 30.0 and regs[0].threshold < 30.0
    table = regressions_table(regs)
    for word in ("device", "metric", "previous", "threshold", "Pixel 8 (B)", "latency_median_ms"):
        assert word in table


def test_each_dynamic_configuration_is_its_own_series() -> None:
    def with_dyn(doc: dict, dyn: str | None) -> dict:
        if dyn is not None:
            doc["host"]["dynamic_config"] = dyn
            doc["run_id"] = doc["run_id"].replace(".a1", f".{dyn}.a1")
        return doc

    # full model ~10 ms; blocks.0.attn skipped ~6 ms: a skip configuration is never a "faster full model"
    hist = [[with_dyn(_doc(i, "A", 10.0 + 0.1 * i), None if i == 0 else "full"),
             with_dyn(_doc(i, "A", 6.0 + 0.1 * i), "blocks.0.attn")] for i in range(3)]
    now = [with_dyn(_doc(9, "A", 10.1), "full"), with_dyn(_doc(9, "A", 9.5), "blocks.0.attn")]
    regs = find_regressions(now, hist)
    assert [(r.model, r.dynamic, r.metric) for r in regs] == [
        ("default skip[blocks.0.attn]", "blocks.0.attn", "latency_median_ms")]
    assert regs[0].previous == pytest.approx(6.1)
    rows = trend_rows([(f"night{i}", docs) for i, docs in enumerate(hist)])
    series = {(r["model"], r["dynamic"]) for r in rows}
    # results from before host.dynamic_config (night 0) continue the full model's series
    assert series == {("default", ""), ("default skip[blocks.0.attn]", "blocks.0.attn")} and len(rows) == 6


def test_the_threshold_grows_with_the_night_to_night_spread() -> None:
    quiet = _nights({"A": [10.0, 10.1, 9.9, 10.0]}, std_ms=0.1)
    noisy = _nights({"A": [8.0, 12.0, 9.0, 11.5]}, std_ms=0.1)
    now = [_doc(9, "A", 12.5, std_ms=0.1)]
    assert [r.metric for r in find_regressions(now, quiet)] == ["latency_median_ms"]
    assert find_regressions(now, noisy) == []


def test_within_run_spread_counts_and_the_floor_holds() -> None:
    hist = _nights({"A": [10.0]}, std_ms=0.01)
    # 4% slower: under the 5% floor even though the runs were very steady
    assert find_regressions([_doc(9, "A", 10.4, std_ms=0.01)], hist) == []
    assert find_regressions([_doc(9, "A", 10.6, std_ms=0.01)], hist)
    # a wildly varying run tonight: its median is not trusted to 6%
    assert find_regressions([_doc(9, "A", 10.6, std_ms=5.0, runs=10)], hist) == []


def test_energy_accuracy_and_size_regressions() -> None:
    hist = _nights({"A": [10.0, 10.0]})
    now = [_doc(9, "A", 10.0, energy=1.5, acc=0.85, size=1200)]
    assert sorted(r.metric for r in find_regressions(now, hist)) == [
        "accuracy_top1", "energy_per_inference_mj", "model_bytes"]
    # energy of another method is not compared
    other = _doc(9, "A", 10.0, energy=5.0)
    other["energy"]["method"] = "odpm_app"
    assert find_regressions([other], hist) == []


def test_no_history_failed_runs_and_new_series_are_not_regressions() -> None:
    assert find_regressions([_doc(9, "A", 50.0)], []) == []
    hist = _nights({"A": [10.0]})
    assert find_regressions([_doc(9, "A", 50.0, status="crashed")], hist) == []
    assert find_regressions([_doc(9, "A", 50.0, mode="palette")], hist) == []
    assert find_regressions([_doc(9, "A", 50.0)], hist, RegressionRule(min_history=2)) == []
    rows = trend_rows([("n0", hist[0]), ("n9", [_doc(9, "A", 11.0)])])
    assert [r["night"] for r in rows] == ["n0", "n9"] and rows[1]["median_ms"] == 11.0


def test_regression_rule_rejects_nonsense() -> None:
    with pytest.raises(ConfigError, match="k_sigma"):
        RegressionRule(k_sigma=-1)
    with pytest.raises(ConfigError, match="min_history"):
        RegressionRule(min_history=0)


# ----------------------------------------------------------------------------------------- leases

def test_one_winner_when_many_holders_race(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'leases.db'}"
    managers = [LeaseManager(url, ttl_s=30) for _ in range(6)]
    start = threading.Barrier(len(managers))
    wins: list[str] = []

    def race(m: LeaseManager) -> None:
        start.wait()
        if m.try_acquire("phone-1"):
            wins.append(m.holder_id)

    threads = [threading.Thread(target=race, args=(m,)) for m in managers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert len(wins) == 1
        winner = next(m for m in managers if m.holder_id == wins[0])
        assert winner.try_acquire("phone-1")  # re-entrant for its holder
        assert managers[0].holder_of("phone-1")[0] == wins[0]
        winner.release("phone-1")
        loser = next(m for m in managers if m is not winner)
        assert loser.try_acquire("phone-1")
    finally:
        for m in managers:
            m.close()


def test_heartbeat_keeps_a_lease_and_expiry_frees_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'leases.db'}"
    with LeaseManager(url, ttl_s=1.0, heartbeat_s=0.2) as a, LeaseManager(url, ttl_s=1.0) as b:
        assert a.try_acquire("p")
        time.sleep(1.6)  # longer than the ttl: only the heartbeat keeps it
        assert not b.try_acquire("p")
        a._stop.set()  # the holder stops beating (as if hung)
        a._thread.join()
        time.sleep(1.3)
        assert b.try_acquire("p")
        assert not a.renew("p") and a.lost("p")


HOLDER = """
import sys, time
from pipeline.nightly.leases import LeaseManager
m = LeaseManager(sys.argv[1], ttl_s=float(sys.argv[2]))
assert m.try_acquire("phone-x")
print("held", flush=True)
time.sleep(600)
"""


def test_a_killed_holder_loses_its_lease_after_the_ttl(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'leases.db'}"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, url, "2.0"], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        assert proc.stdout.readline().strip() == "held"
        with LeaseManager(url, ttl_s=5) as other:
            assert not other.try_acquire("phone-x")
            proc.kill()  # SIGKILL: no clean-up, no release
            proc.wait(timeout=10)
            assert not other.try_acquire("phone-x")  # not before the ttl ends
            assert other.acquire("phone-x", wait_s=10, poll_s=0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_a_busy_phone_is_not_a_slower_phone() -> None:
    """The median rose but the fastest runs did not: disturbed, not slower (the 10th percentile rule)."""
    calm = [1.0, 1.01, 1.02, 0.99, 1.0, 1.03, 0.98, 1.0, 1.01, 1.0]
    hist = [[_doc(i, "A", 1.0)] for i in range(3)]
    for night in hist:
        night[0]["latency"]["samples_ms"] = calm
    busy = _doc(9, "A", 3.0)
    busy["latency"]["samples_ms"] = [1.0, 0.99, 1.01, 1.0, 3.0, 3.0, 3.1, 3.0, 3.2, 3.0]
    assert find_regressions([busy], hist) == []
    slower = _doc(9, "A", 2.0)
    slower["latency"]["samples_ms"] = [2.0 * v for v in calm]
    assert [r.metric for r in find_regressions([slower], hist)] == ["latency_median_ms"]
    # without the confirmation the busy night would have been reported
    assert find_regressions([busy], hist, RegressionRule(low_quantile=None))


def test_within_run_spread_comes_from_the_samples_not_the_outliers() -> None:
    hist = [[_doc(i, "A", 10.0, std_ms=40.0, runs=20)] for i in range(3)]
    now = _doc(9, "A", 13.0, std_ms=40.0, runs=20)  # a few huge outliers inflate std_ms
    assert find_regressions([now], hist) == []  # std-based: the 30% rise drowns in the outliers
    steady = [10.0 + 0.01 * (i % 5) for i in range(20)]
    for night in hist:
        night[0]["latency"]["samples_ms"] = steady + [500.0]
    now["latency"]["samples_ms"] = [v * 1.3 for v in steady] + [500.0]
    assert [r.metric for r in find_regressions([now], hist)] == ["latency_median_ms"]


def test_cli_bad_input_is_one_line(tmp_path: Path, capsys) -> None:
    from pipeline.cli_support import run_cli
    from pipeline.nightly.__main__ import main

    bad = tmp_path / "farm.yaml"
    bad.write_text("phones: ['1.2.3.4:5555']\nmatrix: {formats: [coreml]}\n")
    assert run_cli(main, ["--farm", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "coreml" in err[0] and "onnx" in err[0]
    assert run_cli(main, ["--farm", "sim:3", "--night", "no/slashes", "--out", str(tmp_path / "o")]) == 2
    assert "--night" in capsys.readouterr().err


def test_importing_nightly_stays_light() -> None:
    code = ("import sys, pipeline.nightly, pipeline.nightly.run, pipeline.nightly.__main__; "
            "bad = [m for m in ('torch', 'tensorflow', 'adb_shell', 'onnxruntime') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_fidelity_settings_reach_the_deploy_config_of_each_model() -> None:
    farm = parse_farm_mapping({"phones": ["10.0.0.1:5555"], "settings": {
        "target_bits": 6, "sensitivity": "output", "assignment": "gptq", "calibration": 64,
        "calibration-augment": 32, "tune_epochs": 2, "tune_inputs": 256}})
    fields = farm.settings.deploy_fields()
    assert fields["target_bits"] == 6 and fields["sensitivity"] == "output" and fields["assignment"] == "gptq"
    from pipeline.deploy_config import DeployConfig

    cfg = DeployConfig(**fields)
    assert (cfg.calibration_augment, cfg.tune_epochs, cfg.tune_inputs) == (32, 2, 256)
    pal = cfg.palettize_config("palette-int8")
    assert pal.target_bits == 6 and pal.int8_grid and pal.needs_calibration and pal.tune_epochs == 2
