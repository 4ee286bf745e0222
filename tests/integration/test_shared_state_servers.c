/* mcpauth-proxy with shared_state = Redis on real lighttpd and real Apache
 * (issue 17): the proxy starts while Redis is down; the rate limit and the
 * session bindings live in Redis (their keys are there); Redis stopped:
 * requests without a session pass (shared_state_fail_rate = open), those
 * with one get 503 and Retry-After (shared_state_fail_sessions = closed),
 * and the outage is logged; Redis back: the proxy recovers by itself.
 * With shared_state_fail_rate = closed, no Redis means 503 for all.
 * A private redis-server per test, started and stopped by PID. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#include "../support/redistest.h"
#include "../support/tokens.h"
#include "harness.h"

/* one port per server kind: the two cases never share a Redis */
#define PORT_LIGHTTPD redistest_port(0)
#define PORT_APACHE redistest_port(1)
#define PORT_LIGHTTPD_CLOSED redistest_port(2)
#define PORT_APACHE_CLOSED redistest_port(3)

static const char conf_tmpl[] =
    "runtime_dir = @DIR@\n"
    "backend_timeout = 3\n"
    "log_level = info\n"
    "shared_state = redis://127.0.0.1:%d/0\n"
    "shared_state_timeout = 200\n"
    "shared_state_fail_rate = %s\n"
    "shared_state_fail_sessions = closed\n"
    "[resource files]\n"
    "uri = http://127.0.0.1:@PORT@/mcp/files\n"
    "authorization_servers = http://127.0.0.1:@PORT@\n"
    "backend = http://127.0.0.1:%d/mcp\n"
    "rate_limit = 1000\nrate_burst = 1000\n"
    "[resource limited]\n"
    "uri = http://127.0.0.1:@PORT@/mcp/limited\n"
    "authorization_servers = http://127.0.0.1:@PORT@\n"
    "backend = http://127.0.0.1:%d/mcp\n"
    "rate_limit = 1\nrate_burst = 2\n"
    "[issuer local]\n"
    "issuer = http://127.0.0.1:@PORT@\n"
    "jwks_file = @DIR@/jwks.json\n";

static const char lighttpd_extra[] =
    "var.mcpauth_proxy_prefix = \"/mcp\"\n"
    "include \"@SRCDIR@/lighttpd/mcpauth-proxy.conf\"\n";

static const char apache_extra[] =
    "Define MCPAUTH_PROXY_LOCATION /mcp\n"
    "Include \"@SRCDIR@/apache/mcpauth-proxy.conf\"\n";

static tk_key *rsa;
static char *jwks;
static th_server srv;
static pid_t backend_pid = -1;
static int backend_port, redis_port;
static char backend_dir[] = "/tmp/mcpauth-ssbackend-XXXXXX";

static void start(th_kind kind, int rate_closed)
{
    redis_port = kind == TH_LIGHTTPD ? (rate_closed ? PORT_LIGHTTPD_CLOSED : PORT_LIGHTTPD)
                                     : (rate_closed ? PORT_APACHE_CLOSED : PORT_APACHE);
    backend_pid = th_start_example_server(backend_dir, &backend_port);
    if (backend_pid < 0)
        exit(EXIT_FAILURE);
    char *conf = NULL;
    if (asprintf(&conf, conf_tmpl, redis_port, rate_closed ? "closed" : "open", backend_port,
                 backend_port) < 0)
        exit(EXIT_FAILURE);
    const char *files[] = {"jwks.json", jwks, NULL};
    th_options o = {conf, kind == TH_LIGHTTPD ? lighttpd_extra : apache_extra, files, NULL};
    int rc = th_start_ex(&srv, kind, &o);
    free(conf);
    if (rc != 0) {
        th_kill(backend_pid);
        exit(EXIT_FAILURE);
    }
    th_give_to_apache(&srv); /* proxy.shm (requests in flight) stays in runtime_dir */
}
static void start_lighttpd(void) { start(TH_LIGHTTPD, 0); }
static void start_apache(void) { start(TH_APACHE, 0); }
static void start_lighttpd_closed(void) { start(TH_LIGHTTPD, 1); }
static void start_apache_closed(void) { start(TH_APACHE, 1); }
static void stop(void)
{
    th_stop(&srv);
    th_kill(backend_pid);
    backend_pid = -1;
}

/* POST body to path with token; session and version may be NULL. */
static void post(const char *path, const char *token, const char *version, const char *session,
                 const char *body, th_resp *r)
{
    char url[512], h[5][8192];
    const char *hdrs[8];
    int n = 0;
    snprintf(url, sizeof url, "%s%s", srv.base, path);
    snprintf(h[0], sizeof h[0], "Authorization: Bearer %s", token);
    hdrs[n++] = h[0];
    hdrs[n++] = "Accept: application/json, text/event-stream";
    hdrs[n++] = "Content-Type: application/json";
    if (version) {
        snprintf(h[1], sizeof h[1], "MCP-Protocol-Version: %s", version);
        hdrs[n++] = h[1];
        if (!strcmp(version, "2026-07-28"))
            hdrs[n++] = "Mcp-Method: ping";
    }
    if (session) {
        snprintf(h[2], sizeof h[2], "Mcp-Session-Id: %s", session);
        hdrs[n++] = h[2];
    }
    hdrs[n] = NULL;
    ck_assert_msg(th_http_ex("POST", url, hdrs, body, r) == 0, "no response from %s", url);
}

#define PING "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}"
#define INIT_BODY "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{\"name\":\"t\",\"version\":\"1\"}}}"

/* A 2026-07-28 ping (no session): its status. */
static long ping(const char *path, const char *token)
{
    th_resp r;
    post(path, token, "2026-07-28", NULL, PING, &r);
    long st = r.status;
    th_resp_free(&r);
    return st;
}

/* initialize → 1 with the session id, 0 when refused. */
static int initialize(const char *token, char *session, size_t cap)
{
    th_resp r;
    post("/mcp/files", token, NULL, NULL, INIT_BODY, &r);
    const char *sid = r.status == 200 ? th_hdr(&r, "Mcp-Session-Id") : NULL;
    if (sid)
        snprintf(session, cap, "%s", sid);
    th_resp_free(&r);
    return sid != NULL;
}

/* A ping inside a session (2025-06-18): its status; Retry-After into ra. */
static long session_ping(const char *token, const char *session, char *ra, size_t racap)
{
    th_resp r;
    post("/mcp/files", token, "2025-06-18", session, PING, &r);
    long st = r.status;
    const char *v = th_hdr(&r, "Retry-After");
    if (ra)
        snprintf(ra, racap, "%s", v ? v : "");
    th_resp_free(&r);
    return st;
}

static long long redis_count(const char *pattern)
{
    redisContext *c = redisConnect("127.0.0.1", redis_port);
    ck_assert_msg(c && !c->err, "cannot reach the test's redis-server");
    redisReply *x = redisCommand(c, "KEYS %s", pattern);
    ck_assert_ptr_nonnull(x);
    long long n = x->type == REDIS_REPLY_ARRAY ? (long long)x->elements : -1;
    freeReplyObject(x);
    redisFree(c);
    return n;
}

START_TEST(redis_shared_state)
{
    const char *name = th_kind_name(srv.kind);
    char rdir[400];
    snprintf(rdir, sizeof rdir, "%s/redis", backend_dir);
    char *alice = th_token(&srv, rsa, "/mcp/files", "", NULL);
    char *bob = th_token(&srv, rsa, "/mcp/files", "", "bob");
    char *lim = th_token(&srv, rsa, "/mcp/limited", "", NULL);

    /* Redis not there yet: the proxy runs, rate limits fail open */
    ck_assert_msg(!redistest_ping(redis_port, 100), "port %d is taken", redis_port);
    ck_assert_int_eq(ping("/mcp/files", alice), 200);

    pid_t rpid = redistest_spawn(rdir, redis_port);
    ck_assert_msg(rpid > 0, "redis-server did not start");
    /* back within the proxy's back-off (at most 1 s): a session that
     * works needs its binding written to Redis and read back */
    double t0 = th_now();
    char sid[256] = "";
    int up = 0;
    while (!(up = initialize(alice, sid, sizeof sid) && session_ping(alice, sid, NULL, 0) == 200) &&
           th_now() - t0 < 5)
        usleep(100000);
    ck_assert_msg(up, "%s: no working session with Redis up", name);

    /* the rate limit counted in Redis: burst 2, then 429 */
    int ok = 0, limited = 0;
    for (int i = 0; i < 4; i++) {
        long st = ping("/mcp/limited", lim);
        ok += st == 200;
        limited += st == 429;
    }
    ck_assert_msg(ok == 2 && limited == 2, "%s: %d passed, %d limited", name, ok, limited);
    ck_assert_int_ge(redis_count("mcpauth:rate:*"), 2); /* address and subject buckets */

    /* the binding is a Redis key, hashed; bob cannot use alice's session */
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)sid, strlen(sid), md);
    char key[16 + 65] = "mcpauth:session:";
    for (int i = 0; i < 32; i++)
        snprintf(key + 16 + 2 * i, 3, "%02x", md[i]);
    ck_assert_int_eq(redis_count(key), 1);
    ck_assert_int_eq(session_ping(alice, sid, NULL, 0), 200);
    ck_assert_int_eq(session_ping(bob, sid, NULL, 0), 404);

    /* Redis stopped: sessions fail closed (503 + Retry-After), plain
     * requests pass (rate limits fail open), quickly, and it is logged */
    redistest_kill(rpid);
    char ra[64];
    t0 = th_now();
    ck_assert_int_eq(session_ping(alice, sid, ra, sizeof ra), 503);
    ck_assert_msg(ra[0], "%s: 503 without Retry-After", name);
    /* a new session cannot be bound to its owner: not handed out (503,
     * no Mcp-Session-Id), rather than refused at its first use */
    {
        th_resp r;
        post("/mcp/files", alice, NULL, NULL, INIT_BODY, &r);
        ck_assert_msg(r.status == 503, "%s: initialize during the outage: %ld", name, r.status);
        ck_assert_msg(th_hdr(&r, "Retry-After") != NULL, "%s: initialize 503 without Retry-After",
                      name);
        ck_assert_msg(th_hdr(&r, "Mcp-Session-Id") == NULL, "%s: a session id was handed out",
                      name);
        ck_assert_msg(r.body && strstr(r.body, "\"jsonrpc\""), "%s: not a JSON-RPC error: %s",
                      name, r.body ? r.body : "");
        th_resp_free(&r);
    }
    ck_assert_int_eq(ping("/mcp/files", alice), 200);
    ck_assert_int_eq(ping("/mcp/limited", lim), 200); /* open: not counted */
    ck_assert_msg(th_now() - t0 < 3, "%s: requests during the outage took %.2f s", name,
                  th_now() - t0);
    ck_assert_msg(th_log_count(&srv, "event=shared_state_unavailable") > 0,
                  "%s: outage not logged", name);

    /* back: a new session works (the old binding died with that Redis) */
    rpid = redistest_spawn(rdir, redis_port);
    ck_assert_msg(rpid > 0, "redis-server did not restart");
    t0 = th_now();
    while (!(up = initialize(alice, sid, sizeof sid) && session_ping(alice, sid, NULL, 0) == 200) &&
           th_now() - t0 < 5)
        usleep(100000);
    ck_assert_msg(up, "%s: no recovery after Redis came back", name);
    ck_assert_int_eq(session_ping(bob, sid, NULL, 0), 404);
    redistest_kill(rpid);
    free(alice);
    free(bob);
    free(lim);
}
END_TEST

/* shared_state_fail_rate = closed: without Redis every rate-limited
 * request is refused with 503 and Retry-After (the address limit comes
 * before the token is looked at), with it they pass and are counted. */
START_TEST(rate_fail_closed)
{
    const char *name = th_kind_name(srv.kind);
    char rdir[400];
    snprintf(rdir, sizeof rdir, "%s/redis-closed", backend_dir);
    char *alice = th_token(&srv, rsa, "/mcp/files", "", NULL);
    ck_assert_msg(!redistest_ping(redis_port, 100), "port %d is taken", redis_port);
    th_resp r;
    post("/mcp/files", alice, "2026-07-28", NULL, PING, &r);
    ck_assert_msg(r.status == 503, "%s: %ld without Redis, want 503", name, r.status);
    ck_assert_ptr_nonnull(th_hdr(&r, "Retry-After"));
    ck_assert_ptr_nonnull(strstr(r.body, "\"error\""));
    th_resp_free(&r);

    pid_t rpid = redistest_spawn(rdir, redis_port);
    ck_assert_msg(rpid > 0, "redis-server did not start");
    double t0 = th_now();
    long st;
    while ((st = ping("/mcp/files", alice)) != 200 && th_now() - t0 < 5)
        usleep(100000);
    ck_assert_msg(st == 200, "%s: %ld with Redis up", name, st);
    ck_assert_int_ge(redis_count("mcpauth:rate:*"), 2);
    redistest_kill(rpid);
    ck_assert_int_eq(ping("/mcp/files", alice), 503);
    free(alice);
}
END_TEST

static TCase *server_case(const char *name, void (*setup)(void), int rate_closed)
{
    TCase *tc = tcase_create(name);
    tcase_add_unchecked_fixture(tc, setup, stop);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, rate_closed ? rate_fail_closed : redis_shared_state);
    return tc;
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (!mkdtemp(backend_dir))
        return EXIT_FAILURE;
    rsa = tk_key_new("RS256", "rsa1", 0);
    tk_key *pub[] = {rsa};
    jwks = tk_jwks(pub, 1);
    Suite *s = suite_create("shared-state-servers");
    suite_add_tcase(s, server_case("lighttpd", start_lighttpd, 0));
    suite_add_tcase(s, server_case("apache", start_apache, 0));
    suite_add_tcase(s, server_case("lighttpd-rate-closed", start_lighttpd_closed, 1));
    suite_add_tcase(s, server_case("apache-rate-closed", start_apache_closed, 1));
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    free(jwks);
    tk_key_free(rsa);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", backend_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup failed\n");
    curl_global_cleanup();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
