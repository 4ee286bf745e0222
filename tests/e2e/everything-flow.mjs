// The MCP reference server (@modelcontextprotocol/server-everything),
// reached only through mcpauth-proxy, used by the official SDK client as if
// it were reached directly: OAuth, tools, streamed progress notifications,
// and a server-to-client request (sampling) answered by the client.
//
//   node everything-flow.mjs MCP_URL USER PASSWORD
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";
import { CreateMessageRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { HeadlessProvider, loggingFetch, results, step } from "./oauth.mjs";

const [mcpUrl, user, password] = process.argv.slice(2);
const provider = new HeadlessProvider(user, password, "everything e2e client");
const transport = () =>
  new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider, fetch: loggingFetch });
const makeClient = () => {
  const c = new Client({ name: "mcpauth-e2e", version: "1.0.0" }, { capabilities: { sampling: {} } });
  c.setRequestHandler(CreateMessageRequestSchema, async () => ({
    model: "e2e-model",
    role: "assistant",
    content: { type: "text", text: "sampled through mcpauth" },
  }));
  return c;
};
let client = makeClient();

await step("OAuth through the proxy to the reference server", async () => {
  await assert.rejects(client.connect(transport()), (e) => e instanceof UnauthorizedError);
  await transport().finishAuth(provider.code);
  client = makeClient();
  await client.connect(transport());
  assert.match(client.getServerVersion().name, /everything/i);
});

await step("tools/list of the reference server", async () => {
  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name);
  assert.ok(names.includes("echo"), names.join(","));
  assert.ok(names.includes("trigger-long-running-operation"), names.join(","));
});

await step("tools/call echo", async () => {
  const r = await client.callTool({ name: "echo", arguments: { message: "hello everything" } });
  assert.match(r.content[0].text, /hello everything/);
});

await step("streamed progress notifications arrive one by one", async () => {
  const seen = [];
  const t0 = Date.now();
  const r = await client.callTool(
    { name: "trigger-long-running-operation", arguments: { duration: 2, steps: 4 } },
    undefined,
    { onprogress: (p) => seen.push({ progress: p.progress, at: Date.now() - t0 }), timeout: 30000 },
  );
  assert.match(r.content[0].text, /completed/i);
  assert.equal(seen.length, 4, JSON.stringify(seen));
  // relayed as they happened, not in one burst at the end
  assert.ok(seen[3].at - seen[0].at >= 1000, JSON.stringify(seen));
});

await step("server-to-client request (sampling) answered through the proxy", async () => {
  const r = await client.callTool(
    { name: "trigger-sampling-request", arguments: { prompt: "say hi", maxTokens: 20 } },
    undefined,
    { timeout: 30000 },
  );
  assert.match(JSON.stringify(r.content), /sampled through mcpauth/);
});

await client.close().catch(() => {});
console.log(`everything-flow: ${results.passed} passed, ${results.failed} failed`);
process.exit(results.failed ? 1 : 0);
