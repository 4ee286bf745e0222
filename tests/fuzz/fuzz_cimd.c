/* Client ID metadata documents: mcpauth__cimd_get with the input as the
 * document the client_id URL answers with (the fetch is the harness's
 * stand-in), and mcpauth__display_name_problem on the raw input.  The
 * first line picks the HTTP status and max-age; the rest is the body. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mcpauth/log.h>

#include "cimd.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define URL "https://client.example/oauth/metadata.json"

static mcpauth_cimd *cache;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!cache) {
        mcpauth_log_set_level(MCPAUTH_LOG_ERROR);
        cache = mcpauth__cimd_new(0); /* no caching: every input is parsed */
    }
    mcpauth__display_name_problem((const char *)data, size);
    const uint8_t *rest;
    size_t restlen;
    char *first = fz_line(data, size, &rest, &restlen);
    long status = 200, max_age = -1;
    if (first[0] == '#') /* "#STATUS MAXAGE" */
        sscanf(first + 1, "%ld %ld", &status, &max_age);
    else {
        rest = data;
        restlen = size;
    }
    fz_fetch_body = (const char *)rest;
    fz_fetch_len = restlen;
    fz_fetch_status = status;
    fz_fetch_max_age = max_age;
    mcpauth_cimd_opts o = {0};
    mcpauth_client c;
    char err[256];
    if (mcpauth__cimd_get(cache, URL, &o, FZ_NOW, &c, err, sizeof err) == 0) {
        if (!c.client_id || strcmp(c.client_id, URL) != 0 || !c.redirect_uris)
            abort();
        if (c.client_name && mcpauth__display_name_problem(c.client_name, strlen(c.client_name)))
            abort();
    }
    mcpauth__client_free(&c);
    fz_fetch_body = NULL;
    free(first);
    return 0;
}
