/* Dynamic client registration (RFC 7591): the metadata is checked field by
 * field, registrations are rate-limited per address, and the client gets
 * its id (and secret, unless public) once. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>

#include <mcpauth/log.h>
#include <mcpauth/util.h>

#include "alloc.h"
#include "as_priv.h"
#include "clock.h"
#include "metrics.h"
#include "uri.h"

/* The metadata of a registration, once checked. */
typedef struct {
    json_object *uris;          /* redirect_uris, lent by the metadata */
    const char *method;         /* token_endpoint_auth_method */
    char grants[128];           /* grant_types, space separated */
    const char *name;           /* client_name (NULL: none) */
    const char *ferr;           /* the OAuth error when refused */
    char name_why[96];
} reg_request;

static int redirect_uri_ok(const char *u)
{
    const char *why;
    if (strchr(u, '#'))
        return 0;
    char *canon = mcpauth__uri_canonicalize(u, MCPAUTH_URI_KEEP_SLASH | MCPAUTH_URI_ALLOW_QUERY, &why);
    int ok = canon != NULL; /* https, or http on loopback */
    free(canon);
    return ok;
}

static void reg_error(mcpauth_response *resp, const char *error, const char *desc)
{
    mcpauth__as_cors_public(resp);
    mcpauth__as_oauth_error(resp, 400, error, desc);
}

/* The body as one JSON object, or NULL (answered). */
static json_object *read_metadata(const mcpauth_request *req, mcpauth_response *resp)
{
    const char *ct = mcpauth_request_param(req, "CONTENT_TYPE");
    if (!ct || strncasecmp(ct, "application/json", 16) != 0) {
        reg_error(resp, "invalid_client_metadata", "Content-Type must be application/json");
        return NULL;
    }
    ssize_t len;
    char *body = mcpauth__as_read_body(req, MCPAUTH__AS_REG_MAX, &len);
    if (!body) {
        mcpauth__as_cors_public(resp);
        mcpauth__as_oauth_error(resp, len == -2 ? 413 : 400, "invalid_client_metadata",
                                len == -2 ? "registration larger than 16 KiB"
                                          : "the body could not be read");
        return NULL;
    }
    json_tokener *tok = json_tokener_new_ex(10);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *m = json_tokener_parse_ex(tok, body, (int)len);
    int whole = json_tokener_get_error(tok) == json_tokener_success &&
                json_tokener_get_parse_end(tok) == (size_t)len;
    json_tokener_free(tok);
    free(body);
    if (!m || !whole || !json_object_is_type(m, json_type_object)) {
        json_object_put(m);
        reg_error(resp, "invalid_client_metadata", "the body is not a JSON object");
        return NULL;
    }
    return m;
}

/* --------------------------------------------------------------- checks */

/* Every string is read with mcpauth__json_str: "a\u0000b" would be
 * checked as "a" and stored whole. */
static const char *check_redirect_uris(json_object *m, reg_request *r)
{
    r->ferr = "invalid_redirect_uri";
    if (!json_object_object_get_ex(m, "redirect_uris", &r->uris) ||
        !json_object_is_type(r->uris, json_type_array) ||
        json_object_array_length(r->uris) == 0 || json_object_array_length(r->uris) > 10)
        return "redirect_uris must be an array of 1 to 10 URIs";
    for (size_t i = 0; i < json_object_array_length(r->uris); i++) {
        json_object *u = json_object_array_get_idx(r->uris, i);
        size_t ul = 0;
        const char *us = mcpauth__json_str(u, &ul);
        if (json_object_is_type(u, json_type_string) && !us)
            return "a redirect URI contains a NUL character";
        if (!us || ul > 2000 || !redirect_uri_ok(us))
            return "each redirect URI must be https, or http on a loopback host, without a "
                   "fragment";
    }
    r->ferr = "invalid_client_metadata";
    return NULL;
}

static const char *check_method(json_object *m, reg_request *r)
{
    json_object *v;
    r->method = "client_secret_basic"; /* RFC 7591 §2 default */
    if (!json_object_object_get_ex(m, "token_endpoint_auth_method", &v))
        return NULL;
    r->method = mcpauth__json_str(v, NULL);
    if (!r->method)
        r->method = "";
    if (strcmp(r->method, "none") && strcmp(r->method, "client_secret_basic") &&
        strcmp(r->method, "client_secret_post"))
        return "token_endpoint_auth_method must be none, client_secret_basic or "
               "client_secret_post";
    return NULL;
}

static const char *check_grants(json_object *m, reg_request *r)
{
    json_object *v;
    snprintf(r->grants, sizeof r->grants, "authorization_code");
    if (!json_object_object_get_ex(m, "grant_types", &v))
        return NULL;
    if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) == 0)
        return "grant_types must be a non-empty array";
    size_t pos = 0;
    r->grants[0] = '\0';
    int has_code = 0;
    for (size_t i = 0; i < json_object_array_length(v); i++) {
        const char *g = mcpauth__json_str(json_object_array_get_idx(v, i), NULL);
        if (!g || (strcmp(g, "authorization_code") && strcmp(g, "refresh_token")))
            return "grant_types may hold only authorization_code and refresh_token";
        if (!strstr(r->grants, g))
            pos += (size_t)snprintf(r->grants + pos, sizeof r->grants - pos, "%s%s",
                                    pos ? " " : "", g);
        has_code |= !strcmp(g, "authorization_code");
    }
    return has_code ? NULL : "grant_types must include authorization_code";
}

static const char *check_response_types(json_object *m)
{
    json_object *v;
    if (!json_object_object_get_ex(m, "response_types", &v))
        return NULL;
    const char *rt = json_object_is_type(v, json_type_array) && json_object_array_length(v) == 1
                         ? mcpauth__json_str(json_object_array_get_idx(v, 0), NULL)
                         : NULL;
    return !rt || strcmp(rt, "code") != 0 ? "response_types must be [\"code\"]" : NULL;
}

static const char *check_name(json_object *m, reg_request *r)
{
    json_object *v;
    const char *why;
    if (!json_object_object_get_ex(m, "client_name", &v))
        return NULL;
    if (!json_object_is_type(v, json_type_string))
        return "client_name must be a string of at most 200 characters";
    if ((why = mcpauth__display_name_problem(json_object_get_string(v),
                                             (size_t)json_object_get_string_len(v)))) {
        /* why is a fixed phrase from cimd.c; the buffer only joins it */
        snprintf(r->name_why, sizeof r->name_why, "client_name %s", why);
        return r->name_why;
    }
    r->name = mcpauth__json_str(v, NULL);
    return NULL;
}

/* Why the metadata m is refused (r->ferr: the error), or NULL. */
static const char *check_metadata(json_object *m, reg_request *r)
{
    const char *fail = check_redirect_uris(m, r);
    if (!fail)
        fail = check_method(m, r);
    if (!fail)
        fail = check_grants(m, r);
    if (!fail)
        fail = check_response_types(m);
    if (!fail)
        fail = check_name(m, r);
    return fail;
}

/* -------------------------------------------------------------- outcome */

/* Under the per-address limit: 1, else 0 (answered). */
static int registration_allowed(mcpauth_as *as, const mcpauth_request *req,
                                mcpauth_response *resp)
{
    int allowed = mcpauth__store_registration_allowed(as->store, req->remote_addr,
                                                     (int)as->ac->registration_limit, 3600);
    if (allowed == 1)
        return 1;
    if (allowed < 0 && mcpauth__as_store_unavailable(resp, "registering a client"))
        return 0;
    mcpauth_log_security("registration_limited", "client", req->remote_addr, NULL);
    mcpauth__as_cors_public(resp);
    mcpauth_response_header(resp, "Retry-After", "3600");
    mcpauth__as_oauth_error(resp, allowed < 0 ? 500 : 429,
                            allowed < 0 ? "server_error" : "temporarily_unavailable",
                            "too many registrations from this address; try again later");
    return 0;
}

/* The client information response (RFC 7591 §3.2.1); secret NULL for a
 * public client. */
static json_object *reg_reply(const char *id, time_t now, const char *secret,
                              const reg_request *r)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "client_id", json_object_new_string(id));
    json_object_object_add(o, "client_id_issued_at", json_object_new_int64(now));
    if (secret) {
        json_object_object_add(o, "client_secret", json_object_new_string(secret));
        json_object_object_add(o, "client_secret_expires_at", json_object_new_int64(0));
    }
    if (r->name)
        json_object_object_add(o, "client_name", json_object_new_string(r->name));
    json_object_object_add(o, "redirect_uris", json_object_get(r->uris));
    json_object *ga = json_object_new_array();
    mcpauth_strlist gl = {0, NULL};
    mcpauth_strlist_split(&gl, r->grants);
    for (size_t i = 0; i < gl.n; i++)
        json_object_array_add(ga, json_object_new_string(gl.v[i]));
    mcpauth_strlist_free(&gl);
    json_object_object_add(o, "grant_types", ga);
    json_object *rt = json_object_new_array();
    json_object_array_add(rt, json_object_new_string("code"));
    json_object_object_add(o, "response_types", rt);
    json_object_object_add(o, "token_endpoint_auth_method", json_object_new_string(r->method));
    return o;
}

static void register_client(mcpauth_as *as, const mcpauth_request *req, mcpauth_response *resp,
                            reg_request *r)
{
    char id[48], secret[64];
    int confidential = strcmp(r->method, "none") != 0;
    if (mcpauth__as_random(id, sizeof id, 18) < 0 ||
        mcpauth__as_random(secret, sizeof secret, 32) < 0) {
        mcpauth__as_oauth_error(resp, 500, "server_error", NULL);
        return;
    }
    time_t now = mcpauth__now();
    char *uris_text = mcpauth__check(
        (void *)json_object_to_json_string_ext(r->uris, JSON_C_TO_STRING_PLAIN |
                                                            JSON_C_TO_STRING_NOSLASHESCAPE),
        "json_object_to_json_string_ext");
    mcpauth_client c = {id,          (char *)r->name, uris_text, r->grants, (char *)r->method,
                        NULL,        "dcr",           (char *)req->remote_addr, now, 0};
    if (mcpauth__store_client_add(as->store, &c, confidential ? secret : NULL) < 0) {
        OPENSSL_cleanse(secret, sizeof secret);
        if (!mcpauth__as_store_unavailable(resp, "registering a client"))
            mcpauth__as_oauth_error(resp, 500, "server_error", "could not store the client");
        return;
    }
    json_object *o = reg_reply(id, now, confidential ? secret : NULL, r);
    OPENSSL_cleanse(secret, sizeof secret);
    mcpauth_log(MCPAUTH_LOG_INFO, "client_registered", "client_id", id, "client",
                req->remote_addr, NULL);
    mcpauth__metrics_add(NULL, MCPAUTH_M_AS_REGISTRATIONS, 1);
    mcpauth__as_cors_public(resp);
    mcpauth__as_json_reply(resp, 201, o);
}

void mcpauth__as_register(mcpauth_as *as, const mcpauth_request *req, mcpauth_response *resp)
{
    if (!as->ac->registration) {
        mcpauth__as_cors_public(resp);
        mcpauth__as_oauth_error(resp, 403, "access_denied",
                                "dynamic client registration is disabled");
        return;
    }
    json_object *m = read_metadata(req, resp);
    if (!m)
        return;
    reg_request r;
    memset(&r, 0, sizeof r);
    const char *fail = check_metadata(m, &r);
    if (fail) {
        mcpauth_log(MCPAUTH_LOG_INFO, "registration_refused", "reason", fail, "client",
                    req->remote_addr, NULL);
        reg_error(resp, r.ferr, fail);
    } else if (registration_allowed(as, req, resp)) {
        register_client(as, req, resp, &r);
    }
    json_object_put(m);
}
