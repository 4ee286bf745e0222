/* The shipped fail2ban filter (contrib/fail2ban/filter.d/mcpauth.conf)
 * against the lines the programs really write: lighttpd with the gate and
 * the built-in AS logging to a file; refused tokens, a registration flood
 * and failed client logins are sent, then `fail2ban-regex` must find each
 * one, with the client's address and nothing else (not an address a
 * client smuggled into a value, not the start-up lines).  Exits 77 (SKIP)
 * when fail2ban-regex is not installed (Debian: fail2ban). */
#define _GNU_SOURCE
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>
#include <curl/curl.h>

#include "harness.h"

static const char conf[] =
    "log = file:@DIR@/logs/mcpauth.log\n"
    "runtime_dir = @DIR@\n"
    "[resource files]\n"
    "uri = http://127.0.0.1:@PORT@/mcp/files\n"
    "authorization_servers = http://127.0.0.1:@PORT@\n"
    "[authorization_server]\n"
    "issuer = http://127.0.0.1:@PORT@\n"
    "state_dir = @DIR@/state\n"
    "registration_limit = 2\n";

static const char lighttpd_extra[] =
    "var.mcpauth_gate_prefix = \"/mcp\"\n"
    "var.mcpauth_gate_docroot = \"@DIR@/htdocs\"\n"
    "include \"@SRCDIR@/lighttpd/mcpauth-gate.conf\"\n"
    "var.mcpauth_as_prefix = \"/oauth2\"\n"
    "var.mcpauth_htpasswd = \"@DIR@/htpasswd\"\n"
    "include \"@SRCDIR@/lighttpd/mcpauth-as.conf\"\n";

static th_server srv;
static char fail2ban_regex[512];

static int prepare(th_server *s)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "mkdir -m 750 %s/logs && : > %s/htpasswd && "
             "%s/tools/mcpauth --config %s/mcpauth.conf init >%s/init.log 2>&1",
             s->dir, s->dir, th_builddir(), s->dir, s->dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "prepare failed: see %s/init.log\n", s->dir);
        return -1;
    }
    return 0;
}

static void start(void)
{
    const char *files[] = {"htdocs/mcp/files/hello.txt", "hello\n", NULL};
    th_options o = {conf, lighttpd_extra, files, prepare};
    if (th_start_ex(&srv, TH_LIGHTTPD, &o) != 0)
        exit(EXIT_FAILURE);
}
static void stop(void)
{
    th_stop(&srv);
}

static long http_send(const char *method, const char *path, const char *const *headers,
                 const char *body)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", srv.base, path);
    th_resp r;
    ck_assert_msg(th_http(method, url, headers, body, &r) == 0, "no response from %s", url);
    long status = r.status;
    th_resp_free(&r);
    return status;
}

/* What fail2ban-regex prints for the log with the shipped filter: with
 * "-o ip", one address per matched line. */
static char *run_filter(const char *log, const char *out_opt)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' %s '%s' '%s/contrib/fail2ban/filter.d/mcpauth.conf' 2>&1",
             fail2ban_regex, out_opt, log, th_srcdir());
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    char *buf = calloc(1, 1 << 20);
    ck_assert_ptr_nonnull(buf);
    buf[fread(buf, 1, (1 << 20) - 1, p)] = '\0';
    int rc = pclose(p);
    ck_assert_msg(rc == 0, "%s: status %d\n%s", cmd, rc, buf);
    return buf;
}

START_TEST(filter_finds_each_attack_and_only_its_address)
{
    /* three refused tokens at the gate */
    const char *bad[] = {"Authorization: Bearer not.a.token", NULL};
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(http_send("GET", "/mcp/files/hello.txt", bad, NULL), 401);
    /* a registration flood: the limit is 2 an hour, the third is refused */
    const char *json[] = {"Content-Type: application/json", NULL};
    const char *reg = "{\"redirect_uris\":[\"http://127.0.0.1:1/cb\"],\"client_name\":\"f2b\"}";
    ck_assert_int_eq(http_send("POST", "/oauth2/register", json, reg), 201);
    ck_assert_int_eq(http_send("POST", "/oauth2/register", json, reg), 201);
    ck_assert_int_eq(http_send("POST", "/oauth2/register", json, reg), 429);
    /* failed client logins, one with an address smuggled into its client_id */
    const char *form[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    ck_assert_int_eq(http_send("POST", "/oauth2/token", form,
                          "grant_type=authorization_code&code=x&client_id=nobody"
                          "&client_secret=wrong"),
                     401);
    ck_assert_int_eq(http_send("POST", "/oauth2/token", form,
                          "grant_type=authorization_code&code=x"
                          "&client_id=a+client%3D10.9.8.7+b&client_secret=wrong"),
                     401);

    char log[600];
    snprintf(log, sizeof log, "%s/logs/mcpauth.log", srv.dir);
    char *text = NULL;
    for (int i = 0; i < 100; i++) { /* the lines are written before the answers; 10 s at most */
        FILE *f = fopen(log, "r");
        free(text);
        text = calloc(1, 1 << 20);
        if (f) {
            text[fread(text, 1, (1 << 20) - 1, f)] = '\0';
            fclose(f);
        }
        if (strstr(text, "event=registration_limited") && strstr(text, "10.9.8.7"))
            break;
        usleep(100 * 1000);
    }
    ck_assert_msg(strstr(text, "client=10.9.8.7"), "the smuggled client_id is not logged:\n%s",
                  text);
    int lines = 0;
    for (const char *p = text; (p = strstr(p, " security=1 ")) != NULL; p++)
        lines++;
    ck_assert_msg(lines == 6, "%d security lines, want 6:\n%s", lines, text);

    char *ips = run_filter(log, "-o ip");
    int n = 0;
    for (char *save, *l = strtok_r(ips, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        ck_assert_msg(strcmp(l, "127.0.0.1") == 0, "banned address \"%s\"\n%s", l, text);
        n++;
    }
    ck_assert_msg(n == 6, "fail2ban-regex matched %d lines, want 6 (3 tokens, 1 registration "
                          "flood, 2 client logins):\n%s",
                  n, text);
    free(ips);
    /* and the summary: the start lines are read and not matched */
    char *sum = run_filter(log, "");
    ck_assert_msg(strstr(sum, "6 matched"), "%s", sum);
    ck_assert_msg(strstr(text, "event=start "), "no start lines in\n%s", text);
    free(sum);
    free(text);
}
END_TEST

static int find_program(const char *name, char *out, size_t cap)
{
    const char *path = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof dirs, "%s:/usr/bin:/usr/sbin:/usr/local/bin", path ? path : "");
    for (char *save, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(out, cap, "%s/%s", d, name);
        if (access(out, X_OK) == 0)
            return 0;
    }
    return -1;
}

int main(void)
{
    if (find_program("fail2ban-regex", fail2ban_regex, sizeof fail2ban_regex) != 0) {
        fprintf(stderr, "check_fail2ban: SKIP: fail2ban-regex not found (Debian: apt-get install "
                        "fail2ban)\n");
        return 77;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    Suite *s = suite_create("fail2ban");
    TCase *tc = tcase_create("lighttpd");
    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, start, stop);
    tcase_add_test(tc, filter_finds_each_attack_and_only_its_address);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    curl_global_cleanup();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
