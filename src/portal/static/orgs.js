// Organisation pages (issue 13): forms and buttons that send one request to the JSON
// API (with the session's CSRF header and an Idempotency-Key), then show or go on.
"use strict";
(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const csrf = () => ($('meta[name="csrf-token"]') || {}).content || "";
  const key = () => (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random());

  async function send(method, path, body) {
    const headers = { accept: "application/json", "x-csrf-token": csrf(), "Idempotency-Key": key() };
    const init = { method, credentials: "same-origin", headers };
    if (body !== undefined) { headers["content-type"] = "application/json"; init.body = JSON.stringify(body); }
    const response = await fetch(path, init);
    const text = await response.text();
    let data = {};
    try { data = text ? JSON.parse(text) : {}; } catch (_) { data = { detail: text.slice(0, 300) }; }
    return { ok: response.ok, status: response.status, body: data };
  }

  function fields(form) {
    const body = {};
    for (const input of form.querySelectorAll("input[name], select[name]")) {
      const raw = input.value.trim();
      if (input.hasAttribute("data-number")) body[input.name] = raw === "" ? null : Number(raw);
      else body[input.name] = raw;
    }
    return body;
  }

  function then(action, answer) {
    if (action === "reload") window.location.reload();
    else if (action === "open-org") window.location.assign(`/app/orgs/${answer.body.id || answer.body.org_id}`);
    else if (action.startsWith("go:")) window.location.assign(action.slice(3));
    else if (action === "show-invitation") {
      const box = $("[data-invitation]");
      $("[data-invitation-link]", box).value = `${window.location.origin}/app/invitations/${answer.body.token}`;
      box.hidden = false;
    }
  }

  function showError(message) {
    const box = $("[data-form-error]");
    if (box) { box.textContent = message || ""; box.hidden = !message; }
  }

  async function act(node, body) {
    if (node.dataset.confirm && !window.confirm(node.dataset.confirm)) return;
    showError("");
    const answer = await send(node.dataset.method, node.dataset.path, body);
    if (!answer.ok) { showError(answer.body.detail || `Something went wrong (${answer.status}).`); return; }
    then(node.dataset.then || "", answer);
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const form of document.querySelectorAll("form[data-api-form]")) {
      form.addEventListener("submit", (event) => { event.preventDefault(); act(form, fields(form)); });
    }
    for (const button of document.querySelectorAll("[data-api-button]")) {
      button.addEventListener("click", () => act(button, undefined));
    }
  });
})();
