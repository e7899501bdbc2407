// Admin policy forms (h6): PUT /admin/policies/{key} with the session's CSRF header,
// then reload so the table shows what the server now resolves.
"use strict";
(() => {
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  function parseValue(text) {
    const t = text.trim().toLowerCase();
    if (["none", "null", "unlimited", "never"].includes(t)) return null;
    if (t.includes(",")) return t.split(",").map((p) => Number(p.trim()));
    return Number(t);
  }
  for (const form of document.querySelectorAll("[data-policy-form]")) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const error = form.querySelector("[data-form-error]");
      error.hidden = true;
      const data = new FormData(form);
      const body = { scope: data.get("scope"), value: parseValue(String(data.get("value") || "")), reason: String(data.get("reason") || "") };
      const scopeId = String(data.get("scope_id") || "").trim();
      if (scopeId) body.scope_id = scopeId;
      const at = String(data.get("effective_at") || "");
      if (at) body.effective_at = `${at}:00Z`;
      const response = await fetch(`/admin/policies/${encodeURIComponent(data.get("key"))}`, {
        method: "PUT", credentials: "same-origin",
        headers: { "content-type": "application/json", accept: "application/json", "x-csrf-token": csrf() },
        body: JSON.stringify(body),
      });
      if (response.ok) { window.location.reload(); return; }
      const answer = await response.json().catch(() => ({}));
      error.textContent = answer.detail || `The server refused (${response.status}).`;
      error.hidden = false;
    });
  }
})();
