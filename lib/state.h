/* The state the proxy, the gate and the AS share (not installed): rate-limit
 * buckets, MCP session bindings and the revoked-token set, kept where
 * shared_state says: "shm" (files under runtime_dir, one host: shm.c,
 * revoked.c) or Redis (state_redis.c, every host behind a load balancer).
 *
 * Every call answers at once or within shared_state_timeout: when Redis
 * cannot be reached it returns MCPAUTH__STATE_UNAVAILABLE and the caller
 * applies its policy (shared_state_fail_rate, shared_state_fail_sessions;
 * revocations fail closed).  Requests in flight per caller are never here:
 * they stay in the host's proxy.shm (they protect the host itself).
 *
 * The revoked-token set keeps its own handle (mcpauth__revoked, revoked.h),
 * opened by mcpauth__revoked_open from the configuration; it calls the
 * Redis functions below itself, so its callers did not change. */
#ifndef MCPAUTH_STATE_H
#define MCPAUTH_STATE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <mcpauth/config.h>

#include "shm.h"

/* Distinct from every "yes/no" answer: the shared state could not be asked. */
#define MCPAUTH__STATE_UNAVAILABLE (-2)

/* What a failure concerned (the label of mcpauth_shared_state_errors_total). */
typedef enum {
    MCPAUTH__SS_RATE = 0,
    MCPAUTH__SS_SESSION,
    MCPAUTH__SS_REVOKED,
    MCPAUTH__SS_COUNT
} mcpauth__ss_op;

/* Counts one request that met an unreachable shared state (the metric
 * mcpauth_shared_state_errors_total{op}, in the block of no resource: the
 * validator's lookups have none, so res is ignored); the back-end itself
 * logs the outage (once when it starts, then at most every 10 s with the
 * count, and when it ends), not each request. */
void mcpauth__state_count_error(const mcpauth_resource *res, mcpauth__ss_op op);

/* ------------------------------------------------ the proxy's interface */

typedef struct mcpauth__state mcpauth__state;

/* The back-end cfg->shared_state names.  shm is lent (the proxy's
 * proxy.shm, which keeps the in-flight slots either way) and used as the
 * back-end when shared_state = shm; it must outlive the handle.  Redis is
 * not contacted here (lazily, at the first call), so a Redis that is down
 * at start does not keep the proxy from starting.  NULL with err set on a
 * bad address. */
mcpauth__state *mcpauth__state_open(const mcpauth_config *cfg, mcpauth_shm *shm, char *err,
                                    size_t errlen);
void mcpauth__state_close(mcpauth__state *st);
/* 1 when the handle uses Redis. */
int mcpauth__state_is_redis(const mcpauth__state *st);

/* Token bucket (see mcpauth__shm_rate): 1 allowed, 0 limited (with
 * *retry_after), MCPAUTH__STATE_UNAVAILABLE. */
int mcpauth__state_rate(mcpauth__state *st, const void *key, size_t keylen, double rate,
                        double burst, double now, int *retry_after);
/* Binds id to owner until expires: 0, -1 bound to another owner (refused),
 * MCPAUTH__STATE_UNAVAILABLE. */
int mcpauth__state_session_bind(mcpauth__state *st, const char *id, const char *owner,
                                time_t expires, time_t now);
/* An mcpauth_session_match, or MCPAUTH__STATE_UNAVAILABLE.  A binding of
 * owner is extended to extend_to. */
int mcpauth__state_session_check(mcpauth__state *st, const char *id, const char *owner,
                                 time_t now, time_t extend_to);
/* 0 or MCPAUTH__STATE_UNAVAILABLE (the binding then expires by itself). */
int mcpauth__state_session_remove(mcpauth__state *st, const char *id);

/* ---------------------------------------- the Redis back-end (state_redis.c) */

typedef struct mcpauth__redis mcpauth__redis;

/* Parses url (redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], HOST may be
 * [IPv6]; unix:/PATH[?db=N]); connects lazily.  timeout_ms bounds each
 * connect and each command.  NULL with err set when url is not valid or
 * this build has no hiredis. */
mcpauth__redis *mcpauth__redis_open(const char *url, long timeout_ms, char *err, size_t errlen);
/* 0 when url is a valid address for mcpauth__redis_open, else -1 with the
 * reason in err (also in builds without hiredis).  No message here or in
 * mcpauth__redis_open ever holds the password: the address is shown as
 * mcpauth__redis_mask shows it. */
int mcpauth__redis_check_url(const char *url, char *err, size_t errlen);
/* url with its userinfo (everything between "://" and the last '@')
 * replaced by "***", into buf (truncated to cap). */
void mcpauth__redis_mask(const char *url, char *buf, size_t cap);
void mcpauth__redis_close(mcpauth__redis *r);

/* As the functions above; keys are hashed (SHA-256) before they go to
 * Redis, so neither session ids nor owners are stored in clear. */
int mcpauth__redis_rate(mcpauth__redis *r, const void *key, size_t keylen, double rate,
                        double burst, double now, int *retry_after);
int mcpauth__redis_session_bind(mcpauth__redis *r, const char *id, const char *owner,
                                long ttl_seconds);
int mcpauth__redis_session_check(mcpauth__redis *r, const char *id, const char *owner,
                                 long extend_seconds);
int mcpauth__redis_session_remove(mcpauth__redis *r, const char *id);

/* Revocations: a sorted set mcpauth:revoked (hex digest scored by the time
 * the entry may go) and a generation counter mcpauth:revoked:gen bumped by
 * every add.  add: 0 or MCPAUTH__STATE_UNAVAILABLE.  has: 1, 0, or
 * MCPAUTH__STATE_UNAVAILABLE; answered from a mirror of the set in this
 * process, re-validated against the generation at most every
 * MCPAUTH__REDIS_MIRROR_MS and trusted for at most MCPAUTH__REDIS_MIRROR_MAX_MS
 * (so a revocation anywhere is refused everywhere within a second; with
 * Redis unreachable for longer, has says unavailable and the caller fails
 * closed). */
/* Locks: the mirror is read under a rwlock held for one binary search;
 * one thread refreshes it (a mutex held over one round trip, bounded by
 * shared_state_timeout) while the others go on with the copy they have,
 * and wait for it only when that copy is about to be too old to trust.
 * A lost set (Redis restarted without persistence, or the set alone
 * evicted or deleted: its random epoch key changed, see s_revoke) is
 * logged, and what this process knew stays refused. */
#define MCPAUTH__REDIS_MIRROR_MS 250
#define MCPAUTH__REDIS_MIRROR_MAX_MS 1000
int mcpauth__redis_revoked_add(mcpauth__redis *r, const unsigned char digest[32], time_t until);
int mcpauth__redis_revoked_has(mcpauth__redis *r, const unsigned char digest[32], time_t now);
/* The generation the mirror was last checked against (0: never). */
uint64_t mcpauth__redis_revoked_generation(mcpauth__redis *r);

#endif
