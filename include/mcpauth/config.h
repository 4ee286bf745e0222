/* mcpauth.conf: parsed and checked once at start-up, immutable afterwards.
 * Every key is documented in mcpauth.conf(5).  The structures are public so
 * programs can read them directly; treat them as read-only. */
#ifndef MCPAUTH_CONFIG_H
#define MCPAUTH_CONFIG_H

#include <stddef.h>
#include <mcpauth/util.h>

#define MCPAUTH_PRM_WELL_KNOWN "/.well-known/oauth-protected-resource"

typedef struct mcpauth_resource {
    char *name;            /* from [resource NAME] */
    unsigned line;         /* line of the section header */
    char *uri;             /* canonical resource URI (RFC 8707) */
    char *origin;          /* scheme://host[:port] of uri */
    char *path;            /* path of uri, "" when none */
    char *host;            /* host[:port] of uri, for virtual-host matching */
    char *metadata_path;   /* MCPAUTH_PRM_WELL_KNOWN + path */
    char *metadata_url;    /* origin + metadata_path: the resource_metadata */
    char *resource_name;   /* NULL when not configured */
    mcpauth_strlist authorization_servers; /* issuer identifiers, verbatim */
    mcpauth_strlist scopes_supported;
    mcpauth_strlist scopes_required;
    char *resource_documentation;
    char *resource_policy_uri;
    char *resource_tos_uri;
    char *backend;         /* http://host:port/path or unix:/path */
    int trailing_slash;    /* a trailing "/" on uri is significant */
} mcpauth_resource;

typedef struct mcpauth_config {
    char *file;                 /* path it was read from */
    int log_level;              /* mcpauth_log_level */
    long metadata_max_age;      /* seconds, Cache-Control of metadata */
    const mcpauth_resource *default_resource; /* NULL unless configured */
    size_t nresources;
    mcpauth_resource *resources;
} mcpauth_config;

/* Reads and checks a file.  On error returns NULL and writes one line,
 * "FILE:LINE: problem" (or "FILE: problem"), into err. */
mcpauth_config *mcpauth_config_load(const char *file, char *err, size_t errlen);
/* Same for text in memory; name is used in messages in place of the file. */
mcpauth_config *mcpauth_config_parse(const char *text, size_t len, const char *name,
                                     char *err, size_t errlen);
void mcpauth_config_free(mcpauth_config *cfg);

const mcpauth_resource *mcpauth_config_resource_by_name(const mcpauth_config *cfg,
                                                        const char *name);
/* Exact match against canonical URIs (callers canonicalize input first). */
const mcpauth_resource *mcpauth_config_resource_by_uri(const mcpauth_config *cfg,
                                                       const char *uri);

/* The compiled-in default, SYSCONFDIR/mcpauth/mcpauth.conf. */
const char *mcpauth_config_default_file(void);

#endif
