/* An in-memory request and response sink for driving handlers in tests. */
#ifndef MCPAUTH_TEST_MEMHTTP_H
#define MCPAUTH_TEST_MEMHTTP_H
#include <stdlib.h>
#include <string.h>
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
#endif
