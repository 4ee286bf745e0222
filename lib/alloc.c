/* Out-of-memory policy: abort (see alloc.h), and NUL-safe JSON strings. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include <mcpauth/log.h>

static unsigned long fail_countdown;

void mcpauth__alloc_fail_after(unsigned long n)
{
    fail_countdown = n;
}

static int injected_failure(void)
{
    /* Only tests set the countdown; one branch otherwise. */
    return fail_countdown && --fail_countdown == 0;
}

void mcpauth__oom(const char *what)
{
    mcpauth_log(MCPAUTH_LOG_ERROR, "out_of_memory", "what", what, NULL);
    abort();
}

void *mcpauth__check(void *p, const char *what)
{
    if (!p || injected_failure())
        mcpauth__oom(what);
    return p;
}

void *mcpauth__xmalloc(size_t n)
{
    void *p = injected_failure() ? NULL : malloc(n ? n : 1);
    if (!p)
        mcpauth__oom("malloc");
    return p;
}

void *mcpauth__xcalloc(size_t n, size_t size)
{
    void *p = injected_failure() ? NULL : calloc(n ? n : 1, size ? size : 1);
    if (!p)
        mcpauth__oom("calloc");
    return p;
}

void *mcpauth__xrealloc(void *old, size_t n)
{
    void *p = injected_failure() ? NULL : realloc(old, n ? n : 1);
    if (!p)
        mcpauth__oom("realloc");
    return p;
}

char *mcpauth__xstrdup(const char *s)
{
    return mcpauth__xstrndup(s, strlen(s));
}

char *mcpauth__xstrndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = mcpauth__xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

const char *mcpauth__json_str(json_object *o, size_t *len)
{
    if (!o || !json_object_is_type(o, json_type_string))
        return NULL;
    const char *s = json_object_get_string(o);
    size_t n = (size_t)json_object_get_string_len(o);
    if (!s || strlen(s) != n)
        return NULL;
    if (len)
        *len = n;
    return s;
}

const char *mcpauth__json_member_str(json_object *o, const char *key, size_t *len)
{
    json_object *v;
    if (!o || !json_object_object_get_ex(o, key, &v))
        return NULL;
    return mcpauth__json_str(v, len);
}
