#!/bin/sh
# Builds the libFuzzer harnesses (tests/fuzz/README) with clang:
# one binary per harness in $FUZZ_OUT (default $BUILD_DIR/fuzz, BUILD_DIR
# default _build), from the library's sources compiled with the same include
# paths and dependencies as the core library, plus ASan and UBSan.  No
# autotools needed.  A second run recompiles only what changed.
#   FUZZ_OUT=... CC=clang tests/fuzz/build.sh [HARNESS...]
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
out=${FUZZ_OUT:-${BUILD_DIR:-$top/_build}/fuzz}
cc=${CC:-clang}
case $cc in
    *clang*) ;;
    *) echo "fuzz: libFuzzer needs clang (CC=$cc)" >&2; exit 1 ;;
esac
command -v "$cc" >/dev/null 2>&1 || {
    echo "fuzz: $cc not found; on Debian: apt-get install clang libclang-rt-14-dev" >&2; exit 1; }

mods="json-c libcurl libcrypto sqlite3 libjwt"
pkg-config --exists $mods || {
    echo "fuzz: missing development packages ($mods); see scripts/deps.sh" >&2; exit 1; }
deps_cflags=$(pkg-config --cflags $mods)
deps_libs=$(pkg-config --libs $mods)

# config.h and version.h as configure would write them (the library needs
# only the system extensions and the version).
gen="$out/gen"
mkdir -p "$gen/mcpauth" "$out/obj"
version=$(sed -n 's/^AC_INIT(\[mcpauth\], \[\([^]]*\)\].*/\1/p' "$top/configure.ac")
cat > "$gen/config.h.new" <<EOC
/* written by tests/fuzz/build.sh */
#ifndef _GNU_SOURCE
# define _GNU_SOURCE 1
#endif
#define PACKAGE_VERSION "$version"
#define PACKAGE "mcpauth"
EOC
cat > "$gen/mcpauth/version.h.new" <<EOC
#ifndef MCPAUTH_VERSION_H
#define MCPAUTH_VERSION_H
#define MCPAUTH_VERSION "$version"
#endif
EOC
for f in "$gen/config.h" "$gen/mcpauth/version.h"; do
    if cmp -s "$f.new" "$f"; then rm -f "$f.new"; else mv "$f.new" "$f"; fi
done

san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
# clang, unlike gcc, warns on strbuf.c's vsnprintf wrapper (it has the format attribute)
warn="-Wall -Wextra -Wformat=2 -Wshadow -Wpointer-arith -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter -Wno-format-nonliteral"
cflags="-g -O1 $san -fsanitize=fuzzer-no-link -pthread $warn ${FUZZ_CFLAGS:-}"
cppflags="-I$gen -I$top/include -I$top/lib -DSYSCONFDIR=\"/etc\" -DLOCALSTATEDIR=\"/var\" -DLIBEXECDIR=\"/usr/libexec/mcpauth\" $deps_cflags"

# Objects are rebuilt when their source, any header or this script is newer.
stamp="$out/obj/.headers"
newest=$(ls -t "$0" "$gen/config.h" "$top"/include/mcpauth/*.h "$top"/lib/*.h "$top"/lib/as/*.h \
    "$top"/tests/support/*.h "$top"/tests/fuzz/*.h | head -1)
objs=""
jobs=""
compile() { # src obj
    if [ ! -f "$2" ] || [ "$1" -nt "$2" ] || [ "$newest" -nt "$2" ]; then
        echo "  CC $1" | sed "s|$top/||"
        # shellcheck disable=SC2086
        $cc $cflags $cppflags -c "$1" -o "$2"
    fi
}
srcs=$(ls "$top"/lib/*.c "$top"/lib/as/*.c)
srcs="$srcs $top/tests/support/tokens.c $top/tests/fuzz/fuzz_common.c $top/tests/fuzz/as_fixture.c"
n=0
for s in $srcs; do
    o="$out/obj/$(echo "$s" | sed "s|$top/||; s|/|_|g; s|\.c$|.o|")"
    objs="$objs $o"
    compile "$s" "$o" &
    jobs="$jobs $!"
    n=$((n + 1))
    # two at a time: the machine is shared
    if [ $((n % ${FUZZ_JOBS:-2})) -eq 0 ]; then
        for j in $jobs; do wait "$j"; done
        jobs=""
    fi
done
for j in $jobs; do wait "$j"; done

harnesses=${*:-$(ls "$top"/tests/fuzz/fuzz_*.c | sed 's|.*/fuzz_||; s|\.c$||' | grep -v '^common$')}
for h in $harnesses; do
    src="$top/tests/fuzz/fuzz_$h.c"
    [ -f "$src" ] || { echo "fuzz: no harness $h" >&2; exit 1; }
    o="$out/obj/fuzz_$h.o"
    compile "$src" "$o"
    need=0
    [ -f "$out/$h" ] || need=1
    for x in $o $objs; do [ "$x" -nt "$out/$h" ] && need=1; done
    if [ $need = 1 ]; then
        echo "  LD fuzz/$h"
        # shellcheck disable=SC2086
        $cc -fsanitize=fuzzer,address,undefined -pthread -o "$out/$h" "$o" $objs \
            -Wl,--wrap=mcpauth__fetch $deps_libs -lpthread
    fi
done
echo "fuzz: harnesses in $out: $(echo $harnesses)"
