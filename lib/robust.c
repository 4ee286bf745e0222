/* Robust process-shared mutexes in mmap'd files (see robust.h). */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "alloc.h"
#include "robust.h"

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                             \
    do {                                                                                     \
        v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);                            \
        v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                               \
        v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                               \
        v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);                            \
    } while (0)

/* As in the reference (Aumasson and Bernstein, 2012). */
uint64_t mcpauth__siphash(const unsigned char key[MCPAUTH__SIPHASH_KEY_LEN], const void *in,
                          size_t len)
{
    const unsigned char *p = in;
    uint64_t k0 = le64(key), k1 = le64(key + 8);
    uint64_t v0 = 0x736f6d6570736575ull ^ k0, v1 = 0x646f72616e646f6dull ^ k1;
    uint64_t v2 = 0x6c7967656e657261ull ^ k0, v3 = 0x7465646279746573ull ^ k1;
    size_t whole = len - len % 8;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = le64(p + i);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < len % 8; i++)
        b |= (uint64_t)p[whole + i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

void mcpauth__boot_id(char out[MCPAUTH__BOOT_ID_LEN])
{
    memset(out, 0, MCPAUTH__BOOT_ID_LEN);
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    if (read(fd, out, MCPAUTH__BOOT_ID_LEN - 1) < 0)
        memset(out, 0, MCPAUTH__BOOT_ID_LEN);
    close(fd);
}

int mcpauth__robust_mutex_init(pthread_mutex_t *m)
{
    pthread_mutexattr_t a;
    if (pthread_mutexattr_init(&a) != 0)
        return -1;
    int rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED) != 0 ||
             pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST) != 0 ||
             pthread_mutex_init(m, &a) != 0;
    pthread_mutexattr_destroy(&a);
    return rc ? -1 : 0;
}

int mcpauth__robust_lock(pthread_mutex_t *m)
{
    int rc = pthread_mutex_lock(m);
    if (rc == EOWNERDEAD) {
        pthread_mutex_consistent(m);
        rc = 0;
    }
    return rc;
}

/* See mcpauth__shmfile_kind: a new boot sets the locks up afresh. */
static int new_boot(int fd, size_t header_size, size_t lock_off, size_t nlocks, size_t boot_off,
                    char *err, size_t errlen)
{
    char boot[MCPAUTH__BOOT_ID_LEN], seen[MCPAUTH__BOOT_ID_LEN];
    mcpauth__boot_id(boot);
    if (pread(fd, seen, sizeof seen, (off_t)boot_off) != (ssize_t)sizeof seen) {
        snprintf(err, errlen, "cannot read the header");
        return -1;
    }
    if (memcmp(seen, boot, sizeof boot) == 0)
        return 0;
    char *m = mmap(NULL, header_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
        snprintf(err, errlen, "mmap: %s", strerror(errno));
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < nlocks && rc == 0; i++)
        rc = mcpauth__robust_mutex_init((pthread_mutex_t *)(void *)(m + lock_off) + i);
    if (rc == 0)
        memcpy(m + boot_off, boot, sizeof boot);
    else
        snprintf(err, errlen, "cannot set up a robust process-shared mutex");
    munmap(m, header_size);
    return rc;
}

int mcpauth__shmfile_check(int fd, struct stat *st, int writable, char *err, size_t errlen)
{
    if (fstat(fd, st) != 0) {
        snprintf(err, errlen, "fstat: %s", strerror(errno));
        return -1;
    }
    if (!S_ISREG(st->st_mode)) {
        snprintf(err, errlen, "not a regular file");
        return -1;
    }
    if (st->st_uid != geteuid() && (writable || st->st_uid != 0)) {
        snprintf(err, errlen, "owned by uid %lu, not by this process's uid %lu",
                 (unsigned long)st->st_uid, (unsigned long)geteuid());
        return -1;
    }
    if (st->st_mode & (writable ? 077 : 022)) {
        snprintf(err, errlen, "mode %04o lets group or others %s (want 0600)",
                 (unsigned)(st->st_mode & 07777), writable ? "in" : "write");
        return -1;
    }
    return 0;
}

/* The reason an open(2) of path failed (errno), in err; returns -1. */
static int open_error(const char *path, char *err, size_t errlen)
{
    int e = errno;
    if (e == ELOOP)
        snprintf(err, errlen, "%s: is a symbolic link", path);
    else if (e == EISDIR)
        snprintf(err, errlen, "%s: is a directory", path);
    else
        snprintf(err, errlen, "%s: %s", path, strerror(e));
    return -1;
}

/* Builds a fresh file beside path with init(fd, arg, ...) and renames it
 * over path: processes that still map the old layout keep the old inode.
 * The new descriptor, or -1 (init's reason in err, or none when the
 * directory does not allow it). */
static int replace(const char *path, int (*init)(int fd, const void *arg, char *err, size_t errlen),
                   const void *arg, char *err, size_t errlen)
{
    unsigned char rnd[8];
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        return -1;
    uint64_t r;
    memcpy(&r, rnd, sizeof r);
    size_t n = strlen(path) + 64;
    char *tmp = mcpauth__xmalloc(n);
    snprintf(tmp, n, "%s.new.%ld.%016llx", path, (long)getpid(), (unsigned long long)r);
    int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0 && (init(fd, arg, err, errlen) != 0 || rename(tmp, path) != 0)) {
        unlink(tmp);
        close(fd);
        fd = -1;
    }
    free(tmp);
    return fd;
}

void *mcpauth__shmfile_fresh(int fd, size_t size, size_t header_size, char *err, size_t errlen)
{
    if (ftruncate(fd, 0) != 0 || ftruncate(fd, (off_t)size) != 0) {
        snprintf(err, errlen, "cannot size the file: %s", strerror(errno));
        return NULL;
    }
    void *h = mmap(NULL, header_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (h == MAP_FAILED) {
        snprintf(err, errlen, "mmap: %s", strerror(errno));
        return NULL;
    }
    return h;
}

int mcpauth__shmfile_seal(char magic_field[8], const char magic[8],
                          char boot[MCPAUTH__BOOT_ID_LEN], unsigned char *secret, size_t secretlen,
                          pthread_mutex_t *lock, char *err, size_t errlen)
{
    memset(magic_field, 0, 8);
    mcpauth__boot_id(boot);
    if (RAND_bytes(secret, (int)secretlen) != 1) {
        snprintf(err, errlen, "no random bytes for the hash key");
        return -1;
    }
    if (mcpauth__robust_mutex_init(lock) != 0) {
        snprintf(err, errlen, "cannot set up a robust process-shared mutex");
        return -1;
    }
    __atomic_signal_fence(__ATOMIC_SEQ_CST); /* the magic goes last */
    memcpy(magic_field, magic, 8);
    return 0;
}

/* One attempt: 1 with *out ready, 0 to try again (the path was replaced
 * while we waited for the lock), -1 on error. */
static int open_once(const char *path, const mcpauth__shmfile_kind *k, void *arg, int writable,
                     int *out, char *err, size_t errlen)
{
    /* O_NONBLOCK|O_NOCTTY: a FIFO or a device at path must neither hang
     * nor grab a terminal before fstat refuses it. */
    int flags = O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY;
    int fd = writable ? open(path, O_RDWR | O_CREAT | flags, 0600) : open(path, O_RDONLY | flags);
    if (fd < 0)
        return open_error(path, err, errlen);
    struct stat st, now;
    char why[160];
    if (mcpauth__shmfile_check(fd, &st, writable, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s: %s", path, why);
        close(fd);
        return -1;
    }
    /* shared for readers: no half set-up header is ever taken */
    while (flock(fd, writable ? LOCK_EX : LOCK_SH) != 0) {
        if (errno != EINTR) {
            snprintf(err, errlen, "%s: flock: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
    }
    /* another opener may have renamed a fresh file over the path while we
     * waited: then ours is the old one */
    if (lstat(path, &now) != 0 || now.st_dev != st.st_dev || now.st_ino != st.st_ino) {
        close(fd);
        return 0;
    }
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "%s: fstat: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    int state = k->state(fd, &st, arg), rc = 0;
    if (!writable) {
        if (state != 1) {
            snprintf(err, errlen, "%s: not (yet) %s of this version", path,
                     k->what ? k->what : "a file");
            close(fd);
            return -1;
        }
        flock(fd, LOCK_UN); /* explicitly: a mapping keeps the open file, and so the lock */
        *out = fd;
        return 1;
    }
    why[0] = '\0';
    if (state != 1 && st.st_size > 0) {
        int nfd = replace(path, k->init, arg, why, sizeof why);
        if (nfd >= 0) {
            if (k->retired_off && (size_t)st.st_size >= k->header_size) {
                char *m = mmap(NULL, k->header_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
                if (m != MAP_FAILED) {
                    __atomic_store_n((uint32_t *)(void *)(m + k->retired_off), 1u,
                                     __ATOMIC_RELEASE);
                    munmap(m, k->header_size);
                }
            }
            close(fd); /* drops the flock; openers waiting on it retry */
            *out = nfd;
            return 1;
        }
        if (why[0]) {
            snprintf(err, errlen, "%s: %s", path, why);
            close(fd);
            return -1;
        }
        /* the directory does not let us rename: set it up in place */
    }
    if (state != 1)
        rc = k->init(fd, arg, why, sizeof why);
    else
        rc = new_boot(fd, k->header_size, k->lock_off, k->nlocks, k->boot_off, why, sizeof why);
    if (rc != 0) {
        snprintf(err, errlen, "%s: %s", path, why);
        close(fd);
        return -1;
    }
    flock(fd, LOCK_UN);
    *out = fd;
    return 1;
}

static int open_tries(const char *path, const mcpauth__shmfile_kind *kind, void *arg,
                      int writable, char *err, size_t errlen)
{
    int fd = -1, rc = 0;
    for (int i = 0; i < 8 && rc == 0; i++)
        rc = open_once(path, kind, arg, writable, &fd, err, errlen);
    if (rc == 0)
        snprintf(err, errlen, "%s: keeps being replaced by other processes", path);
    return rc == 1 ? fd : -1;
}

int mcpauth__shmfile_open(const char *path, const mcpauth__shmfile_kind *kind, void *arg,
                          char *err, size_t errlen)
{
    return open_tries(path, kind, arg, 1, err, errlen);
}

int mcpauth__shmfile_open_ro(const char *path, const mcpauth__shmfile_kind *kind, void *arg,
                             char *err, size_t errlen)
{
    return open_tries(path, kind, arg, 0, err, errlen);
}
