/* Token introspection (RFC 7662) for the resource servers, which
 * authenticate with the configured credentials (HTTP Basic).  A token whose
 * state cannot be read (the database damaged, unreadable, locked for
 * longer than the busy timeout) is not reported inactive: that would log
 * out a rightful user on a passing fault.  RFC 7662 has no error for it;
 * the answer is 503 temporarily_unavailable with Retry-After, and the
 * resource server refuses the request for now (it cannot know). */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>

#include <mcpauth/log.h>

#include "alloc.h"
#include "as_priv.h"
#include "clock.h"
#include "encode.h"

static int introspection_caller_ok(mcpauth_as *as, const mcpauth_request *req)
{
    const char *authz = mcpauth_request_param(req, "HTTP_AUTHORIZATION");
    const char *want_id = as->ac->introspection_client_id;
    const char *want_secret = as->ac->introspection_client_secret;
    char id[512], secret[600];
    if (!want_id || !authz || strncasecmp(authz, "Basic ", 6) != 0 ||
        mcpauth__as_parse_basic(authz, id, sizeof id, secret, sizeof secret) < 0)
        return 0;
    int ok = mcpauth__ct_equal(id, strlen(id), want_id, strlen(want_id)) &
             mcpauth__ct_equal(secret, strlen(secret), want_secret, strlen(want_secret));
    OPENSSL_cleanse(secret, sizeof secret);
    return ok;
}

/* The claims of one of our access tokens, unless its grant is revoked
 * (NULL).  *failed: the store could not say. */
static json_object *active_claims(mcpauth_as *as, const char *tok, time_t now, int *failed)
{
    json_object *claims = mcpauth__as_own_claims(as, tok, now);
    if (claims) {
        const char *fam = mcpauth__json_member_str(claims, "sid", NULL);
        int revoked = fam ? mcpauth__store_family_revoked(as->store, fam) : 1;
        *failed = revoked < 0;
        if (revoked != 0) {
            json_object_put(claims);
            claims = NULL;
        }
    }
    return claims;
}

/* An active access token's claims into o (claims dropped). */
static void describe_access(json_object *o, json_object *claims)
{
    static const char *const copy[] = {"iss", "sub", "aud", "client_id", "scope", "exp",
                                       "iat", "jti", NULL};
    json_object *v;
    json_object_object_add(o, "active", json_object_new_boolean(1));
    for (int i = 0; copy[i]; i++)
        if (json_object_object_get_ex(claims, copy[i], &v))
            json_object_object_add(o, copy[i], json_object_get(v));
    json_object_object_add(o, "token_type", json_object_new_string("Bearer"));
    json_object_put(claims);
}

/* tok as a refresh token into o: active with its grant, or inactive.  0,
 * or -1 when the store could not say (o untouched). */
static int describe_refresh(mcpauth_as *as, json_object *o, const char *tok, time_t now)
{
    mcpauth_grant g;
    memset(&g, 0, sizeof g);
    int r = mcpauth__store_refresh_get(as->store, tok, now, &g);
    if (r == 1) {
        json_object_object_add(o, "active", json_object_new_boolean(1));
        json_object_object_add(o, "iss", json_object_new_string(as->ac->issuer));
        json_object_object_add(o, "sub", json_object_new_string(g.user));
        json_object_object_add(o, "aud", json_object_new_string(g.resource));
        json_object_object_add(o, "client_id", json_object_new_string(g.client_id));
        json_object_object_add(o, "scope", json_object_new_string(g.scope ? g.scope : ""));
        json_object_object_add(o, "exp", json_object_new_int64(g.expires));
        json_object_object_add(o, "token_type", json_object_new_string("refresh_token"));
    } else if (r == 0) {
        json_object_object_add(o, "active", json_object_new_boolean(0));
    }
    mcpauth__grant_free(&g);
    return r < 0 ? -1 : 0;
}

void mcpauth__as_introspect(mcpauth_as *as, const mcpauth_request *req, mcpauth_response *resp)
{
    if (!introspection_caller_ok(as, req)) {
        mcpauth_log_security("introspection_refused", "client", req->remote_addr, NULL);
        mcpauth_response_header(resp, "WWW-Authenticate", "Basic realm=\"mcpauth\"");
        mcpauth__as_oauth_error(resp, 401, "invalid_client",
                                "introspection needs the resource server's credentials");
        return;
    }
    ssize_t len;
    char *form = mcpauth__as_read_body(req, MCPAUTH__AS_FORM_MAX, &len);
    char tok[8192];
    if (!form || mcpauth__as_form_get(form, "token", tok, sizeof tok) != 1) {
        free(form);
        mcpauth__as_oauth_error(resp, 400, "invalid_request", "token is required");
        return;
    }
    OPENSSL_cleanse(form, strlen(form));
    free(form);
    time_t now = mcpauth__now();
    json_object *o = json_object_new_object();
    int failed = 0;
    json_object *claims = active_claims(as, tok, now, &failed);
    if (claims)
        describe_access(o, claims);
    else if (!failed && describe_refresh(as, o, tok, now) < 0)
        failed = 1;
    OPENSSL_cleanse(tok, sizeof tok);
    if (!failed) {
        mcpauth__as_json_reply(resp, 200, o);
        return;
    }
    json_object_put(o);
    if (!mcpauth__as_store_unavailable(resp, "introspecting a token"))
        mcpauth__as_oauth_error(resp, 500, "server_error", "the token's state cannot be read");
}
