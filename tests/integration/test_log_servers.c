/* Where the log lines go (mcpauth.conf `log`), on real servers: a refused
 * token's security line is found in the configured file under lighttpd
 * (FastCGI gate) and Apache (mod_mcpauth), and in a new file at the same
 * path once the old one was renamed (logrotate); the standalone gate
 * reopens its file on SIGHUP; with `log = syslog` the lines reach the
 * syslog socket with the configured facilities (a socket bound here stands
 * in for the daemon). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <curl/curl.h>

#include "harness.h"

/* The issuer's keys are never needed: every token sent is malformed, which
 * is refused before any key is looked for (port 9: nothing listens). */
#define RESOURCES                                                                                 \
    "[resource files]\n"                                                                          \
    "uri = http://127.0.0.1:@PORT@/mcp/files\n"                                                   \
    "authorization_servers = http://127.0.0.1:9\n"                                                \
    "[issuer remote]\n"                                                                           \
    "issuer = http://127.0.0.1:9\n"                                                               \
    "jwks_uri = http://127.0.0.1:9/jwks\n"

static const char file_conf[] = "log = file:@DIR@/logs/mcpauth.log\n" RESOURCES;
static const char syslog_conf[] = "log = syslog\n"
                                  "log_syslog_socket = @DIR@/syslog.sock\n"
                                  "log_facility = local3\n" RESOURCES;

static const char lighttpd_extra[] =
    "var.mcpauth_gate_prefix = \"/mcp\"\n"
    "var.mcpauth_gate_docroot = \"@DIR@/htdocs\"\n"
    "include \"@SRCDIR@/lighttpd/mcpauth-gate.conf\"\n";

static const char apache_extra[] =
    "LoadModule authn_core_module @MODDIR@/mod_authn_core.so\n"
    "LoadModule authz_user_module @MODDIR@/mod_authz_user.so\n"
    "LoadModule mcpauth_module @BUILDDIR@/apache/.libs/mod_mcpauth.so\n"
    "McpauthConfig @DIR@/mcpauth.conf\n"
    "Define MCPAUTH_GATE_LOCATION /mcp\n"
    "Include \"@BUILDDIR@/apache/mcpauth-module.conf\"\n";

static th_server srv;
static int syslog_fd = -1;
static char log_path[600];

/* The log directory, writable by the programs' user (Apache's children
 * run as www-data when the tests run as root); for syslog, the socket the
 * programs send to, bound before they start. */
static int prepare(th_server *s)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/logs", s->dir);
    if (mkdir(dir, 0750) < 0)
        return -1;
    struct passwd *pw = geteuid() == 0 && s->kind == TH_APACHE ? getpwnam("www-data") : NULL;
    if (pw && chown(dir, pw->pw_uid, pw->pw_gid) < 0)
        return -1;
    snprintf(log_path, sizeof log_path, "%s/mcpauth.log", dir);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(s->dir) + sizeof "/syslog.sock" > sizeof a.sun_path)
        return -1;
    memcpy(a.sun_path, s->dir, strlen(s->dir));
    strcat(a.sun_path, "/syslog.sock");
    syslog_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (syslog_fd < 0 || bind(syslog_fd, (struct sockaddr *)&a, sizeof a) < 0)
        return -1;
    return 0;
}

static void start(th_kind kind, const char *conf)
{
    const char *files[] = {"htdocs/mcp/files/hello.txt", "hello\n", NULL};
    th_options o = {conf, kind == TH_LIGHTTPD ? lighttpd_extra : apache_extra, files, prepare};
    if (th_start_ex(&srv, kind, &o) != 0)
        exit(EXIT_FAILURE);
}
static void start_lighttpd(void) { start(TH_LIGHTTPD, file_conf); }
static void start_apache(void) { start(TH_APACHE, file_conf); }
static void start_syslog(void) { start(TH_LIGHTTPD, syslog_conf); }
static void stop(void)
{
    th_stop(&srv);
    if (syslog_fd >= 0)
        close(syslog_fd);
    syslog_fd = -1;
}

/* Waits up to 10 s for needle in the file (a hang is the bug). */
static char *wait_in_file(const char *path, const char *needle)
{
    for (int i = 0; i < 100; i++) {
        char *t = th_read_file(path);
        if (strstr(t, needle))
            return t;
        free(t);
        usleep(100 * 1000);
    }
    return NULL;
}

/* A malformed token on the protected location: 401 and one security line. */
static void send_refused(void)
{
    char url[256];
    snprintf(url, sizeof url, "%s/mcp/files/hello.txt", srv.base);
    const char *h[] = {"Authorization: Bearer not.a.token", NULL};
    th_resp r;
    ck_assert_msg(th_http("GET", url, h, NULL, &r) == 0, "no response from %s", url);
    ck_assert_msg(r.status == 401, "status %ld: %s", r.status, r.body);
    ck_assert_ptr_null(strstr(r.body, "hello"));
    th_resp_free(&r);
}

static const char *prog_name(void)
{
    return srv.kind == TH_APACHE ? " mod_mcpauth[" : " mcpauth-gate[";
}

/* The line of needle in text, copied into buf. */
static const char *line_of(const char *text, const char *needle, char *buf, size_t cap)
{
    const char *p = strstr(text, needle);
    if (!p)
        return NULL;
    while (p > text && p[-1] != '\n')
        p--;
    size_t n = strcspn(p, "\n");
    snprintf(buf, cap, "%.*s", (int)(n < cap ? n : cap - 1), p);
    return buf;
}

START_TEST(refused_token_in_file)
{
    send_refused();
    char *t = wait_in_file(log_path, "event=token_rejected security=1");
    ck_assert_msg(t != NULL, "no security line in %s", log_path);
    char line[4096];
    line_of(t, "event=token_rejected", line, sizeof line);
    /* local time first ("2026-11-28T14:03:07.123+0100 "), then the usual line */
    struct tm tm;
    const char *rest = strptime(line, "%Y-%m-%dT%H:%M:%S", &tm);
    ck_assert_msg(rest && *rest == '.', "no timestamp: %s", line);
    ck_assert_msg(strstr(line, prog_name()) && strstr(line, "]: level=warn event=token_rejected "
                                                            "security=1 reason="),
                  "line: %s", line);
    ck_assert_msg(strstr(line, " client=127.0.0.1 ") && strstr(line, " resource=files"),
                  "line: %s", line);
    ck_assert_ptr_null(strstr(line, "not.a.token"));
    free(t);
    /* and not where stderr goes: lighttpd's own stderr, Apache's ErrorLog */
    char path[600];
    snprintf(path, sizeof path, "%s/%s", srv.dir,
             srv.kind == TH_APACHE ? "error.log" : "server.out");
    char *other = th_read_file(path);
    ck_assert_msg(strstr(other, "event=token_rejected") == NULL, "also in %s:\n%s", path, other);
    free(other);
    struct stat st;
    ck_assert_int_eq(stat(log_path, &st), 0);
    ck_assert_msg((st.st_mode & 0137) == 0, "mode %o", (unsigned)(st.st_mode & 0777));
}
END_TEST

/* logrotate renames the file (create: a new one may be there or not): the
 * next lines land in a new file at the configured path. */
START_TEST(rotated_file_reopened)
{
    send_refused();
    char *t = wait_in_file(log_path, "event=token_rejected");
    ck_assert_msg(t != NULL, "no first line in %s", log_path);
    free(t);
    char old[700];
    snprintf(old, sizeof old, "%s.1", log_path);
    ck_assert_int_eq(rename(log_path, old), 0);
    /* the programs look at the path at most once a second */
    int found = 0;
    for (int i = 0; i < 20 && !found; i++) { /* 10 s */
        send_refused();
        usleep(500 * 1000);
        t = th_read_file(log_path);
        found = strstr(t, "event=token_rejected security=1") != NULL;
        free(t);
    }
    ck_assert_msg(found, "no line in a new %s after the rename", log_path);
    t = th_read_file(old);
    ck_assert_msg(strstr(t, "event=token_rejected"), "the renamed file lost its lines");
    free(t);
    struct stat st;
    ck_assert_int_eq(stat(log_path, &st), 0);
    ck_assert_msg((st.st_mode & 0137) == 0, "mode %o", (unsigned)(st.st_mode & 0777));
}
END_TEST

/* One datagram (NUL-terminated) containing needle, within 10 s. */
static int recv_syslog(const char *needle, char *buf, size_t cap)
{
    for (int waited = 0; waited < 10000;) {
        struct pollfd p = {syslog_fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0) {
            waited += 100;
            continue;
        }
        ssize_t n = recv(syslog_fd, buf, cap - 1, 0);
        if (n < 0)
            return -1;
        buf[n] = '\0';
        if (strstr(buf, needle))
            return 0;
    }
    return -1;
}

/* "<PRI>Mmm dd hh:mm:ss mcpauth-gate[PID]: level=...": PRI is facility * 8
 * + severity (RFC 3164); security lines use authpriv (10), the others the
 * configured local3 (19). */
static void assert_syslog(const char *msg, int pri, const char *after_prog)
{
    char want[32];
    snprintf(want, sizeof want, "<%d>", pri);
    ck_assert_msg(strncmp(msg, want, strlen(want)) == 0, "want %s: %s", want, msg);
    struct tm tm;
    const char *rest = strptime(msg + strlen(want), "%b %e %H:%M:%S ", &tm);
    ck_assert_msg(rest != NULL, "no timestamp: %s", msg);
    /* the gate, or mcpauth-metadata (mcpauth-fcgi.conf) for the start line */
    ck_assert_msg(strncmp(rest, "mcpauth-", 8) == 0, "no program: %s", msg);
    const char *colon = strstr(rest, "]: ");
    ck_assert_msg(colon && strncmp(colon + 3, after_prog, strlen(after_prog)) == 0, "%s", msg);
    ck_assert_msg(msg[strlen(msg) - 1] != '\n', "a newline in the record: %s", msg);
}

START_TEST(syslog_facilities)
{
    char msg[8192];
    /* start-up lines, sent when lighttpd spawned the gate */
    ck_assert_msg(recv_syslog("event=start ", msg, sizeof msg) == 0, "no start line");
    assert_syslog(msg, 19 * 8 + 6, "level=info event=start "); /* local3.info */
    send_refused();
    ck_assert_msg(recv_syslog("event=token_rejected", msg, sizeof msg) == 0,
                  "no security line on the socket");
    assert_syslog(msg, 10 * 8 + 4, "level=warn event=token_rejected security=1 "); /* authpriv.warning */
    ck_assert_msg(strstr(msg, " client=127.0.0.1 "), "%s", msg);
    char path[600];
    snprintf(path, sizeof path, "%s/server.out", srv.dir);
    char *other = th_read_file(path);
    ck_assert_msg(strstr(other, "event=token_rejected") == NULL, "also on stderr:\n%s", other);
    free(other);
}
END_TEST

/* --- the standalone gate (systemd, --listen): SIGHUP reopens ------------ */

static char sa_dir[] = "/tmp/mcpauth-logtest-XXXXXX";

START_TEST(standalone_sighup_reopens)
{
    ck_assert_ptr_nonnull(mkdtemp(sa_dir));
    int port = th_free_port();
    char conf[2048], path[700], old[700], cfgp[700], out[700], listen[64];
    snprintf(path, sizeof path, "%s/gate.log", sa_dir);
    snprintf(old, sizeof old, "%s/gate.log.1", sa_dir);
    snprintf(conf, sizeof conf,
             "log = file:%s\n"
             "[resource files]\n"
             "uri = http://127.0.0.1:%d/mcp/files\n"
             "authorization_servers = http://127.0.0.1:9\n"
             "[issuer remote]\n"
             "issuer = http://127.0.0.1:9\n"
             "jwks_uri = http://127.0.0.1:9/jwks\n",
             path, port);
    ck_assert_int_eq(th_write_file(sa_dir, "mcpauth.conf", conf), 0);
    snprintf(cfgp, sizeof cfgp, "%s/mcpauth.conf", sa_dir);
    snprintf(out, sizeof out, "%s/gate.out", sa_dir);
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    char prog[600];
    snprintf(prog, sizeof prog, "%s/fcgi/mcpauth-gate", th_builddir());
    char *argv[] = {prog, "--config", cfgp, "--listen", listen, NULL};
    pid_t pid = th_spawn(argv, NULL, out);
    ck_assert_int_gt(pid, 0);
    ck_assert_int_eq(th_wait_port(port, 10000), 0);
    char *t = wait_in_file(path, "event=start ");
    ck_assert_msg(t != NULL, "no start line in %s", path);
    free(t);
    ck_assert_int_eq(rename(path, old), 0);
    ck_assert_int_eq(kill(pid, SIGHUP), 0);
    t = wait_in_file(path, "event=sighup log=reopened");
    ck_assert_msg(t != NULL, "no new %s after SIGHUP", path);
    free(t);
    ck_assert_int_eq(kill(pid, SIGTERM), 0);
    int st = 0, rc = th_wait_exit(pid, 10000, &st);
    if (rc != 0)
        th_kill(pid);
    ck_assert_msg(rc == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "SIGTERM: %#x", st);
    t = th_read_file(path);
    ck_assert_msg(strstr(t, "event=stopped "), "stopped line not in the new file:\n%s", t);
    free(t);
    t = th_read_file(old);
    ck_assert_msg(strstr(t, "event=start ") && !strstr(t, "event=sighup"), "renamed file:\n%s",
                  t);
    free(t);
    t = th_read_file(out); /* stderr has nothing of it */
    ck_assert_msg(strstr(t, "event=") == NULL, "on stderr:\n%s", t);
    free(t);
    char cmd[800];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", sa_dir);
    if (!getenv("MCPAUTH_KEEP_TEST_DIRS") && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", sa_dir);
}
END_TEST

/* A log file that cannot be opened stops the program at start-up, with the
 * reason on stderr (--check says it too). */
START_TEST(unwritable_log_stops_start)
{
    char dir[] = "/tmp/mcpauth-logtest-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char conf[1024], cfgp[600], prog[600];
    snprintf(conf, sizeof conf,
             "log = file:%s/missing/dir/gate.log\n"
             "[resource files]\n"
             "uri = http://127.0.0.1:1/mcp/files\n"
             "authorization_servers = http://127.0.0.1:9\n",
             dir);
    ck_assert_int_eq(th_write_file(dir, "mcpauth.conf", conf), 0);
    snprintf(cfgp, sizeof cfgp, "%s/mcpauth.conf", dir);
    snprintf(prog, sizeof prog, "%s/fcgi/mcpauth-gate", th_builddir());
    char *argv[] = {prog, "--config", cfgp, "--check", NULL};
    char *err = NULL;
    int rc = th_run(argv, NULL, &err);
    ck_assert_msg(rc != 0, "--check passed");
    ck_assert_msg(err && strstr(err, "cannot start: log file ") && strstr(err, "missing/dir"),
                  "stderr: %s", err ? err : "");
    free(err);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}
END_TEST

static TCase *file_case(const char *name, void (*setup)(void))
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, setup, stop);
    tcase_add_test(tc, refused_token_in_file);
    tcase_add_test(tc, rotated_file_reopened);
    return tc;
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    Suite *s = suite_create("log");
    suite_add_tcase(s, file_case("lighttpd", start_lighttpd));
#ifdef MCPAUTH_HAVE_APXS
    suite_add_tcase(s, file_case("apache", start_apache));
#else
    (void)start_apache;
    fprintf(stderr, "check_log: mod_mcpauth not built (no apxs): Apache case left out\n");
#endif
    TCase *tc = tcase_create("syslog");
    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, start_syslog, stop);
    tcase_add_test(tc, syslog_facilities);
    suite_add_tcase(s, tc);
    tc = tcase_create("standalone");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, standalone_sighup_reopens);
    tcase_add_test(tc, unwritable_log_stops_start);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    curl_global_cleanup();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
