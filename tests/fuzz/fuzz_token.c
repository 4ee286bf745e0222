/* The whole token validation entry point, mcpauth_validate_token, with
 * the input as the token: compact JWS parsing (header, payload,
 * signature), the algorithm allow-list, key selection in a fixed key set
 * read from a JWKS file, and, for tokens without two dots, the opaque path
 * (introspection answers nothing here: see fuzz_introspect.c). */
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
    /* the first byte picks the HTTP method, so per-method scopes are used */
    static const char *const methods[] = {NULL, "GET", "POST", "DELETE", "PATCH"};
    const char *method = size ? methods[data[0] % 5] : NULL;
    if (size) {
        data++;
        size--;
    }
    char *token = fz_strndup(data, size);
    mcpauth_decision d;
    mcpauth_validate_token(f->v, f->res, token, size, method, NULL, &d);
    /* a forged or garbled token is never allowed */
    if (d.verdict == MCPAUTH_ALLOW && strcmp(token, f->good_token) != 0 &&
        strchr(token, '.') == NULL)
        abort();
    free(token);
    return 0;
}
