/* Request path to resource selection: mcpauth_request_init (REQUEST_URI
 * decoding and the refusal of every ambiguous path) and
 * mcpauth_request_resource (the longest resource path on a segment
 * boundary, virtual hosts breaking ties).  The input is "REQUEST_URI\nHOST".
 * A chosen resource's path must prefix the request path on a segment
 * boundary. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mcpauth/log.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static mcpauth_config *cfg;

static const char conf[] =
    "log_level = error\n"
    "[resource root]\nuri = https://a.example\nauthorization_servers = https://as.example\n"
    "[resource mcp]\nuri = https://a.example/mcp\nauthorization_servers = https://as.example\n"
    "[resource files]\nuri = https://a.example/mcp/files\nauthorization_servers = https://as.example\n"
    "[resource other]\nuri = https://b.example:8443/mcp/files\nauthorization_servers = https://as.example\n"
    "[resource slash]\nuri = https://a.example/tools/\ntrailing_slash = yes\n"
    "authorization_servers = https://as.example\n"
    "[resource user]\nuri = https://c.example/~alice/mcp\nauthorization_servers = https://as.example\n"
    "resource_metadata_url = https://c.example/~alice/.well-known/oauth-protected-resource/mcp\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!cfg) {
        mcpauth_log_set_level(MCPAUTH_LOG_ERROR);
        cfg = fz_config(conf);
    }
    const uint8_t *rest;
    size_t restlen;
    char *uri = fz_line(data, size, &rest, &restlen);
    char *host = fz_strndup(rest, restlen);
    const char *params[] = {"REQUEST_METHOD", "GET", "REQUEST_URI", uri, "HTTP_HOST", host, NULL};
    fz_req r;
    int rc = fz_req_init(&r, (const uint8_t *)"", 0, params);
    if (rc == 0) {
        const char *p = r.req.path;
        /* what init promises about the path */
        if (strstr(p, "//") || strstr(p, "/./") || strstr(p, "/../") || strchr(p, '\\') ||
            strchr(p, ';') || strchr(p, '%') != NULL)
            abort();
        for (const char *c = p; *c; c++)
            if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
                abort();
        const mcpauth_resource *res = mcpauth_request_resource(cfg, &r.req);
        if (res) {
            size_t n = strlen(res->path);
            while (n && res->path[n - 1] == '/')
                n--;
            if (strncmp(p, res->path, n) != 0 || (p[n] != '\0' && p[n] != '/'))
                abort();
        }
    } else {
        mcpauth_request_refuse(&r.req, rc, &r.resp);
    }
    fz_req_free(&r);
    free(uri);
    free(host);
    return 0;
}
