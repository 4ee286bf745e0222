/* The revoked-token set shared by every process on the host (not
 * installed): the built-in AS adds the SHA-256 of each access token it
 * revokes, mcpauth-gate and mcpauth-proxy look every token of that AS up
 * before accepting it, so a revocation takes effect at once instead of when
 * the token expires.
 *
 * One file under runtime_dir (revoked.shm): a header (magic, layout, a
 * per-file hash key, a generation counter, a robust process-shared mutex
 * for writers) and a fixed table of slots {keyed hash, expiry}.  Writers
 * (the AS, the admin tool) map it read-write and serialise on the mutex;
 * readers (the validator) map it read-only and never lock: a slot's key is
 * written before its expiry is published with release order, and a live
 * slot is never overwritten, so a lock-free probe sees either the whole
 * entry or none of it.  Entries expire with their token (plus the largest
 * clock_leeway), which frees the slot. */
#ifndef MCPAUTH_REVOKED_H
#define MCPAUTH_REVOKED_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <mcpauth/config.h>

#include "store.h"

#define MCPAUTH__REVOKED_SLOTS ((size_t)1 << 17) /* 4 MiB, only touched pages resident */
#define MCPAUTH__REVOKED_FILE "revoked.shm"

typedef struct mcpauth__revoked mcpauth__revoked;

/* The set where cfg->shared_state says: runtime_dir/revoked.shm (shm; as
 * open_rw with MCPAUTH__REVOKED_SLOTS or open_ro below) or Redis (see
 * state.h: every host's gate and proxy see an add within a second; never
 * connects here, so a Redis down at start delays nothing).  A writer:
 * NULL with a reason in err.  A reader: always a handle (answering "cannot
 * tell" until the set can be read), err non-empty when that is so now. */
mcpauth__revoked *mcpauth__revoked_open(const mcpauth_config *cfg, int writable, char *err,
                                        size_t errlen);
/* 1 when the handle keeps the set in Redis. */
int mcpauth__revoked_is_redis(const mcpauth__revoked *r);

/* runtime_dir/revoked.shm into buf; -1 when it does not fit. */
int mcpauth__revoked_path(const mcpauth_config *cfg, char *buf, size_t cap);

/* Writer: opens (creating when absent, re-laying out a file of another
 * layout) path with `slots` slots.  NULL with a reason in err. */
mcpauth__revoked *mcpauth__revoked_open_rw(const char *path, size_t slots, char *err,
                                           size_t errlen);
/* Reader: read-only, never creates.  A missing or unreadable file is
 * tried again by the next mcpauth__revoked_has; err says why the
 * first attempt failed (empty when it succeeded). */
mcpauth__revoked *mcpauth__revoked_open_ro(const char *path, char *err, size_t errlen);
void mcpauth__revoked_close(mcpauth__revoked *r);

/* Records digest (SHA-256 of the token) as revoked until token_exp (plus
 * the largest clock leeway).  0 ok, -1 when it could not be recorded.  When
 * every slot the key may use holds a live entry, the one closest to expiry
 * is given up and the whole set answers "revoked" until that entry would
 * have expired (fail closed; logged as a security event). */
int mcpauth__revoked_add(mcpauth__revoked *r, const unsigned char digest[32], time_t token_exp,
                         time_t now);

/* 1 revoked, 0 not, -1 cannot tell (no readable file: the caller must
 * refuse).  Lock-free; safe against concurrent writers in other processes
 * and threads. */
int mcpauth__revoked_has(mcpauth__revoked *r, const unsigned char digest[32], time_t now);

/* Changes with every add (tests, statistics); 0 when not open. */
uint64_t mcpauth__revoked_generation(mcpauth__revoked *r);

/* Pushes into the set every unexpired access token the store knows whose
 * grant (family) is revoked or gone and that was not pushed yet.  Run it
 * after anything that revokes families (the AS does; `mcpauth revoke`
 * and `mcpauth clients delete` should).  Returns tokens added, or -1 when
 * the store could not be read or some token could not be added (Redis
 * unreachable): *pending (may be NULL) then says how many were refused;
 * they stay marked unpushed in the store and the next sync offers them
 * again, so the caller must run one again later. */
long mcpauth__revoked_sync(mcpauth__revoked *r, mcpauth_store *s, time_t now, long *pending);

#endif
