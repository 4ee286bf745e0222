/* Relay benchmark: the same MCP request (tools/call echo, JSON answer)
 * sent to the example MCP server three ways, in one run, on one lighttpd:
 *   direct      straight to the backend (the floor)
 *   mod_proxy   lighttpd's own reverse proxy, no checks (a peer)
 *   mcpauth     lighttpd + mcpauth-proxy: token validation (cached after
 *               the first request), JSON-RPC checks, policy, relay
 * Reports requests/s with C client threads on keep-alive connections, the
 * ratios, and the peak memory of the mcpauth-proxy processes.
 *
 * With a Redis address (third argument, or MCPAUTH_BENCH_REDIS; bench/
 * engines.sh starts a private Redis and passes it), rate limits are on in
 * every mcpauth case (limits far above the traffic, so each request counts
 * but none is refused), and a fourth case runs the same on a second
 * lighttpd whose proxy keeps that state in Redis (shared_state): the cost
 * of sharing the state between hosts, shm vs Redis, in one run.
 *
 *   bench/bench_proxy [seconds-per-case] [threads] [redis://HOST:PORT/DB]
 *   (defaults 3, 4, none) */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "../tests/integration/harness.h"
#include "../tests/support/tokens.h"

static double secs = 3;
static int nthreads = 4;

typedef struct {
    const char *url;
    const char *auth;
    long n, errors;
} worker;

static size_t sink(char *d, size_t s, size_t n, void *p)
{
    (void)d, (void)p;
    return s * n;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *run(void *p)
{
    worker *w = p;
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "Accept: application/json, text/event-stream");
    h = curl_slist_append(h, "MCP-Protocol-Version: 2026-07-28");
    h = curl_slist_append(h, "Mcp-Method: tools/call");
    h = curl_slist_append(h, "Mcp-Name: echo");
    if (w->auth)
        h = curl_slist_append(h, w->auth);
    curl_easy_setopt(c, CURLOPT_URL, w->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS,
                     "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":"
                     "{\"name\":\"echo\",\"arguments\":{\"text\":\"benchmark\"}}}");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    double end = now_s() + secs;
    while (now_s() < end) {
        long code = 0;
        if (curl_easy_perform(c) != CURLE_OK ||
            (curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code), code != 200))
            w->errors++;
        else
            w->n++;
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return NULL;
}

static double measure(const char *url, const char *auth, long *errors)
{
    pthread_t t[64];
    worker w[64];
    for (int i = 0; i < nthreads; i++) {
        w[i] = (worker){url, auth, 0, 0};
        pthread_create(&t[i], NULL, run, &w[i]);
    }
    long n = 0;
    *errors = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(t[i], NULL);
        n += w[i].n;
        *errors += w[i].errors;
    }
    return (double)n / secs;
}

/* Peak resident memory (VmHWM, KiB) summed over the processes named name
 * that are children of parent (the lighttpd this benchmark started). */
static long peak_kib(const char *name, pid_t parent)
{
    long total = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char path[300], line[256];
        snprintf(path, sizeof path, "/proc/%s/status", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        int match = 0, child = 0;
        long hwm = 0;
        while (fgets(line, sizeof line, f)) {
            if (!strncmp(line, "Name:", 5))
                match = strstr(line, name) != NULL;
            else if (!strncmp(line, "PPid:", 5))
                child = strtol(line + 5, NULL, 10) == (long)parent;
            else if (!strncmp(line, "VmHWM:", 6))
                hwm = strtol(line + 6, NULL, 10);
        }
        if (match && child)
            total += hwm;
        fclose(f);
    }
    if (d)
        closedir(d);
    return total;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        secs = atof(argv[1]);
    if (argc > 2)
        nthreads = atoi(argv[2]) > 0 && atoi(argv[2]) <= 64 ? atoi(argv[2]) : 4;
    const char *redis = argc > 3 ? argv[3] : getenv("MCPAUTH_BENCH_REDIS");
    if (redis && !*redis)
        redis = NULL;
    curl_global_init(CURL_GLOBAL_DEFAULT);

    char bdir[] = "/tmp/mcpauth-bench-XXXXXX";
    if (!mkdtemp(bdir))
        return 1;
    int bport = 0;
    pid_t backend = th_start_example_server(bdir, &bport);
    tk_key *k = tk_key_new("ES256", "k1", 0);
    tk_key *keys[] = {k};
    char *jwks = tk_jwks(keys, 1);
    char conf[2048], rconf[2300], extra[1024];
    const char *limits = redis ? "rate_limit = 100000\nrate_burst = 100000\n"
                                 "rate_limit_address = 100000\n"
                               : "rate_limit = 0\nrate_limit_address = 0\n";
    snprintf(conf, sizeof conf,
             "runtime_dir = @DIR@\nlog_level = error\n"
             "[resource files]\nuri = http://127.0.0.1:@PORT@/mcp/files\n"
             "authorization_servers = https://as.example.com\nbackend = http://127.0.0.1:%d/mcp\n"
             "%s"
             "[issuer as]\nissuer = https://as.example.com\njwks_file = @DIR@/jwks.json\n", bport,
             limits);
    snprintf(rconf, sizeof rconf, "shared_state = %s\n%s", redis ? redis : "shm", conf);
    snprintf(extra, sizeof extra,
             "server.modules += ( \"mod_proxy\" )\n"
             "var.mcpauth_proxy_prefix = \"/mcp\"\n"
             "include \"@SRCDIR@/lighttpd/mcpauth-proxy.conf\"\n"
             "$HTTP[\"url\"] =~ \"^/plain\" {\n"
             "  proxy.server = ( \"\" => (( \"host\" => \"127.0.0.1\", \"port\" => %d )) )\n"
             "  proxy.header = ( \"map-urlpath\" => ( \"/plain\" => \"/mcp\" ) )\n"
             "}\n", bport);
    const char *files[] = {"jwks.json", jwks, NULL};
    th_options o = {conf, extra, files, NULL};
    th_server srv, rsrv;
    if (bport <= 0 || th_start_ex(&srv, TH_LIGHTTPD, &o) != 0) {
        fprintf(stderr, "bench: could not start the servers\n");
        th_kill(backend);
        return 1;
    }
    th_options ro = {rconf, extra, files, NULL};
    if (redis && th_start_ex(&rsrv, TH_LIGHTTPD, &ro) != 0) {
        fprintf(stderr, "bench: could not start the server with shared_state = %s\n", redis);
        th_stop(&srv);
        th_kill(backend);
        return 1;
    }
    char aud[256], auth[4096], direct[256], plain[256], mcp[256], rmcp[256], raud[256],
        rauth[4096];
    snprintf(aud, sizeof aud, "%s/mcp/files", srv.base);
    char *claims = tk_claims("https://as.example.com", aud, "", 3600);
    char *tok = tk_mint(k, claims, NULL);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", tok);
    snprintf(direct, sizeof direct, "http://127.0.0.1:%d/mcp", bport);
    snprintf(plain, sizeof plain, "%s/plain", srv.base);
    snprintf(mcp, sizeof mcp, "%s/mcp/files", srv.base);
    char *rclaims = NULL, *rtok = NULL;
    if (redis) { /* the second server is another resource: its own audience */
        snprintf(raud, sizeof raud, "%s/mcp/files", rsrv.base);
        rclaims = tk_claims("https://as.example.com", raud, "", 3600);
        rtok = tk_mint(k, rclaims, NULL);
        snprintf(rauth, sizeof rauth, "Authorization: Bearer %s", rtok);
        snprintf(rmcp, sizeof rmcp, "%s/mcp/files", rsrv.base);
    }

    long e1, e2, e3, e4 = 0;
    measure(mcp, auth, &e3); /* warm up: processes, caches */
    if (redis)
        measure(rmcp, rauth, &e4);
    double r_direct = measure(direct, NULL, &e1);
    double r_plain = measure(plain, NULL, &e2);
    double r_mcp = measure(mcp, auth, &e3);
    double r_redis = redis ? measure(rmcp, rauth, &e4) : 0;
    long rss = peak_kib("mcpauth-proxy", srv.pid);
    printf("mcpauth relay benchmark: tools/call echo, %d client threads, %.1f s per case\n",
           nthreads, secs);
    printf("%-46s %10s %8s %7s\n", "path", "req/s", "ratio", "errors");
    printf("%-46s %10.0f %8s %7ld\n", "direct to the example MCP server", r_direct, "1.00", e1);
    printf("%-46s %10.0f %7.2fx %7ld\n", "lighttpd mod_proxy, no checks (peer)", r_plain,
           r_plain / r_direct, e2);
    printf("%-46s %10.0f %7.2fx %7ld\n", "lighttpd + mcpauth-proxy (token, JSON-RPC)", r_mcp,
           r_mcp / r_direct, e3);
    if (redis)
        printf("%-46s %10.0f %7.2fx %7ld\n", "lighttpd + mcpauth-proxy, state in Redis", r_redis,
               r_redis / r_direct, e4);
    printf("mcpauth-proxy vs mod_proxy: %.2fx; peak RSS of its 2 processes (16 threads each): "
           "%ld KiB\n", r_mcp / r_plain, rss);
    if (redis) {
        printf("rate limits on; shared state in Redis vs shared memory: %.2fx; peak RSS of the "
               "Redis case's processes: %ld KiB\n", r_redis / r_mcp,
               peak_kib("mcpauth-proxy", rsrv.pid));
        th_stop(&rsrv);
    }
    free(rclaims);
    free(rtok);

    th_stop(&srv);
    th_kill(backend);
    free(claims);
    free(tok);
    free(jwks);
    tk_key_free(k);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", bdir);
    if (system(cmd) != 0)
        return 1;
    curl_global_cleanup();
    return e3 || e4 ? 1 : 0;
}
