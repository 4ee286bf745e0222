/* mod_mcpauth: the gate (fcgi/gate.c) inside Apache 2.4, for hosts that can
 * load modules.  Same decisions, same refusals, same log lines as
 * mcpauth-gate behind mod_authnz_fcgi, without the FastCGI round trip and
 * the connection per request.  Uses only the public API of libmcpauth.
 *
 *   McpauthConfig FILE     (server config) the mcpauth.conf to use
 *   McpauthGate On|Off     (directory, location) check Bearer tokens here
 *
 * The configuration is read and checked in the parent (post_config, which
 * refuses to start on a defect); each child builds its own validator after
 * the fork (child_init) and shares it, read-only, between its threads.
 *
 * Log lines: with `log = stderr` (the default) they go through Apache's
 * logging (ap_log_error), so they land in the ErrorLog of the request's
 * virtual host (or syslog, if that is where ErrorLog points) at the
 * matching level; `log = file:` and `log = syslog` are opened by each child
 * after the fork, as Apache's user, like the FastCGI programs do. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include <apr_strings.h>
#include <httpd.h>
#include <http_config.h>
#include <http_core.h>
#include <http_log.h>
#include <http_protocol.h>
#include <http_request.h>
#include <mod_auth.h>

#include <mcpauth/mcpauth.h>

module AP_MODULE_DECLARE_DATA mcpauth_module;

/* What each request sees; set in the parent before the fork. */
static mcpauth_config *g_cfg;
static mcpauth_validator *g_validator; /* per child */
static const char *g_file;             /* McpauthConfig, NULL: the default */
static int g_gate_used;                /* some McpauthGate On was read */
static server_rec *g_server;           /* main server: lines outside requests */
/* The request this thread is checking: its lines go to its host's log. */
static __thread request_rec *t_request;

/* mcpauth_log_fn: one library line to Apache's error log. */
static void log_to_apache(void *arg, mcpauth_log_level level, int security, const char *line,
                          size_t len)
{
    (void)arg;
    (void)security; /* the line says security=1 */
    static const int ap_level[] = {APLOG_ERR, APLOG_WARNING, APLOG_INFO, APLOG_DEBUG};
    request_rec *r = t_request;
    server_rec *s = r ? r->server : g_server;
    if (!s) { /* before post_config: nothing to log into yet */
        fprintf(stderr, "%.*s\n", (int)len, line);
        return;
    }
    /* ap_log_error, not ap_log_rerror: the latter appends the Referer, a
     * client's text, after our line (fail2ban's filter ends at it). */
    ap_log_error(APLOG_MARK, ap_level[level], 0, s, "%.*s", (int)len, line);
}

typedef struct {
    int gate; /* -1 unset, 0 off, 1 on */
} dir_conf;

static void *create_dir_conf(apr_pool_t *p, char *dir)
{
    (void)dir;
    dir_conf *c = apr_pcalloc(p, sizeof *c);
    c->gate = -1;
    return c;
}

static void *merge_dir_conf(apr_pool_t *p, void *basev, void *addv)
{
    dir_conf *base = basev, *add = addv, *c = apr_pcalloc(p, sizeof *c);
    c->gate = add->gate != -1 ? add->gate : base->gate;
    return c;
}

static const char *set_config(cmd_parms *cmd, void *dc, const char *arg)
{
    (void)dc;
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    if (err)
        return err;
    if (g_file)
        return "McpauthConfig may be given once: one configuration serves every location";
    g_file = ap_server_root_relative(cmd->pool, arg);
    return g_file ? NULL : apr_pstrcat(cmd->pool, "McpauthConfig: invalid path ", arg, NULL);
}

static const char *set_gate(cmd_parms *cmd, void *dcv, int on)
{
    (void)cmd;
    dir_conf *dc = dcv;
    dc->gate = on;
    if (on)
        g_gate_used = 1;
    return NULL;
}

static const command_rec commands[] = {
    AP_INIT_TAKE1("McpauthConfig", set_config, NULL, RSRC_CONF,
                  "the mcpauth.conf file (default: the library's, SYSCONFDIR/mcpauth/mcpauth.conf)"),
    /* not in .htaccess: the configuration is loaded at start-up only where
     * the server configuration switches the gate on */
    AP_INIT_FLAG("McpauthGate", set_gate, NULL, ACCESS_CONF,
                 "On: admit requests only with a Bearer token issued for the resource"),
    {NULL},
};

static int pre_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp)
{
    (void)pconf;
    (void)plog;
    (void)ptemp;
    /* a restart reads the configuration afresh */
    g_file = NULL;
    g_gate_used = 0;
    return OK;
}

static apr_status_t config_cleanup(void *cfg)
{
    if (g_cfg == cfg)
        g_cfg = NULL;
    mcpauth_config_free(cfg);
    return APR_SUCCESS;
}

static apr_status_t curl_cleanup(void *unused)
{
    (void)unused;
    curl_global_cleanup();
    return APR_SUCCESS;
}

static apr_status_t log_cleanup(void *unused)
{
    (void)unused;
    mcpauth_log_set_callback(NULL, NULL);
    g_server = NULL;
    return APR_SUCCESS;
}

/* Reads and checks the configuration and its key files, as
 * `mcpauth-gate --check` does.  NULL with the reason in err. */
static mcpauth_config *load_checked(const char *file, char *err, size_t errlen)
{
    char why[512];
    mcpauth_config *cfg = mcpauth_config_load(file, why, sizeof why);
    if (!cfg) {
        snprintf(err, errlen, "configuration error: %s", why);
        return NULL;
    }
    /* the key files; the children read them again after the fork.  Only
     * them: runtime_dir (revocation list, shared cache) belongs to
     * Apache's user, and root here must neither create nor judge its files */
    if (mcpauth_validator_check(cfg, why, sizeof why) != 0) {
        snprintf(err, errlen, "cannot start: %s", why);
        mcpauth_config_free(cfg);
        return NULL;
    }
    return cfg;
}

/* Loaded but never switched on, and no file named: nothing to check, so
 * loading the module alone cannot stop Apache. */
static int needed(void)
{
    return g_gate_used || g_file;
}

static const char *config_file(void)
{
    return g_file ? g_file : mcpauth_config_default_file();
}

/* apache2 -t (apachectl configtest, run before every graceful restart):
 * a defect fails the test instead of stopping the running server at the
 * restart. */
static void test_config(apr_pool_t *pconf, server_rec *s)
{
    (void)pconf;
    (void)s;
    if (!needed())
        return;
    char err[600];
    mcpauth_log_init("mod_mcpauth", MCPAUTH_LOG_WARN);
    mcpauth_config *cfg = load_checked(config_file(), err, sizeof err);
    char why[512];
    if (cfg && mcpauth_log_check(cfg, why, sizeof why) != 0) {
        snprintf(err, sizeof err, "cannot start: %s", why);
        mcpauth_config_free(cfg);
        cfg = NULL;
    }
    if (!cfg) {
        fprintf(stderr, "mcpauth: %s\n", err);
        exit(1); /* test_config cannot fail otherwise; -t exits next anyway */
    }
    mcpauth_config_free(cfg);
}

/* Runs in the parent (as root) on every start and restart: a defect stops
 * Apache with the reason in the error log. */
static int post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp, server_rec *s)
{
    (void)plog;
    (void)ptemp;
    g_cfg = NULL;
    if (!needed())
        return OK;
    const char *file = config_file();
    /* once per generation, before any thread (libcurl's rule); balanced
     * when the generation's pool goes */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "mcpauth: cannot initialise libcurl");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    apr_pool_cleanup_register(pconf, NULL, curl_cleanup, apr_pool_cleanup_null);
    mcpauth_log_init("mod_mcpauth", MCPAUTH_LOG_INFO);
    g_server = s;
    mcpauth_log_set_callback(log_to_apache, NULL);
    /* the module may be unloaded before the next generation's post_config */
    apr_pool_cleanup_register(pconf, NULL, log_cleanup, apr_pool_cleanup_null);
    char err[600];
    mcpauth_config *cfg = load_checked(file, err, sizeof err);
    if (!cfg) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "mcpauth: %s", err);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    apr_pool_cleanup_register(pconf, cfg, config_cleanup, apr_pool_cleanup_null);
    mcpauth_log_set_level((mcpauth_log_level)cfg->log_level);
    g_cfg = cfg;
    /* once per start or restart, not on the first of the two passes */
    if (ap_state_query(AP_SQ_MAIN_STATE) != AP_SQ_MS_CREATE_PRE_CONFIG) {
        char n[16];
        snprintf(n, sizeof n, "%lu", (unsigned long)cfg->nresources);
        mcpauth_log(MCPAUTH_LOG_INFO, "start", "config", file, "version", MCPAUTH_VERSION,
                    "mode", "apache-module", "resources", n, NULL);
    }
    return OK;
}

/* After the fork and after the child dropped its privileges: key files
 * must be readable by Apache's user, as they must be by the gate's.  The
 * validator lives as long as the process: freeing it in a pchild cleanup
 * could pull it from under a worker still answering when the child is
 * stopped. */
static void child_init(apr_pool_t *pchild, server_rec *s)
{
    (void)pchild;
    if (!g_cfg)
        return;
    char err[512];
    /* the parent logs through Apache; a file is opened here, by Apache's
     * user, so the FastCGI programs (same user) can append to it too */
    if (mcpauth_log_open(g_cfg, err, sizeof err) != 0)
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s,
                     "mcpauth: log lines go to this error log instead: %s", err);
    g_validator = mcpauth_validator_new(g_cfg, err, sizeof err);
    if (!g_validator)
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s,
                     "mcpauth: this process answers 503 to protected requests: %s", err);
}

/* --- one request ----------------------------------------------------------- */

typedef struct {
    request_rec *r;
    const char *uri; /* the request target as sent: path and query */
} req_ctx;

/* The target as the client sent it (r->uri is decoded and normalised; the
 * library refuses the forms where the two would differ).  Origin form as
 * is; absolute form reduced to its path and query. */
static const char *raw_target(request_rec *r)
{
    const char *u = r->unparsed_uri ? r->unparsed_uri : "";
    if (u[0] == '/' || u[0] == '\0' || strcmp(u, "*") == 0)
        return u;
    const char *p = strstr(u, "://");
    p = p ? strpbrk(p + 3, "/?") : NULL;
    if (!p)
        return "/";
    return *p == '?' ? apr_pstrcat(r->pool, "/", p, NULL) : p;
}

/* CGI names from request_rec, as mod_authnz_fcgi would send them to the
 * gate; anything else from the request environment (MCPAUTH_RESOURCE set
 * with SetEnvIf, say). */
static const char *cgi_param(void *ctx, const char *name)
{
    req_ctx *c = ctx;
    request_rec *r = c->r;
    if (strncmp(name, "HTTP_", 5) == 0) {
        char h[128];
        size_t n = strlen(name + 5);
        if (n == 0 || n >= sizeof h)
            return NULL;
        for (size_t i = 0; i <= n; i++)
            h[i] = name[5 + i] == '_' ? '-' : name[5 + i];
        return apr_table_get(r->headers_in, h);
    }
    if (strcmp(name, "REQUEST_METHOD") == 0)
        return r->method;
    if (strcmp(name, "REQUEST_URI") == 0)
        return c->uri;
    if (strcmp(name, "REMOTE_ADDR") == 0)
        return r->useragent_ip;
    if (strcmp(name, "QUERY_STRING") == 0)
        return r->args ? r->args : "";
    if (strcmp(name, "CONTENT_LENGTH") == 0)
        return apr_table_get(r->headers_in, "Content-Length");
    if (strcmp(name, "CONTENT_TYPE") == 0)
        return apr_table_get(r->headers_in, "Content-Type");
    return apr_table_get(r->subprocess_env, name);
}

static ssize_t no_body(void *ctx, char *buf, size_t len)
{
    (void)ctx;
    (void)buf;
    (void)len;
    return 0; /* the gate never reads the body */
}

/* The library writes a refusal CGI-style ("Status: ...", headers, blank
 * line, body); it is collected here and then given to Apache. */
typedef struct {
    apr_pool_t *pool;
    char *buf;
    size_t len, cap;
} capture;

#define CAPTURE_MAX (64 * 1024)

static int capture_write(void *ctx, const char *buf, size_t len)
{
    capture *c = ctx;
    if (len > CAPTURE_MAX - c->len)
        return -1;
    if (c->len + len + 1 > c->cap) {
        size_t cap = c->cap ? c->cap : 1024;
        while (cap < c->len + len + 1)
            cap *= 2;
        char *nb = apr_palloc(c->pool, cap);
        if (c->len)
            memcpy(nb, c->buf, c->len);
        c->buf = nb;
        c->cap = cap;
    }
    memcpy(c->buf + c->len, buf, len);
    c->len += len;
    c->buf[c->len] = '\0';
    return 0;
}

/* Sends what the library wrote as this request's response: its status,
 * its headers and its JSON body, not Apache's error page.  DONE tells
 * Apache the request has been answered. */
static int send_captured(request_rec *r, const capture *c)
{
    int status = HTTP_INTERNAL_SERVER_ERROR;
    const char *p = c->buf ? c->buf : "", *end = p + c->len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            break;
        size_t n = (size_t)(eol - p);
        if (n > 0 && p[n - 1] == '\r')
            n--;
        const char *line = p;
        p = eol + 1;
        if (n == 0)
            break; /* end of the head */
        const char *colon = memchr(line, ':', n);
        if (!colon)
            continue;
        char *name = apr_pstrmemdup(r->pool, line, (apr_size_t)(colon - line));
        const char *v = colon + 1;
        while (v < line + n && *v == ' ')
            v++;
        char *value = apr_pstrmemdup(r->pool, v, (apr_size_t)(line + n - v));
        if (strcasecmp(name, "Status") == 0)
            status = atoi(value);
        else if (strcasecmp(name, "Content-Type") == 0)
            ap_set_content_type(r, value);
        else if (strcasecmp(name, "Content-Length") != 0) /* Apache counts */
            apr_table_addn(r->err_headers_out, name, value);
    }
    if (status < 100 || status > 599)
        status = HTTP_INTERNAL_SERVER_ERROR;
    r->status = status;
    apr_bucket_alloc_t *ba = r->connection->bucket_alloc;
    apr_bucket_brigade *bb = apr_brigade_create(r->pool, ba);
    if (p < end)
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_pool_create(p, (apr_size_t)(end - p), r->pool, ba));
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(ba));
    if (ap_pass_brigade(r->output_filters, bb) != APR_SUCCESS)
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "mcpauth: client gone while refused");
    return DONE;
}

static void set_env(request_rec *r, const char *name, const char *value)
{
    if (value && *value)
        apr_table_setn(r->subprocess_env, name, apr_pstrdup(r->pool, value));
}

static int refuse_unavailable(request_rec *r, const mcpauth_request *req)
{
    capture c = {r->pool, NULL, 0, 0};
    mcpauth_response resp;
    mcpauth_response_init(&resp, (mcpauth_sink){capture_write, NULL, &c});
    mcpauth_log(MCPAUTH_LOG_ERROR, "validator_unavailable", "path", req->path, "client",
                req->remote_addr, NULL);
    mcpauth_response_header(&resp, "Retry-After", "5");
    mcpauth_response_error(&resp, 503, "temporarily_unavailable",
                           "token validation is not available");
    return send_captured(r, &c);
}

static int check_request(request_rec *r);

/* check_authn: runs where McpauthGate is On and the Require rules need a
 * user.  Exactly fcgi/gate.c's handle(), after binding.c's serve_one(). */
static int check_authn(request_rec *r)
{
    dir_conf *dc = ap_get_module_config(r->per_dir_config, &mcpauth_module);
    if (dc->gate != 1)
        return DECLINED;
    const char *type = ap_auth_type(r);
    if (type && strcasecmp(type, "Bearer") != 0)
        return DECLINED; /* another scheme's module answers */
    if (!g_cfg) { /* cannot happen: McpauthGate On makes post_config load it */
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "mcpauth: no configuration loaded");
        return HTTP_INTERNAL_SERVER_ERROR;
    }

    t_request = r;
    int rc = check_request(r);
    t_request = NULL;
    return rc;
}

/* check_authn's work, with t_request set. */
static int check_request(request_rec *r)
{
    req_ctx ctx = {r, raw_target(r)};
    mcpauth_request req;
    capture c = {r->pool, NULL, 0, 0};
    int rc = mcpauth_request_init(&req, cgi_param, no_body, &ctx);
    if (rc < 0) {
        mcpauth_response resp;
        mcpauth_response_init(&resp, (mcpauth_sink){capture_write, NULL, &c});
        mcpauth_request_refuse(&req, rc, &resp);
        return send_captured(r, &c);
    }
    /* CORS preflights carry no credentials by design: admitted as the
     * anonymous (empty) user, so "Require valid-user" lets them through. */
    if (strcmp(req.method, "OPTIONS") == 0) {
        r->user = "";
        r->ap_auth_type = "Bearer";
        return OK;
    }
    if (!g_validator)
        return refuse_unavailable(r, &req);
    const mcpauth_resource *res = mcpauth_request_resource(g_cfg, &req);
    if (!res) {
        mcpauth_response resp;
        mcpauth_response_init(&resp, (mcpauth_sink){capture_write, NULL, &c});
        mcpauth_log(MCPAUTH_LOG_ERROR, "no_resource", "path", req.path, "client",
                    req.remote_addr, NULL);
        mcpauth_response_error(&resp, 404, "not_found", "no protected resource at this path");
        return send_captured(r, &c);
    }
    mcpauth_decision d;
    mcpauth_validate_request(g_validator, res, &req, NULL, &d);
    if (d.verdict != MCPAUTH_ALLOW) {
        mcpauth_response resp;
        mcpauth_response_init(&resp, (mcpauth_sink){capture_write, NULL, &c});
        mcpauth_decision_respond(&d, res, &resp);
        return send_captured(r, &c);
    }
    r->user = apr_pstrdup(r->pool, d.id.subject);
    r->ap_auth_type = "Bearer";
    set_env(r, "MCP_SUBJECT", d.id.subject);
    set_env(r, "MCP_CLIENT_ID", d.id.client_id);
    set_env(r, "MCP_SCOPE", d.id.scope);
    set_env(r, "MCP_ISSUER", d.id.issuer);
    set_env(r, "MCP_RESOURCE", res->uri);
    set_env(r, "REMOTE_USER", d.id.subject);
    return OK;
}

/* The token is for this server only: nothing after authentication (a CGI
 * program, a proxied backend, a log format) may see it.  Fixups run after
 * every authentication of this request and before its handler. */
static int fixups(request_rec *r)
{
    dir_conf *dc = ap_get_module_config(r->per_dir_config, &mcpauth_module);
    if (dc->gate == 1)
        apr_table_unset(r->headers_in, "Authorization");
    return DECLINED;
}

static void register_hooks(apr_pool_t *p)
{
    (void)p;
    ap_hook_pre_config(pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_test_config(test_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_check_authn(check_authn, NULL, NULL, APR_HOOK_MIDDLE, AP_AUTH_INTERNAL_PER_CONF);
    /* last: after other fixups that may still authenticate subrequests
     * (mod_dir's index lookups) */
    ap_hook_fixups(fixups, NULL, NULL, APR_HOOK_REALLY_LAST);
}

AP_DECLARE_MODULE(mcpauth) = {
    STANDARD20_MODULE_STUFF,
    create_dir_conf,
    merge_dir_conf,
    NULL,
    NULL,
    commands,
    register_hooks,
#ifdef AP_MODULE_FLAG_NONE
    AP_MODULE_FLAG_NONE,
#endif
};
