"""The dashboard in a real headless Chromium: the table shows stored runs, URL filters narrow it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install -y chromium)"),
]


def rows(dom: str) -> list[str]:
    return re.findall(r'<tr data-run-id="([^"]+)"', dom)


def test_dashboard_table_plots_and_filters(collector, client, result_doc, tmp_path, dump_dom):
    docs = [
        result_doc("dash-dense-p8", **{"model.mode": "dense"}),
        result_doc("dash-palette-p8", **{"model.mode": "palette", "latency.median_ms": 9.5}),
        result_doc("dash-palette-p7", **{"model.mode": "palette", "device.model": "Pixel 7",
                                         "device.simulated": False, "energy.method": "battery"}),
        result_doc("dash-failed", **{"status": "load_failed", "latency": None, "energy": None,
                                     "error": "model file truncated"}),
    ]
    for d in docs:
        assert client.post("/api/v1/results", json=d).status_code == 201

    dom = dump_dom(collector.url + "/", tmp_path / "profile-all")
    assert 'data-state="loaded"' in dom, "the page script did not finish loading runs"
    assert sorted(rows(dom)) == sorted(d["run_id"] for d in docs)
    assert "4 of 4 runs shown" in dom
    # plots: one bar per (mode, series) of ok runs, named by device/runtime/threads/format, simulated marked
    bars = re.findall(r'<rect [^>]*data-mode="([^"]+)" data-series="([^"]+)"', dom)
    assert len(bars) == 6  # 3 ok runs x (latency + energy)
    series = {s for _, s in bars}
    assert any("Pixel 8 (simulated)" in s and "onnxruntime" in s and "1 thr" in s and "onnx" in s for s in series)
    assert any(s.startswith("Pixel 7 ·") for s in series), "a real device is not labelled simulated"
    p7_row = re.search(r'<tr data-run-id="dash-palette-p7".*?</tr>', dom, re.S).group(0)
    assert "simulated" not in p7_row.replace('data-simulated="false"', "")
    p8_row = re.search(r'<tr data-run-id="dash-palette-p8".*?</tr>', dom, re.S).group(0)
    assert p8_row.count('class="sim"') >= 3  # device and every figure carry the label

    narrowed = dump_dom(collector.url + "/?mode=palette&device=Pixel%208", tmp_path / "profile-filtered")
    assert rows(narrowed) == ["dash-palette-p8"]
    assert "1 of 1 runs shown" in narrowed
    real_only = dump_dom(collector.url + "/?simulated=false", tmp_path / "profile-real")
    assert rows(real_only) == ["dash-palette-p7"]


def test_dashboard_reports_an_unreachable_store(collector, client, result_doc, tmp_path, dump_dom):
    assert client.post("/api/v1/results", json=result_doc("x1")).status_code == 201
    moved = collector.db_path.with_suffix(".away")
    shutil.move(collector.db_path, moved)
    try:
        dom = dump_dom(collector.url + "/", tmp_path / "profile")
    finally:
        shutil.move(moved, collector.db_path)
    assert 'data-state="error"' in dom and "is gone" in dom
