// A client registered before a package upgrade must still work after it:
// the registration, its refresh token and the signing key live in the
// state directory, which the upgrade keeps.
//
//   node keep-client.mjs save  FILE MCP_URL USER PASSWORD
//     the official MCP SDK client registers, signs in, gets tokens and
//     calls a tool; its client information and tokens go to FILE
//   node keep-client.mjs reuse FILE MCP_URL USER PASSWORD
//     the same client, from FILE: the access token of before is accepted,
//     the refresh token of before gives new tokens, and nothing registers
//     again or asks the user again
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { HeadlessProvider, log, loggingFetch, results, step } from "../e2e/oauth.mjs";

const sdk = (p) => new URL(`../e2e/node_modules/@modelcontextprotocol/sdk/dist/esm/${p}`, import.meta.url).href;
const { Client } = await import(sdk("client/index.js"));
const { StreamableHTTPClientTransport } = await import(sdk("client/streamableHttp.js"));
const { UnauthorizedError } = await import(sdk("client/auth.js"));

const [mode, file, mcpUrl, user, password] = process.argv.slice(2);
if (!["save", "reuse"].includes(mode) || !file || !mcpUrl || !user || !password) {
  console.error("usage: node keep-client.mjs save|reuse FILE MCP_URL USER PASSWORD");
  process.exit(2);
}
const provider = new HeadlessProvider(user, password, "mcpauth Debian upgrade client");
const transport = () =>
  new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider, fetch: loggingFetch });
const echo = async (client, text) => {
  const r = await client.callTool({ name: "echo", arguments: { text } });
  assert.equal(r.content[0].text, text);
};

if (mode === "save") {
  await step("register, sign in and get tokens", async () => {
    const c = new Client({ name: "mcpauth-debian", version: "1.0.0" });
    await assert.rejects(c.connect(transport()), (e) => e instanceof UnauthorizedError);
    await transport().finishAuth(provider.code);
    assert.ok(provider.client.client_id && provider.current.refresh_token);
  });
  await step("tools/call with the new token", async () => {
    const c = new Client({ name: "mcpauth-debian", version: "1.0.0" });
    await c.connect(transport());
    await echo(c, "before the upgrade");
    await c.close();
  });
  writeFileSync(file, JSON.stringify({ client: provider.client, tokens: provider.current }));
} else {
  const saved = JSON.parse(readFileSync(file, "utf8"));
  provider.client = saved.client;
  provider.current = saved.tokens;
  provider.redirectToAuthorization = async () => {
    throw new Error("the client was sent to sign in again");
  };
  await step("the access token of before is accepted", async () => {
    const c = new Client({ name: "mcpauth-debian", version: "1.0.0" });
    await c.connect(transport());
    await echo(c, "after the upgrade");
    await c.close();
    assert.equal(provider.current.access_token, saved.tokens.access_token, "the token was replaced");
  });
  await step("the refresh token of before gives new tokens", async () => {
    provider.current = { ...saved.tokens, access_token: "expired.or.revoked.token" };
    const c = new Client({ name: "mcpauth-debian", version: "1.0.0" });
    await c.connect(transport());
    await echo(c, "after the refresh");
    await c.close();
    assert.notEqual(provider.current.access_token, "expired.or.revoked.token");
    assert.notEqual(provider.current.refresh_token, saved.tokens.refresh_token, "refresh token not rotated");
  });
  await step("the same registration: no new one", () => {
    assert.ok(!log.some((x) => x.url.endsWith("/oauth2/register")), JSON.stringify(log));
    assert.equal(provider.client.client_id, saved.client.client_id);
  });
}
console.log(`keep-client ${mode}: ${results.passed} passed, ${results.failed} failed`);
process.exit(results.failed ? 1 : 0);
