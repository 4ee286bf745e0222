/* Shared mmap'd files with a robust process-shared mutex (not installed):
 * what shm.c (rate limits, sessions, in-flight counts) and revoked.c (the
 * revocation list) have in common. */
#ifndef MCPAUTH_ROBUST_H
#define MCPAUTH_ROBUST_H

#include <pthread.h>
#include <stddef.h>
#include <sys/stat.h>

#define MCPAUTH__BOOT_ID_LEN 40

/* This boot's id into out[MCPAUTH__BOOT_ID_LEN]; all zeros where the kernel
 * offers none. */
void mcpauth__boot_id(char out[MCPAUTH__BOOT_ID_LEN]);
/* A process-shared, robust mutex in m; 0 or -1. */
int mcpauth__robust_mutex_init(pthread_mutex_t *m);
/* Locks m; a holder that died leaves the data usable (each caller's file
 * says why), so the mutex is made consistent and the lock taken.  0 or the
 * pthread error. */
int mcpauth__robust_lock(pthread_mutex_t *m);
/* A file kept across a reboot may hold a lock whose owner never exited (no
 * EOWNERDEAD then): the first opener of this boot sets the mutex at
 * lock_off up afresh and records the boot id at boot_off, both inside the
 * file's first header_size bytes.  0, or -1 with a reason in err. */
int mcpauth__robust_new_boot(int fd, size_t header_size, size_t lock_off, size_t boot_off,
                             char *err, size_t errlen);
/* The same for nlocks mutexes in a row at lock_off (lock stripes). */
int mcpauth__robust_new_boot_n(int fd, size_t header_size, size_t lock_off, size_t nlocks,
                               size_t boot_off, char *err, size_t errlen);

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
/* The reason an open(2) of path failed (errno), in err; returns -1. */
int mcpauth__shmfile_open_error(const char *path, char *err, size_t errlen);
/* Builds a fresh file beside path with init(fd, arg, ...) and renames it
 * over path: processes that still map the old layout keep the old inode.
 * The new descriptor, or -1 (init's reason in err, or none when the
 * directory does not allow it). */
int mcpauth__shmfile_replace(const char *path,
                             int (*init)(int fd, const void *arg, char *err, size_t errlen),
                             const void *arg, char *err, size_t errlen);

/* What mcpauth__shmfile_open needs to know of a kind of shared file. */
typedef struct {
    size_t header_size, lock_off, nlocks, boot_off; /* for the new-boot check */
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

#endif
