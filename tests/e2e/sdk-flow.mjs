// The official MCP TypeScript SDK client against a running mcpauth
// deployment, knowing only the MCP URL: 401 → protected resource metadata →
// AS metadata → dynamic registration → authorization with PKCE and resource
// → login and consent (submitted headlessly, as a user would in a browser)
// → token → initialize, tools/list, tools/call → refresh.  Every step is
// asserted from the HTTP exchanges the SDK made, not only the end result.
//
//   node sdk-flow.mjs MCP_URL USER PASSWORD
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";
import { HeadlessProvider, log, loggingFetch, results, step } from "./oauth.mjs";

const [mcpUrl, user, password] = process.argv.slice(2);
if (!mcpUrl || !user || !password) {
  console.error("usage: node sdk-flow.mjs MCP_URL USER PASSWORD");
  process.exit(2);
}
const provider = new HeadlessProvider(user, password);
const newTransport = () =>
  new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider, fetch: loggingFetch });
let client = new Client({ name: "mcpauth-e2e", version: "1.0.0" });

await step("first connect is refused and starts the OAuth flow", async () => {
  await assert.rejects(client.connect(newTransport()), (e) => e instanceof UnauthorizedError);
});

await step("401 from the MCP URL came first", () => {
  const first = log.find((x) => x.url === mcpUrl);
  assert.ok(first, "no request to the MCP URL");
  assert.equal(first.status, 401);
});

await step("protected resource metadata fetched (RFC 9728)", () => {
  assert.ok(log.some((x) => x.url.includes("/.well-known/oauth-protected-resource") && x.status === 200),
    JSON.stringify(log));
});

await step("authorization server metadata fetched (RFC 8414)", () => {
  assert.ok(log.some((x) => /\/\.well-known\/(oauth-authorization-server|openid-configuration)/.test(x.url) && x.status === 200),
    JSON.stringify(log));
});

await step("client registered dynamically (RFC 7591)", () => {
  assert.ok(log.some((x) => x.method === "POST" && x.url.endsWith("/oauth2/register") && x.status === 201));
  assert.ok(provider.client && provider.client.client_id);
});

await step("authorization request carries PKCE S256 and the resource", () => {
  const u = provider.authUrl;
  assert.ok(u, "no authorization request");
  assert.equal(u.searchParams.get("code_challenge_method"), "S256");
  assert.ok(u.searchParams.get("code_challenge"));
  assert.equal(u.searchParams.get("resource"), mcpUrl);
  assert.equal(u.searchParams.get("response_type"), "code");
});

await step("login and consent gave a code, state and iss", () => {
  assert.ok(provider.consentPage && provider.consentPage.includes("MCP SDK e2e client"));
  assert.ok(provider.code);
  assert.ok(provider.callback.searchParams.get("iss"));
});

await step("the code is exchanged for tokens", async () => {
  const t = newTransport();
  await t.finishAuth(provider.code);
  assert.ok(provider.current && provider.current.access_token);
  assert.ok(provider.current.refresh_token);
  assert.equal(provider.current.token_type.toLowerCase(), "bearer");
});

await step("initialize with the token", async () => {
  client = new Client({ name: "mcpauth-e2e", version: "1.0.0" });
  await client.connect(newTransport());
  assert.equal(client.getServerVersion().name, "mcpauth-example");
});

await step("tools/list", async () => {
  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name);
  assert.ok(names.includes("echo") && names.includes("whoami"), names.join(","));
});

await step("tools/call echo", async () => {
  const r = await client.callTool({ name: "echo", arguments: { text: "through mcpauth" } });
  assert.equal(r.content[0].text, "through mcpauth");
});

await step("tools/call whoami: identity arrives, the token does not", async () => {
  const r = await client.callTool({ name: "whoami", arguments: {} });
  const seen = JSON.parse(r.content[0].text);
  assert.equal(seen["X-MCP-Subject"], user);
  assert.equal(seen["X-MCP-Client-Id"], provider.client.client_id);
  assert.equal(seen["Authorization"], null);
  assert.ok(!r.content[0].text.includes(provider.current.access_token));
});

await step("refresh: an expired access token is renewed with the refresh token", async () => {
  const before = provider.current;
  provider.current = { ...before, access_token: "expired.or.revoked.token" };
  await client.close();
  client = new Client({ name: "mcpauth-e2e", version: "1.0.0" });
  await client.connect(newTransport());
  await client.listTools();
  const after = provider.current;
  assert.notEqual(after.access_token, "expired.or.revoked.token");
  assert.notEqual(after.refresh_token, before.refresh_token, "refresh token not rotated");
  assert.ok(log.some((x) => x.method === "POST" && x.url.endsWith("/oauth2/token") && x.status === 200));
});

await client.close().catch(() => {});
console.log(`sdk-flow: ${results.passed} passed, ${results.failed} failed`);
process.exit(results.failed ? 1 : 0);
