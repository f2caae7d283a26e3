// The web console, end to end in headless Chromium against a real `tocsin serve` (started by
// run.sh): sign in; create a key with the wizard and see its token once; reload and find it
// gone; use the token against the API; explain a refusal; revoke the key in the console and
// see the API refuse it with its explanation; create an integration, send an alert with its
// key and acknowledge it in the console; the audit log; a phone-sized screen; one email in two
// organizations, where the sign-in asks which one unless its link names the organization.
// The steps run
// in order and share one browser; the screenshots they save are the README's.
"use strict";

const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const { execFileSync } = require("node:child_process");
const path = require("node:path");
const { chromium } = require("playwright-core");

const base = process.env.TOCSIN_URL;
const email = process.env.TOCSIN_OWNER_EMAIL;
const password = process.env.TOCSIN_OWNER_PASSWORD;
// The owner's first key, written by the server's first start (for checks through the API).
const ownerToken = fs.readFileSync(process.env.TOCSIN_OWNER_TOKEN_FILE, "utf8").trim();
const shots = process.env.TOCSIN_SCREENSHOTS;
const TOKEN_RE = /tcs_[ptoi]_[a-z0-9]{2,8}_[0-9A-Za-z]{38}/;

let browser, context, page;
const s = {}; // what earlier steps learned: tokens, ids
let failed = false;
const counts = { passed: 0, failed: 0, skipped: 0 };

// Each step runs only if every earlier one passed: they build on each other.
function step(name, fn) {
  test(name, async (t) => {
    if (failed) { counts.skipped++; return t.skip("an earlier step failed"); }
    try { await fn(t); counts.passed++; } catch (e) { failed = true; counts.failed++; throw e; }
  });
}

async function shot(name, target) {
  // The passing "done" notice would cover part of the picture.
  await page.evaluate(() => { document.getElementById("status").textContent = ""; });
  await (target || page).screenshot({ path: path.join(shots, name), fullPage: false, animations: "disabled" });
}

async function apiCall(method, p, token, body) {
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(base + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

// Nothing the browser keeps may hold a token: not storage, not the URL, not the page.
async function assertNoTokenInBrowser(token, where) {
  const seen = await page.evaluate(() => ({
    local: JSON.stringify(Object.assign({}, localStorage)),
    session: JSON.stringify(Object.assign({}, sessionStorage)),
    url: location.href,
    html: document.documentElement.outerHTML,
    cookie: document.cookie,
  }));
  for (const [k, v] of Object.entries(seen)) {
    assert.ok(!v.includes(token), `${where}: the token is in ${k}`);
  }
  assert.equal(seen.local, "{}", `${where}: localStorage is not empty`);
  assert.equal(seen.session, "{}", `${where}: sessionStorage is not empty`);
  assert.equal(seen.cookie, "", `${where}: a cookie is readable by scripts`);
}

// Every control has a label (or an aria-label) and every button a name.
async function assertLabelled(where) {
  const unlabelled = await page.evaluate(() => {
    const bad = [];
    for (const el of document.querySelectorAll("input, select, textarea")) {
      if (!(el.labels && el.labels.length) && !el.getAttribute("aria-label")) bad.push(el.outerHTML.slice(0, 80));
    }
    for (const el of document.querySelectorAll("button, a[href]")) {
      if (!(el.getAttribute("aria-label") || el.textContent).trim()) bad.push(el.outerHTML.slice(0, 80));
    }
    return bad;
  });
  assert.deepEqual(unlabelled, [], `${where}: unlabelled controls`);
}

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.TOCSIN_TEST_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  context = await browser.newContext({ viewport: { width: 1280, height: 860 }, baseURL: base });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
  page = await context.newPage();
  page.setDefaultTimeout(15000);
  // A script error or a CSP violation in the console is a failure.
  page.on("pageerror", (e) => { s.pageErrors = (s.pageErrors || []).concat(String(e)); });
  page.on("console", (m) => { if (m.type() === "error" && !/401|403|Failed to load resource/.test(m.text())) s.pageErrors = (s.pageErrors || []).concat(m.text()); });
});

after(async () => {
  if (browser) await browser.close();
  // run.sh prints this last, as the plain "N passed, N failed" line.
  if (process.env.TOCSIN_TEST_SUMMARY) {
    fs.writeFileSync(process.env.TOCSIN_TEST_SUMMARY, `console: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped\n`);
  }
});

step("the console is served by the binary with a strict content security policy", async () => {
  const r = await fetch(base + "/");
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type"), /^text\/html/);
  assert.match(r.headers.get("content-security-policy"), /default-src 'self'/);
  assert.doesNotMatch(r.headers.get("content-security-policy"), /unsafe-inline/);
  assert.equal(r.headers.get("x-frame-options"), "DENY");
  const js = await fetch(base + "/console/app.js");
  assert.match(js.headers.get("content-type"), /^text\/javascript/);
  // No asset comes from anywhere else.
  const html = await r.text();
  assert.doesNotMatch(html, /https?:\/\//);
});

step("sign in with email and password; the session is an HttpOnly, SameSite=Strict cookie", async () => {
  await page.goto("/");
  await page.getByRole("heading", { name: "Sign in to Tocsin" }).waitFor();
  // Keyboard only: the email field has focus, Tab moves to the password, Enter submits.
  await page.keyboard.type(email);
  await page.keyboard.press("Tab");
  await page.keyboard.type(password);
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "API keys" }).waitFor();
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === "tocsin_session");
  assert.ok(session, "no tocsin_session cookie");
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, "Strict");
  assert.equal(session.path, "/");
  s.sessionToken = session.value;
  await assertNoTokenInBrowser(session.value, "after sign-in");
});

step("a request with the cookie but without the CSRF token is refused and says why", async () => {
  const r = await page.evaluate(async () => {
    const resp = await fetch("/v1/teams", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ name: "forged" }) });
    return { status: resp.status, body: await resp.json() };
  });
  assert.equal(r.status, 403);
  assert.equal(r.body.error.code, "csrf_token_missing");
  assert.match(r.body.error.message, /X-CSRF-Token/);
});

step("teams: create a team and add a member with a team role", async () => {
  const rob = await apiCall("POST", "/v1/users", ownerToken, { email: "rob@example.com", name: "Rob", role_name: "viewer", password: "rob's passphrase" });
  assert.equal(rob.status, 201, JSON.stringify(rob.body));
  await page.getByRole("link", { name: "Teams" }).click();
  await page.getByLabel("New team name").fill("payments");
  await page.getByRole("button", { name: "Create team" }).click();
  await page.getByRole("heading", { name: "payments" }).waitFor();
  await page.locator("#members-table", { hasText: "No members yet." }).waitFor();
  s.teamId = decodeURIComponent(new URL(page.url()).hash.split("/")[2]);
  assert.match(s.teamId, /^team_/);
  await page.getByLabel("User", { exact: true }).selectOption({ label: "Rob <rob@example.com>" });
  await page.getByRole("checkbox", { name: /^responder/ }).check();
  await assertLabelled("team page");
  await page.getByRole("button", { name: "Add member" }).click();
  const row = page.locator("#members-table tbody tr", { hasText: "rob@example.com" });
  await row.waitFor();
  assert.match(await row.innerText(), /responder/);
  const members = await apiCall("GET", `/v1/teams/${s.teamId}/members`, ownerToken);
  assert.deepEqual(members.body.data.map((m) => [m.user_id, m.team_role_names]), [[rob.body.id, ["responder"]]]);
});

step("create a key with the wizard: kind, scope, roles, expiry; the token is shown once", async () => {
  await page.getByRole("link", { name: "API keys" }).click();
  await page.getByRole("link", { name: "Create a key" }).click();
  await page.getByRole("heading", { name: "Step 1 of 4: Kind" }).waitFor();
  await page.getByRole("radio", { name: /Personal/ }).check();
  await page.getByRole("button", { name: "Next" }).click();
  await page.getByRole("heading", { name: "Step 2 of 4: Scope" }).waitFor();
  await page.getByRole("button", { name: "Next" }).click();
  await page.getByRole("heading", { name: "Step 3 of 4: Roles" }).waitFor();
  // Each role says what it allows.
  const viewer = page.getByRole("checkbox", { name: /^viewer/ });
  await viewer.check();
  assert.match(await page.locator("label.choice", { has: viewer }).innerText(), /Allows: .*alerts:read/);
  await page.evaluate(() => window.scrollTo(0, 0));
  await shot("key-wizard-roles.png");
  await assertLabelled("wizard");
  await page.getByRole("button", { name: "Next" }).click();
  await page.getByLabel("Name").fill("ci deploy");
  await page.getByLabel("Expires after").selectOption("30");
  await page.getByRole("button", { name: "Create key" }).click();
  const dialog = page.getByRole("dialog", { name: /Key “ci deploy” created/ });
  await dialog.waitFor();
  const token = (await dialog.locator("output").innerText()).trim();
  assert.match(token, TOKEN_RE);
  assert.ok(token.startsWith("tcs_p_"), token);
  assert.match(await dialog.innerText(), /shown only this once/);
  await dialog.getByRole("button", { name: "Copy token" }).click();
  await dialog.getByText("Copied to the clipboard.").waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), token);
  await shot("key-created-token.png");
  s.keyToken = token;
  // A stray Esc does not lose the token: the first one only warns.
  await page.keyboard.press("Escape");
  await dialog.getByText("This token will not be shown again.", { exact: false }).waitFor();
  assert.equal(await dialog.isVisible(), true);
  // Closing the dialog takes the token off the page; the key's page opens.
  await page.evaluate(() => navigator.clipboard.writeText(""));
  await dialog.getByRole("button", { name: "I have copied it" }).click();
  await page.getByRole("heading", { name: "ci deploy" }).waitFor();
  s.keyId = decodeURIComponent(new URL(page.url()).hash.split("/")[2]);
  assert.match(s.keyId, /^key_/);
  await assertNoTokenInBrowser(token, "after the dialog closed");
});

step("after a reload the token is nowhere, and the key is listed with its details", async () => {
  await page.reload();
  await page.getByRole("heading", { name: "ci deploy" }).waitFor();
  await assertNoTokenInBrowser(s.keyToken, "key page after reload");
  await page.getByRole("link", { name: "← All keys" }).click();
  const row = page.locator("#keys-table tbody tr", { hasText: "ci deploy" });
  await row.waitFor();
  const text = await row.innerText();
  assert.match(text, /personal/);
  assert.match(text, /viewer/);
  assert.match(text, /active/);
  assert.ok(text.includes(s.keyToken.slice(-4)), "the list shows the token's hint");
  await assertNoTokenInBrowser(s.keyToken, "key list after reload");
  // Filters and search.
  await page.getByLabel("Search").fill("no such key");
  await page.locator("#keys-table tbody", { hasText: "No key matches these filters." }).waitFor();
  await page.getByLabel("Search").fill("deploy");
  await row.waitFor();
  await shot("keys.png");
  await assertLabelled("key list");
});

step("the token works against the API", async () => {
  const r = await apiCall("GET", "/v1/auth/whoami", s.keyToken);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.id, s.keyId);
  assert.equal(r.body.name, "ci deploy");
  assert.deepEqual(r.body.role_names, ["viewer"]);
});

step("the key's page explains what the key may do, and why not", async () => {
  await page.locator("#keys-table").getByRole("link", { name: "ci deploy" }).click();
  await page.getByRole("heading", { name: "Explain" }).waitFor();
  await page.getByLabel("Route", { exact: true }).selectOption("POST /v1/teams");
  await page.getByRole("button", { name: "Explain" }).click();
  const result = page.locator("#explain-result");
  await result.getByText(/Refused \(permission_denied\)/).waitFor();
  assert.match(await result.innerText(), /teams:write/);
  assert.match(await result.innerText(), /How to fix/);
  await page.getByLabel("Route", { exact: true }).selectOption("GET /v2/alerts");
  await page.getByRole("button", { name: "Explain" }).click();
  await result.getByText("Allowed").waitFor();
  // Or a permission, account-wide or in a team.
  await page.getByLabel("Ask about").selectOption("permission");
  await page.getByLabel("Permission", { exact: true }).selectOption("alerts:delete");
  await page.getByLabel("In", { exact: true }).selectOption({ label: "payments" });
  await page.getByRole("button", { name: "Explain" }).click();
  await result.getByText(/Refused \(permission_denied\)/).waitFor();
  assert.match(await result.innerText(), /alerts:delete/);
  await page.getByLabel("Ask about").selectOption("route");
  await page.getByLabel("Route", { exact: true }).selectOption("POST /v1/teams");
  await page.getByRole("button", { name: "Explain" }).click();
  await result.getByText(/Refused/).waitFor();
  // The audit trail shows the creation and the request made with the key.
  const trail = page.locator("#key-lifecycle");
  await trail.getByText("api_key.created").waitFor();
  await page.locator("#key-requests").getByText("GET /v1/auth/whoami").waitFor();
  await shot("key-explain.png");
  await assertLabelled("key page");
});

step("rotating shows the new token once; the old one works through the grace period", async () => {
  await page.getByRole("button", { name: "Rotate" }).click();
  const dialog = page.getByRole("dialog", { name: /Rotate “ci deploy”/ });
  await dialog.getByLabel("Grace period for the old token").selectOption("3600");
  await assertLabelled("rotate dialog");
  await dialog.getByRole("button", { name: "Rotate" }).click();
  const shown = page.getByRole("dialog", { name: /New token for “ci deploy”/ });
  await shown.waitFor();
  const token = (await shown.locator("output").innerText()).trim();
  assert.match(token, TOKEN_RE);
  assert.notEqual(token, s.keyToken);
  await shown.getByRole("button", { name: "I have copied it" }).click();
  await page.locator(".facts .badge", { hasText: "rotating" }).waitFor();
  await assertNoTokenInBrowser(token, "after rotating");
  assert.equal((await apiCall("GET", "/v1/auth/whoami", token)).status, 200);
  assert.equal((await apiCall("GET", "/v1/auth/whoami", s.keyToken)).status, 200);
  s.rotatedToken = token;
});

step("revoking asks for confirmation; Esc cancels", async () => {
  await page.getByRole("button", { name: "Revoke" }).click();
  const dialog = page.getByRole("dialog", { name: /Revoke “ci deploy”/ });
  await dialog.waitFor();
  // Focus moved into the dialog (onto Cancel, the safe choice).
  assert.equal(await page.evaluate(() => document.activeElement.textContent), "Cancel");
  await page.keyboard.press("Escape");
  await dialog.waitFor({ state: "detached" });
  assert.equal((await apiCall("GET", "/v1/auth/whoami", s.keyToken)).status, 200);
  await page.getByRole("button", { name: "Revoke" }).click();
  await dialog.getByRole("button", { name: "Revoke key" }).click();
  await page.locator(".facts .badge", { hasText: "revoked" }).waitFor();
});

step("the API refuses the revoked key's tokens, with when and by whom", async () => {
  assert.equal((await apiCall("GET", "/v1/auth/whoami", s.rotatedToken)).status, 401);
  const r = await apiCall("GET", "/v1/auth/whoami", s.keyToken);
  assert.equal(r.status, 401);
  assert.equal(r.body.error.code, "revoked_key");
  assert.match(r.body.error.message, /revoked/);
  assert.match(r.body.error.message, /Owner|owner/);
  assert.ok(Array.isArray(r.body.error.fixes) && r.body.error.fixes.length > 0, "the refusal says how to fix it");
});

step("create an integration in the console; its key is shown once", async () => {
  await page.getByRole("link", { name: "Integrations" }).click();
  await page.getByRole("button", { name: "Create an integration" }).click();
  const dialog = page.getByRole("dialog", { name: "Create an integration" });
  await dialog.getByLabel("Name").fill("Prometheus");
  await dialog.getByLabel("Team").selectOption({ label: "payments" });
  await dialog.getByRole("button", { name: "Create" }).click();
  const shown = page.getByRole("dialog", { name: /Integration “Prometheus” created/ });
  await shown.waitFor();
  const token = (await shown.locator("output").innerText()).trim();
  assert.match(token, TOKEN_RE);
  assert.ok(token.startsWith("tcs_i_"), token);
  s.integrationToken = token;
  // With the keyboard: the first Esc warns, the second closes.
  await page.keyboard.press("Escape");
  await shown.getByText("This token will not be shown again.", { exact: false }).waitFor();
  await page.keyboard.press("Escape");
  await shown.waitFor({ state: "detached" });
  const row = page.locator("#integrations-table tbody tr", { hasText: "Prometheus" });
  await row.waitFor();
  assert.match(await row.innerText(), /payments/);
  await assertNoTokenInBrowser(token, "integrations page");
  await shot("integrations.png");
  await assertLabelled("integrations");
  // Its keys, from its row.
  await row.getByRole("link", { name: "Keys of Prometheus" }).click();
  const keyRow = page.locator("#keys-table tbody tr", { hasText: "integration" });
  await keyRow.waitFor();
  assert.equal(await page.locator("#keys-table tbody tr").count(), 1);
  assert.ok((await keyRow.innerText()).includes(token.slice(-4)));
  assert.match(await keyRow.innerText(), /integration Prometheus/);
  await page.getByText("Showing the keys of integration Prometheus.").waitFor();
  // Access flags take effect at once: without write access its key cannot create alerts.
  await page.getByRole("link", { name: "Integrations" }).click();
  const write = page.getByRole("checkbox", { name: /^Write access for Prometheus/ });
  await write.uncheck();
  await page.getByText("write access off").waitFor();
  const refused = await fetch(base + "/v2/alerts", { method: "POST", headers: { Authorization: `GenieKey ${token}`, "Content-Type": "application/json" }, body: JSON.stringify({ message: "refused" }) });
  assert.equal(refused.status, 403, await refused.text());
  await write.check();
  await page.getByText("write access on").waitFor();
});

step("an alert sent with the integration's key shows up, and is acknowledged in the console", async () => {
  const sent = await fetch(base + "/v2/alerts", {
    method: "POST",
    headers: { Authorization: `GenieKey ${s.integrationToken}`, "Content-Type": "application/json" },
    body: JSON.stringify({ message: "Checkout latency above 2 s", priority: "P2", tags: ["checkout", "latency"], alias: "checkout-latency" }),
  });
  assert.equal(sent.status, 202, await sent.text());
  await fetch(base + "/v2/alerts", {
    method: "POST",
    headers: { Authorization: `GenieKey ${s.integrationToken}`, "Content-Type": "application/json" },
    body: JSON.stringify({ message: "Disk 91% full on db-2", priority: "P3", tags: ["db"] }),
  });
  await page.getByRole("link", { name: "Alerts" }).click();
  const row = page.locator("#alerts-table tbody tr", { hasText: "Checkout latency above 2 s" });
  await row.waitFor();
  assert.match(await row.innerText(), /Prometheus/);
  assert.match(await row.innerText(), /payments/);
  // The search syntax.
  await page.getByLabel("Search").fill("tag:db");
  await page.getByRole("button", { name: "Search" }).click();
  await row.waitFor({ state: "detached" });
  await page.locator("#alerts-table tbody tr", { hasText: "Disk 91% full" }).waitFor();
  // A query that does not parse is explained, with where it breaks.
  await page.getByLabel("Search").fill("priority:(P1");
  await page.getByRole("button", { name: "Search" }).click();
  const bad = page.locator(".notice.error");
  await bad.waitFor();
  assert.match(await bad.innerText(), /character|query/i);
  await page.getByLabel("Search").fill("");
  await page.getByRole("button", { name: "Search" }).click();
  await row.waitFor();
  await bad.waitFor({ state: "detached" });
  await shot("alerts.png");
  await assertLabelled("alerts");
  await row.getByRole("button", { name: /^Acknowledge alert/ }).click();
  await row.waitFor({ state: "detached" });
  const r = await apiCall("GET", "/v2/alerts/checkout-latency?identifierType=alias", ownerToken);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.data.acknowledged, true);
  await page.getByRole("link", { name: "Acknowledged" }).click();
  const acked = page.locator("#alerts-table tbody tr", { hasText: "Checkout latency above 2 s" });
  await acked.waitFor();
  await acked.getByRole("button", { name: /^Add a note/ }).click();
  const dialog = page.getByRole("dialog", { name: /Note on alert/ });
  await dialog.getByLabel("Note").fill("Rolled back the 14:02 deploy.");
  await dialog.getByRole("button", { name: "Add note" }).click();
  await dialog.waitFor({ state: "detached" });
  const notes = await apiCall("GET", "/v2/alerts/checkout-latency/notes?identifierType=alias", ownerToken);
  assert.equal(notes.status, 200, JSON.stringify(notes.body));
  assert.ok(notes.body.data.some((n) => n.note === "Rolled back the 14:02 deploy."), JSON.stringify(notes.body));
  await acked.getByRole("button", { name: /^Close alert/ }).click();
  await acked.waitFor({ state: "detached" });
  await page.getByRole("link", { name: "Closed" }).click();
  await page.locator("#alerts-table tbody tr", { hasText: "Checkout latency above 2 s" }).waitFor();
});

step("the audit log filters by action", async () => {
  await page.getByRole("link", { name: "Audit log" }).click();
  await page.locator("#audit-table").waitFor();
  await page.getByLabel("Action").selectOption("api_key.revoked");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.getByText("1 events").waitFor();
  const row = page.locator("#audit-table tbody tr");
  assert.equal(await row.count(), 1);
  assert.match(await row.innerText(), /api_key\.revoked/);
  await page.getByLabel("Action").selectOption("");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.locator("#audit-table tbody tr", { hasText: "http.request" }).first().waitFor();
  await shot("audit.png");
  await assertLabelled("audit log");
});

step("on a phone-sized screen the menu folds away and tables become cards", async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.getByRole("button", { name: "Menu" }).click();
  await page.getByRole("link", { name: "Alerts" }).click();
  await page.getByRole("link", { name: "Closed" }).click();
  const card = page.locator("#alerts-table tbody tr", { hasText: "Checkout latency above 2 s" });
  await card.waitFor();
  // Nothing wider than the screen.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow}px wider than the phone`);
  await shot("phone-alerts.png");
  // Every other page fits too.
  for (const [hash, heading] of [["#/keys", "API keys"], ["#/keys/new", "Create an API key"], [`#/keys/${s.keyId}`, "ci deploy"], ["#/integrations", "Integrations"], ["#/teams", "Teams"], [`#/teams/${s.teamId}`, "payments"], ["#/audit", "Audit log"]]) {
    await page.evaluate((h) => { location.hash = h; }, hash);
    await page.getByRole("heading", { name: heading, exact: true }).waitFor();
    await page.locator("main table, main form").first().waitFor();
    const wider = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(wider <= 0, `${hash} is ${wider}px wider than the phone`);
  }
  await page.setViewportSize({ width: 1280, height: 860 });
});

step("a team member with fewer rights gets every page, and refusals that explain themselves", async () => {
  const rob = await browser.newContext({ viewport: { width: 1280, height: 860 }, baseURL: base });
  const p = await rob.newPage();
  const errors = [];
  p.on("pageerror", (e) => errors.push(String(e)));
  try {
    await p.goto("/");
    await p.getByLabel("Email").fill("rob@example.com");
    await p.getByLabel("Password").fill("rob's passphrase");
    await p.getByRole("button", { name: "Sign in" }).click();
    await p.getByRole("heading", { name: "API keys" }).waitFor();
    for (const [link, heading] of [["Alerts", "Alerts"], ["Integrations", "Integrations"], ["Teams", "Teams"], ["Audit log", "Audit log"]]) {
      await p.getByRole("link", { name: link, exact: true }).click();
      await p.getByRole("heading", { name: heading, exact: true }).waitFor();
      assert.equal(await p.getByRole("heading", { name: "Something went wrong" }).count(), 0, link);
    }
    await p.getByText("Reading the audit log needs the permission audit:read.").waitFor();
    // The team's alert is visible to its member (the account role is only viewer).
    await p.getByRole("link", { name: "Alerts", exact: true }).click();
    await p.getByRole("link", { name: "Closed" }).click();
    await p.locator("#alerts-table tbody tr", { hasText: "Checkout latency above 2 s" }).waitFor();
    // An organization key is beyond a viewer: the wizard shows the server's explanation.
    await p.getByRole("link", { name: "API keys" }).click();
    await p.getByRole("link", { name: "Create a key" }).click();
    await p.getByRole("radio", { name: /Organization/ }).check();
    await p.getByRole("button", { name: "Next" }).click();
    await p.getByRole("button", { name: "Next" }).click();
    await p.getByRole("checkbox", { name: /^viewer/ }).check();
    await p.getByRole("button", { name: "Next" }).click();
    await p.getByLabel("Name").fill("org wide");
    await p.getByRole("button", { name: "Create key" }).click();
    const refusal = p.locator("#wizard .notice.error");
    await refusal.waitFor();
    assert.match(await refusal.innerText(), /owner|admin/i);
    assert.equal(await p.getByRole("dialog").count(), 0, "no token was shown");
    assert.deepEqual(errors, []);
  } finally {
    await rob.close();
  }
});

step("signing out ends the session on the server too", async () => {
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in to Tocsin" }).waitFor();
  assert.equal((await context.cookies()).filter((c) => c.name === "tocsin_session").length, 0);
  const r = await apiCall("GET", "/v1/auth/whoami", s.sessionToken);
  assert.equal(r.status, 401, JSON.stringify(r.body));
  assert.deepEqual(s.pageErrors || [], [], "the console logged errors");
});

step("one email and password in two organizations: the sign-in asks which one", async () => {
  // A second organization whose owner has the same email and password, made with the CLI
  // on the running server's data directory.
  const out = execFileSync(process.env.TOCSIN_TEST_BIN,
    ["orgs", "create", "--data-dir", process.env.TOCSIN_TEST_DATA_DIR, "--org", "Second org", "--email", email, "--json"],
    { env: { ...process.env, TOCSIN_OWNER_PASSWORD: password }, encoding: "utf8" });
  const second = JSON.parse(out);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  const choice = page.getByLabel("Organization");
  await choice.waitFor();
  const options = await choice.locator("option").allInnerTexts();
  assert.equal(options.length, 2, JSON.stringify(options));
  assert.ok(options.some((o) => o.includes("Second org") && o.includes(second.organization_id)), JSON.stringify(options));
  await assertLabelled("the organization choice");
  await choice.selectOption(second.organization_id);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "API keys" }).waitFor();
  assert.match(await page.locator("#who-name").innerText(), /Second org/);
  const session = (await context.cookies()).find((c) => c.name === "tocsin_session");
  const me = await apiCall("GET", "/v1/auth/whoami", session.value);
  assert.equal(me.status, 200, JSON.stringify(me.body));
  assert.equal(me.body.organization.id, second.organization_id);
  assert.equal(me.body.user_id, second.user_id);
  s.secondOrg = second.organization_id;
  assert.deepEqual(s.pageErrors || [], [], "the console logged errors");
});

step("a sign-in link naming the organization signs in to it without asking", async () => {
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in to Tocsin" }).waitFor();
  await page.goto(`/?organization=${encodeURIComponent(s.secondOrg)}`);
  await page.getByRole("heading", { name: "Sign in to Tocsin" }).waitFor();
  assert.match(await page.locator("#signin-organization").innerText(), new RegExp(s.secondOrg));
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "API keys" }).waitFor();
  assert.match(await page.locator("#who-name").innerText(), /Second org/);
  assert.deepEqual(s.pageErrors || [], [], "the console logged errors");
});
