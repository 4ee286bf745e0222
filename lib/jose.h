/* JOSE internals (not installed): JWK sets parsed once into OpenSSL key
 * objects, and JWS signature verification with those keys.
 *
 * Why not libjwt's jwt_decode() for verification: libjwt 1.10 takes the
 * algorithm from the token's own header, so a token saying "HS256" is
 * checked as an HMAC keyed with whatever key bytes we pass (the RSA public
 * key PEM: the classic key-confusion forgery), and it parses the PEM key on
 * every call.  Here the caller picks the algorithm from an allow-list, the
 * key must fit it, and verification uses the cached EVP_PKEY.  libjwt is
 * used where it is safe: signing, with an algorithm we choose. */
#ifndef MCPAUTH_JOSE_H
#define MCPAUTH_JOSE_H

#include <stddef.h>

#include <openssl/evp.h>

typedef enum {
    MCPAUTH_ALG_UNKNOWN = 0, /* also "none" and every HMAC algorithm */
    MCPAUTH_ALG_RS256,
    MCPAUTH_ALG_RS384,
    MCPAUTH_ALG_RS512,
    MCPAUTH_ALG_PS256,
    MCPAUTH_ALG_PS384,
    MCPAUTH_ALG_PS512,
    MCPAUTH_ALG_ES256,
    MCPAUTH_ALG_ES384,
    MCPAUTH_ALG_ES512,
    MCPAUTH_ALG_COUNT
} mcpauth_alg;

/* "RS256" → MCPAUTH_ALG_RS256; "none", "HS256", unknown → UNKNOWN. */
mcpauth_alg mcpauth__alg_from_name(const char *name);
const char *mcpauth__alg_name(mcpauth_alg alg);

typedef enum { MCPAUTH_KTY_RSA = 1, MCPAUTH_KTY_EC = 2 } mcpauth_kty;

/* The largest RSA modulus taken into a key set, and so the largest JWS
 * signature a verifier needs room for (RSA: the modulus size; ES512: 132).
 * Callers decode signatures into MCPAUTH_JWS_SIG_MAX bytes: a larger key
 * would sit in the set while none of its signatures could ever fit. */
#define MCPAUTH_RSA_MAX_BITS 8192
#define MCPAUTH_JWS_SIG_MAX (MCPAUTH_RSA_MAX_BITS / 8)

typedef struct mcpauth_jwk {
    char *kid;          /* NULL when the JWK has none */
    mcpauth_kty kty;
    int curve_nid;      /* EC: NID_X9_62_prime256v1, NID_secp384r1, NID_secp521r1 */
    mcpauth_alg alg;    /* from the JWK's "alg", UNKNOWN when absent */
    EVP_PKEY *pkey;     /* public key, owned by the set */
} mcpauth_jwk;

/* An immutable, reference-counted set: a refetch builds a new set and swaps
 * it in while requests still holding the old one finish with it. */
typedef struct mcpauth_jwks mcpauth_jwks;

/* Parses a JWKS document ({"keys":[...]}).  Keys that cannot verify
 * signatures (use other than "sig", kty "oct", unsupported curves, RSA over
 * MCPAUTH_RSA_MAX_BITS; private keys are taken as public) are skipped, not
 * fatal (an RSA key too large is logged with its kid); a document that is
 * not a JWKS, a string member holding a NUL, or an RSA key under 2048 bits,
 * is an error.  Returns NULL with a reason in err. Result has one
 * reference. */
mcpauth_jwks *mcpauth__jwks_parse(const char *json, size_t len, char *err, size_t errlen);
mcpauth_jwks *mcpauth__jwks_ref(mcpauth_jwks *set);
void mcpauth__jwks_unref(mcpauth_jwks *set);
size_t mcpauth__jwks_count(const mcpauth_jwks *set);
const mcpauth_jwk *mcpauth__jwks_key(const mcpauth_jwks *set, size_t i);

/* The key to verify a token with: by kid when the token has one; without a
 * kid, the single key that fits alg (NULL when there are several, so a
 * token cannot choose among them by trial). */
const mcpauth_jwk *mcpauth__jwks_find(const mcpauth_jwks *set, const char *kid, mcpauth_alg alg);

/* 1 when alg can be used with this key: RS and PS need kty RSA; ES256 needs
 * EC P-256, ES384 P-384, ES512 P-521; and the JWK's own "alg", when
 * present, must equal alg. */
int mcpauth__jwk_fits(const mcpauth_jwk *key, mcpauth_alg alg);

/* Verifies a JWS signature (ES*: the raw R||S form of RFC 7518 §3.4) over
 * input.  1 valid, 0 invalid (including any malformed signature). */
int mcpauth__jws_verify(const mcpauth_jwk *key, mcpauth_alg alg, const char *input, size_t inlen,
                       const unsigned char *sig, size_t siglen);

#endif
