/* Robust process-shared mutexes in mmap'd files (see robust.h). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

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
    int rc = mcpauth__robust_mutex_init((pthread_mutex_t *)(void *)(m + lock_off));
    if (rc == 0)
        memcpy(m + boot_off, boot, sizeof boot);
    else
        snprintf(err, errlen, "cannot set up a robust process-shared mutex");
    munmap(m, header_size);
    return rc;
}
