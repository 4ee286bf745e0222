/* The JSON-RPC proxy: authenticates, checks and relays MCP requests to the
 * resource's backend, streaming the answer back.  Built once per process;
 * handle() may run in many threads at once. */
#ifndef MCPAUTH_PROXY_H
#define MCPAUTH_PROXY_H

#include <mcpauth/config.h>
#include <mcpauth/http.h>

typedef struct mcpauth_proxy mcpauth_proxy;

/* Opens the shared state under cfg->runtime_dir (not when check_only, for
 * --check) and builds the validator.  NULL with a reason in err. cfg must
 * outlive the proxy. */
mcpauth_proxy *mcpauth_proxy_new(const mcpauth_config *cfg, int check_only, char *err,
                                 size_t errlen);
void mcpauth_proxy_free(mcpauth_proxy *p);

void mcpauth_proxy_handle(mcpauth_proxy *p, const mcpauth_request *req, mcpauth_response *resp);

#endif
