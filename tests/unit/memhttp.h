/* An in-memory request and response sink for driving handlers in tests. */
#ifndef MCPAUTH_TEST_MEMHTTP_H
#define MCPAUTH_TEST_MEMHTTP_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <mcpauth/http.h>

typedef struct {
    const char *const *params; /* name, value, ..., NULL */
    char out[65536];
    size_t outlen;
} memhttp;

static inline const char *memhttp_param(void *ctx, const char *name)
{
    memhttp *m = ctx;
    for (const char *const *p = m->params; p && *p; p += 2)
        if (strcmp(p[0], name) == 0)
            return p[1];
    return NULL;
}

static inline int memhttp_write(void *ctx, const char *buf, size_t len)
{
    memhttp *m = ctx;
    if (m->outlen + len >= sizeof m->out)
        return -1;
    memcpy(m->out + m->outlen, buf, len);
    m->outlen += len;
    m->out[m->outlen] = '\0';
    return 0;
}

static inline void memhttp_setup(memhttp *m, const char *const *params, mcpauth_request *req,
                                 mcpauth_response *resp)
{
    memset(m, 0, sizeof *m);
    m->params = params;
    mcpauth_request_init(req, memhttp_param, NULL, m);
    mcpauth_response_init(resp, (mcpauth_sink){memhttp_write, NULL, m});
}

/* The body after the blank line. */
static inline const char *memhttp_body(const memhttp *m)
{
    const char *b = strstr(m->out, "\r\n\r\n");
    return b ? b + 4 : NULL;
}

/* The value of the first header name (matched without case) in a response
 * written to a memhttp (out, or a copy of it), or NULL.  The first line is
 * "Status: ..."; lines are "Name: value".  A static copy that always fits. */
static inline const char *memhttp_header(const char *out, const char *name)
{
    static char val[sizeof ((memhttp *)0)->out];
    const char *end = strstr(out, "\r\n\r\n");
    size_t nl = strlen(name);
    for (const char *p = strstr(out, "\r\n"); p && p < end; p = strstr(p + 2, "\r\n")) {
        const char *h = p + 2;
        if (strncasecmp(h, name, nl) == 0 && h[nl] == ':' && h[nl + 1] == ' ') {
            size_t vl = strcspn(h + nl + 2, "\r\n");
            snprintf(val, sizeof val, "%.*s", (int)vl, h + nl + 2);
            return val;
        }
    }
    return NULL;
}

/* A memhttp whose request has a body, read from memory. */
typedef struct {
    memhttp m; /* first: the request's ctx points at m, so at this */
    const char *body;
    size_t len, pos;
    size_t piece; /* the most one read hands out (0: as much as asked) */
} memhttp_bodyctx;

static inline ssize_t memhttp_body_read(void *ctx, char *buf, size_t len)
{
    memhttp_bodyctx *b = ctx;
    size_t n = b->len - b->pos;
    if (n > len)
        n = len;
    if (b->piece && n > b->piece)
        n = b->piece;
    if (n)
        memcpy(buf, b->body + b->pos, n);
    b->pos += n;
    return (ssize_t)n;
}

/* After memhttp_setup(&b->m, ...): req reads body (len bytes; NULL: empty)
 * at most piece bytes at a time, as a web server may hand it out. */
static inline void memhttp_set_body(memhttp_bodyctx *b, mcpauth_request *req, const char *body,
                                    size_t len, size_t piece)
{
    b->body = body;
    b->len = body ? len : 0;
    b->pos = 0;
    b->piece = piece;
    req->read = memhttp_body_read;
}
#endif
