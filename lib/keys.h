/* Signing keys of the built-in authorization server (not installed): PEM
 * files (mode 0600) under state_dir/keys, their metadata in the store (a
 * shared store, PostgreSQL, holds the PEM itself and no file is made).
 * One key is current; retired keys stay published in the JWKS until the
 * tokens they signed have expired. */
#ifndef MCPAUTH_KEYS_H
#define MCPAUTH_KEYS_H

#include <stddef.h>
#include <time.h>

#include <openssl/evp.h>

#include "store.h"

typedef struct mcpauth_signer {
    char kid[64];
    char alg[8];      /* "ES256" or "RS256" */
    EVP_PKEY *pkey;   /* private key, owned */
} mcpauth_signer;

/* Makes a new key (ES256: P-256; RS256: RSA 3072), writes
 * state_dir/keys/KID.pem with mode 0600 (creating keys/ with 0700; shared
 * store: the PEM goes into the store and state_dir may be NULL), records
 * it as current and retires the previous one.  kid is the RFC 7638
 * thumbprint (base64url SHA-256), copied to kid_out.  0 or -1 with err. */
int mcpauth__keys_generate(mcpauth_store *s, const char *state_dir, const char *alg, time_t now,
                          char *kid_out, size_t kidlen, char *err, size_t errlen);

/* The current signing key, or NULL with a reason (none yet: run
 * `mcpauth init`; unreadable file; wrong mode). */
mcpauth_signer *mcpauth__keys_load_current(mcpauth_store *s, char *err, size_t errlen);
void mcpauth__signer_free(mcpauth_signer *k);

/* {"keys":[...]}: public JWKs (kid, kty, alg, use "sig", and n/e or
 * crv/x/y) of the current key and of keys retired after `since`.  Caller
 * frees.  NULL with err on failure. */
char *mcpauth__keys_jwks(mcpauth_store *s, time_t since, char *err, size_t errlen);

/* A compact JWS over claims (a JSON object text) with the header
 * {"alg":k->alg,"typ":typ,"kid":k->kid}; typ may be NULL (omitted).
 * Signed with OpenSSL, ES256 as raw R||S (RFC 7518 §3.4): libjwt 1.10
 * always writes typ "JWT" and so cannot issue RFC 9068 "at+jwt" tokens.
 * Caller frees; NULL on failure. */
char *mcpauth__jws_sign(const mcpauth_signer *k, const char *typ, const char *claims);

/* ------------------------------------------------ additions (keys.c too) */

/* RFC 7638 thumbprint of the public part of an EC P-256 or RSA key:
 * base64url(SHA-256(canonical JWK)), 43 characters.  0, or -1 for other
 * key types or when out is too small. */
int mcpauth__keys_thumbprint(const EVP_PKEY *pkey, char *out, size_t outlen);

/* Deletes files state_dir/keys/KID.pem whose key the store no longer lists
 * (after mcpauth__store_purge) and that are older than a minute (so a key
 * being generated concurrently is never touched).  Returns the number of
 * files deleted, -1 with err. */
int mcpauth__keys_prune(mcpauth_store *s, const char *state_dir, time_t now,
                       char *err, size_t errlen);

/* The server secret: MCPAUTH_SECRET_BYTES random bytes in state_dir/secret,
 * mode 0600, or, when s is a shared store (PostgreSQL; mcpauth__store_
 * shared), in the store, the same for every host.  s may be NULL (the
 * file).  _create makes it when absent: 1 created, 0 already there (it
 * is then checked as _load checks it), -1 with err.  _load refuses a
 * symlink, a file group/other can access, or one of the wrong size. */
#define MCPAUTH_SECRET_BYTES 32
int mcpauth__secret_create(mcpauth_store *s, const char *state_dir, char *err, size_t errlen);
int mcpauth__secret_load(mcpauth_store *s, const char *state_dir,
                        unsigned char out[MCPAUTH_SECRET_BYTES], char *err, size_t errlen);

#endif
