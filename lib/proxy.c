/* mcpauth-proxy's checks.  Every MCP request is read once into a view (its
 * method and the headers that matter), then passes the stages in order:
 * route and Origin, CORS preflight, address rate and HTTP method,
 * authentication and subject rate, protocol version; for a POST then media
 * types, body, JSON-RPC, policy and session.  Each stage either lets the
 * request go on or has answered it.  Only then does proxy_relay.c send it to
 * the backend. */
#include "config.h"

#include <fnmatch.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>

#include "jsonrpc.h"
#include <mcpauth/log.h>
#include <mcpauth/proxy.h>
#include "uri.h"
#include <mcpauth/validate.h>

#include "alloc.h"
#include "clock.h"
#include "metrics.h"
#include "proxy_priv.h"
#include "shm.h"
#include "state.h"
#include "strbuf.h"

typedef enum { GO = 0, ANSWERED = 1 } stage;

/* One request on its way through the stages. */
typedef struct call {
    mcpauth_proxy *p;
    const mcpauth_config *cfg;
    const mcpauth_request *req;
    mcpauth_response *resp;
    mcpauth__proxy_view v;
    const mcpauth_resource *res;
    const char *origin_ok; /* Origin to echo in CORS headers; NULL: none */
    mcpauth_decision d;
    /* issuer, subject, client_id: who a session belongs to; room for all
     * three whole, so two callers never share a cut-short owner */
    char owner[sizeof ((mcpauth_identity *)0)->issuer + sizeof ((mcpauth_identity *)0)->subject +
               sizeof ((mcpauth_identity *)0)->client_id];
    char *body;
    size_t len;
    mcpauth_rpc rpc;
    mcpauth_strlist extra; /* scopes the policies demand */
} call;

/* --------------------------------------------------------------- replies */

void mcpauth__proxy_cors(mcpauth_response *resp, const char *origin_ok)
{
    if (!origin_ok)
        return;
    mcpauth_response_header(resp, "Access-Control-Allow-Origin", origin_ok);
    mcpauth_response_header(resp, "Vary", "Origin");
    mcpauth_response_header(resp, "Access-Control-Expose-Headers",
                            "Mcp-Session-Id, MCP-Protocol-Version, WWW-Authenticate");
}

void mcpauth__proxy_rpc_fail(mcpauth_response *resp, int status, int code, const char *message,
                             const char *id_json)
{
    const char *id = id_json ? id_json : "null";
    /* Room for the worst escaping of both, so the client's id always comes
     * back (a fixed buffer answered long ids with null). */
    size_t cap = 128 + 6 * (strlen(message) + strlen(id));
    char *body = mcpauth__xmalloc(cap);
    if (mcpauth__rpc_error_json(body, cap, code, message, id) < 0)
        mcpauth__fmt(body, cap, "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":%d,\"message\":\"error\"},"
                                "\"id\":null}", code);
    mcpauth_response_header(resp, "Cache-Control", "no-store");
    mcpauth_response_json(resp, status, body);
    free(body);
}

/* A refusal of a request from an acceptable Origin; always ANSWERED. */
static stage refuse(call *c, int status, int code, const char *message, const char *id_json)
{
    mcpauth__proxy_cors(c->resp, c->origin_ok);
    mcpauth__proxy_rpc_fail(c->resp, status, code, message, id_json);
    return ANSWERED;
}

static stage refuse_method(call *c, const char *allow)
{
    mcpauth__proxy_cors(c->resp, c->origin_ok);
    mcpauth_response_header(c->resp, "Allow", allow);
    mcpauth__proxy_rpc_fail(c->resp, 405, MCPAUTH_RPC_INVALID_REQUEST, "Method not allowed", NULL);
    return ANSWERED;
}

/* ------------------------------------------------------------------ view */

void mcpauth__proxy_view_read(const mcpauth_request *req, mcpauth__proxy_view *v)
{
    memset(v, 0, sizeof *v);
    v->method = req->method;
    v->post = strcmp(v->method, "POST") == 0;
    v->get = strcmp(v->method, "GET") == 0;
    v->del = strcmp(v->method, "DELETE") == 0;
    v->options = strcmp(v->method, "OPTIONS") == 0;
    v->origin = mcpauth_request_param(req, "HTTP_ORIGIN");
    v->content_type = mcpauth_request_param(req, "CONTENT_TYPE");
    v->content_length = mcpauth_request_param(req, "CONTENT_LENGTH");
    v->accept = mcpauth_request_param(req, "HTTP_ACCEPT");
    v->version = mcpauth_request_param(req, "HTTP_MCP_PROTOCOL_VERSION");
    v->era2026 = v->version && strcmp(v->version, "2026-07-28") == 0;
    /* 2026-07-28 has no sessions: an Mcp-Session-Id there is neither
     * checked nor forwarded */
    v->session = v->era2026 ? NULL : mcpauth_request_param(req, "HTTP_MCP_SESSION_ID");
    v->mcp_method = mcpauth_request_param(req, "HTTP_MCP_METHOD");
    v->mcp_name = mcpauth_request_param(req, "HTTP_MCP_NAME");
    v->last_event_id = mcpauth_request_param(req, "HTTP_LAST_EVENT_ID");
    v->cookie = mcpauth_request_param(req, "HTTP_COOKIE");
}

/* ---------------------------------------------------------------- checks */

/* The Origin (if any) this request may have; NULL when it must be refused.
 * "" means no Origin header: nothing to echo.  The header itself is
 * echoed, whole (a copy into a fixed buffer once cut long ones short). */
static const char *origin_check(const mcpauth_resource *res, const char *origin)
{
    if (!origin)
        return "";
    const char *why;
    char *canon = mcpauth__uri_canonicalize(origin, MCPAUTH_URI_ANY_HTTP, &why);
    int ok = 0;
    if (canon && !strchr(strstr(canon, "://") + 3, '/')) {
        ok = strcmp(canon, res->origin) == 0 || mcpauth_strlist_has(&res->allowed_origins, canon);
    }
    if (!ok && mcpauth_strlist_has(&res->allowed_origins, "*"))
        ok = 1;
    free(canon);
    return ok ? origin : NULL;
}

/* SHA-256 fetched once: EVP_sha256() makes every digest look its
 * implementation up again. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

/* The only hash of a rate or concurrency key: shm.c keys its slot index
 * with the file's secret itself (SipHash) and stores this digest. */
int mcpauth__proxy_rate_key(const char *kind, const char *resource, const char *const *parts,
                            size_t n, unsigned char out[MCPAUTH__RATE_KEY_LEN])
{
    pthread_once(&sha256_once, sha256_fetch);
    if (!sha256_md)
        return -1;
    EVP_MD_CTX *ctx = mcpauth__check(EVP_MD_CTX_new(), "EVP_MD_CTX");
    int ok = EVP_DigestInit_ex(ctx, sha256_md, NULL) == 1;
    for (size_t i = 0; ok && i < n + 2; i++) {
        const char *part = i == 0 ? kind : i == 1 ? resource : parts[i - 2];
        if (!part)
            part = "";
        uint64_t len = strlen(part);
        unsigned char be[8];
        for (int b = 0; b < 8; b++)
            be[b] = (unsigned char)(len >> (56 - 8 * b));
        ok = EVP_DigestUpdate(ctx, be, sizeof be) == 1 && EVP_DigestUpdate(ctx, part, len) == 1;
    }
    unsigned int mdlen = 0;
    ok = ok && EVP_DigestFinal_ex(ctx, out, &mdlen) == 1 && mdlen == MCPAUTH__RATE_KEY_LEN;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -1;
}

/* A request that needed the shared state and could not reach it: counted
 * (the back-end logs the outage itself), and with the closed policy
 * refused with 503 and Retry-After; GO with the open one. */
static stage state_unavailable(call *c, mcpauth__ss_op op, int closed, const char *id_json)
{
    mcpauth__state_count_error(c->res, op);
    if (!closed)
        return GO;
    mcpauth__proxy_cors(c->resp, c->origin_ok);
    mcpauth_response_header(c->resp, "Retry-After", "1");
    mcpauth__proxy_rpc_fail(c->resp, 503, MCPAUTH_RPC_SERVER_ERROR,
                            "Service temporarily unavailable", id_json);
    return ANSWERED;
}

/* who (n parts) names the caller in the key; shown is what the log says. */
static stage rate_check(call *c, const char *kind, const char *const *who, size_t n,
                        const char *shown, long rate, long burst)
{
    if (!c->p->state || rate <= 0)
        return GO;
    /* Hashed, not formatted into a buffer: a long resource name or
     * subject neither overruns it nor is cut short onto another's bucket. */
    unsigned char key[MCPAUTH__RATE_KEY_LEN];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int retry = 1, rc = 0;
    if (mcpauth__proxy_rate_key(kind, c->res->name, who, n, key) == 0)
        rc = mcpauth__state_rate(c->p->state, key, sizeof key, (double)rate, (double)burst,
                                 (double)ts.tv_sec + (double)ts.tv_nsec / 1e9, &retry);
    if (rc == 1)
        return GO;
    if (rc == MCPAUTH__STATE_UNAVAILABLE)
        return state_unavailable(c, MCPAUTH__SS_RATE, c->cfg->shared_state_fail_rate, NULL);
    char ra[16];
    mcpauth__fmt(ra, sizeof ra, "%d", retry); /* an int always fits */
    mcpauth__metrics_add(c->res, strcmp(kind, "address") == 0 ? MCPAUTH_M_RATE_ADDRESS
                                                              : MCPAUTH_M_RATE_SUBJECT, 1);
    mcpauth_log_security("rate_limited", "by", kind, "who", shown, "resource", c->res->name,
                         "client", c->req->remote_addr, NULL);
    mcpauth__proxy_cors(c->resp, c->origin_ok);
    mcpauth_response_header(c->resp, "Retry-After", ra);
    mcpauth__proxy_rpc_fail(c->resp, 429, MCPAUTH_RPC_SERVER_ERROR, "Too many requests", NULL);
    return ANSWERED;
}

/* Takes one of the caller's (issuer + subject) slots on this resource for
 * the relay, held across every process of the host until *slot is
 * released; a caller already at max_concurrent_per_caller is refused at
 * once, whatever it asks, so one caller's streams cannot hold every
 * worker.  id_json names the request in the refusal. */
static stage concurrency_take(call *c, const char *id_json, mcpauth_shm_slot *slot)
{
    slot->index = SIZE_MAX;
    long cap = c->res->max_concurrent_per_caller;
    /* The reserve: when this process is down to its last workers, only a
     * caller with nothing in flight gets one, so a caller that already
     * holds streams can never take the very last. */
    int scarce = c->req->spare_workers >= 0 &&
                 c->req->spare_workers < (int)c->cfg->proxy_reserve_threads;
    if (scarce && (cap <= 0 || cap > 1))
        cap = 1;
    if (!c->p->shm || cap <= 0)
        return GO;
    const mcpauth_identity *id = &c->d.id;
    const char *who[] = {id->issuer, id->subject};
    unsigned char key[MCPAUTH__RATE_KEY_LEN];
    int rc = -1;
    if (mcpauth__proxy_rate_key("concurrent", c->res->name, who, 2, key) == 0)
        rc = mcpauth__shm_inflight_acquire(c->p->shm, key, sizeof key, cap, slot);
    if (rc == 1)
        return GO;
    mcpauth__metrics_add(c->res, MCPAUTH_M_RATE_CONCURRENCY, 1);
    if (rc == 0)
        mcpauth_log_security("concurrency_limited", "who", id->subject, "issuer", id->issuer,
                             "resource", c->res->name, "client", c->req->remote_addr, "by",
                             scarce ? "reserve" : "caller_cap", NULL);
    else /* cannot count it: refused too, we are the gate */
        mcpauth_log(MCPAUTH_LOG_ERROR, "concurrency_table_full", "resource", c->res->name, NULL);
    mcpauth__proxy_cors(c->resp, c->origin_ok);
    mcpauth_response_header(c->resp, "Retry-After", "1");
    mcpauth__proxy_rpc_fail(c->resp, 429, MCPAUTH_RPC_SERVER_ERROR, "Too many concurrent requests",
                            id_json);
    return ANSWERED;
}

/* Both media types must be acceptable (Streamable HTTP, POST). */
static int accept_ok(const char *accept)
{
    if (!accept)
        return 0;
    return (strcasestr(accept, "application/json") || strstr(accept, "*/*")) &&
           (strcasestr(accept, "text/event-stream") || strstr(accept, "*/*"));
}

static int content_type_json(const char *ct)
{
    if (!ct)
        return 0;
    size_t n = strcspn(ct, "; \t");
    return n == 16 && strncasecmp(ct, "application/json", 16) == 0;
}

/* Scopes the policies demand for this method and name: the union of every
 * matching [policy], so one challenge names all of them. */
void mcpauth__proxy_policy_scopes(const mcpauth_config *cfg, const mcpauth_resource *res,
                                  const char *method, const char *name, mcpauth_strlist *out)
{
    for (size_t i = 0; i < cfg->npolicies; i++) {
        const mcpauth_policy *po = cfg->policies[i];
        if (po->resource != res || !method || fnmatch(po->method, method, 0) != 0)
            continue;
        if (po->target && (!name || fnmatch(po->target, name, 0) != 0))
            continue;
        for (size_t s = 0; s < po->scopes.n; s++) {
            if (mcpauth_strlist_has(out, po->scopes.v[s]))
                continue;
            /* A scope dropped here would let the request through. */
            out->v = mcpauth__xrealloc(out->v, (out->n + 2) * sizeof *out->v);
            out->v[out->n] = mcpauth__xstrdup(po->scopes.v[s]);
            out->v[++out->n] = NULL;
        }
    }
}

static int has_policy(const mcpauth_config *cfg, const mcpauth_resource *res)
{
    for (size_t i = 0; i < cfg->npolicies; i++)
        if (cfg->policies[i]->resource == res)
            return 1;
    return 0;
}

/* ---------------------------------------------------------------- stages */

/* Which MCP server, and whether a browser page from this Origin may call
 * it (DNS rebinding protection).  Refusals here carry no CORS headers. */
static stage stage_route(call *c)
{
    c->res = mcpauth_request_resource(c->cfg, c->req);
    if (!c->res || !c->res->backend) {
        mcpauth__proxy_rpc_fail(c->resp, 404, MCPAUTH_RPC_INVALID_REQUEST,
                                "No MCP server at this path", NULL);
        return ANSWERED;
    }
    const char *ok = origin_check(c->res, c->v.origin);
    if (!ok) {
        mcpauth_log_security("origin_refused", "origin", c->v.origin, "resource", c->res->name,
                             "client", c->req->remote_addr, NULL);
        mcpauth__proxy_rpc_fail(c->resp, 403, MCPAUTH_RPC_INVALID_REQUEST, "Origin not allowed",
                                NULL);
        return ANSWERED;
    }
    c->origin_ok = *ok ? ok : NULL;
    return GO;
}

/* Browsers send the preflight without credentials: answered unauthenticated. */
static stage stage_preflight(call *c)
{
    if (!c->v.options)
        return GO;
    mcpauth__proxy_cors(c->resp, c->origin_ok);
    mcpauth_response_set_status(c->resp, 204);
    mcpauth_response_header(c->resp, "Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
    mcpauth_response_header(c->resp, "Access-Control-Allow-Headers",
                            "Authorization, Content-Type, Accept, MCP-Protocol-Version, "
                            "Mcp-Session-Id, Last-Event-ID, Mcp-Method, Mcp-Name");
    mcpauth_response_header(c->resp, "Access-Control-Max-Age", "86400");
    mcpauth_response_send(c->resp, NULL, 0);
    return ANSWERED;
}

/* The address's rate comes before the token is even looked at: it is what
 * keeps a flood of bad tokens from costing a signature check each. */
static stage stage_method(call *c)
{
    const char *addr = c->req->remote_addr;
    if (rate_check(c, "address", &addr, 1, addr, c->res->rate_limit_address,
                   c->res->rate_burst_address))
        return ANSWERED;
    if (!c->v.post && !c->v.get && !c->v.del)
        return refuse_method(c, "GET, POST, DELETE, OPTIONS");
    return GO;
}

/* Authenticate first: nothing about an anonymous request is parsed. */
static stage stage_authenticate(call *c)
{
    mcpauth_validate_request(c->p->validator, c->res, c->req, NULL, &c->d);
    if (c->d.verdict != MCPAUTH_ALLOW) {
        mcpauth_decision_respond(&c->d, c->res, c->resp); /* with its own CORS headers */
        return ANSWERED;
    }
    const mcpauth_identity *id = &c->d.id;
    const char *who[] = {id->issuer, id->subject};
    if (rate_check(c, "subject", who, 2, id->subject, c->res->rate_limit, c->res->rate_burst))
        return ANSWERED;
    if (mcpauth__fmt(c->owner, sizeof c->owner, "%s\n%s\n%s", id->issuer, id->subject,
                     id->client_id) < 0) {
        /* cannot happen (sized for the identity), but a cut owner never passes */
        mcpauth_log(MCPAUTH_LOG_ERROR, "session_owner_too_long", "resource", c->res->name, NULL);
        return refuse(c, 500, MCPAUTH_RPC_INTERNAL_ERROR, "Internal error", NULL);
    }
    return GO;
}

static stage stage_version(call *c)
{
    if (c->v.version && !mcpauth__rpc_version_supported(c->v.version))
        return refuse(c, 400, MCPAUTH_RPC_UNSUPPORTED_VERSION, "Unsupported MCP-Protocol-Version",
                      NULL);
    return GO;
}

/* Session binding for the initialize era: a session id must belong to the
 * caller.  id_json names the request in the refusal. */
static stage stage_session(call *c, const char *id_json)
{
    if (!c->v.session || !c->p->state)
        return GO;
    time_t now = mcpauth__now();
    int m = mcpauth__state_session_check(c->p->state, c->v.session, c->owner, now,
                                         now + c->cfg->session_ttl);
    if (m == MCPAUTH__STATE_UNAVAILABLE) /* open: unchecked, as the operator chose */
        return state_unavailable(c, MCPAUTH__SS_SESSION, c->cfg->shared_state_fail_sessions,
                                 id_json);
    if (m == MCPAUTH_SESSION_OWNER)
        return GO;
    if (m == MCPAUTH_SESSION_OTHER)
        mcpauth_log_security("session_hijack_refused", "resource", c->res->name, "client",
                             c->req->remote_addr, NULL);
    /* Someone else's session looks exactly like an unknown one. */
    return refuse(c, 404, MCPAUTH_RPC_INVALID_REQUEST, "Session not found", id_json);
}

/* POST: the media types Streamable HTTP requires, and a declared length
 * within bounds before a byte of the body is read. */
static stage stage_media(call *c)
{
    if (!content_type_json(c->v.content_type))
        return refuse(c, 415, MCPAUTH_RPC_INVALID_REQUEST, "Content-Type must be application/json",
                      NULL);
    if (!accept_ok(c->v.accept))
        return refuse(c, 406, MCPAUTH_RPC_INVALID_REQUEST,
                      "Accept must list application/json and text/event-stream", NULL);
    if (c->v.content_length && strtoll(c->v.content_length, NULL, 10) > c->cfg->max_body_bytes)
        return refuse(c, 413, MCPAUTH_RPC_INVALID_REQUEST, "Request body too large", NULL);
    return GO;
}

static stage stage_body(call *c)
{
    ssize_t len;
    c->body = mcpauth_request_body(c->req, (size_t)c->cfg->max_body_bytes, &len);
    if (!c->body) {
        if (len == -2) /* no or a false CONTENT_LENGTH */
            return refuse(c, 413, MCPAUTH_RPC_INVALID_REQUEST, "Request body too large", NULL);
        return refuse(c, 400, MCPAUTH_RPC_PARSE_ERROR, "Could not read the request body", NULL);
    }
    c->len = (size_t)len;
    return GO;
}

/* JSON-RPC and MCP checks of the body, headers included (2026-07-28's
 * Mcp-Method and Mcp-Name must match it). */
static stage stage_parse(call *c)
{
    mcpauth_rpc_error rerr;
    mcpauth_rpc_headers rh = {c->v.version, c->v.mcp_method, c->v.mcp_name};
    if (mcpauth__rpc_parse(c->body, c->len, &rh, NULL, &c->rpc, &rerr) < 0) {
        mcpauth_log(MCPAUTH_LOG_INFO, "message_refused", "reason", rerr.message, "resource",
                    c->res->name, "client", c->req->remote_addr, NULL);
        return refuse(c, rerr.status, rerr.code, rerr.message, rerr.id_json);
    }
    /* A batch (2025-03-26 only) could hide a guarded call behind an
     * innocent first message: where policies apply, batches are refused. */
    if (c->rpc.batch && has_policy(c->cfg, c->res))
        return refuse(c, 400, MCPAUTH_RPC_INVALID_REQUEST,
                      "Batch requests are not accepted where per-method policies apply", NULL);
    return GO;
}

/* Per-method and per-tool policy: all scopes needed, in one challenge. */
static stage stage_policy(call *c)
{
    mcpauth__proxy_policy_scopes(c->cfg, c->res, c->rpc.method, c->rpc.name, &c->extra);
    if (!c->extra.n)
        return GO;
    mcpauth_validate_scopes(c->res, c->req, &c->extra, &c->d);
    if (c->d.verdict == MCPAUTH_ALLOW)
        return GO;
    mcpauth_decision_respond(&c->d, c->res, c->resp);
    return ANSWERED;
}

/* ----------------------------------------------------------------- relay */

static void order_init(const call *c, mcpauth__proxy_order *o, const char *method)
{
    memset(o, 0, sizeof *o);
    o->res = c->res;
    o->v = &c->v;
    o->id = &c->d.id;
    o->origin_ok = c->origin_ok;
    o->method = method;
    o->id_json = "null";
    o->owner = c->owner;
}

/* GET (the server's event stream) and DELETE (the end of a session). */
static void relay_stream(call *c)
{
    /* 2026-07-28 has neither the GET stream nor DELETE. */
    if (c->v.era2026) {
        refuse_method(c, "POST, OPTIONS");
        return;
    }
    /* to its end, so that alive() can tell a departed client */
    if (mcpauth_request_drain(c->req) < 0)
        return;
    if (stage_session(c, NULL))
        return;
    mcpauth__proxy_order o;
    order_init(c, &o, c->v.method);
    o.remove_session = c->v.del;
    o.session_in = c->v.session;
    mcpauth_shm_slot slot;
    if (concurrency_take(c, NULL, &slot))
        return;
    /* the relay returns on every ending (done, client gone, backend
     * failure, timeout, shutdown); a process killed mid-way is reclaimed
     * by its pid */
    mcpauth__proxy_relay(c->p, c->req, c->resp, &o);
    mcpauth__shm_inflight_release(c->p->shm, &slot);
}

static void relay_post(call *c)
{
    int era2025 = c->rpc.era == MCPAUTH_ERA_2025, init = c->rpc.is_initialize;
    if (era2025 && !init && stage_session(c, c->rpc.id_json))
        return;
    mcpauth__proxy_order o;
    order_init(c, &o, "POST");
    o.body = c->body;
    o.len = c->len;
    o.id_json = c->rpc.id_json;
    o.bind_session = era2025 && init;
    /* initialize starts a session: a session id sent with it (perhaps
     * someone else's) is not forwarded */
    o.session_in = era2025 && !init ? c->v.session : NULL;
    mcpauth_shm_slot slot;
    if (concurrency_take(c, c->rpc.id_json, &slot))
        return;
    mcpauth__proxy_relay(c->p, c->req, c->resp, &o); /* see relay_stream */
    mcpauth__shm_inflight_release(c->p->shm, &slot);
    mcpauth_log(MCPAUTH_LOG_DEBUG, "relayed", "resource", c->res->name, "method", c->rpc.method,
                "subject", c->d.id.subject, NULL);
}

void mcpauth_proxy_handle(mcpauth_proxy *p, const mcpauth_request *req, mcpauth_response *resp)
{
    call c;
    memset(&c, 0, sizeof c);
    c.p = p;
    c.cfg = p->cfg;
    c.req = req;
    c.resp = resp;
    mcpauth__proxy_view_read(req, &c.v);
    int go = !stage_route(&c) && !stage_preflight(&c) && !stage_method(&c) &&
             !stage_authenticate(&c) && !stage_version(&c);
    if (go && !c.v.post)
        relay_stream(&c);
    else if (go && !stage_media(&c) && !stage_body(&c) && !stage_parse(&c) && !stage_policy(&c))
        relay_post(&c);
    mcpauth_strlist_free(&c.extra);
    mcpauth__rpc_free(&c.rpc);
    free(c.body);
}

/* ------------------------------------------------------------- lifetime */

mcpauth_proxy *mcpauth_proxy_new(const mcpauth_config *cfg, int check_only, char *err,
                                 size_t errlen)
{
    mcpauth_proxy *p = mcpauth__xcalloc(1, sizeof *p);
    p->cfg = cfg;
    pthread_key_create(&p->curl_key, mcpauth__proxy_curl_free);
    if (!(p->validator = mcpauth_validator_new(cfg, err, errlen))) {
        mcpauth_proxy_free(p);
        return NULL;
    }
    if (check_only) /* do not create the shared file as whoever runs --check */
        return p;
    char path[1024], why[512];
    /* a cut path would open another file, shared with no other worker */
    if (mcpauth__fmt(path, sizeof path, "%s/proxy.shm", cfg->runtime_dir) < 0) {
        mcpauth__errf(err, errlen, "runtime_dir is too long");
        mcpauth_proxy_free(p);
        return NULL;
    }
    /* sized for the host, not the request rate: 64k buckets, 16k sessions */
    if (!(p->shm = mcpauth__shm_open(path, 65536, 16384, why, sizeof why))) {
        mcpauth__errf(err, errlen, "%s (runtime_dir must be writable by the web server's user)",
                      why);
        mcpauth_proxy_free(p);
        return NULL;
    }
    if (!(p->state = mcpauth__state_open(cfg, p->shm, err, errlen))) {
        mcpauth_proxy_free(p);
        return NULL;
    }
    return p;
}

void mcpauth_proxy_free(mcpauth_proxy *p)
{
    if (!p)
        return;
    mcpauth_validator_free(p->validator);
    mcpauth__state_close(p->state);
    mcpauth__shm_close(p->shm);
    pthread_key_delete(p->curl_key);
    free(p);
}
