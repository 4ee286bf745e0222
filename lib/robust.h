/* Robust process-shared mutexes in mmap'd files (not installed): shared by
 * shm.c (rate limits, sessions) and revoked.c (the revocation list). */
#ifndef MCPAUTH_ROBUST_H
#define MCPAUTH_ROBUST_H

#include <pthread.h>
#include <stddef.h>

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

#endif
