/* See cache.h.  Sets of WAYS slots; a key maps to one set; a full set
 * evicts its entry closest to expiry.  Each set stripe has its own mutex so
 * threads rarely contend.
 *
 * The shared mode keeps the same scheme in an mmap'd file (see robust.h):
 * a header (magic, layout, sizes, a per-file secret, boot id, the stripes'
 * robust process-shared mutexes), then fixed-size slots.  A slot's key is
 * SHA-256(secret || token digest || resource), so neither the digest of a
 * token is stored nor can a client pick tokens that crowd one set.
 *
 * Why carrying on after EOWNERDEAD is sound: a put first marks its slot
 * unused, writes it, and marks it used last (ORDER), so a holder killed
 * half way leaves the slot empty or whole; a reader still checks a slot's
 * lengths, so even a damaged one is never read out of bounds. */
#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "alloc.h"
#include "cache.h"
#include "clock.h"
#include "robust.h"

#define WAYS 8
#define STRIPES 64

typedef struct {
    unsigned char key[32];
    unsigned resource;
    int used;
    int positive;
    time_t expires;
    long long exp;
    char *data; /* "subject\0client_id\0issuer\0scope\0" or the reason */
} slot;

typedef struct shared shared;

struct mcpauth_cache {
    size_t nsets;
    slot *slots;
    pthread_mutex_t locks[STRIPES];
    shared *sh; /* the shared mode: the above stay unused */
};

static void shared_close(shared *sh);
static int shared_get(shared *sh, const unsigned char key[32], unsigned resource, time_t now,
                      int *positive, mcpauth_identity *id, char *reason, size_t reasonlen);
static int shared_put(shared *sh, const unsigned char key[32], unsigned resource,
                      time_t expires, int positive, const mcpauth_identity *id,
                      const char *reason);
static size_t shared_count(shared *sh);

mcpauth_cache *mcpauth__cache_new(size_t entries)
{
    mcpauth_cache *c = mcpauth__xcalloc(1, sizeof *c);
    c->nsets = (entries + WAYS - 1) / WAYS;
    if (c->nsets)
        c->slots = mcpauth__xcalloc(c->nsets * WAYS, sizeof *c->slots);
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&c->locks[i], NULL);
    return c;
}

void mcpauth__cache_free(mcpauth_cache *c)
{
    if (!c)
        return;
    if (c->sh) {
        shared_close(c->sh);
        free(c);
        return;
    }
    for (size_t i = 0; i < c->nsets * WAYS; i++)
        free(c->slots[i].data);
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&c->locks[i]);
    free(c->slots);
    free(c);
}

/* The key is already a SHA-256: its first bytes are a uniform hash. */
static size_t set_of(const mcpauth_cache *c, const unsigned char key[32], unsigned resource)
{
    unsigned long long h;
    memcpy(&h, key, sizeof h);
    return (size_t)((h ^ (resource * 0x9e3779b97f4a7c15ULL)) % c->nsets);
}

static slot *find(mcpauth_cache *c, size_t set, const unsigned char key[32], unsigned resource)
{
    slot *s = &c->slots[set * WAYS];
    for (int i = 0; i < WAYS; i++)
        if (s[i].used && s[i].resource == resource && memcmp(s[i].key, key, 32) == 0)
            return &s[i];
    return NULL;
}

static void copy_field(char *dst, size_t cap, const char **src)
{
    size_t n = strlen(*src);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, *src, n);
    dst[n] = '\0';
    *src += strlen(*src) + 1;
}

int mcpauth__cache_get(mcpauth_cache *c, const unsigned char key[32], unsigned resource, time_t now,
                      int *positive, mcpauth_identity *id, char *reason, size_t reasonlen)
{
    if (c && c->sh)
        return shared_get(c->sh, key, resource, now, positive, id, reason, reasonlen);
    if (!c || !c->nsets)
        return 0;
    size_t set = set_of(c, key, resource);
    pthread_mutex_t *lock = &c->locks[set % STRIPES];
    pthread_mutex_lock(lock);
    slot *s = find(c, set, key, resource);
    int hit = s && s->expires > now;
    if (hit) {
        *positive = s->positive;
        const char *p = s->data;
        if (s->positive) {
            copy_field(id->subject, sizeof id->subject, &p);
            copy_field(id->client_id, sizeof id->client_id, &p);
            copy_field(id->issuer, sizeof id->issuer, &p);
            copy_field(id->scope, sizeof id->scope, &p);
            id->exp = s->exp;
        } else if (reason && reasonlen) {
            copy_field(reason, reasonlen, &p);
        }
    }
    pthread_mutex_unlock(lock);
    return hit;
}

static char *pack(int positive, const mcpauth_identity *id, const char *reason)
{
    if (!positive) {
        return mcpauth__xstrdup(reason ? reason : "");
    }
    size_t a = strlen(id->subject) + 1, b = strlen(id->client_id) + 1, c = strlen(id->issuer) + 1,
           d = strlen(id->scope) + 1;
    char *p = mcpauth__xmalloc(a + b + c + d);
    memcpy(p, id->subject, a);
    memcpy(p + a, id->client_id, b);
    memcpy(p + a + b, id->issuer, c);
    memcpy(p + a + b + c, id->scope, d);
    return p;
}

int mcpauth__cache_put(mcpauth_cache *c, const unsigned char key[32], unsigned resource,
                       time_t expires, int positive, const mcpauth_identity *id,
                       const char *reason)
{
    if (c && c->sh)
        return shared_put(c->sh, key, resource, expires, positive, id, reason);
    if (!c || !c->nsets)
        return 0;
    int evicted = 0;
    char *data = pack(positive, id, reason);
    size_t set = set_of(c, key, resource);
    pthread_mutex_t *lock = &c->locks[set % STRIPES];
    pthread_mutex_lock(lock);
    slot *s = find(c, set, key, resource);
    if (!s) {
        slot *row = &c->slots[set * WAYS];
        s = &row[0];
        for (int i = 0; i < WAYS; i++) {
            if (!row[i].used) {
                s = &row[i];
                break;
            }
            if (row[i].expires < s->expires)
                s = &row[i];
        }
        evicted = s->used && s->expires > mcpauth__now();
    }
    free(s->data);
    memcpy(s->key, key, 32);
    s->resource = resource;
    s->used = 1;
    s->positive = positive;
    s->expires = expires;
    s->exp = positive ? id->exp : 0;
    s->data = data;
    pthread_mutex_unlock(lock);
    return evicted;
}

size_t mcpauth__cache_count(mcpauth_cache *c)
{
    size_t n = 0;
    if (!c)
        return 0;
    if (c->sh)
        return shared_count(c->sh);
    for (size_t set = 0; set < c->nsets; set++) {
        pthread_mutex_lock(&c->locks[set % STRIPES]);
        for (int i = 0; i < WAYS; i++)
            n += c->slots[set * WAYS + i].used;
        pthread_mutex_unlock(&c->locks[set % STRIPES]);
    }
    return n;
}

/* ------------------------------------------------------------ shared mode */

#define SH_MAGIC "mcpaVC\n\0"
/* bump on any change to the structs below, or to what a slot's text means
 * (2: a refusal's text starts with its code, see validate.c neg_pack), so
 * processes of two versions never read each other's slots */
#define SH_VERSION 2u
#define SH_STRIPES 64
#define SH_MAX ((size_t)1 << 24)

#define ORDER() __atomic_signal_fence(__ATOMIC_SEQ_CST)

struct sh_header {
    char magic[8];
    uint32_t version;
    uint32_t retired; /* offset 12 in every version: replaced, reopen the path */
    /* the ABI the file was laid out with: 32- and 64-bit builds differ */
    uint32_t mutex_size, slot_size, stripes, pad;
    uint64_t nslots, nsets, total;
    unsigned char secret[32];
    char boot[MCPAUTH__BOOT_ID_LEN];
    pthread_mutex_t locks[SH_STRIPES];
};

typedef struct {
    uint32_t used;      /* set last */
    int32_t positive;
    uint32_t len;       /* bytes of data */
    uint32_t pad;
    int64_t expires;
    int64_t exp;
    unsigned char key[32];
    char data[MCPAUTH__CACHE_SHARED_DATA]; /* as slot.data */
} sh_slot;

typedef struct smap {
    struct sh_header *hdr;
    sh_slot *slots;
    size_t size, nslots, nsets; /* our copies: a damaged header cannot move us */
    struct smap *next; /* older maps, unmapped at close (other threads may use them) */
} smap;

struct shared {
    char *path;
    size_t nslots;       /* what this process asked for */
    pthread_mutex_t mu;  /* guards reopening */
    smap *cur;           /* atomic */
    time_t reopen_after; /* a failed reopen is not retried on every call */
};

static size_t sh_slots_off(void)
{
    return (sizeof(struct sh_header) + 63) & ~(size_t)63;
}

static size_t sh_total(size_t nslots)
{
    return sh_slots_off() + nslots * sizeof(sh_slot);
}

/* Every set holds WAYS to 2 * WAYS - 1 slots, together exactly nslots. */
static size_t sh_nsets(size_t nslots)
{
    return nslots < WAYS ? 1 : nslots / WAYS;
}

static void sh_expected(struct sh_header *h, size_t nslots)
{
    memset(h, 0, sizeof *h);
    memcpy(h->magic, SH_MAGIC, sizeof h->magic);
    h->version = SH_VERSION;
    h->mutex_size = sizeof(pthread_mutex_t);
    h->slot_size = sizeof(sh_slot);
    h->stripes = SH_STRIPES;
    h->nslots = nslots;
    h->nsets = sh_nsets(nslots);
    h->total = sh_total(nslots);
}

/* What sh_state is asked: nslots, or with any_size the file's own size
 * when it is valid (filled in). */
typedef struct {
    size_t nslots;
    int any_size;
} sh_want;

static int sh_state(int fd, const struct stat *st, void *arg)
{
    sh_want *w = arg;
    struct sh_header h, want;
    if (st->st_size < (off_t)sizeof h || pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h ||
        memcmp(h.magic, SH_MAGIC, sizeof h.magic) != 0)
        return 0;
    if (w->any_size && h.nslots >= 1 && h.nslots <= SH_MAX)
        w->nslots = (size_t)h.nslots;
    sh_expected(&want, w->nslots);
    if (h.version != want.version || h.retired || h.mutex_size != want.mutex_size ||
        h.slot_size != want.slot_size || h.stripes != want.stripes || h.nslots != want.nslots ||
        h.nsets != want.nsets || h.total != want.total || (uint64_t)st->st_size != want.total)
        return -1;
    return 1;
}

static int sh_init(int fd, const void *arg, char *err, size_t errlen)
{
    size_t nslots = ((const sh_want *)arg)->nslots;
    if (ftruncate(fd, 0) != 0 || ftruncate(fd, (off_t)sh_total(nslots)) != 0) {
        snprintf(err, errlen, "cannot size the file: %s", strerror(errno));
        return -1;
    }
    struct sh_header *h = mmap(NULL, sizeof *h, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (h == MAP_FAILED) {
        snprintf(err, errlen, "mmap: %s", strerror(errno));
        return -1;
    }
    sh_expected(h, nslots);
    int rc = 0;
    for (int i = 1; i < SH_STRIPES && rc == 0; i++)
        rc = mcpauth__robust_mutex_init(&h->locks[i]);
    if (rc != 0)
        snprintf(err, errlen, "cannot set up a robust process-shared mutex");
    else /* stripe 0 and the magic last */
        rc = mcpauth__shmfile_seal(h->magic, SH_MAGIC, h->boot, h->secret, sizeof h->secret,
                                   &h->locks[0], err, errlen);
    munmap(h, sizeof *h);
    return rc;
}

static const mcpauth__shmfile_kind sh_kind = {
    .header_size = sizeof(struct sh_header),
    .lock_off = offsetof(struct sh_header, locks),
    .nlocks = SH_STRIPES,
    .boot_off = offsetof(struct sh_header, boot),
    .retired_off = offsetof(struct sh_header, retired),
    .state = sh_state,
    .init = sh_init,
};

static smap *sh_map(const char *path, size_t nslots, int any_size, char *err, size_t errlen)
{
    sh_want w = {nslots, any_size};
    int fd = mcpauth__shmfile_open(path, &sh_kind, &w, err, errlen);
    if (fd < 0)
        return NULL;
    nslots = w.nslots;
    size_t size = sh_total(nslots);
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) {
        snprintf(err, errlen, "%s: mmap: %s", path, strerror(e));
        return NULL;
    }
    smap *m = mcpauth__xcalloc(1, sizeof *m);
    m->hdr = p;
    m->slots = (sh_slot *)(void *)((char *)p + sh_slots_off());
    m->size = size;
    m->nslots = nslots;
    m->nsets = sh_nsets(nslots);
    return m;
}

mcpauth_cache *mcpauth__cache_open_shared(const char *path, size_t entries, char *err,
                                          size_t errlen)
{
    char dummy[1];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    if (!path || !*path) {
        snprintf(err, errlen, "no path for the shared validation cache");
        return NULL;
    }
    if (entries < 1 || entries > SH_MAX) {
        snprintf(err, errlen, "the shared validation cache holds 1 to %zu entries", SH_MAX);
        return NULL;
    }
    smap *m = sh_map(path, entries, 0, err, errlen);
    if (!m)
        return NULL;
    mcpauth_cache *c = mcpauth__xcalloc(1, sizeof *c);
    shared *sh = c->sh = mcpauth__xcalloc(1, sizeof *sh);
    sh->path = mcpauth__xstrdup(path);
    sh->nslots = entries;
    sh->cur = m;
    pthread_mutex_init(&sh->mu, NULL);
    return c;
}

static void shared_close(shared *sh)
{
    if (!sh)
        return;
    for (smap *m = sh->cur, *next; m; m = next) {
        next = m->next;
        munmap(m->hdr, m->size);
        free(m);
    }
    pthread_mutex_destroy(&sh->mu);
    free(sh->path);
    free(sh);
}

/* The current map; when another process has replaced the file (another
 * layout, or a damaged one), the path is mapped again first. */
static smap *sh_current(shared *sh, time_t now)
{
    smap *m = __atomic_load_n(&sh->cur, __ATOMIC_ACQUIRE);
    if (!__atomic_load_n(&m->hdr->retired, __ATOMIC_ACQUIRE))
        return m;
    pthread_mutex_lock(&sh->mu);
    m = sh->cur;
    if (m->hdr->retired && now >= sh->reopen_after) {
        char err[256];
        /* whatever size the replacer chose: two processes asking for
         * different sizes must not replace the file back and forth */
        smap *n = sh_map(sh->path, sh->nslots, 1, err, sizeof err);
        if (n) {
            n->next = m;
            __atomic_store_n(&sh->cur, n, __ATOMIC_RELEASE);
            m = n;
        } else {
            sh->reopen_after = now + 1; /* the old map still works, unshared */
        }
    }
    pthread_mutex_unlock(&sh->mu);
    return m;
}

static void sh_bounds(const smap *m, size_t set, size_t *first, size_t *end)
{
    *first = (size_t)((uint64_t)set * m->nslots / m->nsets);
    *end = (size_t)((uint64_t)(set + 1) * m->nslots / m->nsets);
}

/* The slot key, and the first of the set's slots and their number. */
static sh_slot *sh_set(smap *m, const unsigned char key[32], unsigned resource,
                       unsigned char h[32], size_t *nways, pthread_mutex_t **lock)
{
    unsigned char buf[32 + 32 + sizeof resource];
    memcpy(buf, m->hdr->secret, 32);
    memcpy(buf + 32, key, 32);
    memcpy(buf + 64, &resource, sizeof resource);
    SHA256(buf, sizeof buf, h);
    uint64_t v;
    memcpy(&v, h, sizeof v);
    size_t set = (size_t)(v % m->nsets), first, end;
    sh_bounds(m, set, &first, &end);
    *nways = end - first;
    *lock = &m->hdr->locks[set % SH_STRIPES];
    return &m->slots[first];
}

/* Copies the field at *pos of data (len bytes) into dst, truncated to cap
 * like copy_field; -1 when the slot holds no NUL-terminated field there. */
static int sh_field(const char *data, size_t len, size_t *pos, char *dst, size_t cap)
{
    const char *p = data + *pos, *nul = *pos < len ? memchr(p, '\0', len - *pos) : NULL;
    if (!nul)
        return -1;
    size_t n = (size_t)(nul - p);
    *pos += n + 1;
    if (!dst || !cap)
        return 0;
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, p, n);
    dst[n] = '\0';
    return 0;
}

static int shared_get(shared *sh, const unsigned char key[32], unsigned resource, time_t now,
                      int *positive, mcpauth_identity *id, char *reason, size_t reasonlen)
{
    smap *m = sh_current(sh, now);
    unsigned char h[32];
    size_t nways;
    pthread_mutex_t *lock;
    sh_slot *row = sh_set(m, key, resource, h, &nways, &lock);
    if (mcpauth__robust_lock(lock) != 0)
        return 0;
    int hit = 0;
    for (size_t i = 0; i < nways; i++) {
        sh_slot *s = &row[i];
        if (s->used != 1 || CRYPTO_memcmp(s->key, h, 32) != 0)
            continue;
        if (s->expires <= (int64_t)now)
            break;
        size_t len = s->len <= sizeof s->data ? s->len : 0, pos = 0;
        int bad;
        if (s->positive) {
            bad = sh_field(s->data, len, &pos, id->subject, sizeof id->subject) ||
                  sh_field(s->data, len, &pos, id->client_id, sizeof id->client_id) ||
                  sh_field(s->data, len, &pos, id->issuer, sizeof id->issuer) ||
                  sh_field(s->data, len, &pos, id->scope, sizeof id->scope);
            id->exp = s->exp;
        } else {
            bad = sh_field(s->data, len, &pos, reason, reasonlen);
        }
        if (bad) { /* damaged: forget it rather than answer from it */
            s->used = 0;
            if (s->positive)
                memset(id, 0, sizeof *id);
            break;
        }
        *positive = s->positive != 0;
        hit = 1;
        break;
    }
    pthread_mutex_unlock(lock);
    return hit;
}

/* slot.data's layout into buf: bytes used, or 0 when it does not fit. */
static size_t sh_pack(char *buf, size_t cap, int positive, const mcpauth_identity *id,
                      const char *reason)
{
    if (!positive) {
        size_t n = strlen(reason ? reason : "");
        if (n >= cap)
            n = cap - 1; /* reasons are cut, like any copy out */
        memcpy(buf, reason ? reason : "", n);
        buf[n] = '\0';
        return n + 1;
    }
    const char *f[4] = {id->subject, id->client_id, id->issuer, id->scope};
    size_t pos = 0;
    for (int i = 0; i < 4; i++) {
        size_t n = strnlen(f[i], cap) + 1;
        if (pos + n > cap)
            return 0; /* an identity is never cut: it is not stored */
        memcpy(buf + pos, f[i], n - 1);
        buf[pos + n - 1] = '\0';
        pos += n;
    }
    return pos;
}

static int shared_put(shared *sh, const unsigned char key[32], unsigned resource,
                      time_t expires, int positive, const mcpauth_identity *id,
                      const char *reason)
{
    int evicted = 0;
    char data[MCPAUTH__CACHE_SHARED_DATA];
    size_t len = sh_pack(data, sizeof data, positive, id, reason);
    time_t now = mcpauth__now();
    smap *m = sh_current(sh, now);
    unsigned char h[32];
    size_t nways;
    pthread_mutex_t *lock;
    sh_slot *row = sh_set(m, key, resource, h, &nways, &lock);
    if (mcpauth__robust_lock(lock) != 0)
        return 0;
    sh_slot *s = NULL;
    for (size_t i = 0; i < nways && !s; i++)
        if (row[i].used == 1 && CRYPTO_memcmp(row[i].key, h, 32) == 0)
            s = &row[i];
    if (!s && len) {
        /* a free slot, else the one closest to expiry */
        s = &row[0];
        for (size_t i = 0; i < nways; i++) {
            if (row[i].used != 1) {
                s = &row[i];
                break;
            }
            if (row[i].expires < s->expires)
                s = &row[i];
        }
        evicted = s->used == 1 && s->expires > (int64_t)now;
    }
    if (s) {
        s->used = 0;
        ORDER();
        if (len) { /* else an older answer for this key is dropped */
            memcpy(s->key, h, 32);
            s->positive = positive != 0;
            s->expires = (int64_t)expires;
            s->exp = positive ? id->exp : 0;
            s->len = (uint32_t)len;
            memcpy(s->data, data, len);
            ORDER();
            s->used = 1;
        }
    }
    pthread_mutex_unlock(lock);
    return evicted;
}

static size_t shared_count(shared *sh)
{
    smap *m = sh_current(sh, mcpauth__now());
    size_t n = 0;
    for (size_t set = 0; set < m->nsets; set++) {
        pthread_mutex_t *lock = &m->hdr->locks[set % SH_STRIPES];
        if (mcpauth__robust_lock(lock) != 0)
            continue;
        size_t first, end;
        sh_bounds(m, set, &first, &end);
        for (size_t i = first; i < end; i++)
            n += m->slots[i].used == 1;
        pthread_mutex_unlock(lock);
    }
    return n;
}
