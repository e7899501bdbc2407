// RCC portal: the one script. Pages are rendered on the server; this file sends the
// changes to the JSON API (with the session's CSRF header) and keeps what is on screen
// current by polling the API: the balance in the header, job status, arriving credits.
"use strict";
(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  const UNFINISHED = ["created", "queued", "running"];
  const GRANTS = ["TOPUP_GRANT", "SUBSCRIPTION_GRANT"];
  const TYPES = { IMAGE_TASK: "Image", VIDEO_TASK: "Video" };

  // --- talking to the API -------------------------------------------------------------
  const csrf = () => ($('meta[name="csrf-token"]') || {}).content || "";

  function randomKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function api(method, path, body, headers = {}) {
    const init = { method, credentials: "same-origin", headers: { accept: "application/json", ...headers } };
    if (method !== "GET") init.headers["x-csrf-token"] = csrf();
    if (body !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (_) {
      return { ok: false, status: 0, body: { detail: "Could not reach RCC. Check your connection and try again." } };
    }
    const text = await response.text();
    let data = {};
    if (text) {
      try { data = JSON.parse(text); } catch (_) { data = { detail: text.slice(0, 300) }; }
    }
    return { ok: response.ok, status: response.status, body: data };
  }

  // Repeat `fn` every `ms` (paused while the tab is hidden); `fn` returning false stops it.
  function every(ms, fn) {
    let stopped = false;
    const tick = async () => {
      if (stopped) return;
      if (!document.hidden && (await fn()) === false) { stopped = true; return; }
      setTimeout(tick, typeof ms === "function" ? ms() : ms);
    };
    setTimeout(tick, typeof ms === "function" ? ms() : ms);
    return () => { stopped = true; };
  }

  // --- formatting, as the server formats ------------------------------------------------
  const rcc = (n) => `${Number(n).toLocaleString("en-US")} RCC`;
  const signed = (n) => (n > 0 ? `+${n.toLocaleString("en-US")}` : n < 0 ? `\u2212${(-n).toLocaleString("en-US")}` : "0");
  function duration(ms) {
    if (ms === null || ms === undefined) return "—";
    if (ms < 1000) return `${ms} ms`;
    const s = ms / 1000;
    if (s < 60) return `${s.toFixed(1)} s`;
    const min = Math.floor(s / 60), sec = Math.floor(s % 60);
    if (min < 60) return `${min} min ${String(sec).padStart(2, "0")} s`;
    return `${Math.floor(min / 60)} h ${String(min % 60).padStart(2, "0")} min`;
  }
  function when(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    const p = (n) => String(n).padStart(2, "0");
    return `${d.getUTCFullYear()}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())} UTC`;
  }
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
    }
    for (const child of children) node.append(child);
    return node;
  }
  function showError(root, message) {
    const box = $("[data-form-error]", root) || $("[data-form-error]");
    if (!box) { window.alert(message); return; }
    box.textContent = message || "";
    box.hidden = !message;
  }
  const problem = (answer, fallback) => (answer.body && answer.body.detail) || fallback || `Something went wrong (${answer.status}).`;

  function setStatus(badge, status) {
    badge.textContent = status;
    badge.className = `status status-${status}`;
  }

  // --- the header: live balance and the low-balance banner ------------------------------
  let balance = null;
  function showBalance(value) {
    balance = value;
    for (const node of $$("[data-balance]")) {
      if (node.textContent !== rcc(value)) node.textContent = rcc(value); // announce changes only
    }
    const banner = $("[data-low-banner]");
    const threshold = Number(document.body.dataset.lowThreshold || 0);
    if (banner) { // the billing state (rcc.domain.billing): depleted, low_balance, healthy
      const state = value <= 0 ? "depleted" : value <= threshold ? "low_balance" : "healthy";
      banner.hidden = state === "healthy";
      banner.dataset.billingState = state;
      for (const line of $$("[data-when]", banner)) line.hidden = line.dataset.when !== state;
    }
    document.dispatchEvent(new CustomEvent("rcc:balance", { detail: value }));
  }
  async function refreshBalance() {
    const org = document.body.dataset.workspaceOrg; // the header shows the wallet in use
    const answer = await api("GET", org ? `/orgs/${org}` : "/me");
    if (answer.status === 401) return false; // signed out elsewhere: stop asking
    if (answer.ok) showBalance(answer.body.balance_rcc);
    return true;
  }
  function liveBalance() {
    if (!document.body.hasAttribute("data-live-balance")) return;
    const shown = $("[data-balance]");
    if (shown) balance = Number(shown.textContent.replace(/[^0-9-]/g, ""));
    every(5000, refreshBalance);
    document.addEventListener("visibilitychange", () => { if (!document.hidden) refreshBalance(); });
  }

  function signOut() {
    for (const button of $$("[data-sign-out]")) {
      button.addEventListener("click", async () => {
        await api("POST", "/auth/logout");
        window.location.assign("/app/signin");
      });
    }
  }

  // --- sign in, sign up ---------------------------------------------------------------
  function authForms() {
    for (const form of $$("form[data-auth]")) {
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const email = form.elements.email.value.trim(), password = form.elements.password.value;
        if (!email || !password) { showError(form, "Enter your email and password."); return; }
        const button = $("button[type=submit]", form);
        button.disabled = true;
        showError(form, "");
        const answer = await api("POST", `/auth/${form.dataset.auth}`, { email, password });
        if (answer.ok) { window.location.assign(form.dataset.next || "/app/run"); return; }
        button.disabled = false;
        const messages = { 401: "Wrong email or password.", 429: problem(answer) };
        showError(form, messages[answer.status] || problem(answer));
      });
    }
  }

  // --- run ------------------------------------------------------------------------------
  const SAVED = "rcc.workflows";
  const ownWorkflows = () => { try { return JSON.parse(localStorage.getItem(SAVED) || "{}"); } catch (_) { return {}; } };

  function runForm() {
    const form = $("form[data-run]");
    if (!form) return;
    const examples = JSON.parse(($("#rcc-examples") || {}).textContent || "{}");
    const text = $("[data-workflow]", form), select = $("[data-saved]", form), forget = $("[data-forget-workflow]", form);
    const confirmBox = $("[data-confirm]", form), short = $("[data-short]");
    let key = null;
    const chosen = () => $("input[name=type]:checked", form);
    const cost = () => Number(chosen().dataset.cost);
    const showCost = () => { $("[data-cost-shown]", form).textContent = rcc(cost()); confirmBox.hidden = true; };

    function listOwn() {
      const group = $("[data-saved-own]", form);
      group.replaceChildren(...Object.keys(ownWorkflows()).sort().map((name) => el("option", { value: `own:${name}`, text: name })));
      group.hidden = !group.children.length;
    }
    function load(entry) {
      text.value = JSON.stringify(entry.workflow, null, 2);
      const radio = $(`input[name=type][value="${entry.type}"]`, form);
      if (radio) radio.checked = true;
      showCost();
    }
    select.addEventListener("change", () => {
      const [from, name] = [select.value.split(":")[0], select.value.slice(select.value.indexOf(":") + 1)];
      forget.hidden = from !== "own";
      if (from === "example" && examples[name]) load(examples[name]);
      if (from === "own" && ownWorkflows()[name]) load(ownWorkflows()[name]);
    });
    forget.addEventListener("click", () => {
      const all = ownWorkflows();
      delete all[select.value.slice(4)];
      localStorage.setItem(SAVED, JSON.stringify(all));
      select.value = "";
      forget.hidden = true;
      listOwn();
    });
    $("[data-save-workflow]", form).addEventListener("click", () => {
      const workflow = parse();
      if (!workflow) return;
      const name = (window.prompt("Name for this workflow:") || "").trim();
      if (!name) return;
      localStorage.setItem(SAVED, JSON.stringify({ ...ownWorkflows(), [name]: { type: chosen().value, workflow } }));
      listOwn();
      select.value = `own:${name}`;
      forget.hidden = false;
    });
    $("[data-upload]", form).addEventListener("change", async (event) => {
      const file = event.target.files[0];
      if (!file) return;
      text.value = await file.text();
      select.value = "";
      if (parse()) showError(form, "");
    });
    for (const radio of $$("input[name=type]", form)) radio.addEventListener("change", showCost);
    text.addEventListener("input", () => { confirmBox.hidden = true; });

    function parse() {
      const raw = text.value.trim();
      if (!raw) { showError(form, "Paste or upload a ComfyUI workflow first (API format)."); text.focus(); return null; }
      let workflow;
      try { workflow = JSON.parse(raw); } catch (error) {
        showError(form, `That is not valid JSON: ${error.message}`); text.focus(); return null;
      }
      if (workflow && workflow.prompt && typeof workflow.prompt === "object") workflow = workflow.prompt;
      if (!workflow || typeof workflow !== "object" || Array.isArray(workflow)) {
        showError(form, "The workflow must be a JSON object of nodes."); return null;
      }
      if (Array.isArray(workflow.nodes) && Array.isArray(workflow.links)) {
        showError(form, "This is ComfyUI's editor format. In ComfyUI choose Workflow → Export (API) and use that file.");
        return null;
      }
      showError(form, "");
      return workflow;
    }

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      short.hidden = true;
      if (!parse()) return;
      key = randomKey(); // one key per confirmation: a double click runs the job once
      const label = TYPES[chosen().value].toLowerCase();
      $("[data-confirm-title]", form).textContent = `Run this ${label} job for ${rcc(cost())}?`;
      $("[data-confirm-text]", form).textContent = form.hasAttribute("data-admin")
        ? "As an admin you run jobs without using credits (recorded in the ledger as an admin job)." :
        balance === null ? "" :
        balance >= cost()
          ? `Your balance goes from ${rcc(balance)} to ${rcc(balance - cost())}. If the job fails, the credits come back to you.`
          : `Your balance is ${rcc(balance)}, less than this job costs.`;
      $("[data-confirm-run]", form).textContent = `Run for ${rcc(cost())}`;
      confirmBox.hidden = false;
      confirmBox.focus();
    });
    $("[data-confirm-back]", form).addEventListener("click", () => { confirmBox.hidden = true; text.focus(); });
    $("[data-confirm-run]", form).addEventListener("click", async (event) => {
      const workflow = parse();
      if (!workflow) return;
      event.target.disabled = true;
      const wallet = ($("[data-wallet]", form) || {}).value; // an organisation pays, if chosen
      const answer = await api("POST", "/jobs", { type: chosen().value, workflow, ...(wallet ? { wallet } : {}) }, { "Idempotency-Key": key });
      event.target.disabled = false;
      if (answer.status === 201) { window.location.assign(`/app/jobs/${answer.body.id}`); return; }
      confirmBox.hidden = true;
      if (answer.status === 402) {
        const b = answer.body;
        $("[data-short-text]").textContent = b.error === "budget_exceeded" // an org's budget (h5)
          ? `${b.detail}. Nothing was charged.`
          : `Not enough credits: this ${TYPES[chosen().value].toLowerCase()} job needs ${rcc(b.cost_rcc)} and your balance is ${rcc(b.balance_rcc)}. Nothing was charged.`;
        short.hidden = false;
        if (b.balance_rcc !== undefined) showBalance(b.balance_rcc);
        $("a", short).focus();
        return;
      }
      const messages = {
        422: `ComfyUI cannot run this workflow: ${problem(answer)}`,
        429: `${problem(answer)} Wait for one of your jobs to finish, then try again.`,
      };
      showError(form, messages[answer.status] || problem(answer));
    });
    listOwn();
  }

  // --- jobs: live status without reloading --------------------------------------------
  function tickDurations() {
    setInterval(() => {
      for (const cell of $$("[data-duration][data-started]")) {
        const row = cell.closest("[data-job-id], [data-live-job]");
        const status = row && (row.dataset.jobStatus || ($("[data-status]", row) || {}).textContent);
        if (status !== "running" || !cell.dataset.started) continue;
        cell.textContent = duration(Date.now() - Date.parse(cell.dataset.started));
      }
    }, 1000);
  }

  function jobRow(job) {
    const link = el("a", { href: `/app/jobs/${job.id}` }, el("span", { class: "mono", text: job.id.slice(0, 8) }));
    return el("tr", { "data-job-id": job.id, class: "fresh" },
      el("td", { "data-label": "Job" }, el("span", {}, link, " ", el("span", { class: "muted", text: TYPES[job.type] || job.type }))),
      el("td", { "data-label": "Status" }, el("span", { class: `status status-${job.status}`, "data-status": "", text: job.status })),
      el("td", { class: "num", "data-label": "Duration", "data-duration": "", "data-started": job.started_at || "", text: duration(job.duration_ms) }),
      el("td", { class: "num", "data-label": "Cost", text: rcc(job.cost_rcc) }),
      el("td", { "data-label": "Created" }, el("time", { datetime: job.created_at, text: when(job.created_at) })));
  }

  function liveJobs() {
    const table = $("table[data-live-jobs]");
    if (!table) return;
    const body = $("tbody", table);
    const busy = () => $$("[data-status]", table).some((b) => UNFINISHED.includes(b.textContent));
    every(() => (busy() ? 2000 : 10000), async () => {
      const answer = await api("GET", `/jobs?${table.dataset.query}`);
      if (answer.status === 401) return false;
      if (!answer.ok) return true;
      for (const job of answer.body.items.slice().reverse()) {
        const row = $(`tr[data-job-id="${job.id}"]`, body);
        if (!row) { body.prepend(jobRow(job)); continue; }
        setStatus($("[data-status]", row), job.status);
        const cell = $("[data-duration]", row);
        cell.dataset.started = job.started_at || "";
        if (job.status !== "running") cell.textContent = duration(job.duration_ms);
      }
      return true;
    });
  }

  function liveJob() {
    const section = $("[data-live-job]");
    if (!section) return;
    const id = section.dataset.liveJob;
    const cancel = $("[data-cancel-job]");
    if (cancel) {
      cancel.addEventListener("click", async () => {
        if (!window.confirm("Cancel this job? Its credits come back to you.")) return;
        cancel.disabled = true;
        const answer = await api("POST", `/jobs/${id}/cancel`);
        if (answer.ok) { window.location.reload(); return; }
        cancel.disabled = false;
        showError(section, problem(answer));
      });
    }
    if (!UNFINISHED.includes(section.dataset.jobStatus)) return;
    let lines = $$("[data-log] li:not(.muted)").length;
    every(1500, async () => {
      const [job, log] = await Promise.all([api("GET", `/jobs/${id}`), api("GET", `/jobs/${id}/logs`)]);
      if (job.status === 401) return false;
      if (job.ok) {
        if (!UNFINISHED.includes(job.body.status)) { window.location.reload(); return false; }
        section.dataset.jobStatus = job.body.status;
        setStatus($("[data-status]", section), job.body.status);
        const waiting = $("[data-waiting]");
        if (waiting) {
          waiting.hidden = job.body.status === "running";
          const reason = job.body.waiting_reason;
          if (reason) $("[data-waiting-text]").textContent = reason;
        }
        $("[data-duration]", section).dataset.started = job.body.started_at || "";
      }
      if (log.ok && log.body.lines.length !== lines) {
        lines = log.body.lines.length;
        $("[data-log]").replaceChildren(...log.body.lines.map((line) =>
          el("li", { class: `log-${line.source}` },
            el("time", { datetime: line.at, text: new Date(line.at).toISOString().slice(11, 19) }),
            el("span", { class: "log-kind", text: line.kind }),
            el("span", { class: "log-message", text: line.message }))));
      }
      return true;
    });
  }

  // --- buying and watching the credit arrive ------------------------------------------
  const CHECKOUT = "rcc.checkout";

  function buy() {
    const section = $("[data-buy]");
    if (!section) return;
    for (const button of $$("[data-checkout]", section)) {
      button.addEventListener("click", async () => {
        showError(section, "");
        for (const b of $$("[data-checkout]", section)) b.disabled = true;
        const kind = button.dataset.checkout;
        const body = kind === "topup" ? { pack: button.dataset.pack } : { plan: button.dataset.plan, interval: button.dataset.interval };
        if (section.dataset.wallet) body.wallet = section.dataset.wallet; // an organisation buys
        const answer = await api("POST", `/checkout/${kind}`, body, { "Idempotency-Key": randomKey() });
        if (answer.ok && answer.body.url) {
          sessionStorage.setItem(CHECKOUT, JSON.stringify({ mark: Number(section.dataset.ledgerMark) }));
          window.location.assign(answer.body.url);
          return;
        }
        for (const b of $$("[data-checkout]", section)) b.disabled = false;
        showError(section, problem(answer, "The payment page could not be opened. Try again in a moment."));
      });
    }
  }

  function arrival() {
    if ($("[data-cancelled]")) sessionStorage.removeItem(CHECKOUT);
    const box = $("[data-arrival]");
    if (!box) return;
    let mark = null;
    try { mark = JSON.parse(sessionStorage.getItem(CHECKOUT) || "null"); } catch (_) { mark = null; }
    const started = Date.now();
    const query = new URLSearchParams({ limit: "50" });
    if (!mark) query.set("since", box.dataset.since);
    const check = async () => {
      const answer = await api("GET", `/ledger?${query}`);
      if (answer.status === 401) return false;
      const grants = answer.ok
        ? answer.body.items.filter((e) => GRANTS.includes(e.reason) && (!mark || e.id > mark.mark))
        : [];
      if (grants.length) {
        const total = grants.reduce((sum, e) => sum + e.delta, 0);
        $("[data-arrival-title]", box).textContent = "Your credits have arrived";
        $("[data-arrival-text]", box).textContent = `${signed(total)} RCC added to your balance.`;
        const list = $("[data-arrived]", box);
        list.replaceChildren(...grants.map((e) => el("li", {
          text: `${signed(e.delta)} RCC — ${e.reason === "TOPUP_GRANT" ? "credit pack" : "plan credits"}, ${when(e.created_at)}`,
        })));
        list.hidden = false;
        sessionStorage.removeItem(CHECKOUT);
        await refreshBalance();
        return false;
      }
      if (Date.now() - started > 180000) {
        $("[data-arrival-text]", box).textContent =
          "This is taking longer than usual. You can leave this page: your credits appear on the Credits page as soon as Stripe confirms the payment.";
      }
      return true;
    };
    check().then((again) => { if (again) every(() => (Date.now() - started > 180000 ? 10000 : 1500), check); });
  }

  // --- admin: one user's lots, a grant that may expire (h2) -------------------------------
  function adminGrant() {
    const form = $("form[data-grant]");
    if (!form) return;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const delta = Number(form.elements.rcc_delta.value), reason = form.elements.reason.value.trim();
      if (!Number.isInteger(delta) || delta <= 0) { showError(form, "Enter a whole number of RCC above zero."); return; }
      if (!reason) { showError(form, "A reason is required; it goes into the ledger."); return; }
      const body = { rcc_delta: delta, reason };
      // The input is read as UTC (the page says so), sent with its zone.
      if (form.elements.expires_at.value) body.expires_at = `${form.elements.expires_at.value}:00Z`;
      const button = $("button[type=submit]", form);
      button.disabled = true;
      const answer = await api("PATCH", `/admin/users/${form.dataset.grant}`, body);
      button.disabled = false;
      if (!answer.ok) { showError(form, problem(answer)); return; }
      window.location.reload();
    });
  }

  // --- admin: users ---------------------------------------------------------------------
  function adminUsers() {
    const said = $("[data-live-message]");
    for (const form of $$("form[data-adjust]")) {
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const delta = Number(form.elements.rcc_delta.value), reason = form.elements.reason.value.trim();
        if (!Number.isInteger(delta) || delta === 0) { showError(form, "Enter a whole number of RCC, like 10 or -5."); return; }
        if (!reason) { showError(form, "A reason is required; it goes into the ledger."); return; }
        const button = $("button[type=submit]", form);
        button.disabled = true;
        const answer = await api("PATCH", `/admin/users/${form.dataset.adjust}`, { rcc_delta: delta, reason });
        button.disabled = false;
        if (!answer.ok) { showError(form, problem(answer)); return; }
        showError(form, "");
        const row = form.closest("tr");
        $("[data-user-balance]", row).textContent = rcc(answer.body.balance_rcc);
        form.reset();
        form.closest("details").open = false;
        if (said) said.textContent = `${row.dataset.email} now has ${rcc(answer.body.balance_rcc)}.`;
        refreshBalance();
      });
    }
    for (const button of $$("[data-toggle-admin]")) {
      button.addEventListener("click", async () => {
        const row = button.closest("tr"), makeAdmin = button.dataset.isAdmin !== "true";
        const question = makeAdmin ? `Make ${row.dataset.email} an admin?` : `Remove admin rights from ${row.dataset.email}?`;
        if (!window.confirm(question)) return;
        button.disabled = true;
        const answer = await api("PATCH", `/admin/users/${button.dataset.toggleAdmin}`, { is_admin: makeAdmin });
        button.disabled = false;
        if (!answer.ok) { window.alert(problem(answer)); return; }
        button.dataset.isAdmin = String(answer.body.is_admin);
        button.textContent = answer.body.is_admin ? "Remove admin" : "Make admin";
        $("[data-user-admin]", row).textContent = answer.body.is_admin ? "yes" : "no";
        if (said) said.textContent = `${row.dataset.email} is ${answer.body.is_admin ? "now" : "no longer"} an admin.`;
      });
    }
  }

  // --- admin: models and ComfyUI (their JSON API drives everything) ---------------------
  function bytes(n) {
    if (n === null || n === undefined) return "—";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0, v = Number(n);
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
    return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
  }
  const progressOf = (m) => (m.bytes_done !== null && m.bytes_total ? m.bytes_done / m.bytes_total : null);

  function adminModels() {
    const section = $("[data-models]");
    if (!section) return;
    const state = $("[data-models-state]", section), table = $("[data-models-table]", section), body = $("[data-models-body]", section);
    let installing = false;
    async function load() {
      const answer = await api("GET", "/admin/models");
      if (answer.status === 401) return false;
      if (!answer.ok) {
        state.textContent = answer.status === 404 || answer.status === 405
          ? "Model management is not available on this server yet."
          : `Could not load the models: ${problem(answer)}`;
        table.hidden = true;
        return true;
      }
      const models = answer.body.items || [];
      installing = false;
      body.replaceChildren(...models.map((m) => {
        const status = m.status;
        const progress = progressOf(m);
        const busy = !["installed", "failed"].includes(status);
        installing = installing || busy;
        const cell = el("td", {}, el("span", { class: `status status-${status}`, text: status }));
        if (busy && progress !== null) {
          cell.append(" ", el("progress", { max: "1", value: String(progress), "aria-label": `${m.name} download` }),
            ` ${Math.round(progress * 100)}%`);
        }
        if (m.error) cell.append(el("div", { class: "small detail", text: m.error }));
        const remove = el("button", { type: "button", class: "small danger", text: "Delete" });
        remove.addEventListener("click", async () => {
          if (!window.confirm(`Delete ${m.name}?`)) return;
          remove.disabled = true;
          const gone = await api("DELETE", `/admin/models/${encodeURIComponent(m.name)}`);
          if (!gone.ok) window.alert(problem(gone));
          load();
        });
        cell.setAttribute("data-label", "Status");
        return el("tr", { "data-model": m.name },
          el("td", { class: "mono small", "data-label": "Name", text: m.name }),
          el("td", { "data-label": "Kind", text: m.kind || "—" }),
          el("td", { class: "num", "data-label": "Size", text: bytes(m.size_bytes ?? (busy ? m.bytes_total : null)) }),
          cell, el("td", { "data-label": "" }, remove));
      }));
      table.hidden = !models.length;
      state.textContent = models.length ? "" : "No models installed yet. Install one by URL above.";
      return true;
    }
    const form = $("form[data-install-model]", section);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const url = form.elements.url.value.trim();
      if (!/^https?:\/\//.test(url)) { showError(form, "Enter the http(s) URL of the model file."); return; }
      const button = $("button[type=submit]", form);
      button.disabled = true;
      const answer = await api("POST", "/admin/models/install", { url, kind: form.elements.kind.value });
      button.disabled = false;
      if (!answer.ok) { showError(form, problem(answer)); return; }
      showError(form, "");
      form.reset();
      load();
    });
    load().then((again) => { if (again !== false) every(() => (installing ? 1500 : 10000), load); });
  }

  function adminComfyui() {
    const section = $("[data-comfyui]");
    if (!section) return;
    const badge = $("[data-comfyui-badge]", section), state = $("[data-comfyui-state]", section), facts = $("[data-comfyui-facts]", section);
    const buttons = $$("[data-comfyui-action]", section);
    const yes = (v) => (v ? "yes" : "no");
    function show(status) {
      const name = status.state || status.status || (status.running ? "running" : "unknown");
      setStatus(badge, String(name));
      const rows = [];
      const add = (label, value) => {
        if (value === null || value === undefined || value === "") return;
        rows.push(el("div", {}, el("dt", { text: label }), el("dd", { text: String(value) })));
      };
      add("Container", status.name);
      add("Image", status.image);
      add("Exists", status.exists === undefined ? null : yes(status.exists));
      add("Started", status.started_at);
      add("Container id", status.container_id && status.container_id.slice(0, 12));
      add("Ports", (status.ports || []).map((p) => `${p.host_ip}:${p.host_port} → ${p.container_port}`).join(", "));
      const probe = status.comfyui;
      if (probe) {
        add("ComfyUI URL", probe.url);
        add("ComfyUI answers", yes(probe.reachable));
        add("Queue", probe.reachable ? `${probe.queue_running ?? 0} running, ${probe.queue_pending ?? 0} waiting` : null);
        add("Problem", probe.error);
      }
      facts.replaceChildren(...rows);
    }
    async function load() {
      const answer = await api("GET", "/admin/comfyui/status");
      if (answer.status === 401) return false;
      if (answer.ok) {
        show(answer.body);
        if (state.hasAttribute("data-loading") || state.classList.contains("bad")) {
          state.removeAttribute("data-loading");
          state.className = "muted";
          state.textContent = "";
        }
        return true;
      }
      setStatus(badge, "unknown");
      state.className = "notice bad";
      state.textContent = answer.status === 404 || answer.status === 405
        ? "ComfyUI control is not available on this server yet."
        : `Could not read ComfyUI's status: ${problem(answer)}`;
      return true;
    }
    for (const button of buttons) {
      button.addEventListener("click", async () => {
        const action = button.dataset.comfyuiAction;
        const verb = `${action[0].toUpperCase()}${action.slice(1)}`;
        if (action !== "start" && !window.confirm(`${verb} ComfyUI?`)) return;
        for (const b of buttons) b.disabled = true;
        state.textContent = `${verb}: working…`;
        const answer = await api("POST", `/admin/comfyui/${action}`);
        for (const b of buttons) b.disabled = false;
        showError(section, answer.ok ? "" : `${verb} failed: ${problem(answer)}`);
        state.textContent = answer.ok ? answer.body.detail || `${verb}: done.` : "";
        if (answer.ok && answer.body.container) show(answer.body.container);
        else load();
      });
    }
    load().then((again) => { if (again !== false) every(3000, load); });
  }

  window.RCC = { api, problem }; // for the pages' own scripts (admin_backends.js)
  // A select that applies itself (the header's workspace switcher, filters): no inline
  // handlers, which the Content-Security-Policy forbids.
  function autoSubmit() {
    for (const select of $$("select[data-autosubmit]")) {
      select.addEventListener("change", () => select.form.submit());
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    autoSubmit();
    liveBalance();
    signOut();
    authForms();
    runForm();
    tickDurations();
    liveJobs();
    liveJob();
    buy();
    arrival();
    adminUsers();
    adminGrant();
    adminModels();
    adminComfyui();
  });
})();
