/* The built-in authorization server; see as.h.  Endpoints live below
 * ISSUER/oauth2/: authorize, token, register, introspect, revoke, jwks. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <mcpauth/as.h>
#include <mcpauth/log.h>
#include <mcpauth/uri.h>
#include <mcpauth/util.h>

#include "alloc.h"
#include "cimd.h"
#include "fetch.h"
#include "jose.h"
#include "keys.h"
#include "revoked.h"
#include "store.h"

#define FORM_MAX (64 * 1024)
#define REG_MAX (16 * 1024)
#define CSRF_WINDOW 600

struct mcpauth_as {
    const mcpauth_config *cfg;
    const mcpauth_as_config *ac;
    mcpauth_store *store;
    mcpauth_cimd *cimd;
    mcpauth__revoked *revoked;  /* shared with the gate and the proxy */
    unsigned char secret[MCPAUTH_SECRET_BYTES]; /* HMAC key for CSRF tokens */
    pthread_mutex_t key_lock;   /* guards signer, jwks, key_checked */
    mcpauth_signer *signer;
    char *jwks;                 /* public JWKS text */
    mcpauth_jwks *verify;       /* the same keys, parsed, to verify our own tokens */
    time_t key_checked;
    char prefix[2048];          /* path of ISSUER/oauth2 */
};

/* ------------------------------------------------------------ utilities */

void mcpauth_as_endpoint(const mcpauth_config *cfg, const char *name, char *buf, size_t cap)
{
    const char *iss = cfg->as->issuer;
    size_t n = strlen(iss);
    while (n > 0 && iss[n - 1] == '/')
        n--;
    snprintf(buf, cap, "%.*s/oauth2/%s", (int)n, iss, name);
}

static int random_token(char *out, size_t cap, size_t bytes)
{
    unsigned char raw[64];
    if (bytes > sizeof raw || RAND_bytes(raw, (int)bytes) != 1)
        return -1;
    return mcpauth_b64url_encode(raw, bytes, out, cap) < 0 ? -1 : 0;
}

/* open_memstream under the abort policy (alloc.h): a page or redirect
 * built from a stream that ran out of memory would be cut short. */
static FILE *memstream(char **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    return mcpauth__check(open_memstream(buf, len), "open_memstream");
}

static void memstream_close(FILE *f, char **buf)
{
    if (fclose(f) != 0 || !*buf)
        mcpauth__oom("open_memstream");
}

/* One x-www-form-urlencoded value ('+' is a space, %XX escapes) into out.
 * -1 when undecodable, too long, or holding a NUL. */
static int form_decode(const char *in, size_t len, char *out, size_t cap)
{
    char *tmp = mcpauth__xmalloc(len + 1);
    for (size_t i = 0; i < len; i++)
        tmp[i] = in[i] == '+' ? ' ' : in[i];
    tmp[len] = '\0';
    int dl = 0;
    char *dec = curl_easy_unescape(NULL, tmp, (int)len, &dl);
    free(tmp);
    int ok = dec && (size_t)dl < cap && !memchr(dec, '\0', (size_t)dl);
    if (ok)
        memcpy(out, dec, (size_t)dl + 1);
    curl_free(dec);
    return ok ? 0 : -1;
}

/* One parameter of an x-www-form-urlencoded string.  1 found (decoded into
 * out), 0 absent, -1 present twice (RFC 6749 §3.1) or undecodable. */
static int form_get(const char *form, const char *key, char *out, size_t cap)
{
    size_t kl = strlen(key);
    int found = 0;
    if (cap)
        out[0] = '\0';
    for (const char *p = form; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len >= kl && strncmp(p, key, kl) == 0 && (len == kl || p[kl] == '=')) {
            if (found)
                return -1;
            found = 1;
            if (len > kl && form_decode(p + kl + 1, len - kl - 1, out, cap) < 0)
                return -1;
        }
        p = amp ? amp + 1 : NULL;
    }
    return found;
}

/* HTTP Basic credentials into id and secret, each form-decoded (RFC 6749
 * §2.3.1 encodes them before Basic).  0, or -1 when malformed. */
static int parse_basic(const char *authz, char *id, size_t idcap, char *secret, size_t seccap)
{
    const char *b = authz + 6; /* after "Basic " */
    while (*b == ' ')
        b++;
    size_t bl = strlen(b);
    unsigned char raw[3000];
    int n = bl < 4000 ? EVP_DecodeBlock(raw, (const unsigned char *)b, (int)bl) : -1;
    if (n < 0)
        return -1;
    while (n > 0 && raw[n - 1] == '\0') /* padding */
        n--;
    const unsigned char *colon = memchr(raw, ':', (size_t)n);
    int rc = colon && form_decode((const char *)raw, (size_t)(colon - raw), id, idcap) == 0 &&
                     form_decode((const char *)colon + 1, (size_t)(raw + n - colon - 1), secret,
                                 seccap) == 0
                 ? 0
                 : -1;
    OPENSSL_cleanse(raw, sizeof raw);
    return rc;
}

static void html_escape(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default:
            if ((unsigned char)*s < 0x20 && *s != '\t')
                fputc('?', f);
            else
                fputc(*s, f);
        }
    }
}

static void security_headers(mcpauth_response *resp, const char *form_action)
{
    char csp[2300];
    snprintf(csp, sizeof csp,
             "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'%s%s; "
             "frame-ancestors 'none'; base-uri 'none'",
             form_action ? " " : "", form_action ? form_action : "");
    mcpauth_response_header(resp, "Content-Security-Policy", csp);
    mcpauth_response_header(resp, "X-Frame-Options", "DENY");
    mcpauth_response_header(resp, "X-Content-Type-Options", "nosniff");
    mcpauth_response_header(resp, "Referrer-Policy", "no-referrer");
    mcpauth_response_header(resp, "Cache-Control", "no-store");
}

static void send_page(mcpauth_response *resp, int status, char *html, size_t len)
{
    mcpauth_response_set_status(resp, status);
    mcpauth_response_header(resp, "Content-Type", "text/html; charset=utf-8");
    mcpauth_response_send(resp, html, len);
}

static const char page_head[] =
    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
    "<meta name=\"viewport\" content=\"width=device-width\"><title>%s</title>"
    "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:3em auto;padding:0 1em}"
    ".warn{background:#fff4ce;padding:.5em 1em;border-left:4px solid #c90}"
    "code{background:#eee;padding:0 .3em}button{font-size:1em;padding:.4em 1.2em;margin-right:1em}"
    "</style></head><body>";

/* An error shown to the user, never a redirect: the client or its redirect
 * URI is not trusted (RFC 6749 §4.1.2.1). */
static void error_page(mcpauth_response *resp, int status, const char *title, const char *msg)
{
    char *buf;
    size_t len;
    FILE *f = memstream(&buf, &len);
    fprintf(f, page_head, "Authorization error");
    fputs("<h1>", f);
    html_escape(f, title);
    fputs("</h1><p>", f);
    html_escape(f, msg);
    fputs("</p></body></html>\n", f);
    memstream_close(f, &buf);
    security_headers(resp, NULL);
    send_page(resp, status, buf, len);
    free(buf);
}

static void json_reply(mcpauth_response *resp, int status, json_object *o)
{
    mcpauth_response_header(resp, "Cache-Control", "no-store");
    mcpauth_response_header(resp, "Pragma", "no-cache");
    mcpauth_response_json(resp, status,
                          json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                                JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
}

static void oauth_error(mcpauth_response *resp, int status, const char *error, const char *desc)
{
    mcpauth_response_header(resp, "Pragma", "no-cache");
    mcpauth_response_error(resp, status, error, desc);
}

static void cors_public(mcpauth_response *resp)
{
    mcpauth_response_header(resp, "Access-Control-Allow-Origin", "*");
}

/* The body (bounded, see mcpauth_request_body); a NUL byte makes it
 * unreadable: forms and JSON never hold one. */
static char *read_all(const mcpauth_request *req, size_t max, ssize_t *len)
{
    char *buf = mcpauth_request_body(req, max, len);
    if (buf && memchr(buf, '\0', (size_t)*len)) {
        free(buf);
        *len = -1;
        return NULL;
    }
    return buf;
}

/* ------------------------------------------------------------------ keys */

/* The signer and JWKS, reloaded at most every 30 s so a key rotated by
 * `mcpauth rotate-key` reaches every process without a restart. */
static int refresh_keys(mcpauth_as *as, time_t now, char *err, size_t errlen)
{
    if (as->signer && now - as->key_checked < 30)
        return 0;
    as->key_checked = now;
    mcpauth_signer *s = mcpauth_keys_load_current(as->store, err, errlen);
    if (!s)
        return as->signer ? 0 : -1;
    char *jwks = mcpauth_keys_jwks(as->store, now - as->ac->access_token_ttl - 60, err, errlen);
    mcpauth_jwks *set = jwks ? mcpauth_jwks_parse(jwks, strlen(jwks), err, errlen) : NULL;
    if (!set) {
        free(jwks);
        mcpauth_signer_free(s);
        return as->signer ? 0 : -1;
    }
    mcpauth_signer_free(as->signer);
    free(as->jwks);
    if (as->verify)
        mcpauth_jwks_unref(as->verify);
    as->signer = s;
    as->jwks = jwks;
    as->verify = set;
    return 0;
}

/* ---------------------------------------------------------- our own JWTs */

/* Claims of an access token this AS issued and that is still valid, or
 * NULL.  Used by introspection and revocation. */
static json_object *own_token_claims(mcpauth_as *as, const char *token, time_t now)
{
    const char *d1 = strchr(token, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (!d1 || !d2 || strchr(d2 + 1, '.'))
        return NULL;
    unsigned char hbuf[1024], pbuf[8192], sig[MCPAUTH_JWS_SIG_MAX];
    ssize_t hl = mcpauth_b64url_decode(token, (size_t)(d1 - token), hbuf, sizeof hbuf - 1);
    ssize_t pl = mcpauth_b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), pbuf, sizeof pbuf - 1);
    ssize_t sl = mcpauth_b64url_decode(d2 + 1, strlen(d2 + 1), sig, sizeof sig);
    if (hl <= 0 || pl <= 0 || sl <= 0)
        return NULL;
    hbuf[hl] = '\0';
    pbuf[pl] = '\0';
    json_object *h = json_tokener_parse((const char *)hbuf);
    const char *alg = mcpauth__json_member_str(h, "alg", NULL);
    const char *kid = mcpauth__json_member_str(h, "kid", NULL);
    mcpauth_alg a = alg ? mcpauth_alg_from_name(alg) : MCPAUTH_ALG_UNKNOWN;
    json_object *claims = NULL;
    char kerr[256];
    pthread_mutex_lock(&as->key_lock);
    refresh_keys(as, now, kerr, sizeof kerr); /* another process may have rotated */
    const mcpauth_jwk *k = as->verify && kid && a != MCPAUTH_ALG_UNKNOWN
                               ? mcpauth_jwks_find(as->verify, kid, a)
                               : NULL;
    int ok = k && mcpauth_jws_verify(k, a, token, (size_t)(d2 - token), sig, (size_t)sl);
    pthread_mutex_unlock(&as->key_lock);
    json_object_put(h);
    if (!ok)
        return NULL;
    claims = json_tokener_parse((const char *)pbuf);
    json_object *v;
    const char *iss = mcpauth__json_member_str(claims, "iss", NULL);
    if (!claims || !json_object_is_type(claims, json_type_object) ||
        !json_object_object_get_ex(claims, "exp", &v) || json_object_get_int64(v) <= now || !iss ||
        strcmp(iss, as->ac->issuer) != 0) {
        json_object_put(claims);
        return NULL;
    }
    return claims;
}

static char *mint_access_token(mcpauth_as *as, const mcpauth_grant *g, time_t now)
{
    char jti[48];
    if (random_token(jti, sizeof jti, 18) < 0)
        return NULL;
    json_object *c = json_object_new_object();
    json_object_object_add(c, "iss", json_object_new_string(as->ac->issuer));
    json_object_object_add(c, "sub", json_object_new_string(g->user));
    json_object_object_add(c, "aud", json_object_new_string(g->resource));
    json_object_object_add(c, "client_id", json_object_new_string(g->client_id));
    json_object_object_add(c, "scope", json_object_new_string(g->scope ? g->scope : ""));
    json_object_object_add(c, "iat", json_object_new_int64(now));
    json_object_object_add(c, "exp", json_object_new_int64(now + as->ac->access_token_ttl));
    json_object_object_add(c, "jti", json_object_new_string(jti));
    /* the grant family, so introspection can tell a revoked grant */
    json_object_object_add(c, "sid", json_object_new_string(g->family));
    char *t = NULL;
    char err[256];
    pthread_mutex_lock(&as->key_lock);
    if (refresh_keys(as, now, err, sizeof err) == 0)
        t = mcpauth_jws_sign(as->signer, "at+jwt",
                             json_object_to_json_string_ext(c, JSON_C_TO_STRING_PLAIN |
                                                                   JSON_C_TO_STRING_NOSLASHESCAPE));
    pthread_mutex_unlock(&as->key_lock);
    json_object_put(c);
    return t;
}

/* ------------------------------------------------------------- clients */

static int is_loopback_uri(const char *uri, char *host_out, size_t cap);

/* A registered client, or a client ID metadata document.  1 found, 0 not
 * (why in err), -1 trouble. */
static int find_client(mcpauth_as *as, const char *client_id, mcpauth_client *c, char *err,
                       size_t errlen)
{
    memset(c, 0, sizeof *c);
    /* lab mode (cimd_allow_private) also takes http documents on loopback */
    int lab_url = as->ac->cimd_allow_private && strncmp(client_id, "http://", 7) == 0 &&
                  is_loopback_uri(client_id, NULL, 0);
    if (as->ac->cimd && (mcpauth_cimd_is_url(client_id) || lab_url)) {
        mcpauth_cimd_opts o = {3000, 16384, as->ac->cimd_allow_private, as->cfg->ca_file, 3600};
        return mcpauth_cimd_get(as->cimd, client_id, &o, time(NULL), c, err, errlen) == 0 ? 1 : 0;
    }
    int r = mcpauth_store_client_get(as->store, client_id, c);
    if (r == 0)
        snprintf(err, errlen, "unknown client_id");
    return r;
}

static int is_loopback_uri(const char *uri, char *host_out, size_t cap)
{
    CURLU *u = curl_url();
    char *host = NULL;
    int lb = 0;
    if (u && curl_url_set(u, CURLUPART_URL, uri, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
        lb = mcpauth_uri_host_is_loopback(host);
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

/* Exact match against the client's redirect URIs, except that loopback
 * ones match on any port.  The matched URI (the request's) is copied to
 * out.  A missing redirect_uri is fine when exactly one is registered. */
static int redirect_ok(const mcpauth_client *c, const char *requested, char *out, size_t cap,
                       int *only_loopback)
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
        int lb = is_loopback_uri(reg, NULL, 0);
        if (!lb)
            *only_loopback = 0;
        if (!ok && !*requested && n == 1) {
            snprintf(out, cap, "%s", reg);
            ok = 1;
        } else if (!ok && *requested &&
                   (strcmp(reg, requested) == 0 || (lb && is_loopback_uri(requested, NULL, 0) &&
                                                    same_but_port(reg, requested)))) {
            snprintf(out, cap, "%s", requested);
            ok = 1;
        }
    }
    json_object_put(arr);
    return ok;
}

/* ------------------------------------------------------------ authorize */

typedef struct {
    char response_type[32], client_id[2048], redirect_uri[2048], scope[1024], state[1024];
    char code_challenge[256], code_challenge_method[32], resource[2048];
    char csrf[128], ts[32], nonce[64], decision[16], remember[8];
} authz_params;

static int read_authz(const char *form, authz_params *a)
{
    struct {
        const char *k;
        char *v;
        size_t cap;
    } f[] = {
        {"response_type", a->response_type, sizeof a->response_type},
        {"client_id", a->client_id, sizeof a->client_id},
        {"redirect_uri", a->redirect_uri, sizeof a->redirect_uri},
        {"scope", a->scope, sizeof a->scope},
        {"state", a->state, sizeof a->state},
        {"code_challenge", a->code_challenge, sizeof a->code_challenge},
        {"code_challenge_method", a->code_challenge_method, sizeof a->code_challenge_method},
        {"resource", a->resource, sizeof a->resource},
        {"csrf", a->csrf, sizeof a->csrf},
        {"ts", a->ts, sizeof a->ts},
        {"nonce", a->nonce, sizeof a->nonce},
        {"decision", a->decision, sizeof a->decision},
        {"remember", a->remember, sizeof a->remember},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (form_get(form, f[i].k, f[i].v, f[i].cap) < 0)
            return -1;
    return 0;
}

static void csrf_token(const mcpauth_as *as, const char *user, const authz_params *a, char *out,
                       size_t cap)
{
    char *msg;
    size_t len;
    FILE *m = memstream(&msg, &len);
    /* NUL separators: no field can be shifted into its neighbour */
    fprintf(m, "csrf%c%s%c%s%c%s%c%s%c%s%c%s%c%s%c%s%c%s", 0, a->ts, 0, user, 0, a->client_id, 0,
            a->redirect_uri, 0, a->resource, 0, a->scope, 0, a->code_challenge, 0, a->state, 0,
            a->nonce);
    memstream_close(m, &msg);
    unsigned char mac[32];
    unsigned int ml = 0;
    HMAC(EVP_sha256(), as->secret, sizeof as->secret, (unsigned char *)msg, len, mac, &ml);
    free(msg);
    mcpauth_b64url_encode(mac, ml, out, cap);
}

static void append_param(FILE *m, int *first, const char *k, const char *v)
{
    if (!v)
        return;
    char *e = mcpauth__check(mcpauth_form_encode(v), "mcpauth_form_encode");
    fprintf(m, "%c%s=%s", *first ? '?' : '&', k, e);
    free(e);
    *first = 0;
}

/* Redirect to the client with code or error, state and iss (RFC 9207). */
static void redirect_back(mcpauth_as *as, mcpauth_response *resp, const char *uri, const char *code,
                          const char *error, const char *desc, const char *state)
{
    char *loc;
    size_t len;
    FILE *m = memstream(&loc, &len);
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
    memstream_close(m, &loc);
    mcpauth_response_set_status(resp, 302);
    mcpauth_response_header(resp, "Location", loc);
    mcpauth_response_header(resp, "Cache-Control", "no-store");
    mcpauth_response_header(resp, "Referrer-Policy", "no-referrer");
    mcpauth_response_send(resp, NULL, 0);
    free(loc);
}

static int scope_subset(const char *req, const mcpauth_strlist *allowed)
{
    mcpauth_strlist l = {0, NULL};
    mcpauth_strlist_split(&l, req); /* cannot fail: allocation aborts */
    int ok = 1;
    for (size_t i = 0; ok && i < l.n; i++)
        ok = mcpauth_strlist_has(allowed, l.v[i]);
    mcpauth_strlist_free(&l);
    return ok;
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
        char *canon = mcpauth_uri_canonicalize(requested, MCPAUTH_URI_KEEP_SLASH, why);
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

static void consent_page(mcpauth_as *as, mcpauth_response *resp, const char *user,
                         const mcpauth_client *c, const mcpauth_resource *res, authz_params *a,
                         const char *redirect, int only_loopback, const char *action)
{
    snprintf(a->ts, sizeof a->ts, "%ld", (long)time(NULL));
    /* makes every form unique, so "used" means this form, not one alike */
    if (random_token(a->nonce, sizeof a->nonce, 16) < 0) {
        error_page(resp, 500, "Server error", "No random numbers are available.");
        return;
    }
    csrf_token(as, user, a, a->csrf, sizeof a->csrf);
    char host[512] = "";
    is_loopback_uri(redirect, host, sizeof host);
    /* Defence in depth: a name that could read as another (invisible or
     * bidi characters, stored before they were refused) is never shown. */
    int name_ok = c->client_name && *c->client_name &&
                  !mcpauth__display_name_problem(c->client_name, strlen(c->client_name));
    char *buf;
    size_t len;
    FILE *f = memstream(&buf, &len);
    fprintf(f, page_head, "Authorize access");
    fputs("<h1>Authorize access</h1><p><strong>", f);
    html_escape(f, name_ok ? c->client_name : c->client_id);
    fputs("</strong> wants to use <strong>", f);
    html_escape(f, res->resource_name ? res->resource_name : res->uri);
    fputs("</strong> (<code>", f);
    html_escape(f, res->uri);
    fputs("</code>) as <strong>", f);
    html_escape(f, user);
    fputs("</strong>.</p><p>After you answer you go to <strong>", f);
    html_escape(f, host);
    fputs("</strong>.</p>", f);
    if (only_loopback)
        fputs("<p class=\"warn\">This client only redirects to this computer (a local "
              "program). Approve only if you just started it yourself.</p>", f);
    if (!name_ok || strcmp(c->kind ? c->kind : "", "cimd") != 0)
        fputs("<p class=\"warn\">The client's name is self-declared and not verified.</p>", f);
    fputs("<p>Permissions:</p><ul>", f);
    mcpauth_strlist sl = {0, NULL};
    mcpauth_strlist_split(&sl, a->scope);
    for (size_t i = 0; i < sl.n; i++) {
        fputs("<li><code>", f);
        html_escape(f, sl.v[i]);
        fputs("</code></li>", f);
    }
    if (!sl.n)
        fputs("<li>basic access</li>", f);
    mcpauth_strlist_free(&sl);
    fputs("</ul><form method=\"post\" action=\"", f);
    html_escape(f, action);
    fputs("\">", f);
    const char *hidden[][2] = {{"response_type", a->response_type}, {"client_id", a->client_id},
                               {"redirect_uri", a->redirect_uri}, {"scope", a->scope},
                               {"state", a->state}, {"code_challenge", a->code_challenge},
                               {"code_challenge_method", a->code_challenge_method},
                               {"resource", a->resource}, {"ts", a->ts}, {"nonce", a->nonce},
                               {"csrf", a->csrf}};
    for (size_t i = 0; i < sizeof hidden / sizeof hidden[0]; i++) {
        fputs("<input type=\"hidden\" name=\"", f);
        html_escape(f, hidden[i][0]);
        fputs("\" value=\"", f);
        html_escape(f, hidden[i][1]);
        fputs("\">", f);
    }
    if (as->ac->consent_remember)
        fputs("<p><label><input type=\"checkbox\" name=\"remember\" value=\"1\" checked> "
              "Remember my approval</label></p>", f);
    fputs("<p><button type=\"submit\" name=\"decision\" value=\"approve\" id=\"approve\">Approve"
          "</button><button type=\"submit\" name=\"decision\" value=\"deny\" id=\"deny\">Deny"
          "</button></p></form></body></html>\n", f);
    memstream_close(f, &buf);
    /* the form posts here, then the browser is redirected to the client */
    char origin[2100] = "";
    const char *sep = strstr(redirect, "://");
    if (sep)
        snprintf(origin, sizeof origin, "%.*s", (int)(sep + 3 - redirect) +
                 (int)strcspn(sep + 3, "/?#"), redirect);
    security_headers(resp, origin[0] ? origin : NULL);
    send_page(resp, 200, buf, len);
    free(buf);
}

static void authorize(mcpauth_as *as, const mcpauth_request *req, mcpauth_response *resp, int post)
{
    ssize_t blen = 0;
    char *body = NULL;
    if (post) {
        const char *ct = mcpauth_request_param(req, "CONTENT_TYPE");
        if (!ct || strncasecmp(ct, "application/x-www-form-urlencoded", 33) != 0) {
            error_page(resp, 415, "Bad request", "The form must be sent as "
                                                 "application/x-www-form-urlencoded.");
            return;
        }
        if (!(body = read_all(req, FORM_MAX, &blen))) {
            error_page(resp, blen == -2 ? 413 : 400, "Bad request", "The form could not be read.");
            return;
        }
    }
    authz_params a;
    memset(&a, 0, sizeof a);
    if (read_authz(post ? body : req->query, &a) < 0) {
        free(body);
        error_page(resp, 400, "Bad request",
                   "A parameter is repeated, too long or badly encoded.");
        return;
    }
    free(body);
    const char *user = mcpauth_request_param(req, "REMOTE_USER");
    if (!user || !*user) {
        error_page(resp, 401, "Sign-in required",
                   "The web server did not authenticate you (REMOTE_USER is empty). Ask the "
                   "administrator to protect this URL with the site's login.");
        return;
    }
    if (!a.client_id[0]) {
        error_page(resp, 400, "Bad request", "client_id is missing.");
        return;
    }
    mcpauth_client c;
    char why[256] = "";
    int fr = find_client(as, a.client_id, &c, why, sizeof why);
    if (fr <= 0) {
        mcpauth_log_security("authorize_refused", "reason", why, "client_id", a.client_id,
                             "client", req->remote_addr, NULL);
        error_page(resp, fr < 0 ? 500 : 400, "Unknown application",
                   fr < 0 ? "The server could not look the application up." : why);
        mcpauth_client_free(&c);
        return;
    }
    char redirect[2048];
    int only_loopback = 0;
    if (!redirect_ok(&c, a.redirect_uri, redirect, sizeof redirect, &only_loopback)) {
        mcpauth_log_security("authorize_refused", "reason", "redirect_uri not registered",
                             "client_id", a.client_id, "client", req->remote_addr, NULL);
        error_page(resp, 400, "Invalid redirect", "The redirect_uri is not registered for this "
                                                  "application.");
        mcpauth_client_free(&c);
        return;
    }
    /* a.redirect_uri stays as requested ("" when left out): the code and
     * the CSRF token bind that (RFC 6749 §4.1.3); replies go to the
     * matched one.  From here on, errors go back to it (now trusted). */
    const char *err = NULL, *desc = NULL;
    const mcpauth_resource *res = NULL;
    if (strcmp(a.response_type, "code") != 0) {
        err = "unsupported_response_type";
        desc = "only response_type=code is supported";
    } else if (!a.code_challenge[0]) {
        err = "invalid_request";
        desc = "PKCE is required: send code_challenge with code_challenge_method=S256";
    } else if (strcmp(a.code_challenge_method, "S256") != 0) {
        err = "invalid_request";
        desc = "code_challenge_method must be S256";
    } else if (!pkce_challenge_ok(a.code_challenge)) {
        err = "invalid_request";
        desc = "code_challenge is not a base64url SHA-256";
    } else if (!(res = our_resource(as, a.resource, &desc))) {
        err = "invalid_target";
    } else if (a.scope[0] && res->scopes_supported.n && !scope_subset(a.scope, &res->scopes_supported)) {
        err = "invalid_scope";
        desc = "a requested scope is not offered by this resource";
    }
    if (err) {
        redirect_back(as, resp, redirect, NULL, err, desc, a.state);
        mcpauth_client_free(&c);
        return;
    }
    if (!a.scope[0]) { /* nothing asked: what the resource needs */
        size_t pos = 0;
        for (size_t i = 0; i < res->scopes_required.n; i++) {
            int n = snprintf(a.scope + pos, sizeof a.scope - pos, "%s%s", pos ? " " : "",
                             res->scopes_required.v[i]);
            if (n < 0 || (size_t)n >= sizeof a.scope - pos) {
                redirect_back(as, resp, redirect, NULL, "invalid_scope",
                              "the resource's required scopes are too long", a.state);
                mcpauth_client_free(&c);
                return;
            }
            pos += (size_t)n;
        }
    }
    snprintf(a.resource, sizeof a.resource, "%s", res->uri);
    char action[2100];
    mcpauth_as_endpoint(as->cfg, "authorize", action, sizeof action);

    int approved = 0;
    if (post) {
        char want[128];
        long ts = strtol(a.ts, NULL, 10);
        csrf_token(as, user, &a, want, sizeof want);
        if (!a.csrf[0] || !mcpauth_ct_equal(want, strlen(want), a.csrf, strlen(a.csrf)) ||
            ts <= 0 || time(NULL) - ts > CSRF_WINDOW || ts > time(NULL) + 60) {
            mcpauth_log_security("csrf_refused", "user", user, "client_id", a.client_id, "client",
                                 req->remote_addr, NULL);
            error_page(resp, 403, "Request expired or forged",
                       "The consent form was not accepted. Start the sign-in again from the "
                       "application.");
            mcpauth_client_free(&c);
            return;
        }
        /* Single use: a form posted again (a second code from one approval,
         * or a replay from the history or a proxy log) is refused.  The
         * CSRF token is unique per form (it signs ts, user and request). */
        int fresh = mcpauth_store_form_use(as->store, a.csrf, ts + CSRF_WINDOW + 60);
        if (fresh != 1) {
            if (fresh == 0)
                mcpauth_log_security("consent_replayed", "user", user, "client_id", a.client_id,
                                     "client", req->remote_addr, NULL);
            error_page(resp, fresh < 0 ? 500 : 400,
                       fresh < 0 ? "Server error" : "Form already used",
                       fresh < 0 ? "The server could not record your answer. Try again."
                                 : "This consent form was already answered. Start the sign-in "
                                   "again from the application.");
            mcpauth_client_free(&c);
            return;
        }
        if (strcmp(a.decision, "approve") != 0) {
            mcpauth_log(MCPAUTH_LOG_INFO, "consent_denied", "user", user, "client_id", a.client_id,
                        NULL);
            redirect_back(as, resp, redirect, NULL, "access_denied",
                          "the user denied the request", a.state);
            mcpauth_client_free(&c);
            return;
        }
        approved = 1;
        if (as->ac->consent_remember && a.remember[0])
            mcpauth_store_consent_add(as->store, user, c.client_id, res->uri, a.scope);
    } else if (as->ac->consent_remember &&
               mcpauth_store_consent_has(as->store, user, c.client_id, res->uri, a.scope) == 1) {
        approved = 1;
    }
    if (!approved) {
        consent_page(as, resp, user, &c, res, &a, redirect, only_loopback, action);
        mcpauth_client_free(&c);
        return;
    }
    char code[64], family[48];
    mcpauth_grant g = {c.client_id, (char *)user, (char *)res->uri, a.scope, a.redirect_uri,
                       a.code_challenge, family, time(NULL) + as->ac->code_ttl};
    if (random_token(code, sizeof code, 32) < 0 || random_token(family, sizeof family, 18) < 0 ||
        mcpauth_store_code_add(as->store, code, &g) < 0) {
        redirect_back(as, resp, redirect, NULL, "server_error", "could not store the code",
                      a.state);
        mcpauth_client_free(&c);
        return;
    }
    mcpauth_log(MCPAUTH_LOG_INFO, "code_issued", "user", user, "client_id", c.client_id,
                "resource", res->uri, "scope", a.scope, NULL);
    redirect_back(as, resp, redirect, code, NULL, NULL, a.state);
    mcpauth_client_free(&c);
}

/* ---------------------------------------------------------------- token */

/* Access tokens of grants revoked in the store go to the shared set the
 * gate and the proxy check (revoked.h). */
static void push_revocations(mcpauth_as *as)
{
    if (mcpauth__revoked_sync(as->revoked, as->store, time(NULL)) < 0)
        mcpauth_log(MCPAUTH_LOG_ERROR, "revocation_not_shared", "reason",
                    "the revocation list cannot be written; revoked access tokens stay valid at "
                    "the resource servers until they expire",
                    NULL);
}

/* Client authentication at the token, introspection and revocation
 * endpoints.  Fills c; returns 1 ok, 0 refused (answered), -1 answered. */
static int authenticate_client(mcpauth_as *as, const mcpauth_request *req, const char *form,
                               mcpauth_client *c, mcpauth_response *resp)
{
    char id[2048] = "", secret[512] = "", body_id[2048] = "", body_secret[512] = "";
    const char *authz = mcpauth_request_param(req, "HTTP_AUTHORIZATION");
    int basic = authz && strncasecmp(authz, "Basic ", 6) == 0;
    memset(c, 0, sizeof *c);
    if (form_get(form, "client_id", body_id, sizeof body_id) < 0 ||
        form_get(form, "client_secret", body_secret, sizeof body_secret) < 0) {
        oauth_error(resp, 400, "invalid_request", "repeated or malformed client credentials");
        return -1;
    }
    if (basic) {
        if (parse_basic(authz, id, sizeof id, secret, sizeof secret) < 0) {
            mcpauth_response_header(resp, "WWW-Authenticate", "Basic realm=\"mcpauth\"");
            oauth_error(resp, 401, "invalid_client", "malformed Basic credentials");
            return -1;
        }
        if ((body_id[0] && strcmp(body_id, id) != 0) || body_secret[0]) {
            oauth_error(resp, 400, "invalid_request", "use one client authentication method");
            return -1;
        }
    } else {
        snprintf(id, sizeof id, "%s", body_id);
        snprintf(secret, sizeof secret, "%s", body_secret);
    }
    if (!id[0]) {
        oauth_error(resp, 401, "invalid_client", "client_id is missing");
        return -1;
    }
    char why[256] = "";
    int fr = find_client(as, id, c, why, sizeof why);
    const char *method = basic ? "client_secret_basic" : secret[0] ? "client_secret_post" : "none";
    int ok = fr == 1 && strcmp(c->token_endpoint_auth_method ? c->token_endpoint_auth_method : "none",
                               method) == 0;
    if (ok && strcmp(method, "none") != 0)
        ok = mcpauth_store_client_check_secret(as->store, id, secret) == 1;
    OPENSSL_cleanse(secret, sizeof secret);
    OPENSSL_cleanse(body_secret, sizeof body_secret);
    if (!ok) {
        mcpauth_log_security("client_auth_failed", "client_id", id, "method", method, "client",
                             req->remote_addr, NULL);
        if (basic)
            mcpauth_response_header(resp, "WWW-Authenticate", "Basic realm=\"mcpauth\"");
        oauth_error(resp, 401, "invalid_client", "client authentication failed");
        mcpauth_client_free(c);
        return 0;
    }
    return 1;
}

static int grant_has(const mcpauth_client *c, const char *type)
{
    mcpauth_strlist l = {0, NULL};
    mcpauth_strlist_split(&l, c->grant_types ? c->grant_types : "authorization_code");
    int has = mcpauth_strlist_has(&l, type);
    mcpauth_strlist_free(&l);
    return has;
}

static void token_response(mcpauth_as *as, mcpauth_response *resp, const mcpauth_grant *g,
                           const char *refresh, time_t now)
{
    char *at = mint_access_token(as, g, now);
    if (!at) {
        oauth_error(resp, 500, "server_error", "no signing key (run mcpauth init)");
        return;
    }
    /* Recorded with a check of the grant in one transaction: a grant
     * revoked meanwhile gets no token, and one revoked later finds it. */
    int rec = mcpauth_store_access_add(as->store, at, g->family, now + as->ac->access_token_ttl);
    if (rec != 1) {
        OPENSSL_cleanse(at, strlen(at));
        free(at);
        oauth_error(resp, rec < 0 ? 500 : 400, rec < 0 ? "server_error" : "invalid_grant",
                    rec < 0 ? "could not record the token" : "the grant has been revoked");
        return;
    }
    json_object *o = json_object_new_object();
    json_object_object_add(o, "access_token", json_object_new_string(at));
    json_object_object_add(o, "token_type", json_object_new_string("Bearer"));
    json_object_object_add(o, "expires_in", json_object_new_int64(as->ac->access_token_ttl));
    json_object_object_add(o, "scope", json_object_new_string(g->scope ? g->scope : ""));
    if (refresh)
        json_object_object_add(o, "refresh_token", json_object_new_string(refresh));
    OPENSSL_cleanse(at, strlen(at));
    free(at);
    cors_public(resp);
    json_reply(resp, 200, o);
}

/* The resource on a token request must be the grant's (RFC 8707 §2.2). */
static int resource_matches(const char *requested, const char *granted)
{
    if (!requested[0])
        return 1;
    char *keep = mcpauth_uri_canonicalize(requested, MCPAUTH_URI_KEEP_SLASH, NULL);
    char *strip = mcpauth_uri_canonicalize(requested, 0, NULL);
    int ok = (keep && strcmp(keep, granted) == 0) || (strip && strcmp(strip, granted) == 0);
    free(keep);
    free(strip);
    return ok;
}

static void token(mcpauth_as *as, const mcpauth_request *req, mcpauth_response *resp)
{
    ssize_t len;
    char *form = read_all(req, FORM_MAX, &len);
    if (!form) {
        oauth_error(resp, len == -2 ? 413 : 400, "invalid_request", "the body could not be read");
        return;
    }
    mcpauth_client c;
    int ar = authenticate_client(as, req, form, &c, resp);
    if (ar != 1) {
        free(form);
        return;
    }
    char gt[64], resource[2048];
    time_t now = time(NULL);
    if (form_get(form, "grant_type", gt, sizeof gt) != 1 ||
        form_get(form, "resource", resource, sizeof resource) < 0) {
        oauth_error(resp, 400, "invalid_request", "grant_type is missing or repeated");
        goto out;
    }
    if (strcmp(gt, "authorization_code") == 0) {
        char code[256], verifier[256], redirect[2048];
        if (form_get(form, "code", code, sizeof code) != 1 ||
            form_get(form, "code_verifier", verifier, sizeof verifier) != 1 ||
            form_get(form, "redirect_uri", redirect, sizeof redirect) < 0) {
            oauth_error(resp, 400, "invalid_request", "code and code_verifier are required");
            goto out;
        }
        mcpauth_grant g;
        memset(&g, 0, sizeof g);
        mcpauth_redeem r = mcpauth_store_code_redeem(as->store, code, now, &g);
        if (r == MCPAUTH_REDEEM_REPLAYED) {
            mcpauth_log_security("code_replayed", "client_id", c.client_id, "client",
                                 req->remote_addr, NULL);
            push_revocations(as);
            oauth_error(resp, 400, "invalid_grant", "the code was already used; its tokens are revoked");
            goto out;
        }
        if (r != MCPAUTH_REDEEM_OK) {
            oauth_error(resp, r == MCPAUTH_REDEEM_ERROR ? 500 : 400,
                        r == MCPAUTH_REDEEM_ERROR ? "server_error" : "invalid_grant",
                        "the code is unknown or expired");
            goto out;
        }
        /* PKCE: BASE64URL(SHA256(verifier)) == challenge (RFC 7636 §4.6) */
        unsigned char md[32];
        char calc[64];
        size_t vl = strlen(verifier);
        int vok = vl >= 43 && vl <= 128;
        for (size_t i = 0; vok && i < vl; i++)
            vok = isalnum((unsigned char)verifier[i]) || strchr("-._~", verifier[i]);
        SHA256((const unsigned char *)verifier, vl, md);
        mcpauth_b64url_encode(md, sizeof md, calc, sizeof calc);
        const char *fail = NULL;
        if (strcmp(g.client_id, c.client_id) != 0)
            fail = "the code was issued to another client";
        else if (!vok || !mcpauth_ct_equal(calc, strlen(calc), g.code_challenge,
                                           strlen(g.code_challenge)))
            fail = "PKCE verification failed";
        else if (strcmp(redirect, g.redirect_uri) != 0)
            fail = "redirect_uri differs from the authorization request";
        else if (!resource_matches(resource, g.resource))
            fail = "resource differs from the authorization request";
        if (fail) {
            mcpauth_log_security("token_refused", "reason", fail, "client_id", c.client_id,
                                 "client", req->remote_addr, NULL);
            oauth_error(resp, 400, "invalid_grant", fail);
            mcpauth_grant_free(&g);
            goto out;
        }
        char refresh[64];
        int with_refresh = grant_has(&c, "refresh_token");
        if (with_refresh) {
            mcpauth_grant rg = g;
            rg.expires = now + as->ac->refresh_token_ttl;
            if (random_token(refresh, sizeof refresh, 32) < 0 ||
                mcpauth_store_refresh_add(as->store, refresh, &rg) < 0) {
                oauth_error(resp, 500, "server_error", "could not store the refresh token");
                mcpauth_grant_free(&g);
                goto out;
            }
        }
        token_response(as, resp, &g, with_refresh ? refresh : NULL, now);
        mcpauth_grant_free(&g);
    } else if (strcmp(gt, "refresh_token") == 0) {
        char old[256], scope[1024], fresh[64];
        if (form_get(form, "refresh_token", old, sizeof old) != 1 ||
            form_get(form, "scope", scope, sizeof scope) < 0) {
            oauth_error(resp, 400, "invalid_request", "refresh_token is required");
            goto out;
        }
        if (!grant_has(&c, "refresh_token")) {
            oauth_error(resp, 400, "unauthorized_client", "the client may not use refresh tokens");
            goto out;
        }
        mcpauth_grant g;
        memset(&g, 0, sizeof g);
        /* Mistakes of the rightful client (resource, scope) are refused
         * before rotation, so they cost nothing; a token presented by
         * another client is caught below, after rotation, and kills the
         * family (it was stolen). */
        mcpauth_grant g0;
        memset(&g0, 0, sizeof g0);
        if (mcpauth_store_refresh_peek(as->store, old, now, &g0) == 1 &&
            strcmp(g0.client_id, c.client_id) == 0) {
            const char *pre = NULL, *perr = "invalid_grant";
            mcpauth_strlist granted = {0, NULL};
            mcpauth_strlist_split(&granted, g0.scope ? g0.scope : "");
            if (!resource_matches(resource, g0.resource))
                pre = "resource differs from the grant";
            else if (scope[0] && !scope_subset(scope, &granted)) {
                pre = "the requested scope exceeds the grant";
                perr = "invalid_scope";
            }
            mcpauth_strlist_free(&granted);
            mcpauth_grant_free(&g0);
            if (pre) {
                oauth_error(resp, 400, perr, pre);
                goto out;
            }
        } else {
            mcpauth_grant_free(&g0);
        }
        if (random_token(fresh, sizeof fresh, 32) < 0) {
            oauth_error(resp, 500, "server_error", NULL);
            goto out;
        }
        mcpauth_rotate r = mcpauth_store_refresh_rotate(as->store, old, fresh, now,
                                                        as->ac->refresh_grace,
                                                        now + as->ac->refresh_token_ttl, &g);
        if (r == MCPAUTH_ROTATE_REUSED) {
            mcpauth_log_security("refresh_reused", "client_id", c.client_id, "client",
                                 req->remote_addr, NULL);
            push_revocations(as);
        }
        if (r != MCPAUTH_ROTATE_OK) {
            oauth_error(resp, r == MCPAUTH_ROTATE_ERROR ? 500 : 400,
                        r == MCPAUTH_ROTATE_ERROR ? "server_error" : "invalid_grant",
                        r == MCPAUTH_ROTATE_REUSED
                            ? "the refresh token was already used; the grant is revoked"
                            : "the refresh token is unknown, expired or revoked");
            goto out;
        }
        const char *fail = NULL;
        if (strcmp(g.client_id, c.client_id) != 0)
            fail = "the refresh token was issued to another client";
        else if (!resource_matches(resource, g.resource))
            fail = "resource differs from the grant";
        if (!fail && scope[0]) { /* downscoping only */
            mcpauth_strlist granted = {0, NULL};
            mcpauth_strlist_split(&granted, g.scope ? g.scope : "");
            if (!scope_subset(scope, &granted))
                fail = "the requested scope exceeds the grant"; /* only after a grace use */
            mcpauth_strlist_free(&granted);
            if (!fail) {
                free(g.scope);
                g.scope = mcpauth__xstrdup(scope);
            }
        }
        if (fail) {
            mcpauth_store_revoke_token(as->store, fresh);
            push_revocations(as);
            oauth_error(resp, 400, "invalid_grant", fail);
            mcpauth_grant_free(&g);
            goto out;
        }
        token_response(as, resp, &g, fresh, now);
        mcpauth_grant_free(&g);
    } else {
        oauth_error(resp, 400, "unsupported_grant_type",
                    "grant_type must be authorization_code or refresh_token");
    }
out:
    mcpauth_client_free(&c);
    OPENSSL_cleanse(form, strlen(form));
    free(form);
}

/* ---------------------------------------------------------- registration */

static int redirect_uri_ok(const char *u)
{
    const char *why;
    if (strchr(u, '#'))
        return 0;
    char *canon = mcpauth_uri_canonicalize(u, MCPAUTH_URI_KEEP_SLASH | MCPAUTH_URI_ALLOW_QUERY, &why);
    int ok = canon != NULL; /* https, or http on loopback */
    free(canon);
    return ok;
}

static void reg_error(mcpauth_response *resp, const char *error, const char *desc)
{
    cors_public(resp);
    oauth_error(resp, 400, error, desc);
}

static void do_register(mcpauth_as *as, const mcpauth_request *req, mcpauth_response *resp)
{
    if (!as->ac->registration) {
        cors_public(resp);
        oauth_error(resp, 403, "access_denied", "dynamic client registration is disabled");
        return;
    }
    const char *ct = mcpauth_request_param(req, "CONTENT_TYPE");
    if (!ct || strncasecmp(ct, "application/json", 16) != 0) {
        reg_error(resp, "invalid_client_metadata", "Content-Type must be application/json");
        return;
    }
    ssize_t len;
    char *body = read_all(req, REG_MAX, &len);
    if (!body) {
        cors_public(resp);
        oauth_error(resp, len == -2 ? 413 : 400, "invalid_client_metadata",
                    len == -2 ? "registration larger than 16 KiB" : "the body could not be read");
        return;
    }
    json_tokener *tok = json_tokener_new_ex(10);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *m = json_tokener_parse_ex(tok, body, (int)len), *v;
    int whole = json_tokener_get_error(tok) == json_tokener_success &&
                json_tokener_get_parse_end(tok) == (size_t)len;
    json_tokener_free(tok);
    free(body);
    if (!m || !whole || !json_object_is_type(m, json_type_object)) {
        json_object_put(m);
        reg_error(resp, "invalid_client_metadata", "the body is not a JSON object");
        return;
    }
    const char *fail = NULL, *ferr = "invalid_client_metadata";
    json_object *uris = NULL;
    if (!json_object_object_get_ex(m, "redirect_uris", &uris) ||
        !json_object_is_type(uris, json_type_array) || json_object_array_length(uris) == 0 ||
        json_object_array_length(uris) > 10) {
        fail = "redirect_uris must be an array of 1 to 10 URIs";
        ferr = "invalid_redirect_uri";
    }
    /* Every string is read with mcpauth__json_str: "a\u0000b" would be
     * checked as "a" and stored whole. */
    for (size_t i = 0; !fail && i < json_object_array_length(uris); i++) {
        json_object *u = json_object_array_get_idx(uris, i);
        size_t ul = 0;
        const char *us = mcpauth__json_str(u, &ul);
        if (json_object_is_type(u, json_type_string) && !us) {
            fail = "a redirect URI contains a NUL character";
            ferr = "invalid_redirect_uri";
        } else if (!us || ul > 2000 || !redirect_uri_ok(us)) {
            fail = "each redirect URI must be https, or http on a loopback host, without a fragment";
            ferr = "invalid_redirect_uri";
        }
    }
    const char *method = "client_secret_basic"; /* RFC 7591 §2 default */
    if (!fail && json_object_object_get_ex(m, "token_endpoint_auth_method", &v)) {
        method = mcpauth__json_str(v, NULL);
        if (!method)
            method = "";
        if (strcmp(method, "none") && strcmp(method, "client_secret_basic") &&
            strcmp(method, "client_secret_post"))
            fail = "token_endpoint_auth_method must be none, client_secret_basic or client_secret_post";
    }
    char grants[128] = "authorization_code";
    if (!fail && json_object_object_get_ex(m, "grant_types", &v)) {
        if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) == 0)
            fail = "grant_types must be a non-empty array";
        size_t pos = 0;
        grants[0] = '\0';
        int has_code = 0;
        for (size_t i = 0; !fail && i < json_object_array_length(v); i++) {
            const char *g = mcpauth__json_str(json_object_array_get_idx(v, i), NULL);
            if (!g || (strcmp(g, "authorization_code") && strcmp(g, "refresh_token")))
                fail = "grant_types may hold only authorization_code and refresh_token";
            else if (!strstr(grants, g))
                pos += (size_t)snprintf(grants + pos, sizeof grants - pos, "%s%s", pos ? " " : "", g);
            has_code |= g && !strcmp(g, "authorization_code");
        }
        if (!fail && !has_code)
            fail = "grant_types must include authorization_code";
    }
    if (!fail && json_object_object_get_ex(m, "response_types", &v)) {
        const char *rt = json_object_is_type(v, json_type_array) && json_object_array_length(v) == 1
                             ? mcpauth__json_str(json_object_array_get_idx(v, 0), NULL)
                             : NULL;
        if (!rt || strcmp(rt, "code") != 0)
            fail = "response_types must be [\"code\"]";
    }
    const char *name = NULL;
    char name_why[96];
    if (!fail && json_object_object_get_ex(m, "client_name", &v)) {
        const char *why;
        if (!json_object_is_type(v, json_type_string))
            fail = "client_name must be a string of at most 200 characters";
        else if ((why = mcpauth__display_name_problem(name = json_object_get_string(v),
                                                      (size_t)json_object_get_string_len(v)))) {
            /* why is a fixed phrase from cimd.c; the buffer only joins it */
            snprintf(name_why, sizeof name_why, "client_name %s", why);
            fail = name_why;
        } else {
            name = mcpauth__json_str(v, NULL);
        }
    }
    if (fail) {
        mcpauth_log(MCPAUTH_LOG_INFO, "registration_refused", "reason", fail, "client",
                    req->remote_addr, NULL);
        json_object_put(m);
        reg_error(resp, ferr, fail);
        return;
    }
    int allowed = mcpauth_store_registration_allowed(as->store, req->remote_addr,
                                                     (int)as->ac->registration_limit, 3600);
    if (allowed != 1) {
        json_object_put(m);
        mcpauth_log_security("registration_limited", "client", req->remote_addr, NULL);
        cors_public(resp);
        mcpauth_response_header(resp, "Retry-After", "3600");
        oauth_error(resp, allowed < 0 ? 500 : 429, allowed < 0 ? "server_error" : "temporarily_unavailable",
                    "too many registrations from this address; try again later");
        return;
    }
    char id[48], secret[64];
    int confidential = strcmp(method, "none") != 0;
    if (random_token(id, sizeof id, 18) < 0 || random_token(secret, sizeof secret, 32) < 0) {
        json_object_put(m);
        oauth_error(resp, 500, "server_error", NULL);
        return;
    }
    time_t now = time(NULL);
    char *uris_text = mcpauth__check(
        (void *)json_object_to_json_string_ext(uris, JSON_C_TO_STRING_PLAIN |
                                                         JSON_C_TO_STRING_NOSLASHESCAPE),
        "json_object_to_json_string_ext");
    mcpauth_client c = {id, (char *)name, uris_text,
                        grants, (char *)method, NULL, "dcr", (char *)req->remote_addr, now, 0};
    if (mcpauth_store_client_add(as->store, &c, confidential ? secret : NULL) < 0) {
        json_object_put(m);
        oauth_error(resp, 500, "server_error", "could not store the client");
        return;
    }
    json_object *o = json_object_new_object();
    json_object_object_add(o, "client_id", json_object_new_string(id));
    json_object_object_add(o, "client_id_issued_at", json_object_new_int64(now));
    if (confidential) {
        json_object_object_add(o, "client_secret", json_object_new_string(secret));
        json_object_object_add(o, "client_secret_expires_at", json_object_new_int64(0));
    }
    if (name)
        json_object_object_add(o, "client_name", json_object_new_string(name));
    json_object_object_add(o, "redirect_uris", json_object_get(uris));
    json_object *ga = json_object_new_array();
    mcpauth_strlist gl = {0, NULL};
    mcpauth_strlist_split(&gl, grants);
    for (size_t i = 0; i < gl.n; i++)
        json_object_array_add(ga, json_object_new_string(gl.v[i]));
    mcpauth_strlist_free(&gl);
    json_object_object_add(o, "grant_types", ga);
    json_object *rt = json_object_new_array();
    json_object_array_add(rt, json_object_new_string("code"));
    json_object_object_add(o, "response_types", rt);
    json_object_object_add(o, "token_endpoint_auth_method", json_object_new_string(method));
    json_object_put(m);
    OPENSSL_cleanse(secret, sizeof secret);
    mcpauth_log(MCPAUTH_LOG_INFO, "client_registered", "client_id", id, "client",
                req->remote_addr, NULL);
    cors_public(resp);
    json_reply(resp, 201, o);
}

/* -------------------------------------------- introspection, revocation */

/* Resource servers authenticate with the configured introspection
 * credentials (HTTP Basic). */
static int introspection_caller_ok(mcpauth_as *as, const mcpauth_request *req)
{
    const char *authz = mcpauth_request_param(req, "HTTP_AUTHORIZATION");
    const char *want_id = as->ac->introspection_client_id;
    const char *want_secret = as->ac->introspection_client_secret;
    char id[512], secret[600];
    if (!want_id || !authz || strncasecmp(authz, "Basic ", 6) != 0 ||
        parse_basic(authz, id, sizeof id, secret, sizeof secret) < 0)
        return 0;
    int ok = mcpauth_ct_equal(id, strlen(id), want_id, strlen(want_id)) &
             mcpauth_ct_equal(secret, strlen(secret), want_secret, strlen(want_secret));
    OPENSSL_cleanse(secret, sizeof secret);
    return ok;
}

static void introspect(mcpauth_as *as, const mcpauth_request *req, mcpauth_response *resp)
{
    if (!introspection_caller_ok(as, req)) {
        mcpauth_log_security("introspection_refused", "client", req->remote_addr, NULL);
        mcpauth_response_header(resp, "WWW-Authenticate", "Basic realm=\"mcpauth\"");
        oauth_error(resp, 401, "invalid_client", "introspection needs the resource server's credentials");
        return;
    }
    ssize_t len;
    char *form = read_all(req, FORM_MAX, &len);
    char tok[8192];
    if (!form || form_get(form, "token", tok, sizeof tok) != 1) {
        free(form);
        oauth_error(resp, 400, "invalid_request", "token is required");
        return;
    }
    OPENSSL_cleanse(form, strlen(form));
    free(form);
    time_t now = time(NULL);
    json_object *o = json_object_new_object(), *v;
    json_object *claims = own_token_claims(as, tok, now);
    if (claims) {
        const char *fam = mcpauth__json_member_str(claims, "sid", NULL);
        if (!fam || mcpauth_store_family_revoked(as->store, fam) != 0) {
            json_object_put(claims);
            claims = NULL;
        }
    }
    if (claims) {
        json_object_object_add(o, "active", json_object_new_boolean(1));
        static const char *const copy[] = {"iss", "sub", "aud", "client_id", "scope", "exp",
                                           "iat", "jti", NULL};
        for (int i = 0; copy[i]; i++)
            if (json_object_object_get_ex(claims, copy[i], &v))
                json_object_object_add(o, copy[i], json_object_get(v));
        json_object_object_add(o, "token_type", json_object_new_string("Bearer"));
        json_object_put(claims);
    } else {
        mcpauth_grant g;
        memset(&g, 0, sizeof g);
        if (mcpauth_store_refresh_get(as->store, tok, now, &g) == 1) {
            json_object_object_add(o, "active", json_object_new_boolean(1));
            json_object_object_add(o, "iss", json_object_new_string(as->ac->issuer));
            json_object_object_add(o, "sub", json_object_new_string(g.user));
            json_object_object_add(o, "aud", json_object_new_string(g.resource));
            json_object_object_add(o, "client_id", json_object_new_string(g.client_id));
            json_object_object_add(o, "scope", json_object_new_string(g.scope ? g.scope : ""));
            json_object_object_add(o, "exp", json_object_new_int64(g.expires));
            json_object_object_add(o, "token_type", json_object_new_string("refresh_token"));
        } else {
            json_object_object_add(o, "active", json_object_new_boolean(0));
        }
        mcpauth_grant_free(&g);
    }
    OPENSSL_cleanse(tok, sizeof tok);
    json_reply(resp, 200, o);
}

static void revoke_endpoint(mcpauth_as *as, const mcpauth_request *req, mcpauth_response *resp)
{
    ssize_t len;
    char *form = read_all(req, FORM_MAX, &len);
    if (!form) {
        oauth_error(resp, 400, "invalid_request", "the body could not be read");
        return;
    }
    mcpauth_client c;
    if (authenticate_client(as, req, form, &c, resp) != 1) {
        free(form);
        return;
    }
    char tok[8192];
    if (form_get(form, "token", tok, sizeof tok) != 1) {
        oauth_error(resp, 400, "invalid_request", "token is required");
    } else {
        /* Only the client a token was issued to may revoke it; either kind
         * ends the whole grant (its family). */
        time_t now = time(NULL);
        json_object *claims = own_token_claims(as, tok, now), *v;
        const char *cid = mcpauth__json_member_str(claims, "client_id", NULL);
        const char *fam = mcpauth__json_member_str(claims, "sid", NULL);
        mcpauth_grant g;
        memset(&g, 0, sizeof g);
        if (cid && fam && strcmp(cid, c.client_id) == 0) {
            mcpauth_store_revoke_family(as->store, fam);
            /* this token at once, even if it was never recorded */
            unsigned char d[SHA256_DIGEST_LENGTH];
            SHA256((const unsigned char *)tok, strlen(tok), d);
            time_t exp = json_object_object_get_ex(claims, "exp", &v)
                             ? (time_t)json_object_get_int64(v)
                             : now + as->ac->access_token_ttl;
            if (mcpauth__revoked_add(as->revoked, d, exp, now) != 0)
                mcpauth_log(MCPAUTH_LOG_ERROR, "revocation_not_shared", "client_id", c.client_id,
                            "reason", "the revocation list cannot be written", NULL);
        } else if (mcpauth_store_refresh_get(as->store, tok, now, &g) == 1 &&
                   strcmp(g.client_id, c.client_id) == 0) {
            mcpauth_store_revoke_token(as->store, tok);
        }
        push_revocations(as);
        mcpauth_grant_free(&g);
        json_object_put(claims);
        mcpauth_log(MCPAUTH_LOG_INFO, "token_revoked", "client_id", c.client_id, NULL);
        /* RFC 7009 §2.2: 200 whether or not the token was known */
        cors_public(resp);
        mcpauth_response_set_status(resp, 200);
        mcpauth_response_header(resp, "Cache-Control", "no-store");
        mcpauth_response_send(resp, NULL, 0);
    }
    mcpauth_client_free(&c);
    OPENSSL_cleanse(form, strlen(form));
    free(form);
}

static void jwks(mcpauth_as *as, mcpauth_response *resp)
{
    char err[256];
    pthread_mutex_lock(&as->key_lock);
    int ok = refresh_keys(as, time(NULL), err, sizeof err) == 0 && as->jwks;
    char *copy = ok ? mcpauth__xstrdup(as->jwks) : NULL;
    pthread_mutex_unlock(&as->key_lock);
    cors_public(resp);
    if (!copy) {
        oauth_error(resp, 503, "temporarily_unavailable", "no signing key");
        return;
    }
    mcpauth_response_header(resp, "Cache-Control", "public, max-age=300");
    mcpauth_response_set_status(resp, 200);
    mcpauth_response_header(resp, "Content-Type", "application/jwk-set+json");
    mcpauth_response_send(resp, copy, strlen(copy));
    free(copy);
}

/* ---------------------------------------------------------------- handle */

void mcpauth_as_handle(mcpauth_as *as, const mcpauth_request *req, mcpauth_response *resp)
{
    size_t pl = strlen(as->prefix);
    const char *ep = strncmp(req->path, as->prefix, pl) == 0 && req->path[pl] == '/'
                         ? req->path + pl + 1
                         : NULL;
    const char *m = req->method;
    int get = !strcmp(m, "GET"), post = !strcmp(m, "POST");
    if (!ep) {
        oauth_error(resp, 404, "not_found", "no such endpoint");
        return;
    }
    if (!strcmp(m, "OPTIONS") && strcmp(ep, "authorize") != 0) {
        cors_public(resp);
        mcpauth_response_set_status(resp, 204);
        mcpauth_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        mcpauth_response_header(resp, "Access-Control-Allow-Headers",
                                "Authorization, Content-Type, MCP-Protocol-Version");
        mcpauth_response_header(resp, "Access-Control-Max-Age", "86400");
        mcpauth_response_send(resp, NULL, 0);
        return;
    }
    if (!strcmp(ep, "authorize") && (get || post))
        authorize(as, req, resp, post);
    else if (!strcmp(ep, "token") && post)
        token(as, req, resp);
    else if (!strcmp(ep, "register") && post)
        do_register(as, req, resp);
    else if (!strcmp(ep, "introspect") && post)
        introspect(as, req, resp);
    else if (!strcmp(ep, "revoke") && post)
        revoke_endpoint(as, req, resp);
    else if (!strcmp(ep, "jwks") && get)
        jwks(as, resp);
    else if (!strcmp(ep, "authorize") || !strcmp(ep, "token") || !strcmp(ep, "register") ||
             !strcmp(ep, "introspect") || !strcmp(ep, "revoke") || !strcmp(ep, "jwks")) {
        mcpauth_response_header(resp, "Allow", !strcmp(ep, "jwks") ? "GET" :
                                               !strcmp(ep, "authorize") ? "GET, POST" : "POST");
        oauth_error(resp, 405, "invalid_request", "method not allowed");
    } else {
        oauth_error(resp, 404, "not_found", "no such endpoint");
    }
}

/* -------------------------------------------------------------- metadata */

char *mcpauth_as_metadata_json(const mcpauth_config *cfg)
{
    if (!cfg->as)
        return NULL;
    char url[2100];
    json_object *o = json_object_new_object(), *a;
    json_object_object_add(o, "issuer", json_object_new_string(cfg->as->issuer));
    static const char *const eps[][2] = {{"authorization_endpoint", "authorize"},
                                         {"token_endpoint", "token"},
                                         {"registration_endpoint", "register"},
                                         {"introspection_endpoint", "introspect"},
                                         {"revocation_endpoint", "revoke"},
                                         {"jwks_uri", "jwks"}};
    for (size_t i = 0; i < sizeof eps / sizeof eps[0]; i++) {
        if (!cfg->as->registration && !strcmp(eps[i][1], "register"))
            continue;
        mcpauth_as_endpoint(cfg, eps[i][1], url, sizeof url);
        json_object_object_add(o, eps[i][0], json_object_new_string(url));
    }
#define ARR(name, ...)                                                                 \
    do {                                                                               \
        static const char *const v_[] = {__VA_ARGS__, NULL};                          \
        a = json_object_new_array();                                                   \
        for (int i_ = 0; v_[i_]; i_++)                                                 \
            json_object_array_add(a, json_object_new_string(v_[i_]));                 \
        json_object_object_add(o, name, a);                                            \
    } while (0)
    ARR("response_types_supported", "code");
    ARR("response_modes_supported", "query");
    ARR("grant_types_supported", "authorization_code", "refresh_token");
    ARR("code_challenge_methods_supported", "S256");
    ARR("token_endpoint_auth_methods_supported", "none", "client_secret_basic",
        "client_secret_post");
    ARR("revocation_endpoint_auth_methods_supported", "none", "client_secret_basic",
        "client_secret_post");
    ARR("introspection_endpoint_auth_methods_supported", "client_secret_basic");
    if (!strcmp(cfg->as->signing_alg, "RS256"))
        ARR("token_endpoint_auth_signing_alg_values_supported", "RS256");
    a = json_object_new_array();
    for (size_t i = 0; i < cfg->as->scopes_supported.n; i++)
        json_object_array_add(a, json_object_new_string(cfg->as->scopes_supported.v[i]));
    json_object_object_add(o, "scopes_supported", a);
    json_object_object_add(o, "authorization_response_iss_parameter_supported",
                           json_object_new_boolean(1));
    json_object_object_add(o, "client_id_metadata_document_supported",
                           json_object_new_boolean(cfg->as->cimd));
    /* OIDC discovery requires these; harmless for OAuth clients */
    ARR("subject_types_supported", "public");
    a = json_object_new_array();
    json_object_array_add(a, json_object_new_string(cfg->as->signing_alg));
    json_object_object_add(o, "id_token_signing_alg_values_supported", a);
    a = json_object_new_array();
    for (size_t i = 0; i < cfg->nresources; i++)
        if (mcpauth_strlist_has(&cfg->resources[i].authorization_servers, cfg->as->issuer))
            json_object_array_add(a, json_object_new_string(cfg->resources[i].uri));
    json_object_object_add(o, "protected_resources", a);
#undef ARR
    char *s = mcpauth__xstrdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                                     JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
    return s;
}

/* ------------------------------------------------------------- lifecycle */

mcpauth_as *mcpauth_as_new(const mcpauth_config *cfg, char *err, size_t errlen)
{
    if (!cfg->as) {
        snprintf(err, errlen, "%s: no [authorization_server] section", cfg->file);
        return NULL;
    }
    mcpauth_as *as = mcpauth__xcalloc(1, sizeof *as);
    as->cfg = cfg;
    as->ac = cfg->as;
    pthread_mutex_init(&as->key_lock, NULL);
    char url[2100];
    mcpauth_as_endpoint(cfg, "x", url, sizeof url);
    const char *sep = strstr(url, "://");
    const char *path = sep ? sep + 3 + strcspn(sep + 3, "/") : url;
    snprintf(as->prefix, sizeof as->prefix, "%.*s", (int)(strlen(path) - 2), path);
    if (!(as->store = mcpauth_store_open(as->ac->state_dir, err, errlen)) ||
        mcpauth_secret_load(as->ac->state_dir, as->secret, err, errlen) < 0) {
        mcpauth_as_free(as);
        return NULL;
    }
    as->cimd = mcpauth_cimd_new(256);
    /* Without the shared set a revocation would not reach the gate and the
     * proxy: refuse to start rather than promise what we cannot do. */
    char rpath[4096], why[512] = "runtime_dir is not set or too long";
    if (mcpauth__revoked_path(cfg, rpath, sizeof rpath) != 0 ||
        !(as->revoked = mcpauth__revoked_open_rw(rpath, MCPAUTH__REVOKED_SLOTS, why, sizeof why))) {
        snprintf(err, errlen, "revocation list: %s (runtime_dir must exist and be writable by the "
                              "web server's user)",
                 why);
        mcpauth_as_free(as);
        return NULL;
    }
    push_revocations(as); /* what `mcpauth revoke` did while we were down */
    if (refresh_keys(as, time(NULL), err, errlen) < 0) {
        mcpauth_as_free(as);
        return NULL;
    }
    return as;
}

void mcpauth_as_free(mcpauth_as *as)
{
    if (!as)
        return;
    mcpauth_store_close(as->store);
    mcpauth_cimd_free(as->cimd);
    mcpauth__revoked_close(as->revoked);
    mcpauth_signer_free(as->signer);
    free(as->jwks);
    if (as->verify)
        mcpauth_jwks_unref(as->verify);
    OPENSSL_cleanse(as->secret, sizeof as->secret);
    pthread_mutex_destroy(&as->key_lock);
    free(as);
}
