// The official MCP conformance suite (@modelcontextprotocol/conformance,
// its server scenarios, the default "active" suite) at full speed against
// conformance-server.mjs, reached only through mcpauth-proxy, with one
// access token for every request: one well-behaved caller.  run.sh runs it
// twice in a row, so what the first run leaves behind (each scenario's MCP
// client opens a GET event stream and drops it at the end) must not stop
// the second.
//
//   node conformance-flow.mjs MCP_URL TOKEN [TIMEOUT_SECONDS]
//
// The suite has no option for request headers, so bearer-preload.mjs adds
// the token to everything it sends to MCP_URL's origin.  Besides the
// suite's verdict this prints what the run asked of the proxy: requests sent
// (including refused ones) and their peak over any 1 s and 2 s window, and
// why checks failed (429 from the rate limit or from the concurrency cap,
// timeouts, other).  A run that does not end within TIMEOUT_SECONDS (60) is
// killed and fails.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { results, step } from "./oauth.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const [mcpUrl, token, timeoutArg] = process.argv.slice(2);
if (!mcpUrl || !token) {
  console.error("usage: node conformance-flow.mjs MCP_URL TOKEN [TIMEOUT_SECONDS]");
  process.exit(2);
}
const timeoutMs = Number(timeoutArg || 60) * 1000;
const work = mkdtempSync(join(tmpdir(), "mcpauth-conformance-"));
const reqLog = join(work, "requests.log");
const outDir = join(work, "results");

// One suite run in a child process, killed (with its group) at the timeout.
function runSuite() {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, [
      "--import", join(here, "bearer-preload.mjs"),
      join(here, "node_modules/@modelcontextprotocol/conformance/dist/index.js"),
      "server", "--url", mcpUrl, "-o", outDir,
    ], {
      env: { ...process.env, MCPAUTH_BEARER_ORIGIN: new URL(mcpUrl).origin, MCPAUTH_BEARER_TOKEN: token, MCPAUTH_BEARER_LOG: reqLog },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try { process.kill(-child.pid, "SIGKILL"); } catch { /* gone */ }
    }, timeoutMs);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, timedOut, out, seconds: (Date.now() - t0) / 1000 });
    });
  });
}

// Most requests in any window of `ms` milliseconds.
function peak(times, ms) {
  let best = 0;
  for (let i = 0, j = 0; i < times.length; i++) {
    while (times[i] - times[j] >= ms) j++;
    best = Math.max(best, i - j + 1);
  }
  return best;
}

// A failed check's cause, from the error the suite recorded.
function cause(check) {
  const m = `${check.errorMessage || ""} ${JSON.stringify(check.details || {})}`;
  if (/Too many concurrent requests/i.test(m)) return "429 concurrency cap (Too many concurrent requests)";
  if (/Too many requests|\b429\b/i.test(m)) return "429 rate limit (Too many requests)";
  if (/timed? ?out|timeout/i.test(m)) return "timeout";
  return `other: ${(check.errorMessage || check.description || "").slice(0, 160)}`;
}

const run = await runSuite();
const scenarios = [...run.out.matchAll(/^([✓✗]) (\S+): (\d+) passed, (\d+) failed/gm)].map((m) => ({
  ok: m[1] === "✓", name: m[2], passed: Number(m[3]), failed: Number(m[4]),
}));
const total = /^Total: (\d+) passed, (\d+) failed/m.exec(run.out);

// what the run sent, whether answered or refused
const sent = existsSync(reqLog) ? readFileSync(reqLog, "utf8").split("\n").filter(Boolean).map((l) => l.split(" ")) : [];
const times = sent.map((f) => Number(f[0])).sort((a, b) => a - b);
const methods = {};
for (const f of sent) methods[f[1]] = (methods[f[1]] || 0) + 1;
const span = times.length > 1 ? (times[times.length - 1] - times[0]) / 1000 : 0;
console.log(`# suite run: ${run.seconds.toFixed(1)} s, exit ${run.timedOut ? "killed at timeout" : run.signal || run.code}`);
const byMethod = Object.entries(methods).map(([m, n]) => `${m} ${n}`).join(", ");
console.log(`# requests with the token: ${times.length}${byMethod ? ` (${byMethod})` : ""} ` +
  `in ${span.toFixed(2)} s; peak ${peak(times, 1000)} in 1 s, ${peak(times, 2000)} in 2 s`);

// failed checks by scenario and cause, from results/<scenario>-<time>/checks.json
const failures = new Map(); // scenario -> [cause]
const causes = new Map(); // cause -> [scenario]
if (existsSync(outDir)) {
  for (const d of readdirSync(outDir)) {
    let checks;
    try { checks = JSON.parse(readFileSync(join(outDir, d, "checks.json"), "utf8")); } catch { continue; }
    const name = d.replace(/^server-/, "").replace(/-\d{4}-\d\d-\d\dT.*$/, "");
    for (const c of checks.filter((c) => c.status === "FAILURE")) {
      const k = cause(c);
      failures.set(name, [...(failures.get(name) || []), k]);
      causes.set(k, [...(causes.get(k) || []), name]);
    }
  }
}
for (const [k, names] of causes) console.log(`# failed for ${k}: ${names.length} (${names.join(", ")})`);
if (total) {
  const bad = scenarios.filter((x) => !x.ok).length;
  console.log(`# scenarios: ${scenarios.length - bad} passed, ${bad} failed; checks: ${total[1]} passed, ${total[2]} failed`);
}

await step(`the suite ends within ${timeoutMs / 1000} s`, () => {
  assert.ok(!run.timedOut, `killed after ${run.seconds.toFixed(1)} s:\n${run.out.slice(-3000)}`);
});

await step("the suite ran its scenarios and exited 0", () => {
  assert.ok(total && scenarios.length > 0, `no summary in the suite's output:\n${run.out.slice(-3000)}`);
  assert.equal(run.code, 0, `suite exit status ${run.code}`);
});

// one step per scenario, as the suite printed them
for (const x of scenarios) {
  await step(`scenario ${x.name} (checks: ${x.passed} passed, ${x.failed} failed)`, () => {
    assert.ok(x.ok && x.failed === 0, (failures.get(x.name) || ["see the suite's output"]).join("; "));
  });
}

rmSync(work, { recursive: true, force: true });
console.log(`conformance-flow: ${results.passed} passed, ${results.failed} failed`);
process.exit(results.failed ? 1 : 0);
