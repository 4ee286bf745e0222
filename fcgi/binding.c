/* FastCGI binding: command line, configuration, accept loop.  Everything
 * that knows about libfcgi lives here; handlers see mcpauth_request and
 * mcpauth_response only. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <fcgiapp.h>

#include <mcpauth/log.h>
#include <mcpauth/mcpauth.h>

#include "binding.h"
#include "lifecycle.h"


/* Stopping (see lifecycle.h and the SIGNALS section of the man pages).
 * Event streams under way get a second; other requests (answered or not:
 * the proxy sends a JSON answer's head before its body) get until shortly
 * before the bound, then a 503 if nothing was sent yet. */
#define STARTED_GRACE_MS 1000
#define UNSTARTED_GRACE_MS ((MCPAUTH_STOP_BOUND_S - 2) * 1000)

/* Stack reserved per worker thread (address space, not memory). */
#define WORKER_STACK (512 * 1024)

static atomic_int g_stopping;
static atomic_llong g_stop_ms;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int mcpauth__stopping(void)
{
    return atomic_load(&g_stopping);
}

typedef struct server server;

/* One per worker thread; also the ctx of every callback of its request. */
typedef struct worker {
    server *srv;
    FCGX_Request fr;
    const mcpauth_response *resp; /* the response being written, or NULL */
    int cut;                      /* alive() ended the request: stopping */
    pthread_t tid;                /* set by the worker as it ends, for reap() */
    struct worker *next_ended;    /* the list of ended workers (server.ended) */
} worker;

/* The pool is elastic because MCP holds requests open: a standalone GET
 * stream or a streamed tool call keeps its thread for minutes, so a fixed
 * pool would let held streams starve short requests.  `spare` threads wait
 * for connections; when the last of them takes one, another is started (up
 * to `max`), and one that has waited LINGER_S with more than `spare`
 * others waiting ends. */
struct server {
    const mcpauth_app *app;
    void *state;
    int listen_fd;
    int wake[2];                  /* a pipe, readable once stopping */
    pthread_mutex_t accept_lock;
    pthread_mutex_t mu;           /* guards everything below */
    pthread_cond_t done;          /* signalled as workers end */
    pthread_attr_t attr;          /* detached, small stacks */
    int running;                  /* threads alive (or being started) */
    int busy;                     /* serving a request */
    int idle;                     /* waiting for a new connection */
    int spare, max;
    int across_processes;         /* mod_fcgid: the pool is Apache's processes */
    int full_logged;              /* "workers_exhausted" said for this episode */
    worker *ended;                /* workers that left, not yet joined */
};

/* Under an .htaccess RewriteRule (the shared-hosting fallback for hosts
 * without CGIPassAuth), Apache hands the variables the rule set on as
 * REDIRECT_NAME after its internal redirect.  A client cannot make a
 * REDIRECT_ variable: its headers arrive as HTTP_*. */
static const char *redirected(const char *name, const char *(*get)(const char *, void *), void *arg)
{
    char alt[64];
    if (strcmp(name, "HTTP_AUTHORIZATION") != 0 && strncmp(name, "MCPAUTH_", 8) != 0)
        return NULL;
    if ((size_t)snprintf(alt, sizeof alt, "REDIRECT_%s", name) >= sizeof alt)
        return NULL;
    return get(alt, arg);
}

static const char *fcgx_get(const char *name, void *envp)
{
    return FCGX_GetParam(name, envp);
}

static const char *fcgx_param(void *ctx, const char *name)
{
    char **envp = ((worker *)ctx)->fr.envp;
    const char *v = FCGX_GetParam(name, envp);
    return v ? v : redirected(name, fcgx_get, envp);
}

static ssize_t fcgx_read(void *ctx, char *buf, size_t len)
{
    FCGX_Stream *in = ((worker *)ctx)->fr.in;
    int n = FCGX_GetStr(buf, len > 1 << 30 ? 1 << 30 : (int)len, in);
    if (n == 0 && FCGX_GetError(in))
        return -1;
    return n;
}

/* An SSE stream runs until someone ends it; anything else ends by itself. */
static int is_event_stream(const mcpauth_response *resp)
{
    static const char ct[] = "content-type: text/event-stream";
    size_t n = sizeof ct - 1;
    for (size_t i = 0; i + n <= resp->headlen; i++)
        if ((i == 0 || resp->head[i - 1] == '\n') && strncasecmp(resp->head + i, ct, n) == 0)
            return 1;
    return 0;
}

/* 0 when the client has gone: after the body has been read to its end,
 * anything readable on the connection (an FCGI_ABORT_REQUEST, or EOF) means
 * that.  Also 0 once the program is stopping and the request's grace is
 * over, so a relay ends its stream as if the client had left (the client
 * sees the response end, not a hang). */
static int fcgx_alive(void *ctx)
{
    worker *w = ctx;
    if (atomic_load(&g_stopping)) {
        long long waited = now_ms() - atomic_load(&g_stop_ms);
        int stream = w->resp && w->resp->head_sent && is_event_stream(w->resp);
        if (waited >= (stream ? STARTED_GRACE_MS : UNSTARTED_GRACE_MS)) {
            w->cut = 1;
            return -1; /* "stopping": the core ends the exchange as for a departed client */
        }
    }
    struct pollfd pfd = {w->fr.ipcFd, POLLIN | POLLRDHUP, 0};
    int n = poll(&pfd, 1, 0);
    return !(n > 0 && (pfd.revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)));
}

static int fcgx_write(void *ctx, const char *buf, size_t len)
{
    FCGX_Stream *out = ((worker *)ctx)->fr.out;
    while (len > 0) {
        int chunk = len > 1 << 30 ? 1 << 30 : (int)len;
        if (FCGX_PutStr(buf, chunk, out) != chunk)
            return -1;
        buf += chunk;
        len -= (size_t)chunk;
    }
    return 0;
}

static int fcgx_flush(void *ctx)
{
    return FCGX_FFlush(((worker *)ctx)->fr.out);
}

static const char *cgi_get(const char *name, void *arg)
{
    (void)arg;
    return getenv(name);
}

static const char *cgi_param(void *ctx, const char *name)
{
    (void)ctx;
    const char *v = getenv(name);
    return v ? v : redirected(name, cgi_get, NULL);
}

/* 0 once the web server has closed our output: the client left (Apache's
 * mod_cgi closes the pipe when it aborts the request). */
static int cgi_alive(void *ctx)
{
    (void)ctx;
    struct pollfd pfd = {STDOUT_FILENO, 0, 0};
    return !(poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLERR | POLLHUP)));
}

static ssize_t cgi_read(void *ctx, char *buf, size_t len)
{
    (void)ctx;
    return read(STDIN_FILENO, buf, len);
}

static int cgi_write(void *ctx, const char *buf, size_t len)
{
    (void)ctx;
    return fwrite(buf, 1, len, stdout) == len ? 0 : -1;
}

static int cgi_flush(void *ctx)
{
    (void)ctx;
    return fflush(stdout);
}

static void serve_one(const mcpauth_app *app, void *state, mcpauth_request *req,
                      mcpauth_response *resp, const char *(*param)(void *, const char *),
                      ssize_t (*rd)(void *, char *, size_t), int (*alive)(void *), void *ctx,
                      int spare_workers)
{
    int rc = mcpauth_request_init(req, param, rd, ctx);
    if (rc < 0) {
        mcpauth_request_refuse(req, rc, resp);
        return;
    }
    req->alive = alive; /* after init, which resets both */
    req->spare_workers = spare_workers;
    app->handle(state, req, resp);
    if (resp->head_sent)
        return;
    /* a handler that forgot to answer, or gave up because we are stopping,
     * still answers */
    if (mcpauth__stopping()) {
        mcpauth_response_header(resp, "Retry-After", "1");
        mcpauth_response_error(resp, 503, "temporarily_unavailable", "the server is restarting");
    } else {
        mcpauth_response_error(resp, 500, "server_error", NULL);
    }
}

/* 0: a connection is waiting; 1: stopping; -1: the listener is gone;
 * 2: nothing within ms. */
static int wait_listener(server *s, int ms)
{
    struct pollfd p[2] = {{s->listen_fd, POLLIN, 0}, {s->wake[0], POLLIN, 0}};
    for (;;) {
        if (mcpauth__stopping())
            return 1;
        int n = poll(p, 2, ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            return 2;
        if (p[1].revents)
            return 1;
        if (p[0].revents & POLLIN)
            return 0;
        if (p[0].revents) /* POLLERR, POLLHUP, POLLNVAL */
            return -1;
    }
}

/* An extra worker (beyond the spares) that has waited this long for a
 * connection ends.  Ending one as soon as enough others waited started and
 * ended thousands of threads a second under steady load (a fifth of a
 * thread per request); this keeps the pool at the load's recent peak. */
#define LINGER_S 10

/* 1 when this worker, waiting since idle_since, has lingered long enough
 * with more than `spare` others waiting: it is counted out and must end. */
static int lingered(server *s, long long idle_since)
{
    if (now_ms() - idle_since < LINGER_S * 1000)
        return 0;
    pthread_mutex_lock(&s->mu);
    int leave = s->idle > s->spare;
    if (leave)
        s->idle--;
    pthread_mutex_unlock(&s->mu);
    return leave;
}

/* The accept lock, or 0 when this worker has lingered (see lingered()).
 * 1: the lock is held. */
static int accept_lock_or_leave(server *s, long long idle_since)
{
    for (;;) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += 1;
        if (pthread_mutex_timedlock(&s->accept_lock, &dl) == 0)
            return 1;
        if (mcpauth__stopping()) {
            pthread_mutex_lock(&s->accept_lock); /* wait_listener says so at once */
            return 1;
        }
        if (lingered(s, idle_since))
            return 0;
    }
}

static void *worker_main(void *p);

/* Starts one more worker, which the caller has counted in running
 * already; on failure the count is taken back.  0 or -1. */
static int spawn_worker(server *s)
{
    worker *w = calloc(1, sizeof *w);
    pthread_t tid;
    if (w) {
        w->srv = s;
        if (FCGX_InitRequest(&w->fr, s->listen_fd, 0) == 0 &&
            pthread_create(&tid, &s->attr, worker_main, w) == 0)
            return 0;
        free(w);
    }
    pthread_mutex_lock(&s->mu);
    s->running--;
    pthread_mutex_unlock(&s->mu);
    return -1;
}

/* After a worker took a request (was_idle: on a new connection, counted as
 * waiting until now): start another if none is left waiting for the next
 * one.  Returns the threads this process could still start,
 * besides the ones waiting, for the request's spare_workers. */
static int took_connection(server *s, int was_idle)
{
    pthread_mutex_lock(&s->mu);
    s->idle -= was_idle;
    s->busy++;
    int grow = s->idle == 0 && s->running < s->max;
    if (grow)
        s->running++;
    int exhausted = s->idle == 0 && !grow && !s->full_logged && !s->across_processes;
    if (exhausted)
        s->full_logged = 1;
    int spare = s->across_processes ? -1 : s->max - s->busy;
    pthread_mutex_unlock(&s->mu);
    if (exhausted) { /* logged outside the lock: no I/O while others wait */
        char n[16];
        snprintf(n, sizeof n, "%d", s->max);
        mcpauth_log(MCPAUTH_LOG_WARN, "workers_exhausted", "threads", n, "effect",
                    "new connections wait in the socket's queue until a request ends", NULL);
    }
    if (grow && spawn_worker(s) != 0)
        mcpauth_log(MCPAUTH_LOG_ERROR, "thread_start_failed", NULL);
    /* under mod_fcgid this process cannot tell how many others are free */
    return spare;
}

/* Waits for the next request on a connection the web server keeps open
 * (FCGI_KEEP_CONN: mod_proxy_fcgi with enablereuse).  libfcgi would read it
 * inside FCGX_Accept_r; waiting here instead keeps the accept lock free
 * for the other workers and lets a stop interrupt the wait.  1: readable
 * (a request, or the web server closed it); 0: stopping. */
static int wait_kept(server *s, int fd)
{
    struct pollfd p[2] = {{fd, POLLIN | POLLRDHUP, 0}, {s->wake[0], POLLIN, 0}};
    for (;;) {
        if (mcpauth__stopping())
            return 0;
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return 1; /* let libfcgi find the error */
        }
        if (p[1].revents)
            return 0;
        if (p[0].revents)
            return 1;
    }
}

/* Waits for the next request and reads its start: 1 taken (2: on a new
 * connection, which the worker waited for as idle), 0 nothing after all
 * (look again), -1 this worker ends (stopping, lingered, listener gone). */
static int next_request(server *s, worker *w)
{
    if (w->fr.ipcFd >= 0) { /* a connection the web server keeps */
        if (!wait_kept(s, w->fr.ipcFd))
            return -1;
        return FCGX_Accept_r(&w->fr) < 0 ? 0 : 1; /* < 0: it was closed */
    }
    pthread_mutex_lock(&s->mu);
    s->idle++;
    pthread_mutex_unlock(&s->mu);
    /* Serialised accept, as libfcgi's threaded example: some kernels wake
     * every thread blocked on the same socket.  The thread holding the lock
     * waits in poll(2), which the wake pipe interrupts; libfcgi's own
     * accept loop retries on EINTR and never would.  Every second a
     * waiting worker looks whether it has lingered long enough to end. */
    long long since = now_ms();
    int ready;
    do {
        if (!accept_lock_or_leave(s, since))
            return -1; /* lingered: counted out of idle already */
        ready = wait_listener(s, 1000);
        if (ready == 2) {
            pthread_mutex_unlock(&s->accept_lock);
            if (lingered(s, since))
                return -1;
        }
    } while (ready == 2);
    int rc = ready == 0 ? FCGX_Accept_r(&w->fr) : -1;
    pthread_mutex_unlock(&s->accept_lock);
    if (ready == 0 && rc >= 0) {
        /* Linux does not pass O_NONBLOCK on to accepted sockets; others may */
        int fl = fcntl(w->fr.ipcFd, F_GETFL);
        if (fl >= 0 && (fl & O_NONBLOCK))
            fcntl(w->fr.ipcFd, F_SETFL, fl & ~O_NONBLOCK);
        return 2;
    }
    pthread_mutex_lock(&s->mu);
    s->idle--;
    pthread_mutex_unlock(&s->mu);
    if (ready > 0)
        return -1;
    if (ready < 0 || (rc != -EAGAIN && rc != -EWOULDBLOCK && rc != -EINTR)) {
        char e[16];
        snprintf(e, sizeof e, "%d", ready < 0 ? errno : -rc);
        mcpauth_log(MCPAUTH_LOG_ERROR, "accept_failed", "errno", e, NULL);
        return -1;
    }
    return 0; /* the non-blocking listener had nothing after all */
}

static void *worker_main(void *p)
{
    worker *w = p;
    server *s = w->srv;
    for (;;) {
        int got = next_request(s, w);
        if (got < 0)
            break;
        if (got == 0)
            continue;
        int spare = took_connection(s, got == 2);
        mcpauth_request req;
        mcpauth_response resp;
        mcpauth_response_init(&resp, (mcpauth_sink){fcgx_write, fcgx_flush, w});
        w->resp = &resp;
        w->cut = 0;
        serve_one(s->app, s->state, &req, &resp, fcgx_param, fcgx_read, fcgx_alive, w, spare);
        if (w->cut)
            mcpauth_log(MCPAUTH_LOG_INFO, "request_ended", "reason", "shutdown", "path", req.path,
                        "client", req.remote_addr, NULL);
        w->resp = NULL;
        FCGX_Finish_r(&w->fr); /* keeps the connection under FCGI_KEEP_CONN */
        pthread_mutex_lock(&s->mu);
        s->busy--;
        if (s->busy < s->max)
            s->full_logged = 0;
        pthread_mutex_unlock(&s->mu);
    }
    FCGX_Free(&w->fr, 1); /* closes a kept connection */
    /* Joined, not detached: after its return the thread still runs the
     * thread-specific destructors (the proxy's curl handle, OpenSSL's
     * per-thread state).  A detached one could run them after the state
     * they use is freed, or not at all once its key is deleted (a leak
     * LeakSanitizer found); stop() joins every worker before fini. */
    w->tid = pthread_self();
    pthread_mutex_lock(&s->mu);
    w->next_ended = s->ended;
    s->ended = w;
    s->running--;
    pthread_cond_signal(&s->done);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Joins the workers that have ended (each within moments of its return). */
static void reap(server *s)
{
    pthread_mutex_lock(&s->mu);
    worker *w = s->ended;
    s->ended = NULL;
    pthread_mutex_unlock(&s->mu);
    while (w) {
        worker *next = w->next_ended;
        pthread_join(w->tid, NULL);
        free(w);
        w = next;
    }
}

/* SIGHUP is waited for too: it reopens the log file (logrotate's
 * postrotate), nothing else. */
static const int stop_signals[] = {SIGTERM, SIGINT, SIGQUIT, SIGUSR1};
#define NSTOP (sizeof stop_signals / sizeof stop_signals[0])

static void lifecycle_sigset(sigset_t *set)
{
    sigemptyset(set);
    for (size_t i = 0; i < NSTOP; i++)
        sigaddset(set, stop_signals[i]);
    sigaddset(set, SIGHUP);
}

/* Dispositions as if freshly started: web servers leave some ignored
 * (lighttpd: SIGQUIT) and libfcgi catches SIGTERM and SIGUSR1 with a
 * handler that only its single-threaded accept loop looks at. */
static void signals_reset(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = SIG_DFL;
    for (size_t i = 0; i < NSTOP; i++)
        sigaction(stop_signals[i], &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = SIG_IGN; /* a client gone mid-response is not fatal */
    sigaction(SIGPIPE, &sa, NULL);
}

static const char *signal_name(int sig)
{
    switch (sig) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGQUIT: return "SIGQUIT";
    case SIGUSR1: return "SIGUSR1";
    default: return "signal";
    }
}

/* The main thread serves nothing: it waits for a reason to stop.  parent is
 * the web server that spawned us (0 with --listen: a standalone server,
 * which only signals stop). */
static const char *supervise(server *s, pid_t parent)
{
    sigset_t set;
    lifecycle_sigset(&set);
    for (;;) {
        struct timespec tick = {1, 0};
        int sig = sigtimedwait(&set, NULL, &tick);
        if (sig == SIGHUP) {
            int rc = mcpauth_log_reopen();
            mcpauth_log(rc < 0 ? MCPAUTH_LOG_ERROR : MCPAUTH_LOG_INFO, "sighup", "log",
                        rc == 0 ? "reopened" : rc > 0 ? "unchanged" : "reopen_failed", "config",
                        "read once; restart the web server (or the program) to apply changes",
                        NULL);
        } else if (sig > 0) {
            return signal_name(sig);
        }
        /* Orphans are adopted by PID 1 (or a subreaper): the web server that
         * would send us requests, and stop us, is gone. */
        if (parent > 1 && getppid() != parent)
            return "parent_gone";
        pthread_mutex_lock(&s->mu);
        int running = s->running;
        pthread_mutex_unlock(&s->mu);
        reap(s); /* workers that lingered and left */
        if (running == 0)
            return "listener_closed";
    }
}

/* Stops accepting, lets requests in flight end (streams are ended through
 * alive()), and returns once every worker has; exits at the bound. */
static void stop(server *s, const char *reason)
{
    atomic_store(&g_stop_ms, now_ms());
    atomic_store(&g_stopping, 1);
    if (write(s->wake[1], "", 1) < 0) { /* a full pipe is awake already */
    }
    pthread_mutex_lock(&s->mu);
    char busy[16];
    snprintf(busy, sizeof busy, "%d", s->busy);
    mcpauth_log(MCPAUTH_LOG_INFO, "stopping", "reason", reason, "in_flight", busy, NULL);
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += MCPAUTH_STOP_BOUND_S;
    int rc = 0;
    while (s->running > 0 && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&s->done, &s->mu, &deadline);
    int left = s->busy;
    pthread_mutex_unlock(&s->mu);
    if (rc == ETIMEDOUT) {
        char cut[16];
        snprintf(cut, sizeof cut, "%d", left);
        mcpauth_log(MCPAUTH_LOG_WARN, "stop_timeout", "requests_cut", cut, NULL);
        _exit(0); /* the workers still hold the state fini would free */
    }
    mcpauth_log(MCPAUTH_LOG_INFO, "stopped", "reason", reason, NULL);
}

/* Serves FastCGI on fd until told to stop; 0, or 1 when nothing started. */
static int serve_fastcgi(const mcpauth_app *app, void *state, int fd, int spare, int max,
                         int across_processes, pid_t parent)
{
    server s;
    memset(&s, 0, sizeof s);
    s.app = app;
    s.state = state;
    s.listen_fd = fd;
    s.spare = spare;
    s.max = max;
    s.across_processes = across_processes;
    pthread_mutex_init(&s.accept_lock, NULL);
    pthread_mutex_init(&s.mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s.done, &ca);
    pthread_condattr_destroy(&ca);
    /* Joinable: a worker that leaves is joined by the main thread within a
     * second (supervise), and stop() joins them all (see worker_main).
     * Resident memory per held stream is what the thread touches of its
     * stack; the size only bounds the address space a thousand of them
     * reserve. */
    pthread_attr_init(&s.attr);
    pthread_attr_setstacksize(&s.attr, WORKER_STACK);
    if (pipe2(s.wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        mcpauth_log(MCPAUTH_LOG_ERROR, "cannot_start", "reason", "pipe", NULL);
        return 1;
    }
    /* Non-blocking, so a connection another process took meanwhile makes
     * accept(2) return rather than hold the accept lock. */
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    int started = 0;
    for (int i = 0; i < spare; i++) {
        pthread_mutex_lock(&s.mu);
        s.running++;
        pthread_mutex_unlock(&s.mu);
        if (spawn_worker(&s) != 0)
            break;
        started++;
    }
    if (started == 0) {
        mcpauth_log(MCPAUTH_LOG_ERROR, "cannot_start", "reason", "no worker thread", NULL);
        return 1;
    }
    stop(&s, supervise(&s, parent));
    reap(&s);
    /* Workers are gone, or we exited at the bound: nothing uses s now. */
    pthread_attr_destroy(&s.attr);
    close(s.wake[0]);
    close(s.wake[1]);
    return 0;
}

/* Linux: the name of a process (its comm), "" when it cannot be read. */
static void comm_of(pid_t pid, char *comm, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/comm", (long)pid);
    comm[0] = '\0';
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    if (!fgets(comm, (int)cap, f))
        comm[0] = '\0';
    fclose(f);
    comm[strcspn(comm, "\n")] = '\0';
}

static int is_apache(const char *comm)
{
    /* apache2 on Debian, httpd elsewhere */
    return strcmp(comm, "apache2") == 0 || strncmp(comm, "httpd", 5) == 0;
}

static int spawned_by_apache(pid_t parent)
{
    char comm[32];
    if (parent <= 1)
        return 0;
    comm_of(parent, comm, sizeof comm);
    return is_apache(comm);
}

/* Spawned, yet our parent is PID 1: either the web server runs as PID 1 (a
 * container) or it died while we were starting, before the first
 * getppid(), and we were adopted (seen when lighttpd was killed right
 * after spawning us: the orphan then served nothing, forever). */
static int orphaned_at_start(pid_t parent)
{
    if (parent != 1)
        return 0;
    char comm[32];
    comm_of(1, comm, sizeof comm);
    return !(is_apache(comm) || strcmp(comm, "lighttpd") == 0);
}

/* Each held stream costs two descriptors (the web server's connection and
 * the backend's), more than the usual soft limit of 1024 allows for a
 * thousand streams: take what the hard limit grants. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > 65536 ? 65536 : rl.rlim_max;
        if (want > rl.rlim_cur) {
            rl.rlim_cur = want;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
}

static void usage(const mcpauth_app *app, FILE *f)
{
    fprintf(f,
            "Usage: %s [--config FILE] [--listen ADDR] [--check] [--version] [--help]\n"
            "%s\n\n"
            "  --config FILE  configuration file (default: $MCPAUTH_CONFIG, else %s)\n"
            "  --listen ADDR  serve FastCGI on ADDR (HOST:PORT or a socket path) instead\n"
            "                 of the socket the web server passes (systemd; Apache\n"
            "                 mod_proxy_fcgi or mod_authnz_fcgi)\n"
            "  --check        read and check the configuration, then exit\n"
            "  --version      print the version and exit\n"
            "Run by the web server as a FastCGI application; see %s(8).\n",
            app->name, app->summary, mcpauth_config_default_file(), app->name);
}

int mcpauth_fcgi_main(const mcpauth_app *app, int argc, char **argv)
{
    pid_t spawner = getppid(); /* before anything can take time */
    const char *file = getenv("MCPAUTH_CONFIG");
    const char *listen_addr = NULL;
    int check = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            file = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            file = argv[i] + 9;
        } else if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen_addr = argv[++i];
        } else if (strcmp(argv[i], "--check") == 0) {
            check = 1;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("%s %s\n", app->name, MCPAUTH_VERSION);
            return 0;
        } else if (strcmp(argv[i], "--help") == 0) {
            usage(app, stdout);
            return 0;
        } else {
            fprintf(stderr, "%s: unknown argument \"%s\"\n", app->name, argv[i]);
            usage(app, stderr);
            return 2;
        }
    }
    if (!file || !*file)
        file = mcpauth_config_default_file();

    mcpauth_log_init(app->name, MCPAUTH_LOG_INFO);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "%s: cannot initialise libcurl\n", app->name);
        return 1;
    }
    char err[512];
    mcpauth_config *cfg = mcpauth_config_load(file, err, sizeof err);
    if (!cfg) {
        /* One line, on stderr, which the web server's error log keeps. */
        fprintf(stderr, "%s: configuration error: %s\n", app->name, err);
        return 1;
    }
    mcpauth_log_set_level((mcpauth_log_level)cfg->log_level);
    /* The destination of the log (mcpauth.conf `log`): opened here, by the
     * user the program runs as; --check only says whether it could be. */
    if ((check ? mcpauth_log_check(cfg, err, sizeof err) : mcpauth_log_open(cfg, err, sizeof err))
        != 0) {
        fprintf(stderr, "%s: cannot start: %s\n", app->name, err);
        mcpauth_config_free(cfg);
        return 1;
    }
    /* Known before init: a CGI process lives for one request, so what must
     * outlast it (validation results, keys) goes to runtime_dir unless the
     * configuration says otherwise (shared_cache = no). */
    int cgi = !check && !listen_addr && FCGX_IsCGI();
    if (cgi && cfg->shared_cache < 0)
        cfg->shared_cache = 1;
    sigset_t lifecycle;
    lifecycle_sigset(&lifecycle);
    if (!check) {
        /* Blocked from here on, in every thread (workers, libcurl's
         * resolver threads inherit the mask): only the main thread takes
         * them, with sigtimedwait(2).  SIG_SETMASK also unblocks whatever
         * the web server left blocked. */
        pthread_sigmask(SIG_SETMASK, &lifecycle, NULL);
        signals_reset();
    }
    void *state = app->init(cfg, check, err, sizeof err);
    if (!state) {
        fprintf(stderr, "%s: cannot start: %s\n", app->name, err);
        mcpauth_config_free(cfg);
        return 1;
    }
    if (check) {
        printf("%s: %s: OK (%zu resource%s)\n", app->name, file, cfg->nresources,
               cfg->nresources == 1 ? "" : "s");
        app->fini(state);
        mcpauth_config_free(cfg);
        return 0;
    }

    int rc = 0;
    if (cgi) {
        /* One request, then exit: signals act as on any CGI program. */
        signals_reset(); /* FCGX_IsCGI() let libfcgi install its handlers */
        sigset_t none;
        sigemptyset(&none);
        pthread_sigmask(SIG_SETMASK, &none, NULL);
        mcpauth_request req;
        mcpauth_response resp;
        mcpauth_response_init(&resp, (mcpauth_sink){cgi_write, cgi_flush, NULL});
        serve_one(app, state, &req, &resp, cgi_param, cgi_read, cgi_alive, NULL, -1);
        fflush(stdout);
    } else {
        /* The web server that spawned us; with --listen we are a server of
         * our own, started by systemd, a script or a shell, and its parent
         * is none of our business. */
        pid_t parent = listen_addr ? 0 : spawner;
        int fd = 0;
        if (FCGX_Init() != 0) {
            fprintf(stderr, "%s: cannot initialise FastCGI\n", app->name);
            rc = 1;
        } else if (listen_addr && (fd = FCGX_OpenSocket(listen_addr, SOMAXCONN)) < 0) {
            fprintf(stderr, "%s: cannot listen on %s\n", app->name, listen_addr);
            rc = 1;
        }
        signals_reset(); /* libfcgi installed handlers of its own */
        if (rc == 0 && orphaned_at_start(parent)) {
            mcpauth_log(MCPAUTH_LOG_INFO, "stopped", "reason", "parent_gone", NULL);
        } else if (rc == 0) {
            /* threads == 0: the proxy, sized by the configuration */
            int spare = app->threads > 0 ? app->threads : (int)cfg->proxy_threads;
            int max = app->max_threads > 0 ? app->max_threads : (int)cfg->proxy_max_threads;
            const char *mode = listen_addr ? "standalone" : "spawned";
            int fcgid = !listen_addr && spawned_by_apache(parent);
            if (fcgid) {
                /* mod_fcgid, the one Apache module that starts FastCGI
                 * programs, sends a process one request at a time: more
                 * threads would only hold memory. */
                spare = max = 1;
                mode = "mod_fcgid";
            }
            if (spare < 1)
                spare = 1;
            if (max < spare)
                max = spare;
            raise_fd_limit();
            char sp[16], mx[16];
            snprintf(sp, sizeof sp, "%d", spare);
            snprintf(mx, sizeof mx, "%d", max);
            mcpauth_log(MCPAUTH_LOG_INFO, "start", "config", file, "version", MCPAUTH_VERSION,
                        "listen", listen_addr, "mode", mode, "threads", sp, "max_threads", mx,
                        NULL);
            rc = serve_fastcgi(app, state, fd, spare, max, fcgid, parent);
        }
    }
    app->fini(state);
    mcpauth_config_free(cfg);
    curl_global_cleanup();
    return rc;
}
