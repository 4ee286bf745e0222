/* JSON-RPC 2.0 / MCP message checks done before anything is forwarded.
 * The eras: 2026-07-28 (stateless; Mcp-Method and Mcp-Name headers) and
 * the initialize/session era (2025-03-26, 2025-06-18, 2025-11-25). */
#ifndef MCPAUTH_JSONRPC_H
#define MCPAUTH_JSONRPC_H

#include <stddef.h>

/* JSON-RPC and MCP error codes used in refusals. */
#define MCPAUTH_RPC_PARSE_ERROR -32700
#define MCPAUTH_RPC_INVALID_REQUEST -32600
#define MCPAUTH_RPC_METHOD_NOT_FOUND -32601
#define MCPAUTH_RPC_INVALID_PARAMS -32602
#define MCPAUTH_RPC_INTERNAL_ERROR -32603
#define MCPAUTH_RPC_SERVER_ERROR -32000      /* backend down, timeout, rate limit */
#define MCPAUTH_RPC_HEADER_MISMATCH -32020   /* 2026-07-28 */
#define MCPAUTH_RPC_UNSUPPORTED_VERSION -32022 /* 2026-07-28 */

typedef enum {
    MCPAUTH_ERA_2025 = 1, /* initialize and Mcp-Session-Id: 2025-03-26 .. 2025-11-25 */
    MCPAUTH_ERA_2026 = 2  /* 2026-07-28: no sessions, Mcp-Method/Mcp-Name headers */
} mcpauth_era;

typedef enum {
    MCPAUTH_MSG_REQUEST = 1,
    MCPAUTH_MSG_NOTIFICATION,
    MCPAUTH_MSG_RESPONSE /* result or error from the client */
} mcpauth_msg_kind;

/* What the proxy needs to know about one POST body.  Strings point into
 * storage owned by the result (free with mcpauth__rpc_free). */
typedef struct mcpauth_rpc {
    mcpauth_era era;
    const char *version;     /* the MCP revision in force ("2025-06-18", ...) */
    int batch;               /* a JSON array of messages (2025-03-26 only) */
    size_t count;            /* messages in the body (1 unless batch) */
    mcpauth_msg_kind kind;   /* of the first (or only) message */
    const char *method;      /* of the first request or notification; NULL for responses */
    const char *name;        /* params.name (tools/call, prompts/get) or params.uri
                                (resources/read, resources/subscribe ...), NULL if none */
    const char *id_json;     /* the id as JSON text ("7", "\"a\""); "null" when unknown */
    int is_initialize;
    void *priv;
} mcpauth_rpc;

/* A refusal: HTTP status, JSON-RPC code and a message for the client. */
typedef struct mcpauth_rpc_error {
    int status;
    int code;
    char message[160];
    char id_json[128];       /* the request's id when it could be read, else "null" */
} mcpauth_rpc_error;

typedef struct mcpauth_rpc_limits {
    int max_depth;           /* nesting depth as json-c counts it (the innermost value
                                is a level); default 64 */
    size_t max_batch;        /* messages in a batch; default 32 */
} mcpauth_rpc_limits;

/* Headers of the request that matter here (NULL when absent). */
typedef struct mcpauth_rpc_headers {
    const char *protocol_version; /* MCP-Protocol-Version */
    const char *mcp_method;       /* Mcp-Method */
    const char *mcp_name;         /* Mcp-Name */
} mcpauth_rpc_headers;

/* Parses and checks a POST body: strict UTF-8 JSON within the limits; a
 * JSON-RPC 2.0 envelope ("jsonrpc":"2.0"; requests with a string "method"
 * and an "id" that is a string or integer, never null; notifications
 * without id; responses with result xor error; "params" an object or array
 * when present); batches only where the revision allows them; a supported
 * MCP-Protocol-Version (absent means 2025-03-26, except on initialize); in
 * the 2026-07-28 era the Mcp-Method header equals the method, Mcp-Name
 * equals the name when the method has one, and clients may not POST
 * responses.  Returns 0 and fills rpc, or -1 and fills err. */
int mcpauth__rpc_parse(const char *body, size_t len, const mcpauth_rpc_headers *h,
                      const mcpauth_rpc_limits *limits, mcpauth_rpc *rpc, mcpauth_rpc_error *err);
void mcpauth__rpc_free(mcpauth_rpc *rpc);

/* 1 when the MCP revision is one this build supports. */
int mcpauth__rpc_version_supported(const char *version);

/* {"jsonrpc":"2.0","error":{"code":C,"message":M},"id":ID} into buf;
 * returns its length, or -1 when buf is too small. */
int mcpauth__rpc_error_json(char *buf, size_t cap, int code, const char *message, const char *id_json);

#endif
