/* key=value logging to stderr, a file or syslog; see log.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <mcpauth/config.h>
#include <mcpauth/log.h>

#include "alloc.h"

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

/* --- destinations ------------------------------------------------------ */

/* Set by mcpauth_log_open() before any thread logs, then only read. */
static int log_dest = MCPAUTH_LOG_STDERR;
static mcpauth_log_fn log_cb;
static void *log_cb_arg;

/* log = file:PATH.  The descriptor number never changes while the program
 * runs: a reopen dup3()s the new file onto it, so a thread writing at that
 * moment writes whole lines to one file or the other, never to a
 * descriptor closed (or reused) under it. */
static int file_fd = -1;
static char *file_path;
static atomic_llong file_checked; /* second of the last rotation check */
static atomic_int file_failing;   /* a failed reopen was reported */

/* log = syslog: our own client, one datagram per line to the socket the
 * configuration names (a chroot's or a container's, or a test's), no lock,
 * no reconnection (sendto by path finds a restarted daemon). */
static int sl_fd = -1;
static struct sockaddr_un sl_addr;
static int sl_facility = LOG_DAEMON, sl_security_facility = LOG_AUTHPRIV;

static const int syslog_severity[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};

static long long now_coarse(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (long long)ts.tv_sec;
}

static int open_log_file(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
}

/* Says once, in the file still open, that the path cannot be reopened. */
static void report_reopen_failure(int err)
{
    if (atomic_exchange(&file_failing, 1))
        return;
    const char *kv[] = {"path", file_path, "error", strerror(err), "effect",
                        "lines go on to the file open so far (renamed or deleted)"};
    char line[1024];
    int n = mcpauth_log_format(line, sizeof line, MCPAUTH_LOG_ERROR, 0, "log_reopen_failed", kv, 6);
    if (write(file_fd, line, (size_t)n) < 0) {
    }
}

static int reopen_file(void)
{
    int fd = open_log_file(file_path);
    if (fd < 0) {
        report_reopen_failure(errno);
        return -1;
    }
    if (fd != file_fd) {
        if (dup3(fd, file_fd, O_CLOEXEC) < 0) {
            int e = errno;
            close(fd);
            report_reopen_failure(e);
            return -1;
        }
        close(fd);
    }
    atomic_store(&file_failing, 0);
    return 0;
}

/* logrotate renames the file (and may create a new one): at most once a
 * second, a stat(2) of the path tells whether it still names our file. */
static void file_check_rotated(void)
{
    long long now = now_coarse(), last = atomic_load(&file_checked);
    if (now == last || !atomic_compare_exchange_strong(&file_checked, &last, now))
        return;
    struct stat p, f;
    if (stat(file_path, &p) == 0 && fstat(file_fd, &f) == 0 && p.st_ino == f.st_ino &&
        p.st_dev == f.st_dev)
        return;
    reopen_file();
}

/* "2026-11-28T14:03:07.123+0100 " (local time, as syslog daemons write). */
static unsigned put_timestamp(char *buf, unsigned cap)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(buf + n, cap - n, ".%03ld", ts.tv_nsec / 1000000);
    n += strftime(buf + n, cap - n, "%z ", &tm);
    return (unsigned)n;
}

static void write_all(int fd, const char *buf, size_t len)
{
    /* One write(2) per line: O_APPEND keeps lines of many processes (and
     * threads) whole and in one piece each. */
    ssize_t w = write(fd, buf, len);
    (void)w;
}

static void send_syslog(mcpauth_log_level level, int security, const char *line, unsigned len)
{
    char msg[4200];
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    int fac = security ? sl_security_facility : sl_facility;
    int n = snprintf(msg, sizeof msg, "<%d>", fac | syslog_severity[level]);
    n += (int)strftime(msg + n, sizeof msg - (size_t)n, "%b %e %H:%M:%S ", &tm);
    if (len > 0 && line[len - 1] == '\n')
        len--; /* the daemon ends the record */
    if (len > sizeof msg - (size_t)n)
        len = (unsigned)(sizeof msg - (size_t)n);
    memcpy(msg + n, line, len);
    if (sendto(sl_fd, msg, (size_t)n + len, MSG_NOSIGNAL, (struct sockaddr *)&sl_addr,
               sizeof sl_addr) < 0)
        write_all(STDERR_FILENO, line, len + 1); /* no daemon: not lost */
}

static void emit(mcpauth_log_level level, int security, const char *line, unsigned len)
{
    switch (log_dest) {
    case MCPAUTH_LOG_FILE: {
        char out[4200];
        file_check_rotated();
        unsigned n = put_timestamp(out, 64);
        memcpy(out + n, line, len);
        write_all(file_fd, out, n + len);
        break;
    }
    case MCPAUTH_LOG_SYSLOG:
        send_syslog(level, security, line, len);
        break;
    default:
        if (log_cb)
            log_cb(log_cb_arg, level, security, line, len - 1);
        else
            write_all(STDERR_FILENO, line, len);
    }
}

static void close_destination(void)
{
    log_dest = MCPAUTH_LOG_STDERR;
    if (file_fd >= 0)
        close(file_fd);
    file_fd = -1;
    free(file_path);
    file_path = NULL;
    if (sl_fd >= 0)
        close(sl_fd);
    sl_fd = -1;
}

static const char *syslog_socket(const mcpauth_config *cfg)
{
    return cfg->log_syslog_socket ? cfg->log_syslog_socket : "/dev/log";
}

int mcpauth_log_open(const mcpauth_config *cfg, char *err, size_t errlen)
{
    close_destination();
    tzset(); /* localtime_r() does not */
    if (cfg->log_dest == MCPAUTH_LOG_FILE) {
        int fd = open_log_file(cfg->log_file);
        if (fd < 0) {
            snprintf(err, errlen, "log file %s: %s", cfg->log_file, strerror(errno));
            return -1;
        }
        file_fd = fd;
        file_path = mcpauth__xstrdup(cfg->log_file);
        atomic_store(&file_checked, now_coarse());
        atomic_store(&file_failing, 0);
    } else if (cfg->log_dest == MCPAUTH_LOG_SYSLOG) {
        const char *path = syslog_socket(cfg);
        memset(&sl_addr, 0, sizeof sl_addr);
        sl_addr.sun_family = AF_UNIX;
        if (strlen(path) >= sizeof sl_addr.sun_path) { /* the parser refuses it already */
            snprintf(err, errlen, "log_syslog_socket %s: path too long", path);
            return -1;
        }
        strcpy(sl_addr.sun_path, path);
        sl_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (sl_fd < 0) {
            snprintf(err, errlen, "syslog socket: %s", strerror(errno));
            return -1;
        }
        sl_facility = cfg->log_facility;
        sl_security_facility = cfg->log_security_facility;
    }
    log_dest = cfg->log_dest;
    return 0;
}

int mcpauth_log_check(const mcpauth_config *cfg, char *err, size_t errlen)
{
    if (cfg->log_dest != MCPAUTH_LOG_FILE)
        return 0; /* a syslog daemon may well start after us */
    const char *path = cfg->log_file;
    if (access(path, F_OK) == 0) {
        if (access(path, W_OK) == 0)
            return 0;
        snprintf(err, errlen, "log file %s: %s", path, strerror(errno));
        return -1;
    }
    char dir[4096];
    const char *slash = strrchr(path, '/');
    size_t n = slash && slash > path ? (size_t)(slash - path) : 1;
    if (n >= sizeof dir)
        n = sizeof dir - 1;
    memcpy(dir, path, n);
    dir[n] = '\0';
    if (access(dir, W_OK | X_OK) == 0)
        return 0;
    snprintf(err, errlen, "log file %s cannot be created in %s: %s", path, dir, strerror(errno));
    return -1;
}

int mcpauth_log_reopen(void)
{
    if (log_dest != MCPAUTH_LOG_FILE)
        return 1;
    atomic_store(&file_checked, now_coarse());
    return reopen_file();
}

void mcpauth_log_set_callback(mcpauth_log_fn fn, void *arg)
{
    log_cb = fn;
    log_cb_arg = arg;
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
    emit(level, security, line, (unsigned)len);
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
