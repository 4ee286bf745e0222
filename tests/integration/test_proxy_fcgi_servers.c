/* mcpauth-proxy as a standalone FastCGI server (--listen) behind Apache's
 * mod_proxy_fcgi, configured by the shipped apache/mcpauth-proxy-fcgi.conf,
 * in front of the example MCP server: the challenge without a token, a
 * relayed answer with the Authorization header reaching the proxy only,
 * SSE events passed on one by one, FastCGI connections reused, another
 * caller served while 20 streams are held open, and a Unix socket. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <curl/curl.h>

#include "../support/tokens.h"
#include "harness.h"

/* one caller opens 20 streams in a row */
#define LIMITS "rate_limit = 1000\nrate_burst = 1000\nrate_limit_address = 1000\nrate_burst_address = 1000\n"

static const char conf_tmpl[] =
    "runtime_dir = @DIR@\n"
    "backend_timeout = 5\n"
    "log_level = info\n"
    "stream_heartbeat = 1\n"
    "max_concurrent_per_caller = 64\n"
    "[resource files]\n"
    "uri = http://127.0.0.1:@PORT@/mcp/files\n"
    "authorization_servers = http://127.0.0.1:@PORT@\n"
    "scopes_supported = files:read\n"
    "scopes_required = files:read\n"
    "backend = http://127.0.0.1:%d/mcp\n"
    LIMITS
    "[resource held]\n"
    "uri = http://127.0.0.1:@PORT@/mcp/held\n"
    "authorization_servers = http://127.0.0.1:@PORT@\n"
    "backend = http://127.0.0.1:%d/held\n"
    LIMITS
    "[resource sock]\n"
    "uri = http://127.0.0.1:@PORT@/sock/files\n"
    "authorization_servers = http://127.0.0.1:@PORT@\n"
    "backend = http://127.0.0.1:%d/mcp\n"
    LIMITS
    "[issuer local]\n"
    "issuer = http://127.0.0.1:@PORT@\n"
    "jwks_file = @DIR@/jwks.json\n";

/* The snippet twice: /mcp to a proxy on TCP (@AUXPORT@), /sock to another
 * on a Unix socket; the Defines are read where they stand. */
static const char apache_extra[] =
    "LoadModule proxy_module @MODDIR@/mod_proxy.so\n"
    "LoadModule proxy_fcgi_module @MODDIR@/mod_proxy_fcgi.so\n"
    "Define MCPAUTH_PROXY_LOCATION /mcp\n"
    "Define MCPAUTH_PROXY_FCGI fcgi://127.0.0.1:@AUXPORT@\n"
    "Include \"@SRCDIR@/apache/mcpauth-proxy-fcgi.conf\"\n"
    "Define MCPAUTH_PROXY_LOCATION /sock\n"
    "Define MCPAUTH_PROXY_FCGI unix:@DIR@/proxy.sock|fcgi://localhost\n"
    "Include \"@SRCDIR@/apache/mcpauth-proxy-fcgi.conf\"\n";

static tk_key *rsa;
static char *jwks;
static th_server srv;
static pid_t backend_pid = -1, proxy_pid = -1, sock_proxy_pid = -1;
static int backend_port, hold_fd = -1, hold_port;
static char backend_dir[] = "/tmp/mcpauth-backend-XXXXXX";

/* The standalone proxy, as the systemd unit runs it, with the programs the
 * harness staged for Apache; its log goes to the scratch directory. */
static pid_t start_proxy(const char *listen, const char *logname)
{
    char prog[512], conf[512], log[512], ld[600];
    snprintf(prog, sizeof prog, "%s/bin/mcpauth-proxy", srv.dir);
    snprintf(conf, sizeof conf, "%s/mcpauth.conf", srv.dir);
    snprintf(log, sizeof log, "%s/%s", srv.dir, logname);
    snprintf(ld, sizeof ld, "LD_LIBRARY_PATH=%s/lib", srv.dir);
    char *argv[] = {prog, "--listen", (char *)listen, "--config", conf, NULL};
    const char *env[] = {ld, NULL};
    return th_spawn(argv, env, log);
}

static void start(void)
{
    backend_pid = th_start_example_server(backend_dir, &backend_port);
    if (backend_pid < 0)
        exit(EXIT_FAILURE);
    char *conf = NULL;
    if (asprintf(&conf, conf_tmpl, backend_port, hold_port, backend_port) < 0)
        exit(EXIT_FAILURE);
    const char *files[] = {"jwks.json", jwks, NULL};
    th_options o = {conf, apache_extra, files, NULL};
    int rc = th_start_ex(&srv, TH_APACHE, &o);
    free(conf);
    if (rc != 0) {
        th_kill(backend_pid);
        exit(EXIT_FAILURE);
    }
    char tcp[64], sock[512];
    snprintf(tcp, sizeof tcp, "127.0.0.1:%d", srv.aux_port);
    snprintf(sock, sizeof sock, "%s/proxy.sock", srv.dir);
    proxy_pid = start_proxy(tcp, "proxy.log");
    sock_proxy_pid = start_proxy(sock, "sock-proxy.log");
    for (int i = 0; i < 250 && access(sock, F_OK) != 0; i++)
        usleep(20000);
    /* Apache's children run as www-data; under systemd both are www-data */
    if (proxy_pid < 0 || sock_proxy_pid < 0 || th_wait_port(srv.aux_port, 5000) != 0 ||
        chmod(sock, 0666) != 0) {
        fprintf(stderr, "the standalone proxy did not start (see %s/proxy.log)\n", srv.dir);
        th_kill(proxy_pid);
        th_kill(sock_proxy_pid);
        th_stop(&srv);
        th_kill(backend_pid);
        exit(EXIT_FAILURE);
    }
}

static void stop(void)
{
    th_kill(proxy_pid);
    th_kill(sock_proxy_pid);
    th_stop(&srv);
    th_kill(backend_pid);
    proxy_pid = sock_proxy_pid = backend_pid = -1;
}

/* POST with the MCP headers; token and session may be NULL; extra: one
 * more header line or NULL. */
static void post(const char *path, const char *token, const char *version, const char *session,
                 const char *extra, const char *body, th_resp *r)
{
    char url[512], auth[8192], ver[128], sid[512];
    const char *h[8];
    int n = 0;
    snprintf(url, sizeof url, "%s%s", srv.base, path);
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        h[n++] = auth;
    }
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
    if (extra)
        h[n++] = extra;
    h[n] = NULL;
    ck_assert_msg(th_http("POST", url, h, body, r) == 0, "no response from %s", url);
}

#define INIT_BODY "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{\"name\":\"t\",\"version\":\"1\"}}}"

START_TEST(no_token_challenged)
{
    th_resp r;
    post("/mcp/files", NULL, NULL, NULL, NULL,
         "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}", &r);
    ck_assert_msg(r.status == 401, "status %ld: %s", r.status, r.body);
    char want[512];
    snprintf(want, sizeof want,
             "Bearer resource_metadata=\"%s/.well-known/oauth-protected-resource/mcp/files\", "
             "scope=\"files:read\"", srv.base);
    ck_assert_msg(th_hdr(&r, "WWW-Authenticate") != NULL, "no challenge in\n%s", r.headers);
    ck_assert_str_eq(th_hdr(&r, "WWW-Authenticate"), want);
    ck_assert_ptr_nonnull(strstr(th_hdr(&r, "Content-Type"), "application/json"));
    th_resp_free(&r);
}
END_TEST

/* The token reaches the proxy (else 401), the answer comes back, and no
 * credential reaches the backend: whoami lists what it received. */
START_TEST(token_relayed)
{
    char *t = th_token(&srv, rsa, "/mcp/files", "files:read", NULL);
    th_resp r;
    post("/mcp/files", t, NULL, NULL, NULL, INIT_BODY, &r);
    ck_assert_msg(r.status == 200, "initialize: %ld %s", r.status, r.body);
    ck_assert_ptr_nonnull(strstr(r.body, "\"protocolVersion\":\"2025-06-18\""));
    char sid[256];
    ck_assert_msg(th_hdr(&r, "Mcp-Session-Id") != NULL, "no Mcp-Session-Id in\n%s", r.headers);
    snprintf(sid, sizeof sid, "%s", th_hdr(&r, "Mcp-Session-Id"));
    th_resp_free(&r);
    post("/mcp/files", t, "2025-06-18", sid, NULL,
         "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}", &r);
    ck_assert_msg(r.status == 200, "tools/list: %ld %s", r.status, r.body);
    ck_assert_ptr_nonnull(strstr(th_hdr(&r, "Content-Type"), "application/json"));
    ck_assert_ptr_nonnull(strstr(r.body, "\"id\":2"));
    ck_assert_ptr_nonnull(strstr(r.body, "\"whoami\""));
    th_resp_free(&r);
    post("/mcp/files", t, "2025-06-18", sid, "Proxy-Authorization: Basic cHJveHk6c2VjcmV0",
         "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":\"whoami\","
         "\"arguments\":{}}}", &r);
    ck_assert_msg(r.status == 200, "whoami: %ld %s", r.status, r.body);
    ck_assert_ptr_nonnull(strstr(r.body, "alice"));
    ck_assert_ptr_null(strstr(r.body, t));
    ck_assert_ptr_null(strstr(r.body, "Bearer"));
    ck_assert_ptr_null(strstr(r.body, "cHJveHk6c2VjcmV0"));
    th_resp_free(&r);
    free(t);
}
END_TEST

/* When the first SSE event, not just the stream's ": open" comment,
 * reached the client. */
typedef struct {
    char *body;
    size_t len;
    double t0, t_event;
} sse_read;

static size_t on_sse(char *data, size_t size, size_t nmemb, void *p)
{
    sse_read *s = p;
    size_t n = size * nmemb;
    char *nb = realloc(s->body, s->len + n + 1);
    if (!nb)
        return 0;
    s->body = nb;
    memcpy(s->body + s->len, data, n);
    s->len += n;
    s->body[s->len] = '\0';
    if (s->t_event < 0 && strstr(s->body, "notifications/progress"))
        s->t_event = th_now() - s->t0;
    return n;
}

START_TEST(sse_event_by_event)
{
    char *t = th_token(&srv, rsa, "/mcp/files", "files:read", NULL);
    char url[512], auth[8192];
    snprintf(url, sizeof url, "%s/mcp/files", srv.base);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", t);
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, auth);
    h = curl_slist_append(h, "Accept: application/json, text/event-stream");
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "MCP-Protocol-Version: 2026-07-28");
    h = curl_slist_append(h, "Mcp-Method: tools/call");
    h = curl_slist_append(h, "Mcp-Name: countdown");
    /* 5 events 600 ms apart, then the result: 3 s in all */
    static const char body[] =
        "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"tools/call\",\"params\":{\"name\":\"countdown\","
        "\"arguments\":{\"n\":5,\"delay_ms\":600},\"_meta\":{\"progressToken\":\"p1\"}}}";
    sse_read s = {.t_event = -1};
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_sse);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    s.t0 = th_now();
    CURLcode rc = curl_easy_perform(c);
    double total = th_now() - s.t0;
    long status = 0;
    char *ct = NULL;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    ck_assert_msg(rc == CURLE_OK, "%s", curl_easy_strerror(rc));
    ck_assert_msg(status == 200, "status %ld: %s", status, s.body);
    ck_assert_msg(ct && strncmp(ct, "text/event-stream", 17) == 0, "Content-Type %s", ct);
    ck_assert_ptr_nonnull(strstr(s.body, "\"id\":6"));
    ck_assert_ptr_nonnull(strstr(s.body, "countdown from 5 done"));
    ck_assert_msg(s.t_event >= 0 && s.t_event < total - 1.0,
                  "first event at %.2f s, stream ended at %.2f s: buffered", s.t_event, total);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    free(s.body);
    free(t);
}
END_TEST

/* The client ports of every TCP connection to or from port, in any state
 * (TIME_WAIT included, which outlives a closed connection by a minute):
 * each connection Apache opened to the proxy shows up once. */
static int peer_ports(int port, int *out, int max)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    if (!f)
        return -1;
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned lport, rport, st;
        if (sscanf(line, " %*d: %*x:%x %*x:%x %x", &lport, &rport, &st) != 3)
            continue;
        int peer = (int)lport == port && (int)rport != port ? (int)rport
                 : (int)rport == port ? (int)lport : -1;
        if (peer < 0 || st == 0x0A) /* 0x0A: the listener itself */
            continue;
        int seen = 0;
        for (int i = 0; i < n && !seen; i++)
            seen = out[i] == peer;
        if (!seen && n < max)
            out[n++] = peer;
    }
    fclose(f);
    return n;
}

/* enablereuse: sequential requests go over kept FastCGI connections, so
 * the proxy accepts fewer connections than it answers requests (without
 * reuse: one each). */
START_TEST(connections_reused)
{
    enum { N = 10 };
    char *t = th_token(&srv, rsa, "/mcp/files", "files:read", NULL);
    int before[1024], after[1024];
    int nb = peer_ports(srv.aux_port, before, 1024);
    ck_assert_int_ge(nb, 0);
    for (int i = 0; i < N; i++) {
        th_resp r;
        post("/mcp/files", t, "2026-07-28", NULL, "Mcp-Method: ping",
             "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}", &r);
        ck_assert_msg(r.status == 200, "request %d: %ld %s", i + 1, r.status, r.body);
        ck_assert_msg(r.t_total < 5.0, "request %d took %.1f s", i + 1, r.t_total);
        th_resp_free(&r);
    }
    int na = peer_ports(srv.aux_port, after, 1024), fresh = 0;
    for (int i = 0; i < na; i++) {
        int old = 0;
        for (int j = 0; j < nb && !old; j++)
            old = before[j] == after[i];
        fresh += !old;
    }
    ck_assert_msg(fresh < N, "%d requests opened %d FastCGI connections", N, fresh);
    free(t);
}
END_TEST

/* A backend that holds every request it gets: an SSE head and one event,
 * then nothing until the proxy hangs up or the test releases it. */
static atomic_int held, release_held;

static void *hold_one(void *p)
{
    int c = (int)(intptr_t)p;
    char buf[16384];
    size_t got = 0;
    while (got < sizeof buf - 1) { /* the request head */
        ssize_t n = recv(c, buf + got, sizeof buf - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        buf[got] = '\0';
        if (strstr(buf, "\r\n\r\n"))
            break;
    }
    static const char head[] =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        "Connection: close\r\n\r\n"
        "id: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\","
        "\"params\":{\"level\":\"info\",\"data\":\"held-open\"}}\n\n";
    if (send(c, head, sizeof head - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof head - 1)) {
        atomic_fetch_add(&held, 1);
        double end = th_now() + 30;
        while (!atomic_load(&release_held) && th_now() < end) {
            struct pollfd pl = {.fd = c, .events = POLLIN};
            if (poll(&pl, 1, 100) == 1 && recv(c, buf, sizeof buf, 0) <= 0)
                break; /* the proxy hung up */
        }
        atomic_fetch_sub(&held, 1);
    }
    close(c);
    return NULL;
}

static void *hold_backend(void *p)
{
    (void)p;
    while (!atomic_load(&release_held)) {
        struct pollfd pl = {.fd = hold_fd, .events = POLLIN};
        if (poll(&pl, 1, 100) != 1)
            continue;
        int c = accept(hold_fd, NULL, NULL);
        pthread_t th;
        if (c >= 0 && pthread_create(&th, NULL, hold_one, (void *)(intptr_t)c) == 0)
            pthread_detach(th);
        else if (c >= 0)
            close(c);
    }
    return NULL;
}

/* Opens a GET stream on /mcp/held over a raw socket and waits up to
 * wait_ms for its first event; the socket, or -1 (closed) when none came. */
static int open_held_stream(const char *token, int wait_ms, char *got, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)srv.port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    char req[10000];
    int len = snprintf(req, sizeof req,
                       "GET /mcp/held HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                       "Authorization: Bearer %s\r\nAccept: text/event-stream\r\n"
                       "MCP-Protocol-Version: 2025-06-18\r\n\r\n", srv.port, token);
    ck_assert_int_eq(send(fd, req, (size_t)len, MSG_NOSIGNAL), len);
    double t0 = th_now();
    size_t n = 0;
    got[0] = '\0';
    while (n < cap - 1 && !strstr(got, "held-open")) {
        int left = wait_ms - (int)((th_now() - t0) * 1000);
        struct pollfd pl = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&pl, 1, left) != 1)
            break;
        ssize_t r = recv(fd, got + n, cap - 1 - n, 0);
        if (r <= 0)
            break;
        n += (size_t)r;
        got[n] = '\0';
    }
    if (!strstr(got, "held-open")) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Held streams take a thread each in the proxy; the pool grows with them,
 * so with 20 of one caller's streams open another caller is still served
 * at once. */
START_TEST(held_streams_do_not_block_others)
{
    enum { N = 20 };
    char *ta = th_token(&srv, rsa, "/mcp/held", "", "streamer");
    char *tb = th_token(&srv, rsa, "/mcp/files", "files:read", "bob");
    atomic_store(&held, 0);
    atomic_store(&release_held, 0);
    pthread_t backend;
    ck_assert_int_eq(pthread_create(&backend, NULL, hold_backend, NULL), 0);
    int fds[N], opened = 0;
    static char got[65536];
    for (; opened < N; opened++) {
        fds[opened] = open_held_stream(ta, 10000, got, sizeof got);
        if (fds[opened] < 0)
            break;
    }
    int ok = opened == N;
    th_resp r = {0};
    if (ok)
        post("/mcp/files", tb, "2026-07-28", NULL, "Mcp-Method: tools/list",
             "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/list\"}", &r);
    int still_held = atomic_load(&held);
    for (int i = 0; i < opened; i++)
        close(fds[i]);
    atomic_store(&release_held, 1);
    pthread_join(backend, NULL);
    ck_assert_msg(ok, "only %d of %d streams opened; the last got:\n%s", opened, N, got);
    ck_assert_msg(r.status == 200, "with %d streams held tools/list got %ld: %s", N, r.status,
                  r.body);
    ck_assert_ptr_nonnull(strstr(r.body, "\"whoami\""));
    ck_assert_msg(r.t_total < 5.0, "with %d streams held tools/list took %.1f s", N, r.t_total);
    ck_assert_msg(still_held == N, "%d of %d streams were still held", still_held, N);
    th_resp_free(&r);
    free(ta);
    free(tb);
}
END_TEST

/* The snippet's Unix socket form, with the proxy on --listen PATH. */
START_TEST(unix_socket_listener)
{
    char *t = th_token(&srv, rsa, "/sock/files", "", NULL);
    th_resp r;
    post("/sock/files", t, "2026-07-28", NULL, "Mcp-Method: tools/list",
         "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"tools/list\"}", &r);
    ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body);
    ck_assert_ptr_nonnull(strstr(r.body, "\"whoami\""));
    th_resp_free(&r);
    post("/sock/files", NULL, "2026-07-28", NULL, "Mcp-Method: tools/list",
         "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/list\"}", &r);
    ck_assert_int_eq(r.status, 401);
    ck_assert_ptr_nonnull(strstr(th_hdr(&r, "WWW-Authenticate"),
                                 "/.well-known/oauth-protected-resource/sock/files"));
    th_resp_free(&r);
    free(t);
}
END_TEST

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (!mkdtemp(backend_dir))
        return EXIT_FAILURE;
    rsa = tk_key_new("RS256", "rsa1", 0);
    tk_key *pub[] = {rsa};
    jwks = tk_jwks(pub, 1);
    /* the holding backend's socket: accepted by the test that uses it */
    hold_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (hold_fd < 0 || bind(hold_fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        listen(hold_fd, 64) < 0 || getsockname(hold_fd, (struct sockaddr *)&a, &alen) < 0)
        return EXIT_FAILURE;
    hold_port = ntohs(a.sin_port);

    Suite *s = suite_create("proxy-fcgi-servers");
    TCase *tc = tcase_create("apache-proxy-fcgi");
    tcase_add_unchecked_fixture(tc, start, stop);
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, no_token_challenged);
    tcase_add_test(tc, token_relayed);
    tcase_add_test(tc, sse_event_by_event);
    tcase_add_test(tc, connections_reused);
    tcase_add_test(tc, held_streams_do_not_block_others);
    tcase_add_test(tc, unix_socket_listener);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    close(hold_fd);
    free(jwks);
    tk_key_free(rsa);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", backend_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup failed\n");
    curl_global_cleanup();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
