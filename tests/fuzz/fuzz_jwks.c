/* JWKS documents, mcpauth__jwks_parse (what a jwks_file holds and a
 * jwks_uri answers), then every parsed key through key selection,
 * algorithm fitting and signature verification of a garbage signature. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <mcpauth/log.h>

#include "fuzz_common.h"
#include "jose.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mcpauth_log_set_level(MCPAUTH_LOG_ERROR);
    char err[256];
    mcpauth_jwks *set = mcpauth__jwks_parse((const char *)data, size, err, sizeof err);
    if (!set)
        return 0;
    size_t n = mcpauth__jwks_count(set);
    unsigned char sig[132];
    memset(sig, 0x5a, sizeof sig);
    for (size_t i = 0; i < n; i++) {
        const mcpauth_jwk *k = mcpauth__jwks_key(set, i);
        if (!k || !k->pkey)
            abort();
        for (int a = MCPAUTH_ALG_UNKNOWN; a < MCPAUTH_ALG_COUNT; a++) {
            if (!mcpauth__jwk_fits(k, (mcpauth_alg)a))
                continue;
            if (a == MCPAUTH_ALG_UNKNOWN)
                abort();
            const mcpauth_jwk *f = mcpauth__jwks_find(set, k->kid, (mcpauth_alg)a);
            if (f && !mcpauth__jwk_fits(f, (mcpauth_alg)a))
                abort();
            /* a signature of the wrong size or content never verifies */
            if (mcpauth__jws_verify(k, (mcpauth_alg)a, (const char *)data, size, sig, sizeof sig) ||
                mcpauth__jws_verify(k, (mcpauth_alg)a, (const char *)data, size, sig, 64))
                abort();
        }
    }
    mcpauth__jwks_find(set, NULL, MCPAUTH_ALG_ES256);
    mcpauth__jwks_find(set, "", MCPAUTH_ALG_RS256);
    mcpauth_jwks *again = mcpauth__jwks_ref(set);
    mcpauth__jwks_unref(again);
    mcpauth__jwks_unref(set);
    return 0;
}
