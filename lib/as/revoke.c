/* Token revocation (RFC 7009).  Only the client a token was issued to may
 * revoke it; either kind ends the whole grant (its family). */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <mcpauth/log.h>

#include "alloc.h"
#include "as_priv.h"
#include "metrics.h"

static void revoke_token(mcpauth_as *as, const mcpauth_client *c, const char *tok)
{
    time_t now = time(NULL);
    json_object *claims = mcpauth__as_own_claims(as, tok, now), *v;
    const char *cid = mcpauth__json_member_str(claims, "client_id", NULL);
    const char *fam = mcpauth__json_member_str(claims, "sid", NULL);
    mcpauth_grant g;
    memset(&g, 0, sizeof g);
    if (cid && fam && strcmp(cid, c->client_id) == 0) {
        mcpauth__store_revoke_family(as->store, fam);
        mcpauth__as_push_revocations(as);
        /* this token at once, even if it was never recorded */
        unsigned char d[SHA256_DIGEST_LENGTH];
        SHA256((const unsigned char *)tok, strlen(tok), d);
        time_t exp = json_object_object_get_ex(claims, "exp", &v)
                         ? (time_t)json_object_get_int64(v)
                         : now + as->ac->access_token_ttl;
        if (mcpauth__revoked_add(as->revoked, d, exp, now) != 0)
            mcpauth_log(MCPAUTH_LOG_ERROR, "revocation_not_shared", "client_id", c->client_id,
                        "reason", "the revocation list cannot be written", NULL);
    } else if (mcpauth__store_refresh_get(as->store, tok, now, &g) == 1 &&
               strcmp(g.client_id, c->client_id) == 0) {
        mcpauth__store_revoke_token(as->store, tok);
        mcpauth__as_push_revocations(as);
    }
    mcpauth__grant_free(&g);
    json_object_put(claims);
}

void mcpauth__as_revoke(mcpauth_as *as, const mcpauth_request *req, mcpauth_response *resp)
{
    ssize_t len;
    char *form = mcpauth__as_read_body(req, MCPAUTH__AS_FORM_MAX, &len);
    if (!form) {
        mcpauth__as_oauth_error(resp, 400, "invalid_request", "the body could not be read");
        return;
    }
    mcpauth_client c;
    if (mcpauth__as_authenticate_client(as, req, form, &c, resp) != 1) {
        free(form);
        return;
    }
    char tok[8192];
    if (mcpauth__as_form_get(form, "token", tok, sizeof tok) != 1) {
        mcpauth__as_oauth_error(resp, 400, "invalid_request", "token is required");
    } else {
        revoke_token(as, &c, tok);
        mcpauth_log(MCPAUTH_LOG_INFO, "token_revoked", "client_id", c.client_id, NULL);
        mcpauth__metrics_add(NULL, MCPAUTH_M_AS_REVOCATIONS, 1);
        /* RFC 7009 §2.2: 200 whether or not the token was known */
        mcpauth__as_cors_public(resp);
        mcpauth_response_set_status(resp, 200);
        mcpauth_response_header(resp, "Cache-Control", "no-store");
        mcpauth_response_send(resp, NULL, 0);
    }
    mcpauth__client_free(&c);
    OPENSSL_cleanse(form, strlen(form));
    free(form);
}
