/* JSON-RPC envelope and MCP Streamable HTTP checks (jsonrpc.c): both eras,
 * batches, hostile bytes, header mirroring and the error document. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "jsonrpc.h"

#include "suites.h"

Suite *jsonrpc_suite(void);

#define V25 "2025-03-26"
#define V06 "2025-06-18"
#define V11 "2025-11-25"
#define V26 "2026-07-28"

static const mcpauth_rpc_headers NO_HEADERS = {NULL, NULL, NULL};

static mcpauth_rpc_headers hdr(const char *version, const char *method, const char *name)
{
    mcpauth_rpc_headers h = {version, method, name};
    return h;
}

/* Accepted: returns the filled struct for the caller to inspect and free. */
static void accept_len(int line, const char *body, size_t len, const mcpauth_rpc_headers *h,
                       const mcpauth_rpc_limits *lim, mcpauth_rpc *rpc)
{
    mcpauth_rpc_error err;
    int rc = mcpauth__rpc_parse(body, len, h, lim, rpc, &err);
    ck_assert_msg(rc == 0, "line %d: refused (%d %d %s)", line, err.status, err.code, err.message);
}

/* Refused with exactly this status, code and id. */
static void refuse_len(int line, const char *body, size_t len, const mcpauth_rpc_headers *h,
                       const mcpauth_rpc_limits *lim, int status, int code, const char *id_json,
                       mcpauth_rpc_error *out)
{
    mcpauth_rpc rpc;
    mcpauth_rpc_error err;
    memset(&rpc, 0x5a, sizeof rpc); /* must come back zeroed */
    int rc = mcpauth__rpc_parse(body, len, h, lim, &rpc, &err);
    ck_assert_msg(rc == -1, "line %d: accepted", line);
    ck_assert_msg(err.status == status && err.code == code,
                  "line %d: got %d %d (%s), want %d %d", line, err.status, err.code, err.message,
                  status, code);
    ck_assert_msg(strcmp(err.id_json, id_json) == 0, "line %d: id_json %s, want %s", line,
                  err.id_json, id_json);
    ck_assert_msg(err.message[0] != '\0', "line %d: empty message", line);
    ck_assert_msg(rpc.priv == NULL && rpc.method == NULL && rpc.id_json == NULL, "line %d: rpc not cleared",
                  line);
    mcpauth__rpc_free(&rpc); /* safe on a failed parse */
    if (out)
        *out = err;
}

#define ACCEPT(body, h, rpc) accept_len(__LINE__, body, strlen(body), h, NULL, rpc)
#define ACCEPT_LIM(body, h, lim, rpc) accept_len(__LINE__, body, strlen(body), h, lim, rpc)
#define REFUSE(body, h, status, code, id) \
    refuse_len(__LINE__, body, strlen(body), h, NULL, status, code, id, NULL)
#define REFUSE_BIN(body, h, status, code, id) \
    refuse_len(__LINE__, body, sizeof(body) - 1, h, NULL, status, code, id, NULL)
#define REFUSE_LIM(body, h, lim, status, code, id) \
    refuse_len(__LINE__, body, strlen(body), h, lim, status, code, id, NULL)
#define REFUSE_MSG(body, h, status, code, id, msg)                                   \
    do {                                                                             \
        mcpauth_rpc_error e_;                                                        \
        refuse_len(__LINE__, body, strlen(body), h, NULL, status, code, id, &e_);    \
        ck_assert_str_eq(e_.message, msg);                                           \
    } while (0)

#define REQ(id, method) "{\"jsonrpc\":\"2.0\",\"id\":" id ",\"method\":\"" method "\"}"

/* ------------------------------------------------------------ versions */

START_TEST(versions_supported)
{
    ck_assert_int_eq(mcpauth__rpc_version_supported(V25), 1);
    ck_assert_int_eq(mcpauth__rpc_version_supported(V06), 1);
    ck_assert_int_eq(mcpauth__rpc_version_supported(V11), 1);
    ck_assert_int_eq(mcpauth__rpc_version_supported(V26), 1);
    ck_assert_int_eq(mcpauth__rpc_version_supported(NULL), 0);
    ck_assert_int_eq(mcpauth__rpc_version_supported(""), 0);
    ck_assert_int_eq(mcpauth__rpc_version_supported("2024-11-05"), 0);
    ck_assert_int_eq(mcpauth__rpc_version_supported("2025-06-18 "), 0);
    ck_assert_int_eq(mcpauth__rpc_version_supported("2026-07-28x"), 0);
}
END_TEST

START_TEST(unsupported_header)
{
    mcpauth_rpc_headers h = hdr("2024-11-05", NULL, NULL);
    REFUSE_MSG(REQ("1", "tools/list"), &h, 400, MCPAUTH_RPC_UNSUPPORTED_VERSION, "1",
               "Unsupported MCP-Protocol-Version");
    h = hdr("", NULL, NULL);
    REFUSE(REQ("\"x\"", "tools/list"), &h, 400, MCPAUTH_RPC_UNSUPPORTED_VERSION, "\"x\"");
    h = hdr("2025-06-18 ", NULL, NULL);
    REFUSE(REQ("2", "ping"), &h, 400, MCPAUTH_RPC_UNSUPPORTED_VERSION, "2");
    /* Also for an initialize: the header is checked whenever it is sent. */
    h = hdr("2099-01-01", NULL, NULL);
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"initialize\",\"params\":{}}", &h, 400,
           MCPAUTH_RPC_UNSUPPORTED_VERSION, "3");
}
END_TEST

/* ------------------------------------------------------------ era 2025 */

START_TEST(request_2025)
{
    char version[] = V06; /* a writable header buffer: rpc must not point into it */
    mcpauth_rpc_headers h = hdr(version, NULL, NULL);
    mcpauth_rpc rpc;
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/list\",\"params\":{\"cursor\":\"c\"}}", &h, &rpc);
    ck_assert_int_eq(rpc.era, MCPAUTH_ERA_2025);
    ck_assert_str_eq(rpc.version, V06);
    ck_assert_ptr_ne(rpc.version, version);
    ck_assert_int_eq(rpc.batch, 0);
    ck_assert_uint_eq(rpc.count, 1);
    ck_assert_int_eq(rpc.kind, MCPAUTH_MSG_REQUEST);
    ck_assert_str_eq(rpc.method, "tools/list");
    ck_assert_ptr_null(rpc.name);
    ck_assert_str_eq(rpc.id_json, "7");
    ck_assert_int_eq(rpc.is_initialize, 0);
    mcpauth__rpc_free(&rpc);
    ck_assert_ptr_null(rpc.priv);
    mcpauth__rpc_free(&rpc); /* twice is harmless: free clears the struct */

    h = hdr(V11, NULL, NULL);
    ACCEPT(REQ("\"req-1\"", "ping"), &h, &rpc);
    ck_assert_str_eq(rpc.version, V11);
    ck_assert_str_eq(rpc.id_json, "\"req-1\"");
    mcpauth__rpc_free(&rpc);

    /* Positional params and a non-ASCII method are fine. */
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":-5,\"method\":\"x/\xc3\xa9t\xc3\xa9\",\"params\":[1,2]}", &h, &rpc);
    ck_assert_str_eq(rpc.method, "x/\xc3\xa9t\xc3\xa9");
    ck_assert_str_eq(rpc.id_json, "-5");
    mcpauth__rpc_free(&rpc);
}
END_TEST

START_TEST(notification_2025)
{
    mcpauth_rpc_headers h = hdr(V06, NULL, NULL);
    mcpauth_rpc rpc;
    ACCEPT("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}", &h, &rpc);
    ck_assert_int_eq(rpc.kind, MCPAUTH_MSG_NOTIFICATION);
    ck_assert_str_eq(rpc.method, "notifications/initialized");
    ck_assert_str_eq(rpc.id_json, "null");
    ck_assert_int_eq(rpc.is_initialize, 0);
    mcpauth__rpc_free(&rpc);
    /* A notification called "initialize" is not an initialize request. */
    ACCEPT("{\"jsonrpc\":\"2.0\",\"method\":\"initialize\"}", &NO_HEADERS, &rpc);
    ck_assert_int_eq(rpc.kind, MCPAUTH_MSG_NOTIFICATION);
    ck_assert_int_eq(rpc.is_initialize, 0);
    ck_assert_str_eq(rpc.version, V25);
    mcpauth__rpc_free(&rpc);
}
END_TEST

START_TEST(response_2025)
{
    mcpauth_rpc_headers h = hdr(V06, NULL, NULL);
    mcpauth_rpc rpc;
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":\"abc\",\"result\":{}}", &h, &rpc);
    ck_assert_int_eq(rpc.kind, MCPAUTH_MSG_RESPONSE);
    ck_assert_ptr_null(rpc.method);
    ck_assert_ptr_null(rpc.name);
    ck_assert_str_eq(rpc.id_json, "\"abc\"");
    mcpauth__rpc_free(&rpc);
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":4,\"error\":{\"code\":-32601,\"message\":\"no\",\"data\":[1]}}", &h,
           &rpc);
    ck_assert_int_eq(rpc.kind, MCPAUTH_MSG_RESPONSE);
    ck_assert_str_eq(rpc.id_json, "4");
    mcpauth__rpc_free(&rpc);
    /* result may be any JSON value, null included. */
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":null}", &h, &rpc);
    mcpauth__rpc_free(&rpc);
}
END_TEST

START_TEST(names_2025)
{
    mcpauth_rpc_headers h = hdr(V11, NULL, NULL);
    mcpauth_rpc rpc;
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{}}}",
           &h, &rpc);
    ck_assert_str_eq(rpc.name, "echo");
    mcpauth__rpc_free(&rpc);
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"prompts/get\",\"params\":{\"name\":\"p\"}}", &h, &rpc);
    ck_assert_str_eq(rpc.name, "p");
    mcpauth__rpc_free(&rpc);
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/read\",\"params\":{\"uri\":\"file:///a\",\"name\":\"n\"}}",
           &h, &rpc);
    ck_assert_str_eq(rpc.name, "file:///a");
    mcpauth__rpc_free(&rpc);
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/unsubscribe\",\"params\":{\"uri\":\"u\"}}", &h, &rpc);
    ck_assert_str_eq(rpc.name, "u");
    mcpauth__rpc_free(&rpc);
    /* Other methods have no name even if params carries one. */
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{\"name\":\"x\"}}", &h, &rpc);
    ck_assert_ptr_null(rpc.name);
    mcpauth__rpc_free(&rpc);

    /* A named method always has its name, so policies keyed on it hold. */
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{}}", &h, 400,
           MCPAUTH_RPC_INVALID_PARAMS, "1");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\"}", &h, 400, MCPAUTH_RPC_INVALID_PARAMS, "1");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":7}}", &h, 400,
           MCPAUTH_RPC_INVALID_PARAMS, "1");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":[\"echo\"]}", &h, 400,
           MCPAUTH_RPC_INVALID_PARAMS, "1");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"a\\u0000b\"}}", &h, 400,
           MCPAUTH_RPC_INVALID_PARAMS, "1");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/read\",\"params\":{\"name\":\"x\"}}", &h, 400,
           MCPAUTH_RPC_INVALID_PARAMS, "1");
}
END_TEST

START_TEST(headers_ignored_2025)
{
    mcpauth_rpc_headers h = hdr(V06, "something/else", "other");
    mcpauth_rpc rpc;
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\"}}", &h, &rpc);
    ck_assert_str_eq(rpc.method, "tools/call");
    ck_assert_str_eq(rpc.name, "echo");
    mcpauth__rpc_free(&rpc);
    /* Without a version header too; and a response is fine in this era. */
    h = hdr(NULL, "x", "y");
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}", &h, &rpc);
    ck_assert_str_eq(rpc.version, V25);
    mcpauth__rpc_free(&rpc);
}
END_TEST

START_TEST(initialize_without_header)
{
    mcpauth_rpc rpc;
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-06-18\","
           "\"capabilities\":{},\"clientInfo\":{\"name\":\"c\",\"version\":\"1\"}}}",
           &NO_HEADERS, &rpc);
    ck_assert_int_eq(rpc.era, MCPAUTH_ERA_2025);
    ck_assert_str_eq(rpc.version, V06);
    ck_assert_int_eq(rpc.is_initialize, 1);
    ck_assert_int_eq(rpc.kind, MCPAUTH_MSG_REQUEST);
    ck_assert_str_eq(rpc.id_json, "0");
    mcpauth__rpc_free(&rpc);

    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-11-25\"}}",
           &NO_HEADERS, &rpc);
    ck_assert_str_eq(rpc.version, V11);
    mcpauth__rpc_free(&rpc);

    /* An unknown proposal is the server's to answer, not ours to refuse. */
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2099-01-01\"}}",
           &NO_HEADERS, &rpc);
    ck_assert_str_eq(rpc.version, V25);
    ck_assert_int_eq(rpc.is_initialize, 1);
    mcpauth__rpc_free(&rpc);
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{\"protocolVersion\":7}}",
           &NO_HEADERS, &rpc);
    ck_assert_str_eq(rpc.version, V25);
    mcpauth__rpc_free(&rpc);
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\"}", &NO_HEADERS, &rpc);
    ck_assert_str_eq(rpc.version, V25);
    ck_assert_int_eq(rpc.is_initialize, 1);
    mcpauth__rpc_free(&rpc);
    /* 2026-07-28 has no initialize, so proposing it keeps the 2025 era. */
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2026-07-28\"}}",
           &NO_HEADERS, &rpc);
    ck_assert_int_eq(rpc.era, MCPAUTH_ERA_2025);
    ck_assert_str_eq(rpc.version, V25);
    ck_assert_int_eq(rpc.is_initialize, 1);
    mcpauth__rpc_free(&rpc);

    /* Any other message without the header: assume 2025-03-26. */
    ACCEPT(REQ("1", "tools/list"), NULL, &rpc);
    ck_assert_int_eq(rpc.era, MCPAUTH_ERA_2025);
    ck_assert_str_eq(rpc.version, V25);
    ck_assert_int_eq(rpc.is_initialize, 0);
    mcpauth__rpc_free(&rpc);
}
END_TEST

START_TEST(initialize_with_header)
{
    mcpauth_rpc_headers h = hdr(V11, NULL, NULL);
    mcpauth_rpc rpc;
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-06-18\"}}",
           &h, &rpc);
    ck_assert_str_eq(rpc.version, V11); /* the header is the version in force */
    ck_assert_int_eq(rpc.is_initialize, 1);
    mcpauth__rpc_free(&rpc);
}
END_TEST

/* ------------------------------------------------------------ batches */

START_TEST(batch_2025_03_26)
{
    static const char body[] =
        "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"a\"}},"
        "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}},"
        "{\"jsonrpc\":\"2.0\",\"id\":\"r\",\"result\":{}}]";
    mcpauth_rpc rpc;
    ACCEPT(body, &NO_HEADERS, &rpc);
    ck_assert_int_eq(rpc.batch, 1);
    ck_assert_uint_eq(rpc.count, 3);
    ck_assert_int_eq(rpc.kind, MCPAUTH_MSG_REQUEST);
    ck_assert_str_eq(rpc.method, "tools/call");
    ck_assert_str_eq(rpc.name, "a");
    ck_assert_str_eq(rpc.id_json, "1");
    ck_assert_str_eq(rpc.version, V25);
    ck_assert_int_eq(rpc.is_initialize, 0);
    mcpauth__rpc_free(&rpc);

    mcpauth_rpc_headers h = hdr(V25, NULL, NULL);
    ACCEPT("[{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{}},{\"jsonrpc\":\"2.0\",\"id\":8,\"result\":{}}]", &h, &rpc);
    ck_assert_uint_eq(rpc.count, 2);
    ck_assert_int_eq(rpc.kind, MCPAUTH_MSG_RESPONSE);
    ck_assert_str_eq(rpc.id_json, "9");
    mcpauth__rpc_free(&rpc);
}
END_TEST

START_TEST(batch_refused_later_revisions)
{
    static const char body[] = "[" REQ("1", "ping") "," REQ("2", "ping") "]";
    mcpauth_rpc_headers h = hdr(V06, NULL, NULL);
    REFUSE_MSG(body, &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "null",
               "Batch requests are not supported by this protocol revision");
    h = hdr(V11, NULL, NULL);
    REFUSE(body, &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "null");
    h = hdr(V26, "ping", NULL);
    REFUSE_MSG(body, &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "null",
               "Batch requests are not supported by this protocol revision");
}
END_TEST

START_TEST(batch_limits)
{
    REFUSE("[]", &NO_HEADERS, 400, MCPAUTH_RPC_INVALID_REQUEST, "null");
    REFUSE(" [ ] ", &NO_HEADERS, 400, MCPAUTH_RPC_INVALID_REQUEST, "null");

    /* The default is 32 messages. */
    char body[33 * 48 + 8];
    size_t o = 0;
    body[o++] = '[';
    for (int i = 0; i < 33; i++)
        o += (size_t)snprintf(body + o, sizeof body - o, "%s{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"ping\"}",
                              i ? "," : "", i);
    body[o++] = ']';
    body[o] = '\0';
    REFUSE(body, &NO_HEADERS, 400, MCPAUTH_RPC_INVALID_REQUEST, "null");
    char *last = strrchr(body, '{');
    last[-1] = ']';
    last[0] = '\0';
    mcpauth_rpc rpc;
    ACCEPT(body, &NO_HEADERS, &rpc);
    ck_assert_uint_eq(rpc.count, 32);
    mcpauth__rpc_free(&rpc);

    mcpauth_rpc_limits lim = {0, 2};
    REFUSE_LIM("[" REQ("1", "a") "," REQ("2", "b") "," REQ("3", "c") "]", &NO_HEADERS, &lim, 400,
               MCPAUTH_RPC_INVALID_REQUEST, "null");
    ACCEPT_LIM("[" REQ("1", "a") "," REQ("2", "b") "]", &NO_HEADERS, &lim, &rpc);
    ck_assert_uint_eq(rpc.count, 2);
    mcpauth__rpc_free(&rpc);
}
END_TEST

START_TEST(batch_contents)
{
    /* initialize MUST NOT be part of a batch, in any position. */
    REFUSE("[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{}}]", &NO_HEADERS, 400,
           MCPAUTH_RPC_INVALID_REQUEST, "null");
    REFUSE("[" REQ("1", "ping") ",{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"initialize\"}]", &NO_HEADERS, 400,
           MCPAUTH_RPC_INVALID_REQUEST, "null");
    /* Each element is a message. */
    REFUSE("[1]", &NO_HEADERS, 400, MCPAUTH_RPC_INVALID_REQUEST, "null");
    REFUSE("[" REQ("1", "ping") ",[]]", &NO_HEADERS, 400, MCPAUTH_RPC_INVALID_REQUEST, "null");
    REFUSE("[" REQ("1", "ping") ",{\"id\":2,\"method\":\"ping\"}]", &NO_HEADERS, 400, MCPAUTH_RPC_INVALID_REQUEST,
           "null");
    REFUSE("[" REQ("1", "ping") ",{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"p\",\"params\":1}]", &NO_HEADERS, 400,
           MCPAUTH_RPC_INVALID_PARAMS, "null");
    REFUSE("[[" REQ("1", "ping") "]]", &NO_HEADERS, 400, MCPAUTH_RPC_INVALID_REQUEST, "null");
}
END_TEST

/* ------------------------------------------------------------ envelope */

START_TEST(jsonrpc_member)
{
    mcpauth_rpc_headers h = hdr(V06, NULL, NULL);
    REFUSE("{\"id\":1,\"method\":\"ping\"}", &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "1");
    REFUSE("{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"ping\"}", &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "1");
    REFUSE("{\"jsonrpc\":2.0,\"id\":1,\"method\":\"ping\"}", &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "1");
    REFUSE("{\"jsonrpc\":\"2.0 \",\"id\":1,\"method\":\"ping\"}", &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "1");
    REFUSE("{\"jsonrpc\":\"2.0\\u0000\",\"id\":1,\"method\":\"ping\"}", &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "1");
    REFUSE("{\"jsonrpc\":null,\"id\":1,\"method\":\"ping\"}", &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "1");
}
END_TEST

START_TEST(ids)
{
    mcpauth_rpc_headers h = hdr(V06, NULL, NULL);
    mcpauth_rpc rpc;
    REFUSE_MSG(REQ("null", "ping"), &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "null",
               "Invalid Request: id must be a string or integer");
    REFUSE(REQ("1.5", "ping"), &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "null");
    REFUSE(REQ("1.0", "ping"), &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "null");
    REFUSE(REQ("1e2", "ping"), &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "null");
    REFUSE(REQ("true", "ping"), &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "null");
    REFUSE(REQ("false", "ping"), &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "null");
    REFUSE(REQ("{}", "ping"), &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "null");
    REFUSE(REQ("[1]", "ping"), &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "null");

    ACCEPT(REQ("\"\"", "ping"), &h, &rpc);
    ck_assert_str_eq(rpc.id_json, "\"\"");
    mcpauth__rpc_free(&rpc);
    ACCEPT(REQ("0", "ping"), &h, &rpc);
    ck_assert_str_eq(rpc.id_json, "0");
    mcpauth__rpc_free(&rpc);
    ACCEPT(REQ("-0", "ping"), &h, &rpc); /* json-c reads -0 as the integer 0 */
    ck_assert_str_eq(rpc.id_json, "0");
    mcpauth__rpc_free(&rpc);
    ACCEPT(REQ("9223372036854775806", "ping"), &h, &rpc);
    ck_assert_str_eq(rpc.id_json, "9223372036854775806");
    mcpauth__rpc_free(&rpc);
    ACCEPT(REQ("-9223372036854775807", "ping"), &h, &rpc);
    ck_assert_str_eq(rpc.id_json, "-9223372036854775807");
    mcpauth__rpc_free(&rpc);
    /* json-c saturates larger integers: echoing them would name another id. */
    REFUSE(REQ("9223372036854775807", "ping"), &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "null");
    REFUSE(REQ("99999999999999999999", "ping"), &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "null");
    REFUSE(REQ("-9223372036854775809", "ping"), &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "null");

    /* Strings up to 256 bytes. */
    char body[512], id[300];
    memset(id, 'i', 256);
    id[256] = '\0';
    snprintf(body, sizeof body, "{\"jsonrpc\":\"2.0\",\"id\":\"%s\",\"method\":\"ping\"}", id);
    ACCEPT(body, &h, &rpc);
    ck_assert_uint_eq(strlen(rpc.id_json), 258);
    mcpauth__rpc_free(&rpc);
    memset(id, 'i', 257);
    id[257] = '\0';
    snprintf(body, sizeof body, "{\"jsonrpc\":\"2.0\",\"id\":\"%s\",\"method\":\"ping\"}", id);
    REFUSE(body, &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "null");
}
END_TEST

START_TEST(id_json_in_errors)
{
    mcpauth_rpc_headers h = hdr(V06, NULL, NULL);
    mcpauth_rpc rpc;
    /* Quotes, backslashes and control characters come back escaped. */
    REFUSE("{\"jsonrpc\":\"1.0\",\"id\":\"a\\\"b\\\\c\",\"method\":\"ping\"}", &h, 400, MCPAUTH_RPC_INVALID_REQUEST,
           "\"a\\\"b\\\\c\"");
    REFUSE("{\"jsonrpc\":\"1.0\",\"id\":\"a\\nb\\u0001</\",\"method\":\"ping\"}", &h, 400, MCPAUTH_RPC_INVALID_REQUEST,
           "\"a\\nb\\u0001</\"");
    REFUSE("{\"jsonrpc\":\"1.0\",\"id\":\"\\u00e9\",\"method\":\"ping\"}", &h, 400, MCPAUTH_RPC_INVALID_REQUEST,
           "\"\xc3\xa9\"");
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":\"q\\\"\",\"method\":\"ping\"}", &h, &rpc);
    ck_assert_str_eq(rpc.id_json, "\"q\\\"\"");
    mcpauth__rpc_free(&rpc);

    /* An id whose text does not fit the 128-byte field reads as null. */
    char body[512], id[200];
    memset(id, 'x', 125);
    id[125] = '\0'; /* 127 bytes quoted, 128 with the NUL: fits */
    snprintf(body, sizeof body, "{\"jsonrpc\":\"1.0\",\"id\":\"%s\",\"method\":\"ping\"}", id);
    char want[210];
    snprintf(want, sizeof want, "\"%s\"", id);
    REFUSE(body, &h, 400, MCPAUTH_RPC_INVALID_REQUEST, want);
    memset(id, 'x', 126);
    id[126] = '\0';
    snprintf(body, sizeof body, "{\"jsonrpc\":\"1.0\",\"id\":\"%s\",\"method\":\"ping\"}", id);
    REFUSE(body, &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "null");
    /* Escaping counts: 40 quotes become 80 bytes plus... still fits; 70 do not. */
    char q[200] = "";
    for (int i = 0; i < 70; i++)
        strcat(q, "\\\"");
    snprintf(body, sizeof body, "{\"jsonrpc\":\"1.0\",\"id\":\"%s\",\"method\":\"ping\"}", q);
    REFUSE(body, &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "null");
    /* A response's id is known too. */
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":12,\"result\":1,\"error\":{}}", &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "12");
}
END_TEST

START_TEST(methods)
{
    mcpauth_rpc_headers h = hdr(V06, NULL, NULL);
    mcpauth_rpc rpc;
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":1}", &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "1");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":null}", &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "1");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":{}}", &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "1");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":[\"ping\"]}", &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "1");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\"}", &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "1");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\\u0001\"}", &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "1");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\\nb\"}", &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "1");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\\u007f\"}", &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "1");
    /* C would read "ping" where the server reads "ping\0x". */
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\\u0000x\"}", &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "1");

    char body[600], m[300];
    memset(m, 'm', 256);
    m[256] = '\0';
    snprintf(body, sizeof body, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"%s\"}", m);
    ACCEPT(body, &h, &rpc);
    ck_assert_uint_eq(strlen(rpc.method), 256);
    mcpauth__rpc_free(&rpc);
    memset(m, 'm', 257);
    m[257] = '\0';
    snprintf(body, sizeof body, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"%s\"}", m);
    REFUSE(body, &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "1");
}
END_TEST

START_TEST(params)
{
    mcpauth_rpc_headers h = hdr(V06, NULL, NULL);
    mcpauth_rpc rpc;
    REFUSE_MSG("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":\"x\"}", &h, 400,
               MCPAUTH_RPC_INVALID_PARAMS, "1", "Invalid params: params must be an object or array");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":null}", &h, 400, MCPAUTH_RPC_INVALID_PARAMS,
           "1");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":3}", &h, 400, MCPAUTH_RPC_INVALID_PARAMS, "1");
    REFUSE("{\"jsonrpc\":\"2.0\",\"method\":\"n\",\"params\":true}", &h, 400, MCPAUTH_RPC_INVALID_PARAMS, "null");
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":[]}", &h, &rpc);
    mcpauth__rpc_free(&rpc);
    /* Members JSON-RPC does not define are left alone. */
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"extra\":{\"a\":[1,2]}}", &h, &rpc);
    mcpauth__rpc_free(&rpc);
}
END_TEST

START_TEST(responses)
{
    mcpauth_rpc_headers h = hdr(V06, NULL, NULL);
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{},\"error\":{\"code\":1,\"message\":\"m\"}}", &h, 400,
           MCPAUTH_RPC_INVALID_REQUEST, "1");
    REFUSE("{\"jsonrpc\":\"2.0\",\"result\":{}}", &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "null");
    REFUSE("{\"jsonrpc\":\"2.0\",\"error\":{\"code\":1,\"message\":\"m\"}}", &h, 400, MCPAUTH_RPC_INVALID_REQUEST,
           "null");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":null,\"result\":{}}", &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "null");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1.5,\"result\":{}}", &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "null");
    /* A method with result or error is ambiguous. */
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"result\":{}}", &h, 400, MCPAUTH_RPC_INVALID_REQUEST,
           "1");
    REFUSE("{\"jsonrpc\":\"2.0\",\"method\":\"ping\",\"error\":{\"code\":1,\"message\":\"m\"}}", &h, 400,
           MCPAUTH_RPC_INVALID_REQUEST, "null");
    /* error is an object with an integer code and a string message. */
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":\"bad\"}", &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "1");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":\"1\",\"message\":\"m\"}}", &h, 400,
           MCPAUTH_RPC_INVALID_REQUEST, "1");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":1.5,\"message\":\"m\"}}", &h, 400,
           MCPAUTH_RPC_INVALID_REQUEST, "1");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":1}}", &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "1");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":1,\"message\":null}}", &h, 400,
           MCPAUTH_RPC_INVALID_REQUEST, "1");
    /* Neither a request nor a response. */
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1}", &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "1");
    REFUSE("{}", &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "null");
}
END_TEST

START_TEST(top_level)
{
    /* Valid JSON that is no message: Invalid Request, as in the JSON-RPC examples. */
    REFUSE("1", &NO_HEADERS, 400, MCPAUTH_RPC_INVALID_REQUEST, "null");
    REFUSE(" 1 ", &NO_HEADERS, 400, MCPAUTH_RPC_INVALID_REQUEST, "null");
    REFUSE("\"x\"", &NO_HEADERS, 400, MCPAUTH_RPC_INVALID_REQUEST, "null");
    REFUSE("null", &NO_HEADERS, 400, MCPAUTH_RPC_INVALID_REQUEST, "null");
    REFUSE("true", &NO_HEADERS, 400, MCPAUTH_RPC_INVALID_REQUEST, "null");
    /* Not JSON at all. */
    REFUSE("", &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR, "null");
    REFUSE("   ", &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR, "null");
    REFUSE("{", &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR, "null");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"", &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR, "null");
    REFUSE("nul", &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR, "null");
    REFUSE("tru", &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR, "null");
    REFUSE("-", &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR, "null");
    mcpauth_rpc_error err;
    memset(&err, 0x5a, sizeof err);
    ck_assert_int_eq(mcpauth__rpc_parse(NULL, 0, NULL, NULL, NULL, &err), -1);
    ck_assert_int_eq(err.code, MCPAUTH_RPC_PARSE_ERROR);
    ck_assert_str_eq(err.id_json, "null");
    ck_assert_int_eq(mcpauth__rpc_parse(NULL, 5, NULL, NULL, NULL, &err), -1);
    /* err and rpc may be left out. */
    ck_assert_int_eq(mcpauth__rpc_parse("x", 1, NULL, NULL, NULL, NULL), -1);
    ck_assert_int_eq(mcpauth__rpc_parse(REQ("1", "ping"), strlen(REQ("1", "ping")), NULL, NULL, NULL, NULL), 0);
}
END_TEST

/* ------------------------------------------------------------ hostile bytes */

START_TEST(parse_error_message)
{
    REFUSE_MSG("{x}", &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR, "null",
               "Parse error: quoted object property name expected");
    mcpauth_rpc_error err;
    ck_assert_int_eq(mcpauth__rpc_parse("{x}", 3, NULL, NULL, NULL, &err), -1);
    ck_assert(strncmp(err.message, "Parse error", 11) == 0);
}
END_TEST

START_TEST(invalid_utf8)
{
    REFUSE_BIN("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\xff\"}", &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR,
               "null");
    /* json-c's own UTF-8 check lets the following through; ours does not. */
    REFUSE_BIN("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xc0\xaf\"}", &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR,
               "null"); /* overlong '/' */
    REFUSE_BIN("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xe0\x80\xaf\"}", &NO_HEADERS, 400,
               MCPAUTH_RPC_PARSE_ERROR, "null"); /* overlong, 3 bytes */
    REFUSE_BIN("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xed\xa0\x80\"}", &NO_HEADERS, 400,
               MCPAUTH_RPC_PARSE_ERROR, "null"); /* encoded surrogate */
    REFUSE_BIN("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xf4\x90\x80\x80\"}", &NO_HEADERS, 400,
               MCPAUTH_RPC_PARSE_ERROR, "null"); /* above U+10FFFF */
    REFUSE_BIN("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xf5\x80\x80\x80\"}", &NO_HEADERS, 400,
               MCPAUTH_RPC_PARSE_ERROR, "null");
    REFUSE_BIN("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xe2\x82\"}", &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR,
               "null"); /* truncated */
    REFUSE_BIN("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\x80\"}", &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR,
               "null"); /* lone continuation */
    REFUSE_BIN("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\xe2", &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR,
               "null"); /* cut at the very end */
    REFUSE_BIN("\xef\xbb\xbf{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}", &NO_HEADERS, 400,
               MCPAUTH_RPC_PARSE_ERROR, "null"); /* BOM: RFC 8259 lets us refuse it */
    mcpauth_rpc_error e;
    ck_assert_int_eq(mcpauth__rpc_parse("\"\xff\"", 3, NULL, NULL, NULL, &e), -1);
    ck_assert_str_eq(e.message, "Parse error: invalid UTF-8");

    /* Well-formed 2-, 3- and 4-byte sequences are fine. */
    mcpauth_rpc rpc;
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\"}",
           &NO_HEADERS, &rpc);
    ck_assert_str_eq(rpc.method, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf");
    mcpauth__rpc_free(&rpc);
}
END_TEST

START_TEST(surrogate_escapes)
{
    /* What json-c itself does: an unpaired surrogate escape silently
     * becomes U+FFFD (EF BF BD), where Python keeps it and JavaScript
     * keeps a lone UTF-16 unit.  That is a parser differential, so the
     * proxy refuses unpaired surrogate escapes as a parse error. */
    json_object *o = json_tokener_parse("\"\\ud800\"");
    ck_assert_ptr_nonnull(o);
    ck_assert_str_eq(json_object_get_string(o), "\xef\xbf\xbd");
    json_object_put(o);

    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\\ud800\"}", &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR, "null");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\\udc00\"}", &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR, "null");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\\ud800x\"}", &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR, "null");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\\ud800\\u0041\"}", &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR,
           "null");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\\ud800\\ud800\"}", &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR,
           "null");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\",\"params\":{\"deep\":[\"\\uDBFF\"]}}", &NO_HEADERS, 400,
           MCPAUTH_RPC_PARSE_ERROR, "null");
    /* A proper pair is a character. */
    mcpauth_rpc rpc;
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\\ud83d\\uDE00\"}", &NO_HEADERS, &rpc);
    ck_assert_str_eq(rpc.method, "\xf0\x9f\x98\x80");
    mcpauth__rpc_free(&rpc);
    /* Bad escapes are json-c's to refuse. */
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\\x41\"}", &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR, "null");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\\u12\"}", &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR, "null");
}
END_TEST

START_TEST(nul_bytes)
{
    REFUSE_BIN("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\0", &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR,
               "null");
    REFUSE_BIN("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"pi\0ng\"}", &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR,
               "null");
    REFUSE_BIN("\0{}", &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR, "null");
    /* The escape is allowed in values, not in member names, which json-c
     * cuts at the NUL ("method\u0000x" would read as "method"). */
    mcpauth_rpc rpc;
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\",\"params\":{\"v\":\"a\\u0000b\"}}", &NO_HEADERS, &rpc);
    mcpauth__rpc_free(&rpc);
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\\u0000x\":\"ping\"}", &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR,
           "null");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\",\"params\":{\"a\\u0000\" : 1}}", &NO_HEADERS, 400,
           MCPAUTH_RPC_PARSE_ERROR, "null");
}
END_TEST

/* Every string the proxy reads as a C string refuses \u0000, so that it
 * never checks a shorter text than the backend reads.  Old code: a string
 * id "a\u0000b" passed (and could name another request to a backend that
 * stops at the NUL), and an initialize proposing "2025-06-18\u0000x"
 * counted as proposing 2025-06-18. */
START_TEST(nul_escapes_in_read_strings)
{
    mcpauth_rpc_headers h = hdr(V06, NULL, NULL);
    REFUSE_MSG("{\"jsonrpc\":\"2.0\",\"id\":\"a\\u0000b\",\"method\":\"ping\"}", &h, 400,
               MCPAUTH_RPC_INVALID_REQUEST, "null", "Invalid Request: id must not contain NUL");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":\"\\u0000\",\"result\":{}}", &h, 400,
           MCPAUTH_RPC_INVALID_REQUEST, "null");
    /* already refused: method, jsonrpc, the name a policy matches */
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\\u0000x\"}", &h, 400,
           MCPAUTH_RPC_INVALID_REQUEST, "1");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"a\\u0000\"}}",
           &h, 400, MCPAUTH_RPC_INVALID_PARAMS, "1");
    mcpauth_rpc_headers h26 = hdr(V26, "tools/call", "a");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"a\\u0000b\"}}",
           &h26, 400, MCPAUTH_RPC_INVALID_PARAMS, "1");

    mcpauth_rpc rpc;
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":"
           "{\"protocolVersion\":\"2025-06-18\\u0000x\"}}", &NO_HEADERS, &rpc);
    ck_assert_str_eq(rpc.version, V25); /* an unknown proposal */
    ck_assert_int_eq(rpc.is_initialize, 1);
    mcpauth__rpc_free(&rpc);
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":"
           "{\"protocolVersion\":\"2025-06-18\"}}", &NO_HEADERS, &rpc);
    ck_assert_str_eq(rpc.version, V06);
    mcpauth__rpc_free(&rpc);
}
END_TEST

START_TEST(trailing_data)
{
    mcpauth_rpc rpc;
    ACCEPT(" \t\r\n" REQ("1", "ping") " \t\r\n", &NO_HEADERS, &rpc);
    mcpauth__rpc_free(&rpc);
    REFUSE(REQ("1", "ping") " x", &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR, "null");
    REFUSE(REQ("1", "ping") REQ("2", "ping"), &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR, "null");
    REFUSE(REQ("1", "ping") ",", &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR, "null");
    REFUSE(REQ("1", "ping") "}", &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR, "null");
    REFUSE(REQ("1", "ping") "\f", &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR, "null");
    REFUSE(REQ("1", "ping") "//", &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR, "null");
}
END_TEST

START_TEST(not_strict_json)
{
    /* Things json-c accepts even with JSON_TOKENER_STRICT: NaN, Infinity,
     * "1.", "-01", single quotes, raw control characters in strings. */
    static const char *const bodies[] = {
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\",\"params\":[NaN]}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\",\"params\":[Infinity]}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\",\"params\":[-Infinity]}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\",\"params\":[1.]}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\",\"params\":[-01]}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\",\"params\":[01]}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\",\"params\":[.5]}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\",\"params\":[+1]}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\",\"params\":[1e]}",
        "{'jsonrpc':'2.0','id':1,'method':'p'}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\",\"params\":{\"a\":'b'}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\",\"params\":[\"a\tb\"]}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\",\"params\":[\"a\nb\"]}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\",\"params\":[\"\x1f\"]}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\",\"params\":[1,]}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\",\"params\":[TRUE]}",
        "/**/{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\"}",
        "\f{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\"}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        mcpauth_rpc_error err;
        int rc = mcpauth__rpc_parse(bodies[i], strlen(bodies[i]), NULL, NULL, NULL, &err);
        ck_assert_msg(rc == -1 && err.code == MCPAUTH_RPC_PARSE_ERROR && err.status == 400 &&
                          strcmp(err.id_json, "null") == 0,
                      "body %zu: rc %d code %d", i, rc, err.code);
    }
    /* Standard numbers in all their forms are fine. */
    mcpauth_rpc rpc;
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\",\"params\":[0,-0,1.5,-2.25e10,3E+2,4e-2,0.0,true,false,null,"
           "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00Ff\"]}",
           &NO_HEADERS, &rpc);
    mcpauth__rpc_free(&rpc);
}
END_TEST

START_TEST(duplicate_members)
{
    /* json-c keeps the last value, other parsers the first: which method
     * would the server run?  Refused, at any depth. */
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"method\":\"tools/call\"}", &NO_HEADERS, 400,
           MCPAUTH_RPC_PARSE_ERROR, "null");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"\\u006dethod\":\"tools/call\"}", &NO_HEADERS,
           400, MCPAUTH_RPC_PARSE_ERROR, "null");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"id\":2,\"method\":\"p\"}", &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR,
           "null");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"a\",\"name\":\"b\"}}",
           &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR, "null");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\",\"params\":[{\"x\":{\"k\":1,\"k\":1}}]}", &NO_HEADERS, 400,
           MCPAUTH_RPC_PARSE_ERROR, "null");
    mcpauth_rpc_error err;
    const char *b = "{\"a\":1,\"a\":1}";
    ck_assert_int_eq(mcpauth__rpc_parse(b, strlen(b), NULL, NULL, NULL, &err), -1);
    ck_assert_str_eq(err.message, "Parse error: duplicate member name");
    /* The same name in different objects is fine; so are colons in strings. */
    mcpauth_rpc rpc;
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":\"a:b\",\"method\":\"p:q\",\"params\":{\"id\":{\"id\":\":\"},\"x\":[{\"id\":1},{\"id\":2}]}}",
           &NO_HEADERS, &rpc);
    ck_assert_str_eq(rpc.method, "p:q");
    mcpauth__rpc_free(&rpc);
}
END_TEST

static char *nested(int containers)
{
    static const char head[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\",\"params\":";
    size_t n = strlen(head) + 2 * (size_t)containers + 4;
    char *b = malloc(n);
    ck_assert_ptr_nonnull(b);
    size_t o = 0;
    memcpy(b, head, strlen(head));
    o += strlen(head);
    for (int i = 0; i < containers; i++)
        b[o++] = '[';
    b[o++] = '1';
    for (int i = 0; i < containers; i++)
        b[o++] = ']';
    b[o++] = '}';
    b[o] = '\0';
    return b;
}

START_TEST(nesting)
{
    /* json-c counts levels including the innermost value: the top object
     * is 1, params 2, and the 1 in params:[[1]] is 4. */
    mcpauth_rpc_limits lim = {4, 0};
    mcpauth_rpc rpc;
    char *b = nested(2);
    ACCEPT_LIM(b, &NO_HEADERS, &lim, &rpc);
    mcpauth__rpc_free(&rpc);
    free(b);
    b = nested(3);
    REFUSE_LIM(b, &NO_HEADERS, &lim, 400, MCPAUTH_RPC_PARSE_ERROR, "null");
    mcpauth_rpc_error err;
    ck_assert_int_eq(mcpauth__rpc_parse(b, strlen(b), NULL, &lim, NULL, &err), -1);
    ck_assert_str_eq(err.message, "Parse error: nesting too deep");
    free(b);

    /* Default 64, also when limits gives 0. */
    lim.max_depth = 0;
    b = nested(62);
    ACCEPT(b, &NO_HEADERS, &rpc);
    mcpauth__rpc_free(&rpc);
    ACCEPT_LIM(b, &NO_HEADERS, &lim, &rpc);
    mcpauth__rpc_free(&rpc);
    free(b);
    b = nested(63);
    REFUSE(b, &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR, "null");
    REFUSE_LIM(b, &NO_HEADERS, &lim, 400, MCPAUTH_RPC_PARSE_ERROR, "null");
    free(b);
    b = nested(100000);
    REFUSE(b, &NO_HEADERS, 400, MCPAUTH_RPC_PARSE_ERROR, "null");
    free(b);
}
END_TEST

/* ------------------------------------------------------------ era 2026 */

START_TEST(era_2026_request)
{
    mcpauth_rpc_headers h = hdr(V26, "tools/list", NULL);
    mcpauth_rpc rpc;
    ACCEPT(REQ("1", "tools/list"), &h, &rpc);
    ck_assert_int_eq(rpc.era, MCPAUTH_ERA_2026);
    ck_assert_str_eq(rpc.version, V26);
    ck_assert_int_eq(rpc.kind, MCPAUTH_MSG_REQUEST);
    ck_assert_str_eq(rpc.method, "tools/list");
    ck_assert_str_eq(rpc.id_json, "1");
    ck_assert_int_eq(rpc.batch, 0);
    ck_assert_uint_eq(rpc.count, 1);
    mcpauth__rpc_free(&rpc);

    h = hdr(V26, "notifications/cancelled", NULL);
    ACCEPT("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":1}}", &h, &rpc);
    ck_assert_int_eq(rpc.kind, MCPAUTH_MSG_NOTIFICATION);
    ck_assert_str_eq(rpc.id_json, "null");
    mcpauth__rpc_free(&rpc);

    /* initialize does not exist in 2026-07-28: an ordinary method. */
    h = hdr(V26, "initialize", NULL);
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-06-18\"}}",
           &h, &rpc);
    ck_assert_int_eq(rpc.era, MCPAUTH_ERA_2026);
    ck_assert_int_eq(rpc.is_initialize, 0);
    ck_assert_str_eq(rpc.version, V26);
    mcpauth__rpc_free(&rpc);
}
END_TEST

START_TEST(era_2026_method_header)
{
    mcpauth_rpc_headers h = hdr(V26, NULL, NULL);
    REFUSE_MSG(REQ("1", "tools/list"), &h, 400, MCPAUTH_RPC_HEADER_MISMATCH, "1",
               "Mcp-Method header does not match the body");
    h = hdr(V26, "tools/call", NULL);
    REFUSE(REQ("1", "tools/list"), &h, 400, MCPAUTH_RPC_HEADER_MISMATCH, "1");
    h = hdr(V26, "Tools/List", NULL); /* byte for byte */
    REFUSE(REQ("\"k\"", "tools/list"), &h, 400, MCPAUTH_RPC_HEADER_MISMATCH, "\"k\"");
    h = hdr(V26, "tools/list ", NULL);
    REFUSE(REQ("1", "tools/list"), &h, 400, MCPAUTH_RPC_HEADER_MISMATCH, "1");
    h = hdr(V26, "", NULL);
    REFUSE(REQ("1", "tools/list"), &h, 400, MCPAUTH_RPC_HEADER_MISMATCH, "1");
    h = hdr(V26, NULL, NULL);
    REFUSE("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\"}", &h, 400, MCPAUTH_RPC_HEADER_MISMATCH,
           "null");
}
END_TEST

START_TEST(era_2026_name_header)
{
    static const char call[] =
        "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{}}}";
    mcpauth_rpc_headers h = hdr(V26, "tools/call", "echo");
    mcpauth_rpc rpc;
    ACCEPT(call, &h, &rpc);
    ck_assert_str_eq(rpc.name, "echo");
    mcpauth__rpc_free(&rpc);
    h = hdr(V26, "tools/call", NULL);
    REFUSE_MSG(call, &h, 400, MCPAUTH_RPC_HEADER_MISMATCH, "3", "Mcp-Name header does not match the body");
    h = hdr(V26, "tools/call", "ech");
    REFUSE(call, &h, 400, MCPAUTH_RPC_HEADER_MISMATCH, "3");
    h = hdr(V26, "tools/call", "echo ");
    REFUSE(call, &h, 400, MCPAUTH_RPC_HEADER_MISMATCH, "3");
    h = hdr(V26, "tools/call", "ECHO");
    REFUSE(call, &h, 400, MCPAUTH_RPC_HEADER_MISMATCH, "3");
    h = hdr(V26, "tools/call", "");
    REFUSE(call, &h, 400, MCPAUTH_RPC_HEADER_MISMATCH, "3");

    /* prompts/get: params.name. */
    h = hdr(V26, "prompts/get", "greet");
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"prompts/get\",\"params\":{\"name\":\"greet\"}}", &h, &rpc);
    ck_assert_str_eq(rpc.name, "greet");
    mcpauth__rpc_free(&rpc);

    /* A name header with no name to match is refused too. */
    h = hdr(V26, "tools/list", "echo");
    REFUSE(REQ("1", "tools/list"), &h, 400, MCPAUTH_RPC_HEADER_MISMATCH, "1");
    h = hdr(V26, "tools/list", "");
    REFUSE(REQ("1", "tools/list"), &h, 400, MCPAUTH_RPC_HEADER_MISMATCH, "1");

    /* Mcp-Method is checked first. */
    h = hdr(V26, "tools/list", "echo");
    REFUSE_MSG(call, &h, 400, MCPAUTH_RPC_HEADER_MISMATCH, "3", "Mcp-Method header does not match the body");
}
END_TEST

START_TEST(era_2026_uri)
{
    static const char read[] =
        "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"resources/read\",\"params\":{\"uri\":\"file:///etc/motd\"}}";
    mcpauth_rpc_headers h = hdr(V26, "resources/read", "file:///etc/motd");
    mcpauth_rpc rpc;
    ACCEPT(read, &h, &rpc);
    ck_assert_str_eq(rpc.name, "file:///etc/motd");
    mcpauth__rpc_free(&rpc);
    h = hdr(V26, "resources/read", "file:///etc/passwd");
    REFUSE(read, &h, 400, MCPAUTH_RPC_HEADER_MISMATCH, "5");
    h = hdr(V26, "resources/read", NULL);
    REFUSE(read, &h, 400, MCPAUTH_RPC_HEADER_MISMATCH, "5");
    h = hdr(V26, "resources/subscribe", "u:1");
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"resources/subscribe\",\"params\":{\"uri\":\"u:1\"}}", &h, &rpc);
    ck_assert_str_eq(rpc.name, "u:1");
    mcpauth__rpc_free(&rpc);
    /* The uri, not a name member, is what resources/read carries. */
    h = hdr(V26, "resources/read", "n");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"resources/read\",\"params\":{\"uri\":\"u\",\"name\":\"n\"}}", &h,
           400, MCPAUTH_RPC_HEADER_MISMATCH, "5");
    /* A name-carrying method without its name cannot be matched. */
    h = hdr(V26, "resources/read", "u");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"resources/read\",\"params\":{}}", &h, 400,
           MCPAUTH_RPC_INVALID_PARAMS, "5");
}
END_TEST

START_TEST(era_2026_name_base64)
{
    /* SEP-2243: values that cannot be a plain header arrive as
     * =?base64?...?= (standard alphabet) and are compared decoded. */
    static const char body[] =
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"caf\xc3\xa9\"}}";
    mcpauth_rpc_headers h = hdr(V26, "tools/call", "=?base64?Y2Fmw6k=?=");
    mcpauth_rpc rpc;
    ACCEPT(body, &h, &rpc);
    ck_assert_str_eq(rpc.name, "caf\xc3\xa9");
    mcpauth__rpc_free(&rpc);
    h = hdr(V26, "tools/call", "=?base64?Y2Fmw6k?="); /* unpadded */
    ACCEPT(body, &h, &rpc);
    mcpauth__rpc_free(&rpc);
    h = hdr(V26, "tools/call", "caf\xc3\xa9"); /* raw bytes, equal byte for byte */
    ACCEPT(body, &h, &rpc);
    mcpauth__rpc_free(&rpc);
    h = hdr(V26, "tools/call", "=?base64?Y2FmZQ==?="); /* "cafe" */
    REFUSE(body, &h, 400, MCPAUTH_RPC_HEADER_MISMATCH, "1");
    h = hdr(V26, "tools/call", "=?base64?Y2Fmw6l=?="); /* non-zero spare bits */
    REFUSE(body, &h, 400, MCPAUTH_RPC_HEADER_MISMATCH, "1");
    h = hdr(V26, "tools/call", "=?base64?Y2Fm*6k=?=");
    REFUSE(body, &h, 400, MCPAUTH_RPC_HEADER_MISMATCH, "1");
    h = hdr(V26, "tools/call", "=?base64?Y?=");
    REFUSE(body, &h, 400, MCPAUTH_RPC_HEADER_MISMATCH, "1");
    h = hdr(V26, "tools/call", "=?base64?\?="); /* empty value */
    REFUSE(body, &h, 400, MCPAUTH_RPC_HEADER_MISMATCH, "1");
    /* A name with surrounding spaces, the spec's example of the marker
     * itself, and "/" from the standard alphabet. */
    h = hdr(V26, "tools/call", "=?base64?IGEg?=");
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\" a \"}}", &h, &rpc);
    mcpauth__rpc_free(&rpc);
    h = hdr(V26, "tools/call", "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=");
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"=?base64?literal?=\"}}", &h,
           &rpc);
    mcpauth__rpc_free(&rpc);
    /* Anything wearing the markers is encoded: no literal match. */
    h = hdr(V26, "tools/call", "=?base64?abc?=");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"=?base64?abc?=\"}}", &h, 400,
           MCPAUTH_RPC_HEADER_MISMATCH, "1");
}
END_TEST

START_TEST(era_2026_no_responses)
{
    mcpauth_rpc_headers h = hdr(V26, NULL, NULL);
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}", &h, 400, MCPAUTH_RPC_INVALID_REQUEST, "1");
    h = hdr(V26, "x", "y");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":\"s\",\"error\":{\"code\":1,\"message\":\"m\"}}", &h, 400,
           MCPAUTH_RPC_INVALID_REQUEST, "\"s\"");
}
END_TEST

START_TEST(era_2026_meta_version)
{
    mcpauth_rpc_headers h = hdr(V26, "tools/list", NULL);
    mcpauth_rpc rpc;
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{\"_meta\":{"
           "\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\"}}}",
           &h, &rpc);
    mcpauth__rpc_free(&rpc);
    REFUSE_MSG("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{\"_meta\":{"
               "\"io.modelcontextprotocol/protocolVersion\":\"2025-06-18\"}}}",
               &h, 400, MCPAUTH_RPC_HEADER_MISMATCH, "1", "MCP-Protocol-Version header does not match the body");
    REFUSE("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{\"_meta\":{"
           "\"io.modelcontextprotocol/protocolVersion\":null}}}",
           &h, 400, MCPAUTH_RPC_HEADER_MISMATCH, "1");
    /* Era 2025 does not look at it. */
    h = hdr(V06, NULL, NULL);
    ACCEPT("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{\"_meta\":{"
           "\"io.modelcontextprotocol/protocolVersion\":\"x\"}}}",
           &h, &rpc);
    mcpauth__rpc_free(&rpc);
}
END_TEST

/* ------------------------------------------------------------ lifetime */

START_TEST(strings_outlive_body)
{
    static const char src[] =
        "{\"jsonrpc\":\"2.0\",\"id\":\"abc\",\"method\":\"tools/call\",\"params\":{\"name\":\"echo\"}}";
    char *body = strdup(src);
    ck_assert_ptr_nonnull(body);
    mcpauth_rpc rpc;
    ACCEPT(body, &NO_HEADERS, &rpc);
    memset(body, 'Z', strlen(body));
    free(body);
    ck_assert_str_eq(rpc.method, "tools/call");
    ck_assert_str_eq(rpc.name, "echo");
    ck_assert_str_eq(rpc.id_json, "\"abc\"");
    mcpauth__rpc_free(&rpc);

    mcpauth_rpc zero;
    memset(&zero, 0, sizeof zero);
    mcpauth__rpc_free(&zero);
    mcpauth__rpc_free(NULL);
}
END_TEST

/* ------------------------------------------------------------ error document */

START_TEST(error_json)
{
    char buf[256];
    static const char want[] = "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32600,\"message\":\"Invalid Request\"},\"id\":7}";
    ck_assert_int_eq(mcpauth__rpc_error_json(buf, sizeof buf, -32600, "Invalid Request", "7"), (int)strlen(want));
    ck_assert_str_eq(buf, want);

    ck_assert_int_ge(mcpauth__rpc_error_json(buf, sizeof buf, -32700, "Parse error", "null"), 0);
    ck_assert_str_eq(buf, "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32700,\"message\":\"Parse error\"},\"id\":null}");
    ck_assert_int_ge(mcpauth__rpc_error_json(buf, sizeof buf, -32022, "Unsupported MCP-Protocol-Version", NULL), 0);
    ck_assert_str_eq(buf, "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32022,\"message\":\"Unsupported "
                          "MCP-Protocol-Version\"},\"id\":null}");
    /* A string id goes in as JSON, not re-quoted. */
    ck_assert_int_ge(mcpauth__rpc_error_json(buf, sizeof buf, -32020, "m", "\"a\\\"b/c\""), 0);
    ck_assert_str_eq(buf, "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32020,\"message\":\"m\"},\"id\":\"a\\\"b/c\"}");
    /* The message is escaped; slashes are left alone. */
    ck_assert_int_ge(mcpauth__rpc_error_json(buf, sizeof buf, -32000, "a \"b\"\n</c>", "-3"), 0);
    ck_assert_str_eq(buf,
                     "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32000,\"message\":\"a \\\"b\\\"\\n</c>\"},\"id\":-3}");
    /* Something that is not an id cannot inject members. */
    ck_assert_int_ge(mcpauth__rpc_error_json(buf, sizeof buf, -32600, "m", "1,\"x\":2"), 0);
    ck_assert_str_eq(buf, "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32600,\"message\":\"m\"},\"id\":null}");
    ck_assert_int_ge(mcpauth__rpc_error_json(buf, sizeof buf, -32600, "m", "{}"), 0);
    ck_assert_str_eq(buf, "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32600,\"message\":\"m\"},\"id\":null}");
    ck_assert_int_ge(mcpauth__rpc_error_json(buf, sizeof buf, -32600, NULL, ""), 0);
    ck_assert_str_eq(buf, "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32600,\"message\":\"\"},\"id\":null}");
}
END_TEST

/* Regression: an id of 256 control characters is allowed, but its JSON text
 * (each byte as \u00XX) was longer than the error writer accepted, so every
 * error answer carried "id":null and the client could not match it. */
START_TEST(error_json_keeps_escaped_long_id)
{
    static char id[6 * 256 + 3], buf[8192];
    size_t n = 0;
    id[n++] = '"';
    for (int i = 0; i < 256; i++)
        n += (size_t)sprintf(id + n, "\\u0001");
    id[n++] = '"';
    id[n] = '\0';
    ck_assert_int_ge(mcpauth__rpc_error_json(buf, sizeof buf, -32600, "m", id), 0);
    ck_assert_ptr_null(strstr(buf, "\"id\":null"));
    ck_assert_ptr_nonnull(strstr(buf, "\"id\":\"\\u0001"));
}
END_TEST

START_TEST(error_json_small_buffer)
{
    static const char want[] = "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32600,\"message\":\"Invalid Request\"},\"id\":7}";
    char buf[sizeof want + 8];
    memset(buf, 'Q', sizeof buf);
    ck_assert_int_eq(mcpauth__rpc_error_json(buf, sizeof want - 1, -32600, "Invalid Request", "7"), -1);
    ck_assert_int_eq(buf[0], '\0');
    ck_assert_int_eq(buf[sizeof want - 1], 'Q'); /* nothing written past cap */
    ck_assert_int_eq(mcpauth__rpc_error_json(buf, 1, -32600, "Invalid Request", "7"), -1);
    ck_assert_int_eq(mcpauth__rpc_error_json(buf, 0, -32600, "Invalid Request", "7"), -1);
    ck_assert_int_eq(mcpauth__rpc_error_json(NULL, 100, -32600, "Invalid Request", "7"), -1);
    ck_assert_int_eq(mcpauth__rpc_error_json(buf, sizeof want, -32600, "Invalid Request", "7"), (int)sizeof want - 1);
    ck_assert_str_eq(buf, want);
}
END_TEST

START_TEST(refusal_to_document)
{
    /* What the proxy does with a refusal: err straight into the reply. */
    static const char body[] = "{\"jsonrpc\":\"2.0\",\"id\":\"q\\\"1\",\"method\":\"ping\",\"params\":\"x\"}";
    mcpauth_rpc_error err;
    ck_assert_int_eq(mcpauth__rpc_parse(body, strlen(body), NULL, NULL, NULL, &err), -1);
    char buf[300];
    ck_assert_int_gt(mcpauth__rpc_error_json(buf, sizeof buf, err.code, err.message, err.id_json), 0);
    ck_assert_str_eq(buf, "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32602,\"message\":\"Invalid params: params "
                          "must be an object or array\"},\"id\":\"q\\\"1\"}");
}
END_TEST

Suite *jsonrpc_suite(void)
{
    Suite *s = suite_create("jsonrpc");
    TCase *tc = tcase_create("versions");
    tcase_add_test(tc, versions_supported);
    tcase_add_test(tc, unsupported_header);
    suite_add_tcase(s, tc);

    tc = tcase_create("era2025");
    tcase_add_test(tc, request_2025);
    tcase_add_test(tc, notification_2025);
    tcase_add_test(tc, response_2025);
    tcase_add_test(tc, names_2025);
    tcase_add_test(tc, headers_ignored_2025);
    tcase_add_test(tc, initialize_without_header);
    tcase_add_test(tc, initialize_with_header);
    suite_add_tcase(s, tc);

    tc = tcase_create("batch");
    tcase_add_test(tc, batch_2025_03_26);
    tcase_add_test(tc, batch_refused_later_revisions);
    tcase_add_test(tc, batch_limits);
    tcase_add_test(tc, batch_contents);
    suite_add_tcase(s, tc);

    tc = tcase_create("envelope");
    tcase_add_test(tc, jsonrpc_member);
    tcase_add_test(tc, ids);
    tcase_add_test(tc, id_json_in_errors);
    tcase_add_test(tc, methods);
    tcase_add_test(tc, params);
    tcase_add_test(tc, responses);
    tcase_add_test(tc, top_level);
    suite_add_tcase(s, tc);

    tc = tcase_create("hostile");
    tcase_add_test(tc, parse_error_message);
    tcase_add_test(tc, invalid_utf8);
    tcase_add_test(tc, surrogate_escapes);
    tcase_add_test(tc, nul_bytes);
    tcase_add_test(tc, nul_escapes_in_read_strings);
    tcase_add_test(tc, trailing_data);
    tcase_add_test(tc, not_strict_json);
    tcase_add_test(tc, duplicate_members);
    tcase_add_test(tc, nesting);
    suite_add_tcase(s, tc);

    tc = tcase_create("era2026");
    tcase_add_test(tc, era_2026_request);
    tcase_add_test(tc, era_2026_method_header);
    tcase_add_test(tc, era_2026_name_header);
    tcase_add_test(tc, era_2026_uri);
    tcase_add_test(tc, era_2026_name_base64);
    tcase_add_test(tc, era_2026_no_responses);
    tcase_add_test(tc, era_2026_meta_version);
    suite_add_tcase(s, tc);

    tc = tcase_create("lifetime");
    tcase_add_test(tc, strings_outlive_body);
    suite_add_tcase(s, tc);

    tc = tcase_create("error_json");
    tcase_add_test(tc, error_json);
    tcase_add_test(tc, error_json_small_buffer);
    tcase_add_test(tc, error_json_keeps_escaped_long_id);
    tcase_add_test(tc, refusal_to_document);
    suite_add_tcase(s, tc);
    return s;
}
