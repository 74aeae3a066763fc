// Upload page: choose or drop a file, stream it to POST /_/api/uploads (with progress),
// publish it with POST /_/api/models/{name}/versions, show the report, then the endpoint.
"use strict";

(() => {
  const { api, el, clear, bytes, showError, addCopyButtons, copyButton } = LS;
  const $ = (id) => document.getElementById(id);
  const input = $("file-input");
  const dropzone = $("dropzone");
  const accepted = input.accept.split(",");
  const maxBytes = Number(LS.meta("max-upload-bytes"));
  const NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
  let chosen = null;
  let pending = null; // {upload, name, options}: kept so a refused file can be trusted without re-sending
  let defaultPlan = null;
  let known = {}; // model name -> its versions, to say when an upload adds to an existing model
  api("GET", "/models").then((data) => {
    known = Object.fromEntries(data.models.map((m) => [m.name, m]));
    echo();
  }).catch(() => {});

  $("limit-text").textContent = bytes(maxBytes);
  api("GET", "/plans").then((data) => {
    defaultPlan = data.plans.some((p) => p.name === "default") ? "default" : null;
  }).catch(() => {});

  function formError(message) {
    const box = $("form-error");
    box.textContent = message;
    box.hidden = !message;
  }

  function choose(file) {
    formError("");
    const suffix = file.name.includes(".") ? `.${file.name.split(".").pop().toLowerCase()}` : "";
    if (!accepted.includes(suffix)) {
      formError(`${file.name} is not a model file: choose a ${accepted.join(", ")} file.`);
      return;
    }
    if (file.size > maxBytes) {
      formError(`${file.name} (${bytes(file.size)}) is larger than this server's upload limit of ` +
        `${bytes(maxBytes)}. Start the server with --max-upload-mb to raise it.`);
      return;
    }
    if (file.size === 0) {
      formError(`${file.name} is empty.`);
      return;
    }
    chosen = file;
    dropzone.classList.add("chosen");
    $("dropzone-title").textContent = `${file.name} · ${bytes(file.size)}`;
    if (!$("model-name").value) {
      const stem = file.name.slice(0, file.name.length - suffix.length).toLowerCase();
      $("model-name").value = stem.replace(/[^a-z0-9_-]+/g, "-").replace(/^[-_]+|[-_]+$/g, "").slice(0, 63);
      echo();
    }
  }

  function echo() {
    $("name-echo").textContent = $("model-name").value || "NAME";
    $("stage-echo").textContent = $("stage").value || "test";
    const model = known[$("model-name").value.trim()];
    const note = $("name-note");
    note.hidden = !model;
    if (model) {
      const latest = model.versions[model.versions.length - 1];
      const served = model.stages.map((s) => `${s.stage} serves v${s.version}`).join(", ") || "no stage serves it";
      note.textContent = `A model named ${model.name} exists (latest v${latest.version}; ${served}): this file ` +
        `becomes its next version, or stays v${latest.version} if it is the same file.`;
    }
  }

  input.addEventListener("change", () => { if (input.files[0]) choose(input.files[0]); });
  $("model-name").addEventListener("input", echo);
  $("stage").addEventListener("input", echo);
  for (const type of ["dragenter", "dragover"]) {
    dropzone.addEventListener(type, (event) => { event.preventDefault(); dropzone.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) {
    dropzone.addEventListener(type, () => dropzone.classList.remove("over"));
  }
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) choose(file);
  });

  function progress(state, fraction, text) {
    $("progress-wrap").hidden = state === "hidden";
    const bar = $("progress-bar");
    bar.parentElement.classList.toggle("validating", state === "validating");
    bar.style.width = `${Math.round((fraction || 0) * 100)}%`;
    $("progress-text").textContent = text || "";
  }

  function send(file) {
    // XMLHttpRequest, not fetch: only it reports upload progress.
    return new Promise((resolve, reject) => {
      const request = new XMLHttpRequest();
      request.open("POST", `/_/api/uploads?filename=${encodeURIComponent(file.name)}`);
      request.setRequestHeader("X-CSRF-Token", LS.meta("csrf-token"));
      request.setRequestHeader("Content-Type", "application/octet-stream");
      request.responseType = "json";
      request.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) {
          progress("uploading", event.loaded / event.total,
            `Uploading… ${bytes(event.loaded)} of ${bytes(event.total)}`);
        }
      });
      request.addEventListener("load", () => {
        if (request.status === 201) resolve(request.response);
        else reject(new LS.APIError(request.status, request.response));
      });
      request.addEventListener("error", () => reject(new Error("The upload failed: the connection was lost.")));
      request.send(file);
    });
  }

  $("upload-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    formError("");
    const name = $("model-name").value.trim();
    const stage = $("stage").value.trim() || "test";
    if (!chosen) return formError("Choose a model file first (drop it on the box above, or click it).");
    if (!NAME.test(name)) {
      return formError("The name must be 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit.");
    }
    const options = { stage, promote: $("promote").checked };
    const sampleText = $("sample").value.trim();
    if (sampleText) {
      try { options.sample = JSON.parse(sampleText); } catch {
        return formError('The sample is not valid JSON: write it as a request body, e.g. ["some text"].');
      }
    }
    if ($("make-key").checked) options.key = { name, plan: defaultPlan };
    $("upload-button").disabled = true;
    $("report").hidden = true;
    $("endpoint").hidden = true;
    try {
      progress("uploading", 0, "Uploading…");
      const upload = await send(chosen);
      pending = { upload: upload.upload, name, options };
      await publish(false);
    } catch (error) {
      progress("hidden");
      formError(error.data && error.data.hint ? `${error.message} ${error.data.hint}` : error.message);
    } finally {
      $("upload-button").disabled = false;
    }
  });

  async function publish(trust) {
    const started = performance.now();
    const say = () => progress("validating", 1, "Validating: scanning the file, loading the model, trying " +
      `the sample… ${((performance.now() - started) / 1000).toFixed(0)} s`);
    say();
    const ticking = setInterval(say, 1000);
    try {
      const result = await api("POST", `/models/${pending.name}/versions`,
        { upload: pending.upload, ...pending.options, trust });
      progress("hidden");
      showReport(result.report, null, false);
      showEndpoint(result, performance.now() - started);
      pending = null;
    } catch (error) {
      progress("hidden");
      if (error.data && error.data.report) {
        showReport(error.data.report, error, Boolean(error.data.needs_trust));
      } else {
        throw error;
      }
    } finally {
      clearInterval(ticking);
    }
  }

  function fact(label, value) { return el("div", {}, el("dt", {}, label), el("dd", {}, value)); }

  function showReport(report, error, needsTrust) {
    $("report").hidden = false;
    const badge = $("report-badge");
    badge.textContent = error ? (needsTrust ? "needs your trust" : "refused") : "passed";
    badge.className = `badge ${error ? (needsTrust ? "warn" : "error") : "ok"}`;
    const message = $("report-message");
    message.hidden = !error;
    if (error) {
      message.className = `alert ${needsTrust ? "warn" : "error"}`;
      // Only what there is: append(null) would print "null".
      clear(message).append(el("b", {}, error.message), ...(error.data.hint ? [el("span", { class: "hint" }, error.data.hint)] : []));
    }
    clear($("report-facts")).append(
      fact("format", report.format || "?"),
      fact("size", bytes(report.size)),
      fact("sha256", report.sha256 ? `${report.sha256.slice(0, 12)}…` : "?"),
      fact("python", report.python || "?"),
      fact("classes", report.classes && report.classes.length ? String(report.classes.length) : "–"),
      fact("code by value", report.by_value.length ? report.by_value.join(", ") : "none"),
    );
    $("report-flagged").hidden = !report.flagged.length;
    clear($("flagged-list")).append(...report.flagged.map((f) => el("li", {}, el("code", {}, f.what), ` ${f.reason}`)));
    $("trust-check").checked = false;
    $("trust-button").disabled = true;
    $("trust-button").hidden = !needsTrust;
    $("trust-check").parentElement.hidden = !needsTrust;
    clear($("report-imports")).append(...report.imports.map((name) => el("li", {}, name)));
    clear($("report-requirements")).append(...report.requirements.map((pin) => el("tr", {},
      el("td", { class: "mono" }, pin.name), el("td", { class: "mono" }, pin.version || "?"),
      el("td", {}, { file: "recorded in the file", installed: "installed here", user: "you" }[pin.source] || pin.source || ""))));
    const sample = report.sample && report.sample.input !== null ? report.sample : null;
    $("report-sample").hidden = !sample;
    if (sample) {
      $("sample-output").textContent = `${JSON.stringify(sample.input)}\n→ ${JSON.stringify(sample.predict)}`;
    }
    clear($("report-warnings")).append(...report.warnings.map((w) => el("li", {}, w)));
  }

  $("trust-check").addEventListener("change", () => { $("trust-button").disabled = !$("trust-check").checked; });
  $("trust-button").addEventListener("click", async () => {
    if (!pending) return;
    $("trust-button").disabled = true;
    try { await publish(true); } catch (error) { showError(error); }
  });

  const shellQuote = (text) => `'${text.replace(/'/g, "'\\''")}'`;
  // A Python literal for the body: single quotes read best for JSON, which uses double ones.
  const pythonString = (text) => (/['\\\n]/.test(text) ? JSON.stringify(text) : `'${text}'`);

  function showEndpoint(result, elapsed) {
    const url = result.endpoint.url;
    const key = result.key ? result.key.value : null;
    const sample = result.report.sample && result.report.sample.input !== null
      ? JSON.stringify(result.report.sample.input) : '["some input"]';
    $("endpoint").hidden = false;
    const badge = $("endpoint-badge");
    badge.textContent = result.serving ? `serving version ${result.version.version}`
      : `version ${result.version.version} published; ${result.stage.stage} serves ${result.stage.version}`;
    badge.className = `badge ${result.serving ? "ok" : "warn"}`;
    $("endpoint-url").textContent = url;
    const reused = result.key && result.key.reused;
    $("key-box").hidden = !key && !reused;
    $("key-value").textContent = key || "";
    $("key-value").parentElement.hidden = !key;
    $("key-note").textContent = reused
      ? `Nothing new was published, so no key was made: your key ${result.key.name} (${result.key.prefix}…) ` +
        "from before still works here. Its value was shown once, when it was made; set KEY to it for the lines below."
      : "shown once: copy it now";
    const keyText = key ? JSON.stringify(key) : 'os.environ["KEY"]';
    // Without the value, "$KEY" in double quotes, so that the shell fills it in when pasted.
    const header = key ? shellQuote(`x-api-key: ${key}`) : '"x-api-key: $KEY"';
    $("curl-snippet").textContent = `curl -X POST ${url} \\\n  -H ${header} \\\n  -d ${shellQuote(sample)}`;
    $("python-snippet").textContent = [
      ...(key ? [] : ["import os", ""]), "import requests", "", "response = requests.post(", `    ${JSON.stringify(url)},`,
      `    headers={"x-api-key": ${keyText}},`, `    data=${pythonString(sample)},`,
      "    timeout=30,", ")", "print(response.status_code, response.json())",
    ].join("\n");
    $("try-body").value = sample;
    // A version no stage serves yet is tried directly, through Lambda's Invoke API.
    const direct = !result.serving;
    $("try-form").dataset.direct = direct
      ? `/2015-03-31/functions/${encodeURIComponent(result.model)}/invocations?Qualifier=${result.version.version}` : "";
    $("try-direct").hidden = !direct;
    $("try-direct").textContent = direct
      ? `Stage ${result.stage.stage} serves version ${result.stage.version}: Send tries version ` +
        `${result.version.version} directly, through the Lambda Invoke API (no stage, no key).` : "";
    $("try-form").dataset.url = url;
    $("try-form").dataset.key = key || "";
    $("try-key-field").hidden = !reused;  // the key's value is not known here: ask for it
    $("try-response").hidden = true;
    $("try-status").hidden = true;
    $("try-latency").textContent = `validated and published in ${(elapsed / 1000).toFixed(1)} s`;
    addCopyButtons($("endpoint"));
    for (const id of ["curl-snippet", "python-snippet"]) {
      const heading = $(id).previousElementSibling;
      if (!heading.querySelector("button")) heading.append(copyButton(() => $(id).textContent));
    }
    $("endpoint").scrollIntoView({ behavior: "smooth", block: "start" });
  }

  // Send (route "predict") or Explain (route "explain": LIME, drawn above the raw answer).
  async function tryRoute(route) {
    const form = $("try-form");
    const headers = { "Content-Type": "application/json" };
    const typed = $("try-key").value.trim();
    if (form.dataset.key || typed) headers["x-api-key"] = form.dataset.key || typed;
    $("try-button").disabled = $("explain-button").disabled = true;
    $("try-explanation").hidden = true;
    const started = performance.now();
    try {
      let response;
      let parsed;
      try { parsed = JSON.parse($("try-body").value); } catch {
        if (form.dataset.direct || route === "explain") {
          throw new Error('The body is not valid JSON: write it as a request body, e.g. ["some text"].');
        }
      }
      if (form.dataset.direct) {
        const invoked = await fetch(form.dataset.direct, {
          method: "POST", body: JSON.stringify({ body: parsed, resource: `/model/${route}` }),
        });
        const answer = await invoked.json();  // the handler's proxy response, or Lambda's error
        response = invoked.ok && answer.statusCode
          ? new Response(answer.body, { status: answer.statusCode })
          : new Response(JSON.stringify(answer), { status: invoked.ok ? 502 : invoked.status });
      } else {
        const url = route === "explain" ? form.dataset.url.replace(/\/predict$/, "/explain") : form.dataset.url;
        response = await fetch(url, { method: "POST", headers, body: $("try-body").value });
      }
      const text = await response.text();
      if (route === "explain" && response.ok) {
        try { drawExplanations(Array.isArray(parsed) ? parsed : [parsed], JSON.parse(text)); } catch { /* raw below */ }
      }
      const latency = performance.now() - started;
      const status = $("try-status");
      status.hidden = false;
      status.textContent = `${response.status} ${response.statusText}`.trim();
      status.className = `badge ${response.ok ? "ok" : "error"}`;
      $("try-latency").textContent = `${latency.toFixed(1)} ms`;
      let shown = text;
      try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch { /* not JSON: shown as is */ }
      $("try-response").textContent = shown;
      $("try-response").hidden = false;
    } catch (error) {
      showError(error);
    } finally {
      $("try-button").disabled = $("explain-button").disabled = false;
    }
  }

  $("try-form").addEventListener("submit", (event) => { event.preventDefault(); tryRoute("predict"); });
  $("explain-button").addEventListener("click", () => tryRoute("explain"));

  // Text: each word tinted by its weight for the first explained label (green for, red
  // against; the weight in its title). Tabular: one bar per feature condition.
  function drawExplanations(instances, answers) {
    const box = $("try-explanation");
    box.replaceChildren();
    answers.forEach((answer, i) => {
      const first = answer.explanations[0];
      const weights = new Map(first.weights.map(([feature, weight]) => [String(feature), weight]));
      const largest = Math.max(...first.weights.map(([, w]) => Math.abs(w)), 1e-12);
      const heading = document.createElement("p");
      heading.textContent = `${answer.label} (${(100 * answer.probability).toFixed(1)}%): why ` +
        `${first.label}, green for and red against` + (answer.note ? `. ${answer.note}` : "");
      box.append(heading);
      const instance = instances[i];
      if (typeof instance === "string") {
        const text = document.createElement("p");
        text.className = "explained-text";
        let last = 0;
        for (const match of instance.matchAll(/[\p{L}\p{N}_]+/gu)) {
          text.append(instance.slice(last, match.index));
          const weight = weights.get(match[0]);
          if (weight === undefined) {
            text.append(match[0]);
          } else {
            const mark = document.createElement("mark");
            mark.textContent = match[0];
            mark.title = `${weight >= 0 ? "+" : ""}${weight.toFixed(4)}`;
            mark.className = weight >= 0 ? "for" : "against";
            mark.style.setProperty("--strength", (0.25 + 0.75 * Math.abs(weight) / largest).toFixed(2));
            text.append(mark);
          }
          last = match.index + match[0].length;
        }
        text.append(instance.slice(last));
        box.append(text);
      }
      const table = document.createElement("table");
      table.className = "weights";
      const caption = document.createElement("caption");
      caption.textContent = `Weights for ${first.label}`;
      table.append(caption);
      for (const [feature, weight] of first.weights) {
        const row = table.insertRow();
        row.insertCell().textContent = feature;
        row.insertCell().textContent = `${weight >= 0 ? "+" : ""}${weight.toFixed(4)}`;
        const bar = document.createElement("span");
        bar.className = `bar ${weight >= 0 ? "for" : "against"}`;
        bar.style.width = `${(100 * Math.abs(weight) / largest).toFixed(0)}%`;
        row.insertCell().append(bar);
      }
      box.append(table);
    });
    box.hidden = false;
  }
})();
