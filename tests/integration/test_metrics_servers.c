/* Metrics on real lighttpd and real Apache: mcpauth-proxy counts into
 * runtime_dir/metrics.shm, mcpauth-metadata serves the figures at
 * /mcpauth/metrics (the route of the shipped snippets).  Known requests
 * (3 tokens for another audience, allowed ones, a rate-limited one) move
 * the counters by exactly that; the text format is checked line by line;
 * other methods, a query string and an address not in metrics_allow get
 * 403 and no figure. */
#define _GNU_SOURCE
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>
#include <curl/curl.h>

#include "../support/tokens.h"
#include "harness.h"

static const char conf_tmpl[] =
    "runtime_dir = @DIR@\n"
    "log_level = info\n"
    "[resource files]\n"
    "uri = http://127.0.0.1:@PORT@/mcp/files\n"
    "authorization_servers = http://127.0.0.1:@PORT@\n"
    "backend = http://127.0.0.1:%d/mcp\n"
    "rate_limit = 1\nrate_burst = 2\n"
    "[resource other]\n"
    "uri = http://127.0.0.1:@PORT@/mcp/other\n"
    "authorization_servers = http://127.0.0.1:@PORT@\n"
    "backend = http://127.0.0.1:%d/mcp\n"
    "[issuer local]\n"
    "issuer = http://127.0.0.1:@PORT@\n"
    "jwks_file = @DIR@/jwks.json\n";

/* Only 192.0.2.0/24 may read the metrics: loopback is forbidden. */
static const char forbidden_tmpl[] =
    "runtime_dir = @DIR@\n"
    "metrics_allow = 192.0.2.0/24\n"
    "[resource files]\n"
    "uri = http://127.0.0.1:@PORT@/mcp/files\n"
    "authorization_servers = http://127.0.0.1:@PORT@\n"
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
static char backend_dir[] = "/tmp/mcpauth-metrics-backend-XXXXXX";

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
    th_give_to_apache(&srv); /* runtime_dir must be writable by the server's user */
}
static void start_lighttpd(void) { start(TH_LIGHTTPD); }
static void start_apache(void) { start(TH_APACHE); }

static void start_forbidden(th_kind kind)
{
    const char *files[] = {"jwks.json", jwks, NULL};
    th_options o = {forbidden_tmpl, NULL, files, NULL};
    if (th_start_ex(&srv, kind, &o) != 0)
        exit(EXIT_FAILURE);
    th_give_to_apache(&srv); /* runtime_dir must be writable by the server's user */
}
static void start_forbidden_lighttpd(void) { start_forbidden(TH_LIGHTTPD); }
static void start_forbidden_apache(void) { start_forbidden(TH_APACHE); }

static void stop(void)
{
    th_stop(&srv);
    th_kill(backend_pid);
    backend_pid = -1;
}

#define PING "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}"

static long ping(const char *token)
{
    char url[512], auth[8192];
    snprintf(url, sizeof url, "%s/mcp/files", srv.base);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    const char *h[] = {auth, "Accept: application/json, text/event-stream",
                       "Content-Type: application/json", "MCP-Protocol-Version: 2026-07-28",
                       "Mcp-Method: ping", NULL};
    th_resp r;
    ck_assert_msg(th_http("POST", url, h, PING, &r) == 0, "no response from %s", url);
    long status = r.status;
    th_resp_free(&r);
    return status;
}

/* Every line of the 0.0.4 text format: HELP, TYPE, or a sample with
 * well-formed labels and a number. */
static void check_format(const char *text)
{
    regex_t re;
    ck_assert_int_eq(regcomp(&re,
                             "^(# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+|"
                             "[a-zA-Z_:][a-zA-Z0-9_:]*"
                             "(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\.)*\""
                             "(,[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\.)*\")*\\})?"
                             " -?[0-9]+(\\.[0-9]+)?)$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    char *copy = strdup(text), *save = NULL;
    int n = 0;
    for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save), n++)
        ck_assert_msg(regexec(&re, l, 0, NULL, 0) == 0, "not the text format: %s", l);
    ck_assert_int_gt(n, 50);
    free(copy);
    regfree(&re);
}

/* GET of the metrics: the body (caller frees), 200 and the content type
 * checked. */
static char *scrape(void)
{
    char url[512];
    snprintf(url, sizeof url, "%s/mcpauth/metrics", srv.base);
    th_resp r;
    ck_assert_msg(th_http("GET", url, NULL, NULL, &r) == 0, "no response from %s", url);
    ck_assert_msg(r.status == 200, "scrape: %ld %s", r.status, r.body);
    char ct[256];
    ck_assert_ptr_nonnull(th_header(&r, "Content-Type", ct, sizeof ct));
    ck_assert_msg(strstr(ct, "text/plain") && strstr(ct, "version=0.0.4"), "%s", ct);
    check_format(r.body);
    char *body = strdup(r.body);
    th_resp_free(&r);
    return body;
}

/* The value of one series ("name{labels}"); 0 when absent (a counter
 * never moved is 0 either way). */
static double value(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; (p = strstr(p, series)); p += n)
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return 0;
}

static const char *const watched[] = {
    "mcpauth_requests_total{resource=\"files\",verdict=\"invalid_token\"}",
    "mcpauth_refusals_total{resource=\"files\",reason=\"audience\"}",
    "mcpauth_requests_total{resource=\"files\",verdict=\"allow\"}",
    "mcpauth_rate_limited_total{resource=\"files\",by=\"subject\"}",
    "mcpauth_backend_requests_total{resource=\"files\"}",
    "mcpauth_relayed_bytes_total{resource=\"files\",direction=\"to_backend\"}",
    "mcpauth_validation_seconds_count{resource=\"files\"}",
    "mcpauth_backend_seconds_count{resource=\"files\"}",
    "mcpauth_requests_total{resource=\"other\",verdict=\"invalid_token\"}",
    "mcpauth_refusals_total{resource=\"files\",reason=\"no_token\"}",
};
#define NWATCHED (sizeof watched / sizeof watched[0])

START_TEST(counters_move_exactly)
{
    char *before = scrape();
    double b[NWATCHED];
    for (size_t i = 0; i < NWATCHED; i++)
        b[i] = value(before, watched[i]);
    free(before);

    /* 3 tokens for another resource: refused for their audience */
    char *wrong = th_token(&srv, rsa, "/mcp/other", "", NULL);
    char *right = th_token(&srv, rsa, "/mcp/files", "", NULL);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(ping(wrong), 401);
    /* burst 2 at one a second: 2 allowed, then 1 rate-limited */
    ck_assert_int_eq(ping(right), 200);
    ck_assert_int_eq(ping(right), 200);
    ck_assert_int_eq(ping(right), 429);
    free(wrong);
    free(right);

    char *after = scrape();
    double want[NWATCHED] = {3, 3, 3, 1, 2, 2 * (sizeof PING - 1), 6, 2, 0, 0};
    for (size_t i = 0; i < NWATCHED; i++)
        ck_assert_msg(value(after, watched[i]) - b[i] == want[i], "%s moved by %g, want %g\n%s",
                      watched[i], value(after, watched[i]) - b[i], want[i], after);
    /* the processes that counted, with their figures */
    ck_assert_msg(strstr(after, "mcpauth_processes{program=\"mcpauth-proxy\""), "%s", after);
    ck_assert_msg(strstr(after, "mcpauth_processes{program=\"mcpauth-metadata\""), "%s", after);
    ck_assert(strstr(after, "mcpauth_process_resident_bytes{program=\"mcpauth-proxy\",pid=\""));
    ck_assert(strstr(after, "mcpauth_process_open_fds{program=\"mcpauth-metadata\",pid=\""));
    free(after);

    /* `mcpauth status` shows the same file for a person: the processes as
     * "program version count" (review: it printed raw label text) */
    char cmd[1200], out[65536];
    /* as the user the programs run as (Apache: www-data), as doc/deploy.md
     * says: the file is not trusted from another owner */
    snprintf(cmd, sizeof cmd, "%s%s/tools/mcpauth status --config %s/mcpauth.conf 2>&1",
             srv.kind == TH_APACHE && geteuid() == 0 ? "runuser -u www-data -- " : "",
             th_builddir(), srv.dir);
    FILE *f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = '\0';
    int st = pclose(f);
    ck_assert_msg(st == 0, "mcpauth status failed (%d):\n%s", st, out);
    ck_assert_msg(strstr(out, "\n  mcpauth-proxy "), "no process line for the proxy:\n%s", out);
    ck_assert_msg(!strstr(out, "\n  program="), "raw labels in the process list:\n%s", out);
    ck_assert_msg(strstr(out, "mcpauth_requests_total{resource=\"files\",verdict=\"allow\"}"),
                  "no live figures:\n%s", out);
}
END_TEST

static void assert_refused(const char *method, const char *path)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", srv.base, path);
    th_resp r;
    ck_assert_msg(th_http(method, url, NULL, strcmp(method, "POST") ? NULL : "x", &r) == 0,
                  "no response");
    ck_assert_msg(r.status == 403, "%s %s: %ld %s", method, path, r.status, r.body);
    ck_assert_msg(!strstr(r.body, "mcpauth_"), "figures in a refusal: %s", r.body);
    th_resp_free(&r);
}

START_TEST(malformed_scrapes_refused)
{
    assert_refused("POST", "/mcpauth/metrics");
    assert_refused("PUT", "/mcpauth/metrics");
    assert_refused("DELETE", "/mcpauth/metrics");
    assert_refused("GET", "/mcpauth/metrics?x=1");
    /* HEAD: the head only */
    char url[512];
    snprintf(url, sizeof url, "%s/mcpauth/metrics", srv.base);
    th_resp r;
    ck_assert(th_http("HEAD", url, NULL, NULL, &r) == 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.bodylen, 0);
    th_resp_free(&r);
}
END_TEST

START_TEST(forbidden_address_refused)
{
    assert_refused("GET", "/mcpauth/metrics");
    assert_refused("HEAD", "/mcpauth/metrics");
}
END_TEST

static TCase *server_case(const char *name, void (*setup)(void))
{
    TCase *tc = tcase_create(name);
    tcase_add_unchecked_fixture(tc, setup, stop);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, counters_move_exactly);
    tcase_add_test(tc, malformed_scrapes_refused);
    return tc;
}

static TCase *forbidden_case(const char *name, void (*setup)(void))
{
    TCase *tc = tcase_create(name);
    tcase_add_unchecked_fixture(tc, setup, stop);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, forbidden_address_refused);
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
    Suite *s = suite_create("metrics-servers");
    suite_add_tcase(s, server_case("lighttpd", start_lighttpd));
    suite_add_tcase(s, server_case("apache", start_apache));
    suite_add_tcase(s, forbidden_case("lighttpd-forbidden", start_forbidden_lighttpd));
    suite_add_tcase(s, forbidden_case("apache-forbidden", start_forbidden_apache));
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
