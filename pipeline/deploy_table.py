"""The table `python -m pipeline.deploy` prints: one row per format x mode, with ratios to dense.

Every figure is taken from the stored result documents (and the bundles' manifests for file
sizes and host accuracy), so the table always matches the store. The caption names the device,
runtime, threads and whether the device was simulated.
"""

from __future__ import annotations

from typing import Any

from results.figures import energy_per_inference


def table_rows(results: list[dict[str, Any]], bundles: list[Any]) -> list[dict[str, Any]]:
    by_key = {(b.format, b.mode): b for b in bundles}
    rows = []
    for doc in results:
        model = doc.get("model") or {}
        key = (model.get("format"), model.get("mode"))
        b = by_key.get(key)
        lat = doc.get("latency") or {}
        mj, method = energy_per_inference(doc)
        rows.append({
            "run_id": doc.get("run_id"),
            "format": key[0], "mode": key[1], "status": doc.get("status"),
            "bytes": model.get("bytes"),
            "accuracy": getattr(b, "accuracy", None) if b else None,
            "top1_agreement": getattr(b, "top1_agreement", None) if b else None,
            "p50_ms": lat.get("median_ms"), "p90_ms": lat.get("p90_ms"),
            "energy_mj": mj, "energy_method": method,
            "simulated": bool((doc.get("device") or {}).get("simulated")),
        })
    dense = {r["format"]: r for r in rows if r["mode"] == "dense" and r["status"] == "ok"}
    for r in rows:
        d = dense.get(r["format"])
        for col in ("bytes", "p50_ms", "energy_mj"):
            ratio = None
            if d and r.get(col) is not None and d.get(col):
                ratio = r[col] / d[col]
            r[f"{col}_vs_dense"] = ratio
    return rows


def _fmt(value: Any, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def deploy_table(results: list[dict[str, Any]], bundles: list[Any], stream=None) -> str:
    from rich.console import Console
    from rich.table import Table

    rows = table_rows(results, bundles)
    first = results[0] if results else {}
    dev = first.get("device") or {}
    rt = first.get("runtime") or {}
    sim = " (SIMULATED: host CPU, simulated energy)" if dev.get("simulated") else ""
    caption = (f"device {dev.get('manufacturer', '?')} {dev.get('model', '?')}{sim}; "
               f"threads {rt.get('threads', '?')}; delegate {rt.get('delegate', '?')}")
    table = Table(title="deploy results", caption=caption)
    for col in ("format", "mode", "status", "file bytes", "x dense", "accuracy", "top-1 agree",
                "p50 ms", "p90 ms", "x dense", "mJ/inf", "method", "x dense"):
        table.add_column(col, justify="left" if col in ("format", "mode", "status", "method") else "right")
    for r in rows:
        method = r["energy_method"] + (" (sim)" if r["simulated"] and r["energy_method"] != "simulated" else "")
        table.add_row(
            str(r["format"]), str(r["mode"]), str(r["status"]),
            _fmt(r["bytes"], ","), _fmt(r["bytes_vs_dense"], ".2f", "x"),
            _fmt(r["accuracy"], ".4f"), _fmt(r["top1_agreement"], ".4f"),
            _fmt(r["p50_ms"], ".3f"), _fmt(r["p90_ms"], ".3f"), _fmt(r["p50_ms_vs_dense"], ".2f", "x"),
            _fmt(r["energy_mj"], ".4f"), method, _fmt(r["energy_mj_vs_dense"], ".2f", "x"),
        )
    console = Console(file=stream, width=160) if stream is not None else Console(width=160)
    with console.capture() as cap:
        console.print(table)
    text = cap.get()
    console.print(table) if stream is None else stream.write(text)
    return text
