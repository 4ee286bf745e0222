/* See revoked.h.  The file is opened, set up and replaced like the other
 * shared files (robust.c: header with magic and layout, per-file secret,
 * boot id, robust process-shared mutex, created 0600 under flock, a file of
 * another layout replaced by rename); readers map it read-only
 * (mcpauth-gate may run where runtime_dir is read-only) and take no lock.
 *
 * Lock-free reads: a slot is {key[2], expires}.  A writer filling a slot
 * first stores expires = 0, then the key, then the expiry with release
 * order; a reader loads the expiry with acquire order and only then the
 * key.  Only free or expired slots are ever refilled, so a live entry a
 * reader finds stays put.  A writer replacing the file with one of another
 * layout sets `retired` in the old header; readers then reopen the path.
 *
 * Why carrying on after EOWNERDEAD is sound: an add changes one slot in
 * the order above and then the counters; a holder killed half way leaves
 * the slot empty or whole. */
#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>


#include <mcpauth/log.h>

#include "alloc.h"
#include "robust.h"
#include "revoked.h"
#include "state.h"

#define MAGIC "mcpaREV\n"
#define LAYOUT_VERSION 1u
#define WINDOW 32
#define MIN_SLOTS ((size_t)WINDOW)
#define MAX_SLOTS ((size_t)1 << 24)
/* config.c allows clock_leeway up to 600 s: a token is accepted that long
 * after exp, so its entry must live as long. */
#define LEEWAY_MAX 600

#define ORDER() __atomic_signal_fence(__ATOMIC_SEQ_CST)

struct header {
    char magic[8];
    uint32_t version;
    uint32_t mutex_size, slot_size, pad0;
    uint64_t nslots, total;
    unsigned char secret[32];
    char boot[MCPAUTH__BOOT_ID_LEN];
    uint64_t generation;     /* atomic: +1 per add */
    uint32_t retired;        /* atomic: replaced by a file of another layout */
    uint32_t pad1;
    int64_t overflow_until;  /* atomic: an entry was given up; all "revoked" until then */
    pthread_mutex_t lock;
};

typedef struct {
    uint64_t key[2];  /* first 16 bytes of digest XOR the file's secret */
    int64_t expires;  /* 0: free */
    int64_t pad;
} slot;

typedef struct map {
    struct header *hdr;
    slot *slots;
    size_t nslots, size;
    struct map *next; /* older maps, unmapped only at close (readers may hold them) */
} map;

struct mcpauth__revoked {
    mcpauth__redis *redis; /* shared_state = Redis: everything below unused */
    char *path;
    int writable;
    size_t want_slots;
    pthread_mutex_t mu;   /* guards reopening */
    map *cur;             /* atomic */
    map *old;
    int logged_missing;
};

static size_t slots_off(void)
{
    return (sizeof(struct header) + 63) & ~(size_t)63;
}

static size_t total_size(size_t nslots)
{
    return slots_off() + nslots * sizeof(slot);
}

static void fill_expected(struct header *h, size_t nslots)
{
    memset(h, 0, sizeof *h);
    memcpy(h->magic, MAGIC, sizeof h->magic);
    h->version = LAYOUT_VERSION;
    h->mutex_size = sizeof(pthread_mutex_t);
    h->slot_size = sizeof(slot);
    h->nslots = nslots;
    h->total = total_size(nslots);
}

/* 1 ours with the layout for *nslots (0: any valid size, filled in), -1
 * ours but another layout, 0 not ours. */
static int file_state(int fd, const struct stat *st, void *nslots)
{
    size_t *n = nslots;
    struct header h, want;
    if (st->st_size < (off_t)sizeof h || pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h)
        return 0;
    if (memcmp(h.magic, MAGIC, sizeof h.magic) != 0)
        return 0;
    if (!*n && h.nslots >= MIN_SLOTS && h.nslots <= MAX_SLOTS)
        *n = (size_t)h.nslots;
    fill_expected(&want, *n);
    if (h.version != want.version || h.mutex_size != want.mutex_size ||
        h.slot_size != want.slot_size || h.nslots != want.nslots || h.total != want.total ||
        (uint64_t)st->st_size != want.total || h.retired)
        return -1;
    return 1;
}

/* Zero-filled, fresh header, the magic written last. */
static int init_file(int fd, const void *nslots, char *err, size_t errlen)
{
    size_t n = *(const size_t *)nslots;
    struct header *h = mcpauth__shmfile_fresh(fd, total_size(n), sizeof *h, err, errlen);
    if (!h)
        return -1;
    fill_expected(h, n);
    int rc = mcpauth__shmfile_seal(h->magic, MAGIC, h->boot, h->secret, sizeof h->secret,
                                   &h->lock, err, errlen);
    munmap(h, sizeof *h);
    return rc;
}

/* A replaced file is marked retired, so readers mapping it reopen the
 * path. */
static const mcpauth__shmfile_kind revoked_kind = {
    .header_size = sizeof(struct header),
    .lock_off = offsetof(struct header, lock),
    .nlocks = 1,
    .boot_off = offsetof(struct header, boot),
    .retired_off = offsetof(struct header, retired),
    .state = file_state,
    .init = init_file,
    .what = "a revocation list",
};

static map *map_open(const char *path, int writable, size_t nslots, char *err, size_t errlen)
{
    int fd = writable ? mcpauth__shmfile_open(path, &revoked_kind, &nslots, err, errlen)
                      : mcpauth__shmfile_open_ro(path, &revoked_kind, &nslots, err, errlen);
    if (fd < 0)
        return NULL;
    size_t size = total_size(nslots);
    void *p = mmap(NULL, size, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) {
        snprintf(err, errlen, "%s: mmap: %s", path, strerror(e));
        return NULL;
    }
    map *m = mcpauth__xcalloc(1, sizeof *m);
    m->hdr = p;
    m->slots = (slot *)((char *)p + slots_off());
    m->nslots = nslots;
    m->size = size;
    return m;
}

int mcpauth__revoked_path(const mcpauth_config *cfg, char *buf, size_t cap)
{
    const char *dir = cfg->runtime_dir ? cfg->runtime_dir : "";
    int n = snprintf(buf, cap, "%s/%s", dir, MCPAUTH__REVOKED_FILE);
    return n < 0 || (size_t)n >= cap || !*dir ? -1 : 0;
}

static mcpauth__revoked *handle_new(const char *path, int writable, size_t slots)
{
    mcpauth__revoked *r = mcpauth__xcalloc(1, sizeof *r);
    r->path = mcpauth__xstrdup(path);
    r->writable = writable;
    r->want_slots = slots;
    pthread_mutex_init(&r->mu, NULL);
    return r;
}

mcpauth__revoked *mcpauth__revoked_open_rw(const char *path, size_t slots, char *err,
                                           size_t errlen)
{
    char dummy[1];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    if (!path || !*path) {
        snprintf(err, errlen, "no path for the revocation list");
        return NULL;
    }
    if (slots < MIN_SLOTS || slots > MAX_SLOTS) {
        snprintf(err, errlen, "the revocation list needs %zu to %zu slots", MIN_SLOTS, MAX_SLOTS);
        return NULL;
    }
    map *m = map_open(path, 1, slots, err, errlen);
    if (!m)
        return NULL;
    mcpauth__revoked *r = handle_new(path, 1, slots);
    r->cur = m;
    return r;
}

mcpauth__revoked *mcpauth__revoked_open_ro(const char *path, char *err, size_t errlen)
{
    char dummy[1];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    mcpauth__revoked *r = handle_new(path ? path : "", 0, 0);
    r->cur = path && *path ? map_open(path, 0, 0, err, errlen) : NULL;
    if (!r->cur && !err[0])
        snprintf(err, errlen, "no path for the revocation list");
    r->logged_missing = !r->cur; /* the caller logs err */
    return r;
}

mcpauth__revoked *mcpauth__revoked_open(const mcpauth_config *cfg, int writable, char *err,
                                        size_t errlen)
{
    char dummy[1];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    if (cfg->shared_state && strcmp(cfg->shared_state, "shm") != 0) {
        mcpauth__redis *rd =
            mcpauth__redis_open(cfg->shared_state, cfg->shared_state_timeout, err, errlen);
        if (!rd) {
            if (writable)
                return NULL;
            /* a reader still gets a handle, answering "cannot tell" */
            return handle_new("", 0, 0);
        }
        mcpauth__revoked *r = handle_new("", writable, 0);
        r->redis = rd;
        return r;
    }
    char path[4096];
    if (mcpauth__revoked_path(cfg, path, sizeof path) != 0) {
        snprintf(err, errlen, "runtime_dir is not set or too long");
        return writable ? NULL : mcpauth__revoked_open_ro(NULL, NULL, 0);
    }
    return writable ? mcpauth__revoked_open_rw(path, MCPAUTH__REVOKED_SLOTS, err, errlen)
                    : mcpauth__revoked_open_ro(path, err, errlen);
}

int mcpauth__revoked_is_redis(const mcpauth__revoked *r)
{
    return r && r->redis;
}

void mcpauth__revoked_close(mcpauth__revoked *r)
{
    if (!r)
        return;
    mcpauth__redis_close(r->redis);
    map *m = r->cur;
    if (m) {
        m->next = r->old;
        r->old = m;
    }
    for (m = r->old; m;) {
        map *next = m->next;
        munmap(m->hdr, m->size);
        free(m);
        m = next;
    }
    pthread_mutex_destroy(&r->mu);
    free(r->path);
    free(r);
}

/* The current map, reopened when it was retired or (readers) missing or
 * unusable, so a file created by the AS after we started is found at the
 * next request. */
static map *current(mcpauth__revoked *r)
{
    map *m = __atomic_load_n(&r->cur, __ATOMIC_ACQUIRE);
    if (m && !__atomic_load_n(&m->hdr->retired, __ATOMIC_ACQUIRE))
        return m;
    if (!r->path[0]) /* no runtime_dir: nothing to open, ever */
        return NULL;
    /* One opener at a time; the others fail closed meanwhile rather than
     * queue (a missing file costs one failed open() per request). */
    if (r->writable)
        pthread_mutex_lock(&r->mu);
    else if (pthread_mutex_trylock(&r->mu) != 0)
        return NULL;
    m = r->cur;
    if (!m || m->hdr->retired) {
        char err[512];
        map *fresh = map_open(r->path, r->writable, r->want_slots, err, sizeof err);
        if (fresh) {
            if (m) {
                m->next = r->old;
                r->old = m;
            }
            __atomic_store_n(&r->cur, fresh, __ATOMIC_RELEASE);
            mcpauth_log(MCPAUTH_LOG_INFO, "revocation_list_opened", "path", r->path, NULL);
            r->logged_missing = 0;
            m = fresh;
        } else {
            if (!r->logged_missing)
                mcpauth_log(MCPAUTH_LOG_ERROR, "revocation_list_unavailable", "reason", err,
                            "effect", "tokens of the built-in authorization server are refused",
                            NULL);
            r->logged_missing = 1;
            m = m && !m->hdr->retired ? m : NULL;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return m;
}

/* digest is already SHA-256 of the token, so uniform: mixing in the file's
 * secret with XOR keeps slot positions unpredictable at no cost (a second
 * SHA-256 here cost more than the rest of a cached validation). */
static void keyed(const map *m, const unsigned char digest[32], uint64_t key[2], size_t *start)
{
    uint64_t d[3], k[3];
    memcpy(d, digest, sizeof d);
    memcpy(k, m->hdr->secret, sizeof k);
    key[0] = d[0] ^ k[0];
    key[1] = d[1] ^ k[1];
    *start = (size_t)((d[2] ^ k[2]) % m->nslots);
}

int mcpauth__revoked_has(mcpauth__revoked *r, const unsigned char digest[32], time_t now)
{
    if (r && r->redis) {
        int rc = mcpauth__redis_revoked_has(r->redis, digest, now);
        if (rc == MCPAUTH__STATE_UNAVAILABLE) {
            mcpauth__state_count_error(NULL, MCPAUTH__SS_REVOKED);
            return -1;
        }
        return rc;
    }
    map *m = r ? current(r) : NULL;
    if (!m)
        return -1;
    if (__atomic_load_n(&m->hdr->overflow_until, __ATOMIC_ACQUIRE) > (int64_t)now)
        return 1;
    uint64_t key[2];
    size_t start;
    keyed(m, digest, key, &start);
    for (size_t i = 0; i < WINDOW; i++) {
        slot *s = &m->slots[(start + i) % m->nslots];
        if (__atomic_load_n(&s->expires, __ATOMIC_ACQUIRE) <= (int64_t)now)
            continue;
        if (__atomic_load_n(&s->key[0], __ATOMIC_RELAXED) == key[0] &&
            __atomic_load_n(&s->key[1], __ATOMIC_RELAXED) == key[1])
            return 1;
    }
    return 0;
}

static int lock(map *m)
{
    return mcpauth__robust_lock(&m->hdr->lock);
}

int mcpauth__revoked_add(mcpauth__revoked *r, const unsigned char digest[32], time_t token_exp,
                         time_t now)
{
    if (r && r->redis) {
        if (!r->writable)
            return -1;
        if (mcpauth__redis_revoked_add(r->redis, digest, token_exp + LEEWAY_MAX) != 0) {
            mcpauth__state_count_error(NULL, MCPAUTH__SS_REVOKED);
            return -1;
        }
        return 0;
    }
    map *m = r && r->writable ? current(r) : NULL;
    if (!m || lock(m) != 0)
        return -1;
    int64_t until = (int64_t)token_exp + LEEWAY_MAX;
    uint64_t key[2];
    size_t start;
    keyed(m, digest, key, &start);
    slot *hit = NULL, *freeslot = NULL, *victim = NULL;
    for (size_t i = 0; i < WINDOW && !hit; i++) {
        slot *s = &m->slots[(start + i) % m->nslots];
        int64_t e = s->expires;
        if (e > (int64_t)now && s->key[0] == key[0] && s->key[1] == key[1])
            hit = s;
        else if (e <= (int64_t)now && !freeslot)
            freeslot = s;
        else if (e > (int64_t)now && (!victim || e < victim->expires))
            victim = s;
    }
    if (hit) {
        if (until > hit->expires)
            __atomic_store_n(&hit->expires, until, __ATOMIC_RELEASE);
    } else {
        slot *s = freeslot;
        if (!s) {
            /* Every slot this key may use is live: give up the entry
             * closest to expiry, and answer "revoked" for every token until
             * it would have expired rather than un-revoke one. */
            s = victim;
            if (s->expires > __atomic_load_n(&m->hdr->overflow_until, __ATOMIC_RELAXED))
                __atomic_store_n(&m->hdr->overflow_until, s->expires, __ATOMIC_RELEASE);
            mcpauth_log_security("revocation_list_full", "path", r->path, "effect",
                                 "every token of the built-in authorization server is refused "
                                 "until the oldest revocations expire",
                                 NULL);
        }
        __atomic_store_n(&s->expires, (int64_t)0, __ATOMIC_RELEASE);
        ORDER();
        __atomic_store_n(&s->key[0], key[0], __ATOMIC_RELAXED);
        __atomic_store_n(&s->key[1], key[1], __ATOMIC_RELAXED);
        __atomic_store_n(&s->expires, until, __ATOMIC_RELEASE);
    }
    __atomic_add_fetch(&m->hdr->generation, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&m->hdr->lock);
    return 0;
}

uint64_t mcpauth__revoked_generation(mcpauth__revoked *r)
{
    if (r && r->redis)
        return mcpauth__redis_revoked_generation(r->redis);
    map *m = r ? __atomic_load_n(&r->cur, __ATOMIC_ACQUIRE) : NULL;
    return m ? __atomic_load_n(&m->hdr->generation, __ATOMIC_ACQUIRE) : 0;
}

static int unhex(const char *hex, unsigned char out[32])
{
    if (strlen(hex) != 64)
        return -1;
    for (int i = 0; i < 32; i++) {
        unsigned v = 0;
        for (int j = 0; j < 2; j++) {
            char c = hex[2 * i + j];
            v <<= 4;
            if (c >= '0' && c <= '9')
                v |= (unsigned)(c - '0');
            else if (c >= 'a' && c <= 'f')
                v |= (unsigned)(c - 'a' + 10);
            else
                return -1;
        }
        out[i] = (unsigned char)v;
    }
    return 0;
}

typedef struct {
    mcpauth__revoked *r;
    time_t now;
    long added, refused;
} sync_ctx;

static int push_one(const char *hash_hex, time_t expires, void *arg)
{
    sync_ctx *c = arg;
    unsigned char d[32];
    if (unhex(hash_hex, d) != 0 || mcpauth__revoked_add(c->r, d, expires, c->now) != 0) {
        c->refused++; /* the store offers it again at the next sync */
        return -1;
    }
    c->added++;
    return 0;
}

long mcpauth__revoked_sync(mcpauth__revoked *r, mcpauth_store *s, time_t now, long *pending)
{
    if (pending)
        *pending = 0;
    if (!r || !s)
        return -1;
    sync_ctx c = {r, now, 0, 0};
    long rc = mcpauth__store_access_revoked(s, now, push_one, &c);
    if (pending)
        *pending = c.refused;
    return rc < 0 || c.refused > 0 ? -1 : c.added;
}
