/* The proxy without a web server.  Its decisions that need no request:
 * the scopes [policy] sections demand (and that a failed allocation aborts
 * rather than drops one, which would let the call through), and the
 * rate-limit bucket key (fixed size, whatever the length of the subject).
 * Then mcpauth_proxy_handle driven in memory through every refusal stage,
 * with real tokens and a backend port that refuses connections, so a
 * request that passes every check ends in a 502. */
#include <check.h>

Suite *proxy_suite(void); /* also in suites.h once wired in */

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include <mcpauth/config.h>
#include "jsonrpc.h"
#include <mcpauth/log.h>
#include <mcpauth/proxy.h>

#include "alloc.h"
#include "proxy_priv.h"
#include "shm.h"
#include "memhttp.h"
#include "../support/scratch.h"
#include "../support/tokens.h"

static const char CONF[] =
    "[resource files]\n"
    "uri = https://mcp.example.com/mcp/files\n"
    "authorization_servers = https://auth.example.com\n"
    "backend = http://127.0.0.1:9000/mcp\n"
    "[resource other]\n"
    "uri = https://mcp.example.com/mcp/other\n"
    "authorization_servers = https://auth.example.com\n"
    "backend = http://127.0.0.1:9001/mcp\n"
    "[policy deletes]\nresource = files\nmethod = tools/call\nname = delete_*\n"
    "scopes = files:write files:admin\n"
    "[policy calls]\nresource = files\nmethod = tools/*\nscopes = files:read files:write\n"
    "[policy elsewhere]\nresource = other\nmethod = *\nscopes = other:all\n";

static mcpauth_config *cfg;

static void setup(void)
{
    char err[256] = "";
    cfg = mcpauth_config_parse(CONF, strlen(CONF), "t.conf", err, sizeof err);
    ck_assert_msg(cfg != NULL, "config: %s", err);
}

static void teardown(void)
{
    mcpauth_config_free(cfg);
    cfg = NULL;
}

static const mcpauth_resource *res(const char *name)
{
    const mcpauth_resource *r = mcpauth_config_resource_by_name(cfg, name);
    ck_assert_ptr_nonnull(r);
    return r;
}

/* The scopes as one space-separated string, for comparisons. */
static void scopes_of(const char *resource, const char *method, const char *name, char *out,
                      size_t cap)
{
    mcpauth_strlist l = {0, NULL};
    mcpauth__proxy_policy_scopes(cfg, res(resource), method, name, &l);
    out[0] = '\0';
    for (size_t i = 0; i < l.n; i++) {
        ck_assert_ptr_nonnull(l.v[i]);
        size_t used = strlen(out);
        snprintf(out + used, cap - used, "%s%s", i ? " " : "", l.v[i]);
    }
    ck_assert_ptr_null(l.v ? l.v[l.n] : NULL);
    mcpauth_strlist_free(&l);
}

START_TEST(policy_union)
{
    char s[256];
    scopes_of("files", "tools/call", "delete_all", s, sizeof s);
    ck_assert_str_eq(s, "files:write files:admin files:read");
    scopes_of("files", "tools/call", "read_file", s, sizeof s);
    ck_assert_str_eq(s, "files:read files:write");
    scopes_of("files", "tools/list", NULL, s, sizeof s);
    ck_assert_str_eq(s, "files:read files:write");
    /* a name-keyed policy needs a name to match */
    scopes_of("files", "tools/call", NULL, s, sizeof s);
    ck_assert_str_eq(s, "files:read files:write");
    scopes_of("files", "initialize", NULL, s, sizeof s);
    ck_assert_str_eq(s, "");
    scopes_of("files", NULL, NULL, s, sizeof s);
    ck_assert_str_eq(s, "");
    scopes_of("other", "ping", NULL, s, sizeof s);
    ck_assert_str_eq(s, "other:all");
}
END_TEST

/* The i-th allocation while the scopes of a guarded call are gathered
 * fails: the process must abort.  The old code returned with the scopes
 * gathered so far (none, for i = 1) and the call went through unguarded.
 * Three scopes: i = 1..6 covers every list growth and every copy. */
START_TEST(policy_oom_aborts)
{
    mcpauth_strlist l = {0, NULL};
    const mcpauth_resource *r = res("files");
    mcpauth__alloc_fail_after((unsigned long)_i);
    mcpauth__proxy_policy_scopes(cfg, r, "tools/call", "delete_all", &l);
    mcpauth__alloc_fail_after(0);
    ck_abort_msg("allocation %d failed and %zu scope(s) came back instead of an abort", _i, l.n);
}
END_TEST

static void rate_key(const char *kind, const char *resource, const char *issuer,
                     const char *subject, unsigned char out[MCPAUTH__RATE_KEY_LEN])
{
    const char *parts[] = {issuer, subject};
    ck_assert_int_eq(mcpauth__proxy_rate_key(kind, resource, parts, 2, out), 0);
}

/* The old key was snprintf'd into 1 KiB and handed to the bucket table
 * with snprintf's full length: past the buffer when longer, and two
 * callers alike in their first kilobyte shared one bucket. */
START_TEST(rate_key_long_subject)
{
    size_t len = 64 * 1024;
    char *a = malloc(len + 1), *b = malloc(len + 1);
    ck_assert(a && b);
    memset(a, 's', len);
    a[len] = '\0';
    memcpy(b, a, len + 1);
    b[len - 1] = 't';
    unsigned char ka[MCPAUTH__RATE_KEY_LEN], ka2[MCPAUTH__RATE_KEY_LEN], kb[MCPAUTH__RATE_KEY_LEN];
    rate_key("subject", "files", "https://auth.example.com", a, ka);
    rate_key("subject", "files", "https://auth.example.com", a, ka2);
    rate_key("subject", "files", "https://auth.example.com", b, kb);
    ck_assert_mem_eq(ka, ka2, sizeof ka);
    ck_assert(memcmp(ka, kb, sizeof ka) != 0);

    /* A long subject gets its own bucket in the shared table. */
    char dir[] = "/tmp/mcpauth-proxy-XXXXXX", path[64], err[256] = "";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/proxy.shm", dir);
    mcpauth_shm *shm = mcpauth__shm_open(path, 64, 16, err, sizeof err);
    ck_assert_msg(shm != NULL, "%s", err);
    int retry;
    ck_assert_int_eq(mcpauth__shm_rate(shm, ka, sizeof ka, 1, 1, 1000.0, &retry), 1);
    ck_assert_int_eq(mcpauth__shm_rate(shm, ka, sizeof ka, 1, 1, 1000.0, &retry), 0);
    ck_assert_int_eq(mcpauth__shm_rate(shm, kb, sizeof kb, 1, 1, 1000.0, &retry), 1);
    mcpauth__shm_close(shm);
    remove_tree(dir);
    free(a);
    free(b);
}
END_TEST

/* Parts are length-prefixed: moving a separator between them, or the
 * kind, the resource, or the number of parts, gives another key. */
START_TEST(rate_key_unambiguous)
{
    unsigned char k1[MCPAUTH__RATE_KEY_LEN], k2[MCPAUTH__RATE_KEY_LEN];
    rate_key("subject", "files", "https://a\nb", "c", k1);
    rate_key("subject", "files", "https://a", "b\nc", k2);
    ck_assert(memcmp(k1, k2, sizeof k1) != 0);
    rate_key("subject", "files", "i", "s", k1);
    rate_key("subject", "other", "i", "s", k2);
    ck_assert(memcmp(k1, k2, sizeof k1) != 0);
    rate_key("address", "files", "i", "s", k2);
    ck_assert(memcmp(k1, k2, sizeof k1) != 0);
    const char *one[] = {"is"};
    ck_assert_int_eq(mcpauth__proxy_rate_key("subject", "files", one, 1, k2), 0);
    ck_assert(memcmp(k1, k2, sizeof k1) != 0);
    const char *empty[] = {"", NULL};
    ck_assert_int_eq(mcpauth__proxy_rate_key("subject", "files", empty, 2, k1), 0);
    rate_key("subject", "files", "", "", k2);
    ck_assert_mem_eq(k1, k2, sizeof k1); /* NULL counts as "" */
}
END_TEST

/* ------------------------------------------------ handle, in memory */

#define ISS "https://as.example.com"
#define RES "https://mcp.example.com/mcp/files"
#define PATH "/mcp/files"
#define ORIGIN_OK "https://app.example.com"
#define LIST "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/list\"}"
#define DELETE_ALL                                                                        \
    "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"tools/call\",\"params\":{\"name\":\"delete_all\"," \
    "\"arguments\":{}}}"

static const char HCONF[] =
    "runtime_dir = %s\n"
    "max_body_bytes = 1024\n"
    "[issuer local]\nissuer = " ISS "\njwks_file = %s/jwks.json\n"
    "[policy deletes]\nresource = files\nmethod = tools/call\nname = delete_*\n"
    "scopes = files:write\n"
    "[resource files]\n"
    "uri = " RES "\n"
    "authorization_servers = " ISS "\n"
    "scopes_supported = files:read files:write\n"
    "backend = http://127.0.0.1:%d/mcp\n"
    "allowed_origins = %s\n"
    "%s";

static tk_key *key;           /* made once, in the runner (unchecked fixture) */
static char hdir[64];
static int refuse_fd = -1;    /* bound, never listening: connections are refused */
static int refuse_port;
static mcpauth_proxy *proxy;
static char *token;           /* scope files:read */
static char auth[8192];       /* "Bearer <token>" */
static int capturing;         /* stderr goes to hdir/log */
static const char *origins;   /* allowed_origins of the next start() */

static void keys_up(void)
{
    key = tk_key_new("ES256", "ec1", 0);
}

static void keys_down(void)
{
    tk_key_free(key);
}

/* A port on 127.0.0.1 that refuses connections, held for the whole test
 * so no other process can start listening there meanwhile. */
static void refusing_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    refuse_fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(refuse_fd, 0);
    ck_assert_int_eq(bind(refuse_fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(getsockname(refuse_fd, (struct sockaddr *)&a, &len), 0);
    refuse_port = ntohs(a.sin_port);
}

static char *mint(const char *scope)
{
    char *claims = tk_claims(ISS, RES, scope, 300);
    char *t = tk_mint(key, claims, NULL);
    free(claims);
    ck_assert_ptr_nonnull(t);
    return t;
}

static void use_token(const char *scope)
{
    free(token);
    token = mint(scope);
    snprintf(auth, sizeof auth, "Bearer %s", token);
}

/* The proxy for HCONF plus extra [resource files] lines.  Each test runs
 * in its own process (fork mode): its log goes to hdir/log. */
static void start(const char *extra)
{
    char text[8192], err[512] = "";
    mcpauth_proxy_free(proxy);
    mcpauth_config_free(cfg);
    snprintf(text, sizeof text, HCONF, hdir, hdir, refuse_port, origins, extra ? extra : "");
    cfg = mcpauth_config_parse(text, strlen(text), "t.conf", err, sizeof err);
    ck_assert_msg(cfg != NULL, "config: %s", err);
    proxy = mcpauth_proxy_new(cfg, 0, err, sizeof err);
    ck_assert_msg(proxy != NULL, "mcpauth_proxy_new: %s", err);
}

static void handle_setup(void)
{
    snprintf(hdir, sizeof hdir, "/tmp/mcpauth-proxy-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(hdir));
    tk_key *pub[] = {key};
    char *jwks = tk_jwks(pub, 1), path[128];
    snprintf(path, sizeof path, "%s/jwks.json", hdir);
    ck_assert_int_eq(tk_write(path, jwks), 0);
    free(jwks);
    const char *nofork = getenv("CK_FORK");
    if (!nofork || strcmp(nofork, "no") != 0) {
        snprintf(path, sizeof path, "%s/log", hdir);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        ck_assert_int_ge(fd, 0);
        dup2(fd, 2);
        close(fd);
        capturing = 1;
    }
    mcpauth_log_set_level(MCPAUTH_LOG_INFO);
    refusing_port();
    use_token("files:read");
    origins = ORIGIN_OK;
    start(NULL);
}

static void handle_teardown(void)
{
    mcpauth_proxy_free(proxy);
    mcpauth_config_free(cfg);
    proxy = NULL;
    cfg = NULL;
    free(token);
    token = NULL;
    close(refuse_fd);
    remove_tree(hdir);
}

/* The log line is there (not checked with CK_FORK=no: no log file). */
static void expect_log(const char *needle)
{
    char path[128], buf[65536];
    snprintf(path, sizeof path, "%s/log", hdir);
    if (!capturing)
        return;
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    ck_assert_msg(strstr(buf, needle) != NULL, "no %s in the log:\n%s", needle, buf);
}

/* A request: NULL fields take the defaults of a good POST (tools/list,
 * JSON, both media types, the current token); ABSENT leaves a header out. */
static const char ABSENT[] = "(absent)";
typedef struct rq {
    const char *method, *body, *authz, *ctype, *accept, *length;
    const char *origin, *version, *mcp_method, *mcp_name, *session, *cookie;
    const char *spare; /* spare_workers as the binding counts them; NULL: -1 */
} rq;

static memhttp_bodyctx BC;
static int status;

static const char *or_default(const char *v, const char *def)
{
    return v == ABSENT ? NULL : v ? v : def;
}

/* Sends q through mcpauth_proxy_handle; the answer is in BC.m.out. */
static int send_rq(rq q)
{
    char clen[32];
    const char *body = q.method && strcmp(q.method, "POST") != 0 ? NULL : or_default(q.body, LIST);
    snprintf(clen, sizeof clen, "%zu", body ? strlen(body) : 0);
    const char *h[][2] = {
        {"REQUEST_METHOD", q.method ? q.method : "POST"},
        {"REQUEST_URI", PATH},
        {"REMOTE_ADDR", "192.0.2.7"},
        {"HTTP_AUTHORIZATION", or_default(q.authz, auth)},
        {"CONTENT_TYPE", body ? or_default(q.ctype, "application/json") : NULL},
        {"CONTENT_LENGTH", body ? or_default(q.length, clen) : NULL},
        {"HTTP_ACCEPT", or_default(q.accept, "application/json, text/event-stream")},
        {"HTTP_ORIGIN", or_default(q.origin, NULL)},
        {"HTTP_MCP_PROTOCOL_VERSION", or_default(q.version, "2025-06-18")},
        {"HTTP_MCP_METHOD", or_default(q.mcp_method, NULL)},
        {"HTTP_MCP_NAME", or_default(q.mcp_name, NULL)},
        {"HTTP_MCP_SESSION_ID", or_default(q.session, NULL)},
        {"HTTP_COOKIE", or_default(q.cookie, NULL)},
    };
    const char *p[2 * sizeof h / sizeof *h + 1];
    size_t n = 0;
    for (size_t i = 0; i < sizeof h / sizeof *h; i++)
        if (h[i][1]) {
            p[n++] = h[i][0];
            p[n++] = h[i][1];
        }
    p[n] = NULL;
    mcpauth_request req;
    mcpauth_response resp;
    memhttp_setup(&BC.m, p, &req, &resp);
    memhttp_set_body(&BC, &req, body, body ? strlen(body) : 0, 0);
    req.spare_workers = q.spare ? atoi(q.spare) : -1;
    mcpauth_proxy_handle(proxy, &req, &resp);
    status = -1;
    ck_assert_msg(sscanf(BC.m.out, "Status: %d", &status) == 1, "no status: %.200s", BC.m.out);
    return status;
}

/* The value of a response header, or NULL. */
static const char *rheader(const char *name)
{
    return memhttp_header(BC.m.out, name);
}

/* The answer is this status with a JSON-RPC error of this code and id. */
static void expect_rpc(int want, int code, const char *id_json)
{
    ck_assert_msg(status == want, "status %d, want %d: %s", status, want, BC.m.out);
    json_object *o = json_tokener_parse(memhttp_body(&BC.m));
    ck_assert_msg(o != NULL, "not JSON: %s", BC.m.out);
    json_object *e, *c, *id;
    ck_assert(json_object_object_get_ex(o, "error", &e));
    ck_assert(json_object_object_get_ex(e, "code", &c));
    ck_assert_int_eq(json_object_get_int(c), code);
    ck_assert(json_object_object_get_ex(o, "id", &id));
    ck_assert_str_eq(json_object_to_json_string_ext(id, JSON_C_TO_STRING_PLAIN), id_json);
    json_object_put(o);
}

START_TEST(h_no_token)
{
    send_rq((rq){.authz = ABSENT});
    ck_assert_int_eq(status, 401);
    const char *ch = rheader("WWW-Authenticate");
    ck_assert_ptr_nonnull(ch);
    ck_assert_ptr_nonnull(strstr(ch, "resource_metadata="));
    ck_assert_ptr_null(strstr(ch, "error="));
    send_rq((rq){.authz = "Bearer not.a.token"});
    ck_assert_int_eq(status, 401);
    ck_assert_ptr_nonnull(strstr(rheader("WWW-Authenticate"), "error=\"invalid_token\""));
}
END_TEST

START_TEST(h_media_types)
{
    send_rq((rq){.ctype = "text/plain"});
    expect_rpc(415, MCPAUTH_RPC_INVALID_REQUEST, "null");
    send_rq((rq){.ctype = "application/jsonx"});
    expect_rpc(415, MCPAUTH_RPC_INVALID_REQUEST, "null");
    send_rq((rq){.accept = "application/json"});
    expect_rpc(406, MCPAUTH_RPC_INVALID_REQUEST, "null");
    send_rq((rq){.accept = ABSENT});
    expect_rpc(406, MCPAUTH_RPC_INVALID_REQUEST, "null");
}
END_TEST

START_TEST(h_origin)
{
    send_rq((rq){.origin = "https://evil.example"});
    expect_rpc(403, MCPAUTH_RPC_INVALID_REQUEST, "null");
    ck_assert_ptr_null(rheader("Access-Control-Allow-Origin"));
    expect_log("event=origin_refused security=1");
    /* an allowed one passes every check and is echoed on the 502 */
    send_rq((rq){.origin = ORIGIN_OK});
    expect_rpc(502, MCPAUTH_RPC_SERVER_ERROR, "7");
    ck_assert_str_eq(rheader("Access-Control-Allow-Origin"), ORIGIN_OK);
    /* the preflight needs no token */
    send_rq((rq){.method = "OPTIONS", .authz = ABSENT, .origin = ORIGIN_OK});
    ck_assert_int_eq(status, 204);
    ck_assert_ptr_nonnull(strstr(rheader("Access-Control-Allow-Headers"), "Mcp-Method"));
}
END_TEST

START_TEST(h_body_too_large)
{
    char big[2048];
    memset(big, ' ', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    memcpy(big, LIST, strlen(LIST)); /* valid JSON, 2 KiB of it */
    send_rq((rq){.body = big});
    expect_rpc(413, MCPAUTH_RPC_INVALID_REQUEST, "null");
    /* a CONTENT_LENGTH that understates the body changes nothing */
    send_rq((rq){.body = big, .length = "10"});
    expect_rpc(413, MCPAUTH_RPC_INVALID_REQUEST, "null");
}
END_TEST

START_TEST(h_not_jsonrpc)
{
    send_rq((rq){.body = "{\"jsonrpc\":\"2.0\",\"id\":1,"});
    expect_rpc(400, MCPAUTH_RPC_PARSE_ERROR, "null");
    send_rq((rq){.body = "{\"jsonrpc\":\"1.0\",\"id\":3,\"method\":\"tools/list\"}"});
    expect_rpc(400, MCPAUTH_RPC_INVALID_REQUEST, "3");
    send_rq((rq){.body = "[1]"});
    ck_assert_int_eq(status, 400);
    expect_log("event=message_refused");
}
END_TEST

START_TEST(h_versions)
{
    send_rq((rq){.version = "1999-01-01"});
    expect_rpc(400, MCPAUTH_RPC_UNSUPPORTED_VERSION, "null");
    /* 2026-07-28: Mcp-Method must be the body's method */
    send_rq((rq){.version = "2026-07-28", .mcp_method = "tools/call"});
    expect_rpc(400, MCPAUTH_RPC_HEADER_MISMATCH, "7");
    send_rq((rq){.version = "2026-07-28", .mcp_method = ABSENT});
    ck_assert_int_eq(status, 400);
    send_rq((rq){.version = "2026-07-28", .mcp_method = "tools/list"});
    expect_rpc(502, MCPAUTH_RPC_SERVER_ERROR, "7");
    /* and neither the GET stream nor DELETE exist there */
    send_rq((rq){.method = "GET", .version = "2026-07-28"});
    expect_rpc(405, MCPAUTH_RPC_INVALID_REQUEST, "null");
    ck_assert_str_eq(rheader("Allow"), "POST, OPTIONS");
    send_rq((rq){.method = "DELETE", .version = "2026-07-28"});
    ck_assert_int_eq(status, 405);
    send_rq((rq){.method = "PUT"});
    expect_rpc(405, MCPAUTH_RPC_INVALID_REQUEST, "null");
    ck_assert_str_eq(rheader("Allow"), "GET, POST, DELETE, OPTIONS");
}
END_TEST

START_TEST(h_policy_scope)
{
    send_rq((rq){.body = DELETE_ALL});
    ck_assert_msg(status == 403, "%d %s", status, BC.m.out);
    const char *ch = rheader("WWW-Authenticate");
    ck_assert_ptr_nonnull(ch);
    ck_assert_ptr_nonnull(strstr(ch, "error=\"insufficient_scope\""));
    ck_assert_ptr_nonnull(strstr(ch, "files:write"));
    /* a batch could hide the guarded call behind an innocent first one */
    send_rq((rq){.version = "2025-03-26", .body = "[" LIST "," DELETE_ALL "]"});
    expect_rpc(400, MCPAUTH_RPC_INVALID_REQUEST, "null");
    use_token("files:read files:write");
    send_rq((rq){.body = DELETE_ALL});
    expect_rpc(502, MCPAUTH_RPC_SERVER_ERROR, "8");
}
END_TEST

/* Binds a session id as the proxy would after an initialize. */
static void bind_session(const char *id, const char *owner)
{
    char path[128], err[256] = "";
    snprintf(path, sizeof path, "%s/proxy.shm", hdir);
    mcpauth_shm *shm = mcpauth__shm_open(path, 65536, 16384, err, sizeof err);
    ck_assert_msg(shm != NULL, "%s", err);
    ck_assert_int_eq(mcpauth__shm_session_bind(shm, id, owner, time(NULL) + 600), 0);
    mcpauth__shm_close(shm);
}

START_TEST(h_session)
{
    bind_session("s-mallory", ISS "\nmallory\napp");
    bind_session("s-alice", ISS "\nalice\napp");
    send_rq((rq){.session = "s-mallory"});
    expect_rpc(404, MCPAUTH_RPC_INVALID_REQUEST, "7");
    expect_log("event=session_hijack_refused security=1");
    send_rq((rq){.session = "s-unknown"});
    expect_rpc(404, MCPAUTH_RPC_INVALID_REQUEST, "7");
    send_rq((rq){.method = "GET", .session = "s-mallory"});
    expect_rpc(404, MCPAUTH_RPC_INVALID_REQUEST, "null");
    send_rq((rq){.session = "s-alice"});
    expect_rpc(502, MCPAUTH_RPC_SERVER_ERROR, "7");
    /* 2026-07-28 has no sessions: the header is ignored, not checked */
    send_rq((rq){.session = "s-mallory", .version = "2026-07-28", .mcp_method = "tools/list"});
    expect_rpc(502, MCPAUTH_RPC_SERVER_ERROR, "7");
}
END_TEST

START_TEST(h_rate_limited)
{
    start("rate_limit = 1\nrate_burst = 2\n");
    /* refused after the rate check, so nothing else is spent */
    send_rq((rq){.ctype = "text/plain"});
    ck_assert_int_eq(status, 415);
    send_rq((rq){.ctype = "text/plain"});
    ck_assert_int_eq(status, 415);
    send_rq((rq){.ctype = "text/plain"});
    expect_rpc(429, MCPAUTH_RPC_SERVER_ERROR, "null");
    ck_assert_ptr_nonnull(rheader("Retry-After"));
    expect_log("event=rate_limited security=1");
}
END_TEST

/* Issue 12: the last proxy_reserve_threads workers (default 8) of a
 * process go only to callers with nothing in flight, so a caller holding
 * streams never takes the very last; with workers to spare, the same
 * caller is held to max_concurrent_per_caller only. */
START_TEST(h_worker_reserve)
{
    send_rq((rq){.spare = "2"});
    expect_rpc(502, MCPAUTH_RPC_SERVER_ERROR, "7"); /* nothing in flight: admitted */
    const char *who[] = {ISS, "alice"};
    unsigned char k[MCPAUTH__RATE_KEY_LEN];
    ck_assert_int_eq(mcpauth__proxy_rate_key("concurrent", "files", who, 2, k), 0);
    mcpauth_shm_slot held;
    ck_assert_int_eq(mcpauth__shm_inflight_acquire(proxy->shm, k, sizeof k, 8, &held), 1);
    send_rq((rq){.spare = "7"});
    expect_rpc(429, MCPAUTH_RPC_SERVER_ERROR, "7");
    ck_assert_str_eq(rheader("Retry-After"), "1");
    expect_log("event=concurrency_limited security=1");
    expect_log("by=reserve");
    send_rq((rq){.spare = "8"}); /* not scarce: the caller cap (8) holds */
    expect_rpc(502, MCPAUTH_RPC_SERVER_ERROR, "7");
    send_rq((rq){0}); /* the binding cannot tell: no reserve */
    expect_rpc(502, MCPAUTH_RPC_SERVER_ERROR, "7");
    mcpauth__shm_inflight_release(proxy->shm, &held);
    send_rq((rq){.spare = "0"});
    expect_rpc(502, MCPAUTH_RPC_SERVER_ERROR, "7");
}
END_TEST

START_TEST(h_backend_down)
{
    send_rq((rq){0});
    expect_rpc(502, MCPAUTH_RPC_SERVER_ERROR, "7");
    ck_assert_str_eq(rheader("Cache-Control"), "no-store");
    expect_log("event=backend_failed");
    send_rq((rq){.body = "{\"jsonrpc\":\"2.0\",\"id\":\"a-1\",\"method\":\"ping\"}"});
    expect_rpc(502, MCPAUTH_RPC_SERVER_ERROR, "\"a-1\"");
    send_rq((rq){.method = "GET"});
    expect_rpc(502, MCPAUTH_RPC_SERVER_ERROR, "null");
}
END_TEST

/* The scope header line (a 3000-byte header name, a 1500-byte scope) does
 * not fit the 4 KiB line: the old code sent it cut short, so the backend
 * saw fewer scopes than the token holds.  Now nothing is sent: a 500,
 * logged. */
START_TEST(h_identity_too_long)
{
    char extra[3200] = "scope_header = X-";
    size_t n = strlen(extra);
    memset(extra + n, 'S', 3000);
    strcpy(extra + n + 3000, "\n");
    start(extra);
    char scope[1600] = "files:read";
    while (strlen(scope) < 1500)
        strcat(scope, " files:extra");
    use_token(scope);
    send_rq((rq){0});
    expect_rpc(500, MCPAUTH_RPC_INTERNAL_ERROR, "7");
    expect_log("event=backend_header_too_long");
    /* the same scope under the usual name fits, and passes */
    start(NULL);
    send_rq((rq){0});
    expect_rpc(502, MCPAUTH_RPC_SERVER_ERROR, "7");
}
END_TEST

/* A client header longer than a forwarded line: the old code forwarded it
 * cut short (an Mcp-Name or cookie the client never sent).  Now a 431. */
START_TEST(h_forwarded_too_long)
{
    char *big = malloc(5001);
    ck_assert_ptr_nonnull(big);
    memset(big, 'n', 5000);
    big[5000] = '\0';
    send_rq((rq){.mcp_name = big});
    expect_rpc(431, MCPAUTH_RPC_INVALID_REQUEST, "7");
    expect_log("reason=\"header too long\" header=Mcp-Name");
    /* cookies are forwarded only when configured */
    send_rq((rq){.cookie = big});
    expect_rpc(502, MCPAUTH_RPC_SERVER_ERROR, "7");
    start("forward_cookies = yes\n");
    send_rq((rq){.cookie = big});
    expect_rpc(431, MCPAUTH_RPC_INVALID_REQUEST, "7");
    free(big);
}
END_TEST

/* Any Origin allowed: the one echoed is the one sent, whole (the old code
 * copied it into 512 bytes and echoed the first 511). */
START_TEST(h_origin_echoed_whole)
{
    origins = "*";
    start(NULL);
    char origin[700] = "https://";
    while (strlen(origin) < 600)
        strcat(origin, "sub.");
    strcat(origin, "example.com");
    send_rq((rq){.method = "OPTIONS", .authz = ABSENT, .origin = origin});
    ck_assert_int_eq(status, 204);
    ck_assert_str_eq(rheader("Access-Control-Allow-Origin"), origin);
}
END_TEST

/* A JSON-RPC id of 170 control characters is 1 KiB once escaped: the old
 * 512-byte error body answered it with "id":null, which the client cannot
 * match to its request. */
START_TEST(h_long_id_kept)
{
    char body[2048] = "{\"jsonrpc\":\"2.0\",\"method\":\"ping\",\"id\":\"";
    for (int i = 0; i < 170; i++)
        strcat(body, "\\u0001");
    strcat(body, "\"}");
    cfg->max_body_bytes = 4096; /* read per request */
    send_rq((rq){.body = body});
    ck_assert_msg(status == 502, "%d %s", status, BC.m.out);
    json_object *o = json_tokener_parse(memhttp_body(&BC.m)), *id;
    ck_assert_ptr_nonnull(o);
    ck_assert(json_object_object_get_ex(o, "id", &id));
    ck_assert(json_object_is_type(id, json_type_string));
    ck_assert_int_eq(json_object_get_string_len(id), 170);
    json_object_put(o);
}
END_TEST

START_TEST(h_view_read_once)
{
    const char *p[] = {"REQUEST_METHOD", "POST", "REQUEST_URI", PATH,
                       "HTTP_MCP_PROTOCOL_VERSION", "2026-07-28", "HTTP_MCP_SESSION_ID", "s-1",
                       "HTTP_MCP_METHOD", "tools/call", "HTTP_MCP_NAME", "echo", NULL};
    memhttp m;
    mcpauth_request req;
    mcpauth_response resp;
    memhttp_setup(&m, p, &req, &resp);
    mcpauth__proxy_view v;
    mcpauth__proxy_view_read(&req, &v);
    ck_assert(v.post && !v.get && !v.del && !v.options && v.era2026);
    ck_assert_ptr_null(v.session); /* no sessions in 2026-07-28 */
    ck_assert_str_eq(v.mcp_method, "tools/call");
    ck_assert_str_eq(v.mcp_name, "echo");
    p[5] = "2025-11-25";
    mcpauth__proxy_view_read(&req, &v);
    ck_assert(!v.era2026);
    ck_assert_str_eq(v.session, "s-1");
}
END_TEST

Suite *proxy_suite(void)
{
    Suite *s = suite_create("proxy");
    TCase *tc = tcase_create("policy");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, policy_union);
    tcase_add_loop_test_raise_signal(tc, policy_oom_aborts, SIGABRT, 1, 7);
    suite_add_tcase(s, tc);
    tc = tcase_create("rate_key");
    tcase_add_test(tc, rate_key_long_subject);
    tcase_add_test(tc, rate_key_unambiguous);
    suite_add_tcase(s, tc);
    tc = tcase_create("handle");
    tcase_add_unchecked_fixture(tc, keys_up, keys_down);
    tcase_add_checked_fixture(tc, handle_setup, handle_teardown);
    tcase_add_test(tc, h_no_token);
    tcase_add_test(tc, h_media_types);
    tcase_add_test(tc, h_origin);
    tcase_add_test(tc, h_body_too_large);
    tcase_add_test(tc, h_not_jsonrpc);
    tcase_add_test(tc, h_versions);
    tcase_add_test(tc, h_policy_scope);
    tcase_add_test(tc, h_session);
    tcase_add_test(tc, h_rate_limited);
    tcase_add_test(tc, h_backend_down);
    tcase_add_test(tc, h_worker_reserve);
    tcase_add_test(tc, h_identity_too_long);
    tcase_add_test(tc, h_forwarded_too_long);
    tcase_add_test(tc, h_origin_echoed_whole);
    tcase_add_test(tc, h_long_id_kept);
    tcase_add_test(tc, h_view_read_once);
    suite_add_tcase(s, tc);
    return s;
}
