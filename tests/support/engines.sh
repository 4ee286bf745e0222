#!/bin/sh
# Private PostgreSQL and Redis servers for the tests, from Debian's packages
# (postgresql, redis-server): own data directory, own loopback port, stopped
# by PID.  Source this file, then:
#   engines_pg_start DIR PORT      initdb DIR/pg, start it; sets PG_URL, PG_PID
#   engines_pg_stop                stop it (fast shutdown), wait for the PID
#   engines_redis_start DIR PORT   start redis-server in DIR/redis; sets REDIS_URL, REDIS_PID
#   engines_redis_stop             stop it, wait for the PID
# PostgreSQL refuses to run as root: as root the server runs as the user
# "postgres" that Debian's package creates.  Both return non-zero, with the
# server's log on stderr, when the server does not come up within 30 s.

engines_pg_bin() {
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
    done
    echo "engines: no PostgreSQL server (apt-get install postgresql)" >&2
    return 1
}

engines_as_pg_user() { # command...: run it as the PostgreSQL server's user
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

engines_pg_start() { # dir port
    _bin=$(engines_pg_bin) || return 1
    _d=$1/pg
    mkdir -p "$_d" || return 1
    [ "$(id -u)" = 0 ] && chown postgres "$1" "$_d"
    chmod 0700 "$_d"
    engines_as_pg_user "$_bin/initdb" -D "$_d/data" -U mcpauth -A trust -E UTF8 \
        --no-sync >"$_d/initdb.log" 2>&1 || { cat "$_d/initdb.log" >&2; return 1; }
    # loopback TCP only, socket in the private directory, no fsync (tests)
    cat >>"$_d/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $2
unix_socket_directories = '$_d'
fsync = off
full_page_writes = off
max_connections = 200
EOF
    engines_as_pg_user "$_bin/pg_ctl" -D "$_d/data" -l "$_d/server.log" -w -t 30 start \
        >/dev/null 2>&1 || { cat "$_d/server.log" >&2; return 1; }
    PG_PID=$(head -1 "$_d/data/postmaster.pid")
    PG_DATA=$_d/data
    PG_PORT=$2
    engines_as_pg_user "$_bin/createdb" -h 127.0.0.1 -p "$2" -U mcpauth mcpauth ||
        { cat "$_d/server.log" >&2; return 1; }
    PG_URL="postgresql://mcpauth@127.0.0.1:$2/mcpauth"
    export PG_URL PG_PID PG_DATA PG_PORT
}

engines_pg_stop() {
    [ -n "${PG_PID:-}" ] || return 0
    _bin=$(engines_pg_bin) || return 1
    engines_as_pg_user "$_bin/pg_ctl" -D "$PG_DATA" -m fast -w -t 30 stop >/dev/null 2>&1 ||
        kill -9 "$PG_PID" 2>/dev/null || true
    _i=0
    while kill -0 "$PG_PID" 2>/dev/null && [ $_i -lt 100 ]; do
        sleep 0.1
        _i=$((_i + 1))
    done
    PG_PID=
}

engines_redis_start() { # dir port
    command -v redis-server >/dev/null 2>&1 ||
        { echo "engines: no redis-server (apt-get install redis-server)" >&2; return 1; }
    _d=$1/redis
    mkdir -p "$_d" || return 1
    redis-server --bind 127.0.0.1 --port "$2" --dir "$_d" --save '' --appendonly no \
        --daemonize no --logfile "$_d/server.log" --pidfile "$_d/redis.pid" &
    REDIS_PID=$!
    _i=0
    while ! redis-cli -h 127.0.0.1 -p "$2" ping >/dev/null 2>&1; do
        _i=$((_i + 1))
        if [ $_i -gt 300 ] || ! kill -0 "$REDIS_PID" 2>/dev/null; then
            cat "$_d/server.log" >&2
            return 1
        fi
        sleep 0.1
    done
    REDIS_PORT=$2
    REDIS_URL="redis://127.0.0.1:$2/0"
    export REDIS_URL REDIS_PID REDIS_PORT
}

engines_redis_stop() {
    [ -n "${REDIS_PID:-}" ] || return 0
    kill "$REDIS_PID" 2>/dev/null || true
    _i=0
    while kill -0 "$REDIS_PID" 2>/dev/null && [ $_i -lt 100 ]; do
        sleep 0.1
        _i=$((_i + 1))
    done
    kill -9 "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=
}
