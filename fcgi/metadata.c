/* mcpauth-metadata: serves RFC 9728 protected resource metadata. */
#include <mcpauth/mcpauth.h>

#include "binding.h"

static void *init(const mcpauth_config *cfg, int check_only, char *err, size_t errlen)
{
    (void)check_only;
    return mcpauth_metadata_new(cfg, err, errlen);
}

static void handle(void *state, const mcpauth_request *req, mcpauth_response *resp)
{
    mcpauth_metadata_handle(state, req, resp);
}

static void fini(void *state)
{
    mcpauth_metadata_free(state);
}

int main(int argc, char **argv)
{
    static const mcpauth_app app = {
        .name = "mcpauth-metadata",
        .summary = "Serves OAuth 2.0 protected resource metadata (RFC 9728) for MCP servers.",
        .init = init,
        .handle = handle,
        .fini = fini,
        .threads = 1,
        .max_threads = 8,
    };
    return mcpauth_fcgi_main(&app, argc, argv);
}
