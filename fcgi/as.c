/* mcpauth-as: the built-in OAuth 2.1 authorization server's endpoints
 * (ISSUER/oauth2/...).  Its metadata is served by mcpauth-metadata. */
#include <mcpauth/as.h>
#include <mcpauth/mcpauth.h>

#include "binding.h"

/* NULL (the program stops, and the web server would respawn it in a loop)
 * only for what does not pass by itself: the configuration, the schema, no
 * `mcpauth init`.  A PostgreSQL store that cannot be reached yet is no
 * reason: the AS starts and answers 503 until it can (mcpauth-as(8),
 * STATE). */
static void *init(const mcpauth_config *cfg, int check_only, char *err, size_t errlen)
{
    (void)check_only;
    return mcpauth_as_new(cfg, err, errlen);
}

static void handle(void *state, const mcpauth_request *req, mcpauth_response *resp)
{
    mcpauth_as_handle(state, req, resp);
}

static void fini(void *state)
{
    mcpauth_as_free(state);
}

int main(int argc, char **argv)
{
    static const mcpauth_app app = {
        .name = "mcpauth-as",
        .summary = "The built-in OAuth 2.1 authorization server for MCP clients.",
        .init = init,
        .handle = handle,
        .fini = fini,
        .threads = 4,
        .max_threads = 32,
    };
    return mcpauth_fcgi_main(&app, argc, argv);
}
