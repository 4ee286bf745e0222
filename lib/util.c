/* base64url, constant-time comparison, hashing, string lists. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <mcpauth/util.h>

#include "encode.h"

#include "alloc.h"

ssize_t mcpauth__b64url_encode(const unsigned char *in, size_t inlen, char *out, size_t outlen)
{
    size_t need = 4 * ((inlen + 2) / 3) + 1; /* EVP_EncodeBlock writes padding and NUL */
    if (inlen > (size_t)1 << 30 || outlen < need)
        return -1;
    int n = EVP_EncodeBlock((unsigned char *)out, in, (int)inlen);
    while (n > 0 && out[n - 1] == '=')
        n--;
    out[n] = '\0';
    for (int i = 0; i < n; i++) {
        if (out[i] == '+')
            out[i] = '-';
        else if (out[i] == '/')
            out[i] = '_';
    }
    return n;
}

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

ssize_t mcpauth__b64url_decode(const char *in, size_t inlen, unsigned char *out, size_t outlen)
{
    if (inlen % 4 == 1 || inlen > (size_t)1 << 30)
        return -1;
    size_t declen = inlen / 4 * 3 + (inlen % 4 ? inlen % 4 - 1 : 0);
    if (outlen < declen)
        return -1;
    for (size_t i = 0; i < inlen; i++)
        if (b64url_value((unsigned char)in[i]) < 0)
            return -1;
    /* The unused low bits of the last character must be zero, so that each
     * value has exactly one encoding (no malleable tokens). */
    if (inlen % 4 == 2 && (b64url_value((unsigned char)in[inlen - 1]) & 0x0f))
        return -1;
    if (inlen % 4 == 3 && (b64url_value((unsigned char)in[inlen - 1]) & 0x03))
        return -1;

    /* OpenSSL decodes standard base64 with padding: translate in chunks. */
    unsigned char chunk[4 * 256 + 4];
    unsigned char tmp[3 * 256 + 3];
    size_t done = 0, o = 0;
    while (done < inlen) {
        size_t take = inlen - done;
        if (take > 4 * 256)
            take = 4 * 256;
        for (size_t i = 0; i < take; i++) {
            char c = in[done + i];
            chunk[i] = (unsigned char)(c == '-' ? '+' : c == '_' ? '/' : c);
        }
        size_t padded = take;
        while (padded % 4)
            chunk[padded++] = '=';
        int n = EVP_DecodeBlock(tmp, chunk, (int)padded);
        if (n < 0)
            return -1;
        size_t real = take / 4 * 3 + (take % 4 ? take % 4 - 1 : 0);
        memcpy(out + o, tmp, real);
        o += real;
        done += take;
    }
    return (ssize_t)o;
}

int mcpauth__ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    if (alen != blen) {
        /* Still touch a's bytes so timing depends on lengths only. */
        volatile unsigned char sink = 0;
        for (size_t i = 0; i < alen; i++)
            sink |= ((const unsigned char *)a)[i];
        (void)sink;
        return 0;
    }
    return alen == 0 || CRYPTO_memcmp(a, b, alen) == 0;
}

void mcpauth__sha256_hex(const void *data, size_t len, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(data, len, md);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 0x0f];
    }
    out[64] = '\0';
}

int mcpauth_strlist_split(mcpauth_strlist *l, const char *s)
{
    while (*s) {
        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s)
            break;
        const char *e = s;
        while (*e && *e != ' ' && *e != '\t')
            e++;
        l->v = mcpauth__xrealloc(l->v, (l->n + 2) * sizeof *l->v);
        l->v[l->n] = mcpauth__xstrndup(s, (size_t)(e - s));
        l->v[++l->n] = NULL;
        s = e;
    }
    return 0;
}

int mcpauth_strlist_has(const mcpauth_strlist *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i], s) == 0)
            return 1;
    return 0;
}

void mcpauth_strlist_free(mcpauth_strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}
