/* Faults (issue 15) around mcpauth-proxy on real lighttpd and real Apache:
 * a proxy process killed (SIGKILL) under load is replaced by the web
 * server, only its requests in flight fail, and the state the processes
 * share through runtime_dir (sessions, the per-caller slots of
 * max_concurrent_per_caller) outlives it. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <curl/curl.h>

#include "../support/tokens.h"
#include "harness.h"

static const char conf_tmpl[] =
    "runtime_dir = @DIR@\n"
    "backend_timeout = 5\n"
    "log_level = info\n"
    "[resource files]\n"
    "uri = http://127.0.0.1:@PORT@/mcp/files\n"
    "authorization_servers = http://127.0.0.1:@PORT@\n"
    "backend = http://127.0.0.1:%d/mcp\n"
    "rate_limit = 0\nrate_limit_address = 0\n" /* the load is not a flood */
    "[resource capped]\n"
    "uri = http://127.0.0.1:@PORT@/mcp/capped\n"
    "authorization_servers = http://127.0.0.1:@PORT@\n"
    "backend = http://127.0.0.1:%d/mcp\n"
    "max_concurrent_per_caller = 1\n"
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
static int backend_port;
static char backend_dir[] = "/tmp/mcpauth-faults-XXXXXX";

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void start(th_kind kind)
{
    backend_pid = th_start_example_server(backend_dir, &backend_port);
    if (backend_pid < 0)
        exit(EXIT_FAILURE);
    char *conf = NULL;
    if (asprintf(&conf, conf_tmpl, backend_port, backend_port) < 0)
        exit(EXIT_FAILURE);
    const char *files[] = {"jwks.json", jwks, NULL};
    th_options o = {conf, kind == TH_LIGHTTPD ? lighttpd_extra : apache_extra, files, NULL};
    int rc = th_start_ex(&srv, kind, &o);
    free(conf);
    if (rc != 0) {
        th_kill(backend_pid);
        exit(EXIT_FAILURE);
    }
    if (kind == TH_APACHE && geteuid() == 0) {
        /* the proxy's runtime_dir must be writable by the server's user */
        char cmd[600];
        snprintf(cmd, sizeof cmd, "chown www-data: %s 2>/dev/null || true", srv.dir);
        if (system(cmd) != 0)
            fprintf(stderr, "chown failed\n");
    }
}
static void start_lighttpd(void) { start(TH_LIGHTTPD); }
static void start_apache(void) { start(TH_APACHE); }
static void stop(void)
{
    th_stop(&srv);
    th_kill(backend_pid);
    backend_pid = -1;
}

static char *token_for(const char *path, const char *sub)
{
    char aud[256];
    snprintf(aud, sizeof aud, "%s%s", srv.base, path);
    char *c = tk_claims(srv.base, aud, "", 600);
    char *p = strstr(c, "\"alice\""), *c2 = NULL;
    if (p && asprintf(&c2, "%.*s\"%s\"%s", (int)(p - c), c, sub, p + 7) < 0)
        c2 = NULL;
    char *t = tk_mint(rsa, c2 ? c2 : c, NULL);
    free(c);
    free(c2);
    return t;
}

/* One POST; 0 when an HTTP response came whole (status in r). */
static int post(const char *path, const char *token, const char *version, const char *session,
                const char *method, const char *body, th_resp *r)
{
    char url[512], auth[8192], ver[128], sid[512], mm[128];
    const char *h[8];
    int n = 0;
    snprintf(url, sizeof url, "%s%s", srv.base, path);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    h[n++] = auth;
    h[n++] = "Accept: application/json, text/event-stream";
    h[n++] = "Content-Type: application/json";
    if (version) {
        snprintf(ver, sizeof ver, "MCP-Protocol-Version: %s", version);
        h[n++] = ver;
    }
    if (session) {
        snprintf(sid, sizeof sid, "Mcp-Session-Id: %s", session);
        h[n++] = sid;
    }
    if (method) {
        snprintf(mm, sizeof mm, "Mcp-Method: %s", method);
        h[n++] = mm;
    }
    h[n] = NULL;
    return th_http("POST", url, h, body, r);
}

#define INIT_BODY                                                                                  \
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":"   \
    "\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{\"name\":\"t\",\"version\":\"1\"}}}"
#define PING "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}"

/* A 2025-06-18 session through the proxy: its id in sid. */
static void open_session(const char *token, char *sid, size_t cap)
{
    th_resp r;
    ck_assert_int_eq(post("/mcp/files", token, NULL, NULL, NULL, INIT_BODY, &r), 0);
    ck_assert_msg(r.status == 200, "initialize: %ld %s", r.status, r.body);
    ck_assert_msg(th_header(&r, "Mcp-Session-Id", sid, cap) != NULL, "no session id:\n%s",
                  r.headers);
    th_resp_free(&r);
}

static long session_call(const char *token, const char *sid)
{
    th_resp r;
    long st = post("/mcp/files", token, "2025-06-18", sid, NULL,
                   "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}", &r) == 0
                  ? r.status
                  : -1;
    th_resp_free(&r);
    return st;
}

/* A client sending pings (a few ms apart: a load, not a flood on a shared
 * machine) until told to stop, with its figures around the kill. */
enum { CLIENTS = 3, FAIL_MAX = 16 };
static double t_kill; /* 0 until the kill; atomic */
typedef struct {
    const char *token;
    int stop; /* atomic */
    int total, failed, ok_after, late_failures;
    double first_ok_after, slowest;
    struct {
        double at; /* start, from the kill */
        long status; /* -1: no whole response */
    } fail[FAIL_MAX];
} load_arg;

static void *load(void *p)
{
    load_arg *a = p;
    a->first_ok_after = -1;
    while (!__atomic_load_n(&a->stop, __ATOMIC_SEQ_CST)) {
        th_resp r;
        double t0 = now_s(), k;
        int rc = post("/mcp/files", a->token, "2026-07-28", NULL, "ping", PING, &r);
        double took = now_s() - t0;
        __atomic_load(&t_kill, &k, __ATOMIC_SEQ_CST);
        int ok = rc == 0 && r.status == 200;
        a->total++;
        a->slowest = took > a->slowest ? took : a->slowest;
        if (!ok) {
            if (a->failed < FAIL_MAX) {
                a->fail[a->failed].at = k > 0 ? t0 - k : -1e9; /* -1e9: before the kill */
                a->fail[a->failed].status = rc == 0 ? r.status : -1;
            }
            a->failed++;
            a->late_failures += k > 0 && t0 > k + 3.0;
        } else if (k > 0 && t0 > k) {
            if (a->ok_after++ == 0)
                a->first_ok_after = t0 - k;
        }
        th_resp_free(&r);
        usleep(5 * 1000);
    }
    return NULL;
}

static int contains(const pid_t *set, int n, pid_t p)
{
    for (int i = 0; i < n; i++)
        if (set[i] == p)
            return 1;
    return 0;
}

START_TEST(worker_killed_under_load)
{
    char *t = token_for("/mcp/files", "kill-load");
    char sid[256];
    open_session(t, sid, sizeof sid);
    ck_assert_int_eq(session_call(t, sid), 200);

    static load_arg args[CLIENTS];
    pthread_t th[CLIENTS];
    double zero = 0;
    __atomic_store(&t_kill, &zero, __ATOMIC_SEQ_CST);
    for (int i = 0; i < CLIENTS; i++) {
        memset(&args[i], 0, sizeof args[i]);
        args[i].token = t;
        pthread_create(&th[i], NULL, load, &args[i]);
    }
    usleep(1500 * 1000); /* the load is on */
    pid_t before[64];
    int nb = th_programs(srv.dir, "mcpauth-proxy", before, 64);
    ck_assert_int_gt(nb, 0);
    pid_t victim = before[nb / 2];
    double k = now_s();
    __atomic_store(&t_kill, &k, __ATOMIC_SEQ_CST);
    ck_assert_int_eq(kill(victim, SIGKILL), 0);
    usleep(5000 * 1000); /* the load goes on */
    for (int i = 0; i < CLIENTS; i++)
        __atomic_store_n(&args[i].stop, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < CLIENTS; i++)
        pthread_join(th[i], NULL);

    int total = 0, failed = 0, ok_after = 0, late_failures = 0;
    double slowest = 0, first_ok_after = 1e9;
    char fails[1024] = "";
    for (int i = 0; i < CLIENTS; i++) {
        load_arg *a = &args[i];
        total += a->total;
        failed += a->failed;
        ok_after += a->ok_after;
        late_failures += a->late_failures;
        slowest = a->slowest > slowest ? a->slowest : slowest;
        if (a->ok_after && a->first_ok_after < first_ok_after)
            first_ok_after = a->first_ok_after;
        for (int j = 0; j < a->failed && j < FAIL_MAX; j++) {
            size_t l = strlen(fails);
            snprintf(fails + l, sizeof fails - l, " [%ld at %+.2f s]", a->fail[j].status,
                     a->fail[j].at);
        }
    }
    fprintf(stderr, "%s: %d requests, %d failed%s; %d proxy processes before, pid %d killed\n",
            th_kind_name(srv.kind), total, failed, fails, nb, (int)victim);
    ck_assert_msg(failed <= CLIENTS, "%s: %d of %d requests failed (at most %d were in flight):%s",
                  th_kind_name(srv.kind), failed, total, CLIENTS, fails);
    ck_assert_msg(ok_after > 0 && first_ok_after < 3.0,
                  "%s: no request succeeded within 3 s of the kill (%d after it)",
                  th_kind_name(srv.kind), ok_after);
    ck_assert_msg(late_failures == 0, "%s: %d requests failed more than 3 s after the kill:%s",
                  th_kind_name(srv.kind), late_failures, fails);
    ck_assert_msg(slowest < 10.0, "%s: a request took %.1f s", th_kind_name(srv.kind), slowest);

    /* the killed process is gone, and lighttpd runs as many as before */
    pid_t after[64];
    int na = 0;
    for (int i = 0; i < 50; i++) {
        na = th_programs(srv.dir, "mcpauth-proxy", after, 64);
        if (!contains(after, na, victim) && (srv.kind != TH_LIGHTTPD || na >= nb))
            break;
        usleep(100 * 1000);
    }
    ck_assert_msg(!contains(after, na, victim), "%s: the killed process is still there",
                  th_kind_name(srv.kind));
    if (srv.kind == TH_LIGHTTPD)
        ck_assert_msg(na >= nb, "lighttpd: %d proxy processes after the kill, %d before", na, nb);
    else
        ck_assert_int_gt(na, 0);

    /* the session made before the kill is known to every process */
    for (int i = 0; i < 6; i++) {
        long st = session_call(t, sid);
        ck_assert_msg(st == 200, "%s: call %d in the session from before the kill: %ld",
                      th_kind_name(srv.kind), i + 1, st);
    }
    free(t);
}
END_TEST

typedef struct {
    const char *token;
    int rc;
    long status;
    double t_end;
} stream_arg;

static void *long_stream(void *p)
{
    stream_arg *a = p;
    char url[512], auth[8192];
    snprintf(url, sizeof url, "%s/mcp/capped", srv.base);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", a->token);
    const char *h[] = {auth, "Accept: application/json, text/event-stream",
                       "Content-Type: application/json", "MCP-Protocol-Version: 2026-07-28",
                       "Mcp-Method: tools/call", "Mcp-Name: countdown", NULL};
    th_resp r;
    a->rc = th_http("POST", url, h,
                    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":"
                    "\"countdown\",\"arguments\":{\"n\":40,\"delay_ms\":500}}}",
                    &r);
    a->status = r.status;
    a->t_end = now_s();
    th_resp_free(&r);
    return NULL;
}

/* The slot a caller's stream holds (max_concurrent_per_caller = 1 here)
 * lives in runtime_dir; when the process serving the stream is killed, the
 * slot must not lock the caller out: the dead process's slot is reclaimed. */
START_TEST(killed_stream_frees_its_slot)
{
    char *t = token_for("/mcp/capped", "kill-cap");
    stream_arg a = {.token = t};
    pthread_t th;
    pthread_create(&th, NULL, long_stream, &a);
    usleep(1500 * 1000); /* the stream is open and holds the caller's one slot */
    th_resp r;
    ck_assert_int_eq(post("/mcp/capped", t, "2026-07-28", NULL, "ping", PING, &r), 0);
    ck_assert_msg(r.status == 429, "%s: a second request while the stream runs got %ld",
                  th_kind_name(srv.kind), r.status);
    th_resp_free(&r);
    /* which process serves the stream is not known from here: kill each */
    pid_t p[64];
    int n = th_programs(srv.dir, "mcpauth-proxy", p, 64);
    ck_assert_int_gt(n, 0);
    double t_sig = now_s();
    for (int i = 0; i < n && i < 64; i++)
        kill(p[i], SIGKILL);
    pthread_join(th, NULL);
    ck_assert_msg(a.t_end - t_sig < 10.0, "%s: the stream's client waited %.1f s after the kill",
                  th_kind_name(srv.kind), a.t_end - t_sig);
    /* served again within a few seconds, not 429 for the dead slot */
    long st = -1;
    for (int i = 0; i < 50 && st != 200; i++) {
        if (post("/mcp/capped", t, "2026-07-28", NULL, "ping", PING, &r) == 0)
            st = r.status;
        th_resp_free(&r);
        if (st != 200)
            usleep(100 * 1000);
    }
    ck_assert_msg(st == 200, "%s: after the kill the caller got %ld", th_kind_name(srv.kind), st);
    free(t);
}
END_TEST

static TCase *server_case(const char *name, void (*setup)(void))
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, setup, stop);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, worker_killed_under_load);
    tcase_add_test(tc, killed_stream_frees_its_slot);
    return tc;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (!mkdtemp(backend_dir))
        return EXIT_FAILURE;
    rsa = tk_key_new("RS256", "rsa1", 0);
    tk_key *pub[] = {rsa};
    jwks = tk_jwks(pub, 1);
    Suite *s = suite_create("faults-servers");
    suite_add_tcase(s, server_case("lighttpd", start_lighttpd));
    suite_add_tcase(s, server_case("apache", start_apache));
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
