/* RFC 9728 documents and the metadata handler, driven in memory. */
#include <string.h>

#include <json-c/json.h>

#include <mcpauth/metadata.h>
#include <mcpauth/validate.h>

#include "memhttp.h"
#include "suites.h"

static const char conf_two[] =
    "metadata_max_age = 120\n"
    "[resource files]\n"
    "uri = https://mcp.example.com/mcp/files\n"
    "resource_name = Files\n"
    "authorization_servers = https://auth.example.com https://auth2.example.com/t/\n"
    "scopes_supported = files:read files:write\n"
    "resource_documentation = https://docs.example.com/files\n"
    "resource_policy_uri = https://example.com/policy\n"
    "resource_tos_uri = https://example.com/tos\n"
    "[resource github]\n"
    "uri = https://mcp.example.com/mcp/github\n"
    "authorization_servers = https://auth.example.com\n"
    "[resource other]\n"
    "uri = https://other.example.com/mcp/github\n"
    "authorization_servers = https://auth.example.com\n";

static mcpauth_config *cfg;
static mcpauth_metadata *md;

static void load(const char *text)
{
    char err[512] = "";
    cfg = mcpauth_config_parse(text, strlen(text), "t.conf", err, sizeof err);
    ck_assert_msg(cfg != NULL, "%s", err);
    md = mcpauth_metadata_new(cfg, err, sizeof err);
    ck_assert_msg(md != NULL, "%s", err);
}

static void unload(void)
{
    mcpauth_metadata_free(md);
    mcpauth_config_free(cfg);
    md = NULL;
    cfg = NULL;
}

static void setup_two(void)
{
    load(conf_two);
}

START_TEST(document_fields)
{
    const mcpauth_resource *r = mcpauth_config_resource_by_name(cfg, "files");
    const char *json = mcpauth_metadata_json(md, r);
    ck_assert_ptr_nonnull(json);
    /* byte-identical resource, no escaped slashes */
    ck_assert_ptr_nonnull(strstr(json, "\"resource\":\"https://mcp.example.com/mcp/files\""));
    json_object *o = json_tokener_parse(json), *v;
    ck_assert_ptr_nonnull(o);
    ck_assert(json_object_object_get_ex(o, "resource", &v));
    ck_assert_str_eq(json_object_get_string(v), "https://mcp.example.com/mcp/files");
    ck_assert(json_object_object_get_ex(o, "authorization_servers", &v));
    ck_assert_int_eq(json_object_array_length(v), 2);
    ck_assert_str_eq(json_object_get_string(json_object_array_get_idx(v, 1)),
                     "https://auth2.example.com/t/");
    ck_assert(json_object_object_get_ex(o, "scopes_supported", &v));
    ck_assert_int_eq(json_object_array_length(v), 2);
    ck_assert_str_eq(json_object_get_string(json_object_array_get_idx(v, 0)), "files:read");
    ck_assert(json_object_object_get_ex(o, "bearer_methods_supported", &v));
    ck_assert_int_eq(json_object_array_length(v), 1);
    ck_assert_str_eq(json_object_get_string(json_object_array_get_idx(v, 0)), "header");
    ck_assert(json_object_object_get_ex(o, "resource_name", &v));
    ck_assert_str_eq(json_object_get_string(v), "Files");
    ck_assert(json_object_object_get_ex(o, "resource_documentation", &v));
    ck_assert_str_eq(json_object_get_string(v), "https://docs.example.com/files");
    ck_assert(json_object_object_get_ex(o, "resource_policy_uri", &v));
    ck_assert(json_object_object_get_ex(o, "resource_tos_uri", &v));
    ck_assert_int_eq(json_object_object_length(o), 8);
    json_object_put(o);
}
END_TEST

START_TEST(document_minimal)
{
    const mcpauth_resource *r = mcpauth_config_resource_by_name(cfg, "github");
    json_object *o = json_tokener_parse(mcpauth_metadata_json(md, r)), *v;
    ck_assert_int_eq(json_object_object_length(o), 3); /* resource, AS, bearer methods */
    ck_assert(!json_object_object_get_ex(o, "scopes_supported", &v));
    ck_assert(!json_object_object_get_ex(o, "resource_name", &v));
    json_object_put(o);
}
END_TEST

START_TEST(lookup_paths)
{
    const mcpauth_resource *files = mcpauth_config_resource_by_name(cfg, "files");
    const mcpauth_resource *gh = mcpauth_config_resource_by_name(cfg, "github");
    const mcpauth_resource *other = mcpauth_config_resource_by_name(cfg, "other");
    ck_assert_ptr_eq(mcpauth_metadata_lookup(md, "/.well-known/oauth-protected-resource/mcp/files", NULL), files);
    ck_assert_ptr_null(mcpauth_metadata_lookup(md, "/.well-known/oauth-protected-resource/mcp/files/", NULL));
    ck_assert_ptr_null(mcpauth_metadata_lookup(md, "/.well-known/oauth-protected-resource/mcp", NULL));
    /* two hosts share /mcp/github: the Host header only picks among them */
    ck_assert_ptr_null(mcpauth_metadata_lookup(md, "/.well-known/oauth-protected-resource/mcp/github", NULL));
    ck_assert_ptr_eq(mcpauth_metadata_lookup(md, "/.well-known/oauth-protected-resource/mcp/github",
                                             "MCP.example.com"), gh);
    ck_assert_ptr_eq(mcpauth_metadata_lookup(md, "/.well-known/oauth-protected-resource/mcp/github",
                                             "other.example.com"), other);
    ck_assert_ptr_null(mcpauth_metadata_lookup(md, "/.well-known/oauth-protected-resource/mcp/github",
                                               "evil.example.com"));
    /* three resources and no default: no root document */
    ck_assert_ptr_null(mcpauth_metadata_lookup(md, "/.well-known/oauth-protected-resource", NULL));
}
END_TEST

static void request(const char *method, const char *uri, memhttp *m)
{
    const char *const params[] = {"REQUEST_METHOD", method, "REQUEST_URI", uri, "HTTP_HOST",
                                  "mcp.example.com", NULL};
    mcpauth_request req;
    mcpauth_response resp;
    memhttp_setup(m, params, &req, &resp);
    /* params live on this stack frame only until the handler returns */
    mcpauth_metadata_handle(md, &req, &resp);
    m->params = NULL;
}

START_TEST(handle_get)
{
    memhttp m;
    request("GET", "/.well-known/oauth-protected-resource/mcp/files?x=1", &m);
    ck_assert_ptr_nonnull(strstr(m.out, "Status: 200 OK\r\n"));
    ck_assert_ptr_nonnull(strstr(m.out, "Content-Type: application/json\r\n"));
    ck_assert_ptr_nonnull(strstr(m.out, "Cache-Control: public, max-age=120\r\n"));
    ck_assert_ptr_nonnull(strstr(m.out, "Access-Control-Allow-Origin: *\r\n"));
    ck_assert_str_eq(memhttp_body(&m),
                     mcpauth_metadata_json(md, mcpauth_config_resource_by_name(cfg, "files")));
}
END_TEST

START_TEST(handle_head_has_no_body)
{
    memhttp m;
    request("HEAD", "/.well-known/oauth-protected-resource/mcp/files", &m);
    ck_assert_ptr_nonnull(strstr(m.out, "Status: 200 OK\r\n"));
    ck_assert_ptr_nonnull(strstr(m.out, "Content-Length: "));
    ck_assert_str_eq(memhttp_body(&m), "");
}
END_TEST

START_TEST(handle_preflight)
{
    memhttp m;
    request("OPTIONS", "/.well-known/oauth-protected-resource/mcp/files", &m);
    ck_assert_ptr_nonnull(strstr(m.out, "Status: 204 No Content\r\n"));
    ck_assert_ptr_nonnull(strstr(m.out, "Access-Control-Allow-Origin: *\r\n"));
    ck_assert_ptr_nonnull(strstr(m.out, "Access-Control-Allow-Methods: GET, HEAD, OPTIONS\r\n"));
    ck_assert_ptr_nonnull(strstr(m.out,
        "Access-Control-Allow-Headers: Authorization, Content-Type, MCP-Protocol-Version, "
        "Mcp-Session-Id, Last-Event-ID, Mcp-Method, Mcp-Name\r\n"));
}
END_TEST

START_TEST(handle_not_found)
{
    memhttp m;
    request("GET", "/.well-known/oauth-protected-resource/nope", &m);
    ck_assert_ptr_nonnull(strstr(m.out, "Status: 404 Not Found\r\n"));
    json_object *o = json_tokener_parse(memhttp_body(&m)), *v;
    ck_assert_ptr_nonnull(o);
    ck_assert(json_object_object_get_ex(o, "error", &v));
    ck_assert_str_eq(json_object_get_string(v), "not_found");
    json_object_put(o);
}
END_TEST

START_TEST(handle_wrong_method)
{
    memhttp m;
    request("POST", "/.well-known/oauth-protected-resource/mcp/files", &m);
    ck_assert_ptr_nonnull(strstr(m.out, "Status: 405 Method Not Allowed\r\n"));
    ck_assert_ptr_nonnull(strstr(m.out, "Allow: GET, HEAD, OPTIONS\r\n"));
    ck_assert_ptr_nonnull(strstr(memhttp_body(&m), "\"error\":\"method_not_allowed\""));
}
END_TEST

START_TEST(root_form_single_resource)
{
    unload();
    load("[resource only]\nuri = https://h.example.com/mcp\nauthorization_servers = https://a.example.com\n");
    const mcpauth_resource *r = &cfg->resources[0];
    ck_assert_ptr_eq(mcpauth_metadata_lookup(md, "/.well-known/oauth-protected-resource", NULL), r);
    ck_assert_ptr_eq(mcpauth_metadata_lookup(md, "/.well-known/oauth-protected-resource/mcp", NULL), r);
}
END_TEST

START_TEST(root_form_default_resource)
{
    unload();
    load("default_resource = b\n"
         "[resource a]\nuri = https://h.example.com/a\nauthorization_servers = https://x.example.com\n"
         "[resource b]\nuri = https://h.example.com/b\nauthorization_servers = https://x.example.com\n");
    ck_assert_ptr_eq(mcpauth_metadata_lookup(md, "/.well-known/oauth-protected-resource", NULL),
                     mcpauth_config_resource_by_name(cfg, "b"));
}
END_TEST

/* A ~user site: the host's /.well-known/ is not the user's, so the
 * challenge names resource_metadata_url below the user's folder (RFC 9728
 * §5.1) and mcpauth-metadata serves the document there too. */
static const char conf_userdir[] =
    "[resource files]\n"
    "uri = https://host.example.com/~alice/mcp/files\n"
    "authorization_servers = https://host.example.com/~alice/mcp\n"
    "scopes_supported = files:read\n"
    "scopes_required = files:read\n"
    "resource_metadata_url = HTTPS://Host.Example.com:443/~alice/mcp/.well-known/"
    "oauth-protected-resource/files\n"
    "[resource plain]\n"
    "uri = https://host.example.com/~alice/mcp/plain\n"
    "authorization_servers = https://host.example.com/~alice/mcp\n"
    "[resource elsewhere]\n"
    "uri = https://mcp.example.org/tools\n"
    "authorization_servers = https://auth.example.com\n"
    "resource_metadata_url = https://static.example.net/prm/tools.json\n";

#define ALICE_PRM "https://host.example.com/~alice/mcp/.well-known/oauth-protected-resource/files"

static void request_on(const char *method, const char *uri, const char *host, memhttp *m)
{
    const char *const params[] = {"REQUEST_METHOD", method, "REQUEST_URI", uri, "HTTP_HOST",
                                  host, NULL};
    mcpauth_request req;
    mcpauth_response resp;
    memhttp_setup(m, params, &req, &resp);
    mcpauth_metadata_handle(md, &req, &resp);
    m->params = NULL;
}

START_TEST(custom_url_served)
{
    unload();
    load(conf_userdir);
    const mcpauth_resource *files = mcpauth_config_resource_by_name(cfg, "files");
    const mcpauth_resource *plain = mcpauth_config_resource_by_name(cfg, "plain");
    const mcpauth_resource *else_ = mcpauth_config_resource_by_name(cfg, "elsewhere");
    ck_assert_str_eq(files->metadata_url, ALICE_PRM);
    /* at the custom path, with its "resource" still the resource URI (§3.3) */
    memhttp m;
    request_on("GET", "/~alice/mcp/.well-known/oauth-protected-resource/files",
               "host.example.com", &m);
    ck_assert_ptr_nonnull(strstr(m.out, "Status: 200 OK\r\n"));
    ck_assert_ptr_nonnull(strstr(memhttp_body(&m),
                                 "\"resource\":\"https://host.example.com/~alice/mcp/files\""));
    ck_assert_str_eq(memhttp_body(&m), mcpauth_metadata_json(md, files));
    /* the client may have sent the tilde encoded: the path is decoded */
    request_on("GET", "/%7Ealice/mcp/.well-known/oauth-protected-resource/files",
               "host.example.com", &m);
    ck_assert_str_eq(memhttp_body(&m), mcpauth_metadata_json(md, files));
    /* the path-inserted form still works for clients that ignore the header */
    ck_assert_ptr_eq(mcpauth_metadata_lookup(
        md, "/.well-known/oauth-protected-resource/~alice/mcp/files", NULL), files);
    /* a resource without the key: only its path-inserted form */
    ck_assert_str_eq(plain->metadata_url,
                     "https://host.example.com/.well-known/oauth-protected-resource/~alice/mcp/plain");
    ck_assert_ptr_null(mcpauth_metadata_lookup(
        md, "/~alice/mcp/.well-known/oauth-protected-resource/plain", NULL));
    /* on another host: matched on that host's path, the Host header breaks ties */
    ck_assert_str_eq(else_->metadata_url_host, "static.example.net");
    ck_assert_ptr_eq(mcpauth_metadata_lookup(md, "/prm/tools.json", "static.example.net"), else_);
    request_on("GET", "/prm/tools.json", "static.example.net", &m);
    ck_assert_ptr_nonnull(strstr(memhttp_body(&m), "\"resource\":\"https://mcp.example.org/tools\""));
    /* nothing else below the folder */
    request_on("GET", "/~alice/mcp/.well-known/oauth-protected-resource/nope", "host.example.com",
               &m);
    ck_assert_ptr_nonnull(strstr(m.out, "Status: 404 Not Found\r\n"));
    ck_assert_ptr_null(mcpauth_metadata_lookup(md, "/~alice/mcp/files", NULL));
}
END_TEST

static void challenge(const mcpauth_resource *r, mcpauth_verdict v, memhttp *m)
{
    mcpauth_decision d;
    memset(&d, 0, sizeof d);
    d.verdict = v;
    snprintf(d.description, sizeof d.description, "%s", v == MCPAUTH_NO_TOKEN ? "" : "expired");
    snprintf(d.scope_needed, sizeof d.scope_needed, "files:read");
    mcpauth_request req;
    mcpauth_response resp;
    memhttp_setup(m, NULL, &req, &resp);
    mcpauth_decision_respond(&d, r, &resp);
}

/* The 401 and 403 of the gate, the proxy and mod_mcpauth (they all answer
 * with mcpauth_decision_respond) name the configured URL. */
START_TEST(custom_url_in_challenges)
{
    unload();
    load(conf_userdir);
    const mcpauth_resource *files = mcpauth_config_resource_by_name(cfg, "files");
    memhttp m;
    challenge(files, MCPAUTH_NO_TOKEN, &m);
    ck_assert_ptr_nonnull(strstr(m.out, "Status: 401 Unauthorized\r\n"));
    ck_assert_str_eq(memhttp_header(m.out, "WWW-Authenticate"),
                     "Bearer resource_metadata=\"" ALICE_PRM "\", scope=\"files:read\"");
    challenge(files, MCPAUTH_INVALID_TOKEN, &m);
    ck_assert_str_eq(memhttp_header(m.out, "WWW-Authenticate"),
                     "Bearer error=\"invalid_token\", error_description=\"expired\", "
                     "resource_metadata=\"" ALICE_PRM "\", scope=\"files:read\"");
    challenge(files, MCPAUTH_INSUFFICIENT_SCOPE, &m);
    ck_assert_ptr_nonnull(strstr(m.out, "Status: 403 Forbidden\r\n"));
    ck_assert_ptr_nonnull(strstr(memhttp_header(m.out, "WWW-Authenticate"),
                                 "resource_metadata=\"" ALICE_PRM "\""));
    /* without the key: the path-inserted URL, as before */
    challenge(mcpauth_config_resource_by_name(cfg, "plain"), MCPAUTH_NO_TOKEN, &m);
    ck_assert_ptr_nonnull(strstr(memhttp_header(m.out, "WWW-Authenticate"),
        "resource_metadata=\"https://host.example.com/.well-known/oauth-protected-resource/"
        "~alice/mcp/plain\""));
}
END_TEST

Suite *metadata_suite(void)
{
    Suite *s = suite_create("metadata");
    TCase *tc = tcase_create("documents");
    tcase_add_checked_fixture(tc, setup_two, unload);
    tcase_add_test(tc, document_fields);
    tcase_add_test(tc, document_minimal);
    tcase_add_test(tc, lookup_paths);
    tcase_add_test(tc, handle_get);
    tcase_add_test(tc, handle_head_has_no_body);
    tcase_add_test(tc, handle_preflight);
    tcase_add_test(tc, handle_not_found);
    tcase_add_test(tc, handle_wrong_method);
    tcase_add_test(tc, root_form_single_resource);
    tcase_add_test(tc, root_form_default_resource);
    tcase_add_test(tc, custom_url_served);
    tcase_add_test(tc, custom_url_in_challenges);
    suite_add_tcase(s, tc);
    return s;
}
