/* JWK sets and JWS signature verification over OpenSSL 3.  The key set is
 * parsed once into EVP_PKEY objects; verification takes the algorithm from
 * the caller's allow-list, never from the token, and refuses a key that
 * does not fit it. */
#include "config.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include <mcpauth/log.h>
#include <mcpauth/util.h>

#include "encode.h"

#include "alloc.h"
#include "jose.h"
#include "strbuf.h"

#define JWKS_MAX_BYTES (1 << 20) /* same as the default fetch limit */
#define JWKS_MAX_DEPTH 10        /* object, keys, key, key_ops: 4 needed */
#define JWKS_MAX_KEYS 100
#define KID_MAX_LEN 256
#define RSA_MIN_BITS 2048
#define RSA_MAX_BITS MCPAUTH_RSA_MAX_BITS
#define RSA_DECODE_BITS 16384    /* OpenSSL's own limit: larger "n" is garbage */
#define RSA_MAX_E_BITS 64        /* OpenSSL refuses larger e for big moduli */
#define EC_MAX_COORD 66          /* P-521 */
/* Longest base64url text we decode: RSA_DECODE_BITS plus one leading zero. */
#define B64_MAX_IN (((RSA_DECODE_BITS / 8 + 1) * 4 + 2) / 3)
#define B64_MAX_OUT (RSA_DECODE_BITS / 8 + 1)

struct mcpauth_jwks {
    atomic_uint refs;
    size_t n;
    mcpauth_jwk *keys;
};

typedef struct {
    const char *name;
    mcpauth_kty kty;
    int curve_nid; /* EC only */
    size_t coord;  /* EC: bytes per coordinate, so R||S is 2*coord */
    int pss;
    int md_bits;
} alg_info;

/* Indexed by mcpauth_alg. */
static const alg_info algs[MCPAUTH_ALG_COUNT] = {
    [MCPAUTH_ALG_UNKNOWN] = {NULL, 0, 0, 0, 0, 0},
    [MCPAUTH_ALG_RS256] = {"RS256", MCPAUTH_KTY_RSA, 0, 0, 0, 256},
    [MCPAUTH_ALG_RS384] = {"RS384", MCPAUTH_KTY_RSA, 0, 0, 0, 384},
    [MCPAUTH_ALG_RS512] = {"RS512", MCPAUTH_KTY_RSA, 0, 0, 0, 512},
    [MCPAUTH_ALG_PS256] = {"PS256", MCPAUTH_KTY_RSA, 0, 0, 1, 256},
    [MCPAUTH_ALG_PS384] = {"PS384", MCPAUTH_KTY_RSA, 0, 0, 1, 384},
    [MCPAUTH_ALG_PS512] = {"PS512", MCPAUTH_KTY_RSA, 0, 0, 1, 512},
    [MCPAUTH_ALG_ES256] = {"ES256", MCPAUTH_KTY_EC, NID_X9_62_prime256v1, 32, 0, 256},
    [MCPAUTH_ALG_ES384] = {"ES384", MCPAUTH_KTY_EC, NID_secp384r1, 48, 0, 384},
    [MCPAUTH_ALG_ES512] = {"ES512", MCPAUTH_KTY_EC, NID_secp521r1, 66, 0, 512},
};

typedef struct {
    const char *jwk_name; /* "crv" value */
    const char *ossl_name; /* OSSL_PKEY_PARAM_GROUP_NAME */
    int nid;
    size_t coord;
} curve_info;

static const curve_info curves[] = {
    {"P-256", "prime256v1", NID_X9_62_prime256v1, 32},
    {"P-384", "secp384r1", NID_secp384r1, 48},
    {"P-521", "secp521r1", NID_secp521r1, 66},
};

static int alg_valid(mcpauth_alg alg)
{
    return alg > MCPAUTH_ALG_UNKNOWN && alg < MCPAUTH_ALG_COUNT;
}

mcpauth_alg mcpauth__alg_from_name(const char *name)
{
    if (!name)
        return MCPAUTH_ALG_UNKNOWN;
    /* Exact and case-sensitive (RFC 7515 §4.1.1): "rs256" is not RS256. */
    for (int a = MCPAUTH_ALG_UNKNOWN + 1; a < MCPAUTH_ALG_COUNT; a++)
        if (strcmp(name, algs[a].name) == 0)
            return (mcpauth_alg)a;
    return MCPAUTH_ALG_UNKNOWN;
}

const char *mcpauth__alg_name(mcpauth_alg alg)
{
    return alg_valid(alg) ? algs[alg].name : NULL;
}

static const EVP_MD *alg_md(mcpauth_alg alg)
{
    switch (algs[alg].md_bits) {
    case 256: return EVP_sha256();
    case 384: return EVP_sha384();
    case 512: return EVP_sha512();
    default: return NULL;
    }
}

static int alg_fits_type(mcpauth_alg alg, mcpauth_kty kty, int curve_nid)
{
    if (!alg_valid(alg) || algs[alg].kty != kty)
        return 0;
    return kty != MCPAUTH_KTY_EC || algs[alg].curve_nid == curve_nid;
}

int mcpauth__jwk_fits(const mcpauth_jwk *key, mcpauth_alg alg)
{
    if (!key || !key->pkey || !alg_fits_type(alg, key->kty, key->curve_nid))
        return 0;
    return key->alg == MCPAUTH_ALG_UNKNOWN || key->alg == alg;
}

/* ---- JWKS parsing ---- */

/* A string member: 1 present, 0 absent, -1 not a string or holding a NUL
 * (json-c decodes \u0000, and "sig\u0000x" must not compare as "sig"). */
static int member_str(json_object *o, const char *name, const char **s, size_t *len)
{
    json_object *v;
    if (!json_object_object_get_ex(o, name, &v))
        return 0;
    return (*s = mcpauth__json_str(v, len)) ? 1 : -1;
}

/* Decodes a required base64url member into buf; returns its length or -1
 * with the reason in why. */
static ssize_t member_b64(json_object *o, const char *name, unsigned char *buf, size_t bufsize,
                          char *why, size_t whylen)
{
    const char *s;
    size_t len;
    int r = member_str(o, name, &s, &len);
    if (r <= 0) {
        mcpauth__errf(why, whylen, r ? "\"%s\" is not a string" : "no \"%s\"", name);
        return -1;
    }
    if (len > B64_MAX_IN || len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0) > bufsize) {
        mcpauth__errf(why, whylen, "\"%s\" is too long", name);
        return -1;
    }
    ssize_t n = mcpauth__b64url_decode(s, len, buf, bufsize);
    if (n < 0)
        mcpauth__errf(why, whylen, "\"%s\" is not base64url", name);
    else if (n == 0) {
        mcpauth__errf(why, whylen, "\"%s\" is empty", name);
        n = -1;
    }
    return n;
}

/* key_ops present without "verify": 0; absent or allowing verify: 1; -1
 * malformed. */
static int key_ops_allow_verify(json_object *o)
{
    json_object *ops;
    if (!json_object_object_get_ex(o, "key_ops", &ops))
        return 1;
    if (!json_object_is_type(ops, json_type_array))
        return -1;
    int ok = 0;
    size_t n = json_object_array_length(ops);
    for (size_t i = 0; i < n; i++) {
        const char *op = mcpauth__json_str(json_object_array_get_idx(ops, i), NULL);
        if (!op)
            return -1;
        if (strcmp(op, "verify") == 0)
            ok = 1;
    }
    return ok;
}

static EVP_PKEY *pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM *params = mcpauth__check(OSSL_PARAM_BLD_to_param(bld), "OSSL_PARAM");
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (!ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

/* NULL with *skip set: a key too large to ever verify a token (the
 * validator reads signatures of up to MCPAUTH_JWS_SIG_MAX bytes). */
static EVP_PKEY *rsa_key(json_object *o, int *skip, char *why, size_t whylen)
{
    unsigned char nbuf[B64_MAX_OUT], ebuf[B64_MAX_OUT];
    ssize_t nlen = member_b64(o, "n", nbuf, sizeof nbuf, why, whylen);
    if (nlen < 0)
        return NULL;
    ssize_t elen = member_b64(o, "e", ebuf, sizeof ebuf, why, whylen);
    if (elen < 0)
        return NULL;

    EVP_PKEY *pkey = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    BIGNUM *n = mcpauth__check(BN_bin2bn(nbuf, (int)nlen, NULL), "BIGNUM");
    BIGNUM *e = mcpauth__check(BN_bin2bn(ebuf, (int)elen, NULL), "BIGNUM");
    int bits = BN_num_bits(n);
    /* A weak key is the administrator's mistake to see, not to skip. */
    if (bits < RSA_MIN_BITS) {
        mcpauth__errf(why, whylen, "RSA key of %d bits, under %d", bits, RSA_MIN_BITS);
        goto out;
    }
    if (bits > RSA_MAX_BITS) {
        mcpauth__errf(why, whylen, "RSA key of %d bits, over %d: no signature of it can be verified",
                bits, RSA_MAX_BITS);
        *skip = 1;
        goto out;
    }
    /* OpenSSL does not check a public key on import; these cheap checks
     * catch nonsense (an RSA modulus is odd, e is odd, 1 < e < n). */
    if (!BN_is_odd(n) || !BN_is_odd(e) || BN_is_one(e) || BN_num_bits(e) > RSA_MAX_E_BITS ||
        BN_cmp(e, n) >= 0) {
        mcpauth__errf(why, whylen, "invalid RSA public key");
        goto out;
    }
    bld = mcpauth__check(OSSL_PARAM_BLD_new(), "OSSL_PARAM_BLD");
    if (!OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
        mcpauth__oom("OSSL_PARAM_BLD");
    pkey = pkey_fromdata("RSA", bld);
    if (!pkey)
        mcpauth__errf(why, whylen, "RSA key rejected by OpenSSL");
out:
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    return pkey;
}

static EVP_PKEY *ec_key(json_object *o, const curve_info *c, char *why, size_t whylen)
{
    unsigned char x[EC_MAX_COORD + 2], y[EC_MAX_COORD + 2];
    unsigned char pt[1 + 2 * EC_MAX_COORD];
    ssize_t xlen = member_b64(o, "x", x, sizeof x, why, whylen);
    if (xlen < 0)
        return NULL;
    ssize_t ylen = member_b64(o, "y", y, sizeof y, why, whylen);
    if (ylen < 0)
        return NULL;
    /* RFC 7518 §6.2.1.2: each coordinate is exactly the curve's size. */
    if ((size_t)xlen != c->coord || (size_t)ylen != c->coord) {
        mcpauth__errf(why, whylen, "%s coordinates must be %zu bytes, got %zd and %zd", c->jwk_name,
                c->coord, xlen, ylen);
        return NULL;
    }
    pt[0] = 0x04; /* uncompressed point */
    memcpy(pt + 1, x, c->coord);
    memcpy(pt + 1 + c->coord, y, c->coord);

    EVP_PKEY *pkey = NULL;
    OSSL_PARAM_BLD *bld = mcpauth__check(OSSL_PARAM_BLD_new(), "OSSL_PARAM_BLD");
    if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, c->ossl_name, 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, 1 + 2 * c->coord))
        mcpauth__oom("OSSL_PARAM_BLD");
    pkey = pkey_fromdata("EC", bld);
    OSSL_PARAM_BLD_free(bld);

    /* Invalid-curve attacks: the point must be on the curve, not infinity,
     * and in the prime-order group. */
    EVP_PKEY_CTX *ctx = pkey ? EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL) : NULL;
    if (!ctx || EVP_PKEY_public_check(ctx) != 1) {
        mcpauth__errf(why, whylen, "not a valid %s public key (point not on the curve)", c->jwk_name);
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    return pkey;
}

/* 1 key taken into out, 0 key skipped, -1 document error (reason in why). */
static int parse_key(json_object *o, mcpauth_jwk *out, char *why, size_t whylen)
{
    const char *s;
    size_t len;
    int r;

    if (!json_object_is_type(o, json_type_object)) {
        mcpauth__errf(why, whylen, "not a JSON object");
        return -1;
    }
    if (member_str(o, "kty", &s, &len) != 1) {
        mcpauth__errf(why, whylen, "no \"kty\" string");
        return -1;
    }
    /* RFC 7517 §5: ignore key types we do not understand ("oct", "OKP"). */
    if (strcmp(s, "RSA") == 0)
        out->kty = MCPAUTH_KTY_RSA;
    else if (strcmp(s, "EC") == 0)
        out->kty = MCPAUTH_KTY_EC;
    else
        return 0;

    if ((r = member_str(o, "use", &s, &len)) < 0) {
        mcpauth__errf(why, whylen, "\"use\" is not a string");
        return -1;
    }
    if (r == 1 && strcmp(s, "sig") != 0)
        return 0;
    if ((r = key_ops_allow_verify(o)) < 0) {
        mcpauth__errf(why, whylen, "\"key_ops\" is not an array of strings");
        return -1;
    }
    if (r == 0)
        return 0;

    out->alg = MCPAUTH_ALG_UNKNOWN;
    if ((r = member_str(o, "alg", &s, &len)) < 0) {
        mcpauth__errf(why, whylen, "\"alg\" is not a string");
        return -1;
    }
    /* A key bound to an algorithm we refuse (HS256, RSA-OAEP, ...) must not
     * become a key usable with any algorithm. */
    if (r == 1 && (out->alg = mcpauth__alg_from_name(s)) == MCPAUTH_ALG_UNKNOWN)
        return 0;

    const char *kid = NULL;
    size_t kidlen = 0;
    if ((r = member_str(o, "kid", &kid, &kidlen)) < 0) {
        mcpauth__errf(why, whylen, "\"kid\" is not a string");
        return -1;
    }
    if (r == 1 && kidlen > KID_MAX_LEN) {
        mcpauth__errf(why, whylen, "\"kid\" longer than %d bytes", KID_MAX_LEN);
        return -1;
    }

    const curve_info *curve = NULL;
    out->curve_nid = 0;
    if (out->kty == MCPAUTH_KTY_EC) {
        if (member_str(o, "crv", &s, &len) != 1) {
            mcpauth__errf(why, whylen, "no \"crv\" string");
            return -1;
        }
        for (size_t i = 0; i < sizeof curves / sizeof curves[0]; i++)
            if (strcmp(s, curves[i].jwk_name) == 0)
                curve = &curves[i];
        if (!curve)
            return 0; /* secp256k1 and the like */
        out->curve_nid = curve->nid;
    }
    /* "alg" contradicting the key type (RSA key saying ES256): unusable. */
    if (out->alg != MCPAUTH_ALG_UNKNOWN && !alg_fits_type(out->alg, out->kty, out->curve_nid))
        return 0;

    /* Private members ("d", "p", ...) are ignored: only the public part is
     * imported. */
    int skip = 0;
    out->pkey = out->kty == MCPAUTH_KTY_RSA ? rsa_key(o, &skip, why, whylen)
                                           : ec_key(o, curve, why, whylen);
    if (skip) {
        /* Unusable rather than weak: the other keys still serve. */
        mcpauth_log(MCPAUTH_LOG_WARN, "jwk_refused", "kid", kid ? kid : "(none)", "reason", why,
                    NULL);
        why[0] = '\0';
        return 0;
    }
    if (!out->pkey)
        return -1;
    out->kid = kid ? mcpauth__xstrndup(kid, kidlen) : NULL;
    return 1;
}

static void jwks_free(mcpauth_jwks *set)
{
    for (size_t i = 0; i < set->n; i++) {
        free(set->keys[i].kid);
        EVP_PKEY_free(set->keys[i].pkey);
    }
    free(set->keys);
    free(set);
}

mcpauth_jwks *mcpauth__jwks_parse(const char *json, size_t len, char *err, size_t errlen)
{
    mcpauth__errf(err, errlen, "%s", "");
    if (!json || len == 0) {
        mcpauth__errf(err, errlen, "JWKS is empty");
        return NULL;
    }
    if (len > JWKS_MAX_BYTES) {
        mcpauth__errf(err, errlen, "JWKS is larger than %d bytes", JWKS_MAX_BYTES);
        return NULL;
    }
    /* json-c would stop at a NUL and ignore what follows. */
    if (memchr(json, '\0', len)) {
        mcpauth__errf(err, errlen, "JWKS is not valid JSON: contains a NUL byte");
        return NULL;
    }

    json_tokener *tok = mcpauth__check(json_tokener_new_ex(JWKS_MAX_DEPTH), "json_tokener");
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *root = json_tokener_parse_ex(tok, json, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!root || jerr != json_tokener_success || end != len) {
        mcpauth__errf(err, errlen, "JWKS is not valid JSON: %s",
                jerr == json_tokener_continue ? "truncated"
                : root                         ? "trailing characters"
                                               : json_tokener_error_desc(jerr));
        json_object_put(root);
        return NULL;
    }

    mcpauth_jwks *set = NULL;
    json_object *keys;
    if (!json_object_is_type(root, json_type_object)) {
        mcpauth__errf(err, errlen, "JWKS is not a JSON object");
        goto fail;
    }
    if (!json_object_object_get_ex(root, "keys", &keys) ||
        !json_object_is_type(keys, json_type_array)) {
        mcpauth__errf(err, errlen, "JWKS has no \"keys\" array");
        goto fail;
    }
    size_t n = json_object_array_length(keys);
    if (n > JWKS_MAX_KEYS) {
        mcpauth__errf(err, errlen, "JWKS has %zu keys, more than %d", n, JWKS_MAX_KEYS);
        goto fail;
    }
    set = mcpauth__xcalloc(1, sizeof *set);
    set->keys = mcpauth__xcalloc(n, sizeof *set->keys);
    for (size_t i = 0; i < n; i++) {
        char why[160] = "";
        mcpauth_jwk k = {0};
        int r = parse_key(json_object_array_get_idx(keys, i), &k, why, sizeof why);
        if (r < 0) {
            mcpauth__errf(err, errlen, "keys[%zu]: %s", i, why);
            goto fail;
        }
        if (r == 1)
            set->keys[set->n++] = k;
    }
    json_object_put(root);
    atomic_init(&set->refs, 1);
    return set;

fail:
    if (set)
        jwks_free(set);
    json_object_put(root);
    ERR_clear_error(); /* leave no stale OpenSSL errors for other callers */
    return NULL;
}

mcpauth_jwks *mcpauth__jwks_ref(mcpauth_jwks *set)
{
    if (set)
        atomic_fetch_add_explicit(&set->refs, 1, memory_order_relaxed);
    return set;
}

void mcpauth__jwks_unref(mcpauth_jwks *set)
{
    /* acq_rel: the last owner sees every other owner's reads finished. */
    if (set && atomic_fetch_sub_explicit(&set->refs, 1, memory_order_acq_rel) == 1)
        jwks_free(set);
}

size_t mcpauth__jwks_count(const mcpauth_jwks *set)
{
    return set ? set->n : 0;
}

const mcpauth_jwk *mcpauth__jwks_key(const mcpauth_jwks *set, size_t i)
{
    return set && i < set->n ? &set->keys[i] : NULL;
}

const mcpauth_jwk *mcpauth__jwks_find(const mcpauth_jwks *set, const char *kid, mcpauth_alg alg)
{
    if (!set)
        return NULL;
    const mcpauth_jwk *found = NULL;
    for (size_t i = 0; i < set->n; i++) {
        const mcpauth_jwk *k = &set->keys[i];
        if (kid && (!k->kid || strcmp(k->kid, kid) != 0))
            continue;
        if (!mcpauth__jwk_fits(k, alg))
            continue;
        /* Two candidates: refuse rather than let the token pick one. */
        if (found)
            return NULL;
        found = k;
    }
    return found;
}

/* ---- JWS verification ---- */

/* RFC 7518 §3.4 R||S to the DER form OpenSSL verifies; NULL on failure. */
static unsigned char *ecdsa_raw_to_der(const unsigned char *sig, size_t coord, int *derlen)
{
    unsigned char *der = NULL;
    ECDSA_SIG *es = mcpauth__check(ECDSA_SIG_new(), "ECDSA_SIG");
    BIGNUM *r = mcpauth__check(BN_bin2bn(sig, (int)coord, NULL), "BIGNUM");
    BIGNUM *s = mcpauth__check(BN_bin2bn(sig + coord, (int)coord, NULL), "BIGNUM");
    if (!ECDSA_SIG_set0(es, r, s)) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(es);
        return NULL;
    }
    *derlen = i2d_ECDSA_SIG(es, &der); /* es owns r and s now */
    ECDSA_SIG_free(es);
    if (*derlen <= 0) {
        OPENSSL_free(der);
        return NULL;
    }
    return der;
}

int mcpauth__jws_verify(const mcpauth_jwk *key, mcpauth_alg alg, const char *input, size_t inlen,
                       const unsigned char *sig, size_t siglen)
{
    if (!mcpauth__jwk_fits(key, alg) || !sig || (!input && inlen))
        return 0;
    if (!input)
        input = "";
    const alg_info *a = &algs[alg];

    unsigned char *der = NULL;
    const unsigned char *vsig = sig;
    size_t vlen = siglen;
    if (a->kty == MCPAUTH_KTY_EC) {
        /* Only the fixed-length raw form: DER or any other length is not a
         * JWS signature, and refusing it keeps signatures non-malleable. */
        if (siglen != 2 * a->coord)
            return 0;
        int derlen;
        if (!(der = ecdsa_raw_to_der(sig, a->coord, &derlen))) {
            ERR_clear_error();
            return 0;
        }
        vsig = der;
        vlen = (size_t)derlen;
    } else {
        /* RFC 8017 §8.2.2: exactly k bytes (OpenSSL would take shorter). */
        int k = EVP_PKEY_get_size(key->pkey);
        if (k <= 0 || siglen != (size_t)k)
            return 0;
    }

    int ok = 0;
    EVP_PKEY_CTX *pctx = NULL;
    /* per call: the EVP_PKEY is shared read-only */
    EVP_MD_CTX *ctx = mcpauth__check(EVP_MD_CTX_new(), "EVP_MD_CTX");
    const EVP_MD *md = alg_md(alg);
    if (!md || EVP_DigestVerifyInit(ctx, &pctx, md, NULL, key->pkey) != 1)
        goto out;
    if (a->kty == MCPAUTH_KTY_RSA) {
        if (a->pss) {
            /* RFC 7518 §3.5: MGF1 with the same hash, salt as long as it. */
            if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
                EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) <= 0 ||
                EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) <= 0)
                goto out;
        } else if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) <= 0) {
            goto out;
        }
    }
    ok = EVP_DigestVerify(ctx, vsig, vlen, (const unsigned char *)input, inlen) == 1;
out:
    EVP_MD_CTX_free(ctx); /* frees pctx too */
    OPENSSL_free(der);
    ERR_clear_error(); /* a failed verify leaves errors on this thread's queue */
    return ok;
}
