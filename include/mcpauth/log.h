/* One line per event, key=value:
 *   mcpauth-gate[123]: level=warn event=token_rejected security=1 reason="expired" ...
 * Values are quoted and escaped, so network input cannot forge lines.  Never
 * pass a token or secret: log mcpauth_sha256_hex()'s first 8 digits instead.
 *
 * Where lines go is the configuration's `log` (mcpauth.conf(5)): standard
 * error (the default; the web server's error log under Apache), a file
 * (each line prefixed with its local time, reopened when rotated), or
 * syslog (which adds its own prefix).  Until mcpauth_log_open() they go to
 * standard error. */
#ifndef MCPAUTH_LOG_H
#define MCPAUTH_LOG_H

#include <stddef.h>

typedef enum {
    MCPAUTH_LOG_ERROR = 0,
    MCPAUTH_LOG_WARN = 1,
    MCPAUTH_LOG_INFO = 2,
    MCPAUTH_LOG_DEBUG = 3
} mcpauth_log_level;

/* The destinations of `log =` (mcpauth_config.log_dest). */
typedef enum {
    MCPAUTH_LOG_STDERR = 0, /* log = stderr */
    MCPAUTH_LOG_FILE = 1,   /* log = file:PATH */
    MCPAUTH_LOG_SYSLOG = 2  /* log = syslog */
} mcpauth_log_dest;

struct mcpauth_config;

/* Program name shown on every line; call once at start-up. */
void mcpauth_log_init(const char *progname, mcpauth_log_level level);
void mcpauth_log_set_level(mcpauth_log_level level);
/* "error", "warn", "info", "debug" → level; -1 when unknown. */
int mcpauth_log_level_parse(const char *s);

/* Sends the lines where cfg says, from now on: a file is opened here
 * (O_APPEND, created 0640), syslog's socket made.  Call at start-up, before
 * any thread, in the process that logs (after a fork that drops
 * privileges: the file is opened as that user).  Again with another cfg:
 * the previous destination is closed.  0, or -1 with the reason in err
 * (the file cannot be opened); lines then still go to standard error. */
int mcpauth_log_open(const struct mcpauth_config *cfg, char *err, size_t errlen);
/* What --check says about the destination without creating anything: the
 * file (or, if missing, its directory) must be writable by this user.
 * 0, or -1 with the reason in err. */
int mcpauth_log_check(const struct mcpauth_config *cfg, char *err, size_t errlen);
/* Reopens the file by its path (SIGHUP, logrotate).  The file is also
 * reopened by itself when a line is written and the path names another
 * file than the one open (looked at once a second at most).  0 reopened,
 * 1 nothing to reopen (not log = file:), -1 failed (lines keep going to the
 * file open so far). */
int mcpauth_log_reopen(void);

/* Receives each line (without its newline) instead of standard error, for
 * hosts with a log of their own (mod_mcpauth: Apache's error log).  The
 * `log = file:` and `log = syslog` destinations take precedence.  NULL
 * restores standard error.  Set it before any thread logs. */
typedef void (*mcpauth_log_fn)(void *arg, mcpauth_log_level level, int security,
                               const char *line, size_t len);
void mcpauth_log_set_callback(mcpauth_log_fn fn, void *arg);

/* Key/value string pairs after the event name, ended by NULL.  A NULL value
 * is skipped with its key. */
void mcpauth_log(mcpauth_log_level level, const char *event, ...)
    __attribute__((sentinel));
/* Same, tagged security=1 at level warn, so `grep security=1` finds every
 * refused request and suspicious input.  Under syslog these go to
 * log_security_facility (authpriv by default). */
void mcpauth_log_security(const char *event, ...) __attribute__((sentinel));

/* Formats one line into buf (for tests); returns its length. */
int mcpauth_log_format(char *buf, unsigned buflen, mcpauth_log_level level, int security,
                       const char *event, const char *const *kv, unsigned nkv);

#endif
