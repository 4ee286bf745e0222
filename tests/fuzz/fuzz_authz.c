/* The Authorization header and the query string of a protected request,
 * through mcpauth_validate_request (the gate's and the proxy's entry):
 * the input is "QUERY\nAUTHORIZATION", and the decision is answered with
 * mcpauth_decision_respond, so the WWW-Authenticate challenge built from
 * it is exercised too. */
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
    char *query = fz_line(data, size, &rest, &restlen);
    char *authz = fz_strndup(rest, restlen);
    char *uri = malloc(strlen(query) + 8);
    if (!uri)
        abort();
    strcpy(uri, "/mcp");
    if (*query) {
        strcat(uri, "?");
        strcat(uri, query);
    }
    const char *params[] = {"REQUEST_METHOD", "POST", "REQUEST_URI", uri, "REMOTE_ADDR",
                            "192.0.2.1", "HTTP_AUTHORIZATION", authz, NULL};
    fz_req r;
    /* no header lines of its own: every parameter comes from params */
    fz_req_init(&r, (const uint8_t *)"", 0, params);
    if (r.init_rc == 0) {
        mcpauth_decision d;
        mcpauth_validate_request(f->v, f->res, &r.req, NULL, &d);
        if (d.verdict != MCPAUTH_ALLOW)
            mcpauth_decision_respond(&d, f->res, &r.resp);
        /* a token in the query string is always refused */
        if (d.verdict == MCPAUTH_ALLOW && strstr(r.req.query, "access_token="))
            if (strncmp(r.req.query, "access_token=", 13) == 0 ||
                strstr(r.req.query, "&access_token="))
                abort();
    }
    fz_req_free(&r);
    free(uri);
    free(query);
    free(authz);
    return 0;
}
