/* mcpauth-proxy: the JSON-RPC relay between authorized MCP clients and the
 * MCP server.  Threads over libfcgi's re-entrant accept serve concurrent
 * requests in one process (long-lived streams hold a thread each); the web
 * server may run several processes, which share rate limits and session
 * bindings through the runtime directory. */
#include <mcpauth/mcpauth.h>
#include <mcpauth/proxy.h>

#include "binding.h"

static void *init(const mcpauth_config *cfg, int check_only, char *err, size_t errlen)
{
    return mcpauth_proxy_new(cfg, check_only, err, errlen);
}

static void handle(void *state, const mcpauth_request *req, mcpauth_response *resp)
{
    mcpauth_proxy_handle(state, req, resp);
}

static void fini(void *state)
{
    mcpauth_proxy_free(state);
}

int main(int argc, char **argv)
{
    static mcpauth_app app = {
        .name = "mcpauth-proxy",
        .summary = "Relays authorized, validated MCP (JSON-RPC) requests to the MCP server.",
        .init = init,
        .handle = handle,
        .fini = fini,
        .threads = 0,     /* proxy_threads */
        .max_threads = 0, /* proxy_max_threads */
    };
    return mcpauth_fcgi_main(&app, argc, argv);
}
