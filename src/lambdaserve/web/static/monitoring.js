// Monitoring page: GET /_/api/series every 2 s into four uPlot charts (traffic, latency,
// errors, saturation), cold starts from the same answer, START/END/REPORT lines from
// GET /_/api/logs/{model}.
"use strict";

(() => {
  const { api, el, clear, clock, showError } = LS;
  const $ = (id) => document.getElementById(id);
  const REFRESH_MS = 2000;
  const LIFECYCLE = /\b(START|END|REPORT|INIT_START|INIT_REPORT) RequestId:|\bINIT_START\b|\bInit Duration\b/;
  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  const charts = {};
  let current = null; // {model, stage}

  // Each chart: its lines, the unit of its values, its axis title and the top of its scale
  // when nothing happened yet (an empty chart still shows a readable scale).
  const SIGNALS = {
    traffic: { series: [["requests/s", "rps", "--chart-1"]], unit: "req/s", title: "requests per second", floor: 1 },
    latency: {
      series: [["p50", "p50", "--chart-1"], ["p95", "p95", "--chart-2"], ["p99", "p99", "--chart-3"]],
      unit: "ms", title: "latency, ms", floor: 1,
    },
    errors: {
      series: [["4xx", "errors_4xx", "--chart-3"], ["5xx", "errors_5xx", "--chart-4"]],
      unit: "%", scale: 100, title: "% of requests", floor: 1,
    },
    saturation: {
      // Environments on the left axis; refusals per second, another unit, on the right one.
      series: [["busy", "busy", "--chart-1"], ["environments", "total", "--chart-2"],
        ["throttled/s", "throttled", "--chart-4", "rate"]],
      unit: "", title: "environments", floor: 1,
    },
  };

  function makeChart(name) {
    const target = $(`chart-${name}`);
    const spec = SIGNALS[name];
    const grid = { stroke: css("--chart-grid"), width: 1 };
    const axis = { stroke: css("--muted"), grid, ticks: grid };
    const fromZero = (floor) => (u, min, max) => [0, Math.max(max || 0, floor) * 1.15];
    // As many decimals as the step between ticks needs, so no two ticks read the same.
    const tickText = (suffix) => (u, ticks) => {
      const step = ticks.length > 1 ? Math.abs(ticks[1] - ticks[0]) : 1;
      let digits = step > 0 ? Math.min(3, Math.max(0, -Math.floor(Math.log10(step)))) : 0;
      while (digits < 3 && Math.abs(step * 10 ** digits - Math.round(step * 10 ** digits)) > 1e-6) digits += 1;
      return ticks.map((t) => `${t.toFixed(digits)}${suffix}`);
    };
    const hasRate = spec.series.some((entry) => entry[3] === "rate");
    const options = {
      width: Math.max(target.clientWidth, 240),
      height: 220,
      cursor: { drag: { x: false, y: false } },
      scales: {
        // The whole window, always: a quiet minute shows as a flat line, not as a zoomed-in instant.
        x: { time: true, range: () => [Date.now() / 1000 - windowMinutes() * 60, Date.now() / 1000] },
        y: { range: fromZero(spec.floor) },
        rate: { range: fromZero(1) },
      },
      axes: [
        axis,
        { ...axis, size: 56, label: spec.title, labelSize: 20, values: tickText(spec.unit === "%" ? "%" : "") },
        ...(hasRate ? [{
          ...axis, scale: "rate", side: 1, size: 64, label: "refused per second", labelSize: 20,
          grid: { show: false }, values: tickText("/s"),
        }] : []),
      ],
      series: [{}, ...spec.series.map(([label, , color, scale]) => ({
        label, stroke: css(color), width: 2, spanGaps: false, scale: scale || "y",
        value: (u, v) => (v === null || v === undefined ? "–" : `${+v.toFixed(2)} ${scale ? "/s" : spec.unit}`.trim()),
      }))],
    };
    const chart = new uPlot(options, [[], ...spec.series.map(() => [])], target);
    target.dataset.axis = spec.title;  // drawn on the canvas; said here for tests and tools
    new ResizeObserver(() => chart.setSize({ width: Math.max(target.clientWidth, 240), height: 220 })).observe(target);
    return chart;
  }

  function windowMinutes() { return Number($("pick-minutes").value); }

  function lastValue(values) {
    for (let i = values.length - 1; i >= 0; i -= 1) if (values[i] !== null) return values[i];
    return null;
  }

  function update(series) {
    const t = series ? series.t : [];
    for (const [name, spec] of Object.entries(SIGNALS)) {
      const scale = spec.scale || 1;
      const columns = spec.series.map(([, field]) => (series ? series[field] : []).map((v) => (v === null ? null : v * scale)));
      charts[name].setData([t, ...columns]);
    }
    const rps = series ? series.rps : [];
    const total = series ? series.requests.reduce((sum, n) => sum + n, 0) : 0;
    $("stat-traffic").textContent = series ? `${(lastValue(rps) || 0).toFixed(1)} req/s · ${total} in window` : "–";
    $("stat-traffic").dataset.requests = String(total);
    // The headline covers the chart's whole window: the highest p99 of its 2-second points
    // (an upper bound of the window's own p99), and the latest beside it.
    const p99s = series ? series.p99.filter((v) => v !== null) : [];
    $("stat-latency").textContent = p99s.length
      ? `p99 up to ${Math.max(...p99s).toFixed(1)} ms in window · now ${lastValue(series.p99).toFixed(1)} ms`
      : "no requests";
    const e4 = series ? lastValue(series.errors_4xx) || 0 : 0;
    const e5 = series ? lastValue(series.errors_5xx) || 0 : 0;
    $("stat-errors").textContent = `4xx ${(e4 * 100).toFixed(1)}% · 5xx ${(e5 * 100).toFixed(1)}%`;
    const busy = series ? lastValue(series.busy) || 0 : 0;
    const envs = series ? lastValue(series.total) || 0 : 0;
    $("stat-saturation").textContent = `${busy.toFixed(2)} of ${envs} busy`;
  }

  // An INIT takes seconds, a restore milliseconds: each in the unit that reads.
  const duration = (ms) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`);

  function showColdStarts(coldStarts) {
    const rows = [...coldStarts].reverse().slice(0, 50);
    $("cold-count").textContent = `${coldStarts.length} in window`;
    clear($("cold-table").tBodies[0]).append(...(rows.length ? rows.map((c) => el("tr", {},
      el("td", {}, clock(c.t)), el("td", {}, `v${c.version}`),
      el("td", {}, el("span", { class: `badge ${c.kind === "init" ? "warn" : "accent"}` }, c.kind)),
      el("td", { class: "mono" }, duration(c.duration_ms))))
      : [el("tr", {}, el("td", { colspan: "4", class: "muted" }, "No cold start in this window."))]));
  }

  // -- cost on AWS: GET /_/api/models/{model}/cost, as lambdaserve cost prices it ----------
  const COST_LABELS = {
    lambda_requests: "Lambda requests", lambda_duration: "Lambda duration (GB-seconds)",
    rest_api: "API Gateway REST API", provisioned_concurrency: "provisioned concurrency", storage: "S3 model files",
  };
  let costChart = null;
  const usd = (n) => n.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const count = (n) => Math.round(n).toLocaleString();

  async function showCost() {
    if (!current) return;
    const query = new URLSearchParams({
      requests: $("cost-requests").value.trim() || "1M", arch: $("cost-arch").value, region: $("cost-region").value,
    });
    const message = $("cost-message");
    try {
      const cost = await api("GET", `/models/${encodeURIComponent(current.model)}/cost?${query}`);
      message.hidden = true;
      $("cost-body").hidden = false;
      const work = cost.workload;
      $("cost-basis").textContent = `${work.duration_ms.toFixed(2)} ms per request (measured here), ` +
        `${work.memory_mb} MB · prices of ${cost.as_of}`;
      clear($("cost-table").tBodies[0]).append(
        ...Object.entries(cost.lines).map(([key, value]) => el("tr", {}, el("td", {}, COST_LABELS[key] || key), el("td", { class: "mono" }, usd(value)))),
        el("tr", {}, el("td", {}, el("b", {}, "total")), el("td", { class: "mono" }, el("b", {}, usd(cost.total)))));
      const free = cost.free_tier;
      $("cost-notes").textContent = `Free tier, where the account has it to spare: ${usd(free.lambda_requests + free.lambda_duration)} ` +
        `off the Lambda lines; ${usd(free.rest_api_first_12_months)} off the REST API in an account's first year. ` +
        `An HTTP API would be ${usd(cost.http_api_instead)} instead of ${usd(cost.lines.rest_api)} (no keys or usage plans there).`;
      const even = cost.break_even;
      $("cost-even").textContent = `One always-on ${even.instance} (${usd(even.usd_per_month)} a month) costs less ` +
        `above ${count(even.requests_per_month)} requests a month.`;
      drawCostChart(cost.curve);
    } catch (error) {
      $("cost-body").hidden = true;
      message.hidden = false;
      message.textContent = error.data && error.data.hint ? `${error.message} ${error.data.hint}` : error.message;
    }
  }

  function drawCostChart(points) {
    const data = [points.map((p) => p.requests), points.map((p) => p.rest_api), points.map((p) => p.http_api),
      points.map((p) => p.instance)];
    if (costChart) { costChart.setData(data); return; }
    const target = $("chart-cost");
    const grid = { stroke: css("--chart-grid"), width: 1 };
    const axis = { stroke: css("--muted"), grid, ticks: grid };
    const short = (v) => (v >= 1e9 ? `${v / 1e9}B` : v >= 1e6 ? `${v / 1e6}M` : v >= 1e3 ? `${v / 1e3}k` : `${v}`);
    // Log scales: a label on each power of ten only (uPlot also ticks 2-9 between them).
    const decade = (t) => t != null && t > 0 && Math.abs(Math.log10(t) - Math.round(Math.log10(t))) < 1e-9;
    const decades = (format) => (u, ticks) => ticks.map((t) => (decade(t) ? format(t) : ""));
    costChart = new uPlot({
      width: Math.max(target.clientWidth, 240), height: 220,
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: false, distr: 3 }, y: { distr: 3 } },
      axes: [
        { ...axis, label: "requests a month", labelSize: 20, values: decades(short) },
        { ...axis, size: 64, label: "USD a month", labelSize: 20, values: decades((t) => `$${short(t)}`) },
      ],
      series: [{ label: "requests", value: (u, v) => (v === null || v === undefined ? "–" : count(v)) },
        { label: "Lambda + REST API", stroke: css("--chart-1"), width: 2, points: { show: false }, value: (u, v) => (v == null ? "–" : `$${usd(v)}`) },
        { label: "Lambda + HTTP API", stroke: css("--chart-2"), width: 2, points: { show: false }, value: (u, v) => (v == null ? "–" : `$${usd(v)}`) },
        { label: "one instance", stroke: css("--chart-4"), width: 2, dash: [6, 4], points: { show: false }, value: (u, v) => (v == null ? "–" : `$${usd(v)}`) }],
    }, data, target);
    target.dataset.axis = "USD a month";
    new ResizeObserver(() => costChart.setSize({ width: Math.max(target.clientWidth, 240), height: 220 })).observe(target);
  }

  for (const id of ["cost-requests", "cost-arch", "cost-region"]) $(id).addEventListener("change", showCost);
  $("cost-form").addEventListener("submit", (event) => { event.preventDefault(); showCost(); });

  async function refresh() {
    if (!current) return;
    const minutes = $("pick-minutes").value;
    const query = new URLSearchParams({ model: current.model, stage: current.stage, minutes });
    try {
      const [data, logs] = await Promise.all([
        api("GET", `/series?${query}`),
        api("GET", `/logs/${encodeURIComponent(current.model)}?lines=300`),
      ]);
      update(data.series[0] || null);
      showColdStarts(data.cold_starts);
      const lines = logs.lines.filter((line) => LIFECYCLE.test(line)).slice(-40);
      const box = $("log-lines");
      const atBottom = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
      // "2026-11-26T11:53:39.027Z<TAB>START ..." -> "11:53:39.027  START ...": the day is today's.
      const shown = lines.map((line) => line.replace(/^\d{4}-\d\d-\d\dT([\d:.]+)Z\t/, "$1  "));
      box.textContent = shown.length ? shown.join("\n") : "No invocation yet.";
      if (atBottom) box.scrollTop = box.scrollHeight;
    } catch (error) {
      showError(error);
    }
  }

  // Without a choice in the address, the route with the most requests in the window.
  async function busiest(routes) {
    if (routes.length < 2) return null;
    try {
      const all = (await api("GET", `/series?minutes=${$("pick-minutes").value}`)).series;
      const count = (s) => s.requests.reduce((sum, n) => sum + n, 0);
      const top = all.filter((s) => count(s) > 0).sort((a, b) => count(b) - count(a))[0];
      return top ? `${top.model}/${top.stage}` : null;
    } catch (error) { return null; }
  }

  async function start() {
    let models;
    try { models = (await api("GET", "/models")).models; } catch (error) { showError(error); return; }
    const routes = models.flatMap((m) => m.stages.map((s) => ({ model: m.name, stage: s.stage })));
    const picker = $("pick-route");
    clear(picker).append(...routes.map((r) => el("option", { value: `${r.model}/${r.stage}` }, `${r.model} · ${r.stage}`)));
    $("no-routes").hidden = routes.length > 0;
    const params = new URLSearchParams(location.search);
    const asked = params.get("model") && `${params.get("model")}/${params.get("stage") || "test"}`;
    const wanted = asked || (await busiest(routes));
    if (wanted && routes.some((r) => `${r.model}/${r.stage}` === wanted)) picker.value = wanted;
    for (const name of Object.keys(SIGNALS)) charts[name] = makeChart(name);
    const choose = () => {
      const [model, stage] = picker.value.split("/");
      current = model ? { model, stage } : null;
      if (current) history.replaceState(null, "", `?model=${encodeURIComponent(model)}&stage=${encodeURIComponent(stage)}`);
      refresh();
      showCost();
      // The load tests card (loadtests.js) follows the same choice.
      document.dispatchEvent(new CustomEvent("ls:route", { detail: current }));
    };
    picker.addEventListener("change", choose);
    $("pick-minutes").addEventListener("change", refresh);
    choose();
    setInterval(refresh, REFRESH_MS);
  }

  start();
})();
