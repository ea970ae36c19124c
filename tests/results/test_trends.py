"""Trends per configuration over nights: the pure grouping, the HTTP route, the dashboard section."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from results.trends import TrendFilter, trends

CHROMIUM = Path("/usr/bin/chromium")


def night_doc(make, run_id: str, night: str | None, hour: int, *, device: str = "Pixel 8", serial: str = "sim-1",
              mode: str = "dense", fmt: str = "onnx", threads: int = 1, median_ms: float = 10.0,
              mj: float | None = 400.0, simulated: bool = True, status: str = "ok", **extra):
    changes = {
        "run_set": night, "started_at": f"{night}T{hour:02d}:00:00.000Z", "finished_at": f"{night}T{hour:02d}:00:09.000Z",
        "device.model": device, "device.serial": serial, "device.simulated": simulated,
        "model.mode": mode, "model.format": fmt, "runtime.threads": threads, "latency.median_ms": median_ms,
    }
    if not simulated:
        changes["energy.method"] = "battery"
    doc = make(run_id, **changes, **extra)
    doc["status"] = status
    if status != "ok":
        doc["latency"] = None
        doc["energy"] = None
        doc["error"] = "model file truncated"
    else:
        doc["energy"]["per_inference_mj"] = mj  # None: energy not measured that night
    return doc


def history(make) -> list[dict]:
    """Three nights, two devices (one simulated), two modes; night 2 has two runs of one config."""
    docs = [
        night_doc(make, "n1-p8-dense", "2026-11-20", 2, median_ms=10.0, mj=400.0),
        night_doc(make, "n1-p8-pal", "2026-11-20", 2, mode="palette", median_ms=8.0, mj=300.0),
        night_doc(make, "n1-p7-dense", "2026-11-20", 3, device="Pixel 7", serial="R5CT", simulated=False,
                  median_ms=30.0, mj=900.0),
        night_doc(make, "n2-p8-dense-a", "2026-11-21", 2, median_ms=11.0, mj=410.0),
        night_doc(make, "n2-p8-dense-b", "2026-11-21", 4, median_ms=13.0, mj=430.0),
        night_doc(make, "n2-p8-dense-fail", "2026-11-21", 5, status="load_failed"),
        night_doc(make, "n2-p7-dense", "2026-11-21", 3, device="Pixel 7", serial="R5CT", simulated=False,
                  median_ms=32.0, mj=None),
        night_doc(make, "n3-p8-dense", "2026-11-22", 2, median_ms=12.0, mj=420.0),
        night_doc(make, "adhoc-p8-dense", None, 1, median_ms=99.0),  # no run set: not a night
    ]
    docs[-1]["started_at"], docs[-1]["finished_at"] = "2026-11-22T12:00:00.000Z", "2026-11-22T12:00:09.000Z"
    docs[0]["host"] = {"accuracy_top1": 0.81}
    return docs


def by_config(data: dict) -> dict[tuple, dict]:
    return {(c["device_model"], c["mode"]): c for c in data["configurations"]}


def test_grouping_per_configuration_and_night(result_doc):
    docs = history(result_doc)
    data = trends(list(reversed(docs)))  # input order must not matter
    assert data["nights"] == ["2026-11-20", "2026-11-21", "2026-11-22"]
    cfgs = by_config(data)
    assert set(cfgs) == {("Pixel 8", "dense"), ("Pixel 8", "palette"), ("Pixel 7", "dense")}

    p8 = cfgs[("Pixel 8", "dense")]
    assert [p["run_set"] for p in p8["nights"]] == data["nights"]
    assert p8["simulated"] is True and p8["device_serial"] == "sim-1" and p8["threads"] == 1
    two = p8["nights"][1]
    assert two["median_ms"] == pytest.approx(12.0)  # median of 11 and 13; the failed run has no figure
    assert two["per_inference_mj"] == pytest.approx(420.0)
    assert (two["runs"], two["ok_runs"]) == (3, 2)
    assert p8["nights"][0]["accuracy_top1"] == pytest.approx(0.81)
    assert p8["nights"][1]["accuracy_top1"] is None
    assert p8["nights"][0]["model_bytes"] == docs[0]["model"]["bytes"]
    assert all(p["median_ms"] != 99.0 for c in data["configurations"] for p in c["nights"])

    p7 = cfgs[("Pixel 7", "dense")]
    assert p7["simulated"] is False and [p["simulated"] for p in p7["nights"]] == [False, False]
    assert [p["median_ms"] for p in p7["nights"]] == [30.0, 32.0]
    assert [p["per_inference_mj"] for p in p7["nights"]] == [900.0, None]
    assert [p["run_set"] for p in cfgs[("Pixel 8", "palette")]["nights"]] == ["2026-11-20"]


def test_filters_and_night_limit(result_doc):
    make = result_doc
    docs = history(make)
    latest = trends(docs, TrendFilter(limit_nights=2))
    assert latest["nights"] == ["2026-11-21", "2026-11-22"]
    assert ("Pixel 8", "palette") not in by_config(latest)
    real = trends(docs, TrendFilter(device="R5CT"))
    assert list(by_config(real)) == [("Pixel 7", "dense")]
    assert real["nights"] == ["2026-11-20", "2026-11-21"]
    assert trends(docs, TrendFilter(threads=4)) == {"nights": [], "configurations": []}
    assert list(by_config(trends(docs, TrendFilter(mode="palette")))) == [("Pixel 8", "palette")]
    # threads split configurations
    more = docs + [night_doc(make, "n3-p8-dense-4t", "2026-11-22", 6, threads=4, median_ms=5.0)]
    assert len([c for c in trends(more)["configurations"] if c["mode"] == "dense"]) == 3
    with pytest.raises(ConfigError, match="limit_nights"):
        TrendFilter(limit_nights=0)


def test_trends_route_over_http(collector, client, result_doc):
    docs = history(result_doc)
    for d in docs:
        assert client.post("/api/v1/results", json=d).status_code == 201, d["run_id"]
    data = client.get("/api/v1/trends").json()
    assert data == trends(docs)
    assert data["nights"] == ["2026-11-20", "2026-11-21", "2026-11-22"]
    narrowed = client.get("/api/v1/trends", params={"device": "Pixel 8", "mode": "dense", "threads": 1,
                                                    "limit_nights": 2}).json()
    assert [(c["device_model"], c["mode"]) for c in narrowed["configurations"]] == [("Pixel 8", "dense")]
    assert [p["median_ms"] for p in narrowed["configurations"][0]["nights"]] == [12.0, 12.0]
    assert client.get("/api/v1/trends", params={"limit_nights": 0}).status_code == 422
    assert client.get("/api/v1/trends", params={"threads": "x"}).status_code == 422


def test_night_report_plots_its_configurations_over_earlier_nights(result_doc, tmp_path, capsys):
    from results.report import main
    from results.store import ResultStore

    docs = history(result_doc)
    docs.append(night_doc(result_doc, "n4-p8-dense", "2026-11-23", 2, median_ms=50.0))  # after the reported night
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    store = ResultStore(db)
    for d in docs:
        store.add(d)
    store.close()
    out = tmp_path / "night.html"
    assert main(["--db", db, "--run-set", "2026-11-21", "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert "4 runs" in capsys.readouterr().out
    assert "n2-p8-dense-a" in text and "n1-p8-dense" not in text  # the run tables hold this night only
    assert "Trends over nights (2 nights)" in text
    assert "id='plot-trend-latency'" in text and "id='plot-trend-energy'" in text
    trend_rows = re.findall(r"<tr class='trend-row'><td>([^<]+)</td><td>([^<]+)</td>", text)
    # Pixel 8 dense and Pixel 7 dense ran that night, each over 2 nights; palette did not run that night
    assert len(trend_rows) == 4
    assert all("palette" not in label for label, _ in trend_rows)
    assert {night for _, night in trend_rows} == {"2026-11-20", "2026-11-21"}  # not the later night
    first = tmp_path / "first.html"
    assert main(["--db", db, "--run-set", "2026-11-20", "--out", str(first)]) == 0
    assert "Trends over nights" not in first.read_text(encoding="utf-8")  # one night: nothing to trend


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install -y chromium)")
def test_dashboard_trends_section_renders_two_nights(collector, client, result_doc, tmp_path, dump_dom):
    make = result_doc
    docs = [
        night_doc(make, "b1-p8", "2026-11-21", 2, median_ms=10.0, mj=400.0),
        night_doc(make, "b2-p8-a", "2026-11-22", 2, median_ms=11.0, mj=410.0),
        night_doc(make, "b2-p8-b", "2026-11-22", 3, median_ms=15.0, mj=450.0),
        night_doc(make, "b1-p7", "2026-11-21", 4, device="Pixel 7", serial="R5CT", simulated=False, median_ms=30.0,
                  mj=900.0),
        night_doc(make, "b2-p7", "2026-11-22", 4, device="Pixel 7", serial="R5CT", simulated=False, median_ms=31.0,
                  mj=910.0),
    ]
    for d in docs:
        assert client.post("/api/v1/results", json=d).status_code == 201
    dom = dump_dom(collector.url + "/", tmp_path / "profile")
    assert re.search(r'id="trends-state" data-state="loaded"', dom), "the trends script did not finish"
    assert "2 configurations over 2 nights" in dom
    rows = {m.group(1): m.group(0) for m in re.finditer(r'<tr data-config="([^"]+)".*?</tr>', dom, re.S)}
    assert len(rows) == 2
    p8 = next(v for k, v in rows.items() if k.startswith("Pixel 8|"))
    p7 = next(v for k, v in rows.items() if k.startswith("Pixel 7|"))
    for row in (p8, p7):
        assert len(re.findall(r'<svg [^>]*class="trend-chart"', row)) == 2  # latency and energy
    lat_points = re.findall(r'<circle [^>]*data-night="([^"]+)" data-value="([^"]+)"', p8)
    assert ("2026-11-22", "13") in lat_points  # median of the night's two runs (11, 15)
    assert len(lat_points) == 4  # 2 nights x (latency + energy)
    assert 'class="sim"' in p8 and 'class="sim"' not in p7
    narrowed = dump_dom(collector.url + "/?device=R5CT", tmp_path / "profile-narrow")
    assert "1 configurations over 2 nights" in narrowed
