/* Soak (issue 15): mixed traffic through real lighttpd and real Apache for
 * a configurable time, then assertions that nothing drifted.
 *
 * Set-up per server, as the integration tests do it (tests/integration/
 * harness.c): the shipped snippets for mcpauth-proxy (/mcp, in front of
 * the example MCP server examples/mcp-server on loopback), mcpauth-gate
 * (/gate, in front of a static file: lighttpd's authorizer mode; Apache's
 * mod_authnz_fcgi with the gate as its own FastCGI server, run as www-data
 * when we are root, as its systemd unit would), the built-in AS
 * mcpauth-as (/oauth2, Basic login at /authorize, state made by `mcpauth
 * init`) and mcpauth-metadata.  Tokens of a local issuer (jwks_file) are
 * minted here; the AS's tokens come from its own flow, as in
 * bench/bench_as.c: CLIENTS public clients registered (RFC 7591), consent
 * given once with "remember", then codes (PKCE) and refresh rotation.
 *
 * Traffic: --threads workers per server, each with its own keep-alive
 * connection, pick a request kind at random (weights in KINDS below):
 * metadata; the gate with a valid, badly signed, expired or no token; the
 * proxy with the same four (a tools/call in the stateless 2026-07-28 era,
 * JSON), a session of the 2025-06-18 era (initialize, tools/call, mostly
 * DELETE), a streamed tools/call (countdown, SSE); new grants (authorize,
 * then the code's exchange), refreshes of a worker's grants (rotation),
 * and the AS's access tokens at the proxy.  A quarter of the valid, badly
 * signed and expired tokens are freshly minted (the validator's caches
 * keep filling), the rest come from a pool (cache hits).  Deliberately, a
 * few times a run: a code redeemed a second time (must be refused with
 * invalid_grant, and its grant revoked), and a rotated refresh token
 * presented again (refused with invalid_grant; its family then revoked:
 * the current refresh token is refused and its access token gets 401 at
 * the proxy).  refresh_grace = 0 so a reuse is never in its grace period.
 *
 * Every kind has the set of statuses it may answer with (most one) and a
 * check of its body (the echoed text, the whole SSE stream, both tokens);
 * anything else counts as unexpected.  Assertions at the end, per server:
 *   - every kind ran, and no answer was unexpected; no 5xx at all;
 *   - every code obtained was redeemed exactly once: its first exchange
 *     succeeded and no code or refresh token was ever issued twice; every
 *     deliberate second redemption was refused and revoked its grant;
 *   - every refresh returned a new refresh token, and every deliberate
 *     reuse was refused and revoked the family;
 *   - no "database is locked" in any response body nor in any log (the
 *     server's, the programs' stderr, the gate's, the backend's);
 *   - memory flat: for every mcpauth process alive in both the first and
 *     the last tenth of the run (sampled every 200 ms from /proc), the
 *     smallest RssAnon of the last tenth is at most the largest of the
 *     first tenth plus FLAT_KIB (4 MiB), and at least one process of each
 *     program is compared.  RssAnon is the heap, where a leak lands; VmRSS
 *     (printed too) also counts shared-memory and file pages (rate limits,
 *     sessions, the shared cache and the revocation list in runtime_dir,
 *     SQLite's WAL index), which grow as pages are first touched and are
 *     no leak.  The smallest sample of the last tenth, because leaked
 *     memory is never given back and so raises every sample, while the
 *     peaks come and go: in mcpauth-as RssAnon swings by up to 2 MiB from
 *     one sample to the next (transient allocations, the malloc arenas of
 *     the elastic thread pool), which a comparison of peaks would take for
 *     growth.  Why 4 MiB: what legitimately fills during a run is bounded
 *     and smaller: SQLite's page cache (2000 KiB, the default cache_size,
 *     one connection per mcpauth-as process; the database starts nearly
 *     empty and grows by some 200 KiB/s here) and the validator's local
 *     cache (at most cache_entries = 10000 entries of about 100 bytes
 *     beside its preallocated slots), with room for allocator slack.  A
 *     leak of L bytes per request in a process serving R requests/s fails
 *     the check after about 4 MiB / (L * R) seconds: with the default run
 *     (30 s per server) about 1.5 KiB per request at 100/s; with an hour
 *     (30 minutes per server), about 25 bytes.  --flat-kib changes the
 *     bound.
 *
 *   tests/soak/soak [--seconds N] [--server lighttpd|apache|both]
 *                   [--threads N] [--flat-kib N] [--keep]
 *
 * --seconds is the total time of traffic (default 60), shared equally by
 * the servers (30 s each); set-up comes on top (about 5 s per server).
 * `make soak SOAK_SECONDS=3600` runs the documented hour.  --flat-kib sets
 * the memory bound in KiB (default 4096).  --keep leaves the scratch directories (also kept, and named,
 * whenever a check fails).
 * Needs the environment `make check` sets (MCPAUTH_SRCDIR, MCPAUTH_BUILDDIR,
 * LIGHTTPD, APACHE2, APACHE_MODULES_DIR, LIGHTTPD_MODULES_DIR).  Ends with
 *   soak: N requests, M checks passed, K failed
 * and exits 1 when K > 0 or a server could not be set up.  Every process
 * started is stopped by its PID (th_stop, th_kill), also after SIGINT. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "../integration/harness.h"
#include "../support/asflow.h"
#include "../support/tokens.h"

#define CLIENTS 16            /* registered AS clients per server */
#define FAMILIES 6            /* grants a worker keeps refreshing */
#define POOL 32               /* pooled tokens of each sort */
#define FLAT_KIB 4096         /* see the comment above */
#define SAMPLE_MS 200
#define REQ_TIMEOUT_S 20
#define MAX_PROCS 256
#define LOCKED "database is locked"

static struct {
    int seconds, threads, keep, flat_kib;
    int servers[2], nservers;
} opt = {60, 6, 0, FLAT_KIB, {TH_LIGHTTPD, TH_APACHE}, 2};

static atomic_int g_stop;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&g_stop, 1);
}

/* ------------------------------------------------------------ kinds */

enum {
    K_META,
    K_GATE_OK, K_GATE_BADSIG, K_GATE_EXPIRED, K_GATE_NONE,
    K_PROXY_OK, K_PROXY_BADSIG, K_PROXY_EXPIRED, K_PROXY_NONE,
    K_SESSION, K_SESSION_DELETE, K_STREAM,
    K_AUTHORIZE, K_EXCHANGE, K_REFRESH, K_AS_USE,
    /* deliberate: refusals that must happen */
    K_CODE_REPLAY, K_REFRESH_REUSE, K_REVOKED_REFRESH, K_REVOKED_USE,
    NKINDS
};

static const struct {
    const char *name;
    long expect[2]; /* 0: unused */
    int weight;     /* how often a worker picks it; 0: only as part of another */
} KINDS[NKINDS] = {
    [K_META] = {"metadata", {200}, 3},
    [K_GATE_OK] = {"gate valid", {200}, 10},
    [K_GATE_BADSIG] = {"gate bad signature", {401}, 3},
    [K_GATE_EXPIRED] = {"gate expired", {401}, 3},
    [K_GATE_NONE] = {"gate no token", {401}, 3},
    [K_PROXY_OK] = {"proxy tools/call", {200}, 10},
    [K_PROXY_BADSIG] = {"proxy bad signature", {401}, 3},
    [K_PROXY_EXPIRED] = {"proxy expired", {401}, 3},
    [K_PROXY_NONE] = {"proxy no token", {401}, 3},
    [K_SESSION] = {"proxy session (2025)", {200}, 3},
    [K_SESSION_DELETE] = {"proxy session DELETE", {200, 204}, 0},
    [K_STREAM] = {"proxy stream (SSE)", {200}, 3},
    [K_AUTHORIZE] = {"as authorize", {302}, 5},
    [K_EXCHANGE] = {"as code exchange", {200}, 0},
    [K_REFRESH] = {"as refresh", {200}, 8},
    [K_AS_USE] = {"proxy with AS token", {200}, 5},
    [K_CODE_REPLAY] = {"as code replay", {400}, 0},
    [K_REFRESH_REUSE] = {"as refresh reuse", {400}, 0},
    [K_REVOKED_REFRESH] = {"as revoked refresh", {400}, 0},
    [K_REVOKED_USE] = {"proxy revoked AS token", {401}, 0},
};

typedef struct {
    long n, unexpected, s5xx, locked;
    double lat;
} kstat;

/* ---------------------------------------------------- a set of strings */

typedef struct {
    uint64_t *v;
    size_t n, cap;
    pthread_mutex_t mu;
} hset;

static uint64_t fnv(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h ? h : 1;
}

/* 1 when s was new, 0 when it was already there. */
static int hset_add(hset *h, const char *s)
{
    uint64_t k = fnv(s);
    pthread_mutex_lock(&h->mu);
    if (2 * (h->n + 1) > h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 4096;
        uint64_t *v = calloc(cap, sizeof *v);
        if (!v)
            abort();
        for (size_t i = 0; i < h->cap; i++)
            if (h->v[i])
                for (size_t j = h->v[i] % cap;; j = (j + 1) % cap)
                    if (!v[j]) {
                        v[j] = h->v[i];
                        break;
                    }
        free(h->v);
        h->v = v;
        h->cap = cap;
    }
    int fresh = 1;
    for (size_t j = k % h->cap;; j = (j + 1) % h->cap) {
        if (h->v[j] == k) {
            fresh = 0;
            break;
        }
        if (!h->v[j]) {
            h->v[j] = k;
            h->n++;
            break;
        }
    }
    pthread_mutex_unlock(&h->mu);
    return fresh;
}

static void hset_free(hset *h)
{
    free(h->v);
    h->v = NULL;
    h->n = h->cap = 0;
}

/* --------------------------------------------------------------- state */

typedef struct {
    pid_t pid;
    char name[32];
    long first_rss, first_anon, last_rss, last_anon; /* KiB, max in the window; -1: unseen */
    long last_anon_min;                               /* KiB, min in the last tenth */
    long max_rss;
} proc_mem;

/* One server's run. */
static struct {
    th_kind kind;
    th_server srv;
    pid_t backend_pid, gate_pid;
    char backend_dir[PATH_MAX];
    char url_meta[256], url_gate[256], url_mcp[256], local_iss[128];
    asflow_as as;
    asflow_client clients[CLIENTS];
    /* tokens */
    tk_key *rsa, *ec, *bad_rsa, *bad_ec;
    char *pool_ok[2][POOL], *pool_bad[2][POOL], *pool_exp[2][POOL]; /* [0] gate, [1] proxy */
    pthread_mutex_t mint_mu;
    atomic_long minted;
    /* the run */
    double t0, t_end, dur;
    kstat k[NKINDS];
    pthread_mutex_t mu; /* the fields below */
    hset codes, refreshes;
    long codes_obtained, codes_redeemed, codes_failed, dup_codes, dup_refresh, same_refresh;
    long replays, replays_ok, reuses, reuses_ok;
    long first_notes[NKINDS];
    char notes[4096];
    atomic_long n_families, n_refreshes;
    /* memory */
    proc_mem procs[MAX_PROCS];
    int nprocs;
    long samples;
} S;

static void note(int kind, const char *fmt, ...)
{
    char line[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    line[strcspn(line, "\r\n")] = '\0';
    pthread_mutex_lock(&S.mu);
    if (S.first_notes[kind]++ < 3) {
        size_t l = strlen(S.notes);
        snprintf(S.notes + l, sizeof S.notes - l, "  %s: %.300s\n", KINDS[kind].name, line);
    }
    pthread_mutex_unlock(&S.mu);
}

/* ------------------------------------------------------------- checks */

static long g_requests, g_passed, g_failed;

static void check(int ok, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    printf("%s - %s: %s\n", ok ? "ok" : "not ok", th_kind_name(S.kind), line);
    if (ok)
        g_passed++;
    else
        g_failed++;
}

/* --------------------------------------------------------------- HTTP */

typedef struct {
    CURL *c;
    char *body;
    size_t len, cap;
    char location[4096], session[256], ctype[128];
    int www_auth;
    long status;
    kstat k[NKINDS];
    unsigned seed;
    long seq;
} worker;

static size_t on_body(char *d, size_t s, size_t n, void *p)
{
    worker *w = p;
    return asflow_append(&w->body, &w->len, &w->cap, d, s * n);
}

static size_t on_header(char *d, size_t s, size_t n, void *p)
{
    worker *w = p;
    size_t len = s * n;
    if (!asflow_header(d, len, "Location:", w->location, sizeof w->location) &&
        !asflow_header(d, len, "Mcp-Session-Id:", w->session, sizeof w->session) &&
        !asflow_header(d, len, "Content-Type:", w->ctype, sizeof w->ctype) && len > 24 &&
        !strncasecmp(d, "WWW-Authenticate: Bearer", 24))
        w->www_auth = 1;
    return len;
}

static void worker_init(worker *w, unsigned seed)
{
    memset(w, 0, sizeof *w);
    w->c = curl_easy_init();
    if (!w->c)
        abort();
    w->seed = seed;
    asflow_curl_init(w->c, on_body, on_header, w, REQ_TIMEOUT_S);
}

static void worker_free(worker *w)
{
    if (w->c)
        curl_easy_cleanup(w->c);
    free(w->body);
    w->c = NULL;
    w->body = NULL;
}

/* One request of a kind: its status checked against the kind's set, 5xx
 * and "database is locked" counted.  hdrs: NULL-terminated.  Returns the
 * status (0: no answer). */
static long req(worker *w, int kind, const char *method, const char *url, const char *const *hdrs,
                const char *body)
{
    struct curl_slist *sl = NULL;
    for (const char *const *h = hdrs; h && *h; h++)
        sl = curl_slist_append(sl, *h);
    curl_easy_setopt(w->c, CURLOPT_URL, url);
    curl_easy_setopt(w->c, CURLOPT_HTTPHEADER, sl);
    curl_easy_setopt(w->c, CURLOPT_CUSTOMREQUEST, NULL);
    if (body) {
        curl_easy_setopt(w->c, CURLOPT_POSTFIELDS, body);
    } else {
        curl_easy_setopt(w->c, CURLOPT_HTTPGET, 1L);
        if (strcmp(method, "GET") != 0)
            curl_easy_setopt(w->c, CURLOPT_CUSTOMREQUEST, method);
    }
    w->len = 0;
    w->status = 0;
    w->location[0] = w->session[0] = w->ctype[0] = '\0';
    w->www_auth = 0;
    if (w->body)
        w->body[0] = '\0';
    double t0 = now_s();
    CURLcode rc = curl_easy_perform(w->c);
    double t = now_s() - t0;
    curl_slist_free_all(sl);
    if (rc == CURLE_OK)
        curl_easy_getinfo(w->c, CURLINFO_RESPONSE_CODE, &w->status);
    kstat *k = &w->k[kind];
    k->n++;
    k->lat += t;
    if (w->status >= 500)
        k->s5xx++;
    if (w->body && strstr(w->body, LOCKED)) {
        k->locked++;
        note(kind, "\"%s\" in the body: %s", LOCKED, w->body);
    }
    int ok = 0;
    for (int i = 0; i < 2; i++)
        ok |= KINDS[kind].expect[i] && w->status == KINDS[kind].expect[i];
    /* a refusal must say how to authenticate */
    if (ok && w->status == 401 && !w->www_auth) {
        ok = 0;
        note(kind, "401 without WWW-Authenticate: Bearer");
    } else if (!ok) {
        note(kind, "%s %s: status %ld%s%s %.200s", method, url, w->status,
             rc == CURLE_OK ? "" : ", ", rc == CURLE_OK ? "" : curl_easy_strerror(rc),
             w->body ? w->body : "");
    }
    if (!ok)
        k->unexpected++;
    return ok ? w->status : -1;
}

/* The body was not what the kind needs. */
static void wrong(worker *w, int kind, const char *what)
{
    w->k[kind].unexpected++;
    note(kind, "%s: %.300s", what, w->body ? w->body : "");
}

/* -------------------------------------------------------------- tokens */

enum { T_OK, T_BADSIG, T_EXPIRED };

/* A token of the local issuer for the gate (0) or the proxy (1). */
static char *mint(int where, int sort)
{
    long n = atomic_fetch_add(&S.minted, 1), now = (long)time(NULL);
    char claims[1024];
    long iat = sort == T_EXPIRED ? now - 7200 : now;
    long exp = sort == T_EXPIRED ? now - 3600 : now + S.dur + 3600;
    snprintf(claims, sizeof claims,
             "{\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"user-%ld\",\"client_id\":\"soak\","
             "\"scope\":\"files:read\",\"iat\":%ld,\"exp\":%ld,\"jti\":\"soak-%ld\"}",
             S.local_iss, where ? S.url_mcp : S.url_gate, n % 997, iat, exp, n);
    /* half RSA, half EC; a bad signature comes from another key with the
     * same kid, or from a valid token with one signature byte changed */
    int ec = n & 1;
    tk_key *k = sort == T_BADSIG && (n & 2) ? (ec ? S.bad_ec : S.bad_rsa) : (ec ? S.ec : S.rsa);
    pthread_mutex_lock(&S.mint_mu);
    char *t = tk_mint(k, claims, NULL);
    pthread_mutex_unlock(&S.mint_mu);
    if (!t)
        abort();
    if (sort == T_BADSIG && !(n & 2)) {
        char *sig = strrchr(t, '.') + 1;
        size_t mid = strlen(sig) / 2;
        sig[mid] = sig[mid] == 'A' ? 'B' : 'A';
    }
    return t;
}

/* A pooled token (3 times in 4) or a fresh one; *fresh says to free it. */
static char *token_of(worker *w, int where, int sort, int *fresh)
{
    *fresh = rand_r(&w->seed) % 4 == 0;
    if (*fresh)
        return mint(where, sort);
    int i = rand_r(&w->seed) % POOL;
    return sort == T_OK ? S.pool_ok[where][i] : sort == T_BADSIG ? S.pool_bad[where][i]
                                                                 : S.pool_exp[where][i];
}

/* ----------------------------------------------------- request kinds */

static void do_meta(worker *w)
{
    if (req(w, K_META, "GET", S.url_meta, NULL, NULL) == 200 &&
        !strstr(w->body, "\"resource\""))
        wrong(w, K_META, "no resource in the metadata");
}

static void do_gate(worker *w, int kind)
{
    int sort = kind == K_GATE_OK ? T_OK : kind == K_GATE_BADSIG ? T_BADSIG : T_EXPIRED;
    char url[300], auth[8192];
    snprintf(url, sizeof url, "%s/hello.txt", S.url_gate);
    const char *h[] = {auth, NULL};
    int fresh = 0;
    char *t = kind == K_GATE_NONE ? NULL : token_of(w, 0, sort, &fresh);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", t ? t : "");
    long st = req(w, kind, "GET", url, t ? h : NULL, NULL);
    if (st == 200 && strcmp(w->body, "hello, soak\n") != 0)
        wrong(w, kind, "not the protected file");
    if (fresh)
        free(t);
}

/* tools/call echo, stateless era, JSON */
static void call_echo(worker *w, int kind, const char *token)
{
    char auth[8192], body[256], text[64];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token ? token : "");
    long id = ++w->seq;
    snprintf(text, sizeof text, "soak-%ld-%u", id, w->seed % 100000);
    snprintf(body, sizeof body,
             "{\"jsonrpc\":\"2.0\",\"id\":%ld,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\","
             "\"arguments\":{\"text\":\"%s\"}}}",
             id, text);
    const char *h[] = {"Content-Type: application/json", "Accept: application/json, text/event-stream",
                       "MCP-Protocol-Version: 2026-07-28", "Mcp-Method: tools/call",
                       "Mcp-Name: echo", token ? auth : NULL, NULL};
    if (req(w, kind, "POST", S.url_mcp, h, body) == 200 && !strstr(w->body, text))
        wrong(w, kind, "the echo is missing");
}

static void do_proxy(worker *w, int kind)
{
    int sort = kind == K_PROXY_OK ? T_OK : kind == K_PROXY_BADSIG ? T_BADSIG : T_EXPIRED;
    int fresh = 0;
    char *t = kind == K_PROXY_NONE ? NULL : token_of(w, 1, sort, &fresh);
    call_echo(w, kind, t);
    if (fresh)
        free(t);
}

static void do_session(worker *w)
{
    int fresh = 0;
    char *t = token_of(w, 1, T_OK, &fresh);
    char auth[8192], sid[300], body[256];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", t);
    const char *h1[] = {auth, "Content-Type: application/json",
                        "Accept: application/json, text/event-stream", NULL};
    if (req(w, K_SESSION, "POST", S.url_mcp, h1,
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":"
            "\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{\"name\":\"soak\",\"version\":\"1\"}}}") !=
        200)
        goto out;
    if (!w->session[0]) {
        wrong(w, K_SESSION, "initialize without Mcp-Session-Id");
        goto out;
    }
    snprintf(sid, sizeof sid, "Mcp-Session-Id: %s", w->session);
    const char *h2[] = {auth, "Content-Type: application/json",
                        "Accept: application/json, text/event-stream",
                        "MCP-Protocol-Version: 2025-06-18", sid, NULL};
    long id = ++w->seq;
    snprintf(body, sizeof body,
             "{\"jsonrpc\":\"2.0\",\"id\":%ld,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\","
             "\"arguments\":{\"text\":\"session-%ld\"}}}",
             id, id);
    char want[64];
    snprintf(want, sizeof want, "session-%ld", id);
    if (req(w, K_SESSION, "POST", S.url_mcp, h2, body) == 200 && !strstr(w->body, want))
        wrong(w, K_SESSION, "the echo is missing");
    /* most clients end their session; the others leave it to expire */
    if (rand_r(&w->seed) % 4) {
        const char *h3[] = {auth, sid, "MCP-Protocol-Version: 2025-06-18", NULL};
        req(w, K_SESSION_DELETE, "DELETE", S.url_mcp, h3, NULL);
    }
out:
    if (fresh)
        free(t);
}

static void do_stream(worker *w)
{
    int fresh = 0;
    char *t = token_of(w, 1, T_OK, &fresh);
    char auth[8192], body[256];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", t);
    long id = ++w->seq;
    snprintf(body, sizeof body,
             "{\"jsonrpc\":\"2.0\",\"id\":%ld,\"method\":\"tools/call\",\"params\":{\"name\":\"countdown\","
             "\"arguments\":{\"n\":3,\"delay_ms\":20},\"_meta\":{\"progressToken\":\"p%ld\"}}}",
             id, id);
    const char *h[] = {auth, "Content-Type: application/json", "Accept: application/json, text/event-stream",
                       "MCP-Protocol-Version: 2026-07-28", "Mcp-Method: tools/call",
                       "Mcp-Name: countdown", NULL};
    if (req(w, K_STREAM, "POST", S.url_mcp, h, body) == 200) {
        int events = 0;
        for (const char *p = w->body; (p = strstr(p, "notifications/progress")) != NULL; p++)
            events++;
        if (strncmp(w->ctype, "text/event-stream", 17) != 0)
            wrong(w, K_STREAM, "not an event stream");
        else if (events != 3 || !strstr(w->body, "countdown from 3 done"))
            wrong(w, K_STREAM, "the stream is incomplete");
    }
    if (fresh)
        free(t);
}

/* ---------------------------------------------------------------- AS */

typedef struct {
    int client, alive;
    char rt[128], at[4096];
} family;

typedef struct {
    worker w;
    family fam[FAMILIES];
} as_worker;

/* A token answer: both tokens into f (access token, refresh token). */
static int tokens_into(worker *w, int kind, family *f)
{
    char rt[sizeof f->rt], at[sizeof f->at];
    if (asflow_json_str(w->body, "access_token", at, sizeof at) < 0 ||
        asflow_json_str(w->body, "refresh_token", rt, sizeof rt) < 0) {
        wrong(w, kind, "a token is missing");
        return -1;
    }
    if (!hset_add(&S.refreshes, rt)) {
        pthread_mutex_lock(&S.mu);
        S.dup_refresh++;
        pthread_mutex_unlock(&S.mu);
        wrong(w, kind, "a refresh token issued twice");
    }
    if (f->rt[0] && !strcmp(rt, f->rt)) {
        pthread_mutex_lock(&S.mu);
        S.same_refresh++;
        pthread_mutex_unlock(&S.mu);
        wrong(w, kind, "the rotation returned the same refresh token");
    }
    snprintf(f->rt, sizeof f->rt, "%s", rt);
    snprintf(f->at, sizeof f->at, "%s", at);
    return 0;
}

static long post_token(worker *w, int kind, const char *form)
{
    const char *h[] = {ASFLOW_FORM_TYPE, NULL};
    return req(w, kind, "POST", S.as.token, h, form);
}

static long refresh_with(worker *w, int kind, const family *f, const char *rt)
{
    char form[1024];
    asflow_refresh_form(&S.as, &S.clients[f->client], rt, form, sizeof form);
    return post_token(w, kind, form);
}

/* After a refusal that revokes the grant: its refresh token is refused
 * and its access token no longer opens the proxy.  1 when both hold. */
static int family_revoked(worker *w, family *f)
{
    int ok = refresh_with(w, K_REVOKED_REFRESH, f, f->rt) == 400 &&
             strstr(w->body, "invalid_grant");
    if (!ok && w->status == 400)
        wrong(w, K_REVOKED_REFRESH, "not invalid_grant");
    call_echo(w, K_REVOKED_USE, f->at);
    ok = ok && w->status == 401;
    f->alive = 0;
    return ok;
}

/* authorize (302 with a code), then the code's exchange; a few codes are
 * then presented again, which must fail and revoke the grant. */
static void do_new_family(as_worker *a)
{
    worker *w = &a->w;
    int ci = rand_r(&w->seed) % CLIENTS;
    const asflow_client *c = &S.clients[ci];
    char url[2048], code[256], form[2048];
    asflow_authorize_url(&S.as, c, url, sizeof url);
    const char *h[] = {ASFLOW_BASIC_LOGIN, NULL};
    if (req(w, K_AUTHORIZE, "GET", url, h, NULL) != 302)
        return;
    if (asflow_code(w->location, code, sizeof code) < 0) {
        wrong(w, K_AUTHORIZE, "no code in the redirect");
        return;
    }
    int dup = !hset_add(&S.codes, code);
    if (dup)
        wrong(w, K_AUTHORIZE, "a code issued twice");
    asflow_exchange_form(&S.as, c, code, form, sizeof form);
    family *f = NULL;
    for (int i = 0; i < FAMILIES && !f; i++)
        if (!a->fam[i].alive)
            f = &a->fam[i];
    if (!f) /* a client that walks away from a grant */
        f = &a->fam[rand_r(&w->seed) % FAMILIES];
    memset(f, 0, sizeof *f);
    f->client = ci;
    int ok = post_token(w, K_EXCHANGE, form) == 200 && tokens_into(w, K_EXCHANGE, f) == 0;
    pthread_mutex_lock(&S.mu);
    S.codes_obtained++;
    S.dup_codes += dup;
    if (ok)
        S.codes_redeemed++;
    else
        S.codes_failed++;
    pthread_mutex_unlock(&S.mu);
    if (!ok)
        return;
    f->alive = 1;
    if (atomic_fetch_add(&S.n_families, 1) % 16 == 3) {
        int refused = post_token(w, K_CODE_REPLAY, form) == 400 && strstr(w->body, "invalid_grant");
        if (!refused && w->status == 400)
            wrong(w, K_CODE_REPLAY, "not invalid_grant");
        int revoked = family_revoked(w, f);
        pthread_mutex_lock(&S.mu);
        S.replays++;
        S.replays_ok += refused && revoked;
        pthread_mutex_unlock(&S.mu);
    }
}

/* A rotation; a few old refresh tokens are then presented again, which
 * must fail and revoke the family. */
static void do_refresh(as_worker *a)
{
    worker *w = &a->w;
    family *f = NULL;
    int start = rand_r(&w->seed) % FAMILIES;
    for (int i = 0; i < FAMILIES && !f; i++)
        if (a->fam[(start + i) % FAMILIES].alive)
            f = &a->fam[(start + i) % FAMILIES];
    if (!f) {
        do_new_family(a);
        return;
    }
    char old[sizeof f->rt];
    snprintf(old, sizeof old, "%s", f->rt);
    if (refresh_with(w, K_REFRESH, f, f->rt) != 200 || tokens_into(w, K_REFRESH, f) < 0) {
        f->alive = 0;
        return;
    }
    if (atomic_fetch_add(&S.n_refreshes, 1) % 16 == 5) {
        int refused = refresh_with(w, K_REFRESH_REUSE, f, old) == 400 && strstr(w->body, "invalid_grant");
        if (!refused && w->status == 400)
            wrong(w, K_REFRESH_REUSE, "not invalid_grant");
        int revoked = family_revoked(w, f);
        pthread_mutex_lock(&S.mu);
        S.reuses++;
        S.reuses_ok += refused && revoked;
        pthread_mutex_unlock(&S.mu);
    }
}

static void do_as_use(as_worker *a)
{
    int start = rand_r(&a->w.seed) % FAMILIES;
    for (int i = 0; i < FAMILIES; i++) {
        family *f = &a->fam[(start + i) % FAMILIES];
        if (f->alive) {
            call_echo(&a->w, K_AS_USE, f->at);
            return;
        }
    }
    do_new_family(a);
}

/* ------------------------------------------------------------ workers */

static int total_weight;

static void *worker_main(void *p)
{
    as_worker *a = p;
    worker *w = &a->w;
    while (!atomic_load(&g_stop) && now_s() < S.t_end) {
        int r = rand_r(&w->seed) % total_weight, kind = 0;
        while (r >= KINDS[kind].weight)
            r -= KINDS[kind++].weight;
        switch (kind) {
        case K_META: do_meta(w); break;
        case K_GATE_OK: case K_GATE_BADSIG: case K_GATE_EXPIRED: case K_GATE_NONE:
            do_gate(w, kind);
            break;
        case K_PROXY_OK: case K_PROXY_BADSIG: case K_PROXY_EXPIRED: case K_PROXY_NONE:
            do_proxy(w, kind);
            break;
        case K_SESSION: do_session(w); break;
        case K_STREAM: do_stream(w); break;
        case K_AUTHORIZE: do_new_family(a); break;
        case K_REFRESH: do_refresh(a); break;
        case K_AS_USE: do_as_use(a); break;
        default: break;
        }
    }
    return NULL;
}

/* --------------------------------------------------------- memory */

static const char *const PROGRAMS[] = {"mcpauth-metadata", "mcpauth-gate", "mcpauth-proxy",
                                       "mcpauth-as", NULL};

static void read_mem(pid_t pid, long *rss, long *anon)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    *rss = *anon = -1;
    while (f && fgets(line, sizeof line, f)) {
        if (!strncmp(line, "VmRSS:", 6))
            *rss = strtol(line + 6, NULL, 10);
        else if (!strncmp(line, "RssAnon:", 8))
            *anon = strtol(line + 8, NULL, 10);
    }
    if (f)
        fclose(f);
}

static void sample_once(double t)
{
    double tenth = S.dur / 10;
    int first = t <= S.t0 + tenth, last = t >= S.t_end - tenth;
    for (int p = 0; PROGRAMS[p]; p++) {
        pid_t pids[64];
        int n = th_programs(S.srv.dir, PROGRAMS[p], pids, 64);
        for (int i = 0; i < n && i < 64; i++) {
            long rss, anon;
            read_mem(pids[i], &rss, &anon);
            if (rss < 0 || anon < 0)
                continue;
            proc_mem *m = NULL;
            for (int j = 0; j < S.nprocs && !m; j++)
                if (S.procs[j].pid == pids[i])
                    m = &S.procs[j];
            if (!m && S.nprocs < MAX_PROCS) {
                m = &S.procs[S.nprocs++];
                m->pid = pids[i];
                snprintf(m->name, sizeof m->name, "%s", PROGRAMS[p]);
                m->first_rss = m->first_anon = m->last_rss = m->last_anon = -1;
                m->last_anon_min = -1;
            }
            if (!m)
                continue;
            if (rss > m->max_rss)
                m->max_rss = rss;
            if (first) {
                if (rss > m->first_rss)
                    m->first_rss = rss;
                if (anon > m->first_anon)
                    m->first_anon = anon;
            }
            if (last) {
                if (rss > m->last_rss)
                    m->last_rss = rss;
                if (anon > m->last_anon)
                    m->last_anon = anon;
                if (m->last_anon_min < 0 || anon < m->last_anon_min)
                    m->last_anon_min = anon;
            }
        }
    }
    S.samples++;
}

static void *sampler_main(void *p)
{
    (void)p;
    for (;;) {
        double t = now_s();
        if (t > S.t_end || atomic_load(&g_stop))
            break;
        sample_once(t);
        struct timespec ts = {0, SAMPLE_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* ------------------------------------------------------------ set-up */

static const char conf_tmpl[] =
    "runtime_dir = @DIR@\n"
    "log_level = info\n"
    "backend_timeout = 10\n"
    "[resource files]\n"
    "uri = http://127.0.0.1:@PORT@/mcp/files\n"
    "authorization_servers = http://127.0.0.1:@PORT@ http://127.0.0.1:@PORT@/local\n"
    "scopes_supported = files:read\n"
    "scopes_required = files:read\n"
    "backend = http://127.0.0.1:%d/mcp\n"
    /* limits far above the soak's rates: their code still runs */
    "rate_limit = 100000\nrate_burst = 100000\n"
    "rate_limit_address = 100000\nrate_burst_address = 100000\n"
    "[resource gated]\n"
    "uri = http://127.0.0.1:@PORT@/gate/files\n"
    "authorization_servers = http://127.0.0.1:@PORT@/local\n"
    "scopes_supported = files:read\n"
    "scopes_required = files:read\n"
    "[issuer local]\n"
    "issuer = http://127.0.0.1:@PORT@/local\n"
    "jwks_file = @DIR@/jwks.json\n"
    "[authorization_server]\n"
    "issuer = http://127.0.0.1:@PORT@\n"
    "state_dir = @DIR@/state\n"
    "refresh_grace = 0\n"
    "registration_limit = 1000\n";

static const char lighttpd_extra[] =
    "var.mcpauth_proxy_prefix = \"/mcp\"\n"
    "include \"@SRCDIR@/lighttpd/mcpauth-proxy.conf\"\n"
    "var.mcpauth_gate_prefix = \"/gate\"\n"
    "var.mcpauth_gate_docroot = \"@DIR@/htdocs\"\n"
    "include \"@SRCDIR@/lighttpd/mcpauth-gate.conf\"\n"
    "var.mcpauth_as_prefix = \"/oauth2\"\n"
    "var.mcpauth_htpasswd = \"@DIR@/htpasswd\"\n"
    "include \"@SRCDIR@/lighttpd/mcpauth-as.conf\"\n";

static const char apache_extra[] =
    "LoadModule auth_basic_module @MODDIR@/mod_auth_basic.so\n"
    "LoadModule authn_core_module @MODDIR@/mod_authn_core.so\n"
    "LoadModule authn_file_module @MODDIR@/mod_authn_file.so\n"
    "LoadModule authz_user_module @MODDIR@/mod_authz_user.so\n"
    "LoadModule authnz_fcgi_module @MODDIR@/mod_authnz_fcgi.so\n"
    "LoadModule headers_module @MODDIR@/mod_headers.so\n"
    "Define MCPAUTH_PROXY_LOCATION /mcp\n"
    "Include \"@SRCDIR@/apache/mcpauth-proxy.conf\"\n"
    "Define MCPAUTH_GATE_ADDR 127.0.0.1:@AUXPORT@\n"
    "Define MCPAUTH_GATE_LOCATION /gate\n"
    "Include \"@SRCDIR@/apache/mcpauth-gate.conf\"\n"
    "Define MCPAUTH_AS_LOCATION /oauth2\n"
    "Define MCPAUTH_HTPASSWD @DIR@/htpasswd\n"
    "Include \"@SRCDIR@/apache/mcpauth-as.conf\"\n";

static int prepare(th_server *s)
{
    int root = S.kind == TH_APACHE && geteuid() == 0;
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s/tools/mcpauth' --config '%s/mcpauth.conf' init %s >'%s/init.log' 2>&1",
             th_builddir(), s->dir, root ? "--owner www-data" : "", s->dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "soak: mcpauth init failed: see %s/init.log\n", s->dir);
        return -1;
    }
    snprintf(cmd, sizeof cmd,
             "printf 'alice:%%s\\n' \"$(openssl passwd -apr1 -salt mcpauth1 wonderland)\" "
             "> '%s/htpasswd' && chmod 644 '%s/htpasswd'",
             s->dir, s->dir);
    if (system(cmd) != 0)
        return -1;
    /* Apache's programs (and the gate) run as www-data: runtime_dir is theirs */
    if (root) {
        snprintf(cmd, sizeof cmd, "chown www-data: '%s'", s->dir);
        if (system(cmd) != 0)
            return -1;
    }
    return 0;
}

/* asflow's set-up requests (registration, consent), counted nowhere: the
 * kinds' tallies start with the traffic. */
static void setup_http(void *ctx, const char *url, const char *const *hdrs, const char *body,
                       asflow_answer *out)
{
    worker *w = ctx;
    struct curl_slist *sl = NULL;
    for (const char *const *h = hdrs; h && *h; h++)
        sl = curl_slist_append(sl, *h);
    curl_easy_setopt(w->c, CURLOPT_URL, url);
    curl_easy_setopt(w->c, CURLOPT_HTTPHEADER, sl);
    curl_easy_setopt(w->c, CURLOPT_CUSTOMREQUEST, NULL);
    if (body)
        curl_easy_setopt(w->c, CURLOPT_POSTFIELDS, body);
    else
        curl_easy_setopt(w->c, CURLOPT_HTTPGET, 1L);
    w->len = 0;
    w->status = 0;
    w->location[0] = '\0';
    if (w->body)
        w->body[0] = '\0';
    if (curl_easy_perform(w->c) == CURLE_OK)
        curl_easy_getinfo(w->c, CURLINFO_RESPONSE_CODE, &w->status);
    curl_slist_free_all(sl);
    out->status = w->status;
    out->body = w->body ? w->body : "";
    out->location = w->location;
}

static int start_server(th_kind kind)
{
    S.kind = kind;
    snprintf(S.backend_dir, sizeof S.backend_dir, "%s/mcpauth-soak-backend-XXXXXX",
             getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(S.backend_dir)) {
        perror("soak: mkdtemp");
        S.backend_dir[0] = '\0';
        return -1;
    }
    int bport = 0;
    S.backend_pid = th_start_example_server(S.backend_dir, &bport);
    if (S.backend_pid < 0)
        return -1;
    tk_key *keys[] = {S.rsa, S.ec};
    char *jwks = tk_jwks(keys, 2), *conf = NULL;
    if (asprintf(&conf, conf_tmpl, bport) < 0)
        abort();
    const char *files[] = {"jwks.json", jwks, "htdocs/gate/files/hello.txt", "hello, soak\n", NULL};
    th_options o = {conf, kind == TH_LIGHTTPD ? lighttpd_extra : apache_extra, files, prepare};
    int rc = th_start_ex(&S.srv, kind, &o);
    free(conf);
    free(jwks);
    if (rc != 0) {
        fprintf(stderr, "soak: %s did not start\n", th_kind_name(kind));
        return -1;
    }
    if (kind == TH_APACHE) {
        /* mod_authnz_fcgi talks to a gate that runs by itself */
        char prog[PATH_MAX], cfgp[PATH_MAX], listen[64], log[PATH_MAX];
        snprintf(prog, sizeof prog, "%s/fcgi/mcpauth-gate", th_builddir());
        snprintf(cfgp, sizeof cfgp, "%s/mcpauth.conf", S.srv.dir);
        snprintf(listen, sizeof listen, "127.0.0.1:%d", S.srv.aux_port);
        snprintf(log, sizeof log, "%s/gate.log", S.srv.dir);
        char *as_root[] = {"/usr/bin/setpriv", "--reuid=www-data", "--regid=www-data",
                           "--clear-groups", prog, "--config", cfgp, "--listen", listen, NULL};
        char *plain[] = {prog, "--config", cfgp, "--listen", listen, NULL};
        S.gate_pid = th_spawn(geteuid() == 0 ? as_root : plain, NULL, log);
        if (S.gate_pid < 0 || th_wait_port(S.srv.aux_port, 10000) != 0) {
            fprintf(stderr, "soak: the gate did not start (see %s)\n", log);
            return -1;
        }
    }
    snprintf(S.local_iss, sizeof S.local_iss, "%s/local", S.srv.base);
    snprintf(S.url_meta, sizeof S.url_meta, "%s/.well-known/oauth-protected-resource/mcp/files",
             S.srv.base);
    snprintf(S.url_gate, sizeof S.url_gate, "%s/gate/files", S.srv.base);
    snprintf(S.url_mcp, sizeof S.url_mcp, "%s/mcp/files", S.srv.base);
    return asflow_as_init(&S.as, "soak", S.srv.base, S.url_mcp);
}

static void stop_server(void)
{
    if (S.gate_pid > 0)
        th_kill(S.gate_pid);
    S.gate_pid = -1;
    if (S.srv.dir[0]) {
        if (opt.keep || g_failed) {
            printf("soak: %s's scratch directory kept: %s (backend: %s)\n", th_kind_name(S.kind),
                   S.srv.dir, S.backend_dir);
            setenv("MCPAUTH_KEEP_TEST_DIRS", "1", 1); /* th_stop leaves it */
        }
        th_stop(&S.srv);
    }
    if (S.backend_pid > 0)
        th_kill(S.backend_pid);
    S.backend_pid = -1;
    if (S.backend_dir[0] && !(opt.keep || g_failed)) {
        char cmd[PATH_MAX + 32];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", S.backend_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "soak: could not remove %s\n", S.backend_dir);
    }
}

/* ------------------------------------------------------------- logs */

static long log_locked, log_lines_error;
static char log_first[1024];

static int scan_entry(const char *path, const struct stat *st, int type, struct FTW *f)
{
    (void)f;
    size_t l = strlen(path);
    if (type != FTW_F || st->st_size == 0 ||
        !((l > 4 && !strcmp(path + l - 4, ".log")) || (l > 4 && !strcmp(path + l - 4, ".out"))))
        return 0;
    FILE *in = fopen(path, "r");
    char line[8192];
    while (in && fgets(line, sizeof line, in)) {
        if (strcasestr(line, LOCKED)) {
            if (!log_locked++)
                snprintf(log_first, sizeof log_first, "%s: %.900s", path, line);
        }
        if (strstr(line, "level=error") || strstr(line, "[error]") || strstr(line, ":error]"))
            log_lines_error++;
    }
    if (in)
        fclose(in);
    return 0;
}

/* ----------------------------------------------------------- a server */

static void report_and_check(double secs)
{
    kstat tot = {0};
    printf("\nsoak: %s, %.1f s of traffic, %d workers\n", th_kind_name(S.kind), secs, opt.threads);
    printf("  %-24s %8s %8s %10s %5s %10s\n", "kind", "requests", "req/s", "unexpected", "5xx",
           "mean ms");
    for (int i = 0; i < NKINDS; i++) {
        kstat *k = &S.k[i];
        printf("  %-24s %8ld %8.1f %10ld %5ld %10.1f\n", KINDS[i].name, k->n,
               secs > 0 ? (double)k->n / secs : 0, k->unexpected, k->s5xx,
               k->n ? k->lat * 1e3 / (double)k->n : 0);
        tot.n += k->n;
        tot.unexpected += k->unexpected;
        tot.s5xx += k->s5xx;
        tot.locked += k->locked;
    }
    printf("  %-24s %8ld %8.1f %10ld %5ld\n", "all", tot.n, secs > 0 ? (double)tot.n / secs : 0,
           tot.unexpected, tot.s5xx);
    if (S.notes[0])
        printf("  first unexpected answers:\n%s", S.notes);
    g_requests += tot.n;

    for (int i = 0; i < NKINDS; i++) {
        /* the deliberate kinds and DELETE run as part of others */
        int required = KINDS[i].weight > 0 || i == K_EXCHANGE || i == K_CODE_REPLAY ||
                       i == K_REFRESH_REUSE || i == K_REVOKED_REFRESH || i == K_REVOKED_USE;
        if (S.k[i].n == 0 && required)
            check(0, "%s: never ran", KINDS[i].name);
        else if (S.k[i].n)
            check(S.k[i].unexpected == 0, "%s: %ld of %ld answers unexpected", KINDS[i].name,
                  S.k[i].unexpected, S.k[i].n);
    }
    check(tot.s5xx == 0, "no 5xx: %ld of %ld requests", tot.s5xx, tot.n);
    check(tot.locked == 0, "no \"%s\" in any response body: %ld", LOCKED, tot.locked);
    check(S.codes_obtained > 0 && S.codes_failed == 0 && S.dup_codes == 0 &&
              S.codes_redeemed == S.codes_obtained,
          "every code redeemed exactly once: %ld obtained, %ld redeemed at the first attempt, "
          "%ld failed, %ld issued twice",
          S.codes_obtained, S.codes_redeemed, S.codes_failed, S.dup_codes);
    check(S.replays > 0 && S.replays_ok == S.replays,
          "second redemptions refused (invalid_grant) and their grants revoked: %ld of %ld",
          S.replays_ok, S.replays);
    check(S.dup_refresh == 0 && S.same_refresh == 0 && S.k[K_REFRESH].n > 0,
          "every rotation returned a new refresh token: %ld refreshes, %ld repeated, %ld issued "
          "twice",
          S.k[K_REFRESH].n, S.same_refresh, S.dup_refresh);
    check(S.reuses > 0 && S.reuses_ok == S.reuses,
          "reused refresh tokens refused (invalid_grant) and their families revoked: %ld of %ld",
          S.reuses_ok, S.reuses);

    /* logs, while the scratch directories still exist */
    log_locked = log_lines_error = 0;
    log_first[0] = '\0';
    nftw(S.srv.dir, scan_entry, 16, FTW_PHYS);
    if (S.backend_dir[0])
        nftw(S.backend_dir, scan_entry, 16, FTW_PHYS);
    check(log_locked == 0, "no \"%s\" in any log: %ld line(s)%s%s", LOCKED, log_locked,
          log_locked ? ", first: " : "", log_first);
    printf("  (log lines at level error: %ld)\n", log_lines_error);

    /* memory */
    printf("  memory, KiB: RssAnon largest in the first tenth, smallest and largest in the last;\n"
           "  VmRSS largest in each and in the whole run (tenths of %.1f s; %ld samples):\n",
           S.dur / 10, S.samples);
    printf("  %-17s %7s %12s %12s %12s %10s %10s %10s\n", "program", "pid", "anon 1st max",
           "anon lst min", "anon lst max", "rss 1st", "rss last", "rss max");
    int compared[4] = {0};
    for (int i = 0; i < S.nprocs; i++) {
        proc_mem *m = &S.procs[i];
        printf("  %-17s %7d %12ld %12ld %12ld %10ld %10ld %10ld\n", m->name, (int)m->pid,
               m->first_anon, m->last_anon_min, m->last_anon, m->first_rss, m->last_rss,
               m->max_rss);
    }
    for (int i = 0; i < S.nprocs; i++) {
        proc_mem *m = &S.procs[i];
        if (m->first_anon < 0 || m->last_anon < 0)
            continue; /* started or ended within the run */
        for (int p = 0; PROGRAMS[p]; p++)
            compared[p] += !strcmp(m->name, PROGRAMS[p]);
        check(m->last_anon_min <= m->first_anon + opt.flat_kib,
              "%s pid %d memory flat: RssAnon at least %ld KiB in the last tenth, at most %ld "
              "in the first (bound +%d)",
              m->name, (int)m->pid, m->last_anon_min, m->first_anon, opt.flat_kib);
    }
    for (int p = 0; PROGRAMS[p]; p++)
        check(compared[p] > 0, "%s: %d process(es) alive in both tenths, compared", PROGRAMS[p],
              compared[p]);
}

static int run_server(th_kind kind, int seconds)
{
    memset(&S, 0, sizeof S);
    S.backend_pid = S.gate_pid = -1;
    pthread_mutex_init(&S.mu, NULL);
    pthread_mutex_init(&S.mint_mu, NULL);
    pthread_mutex_init(&S.codes.mu, NULL);
    pthread_mutex_init(&S.refreshes.mu, NULL);
    S.dur = seconds;
    S.rsa = tk_key_new("RS256", "r1", 2048);
    S.ec = tk_key_new("ES256", "e1", 0);
    S.bad_rsa = tk_key_new("RS256", "r1", 2048); /* same kids: a signature of another key */
    S.bad_ec = tk_key_new("ES256", "e1", 0);
    if (!S.rsa || !S.ec || !S.bad_rsa || !S.bad_ec) {
        fprintf(stderr, "soak: could not make keys\n");
        return -1;
    }
    int rc = -1;
    worker setup;
    worker_init(&setup, 1);
    as_worker *ws = NULL;
    pthread_t *th = NULL;
    if (start_server(kind) != 0)
        goto out;
    for (int where = 0; where < 2; where++)
        for (int i = 0; i < POOL; i++) {
            S.pool_ok[where][i] = mint(where, T_OK);
            S.pool_bad[where][i] = mint(where, T_BADSIG);
            S.pool_exp[where][i] = mint(where, T_EXPIRED);
        }
    for (int i = 0; i < CLIENTS; i++)
        if (asflow_register(&S.as, setup_http, &setup, i, &S.clients[i]) < 0 ||
            asflow_consent(&S.as, setup_http, &setup, &S.clients[i]) < 0)
            goto out;
    memset(S.k, 0, sizeof S.k); /* the set-up's requests do not count */
    S.notes[0] = '\0';
    memset(S.first_notes, 0, sizeof S.first_notes);

    ws = calloc((size_t)opt.threads, sizeof *ws);
    th = calloc((size_t)opt.threads + 1, sizeof *th);
    if (!ws || !th)
        abort();
    printf("soak: %s on %s, %d s of traffic...\n", th_kind_name(kind), S.srv.base, seconds);
    fflush(stdout);
    S.t0 = now_s();
    S.t_end = S.t0 + seconds;
    pthread_create(&th[opt.threads], NULL, sampler_main, NULL);
    for (int i = 0; i < opt.threads; i++) {
        worker_init(&ws[i].w, (unsigned)(i * 7919 + 17) ^ (unsigned)time(NULL));
        if (pthread_create(&th[i], NULL, worker_main, &ws[i]) != 0) {
            fprintf(stderr, "soak: pthread_create failed\n");
            atomic_store(&g_stop, 1);
            opt.threads = i;
            break;
        }
    }
    for (int i = 0; i < opt.threads; i++) {
        pthread_join(th[i], NULL);
        for (int k = 0; k < NKINDS; k++) {
            S.k[k].n += ws[i].w.k[k].n;
            S.k[k].unexpected += ws[i].w.k[k].unexpected;
            S.k[k].s5xx += ws[i].w.k[k].s5xx;
            S.k[k].locked += ws[i].w.k[k].locked;
            S.k[k].lat += ws[i].w.k[k].lat;
        }
        worker_free(&ws[i].w);
    }
    double secs = now_s() - S.t0;
    pthread_join(th[opt.threads], NULL);
    if (atomic_load(&g_stop)) {
        fprintf(stderr, "soak: interrupted\n");
        goto out;
    }
    report_and_check(secs);
    rc = 0;
out:
    worker_free(&setup);
    free(ws);
    free(th);
    stop_server();
    for (int where = 0; where < 2; where++)
        for (int i = 0; i < POOL; i++) {
            free(S.pool_ok[where][i]);
            free(S.pool_bad[where][i]);
            free(S.pool_exp[where][i]);
        }
    tk_key_free(S.rsa);
    tk_key_free(S.ec);
    tk_key_free(S.bad_rsa);
    tk_key_free(S.bad_ec);
    hset_free(&S.codes);
    hset_free(&S.refreshes);
    return rc;
}

/* --------------------------------------------------------------- main */

static void usage(void)
{
    fputs("usage: soak [--seconds N] [--server lighttpd|apache|both] [--threads N] [--flat-kib N]\n"
          "  [--keep]\n",
          stderr);
    exit(2);
}

static int num(const char *v, int lo, int hi)
{
    char *end;
    long n = v ? strtol(v, &end, 10) : 0;
    if (!v || end == v || *end || n < lo || n > hi) {
        fprintf(stderr, "soak: %s is not a number in [%d, %d]\n", v ? v : "(none)", lo, hi);
        exit(2);
    }
    return (int)n;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--keep")) {
            opt.keep = 1;
        } else if (!strcmp(a, "--seconds")) {
            opt.seconds = num(v, 2, 7 * 86400);
            i++;
        } else if (!strcmp(a, "--flat-kib")) {
            opt.flat_kib = num(v, 0, 1 << 20);
            i++;
        } else if (!strcmp(a, "--threads")) {
            opt.threads = num(v, 1, 64);
            i++;
        } else if (!strcmp(a, "--server") && v) {
            i++;
            if (!strcmp(v, "lighttpd")) {
                opt.servers[0] = TH_LIGHTTPD;
                opt.nservers = 1;
            } else if (!strcmp(v, "apache")) {
                opt.servers[0] = TH_APACHE;
                opt.nservers = 1;
            } else if (strcmp(v, "both") != 0) {
                usage();
            }
        } else {
            usage();
        }
    }
    for (int i = 0; i < NKINDS; i++)
        total_weight += KINDS[i].weight;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int setup_failed = 0;
    for (int i = 0; i < opt.nservers && !atomic_load(&g_stop); i++)
        if (run_server((th_kind)opt.servers[i], opt.seconds / opt.nservers) != 0) {
            g_failed++;
            setup_failed = 1;
            printf("not ok - %s: the soak could not run (set-up failed or interrupted)\n",
                   th_kind_name((th_kind)opt.servers[i]));
        }
    curl_global_cleanup();
    printf("soak: %ld requests, %ld checks passed, %ld failed\n", g_requests, g_passed, g_failed);
    return g_failed || setup_failed ? 1 : 0;
}
