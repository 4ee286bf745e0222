/* See shm.h.  Layout: a header (magic, layout version, table sizes, a
 * per-file secret and the robust process-shared mutex), then the bucket
 * table, the session table and the in-flight table.  The tables use open
 * addressing over a window of slots starting at an index keyed with the
 * file's secret (SipHash of the key's SHA-256), so an operation touches a
 * bounded number of slots and allocates nothing.  The file is opened, set
 * up and replaced by mcpauth__shmfile_open (robust.c).
 *
 * Why carrying on after EOWNERDEAD is sound: every operation changes at
 * most one slot, and a slot being (re)filled is first marked unused and
 * only marked used again after all its fields are written (see ORDER).  A
 * holder killed half way therefore leaves a slot that is empty, whole, or
 * (buckets only) with tokens refilled but the time not yet advanced, which
 * costs at most one extra refill capped at the burst.  Nothing needs
 * repairing, so pthread_mutex_consistent and go on. */
#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "alloc.h"
#include "clock.h"
#include "robust.h"
#include "shm.h"

#define MAGIC "mcpaSHM\n"
#define LAYOUT_VERSION 3u /* bump on any change to the structs below or to the hashing */
/* In-flight request slots for the whole host: far above what the web
 * servers' worker limits let run at once. */
#define INFLIGHT 8192
/* Slots one caller's requests may use; above the largest cap (256) so
 * that other callers sharing the window rarely crowd a caller out. */
#define INFLIGHT_WINDOW 512
#define WINDOW 8
#define MAX_ENTRIES ((size_t)1 << 24)

/* Compiler barrier: keeps the stores to a slot in program order, so a
 * process killed mid-update leaves what the comment at the top promises.
 * Stores already executed are not lost when a process dies. */
#define ORDER() __atomic_signal_fence(__ATOMIC_SEQ_CST)

struct header {
    char magic[8];
    uint32_t version;
    /* The ABI this file was laid out with: a 32-bit and a 64-bit build
     * must not share one file. */
    uint32_t mutex_size, bucket_size, session_size, inflight_size;
    uint64_t nbuckets, nsessions, ninflight, total;
    /* Keys the slot index (SipHash) so clients cannot pick keys that
     * collide with someone else's window and evict their bucket or session
     * binding. */
    unsigned char secret[MCPAUTH__SIPHASH_KEY_LEN];
    /* The boot the mutex was set up in: a file kept on disk across a crash
     * may hold a lock whose owner never got to exit (no EOWNERDEAD). */
    char boot[MCPAUTH__BOOT_ID_LEN];
    pthread_mutex_t lock;
};

typedef struct {
    unsigned char key[32];
    double tokens;
    double last; /* time of the last refill */
    double used; /* last use, for least-recently-used eviction */
    uint32_t inuse;
} bucket;

typedef struct {
    unsigned char id[32];
    unsigned char owner[32];
    int64_t expires;
    uint32_t inuse;
} session;

/* One request being relayed, counted against its caller's cap while its
 * process lives: a process that dies (crash, kill -9) leaves its slots
 * behind, and kill(pid, 0) failing with ESRCH gives them back.  boot tells
 * a slot left by a previous boot, whose pid may name someone else now. */
typedef struct {
    unsigned char key[32];
    int64_t pid;
    uint64_t boot;
    uint32_t inuse;
} inflight;

struct mcpauth_shm {
    struct header *hdr;
    bucket *buckets;
    session *sessions;
    inflight *inflight;
    uint64_t boot;
    /* Our own copies: a damaged header can never send us out of bounds. */
    size_t nbuckets, nsessions, size;
    EVP_MD *sha256;
};

static size_t align64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

static size_t buckets_off(void)
{
    return align64(sizeof(struct header));
}

static size_t sessions_off(size_t nbuckets)
{
    return buckets_off() + align64(nbuckets * sizeof(bucket));
}

static size_t inflight_off(size_t nbuckets, size_t nsessions)
{
    return sessions_off(nbuckets) + align64(nsessions * sizeof(session));
}

static size_t total_size(size_t nbuckets, size_t nsessions)
{
    return inflight_off(nbuckets, nsessions) + align64(INFLIGHT * sizeof(inflight));
}

static void fill_expected(struct header *h, size_t nbuckets, size_t nsessions)
{
    memset(h, 0, sizeof *h);
    memcpy(h->magic, MAGIC, sizeof h->magic);
    h->version = LAYOUT_VERSION;
    h->mutex_size = sizeof(pthread_mutex_t);
    h->bucket_size = sizeof(bucket);
    h->session_size = sizeof(session);
    h->inflight_size = sizeof(inflight);
    h->nbuckets = nbuckets;
    h->nsessions = nsessions;
    h->ninflight = INFLIGHT;
    h->total = total_size(nbuckets, nsessions);
}

/* What the file must hold: the sizes this process asks for. */
typedef struct {
    size_t nbuckets, nsessions;
} sizes;

/* 1 when the file's header is ours in every respect and the file is
 * exactly as long as it says, -1 when it is ours but of another layout,
 * 0 when it is not ours at all (new, empty or garbage). */
static int file_state(int fd, const struct stat *st, void *arg)
{
    const sizes *z = arg;
    struct header h, want;
    fill_expected(&want, z->nbuckets, z->nsessions);
    if (st->st_size < (off_t)sizeof h || pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h)
        return 0;
    if (memcmp(h.magic, want.magic, sizeof h.magic) != 0)
        return 0;
    if (h.version != want.version || h.mutex_size != want.mutex_size ||
        h.bucket_size != want.bucket_size || h.session_size != want.session_size ||
        h.inflight_size != want.inflight_size || h.ninflight != want.ninflight ||
        h.nbuckets != want.nbuckets || h.nsessions != want.nsessions ||
        h.total != want.total || (uint64_t)st->st_size != want.total)
        return -1;
    return 1;
}

/* Zero-fills fd to the full size and writes a fresh header, the magic last
 * so a crash half way leaves a file the next opener sets up again. */
static int init_file(int fd, const void *arg, char *err, size_t errlen)
{
    const sizes *z = arg;
    struct header *h = mcpauth__shmfile_fresh(fd, total_size(z->nbuckets, z->nsessions),
                                              sizeof *h, err, errlen);
    if (!h)
        return -1;
    fill_expected(h, z->nbuckets, z->nsessions);
    int rc = mcpauth__shmfile_seal(h->magic, MAGIC, h->boot, h->secret, sizeof h->secret,
                                   &h->lock, err, errlen);
    munmap(h, sizeof *h);
    return rc;
}

/* A file of another layout is replaced, and workers of the old
 * configuration keep the old inode (nobody reads a retired flag). */
static const mcpauth__shmfile_kind shm_kind = {
    .header_size = sizeof(struct header),
    .lock_off = offsetof(struct header, lock),
    .nlocks = 1,
    .boot_off = offsetof(struct header, boot),
    .state = file_state,
    .init = init_file,
};

mcpauth_shm *mcpauth__shm_open(const char *path, size_t buckets, size_t sessions, char *err,
                              size_t errlen)
{
    char dummy[1];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    if (!path || !*path) {
        snprintf(err, errlen, "no path for the shared state");
        return NULL;
    }
    if (buckets < 1 || sessions < 1 || buckets > MAX_ENTRIES || sessions > MAX_ENTRIES) {
        snprintf(err, errlen, "table sizes must be between 1 and %zu", MAX_ENTRIES);
        return NULL;
    }
    mcpauth_shm *s = mcpauth__xcalloc(1, sizeof *s);
    if (!(s->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL))) {
        snprintf(err, errlen, "SHA-256 is not available");
        free(s);
        return NULL;
    }
    sizes want = {buckets, sessions};
    int fd = mcpauth__shmfile_open(path, &shm_kind, &want, err, errlen);
    if (fd < 0)
        goto fail;
    s->nbuckets = buckets;
    s->nsessions = sessions;
    s->size = total_size(buckets, sessions);
    void *p = mmap(NULL, s->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) {
        snprintf(err, errlen, "%s: mmap: %s", path, strerror(e));
        goto fail;
    }
    s->hdr = p;
    s->buckets = (bucket *)((char *)p + buckets_off());
    s->sessions = (session *)((char *)p + sessions_off(buckets));
    s->inflight = (inflight *)((char *)p + inflight_off(buckets, sessions));
    char boot[MCPAUTH__BOOT_ID_LEN];
    mcpauth__boot_id(boot);
    s->boot = 1469598103934665603ull; /* FNV-1a: only compared, never trusted */
    for (size_t i = 0; i < sizeof boot; i++)
        s->boot = (s->boot ^ (unsigned char)boot[i]) * 1099511628211ull;
    return s;
fail:
    EVP_MD_free(s->sha256);
    free(s);
    return NULL;
}

void mcpauth__shm_close(mcpauth_shm *shm)
{
    if (!shm)
        return;
    munmap(shm->hdr, shm->size);
    EVP_MD_free(shm->sha256);
    free(shm);
}

/* A key as the tables know it: its SHA-256 (what a slot stores) and the
 * SipHash of that under the file's secret (where its window starts, which
 * no client can predict).  One SHA-256 per key: a key of 32 bytes is taken
 * to be a digest already (the proxy hashes its rate keys) when digest_ok. */
typedef struct {
    unsigned char h[32];
    uint64_t pos;
} tkey;

static int key_of(const mcpauth_shm *s, const void *data, size_t len, int digest_ok, tkey *k)
{
    static const unsigned char empty[1];
    if (!data && len)
        return -1;
    if (digest_ok && len == sizeof k->h)
        memcpy(k->h, data, sizeof k->h);
    else if (EVP_Digest(data ? data : empty, len, k->h, NULL, s->sha256, NULL) != 1)
        return -1;
    k->pos = mcpauth__siphash(s->hdr->secret, k->h, sizeof k->h);
    return 0;
}

static size_t index_of(const tkey *k, size_t n)
{
    return (size_t)(k->pos % n);
}

static int lock(mcpauth_shm *s)
{
    return mcpauth__robust_lock(&s->hdr->lock);
}

static void unlock(mcpauth_shm *s)
{
    pthread_mutex_unlock(&s->hdr->lock);
}

int mcpauth__shm_rate(mcpauth_shm *shm, const void *key, size_t keylen, double rate, double burst,
                     double now, int *retry_after)
{
    int dummy;
    if (!retry_after)
        retry_after = &dummy;
    *retry_after = 0;
    /* Unlimited; an infinite rate would make the refill NaN at elapsed 0. */
    if (!(rate > 0) || isinf(rate) || !shm)
        return 1;
    /* A bucket smaller than one token would refuse forever. */
    if (!(burst >= 1))
        burst = 1;
    tkey k;
    /* Failures below only come from a broken environment: refuse (we are
     * the gate) rather than wave everyone through. */
    *retry_after = 1;
    if (!isfinite(now) || key_of(shm, key, keylen, 1, &k) != 0 || lock(shm) != 0)
        return 0;

    size_t n = shm->nbuckets, start = index_of(&k, n), w = n < WINDOW ? n : WINDOW;
    bucket *b = NULL, *victim = NULL;
    for (size_t i = 0; i < w; i++) {
        bucket *c = &shm->buckets[(start + i) % n];
        if (!c->inuse) {
            if (!victim || victim->inuse)
                victim = c;
        } else if (CRYPTO_memcmp(c->key, k.h, 32) == 0) {
            b = c;
            break;
        } else if (!victim || (victim->inuse && !(c->used >= victim->used))) {
            victim = c;
        }
    }
    if (!b) {
        b = victim;
        b->inuse = 0;
        ORDER();
        memcpy(b->key, k.h, 32);
        b->tokens = burst;
        b->last = now;
        b->used = now;
        ORDER();
        b->inuse = 1;
    }
    /* Damage or a clock stepped back must not lock a key out for good. */
    if (!(b->tokens >= 0))
        b->tokens = 0;
    if (!isfinite(b->last) || now < b->last - 1.0)
        b->last = now;
    if (now > b->last) {
        b->tokens += (now - b->last) * rate;
        b->last = now;
    }
    if (b->tokens > burst)
        b->tokens = burst;
    b->used = now;
    int ok = b->tokens >= 1;
    if (ok) {
        b->tokens -= 1;
        *retry_after = 0;
    } else {
        /* Rounded up by hand: libm is not among the library's dependencies. */
        double wait = (1 - b->tokens) / rate;
        if (!(wait < INT_MAX))
            *retry_after = INT_MAX;
        else
            *retry_after = wait <= 1 ? 1 : (int)wait + ((double)(int)wait < wait);
    }
    unlock(shm);
    return ok;
}

/* The slot bound to id (key k) within its window, or NULL. */
static session *find_session(mcpauth_shm *s, const tkey *k)
{
    size_t n = s->nsessions, start = index_of(k, n), w = n < WINDOW ? n : WINDOW;
    for (size_t i = 0; i < w; i++) {
        session *c = &s->sessions[(start + i) % n];
        if (c->inuse && CRYPTO_memcmp(c->id, k->h, 32) == 0)
            return c;
    }
    return NULL;
}

int mcpauth__shm_session_bind(mcpauth_shm *shm, const char *id, const char *owner, time_t expires)
{
    tkey hid, how;
    if (!shm || !id || !owner || key_of(shm, id, strlen(id), 0, &hid) != 0 ||
        key_of(shm, owner, strlen(owner), 0, &how) != 0 || lock(shm) != 0)
        return -1;
    int64_t now = (int64_t)mcpauth__now();
    int rc = 0;
    session *c = find_session(shm, &hid);
    if (c && c->expires > now && CRYPTO_memcmp(c->owner, how.h, 32) != 0) {
        rc = -1;
    } else if (c && CRYPTO_memcmp(c->owner, how.h, 32) == 0) {
        c->expires = (int64_t)expires;
    } else {
        if (!c) {
            /* A free slot, else an expired one, else the soonest to expire. */
            size_t n = shm->nsessions, start = index_of(&hid, n), w = n < WINDOW ? n : WINDOW;
            for (size_t i = 0; i < w; i++) {
                session *v = &shm->sessions[(start + i) % n];
                if (!v->inuse) {
                    c = v;
                    break;
                }
                if (!c || v->expires < c->expires)
                    c = v;
            }
        }
        c->inuse = 0;
        ORDER();
        memcpy(c->id, hid.h, 32);
        memcpy(c->owner, how.h, 32);
        c->expires = (int64_t)expires;
        ORDER();
        c->inuse = 1;
    }
    unlock(shm);
    return rc;
}

mcpauth_session_match mcpauth__shm_session_check(mcpauth_shm *shm, const char *id, const char *owner,
                                                time_t now, time_t extend_to)
{
    tkey hid, how;
    if (!shm || !id || !owner)
        return MCPAUTH_SESSION_UNKNOWN;
    /* Cannot tell: say "someone else's", which the caller refuses. */
    if (key_of(shm, id, strlen(id), 0, &hid) != 0 ||
        key_of(shm, owner, strlen(owner), 0, &how) != 0 || lock(shm) != 0)
        return MCPAUTH_SESSION_OTHER;
    mcpauth_session_match m = MCPAUTH_SESSION_UNKNOWN;
    session *c = find_session(shm, &hid);
    if (c && c->expires <= (int64_t)now) {
        c->inuse = 0; /* expired: free the slot */
    } else if (c && CRYPTO_memcmp(c->owner, how.h, 32) == 0) {
        m = MCPAUTH_SESSION_OWNER;
        if ((int64_t)extend_to > c->expires)
            c->expires = (int64_t)extend_to;
    } else if (c) {
        m = MCPAUTH_SESSION_OTHER;
    }
    unlock(shm);
    return m;
}

void mcpauth__shm_session_remove(mcpauth_shm *shm, const char *id)
{
    tkey hid;
    if (!shm || !id || key_of(shm, id, strlen(id), 0, &hid) != 0 || lock(shm) != 0)
        return;
    session *c = find_session(shm, &hid);
    if (c)
        c->inuse = 0;
    unlock(shm);
}

/* A slot whose process is gone: ended (ESRCH) or from another boot. */
static int inflight_dead(const mcpauth_shm *s, const inflight *f)
{
    if (f->boot != s->boot || f->pid <= 0 || f->pid > INT_MAX)
        return 1;
    return kill((pid_t)f->pid, 0) != 0 && errno == ESRCH;
}

/* A caller's slots live in a window of INFLIGHT_WINDOW slots starting at
 * index_of(its key), so a request scans a few KiB, not the table. */

/* Live slots of key k in its window; *free_slot the first unused one there
 * (or NULL).  With reap, slots of dead processes are freed on the way (only
 * then: a kill(2) per slot is not paid on every request). */
static size_t inflight_scan(mcpauth_shm *s, const tkey *k, int reap_mine, int reap_all,
                            inflight **free_slot)
{
    size_t n = 0, start = index_of(k, INFLIGHT);
    *free_slot = NULL;
    for (size_t i = 0; i < INFLIGHT_WINDOW; i++) {
        inflight *f = &s->inflight[(start + i) % INFLIGHT];
        if (f->inuse) {
            int mine = CRYPTO_memcmp(f->key, k->h, 32) == 0;
            if ((reap_all || (reap_mine && mine)) && inflight_dead(s, f))
                f->inuse = 0;
            else if (mine)
                n++;
        }
        if (!f->inuse && !*free_slot)
            *free_slot = f;
    }
    return n;
}

int mcpauth__shm_inflight_acquire(mcpauth_shm *shm, const void *key, size_t keylen, long cap,
                                  mcpauth_shm_slot *slot)
{
    slot->index = SIZE_MAX;
    if (!shm || cap <= 0)
        return 1;
    tkey k;
    if (key_of(shm, key, keylen, 1, &k) != 0 || lock(shm) != 0)
        return -1;
    inflight *f;
    size_t n = inflight_scan(shm, &k, 0, 0, &f);
    if (n >= (size_t)cap) /* perhaps counted for processes that died */
        n = inflight_scan(shm, &k, 1, 0, &f);
    if (n < (size_t)cap && !f) /* the window is full: reclaim everyone's dead there */
        n = inflight_scan(shm, &k, 1, 1, &f);
    int rc = n >= (size_t)cap ? 0 : f ? 1 : -1;
    if (rc == 1) {
        f->inuse = 0;
        ORDER();
        memcpy(f->key, k.h, 32);
        f->pid = (int64_t)getpid();
        f->boot = shm->boot;
        ORDER();
        f->inuse = 1;
        slot->index = (size_t)(f - shm->inflight);
        memcpy(slot->key, k.h, 32);
    }
    unlock(shm);
    return rc;
}

void mcpauth__shm_inflight_release(mcpauth_shm *shm, mcpauth_shm_slot *slot)
{
    if (!shm || !slot || slot->index >= INFLIGHT)
        return;
    size_t i = slot->index;
    slot->index = SIZE_MAX;
    if (lock(shm) != 0)
        return; /* left for the pid check to reclaim once we are gone */
    inflight *f = &shm->inflight[i];
    /* only our own: never a slot someone else took after a reclaim */
    if (f->inuse && f->pid == (int64_t)getpid() && CRYPTO_memcmp(f->key, slot->key, 32) == 0)
        f->inuse = 0;
    unlock(shm);
}

size_t mcpauth__shm_inflight_count(mcpauth_shm *shm, const void *key, size_t keylen)
{
    tkey k;
    if (!shm || key_of(shm, key, keylen, 1, &k) != 0 || lock(shm) != 0)
        return 0;
    inflight *f;
    size_t n = inflight_scan(shm, &k, 1, 0, &f);
    unlock(shm);
    return n;
}
