/* Proxy internals (not installed), shared by proxy.c (the checks) and
 * proxy_relay.c (the backend exchange), and exposed so unit tests can drive
 * the pieces that decide whether a request may pass without a web server. */
#ifndef MCPAUTH_PROXY_PRIV_H
#define MCPAUTH_PROXY_PRIV_H

#include <pthread.h>
#include <stddef.h>

#include <mcpauth/config.h>
#include <mcpauth/http.h>
#include <mcpauth/proxy.h>
#include <mcpauth/validate.h>

#include "shm.h"
#include "state.h"

struct mcpauth_proxy {
    const mcpauth_config *cfg;
    mcpauth_validator *validator;
    mcpauth_shm *shm;       /* this host's: requests in flight (and the state with shared_state = shm) */
    mcpauth__state *state;  /* rate limits and session bindings, where shared_state says */
    pthread_key_t curl_key; /* one easy handle per thread keeps backend connections warm */
};

/* The request as the MCP transport sees it, read once before any check so
 * every stage (and the relay) works on the same values.  Pointers are lent
 * by the request.  NULL means the header is absent. */
typedef struct mcpauth__proxy_view {
    const char *method;          /* HTTP method, never NULL */
    int post, get, del, options;
    const char *origin;          /* Origin */
    const char *content_type;    /* CONTENT_TYPE */
    const char *content_length;  /* CONTENT_LENGTH */
    const char *accept;
    const char *version;         /* MCP-Protocol-Version */
    int era2026;                 /* version is 2026-07-28 */
    const char *session;         /* Mcp-Session-Id; never read in the 2026-07-28 era */
    const char *mcp_method;      /* Mcp-Method */
    const char *mcp_name;        /* Mcp-Name */
    const char *last_event_id;   /* Last-Event-ID (resuming a GET stream) */
    const char *cookie;          /* forwarded only with forward_cookies */
} mcpauth__proxy_view;

void mcpauth__proxy_view_read(const mcpauth_request *req, mcpauth__proxy_view *v);

/* What the checks decided to send to the backend. */
typedef struct mcpauth__proxy_order {
    const mcpauth_resource *res;
    const mcpauth__proxy_view *v;
    const mcpauth_identity *id;  /* the caller, told to the backend in its own headers */
    const char *origin_ok;       /* Origin to echo in CORS headers; NULL: none */
    const char *method;          /* HTTP method to the backend */
    const char *body;            /* POST body (NULL: none) */
    size_t len;
    const char *id_json;         /* JSON-RPC id for error answers */
    const char *owner;           /* session owner string */
    const char *session_in;      /* Mcp-Session-Id to forward; NULL: none */
    int bind_session;            /* an initialize: bind the session id it creates */
    int remove_session;          /* a DELETE: forget the binding when it succeeds */
} mcpauth__proxy_order;

/* Relays o to the backend and streams its answer to resp; answers the
 * client itself when the backend cannot be reached (502/504) or a header
 * for it does not fit (431 for the client's own, 500 for ours). */
void mcpauth__proxy_relay(mcpauth_proxy *p, const mcpauth_request *req, mcpauth_response *resp,
                          const mcpauth__proxy_order *o);
/* pthread key destructor of the per-thread curl handle. */
void mcpauth__proxy_curl_free(void *c);

/* CORS headers for an accepted Origin; nothing when origin_ok is NULL. */
void mcpauth__proxy_cors(mcpauth_response *resp, const char *origin_ok);
/* A JSON-RPC error answer with this HTTP status (id_json NULL: null). */
void mcpauth__proxy_rpc_fail(mcpauth_response *resp, int status, int code, const char *message,
                             const char *id_json);

/* Appends to out (without duplicates) every scope the [policy] sections of
 * res demand for this JSON-RPC method and name (params.name / params.uri,
 * may be NULL).  Never drops one: an allocation failure aborts. */
void mcpauth__proxy_policy_scopes(const mcpauth_config *cfg, const mcpauth_resource *res,
                                  const char *method, const char *name, mcpauth_strlist *out);

/* The rate-limit bucket key of kind ("address", "subject"), the resource
 * name and the n parts identifying the caller: SHA-256 over each part
 * prefixed with its length, so parts of any length map to a fixed-size key
 * that neither truncation nor a separator inside a part can make collide.
 * 0, or -1 when the digest could not be computed. */
#define MCPAUTH__RATE_KEY_LEN 32
int mcpauth__proxy_rate_key(const char *kind, const char *resource, const char *const *parts,
                            size_t n, unsigned char out[MCPAUTH__RATE_KEY_LEN]);

#endif
