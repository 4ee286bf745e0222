/* Clients of the AS: looking them up (registered, or by a client ID
 * metadata document), matching their redirect URIs, and authenticating
 * them at the token and revocation endpoints. */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include <mcpauth/log.h>

#include "alloc.h"
#include "as_priv.h"
#include "clock.h"
#include "metrics.h"
#include "uri.h"

int mcpauth__as_find_client(mcpauth_as *as, const char *client_id, mcpauth_client *c, char *err,
                            size_t errlen)
{
    memset(c, 0, sizeof *c);
    /* lab mode (cimd_allow_private) also takes http documents on loopback */
    int lab_url = as->ac->cimd_allow_private && strncmp(client_id, "http://", 7) == 0 &&
                  mcpauth__as_loopback_uri(client_id, NULL, 0);
    if (as->ac->cimd && (mcpauth__cimd_is_url(client_id) || lab_url)) {
        mcpauth_cimd_opts o = {3000, 16384, as->ac->cimd_allow_private, as->cfg->ca_file, 3600};
        if (mcpauth__cimd_get(as->cimd, client_id, &o, mcpauth__now(), c, err, errlen) == 0)
            return 1;
        mcpauth__metrics_add(NULL, MCPAUTH_M_AS_CIMD_REFUSED, 1);
        return 0;
    }
    int r = mcpauth__store_client_get(as->store, client_id, c);
    if (r == 0)
        snprintf(err, errlen, "unknown client_id");
    return r;
}

int mcpauth__as_loopback_uri(const char *uri, char *host_out, size_t cap)
{
    CURLU *u = curl_url();
    char *host = NULL;
    int lb = 0;
    if (u && curl_url_set(u, CURLUPART_URL, uri, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
        lb = mcpauth__uri_host_is_loopback(host);
        if (host_out)
            snprintf(host_out, cap, "%s", host);
    }
    curl_free(host);
    curl_url_cleanup(u);
    return lb;
}

/* The same URI but for the port (RFC 8252 §7.3: native apps take any port
 * on loopback). */
static int same_but_port(const char *a, const char *b)
{
    CURLU *ua = curl_url(), *ub = curl_url();
    int same = 0;
    if (ua && ub && curl_url_set(ua, CURLUPART_URL, a, 0) == CURLUE_OK &&
        curl_url_set(ub, CURLUPART_URL, b, 0) == CURLUE_OK) {
        curl_url_set(ua, CURLUPART_PORT, NULL, 0);
        curl_url_set(ub, CURLUPART_PORT, NULL, 0);
        char *sa = NULL, *sb = NULL;
        if (curl_url_get(ua, CURLUPART_URL, &sa, 0) == CURLUE_OK &&
            curl_url_get(ub, CURLUPART_URL, &sb, 0) == CURLUE_OK)
            same = strcmp(sa, sb) == 0;
        curl_free(sa);
        curl_free(sb);
    }
    curl_url_cleanup(ua);
    curl_url_cleanup(ub);
    return same;
}

int mcpauth__as_redirect_ok(const mcpauth_client *c, const char *requested, char *out,
                            size_t cap, int *only_loopback)
{
    json_object *arr = json_tokener_parse(c->redirect_uris ? c->redirect_uris : "[]");
    int ok = 0;
    size_t n = arr && json_object_is_type(arr, json_type_array) ? json_object_array_length(arr) : 0;
    *only_loopback = n > 0;
    for (size_t i = 0; i < n; i++) {
        /* stored before NULs were refused: never match on a prefix */
        const char *reg = mcpauth__json_str(json_object_array_get_idx(arr, i), NULL);
        if (!reg)
            continue;
        int lb = mcpauth__as_loopback_uri(reg, NULL, 0);
        if (!lb)
            *only_loopback = 0;
        if (!ok && !*requested && n == 1) {
            snprintf(out, cap, "%s", reg);
            ok = 1;
        } else if (!ok && *requested &&
                   (strcmp(reg, requested) == 0 ||
                    (lb && mcpauth__as_loopback_uri(requested, NULL, 0) &&
                     same_but_port(reg, requested)))) {
            snprintf(out, cap, "%s", requested);
            ok = 1;
        }
    }
    json_object_put(arr);
    return ok;
}

/* The credentials a client presents, from Basic or from the form (one of
 * the two).  0, or -1 answered. */
static int client_credentials(const char *authz, const char *form, char *id, size_t idcap,
                              char *secret, size_t seccap, mcpauth_response *resp)
{
    char body_id[2048] = "", body_secret[512] = "";
    int rc = 0;
    if (mcpauth__as_form_get(form, "client_id", body_id, sizeof body_id) < 0 ||
        mcpauth__as_form_get(form, "client_secret", body_secret, sizeof body_secret) < 0) {
        mcpauth__as_oauth_error(resp, 400, "invalid_request",
                                "repeated or malformed client credentials");
        rc = -1;
    } else if (authz) {
        if (mcpauth__as_parse_basic(authz, id, idcap, secret, seccap) < 0) {
            mcpauth_response_header(resp, "WWW-Authenticate", "Basic realm=\"mcpauth\"");
            mcpauth__as_oauth_error(resp, 401, "invalid_client", "malformed Basic credentials");
            rc = -1;
        } else if ((body_id[0] && strcmp(body_id, id) != 0) || body_secret[0]) {
            mcpauth__as_oauth_error(resp, 400, "invalid_request",
                                    "use one client authentication method");
            rc = -1;
        }
    } else {
        snprintf(id, idcap, "%s", body_id);
        snprintf(secret, seccap, "%s", body_secret);
    }
    OPENSSL_cleanse(body_secret, sizeof body_secret);
    return rc;
}

int mcpauth__as_authenticate_client(mcpauth_as *as, const mcpauth_request *req,
                                    const char *form, mcpauth_client *c, mcpauth_response *resp)
{
    char id[2048] = "", secret[512] = "";
    const char *authz = mcpauth_request_param(req, "HTTP_AUTHORIZATION");
    int basic = authz && strncasecmp(authz, "Basic ", 6) == 0;
    memset(c, 0, sizeof *c);
    if (client_credentials(basic ? authz : NULL, form, id, sizeof id, secret, sizeof secret,
                           resp) < 0) {
        OPENSSL_cleanse(secret, sizeof secret);
        return -1;
    }
    if (!id[0]) {
        mcpauth__as_oauth_error(resp, 401, "invalid_client", "client_id is missing");
        return -1;
    }
    char why[256] = "";
    int fr = mcpauth__as_find_client(as, id, c, why, sizeof why);
    if (fr < 0 && mcpauth__as_store_unavailable(resp, "authenticating a client")) {
        OPENSSL_cleanse(secret, sizeof secret);
        mcpauth__client_free(c);
        return -1;
    }
    const char *method = basic ? "client_secret_basic" : secret[0] ? "client_secret_post" : "none";
    int ok = fr == 1 && strcmp(c->token_endpoint_auth_method ? c->token_endpoint_auth_method : "none",
                               method) == 0;
    if (ok && strcmp(method, "none") != 0) {
        int cs = mcpauth__store_client_check_secret(as->store, id, secret);
        if (cs < 0 && mcpauth__as_store_unavailable(resp, "authenticating a client")) {
            OPENSSL_cleanse(secret, sizeof secret);
            mcpauth__client_free(c);
            return -1;
        }
        ok = cs == 1;
    }
    OPENSSL_cleanse(secret, sizeof secret);
    if (!ok) {
        mcpauth_log_security("client_auth_failed", "client_id", id, "method", method, "client",
                             req->remote_addr, NULL);
        if (basic)
            mcpauth_response_header(resp, "WWW-Authenticate", "Basic realm=\"mcpauth\"");
        mcpauth__as_oauth_error(resp, 401, "invalid_client", "client authentication failed");
        mcpauth__client_free(c);
        return 0;
    }
    return 1;
}
