/* Test keys and tokens, made at test time: OpenSSL generates the keys,
 * libjwt signs the tokens (an implementation independent of the verifier
 * under test), and raw compositions build the malformed ones. */
#ifndef MCPAUTH_TEST_TOKENS_H
#define MCPAUTH_TEST_TOKENS_H

#include <stddef.h>

typedef struct tk_key {
    char kid[32];
    char alg[8];          /* RS256, ES256, ES384, ... */
    char *private_pem;    /* for libjwt */
    char *public_pem;
    char *jwk;            /* public JWK JSON object with kid and alg */
    void *pkey;           /* EVP_PKEY * */
} tk_key;

/* alg decides the key: RS*: RSA bits (2048 unless bits given), ES256/384/512:
 * the matching curve.  Caller frees with tk_key_free. */
tk_key *tk_key_new(const char *alg, const char *kid, int bits);
void tk_key_free(tk_key *k);

/* {"keys":[...]} of the given keys; caller frees. */
char *tk_jwks(tk_key *const *keys, size_t n);
/* Writes text to path (0 ok). */
int tk_write(const char *path, const char *text);

/* A signed JWT: claims is a JSON object text; extra_header (JSON object
 * text or NULL) adds header parameters (e.g. {"typ":"at+jwt"}).  The kid of
 * the key is put in the header unless extra_header sets "kid":"" (then
 * none).  Caller frees. */
char *tk_mint(const tk_key *k, const char *claims, const char *extra_header);
/* A JWS with exactly this header text, signed with OpenSSL (for what
 * libjwt 1.10 cannot do: PS* algorithms and a typ other than "JWT"). */
char *tk_sign(const tk_key *k, const char *header, const char *claims);
/* alg "none" (unsigned) or "HS256" keyed with secret; caller frees. */
char *tk_mint_unsafe(const char *alg, const void *secret, size_t secretlen, const char *claims,
                     const char *extra_header);
/* base64url(header).base64url(payload).sig_b64 from raw texts. */
char *tk_compose(const char *header, const char *payload, const char *sig_b64);

/* Standard claims for a resource: iss, aud, sub "alice", client_id "app",
 * scope, iat now, exp now+lifetime.  Caller frees. */
char *tk_claims(const char *iss, const char *aud, const char *scope, long lifetime);

#endif
