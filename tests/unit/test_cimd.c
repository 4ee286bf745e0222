/* Client ID Metadata Documents against the loopback test server
 * (tests/support/httpd.c), which runs in a thread of the test process and
 * serves documents by path.  The positive paths need allow_private (http on
 * loopback); the same URLs are also shown to be refused without it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strcasestr */
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <check.h>

#include "cimd.h"
#include "fetch.h"
#include "../support/httpd.h"

Suite *cimd_suite(void);

/* ---- the server ---- */

static httpd srv;

static void server_start(void)
{
    memset(&srv, 0, sizeof srv);
    ck_assert_int_eq(httpd_start(&srv, NULL), 0);
    httpd_no_proxy_env();
}

static void server_stop(void)
{
    httpd_stop(&srv);
}

/* Serves body at path (other paths: 404). */
static void set_route(const char *path, const char *status, const char *hdrs, const char *body)
{
    httpd_resp r = {.status = status, .headers = hdrs, .body = body};
    ck_assert_int_eq(httpd_route(&srv, path, &r), 0);
}

static void set_hang(const char *path)
{
    ck_assert_int_eq(httpd_route(&srv, path, &(httpd_resp){.hang = 1}), 0);
}

static int nreq(void)
{
    return httpd_nreq(&srv);
}

/* The document URL for path (rotating static buffers, so two may be live). */
static const char *url_of(const char *path)
{
    return httpd_url(&srv, path);
}

static double now_ms(void)
{
    return httpd_now_ms();
}

static int client_is_empty(const mcpauth_client *c)
{
    static const mcpauth_client zero;
    return memcmp(c, &zero, sizeof zero) == 0;
}

/* tmpl with its one "%s" replaced by value (no printf: -Wformat-nonliteral). */
static void subst(char *out, size_t outlen, const char *tmpl, const char *value)
{
    const char *p = strstr(tmpl, "%s");
    if (!p)
        snprintf(out, outlen, "%s", tmpl);
    else
        snprintf(out, outlen, "%.*s%s%s", (int)(p - tmpl), tmpl, value, p + 2);
}

#define T0 ((time_t)1700000000)

static const mcpauth_cimd_opts lab = {.timeout_ms = 2000, .allow_private = 1};

/* A valid document for path, with extra members spliced in (",..." or ""). */
static const char *valid_doc(const char *path, const char *extra)
{
    static char buf[8192];
    snprintf(buf, sizeof buf,
             "{\"client_id\":\"%s\",\"client_name\":\"Example App\","
             "\"redirect_uris\":[\"http://127.0.0.1/callback\",\"https://app.example.com/cb\"],"
             "\"logo_uri\":\"https://app.example.com/logo.png\"%s}",
             url_of(path), extra);
    return buf;
}

/* ---- positive ---- */

START_TEST(test_valid_document)
{
    const char *doc =
        "{\"client_id\":\"%s\",\"client_name\":\"Exämple App\","
        "\"redirect_uris\":[\"http://localhost/callback\",\"https://app.example.com/oauth/cb?x=1\"],"
        "\"grant_types\":[\"authorization_code\",\"refresh_token\"],\"response_types\":[\"code\"],"
        "\"token_endpoint_auth_method\":\"none\",\"client_uri\":\"https://app.example.com/\","
        "\"software_id\":\"x\",\"nested\":{\"a\":[1,2,{\"b\":null}]}}";
    char body[2048];
    subst(body, sizeof body, doc, url_of("/oauth/client.json"));
    set_route("/oauth/client.json", "200 OK",
              "Content-Type: application/json\r\nCache-Control: max-age=60\r\n", body);

    mcpauth_cimd *c = mcpauth__cimd_new(8);
    mcpauth_client cl;
    char err[256];
    ck_assert_msg(mcpauth__cimd_get(c, url_of("/oauth/client.json"), &lab, T0, &cl, err,
                                   sizeof err) == 0,
                  "%s", err);
    ck_assert_str_eq(err, "");
    ck_assert_str_eq(cl.client_id, url_of("/oauth/client.json"));
    ck_assert_str_eq(cl.client_name, "Exämple App");
    ck_assert_str_eq(cl.redirect_uris,
                     "[\"http://localhost/callback\",\"https://app.example.com/oauth/cb?x=1\"]");
    ck_assert_str_eq(cl.grant_types, "authorization_code refresh_token");
    ck_assert_str_eq(cl.token_endpoint_auth_method, "none");
    ck_assert_str_eq(cl.kind, "cimd");
    ck_assert_ptr_null(cl.secret_hash);
    ck_assert_ptr_null(cl.registered_by);
    ck_assert_int_eq(cl.created, T0);
    ck_assert_int_eq(cl.secret_expires, 0);
    ck_assert_int_eq(nreq(), 1);
    pthread_mutex_lock(&srv.mu);
    ck_assert_str_eq(srv.target, "/oauth/client.json");
    ck_assert_str_eq(srv.accept, "application/json");
    pthread_mutex_unlock(&srv.mu);
    mcpauth__client_free(&cl);
    mcpauth__cimd_free(c);
}
END_TEST

START_TEST(test_defaults_and_grant_types)
{
    mcpauth_client cl;
    char err[256];
    /* minimal document: defaults */
    char body[1024];
    snprintf(body, sizeof body,
             "{\"client_id\":\"%s\",\"client_name\":\"A\",\"redirect_uris\":[\"https://a.example/cb\"]}",
             url_of("/min"));
    set_route("/min", "200 OK", "", body);
    ck_assert_msg(mcpauth__cimd_get(NULL, url_of("/min"), &lab, T0, &cl, err, sizeof err) == 0,
                  "%s", err);
    ck_assert_str_eq(cl.grant_types, "authorization_code refresh_token");
    ck_assert_str_eq(cl.redirect_uris, "[\"https://a.example/cb\"]");
    mcpauth__client_free(&cl);

    set_route("/gt", "200 OK", "", valid_doc("/gt", ",\"grant_types\":[\"authorization_code\"]"));
    ck_assert_msg(mcpauth__cimd_get(NULL, url_of("/gt"), &lab, T0, &cl, err, sizeof err) == 0,
                  "%s", err);
    ck_assert_str_eq(cl.grant_types, "authorization_code");
    mcpauth__client_free(&cl);

    set_route("/gt2", "200 OK", "",
              valid_doc("/gt2", ",\"grant_types\":[\"refresh_token\",\"authorization_code\","
                                "\"refresh_token\"]"));
    ck_assert_msg(mcpauth__cimd_get(NULL, url_of("/gt2"), &lab, T0, &cl, err, sizeof err) == 0,
                  "%s", err);
    ck_assert_str_eq(cl.grant_types, "authorization_code refresh_token");
    mcpauth__client_free(&cl);

    /* slashes and unicode are re-serialised plainly (valid JSON either way) */
    snprintf(body, sizeof body,
             "{\"client_id\":\"%s\",\"client_name\":\"\\u00e9t\\u00e9 \\ud83d\\ude00\","
             "\"redirect_uris\":[\"https:\\/\\/a.example\\/cb\"]}",
             url_of("/esc"));
    set_route("/esc", "200 OK", "", body);
    ck_assert_msg(mcpauth__cimd_get(NULL, url_of("/esc"), &lab, T0, &cl, err, sizeof err) == 0,
                  "%s", err);
    ck_assert_str_eq(cl.client_name, "été \xf0\x9f\x98\x80");
    ck_assert_str_eq(cl.redirect_uris, "[\"https://a.example/cb\"]");
    mcpauth__client_free(&cl);
}
END_TEST

START_TEST(test_cached)
{
    set_route("/doc", "200 OK", "Cache-Control: public, max-age=120\r\n", valid_doc("/doc", ""));
    mcpauth_cimd *c = mcpauth__cimd_new(4);
    mcpauth_client cl;
    char err[256];
    ck_assert_msg(mcpauth__cimd_get(c, url_of("/doc"), &lab, T0, &cl, err, sizeof err) == 0, "%s",
                  err);
    mcpauth__client_free(&cl); /* the cache holds its own copy */
    ck_assert_int_eq(nreq(), 1);
    /* the server now serves something else: the cache must answer */
    set_route("/doc", "500 Internal Server Error", "", "");
    ck_assert_int_eq(mcpauth__cimd_get(c, url_of("/doc"), &lab, T0 + 119, &cl, err, sizeof err), 0);
    ck_assert_int_eq(nreq(), 1);
    ck_assert_str_eq(cl.client_name, "Example App");
    ck_assert_str_eq(cl.kind, "cimd");
    ck_assert_int_eq(cl.created, T0); /* when the document was fetched */
    mcpauth__client_free(&cl);
    /* expired: refetched (and now failing) */
    ck_assert_int_eq(mcpauth__cimd_get(c, url_of("/doc"), &lab, T0 + 120, &cl, err, sizeof err),
                     -1);
    ck_assert_int_eq(nreq(), 2);
    ck_assert_str_eq(err, "the client metadata document could not be fetched (HTTP 500)");
    ck_assert(client_is_empty(&cl));
    mcpauth__cimd_free(c);
}
END_TEST

static const struct {
    const char *hdrs;
    long ttl; /* 0: not cached */
} ttl_cases[] = {
    {"Cache-Control: max-age=0\r\n", 0},
    {"Cache-Control: no-store\r\n", 0},
    {"Cache-Control: no-cache\r\n", 0},
    {"Cache-Control: max-age=600, no-store\r\n", 0},
    {"", 300},                                   /* absent: 300 s */
    {"Cache-Control: public\r\n", 300},
    {"Cache-Control: max-age=10\r\n", 10},
    {"Cache-Control: max-age=100000\r\n", 3600}, /* max_cache default */
    {"Cache-Control: max-age=abc\r\n", 300},
};

START_TEST(test_cache_ttl)
{
    set_route("/ttl", "200 OK", ttl_cases[_i].hdrs, valid_doc("/ttl", ""));
    mcpauth_cimd *c = mcpauth__cimd_new(4);
    mcpauth_client cl;
    char err[256];
    ck_assert_msg(mcpauth__cimd_get(c, url_of("/ttl"), &lab, T0, &cl, err, sizeof err) == 0, "%s",
                  err);
    mcpauth__client_free(&cl);
    long ttl = ttl_cases[_i].ttl;
    if (ttl > 0) {
        ck_assert_int_eq(mcpauth__cimd_get(c, url_of("/ttl"), &lab, T0 + ttl - 1, &cl, err, sizeof err), 0);
        mcpauth__client_free(&cl);
        ck_assert_msg(nreq() == 1, "case %d: refetched within %ld s", _i, ttl);
        ck_assert_int_eq(mcpauth__cimd_get(c, url_of("/ttl"), &lab, T0 + ttl, &cl, err, sizeof err), 0);
        mcpauth__client_free(&cl);
        ck_assert_msg(nreq() == 2, "case %d: still cached after %ld s", _i, ttl);
    } else {
        ck_assert_int_eq(mcpauth__cimd_get(c, url_of("/ttl"), &lab, T0, &cl, err, sizeof err), 0);
        mcpauth__client_free(&cl);
        ck_assert_msg(nreq() == 2, "case %d (%s): cached", _i, ttl_cases[_i].hdrs);
    }
    mcpauth__cimd_free(c);
}
END_TEST

START_TEST(test_cache_max_cache_and_disabled)
{
    set_route("/long", "200 OK", "Cache-Control: max-age=86400\r\n", valid_doc("/long", ""));
    mcpauth_cimd_opts o = lab;
    o.max_cache = 60;
    mcpauth_cimd *c = mcpauth__cimd_new(4);
    mcpauth_client cl;
    char err[256];
    ck_assert_int_eq(mcpauth__cimd_get(c, url_of("/long"), &o, T0, &cl, err, sizeof err), 0);
    mcpauth__client_free(&cl);
    ck_assert_int_eq(mcpauth__cimd_get(c, url_of("/long"), &o, T0 + 59, &cl, err, sizeof err), 0);
    mcpauth__client_free(&cl);
    ck_assert_int_eq(nreq(), 1);
    ck_assert_int_eq(mcpauth__cimd_get(c, url_of("/long"), &o, T0 + 60, &cl, err, sizeof err), 0);
    mcpauth__client_free(&cl);
    ck_assert_int_eq(nreq(), 2);
    mcpauth__cimd_free(c);

    /* a cache of 0 entries, and no cache at all, never cache */
    c = mcpauth__cimd_new(0);
    ck_assert_ptr_nonnull(c);
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(mcpauth__cimd_get(c, url_of("/long"), &lab, T0, &cl, err, sizeof err), 0);
        mcpauth__client_free(&cl);
        ck_assert_int_eq(mcpauth__cimd_get(NULL, url_of("/long"), &lab, T0, &cl, err, sizeof err), 0);
        mcpauth__client_free(&cl);
    }
    ck_assert_int_eq(nreq(), 6);
    mcpauth__cimd_free(c);
    mcpauth__cimd_free(NULL);
}
END_TEST

START_TEST(test_cache_bounded)
{
    const char *paths[] = {"/a", "/b", "/c"};
    for (int k = 0; k < 3; k++) {
        char hdr[64];
        snprintf(hdr, sizeof hdr, "Cache-Control: max-age=%d\r\n", 100 * (k + 1));
        set_route(paths[k], "200 OK", hdr, valid_doc(paths[k], ""));
    }
    mcpauth_cimd *c = mcpauth__cimd_new(2);
    mcpauth_client cl;
    char err[256];
    for (int k = 0; k < 3; k++) {
        ck_assert_int_eq(mcpauth__cimd_get(c, url_of(paths[k]), &lab, T0, &cl, err, sizeof err), 0);
        ck_assert_str_eq(cl.client_id, url_of(paths[k]));
        mcpauth__client_free(&cl);
    }
    ck_assert_int_eq(nreq(), 3);
    /* /a (closest to expiry) was evicted; /b and /c are cached */
    ck_assert_int_eq(mcpauth__cimd_get(c, url_of("/c"), &lab, T0 + 1, &cl, err, sizeof err), 0);
    ck_assert_str_eq(cl.client_id, url_of("/c"));
    mcpauth__client_free(&cl);
    ck_assert_int_eq(mcpauth__cimd_get(c, url_of("/b"), &lab, T0 + 1, &cl, err, sizeof err), 0);
    ck_assert_str_eq(cl.client_id, url_of("/b"));
    mcpauth__client_free(&cl);
    ck_assert_int_eq(nreq(), 3);
    ck_assert_int_eq(mcpauth__cimd_get(c, url_of("/a"), &lab, T0 + 1, &cl, err, sizeof err), 0);
    mcpauth__client_free(&cl);
    ck_assert_int_eq(nreq(), 4);
    mcpauth__cimd_free(c); /* frees cached entries (ASan checks) */
}
END_TEST

START_TEST(test_failures_not_cached)
{
    mcpauth_cimd *c = mcpauth__cimd_new(4);
    mcpauth_client cl;
    char err[256];
    set_route("/fix", "200 OK", "Cache-Control: max-age=600\r\n",
              valid_doc("/fix", ",\"client_secret\":\"s\""));
    ck_assert_int_eq(mcpauth__cimd_get(c, url_of("/fix"), &lab, T0, &cl, err, sizeof err), -1);
    set_route("/fix", "200 OK", "Cache-Control: max-age=600\r\n", valid_doc("/fix", ""));
    ck_assert_msg(mcpauth__cimd_get(c, url_of("/fix"), &lab, T0, &cl, err, sizeof err) == 0, "%s",
                  err);
    mcpauth__client_free(&cl);
    ck_assert_int_eq(nreq(), 2);
    mcpauth__cimd_free(c);
}
END_TEST

START_TEST(test_cache_separates_allow_private)
{
    /* A document fetched under lab rules is not served under production
     * rules (which refuse this URL outright). */
    set_route("/doc", "200 OK", "Cache-Control: max-age=600\r\n", valid_doc("/doc", ""));
    mcpauth_cimd *c = mcpauth__cimd_new(4);
    mcpauth_client cl;
    char err[256];
    ck_assert_int_eq(mcpauth__cimd_get(c, url_of("/doc"), &lab, T0, &cl, err, sizeof err), 0);
    mcpauth__client_free(&cl);
    mcpauth_cimd_opts prod = {.timeout_ms = 1000};
    ck_assert_int_eq(mcpauth__cimd_get(c, url_of("/doc"), &prod, T0, &cl, err, sizeof err), -1);
    ck_assert(client_is_empty(&cl));
    ck_assert_int_eq(nreq(), 1);
    mcpauth__cimd_free(c);
}
END_TEST

struct par {
    mcpauth_cimd *c;
    char url[300];
    int ok;
};

static void *par_get(void *arg)
{
    struct par *p = arg;
    for (int k = 0; k < 20; k++) {
        mcpauth_client cl;
        char err[256];
        if (mcpauth__cimd_get(p->c, p->url, &lab, T0 + k, &cl, err, sizeof err) == 0 &&
            strcmp(cl.client_id, p->url) == 0 && strcmp(cl.client_name, "Example App") == 0)
            p->ok++;
        mcpauth__client_free(&cl);
    }
    return NULL;
}

START_TEST(test_concurrent)
{
    const char *paths[] = {"/p0", "/p1", "/p2"};
    for (int k = 0; k < 3; k++)
        set_route(paths[k], "200 OK", k == 2 ? "Cache-Control: no-store\r\n" : "",
                  valid_doc(paths[k], ""));
    mcpauth_cimd *c = mcpauth__cimd_new(2);
    pthread_t t[6];
    struct par p[6];
    for (int k = 0; k < 6; k++) {
        p[k].c = c;
        snprintf(p[k].url, sizeof p[k].url, "%s", url_of(paths[k % 3]));
        p[k].ok = 0;
        ck_assert_int_eq(pthread_create(&t[k], NULL, par_get, &p[k]), 0);
    }
    for (int k = 0; k < 6; k++) {
        pthread_join(t[k], NULL);
        ck_assert_int_eq(p[k].ok, 20);
    }
    ck_assert_int_ge(nreq(), 41); /* /p2 is never cached: 40 fetches, plus the others */
    mcpauth__cimd_free(c);
}
END_TEST

/* ---- refused without allow_private ---- */

START_TEST(test_production_refuses_loopback)
{
    set_route("/doc", "200 OK", "", valid_doc("/doc", ""));
    mcpauth_cimd_opts prod = {.timeout_ms = 1000};
    mcpauth_client cl;
    char err[256], u[128];

    /* http: not a metadata document URL at all */
    ck_assert_int_eq(mcpauth__cimd_get(NULL, url_of("/doc"), &prod, T0, &cl, err, sizeof err), -1);
    ck_assert_str_eq(err, "the client_id URL must use https");
    ck_assert(client_is_empty(&cl));
    ck_assert(!mcpauth__cimd_is_url(url_of("/doc")));

    /* https to 127.0.0.1: refused at connect time, before any TLS */
    snprintf(u, sizeof u, "https://127.0.0.1:%d/doc", srv.port);
    ck_assert(mcpauth__cimd_is_url(u));
    double t0 = now_ms();
    ck_assert_int_eq(mcpauth__cimd_get(NULL, u, &prod, T0, &cl, err, sizeof err), -1);
    ck_assert_msg(now_ms() - t0 < 200, "took %.0f ms", now_ms() - t0);
    ck_assert_str_eq(err, "the client metadata document could not be fetched: refused address "
                          "127.0.0.1 (loopback): only public addresses are allowed");
    ck_assert(client_is_empty(&cl));

    /* and names that resolve to loopback likewise */
    snprintf(u, sizeof u, "https://localhost:%d/doc", srv.port);
    ck_assert_int_eq(mcpauth__cimd_get(NULL, u, &prod, T0, &cl, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "refused address") && strstr(err, "(loopback)"), "%s", err);

    /* a proxy in the environment is not a way around it (the guard was
     * seen working above; never let a broken classifier reach the network) */
    ck_assert_ptr_nonnull(mcpauth__fetch_address_blocked("169.254.169.254"));
    ck_assert_ptr_nonnull(mcpauth__fetch_address_blocked("10.0.0.1"));
    char proxy[64];
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", srv.port);
    setenv("https_proxy", proxy, 1);
    setenv("ALL_PROXY", proxy, 1);
    ck_assert_int_eq(mcpauth__cimd_get(NULL, "https://169.254.169.254/latest/meta-data", &prod, T0,
                                      &cl, err, sizeof err),
                     -1);
    ck_assert_str_eq(err, "the client metadata document could not be fetched: refused address "
                          "169.254.169.254 (link-local): only public addresses are allowed");
    ck_assert_int_eq(mcpauth__cimd_get(NULL, "https://10.0.0.1/client.json", &prod, T0, &cl, err,
                                      sizeof err),
                     -1);
    ck_assert_str_eq(err, "the client metadata document could not be fetched: refused address "
                          "10.0.0.1 (private network): only public addresses are allowed");
    ck_assert_int_eq(nreq(), 0);
}
END_TEST

/* ---- invalid documents ---- */

static const struct {
    const char *extra; /* spliced into the valid document; NULL: whole body below */
    const char *body;  /* %s: the document URL */
    const char *err;
} bad_docs[] = {
    /* client_id */
    {NULL, "{\"client_id\":\"%s/\",\"client_name\":\"A\",\"redirect_uris\":[\"https://a.example/cb\"]}",
     "the client metadata document's client_id does not match its URL"},
    {NULL, "{\"client_id\":\"https://other.example/client.json\",\"client_name\":\"A\","
           "\"redirect_uris\":[\"https://a.example/cb\"],\"x\":\"%s\"}",
     "the client metadata document's client_id does not match its URL"},
    {NULL, "{\"client_id\":\"%s?\",\"client_name\":\"A\",\"redirect_uris\":[\"https://a.example/cb\"]}",
     "the client metadata document's client_id does not match its URL"},
    {NULL, "{\"client_id\":\"%s\\u0000\",\"client_name\":\"A\",\"redirect_uris\":[\"https://a.example/cb\"]}",
     "the client metadata document's client_id does not match its URL"},
    {NULL, "{\"client_name\":\"A\",\"redirect_uris\":[\"https://a.example/cb\"],\"x\":\"%s\"}",
     "the client metadata document has no client_id"},
    {NULL, "{\"client_id\":[\"%s\"],\"client_name\":\"A\",\"redirect_uris\":[\"https://a.example/cb\"]}",
     "the client metadata document's client_id does not match its URL"},
    /* client_name */
    {NULL, "{\"client_id\":\"%s\",\"redirect_uris\":[\"https://a.example/cb\"]}",
     "the client metadata document has no client_name"},
    {NULL, "{\"client_id\":\"%s\",\"client_name\":7,\"redirect_uris\":[\"https://a.example/cb\"]}",
     "the client metadata document's client_name is not a string"},
    {NULL, "{\"client_id\":\"%s\",\"client_name\":\"\",\"redirect_uris\":[\"https://a.example/cb\"]}",
     "the client metadata document's client_name is empty"},
    {NULL, "{\"client_id\":\"%s\",\"client_name\":\"   \",\"redirect_uris\":[\"https://a.example/cb\"]}",
     "the client metadata document's client_name is empty"},
    {NULL, "{\"client_id\":\"%s\",\"client_name\":\"A\\u0007B\",\"redirect_uris\":[\"https://a.example/cb\"]}",
     "the client metadata document's client_name contains control characters"},
    {NULL, "{\"client_id\":\"%s\",\"client_name\":\"A\\nB\",\"redirect_uris\":[\"https://a.example/cb\"]}",
     "the client metadata document's client_name contains control characters"},
    {NULL, "{\"client_id\":\"%s\",\"client_name\":\"A\\u0085B\",\"redirect_uris\":[\"https://a.example/cb\"]}",
     "the client metadata document's client_name contains control characters"},
    {NULL, "{\"client_id\":\"%s\",\"client_name\":\"Good\\u202eliveD\",\"redirect_uris\":[\"https://a.example/cb\"]}",
     "the client metadata document's client_name contains invisible or text-direction characters"},
    /* issue 10: names that read as another on the consent page */
#define INVISIBLE(esc)                                                                          \
    {NULL, "{\"client_id\":\"%s\",\"client_name\":\"Goo" esc "gle\",\"redirect_uris\":[\"https://a.example/cb\"]}", \
     "the client metadata document's client_name contains invisible or text-direction characters"}
    INVISIBLE("\\u202egle\\u200b Official"), INVISIBLE("\\u200b"), INVISIBLE("\\u200c"),
    INVISIBLE("\\u200d"), INVISIBLE("\\u200e"), INVISIBLE("\\u200f"), INVISIBLE("\\u202a"),
    INVISIBLE("\\u202d"), INVISIBLE("\\u2060"), INVISIBLE("\\u2064"), INVISIBLE("\\u2066"),
    INVISIBLE("\\u2069"), INVISIBLE("\\ufeff"), INVISIBLE("\\u00ad"), INVISIBLE("\\udb40\\udc41"),
#undef INVISIBLE
    {NULL, "{\"client_id\":\"%s\",\"client_name\":\"A\\u009bB\",\"redirect_uris\":[\"https://a.example/cb\"]}",
     "the client metadata document's client_name contains control characters"},
    {NULL, "{\"client_id\":\"%s\",\"client_name\":\"A\\u0000B\",\"redirect_uris\":[\"https://a.example/cb\"]}",
     "the client metadata document's client_name contains a NUL character"},
    /* redirect_uris */
    {NULL, "{\"client_id\":\"%s\",\"client_name\":\"A\"}",
     "the client metadata document has no redirect_uris"},
    {NULL, "{\"client_id\":\"%s\",\"client_name\":\"A\",\"redirect_uris\":[]}",
     "the client metadata document's redirect_uris must be a non-empty array"},
    {NULL, "{\"client_id\":\"%s\",\"client_name\":\"A\",\"redirect_uris\":\"https://a.example/cb\"}",
     "the client metadata document's redirect_uris must be a non-empty array"},
    {NULL, "{\"client_id\":\"%s\",\"client_name\":\"A\",\"redirect_uris\":null}",
     "the client metadata document's redirect_uris must be a non-empty array"},
    {NULL, "{\"client_id\":\"%s\",\"client_name\":\"A\",\"redirect_uris\":[\"https://a.example/cb#f\"]}",
     "the client metadata document's redirect_uris[0] must not have a fragment"},
    {NULL, "{\"client_id\":\"%s\",\"client_name\":\"A\",\"redirect_uris\":[\"https://a.example/cb\",\"http://app.example.com/cb\"]}",
     "the client metadata document's redirect_uris[1] must use https (http is allowed only for loopback hosts)"},
    {NULL, "{\"client_id\":\"%s\",\"client_name\":\"A\",\"redirect_uris\":[7]}",
     "the client metadata document's redirect_uris[0] is not a string"},
    {NULL, "{\"client_id\":\"%s\",\"client_name\":\"A\",\"redirect_uris\":[\"com.example.app:/cb\"]}",
     "the client metadata document's redirect_uris[0] must be an absolute http:// or https:// URI"},
    {NULL, "{\"client_id\":\"%s\",\"client_name\":\"A\",\"redirect_uris\":[\"https://user@a.example/cb\"]}",
     "the client metadata document's redirect_uris[0] must not contain user information"},
    {NULL, "{\"client_id\":\"%s\",\"client_name\":\"A\",\"redirect_uris\":[\"https://a.example/cb\\u0000x\"]}",
     "the client metadata document's redirect_uris[0] contains a NUL character"},
    /* secrets */
    {",\"token_endpoint_auth_method\":\"client_secret_basic\"", NULL,
     "the client metadata document's token_endpoint_auth_method must be \"none\""},
    {",\"token_endpoint_auth_method\":\"private_key_jwt\"", NULL,
     "the client metadata document's token_endpoint_auth_method must be \"none\""},
    {",\"token_endpoint_auth_method\":null", NULL,
     "the client metadata document's token_endpoint_auth_method must be \"none\""},
    /* embedded NUL: checked as the part before it, kept whole */
    {",\"token_endpoint_auth_method\":\"none\\u0000x\"", NULL,
     "the client metadata document's token_endpoint_auth_method must be \"none\""},
    {",\"client_secret\":\"hunter2\"", NULL,
     "the client metadata document must not contain a client_secret"},
    {",\"client_secret\":null,\"token_endpoint_auth_method\":\"none\"", NULL,
     "the client metadata document must not contain a client_secret"},
    /* grant and response types */
    {",\"grant_types\":[\"client_credentials\"]", NULL,
     "the client metadata document's grant_types may list only authorization_code and refresh_token"},
    {",\"grant_types\":[\"authorization_code\",\"implicit\"]", NULL,
     "the client metadata document's grant_types may list only authorization_code and refresh_token"},
    {",\"grant_types\":[\"authorization_code\\u0000x\"]", NULL,
     "the client metadata document's grant_types may list only authorization_code and refresh_token"},
    {",\"grant_types\":[\"refresh_token\"]", NULL,
     "the client metadata document's grant_types must include authorization_code"},
    {",\"grant_types\":[]", NULL,
     "the client metadata document's grant_types must include authorization_code"},
    {",\"grant_types\":\"authorization_code\"", NULL,
     "the client metadata document's grant_types must include authorization_code"},
    {",\"response_types\":[\"token\"]", NULL,
     "the client metadata document's response_types must be [\"code\"]"},
    {",\"response_types\":[\"code\",\"token\"]", NULL,
     "the client metadata document's response_types must be [\"code\"]"},
    {",\"response_types\":[\"code\\u0000x\"]", NULL,
     "the client metadata document's response_types must be [\"code\"]"},
    {",\"response_types\":\"code\"", NULL,
     "the client metadata document's response_types must be [\"code\"]"},
    /* not a JSON object */
    {NULL, "hello %s", "the client metadata document is not valid JSON"},
    {NULL, "[\"%s\"]", "the client metadata document is not a JSON object"},
    {NULL, "\"%s\"", "the client metadata document is not a JSON object"},
    {NULL, "{\"client_id\":\"%s\",\"client_name\":\"A\",\"redirect_uris\":[\"https://a.example/cb\"]} x",
     "the client metadata document is not valid JSON"},
    {NULL, "{\"client_id\":\"%s\",\"client_name\":\"A\",\"redirect_uris\":[\"https://a.example/cb\"],}",
     "the client metadata document is not valid JSON"},
    {NULL, "{'client_id':'%s'}", "the client metadata document is not valid JSON"},
    {NULL, "{\"client_id\":\"%s\",\"client_name\":\"A\xff\",\"redirect_uris\":[\"https://a.example/cb\"]}",
     "the client metadata document is not valid JSON"},
    {NULL, "{\"client_id\":\"%s\",", "the client metadata document is not valid JSON"},
    {NULL, "", "the client metadata document is not valid JSON"},
    {NULL, "{\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"%s\"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
     "the client metadata document is not valid JSON"},
};

START_TEST(test_bad_document)
{
    char body[8192];
    if (bad_docs[_i].extra)
        snprintf(body, sizeof body, "%s", valid_doc("/bad", bad_docs[_i].extra));
    else
        subst(body, sizeof body, bad_docs[_i].body, url_of("/bad"));
    set_route("/bad", "200 OK", "Content-Type: application/json\r\n", body);
    mcpauth_cimd *c = mcpauth__cimd_new(4);
    mcpauth_client cl;
    char err[256];
    ck_assert_int_eq(mcpauth__cimd_get(c, url_of("/bad"), &lab, T0, &cl, err, sizeof err), -1);
    ck_assert_msg(strcmp(err, bad_docs[_i].err) == 0, "case %d: %s\n  want %s", _i, err,
                  bad_docs[_i].err);
    ck_assert(client_is_empty(&cl));
    ck_assert_int_eq(nreq(), 1);
    mcpauth__cimd_free(c);
}
END_TEST

START_TEST(test_limits)
{
    mcpauth_client cl;
    char err[256];
    static char body[40000], name[1024], uri[2100];

    /* client_name: 200 characters (not bytes) pass, 201 do not */
    memset(name, 0, sizeof name);
    for (int k = 0; k < 200; k++)
        strcat(name, "é");
    snprintf(body, sizeof body,
             "{\"client_id\":\"%s\",\"client_name\":\"%s\",\"redirect_uris\":[\"https://a.example/cb\"]}",
             url_of("/n"), name);
    set_route("/n", "200 OK", "", body);
    ck_assert_msg(mcpauth__cimd_get(NULL, url_of("/n"), &lab, T0, &cl, err, sizeof err) == 0, "%s",
                  err);
    ck_assert_uint_eq(strlen(cl.client_name), 400);
    mcpauth__client_free(&cl);
    strcat(name, "x");
    snprintf(body, sizeof body,
             "{\"client_id\":\"%s\",\"client_name\":\"%s\",\"redirect_uris\":[\"https://a.example/cb\"]}",
             url_of("/n"), name);
    set_route("/n", "200 OK", "", body);
    ck_assert_int_eq(mcpauth__cimd_get(NULL, url_of("/n"), &lab, T0, &cl, err, sizeof err), -1);
    ck_assert_str_eq(err, "the client metadata document's client_name is longer than 200 characters");

    /* redirect_uri: 2000 characters pass, 2001 do not */
    memset(uri, 0, sizeof uri);
    strcpy(uri, "https://a.example/");
    while (strlen(uri) < 2000)
        strcat(uri, "x");
    snprintf(body, sizeof body,
             "{\"client_id\":\"%s\",\"client_name\":\"A\",\"redirect_uris\":[\"%s\"]}",
             url_of("/u"), uri);
    set_route("/u", "200 OK", "", body);
    ck_assert_msg(mcpauth__cimd_get(NULL, url_of("/u"), &lab, T0, &cl, err, sizeof err) == 0, "%s",
                  err);
    mcpauth__client_free(&cl);
    strcat(uri, "x");
    snprintf(body, sizeof body,
             "{\"client_id\":\"%s\",\"client_name\":\"A\",\"redirect_uris\":[\"https://a.example/cb\",\"%s\"]}",
             url_of("/u"), uri);
    set_route("/u", "200 OK", "", body);
    ck_assert_int_eq(mcpauth__cimd_get(NULL, url_of("/u"), &lab, T0, &cl, err, sizeof err), -1);
    ck_assert_str_eq(err,
                     "the client metadata document's redirect_uris[1] is longer than 2000 characters");

    /* at most 20 redirect_uris */
    char list[2048] = "";
    for (int k = 0; k < 21; k++) {
        char one[64];
        snprintf(one, sizeof one, "%s\"https://a.example/cb%d\"", k ? "," : "", k);
        strcat(list, one);
    }
    snprintf(body, sizeof body, "{\"client_id\":\"%s\",\"client_name\":\"A\",\"redirect_uris\":[%s]}",
             url_of("/many"), list);
    set_route("/many", "200 OK", "", body);
    ck_assert_int_eq(mcpauth__cimd_get(NULL, url_of("/many"), &lab, T0, &cl, err, sizeof err), -1);
    ck_assert_str_eq(err, "the client metadata document has more than 20 redirect_uris");
    ck_assert_int_eq(nreq(), 5);
}
END_TEST

START_TEST(test_oversized)
{
    /* default limit 16 KiB: a padded valid document over it is refused */
    static char body[20000], pad[17000];
    memset(pad, 'x', sizeof pad - 1);
    snprintf(body, sizeof body,
             "{\"client_id\":\"%s\",\"client_name\":\"A\",\"redirect_uris\":[\"https://a.example/cb\"],"
             "\"pad\":\"%s\"}",
             url_of("/big"), pad);
    ck_assert_uint_gt(strlen(body), 17000);
    set_route("/big", "200 OK", "", body);
    mcpauth_client cl;
    char err[256];
    ck_assert_int_eq(mcpauth__cimd_get(NULL, url_of("/big"), &lab, T0, &cl, err, sizeof err), -1);
    ck_assert_str_eq(err, "the client metadata document could not be fetched: response larger "
                          "than 16384 bytes");
    ck_assert(client_is_empty(&cl));
    /* and a caller's limit applies */
    set_route("/small", "200 OK", "", valid_doc("/small", ""));
    mcpauth_cimd_opts o = lab;
    o.max_bytes = 64;
    ck_assert_int_eq(mcpauth__cimd_get(NULL, url_of("/small"), &o, T0, &cl, err, sizeof err), -1);
    ck_assert_str_eq(err, "the client metadata document could not be fetched: response larger "
                          "than 64 bytes");
    o.max_bytes = 4096;
    ck_assert_int_eq(mcpauth__cimd_get(NULL, url_of("/small"), &o, T0, &cl, err, sizeof err), 0);
    mcpauth__client_free(&cl);
}
END_TEST

START_TEST(test_http_errors)
{
    mcpauth_client cl;
    char err[256];
    ck_assert_int_eq(mcpauth__cimd_get(NULL, url_of("/missing"), &lab, T0, &cl, err, sizeof err), -1);
    ck_assert_str_eq(err, "the client metadata document could not be fetched (HTTP 404)");
    ck_assert(client_is_empty(&cl));

    /* a redirect is reported, not followed, even to a valid document */
    char loc[256];
    set_route("/target", "200 OK", "", valid_doc("/target", ""));
    snprintf(loc, sizeof loc, "Location: %s\r\n", url_of("/target"));
    set_route("/moved", "302 Found", loc, "");
    ck_assert_int_eq(mcpauth__cimd_get(NULL, url_of("/moved"), &lab, T0, &cl, err, sizeof err), -1);
    ck_assert_str_eq(err, "the client metadata document's URL answered with a redirect (HTTP 302), "
                          "which is not followed");
    ck_assert_int_eq(nreq(), 2);

    set_route("/moved", "301 Moved Permanently", loc, "");
    ck_assert_int_eq(mcpauth__cimd_get(NULL, url_of("/moved"), &lab, T0, &cl, err, sizeof err), -1);
    ck_assert_str_eq(err, "the client metadata document's URL answered with a redirect (HTTP 301), "
                          "which is not followed");
    set_route("/nc", "204 No Content", "", "");
    ck_assert_int_eq(mcpauth__cimd_get(NULL, url_of("/nc"), &lab, T0, &cl, err, sizeof err), -1);
    ck_assert_str_eq(err, "the client metadata document could not be fetched (HTTP 204)");
    ck_assert_int_eq(nreq(), 4);
}
END_TEST

START_TEST(test_timeout)
{
    set_hang("/slow");
    mcpauth_cimd_opts o = lab;
    o.timeout_ms = 300;
    mcpauth_client cl;
    char err[256];
    double t0 = now_ms();
    ck_assert_int_eq(mcpauth__cimd_get(NULL, url_of("/slow"), &o, T0, &cl, err, sizeof err), -1);
    double dt = now_ms() - t0;
    ck_assert_msg(dt >= 250 && dt < 1500, "took %.0f ms", dt);
    ck_assert_msg(strncmp(err, "the client metadata document could not be fetched: ", 51) == 0 &&
                      strcasestr(err, "timed out"),
                  "%s", err);
    ck_assert(client_is_empty(&cl));
}
END_TEST

START_TEST(test_bad_arguments)
{
    mcpauth_client cl;
    char err[256];
    ck_assert_int_eq(mcpauth__cimd_get(NULL, NULL, &lab, T0, &cl, err, sizeof err), -1);
    ck_assert_str_eq(err, "the client_id URL is empty");
    ck_assert_int_eq(mcpauth__cimd_get(NULL, "", &lab, T0, &cl, err, sizeof err), -1);
    ck_assert_int_eq(mcpauth__cimd_get(NULL, url_of("/x"), &lab, T0, NULL, err, sizeof err), -1);
    ck_assert_str_ne(err, "");
    ck_assert_int_eq(mcpauth__cimd_get(NULL, "https://a.example/x#f", NULL, T0, &cl, NULL, 0), -1);
    ck_assert_int_eq(mcpauth__cimd_get(NULL, "https://a.example/x#f", NULL, T0, &cl, err, 8), -1);
    ck_assert_str_eq(err, "the cli");
    ck_assert_int_eq(nreq(), 0);
}
END_TEST

/* ---- URL form ---- */

static const struct {
    const char *url;
    int ok;
    const char *why; /* for get() under production rules, after "the client_id URL " */
} url_cases[] = {
    {"https://app.example.com/oauth/client.json", 1, NULL},
    {"https://app.example.com/client", 1, NULL},
    {"https://app.example.com/oauth/", 1, NULL},
    {"https://app.example.com:8443/c.json", 1, NULL},
    {"https://app.example.com/c.json?v=2", 1, NULL},
    {"https://app.example.com/a%20b", 1, NULL},
    {"https://[2001:db8::1]/c.json", 1, NULL},
    {"http://app.example.com/client.json", 0,
     "must use https (http is allowed only for loopback hosts)"},
    {"http://127.0.0.1/client.json", 0, "must use https"},
    {"http://localhost:3000/client.json", 0, "must use https"},
    {"ftp://app.example.com/client.json", 0, "must be an absolute http:// or https:// URI"},
    {"app.example.com/client.json", 0, "must be an absolute http:// or https:// URI"},
    {"https:app.example.com/client.json", 0, "must be an absolute http:// or https:// URI"},
    {"https://app.example.com", 0,
     "must have a path (for example https://app.example.com/oauth/client.json)"},
    {"https://app.example.com/", 0,
     "must have a path (for example https://app.example.com/oauth/client.json)"},
    {"https://app.example.com?x=/a", 0,
     "must have a path (for example https://app.example.com/oauth/client.json)"},
    {"https://app.example.com/?x=1", 0,
     "must have a path (for example https://app.example.com/oauth/client.json)"},
    {"https://app.example.com/client.json#frag", 0, "must not have a fragment"},
    {"https://app.example.com/client.json#", 0, "must not have a fragment"},
    {"https://user@app.example.com/client.json", 0, "must not contain user information"},
    {"https://user:pw@app.example.com/client.json", 0, "must not contain user information"},
    {"https://app.example.com/./client.json", 0, "must not contain \".\" or \"..\" path segments"},
    {"https://app.example.com/a/../client.json", 0,
     "must not contain \".\" or \"..\" path segments"},
    {"https://app.example.com/a/..", 0, "must not contain \".\" or \"..\" path segments"},
    {"https://app.example.com/a/%2e%2E/client.json", 0,
     "must not contain \".\" or \"..\" path segments"},
    {"https://app.example.com/a/%2e/b", 0, "must not contain \".\" or \"..\" path segments"},
    {"https://app.example.com/a/.%2e", 0, "must not contain \".\" or \"..\" path segments"},
    {"https://app.example.com/a/...", 1, NULL},
    {"https://app.example.com/a/.well-known", 1, NULL},
    {"https://App.Example.com/client.json", 0,
     "is not in canonical form (lowercase scheme and host, no default port)"},
    {"HTTPS://app.example.com/client.json", 0,
     "is not in canonical form (lowercase scheme and host, no default port)"},
    {"https://2130706433/client.json", 0,
     "is not in canonical form (lowercase scheme and host, no default port)"},
    {"https://0x7f.1/client.json", 0,
     "is not in canonical form (lowercase scheme and host, no default port)"},
    {"https://app.example.com:443/client.json", 0,
     "is not in canonical form (lowercase scheme and host, no default port)"},
    {"https://app.example.com/a\\b", 0, "must not contain a backslash"},
    {"https://app.example.com/client json", 0, "contains a space, control or non-ASCII character"},
    {"https://app.example.com/cl\xc3\xa9", 0, "contains a space, control or non-ASCII character"},
    {"https://app.example.com:0/client.json", 0, "has an invalid port"},
    {"https:///client.json", 0, "has no host"},
    {"", 0, "is empty"},
};

START_TEST(test_is_url)
{
    ck_assert_msg(mcpauth__cimd_is_url(url_cases[_i].url) == url_cases[_i].ok, "%s",
                  url_cases[_i].url);
    if (url_cases[_i].ok)
        return;
    /* get() refuses it with the reason, before any network */
    mcpauth_cimd_opts prod = {.timeout_ms = 300};
    mcpauth_client cl;
    char err[512], want[512];
    ck_assert_int_eq(mcpauth__cimd_get(NULL, url_cases[_i].url, &prod, T0, &cl, err, sizeof err), -1);
    snprintf(want, sizeof want, "the client_id URL %s", url_cases[_i].why);
    ck_assert_msg(strcmp(err, want) == 0, "%s: %s", url_cases[_i].url, err);
    ck_assert(client_is_empty(&cl));
}
END_TEST

START_TEST(test_is_url_misc)
{
    ck_assert(!mcpauth__cimd_is_url(NULL));
    char longu[2100] = "https://app.example.com/";
    while (strlen(longu) < 2001)
        strcat(longu, "a");
    ck_assert(!mcpauth__cimd_is_url(longu));
    longu[2000] = '\0';
    ck_assert(mcpauth__cimd_is_url(longu));
    /* lab rules accept loopback http for get(), but is_url never does */
    ck_assert(!mcpauth__cimd_is_url("http://127.0.0.1:8080/client.json"));
    mcpauth_client cl;
    char err[256];
    ck_assert_int_eq(mcpauth__cimd_get(NULL, "http://app.example.com/c.json", &lab, T0, &cl, err,
                                      sizeof err),
                     -1);
    ck_assert_str_eq(err, "the client_id URL must use https (http is allowed only for loopback hosts)");
    ck_assert_int_eq(mcpauth__cimd_get(NULL, "http://LOCALHOST:1/c.json", &lab, T0, &cl, err,
                                      sizeof err),
                     -1);
    ck_assert_str_eq(err, "the client_id URL is not in canonical form (lowercase scheme and host, "
                          "no default port)");
}
END_TEST

/* Fuzzing (tests/fuzz, harness cimd): the name is exactly len bytes and
 * need not be NUL-terminated; it was checked with strlen, which read past
 * the end of such a buffer (ASan: heap-buffer-overflow) and refused a name
 * followed by other bytes as "contains a NUL character". */
START_TEST(test_display_name_not_terminated)
{
    char *name = malloc(4);
    ck_assert_ptr_nonnull(name);
    memcpy(name, "Acme", 4); /* no NUL anywhere */
    ck_assert_ptr_null(mcpauth__display_name_problem(name, 4));
    free(name);
    ck_assert_ptr_null(mcpauth__display_name_problem("AcmeXYZ", 4));
    ck_assert_str_eq(mcpauth__display_name_problem("Ac\0me", 5), "contains a NUL character");
}
END_TEST

Suite *cimd_suite(void)
{
    Suite *s = suite_create("cimd");
    TCase *tc = tcase_create("cimd");
    tcase_add_checked_fixture(tc, server_start, server_stop);
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, test_valid_document);
    tcase_add_test(tc, test_defaults_and_grant_types);
    tcase_add_test(tc, test_cached);
    tcase_add_loop_test(tc, test_cache_ttl, 0, sizeof ttl_cases / sizeof ttl_cases[0]);
    tcase_add_test(tc, test_cache_max_cache_and_disabled);
    tcase_add_test(tc, test_cache_bounded);
    tcase_add_test(tc, test_failures_not_cached);
    tcase_add_test(tc, test_cache_separates_allow_private);
    tcase_add_test(tc, test_concurrent);
    tcase_add_test(tc, test_production_refuses_loopback);
    tcase_add_loop_test(tc, test_bad_document, 0, sizeof bad_docs / sizeof bad_docs[0]);
    tcase_add_test(tc, test_limits);
    tcase_add_test(tc, test_oversized);
    tcase_add_test(tc, test_http_errors);
    tcase_add_test(tc, test_timeout);
    tcase_add_test(tc, test_bad_arguments);
    tcase_add_loop_test(tc, test_is_url, 0, sizeof url_cases / sizeof url_cases[0]);
    tcase_add_test(tc, test_is_url_misc);
    tcase_add_test(tc, test_display_name_not_terminated);
    suite_add_tcase(s, tc);
    return s;
}
