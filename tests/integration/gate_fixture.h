/* What check_gate (test_gate_servers.c) and check_apache_module
 * (test_apache_module.c) protect, in one place: the mcpauth.conf, the CGI
 * program that shows what reached the location, and Apache with this
 * build's mod_mcpauth as the gate.  String literals, so that a test can
 * append its own configuration. */
#ifndef MCPAUTH_TEST_GATE_FIXTURE_H
#define MCPAUTH_TEST_GATE_FIXTURE_H

/* An issuer whose JWKS endpoint is down from the start (port 9: nothing
 * listens, connections are refused). */
#define GATE_REMOTE_ISS "http://127.0.0.1:9"

#define GATE_CONF                                                                                  \
    "[resource files]\n"                                                                           \
    "uri = http://127.0.0.1:@PORT@/mcp/files\n"                                                    \
    "authorization_servers = http://127.0.0.1:@PORT@\n"                                            \
    "scopes_supported = files:read files:write\n"                                                  \
    "scopes_required = files:read\n"                                                               \
    "[resource github]\n"                                                                          \
    "uri = http://127.0.0.1:@PORT@/mcp/github\n"                                                   \
    "authorization_servers = http://127.0.0.1:@PORT@\n"                                            \
    "[issuer local]\n"                                                                             \
    "issuer = http://127.0.0.1:@PORT@\n"                                                           \
    "jwks_file = @DIR@/jwks.json\n"                                                                \
    "[resource remote]\n"                                                                          \
    "uri = http://127.0.0.1:@PORT@/mcp/remote\n"                                                   \
    "authorization_servers = " GATE_REMOTE_ISS "\n"                                                \
    "[issuer remote]\n"                                                                            \
    "issuer = " GATE_REMOTE_ISS "\n"                                                               \
    "jwks_uri = " GATE_REMOTE_ISS "/jwks\n"

/* htdocs/mcp/files/whoami.cgi: the identity the location received. */
#define GATE_WHOAMI_CGI                                                                            \
    "#!/bin/sh\n"                                                                                  \
    "printf 'Content-Type: text/plain\\r\\n\\r\\n'\n"                                              \
    "echo \"subject=$MCP_SUBJECT\"\n"                                                              \
    "echo \"client_id=$MCP_CLIENT_ID\"\n"                                                          \
    "echo \"scope=$MCP_SCOPE\"\n"                                                                  \
    "echo \"issuer=$MCP_ISSUER\"\n"                                                                \
    "echo \"resource=$MCP_RESOURCE\"\n"                                                            \
    "echo \"remote_user=$REMOTE_USER\"\n"                                                          \
    "echo \"authorization=${HTTP_AUTHORIZATION:+present}\"\n"

/* Apache's side shared by both gates: CGI for whoami.cgi (CGIPassAuth On
 * would hand the token to the program if the gate did not remove it), and
 * mod_headers showing the request environment on a static file. */
#define GATE_APACHE_COMMON                                                                         \
    "LoadModule authn_core_module @MODDIR@/mod_authn_core.so\n"                                    \
    "LoadModule authz_user_module @MODDIR@/mod_authz_user.so\n"                                    \
    "LoadModule headers_module @MODDIR@/mod_headers.so\n"                                          \
    "LoadModule cgid_module @MODDIR@/mod_cgid.so\n"                                                \
    "LoadModule mime_module @MODDIR@/mod_mime.so\n"                                                \
    "TypesConfig /dev/null\n"                                                                      \
    "ScriptSock @DIR@/cgid.sock\n"                                                                 \
    "<Directory \"@DIR@/htdocs/mcp/files\">\n"                                                     \
    "    Options +ExecCGI\n"                                                                       \
    "    AddHandler cgi-script .cgi\n"                                                             \
    "    CGIPassAuth On\n"                                                                         \
    "</Directory>\n"                                                                               \
    "<Location /mcp>\n"                                                                            \
    "    Header set X-Sub \"%{MCP_SUBJECT}e\"\n"                                                   \
    "    Header set X-Remote-User \"%{REMOTE_USER}e\"\n"                                           \
    "    Header set X-Authz \"[%{Authorization}i]\"\n"                                             \
    "</Location>\n"                                                                                \
    "Define MCPAUTH_GATE_LOCATION /mcp\n"

/* mod_mcpauth from this build, then the shipped snippet (built from
 * apache/mcpauth-module.conf.in; its LoadModule is skipped: the module is
 * loaded). */
#define GATE_APACHE_MODULE                                                                         \
    GATE_APACHE_COMMON                                                                             \
    "LoadModule mcpauth_module @BUILDDIR@/apache/.libs/mod_mcpauth.so\n"                           \
    "McpauthConfig @DIR@/mcpauth.conf\n"                                                           \
    "Include \"@BUILDDIR@/apache/mcpauth-module.conf\"\n"

/* Requests and the refusal's shape, for both programs; static inline so
 * that each uses what it needs.  Needs harness.h, check.h and json-c
 * included first, and _GNU_SOURCE (strcasestr). */

/* method on s->base + path with "Authorization: authz" (NULL: none) and,
 * with a body, Content-Type: application/json; fails the test when no
 * response came.  The caller frees r with th_resp_free. */
static inline void gate_request(const th_server *s, const char *method, const char *path,
                                const char *authz, const char *body, th_resp *r)
{
    char url[8192], h[16384];
    int len = snprintf(url, sizeof url, "%s%s", s->base, path);
    ck_assert_msg(len > 0 && (size_t)len < sizeof url, "path too long for the test");
    const char *hdrs[] = {NULL, NULL, NULL};
    int n = 0;
    if (authz) {
        len = snprintf(h, sizeof h, "Authorization: %s", authz);
        ck_assert_msg(len > 0 && (size_t)len < sizeof h, "Authorization too long for the test");
        hdrs[n++] = h;
    }
    if (body)
        hdrs[n++] = "Content-Type: application/json";
    ck_assert_msg(th_http(method, url, hdrs, body, r) == 0, "no response from %s %s", method, url);
}

/* The gate's refusal: status, the exact challenge ("Bearer " followed by
 * www_after_bearer; NULL: not looked at, for 404 and 503), a JSON body with
 * the error code, application/json, not cached, and none of the web
 * server's HTML page. */
static inline void gate_assert_challenge(const th_resp *r, long status,
                                         const char *www_after_bearer, const char *error)
{
    char buf[4096];
    ck_assert_msg(r->status == status, "status %ld, want %ld; body %s", r->status, status, r->body);
    if (www_after_bearer) {
        char want[2048];
        snprintf(want, sizeof want, "Bearer %s", www_after_bearer);
        const char *www = th_header(r, "WWW-Authenticate", buf, sizeof buf);
        ck_assert_msg(www != NULL, "no WWW-Authenticate in\n%s", r->headers);
        ck_assert_str_eq(www, want);
    }
    const char *ct = th_header(r, "Content-Type", buf, sizeof buf);
    ck_assert_msg(ct && strncmp(ct, "application/json", 16) == 0, "Content-Type %s", ct ? ct : "-");
    ck_assert_msg(strcasestr(r->body, "<html") == NULL, "an HTML page: %s", r->body);
    json_object *o = json_tokener_parse(r->body), *e;
    ck_assert_msg(o != NULL, "body not JSON: %s", r->body);
    ck_assert(json_object_object_get_ex(o, "error", &e));
    ck_assert_str_eq(json_object_get_string(e), error);
    json_object_put(o);
    const char *cc = th_header(r, "Cache-Control", buf, sizeof buf);
    ck_assert_msg(cc && strstr(cc, "no-store"), "Cache-Control %s", cc ? cc : "-");
}

#endif
