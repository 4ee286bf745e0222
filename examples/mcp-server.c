/* mcp-server: the example MCP backend behind mcpauth (demo and tests).
 *
 * A small MCP server speaking Streamable HTTP on 127.0.0.1 (or a Unix
 * socket).  It is never meant to face the network: the proxy in front of it
 * does the OAuth work, and this server exists to show what arrives behind it
 * (the whoami tool) and to exercise streaming (countdown, GET streams).
 *
 *   mcp-server [--port N] [--port-file FILE] [--path /mcp] [--socket PATH]
 *              [--stream-events N] [--stream-interval MS] [--max-conns N]
 *              [--require-authorization VALUE | --require-authorization-file FILE]
 *   mcp-server --cgi [--path /P] [--require-authorization... as above]
 *
 * A GET stream (2025 era) sends --stream-events log notifications (default
 * 5), --stream-interval ms apart (default 1000), then closes.  With
 * --stream-events 0 it never ends by itself: it sends an event every
 * interval, or nothing at all with --stream-interval 0, until the client
 * leaves, and then logs "stream ended" (how bench/bench_streams holds
 * streams open and sees when the proxy lets one go).  --max-conns bounds
 * the connections served at once (default 512; one thread each; beyond it
 * 503); a larger value also raises the open-file limit as far as allowed.
 *
 * Both protocol eras are served: MCP-Protocol-Version: 2026-07-28 is the
 * stateless era (no sessions); anything else is the initialize/session era
 * (2025-03-26, 2025-06-18, 2025-11-25) with Mcp-Session-Id.
 *
 * --require-authorization: a request whose Authorization header is not
 * exactly VALUE (scheme included, e.g. "Bearer 7c0e...") gets 401, before
 * its body is read; the -file form reads VALUE from the file's first line,
 * so it stays out of ps.  The check consumes the header like an auth
 * middleware: the tools (whoami) never see it, so the credential is never
 * echoed to callers.  For a backend with a public URL that must accept its
 * proxy only (mcpauth-proxy's backend_authorization).
 *
 * --cgi (explicit; nothing is guessed from the environment): answer exactly
 * one request as a CGI script (RFC 3875) and exit, e.g. from a wrapper
 * `exec mcp-server --cgi ...` in a shared host's document root.  The request
 * comes from REQUEST_METHOD, PATH_INFO, CONTENT_TYPE, CONTENT_LENGTH and the
 * HTTP_* variables (HTTP_AUTHORIZATION needs CGIPassAuth On or the
 * RewriteRule [E=HTTP_AUTHORIZATION:...] line), the body from stdin (to EOF
 * when CONTENT_LENGTH is unset, as for a chunked request); the answer goes
 * to stdout with a Status: line.  The MCP endpoint is the script's own URL
 * (empty PATH_INFO) unless --path names a PATH_INFO.  Limits, since nothing
 * outlives the request: GET (the standalone stream) gets 405, which the
 * specification allows; 2025-era sessions are not stored: initialize issues
 * a random Mcp-Session-Id, and later requests need that header with any
 * well-formed id (32 hex digits), so an unknown or deleted session is not
 * noticed.  The stateless 2026-07-28 era is served fully, and a streamed
 * countdown works as in server mode.
 *
 * One detached thread per connection.  HTTP/1.1 keep-alive as real MCP
 * servers (the SDKs' Node and Python servers) do it: a connection serves
 * requests one after another until the client asks to close, an event
 * stream or an error ends it, or it idles KEEPALIVE_S; so a relay in front
 * can reuse its backend connections.  Only json-c and POSIX are used. */
#define _GNU_SOURCE

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <json-c/json.h>

#define MAX_BODY (4u << 20)       /* larger request bodies get 413 */
#define MAX_HEAD (64u << 10)      /* request line + headers; beyond that 431 */
#define MAX_HEADERS 256           /* header fields; beyond that 431 */
#define MAX_SESSIONS 4096         /* oldest session is forgotten when full */
#define MAX_BATCH 32              /* messages in one 2025-03-26 batch */
#define MAX_CONNS 512             /* default of --max-conns: connections (threads) */
#define IO_TIMEOUT_S 30           /* a stalled peer cannot pin a thread forever */
#define KEEPALIVE_S 5             /* an idle kept-alive connection is closed (Apache's default) */
#define KEEPALIVE_MAX 1000        /* requests per connection (nginx's default) */
#define STREAM_EVENTS 5           /* default of --stream-events */
#define STREAM_INTERVAL_MS 1000   /* default of --stream-interval */

#define ERA_2026 "2026-07-28"
#define LATEST_2025 "2025-11-25"

static const char *opt_path = "/mcp";
static const char *opt_socket;     /* read by the signal handler */
static long opt_stream_events = STREAM_EVENTS;   /* 0: until the client leaves */
static long opt_stream_interval = STREAM_INTERVAL_MS;
static long opt_max_conns = MAX_CONNS;
static int opt_cgi;                /* --cgi: one request from the CGI environment */
static const char *opt_require_auth; /* --require-authorization */
static atomic_int active_conns;

/* ------------------------------------------------------------------ */
/* Sessions (2025 era): a fixed ring of 32-hex-char ids under a mutex. */

static pthread_mutex_t sess_lock = PTHREAD_MUTEX_INITIALIZER;
static char sessions[MAX_SESSIONS][33];
static unsigned sess_next;

/* Fills id with 32 hex chars from /dev/urandom; -1 if that fails (never
 * fall back to a guessable id). */
static int session_new(char id[33])
{
    unsigned char raw[16];
    size_t got = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    while (got < sizeof raw) {
        ssize_t n = read(fd, raw + got, sizeof raw - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            close(fd);
            return -1;
        }
        got += (size_t)n;
    }
    close(fd);
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(id + 2 * i, 3, "%02x", raw[i]);
    pthread_mutex_lock(&sess_lock);
    memcpy(sessions[sess_next % MAX_SESSIONS], id, 33);
    sess_next++;
    pthread_mutex_unlock(&sess_lock);
    return 0;
}

/* CGI mode keeps no sessions (nothing outlives the request): an id is
 * accepted when it has the form session_new gives, 32 lower-case hex. */
static int session_wellformed(const char *id)
{
    size_t n = strspn(id, "0123456789abcdef");
    return n == 32 && id[n] == '\0';
}

/* 1 when id names a live session; with forget, also deletes it. */
static int session_find(const char *id, int forget)
{
    int found = 0;
    if (strlen(id) != 32)
        return 0;
    pthread_mutex_lock(&sess_lock);
    for (unsigned i = 0; i < MAX_SESSIONS; i++) {
        if (sessions[i][0] && memcmp(sessions[i], id, 33) == 0) {
            found = 1;
            if (forget)
                sessions[i][0] = '\0';
            break;
        }
    }
    pthread_mutex_unlock(&sess_lock);
    return found;
}

/* ------------------------------------------------------------------ */
/* Connection, buffered reading and the request head. */

typedef struct conn {
    int fd;                     /* read side: the socket, or stdin in CGI mode */
    int out;                    /* write side: the socket, or stdout in CGI mode */
    unsigned char rbuf[16384];  /* read-ahead */
    size_t rpos, rlen;
    char head[MAX_HEAD];        /* request line and headers, NUL-split in place */
    size_t head_len;
    char *method, *target, *path; /* path: target without the query */
    int http10;
    char *hname[MAX_HEADERS], *hval[MAX_HEADERS];
    int nhdr;
    char *body;                 /* always NUL-terminated when set */
    size_t body_len;
    char logm[80];              /* JSON-RPC method(s), for the log line */
    int keep;                   /* this answer may leave the connection open */
} conn;

/* Refills the read-ahead; -1 on EOF, error or timeout (the client left). */
static int conn_fill(conn *c)
{
    for (;;) {
        ssize_t n = opt_cgi ? read(c->fd, c->rbuf, sizeof c->rbuf) : recv(c->fd, c->rbuf, sizeof c->rbuf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        c->rpos = 0;
        c->rlen = (size_t)n;
        return 0;
    }
}

static int conn_getc(conn *c)
{
    if (c->rpos == c->rlen && conn_fill(c) < 0)
        return -1;
    return c->rbuf[c->rpos++];
}

/* Reads exactly n bytes into dst; -1 when the client left. */
static int conn_read(conn *c, char *dst, size_t n)
{
    while (n > 0) {
        if (c->rpos == c->rlen && conn_fill(c) < 0)
            return -1;
        size_t k = c->rlen - c->rpos;
        if (k > n)
            k = n;
        memcpy(dst, c->rbuf + c->rpos, k);
        c->rpos += k;
        dst += k;
        n -= k;
    }
    return 0;
}

/* Writes all of buf; -1 when the client is gone (EPIPE, reset, timeout).
 * MSG_NOSIGNAL as well as SIG_IGN: a vanished peer must never kill us.
 * CGI's stdout may be a pipe, where only write(2) works. */
static int send_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = opt_cgi ? write(fd, buf, len) : send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads one line of the head into c->head, NUL-terminated without CR/LF.
 * NULL with *err: -1 client left, 400 bad bytes, 431 head too large. */
static char *read_head_line(conn *c, int *err)
{
    char *start = c->head + c->head_len;
    for (;;) {
        /* Checked before every byte, the NUL below included, so the
         * terminator always lands inside head. */
        if (c->head_len >= MAX_HEAD) {
            *err = 431;
            return NULL;
        }
        int ch = conn_getc(c);
        if (ch < 0) {
            *err = -1;
            return NULL;
        }
        if (ch == '\n')
            break;
        if (ch == '\0') {         /* would silently cut a header short */
            *err = 400;
            return NULL;
        }
        c->head[c->head_len++] = (char)ch;
    }
    c->head[c->head_len++] = '\0';
    size_t len = strlen(start);
    if (len > 0 && start[len - 1] == '\r')
        start[len - 1] = '\0';
    return start;
}

static int is_tchar(int ch)
{
    return ch > 0x20 && ch < 0x7f && !strchr("\"(),/:;<=>?@[\\]{}", ch);
}

/* A method token as this server takes it: 1 to 16 upper-case letters. */
static int method_ok(const char *m)
{
    size_t len = strlen(m);
    if (len == 0 || len > 16)
        return 0;
    for (; *m; m++)
        if (*m < 'A' || *m > 'Z')
            return 0;
    return 1;
}

/* Parses the request line and header fields.  0, an HTTP status, or -1
 * when the client left without sending a request. */
static int parse_head(conn *c)
{
    int err = 0, blank = 0;
    char *line;
    /* RFC 9112 2.2: tolerate empty lines before the request line. */
    do {
        if (!(line = read_head_line(c, &err)))
            return err;
    } while (*line == '\0' && ++blank < 8);

    char *sp1 = strchr(line, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || strchr(sp2 + 1, ' '))
        return 400;
    *sp1 = *sp2 = '\0';
    c->method = line;
    c->target = sp1 + 1;
    if (!method_ok(c->method))
        return 400;
    if (strcmp(sp2 + 1, "HTTP/1.1") == 0)
        c->http10 = 0;
    else if (strcmp(sp2 + 1, "HTTP/1.0") == 0)
        c->http10 = 1;
    else
        return 400;

    /* Absolute-form (http://host/path) is legal; keep just the path. */
    char *path = c->target;
    if (strncasecmp(path, "http://", 7) == 0) {
        path = strchr(path + 7, '/');
        if (!path)
            return 400;
    }
    if (*path != '/')
        return 400;
    c->path = path;

    for (;;) {
        if (!(line = read_head_line(c, &err)))
            return err;
        if (*line == '\0')
            break;
        if (*line == ' ' || *line == '\t')   /* obsolete line folding */
            return 400;
        char *colon = strchr(line, ':');
        if (!colon || colon == line)
            return 400;
        for (const char *p = line; p < colon; p++)
            if (!is_tchar((unsigned char)*p))
                return 400;
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        char *e = v + strlen(v);
        while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
            *--e = '\0';
        if (c->nhdr == MAX_HEADERS)
            return 431;
        c->hname[c->nhdr] = line;
        c->hval[c->nhdr] = v;
        c->nhdr++;
    }
    return 0;
}

static const char *hdr(const conn *c, const char *name)
{
    for (int i = 0; i < c->nhdr; i++)
        if (strcasecmp(c->hname[i], name) == 0)
            return c->hval[i];
    return NULL;
}

static int hdr_count(const conn *c, const char *name)
{
    int n = 0;
    for (int i = 0; i < c->nhdr; i++)
        n += strcasecmp(c->hname[i], name) == 0;
    return n;
}

/* All values of a header joined with ", " (malloc'd), NULL if absent. */
static char *hdr_joined(const conn *c, const char *name)
{
    char *out = NULL;
    size_t len = 0;
    for (int i = 0; i < c->nhdr; i++) {
        if (strcasecmp(c->hname[i], name) != 0)
            continue;
        size_t vl = strlen(c->hval[i]);
        char *n = realloc(out, len + vl + 3);
        if (!n)
            break;
        out = n;
        if (len) {
            memcpy(out + len, ", ", 2);
            len += 2;
        }
        memcpy(out + len, c->hval[i], vl + 1);
        len += vl;
    }
    return out;
}

/* True when some Accept header admits text/event-stream. */
static int accepts_sse(const conn *c)
{
    for (int i = 0; i < c->nhdr; i++)
        if (strcasecmp(c->hname[i], "Accept") == 0 && strcasestr(c->hval[i], "text/event-stream"))
            return 1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Responses and the log. */

static const char *reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

/* Copies s for the log with anything unprintable replaced: requests may
 * carry arbitrary bytes and the log must stay one line per request. */
static void clean(char *dst, size_t cap, const char *s)
{
    size_t i = 0;
    if (!s)
        s = "-";
    for (; *s && i + 1 < cap; s++)
        dst[i++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
    dst[i] = '\0';
}

static void log_request(const conn *c, int status)
{
    char m[20], p[256];
    clean(m, sizeof m, c->method);
    clean(p, sizeof p, c->path && *c->path ? c->path : c->target);
    fprintf(stderr, "mcp-server: %s %s %d %s\n", m, p, status, c->logm[0] ? c->logm : "-");
}

/* Sends the status line and headers; clen < 0 means no Content-Length
 * (an event stream that ends when we close).  Logs the request.  In CGI
 * mode a Status: line instead, and the connection is the web server's. */
static int send_head(conn *c, int status, const char *ctype, long clen, const char *extra)
{
    char h[1024], cl[48] = "";
    if (clen >= 0)
        snprintf(cl, sizeof cl, "Content-Length: %ld\r\n", clen);
    if (clen < 0)
        c->keep = 0;                    /* the stream's end is the connection's */
    int n = snprintf(h, sizeof h, "%s %d %s\r\n%s%s%s%s%s%s\r\n", opt_cgi ? "Status:" : "HTTP/1.1",
                     status, reason(status), ctype ? "Content-Type: " : "", ctype ? ctype : "",
                     ctype ? "\r\n" : "", cl, extra ? extra : "",
                     c->keep || opt_cgi ? "" : "Connection: close\r\n");
    log_request(c, status);
    if (n < 0 || (size_t)n >= sizeof h)
        return -1;
    return send_all(c->out, h, (size_t)n);
}

static int send_body(conn *c, int status, const char *ctype, const char *body, const char *extra)
{
    size_t blen = body ? strlen(body) : 0;
    if (send_head(c, status, blen ? ctype : NULL, (long)blen, extra) < 0)
        return -1;
    return blen ? send_all(c->out, body, blen) : 0;
}

static int send_jsonobj(conn *c, int status, json_object *o, const char *extra)
{
    const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    return send_body(c, status, "application/json", s, extra);
}

static json_object *rpc_error(json_object *id, int code, const char *msg)
{
    json_object *o = json_object_new_object(), *e = json_object_new_object();
    json_object_object_add(o, "jsonrpc", json_object_new_string("2.0"));
    json_object_object_add(o, "id", json_object_get(id));
    json_object_object_add(e, "code", json_object_new_int(code));
    json_object_object_add(e, "message", json_object_new_string(msg));
    json_object_object_add(o, "error", e);
    return o;
}

/* Takes ownership of result. */
static json_object *rpc_result(json_object *id, json_object *result)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "jsonrpc", json_object_new_string("2.0"));
    json_object_object_add(o, "id", json_object_get(id));
    json_object_object_add(o, "result", result);
    return o;
}

/* Every refusal carries a JSON-RPC error body, so clients of either era
 * can show a reason. */
static void send_error(conn *c, int status, int code, const char *msg, json_object *id, const char *extra)
{
    json_object *o = rpc_error(id, code, msg);
    send_jsonobj(c, status, o, extra);
    json_object_put(o);
}

static void send_http_error(conn *c, int status)
{
    const char *msg = status == 413 ? "Request body larger than 4 MiB"
                    : status == 431 ? "Request header fields too large"
                    : status == 404 ? "Not Found"
                    : status == 501 ? "Transfer-Encoding not supported"
                    : "Bad Request: malformed HTTP request";
    send_error(c, status, status == 404 ? -32601 : -32600, msg, NULL, NULL);
}

/* One SSE event in one write(2): a proxy relaying the stream must see each
 * event as soon as it exists. */
static int send_event(conn *c, long id, json_object *msg)
{
    const char *data = json_object_to_json_string_ext(msg, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    size_t cap = strlen(data) + 64;
    char *ev = malloc(cap);
    if (!ev)
        return -1;
    int n = snprintf(ev, cap, "event: message\nid: %ld\ndata: %s\n\n", id, data);
    int rc = (n > 0 && (size_t)n < cap) ? send_all(c->out, ev, (size_t)n) : -1;
    free(ev);
    return rc;
}

/* Sleeps ms milliseconds but returns -1 early when the client hangs up,
 * so a dropped stream ends its thread instead of sleeping on.  In CGI mode
 * stdin is at its end once the body is read: the sign is the web server
 * closing stdout (POLLERR on a pipe, POLLHUP on mod_cgid's socket). */
static int sleep_or_hangup(conn *c, long ms)
{
    struct timespec now, end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += ms / 1000;
    end.tv_nsec += (ms % 1000) * 1000000L;
    if (end.tv_nsec >= 1000000000L) {
        end.tv_sec++;
        end.tv_nsec -= 1000000000L;
    }
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left = (long)(end.tv_sec - now.tv_sec) * 1000 + (end.tv_nsec - now.tv_nsec) / 1000000L;
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = opt_cgi ? c->out : c->fd, .events = opt_cgi ? 0 : POLLIN | POLLRDHUP};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            return 0;
        if (opt_cgi || (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)))
            return -1;
        /* Stray bytes after the request: discard them, but EOF means gone. */
        char junk[512];
        ssize_t n = recv(c->fd, junk, sizeof junk, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK))
            return -1;
    }
}

/* ------------------------------------------------------------------ */
/* Request bodies: Content-Length or chunked, at most MAX_BODY. */

static void maybe_continue(conn *c)
{
    const char *e = hdr(c, "Expect");
    if (e && !c->http10 && !opt_cgi && strcasecmp(e, "100-continue") == 0)   /* CGI: the server's job */
        send_all(c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
}

static int read_chunked(conn *c)
{
    size_t total = 0, cap = 0;
    for (;;) {
        char line[256];
        size_t n = 0;
        int ch;
        while ((ch = conn_getc(c)) != '\n') {
            if (ch < 0)
                return -1;
            if (n + 1 >= sizeof line)
                return 400;
            line[n++] = (char)ch;
        }
        line[n] = '\0';
        size_t size = 0;
        const char *p = line;
        if (!isxdigit((unsigned char)*p))
            return 400;
        for (; isxdigit((unsigned char)*p); p++) {
            size = size * 16 + (size_t)(isdigit((unsigned char)*p) ? *p - '0' : (tolower((unsigned char)*p) - 'a' + 10));
            if (size > MAX_BODY)            /* also stops overflow */
                return 413;
        }
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p && *p != ';' && strcmp(p, "\r") != 0)   /* ';' starts an extension */
            return 400;
        if (size == 0)
            break;
        if (total + size > MAX_BODY)
            return 413;
        if (total + size + 1 > cap) {
            size_t ncap = cap ? cap : 4096;
            while (ncap < total + size + 1)
                ncap *= 2;
            char *nb = realloc(c->body, ncap);
            if (!nb)
                return 500;
            c->body = nb;
            cap = ncap;
        }
        if (conn_read(c, c->body + total, size) < 0)
            return -1;
        total += size;
        ch = conn_getc(c);
        if (ch == '\r')
            ch = conn_getc(c);
        if (ch != '\n')
            return ch < 0 ? -1 : 400;
    }
    /* Trailer fields: read and ignore, but bounded like the head. */
    size_t tl = 0;
    for (int len = 0;;) {
        int ch = conn_getc(c);
        if (ch < 0)
            return -1;
        if (++tl > MAX_HEAD)
            return 431;
        if (ch == '\n') {
            if (len == 0)
                break;
            len = 0;
        } else if (ch != '\r') {
            len++;
        }
    }
    if (!c->body && !(c->body = malloc(1)))
        return 500;
    c->body[total] = '\0';
    c->body_len = total;
    return 0;
}

/* CGI without CONTENT_LENGTH (Apache's mod_cgi with a chunked request):
 * the body is stdin up to its end. */
static int read_to_eof(conn *c)
{
    size_t len = 0, cap = 0;
    while (c->rpos < c->rlen || conn_fill(c) == 0) {
        size_t k = c->rlen - c->rpos;
        if (len + k > MAX_BODY)
            return 413;
        if (len + k + 1 > cap) {
            size_t ncap = cap ? cap : 4096;
            while (ncap < len + k + 1)
                ncap *= 2;
            char *nb = realloc(c->body, ncap);
            if (!nb)
                return 500;
            c->body = nb;
            cap = ncap;
        }
        memcpy(c->body + len, c->rbuf + c->rpos, k);
        len += k;
        c->rpos = c->rlen;
    }
    if (!len)
        return 0;
    c->body[len] = '\0';
    c->body_len = len;
    return 0;
}

/* 0, an HTTP status, or -1 when the client left mid-body. */
static int read_body(conn *c)
{
    const char *te = hdr(c, "Transfer-Encoding"), *cl = hdr(c, "Content-Length");
    /* Both, or repeats, are how requests get smuggled: refuse. */
    if ((te && cl) || hdr_count(c, "Transfer-Encoding") > 1)
        return 400;
    if (te) {
        if (strcasecmp(te, "chunked") != 0)
            return 501;
        maybe_continue(c);
        return read_chunked(c);
    }
    if (!cl)
        return opt_cgi ? read_to_eof(c) : 0;
    for (int i = 0; i < c->nhdr; i++)
        if (strcasecmp(c->hname[i], "Content-Length") == 0 && strcmp(c->hval[i], cl) != 0)
            return 400;
    size_t len = 0;
    if (!*cl)
        return 400;
    for (const char *p = cl; *p; p++) {
        if (*p < '0' || *p > '9')
            return 400;
        len = len * 10 + (size_t)(*p - '0');
        if (len > MAX_BODY)
            return 413;
    }
    maybe_continue(c);
    if (!(c->body = malloc(len + 1)))
        return 500;
    if (conn_read(c, c->body, len) < 0)
        return -1;
    c->body[len] = '\0';
    c->body_len = len;
    return 0;
}

/* ------------------------------------------------------------------ */
/* MCP methods. */

static json_object *text_content(const char *text)
{
    json_object *r = json_object_new_object(), *arr = json_object_new_array(), *t = json_object_new_object();
    json_object_object_add(t, "type", json_object_new_string("text"));
    json_object_object_add(t, "text", json_object_new_string(text));
    json_object_array_add(arr, t);
    json_object_object_add(r, "content", arr);
    return r;
}

static json_object *schema(const char *json)
{
    return json_tokener_parse(json);
}

static json_object *tools_list(void)
{
    static const struct { const char *name, *desc, *schema; } tools[] = {
        {"echo", "Returns the given text.",
         "{\"type\":\"object\",\"properties\":{\"text\":{\"type\":\"string\"}},\"required\":[\"text\"]}"},
        {"whoami", "Lists the identity and credential headers this backend received.",
         "{\"type\":\"object\",\"properties\":{}}"},
        {"countdown", "Counts down n steps, delay_ms apart, with progress notifications when streamed.",
         "{\"type\":\"object\",\"properties\":{"
         "\"n\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":20,\"default\":3},"
         "\"delay_ms\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":5000,\"default\":300}}}"},
    };
    json_object *arr = json_object_new_array();
    for (size_t i = 0; i < sizeof tools / sizeof tools[0]; i++) {
        json_object *t = json_object_new_object();
        json_object_object_add(t, "name", json_object_new_string(tools[i].name));
        json_object_object_add(t, "description", json_object_new_string(tools[i].desc));
        json_object_object_add(t, "inputSchema", schema(tools[i].schema));
        json_object_array_add(arr, t);
    }
    json_object *r = json_object_new_object();
    json_object_object_add(r, "tools", arr);
    return r;
}

static int is_header_prefix(const char *name, const char *prefix)
{
    return strncasecmp(name, prefix, strlen(prefix)) == 0;
}

/* whoami: what reached the backend that identifies the caller or could
 * carry a credential.  Tests use it to prove the client's token never
 * arrives and the gate's identity headers do. */
static json_object *whoami(const conn *c)
{
    static const char *const fixed[] = {"X-MCP-Subject", "X-MCP-Client-Id", "X-MCP-Scope",
                                        "Authorization", "Cookie", "Proxy-Authorization"};
    json_object *o = json_object_new_object();
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        char *v = hdr_joined(c, fixed[i]);
        json_object_object_add(o, fixed[i], v ? json_object_new_string(v) : NULL);
        free(v);
    }
    for (int i = 0; i < c->nhdr; i++) {
        const char *name = c->hname[i];
        int seen = 0;
        if (!is_header_prefix(name, "X-MCP-"))
            continue;
        for (size_t k = 0; k < sizeof fixed / sizeof fixed[0] && !seen; k++)
            seen = strcasecmp(name, fixed[k]) == 0;
        for (int k = 0; k < i && !seen; k++)
            seen = strcasecmp(name, c->hname[k]) == 0;
        if (seen)
            continue;
        char *v = hdr_joined(c, name);
        json_object_object_add(o, name, json_object_new_string(v ? v : ""));
        free(v);
    }
    json_object *r = text_content(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
    return r;
}

/* Reads an optional integer argument, clamped to [lo, hi]; -1 if not an
 * integer. */
static int int_arg(json_object *args, const char *key, long dflt, long lo, long hi, long *out)
{
    json_object *v;
    *out = dflt;
    if (!args || !json_object_object_get_ex(args, key, &v))
        return 0;
    if (json_object_is_type(v, json_type_int)) {
        int64_t x = json_object_get_int64(v);
        *out = x < lo ? lo : x > hi ? hi : (long)x;
        return 0;
    }
    if (json_object_is_type(v, json_type_double)) {
        double d = json_object_get_double(v);
        if (d != d)
            return -1;
        if (d < (double)lo || d > (double)hi) {   /* clamp before converting: no overflow */
            *out = d < (double)lo ? lo : hi;
            return 0;
        }
        if (d != (double)(long)d)
            return -1;
        *out = (long)d;
        return 0;
    }
    return -1;
}

static json_object *countdown_done(long n)
{
    char t[64];
    snprintf(t, sizeof t, "countdown from %ld done", n);
    return text_content(t);
}

/* tools/call countdown as an event stream: n progress notifications,
 * delay_ms apart, then the result; every event is written at once. */
static void countdown_stream(conn *c, json_object *id, json_object *params, long n, long delay)
{
    json_object *meta, *tok = NULL;
    if (params && json_object_object_get_ex(params, "_meta", &meta) && json_object_is_type(meta, json_type_object))
        json_object_object_get_ex(meta, "progressToken", &tok);
    if (send_head(c, 200, "text/event-stream", -1, "Cache-Control: no-cache\r\n") < 0)
        return;
    for (long i = 1; i <= n; i++) {
        if (sleep_or_hangup(c, delay) < 0)
            return;
        json_object *note = json_object_new_object(), *p = json_object_new_object();
        json_object_object_add(note, "jsonrpc", json_object_new_string("2.0"));
        json_object_object_add(note, "method", json_object_new_string("notifications/progress"));
        json_object_object_add(p, "progressToken", tok ? json_object_get(tok) : json_object_new_string("countdown"));
        json_object_object_add(p, "progress", json_object_new_int64(i));
        json_object_object_add(p, "total", json_object_new_int64(n));
        json_object_object_add(note, "params", p);
        int rc = send_event(c, i, note);
        json_object_put(note);
        if (rc < 0)
            return;
    }
    json_object *resp = rpc_result(id, countdown_done(n));
    send_event(c, n + 1, resp);
    json_object_put(resp);
}

static json_object *initialize_result(json_object *params, int stateless)
{
    static const char *const known[] = {"2025-03-26", "2025-06-18", LATEST_2025};
    const char *ver = stateless ? ERA_2026 : LATEST_2025;
    json_object *v;
    if (!stateless && params && json_object_object_get_ex(params, "protocolVersion", &v) &&
        json_object_is_type(v, json_type_string))
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            if (strcmp(json_object_get_string(v), known[i]) == 0)
                ver = known[i];
    json_object *r = json_object_new_object(), *caps = json_object_new_object(), *info = json_object_new_object();
    json_object_object_add(r, "protocolVersion", json_object_new_string(ver));
    json_object_object_add(caps, "tools", json_object_new_object());
    json_object_object_add(r, "capabilities", caps);
    json_object_object_add(info, "name", json_object_new_string("mcpauth-example"));
    json_object_object_add(info, "version", json_object_new_string("1.0"));
    json_object_object_add(r, "serverInfo", info);
    return r;
}

/* Runs one request and returns its JSON-RPC response, or NULL when the
 * client left while we were working.  With may_stream, a countdown whose
 * client accepts text/event-stream is answered here as a stream and
 * *streamed is set. */
static json_object *run_request(conn *c, const char *method, json_object *params, json_object *id,
                                int stateless, int may_stream, int *streamed)
{
    if (strcmp(method, "initialize") == 0)
        return rpc_result(id, initialize_result(params, stateless));
    if (strcmp(method, "ping") == 0)
        return rpc_result(id, json_object_new_object());
    if (strcmp(method, "tools/list") == 0)
        return rpc_result(id, tools_list());
    if (strcmp(method, "tools/call") != 0)
        return rpc_error(id, -32601, "Method not found");

    json_object *name, *args = NULL;
    if (!params || !json_object_object_get_ex(params, "name", &name) || !json_object_is_type(name, json_type_string))
        return rpc_error(id, -32602, "Invalid params: tools/call needs a string name");
    if (json_object_object_get_ex(params, "arguments", &args) && args && !json_object_is_type(args, json_type_object))
        return rpc_error(id, -32602, "Invalid params: arguments must be an object");
    const char *tool = json_object_get_string(name);

    if (strcmp(tool, "echo") == 0) {
        json_object *text;
        if (!args || !json_object_object_get_ex(args, "text", &text) || !json_object_is_type(text, json_type_string))
            return rpc_error(id, -32602, "Invalid params: echo needs a string text");
        return rpc_result(id, text_content(json_object_get_string(text)));
    }
    if (strcmp(tool, "whoami") == 0)
        return rpc_result(id, whoami(c));
    if (strcmp(tool, "countdown") == 0) {
        long n, delay;
        if (int_arg(args, "n", 3, 0, 20, &n) < 0 || int_arg(args, "delay_ms", 300, 0, 5000, &delay) < 0)
            return rpc_error(id, -32602, "Invalid params: n and delay_ms must be integers");
        if (may_stream && accepts_sse(c)) {
            countdown_stream(c, id, params, n, delay);
            *streamed = 1;
            return NULL;
        }
        if (sleep_or_hangup(c, n * delay) < 0)
            return NULL;
        return rpc_result(id, countdown_done(n));
    }
    return rpc_error(id, -32602, "Unknown tool");
}

/* ------------------------------------------------------------------ */
/* HTTP methods on the MCP endpoint. */

enum kind { K_INVALID, K_REQUEST, K_NOTIFICATION, K_RESPONSE };

/* Classifies one JSON-RPC message; *id is the request's id (or NULL). */
static enum kind classify(json_object *m, const char **method, json_object **params, json_object **id)
{
    json_object *v, *idv = NULL;
    *method = NULL;
    *params = NULL;
    *id = NULL;
    if (!json_object_is_type(m, json_type_object))
        return K_INVALID;
    int has_id = json_object_object_get_ex(m, "id", &idv);
    if (has_id && (json_object_is_type(idv, json_type_string) || json_object_is_type(idv, json_type_int)))
        *id = idv;
    if (!json_object_object_get_ex(m, "jsonrpc", &v) || !json_object_is_type(v, json_type_string) ||
        strcmp(json_object_get_string(v), "2.0") != 0)
        return K_INVALID;
    if (json_object_object_get_ex(m, "method", &v)) {
        if (!json_object_is_type(v, json_type_string))
            return K_INVALID;
        *method = json_object_get_string(v);
        if (json_object_object_get_ex(m, "params", params) && *params &&
            !json_object_is_type(*params, json_type_object) && !json_object_is_type(*params, json_type_array))
            return K_INVALID;
        if (*params && !json_object_is_type(*params, json_type_object))
            *params = NULL;   /* none of our methods takes positional params */
        if (!has_id)
            return K_NOTIFICATION;
        return *id ? K_REQUEST : K_INVALID;
    }
    int res = json_object_object_get_ex(m, "result", &v), err = json_object_object_get_ex(m, "error", &v);
    return (res != err) ? K_RESPONSE : K_INVALID;
}

/* Strict JSON within 64 levels; NULL on any parse error. */
static json_object *parse_json(const char *s, size_t len)
{
    json_tokener *tok = json_tokener_new_ex(64);
    if (!tok)
        return NULL;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    /* len + 1 hands over the NUL too, so a bare top-level number ends. */
    json_object *o = json_tokener_parse_ex(tok, s, (int)len + 1);
    if (json_tokener_get_error(tok) != json_tokener_success || json_tokener_get_parse_end(tok) < len) {
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    return o;
}

/* 2025 era: the Mcp-Session-Id must name a live session.  0 or the status
 * already sent (400 missing, 404 unknown). */
static int check_session(conn *c, json_object *id)
{
    const char *sid = hdr(c, "Mcp-Session-Id");
    if (!sid || !*sid) {
        send_error(c, 400, -32600, "Bad Request: Mcp-Session-Id header is required", id, NULL);
        return 400;
    }
    if (opt_cgi ? !session_wellformed(sid) : !session_find(sid, 0)) {
        send_error(c, 404, -32001, "Session not found", id, NULL);
        return 404;
    }
    return 0;
}

static void set_logm(conn *c, const char *m)
{
    clean(c->logm, sizeof c->logm, m);
}

static void handle_batch(conn *c, json_object *arr, int stateless)
{
    size_t n = json_object_array_length(arr);
    snprintf(c->logm, sizeof c->logm, "batch(%zu)", n);
    if (stateless || n == 0 || n > MAX_BATCH) {
        send_error(c, 400, -32600, stateless ? "Invalid Request: batches are not supported in 2026-07-28"
                                             : "Invalid Request: empty or oversized batch", NULL, NULL);
        return;
    }
    if (check_session(c, NULL))
        return;
    json_object *out = json_object_new_array();
    for (size_t i = 0; i < n; i++) {
        const char *method;
        json_object *params, *id, *resp = NULL;
        enum kind k = classify(json_object_array_get_idx(arr, i), &method, &params, &id);
        if (k == K_INVALID)
            resp = rpc_error(id, -32600, "Invalid Request");
        else if (k == K_REQUEST && strcmp(method, "initialize") == 0)
            resp = rpc_error(id, -32600, "Invalid Request: initialize must not be batched");
        else if (k == K_REQUEST) {
            int streamed = 0;
            if (!(resp = run_request(c, method, params, id, 0, 0, &streamed))) {
                json_object_put(out);
                return;   /* client left */
            }
        }
        if (resp)
            json_object_array_add(out, resp);
    }
    if (json_object_array_length(out) == 0)
        send_body(c, 202, NULL, NULL, NULL);
    else
        send_jsonobj(c, 200, out, NULL);
    json_object_put(out);
}

static void handle_post(conn *c, int stateless)
{
    json_object *msg = c->body ? parse_json(c->body, c->body_len) : NULL;
    if (!msg) {
        send_error(c, 400, -32700, "Parse error", NULL, NULL);
        return;
    }
    if (json_object_is_type(msg, json_type_array)) {
        handle_batch(c, msg, stateless);
        json_object_put(msg);
        return;
    }
    const char *method;
    json_object *params, *id;
    enum kind k = classify(msg, &method, &params, &id);
    set_logm(c, k == K_RESPONSE ? "(response)" : method);
    if (k == K_INVALID) {
        send_error(c, 400, -32600, "Invalid Request", id, NULL);
    } else if (!stateless && k == K_REQUEST && strcmp(method, "initialize") == 0) {
        char sid[33], extra[64];
        if (session_new(sid) < 0) {
            send_error(c, 500, -32603, "Internal error: no randomness", id, NULL);
        } else {
            int streamed = 0;
            json_object *resp = run_request(c, method, params, id, 0, 0, &streamed);
            snprintf(extra, sizeof extra, "Mcp-Session-Id: %s\r\n", sid);
            send_jsonobj(c, 200, resp, extra);
            json_object_put(resp);
        }
    } else if (!stateless && check_session(c, k == K_REQUEST ? id : NULL)) {
        /* refusal already sent */
    } else if (k != K_REQUEST) {
        send_body(c, 202, NULL, NULL, NULL);   /* notifications and client responses */
    } else {
        int streamed = 0;
        json_object *resp = run_request(c, method, params, id, stateless, 1, &streamed);
        if (resp) {
            send_jsonobj(c, 200, resp, NULL);
            json_object_put(resp);
        }
    }
    json_object_put(msg);
}

/* GET (2025 era): a server-to-client stream of opt_stream_events log
 * notifications opt_stream_interval ms apart; Last-Event-ID resumes after
 * that event.  With opt_stream_events 0 the stream is held until the
 * client leaves or the session is deleted (see the header comment). */
static void handle_get(conn *c)
{
    if (check_session(c, NULL))
        return;
    if (!accepts_sse(c)) {
        send_error(c, 405, -32600, "Method Not Allowed: GET needs Accept: text/event-stream", NULL,
                   "Allow: POST, DELETE\r\n");
        return;
    }
    const char *sid = hdr(c, "Mcp-Session-Id"), *last = hdr(c, "Last-Event-ID");
    long total = opt_stream_events;
    int held = total == 0;
    long start = 1;
    if (last) {
        char *end;
        errno = 0;
        long v = strtol(last, &end, 10);
        if (!errno && end != last && !*end && v >= 0)
            start = held ? (v < LONG_MAX ? v + 1 : v) : v > total ? total + 1 : v + 1;
    }
    if (send_head(c, 200, "text/event-stream", -1, "Cache-Control: no-cache\r\n") < 0)
        return;
    const char *why = "ended";
    long sent = 0;
    for (long i = start; held || i <= total; i++) {
        if (held && opt_stream_interval == 0) {
            /* silent: wake once a minute only to see the session still exists */
            if (sleep_or_hangup(c, 60000) < 0) {
                why = "client gone";
                break;
            }
            if (!session_find(sid, 0)) {
                why = "session deleted";
                break;
            }
            continue;
        }
        if (i > start && sleep_or_hangup(c, opt_stream_interval) < 0) {
            why = "client gone";
            break;
        }
        if (!session_find(sid, 0)) {   /* deleted meanwhile: end the stream */
            why = "session deleted";
            break;
        }
        char text[64];
        if (held)
            snprintf(text, sizeof text, "tick %ld", i);
        else
            snprintf(text, sizeof text, "tick %ld of %ld", i, total);
        json_object *note = json_object_new_object(), *p = json_object_new_object();
        json_object_object_add(note, "jsonrpc", json_object_new_string("2.0"));
        json_object_object_add(note, "method", json_object_new_string("notifications/message"));
        json_object_object_add(p, "level", json_object_new_string("info"));
        json_object_object_add(p, "logger", json_object_new_string("mcpauth-example"));
        json_object_object_add(p, "data", json_object_new_string(text));
        json_object_object_add(note, "params", p);
        int rc = send_event(c, i, note);
        json_object_put(note);
        if (rc < 0) {
            why = "client gone";
            break;
        }
        sent++;
    }
    if (held)
        fprintf(stderr, "mcp-server: GET stream ended: %s after %ld events\n", why, sent);
}

static void handle_delete(conn *c)
{
    if (check_session(c, NULL))
        return;
    session_find(hdr(c, "Mcp-Session-Id"), 1);
    send_body(c, 200, NULL, NULL, NULL);
}

/* --require-authorization: 1 when the request carries exactly one
 * Authorization header equal to the value (compared in constant time), and
 * then that header is dropped, as an auth middleware would. */
static int authorized(conn *c)
{
    if (!opt_require_auth)
        return 1;
    const char *v = hdr(c, "Authorization");
    if (!v || hdr_count(c, "Authorization") != 1)
        return 0;
    size_t a = strlen(v), b = strlen(opt_require_auth);
    unsigned char d = a != b;
    for (size_t i = 0; i < b; i++)
        d |= (unsigned char)(v[i < a ? i : 0] ^ opt_require_auth[i]);
    if (d)
        return 0;
    int k = 0;
    for (int i = 0; i < c->nhdr; i++) {
        if (strcasecmp(c->hname[i], "Authorization") == 0)
            continue;
        c->hname[k] = c->hname[i];
        c->hval[k++] = c->hval[i];
    }
    c->nhdr = k;
    return 1;
}

/* One request whose method, path and headers are known (from the socket
 * or the CGI environment); its body is still to read from c->fd. */
static void serve(conn *c)
{
    c->path[strcspn(c->path, "?#")] = '\0';   /* the query plays no part in routing */
    if (strcmp(c->path, opt_path) != 0) {
        send_http_error(c, 404);
        return;
    }
    if (!authorized(c)) {
        send_error(c, 401, -32600, "Unauthorized: this backend needs its proxy's credential", NULL,
                   "WWW-Authenticate: Bearer realm=\"mcp-server\"\r\n");
        return;
    }
    const char *ver = hdr(c, "MCP-Protocol-Version");
    int stateless = ver && strcmp(ver, ERA_2026) == 0;
    int post = strcmp(c->method, "POST") == 0, del = strcmp(c->method, "DELETE") == 0;
    int get = strcmp(c->method, "GET") == 0;
    /* 2026 era: POST only.  CGI: no GET stream, since nothing outlives the
     * request (the specification lets a server answer 405). */
    if (!post && (stateless || !(del || (get && !opt_cgi)))) {
        send_error(c, 405, -32600, "Method Not Allowed", NULL,
                   stateless ? "Allow: POST\r\n" : opt_cgi ? "Allow: POST, DELETE\r\n"
                                                           : "Allow: GET, POST, DELETE\r\n");
        return;
    }
    int st = read_body(c);
    if (st < 0)
        return;
    if (st) {
        send_http_error(c, st);
        return;
    }
    /* The whole request is read, so the next one starts where it ends. */
    const char *conn_hdr = hdr(c, "Connection");
    c->keep = !opt_cgi && !c->http10 && !(conn_hdr && strcasestr(conn_hdr, "close"));
    if (post)
        handle_post(c, stateless);
    else if (get)
        handle_get(c);
    else
        handle_delete(c);
}

/* One request from the socket. */
static void handle(conn *c)
{
    int st = parse_head(c);
    if (st < 0)
        return;                         /* connected and left: nothing to answer */
    if (st)
        send_http_error(c, st);
    else
        serve(c);
}

/* Reads and drops what the client still sends (a refused 5 MiB body, say)
 * for up to 2 s, so our closing does not turn into a reset that destroys
 * the answer before the client reads it. */
static void drain_input(int fd)
{
    struct timespec t0, now;
    char junk[16384];
    size_t drained = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left = 2000 - ((long)(now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000L);
        if (left <= 0 || drained > (16u << 20))
            break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        ssize_t n = read(fd, junk, sizeof junk);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (n <= 0)
            break;
        drained += (size_t)n;
    }
}

/* After answering: half-close, drain, close. */
static void linger_close(int fd)
{
    shutdown(fd, SHUT_WR);
    drain_input(fd);
    close(fd);
}

/* ------------------------------------------------------------------ */
/* CGI mode: one request from the environment (RFC 3875). */

/* Copies len bytes of s into c->head, NUL-terminated; NULL when full. */
static char *head_put(conn *c, const char *s, size_t len)
{
    if (len >= MAX_HEAD - c->head_len)
        return NULL;
    char *d = c->head + c->head_len;
    memcpy(d, s, len);
    d[len] = '\0';
    c->head_len += len + 1;
    return d;
}

/* Adds the header field a CGI variable stands for: name is its part after
 * HTTP_ (or CONTENT_TYPE...), NAME_LIKE_THIS becoming Name-Like-This.  0 or
 * 431 when there are too many or too much. */
static int cgi_header(conn *c, const char *name, size_t len, const char *val)
{
    char *n = c->nhdr < MAX_HEADERS ? head_put(c, name, len) : NULL;
    char *v = n ? head_put(c, val, strlen(val)) : NULL;
    if (!v)
        return 431;
    for (char *p = n; *p; p++)
        *p = *p == '_' ? '-' : (char)(p == n || p[-1] == '-' ? toupper((unsigned char)*p) : tolower((unsigned char)*p));
    c->hname[c->nhdr] = n;
    c->hval[c->nhdr++] = v;
    return 0;
}

/* Method, path (PATH_INFO) and header fields from the CGI variables, as
 * parse_head gives them from a socket: 0 or an HTTP status. */
static int cgi_head(conn *c)
{
    const char *m = getenv("REQUEST_METHOD"), *pi = getenv("PATH_INFO");
    const char *script = getenv("SCRIPT_NAME"), *proto = getenv("SERVER_PROTOCOL");
    if (!(c->method = head_put(c, m, strlen(m))))
        return 431;
    if (!pi)
        pi = "";
    if (!script)
        script = "-";
    if (!(c->path = head_put(c, pi, strlen(pi))) || !(c->target = head_put(c, script, strlen(script))))
        return 431;
    if (!method_ok(c->method))
        return 400;
    c->http10 = proto && strcmp(proto, "HTTP/1.0") == 0;
    static const char *const meta[] = {"CONTENT_TYPE", "CONTENT_LENGTH"};
    for (size_t i = 0; i < sizeof meta / sizeof meta[0]; i++) {
        const char *v = getenv(meta[i]);
        if (v && *v && cgi_header(c, meta[i], strlen(meta[i]), v))
            return 431;
    }
    for (char **e = environ; *e; e++) {
        const char *eq = strchr(*e, '=');
        if (strncmp(*e, "HTTP_", 5) != 0 || !eq || eq == *e + 5)
            continue;
        /* The framing was the web server's: stdin is the body itself (Apache
         * passes HTTP_TRANSFER_ENCODING=chunked with a dechunked body). */
        if (strncmp(*e, "HTTP_TRANSFER_ENCODING=", 23) == 0 || strncmp(*e, "HTTP_CONTENT_LENGTH=", 20) == 0)
            continue;
        if (cgi_header(c, *e + 5, (size_t)(eq - *e - 5), eq + 1))
            return 431;
    }
    return 0;
}

static int cgi_main(void)
{
    if (!getenv("REQUEST_METHOD")) {
        fprintf(stderr, "mcp-server: --cgi: no REQUEST_METHOD in the environment (run by a web "
                        "server as a CGI script)\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    conn *c = calloc(1, sizeof *c);
    if (!c)
        return 1;
    c->fd = STDIN_FILENO;
    c->out = STDOUT_FILENO;
    int st = cgi_head(c);
    if (st)
        send_http_error(c, st);
    else
        serve(c);
    /* A body left unread (a 401 before it, say) must still be read: a
     * script exiting with input pending resets mod_cgid's socket, and the
     * answer is lost ("Connection reset by peer" in Apache's log). */
    drain_input(c->fd);
    free(c->body);
    free(c);
    return 0;
}

/* Before a further request on a kept-alive connection: 1 when one is
 * coming, 0 when the client closed or stayed idle KEEPALIVE_S. */
static int next_request(conn *c)
{
    if (c->rpos < c->rlen)
        return 1;                       /* pipelined: already here */
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    int r;
    while ((r = poll(&p, 1, KEEPALIVE_S * 1000)) < 0 && errno == EINTR)
        ;
    return r > 0;
}

static void *conn_main(void *arg)
{
    conn *c = arg;
    for (int served = 0;;) {
        handle(c);
        if (!c->keep || ++served >= KEEPALIVE_MAX || !next_request(c))
            break;
        free(c->body);
        c->body = NULL;
        c->body_len = c->head_len = 0;
        c->method = c->target = c->path = NULL;
        c->http10 = c->nhdr = c->keep = 0;
        c->logm[0] = '\0';
    }
    linger_close(c->fd);
    free(c->body);
    free(c);
    atomic_fetch_sub(&active_conns, 1);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Listening, command line, main. */

static void on_term(int sig)
{
    (void)sig;
    if (opt_socket)
        unlink(opt_socket);           /* async-signal-safe */
    _exit(0);
}

static void usage(FILE *f)
{
    fputs("usage: mcp-server [--port N] [--port-file FILE] [--path /mcp] [--socket PATH]\n"
          "                  [--stream-events N] [--stream-interval MS] [--max-conns N]\n"
          "                  [--require-authorization VALUE | --require-authorization-file FILE]\n"
          "       mcp-server --cgi [--path /P] [--require-authorization...]\n"
          "  --port N         TCP port on 127.0.0.1 (default 8090; 0 picks a free one)\n"
          "  --port-file FILE write the port actually bound to FILE\n"
          "  --path P         MCP endpoint path (default /mcp)\n"
          "  --socket PATH    listen on a Unix socket instead of TCP\n"
          "  --stream-events N    events per GET stream (default 5; 0: until the client leaves)\n"
          "  --stream-interval MS between them (default 1000; 0 with --stream-events 0: silent)\n"
          "  --max-conns N    connections served at once (default 512)\n"
          "  --require-authorization VALUE  401 unless Authorization is exactly VALUE\n"
          "  --require-authorization-file FILE  VALUE is the first line of FILE\n"
          "  --cgi            answer one request as a CGI script (stdin, stdout, the\n"
          "                   environment); the endpoint is the script's URL, or its\n"
          "                   PATH_INFO /P with --path; no GET stream, sessions not kept\n", f);
}

/* Writes the port to file via a temporary and rename, so a test polling
 * for the file never reads half of it. */
static int write_port_file(const char *file, unsigned port)
{
    size_t l = strlen(file) + 16;
    char *tmp = malloc(l);
    if (!tmp)
        return -1;
    snprintf(tmp, l, "%s.%ld", file, (long)getpid());
    FILE *f = fopen(tmp, "w");
    int rc = -1;
    if (f) {
        int ok = fprintf(f, "%u\n", port) > 0;
        if (fclose(f) == 0 && ok && rename(tmp, file) == 0)
            rc = 0;
    }
    if (rc)
        unlink(tmp);
    free(tmp);
    return rc;
}

/* A burst of --max-conns connections must not overflow the queue. */
static int backlog(void)
{
    return opt_max_conns > 128 ? (int)opt_max_conns : 128;
}

/* Every connection is a descriptor: make room for --max-conns of them. */
static void raise_nofile(void)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)opt_max_conns + 64;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
        return;
    rl.rlim_cur = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want ? rl.rlim_max : want;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur < want)
        fprintf(stderr, "mcp-server: open-file limit %lu is below --max-conns %ld + 64\n",
                (unsigned long)rl.rlim_cur, opt_max_conns);
}

/* A non-negative integer option within [0, max]; exits on anything else. */
static long num_opt(const char *name, const char *v, long max)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < 0 || n > max) {
        fprintf(stderr, "mcp-server: bad %s: %s\n", name, v);
        exit(2);
    }
    return n;
}

static int listen_tcp(long port, const char *port_file)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);   /* a backend: loopback only */
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, backlog()) < 0) {
        fprintf(stderr, "mcp-server: 127.0.0.1:%ld: %s\n", port, strerror(errno));
        return -1;
    }
    socklen_t al = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &al) < 0)
        return -1;
    unsigned bound = ntohs(a.sin_port);
    if (port_file && write_port_file(port_file, bound) < 0) {
        fprintf(stderr, "mcp-server: %s: %s\n", port_file, strerror(errno));
        return -1;
    }
    fprintf(stderr, "mcp-server: listening on http://127.0.0.1:%u%s\n", bound, opt_path);
    return fd;
}

static int listen_unix(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    struct stat st;
    if (strlen(path) >= sizeof a.sun_path) {
        fprintf(stderr, "mcp-server: socket path too long: %s\n", path);
        return -1;
    }
    strcpy(a.sun_path, path);
    /* A stale socket from an earlier run would make bind fail; remove only
     * sockets, never a regular file given by mistake. */
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, backlog()) < 0) {
        fprintf(stderr, "mcp-server: %s: %s\n", path, strerror(errno));
        return -1;
    }
    fprintf(stderr, "mcp-server: listening on unix:%s (path %s)\n", path, opt_path);
    return fd;
}

/* The first line of file, without its line end; exits when there is none. */
static char *first_line(const char *file)
{
    char buf[1024];
    FILE *f = fopen(file, "r");
    if (!f || !fgets(buf, sizeof buf, f)) {
        fprintf(stderr, "mcp-server: %s: %s\n", file, f ? "empty" : strerror(errno));
        exit(2);
    }
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
    char *s = strdup(buf);
    if (!s)
        exit(1);
    return s;
}

/* --opt VALUE or --opt=VALUE */
static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
    size_t l = strlen(name);
    if (strncmp(argv[*i], name, l) != 0)
        return NULL;
    if (argv[*i][l] == '=')
        return argv[*i] + l + 1;
    if (argv[*i][l] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        fprintf(stderr, "mcp-server: %s needs a value\n", name);
        exit(2);
    }
    return argv[++*i];
}

int main(int argc, char **argv)
{
    long port = 8090;
    const char *port_file = NULL, *v;
    int path_given = 0;
    for (int i = 1; i < argc; i++) {
        if ((v = opt_value(argc, argv, &i, "--port"))) {
            char *end;
            errno = 0;
            port = strtol(v, &end, 10);
            if (errno || end == v || *end || port < 0 || port > 65535) {
                fprintf(stderr, "mcp-server: bad port: %s\n", v);
                return 2;
            }
        } else if ((v = opt_value(argc, argv, &i, "--port-file"))) {
            port_file = v;
        } else if ((v = opt_value(argc, argv, &i, "--path"))) {
            if (v[0] != '/' || strpbrk(v, "?# \t\r\n")) {
                fprintf(stderr, "mcp-server: --path must start with / : %s\n", v);
                return 2;
            }
            opt_path = v;
            path_given = 1;
        } else if ((v = opt_value(argc, argv, &i, "--socket"))) {
            opt_socket = v;
        } else if ((v = opt_value(argc, argv, &i, "--stream-events"))) {
            opt_stream_events = num_opt("--stream-events", v, 1000000);
        } else if ((v = opt_value(argc, argv, &i, "--stream-interval"))) {
            opt_stream_interval = num_opt("--stream-interval", v, 3600000);
        } else if ((v = opt_value(argc, argv, &i, "--max-conns"))) {
            opt_max_conns = num_opt("--max-conns", v, 100000);
            if (opt_max_conns < 1) {
                fprintf(stderr, "mcp-server: --max-conns must be at least 1\n");
                return 2;
            }
        } else if ((v = opt_value(argc, argv, &i, "--require-authorization-file"))) {
            opt_require_auth = first_line(v);
        } else if ((v = opt_value(argc, argv, &i, "--require-authorization"))) {
            opt_require_auth = v;
        } else if (strcmp(argv[i], "--cgi") == 0) {
            opt_cgi = 1;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "mcp-server: unknown argument: %s\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }

    if (opt_require_auth && (!*opt_require_auth || strpbrk(opt_require_auth, "\r\n"))) {
        fprintf(stderr, "mcp-server: --require-authorization: empty or several lines\n");
        return 2;
    }
    if (opt_cgi) {
        if (!path_given)
            opt_path = "";              /* the script's own URL */
        return cgi_main();
    }

    /* A client that disconnects mid-stream must only end its thread. */
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_term};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    if (opt_max_conns > MAX_CONNS)
        raise_nofile();
    int lfd = opt_socket ? listen_unix(opt_socket) : listen_tcp(port, port_file);
    if (lfd < 0)
        return 1;

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 512 * 1024);   /* buffers live on the heap */

    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS)
                usleep(100 * 1000);   /* out of resources: back off, keep serving */
            continue;
        }
        struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        /* The head and the body are two writes: without this, on a kept
         * connection the body waits for the delayed ACK (40 ms). */
        int one = 1;
        if (!opt_socket)
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (atomic_fetch_add(&active_conns, 1) >= opt_max_conns) {
            static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            send_all(fd, busy, sizeof busy - 1);
            close(fd);
            atomic_fetch_sub(&active_conns, 1);
            continue;
        }
        conn *c = calloc(1, sizeof *c);
        pthread_t t;
        if (c) {
            c->fd = c->out = fd;
            if (pthread_create(&t, &attr, conn_main, c) == 0)
                continue;
            free(c);
        }
        close(fd);
        atomic_fetch_sub(&active_conns, 1);
    }
}
