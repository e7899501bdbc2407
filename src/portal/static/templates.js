// A template's form (h4): uploads go to POST /uploads as they are picked, the price
// comes from the server (POST /templates/{id}/estimate), then POST /jobs runs it.
(() => {
  "use strict";
  const form = document.querySelector("form[data-template-form]");
  if (!form) return;
  const templateId = form.dataset.templateForm;
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const errorBox = form.querySelector("[data-form-error]");
  const confirmBox = form.querySelector("[data-confirm]");
  const price = form.querySelector("[data-price]");
  let key = null;

  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = !text;
  }

  async function send(method, path, body, headers = {}) {
    const init = { method, credentials: "same-origin", headers: { accept: "application/json", "x-csrf-token": csrf(), ...headers } };
    if (body instanceof FormData) init.body = body;
    else if (body !== undefined) { init.headers["content-type"] = "application/json"; init.body = JSON.stringify(body); }
    const response = await fetch(path, init);
    let data = {};
    try { data = await response.json(); } catch (_) { data = {}; }
    return { ok: response.ok, status: response.status, body: data };
  }

  function values() {
    const found = {};
    for (const field of form.querySelectorAll("[data-kind]")) {
      const kind = field.dataset.kind;
      if (kind === "image" || kind === "video") {
        if (field.dataset.uploadId) found[field.name] = field.dataset.uploadId;
      } else if (kind === "integer" || kind === "number" || kind === "seed") {
        if (field.value.trim() !== "") found[field.name] = Number(field.value);
      } else {
        found[field.name] = field.value;
      }
    }
    return found;
  }

  function explain(body) {
    if (body.inputs) return Object.entries(body.inputs).map(([n, why]) => `${n} ${why}`).join("; ");
    return body.detail || "Something went wrong.";
  }

  for (const field of form.querySelectorAll('input[type="file"]')) {
    field.addEventListener("change", async () => {
      const state = form.querySelector(`[data-upload-state="${field.name}"]`);
      delete field.dataset.uploadId;
      if (!field.files.length) return;
      state.textContent = "Uploading…";
      const data = new FormData();
      data.append("file", field.files[0]);
      const answer = await send("POST", "/uploads", data);
      if (answer.ok) {
        field.dataset.uploadId = answer.body.id;
        state.textContent = `Uploaded (${answer.body.width || "?"} × ${answer.body.height || "?"})`;
        state.dataset.uploaded = "true";
      } else {
        state.textContent = "";
        showError(explain(answer.body));
      }
    });
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError("");
    const answer = await send("POST", `/templates/${templateId}/estimate`, values());
    if (!answer.ok) { showError(explain(answer.body)); return; }
    price.textContent = `${answer.body.estimate_rcc} RCC`;
    confirmBox.querySelector("[data-confirm-text]").textContent =
      `This job holds ${answer.body.estimate_rcc} RCC from your balance.`;
    confirmBox.hidden = false;
    confirmBox.focus();
    key = key || (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()));
  });

  form.querySelector("[data-confirm-back]").addEventListener("click", () => { confirmBox.hidden = true; });
  form.querySelector("[data-confirm-run]").addEventListener("click", async () => {
    const answer = await send("POST", "/jobs", { template: templateId, inputs: values() }, { "idempotency-key": key });
    if (answer.ok) { window.location.assign(`/app/jobs/${answer.body.id}`); return; }
    confirmBox.hidden = true;
    key = null;
    showError(explain(answer.body));
  });
})();
