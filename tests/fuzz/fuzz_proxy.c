/* The proxy's whole request path, mcpauth_proxy_handle: the request view
 * (Origin, Content-Type, Accept, MCP-Protocol-Version, Mcp-Session-Id,
 * Mcp-Method, Mcp-Name, Last-Event-ID, Cookie), routing, CORS preflight,
 * authentication, the version and media checks, body reading, JSON-RPC
 * validation, policies and session binding.  The input is a request (see
 * fz_req_init in fuzz_common.h); a valid Bearer token is supplied unless
 * the input sends its own Authorization.  The backend is a Unix socket
 * that does not exist, so anything relayed ends in a quick 502. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mcpauth/proxy.h>

#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* the fixture before the first input, whose -timeout it would count against */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_fixture_get(NULL);
    return 0;
}

static mcpauth_proxy *proxy;
static char bearer[1024];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_fixture *f = fz_fixture_get(NULL);
    if (!proxy) {
        char err[256] = "";
        if (!(proxy = mcpauth_proxy_new(f->cfg, 0, err, sizeof err))) {
            fprintf(stderr, "fuzz: proxy: %s\n", err);
            abort();
        }
        snprintf(bearer, sizeof bearer, "Bearer %s", f->good_token);
    }
    const char *defaults[] = {"REQUEST_METHOD", "POST",
                              "REQUEST_URI", "/mcp",
                              "REMOTE_ADDR", "192.0.2.7",
                              "HTTP_HOST", "mcp.example",
                              "HTTP_AUTHORIZATION", bearer,
                              "CONTENT_TYPE", "application/json",
                              "HTTP_ACCEPT", "application/json, text/event-stream",
                              NULL};
    fz_req r;
    if (fz_req_init(&r, data, size, defaults) == 0)
        mcpauth_proxy_handle(proxy, &r.req, &r.resp);
    else
        mcpauth_request_refuse(&r.req, r.init_rc, &r.resp);
    fz_req_free(&r);
    return 0;
}
