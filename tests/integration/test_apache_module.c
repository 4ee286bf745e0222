/* What only mod_mcpauth (apache/mod_mcpauth.c) does, in real Apache
 * configured from the shipped snippet (apache/mcpauth-module.conf, built
 * with this tree's module loaded first): the answers it shares with
 * mcpauth-gate are held to the same table in test_gate_servers.c (its
 * apache-module case); here the resource named by the environment, a
 * location no resource covers, a bare "Require valid-user", concurrency,
 * graceful restarts and start-up failures.  Tokens are minted here with
 * keys made at start-up. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <curl/curl.h>
#include <json-c/json.h>

#include "../support/tokens.h"
#include "harness.h"
#include "gate_fixture.h"

#ifdef MCPAUTH_HAVE_APXS

/* The module's gate (gate_fixture.h), and: MCPAUTH_RESOURCE set by
 * SetEnvIf; /plain protected with a bare "Require valid-user" (no
 * LimitExcept) for the preflight test. */
static const char apache_extra[] =
    GATE_APACHE_MODULE
    "LoadModule setenvif_module @MODDIR@/mod_setenvif.so\n"
    "SetEnvIf Request_URI ^/mcp/alias/ MCPAUTH_RESOURCE=github\n"
    "<Location /plain>\n"
    "    AuthType Bearer\n"
    "    McpauthGate On\n"
    "    Require valid-user\n"
    "</Location>\n";

static tk_key *rsa, *ec, *stranger;
static char *jwks;
static th_server srv;

static void start(void)
{
    const char *files[] = {"jwks.json", jwks, "htdocs/mcp/files/hello.txt", "hello, alice\n",
                           "htdocs/mcp/github/secret.txt", "github secret\n",
                           "htdocs/plain/hello.txt", "plain\n",
                           "htdocs/mcp/alias/x.txt", "alias\n", NULL};
    th_options o = {GATE_CONF, apache_extra, files, NULL};
    if (th_start_ex(&srv, TH_APACHE, &o) != 0)
        exit(EXIT_FAILURE);
}
static void stop(void)
{
    th_stop(&srv);
}

static char *claims(const char *path, const char *scope, long lifetime)
{
    return th_claims(&srv, NULL, path, scope, NULL, lifetime);
}

static void request(const char *method, const char *path, const char *authz, const char *body,
                    th_resp *r)
{
    gate_request(&srv, method, path, authz, body, r);
}

static void get(const char *path, const char *authz, th_resp *r)
{
    request("GET", path, authz, NULL, r);
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

START_TEST(refused_post_and_head)
{
    th_resp r;
    /* a body the module never reads: the answer still comes, whole */
    request("POST", "/mcp/files/hello.txt", NULL, "{\"jsonrpc\":\"2.0\",\"id\":1}", &r);
    char want[512];
    snprintf(want, sizeof want, "resource_metadata=\"%s\", scope=\"files:read\"", metadata_url());
    gate_assert_challenge(&r, 401, want, "invalid_token");
    th_resp_free(&r);
    request("HEAD", "/mcp/files/hello.txt", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 401);
    ck_assert_ptr_nonnull(th_hdr(&r, "WWW-Authenticate"));
    ck_assert_uint_eq(r.bodylen, 0);
    th_resp_free(&r);
}
END_TEST

/* MCPAUTH_RESOURCE from the request environment (SetEnvIf) names the
 * resource outright, as the FastCGI parameter does for the gate. */
START_TEST(resource_named_by_environment)
{
    char *cg = claims("/mcp/github", "", 300), *cf = claims("/mcp/files", "files:read", 300);
    char *github_tok = tk_mint(rsa, cg, NULL), *files_tok = tk_mint(rsa, cf, NULL);
    th_resp r;
    get_bearer("/mcp/alias/x.txt", github_tok, &r);
    ck_assert_msg(r.status == 200, "status %ld: %s", r.status, r.body);
    ck_assert_str_eq(r.body, "alias\n");
    th_resp_free(&r);
    get_bearer("/mcp/alias/x.txt", files_tok, &r);
    char want[512];
    snprintf(want, sizeof want,
             "error=\"invalid_token\", error_description=\"token audience does not include this "
             "resource\", resource_metadata=\"%s/.well-known/oauth-protected-resource/mcp/github\"",
             srv.base);
    gate_assert_challenge(&r, 401, want, "invalid_token");
    th_resp_free(&r);
    free(github_tok);
    free(files_tok);
    free(cg);
    free(cf);
}
END_TEST

/* A path under the gated location that no [resource] covers: the gate's
 * 404 JSON, not a file or Apache's page. */
START_TEST(no_resource_404)
{
    char *c = claims("/mcp/files", "files:read", 300);
    char *t = tk_mint(rsa, c, NULL);
    th_resp r;
    get_bearer("/mcp/other/x", t, &r);
    gate_assert_challenge(&r, 404, NULL, "not_found");
    th_resp_free(&r);
    free(t);
    free(c);
}
END_TEST

/* A bare "Require valid-user" (no <LimitExcept OPTIONS>, unlike the
 * snippet's location, which test_gate_servers.c covers): the module lets
 * the preflight through itself ... */
START_TEST(preflight_under_bare_require)
{
    static const char *const hdrs[] = {"Origin: https://app.example.com",
                                       "Access-Control-Request-Method: GET",
                                       "Access-Control-Request-Headers: authorization", NULL};
    char url[512];
    snprintf(url, sizeof url, "%s/plain/hello.txt", srv.base);
    th_resp r;
    ck_assert_int_eq(th_http("OPTIONS", url, hdrs, NULL, &r), 0);
    ck_assert_msg(r.status == 200, "OPTIONS /plain/hello.txt got %ld: %s", r.status, r.body);
    th_resp_free(&r);
    /* ... while the other methods there still need one */
    get("/plain/hello.txt", NULL, &r);
    ck_assert_int_eq(r.status, 404); /* no resource covers /plain: refused all the same */
    ck_assert_ptr_null(strstr(r.body, "plain"));
    th_resp_free(&r);
}
END_TEST

/* Many requests on kept-alive connections from several threads of one
 * child: each answer is the right one (the validator is shared). */
START_TEST(concurrent_answers_stay_apart)
{
    char *c = claims("/mcp/files", "files:read", 300);
    char *good = tk_mint(rsa, c, NULL);
    char *bad = tk_mint(stranger, c, NULL);
    CURLM *m = curl_multi_init();
    enum { N = 48 };
    CURL *e[N];
    struct curl_slist *h[N];
    long want[N];
    char url[256], line[8192];
    snprintf(url, sizeof url, "%s/mcp/files/hello.txt", srv.base);
    for (int i = 0; i < N; i++) {
        e[i] = curl_easy_init();
        want[i] = i % 3 == 0 ? 401 : 200;
        snprintf(line, sizeof line, "Authorization: Bearer %s", i % 3 == 0 ? bad : good);
        h[i] = curl_slist_append(NULL, line);
        curl_easy_setopt(e[i], CURLOPT_URL, url);
        curl_easy_setopt(e[i], CURLOPT_HTTPHEADER, h[i]);
        curl_easy_setopt(e[i], CURLOPT_NOBODY, 1L);
        curl_easy_setopt(e[i], CURLOPT_TIMEOUT, 20L);
        curl_multi_add_handle(m, e[i]);
    }
    int running = 1;
    while (running) {
        curl_multi_perform(m, &running);
        if (running)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    for (int i = 0; i < N; i++) {
        long st = 0;
        curl_easy_getinfo(e[i], CURLINFO_RESPONSE_CODE, &st);
        ck_assert_msg(st == want[i], "request %d: %ld, want %ld", i, st, want[i]);
        curl_multi_remove_handle(m, e[i]);
        curl_easy_cleanup(e[i]);
        curl_slist_free_all(h[i]);
    }
    curl_multi_cleanup(m);
    free(bad);
    free(good);
    free(c);
}
END_TEST

/* A graceful restart (SIGUSR1) reloads the module and the configuration
 * in the parent and forks new children: the gate keeps answering. */
START_TEST(graceful_restart_keeps_working)
{
    ck_assert_int_eq(kill(srv.pid, SIGUSR1), 0);
    int starts = 0;
    for (int i = 0; i < 100 && starts < 2; i++) { /* 10 s */
        usleep(100 * 1000);
        char *log = th_error_log(&srv);
        starts = 0;
        for (const char *p = log; (p = strstr(p, "event=start ")) != NULL; p++)
            starts++;
        free(log);
    }
    ck_assert_msg(starts == 2, "no second event=start after SIGUSR1 (%d)", starts);
    char *c = claims("/mcp/files", "files:read", 300);
    char *t = tk_mint(rsa, c, NULL);
    char *bad = tk_mint(stranger, c, NULL);
    th_resp r;
    for (int i = 0; i < 20; i++) { /* old and new children alike */
        get_bearer("/mcp/files/hello.txt", i % 2 ? t : bad, &r);
        ck_assert_msg(r.status == (i % 2 ? 200 : 401), "request %d after the restart: %ld", i,
                      r.status);
        th_resp_free(&r);
    }
    char *log = th_error_log(&srv);
    ck_assert_msg(strstr(log, "Segmentation fault") == NULL && strstr(log, "exit signal") == NULL,
                  "a child crashed:\n%s", log);
    free(log);
    free(bad);
    free(t);
    free(c);
}
END_TEST

/* Children read the key files after dropping privileges (as root, Apache
 * runs them as www-data): a file only root can read passes the parent's
 * check, and the children then answer 503, saying why, instead of
 * admitting anyone or failing without a word. */
static int jwks_root_only(th_server *s)
{
    char path[512];
    snprintf(path, sizeof path, "%s/jwks.json", s->dir);
    return chmod(path, 0600);
}

START_TEST(unreadable_keys_answer_503)
{
    th_server s;
    const char *files[] = {"jwks.json", jwks, "htdocs/mcp/files/hello.txt", "hello, alice\n",
                           NULL};
    th_options o = {GATE_CONF, apache_extra, files, jwks_root_only};
    ck_assert_int_eq(th_start_ex(&s, TH_APACHE, &o), 0);
    char url[512], aud[256], h[8192];
    snprintf(aud, sizeof aud, "%s/mcp/files", s.base);
    char *c = tk_claims(s.base, aud, "files:read", 300);
    char *t = tk_mint(rsa, c, NULL);
    snprintf(url, sizeof url, "%s/mcp/files/hello.txt", s.base);
    snprintf(h, sizeof h, "Authorization: Bearer %s", t);
    const char *hdrs[] = {h, NULL};
    th_resp r;
    ck_assert_int_eq(th_http("GET", url, hdrs, NULL, &r), 0);
    gate_assert_challenge(&r, 503, NULL, "temporarily_unavailable");
    ck_assert_ptr_nonnull(th_hdr(&r, "Retry-After"));
    ck_assert_ptr_null(strstr(r.body, "hello, alice"));
    th_resp_free(&r);
    char *log = th_error_log(&s);
    ck_assert_msg(strstr(log, "mcpauth: this process answers 503 to protected requests: ") &&
                      strstr(log, "jwks.json"),
                  "no reason in the error log:\n%s", log);
    free(log);
    free(t);
    free(c);
    th_stop(&s);
}
END_TEST

/* A defect in mcpauth.conf stops Apache at start-up with the reason in its
 * error log, and fails `apache2 -t` (run by apachectl before a graceful
 * restart) with the reason on stderr. */
START_TEST(bad_configuration_refuses_to_start)
{
    static const char bad[] =
        "[resource files]\n"
        "uri = http://127.0.0.1:@PORT@/mcp/files\n"
        "authorization_servers = http://127.0.0.1:@PORT@\n"
        "no_such_key = 1\n";
    /* the loader checks the file is there; the key set is read later */
    static const char bad_jwks[] =
        "[resource files]\n"
        "uri = http://127.0.0.1:@PORT@/mcp/files\n"
        "authorization_servers = http://127.0.0.1:@PORT@\n"
        "[issuer local]\n"
        "issuer = http://127.0.0.1:@PORT@\n"
        "jwks_file = @DIR@/bad-jwks.json\n";
    static const struct {
        const char *conf, *want;
    } cases[] = {{bad, "mcpauth: configuration error: "},
                 {bad_jwks, "mcpauth: cannot start: "}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        th_server s;
        const char *files[] = {"htdocs/mcp/files/hello.txt", "x\n", "bad-jwks.json",
                               "{\"keys\":\"none\"}", NULL};
        th_options o = {cases[i].conf, apache_extra, files, NULL};
        fprintf(stderr, "(an Apache start-up failure is expected here)\n");
        if (th_start_ex(&s, TH_APACHE, &o) == 0) {
            /* Apache listens before it checks modules' configuration: the
             * harness may have seen the port open while it was failing */
            int st;
            ck_assert_msg(th_wait_exit(s.pid, 10000, &st) == 0,
                          "Apache still runs with a bad mcpauth.conf");
            s.pid = -1;
            ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) != 0, "Apache exited with status %d",
                          st);
        }
        char *log = th_error_log(&s);
        ck_assert_msg(strstr(log, cases[i].want) != NULL, "no \"%s\" in the error log:\n%s",
                      cases[i].want, log);
        free(log);
        char cfile[512], *err = NULL;
        snprintf(cfile, sizeof cfile, "%s/apache.conf", s.dir);
        const char *bin = getenv("APACHE2") && *getenv("APACHE2") ? getenv("APACHE2")
                                                                   : "/usr/sbin/apache2";
        char *argv[] = {(char *)bin, "-t", "-f", cfile, NULL};
        int st = th_run(argv, NULL, &err);
        ck_assert_msg(st != 0, "apache2 -t passed: %s", err ? err : "");
        ck_assert_msg(err && strstr(err, cases[i].want), "apache2 -t said: %s", err ? err : "");
        free(err);
        th_stop(&s);
    }
}
END_TEST

#ifdef __SANITIZE_ADDRESS__
/* A sanitizer build: the module is instrumented, and AddressSanitizer's
 * runtime must come first in the process that loads it.  Apache gets the
 * one this program runs with (found in /proc/self/maps). */
static void preload_asan_for_apache(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[1024];
    while (f && fgets(line, sizeof line, f)) {
        char *path = strchr(line, '/');
        if (path && strstr(path, "/libasan.so")) {
            path[strcspn(path, "\n")] = '\0';
            setenv("LD_PRELOAD", path, 1);
            setenv("ASAN_OPTIONS", "detect_leaks=0", 1); /* Apache's own are not ours */
            break;
        }
    }
    if (f)
        fclose(f);
}
#endif

int main(void)
{
#ifdef __SANITIZE_ADDRESS__
    preload_asan_for_apache();
#endif
    curl_global_init(CURL_GLOBAL_DEFAULT);
    rsa = tk_key_new("RS256", "rsa1", 0);
    ec = tk_key_new("ES256", "ec1", 0);
    stranger = tk_key_new("RS256", "rsa1", 0);
    tk_key *pub[] = {rsa, ec};
    jwks = tk_jwks(pub, 2);
    Suite *s = suite_create("apache-module");
    TCase *tc = tcase_create("apache");
    tcase_add_unchecked_fixture(tc, start, stop);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, refused_post_and_head);
    tcase_add_test(tc, no_resource_404);
    tcase_add_test(tc, resource_named_by_environment);
    tcase_add_test(tc, preflight_under_bare_require);
    tcase_add_test(tc, concurrent_answers_stay_apart);
    tcase_add_test(tc, graceful_restart_keeps_working); /* last: restarts the server */
    suite_add_tcase(s, tc);
    TCase *start_up = tcase_create("start-up");
    tcase_set_timeout(start_up, 60);
    tcase_add_test(start_up, bad_configuration_refuses_to_start);
    /* only as root does Apache run its children as another user */
    if (geteuid() == 0)
        tcase_add_test(start_up, unreadable_keys_answer_503);
    else
        printf("check_apache_module: unreadable_keys_answer_503 not run: needs root, for Apache "
               "to run its children as www-data\n");
    suite_add_tcase(s, start_up);
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

#else /* configure found no apxs: the module was not built */

int main(void)
{
    printf("check_apache_module: SKIP: mod_mcpauth was not built: configure found no apxs "
           "(on Debian/Ubuntu: apt-get install apache2-dev, then re-run configure)\n");
    return 77; /* SKIP for automake, never PASS */
}

#endif
