/* Introspection answers (RFC 7662) as the validator reads them: an opaque
 * token goes through mcpauth_validate_token to the fixture's introspection
 * issuer, whose answer (status 200) is the input, served by the harness's
 * stand-in for outgoing HTTP.  An allowed token needs "active": true. */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
    fz_fetch_body = (const char *)data;
    fz_fetch_len = size;
    fz_fetch_status = 200;
    fz_fetch_max_age = -1;
    static const char token[] = "opaque-token-0123456789";
    mcpauth_decision d;
    unsigned long calls = fz_fetch_calls;
    mcpauth_validate_token(f->v, f->res, token, sizeof token - 1, "POST", NULL, &d);
    if (fz_fetch_calls == calls) /* the answer must have been asked for */
        abort();
    /* allowed only with "active": true somewhere in the answer (json-c,
     * outside its strict mode, also reads "TRUE" as true) */
    if (d.verdict == MCPAUTH_ALLOW) {
        int found = 0;
        for (size_t i = 0; i + 4 <= size && !found; i++)
            found = strncasecmp((const char *)data + i, "true", 4) == 0;
        if (!found)
            abort();
    }
    fz_fetch_body = NULL;
    return 0;
}
