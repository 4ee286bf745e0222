/* The one canonicalization rule set for resource URIs. */
#include <stdlib.h>
#include <string.h>

#include "uri.h"

#include "suites.h"

static const struct {
    const char *in;
    unsigned flags;
    const char *out; /* NULL: refused with reason `why` */
    const char *why;
} cases[] = {
    {"https://mcp.example.com/mcp", 0, "https://mcp.example.com/mcp", NULL},
    {"HTTPS://MCP.EXAMPLE.COM/Mcp", 0, "https://mcp.example.com/Mcp", NULL}, /* path keeps case */
    {"https://mcp.example.com:443/mcp", 0, "https://mcp.example.com/mcp", NULL},
    {"https://mcp.example.com:8443/mcp", 0, "https://mcp.example.com:8443/mcp", NULL},
    {"http://127.0.0.1:80/mcp", 0, "http://127.0.0.1/mcp", NULL},
    {"https://mcp.example.com/mcp/", 0, "https://mcp.example.com/mcp", NULL},
    {"https://mcp.example.com/mcp//", 0, "https://mcp.example.com/mcp", NULL},
    {"https://mcp.example.com/mcp/", MCPAUTH_URI_KEEP_SLASH, "https://mcp.example.com/mcp/", NULL},
    {"https://mcp.example.com", MCPAUTH_URI_KEEP_SLASH, "https://mcp.example.com", NULL},
    {"https://mcp.example.com/", 0, "https://mcp.example.com", NULL},
    {"http://localhost:3000/mcp", 0, "http://localhost:3000/mcp", NULL},
    {"http://LocalHost:3000/mcp", 0, "http://localhost:3000/mcp", NULL},
    {"http://127.8.9.10/mcp", 0, "http://127.8.9.10/mcp", NULL},
    {"http://[::1]:8080/mcp", 0, "http://[::1]:8080/mcp", NULL},
    {"https://mcp.example.com/a%2Fb", 0, "https://mcp.example.com/a%2Fb", NULL},
    {"https://docs.example.com/x?y=1", MCPAUTH_URI_ALLOW_QUERY, "https://docs.example.com/x?y=1", NULL},
    {"http://backend.internal:9000/mcp", MCPAUTH_URI_ANY_HTTP, "http://backend.internal:9000/mcp", NULL},
    {"http://mcp.example.com/mcp", 0, NULL, "must use https (http is allowed only for loopback hosts)"},
    {"http://128.0.0.1/mcp", 0, NULL, "must use https (http is allowed only for loopback hosts)"},
    {"http://localhost.evil.com/mcp", 0, NULL, "must use https (http is allowed only for loopback hosts)"},
    {"http://[::2]/mcp", 0, NULL, "must use https (http is allowed only for loopback hosts)"},
    {"", 0, NULL, "is empty"},
    {"mcp.example.com/mcp", 0, NULL, "must be an absolute http:// or https:// URI"},
    {"https:/mcp.example.com/mcp", 0, NULL, "must be an absolute http:// or https:// URI"},
    {"wss://mcp.example.com/mcp", 0, NULL, "must be an absolute http:// or https:// URI"},
    {"https://mcp.example.com/mcp#frag", 0, NULL, "must not have a fragment"},
    {"https://mcp.example.com/mcp?a=b", 0, NULL, "must not have a query"},
    {"https://u:p@mcp.example.com/mcp", 0, NULL, "must not contain user information"},
    {"https://mcp.example.com/./mcp", 0, NULL, "must not contain \".\" or \"..\" path segments"},
    {"https://mcp.example.com/mcp/..", 0, NULL, "must not contain \".\" or \"..\" path segments"},
    {"https://mcp.example.com/m cp", 0, NULL, "contains a space, control or non-ASCII character"},
    {"https://mcp.example.com/\xc3\xa9", 0, NULL, "contains a space, control or non-ASCII character"},
    {"https://mcp.example.com/mcp\r\nX: y", 0, NULL, "contains a space, control or non-ASCII character"},
    {"https:///mcp", 0, NULL, "has no host"},
    {"https://", 0, NULL, "has no host"},
    {"https://?x", MCPAUTH_URI_ALLOW_QUERY, NULL, "has no host"},
    {"https://mcp.example.com:0/mcp", 0, NULL, "has an invalid port"},
    {"https://mcp.example.com:99999/mcp", 0, NULL, "is not a valid URI"},
    /* found by fuzzing (tests/fuzz, harness uri): curl decoded the escape
     * into a raw 0x80 byte in the "canonical" host, which a second
     * canonicalization refused */
    {"http://s%80?", MCPAUTH_URI_ALLOW_QUERY | MCPAUTH_URI_ANY_HTTP, NULL,
     "must not have an IPv6 zone or encoded host"},
    {"https://mcp%2Eexample.com/mcp", 0, NULL, "must not have an IPv6 zone or encoded host"},
    {"http://%6cocalhost/mcp", 0, NULL, "must not have an IPv6 zone or encoded host"},
    {"https://[fe80::1%25eth0]/mcp", 0, NULL, "must not have an IPv6 zone or encoded host"},
    {"https://mcp.example.com/a%80b", 0, "https://mcp.example.com/a%80b", NULL},
};

START_TEST(canonicalize)
{
    const char *why = NULL;
    char *out = mcpauth__uri_canonicalize(cases[_i].in, cases[_i].flags, &why);
    if (cases[_i].out) {
        ck_assert_msg(out != NULL, "\"%s\" refused: %s", cases[_i].in, why);
        ck_assert_str_eq(out, cases[_i].out);
    } else {
        ck_assert_msg(out == NULL, "\"%s\" accepted as \"%s\"", cases[_i].in, out);
        ck_assert_str_eq(why, cases[_i].why);
    }
    free(out);
}
END_TEST

START_TEST(canonical_is_fixed_point)
{
    /* Canonicalizing twice changes nothing, so comparisons are stable. */
    if (!cases[_i].out)
        return;
    char *once = mcpauth__uri_canonicalize(cases[_i].in, cases[_i].flags, NULL);
    char *twice = mcpauth__uri_canonicalize(once, cases[_i].flags, NULL);
    ck_assert_ptr_nonnull(twice);
    ck_assert_str_eq(once, twice);
    free(once);
    free(twice);
}
END_TEST

START_TEST(too_long)
{
    char buf[2100] = "https://mcp.example.com/";
    memset(buf + strlen(buf), 'a', sizeof buf - strlen(buf) - 1);
    buf[sizeof buf - 1] = '\0';
    const char *why;
    ck_assert_ptr_null(mcpauth__uri_canonicalize(buf, 0, &why));
    ck_assert_str_eq(why, "is longer than 2000 characters");
}
END_TEST

START_TEST(split)
{
    char *o, *p;
    ck_assert_int_eq(mcpauth__uri_split("https://h.example:8443/a/b", &o, &p), 0);
    ck_assert_str_eq(o, "https://h.example:8443");
    ck_assert_str_eq(p, "/a/b");
    free(o);
    free(p);
    ck_assert_int_eq(mcpauth__uri_split("https://h.example", &o, &p), 0);
    ck_assert_str_eq(o, "https://h.example");
    ck_assert_str_eq(p, "");
    free(o);
    free(p);
}
END_TEST

START_TEST(loopback)
{
    ck_assert(mcpauth__uri_host_is_loopback("localhost"));
    ck_assert(mcpauth__uri_host_is_loopback("127.0.0.1"));
    ck_assert(mcpauth__uri_host_is_loopback("127.255.0.9"));
    ck_assert(mcpauth__uri_host_is_loopback("[::1]"));
    ck_assert(mcpauth__uri_host_is_loopback("::1"));
    ck_assert(!mcpauth__uri_host_is_loopback("10.0.0.1"));
    ck_assert(!mcpauth__uri_host_is_loopback("localhost.example.com"));
    ck_assert(!mcpauth__uri_host_is_loopback("[::ffff:8.8.8.8]"));
    ck_assert(!mcpauth__uri_host_is_loopback(""));
}
END_TEST

Suite *uri_suite(void)
{
    Suite *s = suite_create("uri");
    TCase *tc = tcase_create("canonical");
    int n = (int)(sizeof cases / sizeof cases[0]);
    tcase_add_loop_test(tc, canonicalize, 0, n);
    tcase_add_loop_test(tc, canonical_is_fixed_point, 0, n);
    tcase_add_test(tc, too_long);
    tcase_add_test(tc, split);
    tcase_add_test(tc, loopback);
    suite_add_tcase(s, tc);
    return s;
}
