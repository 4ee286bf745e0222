/* Process lifecycle on real lighttpd and real Apache: every mcpauth program
 * ends when the web server that runs it stops, restarts gracefully or dies
 * (none is left behind under PID 1), a program told to stop ends its open
 * streams (the client sees the stream end, not a hang), lets a short request
 * in flight finish and exits within the bound, and the standalone gate
 * (--listen, as under mod_authnz_fcgi or systemd) exits 0 on SIGTERM and
 * SIGINT and keeps serving on SIGHUP (which only reopens its log). */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>
#include <curl/curl.h>

#include "../support/tokens.h"
#include "harness.h"

/* The programs' bound (lib/lifecycle.h) and a margin for slow machines. */
#define BOUND_S 10

static const char conf_tmpl[] =
    "runtime_dir = @DIR@\n"
    "log_level = info\n"
    "backend_timeout = 10\n"
    "[resource files]\n"
    "uri = http://127.0.0.1:@PORT@/mcp/files\n"
    "authorization_servers = http://127.0.0.1:@PORT@/ext\n"
    "backend = http://127.0.0.1:%d/mcp\n"
    "[resource static]\n"
    "uri = http://127.0.0.1:@PORT@/static\n"
    "authorization_servers = http://127.0.0.1:@PORT@/ext http://127.0.0.1:@PORT@\n"
    "[issuer ext]\n"
    "issuer = http://127.0.0.1:@PORT@/ext\n"
    "jwks_file = @DIR@/jwks.json\n"
    "[authorization_server]\n"
    "issuer = http://127.0.0.1:@PORT@\n"
    "state_dir = @DIR@/state\n";

static const char lighttpd_extra[] =
    "var.mcpauth_proxy_prefix = \"/mcp\"\n"
    "include \"@SRCDIR@/lighttpd/mcpauth-proxy.conf\"\n"
    "var.mcpauth_gate_prefix = \"/static\"\n"
    "var.mcpauth_gate_docroot = \"@DIR@/htdocs\"\n"
    "include \"@SRCDIR@/lighttpd/mcpauth-gate.conf\"\n"
    "var.mcpauth_as_prefix = \"/oauth2\"\n"
    "var.mcpauth_htpasswd = \"@DIR@/htpasswd\"\n"
    "include \"@SRCDIR@/lighttpd/mcpauth-as.conf\"\n";

static const char apache_extra[] =
    "LoadModule authnz_fcgi_module @MODDIR@/mod_authnz_fcgi.so\n"
    "LoadModule auth_basic_module @MODDIR@/mod_auth_basic.so\n"
    "LoadModule authn_core_module @MODDIR@/mod_authn_core.so\n"
    "LoadModule authn_file_module @MODDIR@/mod_authn_file.so\n"
    "LoadModule authz_user_module @MODDIR@/mod_authz_user.so\n"
    "LoadModule headers_module @MODDIR@/mod_headers.so\n"
    "Define MCPAUTH_PROXY_LOCATION /mcp\n"
    "Include \"@SRCDIR@/apache/mcpauth-proxy.conf\"\n"
    "Define MCPAUTH_GATE_ADDR 127.0.0.1:@AUXPORT@\n"
    "Define MCPAUTH_GATE_LOCATION /static\n"
    "Include \"@SRCDIR@/apache/mcpauth-gate.conf\"\n"
    "Define MCPAUTH_AS_LOCATION /oauth2\n"
    "Define MCPAUTH_HTPASSWD @DIR@/htpasswd\n"
    "Include \"@SRCDIR@/apache/mcpauth-as.conf\"\n";

static tk_key *rsa;
static char *jwks;
static th_server srv;
static th_kind current;
static pid_t backend_pid = -1, gate_pid = -1;
static int backend_port;
static char backend_dir[] = "/tmp/mcpauth-lcbackend-XXXXXX";

static int prepare(th_server *s)
{
    char cmd[2048];
    int as_root_apache = current == TH_APACHE && geteuid() == 0;
    snprintf(cmd, sizeof cmd, "%s/tools/mcpauth --config %s/mcpauth.conf init %s >%s/init.log 2>&1",
             th_builddir(), s->dir, as_root_apache ? "--owner www-data" : "", s->dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "mcpauth init failed: see %s/init.log\n", s->dir);
        return -1;
    }
    if (th_write_file(s->dir, "htpasswd", "nobody:!\n") < 0)
        return -1;
    return th_give_to_apache(s); /* runtime_dir must be writable by the server's user */
}

static void stop(void);

static void start(th_kind kind)
{
    current = kind;
    backend_pid = th_start_example_server(backend_dir, &backend_port);
    ck_assert_msg(backend_pid > 0, "the example MCP server did not start");
    char *conf = NULL;
    ck_assert_int_ge(asprintf(&conf, conf_tmpl, backend_port), 0);
    const char *files[] = {"jwks.json", jwks, "htdocs/static/hello.txt", "hello\n", NULL};
    th_options o = {conf, kind == TH_LIGHTTPD ? lighttpd_extra : apache_extra, files, prepare};
    int rc = th_start_ex(&srv, kind, &o);
    free(conf);
    if (rc != 0)
        stop();
    ck_assert_msg(rc == 0, "%s did not start", th_kind_name(kind));
    if (kind == TH_APACHE) {
        /* mod_authnz_fcgi talks to a running FastCGI server: the gate runs
         * standalone, as the shipped systemd unit runs it */
        gate_pid = th_start_gate(&srv);
        rc = gate_pid > 0 ? 0 : -1;
        if (rc != 0)
            stop();
        ck_assert_msg(rc == 0, "the gate did not start");
    }
}
static void start_lighttpd(void) { start(TH_LIGHTTPD); }
static void start_apache(void) { start(TH_APACHE); }

static void stop(void)
{
    /* whatever a failed test left running goes, by PID */
    if (srv.dir[0])
        th_kill_programs(srv.dir);
    th_kill(gate_pid);
    gate_pid = -1;
    th_stop(&srv);
    th_kill(backend_pid);
    backend_pid = -1;
}

static char *token(void)
{
    char iss[256];
    snprintf(iss, sizeof iss, "%s/ext", srv.base);
    char *c = th_claims(&srv, iss, "/mcp/files", NULL, NULL, 600);
    char *t = tk_mint(rsa, c, NULL);
    free(c);
    return t;
}

static long get(const char *path, const char *method, const char *body)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", srv.base, path);
    const char *h[] = {"Content-Type: application/json",
                       "Accept: application/json, text/event-stream", NULL};
    th_resp r;
    int rc = th_http(method, url, h, body, &r);
    long status = rc == 0 ? r.status : -1;
    th_resp_free(&r);
    return status;
}

/* Sends a request to every program so that each one runs, and checks that
 * each of them is there. */
static void exercise_all(void)
{
    ck_assert_int_eq(get("/.well-known/oauth-protected-resource/mcp/files", "GET", NULL), 200);
    ck_assert_int_eq(get("/.well-known/oauth-authorization-server", "GET", NULL), 200);
    ck_assert_int_eq(get("/mcp/files", "POST", "{}"), 401);
    ck_assert_int_eq(get("/static/hello.txt", "GET", NULL), 401);
    ck_assert_int_eq(get("/oauth2/jwks", "GET", NULL), 200);
    static const char *const names[] = {"mcpauth-metadata", "mcpauth-proxy", "mcpauth-gate",
                                        "mcpauth-as", NULL};
    for (int i = 0; names[i]; i++) {
        pid_t p[64];
        ck_assert_msg(th_programs(srv.dir, names[i], p, 64) > 0, "no %s process found", names[i]);
    }
}

/* The standalone gate (Apache) is not the web server's child: it is
 * stopped as systemd stops it, and must exit 0 promptly. */
static void stop_standalone_gate(void)
{
    if (gate_pid <= 0)
        return;
    kill(gate_pid, SIGTERM);
    int st = 0;
    int rc = th_wait_exit(gate_pid, 3000, &st);
    ck_assert_msg(rc == 0, "the standalone gate ignored SIGTERM");
    gate_pid = -1;
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the gate ended with status %#x", st);
}

static void assert_none_left(const char *what)
{
    char desc[4096];
    int left = th_programs_wait_gone(srv.dir, 5000, desc, sizeof desc);
    ck_assert_msg(left == 0, "%s %s: %d mcpauth process(es) left behind: %s", th_kind_name(current),
                  what, left, desc);
}

/* Stops the web server with sig, waits for it (not for its children), and
 * expects no mcpauth process to survive it. */
static void stop_server_with(int sig, const char *what)
{
    exercise_all();
    ck_assert_msg(th_signal_wait(&srv, sig, 15000) == 0, "%s did not stop on %s",
                  th_kind_name(current), what);
    stop_standalone_gate();
    assert_none_left(what);
}

START_TEST(stop_leaves_nothing)
{
    stop_server_with(SIGTERM, "stop (SIGTERM)");
}
END_TEST

START_TEST(graceful_stop_leaves_nothing)
{
    /* lighttpd: SIGINT; apachectl -k graceful-stop: SIGWINCH */
    stop_server_with(current == TH_LIGHTTPD ? SIGINT : SIGWINCH, "graceful stop");
}
END_TEST

/* lighttpd dies without stopping anything: its programs notice that their
 * parent is gone.  (Apache is left out: when its parent process is killed,
 * its children, mod_fcgid's process manager among them, go on serving, and
 * the programs' parent, that manager, is still there.) */
START_TEST(server_killed_leaves_nothing)
{
    stop_server_with(SIGKILL, "killed (SIGKILL)");
}
END_TEST

START_TEST(graceful_restart_replaces_programs)
{
    exercise_all();
    pid_t old[64];
    int n = th_programs(srv.dir, NULL, old, 64);
    ck_assert_int_gt(n, 0);
    /* lighttpd 1.4.56+: SIGUSR1; apachectl -k graceful: SIGUSR1 */
    kill(srv.pid, SIGUSR1);
    /* every program of the old generation ends (lighttpd waits for them
     * before it starts again; Apache's mod_fcgid replaces them) */
    int left = 0;
    for (int i = 0; i < 100; i++) {
        pid_t now[64];
        int m = th_programs(srv.dir, NULL, now, 64);
        left = 0;
        for (int j = 0; j < n && j < 64; j++)
            for (int k = 0; k < m && k < 64; k++)
                left += now[k] == old[j] && old[j] != gate_pid; /* not Apache's child */
        if (left == 0)
            break;
        usleep(100 * 1000);
    }
    ck_assert_msg(left == 0, "%s graceful restart: %d old mcpauth process(es) still running",
                  th_kind_name(current), left);
    /* and the server serves again, with new ones */
    int up = 0;
    for (int i = 0; i < 100 && !up; i++) {
        up = get("/.well-known/oauth-protected-resource/mcp/files", "GET", NULL) == 200;
        if (!up)
            usleep(100 * 1000);
    }
    ck_assert_msg(up, "%s did not serve again after a graceful restart", th_kind_name(current));
    exercise_all();
}
END_TEST

typedef struct {
    char url[512];
    char auth[8192];
    const char *h[8];
    const char *body;
    th_resp r;
    int rc;
    double t_end; /* monotonic seconds */
} call_arg;

static void *call(void *p)
{
    call_arg *a = p;
    a->rc = th_http("POST", a->url, a->h, a->body, &a->r);
    a->t_end = th_now();
    return NULL;
}

/* POST /mcp/files with the token, both media types accepted, and up to
 * three more header lines. */
static void call_prepare(call_arg *a, const char *tok, const char *body, const char *h1,
                         const char *h2, const char *h3)
{
    memset(a, 0, sizeof *a);
    snprintf(a->url, sizeof a->url, "%s/mcp/files", srv.base);
    snprintf(a->auth, sizeof a->auth, "Authorization: Bearer %s", tok);
    const char *h[] = {a->auth, "Accept: application/json, text/event-stream",
                       "Content-Type: application/json", h1, h2, h3, NULL};
    memcpy(a->h, h, sizeof h);
    a->body = body;
}

START_TEST(sigterm_ends_streams_and_finishes_requests)
{
    char *tok = token();
    /* A plain JSON answer that takes 4 s: the example server streams
     * whatever accepts text/event-stream, except the answers to a batch,
     * which exist in the 2025-03-26 session era only. */
    static call_arg init, stream, json;
    call_prepare(&init, tok,
                 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{"
                 "\"protocolVersion\":\"2025-03-26\",\"capabilities\":{},\"clientInfo\":{"
                 "\"name\":\"t\",\"version\":\"1\"}}}", NULL, NULL, NULL);
    call(&init);
    char sid[300] = "Mcp-Session-Id: ", buf[256];
    ck_assert_msg(init.rc == 0 && init.r.status == 200, "initialize: %ld %s", init.r.status,
                  init.r.body);
    ck_assert_msg(th_header(&init.r, "Mcp-Session-Id", buf, sizeof buf) != NULL, "no session");
    strncat(sid, buf, sizeof sid - strlen(sid) - 1);
    th_resp_free(&init.r);
    call_prepare(&json, tok,
                 "[{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"tools/call\",\"params\":{\"name\":"
                 "\"countdown\",\"arguments\":{\"n\":8,\"delay_ms\":500}}}]",
                 "MCP-Protocol-Version: 2025-03-26", sid, NULL);
    /* and an SSE stream of 8 s */
    call_prepare(&stream, tok,
                 "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{\"name\":"
                 "\"countdown\",\"arguments\":{\"n\":20,\"delay_ms\":400}}}",
                 "MCP-Protocol-Version: 2026-07-28", "Mcp-Method: tools/call", "Mcp-Name: countdown");
    pthread_t ts, tj;
    pthread_create(&tj, NULL, call, &json);
    pthread_create(&ts, NULL, call, &stream);
    usleep(1500 * 1000); /* both under way, the stream has sent events */
    pid_t p[64];
    int n = th_programs(srv.dir, "mcpauth-proxy", p, 64);
    ck_assert_int_gt(n, 0);
    double t_sig = th_now();
    for (int i = 0; i < n && i < 64; i++)
        kill(p[i], SIGTERM);
    pthread_join(ts, NULL);
    pthread_join(tj, NULL);

    /* the stream ended cleanly (terminating chunk: curl says OK) and soon,
     * after some events but before its result */
    ck_assert_msg(stream.rc == 0, "the stream did not end cleanly");
    ck_assert_int_eq(stream.r.status, 200);
    ck_assert_msg(strstr(stream.r.body, "notifications/progress") != NULL, "no event: %s",
                  stream.r.body);
    ck_assert_msg(strstr(stream.r.body, "\"result\"") == NULL,
                  "the stream ran to its end although the proxy was told to stop");
    ck_assert_msg(stream.t_end - t_sig < 4.0, "the stream ended %.1f s after SIGTERM",
                  stream.t_end - t_sig);
    /* the request in flight was answered in full */
    ck_assert_msg(json.rc == 0 && json.r.status == 200, "JSON call: %d %ld %s", json.rc,
                  json.r.status, json.r.body);
    ck_assert_msg(strstr(json.r.body, "\"result\"") != NULL, "JSON call: %s", json.r.body);
    th_resp_free(&stream.r);
    th_resp_free(&json.r);

    /* every proxy told to stop is gone within the bound */
    int left = 0;
    for (int i = 0; i < (BOUND_S + 2) * 10; i++) {
        pid_t now[64];
        int m = th_programs(srv.dir, "mcpauth-proxy", now, 64);
        left = 0;
        for (int j = 0; j < n && j < 64; j++)
            for (int k = 0; k < m && k < 64; k++)
                left += now[k] == p[j];
        if (left == 0)
            break;
        usleep(100 * 1000);
    }
    ck_assert_msg(left == 0, "%d proxy process(es) still running after SIGTERM", left);
    ck_assert_msg(th_log_count(&srv, "event=stopping reason=SIGTERM") > 0,
                  "no stopping line in the log");
    ck_assert_msg(th_log_count(&srv, "event=request_ended reason=shutdown") > 0,
                  "the stream's end was not logged as a shutdown");
    free(tok);
}
END_TEST

static TCase *server_case(const char *name, void (*setup)(void))
{
    TCase *tc = tcase_create(name);
    /* each test stops its own server */
    tcase_add_checked_fixture(tc, setup, stop);
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, stop_leaves_nothing);
    tcase_add_test(tc, graceful_stop_leaves_nothing);
    if (setup == start_lighttpd)
        tcase_add_test(tc, server_killed_leaves_nothing);
    tcase_add_test(tc, graceful_restart_replaces_programs);
    tcase_add_test(tc, sigterm_ends_streams_and_finishes_requests);
    return tc;
}

/* ----------------------------------------------- the standalone gate */

static char gate_dir[] = "/tmp/mcpauth-lcgate-XXXXXX";

static pid_t gate_start(int *port)
{
    char conf[1024];
    snprintf(conf, sizeof conf,
             "[resource files]\n"
             "uri = http://127.0.0.1:8080/mcp/files\n"
             "authorization_servers = http://127.0.0.1:8080\n"
             "[issuer local]\n"
             "issuer = http://127.0.0.1:8080\n"
             "jwks_file = %s/jwks.json\n", gate_dir);
    ck_assert_int_eq(th_write_file(gate_dir, "mcpauth.conf", conf), 0);
    ck_assert_int_eq(th_write_file(gate_dir, "jwks.json", jwks), 0);
    /* no web server: th_start_gate needs only the directory and port */
    th_server g = {.pid = -1, .aux_port = th_free_port()};
    snprintf(g.dir, sizeof g.dir, "%s", gate_dir);
    *port = g.aux_port;
    pid_t pid = th_start_gate(&g);
    ck_assert_msg(pid > 0, "the gate did not start");
    return pid;
}

/* ------------------------------------------------- CGI (mod_cgi) */

/* Runs the gate as a CGI program: env as a web server sets it, stdin
 * empty, stdout read to its end into out (NUL-terminated).  When
 * close_early, our end of stdout is closed at once, as Apache does for a
 * client that left.  Returns the wait status. */
static int run_cgi(char *const env[], char *out, size_t cap, int close_early)
{
    char prog[512], cfgp[600];
    snprintf(prog, sizeof prog, "%s/fcgi/mcpauth-gate", th_builddir());
    snprintf(cfgp, sizeof cfgp, "%s/mcpauth.conf", gate_dir);
    int po[2];
    ck_assert_int_eq(pipe(po), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(po[1], 1);
        dup2(null, 2);
        close(po[0]);
        /* the sanitizer settings of a sanitized build reach it too */
        char *envx[32];
        int k = 0;
        for (; env[k] && k < 28; k++)
            envx[k] = env[k];
        static const char *const pass[] = {"ASAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS"};
        for (size_t j = 0; j < 3; j++) {
            const char *v = getenv(pass[j]);
            char *e;
            if (v && asprintf(&e, "%s=%s", pass[j], v) > 0)
                envx[k++] = e;
        }
        envx[k] = NULL;
        execve(prog, (char *[]){prog, "--config", cfgp, NULL}, envx);
        _exit(127);
    }
    close(po[1]);
    size_t n = 0;
    if (close_early) {
        close(po[0]);
    } else {
        ssize_t r;
        while (n + 1 < cap && (r = read(po[0], out + n, cap - 1 - n)) > 0)
            n += (size_t)r;
        close(po[0]);
    }
    if (out)
        out[n] = '\0';
    int st = 0;
    for (int i = 0; i < 100 && waitpid(pid, &st, WNOHANG) == 0; i++)
        usleep(100 * 1000);
    if (waitpid(pid, &st, WNOHANG) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        ck_abort_msg("the CGI program did not exit");
    }
    return st;
}

/* .htaccess kits on hosts without CGIPassAuth hand the header over by a
 * RewriteRule; after Apache's internal redirect it arrives as
 * REDIRECT_HTTP_AUTHORIZATION.  The gate must read it there, and only when
 * HTTP_AUTHORIZATION itself is absent. */
START_TEST(cgi_redirected_authorization_reaches_gate)
{
    int port;
    pid_t pid = gate_start(&port); /* writes the configuration and JWKS */
    th_kill(pid);
    char out[8192];
    char *redirected[] = {"GATEWAY_INTERFACE=CGI/1.1", "REQUEST_METHOD=GET",
                          "REQUEST_URI=/mcp/files", "SCRIPT_NAME=/mcp/files",
                          "HTTP_HOST=127.0.0.1:8080", "REMOTE_ADDR=127.0.0.1",
                          "REDIRECT_HTTP_AUTHORIZATION=Bearer x.y.z", NULL};
    int st = run_cgi(redirected, out, sizeof out, 0);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
    ck_assert_msg(strstr(out, "Status: 401") && strstr(out, "error=\"invalid_token\""),
                  "the redirected header did not reach the gate:\n%s", out);
    char *none[] = {"GATEWAY_INTERFACE=CGI/1.1", "REQUEST_METHOD=GET", "REQUEST_URI=/mcp/files",
                    "SCRIPT_NAME=/mcp/files", "HTTP_HOST=127.0.0.1:8080",
                    "REMOTE_ADDR=127.0.0.1", NULL};
    run_cgi(none, out, sizeof out, 0);
    ck_assert_msg(strstr(out, "Status: 401") && !strstr(out, "error="),
                  "no header must be a plain challenge:\n%s", out);
    /* a valid token in the redirected variable is accepted */
    char *c = tk_claims("http://127.0.0.1:8080", "http://127.0.0.1:8080/mcp/files", NULL, 600);
    char *tok = tk_mint(rsa, c, NULL), auth[4096];
    snprintf(auth, sizeof auth, "REDIRECT_HTTP_AUTHORIZATION=Bearer %s", tok);
    free(tok);
    free(c);
    redirected[6] = auth;
    run_cgi(redirected, out, sizeof out, 0);
    ck_assert_msg(strstr(out, "Status: 200"), "a valid redirected token was refused:\n%s", out);
}
END_TEST

/* A client that left closes the pipe under the program: it must end by
 * itself with its exit code, not be killed by SIGPIPE. */
START_TEST(cgi_client_gone_no_sigpipe)
{
    int port;
    pid_t pid = gate_start(&port);
    th_kill(pid);
    char *env[] = {"GATEWAY_INTERFACE=CGI/1.1", "REQUEST_METHOD=GET", "REQUEST_URI=/mcp/files",
                   "HTTP_HOST=127.0.0.1:8080", "REMOTE_ADDR=127.0.0.1",
                   "HTTP_AUTHORIZATION=Bearer x.y.z", NULL};
    int st = run_cgi(env, NULL, 0, 1);
    ck_assert_msg(!WIFSIGNALED(st), "killed by signal %d", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}
END_TEST

static void gate_exits_zero_on(int sig, const char *name)
{
    int port;
    pid_t pid = gate_start(&port);
    /* a shell's background job starts with SIGINT and SIGQUIT ignored: the
     * gate must take them anyway */
    usleep(200 * 1000);
    double t0 = th_now();
    kill(pid, sig);
    int st = 0;
    int rc = th_wait_exit(pid, 5000, &st);
    if (rc != 0)
        th_kill(pid);
    ck_assert_msg(rc == 0, "the gate did not exit on %s", name);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: wait status %#x", name, st);
    ck_assert_msg(th_now() - t0 < 3.0, "%s: exit took %.1f s", name, th_now() - t0);
}

START_TEST(gate_sigterm)
{
    gate_exits_zero_on(SIGTERM, "SIGTERM");
}
END_TEST

START_TEST(gate_sigint)
{
    gate_exits_zero_on(SIGINT, "SIGINT");
}
END_TEST

START_TEST(gate_sighup_keeps_serving)
{
    int port;
    pid_t pid = gate_start(&port);
    kill(pid, SIGHUP);
    int st = 0;
    ck_assert_msg(th_wait_exit(pid, 1500, &st) != 0, "the gate ended on SIGHUP (status %#x)", st);
    ck_assert_int_eq(th_wait_port(port, 1000), 0);
    kill(pid, SIGTERM);
    int rc = th_wait_exit(pid, 5000, &st);
    if (rc != 0)
        th_kill(pid);
    ck_assert_msg(rc == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "then SIGTERM: %#x", st);
    char path[600];
    snprintf(path, sizeof path, "%s/gate.log", gate_dir);
    char *text = th_read_file(path);
    ck_assert_msg(strstr(text, "event=sighup log=unchanged "), "log: %s", text);
    free(text);
}
END_TEST

/* The state letter of a process (/proc/PID/stat), 0 when it is gone. */
static char proc_state(pid_t pid)
{
    char path[64], st[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(st, 1, sizeof st - 1, f);
    fclose(f);
    st[n] = '\0';
    const char *rp = strrchr(st, ')');
    return rp && rp[1] == ' ' ? rp[2] : 0;
}

/* Regression: a program whose web server died while it was still starting
 * (lighttpd killed right after spawning it) took PID 1 for its spawner and
 * never noticed it was an orphan; it served nothing, forever, and the
 * lifecycle test found it now and then.  Spawned with a FastCGI socket on
 * fd 0 by a parent that is already gone, it must exit at once. */
START_TEST(orphan_at_start_exits)
{
    int port;
    pid_t running = gate_start(&port); /* writes the configuration */
    th_kill(running);
    char prog[512], cfgp[600], sock[600], log[600];
    snprintf(prog, sizeof prog, "%s/fcgi/mcpauth-gate", th_builddir());
    snprintf(cfgp, sizeof cfgp, "%s/mcpauth.conf", gate_dir);
    snprintf(sock, sizeof sock, "%s/orphan.sock", gate_dir);
    snprintf(log, sizeof log, "%s/orphan.log", gate_dir);
    unlink(sock);
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    ck_assert_uint_lt(strlen(sock), sizeof a.sun_path);
    memcpy(a.sun_path, sock, strlen(sock) + 1);
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(lfd, 8), 0);
    int pp[2];
    ck_assert_int_eq(pipe(pp), 0);
    pid_t mid = fork();
    ck_assert_int_ge(mid, 0);
    if (mid == 0) { /* the "web server": spawns, then dies at once */
        pid_t g = fork();
        if (g == 0) {
            usleep(300 * 1000); /* adopted by now */
            int out = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            dup2(lfd, 0);
            dup2(out, 1);
            dup2(out, 2);
            char *argv[] = {prog, "--config", cfgp, NULL};
            execv(prog, argv);
            _exit(127);
        }
        if (write(pp[1], &g, sizeof g) != (ssize_t)sizeof g)
            _exit(1);
        _exit(0);
    }
    close(lfd);
    close(pp[1]);
    pid_t orphan = -1;
    ck_assert_int_eq(read(pp[0], &orphan, sizeof orphan), (ssize_t)sizeof orphan);
    close(pp[0]);
    waitpid(mid, NULL, 0);
    char state = 1;
    for (int i = 0; i < 60 && (state = proc_state(orphan)) != 0 && state != 'Z'; i++)
        usleep(100 * 1000);
    if (state && state != 'Z')
        kill(orphan, SIGKILL);
    char *text = th_read_file(log);
    ck_assert_msg(!state || state == 'Z', "the orphaned gate still runs after 6 s: %s", text);
    ck_assert_msg(strstr(text, "event=stopped reason=parent_gone"), "log: %s", text);
    free(text);
}
END_TEST

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (!mkdtemp(backend_dir) || !mkdtemp(gate_dir) || chmod(backend_dir, 0755) < 0)
        return EXIT_FAILURE;
    rsa = tk_key_new("RS256", "rsa1", 0);
    tk_key *pub[] = {rsa};
    jwks = tk_jwks(pub, 1);
    Suite *s = suite_create("lifecycle-servers");
    TCase *tc = tcase_create("standalone-gate");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, gate_sigterm);
    tcase_add_test(tc, gate_sigint);
    tcase_add_test(tc, gate_sighup_keeps_serving);
    tcase_add_test(tc, orphan_at_start_exits);
    tcase_add_test(tc, cgi_redirected_authorization_reaches_gate);
    tcase_add_test(tc, cgi_client_gone_no_sigpipe);
    suite_add_tcase(s, tc);
    suite_add_tcase(s, server_case("lighttpd", start_lighttpd));
    suite_add_tcase(s, server_case("apache", start_apache));
    SRunner *sr = srunner_create(s);
    /* In one process, so that a failed assertion still runs the teardown
     * (stop) and nothing a test started outlives it; every wait here is
     * bounded. */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    free(jwks);
    tk_key_free(rsa);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", backend_dir, gate_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup failed\n");
    curl_global_cleanup();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
