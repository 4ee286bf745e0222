/* mcpauth.conf: parsed and checked once at start-up, immutable afterwards.
 * Every key is documented in mcpauth.conf(5).  The structures are public so
 * programs can read them directly; treat them as read-only. */
#ifndef MCPAUTH_CONFIG_H
#define MCPAUTH_CONFIG_H

#include <stddef.h>
#include <mcpauth/util.h>

#define MCPAUTH_PRM_WELL_KNOWN "/.well-known/oauth-protected-resource"

/* An authorization server whose tokens resources accept.  Resources name
 * issuers in authorization_servers; an issuer without an [issuer] section
 * gets these defaults: keys by discovery, JWT access tokens only. */
typedef struct mcpauth_issuer {
    char *name;             /* from [issuer NAME]; NULL when implicit */
    unsigned line;
    char *issuer;           /* identifier, byte for byte as configured */
    char *jwks_file;        /* local JWKS, read at start-up */
    char *jwks_uri;         /* remote JWKS */
    int discovery;          /* find jwks_uri in the issuer's metadata (default yes) */
    char *introspection_endpoint;    /* RFC 7662, for opaque tokens */
    char *introspection_client_id;
    char *introspection_client_secret; /* never logged */
    int require_typ;        /* demand typ "at+jwt" (RFC 9068) */
} mcpauth_issuer;

typedef struct mcpauth_resource {
    char *name;            /* from [resource NAME] */
    unsigned line;         /* line of the section header */
    char *uri;             /* canonical resource URI (RFC 8707) */
    char *origin;          /* scheme://host[:port] of uri */
    char *path;            /* path of uri, "" when none */
    char *host;            /* host[:port] of uri, for virtual-host matching */
    char *metadata_path;   /* MCPAUTH_PRM_WELL_KNOWN + path */
    char *metadata_url;    /* the resource_metadata the challenges name: origin +
                            * metadata_path, or resource_metadata_url (canonical) */
    char *resource_name;   /* NULL when not configured */
    mcpauth_strlist authorization_servers; /* issuer identifiers, verbatim */
    mcpauth_strlist scopes_supported;
    mcpauth_strlist scopes_required;
    /* extra scopes per HTTP method: GET, POST, PUT, PATCH, DELETE */
    mcpauth_strlist scopes_required_method[5];
    mcpauth_strlist audiences;  /* accepted besides uri (IdPs that put client_id in aud) */
    const mcpauth_issuer **issuers; /* one per authorization_servers entry */
    char *resource_documentation;
    char *resource_policy_uri;
    char *resource_tos_uri;
    char *backend;         /* http(s)://host:port/path of the MCP server */
    char *backend_socket;  /* Unix socket to reach it through; NULL: TCP */
    char *backend_authorization; /* static credential for the backend (secret) */
    mcpauth_strlist allowed_origins; /* Origin values accepted besides our own; "*" any */
    char *subject_header;  /* identity headers for the backend */
    char *client_id_header;
    char *scope_header;
    int forward_cookies;
    long rate_limit;       /* requests per second per subject; 0 off */
    long rate_burst;
    long rate_limit_address; /* per client address, before authentication */
    long rate_burst_address;
    int trailing_slash;    /* a trailing "/" on uri is significant */
    long max_concurrent_per_caller; /* requests in flight per issuer + subject; 0 off */
    /* Where mcpauth-metadata also serves the document: the path and
     * host[:port] of metadata_url (metadata_path and host unless
     * resource_metadata_url is set, e.g. below a ~user folder). */
    char *metadata_url_path;
    char *metadata_url_host;
    /* TLS towards an https backend, checked at start-up; NULL: unset */
    char *backend_ca_file;       /* the only CAs trusted for it */
    char *backend_client_cert;   /* PEM, mutual TLS, with backend_client_key */
    char *backend_client_key;    /* PEM, unencrypted, not world-readable */
    char *backend_pinned_pubkey; /* "sha256//BASE64[;sha256//...]" */
} mcpauth_resource;

/* Scopes a JSON-RPC method (and tool or resource name) needs on a
 * resource, from a [policy NAME] section.  Globs are fnmatch(3) patterns. */
typedef struct mcpauth_policy {
    char *name;
    unsigned line;
    char *resource_name;
    const mcpauth_resource *resource;
    char *method;          /* glob on the JSON-RPC method, e.g. "tools/call" */
    char *target;          /* glob on params.name / params.uri; NULL: any */
    mcpauth_strlist scopes;
} mcpauth_policy;

/* Index into scopes_required_method; -1 for other methods. */
int mcpauth_method_index(const char *method);

/* The built-in authorization server ([authorization_server] section). */
typedef struct mcpauth_as_config {
    unsigned line;
    char *issuer;              /* verbatim; also in resources' authorization_servers */
    char *state_dir;           /* database, server secret, signing keys */
    char *store;               /* NULL or "sqlite": SQLite in state_dir; else a
                                  libpq connection string (PostgreSQL) */
    char *signing_alg;         /* "ES256" (default) or "RS256" */
    long access_token_ttl;
    long refresh_token_ttl;
    long code_ttl;
    long refresh_grace;        /* seconds a rotated refresh token still works */
    int registration;          /* open dynamic client registration (RFC 7591) */
    long registration_limit;   /* registrations per client address per hour */
    int cimd;                  /* accept client ID metadata documents */
    int cimd_allow_private;    /* fetch them from private/loopback addresses too */
    int consent_remember;
    char *introspection_client_id;     /* resource servers authenticate with these */
    char *introspection_client_secret;
    mcpauth_strlist scopes_supported;  /* union of its resources' scopes */
} mcpauth_as_config;

typedef struct mcpauth_config {
    char *file;                 /* path it was read from */
    int log_level;              /* mcpauth_log_level */
    int log_dest;               /* mcpauth_log_dest: log = stderr | file:PATH | syslog */
    char *log_file;             /* log = file:PATH; NULL otherwise */
    int log_facility;           /* syslog(3) facility (LOG_DAEMON) of other lines */
    int log_security_facility;  /* of the security=1 lines (LOG_AUTHPRIV) */
    char *log_syslog_socket;    /* the syslog daemon's socket; NULL: /dev/log */
    long metadata_max_age;      /* seconds, Cache-Control of metadata */
    mcpauth_strlist jwt_algorithms; /* accepted JWS algorithms */
    long clock_leeway;          /* seconds of tolerated clock skew */
    long token_max_bytes;
    long cache_entries;         /* validation cache size; 0 disables it */
    long cache_ttl;             /* longest a positive result is reused */
    long cache_negative_ttl;    /* how long a refusal is remembered */
    /* validation cache and remote keys in runtime_dir, shared by the
     * processes: 1 yes, 0 no, -1 auto (the program decides: on for CGI,
     * one request per process; the library takes -1 as no) */
    int shared_cache;
    long jwks_min_refresh;      /* seconds between JWKS fetches per issuer */
    long jwks_max_age;          /* refresh keys at least this often */
    long http_timeout;          /* seconds, every outgoing request */
    char *ca_file;              /* CA bundle for outgoing https; NULL: system */
    long max_body_bytes;        /* largest POST body the proxy reads */
    long backend_timeout;       /* seconds until the backend's response headers */
    long stream_idle_timeout;   /* seconds a stream may stay silent */
    long stream_heartbeat;      /* seconds between SSE keepalive comments; 0: none */
    long session_ttl;           /* idle lifetime of a session binding */
    long proxy_threads;         /* spare workers per process */
    long proxy_max_threads;     /* most workers per process */
    long proxy_reserve_threads; /* the last ones: callers with nothing in flight */
    char *runtime_dir;          /* shared state of the proxy processes */
    long max_concurrent_per_caller; /* default of the [resource] key of that name */
    int metrics;                /* count in runtime_dir/metrics.shm (default yes) */
    char *metrics_path;         /* where mcpauth-metadata serves them; NULL: off */
    mcpauth_strlist metrics_allow; /* CIDRs allowed to read them (loopback) */
    char *shared_state;         /* "shm" (runtime_dir files) or a Redis address */
    long shared_state_timeout;  /* milliseconds per Redis call */
    int shared_state_fail_rate;     /* Redis down: 1 refuse (closed), 0 let through */
    int shared_state_fail_sessions; /* Redis down: 1 refuse (closed, default), 0 allow */
    size_t npolicies;
    mcpauth_policy **policies;
    mcpauth_as_config *as;      /* NULL unless [authorization_server] */
    size_t nissuers;
    mcpauth_issuer **issuers;   /* configured and implicit ones */
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

/* The resource protecting a request path: the longest resource path that
 * is a prefix of path on a segment boundary; host (may be NULL) breaks ties
 * between virtual hosts.  NULL when none. */
const mcpauth_resource *mcpauth_config_resource_for_path(const mcpauth_config *cfg,
                                                         const char *path, const char *host);

/* The compiled-in default, SYSCONFDIR/mcpauth/mcpauth.conf. */
const char *mcpauth_config_default_file(void);

#endif
