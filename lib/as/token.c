/* The token endpoint: authorization codes (PKCE checked) and refresh
 * tokens (rotated; a reused one revokes its grant) for access tokens. */
#include "config.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <mcpauth/log.h>
#include <mcpauth/util.h>

#include "alloc.h"
#include "as_priv.h"
#include "clock.h"
#include "metrics.h"
#include "encode.h"
#include "uri.h"

/* One token request, once the client is authenticated. */
typedef struct {
    mcpauth_as *as;
    const mcpauth_request *req;
    mcpauth_response *resp;
    const mcpauth_client *c;
    const char *form;
    const char *resource;       /* as requested ("" when left out) */
    time_t now;
} token_call;

static int grant_has(const mcpauth_client *c, const char *type)
{
    mcpauth_strlist l = {0, NULL};
    mcpauth_strlist_split(&l, c->grant_types ? c->grant_types : "authorization_code");
    int has = mcpauth_strlist_has(&l, type);
    mcpauth_strlist_free(&l);
    return has;
}

static void token_reply(mcpauth_as *as, mcpauth_response *resp, const char *at,
                        const mcpauth_grant *g, const char *refresh);

static void token_response(mcpauth_as *as, mcpauth_response *resp, const mcpauth_grant *g,
                           const char *refresh, time_t now)
{
    char *at = mcpauth__as_mint(as, g, now);
    if (!at) {
        mcpauth__as_oauth_error(resp, 500, "server_error", "no signing key (run mcpauth init)");
        return;
    }
    /* Recorded with a check of the grant in one transaction: a grant
     * revoked meanwhile gets no token, and one revoked later finds it. */
    int rec = mcpauth__store_access_add(as->store, at, g->family, now + as->ac->access_token_ttl);
    if (rec != 1) {
        OPENSSL_cleanse(at, strlen(at));
        free(at);
        if (rec < 0 && mcpauth__as_store_unavailable(resp, "recording an access token"))
            return;
        mcpauth__as_oauth_error(resp, rec < 0 ? 500 : 400,
                                rec < 0 ? "server_error" : "invalid_grant",
                                rec < 0 ? "could not record the token" : "the grant has been revoked");
        return;
    }
    token_reply(as, resp, at, g, refresh);
    OPENSSL_cleanse(at, strlen(at));
    free(at);
}

/* The 200 answer with the tokens. */
static void token_reply(mcpauth_as *as, mcpauth_response *resp, const char *at,
                        const mcpauth_grant *g, const char *refresh)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "access_token", json_object_new_string(at));
    json_object_object_add(o, "token_type", json_object_new_string("Bearer"));
    json_object_object_add(o, "expires_in", json_object_new_int64(as->ac->access_token_ttl));
    json_object_object_add(o, "scope", json_object_new_string(g->scope ? g->scope : ""));
    if (refresh)
        json_object_object_add(o, "refresh_token", json_object_new_string(refresh));
    mcpauth__metrics_add(NULL, MCPAUTH_M_AS_TOKENS, 1);
    mcpauth__as_cors_public(resp);
    mcpauth__as_json_reply(resp, 200, o);
}

/* The resource on a token request must be the grant's (RFC 8707 §2.2). */
static int resource_matches(const char *requested, const char *granted)
{
    if (!requested[0])
        return 1;
    char *keep = mcpauth__uri_canonicalize(requested, MCPAUTH_URI_KEEP_SLASH, NULL);
    char *strip = mcpauth__uri_canonicalize(requested, 0, NULL);
    int ok = (keep && strcmp(keep, granted) == 0) || (strip && strcmp(strip, granted) == 0);
    free(keep);
    free(strip);
    return ok;
}

/* scope asks for no more than the grant's scope. */
static int within_grant(const char *scope, const mcpauth_grant *g)
{
    mcpauth_strlist granted = {0, NULL};
    mcpauth_strlist_split(&granted, g->scope ? g->scope : "");
    int ok = mcpauth__as_scope_subset(scope, &granted);
    mcpauth_strlist_free(&granted);
    return ok;
}

/* ---------------------------------------------------- authorization_code */

/* PKCE: BASE64URL(SHA256(verifier)) == challenge (RFC 7636 §4.6) */
static int pkce_ok(const char *verifier, const char *challenge)
{
    unsigned char md[32];
    char calc[64];
    size_t vl = strlen(verifier);
    int vok = vl >= 43 && vl <= 128;
    for (size_t i = 0; vok && i < vl; i++)
        vok = isalnum((unsigned char)verifier[i]) || strchr("-._~", verifier[i]);
    SHA256((const unsigned char *)verifier, vl, md);
    mcpauth__b64url_encode(md, sizeof md, calc, sizeof calc);
    return vok && mcpauth__ct_equal(calc, strlen(calc), challenge, strlen(challenge));
}

static void redeem_answer(const token_call *t, mcpauth_redeem r);

/* The code's grant into g (the code is used).  0, or -1 answered. */
static int redeem_code(const token_call *t, const char *code, mcpauth_grant *g)
{
    mcpauth_redeem r = mcpauth__store_code_redeem(t->as->store, code, t->now, g);
    if (r == MCPAUTH_REDEEM_OK)
        return 0;
    if (r == MCPAUTH_REDEEM_ERROR &&
        mcpauth__as_store_unavailable(t->resp, "redeeming an authorization code"))
        return -1; /* the transaction rolled back: the code is still unused */
    redeem_answer(t, r);
    return -1;
}

/* The refusal for a code that could not be used (r is not OK). */
static void redeem_answer(const token_call *t, mcpauth_redeem r)
{
    if (r == MCPAUTH_REDEEM_REPLAYED) {
        mcpauth_log_security("code_replayed", "client_id", t->c->client_id, "client",
                             t->req->remote_addr, NULL);
        mcpauth__as_push_revocations(t->as);
        mcpauth__as_oauth_error(t->resp, 400, "invalid_grant",
                                "the code was already used; its tokens are revoked");
        return;
    }
    mcpauth__as_oauth_error(t->resp, r == MCPAUTH_REDEEM_ERROR ? 500 : 400,
                            r == MCPAUTH_REDEEM_ERROR ? "server_error" : "invalid_grant",
                            "the code is unknown or expired");
}

/* Why client c may not have the code's grant g with these parameters, or
 * NULL. */
static const char *code_problem(const mcpauth_grant *g, const mcpauth_client *c,
                                const char *verifier, const char *redirect, const char *resource)
{
    if (strcmp(g->client_id, c->client_id) != 0)
        return "the code was issued to another client";
    if (!pkce_ok(verifier, g->code_challenge))
        return "PKCE verification failed";
    if (strcmp(redirect, g->redirect_uri) != 0)
        return "redirect_uri differs from the authorization request";
    if (!resource_matches(resource, g->resource))
        return "resource differs from the authorization request";
    return NULL;
}

static void token_by_code(const token_call *t)
{
    char code[256], verifier[256], redirect[2048];
    if (mcpauth__as_form_get(t->form, "code", code, sizeof code) != 1 ||
        mcpauth__as_form_get(t->form, "code_verifier", verifier, sizeof verifier) != 1 ||
        mcpauth__as_form_get(t->form, "redirect_uri", redirect, sizeof redirect) < 0) {
        mcpauth__as_oauth_error(t->resp, 400, "invalid_request",
                                "code and code_verifier are required");
        return;
    }
    /* Checked and minted from a look at the code, then used, stored and
     * recorded in one transaction: a fault on the way leaves the code
     * unused and nothing issued. */
    mcpauth_grant g;
    int pk = mcpauth__store_code_peek(t->as->store, code, t->now, &g);
    if (pk < 0 && mcpauth__as_store_unavailable(t->resp, "redeeming an authorization code"))
        return;
    const char *fail = pk == 1 ? code_problem(&g, t->c, verifier, redirect, t->resource) : NULL;
    if (pk != 1 || fail) {
        /* unknown, replayed (which revokes) or refused: the code is used up */
        mcpauth__grant_free(&g);
        if (redeem_code(t, code, &g) < 0)
            return;
        fail = code_problem(&g, t->c, verifier, redirect, t->resource);
        if (!fail) /* it could not be looked at, then could: a passing fault */
            fail = "the code could not be checked";
        mcpauth_log_security("token_refused", "reason", fail, "client_id", t->c->client_id,
                             "client", t->req->remote_addr, NULL);
        mcpauth__as_oauth_error(t->resp, 400, "invalid_grant", fail);
        mcpauth__grant_free(&g);
        return;
    }
    char refresh[64];
    int with_refresh = grant_has(t->c, "refresh_token");
    char *at = NULL;
    if (mcpauth__as_random(refresh, sizeof refresh, 32) < 0 ||
        !(at = mcpauth__as_mint(t->as, &g, t->now))) {
        mcpauth__as_oauth_error(t->resp, 500, "server_error", "no signing key (run mcpauth init)");
        mcpauth__grant_free(&g);
        return;
    }
    mcpauth_grant used;
    mcpauth_redeem r = mcpauth__store_code_exchange(
        t->as->store, code, t->now, g.family, with_refresh ? refresh : NULL,
        t->now + t->as->ac->refresh_token_ttl, at, t->now + t->as->ac->access_token_ttl, &used);
    if (r == MCPAUTH_REDEEM_OK)
        token_reply(t->as, t->resp, at, &g, with_refresh ? refresh : NULL);
    else if (r != MCPAUTH_REDEEM_ERROR ||
             !mcpauth__as_store_unavailable(t->resp, "redeeming an authorization code"))
        redeem_answer(t, r); /* a racing request used it first */
    OPENSSL_cleanse(at, strlen(at));
    OPENSSL_cleanse(refresh, sizeof refresh);
    free(at);
    mcpauth__grant_free(&used);
    mcpauth__grant_free(&g);
}

/* --------------------------------------------------------- refresh_token */

/* Mistakes of the rightful client (resource, scope) are refused before
 * rotation, so they cost nothing; a token presented by another client is
 * caught after rotation, and kills the family (it was stolen).  0, or -1
 * answered. */
static int refresh_precheck(const token_call *t, const char *old, const char *scope)
{
    const char *pre = NULL, *perr = "invalid_grant";
    mcpauth_grant g0;
    memset(&g0, 0, sizeof g0);
    if (mcpauth__store_refresh_peek(t->as->store, old, t->now, &g0) == 1 &&
        strcmp(g0.client_id, t->c->client_id) == 0) {
        if (!resource_matches(t->resource, g0.resource))
            pre = "resource differs from the grant";
        else if (scope[0] && !within_grant(scope, &g0)) {
            pre = "the requested scope exceeds the grant";
            perr = "invalid_scope";
        }
    }
    mcpauth__grant_free(&g0);
    if (pre) {
        mcpauth__as_oauth_error(t->resp, 400, perr, pre);
        return -1;
    }
    return 0;
}

/* old rotated to fresh; the grant into g.  0, or -1 answered. */
static int rotate(const token_call *t, const char *old, const char *fresh, mcpauth_grant *g)
{
    const mcpauth_as_config *ac = t->as->ac;
    mcpauth_rotate r = mcpauth__store_refresh_rotate(t->as->store, old, fresh, t->now,
                                                    ac->refresh_grace,
                                                    t->now + ac->refresh_token_ttl, g);
    if (r == MCPAUTH_ROTATE_REUSED) {
        mcpauth_log_security("refresh_reused", "client_id", t->c->client_id, "client",
                             t->req->remote_addr, NULL);
        mcpauth__metrics_add(NULL, MCPAUTH_M_AS_REUSE_DETECTED, 1);
        mcpauth__as_push_revocations(t->as);
    }
    if (r == MCPAUTH_ROTATE_ERROR &&
        mcpauth__as_store_unavailable(t->resp, "rotating a refresh token"))
        return -1; /* rolled back: the old token still works */
    if (r != MCPAUTH_ROTATE_OK) {
        mcpauth__as_oauth_error(t->resp, r == MCPAUTH_ROTATE_ERROR ? 500 : 400,
                                r == MCPAUTH_ROTATE_ERROR ? "server_error" : "invalid_grant",
                                r == MCPAUTH_ROTATE_REUSED
                                    ? "the refresh token was already used; the grant is revoked"
                                    : "the refresh token is unknown, expired or revoked");
        return -1;
    }
    mcpauth__metrics_add(NULL, MCPAUTH_M_AS_REFRESH_ROTATIONS, 1);
    return 0;
}

/* Why client c may not use the rotated grant g as asked, or NULL; a scope
 * asked (downscoping only) then replaces g's. */
static const char *rotated_problem(const mcpauth_client *c, const char *resource,
                                   const char *scope, mcpauth_grant *g)
{
    if (strcmp(g->client_id, c->client_id) != 0)
        return "the refresh token was issued to another client";
    if (!resource_matches(resource, g->resource))
        return "resource differs from the grant";
    if (scope[0]) {
        if (!within_grant(scope, g))
            return "the requested scope exceeds the grant"; /* only after a grace use */
        free(g->scope);
        g->scope = mcpauth__xstrdup(scope);
    }
    return NULL;
}

static void token_by_refresh(const token_call *t)
{
    char old[256], scope[1024], fresh[64];
    if (mcpauth__as_form_get(t->form, "refresh_token", old, sizeof old) != 1 ||
        mcpauth__as_form_get(t->form, "scope", scope, sizeof scope) < 0) {
        mcpauth__as_oauth_error(t->resp, 400, "invalid_request", "refresh_token is required");
        return;
    }
    if (!grant_has(t->c, "refresh_token")) {
        mcpauth__as_oauth_error(t->resp, 400, "unauthorized_client",
                                "the client may not use refresh tokens");
        return;
    }
    if (refresh_precheck(t, old, scope) < 0)
        return;
    if (mcpauth__as_random(fresh, sizeof fresh, 32) < 0) {
        mcpauth__as_oauth_error(t->resp, 500, "server_error", NULL);
        return;
    }
    mcpauth_grant g;
    memset(&g, 0, sizeof g);
    if (rotate(t, old, fresh, &g) < 0)
        return;
    const char *fail = rotated_problem(t->c, t->resource, scope, &g);
    if (fail) {
        mcpauth__store_revoke_token(t->as->store, fresh);
        mcpauth__as_push_revocations(t->as);
        mcpauth__as_oauth_error(t->resp, 400, "invalid_grant", fail);
    } else {
        token_response(t->as, t->resp, &g, fresh, t->now);
    }
    mcpauth__grant_free(&g);
}

/* ------------------------------------------------------------- endpoint */

void mcpauth__as_token(mcpauth_as *as, const mcpauth_request *req, mcpauth_response *resp)
{
    ssize_t len;
    char *form = mcpauth__as_read_body(req, MCPAUTH__AS_FORM_MAX, &len);
    if (!form) {
        mcpauth__as_oauth_error(resp, len == -2 ? 413 : 400, "invalid_request",
                                "the body could not be read");
        return;
    }
    mcpauth_client c;
    if (mcpauth__as_authenticate_client(as, req, form, &c, resp) != 1) {
        free(form);
        return;
    }
    char gt[64], resource[2048];
    token_call t = {as, req, resp, &c, form, resource, mcpauth__now()};
    if (mcpauth__as_form_get(form, "grant_type", gt, sizeof gt) != 1 ||
        mcpauth__as_form_get(form, "resource", resource, sizeof resource) < 0)
        mcpauth__as_oauth_error(resp, 400, "invalid_request", "grant_type is missing or repeated");
    else if (strcmp(gt, "authorization_code") == 0)
        token_by_code(&t);
    else if (strcmp(gt, "refresh_token") == 0)
        token_by_refresh(&t);
    else
        mcpauth__as_oauth_error(resp, 400, "unsupported_grant_type",
                                "grant_type must be authorization_code or refresh_token");
    mcpauth__client_free(&c);
    OPENSSL_cleanse(form, strlen(form));
    free(form);
}
