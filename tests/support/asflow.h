/* The client side of the built-in authorization server's OAuth flow
 * (mcpauth-as), shared by tests/soak/soak.c and bench/bench_as.c: a public
 * client registered (RFC 7591, token_endpoint_auth_method none) with its
 * PKCE pair, the consent form (Basic sign-in, CSRF and the other hidden
 * fields) approved once with "remember", then the requests of the flow:
 * GET /authorize for a code, its exchange at /token, refreshes.
 *
 * HTTP stays with the caller: the programs count, time and check their
 * requests in their own ways, so the set-up steps (asflow_register,
 * asflow_consent) send through a callback, and the steps the programs time
 * (authorize, exchange, refresh) are builders and parsers around the
 * caller's own request.
 *
 * No global state.  An asflow_as and an asflow_client are written once
 * (asflow_as_init, asflow_register) and only read afterwards, so any number
 * of threads may use them at once; every function is reentrant (the
 * callback's ctx is the caller's, one per thread). */
#ifndef MCPAUTH_TEST_ASFLOW_H
#define MCPAUTH_TEST_ASFLOW_H

#include <stddef.h>

#include <curl/curl.h>

#define ASFLOW_REDIRECT "http://127.0.0.1/callback"
/* alice:wonderland, the site's login the tests put in htpasswd */
#define ASFLOW_BASIC_LOGIN "Authorization: Basic YWxpY2U6d29uZGVybGFuZA=="
#define ASFLOW_FORM_TYPE "Content-Type: application/x-www-form-urlencoded"
#define ASFLOW_JSON_TYPE "Content-Type: application/json"

/* One AS: its endpoints under base + "/oauth2" and the resource asked for. */
typedef struct {
    char who[32];                        /* prefix of messages, client names, state= */
    char authz[256], token[256], reg[256]; /* endpoint URLs */
    char e_resource[512], e_redirect[256]; /* URL-encoded */
} asflow_as;

/* One registered public client and its PKCE pair. */
typedef struct {
    char id[128], e_id[256]; /* client_id, and URL-encoded */
    char verifier[64], challenge[64];
} asflow_client;

/* An answer, as the callback fills it in.  The strings belong to the
 * caller's ctx and stay valid until its next request; "" when none. */
typedef struct {
    long status; /* 0: no answer */
    const char *body;
    const char *location;
} asflow_answer;

/* One request: GET when body is NULL, else POST with body.  hdrs: header
 * lines, NULL-terminated. */
typedef void (*asflow_http_fn)(void *ctx, const char *url, const char *const *hdrs,
                               const char *body, asflow_answer *out);

/* libcurl plumbing of the callers' own handles. */

/* Sets the options every flow handle has: body to on_body and headers to
 * on_header (both with ctx), no proxy, no signals, timeout_s per request. */
void asflow_curl_init(CURL *c, size_t (*on_body)(char *, size_t, size_t, void *),
                      size_t (*on_header)(char *, size_t, size_t, void *), void *ctx,
                      long timeout_s);
/* For a CURLOPT_WRITEFUNCTION: appends d[0..n) to the NUL-terminated
 * *body (length *len, capacity *cap; the caller frees *body).  n, or 0
 * when out of memory (libcurl then fails the transfer). */
size_t asflow_append(char **body, size_t *len, size_t *cap, const char *d, size_t n);
/* For a CURLOPT_HEADERFUNCTION: when the header line d[0..len) is name
 * (e.g. "Location:", case-insensitive), its value into out (left alone
 * when it does not fit) and 1; else 0. */
int asflow_header(const char *d, size_t len, const char *name, char *out, size_t outlen);

/* Fills as for the AS under base (e.g. "http://127.0.0.1:8080") and the
 * resource URI; who ("soak", "bench") names the caller.  0, or -1 when a
 * value does not fit. */
int asflow_as_init(asflow_as *as, const char *who, const char *base, const char *resource);

/* s URL-encoded; caller frees.  Aborts when out of memory. */
char *asflow_enc(const char *s);

/* The string member name of the JSON object text, copied into buf (with
 * its NUL, at most len bytes): 0, or -1 when absent, not a string or too
 * long. */
int asflow_json_str(const char *text, const char *name, char *buf, size_t len);

/* Registers public client number i ("<who> client <i>") and makes its PKCE
 * pair into c.  0, or -1 with a message on stderr. */
int asflow_register(const asflow_as *as, asflow_http_fn http, void *ctx, int i, asflow_client *c);

/* Gets the consent page for c (Basic sign-in) and approves it with
 * "remember", sending back its hidden fields (CSRF value included): later
 * authorizations of c answer with a code at once.  0, or -1 with a message
 * on stderr. */
int asflow_consent(const asflow_as *as, asflow_http_fn http, void *ctx, const asflow_client *c);

/* The GET /authorize URL for c (code, S256, resource, scope files:read). */
void asflow_authorize_url(const asflow_as *as, const asflow_client *c, char *buf, size_t len);

/* The code of an authorization's redirect Location into code: 0, or -1
 * when there is none or it does not fit. */
int asflow_code(const char *location, char *code, size_t len);

/* The /token form bodies: a code's exchange (PKCE verifier, redirect_uri,
 * resource) and a refresh (refresh_token, resource).  0, or -1 when the
 * form did not fit in buf. */
int asflow_exchange_form(const asflow_as *as, const asflow_client *c, const char *code, char *buf,
                         size_t len);
int asflow_refresh_form(const asflow_as *as, const asflow_client *c, const char *refresh_token,
                        char *buf, size_t len);

#endif
