#!/bin/sh
# mcpauth demo: installs what is missing, builds (reusing an earlier build)
# and starts, on 127.0.0.1, a web server with the whole product on the
# example configuration (examples/mcpauth.conf): protected resource
# metadata, the built-in authorization server (demo user, Basic login), the
# proxy, and two example MCP servers behind it.
#
#   examples/demo.sh            start with lighttpd (default)
#   examples/demo.sh --apache   start with Apache (mod_fcgid)
#   examples/demo.sh --stop     stop everything the demo started
#
# MCPAUTH_DEMO_PORT chooses the port (default 8080).  Everything the demo
# writes lives in .demo/ in the source tree (MCPAUTH_DEMO_DIR elsewhere);
# MCPAUTH_DEMO_EXTRA_CONF names a file appended to its mcpauth.conf;
# BUILD_DIR picks the build directory (default _build/).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
# Apache's children run as www-data, which must reach the demo's files: a
# clone in a 0700 home directory keeps its state in /var/tmp instead.
if [ -n "${MCPAUTH_DEMO_DIR:-}" ]; then
    demo=$MCPAUTH_DEMO_DIR
elif [ -f "$top/.demo-location" ]; then
    demo=$(cat "$top/.demo-location")
elif [ "$(id -u)" = 0 ] && id www-data >/dev/null 2>&1 && ! runuser -u www-data -- test -x "$top"; then
    demo=/var/tmp/mcpauth-demo
else
    demo="$top/.demo"
fi
port=${MCPAUTH_DEMO_PORT:-8080}
server=lighttpd

stop_pid() { # file name
    [ -f "$1" ] || return 0
    pid=$(cat "$1")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
        kill -9 "$pid" 2>/dev/null || true
        echo "demo: stopped $2 (pid $pid)"
    fi
    # everything it spawned (FastCGI programs) shares its process group
    kill -9 "-$pid" 2>/dev/null || true
    rm -f "$1"
}

stop() {
    stop_pid "$demo/server.pid" "$(cat "$demo/server.name" 2>/dev/null || echo server)"
    stop_pid "$demo/backend-files.pid" "example MCP server (files)"
    stop_pid "$demo/backend-github.pid" "example MCP server (github)"
}

for arg in "$@"; do
    case "$arg" in
        --apache) server=apache ;;
        --lighttpd) server=lighttpd ;;
        --stop) stop; exit 0 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "demo: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done

sh "$top/scripts/deps.sh"
[ -n "${MCPAUTH_DEMO_DIR:-}" ] || echo "$demo" > "$top/.demo-location"
# BUILD_DIR (as tests/run.sh sets it) or _build/, built as tests/run.sh does
build=${BUILD_DIR:-$top/_build}
mkdir -p "$build"
BUILD_DIR="$build" sh "$top/scripts/build.sh" --enable-werror >"$build/demo-build.log" 2>&1 || {
    cat "$build/demo-build.log" >&2; echo "demo: build failed" >&2; exit 1; }

stop
# the proxy's shared state belongs to the server's user: start afresh
rm -f "$demo/proxy.shm"
mkdir -p "$demo/htdocs" "$demo/fcgid"
chmod 755 "$demo" "$demo/htdocs"
bport1=$((port + 10)); bport2=$((port + 11))
sed -e "s/127\.0\.0\.1:8080/127.0.0.1:$port/g" \
    -e "s/127\.0\.0\.1:8090/127.0.0.1:$bport1/g" -e "s/127\.0\.0\.1:8091/127.0.0.1:$bport2/g" \
    -e "s|^runtime_dir = .*|runtime_dir = $demo|" -e "s|^state_dir = .*|state_dir = $demo/state|" \
    -e "s|^log = .*|log = file:$demo/mcpauth.log|" \
    "$top/examples/mcpauth.conf" > "$demo/mcpauth.conf"
if [ -n "${MCPAUTH_DEMO_EXTRA_CONF:-}" ]; then
    cat "$MCPAUTH_DEMO_EXTRA_CONF" >> "$demo/mcpauth.conf"
fi
chmod 644 "$demo/mcpauth.conf"

# The state and the shared files belong to the user the programs run as
# (a demo started on one server, then on the other, hands them over).
owner=""
if [ "$(id -u)" = 0 ]; then
    if [ "$server" = apache ]; then owner="--owner www-data"; else owner="--owner root"; fi
fi
# shellcheck disable=SC2086
"$build/tools/mcpauth" --config "$demo/mcpauth.conf" init $owner >/dev/null
# The programs' log (log = file: above; under lighttpd their stderr would be
# lighttpd's own, not error.log), appended to by the server's user.
: > "$demo/mcpauth.log"
chmod 640 "$demo/mcpauth.log"
if [ "$(id -u)" = 0 ]; then
    if [ "$server" = apache ]; then chown www-data: "$demo/mcpauth.log"; else chown root: "$demo/mcpauth.log"; fi
fi
"$build/fcgi/mcpauth-metadata" --check --config "$demo/mcpauth.conf" >/dev/null

# The demo user: a fresh password every start, printed below.
password=$(head -c 12 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 12)
printf 'demo:%s\n' "$(openssl passwd -apr1 "$password")" > "$demo/htpasswd"
chmod 644 "$demo/htpasswd"
(umask 077 && printf '%s\n' "$password" > "$demo/password") # for scripts, e.g. tests/e2e

for b in files:$bport1 github:$bport2; do
    name=${b%%:*} bp=${b#*:}
    setsid "$build/examples/mcp-server" --port "$bp" --path /mcp </dev/null \
        >"$demo/backend-$name.log" 2>&1 &
    echo $! > "$demo/backend-$name.pid"
done
: > "$demo/error.log"

if [ "$server" = lighttpd ]; then
    cat > "$demo/lighttpd.conf" <<CONF
server.document-root = "$demo/htdocs"
server.port = $port
server.bind = "127.0.0.1"
server.errorlog = "$demo/error.log"
server.breakagelog = "$demo/error.log"
server.modules = ( "mod_access" )
var.mcpauth_libexecdir = "$build/fcgi"
var.mcpauth_config = "$demo/mcpauth.conf"
var.mcpauth_rundir = "$demo"
include "$top/lighttpd/mcpauth-fcgi.conf"
var.mcpauth_proxy_prefix = "/mcp"
include "$top/lighttpd/mcpauth-proxy.conf"
var.mcpauth_as_prefix = "/oauth2"
var.mcpauth_htpasswd = "$demo/htpasswd"
include "$top/lighttpd/mcpauth-as.conf"
CONF
    lighttpd -tt -f "$demo/lighttpd.conf" >/dev/null
    setsid lighttpd -D -f "$demo/lighttpd.conf" </dev/null >"$demo/server.out" 2>&1 &
    echo $! > "$demo/server.pid"
else
    user=""
    if [ "$(id -u)" = 0 ]; then
        user="User www-data
Group www-data"
        chown www-data:www-data "$demo/fcgid" "$demo"
    fi
    # the programs and library, copied where www-data can read them
    mkdir -p "$demo/bin" "$demo/lib"
    for p in mcpauth-metadata mcpauth-gate mcpauth-proxy mcpauth-as; do
        cp "$build/fcgi/.libs/$p" "$demo/bin/$p"
    done
    cp "$build/lib/.libs/libmcpauth.so.0" "$demo/lib/"
    chmod 755 "$demo/bin" "$demo/lib" "$demo/bin/"*
    mods=/usr/lib/apache2/modules
    cat > "$demo/apache.conf" <<CONF
ServerRoot "$demo"
Listen 127.0.0.1:$port
ServerName 127.0.0.1
# TRACE would echo the Authorization header back (cross-site tracing).
TraceEnable Off
ServerTokens Prod
PidFile "$demo/apache.pid"
ErrorLog "$demo/error.log"
DefaultRuntimeDir "$demo"
Mutex file:$demo default
$user
LoadModule mpm_event_module $mods/mod_mpm_event.so
LoadModule authz_core_module $mods/mod_authz_core.so
LoadModule authz_user_module $mods/mod_authz_user.so
LoadModule authn_core_module $mods/mod_authn_core.so
LoadModule authn_file_module $mods/mod_authn_file.so
LoadModule auth_basic_module $mods/mod_auth_basic.so
LoadModule alias_module $mods/mod_alias.so
LoadModule fcgid_module $mods/mod_fcgid.so
FcgidIPCDir "$demo/fcgid"
FcgidProcessTableFile "$demo/fcgid/shm"
DocumentRoot "$demo/htdocs"
Define MCPAUTH_LIBEXECDIR $demo/bin
FcgidInitialEnv LD_LIBRARY_PATH $demo/lib
Define MCPAUTH_CONFIG $demo/mcpauth.conf
Include "$top/apache/mcpauth-fcgi.conf"
Define MCPAUTH_PROXY_LOCATION /mcp
Include "$top/apache/mcpauth-proxy.conf"
Define MCPAUTH_AS_LOCATION /oauth2
Define MCPAUTH_HTPASSWD $demo/htpasswd
Include "$top/apache/mcpauth-as.conf"
CONF
    /usr/sbin/apache2 -t -f "$demo/apache.conf" >/dev/null 2>&1 || /usr/sbin/apache2 -t -f "$demo/apache.conf"
    setsid /usr/sbin/apache2 -f "$demo/apache.conf" -DFOREGROUND </dev/null >"$demo/server.out" 2>&1 &
    echo $! > "$demo/server.pid"
fi
echo "$server" > "$demo/server.name"

i=0
until curl -s -o /dev/null "http://127.0.0.1:$port/"; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 "$(cat "$demo/server.pid")" 2>/dev/null; then
        echo "demo: $server did not start; see $demo/error.log and $demo/server.out" >&2
        cat "$demo/server.out" "$demo/error.log" >&2
        exit 1
    fi
    sleep 0.1
done

base="http://127.0.0.1:$port"
cat <<MSG

mcpauth demo running: $server on $base (pid $(cat "$demo/server.pid"))

  MCP servers (Streamable HTTP, OAuth 2.1 protected):
    $base/mcp/files
    $base/mcp/github
  Sign in at the consent page as:  demo / $password

Connect an MCP client that supports OAuth (it discovers everything from a 401):
  npx @modelcontextprotocol/inspector          then enter $base/mcp/files
  claude mcp add --transport http files $base/mcp/files

Look around with curl:
  curl -si $base/mcp/files -X POST -H 'Content-Type: application/json' -d '{}'   (401 + challenge)
  curl -s  $base/.well-known/oauth-protected-resource/mcp/files
  curl -s  $base/.well-known/oauth-authorization-server

Configuration: $demo/mcpauth.conf
Logs: $demo/mcpauth.log (mcpauth; security events: grep security=1), $demo/error.log ($server)
Stop it with:  examples/demo.sh --stop
MSG
