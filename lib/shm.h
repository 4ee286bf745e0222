/* State shared by every proxy process on the host (not installed): token
 * buckets for rate limits and the bindings of MCP sessions to identities.
 * One file-backed mmap under the runtime directory, guarded by a robust
 * process-shared mutex, so a worker that dies holding the lock does not
 * wedge the others, and the state survives worker restarts. */
#ifndef MCPAUTH_SHM_H
#define MCPAUTH_SHM_H

#include <stddef.h>
#include <time.h>

typedef struct mcpauth_shm mcpauth_shm;

/* Opens (creating when absent) the shared file at path with room for
 * `buckets` rate-limit buckets and `sessions` session bindings.  A file of
 * another layout or size is re-initialised.  NULL with a reason in err. */
mcpauth_shm *mcpauth__shm_open(const char *path, size_t buckets, size_t sessions, char *err,
                              size_t errlen);
void mcpauth__shm_close(mcpauth_shm *shm);

/* Keys of buckets and in-flight slots are any bytes, hashed once with
 * SHA-256; a key of 32 bytes is taken to be such a digest already (the
 * proxy's keys are) and not hashed again.  Where a key's slots lie is keyed
 * with the file's secret either way. */

/* Token bucket for key: rate tokens per second, burst the
 * bucket size.  1 when the request may go on (one token taken), 0 when
 * limited, with *retry_after the whole seconds until a token is there
 * (at least 1).  A full table evicts the least recently used bucket. */
int mcpauth__shm_rate(mcpauth_shm *shm, const void *key, size_t keylen, double rate, double burst,
                     double now, int *retry_after);

/* Session bindings: session id → owner (e.g. "issuer\nsubject\nclient_id").
 * Only hashes are stored. */
typedef enum {
    MCPAUTH_SESSION_UNKNOWN = 0,
    MCPAUTH_SESSION_OWNER = 1,   /* bound to this owner */
    MCPAUTH_SESSION_OTHER = 2    /* bound to someone else */
} mcpauth_session_match;

/* Binds id to owner until expires (replacing an older binding of the same
 * id only when it belongs to the same owner; returns -1 when id is already
 * bound to another owner, which is refused). */
int mcpauth__shm_session_bind(mcpauth_shm *shm, const char *id, const char *owner, time_t expires);
mcpauth_session_match mcpauth__shm_session_check(mcpauth_shm *shm, const char *id, const char *owner,
                                                time_t now, time_t extend_to);
void mcpauth__shm_session_remove(mcpauth_shm *shm, const char *id);

/* Concurrency caps: a slot per request in flight, counted per key (as
 * above) across every process of the host.  A slot records its process,
 * and slots of processes that no longer exist are reclaimed, so a crash
 * never leaves a caller locked out. */
typedef struct {
    size_t index;              /* SIZE_MAX: no slot held */
    unsigned char key[32];
} mcpauth_shm_slot;

/* Takes a slot for key unless cap are already in flight: 1 taken (or cap
 * <= 0, no cap: then nothing is held), 0 over the cap, -1 when it cannot be
 * counted (the table is full of live slots, or a broken environment). */
int mcpauth__shm_inflight_acquire(mcpauth_shm *shm, const void *key, size_t keylen, long cap,
                                  mcpauth_shm_slot *slot);
/* Gives the slot back (nothing when none is held); safe to call twice. */
void mcpauth__shm_inflight_release(mcpauth_shm *shm, mcpauth_shm_slot *slot);
/* Slots key holds now, those of dead processes not counted. */
size_t mcpauth__shm_inflight_count(mcpauth_shm *shm, const void *key, size_t keylen);

#endif
