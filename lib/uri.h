/* The one place that decides what a canonical resource URI is (RFC 8707 §2,
 * MCP "Canonical Server URI"): absolute http(s) URI, lowercase scheme and
 * host, default port dropped, no userinfo, query or fragment, no dot
 * segments, no trailing slash unless the caller says it is significant, and
 * https unless the host is loopback. */
#ifndef MCPAUTH_URI_H
#define MCPAUTH_URI_H

#define MCPAUTH_URI_KEEP_SLASH 0x1 /* a trailing "/" is significant */
#define MCPAUTH_URI_ALLOW_QUERY 0x2 /* for plain links (documentation) */
#define MCPAUTH_URI_ANY_HTTP 0x4    /* http allowed for any host (links) */

/* Returns the canonical form (caller frees), or NULL with *why set to a
 * static English reason. */
char *mcpauth__uri_canonicalize(const char *in, unsigned flags, const char **why);

/* Splits a canonical URI at the end of its authority: origin gets
 * "scheme://host[:port]", path the rest ("" for none).  Caller frees both.
 * Returns 0; -1 (nothing set) only when canonical has no "://", which a
 * result of mcpauth__uri_canonicalize always has.  A failed allocation
 * aborts the process. */
int mcpauth__uri_split(const char *canonical, char **origin, char **path);

/* 1 for "localhost", 127.0.0.0/8 and ::1 (with or without brackets). */
int mcpauth__uri_host_is_loopback(const char *host);

#endif
