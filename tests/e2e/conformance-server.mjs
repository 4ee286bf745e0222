// The MCP server that the official conformance suite
// (@modelcontextprotocol/conformance, `conformance server`) expects: its
// server scenarios call fixed tools, resources and prompts (test_simple_text,
// test://static-text, test_simple_prompt, ...) that the reference server
// (server-everything) does not have.  The package ships only the suite, not
// its example server, so this is ours, written from the scenarios' checks
// (node_modules/@modelcontextprotocol/conformance/dist/index.js).
//
//   node conformance-server.mjs PORT
//
// Streamable HTTP at http://127.0.0.1:PORT/mcp with sessions, built on the
// SDK's low-level Server so that every answer is exactly what is written
// here.  Host names other than localhost's are refused (403): the DNS
// rebinding scenario expects it of a local server.  Prints "listening", then
// "peak_inflight=N" whenever the number of requests in flight reaches a new
// high.
import http from "node:http";
import { randomUUID } from "node:crypto";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import {
  CallToolRequestSchema, CompleteRequestSchema, CreateMessageResultSchema, ElicitResultSchema,
  GetPromptRequestSchema, ListPromptsRequestSchema, ListResourceTemplatesRequestSchema,
  ListResourcesRequestSchema, ListToolsRequestSchema, ReadResourceRequestSchema,
  SetLevelRequestSchema, SubscribeRequestSchema, UnsubscribeRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";

const port = Number(process.argv[2]);
if (!port) {
  console.error("usage: node conformance-server.mjs PORT");
  process.exit(2);
}

// a 1x1 PNG and a WAV of 8 silent samples
const PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
const WAV = Buffer.concat([
  Buffer.from("RIFF"), Buffer.from([44, 0, 0, 0]), Buffer.from("WAVEfmt "),
  Buffer.from([16, 0, 0, 0, 1, 0, 1, 0, 0x40, 0x1f, 0, 0, 0x40, 0x1f, 0, 0, 1, 0, 8, 0]),
  Buffer.from("data"), Buffer.from([8, 0, 0, 0]), Buffer.alloc(8, 0x80),
]).toString("base64");

const text = (t) => ({ type: "text", text: t });
const noArgs = { type: "object", properties: {} };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const LEVELS = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"];

const tools = [
  { name: "test_simple_text", description: "Returns a simple text", inputSchema: noArgs },
  { name: "test_image_content", description: "Returns a PNG image", inputSchema: noArgs },
  { name: "test_audio_content", description: "Returns a WAV sound", inputSchema: noArgs },
  { name: "test_embedded_resource", description: "Returns an embedded resource", inputSchema: noArgs },
  { name: "test_multiple_content_types", description: "Returns text, image and resource", inputSchema: noArgs },
  { name: "test_tool_with_logging", description: "Logs three messages while it runs", inputSchema: noArgs },
  { name: "test_error_handling", description: "Always fails with isError", inputSchema: noArgs },
  { name: "test_tool_with_progress", description: "Reports progress three times", inputSchema: noArgs },
  {
    name: "test_sampling", description: "Asks the client's LLM",
    inputSchema: { type: "object", properties: { prompt: { type: "string" } }, required: ["prompt"] },
  },
  {
    name: "test_elicitation", description: "Asks the user",
    inputSchema: { type: "object", properties: { message: { type: "string" } }, required: ["message"] },
  },
  { name: "test_elicitation_sep1034_defaults", description: "Asks with defaults (SEP-1034)", inputSchema: noArgs },
  { name: "test_elicitation_sep1330_enums", description: "Asks with enums (SEP-1330)", inputSchema: noArgs },
  {
    name: "json_schema_2020_12_tool", description: "Tool with JSON Schema 2020-12 features",
    inputSchema: {
      $schema: "https://json-schema.org/draft/2020-12/schema",
      type: "object",
      $defs: { address: { type: "object", properties: { street: { type: "string" }, city: { type: "string" } } } },
      properties: { name: { type: "string" }, address: { $ref: "#/$defs/address" } },
      additionalProperties: false,
    },
  },
];

const resources = [
  { uri: "test://static-text", name: "static-text", description: "A text resource", mimeType: "text/plain" },
  { uri: "test://static-binary", name: "static-binary", description: "A PNG resource", mimeType: "image/png" },
  { uri: "test://watched-resource", name: "watched-resource", description: "Can be subscribed to", mimeType: "text/plain" },
];

const prompts = [
  { name: "test_simple_prompt", description: "A prompt without arguments" },
  {
    name: "test_prompt_with_arguments", description: "A prompt with two arguments",
    arguments: [{ name: "arg1", description: "First", required: true }, { name: "arg2", description: "Second", required: true }],
  },
  {
    name: "test_prompt_with_embedded_resource", description: "A prompt with a resource",
    arguments: [{ name: "resourceUri", description: "The resource's URI", required: true }],
  },
  { name: "test_prompt_with_image", description: "A prompt with an image" },
];

async function callTool(req, extra, session) {
  const args = req.params.arguments || {};
  // notifications go with the request, on its own stream
  const log = (level, data) =>
    LEVELS.indexOf(level) >= LEVELS.indexOf(session.level)
      ? extra.sendNotification({ method: "notifications/message", params: { level, logger: "conformance", data } })
      : Promise.resolve();
  const elicit = (params) => extra.sendRequest({ method: "elicitation/create", params }, ElicitResultSchema);
  switch (req.params.name) {
    case "test_simple_text":
      return { content: [text("This is a simple text response for testing.")] };
    case "test_image_content":
      return { content: [{ type: "image", data: PNG, mimeType: "image/png" }] };
    case "test_audio_content":
      return { content: [{ type: "audio", data: WAV, mimeType: "audio/wav" }] };
    case "test_embedded_resource":
      return {
        content: [{
          type: "resource",
          resource: { uri: "test://embedded-resource", mimeType: "text/plain", text: "This is an embedded resource content." },
        }],
      };
    case "test_multiple_content_types":
      return {
        content: [
          text("Multiple content types test:"),
          { type: "image", data: PNG, mimeType: "image/png" },
          {
            type: "resource",
            resource: { uri: "test://mixed-content-resource", mimeType: "application/json", text: '{"test":"data","value":123}' },
          },
        ],
      };
    case "test_tool_with_logging":
      await log("info", "Tool execution started");
      await sleep(50);
      await log("info", "Tool processing data");
      await sleep(50);
      await log("info", "Tool execution completed");
      return { content: [text("Logged three messages")] };
    case "test_error_handling":
      return { isError: true, content: [text("This tool intentionally returns an error for testing")] };
    case "test_tool_with_progress": {
      const token = req.params._meta?.progressToken;
      for (const progress of [0, 50, 100]) {
        if (token !== undefined)
          await extra.sendNotification({ method: "notifications/progress", params: { progressToken: token, progress, total: 100 } });
        if (progress < 100) await sleep(50);
      }
      return { content: [text("Progress reported")] };
    }
    case "test_sampling": {
      const r = await extra.sendRequest({
        method: "sampling/createMessage",
        params: { messages: [{ role: "user", content: text(String(args.prompt)) }], maxTokens: 100 },
      }, CreateMessageResultSchema);
      return { content: [text(`LLM response: ${r.content?.text ?? JSON.stringify(r.content)}`)] };
    }
    case "test_elicitation": {
      const r = await elicit({
        message: String(args.message),
        requestedSchema: {
          type: "object",
          properties: {
            username: { type: "string", description: "User's response" },
            email: { type: "string", description: "User's email address" },
          },
          required: ["username", "email"],
        },
      });
      return { content: [text(`User response: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`)] };
    }
    case "test_elicitation_sep1034_defaults": {
      const r = await elicit({
        message: "Please review the defaults",
        requestedSchema: {
          type: "object",
          properties: {
            name: { type: "string", description: "User name", default: "John Doe" },
            age: { type: "integer", description: "User age", default: 30 },
            score: { type: "number", description: "User score", default: 95.5 },
            status: { type: "string", description: "User status", enum: ["active", "inactive", "pending"], default: "active" },
            verified: { type: "boolean", description: "Verification status", default: true },
          },
        },
      });
      return { content: [text(`Elicitation completed: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`)] };
    }
    case "test_elicitation_sep1330_enums": {
      const r = await elicit({
        message: "Please choose",
        requestedSchema: {
          type: "object",
          properties: {
            untitledSingle: { type: "string", enum: ["option1", "option2", "option3"] },
            titledSingle: {
              type: "string",
              oneOf: [{ const: "value1", title: "First Option" }, { const: "value2", title: "Second Option" }],
            },
            legacyEnum: { type: "string", enum: ["opt1", "opt2", "opt3"], enumNames: ["Option One", "Option Two", "Option Three"] },
            untitledMulti: { type: "array", items: { type: "string", enum: ["option1", "option2", "option3"] } },
            titledMulti: {
              type: "array",
              items: { anyOf: [{ const: "value1", title: "First Choice" }, { const: "value2", title: "Second Choice" }] },
            },
          },
        },
      });
      return { content: [text(`Elicitation completed: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`)] };
    }
    case "json_schema_2020_12_tool":
      return { content: [text(`Got ${JSON.stringify(args)}`)] };
    default:
      return { isError: true, content: [text(`Unknown tool: ${req.params.name}`)] };
  }
}

function readResource(uri) {
  if (uri === "test://static-text")
    return { contents: [{ uri, mimeType: "text/plain", text: "This is the content of the static text resource." }] };
  if (uri === "test://static-binary") return { contents: [{ uri, mimeType: "image/png", blob: PNG }] };
  if (uri === "test://watched-resource") return { contents: [{ uri, mimeType: "text/plain", text: "Watched resource content." }] };
  const m = /^test:\/\/template\/([^/]+)\/data$/.exec(uri);
  if (m)
    return { contents: [{ uri, mimeType: "application/json", text: JSON.stringify({ id: m[1], templateTest: true, data: `Data for ID: ${m[1]}` }) }] };
  throw new Error(`Unknown resource: ${uri}`);
}

function getPrompt(name, args = {}) {
  switch (name) {
    case "test_simple_prompt":
      return { messages: [{ role: "user", content: text("This is a simple prompt for testing.") }] };
    case "test_prompt_with_arguments":
      return { messages: [{ role: "user", content: text(`Prompt with arguments: arg1='${args.arg1}', arg2='${args.arg2}'`) }] };
    case "test_prompt_with_embedded_resource":
      return {
        messages: [
          { role: "user", content: { type: "resource", resource: { uri: args.resourceUri, mimeType: "text/plain", text: "Embedded resource content for testing." } } },
          { role: "user", content: text("Please process the embedded resource above.") },
        ],
      };
    case "test_prompt_with_image":
      return {
        messages: [
          { role: "user", content: { type: "image", data: PNG, mimeType: "image/png" } },
          { role: "user", content: text("Please analyze the image above.") },
        ],
      };
    default:
      throw new Error(`Unknown prompt: ${name}`);
  }
}

function newServer(session) {
  const s = new Server(
    { name: "mcpauth-conformance-backend", version: "1.0.0" },
    {
      capabilities: {
        tools: {}, prompts: {}, logging: {}, completions: {},
        resources: { subscribe: true },
      },
    },
  );
  s.setRequestHandler(ListToolsRequestSchema, async () => ({ tools }));
  s.setRequestHandler(CallToolRequestSchema, (req, extra) => callTool(req, extra, session));
  s.setRequestHandler(ListResourcesRequestSchema, async () => ({ resources }));
  s.setRequestHandler(ListResourceTemplatesRequestSchema, async () => ({
    resourceTemplates: [{ uriTemplate: "test://template/{id}/data", name: "template", description: "Data by id", mimeType: "application/json" }],
  }));
  s.setRequestHandler(ReadResourceRequestSchema, async (req) => readResource(req.params.uri));
  s.setRequestHandler(SubscribeRequestSchema, async (req) => {
    session.subscribed.add(req.params.uri);
    return {};
  });
  s.setRequestHandler(UnsubscribeRequestSchema, async (req) => {
    session.subscribed.delete(req.params.uri);
    return {};
  });
  s.setRequestHandler(ListPromptsRequestSchema, async () => ({ prompts }));
  s.setRequestHandler(GetPromptRequestSchema, async (req) => getPrompt(req.params.name, req.params.arguments));
  s.setRequestHandler(CompleteRequestSchema, async (req) => {
    const v = String(req.params.argument?.value ?? "");
    const values = ["paris", "park", "party", `${v}-1`, `${v}-2`].filter((x) => x.startsWith(v));
    return { completion: { values, total: values.length, hasMore: false } };
  });
  s.setRequestHandler(SetLevelRequestSchema, async (req) => {
    session.level = req.params.level;
    return {};
  });
  return s;
}

const sessions = new Map(); // Mcp-Session-Id -> transport
const LOCAL = new Set(["127.0.0.1", "localhost", "[::1]"]);

function jsonError(res, status, message) {
  res.writeHead(status, { "Content-Type": "application/json" });
  res.end(JSON.stringify({ jsonrpc: "2.0", error: { code: -32000, message }, id: null }));
}

async function readJson(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

const isInitialize = (b) => (Array.isArray(b) ? b : [b]).some((m) => m && m.method === "initialize");

// Requests in flight (event streams included) and their peak, printed when
// it rises: what the proxy's per-caller concurrency cap has to allow.
let inflight = 0, peakInflight = 0;
const httpServer = http.createServer(async (req, res) => {
  if (++inflight > peakInflight) console.log(`peak_inflight=${(peakInflight = inflight)}`);
  res.on("close", () => inflight--);
  try {
    const url = new URL(req.url, "http://x");
    if (url.pathname !== "/mcp") return jsonError(res, 404, "Not found");
    let host = "";
    try { host = new URL(`http://${req.headers.host}`).hostname; } catch { /* refused below */ }
    if (!LOCAL.has(host)) return jsonError(res, 403, `Invalid Host header: ${req.headers.host}`);
    const id = req.headers["mcp-session-id"];
    let transport = id ? sessions.get(id) : undefined;
    if (req.method === "POST") {
      const body = await readJson(req);
      if (!transport) {
        if (id || !isInitialize(body)) return jsonError(res, id ? 404 : 400, "Invalid or missing session ID");
        const session = { level: "info", subscribed: new Set() };
        transport = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          onsessioninitialized: (sid) => sessions.set(sid, transport),
        });
        transport.onclose = () => transport.sessionId && sessions.delete(transport.sessionId);
        await newServer(session).connect(transport);
      }
      return await transport.handleRequest(req, res, body);
    }
    if (!transport) return jsonError(res, id ? 404 : 400, "Invalid or missing session ID");
    return await transport.handleRequest(req, res);
  } catch (e) {
    if (!res.headersSent) jsonError(res, 400, `Bad request: ${e.message}`);
    else res.end();
  }
});
httpServer.listen(port, "127.0.0.1", () => console.log("listening"));
