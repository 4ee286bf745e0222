/* mcpauth-metadata behind real lighttpd and real Apache, configured from the
 * shipped snippets, fetched with a real HTTP client. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>
#include <curl/curl.h>
#include <json-c/json.h>

#include "harness.h"

static const char conf_two[] =
    "metadata_max_age = 300\n"
    "default_resource = files\n"
    "[resource files]\n"
    "uri = http://127.0.0.1:@PORT@/mcp/files\n"
    "resource_name = Files\n"
    "authorization_servers = http://127.0.0.1:@PORT@\n"
    "scopes_supported = files:read files:write\n"
    "resource_documentation = https://docs.example.com/files\n"
    "[resource github]\n"
    "uri = http://127.0.0.1:@PORT@/mcp/github\n"
    "authorization_servers = http://127.0.0.1:@PORT@ https://auth.example.com/tenant1\n"
    "scopes_supported = repo:read\n";

static th_server srv;

static void start(th_kind kind)
{
    if (th_start(&srv, kind, conf_two) != 0) {
        fprintf(stderr, "cannot start %s\n", th_kind_name(kind));
        exit(EXIT_FAILURE); /* unchecked fixture: no test can run without it */
    }
}
static void start_lighttpd(void) { start(TH_LIGHTTPD); }
static void start_apache(void) { start(TH_APACHE); }
static void stop(void) { th_stop(&srv); }

static void get(const char *method, const char *path, th_resp *r)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", srv.base, path);
    static const char *const hdrs[] = {"MCP-Protocol-Version: 2025-11-25", NULL};
    ck_assert_msg(th_http(method, url, hdrs, NULL, r) == 0, "no HTTP response from %s", url);
}

static void assert_header(const th_resp *r, const char *name, const char *want)
{
    char buf[1024];
    const char *v = th_header(r, name, buf, sizeof buf);
    ck_assert_msg(v != NULL, "header %s missing in:\n%s", name, r->headers);
    ck_assert_str_eq(v, want);
}

static json_object *field(json_object *o, const char *name)
{
    json_object *v = NULL;
    ck_assert_msg(json_object_object_get_ex(o, name, &v), "field %s missing", name);
    return v;
}

START_TEST(path_inserted_document)
{
    th_resp r;
    get("GET", "/.well-known/oauth-protected-resource/mcp/files", &r);
    ck_assert_int_eq(r.status, 200);
    assert_header(&r, "Content-Type", "application/json");
    assert_header(&r, "Cache-Control", "public, max-age=300");
    assert_header(&r, "Access-Control-Allow-Origin", "*");
    json_object *o = json_tokener_parse(r.body);
    ck_assert_msg(o != NULL, "not JSON: %s", r.body);
    char want[128];
    snprintf(want, sizeof want, "%s/mcp/files", srv.base);
    ck_assert_str_eq(json_object_get_string(field(o, "resource")), want);
    /* byte-identical in the raw body, too (no "\/" escaping) */
    char raw[160];
    snprintf(raw, sizeof raw, "\"resource\":\"%s\"", want);
    ck_assert_ptr_nonnull(strstr(r.body, raw));
    json_object *as = field(o, "authorization_servers");
    ck_assert_int_eq(json_object_array_length(as), 1);
    ck_assert_str_eq(json_object_get_string(json_object_array_get_idx(as, 0)), srv.base);
    json_object *sc = field(o, "scopes_supported");
    ck_assert_int_eq(json_object_array_length(sc), 2);
    ck_assert_str_eq(json_object_get_string(json_object_array_get_idx(sc, 0)), "files:read");
    ck_assert_str_eq(json_object_get_string(json_object_array_get_idx(sc, 1)), "files:write");
    json_object *bm = field(o, "bearer_methods_supported");
    ck_assert_int_eq(json_object_array_length(bm), 1);
    ck_assert_str_eq(json_object_get_string(json_object_array_get_idx(bm, 0)), "header");
    ck_assert_str_eq(json_object_get_string(field(o, "resource_name")), "Files");
    ck_assert_str_eq(json_object_get_string(field(o, "resource_documentation")),
                     "https://docs.example.com/files");
    ck_assert_int_eq(json_object_object_length(o), 6);
    json_object_put(o);
    th_resp_free(&r);
}
END_TEST

/* Regression (outside review): a path the server normalises is refused
 * rather than read one way by mcpauth and another by the server; encoded
 * forms of the same plain path still work. */
START_TEST(ambiguous_paths_400)
{
    static char out[65536];
    static const char *const bad[] = {
        "/.well-known/oauth-protected-resource/mcp/files/../github",
        "/.well-known/oauth-protected-resource/mcp/files/%2e%2e/github",
        "/.well-known/oauth-protected-resource/mcp//github",
        "/.well-known/oauth-protected-resource/mcp/files;x", NULL};
    for (const char *const *t = bad; *t; t++) {
        long st = th_raw_request(srv.port, "GET", *t, NULL, NULL, out, sizeof out);
        ck_assert_msg(st == 400 || st == 404, "%s: %s gave %ld", th_kind_name(srv.kind), *t, st);
        ck_assert_ptr_null(strstr(out, "\"resource\""));
    }
    /* the path reaching the program: refused by it, with its JSON error */
    long st = th_raw_request(srv.port, "GET",
                             "/.well-known/oauth-protected-resource/mcp/files/%2e%2e/github", NULL,
                             NULL, out, sizeof out);
    ck_assert_int_eq(st, 400);
    ck_assert_ptr_nonnull(strstr(out, "\"error\":\"invalid_request\""));
    /* percent-encoded letters are the same path: the document */
    st = th_raw_request(srv.port, "GET", "/.well-known/oauth-protected-resource/mcp/%67ithub", NULL,
                        NULL, out, sizeof out);
    ck_assert_int_eq(st, 200);
    ck_assert_ptr_nonnull(strstr(out, "/mcp/github\""));
}
END_TEST

START_TEST(second_resource_document)
{
    th_resp r;
    get("GET", "/.well-known/oauth-protected-resource/mcp/github", &r);
    ck_assert_int_eq(r.status, 200);
    json_object *o = json_tokener_parse(r.body);
    ck_assert_ptr_nonnull(o);
    char want[128];
    snprintf(want, sizeof want, "%s/mcp/github", srv.base);
    ck_assert_str_eq(json_object_get_string(field(o, "resource")), want);
    json_object *as = field(o, "authorization_servers");
    ck_assert_int_eq(json_object_array_length(as), 2);
    ck_assert_str_eq(json_object_get_string(json_object_array_get_idx(as, 1)),
                     "https://auth.example.com/tenant1");
    json_object *x;
    ck_assert(!json_object_object_get_ex(o, "resource_name", &x));
    json_object_put(o);
    th_resp_free(&r);
}
END_TEST

START_TEST(root_document_is_default_resource)
{
    th_resp r;
    get("GET", "/.well-known/oauth-protected-resource", &r);
    ck_assert_int_eq(r.status, 200);
    json_object *o = json_tokener_parse(r.body);
    ck_assert_ptr_nonnull(o);
    char want[128];
    snprintf(want, sizeof want, "%s/mcp/files", srv.base);
    ck_assert_str_eq(json_object_get_string(field(o, "resource")), want);
    json_object_put(o);
    th_resp_free(&r);
}
END_TEST

START_TEST(query_string_ignored)
{
    th_resp r;
    get("GET", "/.well-known/oauth-protected-resource/mcp/github?x=1", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "/mcp/github\""));
    th_resp_free(&r);
}
END_TEST

START_TEST(cors_preflight)
{
    th_resp r;
    char url[512];
    snprintf(url, sizeof url, "%s/.well-known/oauth-protected-resource/mcp/files", srv.base);
    static const char *const hdrs[] = {"Origin: https://app.example.com",
                                       "Access-Control-Request-Method: GET",
                                       "Access-Control-Request-Headers: mcp-protocol-version",
                                       NULL};
    ck_assert_int_eq(th_http("OPTIONS", url, hdrs, NULL, &r), 0);
    ck_assert_int_eq(r.status, 204);
    assert_header(&r, "Access-Control-Allow-Origin", "*");
    assert_header(&r, "Access-Control-Allow-Methods", "GET, HEAD, OPTIONS");
    assert_header(&r, "Access-Control-Allow-Headers",
                  "Authorization, Content-Type, MCP-Protocol-Version, Mcp-Session-Id, "
                  "Last-Event-ID, Mcp-Method, Mcp-Name");
    ck_assert_uint_eq(r.bodylen, 0);
    th_resp_free(&r);
}
END_TEST

START_TEST(head_request)
{
    th_resp r;
    get("HEAD", "/.well-known/oauth-protected-resource/mcp/files", &r);
    ck_assert_int_eq(r.status, 200);
    assert_header(&r, "Content-Type", "application/json");
    ck_assert_uint_eq(r.bodylen, 0);
    th_resp_free(&r);
}
END_TEST

START_TEST(unknown_path_404)
{
    static const char *const paths[] = {
        "/.well-known/oauth-protected-resource/mcp/nope",
        "/.well-known/oauth-protected-resource/mcp/files/",
        "/.well-known/oauth-protected-resource/mcp",
    };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        th_resp r;
        get("GET", paths[i], &r);
        ck_assert_msg(r.status == 404, "%s: status %ld", paths[i], r.status);
        assert_header(&r, "Content-Type", "application/json");
        json_object *o = json_tokener_parse(r.body);
        ck_assert_msg(o != NULL, "404 body not JSON: %s", r.body);
        ck_assert_str_eq(json_object_get_string(field(o, "error")), "not_found");
        json_object_put(o);
        th_resp_free(&r);
    }
}
END_TEST

START_TEST(other_methods_405)
{
    static const char *const methods[] = {"POST", "PUT", "DELETE", "PATCH"};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        th_resp r;
        char url[512];
        snprintf(url, sizeof url, "%s/.well-known/oauth-protected-resource/mcp/files", srv.base);
        /* a body, so lighttpd does not answer 411 before the program sees it */
        ck_assert_int_eq(th_http(methods[i], url, NULL, "{}", &r), 0);
        ck_assert_msg(r.status == 405, "%s: status %ld", methods[i], r.status);
        assert_header(&r, "Allow", "GET, HEAD, OPTIONS");
        json_object *o = json_tokener_parse(r.body);
        ck_assert_msg(o != NULL, "405 body not JSON: %s", r.body);
        ck_assert_str_eq(json_object_get_string(field(o, "error")), "method_not_allowed");
        json_object_put(o);
        th_resp_free(&r);
    }
}
END_TEST

/* A bad mcpauth.conf under a real server: the program refuses to serve and
 * its one line lands in the server's error log. */
static void bad_config_in_error_log(th_kind kind)
{
    th_server bad;
    static const char conf[] = "[resource files]\nuri = http://127.0.0.1:@PORT@/mcp\n"
                               "authorization_servers = http://127.0.0.1:@PORT@\ncolour = blue\n";
    int started = th_start(&bad, kind, conf) == 0;
    if (started) {
        char url[256];
        snprintf(url, sizeof url, "%s/.well-known/oauth-protected-resource/mcp", bad.base);
        th_resp r;
        if (th_http("GET", url, NULL, NULL, &r) == 0) {
            ck_assert_msg(r.status >= 500, "served with a bad configuration: %ld", r.status);
            th_resp_free(&r);
        }
    }
    char *log = th_error_log(&bad);
    char want[512];
    snprintf(want, sizeof want,
             "mcpauth-metadata: configuration error: %s/mcpauth.conf:4: unknown key \"colour\" in "
             "[resource files]",
             bad.dir);
    int found = strstr(log, want) != NULL;
    char *o = NULL;
    if (!found) { /* lighttpd may refuse to start: the line is on its stderr */
        char path[512];
        snprintf(path, sizeof path, "%s/server.out", bad.dir);
        FILE *f = fopen(path, "r");
        if (f) {
            size_t n = 0;
            o = calloc(1, 65536);
            n = fread(o, 1, 65535, f);
            o[n] = '\0';
            fclose(f);
            found = strstr(o, want) != NULL;
        }
    }
    th_stop(&bad);
    ck_assert_msg(found, "\"%s\" not in the error log:\n%s\n%s", want, log, o ? o : "");
    free(log);
    free(o);
}

START_TEST(bad_config_lighttpd) { bad_config_in_error_log(TH_LIGHTTPD); }
END_TEST
START_TEST(bad_config_apache) { bad_config_in_error_log(TH_APACHE); }
END_TEST

/* The program itself: --check accepts the example and refuses a bad file with
 * one line on stderr and exit status 1. */
START_TEST(check_flag)
{
    char prog[512], good[512], badf[512];
    snprintf(prog, sizeof prog, "%s/fcgi/mcpauth-metadata", th_builddir());
    snprintf(good, sizeof good, "%s/examples/mcpauth.conf", th_srcdir());
    char *err = NULL;
    char *argv_good[] = {prog, "--check", "--config", good, NULL};
    ck_assert_int_eq(th_run(argv_good, NULL, &err), 0);
    free(err);

    char dir[] = "/tmp/mcpauth-check-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    th_write_file(dir, "bad.conf", "[resource a]\nuri = http://example.com/mcp\n");
    snprintf(badf, sizeof badf, "%s/bad.conf", dir);
    char *argv_bad[] = {prog, "--check", "--config", badf, NULL};
    ck_assert_int_eq(th_run(argv_bad, NULL, &err), 1);
    char want[1024];
    snprintf(want, sizeof want,
             "mcpauth-metadata: configuration error: %s:2: uri \"http://example.com/mcp\" must use "
             "https (http is allowed only for loopback hosts)\n",
             badf);
    ck_assert_str_eq(err, want);
    free(err);

    /* $MCPAUTH_CONFIG is used when --config is absent */
    char env[600];
    snprintf(env, sizeof env, "MCPAUTH_CONFIG=%s", badf);
    const char *envp[] = {env, NULL};
    char *argv_env[] = {prog, "--check", NULL};
    ck_assert_int_eq(th_run(argv_env, envp, &err), 1);
    ck_assert_str_eq(err, want);
    free(err);

    char *argv_usage[] = {prog, "--bogus", NULL};
    ck_assert_int_eq(th_run(argv_usage, NULL, &err), 2);
    ck_assert_ptr_nonnull(strstr(err, "unknown argument \"--bogus\""));
    free(err);
    unlink(badf);
    rmdir(dir);
}
END_TEST

static TCase *server_case(const char *name, void (*setup)(void))
{
    TCase *tc = tcase_create(name);
    tcase_add_unchecked_fixture(tc, setup, stop);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, path_inserted_document);
    tcase_add_test(tc, second_resource_document);
    tcase_add_test(tc, root_document_is_default_resource);
    tcase_add_test(tc, query_string_ignored);
    tcase_add_test(tc, cors_preflight);
    tcase_add_test(tc, head_request);
    tcase_add_test(tc, unknown_path_404);
    tcase_add_test(tc, other_methods_405);
    tcase_add_test(tc, ambiguous_paths_400);
    return tc;
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    Suite *s = suite_create("metadata-servers");
    suite_add_tcase(s, server_case("lighttpd", start_lighttpd));
    suite_add_tcase(s, server_case("apache", start_apache));
    TCase *tc = tcase_create("startup");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, check_flag);
    tcase_add_test(tc, bad_config_lighttpd);
    tcase_add_test(tc, bad_config_apache);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    curl_global_cleanup();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
