/* mcpauth-gate: a FastCGI authorizer.  200 (with the caller's identity as
 * Variable-* headers) lets the web server go on to the protected location;
 * anything else is the answer the client gets. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mcpauth/mcpauth.h>

#include "binding.h"


typedef struct {
    const mcpauth_config *cfg;
    mcpauth_validator *validator;
} gate;

static void *init(const mcpauth_config *cfg, int check_only, char *err, size_t errlen)
{
    gate *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    g->cfg = cfg;
    /* --check may run as another user than the server: the key files
     * only, nothing of runtime_dir opened (or complained about) */
    if (check_only ? mcpauth_validator_check(cfg, err, errlen) != 0
                   : !(g->validator = mcpauth_validator_new(cfg, err, errlen))) {
        free(g);
        return NULL;
    }
    return g;
}

static void variable(mcpauth_response *resp, const char *name, const char *value)
{
    if (value && *value)
        mcpauth_response_header(resp, name, value);
}

static void handle(void *state, const mcpauth_request *req, mcpauth_response *resp)
{
    gate *g = state;
    /* CORS preflights carry no credentials by design. */
    if (strcmp(req->method, "OPTIONS") == 0) {
        mcpauth_response_set_status(resp, 200);
        mcpauth_response_send(resp, NULL, 0);
        return;
    }
    const mcpauth_resource *res = mcpauth_request_resource(g->cfg, req);
    if (!res) {
        mcpauth_log(MCPAUTH_LOG_ERROR, "no_resource", "path", req->path, "client",
                    req->remote_addr, NULL);
        mcpauth_response_error(resp, 404, "not_found", "no protected resource at this path");
        return;
    }
    mcpauth_decision d;
    mcpauth_validate_request(g->validator, res, req, NULL, &d);
    if (d.verdict != MCPAUTH_ALLOW) {
        mcpauth_decision_respond(&d, res, resp);
        return;
    }
    mcpauth_response_set_status(resp, 200);
    variable(resp, "Variable-MCP_SUBJECT", d.id.subject);
    variable(resp, "Variable-MCP_CLIENT_ID", d.id.client_id);
    variable(resp, "Variable-MCP_SCOPE", d.id.scope);
    variable(resp, "Variable-MCP_ISSUER", d.id.issuer);
    variable(resp, "Variable-MCP_RESOURCE", res->uri);
    /* lighttpd and mod_authnz_fcgi take REMOTE_USER from here. */
    variable(resp, "Variable-REMOTE_USER", d.id.subject);
    mcpauth_response_send(resp, NULL, 0);
}

static void fini(void *state)
{
    gate *g = state;
    mcpauth_validator_free(g->validator);
    free(g);
}

int main(int argc, char **argv)
{
    static const mcpauth_app app = {
        .name = "mcpauth-gate",
        .summary = "FastCGI authorizer: admits requests whose Bearer token was issued for the resource.",
        .init = init,
        .handle = handle,
        .fini = fini,
        .threads = 4,
        .max_threads = 64,
    };
    return mcpauth_fcgi_main(&app, argc, argv);
}
