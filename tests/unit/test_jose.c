/* JWKS parsing, key selection and JWS verification.  Keys are generated
 * at start-up with OpenSSL, exported as JWK JSON here, and signatures are
 * made with EVP_DigestSign, so every test checks against an independent
 * signer rather than against jose.c itself. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <mcpauth/util.h>

#include "encode.h"

#include "jose.h"
#include "suites.h"

Suite *jose_suite(void); /* also in suites.h once wired in */

static EVP_PKEY *rsa_a, *rsa_b, *rsa_weak;
static EVP_PKEY *ec256, *ec256b, *ec384, *ec384b, *ec521, *ec521b;

static void keys_setup(void)
{
    rsa_a = EVP_RSA_gen(2048);
    rsa_b = EVP_RSA_gen(2048);
    rsa_weak = EVP_RSA_gen(1024);
    ec256 = EVP_EC_gen("prime256v1");
    ec256b = EVP_EC_gen("prime256v1");
    ec384 = EVP_EC_gen("secp384r1");
    ec384b = EVP_EC_gen("secp384r1");
    ec521 = EVP_EC_gen("secp521r1");
    ec521b = EVP_EC_gen("secp521r1");
    if (!rsa_a || !rsa_b || !rsa_weak || !ec256 || !ec256b || !ec384 || !ec384b || !ec521 ||
        !ec521b)
        abort();
}

static void keys_teardown(void)
{
    EVP_PKEY *all[] = {rsa_a, rsa_b, rsa_weak, ec256, ec256b, ec384, ec384b, ec521, ec521b};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        EVP_PKEY_free(all[i]);
}

/* ---- helpers: JWK export, JSON assembly, signing ---- */

__attribute__((format(printf, 1, 2)))
static char *fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    ck_assert_int_ge(n, 0);
    char *s = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(s);
    va_start(ap, f);
    vsnprintf(s, (size_t)n + 1, f, ap);
    va_end(ap);
    return s;
}

static void b64(const unsigned char *in, size_t len, char *out, size_t outlen)
{
    ck_assert_int_ge(mcpauth__b64url_encode(in, len, out, outlen), 0);
}

static size_t bn_param_bytes(EVP_PKEY *k, const char *param, int pad, unsigned char *out,
                             size_t outlen);

/* base64url of a BIGNUM parameter, minimal (RSA) or padded to pad bytes (EC). */
static void bn_param_b64(EVP_PKEY *k, const char *param, int pad, char *out, size_t outlen)
{
    unsigned char buf[1024];
    b64(buf, bn_param_bytes(k, param, pad, buf, sizeof buf), out, outlen);
}

/* Big-endian bytes of a BIGNUM parameter, minimal or padded to pad. */
static size_t bn_param_bytes(EVP_PKEY *k, const char *param, int pad, unsigned char *out,
                             size_t outlen)
{
    BIGNUM *bn = NULL;
    ck_assert(EVP_PKEY_get_bn_param(k, param, &bn));
    ck_assert_uint_le((size_t)BN_num_bytes(bn), outlen);
    int n = pad ? BN_bn2binpad(bn, out, pad) : BN_bn2bin(bn, out);
    ck_assert_int_gt(n, 0);
    BN_free(bn);
    return (size_t)n;
}

static int ec_coord(EVP_PKEY *k)
{
    return (EVP_PKEY_get_bits(k) + 7) / 8;
}

static const char *ec_crv(EVP_PKEY *k)
{
    switch (EVP_PKEY_get_bits(k)) {
    case 256: return "P-256";
    case 384: return "P-384";
    default: return "P-521";
    }
}

/* The public JWK of k with the given crv (EC), plus extra members. */
static char *jwk_crv(EVP_PKEY *k, const char *crv, const char *extra)
{
    char a[1500], b[1500];
    const char *sep = extra ? "," : "", *more = extra ? extra : "";
    if (EVP_PKEY_is_a(k, "RSA")) {
        bn_param_b64(k, OSSL_PKEY_PARAM_RSA_N, 0, a, sizeof a);
        bn_param_b64(k, OSSL_PKEY_PARAM_RSA_E, 0, b, sizeof b);
        return fmt("{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"%s%s}", a, b, sep, more);
    }
    bn_param_b64(k, OSSL_PKEY_PARAM_EC_PUB_X, ec_coord(k), a, sizeof a);
    bn_param_b64(k, OSSL_PKEY_PARAM_EC_PUB_Y, ec_coord(k), b, sizeof b);
    return fmt("{\"kty\":\"EC\",\"crv\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"%s%s}", crv, a, b, sep,
               more);
}

static char *jwk(EVP_PKEY *k, const char *extra)
{
    return jwk_crv(k, EVP_PKEY_is_a(k, "EC") ? ec_crv(k) : NULL, extra);
}

static char *rsa_jwk_doc(const unsigned char *n, size_t nlen, const char *e)
{
    char nb[3000];
    b64(n, nlen, nb, sizeof nb);
    return fmt("{\"keys\":[{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"}]}", nb, e);
}

static char *ec_jwk_doc(const char *crv, const char *x, const char *y)
{
    return fmt("{\"keys\":[{\"kty\":\"EC\",\"crv\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"}]}", crv,
               x, y);
}

/* {"keys":[...]} from NULL-terminated JWK strings, which it frees. */
static char *jwks_doc(char *first, ...)
{
    va_list ap;
    char *doc = fmt("{\"keys\":[");
    va_start(ap, first);
    for (char *k = first; k; k = va_arg(ap, char *)) {
        char *next = fmt("%s%s%s", doc, k == first ? "" : ",", k);
        free(doc);
        free(k);
        doc = next;
    }
    va_end(ap);
    char *done = fmt("%s]}", doc);
    free(doc);
    return done;
}

static mcpauth_jwks *parse_ok(const char *json)
{
    char err[256] = "unset";
    mcpauth_jwks *set = mcpauth__jwks_parse(json, strlen(json), err, sizeof err);
    ck_assert_msg(set != NULL, "parse failed: %s", err);
    ck_assert_str_eq(err, "");
    return set;
}

/* Parses json (freed) expecting failure whose message starts with prefix. */
static void parse_fails(char *json, const char *prefix)
{
    char err[256] = "";
    mcpauth_jwks *set = mcpauth__jwks_parse(json, strlen(json), err, sizeof err);
    ck_assert_msg(set == NULL, "accepted: %.200s", json);
    ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0, "error \"%s\", wanted \"%s...\"", err,
                  prefix);
    mcpauth__jwks_unref(set);
    free(json);
}

/* A set holding only k (as JWK with extra members); key 0 returned. */
static const mcpauth_jwk *one_key(mcpauth_jwks **set, EVP_PKEY *k, const char *extra)
{
    char *doc = jwks_doc(jwk(k, extra), NULL);
    *set = parse_ok(doc);
    free(doc);
    ck_assert_uint_eq(mcpauth__jwks_count(*set), 1);
    return mcpauth__jwks_key(*set, 0);
}

static const EVP_MD *md_of(mcpauth_alg alg)
{
    const char *n = mcpauth__alg_name(alg);
    return strcmp(n + 2, "256") == 0 ? EVP_sha256() : strcmp(n + 2, "384") == 0 ? EVP_sha384()
                                                                               : EVP_sha512();
}

/* Signs in with k as alg would; ECDSA stays DER unless raw. */
static size_t sign(EVP_PKEY *k, mcpauth_alg alg, const char *in, size_t inlen,
                   unsigned char *sig, size_t cap, int raw)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    unsigned char der[1024];
    size_t len = sizeof der;
    ck_assert(ctx);
    ck_assert_int_eq(EVP_DigestSignInit(ctx, &pctx, md_of(alg), NULL, k), 1);
    if (mcpauth__alg_name(alg)[0] == 'P') {
        ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 0);
        ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST), 0);
        ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md_of(alg)), 0);
    }
    ck_assert_int_eq(EVP_DigestSign(ctx, der, &len, (const unsigned char *)in, inlen), 1);
    EVP_MD_CTX_free(ctx);
    if (!EVP_PKEY_is_a(k, "EC") || !raw) {
        ck_assert_uint_le(len, cap);
        memcpy(sig, der, len);
        return len;
    }
    /* DER → R||S, each left-padded to the coordinate size. */
    const unsigned char *p = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)len);
    ck_assert(es);
    int c = ec_coord(k);
    ck_assert_uint_le((size_t)(2 * c), cap);
    ck_assert_int_eq(BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, c), c);
    ck_assert_int_eq(BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + c, c), c);
    ECDSA_SIG_free(es);
    return (size_t)(2 * c);
}

typedef struct {
    mcpauth_alg alg;
    EVP_PKEY **key, **other;
} alg_case;

static const alg_case cases[] = {
    {MCPAUTH_ALG_RS256, &rsa_a, &rsa_b}, {MCPAUTH_ALG_RS384, &rsa_a, &rsa_b},
    {MCPAUTH_ALG_RS512, &rsa_a, &rsa_b}, {MCPAUTH_ALG_PS256, &rsa_a, &rsa_b},
    {MCPAUTH_ALG_PS384, &rsa_a, &rsa_b}, {MCPAUTH_ALG_PS512, &rsa_a, &rsa_b},
    {MCPAUTH_ALG_ES256, &ec256, &ec256b}, {MCPAUTH_ALG_ES384, &ec384, &ec384b},
    {MCPAUTH_ALG_ES512, &ec521, &ec521b},
};
#define NCASES (sizeof cases / sizeof cases[0])

static const char INPUT[] = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9";

/* ---- algorithm names ---- */

START_TEST(alg_names)
{
    static const char *const names[] = {"RS256", "RS384", "RS512", "PS256", "PS384",
                                        "PS512", "ES256", "ES384", "ES512"};
    ck_assert_int_eq(MCPAUTH_ALG_COUNT, 10);
    for (int i = 0; i < 9; i++) {
        mcpauth_alg a = mcpauth__alg_from_name(names[i]);
        ck_assert_int_eq(a, MCPAUTH_ALG_RS256 + i);
        ck_assert_str_eq(mcpauth__alg_name(a), names[i]);
    }
    static const char *const refused[] = {"none", "None", "NONE", "HS256", "HS384", "HS512",
                                          "rs256", "Rs256", "RS256 ", " RS256", "RS25",
                                          "RS2560", "EdDSA", "ES256K", "RSA-OAEP", ""};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        ck_assert_msg(mcpauth__alg_from_name(refused[i]) == MCPAUTH_ALG_UNKNOWN, "%s", refused[i]);
    ck_assert_int_eq(mcpauth__alg_from_name(NULL), MCPAUTH_ALG_UNKNOWN);
    ck_assert_ptr_null(mcpauth__alg_name(MCPAUTH_ALG_UNKNOWN));
    ck_assert_ptr_null(mcpauth__alg_name(MCPAUTH_ALG_COUNT));
    ck_assert_ptr_null(mcpauth__alg_name((mcpauth_alg)-1));
}
END_TEST

/* ---- verification ---- */

START_TEST(verify_every_alg)
{
    for (size_t i = 0; i < NCASES; i++) {
        mcpauth_jwks *set;
        const mcpauth_jwk *k = one_key(&set, *cases[i].key, NULL);
        unsigned char sig[1024];
        size_t n = sign(*cases[i].key, cases[i].alg, INPUT, strlen(INPUT), sig, sizeof sig, 1);
        ck_assert_msg(mcpauth__jws_verify(k, cases[i].alg, INPUT, strlen(INPUT), sig, n) == 1,
                      "%s", mcpauth__alg_name(cases[i].alg));
        /* Empty input is legal; NULL with length 0 means empty. */
        n = sign(*cases[i].key, cases[i].alg, "", 0, sig, sizeof sig, 1);
        ck_assert_int_eq(mcpauth__jws_verify(k, cases[i].alg, NULL, 0, sig, n), 1);
        mcpauth__jwks_unref(set);
    }
}
END_TEST

START_TEST(verify_wrong_key)
{
    for (size_t i = 0; i < NCASES; i++) {
        mcpauth_jwks *set;
        const mcpauth_jwk *k = one_key(&set, *cases[i].other, NULL);
        unsigned char sig[1024];
        size_t n = sign(*cases[i].key, cases[i].alg, INPUT, strlen(INPUT), sig, sizeof sig, 1);
        ck_assert_msg(mcpauth__jws_verify(k, cases[i].alg, INPUT, strlen(INPUT), sig, n) == 0,
                      "%s", mcpauth__alg_name(cases[i].alg));
        mcpauth__jwks_unref(set);
    }
}
END_TEST

START_TEST(verify_tampered)
{
    for (size_t i = 0; i < NCASES; i++) {
        const char *name = mcpauth__alg_name(cases[i].alg);
        mcpauth_jwks *set;
        const mcpauth_jwk *k = one_key(&set, *cases[i].key, NULL);
        unsigned char sig[1024], bad[1026];
        size_t n = sign(*cases[i].key, cases[i].alg, INPUT, strlen(INPUT), sig, sizeof sig, 1);
        char in[sizeof INPUT];
        memcpy(in, INPUT, sizeof INPUT);

        in[5] ^= 0x01;
        ck_assert_msg(!mcpauth__jws_verify(k, cases[i].alg, in, strlen(in), sig, n), "%s", name);
        ck_assert_msg(!mcpauth__jws_verify(k, cases[i].alg, INPUT, strlen(INPUT) - 1, sig, n),
                      "%s: truncated input", name);
        /* A flipped bit at the start, middle and end of the signature. */
        size_t at[] = {0, n / 2, n - 1};
        for (size_t j = 0; j < 3; j++) {
            memcpy(bad, sig, n);
            bad[at[j]] ^= 0x01;
            ck_assert_msg(!mcpauth__jws_verify(k, cases[i].alg, INPUT, strlen(INPUT), bad, n),
                          "%s: bit %zu", name, at[j]);
        }
        /* Wrong lengths: one short, one long, a zero byte in front, empty. */
        ck_assert(!mcpauth__jws_verify(k, cases[i].alg, INPUT, strlen(INPUT), sig, n - 1));
        memcpy(bad, sig, n);
        bad[n] = 0;
        ck_assert(!mcpauth__jws_verify(k, cases[i].alg, INPUT, strlen(INPUT), bad, n + 1));
        bad[0] = 0;
        memcpy(bad + 1, sig, n);
        ck_assert(!mcpauth__jws_verify(k, cases[i].alg, INPUT, strlen(INPUT), bad, n + 1));
        ck_assert(!mcpauth__jws_verify(k, cases[i].alg, INPUT, strlen(INPUT), sig, 0));
        ck_assert(!mcpauth__jws_verify(k, cases[i].alg, INPUT, strlen(INPUT), NULL, n));
        ck_assert(!mcpauth__jws_verify(k, cases[i].alg, NULL, 5, sig, n));
        /* All zeros and all ones are never valid. */
        memset(bad, 0, n);
        ck_assert(!mcpauth__jws_verify(k, cases[i].alg, INPUT, strlen(INPUT), bad, n));
        memset(bad, 0xff, n);
        ck_assert(!mcpauth__jws_verify(k, cases[i].alg, INPUT, strlen(INPUT), bad, n));
        /* OpenSSL's failures do not linger on this thread's error queue. */
        ck_assert_uint_eq(ERR_peek_error(), 0);
        mcpauth__jwks_unref(set);
    }
}
END_TEST

START_TEST(verify_es_raw_only)
{
    static const struct {
        mcpauth_alg alg;
        EVP_PKEY **key;
        size_t len;
    } es[] = {{MCPAUTH_ALG_ES256, &ec256, 64}, {MCPAUTH_ALG_ES384, &ec384, 96},
              {MCPAUTH_ALG_ES512, &ec521, 132}};
    for (size_t i = 0; i < 3; i++) {
        mcpauth_jwks *set;
        const mcpauth_jwk *k = one_key(&set, *es[i].key, NULL);
        unsigned char raw[256], der[256], longer[256];
        size_t n = sign(*es[i].key, es[i].alg, INPUT, strlen(INPUT), raw, sizeof raw, 1);
        ck_assert_uint_eq(n, es[i].len);
        ck_assert_int_eq(mcpauth__jws_verify(k, es[i].alg, INPUT, strlen(INPUT), raw, n), 1);
        /* The DER form OpenSSL itself produces is not a JWS signature. */
        size_t d = sign(*es[i].key, es[i].alg, INPUT, strlen(INPUT), der, sizeof der, 0);
        ck_assert_int_eq(mcpauth__jws_verify(k, es[i].alg, INPUT, strlen(INPUT), der, d), 0);
        /* The right R||S, but at another curve's length. */
        memset(longer, 0, sizeof longer);
        memcpy(longer + 1, raw, n / 2);
        memcpy(longer + 1 + n / 2 + 1, raw + n / 2, n / 2);
        ck_assert_int_eq(mcpauth__jws_verify(k, es[i].alg, INPUT, strlen(INPUT), longer, n + 2), 0);
        ck_assert_int_eq(mcpauth__jws_verify(k, es[i].alg, INPUT, strlen(INPUT), raw + 1, n - 1), 0);
        mcpauth__jwks_unref(set);
    }
}
END_TEST

START_TEST(verify_rsa_exact_length)
{
    /* RFC 8017 §8.2.2: the signature is exactly k bytes; one with its
     * leading zero byte stripped has another encoding and is refused
     * (OpenSSL 3.0 itself accepts that for PSS).
     * Search inputs for a signature starting with 0x00 (about 1 in 200). */
    static const mcpauth_alg rsa_algs[] = {MCPAUTH_ALG_RS256, MCPAUTH_ALG_PS256};
    mcpauth_jwks *set;
    const mcpauth_jwk *k = one_key(&set, rsa_a, NULL);
    for (size_t a = 0; a < 2; a++) {
        unsigned char sig[512];
        char in[64];
        size_t n = 0;
        for (int i = 0; i < 20000; i++) {
            snprintf(in, sizeof in, "%s%d", INPUT, i);
            n = sign(rsa_a, rsa_algs[a], in, strlen(in), sig, sizeof sig, 1);
            if (sig[0] == 0)
                break;
        }
        ck_assert_uint_eq(n, 256);
        ck_assert_int_eq(sig[0], 0);
        ck_assert_int_eq(mcpauth__jws_verify(k, rsa_algs[a], in, strlen(in), sig, n), 1);
        ck_assert_int_eq(mcpauth__jws_verify(k, rsa_algs[a], in, strlen(in), sig + 1, n - 1), 0);
    }
    mcpauth__jwks_unref(set);
}
END_TEST

START_TEST(verify_cross_padding)
{
    /* A PKCS#1 v1.5 signature is not a PSS one and vice versa, and the hash
     * is part of the algorithm. */
    mcpauth_jwks *set;
    const mcpauth_jwk *k = one_key(&set, rsa_a, NULL);
    unsigned char sig[512];
    size_t n = sign(rsa_a, MCPAUTH_ALG_RS256, INPUT, strlen(INPUT), sig, sizeof sig, 1);
    ck_assert_int_eq(mcpauth__jws_verify(k, MCPAUTH_ALG_PS256, INPUT, strlen(INPUT), sig, n), 0);
    ck_assert_int_eq(mcpauth__jws_verify(k, MCPAUTH_ALG_RS384, INPUT, strlen(INPUT), sig, n), 0);
    n = sign(rsa_a, MCPAUTH_ALG_PS256, INPUT, strlen(INPUT), sig, sizeof sig, 1);
    ck_assert_int_eq(mcpauth__jws_verify(k, MCPAUTH_ALG_RS256, INPUT, strlen(INPUT), sig, n), 0);
    ck_assert_int_eq(mcpauth__jws_verify(k, MCPAUTH_ALG_PS512, INPUT, strlen(INPUT), sig, n), 0);
    mcpauth__jwks_unref(set);

    /* ES384 signature presented as ES256 against the P-384 key. */
    k = one_key(&set, ec384, NULL);
    n = sign(ec384, MCPAUTH_ALG_ES384, INPUT, strlen(INPUT), sig, sizeof sig, 1);
    ck_assert_int_eq(mcpauth__jws_verify(k, MCPAUTH_ALG_ES384, INPUT, strlen(INPUT), sig, n), 1);
    ck_assert_int_eq(mcpauth__jws_verify(k, MCPAUTH_ALG_ES256, INPUT, strlen(INPUT), sig, 64), 0);
    mcpauth__jwks_unref(set);
}
END_TEST

START_TEST(verify_pss_salt_length)
{
    /* RFC 7518 §3.5 fixes the salt to the hash length: a PSS signature
     * with another salt length is refused. */
    mcpauth_jwks *set;
    const mcpauth_jwk *k = one_key(&set, rsa_a, NULL);
    unsigned char sig[512];
    size_t len = sizeof sig;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    ck_assert_int_eq(EVP_DigestSignInit(ctx, &pctx, EVP_sha256(), NULL, rsa_a), 1);
    ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 0);
    ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 20), 0);
    ck_assert_int_eq(EVP_DigestSign(ctx, sig, &len, (const unsigned char *)INPUT, strlen(INPUT)), 1);
    EVP_MD_CTX_free(ctx);
    ck_assert_int_eq(mcpauth__jws_verify(k, MCPAUTH_ALG_PS256, INPUT, strlen(INPUT), sig, len), 0);
    mcpauth__jwks_unref(set);
}
END_TEST

START_TEST(fits_and_mismatch)
{
    mcpauth_jwks *rs, *rs384, *e256, *e384, *e521;
    const mcpauth_jwk *r = one_key(&rs, rsa_a, NULL);
    const mcpauth_jwk *r384 = one_key(&rs384, rsa_a, "\"alg\":\"RS384\"");
    const mcpauth_jwk *p256 = one_key(&e256, ec256, NULL);
    const mcpauth_jwk *p384 = one_key(&e384, ec384, NULL);
    const mcpauth_jwk *p521 = one_key(&e521, ec521, NULL);

    for (int a = MCPAUTH_ALG_RS256; a <= MCPAUTH_ALG_PS512; a++) {
        ck_assert(mcpauth__jwk_fits(r, (mcpauth_alg)a));
        ck_assert(!mcpauth__jwk_fits(p256, (mcpauth_alg)a));
    }
    ck_assert(!mcpauth__jwk_fits(r, MCPAUTH_ALG_ES256));
    ck_assert(mcpauth__jwk_fits(p256, MCPAUTH_ALG_ES256));
    ck_assert(!mcpauth__jwk_fits(p256, MCPAUTH_ALG_ES384));
    ck_assert(!mcpauth__jwk_fits(p384, MCPAUTH_ALG_ES256));
    ck_assert(mcpauth__jwk_fits(p384, MCPAUTH_ALG_ES384));
    ck_assert(!mcpauth__jwk_fits(p384, MCPAUTH_ALG_ES512));
    ck_assert(mcpauth__jwk_fits(p521, MCPAUTH_ALG_ES512));
    ck_assert(!mcpauth__jwk_fits(p521, MCPAUTH_ALG_ES256));
    /* The JWK's own "alg" binds it. */
    ck_assert_int_eq(r384->alg, MCPAUTH_ALG_RS384);
    ck_assert(mcpauth__jwk_fits(r384, MCPAUTH_ALG_RS384));
    ck_assert(!mcpauth__jwk_fits(r384, MCPAUTH_ALG_RS256));
    ck_assert(!mcpauth__jwk_fits(r384, MCPAUTH_ALG_PS384));
    for (int a = MCPAUTH_ALG_UNKNOWN; a <= MCPAUTH_ALG_COUNT; a += MCPAUTH_ALG_COUNT)
        ck_assert(!mcpauth__jwk_fits(r, (mcpauth_alg)a));
    ck_assert(!mcpauth__jwk_fits(r, (mcpauth_alg)-1));
    ck_assert(!mcpauth__jwk_fits(NULL, MCPAUTH_ALG_RS256));

    /* verify refuses what does not fit, even with an otherwise valid
     * signature. */
    unsigned char sig[512];
    size_t n = sign(rsa_a, MCPAUTH_ALG_RS256, INPUT, strlen(INPUT), sig, sizeof sig, 1);
    ck_assert_int_eq(mcpauth__jws_verify(r, MCPAUTH_ALG_RS256, INPUT, strlen(INPUT), sig, n), 1);
    ck_assert_int_eq(mcpauth__jws_verify(r384, MCPAUTH_ALG_RS256, INPUT, strlen(INPUT), sig, n), 0);
    ck_assert_int_eq(mcpauth__jws_verify(p256, MCPAUTH_ALG_RS256, INPUT, strlen(INPUT), sig, n), 0);
    ck_assert_int_eq(mcpauth__jws_verify(NULL, MCPAUTH_ALG_RS256, INPUT, strlen(INPUT), sig, n), 0);
    ck_assert_int_eq(mcpauth__jws_verify(r, MCPAUTH_ALG_UNKNOWN, INPUT, strlen(INPUT), sig, n), 0);
    ck_assert_int_eq(mcpauth__jws_verify(r, MCPAUTH_ALG_COUNT, INPUT, strlen(INPUT), sig, n), 0);
    n = sign(ec256, MCPAUTH_ALG_ES256, INPUT, strlen(INPUT), sig, sizeof sig, 1);
    ck_assert_int_eq(mcpauth__jws_verify(r, MCPAUTH_ALG_ES256, INPUT, strlen(INPUT), sig, n), 0);
    ck_assert_int_eq(mcpauth__jws_verify(p384, MCPAUTH_ALG_ES256, INPUT, strlen(INPUT), sig, n), 0);
    ck_assert_int_eq(mcpauth__jws_verify(p256, MCPAUTH_ALG_ES256, INPUT, strlen(INPUT), sig, n), 1);

    mcpauth__jwks_unref(rs);
    mcpauth__jwks_unref(rs384);
    mcpauth__jwks_unref(e256);
    mcpauth__jwks_unref(e384);
    mcpauth__jwks_unref(e521);
}
END_TEST

/* ---- JWKS parsing ---- */

START_TEST(jwks_mixed)
{
    char *doc = jwks_doc(jwk(rsa_a, "\"kid\":\"r\",\"use\":\"sig\",\"alg\":\"RS256\""),
                         jwk(ec256, "\"kid\":\"e1\""),
                         jwk(ec384, "\"kid\":\"e2\",\"key_ops\":[\"verify\"]"),
                         /* private parts are ignored, not imported */
                         jwk(ec521, "\"kid\":\"e3\",\"d\":\"AAAA\",\"x5c\":[\"MIIB\"]"), NULL);
    mcpauth_jwks *set = parse_ok(doc);
    free(doc);
    ck_assert_uint_eq(mcpauth__jwks_count(set), 4);
    const mcpauth_jwk *k = mcpauth__jwks_key(set, 0);
    ck_assert_int_eq(k->kty, MCPAUTH_KTY_RSA);
    ck_assert_str_eq(k->kid, "r");
    ck_assert_int_eq(k->alg, MCPAUTH_ALG_RS256);
    ck_assert(EVP_PKEY_is_a(k->pkey, "RSA"));
    ck_assert_int_eq(EVP_PKEY_get_bits(k->pkey), 2048);
    ck_assert_int_eq(EVP_PKEY_eq(k->pkey, rsa_a), 1);
    static const int nids[] = {NID_X9_62_prime256v1, NID_secp384r1, NID_secp521r1};
    EVP_PKEY *src[] = {ec256, ec384, ec521};
    for (size_t i = 1; i < 4; i++) {
        k = mcpauth__jwks_key(set, i);
        ck_assert_int_eq(k->kty, MCPAUTH_KTY_EC);
        ck_assert_int_eq(k->curve_nid, nids[i - 1]);
        ck_assert_int_eq(k->alg, MCPAUTH_ALG_UNKNOWN);
        ck_assert_int_eq(EVP_PKEY_eq(k->pkey, src[i - 1]), 1);
    }
    BIGNUM *d = NULL;
    ck_assert_int_eq(EVP_PKEY_get_bn_param(mcpauth__jwks_key(set, 3)->pkey,
                                           OSSL_PKEY_PARAM_PRIV_KEY, &d), 0);
    BN_free(d);
    ck_assert_ptr_null(mcpauth__jwks_key(set, 4));
    mcpauth__jwks_unref(set);

    /* An empty set is a valid JWKS. */
    set = parse_ok("{\"keys\":[]}");
    ck_assert_uint_eq(mcpauth__jwks_count(set), 0);
    ck_assert_ptr_null(mcpauth__jwks_find(set, NULL, MCPAUTH_ALG_RS256));
    mcpauth__jwks_unref(set);
    ck_assert_uint_eq(mcpauth__jwks_count(NULL), 0);
    ck_assert_ptr_null(mcpauth__jwks_key(NULL, 0));
}
END_TEST

START_TEST(jwks_skipped)
{
    char *doc = jwks_doc(
        jwk(rsa_b, "\"kid\":\"enc\",\"use\":\"enc\""),
        fmt("{\"kty\":\"oct\",\"kid\":\"hmac\",\"k\":\"c2VjcmV0\"}"),
        fmt("{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}"),
        fmt("{\"kty\":\"XYZ\"}"),
        jwk_crv(ec256, "secp256k1", "\"kid\":\"k1\""),
        jwk(ec384, "\"kid\":\"ops\",\"key_ops\":[\"sign\",\"encrypt\"]"),
        jwk(ec384, "\"kid\":\"noops\",\"key_ops\":[]"),
        jwk(rsa_b, "\"kid\":\"oaep\",\"alg\":\"RSA-OAEP\""),
        jwk(rsa_b, "\"kid\":\"hs\",\"alg\":\"HS256\""),
        jwk(rsa_b, "\"kid\":\"none\",\"alg\":\"none\""),
        jwk(rsa_b, "\"kid\":\"ecalg\",\"alg\":\"ES256\""),
        jwk(ec256, "\"kid\":\"wrongcurve\",\"alg\":\"ES384\""),
        /* weak, but never used for signatures: skipped, not an error */
        jwk(rsa_weak, "\"use\":\"enc\""),
        jwk(rsa_a, "\"kid\":\"good\",\"use\":\"sig\",\"key_ops\":[\"sign\",\"verify\"]"), NULL);
    mcpauth_jwks *set = parse_ok(doc);
    free(doc);
    ck_assert_uint_eq(mcpauth__jwks_count(set), 1);
    ck_assert_str_eq(mcpauth__jwks_key(set, 0)->kid, "good");
    mcpauth__jwks_unref(set);
}
END_TEST

START_TEST(jwks_malformed_documents)
{
    char err[256];
    parse_fails(fmt("not json"), "JWKS is not valid JSON");
    parse_fails(fmt("{\"keys\":["), "JWKS is not valid JSON: truncated");
    parse_fails(fmt("{\"keys\":[]} x"), "JWKS is not valid JSON");
    parse_fails(fmt("{\"keys\":[]}{}"), "JWKS is not valid JSON");
    parse_fails(fmt("{\"keys\":[],}"), "JWKS is not valid JSON");
    parse_fails(fmt("{\"keys\":[\"\xff\"]}"), "JWKS is not valid JSON");           /* bad UTF-8 */
    parse_fails(fmt("{\"keys\":[[[[[[[[[[[[[[]]]]]]]]]]]]]]}"), "JWKS is not valid JSON"); /* depth */
    parse_fails(fmt("[{\"keys\":[]}]"), "JWKS is not a JSON object");
    parse_fails(fmt("\"keys\""), "JWKS is not a JSON object");
    parse_fails(fmt("{}"), "JWKS has no \"keys\" array");
    parse_fails(fmt("{\"keys\":{}}"), "JWKS has no \"keys\" array");
    parse_fails(fmt("{\"keys\":null}"), "JWKS has no \"keys\" array");
    parse_fails(fmt("{\"Keys\":[]}"), "JWKS has no \"keys\" array");
    parse_fails(fmt("%s", ""), "JWKS is empty");

    ck_assert_ptr_null(mcpauth__jwks_parse(NULL, 10, err, sizeof err));
    ck_assert_str_eq(err, "JWKS is empty");
    /* The length is what counts: a NUL inside must not end the document. */
    static const char nul[] = "{\"keys\":[]}\0{\"x\":1}";
    ck_assert_ptr_null(mcpauth__jwks_parse(nul, sizeof nul - 1, err, sizeof err));
    ck_assert_str_eq(err, "JWKS is not valid JSON: contains a NUL byte");
    /* Not NUL-terminated: only len bytes are read (ASan checks this). */
    char *exact = malloc(11);
    memcpy(exact, "{\"keys\":[]}", 11);
    mcpauth_jwks *set = mcpauth__jwks_parse(exact, 11, err, sizeof err);
    ck_assert_ptr_nonnull(set);
    mcpauth__jwks_unref(set);
    ck_assert_ptr_null(mcpauth__jwks_parse(exact, 10, err, sizeof err));
    free(exact);

    /* Over 1 MiB, even if valid. */
    size_t big = (1 << 20) + 1;
    char *huge = malloc(big);
    memset(huge, ' ', big);
    memcpy(huge, "{\"keys\":[]}", 11);
    ck_assert_ptr_null(mcpauth__jwks_parse(huge, big, err, sizeof err));
    ck_assert_str_eq(err, "JWKS is larger than 1048576 bytes");
    set = mcpauth__jwks_parse(huge, big - 1, err, sizeof err);
    ck_assert_ptr_nonnull(set);
    mcpauth__jwks_unref(set);
    free(huge);

    /* 100 keys are fine (all skipped here), 101 are refused. */
    char *doc = fmt("{\"keys\":[{\"kty\":\"oct\"}");
    for (int i = 1; i < 101; i++) {
        char *next = fmt("%s,{\"kty\":\"oct\"}", doc);
        free(doc);
        doc = next;
        if (i == 99) {
            char *ok = fmt("%s]}", doc);
            set = parse_ok(ok);
            ck_assert_uint_eq(mcpauth__jwks_count(set), 0);
            mcpauth__jwks_unref(set);
            free(ok);
        }
    }
    char *over = fmt("%s]}", doc);
    free(doc);
    parse_fails(over, "JWKS has 101 keys, more than 100");

    /* err may be absent or short. */
    ck_assert_ptr_null(mcpauth__jwks_parse("[]", 2, NULL, 0));
    ck_assert_ptr_null(mcpauth__jwks_parse("[]", 2, err, 0));
    ck_assert_ptr_null(mcpauth__jwks_parse("[]", 2, err, 5));
    ck_assert_str_eq(err, "JWKS");
}
END_TEST

START_TEST(jwks_malformed_keys)
{
    unsigned char zero[66] = {0}, raw[2100];
    char x[200], y[200];

    parse_fails(fmt("{\"keys\":[1]}"), "keys[0]: not a JSON object");
    parse_fails(fmt("{\"keys\":[{\"n\":\"AQAB\"}]}"), "keys[0]: no \"kty\" string");
    parse_fails(fmt("{\"keys\":[{\"kty\":7}]}"), "keys[0]: no \"kty\" string");
    parse_fails(jwks_doc(jwk(rsa_a, "\"use\":1"), NULL), "keys[0]: \"use\" is not a string");
    /* "sig" followed by a hidden NUL is not "sig" */
    parse_fails(jwks_doc(jwk(rsa_a, "\"use\":\"sig\\u0000enc\""), NULL),
                "keys[0]: \"use\" is not a string");
    parse_fails(jwks_doc(jwk(rsa_a, "\"key_ops\":\"verify\""), NULL),
                "keys[0]: \"key_ops\" is not an array of strings");
    parse_fails(jwks_doc(jwk(rsa_a, "\"key_ops\":[\"verify\",2]"), NULL),
                "keys[0]: \"key_ops\" is not an array of strings");
    parse_fails(jwks_doc(jwk(rsa_a, "\"alg\":null"), NULL), "keys[0]: \"alg\" is not a string");
    parse_fails(jwks_doc(jwk(rsa_a, "\"kid\":5"), NULL), "keys[0]: \"kid\" is not a string");
    parse_fails(jwks_doc(jwk(rsa_a, "\"kid\":\"a\\u0000b\""), NULL),
                "keys[0]: \"kid\" is not a string");
    char kid[300];
    memset(kid, 'k', 257);
    kid[257] = '\0';
    char *m = fmt("\"kid\":\"%s\"", kid);
    parse_fails(jwks_doc(jwk(rsa_a, m), NULL), "keys[0]: \"kid\" longer than 256 bytes");
    free(m);
    kid[256] = '\0';
    m = fmt("\"kid\":\"%s\"", kid);
    char *doc = jwks_doc(jwk(rsa_a, m), NULL);
    mcpauth_jwks *set = parse_ok(doc);
    ck_assert_str_eq(mcpauth__jwks_key(set, 0)->kid, kid);
    mcpauth__jwks_unref(set);
    free(doc);
    free(m);

    /* RSA material */
    parse_fails(fmt("{\"keys\":[{\"kty\":\"RSA\",\"e\":\"AQAB\"}]}"), "keys[0]: no \"n\"");
    parse_fails(fmt("{\"keys\":[{\"kty\":\"RSA\",\"n\":\"ab+/\",\"e\":\"AQAB\"}]}"),
                "keys[0]: \"n\" is not base64url");
    parse_fails(fmt("{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB=\",\"e\":\"AQAB\"}]}"),
                "keys[0]: \"n\" is not base64url");
    parse_fails(fmt("{\"keys\":[{\"kty\":\"RSA\",\"n\":\"\",\"e\":\"AQAB\"}]}"),
                "keys[0]: \"n\" is empty");
    size_t nlen = bn_param_bytes(rsa_a, OSSL_PKEY_PARAM_RSA_N, 0, raw, sizeof raw);
    parse_fails(rsa_jwk_doc(raw, nlen, "AQAA"), "keys[0]: invalid RSA public key"); /* e even */
    parse_fails(rsa_jwk_doc(raw, nlen, "AQ"), "keys[0]: invalid RSA public key");   /* e = 1 */
    parse_fails(rsa_jwk_doc(raw, nlen, "AQAAAAAAAAAB"), "keys[0]: invalid RSA public key"); /* 2^72+1 */
    parse_fails(rsa_jwk_doc(raw, nlen, ""), "keys[0]: \"e\" is empty");
    raw[nlen - 1] &= 0xfe;
    parse_fails(rsa_jwk_doc(raw, nlen, "AQAB"), "keys[0]: invalid RSA public key"); /* n even */
    raw[nlen - 1] |= 0x01;
    /* A redundant leading zero does not change the number: accepted. */
    memmove(raw + 1, raw, nlen);
    raw[0] = 0;
    doc = rsa_jwk_doc(raw, nlen + 1, "AQAB");
    set = parse_ok(doc);
    ck_assert_int_eq(EVP_PKEY_eq(mcpauth__jwks_key(set, 0)->pkey, rsa_a), 1);
    mcpauth__jwks_unref(set);
    free(doc);
    /* Up to OpenSSL's 16384-bit limit "n" is decoded, then skipped as too
     * large (rsa_too_large); beyond it, it is garbage. */
    memset(raw, 0xff, 2049);
    doc = rsa_jwk_doc(raw, 2049, "AQAB");
    set = parse_ok(doc);
    ck_assert_uint_eq(mcpauth__jwks_count(set), 0);
    mcpauth__jwks_unref(set);
    free(doc);
    char *longn = calloc(1, 4000);
    memset(longn, 'A', 3999);
    parse_fails(fmt("{\"keys\":[{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQAB\"}]}", longn),
                "keys[0]: \"n\" is too long");
    free(longn);

    /* A weak key is an error for the whole document, wherever it is. */
    parse_fails(jwks_doc(jwk(rsa_weak, NULL), NULL), "keys[0]: RSA key of 1024 bits, under 2048");
    parse_fails(jwks_doc(jwk(rsa_a, "\"kid\":\"ok\""), jwk(rsa_weak, "\"use\":\"sig\""), NULL),
                "keys[1]: RSA key of 1024 bits, under 2048");

    /* EC material */
    parse_fails(fmt("{\"keys\":[{\"kty\":\"EC\",\"x\":\"AA\",\"y\":\"AA\"}]}"),
                "keys[0]: no \"crv\" string");
    parse_fails(jwks_doc(jwk_crv(ec384, "P-256", NULL), NULL),
                "keys[0]: P-256 coordinates must be 32 bytes, got 48 and 48");
    parse_fails(jwks_doc(jwk_crv(ec256, "P-521", NULL), NULL),
                "keys[0]: P-521 coordinates must be 66 bytes");
    b64(zero, 31, x, sizeof x);
    b64(zero, 32, y, sizeof y);
    parse_fails(ec_jwk_doc("P-256", x, y), "keys[0]: P-256 coordinates must be 32 bytes, got 31");
    /* (0,0) is not on P-256: the invalid-curve attack point. */
    b64(zero, 32, x, sizeof x);
    parse_fails(ec_jwk_doc("P-256", x, y), "keys[0]: not a valid P-256 public key");
    /* A real key with one bit of y flipped. */
    size_t c = bn_param_bytes(ec256, OSSL_PKEY_PARAM_EC_PUB_X, 32, raw, sizeof raw);
    b64(raw, c, x, sizeof x);
    c = bn_param_bytes(ec256, OSSL_PKEY_PARAM_EC_PUB_Y, 32, raw, sizeof raw);
    raw[c - 1] ^= 0x01;
    b64(raw, c, y, sizeof y);
    parse_fails(ec_jwk_doc("P-256", x, y), "keys[0]: not a valid P-256 public key");
    /* Coordinates not below the field prime. */
    memset(raw, 0xff, 66);
    raw[0] = 0x01;
    b64(raw, 66, x, sizeof x);
    b64(raw, 66, y, sizeof y);
    parse_fails(ec_jwk_doc("P-521", x, y), "keys[0]: not a valid P-521 public key");
    ck_assert_uint_eq(ERR_peek_error(), 0);
    parse_fails(fmt("{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"%s\"}]}", x),
                "keys[0]: no \"y\"");
}
END_TEST

/* Runs mcpauth__jwks_parse with stderr captured into log (cap bytes). */
static mcpauth_jwks *parse_logged(const char *json, char *err, size_t errlen, char *log, size_t cap)
{
    FILE *tmp = tmpfile();
    ck_assert_ptr_nonnull(tmp);
    int saved = dup(2);
    ck_assert_int_ge(saved, 0);
    ck_assert_int_ge(dup2(fileno(tmp), 2), 0);
    mcpauth_jwks *set = mcpauth__jwks_parse(json, strlen(json), err, errlen);
    ck_assert_int_ge(dup2(saved, 2), 0);
    close(saved);
    rewind(tmp);
    size_t n = fread(log, 1, cap - 1, tmp);
    log[n] = '\0';
    fclose(tmp);
    return set;
}

/* An RSA modulus of exactly bits bits (top and bottom bit set), JWK with
 * the given kid. */
static char *rsa_bits_jwk(int bits, const char *kid)
{
    unsigned char n[2100];
    size_t len = ((size_t)bits + 7) / 8;
    memset(n, 0xa5, len);
    n[0] = (unsigned char)(1u << ((bits - 1) % 8));
    n[len - 1] |= 1;
    char nb[3000];
    b64(n, len, nb, sizeof nb);
    return fmt("{\"kty\":\"RSA\",\"kid\":\"%s\",\"n\":\"%s\",\"e\":\"AQAB\"}", kid, nb);
}

/* The verifier decodes signatures into MCPAUTH_JWS_SIG_MAX bytes, so an RSA
 * key over MCPAUTH_RSA_MAX_BITS could never verify a token: the old code
 * took it into the set all the same.  Now it is left out, with a log line
 * naming its kid, and the other keys of the set still serve. */
START_TEST(rsa_too_large)
{
    char err[256], log[4096];
    ck_assert_int_eq(MCPAUTH_JWS_SIG_MAX * 8, MCPAUTH_RSA_MAX_BITS);
    char *doc = jwks_doc(rsa_bits_jwk(MCPAUTH_RSA_MAX_BITS, "max"), NULL);
    mcpauth_jwks *set = parse_logged(doc, err, sizeof err, log, sizeof log);
    ck_assert_msg(set != NULL, "%s", err);
    ck_assert_uint_eq(mcpauth__jwks_count(set), 1);
    ck_assert_str_eq(mcpauth__jwks_key(set, 0)->kid, "max");
    ck_assert_int_eq(EVP_PKEY_get_bits(mcpauth__jwks_key(set, 0)->pkey), MCPAUTH_RSA_MAX_BITS);
    ck_assert_str_eq(log, "");
    mcpauth__jwks_unref(set);
    free(doc);

    doc = jwks_doc(rsa_bits_jwk(MCPAUTH_RSA_MAX_BITS + 1, "huge-1"), jwk(rsa_a, "\"kid\":\"ok\""),
                   rsa_bits_jwk(16384, "huge-2"), NULL);
    set = parse_logged(doc, err, sizeof err, log, sizeof log);
    ck_assert_msg(set != NULL, "%s", err);
    ck_assert_str_eq(err, "");
    ck_assert_uint_eq(mcpauth__jwks_count(set), 1);
    ck_assert_str_eq(mcpauth__jwks_key(set, 0)->kid, "ok");
    ck_assert_ptr_null(mcpauth__jwks_find(set, "huge-1", MCPAUTH_ALG_RS256));
    /* without a kid, the one usable RSA key is not ambiguous any more */
    ck_assert_ptr_eq(mcpauth__jwks_find(set, NULL, MCPAUTH_ALG_RS256), mcpauth__jwks_key(set, 0));
    ck_assert_msg(strstr(log, "event=jwk_refused") && strstr(log, "kid=huge-1") &&
                      strstr(log, "RSA key of 8193 bits, over 8192") && strstr(log, "kid=huge-2") &&
                      strstr(log, "RSA key of 16384 bits"),
                  "log: %s", log);
    mcpauth__jwks_unref(set);
    free(doc);

    /* Too small stays an error for the whole set. */
    parse_fails(jwks_doc(rsa_bits_jwk(2047, "small"), NULL), "keys[0]: RSA key of 2047 bits, under 2048");
}
END_TEST

/* json-c decodes \u0000: no string member of a JWK may hide one. */
START_TEST(jwk_member_nul)
{
    parse_fails(jwks_doc(jwk(rsa_a, "\"alg\":\"RS256\\u0000x\""), NULL),
                "keys[0]: \"alg\" is not a string");
    parse_fails(fmt("{\"keys\":[{\"kty\":\"RSA\\u0000\",\"n\":\"AQAB\"}]}"),
                "keys[0]: no \"kty\" string");
    parse_fails(jwks_doc(jwk_crv(ec256, "P-256\\u0000", NULL), NULL), "keys[0]: no \"crv\" string");
    parse_fails(jwks_doc(jwk(rsa_a, "\"key_ops\":[\"verify\\u0000\"]"), NULL),
                "keys[0]: \"key_ops\" is not an array of strings");
    char *m = fmt("\"n\":\"AQAB\\u0000\"");
    parse_fails(fmt("{\"keys\":[{\"kty\":\"RSA\",%s,\"e\":\"AQAB\"}]}", m), "keys[0]: \"n\" is not a string");
    free(m);
}
END_TEST

/* ---- reference counting ---- */

typedef struct {
    mcpauth_jwks *set;
    const unsigned char *sig;
    size_t siglen;
    int bad;
} thread_arg;

static void *hammer(void *p)
{
    thread_arg *t = p;
    for (int i = 0; i < 20000; i++) {
        mcpauth_jwks *mine = mcpauth__jwks_ref(t->set);
        if (i % 1000 == 0) {
            const mcpauth_jwk *k = mcpauth__jwks_find(mine, "r", MCPAUTH_ALG_RS256);
            if (mcpauth__jws_verify(k, MCPAUTH_ALG_RS256, INPUT, strlen(INPUT), t->sig,
                                   t->siglen) != 1)
                t->bad++;
        }
        mcpauth__jwks_unref(mine);
    }
    return NULL;
}

START_TEST(jwks_refcount)
{
    char *doc = jwks_doc(jwk(rsa_a, "\"kid\":\"r\""), jwk(ec256, "\"kid\":\"e\""), NULL);
    mcpauth_jwks *set = parse_ok(doc);
    free(doc);
    ck_assert_ptr_eq(mcpauth__jwks_ref(set), set);
    mcpauth__jwks_unref(set);
    ck_assert_uint_eq(mcpauth__jwks_count(set), 2); /* still held once */
    ck_assert_ptr_null(mcpauth__jwks_ref(NULL));
    mcpauth__jwks_unref(NULL);

    /* Concurrent holders verifying with the shared EVP_PKEY. */
    unsigned char sig[512];
    size_t n = sign(rsa_a, MCPAUTH_ALG_RS256, INPUT, strlen(INPUT), sig, sizeof sig, 1);
    pthread_t th[4];
    thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (thread_arg){set, sig, n, 0};
        ck_assert_int_eq(pthread_create(&th[i], NULL, hammer, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
        ck_assert_int_eq(args[i].bad, 0);
    }
    /* A holder outliving the creator's reference keeps the keys alive. */
    mcpauth_jwks *held = mcpauth__jwks_ref(set);
    mcpauth__jwks_unref(set);
    const mcpauth_jwk *k = mcpauth__jwks_find(held, "r", MCPAUTH_ALG_RS256);
    ck_assert_int_eq(mcpauth__jws_verify(k, MCPAUTH_ALG_RS256, INPUT, strlen(INPUT), sig, n), 1);
    mcpauth__jwks_unref(held); /* last reference: LeakSanitizer sees it freed */
}
END_TEST

/* ---- key selection ---- */

START_TEST(find_by_kid)
{
    char *doc = jwks_doc(jwk(rsa_a, "\"kid\":\"a\""), jwk(ec256, "\"kid\":\"b\""),
                         jwk(ec384, NULL), NULL);
    mcpauth_jwks *set = parse_ok(doc);
    free(doc);
    const mcpauth_jwk *ka = mcpauth__jwks_key(set, 0), *kb = mcpauth__jwks_key(set, 1);
    ck_assert_ptr_eq(mcpauth__jwks_find(set, "a", MCPAUTH_ALG_RS256), ka);
    ck_assert_ptr_eq(mcpauth__jwks_find(set, "a", MCPAUTH_ALG_PS512), ka);
    ck_assert_ptr_null(mcpauth__jwks_find(set, "a", MCPAUTH_ALG_ES256)); /* kid right, alg not */
    ck_assert_ptr_eq(mcpauth__jwks_find(set, "b", MCPAUTH_ALG_ES256), kb);
    ck_assert_ptr_null(mcpauth__jwks_find(set, "b", MCPAUTH_ALG_ES384));
    /* Exact match only. */
    ck_assert_ptr_null(mcpauth__jwks_find(set, "A", MCPAUTH_ALG_RS256));
    ck_assert_ptr_null(mcpauth__jwks_find(set, "a ", MCPAUTH_ALG_RS256));
    ck_assert_ptr_null(mcpauth__jwks_find(set, "ab", MCPAUTH_ALG_RS256));
    ck_assert_ptr_null(mcpauth__jwks_find(set, "", MCPAUTH_ALG_RS256));
    ck_assert_ptr_null(mcpauth__jwks_find(set, "zzz", MCPAUTH_ALG_RS256));
    /* A kid that names no key does not fall back to the kid-less P-384. */
    ck_assert_ptr_null(mcpauth__jwks_find(set, "c", MCPAUTH_ALG_ES384));
    ck_assert_ptr_null(mcpauth__jwks_find(set, "a", MCPAUTH_ALG_UNKNOWN));
    ck_assert_ptr_null(mcpauth__jwks_find(NULL, "a", MCPAUTH_ALG_RS256));
    mcpauth__jwks_unref(set);
}
END_TEST

START_TEST(find_without_kid)
{
    char *doc = jwks_doc(jwk(rsa_a, "\"kid\":\"a\""), jwk(ec256, NULL), jwk(ec384, NULL), NULL);
    mcpauth_jwks *set = parse_ok(doc);
    free(doc);
    /* The single key that fits, kid or not. */
    ck_assert_ptr_eq(mcpauth__jwks_find(set, NULL, MCPAUTH_ALG_RS256), mcpauth__jwks_key(set, 0));
    ck_assert_ptr_eq(mcpauth__jwks_find(set, NULL, MCPAUTH_ALG_ES256), mcpauth__jwks_key(set, 1));
    ck_assert_ptr_eq(mcpauth__jwks_find(set, NULL, MCPAUTH_ALG_ES384), mcpauth__jwks_key(set, 2));
    ck_assert_ptr_null(mcpauth__jwks_find(set, NULL, MCPAUTH_ALG_ES512));
    ck_assert_ptr_null(mcpauth__jwks_find(set, NULL, MCPAUTH_ALG_UNKNOWN));
    mcpauth__jwks_unref(set);

    /* Two RSA keys: without a kid the token cannot pick one by trial. */
    doc = jwks_doc(jwk(rsa_a, "\"kid\":\"a\""), jwk(rsa_b, "\"kid\":\"b\""), jwk(ec256, NULL),
                   NULL);
    set = parse_ok(doc);
    free(doc);
    ck_assert_ptr_null(mcpauth__jwks_find(set, NULL, MCPAUTH_ALG_RS256));
    ck_assert_ptr_null(mcpauth__jwks_find(set, NULL, MCPAUTH_ALG_PS256));
    ck_assert_ptr_eq(mcpauth__jwks_find(set, "b", MCPAUTH_ALG_RS256), mcpauth__jwks_key(set, 1));
    ck_assert_ptr_eq(mcpauth__jwks_find(set, NULL, MCPAUTH_ALG_ES256), mcpauth__jwks_key(set, 2));
    mcpauth__jwks_unref(set);

    /* ...unless their "alg" tells them apart. */
    doc = jwks_doc(jwk(rsa_a, "\"alg\":\"RS256\""), jwk(rsa_b, "\"alg\":\"PS256\""), NULL);
    set = parse_ok(doc);
    free(doc);
    ck_assert_ptr_eq(mcpauth__jwks_find(set, NULL, MCPAUTH_ALG_RS256), mcpauth__jwks_key(set, 0));
    ck_assert_ptr_eq(mcpauth__jwks_find(set, NULL, MCPAUTH_ALG_PS256), mcpauth__jwks_key(set, 1));
    ck_assert_ptr_null(mcpauth__jwks_find(set, NULL, MCPAUTH_ALG_RS384));
    mcpauth__jwks_unref(set);
}
END_TEST

START_TEST(find_duplicate_kid)
{
    char *doc = jwks_doc(jwk(rsa_a, "\"kid\":\"k\""), jwk(rsa_b, "\"kid\":\"k\""),
                         jwk(ec256, "\"kid\":\"k\""), jwk(ec384, "\"kid\":\"k\",\"alg\":\"ES384\""),
                         jwk(rsa_a, "\"kid\":\"j\",\"alg\":\"RS256\""),
                         jwk(rsa_b, "\"kid\":\"j\",\"alg\":\"RS512\""), NULL);
    mcpauth_jwks *set = parse_ok(doc);
    free(doc);
    ck_assert_uint_eq(mcpauth__jwks_count(set), 6); /* both kept */
    /* Two RSA keys share "k": ambiguous, refused. */
    ck_assert_ptr_null(mcpauth__jwks_find(set, "k", MCPAUTH_ALG_RS256));
    /* Only one key under "k" fits ES256 / ES384. */
    ck_assert_ptr_eq(mcpauth__jwks_find(set, "k", MCPAUTH_ALG_ES256), mcpauth__jwks_key(set, 2));
    ck_assert_ptr_eq(mcpauth__jwks_find(set, "k", MCPAUTH_ALG_ES384), mcpauth__jwks_key(set, 3));
    /* "j" is told apart by the JWK alg. */
    ck_assert_ptr_eq(mcpauth__jwks_find(set, "j", MCPAUTH_ALG_RS256), mcpauth__jwks_key(set, 4));
    ck_assert_ptr_eq(mcpauth__jwks_find(set, "j", MCPAUTH_ALG_RS512), mcpauth__jwks_key(set, 5));
    ck_assert_ptr_null(mcpauth__jwks_find(set, "j", MCPAUTH_ALG_RS384));

    /* The ambiguity matters: a token signed by rsa_b under kid "k" must not
     * be verified just because one of the two keys would accept it. */
    unsigned char sig[512];
    size_t n = sign(rsa_b, MCPAUTH_ALG_RS256, INPUT, strlen(INPUT), sig, sizeof sig, 1);
    ck_assert_int_eq(mcpauth__jws_verify(mcpauth__jwks_find(set, "k", MCPAUTH_ALG_RS256),
                                        MCPAUTH_ALG_RS256, INPUT, strlen(INPUT), sig, n), 0);
    mcpauth__jwks_unref(set);
}
END_TEST

/* ---- the libjwt key-confusion weakness this module exists to avoid ---- */

START_TEST(libjwt_hs256_confusion)
{
    /* The attacker knows the AS's public key (it is published) and uses
     * its PEM text as an HMAC secret. */
    BIO *bio = BIO_new(BIO_s_mem());
    ck_assert_int_eq(PEM_write_bio_PUBKEY(bio, rsa_a), 1);
    char *pemdata;
    long pemlen = BIO_get_mem_data(bio, &pemdata);
    ck_assert_int_gt(pemlen, 0);

    jwt_t *forged = NULL, *decoded = NULL;
    ck_assert_int_eq(jwt_new(&forged), 0);
    ck_assert_int_eq(jwt_add_grant(forged, "sub", "admin"), 0);
    ck_assert_int_eq(jwt_set_alg(forged, JWT_ALG_HS256, (const unsigned char *)pemdata,
                                 (int)pemlen), 0);
    char *token = jwt_encode_str(forged);
    ck_assert_ptr_nonnull(token);

    /* libjwt 1.10 verifies with the algorithm the token names, so the
     * forgery passes a decode keyed with the RSA public key. */
    int rc = jwt_decode(&decoded, token, (const unsigned char *)pemdata, (int)pemlen);
    ck_assert_int_eq(rc, 0);
    ck_assert_ptr_nonnull(decoded);
    ck_assert_int_eq(jwt_get_alg(decoded), JWT_ALG_HS256);
    ck_assert_str_eq(jwt_get_grant(decoded, "sub"), "admin");
    jwt_free(decoded);

    /* Our path: HS256 is not an algorithm, no key fits it, nothing verifies. */
    mcpauth_jwks *set;
    const mcpauth_jwk *k = one_key(&set, rsa_a, "\"kid\":\"as\"");
    mcpauth_alg alg = mcpauth__alg_from_name("HS256");
    ck_assert_int_eq(alg, MCPAUTH_ALG_UNKNOWN);
    ck_assert_ptr_null(mcpauth__jwks_find(set, "as", alg));
    ck_assert_ptr_null(mcpauth__jwks_find(set, NULL, alg));
    ck_assert_int_eq(mcpauth__jwk_fits(k, alg), 0);

    /* Even relabelled RS256, the HMAC tag is not an RSA signature. */
    const char *dot2 = strrchr(token, '.');
    ck_assert_ptr_nonnull(dot2);
    unsigned char mac[64];
    ssize_t maclen = mcpauth__b64url_decode(dot2 + 1, strlen(dot2 + 1), mac, sizeof mac);
    ck_assert_int_eq(maclen, 32);
    size_t inlen = (size_t)(dot2 - token);
    ck_assert_int_eq(mcpauth__jws_verify(k, alg, token, inlen, mac, (size_t)maclen), 0);
    for (int a = MCPAUTH_ALG_RS256; a < MCPAUTH_ALG_COUNT; a++)
        ck_assert_int_eq(mcpauth__jws_verify(k, (mcpauth_alg)a, token, inlen, mac, (size_t)maclen),
                         0);

    mcpauth__jwks_unref(set);
    free(token);
    jwt_free(forged);
    BIO_free(bio);
}
END_TEST

Suite *jose_suite(void)
{
    Suite *s = suite_create("jose");
    TCase *tc = tcase_create("jose");
    tcase_add_unchecked_fixture(tc, keys_setup, keys_teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, alg_names);
    tcase_add_test(tc, verify_every_alg);
    tcase_add_test(tc, verify_wrong_key);
    tcase_add_test(tc, verify_tampered);
    tcase_add_test(tc, verify_es_raw_only);
    tcase_add_test(tc, verify_rsa_exact_length);
    tcase_add_test(tc, verify_cross_padding);
    tcase_add_test(tc, verify_pss_salt_length);
    tcase_add_test(tc, fits_and_mismatch);
    tcase_add_test(tc, jwks_mixed);
    tcase_add_test(tc, jwks_skipped);
    tcase_add_test(tc, jwks_malformed_documents);
    tcase_add_test(tc, jwks_malformed_keys);
    tcase_add_test(tc, rsa_too_large);
    tcase_add_test(tc, jwk_member_nul);
    tcase_add_test(tc, jwks_refcount);
    tcase_add_test(tc, find_by_kid);
    tcase_add_test(tc, find_without_kid);
    tcase_add_test(tc, find_duplicate_kid);
    tcase_add_test(tc, libjwt_hs256_confusion);
    suite_add_tcase(s, tc);
    return s;
}
