#!/bin/sh
# Several web servers as one (issue 17): three hosts behind an imaginary
# load balancer, on loopback, serving the same mcpauth configuration:
#   host A  lighttpd   127.0.0.1:PORT_A
#   host B  lighttpd   127.0.0.1:PORT_B
#   host C  Apache     127.0.0.1:PORT_C
# each with mcpauth-metadata, mcpauth-as (/oauth2, Basic sign-in at
# /oauth2/authorize) and mcpauth-proxy (/mcp) from the build, in front of
# one example MCP server (examples/mcp-server).
#
# One issuer, one resource URL.  Behind a balancer every host answers for
# the same name; here that name is host A's address, http://127.0.0.1:PORT_A
# (the issuer, and the resources ISSUER/mcp/files and ISSUER/mcp/limited).
# Every request goes to that URL and is steered to the host under test with
# curl --connect-to, so each host sees the canonical Host header and URL, as
# behind a balancer.  The one place this differs from a real balancer: the
# proxies fetch the AS's JWK set from the issuer URL, which is host A
# (behind a balancer they would reach any host; the set is the same).
#
# Modes, both run by default (MULTIHOST_MODES="sqlite engines"):
#   sqlite   store = sqlite, shared_state = shm: the hosts share one
#            state_dir and one runtime_dir, as they are on one machine;
#            scenarios 1-5.
#   engines  store = PostgreSQL, shared_state = Redis (private servers from
#            tests/support/engines.sh): each host has its own state_dir and
#            runtime_dir, so they can only share through the engines;
#            `mcpauth init` once, from host A's configuration; scenarios 1-6.
# Scenarios (one "ok - MODE: ..." or "not ok - MODE: ..." line per check):
#   1 register on A, authorize on B (the consent form submitted to C),
#     redeem on A; the code replayed on B is invalid_grant and revokes the
#     grant (its refresh token refused on C, its access token by A's and C's
#     proxies within 1 s); a new grant rotates on B, the old refresh token
#     replayed on A is reuse and revokes the family (likewise on B and C);
#   2 a rate limit (resource "limited": rate_limit 1/s, burst 3) used up
#     through A holds on B, and another caller still passes;
#   3 a session initialized on A by subject X refuses subject Y on B and C
#     (404, session_hijack_refused logged on B) and serves X on B;
#   4 an access token validated (so cached) on B and C, revoked at A
#     (RFC 7009), is refused by B's and C's proxies within 1 s;
#   5 `mcpauth rotate-key` with host B's configuration (`mcpauth keys` with
#     C's names the new key): A, B and C publish the same JWK set with it,
#     A signs new tokens with it, A's and C's proxies accept them.  An AS
#     process reloads its keys at most every 30 s, so the rotation is done
#     first and checked last (35 s allowed);
#   6 (engines) PostgreSQL stopped: code exchange and refresh answer 503
#     temporarily_unavailable with Retry-After, an access token issued
#     before still opens a proxy; after PostgreSQL's restart the same code
#     is redeemed (it was not used up) and the refresh works, mcpauth not
#     restarted.  Redis stopped: rate limits fail open (6 requests over a
#     burst of 3 pass) with a shared_state log line, a request carrying a
#     session gets 503 with Retry-After; Redis started again: within 10 s
#     sessions are bound and enforced across hosts and the rate limit holds
#     across hosts again.
# About 70 s in all (two modes).
# Tokens of the built-in AS come from its own flow; the rate-limit and
# session scenarios use tokens of a local issuer signed here (RS256,
# [issuer local] with jwks_file), so that two subjects are at hand and no
# revocation lookup is involved.
#
#   BUILD_DIR=/path/to/build tests/multihost/run.sh
# Environment: BUILD_DIR (default ./_build), MULTIHOST_MODES, MULTIHOST_KEEP=1
# keeps the scratch directory (also kept when a check fails).  Ports: free
# ones from 20000-31999 (below the kernel's ephemeral ports, which an
# outgoing connection may hold), starting at a place that depends on this
# script's PID so two runs on one machine do not meet; each checked before use.  As root the
# web servers and the programs run as www-data, PostgreSQL as postgres.
# Needs lighttpd, apache2 (mod_fcgid), PostgreSQL, redis-server, curl,
# openssl, perl.  Ends with "multihost: N passed, M failed"; exit 1 on any
# failure.  Every process started is stopped by its PID, also on failure.
set -u

SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD_DIR=${BUILD_DIR:-$SRC/_build}
case $BUILD_DIR in /*) ;; *) BUILD_DIR=$(pwd)/$BUILD_DIR ;; esac
MODES=${MULTIHOST_MODES:-sqlite engines}
LIGHTTPD=${LIGHTTPD:-$(command -v lighttpd || echo /usr/sbin/lighttpd)}
APACHE2=${APACHE2:-$(command -v apache2 || echo /usr/sbin/apache2)}
APACHE_MODULES_DIR=${APACHE_MODULES_DIR:-/usr/lib/apache2/modules}
PG_PORT_WANT=0 REDIS_PORT_WANT=0 # picked in run_mode
NEXT_PORT=$((20000 + $$ % 1200 * 10)) # below 32768: not the ephemeral range
REDIRECT=http://127.0.0.1/callback
PASS=0
FAIL=0
MODE=setup
T0=$(date +%s)

. "$SRC/tests/support/engines.sh"

[ -x "$BUILD_DIR/fcgi/.libs/mcpauth-as" ] && [ -x "$BUILD_DIR/tools/mcpauth" ] &&
    [ -x "$BUILD_DIR/examples/mcp-server" ] || {
    echo "multihost: build first: BUILD_DIR=$BUILD_DIR has no fcgi/.libs/mcpauth-as, tools/mcpauth or examples/mcp-server" >&2
    exit 2
}

ROOT=0
[ "$(id -u)" = 0 ] && ROOT=1
TOP=$(mktemp -d "${TMPDIR:-/tmp}/mcpauth-multihost-XXXXXX") || exit 2
chmod 755 "$TOP" # the web servers' user and postgres walk through it

# ------------------------------------------------------------ processes

PIDS= # started here, stopped by PID

stop_pid() { # pid: TERM, up to 10 s, then KILL
    kill "$1" 2>/dev/null || return 0
    _i=0
    while kill -0 "$1" 2>/dev/null && [ $_i -lt 100 ]; do
        sleep 0.1
        _i=$((_i + 1))
    done
    kill -9 "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    return 0
}

# mcpauth programs the web servers started for this run (their
# MCPAUTH_CONFIG is under TOP) and left behind: stopped by PID
stop_leftovers() {
    for _e in /proc/[0-9]*/environ; do
        _p=${_e#/proc/}
        _p=${_p%/environ}
        { tr '\0' '\n' <"$_e"; } 2>/dev/null | grep -q "^MCPAUTH_CONFIG=$TOP/" || continue
        kill -9 "$_p" 2>/dev/null
    done
}

cleanup() {
    _rc=$?
    trap - EXIT INT TERM HUP
    for _p in $PIDS; do stop_pid "$_p"; done
    stop_leftovers
    engines_redis_stop 2>/dev/null
    engines_pg_stop 2>/dev/null
    if [ "${MULTIHOST_KEEP:-0}" = 1 ] || [ "$FAIL" -gt 0 ] || [ "$_rc" -ne 0 ]; then
        echo "multihost: scratch directory kept: $TOP"
    else
        rm -rf "$TOP"
    fi
    exit "$_rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# ------------------------------------------------------------- checks

ok() {
    PASS=$((PASS + 1))
    echo "ok - $MODE: $*"
}
nok() {
    FAIL=$((FAIL + 1))
    echo "not ok - $MODE: $*"
}
# check DESCRIPTION COMMAND...: ok when the command succeeds
check() {
    _d=$1
    shift
    if "$@"; then ok "$_d"; else nok "$_d"; fi
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# --------------------------------------------------------------- HTTP

W=$TOP/http # last answer: body, hdr

# req HOST METHOD PATH [curl options...]: METHOD ISSUER/PATH sent to host
# HOST (A, B or C) under the canonical URL; ST is the status (000: none),
# the body is in $W.body, the header block in $W.hdr.
req() {
    eval "_port=\$PORT_$1"
    _m=$2
    _path=$3
    shift 3
    ST=$(curl -s -o "$W.body" -D "$W.hdr" -w '%{http_code}' --noproxy '*' --max-time 20 \
        --connect-to "127.0.0.1:$PORT_A:127.0.0.1:$_port" -X "$_m" "$@" "$ISS$_path") || ST=000
}
body() { cat "$W.body"; }
# hdr NAME: the value of a header of the last answer
hdr() { tr -d '\r' <"$W.hdr" | sed -n "s/^$1:[[:space:]]*//Ip" | head -1; }
# jstr KEY: a string member of the last answer's JSON
jstr() { sed -n 's/.*"'"$1"'"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$W.body" | head -1; }
has() { grep -q -- "$1" "$W.body"; }
why() { printf 'status %s: %s' "$ST" "$(head -c 300 "$W.body" | tr '\n' ' ')"; }

b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
b64url_d() { # decode, padding restored
    _s=$(tr '_-' '/+')
    case $((${#_s} % 4)) in 2) _s="$_s==" ;; 3) _s="$_s=" ;; esac
    printf '%s' "$_s" | base64 -d 2>/dev/null
}
jwt_kid() { printf '%s' "$1" | cut -d. -f1 | b64url_d | sed -n 's/.*"kid"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p'; }

# ---------------------------------------------------- the local issuer

# Tokens of ISSUER/local, RS256, signed with $TOP/local.pem
make_local_issuer() {
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$TOP/local.pem" 2>/dev/null ||
        return 1
    _n=$(openssl rsa -in "$TOP/local.pem" -noout -modulus | sed 's/^Modulus=//' |
        perl -ne 'chomp; print pack("H*", $_)' | b64url)
    printf '{"keys":[{"kty":"RSA","kid":"mh1","use":"sig","alg":"RS256","n":"%s","e":"AQAB"}]}\n' \
        "$_n" >"$TOP/jwks.json"
    chmod 644 "$TOP/jwks.json" "$TOP/local.pem"
}

MINTED=0
mint() { # subject resource-path: a token for ISSUER/mcp/PATH
    MINTED=$((MINTED + 1))
    _now=$(date +%s)
    _h=$(printf '{"alg":"RS256","typ":"JWT","kid":"mh1"}' | b64url)
    _p=$(printf '{"iss":"%s/local","aud":"%s/mcp/%s","sub":"%s","client_id":"multihost","scope":"files:read","iat":%d,"exp":%d,"jti":"mh-%s-%d"}' \
        "$ISS" "$ISS" "$2" "$1" "$_now" $((_now + 900)) "$$" "$MINTED" | b64url)
    _s=$(printf '%s.%s' "$_h" "$_p" | openssl dgst -sha256 -sign "$TOP/local.pem" -binary | b64url)
    printf '%s.%s.%s' "$_h" "$_p" "$_s"
}

# ----------------------------------------------------------------- MCP

MCP_H1='Content-Type: application/json'
MCP_H2='Accept: application/json, text/event-stream'
SEQ=0

# call HOST TOKEN RESOURCE: a tools/call echo of the stateless era (2026-07-28)
call() {
    SEQ=$((SEQ + 1))
    ECHO="mh-$SEQ-$$"
    req "$1" POST "/mcp/$3" -H "Authorization: Bearer $2" -H "$MCP_H1" -H "$MCP_H2" \
        -H 'MCP-Protocol-Version: 2026-07-28' -H 'Mcp-Method: tools/call' -H 'Mcp-Name: echo' \
        --data-binary "{\"jsonrpc\":\"2.0\",\"id\":$SEQ,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\"$ECHO\"}}}"
}
echoed() { [ "$ST" = 200 ] && has "$ECHO"; }

# session_init HOST TOKEN: initialize (2025-06-18) on /mcp/files; SID
session_init() {
    req "$1" POST /mcp/files -H "Authorization: Bearer $2" -H "$MCP_H1" -H "$MCP_H2" \
        --data-binary '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"multihost","version":"1"}}}'
    SID=$(hdr Mcp-Session-Id)
}
# session_call HOST TOKEN SID: tools/call echo in that session
session_call() {
    SEQ=$((SEQ + 1))
    ECHO="mh-$SEQ-$$"
    req "$1" POST /mcp/files -H "Authorization: Bearer $2" -H "$MCP_H1" -H "$MCP_H2" \
        -H 'MCP-Protocol-Version: 2025-06-18' -H "Mcp-Session-Id: $3" \
        --data-binary "{\"jsonrpc\":\"2.0\",\"id\":$SEQ,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\"$ECHO\"}}}"
}

# ------------------------------------------------------------- the AS

# register HOST: a public client (RFC 7591); CID, and a PKCE pair
register() {
    req "$1" POST /oauth2/register -H 'Content-Type: application/json' --data-binary \
        "{\"client_name\":\"multihost\",\"redirect_uris\":[\"$REDIRECT\"],\"token_endpoint_auth_method\":\"none\",\"grant_types\":[\"authorization_code\",\"refresh_token\"]}"
    CID=$(jstr client_id)
    VERIFIER=$(openssl rand -base64 48 | tr -d '\n=' | tr '+/' '-_' | cut -c1-64)
    CHALLENGE=$(printf '%s' "$VERIFIER" | openssl dgst -sha256 -binary | b64url)
    [ "$ST" = 201 ] && [ -n "$CID" ]
}

# hidden NAME: a hidden field of the consent page in the last answer
hidden() {
    grep -o "name=\"$1\" value=\"[^\"]*\"" "$W.body" | head -1 | sed 's/.*value="//; s/"$//' |
        sed "s/&quot;/\"/g; s/&#39;/'/g; s/&lt;/</g; s/&gt;/>/g; s/&amp;/\\&/g"
}

# authorize HOST [CONSENT_HOST]: alice signs in (Basic) at HOST; a consent
# page, if one comes, is approved (with "remember") by a POST to
# CONSENT_HOST (default HOST).  CODE; 0 when a code came.
authorize() {
    CODE=
    req "$1" GET /oauth2/authorize -G -u alice:wonderland --data-urlencode response_type=code \
        --data-urlencode "client_id=$CID" --data-urlencode "redirect_uri=$REDIRECT" \
        --data-urlencode "code_challenge=$CHALLENGE" --data-urlencode code_challenge_method=S256 \
        --data-urlencode "resource=$ISS/mcp/files" --data-urlencode scope=files:read \
        --data-urlencode state=mh
    if [ "$ST" = 200 ]; then
        set -- "$1" "${2:-$1}"
        _host=$2
        set --
        for _n in response_type client_id redirect_uri scope state code_challenge \
            code_challenge_method resource ts nonce csrf; do
            grep -q "name=\"$_n\" value=" "$W.body" || return 1
            set -- "$@" --data-urlencode "$_n=$(hidden "$_n")"
        done
        req "$_host" POST /oauth2/authorize -u alice:wonderland "$@" -d decision=approve -d remember=1
    fi
    [ "$ST" = 302 ] || return 1
    CODE=$(hdr Location | sed -n 's/.*[?&]code=\([^&]*\).*/\1/p')
    [ -n "$CODE" ]
}

# exchange HOST CODE: the code's redemption; AT and RT on success
exchange() {
    req "$1" POST /oauth2/token -d grant_type=authorization_code -d "code=$2" \
        -d "code_verifier=$VERIFIER" --data-urlencode "redirect_uri=$REDIRECT" \
        --data-urlencode "client_id=$CID" --data-urlencode "resource=$ISS/mcp/files"
    tokens
}
# refresh HOST RT: a rotation; AT and RT on success
refresh() {
    req "$1" POST /oauth2/token -d grant_type=refresh_token --data-urlencode "refresh_token=$2" \
        --data-urlencode "client_id=$CID" --data-urlencode "resource=$ISS/mcp/files"
    tokens
}
tokens() {
    AT=
    RT=
    [ "$ST" = 200 ] || return 1
    AT=$(jstr access_token)
    RT=$(jstr refresh_token)
    [ -n "$AT" ] && [ -n "$RT" ]
}
invalid_grant() { [ "$ST" = 400 ] && has invalid_grant; }
# grant AUTH_HOST TOKEN_HOST: a new grant of the current client; AT, RT
grant() { authorize "$1" && exchange "$2" "$CODE"; }

# ----------------------------------------------------------- the hosts

# Web servers and programs: as root, www-data (the staged programs and the
# library are copied under TOP, which www-data can read, as the integration
# harness does for Apache).
stage_programs() {
    mkdir -p "$TOP/bin" "$TOP/lib"
    for _p in mcpauth-metadata mcpauth-proxy mcpauth-as mcpauth-gate; do
        cp "$BUILD_DIR/fcgi/.libs/$_p" "$TOP/bin/" || return 1
    done
    cp "$BUILD_DIR/lib/.libs/libmcpauth.so.0" "$TOP/lib/" || return 1
    chmod -R a+rX "$TOP/bin" "$TOP/lib"
}

as_user() { # command...: as the programs' user
    if [ $ROOT = 1 ]; then
        setpriv --reuid=www-data --regid=www-data --clear-groups -- "$@"
    else
        "$@"
    fi
}
give() { [ $ROOT = 1 ] && chown -R www-data:www-data "$@"; return 0; }

# conf DIR STATE_DIR RUNTIME_DIR: mcpauth.conf of one host
write_conf() {
    {
        echo "log_level = info"
        echo "runtime_dir = $3"
        echo "jwks_min_refresh = 1"
        echo "backend_timeout = 10"
        if [ "$MODE" = engines ]; then
            echo "shared_state = $REDIS_URL"
            echo "shared_state_timeout = 250"
        fi
        cat <<EOF
[resource files]
uri = $ISS/mcp/files
authorization_servers = $ISS $ISS/local
scopes_supported = files:read
scopes_required = files:read
backend = http://127.0.0.1:$PORT_BACKEND/mcp
rate_limit_address = 0
[resource limited]
uri = $ISS/mcp/limited
authorization_servers = $ISS/local
scopes_supported = files:read
backend = http://127.0.0.1:$PORT_BACKEND/mcp
rate_limit = 1
rate_burst = 3
rate_limit_address = 0
[issuer local]
issuer = $ISS/local
jwks_file = $TOP/jwks.json
[authorization_server]
issuer = $ISS
state_dir = $2
refresh_grace = 0
registration_limit = 1000
EOF
        [ "$MODE" = engines ] && echo "store = $PG_URL"
    } >"$1/mcpauth.conf"
    chmod 644 "$1/mcpauth.conf"
}

start_lighttpd() { # host dir port
    _user=
    [ $ROOT = 1 ] && _user='server.username = "www-data"
server.groupname = "www-data"'
    mkdir -p "$2/htdocs"
    cat >"$2/lighttpd.conf" <<EOF
server.document-root = "$2/htdocs"
server.port = $3
server.bind = "127.0.0.1"
server.errorlog = "$2/error.log"
server.modules = ( "mod_access" )
$_user
var.mcpauth_libexecdir = "$TOP/bin"
var.mcpauth_config = "$2/mcpauth.conf"
var.mcpauth_rundir = "$2"
include "$SRC/lighttpd/mcpauth-fcgi.conf"
var.mcpauth_proxy_prefix = "/mcp"
include "$SRC/lighttpd/mcpauth-proxy.conf"
var.mcpauth_as_prefix = "/oauth2"
var.mcpauth_htpasswd = "$TOP/htpasswd"
include "$SRC/lighttpd/mcpauth-as.conf"
EOF
    give "$2"
    LD_LIBRARY_PATH=$TOP/lib "$LIGHTTPD" -D -f "$2/lighttpd.conf" >"$2/lighttpd.out" 2>&1 &
    PIDS="$PIDS $!"
    eval "PID_$1=$!"
}

start_apache() { # host dir port
    _user=
    [ $ROOT = 1 ] && _user='User www-data
Group www-data'
    mkdir -p "$2/htdocs" "$2/fcgid"
    _m=$APACHE_MODULES_DIR
    cat >"$2/apache.conf" <<EOF
ServerRoot "$2"
Listen 127.0.0.1:$3
ServerName 127.0.0.1
PidFile "$2/apache.pid"
ErrorLog "$2/error.log"
LogLevel warn
DefaultRuntimeDir "$2"
Mutex file:$2 default
$_user
LoadModule mpm_event_module $_m/mod_mpm_event.so
LoadModule authz_core_module $_m/mod_authz_core.so
LoadModule alias_module $_m/mod_alias.so
LoadModule fcgid_module $_m/mod_fcgid.so
LoadModule auth_basic_module $_m/mod_auth_basic.so
LoadModule authn_core_module $_m/mod_authn_core.so
LoadModule authn_file_module $_m/mod_authn_file.so
LoadModule authz_user_module $_m/mod_authz_user.so
StartServers 1
ServerLimit 2
ThreadsPerChild 16
MaxRequestWorkers 32
FcgidIPCDir "$2/fcgid"
FcgidProcessTableFile "$2/fcgid/shm"
DocumentRoot "$2/htdocs"
<Directory />
  Require all denied
</Directory>
<Directory "$2/htdocs">
  Require all granted
</Directory>
Define MCPAUTH_LIBEXECDIR $TOP/bin
FcgidInitialEnv LD_LIBRARY_PATH $TOP/lib
Define MCPAUTH_CONFIG $2/mcpauth.conf
Include "$SRC/apache/mcpauth-fcgi.conf"
Define MCPAUTH_PROXY_LOCATION /mcp
Include "$SRC/apache/mcpauth-proxy.conf"
Define MCPAUTH_AS_LOCATION /oauth2
Define MCPAUTH_HTPASSWD $TOP/htpasswd
Include "$SRC/apache/mcpauth-as.conf"
EOF
    give "$2"
    "$APACHE2" -f "$2/apache.conf" -DFOREGROUND >"$2/apache.out" 2>&1 &
    PIDS="$PIDS $!"
    eval "PID_$1=$!"
}

port_free() { ! curl -s -o /dev/null --noproxy '*' --max-time 1 "http://127.0.0.1:$1/" 2>/dev/null && ! (
    [ -r /proc/net/tcp ] && grep -qi ":$(printf '%04X' "$1") 00000000:0000 0A" /proc/net/tcp); }

wait_up() { # host: its AS metadata answers (20 s)
    _i=0
    while [ $_i -lt 100 ]; do
        req "$1" GET /.well-known/oauth-authorization-server
        [ "$ST" = 200 ] && return 0
        sleep 0.2
        _i=$((_i + 1))
    done
    return 1
}

# The hosts of a mode: configurations, state, web servers, the backend.
start_mode() {
    D=$TOP/$MODE
    mkdir -p "$D"
    for _h in A B C; do mkdir -p "$D/$_h"; done
    for _p in $PORT_A $PORT_B $PORT_C $PORT_BACKEND; do
        port_free "$_p" || { echo "multihost: port $_p is in use" >&2; return 1; }
    done
    if [ "$MODE" = engines ]; then
        engines_pg_start "$TOP/db" $PG_PORT_WANT >"$TOP/engines-pg.log" 2>&1 ||
            { cat "$TOP/engines-pg.log" >&2; return 1; }
        engines_redis_start "$TOP/db" $REDIS_PORT_WANT >"$TOP/engines-redis.log" 2>&1 ||
            { cat "$TOP/engines-redis.log" >&2; return 1; }
        for _h in A B C; do
            mkdir -p "$D/$_h/state" "$D/$_h/run"
            chmod 700 "$D/$_h/state"
            write_conf "$D/$_h" "$D/$_h/state" "$D/$_h/run"
        done
    else
        mkdir -p "$D/state" "$D/run"
        chmod 700 "$D/state"
        for _h in A B C; do write_conf "$D/$_h" "$D/state" "$D/run"; done
    fi
    # the same configuration everywhere, but for per-host paths
    for _h in B C; do
        sed "s|$D/$_h/|$D/A/|g" "$D/$_h/mcpauth.conf" | cmp -s - "$D/A/mcpauth.conf" ||
            { echo "multihost: host $_h's configuration differs from A's" >&2; return 1; }
    done
    _owner=
    [ $ROOT = 1 ] && _owner="--owner www-data"
    # shellcheck disable=SC2086
    "$BUILD_DIR/tools/mcpauth" --config "$D/A/mcpauth.conf" init $_owner >"$D/init.log" 2>&1 ||
        { echo "multihost: mcpauth init failed:" >&2; cat "$D/init.log" >&2; return 1; }
    give "$D"
    "$BUILD_DIR/examples/mcp-server" --port "$PORT_BACKEND" --path /mcp >"$D/backend.log" 2>&1 &
    PID_BACKEND=$!
    PIDS="$PIDS $PID_BACKEND"
    start_lighttpd A "$D/A" "$PORT_A"
    start_lighttpd B "$D/B" "$PORT_B"
    start_apache C "$D/C" "$PORT_C"
    for _h in A B C; do
        wait_up $_h || {
            echo "multihost: host $_h did not come up: $(why)" >&2
            tail -20 "$D/$_h/error.log" "$D/$_h/"*.out >&2 2>/dev/null
            return 1
        }
    done
}

stop_mode() {
    for _v in PID_A PID_B PID_C PID_BACKEND; do
        eval "_p=\${$_v:-}"
        [ -n "$_p" ] && stop_pid "$_p"
        eval "$_v="
    done
    stop_leftovers
    if [ "$MODE" = engines ]; then
        engines_redis_stop
        engines_pg_stop
    fi
}

# ----------------------------------------------------------- scenarios

# refused LABEL TOKEN T0 HOST...: each HOST's proxy refuses TOKEN (401) at
# most 1 s after T0 (ms), as shared_state promises for revocations
refused() {
    _l=$1 _tok=$2 _t0=$3
    shift 3
    for _h in "$@"; do
        while :; do
            call "$_h" "$_tok" files
            [ "$ST" = 401 ] && break
            [ $(($(now_ms) - _t0)) -gt 3000 ] && break
            sleep 0.05
        done
        _dt=$(($(now_ms) - _t0))
        if [ "$ST" = 401 ] && [ $_dt -le 1000 ]; then
            ok "$_l: refused by $_h's proxy within 1 s ($_dt ms)"
        else
            nok "$_l: refused by $_h's proxy within 1 s: after $_dt ms, $(why)"
        fi
    done
}

# 1: one AS across hosts
scenario_codes() {
    if register A; then ok "1 client registered on A"; else nok "1 client registered on A: $(why)"; return; fi
    if authorize B C; then
        ok "1 authorized on B (Basic sign-in), consent submitted to C"
    else
        nok "1 authorized on B, consent on C: $(why)"
        return
    fi
    _code=$CODE
    if exchange A "$_code"; then ok "1 code redeemed on A"; else nok "1 code redeemed on A: $(why)"; return; fi
    _at1=$AT _rt1=$RT
    call C "$_at1" files
    check "1 A's access token opens C's proxy" echoed
    _t0=$(now_ms)
    exchange B "$_code"
    if invalid_grant; then ok "1 code replayed on B: invalid_grant"; else nok "1 code replayed on B: $(why)"; fi
    refresh C "$_rt1"
    if invalid_grant; then
        ok "1 the replay revoked the grant: its refresh token refused on C"
    else
        nok "1 the replay revoked the grant: refresh token on C: $(why)"
    fi
    # on the hosts other than the one that saw the replay (C had it cached)
    refused "1 the replay revoked the grant: its access token" "$_at1" "$_t0" A C

    if grant A A; then ok "1 a fresh grant on A"; else nok "1 a fresh grant on A: $(why)"; return; fi
    _rt2=$RT
    if refresh B "$_rt2" && [ "$RT" != "$_rt2" ]; then
        ok "1 refreshed on B: a new refresh token (rotation)"
    else
        nok "1 refreshed on B: $(why)"
        return
    fi
    _rt3=$RT _at3=$AT
    _t0=$(now_ms)
    refresh A "$_rt2"
    if invalid_grant; then ok "1 the old refresh token replayed on A: invalid_grant (reuse)"; else nok "1 old refresh token on A: $(why)"; fi
    refresh C "$_rt3"
    if invalid_grant; then ok "1 the reuse revoked the family: the newest refresh token refused on C"; else nok "1 newest refresh token after the reuse: $(why)"; fi
    refused "1 the reuse revoked the family: its access token" "$_at3" "$_t0" B C
}

# 2: a rate limit across hosts
scenario_rate() {
    _t=$(mint "rate-$MODE" limited)
    _n=0
    for _i in 1 2 3; do
        call A "$_t" limited
        echoed && _n=$((_n + 1))
    done
    call B "$_t" limited
    _st=$ST _ra=$(hdr Retry-After)
    if [ $_n = 3 ] && [ "$_st" = 429 ] && [ -n "$_ra" ]; then
        ok "2 burst of 3 used up on A, the 4th request on B: 429, Retry-After $_ra"
    else
        nok "2 rate limit across hosts: $_n of 3 passed on A, then B answered $_st ($(why))"
    fi
    call B "$(mint "other-$MODE" limited)" limited
    check "2 another caller still passes on B" echoed
}

# 3: a session bound on A
scenario_session() {
    _x=$(mint "x-$MODE" files)
    _y=$(mint "y-$MODE" files)
    session_init A "$_x"
    if [ "$ST" = 200 ] && [ -n "$SID" ]; then ok "3 session initialized on A by X"; else nok "3 initialize on A: $(why)"; return; fi
    _sid=$SID
    session_call B "$_y" "$_sid"
    if [ "$ST" = 404 ]; then ok "3 subject Y with X's session on B: 404"; else nok "3 Y with X's session on B: $(why)"; fi
    session_call C "$_y" "$_sid"
    if [ "$ST" = 404 ]; then ok "3 subject Y with X's session on C: 404"; else nok "3 Y with X's session on C: $(why)"; fi
    session_call B "$_x" "$_sid"
    check "3 subject X with its session on B: served" echoed
    if grep -q session_hijack_refused "$D/B/"*.out "$D/B/error.log" 2>/dev/null; then
        ok "3 B logged session_hijack_refused"
    else
        nok "3 B logged session_hijack_refused"
    fi
}

# 4: a revocation across hosts
scenario_revoke() {
    if grant B B; then :; else nok "4 a grant on B: $(why)"; return; fi
    _at=$AT
    call B "$_at" files
    _b=$ST
    call C "$_at" files
    if [ "$_b" = 200 ] && [ "$ST" = 200 ]; then ok "4 the access token opens B and C (cached there)"; else nok "4 before the revocation: B $_b, C $ST"; fi
    _t0=$(now_ms)
    req A POST /oauth2/revoke -d "token=$_at" -d token_type_hint=access_token --data-urlencode "client_id=$CID"
    if [ "$ST" = 200 ]; then ok "4 revoked at A (RFC 7009)"; else nok "4 revocation at A: $(why)"; return; fi
    refused "4 revoked at A" "$_at" "$_t0" B C
}

# 5: a key rotated on B.  Each mcpauth-as process reloads its keys at most
# every 30 s (mcpauth-as(8)), so the rotation comes first and its checks
# last, with the other scenarios in between; they allow 35 s.
jwks_of() { req "$1" GET /oauth2/jwks; [ "$ST" = 200 ] && body; }
scenario_rotate_start() {
    ROT_KID=
    ROT_BEFORE=$(jwks_of A)
    ROT_T0=$(now_ms)
    if as_user "$BUILD_DIR/tools/mcpauth" --config "$D/B/mcpauth.conf" rotate-key >"$D/rotate.log" 2>&1; then
        ok "5 mcpauth rotate-key with B's configuration"
    else
        nok "5 mcpauth rotate-key with B's configuration: $(cat "$D/rotate.log")"
        return
    fi
    ROT_KID=$(as_user "$BUILD_DIR/tools/mcpauth" --config "$D/C/mcpauth.conf" keys 2>/dev/null |
        awk -F'\t' '$4 == "current" { print $1; exit }')
    if [ -n "$ROT_KID" ] && ! printf '%s' "$ROT_BEFORE" | grep -q "\"$ROT_KID\""; then
        ok "5 mcpauth keys with C's configuration names the new key current"
    else
        nok "5 mcpauth keys with C's configuration names a new current key: '$ROT_KID'"
        ROT_KID=
    fi
}
scenario_rotate_check() {
    [ -n "$ROT_KID" ] || return
    while :; do
        _a=$(jwks_of A) _b=$(jwks_of B) _c=$(jwks_of C)
        [ -n "$_a" ] && [ "$_a" = "$_b" ] && [ "$_a" = "$_c" ] &&
            printf '%s' "$_a" | grep -q "\"$ROT_KID\"" && break
        [ $(($(now_ms) - ROT_T0)) -gt 35000 ] && break
        sleep 0.5
    done
    if [ -n "$_a" ] && [ "$_a" = "$_b" ] && [ "$_a" = "$_c" ] && printf '%s' "$_a" | grep -q "\"$ROT_KID\""; then
        ok "5 A, B and C publish the same JWK set, with the new key ($(($(now_ms) - ROT_T0)) ms after the rotation)"
    else
        nok "5 the same JWK set with the new key $ROT_KID on A, B, C: A=$_a B=$_b C=$_c"
    fi
    grant A A || { nok "5 a grant on A: $(why)"; return; }
    while [ "$(jwt_kid "$AT")" != "$ROT_KID" ] && [ $(($(now_ms) - ROT_T0)) -lt 35000 ]; do
        sleep 0.5
        refresh A "$RT" || break
    done
    if [ "$(jwt_kid "$AT")" = "$ROT_KID" ]; then
        ok "5 A signs new tokens with the key rotated on B ($(($(now_ms) - ROT_T0)) ms after the rotation)"
    else
        nok "5 A signs with the new key: kid $(jwt_kid "${AT:-}") ($(why))"
        return
    fi
    call A "$AT" files
    check "5 A's proxy accepts a token of the new key" echoed
    call C "$AT" files
    check "5 C's proxy accepts a token of the new key" echoed
}

# 6: faults of the engines
pg_restart() {
    _bin=$(engines_pg_bin) || return 1
    engines_as_pg_user "$_bin/pg_ctl" -D "$PG_DATA" -l "$TOP/db/pg/server.log" -w -t 30 start \
        >/dev/null 2>&1 || return 1
    PG_PID=$(head -1 "$PG_DATA/postmaster.pid")
}
log_count() { cat "$D/$1/"*.out "$D/$1/error.log" 2>/dev/null | grep -c "$2"; }
unavailable() { [ "$ST" = 503 ] && has temporarily_unavailable && [ -n "$(hdr Retry-After)" ]; }

scenario_faults() {
    # PostgreSQL
    if grant A A; then :; else nok "6 a grant before the outage: $(why)"; return; fi
    _rt=$RT _at=$AT
    if authorize B; then :; else nok "6 a code before the outage: $(why)"; return; fi
    _code=$CODE
    _pg_pid=$PG_PID
    engines_pg_stop
    PG_PID=$_pg_pid # restarted below; stopped at the end in any case
    exchange B "$_code"
    if unavailable; then ok "6 PostgreSQL down: code exchange on B 503 temporarily_unavailable, Retry-After"; else nok "6 PostgreSQL down: code exchange on B: $(why)"; fi
    call C "$_at" files
    check "6 PostgreSQL down: an access token issued before still opens C's proxy" echoed
    refresh A "$_rt"
    if unavailable; then ok "6 PostgreSQL down: refresh on A 503 temporarily_unavailable, Retry-After"; else nok "6 PostgreSQL down: refresh on A: $(why)"; fi
    PG_PID=
    if pg_restart; then ok "6 PostgreSQL started again"; else nok "6 PostgreSQL started again"; return; fi
    _t0=$(now_ms)
    while :; do
        exchange C "$_code" && break
        [ "$ST" = 503 ] && [ $(($(now_ms) - _t0)) -lt 10000 ] || break
        sleep 0.3
    done
    if [ -n "$AT" ]; then
        ok "6 after the restart the same code is redeemed (nothing half-written), $(($(now_ms) - _t0)) ms, mcpauth not restarted"
    else
        nok "6 the code redeemed after PostgreSQL's restart: $(why)"
    fi
    if refresh A "$_rt"; then ok "6 after the restart the refresh on A works"; else nok "6 refresh on A after the restart: $(why)"; fi

    # Redis
    _x=$(mint "fx-$MODE" files)
    _y=$(mint "fy-$MODE" files)
    session_init A "$_x"
    _sid=$SID
    [ "$ST" = 200 ] && [ -n "$_sid" ] || { nok "6 a session before Redis's outage: $(why)"; return; }
    _logs=$(log_count A shared_state)
    engines_redis_stop
    _t=$(mint "frate-$MODE" limited)
    _n=0
    for _i in 1 2 3 4 5 6; do
        call A "$_t" limited
        echoed && _n=$((_n + 1))
    done
    if [ $_n = 6 ]; then ok "6 Redis down: rate limits fail open (6 requests over a burst of 3 passed on A)"; else nok "6 Redis down: rate limits fail open: $_n of 6 passed, last $(why)"; fi
    sleep 0.3 # the log line may trail the answer
    if [ "$(log_count A shared_state)" -gt "$_logs" ]; then ok "6 Redis down: A logged it (shared_state)"; else nok "6 Redis down: a shared_state log line on A"; fi
    session_call B "$_x" "$_sid"
    if unavailable || { [ "$ST" = 503 ] && [ -n "$(hdr Retry-After)" ]; }; then
        ok "6 Redis down: a request with a session on B: 503, Retry-After"
    else
        nok "6 Redis down: a request with a session on B: 503 with Retry-After: $(why)"
    fi
    if engines_redis_start "$TOP/db" $REDIS_PORT_WANT >"$TOP/engines-redis2.log" 2>&1; then
        ok "6 Redis started again"
    else
        nok "6 Redis started again"
        return
    fi
    # recovery: a new session is bound and enforced, a new caller is limited
    # across hosts.  Each proxy process tries Redis again after a backoff (at
    # most 1 s, state_redis.c), on its next request: up to 10 s are allowed.
    _t0=$(now_ms)
    _own=none _other=none
    while [ $(($(now_ms) - _t0)) -lt 10000 ]; do
        session_init A "$_x"
        _sid=$SID
        if [ "$ST" = 200 ] && [ -n "$_sid" ]; then
            session_call B "$_x" "$_sid"
            _own=$ST
            if echoed; then
                session_call C "$_y" "$_sid"
                _other=$ST
                [ "$ST" = 404 ] && break
            fi
        fi
        sleep 0.3
    done
    if [ "$_own" = 200 ] && [ "$_other" = 404 ]; then
        ok "6 Redis back: a session bound on A serves X on B and refuses Y on C ($(($(now_ms) - _t0)) ms)"
    else
        nok "6 Redis back within 10 s: sessions: X on B $_own, Y on C $_other: $(why)"
    fi
    _t0=$(now_ms)
    _rl=0
    while [ $(($(now_ms) - _t0)) -lt 10000 ]; do
        _t=$(mint "frate2-$MODE-$(now_ms)" limited)
        _n=0
        for _i in 1 2 3; do
            call A "$_t" limited
            echoed && _n=$((_n + 1))
        done
        call B "$_t" limited
        [ $_n = 3 ] && [ "$ST" = 429 ] && { _rl=1; break; }
        sleep 0.3
    done
    if [ $_rl = 1 ]; then ok "6 Redis back: the rate limit holds across hosts again"; else nok "6 Redis back within 10 s: rate limit: $_n of 3 on A, then B $(why)"; fi
}

# ---------------------------------------------------------------- main

run_mode() {
    case $MODE in
    sqlite | engines) ;;
    *) echo "multihost: unknown mode $MODE" >&2; FAIL=$((FAIL + 1)); return ;;
    esac
    # free ports, picked in this shell (not a subshell: NEXT_PORT moves on)
    for _v in PORT_A PORT_B PORT_C PORT_BACKEND PG_PORT_WANT REDIS_PORT_WANT; do
        while ! port_free "$NEXT_PORT"; do NEXT_PORT=$((NEXT_PORT + 1)); done
        eval "$_v=$NEXT_PORT"
        NEXT_PORT=$((NEXT_PORT + 1))
    done
    ISS=http://127.0.0.1:$PORT_A
    echo "# mode $MODE: A lighttpd :$PORT_A, B lighttpd :$PORT_B, C Apache :$PORT_C, issuer $ISS"
    if ! start_mode; then
        nok "the hosts started (set-up failed; see above)"
        stop_mode
        return
    fi
    ok "hosts A, B, C up with the same configuration"
    scenario_rotate_start
    scenario_codes
    scenario_rate
    scenario_session
    scenario_revoke
    scenario_rotate_check
    [ "$MODE" = engines ] && scenario_faults
    stop_mode
}

stage_programs || { echo "multihost: could not stage the programs" >&2; exit 2; }
make_local_issuer || { echo "multihost: could not make the local issuer's key" >&2; exit 2; }
printf 'alice:%s\n' "$(openssl passwd -apr1 -salt mcpauth1 wonderland)" >"$TOP/htpasswd"
chmod 644 "$TOP/htpasswd"
for MODE in $MODES; do run_mode; done
MODE=all
echo "# $(($(date +%s) - T0)) s"
echo "multihost: $PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
