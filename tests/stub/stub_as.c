/* A stand-in authorization server for tests: serves discovery metadata, a
 * JWKS file (re-read on every request, so a test can rotate keys), and RFC
 * 7662 introspection from a table of tokens.  Plain HTTP on 127.0.0.1, one
 * request per connection, one at a time.  Counts requests per endpoint
 * (GET /stats) so tests can assert how often the AS was reached.
 *
 *   stub_as --port N --issuer URL --jwks FILE [--max-age S] [--tokens FILE]
 *           [--client ID:SECRET] [--port-file FILE] [--delay-ms MS]
 *
 * --tokens: lines "TOKEN<TAB>JSON" answered for that token when the caller
 * authenticates with --client (HTTP Basic); any other token is inactive.
 * --port 0 picks a free port and writes it to --port-file. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

static const char *issuer = "http://127.0.0.1";
static const char *jwks_file, *tokens_file, *client = "gate:gate-secret";
static int max_age = -1, delay_ms;
static unsigned long n_meta, n_jwks, n_introspect, n_other;

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        fwrite(chunk, 1, n, m);
    fclose(f);
    fclose(m);
    return buf;
}

static void reply(int fd, int status, const char *ctype, const char *extra, const char *body)
{
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n",
                     status, ctype, strlen(body), extra ? extra : "");
    if (write(fd, head, (size_t)n) < 0 || write(fd, body, strlen(body)) < 0)
        return;
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

static void introspect(int fd, const char *headers, char *body)
{
    n_introspect++;
    char want[512], enc[700];
    snprintf(want, sizeof want, "%s", client);
    EVP_EncodeBlock((unsigned char *)enc, (const unsigned char *)want, (int)strlen(want));
    char expect[800];
    snprintf(expect, sizeof expect, "Authorization: Basic %s\r\n", enc);
    if (!strcasestr(headers, expect)) {
        reply(fd, 401, "application/json", "WWW-Authenticate: Basic\r\n",
              "{\"error\":\"invalid_client\"}");
        return;
    }
    char *token = form_value(body, "token");
    char *table = tokens_file ? slurp(tokens_file) : NULL;
    if (token && table) {
        for (char *line = strtok(table, "\n"); line; line = strtok(NULL, "\n")) {
            char *tab = strchr(line, '\t');
            if (tab && (size_t)(tab - line) == strlen(token) &&
                strncmp(line, token, strlen(token)) == 0) {
                reply(fd, 200, "application/json", NULL, tab + 1);
                free(table);
                return;
            }
        }
    }
    free(table);
    reply(fd, 200, "application/json", NULL, "{\"active\":false}");
}

static void serve(int fd)
{
    char buf[65536];
    size_t len = 0;
    char *end = NULL;
    while (len < sizeof buf - 1) {
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n <= 0)
            return;
        len += (size_t)n;
        buf[len] = '\0';
        if ((end = strstr(buf, "\r\n\r\n")) != NULL) {
            const char *cl = strcasestr(buf, "\r\nContent-Length:");
            size_t want = cl ? strtoul(cl + 17, NULL, 10) : 0;
            if (len - (size_t)(end + 4 - buf) >= want)
                break;
        }
    }
    if (!end)
        return;
    *end = '\0';
    char *body = end + 4;
    char method[16], path[1024];
    if (sscanf(buf, "%15s %1023s", method, path) != 2)
        return;
    if (delay_ms) {
        struct timespec ts = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    char extra[128] = "";
    if (max_age >= 0)
        snprintf(extra, sizeof extra, "Cache-Control: max-age=%d\r\n", max_age);
    if (strcmp(path, "/.well-known/oauth-authorization-server") == 0 ||
        strcmp(path, "/.well-known/openid-configuration") == 0) {
        n_meta++;
        char doc[2048];
        snprintf(doc, sizeof doc,
                 "{\"issuer\":\"%s\",\"jwks_uri\":\"%s/jwks\",\"introspection_endpoint\":\"%s/introspect\"}",
                 issuer, issuer, issuer);
        reply(fd, 200, "application/json", NULL, doc);
    } else if (strcmp(path, "/jwks") == 0) {
        n_jwks++;
        char *doc = slurp(jwks_file);
        reply(fd, doc ? 200 : 500, "application/json", extra, doc ? doc : "{}");
        free(doc);
    } else if (strcmp(path, "/introspect") == 0 && strcmp(method, "POST") == 0) {
        introspect(fd, buf, body);
    } else if (strcmp(path, "/stats") == 0) {
        char doc[256];
        snprintf(doc, sizeof doc, "{\"metadata\":%lu,\"jwks\":%lu,\"introspect\":%lu,\"other\":%lu}",
                 n_meta, n_jwks, n_introspect, n_other);
        reply(fd, 200, "application/json", NULL, doc);
    } else {
        n_other++;
        reply(fd, 404, "application/json", NULL, "{\"error\":\"not_found\"}");
    }
}

int main(int argc, char **argv)
{
    int port = 0;
    const char *port_file = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--issuer")) issuer = argv[i + 1];
        else if (!strcmp(argv[i], "--jwks")) jwks_file = argv[i + 1];
        else if (!strcmp(argv[i], "--max-age")) max_age = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--tokens")) tokens_file = argv[i + 1];
        else if (!strcmp(argv[i], "--client")) client = argv[i + 1];
        else if (!strcmp(argv[i], "--port-file")) port_file = argv[i + 1];
        else if (!strcmp(argv[i], "--delay-ms")) delay_ms = atoi(argv[i + 1]);
        else { fprintf(stderr, "stub_as: unknown option %s\n", argv[i]); return 2; }
    }
    signal(SIGPIPE, SIG_IGN);
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 64) < 0 ||
        getsockname(s, (struct sockaddr *)&a, &al) < 0) {
        perror("stub_as: bind");
        return 1;
    }
    if (port_file) {
        FILE *f = fopen(port_file, "w");
        if (f) {
            fprintf(f, "%d\n", ntohs(a.sin_port));
            fclose(f);
        }
    }
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0)
            continue;
        serve(c);
        close(c);
    }
}
