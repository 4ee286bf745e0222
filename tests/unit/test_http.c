/* The response writer: status line, headers, bodies, and refusal of headers
 * that could split a response. */
#include <string.h>

#include <mcpauth/http.h>

#include "memhttp.h"
#include "suites.h"

START_TEST(request_init_splits_uri)
{
    static const char *const params[] = {"REQUEST_METHOD", "GET", "REQUEST_URI",
                                         "/a/b?x=1&y=2", "REMOTE_ADDR", "127.0.0.1", NULL};
    memhttp m;
    mcpauth_request req;
    mcpauth_response resp;
    memhttp_setup(&m, params, &req, &resp);
    ck_assert_str_eq(req.method, "GET");
    ck_assert_str_eq(req.path, "/a/b");
    ck_assert_str_eq(req.query, "x=1&y=2");
    ck_assert_str_eq(req.remote_addr, "127.0.0.1");
    ck_assert_ptr_null(mcpauth_request_param(&req, "HTTP_AUTHORIZATION"));
}
END_TEST

START_TEST(request_init_without_request_uri)
{
    static const char *const params[] = {"SCRIPT_NAME", "/s", "PATH_INFO", "/p", "QUERY_STRING",
                                         "q=1", NULL};
    memhttp m;
    mcpauth_request req;
    mcpauth_response resp;
    memhttp_setup(&m, params, &req, &resp);
    ck_assert_str_eq(req.method, "");
    ck_assert_str_eq(req.path, "/s/p");
    ck_assert_str_eq(req.query, "q=1");
}
END_TEST

START_TEST(request_uri_too_long)
{
    static char uri[4000];
    memset(uri, 'a', sizeof uri - 1);
    uri[0] = '/';
    const char *const params[] = {"REQUEST_URI", uri, NULL};
    memhttp m;
    memset(&m, 0, sizeof m);
    m.params = params;
    mcpauth_request req;
    ck_assert_int_eq(mcpauth_request_init(&req, memhttp_param, NULL, &m), -1);
}
END_TEST

static int init_path(const char *uri, mcpauth_request *req, memhttp *m)
{
    static const char *params[5];
    params[0] = "REQUEST_URI";
    params[1] = uri;
    params[2] = "REMOTE_ADDR";
    params[3] = "127.0.0.1";
    params[4] = NULL;
    memset(m, 0, sizeof *m);
    m->params = params;
    return mcpauth_request_init(req, memhttp_param, NULL, m);
}

/* Regression (outside review): the gate matched the raw REQUEST_URI while
 * the server served the normalised path, so a token for /gate/a opened
 * /gate/a/../b/.  Every such form is refused before any resource is picked. */
START_TEST(ambiguous_paths_refused)
{
    static const char *const bad[] = {
        "/gate/a/../b/index.html", "/gate/a/%2e%2e/b/index.html", "/gate/a/%2E%2E/b/index.html",
        "/gate/a/..%2fb/index.html", "/gate/a/..%2Fb/index.html", "/gate/a/.%2e/b/index.html",
        "/gate/a/%252e%252e/b/index.html", "/gate/a/%252fb", "/gate/a//../b/index.html",
        "/gate//b/index.html", "/gate/a/..\\b/index.html", "/gate/a/%5c..%5cb/index.html",
        "/gate/a;/../b/index.html", "/gate/a/..;/b/index.html", "/gate/a;x/index.html",
        "/gate/a/./index.html", "/gate/a/.", "/gate/a/..", "/gate/a/%2e", "/gate/a/%00/x",
        "/gate/a/%0a", "/gate/a/\x01", "/gate/a/%zz", "/gate/a/%4", "/gate/a/%", "gate/a",
        "", "/gate/a/\xc3\xa9", "/gate/a#/../b", NULL};
    for (const char *const *u = bad; *u; u++) {
        memhttp m;
        mcpauth_request req;
        ck_assert_msg(init_path(*u, &req, &m) == -2, "accepted %s", *u);
        ck_assert_ptr_nonnull(req.path_error);
        ck_assert_str_eq(req.path, "");
    }
}
END_TEST

START_TEST(plain_paths_decoded)
{
    static const char *const cases[][2] = {
        {"/gate/a/index.html", "/gate/a/index.html"}, {"/gate/%61/x", "/gate/a/x"},
        {"/mcp/files", "/mcp/files"}, {"/mcp/files/", "/mcp/files/"},
        {"/a%20b/c", "/a b/c"}, {"/a.b/..c/c..", "/a.b/..c/c.."}, {"/", "/"},
        {"/.well-known/oauth-protected-resource/mcp/files?x=%2e%2e",
         "/.well-known/oauth-protected-resource/mcp/files"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memhttp m;
        mcpauth_request req;
        ck_assert_msg(init_path(cases[i][0], &req, &m) == 0, "refused %s", cases[i][0]);
        ck_assert_str_eq(req.path, cases[i][1]);
    }
}
END_TEST

START_TEST(refused_path_answers_400)
{
    memhttp m;
    mcpauth_request req;
    mcpauth_response resp;
    int rc = init_path("/gate/a/%2e%2e/b", &req, &m);
    ck_assert_int_eq(rc, -2);
    mcpauth_response_init(&resp, (mcpauth_sink){memhttp_write, NULL, &m});
    mcpauth_request_refuse(&req, rc, &resp);
    ck_assert_ptr_nonnull(strstr(m.out, "Status: 400 Bad Request\r\n"));
    ck_assert_ptr_nonnull(strstr(memhttp_body(&m), "\"error\":\"invalid_request\""));
}
END_TEST

START_TEST(init_resets_alive)
{
    memhttp m;
    mcpauth_request req;
    memset(&req, 0xff, sizeof req); /* whatever the stack held */
    ck_assert_int_eq(init_path("/x", &req, &m), 0);
    ck_assert_ptr_null(req.alive);
    ck_assert_int_eq(mcpauth_request_alive(&req), 1);
}
END_TEST

START_TEST(json_response)
{
    memhttp m;
    mcpauth_request req;
    mcpauth_response resp;
    memhttp_setup(&m, NULL, &req, &resp);
    mcpauth_response_header(&resp, "X-Test", "1");
    mcpauth_response_json(&resp, 201, "{\"a\":1}");
    ck_assert_str_eq(m.out, "Status: 201 Created\r\nX-Test: 1\r\nContent-Type: application/json\r\n"
                            "Content-Length: 7\r\n\r\n{\"a\":1}");
}
END_TEST

START_TEST(error_response_escapes_description)
{
    memhttp m;
    mcpauth_request req;
    mcpauth_response resp;
    memhttp_setup(&m, NULL, &req, &resp);
    mcpauth_response_error(&resp, 400, "invalid_request", "bad \"x\" at /path");
    ck_assert_ptr_nonnull(strstr(m.out, "Status: 400 Bad Request\r\n"));
    ck_assert_ptr_nonnull(strstr(m.out, "Cache-Control: no-store\r\n"));
    ck_assert_str_eq(memhttp_body(&m),
                     "{\"error\":\"invalid_request\",\"error_description\":\"bad \\\"x\\\" at /path\"}");
}
END_TEST

START_TEST(header_injection_refused)
{
    memhttp m;
    mcpauth_request req;
    mcpauth_response resp;
    memhttp_setup(&m, NULL, &req, &resp);
    mcpauth_response_header(&resp, "Location", "/x\r\nSet-Cookie: a=b");
    mcpauth_response_json(&resp, 200, "{}");
    ck_assert_ptr_null(strstr(m.out, "Set-Cookie"));
    ck_assert_ptr_nonnull(strstr(m.out, "Status: 500 Internal Server Error\r\n"));
}
END_TEST

START_TEST(header_bad_name_refused)
{
    memhttp m;
    mcpauth_request req;
    mcpauth_response resp;
    memhttp_setup(&m, NULL, &req, &resp);
    mcpauth_response_header(&resp, "Bad Name", "v");
    mcpauth_response_send(&resp, NULL, 0);
    ck_assert_ptr_nonnull(strstr(m.out, "Status: 500"));
    ck_assert_ptr_null(strstr(m.out, "Bad Name"));
}
END_TEST

START_TEST(header_overflow_refused)
{
    memhttp m;
    mcpauth_request req;
    mcpauth_response resp;
    memhttp_setup(&m, NULL, &req, &resp);
    static char big[MCPAUTH_RESPONSE_HEAD_MAX];
    memset(big, 'v', sizeof big - 1);
    mcpauth_response_header(&resp, "X-Big", big);
    mcpauth_response_send(&resp, "x", 1);
    ck_assert_ptr_nonnull(strstr(m.out, "Status: 500"));
}
END_TEST

START_TEST(streaming_writes_head_once)
{
    memhttp m;
    mcpauth_request req;
    mcpauth_response resp;
    memhttp_setup(&m, NULL, &req, &resp);
    mcpauth_response_header(&resp, "Content-Type", "text/event-stream");
    mcpauth_response_write(&resp, "data: 1\n\n", 9);
    mcpauth_response_header(&resp, "X-Late", "ignored");
    mcpauth_response_write(&resp, "data: 2\n\n", 9);
    ck_assert_str_eq(m.out, "Status: 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
                            "data: 1\n\ndata: 2\n\n");
}
END_TEST

START_TEST(reasons)
{
    ck_assert_str_eq(mcpauth_http_reason(401), "Unauthorized");
    ck_assert_str_eq(mcpauth_http_reason(405), "Method Not Allowed");
    ck_assert_str_eq(mcpauth_http_reason(599), "Unknown");
}
END_TEST

Suite *http_suite(void)
{
    Suite *s = suite_create("http");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, request_init_splits_uri);
    tcase_add_test(tc, request_init_without_request_uri);
    tcase_add_test(tc, request_uri_too_long);
    tcase_add_test(tc, ambiguous_paths_refused);
    tcase_add_test(tc, plain_paths_decoded);
    tcase_add_test(tc, refused_path_answers_400);
    tcase_add_test(tc, init_resets_alive);
    tcase_add_test(tc, json_response);
    tcase_add_test(tc, error_response_escapes_description);
    tcase_add_test(tc, header_injection_refused);
    tcase_add_test(tc, header_bad_name_refused);
    tcase_add_test(tc, header_overflow_refused);
    tcase_add_test(tc, streaming_writes_head_once);
    tcase_add_test(tc, reasons);
    suite_add_tcase(s, tc);
    return s;
}
