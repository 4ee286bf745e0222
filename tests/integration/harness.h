/* Integration harness: real lighttpd and real Apache on free loopback ports,
 * configured from the snippets shipped in lighttpd/ and apache/, and a real
 * HTTP client (libcurl).  Every server is started in its own process group
 * and stopped by its PID. */
#ifndef MCPAUTH_TEST_HARNESS_H
#define MCPAUTH_TEST_HARNESS_H

#include <stddef.h>
#include <sys/types.h>

typedef enum { TH_LIGHTTPD, TH_APACHE } th_kind;

typedef struct th_server {
    th_kind kind;
    pid_t pid;
    int port;
    int aux_port;   /* a second free port for a helper process (@AUXPORT@) */
    char dir[256];  /* scratch directory: configs, logs, sockets */
    char base[64];  /* "http://127.0.0.1:PORT" */
} th_server;

/* Name for messages: "lighttpd" or "apache". */
const char *th_kind_name(th_kind kind);

/* A free TCP port on 127.0.0.1. */
int th_free_port(void);

/* Starts a server whose mcpauth.conf is conf_template with every "@PORT@"
 * replaced by the chosen port and "@DIR@" by the scratch directory.  Waits
 * until the port answers.  Returns 0, or -1 after printing why (with the
 * server's error log) on stderr. */
int th_start(th_server *s, th_kind kind, const char *conf_template);
/* More control: extra web-server configuration appended after the shipped
 * snippet, and files written into the scratch directory before start-up
 * (name, content, ..., NULL).  In every text "@PORT@", "@AUXPORT@",
 * "@DIR@", "@SRCDIR@", "@BUILDDIR@" and "@MODDIR@" (Apache's module
 * directory) are replaced. */

typedef struct th_options {
    const char *conf_template;
    const char *server_extra;
    const char *const *files;
    /* run after the files are written and before the server starts (e.g.
     * `mcpauth init`); non-zero aborts the start */
    int (*prepare)(struct th_server *s);
} th_options;
int th_start_ex(th_server *s, th_kind kind, const th_options *o);

/* Starts a helper program in its own process group with stdout/stderr to
 * logfile; returns its PID or -1.  th_kill stops it (SIGTERM, then SIGKILL)
 * and reaps it. */
pid_t th_spawn(char *const argv[], const char *const env_extra[], const char *logfile);
void th_kill(pid_t pid);
/* Waits up to ms for a process started by th_spawn to exit and reaps it:
 * 0 with its wait status in *status, or -1 (still running: stop it with
 * th_kill). */
int th_wait_exit(pid_t pid, int ms, int *status);
/* 0 once 127.0.0.1:port accepts connections, -1 after ms milliseconds. */
int th_wait_port(int port, int ms);
/* Starts mcpauth-gate standalone (as the shipped systemd unit runs it)
 * with the server's mcpauth.conf, listening on 127.0.0.1:aux_port (where
 * mod_authnz_fcgi reaches it) and logging to gate.log in the scratch
 * directory; waits until it listens.  Returns its PID (stop with th_kill),
 * or -1 after saying why on stderr (nothing left running). */
pid_t th_start_gate(const th_server *s);
/* Starts the example MCP server (examples/mcp-server) on a free port with
 * its log in dir; returns its PID (stop with th_kill) and the port in
 * *port, or -1 after saying why on stderr. */
pid_t th_start_example_server(const char *dir, int *port);

/* Text with the placeholders above replaced for this server; caller frees. */
char *th_expand(const th_server *s, const char *text);

/* SIGTERM, wait up to 10 s, then SIGKILL; reaps the process group; removes
 * the scratch directory unless MCPAUTH_KEEP_TEST_DIRS is set. */
void th_stop(th_server *s);

/* Sends sig to the server's main process only (not its process group) and
 * waits up to ms for it to exit.  0 when it did: s->pid is then -1 and
 * whatever it left behind still runs, for the test to find (th_programs)
 * and kill (th_kill_programs); -1 when it is still running. */
int th_signal_wait(th_server *s, int sig, int ms);

/* Live (not zombie) mcpauth-* processes that belong to the scratch
 * directory dir: their command line names it, or their MCPAUTH_CONFIG is
 * in it (found by walking /proc).  name (e.g. "mcpauth-proxy") or NULL for
 * all.  Fills up to max PIDs; returns how many there are. */
int th_programs(const char *dir, const char *name, pid_t *pids, int max);
/* Waits up to ms for th_programs(dir, NULL, ...) to find none; returns how
 * many are left, and describes them in desc (may be NULL). */
int th_programs_wait_gone(const char *dir, int ms, char *desc, size_t desclen);
/* SIGKILLs them all; returns how many there were. */
int th_kill_programs(const char *dir);

/* As root, Apache runs its children as www-data: gives them the scratch
 * directory (the runtime_dir of the programs they start) by chown.  0 when
 * done or not needed (lighttpd, not root); -1 after saying why on stderr. */
int th_give_to_apache(const th_server *s);

/* The server's error log (caller frees), "" when empty. */
char *th_error_log(const th_server *s);
/* Occurrences of needle (not "") in what the server and its programs
 * said: its error log and their stderr (server.out).  0 when neither file
 * exists yet. */
int th_log_count(const th_server *s, const char *needle);
/* Waits up to ms (polling every 100 ms) for th_log_count(s, needle) to
 * reach at_least: a log line may follow the answer it is about.  Returns
 * the last count, for the caller to judge. */
int th_wait_log(const th_server *s, const char *needle, int at_least, int ms);
/* The whole file (caller frees): "" when it does not exist, never NULL. */
char *th_read_file(const char *path);
/* Seconds on the monotonic clock (for durations, never dates). */
double th_now(void);

typedef struct th_resp {
    long status;
    char headers[32768]; /* raw response header block */
    char *body;          /* NUL-terminated */
    size_t bodylen;
    double t_first_body; /* seconds from the start to the first body bytes (-1: none) */
    double t_total;      /* seconds for the whole exchange */
    size_t abort_after;  /* set before th_http_ex: hang up after this many body bytes */
} th_resp;

/* CA bundle for https requests (NULL: system default); tests set it. */
extern const char *th_ca_file;
/* Highest TLS version to offer (0: any); e.g. CURL_SSLVERSION_MAX_TLSv1_1. */
extern long th_tls_max;

/* th_http with r->abort_after honoured (r is not cleared). */
int th_http_ex(const char *method, const char *url, const char *const *headers, const char *body,
               th_resp *r);

/* One request.  headers: NULL-terminated "Name: value" strings, or NULL.
 * Returns 0 when an HTTP response arrived (whatever its status). */
int th_http(const char *method, const char *url, const char *const *headers, const char *body,
            th_resp *r);
/* The value of the first header called name (case-insensitive), copied into
 * buf; NULL when absent. */
const char *th_header(const th_resp *r, const char *name, char *buf, size_t buflen);
/* th_header into one buffer of the harness (4096 bytes): the value stays
 * valid until the next th_hdr call only (copy it to keep it); not for
 * threads.  NULL when absent. */
const char *th_hdr(const th_resp *r, const char *name);
void th_resp_free(th_resp *r);

/* One request whose target is sent byte for byte (libcurl would normalise
 * dot segments): "METHOD TARGET HTTP/1.1", Host, the extra header lines
 * ("Name: value\r\n" each, may be NULL), Connection: close, then body (may
 * be NULL).  The whole response goes into out (NUL-terminated).  Returns
 * the status, or -1 when no HTTP response came within 10 s. */
long th_raw_request(int port, const char *method, const char *target, const char *headers,
                    const char *body, char *out, size_t outlen);

/* Runs argv, captures stderr (caller frees *err); returns the exit status. */
int th_run(char *const argv[], const char *const envp_extra[], char **err);

/* Absolute paths of the source and build trees (from the environment that
 * `make check` sets, else "."). */
const char *th_srcdir(void);
const char *th_builddir(void);

/* Writes text to dir/name. */
int th_write_file(const char *dir, const char *name, const char *text);

/* Tokens for a running server, where the program links
 * tests/support/tokens.c (tokens.h included before this header); static
 * inline so that the harness itself needs no token code.
 *
 * th_claims: tk_claims() for the resource at s->base + path, issued by iss
 * (NULL: the server's origin), sub instead of "alice" when not NULL;
 * caller frees.  th_token: those claims (issuer the origin, 600 s) signed
 * with k; caller frees. */
#ifdef MCPAUTH_TEST_TOKENS_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static inline char *th_claims(const th_server *s, const char *iss, const char *path,
                              const char *scope, const char *sub, long lifetime)
{
    char aud[512];
    snprintf(aud, sizeof aud, "%s%s", s->base, path);
    char *c = tk_claims(iss ? iss : s->base, aud, scope, lifetime);
    const char *p = c && sub ? strstr(c, "\"sub\":\"alice\"") : NULL;
    if (p) {
        p += strlen("\"sub\":\"");
        size_t n = strlen(c) - strlen("alice") + strlen(sub) + 1;
        char *c2 = malloc(n);
        if (c2)
            snprintf(c2, n, "%.*s%s%s", (int)(p - c), c, sub, p + strlen("alice"));
        free(c);
        c = c2;
    }
    return c;
}
static inline char *th_token(const th_server *s, const tk_key *k, const char *path,
                             const char *scope, const char *sub)
{
    char *c = th_claims(s, NULL, path, scope, sub, 600);
    char *t = c ? tk_mint(k, c, NULL) : NULL;
    free(c);
    return t;
}
#endif

#endif
