/* Bounded string building where truncation is an error (see strbuf.h). */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "strbuf.h"

void mcpauth__sb_init(mcpauth__strbuf *sb, char *buf, size_t cap)
{
    sb->buf = buf;
    sb->cap = cap;
    sb->len = 0;
    sb->overflow = cap == 0;
    if (cap)
        buf[0] = '\0';
}

void mcpauth__sb_addn(mcpauth__strbuf *sb, const char *s, size_t n)
{
    if (sb->overflow)
        return;
    if (n >= sb->cap - sb->len) {
        sb->overflow = 1;
        return;
    }
    memcpy(sb->buf + sb->len, s, n);
    sb->len += n;
    sb->buf[sb->len] = '\0';
}

void mcpauth__sb_add(mcpauth__strbuf *sb, const char *s)
{
    mcpauth__sb_addn(sb, s, strlen(s));
}

void mcpauth__sb_vprintf(mcpauth__strbuf *sb, const char *fmt, va_list ap)
{
    if (sb->overflow)
        return;
    size_t room = sb->cap - sb->len;
    int n = vsnprintf(sb->buf + sb->len, room, fmt, ap);
    if (n < 0 || (size_t)n >= room) {
        sb->buf[sb->len] = '\0';
        sb->overflow = 1;
        return;
    }
    sb->len += (size_t)n;
}

void mcpauth__sb_printf(mcpauth__strbuf *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mcpauth__sb_vprintf(sb, fmt, ap);
    va_end(ap);
}

const char *mcpauth__sb_str(const mcpauth__strbuf *sb)
{
    return sb->overflow ? NULL : sb->buf;
}

int mcpauth__fmt(char *out, size_t cap, const char *fmt, ...)
{
    mcpauth__strbuf sb;
    mcpauth__sb_init(&sb, out, cap);
    va_list ap;
    va_start(ap, fmt);
    mcpauth__sb_vprintf(&sb, fmt, ap);
    va_end(ap);
    if (sb.overflow && cap)
        out[0] = '\0';
    return sb.overflow ? -1 : 0;
}

void mcpauth__errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    for (char *p = err; *p; p++) /* one printable line, whatever was quoted */
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
}
