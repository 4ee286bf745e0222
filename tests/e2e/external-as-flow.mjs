// mcpauth-proxy in front of MCP servers whose tokens come from an
// authorization server that is not mcpauth's: the npm oidc-provider
// (oidc-provider-server.mjs).  JWT access tokens are checked with keys the
// gate finds by discovery; opaque ones by RFC 7662 introspection.  Tokens
// are minted headlessly with the client_credentials grant and an RFC 8707
// resource indicator, so each is bound to one resource by its audience.
//
//   node external-as-flow.mjs AS_URL MCP_BASE
//       the tests; MCP_BASE is the demo's http://127.0.0.1:PORT, started
//       with the configuration below appended
//   node external-as-flow.mjs --print-conf AS_URL DEMO_PORT BACKEND_PORT
//       prints that configuration (for MCPAUTH_DEMO_EXTRA_CONF)
//   node external-as-flow.mjs --token AS_URL RESOURCE_URI
//       prints an access token for RESOURCE_URI with scope files:read
//
// The AS is started as
//   node oidc-provider-server.mjs AS_PORT MCP_BASE/mcp/ext MCP_BASE/mcp/ext2 MCP_BASE/mcp/opaque
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { results, step } from "./oauth.mjs";

const CLIENT = "tester", SECRET = "tester-secret";

const printConf = (as, demoPort, backendPort) => `
# Tokens from oidc-provider (tests/e2e/oidc-provider-server.mjs at ${as}).
# ext and ext2 get RS256 JWTs (keys by discovery), opaque gets opaque
# tokens checked by introspection; each token's aud is one resource.
[resource ext]
uri = http://127.0.0.1:${demoPort}/mcp/ext
resource_name = Files, JWTs from oidc-provider
authorization_servers = ${as}
scopes_supported = files:read
scopes_required = files:read
backend = http://127.0.0.1:${backendPort}/mcp

[resource ext2]
uri = http://127.0.0.1:${demoPort}/mcp/ext2
resource_name = Files again, JWTs from oidc-provider
authorization_servers = ${as}
scopes_supported = files:read
scopes_required = files:read
backend = http://127.0.0.1:${backendPort}/mcp

[resource opaque]
uri = http://127.0.0.1:${demoPort}/mcp/opaque
resource_name = Files, opaque tokens from oidc-provider
authorization_servers = ${as}
scopes_supported = files:read
scopes_required = files:read
backend = http://127.0.0.1:${backendPort}/mcp

[issuer oidc]
issuer = ${as}
introspection_endpoint = ${as}/token/introspection
introspection_client_id = gate
introspection_client_secret = gate-secret
require_typ = yes
`;

// client_credentials at the AS; resource and scope are optional.
async function mint(as, resource, scope = "files:read") {
  const form = new URLSearchParams({ grant_type: "client_credentials" });
  if (scope) form.set("scope", scope);
  if (resource) form.set("resource", resource);
  const r = await fetch(`${as}/token`, {
    method: "POST",
    headers: { Authorization: "Basic " + Buffer.from(`${CLIENT}:${SECRET}`).toString("base64") },
    body: form,
  });
  const body = await r.json();
  assert.equal(r.status, 200, `token endpoint: ${r.status} ${JSON.stringify(body)}`);
  return body;
}

const mode = process.argv[2];
if (mode === "--print-conf") {
  const [as, demoPort, backendPort] = process.argv.slice(3);
  if (!as || !demoPort || !backendPort) {
    console.error("usage: node external-as-flow.mjs --print-conf AS_URL DEMO_PORT BACKEND_PORT");
    process.exit(2);
  }
  process.stdout.write(printConf(as, demoPort, backendPort));
  process.exit(0);
}
if (mode === "--token") {
  const [as, resource] = process.argv.slice(3);
  if (!as || !resource) {
    console.error("usage: node external-as-flow.mjs --token AS_URL RESOURCE_URI");
    process.exit(2);
  }
  console.log((await mint(as, resource)).access_token);
  process.exit(0);
}

const [as, base] = process.argv.slice(2);
if (!as || !base) {
  console.error("usage: node external-as-flow.mjs AS_URL MCP_BASE");
  process.exit(2);
}
const ext = `${base}/mcp/ext`, ext2 = `${base}/mcp/ext2`, opaque = `${base}/mcp/opaque`;

const jwtPart = (t, i) => JSON.parse(Buffer.from(t.split(".")[i], "base64url").toString());

// One initialize POST, as an MCP client sends it; the raw answer.
async function initialize(url, token) {
  const headers = { "Content-Type": "application/json", Accept: "application/json, text/event-stream" };
  if (token) headers.Authorization = `Bearer ${token}`;
  return fetch(url, {
    method: "POST",
    headers,
    body: JSON.stringify({
      jsonrpc: "2.0", id: 1, method: "initialize",
      params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "external-as-flow", version: "1.0.0" } },
    }),
  });
}

// The WWW-Authenticate challenge's parameters.
function challenge(r) {
  const h = r.headers.get("www-authenticate") || "";
  assert.match(h, /^Bearer /, `WWW-Authenticate: ${h}`);
  return Object.fromEntries([...h.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
}

async function refused(url, token, status, error, description) {
  const r = await initialize(url, token);
  await r.text();
  assert.equal(r.status, status);
  const c = challenge(r);
  assert.equal(c.error, error, JSON.stringify(c));
  if (description) assert.equal(c.error_description, description, JSON.stringify(c));
  return c;
}

// The MCP SDK client with a fixed Authorization header (no OAuth provider).
async function connect(url, token) {
  const client = new Client({ name: "external-as-flow", version: "1.0.0" });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
  }));
  return client;
}

async function usable(url, token) {
  const client = await connect(url, token);
  try {
    assert.equal(client.getServerVersion().name, "mcpauth-example");
    const { tools } = await client.listTools();
    const names = tools.map((t) => t.name);
    assert.ok(names.includes("echo") && names.includes("whoami"), names.join(","));
    const r = await client.callTool({ name: "whoami", arguments: {} });
    return JSON.parse(r.content[0].text);
  } finally {
    await client.close().catch(() => {});
  }
}

const AUDIENCE = "token audience does not include this resource";
let meta, jwtExt, jwtExt2, opq;

await step("AS metadata: issuer exactly AS_URL, jwks_uri and introspection endpoint", async () => {
  for (const path of ["oauth-authorization-server", "openid-configuration"]) {
    const r = await fetch(`${as}/.well-known/${path}`);
    assert.equal(r.status, 200, path);
    meta = await r.json();
    assert.equal(meta.issuer, as, path);
    assert.ok(meta.jwks_uri, path);
    assert.equal(meta.introspection_endpoint, `${as}/token/introspection`, path);
  }
});

await step("protected resource metadata of ext names the external AS", async () => {
  const r = await fetch(`${base}/.well-known/oauth-protected-resource/mcp/ext`);
  assert.equal(r.status, 200);
  const doc = await r.json();
  assert.equal(doc.resource, ext);
  assert.deepEqual(doc.authorization_servers, [as]);
});

await step("no token: 401 pointing at the resource metadata", async () => {
  const r = await initialize(ext);
  await r.text();
  assert.equal(r.status, 401);
  const c = challenge(r);
  assert.equal(c.resource_metadata, `${base}/.well-known/oauth-protected-resource/mcp/ext`);
});

await step("client_credentials with resource=ext gives an RFC 9068 JWT bound to ext", async () => {
  const t = await mint(as, ext);
  jwtExt = t.access_token;
  const h = jwtPart(jwtExt, 0), p = jwtPart(jwtExt, 1);
  assert.equal(h.typ, "at+jwt");
  assert.equal(h.alg, "RS256");
  assert.equal(p.iss, as);
  assert.equal(p.aud, ext);
  assert.equal(p.scope, "files:read");
  assert.equal(p.client_id, CLIENT);
});

await step("JWT for ext: initialize, tools/list and whoami through mcpauth-proxy", async () => {
  const seen = await usable(ext, jwtExt);
  assert.equal(seen["X-MCP-Subject"], CLIENT);
  assert.equal(seen["X-MCP-Client-Id"], CLIENT);
  assert.equal(seen["X-MCP-Scope"], "files:read");
  assert.equal(seen["Authorization"], null);
});

await step("JWT for ext on ext2 (same AS): 401 invalid_token, audience", async () => {
  await refused(ext2, jwtExt, 401, "invalid_token", AUDIENCE);
});

await step("JWT for ext2 works on ext2", async () => {
  jwtExt2 = (await mint(as, ext2)).access_token;
  assert.equal(jwtPart(jwtExt2, 1).aud, ext2);
  await usable(ext2, jwtExt2);
});

await step("JWT for ext2 on ext: 401 invalid_token, audience", async () => {
  await refused(ext, jwtExt2, 401, "invalid_token", AUDIENCE);
});

await step("JWT for ext without scope: 403 insufficient_scope naming files:read", async () => {
  const t = (await mint(as, ext, null)).access_token;
  assert.equal(jwtPart(t, 1).scope, undefined);
  const c = await refused(ext, t, 403, "insufficient_scope");
  assert.equal(c.scope, "files:read");
});

await step("JWT with an altered signature: 401 invalid_token", async () => {
  const [h, p, s] = jwtExt.split(".");
  const sig = Buffer.from(s, "base64url");
  sig[0] ^= 1;
  await refused(ext, `${h}.${p}.${sig.toString("base64url")}`, 401, "invalid_token",
    "token signature is invalid");
});

await step("resource=opaque gives an opaque token, active at the introspection endpoint", async () => {
  opq = (await mint(as, opaque)).access_token;
  assert.ok(!opq.includes("."), opq);
  const r = await fetch(meta.introspection_endpoint, {
    method: "POST",
    headers: { Authorization: "Basic " + Buffer.from("gate:gate-secret").toString("base64") },
    body: new URLSearchParams({ token: opq }),
  });
  const doc = await r.json();
  assert.equal(doc.active, true, JSON.stringify(doc));
  assert.equal(doc.aud, opaque);
});

await step("opaque token accepted on opaque via introspection", async () => {
  const seen = await usable(opaque, opq);
  assert.equal(seen["X-MCP-Client-Id"], CLIENT);
  assert.equal(seen["X-MCP-Scope"], "files:read");
  assert.equal(seen["Authorization"], null);
});

await step("opaque token on ext: 401 invalid_token, audience", async () => {
  await refused(ext, opq, 401, "invalid_token", AUDIENCE);
});

await step("JWT for ext on opaque: 401 invalid_token, audience", async () => {
  await refused(opaque, jwtExt, 401, "invalid_token", AUDIENCE);
});

// mcpauth caches an accepted token for cache_ttl (a global key, which an
// appended configuration cannot set), so the revoked token is one the gate
// has never seen: its first check is an introspection that says inactive.
await step("revoked opaque token: 401 invalid_token, not active", async () => {
  const t = (await mint(as, opaque)).access_token;
  const r = await fetch(`${as}/token/revocation`, {
    method: "POST",
    headers: { Authorization: "Basic " + Buffer.from(`${CLIENT}:${SECRET}`).toString("base64") },
    body: new URLSearchParams({ token: t, token_type_hint: "access_token" }),
  });
  assert.equal(r.status, 200, await r.text());
  await refused(opaque, t, 401, "invalid_token", "token is not active");
});

await step("made-up opaque token: 401 invalid_token, not active", async () => {
  await refused(opaque, "NotAToken0123456789abcdefghijklmnopqrstuvwx", 401, "invalid_token",
    "token is not active");
});

console.log(`external-as-flow: ${results.passed} passed, ${results.failed} failed`);
process.exit(results.failed ? 1 : 0);
