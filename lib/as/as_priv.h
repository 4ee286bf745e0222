/* Internals of the built-in authorization server (not installed), shared
 * by the files of lib/as/: one per endpoint (authorize.c, consent.c,
 * token.c, register.c, introspect.c, revoke.c, discovery.c) and the pieces
 * they share (as.c: the object and the dispatch; form.c: request bodies;
 * page.c: everything sent back; client.c: clients; tokens.c: random values,
 * keys and our own JWTs). */
#ifndef MCPAUTH_AS_PRIV_H
#define MCPAUTH_AS_PRIV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/types.h>
#include <time.h>

#include <json-c/json.h>

#include <mcpauth/as.h>
#include <mcpauth/config.h>
#include <mcpauth/http.h>
#include <mcpauth/util.h>

#include "cimd.h"
#include "jose.h"
#include "keys.h"
#include "revoked.h"
#include "store.h"

#define MCPAUTH__AS_FORM_MAX (64 * 1024)
#define MCPAUTH__AS_REG_MAX (16 * 1024)
#define MCPAUTH__AS_CSRF_WINDOW 600

/* The signing key and the published keys as one immutable snapshot: a
 * request takes a reference (mcpauth__as_keys_get) and uses it without
 * any lock; a reload builds a new one and swaps the pointer. */
typedef struct mcpauth__as_keys {
    atomic_uint refs;
    mcpauth_signer *signer;
    char *jwks;                 /* public JWKS text */
    mcpauth_jwks *verify;       /* the same keys, parsed, to verify our own tokens */
} mcpauth__as_keys;

struct mcpauth_as {
    const mcpauth_config *cfg;
    const mcpauth_as_config *ac;
    /* store, secret and keys are loaded at start, or, when the PostgreSQL
     * server could not be reached then, by the first request that finds it
     * back (as.c).  Until ready is set only that one loader touches them;
     * mcpauth_as_handle calls no endpoint before. */
    mcpauth_store *store;
    mcpauth_cimd *cimd;
    mcpauth__revoked *revoked;  /* shared with the gate and the proxy */
    unsigned char secret[MCPAUTH_SECRET_BYTES]; /* HMAC key for CSRF tokens */
    atomic_int ready;           /* 1 once store, secret and keys are loaded */
    /* guards loading and load_why; never held across I/O */
    pthread_mutex_t load_lock;
    int loading;                /* a request is loading the state */
    char load_why[512];         /* the reason last logged: one line per outage */
    /* revocations the shared list refused (Redis unreachable): requests
     * retry them, at most one every second (as.c) */
    atomic_int push_pending;
    atomic_llong push_tried;    /* monotonic ms of the last attempt */
    /* guards keys, key_checked and key_loading; held only to read or swap
     * the pointer, never across the store or key files */
    pthread_mutex_t key_lock;
    mcpauth__as_keys *keys;     /* current snapshot, never NULL once ready */
    time_t key_checked;         /* last reload started */
    int key_loading;            /* a request is reloading them */
    char prefix[2048];          /* path of ISSUER/oauth2 */
};

/* ------------------------------------------------------------ endpoints */

void mcpauth__as_authorize(mcpauth_as *as, const mcpauth_request *req, mcpauth_response *resp,
                           int post);
void mcpauth__as_token(mcpauth_as *as, const mcpauth_request *req, mcpauth_response *resp);
void mcpauth__as_register(mcpauth_as *as, const mcpauth_request *req, mcpauth_response *resp);
void mcpauth__as_introspect(mcpauth_as *as, const mcpauth_request *req, mcpauth_response *resp);
void mcpauth__as_revoke(mcpauth_as *as, const mcpauth_request *req, mcpauth_response *resp);
void mcpauth__as_jwks(mcpauth_as *as, mcpauth_response *resp);

/* ----------------------------------------------------------- as.c */

/* Access tokens of grants revoked in the store go to the shared set the
 * gate and the proxy check (revoked.h). */
void mcpauth__as_push_revocations(mcpauth_as *as);
/* When a push left some out (Redis unreachable): pushes again, at most
 * once a second across the requests that call it, without any lock. */
void mcpauth__as_retry_revocations(mcpauth_as *as);
/* Right after a store call failed: when the cause is a fault of the state
 * (locked, read-only, full, damaged: mcpauth__store_fault), logs it with
 * what was being done and returns the reason; NULL (nothing logged) for
 * other failures. */
const char *mcpauth__as_state_fault(const char *during);
/* The same, and answers 503 temporarily_unavailable with Retry-After:
 * 1 answered, 0 not (the caller answers). */
int mcpauth__as_store_unavailable(mcpauth_response *resp, const char *during);
/* Every scope of the space-separated req is in allowed. */
int mcpauth__as_scope_subset(const char *req, const mcpauth_strlist *allowed);

/* ----------------------------------------------------------- form.c */

/* One parameter of an x-www-form-urlencoded string.  1 found (decoded into
 * out), 0 absent, -1 present twice (RFC 6749 §3.1) or undecodable. */
int mcpauth__as_form_get(const char *form, const char *key, char *out, size_t cap);
/* HTTP Basic credentials into id and secret, each form-decoded (RFC 6749
 * §2.3.1 encodes them before Basic).  0, or -1 when malformed. */
int mcpauth__as_parse_basic(const char *authz, char *id, size_t idcap, char *secret,
                            size_t seccap);
/* The body (bounded, see mcpauth_request_body); a NUL byte makes it
 * unreadable: forms and JSON never hold one.  Caller frees. */
char *mcpauth__as_read_body(const mcpauth_request *req, size_t max, ssize_t *len);

/* ----------------------------------------------------------- page.c */

/* open_memstream under the abort policy (alloc.h): a page or redirect
 * built from a stream that ran out of memory would be cut short. */
FILE *mcpauth__as_memstream(char **buf, size_t *len);
void mcpauth__as_memstream_close(FILE *f, char **buf);
/* The start of every HTML page, up to <body>. */
void mcpauth__as_page_head(FILE *f, const char *title);
void mcpauth__as_html_escape(FILE *f, const char *s);
/* Closes the page f (opened with mcpauth__as_memstream(buf, len)) and sends
 * it with the security headers; form_action is the one origin, besides
 * our own, a form on the page may post to (NULL: none). */
void mcpauth__as_page_send(mcpauth_response *resp, int status, FILE *f, char **buf, size_t *len,
                           const char *form_action);
/* An error shown to the user, never a redirect: the client or its redirect
 * URI is not trusted (RFC 6749 §4.1.2.1). */
void mcpauth__as_error_page(mcpauth_response *resp, int status, const char *title,
                            const char *msg);
/* Sends o (and drops it), not to be cached. */
void mcpauth__as_json_reply(mcpauth_response *resp, int status, json_object *o);
void mcpauth__as_oauth_error(mcpauth_response *resp, int status, const char *error,
                             const char *desc);
void mcpauth__as_cors_public(mcpauth_response *resp);

/* ----------------------------------------------------------- client.c */

/* A registered client, or a client ID metadata document, into c (freed by
 * the caller in every case).  1 found, 0 not (why in err), -1 trouble. */
int mcpauth__as_find_client(mcpauth_as *as, const char *client_id, mcpauth_client *c, char *err,
                            size_t errlen);
/* The URI's host is a loopback one; the host goes to host_out (may be
 * NULL). */
int mcpauth__as_loopback_uri(const char *uri, char *host_out, size_t cap);
/* Exact match against the client's redirect URIs, except that loopback
 * ones match on any port.  The matched URI (the request's) is copied to
 * out.  A missing redirect_uri is fine when exactly one is registered. */
int mcpauth__as_redirect_ok(const mcpauth_client *c, const char *requested, char *out,
                            size_t cap, int *only_loopback);
/* Client authentication at the token and revocation endpoints.  Fills c;
 * returns 1 ok, 0 refused (answered), -1 answered. */
int mcpauth__as_authenticate_client(mcpauth_as *as, const mcpauth_request *req,
                                    const char *form, mcpauth_client *c, mcpauth_response *resp);

/* ----------------------------------------------------------- tokens.c */

/* bytes random bytes, base64url-encoded into out.  0, or -1. */
int mcpauth__as_random(char *out, size_t cap, size_t bytes);
/* Loads the keys from the store and swaps them in: when the state is
 * loaded (at start-up, or later when the database could not be reached
 * then: 0, or -1 with err), and by mcpauth__as_keys_get. */
int mcpauth__as_refresh_keys(mcpauth_as *as, time_t now, char *err, size_t errlen);
/* The current keys (a reference to drop with mcpauth__as_keys_put),
 * reloaded at most every 30 s so a key rotated by `mcpauth rotate-key`
 * reaches every process without a restart.  The request that finds a
 * reload due does it; the others go on with the snapshot in place, and a
 * failed reload keeps it.  NULL only when no keys were ever loaded. */
mcpauth__as_keys *mcpauth__as_keys_get(mcpauth_as *as, time_t now);
void mcpauth__as_keys_put(mcpauth__as_keys *k);
/* Claims of an access token this AS issued and that is still valid, or
 * NULL.  Used by introspection and revocation. */
json_object *mcpauth__as_own_claims(mcpauth_as *as, const char *token, time_t now);
/* A signed access token for g (caller frees), or NULL without a key. */
char *mcpauth__as_mint(mcpauth_as *as, const mcpauth_grant *g, time_t now);

/* ----------------------------------------------- authorize.c, consent.c */

typedef struct mcpauth__as_authz {
    char response_type[32], client_id[2048], redirect_uri[2048], scope[1024], state[1024];
    char code_challenge[256], code_challenge_method[32], resource[2048];
    char csrf[128], ts[32], nonce[64], decision[16], remember[8];
} mcpauth__as_authz;

/* Redirect to the client with code or error, state and iss (RFC 9207). */
void mcpauth__as_redirect_back(mcpauth_as *as, mcpauth_response *resp, const char *uri,
                               const char *code, const char *error, const char *desc,
                               const char *state);
/* The consent page for a (a fresh form: ts, nonce and csrf are set). */
void mcpauth__as_consent_page(mcpauth_as *as, mcpauth_response *resp, const char *user,
                              const mcpauth_client *c, const mcpauth_resource *res,
                              mcpauth__as_authz *a, const char *redirect, int only_loopback);
/* The answer to a consent form posted back: 1 approved, 0 not (answered:
 * forged, expired, replayed or denied). */
int mcpauth__as_consent_answer(mcpauth_as *as, const mcpauth_request *req,
                               mcpauth_response *resp, const char *user, const mcpauth_client *c,
                               const mcpauth_resource *res, const mcpauth__as_authz *a,
                               const char *redirect);

#endif
