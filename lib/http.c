/* Request accessors and the response writer (status + headers in a fixed
 * buffer, then the body) over an abstract sink. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include <mcpauth/http.h>
#include <mcpauth/log.h>

#include "alloc.h"

const char *mcpauth_request_param(const mcpauth_request *req, const char *name)
{
    return req->param ? req->param(req->ctx, name) : NULL;
}

int mcpauth_request_drain(const mcpauth_request *req)
{
    char sink[4096];
    ssize_t n;
    while ((n = req->read ? req->read(req->ctx, sink, sizeof sink) : 0) > 0)
        ;
    return n < 0 ? -1 : 0;
}

char *mcpauth_request_body(const mcpauth_request *req, size_t max, ssize_t *len)
{
    const char *cl = mcpauth_request_param(req, "CONTENT_LENGTH");
    long long hint = cl ? strtoll(cl, NULL, 10) : 0;
    size_t cap = hint > 0 && (size_t)hint <= max ? (size_t)hint : (max < 8192 ? max : 8192);
    size_t n = 0;
    char *buf = mcpauth__xmalloc(cap + 1);
    *len = -1;
    for (;;) {
        if (n == cap && cap < max) {
            size_t ncap = cap * 2 < max ? cap * 2 : max;
            buf = mcpauth__xrealloc(buf, ncap + 1);
            cap = ncap;
        }
        char one;
        /* full at max: one more byte means too large */
        ssize_t r = req->read ? (n == cap ? req->read(req->ctx, &one, 1)
                                          : req->read(req->ctx, buf + n, cap - n))
                              : 0;
        if (r == 0) {
            buf[n] = '\0';
            *len = (ssize_t)n;
            return buf;
        }
        if (r < 0)
            break;
        if (n == cap) {
            /* drained, so that alive() stays meaningful afterwards */
            *len = mcpauth_request_drain(req) < 0 ? -1 : -2;
            free(buf);
            return NULL;
        }
        n += (size_t)r;
    }
    free(buf);
    return NULL;
}

const mcpauth_resource *mcpauth_request_resource(const mcpauth_config *cfg,
                                                 const mcpauth_request *req)
{
    const char *name = mcpauth_request_param(req, "MCPAUTH_RESOURCE");
    if (!name)
        name = getenv("MCPAUTH_RESOURCE");
    if (name && *name)
        return mcpauth_config_resource_by_name(cfg, name);
    return mcpauth_config_resource_for_path(cfg, req->path,
                                            mcpauth_request_param(req, "HTTP_HOST"));
}

int mcpauth_request_alive(const mcpauth_request *req)
{
    return req->alive ? req->alive(req->ctx) : 1;
}

static const char *param_or_empty(const mcpauth_request *req, const char *name)
{
    const char *v = mcpauth_request_param(req, name);
    return v ? v : "";
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes the raw request path into out (the form lighttpd and Apache route
 * on) and refuses every form two parsers could read differently: the web
 * server normalises dot segments, merged slashes and (on some builds)
 * backslashes and encoded slashes before it picks the file or handler,
 * while a program matching the raw text would pick another resource.
 * Once these are refused, normalising changes nothing but the escapes, so
 * the decoded path is exactly the one the server serves. */
static const char *path_decode(const char *raw, size_t len, char *out)
{
    if (len == 0 || raw[0] != '/')
        return "path does not start with /";
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)raw[i];
        if (c == '%') {
            if (i + 2 >= len || hexval((unsigned char)raw[i + 1]) < 0 ||
                hexval((unsigned char)raw[i + 2]) < 0)
                return "malformed percent-encoding";
            c = (unsigned char)(hexval((unsigned char)raw[i + 1]) * 16 +
                                hexval((unsigned char)raw[i + 2]));
            i += 2;
            /* Encoded dots and slashes are how path confusion is smuggled
             * past one parser; an encoded '%' is double encoding. */
            if (c == '.' || c == '/' || c == '\\' || c == '%')
                return "encoded dot, slash, backslash or percent sign";
        }
        if (c < 0x20 || c == 0x7f)
            return "control character";
        if (c == '\\' || c == ';' || c == '#')
            return "backslash, semicolon or hash";
        if (c >= 0x80)
            return "non-ASCII byte";
        out[o++] = (char)c;
    }
    out[o] = '\0';
    for (const char *seg = out; seg; seg = strchr(seg + 1, '/')) {
        size_t n = strcspn(seg + 1, "/");
        if (n == 0 && seg[1] == '/')
            return "empty path segment (//)";
        if ((n == 1 && seg[1] == '.') || (n == 2 && seg[1] == '.' && seg[2] == '.'))
            return "dot segment";
    }
    return NULL;
}

int mcpauth_request_init(mcpauth_request *req, const char *(*param)(void *, const char *),
                         ssize_t (*read)(void *, char *, size_t), void *ctx)
{
    req->param = param;
    req->read = read;
    req->ctx = ctx;
    req->alive = NULL; /* the binding sets both when it can tell */
    req->spare_workers = -1;
    req->path_error = NULL;
    req->method = param_or_empty(req, "REQUEST_METHOD");
    req->remote_addr = param_or_empty(req, "REMOTE_ADDR");
    /* REQUEST_URI is what the client sent, identical under Apache and
     * lighttpd; SCRIPT_NAME/PATH_INFO differ between them. */
    const char *uri = mcpauth_request_param(req, "REQUEST_URI");
    req->pathbuf[0] = '\0';
    req->path = req->pathbuf;
    req->query = "";
    if (uri) {
        size_t plen = strcspn(uri, "?");
        if (plen >= sizeof req->pathbuf)
            return -1;
        if (uri[plen] == '?')
            req->query = uri + plen + 1;
        if ((req->path_error = path_decode(uri, plen, req->pathbuf)) != NULL) {
            req->pathbuf[0] = '\0';
            return -2;
        }
    } else {
        /* Already decoded and normalised by the server (CGI/1.1). */
        int n = snprintf(req->pathbuf, sizeof req->pathbuf, "%s%s",
                         param_or_empty(req, "SCRIPT_NAME"), param_or_empty(req, "PATH_INFO"));
        if (n < 0 || (size_t)n >= sizeof req->pathbuf)
            return -1;
        req->query = param_or_empty(req, "QUERY_STRING");
    }
    return 0;
}

int mcpauth_request_refuse(const mcpauth_request *req, int init_rc, mcpauth_response *resp)
{
    if (init_rc == -1) {
        mcpauth_log(MCPAUTH_LOG_INFO, "uri_too_long", "client", req->remote_addr, NULL);
        return mcpauth_response_error(resp, 414, "invalid_request", "request URI too long");
    }
    /* the path only: a query may carry credentials; capped, since it is
     * the client's text */
    const char *uri = mcpauth_request_param(req, "REQUEST_URI");
    char path[256];
    snprintf(path, sizeof path, "%.*s", (int)strcspn(uri ? uri : "", "?"), uri ? uri : "");
    mcpauth_log_security("ambiguous_path", "client", req->remote_addr, "uri", path, "reason",
                         req->path_error, NULL);
    char why[160];
    snprintf(why, sizeof why, "request path refused: %s",
             req->path_error ? req->path_error : "invalid");
    return mcpauth_response_error(resp, 400, "invalid_request", why);
}

const char *mcpauth_http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

void mcpauth_response_init(mcpauth_response *resp, mcpauth_sink sink)
{
    resp->sink = sink;
    resp->status = 200;
    resp->head_sent = 0;
    resp->failed = 0;
    resp->headlen = 0;
}

void mcpauth_response_set_status(mcpauth_response *resp, int status)
{
    resp->status = status;
}

static int is_token_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

void mcpauth_response_header(mcpauth_response *resp, const char *name, const char *value)
{
    if (resp->head_sent)
        return;
    size_t nl = strlen(name), vl = strlen(value);
    int ok = nl > 0;
    for (size_t i = 0; ok && i < nl; i++)
        ok = is_token_char((unsigned char)name[i]);
    /* CR or LF in a value would let input split the response. */
    for (size_t i = 0; ok && i < vl; i++)
        ok = value[i] != '\r' && value[i] != '\n';
    if (!ok || resp->headlen + nl + vl + 4 >= sizeof resp->head) {
        mcpauth_log(MCPAUTH_LOG_ERROR, "response_header_refused", "header", ok ? name : "(unsafe)",
                    "reason", ok ? "too long" : "unsafe characters", NULL);
        resp->failed = 1;
        return;
    }
    char *h = resp->head + resp->headlen;
    memcpy(h, name, nl);
    h[nl] = ':';
    h[nl + 1] = ' ';
    memcpy(h + nl + 2, value, vl);
    h[nl + 2 + vl] = '\r';
    h[nl + 3 + vl] = '\n';
    resp->headlen += nl + vl + 4;
}

static int sink_write(mcpauth_response *resp, const char *buf, size_t len)
{
    return len ? resp->sink.write(resp->sink.ctx, buf, len) : 0;
}

int mcpauth_response_start(mcpauth_response *resp)
{
    if (resp->head_sent)
        return 0;
    resp->head_sent = 1;
    char status[64];
    if (resp->failed) {
        /* Never send a half-built header block: a plain 500 instead. */
        static const char msg[] = "Status: 500 Internal Server Error\r\n"
                                  "Content-Type: application/json\r\n\r\n"
                                  "{\"error\":\"server_error\"}";
        sink_write(resp, msg, sizeof msg - 1);
        return -1;
    }
    int n = snprintf(status, sizeof status, "Status: %d %s\r\n", resp->status,
                     mcpauth_http_reason(resp->status));
    if (sink_write(resp, status, (size_t)n) < 0 || sink_write(resp, resp->head, resp->headlen) < 0 ||
        sink_write(resp, "\r\n", 2) < 0)
        return -1;
    return 0;
}

int mcpauth_response_write(mcpauth_response *resp, const char *buf, size_t len)
{
    if (!resp->head_sent && mcpauth_response_start(resp) < 0)
        return -1;
    return sink_write(resp, buf, len);
}

int mcpauth_response_flush(mcpauth_response *resp)
{
    return resp->sink.flush ? resp->sink.flush(resp->sink.ctx) : 0;
}

int mcpauth_response_send(mcpauth_response *resp, const char *body, size_t len)
{
    if (!resp->head_sent) {
        char cl[32];
        snprintf(cl, sizeof cl, "%zu", len);
        mcpauth_response_header(resp, "Content-Length", cl);
    }
    if (mcpauth_response_start(resp) < 0)
        return -1;
    return body ? sink_write(resp, body, len) : 0;
}

int mcpauth_response_json(mcpauth_response *resp, int status, const char *json)
{
    mcpauth_response_set_status(resp, status);
    mcpauth_response_header(resp, "Content-Type", "application/json");
    return mcpauth_response_send(resp, json, strlen(json));
}

int mcpauth_response_error(mcpauth_response *resp, int status, const char *error,
                           const char *description)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "error", json_object_new_string(error));
    if (description)
        json_object_object_add(o, "error_description", json_object_new_string(description));
    mcpauth_response_header(resp, "Cache-Control", "no-store");
    int rc = mcpauth_response_json(resp, status,
                                   json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                                         JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
    return rc;
}
