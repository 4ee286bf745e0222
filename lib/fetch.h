/* Outgoing HTTP (not installed): every request mcpauth makes goes through
 * here, over libcurl, with limits: timeout, response size, no redirects,
 * https unless the host is loopback. */
#ifndef MCPAUTH_FETCH_H
#define MCPAUTH_FETCH_H

#include <stddef.h>

typedef struct mcpauth_fetch_opts {
    long timeout_ms;          /* whole transfer; 0 → 5000 */
    size_t max_bytes;         /* response body limit; 0 → 1 MiB */
    const char *ca_file;      /* CA bundle for https; NULL → system default */
    const char *form;         /* non-NULL: POST this application/x-www-form-urlencoded body */
    const char *basic_user;   /* non-NULL: HTTP Basic credentials (client_secret_basic) */
    const char *basic_pass;
    const char *accept;       /* Accept header; NULL → application/json */
    /* SSRF guard: refuse to connect to loopback, private, link-local,
     * CGNAT, multicast, reserved and documentation addresses (also in
     * their IPv4-mapped, NAT64 and 6to4 forms).  Checked at connect time
     * on each address curl is about to connect to, so a name that
     * resolves (or re-resolves) to such an address is refused before any
     * packet is sent.  Environment proxies are not used: the guard must
     * see the address actually connected to. */
    int deny_private;
    int https_only;           /* refuse http, even to a loopback host */
} mcpauth_fetch_opts;

typedef struct mcpauth_fetch_result {
    long status;        /* HTTP status, 0 when no response */
    char *body;         /* NUL-terminated, owned; free with mcpauth__fetch_result_free */
    size_t len;
    long max_age;       /* seconds from Cache-Control (no-store/no-cache → 0), -1 absent */
    char content_type[128];
} mcpauth_fetch_result;

/* GET (or POST with opts->form) url.  Returns 0 when a response arrived
 * (any status, including a 3xx, which is never followed), -1 with a reason
 * in err otherwise: refused URL (not https and not loopback http),
 * connection failure, timeout, body over max_bytes. */
int mcpauth__fetch(const char *url, const mcpauth_fetch_opts *opts, mcpauth_fetch_result *res,
                  char *err, size_t errlen);
void mcpauth__fetch_result_free(mcpauth_fetch_result *res);

/* The deny_private address test: NULL when the IPv4 or IPv6 literal ip
 * (brackets allowed) may be connected to, else a static reason such as
 * "private network".  Anything that is not an address literal is refused
 * ("not an IP address"). */
const char *mcpauth__fetch_address_blocked(const char *ip);

/* application/x-www-form-urlencoded encoding of one value (caller frees). */
char *mcpauth__form_encode(const char *value);

#endif
