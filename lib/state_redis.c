/* The shared state in Redis (see state.h), through hiredis (no TLS).
 *
 * Connections: a pool per handle.  A call pops an idle connection under
 * the pool mutex (no I/O under it), uses it for one command and pushes it
 * back; with none idle it connects, outside any lock.  So the threads of a
 * FastCGI program never wait on each other's round trips, and each connect
 * and command is bounded by shared_state_timeout (hiredis timeouts).
 * A connection made in another process (a fork) is dropped, not used.
 *
 * Outages: a failed connect or command marks the handle down for a
 * back-off (100 ms doubling to 1 s); meanwhile every call answers
 * MCPAUTH__STATE_UNAVAILABLE at once, and after it exactly one caller
 * probes (the others still answer at once), so an outage costs neither a
 * connect timeout per request nor a thundering herd on recovery.  A pooled
 * connection found closed (Redis restarted: EOF, or a reset when sending)
 * is retried once on a fresh one; TCP keepalive finds idle ones whose peer
 * is gone.
 *
 * Atomicity: rate limits, session binds and checks, and revocations are
 * Lua scripts run inside Redis (EVALSHA, EVAL when the server does not
 * know the script yet). */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "state.h"

/* ------------------------------------------------------------ addresses */

/* Built with or without hiredis: the configuration checks the address. */

typedef struct {
    char *host; /* NULL: unix socket */
    int port;
    char *path;
    char *user, *password;
    long db;
} redis_addr;

static void addr_free(redis_addr *a)
{
    free(a->host);
    free(a->path);
    free(a->user);
    if (a->password)
        memset(a->password, 0, strlen(a->password));
    free(a->password);
    memset(a, 0, sizeof *a);
}

void mcpauth__redis_mask(const char *url, char *buf, size_t cap)
{
    if (!cap)
        return;
    if (!url) {
        snprintf(buf, cap, "(none)");
        return;
    }
    /* everything up to the last '@' may be a password (parse_url takes the
     * last one too): only the scheme is kept */
    const char *at = strrchr(url, '@');
    if (!at) {
        snprintf(buf, cap, "%s", url);
        return;
    }
    const char *sep = strstr(url, "://");
    int keep = sep && sep < at ? (int)(sep + 3 - url) : 0;
    snprintf(buf, cap, "%.*s***%s", keep, url, at);
}

/* Decimal digits only, within [lo, hi] (hi below LONG_MAX / 10: no
 * overflow even where long has 32 bits). */
static int parse_long(const char *s, size_t n, long lo, long hi, long *out)
{
    if (n == 0)
        return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
        if (v > hi)
            return -1;
    }
    if (v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_url(redis_addr *r, const char *url, char *err, size_t errlen)
{
    /* every message names the address masked: never the password */
    char shown[300];
    mcpauth__redis_mask(url, shown, sizeof shown);
    memset(r, 0, sizeof *r);
    if (!strncmp(url, "unix:", 5)) {
        const char *p = url + 5, *q = strchr(p, '?');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        if (n < 2 || p[0] != '/') {
            snprintf(err, errlen, "%s: a unix socket needs an absolute path", shown);
            return -1;
        }
        r->path = mcpauth__xstrndup(p, n);
        if (q && (strncmp(q, "?db=", 4) != 0 ||
                  parse_long(q + 4, strlen(q + 4), 0, 1000000, &r->db) < 0)) {
            snprintf(err, errlen, "%s: only ?db=N may follow the path", shown);
            return -1;
        }
        return 0;
    }
    if (strncmp(url, "redis://", 8) != 0) {
        snprintf(err, errlen, "%s: not redis:// or unix:/", shown);
        return -1;
    }
    const char *p = url + 8, *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon) {
            snprintf(err, errlen, "%s: credentials must be [USER]:PASSWORD@", shown);
            return -1;
        }
        if (colon > p)
            r->user = mcpauth__xstrndup(p, (size_t)(colon - p));
        r->password = mcpauth__xstrndup(colon + 1, (size_t)(at - colon - 1));
        p = at + 1;
    }
    const char *hend;
    if (*p == '[') {
        hend = strchr(p, ']');
        if (!hend) {
            snprintf(err, errlen, "%s: unclosed [", shown);
            return -1;
        }
        r->host = mcpauth__xstrndup(p + 1, (size_t)(hend - p - 1));
        hend++;
    } else {
        hend = p + strcspn(p, ":/");
        r->host = mcpauth__xstrndup(p, (size_t)(hend - p));
    }
    if (!r->host[0]) {
        snprintf(err, errlen, "%s: no host", shown);
        return -1;
    }
    r->port = 6379;
    const char *rest = hend;
    if (*rest == ':') {
        long port;
        size_t n = strcspn(rest + 1, "/");
        if (parse_long(rest + 1, n, 1, 65535, &port) < 0) {
            snprintf(err, errlen, "%s: bad port", shown);
            return -1;
        }
        r->port = (int)port;
        rest += 1 + n;
    }
    if (*rest == '/' && rest[1] && parse_long(rest + 1, strlen(rest + 1), 0, 1000000, &r->db) < 0) {
        snprintf(err, errlen, "%s: the database must be a number from 0 to 1000000", shown);
        return -1;
    } else if (*rest && strcmp(rest, "/") != 0 && *rest != '/') {
        snprintf(err, errlen, "%s: unexpected \"%s\"", shown, rest);
        return -1;
    }
    return 0;
}

int mcpauth__redis_check_url(const char *url, char *err, size_t errlen)
{
    redis_addr a;
    if (!url) {
        snprintf(err, errlen, "no Redis address");
        return -1;
    }
    int rc = parse_url(&a, url, err, errlen);
    addr_free(&a);
    return rc;
}

#ifndef HAVE_HIREDIS

mcpauth__redis *mcpauth__redis_open(const char *url, long timeout_ms, char *err, size_t errlen)
{
    (void)url;
    (void)timeout_ms;
    snprintf(err, errlen, "this build has no Redis support (configure --with-redis)");
    return NULL;
}
void mcpauth__redis_close(mcpauth__redis *r) { (void)r; }
int mcpauth__redis_rate(mcpauth__redis *r, const void *key, size_t keylen, double rate,
                        double burst, double now, int *retry_after)
{
    (void)r; (void)key; (void)keylen; (void)rate; (void)burst; (void)now;
    if (retry_after)
        *retry_after = 1;
    return MCPAUTH__STATE_UNAVAILABLE;
}
int mcpauth__redis_session_bind(mcpauth__redis *r, const char *id, const char *owner, long ttl)
{
    (void)r; (void)id; (void)owner; (void)ttl;
    return MCPAUTH__STATE_UNAVAILABLE;
}
int mcpauth__redis_session_check(mcpauth__redis *r, const char *id, const char *owner, long ext)
{
    (void)r; (void)id; (void)owner; (void)ext;
    return MCPAUTH__STATE_UNAVAILABLE;
}
int mcpauth__redis_session_remove(mcpauth__redis *r, const char *id)
{
    (void)r; (void)id;
    return MCPAUTH__STATE_UNAVAILABLE;
}
int mcpauth__redis_revoked_add(mcpauth__redis *r, const unsigned char digest[32], time_t until)
{
    (void)r; (void)digest; (void)until;
    return MCPAUTH__STATE_UNAVAILABLE;
}
int mcpauth__redis_revoked_has(mcpauth__redis *r, const unsigned char digest[32], time_t now)
{
    (void)r; (void)digest; (void)now;
    return MCPAUTH__STATE_UNAVAILABLE;
}
uint64_t mcpauth__redis_revoked_generation(mcpauth__redis *r)
{
    (void)r;
    return 0;
}

#else /* HAVE_HIREDIS */

#include <limits.h>
#include <pthread.h>
#include <sys/time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <mcpauth/log.h>

#include "alloc.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 1000
#define LOG_EVERY_MS 10000

/* Entries outlive their expiry this long by Redis's clock: room for hosts
 * whose clocks run behind it. */
#define PRUNE_MARGIN 300

#define K_REVOKED "mcpauth:revoked"
#define K_REVOKED_GEN "mcpauth:revoked:gen"
#define K_REVOKED_EPOCH "mcpauth:revoked:epoch" /* random, set with the first add */

/* ------------------------------------------------------------- scripts */

typedef struct {
    const char *body;
    char sha[41];
} script;

/* KEYS[1] bucket; ARGV rate, burst, now.  {allowed, tokens left}.  The
 * key expires when the bucket would be full again anyway. */
static script s_rate = {
    "local r=tonumber(ARGV[1]) local b=tonumber(ARGV[2]) local now=tonumber(ARGV[3])\n"
    "local v=redis.call('HMGET',KEYS[1],'t','ts')\n"
    "local t=tonumber(v[1]) local ts=tonumber(v[2])\n"
    "if t==nil or ts==nil or t~=t or ts~=ts then t=b ts=now end\n"
    "if t<0 then t=0 end\n"
    "if now<ts-1 then ts=now end\n"
    "if now>ts then t=t+(now-ts)*r ts=now end\n"
    "if t>b then t=b end\n"
    "local ok=0\n"
    "if t>=1 then t=t-1 ok=1 end\n"
    "redis.call('HMSET',KEYS[1],'t',string.format('%.17g',t),'ts',string.format('%.17g',ts))\n"
    "redis.call('PEXPIRE',KEYS[1],math.ceil(b/r*1000)+1000)\n"
    "return {ok,string.format('%.17g',t)}\n",
    ""};

/* KEYS[1] session; ARGV owner, ttl.  0 bound, -1 someone else's. */
static script s_bind = {
    "local cur=redis.call('GET',KEYS[1])\n"
    "if cur and cur~=ARGV[1] then return -1 end\n"
    "redis.call('SET',KEYS[1],ARGV[1],'EX',ARGV[2])\n"
    "return 0\n",
    ""};

/* KEYS[1] session; ARGV owner, ttl.  0 unknown, 1 owner (extended), 2 other. */
static script s_check = {
    "local cur=redis.call('GET',KEYS[1])\n"
    "if not cur then return 0 end\n"
    "if cur~=ARGV[1] then return 2 end\n"
    "if redis.call('TTL',KEYS[1])<tonumber(ARGV[2]) then redis.call('EXPIRE',KEYS[1],ARGV[2]) end\n"
    "return 1\n",
    ""};

/* KEYS set, generation, epoch; ARGV hex digest, until, margin (seconds), a
 * fresh epoch.  The new generation.  The epoch tells a set lost (Redis
 * restarted without persistence) from one that merely came back to the
 * same count.  The set holds a sentinel member ("epoch:E", never pruned),
 * so it is never empty: a set missing while the epoch is there was lost
 * alone (evicted under an allkeys-* maxmemory-policy, deleted) and gets a
 * new epoch, which every reader takes as lost (mirror_refresh).  Entries
 * are pruned by Redis's clock less the margin, not by the writing host's:
 * a host whose clock runs ahead must not drop what the others still need.
 * (TIME is not deterministic: effects replication.) */
static script s_revoke = {
    "redis.replicate_commands()\n"
    "local e=redis.call('GET',KEYS[3])\n"
    "if (not e) or redis.call('EXISTS',KEYS[1])==0 then e=ARGV[4] redis.call('SET',KEYS[3],e) end\n"
    "redis.call('ZADD',KEYS[1],'+inf','epoch:'..e)\n"
    "local s=redis.call('ZSCORE',KEYS[1],ARGV[1])\n"
    "if (not s) or tonumber(s)<tonumber(ARGV[2]) then redis.call('ZADD',KEYS[1],ARGV[2],ARGV[1]) end\n"
    "local t=redis.call('TIME')\n"
    "redis.call('ZREMRANGEBYSCORE',KEYS[1],'-inf','('..(tonumber(t[1])-tonumber(ARGV[3])))\n"
    "return redis.call('INCR',KEYS[2])\n",
    ""};

/* KEYS set, generation, epoch; ARGV "epoch/generation" known, now.
 * {"epoch/generation"} when unchanged, else with {member, score, ...} of
 * the live entries. */
static script s_mirror = {
    "local t=(redis.call('GET',KEYS[3]) or '')..'/'..(redis.call('GET',KEYS[2]) or '0')\n"
    "if t==ARGV[1] then return {t} end\n"
    "return {t,redis.call('ZRANGEBYSCORE',KEYS[1],'('..ARGV[2],'+inf','WITHSCORES')}\n",
    ""};

/* KEYS[1] session.  A plain DEL, as a script so it shares run(). */
static script s_del = {"redis.call('DEL',KEYS[1]) return 0\n", ""};

static pthread_once_t scripts_once = PTHREAD_ONCE_INIT;

static void hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static void scripts_init(void)
{
    script *all[] = {&s_rate, &s_bind, &s_check, &s_revoke, &s_mirror, &s_del};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        unsigned char md[20];
        unsigned int n = 0;
        if (EVP_Digest(all[i]->body, strlen(all[i]->body), md, &n, EVP_sha1(), NULL) == 1 &&
            n == 20)
            hex(md, 20, all[i]->sha);
        /* else sha stays "": EVALSHA fails with NOSCRIPT and EVAL follows */
    }
}

/* --------------------------------------------------------------- handle */

typedef struct conn {
    redisContext *c;
    pid_t pid;
    struct conn *next;
} conn;

typedef struct {
    unsigned char d[32];
    int64_t until;
} entry;

struct mcpauth__redis {
    char *host;       /* NULL: unix socket */
    int port;
    char *path;
    char *user, *password;
    long db;
    struct timeval tv;
    long timeout_ms;

    pthread_mutex_t mu; /* the pool and the outage bookkeeping; never held over I/O */
    conn *idle;
    int down;         /* written under mu, read without it by mark_up */
    int64_t down_until, backoff, last_log;
    unsigned long failures; /* since the last log line */

    /* the mirror of the revoked set */
    pthread_rwlock_t mlock;     /* guards m, mn (readers: one binary search) */
    pthread_mutex_t refresh_mu; /* one refresher at a time; held over one round trip */
    entry *m;
    size_t mn;
    uint64_t mgen;              /* atomic: the generation part of mtoken */
    char mtoken[80];            /* "epoch/generation" last loaded; refresher only */
    int64_t mfetched;           /* atomic: monotonic ms of the last good check; 0 never */
    entry *carry;               /* known before Redis lost the set; refresher only */
    size_t ncarry;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

mcpauth__redis *mcpauth__redis_open(const char *url, long timeout_ms, char *err, size_t errlen)
{
    pthread_once(&scripts_once, scripts_init);
    mcpauth__redis *r = mcpauth__xcalloc(1, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->refresh_mu, NULL);
    pthread_rwlock_init(&r->mlock, NULL);
    if (timeout_ms < 1)
        timeout_ms = 250;
    r->timeout_ms = timeout_ms;
    r->tv.tv_sec = timeout_ms / 1000;
    r->tv.tv_usec = (timeout_ms % 1000) * 1000;
    redis_addr a;
    if (!url || parse_url(&a, url, err, errlen) < 0) {
        if (!url)
            snprintf(err, errlen, "no Redis address");
        else
            addr_free(&a);
        mcpauth__redis_close(r);
        return NULL;
    }
    r->host = a.host;
    r->port = a.port;
    r->path = a.path;
    r->user = a.user;
    r->password = a.password;
    r->db = a.db;
    return r;
}

static void conns_free(conn *c)
{
    while (c) {
        conn *next = c->next;
        /* another process's connection: closing our copy of the
         * descriptor sends nothing on it */
        redisFree(c->c);
        free(c);
        c = next;
    }
}

void mcpauth__redis_close(mcpauth__redis *r)
{
    if (!r)
        return;
    conns_free(r->idle);
    free(r->m);
    free(r->carry);
    pthread_rwlock_destroy(&r->mlock);
    pthread_mutex_destroy(&r->refresh_mu);
    pthread_mutex_destroy(&r->mu);
    free(r->host);
    free(r->path);
    free(r->user);
    if (r->password)
        memset(r->password, 0, strlen(r->password));
    free(r->password);
    free(r);
}

/* ------------------------------------------------------------ outages */

static void where(const mcpauth__redis *r, char *buf, size_t cap)
{
    if (r->path)
        snprintf(buf, cap, "unix:%s", r->path);
    else
        snprintf(buf, cap, "%s:%d", r->host, r->port);
}

/* A connect or command failed: down for a back-off, the pool (probably
 * dead too) dropped.  One log line when the outage starts, then at most one
 * every LOG_EVERY_MS with the count of failures meanwhile. */
static void mark_down(mcpauth__redis *r, const char *why)
{
    int64_t now = mono_ms();
    pthread_mutex_lock(&r->mu);
    conn *drop = r->idle;
    r->idle = NULL;
    r->backoff = r->backoff ? r->backoff * 2 : BACKOFF_MIN_MS;
    if (r->backoff > BACKOFF_MAX_MS)
        r->backoff = BACKOFF_MAX_MS;
    r->down_until = now + r->backoff;
    int first = !r->down;
    __atomic_store_n(&r->down, 1, __ATOMIC_RELEASE);
    r->failures++;
    int log = first || now - r->last_log >= LOG_EVERY_MS;
    unsigned long n = r->failures;
    if (log) {
        r->last_log = now;
        r->failures = 0;
    }
    pthread_mutex_unlock(&r->mu);
    conns_free(drop);
    if (log) {
        char at[300], count[32];
        where(r, at, sizeof at);
        snprintf(count, sizeof count, "%lu", n);
        mcpauth_log(MCPAUTH_LOG_ERROR, "shared_state_unavailable", "redis", at, "reason", why,
                    "failures", count, NULL);
    }
}

static void mark_up(mcpauth__redis *r)
{
    /* the common case costs no lock: down is only set under mu */
    if (!__atomic_load_n(&r->down, __ATOMIC_ACQUIRE))
        return;
    pthread_mutex_lock(&r->mu);
    int was = r->down;
    __atomic_store_n(&r->down, 0, __ATOMIC_RELEASE);
    r->backoff = 0;
    r->down_until = 0;
    pthread_mutex_unlock(&r->mu);
    if (was) {
        char at[300];
        where(r, at, sizeof at);
        mcpauth_log(MCPAUTH_LOG_INFO, "shared_state_recovered", "redis", at, NULL);
    }
}

/* ---------------------------------------------------------- connections */

static void reply_free(redisReply *x)
{
    if (x)
        freeReplyObject(x);
}

/* A fresh connection, authenticated and on its database; NULL (logged by
 * mark_down through the caller) with why set. */
static redisContext *dial(mcpauth__redis *r, char *why, size_t cap)
{
    redisContext *c = r->path ? redisConnectUnixWithTimeout(r->path, r->tv)
                              : redisConnectWithTimeout(r->host, r->port, r->tv);
    if (!c) {
        snprintf(why, cap, "out of memory");
        return NULL;
    }
    if (c->err) {
        snprintf(why, cap, "connect: %s", c->errstr);
        redisFree(c);
        return NULL;
    }
    if (redisSetTimeout(c, r->tv) != REDIS_OK) {
        snprintf(why, cap, "cannot set the timeout");
        redisFree(c);
        return NULL;
    }
    /* a pooled TCP connection whose peer vanished (host down, NAT or
     * firewall state gone) is found dead by the kernel, not by a request */
    if (!r->path && redisEnableKeepAlive(c) != REDIS_OK) {
        snprintf(why, cap, "keepalive: %s", c->errstr);
        redisFree(c);
        return NULL;
    }
    redisReply *x = NULL;
    int ok = 1;
    if (r->password) {
        const char *argv[3] = {"AUTH", r->user ? r->user : r->password, r->password};
        x = redisCommandArgv(c, r->user ? 3 : 2, argv, NULL);
        ok = x && x->type != REDIS_REPLY_ERROR;
        snprintf(why, cap, "AUTH: %s", x && x->type == REDIS_REPLY_ERROR ? x->str : c->errstr);
        reply_free(x);
    }
    if (ok && r->db) {
        char db[24];
        snprintf(db, sizeof db, "%ld", r->db);
        const char *argv[2] = {"SELECT", db};
        x = redisCommandArgv(c, 2, argv, NULL);
        ok = x && x->type != REDIS_REPLY_ERROR;
        snprintf(why, cap, "SELECT: %s", x && x->type == REDIS_REPLY_ERROR ? x->str : c->errstr);
        reply_free(x);
    }
    if (!ok) {
        redisFree(c);
        return NULL;
    }
    return c;
}

/* A connection to use, or NULL while down (unavailable at once).  *reused
 * says whether it came from the pool. */
static conn *take(mcpauth__redis *r, int *reused)
{
    int64_t now = mono_ms();
    pid_t pid = getpid();
    conn *c = NULL, *stale = NULL;
    pthread_mutex_lock(&r->mu);
    if (r->down) {
        if (now < r->down_until) {
            r->failures++;
            pthread_mutex_unlock(&r->mu);
            return NULL;
        }
        /* this caller probes; the others keep failing fast meanwhile */
        r->down_until = now + r->timeout_ms * 3 + r->backoff;
    }
    while (r->idle && !c) {
        conn *x = r->idle;
        r->idle = x->next;
        if (x->pid == pid) {
            c = x;
        } else {
            x->next = stale;
            stale = x;
        }
    }
    pthread_mutex_unlock(&r->mu);
    conns_free(stale);
    *reused = c != NULL;
    if (c)
        return c;
    char why[256];
    redisContext *rc = dial(r, why, sizeof why);
    if (!rc) {
        mark_down(r, why);
        return NULL;
    }
    c = mcpauth__xcalloc(1, sizeof *c);
    c->c = rc;
    c->pid = pid;
    return c;
}

static void give_back(mcpauth__redis *r, conn *c)
{
    pthread_mutex_lock(&r->mu);
    c->next = r->idle;
    r->idle = c;
    pthread_mutex_unlock(&r->mu);
}

/* Runs sc with the keys and args; the reply (caller frees) or NULL when
 * Redis could not be reached or answered an error (logged, marked down). */
static redisReply *run(mcpauth__redis *r, script *sc, int nkeys, const char *const *keys,
                       int nargs, const char *const *args)
{
    const char *argv[16];
    char nk[12];
    snprintf(nk, sizeof nk, "%d", nkeys);
    int argc = 0;
    argv[argc++] = "EVALSHA";
    argv[argc++] = sc->sha;
    argv[argc++] = nk;
    for (int i = 0; i < nkeys; i++)
        argv[argc++] = keys[i];
    for (int i = 0; i < nargs; i++)
        argv[argc++] = args[i];
    for (int attempt = 0; attempt < 2; attempt++) {
        int reused = 0;
        conn *c = take(r, &reused);
        if (!c)
            return NULL;
        argv[0] = "EVALSHA";
        argv[1] = sc->sha;
        errno = 0;
        redisReply *x = redisCommandArgv(c->c, argc, argv, NULL);
        int sys = errno;
        if (x && x->type == REDIS_REPLY_ERROR && !strncmp(x->str, "NOSCRIPT", 8)) {
            reply_free(x);
            argv[0] = "EVAL";
            argv[1] = sc->body;
            errno = 0;
            x = redisCommandArgv(c->c, argc, argv, NULL);
            sys = errno;
        }
        if (x && x->type != REDIS_REPLY_ERROR) {
            give_back(r, c);
            mark_up(r);
            return x;
        }
        char why[256];
        int io = !x;
        /* closed by the server: EOF on reading, or a reset (ECONNRESET,
         * EPIPE) on sending to it */
        int closed = io && (c->c->err == REDIS_ERR_EOF ||
                            (c->c->err == REDIS_ERR_IO && (sys == ECONNRESET || sys == EPIPE)));
        snprintf(why, sizeof why, "%s", x ? x->str : c->c->errstr);
        reply_free(x);
        if (!io) {
            /* an answer, if an error (out of memory, read-only replica, a
             * script error): the connection itself is fine */
            give_back(r, c);
        } else {
            redisFree(c->c);
            free(c);
        }
        /* a pooled connection the server closed (it restarted): once more
         * on a fresh one before calling it an outage */
        if (closed && reused && attempt == 0) {
            pthread_mutex_lock(&r->mu);
            conn *drop = r->idle;
            r->idle = NULL;
            pthread_mutex_unlock(&r->mu);
            conns_free(drop);
            continue;
        }
        mark_down(r, why);
        return NULL;
    }
    return NULL;
}

static void sha256_hex(const void *data, size_t n, char out[65])
{
    unsigned char md[32];
    SHA256(data, n, md);
    hex(md, 32, out);
}

/* ---------------------------------------------------------- operations */

int mcpauth__redis_rate(mcpauth__redis *r, const void *key, size_t keylen, double rate,
                        double burst, double now, int *retry_after)
{
    int dummy;
    if (!retry_after)
        retry_after = &dummy;
    *retry_after = 0;
    if (!(rate > 0) || rate > 1e12 || !r)
        return 1;
    if (!(burst >= 1))
        burst = 1;
    if (burst > 1e12)
        burst = 1e12;
    *retry_after = 1;
    char k[16 + 64 + 1] = "mcpauth:rate:";
    if (keylen == 32)
        hex(key, 32, k + 13);
    else
        sha256_hex(key, keylen, k + 13);
    char a_rate[40], a_burst[40], a_now[40];
    snprintf(a_rate, sizeof a_rate, "%.17g", rate);
    snprintf(a_burst, sizeof a_burst, "%.17g", burst);
    snprintf(a_now, sizeof a_now, "%.6f", now);
    const char *keys[] = {k};
    const char *args[] = {a_rate, a_burst, a_now};
    redisReply *x = run(r, &s_rate, 1, keys, 3, args);
    if (!x)
        return MCPAUTH__STATE_UNAVAILABLE;
    int ok = -1;
    double tokens = 0;
    if (x->type == REDIS_REPLY_ARRAY && x->elements == 2 &&
        x->element[0]->type == REDIS_REPLY_INTEGER && x->element[1]->type == REDIS_REPLY_STRING) {
        ok = x->element[0]->integer == 1;
        tokens = strtod(x->element[1]->str, NULL);
    }
    reply_free(x);
    if (ok < 0) /* not our script's answer: refuse, we are the gate */
        return 0;
    if (ok) {
        *retry_after = 0;
        return 1;
    }
    double wait = (1 - tokens) / rate;
    if (!(wait < INT_MAX))
        *retry_after = INT_MAX;
    else
        *retry_after = wait <= 1 ? 1 : (int)wait + ((double)(int)wait < wait);
    return 0;
}

static void session_key(const char *id, char k[16 + 64 + 1])
{
    memcpy(k, "mcpauth:session:", 16);
    sha256_hex(id, strlen(id), k + 16);
}

static long int_reply(redisReply *x, long bad)
{
    long v = x && x->type == REDIS_REPLY_INTEGER ? (long)x->integer : bad;
    reply_free(x);
    return v;
}

/* Runs a session script (s_bind, s_check) on id's key with the owner's
 * hash and a TTL; its integer answer, or MCPAUTH__STATE_UNAVAILABLE. */
static long session_run(mcpauth__redis *r, script *sc, const char *id, const char *owner,
                        long seconds, long bad)
{
    char k[16 + 64 + 1], o[65], ttl[24];
    session_key(id, k);
    sha256_hex(owner, strlen(owner), o);
    snprintf(ttl, sizeof ttl, "%ld", seconds < 1 ? 1 : seconds);
    const char *keys[] = {k};
    const char *args[] = {o, ttl};
    redisReply *x = run(r, sc, 1, keys, 2, args);
    return x ? int_reply(x, bad) : MCPAUTH__STATE_UNAVAILABLE;
}

int mcpauth__redis_session_bind(mcpauth__redis *r, const char *id, const char *owner,
                                long ttl_seconds)
{
    long v = session_run(r, &s_bind, id, owner, ttl_seconds, -1);
    return v == MCPAUTH__STATE_UNAVAILABLE ? MCPAUTH__STATE_UNAVAILABLE : v == 0 ? 0 : -1;
}

int mcpauth__redis_session_check(mcpauth__redis *r, const char *id, const char *owner,
                                 long extend_seconds)
{
    long v = session_run(r, &s_check, id, owner, extend_seconds, 0);
    if (v == MCPAUTH__STATE_UNAVAILABLE)
        return MCPAUTH__STATE_UNAVAILABLE;
    return v == 1 ? MCPAUTH_SESSION_OWNER : v == 2 ? MCPAUTH_SESSION_OTHER : MCPAUTH_SESSION_UNKNOWN;
}

int mcpauth__redis_session_remove(mcpauth__redis *r, const char *id)
{
    char k[16 + 64 + 1];
    session_key(id, k);
    const char *keys[] = {k};
    redisReply *x = run(r, &s_del, 1, keys, 0, NULL);
    if (!x)
        return MCPAUTH__STATE_UNAVAILABLE;
    reply_free(x);
    return 0;
}

int mcpauth__redis_revoked_add(mcpauth__redis *r, const unsigned char digest[32], time_t until)
{
    char h[65], a_until[24], a_margin[24], epoch[33];
    unsigned char rnd[16];
    hex(digest, 32, h);
    snprintf(a_until, sizeof a_until, "%lld", (long long)until);
    snprintf(a_margin, sizeof a_margin, "%d", PRUNE_MARGIN);
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        return MCPAUTH__STATE_UNAVAILABLE;
    hex(rnd, sizeof rnd, epoch);
    const char *keys[] = {K_REVOKED, K_REVOKED_GEN, K_REVOKED_EPOCH};
    const char *args[] = {h, a_until, a_margin, epoch};
    redisReply *x = run(r, &s_revoke, 3, keys, 4, args);
    if (!x)
        return MCPAUTH__STATE_UNAVAILABLE;
    long gen = int_reply(x, -1);
    return gen > 0 ? 0 : MCPAUTH__STATE_UNAVAILABLE;
}

static int unhex32(const char *s, size_t n, unsigned char out[32])
{
    if (n != 64)
        return -1;
    for (size_t i = 0; i < 32; i++) {
        int v = 0;
        for (int j = 0; j < 2; j++) {
            char c = s[2 * i + j];
            v <<= 4;
            if (c >= '0' && c <= '9')
                v |= c - '0';
            else if (c >= 'a' && c <= 'f')
                v |= c - 'a' + 10;
            else
                return -1;
        }
        out[i] = (unsigned char)v;
    }
    return 0;
}

static int entry_cmp(const void *a, const void *b)
{
    return memcmp(((const entry *)a)->d, ((const entry *)b)->d, 32);
}

/* Checks the generation and, when it moved, reloads the live entries.
 * Called with refresh_mu held: one round trip bounded by the timeout. */
static void mirror_refresh(mcpauth__redis *r, time_t now)
{
    char a_now[24];
    int64_t fetched = __atomic_load_n(&r->mfetched, __ATOMIC_ACQUIRE);
    snprintf(a_now, sizeof a_now, "%lld", (long long)now);
    const char *keys[] = {K_REVOKED, K_REVOKED_GEN, K_REVOKED_EPOCH};
    /* never loaded: "-" matches no token, so everything comes */
    const char *args[] = {fetched ? r->mtoken : "-", a_now};
    redisReply *x = run(r, &s_mirror, 3, keys, 2, args);
    if (!x)
        return;
    if (x->type != REDIS_REPLY_ARRAY || x->elements < 1 ||
        x->element[0]->type != REDIS_REPLY_STRING) {
        reply_free(x);
        return;
    }
    const char *tok = x->element[0]->str, *slash = strchr(tok, '/');
    if (!slash || strlen(tok) >= sizeof r->mtoken) {
        reply_free(x);
        return;
    }
    char newtok[sizeof r->mtoken];
    memcpy(newtok, tok, strlen(tok) + 1);
    uint64_t gen = strtoull(slash + 1, NULL, 10);
    /* the set was lost when its epoch changed (not when it first appears) */
    const char *old_slash = strchr(r->mtoken, '/');
    int lost = fetched && old_slash && old_slash != r->mtoken &&
               ((size_t)(old_slash - r->mtoken) != (size_t)(slash - tok) ||
                memcmp(r->mtoken, tok, (size_t)(slash - tok)) != 0);
    if (x->elements == 1) { /* unchanged */
        __atomic_store_n(&r->mfetched, mono_ms(), __ATOMIC_RELEASE);
        reply_free(x);
        return;
    }
    redisReply *a = x->element[1];
    if (a->type != REDIS_REPLY_ARRAY || a->elements % 2) {
        reply_free(x);
        return;
    }
    size_t n = a->elements / 2, k = 0;
    entry *m = mcpauth__xcalloc(n ? n : 1, sizeof *m);
    for (size_t i = 0; i < n; i++) {
        redisReply *mem = a->element[2 * i], *sc = a->element[2 * i + 1];
        if (mem->type != REDIS_REPLY_STRING || sc->type != REDIS_REPLY_STRING ||
            unhex32(mem->str, mem->len, m[k].d) < 0)
            continue;
        m[k++].until = (int64_t)strtod(sc->str, NULL);
    }
    reply_free(x);
    /* The generation went back: Redis lost the set (restarted without
     * persistence, flushed).  Keep refusing what this process knew was
     * revoked, until it expires, rather than let it pass again. */
    if (lost) {
        pthread_rwlock_rdlock(&r->mlock);
        size_t nc = r->ncarry;
        entry *c = mcpauth__xcalloc(nc + r->mn + 1, sizeof *c);
        nc = 0;
        for (size_t i = 0; i < r->ncarry; i++)
            if (r->carry[i].until > (int64_t)now)
                c[nc++] = r->carry[i];
        for (size_t i = 0; i < r->mn; i++)
            if (r->m[i].until > (int64_t)now)
                c[nc++] = r->m[i];
        pthread_rwlock_unlock(&r->mlock);
        free(r->carry); /* only the refresher (refresh_mu held) touches carry */
        r->carry = c;
        r->ncarry = nc;
        mcpauth_log_security("revocation_set_lost", "effect",
                             "the revocations this process knew are kept; run Redis with "
                             "persistence so that new processes know them too",
                             NULL);
    }
    if (r->ncarry) {
        m = mcpauth__xrealloc(m, (k + r->ncarry + 1) * sizeof *m);
        for (size_t i = 0; i < r->ncarry; i++)
            if (r->carry[i].until > (int64_t)now)
                m[k++] = r->carry[i];
    }
    qsort(m, k, sizeof *m, entry_cmp);
    /* one entry per digest, the longest-lived, so a lookup cannot land on
     * an expired twin */
    size_t u = 0;
    for (size_t i = 0; i < k; i++) {
        if (u && !memcmp(m[u - 1].d, m[i].d, 32)) {
            if (m[i].until > m[u - 1].until)
                m[u - 1].until = m[i].until;
        } else {
            m[u++] = m[i];
        }
    }
    k = u;
    pthread_rwlock_wrlock(&r->mlock);
    entry *old = r->m;
    r->m = m;
    r->mn = k;
    __atomic_store_n(&r->mgen, gen, __ATOMIC_RELEASE);
    memcpy(r->mtoken, newtok, sizeof newtok);
    __atomic_store_n(&r->mfetched, mono_ms(), __ATOMIC_RELEASE);
    pthread_rwlock_unlock(&r->mlock);
    free(old);
}

int mcpauth__redis_revoked_has(mcpauth__redis *r, const unsigned char digest[32], time_t now)
{
    if (!r)
        return MCPAUTH__STATE_UNAVAILABLE;
    int64_t t = mono_ms(), fetched = __atomic_load_n(&r->mfetched, __ATOMIC_ACQUIRE);
    if (!fetched || t - fetched >= MCPAUTH__REDIS_MIRROR_MS) {
        /* Past the trust limit every caller needs the answer, and waits
         * for the one refreshing (one round trip); before it, the others
         * go on with the mirror they have. */
        int must = !fetched || t - fetched >= MCPAUTH__REDIS_MIRROR_MAX_MS - 100;
        int locked = must ? pthread_mutex_lock(&r->refresh_mu) == 0
                          : pthread_mutex_trylock(&r->refresh_mu) == 0;
        if (locked) {
            fetched = __atomic_load_n(&r->mfetched, __ATOMIC_ACQUIRE);
            if (!fetched || mono_ms() - fetched >= MCPAUTH__REDIS_MIRROR_MS)
                mirror_refresh(r, now);
            pthread_mutex_unlock(&r->refresh_mu);
        }
    }
    int rc;
    pthread_rwlock_rdlock(&r->mlock);
    fetched = __atomic_load_n(&r->mfetched, __ATOMIC_ACQUIRE);
    if (!fetched || mono_ms() - fetched > MCPAUTH__REDIS_MIRROR_MAX_MS) {
        rc = MCPAUTH__STATE_UNAVAILABLE;
    } else {
        entry key;
        memcpy(key.d, digest, 32);
        const entry *e = r->mn ? bsearch(&key, r->m, r->mn, sizeof key, entry_cmp) : NULL;
        rc = e && e->until > (int64_t)now;
    }
    pthread_rwlock_unlock(&r->mlock);
    return rc;
}

uint64_t mcpauth__redis_revoked_generation(mcpauth__redis *r)
{
    return r ? __atomic_load_n(&r->mgen, __ATOMIC_ACQUIRE) : 0;
}

#endif /* HAVE_HIREDIS */
