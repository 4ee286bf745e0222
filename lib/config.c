/* mcpauth.conf parser.  INI style: global "key = value" lines, then one
 * [resource NAME] section per protected MCP server.  Table driven: adding a
 * key means one row in the tables below and one paragraph in
 * mcpauth.conf(5).  Any defect stops start-up with "FILE:LINE: problem". */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/crypto.h>

#include <mcpauth/config.h>
#include <mcpauth/log.h>
#include <mcpauth/uri.h>

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#ifndef LOCALSTATEDIR
#define LOCALSTATEDIR "/var"
#endif

#define CONF_MAX_BYTES (1 << 20)
#define CONF_MAX_LINE 4096
#define CONF_MAX_RESOURCES 256

typedef enum {
    K_TEXT,     /* printable text, kept verbatim */
    K_LINK,     /* http(s) link for people: documentation, policy */
    K_ISSUERS,  /* space separated issuer identifiers */
    K_SCOPES,   /* space separated RFC 6749 scope tokens */
    K_SECONDS,  /* non-negative integer within [min,max] */
    K_BOOL,
    K_LOGLEVEL,
    K_BACKEND,  /* http(s) URL or unix:/path */
    K_RESNAME,  /* the name of a [resource] section, resolved at the end */
    K_URI,      /* the canonical resource URI, resolved at section end */
    K_ISSUER,   /* one issuer identifier, verbatim */
    K_FETCHURL, /* a URL mcpauth fetches: https, or http to loopback */
    K_FILE,     /* a readable regular file */
    K_SECRET,   /* text never shown in messages */
    K_ALGS,     /* JWS algorithm names */
    K_WORDS,    /* space separated words (audiences) */
    K_SOCKET,   /* absolute path of a Unix socket */
    K_ORIGINS,  /* scheme://host[:port] values, or "*" */
    K_HEADER,   /* an HTTP header name */
    K_DIR,      /* an absolute directory path */
    K_GLOB,     /* an fnmatch(3) pattern */
    K_SIGNALG   /* ES256 or RS256 */
} key_type;

typedef struct {
    const char *name;
    key_type type;
    size_t off;
    long min, max;
} key_def;

/* Values parsed into a scratch struct, so the tables can point at fields. */
typedef struct {
    char *default_resource;
} global_scratch;

#define G(f) offsetof(global_scratch, f)
#define C(f) offsetof(mcpauth_config, f)
#define R(f) offsetof(mcpauth_resource, f)
#define I(f) offsetof(mcpauth_issuer, f)

/* Global keys live in the config itself, except default_resource, which is
 * resolved to a pointer at the end (marked by K_RESNAME). */
static const key_def global_keys[] = {
    {"log_level", K_LOGLEVEL, C(log_level), 0, 0},
    {"metadata_max_age", K_SECONDS, C(metadata_max_age), 0, 604800},
    {"default_resource", K_RESNAME, G(default_resource), 0, 0},
    {"jwt_algorithms", K_ALGS, C(jwt_algorithms), 0, 0},
    {"clock_leeway", K_SECONDS, C(clock_leeway), 0, 600},
    {"token_max_bytes", K_SECONDS, C(token_max_bytes), 256, 65536},
    {"cache_entries", K_SECONDS, C(cache_entries), 0, 1000000},
    {"cache_ttl", K_SECONDS, C(cache_ttl), 1, 3600},
    {"cache_negative_ttl", K_SECONDS, C(cache_negative_ttl), 0, 300},
    {"jwks_min_refresh", K_SECONDS, C(jwks_min_refresh), 1, 86400},
    {"jwks_max_age", K_SECONDS, C(jwks_max_age), 60, 604800},
    {"http_timeout", K_SECONDS, C(http_timeout), 1, 60},
    {"ca_file", K_FILE, C(ca_file), 0, 0},
    {"max_body_bytes", K_SECONDS, C(max_body_bytes), 1024, 64 << 20},
    {"backend_timeout", K_SECONDS, C(backend_timeout), 1, 3600},
    {"stream_idle_timeout", K_SECONDS, C(stream_idle_timeout), 1, 86400},
    {"session_ttl", K_SECONDS, C(session_ttl), 60, 604800},
    {"proxy_threads", K_SECONDS, C(proxy_threads), 1, 256},
    {"runtime_dir", K_DIR, C(runtime_dir), 0, 0},
    {NULL, 0, 0, 0, 0},
};

#define A(f) offsetof(mcpauth_as_config, f)
static const key_def as_keys[] = {
    {"issuer", K_ISSUER, A(issuer), 0, 0},
    {"state_dir", K_DIR, A(state_dir), 0, 0},
    {"signing_alg", K_SIGNALG, A(signing_alg), 0, 0},
    {"access_token_ttl", K_SECONDS, A(access_token_ttl), 30, 86400},
    {"refresh_token_ttl", K_SECONDS, A(refresh_token_ttl), 60, 31536000},
    {"code_ttl", K_SECONDS, A(code_ttl), 10, 600},
    {"refresh_grace", K_SECONDS, A(refresh_grace), 0, 300},
    {"registration", K_BOOL, A(registration), 0, 0},
    {"registration_limit", K_SECONDS, A(registration_limit), 1, 100000},
    {"client_id_metadata_documents", K_BOOL, A(cimd), 0, 0},
    {"cimd_allow_private", K_BOOL, A(cimd_allow_private), 0, 0},
    {"consent_remember", K_BOOL, A(consent_remember), 0, 0},
    {"introspection_client_id", K_TEXT, A(introspection_client_id), 0, 0},
    {"introspection_client_secret", K_SECRET, A(introspection_client_secret), 0, 0},
    {NULL, 0, 0, 0, 0},
};

#define P(f) offsetof(mcpauth_policy, f)
static const key_def policy_keys[] = {
    {"resource", K_TEXT, P(resource_name), 0, 0},
    {"method", K_GLOB, P(method), 0, 0},
    {"name", K_GLOB, P(target), 0, 0},
    {"scopes", K_SCOPES, P(scopes), 0, 0},
    {NULL, 0, 0, 0, 0},
};

static const key_def issuer_keys[] = {
    {"issuer", K_ISSUER, I(issuer), 0, 0},
    {"jwks_file", K_FILE, I(jwks_file), 0, 0},
    {"jwks_uri", K_FETCHURL, I(jwks_uri), 0, 0},
    {"discovery", K_BOOL, I(discovery), 0, 0},
    {"introspection_endpoint", K_FETCHURL, I(introspection_endpoint), 0, 0},
    {"introspection_client_id", K_TEXT, I(introspection_client_id), 0, 0},
    {"introspection_client_secret", K_SECRET, I(introspection_client_secret), 0, 0},
    {"require_typ", K_BOOL, I(require_typ), 0, 0},
    {NULL, 0, 0, 0, 0},
};

static const key_def resource_keys[] = {
    {"uri", K_URI, R(uri), 0, 0},
    {"trailing_slash", K_BOOL, R(trailing_slash), 0, 0},
    {"resource_name", K_TEXT, R(resource_name), 0, 0},
    {"authorization_servers", K_ISSUERS, R(authorization_servers), 0, 0},
    {"scopes_supported", K_SCOPES, R(scopes_supported), 0, 0},
    {"scopes_required", K_SCOPES, R(scopes_required), 0, 0},
    {"scopes_required_get", K_SCOPES, R(scopes_required_method[0]), 0, 0},
    {"scopes_required_post", K_SCOPES, R(scopes_required_method[1]), 0, 0},
    {"scopes_required_put", K_SCOPES, R(scopes_required_method[2]), 0, 0},
    {"scopes_required_patch", K_SCOPES, R(scopes_required_method[3]), 0, 0},
    {"scopes_required_delete", K_SCOPES, R(scopes_required_method[4]), 0, 0},
    {"audiences", K_WORDS, R(audiences), 0, 0},
    {"resource_documentation", K_LINK, R(resource_documentation), 0, 0},
    {"resource_policy_uri", K_LINK, R(resource_policy_uri), 0, 0},
    {"resource_tos_uri", K_LINK, R(resource_tos_uri), 0, 0},
    {"backend", K_BACKEND, R(backend), 0, 0},
    {"backend_socket", K_SOCKET, R(backend_socket), 0, 0},
    {"backend_authorization", K_SECRET, R(backend_authorization), 0, 0},
    {"allowed_origins", K_ORIGINS, R(allowed_origins), 0, 0},
    {"subject_header", K_HEADER, R(subject_header), 0, 0},
    {"client_id_header", K_HEADER, R(client_id_header), 0, 0},
    {"scope_header", K_HEADER, R(scope_header), 0, 0},
    {"forward_cookies", K_BOOL, R(forward_cookies), 0, 0},
    {"rate_limit", K_SECONDS, R(rate_limit), 0, 100000},
    {"rate_burst", K_SECONDS, R(rate_burst), 1, 100000},
    {"rate_limit_address", K_SECONDS, R(rate_limit_address), 0, 100000},
    {"rate_burst_address", K_SECONDS, R(rate_burst_address), 1, 100000},
    {NULL, 0, 0, 0, 0},
};

typedef enum { S_GLOBAL, S_RESOURCE, S_ISSUER, S_POLICY, S_AS } section_kind;

typedef struct {
    const char *file;
    char *err;
    size_t errlen;
    unsigned line;
    mcpauth_config *cfg;
    global_scratch g;
    unsigned g_line_default; /* line of default_resource, for its error */
    unsigned *uri_line;      /* per resource: line of its uri key */
    section_kind kind;       /* the section being read */
    unsigned long long seen; /* keys seen in it, one bit per table row */
} parser;

__attribute__((format(printf, 3, 4)))
static int fail(parser *p, unsigned line, const char *fmt, ...)
{
    int n = line ? snprintf(p->err, p->errlen, "%s:%u: ", p->file, line)
                 : snprintf(p->err, p->errlen, "%s: ", p->file);
    if (n < 0 || (size_t)n >= p->errlen)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
        *--e = '\0';
    return s;
}

static int is_scope_char(unsigned char c)
{
    /* RFC 6749 §3.3: %x21 / %x23-5B / %x5D-7E */
    return c == 0x21 || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c <= 0x7e);
}

static int set_value(parser *p, const key_def *k, void *base, const char *section,
                     const char *v)
{
    void *field = (char *)base + k->off;
    const char *why = NULL;
    char *canon;

    switch (k->type) {
    case K_TEXT:
        if (strlen(v) > 200)
            return fail(p, p->line, "%s: longer than 200 characters", k->name);
        *(char **)field = strdup(v);
        break;
    case K_URI:
        /* Checked at the end of the section, once trailing_slash is known;
         * rejecting obvious garbage now still names the right line. */
        if (!(canon = mcpauth_uri_canonicalize(v, MCPAUTH_URI_KEEP_SLASH, &why)))
            return fail(p, p->line, "uri \"%s\" %s", v, why);
        free(canon);
        *(char **)field = strdup(v);
        break;
    case K_LINK:
        if (!(canon = mcpauth_uri_canonicalize(v, MCPAUTH_URI_KEEP_SLASH | MCPAUTH_URI_ALLOW_QUERY,
                                               &why)))
            return fail(p, p->line, "%s \"%s\" %s", k->name, v, why);
        free(canon);
        *(char **)field = strdup(v);
        break;
    case K_BACKEND:
        if (!(canon = mcpauth_uri_canonicalize(
                  v, MCPAUTH_URI_KEEP_SLASH | MCPAUTH_URI_ALLOW_QUERY | MCPAUTH_URI_ANY_HTTP, &why)))
            return fail(p, p->line, "backend \"%s\" %s", v, why);
        free(canon);
        *(char **)field = strdup(v);
        break;
    case K_SOCKET:
        if (v[0] != '/' || strlen(v) >= 108)
            return fail(p, p->line, "%s \"%s\" must be an absolute path under 108 bytes", k->name, v);
        *(char **)field = strdup(v);
        break;
    case K_DIR: {
        struct stat st;
        if (v[0] != '/')
            return fail(p, p->line, "%s \"%s\" must be an absolute path", k->name, v);
        if (stat(v, &st) == 0 && !S_ISDIR(st.st_mode))
            return fail(p, p->line, "%s \"%s\" is not a directory", k->name, v);
        *(char **)field = strdup(v);
        break;
    }
    case K_HEADER:
        for (const char *c = v; *c; c++)
            if (!isalnum((unsigned char)*c) && *c != '-')
                return fail(p, p->line, "%s: \"%s\" is not a header name", k->name, v);
        if (!strcasecmp(v, "Authorization") || !strcasecmp(v, "Cookie") || !strcasecmp(v, "Host") ||
            !strcasecmp(v, "Content-Length") || !strcasecmp(v, "Transfer-Encoding"))
            return fail(p, p->line, "%s: \"%s\" cannot carry the identity", k->name, v);
        *(char **)field = strdup(v);
        break;
    case K_SIGNALG:
        if (strcmp(v, "ES256") != 0 && strcmp(v, "RS256") != 0)
            return fail(p, p->line, "%s: \"%s\" is not ES256 or RS256", k->name, v);
        *(char **)field = strdup(v);
        break;
    case K_GLOB:
        if (strlen(v) > 256)
            return fail(p, p->line, "%s: longer than 256 characters", k->name);
        *(char **)field = strdup(v);
        break;
    case K_ORIGINS: {
        mcpauth_strlist *l = field;
        if (mcpauth_strlist_split(l, v) < 0)
            return fail(p, p->line, "out of memory");
        for (size_t i = 0; i < l->n; i++) {
            if (strcmp(l->v[i], "*") == 0)
                continue;
            /* An Origin is scheme://host[:port], compared after the same
             * canonicalization as resource URIs. */
            canon = mcpauth_uri_canonicalize(l->v[i], MCPAUTH_URI_ANY_HTTP, &why);
            if (!canon || strchr(strstr(canon, "://") + 3, '/')) {
                free(canon);
                return fail(p, p->line, "%s: \"%s\" is not an origin (scheme://host[:port])",
                            k->name, l->v[i]);
            }
            free(l->v[i]);
            l->v[i] = canon;
        }
        break;
    }
    case K_ISSUERS: {
        mcpauth_strlist *l = field;
        if (mcpauth_strlist_split(l, v) < 0)
            return fail(p, p->line, "out of memory");
        if (l->n == 0)
            return fail(p, p->line, "%s: empty list", k->name);
        for (size_t i = 0; i < l->n; i++) {
            /* Issuers are compared byte for byte with the AS metadata (RFC
             * 8414 §3.3), so they are checked here but never rewritten. */
            if (!(canon = mcpauth_uri_canonicalize(l->v[i], MCPAUTH_URI_KEEP_SLASH, &why)))
                return fail(p, p->line, "%s: \"%s\" %s", k->name, l->v[i], why);
            free(canon);
        }
        break;
    }
    case K_SCOPES: {
        mcpauth_strlist *l = field;
        if (mcpauth_strlist_split(l, v) < 0)
            return fail(p, p->line, "out of memory");
        for (size_t i = 0; i < l->n; i++)
            for (const char *c = l->v[i]; *c; c++)
                if (!is_scope_char((unsigned char)*c))
                    return fail(p, p->line, "%s: \"%s\" is not a valid scope token", k->name,
                                l->v[i]);
        break;
    }
    case K_SECONDS: {
        char *end;
        errno = 0;
        long n = strtol(v, &end, 10);
        if (!isdigit((unsigned char)*v) || *end || errno || n < k->min || n > k->max)
            return fail(p, p->line, "%s: \"%s\" is not a whole number from %ld to %ld", k->name,
                        v, k->min, k->max);
        *(long *)field = n;
        break;
    }
    case K_BOOL:
        if (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "on") || !strcmp(v, "1"))
            *(int *)field = 1;
        else if (!strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "off") || !strcmp(v, "0"))
            *(int *)field = 0;
        else
            return fail(p, p->line, "%s: \"%s\" is not yes or no", k->name, v);
        break;
    case K_LOGLEVEL: {
        int l = mcpauth_log_level_parse(v);
        if (l < 0)
            return fail(p, p->line, "log_level: \"%s\" is not error, warn, info or debug", v);
        *(int *)field = l;
        break;
    }
    case K_RESNAME:
        *(char **)field = strdup(v);
        p->g_line_default = p->line;
        break;
    case K_ISSUER:
        if (!(canon = mcpauth_uri_canonicalize(v, MCPAUTH_URI_KEEP_SLASH, &why)))
            return fail(p, p->line, "%s \"%s\" %s", k->name, v, why);
        free(canon);
        *(char **)field = strdup(v);
        break;
    case K_FETCHURL:
        if (!(canon = mcpauth_uri_canonicalize(v, MCPAUTH_URI_KEEP_SLASH | MCPAUTH_URI_ALLOW_QUERY,
                                               &why)))
            return fail(p, p->line, "%s \"%s\" %s", k->name, v, why);
        free(canon);
        *(char **)field = strdup(v);
        break;
    case K_FILE: {
        struct stat st;
        if (v[0] != '/')
            return fail(p, p->line, "%s \"%s\" must be an absolute path", k->name, v);
        if (stat(v, &st) < 0)
            return fail(p, p->line, "%s \"%s\": %s", k->name, v, strerror(errno));
        if (!S_ISREG(st.st_mode))
            return fail(p, p->line, "%s \"%s\" is not a regular file", k->name, v);
        *(char **)field = strdup(v);
        break;
    }
    case K_SECRET:
        if (strlen(v) > 512)
            return fail(p, p->line, "%s: longer than 512 characters", k->name);
        *(char **)field = strdup(v);
        break;
    case K_ALGS: {
        static const char *const known[] = {"RS256", "RS384", "RS512", "PS256", "PS384",
                                            "PS512", "ES256", "ES384", "ES512", NULL};
        mcpauth_strlist *l = field;
        mcpauth_strlist_free(l); /* replaces the default */
        if (mcpauth_strlist_split(l, v) < 0)
            return fail(p, p->line, "out of memory");
        for (size_t i = 0; i < l->n; i++) {
            size_t j;
            for (j = 0; known[j] && strcmp(known[j], l->v[i]) != 0; j++)
                ;
            if (!known[j])
                return fail(p, p->line,
                            "jwt_algorithms: \"%s\" is not one of RS256 RS384 RS512 PS256 PS384 "
                            "PS512 ES256 ES384 ES512 (\"none\" and HMAC are never accepted)",
                            l->v[i]);
        }
        break;
    }
    case K_WORDS: {
        mcpauth_strlist *l = field;
        if (mcpauth_strlist_split(l, v) < 0)
            return fail(p, p->line, "out of memory");
        break;
    }
    }
    (void)section;
    return 0;
}

static int open_issuer(parser *p, const char *name)
{
    mcpauth_config *cfg = p->cfg;
    for (size_t i = 0; i < cfg->nissuers; i++)
        if (strcmp(cfg->issuers[i]->name, name) == 0)
            return fail(p, p->line, "issuer \"%s\" is already defined at line %u", name,
                        cfg->issuers[i]->line);
    if (cfg->nissuers >= CONF_MAX_RESOURCES)
        return fail(p, p->line, "more than %d issuers", CONF_MAX_RESOURCES);
    mcpauth_issuer **ni = realloc(cfg->issuers, (cfg->nissuers + 1) * sizeof *ni);
    if (!ni)
        return fail(p, p->line, "out of memory");
    cfg->issuers = ni;
    mcpauth_issuer *is = calloc(1, sizeof *is);
    if (!is || !(is->name = strdup(name))) {
        free(is);
        return fail(p, p->line, "out of memory");
    }
    is->line = p->line;
    is->discovery = 1;
    cfg->issuers[cfg->nissuers++] = is;
    p->kind = S_ISSUER;
    return 0;
}

static int open_policy(parser *p, const char *name)
{
    mcpauth_config *cfg = p->cfg;
    for (size_t i = 0; i < cfg->npolicies; i++)
        if (strcmp(cfg->policies[i]->name, name) == 0)
            return fail(p, p->line, "policy \"%s\" is already defined at line %u", name,
                        cfg->policies[i]->line);
    if (cfg->npolicies >= 4 * CONF_MAX_RESOURCES)
        return fail(p, p->line, "more than %d policies", 4 * CONF_MAX_RESOURCES);
    mcpauth_policy **np = realloc(cfg->policies, (cfg->npolicies + 1) * sizeof *np);
    if (!np)
        return fail(p, p->line, "out of memory");
    cfg->policies = np;
    mcpauth_policy *po = calloc(1, sizeof *po);
    if (!po || !(po->name = strdup(name))) {
        free(po);
        return fail(p, p->line, "out of memory");
    }
    po->line = p->line;
    cfg->policies[cfg->npolicies++] = po;
    p->kind = S_POLICY;
    return 0;
}

static int valid_section_name(const char *s)
{
    if (!*s || strlen(s) > 64)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
            return 0;
    return 1;
}

static int open_section(parser *p, char *line)
{
    size_t len = strlen(line);
    if (line[len - 1] != ']')
        return fail(p, p->line, "section header must end with \"]\"");
    line[len - 1] = '\0';
    char *inner = trim(line + 1);
    char shown[CONF_MAX_LINE + 1];
    snprintf(shown, sizeof shown, "%s", inner);
    char *sp = inner + strcspn(inner, " \t");
    char *name = trim(sp);
    if (*sp)
        *sp = '\0';
    int issuer = strcmp(inner, "issuer") == 0, policy = strcmp(inner, "policy") == 0;
    if (strcmp(inner, "authorization_server") == 0) {
        /* one built-in AS, so the name is optional */
        if (p->cfg->as)
            return fail(p, p->line, "[authorization_server] is already defined at line %u",
                        p->cfg->as->line);
        if (!(p->cfg->as = calloc(1, sizeof *p->cfg->as)))
            return fail(p, p->line, "out of memory");
        mcpauth_as_config *a = p->cfg->as;
        a->line = p->line;
        a->access_token_ttl = 600;
        a->refresh_token_ttl = 30 * 86400;
        a->code_ttl = 60;
        a->refresh_grace = 10;
        a->registration = 1;
        a->registration_limit = 20;
        a->cimd = 1;
        a->consent_remember = 1;
        p->seen = 0;
        p->kind = S_AS;
        return 0;
    }
    if (strcmp(inner, "resource") != 0 && !issuer && !policy)
        return fail(p, p->line,
                    "unknown section type \"[%s]\" (expected [resource NAME], [issuer NAME], "
                    "[policy NAME] or [authorization_server])",
                    shown);
    if (!valid_section_name(name))
        return fail(p, p->line, "[%s NAME] needs a name of letters, digits, \"_\", \"-\" or \".\"",
                    inner);
    mcpauth_config *cfg = p->cfg;
    p->seen = 0;
    if (issuer)
        return open_issuer(p, name);
    if (policy)
        return open_policy(p, name);
    p->kind = S_RESOURCE;
    for (size_t i = 0; i < cfg->nresources; i++)
        if (strcmp(cfg->resources[i].name, name) == 0)
            return fail(p, p->line, "resource \"%s\" is already defined at line %u", name,
                        cfg->resources[i].line);
    if (cfg->nresources >= CONF_MAX_RESOURCES)
        return fail(p, p->line, "more than %d resources", CONF_MAX_RESOURCES);
    mcpauth_resource *nr = realloc(cfg->resources, (cfg->nresources + 1) * sizeof *nr);
    unsigned *nl = realloc(p->uri_line, (cfg->nresources + 1) * sizeof *nl);
    if (nr)
        cfg->resources = nr;
    if (nl)
        p->uri_line = nl;
    if (!nr || !nl)
        return fail(p, p->line, "out of memory");
    mcpauth_resource *r = &cfg->resources[cfg->nresources++];
    memset(r, 0, sizeof *r);
    r->name = strdup(name);
    r->line = p->line;
    /* Defaults; mcpauth.conf(5) lists the same values. */
    r->rate_limit = 20;
    r->rate_burst = 40;
    r->rate_limit_address = 50;
    r->rate_burst_address = 100;
    p->uri_line[cfg->nresources - 1] = 0;
    return r->name ? 0 : fail(p, p->line, "out of memory");
}

static int set_key(parser *p, char *line)
{
    char *eq = strchr(line, '=');
    if (!eq)
        return fail(p, p->line, "expected \"key = value\" or \"[resource NAME]\"");
    *eq = '\0';
    char *key = trim(line), *val = trim(eq + 1);
    if (!*key)
        return fail(p, p->line, "expected \"key = value\" or \"[resource NAME]\"");
    mcpauth_config *cfg = p->cfg;
    const key_def *tab;
    void *base;
    char where[96];
    switch (p->kind) {
    case S_RESOURCE:
        tab = resource_keys;
        base = &cfg->resources[cfg->nresources - 1];
        snprintf(where, sizeof where, "in [resource %s]", cfg->resources[cfg->nresources - 1].name);
        break;
    case S_AS:
        tab = as_keys;
        base = cfg->as;
        snprintf(where, sizeof where, "in [authorization_server]");
        break;
    case S_POLICY:
        tab = policy_keys;
        base = cfg->policies[cfg->npolicies - 1];
        snprintf(where, sizeof where, "in [policy %s]", cfg->policies[cfg->npolicies - 1]->name);
        break;
    case S_ISSUER:
        tab = issuer_keys;
        base = cfg->issuers[cfg->nissuers - 1];
        snprintf(where, sizeof where, "in [issuer %s]", cfg->issuers[cfg->nissuers - 1]->name);
        break;
    default:
        tab = global_keys;
        base = cfg;
        snprintf(where, sizeof where, "in the global section");
        break;
    }
    size_t i;
    for (i = 0; tab[i].name; i++)
        if (strcmp(tab[i].name, key) == 0)
            break;
    if (!tab[i].name) {
        /* A section's key before any section is the commonest slip. */
        for (size_t j = 0; p->kind == S_GLOBAL && resource_keys[j].name; j++)
            if (strcmp(resource_keys[j].name, key) == 0)
                return fail(p, p->line, "key \"%s\" belongs in a [resource NAME] section", key);
        for (size_t j = 0; p->kind == S_GLOBAL && issuer_keys[j].name; j++)
            if (strcmp(issuer_keys[j].name, key) == 0)
                return fail(p, p->line, "key \"%s\" belongs in an [issuer NAME] section", key);
        return fail(p, p->line, "unknown key \"%s\" %s", key, where);
    }
    if (p->seen & (1ULL << i))
        return fail(p, p->line, "duplicate key \"%s\" %s", key, where);
    p->seen |= 1ULL << i;
    if (!*val)
        return fail(p, p->line, "%s: empty value", key);
    if (tab[i].type == K_URI)
        p->uri_line[cfg->nresources - 1] = p->line;
    if (tab[i].type == K_RESNAME)
        base = &p->g;
    return set_value(p, &tab[i], base, NULL, val);
}

static int join(char **out, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    *out = malloc(la + lb + 1);
    if (!*out)
        return -1;
    memcpy(*out, a, la);
    memcpy(*out + la, b, lb + 1);
    return 0;
}

static const mcpauth_issuer *issuer_for(parser *p, const char *id)
{
    mcpauth_config *cfg = p->cfg;
    for (size_t i = 0; i < cfg->nissuers; i++)
        if (strcmp(cfg->issuers[i]->issuer, id) == 0)
            return cfg->issuers[i];
    /* Not configured: defaults (discovery, JWT only). */
    mcpauth_issuer **ni = realloc(cfg->issuers, (cfg->nissuers + 1) * sizeof *ni);
    if (!ni)
        return NULL;
    cfg->issuers = ni;
    mcpauth_issuer *is = calloc(1, sizeof *is);
    if (!is || !(is->issuer = strdup(id))) {
        free(is);
        return NULL;
    }
    is->discovery = 1;
    cfg->issuers[cfg->nissuers++] = is;
    return is;
}

static int check_issuers(parser *p)
{
    mcpauth_config *cfg = p->cfg;
    for (size_t i = 0; i < cfg->nissuers; i++) {
        mcpauth_issuer *is = cfg->issuers[i];
        if (!is->issuer)
            return fail(p, is->line, "[issuer %s] is missing the required key \"issuer\"", is->name);
        if (is->jwks_file && is->jwks_uri)
            return fail(p, is->line, "[issuer %s]: set jwks_file or jwks_uri, not both", is->name);
        if (is->introspection_endpoint &&
            (!is->introspection_client_id || !is->introspection_client_secret))
            return fail(p, is->line,
                        "[issuer %s]: introspection_endpoint needs introspection_client_id and "
                        "introspection_client_secret",
                        is->name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->issuers[j]->issuer, is->issuer) == 0)
                return fail(p, is->line, "issuers \"%s\" and \"%s\" have the same issuer \"%s\"",
                            cfg->issuers[j]->name, is->name, is->issuer);
    }
    return 0;
}

static int check_scopes_subset(parser *p, const mcpauth_resource *r, const mcpauth_strlist *l)
{
    for (size_t s = 0; s < l->n; s++)
        if (r->scopes_supported.n && !mcpauth_strlist_has(&r->scopes_supported, l->v[s]))
            return fail(p, r->line, "[resource %s]: required scope \"%s\" is not in scopes_supported",
                        r->name, l->v[s]);
    return 0;
}

/* Whole-file checks: required keys, canonical URIs, duplicates, defaults. */
static int finish(parser *p)
{
    mcpauth_config *cfg = p->cfg;
    if (cfg->nresources == 0)
        return fail(p, 0, "no [resource NAME] section: nothing to protect");
    if (check_issuers(p) < 0)
        return -1;
    for (size_t i = 0; i < cfg->nresources; i++) {
        mcpauth_resource *r = &cfg->resources[i];
        if (!r->uri)
            return fail(p, r->line, "[resource %s] is missing the required key \"uri\"", r->name);
        if (r->authorization_servers.n == 0)
            return fail(p, r->line,
                        "[resource %s] is missing the required key \"authorization_servers\"",
                        r->name);
        const char *why;
        char *canon = mcpauth_uri_canonicalize(
            r->uri, r->trailing_slash ? MCPAUTH_URI_KEEP_SLASH : 0, &why);
        if (!canon)
            return fail(p, p->uri_line[i], "uri \"%s\" %s", r->uri, why);
        free(r->uri);
        r->uri = canon;
        if (r->trailing_slash && canon[strlen(canon) - 1] != '/')
            return fail(p, p->uri_line[i],
                        "trailing_slash = yes but uri \"%s\" does not end with \"/\"", canon);
        if (mcpauth_uri_split(canon, &r->origin, &r->path) < 0 ||
            join(&r->metadata_path, MCPAUTH_PRM_WELL_KNOWN, r->path) < 0 ||
            join(&r->metadata_url, r->origin, r->metadata_path) < 0 ||
            !(r->host = strdup(r->origin + strcspn(r->origin, ":") + 3)))
            return fail(p, r->line, "out of memory");
        if (check_scopes_subset(p, r, &r->scopes_required) < 0)
            return -1;
        for (int m = 0; m < 5; m++)
            if (check_scopes_subset(p, r, &r->scopes_required_method[m]) < 0)
                return -1;
        if ((!r->subject_header && !(r->subject_header = strdup("X-MCP-Subject"))) ||
            (!r->client_id_header && !(r->client_id_header = strdup("X-MCP-Client-Id"))) ||
            (!r->scope_header && !(r->scope_header = strdup("X-MCP-Scope"))))
            return fail(p, r->line, "out of memory");
        r->issuers = calloc(r->authorization_servers.n, sizeof *r->issuers);
        if (!r->issuers)
            return fail(p, r->line, "out of memory");
        for (size_t a = 0; a < r->authorization_servers.n; a++)
            if (!(r->issuers[a] = issuer_for(p, r->authorization_servers.v[a])))
                return fail(p, r->line, "out of memory");
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->resources[j].uri, r->uri) == 0)
                return fail(p, p->uri_line[i],
                            "resources \"%s\" and \"%s\" have the same uri \"%s\" (first at line %u)",
                            cfg->resources[j].name, r->name, r->uri, p->uri_line[j]);
    }
    if (!cfg->runtime_dir && !(cfg->runtime_dir = strdup(LOCALSTATEDIR "/lib/mcpauth")))
        return fail(p, 0, "out of memory");
    for (size_t i = 0; i < cfg->npolicies; i++) {
        mcpauth_policy *po = cfg->policies[i];
        if (!po->resource_name || !po->method || po->scopes.n == 0)
            return fail(p, po->line, "[policy %s] needs resource, method and scopes", po->name);
        if (!(po->resource = mcpauth_config_resource_by_name(cfg, po->resource_name)))
            return fail(p, po->line, "[policy %s]: no [resource %s] section", po->name,
                        po->resource_name);
        if (check_scopes_subset(p, po->resource, &po->scopes) < 0)
            return -1;
    }
    if (cfg->as) {
        mcpauth_as_config *a = cfg->as;
        if (!a->issuer || !a->state_dir)
            return fail(p, a->line, "[authorization_server] needs issuer and state_dir");
        if (!a->signing_alg && !(a->signing_alg = strdup("ES256")))
            return fail(p, a->line, "out of memory");
        if (!a->introspection_client_id != !a->introspection_client_secret)
            return fail(p, a->line, "[authorization_server]: introspection_client_id and "
                                    "introspection_client_secret go together");
        int used = 0;
        for (size_t i = 0; i < cfg->nresources; i++) {
            const mcpauth_resource *r = &cfg->resources[i];
            if (!mcpauth_strlist_has(&r->authorization_servers, a->issuer))
                continue;
            used = 1;
            for (size_t k = 0; k < r->scopes_supported.n; k++)
                if (!mcpauth_strlist_has(&a->scopes_supported, r->scopes_supported.v[k])) {
                    mcpauth_strlist one = {0, NULL};
                    if (mcpauth_strlist_split(&one, r->scopes_supported.v[k]) < 0)
                        return fail(p, a->line, "out of memory");
                    char **nv = realloc(a->scopes_supported.v,
                                        (a->scopes_supported.n + 2) * sizeof *nv);
                    if (!nv) {
                        mcpauth_strlist_free(&one);
                        return fail(p, a->line, "out of memory");
                    }
                    a->scopes_supported.v = nv;
                    a->scopes_supported.v[a->scopes_supported.n++] = one.v[0];
                    a->scopes_supported.v[a->scopes_supported.n] = NULL;
                    free(one.v);
                }
        }
        if (!used)
            return fail(p, a->line,
                        "[authorization_server]: no resource lists issuer \"%s\" in "
                        "authorization_servers", a->issuer);
    }
    if (p->g.default_resource) {
        cfg->default_resource = mcpauth_config_resource_by_name(cfg, p->g.default_resource);
        if (!cfg->default_resource)
            return fail(p, p->g_line_default, "default_resource: no [resource %s] section",
                        p->g.default_resource);
    }
    return 0;
}

mcpauth_config *mcpauth_config_parse(const char *text, size_t len, const char *name, char *err,
                                     size_t errlen)
{
    parser p;
    memset(&p, 0, sizeof p);
    p.file = name;
    p.err = err;
    p.errlen = errlen;
    p.cfg = calloc(1, sizeof *p.cfg);
    if (!p.cfg || !(p.cfg->file = strdup(name)) ||
        mcpauth_strlist_split(&p.cfg->jwt_algorithms, "RS256 ES256") < 0) {
        fail(&p, 0, "out of memory");
        goto bad;
    }
    /* Defaults; mcpauth.conf(5) lists the same values. */
    p.cfg->log_level = MCPAUTH_LOG_INFO;
    p.cfg->metadata_max_age = 3600;
    p.cfg->clock_leeway = 60;
    p.cfg->token_max_bytes = 8192;
    p.cfg->cache_entries = 10000;
    p.cfg->cache_ttl = 300;
    p.cfg->cache_negative_ttl = 10;
    p.cfg->jwks_min_refresh = 60;
    p.cfg->jwks_max_age = 3600;
    p.cfg->http_timeout = 5;
    p.cfg->max_body_bytes = 1 << 20;
    p.cfg->backend_timeout = 30;
    p.cfg->stream_idle_timeout = 300;
    p.cfg->session_ttl = 3600;
    p.cfg->proxy_threads = 16;
    if (memchr(text, '\0', len)) {
        fail(&p, 0, "contains a NUL byte; not a text file");
        goto bad;
    }
    const char *pos = text, *end = text + len;
    char line[CONF_MAX_LINE + 2];
    while (pos < end) {
        const char *nl = memchr(pos, '\n', (size_t)(end - pos));
        size_t ll = (size_t)((nl ? nl : end) - pos);
        p.line++;
        if (ll > CONF_MAX_LINE) {
            fail(&p, p.line, "line longer than %d bytes", CONF_MAX_LINE);
            goto bad;
        }
        memcpy(line, pos, ll);
        line[ll] = '\0';
        pos = nl ? nl + 1 : end;
        char *s = trim(line);
        for (char *c = s; *c; c++)
            if ((unsigned char)*c < 0x20 && *c != '\t') {
                fail(&p, p.line, "control character in line");
                goto bad;
            }
        if (*s == '\0' || *s == '#' || *s == ';')
            continue;
        if ((*s == '[' ? open_section(&p, s) : set_key(&p, s)) < 0)
            goto bad;
    }
    if (finish(&p) < 0)
        goto bad;
    free(p.g.default_resource);
    free(p.uri_line);
    return p.cfg;
bad:
    free(p.g.default_resource);
    free(p.uri_line);
    mcpauth_config_free(p.cfg);
    return NULL;
}

mcpauth_config *mcpauth_config_load(const char *file, char *err, size_t errlen)
{
    FILE *f = fopen(file, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", file, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", file);
        fclose(f);
        return NULL;
    }
    if (st.st_size > CONF_MAX_BYTES) {
        snprintf(err, errlen, "%s: larger than %d bytes", file, CONF_MAX_BYTES);
        fclose(f);
        return NULL;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    size_t n = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
    int rerr = !buf || ferror(f);
    fclose(f);
    if (rerr) {
        snprintf(err, errlen, "%s: cannot read: %s", file, buf ? strerror(errno) : "out of memory");
        free(buf);
        return NULL;
    }
    mcpauth_config *cfg = mcpauth_config_parse(buf, n, file, err, errlen);
    free(buf);
    return cfg;
}

static void resource_free(mcpauth_resource *r)
{
    free(r->name);
    free(r->uri);
    free(r->origin);
    free(r->path);
    free(r->host);
    free(r->metadata_path);
    free(r->metadata_url);
    free(r->resource_name);
    mcpauth_strlist_free(&r->authorization_servers);
    mcpauth_strlist_free(&r->scopes_supported);
    mcpauth_strlist_free(&r->scopes_required);
    for (int m = 0; m < 5; m++)
        mcpauth_strlist_free(&r->scopes_required_method[m]);
    mcpauth_strlist_free(&r->audiences);
    free(r->issuers);
    free(r->resource_documentation);
    free(r->resource_policy_uri);
    free(r->resource_tos_uri);
    free(r->backend);
    free(r->backend_socket);
    if (r->backend_authorization)
        OPENSSL_cleanse(r->backend_authorization, strlen(r->backend_authorization));
    free(r->backend_authorization);
    mcpauth_strlist_free(&r->allowed_origins);
    free(r->subject_header);
    free(r->client_id_header);
    free(r->scope_header);
}

void mcpauth_config_free(mcpauth_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->nresources; i++)
        resource_free(&cfg->resources[i]);
    free(cfg->resources);
    for (size_t i = 0; i < cfg->nissuers; i++) {
        mcpauth_issuer *is = cfg->issuers[i];
        free(is->name);
        free(is->issuer);
        free(is->jwks_file);
        free(is->jwks_uri);
        free(is->introspection_endpoint);
        free(is->introspection_client_id);
        if (is->introspection_client_secret) /* do not leave it in freed memory */
            OPENSSL_cleanse(is->introspection_client_secret, strlen(is->introspection_client_secret));
        free(is->introspection_client_secret);
        free(is);
    }
    free(cfg->issuers);
    for (size_t i = 0; i < cfg->npolicies; i++) {
        mcpauth_policy *po = cfg->policies[i];
        free(po->name);
        free(po->resource_name);
        free(po->method);
        free(po->target);
        mcpauth_strlist_free(&po->scopes);
        free(po);
    }
    free(cfg->policies);
    if (cfg->as) {
        mcpauth_as_config *a = cfg->as;
        free(a->issuer);
        free(a->state_dir);
        free(a->signing_alg);
        free(a->introspection_client_id);
        if (a->introspection_client_secret)
            OPENSSL_cleanse(a->introspection_client_secret, strlen(a->introspection_client_secret));
        free(a->introspection_client_secret);
        mcpauth_strlist_free(&a->scopes_supported);
        free(a);
    }
    free(cfg->runtime_dir);
    mcpauth_strlist_free(&cfg->jwt_algorithms);
    free(cfg->ca_file);
    free(cfg->file);
    free(cfg);
}

int mcpauth_method_index(const char *method)
{
    static const char *const names[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
    for (int i = 0; i < 5; i++)
        if (strcmp(method, names[i]) == 0)
            return i;
    return -1;
}

const mcpauth_resource *mcpauth_config_resource_by_name(const mcpauth_config *cfg,
                                                        const char *name)
{
    for (size_t i = 0; i < cfg->nresources; i++)
        if (strcmp(cfg->resources[i].name, name) == 0)
            return &cfg->resources[i];
    return NULL;
}

const mcpauth_resource *mcpauth_config_resource_by_uri(const mcpauth_config *cfg, const char *uri)
{
    for (size_t i = 0; i < cfg->nresources; i++)
        if (strcmp(cfg->resources[i].uri, uri) == 0)
            return &cfg->resources[i];
    return NULL;
}

const mcpauth_resource *mcpauth_config_resource_for_path(const mcpauth_config *cfg,
                                                         const char *path, const char *host)
{
    const mcpauth_resource *best = NULL;
    size_t best_len = 0;
    int best_host = 0;
    for (size_t i = 0; i < cfg->nresources; i++) {
        const mcpauth_resource *r = &cfg->resources[i];
        size_t n = strlen(r->path);
        /* "/mcp/files" covers "/mcp/files" and "/mcp/files/x", not "/mcp/filesx" */
        if (strncmp(path, r->path, n) != 0 ||
            !(path[n] == '\0' || path[n] == '/' || (n > 0 && r->path[n - 1] == '/')))
            continue;
        int host_match = host && strcasecmp(host, r->host) == 0;
        if (!best || n > best_len || (n == best_len && host_match && !best_host)) {
            best = r;
            best_len = n;
            best_host = host_match;
        }
    }
    return best;
}

const char *mcpauth_config_default_file(void)
{
    return SYSCONFDIR "/mcpauth/mcpauth.conf";
}
