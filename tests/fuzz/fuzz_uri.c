/* The one canonical-URI rule, mcpauth__uri_canonicalize, under each flag
 * combination: the result, when there is one, is canonical already
 * (canonicalizing it again gives it back) and splits into origin and path. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "uri.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = fz_strndup(data, size);
    for (unsigned flags = 0; flags < 8; flags++) {
        const char *why = NULL;
        char *c = mcpauth__uri_canonicalize(in, flags, &why);
        if (!c) {
            if (!why)
                abort();
            continue;
        }
        char *again = mcpauth__uri_canonicalize(c, flags, &why);
        if (!again || strcmp(again, c) != 0)
            abort();
        char *origin = NULL, *path = NULL;
        if (mcpauth__uri_split(c, &origin, &path) != 0)
            abort();
        size_t ol = strlen(origin);
        if (strncmp(c, origin, ol) != 0 || strcmp(c + ol, path) != 0)
            abort();
        mcpauth__uri_host_is_loopback(origin + (strstr(origin, "://") - origin) + 3);
        free(origin);
        free(path);
        free(again);
        free(c);
    }
    mcpauth__uri_host_is_loopback(in);
    free(in);
    return 0;
}
