#!/bin/sh
# Fails when a web-server module that the shipped snippets, the demo, the
# docs or the tests load is not installed by scripts/deps.sh.  Modules are
# found in the sources themselves, so a new one is checked without a list
# to keep up to date:
#   server.modules ( "mod_x" )  ->  lighttpd's mod_x.so, or built into lighttpd
#   LoadModule x_module .../mod_x.so  ->  Apache's mod_x.so
#   a2enmod x                   ->  mods-available/x.load (and its Depends)
# Each module file's Debian package (dpkg -S) must be one deps.sh lists, or
# a package one of those depends on (apache2 -> apache2-bin).  Run after
# deps.sh: a module whose file is missing is an error too.
#   scripts/check-deps.sh [-v]     -v prints every module and its package
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
verbose=0
[ "${1:-}" = -v ] && verbose=1
lmoddir=${LIGHTTPD_MODULES_DIR:-/usr/lib/lighttpd}
amoddir=${APACHE_MODULES_DIR:-/usr/lib/apache2/modules}
availdir=${APACHE_MODS_AVAILABLE:-/etc/apache2/mods-available}
lighttpd=${LIGHTTPD:-/usr/sbin/lighttpd}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cd "$top"
# Where modules are loaded (node_modules and build folders are not ours).
sources=$(ls -d lighttpd/* apache/* apache/shared/* examples/*.sh tests/integration/*.c tests/*.sh \
    tests/e2e/*.sh tests/e2e/*.mjs tests/shared/*.sh bench/*.c doc/*.md \
    README.md man/* 2>/dev/null | while read -r f; do [ -f "$f" ] && echo "$f"; done || true)

# One "kind name file" line per use: L lighttpd module, A Apache module
# file, E a2enmod name.
# shellcheck disable=SC2086
awk '
function emit(kind, name) { print kind, name, FILENAME }
FNR == 1 { inmods = 0 }
{
    s = $0
    gsub(/\\-/, "-", s); gsub(/\\%/, "", s)     # roff escapes in man pages
    if (!inmods && match(s, /server\.modules[ \t]*\+?=[ \t]*\(/)) {
        s = substr(s, RSTART + RLENGTH); inmods = 1
    }
    if (inmods) {
        t = s
        if (match(t, /\)/)) { t = substr(t, 1, RSTART - 1); inmods = 0 }
        while (match(t, /mod_[A-Za-z0-9_]+/)) {
            emit("L", substr(t, RSTART, RLENGTH)); t = substr(t, RSTART + RLENGTH)
        }
    }
    t = s
    while (match(t, /LoadModule[ \t]+[A-Za-z0-9_]+[ \t]+[^ \t]+/)) {
        m = substr(t, RSTART, RLENGTH); t = substr(t, RSTART + RLENGTH)
        if (match(m, /[A-Za-z0-9_.-]+\.so/)) emit("A", substr(m, RSTART, RLENGTH))
    }
    t = s
    while (match(t, /a2enmod[ \t]+/)) {
        t = substr(t, RSTART + RLENGTH)
        match(t, /^[A-Za-z0-9_ \t]*/)
        n = split(substr(t, 1, RLENGTH), w, /[ \t]+/)
        for (i = 1; i <= n; i++) if (w[i] != "") emit("E", w[i])
    }
}' $sources > "$tmp/uses"

# Packages deps.sh installs, and what they depend on directly.
sh "$top/scripts/deps.sh" --list > "$tmp/listed"
{
    cat "$tmp/listed"
    while read -r p; do
        dpkg-query -W -f='${Depends}, ${Pre-Depends}\n' "$p" 2>/dev/null || true
    done < "$tmp/listed" | tr ',|' '\n\n' | sed -e 's/([^)]*)//g' -e 's/:[a-z0-9]*//' -e 's/[[:space:]]//g'
} | grep -v '^$' | sort -u > "$tmp/covered"

owner() { # file -> package names, one a line
    dpkg -S "$1" 2>/dev/null | grep -v '^diversion by' | sed 's|: /.*||' | tr ',' '\n' |
        sed -e 's/^ *//' -e 's/:.*//'
}
# Debian package that probably ships a module that is not installed
hint() { # package-name
    if apt-cache show --no-all-versions "$1" 2>/dev/null | grep -q '^Package:'; then
        echo " (Debian package $1 ships it?)"
    fi
}
lighttpd_loads() { # mod_x: loads it (built in, or a .so) or not
    printf 'server.document-root = "%s"\nserver.port = 1\nserver.modules = ( "%s" )\n' \
        "$tmp" "$1" > "$tmp/lighttpd.conf"
    "$lighttpd" -tt -f "$tmp/lighttpd.conf" >/dev/null 2>&1
}
where() { # kind name: the files that load it
    awk -v k="$1" -v n="$2" '$1 == k && $2 == n { print $3 }' "$tmp/uses" | sort -u | tr '\n' ' ' | sed 's/ $//'
}

problems=0 count=0
problem() { echo "check-deps: $*" >&2; problems=$((problems + 1)); }
check_file() { # label file users
    pkgs=$(owner "$2")
    if [ -z "$pkgs" ]; then
        problem "$1 -> $2 belongs to no Debian package (used in $3)"
        return
    fi
    for p in $pkgs; do
        if grep -qx "$p" "$tmp/covered"; then
            [ $verbose = 0 ] || echo "check-deps: $1 -> $2 ($p)"
            return
        fi
    done
    problem "$1 -> $2 comes from package $(echo "$pkgs" | tr '\n' ' ' | sed 's/ $//'), which scripts/deps.sh does not install (used in $3)"
}

for name in $(awk '$1 == "L" { print $2 }' "$tmp/uses" | sort -u); do
    count=$((count + 1))
    users=$(where L "$name")
    if [ -e "$lmoddir/$name.so" ]; then
        check_file "lighttpd $name" "$lmoddir/$name.so" "$users"
    elif [ -x "$lighttpd" ] && lighttpd_loads "$name"; then
        check_file "lighttpd $name (built in)" "$(readlink -f "$lighttpd")" "$users"
    else
        problem "lighttpd $name: not installed, no $lmoddir/$name.so (used in $users)$(hint "lighttpd-mod-$(echo "${name#mod_}" | tr _ -)")"
    fi
done

# a2enmod names, with the modules their .load files depend on; "origin"
# is the file that names it, or a2enmod:NAME for a dependency.
: > "$tmp/seen"
awk '$1 == "E" { print $2, $3 }' "$tmp/uses" > "$tmp/queue"
while [ -s "$tmp/queue" ]; do
    read -r name origin < "$tmp/queue"
    sed -i 1d "$tmp/queue"
    grep -qx "$name" "$tmp/seen" && continue
    echo "$name" >> "$tmp/seen"
    load="$availdir/$name.load"
    if [ -f "$top/debian/apache2/$name.load" ]; then
        # this project's own module (libapache2-mod-mcpauth): only what it
        # depends on must come from Debian
        [ $verbose = 0 ] || echo "check-deps: a2enmod $name -> debian/apache2/$name.load (ours)"
        sed -n 's/^#[[:space:]]*Depends:[[:space:]]*//p' "$top/debian/apache2/$name.load" |
            tr ' ,' '\n\n' | grep -v '^$' | sed "s|\$| a2enmod:$name|" >> "$tmp/queue" || true
        continue
    fi
    if [ ! -f "$load" ]; then
        count=$((count + 1))
        users=$(where E "$name")
        problem "a2enmod $name: not installed, no $load (used in ${users:-$origin})$(hint "libapache2-mod-$(echo "$name" | tr _ -)")"
        continue
    fi
    sed -n 's/^#[[:space:]]*Depends:[[:space:]]*//p' "$load" | tr ' ,' '\n\n' | grep -v '^$' |
        sed "s|\$| a2enmod:$name|" >> "$tmp/queue" || true
    sed -n 's/^[[:space:]]*LoadModule[[:space:]]\{1,\}[^[:space:]]\{1,\}[[:space:]]\{1,\}//p' "$load" |
        sed -e 's|.*/||' -e "s|^|A |" -e "s|\$| a2enmod:$name|" >> "$tmp/uses"
done

for so in $(awk '$1 == "A" { print $2 }' "$tmp/uses" | sort -u); do
    count=$((count + 1))
    users=$(where A "$so")
    if [ "$so" = mod_mcpauth.so ]; then
        # ours, built from apache/mod_mcpauth.c with apxs (apache2-dev)
        if grep -qx apache2-dev "$tmp/listed"; then
            [ $verbose = 0 ] || echo "check-deps: Apache $so -> built here with apxs (apache2-dev)"
        else
            problem "Apache $so is built with apxs, from apache2-dev, which scripts/deps.sh does not install (used in $users)"
        fi
    elif [ -e "$amoddir/$so" ]; then
        check_file "Apache $so" "$amoddir/$so" "$users"
    else
        base=${so%.so}
        problem "Apache $so: not installed, no $amoddir/$so (used in $users)$(hint "libapache2-mod-$(echo "${base#mod_}" | tr _ -)")"
    fi
done

if [ "$problems" -gt 0 ]; then
    echo "check-deps: $problems of $count web-server modules are missing or come from packages" \
        "scripts/deps.sh does not install: add them to PKGS there, then run it" >&2
    exit 1
fi
echo "check-deps: all $count web-server modules come from packages scripts/deps.sh installs"
