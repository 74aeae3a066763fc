// Models page: versions and stages from GET /_/api/models; promote, canary and rollback
// with PUT /_/api/models/{model}/stages/{stage} and POST .../rollback, each confirmed first;
// each stage's prediction capture (off, 1%, 10%, 100%) with PUT .../capture {"rate": 0.1}.
"use strict";

(() => {
  const { api, el, clear, bytes, when, toast, showError, confirmAction } = LS;
  const root = document.getElementById("models");

  async function load() {
    try {
      const data = await api("GET", "/models");
      render(data.models);
    } catch (error) {
      clear(root).append(el("p", { class: "alert error" }, error.message));
    }
    root.removeAttribute("aria-busy");
  }

  function render(models) {
    clear(root);
    if (!models.length) {
      root.append(document.getElementById("empty-models").content.cloneNode(true));
      return;
    }
    for (const model of models) root.append(modelCard(model));
  }

  function describeStage(stage) {
    return stage.canary_version
      ? `version ${stage.version}, canary version ${stage.canary_version} at ${stage.canary_weight}%`
      : `version ${stage.version}`;
  }

  function modelCard(model) {
    const versions = [...model.versions].reverse();
    const latest = versions[0];
    const stageRows = model.stages.map((stage) => el("tr", { dataset: { stage: stage.stage } },
      el("td", {}, el("b", {}, stage.stage)),
      el("td", { class: "stage-version" }, el("span", { class: "badge accent" }, `v${stage.version}`)),
      el("td", {}, stage.canary_version
        ? el("span", { class: "badge warn" }, `v${stage.canary_version} · ${stage.canary_weight}%`) : "–"),
      el("td", { class: "endpoint hide-narrow" }, `${location.origin}/${stage.stage}/${model.name}/predict`),
      el("td", { class: "hide-narrow muted small" }, when(stage.updated)),
      el("td", {}, captureSelect(model.name, stage)),
      el("td", { class: "actions" }, el("button", {
        class: "button small", type: "button",
        onclick: () => rollback(model.name, stage),
      }, "Roll back")),
    ));
    const versionRows = versions.map((v) => el("tr", {},
      el("td", {}, el("b", {}, `v${v.version}`)),
      el("td", { class: "mono", title: v.sha256 }, `${v.sha256.slice(0, 12)}…`),
      el("td", {}, bytes(v.size)),
      el("td", {}, v.format),
      el("td", { class: "muted small" }, when(v.created)),
      el("td", {}, model.stages.filter((s) => s.version === v.version || s.canary_version === v.version)
        .map((s) => el("span", { class: "badge accent" }, s.stage))),
    ));
    const versionSelect = el("select", { "aria-label": "version" },
      versions.map((v) => el("option", { value: v.version }, `version ${v.version}`)));
    const stageInput = el("input", {
      value: model.stages[0] ? model.stages[0].stage : "test", list: `stages-${model.name}`,
      "aria-label": "stage", autocomplete: "off",
    });
    const weightInput = el("input", { type: "number", min: "1", max: "99", value: "10", "aria-label": "canary weight" });
    return el("section", { class: "card model-card", dataset: { model: model.name } },
      el("div", { class: "card-head" },
        el("h2", {}, model.name),
        el("span", { class: "muted small" },
          `${versions.length} version${versions.length === 1 ? "" : "s"} · latest v${latest.version} (${latest.format}, ${bytes(latest.size)})`)),
      el("h3", {}, "Stages"),
      model.stages.length
        ? el("div", { class: "table-wrap" }, el("table", { class: "table stages" },
          el("thead", {}, el("tr", {}, el("th", {}, "stage"), el("th", {}, "version"), el("th", {}, "canary"),
            el("th", { class: "hide-narrow" }, "endpoint"), el("th", { class: "hide-narrow" }, "updated"), el("th", {}, "capture"), el("th", {}, el("span", { class: "visually-hidden" }, "actions")))),
          el("tbody", {}, stageRows)))
        : el("p", { class: "muted" }, "No stage serves this model yet: promote a version below."),
      el("datalist", { id: `stages-${model.name}` }, model.stages.map((s) => el("option", { value: s.stage }))),
      el("div", { class: "stage-actions" },
        el("div", { class: "field" }, el("label", {}, "Version"), versionSelect),
        el("div", { class: "field" }, el("label", {}, "Stage"), stageInput),
        el("button", {
          class: "button primary", type: "button",
          onclick: () => promote(model, Number(versionSelect.value), stageInput.value.trim(), null),
        }, "Promote"),
        el("div", { class: "field" }, el("label", {}, "Canary %"), weightInput),
        el("button", {
          class: "button", type: "button",
          onclick: () => promote(model, Number(versionSelect.value), stageInput.value.trim(), Number(weightInput.value)),
        }, "Start canary"),
      ),
      el("h3", {}, "Versions"),
      el("div", { class: "table-wrap" }, el("table", { class: "table versions" },
        el("thead", {}, el("tr", {}, el("th", {}, "version"), el("th", {}, "sha256"), el("th", {}, "size"),
          el("th", {}, "format"), el("th", {}, "created"), el("th", {}, "served by"))),
        el("tbody", {}, versionRows))),
    );
  }

  async function promote(model, version, stageName, weight) {
    if (!stageName) return toast("Name the stage to promote to.", "error");
    const current = model.stages.find((s) => s.stage === stageName);
    let body = { version };
    let text = current
      ? `Stage ${stageName} serves ${describeStage(current)}. It will serve version ${version} alone.`
      : `Stage ${stageName} does not exist yet. It will be created, serving version ${version}.`;
    if (weight !== null) {
      if (!current) return toast(`Stage ${stageName} does not exist yet: promote a version to it first.`, "error");
      if (current.version === version) return toast(`Stage ${stageName} already serves version ${version}: a canary is another version.`, "error");
      body = { version: current.version, canary: { version, weight } };
      text = `Stage ${stageName} keeps version ${current.version} and sends ${weight}% of its requests to version ${version}.`;
    }
    const ok = await confirmAction(weight !== null ? "Start a canary?" : `Promote version ${version}?`, text,
      weight !== null ? "Start canary" : "Promote");
    if (!ok) return;
    try {
      const stage = await api("PUT", `/models/${model.name}/stages/${encodeURIComponent(stageName)}`, body);
      toast(`${model.name} ${stageName}: now ${describeStage(stage)}.`);
      await load();
    } catch (error) { showError(error); }
  }

  const CAPTURE_RATES = [[0, "off"], [0.01, "1%"], [0.1, "10%"], [1, "100%"]];

  function captureSelect(modelName, stage) {
    const rate = stage.capture || 0;
    const options = CAPTURE_RATES.some(([r]) => r === rate) ? CAPTURE_RATES
      : [...CAPTURE_RATES, [rate, `${+(rate * 100).toFixed(3)}%`]];  // set elsewhere (lambdaserve capture set)
    const select = el("select", {
      class: "capture", "aria-label": `capture of ${stage.stage}`,
      title: "Prediction capture: the share of requests recorded in STATE/capture/MODEL.jsonl",
      onchange: () => setCapture(modelName, stage, Number(select.value), select),
    }, options.map(([r, label]) => el("option", { value: r }, label)));
    select.value = String(rate);
    return select;
  }

  async function setCapture(modelName, stage, rate, select) {
    try {
      await api("PUT", `/models/${modelName}/stages/${encodeURIComponent(stage.stage)}/capture`, { rate });
      stage.capture = rate;
      toast(rate ? `${modelName} ${stage.stage}: capturing ${select.selectedOptions[0].textContent} of requests.`
        : `${modelName} ${stage.stage}: capture off.`);
    } catch (error) {
      select.value = String(stage.capture || 0);
      showError(error);
    }
  }

  async function rollback(modelName, stage) {
    const back = stage.rollback;
    const text = !back
      ? `Stage ${stage.stage} of ${modelName} has no earlier state to go back to.`
      : back.removes
        ? `Stage ${stage.stage} was created by its last change: rolling back removes it. ` +
          `Its endpoint, POST /${stage.stage}/${modelName}/predict, then answers 403 to every request.`
        : `Stage ${stage.stage} of ${modelName} goes back from ${describeStage(stage)} to ${describeStage(back)}.`;
    const ok = await confirmAction(back && back.removes ? `Remove ${stageName(stage)}?` : `Roll back ${stageName(stage)}?`,
      text, back && back.removes ? "Remove the stage" : "Roll back");
    if (!ok) return;
    try {
      const after = await api("POST", `/models/${modelName}/stages/${encodeURIComponent(stage.stage)}/rollback`);
      toast(after.removed ? `Stage ${stage.stage} no longer exists.` : `${modelName} ${stage.stage}: back to ${describeStage(after)}.`);
      await load();
    } catch (error) { showError(error); }
  }

  const stageName = (stage) => `stage ${stage.stage}`;
  load();
})();
