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

/* Why client c may not have the grant g (a look at its refresh token) as
 * asked, or NULL; *err gets the error code.  Only the rightful client's
 * mistakes are refused here, before anything changes, so they cost
 * nothing; a token presented by another client goes on to the exchange,
 * which kills the family (it was stolen). */
static const char *refresh_problem(const token_call *t, const mcpauth_grant *g,
                                   const char *scope, const char **err)
{
    *err = "invalid_grant";
    if (!resource_matches(t->resource, g->resource))
        return "resource differs from the grant";
    if (scope[0] && !within_grant(scope, g)) {
        *err = "invalid_scope";
        return "the requested scope exceeds the grant";
    }
    return NULL;
}

/* The refusal for an exchange that did not succeed (r is not OK). */
static void exchange_answer(const token_call *t, mcpauth_rotate r)
{
    const char *why = "the refresh token is unknown, expired or revoked";
    switch (r) {
    case MCPAUTH_ROTATE_REUSED:
        mcpauth_log_security("refresh_reused", "client_id", t->c->client_id, "client",
                             t->req->remote_addr, NULL);
        mcpauth__metrics_add(NULL, MCPAUTH_M_AS_REUSE_DETECTED, 1);
        mcpauth__as_push_revocations(t->as);
        why = "the refresh token was already used; the grant is revoked";
        break;
    case MCPAUTH_ROTATE_FOREIGN:
        why = "the refresh token was issued to another client";
        mcpauth_log_security("token_refused", "reason", why, "client_id", t->c->client_id,
                             "client", t->req->remote_addr, NULL);
        mcpauth__as_push_revocations(t->as);
        break;
    case MCPAUTH_ROTATE_ERROR:
        if (mcpauth__as_store_unavailable(t->resp, "rotating a refresh token"))
            return; /* rolled back: the old token still works, its grace unspent */
        mcpauth__as_oauth_error(t->resp, 500, "server_error", "could not rotate the token");
        return;
    default:
        break;
    }
    mcpauth__as_oauth_error(t->resp, 400, "invalid_grant", why);
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
    /* Checked and minted from a look at the token (also one rotated away
     * within its family's life, so a grace use sees the same grant), then
     * rotated, stored and recorded in one transaction: a fault on the way
     * leaves the old token as it was and nothing issued. */
    mcpauth_grant g;
    int pk = mcpauth__store_refresh_peek(t->as->store, old, t->now, &g);
    if (pk != 1) {
        /* unknown, expired or revoked: the exchange would change nothing */
        if (pk < 0 && mcpauth__as_store_unavailable(t->resp, "rotating a refresh token"))
            return;
        mcpauth__as_oauth_error(t->resp, pk < 0 ? 500 : 400,
                                pk < 0 ? "server_error" : "invalid_grant",
                                "the refresh token is unknown, expired or revoked");
        return;
    }
    char *at = NULL;
    if (strcmp(g.client_id, t->c->client_id) == 0) {
        const char *err, *fail = refresh_problem(t, &g, scope, &err);
        if (fail) {
            mcpauth__as_oauth_error(t->resp, 400, err, fail);
            mcpauth__grant_free(&g);
            return;
        }
        if (scope[0]) { /* downscoping */
            free(g.scope);
            g.scope = mcpauth__xstrdup(scope);
        }
        if (!(at = mcpauth__as_mint(t->as, &g, t->now))) {
            mcpauth__as_oauth_error(t->resp, 500, "server_error",
                                    "no signing key (run mcpauth init)");
            mcpauth__grant_free(&g);
            return;
        }
    } /* else nothing is minted: the exchange revokes the family */
    if (mcpauth__as_random(fresh, sizeof fresh, 32) < 0) {
        mcpauth__as_oauth_error(t->resp, 500, "server_error", NULL);
    } else {
        const mcpauth_as_config *ac = t->as->ac;
        mcpauth_grant used;
        mcpauth_rotate r = mcpauth__store_refresh_exchange(
            t->as->store, old, fresh, t->now, ac->refresh_grace, t->now + ac->refresh_token_ttl,
            at, g.family, t->now + ac->access_token_ttl, t->c->client_id, &used);
        if (r == MCPAUTH_ROTATE_OK && at) {
            mcpauth__metrics_add(NULL, MCPAUTH_M_AS_REFRESH_ROTATIONS, 1);
            token_reply(t->as, t->resp, at, &g, fresh);
        } else if (r == MCPAUTH_ROTATE_OK) { /* cannot be: the exchange checks the client */
            mcpauth__as_oauth_error(t->resp, 500, "server_error", NULL);
        } else {
            exchange_answer(t, r);
        }
        mcpauth__grant_free(&used);
    }
    if (at) {
        OPENSSL_cleanse(at, strlen(at));
        free(at);
    }
    OPENSSL_cleanse(fresh, sizeof fresh);
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
