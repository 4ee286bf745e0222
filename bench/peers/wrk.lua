-- wrk script of bench/peers.sh, set by the environment (read when wrk
-- loads the script, so a single token keeps wrk's pre-built request):
--   PEERS_MODE    get (default) or mcp: POST tools/call "echo", the
--                 stateless 2026-07-28 era (no session needed)
--   PEERS_TOKENS  file of tokens, one a line: one token is sent on every
--                 request; several rotate, one per request, in order
-- done() prints one machine-readable line, "PEERS key=value ...":
-- latencies in microseconds; non2xx counts answers with status >= 400
-- (wrk's "Non-2xx or 3xx responses"; nothing here redirects).

local mode = os.getenv("PEERS_MODE") or "get"
local tokens_file = os.getenv("PEERS_TOKENS") or ""

if mode == "mcp" then
  wrk.method = "POST"
  wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call",'
    .. '"params":{"name":"echo","arguments":{"text":"benchmark"}}}'
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Accept"] = "application/json, text/event-stream"
  wrk.headers["MCP-Protocol-Version"] = "2026-07-28"
  wrk.headers["Mcp-Method"] = "tools/call"
  wrk.headers["Mcp-Name"] = "echo"
end

local tokens = {}
if tokens_file ~= "" then
  for line in io.lines(tokens_file) do
    if #line > 0 then tokens[#tokens + 1] = line end
  end
end

if #tokens == 1 then
  wrk.headers["Authorization"] = "Bearer " .. tokens[1]
elseif #tokens > 1 then
  local i = 0
  local n = #tokens
  request = function()
    i = i % n + 1
    wrk.headers["Authorization"] = "Bearer " .. tokens[i]
    return wrk.format()
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "PEERS requests=%d duration_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d "
      .. "p50_us=%d p99_us=%d mean_us=%.1f max_us=%d tokens=%d\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max, #tokens))
end
