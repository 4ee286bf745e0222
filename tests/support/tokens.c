/* See tokens.h. */
#define _GNU_SOURCE
#include "tokens.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/ecdsa.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

static char *b64url(const unsigned char *in, size_t len)
{
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    int n = EVP_EncodeBlock((unsigned char *)out, in, (int)len);
    while (n > 0 && out[n - 1] == '=')
        n--;
    out[n] = '\0';
    for (int i = 0; i < n; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    return out;
}

static char *bn_b64(EVP_PKEY *pk, const char *param, size_t pad)
{
    BIGNUM *bn = NULL;
    EVP_PKEY_get_bn_param(pk, param, &bn);
    size_t len = pad ? pad : (size_t)BN_num_bytes(bn);
    unsigned char *buf = calloc(1, len);
    BN_bn2binpad(bn, buf, (int)len);
    char *s = b64url(buf, len);
    free(buf);
    BN_free(bn);
    return s;
}

static char *pem_of(EVP_PKEY *pk, int private)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (private)
        PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL);
    else
        PEM_write_bio_PUBKEY(b, pk);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *s = strndup(data, (size_t)n);
    BIO_free(b);
    return s;
}

tk_key *tk_key_new(const char *alg, const char *kid, int bits)
{
    tk_key *k = calloc(1, sizeof *k);
    snprintf(k->kid, sizeof k->kid, "%s", kid);
    snprintf(k->alg, sizeof k->alg, "%s", alg);
    EVP_PKEY *pk = NULL;
    char *jwk = NULL;
    if (alg[0] == 'R' || alg[0] == 'P') {
        pk = EVP_RSA_gen((unsigned)(bits ? bits : 2048));
        char *n = bn_b64(pk, OSSL_PKEY_PARAM_RSA_N, 0), *e = bn_b64(pk, OSSL_PKEY_PARAM_RSA_E, 0);
        if (asprintf(&jwk, "{\"kty\":\"RSA\",\"kid\":\"%s\",\"alg\":\"%s\",\"use\":\"sig\",\"n\":\"%s\",\"e\":\"%s\"}",
                     kid, alg, n, e) < 0)
            jwk = NULL;
        free(n);
        free(e);
    } else {
        const char *curve = !strcmp(alg, "ES384") ? "P-384" : !strcmp(alg, "ES512") ? "P-521" : "P-256";
        size_t len = !strcmp(alg, "ES384") ? 48 : !strcmp(alg, "ES512") ? 66 : 32;
        pk = EVP_EC_gen(curve);
        char *x = bn_b64(pk, OSSL_PKEY_PARAM_EC_PUB_X, len), *y = bn_b64(pk, OSSL_PKEY_PARAM_EC_PUB_Y, len);
        if (asprintf(&jwk, "{\"kty\":\"EC\",\"kid\":\"%s\",\"alg\":\"%s\",\"crv\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"}",
                     kid, alg, curve, x, y) < 0)
            jwk = NULL;
        free(x);
        free(y);
    }
    k->pkey = pk;
    k->jwk = jwk;
    k->private_pem = pem_of(pk, 1);
    k->public_pem = pem_of(pk, 0);
    return k;
}

void tk_key_free(tk_key *k)
{
    if (!k)
        return;
    EVP_PKEY_free(k->pkey);
    free(k->private_pem);
    free(k->public_pem);
    free(k->jwk);
    free(k);
}

char *tk_jwks(tk_key *const *keys, size_t n)
{
    char *out = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&out, &len);
    fputs("{\"keys\":[", m);
    for (size_t i = 0; i < n; i++)
        fprintf(m, "%s%s", i ? "," : "", keys[i]->jwk);
    fputs("]}", m);
    fclose(m);
    return out;
}

int tk_write(const char *path, const char *text)
{
    /* write then rename, so a server reading the file never sees half */
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    fputs(text, f);
    if (fclose(f) != 0)
        return -1;
    return rename(tmp, path);
}

static jwt_alg_t alg_of(const char *name)
{
    return jwt_str_alg(name);
}

static char *mint(const char *alg, const unsigned char *key, size_t keylen, const char *kid,
                  const char *claims, const char *extra_header)
{
    jwt_t *jwt = NULL;
    if (jwt_new(&jwt) != 0)
        return NULL;
    if (claims && jwt_add_grants_json(jwt, claims) != 0) {
        jwt_free(jwt);
        return NULL;
    }
    int no_kid = extra_header && strstr(extra_header, "\"kid\":\"\"");
    if (kid && *kid && !no_kid)
        jwt_add_header(jwt, "kid", kid);
    if (extra_header && !no_kid && jwt_add_headers_json(jwt, extra_header) != 0) {
        jwt_free(jwt);
        return NULL;
    }
    if (jwt_set_alg(jwt, alg_of(alg), key, (int)keylen) != 0) {
        jwt_free(jwt);
        return NULL;
    }
    char *s = jwt_encode_str(jwt);
    jwt_free(jwt);
    if (!s)
        return NULL;
    char *copy = strdup(s);
    free(s); /* libjwt 1.10 allocates with malloc */
    return copy;
}

char *tk_sign(const tk_key *k, const char *header, const char *claims)
{
    char *h = b64url((const unsigned char *)header, strlen(header));
    char *p = b64url((const unsigned char *)claims, strlen(claims));
    char *input = NULL;
    if (asprintf(&input, "%s.%s", h, p) < 0)
        input = NULL;
    free(h);
    free(p);
    const EVP_MD *md = strstr(k->alg, "384") ? EVP_sha384() : strstr(k->alg, "512") ? EVP_sha512()
                                                                                     : EVP_sha256();
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    EVP_DigestSignInit(ctx, &pctx, md, NULL, k->pkey);
    if (k->alg[0] == 'P') {
        EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
        EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST);
    }
    size_t siglen = 0;
    EVP_DigestSign(ctx, NULL, &siglen, (const unsigned char *)input, strlen(input));
    unsigned char *sig = malloc(siglen);
    EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)input, strlen(input));
    EVP_MD_CTX_free(ctx);
    if (k->alg[0] == 'E') { /* DER → R||S (RFC 7518 §3.4) */
        size_t n = !strcmp(k->alg, "ES384") ? 48 : !strcmp(k->alg, "ES512") ? 66 : 32;
        const unsigned char *q = sig;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &q, (long)siglen);
        unsigned char *raw = calloc(1, 2 * n);
        BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, (int)n);
        BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + n, (int)n);
        ECDSA_SIG_free(es);
        free(sig);
        sig = raw;
        siglen = 2 * n;
    }
    char *s64 = b64url(sig, siglen);
    free(sig);
    char *out = NULL;
    if (asprintf(&out, "%s.%s", input, s64) < 0)
        out = NULL;
    free(input);
    free(s64);
    return out;
}

char *tk_mint(const tk_key *k, const char *claims, const char *extra_header)
{
    if (k->alg[0] == 'P') { /* libjwt 1.10 has no PS* */
        char hdr[256];
        snprintf(hdr, sizeof hdr, "{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":\"%s\"}", k->alg, k->kid);
        return tk_sign(k, hdr, claims);
    }
    return mint(k->alg, (const unsigned char *)k->private_pem, strlen(k->private_pem), k->kid,
                claims, extra_header);
}

char *tk_mint_unsafe(const char *alg, const void *secret, size_t secretlen, const char *claims,
                     const char *extra_header)
{
    return mint(alg, secret, secretlen, NULL, claims, extra_header);
}

char *tk_compose(const char *header, const char *payload, const char *sig_b64)
{
    char *h = b64url((const unsigned char *)header, strlen(header));
    char *p = b64url((const unsigned char *)payload, strlen(payload));
    char *out = NULL;
    if (asprintf(&out, "%s.%s.%s", h, p, sig_b64) < 0)
        out = NULL;
    free(h);
    free(p);
    return out;
}

char *tk_claims(const char *iss, const char *aud, const char *scope, long lifetime)
{
    long now = (long)time(NULL);
    char *out = NULL;
    if (asprintf(&out,
                 "{\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"alice\",\"client_id\":\"app\","
                 "\"scope\":\"%s\",\"iat\":%ld,\"exp\":%ld,\"jti\":\"%ld-%d\"}",
                 iss, aud, scope, now, now + lifetime, now, rand()) < 0)
        out = NULL;
    return out;
}
