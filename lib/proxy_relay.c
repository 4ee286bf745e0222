/* The proxy's backend exchange: a request the checks in proxy.c let
 * through goes to the backend with libcurl, and the answer streams back
 * chunk by chunk, so SSE events reach the client as the backend sends them.
 * The client's Authorization header (and cookies, unless configured) never
 * leave here: the backend gets the caller's identity in its own headers. */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "jsonrpc.h"
#include <mcpauth/log.h>

#include "alloc.h"
#include "clock.h"
#include "metrics.h"
#include "proxy_priv.h"
#include "shm.h"
#include "strbuf.h"

#define RELAY_HEADERS_MAX 16
#define RELAY_VALUE_MAX 256
/* Longest "Name: value" line sent to the backend.  A longer one is refused,
 * never cut: a shortened identity or Mcp-Name would be another value. */
#define HEADER_LINE_MAX 4096
/* A JSON answer is held back up to this size until it is whole, so that a
 * backend failing halfway gets the client a 502, not a 200 with JSON cut
 * short; a larger one is relayed as it comes. */
#define HOLD_MAX (1024 * 1024)

/* Response headers relayed from the backend; everything else is dropped
 * (a backend's own WWW-Authenticate or Set-Cookie has no business here). */
static const char *const relay_allow[] = {"Content-Type", "Mcp-Session-Id", "MCP-Protocol-Version",
                                          "Cache-Control", "Retry-After", NULL};

/* One exchange with the backend. */
typedef struct relay {
    mcpauth_proxy *p;
    const mcpauth_request *req;
    mcpauth_response *resp;
    const mcpauth__proxy_order *o;
    long status;
    int head_done;              /* status line of the final response seen */
    int refused;                /* the backend answered 401: our credentials */
    int unbound;  /* a new session that could not be bound: answered 503 */
    int sse;
    int client_gone;  /* 1: the client left; 2: the program is stopping */
    int idle;         /* ended after stream_idle_timeout without data */
    int nheaders;
    char headers[RELAY_HEADERS_MAX][2][RELAY_VALUE_MAX];
    char session_out[RELAY_VALUE_MAX];
    double started, last_data, last_alive_check;
    double last_write;          /* last bytes to the client, heartbeats included */
    unsigned long long bytes;   /* body bytes relayed */
    char tail[3];               /* last body bytes relayed, for heartbeat placement */
    char curl_error[CURL_ERROR_SIZE]; /* libcurl's detail of a failure, for the log */
    int stream_counted;         /* in the streams_open gauge (metrics) */
    char *held;                 /* a JSON answer held back (HOLD_MAX) */
    size_t held_len, held_cap;
} relay;

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Keeps allowed backend header i (relay_allow) with value v[vl]. */
static void keep_header(relay *r, int i, const char *v, size_t vl)
{
    if (r->nheaders >= RELAY_HEADERS_MAX || vl >= RELAY_VALUE_MAX) {
        /* dropped whole rather than relayed cut short */
        mcpauth_log(MCPAUTH_LOG_WARN, "backend_header_dropped", "header", relay_allow[i],
                    "resource", r->o->res->name, NULL);
        return;
    }
    memcpy(r->headers[r->nheaders][0], relay_allow[i], strlen(relay_allow[i]) + 1);
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

/* Sends the status and relayed headers once: when the backend's final
 * header block ends, or after the transfer for a bodiless answer. */
static void relay_head(relay *r)
{
    const mcpauth__proxy_order *o = r->o;
    if (r->resp->head_sent)
        return;
    int ok = r->status >= 200 && r->status < 300;
    if (o->bind_session && ok && r->session_out[0] && r->p->state) {
        time_t now = mcpauth__now();
        int rc = mcpauth__state_session_bind(r->p->state, r->session_out, o->owner,
                                             now + r->p->cfg->session_ttl, now);
        if (rc == MCPAUTH__STATE_UNAVAILABLE) {
            mcpauth__state_count_error(o->res, MCPAUTH__SS_SESSION);
            if (r->p->cfg->shared_state_fail_sessions) {
                /* closed: a session the proxy cannot hold to its owner is
                 * not handed out (the backend's one expires unused) */
                r->unbound = 1;
                mcpauth__proxy_cors(r->resp, o->origin_ok);
                mcpauth_response_header(r->resp, "Retry-After", "1");
                mcpauth__proxy_rpc_fail(r->resp, 503, MCPAUTH_RPC_SERVER_ERROR,
                                        "Service temporarily unavailable", o->id_json);
                return;
            }
        } else if (rc < 0) {
            mcpauth_log_security("session_collision", "resource", o->res->name, NULL);
        }
    }
    if (o->remove_session && ok && o->session_in && r->p->state &&
        mcpauth__state_session_remove(r->p->state, o->session_in) == MCPAUTH__STATE_UNAVAILABLE)
        mcpauth__state_count_error(o->res, MCPAUTH__SS_SESSION); /* it expires by itself */
    mcpauth_response_set_status(r->resp, (int)r->status);
    mcpauth__proxy_cors(r->resp, o->origin_ok);
    for (int i = 0; i < r->nheaders; i++)
        mcpauth_response_header(r->resp, r->headers[i][0], r->headers[i][1]);
    if (r->sse) /* no proxy in between may hold events back */
        mcpauth_response_header(r->resp, "X-Accel-Buffering", "no");
    mcpauth_response_start(r->resp);
    /* A web server may hold a head back until body bytes follow (Apache's
     * mod_fcgid does); an SSE comment is one that every client ignores, and
     * "\n\n" after it dispatches nothing. */
    static const char open_comment[] = ": open\n\n";
    if ((r->sse && mcpauth_response_write(r->resp, open_comment, sizeof open_comment - 1) < 0) ||
        mcpauth_response_flush(r->resp) < 0)
        r->client_gone = 1; /* on_body's write fails and ends the transfer */
    r->last_write = mono();
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
    if (r->resp->head_sent)
        return n; /* trailers: the head is gone already */
    if (len == 0) {
        if (r->status == 401) {
            /* The client's token was good (we checked it); a 401 from
             * behind us is about the proxy's own credentials
             * (backend_authorization).  Passed on, it would send the client
             * to sign in again, and again. */
            r->head_done = r->refused = 1;
            return n;
        }
        if (r->status >= 200) {
            r->head_done = 1;
            mcpauth__metrics_observe(r->o->res, MCPAUTH_H_BACKEND,
                                     (long long)((mono() - r->started) * 1e9));
            if (r->sse && !r->stream_counted) {
                r->stream_counted = 1;
                mcpauth__metrics_add(r->o->res, MCPAUTH_M_STREAMS_OPEN, 1);
            }
            /* a stream's head is sent now, not with the first body byte: a
             * silent stream must still tell the client it is open; a JSON
             * answer's once it is whole */
            if (r->sse)
                relay_head(r);
        }
        return n;
    }
    const char *colon = memchr(data, ':', len);
    if (!colon)
        return n;
    size_t nl = (size_t)(colon - data);
    const char *v = colon + 1;
    while (v < data + len && (*v == ' ' || *v == '\t'))
        v++;
    for (int i = 0; relay_allow[i]; i++) {
        if (strlen(relay_allow[i]) == nl && strncasecmp(data, relay_allow[i], nl) == 0) {
            keep_header(r, i, v, (size_t)(data + len - v));
            break;
        }
    }
    return n;
}

/* Sends what was held back; -1: the client is gone. */
static int release_held(relay *r)
{
    relay_head(r);
    if (r->unbound)
        return 0; /* answered already; the backend's answer is dropped */
    size_t n = r->held_len;
    r->held_len = 0;
    if (n && mcpauth_response_write(r->resp, r->held, n) < 0)
        return -1;
    r->bytes += n;
    return 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    relay *r = arg;
    size_t n = size * nmemb;
    r->last_data = r->last_write = mono();
    if (r->refused)
        return n; /* its body is the backend's, not for the client */
    if (r->unbound)
        return 0; /* answered 503 already: end the backend's stream */
    if (!r->sse && !r->resp->head_sent) {
        if (r->held_len + n <= HOLD_MAX) {
            if (r->held_len + n > r->held_cap) {
                size_t cap = r->held_cap ? r->held_cap : 16384;
                while (cap < r->held_len + n)
                    cap *= 2;
                r->held = mcpauth__xrealloc(r->held, cap);
                r->held_cap = cap;
            }
            memcpy(r->held + r->held_len, data, n);
            r->held_len += n;
            return n;
        }
        if (release_held(r) < 0) { /* too large to hold: relayed as it comes */
            r->client_gone = 1;
            return 0;
        }
    }
    relay_head(r);
    if (r->unbound)
        return 0;
    /* SSE events go out as they come; a JSON answer is flushed at the end */
    if (r->client_gone || mcpauth_response_write(r->resp, data, n) < 0 ||
        (r->sse && mcpauth_response_flush(r->resp) < 0)) {
        r->client_gone = 1;
        return 0; /* aborts the transfer, and with it the backend request */
    }
    r->bytes += n;
    for (size_t i = n > 3 ? n - 3 : 0; i < n; i++) {
        memmove(r->tail, r->tail + 1, 2);
        r->tail[2] = data[i];
    }
    return n;
}

/* The SSE keepalive comment, when the stream is at a point where one fits:
 * after a whole event, "\n\n" too (an empty event dispatches nothing);
 * inside an event only after a whole line, and without the blank line,
 * which would dispatch the event early; not at all mid-line.  A write to a
 * departed client fails (at the latest the second one), which is how a
 * silent stream notices it.  -1: the client is gone. */
static int heartbeat(relay *r)
{
    const char *t = r->tail;
    const char *c;
    if (r->bytes == 0 || (t[2] == '\n' && (t[1] == '\n' || (t[1] == '\r' && t[0] == '\n'))))
        c = ": keepalive\n\n";
    else if (t[2] == '\n')
        c = ": keepalive\n";
    else
        return 0; /* mid-line ("\r" may still be followed by "\n") */
    if (mcpauth_response_write(r->resp, c, strlen(c)) < 0 || mcpauth_response_flush(r->resp) < 0)
        return -1;
    return 0;
}

static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    relay *r = arg;
    (void)dt, (void)dn, (void)ut, (void)un;
    if (r->unbound)
        return 1; /* answered 503: nothing more goes to the client */
    double now = mono();
    /* curl calls this very often; a poll(2) every 200 ms is enough to
     * notice a client that left */
    if (now - r->last_alive_check >= 0.2) {
        r->last_alive_check = now;
        int alive = mcpauth_request_alive(r->req);
        if (alive <= 0) {
            r->client_gone = alive < 0 ? 2 : 1;
            return 1;
        }
    }
    if (r->client_gone)
        return 1; /* the head's flush failed */
    if (!r->head_done && now - r->started > (double)r->p->cfg->backend_timeout)
        return 1;
    if (r->head_done && now - r->last_data > (double)r->p->cfg->stream_idle_timeout) {
        r->idle = 1;
        return 1;
    }
    long hb = r->p->cfg->stream_heartbeat;
    if (hb > 0 && r->sse && r->resp->head_sent && now - r->last_write >= (double)hb) {
        r->last_write = now;
        if (heartbeat(r) < 0) {
            r->client_gone = 1;
            return 1;
        }
    }
    return 0;
}

static CURL *thread_curl(mcpauth_proxy *p)
{
    CURL *c = pthread_getspecific(p->curl_key);
    if (!c) {
        c = mcpauth__check(curl_easy_init(), "curl handle");
        pthread_setspecific(p->curl_key, c);
    } else {
        curl_easy_reset(c);
    }
    return c;
}

void mcpauth__proxy_curl_free(void *c)
{
    curl_easy_cleanup(c);
}

/* Appends "name: value", or "name;" for a NULL value (an empty header:
 * "Name:" alone would delete it).  -1 when the line does not fit. */
static int add_header(struct curl_slist **l, const char *name, const char *value)
{
    char line[HEADER_LINE_MAX];
    int rc = value ? mcpauth__fmt(line, sizeof line, "%s: %s", name, value)
                   : mcpauth__fmt(line, sizeof line, "%s;", name);
    if (rc < 0)
        return -1;
    *l = mcpauth__check(curl_slist_append(*l, line), "curl_slist");
    return 0;
}

/* The client's headers the backend gets.  An allow-list: what the MCP
 * transport needs, nothing the client may use to smuggle credentials
 * (Authorization, Cookie) or identity.  *bad: NULL, or the one too long. */
static void client_headers(const mcpauth__proxy_order *o, struct curl_slist **h, const char **bad)
{
    const mcpauth__proxy_view *v = o->v;
    const char *const fwd[][2] = {
        {"Content-Type", v->content_type},
        {"Accept", v->accept},
        {"MCP-Protocol-Version", v->version},
        {"Mcp-Session-Id", o->session_in}, /* 2026-07-28 has no sessions: never set there */
        {"Last-Event-ID", v->last_event_id},
        {"Mcp-Method", v->mcp_method},
        {"Mcp-Name", v->mcp_name},
        {"Cookie", o->res->forward_cookies ? v->cookie : NULL},
    };
    *bad = NULL;
    for (size_t i = 0; i < sizeof fwd / sizeof *fwd && !*bad; i++)
        if (fwd[i][1] && add_header(h, fwd[i][0], fwd[i][1]) < 0)
            *bad = fwd[i][0];
}

static const char *or_null(const char *s)
{
    return s && *s ? s : NULL;
}

/* Our own headers: the caller's identity (always sent, empty when unknown,
 * so a client cannot supply one) and the backend's credentials. */
static void own_headers(const mcpauth__proxy_order *o, struct curl_slist **h, const char **bad)
{
    const mcpauth_resource *res = o->res;
    const char *const ident[][2] = {
        {res->subject_header, or_null(o->id->subject)},
        {res->client_id_header, or_null(o->id->client_id)},
        {res->scope_header, or_null(o->id->scope)},
    };
    *bad = NULL;
    for (size_t i = 0; i < sizeof ident / sizeof *ident && !*bad; i++)
        if (add_header(h, ident[i][0], ident[i][1]) < 0)
            *bad = ident[i][0];
    if (!*bad && res->backend_authorization &&
        add_header(h, "Authorization", res->backend_authorization) < 0)
        *bad = "Authorization";
    if (*bad)
        return;
    *h = mcpauth__check(curl_slist_append(*h, "Expect:"), "curl_slist");
    if (!o->body || !o->len)
        *h = mcpauth__check(curl_slist_append(*h, "Content-Type:"), "curl_slist");
}

/* A header that does not fit: refused, never sent cut short. */
static void header_refused(const relay *r, const char *name, int theirs)
{
    const mcpauth__proxy_order *o = r->o;
    char msg[128];
    mcpauth__proxy_cors(r->resp, o->origin_ok);
    if (theirs) {
        mcpauth_log(MCPAUTH_LOG_INFO, "message_refused", "reason", "header too long", "header",
                    name, "resource", o->res->name, "client", r->req->remote_addr, NULL);
        if (mcpauth__fmt(msg, sizeof msg, "The %s header is too long", name) < 0)
            strcpy(msg, "A header is too long");
        mcpauth__proxy_rpc_fail(r->resp, 431, MCPAUTH_RPC_INVALID_REQUEST, msg, o->id_json);
        return;
    }
    /* Never the value: it may be a credential. */
    mcpauth_log(MCPAUTH_LOG_ERROR, "backend_header_too_long", "header", name, "resource",
                o->res->name, NULL);
    mcpauth__proxy_rpc_fail(r->resp, 500, MCPAUTH_RPC_INTERNAL_ERROR,
                            "The request for the MCP server could not be built", o->id_json);
}

/* TLS towards the backend: verified always (libcurl's default, said
 * again); backend_ca_file alone, not the system store or ca_file, when set
 * (the CA path libcurl may have built in included); the files were checked
 * at start-up and libcurl reads them as it connects. */
static void backend_tls(CURL *c, const mcpauth_resource *res, const mcpauth_config *cfg)
{
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2); /* RFC 9325 floor */
    if (res->backend_ca_file) {
        curl_easy_setopt(c, CURLOPT_CAINFO, res->backend_ca_file);
        curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
    } else if (cfg->ca_file) {
        curl_easy_setopt(c, CURLOPT_CAINFO, cfg->ca_file);
    }
    if (res->backend_client_cert) {
        curl_easy_setopt(c, CURLOPT_SSLCERT, res->backend_client_cert);
        curl_easy_setopt(c, CURLOPT_SSLCERTTYPE, "PEM");
        curl_easy_setopt(c, CURLOPT_SSLKEY, res->backend_client_key);
        curl_easy_setopt(c, CURLOPT_SSLKEYTYPE, "PEM");
    }
    if (res->backend_pinned_pubkey)
        curl_easy_setopt(c, CURLOPT_PINNEDPUBLICKEY, res->backend_pinned_pubkey);
}

static void curl_setup(CURL *c, relay *r, struct curl_slist *h)
{
    const mcpauth__proxy_order *o = r->o;
    const mcpauth_config *cfg = r->p->cfg;
    curl_easy_setopt(c, CURLOPT_URL, o->res->backend);
    if (o->res->backend_socket)
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, o->res->backend_socket);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROXY, ""); /* the backend is ours: no proxy */
    backend_tls(c, o->res, cfg);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->curl_error);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "mcpauth-proxy/" PACKAGE_VERSION);
    if (strcmp(o->method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, o->body ? o->body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)o->len);
    } else {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, o->method);
    }
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, r);
    long ct = cfg->backend_timeout < 10 ? cfg->backend_timeout : 10;
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, ct);
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 16384L);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
}

/* After the transfer: the head of a bodiless answer, or the failure. */
static void relay_finish(relay *r, CURLcode rc)
{
    const mcpauth_resource *res = r->o->res;
    if (r->unbound)
        return; /* answered 503; the outage is logged by the shared state */
    if (rc == CURLE_OK && r->refused) {
        mcpauth_log(MCPAUTH_LOG_ERROR, "backend_refused", "resource", res->name, "backend",
                    res->backend, "reason",
                    res->backend_authorization ? "401 to backend_authorization"
                                               : "401: the backend wants credentials "
                                                 "(backend_authorization)",
                    NULL);
        mcpauth__proxy_cors(r->resp, r->o->origin_ok);
        mcpauth__proxy_rpc_fail(r->resp, 502, MCPAUTH_RPC_SERVER_ERROR,
                                "The MCP server refused the proxy's credentials", r->o->id_json);
        return;
    }
    if (rc == CURLE_OK) {
        /* bodiless answers (202, 204) and JSON ones held back */
        if (release_held(r) < 0)
            mcpauth_log(MCPAUTH_LOG_INFO, "client_gone", "resource", res->name, "client",
                        r->req->remote_addr, NULL);
        if (r->sse) { /* a stream's end; JSON answers are not worth a line each */
            char bytes[24];
            snprintf(bytes, sizeof bytes, "%llu", r->bytes);
            mcpauth_log(MCPAUTH_LOG_INFO, "backend_closed", "resource", res->name, "client",
                        r->req->remote_addr, "bytes", bytes, NULL);
        }
        return;
    }
    if (r->client_gone) {
        /* stopping: the binding answers what was not started with a 503 */
        mcpauth_log(MCPAUTH_LOG_INFO, r->client_gone == 2 ? "shutdown" : "client_gone", "resource",
                    res->name, "client", r->req->remote_addr, NULL);
        return;
    }
    if (r->idle) {
        char secs[24];
        snprintf(secs, sizeof secs, "%ld", r->p->cfg->stream_idle_timeout);
        mcpauth_log(MCPAUTH_LOG_INFO, "backend_idle", "resource", res->name, "client",
                    r->req->remote_addr, "idle_seconds", secs, NULL);
        return;
    }
    int timeout = rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_ABORTED_BY_CALLBACK;
    /* a certificate refused either way, a missing client certificate (TLS
     * 1.3 says so after the handshake: a receive error naming the alert) */
    int tls = rc == CURLE_SSL_CONNECT_ERROR || rc == CURLE_PEER_FAILED_VERIFICATION ||
              rc == CURLE_SSL_CERTPROBLEM || rc == CURLE_SSL_CIPHER ||
              rc == CURLE_SSL_CACERT_BADFILE || rc == CURLE_SSL_PINNEDPUBKEYNOTMATCH ||
              rc == CURLE_SSL_ISSUER_ERROR ||
              (rc == CURLE_RECV_ERROR && strstr(r->curl_error, "alert"));
    mcpauth_log(MCPAUTH_LOG_WARN,
                timeout ? "backend_timeout" : tls ? "backend_tls_failed" : "backend_failed",
                "resource", res->name, "backend", res->backend, "reason",
                r->curl_error[0] ? r->curl_error : curl_easy_strerror(rc), NULL);
    if (r->resp->head_sent)
        return; /* mid-stream: nothing more can be said */
    mcpauth__proxy_cors(r->resp, r->o->origin_ok);
    mcpauth__proxy_rpc_fail(r->resp, timeout ? 504 : 502, MCPAUTH_RPC_SERVER_ERROR,
                            timeout ? "The MCP server did not answer in time"
                                    : "The MCP server is unreachable",
                            r->o->id_json);
}

/* The exchange in the metrics: one add per figure, at its end. */
static void count_exchange(relay *r, CURLcode rc)
{
    const mcpauth_resource *res = r->o->res;
    int end = rc == CURLE_OK && !r->refused ? MCPAUTH_SE_DONE
              : r->client_gone ? (r->client_gone == 2 ? MCPAUTH_SE_SHUTDOWN : MCPAUTH_SE_CLIENT_GONE)
              : r->idle        ? MCPAUTH_SE_IDLE_TIMEOUT
                               : MCPAUTH_SE_BACKEND_ERROR;
    if (end == MCPAUTH_SE_BACKEND_ERROR)
        mcpauth__metrics_add(res,
                             rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_ABORTED_BY_CALLBACK
                                 ? MCPAUTH_M_BACKEND_TIMEOUTS
                                 : MCPAUTH_M_BACKEND_ERRORS,
                             1);
    if (r->stream_counted) {
        mcpauth__metrics_add(res, MCPAUTH_M_STREAMS_OPEN, -1);
        mcpauth__metrics_add(res, (mcpauth__metric)(MCPAUTH_M_STREAM_END + end), 1);
    }
    if (r->o->len)
        mcpauth__metrics_add(res, MCPAUTH_M_BYTES_TO_BACKEND, (int64_t)r->o->len);
    if (r->bytes)
        mcpauth__metrics_add(res, MCPAUTH_M_BYTES_TO_CLIENT, (int64_t)r->bytes);
}

void mcpauth__proxy_relay(mcpauth_proxy *p, const mcpauth_request *req, mcpauth_response *resp,
                          const mcpauth__proxy_order *o)
{
    relay r;
    memset(&r, 0, sizeof r);
    r.p = p;
    r.req = req;
    r.resp = resp;
    r.o = o;
    struct curl_slist *h = NULL;
    const char *bad;
    client_headers(o, &h, &bad);
    int theirs = bad != NULL;
    if (!bad)
        own_headers(o, &h, &bad);
    if (bad) {
        header_refused(&r, bad, theirs);
    } else {
        CURL *c = thread_curl(p);
        curl_setup(c, &r, h);
        r.started = r.last_data = mono();
        mcpauth__metrics_add(o->res, MCPAUTH_M_BACKEND_REQUESTS, 1);
        CURLcode rc = curl_easy_perform(c);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL); /* r goes out of scope */
        relay_finish(&r, rc);
        count_exchange(&r, rc);
    }
    free(r.held);
    curl_slist_free_all(h);
}
