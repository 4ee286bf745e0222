#!/bin/sh
# End-to-end tests with clients and servers not written here, on the demo
# deployment (examples/demo.sh), under lighttpd and then Apache:
#   sdk-flow.mjs         the official MCP TypeScript SDK client, knowing only
#                        the MCP URL: discovery, registration, login and
#                        consent, PKCE, token, MCP calls, refresh
#   everything-flow.mjs  the MCP reference server behind mcpauth-proxy:
#                        tools, streamed progress, a server-to-client request
# Node packages are pinned in package.json / package-lock.json.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
cd "$here"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "e2e: node and npm are needed (apt-get install nodejs npm)" >&2
    exit 1
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
    npm ci --no-audit --no-fund --loglevel=error
fi

port=${MCPAUTH_E2E_PORT:-18080}
evport=$((port + 20))
demo_dir=$(mktemp -d /tmp/mcpauth-e2e-XXXXXX)
chmod 755 "$demo_dir"
extra="$demo_dir.extra.conf"
cat > "$extra" <<CONF

[resource everything]
uri = http://127.0.0.1:$port/mcp/everything
resource_name = MCP reference server
authorization_servers = http://127.0.0.1:$port
backend = http://127.0.0.1:$evport/mcp
CONF

PORT=$evport node node_modules/@modelcontextprotocol/server-everything/dist/index.js streamableHttp \
    >"$demo_dir.everything.log" 2>&1 &
ev_pid=$!
cleanup() {
    MCPAUTH_DEMO_DIR="$demo_dir" sh "$top/examples/demo.sh" --stop >/dev/null 2>&1 || true
    kill "$ev_pid" 2>/dev/null || true
    wait "$ev_pid" 2>/dev/null || true
    rm -rf "$demo_dir" "$extra" "$demo_dir.everything.log"
}
trap cleanup EXIT INT TERM

passed=0 failed=0
run() { # name command...
    name=$1; shift
    if "$@" > "$demo_dir.out" 2>&1; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
    sed "s/^/  [$name] /" "$demo_dir.out"
}
for server in lighttpd apache; do
    echo "== e2e on $server"
    MCPAUTH_DEMO_DIR="$demo_dir" MCPAUTH_DEMO_PORT=$port MCPAUTH_DEMO_EXTRA_CONF="$extra" \
        sh "$top/examples/demo.sh" --$server >/dev/null
    pw=$(cat "$demo_dir/password")
    run "$server sdk" node sdk-flow.mjs "http://127.0.0.1:$port/mcp/files" demo "$pw"
    run "$server everything" node everything-flow.mjs "http://127.0.0.1:$port/mcp/everything" demo "$pw"
    MCPAUTH_DEMO_DIR="$demo_dir" sh "$top/examples/demo.sh" --stop >/dev/null
done
echo "e2e: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
