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

int mcpauth__robust_new_boot(int fd, size_t header_size, size_t lock_off, size_t boot_off,
                             char *err, size_t errlen)
{
    return mcpauth__robust_new_boot_n(fd, header_size, lock_off, 1, boot_off, err, errlen);
}

int mcpauth__robust_new_boot_n(int fd, size_t header_size, size_t lock_off, size_t nlocks,
                               size_t boot_off, char *err, size_t errlen)
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

int mcpauth__shmfile_open_error(const char *path, char *err, size_t errlen)
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

int mcpauth__shmfile_replace(const char *path,
                             int (*init)(int fd, const void *arg, char *err, size_t errlen),
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
static int open_once(const char *path, const mcpauth__shmfile_kind *k, void *arg, int *out,
                     char *err, size_t errlen)
{
    /* O_NONBLOCK|O_NOCTTY: a FIFO or a device at path must neither hang
     * nor grab a terminal before fstat refuses it. */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, 0600);
    if (fd < 0)
        return mcpauth__shmfile_open_error(path, err, errlen);
    struct stat st, now;
    char why[160];
    if (mcpauth__shmfile_check(fd, &st, 1, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s: %s", path, why);
        close(fd);
        return -1;
    }
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            snprintf(err, errlen, "%s: flock: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
    }
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
    why[0] = '\0';
    if (state != 1 && st.st_size > 0) {
        int nfd = mcpauth__shmfile_replace(path, k->init, arg, why, sizeof why);
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
        rc = mcpauth__robust_new_boot_n(fd, k->header_size, k->lock_off, k->nlocks, k->boot_off,
                                        why, sizeof why);
    if (rc != 0) {
        snprintf(err, errlen, "%s: %s", path, why);
        close(fd);
        return -1;
    }
    flock(fd, LOCK_UN);
    *out = fd;
    return 1;
}

int mcpauth__shmfile_open(const char *path, const mcpauth__shmfile_kind *kind, void *arg,
                          char *err, size_t errlen)
{
    int fd = -1, rc = 0;
    for (int i = 0; i < 8 && rc == 0; i++)
        rc = open_once(path, kind, arg, &fd, err, errlen);
    if (rc == 0)
        snprintf(err, errlen, "%s: keeps being replaced by other processes", path);
    return rc == 1 ? fd : -1;
}
