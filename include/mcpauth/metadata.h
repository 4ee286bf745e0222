/* RFC 9728 protected resource metadata: documents built once from the
 * configuration, then served read-only. */
#ifndef MCPAUTH_METADATA_H
#define MCPAUTH_METADATA_H

#include <mcpauth/config.h>
#include <mcpauth/http.h>

/* Headers a browser-based MCP client may send (CORS preflights). */
#define MCPAUTH_CORS_ALLOW_HEADERS \
    "Authorization, Content-Type, MCP-Protocol-Version, Mcp-Session-Id, " \
    "Last-Event-ID, Mcp-Method, Mcp-Name"

typedef struct mcpauth_metadata mcpauth_metadata;

/* Builds every document; cfg must outlive the result.  NULL on failure with
 * a reason in err. */
mcpauth_metadata *mcpauth_metadata_new(const mcpauth_config *cfg, char *err, size_t errlen);
void mcpauth_metadata_free(mcpauth_metadata *md);

/* The JSON document of one resource (owned by md). */
const char *mcpauth_metadata_json(const mcpauth_metadata *md, const mcpauth_resource *res);

/* The resource whose metadata lives at this request path, or NULL.  host (may
 * be NULL) only breaks ties between resources of different hosts sharing a
 * path; it never changes what a document says. */
const mcpauth_resource *mcpauth_metadata_lookup(const mcpauth_metadata *md, const char *path,
                                                const char *host);

/* Answers one request: GET/HEAD → 200 document, OPTIONS → 204 preflight,
 * unknown path → 404 JSON, other methods → 405 with Allow. */
void mcpauth_metadata_handle(const mcpauth_metadata *md, const mcpauth_request *req,
                             mcpauth_response *resp);

#endif
