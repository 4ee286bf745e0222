/* RFC 9728 documents, built once per resource at start-up. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include <mcpauth/as.h>
#include <mcpauth/log.h>
#include <mcpauth/metadata.h>
#include "uri.h"

#include "alloc.h"
#include "metrics.h"

typedef struct {
    const mcpauth_resource *res;
    char *json;
    size_t len;
} md_doc;

struct mcpauth_metadata {
    const mcpauth_config *cfg;
    size_t ndocs;
    md_doc *docs;
    const mcpauth_resource *root; /* served at the bare well-known path */
    char cache_control[48];
    char *as_json;                /* RFC 8414 metadata of the built-in AS */
    size_t as_len;
    char *as_paths[3];            /* where clients look for it */
};

static json_object *strlist_json(const mcpauth_strlist *l)
{
    json_object *a = json_object_new_array();
    for (size_t i = 0; i < l->n; i++)
        json_object_array_add(a, json_object_new_string(l->v[i]));
    return a;
}

static char *build_doc(const mcpauth_resource *r)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "resource", json_object_new_string(r->uri));
    json_object_object_add(o, "authorization_servers", strlist_json(&r->authorization_servers));
    if (r->scopes_supported.n)
        json_object_object_add(o, "scopes_supported", strlist_json(&r->scopes_supported));
    json_object *bm = json_object_new_array();
    json_object_array_add(bm, json_object_new_string("header"));
    json_object_object_add(o, "bearer_methods_supported", bm);
    if (r->resource_name)
        json_object_object_add(o, "resource_name", json_object_new_string(r->resource_name));
    if (r->resource_documentation)
        json_object_object_add(o, "resource_documentation",
                               json_object_new_string(r->resource_documentation));
    if (r->resource_policy_uri)
        json_object_object_add(o, "resource_policy_uri",
                               json_object_new_string(r->resource_policy_uri));
    if (r->resource_tos_uri)
        json_object_object_add(o, "resource_tos_uri", json_object_new_string(r->resource_tos_uri));
    /* NOSLASHESCAPE: "resource" must be byte-identical to the configured URI,
     * and clients compare it as a string. */
    char *s = mcpauth__xstrdup(json_object_to_json_string_ext(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
    return s;
}

mcpauth_metadata *mcpauth_metadata_new(const mcpauth_config *cfg, char *err, size_t errlen)
{
    mcpauth_metadata *md = mcpauth__xcalloc(1, sizeof *md);
    md->docs = mcpauth__xcalloc(cfg->nresources, sizeof *md->docs);
    md->cfg = cfg;
    for (size_t i = 0; i < cfg->nresources; i++) {
        md_doc *d = &md->docs[md->ndocs++];
        d->res = &cfg->resources[i];
        d->json = build_doc(d->res);
        d->len = strlen(d->json);
    }
    /* The root form is unambiguous only with one resource or a chosen default;
     * a resource whose URI is a bare origin lives there anyway. */
    md->root = cfg->default_resource ? cfg->default_resource
               : cfg->nresources == 1 ? &cfg->resources[0]
                                      : NULL;
    snprintf(md->cache_control, sizeof md->cache_control, "public, max-age=%ld",
             cfg->metadata_max_age);
    if (cfg->as) {
        /* RFC 8414 §3.1 path insertion, OIDC's two placements (the MCP
         * clients' discovery order, requirements §1.3) */
        char *origin = NULL, *path = NULL;
        /* the issuer was validated when the configuration was loaded */
        md->as_json = mcpauth_as_metadata_json(cfg);
        mcpauth__uri_split(cfg->as->issuer, &origin, &path);
        md->as_len = strlen(md->as_json);
        size_t pl = strlen(path);
        while (pl > 0 && path[pl - 1] == '/')
            path[--pl] = '\0';
        if (asprintf(&md->as_paths[0], "/.well-known/oauth-authorization-server%s", path) < 0 ||
            asprintf(&md->as_paths[1], "/.well-known/openid-configuration%s", path) < 0 ||
            asprintf(&md->as_paths[2], "%s/.well-known/openid-configuration", path) < 0)
            mcpauth__oom("metadata paths");
        free(origin);
        free(path);
    }
    return md;
}

void mcpauth_metadata_free(mcpauth_metadata *md)
{
    if (!md)
        return;
    for (size_t i = 0; i < md->ndocs; i++)
        free(md->docs[i].json);
    free(md->docs);
    free(md->as_json);
    for (int i = 0; i < 3; i++)
        free(md->as_paths[i]);
    free(md);
}

static const md_doc *doc_of(const mcpauth_metadata *md, const mcpauth_resource *res)
{
    for (size_t i = 0; i < md->ndocs; i++)
        if (md->docs[i].res == res)
            return &md->docs[i];
    return NULL;
}

const char *mcpauth_metadata_json(const mcpauth_metadata *md, const mcpauth_resource *res)
{
    const md_doc *d = doc_of(md, res);
    return d ? d->json : NULL;
}

const mcpauth_resource *mcpauth_metadata_lookup(const mcpauth_metadata *md, const char *path,
                                                const char *host)
{
    const mcpauth_resource *found = NULL;
    int nfound = 0;
    for (size_t i = 0; i < md->ndocs; i++) {
        const mcpauth_resource *r = md->docs[i].res;
        const char *h;
        /* the path-inserted form (RFC 9728 §3.1), and resource_metadata_url
         * when it is elsewhere (the URL the challenges name, §5.1) */
        if (strcmp(r->metadata_path, path) == 0)
            h = r->host;
        else if (strcmp(r->metadata_url_path, path) == 0)
            h = r->metadata_url_host;
        else
            continue;
        /* Same path on two virtual hosts: the configured host decides. */
        if (host && strcasecmp(h, host) == 0)
            return r;
        found = r;
        nfound++;
    }
    if (nfound == 1)
        return found;
    if (nfound == 0 && strcmp(path, MCPAUTH_PRM_WELL_KNOWN) == 0)
        return md->root;
    return NULL;
}

/* The metrics (metrics_path): only to metrics_allow, only GET or HEAD
 * without a query; anything else gets 403 and no figure. */
static void serve_metrics(const mcpauth_config *cfg, const mcpauth_request *req,
                          mcpauth_response *resp)
{
    int head = strcmp(req->method, "HEAD") == 0;
    const char *why = NULL;
    if (!mcpauth__cidr_match(&cfg->metrics_allow, req->remote_addr))
        why = "address not in metrics_allow";
    else if (strcmp(req->method, "GET") != 0 && !head)
        why = "method other than GET or HEAD";
    else if (req->query[0])
        why = "query string";
    if (why) {
        mcpauth_log_security("metrics_refused", "reason", why, "client", req->remote_addr,
                             "method", req->method, NULL);
        mcpauth_response_error(resp, 403, "forbidden", "metrics are not available to this request");
        return;
    }
    mcpauth__metrics *m = mcpauth__metrics_global(cfg);
    if (!m) {
        mcpauth_response_error(resp, 503, "unavailable",
                               "metrics are unavailable (see the log of mcpauth-metadata)");
        return;
    }
    size_t len = 0;
    char *text = mcpauth__metrics_render(m, &len);
    mcpauth_response_set_status(resp, 200);
    mcpauth_response_header(resp, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    mcpauth_response_header(resp, "Cache-Control", "no-store");
    mcpauth_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (head) {
        char cl[32];
        snprintf(cl, sizeof cl, "%zu", len);
        mcpauth_response_header(resp, "Content-Length", cl);
        mcpauth_response_start(resp);
    } else {
        mcpauth_response_send(resp, text, len);
    }
    free(text);
}

void mcpauth_metadata_handle(const mcpauth_metadata *md, const mcpauth_request *req,
                             mcpauth_response *resp)
{
    const char *m = req->method;
    int head = strcmp(m, "HEAD") == 0;
    mcpauth__metrics_attach(md->cfg); /* once: listed among the processes */
    if (md->cfg->metrics && md->cfg->metrics_path && strcmp(req->path, md->cfg->metrics_path) == 0) {
        serve_metrics(md->cfg, req, resp);
        return;
    }
    mcpauth_response_header(resp, "Access-Control-Allow-Origin", "*");
    mcpauth_response_header(resp, "X-Content-Type-Options", "nosniff");

    if (strcmp(m, "GET") != 0 && !head && strcmp(m, "OPTIONS") != 0) {
        mcpauth_response_header(resp, "Allow", "GET, HEAD, OPTIONS");
        mcpauth_response_error(resp, 405, "method_not_allowed",
                               "protected resource metadata supports GET, HEAD and OPTIONS");
        return;
    }
    const char *doc = NULL;
    size_t doclen = 0;
    for (int i = 0; md->as_json && i < 3; i++)
        if (strcmp(req->path, md->as_paths[i]) == 0) {
            doc = md->as_json;
            doclen = md->as_len;
        }
    const char *host = mcpauth_request_param(req, "HTTP_HOST");
    const mcpauth_resource *res = doc ? NULL : mcpauth_metadata_lookup(md, req->path, host);
    if (res) {
        const md_doc *d = doc_of(md, res);
        doc = d->json;
        doclen = d->len;
    }
    if (!doc) {
        mcpauth_log(MCPAUTH_LOG_INFO, "metadata_not_found", "path", req->path, "client",
                    req->remote_addr, NULL);
        mcpauth_response_error(resp, 404, "not_found",
                               "no protected resource metadata at this path");
        return;
    }
    if (strcmp(m, "OPTIONS") == 0) {
        mcpauth_response_set_status(resp, 204);
        mcpauth_response_header(resp, "Access-Control-Allow-Methods", "GET, HEAD, OPTIONS");
        mcpauth_response_header(resp, "Access-Control-Allow-Headers", MCPAUTH_CORS_ALLOW_HEADERS);
        mcpauth_response_header(resp, "Access-Control-Max-Age", "86400");
        mcpauth_response_send(resp, NULL, 0);
        return;
    }
    mcpauth_response_set_status(resp, 200);
    mcpauth_response_header(resp, "Content-Type", "application/json");
    mcpauth_response_header(resp, "Cache-Control", md->cache_control);
    if (head) {
        char cl[32];
        snprintf(cl, sizeof cl, "%zu", doclen);
        mcpauth_response_header(resp, "Content-Length", cl);
        mcpauth_response_start(resp);
    } else {
        mcpauth_response_send(resp, doc, doclen);
    }
}
