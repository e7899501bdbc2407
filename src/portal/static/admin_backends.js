// The GPU pool's admin page: add, drain/undrain and remove through the JSON API
// (/admin/backends), with the session's CSRF header (window.RCC.api from app.js),
// then reload the server-rendered table.
"use strict";
(() => {
  function setup() {
    const section = document.querySelector("[data-backends]");
    if (!section || !window.RCC) return;
    const { api, problem } = window.RCC;
    const failed = section.querySelector("[data-backends-error]");
    const show = (where, answer) => { where.textContent = problem(answer); where.hidden = false; };

    const form = section.querySelector("[data-add-backend]");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const error = form.querySelector("[data-form-error]");
      error.hidden = true;
      const tags = form.elements.tags.value.split(",").map((t) => t.trim()).filter(Boolean);
      const body = { url: form.elements.url.value.trim(), slots: Number(form.elements.slots.value || 2), tags };
      const answer = await api("POST", "/admin/backends", body);
      if (!answer.ok) { show(error, answer); return; }
      window.location.reload();
    });

    for (const row of section.querySelectorAll("[data-backend-id]")) {
      const id = encodeURIComponent(row.dataset.backendId);
      const drain = row.querySelector("[data-backend-drain]");
      drain.addEventListener("click", async () => {
        drain.disabled = true;
        const answer = await api("PATCH", `/admin/backends/${id}`, { draining: drain.dataset.backendDrain === "true" });
        if (!answer.ok) { drain.disabled = false; show(failed, answer); return; }
        window.location.reload();
      });
      const remove = row.querySelector("[data-backend-remove]");
      remove.addEventListener("click", async () => {
        if (!window.confirm(`Remove ${row.dataset.url} from the pool? It gets no new jobs.`)) return;
        remove.disabled = true;
        const answer = await api("DELETE", `/admin/backends/${id}`);
        if (!answer.ok) { remove.disabled = false; show(failed, answer); return; }
        window.location.reload();
      });
    }
  }
  document.addEventListener("DOMContentLoaded", setup);
})();
