/* The built-in authorization server; see as.h.  Endpoints live below
 * ISSUER/oauth2/: authorize, token, register, introspect, revoke, jwks.
 * This file holds the AS object and the dispatch; each endpoint has its
 * own file in lib/as/ (as_priv.h lists them). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include <mcpauth/log.h>
#include <mcpauth/util.h>

#include "alloc.h"
#include "as_priv.h"
#include "db.h"
#include "metrics.h"

void mcpauth_as_endpoint(const mcpauth_config *cfg, const char *name, char *buf, size_t cap)
{
    const char *iss = cfg->as->issuer;
    size_t n = strlen(iss);
    while (n > 0 && iss[n - 1] == '/')
        n--;
    snprintf(buf, cap, "%.*s/oauth2/%s", (int)n, iss, name);
}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void mcpauth__as_push_revocations(mcpauth_as *as)
{
    long pending = 0;
    atomic_store_explicit(&as->push_tried, mono_ms(), memory_order_relaxed);
    if (mcpauth__revoked_sync(as->revoked, as->store, time(NULL), &pending) >= 0) {
        if (atomic_exchange_explicit(&as->push_pending, 0, memory_order_acq_rel))
            mcpauth_log(MCPAUTH_LOG_INFO, "revocations_shared", "effect",
                        "the revocations that could not be written earlier are in the "
                        "revocation list now",
                        NULL);
        return;
    }
    /* The rows stay unpushed in the store: later requests try again
     * (mcpauth__as_retry_revocations).  Logged when it starts, not at every
     * retry. */
    if (atomic_exchange_explicit(&as->push_pending, 1, memory_order_acq_rel))
        return;
    char n[24];
    snprintf(n, sizeof n, "%ld", pending);
    mcpauth_log(MCPAUTH_LOG_ERROR, "revocation_not_shared", "pending", n, "reason",
                pending ? "the revocation list (shared_state) refused them"
                        : "the revocation list or the store cannot be read or written",
                "effect",
                "revoked access tokens stay valid at the resource servers until the list takes "
                "them; retried every second at the next request",
                NULL);
}

void mcpauth__as_retry_revocations(mcpauth_as *as)
{
    if (!atomic_load_explicit(&as->push_pending, memory_order_acquire))
        return;
    long long now = mono_ms(), last = atomic_load_explicit(&as->push_tried, memory_order_relaxed);
    /* one request per second retries (the one that wins the swap); the
     * others go on at once */
    if (now - last < 1000 ||
        !atomic_compare_exchange_strong_explicit(&as->push_tried, &last, now,
                                                 memory_order_relaxed, memory_order_relaxed))
        return;
    mcpauth__as_push_revocations(as);
}

const char *mcpauth__as_state_fault(const char *during)
{
    const char *why = mcpauth__store_fault();
    if (why)
        mcpauth_log(MCPAUTH_LOG_ERROR, "state_unavailable", "reason", why, "during", during,
                    "effect", "the request is refused with 503 and nothing is written; the same "
                    "request succeeds once the cause is fixed",
                    NULL);
    return why;
}

int mcpauth__as_store_unavailable(mcpauth_response *resp, const char *during)
{
    if (!mcpauth__as_state_fault(during))
        return 0;
    mcpauth__as_cors_public(resp);
    mcpauth_response_header(resp, "Retry-After", "5");
    mcpauth__as_oauth_error(resp, 503, "temporarily_unavailable",
                            "the authorization server's state is unavailable; try again later");
    return 1;
}

int mcpauth__as_scope_subset(const char *req, const mcpauth_strlist *allowed)
{
    mcpauth_strlist l = {0, NULL};
    mcpauth_strlist_split(&l, req); /* cannot fail: allocation aborts */
    int ok = 1;
    for (size_t i = 0; ok && i < l.n; i++)
        ok = mcpauth_strlist_has(allowed, l.v[i]);
    mcpauth_strlist_free(&l);
    return ok;
}

/* ------------------------------------------------------------- the state */

/* Opens the store (unless an earlier attempt did), loads the secret and
 * the keys.  Without any lock: at start-up, or by the one request that
 * set as->loading.  0, or -1 with err (a store fault, if any, is then
 * mcpauth__store_fault's). */
static int load_state(mcpauth_as *as, char *err, size_t errlen)
{
    if (!as->store &&
        !(as->store = mcpauth__store_open(as->ac->state_dir, as->ac->store, err, errlen)))
        return -1;
    if (mcpauth__secret_load(as->store, as->ac->state_dir, as->secret, err, errlen) < 0)
        return -1;
    as->key_checked = time(NULL); /* no request reads it before ready */
    return mcpauth__as_refresh_keys(as, as->key_checked, err, errlen);
}

/* After load_state failed at start-up: the PostgreSQL server does not
 * answer now, which passes by itself (start, load later), rather than a
 * setting, a schema that needs `mcpauth migrate` or a missing `mcpauth
 * init` (stop now: they do not pass by themselves). */
static int unreachable_now(mcpauth_as *as)
{
    if (!mcpauth__db_is_pg(as->ac->store))
        return 0;
    if (as->store) /* connected, then lost it reading the secret or the keys */
        return mcpauth__store_fault() != NULL;
    return mcpauth__db_pg_unreachable(as->ac->store);
}

/* Loaded, or loaded now by this request.  One request loads, outside the
 * lock (the connect timeout may pass); a request that comes meanwhile is
 * not made to wait for the same database and gets 503 at once.  A reason
 * is logged when it differs from the last one logged: one line per outage,
 * not one per request. */
static int state_ready(mcpauth_as *as)
{
    if (atomic_load_explicit(&as->ready, memory_order_acquire))
        return 1;
    pthread_mutex_lock(&as->load_lock);
    int ready = atomic_load_explicit(&as->ready, memory_order_acquire);
    int mine = !ready && !as->loading;
    if (mine)
        as->loading = 1;
    pthread_mutex_unlock(&as->load_lock);
    if (!mine)
        return ready;
    char why[sizeof as->load_why] = "";
    int ok = load_state(as, why, sizeof why) == 0;
    if (ok)
        mcpauth__as_push_revocations(as); /* what `mcpauth revoke` did meanwhile */
    pthread_mutex_lock(&as->load_lock);
    as->loading = 0;
    int news = !ok && strcmp(why, as->load_why) != 0;
    if (news)
        snprintf(as->load_why, sizeof as->load_why, "%s", why);
    if (ok)
        atomic_store_explicit(&as->ready, 1, memory_order_release);
    pthread_mutex_unlock(&as->load_lock);
    if (ok)
        mcpauth_log(MCPAUTH_LOG_INFO, "state_loaded", "effect",
                    "the database can be reached: the state is loaded and requests are served",
                    NULL);
    else if (news)
        mcpauth_log(MCPAUTH_LOG_ERROR, "state_unavailable", "reason", why, "during",
                    "loading the state", "effect",
                    "every endpoint answers 503 with Retry-After; the next request tries again",
                    NULL);
    return ok;
}

/* 503 while the state is not loaded: the authorize endpoint is a page in
 * the user's browser (nothing may go to a redirect URI the AS cannot check
 * yet), the others answer the client in JSON. */
static void not_ready(mcpauth_response *resp, int page)
{
    mcpauth_response_header(resp, "Retry-After", "5");
    if (page) {
        mcpauth__as_error_page(resp, 503, "Temporarily unavailable",
                               "The authorization server cannot reach its database just now. "
                               "Try again in a moment.");
        return;
    }
    mcpauth__as_cors_public(resp);
    mcpauth__as_oauth_error(resp, 503, "temporarily_unavailable",
                            "the authorization server's state is unavailable; try again later");
}

/* ---------------------------------------------------------------- handle */

static void preflight(mcpauth_response *resp)
{
    mcpauth__as_cors_public(resp);
    mcpauth_response_set_status(resp, 204);
    mcpauth_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    mcpauth_response_header(resp, "Access-Control-Allow-Headers",
                            "Authorization, Content-Type, MCP-Protocol-Version");
    mcpauth_response_header(resp, "Access-Control-Max-Age", "86400");
    mcpauth_response_send(resp, NULL, 0);
}

/* An endpoint that exists, asked with the wrong method. */
static int known_endpoint(const char *ep)
{
    return !strcmp(ep, "authorize") || !strcmp(ep, "token") || !strcmp(ep, "register") ||
           !strcmp(ep, "introspect") || !strcmp(ep, "revoke") || !strcmp(ep, "jwks");
}

void mcpauth_as_handle(mcpauth_as *as, const mcpauth_request *req, mcpauth_response *resp)
{
    size_t pl = strlen(as->prefix);
    const char *ep = strncmp(req->path, as->prefix, pl) == 0 && req->path[pl] == '/'
                         ? req->path + pl + 1
                         : NULL;
    const char *m = req->method;
    int get = !strcmp(m, "GET"), post = !strcmp(m, "POST");
    mcpauth__metrics_attach(as->cfg); /* at the first request: never by a --check run */
    if (!ep) {
        mcpauth__as_oauth_error(resp, 404, "not_found", "no such endpoint");
        return;
    }
    if (!strcmp(m, "OPTIONS") && strcmp(ep, "authorize") != 0) {
        preflight(resp);
        return;
    }
    int authorize = !strcmp(ep, "authorize") && (get || post);
    int served = authorize || (!strcmp(ep, "jwks") && get) ||
                 (post && (!strcmp(ep, "token") || !strcmp(ep, "register") ||
                           !strcmp(ep, "introspect") || !strcmp(ep, "revoke")));
    if (served && !state_ready(as)) {
        not_ready(resp, authorize);
        return;
    }
    if (served)
        mcpauth__as_retry_revocations(as);
    if (authorize)
        mcpauth__as_authorize(as, req, resp, post);
    else if (!strcmp(ep, "token") && post)
        mcpauth__as_token(as, req, resp);
    else if (!strcmp(ep, "register") && post)
        mcpauth__as_register(as, req, resp);
    else if (!strcmp(ep, "introspect") && post)
        mcpauth__as_introspect(as, req, resp);
    else if (!strcmp(ep, "revoke") && post)
        mcpauth__as_revoke(as, req, resp);
    else if (!strcmp(ep, "jwks") && get)
        mcpauth__as_jwks(as, resp);
    else if (known_endpoint(ep)) {
        mcpauth_response_header(resp, "Allow", !strcmp(ep, "jwks") ? "GET" :
                                               !strcmp(ep, "authorize") ? "GET, POST" : "POST");
        mcpauth__as_oauth_error(resp, 405, "invalid_request", "method not allowed");
    } else {
        mcpauth__as_oauth_error(resp, 404, "not_found", "no such endpoint");
    }
}

/* ------------------------------------------------------------- lifecycle */

/* Without the shared set a revocation would not reach the gate and the
 * proxy: refuse to start rather than promise what we cannot do. */
static int open_revoked(mcpauth_as *as, char *err, size_t errlen)
{
    char why[512];
    if (!(as->revoked = mcpauth__revoked_open(as->cfg, 1, why, sizeof why))) { /* shm or Redis */
        snprintf(err, errlen, "revocation list: %s (runtime_dir must exist and be writable by the "
                              "web server's user)",
                 why);
        return -1;
    }
    return 0;
}

mcpauth_as *mcpauth_as_new(const mcpauth_config *cfg, char *err, size_t errlen)
{
    if (!cfg->as) {
        snprintf(err, errlen, "%s: no [authorization_server] section", cfg->file);
        return NULL;
    }
    mcpauth_as *as = mcpauth__xcalloc(1, sizeof *as);
    as->cfg = cfg;
    as->ac = cfg->as;
    pthread_mutex_init(&as->key_lock, NULL);
    pthread_mutex_init(&as->load_lock, NULL);
    atomic_init(&as->ready, 0);
    atomic_init(&as->push_pending, 0);
    atomic_init(&as->push_tried, 0);
    char url[2100];
    mcpauth_as_endpoint(cfg, "x", url, sizeof url);
    const char *sep = strstr(url, "://");
    const char *path = sep ? sep + 3 + strcspn(sep + 3, "/") : url;
    snprintf(as->prefix, sizeof as->prefix, "%.*s", (int)(strlen(path) - 2), path);
    char why[sizeof as->load_why] = "";
    int loaded = load_state(as, why, sizeof why) == 0;
    if (!loaded && !unreachable_now(as)) {
        snprintf(err, errlen, "%s", why);
        mcpauth_as_free(as);
        return NULL;
    }
    as->cimd = mcpauth__cimd_new(256);
    if (open_revoked(as, err, errlen) < 0) {
        mcpauth_as_free(as);
        return NULL;
    }
    if (loaded) {
        mcpauth__as_push_revocations(as); /* what `mcpauth revoke` did while we were down */
        atomic_store_explicit(&as->ready, 1, memory_order_release);
        return as;
    }
    /* Issue 15: a database that is down must not keep the program from
     * starting (the web server would respawn it in a loop) */
    snprintf(as->load_why, sizeof as->load_why, "%s", why);
    mcpauth_log(MCPAUTH_LOG_ERROR, "state_unavailable", "reason", why, "during", "start-up",
                "effect", "started anyway: every endpoint answers 503 with Retry-After until the "
                "database can be reached, then the next request loads the state, no restart "
                "needed",
                NULL);
    return as;
}

void mcpauth_as_free(mcpauth_as *as)
{
    if (!as)
        return;
    mcpauth__store_close(as->store);
    mcpauth__cimd_free(as->cimd);
    mcpauth__revoked_close(as->revoked);
    mcpauth__as_keys_put(as->keys);
    OPENSSL_cleanse(as->secret, sizeof as->secret);
    pthread_mutex_destroy(&as->key_lock);
    pthread_mutex_destroy(&as->load_lock);
    free(as);
}
