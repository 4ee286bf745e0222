/* shared_cache (issue 14): the validation cache in a file every process
 * maps (lib/cache.c, shared mode) and remote key sets saved in runtime_dir
 * (lib/validate.c), so that a CGI process, one request per process, does
 * not fetch keys or check tokens a moment-ago process already did.  The
 * authorization server is tests/support/httpd.h in this process; "another
 * process" is a new validator, or a forked child. */
#define _GNU_SOURCE
#include <check.h>

Suite *shared_cache_suite(void);

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/sha.h>

#include <mcpauth/config.h>
#include <mcpauth/validate.h>

#include "cache.h"
#include "../support/httpd.h"
#include "../support/tokens.h"
#define SCRATCH_NAME "shcache"
#include "../support/scratchdir.h"

static char path[160];

static void setup(void)
{
    scratch_setup();
    snprintf(path, sizeof path, "%s/cache.shm", dir);
}

static mcpauth_cache *open_ok(size_t entries)
{
    char err[256] = "";
    mcpauth_cache *c = mcpauth__cache_open_shared(path, entries, err, sizeof err);
    ck_assert_msg(c != NULL, "mcpauth__cache_open_shared: %s", err);
    return c;
}

static void key_of(unsigned n, unsigned char key[32])
{
    char s[32];
    snprintf(s, sizeof s, "token-%u", n);
    SHA256((const unsigned char *)s, strlen(s), key);
}

/* An identity every field of which names n, so a torn entry shows. */
static void ident_of(unsigned n, mcpauth_identity *id)
{
    memset(id, 0, sizeof *id);
    snprintf(id->subject, sizeof id->subject, "sub-%u", n);
    snprintf(id->client_id, sizeof id->client_id, "cid-%u", n);
    snprintf(id->issuer, sizeof id->issuer, "https://as.example/%u", n);
    int len = snprintf(id->scope, sizeof id->scope, "s%u", n);
    for (unsigned i = 0; i < n % 40; i++)
        len += snprintf(id->scope + len, sizeof id->scope - (size_t)len, " s%u", n);
    id->exp = 1000000 + n;
}

/* A hit for n must be n's identity, whole. */
static int consistent(unsigned n, const mcpauth_identity *got)
{
    mcpauth_identity want;
    ident_of(n, &want);
    return strcmp(got->subject, want.subject) == 0 && strcmp(got->client_id, want.client_id) == 0 &&
           strcmp(got->issuer, want.issuer) == 0 && strcmp(got->scope, want.scope) == 0 &&
           got->exp == want.exp;
}

static void put_n(mcpauth_cache *c, unsigned n, time_t expires)
{
    unsigned char key[32];
    mcpauth_identity id;
    key_of(n, key);
    ident_of(n, &id);
    mcpauth__cache_put(c, key, 0, expires, 1, &id, NULL);
}

/* 1 hit (checked whole), 0 miss. */
static int get_n(mcpauth_cache *c, unsigned n, time_t now)
{
    unsigned char key[32];
    mcpauth_identity id;
    int pos = -1;
    key_of(n, key);
    if (!mcpauth__cache_get(c, key, 0, now, &pos, &id, NULL, 0))
        return 0;
    ck_assert_int_eq(pos, 1);
    ck_assert_msg(consistent(n, &id), "entry %u torn: %s / %s / %s", n, id.subject, id.client_id,
                  id.scope);
    return 1;
}

/* ------------------------------------------------------------- the table */

START_TEST(two_handles_share)
{
    mcpauth_cache *a = open_ok(100), *b = open_ok(100);
    put_n(a, 1, 2000);
    ck_assert_int_eq(get_n(b, 1, 1000), 1);
    unsigned char key[32];
    key_of(2, key);
    mcpauth__cache_put(b, key, 7, 2000, 0, NULL, "token expired");
    int pos = -1;
    char reason[64] = "";
    mcpauth_identity id;
    ck_assert_int_eq(mcpauth__cache_get(a, key, 7, 1000, &pos, &id, reason, sizeof reason), 1);
    ck_assert_int_eq(pos, 0);
    ck_assert_str_eq(reason, "token expired");
    /* the resource is part of the key */
    ck_assert_int_eq(mcpauth__cache_get(a, key, 8, 1000, &pos, &id, reason, sizeof reason), 0);
    ck_assert_uint_eq(mcpauth__cache_count(a), 2);
    ck_assert_uint_eq(mcpauth__cache_count(b), 2);
    mcpauth__cache_free(a);
    mcpauth__cache_free(b);
    /* and a later opener (the next CGI request) too */
    mcpauth_cache *c = open_ok(100);
    ck_assert_int_eq(get_n(c, 1, 1000), 1);
    struct stat st;
    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    mcpauth__cache_free(c);
}
END_TEST

START_TEST(bounded)
{
    /* not a multiple of the set size: still exactly this many */
    size_t sizes[] = {1, 5, 10, 100, 1001};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        unlink(path);
        mcpauth_cache *c = open_ok(sizes[k]);
        for (unsigned n = 0; n < 3000; n++)
            put_n(c, n, 2000 + n);
        size_t count = mcpauth__cache_count(c);
        ck_assert_msg(count <= sizes[k], "%zu entries in a cache of %zu", count, sizes[k]);
        ck_assert_msg(count >= sizes[k] * 3 / 4, "only %zu of %zu slots used", count, sizes[k]);
        unsigned hits = 0;
        for (unsigned n = 0; n < 3000; n++)
            hits += (unsigned)get_n(c, n, 1000);
        ck_assert_uint_eq(hits, count);
        struct stat st;
        ck_assert_int_eq(stat(path, &st), 0);
        ck_assert_int_le(st.st_size, 4096 + 2048 * (off_t)sizes[k]);
        mcpauth__cache_free(c);
    }
}
END_TEST

/* An entry pushed out before its time is reported (the metrics count it:
 * issue 16); replacing expired entries is not an eviction.  Both caches. */
static void evictions_of(mcpauth_cache *c)
{
    time_t now = time(NULL);
    unsigned char key[32];
    mcpauth_identity id;
    int evicted = 0;
    for (unsigned n = 0; n < 50; n++) {
        key_of(1000 + n, key);
        ident_of(1000 + n, &id);
        evicted += mcpauth__cache_put(c, key, 0, now - 5, 1, &id, NULL);
    }
    ck_assert_int_eq(evicted, 0);
    key_of(0, key);
    ident_of(0, &id);
    id.exp = now + 600;
    ck_assert_int_eq(mcpauth__cache_put(c, key, 0, now + 600, 1, &id, NULL), 0);
    for (unsigned n = 1; n < 50; n++) {
        key_of(n, key);
        ident_of(n, &id);
        evicted += mcpauth__cache_put(c, key, 0, now + 600, 1, &id, NULL);
    }
    ck_assert_msg(evicted > 0, "50 live entries into a cache of one: no eviction reported");
    ck_assert_int_le(evicted, 49);
}

START_TEST(evictions_reported)
{
    mcpauth_cache *c = open_ok(1);
    evictions_of(c);
    mcpauth__cache_free(c);
    c = mcpauth__cache_new(1);
    evictions_of(c);
    mcpauth__cache_free(c);
}
END_TEST

START_TEST(expiry)
{
    mcpauth_cache *c = open_ok(64);
    put_n(c, 1, 1000);
    ck_assert_int_eq(get_n(c, 1, 999), 1);
    ck_assert_int_eq(get_n(c, 1, 1000), 0);
    unsigned char key[32];
    key_of(2, key);
    mcpauth__cache_put(c, key, 0, 500, 0, NULL, "no");
    int pos;
    char reason[8];
    ck_assert_int_eq(mcpauth__cache_get(c, key, 0, 499, &pos, NULL, reason, sizeof reason), 1);
    ck_assert_int_eq(mcpauth__cache_get(c, key, 0, 500, &pos, NULL, reason, sizeof reason), 0);
    /* a newer answer replaces the older one in place */
    put_n(c, 1, 3000);
    ck_assert_int_eq(get_n(c, 1, 2000), 1);
    ck_assert_uint_eq(mcpauth__cache_count(c), 2);
    mcpauth__cache_free(c);
}
END_TEST

START_TEST(long_identity_not_stored)
{
    mcpauth_cache *c = open_ok(64);
    unsigned char key[32];
    key_of(1, key);
    mcpauth_identity id, got;
    ident_of(1, &id);
    mcpauth__cache_put(c, key, 0, 2000, 1, &id, NULL);
    /* the same token's answer, now too long for a slot: dropped, never cut */
    memset(id.scope, 'x', sizeof id.scope - 1);
    id.scope[sizeof id.scope - 1] = '\0';
    mcpauth__cache_put(c, key, 0, 2000, 1, &id, NULL);
    int pos;
    ck_assert_int_eq(mcpauth__cache_get(c, key, 0, 1000, &pos, &got, NULL, 0), 0);
    ck_assert_uint_eq(mcpauth__cache_count(c), 0);
    /* a long reason is cut like any copy out */
    char reason[4096];
    memset(reason, 'r', sizeof reason - 1);
    reason[sizeof reason - 1] = '\0';
    mcpauth__cache_put(c, key, 0, 2000, 0, NULL, reason);
    char out[160];
    ck_assert_int_eq(mcpauth__cache_get(c, key, 0, 1000, &pos, NULL, out, sizeof out), 1);
    ck_assert_int_eq(pos, 0);
    ck_assert_uint_eq(strlen(out), sizeof out - 1);
    mcpauth__cache_free(c);
}
END_TEST

#define WRITERS 4
#define PUTS 4000

/* Forked writers fill a small table at once (sets are shared between
 * them), while the parent reads; then some are killed -9 in the middle.
 * Every hit anyone reads is an entry as it was put. */
START_TEST(processes_concurrent)
{
    mcpauth_cache *c = open_ok(64);
    pid_t pids[WRITERS];
    for (int w = 0; w < WRITERS; w++) {
        pids[w] = fork();
        ck_assert_int_ge(pids[w], 0);
        if (pids[w] == 0) {
            mcpauth_cache *mine = open_ok(64);
            for (unsigned i = 0; i < PUTS; i++) {
                unsigned n = (i * 7 + (unsigned)w * 13) % 500;
                put_n(mine, n, 2000 + i);
                unsigned char key[32];
                mcpauth_identity id;
                int pos;
                key_of((n * 3) % 500, key);
                if (mcpauth__cache_get(mine, key, 0, 1000, &pos, &id, NULL, 0) &&
                    !consistent((n * 3) % 500, &id))
                    _exit(9);
            }
            _exit(0);
        }
    }
    unsigned hits = 0;
    for (int round = 0; round < 20; round++)
        for (unsigned n = 0; n < 500; n++)
            hits += (unsigned)get_n(c, n, 1000);
    for (int w = 0; w < WRITERS; w++) {
        int status;
        ck_assert_int_eq(waitpid(pids[w], &status, 0), pids[w]);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writer %d: status %d", w,
                      status);
    }
    ck_assert_uint_le(mcpauth__cache_count(c), 64);
    for (unsigned n = 0; n < 500; n++)
        get_n(c, n, 1000);

    /* writers killed at random points, perhaps inside a lock */
    for (int round = 0; round < 10; round++) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            for (unsigned i = 0;; i++)
                put_n(c, i % 500, 3000 + i);
        }
        struct timespec ts = {0, (long)(1 + round) * 1000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    unsigned after = 0;
    for (unsigned n = 0; n < 500; n++) /* a lost lock would hang here */
        after += (unsigned)get_n(c, n, 1000);
    ck_assert_uint_le(mcpauth__cache_count(c), 64);
    ck_assert_uint_gt(after, 0);
    put_n(c, 9999, 5000);
    ck_assert_int_eq(get_n(c, 9999, 1000), 1);
    mcpauth__cache_free(c);
}
END_TEST

static void write_at(off_t off, const void *bytes, size_t len)
{
    int fd = open(path, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pwrite(fd, bytes, len, off), (ssize_t)len);
    close(fd);
}

static ino_t inode(void)
{
    struct stat st;
    ck_assert_int_eq(lstat(path, &st), 0);
    return st.st_ino;
}

START_TEST(damaged_or_foreign_replaced)
{
    mcpauth_cache *c = open_ok(64);
    put_n(c, 1, 2000);
    mcpauth__cache_free(c);

    /* another layout version (the field after the magic) */
    ino_t before = inode();
    uint32_t v = 99;
    write_at(8, &v, sizeof v);
    c = open_ok(64);
    ck_assert(inode() != before);
    ck_assert_int_eq(get_n(c, 1, 1000), 0);
    put_n(c, 2, 2000);
    mcpauth__cache_free(c);

    /* garbage over the header */
    before = inode();
    char junk[512];
    memset(junk, 0x5a, sizeof junk);
    write_at(0, junk, sizeof junk);
    c = open_ok(64);
    ck_assert(inode() != before);
    ck_assert_uint_eq(mcpauth__cache_count(c), 0);
    put_n(c, 3, 2000);

    /* garbage over the slots: never an answer, never out of bounds */
    char *slots = malloc(64 * 2048);
    ck_assert_ptr_nonnull(slots);
    for (size_t i = 0; i < 64 * 2048; i += 4) {
        uint32_t w = i % 8 == 0 ? 1u : 0xffffffffu; /* "used", huge lengths */
        memcpy(slots + i, &w, 4);
    }
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    write_at(st.st_size - 64 * 2048, slots, 64 * 2048);
    free(slots);
    for (unsigned n = 0; n < 10; n++)
        ck_assert_int_eq(get_n(c, n, 1000), 0);
    put_n(c, 4, 2000);
    ck_assert_int_eq(get_n(c, 4, 1000), 1);

    /* another size: replaced, and a handle on the old file follows */
    before = inode();
    mcpauth_cache *big = open_ok(128);
    ck_assert(inode() != before);
    put_n(big, 5, 2000);
    ck_assert_int_eq(get_n(c, 5, 1000), 1);
    put_n(c, 6, 2000);
    ck_assert_int_eq(get_n(big, 6, 1000), 1);
    mcpauth__cache_free(c);
    mcpauth__cache_free(big);

    /* a file cut short */
    ck_assert_int_eq(truncate(path, 100), 0);
    c = open_ok(128);
    ck_assert_uint_eq(mcpauth__cache_count(c), 0);
    mcpauth__cache_free(c);
}
END_TEST

START_TEST(hostile_paths)
{
    char err[256], target[200];
    snprintf(target, sizeof target, "%s/elsewhere", dir);
    ck_assert_int_eq(close(open(target, O_CREAT | O_WRONLY, 0600)), 0);
    ck_assert_int_eq(symlink(target, path), 0);
    ck_assert_ptr_null(mcpauth__cache_open_shared(path, 64, err, sizeof err));
    ck_assert_msg(strstr(err, "symbolic link") != NULL, "%s", err);
    struct stat st;
    ck_assert_int_eq(stat(target, &st), 0);
    ck_assert_int_eq(st.st_size, 0);
    unlink(path);
    ck_assert_int_eq(close(open(path, O_CREAT | O_WRONLY, 0644)), 0);
    ck_assert_int_eq(chmod(path, 0644), 0);
    ck_assert_ptr_null(mcpauth__cache_open_shared(path, 64, err, sizeof err));
    ck_assert_msg(strstr(err, "mode") != NULL, "%s", err);
    unlink(path);
    ck_assert_int_eq(mkdir(path, 0700), 0);
    ck_assert_ptr_null(mcpauth__cache_open_shared(path, 64, err, sizeof err));
    rmdir(path);
    ck_assert_ptr_null(mcpauth__cache_open_shared(path, 0, err, sizeof err));
}
END_TEST

/* ------------------------------------------------------ keys and validator */

#define RES "https://mcp.example.com/a"

static httpd srv;
static int srv_up;
static tk_key *key1, *key2, *rogue;
static char iss[64];

static void publish(tk_key *const *keys, size_t n)
{
    char *j = tk_jwks(keys, n);
    ck_assert_int_eq(httpd_route(&srv, "/jwks", &(httpd_resp){.body = j}), 0);
    free(j);
}

static void kv_setup(void)
{
    setup();
    httpd_no_proxy_env();
    memset(&srv, 0, sizeof srv);
    ck_assert_int_eq(httpd_start(&srv, NULL), 0);
    srv_up = 1;
    snprintf(iss, sizeof iss, "http://127.0.0.1:%d", srv.port);
    key1 = tk_key_new("ES256", "k1", 0);
    key2 = tk_key_new("ES256", "k2", 0);
    rogue = tk_key_new("ES256", "unknown", 0);
    ck_assert(key1 && key2 && rogue);
    publish(&key1, 1);
}

typedef struct {
    mcpauth_config *cfg;
    mcpauth_validator *v;
    const mcpauth_resource *res;
} vctx;

static void vload(vctx *x, const char *globals)
{
    char text[4096], err[512] = "";
    snprintf(text, sizeof text,
             "runtime_dir = %s\nshared_cache = yes\n%s\n[resource a]\nuri = " RES
             "\nauthorization_servers = %s\nscopes_supported = read\n"
             "[issuer s]\nissuer = %s\njwks_uri = %s/jwks\n"
             "introspection_endpoint = %s/introspect\nintrospection_client_id = gate\n"
             "introspection_client_secret = secret\n",
             dir, globals ? globals : "", iss, iss, iss, iss);
    x->cfg = mcpauth_config_parse(text, strlen(text), "shared.conf", err, sizeof err);
    ck_assert_msg(x->cfg != NULL, "%s", err);
    ck_assert_int_eq(x->cfg->shared_cache, 1);
    x->v = mcpauth_validator_new(x->cfg, err, sizeof err);
    ck_assert_msg(x->v != NULL, "%s", err);
    x->res = mcpauth_config_resource_by_name(x->cfg, "a");
}

static void vfree(vctx *x)
{
    mcpauth_validator_free(x->v);
    mcpauth_config_free(x->cfg);
}

static char *token(const tk_key *k)
{
    static unsigned seq;
    long now = (long)time(NULL);
    char claims[512];
    snprintf(claims, sizeof claims,
             "{\"iss\":\"%s\",\"aud\":\"" RES "\",\"sub\":\"alice\",\"client_id\":\"app\","
             "\"scope\":\"read\",\"iat\":%ld,\"exp\":%ld,\"jti\":\"j%d-%u\"}",
             iss, now, now + 300, (int)getpid(), ++seq);
    char *t = tk_mint(k, claims, NULL);
    ck_assert_ptr_nonnull(t);
    return t;
}

static mcpauth_verdict check(vctx *x, const char *t, mcpauth_decision *d)
{
    mcpauth_validate_token(x->v, x->res, t, strlen(t), "POST", NULL, d);
    return d->verdict;
}

static void expect(vctx *x, const tk_key *k, mcpauth_verdict want)
{
    char *t = token(k);
    mcpauth_decision d;
    ck_assert_msg(check(x, t, &d) == want, "verdict %d, want %d (%s)", d.verdict, want,
                  d.description);
    free(t);
}

/* The saved key set's path: the only jwks-*.json in dir. */
static void jwks_file(char *out, size_t cap, const char *suffix)
{
    unsigned char h[32];
    char uri[128];
    snprintf(uri, sizeof uri, "%s/jwks", iss);
    SHA256((const unsigned char *)uri, strlen(uri), h);
    int n = snprintf(out, cap, "%s/jwks-", dir);
    for (int i = 0; i < 8; i++)
        n += snprintf(out + n, cap - (size_t)n, "%02x", h[i]);
    snprintf(out + n, cap - (size_t)n, "%s", suffix);
}

static char *slurp(const char *p)
{
    FILE *f = fopen(p, "r");
    if (!f)
        return NULL;
    char *buf = calloc(1, 1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Sets the saved file's expiry (rewritten by rename, as mcpauth does), and
 * the stamp of the last attempt. */
static void age_files(time_t expires, time_t attempt)
{
    char p[256], tmp[300];
    jwks_file(p, sizeof p, ".json");
    json_object *o = json_object_from_file(p);
    ck_assert_ptr_nonnull(o);
    json_object_object_add(o, "expires", json_object_new_int64((int64_t)expires));
    snprintf(tmp, sizeof tmp, "%s.test", p);
    ck_assert_int_eq(json_object_to_file(tmp, o), 0);
    json_object_put(o);
    ck_assert_int_eq(chmod(tmp, 0600), 0);
    ck_assert_int_eq(rename(tmp, p), 0);
    jwks_file(p, sizeof p, ".stamp");
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%lld\n", (long long)attempt);
    fclose(f);
}

static void kv_teardown(void)
{
    if (srv_up)
        httpd_stop(&srv);
    srv_up = 0;
    tk_key_free(key1);
    tk_key_free(key2);
    tk_key_free(rogue);
}

START_TEST(jwks_fetched_once_then_from_file)
{
    vctx a, b;
    vload(&a, NULL);
    expect(&a, key1, MCPAUTH_ALLOW);
    expect(&a, key1, MCPAUTH_ALLOW);
    ck_assert_int_eq(httpd_nreq(&srv), 1);
    char p[256];
    jwks_file(p, sizeof p, ".json");
    struct stat st;
    ck_assert_int_eq(lstat(p, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    json_object *o = json_object_from_file(p);
    char want[128];
    snprintf(want, sizeof want, "%s/jwks", iss);
    ck_assert_str_eq(json_object_get_string(json_object_object_get(o, "uri")), want);
    ck_assert(json_object_is_type(json_object_object_get(o, "jwks"), json_type_object));
    json_object_put(o);

    httpd_stop(&srv); /* the AS goes away: the next "process" needs none */
    srv_up = 0;
    vload(&b, NULL);
    expect(&b, key1, MCPAUTH_ALLOW);
    vfree(&b);
    /* a child: a real second process */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        vctx c;
        vload(&c, NULL);
        char *t = token(key1);
        mcpauth_decision d;
        _exit(check(&c, t, &d) == MCPAUTH_ALLOW ? 0 : 1);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    vfree(&a);
}
END_TEST

START_TEST(stale_file_refetched)
{
    vctx a, b;
    vload(&a, "jwks_min_refresh = 30");
    expect(&a, key1, MCPAUTH_ALLOW);
    ck_assert_int_eq(httpd_nreq(&srv), 1);
    time_t now = time(NULL);
    /* stale, but someone tried a moment ago: no fetch, the old keys serve */
    age_files(now - 1, now);
    vload(&b, "jwks_min_refresh = 30");
    expect(&b, key1, MCPAUTH_ALLOW);
    ck_assert_int_eq(httpd_nreq(&srv), 1);
    vfree(&b);
    /* stale and nobody tried for long: fetched, and saved again */
    age_files(now - 1, now - 3600);
    vload(&b, "jwks_min_refresh = 30");
    expect(&b, key1, MCPAUTH_ALLOW);
    ck_assert_int_eq(httpd_nreq(&srv), 2);
    vfree(&b);
    char p[256];
    jwks_file(p, sizeof p, ".json");
    json_object *o = json_object_from_file(p), *e;
    ck_assert(json_object_object_get_ex(o, "expires", &e));
    ck_assert_int_gt(json_object_get_int64(e), (int64_t)now + 60);
    json_object_put(o);
    /* fresh again: the next process does not fetch */
    vload(&b, "jwks_min_refresh = 30");
    expect(&b, key1, MCPAUTH_ALLOW);
    ck_assert_int_eq(httpd_nreq(&srv), 2);
    vfree(&b);
    vfree(&a);
}
END_TEST

START_TEST(failed_refetch_keeps_good_file)
{
    vctx a, b;
    vload(&a, NULL);
    expect(&a, key1, MCPAUTH_ALLOW);
    time_t now = time(NULL);
    age_files(now - 1, now - 3600);
    char p[256];
    jwks_file(p, sizeof p, ".json");
    char *before = slurp(p);
    ck_assert_int_eq(httpd_route(&srv, "/jwks", &(httpd_resp){.status = "500 Oops",
                                                               .body = "{}"}), 0);
    vload(&b, NULL);
    expect(&b, key1, MCPAUTH_ALLOW); /* the last good keys */
    ck_assert_int_eq(httpd_nreq(&srv), 2);
    char *after = slurp(p);
    ck_assert_str_eq(before, after);
    free(before);
    free(after);
    /* garbage answered with 200 is not saved either */
    age_files(now - 1, now - 3600);
    before = slurp(p);
    ck_assert_int_eq(httpd_route(&srv, "/jwks", &(httpd_resp){.body = "{\"keys\":7}"}), 0);
    vfree(&b);
    vload(&b, NULL);
    expect(&b, key1, MCPAUTH_ALLOW);
    ck_assert_int_eq(httpd_nreq(&srv), 3);
    after = slurp(p);
    ck_assert_str_eq(before, after);
    free(before);
    free(after);
    vfree(&b);
    vfree(&a);
}
END_TEST

START_TEST(unknown_kid_storm_bounded)
{
    vctx a, b;
    vload(&a, "jwks_min_refresh = 60");
    vload(&b, "jwks_min_refresh = 60");
    expect(&a, key1, MCPAUTH_ALLOW);
    expect(&b, key1, MCPAUTH_ALLOW);
    ck_assert_int_eq(httpd_nreq(&srv), 1);
    for (int i = 0; i < 20; i++) {
        expect(&a, rogue, MCPAUTH_INVALID_TOKEN);
        expect(&b, rogue, MCPAUTH_INVALID_TOKEN);
    }
    /* and as many fresh processes */
    for (int i = 0; i < 5; i++) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            vctx c;
            vload(&c, "jwks_min_refresh = 60");
            char *t = token(rogue);
            mcpauth_decision d;
            _exit(check(&c, t, &d) == MCPAUTH_INVALID_TOKEN ? 0 : 1);
        }
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    ck_assert_int_eq(httpd_nreq(&srv), 1);

    /* once jwks_min_refresh has passed (stamp aged), exactly one refetch
     * for all of them; a rotated key found by one is found by the other
     * from the file */
    tk_key *both[] = {key1, key2};
    publish(both, 2);
    time_t now = time(NULL);
    age_files(now + 3600, now - 61);
    expect(&a, key2, MCPAUTH_ALLOW);
    ck_assert_int_eq(httpd_nreq(&srv), 2);
    expect(&b, key2, MCPAUTH_ALLOW);
    for (int i = 0; i < 10; i++) {
        expect(&a, rogue, MCPAUTH_INVALID_TOKEN);
        expect(&b, rogue, MCPAUTH_INVALID_TOKEN);
    }
    ck_assert_int_eq(httpd_nreq(&srv), 2);
    vfree(&a);
    vfree(&b);
}
END_TEST

static void introspect(httpd *h, int fd, const httpd_req *req, void *arg)
{
    (void)arg;
    char body[512];
    long now = (long)time(NULL);
    if (strcmp(req->target, "/introspect") != 0 || !strstr(req->body, "token=opaque-")) {
        httpd_respond(fd, "404 Not Found", NULL, "", 0);
        return;
    }
    int active = strstr(req->body, "token=opaque-good") != NULL;
    snprintf(body, sizeof body,
             active ? "{\"active\":true,\"iss\":\"%s\",\"aud\":\"" RES "\",\"sub\":\"bob\","
                      "\"client_id\":\"app\",\"scope\":\"read\",\"exp\":%ld}"
                    : "{\"active\":false}",
             iss, now + 300);
    (void)h;
    httpd_respond(fd, "200 OK", "Content-Type: application/json\r\n", body, strlen(body));
}

START_TEST(introspection_answers_shared)
{
    httpd_stop(&srv);
    srv_up = 0;
    memset(&srv, 0, sizeof srv);
    httpd_opts o = {.handler = introspect};
    ck_assert_int_eq(httpd_start(&srv, &o), 0);
    srv_up = 1;
    snprintf(iss, sizeof iss, "http://127.0.0.1:%d", srv.port);
    vctx a, b;
    vload(&a, NULL);
    vload(&b, NULL);
    mcpauth_decision d;
    ck_assert_int_eq(check(&a, "opaque-good", &d), MCPAUTH_ALLOW);
    ck_assert_int_eq(d.cached, 0);
    ck_assert_int_eq(check(&a, "opaque-bad", &d), MCPAUTH_INVALID_TOKEN);
    ck_assert_int_eq(httpd_nreq(&srv), 2);
    ck_assert_int_eq(check(&b, "opaque-good", &d), MCPAUTH_ALLOW);
    ck_assert_int_eq(d.cached, 1);
    ck_assert_str_eq(d.id.subject, "bob");
    ck_assert_int_eq(check(&b, "opaque-bad", &d), MCPAUTH_INVALID_TOKEN);
    ck_assert_int_eq(d.cached, 1);
    ck_assert_int_eq(httpd_nreq(&srv), 2);
    vfree(&a);
    vfree(&b);
}
END_TEST

/* A program with another configuration sharing runtime_dir never takes
 * an answer checked against other rules. */
START_TEST(other_configuration_not_shared)
{
    vctx a, b;
    vload(&a, NULL);
    char *t = token(key1);
    mcpauth_decision d;
    ck_assert_int_eq(check(&a, t, &d), MCPAUTH_ALLOW);
    vload(&b, NULL);
    ck_assert_int_eq(check(&b, t, &d), MCPAUTH_ALLOW);
    ck_assert_int_eq(d.cached, 1);
    vfree(&b);
    /* the same resource URI, but only ES384 accepted there */
    vload(&b, "jwt_algorithms = ES384");
    ck_assert_int_eq(check(&b, t, &d), MCPAUTH_INVALID_TOKEN);
    ck_assert_int_eq(d.cached, 0);
    vfree(&b);
    free(t);
    vfree(&a);
}
END_TEST

START_TEST(unusable_runtime_dir_falls_back)
{
    char target[200];
    snprintf(target, sizeof target, "%s/elsewhere", dir);
    ck_assert_int_eq(symlink(target, path), 0);
    vctx a;
    vload(&a, NULL); /* a warning, and a validator all the same */
    expect(&a, key1, MCPAUTH_ALLOW);
    char *t = token(key1);
    mcpauth_decision d;
    check(&a, t, &d);
    ck_assert_int_eq(check(&a, t, &d), MCPAUTH_ALLOW);
    ck_assert_int_eq(d.cached, 1); /* its memory cache */
    free(t);
    vfree(&a);
    ck_assert_int_ne(access(target, F_OK), 0);
}
END_TEST

Suite *shared_cache_suite(void)
{
    Suite *s = suite_create("shared_cache");
    TCase *tc = scratch_tcase("table", setup, 60);
    tcase_add_test(tc, two_handles_share);
    tcase_add_test(tc, bounded);
    tcase_add_test(tc, expiry);
    tcase_add_test(tc, evictions_reported);
    tcase_add_test(tc, long_identity_not_stored);
    tcase_add_test(tc, processes_concurrent);
    tcase_add_test(tc, damaged_or_foreign_replaced);
    tcase_add_test(tc, hostile_paths);
    suite_add_tcase(s, tc);
    tc = scratch_tcase("keys", kv_setup, 60);
    tcase_add_checked_fixture(tc, NULL, kv_teardown);
    tcase_add_test(tc, jwks_fetched_once_then_from_file);
    tcase_add_test(tc, stale_file_refetched);
    tcase_add_test(tc, failed_refetch_keeps_good_file);
    tcase_add_test(tc, unknown_kid_storm_bounded);
    tcase_add_test(tc, introspection_answers_shared);
    tcase_add_test(tc, other_configuration_not_shared);
    tcase_add_test(tc, unusable_runtime_dir_falls_back);
    suite_add_tcase(s, tc);
    return s;
}
