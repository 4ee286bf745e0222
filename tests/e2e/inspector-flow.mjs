// The MCP Inspector's command-line mode (@modelcontextprotocol/inspector-cli)
// against mcpauth-proxy, with a Bearer token obtained beforehand and given
// as a static Authorization header, the way the Inspector is used with a
// token copied from elsewhere.  The Inspector CLI does no OAuth itself.
//
//   node inspector-flow.mjs MCP_URL TOKEN
//
// run.sh gets TOKEN from oidc-provider (oidc-provider-server.mjs) with
//   node external-as-flow.mjs --token AS_URL MCP_URL
// for the [resource ext] that external-as-flow.mjs --print-conf defines.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { results, step } from "./oauth.mjs";

const [mcpUrl, token] = process.argv.slice(2);
if (!mcpUrl || !token) {
  console.error("usage: node inspector-flow.mjs MCP_URL TOKEN");
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const bin = join(here, "node_modules/.bin/mcp-inspector-cli");
// inspector-cli 1.0.3 looks for its package.json with fs.existsSync
// ("../package.json") relative to the working directory but imports it
// relative to its module, so it fails with ERR_MODULE_NOT_FOUND unless run
// from a directory where both agree: its own build directory
// (modelcontextprotocol/inspector issues #834, #1334, #1503).
const cwd = join(here, "node_modules/@modelcontextprotocol/inspector-cli/build");

// mcp-inspector-cli --cli URL --transport http --method M [...] [--header H]
function inspector(args, withToken = token) {
  const argv = ["--cli", mcpUrl, "--transport", "http", ...args];
  if (withToken) argv.push("--header", `Authorization: Bearer ${withToken}`);
  const r = spawnSync(bin, argv, { cwd, encoding: "utf8", timeout: 60000 });
  if (r.error) throw r.error;
  return r;
}
const output = (r) => `exit ${r.status}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;

await step("inspector tools/list with the token lists echo and whoami", () => {
  const r = inspector(["--method", "tools/list"]);
  assert.equal(r.status, 0, output(r));
  const names = JSON.parse(r.stdout).tools.map((t) => t.name);
  assert.ok(names.includes("echo") && names.includes("whoami"), names.join(","));
});

await step("inspector tools/call echo", () => {
  const r = inspector(["--method", "tools/call", "--tool-name", "echo", "--tool-arg", "text=via the inspector"]);
  assert.equal(r.status, 0, output(r));
  assert.equal(JSON.parse(r.stdout).content[0].text, "via the inspector");
});

await step("inspector tools/call whoami: identity arrives, the token does not", () => {
  const r = inspector(["--method", "tools/call", "--tool-name", "whoami"]);
  assert.equal(r.status, 0, output(r));
  const text = JSON.parse(r.stdout).content[0].text;
  const seen = JSON.parse(text);
  assert.ok(seen["X-MCP-Subject"], text);
  assert.equal(seen["Authorization"], null);
  assert.ok(!text.includes(token));
});

await step("inspector without the header fails: Bearer token required", () => {
  const r = inspector(["--method", "tools/list"], null);
  assert.notEqual(r.status, 0, output(r));
  assert.match(r.stdout + r.stderr, /invalid_token.*Bearer token required/, output(r));
});

await step("inspector with a wrong token fails: invalid_token", () => {
  const r = inspector(["--method", "tools/list"], "not.a.token");
  assert.notEqual(r.status, 0, output(r));
  assert.match(r.stdout + r.stderr, /invalid_token/, output(r));
});

console.log(`inspector-flow: ${results.passed} passed, ${results.failed} failed`);
process.exit(results.failed ? 1 : 0);
