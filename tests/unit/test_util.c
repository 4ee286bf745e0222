/* base64url, constant-time equality, SHA-256 hex, string lists, log lines. */
#include <string.h>

#include <mcpauth/log.h>
#include <mcpauth/util.h>

#include "encode.h"

#include <signal.h>
#include <stdlib.h>

#include "alloc.h"
#include "strbuf.h"
#include "suites.h"

START_TEST(b64url_roundtrip)
{
    /* RFC 4648 §10 vectors, in the URL alphabet and without padding. */
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const enc[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        char out[16];
        unsigned char back[16];
        ck_assert_int_eq(mcpauth__b64url_encode((const unsigned char *)plain[i], strlen(plain[i]),
                                               out, sizeof out),
                         (ssize_t)strlen(enc[i]));
        ck_assert_str_eq(out, enc[i]);
        ssize_t n = mcpauth__b64url_decode(enc[i], strlen(enc[i]), back, sizeof back);
        ck_assert_int_eq(n, (ssize_t)strlen(plain[i]));
        ck_assert(memcmp(back, plain[i], (size_t)n) == 0);
    }
}
END_TEST

START_TEST(b64url_url_alphabet)
{
    static const unsigned char bin[] = {0xfb, 0xff, 0xbf};
    char out[8];
    unsigned char back[8];
    ck_assert_int_eq(mcpauth__b64url_encode(bin, 3, out, sizeof out), 4);
    ck_assert_str_eq(out, "-_-_");
    ck_assert_int_eq(mcpauth__b64url_decode("-_-_", 4, back, sizeof back), 3);
    ck_assert(memcmp(back, bin, 3) == 0);
}
END_TEST

START_TEST(b64url_rejects)
{
    unsigned char out[64];
    ck_assert_int_eq(mcpauth__b64url_decode("Zm9v+g", 6, out, sizeof out), -1);   /* std alphabet */
    ck_assert_int_eq(mcpauth__b64url_decode("Zm9v/g", 6, out, sizeof out), -1);
    ck_assert_int_eq(mcpauth__b64url_decode("Zm8=", 4, out, sizeof out), -1);     /* padding */
    ck_assert_int_eq(mcpauth__b64url_decode("Zm9 v", 5, out, sizeof out), -1);    /* space */
    ck_assert_int_eq(mcpauth__b64url_decode("Z", 1, out, sizeof out), -1);        /* impossible length */
    ck_assert_int_eq(mcpauth__b64url_decode("Zh", 2, out, sizeof out), -1);       /* non-zero spare bits */
    ck_assert_int_eq(mcpauth__b64url_decode("Zm9", 3, out, sizeof out), -1);
    ck_assert_int_eq(mcpauth__b64url_decode("Zm9vYmFy", 8, out, 5), -1);          /* out too small */
    char small[4];
    ck_assert_int_eq(mcpauth__b64url_encode((const unsigned char *)"foobar", 6, small, sizeof small), -1);
}
END_TEST

START_TEST(b64url_long)
{
    /* Longer than one internal chunk. */
    unsigned char in[3000], back[3000];
    char enc[4100];
    for (size_t i = 0; i < sizeof in; i++)
        in[i] = (unsigned char)(i * 7 + 3);
    ssize_t n = mcpauth__b64url_encode(in, sizeof in, enc, sizeof enc);
    ck_assert_int_eq(n, 4000);
    ck_assert_int_eq(mcpauth__b64url_decode(enc, (size_t)n, back, sizeof back), 3000);
    ck_assert(memcmp(in, back, sizeof in) == 0);
}
END_TEST

START_TEST(ct_equal)
{
    ck_assert(mcpauth__ct_equal("abc", 3, "abc", 3));
    ck_assert(!mcpauth__ct_equal("abc", 3, "abd", 3));
    ck_assert(!mcpauth__ct_equal("abc", 3, "abcd", 4));
    ck_assert(!mcpauth__ct_equal("abc", 3, "", 0));
    ck_assert(mcpauth__ct_equal("", 0, "", 0));
}
END_TEST

START_TEST(sha256_hex)
{
    char hex[65];
    mcpauth__sha256_hex("abc", 3, hex);
    ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}
END_TEST

START_TEST(strlist)
{
    mcpauth_strlist l = {0, NULL};
    ck_assert_int_eq(mcpauth_strlist_split(&l, "  a\tbb  ccc "), 0);
    ck_assert_uint_eq(l.n, 3);
    ck_assert_str_eq(l.v[1], "bb");
    ck_assert_ptr_null(l.v[3]);
    ck_assert(mcpauth_strlist_has(&l, "ccc"));
    ck_assert(!mcpauth_strlist_has(&l, "c"));
    mcpauth_strlist_free(&l);
    ck_assert_uint_eq(l.n, 0);
}
END_TEST

START_TEST(log_escapes_hostile_values)
{
    char line[512];
    const char *kv[] = {"path", "/a\nlevel=error event=forged", "client", "127.0.0.1",
                        "skipped", NULL, "q", "say \"hi\"\\"};
    mcpauth_log_init("t", MCPAUTH_LOG_DEBUG);
    int n = mcpauth_log_format(line, sizeof line, MCPAUTH_LOG_WARN, 1, "token_rejected", kv, 8);
    ck_assert_int_eq(n, (int)strlen(line));
    ck_assert_ptr_eq(strchr(line, '\n'), line + n - 1); /* one event, one line */
    ck_assert_ptr_nonnull(strstr(line, "level=warn event=token_rejected security=1 "));
    ck_assert_ptr_nonnull(strstr(line, " path=\"/a\\x0alevel=error event=forged\""));
    ck_assert_ptr_nonnull(strstr(line, " client=127.0.0.1"));
    ck_assert_ptr_null(strstr(line, "skipped"));
    ck_assert_ptr_nonnull(strstr(line, " q=\"say \\\"hi\\\"\\\\\"\n"));
}
END_TEST

START_TEST(log_truncates_long_lines)
{
    char line[64];
    char big[200];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    const char *kv[] = {"v", big};
    mcpauth_log_init("t", MCPAUTH_LOG_DEBUG);
    int n = mcpauth_log_format(line, sizeof line, MCPAUTH_LOG_INFO, 0, "e", kv, 2);
    ck_assert_int_lt(n, (int)sizeof line);
    ck_assert_int_eq(line[n - 1], '\n');
}
END_TEST

START_TEST(strbuf_overflow_is_an_error)
{
    char buf[8];
    mcpauth__strbuf sb;
    mcpauth__sb_init(&sb, buf, sizeof buf);
    mcpauth__sb_add(&sb, "abc");
    mcpauth__sb_printf(&sb, "%d", 1234);
    ck_assert_str_eq(mcpauth__sb_str(&sb), "abc1234");
    mcpauth__sb_add(&sb, "x"); /* one byte too many */
    ck_assert_ptr_null(mcpauth__sb_str(&sb));
    mcpauth__sb_add(&sb, ""); /* stays overflowed */
    ck_assert_ptr_null(mcpauth__sb_str(&sb));
    char out[4];
    ck_assert_int_eq(mcpauth__fmt(out, sizeof out, "%s", "abc"), 0);
    ck_assert_str_eq(out, "abc");
    ck_assert_int_eq(mcpauth__fmt(out, sizeof out, "%s", "abcd"), -1);
    ck_assert_str_eq(out, ""); /* never a prefix */
}
END_TEST

START_TEST(json_str_refuses_embedded_nul)
{
    json_object *o = json_tokener_parse("{\"a\":\"x\\u0000y\",\"b\":\"plain\",\"c\":1}");
    ck_assert_ptr_nonnull(o);
    size_t n = 0;
    ck_assert_ptr_null(mcpauth__json_member_str(o, "a", &n));
    ck_assert_str_eq(mcpauth__json_member_str(o, "b", &n), "plain");
    ck_assert_uint_eq(n, 5);
    ck_assert_ptr_null(mcpauth__json_member_str(o, "c", NULL)); /* not a string */
    ck_assert_ptr_null(mcpauth__json_member_str(o, "missing", NULL));
    json_object_put(o);
}
END_TEST

/* The out-of-memory policy: a failed allocation ends the process, it never
 * returns NULL to a caller that might carry on. */
START_TEST(allocation_failure_aborts)
{
    mcpauth__alloc_fail_after(1);
    void *p = mcpauth__xmalloc(16);
    free(p); /* not reached */
}
END_TEST

Suite *util_suite(void)
{
    Suite *s = suite_create("util");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, b64url_roundtrip);
    tcase_add_test(tc, b64url_url_alphabet);
    tcase_add_test(tc, b64url_rejects);
    tcase_add_test(tc, b64url_long);
    tcase_add_test(tc, ct_equal);
    tcase_add_test(tc, sha256_hex);
    tcase_add_test(tc, strlist);
    tcase_add_test(tc, log_escapes_hostile_values);
    tcase_add_test(tc, log_truncates_long_lines);
    tcase_add_test(tc, strbuf_overflow_is_an_error);
    tcase_add_test(tc, json_str_refuses_embedded_nul);
    tcase_add_test_raise_signal(tc, allocation_failure_aborts, SIGABRT);
    suite_add_tcase(s, tc);
    return s;
}
