/* Validation cache (not installed): remembers a decision per (SHA-256 of the
 * token, resource), never the token itself.  Bounded, set-associative,
 * lock-striped; a hit copies the identity out without allocating. */
#ifndef MCPAUTH_CACHE_H
#define MCPAUTH_CACHE_H

#include <stddef.h>
#include <time.h>

#include <mcpauth/validate.h>

typedef struct mcpauth_cache mcpauth_cache;

/* entries == 0 gives a cache that never stores anything. */
mcpauth_cache *mcpauth__cache_new(size_t entries);

/* The same cache in a file every process on the host maps (shared_cache,
 * for CGI: one request per process): exactly `entries` fixed-size slots
 * (1 to 2^24) at path (e.g. runtime_dir/cache.shm), created 0600, never
 * through a symlink; a file of another layout, size or garbage is replaced
 * by rename.  Identities too long for a slot (MCPAUTH__CACHE_SHARED_DATA
 * bytes for subject, client_id, issuer and scope with their NULs) are not
 * stored, and a reason is cut to fit.  NULL with a reason in err. */
#define MCPAUTH__CACHE_SHARED_DATA 1984
mcpauth_cache *mcpauth__cache_open_shared(const char *path, size_t entries, char *err,
                                          size_t errlen);
void mcpauth__cache_free(mcpauth_cache *c);

/* 1 on a hit that has not expired at now: *positive says whether the token
 * was accepted; id (positive) or reason (negative, reasonlen bytes) filled. */
int mcpauth__cache_get(mcpauth_cache *c, const unsigned char key[32], unsigned resource, time_t now,
                      int *positive, mcpauth_identity *id, char *reason, size_t reasonlen);

/* Stores a result until expires.  id for positive results, reason for
 * negative ones.  1 when it pushed out another token's result that had
 * not expired yet (an eviction: the cache is too small for the load). */
int mcpauth__cache_put(mcpauth_cache *c, const unsigned char key[32], unsigned resource,
                       time_t expires, int positive, const mcpauth_identity *id,
                       const char *reason);

/* Entries currently stored (for tests and statistics). */
size_t mcpauth__cache_count(mcpauth_cache *c);

#endif
