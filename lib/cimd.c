/* Client ID Metadata Documents; see cimd.h.
 *
 * The URL is the client's identity, so it is taken only in its exact
 * canonical form and fetched with every SSRF guard fetch.c has: https only,
 * public addresses only (checked on the address actually connected to), no
 * redirects, no proxies, a small size and time limit.  The document is
 * strict JSON and every field this server relies on is checked.
 *
 * Cache: a fixed array of `entries` slots under one mutex, keyed by URL
 * (and by allow_private, so a document fetched under lab rules is never
 * served under production rules).  A validated document lives for its
 * Cache-Control max-age, 300 s when the response has none, never longer than
 * max_cache; no-store, no-cache and max-age=0 are not cached.  Failures are
 * never cached: a client that fixes its document is seen at once (callers
 * rate-limit authorization requests).  A full cache evicts the entry closest
 * to expiry.  Fetches run outside the lock, so two first requests for one
 * URL may both fetch; the later result wins. */
#include "config.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "uri.h"

#include "alloc.h"
#include "cimd.h"
#include "strbuf.h"
#include "fetch.h"
#include "metrics.h"

#define DEFAULT_TIMEOUT_MS 3000L
#define DEFAULT_MAX_BYTES ((size_t)16 * 1024)
#define DEFAULT_MAX_CACHE 3600L
#define MAX_CACHE_CAP 31536000L /* one year: keeps now + ttl in range */
#define DEFAULT_TTL 300L        /* no Cache-Control max-age */
#define MAX_DEPTH 16
#define MAX_NAME_CHARS 200
#define MAX_REDIRECT_URI_LEN 2000
#define MAX_REDIRECT_URIS 20

typedef struct {
    char *url; /* NULL: free slot */
    int allow_private;
    time_t expires;
    mcpauth_client client;
} entry;

struct mcpauth_cimd {
    size_t n;
    entry *e;
    pthread_mutex_t mu;
};

/* ------------------------------------------------------------- clients */

static char *dup_field(const char *src)
{
    return src ? mcpauth__xstrdup(src) : NULL;
}

static void client_copy(mcpauth_client *dst, const mcpauth_client *src)
{
    memset(dst, 0, sizeof *dst);
    dst->client_id = dup_field(src->client_id);
    dst->client_name = dup_field(src->client_name);
    dst->redirect_uris = dup_field(src->redirect_uris);
    dst->grant_types = dup_field(src->grant_types);
    dst->token_endpoint_auth_method = dup_field(src->token_endpoint_auth_method);
    dst->secret_hash = dup_field(src->secret_hash);
    dst->kind = dup_field(src->kind);
    dst->registered_by = dup_field(src->registered_by);
    dst->created = src->created;
    dst->secret_expires = src->secret_expires;
}

/* --------------------------------------------------------------- cache */

mcpauth_cimd *mcpauth__cimd_new(size_t entries)
{
    mcpauth_cimd *c = mcpauth__xcalloc(1, sizeof *c);
    if (entries)
        c->e = mcpauth__xcalloc(entries, sizeof *c->e);
    c->n = entries;
    pthread_mutex_init(&c->mu, NULL);
    return c;
}

static void entry_clear(entry *e)
{
    free(e->url);
    mcpauth__client_free(&e->client);
    memset(e, 0, sizeof *e);
}

void mcpauth__cimd_free(mcpauth_cimd *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        entry_clear(&c->e[i]);
    free(c->e);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* 1 and out filled on a fresh hit. */
static int cache_get(mcpauth_cimd *c, const char *url, int allow_private, time_t now,
                     mcpauth_client *out)
{
    int hit = 0;
    if (!c || !c->n)
        return 0;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n; i++) {
        entry *e = &c->e[i];
        if (e->url && e->allow_private == allow_private && strcmp(e->url, url) == 0) {
            if (now < e->expires) {
                client_copy(out, &e->client);
                hit = 1;
            }
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return hit;
}

/* Stores a copy of cl. */
static void cache_put(mcpauth_cimd *c, const char *url, int allow_private, time_t expires,
                      const mcpauth_client *cl)
{
    if (!c || !c->n)
        return;
    entry fresh = {.allow_private = allow_private, .expires = expires};
    fresh.url = mcpauth__xstrdup(url);
    client_copy(&fresh.client, cl);
    pthread_mutex_lock(&c->mu);
    entry *slot = NULL;
    for (size_t i = 0; i < c->n && !slot; i++)
        if (c->e[i].url && c->e[i].allow_private == allow_private &&
            strcmp(c->e[i].url, url) == 0)
            slot = &c->e[i];
    for (size_t i = 0; i < c->n && !slot; i++)
        if (!c->e[i].url)
            slot = &c->e[i];
    if (!slot) { /* full: the entry closest to expiry (expired ones first) */
        slot = &c->e[0];
        for (size_t i = 1; i < c->n; i++)
            if (c->e[i].expires < slot->expires)
                slot = &c->e[i];
    }
    entry old = *slot;
    *slot = fresh;
    pthread_mutex_unlock(&c->mu);
    entry_clear(&old);
}

/* ----------------------------------------------------------- the URL */

/* A segment that is "." or ".." once percent-decoded. */
static int encoded_dot_segment(const char *s, size_t n)
{
    int dots = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] == '.')
            i++;
        else if (i + 2 < n && s[i] == '%' && s[i + 1] == '2' && (s[i + 2] | 0x20) == 'e')
            i += 3;
        else
            return 0;
        dots++;
    }
    return dots == 1 || dots == 2;
}

/* NULL when url is a metadata document URL, else why not (completing "the
 * client_id URL ...").  http is accepted only for loopback hosts and only
 * when allow_http (the lab setting). */
static const char *url_problem(const char *url, int allow_http)
{
    const char *why = NULL;
    if (!url || !*url)
        return "is empty";
    char *canon = mcpauth__uri_canonicalize(url, MCPAUTH_URI_KEEP_SLASH | MCPAUTH_URI_ALLOW_QUERY,
                                           &why);
    if (!canon)
        return why;
    int same = strcmp(canon, url) == 0;
    free(canon);
    /* client_ids compare byte for byte: one spelling only. */
    if (!same)
        return "is not in canonical form (lowercase scheme and host, no default port)";
    if (strncmp(url, "https://", 8) != 0 && !(allow_http && strncmp(url, "http://", 7) == 0))
        return "must use https";
    if (strchr(url, '\\'))
        return "must not contain a backslash";
    const char *auth = strstr(url, "://") + 3;
    const char *path = auth + strcspn(auth, "/?");
    if (*path != '/' || path[1] == '\0' || path[1] == '?')
        return "must have a path (for example https://app.example.com/oauth/client.json)";
    size_t plen = strcspn(path, "?");
    for (size_t i = 0; i < plen;) {
        size_t n = strcspn(path + i + 1, "/?");
        if (n > plen - i - 1)
            n = plen - i - 1;
        if (encoded_dot_segment(path + i + 1, n))
            return "must not contain \".\" or \"..\" path segments";
        i += n + 1;
    }
    return NULL;
}

int mcpauth__cimd_is_url(const char *client_id)
{
    return url_problem(client_id, 0) == NULL;
}

/* ----------------------------------------------------------- validation */


/* Invisible or direction-changing code points: a name holding one can
 * read as another on the consent page ("Goo\u202egle", "Google\u200b"). */
static int invisible(unsigned cp)
{
    return cp == 0x00ad || cp == 0x034f || cp == 0x061c || cp == 0x115f || cp == 0x1160 ||
           cp == 0x17b4 || cp == 0x17b5 || (cp >= 0x180b && cp <= 0x180f) ||
           (cp >= 0x200b && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202e) ||
           (cp >= 0x2060 && cp <= 0x206f) || cp == 0x3164 || cp == 0xfeff || cp == 0xffa0 ||
           (cp >= 0xfff9 && cp <= 0xfffb) || (cp >= 0x1bca0 && cp <= 0x1bca3) ||
           (cp >= 0x1d173 && cp <= 0x1d17a) || (cp >= 0xe0000 && cp <= 0xe0fff);
}

/* Display-name check: valid UTF-8 (strictly: no overlong forms, no
 * surrogates), at most MAX_NAME_CHARS code points, no NUL, no C0/C1
 * controls, no invisible, zero-width or bidirectional formatting code
 * points, not blank.  Returns NULL or why not. */
const char *mcpauth__display_name_problem(const char *s, size_t len)
{
    size_t chars = 0;
    int visible = 0;
    /* exactly len bytes: s need not be NUL-terminated (a JSON string's
     * bytes, a prefix), so strlen could read past the end */
    if (!s || memchr(s, '\0', len))
        return "contains a NUL character";
    for (size_t i = 0; i < len; chars++) {
        const unsigned char *p = (const unsigned char *)s + i;
        unsigned cp;
        size_t n = p[0] < 0x80 ? 1 : (p[0] & 0xe0) == 0xc0 ? 2 : (p[0] & 0xf0) == 0xe0 ? 3
                 : (p[0] & 0xf8) == 0xf0 ? 4 : 0;
        if (n == 0 || n > len - i)
            return "is not valid UTF-8";
        for (size_t k = 1; k < n; k++)
            if ((p[k] & 0xc0) != 0x80)
                return "is not valid UTF-8";
        if (n == 1)
            cp = p[0];
        else if (n == 2)
            cp = (unsigned)(p[0] & 0x1f) << 6 | (p[1] & 0x3f);
        else if (n == 3)
            cp = (unsigned)(p[0] & 0x0f) << 12 | (unsigned)(p[1] & 0x3f) << 6 | (p[2] & 0x3f);
        else
            cp = (unsigned)(p[0] & 0x07) << 18 | (unsigned)(p[1] & 0x3f) << 12 |
                 (unsigned)(p[2] & 0x3f) << 6 | (p[3] & 0x3f);
        static const unsigned min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return "is not valid UTF-8";
        if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0))
            return "contains control characters";
        if (invisible(cp))
            return "contains invisible or text-direction characters";
        if (cp != ' ')
            visible = 1;
        i += n;
    }
    if (!visible)
        return "is empty";
    if (chars > MAX_NAME_CHARS)
        return "is longer than 200 characters";
    return NULL;
}

static json_object *parse_document(const char *body, size_t len, char *err, size_t errlen)
{
    /* json-c would stop at a NUL and ignore what follows. */
    if (memchr(body, '\0', len)) {
        mcpauth__errf(err, errlen, "the client metadata document is not valid JSON");
        return NULL;
    }
    json_tokener *tok = mcpauth__check(json_tokener_new_ex(MAX_DEPTH), "json_tokener_new_ex");
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *root = json_tokener_parse_ex(tok, body, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!root || jerr != json_tokener_success || end != len) {
        json_object_put(root);
        mcpauth__errf(err, errlen, "the client metadata document is not valid JSON");
        return NULL;
    }
    if (!json_object_is_type(root, json_type_object)) {
        json_object_put(root);
        mcpauth__errf(err, errlen, "the client metadata document is not a JSON object");
        return NULL;
    }
    return root;
}

/* The string member name of doc: 1 found (*s, *len set), 0 absent, -1 present
 * but not a string, -2 a string holding a NUL (C would see only its first
 * part while the rest is kept). */
static int get_string(json_object *doc, const char *name, const char **s, size_t *len)
{
    json_object *v;
    if (!json_object_object_get_ex(doc, name, &v))
        return 0;
    if (!json_object_is_type(v, json_type_string))
        return -1;
    if (!(*s = mcpauth__json_str(v, len)))
        return -2;
    return 1;
}

#define DOC "the client metadata document"

/* Checks doc against url and fills out; 0 or -1 with err. */
static int check_document(json_object *doc, const char *url, time_t now, mcpauth_client *out,
                          char *err, size_t errlen)
{
    const char *s, *why;
    size_t len;
    json_object *v;

    int r = get_string(doc, "client_id", &s, &len);
    if (r == 0) {
        mcpauth__errf(err, errlen, DOC " has no client_id");
        return -1;
    }
    if (r < 0 || len != strlen(url) || strcmp(s, url) != 0) {
        mcpauth__errf(err, errlen, DOC "'s client_id does not match its URL");
        return -1;
    }

    const char *name = NULL;
    r = get_string(doc, "client_name", &name, &len);
    if (r <= 0) {
        mcpauth__errf(err, errlen, r == 0    ? DOC " has no client_name"
                             : r == -2 ? DOC "'s client_name contains a NUL character"
                                       : DOC "'s client_name is not a string");
        return -1;
    }
    if ((why = mcpauth__display_name_problem(name, len)) != NULL) {
        mcpauth__errf(err, errlen, DOC "'s client_name %s", why);
        return -1;
    }

    /* No secrets in a document anyone can read. */
    if (json_object_object_get_ex(doc, "client_secret", &v)) {
        mcpauth__errf(err, errlen, DOC " must not contain a client_secret");
        return -1;
    }
    r = get_string(doc, "token_endpoint_auth_method", &s, &len);
    if (r < 0 || (r > 0 && strcmp(s, "none") != 0)) {
        mcpauth__errf(err, errlen, DOC "'s token_endpoint_auth_method must be \"none\"");
        return -1;
    }

    int refresh = 1; /* the default when grant_types is absent */
    if (json_object_object_get_ex(doc, "grant_types", &v)) {
        int code = 0;
        refresh = 0;
        size_t n = json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 0;
        for (size_t i = 0; i < n; i++) {
            const char *gs = mcpauth__json_str(json_object_array_get_idx(v, i), NULL);
            if (!gs)
                gs = "";
            if (strcmp(gs, "authorization_code") == 0)
                code = 1;
            else if (strcmp(gs, "refresh_token") == 0)
                refresh = 1;
            else {
                mcpauth__errf(err, errlen,
                        DOC "'s grant_types may list only authorization_code and refresh_token");
                return -1;
            }
        }
        if (!code) {
            mcpauth__errf(err, errlen, DOC "'s grant_types must include authorization_code");
            return -1;
        }
    }
    if (json_object_object_get_ex(doc, "response_types", &v)) {
        json_object *t;
        const char *ts;
        if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) != 1 ||
            !(ts = mcpauth__json_str(t = json_object_array_get_idx(v, 0), NULL)) ||
            strcmp(ts, "code") != 0) {
            mcpauth__errf(err, errlen, DOC "'s response_types must be [\"code\"]");
            return -1;
        }
    }

    json_object *uris;
    if (!json_object_object_get_ex(doc, "redirect_uris", &uris)) {
        mcpauth__errf(err, errlen, DOC " has no redirect_uris");
        return -1;
    }
    if (!json_object_is_type(uris, json_type_array) || json_object_array_length(uris) == 0) {
        mcpauth__errf(err, errlen, DOC "'s redirect_uris must be a non-empty array");
        return -1;
    }
    size_t n = json_object_array_length(uris);
    if (n > MAX_REDIRECT_URIS) {
        mcpauth__errf(err, errlen, DOC " has more than %d redirect_uris", MAX_REDIRECT_URIS);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        json_object *u = json_object_array_get_idx(uris, i);
        if (!json_object_is_type(u, json_type_string)) {
            mcpauth__errf(err, errlen, DOC "'s redirect_uris[%zu] is not a string", i);
            return -1;
        }
        if (!(s = mcpauth__json_str(u, &len))) {
            mcpauth__errf(err, errlen, DOC "'s redirect_uris[%zu] contains a NUL character", i);
            return -1;
        }
        if (len > MAX_REDIRECT_URI_LEN) {
            mcpauth__errf(err, errlen, DOC "'s redirect_uris[%zu] is longer than %d characters", i,
                    MAX_REDIRECT_URI_LEN);
            return -1;
        }
        /* https or loopback http, no fragment, no userinfo, no dot segments
         * (canonicalize also refuses NULs, spaces and non-ASCII). */
        char *canon = mcpauth__uri_canonicalize(s, MCPAUTH_URI_KEEP_SLASH | MCPAUTH_URI_ALLOW_QUERY,
                                               &why);
        if (!canon) {
            mcpauth__errf(err, errlen, DOC "'s redirect_uris[%zu] %s", i, why);
            return -1;
        }
        free(canon);
    }

    const char *uris_text = mcpauth__check(
        (void *)json_object_to_json_string_ext(uris, JSON_C_TO_STRING_PLAIN |
                                                         JSON_C_TO_STRING_NOSLASHESCAPE),
        "json_object_to_json_string_ext");
    memset(out, 0, sizeof *out);
    out->client_id = dup_field(url);
    out->client_name = dup_field(name);
    out->redirect_uris = dup_field(uris_text);
    out->grant_types =
        dup_field(refresh ? "authorization_code refresh_token" : "authorization_code");
    out->token_endpoint_auth_method = dup_field("none");
    out->kind = dup_field("cimd");
    out->created = now;
    return 0;
}

/* ------------------------------------------------------------------ get */

int mcpauth__cimd_get(mcpauth_cimd *c, const char *url, const mcpauth_cimd_opts *o, time_t now,
                     mcpauth_client *out, char *err, size_t errlen)
{
    static const mcpauth_cimd_opts no_opts;
    if (err && errlen)
        err[0] = '\0';
    if (!out) {
        mcpauth__errf(err, errlen, "internal error: no client");
        return -1;
    }
    memset(out, 0, sizeof *out);
    if (!o)
        o = &no_opts;
    int allow_private = o->allow_private != 0;

    const char *why = url_problem(url, allow_private);
    if (why) {
        mcpauth__errf(err, errlen, "the client_id URL %s", why);
        return -1;
    }
    if (cache_get(c, url, allow_private, now, out))
        return 0;

    mcpauth_fetch_opts fo = {
        .timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS,
        .max_bytes = o->max_bytes ? o->max_bytes : DEFAULT_MAX_BYTES,
        .ca_file = o->ca_file,
        .accept = "application/json",
        .deny_private = !allow_private,
        .https_only = !allow_private,
    };
    mcpauth_fetch_result res;
    char ferr[256];
    mcpauth__metrics_add(NULL, MCPAUTH_M_AS_CIMD_FETCHES, 1);
    if (mcpauth__fetch(url, &fo, &res, ferr, sizeof ferr) != 0) {
        mcpauth__errf(err, errlen, DOC " could not be fetched: %s", ferr);
        return -1;
    }
    int rc = -1;
    json_object *doc = NULL;
    if (res.status >= 300 && res.status < 400) {
        mcpauth__errf(err, errlen, DOC "'s URL answered with a redirect (HTTP %ld), which is not followed",
                res.status);
        goto done;
    }
    if (res.status != 200) {
        mcpauth__errf(err, errlen, DOC " could not be fetched (HTTP %ld)", res.status);
        goto done;
    }
    if (!(doc = parse_document(res.body, res.len, err, errlen)))
        goto done;
    if (check_document(doc, url, now, out, err, errlen) != 0)
        goto done;

    long max_cache = o->max_cache > 0 ? o->max_cache : DEFAULT_MAX_CACHE;
    if (max_cache > MAX_CACHE_CAP)
        max_cache = MAX_CACHE_CAP;
    long ttl = res.max_age < 0 ? DEFAULT_TTL : res.max_age; /* no-store/no-cache → 0 */
    if (ttl > max_cache)
        ttl = max_cache;
    if (ttl > 0)
        cache_put(c, url, allow_private, now + (time_t)ttl, out);
    rc = 0;
done:
    json_object_put(doc);
    mcpauth__fetch_result_free(&res);
    return rc;
}
