/* See harness.h. */
#define _GNU_SOURCE
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

static void remember_group(pid_t pid);
static void forget_group(pid_t pid);

const char *th_kind_name(th_kind kind)
{
    return kind == TH_LIGHTTPD ? "lighttpd" : "apache";
}

const char *th_srcdir(void)
{
    const char *s = getenv("MCPAUTH_SRCDIR");
    return s && *s ? s : ".";
}

const char *th_builddir(void)
{
    const char *s = getenv("MCPAUTH_BUILDDIR");
    return s && *s ? s : ".";
}

static const char *env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

int th_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

int th_write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f);
}

char *th_read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return strdup("");
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        fwrite(chunk, 1, n, m);
    fclose(f);
    fclose(m);
    return buf;
}

char *th_error_log(const th_server *s)
{
    char path[512];
    snprintf(path, sizeof path, "%s/error.log", s->dir);
    return th_read_file(path);
}

static int count_in(const char *text, const char *needle)
{
    int n = 0;
    if (*needle)
        for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
            n++;
    return n;
}

int th_log_count(const th_server *s, const char *needle)
{
    char path[512];
    snprintf(path, sizeof path, "%s/server.out", s->dir);
    char *log = th_error_log(s), *out = th_read_file(path);
    int n = count_in(log, needle) + count_in(out, needle);
    free(log);
    free(out);
    return n;
}

int th_wait_log(const th_server *s, const char *needle, int at_least, int ms)
{
    double end = th_now() + ms / 1000.0;
    for (;;) {
        int n = th_log_count(s, needle);
        if (n >= at_least || th_now() >= end)
            return n;
        usleep(100 * 1000);
    }
}

int th_give_to_apache(const th_server *s)
{
    if (s->kind != TH_APACHE || geteuid() != 0)
        return 0;
    struct passwd *pw = getpwnam("www-data");
    if (!pw || chown(s->dir, pw->pw_uid, pw->pw_gid) != 0) {
        fprintf(stderr, "harness: cannot give %s to www-data: %s\n", s->dir,
                pw ? strerror(errno) : "no such user");
        return -1;
    }
    return 0;
}

/* Replaces every occurrence of each key by its value; caller frees. */
static char *substitute(const char *tmpl, const char *const *kv)
{
    char *out = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&out, &len);
    for (const char *p = tmpl; *p;) {
        int hit = 0;
        for (const char *const *k = kv; *k; k += 2) {
            size_t kl = strlen(k[0]);
            if (strncmp(p, k[0], kl) == 0) {
                fputs(k[1], m);
                p += kl;
                hit = 1;
                break;
            }
        }
        if (!hit)
            fputc(*p++, m);
    }
    fclose(m);
    return out;
}

char *th_expand(const th_server *s, const char *text)
{
    char port[16], aux[16];
    snprintf(port, sizeof port, "%d", s->port);
    snprintf(aux, sizeof aux, "%d", s->aux_port);
    const char *kv[] = {"@PORT@", port, "@AUXPORT@", aux, "@DIR@", s->dir, "@SRCDIR@",
                        th_srcdir(), "@BUILDDIR@", th_builddir(), "@MODDIR@",
                        env_or("APACHE_MODULES_DIR", "/usr/lib/apache2/modules"), NULL};
    return substitute(text, kv);
}

/* Sanitizer builds: MCPAUTH_SANITIZER_LOGS (set by .ci/run) names a
 * directory where every program started here writes its AddressSanitizer,
 * UBSan and ThreadSanitizer reports (log_path: one file per process, named
 * after the program).  Otherwise a FastCGI program's report goes to the
 * server's error log, which th_stop deletes, and nobody sees it.  Options
 * already in the environment are kept (a test may set its own); log_path
 * is appended, and the last one wins. */
static const char *const san_vars[][2] = {
    {"ASAN_OPTIONS", "asan"}, {"UBSAN_OPTIONS", "ubsan"}, {"TSAN_OPTIONS", "tsan"},
    {"LSAN_OPTIONS", NULL}, /* passed on as it is: leak reports go where ASan's go */
};
#define N_SAN_VARS (sizeof san_vars / sizeof san_vars[0])

/* The value san_vars[i] must have in a started program's environment (may
 * be buf), NULL when it has none. */
static const char *san_value(size_t i, char *buf, size_t len)
{
    const char *old = getenv(san_vars[i][0]);
    const char *dir = getenv("MCPAUTH_SANITIZER_LOGS");
    if (!dir || !*dir || !san_vars[i][1])
        return old && *old ? old : NULL;
    char tail[1024];
    snprintf(tail, sizeof tail, "log_path=%s/%s:log_exe_name=1", dir, san_vars[i][1]);
    size_t ol = old ? strlen(old) : 0, tl = strlen(tail);
    if (ol >= tl && strcmp(old + ol - tl, tail) == 0)
        return old; /* .ci/run set it already */
    snprintf(buf, len, "%s%s%s", old ? old : "", ol ? ":" : "", tail);
    return buf;
}

/* In a forked child, before exec. */
static void san_setenv(void)
{
    char buf[4096];
    for (size_t i = 0; i < N_SAN_VARS; i++) {
        const char *v = san_value(i, buf, sizeof buf);
        if (v == buf)
            setenv(san_vars[i][0], v, 1);
    }
}

/* mod_fcgid starts its programs with only the variables it is given. */
static void san_fcgid_env(char *out, size_t len)
{
    char buf[4096];
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < N_SAN_VARS; i++) {
        const char *v = san_value(i, buf, sizeof buf);
        if (v && n < len)
            n += (size_t)snprintf(out + n, len - n, "FcgidInitialEnv %s \"%s\"\n", san_vars[i][0], v);
    }
}

/* With GCC, UBSan beside ASan is a runtime of its own that ignores
 * log_path: its reports go to stderr, which for a program started here is
 * a server's error log, a log file or a pipe.  Those are searched, and
 * what holds a report is copied into MCPAUTH_SANITIZER_LOGS too. */
static void san_keep(const char *text, size_t len, const char *origin)
{
    static const char *const marks[] = {"runtime error:", "ERROR: AddressSanitizer",
                                        "ERROR: LeakSanitizer", "WARNING: ThreadSanitizer",
                                        "ERROR: ThreadSanitizer",
                                        /* log_path not writable: the report is lost */
                                        "ERROR: Can't open file", NULL};
    static unsigned seq;
    const char *dir = getenv("MCPAUTH_SANITIZER_LOGS");
    int hit = 0;
    for (int i = 0; dir && *dir && text && marks[i] && !hit; i++)
        hit = memmem(text, len, marks[i], strlen(marks[i])) != NULL;
    if (!hit)
        return;
    const char *base = strrchr(origin, '/');
    char path[1024];
    snprintf(path, sizeof path, "%s/stderr.%s.%d.%u", dir, base ? base + 1 : origin,
             (int)getpid(), seq++);
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "(sanitizer output found in %s)\n", origin);
        fwrite(text, 1, len, f);
        fclose(f);
    }
    fprintf(stderr, "harness: a sanitizer report in %s (kept as %s)\n", origin, path);
}

/* The part of a file from offset on. */
static void san_keep_file(const char *path, off_t from)
{
    struct stat st;
    if (!getenv("MCPAUTH_SANITIZER_LOGS") || stat(path, &st) < 0 || !S_ISREG(st.st_mode) ||
        st.st_size <= from || st.st_size - from > 64 * 1024 * 1024)
        return;
    FILE *f = fopen(path, "rb");
    size_t len = (size_t)(st.st_size - from);
    char *buf = f ? malloc(len) : NULL;
    if (buf && fseeko(f, from, SEEK_SET) == 0) {
        len = fread(buf, 1, len, f);
        san_keep(buf, len, path);
    }
    free(buf);
    if (f)
        fclose(f);
}

static int san_scan_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)ftw;
    /* the staged programs and library are no logs */
    if (flag == FTW_F && !(st->st_mode & S_IXUSR) && !strstr(path, "/lib/libmcpauth"))
        san_keep_file(path, 0);
    return 0;
}

/* Log files of th_spawn's programs, searched when they are stopped. */
static struct {
    pid_t pid;
    off_t from;
    char path[512];
} spawn_logs[64];

static void san_keep_spawned(pid_t pid)
{
    for (size_t i = 0; i < sizeof spawn_logs / sizeof spawn_logs[0]; i++)
        if (spawn_logs[i].pid == pid && pid > 0) {
            san_keep_file(spawn_logs[i].path, spawn_logs[i].from);
            spawn_logs[i].pid = 0;
        }
}

#ifdef __SANITIZE_ADDRESS__
/* An ASan build: mod_mcpauth is instrumented, and ASan's runtime must come
 * first in the Apache that loads it (a non-instrumented program).  In the
 * forked child that becomes that Apache: it gets the runtime this program
 * runs with (found in /proc/self/maps); its own leaks are not ours. */
static void asan_for_apache(const th_server *s)
{
    char path[512];
    snprintf(path, sizeof path, "%s/apache.conf", s->dir);
    char *conf = th_read_file(path);
    int module = strstr(conf, "mod_mcpauth") != NULL;
    free(conf);
    FILE *f = module ? fopen("/proc/self/maps", "r") : NULL;
    char line[1024];
    while (f && fgets(line, sizeof line, f)) {
        char *lib = strchr(line, '/');
        if (lib && strstr(lib, "/libasan.so")) {
            lib[strcspn(lib, "\n")] = '\0';
            setenv("LD_PRELOAD", lib, 1);
            const char *old = getenv("ASAN_OPTIONS");
            char opts[2048];
            snprintf(opts, sizeof opts, "%s%sdetect_leaks=0", old ? old : "",
                     old && *old ? ":" : "");
            setenv("ASAN_OPTIONS", opts, 1);
            break;
        }
    }
    if (f)
        fclose(f);
}
#endif

static int write_lighttpd_conf(th_server *s, const char *extra)
{
    char conf[8192];
    snprintf(conf, sizeof conf,
             "server.document-root = \"%s/htdocs\"\n"
             "server.port = %d\n"
             "server.bind = \"127.0.0.1\"\n"
             "server.errorlog = \"%s/error.log\"\n"
             "server.modules = ( \"mod_access\" )\n"
             "var.mcpauth_libexecdir = \"%s/fcgi\"\n"
             "var.mcpauth_config = \"%s/mcpauth.conf\"\n"
             "var.mcpauth_rundir = \"%s\"\n"
             "include \"%s/lighttpd/mcpauth-fcgi.conf\"\n%s\n",
             s->dir, s->port, s->dir, th_builddir(), s->dir, s->dir, th_srcdir(),
             extra ? extra : "");
    return th_write_file(s->dir, "lighttpd.conf", conf);
}

static int copy_file(const char *from, const char *to, mode_t mode)
{
    FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wb") : NULL;
    char buf[65536];
    size_t n;
    int rc = in && out ? 0 : -1;
    while (rc == 0 && (n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n)
            rc = -1;
    if (in)
        fclose(in);
    if (out && fclose(out) != 0)
        rc = -1;
    return rc == 0 ? chmod(to, mode) : -1;
}

/* Apache's children run as www-data, which may not be able to reach the
 * build tree (a clone under a 0700 directory, say).  The programs and the
 * library are copied into the scratch directory, which it can read. */
static int stage_programs(th_server *s)
{
    static const char *const progs[] = {"mcpauth-metadata", "mcpauth-gate", "mcpauth-proxy",
                                        "mcpauth-as", NULL};
    char dir[512], from[1024], to[1024];
    snprintf(dir, sizeof dir, "%s/bin", s->dir);
    mkdir(dir, 0755);
    snprintf(dir, sizeof dir, "%s/lib", s->dir);
    mkdir(dir, 0755);
    for (int i = 0; progs[i]; i++) {
        snprintf(from, sizeof from, "%s/fcgi/.libs/%s", th_builddir(), progs[i]);
        snprintf(to, sizeof to, "%s/bin/%s", s->dir, progs[i]);
        if (access(from, R_OK) == 0 && copy_file(from, to, 0755) < 0)
            return -1;
    }
    snprintf(from, sizeof from, "%s/lib/.libs/libmcpauth.so.0", th_builddir());
    snprintf(to, sizeof to, "%s/lib/libmcpauth.so.0", s->dir);
    return copy_file(from, to, 0644);
}

static int write_apache_conf(th_server *s, const char *extra)
{
    if (stage_programs(s) < 0) {
        perror("harness: copying the programs");
        return -1;
    }
    const char *mods = env_or("APACHE_MODULES_DIR", "/usr/lib/apache2/modules");
    char user[256] = "";
    /* As root Apache must drop to an unprivileged user; the scratch
     * directory is made readable, and the fcgid directory writable, for it. */
    if (geteuid() == 0)
        snprintf(user, sizeof user, "User www-data\nGroup www-data\n");
    char san[8192];
    san_fcgid_env(san, sizeof san);
    char conf[32768];
    snprintf(conf, sizeof conf,
             "ServerRoot \"%s\"\n"
             "Listen 127.0.0.1:%d\n"
             "ServerName 127.0.0.1\n"
             "PidFile \"%s/apache.pid\"\n"
             "ErrorLog \"%s/error.log\"\n"
             "LogLevel warn\n"
             "DefaultRuntimeDir \"%s\"\n"
             "Mutex file:%s default\n"
             "%s"
             "LoadModule mpm_event_module %s/mod_mpm_event.so\n"
             "LoadModule authz_core_module %s/mod_authz_core.so\n"
             "LoadModule alias_module %s/mod_alias.so\n"
             "LoadModule fcgid_module %s/mod_fcgid.so\n"
             "StartServers 1\n"
             "ServerLimit 2\n"
             "ThreadsPerChild 16\n"
             "MaxRequestWorkers 32\n"
             "FcgidIPCDir \"%s/fcgid\"\n"
             "FcgidProcessTableFile \"%s/fcgid/shm\"\n"
             "DocumentRoot \"%s/htdocs\"\n"
             "<Directory />\n  Require all denied\n</Directory>\n"
             "<Directory \"%s/htdocs\">\n  Require all granted\n</Directory>\n"
             "Define MCPAUTH_LIBEXECDIR %s/bin\n"
             "FcgidInitialEnv LD_LIBRARY_PATH %s/lib\n%s"
             "Define MCPAUTH_CONFIG %s/mcpauth.conf\n"
             "Include \"%s/apache/mcpauth-fcgi.conf\"\n%s\n",
             s->dir, s->port, s->dir, s->dir, s->dir, s->dir, user, mods, mods, mods, mods,
             s->dir, s->dir, s->dir, s->dir, s->dir, s->dir, san, s->dir, th_srcdir(),
             extra ? extra : "");
    return th_write_file(s->dir, "apache.conf", conf);
}

static int port_open(int port);

int th_wait_port(int port, int ms)
{
    for (int i = 0; i < ms / 20; i++) {
        if (port_open(port))
            return 0;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return -1;
}

pid_t th_spawn(char *const argv[], const char *const env_extra[], const char *logfile)
{
    struct stat lst;
    off_t from = logfile && stat(logfile, &lst) == 0 ? lst.st_size : 0;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        setpgid(0, 0);
        int fd = open(logfile ? logfile : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, STDIN_FILENO);
        for (const char *const *e = env_extra; e && *e; e++)
            putenv((char *)*e);
        san_setenv();
        execv(argv[0], argv);
        _exit(127);
    }
    setpgid(pid, pid);
    remember_group(pid);
    for (size_t i = 0; logfile && i < sizeof spawn_logs / sizeof spawn_logs[0]; i++)
        if (spawn_logs[i].pid <= 0) {
            spawn_logs[i].pid = pid;
            spawn_logs[i].from = from;
            snprintf(spawn_logs[i].path, sizeof spawn_logs[i].path, "%s", logfile);
            break;
        }
    return pid;
}

pid_t th_start_gate(const th_server *s)
{
    char prog[512], cfgp[512], listen[64], log[512];
    snprintf(prog, sizeof prog, "%s/fcgi/mcpauth-gate", th_builddir());
    snprintf(cfgp, sizeof cfgp, "%s/mcpauth.conf", s->dir);
    snprintf(listen, sizeof listen, "127.0.0.1:%d", s->aux_port);
    snprintf(log, sizeof log, "%s/gate.log", s->dir);
    char *argv[] = {prog, "--config", cfgp, "--listen", listen, NULL};
    pid_t pid = th_spawn(argv, NULL, log);
    if (pid < 0 || th_wait_port(s->aux_port, 10000) != 0) {
        fprintf(stderr, "harness: mcpauth-gate did not start (see %s)\n", log);
        th_kill(pid);
        return -1;
    }
    return pid;
}

pid_t th_start_example_server(const char *dir, int *port)
{
    char prog[512], pf[600], log[600];
    snprintf(prog, sizeof prog, "%s/examples/mcp-server", th_builddir());
    snprintf(pf, sizeof pf, "%s/port", dir);
    snprintf(log, sizeof log, "%s/backend.log", dir);
    unlink(pf);
    char *argv[] = {prog, "--port", "0", "--port-file", pf, "--path", "/mcp", NULL};
    pid_t pid = th_spawn(argv, NULL, log);
    *port = 0;
    for (int i = 0; pid > 0 && i < 250 && *port <= 0; i++) {
        FILE *f = fopen(pf, "r");
        if (f) {
            if (fscanf(f, "%d", port) != 1)
                *port = 0;
            fclose(f);
        }
        if (*port <= 0)
            usleep(20000);
    }
    if (*port <= 0 || th_wait_port(*port, 5000) != 0) {
        fprintf(stderr, "harness: the example MCP server did not start (see %s)\n", log);
        th_kill(pid);
        return -1;
    }
    return pid;
}

void th_kill(pid_t pid)
{
    if (pid <= 0)
        return;
    forget_group(pid);
    kill(pid, SIGTERM);
    int st;
    for (int i = 0; i < 100; i++) {
        if (waitpid(pid, &st, WNOHANG) == pid) {
            kill(-pid, SIGKILL);
            san_keep_spawned(pid);
            return;
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(-pid, SIGKILL);
    waitpid(pid, &st, 0);
    san_keep_spawned(pid);
}

int th_wait_exit(pid_t pid, int ms, int *status)
{
    for (int i = 0; pid > 0 && i < ms / 20 + 1; i++) {
        if (waitpid(pid, status, WNOHANG) == pid) {
            forget_group(pid);
            san_keep_spawned(pid);
            return 0;
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return -1;
}

static int port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static void dump_log(const th_server *s, const char *why)
{
    char *log = th_error_log(s);
    fprintf(stderr, "harness: %s %s\n--- %s/error.log ---\n%s--- end ---\n", th_kind_name(s->kind),
            why, s->dir, log);
    free(log);
}

/* Every process group started here, killed at exit if a test binary ends
 * early (a fixture's exit(), a crash report) so nothing outlives it.  Only
 * the process that started them acts: Check's forked children exit too. */
static pid_t started_groups[64];
static int nstarted;
static pid_t owner_pid;

static void kill_started(void)
{
    if (getpid() != owner_pid)
        return;
    for (int i = 0; i < nstarted; i++)
        if (started_groups[i] > 0)
            kill(-started_groups[i], SIGKILL);
    for (size_t i = 0; i < sizeof spawn_logs / sizeof spawn_logs[0]; i++)
        san_keep_spawned(spawn_logs[i].pid);
}

static void remember_group(pid_t pid)
{
    if (!owner_pid) {
        owner_pid = getpid();
        atexit(kill_started);
    }
    if (nstarted < 64)
        started_groups[nstarted++] = pid;
}

static void forget_group(pid_t pid)
{
    for (int i = 0; i < nstarted; i++)
        if (started_groups[i] == pid)
            started_groups[i] = 0;
}

int th_start(th_server *s, th_kind kind, const char *conf_template)
{
    th_options o = {conf_template, NULL, NULL, NULL};
    return th_start_ex(s, kind, &o);
}

int th_start_ex(th_server *s, th_kind kind, const th_options *o)
{
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->pid = -1;
    snprintf(s->dir, sizeof s->dir, "%s/mcpauth-test-XXXXXX", env_or("TMPDIR", "/tmp"));
    if (!mkdtemp(s->dir) || chmod(s->dir, 0755) < 0) {
        perror("harness: mkdtemp");
        return -1;
    }
    char sub[512];
    snprintf(sub, sizeof sub, "%s/htdocs", s->dir);
    mkdir(sub, 0755);
    snprintf(sub, sizeof sub, "%s/fcgid", s->dir);
    mkdir(sub, 0755);
    struct passwd *pw = geteuid() == 0 ? getpwnam("www-data") : NULL;
    if (pw && chown(sub, pw->pw_uid, pw->pw_gid) < 0)
        perror("harness: chown");

    s->port = th_free_port();
    do
        s->aux_port = th_free_port();
    while (s->aux_port == s->port);
    snprintf(s->base, sizeof s->base, "http://127.0.0.1:%d", s->port);
    for (const char *const *f = o->files; f && f[0]; f += 2) {
        char sub_dir[512];
        snprintf(sub_dir, sizeof sub_dir, "%s/%s", s->dir, f[0]);
        for (char *slash = strchr(sub_dir + strlen(s->dir) + 1, '/'); slash;
             slash = strchr(slash + 1, '/')) {
            *slash = '\0';
            mkdir(sub_dir, 0755);
            *slash = '/';
        }
        char *text = th_expand(s, f[1]);
        int frc = th_write_file(s->dir, f[0], text);
        free(text);
        char path[512];
        snprintf(path, sizeof path, "%s/%s", s->dir, f[0]);
        if (frc < 0 || chmod(path, strstr(f[0], ".cgi") ? 0755 : 0644) < 0) {
            perror("harness: writing a file");
            return -1;
        }
    }
    char *conf = th_expand(s, o->conf_template);
    char *extra = o->server_extra ? th_expand(s, o->server_extra) : NULL;
    int rc = th_write_file(s->dir, "mcpauth.conf", conf);
    free(conf);
    if (rc == 0)
        rc = kind == TH_LIGHTTPD ? write_lighttpd_conf(s, extra) : write_apache_conf(s, extra);
    free(extra);
    if (rc < 0) {
        perror("harness: writing configuration");
        return -1;
    }
    if (o->prepare && o->prepare(s) != 0) {
        fprintf(stderr, "harness: preparing %s failed\n", s->dir);
        return -1;
    }

    char cfile[512];
    const char *bin;
    char *argv[8];
    if (kind == TH_LIGHTTPD) {
        bin = env_or("LIGHTTPD", "/usr/sbin/lighttpd");
        snprintf(cfile, sizeof cfile, "%s/lighttpd.conf", s->dir);
        argv[0] = (char *)bin;
        argv[1] = "-D";
        argv[2] = "-f";
        argv[3] = cfile;
        argv[4] = "-m";
        argv[5] = (char *)env_or("LIGHTTPD_MODULES_DIR", "/usr/lib/lighttpd");
        argv[6] = NULL;
    } else {
        bin = env_or("APACHE2", "/usr/sbin/apache2");
        snprintf(cfile, sizeof cfile, "%s/apache.conf", s->dir);
        argv[0] = (char *)bin;
        argv[1] = "-f";
        argv[2] = cfile;
        argv[3] = "-DFOREGROUND";
        argv[4] = NULL;
    }
    if (access(bin, X_OK) != 0) {
        fprintf(stderr, "harness: %s not found at %s (install it: apt-get install %s)\n",
                th_kind_name(kind), bin, kind == TH_LIGHTTPD ? "lighttpd" : "apache2 libapache2-mod-fcgid");
        return -1;
    }
    char out[512];
    snprintf(out, sizeof out, "%s/server.out", s->dir);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        setpgid(0, 0); /* one group: the server and everything it spawns */
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, STDIN_FILENO);
#ifdef __SANITIZE_ADDRESS__
        if (kind == TH_APACHE)
            asan_for_apache(s);
#endif
        san_setenv();
        execv(bin, argv);
        _exit(127);
    }
    setpgid(pid, pid);
    remember_group(pid);
    s->pid = pid;
    for (int i = 0; i < 200; i++) { /* 10 s */
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            s->pid = -1;
            char *txt = th_read_file(out);
            fprintf(stderr, "harness: %s exited during start-up:\n%s", th_kind_name(kind), txt);
            free(txt);
            dump_log(s, "did not start");
            return -1;
        }
        if (port_open(s->port))
            return 0;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    dump_log(s, "did not open its port within 10 s");
    th_stop(s);
    return -1;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void th_stop(th_server *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        int st, done = 0;
        for (int i = 0; i < 200 && !done; i++) {
            if (waitpid(s->pid, &st, WNOHANG) == s->pid)
                done = 1;
            else {
                struct timespec ts = {0, 50 * 1000 * 1000};
                nanosleep(&ts, NULL);
            }
        }
        if (!done) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &st, 0);
        }
        /* Anything the server spawned and left behind shares its group. */
        kill(-s->pid, SIGKILL);
        forget_group(s->pid);
        s->pid = -1;
    }
    if (s->dir[0])
        nftw(s->dir, san_scan_entry, 16, FTW_PHYS);
    if (s->dir[0] && !getenv("MCPAUTH_KEEP_TEST_DIRS"))
        nftw(s->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    s->dir[0] = '\0';
}

int th_signal_wait(th_server *s, int sig, int ms)
{
    if (s->pid <= 0)
        return 0;
    kill(s->pid, sig);
    for (int i = 0; i < ms / 20 + 1; i++) {
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            /* the group stays remembered: kill_started() sweeps it at exit */
            s->pid = -1;
            return 0;
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return -1;
}

/* Up to len-1 bytes of a /proc file, NUL-terminated; the length read. */
static size_t proc_read(pid_t pid, const char *what, char *buf, size_t len)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, what);
    size_t n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t r;
        while (n < len - 1 && (r = read(fd, buf + n, len - 1 - n)) > 0)
            n += (size_t)r;
        close(fd);
    }
    buf[n] = '\0';
    return n;
}

/* Does one of the NUL-separated strings in buf[0..n) satisfy the test? */
static int any_string(const char *buf, size_t n, const char *dir, int env)
{
    size_t dl = strlen(dir);
    for (size_t i = 0; i < n; i += strlen(buf + i) + 1) {
        const char *v = buf + i;
        if (env) {
            if (strncmp(v, "MCPAUTH_CONFIG=", 15) == 0 && strncmp(v + 15, dir, dl) == 0 &&
                v[15 + dl] == '/')
                return 1;
        } else if (strstr(v, dir)) {
            return 1;
        }
    }
    return 0;
}

/* The program's name when pid is a live mcpauth-* process of dir, else 0. */
static int is_program(pid_t pid, const char *dir, char *prog, size_t proglen)
{
    char buf[65536];
    size_t n = proc_read(pid, "stat", buf, sizeof buf);
    const char *rp = n ? strrchr(buf, ')') : NULL;
    if (!rp || rp[1] != ' ' || rp[2] == 'Z' || rp[2] == 'X')
        return 0;
    char exe[1024], path[64];
    snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
    ssize_t el = readlink(path, exe, sizeof exe - 1);
    if (el <= 0) { /* not ours to read: its command line names the binary */
        n = proc_read(pid, "cmdline", exe, sizeof exe);
        el = (ssize_t)strlen(exe);
    }
    exe[el] = '\0';
    char *del = strstr(exe, " (deleted)");
    if (del)
        *del = '\0';
    const char *base = strrchr(exe, '/');
    base = base ? base + 1 : exe;
    if (strncmp(base, "lt-", 3) == 0) /* libtool's uninstalled name */
        base += 3;
    if (strncmp(base, "mcpauth-", 8) != 0)
        return 0;
    n = proc_read(pid, "cmdline", buf, sizeof buf);
    int mine = any_string(buf, n, dir, 0);
    if (!mine) {
        n = proc_read(pid, "environ", buf, sizeof buf);
        mine = any_string(buf, n, dir, 1);
    }
    if (mine)
        snprintf(prog, proglen, "%s", base);
    return mine;
}

int th_programs(const char *dir, const char *name, pid_t *pids, int max)
{
    DIR *d = opendir("/proc");
    int count = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        char prog[256];
        if (*end || pid <= 0 || pid == getpid() || !is_program((pid_t)pid, dir, prog, sizeof prog))
            continue;
        if (name && strcmp(prog, name) != 0)
            continue;
        if (count < max)
            pids[count] = (pid_t)pid;
        count++;
    }
    if (d)
        closedir(d);
    return count;
}

int th_programs_wait_gone(const char *dir, int ms, char *desc, size_t desclen)
{
    pid_t pids[64];
    int n = 0;
    for (int i = 0; i < ms / 50 + 1; i++) {
        if ((n = th_programs(dir, NULL, pids, 64)) == 0)
            break;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (desc && desclen) {
        desc[0] = '\0';
        for (int i = 0; i < n && i < 64; i++) {
            char cmd[512], line[600];
            size_t cl = proc_read(pids[i], "cmdline", cmd, sizeof cmd);
            for (size_t j = 0; j + 1 < cl; j++)
                if (cmd[j] == '\0')
                    cmd[j] = ' ';
            char st[512];
            proc_read(pids[i], "stat", st, sizeof st);
            const char *rp = strrchr(st, ')');
            snprintf(line, sizeof line, "[%d %s ppid=%ld] ", (int)pids[i], cmd,
                     rp && strlen(rp) > 4 ? strtol(rp + 4, NULL, 10) : -1L);
            strncat(desc, line, desclen - strlen(desc) - 1);
        }
    }
    return n;
}

int th_kill_programs(const char *dir)
{
    pid_t pids[256];
    int n = th_programs(dir, NULL, pids, 256);
    for (int i = 0; i < n && i < 256; i++)
        kill(pids[i], SIGKILL);
    return n;
}

const char *th_ca_file;
long th_tls_max;

double th_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static __thread double req_start;

static size_t on_body(char *data, size_t size, size_t nmemb, void *p)
{
    th_resp *r = p;
    size_t n = size * nmemb;
    if (r->t_first_body < 0)
        r->t_first_body = th_now() - req_start;
    char *nb = realloc(r->body, r->bodylen + n + 1);
    if (!nb)
        return 0;
    r->body = nb;
    memcpy(r->body + r->bodylen, data, n);
    r->bodylen += n;
    r->body[r->bodylen] = '\0';
    if (r->abort_after && r->bodylen >= r->abort_after)
        return 0; /* hang up, like a client that went away */
    return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *p)
{
    th_resp *r = p;
    size_t n = size * nmemb, have = strlen(r->headers);
    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0)
        have = 0; /* a new response (after 100 Continue): start over */
    if (have + n < sizeof r->headers) {
        memcpy(r->headers + have, data, n);
        r->headers[have + n] = '\0';
    }
    return n;
}

int th_http(const char *method, const char *url, const char *const *headers, const char *body,
            th_resp *r)
{
    memset(r, 0, sizeof *r);
    return th_http_ex(method, url, headers, body, r);
}

int th_http_ex(const char *method, const char *url, const char *const *headers, const char *body,
               th_resp *r)
{
    size_t abort_after = r->abort_after;
    memset(r, 0, sizeof *r);
    r->abort_after = abort_after;
    r->t_first_body = -1;
    req_start = th_now();
    r->body = calloc(1, 1);
    CURL *c = curl_easy_init();
    struct curl_slist *hl = NULL;
    for (const char *const *h = headers; h && *h; h++)
        hl = curl_slist_append(hl, *h);
    curl_easy_setopt(c, CURLOPT_URL, url);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    if (th_ca_file)
        curl_easy_setopt(c, CURLOPT_CAINFO, th_ca_file);
    if (th_tls_max)
        curl_easy_setopt(c, CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_0 | th_tls_max);
    CURLcode rc = curl_easy_perform(c);
    r->t_total = th_now() - req_start;
    if (rc == CURLE_WRITE_ERROR && r->abort_after)
        rc = CURLE_OK; /* we hung up on purpose */
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    else
        fprintf(stderr, "harness: %s %s: %s\n", method, url, curl_easy_strerror(rc));
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    return rc == CURLE_OK ? 0 : -1;
}

const char *th_header(const th_resp *r, const char *name, char *buf, size_t buflen)
{
    size_t nl = strlen(name);
    for (const char *line = r->headers; *line;) {
        const char *end = strstr(line, "\r\n");
        if (!end)
            end = line + strlen(line);
        if ((size_t)(end - line) > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            snprintf(buf, buflen, "%.*s", (int)(end - v), v);
            return buf;
        }
        line = *end ? end + 2 : end;
    }
    return NULL;
}

const char *th_hdr(const th_resp *r, const char *name)
{
    static char buf[4096];
    return th_header(r, name, buf, sizeof buf);
}

void th_resp_free(th_resp *r)
{
    free(r->body);
    r->body = NULL;
}

int th_run(char *const argv[], const char *const envp_extra[], char **err)
{
    int pfd[2];
    if (pipe(pfd) < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        dup2(pfd[1], STDERR_FILENO);
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, STDIN_FILENO);
        dup2(devnull, STDOUT_FILENO);
        for (const char *const *e = envp_extra; e && *e; e++)
            putenv((char *)*e);
        san_setenv();
        execv(argv[0], argv);
        _exit(127);
    }
    close(pfd[1]);
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    char chunk[1024];
    ssize_t n;
    while ((n = read(pfd[0], chunk, sizeof chunk)) > 0)
        fwrite(chunk, 1, (size_t)n, m);
    fclose(m);
    close(pfd[0]);
    int st;
    waitpid(pid, &st, 0);
    san_keep(buf, len, argv[0]);
    *err = buf;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

long th_raw_request(int port, const char *method, const char *target, const char *headers,
                    const char *body, char *out, size_t outlen)
{
    out[0] = '\0';
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char *req = NULL;
    int n = -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0)
        n = asprintf(&req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%sContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s", method, target, port, headers ? headers : "",
                     body ? strlen(body) : 0, body ? body : "");
    if (n < 0 || write(fd, req, (size_t)n) != n) {
        free(req);
        close(fd);
        return -1;
    }
    free(req);
    size_t got = 0;
    ssize_t r;
    while (got + 1 < outlen && (r = read(fd, out + got, outlen - 1 - got)) > 0)
        got += (size_t)r;
    out[got] = '\0';
    close(fd);
    long status = -1;
    if (sscanf(out, "HTTP/1.%*d %ld", &status) != 1)
        return -1;
    return status;
}
