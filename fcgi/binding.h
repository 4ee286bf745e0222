/* The FastCGI binding shared by every program in fcgi/: command line,
 * configuration, the accept loop over libfcgi's re-entrant API, and the
 * translation of FCGX requests into mcpauth_request/mcpauth_response. */
#ifndef MCPAUTH_BINDING_H
#define MCPAUTH_BINDING_H

#include <mcpauth/config.h>
#include <mcpauth/http.h>

typedef struct mcpauth_app {
    const char *name;    /* program name for logs and --help */
    const char *summary; /* one line for --help */
    /* Builds the immutable per-process state from the configuration; NULL
     * with a reason in err stops the program before it serves anything.
     * check_only (--check): validate, but create no files. */
    void *(*init)(const mcpauth_config *cfg, int check_only, char *err, size_t errlen);
    /* Answers one request; called from several threads at once when
     * threads > 1, so state must be read-only or internally locked. */
    void (*handle)(void *state, const mcpauth_request *req, mcpauth_response *resp);
    void (*fini)(void *state);
    /* Worker threads kept waiting for connections (0: proxy_threads) and
     * the most the pool grows to while requests are held (0:
     * proxy_max_threads).  Under mod_fcgid both are 1. */
    int threads;
    int max_threads;
} mcpauth_app;

/* Parses --config FILE (else $MCPAUTH_CONFIG, else the default), --check
 * (load, report, exit), --version and --help; loads the configuration, runs
 * init, then serves until told to stop.  Returns the exit code.
 *
 * The main thread serves nothing: `threads` workers do, and it waits for
 * SIGTERM, SIGINT, SIGQUIT or SIGUSR1 (blocked in every thread, whatever
 * the web server left ignored or blocked), for the web server that spawned
 * the program to go away (not with --listen), or for the listener to fail.
 * Then it stops accepting, lets requests in flight finish, makes the
 * request's alive callback report 0 so that streams end as if the client
 * had left, and returns 0 once every worker is done; 10 seconds after the
 * signal it exits whatever is left.  SIGHUP is logged and ignored: the
 * configuration is read once.
 *
 * Outside FastCGI (stdin not a socket) it answers one CGI request, which is
 * handy for trying a program from a shell; signals keep their defaults. */
int mcpauth_fcgi_main(const mcpauth_app *app, int argc, char **argv);

#endif
