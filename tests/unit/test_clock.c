/* The clock (lib/clock.h, issue 15): set back, it must not revive what
 * this process has seen expire.  mcpauth__now never goes back; a JWT that
 * expired stays refused by the validator and an authorization code that
 * expired stays refused by the token endpoint after the clock is moved
 * back an hour.  (Skew within and beyond clock_leeway: test_validate.c,
 * accept_within_leeway and refuse_claims.) */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/rand.h>

#include <mcpauth/as.h>
#include <mcpauth/config.h>
#include <mcpauth/log.h>
#include <mcpauth/validate.h>

#include "clock.h"
#include "keys.h"
#include "store.h"
#include "../support/scratch.h"
#include "../support/tokens.h"
#include "memhttp.h"
#include "suites.h"

#define ISS "http://127.0.0.1:9999"
#define RES "http://127.0.0.1:9999/mcp/files"
#define REDIR "https://app.example.com/cb"
/* RFC 7636 appendix B */
#define VERIFIER "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
#define CHALLENGE "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
#define HOUR 3600

static char dir[64];

static void setup(void)
{
    mcpauth_log_set_level(MCPAUTH_LOG_ERROR);
    mcpauth__clock_set_offset_for_test(0);
    mcpauth__clock_reset_for_test(); /* as a fresh process */
    snprintf(dir, sizeof dir, "/tmp/mcpauth-clock-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    mcpauth__clock_set_offset_for_test(0);
    mcpauth__clock_reset_for_test();
    remove_tree(dir);
}

/* ------------------------------------------------------------ the clock */

START_TEST(never_goes_back)
{
    time_t t0 = mcpauth__now();
    ck_assert_int_ge(t0, time(NULL) - 1);
    mcpauth__clock_set_offset_for_test(-HOUR);
    ck_assert_int_ge(mcpauth__now(), t0); /* held, not an hour back */
    mcpauth__clock_set_offset_for_test(HOUR);
    time_t ahead = mcpauth__now();
    ck_assert_int_ge(ahead, t0 + HOUR);
    mcpauth__clock_set_offset_for_test(0); /* the clock set back an hour */
    ck_assert_int_ge(mcpauth__now(), ahead);
    /* and it moves on with the wall clock once that passes the mark */
    mcpauth__clock_set_offset_for_test(2 * HOUR);
    ck_assert_int_ge(mcpauth__now(), t0 + 2 * HOUR);
}
END_TEST

/* Threads reading while the clock jumps back and forth: none ever sees
 * time go back. */
static int jumping; /* atomic */

static void *reader(void *p)
{
    long *went_back = p;
    time_t last = 0;
    while (__atomic_load_n(&jumping, __ATOMIC_SEQ_CST)) {
        time_t t = mcpauth__now();
        *went_back += t < last;
        last = t;
        /* let the jumping thread run: valgrind runs one thread at a time,
         * and four spinning readers starved it (a CI run waited 20 min) */
        sched_yield();
    }
    return NULL;
}

START_TEST(never_goes_back_across_threads)
{
    enum { N = 4 };
    pthread_t th[N];
    long back[N] = {0};
    __atomic_store_n(&jumping, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, reader, &back[i]), 0);
    for (int j = 0; j < 2000; j++) {
        mcpauth__clock_set_offset_for_test((j % 2 ? -1 : 1) * (long)(j % 97) * 60);
        usleep(100);
    }
    __atomic_store_n(&jumping, 0, __ATOMIC_SEQ_CST);
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(back[i] == 0, "thread %d saw the clock go back %ld times", i, back[i]);
    }
}
END_TEST

/* ------------------------------------------------------- the validator */

START_TEST(expired_jwt_stays_refused)
{
    tk_key *rsa = tk_key_new("RS256", "rsa1", 0);
    tk_key *pub[] = {rsa};
    char *jwks = tk_jwks(pub, 1), path[128], text[1024], err[512] = "";
    snprintf(path, sizeof path, "%s/jwks.json", dir);
    tk_write(path, jwks);
    /* no cache: every answer is decided afresh, by the clock */
    snprintf(text, sizeof text,
             "cache_entries = 0\n"
             "[resource a]\nuri = " RES "\nauthorization_servers = " ISS "\n"
             "[issuer local]\nissuer = " ISS "\njwks_file = %s\n",
             path);
    mcpauth_config *cfg = mcpauth_config_parse(text, strlen(text), "t.conf", err, sizeof err);
    ck_assert_msg(cfg != NULL, "%s", err);
    mcpauth_validator *val = mcpauth_validator_new(cfg, err, sizeof err);
    ck_assert_msg(val != NULL, "%s", err);
    const mcpauth_resource *a = mcpauth_config_resource_by_name(cfg, "a");
    char *claims = tk_claims(ISS, RES, "", 300); /* expires in 5 min */
    char *t = tk_mint(rsa, claims, NULL);
    mcpauth_decision d;
    mcpauth_validate_token(val, a, t, strlen(t), "GET", NULL, &d);
    ck_assert_msg(d.verdict == MCPAUTH_ALLOW, "fresh token: %s", d.description);
    mcpauth__clock_set_offset_for_test(HOUR); /* an hour on: expired */
    mcpauth_validate_token(val, a, t, strlen(t), "GET", NULL, &d);
    ck_assert_int_eq(d.verdict, MCPAUTH_INVALID_TOKEN);
    ck_assert_str_eq(d.description, "token expired");
    mcpauth__clock_set_offset_for_test(0); /* the clock set back an hour */
    mcpauth_validate_token(val, a, t, strlen(t), "GET", NULL, &d);
    ck_assert_msg(d.verdict == MCPAUTH_INVALID_TOKEN && !strcmp(d.description, "token expired"),
                  "after the clock went back: verdict %d (%s)", d.verdict, d.description);
    free(t);
    free(claims);
    mcpauth_validator_free(val);
    mcpauth_config_free(cfg);
    free(jwks);
    tk_key_free(rsa);
}
END_TEST

/* ------------------------------------------------ the token endpoint */

static mcpauth_store *store;
static mcpauth_config *as_cfg;
static mcpauth_as *as;

/* The state `mcpauth init` makes, one public client, and the AS. */
static void as_start(void)
{
    char err[512] = "", path[128], text[1024];
    ck_assert_int_eq(chmod(dir, 0700), 0);
    store = mcpauth__store_open(dir, NULL, err, sizeof err);
    ck_assert_msg(store != NULL, "%s", err);
    unsigned char secret[32];
    ck_assert_int_eq(RAND_bytes(secret, sizeof secret), 1);
    snprintf(path, sizeof path, "%s/secret", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, secret, sizeof secret), (ssize_t)sizeof secret);
    close(fd);
    char kid[128];
    ck_assert_msg(mcpauth__keys_generate(store, dir, "ES256", time(NULL), kid, sizeof kid, err,
                                        sizeof err) == 0,
                  "%s", err);
    mcpauth_client c = {.client_id = "app", .redirect_uris = "[\"" REDIR "\"]",
                        .grant_types = "authorization_code", .token_endpoint_auth_method = "none",
                        .kind = "dcr", .created = time(NULL)};
    ck_assert_int_eq(mcpauth__store_client_add(store, &c, NULL), 0);
    snprintf(text, sizeof text,
             "runtime_dir = %s\n"
             "[resource files]\nuri = " RES "\nauthorization_servers = " ISS "\n"
             "[authorization_server]\nissuer = " ISS "\nstate_dir = %s\n",
             dir, dir);
    as_cfg = mcpauth_config_parse(text, strlen(text), "t.conf", err, sizeof err);
    ck_assert_msg(as_cfg != NULL, "%s", err);
    as = mcpauth_as_new(as_cfg, err, sizeof err);
    ck_assert_msg(as != NULL, "%s", err);
}

static void as_stop(void)
{
    mcpauth_as_free(as);
    mcpauth_config_free(as_cfg);
    mcpauth__store_close(store);
}

/* A code for the client, as the authorization endpoint stores it, valid
 * until expires. */
static void add_code(const char *code, const char *family, time_t expires)
{
    mcpauth_grant g = {"app", "alice", RES, "", REDIR, CHALLENGE, (char *)family, expires};
    ck_assert_int_eq(mcpauth__store_code_add(store, code, &g), 0);
}

static memhttp_bodyctx BC;

/* POST /oauth2/token for code: the status, the body in body. */
static int exchange(const char *code, char *body, size_t cap)
{
    char form[1024];
    snprintf(form, sizeof form,
             "grant_type=authorization_code&client_id=app&code=%s&code_verifier=" VERIFIER
             "&redirect_uri=https%%3A%%2F%%2Fapp.example.com%%2Fcb",
             code);
    const char *p[] = {"REQUEST_METHOD", "POST", "REQUEST_URI", "/oauth2/token",
                       "CONTENT_TYPE", "application/x-www-form-urlencoded",
                       "REMOTE_ADDR", "192.0.2.1", NULL};
    mcpauth_request req;
    mcpauth_response resp;
    memhttp_setup(&BC.m, p, &req, &resp);
    memhttp_set_body(&BC, &req, form, strlen(form), 0);
    mcpauth_as_handle(as, &req, &resp);
    int status = -1;
    ck_assert_int_eq(sscanf(BC.m.out, "Status: %d", &status), 1);
    const char *b = memhttp_body(&BC.m);
    snprintf(body, cap, "%s", b ? b : "");
    return status;
}

START_TEST(expired_code_stays_refused)
{
    as_start();
    char body[8192];
    time_t t0 = time(NULL);
    add_code("code-one", "fam-one", t0 + 60); /* code_ttl 60 */
    /* an hour on: the process answers some request (any code will do) */
    mcpauth__clock_set_offset_for_test(HOUR);
    ck_assert_int_eq(exchange("no-such-code", body, sizeof body), 400);
    /* the clock set back an hour: code-one is still past its expiry */
    mcpauth__clock_set_offset_for_test(0);
    int st = exchange("code-one", body, sizeof body);
    ck_assert_msg(st == 400 && strstr(body, "invalid_grant"),
                  "an expired code after the clock went back: %d %s", st, body);
    /* a code issued at the later time works: the AS goes on as usual */
    add_code("code-two", "fam-two", t0 + HOUR + 60);
    st = exchange("code-two", body, sizeof body);
    ck_assert_msg(st == 200 && strstr(body, "access_token"), "%d %s", st, body);
    as_stop();
}
END_TEST

/* The control: without the later time seen, the same code is good (the
 * refusal above is the clock's doing, not the code's). */
START_TEST(unexpired_code_accepted)
{
    as_start();
    char body[8192];
    add_code("code-one", "fam-one", time(NULL) + 60);
    int st = exchange("code-one", body, sizeof body);
    ck_assert_msg(st == 200 && strstr(body, "access_token"), "%d %s", st, body);
    as_stop();
}
END_TEST

Suite *clock_suite(void)
{
    Suite *s = suite_create("clock");
    TCase *tc = tcase_create("clock");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, never_goes_back);
    tcase_add_test(tc, never_goes_back_across_threads);
    tcase_add_test(tc, expired_jwt_stays_refused);
    tcase_add_test(tc, expired_code_stays_refused);
    tcase_add_test(tc, unexpired_code_accepted);
    suite_add_tcase(s, tc);
    return s;
}
