// Shared by the end-to-end scripts: a step runner that prints TAP-like
// lines, a fetch that records every exchange, and an OAuth client provider
// for the MCP SDK that does the browser part headlessly: the web server's
// Basic login, then the consent form, exactly as a user would submit it.
import assert from "node:assert/strict";

export const results = { passed: 0, failed: 0 };
export async function step(name, fn) {
  try {
    await fn();
    results.passed++;
    console.log(`ok - ${name}`);
  } catch (e) {
    results.failed++;
    console.log(`not ok - ${name}: ${e && e.stack ? e.stack : e}`);
  }
}

export const log = [];
export const loggingFetch = async (url, init = {}) => {
  const r = await fetch(url, init);
  log.push({ method: init.method || "GET", url: String(url), status: r.status });
  return r;
};

const htmlUnescape = (s) =>
  s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, "&");

export class HeadlessProvider {
  constructor(user, password, name = "MCP SDK e2e client") {
    this.user = user;
    this.password = password;
    this.name = name;
    this.code = null;
    this.authUrl = null;
  }
  get redirectUrl() { return "http://127.0.0.1:45999/callback"; }
  get clientMetadata() {
    return {
      client_name: this.name,
      redirect_uris: [this.redirectUrl],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }
  clientInformation() { return this.client; }
  saveClientInformation(info) { this.client = info; }
  tokens() { return this.current; }
  saveTokens(t) { this.current = t; }
  saveCodeVerifier(v) { this.verifier = v; }
  codeVerifier() { return this.verifier; }
  async redirectToAuthorization(url) {
    this.authUrl = new URL(url);
    const auth = "Basic " + Buffer.from(`${this.user}:${this.password}`).toString("base64");
    let r = await fetch(url, { headers: { Authorization: auth }, redirect: "manual" });
    if (r.status === 200) {
      const page = await r.text();
      this.consentPage = page;
      const form = new URLSearchParams();
      for (const m of page.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g))
        form.append(m[1], htmlUnescape(m[2]));
      form.append("decision", "approve");
      const action = htmlUnescape(page.match(/<form method="post" action="([^"]+)"/)[1]);
      r = await fetch(action, {
        method: "POST",
        headers: { Authorization: auth, "Content-Type": "application/x-www-form-urlencoded" },
        body: form,
        redirect: "manual",
      });
    }
    assert.equal(r.status, 302, `authorization answered ${r.status}`);
    this.callback = new URL(r.headers.get("location"));
    this.code = this.callback.searchParams.get("code");
  }
}
