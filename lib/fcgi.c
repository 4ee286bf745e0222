/* FastCGI binding: command line, configuration, accept loop.  Everything
 * that knows about libfcgi lives here; handlers see mcpauth_request and
 * mcpauth_response only. */
#include "config.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <fcgiapp.h>

#include <mcpauth/fcgi.h>
#include <mcpauth/log.h>
#include <mcpauth/mcpauth.h>

const char *const mcpauth_mcp_versions[] = {"2026-07-28", "2025-11-25", "2025-06-18", NULL};

static const char *fcgx_param(void *ctx, const char *name)
{
    return FCGX_GetParam(name, ((FCGX_Request *)ctx)->envp);
}

static ssize_t fcgx_read(void *ctx, char *buf, size_t len)
{
    int n = FCGX_GetStr(buf, len > 1 << 30 ? 1 << 30 : (int)len, ((FCGX_Request *)ctx)->in);
    if (n == 0 && FCGX_GetError(((FCGX_Request *)ctx)->in))
        return -1;
    return n;
}

/* After the body has been read to its end, anything readable on the
 * connection (an FCGI_ABORT_REQUEST, or EOF) means the client is gone. */
static int fcgx_alive(void *ctx)
{
    struct pollfd pfd = {((FCGX_Request *)ctx)->ipcFd, POLLIN | POLLRDHUP, 0};
    int n = poll(&pfd, 1, 0);
    return !(n > 0 && (pfd.revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)));
}

static int fcgx_write(void *ctx, const char *buf, size_t len)
{
    FCGX_Stream *out = ((FCGX_Request *)ctx)->out;
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
    return FCGX_FFlush(((FCGX_Request *)ctx)->out);
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
                      mcpauth_response *resp)
{
    if (mcpauth_request_init(req, req->param, req->read, req->ctx) < 0) {
        mcpauth_response_error(resp, 414, "invalid_request", "request URI too long");
        return;
    }
    app->handle(state, req, resp);
    if (!resp->head_sent) /* a handler that forgot to answer still answers */
        mcpauth_response_error(resp, 500, "server_error", NULL);
}

typedef struct {
    const mcpauth_app *app;
    void *state;
    int listen_fd; /* 0: the socket the web server handed us as stdin */
} worker_arg;

static pthread_mutex_t accept_lock = PTHREAD_MUTEX_INITIALIZER;

static void *worker(void *p)
{
    worker_arg *w = p;
    FCGX_Request fr;
    if (FCGX_InitRequest(&fr, w->listen_fd, 0) != 0)
        return NULL;
    for (;;) {
        /* Serialised accept, as libfcgi's threaded example: some kernels
         * wake every thread blocked in accept(2) on the same socket. */
        pthread_mutex_lock(&accept_lock);
        int rc = FCGX_Accept_r(&fr);
        pthread_mutex_unlock(&accept_lock);
        if (rc < 0)
            break;
        mcpauth_request req;
        req.param = fcgx_param;
        req.read = fcgx_read;
        req.alive = fcgx_alive;
        req.ctx = &fr;
        mcpauth_response resp;
        mcpauth_response_init(&resp, (mcpauth_sink){fcgx_write, fcgx_flush, &fr});
        serve_one(w->app, w->state, &req, &resp);
        FCGX_Finish_r(&fr);
    }
    return NULL;
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
    signal(SIGPIPE, SIG_IGN); /* a client gone mid-response is not fatal */

    if (!listen_addr && FCGX_IsCGI()) {
        mcpauth_request req;
        req.param = cgi_param;
        req.read = cgi_read;
        req.alive = NULL;
        req.ctx = NULL;
        mcpauth_response resp;
        mcpauth_response_init(&resp, (mcpauth_sink){cgi_write, cgi_flush, NULL});
        serve_one(app, state, &req, &resp);
        fflush(stdout);
    } else {
        if (FCGX_Init() != 0) {
            fprintf(stderr, "%s: cannot initialise FastCGI\n", app->name);
            return 1;
        }
        int fd = 0;
        if (listen_addr && (fd = FCGX_OpenSocket(listen_addr, 64)) < 0) {
            fprintf(stderr, "%s: cannot listen on %s\n", app->name, listen_addr);
            app->fini(state);
            mcpauth_config_free(cfg);
            return 1;
        }
        mcpauth_log(MCPAUTH_LOG_INFO, "start", "config", file, "version", MCPAUTH_VERSION,
                    "listen", listen_addr, NULL);
        /* threads == 0: the proxy, sized by the configuration */
        int n = app->threads > 0 ? app->threads : (int)cfg->proxy_threads;
        if (n < 1)
            n = 1;
        worker_arg w = {app, state, fd};
        pthread_t *tids = calloc((size_t)n, sizeof *tids);
        int started = 0;
        for (int i = 1; tids && i < n; i++)
            if (pthread_create(&tids[started], NULL, worker, &w) == 0)
                started++;
        worker(&w); /* the main thread serves too */
        for (int i = 0; i < started; i++)
            pthread_join(tids[i], NULL);
        free(tids);
    }
    app->fini(state);
    mcpauth_config_free(cfg);
    curl_global_cleanup();
    return 0;
}
