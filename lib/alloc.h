/* The library's out-of-memory policy (not installed), the one lighttpd
 * follows: an allocation that fails logs one line and aborts the process.
 * A FastCGI program is restarted by its web server; a request half-handled
 * after a failed allocation could instead be allowed by mistake (a policy
 * scope dropped, a revoked token not noticed).  Every allocation of the
 * library goes through these, so no caller checks for NULL.
 *
 * json-c's constructors return NULL when out of memory too:
 * mcpauth__json_new() and friends wrap the ones whose result matters. */
#ifndef MCPAUTH_ALLOC_H
#define MCPAUTH_ALLOC_H

#include <stddef.h>

#include <json-c/json.h>

void *mcpauth__xmalloc(size_t n);
void *mcpauth__xcalloc(size_t n, size_t size);
void *mcpauth__xrealloc(void *p, size_t n);
char *mcpauth__xstrdup(const char *s);
char *mcpauth__xstrndup(const char *s, size_t n);
/* Aborts with a log line naming what was being allocated. */
void mcpauth__oom(const char *what) __attribute__((noreturn));
/* Aborts when p is NULL (for results of other libraries' allocators);
 * returns p. */
void *mcpauth__check(void *p, const char *what);

/* Test hook: the n-th allocation from now fails (0: none).  Lets unit tests
 * prove that a failed allocation aborts rather than lets a request through. */
void mcpauth__alloc_fail_after(unsigned long n);

/* The string value of a JSON string, or NULL when o is not a string or the
 * string holds an embedded NUL ("a\u0000b"): C code would check the part
 * before the NUL while the rest is stored or forwarded.  *len (may be NULL)
 * receives the length.  Lent by o. */
const char *mcpauth__json_str(json_object *o, size_t *len);
/* mcpauth__json_str of member key of object o (NULL when absent). */
const char *mcpauth__json_member_str(json_object *o, const char *key, size_t *len);

#endif
