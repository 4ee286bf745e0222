#!/bin/sh
# Installs the Debian packages mcpauth needs to build, test and run the demo,
# only those missing, non-interactively.  Used by examples/demo.sh,
# tests/run.sh and .ci/run.
set -eu

PKGS="build-essential autoconf automake libtool pkg-config curl ca-certificates \
libfcgi-dev libssl-dev libjson-c-dev libjwt-dev check libcurl4-openssl-dev libsqlite3-dev \
lighttpd apache2 libapache2-mod-fcgid"

missing=""
for p in $PKGS; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$st" in
        *"install ok installed"*) ;;
        *) missing="$missing $p" ;;
    esac
done
# The end-to-end tests run the official MCP SDK: Node.js 18 or newer.
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
command -v openssl >/dev/null 2>&1 || missing="$missing openssl"
# The browser test drives Debian's Chromium (playwright-core, no download).
[ -x /usr/bin/chromium ] || missing="$missing chromium"
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
