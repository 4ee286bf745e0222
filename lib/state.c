/* See state.h: the proxy's rate limits and session bindings, dispatched to
 * the host's proxy.shm (shm.c, unchanged behaviour) or to Redis
 * (state_redis.c). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "metrics.h"
#include "state.h"
#include "strbuf.h"

struct mcpauth__state {
    mcpauth_shm *shm;     /* lent; the back-end when redis is NULL */
    mcpauth__redis *redis;
};

/* Counted in the block of no resource: the validator's lookups have none. */
void mcpauth__state_count_error(const mcpauth_resource *res, mcpauth__ss_op op)
{
    (void)res;
    if (op >= 0 && op < MCPAUTH__SS_COUNT)
        mcpauth__metrics_add(NULL, (mcpauth__metric)(MCPAUTH_M_SHARED_STATE_ERRORS + op), 1);
}

mcpauth__state *mcpauth__state_open(const mcpauth_config *cfg, mcpauth_shm *shm, char *err,
                                    size_t errlen)
{
    mcpauth__state *st = mcpauth__xcalloc(1, sizeof *st);
    st->shm = shm;
    const char *ss = cfg->shared_state;
    if (ss && strcmp(ss, "shm") != 0) {
        char why[512];
        st->redis = mcpauth__redis_open(ss, cfg->shared_state_timeout, why, sizeof why);
        if (!st->redis) {
            mcpauth__errf(err, errlen, "shared_state: %s", why);
            free(st);
            return NULL;
        }
    }
    return st;
}

void mcpauth__state_close(mcpauth__state *st)
{
    if (!st)
        return;
    mcpauth__redis_close(st->redis);
    free(st);
}

int mcpauth__state_is_redis(const mcpauth__state *st)
{
    return st && st->redis;
}

int mcpauth__state_rate(mcpauth__state *st, const void *key, size_t keylen, double rate,
                        double burst, double now, int *retry_after)
{
    if (st && st->redis)
        return mcpauth__redis_rate(st->redis, key, keylen, rate, burst, now, retry_after);
    return mcpauth__shm_rate(st ? st->shm : NULL, key, keylen, rate, burst, now, retry_after);
}

int mcpauth__state_session_bind(mcpauth__state *st, const char *id, const char *owner,
                                time_t expires, time_t now)
{
    if (st && st->redis)
        return mcpauth__redis_session_bind(st->redis, id, owner, (long)(expires - now));
    return st && st->shm ? mcpauth__shm_session_bind(st->shm, id, owner, expires) : 0;
}

int mcpauth__state_session_check(mcpauth__state *st, const char *id, const char *owner,
                                 time_t now, time_t extend_to)
{
    if (st && st->redis)
        return mcpauth__redis_session_check(st->redis, id, owner, (long)(extend_to - now));
    if (!st || !st->shm)
        return MCPAUTH_SESSION_UNKNOWN;
    return (int)mcpauth__shm_session_check(st->shm, id, owner, now, extend_to);
}

int mcpauth__state_session_remove(mcpauth__state *st, const char *id)
{
    if (st && st->redis)
        return mcpauth__redis_session_remove(st->redis, id);
    if (st && st->shm)
        mcpauth__shm_session_remove(st->shm, id);
    return 0;
}
