/* The loopback HTTP/1.1 test server (see httpd.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "httpd.h"

void httpd_send(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            return; /* the client gave up: fine for a test server */
        p += n;
        len -= (size_t)n;
    }
}

int httpd_wait(httpd *h, int fd, int ms)
{
    struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = h->stop[0], .events = POLLIN}};
    if (poll(p, 2, ms) <= 0 || (p[1].revents & POLLIN))
        return 0;
    return 1;
}

/* Sleeps ms unless the server is stopped first (then 1). */
static int stopped_within(httpd *h, int ms)
{
    struct pollfd p = {.fd = h->stop[0], .events = POLLIN};
    return poll(&p, 1, ms) > 0;
}

/* Collects an answer into as few sends as its size allows. */
typedef struct {
    int fd;
    size_t n;
    char buf[8192];
} outbuf;

static void out_flush(outbuf *o)
{
    httpd_send(o->fd, o->buf, o->n);
    o->n = 0;
}

static void out_put(outbuf *o, const void *p, size_t len)
{
    if (o->n + len > sizeof o->buf)
        out_flush(o);
    if (len > sizeof o->buf) {
        httpd_send(o->fd, p, len);
        return;
    }
    memcpy(o->buf + o->n, p, len);
    o->n += len;
}

static void out_str(outbuf *o, const char *s)
{
    out_put(o, s, strlen(s));
}

/* Bytes off..off+n of r's body (stored or filled). */
static void out_body(outbuf *o, const httpd_resp *r, size_t off, size_t n)
{
    if (!r->fill) {
        out_put(o, (const char *)r->body + off, n);
        return;
    }
    char xs[4096];
    memset(xs, 'x', sizeof xs);
    for (size_t k; n > 0; n -= k) {
        k = n < sizeof xs ? n : sizeof xs;
        out_put(o, xs, k);
    }
}

/* The status line, filler lines, r's header lines, and the framing. */
static void out_head(outbuf *o, const httpd_resp *r, size_t len)
{
    char line[128];
    out_str(o, "HTTP/1.1 ");
    out_str(o, r->status ? r->status : "200 OK");
    out_str(o, "\r\n");
    for (int k = 0; k < r->filler_headers; k++) {
        snprintf(line, sizeof line, "X-Filler-%d: %080d\r\n", k, 0);
        out_str(o, line);
    }
    out_str(o, r->headers ? r->headers : "");
    if (r->chunk)
        snprintf(line, sizeof line, "Transfer-Encoding: chunked\r\n");
    else
        snprintf(line, sizeof line, "Content-Length: %zu\r\n", r->content_length ? r->content_length : len);
    out_str(o, line);
    out_str(o, "Connection: close\r\n\r\n");
}

void httpd_send_resp(httpd *h, int fd, const httpd_resp *r)
{
    if (r->hang) {
        httpd_wait(h, fd, HTTPD_HOLD_MS);
        return;
    }
    outbuf o = {.fd = fd};
    size_t len = r->fill ? r->fill : r->len ? r->len : r->body ? strlen(r->body) : 0;
    if (!r->raw)
        out_head(&o, r, len);
    if (r->chunk && !r->raw) {
        char size[32];
        for (size_t off = 0, k; off < len; off += k) {
            k = len - off < r->chunk ? len - off : r->chunk;
            snprintf(size, sizeof size, "%zx\r\n", k);
            out_str(&o, size);
            out_body(&o, r, off, k);
            out_str(&o, "\r\n");
        }
        out_str(&o, "0\r\n\r\n");
    } else {
        out_body(&o, r, 0, len);
    }
    out_flush(&o);
    if (r->stall)
        httpd_wait(h, fd, HTTPD_HOLD_MS);
}

void httpd_respond(int fd, const char *status, const char *headers, const void *body, size_t len)
{
    outbuf o = {.fd = fd};
    out_head(&o, &(httpd_resp){.status = status, .headers = headers}, len);
    out_put(&o, body, len);
    out_flush(&o);
}

int httpd_header(const char *headers, const char *name, char *out, size_t outlen)
{
    size_t nlen = strlen(name);
    out[0] = '\0';
    for (const char *l = headers; l && *l;) {
        if (strncasecmp(l, name, nlen) == 0 && l[nlen] == ':') {
            const char *v = l + nlen + 1;
            while (*v == ' ')
                v++;
            snprintf(out, outlen, "%.*s", (int)strcspn(v, "\r"), v);
            return 1;
        }
        l = strstr(l, "\r\n");
        if (l)
            l += 2;
    }
    return 0;
}

int httpd_last_header(httpd *h, const char *name, char *out, size_t outlen)
{
    pthread_mutex_lock(&h->mu);
    int found = httpd_header(h->headers, name, out, outlen);
    pthread_mutex_unlock(&h->mu);
    return found;
}

/* Appends what the client sends next to h->req (NUL-terminated); -1 when
 * it is silent for 2 s, hangs up, or the server stops. */
static int recv_more(httpd *h, int fd, size_t *got)
{
    if (!httpd_wait(h, fd, 2000))
        return -1;
    ssize_t n = recv(fd, h->req + *got, sizeof h->req - 1 - *got, 0);
    if (n <= 0)
        return -1;
    *got += (size_t)n;
    h->req[*got] = '\0';
    return 0;
}

/* Reads one request into h->req; 0 when complete. */
static int read_request(httpd *h, int fd, httpd_req *rq)
{
    char *req = h->req;
    size_t got = 0, cap = sizeof h->req - 1;
    char *eoh = NULL;
    while (!eoh && got < cap) {
        if (recv_more(h, fd, &got) != 0)
            return -1;
        if (req[0] < 'A' || req[0] > 'Z')
            return -1; /* a TLS ClientHello or other noise: hang up */
        eoh = strstr(req, "\r\n\r\n");
    }
    if (!eoh || sscanf(req, "%15s %511s", rq->method, rq->target) != 2)
        return -1;
    size_t hlen = (size_t)(eoh - req) + 4;
    char clen[32];
    eoh[2] = '\0'; /* the header block ends with its last line's CRLF */
    rq->headers = strstr(req, "\r\n") + 2;
    size_t want = httpd_header(rq->headers, "Content-Length", clen, sizeof clen)
                      ? strtoul(clen, NULL, 10)
                      : 0;
    if (want > cap - hlen)
        want = cap - hlen;
    while (got - hlen < want)
        if (recv_more(h, fd, &got) != 0)
            return -1;
    rq->body = req + hlen;
    rq->body_len = want; /* not what a pipelining client sent after it */
    req[hlen + want] = '\0';
    return 0;
}

static void serve(httpd *h, int fd)
{
    httpd_req rq;
    if (read_request(h, fd, &rq) != 0)
        return;

    const httpd_resp *route = NULL;
    pthread_mutex_lock(&h->mu);
    h->nreq++;
    memcpy(h->method, rq.method, sizeof h->method);
    memcpy(h->target, rq.target, sizeof h->target);
    snprintf(h->headers, sizeof h->headers, "%s", rq.headers);
    httpd_header(rq.headers, "Accept", h->accept, sizeof h->accept);
    h->body_len = rq.body_len < sizeof h->body ? rq.body_len : sizeof h->body;
    memcpy(h->body, rq.body, h->body_len);
    for (int i = 0; i < h->nroutes; i++) {
        const httpd_route_slot *s = &h->routes[i];
        if (strcmp(s->path, rq.target) == 0) {
            /* copied: a test may replace the route meanwhile */
            memcpy(&h->cur, s, offsetof(httpd_route_slot, body));
            memcpy(h->cur.body, s->body, s->r.len);
            h->cur.r.status = h->cur.status;
            h->cur.r.headers = h->cur.headers;
            h->cur.r.body = h->cur.body;
            route = &h->cur.r;
            break;
        }
    }
    pthread_mutex_unlock(&h->mu);

    if (h->opts.delay_ms && stopped_within(h, h->opts.delay_ms))
        return;
    if (route)
        httpd_send_resp(h, fd, route);
    else if (h->opts.handler)
        h->opts.handler(h, fd, &rq, h->opts.arg);
    else
        httpd_respond(fd, "404 Not Found", "", "", 0);
}

static void *server_main(void *arg)
{
    httpd *h = arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = h->lfd, .events = POLLIN},
                              {.fd = h->stop[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[1].revents)
            break;
        int fd = accept(h->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        serve(h, fd);
        shutdown(fd, SHUT_WR);
        close(fd);
    }
    return NULL;
}

int httpd_start(httpd *h, const httpd_opts *opts)
{
    if (opts)
        h->opts = *opts;
    pthread_mutex_init(&h->mu, NULL);
    if (pipe(h->stop) != 0)
        return -1;
    h->lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1, e;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)h->opts.port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (h->lfd < 0 || setsockopt(h->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(h->lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(h->lfd, 64) != 0 ||
        getsockname(h->lfd, (struct sockaddr *)&a, &al) != 0)
        goto fail;
    h->port = ntohs(a.sin_port);
    if ((e = pthread_create(&h->thr, NULL, server_main, h)) != 0) {
        errno = e;
        goto fail;
    }
    return 0;
fail:
    e = errno;
    if (h->lfd >= 0)
        close(h->lfd);
    close(h->stop[0]);
    close(h->stop[1]);
    pthread_mutex_destroy(&h->mu);
    errno = e;
    return -1;
}

void httpd_stop(httpd *h)
{
    if (write(h->stop[1], "x", 1) != 1)
        abort(); /* a pipe of our own: the thread could never be told */
    pthread_join(h->thr, NULL);
    close(h->lfd);
    close(h->stop[0]);
    close(h->stop[1]);
    pthread_mutex_destroy(&h->mu);
}

int httpd_route(httpd *h, const char *path, const httpd_resp *r)
{
    size_t len = r->len ? r->len : r->body ? strlen(r->body) : 0;
    const char *status = r->status ? r->status : "200 OK", *hdrs = r->headers ? r->headers : "";
    if (strlen(path) >= sizeof h->routes[0].path || strlen(status) >= sizeof h->routes[0].status ||
        strlen(hdrs) >= sizeof h->routes[0].headers || len > HTTPD_MAX_BODY)
        return -1;
    pthread_mutex_lock(&h->mu);
    httpd_route_slot *s = NULL;
    for (int i = 0; i < h->nroutes && !s; i++)
        if (strcmp(h->routes[i].path, path) == 0)
            s = &h->routes[i];
    if (!s && h->nroutes < HTTPD_MAX_ROUTES)
        s = &h->routes[h->nroutes++];
    if (s) {
        snprintf(s->path, sizeof s->path, "%s", path);
        snprintf(s->status, sizeof s->status, "%s", status);
        snprintf(s->headers, sizeof s->headers, "%s", hdrs);
        s->r = *r;
        s->r.len = r->fill ? 0 : len;
        if (len && !r->fill)
            memcpy(s->body, r->body, len);
    }
    pthread_mutex_unlock(&h->mu);
    return s ? 0 : -1;
}

int httpd_nreq(httpd *h)
{
    pthread_mutex_lock(&h->mu);
    int n = h->nreq;
    pthread_mutex_unlock(&h->mu);
    return n;
}

const char *httpd_url(const httpd *h, const char *path)
{
    static char buf[4][300];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, sizeof buf[0], "http://127.0.0.1:%d%s", h->port, path);
    return b;
}

int httpd_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    int ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
             getsockname(fd, (struct sockaddr *)&a, &al) == 0;
    if (fd >= 0)
        close(fd);
    return ok ? ntohs(a.sin_port) : -1;
}

double httpd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void httpd_no_proxy_env(void)
{
    static const char *const vars[] = {"http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy",
                                       "ALL_PROXY",  "no_proxy",    "NO_PROXY"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
}
