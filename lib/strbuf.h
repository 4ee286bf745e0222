/* A bounded string builder over caller storage (not installed).  Anything
 * that does not fit marks the builder as overflowed instead of being cut
 * short silently: a truncated header or challenge is an error, never a
 * different value. */
#ifndef MCPAUTH_STRBUF_H
#define MCPAUTH_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct mcpauth__strbuf {
    char *buf;
    size_t cap;      /* bytes of buf, room for the NUL included */
    size_t len;
    int overflow;    /* something did not fit: the content is unusable */
} mcpauth__strbuf;

/* Starts an empty string in buf[cap] (cap > 0). */
void mcpauth__sb_init(mcpauth__strbuf *sb, char *buf, size_t cap);
/* Appends; on overflow leaves the builder marked and its text unchanged. */
void mcpauth__sb_add(mcpauth__strbuf *sb, const char *s);
void mcpauth__sb_addn(mcpauth__strbuf *sb, const char *s, size_t n);
void mcpauth__sb_printf(mcpauth__strbuf *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void mcpauth__sb_vprintf(mcpauth__strbuf *sb, const char *fmt, va_list ap);
/* The text, or NULL when anything overflowed. */
const char *mcpauth__sb_str(const mcpauth__strbuf *sb);

/* snprintf that says whether it fit: 0, or -1 when out was too small (out
 * then holds "" rather than a prefix). */
int mcpauth__fmt(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Writes a reason into a caller's err[errlen] buffer (the library's error
 * convention); err may be NULL.  A reason too long is cut, which is fine
 * for a message meant for people; control and non-ASCII bytes become '?',
 * so quoted input stays one printable line. */
void mcpauth__errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
