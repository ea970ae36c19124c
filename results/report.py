"""A self-contained HTML report for a set of runs: tables and matplotlib plots (base64 PNG).

    python -m results.report --db sqlite:///runs.db --out report.html [--run-set nightly-1]

With ``--run-set NIGHT`` the report also plots, for the configurations of that night, median
latency and energy over the nights up to it (when there is more than one).

The report answers the project's question per device, runtime, threads and format: what does
each export mode cost against ``dense`` (latency, energy per inference, file size)? Every figure
names its device, runtime, threads and export mode, and figures from a simulated phone carry
"simulated". The deploy command reuses :func:`render_report` on the results it just collected.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import os
import statistics
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.errors import NothingToDoError, OutputError
from results.figures import energy_per_inference

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1400px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: left; white-space: nowrap; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.sim { background: #fff3cd; color: #7a5a00; border-radius: 3px; padding: 0 4px; font-size: 0.8em; margin-left: 4px; }
.muted { color: #666; font-size: 0.9em; } img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
td.err { white-space: normal; max-width: 60em; }
"""


def _esc(value: Any) -> str:
    return "" if value is None else html.escape(str(value))


def _num(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _sim(flag: bool) -> str:
    return '<span class="sim">simulated</span>' if flag else ""


def _key(doc: dict[str, Any]) -> tuple:
    """What a figure belongs to: device (+simulated), runtime, threads, delegate, format, model."""
    d, rt, m = doc["device"], doc.get("runtime") or {}, doc.get("model") or {}
    return (
        d.get("model"), bool(d.get("simulated")), f"{rt.get('name', '?')} {rt.get('version') or ''}".strip(),
        rt.get("threads"), rt.get("delegate"), m.get("format"), m.get("name"),
    )


def _series_label(key: tuple) -> str:
    device, simulated, runtime, threads, delegate, fmt, _model = key
    return f"{device}{' (simulated)' if simulated else ''} · {runtime} · {threads} thr · {delegate} · {fmt}"


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (device, runtime, threads, delegate, format, model, mode) over the ok runs.

    Figures are medians over runs; ``speedup_vs_dense`` and ``energy_vs_dense`` compare with the
    dense row of the same device, runtime, threads, delegate, format and model (None without one).
    """
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for doc in results:
        if doc.get("status") == "ok" and doc.get("latency"):
            groups[(*_key(doc), doc["model"]["mode"])].append(doc)
    rows = []
    for gkey, docs in groups.items():
        energies = [mj for mj, _ in map(energy_per_inference, docs) if mj is not None]
        methods = sorted({(d.get("energy") or {}).get("method") or "none" for d in docs})
        rows.append({
            "key": gkey[:-1], "mode": gkey[-1], "runs": len(docs),
            "median_ms": _median([d["latency"]["median_ms"] for d in docs]),
            "p90_ms": _median([d["latency"]["p90_ms"] for d in docs]),
            "std_ms": _median([d["latency"]["std_ms"] for d in docs]),
            "per_inference_mj": _median(energies),
            "energy_method": "/".join(methods),
            "bytes": _median([d["model"]["bytes"] for d in docs if d["model"].get("bytes") is not None]),
            "samples_ms": [s for d in docs for s in d["latency"]["samples_ms"]],
        })
    dense = {r["key"]: r for r in rows if r["mode"] == "dense"}
    for r in rows:
        base = dense.get(r["key"])
        r["speedup_vs_dense"] = (base["median_ms"] / r["median_ms"]) if base and r["median_ms"] else None
        r["energy_vs_dense"] = (r["per_inference_mj"] / base["per_inference_mj"]
                                if base and r["per_inference_mj"] and base["per_inference_mj"] else None)
        r["size_vs_dense"] = (r["bytes"] / base["bytes"]) if base and r["bytes"] and base["bytes"] else None
    rows.sort(key=lambda r: (tuple(str(k) for k in r["key"]), r["mode"] != "dense", r["mode"]))
    return rows


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _bar_plot(rows: list[dict], field: str, ylabel: str, title: str) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r[field] is not None]
    if not rows:
        return None
    modes = sorted({r["mode"] for r in rows}, key=lambda m: (m != "dense", m))
    series = sorted({r["key"] for r in rows}, key=lambda k: tuple(str(x) for x in k))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(modes) * max(1, len(series)) ** 0.5), 4.2))
    for si, skey in enumerate(series):
        xs, ys = [], []
        for mi, mode in enumerate(modes):
            match = [r for r in rows if r["key"] == skey and r["mode"] == mode]
            if match:
                xs.append(mi + (si - (len(series) - 1) / 2) * width)
                ys.append(match[0][field])
        label = _series_label(skey) + (f" · {skey[6]}" if len({k[6] for k in series}) > 1 else "")
        bars = ax.bar(xs, ys, width=width * 0.95, label=label, hatch="//" if skey[1] else None)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(range(len(modes)), modes)
    ax.set_xlabel("export mode")
    ax.set_ylabel(ylabel)
    ax.set_title(title + (" (hatched = simulated)" if any(k[1] for k in series) else ""), fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=1, frameon=False)
    data = _png(fig)
    plt.close(fig)
    return data


def _box_plot(rows: list[dict]) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["samples_ms"]]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.35 * len(rows) + 1)))
    labels = [f"{_series_label(r['key'])} · {r['mode']}" for r in rows]
    ax.boxplot([r["samples_ms"] for r in rows], orientation="horizontal", showfliers=True)
    ax.set_yticks(range(1, len(rows) + 1), labels, fontsize=7)
    ax.set_xlabel("latency per inference (ms), every measured run")
    ax.set_title("Latency distribution", fontsize=10)
    data = _png(fig)
    plt.close(fig)
    return data


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def _config_label(cfg: dict[str, Any]) -> str:
    return (f"{cfg['device_model']}{' (simulated)' if cfg['simulated'] else ''} · {cfg['model']} · {cfg['format']}"
            f" · {cfg['mode']} · {cfg['threads']} thr")


def _trend_plot(trend: dict[str, Any], field: str, ylabel: str, title: str) -> str | None:
    """One line per configuration over the nights (x: night, oldest first)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nights = trend["nights"]
    lines = []
    for cfg in trend["configurations"]:
        pts = [(nights.index(p["run_set"]), p[field]) for p in cfg["nights"] if p[field] is not None]
        if pts:
            lines.append((cfg, pts))
    if not lines:
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(nights) + 3), 4.2))
    for cfg, pts in lines:
        ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=_config_label(cfg),
                linestyle="--" if cfg["simulated"] else "-")
    ax.set_xticks(range(len(nights)), nights, rotation=30, ha="right", fontsize=7)
    ax.set_xlabel("night (run set)")
    ax.set_ylabel(ylabel)
    ax.set_title(title + (" (dashed = simulated)" if any(c["simulated"] for c, _ in lines) else ""), fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=1, frameon=False)
    data = _png(fig)
    plt.close(fig)
    return data


def _trend_section(trend: dict[str, Any]) -> list[str]:
    parts = [f"<h2>Trends over nights ({len(trend['nights'])} nights)</h2>",
             "<p class='muted'>The configurations of this report over the nights up to it; each point is the "
             "median over that night's ok runs.</p>"]
    for plot_id, data in (
        ("plot-trend-latency", _trend_plot(trend, "median_ms", "median latency per inference (ms)",
                                           "Median latency over nights")),
        ("plot-trend-energy", _trend_plot(trend, "per_inference_mj", "energy per inference (mJ)",
                                          "Energy per inference over nights")),
    ):
        if data:
            parts.append(f"<div><img id='{plot_id}' alt='{plot_id}' src='data:image/png;base64,{data}'></div>")
    parts.append("<table id='trends'><thead><tr><th>configuration</th><th>night</th><th>runs (ok)</th>"
                 "<th>median ms</th><th>mJ / inference</th><th>accuracy top-1</th><th>model bytes</th></tr>"
                 "</thead><tbody>")
    for cfg in trend["configurations"]:
        for p in cfg["nights"]:
            sim = _sim(p["simulated"])
            parts.append(
                f"<tr class='trend-row'><td>{_esc(_config_label(cfg))}</td><td>{_esc(p['run_set'])}</td>"
                f"<td class='num'>{p['runs']} ({p['ok_runs']})</td>"
                f"<td class='num'>{_num(p['median_ms'])}{sim if p['median_ms'] is not None else ''}</td>"
                f"<td class='num'>{_num(p['per_inference_mj'])}{sim if p['per_inference_mj'] is not None else ''}</td>"
                f"<td class='num'>{_num(p['accuracy_top1'], 4)}</td><td class='num'>{_esc(p['model_bytes'])}</td></tr>"
            )
    parts.append("</tbody></table>")
    return parts


def render_report(results: list[dict[str, Any]], out_path: str | os.PathLike, *, title: str | None = None,
                  trend: dict[str, Any] | None = None) -> Path:
    """Write the HTML report for ``results`` (result documents) to ``out_path``; returns the path.

    ``trend`` (from :func:`results.trends.trends_for_night`) adds a section over nights.
    """
    out = Path(out_path)
    if not results:
        raise NothingToDoError("no runs to report", next_step="Store some results first or widen the filter.")
    if not out.parent.is_dir():
        raise OutputError(f"report folder {out.parent} does not exist", next_step="Create it or pick another --out.")
    rows = summarise(results)
    any_sim = any(d["device"].get("simulated") for d in results)
    run_sets = sorted({d.get("run_set") for d in results if d.get("run_set")})
    title = title or "vit-palette benchmark report"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_esc(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        f"<p class='muted'>{len(results)} runs ({sum(d['status'] == 'ok' for d in results)} ok)"
        f"{' · run sets: ' + _esc(', '.join(run_sets)) if run_sets else ''} · generated "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}</p>",
    ]
    if any_sim:
        parts.append("<p class='muted'>Figures marked <span class='sim'>simulated</span> come from the simulated "
                     "phone: the model ran on the host CPU and energy comes from a modelled battery, not a "
                     "measurement on a phone.</p>")
    parts.append("<h2>Summary by device, runtime, threads, format and export mode</h2>")
    parts.append(
        "<p class='muted'>Medians over ok runs. Ratios compare with the dense export on the same device, "
        "runtime, threads, delegate, format and model: speedup &gt; 1 is faster, energy and size &lt; 1 are "
        "smaller.</p>"
    )
    parts.append(
        "<table id='summary'><thead><tr><th>device</th><th>runtime</th><th>threads</th><th>delegate</th>"
        "<th>format</th><th>model</th><th>export mode</th><th>runs</th><th>median ms</th><th>p90 ms</th>"
        "<th>std ms</th><th>mJ / inference</th><th>energy method</th><th>file bytes</th><th>speedup vs dense</th>"
        "<th>energy vs dense</th><th>size vs dense</th></tr></thead><tbody>"
    )
    for r in rows:
        device, simulated, runtime, threads, delegate, fmt, model = r["key"]
        sim = _sim(simulated)
        parts.append(
            f"<tr class='summary-row'><td>{_esc(device)}{sim}</td><td>{_esc(runtime)}</td><td class='num'>{_esc(threads)}</td>"
            f"<td>{_esc(delegate)}</td><td>{_esc(fmt)}</td><td>{_esc(model)}</td><td>{_esc(r['mode'])}</td>"
            f"<td class='num'>{r['runs']}</td><td class='num'>{_num(r['median_ms'])}{sim}</td>"
            f"<td class='num'>{_num(r['p90_ms'])}{sim}</td><td class='num'>{_num(r['std_ms'])}</td>"
            f"<td class='num'>{_num(r['per_inference_mj'])}{sim if r['per_inference_mj'] is not None else ''}</td>"
            f"<td>{_esc(r['energy_method'])}</td><td class='num'>{_esc(int(r['bytes']) if r['bytes'] else '')}</td>"
            f"<td class='num'>{_ratio(r['speedup_vs_dense'])}{sim if r['speedup_vs_dense'] else ''}</td>"
            f"<td class='num'>{_ratio(r['energy_vs_dense'])}{sim if r['energy_vs_dense'] else ''}</td>"
            f"<td class='num'>{_ratio(r['size_vs_dense'])}</td></tr>"
        )
    parts.append("</tbody></table>")
    if not rows:
        parts.append("<p class='muted'>No ok runs: nothing to plot.</p>")
    plots = [
        ("plot-latency", _bar_plot(rows, "median_ms", "median latency per inference (ms)",
                                   "Median latency by export mode")),
        ("plot-energy", _bar_plot(rows, "per_inference_mj", "energy per inference (mJ)",
                                  "Energy per inference by export mode")),
        ("plot-distribution", _box_plot(rows)),
    ]
    for plot_id, data in plots:
        if data:
            parts.append(f"<div><img id='{plot_id}' alt='{plot_id}' src='data:image/png;base64,{data}'></div>")

    if trend and len(trend["nights"]) > 1:
        parts.extend(_trend_section(trend))

    failures = [d for d in results if d["status"] != "ok"]
    if failures:
        parts.append(f"<h2>Failed runs ({len(failures)})</h2><table id='failures'><thead><tr><th>run id</th>"
                     "<th>status</th><th>device</th><th>model</th><th>format</th><th>mode</th><th>error</th></tr>"
                     "</thead><tbody>")
        for d in failures:
            m = d.get("model") or {}
            parts.append(
                f"<tr><td>{_esc(d['run_id'])}</td><td>{_esc(d['status'])}</td><td>{_esc(d['device']['model'])}"
                f"{_sim(d['device'].get('simulated'))}</td><td>{_esc(m.get('name'))}</td><td>{_esc(m.get('format'))}</td>"
                f"<td>{_esc(m.get('mode'))}</td><td class='err'>{_esc(d.get('error'))}</td></tr>"
            )
        parts.append("</tbody></table>")

    parts.append("<h2>Every run</h2><table id='runs'><thead><tr><th>run id</th><th>started (UTC)</th><th>status</th>"
                 "<th>device</th><th>runtime</th><th>threads</th><th>format</th><th>mode</th><th>model</th>"
                 "<th>median ms</th><th>p90 ms</th><th>runs</th><th>mJ / inference</th><th>thermal before/after</th>"
                 "<th>run set</th></tr></thead><tbody>")
    for d in sorted(results, key=lambda x: x["started_at"]):
        m, rt = d.get("model") or {}, d.get("runtime") or {}
        lat, en = d.get("latency") or {}, d.get("energy") or {}
        sim = _sim(d["device"].get("simulated"))
        th = d.get("thermal") or {}
        parts.append(
            f"<tr data-run-id='{_esc(d['run_id'])}'><td>{_esc(d['run_id'])}</td><td>{_esc(d['started_at'])}</td>"
            f"<td>{_esc(d['status'])}</td><td>{_esc(d['device']['model'])}{sim}</td>"
            f"<td>{_esc(rt.get('name'))} {_esc(rt.get('version'))}</td><td class='num'>{_esc(rt.get('threads'))}</td>"
            f"<td>{_esc(m.get('format'))}</td><td>{_esc(m.get('mode'))}</td><td>{_esc(m.get('name'))}</td>"
            f"<td class='num'>{_num(lat.get('median_ms'))}{sim if lat else ''}</td>"
            f"<td class='num'>{_num(lat.get('p90_ms'))}{sim if lat else ''}</td><td class='num'>{_esc(lat.get('runs'))}</td>"
            f"<td class='num'>{_num(en.get('per_inference_mj'))}{sim if en.get('per_inference_mj') is not None else ''}</td>"
            f"<td>{_esc(th.get('before'))}/{_esc(th.get('after'))}</td><td>{_esc(d.get('run_set'))}</td></tr>"
        )
    parts.append("</tbody></table></body></html>\n")
    text = "".join(parts)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from results.store import ResultStore, RunFilter

    parser = argparse.ArgumentParser(prog="python -m results.report", description=__doc__.split("\n")[0])
    parser.add_argument("--db", required=True, help="SQLAlchemy URL of the store, e.g. sqlite:///runs.db")
    parser.add_argument("--out", required=True, type=Path, help="HTML file to write")
    parser.add_argument("--run-set", default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--since", default=None)
    parser.add_argument("--until", default=None)
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    db = args.db
    if db.startswith("sqlite:///") and not Path(db.removeprefix("sqlite:///")).exists():
        raise NothingToDoError(f"database {db.removeprefix('sqlite:///')} does not exist",
                               next_step="Point --db at the collector's database.")
    store = ResultStore(db, create=False)
    try:
        docs = store.documents(RunFilter(run_set=args.run_set, device=args.device, model=args.model,
                                         since=args.since, until=args.until))
        trend = None
        if args.run_set and docs:
            from results.trends import trends_for_night

            history = [d for d in store.documents(RunFilter(device=args.device, model=args.model))
                       if d.get("run_set")]
            trend = trends_for_night(docs, history, args.run_set)
    finally:
        store.close()
    if not docs:
        raise NothingToDoError(f"no stored runs match the filter in {db}",
                               next_step="Check --run-set/--device/--since, or list runs with GET /api/v1/runs.")
    path = render_report(docs, args.out, title=args.title, trend=trend)
    print(f"report: {path} ({len(docs)} runs)")
    return 0


if __name__ == "__main__":
    from pipeline.cli_support import run_cli

    raise SystemExit(run_cli(main))
