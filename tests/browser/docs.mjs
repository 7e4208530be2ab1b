// Drives mlapi's GET /docs (Swagger UI) in a real headless Chromium:
// the page loads with no console error, CSP violation or failed request,
// lists exactly the operations of /openapi.json, "Try it out" on /health
// shows 200, "Authorize" works with the password flow and with an API key
// (GET /api/v1/users/me shows 200 with each), and a screenshot is written.
//
//   node docs.mjs --url http://127.0.0.1:PORT --username U --password P \
//     --api-key sk_live_… --screenshot out.png [--chromium /usr/bin/chromium]
//
// Exits 0 when every check passes; otherwise prints what failed and exits 1.
// Run by tests/it/docs.rs; `npm ci` here (scripts/test does it) installs
// playwright-core, which drives the system Chromium (no browser download).

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

import { chromium } from "playwright-core";

const { values: opt } = parseArgs({
  options: {
    url: { type: "string" },
    username: { type: "string" },
    password: { type: "string" },
    "api-key": { type: "string" },
    screenshot: { type: "string" },
    chromium: { type: "string", default: "/usr/bin/chromium" },
  },
});
for (const name of ["url", "username", "password", "api-key", "screenshot"]) {
  if (!opt[name]) {
    console.error(`docs.mjs: --${name} is required`);
    process.exit(2);
  }
}
const base = opt.url.replace(/\/$/, "");

// A hung browser must fail the test, not hold it forever.
const watchdog = setTimeout(() => {
  console.error("docs.mjs: timed out after 150 s");
  process.exit(1);
}, 150_000);

const problems = [];
const step = (text) => console.log(`-- ${text}`);

// The background-networking flags keep Chromium from dialling Google on a
// closed network (its refused connections would show as errors).
const profile = mkdtempSync(join(tmpdir(), "mlapi-docs-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: opt.chromium,
  headless: true,
  viewport: { width: 1280, height: 900 },
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});

try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(30_000);

  // Everything the browser complains about counts, CSP violations included
  // (reported both as a DOM event and in the browser's own log).
  await page.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => {
      console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline"}`);
    });
  });
  page.on("console", (msg) => {
    console.log(`   console.${msg.type()}: ${msg.text()}`);
    if (msg.type() === "error") problems.push(`console error: ${msg.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`uncaught exception: ${e.message}`));
  page.on("requestfailed", (r) =>
    problems.push(`request failed: ${r.method()} ${r.url()}: ${r.failure()?.errorText}`),
  );
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push(`${r.status()} for ${r.request().method()} ${r.url()}`);
    if (!r.url().startsWith(base)) problems.push(`request left the daemon: ${r.url()}`);
  });
  const cdp = await context.newCDPSession(page);
  cdp.on("Log.entryAdded", ({ entry }) => {
    if (entry.level === "error") problems.push(`browser log: ${entry.text} ${entry.url ?? ""}`);
  });
  await cdp.send("Log.enable");

  step(`open ${base}/docs`);
  const loaded = await page.goto(`${base}/docs`, { waitUntil: "networkidle" });
  check(loaded.status() === 200, `/docs answered ${loaded.status()}`);
  const csp = loaded.headers()["content-security-policy"] ?? "";
  check(csp.includes("script-src 'self'"), `/docs CSP: ${csp}`);

  step("every operation of /openapi.json is listed, and nothing else");
  const doc = await (await fetch(`${base}/openapi.json`)).json();
  const expected = [];
  for (const item of Object.values(doc.paths)) {
    for (const op of Object.values(item)) {
      expected.push(`operations-${op.tags[0]}-${op.operationId}`);
    }
  }
  await page.locator(".opblock").first().waitFor();
  const listed = await page.locator(".opblock").evaluateAll((els) => els.map((e) => e.id));
  check(
    JSON.stringify([...listed].sort()) === JSON.stringify([...expected].sort()),
    `listed ${listed.length} operations, expected ${expected.length}: ` +
      `missing ${expected.filter((x) => !listed.includes(x))}, ` +
      `extra ${listed.filter((x) => !expected.includes(x))}`,
  );
  console.log(`   ${listed.length} operations listed`);
  await noErrorPanel(page, "after loading");

  step("Try it out on GET /health shows 200");
  const health = await execute(page, "operations-operations-health", "/health");
  check(health.status === 200, `/health answered ${health.status}`);

  step("Authorize with the password flow (OAuth2PasswordBearer)");
  await page.locator(".auth-wrapper .authorize").click();
  const oauth = authContainer(page, "OAuth2PasswordBearer");
  await oauth.locator("#oauth_username").fill(opt.username);
  await oauth.locator("#oauth_password").fill(opt.password);
  const [tokenRequest] = await Promise.all([
    page.waitForRequest((r) => r.url().endsWith("/api/v1/auth/token")),
    button(oauth, "Authorize").click(),
  ]);
  const tokenResponse = await tokenRequest.response();
  // What Swagger UI sends, for the record (the password is not printed).
  const sent = new URLSearchParams(tokenRequest.postData() ?? "");
  sent.set("password", "…");
  console.log(`   token request: Authorization: ${tokenRequest.headers()["authorization"] ?? "(none)"}`);
  console.log(`   token request: Content-Type: ${tokenRequest.headers()["content-type"]}`);
  console.log(`   token request body: ${sent}`);
  check(tokenResponse?.status() === 200, `token endpoint answered ${tokenResponse?.status()}`);
  await button(oauth, "Logout").waitFor();
  await closeModal(page);

  step("GET /api/v1/users/me with the access token shows 200");
  const withToken = await execute(page, "operations-users-me", "/api/v1/users/me");
  check(withToken.status === 200, `/users/me with a token answered ${withToken.status}`);
  check(
    /^Bearer ey/.test(withToken.headers["authorization"] ?? ""),
    `/users/me was sent Authorization: ${withToken.headers["authorization"]}`,
  );
  check(withToken.body.includes(`"${opt.username}"`), `/users/me body: ${withToken.body}`);

  step("log out of the password flow; Authorize with an API key (APIKeyHeader)");
  await page.locator(".auth-wrapper .authorize").click();
  await button(authContainer(page, "OAuth2PasswordBearer"), "Logout").click();
  const keyBox = authContainer(page, "APIKeyHeader");
  await keyBox.locator("#api_key_value").fill(opt["api-key"]);
  await button(keyBox, "Authorize").click();
  await button(keyBox, "Logout").waitFor();
  await closeModal(page);

  step("GET /api/v1/users/me with the API key shows 200");
  const withKey = await execute(page, "operations-users-me", "/api/v1/users/me");
  check(withKey.status === 200, `/users/me with a key answered ${withKey.status}`);
  check(withKey.headers["x-api-key"] === opt["api-key"], "/users/me was not sent X-API-Key");
  check(!withKey.headers["authorization"], "/users/me was still sent a bearer token");
  check(withKey.body.includes(`"${opt.username}"`), `/users/me body: ${withKey.body}`);

  // Schemas are resolved as they are shown: open them all, then look again.
  const models = await page
    .locator('section.models article[data-json-schema-level="0"] > div > .json-schema-2020-12-expand-deep-button')
    .all();
  for (const model of models) await model.click();
  check(models.length === Object.keys(doc.components.schemas).length, `${models.length} schemas shown`);
  console.log(`   ${models.length} schemas expanded`);
  await noErrorPanel(page, "after expanding every schema");

  // The README's picture: the top of the list, signed in with the key.
  for (const id of ["operations-users-me", "operations-operations-health"]) {
    await page.locator(`#${id} .opblock-summary-control`).click();
  }
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.mouse.move(0, 0);
  await page.screenshot({ path: opt.screenshot });
  console.log(`   screenshot: ${opt.screenshot}`);
} catch (e) {
  problems.push(`step failed: ${e.message}`);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
  clearTimeout(watchdog);
}

if (problems.length) {
  console.log(`FAILED (${problems.length}):`);
  for (const p of problems) console.log(`  ${p}`);
  process.exit(1);
}
console.log("ok: /docs passed every check");

function check(ok, what) {
  if (!ok) problems.push(what);
}

// Swagger UI reports a document it cannot resolve (a dangling $ref, a
// schema error) in a panel, not on the console.
async function noErrorPanel(page, when) {
  const panel = page.locator(".errors-wrapper");
  if (await panel.count()) {
    problems.push(`Swagger UI shows errors ${when}: ${(await panel.innerText()).slice(0, 2000)}`);
  }
}

// By visible text: Swagger UI's aria-labels differ from it.
function button(scope, text) {
  return scope.locator("button", { hasText: new RegExp(`^${text}$`) });
}

function authContainer(page, scheme) {
  return page.locator(".modal-ux .auth-container").filter({ has: page.locator(`h4:has-text("${scheme}")`) });
}

async function closeModal(page) {
  await page.locator(".modal-ux .btn-done").first().click();
  await page.locator(".modal-ux").waitFor({ state: "detached" });
}

// Expands an operation, presses "Try it out" (once) and "Execute", and
// returns the status Swagger UI shows with the request the browser sent.
async function execute(page, id, path) {
  const block = page.locator(`#${id}`);
  if (!(await block.locator(".opblock-body").count())) {
    await block.locator(".opblock-summary-control").click();
  }
  const tryOut = block.locator(".try-out__btn");
  if ((await tryOut.innerText()).trim() === "Try it out") await tryOut.click();
  // A previous answer is cleared, so the status read below is this one's.
  const clear = block.locator(".btn-clear");
  if (await clear.count()) await clear.click();
  const [response] = await Promise.all([
    page.waitForResponse((r) => new URL(r.url()).pathname === path),
    block.locator(".btn.execute").click(),
  ]);
  const request = response.request();
  const shown = block.locator(".live-responses-table tbody .response-col_status");
  await shown.waitFor();
  const status = Number((await shown.innerText()).trim());
  check(status === response.status(), `${path}: shown ${status}, received ${response.status()}`);
  return { status, headers: await request.allHeaders(), body: await response.text() };
}
