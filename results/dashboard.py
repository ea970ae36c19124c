"""The collector's dashboard: one static HTML page whose inline script reads ``/api/v1/runs``.

No CDN and no build step: the page works on a lab network without internet. Filters live in
the URL query (``/?mode=palette&device=Pixel%208``), so a filtered view can be bookmarked and
the browser test can open one. A "Trends" section reads ``/api/v1/trends`` and draws, per
configuration, median latency and energy over nights as small inline SVG line charts. Every figure names device, runtime, threads, format and export
mode, and carries "simulated" when it comes from a simulated phone.
"""

DASHBOARD_HTML = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>vit-palette runs</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; }
form { display: flex; flex-wrap: wrap; gap: 0.5em 1em; align-items: end; margin: 1em 0; }
label { display: flex; flex-direction: column; font-size: 0.8em; color: #555; }
input, select { font-size: 1em; padding: 2px 4px; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: left; white-space: nowrap; }
th { background: #f4f4f4; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.sim { background: #fff3cd; color: #7a5a00; border-radius: 3px; padding: 0 4px; font-size: 0.8em; margin-left: 4px; }
.status-ok { color: #176f2c; } .status-bad { color: #a11; }
.plots { display: flex; flex-wrap: wrap; gap: 2em; margin: 1em 0; }
.plot h2 { font-size: 1em; margin: 0.3em 0; }
#state[data-state=error] { color: #a11; }
.muted { color: #777; font-size: 0.85em; }
#trends td { vertical-align: middle; }
#trends-state[data-state=error] { color: #a11; }
</style>
</head>
<body>
<h1>vit-palette benchmark runs</h1>
<div class="muted">Latency and energy per inference on each device, by export mode. Figures from a simulated
phone (host CPU, modelled battery) are marked <span class="sim">simulated</span>.</div>
<form id="filters" method="get" action="">
  <label>device<input name="device" placeholder="model or serial"></label>
  <label>model<input name="model"></label>
  <label>format<select name="format"><option value="">any</option><option>onnx</option><option>tflite</option></select></label>
  <label>mode<input name="mode" placeholder="dense, palette, ..."></label>
  <label>status<select name="status"><option value="">any</option><option>ok</option><option>invalid_job</option>
    <option>load_failed</option><option>golden_mismatch</option><option>thermal_abort</option><option>crashed</option>
    <option>timeout</option><option>cancelled</option></select></label>
  <label>simulated<select name="simulated"><option value="">any</option><option value="true">simulated</option>
    <option value="false">real</option></select></label>
  <label>run set<input name="run_set"></label>
  <label>since<input name="since" type="date"></label>
  <label>until<input name="until" type="date"></label>
  <button type="submit">filter</button> <a href="?">clear</a>
</form>
<div id="state" data-state="loading">loading runs...</div>
<div class="plots">
  <div class="plot"><h2>Median latency per inference (ms), by export mode</h2><div id="plot-latency"></div></div>
  <div class="plot"><h2>Energy per inference (mJ), by export mode</h2><div id="plot-energy"></div></div>
</div>
<table id="runs">
<thead><tr><th>run id</th><th>started (UTC)</th><th>status</th><th>device</th><th>model</th><th>format</th><th>mode</th>
<th>runtime</th><th>threads</th><th>delegate</th><th>median ms</th><th>p90 ms</th><th>mJ / inference</th><th>energy method</th><th>run set</th></tr></thead>
<tbody id="runs-body"></tbody>
</table>
<h2 id="trends-title">Trends over nights</h2>
<div class="muted">One row per configuration (device, model, format, export mode, threads); each point is one
night (run set), the median over that night's ok runs. Runs without a run set are not shown here.</div>
<div id="trends-state" data-state="loading">loading trends...</div>
<table id="trends">
<thead><tr><th>device</th><th>model</th><th>format</th><th>mode</th><th>threads</th><th>nights</th>
<th>latest night</th><th>median ms</th><th>mJ / inference</th><th>accuracy top-1</th><th>model bytes</th>
<th>median latency (ms) over nights</th><th>energy per inference (mJ) over nights</th></tr></thead>
<tbody id="trends-body"></tbody>
</table>
<script>
"use strict";
const FILTERS = ["device", "model", "format", "mode", "status", "simulated", "run_set", "since", "until"];
const params = new URLSearchParams(window.location.search);
const form = document.getElementById("filters");
for (const name of FILTERS) { if (params.get(name)) form.elements[name].value = params.get(name); }

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}
function fmt(x, digits) { return (x === null || x === undefined) ? "" : Number(x).toFixed(digits); }
function simBadge() { return el("span", {"class": "sim"}, "simulated"); }

function seriesName(r) {
  return r.device_model + (r.simulated ? " (simulated)" : "") + " · " + (r.runtime_name || "?") + " "
    + (r.runtime_version || "") + " · " + (r.threads || "?") + " thr · " + (r.format || "?");
}

function renderTable(runs) {
  const body = document.getElementById("runs-body");
  body.replaceChildren();
  for (const r of runs) {
    const tr = el("tr", {"data-run-id": r.run_id, "data-simulated": String(r.simulated)});
    tr.append(el("td", {}, r.run_id), el("td", {}, r.started_at));
    tr.append(el("td", {"class": r.status === "ok" ? "status-ok" : "status-bad"}, r.status));
    const dev = el("td", {}, r.device_model + (r.device_serial ? " [" + r.device_serial + "]" : ""));
    if (r.simulated) dev.append(simBadge());
    tr.append(dev, el("td", {}, r.model_name), el("td", {}, r.format), el("td", {}, r.mode));
    tr.append(el("td", {}, (r.runtime_name || "") + " " + (r.runtime_version || "")), el("td", {"class": "num"}, r.threads));
    tr.append(el("td", {}, r.delegate));
    for (const [v, d] of [[r.median_ms, 2], [r.p90_ms, 2], [r.per_inference_mj, 2]]) {
      const td = el("td", {"class": "num"}, fmt(v, d));
      if (r.simulated && v !== null && v !== undefined) td.append(simBadge());
      tr.append(td);
    }
    tr.append(el("td", {}, r.energy_method), el("td", {}, r.run_set));
    body.append(tr);
  }
}

const SVGNS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const node = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = String(text);
  return node;
}
const COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

// grouped bars: one group per export mode, one bar per series (device, runtime, threads, format)
function renderPlot(targetId, runs, field, unit) {
  const target = document.getElementById(targetId);
  target.replaceChildren();
  const ok = runs.filter(r => r.status === "ok" && r[field] !== null && r[field] !== undefined);
  if (ok.length === 0) { target.append(el("div", {"class": "muted"}, "no ok runs with this figure")); return; }
  const modes = [...new Set(ok.map(r => r.mode))].sort();
  const series = [...new Set(ok.map(seriesName))].sort();
  const agg = new Map();  // mode|series -> values
  for (const r of ok) {
    const key = r.mode + "|" + seriesName(r);
    if (!agg.has(key)) agg.set(key, []);
    agg.get(key).push(Number(r[field]));
  }
  const median = a => { const s = [...a].sort((x, y) => x - y); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
  let maxV = 0;
  for (const v of agg.values()) maxV = Math.max(maxV, median(v));
  const barW = 26, gap = 18, left = 60, top = 10, plotH = 200;
  const groupW = series.length * barW + gap;
  const longest = Math.max(...series.map(s => s.length));
  const width = Math.max(left + modes.length * groupW + 20, left + 20 + longest * 6.5);
  const height = top + plotH + 40 + series.length * 16;
  const root = svg("svg", {width: width, height: height, "data-field": field, role: "img"});
  root.append(svg("line", {x1: left, y1: top, x2: left, y2: top + plotH, stroke: "#888"}));
  root.append(svg("line", {x1: left, y1: top + plotH, x2: width - 10, y2: top + plotH, stroke: "#888"}));
  for (let t = 0; t <= 4; t++) {
    const v = maxV * t / 4, y = top + plotH - plotH * t / 4;
    root.append(svg("text", {x: left - 4, y: y + 4, "text-anchor": "end", "font-size": 10}, v.toFixed(1)));
  }
  root.append(svg("text", {x: 4, y: top + 10, "font-size": 10}, unit));
  modes.forEach((mode, mi) => {
    const gx = left + mi * groupW + gap / 2;
    series.forEach((s, si) => {
      const vals = agg.get(mode + "|" + s);
      if (!vals) return;
      const v = median(vals), h = maxV > 0 ? plotH * v / maxV : 0;
      const rect = svg("rect", {x: gx + si * barW, y: top + plotH - h, width: barW - 4, height: h,
        fill: COLORS[si % COLORS.length], "data-mode": mode, "data-series": s, "data-value": v});
      rect.append(svg("title", {}, s + " · " + mode + ": " + v.toFixed(2) + " " + unit + " (median of " + vals.length + " runs)"));
      root.append(rect);
      root.append(svg("text", {x: gx + si * barW + (barW - 4) / 2, y: top + plotH - h - 3, "text-anchor": "middle", "font-size": 9},
        v.toFixed(1) + (s.includes("(simulated)") ? "*" : "")));
    });
    root.append(svg("text", {x: gx + (series.length * barW) / 2, y: top + plotH + 14, "text-anchor": "middle", "font-size": 11}, mode));
  });
  series.forEach((s, si) => {
    const y = top + plotH + 30 + si * 16;
    root.append(svg("rect", {x: left, y: y - 9, width: 10, height: 10, fill: COLORS[si % COLORS.length]}));
    root.append(svg("text", {x: left + 14, y: y, "font-size": 11, "class": "legend"}, s));
  });
  target.append(root);
  if (ok.some(r => r.simulated)) target.append(el("div", {"class": "muted"}, "* simulated: host CPU and a modelled battery, not a phone measurement"));
}

// a small line chart of one figure over nights; the x axis is the shared list of nights
function renderTrendChart(cfg, nights, field, unit) {
  const pts = cfg.nights.filter(p => p[field] !== null && p[field] !== undefined);
  if (pts.length === 0) return el("span", {"class": "muted"}, "not measured");
  const W = 220, H = 70, L = 40, R = 8, T = 8, B = 16;
  const xs = n => nights.length > 1 ? L + (W - L - R) * nights.indexOf(n) / (nights.length - 1) : L + (W - L - R) / 2;
  const vals = pts.map(p => Number(p[field]));
  let lo = Math.min(...vals), hi = Math.max(...vals);
  if (hi === lo) { lo = lo * 0.9; hi = hi * 1.1 || 1; }
  const ys = v => T + (H - T - B) * (1 - (v - lo) / (hi - lo));
  const root = svg("svg", {width: W, height: H, "class": "trend-chart", "data-field": field, role: "img"});
  root.append(svg("line", {x1: L, y1: T, x2: L, y2: H - B, stroke: "#bbb"}));
  root.append(svg("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#bbb"}));
  root.append(svg("text", {x: L - 3, y: T + 8, "text-anchor": "end", "font-size": 9}, hi.toPrecision(3)));
  root.append(svg("text", {x: L - 3, y: H - B, "text-anchor": "end", "font-size": 9}, lo.toPrecision(3)));
  // the x axis spans every night shown, so a configuration that skipped nights has gaps where they were
  root.append(svg("text", {x: L, y: H - 3, "font-size": 9}, nights[0]));
  if (nights.length > 1) root.append(svg("text", {x: W - R, y: H - 3, "text-anchor": "end", "font-size": 9}, nights[nights.length - 1]));
  const color = field === "median_ms" ? "#4e79a7" : "#f28e2b";
  root.append(svg("polyline", {points: pts.map(p => xs(p.run_set) + "," + ys(Number(p[field]))).join(" "),
    fill: "none", stroke: color, "stroke-width": 1.5}));
  for (const p of pts) {
    const dot = svg("circle", {cx: xs(p.run_set), cy: ys(Number(p[field])), r: 3, fill: color,
      "data-night": p.run_set, "data-value": p[field], "data-simulated": String(p.simulated)});
    dot.append(svg("title", {}, p.run_set + ": " + Number(p[field]).toFixed(2) + " " + unit + " (median of "
      + p.ok_runs + " ok of " + p.runs + " runs)" + (p.simulated ? " simulated" : "")));
    root.append(dot);
  }
  const wrap = el("span", {});
  wrap.append(root);
  if (cfg.simulated) wrap.append(simBadge());
  return wrap;
}

function renderTrends(data) {
  const body = document.getElementById("trends-body");
  body.replaceChildren();
  for (const c of data.configurations) {
    const last = c.nights[c.nights.length - 1];
    const key = [c.device_model, c.device_serial, c.model, c.format, c.mode, c.threads].join("|");
    const tr = el("tr", {"data-config": key, "data-simulated": String(c.simulated), "data-nights": c.nights.length});
    const dev = el("td", {}, c.device_model + (c.device_serial ? " [" + c.device_serial + "]" : ""));
    if (c.simulated) dev.append(simBadge());
    tr.append(dev, el("td", {}, c.model), el("td", {}, c.format), el("td", {}, c.mode), el("td", {"class": "num"}, c.threads));
    tr.append(el("td", {"class": "num"}, c.nights.length), el("td", {}, last.run_set));
    for (const [v, d] of [[last.median_ms, 2], [last.per_inference_mj, 2]]) {
      const td = el("td", {"class": "num"}, fmt(v, d));
      if (last.simulated && v !== null && v !== undefined) td.append(simBadge());
      tr.append(td);
    }
    tr.append(el("td", {"class": "num"}, fmt(last.accuracy_top1, 4)), el("td", {"class": "num"}, last.model_bytes));
    const lat = el("td", {}), en = el("td", {});
    lat.append(renderTrendChart(c, data.nights, "median_ms", "ms"));
    en.append(renderTrendChart(c, data.nights, "per_inference_mj", "mJ"));
    tr.append(lat, en);
    body.append(tr);
  }
}

async function loadTrends() {
  const state = document.getElementById("trends-state");
  const query = new URLSearchParams();
  for (const name of ["device", "model", "format", "mode", "threads", "limit_nights"]) {
    if (params.get(name)) query.set(name, params.get(name));
  }
  try {
    const resp = await fetch("api/v1/trends?" + query.toString(), {headers: {"Accept": "application/json"}});
    const data = await resp.json();
    if (!resp.ok) throw new Error(data.detail || ("HTTP " + resp.status));
    renderTrends(data);
    state.textContent = data.configurations.length + " configurations over " + data.nights.length + " nights";
    state.setAttribute("data-state", "loaded");
  } catch (err) {
    state.textContent = "could not load trends: " + err.message;
    state.setAttribute("data-state", "error");
  }
}

async function load() {
  const state = document.getElementById("state");
  const query = new URLSearchParams();
  for (const name of FILTERS) { if (params.get(name)) query.set(name, params.get(name)); }
  query.set("limit", params.get("limit") || "1000");
  try {
    const resp = await fetch("api/v1/runs?" + query.toString(), {headers: {"Accept": "application/json"}});
    const data = await resp.json();
    if (!resp.ok) throw new Error(data.detail || ("HTTP " + resp.status));
    renderTable(data.runs);
    renderPlot("plot-latency", data.runs, "median_ms", "ms");
    renderPlot("plot-energy", data.runs, "per_inference_mj", "mJ");
    state.textContent = data.runs.length + " of " + data.total + " runs shown";
    state.setAttribute("data-total", data.total);
    state.setAttribute("data-state", "loaded");
  } catch (err) {
    state.textContent = "could not load runs: " + err.message;
    state.setAttribute("data-state", "error");
  }
}
load();
loadTrends();
</script>
</body>
</html>
"""
