/* Outgoing HTTP against the loopback test server (tests/support/httpd.c),
 * which runs in a thread of the test process and records what it was sent. */
#define _GNU_SOURCE /* strcasestr */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <mcpauth/mcpauth.h>

#include "fetch.h"
#include "suites.h"
#include "../support/httpd.h"


/* ---- the server ---- */

static httpd srv;

/* Cache-Control vectors: /cc/<i> answers with these header lines. */
static const struct {
    const char *hdrs;
    long max_age;
} cc_cases[] = {
    {"Cache-Control: max-age=120\r\n", 120},
    {"Cache-Control: no-store\r\n", 0},
    {"", -1},
    {"Cache-Control: no-cache\r\n", 0},
    {"Cache-Control: public, max-age=60, must-revalidate\r\n", 60},
    {"cache-control: MAX-AGE=5\r\n", 5},
    {"Cache-Control:max-age=7\r\n", 7},
    {"Cache-Control: max-age=\"30\"\r\n", 30},
    {"Cache-Control: max-age=0\r\n", 0},
    {"Cache-Control: max-age=abc\r\n", -1},
    {"Cache-Control: max-age=-5\r\n", -1},
    {"Cache-Control: max-age=+5\r\n", -1},
    {"Cache-Control: max-age=\r\n", -1},
    {"Cache-Control: max-age=1e3\r\n", -1},
    {"Cache-Control: max-age=10 20\r\n", -1},
    {"Cache-Control: max-age=99999999999999999999999999\r\n", 31536000},
    {"Cache-Control: max-age=31536001\r\n", 31536000},
    {"Cache-Control: max-age=60, no-store\r\n", 0},
    {"Cache-Control: NO-CACHE, max-age=60\r\n", 0},
    {"Cache-Control: private, no-cache=\"Set-Cookie, X\"\r\n", 0},
    {"Cache-Control: max-age=60\r\nCache-Control: max-age=30\r\n", 30},
    {"Cache-Control: s-maxage=100\r\n", -1},
    {"Cache-Control: x=\"unterminated, max-age=5\r\n", -1},
    {"Cache-Control: ,,, max-age=9 ,\r\n", 9},
};

/* The fixed answers, and how each misbehaves. */
static const struct {
    const char *path;
    httpd_resp r;
} routes[] = {
    {"/json", {.headers = "Content-Type: application/json; charset=utf-8\r\n"
                          "Cache-Control: public, max-age=120\r\n",
               .body = "{\"ok\":true}"}},
    {"/404", {.status = "404 Not Found", .headers = "Content-Type: text/plain\r\n", .body = "nope"}},
    /* announces 10 MB, then stalls */
    {"/declared-huge", {.body = "0123456789", .content_length = 10000000, .stall = 1}},
    {"/chunked", {.fill = 4000, .chunk = 1000}}, /* 4000 bytes, no Content-Length */
    {"/trailer", {.raw = 1, .body = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                                    "Connection: close\r\n\r\n"
                                    "2\r\n{}\r\n0\r\nCache-Control: max-age=7\r\n\r\n"}},
    /* 1xx headers must not leak */
    {"/continue", {.raw = 1, .body = "HTTP/1.1 100 Continue\r\nCache-Control: max-age=5\r\n"
                                     "Content-Type: text/evil\r\n\r\n"
                                     "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                     "Content-Length: 2\r\nConnection: close\r\n\r\n{}"}},
    {"/short", {.body = "0123456789", .content_length = 100}}, /* promises 100, sends 10 */
    {"/hugeheaders", {.filler_headers = 2000, .body = "{}"}},
    {"/ct-ctl", {.headers = "Content-Type: text/\x01plain\x7f\r\n", .body = "{}"}},
    {"/empty", {0}},
    {"/http09", {.raw = 1, .body = "just bytes\n"}},
    {"/hang", {.hang = 1}}, /* until the client hangs up or teardown */
};

/* Whatever has no route: the proxy CONNECT, /size/N, and "ok". */
static void answer(httpd *h, int fd, const httpd_req *rq, void *arg)
{
    if (strcmp(rq->method, "CONNECT") == 0) {
        httpd_respond(fd, "403 Forbidden", "", "", 0);
    } else if (strncmp(rq->target, "/size/", 6) == 0) { /* /size/N: N bytes, Content-Length */
        size_t n = strtoul(rq->target + 6, NULL, 10);
        httpd_send_resp(h, fd, &(httpd_resp){.fill = n < 200000 ? n : 200000});
    } else {
        httpd_respond(fd, "200 OK", "Content-Type: text/plain\r\n", "ok", 2);
    }
}

static int free_port(void)
{
    int port = httpd_free_port();
    ck_assert_int_gt(port, 0);
    return port;
}

static void server_start(void)
{
    memset(&srv, 0, sizeof srv);
    httpd_opts o = {.handler = answer};
    ck_assert_int_eq(httpd_start(&srv, &o), 0);
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        ck_assert_int_eq(httpd_route(&srv, routes[i].path, &routes[i].r), 0);
    for (size_t i = 0; i < sizeof cc_cases / sizeof cc_cases[0]; i++) {
        char path[32];
        snprintf(path, sizeof path, "/cc/%zu", i);
        ck_assert_int_eq(httpd_route(&srv, path, &(httpd_resp){.headers = cc_cases[i].hdrs,
                                                              .body = "{}"}), 0);
    }
    char h[512];
    snprintf(h, sizeof h, "Location: http://127.0.0.1:%d/json\r\n", srv.port);
    ck_assert_int_eq(httpd_route(&srv, "/302", &(httpd_resp){.status = "302 Found", .headers = h}), 0);
    snprintf(h, sizeof h, "Content-Type: application/json; x=%0300d\r\n", 0);
    ck_assert_int_eq(httpd_route(&srv, "/ct-long", &(httpd_resp){.headers = h, .body = "{}"}), 0);
    /* The tests must not depend on the runner's proxy settings. */
    httpd_no_proxy_env();
}

static void server_stop(void)
{
    httpd_stop(&srv);
    httpd_no_proxy_env();
}

static int nreq(void)
{
    return httpd_nreq(&srv);
}

/* Value of header name in the last request ("" when absent). */
static const char *req_header(const char *name, char *out, size_t outlen)
{
    httpd_last_header(&srv, name, out, outlen);
    return out;
}

static int has_header(const char *name)
{
    char v[8];
    return httpd_last_header(&srv, name, v, sizeof v);
}

static const char *url(const char *path)
{
    return httpd_url(&srv, path);
}

static double now_ms(void)
{
    return httpd_now_ms();
}

/* ---- responses ---- */

START_TEST(test_get_json)
{
    mcpauth_fetch_opts o = {.timeout_ms = 2000};
    mcpauth_fetch_result r;
    char err[256];
    ck_assert_int_eq(mcpauth__fetch(url("/json"), &o, &r, err, sizeof err), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "{\"ok\":true}");
    ck_assert_uint_eq(r.len, 11);
    ck_assert_int_eq(r.max_age, 120);
    ck_assert_str_eq(r.content_type, "application/json; charset=utf-8");
    ck_assert_str_eq(srv.method, "GET");
    ck_assert_str_eq(srv.target, "/json");
    ck_assert_uint_eq(srv.body_len, 0);
    ck_assert(!has_header("Authorization"));
    ck_assert(!has_header("Content-Type"));
    mcpauth__fetch_result_free(&r);
    ck_assert_ptr_null(r.body);
    mcpauth__fetch_result_free(&r); /* idempotent */
}
END_TEST

START_TEST(test_cache_control)
{
    char path[32], err[256];
    snprintf(path, sizeof path, "/cc/%d", _i);
    mcpauth_fetch_result r;
    ck_assert_int_eq(mcpauth__fetch(url(path), NULL, &r, err, sizeof err), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_msg(r.max_age == cc_cases[_i].max_age, "case %d (%s): max_age %ld, want %ld", _i,
                  cc_cases[_i].hdrs, r.max_age, cc_cases[_i].max_age);
    ck_assert_str_eq(r.content_type, "");
    mcpauth__fetch_result_free(&r);
}
END_TEST

START_TEST(test_status_404)
{
    mcpauth_fetch_result r;
    char err[256];
    ck_assert_int_eq(mcpauth__fetch(url("/404"), NULL, &r, err, sizeof err), 0);
    ck_assert_int_eq(r.status, 404);
    ck_assert_str_eq(r.body, "nope");
    ck_assert_str_eq(r.content_type, "text/plain");
    ck_assert_int_eq(r.max_age, -1);
    mcpauth__fetch_result_free(&r);
}
END_TEST

START_TEST(test_redirect_not_followed)
{
    mcpauth_fetch_result r;
    char err[256];
    ck_assert_int_eq(mcpauth__fetch(url("/302"), NULL, &r, err, sizeof err), 0);
    ck_assert_int_eq(r.status, 302);
    ck_assert_str_eq(r.body, "");
    ck_assert_int_eq(nreq(), 1);
    mcpauth__fetch_result_free(&r);
}
END_TEST

START_TEST(test_empty_body)
{
    mcpauth_fetch_result r;
    char err[256];
    ck_assert_int_eq(mcpauth__fetch(url("/empty"), NULL, &r, err, sizeof err), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(r.body); /* always a string on success */
    ck_assert_str_eq(r.body, "");
    ck_assert_uint_eq(r.len, 0);
    mcpauth__fetch_result_free(&r);
}
END_TEST

START_TEST(test_body_exact_limit)
{
    mcpauth_fetch_opts o = {.max_bytes = 1000};
    mcpauth_fetch_result r;
    char err[256];
    ck_assert_int_eq(mcpauth__fetch(url("/size/1000"), &o, &r, err, sizeof err), 0);
    ck_assert_uint_eq(r.len, 1000);
    ck_assert_uint_eq(strlen(r.body), 1000);
    mcpauth__fetch_result_free(&r);
}
END_TEST

START_TEST(test_body_too_large_declared)
{
    mcpauth_fetch_opts o = {.max_bytes = 1000};
    mcpauth_fetch_result r;
    char err[256];
    ck_assert_int_eq(mcpauth__fetch(url("/size/1001"), &o, &r, err, sizeof err), -1);
    ck_assert_str_eq(err, "response larger than 1000 bytes");
    ck_assert_ptr_null(r.body);
    ck_assert_int_eq(r.status, 0);
    mcpauth__fetch_result_free(&r);
}
END_TEST

START_TEST(test_body_too_large_refused_early)
{
    /* Refused on the Content-Length alone, not after waiting for bytes. */
    mcpauth_fetch_opts o = {.max_bytes = 1000, .timeout_ms = 2000};
    mcpauth_fetch_result r;
    char err[256];
    double t0 = now_ms();
    ck_assert_int_eq(mcpauth__fetch(url("/declared-huge"), &o, &r, err, sizeof err), -1);
    ck_assert_msg(now_ms() - t0 < 500, "waited for the body");
    ck_assert_str_eq(err, "response larger than 1000 bytes");
    ck_assert_ptr_null(r.body);
}
END_TEST

START_TEST(test_body_too_large_streamed)
{
    mcpauth_fetch_opts o = {.max_bytes = 1000};
    mcpauth_fetch_result r;
    char err[256];
    ck_assert_int_eq(mcpauth__fetch(url("/chunked"), &o, &r, err, sizeof err), -1);
    ck_assert_str_eq(err, "response larger than 1000 bytes");
    ck_assert_ptr_null(r.body);
    /* the same stream fits a larger limit */
    o.max_bytes = 4000;
    ck_assert_int_eq(mcpauth__fetch(url("/chunked"), &o, &r, err, sizeof err), 0);
    ck_assert_uint_eq(r.len, 4000);
    mcpauth__fetch_result_free(&r);
}
END_TEST

START_TEST(test_body_default_limit)
{
    /* 0 means 1 MiB: 200000 bytes pass */
    mcpauth_fetch_result r;
    char err[256];
    ck_assert_int_eq(mcpauth__fetch(url("/size/200000"), NULL, &r, err, sizeof err), 0);
    ck_assert_uint_eq(r.len, 200000);
    mcpauth__fetch_result_free(&r);
}
END_TEST

START_TEST(test_huge_headers)
{
    mcpauth_fetch_result r;
    char err[256];
    ck_assert_int_eq(mcpauth__fetch(url("/hugeheaders"), NULL, &r, err, sizeof err), -1);
    ck_assert_str_eq(err, "response headers larger than 102400 bytes");
    ck_assert_ptr_null(r.body);
}
END_TEST

START_TEST(test_interim_and_trailer_headers_ignored)
{
    mcpauth_fetch_result r;
    char err[256];
    ck_assert_int_eq(mcpauth__fetch(url("/continue"), NULL, &r, err, sizeof err), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(r.max_age, -1);
    ck_assert_str_eq(r.content_type, "application/json");
    mcpauth__fetch_result_free(&r);
    ck_assert_int_eq(mcpauth__fetch(url("/trailer"), NULL, &r, err, sizeof err), 0);
    ck_assert_str_eq(r.body, "{}");
    ck_assert_int_eq(r.max_age, -1);
    mcpauth__fetch_result_free(&r);
}
END_TEST

START_TEST(test_content_type_truncated)
{
    mcpauth_fetch_result r;
    char err[256];
    ck_assert_int_eq(mcpauth__fetch(url("/ct-long"), NULL, &r, err, sizeof err), 0);
    ck_assert_uint_eq(strlen(r.content_type), sizeof r.content_type - 1);
    ck_assert(strncmp(r.content_type, "application/json; x=000", 23) == 0);
    mcpauth__fetch_result_free(&r);
    ck_assert_int_eq(mcpauth__fetch(url("/ct-ctl"), NULL, &r, err, sizeof err), 0);
    ck_assert_str_eq(r.content_type, "text/?plain?");
    mcpauth__fetch_result_free(&r);
}
END_TEST

/* ---- failures ---- */

START_TEST(test_timeout)
{
    mcpauth_fetch_opts o = {.timeout_ms = 300};
    mcpauth_fetch_result r;
    char err[256];
    double t0 = now_ms();
    ck_assert_int_eq(mcpauth__fetch(url("/hang"), &o, &r, err, sizeof err), -1);
    double dt = now_ms() - t0;
    ck_assert_msg(dt >= 250 && dt < 1000, "took %.0f ms", dt);
    ck_assert_msg(strcasestr(err, "timed out") != NULL, "err: %s", err);
    ck_assert_ptr_null(r.body);
    ck_assert_int_eq(r.status, 0);
}
END_TEST

START_TEST(test_connection_refused)
{
    char u[64], err[256];
    snprintf(u, sizeof u, "http://127.0.0.1:%d/json", free_port());
    mcpauth_fetch_result r;
    ck_assert_int_eq(mcpauth__fetch(u, NULL, &r, err, sizeof err), -1);
    ck_assert_str_ne(err, "");
    ck_assert_int_eq(r.status, 0);
}
END_TEST

START_TEST(test_truncated_body)
{
    mcpauth_fetch_result r;
    char err[256];
    ck_assert_int_eq(mcpauth__fetch(url("/short"), NULL, &r, err, sizeof err), -1);
    ck_assert_str_ne(err, "");
    ck_assert_ptr_null(r.body);
}
END_TEST

START_TEST(test_http09_refused)
{
    mcpauth_fetch_result r;
    char err[256];
    ck_assert_int_eq(mcpauth__fetch(url("/http09"), NULL, &r, err, sizeof err), -1);
    ck_assert_str_ne(err, "");
}
END_TEST

START_TEST(test_https_to_plain_port)
{
    char u[64], err[256];
    snprintf(u, sizeof u, "https://127.0.0.1:%d/json", srv.port);
    mcpauth_fetch_opts o = {.timeout_ms = 1000};
    mcpauth_fetch_result r;
    ck_assert_int_eq(mcpauth__fetch(u, &o, &r, err, sizeof err), -1);
    ck_assert_str_ne(err, "");
    ck_assert_int_eq(nreq(), 0); /* never spoke HTTP in clear */
    o.ca_file = "/nonexistent/ca.pem";
    ck_assert_int_eq(mcpauth__fetch(u, &o, &r, err, sizeof err), -1);
    ck_assert_str_ne(err, "");
}
END_TEST

static const char *const refused_urls[] = {
    "http://example.com/",
    "HTTP://EXAMPLE.COM/x",
    "http://127.0.0.1.example.com/",
    "http://localhost.example.com/",
    "http://128.0.0.1/",
    "http://[::2]/",
    "http://10.0.0.1/token",
    "ftp://127.0.0.1/x",
    "ftp://example.com/x",
    "file:///etc/passwd",
    "gopher://127.0.0.1/",
    "ws://127.0.0.1/",
    "dict://127.0.0.1/",
};

START_TEST(test_refused_url)
{
    /* Any network attempt would land on this server as a proxy. */
    char proxy[64], err[256];
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", srv.port);
    setenv("http_proxy", proxy, 1);
    setenv("ALL_PROXY", proxy, 1);
    mcpauth_fetch_result r;
    double t0 = now_ms();
    ck_assert_int_eq(mcpauth__fetch(refused_urls[_i], NULL, &r, err, sizeof err), -1);
    ck_assert_msg(now_ms() - t0 < 100, "%s took too long", refused_urls[_i]);
    ck_assert_msg(strcmp(err, "refused URL: only https (or http to a loopback host) is allowed") == 0 ||
                      strncmp(err, "invalid URL", 11) == 0,
                  "%s: %s", refused_urls[_i], err);
    ck_assert_int_eq(nreq(), 0);
    ck_assert_ptr_null(r.body);
}
END_TEST

START_TEST(test_refused_reasons)
{
    char err[256];
    mcpauth_fetch_result r;
    ck_assert_int_eq(mcpauth__fetch("http://example.com/", NULL, &r, err, sizeof err), -1);
    ck_assert_str_eq(err, "refused URL: only https (or http to a loopback host) is allowed");
    ck_assert_int_eq(mcpauth__fetch("ftp://127.0.0.1/", NULL, &r, err, sizeof err), -1);
    ck_assert_str_eq(err, "refused URL: only https (or http to a loopback host) is allowed");
    ck_assert_int_eq(mcpauth__fetch("file:///etc/passwd", NULL, &r, err, sizeof err), -1);
    ck_assert_str_eq(err, "refused URL: only https (or http to a loopback host) is allowed");
    ck_assert_int_eq(mcpauth__fetch("not a url", NULL, &r, err, sizeof err), -1);
    ck_assert_str_eq(err, "invalid URL");
    ck_assert_int_eq(mcpauth__fetch("", NULL, &r, err, sizeof err), -1);
    ck_assert_int_eq(mcpauth__fetch(NULL, NULL, &r, err, sizeof err), -1);
    ck_assert_str_eq(err, "invalid URL");
    ck_assert_int_eq(mcpauth__fetch("http://example.com/", NULL, NULL, err, sizeof err), -1);
    /* err is optional */
    ck_assert_int_eq(mcpauth__fetch("http://example.com/", NULL, &r, NULL, 0), -1);
    ck_assert_int_eq(mcpauth__fetch("http://example.com/", NULL, &r, err, 8), -1);
    ck_assert_str_eq(err, "refused");
    ck_assert_int_eq(nreq(), 0);
}
END_TEST

START_TEST(test_loopback_forms_accepted)
{
    char u[64], err[256];
    mcpauth_fetch_result r;
    snprintf(u, sizeof u, "http://localhost:%d/json", srv.port);
    ck_assert_msg(mcpauth__fetch(u, NULL, &r, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(r.status, 200);
    mcpauth__fetch_result_free(&r);
    snprintf(u, sizeof u, "HTTP://LOCALHOST:%d/json", srv.port);
    ck_assert_msg(mcpauth__fetch(u, NULL, &r, err, sizeof err) == 0, "%s", err);
    mcpauth__fetch_result_free(&r);
}
END_TEST

/* ---- proxies ---- */

START_TEST(test_loopback_bypasses_proxy)
{
    char proxy[64], err[256];
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", free_port()); /* dead */
    setenv("http_proxy", proxy, 1);
    setenv("ALL_PROXY", proxy, 1);
    mcpauth_fetch_result r;
    ck_assert_msg(mcpauth__fetch(url("/json"), NULL, &r, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(srv.target, "/json"); /* origin-form: no proxy in between */
    mcpauth__fetch_result_free(&r);
}
END_TEST

START_TEST(test_https_uses_environment_proxy)
{
    char proxy[64], err[256];
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", srv.port);
    setenv("https_proxy", proxy, 1);
    mcpauth_fetch_opts o = {.timeout_ms = 1000, .basic_user = "cid", .basic_pass = "SECRETpw",
                            .form = "code=SECRETcode"};
    mcpauth_fetch_result r;
    ck_assert_int_eq(mcpauth__fetch("https://as.example.com/token", &o, &r, err, sizeof err), -1);
    ck_assert_int_eq(nreq(), 1);
    ck_assert_str_eq(srv.method, "CONNECT");
    ck_assert_str_eq(srv.target, "as.example.com:443");
    ck_assert(!has_header("Authorization")); /* credentials stay inside TLS */
    ck_assert_uint_eq(srv.body_len, 0);
    ck_assert_ptr_null(strstr(err, "SECRET"));
    ck_assert_int_eq(r.status, 0); /* the proxy's 403 is not the response */
}
END_TEST

/* ---- what is sent ---- */

START_TEST(test_request_headers)
{
    char err[256], v[512];
    mcpauth_fetch_result r;
    ck_assert_int_eq(mcpauth__fetch(url("/x"), NULL, &r, err, sizeof err), 0);
    ck_assert_str_eq(req_header("Accept", v, sizeof v), "application/json");
    ck_assert_str_eq(req_header("User-Agent", v, sizeof v), "mcpauth/" MCPAUTH_VERSION);
    ck_assert(!has_header("Accept-Encoding"));
    mcpauth__fetch_result_free(&r);

    mcpauth_fetch_opts o = {.accept = "application/jwk-set+json"};
    ck_assert_int_eq(mcpauth__fetch(url("/x"), &o, &r, err, sizeof err), 0);
    ck_assert_str_eq(req_header("Accept", v, sizeof v), "application/jwk-set+json");
    mcpauth__fetch_result_free(&r);

    o.accept = "text/plain\r\nX-Injected: 1";
    ck_assert_int_eq(mcpauth__fetch(url("/x"), &o, &r, err, sizeof err), -1);
    ck_assert_str_eq(err, "invalid Accept value");
    ck_assert_int_eq(nreq(), 2);
}
END_TEST

/* The Accept line is built in a fixed buffer: a value that does not fit
 * is refused, not sent cut short (the old code sent its first 248 bytes). */
START_TEST(test_accept_too_long)
{
    char err[256], v[512], accept[300];
    mcpauth_fetch_result r;
    mcpauth_fetch_opts o = {.accept = accept};
    memset(accept, 'a', sizeof accept);
    accept[247] = '\0'; /* "Accept: " + 247 bytes: the longest line that fits */
    ck_assert_int_eq(mcpauth__fetch(url("/x"), &o, &r, err, sizeof err), 0);
    ck_assert_str_eq(req_header("Accept", v, sizeof v), accept);
    mcpauth__fetch_result_free(&r);

    accept[247] = 'a';
    accept[248] = '\0';
    ck_assert_int_eq(mcpauth__fetch(url("/x"), &o, &r, err, sizeof err), -1);
    ck_assert_str_eq(err, "Accept value too long");
    ck_assert_int_eq(r.status, 0);
    ck_assert_int_eq(nreq(), 1);
}
END_TEST

START_TEST(test_post_form)
{
    const char *form = "grant_type=authorization_code&code=abc%2Bdef&redirect_uri=http%3A%2F%2Fx";
    mcpauth_fetch_opts o = {.form = form};
    mcpauth_fetch_result r;
    char err[256], v[512];
    ck_assert_int_eq(mcpauth__fetch(url("/token"), &o, &r, err, sizeof err), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(srv.method, "POST");
    ck_assert_str_eq(srv.target, "/token");
    ck_assert_str_eq(req_header("Content-Type", v, sizeof v), "application/x-www-form-urlencoded");
    ck_assert_uint_eq(srv.body_len, strlen(form));
    ck_assert(memcmp(srv.body, form, strlen(form)) == 0);
    ck_assert(!has_header("Authorization"));
    mcpauth__fetch_result_free(&r);
}
END_TEST

START_TEST(test_post_large_form_no_expect)
{
    static char form[3001];
    memset(form, 'a', 3000);
    memcpy(form, "k=", 2);
    mcpauth_fetch_opts o = {.form = form};
    mcpauth_fetch_result r;
    char err[256];
    double t0 = now_ms();
    ck_assert_int_eq(mcpauth__fetch(url("/token"), &o, &r, err, sizeof err), 0);
    /* curl 7.x sends Expect: 100-continue above some size and then waits
     * up to 1 s for the interim response; fetch.c suppresses it. */
    ck_assert_msg(now_ms() - t0 < 500, "100-continue wait?");
    ck_assert(!has_header("Expect"));
    ck_assert_uint_eq(srv.body_len, 3000);
    ck_assert(memcmp(srv.body, form, 3000) == 0);
    mcpauth__fetch_result_free(&r);
}
END_TEST

START_TEST(test_post_empty_form)
{
    mcpauth_fetch_opts o = {.form = ""};
    mcpauth_fetch_result r;
    char err[256], v[64];
    ck_assert_int_eq(mcpauth__fetch(url("/token"), &o, &r, err, sizeof err), 0);
    ck_assert_str_eq(srv.method, "POST");
    ck_assert_str_eq(req_header("Content-Length", v, sizeof v), "0");
    mcpauth__fetch_result_free(&r);
}
END_TEST

START_TEST(test_basic_auth)
{
    mcpauth_fetch_opts o = {.form = "grant_type=client_credentials", .basic_user = "client:id",
                            .basic_pass = "s+cret"};
    mcpauth_fetch_result r;
    char err[256], v[512];
    ck_assert_int_eq(mcpauth__fetch(url("/token"), &o, &r, err, sizeof err), 0);
    /* base64("client%3Aid:s%2Bcret"), RFC 6749 §2.3.1 */
    ck_assert_str_eq(req_header("Authorization", v, sizeof v), "Basic Y2xpZW50JTNBaWQ6cyUyQmNyZXQ=");
    mcpauth__fetch_result_free(&r);

    mcpauth_fetch_opts g = {.basic_user = "a b", .basic_pass = "é"};
    ck_assert_int_eq(mcpauth__fetch(url("/x"), &g, &r, err, sizeof err), 0);
    ck_assert_str_eq(srv.method, "GET");
    /* base64("a+b:%C3%A9") */
    ck_assert_str_eq(req_header("Authorization", v, sizeof v), "Basic YStiOiVDMyVBOQ==");
    mcpauth__fetch_result_free(&r);
}
END_TEST

START_TEST(test_err_never_leaks_secrets)
{
    const char *paths[] = {"/size/5000", "/hang", "/short", "/http09", "/hugeheaders"};
    char err[512], u[96];
    mcpauth_fetch_opts o = {.timeout_ms = 300, .max_bytes = 100, .form = "code=SECRETcode",
                            .basic_user = "SECRETuser", .basic_pass = "SECRETpw"};
    mcpauth_fetch_result r;
    for (size_t k = 0; k < sizeof paths / sizeof paths[0]; k++) {
        ck_assert_int_eq(mcpauth__fetch(url(paths[k]), &o, &r, err, sizeof err), -1);
        ck_assert_msg(!strstr(err, "SECRET"), "%s: %s", paths[k], err);
    }
    snprintf(u, sizeof u, "http://127.0.0.1:%d/token", free_port());
    ck_assert_int_eq(mcpauth__fetch(u, &o, &r, err, sizeof err), -1);
    ck_assert_msg(!strstr(err, "SECRET"), "%s", err);
    snprintf(u, sizeof u, "https://127.0.0.1:%d/token", srv.port);
    ck_assert_int_eq(mcpauth__fetch(u, &o, &r, err, sizeof err), -1);
    ck_assert_msg(!strstr(err, "SECRET"), "%s", err);
}
END_TEST

struct par {
    char url[300]; /* own copy: url() reuses one static buffer */
    int ok;
};

static void *par_fetch(void *arg)
{
    struct par *p = arg;
    mcpauth_fetch_result r;
    char err[256];
    for (int k = 0; k < 5; k++) {
        if (mcpauth__fetch(p->url, NULL, &r, err, sizeof err) == 0 && r.status == 200 &&
            r.max_age == 120 && strcmp(r.body, "{\"ok\":true}") == 0)
            p->ok++;
        mcpauth__fetch_result_free(&r);
    }
    return NULL;
}

START_TEST(test_concurrent)
{
    pthread_t t[8];
    struct par p[8];
    for (int k = 0; k < 8; k++) {
        snprintf(p[k].url, sizeof p[k].url, "%s", url("/json"));
        p[k].ok = 0;
    }
    for (int k = 0; k < 8; k++)
        ck_assert_int_eq(pthread_create(&t[k], NULL, par_fetch, &p[k]), 0);
    for (int k = 0; k < 8; k++) {
        pthread_join(t[k], NULL);
        ck_assert_int_eq(p[k].ok, 5);
    }
    ck_assert_int_eq(nreq(), 40);
}
END_TEST

/* ---- the address guard (deny_private, https_only) ---- */

static const struct {
    const char *ip;
    const char *why; /* NULL: allowed */
} guard_cases[] = {
    {"0.0.0.0", "unspecified address"},
    {"0.1.2.3", "unspecified address"},
    {"10.0.0.1", "private network"},
    {"10.255.255.255", "private network"},
    {"100.64.0.1", "shared address space"},
    {"100.127.255.254", "shared address space"},
    {"127.0.0.1", "loopback"},
    {"127.255.0.1", "loopback"},
    {"169.254.169.254", "link-local"},
    {"169.254.0.1", "link-local"},
    {"172.16.0.1", "private network"},
    {"172.31.255.255", "private network"},
    {"192.168.1.1", "private network"},
    {"192.0.0.8", "reserved"},
    {"192.0.2.1", "documentation"},
    {"192.88.99.1", "reserved"},
    {"198.18.0.1", "reserved"},
    {"198.19.255.255", "reserved"},
    {"198.51.100.7", "documentation"},
    {"203.0.113.9", "documentation"},
    {"224.0.0.1", "multicast"},
    {"239.255.255.250", "multicast"},
    {"240.0.0.1", "reserved"},
    {"255.255.255.255", "reserved"},
    {"::", "unspecified address"},
    {"::1", "loopback"},
    {"[::1]", "loopback"},
    {"::2", "reserved"},
    {"::127.0.0.1", "reserved"},
    {"::ffff:127.0.0.1", "loopback"},
    {"::ffff:7f00:1", "loopback"},
    {"::ffff:10.0.0.1", "private network"},
    {"[::ffff:169.254.169.254]", "link-local"},
    {"::ffff:0.0.0.0", "unspecified address"},
    {"::ffff:100.64.0.1", "shared address space"},
    {"64:ff9b::10.0.0.1", "private network"},
    {"64:ff9b::a9fe:a9fe", "link-local"},
    {"64:ff9b:1::1", "private network"},
    {"2002:a00:1::1", "private network"},  /* 6to4 of 10.0.0.1 */
    {"2002:7f00:1::", "loopback"},
    {"fc00::1", "private network"},
    {"fd12:3456::1", "private network"},
    {"fe80::1", "link-local"},
    {"febf:ffff::1", "link-local"},
    {"fec0::1", "private network"},
    {"ff02::1", "multicast"},
    {"ff05::1:3", "multicast"},
    {"2001:db8::1", "documentation"},
    {"2001::1", "reserved"},
    {"100::1", "reserved"},
    {"example.com", "not an IP address"},
    {"", "not an IP address"},
    {"1.2.3", "not an IP address"},
    {"0x7f.0.0.1", "not an IP address"},
    {"10.0.0.1.nip.io", "not an IP address"},
    {"[::1", "not an IP address"},
    {"8.8.8.8", NULL},
    {"1.1.1.1", NULL},
    {"11.0.0.1", NULL},
    {"100.63.255.255", NULL},
    {"100.128.0.0", NULL},
    {"126.255.255.255", NULL},
    {"128.0.0.1", NULL},
    {"169.253.255.255", NULL},
    {"169.255.0.1", NULL},
    {"172.15.255.255", NULL},
    {"172.32.0.0", NULL},
    {"192.167.255.255", NULL},
    {"192.169.0.0", NULL},
    {"198.17.255.255", NULL},
    {"198.20.0.0", NULL},
    {"223.255.255.255", NULL},
    {"2606:4700:4700::1111", NULL},
    {"[2001:4860:4860::8888]", NULL},
    {"::ffff:8.8.8.8", NULL},
    {"64:ff9b::8.8.8.8", NULL},
    {"2002:808:808::1", NULL},
    {"2001:1::1", NULL},
    {"fbff::1", NULL},
};

START_TEST(test_address_classes)
{
    const char *why = mcpauth__fetch_address_blocked(guard_cases[_i].ip);
    if (guard_cases[_i].why)
        ck_assert_msg(why && strcmp(why, guard_cases[_i].why) == 0, "%s: %s, want %s",
                      guard_cases[_i].ip, why ? why : "allowed", guard_cases[_i].why);
    else
        ck_assert_msg(why == NULL, "%s: %s, want allowed", guard_cases[_i].ip, why);
}
END_TEST

START_TEST(test_address_null)
{
    ck_assert_str_eq(mcpauth__fetch_address_blocked(NULL), "not an IP address");
}
END_TEST

/* Any proxied attempt lands on the test server (and would be counted). */
static void proxies_to_test_server(void)
{
    char proxy[64];
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", srv.port);
    setenv("http_proxy", proxy, 1);
    setenv("https_proxy", proxy, 1);
    setenv("ALL_PROXY", proxy, 1);
}

START_TEST(test_deny_private_loopback_at_connect)
{
    /* The URL check passes (loopback http); the connect-time guard refuses. */
    mcpauth_fetch_opts o = {.timeout_ms = 1000, .deny_private = 1};
    mcpauth_fetch_result r;
    char err[256], u[96];
    double t0 = now_ms();
    ck_assert_int_eq(mcpauth__fetch(url("/json"), &o, &r, err, sizeof err), -1);
    ck_assert_msg(now_ms() - t0 < 200, "took %.0f ms", now_ms() - t0);
    ck_assert_str_eq(err, "refused address 127.0.0.1 (loopback): only public addresses are allowed");
    ck_assert_ptr_null(r.body);
    ck_assert_int_eq(r.status, 0);

    snprintf(u, sizeof u, "http://localhost:%d/json", srv.port); /* resolved, then refused */
    ck_assert_int_eq(mcpauth__fetch(u, &o, &r, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "(loopback)") != NULL, "%s", err);

    snprintf(u, sizeof u, "https://127.0.0.1:%d/json", srv.port); /* before any TLS */
    ck_assert_int_eq(mcpauth__fetch(u, &o, &r, err, sizeof err), -1);
    ck_assert_str_eq(err, "refused address 127.0.0.1 (loopback): only public addresses are allowed");
    ck_assert_int_eq(nreq(), 0);

    /* and the same requests without the guard still work */
    o.deny_private = 0;
    ck_assert_msg(mcpauth__fetch(url("/json"), &o, &r, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(r.status, 200);
    mcpauth__fetch_result_free(&r);
    ck_assert_int_eq(nreq(), 1);
}
END_TEST

START_TEST(test_deny_private_ignores_proxy)
{
    /* With a proxy in the environment the guard would only see the proxy's
     * address; deny_private connects directly (and refuses loopback). */
    proxies_to_test_server();
    mcpauth_fetch_opts o = {.timeout_ms = 1000, .deny_private = 1};
    mcpauth_fetch_result r;
    char err[256];
    ck_assert_int_eq(mcpauth__fetch("https://192.168.1.1/x", &o, &r, err, sizeof err), -1);
    ck_assert_str_eq(err,
                     "refused address 192.168.1.1 (private network): only public addresses are allowed");
    ck_assert_int_eq(nreq(), 0);
}
END_TEST

/* Literal private addresses: the guard must refuse them before connect(),
 * so nothing leaves this host (the sandbox forbids such traffic anyway). */
static const struct {
    const char *url, *addr;
} private_urls[] = {
    {"https://10.0.0.1/x", "10.0.0.1"},
    {"https://[::1]/x", "::1"},
    {"https://169.254.169.254/latest", "169.254.169.254"},
    {"http://127.0.0.2:8080/x", "127.0.0.2"},
    {"https://172.16.0.1/x", "172.16.0.1"},
    {"https://192.168.0.1:8443/x", "192.168.0.1"},
    {"https://100.64.0.1/x", "100.64.0.1"},
    {"https://0.0.0.0/x", "0.0.0.0"},
    {"https://224.0.0.1/x", "224.0.0.1"},
    {"https://[::ffff:10.0.0.1]/x", "::ffff:10.0.0.1"},
    {"https://[::ffff:127.0.0.1]/x", "::ffff:127.0.0.1"},
    {"https://[fe80::1]/x", "fe80::1"},
    {"https://[fd00::1]/x", "fd00::1"},
    {"https://[::]/x", "::"},
    {"https://[64:ff9b::a9fe:a9fe]/x", "64:ff9b::a9fe:a9fe"},
};

START_TEST(test_deny_private_literals)
{
    /* Belt and braces: never let a broken classifier reach the network. */
    ck_assert_ptr_nonnull(mcpauth__fetch_address_blocked(private_urls[_i].addr));
    ck_assert_ptr_nonnull(mcpauth__fetch_address_blocked("10.0.0.1"));
    proxies_to_test_server();
    mcpauth_fetch_opts o = {.timeout_ms = 300, .deny_private = 1};
    mcpauth_fetch_result r;
    char err[256], want[128];
    double t0 = now_ms();
    ck_assert_int_eq(mcpauth__fetch(private_urls[_i].url, &o, &r, err, sizeof err), -1);
    double dt = now_ms() - t0;
    ck_assert_msg(dt < 150, "%s took %.0f ms", private_urls[_i].url, dt);
    snprintf(want, sizeof want, "refused address %s (", private_urls[_i].addr);
    ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "%s: %s", private_urls[_i].url, err);
    ck_assert_msg(strstr(err, mcpauth__fetch_address_blocked(private_urls[_i].addr)) != NULL,
                  "%s: %s", private_urls[_i].url, err);
    ck_assert_ptr_null(r.body);
    ck_assert_int_eq(r.status, 0);
    ck_assert_int_eq(nreq(), 0);
}
END_TEST

START_TEST(test_https_only)
{
    mcpauth_fetch_opts o = {.https_only = 1};
    mcpauth_fetch_result r;
    char err[256], u[96];
    ck_assert_int_eq(mcpauth__fetch(url("/json"), &o, &r, err, sizeof err), -1);
    ck_assert_str_eq(err, "refused URL: only https is allowed");
    snprintf(u, sizeof u, "HTTP://LOCALHOST:%d/json", srv.port);
    ck_assert_int_eq(mcpauth__fetch(u, &o, &r, err, sizeof err), -1);
    ck_assert_str_eq(err, "refused URL: only https is allowed");
    ck_assert_int_eq(mcpauth__fetch("ftp://example.com/", &o, &r, err, sizeof err), -1);
    ck_assert_str_eq(err, "refused URL: only https is allowed");
    ck_assert_int_eq(nreq(), 0);
    ck_assert_ptr_null(r.body);
    /* https itself passes the URL check (and then fails TLS on this port) */
    o.timeout_ms = 1000;
    snprintf(u, sizeof u, "https://127.0.0.1:%d/json", srv.port);
    ck_assert_int_eq(mcpauth__fetch(u, &o, &r, err, sizeof err), -1);
    ck_assert_str_ne(err, "refused URL: only https is allowed");
}
END_TEST

START_TEST(test_deny_private_concurrent)
{
    /* The refusal reason is per transfer. */
    pthread_t t[4];
    struct par p[4];
    for (int k = 0; k < 4; k++) {
        snprintf(p[k].url, sizeof p[k].url, "%s", url("/json"));
        p[k].ok = 0;
    }
    for (int k = 0; k < 4; k++)
        ck_assert_int_eq(pthread_create(&t[k], NULL, par_fetch, &p[k]), 0);
    mcpauth_fetch_opts o = {.deny_private = 1};
    mcpauth_fetch_result r;
    char err[256];
    for (int k = 0; k < 20; k++) {
        ck_assert_int_eq(mcpauth__fetch("https://10.1.2.3/x", &o, &r, err, sizeof err), -1);
        ck_assert_str_eq(err,
                         "refused address 10.1.2.3 (private network): only public addresses are allowed");
    }
    for (int k = 0; k < 4; k++) {
        pthread_join(t[k], NULL);
        ck_assert_int_eq(p[k].ok, 5);
    }
}
END_TEST

/* ---- form encoding ---- */

static const struct {
    const char *in, *out;
} form_cases[] = {
    {"a b&c=d/é", "a+b%26c%3Dd%2F%C3%A9"},
    {"", ""},
    {"AZaz09-._~", "AZaz09-._~"},
    {"+%*!'()", "%2B%25%2A%21%27%28%29"},
    {"client:id", "client%3Aid"},
    {"\x01\x7f\xff", "%01%7F%FF"},
    {"  ", "++"},
    {"http://x/?a=1#f", "http%3A%2F%2Fx%2F%3Fa%3D1%23f"},
};

START_TEST(test_form_encode)
{
    for (size_t k = 0; k < sizeof form_cases / sizeof form_cases[0]; k++) {
        char *e = mcpauth__form_encode(form_cases[k].in);
        ck_assert_ptr_nonnull(e);
        ck_assert_str_eq(e, form_cases[k].out);
        free(e);
    }
    ck_assert_ptr_null(mcpauth__form_encode(NULL));
}
END_TEST

Suite *fetch_suite(void)
{
    Suite *s = suite_create("fetch");
    TCase *tc = tcase_create("fetch");
    tcase_add_checked_fixture(tc, server_start, server_stop);
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, test_get_json);
    tcase_add_loop_test(tc, test_cache_control, 0, sizeof cc_cases / sizeof cc_cases[0]);
    tcase_add_test(tc, test_status_404);
    tcase_add_test(tc, test_redirect_not_followed);
    tcase_add_test(tc, test_empty_body);
    tcase_add_test(tc, test_body_exact_limit);
    tcase_add_test(tc, test_body_too_large_declared);
    tcase_add_test(tc, test_body_too_large_refused_early);
    tcase_add_test(tc, test_body_too_large_streamed);
    tcase_add_test(tc, test_body_default_limit);
    tcase_add_test(tc, test_huge_headers);
    tcase_add_test(tc, test_interim_and_trailer_headers_ignored);
    tcase_add_test(tc, test_content_type_truncated);
    tcase_add_test(tc, test_timeout);
    tcase_add_test(tc, test_connection_refused);
    tcase_add_test(tc, test_truncated_body);
    tcase_add_test(tc, test_http09_refused);
    tcase_add_test(tc, test_https_to_plain_port);
    tcase_add_loop_test(tc, test_refused_url, 0, sizeof refused_urls / sizeof refused_urls[0]);
    tcase_add_test(tc, test_refused_reasons);
    tcase_add_test(tc, test_loopback_forms_accepted);
    tcase_add_test(tc, test_loopback_bypasses_proxy);
    tcase_add_test(tc, test_https_uses_environment_proxy);
    tcase_add_test(tc, test_request_headers);
    tcase_add_test(tc, test_accept_too_long);
    tcase_add_test(tc, test_post_form);
    tcase_add_test(tc, test_post_large_form_no_expect);
    tcase_add_test(tc, test_post_empty_form);
    tcase_add_test(tc, test_basic_auth);
    tcase_add_test(tc, test_err_never_leaks_secrets);
    tcase_add_test(tc, test_concurrent);
    tcase_add_test(tc, test_form_encode);
    suite_add_tcase(s, tc);

    /* The classifier runs first: the literal-address tests rely on it. */
    TCase *g = tcase_create("guard");
    tcase_add_checked_fixture(g, server_start, server_stop);
    tcase_set_timeout(g, 10);
    tcase_add_loop_test(g, test_address_classes, 0, sizeof guard_cases / sizeof guard_cases[0]);
    tcase_add_test(g, test_address_null);
    tcase_add_test(g, test_deny_private_loopback_at_connect);
    tcase_add_test(g, test_deny_private_ignores_proxy);
    tcase_add_loop_test(g, test_deny_private_literals, 0,
                        sizeof private_urls / sizeof private_urls[0]);
    tcase_add_test(g, test_https_only);
    tcase_add_test(g, test_deny_private_concurrent);
    suite_add_tcase(s, g);
    return s;
}
