/* Small helpers: base64url, constant-time comparison, hashing and string
 * lists.  Crypto and base64 come from OpenSSL. */
#ifndef MCPAUTH_UTIL_H
#define MCPAUTH_UTIL_H

#include <stddef.h>
#include <sys/types.h>

/* base64url without padding (RFC 7515 §2).  Writes at most outlen bytes and a
 * NUL; returns the encoded length, or -1 when out is too small. */
ssize_t mcpauth_b64url_encode(const unsigned char *in, size_t inlen, char *out, size_t outlen);

/* Strict decoder: only the URL-safe alphabet, no padding, no whitespace, no
 * non-zero trailing bits.  Returns the decoded length or -1 on any defect or
 * when out (which needs (inlen*3)/4 bytes) is too small. */
ssize_t mcpauth_b64url_decode(const char *in, size_t inlen, unsigned char *out, size_t outlen);

/* Constant-time equality of two buffers of possibly different lengths: the
 * time depends only on the lengths, never on the contents.  1 if equal. */
int mcpauth_ct_equal(const void *a, size_t alen, const void *b, size_t blen);

/* SHA-256 of data as 64 lowercase hex digits plus NUL into out[65]. */
void mcpauth_sha256_hex(const void *data, size_t len, char out[65]);

/* A NULL-terminated list of owned strings, used for configuration lists. */
typedef struct mcpauth_strlist {
    size_t n;
    char **v;
} mcpauth_strlist;

/* Appends the words of s (split on ASCII spaces and tabs) to l.  Always
 * returns 0: a failed allocation aborts the process (the library's
 * out-of-memory policy); the int is kept for existing callers. */
int mcpauth_strlist_split(mcpauth_strlist *l, const char *s);
int mcpauth_strlist_has(const mcpauth_strlist *l, const char *s);
void mcpauth_strlist_free(mcpauth_strlist *l);

#endif
