/* A stand-in authorization server for tests: serves discovery metadata, a
 * JWKS file (re-read on every request, so a test can rotate keys), and RFC
 * 7662 introspection from a table of tokens.  Plain HTTP on 127.0.0.1 over
 * the loopback test server (tests/support/httpd.c): one request per
 * connection, one at a time.  Counts requests per endpoint (GET /stats) so
 * tests can assert how often the AS was reached.
 *
 *   stub_as --port N --issuer URL --jwks FILE [--max-age S] [--tokens FILE]
 *           [--client ID:SECRET] [--port-file FILE] [--delay-ms MS]
 *
 * --tokens: lines "TOKEN<TAB>JSON" answered for that token when the caller
 * authenticates with --client (HTTP Basic); any other token is inactive.
 * --port 0 picks a free port and writes it to --port-file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "../support/httpd.h"

static const char *issuer = "http://127.0.0.1";
static const char *jwks_file, *tokens_file, *client = "gate:gate-secret";
static int max_age = -1;
static unsigned long n_meta, n_jwks, n_introspect, n_other;

#define JSON "Content-Type: application/json\r\n"

/* The whole file, NUL-terminated, in buf; -1 when unreadable or too large. */
static int slurp(const char *path, char *buf, size_t cap)
{
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f)
        return -1;
    size_t n = fread(buf, 1, cap, f);
    int bad = ferror(f) || n == cap;
    fclose(f);
    buf[bad ? 0 : n] = '\0';
    return bad ? -1 : 0;
}

static void reply(int fd, const char *status, const char *headers, const char *body)
{
    httpd_respond(fd, status, headers, body, strlen(body));
}

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* value of key in an x-www-form-urlencoded body, decoded in place */
static char *form_value(char *body, const char *key)
{
    size_t kl = strlen(key);
    for (char *p = body; p && *p;) {
        char *amp = strchr(p, '&');
        if (amp)
            *amp = '\0';
        if (strncmp(p, key, kl) == 0 && p[kl] == '=') {
            char *v = p + kl + 1, *o = v;
            for (char *i = v; *i; i++) {
                if (*i == '+')
                    *o++ = ' ';
                else if (*i == '%' && hexval(i[1]) >= 0 && hexval(i[2]) >= 0) {
                    *o++ = (char)(hexval(i[1]) * 16 + hexval(i[2]));
                    i += 2;
                } else
                    *o++ = *i;
            }
            *o = '\0';
            return v;
        }
        p = amp ? amp + 1 : NULL;
    }
    return NULL;
}

static void introspect(int fd, const httpd_req *rq)
{
    n_introspect++;
    char want[512], enc[700], expect[800], got[800];
    snprintf(want, sizeof want, "%s", client);
    EVP_EncodeBlock((unsigned char *)enc, (const unsigned char *)want, (int)strlen(want));
    snprintf(expect, sizeof expect, "Basic %s", enc);
    if (!httpd_header(rq->headers, "Authorization", got, sizeof got) || strcmp(got, expect) != 0) {
        reply(fd, "401 Unauthorized", JSON "WWW-Authenticate: Basic\r\n",
              "{\"error\":\"invalid_client\"}");
        return;
    }
    static char body[8192], table[65536];
    snprintf(body, sizeof body, "%s", rq->body);
    char *token = form_value(body, "token");
    if (token && slurp(tokens_file, table, sizeof table) == 0) {
        for (char *line = strtok(table, "\n"); line; line = strtok(NULL, "\n")) {
            char *tab = strchr(line, '\t');
            if (tab && (size_t)(tab - line) == strlen(token) &&
                strncmp(line, token, strlen(token)) == 0) {
                reply(fd, "200 OK", JSON, tab + 1);
                return;
            }
        }
    }
    reply(fd, "200 OK", JSON, "{\"active\":false}");
}

static void answer(httpd *h, int fd, const httpd_req *rq, void *arg)
{
    const char *path = rq->target;
    if (strcmp(path, "/.well-known/oauth-authorization-server") == 0 ||
        strcmp(path, "/.well-known/openid-configuration") == 0) {
        n_meta++;
        char doc[2048];
        snprintf(doc, sizeof doc,
                 "{\"issuer\":\"%s\",\"jwks_uri\":\"%s/jwks\",\"introspection_endpoint\":\"%s/introspect\"}",
                 issuer, issuer, issuer);
        reply(fd, "200 OK", JSON, doc);
    } else if (strcmp(path, "/jwks") == 0) {
        n_jwks++;
        static char doc[262144];
        char hdrs[128] = JSON;
        if (max_age >= 0)
            snprintf(hdrs, sizeof hdrs, JSON "Cache-Control: max-age=%d\r\n", max_age);
        if (slurp(jwks_file, doc, sizeof doc) == 0)
            reply(fd, "200 OK", hdrs, doc);
        else
            reply(fd, "500 Internal Server Error", hdrs, "{}");
    } else if (strcmp(path, "/introspect") == 0 && strcmp(rq->method, "POST") == 0) {
        introspect(fd, rq);
    } else if (strcmp(path, "/stats") == 0) {
        char doc[256];
        snprintf(doc, sizeof doc, "{\"metadata\":%lu,\"jwks\":%lu,\"introspect\":%lu,\"other\":%lu}",
                 n_meta, n_jwks, n_introspect, n_other);
        reply(fd, "200 OK", JSON, doc);
    } else {
        n_other++;
        reply(fd, "404 Not Found", JSON, "{\"error\":\"not_found\"}");
    }
}

int main(int argc, char **argv)
{
    httpd_opts o = {.handler = answer};
    const char *port_file = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port")) o.port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--issuer")) issuer = argv[i + 1];
        else if (!strcmp(argv[i], "--jwks")) jwks_file = argv[i + 1];
        else if (!strcmp(argv[i], "--max-age")) max_age = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--tokens")) tokens_file = argv[i + 1];
        else if (!strcmp(argv[i], "--client")) client = argv[i + 1];
        else if (!strcmp(argv[i], "--port-file")) port_file = argv[i + 1];
        else if (!strcmp(argv[i], "--delay-ms")) o.delay_ms = atoi(argv[i + 1]);
        else { fprintf(stderr, "stub_as: unknown option %s\n", argv[i]); return 2; }
    }
    static httpd h;
    if (httpd_start(&h, &o) != 0) {
        perror("stub_as: bind");
        return 1;
    }
    if (port_file) {
        FILE *f = fopen(port_file, "w");
        if (f) {
            fprintf(f, "%d\n", h.port);
            fclose(f);
        }
    }
    for (;;)
        pause(); /* the server thread answers until a signal ends the process */
}
