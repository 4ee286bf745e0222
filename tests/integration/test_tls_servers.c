/* The shipped TLS variants (lighttpd/mcpauth-tls.conf with mod_openssl,
 * apache/mcpauth-tls.conf with mod_ssl) on real servers: metadata over
 * https with a certificate made here, HSTS and the other security headers,
 * no version banner, and TLS 1.1 refused. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>
#include <curl/curl.h>

#include "harness.h"

static const char conf[] =
    "[resource files]\n"
    "uri = http://127.0.0.1:@PORT@/mcp/files\n"
    "authorization_servers = http://127.0.0.1:@PORT@\n";

static const char lighttpd_extra[] =
    "var.mcpauth_tls_socket = \"127.0.0.1:@AUXPORT@\"\n"
    "var.mcpauth_tls_pem = \"@DIR@/cert.pem\"\n"
    "var.mcpauth_tls_key = \"@DIR@/key.pem\"\n"
    "include \"@SRCDIR@/lighttpd/mcpauth-tls.conf\"\n";

static const char apache_extra[] =
    "LoadModule ssl_module @MODDIR@/mod_ssl.so\n"
    "LoadModule headers_module @MODDIR@/mod_headers.so\n"
    "LoadModule socache_shmcb_module @MODDIR@/mod_socache_shmcb.so\n"
    "Listen 127.0.0.1:@AUXPORT@\n"
    "Define MCPAUTH_TLS_PORT @AUXPORT@\n"
    "Define MCPAUTH_TLS_NAME 127.0.0.1\n"
    "Define MCPAUTH_TLS_CERT @DIR@/cert.pem\n"
    "Define MCPAUTH_TLS_KEY @DIR@/key.pem\n"
    "Define MCPAUTH_TLS_INCLUDE @SRCDIR@/apache/mcpauth-fcgi.conf\n"
    "Include \"@SRCDIR@/apache/mcpauth-tls.conf\"\n";

static th_server srv;
static char ca[600];

static int make_cert(th_server *s)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
             "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 "
             "-keyout %s/key.pem -out %s/cert.pem >/dev/null 2>&1 && chmod 644 %s/key.pem",
             s->dir, s->dir, s->dir);
    snprintf(ca, sizeof ca, "%s/cert.pem", s->dir);
    return system(cmd);
}

static void start(th_kind kind)
{
    th_options o = {conf, kind == TH_LIGHTTPD ? lighttpd_extra : apache_extra, NULL, make_cert};
    if (th_start_ex(&srv, kind, &o) != 0 || th_wait_port(srv.aux_port, 10000) != 0)
        exit(EXIT_FAILURE);
    th_ca_file = ca;
}
static void start_lighttpd(void) { start(TH_LIGHTTPD); }
static void start_apache(void) { start(TH_APACHE); }
static void stop(void)
{
    th_ca_file = NULL;
    th_stop(&srv);
}

START_TEST(metadata_over_tls)
{
    char url[256];
    snprintf(url, sizeof url, "https://127.0.0.1:%d/.well-known/oauth-protected-resource/mcp/files",
             srv.aux_port);
    th_resp r;
    ck_assert_int_eq(th_http("GET", url, NULL, NULL, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"resource\":"));
    ck_assert_str_eq(th_hdr(&r, "Strict-Transport-Security"), "max-age=63072000");
    ck_assert_str_eq(th_hdr(&r, "Referrer-Policy"), "no-referrer");
    const char *server = th_hdr(&r, "Server");
    ck_assert_msg(!server || !strpbrk(server, "0123456789"), "version banner: %s", server);
    th_resp_free(&r);
}
END_TEST

START_TEST(old_tls_refused)
{
    char url[256];
    snprintf(url, sizeof url, "https://127.0.0.1:%d/.well-known/oauth-protected-resource/mcp/files",
             srv.aux_port);
    th_tls_max = CURL_SSLVERSION_MAX_TLSv1_1;
    th_resp r;
    int rc = th_http("GET", url, NULL, NULL, &r);
    th_tls_max = 0;
    ck_assert_msg(rc != 0, "a TLS 1.1 handshake succeeded (status %ld)", r.status);
    th_resp_free(&r);
}
END_TEST

/* Regression (outside review): Apache answered TRACE, echoing the
 * Authorization header back (cross-site tracing).  The shipped virtual host
 * turns it off; lighttpd never implements it. */
START_TEST(trace_refused)
{
    char url[256];
    snprintf(url, sizeof url, "https://127.0.0.1:%d/mcp/files", srv.aux_port);
    static const char *const hdrs[] = {"Authorization: Bearer trace-secret-token", NULL};
    th_resp r;
    ck_assert_int_eq(th_http("TRACE", url, hdrs, NULL, &r), 0);
    /* Apache: 405; lighttpd has no TRACE handler and answers as for GET */
    ck_assert_msg(srv.kind == TH_APACHE ? r.status == 405 : r.status != 200, "TRACE got %ld",
                  r.status);
    ck_assert_ptr_null(strstr(r.body, "trace-secret-token"));
    th_resp_free(&r);
}
END_TEST

static TCase *server_case(const char *name, void (*setup)(void))
{
    TCase *tc = tcase_create(name);
    tcase_add_unchecked_fixture(tc, setup, stop);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, metadata_over_tls);
    tcase_add_test(tc, old_tls_refused);
    tcase_add_test(tc, trace_refused);
    return tc;
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    Suite *s = suite_create("tls-servers");
    suite_add_tcase(s, server_case("lighttpd", start_lighttpd));
    suite_add_tcase(s, server_case("apache", start_apache));
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    curl_global_cleanup();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
