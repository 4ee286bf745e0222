/* The request and response seen by the library.  The web-server binding
 * (FastCGI, see fcgi.h; or a test) fills a request and provides a sink; the
 * core never knows which server it runs under.  A response writes its status
 * and headers into a fixed buffer, so answering costs no allocation. */
#ifndef MCPAUTH_HTTP_H
#define MCPAUTH_HTTP_H

#include <stddef.h>
#include <sys/types.h>

#include <mcpauth/config.h>

typedef struct mcpauth_request {
    const char *method;      /* REQUEST_METHOD, never NULL ("" if absent) */
    /* Request path without query, percent-decoded: the path the web server
     * routes on.  Never holds dot segments, "//", '\\', ';', controls or
     * non-ASCII: mcpauth_request_init refuses requests with those. */
    const char *path;
    const char *query;       /* after '?', "" if none */
    const char *remote_addr; /* "" if unknown */
    /* CGI/FastCGI parameter lookup, e.g. "HTTP_AUTHORIZATION". */
    const char *(*param)(void *ctx, const char *name);
    /* Reads up to len body bytes; 0 at the end, -1 on error. */
    ssize_t (*read)(void *ctx, char *buf, size_t len);
    /* 1 while the client is there; 0 once it has gone away (only
     * meaningful after the body has been read to its end); -1 when the
     * program is stopping and the exchange must end now.  NULL means
     * "cannot tell" (always 1). */
    int (*alive)(void *ctx);
    void *ctx;
    /* Requests this process could still take at once besides this one,
     * counted by the binding (threads it may yet start); -1 when it cannot
     * tell or concurrency is across processes.  The proxy keeps the last
     * proxy_reserve_threads for callers with nothing in flight. */
    int spare_workers;
    const char *path_error;  /* why the path was refused (static), or NULL */
    char pathbuf[2048];      /* storage for path, owned by the request */
} mcpauth_request;

/* Fills method/path/query/remote_addr from the param callback and sets alive
 * to NULL and spare_workers to -1 (a binding that can tell sets them
 * afterwards).  Returns 0; -1 when
 * REQUEST_URI is longer than the request can hold (answer 414); -2 when its
 * path is one two parsers could read differently (dot segments, encoded
 * dots, slashes, backslashes or '%', "//", ';', '\\', controls, malformed
 * escapes): path_error says which, and the request must be refused. */
int mcpauth_request_init(mcpauth_request *req, const char *(*param)(void *, const char *),
                         ssize_t (*read)(void *, char *, size_t), void *ctx);
/* The whole request body, NUL-terminated, in a buffer sized to it
 * (CONTENT_LENGTH, else grown by doubling) and never larger than max, so a
 * small request costs a small allocation.  Caller frees.  NULL with *len
 * -2 when the body is larger than max (the rest is drained), -1 on a read
 * error or when out of memory. */
char *mcpauth_request_body(const mcpauth_request *req, size_t max, ssize_t *len);
/* Reads and discards the body to its end; -1 on a read error. */
int mcpauth_request_drain(const mcpauth_request *req);

/* The resource a request is for: the one named by MCPAUTH_RESOURCE (a
 * FastCGI parameter, else the program's environment), else the one whose
 * path prefixes the request path (mcpauth_config_resource_for_path). */
const mcpauth_resource *mcpauth_request_resource(const mcpauth_config *cfg,
                                                 const mcpauth_request *req);

/* 1 while the client is still connected (or when it cannot be told), 0
 * once it has gone, -1 when the program is stopping (see alive above). */
int mcpauth_request_alive(const mcpauth_request *req);

/* A CGI parameter; NULL when absent. */
const char *mcpauth_request_param(const mcpauth_request *req, const char *name);

/* Where response bytes go.  write returns 0 or -1; flush may be NULL. */
typedef struct mcpauth_sink {
    int (*write)(void *ctx, const char *buf, size_t len);
    int (*flush)(void *ctx);
    void *ctx;
} mcpauth_sink;

#define MCPAUTH_RESPONSE_HEAD_MAX 8192

typedef struct mcpauth_response {
    mcpauth_sink sink;
    int status;
    int head_sent;
    int failed;         /* a header did not fit or was unsafe */
    size_t headlen;
    char head[MCPAUTH_RESPONSE_HEAD_MAX];
} mcpauth_response;

void mcpauth_response_init(mcpauth_response *resp, mcpauth_sink sink);
void mcpauth_response_set_status(mcpauth_response *resp, int status);
/* Adds a header.  Names must be tokens and values free of CR, LF and NUL;
 * anything else is dropped, logged, and the response turns into a 500. */
void mcpauth_response_header(mcpauth_response *resp, const char *name, const char *value);
/* Sends status, headers and the whole body (len may be 0, body NULL). */
int mcpauth_response_send(mcpauth_response *resp, const char *body, size_t len);
/* Sends status and headers now, for streaming with _write/_flush. */
int mcpauth_response_start(mcpauth_response *resp);
int mcpauth_response_write(mcpauth_response *resp, const char *buf, size_t len);
int mcpauth_response_flush(mcpauth_response *resp);

/* Content-Type: application/json plus body. */
int mcpauth_response_json(mcpauth_response *resp, int status, const char *json);
/* {"error":..., "error_description":...} (RFC 6749 §5.2 shape), with
 * Cache-Control: no-store.  description may be NULL. */
int mcpauth_response_error(mcpauth_response *resp, int status, const char *error,
                           const char *description);

/* Answers a request that mcpauth_request_init refused (init_rc -1: 414,
 * -2: 400 logged as a security event).  Returns what the writer returned. */
int mcpauth_request_refuse(const mcpauth_request *req, int init_rc, mcpauth_response *resp);

/* "OK", "Not Found", ... for a status code. */
const char *mcpauth_http_reason(int status);

#endif
