/* A small HTTP/1.1 test server on 127.0.0.1: one thread, one request per
 * connection, one connection at a time.  It answers from a table of canned
 * responses (by exact request target) or through a handler, and can behave
 * badly on purpose: hang, stall after a short body, announce a wrong
 * Content-Length, send oversized bodies or headers, chunk, or send raw
 * bytes (interim responses, trailers, HTTP/0.9).  It counts requests and
 * keeps a copy of the last one.  No Check, no libmcpauth: the stand-in AS
 * (tests/stub/stub_as.c) is a main() over it. */
#ifndef MCPAUTH_TEST_HTTPD_H
#define MCPAUTH_TEST_HTTPD_H

#include <pthread.h>
#include <stddef.h>

#define HTTPD_MAX_ROUTES 48
#define HTTPD_MAX_BODY 32768 /* a canned body; larger ones: .fill or a handler */
#define HTTPD_HOLD_MS 3000   /* the longest a hanging answer keeps a connection */

/* One canned answer (for httpd_route, or sent by a handler). */
typedef struct {
    const char *status;    /* NULL: "200 OK" */
    const char *headers;   /* extra header lines, each ending in CRLF; NULL: none */
    const void *body;      /* copied by httpd_route */
    size_t len;            /* bytes of body; 0: strlen(body) */
    size_t fill;           /* instead of body: this many 'x' bytes, of any size */
    size_t content_length; /* nonzero: announced instead of the real length */
    size_t chunk;          /* nonzero: chunked in pieces this long, no Content-Length */
    int filler_headers;    /* this many X-Filler-N lines of 80 bytes first (huge headers) */
    int raw;               /* body is the whole answer, sent as is (no status line, no framing) */
    int hang;              /* answer nothing: hold the connection until the client hangs up */
    int stall;             /* after the answer, hold the connection instead of closing it */
} httpd_resp;

/* A request as the handler sees it; headers are the lines after the request
 * line, each ending in CRLF; body is NUL-terminated too. */
typedef struct {
    char method[16];
    char target[512];
    const char *headers;
    const char *body;
    size_t body_len;
} httpd_req;

typedef struct httpd httpd;

/* Answers a request no route matched (on fd, with httpd_send_resp and
 * friends).  Runs on the server thread, without h->mu held. */
typedef void (*httpd_handler)(httpd *h, int fd, const httpd_req *req, void *arg);

typedef struct {
    int port;              /* 0: any free port */
    int delay_ms;          /* every answer is this late (a slow server) */
    httpd_handler handler; /* NULL: 404 for targets without a route */
    void *arg;
} httpd_opts;

typedef struct {
    char path[256];
    char status[32];
    char headers[1024];
    httpd_resp r; /* r.body points at body, r.status and r.headers at the above */
    char body[HTTPD_MAX_BODY];
} httpd_route_slot;

struct httpd {
    int port;
    pthread_mutex_t mu; /* guards what follows, up to the private part */
    int nreq;           /* complete requests read (noise and TLS hellos are not) */
    /* the last request */
    char method[16];
    char target[512];
    char headers[16384];
    char accept[256]; /* its Accept value, "" when absent */
    char body[8192];
    size_t body_len;
    /* private */
    int nroutes;
    httpd_route_slot routes[HTTPD_MAX_ROUTES];
    httpd_opts opts;
    int lfd, stop[2];
    pthread_t thr;
    httpd_route_slot cur; /* the server thread's copy of the matched route */
    char req[65536];      /* the server thread's request buffer */
};

/* Binds 127.0.0.1 (opts may be NULL) and starts serving; 0, or -1 with
 * errno.  h is the caller's (usually static): its fields start zeroed. */
int httpd_start(httpd *h, const httpd_opts *opts);
/* Stops and joins the server thread; a hanging answer is cut short. */
void httpd_stop(httpd *h);

/* Serves r at target path (replacing a route with that path): 0, or -1
 * when the table is full or a part is too long. */
int httpd_route(httpd *h, const char *path, const httpd_resp *r);
int httpd_nreq(httpd *h);
/* http://127.0.0.1:PORT<path> in one of four rotating static buffers. */
const char *httpd_url(const httpd *h, const char *path);

/* For handlers. */
void httpd_send(int fd, const void *buf, size_t len);
void httpd_send_resp(httpd *h, int fd, const httpd_resp *r);
void httpd_respond(int fd, const char *status, const char *headers, const void *body, size_t len);
/* Waits until fd is readable (the client spoke or hung up), the server
 * stops, or ms pass; 1 when readable. */
int httpd_wait(httpd *h, int fd, int ms);

/* The value of header name in a header block (lines ending in CRLF), in
 * out ("" when absent); 1 when present. */
int httpd_header(const char *headers, const char *name, char *out, size_t outlen);
/* The same for the last request, under h->mu. */
int httpd_last_header(httpd *h, const char *name, char *out, size_t outlen);

/* A loopback port nothing listens on (bound, then closed): connecting is
 * refused, unless someone takes it meanwhile.  -1 on error. */
int httpd_free_port(void);
/* Milliseconds on the monotonic clock, to time a client against the server. */
double httpd_now_ms(void);
/* Clears the proxy variables, so a test does not depend on the runner's. */
void httpd_no_proxy_env(void);

#endif
