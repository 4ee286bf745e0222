/* Client ID Metadata Documents (not installed): an MCP client whose
 * client_id is an https URL publishes its metadata there
 * (draft-ietf-oauth-client-id-metadata-document).  The AS fetches it with
 * SSRF guards, checks it, and caches it per its HTTP caching headers. */
#ifndef MCPAUTH_CIMD_H
#define MCPAUTH_CIMD_H

#include <stddef.h>
#include <time.h>

#include "store.h"

typedef struct mcpauth_cimd mcpauth_cimd;

typedef struct mcpauth_cimd_opts {
    long timeout_ms;     /* whole fetch; 0 → 3000 */
    size_t max_bytes;    /* document limit; 0 → 16 KiB */
    int allow_private;   /* also fetch from loopback, private and link-local
                            addresses, and http on loopback (tests, labs) */
    const char *ca_file; /* CA bundle; NULL → system */
    long max_cache;      /* upper bound on caching, seconds; 0 → 3600 */
} mcpauth_cimd_opts;

/* A cache of `entries` documents (0: no caching). */
mcpauth_cimd *mcpauth__cimd_new(size_t entries);
void mcpauth__cimd_free(mcpauth_cimd *c);

/* 1 when client_id has the form of a metadata document URL: https, a
 * path, no fragment, no userinfo, no dot segments. */
int mcpauth__cimd_is_url(const char *client_id);

/* NULL when s (len bytes) is fit to be shown as an application's name on
 * the consent page, else why not ("contains ..."): valid UTF-8, at most 200
 * characters, not blank, no NUL, no C0/C1 controls, and no invisible,
 * zero-width or bidirectional formatting characters (U+200B-U+200F,
 * U+202A-U+202E, U+2060-U+2064, U+2066-U+2069, U+FEFF, tags, ...), which
 * could make one name read as another. */
const char *mcpauth__display_name_problem(const char *s, size_t len);

/* Fetches (or takes from the cache) and checks the document: the JSON's
 * client_id equals url exactly; client_name a string that
 * mcpauth__display_name_problem accepts; no string holding a NUL; redirect_uris a
 * non-empty array of https or loopback-http URIs without fragments;
 * token_endpoint_auth_method absent or "none" (no secrets in public
 * documents); no client_secret.  Fills out (kind "cimd") and returns 0, or
 * -1 with a reason for the user in err.  Thread safe. */
int mcpauth__cimd_get(mcpauth_cimd *c, const char *url, const mcpauth_cimd_opts *o, time_t now,
                     mcpauth_client *out, char *err, size_t errlen);

#endif
