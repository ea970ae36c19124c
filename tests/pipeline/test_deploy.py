"""End-to-end tests of `python -m pipeline.deploy` against the simulated phone and a real collector.

One full run (default model, both formats, all three modes) is shared by the module; the fault
tests reuse its bundles (the same --out) so they do not export again.
"""

from __future__ import annotations

import io
import json
import shutil
import socket
from pathlib import Path

import pytest

from device_runner.sim import Faults, SimulatedPhone
from pipeline.cli_support import run_cli
from pipeline.deploy import main, run_deploy
from pipeline.deploy_config import DeployConfig, parse_args
from pipeline.deploy_table import deploy_table, table_rows
from pipeline.errors import ConfigError
from results.store import ResultStore

pytestmark = pytest.mark.slow

FAST = dict(runs=3, warmup=1, min_duration_s=0.0, cooldown_s=0.0, eval_limit=200, thermal_timeout_s=1.0)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("deploy") / "out"
    cfg = DeployConfig(device="sim", out=str(out), **FAST)
    outcome = run_deploy(cfg)
    return cfg, outcome


def test_every_format_and_mode_runs_ok_and_is_stored(full_run) -> None:
    cfg, outcome = full_run
    out = Path(cfg.out)
    assert {(b.format, b.mode) for b in outcome.bundles} == {
        (f, m) for f in ("onnx", "tflite") for m in ("dense", "palette", "palette-int8")}
    assert [r["status"] for r in outcome.results] == ["ok"] * 6
    assert outcome.failures == []
    saved = json.loads((out / "results.json").read_text())
    store = ResultStore(f"sqlite:///{out / 'runs.db'}")
    try:
        stored = {d["run_id"]: d for d in store.documents()}
    finally:
        store.close()
    # results.json holds every result document of this invocation, exactly as stored
    assert {d["run_id"] for d in saved} == set(stored)
    for doc in saved:
        assert stored[doc["run_id"]] == doc
        assert doc["device"]["simulated"] is True
        assert doc["energy"]["method"] == "simulated"
        assert doc["runtime"]["threads"] == 1
        assert doc["latency"]["runs"] >= FAST["runs"]


def test_report_and_table_say_simulated_and_match_the_store(full_run) -> None:
    cfg, outcome = full_run
    out = Path(cfg.out)
    html = (out / "report.html").read_text()
    assert "simulated" in html.lower()
    buf = io.StringIO()
    text = deploy_table(outcome.results, outcome.bundles, stream=buf)
    assert "SIMULATED" in text
    store = ResultStore(f"sqlite:///{out / 'runs.db'}")
    try:
        stored = {d["run_id"]: d for d in store.documents()}
    finally:
        store.close()
    for row in table_rows(outcome.results, outcome.bundles):
        doc = stored[row["run_id"]]
        assert row["p50_ms"] == doc["latency"]["median_ms"]
        assert row["p90_ms"] == doc["latency"]["p90_ms"]
        assert row["energy_mj"] == doc["energy"]["per_inference_mj"]
        assert row["bytes"] == doc["model"]["bytes"]
        assert f"{row['p50_ms']:.3f}" in text


def test_palette_files_are_smaller_and_accuracy_is_measured(full_run) -> None:
    _, outcome = full_run
    rows = {(r["format"], r["mode"]): r for r in table_rows(outcome.results, outcome.bundles)}
    for fmt in ("onnx", "tflite"):
        assert rows[(fmt, "dense")]["bytes_vs_dense"] == pytest.approx(1.0)
        # 64 clusters: 8-bit indices + codebooks, so well under half of fp32
        assert rows[(fmt, "palette")]["bytes_vs_dense"] < 0.4
        for mode in ("dense", "palette", "palette-int8"):
            b = next(b for b in outcome.bundles if (b.format, b.mode) == (fmt, mode))
            assert 0.0 <= b.accuracy <= 1.0
            assert b.top1_agreement >= 0.9


def test_rerun_reuses_bundles_and_keeps_stored_results(full_run) -> None:
    cfg, first = full_run
    out = Path(cfg.out)
    again = run_deploy(DeployConfig(device="sim", out=cfg.out, formats=("onnx",), modes=("dense",), **FAST))
    assert all(b.reused for b in again.bundles)
    store = ResultStore(f"sqlite:///{out / 'runs.db'}")
    try:
        ids = {d["run_id"] for d in store.documents()}
    finally:
        store.close()
    assert {d["run_id"] for d in first.results} <= ids
    assert again.results[0]["run_id"] in ids


def test_collector_down_stores_results_locally(full_run, tmp_path: Path) -> None:
    cfg, _ = full_run
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    out = tmp_path / "out"
    shutil.copytree(Path(cfg.out) / "bundles", out / "bundles")
    outcome = run_deploy(DeployConfig(device="sim", out=str(out), formats=("onnx",), modes=("dense",),
                                      collector=f"http://127.0.0.1:{dead}", **FAST))
    assert [r["status"] for r in outcome.results] == ["ok"]
    store = ResultStore(f"sqlite:///{out / 'runs-local.db'}")
    try:
        assert store.get(outcome.results[0]["run_id"]) is not None
    finally:
        store.close()


def test_thermal_throttling_aborts_the_job_with_a_stored_result(full_run, tmp_path: Path) -> None:
    cfg, _ = full_run
    out = tmp_path / "out"
    shutil.copytree(Path(cfg.out) / "bundles", out / "bundles")
    with SimulatedPhone(tmp_path / "phone", profile="pixel-8", port=0, faults=Faults(thermal_status=3)) as phone:
        outcome = run_deploy(DeployConfig(device=phone.serial, out=str(out), formats=("onnx",),
                                          modes=("dense",), **FAST))
    assert [r["status"] for r in outcome.results] == ["thermal_abort"]
    assert "thermal status" in outcome.results[0]["error"]
    assert not outcome.ok


def test_odpm_energy_is_read_around_the_window_on_a_pixel_profile(full_run, tmp_path: Path) -> None:
    """A Pixel (not the sim profile) connected by address: the runner reads the power rails."""
    cfg, _ = full_run
    out = tmp_path / "out"
    shutil.copytree(Path(cfg.out) / "bundles", out / "bundles")
    devices = tmp_path / "devices.yaml"
    with SimulatedPhone(tmp_path / "phone", profile="pixel-8", port=0) as phone:
        devices.write_text(f"devices:\n  bench-pixel:\n    address: {phone.serial}\n    profile: pixel\n")
        outcome = run_deploy(DeployConfig(device="bench-pixel", devices_file=str(devices), out=str(out),
                                          formats=("onnx",), modes=("dense",),
                                          **{**FAST, "min_duration_s": 1.0}))
    doc = outcome.results[0]
    assert doc["status"] == "ok"
    odpm = doc["host"]["energy_odpm"]
    assert odpm["method"] == "odpm" and odpm["rails"]
    assert odpm["per_inference_mj"] is None or odpm["per_inference_mj"] > 0


def test_app_crash_is_stored_as_crashed(full_run, tmp_path: Path) -> None:
    cfg, _ = full_run
    out = tmp_path / "out"
    shutil.copytree(Path(cfg.out) / "bundles", out / "bundles")
    with SimulatedPhone(tmp_path / "phone", profile="pixel-8", port=0, faults=Faults(app_crash=True)) as phone:
        outcome = run_deploy(DeployConfig(device=phone.serial, out=str(out), formats=("onnx",),
                                          modes=("dense",), **FAST))
    assert [r["status"] for r in outcome.results] == ["crashed"]
    assert outcome.results[0]["device"]["simulated"] is True
    store = ResultStore(f"sqlite:///{out / 'runs.db'}")
    try:
        assert store.get(outcome.results[0]["run_id"])["status"] == "crashed"
    finally:
        store.close()


def test_a_sim_reached_by_address_is_still_labelled_simulated(full_run, tmp_path: Path) -> None:
    cfg, _ = full_run
    out = tmp_path / "out"
    shutil.copytree(Path(cfg.out) / "bundles", out / "bundles")
    with SimulatedPhone(tmp_path / "phone", profile="pixel-8", port=0) as phone:
        outcome = run_deploy(DeployConfig(device=phone.serial, out=str(out), formats=("onnx",),
                                          modes=("dense",), **FAST))
    doc = outcome.results[0]
    assert doc["status"] == "ok" and doc["device"]["simulated"] is True
    assert doc["energy"]["method"] == "simulated"
    assert "energy_odpm" not in doc["host"]


def test_unknown_device_is_one_readable_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = run_cli(main, ["--device", "no-such-phone-xyz", "--out", str(tmp_path / "o"), "--formats", "onnx",
                          "--modes", "dense", "--eval-limit", "20"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2
    assert len(errors) == 1 and "Traceback" not in err
    assert "no-such-phone-xyz" in errors[0]
    assert "export" not in err  # it failed before any model work


def test_missing_app_says_how_to_install_and_apk_installs_it(full_run, tmp_path: Path) -> None:
    import zipfile

    from pipeline.errors import DeviceError

    cfg, _ = full_run
    out = tmp_path / "out"
    shutil.copytree(Path(cfg.out) / "bundles", out / "bundles")
    apk = tmp_path / "app-debug.apk"
    with zipfile.ZipFile(apk, "w") as z:
        z.writestr("AndroidManifest.xml", '<manifest package="org.vitpalette.bench"><application>'
                   '<activity android:name=".BenchmarkActivity"/></application></manifest>')
    settings = dict(out=str(out), formats=("onnx",), modes=("dense",), **FAST)
    with SimulatedPhone(tmp_path / "phone", profile="pixel-8", port=0, preinstall_bench_app=False) as phone:
        with pytest.raises(DeviceError, match="--apk"):
            run_deploy(DeployConfig(device=phone.serial, **settings))
        outcome = run_deploy(DeployConfig(device=phone.serial, apk=str(apk), **settings))
    assert [r["status"] for r in outcome.results] == ["ok"]


def test_pending_authorisation_says_to_accept_the_prompt(capsys: pytest.CaptureFixture[str],
                                                        tmp_path: Path) -> None:
    with SimulatedPhone(tmp_path / "phone", profile="pixel-8", port=0, faults=Faults(refuse_auth=True)) as phone:
        code = run_cli(main, ["--device", phone.serial, "--out", str(tmp_path / "o"), "--auth-timeout-s", "1"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert code == 2
    assert len(errors) == 1 and "accept the USB debugging prompt on the phone" in errors[0]


def test_config_yaml_unknown_keys_are_rejected(tmp_path: Path) -> None:
    cfg = tmp_path / "deploy.yaml"
    cfg.write_text("device: sim\nclusterz: 64\n")
    with pytest.raises(ConfigError, match="clusterz"):
        parse_args(["--config", str(cfg)])
    cfg.write_text("device: sim\nclusters: 32\nformats: [onnx]\n")
    parsed = parse_args(["--config", str(cfg), "--clusters", "16"])
    assert parsed.clusters == 16 and parsed.formats == ("onnx",)


@pytest.mark.parametrize("bad", [dict(clusters=1), dict(formats="onnx,coreml"), dict(modes=""), dict(threads=0),
                                 dict(target_bits=0), dict(sensitivity="hessian"), dict(assignment="exact"),
                                 dict(calibration=0), dict(tune_epochs=-1), dict(tune_inputs=0),
                                 dict(calibration_augment=-3)])
def test_impossible_settings_name_the_field(bad: dict) -> None:
    with pytest.raises(ConfigError) as info:
        DeployConfig(**bad)
    assert next(iter(bad)) in str(info.value)


def test_connection_lost_mid_run_fails_that_job_clearly(full_run, tmp_path: Path) -> None:
    cfg, _ = full_run
    out = tmp_path / "out"
    shutil.copytree(Path(cfg.out) / "bundles", out / "bundles")
    with SimulatedPhone(tmp_path / "phone", profile="pixel-8", port=0) as phone:
        def drop_everything(*args, **kwargs):
            # from now on every connection drops after a few hundred bytes, so retries run out
            phone.faults = Faults(drop_after_bytes=300, drop_connections=None)
            return original(*args, **kwargs)

        from device_runner.runner import JobRunner

        original = JobRunner.push_bundle
        JobRunner.push_bundle = drop_everything
        try:
            outcome = run_deploy(DeployConfig(device=phone.serial, out=str(out), formats=("onnx",),
                                              modes=("dense", "palette"), **FAST))
        finally:
            JobRunner.push_bundle = original
    assert outcome.results == []
    assert len(outcome.failures) == 2
    assert all("connection" in f.lower() for f in outcome.failures)
    assert not outcome.ok


def test_ctrl_c_keeps_completed_results_and_leaves_the_phone_clean(full_run, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from device_runner.runner import DEVICE_WORK_DIR, JobRunner

    cfg, _ = full_run
    out = tmp_path / "out"
    shutil.copytree(Path(cfg.out) / "bundles", out / "bundles")
    original = JobRunner.run_bundle
    calls = {"n": 0}

    def interrupt_second(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(JobRunner, "run_bundle", interrupt_second)
    with SimulatedPhone(tmp_path / "phone", profile="pixel-8", port=0) as phone:
        with pytest.raises(KeyboardInterrupt):
            run_deploy(DeployConfig(device=phone.serial, out=str(out), formats=("onnx",),
                                    modes=("dense", "palette"), **FAST))
        assert not phone.host_path(DEVICE_WORK_DIR).exists()
    saved = json.loads((out / "results.json").read_text())
    assert [d["status"] for d in saved] == ["ok"]
    store = ResultStore(f"sqlite:///{out / 'runs.db'}")
    try:
        assert store.get(saved[0]["run_id"]) is not None
    finally:
        store.close()


def test_battery_under_the_floor_stops_before_any_job(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with SimulatedPhone(tmp_path / "phone", profile="pixel-8", port=0, faults=Faults(battery_level_pct=5)) as phone:
        code = run_cli(main, ["--device", phone.serial, "--out", str(tmp_path / "o"), "--formats", "onnx",
                              "--modes", "dense", "--eval-limit", "20", "--battery-floor-pct", "20"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert code == 2
    assert len(errors) == 1 and "5%" in errors[0] and "floor" in errors[0]


def test_charging_phone_measured_by_battery_gets_a_warning(full_run, tmp_path: Path) -> None:
    cfg, _ = full_run
    out = tmp_path / "out"
    shutil.copytree(Path(cfg.out) / "bundles", out / "bundles")
    devices = tmp_path / "devices.yaml"
    with SimulatedPhone(tmp_path / "phone", profile="generic", port=0, faults=Faults(charging=True)) as phone:
        devices.write_text(f"devices:\n  lab-phone:\n    address: {phone.serial}\n    profile: generic\n")
        outcome = run_deploy(DeployConfig(device="lab-phone", devices_file=str(devices), out=str(out),
                                          formats=("onnx",), modes=("dense",), **FAST))
    assert any("charging" in w for w in outcome.warnings)


def test_budgeted_gptq_palettes_deploy_and_record_their_layout(tmp_path: Path) -> None:
    """--target-bits/--sensitivity/--assignment reach the bundles: the manifest records the
    per-layer layout and the calibration used, the run is stored, and a rerun reuses the bundle
    only while those settings stay the same."""
    out = tmp_path / "out"
    args = ["--device", "sim", "--out", str(out), "--formats", "onnx", "--modes", "palette-int8",
            "--target-bits", "5", "--sensitivity", "output", "--assignment", "gptq", "--calibration", "32",
            "--runs", "2", "--warmup", "0", "--min-duration-s", "0", "--cooldown-s", "0", "--eval-limit", "100"]
    outcome = run_deploy(parse_args(args))
    assert [r["status"] for r in outcome.results] == ["ok"]
    manifest = json.loads((out / "bundles" / "onnx-palette-int8" / "manifest.json").read_text())
    recorded = manifest["palettize_config"]
    assert recorded["target_bits"] == 5 and recorded["assignment"] == "gptq" and recorded["int8_grid"] is True
    assert recorded["calibration"] == {"source": "auto", "rows": 32}
    layers = [pattern for pattern, settings in recorded["overrides"].items() if settings is not None]
    assert len(layers) == len(manifest["palette"]["tensors"])  # one budget entry per clustered tensor
    again = run_deploy(parse_args(args))
    assert [b.reused for b in again.bundles] == [True]
    other = run_deploy(parse_args([a if a != "5" else "6" for a in args]))
    assert [b.reused for b in other.bundles] == [False]


def test_tuned_palettes_deploy_and_record_the_tuning(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--device", "sim", "--out", str(out), "--formats", "onnx", "--modes", "palette-int8",
            "--clusters", "16", "--tune-epochs", "1", "--tune-inputs", "64", "--calibration", "16",
            "--runs", "2", "--warmup", "0", "--min-duration-s", "0", "--cooldown-s", "0", "--eval-limit", "100"]
    outcome = run_deploy(parse_args(args))
    assert [r["status"] for r in outcome.results] == ["ok"]
    manifest = json.loads((out / "bundles" / "onnx-palette-int8" / "manifest.json").read_text())
    recorded = manifest["palettize_config"]
    assert recorded["tune_epochs"] == 1 and recorded["int8_grid"] is True
    assert recorded["calibration"] == {"source": "auto", "rows": 16, "tuning_rows": 64}
    untuned = run_deploy(parse_args([a if a != "1" else "0" for a in args]))  # --tune-epochs 0
    assert [b.reused for b in untuned.bundles] == [False]  # tuning is part of what a bundle is made from
