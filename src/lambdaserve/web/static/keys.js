// Keys and plans page: GET/POST /_/api/keys, DELETE /_/api/keys/{id}, GET/POST /_/api/plans.
"use strict";

(() => {
  const { api, el, clear, when, toast, showError, confirmAction, addCopyButtons } = LS;
  const $ = (id) => document.getElementById(id);
  let plans = [];

  async function load() {
    try {
      const [planData, keyData] = await Promise.all([api("GET", "/plans"), api("GET", "/keys")]);
      plans = planData.plans;
      renderPlans(plans, keyData.keys);
      renderKeys(keyData.keys);
    } catch (error) { showError(error); }
  }

  function throttle(plan) { return plan.rate !== null ? `${plan.rate}/s, burst ${plan.burst}` : "none"; }
  function stages(plan) { return `${plan.stages.length === 1 ? "stage" : "stages"} ${plan.stages.join(", ")}`; }
  function quota(plan) { return plan.quota_limit !== null ? `${plan.quota_limit} per ${plan.quota_period.toLowerCase()}` : "no quota"; }

  function renderPlans(list, keys) {
    const select = $("key-plan");
    const chosen = select.value;
    // Every key is in a plan, as on API Gateway; "default" (unlimited) is made on first use.
    const options = list.map((p) => el("option", { value: p.name }, `${p.name} · ${quota(p)} · ${stages(p)}`));
    if (!list.some((p) => p.name === "default")) options.unshift(el("option", { value: "" }, "default (unlimited, made now)"));
    clear(select).append(...options);
    select.value = chosen && list.some((p) => p.name === chosen) ? chosen : (list.some((p) => p.name === "default") ? "default" : select.options[0]?.value ?? "");
    clear($("plans-table").tBodies[0]).append(...list.map((plan) => el("tr", { dataset: { plan: plan.name } },
      el("td", {}, el("b", {}, plan.name)),
      el("td", {}, plan.stages.join(", ")),
      el("td", {}, throttle(plan)),
      el("td", {}, quota(plan)),
      el("td", {}, String(keys.filter((k) => k.plan === plan.name && k.enabled).length)),
      el("td", { class: "muted small" }, when(plan.created)),
    )));
  }

  function usage(key) {
    // As in API Gateway, a key's requests are counted against a quota only: none, no count.
    if (key.quota === null) return el("span", { class: "muted" }, "no quota, not counted");
    const share = Math.min(1, key.used / key.quota);
    return el("div", { class: `meter${share >= 1 ? " full" : ""}` },
      el("div", { class: "progress" }, el("div", { class: "progress-bar", style: null, dataset: { share } })),
      el("span", { class: "usage-text" }, `${key.used} / ${key.quota}`));
  }

  function renderKeys(keys) {
    const body = clear($("keys-table").tBodies[0]);
    for (const key of [...keys].reverse()) {
      body.append(el("tr", { dataset: { key: key.id, name: key.name } },
        el("td", {}, el("b", {}, key.name)),
        el("td", { class: "mono hide-narrow" }, `${key.prefix}…`),
        el("td", {}, key.plan || "–"),
        el("td", {}, usage(key)),
        el("td", { class: "muted small hide-narrow" }, when(key.created)),
        el("td", { class: "hide-narrow" },
          el("span", { class: `badge ${key.enabled ? "ok" : "error"}` }, key.enabled ? "active" : "revoked")),
        el("td", { class: "actions" }, key.enabled
          ? el("button", { class: "button danger small", type: "button", onclick: () => revoke(key) }, "Revoke") : null),
      ));
    }
    for (const bar of body.querySelectorAll(".progress-bar")) bar.style.width = `${bar.dataset.share * 100}%`;
  }

  async function revoke(key) {
    const ok = await confirmAction(`Revoke ${key.name}?`,
      `Callers using the key ${key.prefix}… get 403 Forbidden from now on. This cannot be undone.`, "Revoke");
    if (!ok) return;
    try {
      await api("DELETE", `/keys/${encodeURIComponent(key.id)}`);
      toast(`Key ${key.name} revoked.`);
      await load();
    } catch (error) { showError(error); }
  }

  $("key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = $("key-name").value.trim();
    try {
      const key = await api("POST", "/keys", { name, plan: $("key-plan").value || null });
      $("new-key").hidden = false;
      $("new-key-name").textContent = key.name;
      $("new-key-value").textContent = key.value;
      addCopyButtons($("new-key"));
      $("key-name").value = "";
      await load();
    } catch (error) { showError(error); }
  });

  $("plan-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const number = (id) => ($(id).value === "" ? null : Number($(id).value));
    const rate = number("plan-rate");
    let burst = number("plan-burst");
    if (rate !== null && burst === null) burst = Math.max(1, Math.floor(rate));
    const limit = number("plan-quota");
    const body = {
      name: $("plan-name").value.trim(), rate, burst,
      quota: limit !== null ? `${limit}/${$("plan-period").value}` : null,
      stages: $("plan-stages").value.split(",").map((s) => s.trim()).filter(Boolean),
    };
    try {
      const plan = await api("POST", "/plans", body);
      toast(`Plan ${plan.name} created: throttle ${throttle(plan)}, quota ${quota(plan)}, ${stages(plan)}.`);
      event.target.reset();
      await load();
      $("key-plan").value = plan.name;
    } catch (error) { showError(error); }
  });

  load();
  // Usage moves while callers call; not while the user is filling in a form.
  setInterval(() => { if (!document.querySelector("form:focus-within")) load(); }, 5000);
})();
