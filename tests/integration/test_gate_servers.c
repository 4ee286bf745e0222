/* The gate in front of static files and a CGI program, three ways, each
 * held to the same table of refusals and acceptances: mcpauth-gate as a
 * FastCGI authorizer on real lighttpd (mod_fastcgi authorizer mode) and
 * real Apache (mod_authnz_fcgi), and mod_mcpauth in real Apache, all
 * configured from the shipped snippets.  What only the module does is in
 * test_apache_module.c.  Tokens are minted here with keys made at
 * start-up. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* mod_mcpauth as a third server: built (apxs), and not a ThreadSanitizer
 * build, whose module an uninstrumented Apache cannot load */
#if defined(MCPAUTH_HAVE_APXS) && !defined(__SANITIZE_THREAD__)
#define GATE_MODULE_CASE 1
#endif

#include <check.h>
#include <curl/curl.h>
#include <json-c/json.h>

#include "../support/tokens.h"
#include "harness.h"
#include "gate_fixture.h"

static const char lighttpd_extra[] =
    "server.modules += ( \"mod_cgi\" )\n"
    "cgi.assign = ( \".cgi\" => \"\" )\n"
    "var.mcpauth_gate_prefix = \"/mcp\"\n"
    "var.mcpauth_gate_docroot = \"@DIR@/htdocs\"\n"
    "include \"@SRCDIR@/lighttpd/mcpauth-gate.conf\"\n";

static const char apache_extra[] =
    "LoadModule authnz_fcgi_module @MODDIR@/mod_authnz_fcgi.so\n"
    GATE_APACHE_COMMON
    "Define MCPAUTH_GATE_ADDR 127.0.0.1:@AUXPORT@\n"
    "Include \"@SRCDIR@/apache/mcpauth-gate.conf\"\n";

/* The three gates the same tests run against. */
typedef enum { GATE_LIGHTTPD, GATE_APACHE, MODULE_APACHE } gate_mode;
static gate_mode mode;

static tk_key *rsa, *ec, *stranger;
static char *jwks;
static th_server srv;
static pid_t gate_pid = -1;

static void start(gate_mode m)
{
    const char *files[] = {"jwks.json", jwks, "htdocs/mcp/files/hello.txt", "hello, alice\n",
                           "htdocs/mcp/remote/hello.txt", "remote hello\n",
                           "htdocs/mcp/files/whoami.cgi", GATE_WHOAMI_CGI,
                           "htdocs/mcp/github/secret.txt", "github secret\n", NULL};
    static const char *const extra[] = {
        [GATE_LIGHTTPD] = lighttpd_extra,
        [GATE_APACHE] = apache_extra,
#ifdef GATE_MODULE_CASE
        [MODULE_APACHE] = GATE_APACHE_MODULE,
#endif
    };
    mode = m;
    th_options o = {GATE_CONF, extra[m], files, NULL};
    if (th_start_ex(&srv, m == GATE_LIGHTTPD ? TH_LIGHTTPD : TH_APACHE, &o) != 0)
        exit(EXIT_FAILURE);
    if (m == GATE_APACHE) {
        /* mod_authnz_fcgi talks to a running FastCGI server: start the gate. */
        gate_pid = th_start_gate(&srv);
        if (gate_pid < 0) {
            th_stop(&srv);
            exit(EXIT_FAILURE);
        }
    }
}
static void start_lighttpd(void) { start(GATE_LIGHTTPD); }
static void start_apache(void) { start(GATE_APACHE); }
#ifdef GATE_MODULE_CASE
static void start_module(void) { start(MODULE_APACHE); }
#endif
static void stop(void)
{
    th_kill(gate_pid);
    gate_pid = -1;
    th_stop(&srv);
}

/* Claims for this server: issuer is the server's origin. */
static char *claims(const char *path, const char *scope, long lifetime)
{
    return th_claims(&srv, NULL, path, scope, NULL, lifetime);
}

static void get(const char *path, const char *authz, th_resp *r)
{
    gate_request(&srv, "GET", path, authz, NULL, r);
}

static void get_bearer(const char *path, const char *token, th_resp *r)
{
    char h[8192];
    snprintf(h, sizeof h, "Bearer %s", token);
    get(path, h, r);
}

static char md_url[256];
static const char *metadata_url(void)
{
    snprintf(md_url, sizeof md_url, "%s/.well-known/oauth-protected-resource/mcp/files", srv.base);
    return md_url;
}

START_TEST(no_token_401)
{
    th_resp r;
    get("/mcp/files/hello.txt", NULL, &r);
    char want[512];
    snprintf(want, sizeof want, "resource_metadata=\"%s\", scope=\"files:read\"", metadata_url());
    gate_assert_challenge(&r, 401, want, "invalid_token");
    ck_assert_ptr_null(strstr(r.body, "hello, alice"));
    /* browser-based clients may read the challenge */
    const char *aco = th_hdr(&r, "Access-Control-Allow-Origin");
    ck_assert_msg(aco && strcmp(aco, "*") == 0, "Access-Control-Allow-Origin %s", aco ? aco : "-");
    th_resp_free(&r);
    /* another scheme is no credentials for us either */
    get("/mcp/files/hello.txt", "Basic YWxpY2U6c2VjcmV0", &r);
    gate_assert_challenge(&r, 401, want, "invalid_token");
    ck_assert_ptr_null(strstr(r.body, "hello, alice"));
    th_resp_free(&r);
}
END_TEST

START_TEST(valid_token_200)
{
    char *c = claims("/mcp/files", "files:read files:write", 300);
    char *t = tk_mint(rsa, c, NULL);
    th_resp r;
    get_bearer("/mcp/files/hello.txt", t, &r);
    ck_assert_msg(r.status == 200, "status %ld: %s", r.status, r.body);
    ck_assert_str_eq(r.body, "hello, alice\n");
    th_resp_free(&r);
    /* ES256 too, and a lowercase scheme */
    char *t2 = tk_mint(ec, c, NULL);
    char h[4096];
    snprintf(h, sizeof h, "bearer %s", t2);
    get("/mcp/files/hello.txt", h, &r);
    ck_assert_int_eq(r.status, 200);
    th_resp_free(&r);
    free(t2);
    free(t);
    free(c);
}
END_TEST

START_TEST(identity_reaches_location)
{
    char *c = claims("/mcp/files", "files:read", 300);
    char *t = tk_mint(rsa, c, NULL);
    th_resp r;
    get_bearer("/mcp/files/whoami.cgi", t, &r);
    ck_assert_msg(r.status == 200, "status %ld: %s", r.status, r.body);
    ck_assert_ptr_nonnull(strstr(r.body, "subject=alice\n"));
    ck_assert_ptr_nonnull(strstr(r.body, "client_id=app\n"));
    ck_assert_ptr_nonnull(strstr(r.body, "scope=files:read\n"));
    char want[256];
    snprintf(want, sizeof want, "issuer=%s\n", srv.base);
    ck_assert_ptr_nonnull(strstr(r.body, want));
    snprintf(want, sizeof want, "resource=%s/mcp/files\n", srv.base);
    ck_assert_ptr_nonnull(strstr(r.body, want));
    ck_assert_ptr_nonnull(strstr(r.body, "remote_user=alice\n"));
    /* Apache strips the token after the gate (CGIPassAuth On, yet the
     * program never sees it); lighttpd cannot (documented in
     * lighttpd/mcpauth-gate.conf), so only Apache is held to it. */
    if (srv.kind == TH_APACHE)
        ck_assert_msg(strstr(r.body, "authorization=\n") != NULL, "token reached the CGI:\n%s",
                      r.body);
    /* the Variable-* headers never reach the client */
    ck_assert_ptr_null(strcasestr(r.headers, "Variable-"));
    th_resp_free(&r);
    if (srv.kind == TH_APACHE) {
        /* the request environment, seen by mod_headers on a static file */
        get_bearer("/mcp/files/hello.txt", t, &r);
        ck_assert_int_eq(r.status, 200);
        const char *v = th_hdr(&r, "X-Sub");
        ck_assert_msg(v && strcmp(v, "alice") == 0, "X-Sub %s", v ? v : "-");
        v = th_hdr(&r, "X-Remote-User");
        ck_assert_msg(v && strcmp(v, "alice") == 0, "X-Remote-User %s", v ? v : "-");
        v = th_hdr(&r, "X-Authz");
        ck_assert_msg(v != NULL, "no X-Authz in\n%s", r.headers);
        ck_assert_msg(strstr(v, "Bearer") == NULL && strstr(v, strrchr(t, '.') + 1) == NULL,
                      "Authorization still there after authentication: %s", v);
        th_resp_free(&r);
    }
    free(t);
    free(c);
}
END_TEST

START_TEST(refusals_401)
{
    long now = time(NULL);
    char aud[256], other[256], buf[1024];
    snprintf(aud, sizeof aud, "%s/mcp/files", srv.base);
    snprintf(other, sizeof other, "%s/mcp/github", srv.base);
    struct {
        char *token;
        const char *why;
    } cases[13];
    char *c;
    /* expired */
    snprintf(buf, sizeof buf, "{\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"a\",\"scope\":\"files:read\",\"exp\":%ld}",
             srv.base, aud, now - 3600);
    cases[0].token = tk_mint(rsa, buf, NULL);
    cases[0].why = "token expired";
    /* minted for the other resource */
    c = tk_claims(srv.base, other, "files:read", 300);
    cases[1].token = tk_mint(rsa, c, NULL);
    cases[1].why = "token audience does not include this resource";
    free(c);
    /* another issuer */
    c = tk_claims("https://evil.example.com", aud, "files:read", 300);
    cases[2].token = tk_mint(rsa, c, NULL);
    cases[2].why = "token issuer is not accepted for this resource";
    free(c);
    /* alg none */
    c = claims("/mcp/files", "files:read", 300);
    cases[3].token = tk_mint_unsafe("none", NULL, 0, c, NULL);
    cases[3].why = "token algorithm not accepted";
    /* HS256 keyed with the published RSA public key */
    cases[4].token = tk_mint_unsafe("HS256", rsa->public_pem, strlen(rsa->public_pem), c,
                                    "{\"kid\":\"rsa1\"}");
    cases[4].why = "token algorithm not accepted";
    /* a key nobody published, same kid */
    cases[5].token = tk_mint(stranger, c, NULL);
    cases[5].why = "token signature is invalid";
    /* ES256 signature, header naming the RSA key */
    cases[6].token = tk_mint(ec, c, "{\"kid\":\"rsa1\"}");
    cases[6].why = "no key of the issuer matches the token (kid, alg)";
    /* unknown kid */
    cases[7].token = tk_mint(rsa, c, "{\"kid\":\"rotated-away\"}");
    cases[7].why = "no key of the issuer matches the token (kid, alg)";
    /* the attacker's own key embedded as jwk, and jku */
    char hdrbuf[4096];
    snprintf(hdrbuf, sizeof hdrbuf, "{\"jwk\":%s,\"jku\":\"https://evil.example.com/k\"}",
             stranger->jwk);
    cases[8].token = tk_mint(stranger, c, hdrbuf);
    cases[8].why = "token signature is invalid";
    /* crit */
    cases[9].token = tk_mint(rsa, c, "{\"crit\":[\"b64\"],\"b64\":false}");
    cases[9].why = "token has unsupported critical header parameters";
    /* non-JSON header, trailing garbage in the payload, bad base64url */
    cases[10].token = tk_compose("alg=RS256", c, "c2ln");
    cases[10].why = "malformed token header";
    cases[11].token = tk_compose("{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", "{\"iss\":\"x\"} junk", "c2ln");
    cases[11].why = "malformed token payload";
    {
        char *good = tk_mint(rsa, c, NULL);
        char *bad = NULL;
        if (asprintf(&bad, "%.*s!%s", (int)(strchr(good, '.') - good), good, strchr(good, '.')) < 0)
            bad = NULL;
        cases[12].token = bad;
        cases[12].why = "malformed token";
        free(good);
    }
    free(c);
    for (int i = 0; i < 13; i++) {
        if (i == 12) { /* '!' is not RFC 6750 token syntax: refused as a bad request */
            th_resp r;
            get_bearer("/mcp/files/hello.txt", cases[i].token, &r);
            ck_assert_int_eq(r.status, 400);
            th_resp_free(&r);
            free(cases[i].token);
            continue;
        }
        th_resp r;
        get_bearer("/mcp/files/hello.txt", cases[i].token, &r);
        char want[1024];
        snprintf(want, sizeof want,
                 "error=\"invalid_token\", error_description=\"%s\", resource_metadata=\"%s\", "
                 "scope=\"files:read\"", cases[i].why, metadata_url());
        gate_assert_challenge(&r, 401, want, "invalid_token");
        ck_assert_ptr_null(strstr(r.body, cases[i].token)); /* never echoed */
        th_resp_free(&r);
        free(cases[i].token);
    }
}
END_TEST

/* Over the size limit: the web server or the gate refuses it, never 200. */
START_TEST(oversized_token_refused)
{
    char *c = claims("/mcp/files", "files:read", 300);
    size_t n = strlen(c);
    char *big = malloc(n + 12000);
    memcpy(big, c, n - 1);
    snprintf(big + n - 1, 12000, ",\"pad\":\"%09000d\"}", 0);
    char *t = tk_mint(rsa, big, NULL);
    th_resp r;
    get_bearer("/mcp/files/hello.txt", t, &r);
    ck_assert_msg(r.status == 400 || r.status == 401 || r.status == 431,
                  "oversized token got %ld", r.status);
    th_resp_free(&r);
    free(t);
    free(big);
    free(c);
}
END_TEST

START_TEST(insufficient_scope_403)
{
    char *c = claims("/mcp/files", "files:write", 300);
    char *t = tk_mint(rsa, c, NULL);
    th_resp r;
    get_bearer("/mcp/files/hello.txt", t, &r);
    char want[1024];
    snprintf(want, sizeof want,
             "error=\"insufficient_scope\", error_description=\"token lacks a required scope\", "
             "resource_metadata=\"%s\", scope=\"files:read\"", metadata_url());
    gate_assert_challenge(&r, 403, want, "insufficient_scope");
    ck_assert_ptr_null(strstr(r.body, "hello, alice"));
    th_resp_free(&r);
    free(t);
    free(c);
}
END_TEST

START_TEST(malformed_400)
{
    char *c = claims("/mcp/files", "files:read", 300);
    char *t = tk_mint(rsa, c, NULL);
    th_resp r;
    char want[1024];
    /* token in the query string */
    char path[4096];
    snprintf(path, sizeof path, "/mcp/files/hello.txt?access_token=%s", t);
    get(path, NULL, &r);
    snprintf(want, sizeof want,
             "error=\"invalid_request\", error_description=\"access tokens are accepted only in "
             "the Authorization header\", resource_metadata=\"%s\", scope=\"files:read\"",
             metadata_url());
    gate_assert_challenge(&r, 400, want, "invalid_request");
    th_resp_free(&r);
    /* two tokens */
    char h[8192];
    snprintf(h, sizeof h, "Bearer %s %s", t, t);
    get("/mcp/files/hello.txt", h, &r);
    snprintf(want, sizeof want,
             "error=\"invalid_request\", error_description=\"malformed Authorization header (one "
             "Bearer token of RFC 6750 syntax expected)\", resource_metadata=\"%s\", "
             "scope=\"files:read\"", metadata_url());
    gate_assert_challenge(&r, 400, want, "invalid_request");
    th_resp_free(&r);
    free(t);
    free(c);
}
END_TEST

/* The snippets let OPTIONS through without a token (<LimitExcept OPTIONS>
 * on Apache). */
START_TEST(preflight_needs_no_token)
{
    char url[512];
    snprintf(url, sizeof url, "%s/mcp/files/hello.txt", srv.base);
    static const char *const hdrs[] = {"Origin: https://app.example.com",
                                       "Access-Control-Request-Method: GET",
                                       "Access-Control-Request-Headers: authorization", NULL};
    th_resp r;
    ck_assert_int_eq(th_http("OPTIONS", url, hdrs, NULL, &r), 0);
    ck_assert_msg(r.status == 200, "OPTIONS got %ld: %s", r.status, r.body);
    th_resp_free(&r);
}
END_TEST

/* What the gate logged (caller frees): mcpauth-gate under Apache its own
 * log (started here), under lighttpd the server's stderr; mod_mcpauth
 * Apache's error log.  path receives the file's name. */
static char *gate_log(char *path, size_t cap)
{
    static const char *const name[] = {
        [GATE_LIGHTTPD] = "server.out", [GATE_APACHE] = "gate.log", [MODULE_APACHE] = "error.log"};
    snprintf(path, cap, "%s/%s", srv.dir, name[mode]);
    return th_read_file(path);
}

/* One security line per refusal, with the token's hash prefix and never
 * the token. */
START_TEST(refusal_logged_without_token)
{
    char *c = claims("/mcp/github", "files:read", 300);
    char *t = tk_mint(rsa, c, NULL);
    th_resp r;
    get_bearer("/mcp/files/hello.txt", t, &r);
    ck_assert_int_eq(r.status, 401);
    th_resp_free(&r);
    usleep(200 * 1000);
    char path[512];
    char *log = gate_log(path, sizeof path);
    ck_assert_msg(strstr(log, "event=token_rejected security=1 reason=\"token audience does not "
                              "include this resource\" client=127.0.0.1 resource=files token=") != NULL,
                  "no security line in %s:\n%s", path, log);
    ck_assert_msg(strstr(log, "event=start") != NULL, "no start line in %s:\n%s", path, log);
    if (mode == MODULE_APACHE)
        ck_assert_msg(strstr(log, "mod_mcpauth[") != NULL, "no mod_mcpauth line:\n%s", log);
    ck_assert_ptr_null(strstr(log, strrchr(t, '.') + 1)); /* not even the signature */
    free(log);
    free(t);
    free(c);
}
END_TEST

static long raw_get(const char *target, const char *token, char *out, size_t outlen)
{
    char h[8192] = "";
    if (token)
        snprintf(h, sizeof h, "Authorization: Bearer %s\r\n", token);
    long st = th_raw_request(srv.port, "GET", target, h, NULL, out, outlen);
    ck_assert_msg(st > 0, "no response for %s", target);
    return st;
}

/* Regression (outside review, high): the gate picked the resource from the
 * raw path while the server served the normalised one, so a token for
 * /mcp/files opened /mcp/github/... through dot segments and their encoded
 * forms.  Both resources sit behind one gated location here. */
START_TEST(path_confusion_never_crosses_resources)
{
    char *cf = claims("/mcp/files", "files:read", 300);
    char *files_tok = tk_mint(rsa, cf, NULL);
    char *cg = claims("/mcp/github", "", 300);
    char *github_tok = tk_mint(rsa, cg, NULL);
    static char out[65536];
    /* controls: each token opens its own resource, not the other one */
    ck_assert_int_eq(raw_get("/mcp/files/hello.txt", files_tok, out, sizeof out), 200);
    ck_assert_int_eq(raw_get("/mcp/github/secret.txt", github_tok, out, sizeof out), 200);
    ck_assert_ptr_nonnull(strstr(out, "github secret"));
    ck_assert_int_eq(raw_get("/mcp/github/secret.txt", files_tok, out, sizeof out), 401);
    /* absolute form: judged by its path too (mcpauth-gate under Apache
     * gets the target as sent and refuses it as ambiguous: 400) */
    char target[256];
    snprintf(target, sizeof target, "%s/mcp/github/secret.txt", srv.base);
    long st = raw_get(target, files_tok, out, sizeof out);
    ck_assert_msg(st == 401 || (mode == GATE_APACHE && st == 400), "absolute form gave %ld:\n%s",
                  st, out);
    ck_assert_ptr_null(strstr(out, "github secret"));
    static const char *const attacks[] = {
        "/mcp/files/../github/secret.txt",
        "/mcp/files/./../github/secret.txt",
        "/mcp/files/%2e%2e/github/secret.txt",
        "/mcp/files/%2E%2E/github/secret.txt",
        "/mcp/files/.%2e/github/secret.txt",
        "/mcp/files/%2e./github/secret.txt",
        "/mcp/files/..%2fgithub/secret.txt",
        "/mcp/files/..%2Fgithub/secret.txt",
        "/mcp/files/%2e%2e%2fgithub/secret.txt",
        "/mcp/files/%252e%252e/github/secret.txt",
        "/mcp/files/%252e%252e%252fgithub/secret.txt",
        "/mcp/files//../github/secret.txt",
        "/mcp/files/..//github/secret.txt",
        "/mcp//github/secret.txt",
        "/mcp/files/..\\github/secret.txt",
        "/mcp/files/%5c..%5cgithub/secret.txt",
        "/mcp/files;/../github/secret.txt",
        "/mcp/files/..;/github/secret.txt",
        "/mcp/files/x/../../github/secret.txt",
        "/mcp/files/../github/secret.txt?x=1",
        "/mcp/files/%2e%2e/github/secret.txt?x=1",
        NULL};
    for (const char *const *a = attacks; *a; a++) {
        st = raw_get(*a, files_tok, out, sizeof out);
        ck_assert_msg(st != 200 && strstr(out, "github secret") == NULL,
                      "%s: %s with a token for files gave %ld:\n%s", th_kind_name(srv.kind), *a, st,
                      out);
        ck_assert_msg(st == 400 || st == 401 || st == 403 || st == 404,
                      "%s: %s gave %ld", th_kind_name(srv.kind), *a, st);
    }
    /* mod_mcpauth judges the target as sent: raw dot segments get its own
     * 400 (the web servers normalise them before mcpauth-gate sees them) */
    if (mode == MODULE_APACHE) {
        ck_assert_int_eq(raw_get("/mcp/files/../github/x", files_tok, out, sizeof out), 400);
        ck_assert_msg(strstr(out, "\"invalid_request\"") && strcasestr(out, "application/json"),
                      "not the module's 400:\n%s", out);
    }
    /* the gate itself refuses what reaches it (encoded dot segments do on
     * every server), as a logged security event */
    ck_assert_int_eq(raw_get("/mcp/files/%2e%2e/github/secret.txt", files_tok, out, sizeof out),
                     400);
    usleep(200 * 1000);
    char path[512];
    char *log = gate_log(path, sizeof path);
    ck_assert_msg(strstr(log, "event=ambiguous_path security=1") != NULL, "no security line:\n%s",
                  log);
    free(log);
    free(files_tok);
    free(github_tok);
    free(cf);
    free(cg);
}
END_TEST

/* The JWKS endpoint of an issuer is down from the start: the gate runs
 * (the other resources are served), and a token of that issuer gets 503
 * with Retry-After, no challenge (the token may be good), never the
 * file. */
START_TEST(jwks_down_at_start_503_retry_after)
{
    char *c = th_claims(&srv, GATE_REMOTE_ISS, "/mcp/remote", NULL, NULL, 300);
    char *t = tk_mint(ec, c, NULL);
    for (int i = 0; i < 2; i++) { /* the second: not a cached refusal either */
        th_resp r;
        get_bearer("/mcp/remote/hello.txt", t, &r);
        ck_assert_msg(r.status == 503, "status %ld: %s", r.status, r.body);
        const char *ra = th_hdr(&r, "Retry-After");
        ck_assert_msg(ra != NULL && atoi(ra) > 0, "no Retry-After in\n%s", r.headers);
        ck_assert_ptr_null(th_hdr(&r, "WWW-Authenticate"));
        ck_assert_ptr_null(strstr(r.body, "remote hello"));
        th_resp_free(&r);
    }
    free(t);
    free(c);
}
END_TEST

static TCase *server_case(const char *name, void (*setup)(void))
{
    TCase *tc = tcase_create(name);
    tcase_add_unchecked_fixture(tc, setup, stop);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, no_token_401);
    tcase_add_test(tc, valid_token_200);
    tcase_add_test(tc, identity_reaches_location);
    tcase_add_test(tc, refusals_401);
    tcase_add_test(tc, insufficient_scope_403);
    tcase_add_test(tc, oversized_token_refused);
    tcase_add_test(tc, malformed_400);
    tcase_add_test(tc, preflight_needs_no_token);
    tcase_add_test(tc, refusal_logged_without_token);
    tcase_add_test(tc, path_confusion_never_crosses_resources);
    tcase_add_test(tc, jwks_down_at_start_503_retry_after);
    return tc;
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    rsa = tk_key_new("RS256", "rsa1", 0);
    ec = tk_key_new("ES256", "ec1", 0);
    stranger = tk_key_new("RS256", "rsa1", 0);
    tk_key *pub[] = {rsa, ec};
    jwks = tk_jwks(pub, 2);
    Suite *s = suite_create("gate-servers");
    suite_add_tcase(s, server_case("lighttpd", start_lighttpd));
    suite_add_tcase(s, server_case("apache", start_apache));
#ifdef GATE_MODULE_CASE
    suite_add_tcase(s, server_case("apache-module", start_module));
#else
    /* check_apache_module exits 77 (SKIP, counted as a failure) without
     * apxs; a ThreadSanitizer build's module cannot be loaded into an
     * uninstrumented Apache (that build is for the FastCGI programs) */
    printf("check_gate: the apache-module case not run: no apxs, or a ThreadSanitizer build\n");
#endif
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    free(jwks);
    tk_key_free(rsa);
    tk_key_free(ec);
    tk_key_free(stranger);
    curl_global_cleanup();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
