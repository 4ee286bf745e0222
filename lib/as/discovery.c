/* What the AS publishes: its metadata (RFC 8414, served by
 * mcpauth-metadata) and its public keys (the jwks endpoint). */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mcpauth/util.h>

#include "alloc.h"
#include "as_priv.h"
#include "clock.h"

void mcpauth__as_jwks(mcpauth_as *as, mcpauth_response *resp)
{
    mcpauth__as_keys *k = mcpauth__as_keys_get(as, mcpauth__now());
    mcpauth__as_cors_public(resp);
    if (!k || !k->jwks) {
        mcpauth__as_keys_put(k);
        mcpauth__as_oauth_error(resp, 503, "temporarily_unavailable", "no signing key");
        return;
    }
    mcpauth_response_header(resp, "Cache-Control", "public, max-age=300");
    mcpauth_response_set_status(resp, 200);
    mcpauth_response_header(resp, "Content-Type", "application/jwk-set+json");
    mcpauth_response_send(resp, k->jwks, strlen(k->jwks));
    mcpauth__as_keys_put(k);
}

/* ------------------------------------------------------------- metadata */

/* name: the array of the n strings v. */
static void add_strings(json_object *o, const char *name, const char *const *v, size_t n)
{
    json_object *a = json_object_new_array();
    for (size_t i = 0; i < n; i++)
        json_object_array_add(a, json_object_new_string(v[i]));
    json_object_object_add(o, name, a);
}

#define ADD_STRINGS(o, name, ...)                                                              \
    do {                                                                                       \
        const char *const v_[] = {__VA_ARGS__};                                                \
        add_strings(o, name, v_, sizeof v_ / sizeof v_[0]);                                    \
    } while (0)

static void add_endpoints(json_object *o, const mcpauth_config *cfg)
{
    static const char *const eps[][2] = {{"authorization_endpoint", "authorize"},
                                         {"token_endpoint", "token"},
                                         {"registration_endpoint", "register"},
                                         {"introspection_endpoint", "introspect"},
                                         {"revocation_endpoint", "revoke"},
                                         {"jwks_uri", "jwks"}};
    char url[2100];
    for (size_t i = 0; i < sizeof eps / sizeof eps[0]; i++) {
        if (!cfg->as->registration && !strcmp(eps[i][1], "register"))
            continue;
        mcpauth_as_endpoint(cfg, eps[i][1], url, sizeof url);
        json_object_object_add(o, eps[i][0], json_object_new_string(url));
    }
}

static void add_methods(json_object *o, const mcpauth_config *cfg)
{
    ADD_STRINGS(o, "response_types_supported", "code");
    ADD_STRINGS(o, "response_modes_supported", "query");
    ADD_STRINGS(o, "grant_types_supported", "authorization_code", "refresh_token");
    ADD_STRINGS(o, "code_challenge_methods_supported", "S256");
    ADD_STRINGS(o, "token_endpoint_auth_methods_supported", "none", "client_secret_basic",
                "client_secret_post");
    ADD_STRINGS(o, "revocation_endpoint_auth_methods_supported", "none", "client_secret_basic",
                "client_secret_post");
    ADD_STRINGS(o, "introspection_endpoint_auth_methods_supported", "client_secret_basic");
    if (!strcmp(cfg->as->signing_alg, "RS256"))
        ADD_STRINGS(o, "token_endpoint_auth_signing_alg_values_supported", "RS256");
}

char *mcpauth_as_metadata_json(const mcpauth_config *cfg)
{
    if (!cfg->as)
        return NULL;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "issuer", json_object_new_string(cfg->as->issuer));
    add_endpoints(o, cfg);
    add_methods(o, cfg);
    add_strings(o, "scopes_supported", (const char *const *)cfg->as->scopes_supported.v,
                cfg->as->scopes_supported.n);
    json_object_object_add(o, "authorization_response_iss_parameter_supported",
                           json_object_new_boolean(1));
    json_object_object_add(o, "client_id_metadata_document_supported",
                           json_object_new_boolean(cfg->as->cimd));
    /* OIDC discovery requires these; harmless for OAuth clients */
    ADD_STRINGS(o, "subject_types_supported", "public");
    ADD_STRINGS(o, "id_token_signing_alg_values_supported", cfg->as->signing_alg);
    json_object *a = json_object_new_array();
    for (size_t i = 0; i < cfg->nresources; i++)
        if (mcpauth_strlist_has(&cfg->resources[i].authorization_servers, cfg->as->issuer))
            json_object_array_add(a, json_object_new_string(cfg->resources[i].uri));
    json_object_object_add(o, "protected_resources", a);
    char *s = mcpauth__xstrdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                                     JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
    return s;
}
