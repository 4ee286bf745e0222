/* See fuzz_common.h. */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <mcpauth/log.h>

#include "fuzz_common.h"

/* ------------------------------------------------------------- clock */

time_t time(time_t *t)
{
    if (t)
        *t = FZ_NOW;
    return FZ_NOW;
}

/* ------------------------------------------------------------ scratch */

static char scratch_dirs[8][128];
static int nscratch;

static void scratch_remove(void)
{
    for (int i = 0; i < nscratch; i++) {
        char cmd[200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch_dirs[i]);
        if (system(cmd) != 0)
            fprintf(stderr, "fuzz: could not remove %s\n", scratch_dirs[i]);
    }
}

const char *fz_scratch(const char *name)
{
    if (nscratch == (int)(sizeof scratch_dirs / sizeof scratch_dirs[0]))
        abort();
    char *d = scratch_dirs[nscratch];
    snprintf(d, sizeof scratch_dirs[0], "%s/mcpauth-fuzz-%s-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", name);
    if (!mkdtemp(d)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    if (nscratch++ == 0)
        atexit(scratch_remove);
    return d;
}

char *fz_write(const char *dir, const char *name, const char *text)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *path = malloc(n);
    if (!path)
        abort();
    snprintf(path, n, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        abort();
    }
    return path;
}

mcpauth_config *fz_config(const char *text)
{
    char err[512] = "";
    mcpauth_config *c = mcpauth_config_parse(text, strlen(text), "fuzz.conf", err, sizeof err);
    if (!c) {
        fprintf(stderr, "fuzz: configuration refused: %s\n", err);
        abort();
    }
    return c;
}

/* ----------------------------------------------------------- requests */

char *fz_strndup(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    if (size)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

char *fz_line(const uint8_t *data, size_t size, const uint8_t **rest, size_t *restlen)
{
    const uint8_t *nl = size ? memchr(data, '\n', size) : NULL;
    size_t n = nl ? (size_t)(nl - data) : size;
    *rest = nl ? nl + 1 : data + size;
    *restlen = nl ? size - n - 1 : 0;
    return fz_strndup(data, n);
}

static const char *req_param(void *ctx, const char *name)
{
    fz_req *r = ctx;
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->name[i], name) == 0)
            return r->value[i];
    for (const char *const *p = r->defaults; p && *p; p += 2)
        if (strcmp(p[0], name) == 0)
            return p[1];
    return NULL;
}

static ssize_t req_read(void *ctx, char *buf, size_t len)
{
    fz_req *r = ctx;
    size_t left = r->blen - r->pos;
    if (len > left)
        len = left;
    memcpy(buf, r->body + r->pos, len);
    r->pos += len;
    return (ssize_t)len;
}

static int sink_write(void *ctx, const char *buf, size_t len)
{
    fz_req *r = ctx;
    size_t room = sizeof r->out - 1 - r->outlen;
    size_t n = len < room ? len : room;
    memcpy(r->out + r->outlen, buf, n);
    r->outlen += n;
    r->out[r->outlen] = '\0';
    return 0;
}

static void add_param(fz_req *r, const char *name, const char *value)
{
    if (r->n == FZ_REQ_MAX_PARAMS)
        return;
    r->name[r->n] = name;
    r->value[r->n] = value;
    r->n++;
}

/* "Mcp-Session-Id" -> "HTTP_MCP_SESSION_ID"; CGI names stay. */
static const char *cgi_name(fz_req *r, const char *h)
{
    if (strcasecmp(h, "Content-Type") == 0)
        return "CONTENT_TYPE";
    if (strcasecmp(h, "Content-Length") == 0)
        return "CONTENT_LENGTH";
    int cgi = 1;
    for (const char *p = h; *p; p++)
        if (islower((unsigned char)*p) || *p == '-')
            cgi = 0;
    if (cgi)
        return h;
    char *out = r->namebuf[r->n];
    size_t o = (size_t)snprintf(out, sizeof r->namebuf[0], "HTTP_");
    for (const char *p = h; *p && o + 1 < sizeof r->namebuf[0]; p++)
        out[o++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    out[o] = '\0';
    return out;
}

int fz_req_init(fz_req *r, const uint8_t *data, size_t size, const char *const *defaults)
{
    memset(r, 0, sizeof *r);
    r->defaults = defaults;
    r->buf = fz_strndup(data, size);
    /* the body starts after the first empty line; it may hold any byte */
    char *p = r->buf, *end = r->buf + size;
    char *sep = NULL;
    for (char *q = p; q + 1 < end; q++)
        if (q[0] == '\n' && q[1] == '\n') {
            sep = q;
            break;
        }
    char *head_end = sep ? sep : end;
    if (sep) {
        *sep = '\0';
        r->body = sep + 2;
        r->blen = (size_t)(end - (sep + 2));
    } else {
        r->body = "";
    }
    /* first line: method and URI */
    char *nl = memchr(p, '\n', (size_t)(head_end - p));
    if (nl)
        *nl = '\0';
    char *sp = strchr(p, ' ');
    if (sp) {
        *sp = '\0';
        add_param(r, "REQUEST_METHOD", p);
        add_param(r, "REQUEST_URI", sp + 1);
    } else if (*p) {
        add_param(r, "REQUEST_METHOD", p);
    }
    for (char *line = nl ? nl + 1 : head_end; line && line < head_end;) {
        char *next = memchr(line, '\n', (size_t)(head_end - line));
        if (next)
            *next = '\0';
        char *colon = strchr(line, ':');
        if (colon && r->n < FZ_REQ_MAX_PARAMS) { /* cgi_name uses namebuf[r->n] */
            *colon = '\0';
            const char *v = colon + 1;
            while (*v == ' ')
                v++;
            add_param(r, cgi_name(r, line), v);
        }
        line = next ? next + 1 : NULL;
    }
    r->init_rc = mcpauth_request_init(&r->req, req_param, req_read, r);
    mcpauth_response_init(&r->resp, (mcpauth_sink){sink_write, NULL, r});
    return r->init_rc;
}

void fz_req_free(fz_req *r)
{
    free(r->buf);
    r->buf = NULL;
}

/* -------------------------------------------------------------- fetch */

const char *fz_fetch_body;
size_t fz_fetch_len;
long fz_fetch_status = 200;
long fz_fetch_max_age = -1;
unsigned long fz_fetch_calls;

int __wrap_mcpauth__fetch(const char *url, const mcpauth_fetch_opts *opts,
                          mcpauth_fetch_result *res, char *err, size_t errlen);

int __wrap_mcpauth__fetch(const char *url, const mcpauth_fetch_opts *opts,
                          mcpauth_fetch_result *res, char *err, size_t errlen)
{
    (void)url;
    (void)opts;
    memset(res, 0, sizeof *res);
    res->max_age = -1;
    fz_fetch_calls++;
    if (!fz_fetch_body) {
        snprintf(err, errlen, "no network while fuzzing");
        return -1;
    }
    /* as the real one: an owned, NUL-terminated copy */
    res->body = fz_strndup((const uint8_t *)fz_fetch_body, fz_fetch_len);
    res->len = fz_fetch_len;
    res->status = fz_fetch_status;
    res->max_age = fz_fetch_max_age;
    snprintf(res->content_type, sizeof res->content_type, "application/json");
    return 0;
}

/* ------------------------------------------------------------ fixture */

static const char fixture_conf[] =
    "log_level = error\n"
    "cache_entries = 0\n"
    "clock_leeway = 60\n"
    "jwt_algorithms = RS256 ES256 PS256\n"
    "runtime_dir = %s\n"
    "[issuer main]\n"
    "issuer = " FZ_ISS "\n"
    "jwks_file = %s\n"
    "require_typ = no\n"
    "[issuer opaque]\n"
    "issuer = " FZ_ISS_OPAQUE "\n"
    "discovery = no\n"
    "introspection_endpoint = " FZ_ISS_OPAQUE "/introspect\n"
    "introspection_client_id = rs\n"
    "introspection_client_secret = rs-secret\n"
    "[resource mcp]\n"
    "uri = " FZ_RES "\n"
    "authorization_servers = " FZ_ISS " " FZ_ISS_OPAQUE "\n"
    "scopes_supported = mcp:use mcp:admin\n"
    "scopes_required = mcp:use\n"
    "scopes_required_delete = mcp:admin\n"
    "audiences = app-aud\n"
    "backend = http://localhost/mcp\n"
    "backend_socket = %s/nowhere.sock\n"
    "allowed_origins = https://app.example\n"
    "[policy admin]\n"
    "resource = mcp\n"
    "method = tools/call\n"
    "name = admin_*\n"
    "scopes = mcp:admin\n"
    "%s";

fz_fixture *fz_fixture_get(const char *extra)
{
    static fz_fixture f;
    if (f.cfg)
        return &f;
    mcpauth_log_set_level(MCPAUTH_LOG_ERROR);
    f.dir = fz_scratch("validator");
    f.es = tk_key_new("ES256", "es1", 0);
    f.rs = tk_key_new("RS256", "rs1", 2048);
    if (!f.es || !f.rs)
        abort();
    tk_key *keys[] = {f.es, f.rs};
    char *jwks = tk_jwks(keys, 2);
    char *jwks_path = fz_write(f.dir, "jwks.json", jwks);
    free(jwks);
    size_t n = sizeof fixture_conf + 3 * strlen(f.dir) + strlen(jwks_path) + strlen(extra ? extra : "");
    char *text = malloc(n);
    if (!text)
        abort();
    snprintf(text, n, fixture_conf, f.dir, jwks_path, f.dir, extra ? extra : "");
    f.cfg = fz_config(text);
    free(text);
    free(jwks_path);
    f.res = mcpauth_config_resource_by_name(f.cfg, "mcp");
    char err[256] = "";
    f.v = mcpauth_validator_new(f.cfg, err, sizeof err);
    if (!f.res || !f.v) {
        fprintf(stderr, "fuzz: validator: %s\n", err);
        abort();
    }
    char claims[512];
    snprintf(claims, sizeof claims,
             "{\"iss\":\"" FZ_ISS "\",\"aud\":\"" FZ_RES "\",\"sub\":\"alice\","
             "\"client_id\":\"app\",\"scope\":\"mcp:use mcp:admin\",\"iat\":%lld,"
             "\"exp\":%lld}",
             (long long)FZ_NOW - 10, (long long)FZ_NOW + 3600);
    f.good_token = tk_sign(f.es, "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"es1\"}", claims);
    if (!f.good_token)
        abort();
    mcpauth_decision d;
    mcpauth_validate_token(f.v, f.res, f.good_token, strlen(f.good_token), "POST", NULL, &d);
    if (d.verdict != MCPAUTH_ALLOW) {
        fprintf(stderr, "fuzz: the fixture's own token is refused: %s\n", d.description);
        abort();
    }
    return &f;
}
