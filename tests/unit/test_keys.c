/* Signing keys of the built-in authorization server: generation into a real
 * store in a temporary state directory, file modes, RFC 7638 thumbprints
 * (checked against the RFC's own example and recomputed here), signatures
 * checked with jose.c's verifier, rotation, and the refusals of unsafe key
 * and secret files. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <mcpauth/util.h>

#include "encode.h"

#include "jose.h"
#include "keys.h"
#include "store.h"
#include "suites.h"

Suite *keys_suite(void); /* also in suites.h once wired in */

static char dir[64];
static mcpauth_store *store;
static char err[512];

static void rm_rf(const char *path)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0)
        fprintf(stderr, "test_keys: cannot remove %s\n", path);
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/mcpauth-keys.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    store = mcpauth__store_open(dir, NULL, err, sizeof err);
    ck_assert_msg(store != NULL, "store: %s", err);
}

static void teardown(void)
{
    mcpauth__store_close(store);
    store = NULL;
    rm_rf(dir);
}

static mode_t mode_of(const char *path)
{
    struct stat st;
    ck_assert_int_eq(lstat(path, &st), 0);
    return st.st_mode & 07777;
}

static void key_path(char *out, size_t outlen, const char *kid)
{
    snprintf(out, outlen, "%s/keys/%s.pem", dir, kid);
}

static char *b64_decode_str(const char *in, size_t len)
{
    char *out = malloc(len + 1);
    ck_assert_ptr_nonnull(out);
    ssize_t n = mcpauth__b64url_decode(in, len, (unsigned char *)out, len);
    ck_assert_int_ge(n, 0);
    out[n] = '\0';
    return out;
}

/* Verifies token with the key the JWKS publishes under kid, as a resource
 * would; returns 1 when valid. Fills header and payload (caller frees). */
static int verify(const char *jwks, const char *token, const char *kid, mcpauth_alg alg,
                  char **header, char **payload)
{
    mcpauth_jwks *set = mcpauth__jwks_parse(jwks, strlen(jwks), err, sizeof err);
    ck_assert_msg(set != NULL, "jwks: %s", err);
    const mcpauth_jwk *key = mcpauth__jwks_find(set, kid, alg);
    ck_assert_ptr_nonnull(key);
    const char *d1 = strchr(token, '.');
    ck_assert_ptr_nonnull(d1);
    const char *d2 = strchr(d1 + 1, '.');
    ck_assert_ptr_nonnull(d2);
    ck_assert_ptr_null(strchr(d2 + 1, '.'));
    if (header)
        *header = b64_decode_str(token, (size_t)(d1 - token));
    if (payload)
        *payload = b64_decode_str(d1 + 1, (size_t)(d2 - d1 - 1));
    unsigned char sig[1024];
    ssize_t siglen = mcpauth__b64url_decode(d2 + 1, strlen(d2 + 1), sig, sizeof sig);
    ck_assert_int_gt(siglen, 0);
    if (alg == MCPAUTH_ALG_ES256)
        ck_assert_int_eq(siglen, 64);
    else
        ck_assert_int_eq(siglen, 384); /* RSA 3072 */
    int ok = mcpauth__jws_verify(key, alg, token, (size_t)(d2 - token), sig, (size_t)siglen);
    mcpauth__jwks_unref(set);
    return ok;
}

static json_object *jwks_key(json_object *doc, const char *kid)
{
    json_object *keys;
    ck_assert(json_object_object_get_ex(doc, "keys", &keys));
    for (size_t i = 0; i < json_object_array_length(keys); i++) {
        json_object *k = json_object_array_get_idx(keys, i), *v;
        if (json_object_object_get_ex(k, "kid", &v) && strcmp(json_object_get_string(v), kid) == 0)
            return k;
    }
    return NULL;
}

static const char *member(json_object *o, const char *name)
{
    json_object *v;
    ck_assert_msg(json_object_object_get_ex(o, name, &v), "member %s missing", name);
    return json_object_get_string(v);
}

static size_t nkeys(const char *jwks)
{
    json_object *doc = json_tokener_parse(jwks), *keys;
    ck_assert_ptr_nonnull(doc);
    ck_assert(json_object_object_get_ex(doc, "keys", &keys));
    size_t n = json_object_array_length(keys);
    json_object_put(doc);
    return n;
}

/* ------------------------------------------------------------ thumbprint */

/* RFC 7638 §3.1: the example RSA key and its thumbprint. */
START_TEST(test_thumbprint_rfc7638)
{
    const char *jwks =
        "{\"keys\":[{\"kty\":\"RSA\",\"e\":\"AQAB\",\"alg\":\"RS256\",\"kid\":\"2011-04-29\","
        "\"n\":\"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSo"
        "c_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FD"
        "W2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6"
        "WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw\"}]}";
    mcpauth_jwks *set = mcpauth__jwks_parse(jwks, strlen(jwks), err, sizeof err);
    ck_assert_msg(set != NULL, "%s", err);
    ck_assert_uint_eq(mcpauth__jwks_count(set), 1);
    char tp[64];
    ck_assert_int_eq(mcpauth__keys_thumbprint(mcpauth__jwks_key(set, 0)->pkey, tp, sizeof tp), 0);
    ck_assert_str_eq(tp, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    /* too small a buffer */
    ck_assert_int_eq(mcpauth__keys_thumbprint(mcpauth__jwks_key(set, 0)->pkey, tp, 43), -1);
    mcpauth__jwks_unref(set);

    /* not P-256 nor RSA */
    EVP_PKEY *p384 = EVP_EC_gen("secp384r1");
    ck_assert_ptr_nonnull(p384);
    ck_assert_int_eq(mcpauth__keys_thumbprint(p384, tp, sizeof tp), -1);
    EVP_PKEY_free(p384);
}
END_TEST

/* The kid of a generated key, recomputed from its published JWK. */
static void check_kid_is_thumbprint(const char *alg)
{
    char kid[64];
    ck_assert_msg(mcpauth__keys_generate(store, dir, alg, time(NULL), kid, sizeof kid, err,
                                        sizeof err) == 0, "%s", err);
    char *jwks = mcpauth__keys_jwks(store, 0, err, sizeof err);
    ck_assert_msg(jwks != NULL, "%s", err);
    json_object *doc = json_tokener_parse(jwks);
    ck_assert_ptr_nonnull(doc);
    json_object *k = jwks_key(doc, kid);
    ck_assert_ptr_nonnull(k);
    char canon[2048];
    if (strcmp(alg, "ES256") == 0) {
        ck_assert_str_eq(member(k, "kty"), "EC");
        ck_assert_str_eq(member(k, "crv"), "P-256");
        ck_assert_uint_eq(strlen(member(k, "x")), 43); /* 32 bytes, padded */
        ck_assert_uint_eq(strlen(member(k, "y")), 43);
        snprintf(canon, sizeof canon, "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}",
                 member(k, "x"), member(k, "y"));
    } else {
        ck_assert_str_eq(member(k, "kty"), "RSA");
        ck_assert_str_eq(member(k, "e"), "AQAB");
        ck_assert_uint_eq(strlen(member(k, "n")), 512); /* 3072 bits */
        snprintf(canon, sizeof canon, "{\"e\":\"%s\",\"kty\":\"RSA\",\"n\":\"%s\"}", member(k, "e"),
                 member(k, "n"));
    }
    ck_assert_str_eq(member(k, "alg"), alg);
    ck_assert_str_eq(member(k, "use"), "sig");
    unsigned char md[32];
    unsigned int mdlen = 0;
    ck_assert_int_eq(EVP_Digest(canon, strlen(canon), md, &mdlen, EVP_sha256(), NULL), 1);
    char expect[64];
    ck_assert_int_eq(mcpauth__b64url_encode(md, mdlen, expect, sizeof expect), 43);
    ck_assert_str_eq(kid, expect);
    json_object_put(doc);
    free(jwks);
}

START_TEST(test_kid_thumbprint_es256)
{
    check_kid_is_thumbprint("ES256");
}
END_TEST

START_TEST(test_kid_thumbprint_rs256)
{
    check_kid_is_thumbprint("RS256");
}
END_TEST

/* ------------------------------------------------- generation and signing */

static void check_sign_verify(const char *alg, mcpauth_alg a)
{
    char kid[64], path[512], keysdir[512];
    ck_assert_msg(mcpauth__keys_generate(store, dir, alg, time(NULL), kid, sizeof kid, err,
                                        sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(strlen(kid), 43);
    key_path(path, sizeof path, kid);
    snprintf(keysdir, sizeof keysdir, "%s/keys", dir);
    ck_assert_uint_eq(mode_of(keysdir), 0700);
    ck_assert_uint_eq(mode_of(path), 0600);

    mcpauth_signer *k = mcpauth__keys_load_current(store, err, sizeof err);
    ck_assert_msg(k != NULL, "%s", err);
    ck_assert_str_eq(k->kid, kid);
    ck_assert_str_eq(k->alg, alg);

    char *jwks = mcpauth__keys_jwks(store, time(NULL), err, sizeof err);
    ck_assert_msg(jwks != NULL, "%s", err);
    ck_assert_uint_eq(nkeys(jwks), 1);
    ck_assert_ptr_null(strstr(jwks, "\"d\"")); /* public members only */
    ck_assert_ptr_null(strstr(jwks, "\"p\""));

    const char *claims = "{\"iss\":\"https://as.example.com\",\"sub\":\"alice\",\"exp\":2000000000}";
    char *hdr, *pl, want[160];

    /* with typ */
    char *tok = mcpauth__jws_sign(k, "at+jwt", claims);
    ck_assert_ptr_nonnull(tok);
    ck_assert_int_eq(verify(jwks, tok, kid, a, &hdr, &pl), 1);
    snprintf(want, sizeof want, "{\"alg\":\"%s\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", alg, kid);
    ck_assert_str_eq(hdr, want);
    ck_assert_str_eq(pl, claims);
    free(hdr);
    free(pl);

    /* a changed payload no longer verifies */
    char *dot = strchr(tok, '.');
    dot[1] = dot[1] == 'e' ? 'f' : 'e';
    ck_assert_int_eq(verify(jwks, tok, kid, a, NULL, NULL), 0);
    free(tok);

    /* without typ */
    tok = mcpauth__jws_sign(k, NULL, claims);
    ck_assert_ptr_nonnull(tok);
    ck_assert_int_eq(verify(jwks, tok, kid, a, &hdr, NULL), 1);
    snprintf(want, sizeof want, "{\"alg\":\"%s\",\"kid\":\"%s\"}", alg, kid);
    ck_assert_str_eq(hdr, want);
    free(hdr);
    free(tok);

    /* a typ needing JSON escapes stays valid JSON */
    tok = mcpauth__jws_sign(k, "a\"b/c", claims);
    ck_assert_ptr_nonnull(tok);
    ck_assert_int_eq(verify(jwks, tok, kid, a, &hdr, NULL), 1);
    json_object *h = json_tokener_parse(hdr);
    ck_assert_ptr_nonnull(h);
    ck_assert_str_eq(member(h, "typ"), "a\"b/c");
    json_object_put(h);
    free(hdr);
    free(tok);

    ck_assert_ptr_null(mcpauth__jws_sign(k, NULL, NULL));
    ck_assert_ptr_null(mcpauth__jws_sign(NULL, NULL, claims));
    mcpauth__signer_free(k);
    free(jwks);
}

START_TEST(test_sign_es256)
{
    check_sign_verify("ES256", MCPAUTH_ALG_ES256);
}
END_TEST

START_TEST(test_sign_rs256)
{
    check_sign_verify("RS256", MCPAUTH_ALG_RS256);
}
END_TEST

/* Many ES256 signatures: R or S with leading zero bytes must still be
 * 32 bytes each (padding), which a single signature rarely exercises. */
START_TEST(test_es256_padding)
{
    char kid[64];
    ck_assert_int_eq(mcpauth__keys_generate(store, dir, "ES256", time(NULL), kid, sizeof kid, err,
                                           sizeof err), 0);
    mcpauth_signer *k = mcpauth__keys_load_current(store, err, sizeof err);
    ck_assert_ptr_nonnull(k);
    char *jwks = mcpauth__keys_jwks(store, 0, err, sizeof err);
    ck_assert_ptr_nonnull(jwks);
    for (int i = 0; i < 300; i++) {
        char claims[64];
        snprintf(claims, sizeof claims, "{\"n\":%d}", i);
        char *tok = mcpauth__jws_sign(k, "JWT", claims);
        ck_assert_ptr_nonnull(tok);
        ck_assert_int_eq(verify(jwks, tok, kid, MCPAUTH_ALG_ES256, NULL, NULL), 1);
        free(tok);
    }
    free(jwks);
    mcpauth__signer_free(k);
}
END_TEST

START_TEST(test_generate_bad_alg)
{
    char kid[64];
    ck_assert_int_eq(mcpauth__keys_generate(store, dir, "HS256", time(NULL), kid, sizeof kid, err,
                                           sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "HS256"));
    ck_assert_int_eq(mcpauth__keys_generate(store, dir, NULL, time(NULL), kid, sizeof kid, err,
                                           sizeof err), -1);
    /* nothing recorded */
    ck_assert_ptr_null(mcpauth__keys_load_current(store, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "mcpauth init"));
    char *jwks = mcpauth__keys_jwks(store, 0, err, sizeof err);
    ck_assert_ptr_nonnull(jwks);
    ck_assert_str_eq(jwks, "{\"keys\":[]}");
    free(jwks);
}
END_TEST

START_TEST(test_keys_dir_refused)
{
    char keysdir[512], kid[64];
    snprintf(keysdir, sizeof keysdir, "%s/keys", dir);
    ck_assert_int_eq(mkdir(keysdir, 0755), 0);
    ck_assert_int_eq(chmod(keysdir, 0755), 0);
    ck_assert_int_eq(mcpauth__keys_generate(store, dir, "ES256", time(NULL), kid, sizeof kid, err,
                                           sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "0755"));
    ck_assert_int_eq(rmdir(keysdir), 0);
    ck_assert_int_eq(symlink("/tmp", keysdir), 0);
    ck_assert_int_eq(mcpauth__keys_generate(store, dir, "ES256", time(NULL), kid, sizeof kid, err,
                                           sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "symbolic link"));
}
END_TEST

/* --------------------------------------------------------------- rotation */

START_TEST(test_rotation)
{
    char kid1[64], kid2[64], path1[512], path2[512];
    time_t t1 = 1700000000, t2 = t1 + 3600;
    ck_assert_int_eq(mcpauth__keys_generate(store, dir, "ES256", t1, kid1, sizeof kid1, err,
                                           sizeof err), 0);
    ck_assert_int_eq(mcpauth__keys_generate(store, dir, "RS256", t2, kid2, sizeof kid2, err,
                                           sizeof err), 0);
    ck_assert_str_ne(kid1, kid2);

    /* the newer is current */
    mcpauth_signer *k = mcpauth__keys_load_current(store, err, sizeof err);
    ck_assert_msg(k != NULL, "%s", err);
    ck_assert_str_eq(k->kid, kid2);
    ck_assert_str_eq(k->alg, "RS256");

    /* both published while tokens of the first may live (retired at t2) */
    char *jwks = mcpauth__keys_jwks(store, t2 - 600, err, sizeof err);
    ck_assert_msg(jwks != NULL, "%s", err);
    ck_assert_uint_eq(nkeys(jwks), 2);
    ck_assert_ptr_nonnull(strstr(jwks, kid1));
    ck_assert_ptr_nonnull(strstr(jwks, kid2));

    /* a token signed by the retired key still verifies against the set */
    free(jwks);
    jwks = mcpauth__keys_jwks(store, t2, err, sizeof err); /* retired at t2: not after t2 */
    ck_assert_ptr_nonnull(jwks);
    ck_assert_uint_eq(nkeys(jwks), 1);
    ck_assert_ptr_null(strstr(jwks, kid1));
    ck_assert_ptr_nonnull(strstr(jwks, kid2));
    free(jwks);

    /* purge drops the old key's row; prune then deletes its file */
    key_path(path1, sizeof path1, kid1);
    key_path(path2, sizeof path2, kid2);
    ck_assert_int_ge(mcpauth__store_purge(store, t2 + 10, t2 + 1), 1);
    ck_assert_int_eq(mcpauth__keys_prune(store, dir, time(NULL), err, sizeof err), 0); /* too new */
    ck_assert_int_eq(access(path1, F_OK), 0);
    ck_assert_int_eq(mcpauth__keys_prune(store, dir, time(NULL) + 120, err, sizeof err), 1);
    ck_assert_int_ne(access(path1, F_OK), 0);
    ck_assert_int_eq(access(path2, F_OK), 0);
    mcpauth__signer_free(k);
    k = mcpauth__keys_load_current(store, err, sizeof err);
    ck_assert_msg(k != NULL, "%s", err);
    ck_assert_str_eq(k->kid, kid2);
    mcpauth__signer_free(k);
}
END_TEST

/* A retired key whose file is gone is left out rather than breaking the
 * whole set; a current key whose file is gone is an error. */
START_TEST(test_jwks_missing_file)
{
    char kid1[64], kid2[64], path[512];
    ck_assert_int_eq(mcpauth__keys_generate(store, dir, "ES256", 1000, kid1, sizeof kid1, err,
                                           sizeof err), 0);
    ck_assert_int_eq(mcpauth__keys_generate(store, dir, "ES256", 2000, kid2, sizeof kid2, err,
                                           sizeof err), 0);
    key_path(path, sizeof path, kid1);
    ck_assert_int_eq(unlink(path), 0);
    char *jwks = mcpauth__keys_jwks(store, 0, err, sizeof err);
    ck_assert_msg(jwks != NULL, "%s", err);
    ck_assert_uint_eq(nkeys(jwks), 1);
    free(jwks);
    key_path(path, sizeof path, kid2);
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_ptr_null(mcpauth__keys_jwks(store, 0, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, path));
}
END_TEST

/* ---------------------------------------------------- unsafe key files */

START_TEST(test_load_refuses_unsafe)
{
    char kid[64], path[512], moved[600];
    ck_assert_int_eq(mcpauth__keys_generate(store, dir, "ES256", time(NULL), kid, sizeof kid, err,
                                           sizeof err), 0);
    key_path(path, sizeof path, kid);

    ck_assert_int_eq(chmod(path, 0644), 0);
    ck_assert_ptr_null(mcpauth__keys_load_current(store, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, path));
    ck_assert_ptr_nonnull(strstr(err, "0644"));
    ck_assert_ptr_null(mcpauth__keys_jwks(store, 0, err, sizeof err));
    ck_assert_int_eq(chmod(path, 0640), 0);
    ck_assert_ptr_null(mcpauth__keys_load_current(store, err, sizeof err));

    ck_assert_int_eq(chmod(path, 0600), 0);
    mcpauth_signer *k = mcpauth__keys_load_current(store, err, sizeof err);
    ck_assert_msg(k != NULL, "%s", err);
    mcpauth__signer_free(k);

    /* a symbolic link to a perfectly good key file */
    snprintf(moved, sizeof moved, "%s/elsewhere.pem", dir);
    ck_assert_int_eq(rename(path, moved), 0);
    ck_assert_int_eq(symlink(moved, path), 0);
    ck_assert_ptr_null(mcpauth__keys_load_current(store, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "symbolic link"));
    ck_assert_ptr_nonnull(strstr(err, path));

    /* another key's file in its place */
    ck_assert_int_eq(unlink(path), 0);
    EVP_PKEY *other = EVP_EC_gen("P-256");
    ck_assert_ptr_nonnull(other);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fchmod(fileno(f), 0600), 0);
    ck_assert_int_eq(PEM_write_PrivateKey(f, other, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    EVP_PKEY_free(other);
    ck_assert_ptr_null(mcpauth__keys_load_current(store, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "does not hold"));

    /* not a key at all */
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("hello\n", f);
    fclose(f);
    ck_assert_ptr_null(mcpauth__keys_load_current(store, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "not a PEM private key"));
}
END_TEST

/* An RSA key outside 2048..8192 bits recorded as current (by hand, or by
 * an older version) is refused at load, naming its kid: the old code
 * signed with a 1024-bit key, and a key over 8192 bits signs tokens no
 * verifier can check (jose.c skips such keys). */
START_TEST(test_load_refuses_rsa_size)
{
    EVP_PKEY *weak = EVP_RSA_gen(1024);
    ck_assert_ptr_nonnull(weak);
    char kid[64], path[512], kdir[256];
    ck_assert_int_eq(mcpauth__keys_thumbprint(weak, kid, sizeof kid), 0);
    snprintf(kdir, sizeof kdir, "%s/keys", dir);
    ck_assert_int_eq(mkdir(kdir, 0700), 0);
    key_path(path, sizeof path, kid);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fchmod(fileno(f), 0600), 0);
    ck_assert_int_eq(PEM_write_PrivateKey(f, weak, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    EVP_PKEY_free(weak);
    mcpauth_keyinfo ki = {kid, "RS256", path, time(NULL), 0, NULL};
    ck_assert_int_eq(mcpauth__store_key_add(store, &ki), 0);

    ck_assert_ptr_null(mcpauth__keys_load_current(store, err, sizeof err));
    ck_assert_msg(strstr(err, kid) && strstr(err, "RSA key of 1024 bits, outside 2048 to 8192"),
                  "%s", err);
    ck_assert_ptr_null(mcpauth__keys_jwks(store, 0, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, kid));
}
END_TEST

/* ---------------------------------------------------------------- secret */

START_TEST(test_secret)
{
    char path[512];
    unsigned char a[MCPAUTH_SECRET_BYTES], b[MCPAUTH_SECRET_BYTES];
    snprintf(path, sizeof path, "%s/secret", dir);
    ck_assert_int_eq(mcpauth__secret_load(NULL, dir, a, err, sizeof err), -1);
    ck_assert_int_eq(mcpauth__secret_create(NULL, dir, err, sizeof err), 1);
    ck_assert_uint_eq(mode_of(path), 0600);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_size, MCPAUTH_SECRET_BYTES);
    ck_assert_int_eq(mcpauth__secret_load(NULL, dir, a, err, sizeof err), 0);
    /* idempotent: the secret is kept */
    ck_assert_int_eq(mcpauth__secret_create(NULL, dir, err, sizeof err), 0);
    ck_assert_int_eq(mcpauth__secret_load(NULL, dir, b, err, sizeof err), 0);
    ck_assert_mem_eq(a, b, sizeof a);
    static const unsigned char zero[MCPAUTH_SECRET_BYTES];
    ck_assert(memcmp(a, zero, sizeof a) != 0);

    ck_assert_int_eq(chmod(path, 0644), 0);
    ck_assert_int_eq(mcpauth__secret_load(NULL, dir, a, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "0644"));
    ck_assert_int_eq(mcpauth__secret_create(NULL, dir, err, sizeof err), -1);
    ck_assert_int_eq(chmod(path, 0600), 0);

    /* truncated */
    ck_assert_int_eq(truncate(path, 16), 0);
    ck_assert_int_eq(mcpauth__secret_load(NULL, dir, a, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "not 32 bytes"));

    /* symlink */
    char moved[600];
    snprintf(moved, sizeof moved, "%s/elsewhere", dir);
    ck_assert_int_eq(rename(path, moved), 0);
    ck_assert_int_eq(symlink(moved, path), 0);
    ck_assert_int_eq(mcpauth__secret_load(NULL, dir, a, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "symbolic link"));
    ck_assert_int_eq(mcpauth__secret_create(NULL, dir, err, sizeof err), -1);
}
END_TEST

Suite *keys_suite(void)
{
    Suite *s = suite_create("keys");
    TCase *tc = tcase_create("keys");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60); /* RSA 3072 generation, under sanitizers too */
    tcase_add_test(tc, test_thumbprint_rfc7638);
    tcase_add_test(tc, test_kid_thumbprint_es256);
    tcase_add_test(tc, test_kid_thumbprint_rs256);
    tcase_add_test(tc, test_sign_es256);
    tcase_add_test(tc, test_sign_rs256);
    tcase_add_test(tc, test_es256_padding);
    tcase_add_test(tc, test_generate_bad_alg);
    tcase_add_test(tc, test_keys_dir_refused);
    tcase_add_test(tc, test_rotation);
    tcase_add_test(tc, test_jwks_missing_file);
    tcase_add_test(tc, test_load_refuses_unsafe);
    tcase_add_test(tc, test_load_refuses_rsa_size);
    tcase_add_test(tc, test_secret);
    suite_add_tcase(s, tc);
    return s;
}
