// Webhook admin pages and the auto top-up page (h7): their buttons call the JSON API.
(() => {
  "use strict";
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];
  const csrf = () => ($('meta[name="csrf-token"]') || {}).content || "";

  async function call(method, path, body) {
    const headers = { "X-CSRF-Token": csrf(), "Idempotency-Key": crypto.randomUUID() };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let answer = null;
    try { answer = await response.json(); } catch (_) { answer = null; }
    return { ok: response.ok, status: response.status, body: answer };
  }
  function fail(answer) {
    const box = $("[data-form-error]");
    if (!box) return;
    box.textContent = (answer.body && answer.body.detail) || `The server answered ${answer.status}.`;
    box.hidden = false;
  }

  const form = $("[data-webhook-form]");
  if (form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const events = $$('input[name="events"]:checked', form).map((box) => box.value);
      const answer = await call("POST", "/admin/webhooks", { url: form.elements.url.value.trim(), events });
      if (!answer.ok) { fail(answer); return; }
      const shown = $("[data-webhook-secret]");
      $("[data-secret-id]", shown).textContent = answer.body.id;
      $("[data-secret-value]", shown).textContent = answer.body.secret;
      shown.hidden = false;
      $("[data-form-error]").hidden = true;
    });
  }
  for (const button of $$("[data-delete-endpoint]")) {
    button.addEventListener("click", async () => {
      const answer = await call("DELETE", `/admin/webhooks/${button.dataset.deleteEndpoint}`);
      if (answer.ok) button.closest("tr").remove(); else fail(answer);
    });
  }
  for (const button of $$("[data-redeliver]")) {
    button.addEventListener("click", async () => {
      const [endpoint, delivery] = button.dataset.redeliver.split("/");
      const answer = await call("POST", `/admin/webhooks/${endpoint}/deliveries/${delivery}/retry`);
      if (!answer.ok) { fail(answer); return; }
      button.textContent = "Queued";
      button.disabled = true;
    });
  }

  const topup = $("[data-auto-topup-form]");
  if (topup) {
    topup.addEventListener("submit", async (event) => {
      event.preventDefault();
      const api = $("[data-auto-topup]").dataset.api;  // the user's, or an org's (h14)
      const answer = await call("PUT", api, {
        enabled: topup.elements.enabled.checked,
        threshold_rcc: Number(topup.elements.threshold_rcc.value),
        pack: topup.elements.pack.value,
      });
      if (!answer.ok) { fail(answer); return; }
      $("[data-saved]", topup).hidden = false;
      $("[data-form-error]", topup).hidden = true;
    });
  }
  const portal = $("[data-billing-portal]");
  if (portal) {
    portal.addEventListener("click", async () => {
      const section = $("[data-auto-topup]");
      const answer = await call("POST", section ? section.dataset.portalApi : "/billing/portal");
      if (answer.ok) window.location.assign(answer.body.url); else fail(answer);
    });
  }
})();
