/* mcpauth-proxy's core: every MCP request is authenticated, checked and
 * only then relayed to the backend with libcurl; the answer streams back
 * chunk by chunk, so SSE events reach the client as the backend sends them.
 * The client's Authorization header (and cookies, unless configured) never
 * leave this file: the backend gets the caller's identity in its own
 * headers instead. */
#include "config.h"

#include <fnmatch.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include <mcpauth/jsonrpc.h>
#include <mcpauth/log.h>
#include <mcpauth/proxy.h>
#include <mcpauth/uri.h>
#include <mcpauth/validate.h>

#include "shm.h"

#define RELAY_HEADERS_MAX 16

struct mcpauth_proxy {
    const mcpauth_config *cfg;
    mcpauth_validator *validator;
    mcpauth_shm *shm;
    pthread_key_t curl_key; /* one easy handle per thread keeps backend connections warm */
};

/* Response headers relayed from the backend; everything else is dropped
 * (a backend's own WWW-Authenticate or Set-Cookie has no business here). */
static const char *const relay_allow[] = {"Content-Type", "Mcp-Session-Id", "MCP-Protocol-Version",
                                          "Cache-Control", "Retry-After", NULL};

/* --------------------------------------------------------------- replies */

static void cors(const mcpauth_request *req, mcpauth_response *resp, const char *origin_ok)
{
    (void)req;
    if (!origin_ok)
        return;
    mcpauth_response_header(resp, "Access-Control-Allow-Origin", origin_ok);
    mcpauth_response_header(resp, "Vary", "Origin");
    mcpauth_response_header(resp, "Access-Control-Expose-Headers",
                            "Mcp-Session-Id, MCP-Protocol-Version, WWW-Authenticate");
}

static void rpc_fail(mcpauth_response *resp, int status, int code, const char *message,
                     const char *id_json)
{
    char body[512];
    if (mcpauth_rpc_error_json(body, sizeof body, code, message, id_json ? id_json : "null") < 0)
        snprintf(body, sizeof body, "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":%d,\"message\":\"error\"},"
                                    "\"id\":null}", code);
    mcpauth_response_header(resp, "Cache-Control", "no-store");
    mcpauth_response_json(resp, status, body);
}

/* ---------------------------------------------------------------- checks */

/* The Origin (if any) this request may have; NULL when it must be refused.
 * "" means no Origin header: nothing to echo. */
static const char *origin_check(const mcpauth_resource *res, const char *origin, char *buf,
                                size_t cap)
{
    if (!origin)
        return "";
    const char *why;
    char *canon = mcpauth_uri_canonicalize(origin, MCPAUTH_URI_ANY_HTTP, &why);
    int ok = 0;
    if (canon && !strchr(strstr(canon, "://") + 3, '/')) {
        ok = strcmp(canon, res->origin) == 0 || mcpauth_strlist_has(&res->allowed_origins, canon);
    }
    if (!ok && mcpauth_strlist_has(&res->allowed_origins, "*"))
        ok = 1;
    free(canon);
    if (!ok)
        return NULL;
    snprintf(buf, cap, "%s", origin);
    return buf;
}

static int rate_ok(mcpauth_proxy *p, const char *kind, const mcpauth_resource *res, const char *who,
                   long rate, long burst, mcpauth_response *resp, const char *origin_ok,
                   const mcpauth_request *req)
{
    if (!p->shm || rate <= 0)
        return 1;
    char key[1024];
    int n = snprintf(key, sizeof key, "%s\n%s\n%s", kind, res->name, who);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int retry = 1;
    if (mcpauth_shm_rate(p->shm, key, (size_t)(n > 0 ? n : 0), (double)rate, (double)burst,
                         (double)ts.tv_sec + (double)ts.tv_nsec / 1e9, &retry))
        return 1;
    char ra[16];
    snprintf(ra, sizeof ra, "%d", retry);
    mcpauth_log_security("rate_limited", "by", kind, "who", who, "resource", res->name, "client",
                         req->remote_addr, NULL);
    cors(req, resp, origin_ok);
    mcpauth_response_header(resp, "Retry-After", ra);
    rpc_fail(resp, 429, MCPAUTH_RPC_SERVER_ERROR, "Too many requests", NULL);
    return 0;
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
static void policy_scopes(const mcpauth_config *cfg, const mcpauth_resource *res,
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
            char **nv = realloc(out->v, (out->n + 2) * sizeof *nv);
            if (!nv)
                return;
            out->v = nv;
            out->v[out->n] = strdup(po->scopes.v[s]);
            if (out->v[out->n])
                out->v[++out->n] = NULL;
        }
    }
}

/* ----------------------------------------------------------------- relay */

typedef struct {
    mcpauth_proxy *p;
    const mcpauth_resource *res;
    const mcpauth_request *req;
    mcpauth_response *resp;
    const char *origin_ok;
    const char *id_json;
    const char *owner;          /* session owner string */
    int bind_session;           /* an initialize: bind the session id it creates */
    int remove_session;         /* a DELETE: forget the binding when it succeeds */
    const char *session_in;
    long status;
    int head_done;              /* status line of the final response seen */
    int sse;
    int client_gone;
    int nheaders;
    char headers[RELAY_HEADERS_MAX][2][256];
    char session_out[256];
    double started, last_data, last_alive_check;
} relay;

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
    relay *r = arg;
    size_t n = size * nmemb, len = n;
    while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
        len--;
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* a new status line: 1xx responses come before the real one */
        r->nheaders = 0;
        r->session_out[0] = '\0';
        const char *sp = memchr(data, ' ', len);
        r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        return n;
    }
    if (len == 0) {
        if (r->status >= 200)
            r->head_done = 1;
        return n;
    }
    const char *colon = memchr(data, ':', len);
    if (!colon)
        return n;
    size_t nl = (size_t)(colon - data);
    const char *v = colon + 1;
    while (v < data + len && (*v == ' ' || *v == '\t'))
        v++;
    size_t vl = (size_t)(data + len - v);
    for (int i = 0; relay_allow[i]; i++) {
        if (strlen(relay_allow[i]) != nl || strncasecmp(data, relay_allow[i], nl) != 0)
            continue;
        if (r->nheaders < RELAY_HEADERS_MAX && vl < 256) {
            memcpy(r->headers[r->nheaders][0], relay_allow[i], nl + 1);
            memcpy(r->headers[r->nheaders][1], v, vl);
            r->headers[r->nheaders][1][vl] = '\0';
            if (i == 0 && vl >= 17 && strncasecmp(v, "text/event-stream", 17) == 0)
                r->sse = 1;
            if (i == 1) {
                memcpy(r->session_out, v, vl);
                r->session_out[vl] = '\0';
            }
            r->nheaders++;
        }
        break;
    }
    return n;
}

/* Sends the status and relayed headers once, before the first body byte. */
static void relay_head(relay *r)
{
    if (r->resp->head_sent)
        return;
    if (r->bind_session && r->status >= 200 && r->status < 300 && r->session_out[0] &&
        r->p->shm) {
        if (mcpauth_shm_session_bind(r->p->shm, r->session_out, r->owner,
                                     time(NULL) + r->p->cfg->session_ttl) < 0)
            mcpauth_log_security("session_collision", "resource", r->res->name, NULL);
    }
    if (r->remove_session && r->status >= 200 && r->status < 300 && r->session_in && r->p->shm)
        mcpauth_shm_session_remove(r->p->shm, r->session_in);
    mcpauth_response_set_status(r->resp, (int)r->status);
    cors(r->req, r->resp, r->origin_ok);
    for (int i = 0; i < r->nheaders; i++)
        mcpauth_response_header(r->resp, r->headers[i][0], r->headers[i][1]);
    if (r->sse) /* no proxy in between may hold events back */
        mcpauth_response_header(r->resp, "X-Accel-Buffering", "no");
    mcpauth_response_start(r->resp);
    mcpauth_response_flush(r->resp);
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    relay *r = arg;
    size_t n = size * nmemb;
    r->last_data = mono();
    relay_head(r);
    /* SSE events go out as they come; a JSON answer is flushed at the end */
    if (mcpauth_response_write(r->resp, data, n) < 0 ||
        (r->sse && mcpauth_response_flush(r->resp) < 0)) {
        r->client_gone = 1;
        return 0; /* aborts the transfer, and with it the backend request */
    }
    return n;
}

static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    relay *r = arg;
    (void)dt, (void)dn, (void)ut, (void)un;
    double now = mono();
    /* curl calls this very often; a poll(2) every 200 ms is enough to
     * notice a client that left */
    if (now - r->last_alive_check >= 0.2) {
        r->last_alive_check = now;
        if (!mcpauth_request_alive(r->req)) {
            r->client_gone = 1;
            return 1;
        }
    }
    if (!r->head_done && now - r->started > (double)r->p->cfg->backend_timeout)
        return 1;
    if (r->head_done && now - r->last_data > (double)r->p->cfg->stream_idle_timeout)
        return 1;
    return 0;
}

static CURL *thread_curl(mcpauth_proxy *p)
{
    CURL *c = pthread_getspecific(p->curl_key);
    if (!c) {
        c = curl_easy_init();
        pthread_setspecific(p->curl_key, c);
    } else {
        curl_easy_reset(c);
    }
    return c;
}

static void forward_header(struct curl_slist **l, const mcpauth_request *req, const char *param,
                           const char *name)
{
    const char *v = mcpauth_request_param(req, param);
    if (!v)
        return;
    char line[4096];
    snprintf(line, sizeof line, "%s: %s", name, v);
    *l = curl_slist_append(*l, line);
}

static void identity_header(struct curl_slist **l, const char *name, const char *value)
{
    char line[4096];
    /* "Name;" sends an empty header; "Name:" alone would delete it */
    if (value && *value)
        snprintf(line, sizeof line, "%s: %s", name, value);
    else
        snprintf(line, sizeof line, "%s;", name);
    *l = curl_slist_append(*l, line);
}

static void relay_request(relay *r, const char *method, const char *body, size_t len,
                          const mcpauth_identity *id)
{
    const mcpauth_resource *res = r->res;
    const mcpauth_request *req = r->req;
    CURL *c = thread_curl(r->p);
    if (!c) {
        rpc_fail(r->resp, 500, MCPAUTH_RPC_INTERNAL_ERROR, "Internal error", r->id_json);
        return;
    }
    struct curl_slist *h = NULL;
    /* An allow-list: what the MCP transport needs, nothing the client may
     * use to smuggle credentials (Authorization, Cookie) or identity. */
    forward_header(&h, req, "CONTENT_TYPE", "Content-Type");
    forward_header(&h, req, "HTTP_ACCEPT", "Accept");
    forward_header(&h, req, "HTTP_MCP_PROTOCOL_VERSION", "MCP-Protocol-Version");
    if (r->session_in) /* 2026-07-28 has no sessions: never forwarded there */
        forward_header(&h, req, "HTTP_MCP_SESSION_ID", "Mcp-Session-Id");
    forward_header(&h, req, "HTTP_LAST_EVENT_ID", "Last-Event-ID");
    forward_header(&h, req, "HTTP_MCP_METHOD", "Mcp-Method");
    forward_header(&h, req, "HTTP_MCP_NAME", "Mcp-Name");
    if (res->forward_cookies)
        forward_header(&h, req, "HTTP_COOKIE", "Cookie");
    identity_header(&h, res->subject_header, id->subject);
    identity_header(&h, res->client_id_header, id->client_id);
    identity_header(&h, res->scope_header, id->scope);
    if (res->backend_authorization) {
        char line[1024];
        snprintf(line, sizeof line, "Authorization: %s", res->backend_authorization);
        h = curl_slist_append(h, line);
    }
    h = curl_slist_append(h, "Expect:");
    if (!body || !len)
        h = curl_slist_append(h, "Content-Type:");

    curl_easy_setopt(c, CURLOPT_URL, res->backend);
    if (res->backend_socket)
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, res->backend_socket);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROXY, ""); /* the backend is ours: no proxy */
    if (r->p->cfg->ca_file)
        curl_easy_setopt(c, CURLOPT_CAINFO, r->p->cfg->ca_file);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "mcpauth-proxy/" PACKAGE_VERSION);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
    } else {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, r);
    long ct = r->p->cfg->backend_timeout < 10 ? r->p->cfg->backend_timeout : 10;
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, ct);
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 16384L);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);

    r->started = r->last_data = mono();
    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(h);
    if (rc == CURLE_OK) {
        relay_head(r); /* bodiless answers (202, 204) */
        return;
    }
    if (r->client_gone) {
        mcpauth_log(MCPAUTH_LOG_INFO, "client_gone", "resource", res->name, "client",
                    req->remote_addr, NULL);
        return;
    }
    int timeout = rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_ABORTED_BY_CALLBACK;
    mcpauth_log(MCPAUTH_LOG_WARN, timeout ? "backend_timeout" : "backend_failed", "resource",
                res->name, "backend", res->backend, "reason", curl_easy_strerror(rc), NULL);
    if (r->resp->head_sent)
        return; /* mid-stream: nothing more can be said */
    cors(req, r->resp, r->origin_ok);
    rpc_fail(r->resp, timeout ? 504 : 502, MCPAUTH_RPC_SERVER_ERROR,
             timeout ? "The MCP server did not answer in time" : "The MCP server is unreachable",
             r->id_json);
}

/* ---------------------------------------------------------------- handle */

/* Session binding for the initialize era.  Returns 0 when the request may
 * go on; otherwise it has answered. */
static int session_check(mcpauth_proxy *p, const mcpauth_resource *res, const mcpauth_request *req,
                         const char *session, const char *owner, mcpauth_response *resp,
                         const char *origin_ok, const char *id_json)
{
    if (!session || !p->shm)
        return 0;
    time_t now = time(NULL);
    mcpauth_session_match m =
        mcpauth_shm_session_check(p->shm, session, owner, now, now + p->cfg->session_ttl);
    if (m == MCPAUTH_SESSION_OWNER)
        return 0;
    if (m == MCPAUTH_SESSION_OTHER)
        mcpauth_log_security("session_hijack_refused", "resource", res->name, "client",
                             req->remote_addr, NULL);
    cors(req, resp, origin_ok);
    /* Someone else's session looks exactly like an unknown one. */
    rpc_fail(resp, 404, MCPAUTH_RPC_INVALID_REQUEST, "Session not found", id_json);
    return -1;
}

void mcpauth_proxy_handle(mcpauth_proxy *p, const mcpauth_request *req, mcpauth_response *resp)
{
    const mcpauth_config *cfg = p->cfg;
    const mcpauth_resource *res = mcpauth_request_resource(p->cfg, req);
    if (!res || !res->backend) {
        rpc_fail(resp, 404, MCPAUTH_RPC_INVALID_REQUEST, "No MCP server at this path", NULL);
        return;
    }
    char obuf[512];
    const char *origin = mcpauth_request_param(req, "HTTP_ORIGIN");
    const char *origin_ok = origin_check(res, origin, obuf, sizeof obuf);
    if (!origin_ok) {
        /* DNS rebinding protection: a browser page from elsewhere */
        mcpauth_log_security("origin_refused", "origin", origin, "resource", res->name, "client",
                             req->remote_addr, NULL);
        rpc_fail(resp, 403, MCPAUTH_RPC_INVALID_REQUEST, "Origin not allowed", NULL);
        return;
    }
    if (!*origin_ok)
        origin_ok = NULL;
    const char *m = req->method;
    if (strcmp(m, "OPTIONS") == 0) {
        cors(req, resp, origin_ok);
        mcpauth_response_set_status(resp, 204);
        mcpauth_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
        mcpauth_response_header(resp, "Access-Control-Allow-Headers",
                                "Authorization, Content-Type, Accept, MCP-Protocol-Version, "
                                "Mcp-Session-Id, Last-Event-ID, Mcp-Method, Mcp-Name");
        mcpauth_response_header(resp, "Access-Control-Max-Age", "86400");
        mcpauth_response_send(resp, NULL, 0);
        return;
    }
    if (!rate_ok(p, "address", res, req->remote_addr, res->rate_limit_address,
                 res->rate_burst_address, resp, origin_ok, req))
        return;
    int post = strcmp(m, "POST") == 0, get = strcmp(m, "GET") == 0, del = strcmp(m, "DELETE") == 0;
    if (!post && !get && !del) {
        cors(req, resp, origin_ok);
        mcpauth_response_header(resp, "Allow", "GET, POST, DELETE, OPTIONS");
        rpc_fail(resp, 405, MCPAUTH_RPC_INVALID_REQUEST, "Method not allowed", NULL);
        return;
    }

    /* Authenticate first: nothing about an anonymous request is parsed. */
    mcpauth_decision d;
    mcpauth_validate_request(p->validator, res, req, NULL, &d);
    if (d.verdict != MCPAUTH_ALLOW) {
        mcpauth_decision_respond(&d, res, resp); /* with its own CORS headers */
        return;
    }
    char who[1024];
    snprintf(who, sizeof who, "%s\n%s", d.id.issuer, d.id.subject);
    if (!rate_ok(p, "subject", res, who, res->rate_limit, res->rate_burst, resp, origin_ok, req))
        return;
    char owner[1400];
    snprintf(owner, sizeof owner, "%s\n%s\n%s", d.id.issuer, d.id.subject, d.id.client_id);

    const char *version = mcpauth_request_param(req, "HTTP_MCP_PROTOCOL_VERSION");
    int era2026 = version && strcmp(version, "2026-07-28") == 0;
    if (version && !mcpauth_rpc_version_supported(version)) {
        cors(req, resp, origin_ok);
        rpc_fail(resp, 400, MCPAUTH_RPC_UNSUPPORTED_VERSION, "Unsupported MCP-Protocol-Version",
                 NULL);
        return;
    }
    const char *session = era2026 ? NULL : mcpauth_request_param(req, "HTTP_MCP_SESSION_ID");
    relay r;
    memset(&r, 0, sizeof r);
    r.p = p;
    r.res = res;
    r.req = req;
    r.resp = resp;
    r.origin_ok = origin_ok;
    r.owner = owner;
    r.id_json = "null";

    if (!post) {
        /* 2026-07-28 has neither the GET stream nor DELETE. */
        if (era2026) {
            cors(req, resp, origin_ok);
            mcpauth_response_header(resp, "Allow", "POST, OPTIONS");
            rpc_fail(resp, 405, MCPAUTH_RPC_INVALID_REQUEST, "Method not allowed", NULL);
            return;
        }
        /* to its end, so that alive() can tell a departed client */
        if (mcpauth_request_drain(req) < 0)
            return;
        if (session_check(p, res, req, session, owner, resp, origin_ok, NULL) < 0)
            return;
        r.remove_session = del;
        r.session_in = session;
        relay_request(&r, m, NULL, 0, &d.id);
        return;
    }

    if (!content_type_json(mcpauth_request_param(req, "CONTENT_TYPE"))) {
        cors(req, resp, origin_ok);
        rpc_fail(resp, 415, MCPAUTH_RPC_INVALID_REQUEST, "Content-Type must be application/json",
                 NULL);
        return;
    }
    if (!accept_ok(mcpauth_request_param(req, "HTTP_ACCEPT"))) {
        cors(req, resp, origin_ok);
        rpc_fail(resp, 406, MCPAUTH_RPC_INVALID_REQUEST,
                 "Accept must list application/json and text/event-stream", NULL);
        return;
    }
    const char *cl = mcpauth_request_param(req, "CONTENT_LENGTH");
    if (cl && strtoll(cl, NULL, 10) > cfg->max_body_bytes) {
        cors(req, resp, origin_ok);
        rpc_fail(resp, 413, MCPAUTH_RPC_INVALID_REQUEST, "Request body too large", NULL);
        return;
    }
    ssize_t len;
    char *body = mcpauth_request_body(req, (size_t)cfg->max_body_bytes, &len);
    if (!body) {
        cors(req, resp, origin_ok);
        if (len == -2)
            rpc_fail(resp, 413, MCPAUTH_RPC_INVALID_REQUEST, "Request body too large", NULL);
        else
            rpc_fail(resp, 400, MCPAUTH_RPC_PARSE_ERROR, "Could not read the request body", NULL);
        return;
    }
    mcpauth_rpc rpc;
    mcpauth_rpc_error rerr;
    mcpauth_rpc_headers rh = {version, mcpauth_request_param(req, "HTTP_MCP_METHOD"),
                              mcpauth_request_param(req, "HTTP_MCP_NAME")};
    memset(&rpc, 0, sizeof rpc);
    if (mcpauth_rpc_parse(body, (size_t)len, &rh, NULL, &rpc, &rerr) < 0) {
        mcpauth_log(MCPAUTH_LOG_INFO, "message_refused", "reason", rerr.message, "resource",
                    res->name, "client", req->remote_addr, NULL);
        cors(req, resp, origin_ok);
        rpc_fail(resp, rerr.status, rerr.code, rerr.message, rerr.id_json);
        free(body);
        return;
    }
    r.id_json = rpc.id_json;
    /* A batch (2025-03-26 only) could hide a guarded call behind an
     * innocent first message: where policies apply, batches are refused. */
    if (rpc.batch) {
        for (size_t i = 0; i < cfg->npolicies; i++)
            if (cfg->policies[i]->resource == res) {
                cors(req, resp, origin_ok);
                rpc_fail(resp, 400, MCPAUTH_RPC_INVALID_REQUEST,
                         "Batch requests are not accepted where per-method policies apply", NULL);
                goto out;
            }
    }

    /* Per-method and per-tool policy: all scopes needed, in one challenge. */
    mcpauth_strlist extra = {0, NULL};
    policy_scopes(cfg, res, rpc.method, rpc.name, &extra);
    if (extra.n) {
        mcpauth_validate_scopes(res, req, &extra, &d);
        if (d.verdict != MCPAUTH_ALLOW) {
            mcpauth_decision_respond(&d, res, resp);
            goto out;
        }
    }
    if (rpc.era == MCPAUTH_ERA_2025 && !rpc.is_initialize &&
        session_check(p, res, req, session, owner, resp, origin_ok, rpc.id_json) < 0)
        goto out;
    r.bind_session = rpc.era == MCPAUTH_ERA_2025 && rpc.is_initialize;
    /* initialize starts a session: a session id sent with it (perhaps
     * someone else's) is not forwarded */
    r.session_in = rpc.era == MCPAUTH_ERA_2025 && !rpc.is_initialize ? session : NULL;
    relay_request(&r, "POST", body, (size_t)len, &d.id);
    mcpauth_log(MCPAUTH_LOG_DEBUG, "relayed", "resource", res->name, "method", rpc.method,
                "subject", d.id.subject, NULL);
out:
    mcpauth_strlist_free(&extra);
    mcpauth_rpc_free(&rpc);
    free(body);
}

static void curl_free_handle(void *c)
{
    curl_easy_cleanup(c);
}

mcpauth_proxy *mcpauth_proxy_new(const mcpauth_config *cfg, int check_only, char *err,
                                 size_t errlen)
{
    mcpauth_proxy *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->cfg = cfg;
    pthread_key_create(&p->curl_key, curl_free_handle);
    if (!(p->validator = mcpauth_validator_new(cfg, err, errlen))) {
        mcpauth_proxy_free(p);
        return NULL;
    }
    if (check_only) /* do not create the shared file as whoever runs --check */
        return p;
    char path[1024], why[512];
    snprintf(path, sizeof path, "%s/proxy.shm", cfg->runtime_dir);
    /* sized for the host, not the request rate: 64k buckets, 16k sessions */
    if (!(p->shm = mcpauth_shm_open(path, 65536, 16384, why, sizeof why))) {
        snprintf(err, errlen, "%s (runtime_dir must be writable by the web server's user)", why);
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
    mcpauth_shm_close(p->shm);
    pthread_key_delete(p->curl_key);
    free(p);
}
