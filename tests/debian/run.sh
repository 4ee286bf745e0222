#!/bin/sh
# The Debian packages (issue 18, debian/, doc/debian.md), from build to
# purge, on this machine:
#   1. dpkg-buildpackage -us -uc -b (nocheck) in a copy of the tree (the
#      files git tracks or would track; never build output), twice: the
#      second copy has a higher version, for the upgrade; lintian on both
#   2. apt-get install ./*.deb: the state directory (www-data, 0700) and
#      `mcpauth init` are done, nothing is enabled in Apache, lighttpd or
#      systemd
#   3. the documented enabling commands (a2enmod ..., a2enconf mcpauth,
#      a2enmod mcpauth, lighty-enable-mod mcpauth), then an Apache and a
#      lighttpd started here (own configuration files including only the
#      enabled files, loopback, www-data, stopped by PID) each pass the
#      official MCP SDK client flow (tests/e2e/sdk-flow.mjs): discovery,
#      registration, sign-in, consent, token, tools/call, refresh; and
#      mod_mcpauth answers a location it guards
#   4. upgrade to the second build: the changed conffile, the state, the
#      enabled configuration and a client registered before (its access
#      and refresh tokens) survive (tests/debian/keep-client.mjs); the
#      SQLite schema is migrated (`mcpauth migrate` in the log); with
#      store = PostgreSQL the postinst touches no database and prints the
#      commands; removal keeps its marker out of www-data's /var/lib/mcpauth
#      and follows no link planted there
#   5. apt-get purge (it names what it removed): "nothing left" means
#      every path the packages listed (dpkg -L), /etc/mcpauth,
#      /var/lib/mcpauth, /var/lib/mcpauth-pkg, /var/log/mcpauth, the
#      Apache/lighttpd conf-enabled links and apache2-maintscript-helper
#      state, systemd unit links, and no package installed or left in rc
#      state that was not there before (no user is created: www-data)
# Then the machine is put back as found: Apache/lighttpd modules the
# documented commands enabled are disabled again, and files a source
# install (make install --sysconfdir=/etc) had at the packages' paths,
# moved aside for the test, come back.
#
# Run as root (it installs packages): exits 77 otherwise.
#   MCPAUTH_DEB_PORT  first of three loopback ports (default 29040; 29000-29100)
#   MCPAUTH_DEB_FROM  HEAD: build from the last commit plus the untracked
#                     files (debian/ before it is committed) instead of the
#                     working tree
#   MCPAUTH_DEB_KEEP=1  keep the temporary folder (builds, logs)
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
port=${MCPAUTH_DEB_PORT:-29040}
b1=$((port + 1)) b2=$((port + 2))
mods=/usr/lib/apache2/modules
e2e=$top/tests/e2e

if [ "$(id -u)" != 0 ]; then
    echo "debian: SKIP: must run as root (it installs and purges packages)"
    exit 77
fi
for need in dpkg-buildpackage lintian apt-get /usr/sbin/apache2 /usr/sbin/lighttpd /usr/sbin/a2enmod \
        /usr/sbin/lighty-enable-mod htpasswd curl node git; do
    if ! command -v "$need" >/dev/null; then
        echo "debian: missing $need (scripts/deps.sh installs the packages)" >&2
        exit 1
    fi
done
pkgs="libmcpauth0 libmcpauth-dev mcpauth libapache2-mod-mcpauth"
for p in $pkgs; do
    if dpkg-query -W -f '${db:Status-Status}' "$p" 2>/dev/null | grep -qv '^not-installed$'; then
        echo "debian: package $p is installed (or not purged): this test installs and purges it; purge it first" >&2
        exit 1
    fi
done

for p in $port $b1 $b2; do
    if command -v ss >/dev/null && [ -n "$(ss -Hltn "sport = :$p" 2>/dev/null)" ]; then
        echo "debian: port $p is in use; choose others with MCPAUTH_DEB_PORT (29000-29100)" >&2
        exit 1
    fi
done

tmp=$(mktemp -d /tmp/mcpauth-deb-XXXXXX)
chmod 755 "$tmp"
passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok - $*"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $*"; }
check() { # description command...
    d=$1
    shift
    if "$@" >"$tmp/check.out" 2>&1; then ok "$d"; else not_ok "$d"; sed 's/^/    /' "$tmp/check.out" | tail -20; fi
}

# ---- the machine as found: what this test may change, to put back
snap() { # the enabled links and the state of apache2-maintscript-helper, lighttpd's
    # links, and where the shipped lighttpd file puts sockets and a log
    find /etc/apache2/mods-enabled /etc/apache2/conf-enabled /etc/lighttpd/conf-enabled \
        /var/lib/apache2/module /var/lib/apache2/conf /run/lighttpd /var/log/lighttpd \
        -mindepth 1 2>/dev/null | sort
}
snap > "$tmp/before.snap"
dpkg-query -W -f '${binary:Package} ${db:Status-Abbrev}\n' | sort > "$tmp/before.pkgs"
# a source install with --sysconfdir=/etc (README) put files where the
# packages put theirs: moved aside for the test, back at the end
aside="/etc/mcpauth /var/lib/mcpauth /var/lib/mcpauth-pkg /var/log/mcpauth /etc/apache2/conf-available/mcpauth.conf
/etc/lighttpd/conf-available/50-mcpauth.conf /etc/apache2/conf-enabled/mcpauth.conf
/etc/lighttpd/conf-enabled/50-mcpauth.conf /etc/apache2/mods-available/mcpauth.load
/etc/apache2/mods-available/mcpauth.conf"
mkdir -p "$tmp/aside"
for f in $aside; do
    if [ -e "$f" ] || [ -L "$f" ]; then
        mkdir -p "$tmp/aside$(dirname "$f")"
        mv "$f" "$tmp/aside$f"
        echo "debian: moved $f aside (a source install?); it comes back at the end"
    fi
done

apache_pid='' lighttpd_pid='' backend_pids=''
stop_pid() { # pid
    [ -n "$1" ] || return 0
    kill "$1" 2>/dev/null || true
    i=0
    while kill -0 "$1" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    kill -9 "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
cleanup() {
    set +e
    stop_pid "$apache_pid"
    stop_pid "$lighttpd_pid"
    for p in $backend_pids; do stop_pid "$p"; done
    # the FastCGI programs the servers started, if any outlived them (by
    # PID: only those whose executable is the packaged one)
    for p in $(pgrep -f '^/usr/libexec/mcpauth/mcpauth-' 2>/dev/null); do
        case $(readlink "/proc/$p/exe" 2>/dev/null) in /usr/libexec/mcpauth/*) kill "$p" ;; esac
    done
    left=''
    for p in $pkgs; do
        dpkg-query -W -f '${db:Status-Status}' "$p" 2>/dev/null | grep -qv '^not-installed$' && left="$left $p"
    done
    if [ -n "$left" ]; then
        echo "debian: purging$left (the test stopped before its purge)"
        DEBIAN_FRONTEND=noninteractive apt-get purge -y -q $left >"$tmp/cleanup-purge.log" 2>&1 </dev/null ||
            cat "$tmp/cleanup-purge.log"
    fi
    # what the documented a2enmod/lighty-enable-mod and lighttpd added and
    # nothing removed
    snap > "$tmp/after.snap"
    comm -13 "$tmp/before.snap" "$tmp/after.snap" | sort -r | while IFS= read -r f; do
        if [ -d "$f" ] && [ ! -L "$f" ]; then rmdir "$f" 2>/dev/null; else rm -f "$f"; fi
    done
    snap > "$tmp/after.snap"
    if ! cmp -s "$tmp/before.snap" "$tmp/after.snap"; then
        echo "debian: Apache/lighttpd files differ from before the test:"
        diff "$tmp/before.snap" "$tmp/after.snap" | sed 's/^/    /'
    fi
    # whatever is at these paths now came from the test (what was there
    # before was moved aside): a failed purge's leftovers go, then the
    # source install's files come back where they were
    for f in $aside; do
        rm -rf "$f"
        if [ -e "$tmp/aside$f" ] || [ -L "$tmp/aside$f" ]; then
            mkdir -p "$(dirname "$f")"
            mv "$tmp/aside$f" "$f"
        fi
    done
    if [ "${MCPAUTH_DEB_KEEP:-}" = 1 ]; then echo "debian: kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# ---- 1. build, twice
copy_tree() { # dir
    mkdir -p "$1"
    if [ "${MCPAUTH_DEB_FROM:-}" = HEAD ]; then
        git -C "$top" archive HEAD | tar -xf - -C "$1"
        git -C "$top" ls-files -o --exclude-standard > "$tmp/list"
    else
        git -C "$top" ls-files -co --exclude-standard > "$tmp/list"
    fi
    (cd "$top" && while IFS= read -r f; do [ -f "$f" ] && printf '%s\n' "$f"; done < "$tmp/list" |
        tar -cf - -T -) | tar -xf - -C "$1"
}
build() { # name
    copy_tree "$tmp/$1/src"
    if [ "$1" = v2 ]; then
        ver=$(cd "$tmp/$1/src" && dpkg-parsechangelog -S Version)
        { printf 'mcpauth (%s+upgradetest1) unstable; urgency=medium\n\n  * Rebuilt by tests/debian/run.sh to test upgrades.\n\n' "$ver"
          printf ' -- mcpauth tests <tests@users.noreply.r-seed-2bfe0e5e.example>  %s\n\n' "$(date -R)"
          cat "$tmp/$1/src/debian/changelog"; } > "$tmp/changelog" && mv "$tmp/changelog" "$tmp/$1/src/debian/changelog"
    fi
    (cd "$tmp/$1/src" && DEB_BUILD_OPTIONS="nocheck parallel=2" dpkg-buildpackage -us -uc -b) \
        >"$tmp/$1/build.log" 2>&1
}
t0=$(date +%s)
for v in v1 v2; do
    if build $v; then
        ok "$v: dpkg-buildpackage -us -uc -b from a clean copy ($(cd "$tmp/$v/src" && dpkg-parsechangelog -S Version))"
    else
        tail -30 "$tmp/$v/build.log" | sed 's/^/    /'
        not_ok "$v: dpkg-buildpackage"
        echo "debian: $passed passed, $failed failed"
        exit 1
    fi
done
echo "    (builds: $(($(date +%s) - t0)) s)"
if git -C "$top" status --porcelain --ignored debian 2>/dev/null | grep -q '^!!'; then
    not_ok "the build wrote nothing into the repository's debian/"
else
    ok "the build wrote nothing into the repository's debian/"
fi
lintian --pedantic "$tmp"/v1/*.changes >"$tmp/lintian.log" 2>&1
if grep -q '^[EW]:' "$tmp/lintian.log"; then
    not_ok "lintian: no error or warning (overrides in debian/*.lintian-overrides)"
    grep '^[EW]:' "$tmp/lintian.log" | sed 's/^/    /'
else
    ok "lintian: no error or warning (overrides in debian/*.lintian-overrides)"
fi
debs() { for p in $pkgs; do ls "$tmp/$1/${p}_"*.deb; done; }

# ---- Node.js and the SDK, as tests/e2e/run.sh gets them
(
    cd "$e2e" || exit 1
    stamp=node_modules/.mcpauth-npm-ci
    want=$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)-abi$(node -p process.versions.modules)
    flock 9
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        npm ci --no-audit --no-fund --loglevel=error
        echo "$want" > "$stamp"
    fi
) 9>"${TMPDIR:-/tmp}/mcpauth-e2e-npm.lock"

# ---- 2. install
apt_get() { DEBIAN_FRONTEND=noninteractive apt-get -y -q --no-install-recommends "$@" </dev/null; }
# shellcheck disable=SC2046
if apt_get install $(debs v1) >"$tmp/install.log" 2>&1; then
    ok "apt-get install ./libmcpauth0 ./libmcpauth-dev ./mcpauth ./libapache2-mod-mcpauth"
else
    sed 's/^/    /' "$tmp/install.log" | tail -30
    not_ok "apt-get install"
    exit 1
fi
grep -A12 '^mcpauth: installed' "$tmp/install.log" | sed 's/^/    /'
for p in $pkgs; do dpkg -L "$p" >> "$tmp/dpkg-L"; done
# mcpauth-gate, -proxy ... use the packaged library, not one under /usr/local
lib=$(ldd /usr/libexec/mcpauth/mcpauth-proxy | sed -n 's/^[[:space:]]*libmcpauth\.so\.0 => \([^ ]*\).*/\1/p')
if [ -n "$lib" ] && [ "$(readlink -f "$lib")" = "$(readlink -f "$(dpkg -L libmcpauth0 | grep '/libmcpauth\.so\.0$')")" ]; then
    ok "the packaged programs load the packaged libmcpauth.so.0"
elif [ -n "$lib" ] && [ "${lib#/usr/local/}" != "$lib" ]; then
    # ld.so searches /usr/local/lib first on Debian: not the package's doing
    ok "the packaged programs load the packaged libmcpauth.so.0 # SKIP a source install's $lib comes first in ld.so's search order (doc/debian.md)"
else
    not_ok "the packaged programs load another libmcpauth: $(ldd /usr/libexec/mcpauth/mcpauth-proxy | grep libmcpauth)"
fi
st=$(stat -c '%U:%G %a' /var/lib/mcpauth 2>&1)
if [ "$st" = "www-data:www-data 700" ]; then ok "/var/lib/mcpauth: www-data, 0700"
else not_ok "/var/lib/mcpauth: $st"; fi
if [ -f /var/lib/mcpauth/mcpauth.db ] && [ -f /var/lib/mcpauth/secret ] &&
   [ -n "$(find /var/lib/mcpauth/keys -name '*.pem' 2>/dev/null)" ]; then
    ok "postinst ran mcpauth init (database, secret, key in /var/lib/mcpauth)"
else
    not_ok "postinst ran mcpauth init: $(ls -la /var/lib/mcpauth 2>&1)"
fi
enabled=''
[ -e /etc/apache2/conf-enabled/mcpauth.conf ] && enabled="$enabled apache-conf"
[ -e /etc/apache2/mods-enabled/mcpauth.load ] && enabled="$enabled apache-mod"
[ -e /etc/lighttpd/conf-enabled/50-mcpauth.conf ] && enabled="$enabled lighttpd"
ls /etc/systemd/system/*/mcpauth-* >/dev/null 2>&1 && enabled="$enabled systemd"
if [ -z "$enabled" ]; then ok "installation enabled nothing (Apache conf and module, lighttpd, systemd units)"
else not_ok "installation enabled:$enabled"; fi
if [ -f /lib/systemd/system/mcpauth-proxy.service ] && [ -f /lib/systemd/system/mcpauth-gate.service ] &&
   grep -q '^ExecStart=/usr/libexec/mcpauth/mcpauth-proxy --listen' /lib/systemd/system/mcpauth-proxy.service; then
    ok "systemd units for the standalone FastCGI servers are installed"
else
    not_ok "systemd units"
fi

# ---- 3. configure as an admin would, enable with the documented commands
conf=/etc/mcpauth/mcpauth.conf
sed -i -e "s|127.0.0.1:8080|127.0.0.1:$port|g" -e "s|127.0.0.1:8090|127.0.0.1:$b1|" \
    -e "s|127.0.0.1:8091|127.0.0.1:$b2|" -e 's|^log = syslog$|log = file:/var/log/mcpauth/mcpauth.log|' "$conf"
install -d -o www-data -g adm -m 2750 /var/log/mcpauth
check "mcpauth init --owner www-data after editing $conf" /usr/sbin/mcpauth init --owner www-data
check "the proxy accepts the configuration as www-data" \
    runuser -u www-data -- /usr/libexec/mcpauth/mcpauth-proxy --check
# init --owner runs as root (the postinst does) in a directory www-data
# owns: a keys/ that www-data made a symbolic link to root's files is not
# followed (root's key file keeps its owner)
sd="$tmp/planted"
install -d -m 0755 "$sd" && install -d -o www-data -m 0700 "$sd/state" &&
    install -d -m 0700 "$sd/rootkeys" && : > "$sd/rootkeys/root.pem"
sed "s|^state_dir *=.*|state_dir = $sd/state|" "$conf" > "$sd/mcpauth.conf"
runuser -u www-data -- ln -s "$sd/rootkeys" "$sd/state/keys"
/usr/sbin/mcpauth --config "$sd/mcpauth.conf" init --owner www-data >"$tmp/check.out" 2>&1
if [ "$(stat -c %U "$sd/rootkeys/root.pem")" = root ] && grep -q "^state_dir = $sd/state" "$sd/mcpauth.conf"; then
    ok "init --owner does not follow a keys/ link www-data planted"
else
    not_ok "init --owner changed the owner of a file behind a planted keys/ link: $(stat -c %U "$sd/rootkeys/root.pem")"
fi
pw=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
htpasswd -cbB /etc/mcpauth/htpasswd demo "$pw" >/dev/null 2>&1
chgrp www-data /etc/mcpauth/htpasswd && chmod 640 /etc/mcpauth/htpasswd
check "a2enmod fcgid alias auth_basic authn_file authz_user headers && a2enconf mcpauth" \
    sh -c 'a2enmod fcgid alias auth_basic authn_file authz_user headers && a2enconf mcpauth'
check "a2enmod mcpauth" a2enmod mcpauth
check "lighty-enable-mod mcpauth" lighty-enable-mod mcpauth

for p in $b1 $b2; do
    setsid "$tmp/v1/src/examples/mcp-server" --port "$p" --path /mcp >"$tmp/backend-$p.log" 2>&1 &
    backend_pids="$backend_pids $!"
done

wait_http() { # pid
    i=0
    until curl -s -o /dev/null "http://127.0.0.1:$port/"; do
        i=$((i + 1))
        if [ $i -gt 100 ] || ! kill -0 "$1" 2>/dev/null; then return 1; fi
        sleep 0.1
    done
}
# Apache: Debian's layout in miniature.  The base modules are loaded here;
# everything mcpauth needs comes from the links the commands above made.
start_apache() {
    a=$tmp/apache
    mkdir -p "$a/run/fcgid"
    chown www-data: "$a/run/fcgid"
    {
        echo "ServerRoot \"$a\""
        echo "Listen 127.0.0.1:$port"
        echo "ServerName 127.0.0.1"
        echo "PidFile \"$a/apache.pid\""
        echo "ErrorLog \"$a/error.log\""
        echo "LogLevel warn"
        echo "DefaultRuntimeDir \"$a/run\""
        echo "Mutex file:$a/run default"
        echo "User www-data"
        echo "Group www-data"
        echo "DocumentRoot \"$a\""
        echo "TypesConfig /etc/mime.types"
        for m in mpm_event authn_core authz_core authz_host mime dir; do
            echo "LoadModule ${m}_module $mods/mod_$m.so"
        done
        for m in fcgid alias auth_basic authn_file authz_user headers mcpauth; do
            echo "Include /etc/apache2/mods-enabled/$m.load"
            echo "IncludeOptional /etc/apache2/mods-enabled/$m.conf"
        done
        echo "FcgidIPCDir \"$a/run/fcgid\""
        echo "FcgidProcessTableFile \"$a/run/fcgid-shm\""
        echo "Include /etc/apache2/conf-enabled/mcpauth.conf"
        # mod_mcpauth guards the second resource's path, as mod_mcpauth(8)
        # shows (not the first's: the gate removes the Authorization header,
        # so the proxy behind it would see no token)
        echo "Define MCPAUTH_GATE_LOCATION /mcp/github"
        echo "Include /usr/share/mcpauth/apache/mcpauth-module.conf"
    } > "$a/apache2.conf"
    : > "$a/error.log"
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin setsid /usr/sbin/apache2 -f "$a/apache2.conf" -DFOREGROUND \
        >"$a/stdout.log" 2>&1 &
    apache_pid=$!
    if wait_http "$apache_pid"; then return 0; fi
    cat "$a/stdout.log" "$a/error.log" | tail -20 | sed 's/^/    /'
    stop_pid "$apache_pid"
    apache_pid=''
    return 1
}
# lighttpd: Debian's lighttpd.conf in miniature, with the enabled files
# included as Debian's does.
start_lighttpd() {
    l=$tmp/lighttpd
    mkdir -p "$l/htdocs"
    chown www-data: "$l"
    cat > "$l/lighttpd.conf" <<CONF
server.document-root = "$l/htdocs"
server.bind = "127.0.0.1"
server.port = $port
server.username = "www-data"
server.groupname = "www-data"
server.pid-file = "$l/lighttpd.pid"
server.errorlog = "$l/error.log"
server.modules = ( "mod_access", "mod_alias" )
include "/etc/lighttpd/conf-enabled/*.conf"
CONF
    : > "$l/error.log"
    chown www-data: "$l/error.log"
    setsid /usr/sbin/lighttpd -D -f "$l/lighttpd.conf" >"$l/stdout.log" 2>&1 &
    lighttpd_pid=$!
    if wait_http "$lighttpd_pid"; then return 0; fi
    cat "$l/stdout.log" "$l/error.log" | tail -20 | sed 's/^/    /'
    stop_pid "$lighttpd_pid"
    lighttpd_pid=''
    return 1
}

mcp=http://127.0.0.1:$port/mcp/files
sdk_flow() { # server
    if (cd "$e2e" && node sdk-flow.mjs "$mcp" demo "$pw") >"$tmp/sdk-$1.log" 2>&1; then
        ok "$1: MCP SDK client: discovery, registration, sign-in, consent, token, tools/call, refresh"
    else
        not_ok "$1: MCP SDK client flow"
        sed 's/^/    /' "$tmp/sdk-$1.log" | grep -v '^    ok' | tail -20
    fi
}
challenge() { # server
    hdr=$(curl -s -o /dev/null -D - "$mcp" | tr -d '\r')
    if echo "$hdr" | grep -q '^HTTP/1.1 401' &&
       echo "$hdr" | grep -qi "^www-authenticate: Bearer resource_metadata=\"http://127.0.0.1:$port/.well-known/oauth-protected-resource/mcp/files\""; then
        ok "$1: 401 with the resource_metadata challenge"
    else
        not_ok "$1: 401 challenge: $hdr"
    fi
}
# mod_mcpauth (Apache only) started, and it, not the proxy, refuses a bad
# token at the location it guards: the refusal is its log line.
gate_module() {
    mlog=/var/log/mcpauth/mcpauth.log
    n0=$(grep -c 'mod_mcpauth.*security=1' "$mlog" 2>/dev/null || true)
    hdr=$(curl -s -o /dev/null -D - -H 'Authorization: Bearer x.y.z' "http://127.0.0.1:$port/mcp/github" | tr -d '\r')
    n1=$(grep -c 'mod_mcpauth.*security=1' "$mlog" 2>/dev/null || true)
    if echo "$hdr" | grep -qi '^www-authenticate: Bearer error="invalid_token"' && [ "${n1:-0}" -gt "${n0:-0}" ] &&
       grep -q 'mod_mcpauth.*event=start.*mode=apache-module' "$tmp/apache/error.log"; then
        ok "apache: mod_mcpauth (a2enmod mcpauth, McpauthGate On) refuses a bad token and logs it"
    else
        not_ok "apache: mod_mcpauth: $hdr (mod_mcpauth refusals logged: $n0 -> $n1)"
        tail -5 "$tmp/apache/error.log" "$mlog" | sed 's/^/    /'
    fi
}

if start_apache; then
    ok "apache: starts with the enabled mcpauth conf and module (www-data, port $port)"
    challenge apache
    gate_module
    sdk_flow apache
    if (cd "$e2e" && node "$here/keep-client.mjs" save "$tmp/client.json" "$mcp" demo "$pw") \
            >"$tmp/keep-save.log" 2>&1; then
        ok "apache: a client registers and gets tokens before the upgrade"
    else
        not_ok "apache: a client registers before the upgrade"
        sed 's/^/    /' "$tmp/keep-save.log" | tail -10
    fi
    stop_pid "$apache_pid"
    apache_pid=''
else
    not_ok "apache: starts with the enabled mcpauth conf and module"
fi
if start_lighttpd; then
    ok "lighttpd: starts with lighty-enable-mod mcpauth (www-data, port $port)"
    challenge lighttpd
    sdk_flow lighttpd
    stop_pid "$lighttpd_pid"
    lighttpd_pid=''
else
    not_ok "lighttpd: starts with lighty-enable-mod mcpauth"
fi

# ---- 4. upgrade
sum_conf=$(md5sum "$conf" | cut -d' ' -f1)
state() { # names, owners, modes; the contents of the secret and keys
    find /var/lib/mcpauth -mindepth 1 -printf '%P %u %g %m\n' | sort
    find /var/lib/mcpauth -type f \( -name secret -o -name '*.pem' \) -exec md5sum {} + | sort
}
state > "$tmp/state-before"
/usr/sbin/mcpauth clients list > "$tmp/clients-before" 2>&1
v2=$(cd "$tmp/v2/src" && dpkg-parsechangelog -S Version)
# shellcheck disable=SC2046
if apt_get install $(debs v2) >"$tmp/upgrade.log" 2>&1 &&
   [ "$(dpkg-query -W -f '${Version}' mcpauth)" = "$v2" ] &&
   [ "$(dpkg-query -W -f '${Version}' libapache2-mod-mcpauth)" = "$v2" ]; then
    ok "upgrade to $v2 with apt-get install (no question asked)"
else
    sed 's/^/    /' "$tmp/upgrade.log" | tail -20
    not_ok "upgrade to $v2"
fi
if grep -q '^database schema is up to date\|^upgraded the database schema' "$tmp/upgrade.log"; then
    ok "upgrade: the postinst ran mcpauth migrate on the SQLite database"
else
    not_ok "upgrade: no mcpauth migrate in the upgrade's output"
    grep -i 'mcpauth' "$tmp/upgrade.log" | sed 's/^/    /' | tail -10
fi
if [ "$(md5sum "$conf" | cut -d' ' -f1)" = "$sum_conf" ] && [ ! -e "$conf.dpkg-new" ] && [ ! -e "$conf.dpkg-dist" ]; then
    ok "upgrade: the changed conffile $conf is kept"
else
    not_ok "upgrade: $conf changed"
fi
state > "$tmp/state-after"
/usr/sbin/mcpauth clients list > "$tmp/clients-after" 2>&1
if cmp -s "$tmp/state-before" "$tmp/state-after" && cmp -s "$tmp/clients-before" "$tmp/clients-after"; then
    ok "upgrade: the state (files, owners, modes, secret and keys, registered clients) is kept"
else
    not_ok "upgrade: the state changed"
    diff "$tmp/state-before" "$tmp/state-after" | sed 's/^/    /'
    diff "$tmp/clients-before" "$tmp/clients-after" | sed 's/^/    /'
fi
if [ -L /etc/apache2/conf-enabled/mcpauth.conf ] && [ -L /etc/apache2/mods-enabled/mcpauth.load ] &&
   [ -L /etc/lighttpd/conf-enabled/50-mcpauth.conf ]; then
    ok "upgrade: what the admin enabled stays enabled"
else
    not_ok "upgrade: enabled links lost"
fi
if start_apache; then
    if (cd "$e2e" && node "$here/keep-client.mjs" reuse "$tmp/client.json" "$mcp" demo "$pw") \
            >"$tmp/keep-reuse.log" 2>&1; then
        ok "upgrade: the client registered before works (its access token, then its refresh token)"
    else
        not_ok "upgrade: the client registered before"
        sed 's/^/    /' "$tmp/keep-reuse.log" | tail -10
    fi
    gate_module
    stop_pid "$apache_pid"
    apache_pid=''
else
    not_ok "apache starts after the upgrade"
fi

# ---- store = PostgreSQL (shared): configuring the package touches no
# database (the address is a closed port: any attempt would print a
# connection error) and prints the migrate and restart commands
cp -p "$conf" "$tmp/conf.saved"
sed -i '/^[[:space:]]*\[authorization_server/a store = postgresql://mcpauth@127.0.0.1:9/mcpauth' "$conf"
state > "$tmp/state-pg-before"
if grep -q '^store = postgresql://' "$conf" &&
   DEBIAN_FRONTEND=noninteractive dpkg-reconfigure mcpauth >"$tmp/reconfigure-pg.log" 2>&1 </dev/null &&
   grep -q '^    mcpauth migrate$' "$tmp/reconfigure-pg.log" && grep -q 'systemctl restart' "$tmp/reconfigure-pg.log" &&
   ! grep -qi 'postgresql://\|connect\|opened\|failed\|up to date' "$tmp/reconfigure-pg.log"; then
    state > "$tmp/state-pg-after"
    if cmp -s "$tmp/state-pg-before" "$tmp/state-pg-after"; then
        ok "store = PostgreSQL: the postinst touches no database (nor the state) and prints mcpauth migrate, then restart"
    else
        not_ok "store = PostgreSQL: the postinst changed the state"
        diff "$tmp/state-pg-before" "$tmp/state-pg-after" | sed 's/^/    /'
    fi
else
    not_ok "store = PostgreSQL: the postinst's output"
    sed 's/^/    /' "$tmp/reconfigure-pg.log" | tail -15
fi
cp -p "$tmp/conf.saved" "$conf"

# ---- removal without purge, and back: the configuration the removed
# programs need is disabled (a server would not start with it), the
# conffiles and the state stay; reinstalling enables again what was
links_on() {
    [ -L /etc/apache2/conf-enabled/mcpauth.conf ] && [ -L /etc/apache2/mods-enabled/mcpauth.load ] &&
        [ -L /etc/lighttpd/conf-enabled/50-mcpauth.conf ]
}
links_off() {
    [ ! -e /etc/apache2/conf-enabled/mcpauth.conf ] && [ ! -e /etc/apache2/mods-enabled/mcpauth.load ] &&
        [ ! -L /etc/lighttpd/conf-enabled/50-mcpauth.conf ]
}
# www-data (a compromised web application) plants a link where the
# package once kept its marker: root must neither follow it on removal nor
# trust a marker there on reinstallation
echo victim > "$tmp/victim"
planted=/var/lib/mcpauth/.lighttpd-disabled-on-remove
runuser -u www-data -- ln -s "$tmp/victim" "$planted"
if apt_get remove mcpauth libapache2-mod-mcpauth >"$tmp/remove.log" 2>&1 && links_off &&
   [ "$(md5sum "$conf" | cut -d' ' -f1)" = "$sum_conf" ] && [ -f /var/lib/mcpauth/mcpauth.db ]; then
    ok "apt-get remove: Apache conf and module and lighttpd disabled; conffiles and state kept"
else
    not_ok "apt-get remove"
    sed 's/^/    /' "$tmp/remove.log" | tail -15
    ls -la /etc/apache2/conf-enabled /etc/apache2/mods-enabled/mcpauth* /etc/lighttpd/conf-enabled 2>&1 | sed 's/^/    /'
fi
if [ "$(cat "$tmp/victim")" = victim ] && [ -L "$planted" ] &&
   [ -z "$(find /var/lib/mcpauth -name '*disabled-on-remove*' ! -path "$planted")" ] &&
   [ "$(stat -c '%U %a' /var/lib/mcpauth-pkg 2>&1)" = "root 755" ] &&
   [ -f /var/lib/mcpauth-pkg/lighttpd-disabled-on-remove ]; then
    ok "apt-get remove: the lighttpd marker is in root's /var/lib/mcpauth-pkg; a link www-data planted in /var/lib/mcpauth is not followed"
else
    not_ok "apt-get remove: marker or planted link: victim=$(head -c 40 "$tmp/victim")"
    ls -la /var/lib/mcpauth /var/lib/mcpauth-pkg 2>&1 | sed 's/^/    /'
fi
rm -f "$planted"
# shellcheck disable=SC2046
if apt_get install $(debs v2) >"$tmp/reinstall.log" 2>&1 && links_on && [ ! -e /var/lib/mcpauth-pkg ]; then
    ok "reinstalling enables again what the removal disabled (and drops its marker)"
else
    not_ok "reinstall after remove"
    sed 's/^/    /' "$tmp/reinstall.log" | tail -15
fi

# ---- 5. purge
cp /var/log/mcpauth/mcpauth.log "$tmp/mcpauth.log" 2>/dev/null
sort -u "$tmp/dpkg-L" > "$tmp/dpkg-L.sorted"
if apt_get purge $pkgs >"$tmp/purge.log" 2>&1; then
    ok "apt-get purge $pkgs"
else
    sed 's/^/    /' "$tmp/purge.log" | tail -20
    not_ok "apt-get purge"
fi
if grep -q '^mcpauth: purge removed /var/lib/mcpauth /var/log/mcpauth /etc/mcpauth/htpasswd ' "$tmp/purge.log" &&
   grep -q 'PostgreSQL store.*Redis.*keep their data' "$tmp/purge.log"; then
    ok "purge names what it removed and that a PostgreSQL store and Redis keep their data"
else
    not_ok "purge's note"
    grep '^mcpauth' "$tmp/purge.log" | sed 's/^/    /'
fi
left=''
while IFS= read -r f; do
    # directories other packages share stay (/usr/share/doc, /etc/apache2, ...)
    if [ -d "$f" ]; then
        case $f in /etc/mcpauth|/usr/libexec/mcpauth|/usr/share/mcpauth|/usr/include/mcpauth|/usr/share/doc/*mcpauth*)
            left="$left $f" ;;
        esac
    elif [ -e "$f" ] || [ -L "$f" ]; then
        left="$left $f"
    fi
done < "$tmp/dpkg-L.sorted"
for f in /etc/mcpauth /var/lib/mcpauth /var/lib/mcpauth-pkg /var/log/mcpauth /etc/apache2/conf-enabled/mcpauth.conf \
        /etc/apache2/mods-enabled/mcpauth.load /etc/apache2/mods-enabled/mcpauth.conf \
        /etc/lighttpd/conf-enabled/50-mcpauth.conf; do
    if [ -e "$f" ] || [ -L "$f" ]; then left="$left $f"; fi
done
left="$left $(find /var/lib/apache2 /etc/systemd /var/lib/systemd -name '*mcpauth*' 2>/dev/null | tr '\n' ' ')"
if [ -z "$(echo "$left" | tr -d ' ')" ]; then
    ok "purge left nothing (packaged paths, /etc/mcpauth, /var/lib/mcpauth(-pkg), /var/log/mcpauth, enabled links, helper state, units)"
else
    not_ok "purge left:$left"
fi
dpkg-query -W -f '${binary:Package} ${db:Status-Abbrev}\n' | sort > "$tmp/after.pkgs"
if cmp -s "$tmp/before.pkgs" "$tmp/after.pkgs"; then
    ok "the installed packages are those of before (nothing pulled in, nothing left in rc state)"
else
    not_ok "installed packages differ from before"
    diff "$tmp/before.pkgs" "$tmp/after.pkgs" | sed 's/^/    /'
fi
if id mcpauth >/dev/null 2>&1; then not_ok "no mcpauth user exists"; else ok "no user was created (the programs run as www-data)"; fi

echo "debian: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
