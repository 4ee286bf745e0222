/* The shared state (lib/state.c, lib/state_redis.c, revoked.c's Redis
 * side): the same rate limits, session bindings and revocations through
 * the shm files and through a private redis-server, several handles acting
 * as several hosts; Redis stopped, frozen and restarted. */
#include <check.h>

Suite *state_suite(void);

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <openssl/rand.h>

#include <mcpauth/config.h>

#include "metrics.h"
#include "encode.h"
#include "revoked.h"
#include "shm.h"
#include "state.h"
#include "store.h"
#define SCRATCH_NAME "state"
#include "../support/scratchdir.h"
#include "../support/redistest.h"

/* Ports of the servers a test starts (and stops) itself; 26379 is the
 * shared one. */
#define PORT_OUTAGE redistest_port(0)
#define PORT_FROZEN redistest_port(1)
#define PORT_REVOKED redistest_port(2)
#define PORT_LOST redistest_port(3)
#define PORT_PENDING redistest_port(4)
#define PORT_EVICT redistest_port(5)

static const char *url; /* the shared server */

static void suite_setup(void)
{
    scratch_suite_setup();
    url = redistest_shared_url();
}

static void setup(void)
{
    scratch_setup();
    ck_assert_msg(url != NULL, "the private redis-server (port 26379) did not start; see above");
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A random key or id, so tests on the shared server never meet. */
static void fresh(char *buf, size_t cap, const char *prefix)
{
    unsigned char r[8];
    ck_assert_int_eq(RAND_bytes(r, sizeof r), 1);
    snprintf(buf, cap, "%s-%02x%02x%02x%02x%02x%02x%02x%02x", prefix, r[0], r[1], r[2], r[3], r[4],
             r[5], r[6], r[7]);
}

static mcpauth__redis *redis_at(const char *u, long timeout_ms)
{
    char err[256] = "";
    mcpauth__redis *r = mcpauth__redis_open(u, timeout_ms, err, sizeof err);
    ck_assert_msg(r != NULL, "mcpauth__redis_open(%s): %s", u, err);
    return r;
}

static mcpauth_config *conf_for(const char *shared_state, long timeout_ms)
{
    char text[1024], err[512] = "";
    snprintf(text, sizeof text,
             "runtime_dir = %s\nshared_state = %s\nshared_state_timeout = %ld\n"
             "[resource a]\nuri = https://mcp.example.com/a\n"
             "authorization_servers = https://auth.example.com\n",
             dir, shared_state, timeout_ms);
    mcpauth_config *cfg = mcpauth_config_parse(text, strlen(text), "t.conf", err, sizeof err);
    ck_assert_msg(cfg != NULL, "%s", err);
    return cfg;
}

/* ------------------------------------------------------------ addresses */

START_TEST(urls)
{
    static const char *const good[] = {
        "redis://127.0.0.1", "redis://127.0.0.1:26379", "redis://127.0.0.1:26379/3",
        "redis://:secret@127.0.0.1:1/0", "redis://user:pw@host", "redis://[::1]:6379/1",
        "unix:/run/redis.sock", "unix:/run/redis.sock?db=2"};
    static const char *const bad[] = {
        "redis://", "redis://:6379", "redis://h:0", "redis://h:65536", "redis://h:x",
        "redis://h/db", "redis://h:1/2/3", "redis://pw@h", "redis://[::1", "unix:relative",
        "unix:/s?db=x", "unix:/s?x=1", "http://h", "redis://h:99999999999999",
        "redis://h/4294967297", "unix:/s?db=99999999999999999999"};
    char err[256];
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        mcpauth__redis *r = mcpauth__redis_open(good[i], 100, err, sizeof err);
        ck_assert_msg(r != NULL, "%s refused: %s", good[i], err);
        mcpauth__redis_close(r);
    }
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        mcpauth__redis *r = mcpauth__redis_open(bad[i], 100, err, sizeof err);
        ck_assert_msg(r == NULL, "%s accepted", bad[i]);
        ck_assert_msg(err[0], "%s: no reason", bad[i]);
    }
}
END_TEST

/* A password in the address never reaches a message: not from the parser
 * (mcpauth status, the proxy's start error), not from the revocation
 * reader (the gate's revocation_list_unavailable reason). */
START_TEST(urls_password_masked)
{
    static const char *const bad[] = {
        "redis://:Pw0rdXYZ@h:0",         "redis://u:Pw0rdXYZ@h:65536/1", "redis://:Pw0rdXYZ@",
        "redis://Pw0rdXYZ@h",            "redis://:Pw0rdXYZ@[::1",       "redis://:Pw0rdXYZ@h/db",
        "redis://:Pw0rdXYZ@h:1/2/3",     "http://:Pw0rdXYZ@h",           "redis://:a@Pw0rdXYZ@h:x"};
    char err[256];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        ck_assert_ptr_null(mcpauth__redis_open(bad[i], 100, err, sizeof err));
        ck_assert_msg(err[0] && !strstr(err, "Pw0rd") && strstr(err, "***"), "%s", err);
        err[0] = '\0';
        ck_assert_int_eq(mcpauth__redis_check_url(bad[i], err, sizeof err), -1);
        ck_assert_msg(!strstr(err, "Pw0rd"), "%s", err);
        mcpauth_config *cfg = conf_for("shm", 250);
        free(cfg->shared_state);
        cfg->shared_state = strdup(bad[i]);
        err[0] = '\0';
        mcpauth__revoked *rv = mcpauth__revoked_open(cfg, 0, err, sizeof err);
        ck_assert_ptr_nonnull(rv);
        ck_assert_msg(err[0] && !strstr(err, "Pw0rd"), "%s", err);
        mcpauth__revoked_close(rv);
        err[0] = '\0';
        ck_assert_ptr_null(mcpauth__state_open(cfg, NULL, err, sizeof err));
        ck_assert_msg(err[0] && !strstr(err, "Pw0rd"), "%s", err);
        mcpauth_config_free(cfg);
    }
    char buf[64];
    mcpauth__redis_mask("redis://u:p@w@h:1/2", buf, sizeof buf);
    ck_assert_str_eq(buf, "redis://***@h:1/2");
    mcpauth__redis_mask("redis://h:1", buf, sizeof buf);
    ck_assert_str_eq(buf, "redis://h:1");
    mcpauth__redis_mask("x:secret@h", buf, sizeof buf);
    ck_assert_str_eq(buf, "***@h");
    ck_assert_int_eq(mcpauth__redis_check_url("redis://u:p@h:6379/2", err, sizeof err), 0);
}
END_TEST

/* ------------------------------------------------ both back-ends, one API */

/* The same sequence through the shm back-end and the Redis one gives the
 * same answers: the dispatch changes where, not what. */
static void rate_and_sessions(mcpauth__state *st)
{
    char key[64], id[64];
    fresh(key, sizeof key, "rate");
    int retry = -1;
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(mcpauth__state_rate(st, key, strlen(key), 1, 3, 1000.0, &retry), 1);
        ck_assert_int_eq(retry, 0);
    }
    ck_assert_int_eq(mcpauth__state_rate(st, key, strlen(key), 1, 3, 1000.0, &retry), 0);
    ck_assert_int_eq(retry, 1);
    ck_assert_int_eq(mcpauth__state_rate(st, key, strlen(key), 1, 3, 1000.5, &retry), 0);
    ck_assert_int_eq(mcpauth__state_rate(st, key, strlen(key), 1, 3, 1001.0, &retry), 1);
    /* 0.1 token/s: the next one in 10 s */
    char slow[64];
    fresh(slow, sizeof slow, "slow");
    ck_assert_int_eq(mcpauth__state_rate(st, slow, strlen(slow), 0.1, 1, 2000.0, &retry), 1);
    ck_assert_int_eq(mcpauth__state_rate(st, slow, strlen(slow), 0.1, 1, 2000.0, &retry), 0);
    ck_assert_int_eq(retry, 10);

    fresh(id, sizeof id, "sess");
    time_t now = time(NULL);
    ck_assert_int_eq(mcpauth__state_session_check(st, id, "alice", now, now + 60),
                     MCPAUTH_SESSION_UNKNOWN);
    ck_assert_int_eq(mcpauth__state_session_bind(st, id, "alice", now + 60, now), 0);
    ck_assert_int_eq(mcpauth__state_session_bind(st, id, "alice", now + 60, now), 0);
    ck_assert_int_eq(mcpauth__state_session_bind(st, id, "mallory", now + 60, now), -1);
    ck_assert_int_eq(mcpauth__state_session_check(st, id, "alice", now, now + 60),
                     MCPAUTH_SESSION_OWNER);
    ck_assert_int_eq(mcpauth__state_session_check(st, id, "mallory", now, now + 60),
                     MCPAUTH_SESSION_OTHER);
    ck_assert_int_eq(mcpauth__state_session_remove(st, id), 0);
    ck_assert_int_eq(mcpauth__state_session_check(st, id, "alice", now, now + 60),
                     MCPAUTH_SESSION_UNKNOWN);
}

START_TEST(same_answers_shm)
{
    mcpauth_config *cfg = conf_for("shm", 250);
    char path[200], err[256] = "";
    snprintf(path, sizeof path, "%s/proxy.shm", dir);
    mcpauth_shm *shm = mcpauth__shm_open(path, 1024, 64, err, sizeof err);
    ck_assert_msg(shm != NULL, "%s", err);
    mcpauth__state *st = mcpauth__state_open(cfg, shm, err, sizeof err);
    ck_assert_msg(st != NULL, "%s", err);
    ck_assert(!mcpauth__state_is_redis(st));
    rate_and_sessions(st);
    mcpauth__state_close(st);
    mcpauth__shm_close(shm);
    mcpauth_config_free(cfg);
}
END_TEST

START_TEST(same_answers_redis)
{
    mcpauth_config *cfg = conf_for(url, 250);
    char err[256] = "";
    mcpauth__state *st = mcpauth__state_open(cfg, NULL, err, sizeof err);
    ck_assert_msg(st != NULL, "%s", err);
    ck_assert(mcpauth__state_is_redis(st));
    rate_and_sessions(st);
    mcpauth__state_close(st);
    mcpauth_config_free(cfg);
}
END_TEST

START_TEST(bad_address_refused_at_open)
{
    mcpauth_config *cfg = conf_for("redis://127.0.0.1:26379", 250);
    free(cfg->shared_state);
    cfg->shared_state = strdup("redis://:1");
    char err[256] = "";
    ck_assert_ptr_null(mcpauth__state_open(cfg, NULL, err, sizeof err));
    ck_assert_msg(strstr(err, "shared_state") != NULL, "%s", err);
    mcpauth_config_free(cfg);
}
END_TEST

/* ------------------------------------------------------- rate, two hosts */

typedef struct {
    mcpauth__redis *r;
    const char *key;
    int allowed, unavailable;
} taker;

static void *take_many(void *arg)
{
    taker *t = arg;
    for (int i = 0; i < 100; i++) {
        int rc = mcpauth__redis_rate(t->r, t->key, strlen(t->key), 0.001, 50, 5000.0, NULL);
        t->allowed += rc == 1;
        t->unavailable += rc == MCPAUTH__STATE_UNAVAILABLE;
    }
    return NULL;
}

/* Two handles (two hosts), two threads each, one bucket of 50: exactly 50
 * pass, whatever the interleaving (the script runs atomically). */
START_TEST(rate_atomic_across_handles)
{
    char key[64];
    fresh(key, sizeof key, "atomic");
    mcpauth__redis *h[2] = {redis_at(url, 1000), redis_at(url, 1000)};
    taker t[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        t[i] = (taker){h[i % 2], key, 0, 0};
        ck_assert_int_eq(pthread_create(&th[i], NULL, take_many, &t[i]), 0);
    }
    int allowed = 0, unavailable = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        allowed += t[i].allowed;
        unavailable += t[i].unavailable;
    }
    ck_assert_int_eq(unavailable, 0);
    ck_assert_int_eq(allowed, 50);
    /* and it refills for everyone: 1000 s later at 0.001/s, one more */
    ck_assert_int_eq(mcpauth__redis_rate(h[1], key, strlen(key), 0.001, 50, 6000.0, NULL), 1);
    ck_assert_int_eq(mcpauth__redis_rate(h[0], key, strlen(key), 0.001, 50, 6000.0, NULL), 0);
    mcpauth__redis_close(h[0]);
    mcpauth__redis_close(h[1]);
}
END_TEST

/* A clock behind the bucket's (another host's) neither refills nor locks
 * the key out. */
START_TEST(rate_clock_skew)
{
    char key[64];
    fresh(key, sizeof key, "skew");
    mcpauth__redis *a = redis_at(url, 1000), *b = redis_at(url, 1000);
    ck_assert_int_eq(mcpauth__redis_rate(a, key, strlen(key), 1, 1, 1000.0, NULL), 1);
    ck_assert_int_eq(mcpauth__redis_rate(b, key, strlen(key), 1, 1, 999.5, NULL), 0);
    ck_assert_int_eq(mcpauth__redis_rate(b, key, strlen(key), 1, 1, 1001.0, NULL), 1);
    /* far in the past: the bucket restarts from there instead of waiting */
    ck_assert_int_eq(mcpauth__redis_rate(b, key, strlen(key), 1, 1, 100.0, NULL), 0);
    ck_assert_int_eq(mcpauth__redis_rate(b, key, strlen(key), 1, 1, 101.0, NULL), 1);
    mcpauth__redis_close(a);
    mcpauth__redis_close(b);
}
END_TEST

/* --------------------------------------------------------------- sessions */

START_TEST(session_across_handles)
{
    char id[64];
    fresh(id, sizeof id, "sess");
    mcpauth__redis *a = redis_at(url, 1000), *b = redis_at(url, 1000);
    ck_assert_int_eq(mcpauth__redis_session_bind(a, id, "iss\nalice\nc1", 60), 0);
    ck_assert_int_eq(mcpauth__redis_session_bind(b, id, "iss\nmallory\nc1", 60), -1);
    ck_assert_int_eq(mcpauth__redis_session_check(b, id, "iss\nmallory\nc1", 60),
                     MCPAUTH_SESSION_OTHER);
    ck_assert_int_eq(mcpauth__redis_session_check(b, id, "iss\nalice\nc1", 60),
                     MCPAUTH_SESSION_OWNER);
    ck_assert_int_eq(mcpauth__redis_session_remove(b, id), 0);
    ck_assert_int_eq(mcpauth__redis_session_check(a, id, "iss\nalice\nc1", 60),
                     MCPAUTH_SESSION_UNKNOWN);
    /* gone: now mallory may bind it (a new session of that id is hers) */
    ck_assert_int_eq(mcpauth__redis_session_bind(b, id, "iss\nmallory\nc1", 60), 0);
    mcpauth__redis_close(a);
    mcpauth__redis_close(b);
}
END_TEST

/* A binding lives session_ttl after its last use, then is gone. */
START_TEST(session_ttl)
{
    char id[64], keep[64];
    fresh(id, sizeof id, "ttl");
    fresh(keep, sizeof keep, "keep");
    mcpauth__redis *a = redis_at(url, 1000);
    ck_assert_int_eq(mcpauth__redis_session_bind(a, id, "alice", 1), 0);
    ck_assert_int_eq(mcpauth__redis_session_bind(a, keep, "alice", 1), 0);
    ck_assert_int_eq(mcpauth__redis_session_check(a, keep, "alice", 5), MCPAUTH_SESSION_OWNER);
    sleep_ms(2200);
    ck_assert_int_eq(mcpauth__redis_session_check(a, id, "alice", 1), MCPAUTH_SESSION_UNKNOWN);
    ck_assert_int_eq(mcpauth__redis_session_check(a, keep, "alice", 5), MCPAUTH_SESSION_OWNER);
    mcpauth__redis_close(a);
}
END_TEST

/* ------------------------------------------------------------ revocations */

static void digest_of(const char *s, unsigned char d[32])
{
    memset(d, 0, 32);
    for (size_t i = 0; s[i]; i++)
        d[i % 32] = (unsigned char)(d[i % 32] * 31 + (unsigned char)s[i]);
    unsigned char r[8];
    ck_assert_int_eq(RAND_bytes(r, sizeof r), 1);
    memcpy(d + 24, r, 8);
}

/* The AS (a writer opened from the configuration) on one host, the gate
 * (a reader) on another: the reader refuses the token within a second. */
START_TEST(revoked_seen_elsewhere_within_1s)
{
    mcpauth_config *cfg = conf_for(url, 250);
    char err[256] = "";
    mcpauth__revoked *w = mcpauth__revoked_open(cfg, 1, err, sizeof err);
    ck_assert_msg(w != NULL, "%s", err);
    mcpauth__revoked *r = mcpauth__revoked_open(cfg, 0, err, sizeof err);
    ck_assert_msg(r != NULL && !err[0], "%s", err);
    ck_assert(mcpauth__revoked_is_redis(w) && mcpauth__revoked_is_redis(r));
    unsigned char d[32], other[32], old[32];
    digest_of("token", d);
    digest_of("other", other);
    digest_of("old", old);
    time_t now = time(NULL);
    ck_assert_int_eq(mcpauth__revoked_has(r, d, now), 0); /* mirror loaded */
    uint64_t g0 = mcpauth__revoked_generation(r);
    ck_assert_int_eq(mcpauth__revoked_add(w, d, now + 3600, now), 0);
    double t0 = mono();
    int seen = 0;
    while (mono() - t0 < 1.0 && !(seen = mcpauth__revoked_has(r, d, time(NULL)) == 1))
        sleep_ms(20);
    ck_assert_msg(seen, "a revocation took more than 1 s to reach another handle");
    ck_assert_uint_gt(mcpauth__revoked_generation(r), g0);
    ck_assert_int_eq(mcpauth__revoked_has(r, other, time(NULL)), 0);
    /* an entry outlives its token by the largest leeway (600 s), then goes */
    ck_assert_int_eq(mcpauth__revoked_add(w, old, now - 700, now), 0);
    sleep_ms(MCPAUTH__REDIS_MIRROR_MS + 50);
    ck_assert_int_eq(mcpauth__revoked_has(r, old, time(NULL)), 0);
    ck_assert_int_eq(mcpauth__revoked_has(r, d, now + 3600 + 599), 1);
    /* a reader cannot write */
    ck_assert_int_eq(mcpauth__revoked_add(r, other, now + 60, now), -1);
    mcpauth__revoked_close(r);
    mcpauth__revoked_close(w);
    mcpauth_config_free(cfg);
}
END_TEST

/* Entries are pruned by Redis's clock with a margin, not by the writing
 * host's: a host whose clock runs ahead does not drop an entry a host whose
 * clock runs behind still needs. */
START_TEST(revoked_pruned_by_redis_clock)
{
    mcpauth_config *cfg = conf_for(url, 250);
    char err[256] = "";
    mcpauth__revoked *w = mcpauth__revoked_open(cfg, 1, err, sizeof err);
    ck_assert_msg(w != NULL, "%s", err);
    unsigned char recent[32], trigger[32];
    digest_of("recent", recent);
    digest_of("trigger", trigger);
    time_t now = time(NULL);
    /* kept until now - 100 (exp + 600 s of leeway) */
    ck_assert_int_eq(mcpauth__revoked_add(w, recent, now - 700, now), 0);
    /* another add prunes the set: by the writer's clock the first entry
     * would go now (its time is past), by Redis's less the margin not */
    ck_assert_int_eq(mcpauth__revoked_add(w, trigger, now + 3600, now + 600), 0);
    /* a reader whose clock is 200 s behind still finds the first one */
    mcpauth__revoked *r = mcpauth__revoked_open(cfg, 0, err, sizeof err);
    ck_assert_int_eq(mcpauth__revoked_has(r, recent, now - 200), 1);
    mcpauth__revoked_close(r);
    mcpauth__revoked_close(w);
    mcpauth_config_free(cfg);
}
END_TEST

/* -------------------------------------------------------------- outages */

/* Redis stopped: every call says unavailable within the timeout (the first
 * one) and at once after it (back-off); the revoked mirror is trusted for
 * at most a second, then fails closed; restarted: everything recovers by
 * itself, sessions and revocations included (they were in memory only, so
 * a restart loses them: the binding is unknown again). */
START_TEST(outage_and_recovery)
{
    char sdir[200];
    snprintf(sdir, sizeof sdir, "%s/redis", dir);
    pid_t pid = redistest_spawn(sdir, PORT_OUTAGE);
    ck_assert_msg(pid > 0, "redis-server on %d did not start", PORT_OUTAGE);
    char u[64];
    snprintf(u, sizeof u, "redis://127.0.0.1:%d", PORT_OUTAGE);
    mcpauth_config *cfg = conf_for(u, 200);
    char err[256] = "";
    mcpauth__revoked *rv = mcpauth__revoked_open(cfg, 0, err, sizeof err);
    mcpauth__redis *r = redis_at(u, 200);
    unsigned char d[32];
    digest_of("outage", d);
    ck_assert_int_eq(mcpauth__redis_rate(r, "k", 1, 1, 5, 1000.0, NULL), 1);
    ck_assert_int_eq(mcpauth__redis_session_bind(r, "s1", "alice", 60), 0);
    ck_assert_int_eq(mcpauth__revoked_has(rv, d, time(NULL)), 0);

    redistest_kill(pid);
    double t0 = mono();
    int retry = 0;
    ck_assert_int_eq(mcpauth__redis_rate(r, "k", 1, 1, 5, 1000.0, &retry),
                     MCPAUTH__STATE_UNAVAILABLE);
    ck_assert_int_ge(retry, 1);
    ck_assert_msg(mono() - t0 < 0.6, "first failure took %.3f s", mono() - t0);
    t0 = mono();
    for (int i = 0; i < 100; i++) {
        ck_assert_int_eq(mcpauth__redis_session_check(r, "s1", "alice", 60),
                         MCPAUTH__STATE_UNAVAILABLE);
        ck_assert_int_eq(mcpauth__redis_session_bind(r, "s2", "alice", 60),
                         MCPAUTH__STATE_UNAVAILABLE);
        ck_assert_int_eq(mcpauth__redis_session_remove(r, "s1"), MCPAUTH__STATE_UNAVAILABLE);
    }
    ck_assert_msg(mono() - t0 < 0.5, "300 calls during an outage took %.3f s", mono() - t0);
    /* the mirror: still trusted just after, refused once it is a second old */
    double t1 = mono();
    int rc;
    while ((rc = mcpauth__revoked_has(rv, d, time(NULL))) == 0 && mono() - t1 < 3)
        sleep_ms(50);
    ck_assert_int_eq(rc, -1);
    ck_assert_msg(mono() - t1 <= (MCPAUTH__REDIS_MIRROR_MAX_MS + 700) / 1000.0,
                  "stale mirror trusted for %.3f s", mono() - t1);

    pid = redistest_spawn(sdir, PORT_OUTAGE);
    ck_assert_msg(pid > 0, "redis-server on %d did not restart", PORT_OUTAGE);
    t0 = mono();
    while (mcpauth__redis_rate(r, "k", 1, 1, 5, 1000.0, NULL) != 1 && mono() - t0 < 3)
        sleep_ms(50);
    ck_assert_msg(mono() - t0 < 2.0, "no recovery within %.3f s", mono() - t0);
    ck_assert_int_eq(mcpauth__redis_session_check(r, "s1", "alice", 60), MCPAUTH_SESSION_UNKNOWN);
    ck_assert_int_eq(mcpauth__redis_session_bind(r, "s1", "alice", 60), 0);
    while ((rc = mcpauth__revoked_has(rv, d, time(NULL))) != 0 && mono() - t0 < 3)
        sleep_ms(50);
    ck_assert_int_eq(rc, 0);
    mcpauth__redis_close(r);
    mcpauth__revoked_close(rv);
    mcpauth_config_free(cfg);
    redistest_kill(pid);
}
END_TEST

/* A server that accepts but never answers (stopped with SIGSTOP): each
 * call ends within the timeout, never hangs; answering again, it serves. */
START_TEST(frozen_server_times_out)
{
    char sdir[200];
    snprintf(sdir, sizeof sdir, "%s/redis", dir);
    pid_t pid = redistest_spawn(sdir, PORT_FROZEN);
    ck_assert_msg(pid > 0, "redis-server on %d did not start", PORT_FROZEN);
    char u[64];
    snprintf(u, sizeof u, "redis://127.0.0.1:%d", PORT_FROZEN);
    mcpauth__redis *r = redis_at(u, 100);
    ck_assert_int_eq(mcpauth__redis_session_bind(r, "f1", "alice", 60), 0);
    kill(pid, SIGSTOP);
    double t0 = mono();
    ck_assert_int_eq(mcpauth__redis_session_check(r, "f1", "alice", 60),
                     MCPAUTH__STATE_UNAVAILABLE);
    double took = mono() - t0;
    /* a pooled connection times out (100 ms); a new connect could too */
    ck_assert_msg(took < 0.45, "a frozen server held a call for %.3f s", took);
    t0 = mono();
    ck_assert_int_eq(mcpauth__redis_session_check(r, "f1", "alice", 60),
                     MCPAUTH__STATE_UNAVAILABLE);
    ck_assert_msg(mono() - t0 < 0.05, "the back-off did not answer at once");
    kill(pid, SIGCONT);
    t0 = mono();
    int m;
    while ((m = mcpauth__redis_session_check(r, "f1", "alice", 60)) != MCPAUTH_SESSION_OWNER &&
           mono() - t0 < 3)
        sleep_ms(50);
    ck_assert_int_eq(m, MCPAUTH_SESSION_OWNER);
    mcpauth__redis_close(r);
    redistest_kill(pid);
}
END_TEST

/* Redis down from the start: the writer and the reader still open (the
 * AS, gate and proxy start), the reader says "cannot tell" (the validator
 * fails closed), the writer's add fails (the AS logs it). */
START_TEST(revoked_redis_down_from_start)
{
    char u[64];
    snprintf(u, sizeof u, "redis://127.0.0.1:%d", PORT_REVOKED);
    ck_assert(!redistest_ping(PORT_REVOKED, 100));
    mcpauth_config *cfg = conf_for(u, 100);
    char err[256] = "";
    mcpauth__revoked *w = mcpauth__revoked_open(cfg, 1, err, sizeof err);
    ck_assert_msg(w != NULL, "%s", err);
    mcpauth__revoked *r = mcpauth__revoked_open(cfg, 0, err, sizeof err);
    ck_assert_ptr_nonnull(r);
    unsigned char d[32];
    digest_of("down", d);
    time_t now = time(NULL);
    ck_assert_int_eq(mcpauth__revoked_has(r, d, now), -1);
    ck_assert_int_eq(mcpauth__revoked_add(w, d, now + 60, now), -1);
    mcpauth__revoked_close(r);
    mcpauth__revoked_close(w);
    mcpauth_config_free(cfg);
}
END_TEST

/* Redis restarted without persistence loses the set: a process that knew a
 * revocation keeps refusing it (the epoch changed), and still learns the
 * revocations added after the restart, even when the generation counter
 * came back to the same number. */
START_TEST(revoked_survive_redis_restart)
{
    char sdir[200], u[64];
    snprintf(sdir, sizeof sdir, "%s/redis", dir);
    snprintf(u, sizeof u, "redis://127.0.0.1:%d", PORT_LOST);
    pid_t pid = redistest_spawn(sdir, PORT_LOST);
    ck_assert_msg(pid > 0, "redis-server on %d did not start", PORT_LOST);
    mcpauth_config *cfg = conf_for(u, 200);
    char err[256] = "";
    mcpauth__revoked *w = mcpauth__revoked_open(cfg, 1, err, sizeof err);
    mcpauth__revoked *r = mcpauth__revoked_open(cfg, 0, err, sizeof err);
    ck_assert_ptr_nonnull(w);
    ck_assert_ptr_nonnull(r);
    unsigned char a[32], b[32];
    digest_of("before", a);
    digest_of("after", b);
    time_t now = time(NULL);
    ck_assert_int_eq(mcpauth__revoked_add(w, a, now + 3600, now), 0); /* generation 1 */
    ck_assert_int_eq(mcpauth__revoked_has(r, a, now), 1);
    redistest_kill(pid);
    pid = redistest_spawn(sdir, PORT_LOST);
    ck_assert_msg(pid > 0, "redis-server on %d did not restart", PORT_LOST);
    double t0 = mono();
    int rc;
    while ((rc = mcpauth__revoked_add(w, b, now + 3600, now)) != 0 && mono() - t0 < 3)
        sleep_ms(50); /* generation 1 again, in a new epoch */
    ck_assert_int_eq(rc, 0);
    t0 = mono();
    while (mcpauth__revoked_has(r, b, time(NULL)) != 1 && mono() - t0 < 3)
        sleep_ms(50);
    ck_assert_msg(mono() - t0 < 1.5, "a revocation after the restart took %.2f s", mono() - t0);
    ck_assert_int_eq(mcpauth__revoked_has(r, b, time(NULL)), 1);
    ck_assert_int_eq(mcpauth__revoked_has(r, a, time(NULL)), 1);
    /* a process started after the restart cannot know a: documented */
    mcpauth__revoked *fresh_reader = mcpauth__revoked_open(cfg, 0, err, sizeof err);
    ck_assert_int_eq(mcpauth__revoked_has(fresh_reader, a, time(NULL)), 0);
    mcpauth__revoked_close(fresh_reader);
    mcpauth__revoked_close(r);
    mcpauth__revoked_close(w);
    mcpauth_config_free(cfg);
    redistest_kill(pid);
}
END_TEST

/* Redis down while revocations are synced from the store: the sync says
 * so (-1, with the count pending) instead of reporting success, the rows
 * stay pending, and the first sync after Redis is back pushes them: the
 * token is refused everywhere. */
START_TEST(revoked_sync_pending_while_down)
{
    char sdir[200], u[64], err[256] = "";
    snprintf(sdir, sizeof sdir, "%s/redis", dir);
    snprintf(u, sizeof u, "redis://127.0.0.1:%d", PORT_PENDING);
    pid_t pid = redistest_spawn(sdir, PORT_PENDING);
    ck_assert_msg(pid > 0, "redis-server on %d did not start", PORT_PENDING);
    mcpauth_config *cfg = conf_for(u, 200);
    mcpauth__revoked *w = mcpauth__revoked_open(cfg, 1, err, sizeof err);
    mcpauth__revoked *r = mcpauth__revoked_open(cfg, 0, err, sizeof err);
    ck_assert_ptr_nonnull(w);
    ck_assert_ptr_nonnull(r);
    mcpauth_store *s = mcpauth__store_open(dir, NULL, err, sizeof err);
    ck_assert_msg(s != NULL, "%s", err);
    time_t now = time(NULL);
    mcpauth_client c = {0};
    c.client_id = "app";
    c.client_name = "App";
    c.redirect_uris = "[\"https://app.example/cb\"]";
    c.grant_types = "authorization_code refresh_token";
    c.token_endpoint_auth_method = "none";
    c.kind = "dcr";
    c.registered_by = "192.0.2.1";
    c.created = now;
    ck_assert_int_eq(mcpauth__store_client_add(s, &c, NULL), 0);
    mcpauth_grant g = {0};
    g.family = "fam1";
    g.user = "alice";
    g.client_id = "app";
    g.resource = "https://mcp.example/";
    g.scope = "read";
    g.redirect_uri = "https://app.example/cb";
    g.code_challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    g.expires = now + 600;
    ck_assert_int_eq(mcpauth__store_code_add(s, "code1", &g), 0);
    ck_assert_int_eq(mcpauth__store_access_add(s, "at-pending", "fam1", now + 300), 1);
    long pending = -1;
    ck_assert_int_eq(mcpauth__revoked_sync(w, s, now, &pending), 0);
    ck_assert_int_eq(pending, 0);
    char h[65];
    unsigned char d[32];
    mcpauth__sha256_hex("at-pending", 10, h);
    for (int i = 0; i < 32; i++) {
        unsigned v;
        ck_assert_int_eq(sscanf(h + 2 * i, "%2x", &v), 1);
        d[i] = (unsigned char)v;
    }
    ck_assert_int_eq(mcpauth__revoked_has(r, d, now), 0);

    redistest_kill(pid);
    ck_assert_int_eq(mcpauth__store_revoke_family(s, "fam1"), 1);
    ck_assert_int_eq(mcpauth__revoked_sync(w, s, now, &pending), -1);
    ck_assert_int_eq(pending, 1);
    /* still pending: offered (and refused) again, never dropped */
    ck_assert_int_eq(mcpauth__revoked_sync(w, s, now, &pending), -1);
    ck_assert_int_eq(pending, 1);

    pid = redistest_spawn(sdir, PORT_PENDING);
    ck_assert_msg(pid > 0, "redis-server on %d did not restart", PORT_PENDING);
    double t0 = mono();
    long added;
    while ((added = mcpauth__revoked_sync(w, s, time(NULL), &pending)) < 0 && mono() - t0 < 3)
        sleep_ms(50);
    ck_assert_int_eq(added, 1);
    ck_assert_int_eq(pending, 0);
    t0 = mono();
    while (mcpauth__revoked_has(r, d, time(NULL)) != 1 && mono() - t0 < 3)
        sleep_ms(50);
    ck_assert_int_eq(mcpauth__revoked_has(r, d, time(NULL)), 1);
    ck_assert_int_eq(mcpauth__revoked_sync(w, s, time(NULL), &pending), 0); /* nothing left */
    mcpauth__store_close(s);
    mcpauth__revoked_close(r);
    mcpauth__revoked_close(w);
    mcpauth_config_free(cfg);
    redistest_kill(pid);
}
END_TEST

/* One command on 127.0.0.1:port; its integer answer (-1: none). */
static long long raw_cmd(int port, const char *fmt, const char *arg)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    ck_assert_msg(c && !c->err, "connect to %d", port);
    redisReply *x = redisCommand(c, fmt, arg);
    long long v = x && x->type == REDIS_REPLY_INTEGER ? x->integer
                  : x && x->type == REDIS_REPLY_STRING ? (long long)strtod(x->str, NULL) : -1;
    if (x)
        freeReplyObject(x);
    redisFree(c);
    return v;
}

/* The set evicted alone (maxmemory-policy allkeys-*), its epoch and
 * generation kept: the next add starts a new epoch, so a running reader
 * takes the set as lost and keeps refusing what it knew, instead of
 * loading the set without it.  Entries all expired never empty the set
 * (its sentinel stays), so that is not taken for a loss. */
START_TEST(revoked_set_evicted_alone)
{
    char sdir[200], u[64], err[256] = "";
    snprintf(sdir, sizeof sdir, "%s/redis", dir);
    snprintf(u, sizeof u, "redis://127.0.0.1:%d", PORT_EVICT);
    pid_t pid = redistest_spawn(sdir, PORT_EVICT);
    ck_assert_msg(pid > 0, "redis-server on %d did not start", PORT_EVICT);
    mcpauth_config *cfg = conf_for(u, 200);
    mcpauth__revoked *w = mcpauth__revoked_open(cfg, 1, err, sizeof err);
    mcpauth__revoked *r = mcpauth__revoked_open(cfg, 0, err, sizeof err);
    ck_assert_ptr_nonnull(w);
    ck_assert_ptr_nonnull(r);
    unsigned char a[32], b[32], gone[32];
    digest_of("known", a);
    digest_of("later", b);
    digest_of("gone", gone);
    time_t now = time(NULL);
    /* an entry long expired is pruned at once: the set stays (sentinel) */
    ck_assert_int_eq(mcpauth__revoked_add(w, gone, now - 3000, now), 0);
    ck_assert_int_eq(raw_cmd(PORT_EVICT, "EXISTS %s", "mcpauth:revoked"), 1);
    ck_assert_int_eq(raw_cmd(PORT_EVICT, "ZCARD %s", "mcpauth:revoked"), 1);
    ck_assert_int_eq(mcpauth__revoked_add(w, a, now + 3600, now), 0);
    ck_assert_int_eq(mcpauth__revoked_has(r, a, now), 1);
    uint64_t g = mcpauth__revoked_generation(r);

    ck_assert_int_eq(raw_cmd(PORT_EVICT, "DEL %s", "mcpauth:revoked"), 1);
    ck_assert_int_eq(mcpauth__revoked_add(w, b, now + 3600, now), 0);
    double t0 = mono();
    while (mcpauth__revoked_has(r, b, time(NULL)) != 1 && mono() - t0 < 3)
        sleep_ms(50);
    ck_assert_int_eq(mcpauth__revoked_has(r, b, time(NULL)), 1);
    ck_assert_uint_gt(mcpauth__revoked_generation(r), g);
    ck_assert_msg(mcpauth__revoked_has(r, a, time(NULL)) == 1,
                  "a revocation lost with the evicted set passed again");
    mcpauth__revoked_close(r);
    mcpauth__revoked_close(w);
    mcpauth_config_free(cfg);
    redistest_kill(pid);
}
END_TEST

/* The metric has its family and label per failure kind. */
START_TEST(metric_rendered)
{
    mcpauth_config *cfg = conf_for("shm", 250);
    char path[200], err[256] = "";
    snprintf(path, sizeof path, "%s/metrics.shm", dir);
    mcpauth__metrics *m = mcpauth__metrics_open(path, cfg, err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    mcpauth__metrics_add_to(m, NULL, MCPAUTH_M_SHARED_STATE_ERRORS + MCPAUTH__SS_SESSION, 2);
    mcpauth__metrics_add_to(m, NULL, MCPAUTH_M_SHARED_STATE_ERRORS + MCPAUTH__SS_REVOKED, 1);
    size_t len;
    char *text = mcpauth__metrics_render(m, &len);
    ck_assert_ptr_nonnull(strstr(text, "# TYPE mcpauth_shared_state_errors_total counter"));
    ck_assert_ptr_nonnull(strstr(text, "mcpauth_shared_state_errors_total{op=\"session\"} 2"));
    ck_assert_ptr_nonnull(strstr(text, "mcpauth_shared_state_errors_total{op=\"revoked\"} 1"));
    ck_assert_ptr_nonnull(strstr(text, "mcpauth_shared_state_errors_total{op=\"rate\"} 0"));
    free(text);
    mcpauth__metrics_close(m);
    mcpauth_config_free(cfg);
}
END_TEST

Suite *state_suite(void)
{
    Suite *s = suite_create("state");
    TCase *tc = tcase_create("state");
    tcase_add_unchecked_fixture(tc, suite_setup, scratch_suite_teardown);
    tcase_add_checked_fixture(tc, setup, scratch_teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, urls);
    tcase_add_test(tc, urls_password_masked);
    tcase_add_test(tc, same_answers_shm);
    tcase_add_test(tc, same_answers_redis);
    tcase_add_test(tc, bad_address_refused_at_open);
    tcase_add_test(tc, rate_atomic_across_handles);
    tcase_add_test(tc, rate_clock_skew);
    tcase_add_test(tc, session_across_handles);
    tcase_add_test(tc, session_ttl);
    tcase_add_test(tc, revoked_seen_elsewhere_within_1s);
    tcase_add_test(tc, revoked_pruned_by_redis_clock);
    tcase_add_test(tc, outage_and_recovery);
    tcase_add_test(tc, frozen_server_times_out);
    tcase_add_test(tc, revoked_redis_down_from_start);
    tcase_add_test(tc, revoked_survive_redis_restart);
    tcase_add_test(tc, revoked_sync_pending_while_down);
    tcase_add_test(tc, revoked_set_evicted_alone);
    tcase_add_test(tc, metric_rendered);
    suite_add_tcase(s, tc);
    return s;
}
