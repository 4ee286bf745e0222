/* One line per event on stderr (the web server's error log keeps it):
 *   mcpauth-gate[123]: level=warn event=token_rejected security=1 reason="expired" ...
 * Values are quoted and escaped, so network input cannot forge lines.  Never
 * pass a token or secret: log mcpauth_sha256_hex()'s first 8 digits instead. */
#ifndef MCPAUTH_LOG_H
#define MCPAUTH_LOG_H

typedef enum {
    MCPAUTH_LOG_ERROR = 0,
    MCPAUTH_LOG_WARN = 1,
    MCPAUTH_LOG_INFO = 2,
    MCPAUTH_LOG_DEBUG = 3
} mcpauth_log_level;

/* Program name shown on every line; call once at start-up. */
void mcpauth_log_init(const char *progname, mcpauth_log_level level);
void mcpauth_log_set_level(mcpauth_log_level level);
/* "error", "warn", "info", "debug" → level; -1 when unknown. */
int mcpauth_log_level_parse(const char *s);

/* Key/value string pairs after the event name, ended by NULL.  A NULL value
 * is skipped with its key. */
void mcpauth_log(mcpauth_log_level level, const char *event, ...)
    __attribute__((sentinel));
/* Same, tagged security=1 at level warn, so `grep security=1` finds every
 * refused request and suspicious input. */
void mcpauth_log_security(const char *event, ...) __attribute__((sentinel));

/* Formats one line into buf (for tests); returns its length. */
int mcpauth_log_format(char *buf, unsigned buflen, mcpauth_log_level level, int security,
                       const char *event, const char *const *kv, unsigned nkv);

#endif
