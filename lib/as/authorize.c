/* The authorization endpoint: the code flow with PKCE S256 and resource
 * indicators (RFC 8707).  The request is checked here; the user's answer
 * comes from consent.c; the code goes back by redirect (RFC 9207). */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <mcpauth/log.h>
#include <mcpauth/util.h>

#include "alloc.h"
#include "as_priv.h"
#include "clock.h"
#include "metrics.h"
#include "fetch.h"
#include "uri.h"

static int read_authz(const char *form, mcpauth__as_authz *a)
{
#define FIELD(name) {#name, a->name, sizeof a->name}
    struct {
        const char *k;
        char *v;
        size_t cap;
    } f[] = {FIELD(response_type), FIELD(client_id), FIELD(redirect_uri), FIELD(scope),
             FIELD(state), FIELD(code_challenge), FIELD(code_challenge_method), FIELD(resource),
             FIELD(csrf), FIELD(ts), FIELD(nonce), FIELD(decision), FIELD(remember)};
#undef FIELD
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (mcpauth__as_form_get(form, f[i].k, f[i].v, f[i].cap) < 0)
            return -1;
    return 0;
}

static void append_param(FILE *m, int *first, const char *k, const char *v)
{
    if (!v)
        return;
    char *e = mcpauth__check(mcpauth__form_encode(v), "mcpauth__form_encode");
    fprintf(m, "%c%s=%s", *first ? '?' : '&', k, e);
    free(e);
    *first = 0;
}

void mcpauth__as_redirect_back(mcpauth_as *as, mcpauth_response *resp, const char *uri,
                               const char *code, const char *error, const char *desc,
                               const char *state)
{
    char *loc;
    size_t len;
    FILE *m = mcpauth__as_memstream(&loc, &len);
    fputs(uri, m);
    int first = strchr(uri, '?') == NULL;
    if (code)
        append_param(m, &first, "code", code);
    if (error) {
        append_param(m, &first, "error", error);
        append_param(m, &first, "error_description", desc);
    }
    if (state && *state)
        append_param(m, &first, "state", state);
    append_param(m, &first, "iss", as->ac->issuer);
    mcpauth__as_memstream_close(m, &loc);
    mcpauth_response_set_status(resp, 302);
    mcpauth_response_header(resp, "Location", loc);
    mcpauth_response_header(resp, "Cache-Control", "no-store");
    mcpauth_response_header(resp, "Referrer-Policy", "no-referrer");
    mcpauth_response_send(resp, NULL, 0);
    free(loc);
}

static int pkce_challenge_ok(const char *c)
{
    size_t n = strlen(c);
    if (n != 43) /* base64url of a SHA-256 */
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)c[i]) && c[i] != '-' && c[i] != '_')
            return 0;
    return 1;
}

static const mcpauth_resource *our_resource(const mcpauth_as *as, const char *requested,
                                            const char **why)
{
    const mcpauth_resource *r = NULL;
    if (!*requested) {
        r = as->cfg->default_resource;
        if (!r)
            *why = "the resource parameter is required";
    } else {
        /* the slash-significant form first (trailing_slash = yes) */
        char *canon = mcpauth__uri_canonicalize(requested, MCPAUTH_URI_KEEP_SLASH, why);
        r = canon ? mcpauth_config_resource_by_uri(as->cfg, canon) : NULL;
        /* clients that append a slash (vercel/ai#13988) still mean the resource */
        if (!r && canon) {
            size_t n = strlen(canon);
            while (n > 0 && canon[n - 1] == '/')
                canon[--n] = '\0';
            r = mcpauth_config_resource_by_uri(as->cfg, canon);
        }
        free(canon);
        if (!r)
            *why = "the resource is not one this server issues tokens for";
    }
    if (r && !mcpauth_strlist_has(&r->authorization_servers, as->ac->issuer)) {
        *why = "the resource does not trust this authorization server";
        r = NULL;
    }
    return r;
}

/* The parameters, from the query or the posted form.  0, or -1 answered. */
static int read_request(const mcpauth_request *req, mcpauth_response *resp, int post,
                        mcpauth__as_authz *a)
{
    ssize_t blen = 0;
    char *body = NULL;
    if (post) {
        const char *ct = mcpauth_request_param(req, "CONTENT_TYPE");
        if (!ct || strncasecmp(ct, "application/x-www-form-urlencoded", 33) != 0) {
            mcpauth__as_error_page(resp, 415, "Bad request", "The form must be sent as "
                                                             "application/x-www-form-urlencoded.");
            return -1;
        }
        if (!(body = mcpauth__as_read_body(req, MCPAUTH__AS_FORM_MAX, &blen))) {
            mcpauth__as_error_page(resp, blen == -2 ? 413 : 400, "Bad request",
                                   "The form could not be read.");
            return -1;
        }
    }
    memset(a, 0, sizeof *a);
    int rc = read_authz(post ? body : req->query, a);
    free(body);
    if (rc < 0)
        mcpauth__as_error_page(resp, 400, "Bad request",
                               "A parameter is repeated, too long or badly encoded.");
    return rc;
}

/* The client and the redirect URI to answer it at (into redirect).  0, or
 * -1 answered with a page, never a redirect: neither is trusted yet. */
static int check_client(mcpauth_as *as, const mcpauth_request *req, mcpauth_response *resp,
                        const mcpauth__as_authz *a, mcpauth_client *c, char *redirect, size_t cap,
                        int *only_loopback)
{
    if (!a->client_id[0]) {
        mcpauth__as_error_page(resp, 400, "Bad request", "client_id is missing.");
        return -1;
    }
    char why[256] = "";
    int fr = mcpauth__as_find_client(as, a->client_id, c, why, sizeof why);
    if (fr <= 0) {
        mcpauth_log_security("authorize_refused", "reason", why, "client_id", a->client_id,
                             "client", req->remote_addr, NULL);
        mcpauth__as_error_page(resp, fr < 0 ? 500 : 400, "Unknown application",
                               fr < 0 ? "The server could not look the application up." : why);
        mcpauth__client_free(c);
        return -1;
    }
    if (!mcpauth__as_redirect_ok(c, a->redirect_uri, redirect, cap, only_loopback)) {
        mcpauth_log_security("authorize_refused", "reason", "redirect_uri not registered",
                             "client_id", a->client_id, "client", req->remote_addr, NULL);
        mcpauth__as_error_page(resp, 400, "Invalid redirect",
                               "The redirect_uri is not registered for this application.");
        mcpauth__client_free(c);
        return -1;
    }
    return 0;
}

/* The OAuth error for the request (NULL: none; *desc tells why), and the
 * resource it is for. */
static const char *check_params(const mcpauth_as *as, const mcpauth__as_authz *a,
                                const mcpauth_resource **res, const char **desc)
{
    if (strcmp(a->response_type, "code") != 0) {
        *desc = "only response_type=code is supported";
        return "unsupported_response_type";
    }
    const char *pkce =
        !a->code_challenge[0]
            ? "PKCE is required: send code_challenge with code_challenge_method=S256"
        : strcmp(a->code_challenge_method, "S256") != 0 ? "code_challenge_method must be S256"
        : !pkce_challenge_ok(a->code_challenge)          ? "code_challenge is not a base64url SHA-256"
                                                         : NULL;
    if (pkce) {
        *desc = pkce;
        return "invalid_request";
    }
    if (!(*res = our_resource(as, a->resource, desc)))
        return "invalid_target";
    if (a->scope[0] && (*res)->scopes_supported.n &&
        !mcpauth__as_scope_subset(a->scope, &(*res)->scopes_supported)) {
        *desc = "a requested scope is not offered by this resource";
        return "invalid_scope";
    }
    return NULL;
}

/* Nothing asked: what the resource needs.  0, or -1 when too long. */
static int default_scope(const mcpauth_resource *res, mcpauth__as_authz *a)
{
    size_t pos = 0;
    for (size_t i = 0; i < res->scopes_required.n; i++) {
        int n = snprintf(a->scope + pos, sizeof a->scope - pos, "%s%s", pos ? " " : "",
                         res->scopes_required.v[i]);
        if (n < 0 || (size_t)n >= sizeof a->scope - pos)
            return -1;
        pos += (size_t)n;
    }
    return 0;
}

static void issue_code(mcpauth_as *as, mcpauth_response *resp, const char *user,
                       const mcpauth_client *c, const mcpauth_resource *res,
                       mcpauth__as_authz *a, const char *redirect)
{
    char code[64], family[48];
    mcpauth_grant g = {c->client_id, (char *)user, (char *)res->uri, a->scope, a->redirect_uri,
                       a->code_challenge, family, mcpauth__now() + as->ac->code_ttl};
    if (mcpauth__as_random(code, sizeof code, 32) < 0 ||
        mcpauth__as_random(family, sizeof family, 18) < 0 ||
        mcpauth__store_code_add(as->store, code, &g) < 0) {
        /* RFC 6749 §4.1.2.1: temporarily_unavailable for a passing fault */
        int passing = mcpauth__as_state_fault("issuing an authorization code") != NULL;
        mcpauth__as_redirect_back(as, resp, redirect, NULL,
                                  passing ? "temporarily_unavailable" : "server_error",
                                  "could not store the code", a->state);
        return;
    }
    mcpauth_log(MCPAUTH_LOG_INFO, "code_issued", "user", user, "client_id", c->client_id,
                "resource", res->uri, "scope", a->scope, NULL);
    mcpauth__metrics_add(NULL, MCPAUTH_M_AS_CODES, 1);
    mcpauth__as_redirect_back(as, resp, redirect, code, NULL, NULL, a->state);
}

void mcpauth__as_authorize(mcpauth_as *as, const mcpauth_request *req, mcpauth_response *resp,
                           int post)
{
    mcpauth__as_authz a;
    if (read_request(req, resp, post, &a) < 0)
        return;
    const char *user = mcpauth_request_param(req, "REMOTE_USER");
    if (!user || !*user) {
        mcpauth__as_error_page(resp, 401, "Sign-in required",
                               "The web server did not authenticate you (REMOTE_USER is empty). "
                               "Ask the administrator to protect this URL with the site's login.");
        return;
    }
    mcpauth_client c;
    char redirect[2048];
    int only_loopback = 0;
    if (check_client(as, req, resp, &a, &c, redirect, sizeof redirect, &only_loopback) < 0)
        return;
    /* a.redirect_uri stays as requested ("" when left out): the code and
     * the CSRF token bind that (RFC 6749 §4.1.3); replies go to the
     * matched one.  From here on, errors go back to it (now trusted). */
    const char *desc = NULL;
    const mcpauth_resource *res = NULL;
    const char *err = check_params(as, &a, &res, &desc);
    if (!err && !a.scope[0] && default_scope(res, &a) < 0) {
        err = "invalid_scope";
        desc = "the resource's required scopes are too long";
    }
    if (err) {
        mcpauth__as_redirect_back(as, resp, redirect, NULL, err, desc, a.state);
    } else {
        snprintf(a.resource, sizeof a.resource, "%s", res->uri);
        mcpauth__metrics_add(NULL, MCPAUTH_M_AS_AUTHORIZATIONS, 1);
        int approved; /* a posted form not approved has been answered */
        if (post)
            approved = mcpauth__as_consent_answer(as, req, resp, user, &c, res, &a, redirect);
        else
            approved = as->ac->consent_remember &&
                       mcpauth__store_consent_has(as->store, user, c.client_id, res->uri,
                                                  a.scope) == 1;
        if (approved)
            issue_code(as, resp, user, &c, res, &a, redirect);
        else if (!post)
            mcpauth__as_consent_page(as, resp, user, &c, res, &a, redirect, only_loopback);
    }
    mcpauth__client_free(&c);
}
