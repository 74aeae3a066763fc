// Monitoring page, "Model" card: GET /_/api/models/{model}/drift?stage=&since=&window= when the
// page's route changes (the "ls:route" event monitoring.js sends) and every 30 s. The predicted
// classes' shares per window (uPlot lines), the latest window's top drifting features in a table
// and each as bars of the reference's shares beside the window's, and the latest captured requests.
"use strict";

(() => {
  const { api, el, clear, when, showError } = LS;
  const $ = (id) => document.getElementById(id);
  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  const REFRESH_MS = 30000;
  const SHOWN_FEATURES = 4;
  const COLORS = ["--chart-1", "--chart-2", "--chart-3", "--chart-4"];
  const BADGES = { shift: "error", moderate: "warn", stable: "ok" };
  let chosen = null; // {model, stage}
  let classChart = null;
  let classKey = "";
  const featureCharts = [];

  const grid = () => ({ stroke: css("--chart-grid"), width: 1 });
  const axis = () => ({ stroke: css("--muted"), grid: grid(), ticks: grid() });
  const percent = (u, v) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(1)}%`);
  const fitWidth = (chart, target) =>
    new ResizeObserver(() => chart.setSize({ width: Math.max(target.clientWidth, 240), height: 200 })).observe(target);

  // Predicted classes over time: one line per class, its share of each window's predictions.
  function drawClasses(windows) {
    const shown = windows.filter((w) => w.predictions);
    const classes = [...new Set(shown.flatMap((w) => w.predictions.bins))];
    const data = [shown.map((w) => Date.parse(w.start) / 1000),
      ...classes.map((c) => shown.map((w) => {
        const i = w.predictions.bins.indexOf(c);
        return i < 0 ? 0 : w.predictions.current[i];
      }))];
    const target = $("chart-classes");
    const key = classes.join("\u0000");
    if (classChart && key === classKey) { classChart.setData(data); return; }
    if (classChart) classChart.destroy();
    classKey = key;
    classChart = new uPlot({
      width: Math.max(target.clientWidth, 240), height: 200,
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: [0, 1] } },
      axes: [axis(), { ...axis(), size: 56, label: "share of predictions", labelSize: 20,
        values: (u, ticks) => ticks.map((t) => `${Math.round(t * 100)}%`) }],
      series: [{}, ...classes.map((c, i) => ({
        label: c, stroke: css(COLORS[i % COLORS.length]), width: 2, dash: i >= COLORS.length ? [6, 4] : undefined,
        points: { show: true }, value: percent,
      }))],
    }, data, target);
    target.dataset.axis = "share of predictions";  // drawn on the canvas; said here for tests and tools
    fitWidth(classChart, target);
  }

  // One feature: the reference's share per bin beside the window's, as bars.
  function drawFeature(box, feature) {
    const target = el("div", { class: "chart" });
    box.append(el("div", { class: "card-head" }, el("h3", {}, feature.name),
      el("span", { class: "stat" }, `PSI ${feature.psi.toFixed(3)} · ${feature.reading}`)), target);
    const bars = uPlot.paths.bars;
    const labels = feature.bins;
    const chart = new uPlot({
      width: Math.max(target.clientWidth, 240), height: 200,
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: false, range: [-0.5, labels.length - 0.5] }, y: { range: (u, min, max) => [0, Math.max(max || 0, 0.1) * 1.15] } },
      axes: [
        { ...axis(), splits: () => labels.map((_, i) => i), values: () => labels, rotate: labels.length > 6 ? -30 : 0 },
        { ...axis(), size: 56, label: "share", labelSize: 20, values: (u, ticks) => ticks.map((t) => `${Math.round(t * 100)}%`) },
      ],
      series: [{ label: "bin", value: (u, v) => (v == null ? "–" : labels[v]) },
        { label: "reference", stroke: css("--chart-2"), fill: css("--chart-2"), paths: bars({ size: [0.4], align: -1 }),
          points: { show: false }, value: percent },
        { label: "now", stroke: css("--chart-3"), fill: css("--chart-3"), paths: bars({ size: [0.4], align: 1 }),
          points: { show: false }, value: percent }],
    }, [labels.map((_, i) => i), feature.reference, feature.current], target);
    target.dataset.axis = "share";
    fitWidth(chart, target);
    featureCharts.push(chart);
  }

  function showFeatures(latest) {
    while (featureCharts.length) featureCharts.pop().destroy();
    const box = clear($("drift-features"));
    const features = latest ? latest.features : [];
    clear($("drift-table").tBodies[0]).append(...(features.length ? features.map((f) => el("tr", {},
      el("td", {}, f.name), el("td", { class: "mono" }, f.psi.toFixed(3)),
      el("td", {}, el("span", { class: `badge ${BADGES[f.reading] || ""}` }, f.reading)),
      el("td", { class: "mono" }, f.p_value === null ? "–" : f.p_value.toPrecision(2)),
      el("td", { class: "mono" }, String(f.n))))
      : [el("tr", {}, el("td", { colspan: "5", class: "muted" }, "Nothing to compare in this window."))]));
    for (const feature of features.slice(0, SHOWN_FEATURES)) {
      const card = el("section", { class: "chart-card", dataset: { feature: feature.name } });
      box.append(card);
      drawFeature(card, feature);
    }
  }

  function showRecords(records) {
    clear($("capture-table").tBodies[0]).append(...records.map((r) => el("tr", {},
      el("td", {}, when(r.time)), el("td", {}, `${r.stage} v${r.version}`), el("td", {}, r.route),
      el("td", { class: "mono" }, r.instances), el("td", { class: "mono" }, r.predictions),
      el("td", { class: "mono" }, r.latencyMs === null || r.latencyMs === undefined ? "–" : r.latencyMs.toFixed(1)))));
  }

  async function show() {
    if (!chosen) return;
    const route = chosen;
    const query = new URLSearchParams({ stage: route.stage, since: $("drift-since").value, window: $("drift-window").value });
    let report;
    try {
      report = await api("GET", `/models/${encodeURIComponent(route.model)}/drift?${query}`);
    } catch (error) {
      $("drift-body").hidden = true;
      $("drift-message").hidden = false;
      $("drift-message").textContent = error.data && error.data.hint ? `${error.message} ${error.data.hint}` : error.message;
      return;
    }
    if (route !== chosen) return; // another route was chosen meanwhile
    $("drift-message").hidden = true;
    clear($("drift-notes")).append(...report.notes.map((note) => el("li", {}, note)));
    const reference = report.reference;
    $("drift-basis").textContent = `${report.records} captured requests · ` + (reference
      ? `vs the reference of v${reference.version} (${reference.n_rows} rows)` : "vs the first window");
    $("drift-body").hidden = report.records === 0;
    if (report.records === 0) return;
    drawClasses(report.windows);
    const latest = report.windows[report.windows.length - 1];
    const p = latest && latest.predictions;
    $("classes-notes").textContent = p ? `Latest window (${latest.label}): PSI ${p.psi.toFixed(3)}, ${p.reading}.` : "";
    showFeatures(latest && !latest.baseline ? latest : null);
    showRecords(report.latest_records);
  }

  for (const id of ["drift-since", "drift-window"]) $(id).addEventListener("change", show);
  $("drift-form").addEventListener("submit", (event) => { event.preventDefault(); show(); });
  document.addEventListener("ls:route", (event) => {
    chosen = event.detail;
    show().catch(showError);
  });
  setInterval(() => { if (chosen) show().catch(showError); }, REFRESH_MS);
})();
