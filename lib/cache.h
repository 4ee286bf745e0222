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
void mcpauth__cache_free(mcpauth_cache *c);

/* 1 on a hit that has not expired at now: *positive says whether the token
 * was accepted; id (positive) or reason (negative, reasonlen bytes) filled. */
int mcpauth__cache_get(mcpauth_cache *c, const unsigned char key[32], unsigned resource, time_t now,
                      int *positive, mcpauth_identity *id, char *reason, size_t reasonlen);

/* Stores a result until expires.  id for positive results, reason for
 * negative ones. */
void mcpauth__cache_put(mcpauth_cache *c, const unsigned char key[32], unsigned resource,
                       time_t expires, int positive, const mcpauth_identity *id,
                       const char *reason);

/* Entries currently stored (for tests and statistics). */
size_t mcpauth__cache_count(mcpauth_cache *c);

#endif
