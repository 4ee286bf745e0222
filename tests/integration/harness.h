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

/* The server's error log (caller frees), "" when empty. */
char *th_error_log(const th_server *s);

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

#endif
