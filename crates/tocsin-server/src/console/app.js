// Tocsin console: a small single-page app over Tocsin's own JSON API. No framework, no build
// step. The session lives in an HttpOnly cookie this script cannot read; the CSRF token is
// kept in memory only (a reload fetches it again). Tokens shown at creation are never put in
// storage, URLs or logs, and are removed from the page when their dialog closes.
"use strict";

(function () {
  const state = { csrf: null, me: null, roles: null, teams: null, permissions: null, routes: null };
  const main = document.getElementById("main");

  // ---- DOM helpers: text is always set as text, never parsed as HTML. ----
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
      else if (k === "class") el.className = v;
      else if (k === "dataset") Object.assign(el.dataset, v);
      else if (v === true) el.setAttribute(k, "");
      else el.setAttribute(k, String(v));
    }
    append(el, children);
    return el;
  }
  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  let uid = 0;
  const nextId = (p) => `${p}-${++uid}`;
  function field(labelText, input, hint) {
    if (!input.id) input.id = nextId("f");
    const hintEl = hint ? h("span", { class: "hint", id: input.id + "-hint" }, hint) : null;
    if (hintEl) input.setAttribute("aria-describedby", hintEl.id);
    return h("div", { class: "field" }, h("label", { for: input.id }, labelText), hintEl ? h("div", {}, hintEl) : null, input);
  }
  // Replaces the page's content; null and false children are left out.
  function render(...children) { main.replaceChildren(); append(main, children); }
  function badge(text, cls) { return h("span", { class: `badge ${cls || text}` }, text); }
  function when(t) {
    if (!t) return "never";
    const d = new Date(t);
    const s = Math.round((d.getTime() - Date.now()) / 1000);
    const abs = Math.abs(s);
    const units = [[86400 * 365, "year"], [86400 * 30, "month"], [86400, "day"], [3600, "hour"], [60, "minute"], [1, "second"]];
    let rel = "just now";
    for (const [n, u] of units) {
      if (abs >= n) { const q = Math.floor(abs / n); rel = s < 0 ? `${q} ${u}${q > 1 ? "s" : ""} ago` : `in ${q} ${u}${q > 1 ? "s" : ""}`; break; }
    }
    return h("time", { datetime: t, title: d.toISOString() }, rel);
  }
  function say(message) {
    const s = document.getElementById("status");
    s.textContent = message;
    clearTimeout(say.timer);
    say.timer = setTimeout(() => { s.textContent = ""; }, 5000);
  }

  // ---- The API: JSON in and out, the CSRF header on every request that can change something. ----
  class ApiError extends Error {
    constructor(status, body) {
      const e = (body && body.error) || {};
      super(e.message || body.message || `HTTP ${status}`);
      this.status = status; this.code = e.code || ""; this.fixes = e.fixes || []; this.fields = e.fields || {};
      this.organizations = e.organizations || [];
    }
  }
  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET" && state.csrf) headers["X-CSRF-Token"] = state.csrf;
    const resp = await fetch(path, { method, headers, credentials: "same-origin", cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await resp.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = { message: text }; }
    if (!resp.ok) {
      const err = new ApiError(resp.status, data || {});
      if (resp.status === 401 && state.me && !path.startsWith("/v1/auth/console/login")) {
        state.me = null; state.csrf = null;
        signIn("Your session has ended (" + (err.code || "401") + "). Sign in again.");
      }
      throw err;
    }
    return data;
  }
  async function listAll(path) {
    const out = [];
    let cursor = null;
    for (let i = 0; i < 20; i++) {
      const sep = path.includes("?") ? "&" : "?";
      const page = await api("GET", `${path}${sep}limit=500${cursor ? "&cursor=" + encodeURIComponent(cursor) : ""}`);
      out.push(...page.data);
      cursor = page.next_cursor;
      if (!cursor) break;
    }
    return out;
  }
  // An error as the API explained it: message, each offending field, and the fixes.
  function errorBox(err) {
    const fields = Object.entries(err.fields || {});
    return h("div", { class: "notice error", role: "alert" },
      h("strong", {}, err.code ? `${err.code}: ` : ""), err.message,
      fields.length ? h("ul", {}, fields.map(([f, r]) => h("li", {}, h("code", {}, f), " ", r))) : null,
      err.fixes && err.fixes.length ? h("ul", {}, err.fixes.map((f) => h("li", {}, f))) : null);
  }
  function clearError(container) { container.querySelectorAll(".notice.error").forEach((n) => n.remove()); }
  function showError(container, err) {
    container.querySelectorAll(".notice.error").forEach((n) => n.remove());
    const box = errorBox(err);
    container.prepend(box);
    box.setAttribute("tabindex", "-1");
    box.focus();
  }

  // ---- Dialogs: native <dialog> (focus moves in, Esc closes), focus returns to the opener. ----
  function openDialog(title, build, opts) {
    const opener = document.activeElement;
    const titleId = nextId("dlg");
    const body = h("div", { class: "dialog-body" }, h("h2", { id: titleId }, title));
    const dlg = h("dialog", { "aria-labelledby": titleId }, body);
    const close = () => dlg.close();
    append(body, [build(close, dlg)]);
    dlg.addEventListener("close", () => {
      if (opts && opts.onClose) opts.onClose();
      dlg.remove();
      if (opener && opener.isConnected) opener.focus();
    });
    document.body.append(dlg);
    dlg.showModal();
    const first = dlg.querySelector("[autofocus]") || dlg.querySelector("input, select, textarea, button");
    if (first) first.focus();
    return dlg;
  }
  function confirmDialog(title, text, action, danger) {
    return new Promise((resolve) => {
      let done = false;
      openDialog(title, (close) => h("div", {},
        h("p", {}, text),
        h("div", { class: "actions" },
          h("button", { type: "button", class: danger ? "danger" : "", onclick: () => { done = true; close(); } }, action),
          h("button", { type: "button", class: "secondary", autofocus: true, onclick: close }, "Cancel"))),
      { onClose: () => resolve(done) });
    });
  }
  // The one place a token is shown: once, with a copy button and a warning. Closing the
  // dialog removes the token from the page.
  function showToken(title, token, what, after) {
    openDialog(title, (close, dlg) => {
      const out = h("output", { id: "new-token", "aria-label": "The new token" }, token);
      const copied = h("span", { class: "hint", role: "status" });
      // The token cannot be shown again, so the first Esc only warns; a second one closes.
      let warned = false;
      dlg.addEventListener("cancel", (ev) => {
        if (warned) return;
        ev.preventDefault();
        warned = true;
        copied.textContent = "This token will not be shown again. Copy it, then choose “I have copied it” (or press Esc again).";
      });
      return h("div", {},
        h("div", { class: "notice warn" }, h("strong", {}, "Copy this token now. "),
          `It is shown only this once: Tocsin keeps only a keyed hash of it and cannot show it again. ${what}`),
        h("div", { class: "token-box" }, out,
          h("button", { type: "button", id: "copy-token", onclick: async () => {
            try {
              await navigator.clipboard.writeText(out.textContent);
              copied.textContent = "Copied to the clipboard.";
            } catch (_) {
              const range = document.createRange(); range.selectNodeContents(out);
              const sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
              copied.textContent = document.execCommand("copy") ? "Copied to the clipboard." : "Selected: press Ctrl+C (or Cmd+C) to copy.";
            }
          } }, "Copy token")),
        copied,
        h("p", { class: "hint" }, "Use it as ", h("code", {}, "Authorization: Bearer <token>"), " (Opsgenie clients: ", h("code", {}, "GenieKey <token>"), ")."),
        h("div", { class: "actions" }, h("button", { type: "button", id: "token-done", onclick: close }, "I have copied it")));
    }, { onClose: () => { const o = document.getElementById("new-token"); if (o) o.textContent = ""; token = null; if (after) after(); } });
  }

  // ---- Reference data, fetched once per page load. ----
  // Narrowest first, so the least privilege is the first choice a person sees.
  async function roles() {
    if (!state.roles) state.roles = (await listAll("/v1/roles")).sort((a, b) => a.permissions.length - b.permissions.length || a.name.localeCompare(b.name));
    return state.roles;
  }
  async function teams(force) { if (!state.teams || force) state.teams = await listAll("/v1/teams").catch(() => []); return state.teams; }
  async function permissions() { if (!state.permissions) state.permissions = (await api("GET", "/v1/permissions")).data; return state.permissions; }
  async function routeList() {
    if (!state.routes) {
      const doc = await api("GET", "/openapi.json");
      state.routes = [];
      for (const [path, ops] of Object.entries(doc.paths)) for (const m of Object.keys(ops)) state.routes.push({ method: m.toUpperCase(), path, summary: ops[m].summary });
    }
    return state.routes;
  }
  const teamName = (id) => { const t = (state.teams || []).find((x) => x.id === id); return t ? t.name : id; };
  async function integrations() { state.integrations = can("integrations:read") ? await listAll("/v1/integrations").catch(() => []) : []; return state.integrations; }
  const integrationName = (id) => { const i = (state.integrations || []).find((x) => x.id === id); return i ? i.name : id; };
  const can = (perm) => state.me && state.me.permissions.includes(perm);

  // ---- Sign-in and the session. ----
  function signIn(message) {
    document.getElementById("top").hidden = true;
    render();
    const email = h("input", { type: "email", name: "email", autocomplete: "username", required: true, autofocus: true });
    const password = h("input", { type: "password", name: "password", autocomplete: "current-password", required: true });
    // A sign-in link may name the organization (`/?organization=ID`): the sign-in goes to it
    // and never asks. (Without it, only the four oldest users holding an email are tried.)
    const linked = new URLSearchParams(location.search).get("organization");
    // Shown only when the email and password sign in to several organizations (409).
    const org = h("select", { name: "organization_id" });
    const orgField = field("Organization", org, "This email and password sign in to more than one organization: choose one.");
    orgField.hidden = true;
    // Another email may sign in to other organizations: ask again.
    email.addEventListener("input", () => { orgField.hidden = true; org.replaceChildren(); });
    const form = h("form", { class: "panel sign-in", "aria-labelledby": "signin-title", novalidate: true },
      h("h1", { id: "signin-title" }, "Sign in to Tocsin"),
      message ? h("div", { class: "notice" }, message) : null,
      linked ? h("p", { class: "hint", id: "signin-organization" }, "Signing in to the organization ", h("code", {}, linked), " (named by this link).") : null,
      field("Email", email), field("Password", password), orgField,
      h("div", { class: "actions" }, h("button", { type: "submit" }, "Sign in")),
      h("p", { class: "hint" }, "No password yet? The owner's is set by the first start with ", h("code", {}, "TOCSIN_OWNER_PASSWORD"),
        " (or ", h("code", {}, "tocsin init --password"), "); an administrator sets anyone's with ", h("code", {}, "PATCH /v1/users/{id}"), " and a key."));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        const body = { email: email.value, password: password.value };
        if (linked) body.organization_id = linked;
        else if (!orgField.hidden) body.organization_id = org.value;
        const r = await api("POST", "/v1/auth/console/login", body);
        password.value = "";
        state.csrf = r.csrf_token;
        await loadSession();
        if (!location.hash || location.hash === "#/" || location.hash === "#/signin") location.hash = "#/keys"; else route();
      } catch (e) {
        if (e.code === "organization_required" && e.organizations.length) {
          org.replaceChildren(...e.organizations.map((o) => h("option", { value: o.id }, `${o.name} (${o.id})`)));
          orgField.hidden = false;
          clearError(form);
          org.focus();
          return;
        }
        showError(form, e);
      }
    });
    main.append(form);
    email.focus();
  }
  async function loadSession() {
    const s = await api("GET", "/v1/auth/console/session");
    state.csrf = s.csrf_token;
    state.me = s;
    document.getElementById("who-name").textContent = `${s.user.name || s.user.email} · ${s.organization.name}`;
    document.getElementById("top").hidden = false;
  }
  document.getElementById("sign-out").addEventListener("click", async () => {
    try { await api("POST", "/v1/auth/console/logout", {}); } catch (_) { /* the session may be gone already */ }
    state.me = null; state.csrf = null; state.roles = null; state.teams = null;
    location.hash = "#/signin";
    signIn("You are signed out.");
  });
  const toggle = document.getElementById("menu-toggle");
  const nav = document.getElementById("nav");
  nav.dataset.open = "false";
  toggle.addEventListener("click", () => {
    const open = nav.dataset.open !== "true";
    nav.dataset.open = String(open);
    toggle.setAttribute("aria-expanded", String(open));
  });

  // ---- Router: hash routes, so the server serves one page. ----
  async function route() {
    if (!state.me) return;
    const parts = (location.hash || "#/keys").slice(2).split("?")[0].split("/").map(decodeURIComponent);
    const section = parts[0] || "keys";
    nav.dataset.open = "false"; toggle.setAttribute("aria-expanded", "false");
    for (const a of document.querySelectorAll("#nav a")) {
      if (a.dataset.section === section) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    }
    render(h("p", { class: "muted" }, "Loading…"));
    try {
      await teams();
      if (section === "keys" && parts[1] === "new") await keyWizard();
      else if (section === "keys" && parts[1]) await keyPage(parts[1]);
      else if (section === "keys") await keyList();
      else if (section === "alerts") await alertList(parts[1] || "open");
      else if (section === "integrations") await integrationList();
      else if (section === "teams" && parts[1]) await teamPage(parts[1]);
      else if (section === "teams") await teamList();
      else if (section === "audit") await auditLog();
      else { location.hash = "#/keys"; return; }
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return;
      render(h("h1", {}, "Something went wrong"), e instanceof ApiError ? errorBox(e) : h("p", {}, String(e)));
    }
    const h1 = main.querySelector("h1");
    document.title = h1 ? `${h1.textContent} · Tocsin` : "Tocsin console";
    main.focus({ preventScroll: true });
  }
  window.addEventListener("hashchange", route);

  // ---- API keys ----
  const KINDS = {
    personal: { label: "Personal", text: "Acts as you, with your current permissions (narrowed to the roles you pick). If you are demoted or deactivated, the key follows at once. For your own scripts and the CLI." },
    team: { label: "Team", text: "Acts as a service account of one team, with team roles that reach only that team's alerts, integrations and keys. For a team's tooling." },
    organization: { label: "Organization", text: "Acts as an organization-wide service account with the roles you give it. Only owners and admins can create one. For automation that spans teams." },
    integration: { label: "Integration", text: "Belongs to an API integration and can do what the integration's access flags allow (usually: create alerts for its team). For monitoring tools that send alerts." },
  };
  function keyScope(k) {
    if (k.kind === "team") return `team ${teamName(k.team_id)}`;
    if (k.kind === "integration") return `integration ${integrationName(k.integration_id)}`;
    if (k.kind === "organization") return k.team_ids.length ? `organization; teams ${k.team_ids.map(teamName).join(", ")}` : "organization";
    return "you (personal)";
  }
  function keyRoles(k) {
    const all = [...k.role_names, ...k.team_role_names.map((r) => `${r} (team)`)];
    return all.length ? all.join(", ") : (k.kind === "personal" ? "all of your roles" : k.kind === "integration" ? "integration flags" : "none");
  }

  async function keyList() {
    await integrations();
    const params = new URLSearchParams(location.hash.split("?")[1] || "");
    const integrationId = params.get("integration");
    const search = h("input", { type: "search", id: "key-search", placeholder: "name, id or role" });
    const kind = h("select", { id: "key-kind" }, h("option", { value: "" }, "All kinds"), Object.entries(KINDS).map(([v, k]) => h("option", { value: v }, k.label)));
    const status = h("select", { id: "key-status" }, ["live", "active", "rotating", "disabled", "expired", "revoked", "all"].map((s) => h("option", { value: s }, s === "live" ? "Not revoked" : s[0].toUpperCase() + s.slice(1))));
    const tbody = h("tbody");
    const count = h("caption", { role: "status" });
    const table = h("table", { class: "cards", id: "keys-table" }, count,
      h("thead", {}, h("tr", {}, ["Name", "Kind", "Team or integration", "Roles", "Expires", "Last used", "Status"].map((c) => h("th", { scope: "col" }, c)))), tbody);
    let keys = [];
    async function load() {
      const q = ["include_revoked=true"];
      if (kind.value) q.push("kind=" + kind.value);
      if (integrationId) q.push("integration_id=" + encodeURIComponent(integrationId));
      keys = await listAll("/v1/api_keys?" + q.join("&"));
      draw();
    }
    function draw() {
      const term = search.value.trim().toLowerCase();
      const shown = keys.filter((k) => {
        if (status.value === "live" && k.status === "revoked") return false;
        if (!["live", "all"].includes(status.value) && k.status !== status.value) return false;
        if (!term) return true;
        return [k.name, k.id, k.description || "", keyScope(k), keyRoles(k), k.token_hint].join(" ").toLowerCase().includes(term);
      });
      count.textContent = `${shown.length} of ${keys.length} keys`;
      tbody.replaceChildren(...shown.map((k) => h("tr", {},
        h("td", { "data-label": "Name" }, h("a", { href: `#/keys/${encodeURIComponent(k.id)}` }, k.name), h("div", { class: "hint mono" }, `…${k.token_hint}`)),
        h("td", { "data-label": "Kind" }, badge(k.kind, "kind")),
        h("td", { "data-label": "Scope" }, keyScope(k)),
        h("td", { "data-label": "Roles" }, keyRoles(k)),
        h("td", { "data-label": "Expires" }, when(k.expires_at)),
        h("td", { "data-label": "Last used" }, when(k.last_used_at)),
        h("td", { "data-label": "Status" }, badge(k.status)))));
      if (!shown.length) tbody.append(h("tr", {}, h("td", { colspan: 7 }, keys.length ? "No key matches these filters." : "No keys yet: create one.")));
    }
    search.addEventListener("input", draw);
    status.addEventListener("change", draw);
    kind.addEventListener("change", () => load().catch((e) => showError(main, e)));
    render(
      h("div", { class: "between" }, h("h1", {}, "API keys"), h("a", { class: "button", href: "#/keys/new", id: "new-key" }, "Create a key")),
      h("p", { class: "lead" }, "Every key has a kind (who it acts as), roles (what it may do), and an expiry. A token is shown once, when the key is created or rotated."),
      integrationId ? h("div", { class: "notice" }, `Showing the keys of integration ${integrationName(integrationId)}. `, h("a", { href: "#/keys" }, "Show all keys")) : null,
      h("div", { class: "panel row", role: "search" },
        h("div", { class: "grow" }, field("Search", search)), field("Kind", kind), field("Status", status)),
      h("div", { class: "table-wrap" }, table));
    await load();
  }

  function roleChoices(list, name, selected) {
    return list.map((r) => {
      const input = h("input", { type: "checkbox", name, value: r.name, checked: selected.includes(r.name) });
      return h("label", { class: "choice" }, input, h("span", {}, h("strong", {}, r.name), h("span", { class: "hint" }, r.description),
        h("span", { class: "hint" }, "Allows: ", r.permissions.join(", ") || "nothing")));
    });
  }
  const checked = (root, name) => [...root.querySelectorAll(`input[name="${name}"]:checked`)].map((i) => i.value);

  async function keyWizard() {
    const allRoles = await roles();
    const ints = await integrations();
    const w = { step: 0, kind: "personal", team_id: "", team_ids: [], integration_id: "", role_names: [], team_role_names: [], name: "", description: "", expiry: "90", custom: "" };
    const stepsNames = ["Kind", "Scope", "Roles", "Name and expiry"];
    const form = h("form", { class: "panel", id: "wizard", novalidate: true });
    const accountRoles = allRoles.filter((r) => r.scope !== "team");
    const teamRoles = allRoles.filter((r) => r.scope !== "account");
    function draw() {
      const steps = h("ol", { class: "steps", "aria-label": "Steps" }, stepsNames.map((s, i) => h("li", { "aria-current": i === w.step ? "step" : null }, s)));
      let body;
      if (w.step === 0) {
        body = h("fieldset", {}, h("legend", {}, "What kind of key?"),
          Object.entries(KINDS).map(([v, k]) => h("label", { class: "choice" },
            h("input", { type: "radio", name: "kind", value: v, checked: w.kind === v }),
            h("span", {}, h("strong", {}, k.label), h("span", { class: "hint" }, k.text)))));
      } else if (w.step === 1) {
        if (w.kind === "personal") body = h("div", { class: "notice" }, "A personal key always acts as you: it needs no team. Next, you may narrow it to some of your roles.");
        else if (w.kind === "team") {
          body = field("Team", h("select", { id: "w-team", required: true }, h("option", { value: "" }, "Choose a team"),
            state.teams.map((t) => h("option", { value: t.id, selected: w.team_id === t.id }, t.name))), "The key acts only within this team.");
        } else if (w.kind === "organization") {
          body = h("fieldset", {}, h("legend", {}, "Teams (optional)"),
            h("p", { class: "hint" }, "Leave empty for account roles only; pick teams to give the key team roles in each of them."),
            state.teams.length ? state.teams.map((t) => h("label", { class: "choice" }, h("input", { type: "checkbox", name: "w-teams", value: t.id, checked: w.team_ids.includes(t.id) }), h("span", {}, t.name))) : h("p", { class: "muted" }, "There are no teams."));
        } else {
          body = field("Integration", h("select", { id: "w-integration", required: true }, h("option", { value: "" }, "Choose an integration"),
            ints.map((i) => h("option", { value: i.id, selected: w.integration_id === i.id }, `${i.name}${i.team_id ? " (team " + teamName(i.team_id) + ")" : " (global)"}`))),
          "The key can do what this integration's access flags allow.");
        }
      } else if (w.step === 2) {
        if (w.kind === "integration") {
          const i = ints.find((x) => x.id === w.integration_id) || {};
          body = h("div", { class: "notice" }, "An integration key has no roles of its own: it follows its integration's access flags (",
            ["read", "write", "delete", "configuration"].filter((f) => i["allow_" + f]).join(", ") || "none", "). Change them on the Integrations page; its keys follow at once.");
        } else {
          const parts = [];
          if (w.kind === "personal") parts.push(h("fieldset", {}, h("legend", {}, "Narrow to these roles (optional)"), h("p", { class: "hint" }, "Leave all unticked to act with everything you can do. A key never gets more than you hold."), roleChoices(accountRoles, "w-roles", w.role_names)));
          if (w.kind === "team") parts.push(h("fieldset", {}, h("legend", {}, `Team roles in ${teamName(w.team_id)} (at least one)`), roleChoices(teamRoles, "w-team-roles", w.team_role_names)));
          if (w.kind === "organization" || w.kind === "team") parts.push(h("fieldset", {}, h("legend", {}, w.kind === "team" ? "Account-wide roles (optional)" : "Account-wide roles"), roleChoices(accountRoles, "w-roles", w.role_names)));
          if (w.kind === "organization" && w.team_ids.length) parts.push(h("fieldset", {}, h("legend", {}, "Team roles in the chosen teams"), roleChoices(teamRoles, "w-team-roles", w.team_role_names)));
          body = h("div", {}, parts);
        }
      } else {
        const name = h("input", { type: "text", id: "w-name", value: w.name, maxlength: 200, required: true, autocomplete: "off" });
        const desc = h("textarea", { id: "w-desc", maxlength: 1000 }, w.description);
        const exp = h("select", { id: "w-expiry" }, [["7", "7 days"], ["30", "30 days"], ["90", "90 days"], ["365", "1 year"], ["custom", "A date…"]].map(([v, l]) => h("option", { value: v, selected: w.expiry === v }, l)));
        const custom = h("input", { type: "datetime-local", id: "w-custom", value: w.custom });
        const customField = field("Expires at (your local time)", custom);
        customField.hidden = w.expiry !== "custom";
        exp.addEventListener("change", () => { customField.hidden = exp.value !== "custom"; });
        body = h("div", {}, field("Name", name, "Unique among your keys of this kind; for example “ci deploy”."), field("Description (optional)", desc),
          field("Expires after", exp, "Every key expires. Shorter is safer; you can rotate before then."), customField,
          h("h3", {}, "Summary"), h("dl", { class: "facts" },
            h("dt", {}, "Kind"), h("dd", {}, KINDS[w.kind].label),
            h("dt", {}, "Scope"), h("dd", {}, keyScope({ kind: w.kind, team_id: w.team_id, team_ids: w.team_ids, integration_id: w.integration_id })),
            h("dt", {}, "Roles"), h("dd", {}, keyRoles({ kind: w.kind, role_names: w.role_names, team_role_names: w.team_role_names }))));
      }
      const back = h("button", { type: "button", class: "secondary", onclick: () => { collect(); w.step--; draw(); } }, "Back");
      form.replaceChildren(steps, h("h2", {}, `Step ${w.step + 1} of 4: ${stepsNames[w.step]}`), body,
        h("div", { class: "actions" }, w.step > 0 ? back : h("a", { class: "button secondary", href: "#/keys" }, "Cancel"),
          h("button", { type: "submit", id: "wizard-next" }, w.step === 3 ? "Create key" : "Next")));
      const first = form.querySelector("fieldset input, select, input, textarea");
      if (first) first.focus();
    }
    function collect() {
      const v = (id) => { const el = form.querySelector("#" + id); return el ? el.value : undefined; };
      if (w.step === 0) w.kind = (form.querySelector('input[name="kind"]:checked') || {}).value || "personal";
      if (w.step === 1) {
        if (w.kind === "team") w.team_id = v("w-team") || "";
        if (w.kind === "organization") w.team_ids = checked(form, "w-teams");
        if (w.kind === "integration") w.integration_id = v("w-integration") || "";
      }
      if (w.step === 2 && w.kind !== "integration") { w.role_names = checked(form, "w-roles"); w.team_role_names = checked(form, "w-team-roles"); }
      if (w.step === 3) { w.name = v("w-name"); w.description = v("w-desc"); w.expiry = v("w-expiry"); w.custom = v("w-custom"); }
    }
    function problem(text) { showError(form, { code: "", message: text, fixes: [], fields: {} }); }
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      collect();
      if (w.step === 1 && w.kind === "team" && !w.team_id) return problem("Choose the team the key belongs to.");
      if (w.step === 1 && w.kind === "integration" && !w.integration_id) return problem("Choose the integration the key belongs to.");
      if (w.step === 2 && w.kind === "team" && !w.team_role_names.length) return problem("A team key needs at least one team role.");
      if (w.step === 2 && w.kind === "organization" && !w.role_names.length && !w.team_role_names.length) return problem("An organization key needs at least one role.");
      if (w.step < 3) { w.step++; draw(); return; }
      if (!w.name.trim()) return problem("Give the key a name.");
      let expires;
      if (w.expiry === "custom") {
        const d = new Date(w.custom);
        if (!w.custom || isNaN(d.getTime())) return problem("Pick the date and time the key expires.");
        expires = d.toISOString();
      } else expires = new Date(Date.now() + Number(w.expiry) * 86400000).toISOString();
      const body = { kind: w.kind, name: w.name.trim(), expires_at: expires.replace(/\.\d{3}Z$/, "Z") };
      if (w.description.trim()) body.description = w.description.trim();
      if (w.kind === "team") body.team_id = w.team_id;
      if (w.kind === "organization" && w.team_ids.length) body.team_ids = w.team_ids;
      if (w.kind === "integration") body.integration_id = w.integration_id;
      if (w.kind !== "integration") { body.role_names = w.role_names; body.team_role_names = w.team_role_names; }
      try {
        const r = await api("POST", "/v1/api_keys", body);
        const id = r.api_key.id;
        showToken(`Key “${r.api_key.name}” created`, r.token, "If you lose it, rotate the key to get a new token.", () => { location.hash = `#/keys/${encodeURIComponent(id)}`; });
      } catch (e) { showError(form, e); }
    });
    render(h("h1", {}, "Create an API key"),
      h("p", { class: "lead" }, "Four steps: what the key acts as, where, what it may do, and until when."), form);
    draw();
  }

  async function keyPage(id) {
    const [k] = await Promise.all([api("GET", `/v1/api_keys/${encodeURIComponent(id)}`), integrations()]);
    const live = k.status !== "revoked" && k.status !== "expired";
    const facts = h("dl", { class: "facts" },
      h("dt", {}, "Status"), h("dd", {}, badge(k.status), k.revoked_at ? [" ", when(k.revoked_at), k.revoked_by ? ` by ${k.revoked_by.name}` : ""] : null),
      h("dt", {}, "Kind"), h("dd", {}, KINDS[k.kind] ? KINDS[k.kind].label : k.kind),
      h("dt", {}, "Acts in"), h("dd", {}, keyScope(k)),
      h("dt", {}, "Roles"), h("dd", {}, keyRoles(k)),
      h("dt", {}, "Effective permissions"), h("dd", {}, k.permissions.length ? k.permissions.join(", ") : "none"),
      h("dt", {}, "Token"), h("dd", { class: "mono" }, `…${k.token_hint}`, k.grace_period_ends_at ? h("span", { class: "hint" }, " (the previous token works until ", when(k.grace_period_ends_at), ")") : null),
      h("dt", {}, "Expires"), h("dd", {}, when(k.expires_at), ` (${new Date(k.expires_at).toLocaleString()})`),
      h("dt", {}, "Last used"), h("dd", {}, when(k.last_used_at), k.last_used_ip ? ` from ${k.last_used_ip}` : ""),
      h("dt", {}, "Created"), h("dd", {}, when(k.created_at), k.created_by ? ` by ${k.created_by.name}` : ""),
      h("dt", {}, "Id"), h("dd", { class: "mono" }, k.id),
      k.description ? [h("dt", {}, "Description"), h("dd", {}, k.description)] : null);
    const actions = h("div", { class: "actions" },
      live ? h("button", { type: "button", id: "rotate-key", onclick: () => rotateDialog(k) }, "Rotate") : null,
      k.status !== "revoked" ? h("button", { type: "button", class: "danger", id: "revoke-key", onclick: async () => {
        const ok = await confirmDialog(`Revoke “${k.name}”?`, "Every token of this key stops working at once, on every node. This cannot be undone; the key stays listed as revoked.", "Revoke key", true);
        if (!ok) return;
        try { await api("POST", `/v1/api_keys/${encodeURIComponent(k.id)}/revoke`, {}); say(`Key “${k.name}” revoked.`); route(); } catch (e) { showError(main, e); }
      } }, "Revoke") : null);
    render(
      h("p", {}, h("a", { href: "#/keys" }, "← All keys")),
      h("h1", {}, k.name),
      h("div", { class: "grid2" },
        h("section", { class: "panel", "aria-labelledby": "facts-h" }, h("h2", { id: "facts-h" }, "Details"), facts, actions),
        await explainTool(k)),
      await auditSection(k));
  }

  function rotateDialog(k) {
    openDialog(`Rotate “${k.name}”`, (close) => {
      const grace = h("select", { id: "grace" }, [["0", "No grace: the old token stops now"], ["3600", "1 hour"], ["86400", "24 hours (default)"], ["604800", "7 days (longest)"]].map(([v, l]) => h("option", { value: v, selected: v === "86400" }, l)));
      const form = h("form", {},
        h("p", {}, "A new token is issued and shown once. The old token keeps working during the grace period, so you can roll the new one out first."),
        field("Grace period for the old token", grace),
        h("div", { class: "actions" }, h("button", { type: "submit" }, "Rotate"), h("button", { type: "button", class: "secondary", onclick: close }, "Cancel")));
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        try {
          const r = await api("POST", `/v1/api_keys/${encodeURIComponent(k.id)}/rotate`, { grace_period_seconds: Number(grace.value) });
          close();
          showToken(`New token for “${k.name}”`, r.token, "The previous token stops working when the grace period ends.", () => route());
        } catch (e) { showError(form, e); }
      });
      return form;
    });
  }

  async function explainTool(k) {
    const [routes, perms] = await Promise.all([routeList(), permissions()]);
    const mode = h("select", { id: "explain-mode" }, h("option", { value: "route" }, "A route (method and path)"), h("option", { value: "permission" }, "A permission"));
    const routeSel = h("select", { id: "explain-route" },
      routes.filter((r) => r.path !== "/" && !r.path.startsWith("/console/")).map((r) => h("option", { value: `${r.method} ${r.path}` }, `${r.method} ${r.path}`)));
    const path = h("input", { type: "text", id: "explain-path", placeholder: "/v2/alerts/{identifier}/close" });
    const routeBox = h("div", {}, field("Route", routeSel), field("Concrete path (optional)", path, "Replace {id} with a real id to take that object's team into account."));
    const perm = h("select", { id: "explain-permission" }, perms.map((p) => h("option", { value: p.name }, `${p.name}: ${p.description}`)));
    const team = h("select", { id: "explain-team" }, h("option", { value: "" }, "Account-wide"), state.teams.map((t) => h("option", { value: t.id }, t.name)));
    const permBox = h("div", { hidden: true }, field("Permission", perm), field("In", team));
    mode.addEventListener("change", () => { routeBox.hidden = mode.value !== "route"; permBox.hidden = mode.value !== "permission"; });
    routeSel.addEventListener("change", () => { path.value = ""; });
    const result = h("div", { id: "explain-result", "aria-live": "polite" });
    const form = h("form", {}, field("Ask about", mode), routeBox, permBox, h("div", { class: "actions" }, h("button", { type: "submit", id: "explain-run" }, "Explain")), result);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = { key_id: k.id };
      if (mode.value === "route") {
        const [m, p] = routeSel.value.split(" ");
        body.method = m; body.path = path.value.trim() || p;
      } else { body.permission = perm.value; if (team.value) body.team_id = team.value; }
      try {
        const r = await api("POST", "/v1/auth/explain", body);
        result.replaceChildren(h("div", { class: `notice ${r.allowed ? "ok" : "error"}` },
          h("strong", {}, r.allowed ? "Allowed" : `Refused${r.code ? " (" + r.code + ")" : ""}`),
          r.permission ? h("span", {}, " · needs ", h("code", {}, r.permission)) : null,
          h("ul", {}, r.reasons.map((x) => h("li", {}, x))),
          r.fixes.length ? [h("strong", {}, "How to fix"), h("ul", {}, r.fixes.map((x) => h("li", {}, x)))] : null));
      } catch (e) { result.replaceChildren(errorBox(e)); }
    });
    return h("section", { class: "panel", "aria-labelledby": "explain-h" }, h("h2", { id: "explain-h" }, "Explain"),
      h("p", { class: "hint" }, "Would this key be allowed to do something, and why? Nothing is performed."), form);
  }

  function auditTable(events, id) {
    return h("div", { class: "table-wrap" }, h("table", { class: "cards", id },
      h("thead", {}, h("tr", {}, ["When", "Actor", "Action", "Route", "Outcome", "IP"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, events.length ? events.map((e) => h("tr", {},
        h("td", { "data-label": "When" }, when(e.occurred_at)),
        h("td", { "data-label": "Actor" }, e.actor ? `${e.actor.name} (${e.actor.type})` : "unknown", e.token_hint ? h("div", { class: "hint mono" }, `…${e.token_hint}`) : null),
        h("td", { "data-label": "Action" }, e.action),
        h("td", { "data-label": "Route" }, e.method ? h("code", {}, `${e.method} ${e.route}`) : (e.target ? `${e.target.type} ${e.target.id}` : "")),
        h("td", { "data-label": "Outcome" }, badge(e.outcome, e.outcome === "allowed" ? "allowed" : "refused"), e.status ? ` ${e.status}` : ""),
        h("td", { "data-label": "IP" }, e.ip || ""))) : h("tr", {}, h("td", { colspan: 6 }, "No events.")))));
  }

  async function auditSection(k) {
    const sec = h("section", { class: "panel", "aria-labelledby": "trail-h" }, h("h2", { id: "trail-h" }, "Audit trail"));
    if (!can("audit:read")) { append(sec, [h("p", { class: "muted" }, "Reading the audit trail needs the permission audit:read.")]); return sec; }
    const [changes, uses] = await Promise.all([
      api("GET", `/v1/audit_events?target_id=${encodeURIComponent(k.id)}&limit=50`),
      api("GET", `/v1/audit_events?api_key_id=${encodeURIComponent(k.id)}&limit=50`)]);
    const lifecycle = changes.data.filter((e) => e.action.startsWith("api_key."));
    append(sec, [h("h3", {}, "What happened to the key"), auditTable(lifecycle, "key-lifecycle"),
      h("h3", {}, "Requests made with the key (latest 50)"), auditTable(uses.data, "key-requests")]);
    return sec;
  }

  // ---- Alerts ----
  async function alertList(tab) {
    const tabs = { open: "status:open AND acknowledged:false", acknowledged: "status:open AND acknowledged:true", closed: "status:closed" };
    if (!tabs[tab]) tab = "open";
    const params = new URLSearchParams(location.hash.split("?")[1] || "");
    const query = h("input", { type: "search", id: "alert-query", value: params.get("q") || "", placeholder: "priority:P1 AND tag:db" });
    const tbody = h("tbody");
    const caption = h("caption", { role: "status" });
    const form = h("form", { class: "panel row", role: "search" },
      h("div", { class: "grow" }, field("Search", query, "Opsgenie's syntax: field:value, AND, OR, NOT, quotes, parentheses; a bare word searches the message.")),
      h("div", {}, h("button", { type: "submit" }, "Search")));
    const tablist = h("div", { class: "actions", role: "group", "aria-label": "Alert status" },
      Object.keys(tabs).map((t) => h("a", { class: `button ${t === tab ? "" : "secondary"}`, href: `#/alerts/${t}`, "aria-current": t === tab ? "page" : null, id: `tab-${t}` }, t[0].toUpperCase() + t.slice(1))));
    async function load() {
      const q = query.value.trim() ? `(${tabs[tab]}) AND (${query.value.trim()})` : tabs[tab];
      const r = await api("GET", `/v2/alerts?limit=100&sort=createdAt&order=desc&query=${encodeURIComponent(q)}`);
      caption.textContent = `${r.data.length} ${tab} alerts`;
      tbody.replaceChildren(...r.data.map((a) => h("tr", {},
        h("td", { "data-label": "#" }, a.tinyId),
        h("td", { "data-label": "Message" }, h("strong", {}, a.message), a.tags.length ? h("div", { class: "chips" }, a.tags.map((t) => badge(t, "kind"))) : null),
        h("td", { "data-label": "Priority" }, a.priority),
        h("td", { "data-label": "Source" }, a.integration ? a.integration.name : a.source),
        h("td", { "data-label": "Teams" }, a.teams.map((t) => teamName(t.id)).join(", ")),
        h("td", { "data-label": "Created" }, when(a.createdAt), a.count > 1 ? ` (×${a.count})` : ""),
        h("td", { "data-label": "Status" }, a.status === "closed" ? badge("closed") : a.acknowledged ? badge("acked") : badge("open")),
        h("td", { "data-label": "Actions" }, h("div", { class: "actions" },
          a.status === "open" && !a.acknowledged ? h("button", { type: "button", class: "secondary", "aria-label": `Acknowledge alert ${a.tinyId}: ${a.message}`, onclick: () => alertAction(a, "acknowledge") }, "Acknowledge") : null,
          a.status === "open" ? h("button", { type: "button", class: "secondary", "aria-label": `Close alert ${a.tinyId}: ${a.message}`, onclick: () => alertAction(a, "close") }, "Close") : null,
          h("button", { type: "button", class: "secondary", "aria-label": `Add a note to alert ${a.tinyId}`, onclick: () => noteDialog(a) }, "Add note"))))));
      if (!r.data.length) tbody.append(h("tr", {}, h("td", { colspan: 8 }, `No ${tab} alerts match.`)));
    }
    async function alertAction(a, action) {
      try {
        await api("POST", `/v2/alerts/${encodeURIComponent(a.id)}/${action}?identifierType=id`, { user: state.me.user.email, source: "Tocsin console" });
        say(`Alert ${a.tinyId} ${action === "acknowledge" ? "acknowledged" : "closed"}.`);
        await load();
      } catch (e) { showError(main, e); }
    }
    function noteDialog(a) {
      openDialog(`Note on alert ${a.tinyId}`, (close) => {
        const note = h("textarea", { id: "note-text", required: true, maxlength: 25000 });
        const f = h("form", {}, h("p", { class: "muted" }, a.message), field("Note", note),
          h("div", { class: "actions" }, h("button", { type: "submit" }, "Add note"), h("button", { type: "button", class: "secondary", onclick: close }, "Cancel")));
        f.addEventListener("submit", async (ev) => {
          ev.preventDefault();
          if (!note.value.trim()) return showError(f, { message: "Write the note first.", fields: {}, fixes: [] });
          try { await api("POST", `/v2/alerts/${encodeURIComponent(a.id)}/notes?identifierType=id`, { note: note.value, user: state.me.user.email, source: "Tocsin console" }); close(); say("Note added."); } catch (e) { showError(f, e); }
        });
        return f;
      });
    }
    form.addEventListener("submit", (ev) => { ev.preventDefault(); load().then(() => clearError(form), (e) => showError(form, e)); });
    render(h("h1", {}, "Alerts"), tablist, form,
      h("div", { class: "table-wrap" }, h("table", { class: "cards", id: "alerts-table" }, caption,
        h("thead", {}, h("tr", {}, ["#", "Message", "Priority", "Source", "Teams", "Created", "Status", "Actions"].map((c) => h("th", { scope: "col" }, c)))), tbody)));
    await load();
  }

  // ---- Integrations ----
  const FLAGS = [["allow_read", "Read", "get and list alerts"], ["allow_write", "Write", "create, acknowledge, close and annotate alerts"], ["allow_delete", "Delete", "delete alerts"], ["allow_configuration", "Configuration", "change integrations"]];
  async function integrationList() {
    const list = await listAll("/v1/integrations");
    const rows = list.map((i) => {
      const flagBoxes = FLAGS.map(([f, label, what]) => {
        const box = h("input", { type: "checkbox", checked: i[f], "aria-label": `${label} access for ${i.name}: ${what}` });
        box.addEventListener("change", async () => {
          try { await api("PATCH", `/v1/integrations/${encodeURIComponent(i.id)}`, { [f]: box.checked }); say(`${i.name}: ${label.toLowerCase()} access ${box.checked ? "on" : "off"}; its keys follow at once.`); } catch (e) { box.checked = !box.checked; showError(main, e); }
        });
        return h("label", { class: "choice" }, box, h("span", {}, label));
      });
      return h("tr", {},
        h("td", { "data-label": "Name" }, h("strong", {}, i.name), h("div", { class: "hint mono" }, i.id)),
        h("td", { "data-label": "Team" }, i.team_id ? teamName(i.team_id) : "global"),
        h("td", { "data-label": "Access" }, h("div", { class: "chips" }, flagBoxes)),
        h("td", { "data-label": "Status" }, badge(i.enabled ? "enabled" : "disabled")),
        h("td", { "data-label": "Actions" }, h("div", { class: "actions" },
          h("a", { class: "button secondary", href: `#/keys?integration=${encodeURIComponent(i.id)}`, "aria-label": `Keys of ${i.name}` }, "Keys"),
          h("button", { type: "button", class: i.enabled ? "danger" : "", onclick: async () => {
            if (i.enabled && !(await confirmDialog(`Disable “${i.name}”?`, "Its keys are refused at once (they say the integration is disabled) until you enable it again.", "Disable", true))) return;
            try { await api("PATCH", `/v1/integrations/${encodeURIComponent(i.id)}`, { enabled: !i.enabled }); say(`${i.name} ${i.enabled ? "disabled" : "enabled"}.`); route(); } catch (e) { showError(main, e); }
          } }, i.enabled ? "Disable" : "Enable"))));
    });
    render(
      h("div", { class: "between" }, h("h1", {}, "Integrations"), h("button", { type: "button", id: "new-integration", onclick: integrationDialog }, "Create an integration")),
      h("p", { class: "lead" }, "An API integration is where a monitoring tool sends alerts (Opsgenie's API integration). Its key is shown once at creation; its access flags decide what its keys may do."),
      h("div", { class: "table-wrap" }, h("table", { class: "cards", id: "integrations-table" },
        h("thead", {}, h("tr", {}, ["Name", "Team", "Access", "Status", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 5 }, "No integrations yet."))))));
  }
  function integrationDialog() {
    openDialog("Create an integration", (close) => {
      const name = h("input", { type: "text", id: "i-name", required: true, maxlength: 200 });
      const team = h("select", { id: "i-team" }, h("option", { value: "" }, "None (global: alerts go to no team)"), state.teams.map((t) => h("option", { value: t.id }, t.name)));
      const defaults = { allow_read: true, allow_write: true, allow_delete: false, allow_configuration: false };
      const flags = FLAGS.map(([f, label, what]) => h("label", { class: "choice" }, h("input", { type: "checkbox", name: "i-flags", value: f, checked: defaults[f] }), h("span", {}, h("strong", {}, label), h("span", { class: "hint" }, `Its keys may ${what}.`))));
      const f = h("form", {}, field("Name", name, "For example “Prometheus” or “Grafana”."), field("Team", team, "Its alerts go to this team; team members see them."),
        h("fieldset", {}, h("legend", {}, "Access"), flags),
        h("div", { class: "actions" }, h("button", { type: "submit", id: "i-create" }, "Create"), h("button", { type: "button", class: "secondary", onclick: close }, "Cancel")));
      f.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const body = { name: name.value.trim(), type: "API" };
        if (team.value) body.team_id = team.value;
        const on = checked(f, "i-flags");
        for (const [flag] of FLAGS) body[flag] = on.includes(flag);
        try {
          const r = await api("POST", "/v1/integrations", body);
          close();
          showToken(`Integration “${r.integration.name}” created`, r.token, "Give it to the tool that sends alerts, as its Opsgenie API key.", () => route());
        } catch (e) { showError(f, e); }
      });
      return f;
    });
  }

  // ---- Teams ----
  async function teamList() {
    const list = await teams(true);
    const name = h("input", { type: "text", id: "team-name", required: true, maxlength: 200 });
    const desc = h("input", { type: "text", id: "team-desc", maxlength: 1000 });
    const form = h("form", { class: "panel row" }, h("div", { class: "grow" }, field("New team name", name)), h("div", { class: "grow" }, field("Description (optional)", desc)),
      h("div", { class: "field" }, h("button", { type: "submit" }, "Create team")));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try { const t = await api("POST", "/v1/teams", { name: name.value.trim(), description: desc.value.trim() || undefined }); say(`Team ${t.name} created.`); state.teams = null; location.hash = `#/teams/${encodeURIComponent(t.id)}`; } catch (e) { showError(form, e); }
    });
    render(h("h1", {}, "Teams"),
      h("p", { class: "lead" }, "Teams own integrations, receive alerts, and hold team keys. Team roles apply only to a team's own resources."),
      can("teams:write") ? form : null,
      h("div", { class: "table-wrap" }, h("table", { class: "cards", id: "teams-table" },
        h("thead", {}, h("tr", {}, ["Name", "Description", "Created"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, list.length ? list.map((t) => h("tr", {}, h("td", { "data-label": "Name" }, h("a", { href: `#/teams/${encodeURIComponent(t.id)}` }, t.name)),
          h("td", { "data-label": "Description" }, t.description || ""), h("td", { "data-label": "Created" }, when(t.created_at)))) : h("tr", {}, h("td", { colspan: 3 }, "No teams yet."))))));
  }
  async function teamPage(id) {
    const [t, members, allRoles] = await Promise.all([api("GET", `/v1/teams/${encodeURIComponent(id)}`), listAll(`/v1/teams/${encodeURIComponent(id)}/members`), roles()]);
    const users = can("users:read") ? await listAll("/v1/users").catch(() => []) : [];
    const userName = (uid) => { const u = users.find((x) => x.id === uid); return u ? `${u.name} <${u.email}>` : uid; };
    const teamRoles = allRoles.filter((r) => r.scope !== "account");
    const user = h("select", { id: "member-user" }, users.filter((u) => !members.some((m) => m.user_id === u.id)).map((u) => h("option", { value: u.id }, `${u.name} <${u.email}>`)));
    const form = h("form", { class: "panel" }, h("h2", {}, "Add a member"), field("User", user),
      h("fieldset", {}, h("legend", {}, "Team roles"), roleChoices(teamRoles, "m-roles", ["responder"])),
      h("div", { class: "actions" }, h("button", { type: "submit" }, "Add member")));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (!user.value) return showError(form, { message: "Choose a user (create users with POST /v1/users or `tocsin`).", fields: {}, fixes: [] });
      try { await api("PUT", `/v1/teams/${encodeURIComponent(id)}/members/${encodeURIComponent(user.value)}`, { team_role_names: checked(form, "m-roles") }); say("Member added."); route(); } catch (e) { showError(form, e); }
    });
    render(h("p", {}, h("a", { href: "#/teams" }, "← All teams")), h("h1", {}, t.name), t.description ? h("p", { class: "lead" }, t.description) : null,
      h("section", { class: "panel", "aria-labelledby": "members-h" }, h("h2", { id: "members-h" }, "Members"),
        h("div", { class: "table-wrap" }, h("table", { class: "cards", id: "members-table" },
          h("thead", {}, h("tr", {}, ["Member", "Team roles", "Since", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, members.length ? members.map((m) => h("tr", {}, h("td", { "data-label": "Member" }, userName(m.user_id)),
            h("td", { "data-label": "Roles" }, m.team_role_names.join(", ")), h("td", { "data-label": "Since" }, when(m.created_at)),
            h("td", { "data-label": "Actions" }, h("button", { type: "button", class: "secondary", "aria-label": `Remove ${userName(m.user_id)} from ${t.name}`, onclick: async () => {
              if (!(await confirmDialog("Remove this member?", `${userName(m.user_id)} loses the team roles in ${t.name} at once.`, "Remove", true))) return;
              try { await api("DELETE", `/v1/teams/${encodeURIComponent(id)}/members/${encodeURIComponent(m.user_id)}`); say("Member removed."); route(); } catch (e) { showError(main, e); }
            } }, "Remove")))) : h("tr", {}, h("td", { colspan: 4 }, "No members yet.")))))),
      users.length ? form : null);
  }

  // ---- Audit log ----
  async function auditLog() {
    const params = new URLSearchParams(location.hash.split("?")[1] || "");
    const f = {
      action: h("select", { id: "a-action" }, ["", "http.request", "api_key.created", "api_key.updated", "api_key.rotated", "api_key.revoked", "api_key.expired"].map((a) => h("option", { value: a, selected: params.get("action") === a }, a || "Any action"))),
      outcome: h("input", { type: "text", id: "a-outcome", value: params.get("outcome") || "", placeholder: "allowed, revoked_key…" }),
      api_key_id: h("input", { type: "text", id: "a-key", value: params.get("api_key_id") || "", placeholder: "key_…" }),
      actor_id: h("input", { type: "text", id: "a-actor", value: params.get("actor_id") || "", placeholder: "usr_…" }),
      since: h("input", { type: "datetime-local", id: "a-since" }),
      until: h("input", { type: "datetime-local", id: "a-until" }),
    };
    const out = h("div", {});
    let cursor = null;
    const more = h("button", { type: "button", class: "secondary", hidden: true, onclick: () => load(true) }, "Older events");
    let rows = [];
    async function load(next) {
      const q = new URLSearchParams({ limit: "100" });
      for (const [k, el] of Object.entries(f)) {
        if (!el.value.trim()) continue;
        q.set(k, el.type === "datetime-local" ? new Date(el.value).toISOString().replace(/\.\d{3}Z$/, "Z") : el.value.trim());
      }
      if (next && cursor) q.set("cursor", cursor); else rows = [];
      const r = await api("GET", `/v1/audit_events?${q}`);
      rows = rows.concat(r.data);
      cursor = r.next_cursor;
      more.hidden = !cursor;
      out.replaceChildren(h("p", { class: "hint", role: "status" }, `${rows.length} events`), auditTable(rows, "audit-table"));
    }
    const form = h("form", { class: "panel" }, h("div", { class: "row" },
      h("div", { class: "grow" }, field("Action", f.action)), h("div", { class: "grow" }, field("Outcome", f.outcome)),
      h("div", { class: "grow" }, field("Key id", f.api_key_id)), h("div", { class: "grow" }, field("Actor id", f.actor_id)),
      h("div", { class: "grow" }, field("Since", f.since)), h("div", { class: "grow" }, field("Until", f.until))),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Filter")));
    form.addEventListener("submit", (ev) => { ev.preventDefault(); load(false).then(() => clearError(form), (e) => showError(form, e)); });
    render(h("h1", {}, "Audit log"),
      h("p", { class: "lead" }, "Every key change and every request made with a key, allowed or refused, hash-chained per organization (tocsin audit verify proves it intact)."),
      form, out, h("div", { class: "pager" }, more));
    if (!can("audit:read")) { out.replaceChildren(h("p", { class: "muted" }, "Reading the audit log needs the permission audit:read.")); return; }
    await load(false);
  }

  // ---- Start: an existing cookie session, or the sign-in form. ----
  (async function start() {
    try {
      await loadSession();
      if (!location.hash || location.hash === "#/signin") location.hash = "#/keys"; else await route();
    } catch (_) {
      signIn();
    }
  })();
})();
