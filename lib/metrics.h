/* Counters and histograms shared by every mcpauth process of a host (not
 * installed): one mmap'd file, runtime_dir/metrics.shm, opened through
 * mcpauth__shmfile_open.  A block of counters per resource (by its place in
 * the configuration; the header holds a fingerprint of the resource names,
 * so another list of resources replaces the file) and one for what belongs
 * to no resource (keys, introspection, the built-in AS).  An update is one
 * __atomic_fetch_add on the map: no lock, no system call.  A small table of
 * process slots names the processes counting, for the per-process figures
 * (RSS, threads, descriptors) read from /proc when scraped. */
#ifndef MCPAUTH_METRICS_H
#define MCPAUTH_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include <mcpauth/config.h>
#include <mcpauth/validate.h>

/* Counters.  The first six follow mcpauth_verdict (MCPAUTH_ALLOW ...). */
typedef enum {
    MCPAUTH_M_REQ_ALLOW = 0,
    MCPAUTH_M_REQ_NO_TOKEN,
    MCPAUTH_M_REQ_BAD_REQUEST,
    MCPAUTH_M_REQ_INVALID_TOKEN,
    MCPAUTH_M_REQ_INSUFFICIENT_SCOPE,
    MCPAUTH_M_REQ_UNAVAILABLE,
    /* refusals by reason: see mcpauth__metrics_refused */
    MCPAUTH_M_REFUSED,
    MCPAUTH_M_CACHE_HIT = MCPAUTH_M_REFUSED + 16,
    MCPAUTH_M_CACHE_MISS,
    MCPAUTH_M_RATE_ADDRESS,
    MCPAUTH_M_RATE_SUBJECT,
    MCPAUTH_M_RATE_CONCURRENCY,
    MCPAUTH_M_BACKEND_REQUESTS,
    MCPAUTH_M_BACKEND_ERRORS,
    MCPAUTH_M_BACKEND_TIMEOUTS,
    MCPAUTH_M_STREAMS_OPEN, /* a gauge: added to and taken from */
    /* stream ends: MCPAUTH_M_STREAM_END + mcpauth__stream_end */
    MCPAUTH_M_STREAM_END,
    MCPAUTH_M_BYTES_TO_BACKEND = MCPAUTH_M_STREAM_END + 8,
    MCPAUTH_M_BYTES_TO_CLIENT,
    /* the block of no resource */
    MCPAUTH_M_JWKS_FETCHES, /* that succeeded */
    MCPAUTH_M_JWKS_FAILURES,
    MCPAUTH_M_INTROSPECTIONS, /* that got an answer */
    MCPAUTH_M_INTROSPECTION_FAILURES,
    MCPAUTH_M_AS_REGISTRATIONS,
    MCPAUTH_M_AS_AUTHORIZATIONS,
    MCPAUTH_M_AS_CONSENTS,
    MCPAUTH_M_AS_CODES,
    MCPAUTH_M_AS_TOKENS,
    MCPAUTH_M_AS_REFRESH_ROTATIONS,
    MCPAUTH_M_AS_REUSE_DETECTED,
    MCPAUTH_M_AS_REVOCATIONS,
    MCPAUTH_M_AS_CIMD_FETCHES,
    MCPAUTH_M_AS_CIMD_REFUSED,
    MCPAUTH_M_CACHE_EVICTIONS,
    /* requests that met an unreachable shared state (Redis), by what they
     * needed: MCPAUTH_M_SHARED_STATE_ERRORS + mcpauth__ss_op (state.h) */
    MCPAUTH_M_SHARED_STATE_ERRORS,
    MCPAUTH_M_COUNT = MCPAUTH_M_SHARED_STATE_ERRORS + 3
} mcpauth__metric;

typedef enum {
    MCPAUTH_SE_DONE = 0,     /* the backend ended it */
    MCPAUTH_SE_CLIENT_GONE,
    MCPAUTH_SE_BACKEND_ERROR,
    MCPAUTH_SE_IDLE_TIMEOUT,
    MCPAUTH_SE_SHUTDOWN,
    MCPAUTH_SE_COUNT
} mcpauth__stream_end;

typedef enum {
    MCPAUTH_H_VALIDATION = 0, /* mcpauth_validate_request, seconds */
    MCPAUTH_H_BACKEND,        /* request sent to response headers, seconds */
    MCPAUTH_H_COUNT
} mcpauth__hist;

typedef struct mcpauth__metrics mcpauth__metrics;

/* Opens (creating, or replacing when its resources differ) the file at path
 * for cfg's resources.  NULL with a reason in err. */
mcpauth__metrics *mcpauth__metrics_open(const char *path, const mcpauth_config *cfg, char *err,
                                        size_t errlen);
/* Read-only, for `mcpauth status` (may be root's file): never creates. */
mcpauth__metrics *mcpauth__metrics_open_ro(const char *path, const mcpauth_config *cfg,
                                           char *err, size_t errlen);
void mcpauth__metrics_close(mcpauth__metrics *m);
/* runtime_dir/metrics.shm into buf; -1 when it does not fit. */
int mcpauth__metrics_path(const mcpauth_config *cfg, char *buf, size_t len);

/* Claims a process slot for this pid (label: the program); released by
 * mcpauth__metrics_close or found dead later. */
void mcpauth__metrics_claim(mcpauth__metrics *m, const char *program);

/* res: a resource of the configuration m was opened for; anything else
 * (NULL, another configuration's) counts in the block of no resource. */
void mcpauth__metrics_add_to(mcpauth__metrics *m, const mcpauth_resource *res,
                             mcpauth__metric c, int64_t n);
void mcpauth__metrics_observe_in(mcpauth__metrics *m, const mcpauth_resource *res,
                                 mcpauth__hist h, long long ns);
/* The current value of a counter (tests, status). */
int64_t mcpauth__metrics_get(const mcpauth__metrics *m, const mcpauth_resource *res,
                             mcpauth__metric c);

/* The Prometheus text format (0.0.4) of everything: malloc'd, *len set. */
char *mcpauth__metrics_render(mcpauth__metrics *m, size_t *len);

/* The process's own handle, opened on first use for the configuration it
 * was first asked for (never by a --check run: callers attach only when
 * serving).  Each call is cheap after the first; with metrics = no or a
 * runtime_dir that cannot hold the file (said once in the log) everything
 * below does nothing. */
void mcpauth__metrics_attach(const mcpauth_config *cfg);
/* The attached handle when it was opened for cfg, or NULL. */
mcpauth__metrics *mcpauth__metrics_global(const mcpauth_config *cfg);
void mcpauth__metrics_add(const mcpauth_resource *res, mcpauth__metric c, int64_t n);
void mcpauth__metrics_observe(const mcpauth_resource *res, mcpauth__hist h, long long ns);
/* Monotonic nanoseconds (vDSO clock: no system call). */
long long mcpauth__metrics_now(void);

/* The counter of refusals with code r (the decision's refusal, set by the
 * validator): one per reason label; NONE or a value out of range counts
 * as "other". */
mcpauth__metric mcpauth__metrics_refused(mcpauth_refusal r);
/* The reason label of that counter: a static string. */
const char *mcpauth__metrics_refusal_label(mcpauth_refusal r);

/* metrics_allow: a CIDR list ("127.0.0.0/8 ::1").  1 when one of the
 * entries is a valid CIDR and addr (an IPv4 or IPv6 literal, IPv4-mapped
 * taken as IPv4) lies in one; 0 otherwise. */
int mcpauth__cidr_valid(const char *cidr);
int mcpauth__cidr_match(const mcpauth_strlist *allow, const char *addr);

#endif
