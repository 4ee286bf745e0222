#!/bin/sh
# mcpauth demo: installs what is missing, builds (reusing an earlier build),
# and starts a web server on 127.0.0.1 serving mcpauth on the example
# configuration (examples/mcpauth.conf).
#
#   examples/demo.sh            start with lighttpd (default)
#   examples/demo.sh --apache   start with Apache (mod_fcgid)
#   examples/demo.sh --stop     stop whatever the demo started
#
# MCPAUTH_DEMO_PORT chooses the port (default 8080).  Everything the demo
# writes lives in .demo/ in the source tree.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
demo="$top/.demo"
port=${MCPAUTH_DEMO_PORT:-8080}
server=lighttpd

stop() {
    if [ -f "$demo/server.pid" ]; then
        pid=$(cat "$demo/server.pid")
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid"
            i=0
            while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
            kill -9 "$pid" 2>/dev/null || true
            echo "demo: stopped $(cat "$demo/server.name" 2>/dev/null || echo server) (pid $pid)"
        fi
        rm -f "$demo/server.pid"
    fi
}

for arg in "$@"; do
    case "$arg" in
        --apache) server=apache ;;
        --lighttpd) server=lighttpd ;;
        --stop) stop; exit 0 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "demo: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done

sh "$top/scripts/deps.sh"
BUILD_DIR="$top/_build" sh "$top/scripts/build.sh" --enable-werror >"$top/.demo-build.log" 2>&1 || {
    cat "$top/.demo-build.log" >&2; echo "demo: build failed" >&2; exit 1; }
build="$top/_build"

stop
mkdir -p "$demo/htdocs" "$demo/fcgid"
chmod 755 "$demo" "$demo/htdocs"
sed "s/127\.0\.0\.1:8080/127.0.0.1:$port/g" "$top/examples/mcpauth.conf" > "$demo/mcpauth.conf"
chmod 644 "$demo/mcpauth.conf"
"$build/fcgi/mcpauth-metadata" --check --config "$demo/mcpauth.conf"
: > "$demo/error.log"

if [ "$server" = lighttpd ]; then
    cat > "$demo/lighttpd.conf" <<CONF
server.document-root = "$demo/htdocs"
server.port = $port
server.bind = "127.0.0.1"
server.errorlog = "$demo/error.log"
server.modules = ( "mod_access" )
var.mcpauth_libexecdir = "$build/fcgi"
var.mcpauth_config = "$demo/mcpauth.conf"
var.mcpauth_rundir = "$demo"
include "$top/lighttpd/mcpauth-fcgi.conf"
CONF
    lighttpd -tt -f "$demo/lighttpd.conf" >/dev/null
    setsid lighttpd -D -f "$demo/lighttpd.conf" </dev/null >"$demo/server.out" 2>&1 &
    echo $! > "$demo/server.pid"
else
    user=""
    if [ "$(id -u)" = 0 ]; then
        user="User www-data
Group www-data"
        chown www-data:www-data "$demo/fcgid"
    fi
    mods=/usr/lib/apache2/modules
    cat > "$demo/apache.conf" <<CONF
ServerRoot "$demo"
Listen 127.0.0.1:$port
ServerName 127.0.0.1
PidFile "$demo/apache.pid"
ErrorLog "$demo/error.log"
DefaultRuntimeDir "$demo"
Mutex file:$demo default
$user
LoadModule mpm_event_module $mods/mod_mpm_event.so
LoadModule authz_core_module $mods/mod_authz_core.so
LoadModule alias_module $mods/mod_alias.so
LoadModule fcgid_module $mods/mod_fcgid.so
FcgidIPCDir "$demo/fcgid"
FcgidProcessTableFile "$demo/fcgid/shm"
DocumentRoot "$demo/htdocs"
Define MCPAUTH_LIBEXECDIR $build/fcgi
Define MCPAUTH_CONFIG $demo/mcpauth.conf
Include "$top/apache/mcpauth-fcgi.conf"
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

Protected resource metadata (RFC 9728), two resources, both URL forms:
  curl -s $base/.well-known/oauth-protected-resource/mcp/files
  curl -s $base/.well-known/oauth-protected-resource/mcp/github
  curl -s $base/.well-known/oauth-protected-resource        (default_resource: files)
  curl -si -X OPTIONS $base/.well-known/oauth-protected-resource/mcp/files   (CORS preflight)

Configuration: $demo/mcpauth.conf    Log: $demo/error.log
Stop it with:  examples/demo.sh --stop
MSG
