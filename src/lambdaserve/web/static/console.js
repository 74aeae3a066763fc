// lambdaserve console: what every page shares. The pages talk to the admin API only,
// with the session cookie and this page's CSRF token; DOM is built with createElement,
// never from HTML strings, so no value from the server is ever parsed as markup.
"use strict";

const LS = (() => {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content || "";
  const csrfToken = meta("csrf-token");

  class APIError extends Error {
    constructor(status, data) {
      super((data && data.message) || `The server answered ${status}.`);
      this.status = status;
      this.data = data || {};
    }
  }

  async function api(method, path, body) {
    const options = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (method !== "GET") options.headers["X-CSRF-Token"] = csrfToken;
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(`/_/api${path}`, options);
    let data = null;
    try { data = await response.json(); } catch { data = null; }
    if (response.status === 401) {
      location.href = `/_/signin?next=${encodeURIComponent(location.pathname)}`;
    }
    if (!response.ok) throw new APIError(response.status, data);
    return data;
  }

  // el("td", {class: "mono", title: x}, "text", childNode, ...)
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else if (name === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

  function toast(message, kind = "info") {
    const box = document.getElementById("toasts");
    if (!box) return;
    const item = el("div", { class: `toast ${kind}`, role: "status" }, message);
    box.append(item);
    setTimeout(() => item.remove(), 5000);
  }

  function showError(error) {
    const hint = error.data && error.data.hint ? ` ${error.data.hint}` : "";
    toast(`${error.message}${hint}`, "error");
  }

  function confirmAction(title, text, okLabel = "Confirm") {
    const dialog = document.getElementById("confirm-dialog");
    document.getElementById("confirm-title").textContent = title;
    document.getElementById("confirm-text").textContent = text;
    document.getElementById("confirm-ok").textContent = okLabel;
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.returnValue = "";
      dialog.showModal();
    });
  }

  async function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return;
    }
    const area = el("textarea", { readonly: true, class: "offscreen" });
    area.value = text;
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }

  function copyButton(getText, label = "Copy") {
    const button = el("button", { class: "button small", type: "button" }, label);
    button.addEventListener("click", async () => {
      try {
        await copyText(typeof getText === "function" ? getText() : getText);
        button.textContent = "Copied";
      } catch {
        button.textContent = "Select and copy";
      }
      setTimeout(() => { button.textContent = label; }, 1600);
    });
    return button;
  }

  // Every <div class="copy-line"> gets a copy button for its <code>.
  function addCopyButtons(root = document) {
    for (const line of root.querySelectorAll(".copy-line")) {
      if (line.querySelector("button")) continue;
      const code = line.querySelector("code");
      line.append(copyButton(() => code.textContent));
    }
  }

  function bytes(n) {
    if (n === null || n === undefined) return "?";
    // Decimal units (1 MB = 1,000,000 bytes), as the file chooser and the CLI show them.
    const units = ["B", "kB", "MB", "GB"];
    let value = n;
    let unit = 0;
    while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
    return `${value.toFixed(unit && value < 10 ? 1 : 0)} ${units[unit]}`;
  }

  function when(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
  }

  function clock(seconds) { return new Date(seconds * 1000).toLocaleTimeString(); }

  document.addEventListener("DOMContentLoaded", () => addCopyButtons());
  return { api, el, clear, toast, showError, confirmAction, copyButton, addCopyButtons, bytes, when, clock,
    meta, APIError };
})();
