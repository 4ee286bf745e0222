#!/bin/sh
# Bootstraps, configures and builds mcpauth out of tree in $BUILD_DIR
# (default _build).  Extra arguments go to configure.  A second run reuses
# the build and only recompiles what changed.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$top/_build}
cd "$top"
# Several builds may share this source tree (one per build directory):
# only one of them regenerates configure at a time.
(
    flock 9
    if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt configure ]; then
        autoreconf -fi
    fi
) 9>"${TMPDIR:-/tmp}/mcpauth-autoreconf.lock"

mkdir -p "$build"
cd "$build"
stamp=".configure-args"
args="$*"
if [ ! -f Makefile ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$args" ]; then
    # shellcheck disable=SC2086
    "$top/configure" $args
    printf '%s' "$args" > "$stamp"
fi
make -j"$(nproc 2>/dev/null || echo 2)"
