#!/bin/sh
# Installs the Debian packages mcpauth needs to build, test and run the demo,
# only those missing, non-interactively.  Used by examples/demo.sh,
# tests/run.sh and .ci/run.
#   scripts/deps.sh          install what is missing
#   scripts/deps.sh --list   print every package this script stands for
# scripts/check-deps.sh (run by tests/run.sh) fails when a web-server module
# the snippets or tests load comes from a package missing here.
set -eu

# Build: toolchain and libraries; apache2-dev (apxs, Apache's headers) for
# the Apache module, mod_mcpauth.  Tests and demo: the web servers with the
# modules the snippets load (lighttpd's mod_openssl is its own package and
# only a Recommends, which --no-install-recommends skips), openssl (test
# certificates, the demo's htpasswd), curl.
PKGS="build-essential autoconf automake libtool pkg-config curl ca-certificates openssl \
libfcgi-dev libssl-dev libjson-c-dev libjwt-dev check libcurl4-openssl-dev libsqlite3-dev \
apache2-dev lighttpd lighttpd-mod-openssl apache2 libapache2-mod-fcgid fail2ban \
clang libclang-rt-14-dev \
libpq-dev libhiredis-dev postgresql redis-server \
debhelper dh-autoreconf dpkg-dev fakeroot lintian"
# Found by command rather than package: NodeSource's nodejs brings its own
# npm (and conflicts with Debian's).  The end-to-end tests run the official
# MCP SDK on Node.js 18 or newer; the browser test drives Debian's Chromium
# (playwright-core, no browser download).
CMD_PKGS="node:nodejs npm:npm /usr/bin/chromium:chromium"

if [ "${1:-}" = --list ]; then
    for p in $PKGS; do echo "$p"; done
    for c in $CMD_PKGS; do echo "${c#*:}"; done
    exit 0
fi

missing=""
for p in $PKGS; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$st" in
        *"install ok installed"*) ;;
        *) missing="$missing $p" ;;
    esac
done
for c in $CMD_PKGS; do
    case "${c%%:*}" in
        /*) [ -x "${c%%:*}" ] || missing="$missing ${c#*:}" ;;
        *) command -v "${c%%:*}" >/dev/null 2>&1 || missing="$missing ${c#*:}" ;;
    esac
done
[ -z "$missing" ] && exit 0

echo "deps: installing:$missing"
SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "deps: run as root or install sudo" >&2; exit 1; }
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# policy-rc.d keeps the freshly installed web servers from starting on port
# 80: mcpauth's demo and tests start their own on loopback ports.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
