/* The AS's request handling as a whole, mcpauth_as_handle: the input is a
 * request (fz_req_init in fuzz_common.h) to any endpoint, signed in as
 * REMOTE_USER "alice" unless the input says otherwise.  The seeds aim at
 * what a browser and a client send back: the consent form with its CSRF
 * token, timestamp and nonce (lib/as/consent.c), authorization requests,
 * token requests with HTTP Basic or form credentials, introspection and
 * revocation.  A registered confidential client and a public one exist. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "fuzz_as.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* the AS before the first input, whose -timeout it would count against */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_as_get();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_as *a = fz_as_get();
    const char *defaults[] = {"REQUEST_METHOD", "POST",
                              "REMOTE_ADDR", "192.0.2.9",
                              "REMOTE_USER", "alice",
                              "CONTENT_TYPE", "application/x-www-form-urlencoded",
                              "HTTP_HOST", "as.example",
                              NULL};
    fz_req r;
    if (fz_req_init(&r, data, size, defaults) == 0)
        mcpauth_as_handle(a->as, &r.req, &r.resp);
    else
        mcpauth_request_refuse(&r.req, r.init_rc, &r.resp);
    fz_req_free(&r);
    return 0;
}
