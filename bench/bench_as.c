/* Token endpoint benchmark (issue 13): how many authorization-code
 * exchanges and refreshes per second the built-in authorization server
 * (mcpauth-as) answers with CLIENTS concurrent clients, and at what server
 * cost, with SQLite's durability settings stated beside the figures.
 *
 * Set-up, as the integration tests run it: real lighttpd on a loopback port
 * with the shipped lighttpd/mcpauth-as.conf (mcpauth-as as a FastCGI
 * program, max-procs 2, the site's Basic login in front of /authorize), the
 * AS's configuration left at its defaults (log_level info, code_ttl 60 s,
 * refresh_grace 10 s), its SQLite state made by `mcpauth init` in a scratch
 * directory.  One public client (token_endpoint_auth_method none) is
 * registered per concurrent client (at most 16, the AS's registration limit
 * per address is 20 an hour) and its consent given once through the CSRF
 * form, "remember" checked.
 *
 *  A. exchange  a fixed number of codes (--codes): untimed, the clients run
 *               GET /authorize (Basic login, remembered consent: 302 with a
 *               code) for a batch of codes; timed, CLIENTS threads exchange
 *               that batch at /token (grant_type=authorization_code, PKCE
 *               verifier, redirect_uri, resource).  Codes live 60 s, so the
 *               codes come in batches sized to be exchanged well within
 *               that; only the exchanges are timed and their times added.
 *  B. refresh   for --seconds, CLIENTS threads each run a chain of
 *               refreshes (grant_type=refresh_token, resource): every
 *               answer's rotated refresh token is the next request's.  A
 *               chain that breaks (an error) continues from an unused
 *               refresh token of phase A.
 *
 * Every answer must be 200 with an access_token and a refresh_token;
 * anything else is an error, and the first error's status and body are
 * printed.  Each thread has its own libcurl handle on a keep-alive
 * connection.  Reported per phase: requests/s, p50/p99/max latency,
 * errors, server CPU per request (utime + stime of lighttpd and the
 * mcpauth-as processes it runs, reaped children included, from /proc,
 * before and after the timed part only), the size of SQLite's WAL file
 * after it (it only grows when checkpoints cannot keep up), and the
 * mcpauth-as processes' RSS before the phases, after, and at peak
 * (VmHWM).  A line per batch of phase A goes to stderr.  By default the server (lighttpd and every process it
 * spawns) is pinned to CPU 0 and the clients to CPU 1, as bench/peers.sh
 * does; --no-pin leaves both free.
 *
 * SQLite's settings are read back: journal_mode from the database the run
 * wrote, synchronous and busy_timeout from lib/db_sqlite.c (the PRAGMAs every
 * connection of the store sets; mcpauth.conf has no key for them),
 * the checkpoints as lib/db_sqlite.c makes them (passive past 1,000 WAL pages,
 * RESTART past 4,000, the file cut back to 16 MiB: journal_size_limit),
 * and the file system holding the state directory (--state-dir puts it
 * elsewhere, e.g. on another disk).
 *
 *   bench/bench_as [--seconds S] [--clients N] [--codes N] [--state-dir DIR]
 *       [--store CONNINFO] [--no-pin] [--snippet FILE] [--results FILE]
 *       [--tsv FILE|-] [--label TEXT] [--strict]
 *
 * --store puts the AS's state in PostgreSQL (the `store` key of
 * mcpauth.conf; `mcpauth init` creates the tables when absent): bench/
 * engines.sh runs it beside the SQLite default on a private server.  The
 * SQLite facts below are then not reported (the WAL column reads 0).
 *
 * Defaults: 10 s of refreshes, 16 clients, 10000 codes; about 25 s in all.
 * --snippet FILE includes FILE instead of the shipped lighttpd/mcpauth-as.conf
 * (to try another max-procs, say).
 * Needs the environment `make check` sets (MCPAUTH_SRCDIR, MCPAUTH_BUILDDIR,
 * LIGHTTPD, LIGHTTPD_MODULES_DIR); `make bench-as` runs it so and appends
 * the figures to bench/RESULTS.md.  --results appends a Markdown block to
 * FILE; --tsv appends one tab-separated line per phase (a header first when
 * FILE is new; "-": stdout).  Exit status 1 when the set-up fails, or with
 * --strict when any request failed.  Every process started is stopped by
 * PID, also after SIGINT or SIGTERM. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>
#include <sqlite3.h>

#include "../tests/integration/harness.h"
#include "../tests/support/asflow.h"

#define MAX_CLIENTS 256
#define MAX_REGISTERED 16   /* the AS allows 20 registrations an hour per address */
#define CODE_TTL 60         /* the AS's default code_ttl (lib/config.c) */
#define REQ_TIMEOUT_S 10    /* one request; the store's busy_timeout is 5 s */

static struct {
    int seconds, clients, codes, pin, strict;
    const char *results, *tsv, *label, *state_parent, *snippet, *store;
} opt = {10, 16, 10000, 1, 0, NULL, NULL, NULL, NULL, NULL, NULL};

static atomic_int g_stop;             /* SIGINT/SIGTERM: finish early, clean up */
static volatile sig_atomic_t g_server_pgid; /* for a second signal: kill and go */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        abort();
    return p;
}

static void on_signal(int sig)
{
    (void)sig;
    if (atomic_exchange(&g_stop, 1) && g_server_pgid > 0) {
        kill(-(pid_t)g_server_pgid, SIGKILL);
        _exit(130);
    }
}

/* ------------------------------------------------------------ samples */

typedef struct {
    double *v;
    size_t n, cap;
} samples;

static void add(samples *s, double x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 1024;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (!s->v)
            abort();
    }
    s->v[s->n++] = x;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile p (0..100) of sorted samples; -1 without any. */
static double pct(const samples *s, double p)
{
    if (!s->n)
        return -1;
    size_t k = (size_t)(p / 100.0 * (double)s->n + 0.999999);
    if (k < 1)
        k = 1;
    if (k > s->n)
        k = s->n;
    return s->v[k - 1];
}

/* --------------------------------------------------------------- HTTP */

/* One client's keep-alive connection. */
typedef struct {
    CURL *c;
    struct curl_slist *form_hdr, *login_hdr;
    char *body;
    size_t len, cap;
    char location[4096];
    long status;
} conn;

static size_t on_body(char *d, size_t s, size_t n, void *p)
{
    conn *k = p;
    return asflow_append(&k->body, &k->len, &k->cap, d, s * n);
}

static size_t on_header(char *d, size_t s, size_t n, void *p)
{
    conn *k = p;
    asflow_header(d, s * n, "Location:", k->location, sizeof k->location);
    return s * n;
}

static void conn_init(conn *k)
{
    memset(k, 0, sizeof *k);
    k->c = curl_easy_init();
    if (!k->c)
        abort();
    k->form_hdr = curl_slist_append(NULL, ASFLOW_FORM_TYPE);
    k->login_hdr = curl_slist_append(NULL, ASFLOW_BASIC_LOGIN);
    asflow_curl_init(k->c, on_body, on_header, k, REQ_TIMEOUT_S);
}

static void conn_free(conn *k)
{
    if (k->c)
        curl_easy_cleanup(k->c);
    curl_slist_free_all(k->form_hdr);
    curl_slist_free_all(k->login_hdr);
    free(k->body);
    memset(k, 0, sizeof *k);
}

/* One request: GET when body is NULL, else POST.  The status goes to
 * k->status (0: no answer), the body to k->body.  Returns the seconds. */
static double conn_do(conn *k, const char *url, struct curl_slist *hdr, const char *body)
{
    curl_easy_setopt(k->c, CURLOPT_URL, url);
    curl_easy_setopt(k->c, CURLOPT_HTTPHEADER, hdr);
    if (body)
        curl_easy_setopt(k->c, CURLOPT_POSTFIELDS, body);
    else
        curl_easy_setopt(k->c, CURLOPT_HTTPGET, 1L);
    k->len = 0;
    k->status = 0;
    k->location[0] = '\0';
    if (k->body)
        k->body[0] = '\0';
    double t0 = now_s();
    if (curl_easy_perform(k->c) == CURLE_OK)
        curl_easy_getinfo(k->c, CURLINFO_RESPONSE_CODE, &k->status);
    return now_s() - t0;
}

/* asflow's set-up requests (registration, consent) on a conn: untimed,
 * so the header list is made per request. */
static void conn_http(void *ctx, const char *url, const char *const *hdrs, const char *body,
                      asflow_answer *out)
{
    conn *k = ctx;
    struct curl_slist *sl = NULL;
    for (const char *const *h = hdrs; h && *h; h++)
        sl = curl_slist_append(sl, *h);
    conn_do(k, url, sl, body);
    curl_slist_free_all(sl);
    out->status = k->status;
    out->body = k->body ? k->body : "";
    out->location = k->location;
}

/* ------------------------------------------------------------- server */

static struct {
    th_server srv;
    char state_dir[PATH_MAX], own_state[PATH_MAX]; /* own_state: made here, removed here */
    asflow_as as;
    asflow_client clients[MAX_REGISTERED];
    int nreg;
    conn *conns; /* one per client thread, kept across the phases */
} B;

static int prepare(th_server *s)
{
    char cmd[3 * PATH_MAX];
    if (!B.own_state[0]) {
        snprintf(B.state_dir, sizeof B.state_dir, "%s/state", s->dir);
        if (mkdir(B.state_dir, 0700) != 0 && errno != EEXIST)
            return -1;
    }
    /* `mcpauth init`, as an admin would */
    snprintf(cmd, sizeof cmd, "'%s/tools/mcpauth' --config '%s/mcpauth.conf' init >'%s/init.log' 2>&1",
             th_builddir(), s->dir, s->dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "bench: mcpauth init failed: see %s/init.log\n", s->dir);
        return -1;
    }
    /* the site's login: alice / wonderland */
    snprintf(cmd, sizeof cmd,
             "printf 'alice:%%s\\n' \"$(openssl passwd -apr1 -salt mcpauth1 wonderland)\" "
             "> '%s/htpasswd' && chmod 644 '%s/htpasswd'",
             s->dir, s->dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void pin_to(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        fprintf(stderr, "bench: cannot pin to CPU %d: %s\n", cpu, strerror(errno));
}

static int start_server(void)
{
    if (opt.state_parent) {
        snprintf(B.own_state, sizeof B.own_state, "%s/mcpauth-as-bench-XXXXXX", opt.state_parent);
        if (!mkdtemp(B.own_state)) {
            fprintf(stderr, "bench: %s: %s\n", opt.state_parent, strerror(errno));
            B.own_state[0] = '\0';
            return -1;
        }
        snprintf(B.state_dir, sizeof B.state_dir, "%s", B.own_state);
    }
    char conf[2 * PATH_MAX + 1024];
    /* the AS's defaults: no key below changes how /token works */
    snprintf(conf, sizeof conf,
             "runtime_dir = @DIR@\n"
             "[resource files]\n"
             "uri = http://127.0.0.1:@PORT@/mcp/files\n"
             "authorization_servers = http://127.0.0.1:@PORT@\n"
             "scopes_supported = files:read\n"
             "[authorization_server]\n"
             "issuer = http://127.0.0.1:@PORT@\n"
             "state_dir = %s\n"
             "%s%s%s",
             B.own_state[0] ? B.own_state : "@DIR@/state", opt.store ? "store = " : "",
             opt.store ? opt.store : "", opt.store ? "\n" : "");
    char extra[PATH_MAX + 256];
    snprintf(extra, sizeof extra,
             "var.mcpauth_as_prefix = \"/oauth2\"\n"
             "var.mcpauth_htpasswd = \"@DIR@/htpasswd\"\n"
             "include \"%s\"\n",
             opt.snippet ? opt.snippet : "@SRCDIR@/lighttpd/mcpauth-as.conf");
    th_options o = {conf, extra, NULL, prepare};
    /* lighttpd and everything it spawns inherit CPU 0; the clients get 1 */
    if (opt.pin)
        pin_to(0);
    int rc = th_start_ex(&B.srv, TH_LIGHTTPD, &o);
    if (opt.pin)
        pin_to(1);
    if (rc != 0) {
        fprintf(stderr, "bench: lighttpd with mcpauth-as did not start\n");
        return -1;
    }
    g_server_pgid = B.srv.pid;
    char res[256];
    snprintf(res, sizeof res, "%s/mcp/files", B.srv.base);
    return asflow_as_init(&B.as, "bench", B.srv.base, res);
}

static void stop_server(void)
{
    if (B.srv.pid > 0 || B.srv.dir[0])
        th_stop(&B.srv);
    g_server_pgid = 0;
    if (B.own_state[0]) {
        char cmd[PATH_MAX + 32];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", B.own_state);
        if (system(cmd) != 0)
            fprintf(stderr, "bench: could not remove %s\n", B.own_state);
        B.own_state[0] = '\0';
    }
}

/* ---------------------------------------------------- CPU and memory */

typedef struct {
    long long lighttpd, as, other; /* clock ticks */
    int n_lighttpd, n_as, n_other;
} cpu_ticks;

/* utime+stime+cutime+cstime of every process in the server's group
 * (lighttpd -D and the FastCGI programs it spawns). */
static void cpu_read(cpu_ticks *t)
{
    memset(t, 0, sizeof *t);
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        char path[300], line[2048];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        int got = f && fgets(line, sizeof line, f);
        if (f)
            fclose(f);
        char *open = got ? strchr(line, '(') : NULL, *close = got ? strrchr(line, ')') : NULL;
        if (!open || !close || close < open)
            continue;
        char comm[64], state;
        snprintf(comm, sizeof comm, "%.*s", (int)(close - open - 1), open + 1);
        int ppid, pgrp;
        unsigned long long v[12];
        /* state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
         * cmajflt utime stime cutime cstime */
        if (sscanf(close + 2, "%c %d %d %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
                   &state, &ppid, &pgrp, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7],
                   &v[8], &v[9], &v[10], &v[11]) != 15 ||
            pgrp != B.srv.pid)
            continue;
        long long ticks = (long long)(v[8] + v[9] + v[10] + v[11]);
        if (!strcmp(comm, "lighttpd")) {
            t->lighttpd += ticks;
            t->n_lighttpd++;
        } else if (!strcmp(comm, "mcpauth-as")) {
            t->as += ticks;
            t->n_as++;
        } else {
            t->other += ticks;
            t->n_other++;
        }
    }
    if (d)
        closedir(d);
}

typedef struct {
    long hwm_max, hwm_sum, rss_max; /* KiB */
    int n;
} mem_use;

static void mem_read(mem_use *m)
{
    pid_t pids[64];
    int n = th_programs(B.srv.dir, "mcpauth-as", pids, 64);
    memset(m, 0, sizeof *m);
    m->n = n < 64 ? n : 64;
    for (int i = 0; i < m->n; i++) {
        char path[64], line[256];
        snprintf(path, sizeof path, "/proc/%d/status", (int)pids[i]);
        FILE *f = fopen(path, "r");
        long hwm = 0, rss = 0;
        while (f && fgets(line, sizeof line, f)) {
            if (!strncmp(line, "VmHWM:", 6))
                hwm = strtol(line + 6, NULL, 10);
            else if (!strncmp(line, "VmRSS:", 6))
                rss = strtol(line + 6, NULL, 10);
        }
        if (f)
            fclose(f);
        m->hwm_sum += hwm;
        if (hwm > m->hwm_max)
            m->hwm_max = hwm;
        if (rss > m->rss_max)
            m->rss_max = rss;
    }
}

/* ------------------------------------------------------------ set-up */

/* A code for client c (remembered consent): 0, or -1. */
static int get_code(conn *k, const asflow_client *c, char *code, size_t len)
{
    char url[2048];
    asflow_authorize_url(&B.as, c, url, sizeof url);
    conn_do(k, url, k->login_hdr, NULL);
    return k->status == 302 ? asflow_code(k->location, code, len) : -1;
}

/* ----------------------------------------------------------- phases */

typedef struct {
    char code[96];
    char refresh[96]; /* what its exchange returned ("" until then) */
    int client;
    atomic_int used;  /* its refresh token taken for a chain in phase B */
} item;

typedef struct {
    samples lat;
    long ok, errors;
} tally;

static struct {
    item *items;
    long nitems;
    atomic_long next;     /* phase A: next item to exchange */
    atomic_long spare;    /* phase B: next item whose refresh token may start a chain */
    long batch_lo, batch_hi;
    double until;         /* phase B's end */
    pthread_mutex_t mu;
    long first_status;
    char first_error[512];
    char setup_error[512];
} W = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void note_error(const conn *k, const char *what)
{
    pthread_mutex_lock(&W.mu);
    if (!W.first_error[0]) {
        W.first_status = k->status;
        snprintf(W.first_error, sizeof W.first_error, "%s: %s", what,
                 k->status ? (k->body ? k->body : "") : "no answer (timeout or connection error)");
        W.first_error[strcspn(W.first_error, "\r\n")] = '\0';
    }
    pthread_mutex_unlock(&W.mu);
}

typedef struct {
    int idx;
    tally t;
} worker;

/* Set-up of one batch: this thread's share of [batch_lo, batch_hi). */
static void *setup_main(void *p)
{
    worker *w = p;
    conn *k = &B.conns[w->idx];
    long span = W.batch_hi - W.batch_lo, per = (span + opt.clients - 1) / opt.clients;
    long lo = W.batch_lo + w->idx * per, hi = lo + per < W.batch_hi ? lo + per : W.batch_hi;
    int ci = w->idx % B.nreg;
    for (long i = lo; i < hi && !atomic_load(&g_stop); i++) {
        item *it = &W.items[i];
        it->client = ci;
        if (get_code(k, &B.clients[ci], it->code, sizeof it->code) < 0) {
            pthread_mutex_lock(&W.mu);
            if (!W.setup_error[0])
                snprintf(W.setup_error, sizeof W.setup_error, "authorize: %ld %.300s Location: %.150s",
                         k->status, k->body ? k->body : "", k->location);
            pthread_mutex_unlock(&W.mu);
            w->t.errors++;
            return NULL;
        }
        w->t.ok++;
    }
    return NULL;
}

/* A 200 with both tokens: the refresh token into out. */
static int token_ok(const conn *k, char *out, size_t len)
{
    char at[4096];
    return k->status == 200 && asflow_json_str(k->body, "access_token", at, sizeof at) == 0 &&
                   asflow_json_str(k->body, "refresh_token", out, len) == 0
               ? 0
               : -1;
}

static void *exchange_main(void *p)
{
    worker *w = p;
    conn *k = &B.conns[w->idx];
    char form[1024];
    for (;;) {
        long i = atomic_fetch_add(&W.next, 1);
        if (i >= W.batch_hi || atomic_load(&g_stop))
            break;
        item *it = &W.items[i];
        asflow_exchange_form(&B.as, &B.clients[it->client], it->code, form, sizeof form);
        double t = conn_do(k, B.as.token, k->form_hdr, form);
        if (token_ok(k, it->refresh, sizeof it->refresh) == 0) {
            w->t.ok++;
            add(&w->t.lat, t);
        } else {
            it->refresh[0] = '\0';
            w->t.errors++;
            note_error(k, "code exchange");
        }
    }
    return NULL;
}

/* An unused refresh token from phase A for a new chain; -1 when none. */
static long take_spare(void)
{
    for (;;) {
        long i = atomic_fetch_add(&W.spare, 1);
        if (i >= W.nitems)
            return -1;
        if (W.items[i].refresh[0] && !atomic_exchange(&W.items[i].used, 1))
            return i;
    }
}

static void *refresh_main(void *p)
{
    worker *w = p;
    conn *k = &B.conns[w->idx];
    char form[1024], rt[96] = "", next[96];
    int client = 0;
    while (now_s() < W.until && !atomic_load(&g_stop)) {
        if (!rt[0]) {
            long s = take_spare();
            if (s < 0)
                break;
            snprintf(rt, sizeof rt, "%s", W.items[s].refresh);
            client = W.items[s].client;
        }
        asflow_refresh_form(&B.as, &B.clients[client], rt, form, sizeof form);
        double t = conn_do(k, B.as.token, k->form_hdr, form);
        if (token_ok(k, next, sizeof next) == 0) {
            w->t.ok++;
            add(&w->t.lat, t);
            snprintf(rt, sizeof rt, "%s", next);
        } else {
            w->t.errors++;
            note_error(k, "refresh");
            rt[0] = '\0'; /* the chain is broken: start another */
        }
    }
    return NULL;
}

/* Runs fn on every client thread; their tallies are summed into t. */
static void run_threads(void *(*fn)(void *), tally *t)
{
    pthread_t *th = xcalloc((size_t)opt.clients, sizeof *th);
    worker *w = xcalloc((size_t)opt.clients, sizeof *w);
    for (int i = 0; i < opt.clients; i++) {
        w[i].idx = i;
        if (pthread_create(&th[i], NULL, fn, &w[i]) != 0) {
            fprintf(stderr, "bench: pthread_create failed\n");
            exit(1); /* atexit: the harness stops the server */
        }
    }
    for (int i = 0; i < opt.clients; i++) {
        pthread_join(th[i], NULL);
        t->ok += w[i].t.ok;
        t->errors += w[i].t.errors;
        for (size_t j = 0; j < w[i].t.lat.n; j++)
            add(&t->lat, w[i].t.lat.v[j]);
        free(w[i].t.lat.v);
    }
    free(th);
    free(w);
}

typedef struct {
    const char *name;
    tally t;
    double secs;
    cpu_ticks cpu; /* over the timed part only */
    long long wal_kib; /* the WAL file's size after the phase */
} phase;

static long long kib_of(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size / 1024 : -1;
}

static long long wal_kib(void)
{
    char wal[PATH_MAX + 32];
    snprintf(wal, sizeof wal, "%s/mcpauth.db-wal", B.state_dir);
    return kib_of(wal);
}

static void cpu_add_delta(cpu_ticks *acc, const cpu_ticks *a, const cpu_ticks *b)
{
    acc->lighttpd += b->lighttpd - a->lighttpd;
    acc->as += b->as - a->as;
    acc->other += b->other - a->other;
    acc->n_lighttpd = b->n_lighttpd;
    acc->n_as = b->n_as;
    acc->n_other = b->n_other;
}

/* Phase A: codes in batches, each obtained (untimed) then exchanged
 * (timed).  0, or -1 when the set-up failed. */
static int phase_exchange(phase *ph, double *setup_secs)
{
    long batch = opt.codes < 1000 ? opt.codes : 1000;
    *setup_secs = 0;
    for (long done = 0; done < opt.codes && !atomic_load(&g_stop);) {
        W.batch_lo = done;
        W.batch_hi = done + batch < opt.codes ? done + batch : opt.codes;
        tally st = {0};
        double t0 = now_s();
        run_threads(setup_main, &st);
        double t_setup = now_s() - t0;
        *setup_secs += t_setup;
        if (st.errors || W.setup_error[0]) {
            fprintf(stderr, "bench: could not obtain codes: %s\n", W.setup_error);
            return -1;
        }
        cpu_ticks c0, c1;
        atomic_store(&W.next, W.batch_lo);
        cpu_read(&c0);
        double t1 = now_s();
        run_threads(exchange_main, &ph->t);
        double t_ex = now_s() - t1;
        cpu_read(&c1);
        ph->secs += t_ex;
        cpu_add_delta(&ph->cpu, &c0, &c1);
        done = W.batch_hi;
        ph->wal_kib = wal_kib();
        fprintf(stderr,
                "bench: %ld codes obtained in %.1f s, exchanged in %.2f s (%.0f/s); WAL %lld KiB\n",
                W.batch_hi - W.batch_lo, t_setup, t_ex,
                t_ex > 0 ? (double)(W.batch_hi - W.batch_lo) / t_ex : 0, ph->wal_kib);
        /* the oldest code of a batch waits for the whole batch: keep a
         * batch's set-up and exchange well inside the code lifetime */
        if (t_setup + t_ex > CODE_TTL / 3.0 && batch > 2L * opt.clients)
            batch /= 2;
        else if (t_setup + t_ex < CODE_TTL / 12.0 && batch < 8000)
            batch *= 2;
    }
    W.nitems = W.batch_hi;
    return 0;
}

static void phase_refresh(phase *ph)
{
    cpu_ticks c0, c1;
    atomic_store(&W.spare, 0);
    cpu_read(&c0);
    double t0 = now_s();
    W.until = t0 + opt.seconds;
    run_threads(refresh_main, &ph->t);
    ph->secs = now_s() - t0;
    cpu_read(&c1);
    cpu_add_delta(&ph->cpu, &c0, &c1);
    ph->wal_kib = wal_kib();
}

/* ------------------------------------------------------ SQLite facts */

typedef struct {
    char journal[32], synchronous[32], busy[32], autocheckpoint[32], version[32];
    char fs[256];
    long long db_kib, wal_kib;
} sqlite_facts;

/* The value of the first "PRAGMA name=VALUE" in lib/db_sqlite.c. */
static void pragma_in_source(const char *name, char *out, size_t len)
{
    char path[PATH_MAX], key[64], line[512];
    snprintf(out, len, "?");
    snprintf(path, sizeof path, "%s/lib/db_sqlite.c", th_srcdir());
    snprintf(key, sizeof key, "PRAGMA %s=", name);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f)) {
        const char *p = strstr(line, key);
        if (p) {
            p += strlen(key);
            if (*p == '"') /* "PRAGMA busy_timeout=" STR(BUSY_TIMEOUT_MS): the macro */
                break;
            snprintf(out, len, "%.*s", (int)strcspn(p, "\"; \n"), p);
            break;
        }
    }
    if (f && !strcmp(out, "?") && !strcmp(name, "busy_timeout")) {
        rewind(f);
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "#define BUSY_TIMEOUT_MS ", 24)) {
                snprintf(out, len, "%.*s", (int)strcspn(line + 24, " \n"), line + 24);
                break;
            }
    }
    if (f)
        fclose(f);
}

/* The mount holding path: "ext4 /dev/vda on / (rw,relatime)". */
static void filesystem_of(const char *path, char *out, size_t len)
{
    char real[PATH_MAX], line[1024], best[1200] = "";
    size_t best_len = 0;
    snprintf(out, len, "?");
    if (!realpath(path, real))
        return;
    FILE *f = fopen("/proc/self/mounts", "r");
    while (f && fgets(line, sizeof line, f)) {
        char dev[256], mnt[512], type[64], opts[256];
        if (sscanf(line, "%255s %511s %63s %255s", dev, mnt, type, opts) != 4)
            continue;
        size_t ml = strlen(mnt);
        int under = !strcmp(mnt, "/") ||
                    (!strncmp(real, mnt, ml) && (real[ml] == '/' || real[ml] == '\0'));
        if (under && ml >= best_len) {
            best_len = ml;
            snprintf(best, sizeof best, "%s %s on %s (%s)", type, dev, mnt, opts);
        }
    }
    if (f)
        fclose(f);
    if (best[0])
        snprintf(out, len, "%s", best);
}

/* Read while the server still runs: the WAL and its size are there. */
static void sqlite_read(sqlite_facts *s)
{
    char db[PATH_MAX + 16], wal[PATH_MAX + 32];
    memset(s, 0, sizeof *s);
    snprintf(s->journal, sizeof s->journal, "?");
    snprintf(s->autocheckpoint, sizeof s->autocheckpoint, "?");
    snprintf(s->version, sizeof s->version, "%s", sqlite3_libversion());
    pragma_in_source("synchronous", s->synchronous, sizeof s->synchronous);
    pragma_in_source("busy_timeout", s->busy, sizeof s->busy);
    snprintf(db, sizeof db, "%s/mcpauth.db", B.state_dir);
    snprintf(wal, sizeof wal, "%s-wal", db);
    s->db_kib = kib_of(db);
    s->wal_kib = kib_of(wal);
    filesystem_of(B.state_dir, s->fs, sizeof s->fs);
    sqlite3 *h = NULL;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(h, 5000);
        static const char *const q[] = {"PRAGMA journal_mode", "PRAGMA wal_autocheckpoint"};
        char *dst[] = {s->journal, s->autocheckpoint};
        for (int i = 0; i < 2; i++) {
            sqlite3_stmt *st = NULL;
            if (sqlite3_prepare_v2(h, q[i], -1, &st, NULL) == SQLITE_OK &&
                sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
                snprintf(dst[i], 32, "%s", (const char *)sqlite3_column_text(st, 0));
            sqlite3_finalize(st);
        }
    }
    sqlite3_close(h);
}

/* ------------------------------------------------------------ report */

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

static double us_per(long long ticks, long n)
{
    return n > 0 ? (double)ticks * 1e6 / (double)sysconf(_SC_CLK_TCK) / (double)n : -1;
}

static double rate(const phase *p)
{
    return p->secs > 0 ? (double)p->t.ok / p->secs : 0;
}

/* One table row (Markdown). */
static void row(FILE *f, const phase *p)
{
    const samples *l = &p->t.lat;
    long n = p->t.ok + p->t.errors;
    fprintf(f, "| %s | %ld | %.2f | %.0f | %.2f / %.2f / %.2f | %ld | %.0f (%.0f + %.0f) | %.0f |\n",
            p->name, p->t.ok, p->secs, rate(p), pct(l, 50) * 1e3, pct(l, 99) * 1e3,
            pct(l, 100) * 1e3, p->t.errors,
            us_per(p->cpu.lighttpd + p->cpu.as + p->cpu.other, n), us_per(p->cpu.as, n),
            us_per(p->cpu.lighttpd, n), (double)p->wal_kib / 1024);
}

static void report(FILE *f, int markdown_heading, const phase *ph, int nph, const sqlite_facts *s,
                   const mem_use *m0, const mem_use *m, double setup_secs)
{
    char mach[256], when[64], commit[96], server[128], cmd[PATH_MAX + 512];
    machine(mach, sizeof mach);
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    snprintf(cmd, sizeof cmd,
             "cd '%s' && c=$(git rev-parse --short HEAD 2>/dev/null) && "
             "{ git diff --quiet HEAD -- lib fcgi include 2>/dev/null && echo $c || "
             "echo \"$c with uncommitted changes\"; }",
             th_srcdir());
    first_line(cmd, commit, sizeof commit);
    snprintf(cmd, sizeof cmd, "'%s' -v 2>&1",
             getenv("LIGHTTPD") && *getenv("LIGHTTPD") ? getenv("LIGHTTPD") : "/usr/sbin/lighttpd");
    first_line(cmd, server, sizeof server);
    if (markdown_heading)
        fprintf(f, "\n## mcpauth-as token endpoint%s%s, %s\n\n", opt.label ? ": " : "",
                opt.label ? opt.label : "", when);
    else
        fprintf(f, "\nToken endpoint benchmark (mcpauth-as behind lighttpd)%s%s\n",
                opt.label ? "; " : "", opt.label ? opt.label : "");
    fprintf(f,
            "Clients: %d concurrent (%d registered, public), keep-alive; %s; "
            "%ld codes exchanged (obtained beforehand in %.1f s, untimed), then %d s of "
            "refresh chains (rotation).\n",
            opt.clients, B.nreg,
            opt.pin ? "server (lighttpd + its FastCGI processes) pinned to CPU 0, clients to CPU 1"
                    : "not pinned",
            W.nitems, setup_secs, opt.seconds);
    fprintf(f, "%s; %s; commit %s%s%s\n\n", server, mach, commit[0] ? commit : "?",
            markdown_heading ? "" : "; ", markdown_heading ? "" : when);
    fprintf(f, "| phase | ok | seconds | req/s | latency p50 / p99 / max ms | errors | "
               "server CPU µs/req (mcpauth-as + lighttpd) | WAL file after, MiB |\n"
               "|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < nph; i++)
        row(f, &ph[i]);
    if (opt.store) {
        fprintf(f, "\nStore: PostgreSQL (store = %s), the server on this machine (loopback; "
                   "fsync as its configuration says: bench/engines.sh turns it off); every "
                   "check-then-write transaction takes the store's advisory lock.  The server "
                   "CPU column leaves PostgreSQL's own processes out.\n",
                opt.store);
    } else {
        fprintf(f,
                "\nSQLite %s: journal_mode=%s (read from the database), synchronous=%s and "
                "busy_timeout=%s ms (lib/db_sqlite.c, no mcpauth.conf key); checkpoints by the store's "
                "WAL hook (wal_autocheckpoint reads %s: passive past 1,000 pages, RESTART past 4,000, "
                "journal_size_limit 16 MiB): a commit writes the WAL without fsync; the WAL and the "
                "database are fsynced at checkpoints.  State directory on %s; after the run "
                "mcpauth.db %lld KiB, WAL file %lld KiB.\n",
                s->version, s->journal, s->synchronous, s->busy, s->autocheckpoint, s->fs, s->db_kib,
                s->wal_kib);
    }
    fprintf(f, "mcpauth-as: %d process%s (lighttpd snippet %s), peak RSS (VmHWM) %.1f MiB the "
               "largest, %.1f MiB together; RSS the largest %.1f MiB before the phases, %.1f MiB "
               "after.\n",
            m->n, m->n == 1 ? "" : "es",
            opt.snippet ? opt.snippet : "lighttpd/mcpauth-as.conf as shipped",
            (double)m->hwm_max / 1024, (double)m->hwm_sum / 1024, (double)m0->rss_max / 1024,
            (double)m->rss_max / 1024);
    for (int i = 0; i < nph; i++)
        if (ph[i].t.errors && W.first_error[0]) {
            fprintf(f, "First error (HTTP %ld): %s\n", W.first_status, W.first_error);
            break;
        }
}

static void tsv(const phase *ph, int nph, const sqlite_facts *s, const mem_use *m)
{
    int out = !strcmp(opt.tsv, "-");
    struct stat st;
    int fresh = out || stat(opt.tsv, &st) != 0 || st.st_size == 0;
    FILE *f = out ? stdout : fopen(opt.tsv, "a");
    if (!f) {
        fprintf(stderr, "bench: %s: %s\n", opt.tsv, strerror(errno));
        return;
    }
    if (fresh)
        fprintf(f, "phase\tclients\tok\terrors\tseconds\treq_per_s\tp50_ms\tp99_ms\tmax_ms\t"
                   "server_cpu_us_per_req\tas_cpu_us_per_req\tlighttpd_cpu_us_per_req\t"
                   "as_processes\tas_peak_rss_kib_max\tas_peak_rss_kib_sum\tas_rss_kib_after\t"
                   "journal_mode\t"
                   "synchronous\tbusy_timeout_ms\twal_autocheckpoint\tsqlite\tstate_fs\tpinned\t"
                   "db_kib\twal_kib\n");
    for (int i = 0; i < nph; i++) {
        const phase *p = &ph[i];
        long n = p->t.ok + p->t.errors;
        char fstype[64];
        snprintf(fstype, sizeof fstype, "%.*s", (int)strcspn(s->fs, " "), s->fs);
        fprintf(f, "%s\t%d\t%ld\t%ld\t%.3f\t%.1f\t%.3f\t%.3f\t%.3f\t%.1f\t%.1f\t%.1f\t%d\t%ld\t%ld\t%ld\t"
                   "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%lld\t%lld\n",
                p->name, opt.clients, p->t.ok, p->t.errors, p->secs, rate(p),
                pct(&p->t.lat, 50) * 1e3, pct(&p->t.lat, 99) * 1e3, pct(&p->t.lat, 100) * 1e3,
                us_per(p->cpu.lighttpd + p->cpu.as + p->cpu.other, n), us_per(p->cpu.as, n),
                us_per(p->cpu.lighttpd, n), m->n, m->hwm_max, m->hwm_sum, m->rss_max, s->journal,
                s->synchronous, s->busy, s->autocheckpoint, s->version, fstype, opt.pin,
                s->db_kib, p->wal_kib);
    }
    if (!out)
        fclose(f);
}

/* --------------------------------------------------------------- main */

static void usage(void)
{
    fputs("usage: bench_as [--seconds S] [--clients N] [--codes N] [--state-dir DIR] [--no-pin]\n"
          "  [--store CONNINFO] [--snippet FILE] [--results FILE] [--tsv FILE|-] [--label TEXT]\n"
          "  [--strict]\n",
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

static int run(void)
{
    if (start_server() != 0)
        return -1;
    B.nreg = opt.clients < MAX_REGISTERED ? opt.clients : MAX_REGISTERED;
    B.conns = xcalloc((size_t)opt.clients, sizeof *B.conns);
    for (int i = 0; i < opt.clients; i++)
        conn_init(&B.conns[i]);
    for (int i = 0; i < B.nreg; i++)
        if (asflow_register(&B.as, conn_http, &B.conns[0], i, &B.clients[i]) < 0 ||
            asflow_consent(&B.as, conn_http, &B.conns[0], &B.clients[i]) < 0)
            return -1;
    cpu_ticks c; /* mcpauth-as has answered by now */
    cpu_read(&c);
    if (c.n_as == 0)
        fprintf(stderr, "bench: no mcpauth-as process in lighttpd's process group: "
                        "CPU figures will miss it\n");
    W.items = xcalloc((size_t)opt.codes, sizeof *W.items);
    mem_use m0;
    mem_read(&m0);

    phase ph[2] = {{.name = "code exchange"}, {.name = "refresh (rotating)"}};
    double setup_secs;
    fprintf(stderr, "bench: %d clients, %d codes, then %d s of refreshes...\n", opt.clients,
            opt.codes, opt.seconds);
    if (phase_exchange(&ph[0], &setup_secs) < 0) {
        free(ph[0].t.lat.v);
        return -1;
    }
    phase_refresh(&ph[1]);
    if (atomic_load(&g_stop)) {
        fprintf(stderr, "bench: interrupted; no figures\n");
        for (int i = 0; i < 2; i++)
            free(ph[i].t.lat.v);
        return -1;
    }
    for (int i = 0; i < 2; i++)
        qsort(ph[i].t.lat.v, ph[i].t.lat.n, sizeof(double), cmp_double);
    sqlite_facts s;
    sqlite_read(&s);
    mem_use m;
    mem_read(&m);

    report(stdout, 0, ph, 2, &s, &m0, &m, setup_secs);
    if (opt.results) {
        FILE *f = fopen(opt.results, "a");
        if (f) {
            report(f, 1, ph, 2, &s, &m0, &m, setup_secs);
            fclose(f);
        } else {
            fprintf(stderr, "bench: %s: %s\n", opt.results, strerror(errno));
        }
    }
    if (opt.tsv)
        tsv(ph, 2, &s, &m);
    long errors = ph[0].t.errors + ph[1].t.errors;
    for (int i = 0; i < 2; i++)
        free(ph[i].t.lat.v);
    return errors > 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--strict")) {
            opt.strict = 1;
            continue;
        }
        if (!strcmp(a, "--no-pin")) {
            opt.pin = 0;
            continue;
        }
        if (!v || strncmp(a, "--", 2) != 0) {
            usage();
            return 2;
        }
        i++;
        if (!strcmp(a, "--seconds"))
            opt.seconds = num(v, 1, 3600);
        else if (!strcmp(a, "--clients"))
            opt.clients = num(v, 1, MAX_CLIENTS);
        else if (!strcmp(a, "--codes"))
            opt.codes = num(v, 1, 1000000);
        else if (!strcmp(a, "--state-dir"))
            opt.state_parent = v;
        else if (!strcmp(a, "--results"))
            opt.results = v;
        else if (!strcmp(a, "--tsv"))
            opt.tsv = v;
        else if (!strcmp(a, "--label"))
            opt.label = v;
        else if (!strcmp(a, "--snippet"))
            opt.snippet = v;
        else if (!strcmp(a, "--store"))
            opt.store = v;
        else {
            usage();
            return 2;
        }
    }
    if (opt.codes < opt.clients) {
        fprintf(stderr, "bench: --codes must be at least --clients\n");
        return 2;
    }
    if (opt.pin && sysconf(_SC_NPROCESSORS_ONLN) < 2)
        opt.pin = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = run();
    if (rc < 0 && B.srv.dir[0] && !atomic_load(&g_stop)) {
        char *log = th_error_log(&B.srv);
        if (log && *log)
            fprintf(stderr, "bench: lighttpd's error log:\n%.4000s\n", log);
        free(log);
    }
    for (int i = 0; B.conns && i < opt.clients; i++)
        conn_free(&B.conns[i]);
    free(B.conns);
    free(W.items);
    stop_server();
    curl_global_cleanup();
    if (rc < 0)
        return 1;
    return opt.strict && rc > 0 ? 1 : 0;
}
