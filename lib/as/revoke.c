/* Token revocation (RFC 7009).  Only the client a token was issued to may
 * revoke it; either kind ends the whole grant (its family).  When the state
 * cannot be read or written (locked, read-only, full, damaged), the answer
 * is 503 with Retry-After, never a 200 for a grant that lives on: the
 * client tries again.  An access token still goes to the shared
 * revocation list at once (it is refused at the resource servers); its
 * grant ends when the client's retry gets through.  The other way round,
 * a grant ended whose token Redis (shared_state) could not take is 503
 * too: the AS pushes it when Redis is back (as.c), the retry confirms. */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <mcpauth/log.h>

#include "alloc.h"
#include "as_priv.h"
#include "clock.h"
#include "metrics.h"

/* 0 done (or nothing of the client's to revoke), -1 the store failed, -2
 * the grant ended but the token could not reach the shared list (Redis). */
static int revoke_token(mcpauth_as *as, const mcpauth_client *c, const char *tok)
{
    int rc = 0;
    time_t now = mcpauth__now();
    json_object *claims = mcpauth__as_own_claims(as, tok, now), *v;
    const char *cid = mcpauth__json_member_str(claims, "client_id", NULL);
    const char *fam = mcpauth__json_member_str(claims, "sid", NULL);
    mcpauth_grant g;
    memset(&g, 0, sizeof g);
    if (cid && fam && strcmp(cid, c->client_id) == 0) {
        if (mcpauth__store_revoke_family(as->store, fam) < 0)
            rc = -1;
        else
            mcpauth__as_push_revocations(as);
        /* this token at once, even if it was never recorded */
        unsigned char d[SHA256_DIGEST_LENGTH];
        SHA256((const unsigned char *)tok, strlen(tok), d);
        time_t exp = json_object_object_get_ex(claims, "exp", &v)
                         ? (time_t)json_object_get_int64(v)
                         : now + as->ac->access_token_ttl;
        if (mcpauth__revoked_add(as->revoked, d, exp, now) != 0) {
            mcpauth_log(MCPAUTH_LOG_ERROR, "revocation_not_shared", "client_id", c->client_id,
                        "reason", "the revocation list cannot be written", NULL);
            /* Redis unreachable passes by itself: the client is told to
             * try again rather than that the token is dead while the
             * resource servers still accept it.  (A revocation file in
             * runtime_dir that cannot be written does not pass: logged.) */
            if (rc == 0 && mcpauth__revoked_is_redis(as->revoked))
                rc = -2;
        }
    } else {
        int known = mcpauth__store_refresh_get(as->store, tok, now, &g);
        if (known < 0)
            rc = -1; /* cannot tell whether it is a refresh token of ours */
        else if (known == 1 && strcmp(g.client_id, c->client_id) == 0) {
            if (mcpauth__store_revoke_token(as->store, tok) < 0)
                rc = -1;
            else
                mcpauth__as_push_revocations(as);
        }
    }
    mcpauth__grant_free(&g);
    json_object_put(claims);
    return rc;
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
    int rc = 0;
    if (mcpauth__as_form_get(form, "token", tok, sizeof tok) != 1) {
        mcpauth__as_oauth_error(resp, 400, "invalid_request", "token is required");
    } else if ((rc = revoke_token(as, &c, tok)) == -2) {
        mcpauth__as_cors_public(resp);
        mcpauth_response_header(resp, "Retry-After", "1");
        mcpauth__as_oauth_error(resp, 503, "temporarily_unavailable",
                                "the revocation could not reach the resource servers (shared "
                                "state unreachable); try again");
    } else if (rc < 0) {
        if (!mcpauth__as_store_unavailable(resp, "revoking a token"))
            mcpauth__as_oauth_error(resp, 500, "server_error", "the token could not be revoked");
    } else {
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
