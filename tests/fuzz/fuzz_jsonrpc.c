/* JSON-RPC message validation (mcpauth__rpc_parse) with the MCP headers:
 * the input is header lines ("MCP-Protocol-Version: ...", "Mcp-Method:
 * ...", "Mcp-Name: ...", a line "limits: DEPTH BATCH" for small limits),
 * an empty line, then the POST body.  An accepted message must be one
 * the error path could also describe: its id JSON is re-checked. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "fuzz_common.h"
#include "jsonrpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mcpauth_rpc_headers h = {NULL, NULL, NULL};
    mcpauth_rpc_limits lim = {0, 0}, *limits = NULL;
    char *lines[4] = {NULL, NULL, NULL, NULL};
    int nl = 0;
    const uint8_t *p = data;
    size_t left = size;
    while (left && nl < 4) {
        const uint8_t *rest;
        size_t restlen;
        char *line = fz_line(p, left, &rest, &restlen);
        p = rest;
        left = restlen;
        if (!*line) {
            free(line);
            break;
        }
        lines[nl++] = line;
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ')
            v++;
        if (strcasecmp(line, "MCP-Protocol-Version") == 0)
            h.protocol_version = v;
        else if (strcasecmp(line, "Mcp-Method") == 0)
            h.mcp_method = v;
        else if (strcasecmp(line, "Mcp-Name") == 0)
            h.mcp_name = v;
        else if (strcasecmp(line, "limits") == 0) {
            unsigned d = 0, b = 0;
            if (sscanf(v, "%u %u", &d, &b) == 2 && d < 200 && b < 100) {
                lim.max_depth = (int)d;
                lim.max_batch = b;
                limits = &lim;
            }
        }
    }
    /* the body as the proxy holds it: NUL-terminated, len bytes */
    char *body = fz_strndup(p, left);
    mcpauth_rpc rpc;
    mcpauth_rpc_error err;
    memset(&err, 0, sizeof err);
    if (mcpauth__rpc_parse(body, left, &h, limits, &rpc, &err) == 0) {
        /* what the proxy will echo in its own answers must be JSON */
        json_object *id = json_tokener_parse(rpc.id_json);
        if (!id && strcmp(rpc.id_json, "null") != 0)
            abort();
        json_object_put(id);
        if (rpc.kind != MCPAUTH_MSG_RESPONSE && !rpc.method)
            abort();
        char buf[512];
        mcpauth__rpc_error_json(buf, sizeof buf, MCPAUTH_RPC_INTERNAL_ERROR, "x", rpc.id_json);
        mcpauth__rpc_free(&rpc);
    } else {
        if (!memchr(err.id_json, '\0', sizeof err.id_json) || !memchr(err.message, '\0', sizeof err.message))
            abort();
        char buf[512];
        int n = mcpauth__rpc_error_json(buf, sizeof buf, err.code, err.message, err.id_json);
        if (n > 0) {
            json_object *o = json_tokener_parse(buf);
            if (!o) /* the refusal the client gets must itself be JSON */
                abort();
            json_object_put(o);
        }
    }
    free(body);
    for (int i = 0; i < nl; i++)
        free(lines[i]);
    return 0;
}
