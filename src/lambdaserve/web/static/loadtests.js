// Monitoring page, "Load tests" card: GET /_/api/models/{model}/loadtests when the page's
// model changes (the "ls:route" event monitoring.js sends). The latest run's latency over
// time (p50 and p99 each second, requests per second on the right axis) in a uPlot chart,
// drawn as the page's other charts are, and a table of the recent runs.
"use strict";

(() => {
  const { api, el, clear, when, showError } = LS;
  const $ = (id) => document.getElementById(id);
  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  const fixed = (v, digits = 2) => (v === null || v === undefined ? "–" : v.toFixed(digits));
  let chart = null;
  const REFRESH_MS = 15000; // a run recorded while the page is open shows within this
  let chosen = null; // the page's model

  function load(run) {
    return run.mode === "open" ? `${run.rate} req/s due` : `${run.connections} connections`;
  }

  function errors(run) {
    const statuses = Object.entries(run.statuses || {});
    const failed = statuses.filter(([code]) => Number(code) >= 400 && code !== "429").reduce((sum, [, n]) => sum + n, 0);
    return failed + Object.values(run.failures || {}).reduce((sum, n) => sum + n, 0);
  }

  function draw(timeline) {
    const data = [timeline.map((p) => p.t), timeline.map((p) => p.p50), timeline.map((p) => p.p99),
      timeline.map((p) => p.requests)];
    if (chart) { chart.setData(data); return; }
    const target = $("chart-loadtest");
    const grid = { stroke: css("--chart-grid"), width: 1 };
    const axis = { stroke: css("--muted"), grid, ticks: grid };
    const fromZero = (u, min, max) => [0, Math.max(max || 0, 1) * 1.15];
    const ms = (u, v) => (v === null || v === undefined ? "–" : `${v.toFixed(2)} ms`);
    chart = new uPlot({
      width: Math.max(target.clientWidth, 240), height: 220,
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: false }, y: { range: fromZero }, rate: { range: fromZero } },
      axes: [
        { ...axis, label: "seconds into the run", labelSize: 20 },
        { ...axis, size: 56, label: "latency, ms", labelSize: 20 },
        { ...axis, scale: "rate", side: 1, size: 64, label: "requests per second", labelSize: 20, grid: { show: false } },
      ],
      series: [{ label: "second", value: (u, v) => (v == null ? "–" : `${v} s`) },
        { label: "p50", stroke: css("--chart-1"), width: 2, spanGaps: false, value: ms },
        { label: "p99", stroke: css("--chart-3"), width: 2, spanGaps: false, value: ms },
        { label: "req/s", stroke: css("--chart-2"), width: 2, dash: [6, 4], scale: "rate",
          value: (u, v) => (v == null ? "–" : `${v} /s`) }],
    }, data, target);
    target.dataset.axis = "latency, ms";  // drawn on the canvas; said here for tests and tools
    new ResizeObserver(() => chart.setSize({ width: Math.max(target.clientWidth, 240), height: 220 })).observe(target);
  }

  async function show(model) {
    let answer;
    try {
      answer = await api("GET", `/models/${encodeURIComponent(model)}/loadtests`);
    } catch (error) { showError(error); return; }
    if (model !== chosen) return; // another model was chosen meanwhile
    const latest = answer.latest;
    $("loadtest-empty").hidden = Boolean(latest);
    $("loadtest-body").hidden = !latest;
    $("loadtest-basis").textContent = latest ? `${answer.runs.length} recorded · the latest drawn` : "";
    if (!latest) return;
    draw(latest.timeline);
    const cold = latest.cold_starts === null || latest.cold_starts === undefined ? "" : `, ${latest.cold_starts} cold start(s)`;
    $("loadtest-notes").textContent = `Latest: ${when(latest.at)}, ${latest.stage} v${latest.version}, ${load(latest)} ` +
      `for ${fixed(latest.duration_s, 1)} s: ${latest.requests} requests, p99 ${fixed(latest.latency_ms.p99)} ms${cold}. ` +
      `The client ran on the server's machine (${fixed(latest.client_cores)} of a core).`;
    clear($("loadtest-table").tBodies[0]).append(...answer.runs.map((run) => el("tr", {},
      el("td", {}, when(run.at)), el("td", {}, `${run.stage} v${run.version}`), el("td", {}, load(run)),
      el("td", { class: "mono" }, fixed(run.requests_per_s, 1)), el("td", { class: "mono" }, fixed(run.latency_ms.p50)),
      el("td", { class: "mono" }, fixed(run.latency_ms.p99)), el("td", { class: "mono" }, String(errors(run))))));
  }

  document.addEventListener("ls:route", (event) => {
    const route = event.detail;
    if (!route || route.model === chosen) return;
    chosen = route.model;
    show(chosen);
  });
  setInterval(() => { if (chosen) show(chosen); }, REFRESH_MS);
})();
