/* Encoding and comparison helpers (not installed): base64url, constant-time
 * comparison, SHA-256 hex.  Crypto and base64 come from OpenSSL. */
#ifndef MCPAUTH_ENCODE_H
#define MCPAUTH_ENCODE_H

#include <stddef.h>
#include <sys/types.h>

/* base64url without padding (RFC 7515 §2).  Writes at most outlen bytes and a
 * NUL; returns the encoded length, or -1 when out is too small. */
ssize_t mcpauth__b64url_encode(const unsigned char *in, size_t inlen, char *out, size_t outlen);

/* Strict decoder: only the URL-safe alphabet, no padding, no whitespace, no
 * non-zero trailing bits.  Returns the decoded length or -1 on any defect or
 * when out (which needs (inlen*3)/4 bytes) is too small. */
ssize_t mcpauth__b64url_decode(const char *in, size_t inlen, unsigned char *out, size_t outlen);

/* Constant-time equality of two buffers of possibly different lengths: the
 * time depends only on the lengths, never on the contents.  1 if equal. */
int mcpauth__ct_equal(const void *a, size_t alen, const void *b, size_t blen);

/* SHA-256 of data as 64 lowercase hex digits plus NUL into out[65]. */
void mcpauth__sha256_hex(const void *data, size_t len, char out[65]);

#endif
