/* RFC 7591 registration bodies: POST ISSUER/oauth2/register through
 * mcpauth_as_handle with the input as the JSON body (the metadata checks
 * of lib/as/register.c: redirect_uris, token_endpoint_auth_method,
 * grant_types, response_types, client_name, and the reply).  The AS runs
 * on a state directory in /dev/shm; registrations are not rate-limited by
 * address here (each input comes from a new one). */
#include "config.h"

#include <stdio.h>
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
    static unsigned long seq;
    char addr[64], len[32];
    seq++;
    snprintf(addr, sizeof addr, "2001:db8::%lx:%lx", (seq >> 16) & 0xffff, seq & 0xffff);
    snprintf(len, sizeof len, "%zu", size);
    const char *params[] = {"REQUEST_METHOD", "POST", "REQUEST_URI", FZ_AS_PATH "/register",
                            "REMOTE_ADDR", addr, "CONTENT_TYPE", "application/json",
                            "CONTENT_LENGTH", len, NULL};
    fz_req r;
    fz_req_init(&r, (const uint8_t *)"", 0, params);
    r.body = (const char *)data;
    r.blen = size;
    mcpauth_as_handle(a->as, &r.req, &r.resp);
    fz_req_free(&r);
    return 0;
}
