/* mcpauth.conf: good files load as written, and every bad one stops with its
 * own exact message naming file, line and problem. */
#include "config.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <mcpauth/config.h>
#include <mcpauth/log.h>

#include "alloc.h"
#include "suites.h"

#define RES_FILES "[resource files]\nuri = https://mcp.example.com/mcp/files\n" \
                  "authorization_servers = https://auth.example.com\n"

static mcpauth_config *parse(const char *text, char *err, size_t errlen)
{
    return mcpauth_config_parse(text, strlen(text), "t.conf", err, errlen);
}

START_TEST(good_two_resources)
{
    char err[512] = "";
    mcpauth_config *cfg = parse(
        "# two MCP servers on one host\n"
        "log_level = debug\n"
        "metadata_max_age = 600\n"
        "default_resource = files\n"
        "\n"
        "[resource files]\n"
        "uri = HTTPS://MCP.Example.COM:443/mcp/files/\n"
        "resource_name = Files\n"
        "authorization_servers = https://auth.example.com https://Auth2.example.com/tenant/\n"
        "scopes_supported = files:read files:write\n"
        "scopes_required = files:read\n"
        "resource_documentation = https://docs.example.com/files?lang=en\n"
        "backend = http://127.0.0.1:9000/mcp\n"
        "\n"
        "[resource github]\r\n"
        "  uri   =   https://mcp.example.com:8443/mcp/github   \n"
        "authorization_servers = https://auth.example.com\n"
        "backend = http://localhost/mcp\nbackend_socket = /run/mcp/github.sock\n"
        "allowed_origins = HTTPS://App.Example.com:443 * http://localhost:3000\n"
        "subject_header = X-User\nbackend_authorization = Bearer static-secret\n"
        "rate_limit = 5\nrate_burst = 7\nforward_cookies = yes\n"
        "[policy deletes]\nresource = files\nmethod = tools/call\nname = delete_*\n"
        "scopes = files:write\n",
        err, sizeof err);
    ck_assert_msg(cfg != NULL, "parse failed: %s", err);
    ck_assert_int_eq(cfg->log_level, MCPAUTH_LOG_DEBUG);
    ck_assert_int_eq(cfg->metadata_max_age, 600);
    ck_assert_uint_eq(cfg->nresources, 2);
    const mcpauth_resource *f = &cfg->resources[0], *g = &cfg->resources[1];
    ck_assert_ptr_eq(cfg->default_resource, f);
    ck_assert_str_eq(f->name, "files");
    ck_assert_str_eq(f->uri, "https://mcp.example.com/mcp/files");
    ck_assert_str_eq(f->origin, "https://mcp.example.com");
    ck_assert_str_eq(f->path, "/mcp/files");
    ck_assert_str_eq(f->host, "mcp.example.com");
    ck_assert_str_eq(f->metadata_path, "/.well-known/oauth-protected-resource/mcp/files");
    ck_assert_str_eq(f->metadata_url,
                     "https://mcp.example.com/.well-known/oauth-protected-resource/mcp/files");
    ck_assert_str_eq(f->resource_name, "Files");
    ck_assert_uint_eq(f->authorization_servers.n, 2);
    /* issuers are kept byte for byte: they must equal the AS's "issuer" */
    ck_assert_str_eq(f->authorization_servers.v[1], "https://Auth2.example.com/tenant/");
    ck_assert_uint_eq(f->scopes_supported.n, 2);
    ck_assert_str_eq(f->scopes_required.v[0], "files:read");
    ck_assert_str_eq(f->resource_documentation, "https://docs.example.com/files?lang=en");
    ck_assert_str_eq(f->backend, "http://127.0.0.1:9000/mcp");
    ck_assert_str_eq(g->uri, "https://mcp.example.com:8443/mcp/github");
    ck_assert_str_eq(g->host, "mcp.example.com:8443");
    ck_assert_str_eq(g->backend, "http://localhost/mcp");
    ck_assert_str_eq(g->backend_socket, "/run/mcp/github.sock");
    ck_assert_uint_eq(g->allowed_origins.n, 3);
    ck_assert_str_eq(g->allowed_origins.v[0], "https://app.example.com");
    ck_assert_str_eq(g->allowed_origins.v[1], "*");
    ck_assert_str_eq(g->subject_header, "X-User");
    ck_assert_str_eq(g->client_id_header, "X-MCP-Client-Id");
    ck_assert_str_eq(g->backend_authorization, "Bearer static-secret");
    ck_assert_int_eq(g->rate_limit, 5);
    ck_assert_int_eq(g->rate_burst, 7);
    ck_assert_int_eq(g->forward_cookies, 1);
    ck_assert_int_eq(f->rate_limit, 100);
    ck_assert_int_eq(f->rate_limit_address, 200);
    ck_assert_uint_eq(cfg->npolicies, 1);
    ck_assert_ptr_eq(cfg->policies[0]->resource, f);
    ck_assert_str_eq(cfg->policies[0]->method, "tools/call");
    ck_assert_str_eq(cfg->policies[0]->target, "delete_*");
    ck_assert_str_eq(cfg->policies[0]->scopes.v[0], "files:write");
    ck_assert_ptr_null(g->resource_name);
    ck_assert_ptr_eq(mcpauth_config_resource_by_name(cfg, "github"), g);
    ck_assert_ptr_eq(mcpauth_config_resource_by_uri(cfg, "https://mcp.example.com/mcp/files"), f);
    ck_assert_ptr_null(mcpauth_config_resource_by_uri(cfg, "https://mcp.example.com/mcp/files/"));
    mcpauth_config_free(cfg);
}
END_TEST

START_TEST(good_issuers)
{
    char err[512] = "";
    mcpauth_config *cfg = parse(
        "jwt_algorithms = ES384 PS256\nclock_leeway = 5\ncache_entries = 0\n"
        "[resource files]\nuri = https://mcp.example.com/mcp/files\n"
        "authorization_servers = https://kc.example.com/realms/a https://other.example.com\n"
        "audiences = my-client other\n"
        "scopes_required_delete = files:admin\n"
        "[resource github]\nuri = https://mcp.example.com/mcp/github\n"
        "authorization_servers = https://other.example.com\n"
        "[issuer keycloak]\nissuer = https://kc.example.com/realms/a\n"
        "jwks_uri = https://kc.example.com/realms/a/protocol/openid-connect/certs\n"
        "introspection_endpoint = https://kc.example.com/realms/a/introspect\n"
        "introspection_client_id = gate\nintrospection_client_secret = s3cret\nrequire_typ = yes\n",
        err, sizeof err);
    ck_assert_msg(cfg != NULL, "parse failed: %s", err);
    ck_assert_uint_eq(cfg->jwt_algorithms.n, 2);
    ck_assert_str_eq(cfg->jwt_algorithms.v[0], "ES384");
    ck_assert_int_eq(cfg->clock_leeway, 5);
    ck_assert_int_eq(cfg->cache_entries, 0);
    ck_assert_uint_eq(cfg->nissuers, 2); /* keycloak + one implicit, shared */
    const mcpauth_resource *f = &cfg->resources[0], *g = &cfg->resources[1];
    ck_assert_str_eq(f->issuers[0]->name, "keycloak");
    ck_assert_int_eq(f->issuers[0]->require_typ, 1);
    ck_assert_str_eq(f->issuers[0]->introspection_client_secret, "s3cret");
    ck_assert_ptr_null(f->issuers[1]->name);
    ck_assert_str_eq(f->issuers[1]->issuer, "https://other.example.com");
    ck_assert_int_eq(f->issuers[1]->discovery, 1);
    ck_assert_ptr_eq(f->issuers[1], g->issuers[0]);
    ck_assert_uint_eq(f->audiences.n, 2);
    ck_assert_str_eq(f->scopes_required_method[mcpauth_method_index("DELETE")].v[0], "files:admin");
    ck_assert_int_eq(mcpauth_method_index("OPTIONS"), -1);
    mcpauth_config_free(cfg);
}
END_TEST

START_TEST(good_authorization_server)
{
    char err[512] = "";
    mcpauth_config *cfg = parse(
        "[resource files]\nuri = https://mcp.example.com/mcp/files\n"
        "authorization_servers = https://auth.example.com\nscopes_supported = files:read files:write\n"
        "[resource gh]\nuri = https://mcp.example.com/mcp/gh\n"
        "authorization_servers = https://auth.example.com\nscopes_supported = repo files:read\n"
        "[authorization_server]\nissuer = https://auth.example.com\nstate_dir = /tmp\n"
        "access_token_ttl = 300\nregistration = no\n",
        err, sizeof err);
    ck_assert_msg(cfg != NULL, "parse failed: %s", err);
    ck_assert_ptr_nonnull(cfg->as);
    ck_assert_str_eq(cfg->as->issuer, "https://auth.example.com");
    ck_assert_str_eq(cfg->as->signing_alg, "ES256");
    ck_assert_int_eq(cfg->as->access_token_ttl, 300);
    ck_assert_int_eq(cfg->as->code_ttl, 60);
    ck_assert_int_eq(cfg->as->registration, 0);
    ck_assert_int_eq(cfg->as->cimd, 1);
    ck_assert_uint_eq(cfg->as->scopes_supported.n, 3); /* files:read files:write repo */
    mcpauth_config_free(cfg);
}
END_TEST

START_TEST(good_defaults)
{
    char err[512] = "";
    mcpauth_config *cfg = parse(RES_FILES, err, sizeof err);
    ck_assert_msg(cfg != NULL, "parse failed: %s", err);
    ck_assert_int_eq(cfg->log_level, MCPAUTH_LOG_INFO);
    ck_assert_int_eq(cfg->metadata_max_age, 3600);
    ck_assert_ptr_null(cfg->default_resource);
    ck_assert_int_eq(cfg->resources[0].trailing_slash, 0);
    ck_assert_uint_eq(cfg->resources[0].scopes_supported.n, 0);
    ck_assert_uint_eq(cfg->jwt_algorithms.n, 2);
    ck_assert_str_eq(cfg->jwt_algorithms.v[0], "RS256");
    ck_assert_str_eq(cfg->jwt_algorithms.v[1], "ES256");
    ck_assert_int_eq(cfg->clock_leeway, 60);
    ck_assert_int_eq(cfg->token_max_bytes, 8192);
    ck_assert_int_eq(cfg->cache_entries, 10000);
    ck_assert_int_eq(cfg->cache_ttl, 300);
    ck_assert_int_eq(cfg->cache_negative_ttl, 10);
    ck_assert_int_eq(cfg->jwks_min_refresh, 60);
    ck_assert_int_eq(cfg->http_timeout, 5);
    ck_assert_ptr_null(cfg->ca_file);
    ck_assert_int_eq(cfg->stream_idle_timeout, 300);
    ck_assert_int_eq(cfg->stream_heartbeat, 10);
    mcpauth_config_free(cfg);
}
END_TEST

/* stream_heartbeat: 0 (off) and the bounds are accepted as written */
START_TEST(good_stream_heartbeat)
{
    static const char *const text[] = {"stream_heartbeat = 0\n", "stream_heartbeat = 1\n",
                                       "stream_heartbeat = 3600\n"};
    static const long want[] = {0, 1, 3600};
    for (int i = 0; i < 3; i++) {
        char err[512] = "", buf[256];
        snprintf(buf, sizeof buf, "%s%s", text[i], RES_FILES);
        mcpauth_config *cfg = parse(buf, err, sizeof err);
        ck_assert_msg(cfg != NULL, "parse failed: %s", err);
        ck_assert_int_eq(cfg->stream_heartbeat, want[i]);
        mcpauth_config_free(cfg);
    }
}
END_TEST

/* Regression (issue 12): max_concurrent_per_caller defaults to 64, the
 * global value is every resource's default, a resource may override it,
 * and 0 (no cap) and the bounds are taken as written. */
START_TEST(good_max_concurrent_per_caller)
{
    static const char two[] =
        "[resource a]\nuri = https://m.example.com/a\nauthorization_servers = https://a.example.com\n"
        "[resource b]\nuri = https://m.example.com/b\nauthorization_servers = https://a.example.com\n"
        "max_concurrent_per_caller = %s\n";
    static const struct { const char *global, *res; long g, a, b; } cases[] = {
        {"", "3", 64, 64, 3},
        {"max_concurrent_per_caller = 0\n", "256", 0, 0, 256},
        {"max_concurrent_per_caller = 256\n", "0", 256, 256, 0},
        {"max_concurrent_per_caller = 2\n", "2", 2, 2, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[512] = "", buf[1024], tail[512];
        snprintf(tail, sizeof tail, two, cases[i].res);
        snprintf(buf, sizeof buf, "%s%s", cases[i].global, tail);
        mcpauth_config *cfg = parse(buf, err, sizeof err);
        ck_assert_msg(cfg != NULL, "parse failed: %s", err);
        ck_assert_int_eq(cfg->max_concurrent_per_caller, cases[i].g);
        ck_assert_int_eq(cfg->resources[0].max_concurrent_per_caller, cases[i].a);
        ck_assert_int_eq(cfg->resources[1].max_concurrent_per_caller, cases[i].b);
        mcpauth_config_free(cfg);
    }
}
END_TEST

/* Issue 12: the proxy's elastic pool; 8 spare threads, up to 1024, the
 * last 8 kept for callers with nothing in flight. */
START_TEST(good_proxy_pool)
{
    char err[512] = "";
    mcpauth_config *cfg = parse(RES_FILES, err, sizeof err);
    ck_assert_msg(cfg != NULL, "parse failed: %s", err);
    ck_assert_int_eq(cfg->proxy_threads, 8);
    ck_assert_int_eq(cfg->proxy_max_threads, 1024);
    ck_assert_int_eq(cfg->proxy_reserve_threads, 8);
    mcpauth_config_free(cfg);
    cfg = parse("proxy_threads = 1\nproxy_max_threads = 1\nproxy_reserve_threads = 0\n" RES_FILES,
                err, sizeof err);
    ck_assert_msg(cfg != NULL, "parse failed: %s", err);
    ck_assert_int_eq(cfg->proxy_max_threads, 1);
    ck_assert_int_eq(cfg->proxy_reserve_threads, 0);
    mcpauth_config_free(cfg);
}
END_TEST

START_TEST(good_trailing_slash_kept_when_configured)
{
    char err[512] = "";
    mcpauth_config *cfg = parse("[resource r]\ntrailing_slash = yes\nuri = http://127.0.0.1:8080/mcp/\n"
                                "authorization_servers = http://127.0.0.1:8080\n",
                                err, sizeof err);
    ck_assert_msg(cfg != NULL, "parse failed: %s", err);
    ck_assert_str_eq(cfg->resources[0].uri, "http://127.0.0.1:8080/mcp/");
    ck_assert_str_eq(cfg->resources[0].metadata_path, "/.well-known/oauth-protected-resource/mcp/");
    mcpauth_config_free(cfg);
}
END_TEST

START_TEST(good_root_resource)
{
    char err[512] = "";
    mcpauth_config *cfg = parse("[resource root]\nuri = https://mcp.example.com/\n"
                                "authorization_servers = https://auth.example.com\n",
                                err, sizeof err);
    ck_assert_msg(cfg != NULL, "parse failed: %s", err);
    ck_assert_str_eq(cfg->resources[0].uri, "https://mcp.example.com");
    ck_assert_str_eq(cfg->resources[0].path, "");
    ck_assert_str_eq(cfg->resources[0].metadata_path, "/.well-known/oauth-protected-resource");
    mcpauth_config_free(cfg);
}
END_TEST

/* Every bad file and the one line it must produce. */
static const struct {
    const char *text;
    const char *expect;
} bad[] = {
    {"", "t.conf: no [resource NAME] section: nothing to protect"},
    {"log_level = info\n# only globals\n", "t.conf: no [resource NAME] section: nothing to protect"},
    {RES_FILES "colour = blue\n", "t.conf:4: unknown key \"colour\" in [resource files]"},
    {"colour = blue\n" RES_FILES, "t.conf:1: unknown key \"colour\" in the global section"},
    {"uri = https://mcp.example.com/mcp\n" RES_FILES,
     "t.conf:1: key \"uri\" belongs in a [resource NAME] section"},
    {RES_FILES "uri = https://mcp.example.com/other\n",
     "t.conf:4: duplicate key \"uri\" in [resource files]"},
    {"[server x]\n", "t.conf:1: unknown section type \"[server x]\" (expected [resource NAME], [issuer NAME], [policy NAME] or [authorization_server])"},
    {"[resource]\n", "t.conf:1: [resource NAME] needs a name of letters, digits, \"_\", \"-\" or \".\""},
    {"[resource a b]\n",
     "t.conf:1: [resource NAME] needs a name of letters, digits, \"_\", \"-\" or \".\""},
    {"[resource files\n", "t.conf:1: section header must end with \"]\""},
    {RES_FILES "[resource files]\n", "t.conf:4: resource \"files\" is already defined at line 1"},
    {"just some words\n", "t.conf:1: expected \"key = value\" or \"[resource NAME]\""},
    {"= value\n", "t.conf:1: expected \"key = value\" or \"[resource NAME]\""},
    {"[resource a]\nauthorization_servers = https://auth.example.com\n",
     "t.conf:1: [resource a] is missing the required key \"uri\""},
    {"[resource a]\nuri = https://mcp.example.com/mcp\n",
     "t.conf:1: [resource a] is missing the required key \"authorization_servers\""},
    {"[resource a]\nuri =\n", "t.conf:2: uri: empty value"},
    {"[resource a]\nuri = ftp://mcp.example.com/mcp\n",
     "t.conf:2: uri \"ftp://mcp.example.com/mcp\" must be an absolute http:// or https:// URI"},
    {"[resource a]\nuri = mcp.example.com/mcp\n",
     "t.conf:2: uri \"mcp.example.com/mcp\" must be an absolute http:// or https:// URI"},
    {"[resource a]\nuri = http://mcp.example.com/mcp\n",
     "t.conf:2: uri \"http://mcp.example.com/mcp\" must use https (http is allowed only for loopback hosts)"},
    {"[resource a]\nuri = https://mcp.example.com/mcp#top\n",
     "t.conf:2: uri \"https://mcp.example.com/mcp#top\" must not have a fragment"},
    {"[resource a]\nuri = https://mcp.example.com/mcp?x=1\n",
     "t.conf:2: uri \"https://mcp.example.com/mcp?x=1\" must not have a query"},
    {"[resource a]\nuri = https://user@mcp.example.com/mcp\n",
     "t.conf:2: uri \"https://user@mcp.example.com/mcp\" must not contain user information"},
    {"[resource a]\nuri = https://mcp.example.com/a/../mcp\n",
     "t.conf:2: uri \"https://mcp.example.com/a/../mcp\" must not contain \".\" or \"..\" path segments"},
    {"[resource a]\nuri = https://mcp.example.com:99999/mcp\n",
     "t.conf:2: uri \"https://mcp.example.com:99999/mcp\" is not a valid URI"},
    {"[resource a]\ntrailing_slash = yes\nuri = https://mcp.example.com/mcp\n"
     "authorization_servers = https://a.example.com\n",
     "t.conf:3: trailing_slash = yes but uri \"https://mcp.example.com/mcp\" does not end with \"/\""},
    {"[resource a]\ntrailing_slash = maybe\n", "t.conf:2: trailing_slash: \"maybe\" is not yes or no"},
    {"[resource a]\nauthorization_servers = https://ok.example.com http://auth.example.com\n",
     "t.conf:2: authorization_servers: \"http://auth.example.com\" must use https (http is allowed only for loopback hosts)"},
    {"[resource a]\nauthorization_servers = https://auth.example.com?tenant=1\n",
     "t.conf:2: authorization_servers: \"https://auth.example.com?tenant=1\" must not have a query"},
    {"[resource a]\nscopes_supported = files:read \"quoted\"\n",
     "t.conf:2: scopes_supported: \"\"quoted\"\" is not a valid scope token"},
    {"[resource a]\nscopes_supported = a b\nscopes_required = c\nuri = https://m.example.com/x\n"
     "authorization_servers = https://a.example.com\n",
     "t.conf:1: [resource a]: required scope \"c\" is not in scopes_supported"},
    {"[resource a]\nresource_documentation = javascript:alert(1)\n",
     "t.conf:2: resource_documentation \"javascript:alert(1)\" must be an absolute http:// or https:// URI"},
    {"[resource a]\nbackend = unix:/run/x.sock\n",
     "t.conf:2: backend \"unix:/run/x.sock\" must be an absolute http:// or https:// URI"},
    {"[resource a]\nbackend_socket = relative.sock\n",
     "t.conf:2: backend_socket \"relative.sock\" must be an absolute path under 108 bytes"},
    {"[resource a]\nallowed_origins = https://app.example.com/path\n",
     "t.conf:2: allowed_origins: \"https://app.example.com/path\" is not an origin (scheme://host[:port])"},
    {"[resource a]\nsubject_header = Authorization\n",
     "t.conf:2: subject_header: \"Authorization\" cannot carry the identity"},
    {"[resource a]\nscope_header = X Scope\n", "t.conf:2: scope_header: \"X Scope\" is not a header name"},
    {"runtime_dir = /etc/hostname\n", "t.conf:1: runtime_dir \"/etc/hostname\" is not a directory"},
    {RES_FILES "[policy p]\nresource = files\nmethod = tools/call\n",
     "t.conf:4: [policy p] needs resource, method and scopes"},
    {RES_FILES "[policy p]\nresource = nope\nmethod = tools/call\nscopes = x\n",
     "t.conf:4: [policy p]: no [resource nope] section"},
    {"[resource f]\nuri = https://m.example.com/f\nauthorization_servers = https://a.example.com\n"
     "scopes_supported = a\n[policy p]\nresource = f\nmethod = tools/call\nscopes = b\n",
     "t.conf:1: [resource f]: required scope \"b\" is not in scopes_supported"},
    {"[resource a]\nbackend = gopher://127.0.0.1/\n",
     "t.conf:2: backend \"gopher://127.0.0.1/\" must be an absolute http:// or https:// URI"},
    {"metadata_max_age = -5\n",
     "t.conf:1: metadata_max_age: \"-5\" is not a whole number from 0 to 604800"},
    {"metadata_max_age = 12abc\n",
     "t.conf:1: metadata_max_age: \"12abc\" is not a whole number from 0 to 604800"},
    {"metadata_max_age = 99999999999999999999999\n",
     "t.conf:1: metadata_max_age: \"99999999999999999999999\" is not a whole number from 0 to 604800"},
    {"log_level = loud\n", "t.conf:1: log_level: \"loud\" is not error, warn, info or debug"},
    {"default_resource = nope\n" RES_FILES, "t.conf:1: default_resource: no [resource nope] section"},
    {RES_FILES "[resource files2]\nuri = https://MCP.example.com:443/mcp/files/\n"
               "authorization_servers = https://auth.example.com\n",
     "t.conf:5: resources \"files\" and \"files2\" have the same uri \"https://mcp.example.com/mcp/files\" (first at line 2)"},
    {"[resource a]\nresource_name = bell\a\n", "t.conf:2: control character in line"},
    {"[issuer]\n", "t.conf:1: [issuer NAME] needs a name of letters, digits, \"_\", \"-\" or \".\""},
    {"[issuer kc]\n[issuer kc]\n", "t.conf:2: issuer \"kc\" is already defined at line 1"},
    {RES_FILES "[issuer kc]\njwks_uri = https://auth.example.com/jwks\n",
     "t.conf:4: [issuer kc] is missing the required key \"issuer\""},
    {"jwks_uri = https://auth.example.com/jwks\n",
     "t.conf:1: key \"jwks_uri\" belongs in an [issuer NAME] section"},
    {"[issuer kc]\naudiences = x\n", "t.conf:2: unknown key \"audiences\" in [issuer kc]"},
    {"[issuer kc]\nissuer = http://auth.example.com\n",
     "t.conf:2: issuer \"http://auth.example.com\" must use https (http is allowed only for loopback hosts)"},
    {"[issuer kc]\njwks_uri = http://auth.example.com/jwks\n",
     "t.conf:2: jwks_uri \"http://auth.example.com/jwks\" must use https (http is allowed only for loopback hosts)"},
    {"[issuer kc]\njwks_file = relative/jwks.json\n",
     "t.conf:2: jwks_file \"relative/jwks.json\" must be an absolute path"},
    {"[issuer kc]\njwks_file = /nonexistent/jwks.json\n",
     "t.conf:2: jwks_file \"/nonexistent/jwks.json\": No such file or directory"},
    {"[issuer kc]\njwks_file = /\n", "t.conf:2: jwks_file \"/\" is not a regular file"},
    {RES_FILES "[issuer kc]\nissuer = https://auth.example.com\njwks_file = /etc/hostname\n"
               "jwks_uri = https://auth.example.com/jwks\n",
     "t.conf:4: [issuer kc]: set jwks_file or jwks_uri, not both"},
    {RES_FILES "[issuer kc]\nissuer = https://auth.example.com\n"
               "introspection_endpoint = https://auth.example.com/introspect\n"
               "introspection_client_id = gate\n",
     "t.conf:4: [issuer kc]: introspection_endpoint needs introspection_client_id and introspection_client_secret"},
    {RES_FILES "[issuer a]\nissuer = https://auth.example.com\n[issuer b]\nissuer = https://auth.example.com\n",
     "t.conf:6: issuers \"a\" and \"b\" have the same issuer \"https://auth.example.com\""},
    {"jwt_algorithms = RS256 HS256\n",
     "t.conf:1: jwt_algorithms: \"HS256\" is not one of RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 (\"none\" and HMAC are never accepted)"},
    {"jwt_algorithms = none\n",
     "t.conf:1: jwt_algorithms: \"none\" is not one of RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 (\"none\" and HMAC are never accepted)"},
    {RES_FILES "[authorization_server]\nissuer = https://auth.example.com\n",
     "t.conf:4: [authorization_server] needs issuer and state_dir"},
    {RES_FILES "[authorization_server]\nissuer = https://other.example.com\nstate_dir = /tmp\n",
     "t.conf:4: [authorization_server]: no resource lists issuer \"https://other.example.com\" in authorization_servers"},
    {"[authorization_server]\n[authorization_server]\n",
     "t.conf:2: [authorization_server] is already defined at line 1"},
    {"[authorization_server]\nsigning_alg = HS256\n",
     "t.conf:2: signing_alg: \"HS256\" is not ES256 or RS256"},
    {"[authorization_server]\nstate_dir = /etc/hostname\n",
     "t.conf:2: state_dir \"/etc/hostname\" is not a directory"},
    {"stream_heartbeat = -1\n",
     "t.conf:1: stream_heartbeat: \"-1\" is not a whole number from 0 to 3600"},
    {"stream_heartbeat = 3601\n",
     "t.conf:1: stream_heartbeat: \"3601\" is not a whole number from 0 to 3600"},
    {"stream_heartbeat = 1s\n",
     "t.conf:1: stream_heartbeat: \"1s\" is not a whole number from 0 to 3600"},
    {"[resource a]\nstream_heartbeat = 5\n",
     "t.conf:2: unknown key \"stream_heartbeat\" in [resource a]"},
    {"proxy_threads = 16\nproxy_max_threads = 8\n" RES_FILES,
     "t.conf: proxy_max_threads (8) is less than proxy_threads (16)"},
    {"proxy_max_threads = 8\nproxy_reserve_threads = 8\n" RES_FILES,
     "t.conf: proxy_reserve_threads (8) leaves no worker of proxy_max_threads (8)"},
    {"proxy_max_threads = 0\n",
     "t.conf:1: proxy_max_threads: \"0\" is not a whole number from 1 to 16384"},
    {"proxy_reserve_threads = 1025\n",
     "t.conf:1: proxy_reserve_threads: \"1025\" is not a whole number from 0 to 1024"},
    {"max_concurrent_per_caller = -1\n",
     "t.conf:1: max_concurrent_per_caller: \"-1\" is not a whole number from 0 to 256"},
    {"max_concurrent_per_caller = 257\n",
     "t.conf:1: max_concurrent_per_caller: \"257\" is not a whole number from 0 to 256"},
    {"[resource a]\nmax_concurrent_per_caller = 4x\n",
     "t.conf:2: max_concurrent_per_caller: \"4x\" is not a whole number from 0 to 256"},
    {"[resource a]\nmax_concurrent_per_caller = 99999999999999999999\n",
     "t.conf:2: max_concurrent_per_caller: \"99999999999999999999\" is not a whole number from 0 to 256"},
    {"[resource a]\nmax_concurrent_per_caller = 2\nmax_concurrent_per_caller = 3\n",
     "t.conf:3: duplicate key \"max_concurrent_per_caller\" in [resource a]"},
    {"clock_leeway = 601\n", "t.conf:1: clock_leeway: \"601\" is not a whole number from 0 to 600"},
    {"token_max_bytes = 100\n", "t.conf:1: token_max_bytes: \"100\" is not a whole number from 256 to 65536"},
    {"[resource a]\nscopes_supported = a\nscopes_required_post = b\nuri = https://m.example.com/x\n"
     "authorization_servers = https://a.example.com\n",
     "t.conf:1: [resource a]: required scope \"b\" is not in scopes_supported"},
    /* resource_metadata_url: a URL clients may fetch, without a token, of this resource only */
    {"[resource a]\nresource_metadata_url = http://h.example.com/prm\n",
     "t.conf:2: resource_metadata_url \"http://h.example.com/prm\" must use https (http is allowed only for loopback hosts)"},
    {"[resource a]\nresource_metadata_url = https://h.example.com/prm?x=1\n",
     "t.conf:2: resource_metadata_url \"https://h.example.com/prm?x=1\" must not have a query"},
    {"[resource a]\nresource_metadata_url = /~alice/prm\n",
     "t.conf:2: resource_metadata_url \"/~alice/prm\" must be an absolute http:// or https:// URI"},
    {RES_FILES "resource_metadata_url = https://MCP.example.com/mcp/files/metadata\n",
     "t.conf:1: [resource files]: resource_metadata_url https://mcp.example.com/mcp/files/metadata is at or below the uri of [resource files], where a token is needed; clients fetch the metadata without one"},
    {RES_FILES "[resource root]\nuri = https://mcp.example.com\nauthorization_servers = https://auth.example.com\n"
     "resource_metadata_url = https://mcp.example.com/prm/root\n",
     "t.conf:4: [resource root]: resource_metadata_url https://mcp.example.com/prm/root is at or below the uri of [resource root], where a token is needed; clients fetch the metadata without one"},
    {RES_FILES "[resource b]\nuri = https://mcp.example.com/mcp/b\nauthorization_servers = https://auth.example.com\n"
     "resource_metadata_url = https://mcp.example.com/.well-known/oauth-protected-resource/mcp/files\n",
     "t.conf:4: [resource b]: resource_metadata_url https://mcp.example.com/.well-known/oauth-protected-resource/mcp/files is where the metadata of [resource files] is served"},
    {RES_FILES "resource_metadata_url = https://mcp.example.com/prm\n"
     "[resource b]\nuri = https://mcp.example.com/mcp/b\nauthorization_servers = https://auth.example.com\n"
     "resource_metadata_url = https://mcp.example.com/prm\n",
     "t.conf:1: [resource files]: resource_metadata_url https://mcp.example.com/prm is where the metadata of [resource b] is served"},
    /* backend TLS: for an https backend, files checked at start-up */
    {RES_FILES "backend = http://127.0.0.1:9/mcp\nbackend_pinned_pubkey = sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
     "t.conf:1: [resource files]: backend_ca_file, backend_client_cert, backend_client_key and backend_pinned_pubkey are for an https backend, and backend is http://127.0.0.1:9/mcp"},
    {RES_FILES "backend_pinned_pubkey = sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
     "t.conf:1: [resource files]: backend_ca_file, backend_client_cert, backend_client_key and backend_pinned_pubkey are for an https backend, and backend is not set"},
    {RES_FILES "backend = https://b.example.com/mcp\nbackend_client_cert = /etc/hostname\n",
     "t.conf:1: [resource files]: backend_client_cert and backend_client_key go together"},
    {"[resource a]\nbackend_ca_file = /etc/hostname\n",
     "t.conf:2: backend_ca_file \"/etc/hostname\": no PEM certificate in it"},
    {"[resource a]\nbackend_ca_file = /nonexistent/ca.pem\n",
     "t.conf:2: backend_ca_file \"/nonexistent/ca.pem\": No such file or directory"},
    {"[resource a]\nbackend_client_key = /etc/hostname\n",
     "t.conf:2: backend_client_key \"/etc/hostname\" is readable by every user: chmod o-rw it (600, or 640 with the web server's group)"},
    {"[resource a]\nbackend_client_key = relative.key\n",
     "t.conf:2: backend_client_key \"relative.key\" must be an absolute path"},
    {"[resource a]\nbackend_pinned_pubkey = sha256//abc=\n",
     "t.conf:2: backend_pinned_pubkey: \"sha256//abc=\" is not sha256// and a base64 SHA-256 (44 characters, e.g. from `openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`)"},
    {"[resource a]\nbackend_pinned_pubkey = sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=;/etc/ssl/key.pem\n",
     "t.conf:2: backend_pinned_pubkey: \"/etc/ssl/key.pem\" is not sha256// and a base64 SHA-256 (44 characters, e.g. from `openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`)"},
};

START_TEST(bad_config)
{
    char err[512] = "";
    mcpauth_config *cfg = parse(bad[_i].text, err, sizeof err);
    ck_assert_msg(cfg == NULL, "case %d was accepted", _i);
    ck_assert_str_eq(err, bad[_i].expect);
}
END_TEST

START_TEST(good_resource_metadata_url)
{
    char err[512] = "";
    mcpauth_config *cfg = parse(
        "[resource alice]\n"
        "uri = http://127.0.0.1:8080/~alice/mcp/files\n"
        "authorization_servers = http://127.0.0.1:8080/~alice/mcp\n"
        "resource_metadata_url = HTTP://127.0.0.1:8080/~alice/mcp/.well-known/"
        "oauth-protected-resource/files\n"
        RES_FILES, err, sizeof err);
    ck_assert_msg(cfg != NULL, "parse failed: %s", err);
    const mcpauth_resource *a = &cfg->resources[0], *f = &cfg->resources[1];
    ck_assert_str_eq(a->uri, "http://127.0.0.1:8080/~alice/mcp/files");
    ck_assert_str_eq(a->metadata_url, "http://127.0.0.1:8080/~alice/mcp/.well-known/"
                                      "oauth-protected-resource/files");
    ck_assert_str_eq(a->metadata_url_path,
                     "/~alice/mcp/.well-known/oauth-protected-resource/files");
    ck_assert_str_eq(a->metadata_url_host, "127.0.0.1:8080");
    /* the path-inserted form stays where it was */
    ck_assert_str_eq(a->metadata_path, "/.well-known/oauth-protected-resource/~alice/mcp/files");
    /* without the key: the path-inserted URL, and its path and host */
    ck_assert_str_eq(f->metadata_url,
                     "https://mcp.example.com/.well-known/oauth-protected-resource/mcp/files");
    ck_assert_str_eq(f->metadata_url_path, f->metadata_path);
    ck_assert_str_eq(f->metadata_url_host, "mcp.example.com");
    ck_assert_ptr_null(f->backend_ca_file);
    ck_assert_ptr_null(f->backend_client_cert);
    ck_assert_ptr_null(f->backend_pinned_pubkey);
    mcpauth_config_free(cfg);
}
END_TEST

/* ---- backend TLS files, made here ---- */

static EVP_PKEY *tls_key(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    ck_assert_ptr_nonnull(k);
    return k;
}

static void write_cert(const char *path, EVP_PKEY *k)
{
    X509 *x = X509_new();
    ck_assert_ptr_nonnull(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"client", -1, -1, 0);
    X509_set_issuer_name(x, n);
    ck_assert_int_gt(X509_sign(x, k, EVP_sha256()), 0);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(PEM_write_X509(f, x), 1);
    fclose(f);
    X509_free(x);
}

static void write_key(const char *path, EVP_PKEY *k, mode_t mode, const char *passphrase)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(PEM_write_PrivateKey(f, k, passphrase ? EVP_aes_256_cbc() : NULL,
                                          (unsigned char *)passphrase,
                                          passphrase ? (int)strlen(passphrase) : 0, NULL, NULL),
                     1);
    fclose(f);
    ck_assert_int_eq(chmod(path, mode), 0);
}

static char tls_dir[64];

static void tls_files(void)
{
    snprintf(tls_dir, sizeof tls_dir, "/tmp/mcpauth-conftls-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tls_dir));
    EVP_PKEY *k = tls_key(), *other = tls_key();
    char p[128];
    snprintf(p, sizeof p, "%s/cert.pem", tls_dir);
    write_cert(p, k);
    snprintf(p, sizeof p, "%s/ca.pem", tls_dir);
    write_cert(p, other);
    snprintf(p, sizeof p, "%s/key.pem", tls_dir);
    write_key(p, k, 0600, NULL);
    snprintf(p, sizeof p, "%s/group.pem", tls_dir);
    write_key(p, k, 0640, NULL);
    snprintf(p, sizeof p, "%s/other.pem", tls_dir);
    write_key(p, other, 0600, NULL);
    snprintf(p, sizeof p, "%s/encrypted.pem", tls_dir);
    write_key(p, k, 0600, "passphrase");
    snprintf(p, sizeof p, "%s/world.pem", tls_dir);
    write_key(p, k, 0604, NULL);
    EVP_PKEY_free(k);
    EVP_PKEY_free(other);
}

static void tls_files_remove(void)
{
    static const char *const names[] = {"cert.pem", "ca.pem", "key.pem", "group.pem",
                                        "other.pem", "encrypted.pem", "world.pem", NULL};
    char p[128];
    for (int i = 0; names[i]; i++) {
        snprintf(p, sizeof p, "%s/%s", tls_dir, names[i]);
        unlink(p);
    }
    rmdir(tls_dir);
}

/* One resource with an https backend and the given TLS lines (@D@ is the
 * directory of the files); NULL with err set when refused. */
static mcpauth_config *parse_tls(const char *lines, char *err, size_t errlen)
{
    char text[2048], *o = text;
    o += snprintf(o, sizeof text, "%s", RES_FILES "backend = https://backend.example.net/mcp\n");
    for (const char *s = lines; *s; s++) {
        if (strncmp(s, "@D@", 3) == 0) {
            o += snprintf(o, (size_t)(text + sizeof text - o), "%s", tls_dir);
            s += 2;
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
    return parse(text, err, errlen);
}

START_TEST(good_backend_tls)
{
    tls_files();
    char err[512] = "", want[256];
    mcpauth_config *cfg = parse_tls(
        "backend_ca_file = @D@/ca.pem\nbackend_client_cert = @D@/cert.pem\n"
        "backend_client_key = @D@/key.pem\n"
        "backend_pinned_pubkey = sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;"
        "sha256//YhKJKSzoTt2b5FP18fvpHo7fJYqQCjAa3HWY3tvRMwE=\n", err, sizeof err);
    ck_assert_msg(cfg != NULL, "parse failed: %s", err);
    const mcpauth_resource *r = &cfg->resources[0];
    snprintf(want, sizeof want, "%s/ca.pem", tls_dir);
    ck_assert_str_eq(r->backend_ca_file, want);
    snprintf(want, sizeof want, "%s/cert.pem", tls_dir);
    ck_assert_str_eq(r->backend_client_cert, want);
    snprintf(want, sizeof want, "%s/key.pem", tls_dir);
    ck_assert_str_eq(r->backend_client_key, want);
    ck_assert_ptr_nonnull(strstr(r->backend_pinned_pubkey, ";sha256//YhKJ"));
    mcpauth_config_free(cfg);
    /* readable by the group (the web server's) is fine */
    cfg = parse_tls("backend_client_cert = @D@/cert.pem\nbackend_client_key = @D@/group.pem\n",
                    err, sizeof err);
    ck_assert_msg(cfg != NULL, "parse failed: %s", err);
    mcpauth_config_free(cfg);
    tls_files_remove();
}
END_TEST

START_TEST(bad_backend_tls)
{
    tls_files();
    static const struct {
        const char *lines, *expect;
    } cases[] = {
        {"backend_client_cert = @D@/cert.pem\nbackend_client_key = @D@/other.pem\n",
         "t.conf:1: [resource files]: backend_client_key is not the key of backend_client_cert"},
        {"backend_client_cert = @D@/cert.pem\nbackend_client_key = @D@/encrypted.pem\n",
         "t.conf:1: [resource files]: backend_client_key \"@D@/encrypted.pem\": no PEM private "
         "key in it (an encrypted key cannot be used: `openssl pkey -in KEY -out KEY2` writes it "
         "unencrypted)"},
        {"backend_client_cert = @D@/key.pem\nbackend_client_key = @D@/key.pem\n",
         "t.conf:1: [resource files]: backend_client_cert \"@D@/key.pem\": no PEM certificate "
         "in it"},
        {"backend_client_key = @D@/world.pem\n",
         "t.conf:5: backend_client_key \"@D@/world.pem\" is readable by every user: chmod o-rw "
         "it (600, or 640 with the web server's group)"},
        {"backend_client_key = @D@/key.pem\n",
         "t.conf:1: [resource files]: backend_client_cert and backend_client_key go together"},
        {"backend_ca_file = @D@/key.pem\n",
         "t.conf:5: backend_ca_file \"@D@/key.pem\": no PEM certificate in it"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[1024] = "", want[1024], *o = want;
        for (const char *s = cases[i].expect; *s; s++) {
            if (strncmp(s, "@D@", 3) == 0) {
                o += snprintf(o, (size_t)(want + sizeof want - o), "%s", tls_dir);
                s += 2;
            } else {
                *o++ = *s;
            }
        }
        *o = '\0';
        mcpauth_config *cfg = parse_tls(cases[i].lines, err, sizeof err);
        ck_assert_msg(cfg == NULL, "case %zu was accepted", i);
        ck_assert_str_eq(err, want);
    }
    /* a key the programs cannot read stops start-up, not a request */
    if (geteuid() != 0) {
        char p[128], err[512] = "", want[256];
        snprintf(p, sizeof p, "%s/key.pem", tls_dir);
        ck_assert_int_eq(chmod(p, 0), 0);
        mcpauth_config *cfg = parse_tls(
            "backend_client_cert = @D@/cert.pem\nbackend_client_key = @D@/key.pem\n", err,
            sizeof err);
        ck_assert_ptr_null(cfg);
        snprintf(want, sizeof want, "t.conf:6: backend_client_key \"%s\": Permission denied", p);
        ck_assert_str_eq(err, want);
    }
    tls_files_remove();
}
END_TEST

/* A password in shared_state or store never reaches a message: bad Redis
 * addresses are refused at load (so --check shows them), with the
 * userinfo masked; a bad store value with a conninfo password likewise. */
START_TEST(bad_secret_never_quoted)
{
    static const char *const redis[] = {
        "redis://:Sup3rSecret@h:99999",      "redis://u:Sup3rSecret@h:0/1",
        "redis://:Sup3rSecret@/0",           "redis://:Sup3rSecret@h/db",
        "redis://:Sup3rSecret@[::1",         "redis://:Sup3rSecret@h:1/2/3",
        "rediss://:Sup3rSecret@h",           "redis://:a@b:Sup3rSecret@h:x",
        "http://u:Sup3rSecret@h",            "redis://:Sup3rSecret@h:6379/99999999999"};
    for (size_t i = 0; i < sizeof redis / sizeof redis[0]; i++) {
        char text[512], err[512] = "";
        snprintf(text, sizeof text, "shared_state = %s\n" RES_FILES, redis[i]);
        mcpauth_config *cfg = parse(text, err, sizeof err);
        ck_assert_msg(cfg == NULL, "%s accepted", redis[i]);
        ck_assert_msg(strncmp(err, "t.conf:1: shared_state: ", 24) == 0, "%s", err);
        ck_assert_msg(!strstr(err, "Sup3rSecret") && !strstr(err, "Secret"),
                      "the password in: %s", err);
#ifdef HAVE_HIREDIS
        ck_assert_msg(strstr(err, "***"), "not masked but dropped? %s", err);
#endif
    }
    static const char *const store[] = {"password Sup3rSecret",
                                        "mysql://u:Sup3rSecret@h/db",
                                        "Password:Sup3rSecret"};
    for (size_t i = 0; i < sizeof store / sizeof store[0]; i++) {
        char text[512], err[512] = "";
        snprintf(text, sizeof text,
                 RES_FILES "[authorization_server]\nissuer = https://auth.example.com\n"
                 "state_dir = /tmp\nstore = %s\n", store[i]);
        mcpauth_config *cfg = parse(text, err, sizeof err);
        ck_assert_msg(cfg == NULL, "%s accepted", store[i]);
        ck_assert_msg(strstr(err, "store: ") && !strstr(err, "Secret"), "%s", err);
    }
#ifdef HAVE_HIREDIS
    /* and a good address with a password still loads, kept as written */
    char err[512] = "";
    mcpauth_config *cfg = parse("shared_state = redis://u:Sup3rSecret@127.0.0.1:6380/2\n" RES_FILES,
                                err, sizeof err);
    ck_assert_msg(cfg != NULL, "%s", err);
    ck_assert_str_eq(cfg->shared_state, "redis://u:Sup3rSecret@127.0.0.1:6380/2");
    mcpauth_config_free(cfg);
#endif
}
END_TEST

START_TEST(bad_nul_byte)
{
    char err[512] = "";
    static const char text[] = "log_level = info\n\0\n";
    ck_assert_ptr_null(mcpauth_config_parse(text, sizeof text - 1, "t.conf", err, sizeof err));
    ck_assert_str_eq(err, "t.conf: contains a NUL byte; not a text file");
}
END_TEST

START_TEST(bad_long_line)
{
    char err[512] = "";
    size_t n = 5000;
    char *text = malloc(n + 1);
    memset(text, 'x', n);
    text[n] = '\0';
    ck_assert_ptr_null(parse(text, err, sizeof err));
    ck_assert_str_eq(err, "t.conf:1: line longer than 4096 bytes");
    free(text);
}
END_TEST

START_TEST(file_missing)
{
    char err[512] = "";
    ck_assert_ptr_null(mcpauth_config_load("/nonexistent/mcpauth.conf", err, sizeof err));
    ck_assert_str_eq(err, "/nonexistent/mcpauth.conf: cannot open: No such file or directory");
}
END_TEST

START_TEST(file_directory)
{
    char err[512] = "";
    ck_assert_ptr_null(mcpauth_config_load("/", err, sizeof err));
    ck_assert_str_eq(err, "/: not a regular file");
}
END_TEST

/* The shipped example must always load: it is what `make install` puts in
 * sysconfdir and what the demo runs on. */
START_TEST(file_shipped_examples)
{
    const char *src = getenv("MCPAUTH_SRCDIR");
    char path[1024], err[512] = "";
    snprintf(path, sizeof path, "%s/examples/mcpauth.conf", src ? src : ".");
    mcpauth_config *cfg = mcpauth_config_load(path, err, sizeof err);
    ck_assert_msg(cfg != NULL, "%s", err);
    ck_assert_uint_ge(cfg->nresources, 2);
    mcpauth_config_free(cfg);
}
END_TEST

/* ---- out of memory: abort, never a configuration with a value missing ---- */

/* Every value of every kind of section, so that each allocation the
 * parser makes is one the loop below makes fail. */
static const char OOM_CONF[] =
    "log_level = debug\n"
    "default_resource = files\n"
    "jwt_algorithms = ES256 PS256\n"
    "runtime_dir = /nonexistent/run\n"
    "[issuer corp]\n"
    "issuer = https://login.example.com/corp\n"
    "jwks_uri = https://login.example.com/corp/keys\n"
    "introspection_endpoint = https://login.example.com/corp/introspect\n"
    "introspection_client_id = rs\n"
    "introspection_client_secret = s3cret\n"
    "[resource files]\n"
    "uri = https://mcp.example.com/mcp/files\n"
    "resource_metadata_url = https://mcp.example.com/~files/prm\n"
    "resource_name = Files\n"
    "authorization_servers = https://login.example.com/corp https://as.example.com\n"
    "scopes_supported = files:read files:write\n"
    "scopes_required = files:read\n"
    "scopes_required_post = files:write\n"
    "audiences = client-a client-b\n"
    "resource_documentation = https://docs.example.com/files\n"
    "resource_policy_uri = https://docs.example.com/policy\n"
    "resource_tos_uri = https://docs.example.com/tos\n"
    "backend = http://127.0.0.1:9000/mcp\n"
    "backend_socket = /run/mcp/files.sock\n"
    "backend_authorization = Bearer static\n"
    "allowed_origins = https://app.example.com *\n"
    "scope_header = X-Scope\n"
    "[policy deletes]\nresource = files\nmethod = tools/call\nname = delete_*\n"
    "scopes = files:write\n"
    "[authorization_server]\n"
    "issuer = https://as.example.com\n"
    "state_dir = /nonexistent/state\n"
    "introspection_client_id = rs2\n"
    "introspection_client_secret = s3cret2\n";

static void dg_str(FILE *f, const char *what, const char *v)
{
    fprintf(f, "%s=%s\n", what, v ? v : "(unset)");
}

static void dg_list(FILE *f, const char *what, const mcpauth_strlist *l)
{
    fprintf(f, "%s:%zu", what, l->n);
    for (size_t i = 0; i < l->n; i++)
        fprintf(f, " %s", l->v[i] ? l->v[i] : "(unset)");
    fputc('\n', f);
}

/* Every string and list of cfg as text: two configurations with the same
 * digest hold the same values. */
static char *digest(const mcpauth_config *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(f);
    dg_str(f, "file", cfg->file);
    dg_str(f, "runtime_dir", cfg->runtime_dir);
    dg_str(f, "ca_file", cfg->ca_file);
    dg_list(f, "jwt_algorithms", &cfg->jwt_algorithms);
    fprintf(f, "log=%d default=%s\n", cfg->log_level,
            cfg->default_resource ? cfg->default_resource->name : "(unset)");
    for (size_t i = 0; i < cfg->nissuers; i++) {
        const mcpauth_issuer *is = cfg->issuers[i];
        dg_str(f, "issuer.name", is->name);
        dg_str(f, "issuer", is->issuer);
        dg_str(f, "jwks_file", is->jwks_file);
        dg_str(f, "jwks_uri", is->jwks_uri);
        dg_str(f, "introspection_endpoint", is->introspection_endpoint);
        dg_str(f, "introspection_client_id", is->introspection_client_id);
        dg_str(f, "introspection_client_secret", is->introspection_client_secret);
    }
    for (size_t i = 0; i < cfg->nresources; i++) {
        const mcpauth_resource *r = &cfg->resources[i];
        const char *s[] = {r->name, r->uri, r->origin, r->path, r->host, r->metadata_path,
                           r->metadata_url, r->resource_name, r->resource_documentation,
                           r->resource_policy_uri, r->resource_tos_uri, r->backend,
                           r->backend_socket, r->backend_authorization, r->subject_header,
                           r->client_id_header, r->scope_header, r->metadata_url_path,
                           r->metadata_url_host, r->backend_ca_file, r->backend_client_cert,
                           r->backend_client_key, r->backend_pinned_pubkey};
        for (size_t k = 0; k < sizeof s / sizeof s[0]; k++)
            dg_str(f, "resource", s[k]);
        dg_list(f, "authorization_servers", &r->authorization_servers);
        dg_list(f, "scopes_supported", &r->scopes_supported);
        dg_list(f, "scopes_required", &r->scopes_required);
        for (int m = 0; m < 5; m++)
            dg_list(f, "scopes_required_method", &r->scopes_required_method[m]);
        dg_list(f, "audiences", &r->audiences);
        dg_list(f, "allowed_origins", &r->allowed_origins);
        for (size_t a = 0; a < r->authorization_servers.n; a++)
            dg_str(f, "resource.issuer", r->issuers && r->issuers[a] ? r->issuers[a]->issuer : NULL);
    }
    for (size_t i = 0; i < cfg->npolicies; i++) {
        const mcpauth_policy *po = cfg->policies[i];
        dg_str(f, "policy", po->name);
        dg_str(f, "policy.resource", po->resource_name);
        dg_str(f, "policy.method", po->method);
        dg_str(f, "policy.name", po->target);
        dg_list(f, "policy.scopes", &po->scopes);
    }
    if (cfg->as) {
        dg_str(f, "as.issuer", cfg->as->issuer);
        dg_str(f, "as.state_dir", cfg->as->state_dir);
        dg_str(f, "as.signing_alg", cfg->as->signing_alg);
        dg_str(f, "as.introspection_client_id", cfg->as->introspection_client_id);
        dg_str(f, "as.introspection_client_secret", cfg->as->introspection_client_secret);
        dg_list(f, "as.scopes_supported", &cfg->as->scopes_supported);
    }
    fclose(f);
    return buf;
}

/* Loads text with allocation n failing, for n = 1, 2, ... until a load
 * makes fewer allocations than n: every one of those must abort the
 * process, none may yield a configuration that differs from the full one.
 * Returns how many aborted. */
static unsigned long oom_loop(const char *text)
{
    char path[] = "/tmp/mcpauth-conf-XXXXXX", err[512] = "";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    mcpauth_config *ref = mcpauth_config_load(path, err, sizeof err);
    ck_assert_msg(ref != NULL, "%s", err);
    char *want = digest(ref);
    mcpauth_config_free(ref);

    unsigned long n, aborted = 0;
    for (n = 1; n < 100000; n++) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            int devnull = open("/dev/null", O_WRONLY);
            dup2(devnull, 2); /* one out_of_memory line per abort */
            mcpauth__alloc_fail_after(n);
            mcpauth_config *cfg = mcpauth_config_load(path, err, sizeof err);
            mcpauth__alloc_fail_after(0);
            if (!cfg)
                _exit(3);
            char *got = digest(cfg);
            _exit(strcmp(got, want) == 0 ? 0 : 2);
        }
        int st;
        ck_assert_int_eq(waitpid(pid, &st, 0), pid);
        if (WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT) {
            aborted++;
            continue;
        }
        ck_assert_msg(WIFEXITED(st), "allocation %lu: died of signal %d", n,
                      WIFSIGNALED(st) ? WTERMSIG(st) : 0);
        ck_assert_msg(WEXITSTATUS(st) != 2, "allocation %lu failed: a value went missing", n);
        ck_assert_msg(WEXITSTATUS(st) != 3, "allocation %lu failed: an error, not an abort", n);
        break; /* exit 0: n is past the last allocation */
    }
    unlink(path);
    free(want);
    ck_assert_uint_eq(aborted, n - 1); /* every allocation up to the last */
    return aborted;
}

/* The old parser, on a failed strdup, left that key unset and started
 * without it: here a backend_authorization, the backend's credential. */
START_TEST(oom_aborts_never_unsets)
{
    ck_assert_uint_gt(oom_loop(OOM_CONF), 0);
    /* One more value is one more allocation, and its failure aborts too
     * (the old strdup was outside the policy: no abort to count). */
    static const char without[] = RES_FILES;
    static const char with[] = RES_FILES "backend_authorization = Bearer static\n";
    ck_assert_uint_eq(oom_loop(with), oom_loop(without) + 1);
}
END_TEST

Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("good");
    tcase_add_test(tc, good_two_resources);
    tcase_add_test(tc, good_defaults);
    tcase_add_test(tc, good_stream_heartbeat);
    tcase_add_test(tc, good_max_concurrent_per_caller);
    tcase_add_test(tc, good_proxy_pool);
    tcase_add_test(tc, good_issuers);
    tcase_add_test(tc, good_authorization_server);
    tcase_add_test(tc, good_trailing_slash_kept_when_configured);
    tcase_add_test(tc, good_root_resource);
    tcase_add_test(tc, good_resource_metadata_url);
    tcase_add_test(tc, good_backend_tls);
    tcase_add_test(tc, file_shipped_examples);
    suite_add_tcase(s, tc);
    tc = tcase_create("bad");
    tcase_add_loop_test(tc, bad_config, 0, (int)(sizeof bad / sizeof bad[0]));
    tcase_add_test(tc, bad_nul_byte);
    tcase_add_test(tc, bad_secret_never_quoted);
    tcase_add_test(tc, bad_backend_tls);
    tcase_add_test(tc, bad_long_line);
    tcase_add_test(tc, file_missing);
    tcase_add_test(tc, file_directory);
    suite_add_tcase(s, tc);
    tc = tcase_create("oom");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, oom_aborts_never_unsets);
    suite_add_tcase(s, tc);
    return s;
}
