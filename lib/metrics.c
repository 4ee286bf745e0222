/* See metrics.h.  Layout: a header (magic, layout version, the retired
 * flag, sizes, the fingerprint of the resource names, boot id, secret and
 * the robust mutex robust.c insists on), the process slots, then one block
 * per resource and a last one for no resource.  Every figure is a uint64_t
 * changed only with __atomic_fetch_add, so a process killed anywhere leaves
 * whole numbers; histograms keep a count per bucket (not cumulative: one
 * add per observation) and the sum in nanoseconds. */
#include "config.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <mcpauth/log.h>
#include <mcpauth/validate.h>

#include "alloc.h"
#include "metrics.h"
#include "robust.h"

#define MAGIC "mcpaMET\n"
#define LAYOUT_VERSION 3u /* bump on any change to the structs or enums of metrics.h */
#define NPROCS 256
#define MAX_RESOURCES 100000

/* Upper bounds of the latency buckets, in nanoseconds (Prometheus' le in
 * seconds); the last bucket is +Inf. */
static const long long bounds_ns[] = {
    100000LL,    250000LL,    500000LL,    1000000LL,   2500000LL,   5000000LL,
    10000000LL,  25000000LL,  50000000LL,  100000000LL, 250000000LL, 500000000LL,
    1000000000LL, 2500000000LL, 5000000000LL, 10000000000LL,
};
#define NBOUNDS (sizeof bounds_ns / sizeof bounds_ns[0])

struct header {
    char magic[8];
    uint32_t version;
    uint32_t retired; /* atomic: replaced by a file for other resources */
    uint32_t mutex_size, nres, ncounters, nhist, nbuckets, nprocs;
    uint64_t total;
    unsigned char fp[32]; /* SHA-256 of the resource names */
    unsigned char secret[MCPAUTH__SIPHASH_KEY_LEN]; /* unused; robust.c seals one */
    char boot[MCPAUTH__BOOT_ID_LEN];
    pthread_mutex_t lock; /* unused: slots are claimed with compare-and-swap */
};

typedef struct {
    int64_t pid;   /* 0: free */
    uint64_t boot; /* a slot of another boot is free */
    char program[32];
    char version[32]; /* of the library the process runs */
} proc_slot;

typedef struct {
    uint64_t c[MCPAUTH_M_COUNT];
    uint64_t bucket[MCPAUTH_H_COUNT][NBOUNDS + 1];
    uint64_t sum_ns[MCPAUTH_H_COUNT];
} block;

struct mcpauth__metrics {
    struct header *hdr;
    proc_slot *procs;
    block *blocks;
    size_t size, nres;
    const mcpauth_resource *res; /* the configuration's array, only compared */
    const mcpauth_config *cfg;
    uint64_t boot;
    int slot; /* ours, or -1 */
    int writable;
};

static size_t align64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

static size_t procs_off(void)
{
    return align64(sizeof(struct header));
}

static size_t blocks_off(void)
{
    return procs_off() + align64(NPROCS * sizeof(proc_slot));
}

static size_t total_size(size_t nres)
{
    return blocks_off() + align64((nres + 1) * sizeof(block));
}

typedef struct {
    size_t nres;
    unsigned char fp[32];
} want_t;

static void fingerprint(const mcpauth_config *cfg, unsigned char out[32])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int len = 0;
    if (!ctx)
        mcpauth__oom("metrics fingerprint");
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (size_t i = 0; i < cfg->nresources; i++)
        EVP_DigestUpdate(ctx, cfg->resources[i].name, strlen(cfg->resources[i].name) + 1);
    EVP_DigestFinal_ex(ctx, out, &len);
    EVP_MD_CTX_free(ctx);
}

static void fill_expected(struct header *h, const want_t *w)
{
    memset(h, 0, sizeof *h);
    memcpy(h->magic, MAGIC, sizeof h->magic);
    h->version = LAYOUT_VERSION;
    h->mutex_size = sizeof(pthread_mutex_t);
    h->nres = (uint32_t)w->nres;
    h->ncounters = MCPAUTH_M_COUNT;
    h->nhist = MCPAUTH_H_COUNT;
    h->nbuckets = NBOUNDS + 1;
    h->nprocs = NPROCS;
    h->total = total_size(w->nres);
    memcpy(h->fp, w->fp, sizeof h->fp);
}

static int file_state(int fd, const struct stat *st, void *arg)
{
    const want_t *w = arg;
    struct header h, want;
    fill_expected(&want, w);
    if (st->st_size < (off_t)sizeof h || pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h)
        return 0;
    if (memcmp(h.magic, want.magic, sizeof h.magic) != 0)
        return 0;
    if (h.version != want.version || h.mutex_size != want.mutex_size || h.nres != want.nres ||
        h.ncounters != want.ncounters || h.nhist != want.nhist || h.nbuckets != want.nbuckets ||
        h.nprocs != want.nprocs || h.total != want.total ||
        memcmp(h.fp, want.fp, sizeof h.fp) != 0 || (uint64_t)st->st_size != want.total ||
        h.retired)
        return -1;
    return 1;
}

static int init_file(int fd, const void *arg, char *err, size_t errlen)
{
    const want_t *w = arg;
    struct header *h = mcpauth__shmfile_fresh(fd, total_size(w->nres), sizeof *h, err, errlen);
    if (!h)
        return -1;
    fill_expected(h, w);
    int rc = mcpauth__shmfile_seal(h->magic, MAGIC, h->boot, h->secret, sizeof h->secret,
                                   &h->lock, err, errlen);
    munmap(h, sizeof *h);
    return rc;
}

static const mcpauth__shmfile_kind metrics_kind = {
    .header_size = sizeof(struct header),
    .lock_off = offsetof(struct header, lock),
    .nlocks = 1,
    .boot_off = offsetof(struct header, boot),
    .retired_off = offsetof(struct header, retired),
    .state = file_state,
    .init = init_file,
    .what = "a metrics file",
};

int mcpauth__metrics_path(const mcpauth_config *cfg, char *buf, size_t len)
{
    if (!cfg->runtime_dir || !*cfg->runtime_dir)
        return -1;
    int n = snprintf(buf, len, "%s/metrics.shm", cfg->runtime_dir);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

static mcpauth__metrics *open_either(const char *path, const mcpauth_config *cfg, int writable,
                                     char *err, size_t errlen)
{
    char dummy[1];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    if (cfg->nresources > MAX_RESOURCES) {
        snprintf(err, errlen, "too many resources for the metrics file");
        return NULL;
    }
    want_t w = {cfg->nresources, {0}};
    fingerprint(cfg, w.fp);
    int fd = writable ? mcpauth__shmfile_open(path, &metrics_kind, &w, err, errlen)
                      : mcpauth__shmfile_open_ro(path, &metrics_kind, &w, err, errlen);
    if (fd < 0)
        return NULL;
    size_t size = total_size(w.nres);
    void *p = mmap(NULL, size, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) {
        snprintf(err, errlen, "%s: mmap: %s", path, strerror(e));
        return NULL;
    }
    mcpauth__metrics *m = mcpauth__xcalloc(1, sizeof *m);
    m->hdr = p;
    m->procs = (proc_slot *)((char *)p + procs_off());
    m->blocks = (block *)((char *)p + blocks_off());
    m->size = size;
    m->nres = w.nres;
    m->res = cfg->resources;
    m->cfg = cfg;
    m->slot = -1;
    m->writable = writable;
    char boot[MCPAUTH__BOOT_ID_LEN];
    mcpauth__boot_id(boot);
    m->boot = 1469598103934665603ull; /* FNV-1a, as shm.c: only compared */
    for (size_t i = 0; i < sizeof boot; i++)
        m->boot = (m->boot ^ (unsigned char)boot[i]) * 1099511628211ull;
    return m;
}

mcpauth__metrics *mcpauth__metrics_open(const char *path, const mcpauth_config *cfg, char *err,
                                        size_t errlen)
{
    return open_either(path, cfg, 1, err, errlen);
}

mcpauth__metrics *mcpauth__metrics_open_ro(const char *path, const mcpauth_config *cfg,
                                           char *err, size_t errlen)
{
    return open_either(path, cfg, 0, err, errlen);
}

static void release_slot(mcpauth__metrics *m)
{
    if (m->slot < 0)
        return;
    int64_t mine = (int64_t)getpid();
    __atomic_compare_exchange_n(&m->procs[m->slot].pid, &mine, 0, 0, __ATOMIC_ACQ_REL,
                                __ATOMIC_RELAXED);
    m->slot = -1;
}

void mcpauth__metrics_close(mcpauth__metrics *m)
{
    if (!m)
        return;
    release_slot(m);
    munmap(m->hdr, m->size);
    free(m);
}

/* A slot whose process is gone (or of another boot) is free. */
static int slot_dead(const mcpauth__metrics *m, const proc_slot *s, int64_t pid)
{
    if (pid <= 0)
        return 1;
    if (__atomic_load_n(&s->boot, __ATOMIC_ACQUIRE) != m->boot)
        return 1;
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

void mcpauth__metrics_claim(mcpauth__metrics *m, const char *program)
{
    if (!m || !m->writable)
        return;
    release_slot(m);
    int64_t mine = (int64_t)getpid();
    for (int i = 0; i < NPROCS; i++) {
        proc_slot *s = &m->procs[i];
        int64_t old = __atomic_load_n(&s->pid, __ATOMIC_ACQUIRE);
        if (old != 0 && !slot_dead(m, s, old))
            continue;
        /* pid -1 while the slot is being filled: nobody else takes it */
        if (!__atomic_compare_exchange_n(&s->pid, &old, -1, 0, __ATOMIC_ACQ_REL,
                                         __ATOMIC_RELAXED))
            continue;
        memset(s->program, 0, sizeof s->program);
        snprintf(s->program, sizeof s->program, "%s", program ? program : "");
        memset(s->version, 0, sizeof s->version);
        snprintf(s->version, sizeof s->version, "%s", PACKAGE_VERSION);
        __atomic_store_n(&s->boot, m->boot, __ATOMIC_RELEASE);
        __atomic_store_n(&s->pid, mine, __ATOMIC_RELEASE);
        m->slot = i;
        return;
    }
    /* all taken: this process is counted, just not listed */
}

static size_t index_of(const mcpauth__metrics *m, const mcpauth_resource *res)
{
    /* compared as addresses only: res may belong to another configuration */
    uintptr_t base = (uintptr_t)m->res, r = (uintptr_t)res;
    if (!res || !base || r < base || (r - base) % sizeof *res != 0)
        return m->nres;
    size_t i = (r - base) / sizeof *res;
    return i < m->nres ? i : m->nres;
}

void mcpauth__metrics_add_to(mcpauth__metrics *m, const mcpauth_resource *res, mcpauth__metric c,
                             int64_t n)
{
    if (!m || !m->writable || (unsigned)c >= MCPAUTH_M_COUNT)
        return;
    __atomic_fetch_add(&m->blocks[index_of(m, res)].c[c], (uint64_t)n, __ATOMIC_RELAXED);
}

void mcpauth__metrics_observe_in(mcpauth__metrics *m, const mcpauth_resource *res, mcpauth__hist h,
                                 long long ns)
{
    if (!m || !m->writable || (unsigned)h >= MCPAUTH_H_COUNT)
        return;
    if (ns < 0)
        ns = 0;
    size_t b = 0;
    while (b < NBOUNDS && ns > bounds_ns[b])
        b++;
    block *bl = &m->blocks[index_of(m, res)];
    __atomic_fetch_add(&bl->bucket[h][b], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&bl->sum_ns[h], (uint64_t)ns, __ATOMIC_RELAXED);
}

int64_t mcpauth__metrics_get(const mcpauth__metrics *m, const mcpauth_resource *res,
                             mcpauth__metric c)
{
    if (!m || (unsigned)c >= MCPAUTH_M_COUNT)
        return 0;
    return (int64_t)__atomic_load_n(&m->blocks[index_of(m, res)].c[c], __ATOMIC_RELAXED);
}

long long mcpauth__metrics_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ------------------------------------------------------ the process's own */

static mcpauth__metrics *g_metrics;
static int g_tried; /* atomic: attach ran (successfully or not) */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

static void at_exit(void)
{
    mcpauth__metrics *m = __atomic_load_n(&g_metrics, __ATOMIC_ACQUIRE);
    if (m)
        release_slot(m); /* the map stays: other threads may still count */
}

void mcpauth__metrics_attach(const mcpauth_config *cfg)
{
    if (__atomic_load_n(&g_tried, __ATOMIC_ACQUIRE))
        return;
    pthread_mutex_lock(&g_lock);
    if (!g_tried && cfg && cfg->metrics) {
        char path[4096], why[512] = "runtime_dir is not set or too long";
        mcpauth__metrics *m = NULL;
        if (mcpauth__metrics_path(cfg, path, sizeof path) == 0)
            m = mcpauth__metrics_open(path, cfg, why, sizeof why);
        if (m) {
            extern char *program_invocation_short_name;
            mcpauth__metrics_claim(m, program_invocation_short_name);
            __atomic_store_n(&g_metrics, m, __ATOMIC_RELEASE);
            atexit(at_exit);
        } else {
            mcpauth_log(MCPAUTH_LOG_WARN, "metrics_unavailable", "reason", why, "effect",
                        "this process is not counted (runtime_dir must be writable by the web "
                        "server's user)", NULL);
        }
    }
    __atomic_store_n(&g_tried, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&g_lock);
}

mcpauth__metrics *mcpauth__metrics_global(const mcpauth_config *cfg)
{
    mcpauth__metrics *m = __atomic_load_n(&g_metrics, __ATOMIC_ACQUIRE);
    return m && m->cfg == cfg ? m : NULL;
}

void mcpauth__metrics_add(const mcpauth_resource *res, mcpauth__metric c, int64_t n)
{
    mcpauth__metrics_add_to(__atomic_load_n(&g_metrics, __ATOMIC_ACQUIRE), res, c, n);
}

void mcpauth__metrics_observe(const mcpauth_resource *res, mcpauth__hist h, long long ns)
{
    mcpauth__metrics_observe_in(__atomic_load_n(&g_metrics, __ATOMIC_ACQUIRE), res, h, ns);
}

/* ------------------------------------------------------------- reasons */

/* The reason label of each refusal code is mcpauth_refusal_name's (the
 * one table, validate.c): what dashboards query, so a label never changes.
 * The counter of a code is its place among the labels (NO_TOKEN first),
 * which is also the layout of the file: codes are only ever added, before
 * MCPAUTH_REFUSAL_COUNT. */
#define REFUSAL_FIRST MCPAUTH_REFUSAL_NO_TOKEN
#define REFUSAL_LABELS (MCPAUTH_REFUSAL_COUNT - REFUSAL_FIRST)
_Static_assert(MCPAUTH_M_REFUSED + REFUSAL_LABELS <= MCPAUTH_M_CACHE_HIT,
               "room for every refusal counter");

static mcpauth_refusal counted_as(mcpauth_refusal r)
{
    return (unsigned)r < MCPAUTH_REFUSAL_COUNT && r >= REFUSAL_FIRST ? r : MCPAUTH_REFUSAL_OTHER;
}

/* The labels of the refusal counters, in their order: filled once from
 * mcpauth_refusal_name before the first rendering. */
static const char *refusal_labels[REFUSAL_LABELS];
static pthread_once_t refusal_labels_once = PTHREAD_ONCE_INIT;

static void refusal_labels_fill(void)
{
    for (int i = 0; i < REFUSAL_LABELS; i++)
        refusal_labels[i] = mcpauth_refusal_name((mcpauth_refusal)(REFUSAL_FIRST + i));
}

mcpauth__metric mcpauth__metrics_refused(mcpauth_refusal r)
{
    return (mcpauth__metric)(MCPAUTH_M_REFUSED + (counted_as(r) - REFUSAL_FIRST));
}

const char *mcpauth__metrics_refusal_label(mcpauth_refusal r)
{
    return mcpauth_refusal_name(counted_as(r));
}

/* --------------------------------------------------------------- CIDRs */

typedef struct {
    int family;
    unsigned char a[16];
} addr_t;

static int parse_addr(const char *s, addr_t *out)
{
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, s, out->a) == 1) {
        out->family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, s, out->a) != 1)
        return -1;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(out->a, mapped, sizeof mapped) == 0) {
        memmove(out->a, out->a + 12, 4);
        memset(out->a + 4, 0, 12);
        out->family = AF_INET;
    } else {
        out->family = AF_INET6;
    }
    return 0;
}

/* "ADDR" or "ADDR/BITS" into net and bits. */
static int parse_cidr(const char *cidr, addr_t *net, int *bits)
{
    char buf[64];
    const char *slash = strchr(cidr, '/');
    size_t n = slash ? (size_t)(slash - cidr) : strlen(cidr);
    if (n == 0 || n >= sizeof buf)
        return -1;
    memcpy(buf, cidr, n);
    buf[n] = '\0';
    if (parse_addr(buf, net) < 0)
        return -1;
    int max = net->family == AF_INET ? 32 : 128;
    *bits = max;
    if (slash) {
        char *end;
        errno = 0;
        long b = strtol(slash + 1, &end, 10);
        if (!slash[1] || *end || errno || b < 0 || b > max || slash[1] == '+' || slash[1] == '-')
            return -1;
        *bits = (int)b;
    }
    return 0;
}

int mcpauth__cidr_valid(const char *cidr)
{
    addr_t net;
    int bits;
    return cidr && parse_cidr(cidr, &net, &bits) == 0;
}

int mcpauth__cidr_match(const mcpauth_strlist *allow, const char *addr)
{
    addr_t a;
    if (!allow || !addr || parse_addr(addr, &a) < 0)
        return 0;
    for (size_t i = 0; i < allow->n; i++) {
        addr_t net;
        int bits;
        if (parse_cidr(allow->v[i], &net, &bits) < 0 || net.family != a.family)
            continue;
        int full = bits / 8, rest = bits % 8;
        if (memcmp(net.a, a.a, (size_t)full) != 0)
            continue;
        if (rest && ((net.a[full] ^ a.a[full]) & (0xff << (8 - rest)) & 0xff))
            continue;
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------ rendering */

typedef struct {
    char *buf;
    size_t len, cap;
} dbuf;

static void dadd(dbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void dadd(dbuf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        b->cap = b->cap * 2 + (size_t)n + 1;
        b->buf = mcpauth__xrealloc(b->buf, b->cap);
    }
}

/* A label value: backslash, double quote and newline escaped. */
static void dlabel(dbuf *b, const char *s)
{
    for (; s && *s; s++) {
        if (*s == '\\' || *s == '"')
            dadd(b, "\\%c", *s);
        else if (*s == '\n')
            dadd(b, "\\n");
        else
            dadd(b, "%c", *s);
    }
}

typedef struct {
    const char *name, *help, *type;
    int per_resource; /* 1: one series per resource, else the block of none */
    int first, n;     /* counters first .. first+n-1 */
    const char *label; /* the label telling them apart; NULL when n == 1 */
    const char *const *values;
} family;

static const char *const verdicts[] = {"allow", "no_token", "bad_request", "invalid_token",
                                       "insufficient_scope", "unavailable"};
static const char *const hitmiss[] = {"hit", "miss"};
static const char *const limits[] = {"address", "subject", "concurrency"};
static const char *const ss_ops[] = {"rate", "session", "revoked"}; /* mcpauth__ss_op */
static const char *const kinds[] = {"error", "timeout"};
static const char *const ends[] = {"done", "client_gone", "backend_error", "idle_timeout",
                                   "shutdown"};
static const char *const dirs[] = {"to_backend", "to_client"};
static const char *const results[] = {"ok", "failed"};

static const family families[] = {
    {"mcpauth_requests_total", "Token decisions by verdict (gate and proxy).", "counter", 1,
     MCPAUTH_M_REQ_ALLOW, 6, "verdict", verdicts},
    {"mcpauth_refusals_total", "Refused requests by reason.", "counter", 1, MCPAUTH_M_REFUSED,
     REFUSAL_LABELS, "reason", refusal_labels},
    {"mcpauth_cache_lookups_total", "Validation cache lookups.", "counter", 1,
     MCPAUTH_M_CACHE_HIT, 2, "result", hitmiss},
    {"mcpauth_cache_evictions_total",
     "Validation results pushed out of a full cache before they expired (raise cache_entries).",
     "counter", 1, MCPAUTH_M_CACHE_EVICTIONS, 1, NULL, NULL},
    {"mcpauth_shared_state_errors_total",
     "Requests that could not reach the shared state (shared_state = Redis), by what they needed.",
     "counter", 0, MCPAUTH_M_SHARED_STATE_ERRORS, 3, "op", ss_ops},
    {"mcpauth_rate_limited_total", "Requests refused with 429.", "counter", 1,
     MCPAUTH_M_RATE_ADDRESS, 3, "by", limits},
    {"mcpauth_backend_requests_total", "Requests relayed to the backend.", "counter", 1,
     MCPAUTH_M_BACKEND_REQUESTS, 1, NULL, NULL},
    {"mcpauth_backend_errors_total", "Backend exchanges that failed.", "counter", 1,
     MCPAUTH_M_BACKEND_ERRORS, 2, "kind", kinds},
    {"mcpauth_streams_open", "Event streams being relayed now.", "gauge", 1,
     MCPAUTH_M_STREAMS_OPEN, 1, NULL, NULL},
    {"mcpauth_stream_ends_total", "Relayed event streams that ended, by why.", "counter", 1,
     MCPAUTH_M_STREAM_END, MCPAUTH_SE_COUNT, "reason", ends},
    {"mcpauth_relayed_bytes_total", "Body bytes relayed.", "counter", 1,
     MCPAUTH_M_BYTES_TO_BACKEND, 2, "direction", dirs},
    {"mcpauth_jwks_fetches_total", "JWKS fetches, by result.", "counter", 0,
     MCPAUTH_M_JWKS_FETCHES, 2, "result", results},
    {"mcpauth_introspections_total", "Token introspection calls, by result.", "counter",
     0, MCPAUTH_M_INTROSPECTIONS, 2, "result", results},
    {"mcpauth_as_registrations_total", "Clients registered (RFC 7591).", "counter", 0,
     MCPAUTH_M_AS_REGISTRATIONS, 1, NULL, NULL},
    {"mcpauth_as_authorizations_total", "Authorization requests accepted.", "counter", 0,
     MCPAUTH_M_AS_AUTHORIZATIONS, 1, NULL, NULL},
    {"mcpauth_as_consents_total", "Consents given.", "counter", 0, MCPAUTH_M_AS_CONSENTS, 1, NULL,
     NULL},
    {"mcpauth_as_codes_issued_total", "Authorization codes issued.", "counter", 0,
     MCPAUTH_M_AS_CODES, 1, NULL, NULL},
    {"mcpauth_as_tokens_issued_total", "Access tokens issued.", "counter", 0, MCPAUTH_M_AS_TOKENS,
     1, NULL, NULL},
    {"mcpauth_as_refresh_rotations_total", "Refresh tokens rotated.", "counter", 0,
     MCPAUTH_M_AS_REFRESH_ROTATIONS, 1, NULL, NULL},
    {"mcpauth_as_refresh_reuse_total", "Reuse of a rotated refresh token detected.", "counter", 0,
     MCPAUTH_M_AS_REUSE_DETECTED, 1, NULL, NULL},
    {"mcpauth_as_revocations_total", "Tokens revoked (RFC 7009).", "counter", 0,
     MCPAUTH_M_AS_REVOCATIONS, 1, NULL, NULL},
    {"mcpauth_as_cimd_fetches_total", "Client ID metadata documents fetched.", "counter", 0,
     MCPAUTH_M_AS_CIMD_FETCHES, 1, NULL, NULL},
    {"mcpauth_as_cimd_refused_total", "Client ID metadata documents refused.", "counter", 0,
     MCPAUTH_M_AS_CIMD_REFUSED, 1, NULL, NULL},
};

static uint64_t load(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void labels(dbuf *b, const mcpauth__metrics *m, size_t blk, const family *f, int i,
                   const char *le)
{
    int any = 0;
    dadd(b, "{");
    if (f->per_resource && blk < m->nres) {
        dadd(b, "resource=\"");
        dlabel(b, m->cfg->resources[blk].name);
        dadd(b, "\"");
        any = 1;
    }
    if (f->label) {
        dadd(b, "%s%s=\"%s\"", any ? "," : "", f->label, f->values[i]);
        any = 1;
    }
    if (le) {
        dadd(b, "%s", any ? "," : "");
        dadd(b, "le=\"%s\"", le);
        any = 1;
    }
    if (!any)
        b->len--; /* the "{" */
    else
        dadd(b, "}");
}

static void render_family(dbuf *b, const mcpauth__metrics *m, const family *f)
{
    dadd(b, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, f->type);
    size_t first = f->per_resource ? 0 : m->nres, last = f->per_resource ? m->nres : m->nres + 1;
    if (f->per_resource && m->nres == 0)
        last = 1; /* no resource: the block of none, unlabelled */
    for (size_t blk = first; blk < last; blk++)
        for (int i = 0; i < f->n; i++) {
            dadd(b, "%s", f->name);
            labels(b, m, blk, f, i, NULL);
            uint64_t v = load(&m->blocks[blk].c[f->first + i]);
            if (!strcmp(f->type, "gauge"))
                dadd(b, " %lld\n", (long long)(int64_t)v);
            else
                dadd(b, " %llu\n", (unsigned long long)v);
        }
}

static void render_hist(dbuf *b, const mcpauth__metrics *m, mcpauth__hist h, const char *name,
                        const char *help)
{
    static const family none = {0};
    family f = none;
    f.per_resource = 1;
    dadd(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    size_t last = m->nres ? m->nres : 1;
    for (size_t blk = 0; blk < last; blk++) {
        uint64_t cum = 0;
        for (size_t i = 0; i <= NBOUNDS; i++) {
            char le[32];
            if (i < NBOUNDS)
                snprintf(le, sizeof le, "%g", (double)bounds_ns[i] / 1e9);
            else
                snprintf(le, sizeof le, "+Inf");
            cum += load(&m->blocks[blk].bucket[h][i]);
            dadd(b, "%s_bucket", name);
            labels(b, m, blk, &f, 0, le);
            dadd(b, " %llu\n", (unsigned long long)cum);
        }
        dadd(b, "%s_sum", name);
        labels(b, m, blk, &f, 0, NULL);
        dadd(b, " %.9f\n", (double)load(&m->blocks[blk].sum_ns[h]) / 1e9);
        dadd(b, "%s_count", name); /* from the buckets: consistent with them */
        labels(b, m, blk, &f, 0, NULL);
        dadd(b, " %llu\n", (unsigned long long)cum);
    }
}

typedef struct {
    long long rss, threads, fds;
} proc_usage;

static int read_proc(pid_t pid, proc_usage *u)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    u->rss = u->threads = u->fds = -1;
    while (fgets(line, sizeof line, f)) {
        long long v;
        if (sscanf(line, "VmRSS: %lld kB", &v) == 1)
            u->rss = v * 1024;
        else if (sscanf(line, "Threads: %lld", &v) == 1)
            u->threads = v;
    }
    fclose(f);
    snprintf(path, sizeof path, "/proc/%ld/fd", (long)pid);
    DIR *d = opendir(path);
    if (d) {
        u->fds = 0;
        struct dirent *e;
        while ((e = readdir(d)))
            u->fds += e->d_name[0] != '.';
        closedir(d);
    }
    return 0;
}

static void render_procs(dbuf *b, mcpauth__metrics *m)
{
    static const char *const names[] = {"mcpauth_process_resident_bytes",
                                        "mcpauth_process_threads", "mcpauth_process_open_fds"};
    static const char *const helps[] = {"Resident memory of an mcpauth process.",
                                        "Threads of an mcpauth process.",
                                        "Open file descriptors of an mcpauth process."};
    pid_t pids[NPROCS];
    char progs[NPROCS][32], vers[NPROCS][32];
    proc_usage use[NPROCS];
    int n = 0;
    for (int i = 0; i < NPROCS; i++) {
        proc_slot *s = &m->procs[i];
        int64_t pid = __atomic_load_n(&s->pid, __ATOMIC_ACQUIRE);
        if (pid == 0 || pid == -1)
            continue;
        if (slot_dead(m, s, pid)) {
            if (m->writable) /* reaped: the slot is free again */
                __atomic_compare_exchange_n(&s->pid, &pid, 0, 0, __ATOMIC_ACQ_REL,
                                            __ATOMIC_RELAXED);
            continue;
        }
        if (read_proc((pid_t)pid, &use[n]) < 0)
            continue;
        pids[n] = (pid_t)pid;
        memcpy(progs[n], s->program, sizeof progs[n]);
        progs[n][sizeof progs[n] - 1] = '\0';
        memcpy(vers[n], s->version, sizeof vers[n]);
        vers[n][sizeof vers[n] - 1] = '\0';
        n++;
    }
    dadd(b, "# HELP mcpauth_processes mcpauth processes counting (by program and version).\n"
            "# TYPE mcpauth_processes gauge\n");
    for (int i = 0; i < n; i++) {
        int seen = 0, count = 0;
        for (int j = 0; j < i; j++)
            seen |= !strcmp(progs[j], progs[i]) && !strcmp(vers[j], vers[i]);
        if (seen)
            continue;
        for (int j = i; j < n; j++)
            count += !strcmp(progs[j], progs[i]) && !strcmp(vers[j], vers[i]);
        dadd(b, "mcpauth_processes{program=\"");
        dlabel(b, progs[i]);
        dadd(b, "\",version=\"");
        dlabel(b, vers[i]);
        dadd(b, "\"} %d\n", count);
    }
    for (int k = 0; k < 3; k++) {
        dadd(b, "# HELP %s %s\n# TYPE %s gauge\n", names[k], helps[k], names[k]);
        for (int i = 0; i < n; i++) {
            long long v = k == 0 ? use[i].rss : k == 1 ? use[i].threads : use[i].fds;
            if (v < 0)
                continue;
            dadd(b, "%s{program=\"", names[k]);
            dlabel(b, progs[i]);
            dadd(b, "\",pid=\"%ld\"} %lld\n", (long)pids[i], v);
        }
    }
}

char *mcpauth__metrics_render(mcpauth__metrics *m, size_t *len)
{
    pthread_once(&refusal_labels_once, refusal_labels_fill);
    dbuf b = {mcpauth__xmalloc(8192), 0, 8192};
    b.buf[0] = '\0';
    dadd(&b, "# HELP mcpauth_info The mcpauth version.\n# TYPE mcpauth_info gauge\n"
             "mcpauth_info{version=\"%s\"} 1\n", PACKAGE_VERSION);
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        render_family(&b, m, &families[i]);
    render_hist(&b, m, MCPAUTH_H_VALIDATION, "mcpauth_validation_seconds",
                "Time to decide on a token.");
    render_hist(&b, m, MCPAUTH_H_BACKEND, "mcpauth_backend_seconds",
                "Time from sending a request to the backend to its response headers.");
    render_procs(&b, m);
    if (len)
        *len = b.len;
    return b.buf;
}
