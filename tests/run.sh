#!/bin/sh
# Builds mcpauth and runs every test: Check unit tests, then integration
# tests against real lighttpd and real Apache on loopback ports.  Installs
# what is missing first.  Exit status is non-zero when any test fails.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
sh "$top/scripts/deps.sh"
BUILD_DIR=${BUILD_DIR:-$top/_build}
export BUILD_DIR
sh "$top/scripts/build.sh" --enable-werror
cd "$BUILD_DIR"
rc=0
make -j1 check || rc=$?
# Show each runner's summary (the logs hold the details), then one total.
for log in tests/unit/check_unit.log tests/integration/*.log; do
    [ -f "$log" ] || continue
    case "$log" in *test-suite.log) continue ;; esac
    printf '%s: ' "${log%.log}"
    grep -E '^[0-9]+%: Checks:' "$log" || echo "no Check summary (crashed?)"
    grep -E '^[^ ]+:[0-9]+:[FE]:' "$log" || true
done
# End to end: the official MCP SDK client and the MCP reference server
# against the demo deployment on lighttpd and Apache.
e2e_rc=0
sh "$top/tests/e2e/run.sh" > "$BUILD_DIR/e2e.log" 2>&1 || e2e_rc=$?
grep -E '^(== |e2e: )|not ok' "$BUILD_DIR/e2e.log" || true
[ "$e2e_rc" -eq 0 ] || { echo "e2e failed; see $BUILD_DIR/e2e.log"; tail -40 "$BUILD_DIR/e2e.log"; }
awk '/^[0-9]+%: Checks:/ { gsub(",", ""); c += $3; f += $5 + $7 }
     match($0, /-flow: [0-9]+ passed, [0-9]+ failed/) {
         split(substr($0, RSTART + 7), a, /[ ,]+/); c += a[1] + a[3]; f += a[3] }
     END { printf "mcpauth: %d passed, %d failed\n", c - f, f }' \
    tests/unit/check_unit.log tests/integration/*.log "$BUILD_DIR/e2e.log" 2>/dev/null | grep -v '^$' || true
[ "$rc" -eq 0 ] && rc=$e2e_rc
exit "$rc"
