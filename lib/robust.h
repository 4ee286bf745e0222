/* Shared mmap'd files with a robust process-shared mutex (not installed):
 * what shm.c (rate limits, sessions, in-flight counts), revoked.c (the
 * revocation list) and cache.c (the shared validation cache) have in
 * common: opening, checking, setting up and replacing the file. */
#ifndef MCPAUTH_ROBUST_H
#define MCPAUTH_ROBUST_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#define MCPAUTH__BOOT_ID_LEN 40

#define MCPAUTH__SIPHASH_KEY_LEN 16

/* SipHash-2-4 of in under key: a keyed hash far cheaper than SHA-256, for
 * where a key's slot lies in a shared table; without the file's secret no
 * client can pick keys that land in someone else's window. */
uint64_t mcpauth__siphash(const unsigned char key[MCPAUTH__SIPHASH_KEY_LEN], const void *in,
                          size_t len);
/* This boot's id into out[MCPAUTH__BOOT_ID_LEN]; all zeros where the kernel
 * offers none. */
void mcpauth__boot_id(char out[MCPAUTH__BOOT_ID_LEN]);
/* A process-shared, robust mutex in m; 0 or -1. */
int mcpauth__robust_mutex_init(pthread_mutex_t *m);
/* Locks m; a holder that died leaves the data usable (each caller's file
 * says why), so the mutex is made consistent and the lock taken.  0 or the
 * pthread error. */
int mcpauth__robust_lock(pthread_mutex_t *m);

/* The common start of a kind's init: empties fd, sizes it to size bytes
 * (zero-filled) and maps its first header_size bytes read-write, for the
 * header to be filled in, sealed and unmapped.  NULL with a reason in err. */
void *mcpauth__shmfile_fresh(int fd, size_t size, size_t header_size, char *err, size_t errlen);
/* The common tail of a fresh header: this boot's id, a random hash key
 * (secret, secretlen bytes), the robust mutex, and last the magic, so a
 * crash half way leaves a file the next opener sets up again.  0, or -1
 * with a reason in err (the magic then stays unwritten). */
int mcpauth__shmfile_seal(char magic_field[8], const char magic[8],
                          char boot[MCPAUTH__BOOT_ID_LEN], unsigned char *secret, size_t secretlen,
                          pthread_mutex_t *lock, char *err, size_t errlen);
/* fstat and check an opened shared file: regular, owned by this process's
 * user (a reader, writable 0, also takes root's), and writable by nobody
 * else, since whoever can write it can change what it decides.  0, or -1
 * with a reason in err. */
int mcpauth__shmfile_check(int fd, struct stat *st, int writable, char *err, size_t errlen);

/* What mcpauth__shmfile_open needs to know of a kind of shared file. */
typedef struct {
    /* A file kept across a reboot may hold a lock whose owner never exited
     * (no EOWNERDEAD then): the first opener of a boot sets the nlocks
     * mutexes at lock_off up afresh and records the boot id at boot_off,
     * both inside the first header_size bytes. */
    size_t header_size, lock_off, nlocks, boot_off;
    /* Nonzero: a uint32_t at this offset of the header, at the same place
     * in every layout version, set (atomically) in a file being replaced, so
     * that processes mapping it reopen the path. */
    size_t retired_off;
    /* 1 when the file (its header read from fd, st its fstat) is ours with
     * the layout arg asks for, -1 ours but another layout or size, 0 not
     * ours (new, empty, garbage).  It may fill in arg (e.g. to take the
     * file's size). */
    int (*state)(int fd, const struct stat *st, void *arg);
    /* Sizes a fresh file and seals its header (see mcpauth__shmfile_seal). */
    int (*init)(int fd, const void *arg, char *err, size_t errlen);
    /* What the file is, for messages ("a revocation list"); NULL: "a file". */
    const char *what;
} mcpauth__shmfile_kind;

/* Opens path read-write (created 0600, never through a symlink), checks it
 * (mcpauth__shmfile_check) and, under flock, makes it hold kind's layout
 * for arg: an empty file is set up in place, anything else that is not
 * right (another layout, size, garbage) is replaced by rename, so that no
 * process mapping the old one sees it truncated; on a new boot the locks
 * are set up afresh.  The descriptor, ready to mmap, or -1 with a reason in
 * err. */
int mcpauth__shmfile_open(const char *path, const mcpauth__shmfile_kind *kind, void *arg,
                          char *err, size_t errlen);
/* For readers that neither create, set up nor lock (the file may be in a
 * read-only directory, or root's): opens path read-only, checks it (see
 * mcpauth__shmfile_check), waits under a shared flock for an opener
 * setting it up, and takes it only when kind->state says 1.  The
 * descriptor, or -1 with a reason in err. */
int mcpauth__shmfile_open_ro(const char *path, const mcpauth__shmfile_kind *kind, void *arg,
                             char *err, size_t errlen);

#endif
