/* mcpauth.conf parser.  INI style: global "key = value" lines, then one
 * [resource NAME] section per protected MCP server.  Table driven: adding a
 * key means one row in the tables below (its value handler and limits) and
 * one paragraph in mcpauth.conf(5).  Any defect stops start-up with
 * "FILE:LINE: problem". */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <mcpauth/config.h>
#include <mcpauth/log.h>
#include "uri.h"

#include "alloc.h"
#include "metrics.h"
#include "state.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#ifndef LOCALSTATEDIR
#define LOCALSTATEDIR "/var"
#endif

#define CONF_MAX_BYTES (1 << 20)
#define CONF_MAX_LINE 4096
#define CONF_MAX_RESOURCES 256

typedef enum { S_GLOBAL, S_RESOURCE, S_ISSUER, S_POLICY, S_AS } section_kind;

/* Values parsed into a scratch struct, so the tables can point at fields. */
typedef struct {
    char *default_resource;
} global_scratch;

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

/* ------------------------------------------------------- value handlers */

typedef struct key_def key_def;

/* Checks value v of key k and stores it in its field of base (the struct
 * of the section being read); -1 after fail(). */
typedef int (*value_fn)(parser *p, const key_def *k, void *base, const char *v);

struct key_def {
    const char *name;
    value_fn set;
    size_t off;       /* of the field in base */
    long min, max;    /* set_number: the range; set_text: max is the longest value */
    unsigned flags;   /* URL kinds: MCPAUTH_URI_*; set_path: S_IFREG or S_IFDIR */
};

static void *field_of(const key_def *k, void *base)
{
    return (char *)base + k->off;
}

static int store_str(const key_def *k, void *base, const char *v)
{
    char **field = field_of(k, base);
    free(*field); /* a default (shared_state = shm), or the key given twice */
    *field = mcpauth__xstrdup(v);
    return 0;
}

/* Kept verbatim up to k->max characters; never quoted in a message, so
 * secrets use it too. */
static int set_text(parser *p, const key_def *k, void *base, const char *v)
{
    if (strlen(v) > (size_t)k->max)
        return fail(p, p->line, "%s: longer than %ld characters", k->name, k->max);
    return store_str(k, base, v);
}

/* Kept as written once mcpauth__uri_canonicalize() accepts it under the
 * kind of URL the row names (k->flags). */
static int set_url(parser *p, const key_def *k, void *base, const char *v)
{
    const char *why;
    char *canon = mcpauth__uri_canonicalize(v, k->flags, &why);
    if (!canon)
        return fail(p, p->line, "%s \"%s\" %s", k->name, v, why);
    free(canon);
    return store_str(k, base, v);
}

/* Canonicalized at the end of the section, once trailing_slash is known;
 * rejecting obvious garbage now still names the right line. */
static int set_resource_uri(parser *p, const key_def *k, void *base, const char *v)
{
    p->uri_line[p->cfg->nresources - 1] = p->line;
    return set_url(p, k, base, v);
}

static int set_socket(parser *p, const key_def *k, void *base, const char *v)
{
    if (v[0] != '/' || strlen(v) >= 108) /* sun_path */
        return fail(p, p->line, "%s \"%s\" must be an absolute path under 108 bytes", k->name, v);
    return store_str(k, base, v);
}

/* An absolute path to a regular file or a directory (k->flags: S_IFREG or
 * S_IFDIR).  A file must exist; a directory may not yet (mcpauth init
 * makes it), but must not be anything else. */
static int set_path(parser *p, const key_def *k, void *base, const char *v)
{
    struct stat st;
    int dir = k->flags == S_IFDIR;
    if (v[0] != '/')
        return fail(p, p->line, "%s \"%s\" must be an absolute path", k->name, v);
    if (stat(v, &st) < 0) {
        if (!dir)
            return fail(p, p->line, "%s \"%s\": %s", k->name, v, strerror(errno));
    } else if ((st.st_mode & S_IFMT) != k->flags) {
        return fail(p, p->line, "%s \"%s\" is not a %s", k->name, v,
                    dir ? "directory" : "regular file");
    }
    return store_str(k, base, v);
}

/* A PEM CA bundle: a regular file holding at least one certificate. */
static int set_ca_bundle(parser *p, const key_def *k, void *base, const char *v)
{
    if (set_path(p, k, base, v) < 0)
        return -1;
    FILE *f = fopen(v, "r");
    X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    int err = errno;
    if (f)
        fclose(f);
    if (!x)
        return fail(p, p->line, "%s \"%s\": %s", k->name, v,
                    f ? "no PEM certificate in it" : strerror(err));
    X509_free(x);
    return 0;
}

/* A private key file: readable now (the programs read it as they run) and
 * not by every user of the host.  Parsed with its certificate by finish(). */
static int set_key_file(parser *p, const key_def *k, void *base, const char *v)
{
    if (set_path(p, k, base, v) < 0)
        return -1;
    struct stat st;
    int fd = open(v, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        return fail(p, p->line, "%s \"%s\": %s", k->name, v, strerror(err));
    }
    close(fd);
    if (st.st_mode & (S_IROTH | S_IWOTH))
        return fail(p, p->line, "%s \"%s\" is readable by every user: chmod o-rw it (600, or "
                    "640 with the web server's group)", k->name, v);
    return 0;
}

/* CURLOPT_PINNEDPUBLICKEY's hash form: "sha256//" and the base64 SHA-256 of
 * the certificate's public key, several separated by ";". */
static int set_pins(parser *p, const key_def *k, void *base, const char *v)
{
    for (const char *s = v; *s;) {
        size_t n = strcspn(s, ";"), b = 0;
        if (n == 8 + 44 && strncmp(s, "sha256//", 8) == 0)
            while (b < 43 && (isalnum((unsigned char)s[8 + b]) || s[8 + b] == '+' ||
                              s[8 + b] == '/'))
                b++;
        if (b != 43 || s[8 + 43] != '=')
            return fail(p, p->line, "%s: \"%.*s\" is not sha256// and a base64 SHA-256 (44 "
                        "characters, e.g. from `openssl x509 -pubkey -noout | openssl pkey "
                        "-pubin -outform der | openssl dgst -sha256 -binary | base64`)",
                        k->name, (int)(n > 80 ? 80 : n), s);
        s += n;
        if (*s == ';')
            s++;
    }
    return store_str(k, base, v);
}

/* A header the proxy sets towards the backend (identity, client, scope). */
static int set_header(parser *p, const key_def *k, void *base, const char *v)
{
    for (const char *c = v; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '-')
            return fail(p, p->line, "%s: \"%s\" is not a header name", k->name, v);
    if (!strcasecmp(v, "Authorization") || !strcasecmp(v, "Cookie") || !strcasecmp(v, "Host") ||
        !strcasecmp(v, "Content-Length") || !strcasecmp(v, "Transfer-Encoding"))
        return fail(p, p->line, "%s: \"%s\" cannot carry the identity", k->name, v);
    return store_str(k, base, v);
}

static int set_signing_alg(parser *p, const key_def *k, void *base, const char *v)
{
    if (strcmp(v, "ES256") != 0 && strcmp(v, "RS256") != 0)
        return fail(p, p->line, "%s: \"%s\" is not ES256 or RS256", k->name, v);
    return store_str(k, base, v);
}

static int set_log_level(parser *p, const key_def *k, void *base, const char *v)
{
    int l = mcpauth_log_level_parse(v);
    if (l < 0)
        return fail(p, p->line, "%s: \"%s\" is not error, warn, info or debug", k->name, v);
    *(int *)field_of(k, base) = l;
    return 0;
}

/* log = stderr | syslog | file:PATH (an absolute path, opened by each
 * program at start-up: see mcpauth_log_open). */
static int set_log_dest(parser *p, const key_def *k, void *base, const char *v)
{
    int *dest = field_of(k, base);
    if (!strcmp(v, "stderr")) {
        *dest = MCPAUTH_LOG_STDERR;
    } else if (!strcmp(v, "syslog")) {
        *dest = MCPAUTH_LOG_SYSLOG;
    } else if (!strncmp(v, "file:", 5)) {
        const char *path = v + 5;
        struct stat st;
        if (path[0] != '/')
            return fail(p, p->line, "%s: \"%s\" must be an absolute path", k->name, path);
        if (path[strlen(path) - 1] == '/' || (stat(path, &st) == 0 && S_ISDIR(st.st_mode)))
            return fail(p, p->line, "%s: \"%s\" is a directory", k->name, path);
        *dest = MCPAUTH_LOG_FILE;
        p->cfg->log_file = mcpauth__xstrdup(path);
    } else {
        return fail(p, p->line, "%s: \"%s\" is not stderr, syslog or file:PATH", k->name, v);
    }
    return 0;
}

static int set_facility(parser *p, const key_def *k, void *base, const char *v)
{
    static const struct {
        const char *name;
        int code;
    } names[] = {{"auth", LOG_AUTH},     {"authpriv", LOG_AUTHPRIV}, {"daemon", LOG_DAEMON},
                 {"user", LOG_USER},     {"local0", LOG_LOCAL0},     {"local1", LOG_LOCAL1},
                 {"local2", LOG_LOCAL2}, {"local3", LOG_LOCAL3},     {"local4", LOG_LOCAL4},
                 {"local5", LOG_LOCAL5}, {"local6", LOG_LOCAL6},     {"local7", LOG_LOCAL7}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(v, names[i].name)) {
            *(int *)field_of(k, base) = names[i].code;
            return 0;
        }
    return fail(p, p->line, "%s: \"%s\" is not auth, authpriv, daemon, user or local0 to local7",
                k->name, v);
}

/* The syslog daemon's socket: an absolute path short enough for a Unix
 * socket address; it need not exist yet (the daemon may start later). */
static int set_syslog_socket(parser *p, const key_def *k, void *base, const char *v)
{
    if (v[0] != '/')
        return fail(p, p->line, "%s \"%s\" must be an absolute path", k->name, v);
    if (strlen(v) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return fail(p, p->line, "%s \"%s\" is too long for a socket address", k->name, v);
    return store_str(k, base, v);
}

static int set_bool(parser *p, const key_def *k, void *base, const char *v)
{
    int *field = field_of(k, base);
    if (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "on") || !strcmp(v, "1"))
        *field = 1;
    else if (!strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "off") || !strcmp(v, "0"))
        *field = 0;
    else
        return fail(p, p->line, "%s: \"%s\" is not yes or no", k->name, v);
    return 0;
}

/* yes | no | auto: 1, 0, -1 (the program decides, e.g. by how it runs). */
/* metrics_path: an absolute path of plain characters (the web server
 * routes it to mcpauth-metadata), or "off". */
static int set_metrics_path(parser *p, const key_def *k, void *base, const char *v)
{
    char **field = field_of(k, base);
    free(*field);
    *field = NULL;
    if (!strcmp(v, "off") || !strcmp(v, "no"))
        return 0;
    size_t n = strlen(v);
    int ok = v[0] == '/' && n > 1 && n <= 200 && !strstr(v, "//") && !strstr(v, "/.");
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)v[i]) || strchr("/-_.~", v[i]);
    if (!ok)
        return fail(p, p->line, "%s: \"%s\" is not a plain absolute path (or off)", k->name, v);
    *field = mcpauth__xstrdup(v);
    return 0;
}

/* metrics_allow: addresses and networks, IPv4 or IPv6, "ADDR[/BITS]". */
static int set_metrics_allow(parser *p, const key_def *k, void *base, const char *v)
{
    mcpauth_strlist *l = field_of(k, base);
    mcpauth_strlist_free(l);
    mcpauth_strlist_split(l, v);
    if (!l->n)
        return fail(p, p->line, "%s: empty (list one address or network at least)", k->name);
    for (size_t i = 0; i < l->n; i++)
        if (!mcpauth__cidr_valid(l->v[i]))
            return fail(p, p->line, "%s: \"%s\" is not an address or ADDRESS/BITS", k->name,
                        l->v[i]);
    return 0;
}

static int set_tristate(parser *p, const key_def *k, void *base, const char *v)
{
    if (!strcmp(v, "auto")) {
        *(int *)field_of(k, base) = -1;
        return 0;
    }
    if (set_bool(p, k, base, v) != 0)
        return fail(p, p->line, "%s: \"%s\" is not yes, no or auto", k->name, v);
    return 0;
}

/* v as a message may quote it: the userinfo of a URL and everything from
 * "password" on (a conninfo's password=..., a URI's ?password=...) masked. */
static void masked(const char *v, char *buf, size_t cap)
{
    mcpauth__redis_mask(v, buf, cap);
    for (char *q = buf; *q; q++)
        if (!strncasecmp(q, "password", 8)) {
            snprintf(q, cap - (size_t)(q - buf), "password=***");
            break;
        }
}

/* store = sqlite | postgresql://... | postgres://... | libpq key=value
 * conninfo ("host=db1 dbname=mcpauth ...").  Handed to libpq as is (its
 * sslmode, passfile and the rest apply); refused when this build has no
 * PostgreSQL support, so the mistake shows at start, not at first use. */
static int set_store(parser *p, const key_def *k, void *base, const char *v)
{
    if (!strcmp(v, "sqlite"))
        return store_str(k, base, v);
    int pg = !strncmp(v, "postgresql://", 13) || !strncmp(v, "postgres://", 11) ||
             (strchr(v, '=') && !strchr(v, '\n'));
    char shown[300];
    masked(v, shown, sizeof shown);
    if (!pg)
        return fail(p, p->line, "%s: \"%s\" is not sqlite, a postgresql:// URI or a libpq "
                    "key=value string", k->name, shown);
#ifndef HAVE_LIBPQ
    return fail(p, p->line, "%s: this build has no PostgreSQL support (configure --with-postgresql)",
                k->name);
#else
    return store_str(k, base, v);
#endif
}

/* shared_state = shm | redis://[:PASSWORD@]HOST[:PORT][/DB] | unix:/PATH[?db=N] */
static int set_shared_state(parser *p, const key_def *k, void *base, const char *v)
{
    if (!strcmp(v, "shm"))
        return store_str(k, base, v);
    char shown[300];
    masked(v, shown, sizeof shown);
    if (strncmp(v, "redis://", 8) != 0 && strncmp(v, "unix:/", 6) != 0)
        return fail(p, p->line, "%s: \"%s\" is not shm, redis://HOST[:PORT][/DB] or unix:/PATH",
                    k->name, shown);
#ifndef HAVE_HIREDIS
    return fail(p, p->line, "%s: this build has no Redis support (configure --with-redis)", k->name);
#else
    /* parsed now, so --check shows a bad address (its messages mask the
     * password, as every later one does) */
    char why[512];
    if (mcpauth__redis_check_url(v, why, sizeof why) < 0)
        return fail(p, p->line, "%s: %s", k->name, why);
    return store_str(k, base, v);
#endif
}

/* open | closed: what a request meets when the shared state cannot be
 * reached (1: refused). */
static int set_fail_policy(parser *p, const key_def *k, void *base, const char *v)
{
    if (strcmp(v, "open") != 0 && strcmp(v, "closed") != 0)
        return fail(p, p->line, "%s: \"%s\" is not open or closed", k->name, v);
    *(int *)field_of(k, base) = !strcmp(v, "closed");
    return 0;
}

/* Seconds, bytes or counts: a plain decimal within [k->min, k->max]. */
static int set_number(parser *p, const key_def *k, void *base, const char *v)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (!isdigit((unsigned char)*v) || *end || errno || n < k->min || n > k->max)
        return fail(p, p->line, "%s: \"%s\" is not a whole number from %ld to %ld", k->name, v,
                    k->min, k->max);
    *(long *)field_of(k, base) = n;
    return 0;
}

/* A [resource] name, resolved by finish() once every section is read. */
static int set_resource_name(parser *p, const key_def *k, void *base, const char *v)
{
    (void)base; /* the config has a pointer there, not a name */
    p->g_line_default = p->line;
    return store_str(k, &p->g, v);
}

/* The space-separated words of v in the list field (empty until now: a
 * key is never set twice). */
static mcpauth_strlist *split_into(const key_def *k, void *base, const char *v)
{
    mcpauth_strlist *l = field_of(k, base);
    mcpauth_strlist_split(l, v);
    return l;
}

static int set_words(parser *p, const key_def *k, void *base, const char *v)
{
    (void)p;
    split_into(k, base, v);
    return 0;
}

static int set_scopes(parser *p, const key_def *k, void *base, const char *v)
{
    const mcpauth_strlist *l = split_into(k, base, v);
    for (size_t i = 0; i < l->n; i++)
        for (const char *c = l->v[i]; *c; c++)
            if (!is_scope_char((unsigned char)*c))
                return fail(p, p->line, "%s: \"%s\" is not a valid scope token", k->name, l->v[i]);
    return 0;
}

/* Issuers are compared byte for byte with the AS metadata (RFC 8414
 * §3.3), so they are checked here but never rewritten. */
static int set_issuers(parser *p, const key_def *k, void *base, const char *v)
{
    const mcpauth_strlist *l = split_into(k, base, v);
    if (l->n == 0)
        return fail(p, p->line, "%s: empty list", k->name);
    for (size_t i = 0; i < l->n; i++) {
        const char *why;
        char *canon = mcpauth__uri_canonicalize(l->v[i], k->flags, &why);
        if (!canon)
            return fail(p, p->line, "%s: \"%s\" %s", k->name, l->v[i], why);
        free(canon);
    }
    return 0;
}

/* An Origin is scheme://host[:port], compared after the same
 * canonicalization as resource URIs, so it is stored canonical. */
static int set_origins(parser *p, const key_def *k, void *base, const char *v)
{
    mcpauth_strlist *l = split_into(k, base, v);
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->v[i], "*") == 0)
            continue;
        char *canon = mcpauth__uri_canonicalize(l->v[i], MCPAUTH_URI_ANY_HTTP, NULL);
        if (!canon || strchr(strstr(canon, "://") + 3, '/')) {
            free(canon);
            return fail(p, p->line, "%s: \"%s\" is not an origin (scheme://host[:port])", k->name,
                        l->v[i]);
        }
        free(l->v[i]);
        l->v[i] = canon;
    }
    return 0;
}

static int set_algorithms(parser *p, const key_def *k, void *base, const char *v)
{
    static const char *const known[] = {"RS256", "RS384", "RS512", "PS256", "PS384",
                                        "PS512", "ES256", "ES384", "ES512", NULL};
    mcpauth_strlist_free(field_of(k, base)); /* replaces the default */
    const mcpauth_strlist *l = split_into(k, base, v);
    for (size_t i = 0; i < l->n; i++) {
        size_t j;
        for (j = 0; known[j] && strcmp(known[j], l->v[i]) != 0; j++)
            ;
        if (!known[j])
            return fail(p, p->line,
                        "%s: \"%s\" is not one of RS256 RS384 RS512 PS256 PS384 PS512 ES256 "
                        "ES384 ES512 (\"none\" and HMAC are never accepted)",
                        k->name, l->v[i]);
    }
    return 0;
}

/* ---------------------------------------------------------------- tables */

/* The kinds of URL (mcpauth__uri_canonicalize flags). */
#define U_ISSUER MCPAUTH_URI_KEEP_SLASH                          /* an issuer identifier */
#define U_LINK (MCPAUTH_URI_KEEP_SLASH | MCPAUTH_URI_ALLOW_QUERY) /* for people: documentation */
#define U_FETCH U_LINK                       /* fetched by mcpauth: https, or http to loopback */
#define U_BACKEND (U_LINK | MCPAUTH_URI_ANY_HTTP)                 /* the MCP server behind */

/* Row forms: a handler alone, or with its limits. */
#define KEY(n, fn, f) {n, fn, f, 0, 0, 0}
#define TEXT(n, f, longest) {n, set_text, f, 0, longest, 0}
#define NUMBER(n, f, lo, hi) {n, set_number, f, lo, hi, 0}
#define URL(n, fn, f, kind) {n, fn, f, 0, 0, kind}
#define PATH(n, f, type) {n, set_path, f, 0, 0, type}
#define FILE_KEY(n, fn, f) {n, fn, f, 0, 0, S_IFREG} /* set_path and more checks */
#define END {NULL, NULL, 0, 0, 0, 0}

#define TEXT_MAX 200   /* names and client IDs */
#define GLOB_MAX 256   /* fnmatch(3) patterns */
#define SECRET_MAX 512 /* client secrets, backend credentials */

#define G(f) offsetof(global_scratch, f)
#define C(f) offsetof(mcpauth_config, f)
#define R(f) offsetof(mcpauth_resource, f)
#define I(f) offsetof(mcpauth_issuer, f)
#define A(f) offsetof(mcpauth_as_config, f)
#define P(f) offsetof(mcpauth_policy, f)

/* Global keys live in the config itself, except default_resource, which
 * finish() resolves to a pointer (its handler stores into the scratch). */
static const key_def global_keys[] = {
    KEY("log_level", set_log_level, C(log_level)),
    KEY("log", set_log_dest, C(log_dest)),
    KEY("log_facility", set_facility, C(log_facility)),
    KEY("log_security_facility", set_facility, C(log_security_facility)),
    KEY("log_syslog_socket", set_syslog_socket, C(log_syslog_socket)),
    NUMBER("metadata_max_age", C(metadata_max_age), 0, 604800),
    KEY("default_resource", set_resource_name, G(default_resource)),
    KEY("jwt_algorithms", set_algorithms, C(jwt_algorithms)),
    NUMBER("clock_leeway", C(clock_leeway), 0, 600),
    NUMBER("token_max_bytes", C(token_max_bytes), 256, 65536),
    NUMBER("cache_entries", C(cache_entries), 0, 1000000),
    NUMBER("cache_ttl", C(cache_ttl), 1, 3600),
    NUMBER("cache_negative_ttl", C(cache_negative_ttl), 0, 300),
    KEY("shared_cache", set_tristate, C(shared_cache)),
    NUMBER("jwks_min_refresh", C(jwks_min_refresh), 1, 86400),
    NUMBER("jwks_max_age", C(jwks_max_age), 60, 604800),
    NUMBER("http_timeout", C(http_timeout), 1, 60),
    PATH("ca_file", C(ca_file), S_IFREG),
    NUMBER("max_body_bytes", C(max_body_bytes), 1024, 64 << 20),
    NUMBER("backend_timeout", C(backend_timeout), 1, 3600),
    NUMBER("stream_idle_timeout", C(stream_idle_timeout), 1, 86400),
    NUMBER("stream_heartbeat", C(stream_heartbeat), 0, 3600),
    NUMBER("session_ttl", C(session_ttl), 60, 604800),
    NUMBER("proxy_threads", C(proxy_threads), 1, 256),
    NUMBER("proxy_max_threads", C(proxy_max_threads), 1, 16384),
    NUMBER("proxy_reserve_threads", C(proxy_reserve_threads), 0, 1024),
    PATH("runtime_dir", C(runtime_dir), S_IFDIR),
    /* bounded well below shm.c's host-wide table of in-flight requests */
    NUMBER("max_concurrent_per_caller", C(max_concurrent_per_caller), 0, 256),
    KEY("metrics", set_bool, C(metrics)),
    KEY("metrics_path", set_metrics_path, C(metrics_path)),
    KEY("metrics_allow", set_metrics_allow, C(metrics_allow)),
    KEY("shared_state", set_shared_state, C(shared_state)),
    NUMBER("shared_state_timeout", C(shared_state_timeout), 10, 10000),
    KEY("shared_state_fail_rate", set_fail_policy, C(shared_state_fail_rate)),
    KEY("shared_state_fail_sessions", set_fail_policy, C(shared_state_fail_sessions)),
    END,
};

static const key_def as_keys[] = {
    URL("issuer", set_url, A(issuer), U_ISSUER),
    PATH("state_dir", A(state_dir), S_IFDIR),
    KEY("store", set_store, A(store)),
    KEY("signing_alg", set_signing_alg, A(signing_alg)),
    NUMBER("access_token_ttl", A(access_token_ttl), 30, 86400),
    NUMBER("refresh_token_ttl", A(refresh_token_ttl), 60, 31536000),
    NUMBER("code_ttl", A(code_ttl), 10, 600),
    NUMBER("refresh_grace", A(refresh_grace), 0, 300),
    KEY("registration", set_bool, A(registration)),
    NUMBER("registration_limit", A(registration_limit), 1, 100000),
    KEY("client_id_metadata_documents", set_bool, A(cimd)),
    KEY("cimd_allow_private", set_bool, A(cimd_allow_private)),
    KEY("consent_remember", set_bool, A(consent_remember)),
    TEXT("introspection_client_id", A(introspection_client_id), TEXT_MAX),
    TEXT("introspection_client_secret", A(introspection_client_secret), SECRET_MAX),
    END,
};

static const key_def policy_keys[] = {
    TEXT("resource", P(resource_name), TEXT_MAX),
    TEXT("method", P(method), GLOB_MAX),
    TEXT("name", P(target), GLOB_MAX),
    KEY("scopes", set_scopes, P(scopes)),
    END,
};

static const key_def issuer_keys[] = {
    URL("issuer", set_url, I(issuer), U_ISSUER),
    PATH("jwks_file", I(jwks_file), S_IFREG),
    URL("jwks_uri", set_url, I(jwks_uri), U_FETCH),
    KEY("discovery", set_bool, I(discovery)),
    URL("introspection_endpoint", set_url, I(introspection_endpoint), U_FETCH),
    TEXT("introspection_client_id", I(introspection_client_id), TEXT_MAX),
    TEXT("introspection_client_secret", I(introspection_client_secret), SECRET_MAX),
    KEY("require_typ", set_bool, I(require_typ)),
    END,
};

static const key_def resource_keys[] = {
    URL("uri", set_resource_uri, R(uri), MCPAUTH_URI_KEEP_SLASH),
    KEY("trailing_slash", set_bool, R(trailing_slash)),
    TEXT("resource_name", R(resource_name), TEXT_MAX),
    URL("authorization_servers", set_issuers, R(authorization_servers), U_ISSUER),
    KEY("scopes_supported", set_scopes, R(scopes_supported)),
    KEY("scopes_required", set_scopes, R(scopes_required)),
    KEY("scopes_required_get", set_scopes, R(scopes_required_method[0])),
    KEY("scopes_required_post", set_scopes, R(scopes_required_method[1])),
    KEY("scopes_required_put", set_scopes, R(scopes_required_method[2])),
    KEY("scopes_required_patch", set_scopes, R(scopes_required_method[3])),
    KEY("scopes_required_delete", set_scopes, R(scopes_required_method[4])),
    KEY("audiences", set_words, R(audiences)),
    URL("resource_documentation", set_url, R(resource_documentation), U_LINK),
    URL("resource_policy_uri", set_url, R(resource_policy_uri), U_LINK),
    URL("resource_tos_uri", set_url, R(resource_tos_uri), U_LINK),
    URL("backend", set_url, R(backend), U_BACKEND),
    KEY("backend_socket", set_socket, R(backend_socket)),
    FILE_KEY("backend_ca_file", set_ca_bundle, R(backend_ca_file)),
    PATH("backend_client_cert", R(backend_client_cert), S_IFREG),
    FILE_KEY("backend_client_key", set_key_file, R(backend_client_key)),
    KEY("backend_pinned_pubkey", set_pins, R(backend_pinned_pubkey)),
    URL("resource_metadata_url", set_url, R(metadata_url), MCPAUTH_URI_KEEP_SLASH),
    TEXT("backend_authorization", R(backend_authorization), SECRET_MAX),
    KEY("allowed_origins", set_origins, R(allowed_origins)),
    KEY("subject_header", set_header, R(subject_header)),
    KEY("client_id_header", set_header, R(client_id_header)),
    KEY("scope_header", set_header, R(scope_header)),
    KEY("forward_cookies", set_bool, R(forward_cookies)),
    NUMBER("rate_limit", R(rate_limit), 0, 100000),
    NUMBER("rate_burst", R(rate_burst), 1, 100000),
    NUMBER("rate_limit_address", R(rate_limit_address), 0, 100000),
    NUMBER("rate_burst_address", R(rate_burst_address), 1, 100000),
    NUMBER("max_concurrent_per_caller", R(max_concurrent_per_caller), 0, 256),
    END,
};

static int open_issuer(parser *p, const char *name)
{
    mcpauth_config *cfg = p->cfg;
    for (size_t i = 0; i < cfg->nissuers; i++)
        if (strcmp(cfg->issuers[i]->name, name) == 0)
            return fail(p, p->line, "issuer \"%s\" is already defined at line %u", name,
                        cfg->issuers[i]->line);
    if (cfg->nissuers >= CONF_MAX_RESOURCES)
        return fail(p, p->line, "more than %d issuers", CONF_MAX_RESOURCES);
    cfg->issuers = mcpauth__xrealloc(cfg->issuers, (cfg->nissuers + 1) * sizeof *cfg->issuers);
    mcpauth_issuer *is = mcpauth__xcalloc(1, sizeof *is);
    is->name = mcpauth__xstrdup(name);
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
    cfg->policies = mcpauth__xrealloc(cfg->policies, (cfg->npolicies + 1) * sizeof *cfg->policies);
    mcpauth_policy *po = mcpauth__xcalloc(1, sizeof *po);
    po->name = mcpauth__xstrdup(name);
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
        p->cfg->as = mcpauth__xcalloc(1, sizeof *p->cfg->as);
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
    cfg->resources =
        mcpauth__xrealloc(cfg->resources, (cfg->nresources + 1) * sizeof *cfg->resources);
    p->uri_line = mcpauth__xrealloc(p->uri_line, (cfg->nresources + 1) * sizeof *p->uri_line);
    mcpauth_resource *r = &cfg->resources[cfg->nresources++];
    memset(r, 0, sizeof *r);
    r->name = mcpauth__xstrdup(name);
    r->line = p->line;
    /* Defaults; mcpauth.conf(5) lists the same values. */
    /* Never in a well-behaved client's way: the MCP conformance suite, run
     * twice at full speed with one token, sends about 250 requests in 2 s
     * (bench/RESULTS.md); the limits are for floods. */
    r->rate_limit = 100;
    r->rate_burst = 400;
    r->rate_limit_address = 200;
    r->rate_burst_address = 800;
    r->max_concurrent_per_caller = -1; /* unset: the global value, see finish() */
    p->uri_line[cfg->nresources - 1] = 0;
    return 0;
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
    return tab[i].set(p, &tab[i], base, val);
}

/* a then b, on the heap. */
static char *concat(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *out = mcpauth__xmalloc(la + lb + 1);
    memcpy(out, a, la);
    memcpy(out + la, b, lb + 1);
    return out;
}

static const mcpauth_issuer *issuer_for(parser *p, const char *id)
{
    mcpauth_config *cfg = p->cfg;
    for (size_t i = 0; i < cfg->nissuers; i++)
        if (strcmp(cfg->issuers[i]->issuer, id) == 0)
            return cfg->issuers[i];
    /* Not configured: defaults (discovery, JWT only). */
    cfg->issuers = mcpauth__xrealloc(cfg->issuers, (cfg->nissuers + 1) * sizeof *cfg->issuers);
    mcpauth_issuer *is = mcpauth__xcalloc(1, sizeof *is);
    is->issuer = mcpauth__xstrdup(id);
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

/* metadata_url: resource_metadata_url made canonical, else the
 * path-inserted URL (RFC 9728 §3.1); and where mcpauth-metadata finds it. */
static void set_metadata_url(mcpauth_resource *r)
{
    if (r->metadata_url) {
        /* accepted by set_url under the same flags: cannot fail */
        char *canon = mcpauth__uri_canonicalize(r->metadata_url, MCPAUTH_URI_KEEP_SLASH, NULL);
        free(r->metadata_url);
        r->metadata_url = mcpauth__check(canon, "resource_metadata_url");
    } else {
        r->metadata_url = concat(r->origin, r->metadata_path);
    }
    char *origin = NULL, *path = NULL;
    mcpauth__uri_split(r->metadata_url, &origin, &path);
    if (!*path) {
        free(path);
        path = mcpauth__xstrdup("/");
    }
    r->metadata_url_path = path;
    r->metadata_url_host = mcpauth__xstrdup(origin + strcspn(origin, ":") + 3);
    free(origin);
}

/* A resource_metadata_url is one URL of one resource, and a client must be
 * able to fetch it without a token: not at or below a resource's uri, whose
 * requests the proxy or the gate answer. */
static int check_metadata_url(parser *p, const mcpauth_resource *r)
{
    const mcpauth_config *cfg = p->cfg;
    const char *mp = r->metadata_url_path, *mh = r->metadata_url_host;
    if (strcmp(mp, r->metadata_path) == 0 && strcasecmp(mh, r->host) == 0)
        return 0; /* the path-inserted default */
    char *origin = NULL, *path = NULL; /* canonical, like the resources' origins */
    mcpauth__uri_split(r->metadata_url, &origin, &path);
    free(path);
    int rc = 0;
    for (size_t j = 0; j < cfg->nresources && rc == 0; j++) {
        const mcpauth_resource *q = &cfg->resources[j];
        size_t n = strlen(q->path);
        if (strcmp(q->origin, origin) == 0 && strncmp(mp, q->path, n) == 0 &&
            (mp[n] == '\0' || mp[n] == '/' || (n > 0 && q->path[n - 1] == '/')) &&
            strncmp(mp, "/.well-known/", 13) != 0)
            rc = fail(p, r->line, "[resource %s]: resource_metadata_url %s is at or below the "
                      "uri of [resource %s], where a token is needed; clients fetch the "
                      "metadata without one", r->name, r->metadata_url, q->name);
        else if (q != r && ((strcmp(mp, q->metadata_path) == 0 && strcasecmp(mh, q->host) == 0) ||
                            (strcmp(mp, q->metadata_url_path) == 0 &&
                             strcasecmp(mh, q->metadata_url_host) == 0)))
            rc = fail(p, r->line, "[resource %s]: resource_metadata_url %s is where the "
                      "metadata of [resource %s] is served", r->name, r->metadata_url, q->name);
    }
    free(origin);
    return rc;
}

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return 0;
}

/* The backend's TLS keys: only for an https backend, the certificate with
 * its key, both PEM, unencrypted (no one is there to type a passphrase)
 * and matching, so a mistake stops start-up instead of every request. */
static int check_backend_tls(parser *p, const mcpauth_resource *r)
{
    if (!r->backend_ca_file && !r->backend_client_cert && !r->backend_client_key &&
        !r->backend_pinned_pubkey)
        return 0;
    if (!r->backend || strncasecmp(r->backend, "https://", 8) != 0)
        return fail(p, r->line, "[resource %s]: backend_ca_file, backend_client_cert, "
                    "backend_client_key and backend_pinned_pubkey are for an https backend, "
                    "and backend is %s", r->name, r->backend ? r->backend : "not set");
    if (!r->backend_client_cert != !r->backend_client_key)
        return fail(p, r->line, "[resource %s]: backend_client_cert and backend_client_key go "
                    "together", r->name);
    if (!r->backend_client_cert)
        return 0;
    FILE *f = fopen(r->backend_client_cert, "r");
    X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    f = fopen(r->backend_client_key, "r");
    EVP_PKEY *k = f ? PEM_read_PrivateKey(f, NULL, no_passphrase, NULL) : NULL;
    if (f)
        fclose(f);
    int match = x && k && X509_check_private_key(x, k) == 1;
    ERR_clear_error(); /* nothing of this for the next OpenSSL caller */
    X509_free(x);
    EVP_PKEY_free(k);
    if (!x)
        return fail(p, r->line, "[resource %s]: backend_client_cert \"%s\": no PEM certificate "
                    "in it", r->name, r->backend_client_cert);
    if (!k)
        return fail(p, r->line, "[resource %s]: backend_client_key \"%s\": no PEM private key "
                    "in it (an encrypted key cannot be used: `openssl pkey -in KEY -out KEY2` "
                    "writes it unencrypted)", r->name, r->backend_client_key);
    if (!match)
        return fail(p, r->line, "[resource %s]: backend_client_key is not the key of "
                    "backend_client_cert", r->name);
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
    if (cfg->proxy_max_threads < cfg->proxy_threads)
        return fail(p, 0, "proxy_max_threads (%ld) is less than proxy_threads (%ld)",
                    cfg->proxy_max_threads, cfg->proxy_threads);
    if (cfg->proxy_reserve_threads >= cfg->proxy_max_threads)
        return fail(p, 0, "proxy_reserve_threads (%ld) leaves no worker of proxy_max_threads (%ld)",
                    cfg->proxy_reserve_threads, cfg->proxy_max_threads);
    for (size_t i = 0; i < cfg->nresources; i++) {
        mcpauth_resource *r = &cfg->resources[i];
        if (r->max_concurrent_per_caller < 0)
            r->max_concurrent_per_caller = cfg->max_concurrent_per_caller;
        if (!r->uri)
            return fail(p, r->line, "[resource %s] is missing the required key \"uri\"", r->name);
        if (r->authorization_servers.n == 0)
            return fail(p, r->line,
                        "[resource %s] is missing the required key \"authorization_servers\"",
                        r->name);
        const char *why;
        char *canon = mcpauth__uri_canonicalize(
            r->uri, r->trailing_slash ? MCPAUTH_URI_KEEP_SLASH : 0, &why);
        if (!canon)
            return fail(p, p->uri_line[i], "uri \"%s\" %s", r->uri, why);
        free(r->uri);
        r->uri = canon;
        if (r->trailing_slash && canon[strlen(canon) - 1] != '/')
            return fail(p, p->uri_line[i],
                        "trailing_slash = yes but uri \"%s\" does not end with \"/\"", canon);
        mcpauth__uri_split(canon, &r->origin, &r->path); /* canonical: cannot fail */
        r->metadata_path = concat(MCPAUTH_PRM_WELL_KNOWN, r->path);
        r->host = mcpauth__xstrdup(r->origin + strcspn(r->origin, ":") + 3);
        set_metadata_url(r);
        if (check_backend_tls(p, r) < 0)
            return -1;
        if (check_scopes_subset(p, r, &r->scopes_required) < 0)
            return -1;
        for (int m = 0; m < 5; m++)
            if (check_scopes_subset(p, r, &r->scopes_required_method[m]) < 0)
                return -1;
        if (!r->subject_header)
            r->subject_header = mcpauth__xstrdup("X-MCP-Subject");
        if (!r->client_id_header)
            r->client_id_header = mcpauth__xstrdup("X-MCP-Client-Id");
        if (!r->scope_header)
            r->scope_header = mcpauth__xstrdup("X-MCP-Scope");
        r->issuers = mcpauth__xcalloc(r->authorization_servers.n, sizeof *r->issuers);
        for (size_t a = 0; a < r->authorization_servers.n; a++)
            r->issuers[a] = issuer_for(p, r->authorization_servers.v[a]);
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->resources[j].uri, r->uri) == 0)
                return fail(p, p->uri_line[i],
                            "resources \"%s\" and \"%s\" have the same uri \"%s\" (first at line %u)",
                            cfg->resources[j].name, r->name, r->uri, p->uri_line[j]);
    }
    for (size_t i = 0; i < cfg->nresources; i++)
        if (check_metadata_url(p, &cfg->resources[i]) < 0)
            return -1;
    if (!cfg->runtime_dir)
        cfg->runtime_dir = mcpauth__xstrdup(LOCALSTATEDIR "/lib/mcpauth");
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
        if (!a->signing_alg)
            a->signing_alg = mcpauth__xstrdup("ES256");
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
                if (!mcpauth_strlist_has(&a->scopes_supported, r->scopes_supported.v[k]))
                    mcpauth_strlist_split(&a->scopes_supported, r->scopes_supported.v[k]);
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
    p.cfg = mcpauth__xcalloc(1, sizeof *p.cfg);
    p.cfg->file = mcpauth__xstrdup(name);
    /* Defaults; mcpauth.conf(5) lists the same values. */
    mcpauth_strlist_split(&p.cfg->jwt_algorithms, "RS256 ES256");
    p.cfg->log_level = MCPAUTH_LOG_INFO;
    p.cfg->log_dest = MCPAUTH_LOG_STDERR;
    p.cfg->log_facility = LOG_DAEMON;
    p.cfg->log_security_facility = LOG_AUTHPRIV;
    p.cfg->metadata_max_age = 3600;
    p.cfg->clock_leeway = 60;
    p.cfg->token_max_bytes = 8192;
    p.cfg->cache_entries = 10000;
    p.cfg->cache_ttl = 300;
    p.cfg->cache_negative_ttl = 10;
    p.cfg->shared_cache = -1;
    p.cfg->jwks_min_refresh = 60;
    p.cfg->jwks_max_age = 3600;
    p.cfg->http_timeout = 5;
    p.cfg->max_body_bytes = 1 << 20;
    p.cfg->backend_timeout = 30;
    p.cfg->stream_idle_timeout = 300;
    p.cfg->stream_heartbeat = 10;
    p.cfg->session_ttl = 3600;
    p.cfg->proxy_threads = 8;
    p.cfg->proxy_max_threads = 1024;
    p.cfg->proxy_reserve_threads = 8;
    p.cfg->metrics = 1;
    p.cfg->shared_state = mcpauth__xstrdup("shm");
    p.cfg->shared_state_timeout = 250;
    p.cfg->shared_state_fail_rate = 0;
    p.cfg->shared_state_fail_sessions = 1;
    p.cfg->metrics_path = mcpauth__xstrdup("/mcpauth/metrics");
    mcpauth_strlist_split(&p.cfg->metrics_allow, "127.0.0.0/8 ::1");
    /* A client that drops its GET stream without a word holds it until the
     * next heartbeat finds it gone: a quick client reconnecting counts its
     * old streams for up to stream_heartbeat seconds. */
    p.cfg->max_concurrent_per_caller = 64;
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
    char *buf = mcpauth__xmalloc((size_t)st.st_size + 1);
    size_t n = fread(buf, 1, (size_t)st.st_size, f);
    int rerr = ferror(f);
    fclose(f);
    if (rerr) {
        snprintf(err, errlen, "%s: cannot read: %s", file, strerror(errno));
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
    free(r->metadata_url_path);
    free(r->metadata_url_host);
    free(r->backend_ca_file);
    free(r->backend_client_cert);
    free(r->backend_client_key);
    free(r->backend_pinned_pubkey);
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
        free(a->store);
        free(a->signing_alg);
        free(a->introspection_client_id);
        if (a->introspection_client_secret)
            OPENSSL_cleanse(a->introspection_client_secret, strlen(a->introspection_client_secret));
        free(a->introspection_client_secret);
        mcpauth_strlist_free(&a->scopes_supported);
        free(a);
    }
    free(cfg->runtime_dir);
    free(cfg->shared_state);
    free(cfg->metrics_path);
    mcpauth_strlist_free(&cfg->metrics_allow);
    mcpauth_strlist_free(&cfg->jwt_algorithms);
    free(cfg->ca_file);
    free(cfg->file);
    free(cfg->log_file);
    free(cfg->log_syslog_socket);
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
