/* resource_metadata_url on real lighttpd and real Apache: a site below a
 * user's folder (/~alice/...), whose host's /.well-known/ is not the
 * user's, names its protected resource metadata below that folder.  The
 * 401 and 403 challenges of mcpauth-gate (lighttpd authorizer mode, Apache
 * mod_authnz_fcgi) and mcpauth-proxy carry that URL, and mcpauth-metadata,
 * routed there, serves the document with the resource URI unchanged
 * (RFC 9728 §3.3, §5.1). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>
#include <curl/curl.h>
#include <json-c/json.h>

#include "../support/tokens.h"
#include "harness.h"

static const char conf_tmpl[] =
    "runtime_dir = @DIR@\n"
    "[resource files]\n"
    "uri = http://127.0.0.1:@PORT@/~alice/mcp/files\n"
    "resource_metadata_url = http://127.0.0.1:@PORT@/~alice/mcp/.well-known/"
    "oauth-protected-resource/files\n"
    "authorization_servers = http://127.0.0.1:@PORT@/~alice/mcp\n"
    "scopes_supported = files:read files:write\n"
    "scopes_required = files:read\n"
    "backend = http://127.0.0.1:%d/mcp\n"
    "[resource docs]\n"
    "uri = http://127.0.0.1:@PORT@/~alice/docs\n"
    "resource_metadata_url = http://127.0.0.1:@PORT@/~alice/mcp/.well-known/"
    "oauth-protected-resource/docs\n"
    "authorization_servers = http://127.0.0.1:@PORT@/~alice/mcp\n"
    "scopes_supported = docs:read\n"
    "scopes_required = docs:read\n"
    "[issuer local]\n"
    "issuer = http://127.0.0.1:@PORT@/~alice/mcp\n"
    "jwks_file = @DIR@/jwks.json\n";

#define PRM_PREFIX "/~alice/mcp/.well-known/oauth-protected-resource"

/* The user's metadata folder goes to mcpauth-metadata, before the
 * shipped snippets' prefixes (lighttpd takes the first that matches). */
static const char lighttpd_extra[] =
    "fastcgi.server += ( \"" PRM_PREFIX "\" => ((\n"
    "    \"bin-path\" => var.mcpauth_libexecdir + \"/mcpauth-metadata\",\n"
    "    \"socket\" => var.mcpauth_rundir + \"/mcpauth-metadata-user.sock\",\n"
    "    \"bin-environment\" => ( \"MCPAUTH_CONFIG\" => var.mcpauth_config ),\n"
    "    \"check-local\" => \"disable\", \"max-procs\" => 1 )) )\n"
    "var.mcpauth_proxy_prefix = \"/~alice/mcp/files\"\n"
    "include \"@SRCDIR@/lighttpd/mcpauth-proxy.conf\"\n"
    "var.mcpauth_gate_prefix = \"/~alice/docs\"\n"
    "var.mcpauth_gate_docroot = \"@DIR@/htdocs\"\n"
    "include \"@SRCDIR@/lighttpd/mcpauth-gate.conf\"\n";

static const char apache_extra[] =
    "Alias " PRM_PREFIX " ${MCPAUTH_LIBEXECDIR}/mcpauth-metadata\n"
    "<Location " PRM_PREFIX ">\n"
    "    SetHandler fcgid-script\n"
    "    Options +ExecCGI\n"
    "    AcceptPathInfo On\n"
    "    Require all granted\n"
    "</Location>\n"
    "Define MCPAUTH_PROXY_LOCATION /~alice/mcp/files\n"
    "Include \"@SRCDIR@/apache/mcpauth-proxy.conf\"\n"
    "LoadModule authnz_fcgi_module @MODDIR@/mod_authnz_fcgi.so\n"
    "LoadModule authn_core_module @MODDIR@/mod_authn_core.so\n"
    "LoadModule authz_user_module @MODDIR@/mod_authz_user.so\n"
    "LoadModule headers_module @MODDIR@/mod_headers.so\n"
    "Define MCPAUTH_GATE_ADDR 127.0.0.1:@AUXPORT@\n"
    "Define MCPAUTH_GATE_LOCATION /~alice/docs\n"
    "Include \"@SRCDIR@/apache/mcpauth-gate.conf\"\n";

static tk_key *rsa;
static char *jwks;
static th_server srv;
static pid_t backend_pid = -1, gate_pid = -1;
static char backend_dir[] = "/tmp/mcpauth-mdurl-XXXXXX";

static void start(th_kind kind)
{
    int bport;
    backend_pid = th_start_example_server(backend_dir, &bport);
    if (backend_pid < 0)
        exit(EXIT_FAILURE);
    char *conf = NULL;
    if (asprintf(&conf, conf_tmpl, bport) < 0)
        exit(EXIT_FAILURE);
    const char *files[] = {"jwks.json", jwks, "htdocs/~alice/docs/hello.txt", "hello, alice\n",
                           NULL};
    th_options o = {conf, kind == TH_LIGHTTPD ? lighttpd_extra : apache_extra, files, NULL};
    int rc = th_start_ex(&srv, kind, &o);
    free(conf);
    if (rc != 0) {
        th_kill(backend_pid);
        exit(EXIT_FAILURE);
    }
    if (kind == TH_APACHE) {
        th_give_to_apache(&srv); /* the proxy's runtime_dir */
        /* mod_authnz_fcgi talks to a running FastCGI server: the gate */
        gate_pid = th_start_gate(&srv);
        if (gate_pid < 0) {
            th_stop(&srv);
            th_kill(backend_pid);
            exit(EXIT_FAILURE);
        }
    }
}
static void start_lighttpd(void) { start(TH_LIGHTTPD); }
static void start_apache(void) { start(TH_APACHE); }
static void stop(void)
{
    th_kill(gate_pid);
    gate_pid = -1;
    th_stop(&srv);
    th_kill(backend_pid);
    backend_pid = -1;
}

static char *token(const char *path, const char *scope)
{
    char iss[256];
    snprintf(iss, sizeof iss, "%s/~alice/mcp", srv.base);
    char *c = th_claims(&srv, iss, path, scope, NULL, 600);
    char *t = tk_mint(rsa, c, NULL);
    free(c);
    return t;
}

/* The resource_metadata parameter of the response's challenge. */
static const char *challenge_url(const th_resp *r)
{
    static char url[1024];
    const char *www = th_hdr(r, "WWW-Authenticate");
    ck_assert_msg(www != NULL, "no WWW-Authenticate in\n%s", r->headers);
    const char *p = strstr(www, "resource_metadata=\"");
    ck_assert_msg(p != NULL, "no resource_metadata in %s", www);
    p += strlen("resource_metadata=\"");
    snprintf(url, sizeof url, "%.*s", (int)strcspn(p, "\""), p);
    return url;
}

static void expect_url(const th_resp *r, long status, const char *name)
{
    ck_assert_msg(r->status == status, "status %ld, want %ld: %s", r->status, status, r->body);
    char want[512];
    snprintf(want, sizeof want, "%s" PRM_PREFIX "/%s", srv.base, name);
    ck_assert_str_eq(challenge_url(r), want);
}

static void request(const char *method, const char *path, const char *tok, const char *body,
                    th_resp *r)
{
    char url[512], h[8192];
    snprintf(url, sizeof url, "%s%s", srv.base, path);
    const char *hdrs[4] = {"Content-Type: application/json",
                           "Accept: application/json, text/event-stream", NULL, NULL};
    if (tok) {
        snprintf(h, sizeof h, "Authorization: Bearer %s", tok);
        hdrs[2] = h;
    }
    ck_assert_msg(th_http(method, url, hdrs, body, r) == 0, "no response from %s", url);
}

#define INIT_BODY                                                                             \
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":" \
    "\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{\"name\":\"t\",\"version\":\"1\"}}}"

/* Follows the challenge to the document: RFC 9728 §3.3, the resource is
 * the URI the client used. */
static void fetch_metadata(const char *url, const char *resource_path)
{
    th_resp r;
    ck_assert_int_eq(th_http("GET", url, NULL, NULL, &r), 0);
    ck_assert_msg(r.status == 200, "%s: %ld %s", url, r.status, r.body);
    json_object *o = json_tokener_parse(r.body), *v;
    ck_assert_msg(o != NULL, "not JSON: %s", r.body);
    ck_assert(json_object_object_get_ex(o, "resource", &v));
    char want[512];
    snprintf(want, sizeof want, "%s%s", srv.base, resource_path);
    ck_assert_str_eq(json_object_get_string(v), want);
    ck_assert(json_object_object_get_ex(o, "authorization_servers", &v));
    snprintf(want, sizeof want, "%s/~alice/mcp", srv.base);
    ck_assert_str_eq(json_object_get_string(json_object_array_get_idx(v, 0)), want);
    json_object_put(o);
    th_resp_free(&r);
}

START_TEST(proxy_challenges_name_it)
{
    th_resp r;
    request("POST", "/~alice/mcp/files", NULL, INIT_BODY, &r);
    expect_url(&r, 401, "files");
    char url[1024];
    snprintf(url, sizeof url, "%s", challenge_url(&r));
    th_resp_free(&r);
    fetch_metadata(url, "/~alice/mcp/files");

    request("POST", "/~alice/mcp/files", "x.y.z", INIT_BODY, &r);
    expect_url(&r, 401, "files");
    ck_assert_ptr_nonnull(strstr(th_hdr(&r, "WWW-Authenticate"), "error=\"invalid_token\""));
    th_resp_free(&r);

    char *t = token("/~alice/mcp/files", "files:write");
    request("POST", "/~alice/mcp/files", t, INIT_BODY, &r);
    expect_url(&r, 403, "files");
    ck_assert_ptr_nonnull(strstr(th_hdr(&r, "WWW-Authenticate"), "error=\"insufficient_scope\""));
    th_resp_free(&r);
    free(t);

    /* and a good token goes through to the backend below the ~user path */
    t = token("/~alice/mcp/files", "files:read");
    request("POST", "/~alice/mcp/files", t, INIT_BODY, &r);
    ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body);
    ck_assert_ptr_nonnull(strstr(r.body, "\"protocolVersion\":\"2025-06-18\""));
    th_resp_free(&r);
    free(t);
}
END_TEST

START_TEST(gate_challenges_name_it)
{
    th_resp r;
    request("GET", "/~alice/docs/hello.txt", NULL, NULL, &r);
    expect_url(&r, 401, "docs");
    ck_assert_ptr_null(strstr(r.body, "hello, alice"));
    char url[1024];
    snprintf(url, sizeof url, "%s", challenge_url(&r));
    th_resp_free(&r);
    fetch_metadata(url, "/~alice/docs");

    char *t = token("/~alice/docs", "other");
    request("GET", "/~alice/docs/hello.txt", t, NULL, &r);
    expect_url(&r, 403, "docs");
    ck_assert_ptr_null(strstr(r.body, "hello, alice"));
    th_resp_free(&r);
    free(t);

    t = token("/~alice/docs", "docs:read");
    request("GET", "/~alice/docs/hello.txt", t, NULL, &r);
    ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body);
    ck_assert_str_eq(r.body, "hello, alice\n");
    th_resp_free(&r);
    free(t);
}
END_TEST

/* The path-inserted form (RFC 9728 §3.1) still answers, for clients that
 * look there without a challenge, and nothing else below the folder does. */
START_TEST(other_forms)
{
    char url[512];
    th_resp r;
    snprintf(url, sizeof url, "%s/.well-known/oauth-protected-resource/~alice/mcp/files",
             srv.base);
    fetch_metadata(url, "/~alice/mcp/files");
    snprintf(url, sizeof url, "%s" PRM_PREFIX "/nothing", srv.base);
    ck_assert_int_eq(th_http("GET", url, NULL, NULL, &r), 0);
    ck_assert_int_eq(r.status, 404);
    th_resp_free(&r);
}
END_TEST

static TCase *server_case(const char *name, void (*setup)(void))
{
    TCase *tc = tcase_create(name);
    tcase_add_unchecked_fixture(tc, setup, stop);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, proxy_challenges_name_it);
    tcase_add_test(tc, gate_challenges_name_it);
    tcase_add_test(tc, other_forms);
    return tc;
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (!mkdtemp(backend_dir) || chmod(backend_dir, 0755) < 0) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    rsa = tk_key_new("RS256", "k1", 2048);
    jwks = tk_jwks(&rsa, 1);
    Suite *s = suite_create("metadata-url-servers");
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
        fprintf(stderr, "could not remove %s\n", backend_dir);
    curl_global_cleanup();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
