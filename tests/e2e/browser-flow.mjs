// The authorization code flow in a real browser (Debian's Chromium, driven
// by playwright-core) against a running mcpauth deployment: dynamic
// registration, the web server's Basic login (as a user types it), the
// consent page as rendered (content, security headers, a screenshot), the
// Approve button, the redirect to a local callback with code, state and
// iss, the token exchange and an MCP call with the token; then a remembered
// consent (no page the second time; asked again when Remember was
// unchecked), a Deny, and framing refused (frame-ancestors 'none', from a
// page on another 127.0.0.1 port; a data: page too).
//
//   node browser-flow.mjs BASE_URL USER PASSWORD SCREENSHOT_PATH
//
// BASE_URL is the issuer, e.g. http://127.0.0.1:8080; the protected resource
// used is BASE_URL/mcp/files (scope files:read).  CHROMIUM overrides the
// browser (default /usr/bin/chromium).
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { createServer } from "node:http";
import { chromium } from "playwright-core";
import { results, step } from "./oauth.mjs";

const [baseArg, user, password, shotPath] = process.argv.slice(2);
if (!baseArg || !user || !password || !shotPath) {
  console.error("usage: node browser-flow.mjs BASE_URL USER PASSWORD SCREENSHOT_PATH");
  process.exit(2);
}
const base = baseArg.replace(/\/+$/, "");
const resource = `${base}/mcp/files`;
const scope = "files:read";
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const TIMEOUT = 15000;

const b64url = (buf) => Buffer.from(buf).toString("base64url");
const newPkce = () => {
  const verifier = b64url(randomBytes(32));
  return { verifier, challenge: b64url(createHash("sha256").update(verifier).digest()) };
};
const newState = () => b64url(randomBytes(16));

// The client's side: a loopback server that receives the redirect; it also
// serves /frame, a page on another origin that tries to frame the consent.
const callbacks = [];
let framerHtml = "";
const cbServer = createServer((req, res) => {
  const path = req.url.split("?")[0];
  if (path === "/callback") {
    callbacks.push(req.url);
    res.writeHead(200, { "Content-Type": "text/plain; charset=utf-8" });
    res.end("done");
  } else if (path === "/frame") {
    res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
    res.end(framerHtml);
  } else {
    res.writeHead(404, { "Content-Type": "text/plain; charset=utf-8" });
    res.end("not found");
  }
});
let browser = null;
let redirectUri = null;

async function register(name) {
  const r = await fetch(`${base}/oauth2/register`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({
      client_name: name,
      redirect_uris: [redirectUri],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    }),
  });
  const text = await r.text();
  assert.equal(r.status, 201, `registration answered ${r.status}: ${text}`);
  const info = JSON.parse(text);
  assert.ok(info.client_id, text);
  assert.ok(!info.client_secret, "a public client got a secret");
  return info;
}

function authorizationUrl(clientId, state, challenge) {
  const u = new URL(`${base}/oauth2/authorize`);
  u.search = new URLSearchParams({
    response_type: "code",
    client_id: clientId,
    redirect_uri: redirectUri,
    scope,
    state,
    code_challenge: challenge,
    code_challenge_method: "S256",
    resource,
  }).toString();
  return u.href;
}

// A fresh browser profile each time: no cookies, no cached Basic login; the
// credentials are given only when the server asks (401), as a user would.
const newContext = () => browser.newContext({ httpCredentials: { username: user, password } });
const isCallback = (u) => String(u).startsWith(redirectUri);
// every answer of the authorization endpoint seen by a context
// (a 401 answered with the credentials is not reported, only the answer
// to the retry)
const watchAuthorize = (ctx) => {
  const seen = [];
  ctx.on("response", (r) => {
    if (r.url().startsWith(`${base}/oauth2/authorize`)) seen.push({ status: r.status(), url: r.url() });
  });
  return seen;
};

try {
  await new Promise((resolve, reject) => {
    cbServer.once("error", reject);
    cbServer.listen(0, "127.0.0.1", resolve);
  });
  redirectUri = `http://127.0.0.1:${cbServer.address().port}/callback`;
  console.log(`# issuer ${base}, resource ${resource}, callback ${redirectUri}`);

  let client, pkce, state, authUrl, consent, consentResponse, callbackUrl, tokens;

  await step("a public client is registered (RFC 7591)", async () => {
    client = await register("Browser e2e");
  });

  await step("Chromium starts (playwright-core)", async () => {
    browser = await chromium.launch({
      executablePath,
      headless: true,
      timeout: 60000,
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"],
    });
    console.log(`# ${executablePath} ${browser.version()}`);
  });
  if (!browser) throw new Error(`${executablePath} did not start: the browser steps are skipped`);

  await step("the authorization endpoint asks for the web server's Basic login (401)", async () => {
    pkce = newPkce();
    state = newState();
    authUrl = authorizationUrl(client.client_id, state, pkce.challenge);
    const r = await fetch(authUrl, { redirect: "manual" });
    await r.text();
    assert.equal(r.status, 401);
    assert.ok(/^Basic /i.test(r.headers.get("www-authenticate") || ""), r.headers.get("www-authenticate"));
  });

  await step("a wrong password in the browser: no consent page", async () => {
    const ctx = await browser.newContext({ httpCredentials: { username: user, password: `${password}-wrong` } });
    const page = await ctx.newPage();
    page.setDefaultTimeout(TIMEOUT);
    // Chromium gives up after the credentials are refused again
    const r = await page.goto(authUrl, { waitUntil: "load" }).catch((e) => e);
    if (r instanceof Error) assert.match(r.message, /ERR_INVALID_AUTH_CREDENTIALS/);
    else assert.equal(r.status(), 401);
    assert.equal(await page.locator("#approve").count(), 0);
    await ctx.close();
  });

  await step("with the Basic login: the consent page (200)", async () => {
    const ctx = await newContext();
    consent = await ctx.newPage();
    consent.setDefaultTimeout(TIMEOUT);
    consentResponse = await consent.goto(authUrl, { waitUntil: "load" });
    assert.ok(consentResponse, "no response");
    assert.equal(consentResponse.status(), 200);
    assert.equal(new URL(consent.url()).pathname, "/oauth2/authorize");
    assert.equal(await consent.title(), "Authorize access");
    assert.equal((await consent.locator("h1").innerText()).trim(), "Authorize access");
  });

  await step("consent page names the client, resource, user, redirect host, scope", async () => {
    const text = await consent.locator("body").innerText();
    assert.equal(await consent.locator("strong", { hasText: "Browser e2e" }).count(), 1, text);
    assert.ok(text.includes("Browser e2e wants to use Example file server"), text);
    assert.ok(text.includes(`(${resource})`), text);
    assert.ok(text.includes(` as ${user}.`), text);
    assert.ok(text.includes("After you answer you go to 127.0.0.1."), text);
    assert.ok(/only redirects to this computer \(a local program\)\. Approve only if you just started it yourself\./.test(text), text);
    assert.ok(text.includes("The client's name is self-declared and not verified."), text);
    const perms = await consent.locator("ul li").allInnerTexts();
    assert.deepEqual(perms.map((s) => s.trim()), [scope]);
    assert.equal(await consent.locator(".warn").count(), 2);
  });

  await step("consent form: POST to the authorize endpoint, hidden fields, buttons", async () => {
    const form = consent.locator("form");
    assert.equal(await form.getAttribute("method"), "post");
    assert.equal(await form.getAttribute("action"), `${base}/oauth2/authorize`);
    const hidden = Object.fromEntries(await consent.$$eval('form input[type="hidden"]',
      (els) => els.map((e) => [e.name, e.value])));
    assert.equal(hidden.client_id, client.client_id);
    assert.equal(hidden.redirect_uri, redirectUri);
    assert.equal(hidden.state, state);
    assert.equal(hidden.code_challenge, pkce.challenge);
    assert.equal(hidden.code_challenge_method, "S256");
    assert.equal(hidden.resource, resource);
    assert.equal(hidden.scope, scope);
    assert.ok(hidden.csrf && hidden.ts, JSON.stringify(hidden));
    assert.ok(await consent.locator("#approve").isVisible());
    assert.ok(await consent.locator("#deny").isVisible());
    assert.equal((await consent.locator("#approve").innerText()).trim(), "Approve");
    assert.equal((await consent.locator("#deny").innerText()).trim(), "Deny");
    assert.ok(await consent.locator('input[name="remember"]').isChecked(), "Remember not checked by default");
  });

  await step("consent page headers: CSP (frame-ancestors 'none', form-action), X-Frame-Options DENY", async () => {
    const h = await consentResponse.allHeaders();
    const csp = h["content-security-policy"] || "";
    assert.ok(csp.includes("frame-ancestors 'none'"), csp);
    assert.ok(csp.includes("default-src 'none'"), csp);
    const fa = (csp.split(";").map((s) => s.trim()).find((s) => s.startsWith("form-action ")) || "").split(/\s+/);
    assert.ok(fa.includes("'self'"), csp);
    assert.ok(fa.includes(new URL(redirectUri).origin), `form-action lacks the callback origin: ${csp}`);
    assert.equal((h["x-frame-options"] || "").toUpperCase(), "DENY");
    assert.equal(h["x-content-type-options"], "nosniff");
    assert.equal(h["referrer-policy"], "no-referrer");
    assert.ok(/no-store/.test(h["cache-control"] || ""), h["cache-control"]);
    assert.ok(/^text\/html/.test(h["content-type"] || ""), h["content-type"]);
  });

  await step(`screenshot of the consent page saved to ${shotPath}`, async () => {
    const png = await consent.screenshot({ path: shotPath, fullPage: true });
    assert.ok(png.length > 1000 && png.subarray(1, 4).toString() === "PNG");
  });

  await step("Approve: the browser lands on the callback with code, state and iss", async () => {
    const before = callbacks.length;
    await Promise.all([
      consent.waitForURL(isCallback, { waitUntil: "load" }),
      consent.click("#approve"),
    ]);
    assert.equal((await consent.locator("body").innerText()).trim(), "done");
    callbackUrl = new URL(consent.url());
    assert.equal(callbacks.length, before + 1, "the callback server was not reached once");
    assert.equal(callbackUrl.origin + callbackUrl.pathname, redirectUri);
    assert.ok(callbackUrl.searchParams.get("code"), callbackUrl.href);
    assert.equal(callbackUrl.searchParams.get("state"), state);
    assert.equal(callbackUrl.searchParams.get("iss"), base);
    assert.equal(callbackUrl.searchParams.get("error"), null);
    await consent.context().close();
  });

  await step("the code is exchanged for a Bearer token (PKCE, resource)", async () => {
    const r = await fetch(`${base}/oauth2/token`, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
      body: new URLSearchParams({
        grant_type: "authorization_code",
        code: callbackUrl.searchParams.get("code"),
        code_verifier: pkce.verifier,
        redirect_uri: redirectUri,
        client_id: client.client_id,
        resource,
      }),
    });
    const text = await r.text();
    assert.equal(r.status, 200, text);
    tokens = JSON.parse(text);
    assert.ok(tokens.access_token, text);
    assert.equal(String(tokens.token_type).toLowerCase(), "bearer", text);
    assert.equal(tokens.token_type, "Bearer", `token_type is ${tokens.token_type}`);
  });

  await step("MCP initialize with the token: 200", async () => {
    const r = await fetch(resource, {
      method: "POST",
      headers: {
        Authorization: `Bearer ${tokens.access_token}`,
        "Content-Type": "application/json",
        Accept: "application/json, text/event-stream",
      },
      body: JSON.stringify({
        jsonrpc: "2.0", id: 1, method: "initialize",
        params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "browser-e2e", version: "1.0.0" } },
      }),
    });
    const text = await r.text();
    assert.equal(r.status, 200, text);
    const json = /text\/event-stream/.test(r.headers.get("content-type") || "")
      ? JSON.parse(text.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5)).join("\n"))
      : JSON.parse(text);
    assert.equal(json.id, 1, text);
    assert.ok(json.result && json.result.serverInfo, text);
  });

  await step("remembered consent: a fresh browser goes straight to the callback", async () => {
    const state2 = newState();
    const ctx = await newContext();
    const seen = watchAuthorize(ctx);
    const page = await ctx.newPage();
    page.setDefaultTimeout(TIMEOUT);
    const before = callbacks.length;
    const resp = await page.goto(authorizationUrl(client.client_id, state2, pkce.challenge), { waitUntil: "load" });
    assert.ok(isCallback(page.url()), `landed on ${page.url()}`);
    assert.equal(resp.status(), 200);
    assert.equal(callbacks.length, before + 1);
    // signed in again (fresh browser), but no consent page: a 302 at once
    assert.deepEqual(seen.map((x) => x.status), [302], JSON.stringify(seen));
    assert.equal(await page.locator("#approve").count(), 0);
    const u = new URL(page.url());
    assert.ok(u.searchParams.get("code"));
    assert.notEqual(u.searchParams.get("code"), callbackUrl.searchParams.get("code"));
    assert.equal(u.searchParams.get("state"), state2);
    assert.equal(u.searchParams.get("iss"), base);
    await ctx.close();
  });

  // A second client (registrations are limited per address and hour: two
  // per run) for what must not be remembered: an approval with Remember
  // unchecked, then a Deny.
  let other;
  await step("Remember unchecked: approved once, asked again next time", async () => {
    other = await register("Browser e2e (second)");
    const ctx = await newContext();
    const page = await ctx.newPage();
    page.setDefaultTimeout(TIMEOUT);
    const url = authorizationUrl(other.client_id, newState(), newPkce().challenge);
    await page.goto(url, { waitUntil: "load" });
    await page.uncheck('input[name="remember"]');
    await Promise.all([page.waitForURL(isCallback, { waitUntil: "load" }), page.click("#approve")]);
    assert.ok(new URL(page.url()).searchParams.get("code"), page.url());
    await ctx.close();
    const ctx2 = await newContext();
    const page2 = await ctx2.newPage();
    page2.setDefaultTimeout(TIMEOUT);
    const r = await page2.goto(authorizationUrl(other.client_id, newState(), newPkce().challenge), { waitUntil: "load" });
    assert.equal(r.status(), 200);
    assert.ok(!isCallback(page2.url()), `landed on ${page2.url()}`);
    assert.equal(await page2.locator("#approve").count(), 1);
    await ctx2.close();
  });

  await step("Deny (the second client, no remembered consent): error=access_denied, state, iss", async () => {
    const p = newPkce();
    const state3 = newState();
    const ctx = await newContext();
    const page = await ctx.newPage();
    page.setDefaultTimeout(TIMEOUT);
    const resp = await page.goto(authorizationUrl(other.client_id, state3, p.challenge), { waitUntil: "load" });
    assert.equal(resp.status(), 200);
    assert.ok(!isCallback(page.url()), "consent skipped for a new client");
    assert.ok((await page.locator("body").innerText()).includes("Browser e2e (second)"));
    await Promise.all([
      page.waitForURL(isCallback, { waitUntil: "load" }),
      page.click("#deny"),
    ]);
    const u = new URL(page.url());
    assert.equal(u.searchParams.get("error"), "access_denied", u.href);
    assert.equal(u.searchParams.get("state"), state3);
    assert.equal(u.searchParams.get("iss"), base);
    assert.equal(u.searchParams.get("code"), null);
    await ctx.close();
  });

  await step("denying remembers nothing: the consent page comes again", async () => {
    const ctx = await newContext();
    const page = await ctx.newPage();
    page.setDefaultTimeout(TIMEOUT);
    const resp = await page.goto(authorizationUrl(other.client_id, newState(), newPkce().challenge), { waitUntil: "load" });
    assert.equal(resp.status(), 200);
    assert.ok(!isCallback(page.url()), `landed on ${page.url()}`);
    assert.equal(await page.locator("#approve").count(), 1);
    await ctx.close();
  });

  // Framing.  A signed-in user visits a page of another origin that frames
  // the consent URL.  The page is on 127.0.0.1 (the callback server, another
  // port): Chromium's Basic credentials cache is partitioned by top-level
  // site, so a cross-site framer (localhost) gets the 401, and a data: or
  // public page is stopped by Local Network Access before any request; only
  // a same-site framer gets the consent page, which frame-ancestors 'none'
  // must then block.
  await step("the consent page cannot be framed (frame-ancestors 'none')", async () => {
    // the second client has no remembered consent: the framed URL would show
    // the consent page, as the step above shows
    const target = authorizationUrl(other.client_id, newState(), newPkce().challenge);
    const ctx = await newContext();
    const page = await ctx.newPage();
    page.setDefaultTimeout(TIMEOUT);
    // sign in first (top level), as the user has
    const top = await page.goto(target, { waitUntil: "load" });
    assert.equal(top.status(), 200);
    assert.equal(await page.locator("#approve").count(), 1);
    framerHtml = `<!doctype html><title>framer</title><iframe id="f" width="600" height="400" src="${
      target.replace(/&/g, "&amp;").replace(/"/g, "&quot;")}"></iframe>`;
    const failed = [], served = [], consoleErrors = [];
    ctx.on("requestfailed", (r) => { if (r.url() === target) failed.push(r.failure().errorText); });
    ctx.on("response", (r) => { if (r.url() === target) served.push(r); });
    page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
    const framer = `http://127.0.0.1:${cbServer.address().port}/frame`;
    await page.goto(framer, { waitUntil: "load" });
    const frame = await (await page.$("#f")).contentFrame();
    assert.ok(frame, "no frame");
    await frame.waitForLoadState("load");
    // the server sent the consent page into the frame, with its CSP ...
    assert.ok(served.some((r) => r.status() === 200), `the consent page was not served: ${failed}`);
    const h = await served.find((r) => r.status() === 200).allHeaders();
    assert.ok((h["content-security-policy"] || "").includes("frame-ancestors 'none'"));
    // ... and Chromium refused to render it
    console.log(`# framed load: ${failed.join(", ")}; frame at ${frame.url()}`);
    assert.deepEqual(failed, ["net::ERR_BLOCKED_BY_RESPONSE"]);
    assert.ok(consoleErrors.some((t) => t.includes("frame-ancestors 'none'")), consoleErrors.join("\n"));
    assert.ok(!frame.url().startsWith(base), `frame at ${frame.url()}`);
    assert.equal(await frame.$("#approve"), null, "the consent form rendered in the frame");
    assert.equal(await frame.$("form"), null, "a form rendered in the frame");
    await ctx.close();
  });

  await step("a data: page framing the consent URL shows no consent form", async () => {
    const target = authorizationUrl(other.client_id, newState(), newPkce().challenge);
    const ctx = await newContext();
    const page = await ctx.newPage();
    page.setDefaultTimeout(TIMEOUT);
    await page.goto(target, { waitUntil: "load" }); // signed in
    const failed = [];
    ctx.on("requestfailed", (r) => { if (r.url() === target) failed.push(r.failure().errorText); });
    const html = `<!doctype html><title>framer</title><iframe id="f" src="${
      target.replace(/&/g, "&amp;").replace(/"/g, "&quot;")}"></iframe>`;
    await page.goto(`data:text/html,${encodeURIComponent(html)}`, { waitUntil: "load" });
    const frame = await (await page.$("#f")).contentFrame();
    assert.ok(frame, "no frame");
    await frame.waitForLoadState("load");
    console.log(`# data: framer: ${failed.join(", ") || "no failure"}; frame at ${frame.url()}`);
    assert.equal(await frame.$("#approve"), null, "the consent form rendered in the frame");
    assert.ok(!frame.url().startsWith(base), `frame at ${frame.url()}`);
    await ctx.close();
  });
} catch (e) {
  results.failed++;
  console.log(`not ok - unexpected error: ${e && e.stack ? e.stack : e}`);
} finally {
  if (browser) await browser.close().catch(() => {});
  await new Promise((resolve) => cbServer.close(resolve));
}

console.log(`browser-flow: ${results.passed} passed, ${results.failed} failed`);
process.exit(results.failed ? 1 : 0);
