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
#include <sys/stat.h>

#include <mcpauth/config.h>
#include <mcpauth/log.h>
#include <mcpauth/uri.h>

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
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
    K_URI       /* the canonical resource URI, resolved at section end */
} key_type;

typedef struct {
    const char *name;
    key_type type;
    size_t off;
    long min, max;
} key_def;

/* Values parsed into a scratch struct, so the tables can point at fields. */
typedef struct {
    int log_level;
    long metadata_max_age;
    char *default_resource;
} global_scratch;

#define G(f) offsetof(global_scratch, f)
#define R(f) offsetof(mcpauth_resource, f)

static const key_def global_keys[] = {
    {"log_level", K_LOGLEVEL, G(log_level), 0, 0},
    {"metadata_max_age", K_SECONDS, G(metadata_max_age), 0, 604800},
    {"default_resource", K_RESNAME, G(default_resource), 0, 0},
    {NULL, 0, 0, 0, 0},
};

static const key_def resource_keys[] = {
    {"uri", K_URI, R(uri), 0, 0},
    {"trailing_slash", K_BOOL, R(trailing_slash), 0, 0},
    {"resource_name", K_TEXT, R(resource_name), 0, 0},
    {"authorization_servers", K_ISSUERS, R(authorization_servers), 0, 0},
    {"scopes_supported", K_SCOPES, R(scopes_supported), 0, 0},
    {"scopes_required", K_SCOPES, R(scopes_required), 0, 0},
    {"resource_documentation", K_LINK, R(resource_documentation), 0, 0},
    {"resource_policy_uri", K_LINK, R(resource_policy_uri), 0, 0},
    {"resource_tos_uri", K_LINK, R(resource_tos_uri), 0, 0},
    {"backend", K_BACKEND, R(backend), 0, 0},
    {NULL, 0, 0, 0, 0},
};

typedef struct {
    const char *file;
    char *err;
    size_t errlen;
    unsigned line;
    mcpauth_config *cfg;
    global_scratch g;
    unsigned g_line_default; /* line of default_resource, for its error */
    unsigned *uri_line;      /* per resource: line of its uri key */
    unsigned char seen[CONF_MAX_RESOURCES + 1][16]; /* key seen, per section */
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
        if (strncmp(v, "unix:", 5) == 0) {
            if (v[5] != '/' || strlen(v + 5) >= 108)
                return fail(p, p->line,
                            "backend \"%s\" must be unix:/absolute/path (under 108 bytes)", v);
        } else if (!(canon = mcpauth_uri_canonicalize(
                         v, MCPAUTH_URI_KEEP_SLASH | MCPAUTH_URI_ALLOW_QUERY | MCPAUTH_URI_ANY_HTTP,
                         &why))) {
            return fail(p, p->line, "backend \"%s\" %s", v, why);
        } else {
            free(canon);
        }
        *(char **)field = strdup(v);
        break;
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
    }
    (void)section;
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
    if (strcmp(inner, "resource") != 0)
        return fail(p, p->line, "unknown section type \"[%s]\" (expected [resource NAME])",
                    shown);
    if (!valid_section_name(name))
        return fail(p, p->line,
                    "[resource NAME] needs a name of letters, digits, \"_\", \"-\" or \".\"");
    mcpauth_config *cfg = p->cfg;
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
    size_t sect = p->cfg->nresources; /* 0 = global, i+1 = resource i */
    const key_def *tab = sect ? resource_keys : global_keys;
    mcpauth_resource *res = sect ? &p->cfg->resources[sect - 1] : NULL;
    char where[96];
    if (res)
        snprintf(where, sizeof where, "in [resource %s]", res->name);
    else
        snprintf(where, sizeof where, "in the global section");
    size_t i;
    for (i = 0; tab[i].name; i++)
        if (strcmp(tab[i].name, key) == 0)
            break;
    if (!tab[i].name) {
        /* A resource key before any section is the commonest slip. */
        for (size_t j = 0; !sect && resource_keys[j].name; j++)
            if (strcmp(resource_keys[j].name, key) == 0)
                return fail(p, p->line, "key \"%s\" belongs in a [resource NAME] section", key);
        return fail(p, p->line, "unknown key \"%s\" %s", key, where);
    }
    if (p->seen[sect][i])
        return fail(p, p->line, "duplicate key \"%s\" %s", key, where);
    p->seen[sect][i] = 1;
    if (!*val)
        return fail(p, p->line, "%s: empty value", key);
    if (tab[i].type == K_URI)
        p->uri_line[sect - 1] = p->line;
    return set_value(p, &tab[i], res ? (void *)res : (void *)&p->g, res ? res->name : NULL,
                     val);
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

/* Whole-file checks: required keys, canonical URIs, duplicates, defaults. */
static int finish(parser *p)
{
    mcpauth_config *cfg = p->cfg;
    if (cfg->nresources == 0)
        return fail(p, 0, "no [resource NAME] section: nothing to protect");
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
        for (size_t s = 0; s < r->scopes_required.n; s++)
            if (r->scopes_supported.n && !mcpauth_strlist_has(&r->scopes_supported,
                                                              r->scopes_required.v[s]))
                return fail(p, r->line,
                            "[resource %s]: required scope \"%s\" is not in scopes_supported",
                            r->name, r->scopes_required.v[s]);
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->resources[j].uri, r->uri) == 0)
                return fail(p, p->uri_line[i],
                            "resources \"%s\" and \"%s\" have the same uri \"%s\" (first at line %u)",
                            cfg->resources[j].name, r->name, r->uri, p->uri_line[j]);
    }
    if (p->g.default_resource) {
        cfg->default_resource = mcpauth_config_resource_by_name(cfg, p->g.default_resource);
        if (!cfg->default_resource)
            return fail(p, p->g_line_default, "default_resource: no [resource %s] section",
                        p->g.default_resource);
    }
    cfg->log_level = p->g.log_level;
    cfg->metadata_max_age = p->g.metadata_max_age;
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
    p.g.log_level = MCPAUTH_LOG_INFO;
    p.g.metadata_max_age = 3600;
    p.cfg = calloc(1, sizeof *p.cfg);
    if (!p.cfg || !(p.cfg->file = strdup(name))) {
        fail(&p, 0, "out of memory");
        goto bad;
    }
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
    free(r->resource_documentation);
    free(r->resource_policy_uri);
    free(r->resource_tos_uri);
    free(r->backend);
}

void mcpauth_config_free(mcpauth_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->nresources; i++)
        resource_free(&cfg->resources[i]);
    free(cfg->resources);
    free(cfg->file);
    free(cfg);
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

const char *mcpauth_config_default_file(void)
{
    return SYSCONFDIR "/mcpauth/mcpauth.conf";
}
