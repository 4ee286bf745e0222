/* Faults (issue 15) on real lighttpd and real Apache.
 *
 * mcpauth-proxy: a proxy process killed (SIGKILL) under load is replaced
 * by the web server, only its requests in flight fail, and the state the
 * processes share through runtime_dir (sessions, the per-caller slots of
 * max_concurrent_per_caller) outlives it.
 *
 * mcpauth-as, its state_dir on a small tmpfs of its own (mounting needs
 * root: CI runs as root; without root the full-disk case fails, saying
 * so): the disk full (503 temporarily_unavailable with Retry-After and a
 * state_unavailable log line, nothing written half, served again by itself
 * once space is freed); revocation with the database locked by another
 * process and introspection with it damaged (503, never a 200 that says
 * something the AS could not check).
 *
 * mcpauth-as with its store on PostgreSQL (a private server,
 * tests/support/pgtest.c), the server down when the web server starts:
 * the program starts anyway and answers 503 with Retry-After, logging why
 * once; the server started, the next requests load the state and a whole
 * code flow works, with no restart; the server restarted mid-run: 503
 * during the outage, served again after.  What does not pass by itself (a
 * wrong database, no `mcpauth init`, an older schema) still stops it. */
#define _GNU_SOURCE
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>
#include <curl/curl.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <sqlite3.h>

#include "../support/tokens.h"
#ifdef HAVE_LIBPQ
#include "../support/pgtest.h"
#endif
#include "harness.h"

static const char conf_tmpl[] =
    "runtime_dir = @DIR@\n"
    "backend_timeout = 5\n"
    "log_level = info\n"
    "[resource files]\n"
    "uri = http://127.0.0.1:@PORT@/mcp/files\n"
    "authorization_servers = http://127.0.0.1:@PORT@\n"
    "backend = http://127.0.0.1:%d/mcp\n"
    "rate_limit = 0\nrate_limit_address = 0\n" /* the load is not a flood */
    "[resource capped]\n"
    "uri = http://127.0.0.1:@PORT@/mcp/capped\n"
    "authorization_servers = http://127.0.0.1:@PORT@\n"
    "backend = http://127.0.0.1:%d/mcp\n"
    "max_concurrent_per_caller = 1\n"
    "[issuer local]\n"
    "issuer = http://127.0.0.1:@PORT@\n"
    "jwks_file = @DIR@/jwks.json\n";

static const char lighttpd_extra[] =
    "var.mcpauth_proxy_prefix = \"/mcp\"\n"
    "include \"@SRCDIR@/lighttpd/mcpauth-proxy.conf\"\n";

static const char apache_extra[] =
    "Define MCPAUTH_PROXY_LOCATION /mcp\n"
    "Include \"@SRCDIR@/apache/mcpauth-proxy.conf\"\n";

static tk_key *rsa;
static char *jwks;
static th_server srv;
static pid_t backend_pid = -1;
static int backend_port;
static char backend_dir[] = "/tmp/mcpauth-faults-XXXXXX";

static void start(th_kind kind)
{
    backend_pid = th_start_example_server(backend_dir, &backend_port);
    if (backend_pid < 0)
        exit(EXIT_FAILURE);
    char *conf = NULL;
    if (asprintf(&conf, conf_tmpl, backend_port, backend_port) < 0)
        exit(EXIT_FAILURE);
    const char *files[] = {"jwks.json", jwks, NULL};
    th_options o = {conf, kind == TH_LIGHTTPD ? lighttpd_extra : apache_extra, files, NULL};
    int rc = th_start_ex(&srv, kind, &o);
    free(conf);
    if (rc != 0) {
        th_kill(backend_pid);
        exit(EXIT_FAILURE);
    }
    th_give_to_apache(&srv); /* the proxy's runtime_dir */
}
static void start_lighttpd(void) { start(TH_LIGHTTPD); }
static void start_apache(void) { start(TH_APACHE); }
static void stop(void)
{
    th_stop(&srv);
    th_kill(backend_pid);
    backend_pid = -1;
}

/* One POST; 0 when an HTTP response came whole (status in r). */
static int post(const char *path, const char *token, const char *version, const char *session,
                const char *method, const char *body, th_resp *r)
{
    char url[512], auth[8192], ver[128], sid[512], mm[128];
    const char *h[8];
    int n = 0;
    snprintf(url, sizeof url, "%s%s", srv.base, path);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    h[n++] = auth;
    h[n++] = "Accept: application/json, text/event-stream";
    h[n++] = "Content-Type: application/json";
    if (version) {
        snprintf(ver, sizeof ver, "MCP-Protocol-Version: %s", version);
        h[n++] = ver;
    }
    if (session) {
        snprintf(sid, sizeof sid, "Mcp-Session-Id: %s", session);
        h[n++] = sid;
    }
    if (method) {
        snprintf(mm, sizeof mm, "Mcp-Method: %s", method);
        h[n++] = mm;
    }
    h[n] = NULL;
    return th_http("POST", url, h, body, r);
}

#define INIT_BODY                                                                                  \
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":"   \
    "\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{\"name\":\"t\",\"version\":\"1\"}}}"
#define PING "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}"

/* A 2025-06-18 session through the proxy: its id in sid. */
static void open_session(const char *token, char *sid, size_t cap)
{
    th_resp r;
    ck_assert_int_eq(post("/mcp/files", token, NULL, NULL, NULL, INIT_BODY, &r), 0);
    ck_assert_msg(r.status == 200, "initialize: %ld %s", r.status, r.body);
    ck_assert_msg(th_header(&r, "Mcp-Session-Id", sid, cap) != NULL, "no session id:\n%s",
                  r.headers);
    th_resp_free(&r);
}

static long session_call(const char *token, const char *sid)
{
    th_resp r;
    long st = post("/mcp/files", token, "2025-06-18", sid, NULL,
                   "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}", &r) == 0
                  ? r.status
                  : -1;
    th_resp_free(&r);
    return st;
}

/* A client sending pings (a few ms apart: a load, not a flood on a shared
 * machine) until told to stop, with its figures around the kill. */
enum { CLIENTS = 3, FAIL_MAX = 16 };
static double t_kill; /* 0 until the kill; atomic */
typedef struct {
    const char *token;
    int stop; /* atomic */
    int total, failed, ok_after, late_failures;
    double first_ok_after, slowest;
    struct {
        double at; /* start, from the kill */
        long status; /* -1: no whole response */
    } fail[FAIL_MAX];
} load_arg;

static void *load(void *p)
{
    load_arg *a = p;
    a->first_ok_after = -1;
    while (!__atomic_load_n(&a->stop, __ATOMIC_SEQ_CST)) {
        th_resp r;
        double t0 = th_now(), k;
        int rc = post("/mcp/files", a->token, "2026-07-28", NULL, "ping", PING, &r);
        double took = th_now() - t0;
        __atomic_load(&t_kill, &k, __ATOMIC_SEQ_CST);
        int ok = rc == 0 && r.status == 200;
        a->total++;
        a->slowest = took > a->slowest ? took : a->slowest;
        if (!ok) {
            if (a->failed < FAIL_MAX) {
                a->fail[a->failed].at = k > 0 ? t0 - k : -1e9; /* -1e9: before the kill */
                a->fail[a->failed].status = rc == 0 ? r.status : -1;
            }
            a->failed++;
            a->late_failures += k > 0 && t0 > k + 3.0;
        } else if (k > 0 && t0 > k) {
            if (a->ok_after++ == 0)
                a->first_ok_after = t0 - k;
        }
        th_resp_free(&r);
        usleep(5 * 1000);
    }
    return NULL;
}

static int contains(const pid_t *set, int n, pid_t p)
{
    for (int i = 0; i < n; i++)
        if (set[i] == p)
            return 1;
    return 0;
}

START_TEST(worker_killed_under_load)
{
    char *t = th_token(&srv, rsa, "/mcp/files", "", "kill-load");
    char sid[256];
    open_session(t, sid, sizeof sid);
    ck_assert_int_eq(session_call(t, sid), 200);

    static load_arg args[CLIENTS];
    pthread_t th[CLIENTS];
    double zero = 0;
    __atomic_store(&t_kill, &zero, __ATOMIC_SEQ_CST);
    for (int i = 0; i < CLIENTS; i++) {
        memset(&args[i], 0, sizeof args[i]);
        args[i].token = t;
        pthread_create(&th[i], NULL, load, &args[i]);
    }
    usleep(1500 * 1000); /* the load is on */
    pid_t before[64];
    int nb = th_programs(srv.dir, "mcpauth-proxy", before, 64);
    ck_assert_int_gt(nb, 0);
    pid_t victim = before[nb / 2];
    double k = th_now();
    __atomic_store(&t_kill, &k, __ATOMIC_SEQ_CST);
    ck_assert_int_eq(kill(victim, SIGKILL), 0);
    usleep(5000 * 1000); /* the load goes on */
    for (int i = 0; i < CLIENTS; i++)
        __atomic_store_n(&args[i].stop, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < CLIENTS; i++)
        pthread_join(th[i], NULL);

    int total = 0, failed = 0, ok_after = 0, late_failures = 0;
    double slowest = 0, first_ok_after = 1e9;
    char fails[1024] = "";
    for (int i = 0; i < CLIENTS; i++) {
        load_arg *a = &args[i];
        total += a->total;
        failed += a->failed;
        ok_after += a->ok_after;
        late_failures += a->late_failures;
        slowest = a->slowest > slowest ? a->slowest : slowest;
        if (a->ok_after && a->first_ok_after < first_ok_after)
            first_ok_after = a->first_ok_after;
        for (int j = 0; j < a->failed && j < FAIL_MAX; j++) {
            size_t l = strlen(fails);
            snprintf(fails + l, sizeof fails - l, " [%ld at %+.2f s]", a->fail[j].status,
                     a->fail[j].at);
        }
    }
    fprintf(stderr, "%s: %d requests, %d failed%s; %d proxy processes before, pid %d killed\n",
            th_kind_name(srv.kind), total, failed, fails, nb, (int)victim);
    ck_assert_msg(failed <= CLIENTS, "%s: %d of %d requests failed (at most %d were in flight):%s",
                  th_kind_name(srv.kind), failed, total, CLIENTS, fails);
    ck_assert_msg(ok_after > 0 && first_ok_after < 3.0,
                  "%s: no request succeeded within 3 s of the kill (%d after it)",
                  th_kind_name(srv.kind), ok_after);
    ck_assert_msg(late_failures == 0, "%s: %d requests failed more than 3 s after the kill:%s",
                  th_kind_name(srv.kind), late_failures, fails);
    ck_assert_msg(slowest < 10.0, "%s: a request took %.1f s", th_kind_name(srv.kind), slowest);

    /* the killed process is gone, and lighttpd runs as many as before */
    pid_t after[64];
    int na = 0;
    for (int i = 0; i < 50; i++) {
        na = th_programs(srv.dir, "mcpauth-proxy", after, 64);
        if (!contains(after, na, victim) && (srv.kind != TH_LIGHTTPD || na >= nb))
            break;
        usleep(100 * 1000);
    }
    ck_assert_msg(!contains(after, na, victim), "%s: the killed process is still there",
                  th_kind_name(srv.kind));
    if (srv.kind == TH_LIGHTTPD)
        ck_assert_msg(na >= nb, "lighttpd: %d proxy processes after the kill, %d before", na, nb);
    else
        ck_assert_int_gt(na, 0);

    /* the session made before the kill is known to every process */
    for (int i = 0; i < 6; i++) {
        long st = session_call(t, sid);
        ck_assert_msg(st == 200, "%s: call %d in the session from before the kill: %ld",
                      th_kind_name(srv.kind), i + 1, st);
    }
    free(t);
}
END_TEST

typedef struct {
    const char *token;
    int rc;
    long status;
    double t_end;
} stream_arg;

static void *long_stream(void *p)
{
    stream_arg *a = p;
    char url[512], auth[8192];
    snprintf(url, sizeof url, "%s/mcp/capped", srv.base);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", a->token);
    const char *h[] = {auth, "Accept: application/json, text/event-stream",
                       "Content-Type: application/json", "MCP-Protocol-Version: 2026-07-28",
                       "Mcp-Method: tools/call", "Mcp-Name: countdown", NULL};
    th_resp r;
    a->rc = th_http("POST", url, h,
                    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":"
                    "\"countdown\",\"arguments\":{\"n\":40,\"delay_ms\":500}}}",
                    &r);
    a->status = r.status;
    a->t_end = th_now();
    th_resp_free(&r);
    return NULL;
}

/* The slot a caller's stream holds (max_concurrent_per_caller = 1 here)
 * lives in runtime_dir; when the process serving the stream is killed, the
 * slot must not lock the caller out: the dead process's slot is reclaimed. */
START_TEST(killed_stream_frees_its_slot)
{
    char *t = th_token(&srv, rsa, "/mcp/capped", "", "kill-cap");
    stream_arg a = {.token = t};
    pthread_t th;
    pthread_create(&th, NULL, long_stream, &a);
    usleep(1500 * 1000); /* the stream is open and holds the caller's one slot */
    th_resp r;
    ck_assert_int_eq(post("/mcp/capped", t, "2026-07-28", NULL, "ping", PING, &r), 0);
    ck_assert_msg(r.status == 429, "%s: a second request while the stream runs got %ld",
                  th_kind_name(srv.kind), r.status);
    th_resp_free(&r);
    /* which process serves the stream is not known from here: kill each */
    pid_t p[64];
    int n = th_programs(srv.dir, "mcpauth-proxy", p, 64);
    ck_assert_int_gt(n, 0);
    double t_sig = th_now();
    for (int i = 0; i < n && i < 64; i++)
        kill(p[i], SIGKILL);
    pthread_join(th, NULL);
    ck_assert_msg(a.t_end - t_sig < 10.0, "%s: the stream's client waited %.1f s after the kill",
                  th_kind_name(srv.kind), a.t_end - t_sig);
    /* served again within a few seconds, not 429 for the dead slot */
    long st = -1;
    for (int i = 0; i < 50 && st != 200; i++) {
        if (post("/mcp/capped", t, "2026-07-28", NULL, "ping", PING, &r) == 0)
            st = r.status;
        th_resp_free(&r);
        if (st != 200)
            usleep(100 * 1000);
    }
    ck_assert_msg(st == 200, "%s: after the kill the caller got %ld", th_kind_name(srv.kind), st);
    free(t);
}
END_TEST

/* ================================================== the AS's state faults */

static const char as_conf_tmpl[] =
    "runtime_dir = @DIR@\n"
    "log_level = info\n"
    "log = file:@DIR@/mcpauth.log\n"
    "[resource files]\n"
    "uri = http://127.0.0.1:@PORT@/mcp/files\n"
    "authorization_servers = http://127.0.0.1:@PORT@\n"
    "backend = http://127.0.0.1:%d/mcp\n"
    "[authorization_server]\n"
    "issuer = http://127.0.0.1:@PORT@\n"
    "state_dir = @DIR@/state\n"
    "registration_limit = 1000\n"
    "introspection_client_id = gate\n"
    "introspection_client_secret = gate-secret\n";

static const char as_lighttpd_extra[] =
    "var.mcpauth_as_prefix = \"/oauth2\"\n"
    "var.mcpauth_htpasswd = \"@DIR@/htpasswd\"\n"
    "include \"@SRCDIR@/lighttpd/mcpauth-as.conf\"\n";

static const char as_apache_extra[] =
    "LoadModule auth_basic_module @MODDIR@/mod_auth_basic.so\n"
    "LoadModule authn_core_module @MODDIR@/mod_authn_core.so\n"
    "LoadModule authn_file_module @MODDIR@/mod_authn_file.so\n"
    "LoadModule authz_user_module @MODDIR@/mod_authz_user.so\n"
    "Define MCPAUTH_AS_LOCATION /oauth2\n"
    "Define MCPAUTH_HTPASSWD @DIR@/htpasswd\n"
    "Include \"@SRCDIR@/apache/mcpauth-as.conf\"\n";

#define TMPFS_SIZE "size=8m"
static th_kind as_kind;
static char state_dir[400];
static int tmpfs_mounted; /* state_dir is our tmpfs */
static pid_t tmpfs_owner;  /* the process that mounted it (Check's children exit too) */

/* Lazily: the AS processes may still hold files on it; it goes with
 * them.  The fixture runs in the test runner's own process (an unchecked
 * fixture), so this runs however the tests in between ended; also at exit
 * should the start fail half way. */
static void tmpfs_unmount(void)
{
    if (!tmpfs_mounted || getpid() != tmpfs_owner)
        return;
    if (umount2(state_dir, MNT_DETACH) != 0)
        fprintf(stderr, "faults: cannot unmount %s: %s\n", state_dir, strerror(errno));
    tmpfs_mounted = 0;
}

static int as_prepare(th_server *s)
{
    char cmd[2048];
    snprintf(state_dir, sizeof state_dir, "%s/state", s->dir);
    if (mkdir(state_dir, 0700) != 0)
        return -1;
    if (geteuid() == 0) {
        if (mount("mcpauth-faults", state_dir, "tmpfs", MS_NOSUID | MS_NODEV,
                  TMPFS_SIZE ",mode=0700") != 0) {
            fprintf(stderr, "faults: mount -t tmpfs on %s: %s\n", state_dir, strerror(errno));
            return -1;
        }
        static int registered;
        if (!registered++)
            atexit(tmpfs_unmount);
        tmpfs_mounted = 1;
        tmpfs_owner = getpid();
    }
    snprintf(cmd, sizeof cmd, "%s/tools/mcpauth --config %s/mcpauth.conf init %s >%s/init.log 2>&1",
             th_builddir(), s->dir,
             as_kind == TH_APACHE && geteuid() == 0 ? "--owner www-data" : "", s->dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "mcpauth init failed: see %s/init.log\n", s->dir);
        return -1;
    }
    snprintf(cmd, sizeof cmd,
             "printf 'alice:%%s\\n' \"$(openssl passwd -apr1 -salt mcpauth1 wonderland)\" "
             "> %s/htpasswd && chmod 644 %s/htpasswd", s->dir, s->dir);
    if (system(cmd) != 0)
        return -1;
    return th_give_to_apache(s);
}

static void as_start(th_kind kind)
{
    as_kind = kind;
    backend_pid = th_start_example_server(backend_dir, &backend_port);
    if (backend_pid < 0)
        exit(EXIT_FAILURE);
    char *conf = NULL;
    if (asprintf(&conf, as_conf_tmpl, backend_port) < 0)
        exit(EXIT_FAILURE);
    th_options o = {conf, kind == TH_LIGHTTPD ? as_lighttpd_extra : as_apache_extra, NULL,
                    as_prepare};
    int rc = th_start_ex(&srv, kind, &o);
    free(conf);
    if (rc != 0) {
        tmpfs_unmount();
        th_kill(backend_pid);
        exit(EXIT_FAILURE);
    }
}
static void as_start_lighttpd(void) { as_start(TH_LIGHTTPD); }
static void as_start_apache(void) { as_start(TH_APACHE); }
static void as_stop(void)
{
    tmpfs_unmount(); /* before th_stop removes the directory under it */
    stop();
}

/* ------------------------------------------------------------ AS client */

static char *url_enc(const char *v)
{
    char *e = curl_easy_escape(NULL, v, 0);
    char *copy = strdup(e);
    curl_free(e);
    return copy;
}

/* value="..." of a hidden input, html-unescaped (caller frees) */
static char *hidden(const char *page, const char *name)
{
    char key[128];
    snprintf(key, sizeof key, "name=\"%s\" value=\"", name);
    const char *p = strstr(page, key);
    ck_assert_msg(p != NULL, "no hidden %s in the consent page", name);
    p += strlen(key);
    const char *e = strchr(p, '"');
    char *out = malloc((size_t)(e - p) + 1), *o = out;
    while (p < e) {
        if (!strncmp(p, "&amp;", 5)) { *o++ = '&'; p += 5; }
        else if (!strncmp(p, "&lt;", 4)) { *o++ = '<'; p += 4; }
        else if (!strncmp(p, "&gt;", 4)) { *o++ = '>'; p += 4; }
        else if (!strncmp(p, "&quot;", 6)) { *o++ = '"'; p += 6; }
        else if (!strncmp(p, "&#39;", 5)) { *o++ = '\''; p += 5; }
        else *o++ = *p++;
    }
    *o = '\0';
    return out;
}

#define VERIFIER "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-faults-verifier"
#define REDIR "http://127.0.0.1/callback"
#define ALICE "Authorization: Basic YWxpY2U6d29uZGVybGFuZA==" /* alice:wonderland */
#define GATE "Authorization: Basic Z2F0ZTpnYXRlLXNlY3JldA==" /* gate:gate-secret */
#define FORM_CT "Content-Type: application/x-www-form-urlencoded"

/* POST to an AS endpoint; the response in r (0 when one came). */
static int as_post(const char *ep, const char *ctype, const char *auth, const char *body,
                   th_resp *r)
{
    char url[512], ct[128];
    snprintf(url, sizeof url, "%s/oauth2/%s", srv.base, ep);
    snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
    const char *h[] = {ct, auth, NULL};
    return th_http("POST", url, h, body, r);
}

/* Dynamic registration of a public client: the status; its id in id. */
static long as_register(char *id, size_t cap)
{
    th_resp r;
    ck_assert_int_eq(as_post("register", "application/json", NULL,
                             "{\"client_name\":\"Faults\",\"redirect_uris\":[\"" REDIR "\"],"
                             "\"token_endpoint_auth_method\":\"none\",\"grant_types\":"
                             "[\"authorization_code\",\"refresh_token\"]}",
                             &r),
                     0);
    long st = r.status;
    if (st == 201 && id) {
        json_object *o = json_tokener_parse(r.body), *v;
        ck_assert_msg(o && json_object_object_get_ex(o, "client_id", &v), "%s", r.body);
        snprintf(id, cap, "%s", json_object_get_string(v));
        json_object_put(o);
    }
    th_resp_free(&r);
    return st;
}

/* Login, consent, approve: a code for the client (into code). */
static void as_code(const char *id, char *code, size_t cap)
{
    unsigned char md[32];
    char challenge[64], url[2048];
    SHA256((const unsigned char *)VERIFIER, strlen(VERIFIER), md);
    int l = EVP_EncodeBlock((unsigned char *)challenge, md, 32);
    while (l > 0 && challenge[l - 1] == '=')
        l--;
    challenge[l] = '\0';
    for (int i = 0; i < l; i++)
        challenge[i] = challenge[i] == '+' ? '-' : challenge[i] == '/' ? '_' : challenge[i];
    char res[256];
    snprintf(res, sizeof res, "%s/mcp/files", srv.base);
    char *e_id = url_enc(id), *e_redir = url_enc(REDIR), *e_res = url_enc(res);
    snprintf(url, sizeof url,
             "%s/oauth2/authorize?response_type=code&client_id=%s&redirect_uri=%s"
             "&code_challenge=%s&code_challenge_method=S256&resource=%s&state=s1",
             srv.base, e_id, e_redir, challenge, e_res);
    free(e_id);
    free(e_redir);
    free(e_res);
    th_resp r;
    const char *hb[] = {ALICE, NULL};
    ck_assert_int_eq(th_http("GET", url, hb, NULL, &r), 0);
    char where[2048] = "";
    th_header(&r, "Location", where, sizeof where);
    ck_assert_msg(r.status == 200, "%s: consent page: %ld %s %s", th_kind_name(srv.kind),
                  r.status, where, r.body);
    static const char *const names[] = {"response_type", "client_id", "redirect_uri", "scope",
                                        "state", "code_challenge", "code_challenge_method",
                                        "resource", "ts", "nonce", "csrf", NULL};
    char *form = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&form, &len);
    for (int i = 0; names[i]; i++) {
        char *v = hidden(r.body, names[i]), *ev = url_enc(v);
        fprintf(m, "%s%s=%s", i ? "&" : "", names[i], ev);
        free(v);
        free(ev);
    }
    fputs("&decision=approve", m);
    fclose(m);
    th_resp_free(&r);
    snprintf(url, sizeof url, "%s/oauth2/authorize", srv.base);
    const char *hf[] = {ALICE, FORM_CT, NULL};
    ck_assert_int_eq(th_http("POST", url, hf, form, &r), 0);
    free(form);
    char loc[2048];
    ck_assert_msg(r.status == 302 && th_header(&r, "Location", loc, sizeof loc),
                  "%s: approve: %ld %s", th_kind_name(srv.kind), r.status, r.body);
    const char *c = strstr(loc, "code=");
    ck_assert_ptr_nonnull(c);
    snprintf(code, cap, "%.*s", (int)strcspn(c + 5, "&"), c + 5);
    th_resp_free(&r);
}

/* The token endpoint for code: the response in r. */
static void as_exchange(const char *id, const char *code, th_resp *r)
{
    char form[2048];
    char *e_id = url_enc(id), *e_redir = url_enc(REDIR);
    snprintf(form, sizeof form,
             "grant_type=authorization_code&code=%s&code_verifier=" VERIFIER
             "&redirect_uri=%s&client_id=%s",
             code, e_redir, e_id);
    free(e_id);
    free(e_redir);
    ck_assert_int_eq(as_post("token", "application/x-www-form-urlencoded", NULL, form, r), 0);
}

/* A member of a JSON body (static copy; "" when absent). */
static const char *jmember(const char *body, const char *k)
{
    static char out[4096];
    out[0] = '\0';
    json_object *o = json_tokener_parse(body), *v;
    if (o && json_object_object_get_ex(o, k, &v))
        snprintf(out, sizeof out, "%s", json_object_get_string(v));
    json_object_put(o);
    return out;
}

/* A grant's tokens, the whole way. */
static void as_tokens(const char *id, char *access, size_t acap, char *refresh, size_t rcap)
{
    char code[256];
    as_code(id, code, sizeof code);
    th_resp r;
    as_exchange(id, code, &r);
    ck_assert_msg(r.status == 200, "%s: token: %ld %s", th_kind_name(srv.kind), r.status, r.body);
    snprintf(access, acap, "%s", jmember(r.body, "access_token"));
    snprintf(refresh, rcap, "%s", jmember(r.body, "refresh_token"));
    ck_assert(access[0] && refresh[0]);
    th_resp_free(&r);
}

/* Introspection with the gate's credentials: the status; "true"/"false"
 * for active into active. */
static long as_introspect(const char *tok, char *active, size_t cap, th_resp *keep)
{
    char form[8192];
    snprintf(form, sizeof form, "token=%s", tok);
    th_resp r;
    ck_assert_int_eq(as_post("introspect", "application/x-www-form-urlencoded", GATE, form, &r),
                     0);
    long st = r.status;
    snprintf(active, cap, "%s", st == 200 ? jmember(r.body, "active") : "");
    if (keep)
        *keep = r;
    else
        th_resp_free(&r);
    return st;
}

static void as_revoke(const char *id, const char *tok, th_resp *r)
{
    char form[8192];
    char *e_id = url_enc(id);
    snprintf(form, sizeof form, "token=%s&client_id=%s", tok, e_id);
    free(e_id);
    ck_assert_int_eq(as_post("revoke", "application/x-www-form-urlencoded", NULL, form, r), 0);
}

/* The AS's log (log = file:), "" when empty; caller frees. */
static char *as_log(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/mcpauth.log", srv.dir);
    return th_read_file(path);
}

/* r is 503 temporarily_unavailable with Retry-After, and the log has a new
 * state_unavailable line with cause (a word of the reason) and during
 * (what the AS was doing). */
static size_t log_seen; /* bytes of the log already matched (this test's process) */

static void assert_unavailable(th_resp *r, const char *what, const char *cause,
                               const char *during)
{
    const char *k = th_kind_name(srv.kind);
    char ra[64];
    ck_assert_msg(r->status == 503, "%s: %s: %ld %s", k, what, r->status, r->body);
    ck_assert_msg(!strcmp(jmember(r->body, "error"), "temporarily_unavailable"), "%s: %s: %s", k,
                  what, r->body);
    ck_assert_msg(th_header(r, "Retry-After", ra, sizeof ra) && atoi(ra) > 0,
                  "%s: %s: no Retry-After:\n%s", k, what, r->headers);
    th_resp_free(r);
    /* a line of its own, written since the last one looked at */
    char *log = as_log(), *found = NULL;
    for (char *line = log + (log_seen < strlen(log) ? log_seen : strlen(log)); *line && !found;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        if (strstr(line, "state_unavailable") && strstr(line, cause) && strstr(line, during))
            found = line;
        line = nl ? nl + 1 : line + strlen(line);
    }
    ck_assert_msg(found != NULL,
                  "%s: %s: no new state_unavailable line naming \"%s\" and \"%s\" in %s/mcpauth.log",
                  k, what, cause, during, srv.dir);
    log_seen = (size_t)(found - log) + strlen(found) + 1;
    free(log);
}

static sqlite3 *state_db(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/mcpauth.db", state_dir);
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    return db;
}

/* The database checks whole (PRAGMA integrity_check). */
static void assert_db_whole(void)
{
    sqlite3 *db = state_db();
    sqlite3_stmt *st = NULL;
    ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    const char *res = (const char *)sqlite3_column_text(st, 0);
    ck_assert_msg(res && !strcmp(res, "ok"), "%s: integrity_check: %s", th_kind_name(srv.kind),
                  res ? res : "(null)");
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* Fills the file system under state_dir: the bytes written. */
static long long fill_disk(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
    static char junk[64 * 1024];
    long long total = 0;
    for (size_t chunk = sizeof junk; chunk >= 512; chunk /= 2) {
        ssize_t n;
        while ((n = write(fd, junk, chunk)) > 0)
            total += n;
        ck_assert_msg(n < 0 && errno == ENOSPC, "filling %s: %s", path, strerror(errno));
    }
    close(fd);
    return total;
}

/* The state_dir's disk full: a code exchange and a registration are
 * refused with 503 and write nothing (the code stays unused, the database
 * whole); the space freed, both go through without a restart. */
START_TEST(as_disk_full)
{
    ck_assert_msg(geteuid() == 0,
                  "as_disk_full needs root to mount a small tmpfs as the AS's state_dir "
                  "(run the tests as root, as CI does): not tested");
    ck_assert(tmpfs_mounted);
    const char *k = th_kind_name(srv.kind);
    char id[256], code[256], fill[512];
    ck_assert_int_eq(as_register(id, sizeof id), 201);
    as_code(id, code, sizeof code);
    snprintf(fill, sizeof fill, "%s/fill", state_dir);
    long long filled = fill_disk(fill);
    ck_assert_msg(filled > 0, "%s: the tmpfs was full before the test", k);

    th_resp r;
    as_exchange(id, code, &r);
    assert_unavailable(&r, "code exchange, disk full", "full",
                       "authorization code");
    ck_assert_int_eq(as_post("register", "application/json", NULL,
                             "{\"redirect_uris\":[\"" REDIR "\"],"
                             "\"token_endpoint_auth_method\":\"none\"}",
                             &r),
                     0);
    assert_unavailable(&r, "registration, disk full", "full", "registering");
    /* still refused a moment later: no retry loop makes it through */
    as_exchange(id, code, &r);
    assert_unavailable(&r, "code exchange, disk still full", "full",
                       "authorization code");

    ck_assert_int_eq(unlink(fill), 0); /* space again: no restart, no admin */
    as_exchange(id, code, &r);
    ck_assert_msg(r.status == 200, "%s: the code after space was freed: %ld %s", k, r.status,
                  r.body);
    char refresh[256];
    snprintf(refresh, sizeof refresh, "%s", jmember(r.body, "refresh_token"));
    th_resp_free(&r);
    /* the refresh token issued after the fault works: the exchange was whole */
    char form[1024];
    char *e_id = url_enc(id);
    snprintf(form, sizeof form, "grant_type=refresh_token&refresh_token=%s&client_id=%s",
             refresh, e_id);
    free(e_id);
    ck_assert_int_eq(as_post("token", "application/x-www-form-urlencoded", NULL, form, &r), 0);
    ck_assert_msg(r.status == 200, "%s: refresh: %ld %s", k, r.status, r.body);
    th_resp_free(&r);
    as_exchange(id, code, &r); /* used once, by that exchange only (a replay) */
    ck_assert_msg(r.status == 400 && !strcmp(jmember(r.body, "error"), "invalid_grant"),
                  "%s: the code a second time: %ld %s", k, r.status, r.body);
    th_resp_free(&r);
    ck_assert_int_eq(as_register(NULL, 0), 201);
    assert_db_whole();
}
END_TEST

/* Revocation with the database locked by another process: 503 (not a 200
 * for a grant that lives on), the grant untouched; once the lock is gone
 * the same revocation works.  Introspection reads, which a writer's lock
 * does not stop (WAL): it answers truly meanwhile. */
START_TEST(as_revoke_locked)
{
    const char *k = th_kind_name(srv.kind);
    char id[256], access[4096], refresh[256], active[16];
    ck_assert_int_eq(as_register(id, sizeof id), 201);
    as_tokens(id, access, sizeof access, refresh, sizeof refresh);
    sqlite3 *db = state_db();
    ck_assert_int_eq(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);

    th_resp r;
    as_revoke(id, refresh, &r); /* waits out the AS's busy timeout (5 s) */
    assert_unavailable(&r, "revoking a refresh token, database locked", "locked",
                       "revoking a token");
    as_revoke(id, access, &r);
    assert_unavailable(&r, "revoking an access token, database locked", "locked",
                       "revoking a token");
    ck_assert_int_eq(as_introspect(refresh, active, sizeof active, NULL), 200);
    ck_assert_msg(!strcmp(active, "true"), "%s: introspection under the lock: %s", k, active);

    ck_assert_int_eq(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    ck_assert_int_eq(as_introspect(refresh, active, sizeof active, NULL), 200);
    ck_assert_msg(!strcmp(active, "true"), "%s: the refused revocation ended the grant", k);
    as_revoke(id, refresh, &r);
    ck_assert_msg(r.status == 200, "%s: revocation after the lock: %ld %s", k, r.status, r.body);
    th_resp_free(&r);
    ck_assert_int_eq(as_introspect(refresh, active, sizeof active, NULL), 200);
    ck_assert_str_eq(active, "false");
    ck_assert_int_eq(as_introspect(access, active, sizeof active, NULL), 200);
    ck_assert_str_eq(active, "false");
}
END_TEST

static void copy_file(const char *from, const char *to)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
    ck_assert_int_eq(system(cmd), 0);
}

/* Over the same inode: the AS processes keep it open. */
static void restore_file(const char *from, const char *to)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "dd status=none conv=notrunc if='%s' of='%s'", from, to);
    ck_assert_int_eq(system(cmd), 0);
}

static void damage_file(const char *path)
{
    int fd = open(path, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    struct stat st;
    ck_assert_int_eq(fstat(fd, &st), 0);
    char junk[4096];
    memset(junk, 0x5a, sizeof junk);
    for (off_t o = 0; o < st.st_size; o += (off_t)sizeof junk)
        ck_assert_int_gt(pwrite(fd, junk, sizeof junk, o), 0);
    close(fd);
}

/* Introspection with the database damaged: 503, never "active": false for
 * a token the AS could not check (the resource server would log a
 * rightful user out); repaired, the same token is active again. */
START_TEST(as_introspect_damaged)
{
    const char *k = th_kind_name(srv.kind);
    char id[256], access[4096], refresh[256], active[16];
    ck_assert_int_eq(as_register(id, sizeof id), 201);
    as_tokens(id, access, sizeof access, refresh, sizeof refresh);
    ck_assert_int_eq(as_introspect(access, active, sizeof active, NULL), 200);
    ck_assert_str_eq(active, "true");
    /* everything into the file, then the file goes bad */
    sqlite3 *db = state_db();
    /* a read first: a connection learns the file is in WAL mode from it */
    ck_assert_int_eq(sqlite3_exec(db, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL),
                     SQLITE_OK);
    int nlog = -1, nckpt = -1;
    ck_assert_int_eq(
        sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_TRUNCATE, &nlog, &nckpt), SQLITE_OK);
    ck_assert_msg(nlog == 0 && nckpt == 0, "%s: the WAL is not empty: %d frames, %d moved", k,
                  nlog, nckpt);
    sqlite3_close(db);
    char path[512], saved[512];
    snprintf(path, sizeof path, "%s/mcpauth.db", state_dir);
    snprintf(saved, sizeof saved, "%s/saved.db", srv.dir);
    copy_file(path, saved);
    damage_file(path);

    th_resp r;
    long ist = as_introspect(access, active, sizeof active, &r);
    ck_assert_msg(ist == 503, "%s: introspection, database damaged: %ld %s", k, ist, r.body);
    assert_unavailable(&r, "introspecting an access token, database damaged", "damaged",
                       "introspecting");
    ist = as_introspect(refresh, active, sizeof active, &r);
    ck_assert_msg(ist == 503, "%s: introspection, database damaged: %ld %s", k, ist, r.body);
    assert_unavailable(&r, "introspecting a refresh token, database damaged", "damaged",
                       "introspecting");

    restore_file(saved, path);
    long st = as_introspect(access, active, sizeof active, NULL);
    ck_assert_msg(st == 200 && !strcmp(active, "true"), "%s: repaired: %ld %s", k, st, active);
    st = as_introspect(refresh, active, sizeof active, NULL);
    ck_assert_msg(st == 200 && !strcmp(active, "true"), "%s: repaired: %ld %s", k, st, active);
}
END_TEST

/* Each test from a disk with room, whatever the one before left, and
 * looking only at the log lines it causes. */
static void as_each(void)
{
    char fill[512];
    snprintf(fill, sizeof fill, "%s/fill", state_dir);
    unlink(fill);
    char *log = as_log();
    log_seen = strlen(log);
    free(log);
}

static TCase *as_case(const char *name, void (*setup)(void))
{
    TCase *tc = tcase_create(name);
    /* one server for the case, started and stopped by the runner itself:
     * a failed test (its own process, ended at once) cannot leave the
     * tmpfs mounted or the server running */
    tcase_add_unchecked_fixture(tc, setup, as_stop);
    tcase_add_checked_fixture(tc, as_each, NULL);
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, as_disk_full);
    tcase_add_test(tc, as_revoke_locked);
    tcase_add_test(tc, as_introspect_damaged);
    return tc;
}

#ifdef HAVE_LIBPQ
/* ============================================ the AS's PostgreSQL down */

static const char pg_conf_tmpl[] =
    "runtime_dir = @DIR@\n"
    "log_level = info\n"
    "log = file:@DIR@/mcpauth.log\n"
    "[resource files]\n"
    "uri = http://127.0.0.1:@PORT@/mcp/files\n"
    "authorization_servers = http://127.0.0.1:@PORT@\n"
    "backend = http://127.0.0.1:9/mcp\n" /* only the AS is served here */
    "[authorization_server]\n"
    "issuer = http://127.0.0.1:@PORT@\n"
    "state_dir = @DIR@/state\n"
    "store = %s\n"
    "registration_limit = 1000\n"
    "introspection_client_id = gate\n"
    "introspection_client_secret = gate-secret\n";

static int pg_web_failed; /* the web server did not start (the runner's copy) */

/* `mcpauth init` on the running PostgreSQL, then PostgreSQL stopped:
 * the web server and mcpauth-as start without it. */
static int as_pg_prepare(th_server *s)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s/tools/mcpauth --config %s/mcpauth.conf init %s >%s/init.log 2>&1",
             th_builddir(), s->dir,
             as_kind == TH_APACHE && geteuid() == 0 ? "--owner www-data" : "", s->dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "mcpauth init failed: see %s/init.log\n", s->dir);
        return -1;
    }
    snprintf(cmd, sizeof cmd,
             "printf 'alice:%%s\\n' \"$(openssl passwd -apr1 -salt mcpauth1 wonderland)\" "
             "> %s/htpasswd && chmod 644 %s/htpasswd", s->dir, s->dir);
    if (system(cmd) != 0)
        return -1;
    /* state_dir and its files are www-data's already (init --owner) */
    if (th_give_to_apache(s) != 0)
        return -1;
    return pgtest_stop();
}

static void as_pg_start(th_kind kind)
{
    as_kind = kind;
    char conninfo[512];
    /* once per runner, then running again whatever the case before left:
     * as_pg_prepare stopped it here, a test may have restarted it since
     * (pgtest_start would see it stopped and start a second one) */
    if ((!pgtest_port() && pgtest_start() != 0) || pgtest_restart() != 0 ||
        pgtest_new_schema(conninfo, sizeof conninfo) != 0)
        exit(EXIT_FAILURE);
    char *conf = NULL;
    if (asprintf(&conf, pg_conf_tmpl, conninfo) < 0)
        exit(EXIT_FAILURE);
    th_options o = {conf, kind == TH_LIGHTTPD ? as_lighttpd_extra : as_apache_extra, NULL,
                    as_pg_prepare};
    /* a web server that does not start is the test's failure, not the runner's */
    pg_web_failed = th_start_ex(&srv, kind, &o) != 0;
    free(conf);
}
static void as_pg_start_lighttpd(void) { as_pg_start(TH_LIGHTTPD); }
static void as_pg_start_apache(void) { as_pg_start(TH_APACHE); }
static void as_pg_stop(void)
{
    th_stop(&srv);
}

/* 503 temporarily_unavailable with Retry-After (JSON, or the authorize
 * endpoint's page); frees r. */
static void assert_503(th_resp *r, const char *what, int page)
{
    const char *k = th_kind_name(srv.kind);
    char ra[64];
    ck_assert_msg(r->status == 503, "%s: %s: %ld %s", k, what, r->status, r->body);
    if (!page)
        ck_assert_msg(!strcmp(jmember(r->body, "error"), "temporarily_unavailable"),
                      "%s: %s: %s", k, what, r->body);
    ck_assert_msg(th_header(r, "Retry-After", ra, sizeof ra) && atoi(ra) > 0,
                  "%s: %s: no Retry-After:\n%s", k, what, r->headers);
    th_resp_free(r);
}

static long as_get(const char *ep, const char *auth, th_resp *r)
{
    char url[512];
    snprintf(url, sizeof url, "%s/oauth2/%s", srv.base, ep);
    const char *h[] = {auth, NULL};
    ck_assert_int_eq(th_http("GET", url, h, NULL, r), 0);
    return r->status;
}

/* Lines of the AS's log holding a, and b and c unless NULL. */
static int log_lines(const char *a, const char *b, const char *c)
{
    char *log = as_log();
    int n = 0;
    for (char *line = log; *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        n += strstr(line, a) && (!b || strstr(line, b)) && (!c || strstr(line, c));
        line = nl ? nl + 1 : line + strlen(line);
    }
    free(log);
    return n;
}

static void assert_alive(const pid_t *pids, int n, const char *when)
{
    for (int i = 0; i < n; i++)
        ck_assert_msg(kill(pids[i], 0) == 0, "%s: mcpauth-as %d is gone %s (restarted?)",
                      th_kind_name(srv.kind), (int)pids[i], when);
}

START_TEST(as_pg_down_at_start)
{
    const char *k = th_kind_name(srv.kind);
    ck_assert_msg(!pg_web_failed,
                  "%s did not start with mcpauth-as while its PostgreSQL was down (see above)", k);
    th_resp r;
    /* down since before the web server started: every endpoint that needs
     * the state says so, and the program lives on */
    for (int i = 0; i < 3; i++) {
        as_exchange("nobody", "no-code", &r);
        assert_503(&r, "token, PostgreSQL down at start", 0);
        as_get("jwks", NULL, &r);
        assert_503(&r, "jwks, PostgreSQL down at start", 0);
    }
    ck_assert_int_eq(as_post("register", "application/json", NULL,
                             "{\"redirect_uris\":[\"" REDIR "\"]}", &r), 0);
    assert_503(&r, "register, PostgreSQL down at start", 0);
    ck_assert_int_eq(as_post("introspect", "application/x-www-form-urlencoded", GATE, "token=x",
                             &r), 0);
    assert_503(&r, "introspect, PostgreSQL down at start", 0);
    ck_assert_int_eq(as_post("revoke", "application/x-www-form-urlencoded", NULL,
                             "token=x&client_id=x", &r), 0);
    assert_503(&r, "revoke, PostgreSQL down at start", 0);
    as_get("authorize?response_type=code&client_id=x", ALICE, &r);
    assert_503(&r, "authorize, PostgreSQL down at start", 1);

    pid_t before[16];
    int nb = th_programs(srv.dir, "mcpauth-as", before, 16);
    ck_assert_msg(nb > 0, "%s: no mcpauth-as process runs", k);
    /* why, once per process, not once per request (10 of them) */
    int lines = log_lines("state_unavailable", "PostgreSQL", "start-up");
    ck_assert_msg(lines >= 1, "%s: no state_unavailable line naming PostgreSQL at start-up in "
                  "%s/mcpauth.log", k, srv.dir);
    ck_assert_msg(log_lines("state_unavailable", NULL, NULL) <= nb,
                  "%s: %d state_unavailable lines from %d processes: one per request?", k,
                  log_lines("state_unavailable", NULL, NULL), nb);

    /* PostgreSQL back: no restart, the next requests load the state */
    ck_assert_int_eq(pgtest_restart(), 0);
    char id[256], access[4096], refresh[256], active[16], code[256];
    ck_assert_int_eq(as_register(id, sizeof id), 201);
    as_tokens(id, access, sizeof access, refresh, sizeof refresh);
    ck_assert_msg(as_get("jwks", NULL, &r) == 200 && strstr(r.body, "\"keys\""),
                  "%s: jwks after PostgreSQL came back: %ld %s", k, r.status, r.body);
    th_resp_free(&r);
    ck_assert_int_eq(as_introspect(access, active, sizeof active, NULL), 200);
    ck_assert_msg(!strcmp(active, "true"), "%s: the new access token: active %s", k, active);
    ck_assert_msg(log_lines("state_loaded", NULL, NULL) >= 1, "%s: no state_loaded line", k);
    assert_alive(before, nb, "after PostgreSQL came back");

    /* restarted mid-run: 503 during the outage, nothing used up, served
     * again after without a restart */
    as_code(id, code, sizeof code);
    ck_assert_int_eq(pgtest_stop(), 0);
    as_exchange(id, code, &r);
    assert_503(&r, "code exchange, PostgreSQL stopped mid-run", 0);
    ck_assert_int_eq(as_post("register", "application/json", NULL,
                             "{\"redirect_uris\":[\"" REDIR "\"],"
                             "\"token_endpoint_auth_method\":\"none\"}", &r), 0);
    assert_503(&r, "register, PostgreSQL stopped mid-run", 0);
    ck_assert_int_eq(pgtest_restart(), 0);
    as_exchange(id, code, &r);
    ck_assert_msg(r.status == 200, "%s: the code after PostgreSQL came back: %ld %s", k,
                  r.status, r.body);
    snprintf(access, sizeof access, "%s", jmember(r.body, "access_token"));
    th_resp_free(&r);
    ck_assert_int_eq(as_introspect(access, active, sizeof active, NULL), 200);
    ck_assert_str_eq(active, "true");
    ck_assert_int_eq(as_register(NULL, 0), 201);
    assert_alive(before, nb, "after PostgreSQL restarted");
}
END_TEST

/* `mcpauth-as --check` (which runs what a start runs) with store: the
 * exit status, stderr in *err (caller frees). */
static int as_check(const char *store, char **err)
{
    char dir[512], conf[2048], file[600], prog[600];
    snprintf(dir, sizeof dir, "%s/check", srv.dir);
    ck_assert(mkdir(dir, 0700) == 0 || errno == EEXIST);
    snprintf(conf, sizeof conf,
             "runtime_dir = %s\n"
             "[resource files]\n"
             "uri = http://127.0.0.1:1/mcp/files\n"
             "authorization_servers = http://127.0.0.1:1\n"
             "backend = http://127.0.0.1:9/mcp\n"
             "[authorization_server]\n"
             "issuer = http://127.0.0.1:1\n"
             "state_dir = %s/state\n"
             "store = %s\n",
             dir, dir, store);
    ck_assert_int_eq(th_write_file(dir, "check.conf", conf), 0);
    snprintf(file, sizeof file, "%s/check.conf", dir);
    snprintf(prog, sizeof prog, "%s/fcgi/mcpauth-as", th_builddir());
    char *argv[] = {prog, "--config", file, "--check", NULL};
    return th_run(argv, NULL, err);
}

/* Only a server that does not answer is waited for: what does not pass by
 * itself (the settings, no `mcpauth init`, a schema that needs `mcpauth
 * migrate`) still stops the program at start-up, saying why. */
START_TEST(as_pg_start_refusals)
{
    char store[512], other[256], cmd[1400], *err = NULL;
    ck_assert_int_eq(pgtest_restart(), 0);
    ck_assert_int_eq(pgtest_new_schema(store, sizeof store), 0);
    snprintf(other, sizeof other, "host=127.0.0.1 port=%d user=mcpauth dbname=nosuchdb",
             pgtest_port());
    int st = as_check(other, &err);
    ck_assert_msg(st == 1 && strstr(err, "nosuchdb"), "a database that does not exist: %d %s",
                  st, err);
    free(err);
    st = as_check(store, &err);
    ck_assert_msg(st == 1 && strstr(err, "mcpauth init"), "before `mcpauth init`: %d %s", st,
                  err);
    free(err);
    snprintf(cmd, sizeof cmd, "%s/tools/mcpauth --config %s/check/check.conf init >/dev/null",
             th_builddir(), srv.dir);
    ck_assert_int_eq(system(cmd), 0);
    st = as_check(store, &err);
    ck_assert_msg(st == 0, "after `mcpauth init`: %d %s", st, err);
    free(err);
    ck_assert_int_eq(pgtest_sql(store, "UPDATE schema_version SET version = 1", NULL, 0), 0);
    st = as_check(store, &err);
    ck_assert_msg(st == 1 && strstr(err, "mcpauth migrate"), "an older schema: %d %s", st, err);
    free(err);
    ck_assert_int_eq(pgtest_sql(store, "UPDATE schema_version SET version = 2", NULL, 0), 0);
    /* down: starts, and says why */
    ck_assert_int_eq(pgtest_stop(), 0);
    st = as_check(store, &err);
    ck_assert_int_eq(pgtest_restart(), 0);
    ck_assert_msg(st == 0 && strstr(err, "state_unavailable") && strstr(err, "PostgreSQL"),
                  "PostgreSQL down: %d %s", st, err);
    free(err);
}
END_TEST

static TCase *as_pg_case(const char *name, void (*setup)(void), int refusals)
{
    TCase *tc = tcase_create(name);
    tcase_add_unchecked_fixture(tc, setup, as_pg_stop);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, as_pg_down_at_start);
    if (refusals) /* no web server involved: once is enough */
        tcase_add_test(tc, as_pg_start_refusals);
    return tc;
}
#endif /* HAVE_LIBPQ */

static TCase *server_case(const char *name, void (*setup)(void))
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, setup, stop);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, worker_killed_under_load);
    tcase_add_test(tc, killed_stream_frees_its_slot);
    return tc;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (!mkdtemp(backend_dir))
        return EXIT_FAILURE;
    rsa = tk_key_new("RS256", "rsa1", 0);
    tk_key *pub[] = {rsa};
    jwks = tk_jwks(pub, 1);
    Suite *s = suite_create("faults-servers");
    suite_add_tcase(s, server_case("lighttpd", start_lighttpd));
    suite_add_tcase(s, server_case("apache", start_apache));
    suite_add_tcase(s, as_case("as-lighttpd", as_start_lighttpd));
    suite_add_tcase(s, as_case("as-apache", as_start_apache));
#ifdef HAVE_LIBPQ
    suite_add_tcase(s, as_pg_case("as-pg-lighttpd", as_pg_start_lighttpd, 1));
    suite_add_tcase(s, as_pg_case("as-pg-apache", as_pg_start_apache, 0));
#endif
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    free(jwks);
    tk_key_free(rsa);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", backend_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup failed\n");
    curl_global_cleanup();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
