// Preloaded with `node --import ./bearer-preload.mjs` into a program that
// has no way to send a Bearer token (the conformance suite's CLI has no
// header option, and its scenarios build their own MCP clients): every HTTP
// request to one origin gets "Authorization: Bearer TOKEN".
//
//   MCPAUTH_BEARER_ORIGIN  e.g. http://127.0.0.1:8080
//   MCPAUTH_BEARER_TOKEN   the access token
//   MCPAUTH_BEARER_LOG     optional file: one line per request sent to the
//                          origin ("<ms since epoch> <method> <path>"), for
//                          rate figures; written as they go, so a program
//                          killed at a timeout leaves them too
//
// Both Node's fetch (the MCP SDK's transport, the scenarios' own fetches) and
// the npm undici's request() (the DNS-rebinding scenario) send through
// undici's global dispatcher, so one dispatcher that adds the header covers
// them all.  Requests to other origins are left alone.
import { appendFileSync, writeFileSync } from "node:fs";
import { Agent, setGlobalDispatcher } from "undici";

const origin = new URL(process.env.MCPAUTH_BEARER_ORIGIN).origin;
const value = `Bearer ${process.env.MCPAUTH_BEARER_TOKEN}`;
const logFile = process.env.MCPAUTH_BEARER_LOG;
if (logFile) writeFileSync(logFile, "");

// opts.headers comes as an object, a flat [k, v, k, v] array, an array of
// pairs or an iterable, depending on the caller: the result is a flat array
// without any Authorization of the caller's.
function withBearer(headers) {
  const flat = [];
  const add = (k, v) => {
    if (String(k).toLowerCase() !== "authorization") flat.push(String(k), v);
  };
  if (headers == null) {
    // none
  } else if (Array.isArray(headers) && (headers.length === 0 || !Array.isArray(headers[0]))) {
    for (let i = 0; i + 1 < headers.length; i += 2) add(headers[i], headers[i + 1]);
  } else if (typeof headers[Symbol.iterator] === "function") {
    for (const [k, v] of headers) add(k, v);
  } else {
    for (const [k, v] of Object.entries(headers)) add(k, v);
  }
  flat.push("authorization", value);
  return flat;
}

class BearerAgent extends Agent {
  dispatch(opts, handler) {
    let o;
    try {
      o = new URL(String(opts.origin)).origin;
    } catch {
      o = null;
    }
    if (o === origin) {
      if (logFile) appendFileSync(logFile, `${Date.now()} ${opts.method} ${opts.path}\n`);
      opts = { ...opts, headers: withBearer(opts.headers) };
    }
    return super.dispatch(opts, handler);
  }
}

setGlobalDispatcher(new BearerAgent());
