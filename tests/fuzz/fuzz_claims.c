/* JWS header and claims checks behind a valid signature: the input is
 * "HEADER\nCLAIMS" (two JSON texts), signed here with the fixture's ES256
 * or RS256 key (per the header's "alg"), so every input reaches
 * typ/kid/crit handling, issuer selection, iss/aud/exp/nbf/iat/sub/
 * client_id/scope/scp parsing and the scope decision of
 * mcpauth_validate_token at the fixed clock. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* the fixture before the first input, whose -timeout it would count against */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_fixture_get(NULL);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_fixture *f = fz_fixture_get(NULL);
    const uint8_t *rest;
    size_t restlen;
    char *header = fz_line(data, size, &rest, &restlen);
    char *claims = fz_strndup(rest, restlen);
    /* JSON with a NUL would not be what is signed: tk_sign takes C strings */
    if (strlen(claims) == restlen) {
        const tk_key *k = strstr(header, "\"RS256\"") || strstr(header, "\"PS256\"") ? f->rs : f->es;
        char *token = tk_sign(k, header, claims);
        if (token) {
            mcpauth_decision d;
            mcpauth_validate_token(f->v, f->res, token, strlen(token), "POST", NULL, &d);
            /* allowed means every required scope was granted */
            if (d.verdict == MCPAUTH_ALLOW && !strstr(d.id.scope, "mcp:use"))
                abort();
            free(token);
        }
    }
    free(header);
    free(claims);
    return 0;
}
