"""The HTML report: tables, embedded plots, ratios against dense, simulated labels, the CLI."""

from __future__ import annotations

import base64
import re

import pytest

from pipeline.errors import NothingToDoError
from results.report import main, render_report, summarise
from results.store import ResultStore


@pytest.fixture
def docs(result_doc):
    return [
        result_doc("r-dense", **{"model.mode": "dense", "model.bytes": 400_000, "energy.per_inference_mj": 10.0}),
        result_doc("r-pal", **{"model.mode": "palette", "latency.median_ms": 9.5, "model.bytes": 100_000,
                               "energy.per_inference_mj": 8.0}),
        result_doc("r-real", **{"device.model": "Pixel 7", "device.simulated": False, "energy.method": "battery",
                                "model.format": "tflite", "runtime.name": "litert", "runtime.threads": 4}),
        result_doc("r-bad", **{"status": "crashed", "latency": None, "energy": None,
                               "error": "segfault in <script>alert(1)</script>"}),
    ]


def test_summary_compares_each_mode_with_dense_on_the_same_setup(docs):
    rows = summarise(docs)
    by_mode = {(r["key"][0], r["mode"]): r for r in rows}
    assert set(by_mode) == {("Pixel 8", "dense"), ("Pixel 8", "palette"), ("Pixel 7", "dense")}
    pal = by_mode[("Pixel 8", "palette")]
    assert pal["speedup_vs_dense"] == pytest.approx(12.35 / 9.5)
    assert pal["energy_vs_dense"] == pytest.approx(0.8)
    assert pal["size_vs_dense"] == pytest.approx(0.25)
    assert by_mode[("Pixel 7", "dense")]["speedup_vs_dense"] == pytest.approx(1.0)
    assert all(r["key"][1] is (r["key"][0] == "Pixel 8") for r in rows)  # simulated flag kept per series


def test_report_is_self_contained_with_plots_and_tables(docs, tmp_path):
    out = render_report(docs, tmp_path / "report.html", title="nightly test")
    text = out.read_text()
    assert "<title>nightly test</title>" in text
    images = re.findall(r"<img id='(plot-[a-z]+)' alt='[^']*' src='data:image/png;base64,([A-Za-z0-9+/=]+)'", text)
    assert {i for i, _ in images} == {"plot-latency", "plot-energy", "plot-distribution"}
    for _, data in images:
        assert base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n")
    assert "http://" not in text and "https://" not in text  # nothing fetched from elsewhere
    assert len(re.findall(r"<tr class='summary-row'>", text)) == 3
    assert "1.30x" in text and "0.80x" in text and "0.25x" in text
    assert len(re.findall(r"<tr data-run-id=", text)) == 4
    # escaping, and the failure is listed with its text
    assert "<script>alert" not in text and "segfault in &lt;script&gt;" in text
    real_row = re.search(r"<tr data-run-id='r-real'>.*?</tr>", text).group(0)
    sim_row = re.search(r"<tr data-run-id='r-pal'>.*?</tr>", text).group(0)
    assert "simulated" not in real_row and sim_row.count("class=\"sim\"") + sim_row.count("class='sim'") >= 3
    assert not list(tmp_path.glob(".report.html.*")), "no temp file left behind"


def test_report_of_nothing_is_a_user_error(tmp_path):
    with pytest.raises(NothingToDoError):
        render_report([], tmp_path / "r.html")


def test_cli_reads_the_store_and_filters_by_run_set(docs, tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    store = ResultStore(db)
    for d in docs:
        d["run_set"] = "night-1" if d["run_id"] != "r-real" else "night-2"
        store.add(d)
    store.close()
    assert main(["--db", db, "--out", str(tmp_path / "n1.html"), "--run-set", "night-1"]) == 0
    text = (tmp_path / "n1.html").read_text()
    assert "r-pal" in text and "r-real" not in text
    assert "3 runs" in capsys.readouterr().out
    with pytest.raises(NothingToDoError, match="no stored runs"):
        main(["--db", db, "--out", str(tmp_path / "n3.html"), "--run-set", "night-3"])
    with pytest.raises(NothingToDoError, match="does not exist"):
        main(["--db", f"sqlite:///{tmp_path / 'nope.db'}", "--out", str(tmp_path / "x.html")])
