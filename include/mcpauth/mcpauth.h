/* mcpauth: OAuth 2.1 protection for MCP servers behind FastCGI.
 *
 * One narrow public API, every symbol prefixed mcpauth_.  Ownership rule used
 * throughout: a function returning `char *` or a pointer to a struct created
 * by a `_new`/`_load` call gives the caller ownership (free with the matching
 * `_free`, or free(3) for plain strings); a function returning `const` data
 * lends it for the lifetime of the object it came from.
 */
#ifndef MCPAUTH_MCPAUTH_H
#define MCPAUTH_MCPAUTH_H

#include <mcpauth/version.h>

#include <mcpauth/util.h>
#include <mcpauth/log.h>
#include <mcpauth/config.h>
#include <mcpauth/http.h>
#include <mcpauth/metadata.h>
#include <mcpauth/validate.h>

/* The MCP revisions this build understands, newest first. */
extern const char *const mcpauth_mcp_versions[];

#endif
