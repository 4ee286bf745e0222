/* The validator against a remote authorization server: discovery, remote
 * JWKS and its refresh rules, RFC 7662 introspection, outages and
 * timeouts.  The AS is tests/stub/stub_as, run as a separate process by an
 * unchecked fixture (one per TCase, so each case gets the options it needs
 * and counters it alone moves); its GET /stats tells how often it was
 * reached.  Keys and tokens are made at test time (tests/support/tokens.c). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include <mcpauth/config.h>
#include <mcpauth/validate.h>

#include "../support/httpd.h"
#include "../support/tokens.h"
#include "memhttp.h"
#include "suites.h"

#define RES "https://mcp.example.com/a"
#define OTHER_ISS "https://as.other.example"

#define KEYS_UNAVAILABLE "signing keys of the issuer are unavailable"
#define NO_KEY "no key of the issuer matches the token (kid, alg)"
#define INTROSPECTION_UNAVAILABLE "token introspection is unavailable"
#define BEING_REFRESHED "signing keys of the issuer are being refreshed"

/* ------------------------------------------------------------- the stub */

static struct {
    pid_t pid;          /* the stub, 0 when none */
    int port;
    char dir[64];       /* mkdtemp */
    char issuer[64];    /* http://127.0.0.1:PORT: what the tests configure */
    char jwks[128];     /* file served at /jwks (missing: 500) */
    char tokens[128];   /* introspection table */
    char portfile[128];
} S;

static tk_key *rsa, *ec, *ec_new; /* rsa1, ec1 published; ec2 for rotation */

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A free loopback port: the stub must know its own issuer (with the port)
 * when it starts, so the port is chosen here and handed to --port. */
static int pick_port(void)
{
    int port = httpd_free_port();
    ck_assert_int_gt(port, 0);
    return port;
}

/* Starts stub_as on port with the stub's own --issuer and extra options;
 * returns its pid once the port file shows it listens, 0 when it exited. */
static pid_t spawn_stub(int port, const char *stub_issuer, const char *opt, const char *val)
{
    const char *bd = getenv("MCPAUTH_BUILDDIR");
    char prog[1024], portarg[16];
    snprintf(prog, sizeof prog, "%s/tests/stub/stub_as", bd && *bd ? bd : ".");
    ck_assert_msg(access(prog, X_OK) == 0, "%s: %s (build it, set MCPAUTH_BUILDDIR)", prog,
                  strerror(errno));
    snprintf(portarg, sizeof portarg, "%d", port);
    unlink(S.portfile);
    const char *argv[16] = {"stub_as", "--port", portarg, "--port-file", S.portfile,
                            "--issuer", stub_issuer, "--jwks", S.jwks, "--tokens", S.tokens,
                            "--client", "gate:gate-secret", opt, val, NULL};
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        for (int fd = 3; fd < 1024; fd++)
            close(fd);
        execv(prog, (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) { /* up to 5 s */
        FILE *f = fopen(S.portfile, "r");
        if (f) {
            char line[32] = "";
            int got = fgets(line, sizeof line, f) != NULL && strchr(line, '\n') != NULL;
            fclose(f);
            if (got) {
                ck_assert_int_eq(atoi(line), port);
                return pid;
            }
        }
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return 0; /* could not bind: the port was taken meanwhile */
        pause_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    ck_abort_msg("stub_as did not start");
    return 0;
}

static void publish(tk_key *const *keys, size_t n)
{
    char *j = tk_jwks(keys, n);
    ck_assert_int_eq(tk_write(S.jwks, j), 0);
    free(j);
}

static void publish_default(void)
{
    tk_key *pub[] = {rsa, ec};
    publish(pub, 2);
}

/* stub_issuer NULL: the stub announces the issuer the tests configure. */
static void stub_up(const char *stub_issuer, const char *opt, const char *val)
{
    memset(&S, 0, sizeof S);
    snprintf(S.dir, sizeof S.dir, "/tmp/mcpauth-vr-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(S.dir));
    snprintf(S.jwks, sizeof S.jwks, "%s/jwks.json", S.dir);
    snprintf(S.tokens, sizeof S.tokens, "%s/tokens.tsv", S.dir);
    snprintf(S.portfile, sizeof S.portfile, "%s/port", S.dir);
    rsa = tk_key_new("RS256", "rsa1", 0);
    ec = tk_key_new("ES256", "ec1", 0);
    ec_new = tk_key_new("ES256", "ec2", 0);
    ck_assert(rsa && ec && ec_new);
    publish_default();
    ck_assert_int_eq(tk_write(S.tokens, ""), 0);
    for (int attempt = 0; attempt < 5 && !S.pid; attempt++) {
        S.port = pick_port();
        snprintf(S.issuer, sizeof S.issuer, "http://127.0.0.1:%d", S.port);
        S.pid = spawn_stub(S.port, stub_issuer ? stub_issuer : S.issuer, opt, val);
    }
    ck_assert_msg(S.pid > 0, "stub_as could not bind a port");
}

static void stub_down(void)
{
    if (S.pid > 0) {
        kill(S.pid, SIGTERM);
        waitpid(S.pid, NULL, 0);
        S.pid = 0;
    }
    char tmp[160];
    unlink(S.jwks);
    snprintf(tmp, sizeof tmp, "%s.tmp", S.jwks);
    unlink(tmp);
    unlink(S.tokens);
    snprintf(tmp, sizeof tmp, "%s.tmp", S.tokens);
    unlink(tmp);
    unlink(S.portfile);
    rmdir(S.dir);
    tk_key_free(rsa);
    tk_key_free(ec);
    tk_key_free(ec_new);
    rsa = ec = ec_new = NULL;
}

static void setup_plain(void) { stub_up(NULL, NULL, NULL); }
static void setup_mismatch(void) { stub_up(OTHER_ISS, NULL, NULL); }
static void setup_max_age_1(void) { stub_up(NULL, "--max-age", "1"); }
static void setup_max_age_3600(void) { stub_up(NULL, "--max-age", "3600"); }
static void setup_slow(void) { stub_up(NULL, "--delay-ms", "3000"); }

typedef struct {
    long metadata, jwks, introspect, other;
} stub_stats;

/* GET /stats over a plain socket. */
static stub_stats stats(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)S.port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_msg(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "stats: %s", strerror(errno));
    static const char req[] = "GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    ck_assert_int_eq(write(fd, req, sizeof req - 1), (ssize_t)(sizeof req - 1));
    char buf[4096];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof buf - 1 && (n = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)n;
    close(fd);
    buf[len] = '\0';
    char *body = strstr(buf, "\r\n\r\n");
    ck_assert_msg(body != NULL, "stats: no answer");
    json_object *o = json_tokener_parse(body + 4), *v;
    ck_assert_msg(o != NULL, "stats: %s", body + 4);
    stub_stats st;
    long *f[] = {&st.metadata, &st.jwks, &st.introspect, &st.other};
    const char *names[] = {"metadata", "jwks", "introspect", "other"};
    for (int i = 0; i < 4; i++) {
        ck_assert_msg(json_object_object_get_ex(o, names[i], &v), "stats: no %s", names[i]);
        *f[i] = (long)json_object_get_int64(v);
    }
    json_object_put(o);
    return st;
}

/* ------------------------------------------------------ validator, tokens */

typedef struct {
    mcpauth_config *cfg;
    mcpauth_validator *v;
    const mcpauth_resource *res;
} vctx;

/* One resource RES accepting issuer as; issuer_section (may be NULL) is
 * appended verbatim. */
static void vload(vctx *x, const char *globals, const char *as, const char *issuer_section)
{
    char text[4096], err[512] = "";
    snprintf(text, sizeof text,
             "%s\n[resource a]\nuri = " RES "\nauthorization_servers = %s\n"
             "scopes_supported = read write\nscopes_required = read\n%s\n",
             globals ? globals : "", as, issuer_section ? issuer_section : "");
    x->cfg = mcpauth_config_parse(text, strlen(text), "remote.conf", err, sizeof err);
    ck_assert_msg(x->cfg != NULL, "%s", err);
    x->v = mcpauth_validator_new(x->cfg, err, sizeof err);
    ck_assert_msg(x->v != NULL, "%s", err);
    x->res = mcpauth_config_resource_by_name(x->cfg, "a");
    ck_assert_ptr_nonnull(x->res);
}

static void vfree(vctx *x)
{
    mcpauth_validator_free(x->v);
    mcpauth_config_free(x->cfg);
}

static void vcheck(vctx *x, const char *token, mcpauth_verdict want, const char *why,
                   mcpauth_decision *d)
{
    ck_assert_msg(token != NULL, "token not minted");
    mcpauth_validate_token(x->v, x->res, token, strlen(token), "POST", NULL, d);
    ck_assert_msg(d->verdict == want, "verdict %d, want %d (%s)", d->verdict, want,
                  d->description);
    if (why)
        ck_assert_str_eq(d->description, why);
}

/* [issuer s] for the stub's issuer plus extra lines. */
static char *issuer_section(const char *extra)
{
    char *s;
    if (asprintf(&s, "[issuer s]\nissuer = %s\n%s\n", S.issuer, extra ? extra : "") < 0)
        abort();
    return s;
}

/* [issuer s] with jwks_uri pointing at the stub. */
static char *jwks_uri_section(void)
{
    char extra[256];
    snprintf(extra, sizeof extra, "jwks_uri = %s/jwks", S.issuer);
    return issuer_section(extra);
}

/* A distinct signed token per call (jti), for RES, valid 5 minutes. */
static char *token_for(const tk_key *k, const char *iss, const char *extra_header)
{
    static unsigned seq;
    long now = (long)time(NULL);
    char *claims, *t;
    if (asprintf(&claims,
                 "{\"iss\":\"%s\",\"aud\":\"" RES "\",\"sub\":\"alice\",\"client_id\":\"app\","
                 "\"scope\":\"read write\",\"iat\":%ld,\"exp\":%ld,\"jti\":\"j%d-%u\"}",
                 iss, now, now + 300, (int)getpid(), ++seq) < 0)
        abort();
    t = tk_mint(k, claims, extra_header);
    free(claims);
    ck_assert_ptr_nonnull(t);
    return t;
}

static char *token(const tk_key *k) { return token_for(k, S.issuer, NULL); }

/* ------------------------------------------------------------ discovery */

START_TEST(discovery_metadata_then_jwks_once)
{
    publish_default();
    stub_stats s0 = stats();
    vctx x;
    char *sec = issuer_section(NULL); /* no jwks_file, no jwks_uri */
    vload(&x, NULL, S.issuer, sec);
    char *t[4] = {token(ec), token(rsa), token(ec), token(rsa)};
    for (int i = 0; i < 4; i++) {
        mcpauth_decision d;
        vcheck(&x, t[i], MCPAUTH_ALLOW, NULL, &d);
        ck_assert_int_eq(d.cached, 0);
        ck_assert_str_eq(d.id.issuer, S.issuer);
        ck_assert_str_eq(d.id.subject, "alice");
        ck_assert_str_eq(d.id.client_id, "app");
        ck_assert_str_eq(d.id.scope, "read write");
        free(t[i]);
    }
    stub_stats s1 = stats();
    ck_assert_int_eq(s1.metadata - s0.metadata, 1); /* RFC 8414 document, first URL */
    ck_assert_int_eq(s1.jwks - s0.jwks, 1);         /* keys fetched once, then cached */
    ck_assert_int_eq(s1.other - s0.other, 0);
    ck_assert_int_eq(s1.introspect - s0.introspect, 0);
    vfree(&x);
    free(sec);
}
END_TEST

/* Also the implicit issuer (no [issuer] section at all) discovers. */
START_TEST(discovery_implicit_issuer)
{
    publish_default();
    stub_stats s0 = stats();
    vctx x;
    vload(&x, NULL, S.issuer, NULL);
    char *t = token(rsa);
    mcpauth_decision d;
    vcheck(&x, t, MCPAUTH_ALLOW, NULL, &d);
    stub_stats s1 = stats();
    ck_assert_int_eq(s1.metadata - s0.metadata, 1);
    ck_assert_int_eq(s1.jwks - s0.jwks, 1);
    free(t);
    vfree(&x);
}
END_TEST

/* RFC 8414 §3.3: byte for byte.  The configured issuer has a trailing
 * slash, the document (same host, reachable jwks_uri) has none: the
 * document's jwks_uri must not be used. */
START_TEST(discovery_issuer_trailing_slash_mismatch)
{
    publish_default();
    char iss[80];
    snprintf(iss, sizeof iss, "%s/", S.issuer);
    stub_stats s0 = stats();
    vctx x;
    vload(&x, NULL, iss, NULL);
    char *t = token_for(ec, iss, NULL);
    mcpauth_decision d;
    vcheck(&x, t, MCPAUTH_UNAVAILABLE, KEYS_UNAVAILABLE, &d);
    stub_stats s1 = stats();
    ck_assert_int_ge(s1.metadata - s0.metadata, 1); /* the document was read... */
    ck_assert_int_eq(s1.jwks - s0.jwks, 0);         /* ...and refused */
    free(t);
    vfree(&x);
}
END_TEST

/* The stub announces another issuer in its metadata. */
START_TEST(discovery_issuer_mismatch_unavailable)
{
    publish_default();
    stub_stats s0 = stats();
    vctx x;
    char *sec = issuer_section(NULL);
    vload(&x, NULL, S.issuer, sec);
    char *t1 = token(ec), *t2 = token(rsa);
    mcpauth_decision d;
    vcheck(&x, t1, MCPAUTH_UNAVAILABLE, KEYS_UNAVAILABLE, &d);
    ck_assert_int_eq(d.cached, 0);
    vcheck(&x, t2, MCPAUTH_UNAVAILABLE, KEYS_UNAVAILABLE, &d);
    stub_stats s1 = stats();
    ck_assert_int_ge(s1.metadata - s0.metadata, 1);
    ck_assert_int_eq(s1.jwks - s0.jwks, 0);
    free(t1);
    free(t2);
    free(sec);
    vfree(&x);
}
END_TEST

START_TEST(explicit_jwks_uri_skips_discovery)
{
    publish_default();
    stub_stats s0 = stats();
    vctx x;
    char *sec = jwks_uri_section();
    vload(&x, NULL, S.issuer, sec);
    char *t[3] = {token(ec), token(rsa), token(ec)};
    for (int i = 0; i < 3; i++) {
        mcpauth_decision d;
        vcheck(&x, t[i], MCPAUTH_ALLOW, NULL, &d);
        ck_assert_str_eq(d.id.issuer, S.issuer);
        free(t[i]);
    }
    stub_stats s1 = stats();
    ck_assert_int_eq(s1.metadata - s0.metadata, 0);
    ck_assert_int_eq(s1.jwks - s0.jwks, 1);
    ck_assert_int_eq(s1.other - s0.other, 0);
    free(sec);
    vfree(&x);
}
END_TEST

/* -------------------------------------------------------------- refresh */

/* A key published after the keys were loaded: the unknown kid makes the
 * validator refetch, but only once jwks_min_refresh has elapsed. */
START_TEST(rotation_refetch_on_unknown_kid)
{
    publish_default();
    char *sec = jwks_uri_section();
    vctx fast, slow;
    vload(&fast, "jwks_min_refresh = 1", S.issuer, sec);
    vload(&slow, "jwks_min_refresh = 60", S.issuer, sec);
    char *old1 = token(ec), *old2 = token(ec);
    mcpauth_decision d;
    vcheck(&fast, old1, MCPAUTH_ALLOW, NULL, &d);
    vcheck(&slow, old2, MCPAUTH_ALLOW, NULL, &d);
    stub_stats s0 = stats();

    tk_key *rotated[] = {ec_new, ec, rsa};
    publish(rotated, 3);
    char *new1 = token(ec_new), *new2 = token(ec_new);
    ck_assert_str_eq(ec_new->kid, "ec2");

    /* interval not elapsed: the new key cannot be fetched yet */
    vcheck(&slow, new1, MCPAUTH_INVALID_TOKEN, NO_KEY, &d);
    ck_assert_int_eq(stats().jwks, s0.jwks);

    pause_ms(1100);
    vcheck(&fast, new2, MCPAUTH_ALLOW, NULL, &d);
    ck_assert_str_eq(d.id.issuer, S.issuer);
    stub_stats s1 = stats();
    ck_assert_int_eq(s1.jwks - s0.jwks, 1);
    ck_assert_int_eq(s1.metadata - s0.metadata, 0);

    free(old1);
    free(old2);
    free(new1);
    free(new2);
    free(sec);
    vfree(&fast);
    vfree(&slow);
}
END_TEST

/* Tokens with made-up kids cannot make the validator hammer the AS. */
START_TEST(flood_of_unknown_kids)
{
    publish_default();
    char *sec = jwks_uri_section();
    vctx x;
    vload(&x, "jwks_min_refresh = 60", S.issuer, sec);
    stub_stats s0 = stats();
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    for (int i = 0; i < 50; i++) {
        char hdr[96];
        snprintf(hdr, sizeof hdr, "{\"kid\":\"bogus-%d-%08x%08x\"}", i, (unsigned)rand(),
                 (unsigned)rand());
        char *t = token_for(ec, S.issuer, hdr);
        mcpauth_decision d;
        vcheck(&x, t, MCPAUTH_INVALID_TOKEN, NO_KEY, &d);
        ck_assert_int_eq(d.cached, 0);
        free(t);
    }
    stub_stats s1 = stats();
    /* at most one fetch: the first token loads the keys (cold validator),
     * no later one refetches */
    ck_assert_int_eq(s1.jwks - s0.jwks, 1);
    /* the real keys still work, without another fetch */
    char *good = token(ec);
    mcpauth_decision d;
    vcheck(&x, good, MCPAUTH_ALLOW, NULL, &d);
    ck_assert_int_eq(stats().jwks, s1.jwks);
    free(good);
    free(sec);
    vfree(&x);
}
END_TEST

/* -------------------------------------------------------- Cache-Control */

START_TEST(max_age_expiry_refetches)
{
    publish_default();
    char *sec = jwks_uri_section();
    vctx x;
    vload(&x, "jwks_min_refresh = 1\njwks_max_age = 60", S.issuer, sec);
    char *t1 = token(ec), *t2 = token(rsa);
    mcpauth_decision d;
    vcheck(&x, t1, MCPAUTH_ALLOW, NULL, &d);
    stub_stats s0 = stats();
    ck_assert_int_ge(s0.jwks, 1);
    pause_ms(1100); /* past max-age=1 */
    vcheck(&x, t2, MCPAUTH_ALLOW, NULL, &d);
    stub_stats s1 = stats();
    ck_assert_int_eq(s1.jwks - s0.jwks, 1);
    free(t1);
    free(t2);
    free(sec);
    vfree(&x);
}
END_TEST

/* When the AS's JWKS breaks, the last good set stays in use. */
START_TEST(last_good_keys_kept)
{
    publish_default();
    char *sec = jwks_uri_section();
    vctx x;
    vload(&x, "jwks_min_refresh = 1\njwks_max_age = 60", S.issuer, sec);
    char *t1 = token(ec), *t2 = token(rsa), *t3 = token(ec);
    mcpauth_decision d;
    vcheck(&x, t1, MCPAUTH_ALLOW, NULL, &d);
    stub_stats s0 = stats();

    ck_assert_int_eq(tk_write(S.jwks, "{\"keys\": [ not json"), 0);
    pause_ms(1100);
    vcheck(&x, t2, MCPAUTH_ALLOW, NULL, &d);
    stub_stats s1 = stats();
    ck_assert_int_eq(s1.jwks - s0.jwks, 1); /* refetch tried, answer unusable */

    ck_assert_int_eq(unlink(S.jwks), 0); /* now a 500 */
    pause_ms(1100);
    vcheck(&x, t3, MCPAUTH_ALLOW, NULL, &d);
    stub_stats s2 = stats();
    ck_assert_int_eq(s2.jwks - s1.jwks, 1);

    /* a kid the last good set lacks is a bad token, not an outage */
    char *bogus = token_for(ec, S.issuer, "{\"kid\":\"not-there\"}");
    vcheck(&x, bogus, MCPAUTH_INVALID_TOKEN, NO_KEY, &d);

    free(bogus);
    free(t1);
    free(t2);
    free(t3);
    free(sec);
    vfree(&x);
}
END_TEST

/* max-age=3600 above jwks_max_age=60: clamped to 60 s, which is only
 * observable here as "no refetch within a few seconds"; an unknown kid
 * still can refetch, so the fetcher is alive. */
START_TEST(max_age_above_limit_no_early_refetch)
{
    publish_default();
    char *sec = jwks_uri_section();
    vctx x;
    vload(&x, "jwks_min_refresh = 1\njwks_max_age = 60", S.issuer, sec);
    char *t1 = token(ec), *t2 = token(rsa);
    mcpauth_decision d;
    vcheck(&x, t1, MCPAUTH_ALLOW, NULL, &d);
    stub_stats s0 = stats();
    pause_ms(2100);
    vcheck(&x, t2, MCPAUTH_ALLOW, NULL, &d);
    ck_assert_int_eq(stats().jwks, s0.jwks);
    char *bogus = token_for(ec, S.issuer, "{\"kid\":\"not-there\"}");
    vcheck(&x, bogus, MCPAUTH_INVALID_TOKEN, NO_KEY, &d);
    ck_assert_int_eq(stats().jwks - s0.jwks, 1);
    free(bogus);
    free(t1);
    free(t2);
    free(sec);
    vfree(&x);
}
END_TEST

/* --------------------------------------------------------------- outages */

/* An AS that refuses connections from the start: 503, and never served
 * from the negative cache, which is on (the control shows it). */
START_TEST(unreachable_as_not_cached)
{
    /* bound, not listening: connections are refused */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    ck_assert_int_eq(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(getsockname(s, (struct sockaddr *)&a, &al), 0);
    char iss[64];
    snprintf(iss, sizeof iss, "http://127.0.0.1:%d", ntohs(a.sin_port));

    vctx x;
    vload(&x, "cache_negative_ttl = 60\nhttp_timeout = 2", iss, NULL);
    char *t = token_for(ec, iss, NULL);
    mcpauth_decision d;
    vcheck(&x, t, MCPAUTH_UNAVAILABLE, KEYS_UNAVAILABLE, &d);
    ck_assert_int_eq(d.cached, 0);
    vcheck(&x, t, MCPAUTH_UNAVAILABLE, KEYS_UNAVAILABLE, &d);
    ck_assert_int_eq(d.cached, 0);

    /* control: a refusal is remembered with this configuration */
    char *foreign = token_for(ec, OTHER_ISS, NULL);
    vcheck(&x, foreign, MCPAUTH_INVALID_TOKEN, "token issuer is not accepted for this resource", &d);
    ck_assert_int_eq(d.cached, 0);
    vcheck(&x, foreign, MCPAUTH_INVALID_TOKEN, "token issuer is not accepted for this resource", &d);
    ck_assert_int_eq(d.cached, 1);

    close(s);
    free(t);
    free(foreign);
    vfree(&x);
}
END_TEST

/* The JWKS endpoint fails (500) before any key was loaded: 503, not
 * cached, and the same token passes once the AS is back. */
START_TEST(jwks_error_then_recovery)
{
    unlink(S.jwks);
    char *sec = jwks_uri_section();
    vctx x;
    vload(&x, "cache_negative_ttl = 60\njwks_min_refresh = 1", S.issuer, sec);
    char *t = token(ec);
    stub_stats s0 = stats();
    mcpauth_decision d;
    vcheck(&x, t, MCPAUTH_UNAVAILABLE, KEYS_UNAVAILABLE, &d);
    ck_assert_int_eq(d.cached, 0);
    ck_assert_int_eq(stats().jwks - s0.jwks, 1);
    publish_default();
    pause_ms(1100);
    vcheck(&x, t, MCPAUTH_ALLOW, NULL, &d);
    ck_assert_int_eq(d.cached, 0);
    ck_assert_int_eq(stats().jwks - s0.jwks, 2);
    free(t);
    free(sec);
    vfree(&x);
}
END_TEST

/* --------------------------------------------------------- introspection */

static long long intro_exp;

static void write_tokens(void)
{
    long long now = (long long)time(NULL);
    intro_exp = now + 300;
    char *table;
    if (asprintf(&table,
                 "opaque-abc\t{\"active\":true,\"aud\":\"" RES "\",\"sub\":\"carol\","
                 "\"client_id\":\"cli9\",\"scope\":\"read write\",\"iss\":\"%s\",\"exp\":%lld}\n"
                 "opaque-inactive\t{\"active\":false,\"aud\":\"" RES "\",\"scope\":\"read\"}\n"
                 "opaque-string-active\t{\"active\":\"true\",\"aud\":\"" RES "\",\"scope\":\"read\","
                 "\"exp\":%lld}\n"
                 "opaque-other-aud\t{\"active\":true,\"aud\":\"https://mcp.example.com/b\","
                 "\"sub\":\"carol\",\"scope\":\"read\",\"exp\":%lld}\n"
                 "opaque-other-iss\t{\"active\":true,\"aud\":\"" RES "\",\"sub\":\"carol\","
                 "\"scope\":\"read\",\"iss\":\"" OTHER_ISS "\",\"exp\":%lld}\n"
                 "opaque-refresh\t{\"active\":true,\"aud\":\"" RES "\",\"sub\":\"carol\","
                 "\"scope\":\"read\",\"token_type\":\"refresh_token\",\"exp\":%lld}\n"
                 "opaque-expired\t{\"active\":true,\"aud\":\"" RES "\",\"sub\":\"carol\","
                 "\"scope\":\"read\",\"exp\":%lld}\n",
                 S.issuer, intro_exp, intro_exp, intro_exp, intro_exp, intro_exp, now - 3600) < 0)
        abort();
    ck_assert_int_eq(tk_write(S.tokens, table), 0);
    free(table);
}

static char *intro_section(const char *secret)
{
    char extra[512];
    snprintf(extra, sizeof extra,
             "introspection_endpoint = %s/introspect\nintrospection_client_id = gate\n"
             "introspection_client_secret = %s",
             S.issuer, secret);
    return issuer_section(extra);
}

START_TEST(introspection_active_allowed_and_cached)
{
    write_tokens();
    char *sec = intro_section("gate-secret");
    vctx x;
    vload(&x, NULL, S.issuer, sec);
    stub_stats s0 = stats();
    mcpauth_decision d;
    vcheck(&x, "opaque-abc", MCPAUTH_ALLOW, NULL, &d);
    ck_assert_int_eq(d.cached, 0);
    ck_assert_str_eq(d.id.subject, "carol");
    ck_assert_str_eq(d.id.client_id, "cli9");
    ck_assert_str_eq(d.id.scope, "read write");
    ck_assert_str_eq(d.id.issuer, S.issuer);
    ck_assert(d.id.exp == intro_exp);
    stub_stats s1 = stats();
    ck_assert_int_eq(s1.introspect - s0.introspect, 1);
    ck_assert_int_eq(s1.jwks - s0.jwks, 0);
    ck_assert_int_eq(s1.metadata - s0.metadata, 0);

    vcheck(&x, "opaque-abc", MCPAUTH_ALLOW, NULL, &d);
    ck_assert_int_eq(d.cached, 1);
    ck_assert_str_eq(d.id.subject, "carol");
    ck_assert_int_eq(stats().introspect, s1.introspect);
    free(sec);
    vfree(&x);
}
END_TEST

START_TEST(introspection_refusals)
{
    write_tokens();
    char *sec = intro_section("gate-secret");
    vctx x;
    vload(&x, NULL, S.issuer, sec);
    stub_stats s0 = stats();
    mcpauth_decision d;
    vcheck(&x, "opaque-inactive", MCPAUTH_INVALID_TOKEN, "token is not active", &d);
    vcheck(&x, "opaque-unknown", MCPAUTH_INVALID_TOKEN, "token is not active", &d);
    vcheck(&x, "opaque-string-active", MCPAUTH_INVALID_TOKEN, "token is not active", &d);
    vcheck(&x, "opaque-other-aud", MCPAUTH_INVALID_TOKEN,
           "token audience does not include this resource", &d);
    vcheck(&x, "opaque-other-iss", MCPAUTH_INVALID_TOKEN, "introspected token has another issuer",
           &d);
    vcheck(&x, "opaque-expired", MCPAUTH_INVALID_TOKEN, "token expired", &d);
    /* regression: a refresh token the AS calls active is no Bearer token */
    vcheck(&x, "opaque-refresh", MCPAUTH_INVALID_TOKEN, "token is not active", &d);
    ck_assert_int_eq(stats().introspect - s0.introspect, 7);
    free(sec);
    vfree(&x);
}
END_TEST

/* The AS refuses our client credentials (401): an outage, not a verdict
 * on the token, and not cached. */
START_TEST(introspection_wrong_secret_unavailable)
{
    write_tokens();
    char *sec = intro_section("not-the-secret");
    vctx x;
    vload(&x, "cache_negative_ttl = 60", S.issuer, sec);
    stub_stats s0 = stats();
    mcpauth_decision d;
    vcheck(&x, "opaque-abc", MCPAUTH_UNAVAILABLE, INTROSPECTION_UNAVAILABLE, &d);
    ck_assert_int_eq(d.cached, 0);
    ck_assert_int_eq(stats().introspect - s0.introspect, 1);
    vcheck(&x, "opaque-abc", MCPAUTH_UNAVAILABLE, INTROSPECTION_UNAVAILABLE, &d);
    ck_assert_int_eq(d.cached, 0);
    ck_assert_int_eq(stats().introspect - s0.introspect, 2);
    free(sec);
    vfree(&x);
}
END_TEST

/* Regression: with two introspecting issuers, one down and the other
 * answering "inactive", the token may be the absent issuer's: 503, never
 * a cached 401. */
START_TEST(introspection_one_issuer_down_is_unavailable)
{
    write_tokens();
    int dead = pick_port(); /* nothing listens there */
    char *sections;
    if (asprintf(&sections,
                 "[issuer down]\nissuer = http://127.0.0.1:%d\n"
                 "introspection_endpoint = http://127.0.0.1:%d/introspect\n"
                 "introspection_client_id = gate\nintrospection_client_secret = gate-secret\n"
                 "[issuer up]\nissuer = %s\nintrospection_endpoint = %s/introspect\n"
                 "introspection_client_id = gate\nintrospection_client_secret = gate-secret\n",
                 dead, dead, S.issuer, S.issuer) < 0)
        abort();
    char as[256];
    snprintf(as, sizeof as, "http://127.0.0.1:%d %s", dead, S.issuer);
    vctx x;
    vload(&x, "cache_negative_ttl = 60", as, sections);
    mcpauth_decision d;
    vcheck(&x, "opaque-of-the-down-issuer", MCPAUTH_UNAVAILABLE, INTROSPECTION_UNAVAILABLE, &d);
    vcheck(&x, "opaque-of-the-down-issuer", MCPAUTH_UNAVAILABLE, INTROSPECTION_UNAVAILABLE, &d);
    ck_assert_int_eq(d.cached, 0);
    /* the live issuer's own active token still works */
    vcheck(&x, "opaque-abc", MCPAUTH_ALLOW, NULL, &d);
    free(sections);
    vfree(&x);
}
END_TEST

START_TEST(opaque_without_introspection)
{
    write_tokens();
    char *sec = issuer_section(NULL); /* discovery only */
    vctx x;
    vload(&x, NULL, S.issuer, sec);
    stub_stats s0 = stats();
    mcpauth_decision d;
    vcheck(&x, "opaque-abc", MCPAUTH_INVALID_TOKEN,
           "token is not a JWT and no introspection is configured", &d);
    stub_stats s1 = stats();
    ck_assert_int_eq(s1.introspect - s0.introspect, 0);
    ck_assert_int_eq(s1.metadata - s0.metadata, 0);
    ck_assert_int_eq(s1.jwks - s0.jwks, 0);
    free(sec);
    vfree(&x);
}
END_TEST

/* -------------------------------------------------------------- timeouts */

/* The stub answers after 3 s; http_timeout = 1 bounds the wait.  (Its
 * /stats is delayed too, so only time and verdict are asserted.) */
START_TEST(jwks_timeout)
{
    char *sec = jwks_uri_section();
    vctx x;
    vload(&x, "http_timeout = 1", S.issuer, sec);
    char *t = token(ec);
    mcpauth_decision d;
    double t0 = now_s();
    vcheck(&x, t, MCPAUTH_UNAVAILABLE, KEYS_UNAVAILABLE, &d);
    double el = now_s() - t0;
    ck_assert_msg(el >= 0.9 && el < 2.5, "took %.2f s", el);
    free(t);
    free(sec);
    vfree(&x);
}
END_TEST

START_TEST(introspection_timeout)
{
    char extra[512];
    snprintf(extra, sizeof extra,
             "introspection_endpoint = %s/introspect\nintrospection_client_id = gate\n"
             "introspection_client_secret = gate-secret",
             S.issuer);
    char *sec = issuer_section(extra);
    vctx x;
    vload(&x, "http_timeout = 1", S.issuer, sec);
    mcpauth_decision d;
    double t0 = now_s();
    vcheck(&x, "opaque-abc", MCPAUTH_UNAVAILABLE, INTROSPECTION_UNAVAILABLE, &d);
    double el = now_s() - t0;
    ck_assert_msg(el >= 0.9 && el < 2.5, "took %.2f s", el);
    free(sec);
    vfree(&x);
}
END_TEST


/* --------------------------------------------- refresh beside validation */

/* These cases serve the keys from an in-process server (support/httpd.c)
 * whose /jwks can be told to hang: it accepts the request and never
 * answers.  The bug they guard against held every validation of the
 * issuer for the whole fetch (http_timeout = 2 s here, up to 4x that with
 * discovery); FAST_MS is a generous bound for a validation with keys at
 * hand (well under a millisecond on an idle machine). */
#define FAST_MS 200.0

static httpd H;
static char h_iss[64];

static void h_up(void)
{
    memset(&H, 0, sizeof H);
    ck_assert_int_eq(httpd_start(&H, NULL), 0);
    snprintf(h_iss, sizeof h_iss, "http://127.0.0.1:%d", H.port);
}

/* /jwks answers with rsa1 and ec1, with Cache-Control max-age when >= 0. */
static void h_publish(int max_age)
{
    static char hdrs[128];
    tk_key *pub[] = {rsa, ec};
    char *j = tk_jwks(pub, 2);
    char cc[48] = "";
    if (max_age >= 0)
        snprintf(cc, sizeof cc, "Cache-Control: max-age=%d\r\n", max_age);
    snprintf(hdrs, sizeof hdrs, "Content-Type: application/json\r\n%s", cc);
    httpd_resp r = {.headers = hdrs, .body = j};
    ck_assert_int_eq(httpd_route(&H, "/jwks", &r), 0);
    free(j);
}

static void h_hang(const char *path)
{
    httpd_resp r = {.hang = 1};
    ck_assert_int_eq(httpd_route(&H, path, &r), 0);
}

/* Waits (up to 3 s) until the server has read n requests. */
static void h_wait_requests(int n)
{
    for (int i = 0; i < 300 && httpd_nreq(&H) < n; i++)
        pause_ms(10);
    ck_assert_int_ge(httpd_nreq(&H), n);
}

static double elapsed_ms(double t0) { return (now_s() - t0) * 1000.0; }

/* A validation on another thread: the one that runs into the hanging
 * fetch. */
typedef struct {
    vctx *x;
    char *token;
    mcpauth_decision d;
    double ms;
    atomic_int done;
} bg_check;

static void *bg_main(void *arg)
{
    bg_check *b = arg;
    double t0 = now_s();
    mcpauth_validate_token(b->x->v, b->x->res, b->token, strlen(b->token), "POST", NULL, &b->d);
    b->ms = elapsed_ms(t0);
    atomic_store(&b->done, 1);
    return NULL;
}

/* n valid tokens, each accepted within FAST_MS. */
static void fast_accepts(vctx *x, int n)
{
    for (int i = 0; i < n; i++) {
        char *t = token_for(i % 2 ? rsa : ec, h_iss, NULL);
        mcpauth_decision d;
        double t0 = now_s();
        vcheck(x, t, MCPAUTH_ALLOW, NULL, &d);
        double ms = elapsed_ms(t0);
        ck_assert_msg(ms < FAST_MS, "validation %d took %.0f ms while a key fetch hangs", i, ms);
        free(t);
    }
}

/* A token with an unknown kid forces a refresh, and the JWKS endpoint
 * hangs: meanwhile valid tokens are accepted at once with the keys in
 * hand, and another unknown kid is told the keys are being refreshed (an
 * outage, not cached) rather than wait.  Afterwards the last good keys are
 * still in use. */
START_TEST(jwks_hang_does_not_block_validation)
{
    h_up();
    h_publish(-1);
    char sec[256];
    snprintf(sec, sizeof sec, "[issuer h]\nissuer = %s\njwks_uri = %s/jwks\n", h_iss, h_iss);
    vctx x;
    vload(&x, "jwks_min_refresh = 1\nhttp_timeout = 2\ncache_negative_ttl = 60", h_iss, sec);
    fast_accepts(&x, 1); /* loads the keys (not timed: it fetches) */
    ck_assert_int_eq(httpd_nreq(&H), 1);

    h_hang("/jwks");
    pause_ms(1100); /* past jwks_min_refresh */
    bg_check b = {.x = &x, .token = token_for(ec_new, h_iss, NULL)}; /* kid ec2: unknown */
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, bg_main, &b), 0);
    h_wait_requests(2); /* the forced fetch is in flight */

    fast_accepts(&x, 20);
    char *other = token_for(ec_new, h_iss, NULL);
    mcpauth_decision d;
    double t0 = now_s();
    vcheck(&x, other, MCPAUTH_UNAVAILABLE, BEING_REFRESHED, &d);
    ck_assert_msg(elapsed_ms(t0) < FAST_MS, "an unknown kid waited for the fetch");
    ck_assert_int_eq(d.cached, 0);
    ck_assert_msg(!atomic_load(&b.done), "the fetch ended before the checks: they prove nothing");

    pthread_join(th, NULL);
    /* the thread that fetched got the last word: no such key */
    ck_assert_int_eq(b.d.verdict, MCPAUTH_INVALID_TOKEN);
    ck_assert_str_eq(b.d.description, NO_KEY);
    ck_assert_msg(b.ms < 3500, "the fetch took %.0f ms, beyond http_timeout", b.ms);
    fast_accepts(&x, 2); /* last good keys kept */
    free(b.token);
    free(other);
    vfree(&x);
    httpd_stop(&H);
}
END_TEST

/* shared_cache: another process (here: another validator on the same
 * runtime_dir, with its own flock) is fetching and the endpoint hangs;
 * this one, its keys stale too, goes on with them at once instead of
 * queueing on the stamp file's lock. */
START_TEST(shared_jwks_hang_does_not_block_other_processes)
{
    h_up();
    /* 3 s: b must find a's saved set still fresh even on a loaded machine */
    h_publish(3);
    char rt[64] = "/tmp/mcpauth-vrh-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(rt));
    char sec[256], globals[256];
    snprintf(sec, sizeof sec, "[issuer h]\nissuer = %s\njwks_uri = %s/jwks\n", h_iss, h_iss);
    snprintf(globals, sizeof globals,
             "shared_cache = yes\nruntime_dir = %s\njwks_min_refresh = 1\nhttp_timeout = 2", rt);
    vctx a, b;
    vload(&a, globals, h_iss, sec);
    vload(&b, globals, h_iss, sec);
    fast_accepts(&a, 1); /* fetches and saves */
    fast_accepts(&b, 1); /* reads the saved set */
    ck_assert_int_eq(httpd_nreq(&H), 1);

    h_hang("/jwks");
    pause_ms(3100); /* max-age=3 has run out, for both */
    bg_check bg = {.x = &a, .token = token_for(ec, h_iss, NULL)};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, bg_main, &bg), 0);
    h_wait_requests(2); /* a holds the stamp's lock and waits for the AS */

    fast_accepts(&b, 10);
    char *unknown = token_for(ec_new, h_iss, NULL);
    mcpauth_decision d;
    double t0 = now_s();
    vcheck(&b, unknown, MCPAUTH_UNAVAILABLE, BEING_REFRESHED, &d);
    ck_assert_msg(elapsed_ms(t0) < FAST_MS, "an unknown kid waited for the other's fetch");
    ck_assert_msg(!atomic_load(&bg.done), "the fetch ended before the checks: they prove nothing");

    pthread_join(th, NULL);
    ck_assert_int_eq(bg.d.verdict, MCPAUTH_ALLOW); /* its own token, with the old keys */
    ck_assert_int_eq(httpd_nreq(&H), 2);           /* one fetch for both */
    free(bg.token);
    free(unknown);
    vfree(&a);
    vfree(&b);
    httpd_stop(&H);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", rt);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* No keys yet, and discovery hangs at every URL: the first validation
 * (which fetches) and one arriving meanwhile (which waits for it) are
 * both answered 503 within about http_timeout, not after each discovery
 * URL has timed out in turn. */
START_TEST(first_fetch_bounded_by_http_timeout)
{
    h_up();
    h_hang("/.well-known/oauth-authorization-server");
    h_hang("/.well-known/openid-configuration");
    char sec[256];
    snprintf(sec, sizeof sec, "[issuer h]\nissuer = %s\n", h_iss);
    vctx x;
    vload(&x, "http_timeout = 2", h_iss, sec);
    bg_check b = {.x = &x, .token = token_for(ec, h_iss, NULL)};
    pthread_t th;
    double t0 = now_s();
    ck_assert_int_eq(pthread_create(&th, NULL, bg_main, &b), 0);
    h_wait_requests(1);
    char *t = token_for(ec, h_iss, NULL);
    mcpauth_decision d;
    vcheck(&x, t, MCPAUTH_UNAVAILABLE, KEYS_UNAVAILABLE, &d);
    double waited = elapsed_ms(t0);
    pthread_join(th, NULL);
    ck_assert_int_eq(b.d.verdict, MCPAUTH_UNAVAILABLE);
    /* 2 s each, plus generous slack; two discovery URLs in turn take 4 s */
    ck_assert_msg(b.ms < 3200, "the fetching validation took %.0f ms", b.ms);
    ck_assert_msg(waited < 3200, "the waiting validation took %.0f ms", waited);
    free(b.token);
    free(t);
    vfree(&x);
    httpd_stop(&H);
}
END_TEST

/* JWKS endpoint down at start: the gate's and the proxy's answer is 503
 * with Retry-After (no challenge: the token may be fine), until keys come. */
START_TEST(keys_down_503_retry_after)
{
    int port = httpd_free_port(); /* nothing listens: refused */
    ck_assert_int_gt(port, 0);
    char iss[64];
    snprintf(iss, sizeof iss, "http://127.0.0.1:%d", port);
    vctx x;
    vload(&x, "http_timeout = 2", iss, NULL);
    char *t = token_for(ec, iss, NULL), authz[4096];
    snprintf(authz, sizeof authz, "Bearer %s", t);
    const char *params[] = {"REQUEST_METHOD", "POST", "HTTP_AUTHORIZATION", authz, NULL};
    memhttp m;
    mcpauth_request req;
    mcpauth_response resp;
    memhttp_setup(&m, params, &req, &resp);
    mcpauth_decision d;
    mcpauth_validate_request(x.v, x.res, &req, NULL, &d);
    ck_assert_int_eq(d.verdict, MCPAUTH_UNAVAILABLE);
    mcpauth_decision_respond(&d, x.res, &resp);
    ck_assert_msg(strncmp(m.out, "Status: 503", 11) == 0, "%s", m.out);
    const char *ra = memhttp_header(m.out, "Retry-After");
    ck_assert_msg(ra != NULL, "no Retry-After: %s", m.out);
    ck_assert_int_gt(atoi(ra), 0);
    ck_assert_ptr_null(memhttp_header(m.out, "WWW-Authenticate"));
    free(t);
    vfree(&x);
}
END_TEST

static TCase *tcase(const char *name, void (*up)(void))
{
    TCase *tc = tcase_create(name);
    tcase_add_unchecked_fixture(tc, up, stub_down);
    tcase_set_timeout(tc, 20);
    return tc;
}

Suite *validate_remote_suite(void)
{
    Suite *s = suite_create("validate_remote");
    TCase *tc = tcase("discovery", setup_plain);
    tcase_add_test(tc, discovery_metadata_then_jwks_once);
    tcase_add_test(tc, discovery_implicit_issuer);
    tcase_add_test(tc, discovery_issuer_trailing_slash_mismatch);
    tcase_add_test(tc, explicit_jwks_uri_skips_discovery);
    suite_add_tcase(s, tc);

    tc = tcase("discovery_mismatch", setup_mismatch);
    tcase_add_test(tc, discovery_issuer_mismatch_unavailable);
    suite_add_tcase(s, tc);

    tc = tcase("refresh", setup_plain);
    tcase_add_test(tc, rotation_refetch_on_unknown_kid);
    tcase_add_test(tc, flood_of_unknown_kids);
    suite_add_tcase(s, tc);

    tc = tcase("cache_control", setup_max_age_1);
    tcase_add_test(tc, max_age_expiry_refetches);
    tcase_add_test(tc, last_good_keys_kept);
    suite_add_tcase(s, tc);

    tc = tcase("cache_control_clamp", setup_max_age_3600);
    tcase_add_test(tc, max_age_above_limit_no_early_refetch);
    suite_add_tcase(s, tc);

    tc = tcase("outage", setup_plain);
    tcase_add_test(tc, unreachable_as_not_cached);
    tcase_add_test(tc, jwks_error_then_recovery);
    suite_add_tcase(s, tc);

    tc = tcase("introspection", setup_plain);
    tcase_add_test(tc, introspection_active_allowed_and_cached);
    tcase_add_test(tc, introspection_refusals);
    tcase_add_test(tc, introspection_wrong_secret_unavailable);
    tcase_add_test(tc, introspection_one_issuer_down_is_unavailable);
    tcase_add_test(tc, opaque_without_introspection);
    suite_add_tcase(s, tc);

    tc = tcase("beside", setup_plain);
    tcase_add_test(tc, jwks_hang_does_not_block_validation);
    tcase_add_test(tc, shared_jwks_hang_does_not_block_other_processes);
    tcase_add_test(tc, first_fetch_bounded_by_http_timeout);
    tcase_add_test(tc, keys_down_503_retry_after);
    suite_add_tcase(s, tc);

    tc = tcase("timeout", setup_slow);
    tcase_add_test(tc, jwks_timeout);
    tcase_add_test(tc, introspection_timeout);
    suite_add_tcase(s, tc);
    return s;
}
