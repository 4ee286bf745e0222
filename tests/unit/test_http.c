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
