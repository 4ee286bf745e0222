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
typedef struct {
    server *srv;
    pthread_t tid;
    FCGX_Request fr;
    const mcpauth_response *resp; /* the response being written, or NULL */
    int cut;                      /* alive() ended the request: stopping */
} worker;

struct server {
    const mcpauth_app *app;
    void *state;
    int listen_fd;
    int wake[2];                  /* a pipe, readable once stopping */
    pthread_mutex_t accept_lock;
    pthread_mutex_t mu;           /* guards running, busy */
    pthread_cond_t done;          /* signalled as workers end */
    int running;
    int busy;
};

static const char *fcgx_param(void *ctx, const char *name)
{
    return FCGX_GetParam(name, ((worker *)ctx)->fr.envp);
}

static ssize_t fcgx_read(void *ctx, char *buf, size_t len)
{
    FCGX_Stream *in = ((worker *)ctx)->fr.in;
    int n = FCGX_GetStr(buf, len > 1 << 30 ? 1 << 30 : (int)len, in);
    if (n == 0 && FCGX_GetError(in))
        return -1;
    return n;
}

/* 0 when the client has gone: after the body has been read to its end,
 * anything readable on the connection (an FCGI_ABORT_REQUEST, or EOF) means
 * that.  Also 0 once the program is stopping and the request's grace is
 * over, so a relay ends its stream as if the client had left (the client
 * sees the response end, not a hang). */
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

static const char *cgi_param(void *ctx, const char *name)
{
    (void)ctx;
    return getenv(name);
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
                      ssize_t (*rd)(void *, char *, size_t), int (*alive)(void *), void *ctx)
{
    int rc = mcpauth_request_init(req, param, rd, ctx);
    if (rc < 0) {
        mcpauth_request_refuse(req, rc, resp);
        return;
    }
    req->alive = alive; /* after init, which resets it */
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

/* 0: a connection is waiting; 1: stopping; -1: the listener is gone. */
static int wait_listener(server *s)
{
    struct pollfd p[2] = {{s->listen_fd, POLLIN, 0}, {s->wake[0], POLLIN, 0}};
    for (;;) {
        if (mcpauth__stopping())
            return 1;
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (p[1].revents)
            return 1;
        if (p[0].revents & POLLIN)
            return 0;
        if (p[0].revents) /* POLLERR, POLLHUP, POLLNVAL */
            return -1;
    }
}

static void *worker_main(void *p)
{
    worker *w = p;
    server *s = w->srv;
    for (;;) {
        /* Serialised accept, as libfcgi's threaded example: some kernels
         * wake every thread blocked on the same socket.  The thread holding
         * the lock waits in poll(2), which the wake pipe interrupts; libfcgi's
         * own accept loop retries on EINTR and never would. */
        pthread_mutex_lock(&s->accept_lock);
        int ready = wait_listener(s);
        int rc = ready == 0 ? FCGX_Accept_r(&w->fr) : -1;
        pthread_mutex_unlock(&s->accept_lock);
        if (ready > 0)
            break;
        if (ready < 0 || (rc < 0 && rc != -EAGAIN && rc != -EWOULDBLOCK && rc != -EINTR)) {
            char e[16];
            snprintf(e, sizeof e, "%d", ready < 0 ? errno : -rc);
            mcpauth_log(MCPAUTH_LOG_ERROR, "accept_failed", "errno", e, NULL);
            break;
        }
        if (rc < 0)
            continue; /* the non-blocking listener had nothing after all */
        /* Linux does not pass O_NONBLOCK on to accepted sockets; others may */
        int fl = fcntl(w->fr.ipcFd, F_GETFL);
        if (fl >= 0 && (fl & O_NONBLOCK))
            fcntl(w->fr.ipcFd, F_SETFL, fl & ~O_NONBLOCK);
        pthread_mutex_lock(&s->mu);
        s->busy++;
        pthread_mutex_unlock(&s->mu);
        mcpauth_request req;
        mcpauth_response resp;
        mcpauth_response_init(&resp, (mcpauth_sink){fcgx_write, fcgx_flush, w});
        w->resp = &resp;
        w->cut = 0;
        serve_one(s->app, s->state, &req, &resp, fcgx_param, fcgx_read, fcgx_alive, w);
        if (w->cut)
            mcpauth_log(MCPAUTH_LOG_INFO, "request_ended", "reason", "shutdown", "path", req.path,
                        "client", req.remote_addr, NULL);
        w->resp = NULL;
        FCGX_Finish_r(&w->fr);
        pthread_mutex_lock(&s->mu);
        s->busy--;
        pthread_mutex_unlock(&s->mu);
    }
    pthread_mutex_lock(&s->mu);
    s->running--;
    pthread_cond_signal(&s->done);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* SIGHUP is waited for too, only to be logged as ignored. */
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
        if (sig == SIGHUP)
            mcpauth_log(MCPAUTH_LOG_INFO, "sighup_ignored", "reason",
                        "the configuration is read once; restart the web server (or the program) "
                        "to apply changes", NULL);
        else if (sig > 0)
            return signal_name(sig);
        /* Orphans are adopted by PID 1 (or a subreaper): the web server that
         * would send us requests, and stop us, is gone. */
        if (parent > 1 && getppid() != parent)
            return "parent_gone";
        pthread_mutex_lock(&s->mu);
        int running = s->running;
        pthread_mutex_unlock(&s->mu);
        if (running == 0)
            return "listener_closed";
    }
}

/* Stops accepting, lets requests in flight end (streams are ended through
 * alive()), and returns once every worker has; exits at the bound. */
static void stop(server *s, worker *ws, int n, const char *reason)
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
    for (int i = 0; i < n; i++)
        pthread_join(ws[i].tid, NULL);
    mcpauth_log(MCPAUTH_LOG_INFO, "stopped", "reason", reason, NULL);
}

/* Serves FastCGI on fd until told to stop; 0, or 1 when nothing started. */
static int serve_fastcgi(const mcpauth_app *app, void *state, int fd, int nthreads, pid_t parent)
{
    server s;
    memset(&s, 0, sizeof s);
    s.app = app;
    s.state = state;
    s.listen_fd = fd;
    pthread_mutex_init(&s.accept_lock, NULL);
    pthread_mutex_init(&s.mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s.done, &ca);
    pthread_condattr_destroy(&ca);
    if (pipe2(s.wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        mcpauth_log(MCPAUTH_LOG_ERROR, "cannot_start", "reason", "pipe", NULL);
        return 1;
    }
    /* Non-blocking, so a connection another process took meanwhile makes
     * accept(2) return rather than hold the accept lock. */
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    worker *ws = calloc((size_t)nthreads, sizeof *ws);
    if (!ws) {
        mcpauth_log(MCPAUTH_LOG_ERROR, "out_of_memory", "what", "workers", NULL);
        abort();
    }
    int started = 0;
    for (int i = 0; i < nthreads; i++) {
        worker *w = &ws[started];
        w->srv = &s;
        if (FCGX_InitRequest(&w->fr, fd, 0) != 0)
            break;
        pthread_mutex_lock(&s.mu);
        s.running++;
        pthread_mutex_unlock(&s.mu);
        if (pthread_create(&w->tid, NULL, worker_main, w) != 0) {
            pthread_mutex_lock(&s.mu);
            s.running--;
            pthread_mutex_unlock(&s.mu);
            break;
        }
        started++;
    }
    if (started == 0) {
        mcpauth_log(MCPAUTH_LOG_ERROR, "cannot_start", "reason", "no worker thread", NULL);
        free(ws);
        return 1;
    }
    stop(&s, ws, started, supervise(&s, parent));
    free(ws);
    close(s.wake[0]);
    close(s.wake[1]);
    return 0;
}

static void usage(const mcpauth_app *app, FILE *f)
{
    fprintf(f,
            "Usage: %s [--config FILE] [--listen ADDR] [--check] [--version] [--help]\n"
            "%s\n\n"
            "  --config FILE  configuration file (default: $MCPAUTH_CONFIG, else %s)\n"
            "  --listen ADDR  serve FastCGI on ADDR (HOST:PORT or a socket path) instead\n"
            "                 of the socket the web server passes (Apache mod_authnz_fcgi)\n"
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
    if (!listen_addr && FCGX_IsCGI()) {
        /* One request, then exit: signals act as on any CGI program. */
        signals_reset(); /* FCGX_IsCGI() let libfcgi install its handlers */
        sigset_t none;
        sigemptyset(&none);
        pthread_sigmask(SIG_SETMASK, &none, NULL);
        mcpauth_request req;
        mcpauth_response resp;
        mcpauth_response_init(&resp, (mcpauth_sink){cgi_write, cgi_flush, NULL});
        serve_one(app, state, &req, &resp, cgi_param, cgi_read, NULL, NULL);
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
        } else if (listen_addr && (fd = FCGX_OpenSocket(listen_addr, 64)) < 0) {
            fprintf(stderr, "%s: cannot listen on %s\n", app->name, listen_addr);
            rc = 1;
        }
        signals_reset(); /* libfcgi installed handlers of its own */
        if (rc == 0) {
            /* threads == 0: the proxy, sized by the configuration */
            int n = app->threads > 0 ? app->threads : (int)cfg->proxy_threads;
            if (n < 1)
                n = 1;
            char threads[16];
            snprintf(threads, sizeof threads, "%d", n);
            mcpauth_log(MCPAUTH_LOG_INFO, "start", "config", file, "version", MCPAUTH_VERSION,
                        "listen", listen_addr, "threads", threads, NULL);
            rc = serve_fastcgi(app, state, fd, n, parent);
        }
    }
    app->fini(state);
    mcpauth_config_free(cfg);
    curl_global_cleanup();
    return rc;
}
