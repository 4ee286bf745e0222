/* Query-string and form decoding: mcpauth__as_form_get (every parameter
 * the AS reads), HTTP Basic credentials (mcpauth__as_parse_basic), the
 * strict base64url decoder and mcpauth_strlist_split.  Round trips are
 * checked: a decoded base64url value encodes back to the same text, and a
 * value form-encoded by mcpauth__form_encode decodes back to itself. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <mcpauth/util.h>

#include "../../lib/as/as_priv.h"
#include "encode.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const keys[] = {"grant_type", "code", "redirect_uri", "client_id",
                                   "client_secret", "code_verifier", "refresh_token", "resource",
                                   "scope", "token", "token_type_hint", "state", "csrf", "ts",
                                   "nonce", "decision", "remember", "response_type",
                                   "code_challenge", "code_challenge_method", "", "a"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fz_strndup(data, size);
    char out[2048];
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        int rc = mcpauth__as_form_get(s, keys[i], out, sizeof out);
        if (rc < -1 || rc > 1 || (rc == 1 && strlen(out) >= sizeof out))
            abort();
    }
    /* small output buffers: "too long" must be refused, never cut */
    mcpauth__as_form_get(s, "code", out, 8);

    char basic[4100] = "Basic ";
    snprintf(basic + 6, sizeof basic - 6, "%s", s);
    char id[256], secret[256];
    if (mcpauth__as_parse_basic(basic, id, sizeof id, secret, sizeof secret) == 0 &&
        (strlen(id) >= sizeof id || strlen(secret) >= sizeof secret))
        abort();

    /* base64url: strict, so decoding is one to one */
    unsigned char *raw = malloc(size + 4);
    ssize_t n = mcpauth__b64url_decode(s, size, raw, size + 4);
    if (n >= 0) {
        char *back = malloc(size + 8);
        ssize_t m = mcpauth__b64url_encode(raw, (size_t)n, back, size + 8);
        if (m != (ssize_t)size || memcmp(back, s, size) != 0)
            abort();
        free(back);
    }
    free(raw);

    /* form encoding of the raw text and back */
    if (strlen(s) == size && size < 1000) {
        char *enc = mcpauth__form_encode(s);
        if (enc) {
            size_t el = strlen(enc);
            char *form = malloc(el + 3);
            memcpy(form, "k=", 2);
            memcpy(form + 2, enc, el + 1);
            char dec[1024];
            if (mcpauth__as_form_get(form, "k", dec, sizeof dec) != 1 || strcmp(dec, s) != 0)
                abort();
            free(form);
            free(enc);
        }
    }

    mcpauth_strlist l = {0, NULL};
    mcpauth_strlist_split(&l, s);
    for (size_t i = 0; i < l.n; i++)
        if (!*l.v[i] || strpbrk(l.v[i], " \t"))
            abort();
    mcpauth_strlist_free(&l);
    free(s);
    return 0;
}
