/* key=value logging to stderr; see log.h. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <mcpauth/log.h>

static const char *log_prog = "mcpauth";
static mcpauth_log_level log_level = MCPAUTH_LOG_INFO;
static const char *const level_names[] = {"error", "warn", "info", "debug"};

void mcpauth_log_init(const char *progname, mcpauth_log_level level)
{
    log_prog = progname;
    log_level = level;
}

void mcpauth_log_set_level(mcpauth_log_level level)
{
    log_level = level;
}

int mcpauth_log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

/* Appends s, quoted when it holds anything but safe characters; control
 * bytes, quotes and backslashes are escaped so one event stays one line. */
static unsigned put_value(char *buf, unsigned pos, unsigned cap, const char *s)
{
    int quote = *s == '\0';
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= ' ' || c == '"' || c == '\\' || c == '=' || c >= 0x7f)
            quote = 1;
    }
    if (quote && pos + 1 < cap)
        buf[pos++] = '"';
    for (const char *p = s; *p && pos + 5 < cap; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            buf[pos++] = '\\';
            buf[pos++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            pos += (unsigned)snprintf(buf + pos, cap - pos, "\\x%02x", c);
        } else {
            buf[pos++] = (char)c;
        }
    }
    if (quote && pos + 1 < cap)
        buf[pos++] = '"';
    return pos;
}

int mcpauth_log_format(char *buf, unsigned cap, mcpauth_log_level level, int security,
                       const char *event, const char *const *kv, unsigned nkv)
{
    int n = snprintf(buf, cap, "%s[%ld]: level=%s event=", log_prog, (long)getpid(),
                     level_names[level]);
    unsigned pos = n < 0 ? 0 : (unsigned)n >= cap ? cap - 1 : (unsigned)n;
    pos = put_value(buf, pos, cap, event);
    if (security && pos + 12 < cap) {
        memcpy(buf + pos, " security=1", 11);
        pos += 11;
    }
    for (unsigned i = 0; i + 1 < nkv; i += 2) {
        if (!kv[i + 1])
            continue;
        size_t kl = strlen(kv[i]);
        if (pos + kl + 3 >= cap)
            break;
        buf[pos++] = ' ';
        memcpy(buf + pos, kv[i], kl);
        pos += (unsigned)kl;
        buf[pos++] = '=';
        pos = put_value(buf, pos, cap, kv[i + 1]);
    }
    if (pos + 1 >= cap)
        pos = cap - 2;
    buf[pos++] = '\n';
    buf[pos] = '\0';
    return (int)pos;
}

static void vlog(mcpauth_log_level level, int security, const char *event, va_list ap)
{
    const char *kv[64];
    unsigned n = 0;
    const char *k;
    while (n + 2 <= 64 && (k = va_arg(ap, const char *)) != NULL) {
        kv[n++] = k;
        kv[n++] = va_arg(ap, const char *);
    }
    char line[4096];
    int len = mcpauth_log_format(line, sizeof line, level, security, event, kv, n);
    /* One write(2) per line keeps lines whole when threads log at once. */
    ssize_t w = write(STDERR_FILENO, line, (size_t)len);
    (void)w;
}

void mcpauth_log(mcpauth_log_level level, const char *event, ...)
{
    if (level > log_level)
        return;
    va_list ap;
    va_start(ap, event);
    vlog(level, 0, event, ap);
    va_end(ap);
}

void mcpauth_log_security(const char *event, ...)
{
    if (MCPAUTH_LOG_WARN > log_level)
        return;
    va_list ap;
    va_start(ap, event);
    vlog(MCPAUTH_LOG_WARN, 1, event, ap);
    va_end(ap);
}
