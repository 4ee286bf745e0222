#!/bin/sh
# Several hosts' engines against the single-host defaults, side by side in
# one run (issue 17): the built-in AS's token endpoint with its state in
# SQLite (the default) and in PostgreSQL, and the proxy's relay with its
# shared state (rate limits on) in shared memory and in Redis.  PostgreSQL
# and Redis are private servers on loopback (tests/support/engines.sh),
# started and stopped here by PID.  Prints both benchmarks' tables and
# appends them to bench/RESULTS.md with --results.
#   make -C _build bench-engines                  (sets the environment)
#   BENCH_AS_FLAGS='--seconds 20' make -C _build bench-engines
# Run by `make bench-engines`, which sets the environment the benchmarks
# need (MCPAUTH_SRCDIR, MCPAUTH_BUILDDIR, LIGHTTPD, ...).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
: "${MCPAUTH_BUILDDIR:?run it through make bench-engines}"
results=""
[ "${1:-}" = --results ] && results=$2
. "$top/tests/support/engines.sh"
dir=$(mktemp -d "${TMPDIR:-/tmp}/mcpauth-bench-engines-XXXXXX")
[ "$(id -u)" = 0 ] && chmod 0755 "$dir"
cleanup() {
    engines_redis_stop || true
    engines_pg_stop || true
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM
# ports: the kernel's pick, through a throwaway listener
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
        echo $((40000 + $$ % 20000 + $1))
}
engines_pg_start "$dir" "$(free_port 1)"
engines_redis_start "$dir" "$(free_port 2)"
# shellcheck disable=SC2086
set -- ${BENCH_AS_FLAGS:-}
out="$dir/as.md"
"$MCPAUTH_BUILDDIR/bench/bench_as" --label "store = sqlite (the default)" --results "$out" "$@"
"$MCPAUTH_BUILDDIR/bench/bench_as" --label "store = PostgreSQL $(psql -XAtc 'show server_version' "$PG_URL" | cut -d' ' -f1), loopback" \
    --store "$PG_URL" --results "$out" "$@"
"$MCPAUTH_BUILDDIR/bench/bench_proxy" "${BENCH_SECONDS:-3}" 4 "$REDIS_URL" | tee "$dir/proxy.txt"
cat "$out"
if [ -n "$results" ]; then
    {
        cat "$out"
        printf '\n## Relay, shared state in shared memory vs Redis %s (%s), %s\n\n```\n' \
            "$(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')" "$REDIS_URL" "$(date -u '+%Y-%m-%d %H:%M UTC')"
        cat "$dir/proxy.txt"
        printf '```\n'
    } >> "$results"
fi
