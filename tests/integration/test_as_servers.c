/* The whole flow on real lighttpd and real Apache, as an MCP client that
 * knows only the MCP URL would run it: 401 → protected resource metadata
 * → AS metadata → dynamic registration → authorize (the web server's Basic
 * login, then consent) → token with PKCE and resource → MCP calls through
 * mcpauth-proxy → refresh (rotation, reuse refused) → revoke → refused. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>
#include <curl/curl.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "harness.h"

static const char conf[] =
    "runtime_dir = @DIR@\n"
    "log_level = info\n"
    "[resource files]\n"
    "uri = http://127.0.0.1:@PORT@/mcp/files\n"
    "resource_name = Example files\n"
    "authorization_servers = http://127.0.0.1:@PORT@\n"
    "scopes_supported = files:read files:write\n"
    "scopes_required = files:read\n"
    "backend = http://127.0.0.1:@BACKEND@/mcp\n"
    "[authorization_server]\n"
    "issuer = http://127.0.0.1:@PORT@\n"
    "state_dir = @DIR@/state\n"
    "refresh_grace = 0\n"
    "introspection_client_id = gate\n"
    "introspection_client_secret = gate-secret\n";

static const char lighttpd_extra[] =
    "var.mcpauth_proxy_prefix = \"/mcp\"\n"
    "include \"@SRCDIR@/lighttpd/mcpauth-proxy.conf\"\n"
    "var.mcpauth_as_prefix = \"/oauth2\"\n"
    "var.mcpauth_htpasswd = \"@DIR@/htpasswd\"\n"
    "include \"@SRCDIR@/lighttpd/mcpauth-as.conf\"\n";

static const char apache_extra[] =
    "LoadModule auth_basic_module @MODDIR@/mod_auth_basic.so\n"
    "LoadModule authn_core_module @MODDIR@/mod_authn_core.so\n"
    "LoadModule authn_file_module @MODDIR@/mod_authn_file.so\n"
    "LoadModule authz_user_module @MODDIR@/mod_authz_user.so\n"
    "Define MCPAUTH_PROXY_LOCATION /mcp\n"
    "Include \"@SRCDIR@/apache/mcpauth-proxy.conf\"\n"
    "Define MCPAUTH_AS_LOCATION /oauth2\n"
    "Define MCPAUTH_HTPASSWD @DIR@/htpasswd\n"
    "Include \"@SRCDIR@/apache/mcpauth-as.conf\"\n";

static th_server srv;
static pid_t backend_pid = -1;
static int backend_port;
static char backend_dir[] = "/tmp/mcpauth-asbackend-XXXXXX";
static th_kind current;

static int prepare(th_server *s)
{
    char cmd[2048];
    /* `mcpauth init`, as an admin would, owned by the server's user */
    snprintf(cmd, sizeof cmd, "%s/tools/mcpauth --config %s/mcpauth.conf init %s >%s/init.log 2>&1",
             th_builddir(), s->dir,
             current == TH_APACHE && geteuid() == 0 ? "--owner www-data" : "", s->dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "mcpauth init failed: see %s/init.log\n", s->dir);
        return -1;
    }
    /* the demo user, as the site's Basic login knows it */
    snprintf(cmd, sizeof cmd,
             "printf 'alice:%%s\\n' \"$(openssl passwd -apr1 -salt mcpauth1 wonderland)\" "
             "> %s/htpasswd && chmod 644 %s/htpasswd", s->dir, s->dir);
    if (system(cmd) != 0)
        return -1;
    return th_give_to_apache(s);
}

static void start(th_kind kind)
{
    current = kind;
    backend_pid = th_start_example_server(backend_dir, &backend_port);
    if (backend_pid < 0)
        exit(EXIT_FAILURE);
    char bp[16];
    snprintf(bp, sizeof bp, "%d", backend_port);
    char *c = strdup(conf), *at;
    while ((at = strstr(c, "@BACKEND@")) != NULL) {
        char *n = NULL;
        if (asprintf(&n, "%.*s%s%s", (int)(at - c), c, bp, at + 9) < 0)
            exit(EXIT_FAILURE);
        free(c);
        c = n;
    }
    th_options o = {c, kind == TH_LIGHTTPD ? lighttpd_extra : apache_extra, NULL, prepare};
    int rc = th_start_ex(&srv, kind, &o);
    free(c);
    if (rc != 0) {
        th_kill(backend_pid);
        exit(EXIT_FAILURE);
    }
}
static void start_lighttpd(void) { start(TH_LIGHTTPD); }
static void start_apache(void) { start(TH_APACHE); }
static void stop(void)
{
    th_stop(&srv);
    th_kill(backend_pid);
    backend_pid = -1;
}

/* ------------------------------------------------------------- helpers */

static json_object *field(json_object *o, const char *k)
{
    json_object *v = NULL;
    ck_assert_msg(json_object_object_get_ex(o, k, &v), "no %s in %s", k,
                  json_object_to_json_string(o));
    return v;
}

static const char *str(json_object *o, const char *k)
{
    return json_object_get_string(field(o, k));
}

static json_object *get_json(const char *url, long want)
{
    th_resp r;
    ck_assert_int_eq(th_http("GET", url, NULL, NULL, &r), 0);
    ck_assert_msg(r.status == want, "GET %s: %ld %s", url, r.status, r.body);
    json_object *o = json_tokener_parse(r.body);
    ck_assert_msg(o != NULL, "not JSON: %s", r.body);
    th_resp_free(&r);
    return o;
}

static char *enc(const char *s)
{
    char *e = curl_easy_escape(NULL, s, 0);
    char *copy = strdup(e);
    curl_free(e);
    return copy;
}

static void b64url(const unsigned char *in, size_t n, char *out)
{
    int l = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    while (l > 0 && out[l - 1] == '=')
        l--;
    out[l] = '\0';
    for (int i = 0; i < l; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
}

/* value="..." of a hidden input, html-unescaped */
static char *hidden(const char *page, const char *name)
{
    char key[128];
    snprintf(key, sizeof key, "name=\"%s\" value=\"", name);
    const char *p = strstr(page, key);
    ck_assert_msg(p != NULL, "no hidden %s in the consent page", name);
    p += strlen(key);
    const char *e = strchr(p, '"');
    char *out = malloc((size_t)(e - p) + 1), *o = out;
    while (p < e) {
        if (!strncmp(p, "&amp;", 5)) { *o++ = '&'; p += 5; }
        else if (!strncmp(p, "&lt;", 4)) { *o++ = '<'; p += 4; }
        else if (!strncmp(p, "&gt;", 4)) { *o++ = '>'; p += 4; }
        else if (!strncmp(p, "&quot;", 6)) { *o++ = '"'; p += 6; }
        else if (!strncmp(p, "&#39;", 5)) { *o++ = '\''; p += 5; }
        else *o++ = *p++;
    }
    *o = '\0';
    return out;
}

static int mcp_call(const char *token, const char *body, const char *session, th_resp *r)
{
    char url[256], h1[8192], h2[300];
    snprintf(url, sizeof url, "%s/mcp/files", srv.base);
    snprintf(h1, sizeof h1, "Authorization: Bearer %s", token);
    snprintf(h2, sizeof h2, "Mcp-Session-Id: %s", session ? session : "");
    const char *h[] = {h1, "Content-Type: application/json",
                       "Accept: application/json, text/event-stream",
                       "MCP-Protocol-Version: 2025-06-18", session ? h2 : NULL, NULL};
    return th_http("POST", url, h, body, r);
}

static json_object *token_post(const char *form, long want)
{
    char url[256];
    snprintf(url, sizeof url, "%s/oauth2/token", srv.base);
    const char *h[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    th_resp r;
    ck_assert_int_eq(th_http("POST", url, h, form, &r), 0);
    ck_assert_msg(r.status == want, "token: %ld %s", r.status, r.body);
    ck_assert_str_eq(th_hdr(&r, "Cache-Control"), "no-store");
    json_object *o = json_tokener_parse(r.body);
    ck_assert_ptr_nonnull(o);
    th_resp_free(&r);
    return o;
}

/* ---------------------------------------------------------------- flow */

START_TEST(full_flow)
{
    char url[1024];
    th_resp r;
    /* 1. the MCP URL answers 401 and names its metadata */
    snprintf(url, sizeof url, "%s/mcp/files", srv.base);
    const char *h0[] = {"Content-Type: application/json", "Accept: application/json, text/event-stream", NULL};
    ck_assert_int_eq(th_http("POST", url, h0, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}", &r), 0);
    ck_assert_int_eq(r.status, 401);
    const char *www = th_hdr(&r, "WWW-Authenticate");
    ck_assert_ptr_nonnull(www);
    char prm_url[512];
    const char *rm = strstr(www, "resource_metadata=\"");
    ck_assert_ptr_nonnull(rm);
    snprintf(prm_url, sizeof prm_url, "%.*s", (int)strcspn(rm + 19, "\""), rm + 19);
    th_resp_free(&r);

    /* 2. protected resource metadata → the AS */
    json_object *prm = get_json(prm_url, 200);
    char resource[256];
    snprintf(resource, sizeof resource, "%s", str(prm, "resource"));
    ck_assert_str_eq(resource, url);
    const char *issuer = json_object_get_string(json_object_array_get_idx(field(prm, "authorization_servers"), 0));
    ck_assert_str_eq(issuer, srv.base);

    /* 3. AS metadata (RFC 8414), issuer byte-identical */
    snprintf(url, sizeof url, "%s/.well-known/oauth-authorization-server", srv.base);
    json_object *asm_ = get_json(url, 200);
    ck_assert_str_eq(str(asm_, "issuer"), issuer);
    ck_assert_str_eq(json_object_get_string(json_object_array_get_idx(
                         field(asm_, "code_challenge_methods_supported"), 0)), "S256");
    ck_assert(json_object_get_boolean(field(asm_, "authorization_response_iss_parameter_supported")));
    /* also at the OpenID location */
    snprintf(url, sizeof url, "%s/.well-known/openid-configuration", srv.base);
    json_object *oidc = get_json(url, 200);
    ck_assert_str_eq(str(oidc, "issuer"), issuer);
    json_object_put(oidc);
    char reg_ep[256], authz_ep[256], token_ep[256], revoke_ep[256], intro_ep[256];
    snprintf(reg_ep, sizeof reg_ep, "%s", str(asm_, "registration_endpoint"));
    snprintf(authz_ep, sizeof authz_ep, "%s", str(asm_, "authorization_endpoint"));
    snprintf(token_ep, sizeof token_ep, "%s", str(asm_, "token_endpoint"));
    snprintf(revoke_ep, sizeof revoke_ep, "%s", str(asm_, "revocation_endpoint"));
    snprintf(intro_ep, sizeof intro_ep, "%s", str(asm_, "introspection_endpoint"));

    /* 4. dynamic registration (public client, loopback redirect) */
    const char *hj[] = {"Content-Type: application/json", NULL};
    ck_assert_int_eq(th_http("POST", reg_ep, hj,
                             "{\"client_name\":\"Integration client\",\"redirect_uris\":"
                             "[\"http://127.0.0.1/callback\"],\"token_endpoint_auth_method\":\"none\","
                             "\"grant_types\":[\"authorization_code\",\"refresh_token\"]}", &r), 0);
    ck_assert_msg(r.status == 201, "register: %ld %s", r.status, r.body);
    json_object *reg = json_tokener_parse(r.body);
    char client_id[128];
    snprintf(client_id, sizeof client_id, "%s", str(reg, "client_id"));
    json_object *sec;
    ck_assert(!json_object_object_get_ex(reg, "client_secret", &sec));
    th_resp_free(&r);

    /* 5. authorize: PKCE S256 + resource; the web server asks for a login */
    const char *verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-longer-verifier";
    unsigned char md[32];
    char challenge[64];
    SHA256((const unsigned char *)verifier, strlen(verifier), md);
    b64url(md, 32, challenge);
    char *e_res = enc(resource), *e_cid = enc(client_id);
    char *e_redir = enc("http://127.0.0.1:45678/callback"); /* any port on loopback */
    snprintf(url, sizeof url,
             "%s?response_type=code&client_id=%s&redirect_uri=%s&code_challenge=%s"
             "&code_challenge_method=S256&resource=%s&scope=files%%3Aread&state=st8",
             authz_ep, e_cid, e_redir, challenge, e_res);
    ck_assert_int_eq(th_http("GET", url, NULL, NULL, &r), 0);
    ck_assert_int_eq(r.status, 401); /* Basic login first */
    th_resp_free(&r);
    const char *hb[] = {"Authorization: Basic YWxpY2U6d29uZGVybGFuZA==", NULL}; /* alice:wonderland */
    ck_assert_int_eq(th_http("GET", url, hb, NULL, &r), 0);
    ck_assert_msg(r.status == 200, "consent: %ld %s", r.status, r.body);
    ck_assert_ptr_nonnull(strstr(th_hdr(&r, "Content-Security-Policy"), "frame-ancestors 'none'"));
    ck_assert_ptr_nonnull(strstr(r.body, "Integration client"));
    ck_assert_ptr_nonnull(strstr(r.body, "files:read"));
    char *form = NULL;
    {
        static const char *const names[] = {"response_type", "client_id", "redirect_uri", "scope",
                                            "state", "code_challenge", "code_challenge_method",
                                            "resource", "ts", "nonce", "csrf", NULL};
        size_t len = 0;
        FILE *m = open_memstream(&form, &len);
        for (int i = 0; names[i]; i++) {
            char *v = hidden(r.body, names[i]), *ev = enc(v);
            fprintf(m, "%s%s=%s", i ? "&" : "", names[i], ev);
            free(v);
            free(ev);
        }
        fputs("&decision=approve&remember=1", m);
        fclose(m);
    }
    th_resp_free(&r);
    /* a forged CSRF token is refused */
    char *forged = strdup(form);
    char *cs = strstr(forged, "csrf=");
    cs[5] = cs[5] == 'A' ? 'B' : 'A';
    const char *hf[] = {"Authorization: Basic YWxpY2U6d29uZGVybGFuZA==",
                        "Content-Type: application/x-www-form-urlencoded", NULL};
    ck_assert_int_eq(th_http("POST", authz_ep, hf, forged, &r), 0);
    ck_assert_int_eq(r.status, 403);
    th_resp_free(&r);
    free(forged);
    ck_assert_int_eq(th_http("POST", authz_ep, hf, form, &r), 0);
    ck_assert_msg(r.status == 302, "approve: %ld %s", r.status, r.body);
    const char *loc = th_hdr(&r, "Location");
    ck_assert_msg(strncmp(loc, "http://127.0.0.1:45678/callback?code=", 37) == 0, "Location %s", loc);
    ck_assert_ptr_nonnull(strstr(loc, "&state=st8"));
    char want_iss[256];
    char *e_iss = enc(issuer);
    snprintf(want_iss, sizeof want_iss, "&iss=%s", e_iss);
    free(e_iss);
    ck_assert_ptr_nonnull(strstr(loc, want_iss));
    char code[128];
    snprintf(code, sizeof code, "%.*s", (int)strcspn(loc + 37, "&"), loc + 37);
    th_resp_free(&r);
    /* the same approved form again: no second code (single use) */
    ck_assert_int_eq(th_http("POST", authz_ep, hf, form, &r), 0);
    ck_assert_msg(r.status == 400, "replayed consent: %ld", r.status);
    ck_assert_ptr_null(th_hdr(&r, "Location"));
    th_resp_free(&r);
    free(form);

    /* 6. token: code + verifier + resource; a wrong verifier fails first */
    char tform[2048];
    snprintf(tform, sizeof tform,
             "grant_type=authorization_code&code=%s&code_verifier=%s-wrong&redirect_uri=%s"
             "&client_id=%s&resource=%s", code, verifier, e_redir, e_cid, e_res);
    json_object *bad = token_post(tform, 400);
    ck_assert_str_eq(str(bad, "error"), "invalid_grant");
    json_object_put(bad);
    /* the code was consumed by that attempt: the flow starts over in a real
     * client; here a fresh authorization (consent remembered: no page) */
    snprintf(url, sizeof url,
             "%s?response_type=code&client_id=%s&redirect_uri=%s&code_challenge=%s"
             "&code_challenge_method=S256&resource=%s&scope=files%%3Aread&state=st9",
             authz_ep, e_cid, e_redir, challenge, e_res);
    ck_assert_int_eq(th_http("GET", url, hb, NULL, &r), 0);
    ck_assert_msg(r.status == 302, "remembered consent: %ld", r.status);
    loc = th_hdr(&r, "Location");
    snprintf(code, sizeof code, "%.*s", (int)strcspn(loc + 37, "&"), loc + 37);
    th_resp_free(&r);
    snprintf(tform, sizeof tform,
             "grant_type=authorization_code&code=%s&code_verifier=%s&redirect_uri=%s"
             "&client_id=%s&resource=%s", code, verifier, e_redir, e_cid, e_res);
    json_object *tok = token_post(tform, 200);
    ck_assert_str_eq(str(tok, "token_type"), "Bearer");
    char access[4096], refresh[256];
    snprintf(access, sizeof access, "%s", str(tok, "access_token"));
    snprintf(refresh, sizeof refresh, "%s", str(tok, "refresh_token"));
    json_object_put(tok);
    /* replaying the code now fails */
    json_object *rep = token_post(tform, 400);
    ck_assert_str_eq(str(rep, "error"), "invalid_grant");
    json_object_put(rep);
    /* ... and revoked what it had issued: that refresh token is dead */
    char rform[1024];
    snprintf(rform, sizeof rform, "grant_type=refresh_token&refresh_token=%s&client_id=%s", refresh,
             e_cid);
    json_object *dead = token_post(rform, 400);
    json_object_put(dead);

    /* a clean grant for the rest of the flow */
    snprintf(url, sizeof url,
             "%s?response_type=code&client_id=%s&redirect_uri=%s&code_challenge=%s"
             "&code_challenge_method=S256&resource=%s&scope=files%%3Aread&state=s10",
             authz_ep, e_cid, e_redir, challenge, e_res);
    ck_assert_int_eq(th_http("GET", url, hb, NULL, &r), 0);
    loc = th_hdr(&r, "Location");
    snprintf(code, sizeof code, "%.*s", (int)strcspn(loc + 37, "&"), loc + 37);
    th_resp_free(&r);
    snprintf(tform, sizeof tform,
             "grant_type=authorization_code&code=%s&code_verifier=%s&redirect_uri=%s"
             "&client_id=%s&resource=%s", code, verifier, e_redir, e_cid, e_res);
    tok = token_post(tform, 200);
    snprintf(access, sizeof access, "%s", str(tok, "access_token"));
    snprintf(refresh, sizeof refresh, "%s", str(tok, "refresh_token"));
    json_object_put(tok);

    /* 7. the MCP server through the proxy, with the token */
    ck_assert_int_eq(mcp_call(access, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":"
                                      "{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},"
                                      "\"clientInfo\":{\"name\":\"t\",\"version\":\"1\"}}}", NULL, &r), 0);
    ck_assert_msg(r.status == 200, "initialize: %ld %s", r.status, r.body);
    char session[128];
    snprintf(session, sizeof session, "%s", th_hdr(&r, "Mcp-Session-Id"));
    th_resp_free(&r);
    ck_assert_int_eq(mcp_call(access, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":"
                                      "{\"name\":\"whoami\",\"arguments\":{}}}", session, &r), 0);
    ck_assert_msg(r.status == 200, "whoami: %ld %s", r.status, r.body);
    ck_assert_ptr_nonnull(strstr(r.body, "alice"));
    ck_assert_ptr_nonnull(strstr(r.body, client_id));
    ck_assert_ptr_null(strstr(r.body, access));
    th_resp_free(&r);

    /* 8. refresh rotates; the old refresh token is then refused */
    snprintf(rform, sizeof rform, "grant_type=refresh_token&refresh_token=%s&client_id=%s&resource=%s",
             refresh, e_cid, e_res);
    tok = token_post(rform, 200);
    char refresh2[256], access2[4096];
    snprintf(refresh2, sizeof refresh2, "%s", str(tok, "refresh_token"));
    snprintf(access2, sizeof access2, "%s", str(tok, "access_token"));
    ck_assert_str_ne(refresh2, refresh);
    json_object_put(tok);
    sleep(1); /* refresh_grace = 0 */
    json_object *reuse = token_post(rform, 400);
    ck_assert_str_eq(str(reuse, "error"), "invalid_grant");
    json_object_put(reuse);
    /* reuse revoked the family: the rotated token is dead too */
    snprintf(rform, sizeof rform, "grant_type=refresh_token&refresh_token=%s&client_id=%s", refresh2,
             e_cid);
    json_object *fam = token_post(rform, 400);
    json_object_put(fam);

    /* ... and the proxy refuses its access tokens at once (revocation list) */
    ck_assert_int_eq(mcp_call(access2, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\"}",
                              session, &r), 0);
    ck_assert_msg(r.status == 401, "revoked grant through the proxy: %ld %s", r.status, r.body);
    ck_assert_ptr_nonnull(strstr(th_hdr(&r, "WWW-Authenticate"), "invalid_token"));
    th_resp_free(&r);

    /* 9. introspection (the gate's credentials) reports that grant inactive */
    const char *hi[] = {"Authorization: Basic Z2F0ZTpnYXRlLXNlY3JldA==", /* gate:gate-secret */
                        "Content-Type: application/x-www-form-urlencoded", NULL};
    char iform[4200];
    snprintf(iform, sizeof iform, "token=%s", access2);
    ck_assert_int_eq(th_http("POST", intro_ep, hi, iform, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"active\":false"));
    th_resp_free(&r);

    /* 10. revoke a fresh grant's refresh token → refresh refused */
    snprintf(url, sizeof url,
             "%s?response_type=code&client_id=%s&redirect_uri=%s&code_challenge=%s"
             "&code_challenge_method=S256&resource=%s&scope=files%%3Aread&state=s11",
             authz_ep, e_cid, e_redir, challenge, e_res);
    ck_assert_int_eq(th_http("GET", url, hb, NULL, &r), 0);
    loc = th_hdr(&r, "Location");
    snprintf(code, sizeof code, "%.*s", (int)strcspn(loc + 37, "&"), loc + 37);
    th_resp_free(&r);
    snprintf(tform, sizeof tform,
             "grant_type=authorization_code&code=%s&code_verifier=%s&redirect_uri=%s"
             "&client_id=%s&resource=%s", code, verifier, e_redir, e_cid, e_res);
    tok = token_post(tform, 200);
    snprintf(refresh, sizeof refresh, "%s", str(tok, "refresh_token"));
    snprintf(access, sizeof access, "%s", str(tok, "access_token"));
    json_object_put(tok);
    snprintf(iform, sizeof iform, "token=%s", access);
    ck_assert_int_eq(th_http("POST", intro_ep, hi, iform, &r), 0);
    ck_assert_ptr_nonnull(strstr(r.body, "\"active\":true"));
    th_resp_free(&r);
    char vform[512];
    snprintf(vform, sizeof vform, "token=%s&client_id=%s", refresh, e_cid);
    const char *hv[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    ck_assert_int_eq(th_http("POST", revoke_ep, hv, vform, &r), 0);
    ck_assert_int_eq(r.status, 200);
    th_resp_free(&r);
    snprintf(rform, sizeof rform, "grant_type=refresh_token&refresh_token=%s&client_id=%s", refresh,
             e_cid);
    json_object *gone = token_post(rform, 400);
    ck_assert_str_eq(str(gone, "error"), "invalid_grant");
    json_object_put(gone);
    ck_assert_int_eq(th_http("POST", intro_ep, hi, iform, &r), 0);
    ck_assert_ptr_nonnull(strstr(r.body, "\"active\":false"));
    th_resp_free(&r);

    free(e_res);
    free(e_cid);
    free(e_redir);
    json_object_put(reg);
    json_object_put(asm_);
    json_object_put(prm);
}
END_TEST


/* Registration, login, consent and code exchange: a fresh grant's tokens. */
static void fresh_grant(char *access, size_t acap, char *refresh, size_t rcap, char *client_id,
                        size_t ccap)
{
    char url[2048], reg_ep[256], authz_ep[256], token_ep[256];
    snprintf(reg_ep, sizeof reg_ep, "%s/oauth2/register", srv.base);
    snprintf(authz_ep, sizeof authz_ep, "%s/oauth2/authorize", srv.base);
    snprintf(token_ep, sizeof token_ep, "%s/oauth2/token", srv.base);
    th_resp r;
    const char *hj[] = {"Content-Type: application/json", NULL};
    ck_assert_int_eq(th_http("POST", reg_ep, hj,
                             "{\"client_name\":\"Revocation client\",\"redirect_uris\":"
                             "[\"http://127.0.0.1/callback\"],\"token_endpoint_auth_method\":\"none\","
                             "\"grant_types\":[\"authorization_code\",\"refresh_token\"]}", &r), 0);
    ck_assert_msg(r.status == 201, "register: %ld %s", r.status, r.body);
    json_object *reg = json_tokener_parse(r.body);
    snprintf(client_id, ccap, "%s", str(reg, "client_id"));
    json_object_put(reg);
    th_resp_free(&r);
    const char *verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-revocation";
    unsigned char md[32];
    char challenge[64], resource[256];
    SHA256((const unsigned char *)verifier, strlen(verifier), md);
    b64url(md, 32, challenge);
    snprintf(resource, sizeof resource, "%s/mcp/files", srv.base);
    char *e_res = enc(resource), *e_cid = enc(client_id), *e_redir = enc("http://127.0.0.1:45679/callback");
    snprintf(url, sizeof url,
             "%s?response_type=code&client_id=%s&redirect_uri=%s&code_challenge=%s"
             "&code_challenge_method=S256&resource=%s&scope=files%%3Aread&state=rv",
             authz_ep, e_cid, e_redir, challenge, e_res);
    const char *hb[] = {"Authorization: Basic YWxpY2U6d29uZGVybGFuZA==", NULL};
    ck_assert_int_eq(th_http("GET", url, hb, NULL, &r), 0);
    ck_assert_msg(r.status == 200, "consent: %ld", r.status);
    static const char *const names[] = {"response_type", "client_id", "redirect_uri", "scope",
                                        "state", "code_challenge", "code_challenge_method",
                                        "resource", "ts", "nonce", "csrf", NULL};
    char *form = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&form, &len);
    for (int i = 0; names[i]; i++) {
        char *v = hidden(r.body, names[i]), *ev = enc(v);
        fprintf(m, "%s%s=%s", i ? "&" : "", names[i], ev);
        free(v);
        free(ev);
    }
    fputs("&decision=approve", m);
    fclose(m);
    th_resp_free(&r);
    const char *hf[] = {"Authorization: Basic YWxpY2U6d29uZGVybGFuZA==",
                        "Content-Type: application/x-www-form-urlencoded", NULL};
    ck_assert_int_eq(th_http("POST", authz_ep, hf, form, &r), 0);
    ck_assert_msg(r.status == 302, "approve: %ld %s", r.status, r.body);
    free(form);
    const char *loc = th_hdr(&r, "Location");
    char code[128];
    snprintf(code, sizeof code, "%.*s", (int)strcspn(loc + 37, "&"), loc + 37);
    th_resp_free(&r);
    char tform[2048];
    snprintf(tform, sizeof tform,
             "grant_type=authorization_code&code=%s&code_verifier=%s&redirect_uri=%s"
             "&client_id=%s&resource=%s", code, verifier, e_redir, e_cid, e_res);
    json_object *tok = token_post(tform, 200);
    snprintf(access, acap, "%s", str(tok, "access_token"));
    snprintf(refresh, rcap, "%s", str(tok, "refresh_token"));
    json_object_put(tok);
    free(e_res);
    free(e_cid);
    free(e_redir);
}

static void revoke_at_as(const char *client_id, const char *token)
{
    char url[256], form[4300];
    snprintf(url, sizeof url, "%s/oauth2/revoke", srv.base);
    char *et = enc(token), *ec = enc(client_id);
    snprintf(form, sizeof form, "token=%s&client_id=%s", et, ec);
    free(et);
    free(ec);
    const char *h[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    th_resp r;
    ck_assert_int_eq(th_http("POST", url, h, form, &r), 0);
    ck_assert_int_eq(r.status, 200);
    th_resp_free(&r);
}

static const char init_body[] =
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":"
    "\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{\"name\":\"t\",\"version\":\"1\"}}}";

/* The proxy status for token until it is want, for at most 1 s. */
static long proxy_status_within_1s(const char *token, long want, th_resp *r)
{
    double start = th_now();
    for (;;) {
        ck_assert_int_eq(mcp_call(token, init_body, NULL, r), 0);
        double took = th_now() - start;
        if (r->status == want || took > 1.0)
            return r->status;
        th_resp_free(r);
        usleep(50000);
    }
}

/* Issue 10: a revocation at the built-in AS reaches mcpauth-proxy at once
 * (the shared revocation list), not when the token expires: an access
 * token revoked itself, and one whose grant's refresh token is revoked. */
START_TEST(revocation_reaches_proxy)
{
    char access[4096], refresh[256], client_id[128];
    th_resp r;
    fresh_grant(access, sizeof access, refresh, sizeof refresh, client_id, sizeof client_id);
    ck_assert_int_eq(mcp_call(access, init_body, NULL, &r), 0);
    ck_assert_msg(r.status == 200, "before revocation: %ld %s", r.status, r.body);
    th_resp_free(&r);
    ck_assert_int_eq(mcp_call(access, init_body, NULL, &r), 0); /* now cached as valid */
    ck_assert_int_eq(r.status, 200);
    th_resp_free(&r);
    revoke_at_as(client_id, access);
    ck_assert_msg(proxy_status_within_1s(access, 401, &r) == 401, "after revocation: %ld %s",
                  r.status, r.body);
    ck_assert_ptr_nonnull(strstr(th_hdr(&r, "WWW-Authenticate"), "error=\"invalid_token\""));
    ck_assert_ptr_nonnull(strstr(th_hdr(&r, "WWW-Authenticate"), "revoked"));
    th_resp_free(&r);

    /* the refresh token: the access tokens of its grant go too */
    fresh_grant(access, sizeof access, refresh, sizeof refresh, client_id, sizeof client_id);
    ck_assert_int_eq(mcp_call(access, init_body, NULL, &r), 0);
    ck_assert_int_eq(r.status, 200);
    th_resp_free(&r);
    revoke_at_as(client_id, refresh);
    ck_assert_msg(proxy_status_within_1s(access, 401, &r) == 401, "after refresh revocation: %ld",
                  r.status);
    ck_assert_ptr_nonnull(strstr(th_hdr(&r, "WWW-Authenticate"), "error=\"invalid_token\""));
    th_resp_free(&r);

    /* the admin tool: `mcpauth revoke --client` reaches the proxy too */
    fresh_grant(access, sizeof access, refresh, sizeof refresh, client_id, sizeof client_id);
    ck_assert_int_eq(mcp_call(access, init_body, NULL, &r), 0);
    ck_assert_int_eq(r.status, 200);
    th_resp_free(&r);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s/tools/mcpauth --config %s/mcpauth.conf revoke --client '%s' "
             ">>%s/revoke.log 2>&1", th_builddir(), srv.dir, client_id, srv.dir);
    ck_assert_msg(system(cmd) == 0, "mcpauth revoke failed: see %s/revoke.log", srv.dir);
    ck_assert_msg(proxy_status_within_1s(access, 401, &r) == 401, "after mcpauth revoke: %ld",
                  r.status);
    th_resp_free(&r);

    /* a grant nobody revoked still works */
    fresh_grant(access, sizeof access, refresh, sizeof refresh, client_id, sizeof client_id);
    ck_assert_int_eq(mcp_call(access, init_body, NULL, &r), 0);
    ck_assert_int_eq(r.status, 200);
    th_resp_free(&r);
}
END_TEST

/* Tokens from the built-in AS are refused for a resource they were not
 * issued for, and a token of another issuer is refused by the proxy. */
START_TEST(jwks_served)
{
    char url[256];
    snprintf(url, sizeof url, "%s/oauth2/jwks", srv.base);
    json_object *j = get_json(url, 200);
    json_object *keys = field(j, "keys");
    ck_assert_int_ge(json_object_array_length(keys), 1);
    json_object *k = json_object_array_get_idx(keys, 0);
    ck_assert_str_eq(str(k, "kty"), "EC");
    ck_assert_str_eq(str(k, "alg"), "ES256");
    json_object *d;
    ck_assert(!json_object_object_get_ex(k, "d", &d)); /* never the private part */
    json_object_put(j);
}
END_TEST

static TCase *server_case(const char *name, void (*setup)(void))
{
    TCase *tc = tcase_create(name);
    tcase_add_unchecked_fixture(tc, setup, stop);
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, full_flow);
    tcase_add_test(tc, jwks_served);
    tcase_add_test(tc, revocation_reaches_proxy);
    return tc;
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (!mkdtemp(backend_dir))
        return EXIT_FAILURE;
    Suite *s = suite_create("as-servers");
    suite_add_tcase(s, server_case("lighttpd", start_lighttpd));
    suite_add_tcase(s, server_case("apache", start_apache));
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", backend_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup failed\n");
    curl_global_cleanup();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
