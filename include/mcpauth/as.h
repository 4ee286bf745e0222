/* The built-in OAuth 2.1 authorization server for MCP clients: dynamic
 * registration (RFC 7591), client ID metadata documents, the authorization
 * code flow with PKCE S256 and resource indicators (RFC 8707), a consent
 * page, refresh-token rotation, introspection (RFC 7662), revocation (RFC
 * 7009) and the JWKS.  Users are authenticated by the web server
 * (REMOTE_USER); mcpauth never sees a password. */
#ifndef MCPAUTH_AS_H
#define MCPAUTH_AS_H

#include <mcpauth/config.h>
#include <mcpauth/http.h>

typedef struct mcpauth_as mcpauth_as;

/* Opens the state (cfg->as->state_dir, or the PostgreSQL store), the
 * current signing key and the server secret.  NULL with a reason in err
 * (e.g. "run mcpauth init").  A PostgreSQL store that does not answer at
 * all is not an error: the server starts, answers 503 until it can load
 * the state, and loads it on a later request (logged once). */
mcpauth_as *mcpauth_as_new(const mcpauth_config *cfg, char *err, size_t errlen);
void mcpauth_as_free(mcpauth_as *as);

/* Answers requests below the issuer's /oauth2/ path. */
void mcpauth_as_handle(mcpauth_as *as, const mcpauth_request *req, mcpauth_response *resp);

/* RFC 8414 metadata of the built-in AS (JSON text, caller frees); NULL
 * when cfg has no [authorization_server]. */
char *mcpauth_as_metadata_json(const mcpauth_config *cfg);

/* The endpoint URL issuer + "/oauth2/" + name into buf. */
void mcpauth_as_endpoint(const mcpauth_config *cfg, const char *name, char *buf, size_t cap);

#endif
