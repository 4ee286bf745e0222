/* The configuration parser, mcpauth_config_parse, on the whole input, and
 * the lookups a program makes on the result.  Paths in the input are only
 * ever stat()ed or read, never written. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <mcpauth/as.h>
#include <mcpauth/log.h>
#include <mcpauth/metadata.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mcpauth_log_set_level(MCPAUTH_LOG_ERROR);
    char err[512];
    err[0] = 'x';
    mcpauth_config *c = mcpauth_config_parse((const char *)data, size, "fuzz.conf", err, sizeof err);
    if (!c) {
        if (!memchr(err, '\0', sizeof err) || !err[0]) /* a refusal always says why */
            abort();
        return 0;
    }
    for (size_t i = 0; i < c->nresources; i++) {
        const mcpauth_resource *r = &c->resources[i];
        if (mcpauth_config_resource_by_name(c, r->name) != r)
            abort();
        if (mcpauth_config_resource_by_uri(c, r->uri) == NULL)
            abort();
        mcpauth_config_resource_for_path(c, r->path[0] ? r->path : "/", r->host);
    }
    /* what mcpauth-metadata serves from it */
    char why[256];
    mcpauth_metadata *md = mcpauth_metadata_new(c, why, sizeof why);
    for (size_t i = 0; md && i < c->nresources; i++) {
        const char *j = mcpauth_metadata_json(md, &c->resources[i]);
        if (j)
            mcpauth_metadata_lookup(md, c->resources[i].metadata_url_path,
                                    c->resources[i].metadata_url_host);
    }
    mcpauth_metadata_free(md);
    free(mcpauth_as_metadata_json(c));
    mcpauth_config_free(c);
    return 0;
}
