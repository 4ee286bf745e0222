/* Stream benchmark (issue 12): what held-open event streams cost the proxy,
 * and whether they hurt anyone else.  One run per web-server mode, each
 * with the example MCP server (examples/mcp-server) as the backend, which
 * holds its GET streams open (--stream-events 0):
 *
 *  1. held   CALLERS x PER streams (distinct token subjects, PER each, half
 *            standalone GET streams, half tools/call countdown streams
 *            unless --kind says otherwise), all held by one thread with
 *            libcurl's multi interface, while LOADERS other callers send
 *            tools/call echo at RATE/s each: their latency and errors, with
 *            the same figures without streams for comparison; memory per
 *            held stream = (RSS of the mcpauth-proxy processes with the
 *            streams held - idle RSS) / streams.
 *  2. vanish VANISH GET streams whose clients close the connection without
 *            reading further: how long until the proxy notices each (its
 *            log lines "client_gone"; the backend's "stream ended" lines
 *            say when its connection was released too), while a new client
 *            runs initialize + tools/list over and over (its latency).
 *  3. cap    with max_concurrent_per_caller = PER, a caller holding PER
 *            streams sends tools/call: it must get 429 at once, while the
 *            loaders of phase 1 (other callers) go on unaffected.
 *
 * Goals (issue 12): p99 < 50 ms and no error for the other callers; < 64
 * KiB per held stream; every vanished client noticed within 30 s; 429 at
 * once.  Nothing here ever waits without a bound: a proxy that cannot hold
 * the streams shows up as streams not opened, timeouts and errors.
 *
 *   bench/bench_streams [--server lighttpd|apache-proxy-fcgi|apache-fcgid|all]
 *       [--callers N] [--per N] [--vanish N] [--seconds S] [--loaders N]
 *       [--rate R] [--events-ms MS] [--kind get|call|mix] [--open-timeout S]
 *       [--proxy-conf "key = value"]... [--results FILE] [--label TEXT] [--strict]
 *
 * Defaults: lighttpd, 100 callers x 10, 500 vanishing, 10 s, 4 loaders at
 * 50/s, a GET-stream event every 5000 ms (0: silent streams), mix.  The
 * mod_fcgid mode (one process per request, at most 128 per class in the
 * shipped snippet) runs with at most 100 streams and 100 vanishing.
 * --proxy-conf adds a global key to mcpauth.conf.  --results appends the
 * figures, with the machine and the date, to FILE (Markdown); --label adds
 * a note to the run's heading.  --strict: exit status 1 when a goal is
 * missed. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "../tests/integration/harness.h"
#include "../tests/support/tokens.h"

#define ISSUER "https://as.example.com"
#define ERA_2025 "2025-11-25"
#define ERA_2026 "2026-07-28"
#define REQ_TIMEOUT_S 5     /* one request of a loader or probe */
#define NOTICE_WAIT_S 40    /* how long to watch for vanished clients */
/* mod_fcgid: one process per request, FcgidMaxProcessesPerClass 128 in the
 * shipped snippet; room is left for the loaders and probes */
#define FCGID_MAX_STREAMS 100

typedef enum { M_LIGHTTPD, M_PROXY_FCGI, M_FCGID } mode;
static const char *const mode_names[] = {"lighttpd", "apache-proxy-fcgi", "apache-fcgid"};

static struct {
    int callers, per, vanish, loaders, rate, events_ms, open_timeout, strict;
    double seconds;
    const char *kind, *results, *servers, *label;
    char proxy_conf[2048];
} opt = {100, 10, 500, 4, 50, 5000, 60, 0, 10, "mix", NULL, "lighttpd", NULL, ""};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
    if (s <= 0)
        return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------ samples */

typedef struct {
    double *v;
    size_t n, cap;
} samples;

static void add(samples *s, double x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 256;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (!s->v)
            abort();
    }
    s->v[s->n++] = x;
}

static void merge(samples *into, const samples *from)
{
    for (size_t i = 0; i < from->n; i++)
        add(into, from->v[i]);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile p (0..100); -1 without samples. */
static double pct(samples *s, double p)
{
    if (!s->n)
        return -1;
    qsort(s->v, s->n, sizeof *s->v, cmp_double);
    size_t k = (size_t)(p / 100.0 * (double)s->n + 0.999999);
    if (k < 1)
        k = 1;
    if (k > s->n)
        k = s->n;
    return s->v[k - 1];
}

/* "p50/p99/max" in milliseconds, or "-". */
static const char *ms3(samples *s, char *buf, size_t len)
{
    if (!s->n)
        snprintf(buf, len, "-");
    else
        snprintf(buf, len, "%.1f / %.1f / %.1f ms", pct(s, 50) * 1e3, pct(s, 99) * 1e3,
                 pct(s, 100) * 1e3);
    return buf;
}

/* ------------------------------------------------------------- setup */

typedef struct {
    mode m;
    th_server srv;
    pid_t backend, standalone;
    int bport;
    char bdir[64];
    char proxy_log[600], backend_log[600];
    char url[256];
    tk_key *key;
    int callers, per, vanish; /* this run's sizes */
} bench;

/* "Authorization: Bearer <JWT for sub>"; caller frees. */
static char *auth_for(bench *b, const char *sub)
{
    char aud[256], *claims = NULL, *hdr = NULL;
    snprintf(aud, sizeof aud, "%s/mcp/files", b->srv.base);
    long now = (long)time(NULL);
    if (asprintf(&claims,
                 "{\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"%s\",\"client_id\":\"bench\","
                 "\"scope\":\"\",\"iat\":%ld,\"exp\":%ld,\"jti\":\"%s-%ld\"}",
                 ISSUER, aud, sub, now, now + 3600, sub, now) < 0)
        abort();
    char *tok = tk_mint(b->key, claims, NULL);
    if (!tok || asprintf(&hdr, "Authorization: Bearer %s", tok) < 0)
        abort();
    free(tok);
    free(claims);
    return hdr;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4096)
        fprintf(stderr, "bench: open-file limit %lu is low for this benchmark\n",
                (unsigned long)rl.rlim_cur);
}

static pid_t start_backend(bench *b, int conns)
{
    char prog[512], pf[128], ev[16], iv[16], mc[16];
    snprintf(prog, sizeof prog, "%s/examples/mcp-server", th_builddir());
    snprintf(pf, sizeof pf, "%s/port", b->bdir);
    snprintf(b->backend_log, sizeof b->backend_log, "%s/backend.log", b->bdir);
    snprintf(ev, sizeof ev, "0");
    snprintf(iv, sizeof iv, "%d", opt.events_ms);
    snprintf(mc, sizeof mc, "%d", conns);
    char *argv[] = {prog, "--port", "0", "--port-file", pf, "--path", "/mcp",
                    "--stream-events", ev, "--stream-interval", iv, "--max-conns", mc, NULL};
    pid_t pid = th_spawn(argv, NULL, b->backend_log);
    for (int i = 0; pid > 0 && i < 250 && b->bport <= 0; i++) {
        FILE *f = fopen(pf, "r");
        if (f) {
            if (fscanf(f, "%d", &b->bport) != 1)
                b->bport = 0;
            fclose(f);
        }
        if (b->bport <= 0)
            usleep(20000);
    }
    if (b->bport <= 0 || th_wait_port(b->bport, 5000) != 0) {
        fprintf(stderr, "bench: the example MCP server did not start (see %s)\n", b->backend_log);
        th_kill(pid);
        return -1;
    }
    return pid;
}

/* Apache's children run as www-data: the proxy's runtime_dir is theirs. */
static int prepare_apache(th_server *s)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "chown www-data: %s 2>/dev/null || true", s->dir);
    if (geteuid() == 0 && system(cmd) != 0)
        fprintf(stderr, "bench: chown failed\n");
    return 0;
}

/* Starts the backend, the web server and (mod_proxy_fcgi) the standalone
 * proxy.  0, or -1 after saying why. */
static int start_servers(bench *b)
{
    int streams = b->callers * b->per + b->vanish;
    snprintf(b->bdir, sizeof b->bdir, "/tmp/mcpauth-bench-XXXXXX");
    if (!mkdtemp(b->bdir))
        return -1;
    b->backend = start_backend(b, streams + 512);
    if (b->backend < 0)
        return -1;
    b->key = tk_key_new("ES256", "k1", 0);
    tk_key *keys[] = {b->key};
    char *jwks = tk_jwks(keys, 1);
    char conf[4096];
    /* log_level info: the vanish phase counts the proxy's client_gone
     * lines; the per-caller cap is the streams each caller holds */
    snprintf(conf, sizeof conf,
             "runtime_dir = @DIR@\nlog_level = info\nmax_concurrent_per_caller = %d\n"
             "stream_idle_timeout = 3600\n%s"
             "[resource files]\nuri = http://127.0.0.1:@PORT@/mcp/files\n"
             "authorization_servers = " ISSUER "\nbackend = http://127.0.0.1:%d/mcp\n"
             "rate_limit = 0\nrate_limit_address = 0\n"
             "[issuer as]\nissuer = " ISSUER "\njwks_file = @DIR@/jwks.json\n",
             b->per, opt.proxy_conf, b->bport);
    char extra[4096];
    th_kind kind = b->m == M_LIGHTTPD ? TH_LIGHTTPD : TH_APACHE;
    if (b->m == M_LIGHTTPD)
        snprintf(extra, sizeof extra,
                 "var.mcpauth_proxy_prefix = \"/mcp\"\n"
                 "include \"@SRCDIR@/lighttpd/mcpauth-proxy.conf\"\n"
                 "server.max-fds = 16384\nserver.max-connections = 8192\n");
    else if (b->m == M_FCGID)
        /* the shipped snippet; threads enough for every process it allows */
        snprintf(extra, sizeof extra,
                 "Define MCPAUTH_PROXY_LOCATION /mcp\n"
                 "Include \"@SRCDIR@/apache/mcpauth-proxy.conf\"\n"
                 "ServerLimit 6\nStartServers 6\nThreadsPerChild 64\nMaxRequestWorkers 384\n"
                 "MaxSpareThreads 384\n");
    else {
        /* mod_proxy_fcgi in front of `mcpauth-proxy --listen`, from the
         * shipped snippet when there is one; every held stream holds an
         * Apache worker thread too, so there are threads for all of them */
        char snippet[600];
        snprintf(snippet, sizeof snippet, "%s/apache/mcpauth-proxy-fcgi.conf", th_srcdir());
        int shipped = access(snippet, R_OK) == 0;
        int procs = streams / 64 + 4;
        snprintf(extra, sizeof extra,
                 "LoadModule proxy_module @MODDIR@/mod_proxy.so\n"
                 "LoadModule proxy_fcgi_module @MODDIR@/mod_proxy_fcgi.so\n"
                 "ServerLimit %d\nStartServers %d\nThreadsPerChild 64\nMaxRequestWorkers %d\n"
                 "MaxSpareThreads %d\n%s",
                 procs, procs, procs * 64, procs * 64,
                 shipped ? "Define MCPAUTH_PROXY_LOCATION /mcp\n"
                           "Define MCPAUTH_PROXY_FCGI fcgi://127.0.0.1:@AUXPORT@/\n"
                           "Include \"@SRCDIR@/apache/mcpauth-proxy-fcgi.conf\"\n"
                         : "<Location /mcp>\n"
                           "  ProxyPass fcgi://127.0.0.1:@AUXPORT@/ flushpackets=on timeout=3600\n"
                           "  CGIPassAuth On\n"
                           "</Location>\n");
    }
    const char *files[] = {"jwks.json", jwks, NULL};
    th_options o = {conf, extra, files, kind == TH_APACHE ? prepare_apache : NULL};
    int rc = th_start_ex(&b->srv, kind, &o);
    free(jwks);
    if (rc != 0) {
        fprintf(stderr, "bench: %s did not start\n", mode_names[b->m]);
        return -1;
    }
    snprintf(b->url, sizeof b->url, "%s/mcp/files", b->srv.base);
    /* lighttpd -D leaves its children's stderr on its own (the harness's
     * server.out); Apache puts it in its error log */
    snprintf(b->proxy_log, sizeof b->proxy_log, "%s/%s", b->srv.dir,
             b->m == M_LIGHTTPD ? "server.out" : "error.log");
    if (b->m == M_PROXY_FCGI) {
        char prog[512], cfile[512], addr[64];
        snprintf(prog, sizeof prog, "%s/fcgi/mcpauth-proxy", th_builddir());
        snprintf(cfile, sizeof cfile, "%s/mcpauth.conf", b->srv.dir);
        snprintf(addr, sizeof addr, "127.0.0.1:%d", b->srv.aux_port);
        snprintf(b->proxy_log, sizeof b->proxy_log, "%s/proxy.log", b->srv.dir);
        char *argv[] = {prog, "--config", cfile, "--listen", addr, NULL};
        b->standalone = th_spawn(argv, NULL, b->proxy_log);
        if (b->standalone < 0 || th_wait_port(b->srv.aux_port, 10000) != 0) {
            fprintf(stderr, "bench: mcpauth-proxy --listen did not start (see %s)\n",
                    b->proxy_log);
            return -1;
        }
    }
    return 0;
}

static void stop_servers(bench *b)
{
    if (b->standalone > 0)
        th_kill(b->standalone);
    b->standalone = -1;
    if (b->srv.pid > 0)
        th_stop(&b->srv);
    th_kill(b->backend);
    b->backend = -1;
    if (b->key)
        tk_key_free(b->key);
    b->key = NULL;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", b->bdir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench: could not remove %s\n", b->bdir);
}

/* RSS (KiB) and threads summed over this run's mcpauth-proxy processes. */
static long proxy_rss(bench *b, int *nproc, int *nthreads)
{
    pid_t pids[2048];
    int n = th_programs(b->srv.dir, "mcpauth-proxy", pids, 2048);
    long total = 0;
    *nproc = n < 2048 ? n : 2048;
    *nthreads = 0;
    for (int i = 0; i < *nproc; i++) {
        char path[64], line[256];
        snprintf(path, sizeof path, "/proc/%d/status", (int)pids[i]);
        FILE *f = fopen(path, "r");
        while (f && fgets(line, sizeof line, f)) {
            if (!strncmp(line, "VmRSS:", 6))
                total += strtol(line + 6, NULL, 10);
            else if (!strncmp(line, "Threads:", 8))
                *nthreads += (int)strtol(line + 8, NULL, 10);
        }
        if (f)
            fclose(f);
    }
    return total;
}

/* ------------------------------------------------- one-at-a-time client */

typedef struct {
    CURL *c;
    char *body;
    size_t len;
    char sid[128];
    long status;
} client;

static size_t cl_body(char *d, size_t s, size_t n, void *p)
{
    client *cl = p;
    size_t k = s * n;
    char *nb = realloc(cl->body, cl->len + k + 1);
    if (!nb)
        return 0;
    memcpy(nb + cl->len, d, k);
    cl->body = nb;
    cl->len += k;
    cl->body[cl->len] = '\0';
    return k;
}

static size_t cl_header(char *d, size_t s, size_t n, void *p)
{
    client *cl = p;
    size_t k = s * n;
    if (k > 16 && strncasecmp(d, "Mcp-Session-Id:", 15) == 0) {
        const char *v = d + 15;
        while (*v == ' ')
            v++;
        size_t vl = strcspn(v, "\r\n");
        if (vl < sizeof cl->sid) {
            memcpy(cl->sid, v, vl);
            cl->sid[vl] = '\0';
        }
    }
    return k;
}

/* One POST; the answer's status in cl->status (0: none), its body in
 * cl->body.  Returns the seconds it took. */
static double post(client *cl, const char *url, const char *auth, const char *version,
                   const char *session, const char *method, const char *name, const char *body)
{
    char h[5][160];
    struct curl_slist *hl = NULL;
    hl = curl_slist_append(hl, "Content-Type: application/json");
    hl = curl_slist_append(hl, "Accept: application/json, text/event-stream");
    hl = curl_slist_append(hl, auth);
    if (version) {
        snprintf(h[0], sizeof h[0], "MCP-Protocol-Version: %s", version);
        hl = curl_slist_append(hl, h[0]);
    }
    if (session) {
        snprintf(h[1], sizeof h[1], "Mcp-Session-Id: %s", session);
        hl = curl_slist_append(hl, h[1]);
    }
    if (version && !strcmp(version, ERA_2026)) {
        snprintf(h[2], sizeof h[2], "Mcp-Method: %s", method);
        hl = curl_slist_append(hl, h[2]);
        if (name) {
            snprintf(h[3], sizeof h[3], "Mcp-Name: %s", name);
            hl = curl_slist_append(hl, h[3]);
        }
    }
    if (!cl->c)
        cl->c = curl_easy_init();
    CURL *c = cl->c;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, cl_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, cl);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, cl_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, cl);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)REQ_TIMEOUT_S);
    cl->len = 0;
    cl->status = 0;
    cl->sid[0] = '\0';
    if (cl->body)
        cl->body[0] = '\0';
    double t0 = now_s();
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &cl->status);
    double t = now_s() - t0;
    curl_slist_free_all(hl);
    return t;
}

static int answered(const client *cl)
{
    return cl->status == 200 && cl->body && strstr(cl->body, "\"result\"");
}

static void client_free(client *cl)
{
    if (cl->c)
        curl_easy_cleanup(cl->c);
    free(cl->body);
    memset(cl, 0, sizeof *cl);
}

static const char INIT_BODY[] =
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\""
    ERA_2025 "\",\"capabilities\":{},\"clientInfo\":{\"name\":\"bench\",\"version\":\"1\"}}}";
static const char LIST_BODY[] = "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}";
static const char ECHO_BODY[] =
    "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\","
    "\"arguments\":{\"text\":\"benchmark\"}}}";
static const char COUNTDOWN_BODY[] =
    "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/call\",\"params\":{\"name\":\"countdown\","
    "\"arguments\":{\"n\":20,\"delay_ms\":5000}}}";

/* A 2025-era session for auth; 0, or -1. */
static int open_session(const char *url, const char *auth, char *sid, size_t len)
{
    client cl = {0};
    post(&cl, url, auth, NULL, NULL, "initialize", NULL, INIT_BODY);
    int ok = answered(&cl) && cl.sid[0] && strlen(cl.sid) < len;
    if (ok)
        snprintf(sid, len, "%s", cl.sid);
    client_free(&cl);
    return ok ? 0 : -1;
}

/* ------------------------------------------- loaders and probe threads */

typedef struct {
    const char *url;
    char *auth;
    double until, interval;
    samples lat;      /* answered requests */
    long ok, errors;  /* errors: anything but a 200 with a result */
    long n429, other; /* cap probe: 429 answers, anything else */
    samples lat429;
    samples lat_init, lat_list; /* newcomer probe */
    char **auths;     /* newcomer probe: a fresh caller each round */
    int nauths;
    atomic_int quit;  /* newcomer probe: stop after this round */
} worker;

/* tools/call echo at a steady pace (no catch-up bursts). */
static void *loader_main(void *p)
{
    worker *w = p;
    client cl = {0};
    double next = now_s();
    while (now_s() < w->until) {
        double t = post(&cl, w->url, w->auth, ERA_2026, NULL, "tools/call", "echo", ECHO_BODY);
        if (answered(&cl)) {
            w->ok++;
            add(&w->lat, t);
        } else {
            w->errors++;
        }
        next += w->interval;
        double now = now_s();
        if (next < now)
            next = now;
        sleep_s(next - now);
    }
    client_free(&cl);
    return NULL;
}

/* The caller at its cap: every tools/call must be refused with 429. */
static void *cap_main(void *p)
{
    worker *w = p;
    client cl = {0};
    while (now_s() < w->until) {
        double t = post(&cl, w->url, w->auth, ERA_2026, NULL, "tools/call", "echo", ECHO_BODY);
        if (cl.status == 429) {
            w->n429++;
            add(&w->lat429, t);
        } else {
            w->other++;
        }
        sleep_s(w->interval);
    }
    client_free(&cl);
    return NULL;
}

/* A new client, each round: initialize, then tools/list in its session. */
static void *newcomer_main(void *p)
{
    worker *w = p;
    for (int i = 0; now_s() < w->until && !atomic_load(&w->quit); i++) {
        client cl = {0};
        const char *auth = w->auths[i % w->nauths];
        double t = post(&cl, w->url, auth, NULL, NULL, "initialize", NULL, INIT_BODY);
        char sid[128];
        snprintf(sid, sizeof sid, "%s", cl.sid);
        if (answered(&cl) && sid[0]) {
            add(&w->lat_init, t);
            t = post(&cl, w->url, auth, ERA_2025, sid, "tools/list", NULL, LIST_BODY);
            if (answered(&cl)) {
                add(&w->lat_list, t);
                w->ok++;
            } else {
                w->errors++;
            }
        } else {
            w->errors++;
        }
        client_free(&cl);
        sleep_s(w->interval);
    }
    return NULL;
}

typedef struct {
    samples lat;
    long ok, errors;
} load_result;

/* Runs the loaders for secs (and fn/arg alongside, if given); merged
 * figures in *r. */
static void run_loaders(bench *b, char **auths, double secs, load_result *r,
                        void *(*fn)(void *), worker *extra)
{
    int n = opt.loaders;
    worker *w = calloc((size_t)n, sizeof *w);
    pthread_t *t = calloc((size_t)n, sizeof *t), te;
    double until = now_s() + secs;
    for (int i = 0; i < n; i++) {
        w[i].url = b->url;
        w[i].auth = auths[i];
        w[i].until = until;
        w[i].interval = 1.0 / (opt.rate > 0 ? opt.rate : 1);
        pthread_create(&t[i], NULL, loader_main, &w[i]);
    }
    if (fn) {
        extra->until = until;
        pthread_create(&te, NULL, fn, extra);
    }
    memset(r, 0, sizeof *r);
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        merge(&r->lat, &w[i].lat);
        r->ok += w[i].ok;
        r->errors += w[i].errors;
        free(w[i].lat.v);
    }
    if (fn)
        pthread_join(te, NULL);
    free(w);
    free(t);
}

/* ------------------------------------------- held streams (curl multi) */

typedef struct hstream {
    CURL *e;
    struct curl_slist *h;
    int call;            /* a tools/call countdown stream, else GET */
    long status;
    atomic_int opened;   /* first body bytes (the proxy's ": open") */
    atomic_int done;     /* ended before we closed it */
    size_t bytes;
} hstream;

static struct {
    pthread_t t;
    CURLM *m;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    hstream **pending;
    int npending;
    hstream **live;
    int nlive, caplive;
    int close_req, stop;
    int closed_open, closed_open_get; /* open when closed: all, GET streams */
    atomic_int opened, ended, failed; /* ended: 200 then closed by the server */
    atomic_int f429, f5xx, fother, fnone; /* the failed by answer: none = no HTTP answer */
    char none_why[96];  /* libcurl's word on the first "none" (under mu) */
    char ended_why[128]; /* and on the first stream ended by the server */
} H = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static size_t hs_body(char *d, size_t s, size_t n, void *p)
{
    hstream *h = p;
    (void)d;
    if (!atomic_load(&h->opened) && h->status == 200) {
        atomic_store(&h->opened, 1);
        atomic_fetch_add(&H.opened, 1);
    }
    h->bytes += s * n;
    return s * n;
}

static size_t hs_header(char *d, size_t s, size_t n, void *p)
{
    hstream *h = p;
    if (s * n > 9 && strncmp(d, "HTTP/", 5) == 0) {
        const char *sp = memchr(d, ' ', s * n);
        h->status = sp ? strtol(sp + 1, NULL, 10) : 0;
    }
    return s * n;
}

static void hs_free(hstream *h)
{
    curl_easy_cleanup(h->e);
    curl_slist_free_all(h->h);
    free(h);
}

static void *holder_main(void *p)
{
    (void)p;
    for (;;) {
        pthread_mutex_lock(&H.mu);
        if (H.stop) {
            pthread_mutex_unlock(&H.mu);
            break;
        }
        for (int i = 0; i < H.npending; i++) {
            if (H.nlive == H.caplive) {
                H.caplive = H.caplive ? 2 * H.caplive : 1024;
                H.live = realloc(H.live, (size_t)H.caplive * sizeof *H.live);
                if (!H.live)
                    abort();
            }
            H.live[H.nlive++] = H.pending[i];
            curl_multi_add_handle(H.m, H.pending[i]->e);
        }
        H.npending = 0;
        if (H.close_req) {
            /* removing a transfer under way closes its connection: the
             * client vanishes without reading further */
            H.closed_open = H.closed_open_get = 0;
            for (int i = 0; i < H.nlive; i++) {
                hstream *h = H.live[i];
                if (atomic_load(&h->opened) && !atomic_load(&h->done)) {
                    H.closed_open++;
                    H.closed_open_get += !h->call;
                }
                curl_multi_remove_handle(H.m, h->e);
                hs_free(h);
            }
            H.nlive = 0;
            H.close_req = 0;
            pthread_cond_broadcast(&H.cv);
        }
        pthread_mutex_unlock(&H.mu);
        int running;
        curl_multi_perform(H.m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(H.m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            hstream *h;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&h);
            atomic_store(&h->done, 1);
            pthread_mutex_lock(&H.mu);
            if (h->status == 200 && atomic_load(&h->opened)) {
                atomic_fetch_add(&H.ended, 1);
                if (!H.ended_why[0])
                    snprintf(H.ended_why, sizeof H.ended_why, "first: a %s stream, %s",
                             h->call ? "tools/call" : "GET",
                             msg->data.result == CURLE_OK ? "closed cleanly"
                                                          : curl_easy_strerror(msg->data.result));
            } else {
                atomic_fetch_add(&H.failed, 1);
                if (!h->status && !H.none_why[0])
                    snprintf(H.none_why, sizeof H.none_why, "%s",
                             curl_easy_strerror(msg->data.result));
                atomic_fetch_add(h->status == 429   ? &H.f429
                                 : h->status >= 500 ? &H.f5xx
                                 : h->status        ? &H.fother
                                                    : &H.fnone,
                                 1);
            }
            pthread_mutex_unlock(&H.mu);
        }
        curl_multi_poll(H.m, NULL, 0, 100, NULL);
    }
    return NULL;
}

static void holder_zero(void)
{
    atomic_int *c[] = {&H.opened, &H.ended, &H.failed, &H.f429, &H.f5xx, &H.fother, &H.fnone};
    for (size_t i = 0; i < sizeof c / sizeof *c; i++)
        atomic_store(c[i], 0);
    H.none_why[0] = H.ended_why[0] = '\0';
}

/* "(429: n, 5xx: n, ...)" of the streams that failed so far. */
static const char *failures(char *buf, size_t len)
{
    int none = atomic_load(&H.fnone);
    pthread_mutex_lock(&H.mu);
    snprintf(buf, len, "429: %d, 5xx: %d, other status: %d, no answer: %d%s%s%s",
             atomic_load(&H.f429), atomic_load(&H.f5xx), atomic_load(&H.fother), none,
             none ? " (" : "", none ? H.none_why : "", none ? ")" : "");
    pthread_mutex_unlock(&H.mu);
    return buf;
}

static void holder_start(void)
{
    H.m = curl_multi_init();
    curl_multi_setopt(H.m, CURLMOPT_MAXCONNECTS, 16L);
    pthread_create(&H.t, NULL, holder_main, NULL);
}

static void holder_stop(void)
{
    pthread_mutex_lock(&H.mu);
    H.stop = 1;
    pthread_mutex_unlock(&H.mu);
    curl_multi_wakeup(H.m);
    pthread_join(H.t, NULL);
    for (int i = 0; i < H.nlive; i++) {
        curl_multi_remove_handle(H.m, H.live[i]->e);
        hs_free(H.live[i]);
    }
    free(H.live);
    free(H.pending);
    curl_multi_cleanup(H.m);
    H.m = NULL;
    H.live = H.pending = NULL;
    H.nlive = H.npending = H.caplive = H.stop = H.close_req = 0;
    holder_zero();
}

/* Closes every held stream at once; returns when their sockets are shut,
 * with how many were open in *get (GET streams) and the result. */
static int holder_close_all(int *get)
{
    int n;
    pthread_mutex_lock(&H.mu);
    H.close_req = 1;
    curl_multi_wakeup(H.m);
    while (H.close_req)
        pthread_cond_wait(&H.cv, &H.mu);
    n = H.closed_open;
    if (get)
        *get = H.closed_open_get;
    holder_zero(); /* no stream is left to count */
    pthread_mutex_unlock(&H.mu);
    return n;
}

static hstream *hs_new(const char *url, const char *auth, const char *sid, int call)
{
    hstream *h = calloc(1, sizeof *h);
    char line[200];
    h->call = call;
    h->e = curl_easy_init();
    h->h = curl_slist_append(NULL, auth);
    if (call) {
        h->h = curl_slist_append(h->h, "Content-Type: application/json");
        h->h = curl_slist_append(h->h, "Accept: application/json, text/event-stream");
        h->h = curl_slist_append(h->h, "MCP-Protocol-Version: " ERA_2026);
        h->h = curl_slist_append(h->h, "Mcp-Method: tools/call");
        h->h = curl_slist_append(h->h, "Mcp-Name: countdown");
        curl_easy_setopt(h->e, CURLOPT_POSTFIELDS, COUNTDOWN_BODY);
    } else {
        h->h = curl_slist_append(h->h, "Accept: text/event-stream");
        h->h = curl_slist_append(h->h, "MCP-Protocol-Version: " ERA_2025);
        snprintf(line, sizeof line, "Mcp-Session-Id: %s", sid);
        h->h = curl_slist_append(h->h, line);
    }
    curl_easy_setopt(h->e, CURLOPT_URL, url);
    curl_easy_setopt(h->e, CURLOPT_HTTPHEADER, h->h);
    curl_easy_setopt(h->e, CURLOPT_WRITEFUNCTION, hs_body);
    curl_easy_setopt(h->e, CURLOPT_WRITEDATA, h);
    curl_easy_setopt(h->e, CURLOPT_HEADERFUNCTION, hs_header);
    curl_easy_setopt(h->e, CURLOPT_HEADERDATA, h);
    curl_easy_setopt(h->e, CURLOPT_PRIVATE, (char *)h);
    curl_easy_setopt(h->e, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h->e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h->e, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(h->e, CURLOPT_FORBID_REUSE, 1L);
    return h;
}

static void holder_add(hstream **hs, int n)
{
    pthread_mutex_lock(&H.mu);
    H.pending = realloc(H.pending, (size_t)(H.npending + n) * sizeof *H.pending);
    if (!H.pending)
        abort();
    memcpy(H.pending + H.npending, hs, (size_t)n * sizeof *hs);
    H.npending += n;
    pthread_mutex_unlock(&H.mu);
    curl_multi_wakeup(H.m);
}

/* Waits up to secs for n streams to be open (or failed); the time it took
 * (or -1 on the bound). */
static double holder_wait_open(int n, double secs)
{
    double t0 = now_s();
    while (now_s() - t0 < secs) {
        if (atomic_load(&H.opened) + atomic_load(&H.failed) >= n)
            return now_s() - t0;
        sleep_s(0.02);
    }
    return -1;
}

/* ------------------------------------------------------- log watching */

/* Counts new lines of a log file that match, from where the last call
 * stopped (whole lines only). */
typedef struct {
    const char *path;
    long off;
} tail;

static void tail_init(tail *t, const char *path)
{
    t->path = path;
    t->off = 0;
    FILE *f = fopen(path, "r");
    if (f) {
        fseek(f, 0, SEEK_END);
        t->off = ftell(f);
        fclose(f);
    }
}

/* kind 0: the proxy noticed (event=client_gone, or request_ended with
 * reason=client_gone: the larger count is taken, in case both appear for
 * one request); kind 1: the backend's stream ended with the client gone. */
static void tail_count(tail *t, long *a, long *b)
{
    FILE *f = fopen(t->path, "r");
    if (!f)
        return;
    fseek(f, t->off, SEEK_SET);
    char line[8192];
    while (fgets(line, sizeof line, f)) {
        size_t l = strlen(line);
        if (l == 0 || line[l - 1] != '\n')
            break; /* a line still being written: read it next time */
        t->off += (long)l;
        if (strstr(line, "event=client_gone"))
            (*a)++;
        else if (strstr(line, "event=request_ended") && strstr(line, "reason=client_gone"))
            (*b)++;
        else if (strstr(line, "GET stream ended: client gone"))
            (*a)++;
    }
    fclose(f);
}

typedef struct {
    samples proxy, backend; /* seconds from the vanish to each notice */
    long nproxy, nbackend;
} notice;

/* Watches both logs for up to NOTICE_WAIT_S until the proxy has seen np
 * departures and the backend nb; t0 is when the clients vanished. */
static void watch_notices(tail *pt, tail *bt, int np_want, int nb_want, double t0, notice *nt)
{
    long pa = 0, pb = 0, ba = 0, bb = 0;
    memset(nt, 0, sizeof *nt);
    while (now_s() - t0 < NOTICE_WAIT_S) {
        tail_count(pt, &pa, &pb);
        tail_count(bt, &ba, &bb);
        double t = now_s() - t0;
        long np = pa > pb ? pa : pb;
        while (nt->nproxy < np) {
            add(&nt->proxy, t);
            nt->nproxy++;
        }
        while (nt->nbackend < ba) {
            add(&nt->backend, t);
            nt->nbackend++;
        }
        if (nt->nproxy >= np_want && nt->nbackend >= nb_want)
            break;
        sleep_s(0.02);
    }
}

/* --------------------------------------------------------- the report */

/* Notices (seconds after the close, in order) of want departures.  More
 * lines than streams open come from requests that were still queued when
 * their clients left; they are not counted. */
static const char *noticed(samples *s, int want, char *buf, size_t len)
{
    size_t n = s->n < (size_t)want ? s->n : (size_t)want;
    if (want <= 0)
        snprintf(buf, len, "no stream was open");
    else if (n == 0)
        snprintf(buf, len, "none of %d within %d s", want, NOTICE_WAIT_S);
    else if (n < (size_t)want)
        snprintf(buf, len, "%zu of %d within %d s (p50 %.1f s)", n, want, NOTICE_WAIT_S,
                 s->v[(n - 1) / 2]);
    else
        snprintf(buf, len, "all %d, p50 after %.1f s, the last after %.1f s", want,
                 s->v[(n - 1) / 2], s->v[n - 1]);
    return buf;
}

static int all_within(const samples *s, int want, double secs)
{
    return want > 0 && s->n >= (size_t)want && s->v[want - 1] <= secs;
}

typedef struct {
    char line[64][1024];
    int n;
    int missed; /* goals missed */
} report;

static void row(report *r, const char *what, const char *value, const char *goal, int met)
{
    if (r->n >= 64)
        return;
    snprintf(r->line[r->n++], sizeof r->line[0], "| %s | %s | %s%s |", what, value, goal,
             met < 0 ? "" : met ? " (met)" : " (**missed**)");
    if (met == 0)
        r->missed++;
}

static void machine(char *buf, size_t len)
{
    struct utsname u;
    long kib = 0;
    char line[256];
    FILE *f = fopen("/proc/meminfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "MemTotal:", 9))
            kib = strtol(line + 9, NULL, 10);
    if (f)
        fclose(f);
    uname(&u);
    snprintf(buf, len, "nproc %ld, RAM %.1f GiB, kernel %s %s", sysconf(_SC_NPROCESSORS_ONLN),
             (double)kib / (1024.0 * 1024.0), u.sysname, u.release);
}

/* First line of a command's output (version strings, the commit). */
static void first_line(const char *cmd, char *buf, size_t len)
{
    buf[0] = '\0';
    FILE *p = popen(cmd, "r");
    if (!p)
        return;
    if (fgets(buf, (int)len, p))
        buf[strcspn(buf, "\n")] = '\0';
    pclose(p);
}

static void print_report(bench *b, report *r, const char *title)
{
    char mach[256], when[64], commit[64], server[128], cmd[700];
    machine(mach, sizeof mach);
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    /* the commit, and whether the programs measured differ from it */
    snprintf(cmd, sizeof cmd,
             "cd '%s' && c=$(git rev-parse --short HEAD 2>/dev/null) && "
             "{ git diff --quiet HEAD -- lib fcgi include examples 2>/dev/null && echo $c || "
             "echo \"$c with uncommitted changes\"; }",
             th_srcdir());
    first_line(cmd, commit, sizeof commit);
    if (b->m == M_LIGHTTPD)
        snprintf(cmd, sizeof cmd, "'%s' -v 2>&1",
                 getenv("LIGHTTPD") && *getenv("LIGHTTPD") ? getenv("LIGHTTPD")
                                                           : "/usr/sbin/lighttpd");
    else
        snprintf(cmd, sizeof cmd, "'%s' -v 2>&1 | head -1",
                 getenv("APACHE2") && *getenv("APACHE2") ? getenv("APACHE2")
                                                         : "/usr/sbin/apache2");
    first_line(cmd, server, sizeof server);
    printf("\n%s%s%s\n%s; %s; commit %s; %s\n\n", title, opt.label ? "; " : "",
           opt.label ? opt.label : "", server, mach, commit[0] ? commit : "?", when);
    printf("| figure | value | goal |\n|---|---|---|\n");
    for (int i = 0; i < r->n; i++)
        printf("%s\n", r->line[i]);
    printf("%s\n", r->missed ? "Goals missed: see the rows marked missed." : "Every goal met.");
    if (!opt.results)
        return;
    FILE *f = fopen(opt.results, "a");
    if (!f) {
        fprintf(stderr, "bench: %s: %s\n", opt.results, strerror(errno));
        return;
    }
    fprintf(f, "\n## %s%s%s, %s\n\n%s\n\n%s; %s; commit %s.\n\n"
               "| figure | value | goal |\n|---|---|---|\n",
            mode_names[b->m], opt.label ? ": " : "", opt.label ? opt.label : "", when, title,
            server, mach, commit[0] ? commit : "?");
    for (int i = 0; i < r->n; i++)
        fprintf(f, "%s\n", r->line[i]);
    fprintf(f, "\n%s\n", r->missed ? "Goals missed." : "Every goal met.");
    fclose(f);
}

/* ---------------------------------------------------------- one mode */

static int run_mode(mode m)
{
    bench b;
    memset(&b, 0, sizeof b);
    b.m = m;
    b.backend = b.standalone = -1;
    b.callers = opt.callers;
    b.per = opt.per;
    b.vanish = opt.vanish;
    if (m == M_FCGID) { /* one process per stream */
        if (b.callers * b.per > FCGID_MAX_STREAMS)
            b.callers = FCGID_MAX_STREAMS / b.per > 0 ? FCGID_MAX_STREAMS / b.per : 1;
        if (b.vanish > FCGID_MAX_STREAMS)
            b.vanish = FCGID_MAX_STREAMS;
    }
    if (start_servers(&b) != 0) {
        stop_servers(&b);
        return -1;
    }
    int nstreams = b.callers * b.per;
    report r = {0};
    char v[512], g[96], s1[96];
    int ncalls = 0;

    /* callers: stream holders, loaders, the vanishing, newcomers */
    char **hold_auth = calloc((size_t)b.callers, sizeof *hold_auth);
    char **load_auth = calloc((size_t)opt.loaders, sizeof *load_auth);
    int nvc = (b.vanish + b.per - 1) / b.per;
    char **van_auth = calloc((size_t)nvc + 1, sizeof *van_auth);
    char *new_auth[64];
    char sub[64];
    for (int i = 0; i < b.callers; i++) {
        snprintf(sub, sizeof sub, "holder-%d", i);
        hold_auth[i] = auth_for(&b, sub);
    }
    for (int i = 0; i < opt.loaders; i++) {
        snprintf(sub, sizeof sub, "loader-%d", i);
        load_auth[i] = auth_for(&b, sub);
    }
    for (int i = 0; i < nvc; i++) {
        snprintf(sub, sizeof sub, "vanish-%d", i);
        van_auth[i] = auth_for(&b, sub);
    }
    for (int i = 0; i < 64; i++) {
        snprintf(sub, sizeof sub, "newcomer-%d", i);
        new_auth[i] = auth_for(&b, sub);
    }

    /* 0. idle: warm-up, baseline latency, idle memory */
    load_result base, held;
    run_loaders(&b, load_auth, 1, &base, NULL, NULL);
    free(base.lat.v);
    run_loaders(&b, load_auth, opt.seconds / 2, &base, NULL, NULL);
    int np0, nt0, np1, nt1;
    long rss0 = proxy_rss(&b, &np0, &nt0);

    /* 1. hold: sessions, then every stream at once */
    holder_start();
    hstream **hs = calloc((size_t)nstreams, sizeof *hs);
    int nsess = 0;
    for (int i = 0; i < b.callers; i++) {
        char sid[128] = "";
        int need_get = strcmp(opt.kind, "call") != 0;
        if (need_get && open_session(b.url, hold_auth[i], sid, sizeof sid) == 0)
            nsess++;
        for (int k = 0; k < b.per; k++) {
            int call = !strcmp(opt.kind, "call") || (!strcmp(opt.kind, "mix") && k % 2);
            ncalls += call;
            hs[i * b.per + k] = hs_new(b.url, hold_auth[i], sid, call);
        }
    }
    double t_open0 = now_s();
    holder_add(hs, nstreams);
    double t_open = holder_wait_open(nstreams, opt.open_timeout);
    int opened = atomic_load(&H.opened), failed = atomic_load(&H.failed);
    char why_failed[256];
    failures(why_failed, sizeof why_failed);
    if (t_open < 0)
        t_open = now_s() - t_open0;
    long rss1 = proxy_rss(&b, &np1, &nt1);

    /* 1 + 3. with the streams held: the loaders, and the capped caller */
    worker cap = {0};
    cap.url = b.url;
    cap.auth = hold_auth[0];
    cap.interval = 0.1;
    run_loaders(&b, load_auth, opt.seconds, &held, cap_main, &cap);
    int np2, nt2;
    long rss2 = proxy_rss(&b, &np2, &nt2);
    if (rss1 > rss2)
        rss2 = rss1;
    int ended = atomic_load(&H.ended);
    int failed2 = atomic_load(&H.failed);
    char ended_why[128];
    pthread_mutex_lock(&H.mu);
    snprintf(ended_why, sizeof ended_why, "%s", H.ended_why);
    pthread_mutex_unlock(&H.mu);

    /* release: every held stream closed at once; the proxy must notice
     * (the backend logs the end of GET streams only) */
    tail pt, bt;
    tail_init(&pt, b.proxy_log);
    tail_init(&bt, b.backend_log);
    double t_rel = now_s();
    int still_get, still = holder_close_all(&still_get);
    notice rel;
    watch_notices(&pt, &bt, still, still_get, t_rel, &rel);

    /* 2. vanish: GET streams whose clients disappear */
    hstream **vs = calloc((size_t)b.vanish, sizeof *vs);
    int vsess = 0;
    for (int i = 0; i < nvc; i++) {
        char sid[128] = "";
        if (open_session(b.url, van_auth[i], sid, sizeof sid) == 0)
            vsess++;
        for (int k = 0; k < b.per && i * b.per + k < b.vanish; k++)
            vs[i * b.per + k] = hs_new(b.url, van_auth[i], sid, 0);
    }
    holder_add(vs, b.vanish);
    double t_vopen = holder_wait_open(b.vanish, opt.open_timeout);
    int vopened = atomic_load(&H.opened), vfailed = atomic_load(&H.failed);
    char vwhy[256];
    failures(vwhy, sizeof vwhy);
    sleep_s(1); /* let every stream settle into its relay */
    worker nc = {0};
    nc.url = b.url;
    nc.auths = new_auth;
    nc.nauths = 64;
    nc.interval = 0.05;
    nc.until = now_s() + NOTICE_WAIT_S + 5;
    pthread_t tnc;
    tail_init(&pt, b.proxy_log);
    tail_init(&bt, b.backend_log);
    double t_van = now_s();
    vopened = holder_close_all(NULL);
    pthread_create(&tnc, NULL, newcomer_main, &nc);
    notice van;
    watch_notices(&pt, &bt, vopened, vopened, t_van, &van);
    sleep_s(t_van + 3 - now_s()); /* the newcomer runs 3 s at least */
    atomic_store(&nc.quit, 1);
    pthread_join(tnc, NULL);

    /* the table */
    char title[3000];
    snprintf(title, sizeof title,
             "Stream benchmark, %s: %d callers x %d streams (%s: %d GET, %d tools/call "
             "countdown), %s, %d loaders x %d tools/call/s%s%s",
             mode_names[m], b.callers, b.per, opt.kind,
             nstreams - ncalls, ncalls,
             opt.events_ms ? (snprintf(s1, sizeof s1, "GET events every %d ms", opt.events_ms), s1)
                          : "silent GET streams (no events)",
             opt.loaders, opt.rate, opt.proxy_conf[0] ? "; proxy config: " : "",
             opt.proxy_conf);
    for (char *c = title; *c; c++)
        if (*c == '\n')
            *c = ';';
    snprintf(v, sizeof v, "%d of %d in %.1f s (%d refused or failed: %s; sessions %d/%d)",
             opened, nstreams, t_open, failed, why_failed, nsess,
             strcmp(opt.kind, "call") ? b.callers : 0);
    snprintf(g, sizeof g, "%d", nstreams);
    row(&r, "streams opened", v, g, opened == nstreams);
    snprintf(v, sizeof v,
             "%d still open after the loaded phase (%d ended by the server%s%s, %d failed)", still,
             ended, ended ? ": " : "", ended ? ended_why : "", failed2);
    row(&r, "streams held", v, g, still == nstreams);
    snprintf(v, sizeof v, "%s", ms3(&base.lat, s1, sizeof s1));
    row(&r, "tools/call of other callers, no streams (p50/p99/max)", v, "-", -1);
    snprintf(v, sizeof v, "%ld ok, %ld errors", base.ok, base.errors);
    row(&r, "  requests, no streams", v, "no error", base.errors == 0);
    double p99 = pct(&held.lat, 99);
    snprintf(v, sizeof v, "%s", ms3(&held.lat, s1, sizeof s1));
    row(&r, "tools/call of other callers, streams held (p50/p99/max)", v, "p99 < 50 ms",
        p99 >= 0 && p99 < 0.050);
    snprintf(v, sizeof v, "%ld ok, %ld errors (timeout %d s)", held.ok, held.errors,
             REQ_TIMEOUT_S);
    row(&r, "  requests, streams held", v, "no error", held.errors == 0 && held.ok > 0);
    double per_kib = opened > 0 ? (double)(rss2 - rss0) / opened : -1;
    snprintf(v, sizeof v, "%.1f KiB (RSS %ld -> %ld KiB; processes %d -> %d, threads %d -> %d)",
             per_kib, rss0, rss2, np0, np2, nt0, nt2);
    row(&r, "memory per held stream", v, "< 64 KiB", opened > 0 && per_kib < 64);
    snprintf(v, sizeof v, "%ld of %ld answers 429; %s", cap.n429, cap.n429 + cap.other,
             cap.lat429.n ? (snprintf(s1, sizeof s1, "p50 %.1f ms, max %.1f ms",
                                      pct(&cap.lat429, 50) * 1e3, pct(&cap.lat429, 100) * 1e3),
                             s1)
                          : "no 429");
    snprintf(g, sizeof g, "429 at once (cap %d)", b.per);
    row(&r, "caller over its cap: tools/call", v, g,
        cap.other == 0 && cap.n429 > 0 && pct(&cap.lat429, 100) < 0.050);
    row(&r, "release of the held streams: noticed by the proxy (log)",
        noticed(&rel.proxy, still, v, sizeof v), "all within 30 s",
        still > 0 && all_within(&rel.proxy, still, 30));
    snprintf(v, sizeof v, "%d of %d in %.1f s (%d refused or failed: %s; sessions %d/%d)",
             vopened, b.vanish, t_vopen < 0 ? opt.open_timeout : t_vopen, vfailed, vwhy, vsess,
             nvc);
    snprintf(g, sizeof g, "%d", b.vanish);
    row(&r, "vanishing GET streams opened", v, g, vopened == b.vanish);
    row(&r, "vanished clients noticed by the proxy (log)", noticed(&van.proxy, vopened, v, sizeof v),
        "every one within 30 s", vopened > 0 && all_within(&van.proxy, vopened, 30));
    row(&r, "  backend connections released", noticed(&van.backend, vopened, v, sizeof v), "-",
        -1);
    snprintf(v, sizeof v, "initialize %s; tools/list %s; %ld rounds, %ld failed",
             nc.lat_init.n ? (snprintf(s1, sizeof s1, "p50 %.1f ms, max %.1f ms",
                                       pct(&nc.lat_init, 50) * 1e3, pct(&nc.lat_init, 100) * 1e3),
                              s1)
                           : "-",
             nc.lat_list.n ? (snprintf(g, sizeof g, "p50 %.1f ms, max %.1f ms",
                                       pct(&nc.lat_list, 50) * 1e3, pct(&nc.lat_list, 100) * 1e3),
                              g)
                           : "-",
             nc.ok + nc.errors, nc.errors);
    row(&r, "new client while they vanish", v, "served at once, no error",
        nc.errors == 0 && nc.ok > 0 && pct(&nc.lat_init, 100) < 0.050 &&
            pct(&nc.lat_list, 100) < 0.050);
    print_report(&b, &r, title);

    holder_stop();
    stop_servers(&b);
    for (int i = 0; i < b.callers; i++)
        free(hold_auth[i]);
    for (int i = 0; i < opt.loaders; i++)
        free(load_auth[i]);
    for (int i = 0; i < nvc; i++)
        free(van_auth[i]);
    for (int i = 0; i < 64; i++)
        free(new_auth[i]);
    free(hold_auth);
    free(load_auth);
    free(van_auth);
    free(hs);
    free(vs);
    free(base.lat.v);
    free(held.lat.v);
    free(cap.lat429.v);
    free(nc.lat_init.v);
    free(nc.lat_list.v);
    free(rel.proxy.v);
    free(rel.backend.v);
    free(van.proxy.v);
    free(van.backend.v);
    return r.missed;
}

static void usage(void)
{
    fputs("usage: bench_streams [--server lighttpd|apache-proxy-fcgi|apache-fcgid|all]\n"
          "  [--callers N] [--per N] [--vanish N] [--seconds S] [--loaders N] [--rate R]\n"
          "  [--events-ms MS] [--kind get|call|mix] [--open-timeout S]\n"
          "  [--proxy-conf \"key = value\"]... [--results FILE] [--label TEXT] [--strict]\n",
          stderr);
}

static int num(const char *v, int lo, int hi)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (end == v || *end || n < lo || n > hi) {
        fprintf(stderr, "bench: %s is not a number in [%d, %d]\n", v, lo, hi);
        exit(2);
    }
    return (int)n;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--strict")) {
            opt.strict = 1;
            continue;
        }
        if (!v || strncmp(a, "--", 2) != 0) {
            usage();
            return 2;
        }
        i++;
        if (!strcmp(a, "--server"))
            opt.servers = v;
        else if (!strcmp(a, "--callers"))
            opt.callers = num(v, 1, 1000);
        else if (!strcmp(a, "--per"))
            opt.per = num(v, 1, 256);
        else if (!strcmp(a, "--vanish"))
            opt.vanish = num(v, 0, 5000);
        else if (!strcmp(a, "--seconds"))
            opt.seconds = num(v, 1, 3600);
        else if (!strcmp(a, "--loaders"))
            opt.loaders = num(v, 1, 64);
        else if (!strcmp(a, "--rate"))
            opt.rate = num(v, 1, 10000);
        else if (!strcmp(a, "--events-ms"))
            opt.events_ms = num(v, 0, 3600000);
        else if (!strcmp(a, "--open-timeout"))
            opt.open_timeout = num(v, 1, 3600);
        else if (!strcmp(a, "--kind") && (!strcmp(v, "get") || !strcmp(v, "call") ||
                                         !strcmp(v, "mix")))
            opt.kind = v;
        else if (!strcmp(a, "--results"))
            opt.results = v;
        else if (!strcmp(a, "--label"))
            opt.label = v;
        else if (!strcmp(a, "--proxy-conf") &&
                 strlen(opt.proxy_conf) + strlen(v) + 2 < sizeof opt.proxy_conf) {
            strcat(opt.proxy_conf, v);
            strcat(opt.proxy_conf, "\n");
        } else {
            usage();
            return 2;
        }
    }
    if ((long)opt.callers * opt.per > 5000) {
        fprintf(stderr, "bench: at most 5000 held streams\n");
        return 2;
    }
    raise_nofile();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int all = !strcmp(opt.servers, "all"), ran = 0, missed = 0, failed = 0;
    for (int m = 0; m < 3; m++) {
        if (!all && strcmp(opt.servers, mode_names[m]))
            continue;
        ran++;
        int rc = run_mode((mode)m);
        if (rc < 0)
            failed++;
        else
            missed += rc;
    }
    curl_global_cleanup();
    if (!ran) {
        usage();
        return 2;
    }
    if (failed)
        return 1;
    return opt.strict && missed ? 1 : 0;
}
