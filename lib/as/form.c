/* Request bodies of the AS: x-www-form-urlencoded forms and HTTP Basic
 * client credentials. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "alloc.h"
#include "as_priv.h"

/* One x-www-form-urlencoded value ('+' is a space, %XX escapes) into out.
 * -1 when undecodable, too long, or holding a NUL. */
static int form_decode(const char *in, size_t len, char *out, size_t cap)
{
    char *tmp = mcpauth__xmalloc(len + 1);
    for (size_t i = 0; i < len; i++)
        tmp[i] = in[i] == '+' ? ' ' : in[i];
    tmp[len] = '\0';
    int dl = 0;
    char *dec = curl_easy_unescape(NULL, tmp, (int)len, &dl);
    free(tmp);
    int ok = dec && (size_t)dl < cap && !memchr(dec, '\0', (size_t)dl);
    if (ok)
        memcpy(out, dec, (size_t)dl + 1);
    curl_free(dec);
    return ok ? 0 : -1;
}

int mcpauth__as_form_get(const char *form, const char *key, char *out, size_t cap)
{
    size_t kl = strlen(key);
    int found = 0;
    if (cap)
        out[0] = '\0';
    for (const char *p = form; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len >= kl && strncmp(p, key, kl) == 0 && (len == kl || p[kl] == '=')) {
            if (found)
                return -1;
            found = 1;
            if (len > kl && form_decode(p + kl + 1, len - kl - 1, out, cap) < 0)
                return -1;
        }
        p = amp ? amp + 1 : NULL;
    }
    return found;
}

int mcpauth__as_parse_basic(const char *authz, char *id, size_t idcap, char *secret,
                            size_t seccap)
{
    const char *b = authz + 6; /* after "Basic " */
    while (*b == ' ')
        b++;
    size_t bl = strlen(b);
    unsigned char raw[3000];
    int n = bl < 4000 ? EVP_DecodeBlock(raw, (const unsigned char *)b, (int)bl) : -1;
    if (n < 0)
        return -1;
    while (n > 0 && raw[n - 1] == '\0') /* padding */
        n--;
    const unsigned char *colon = memchr(raw, ':', (size_t)n);
    int rc = colon && form_decode((const char *)raw, (size_t)(colon - raw), id, idcap) == 0 &&
                     form_decode((const char *)colon + 1, (size_t)(raw + n - colon - 1), secret,
                                 seccap) == 0
                 ? 0
                 : -1;
    OPENSSL_cleanse(raw, sizeof raw);
    return rc;
}

char *mcpauth__as_read_body(const mcpauth_request *req, size_t max, ssize_t *len)
{
    char *buf = mcpauth_request_body(req, max, len);
    if (buf && memchr(buf, '\0', (size_t)*len)) {
        free(buf);
        *len = -1;
        return NULL;
    }
    return buf;
}
