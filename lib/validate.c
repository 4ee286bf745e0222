/* Bearer token validation (RFC 6750 extraction, RFC 9068 JWT profile,
 * RFC 7662 introspection, RFC 8707 audience binding).  See validate.h. */
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
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <mcpauth/log.h>
#include <mcpauth/util.h>

#include "encode.h"
#include <mcpauth/validate.h>

#include "alloc.h"
#include "cache.h"
#include "clock.h"
#include "fetch.h"
#include "jose.h"
#include "metrics.h"
#include "revoked.h"
#include "robust.h"
#include "strbuf.h"

#define JOSE_PART_MAX 16384 /* decoded header or payload */
/* Retry-After of a 503 (keys or introspection unavailable): a fetch may be
 * tried again min(jwks_min_refresh, 10) s after a failed one. */
#define MCPAUTH__RETRY_AFTER_S "5"


typedef struct issuer_rt {
    const mcpauth_issuer *conf;
    /* lock guards keys, keys_expire, keys_fetched, last_attempt and
     * refreshing, and is never held across I/O: the one thread that sets
     * refreshing fetches without it and takes it again only to swap the
     * new set in, so validation goes on with the last good set meanwhile.
     * Fields that only the refreshing thread writes (the ones above) it
     * may read without the lock; jwks_uri, disk_seen and the files only it
     * touches. */
    pthread_mutex_t lock;
    pthread_cond_t refreshed; /* refreshing went back to 0 */
    int refreshing;
    mcpauth_jwks *keys;     /* current set, NULL until loaded */
    time_t keys_expire;     /* refresh after this */
    time_t last_attempt;    /* last fetch, for jwks_min_refresh */
    time_t keys_fetched;    /* when keys were fetched (here or, shared, elsewhere) */
    char *jwks_uri;         /* configured or discovered */
    /* shared_cache: the key set on disk for the other processes, named
     * after disk_key (jwks_uri as configured, else "issuer:" + issuer for
     * discovery); the stamp file holds the last fetch attempt and is the
     * lock that lets one process fetch while the others wait.  NULL when
     * not shared. */
    char *disk_key, *disk_path, *stamp_path;
    struct stat disk_seen;  /* the file as last read or written */
} issuer_rt;

struct mcpauth_validator {
    const mcpauth_config *cfg;
    unsigned alg_mask;      /* 1 << mcpauth_alg */
    size_t nissuers;
    issuer_rt *issuers;
    mcpauth_cache *cache;
    const char *builtin_iss;    /* [authorization_server] issuer, or NULL */
    mcpauth__revoked *revoked;  /* its revocations (revoked.h) */
    /* shared_cache: per resource, a digest of every setting that decides a
     * token's validity there, mixed into the cache key, since programs
     * with other configurations may share the cache file.  NULL unless
     * shared. */
    unsigned char (*res_fp)[SHA256_DIGEST_LENGTH];
};

/* ---------------------------------------------------------------- helpers */

/* Every refusal goes through here: the verdict, its code (what metrics
 * count) and its text (what the client reads) are set together. */
__attribute__((format(printf, 4, 5)))
static void set_verdict(mcpauth_decision *d, mcpauth_verdict v, mcpauth_refusal r,
                        const char *fmt, ...)
{
    d->verdict = v;
    d->refusal = r;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->description, sizeof d->description, fmt, ap);
    va_end(ap);
    /* The description goes into a quoted-string: keep it plain. */
    for (char *p = d->description; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '\'';
}

const char *mcpauth_refusal_name(mcpauth_refusal r)
{
    /* stable: the reason labels of mcpauth_refusals_total (metrics.c) */
    static const char *const names[MCPAUTH_REFUSAL_COUNT] = {
        [MCPAUTH_REFUSAL_NONE] = "none",
        [MCPAUTH_REFUSAL_NO_TOKEN] = "no_token",
        [MCPAUTH_REFUSAL_BAD_REQUEST] = "bad_request",
        [MCPAUTH_REFUSAL_MALFORMED] = "malformed",
        [MCPAUTH_REFUSAL_EXPIRED] = "expired",
        [MCPAUTH_REFUSAL_NOT_YET_VALID] = "not_yet_valid",
        [MCPAUTH_REFUSAL_AUDIENCE] = "audience",
        [MCPAUTH_REFUSAL_ISSUER] = "issuer",
        [MCPAUTH_REFUSAL_ALGORITHM] = "algorithm",
        [MCPAUTH_REFUSAL_UNKNOWN_KEY] = "unknown_key",
        [MCPAUTH_REFUSAL_SIGNATURE] = "signature",
        [MCPAUTH_REFUSAL_REVOKED] = "revoked",
        [MCPAUTH_REFUSAL_INACTIVE] = "inactive",
        [MCPAUTH_REFUSAL_SCOPE] = "scope",
        [MCPAUTH_REFUSAL_UNAVAILABLE] = "unavailable",
        [MCPAUTH_REFUSAL_OTHER] = "other",
    };
    return (unsigned)r < MCPAUTH_REFUSAL_COUNT && names[r] ? names[r] : "other";
}

int mcpauth_verdict_status(mcpauth_verdict v)
{
    switch (v) {
    case MCPAUTH_ALLOW: return 200;
    case MCPAUTH_BAD_REQUEST: return 400;
    case MCPAUTH_INSUFFICIENT_SCOPE: return 403;
    case MCPAUTH_UNAVAILABLE: return 503;
    default: return 401;
    }
}

static issuer_rt *issuer_of(mcpauth_validator *v, const mcpauth_issuer *conf)
{
    for (size_t i = 0; i < v->nissuers; i++)
        if (v->issuers[i].conf == conf)
            return &v->issuers[i];
    return NULL;
}

/* Strict JSON object from bytes: whole input consumed, bounded depth. */
static json_object *parse_object(const char *buf, size_t len)
{
    json_tokener *tok = mcpauth__check(json_tokener_new_ex(16), "json_tokener_new_ex");
    /* RFC 8259 only: json-c alone would take {"active": trUe} */
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *o = json_tokener_parse_ex(tok, buf, (int)len);
    if (o && (json_tokener_get_error(tok) != json_tokener_success ||
              json_tokener_get_parse_end(tok) != len || !json_object_is_type(o, json_type_object))) {
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    return o;
}

static json_object *decode_part(const char *b64, size_t len)
{
    unsigned char buf[JOSE_PART_MAX];
    if (len > JOSE_PART_MAX * 4 / 3)
        return NULL;
    ssize_t n = mcpauth__b64url_decode(b64, len, buf, sizeof buf);
    if (n <= 0 || memchr(buf, '\0', (size_t)n))
        return NULL;
    return parse_object((const char *)buf, (size_t)n);
}

/* A claim copied into a fixed field: string, bounded, no control bytes. */
static int claim_string(json_object *o, const char *name, char *out, size_t cap)
{
    json_object *v;
    out[0] = '\0';
    if (!json_object_object_get_ex(o, name, &v))
        return 0;
    if (!json_object_is_type(v, json_type_string))
        return -1;
    size_t n = 0;
    const char *s = mcpauth__json_str(v, &n);
    if (!s || n >= cap)
        return -1;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return -1;
    memcpy(out, s, n + 1);
    return 1;
}

/* NumericDate: integer or real, non-negative.  0 absent, 1 ok, -1 bad. */
static int claim_time(json_object *o, const char *name, long long *out)
{
    json_object *v;
    if (!json_object_object_get_ex(o, name, &v))
        return 0;
    if (json_object_is_type(v, json_type_int)) {
        errno = 0;
        *out = (long long)json_object_get_int64(v);
    } else if (json_object_is_type(v, json_type_double)) {
        double dv = json_object_get_double(v);
        if (!(dv >= 0 && dv < 1e15))
            return -1;
        *out = (long long)dv;
    } else {
        return -1;
    }
    /* the bound of doubles above: json-c clamps a larger integer to
     * INT64_MAX, and exp + leeway would overflow (found by tests/fuzz) */
    return *out >= 0 && *out < 1000000000000000LL ? 1 : -1;
}

/* "scope" (space separated string) or "scp" (array, or string as Entra).  */
static int claim_scope(json_object *o, char *out, size_t cap)
{
    json_object *v;
    out[0] = '\0';
    int r = claim_string(o, "scope", out, cap);
    if (r != 0)
        return r;
    if (!json_object_object_get_ex(o, "scp", &v))
        return 0;
    if (json_object_is_type(v, json_type_string))
        return claim_string(o, "scp", out, cap);
    if (!json_object_is_type(v, json_type_array))
        return -1;
    size_t pos = 0, n = json_object_array_length(v);
    for (size_t i = 0; i < n; i++) {
        size_t l = 0;
        const char *s = mcpauth__json_str(json_object_array_get_idx(v, i), &l);
        if (!s || l == 0 || strpbrk(s, " \t\r\n") || pos + l + 2 > cap)
            return -1;
        if (pos)
            out[pos++] = ' ';
        memcpy(out + pos, s, l);
        pos += l;
        out[pos] = '\0';
    }
    return 1;
}

static int scope_has(const char *scopes, const char *want, size_t wl)
{
    for (const char *p = scopes; *p;) {
        while (*p == ' ')
            p++;
        size_t l = strcspn(p, " ");
        if (l == wl && strncmp(p, want, wl) == 0)
            return 1;
        p += l;
    }
    return 0;
}

/* Every scope the request needs, without repeats, into out.  -1 when they
 * do not all fit: the caller must then refuse, never drop a requirement. */
static int needed_scopes(const mcpauth_resource *res, const char *method,
                         const mcpauth_strlist *extra, char *out, size_t cap)
{
    const mcpauth_strlist *lists[3] = {&res->scopes_required, NULL, extra};
    int mi = method ? mcpauth_method_index(method) : -1;
    if (mi >= 0)
        lists[1] = &res->scopes_required_method[mi];
    size_t pos = 0;
    int over = 0;
    out[0] = '\0';
    for (int l = 0; l < 3; l++) {
        if (!lists[l])
            continue;
        for (size_t i = 0; i < lists[l]->n; i++) {
            const char *sc = lists[l]->v[i];
            size_t n = strlen(sc);
            if (scope_has(out, sc, n))
                continue;
            if (pos + n + 2 > cap) {
                over = 1;
                continue;
            }
            if (pos)
                out[pos++] = ' ';
            memcpy(out + pos, sc, n + 1);
            pos += n;
        }
    }
    return over ? -1 : 0;
}

/* ALLOW when the identity's scopes hold every needed one, else
 * INSUFFICIENT_SCOPE.  After the cache: the same token may be enough for
 * one method and not for another. */
static void require_scopes(mcpauth_decision *d, int over)
{
    int missing = over;
    for (const char *p = d->scope_needed; *p && !missing;) {
        size_t l = strcspn(p, " ");
        missing = !scope_has(d->id.scope, p, l);
        p += l;
        while (*p == ' ')
            p++;
    }
    if (missing) {
        set_verdict(d, MCPAUTH_INSUFFICIENT_SCOPE, MCPAUTH_REFUSAL_SCOPE,
                    "token lacks a required scope");
    } else {
        d->verdict = MCPAUTH_ALLOW;
        d->refusal = MCPAUTH_REFUSAL_NONE;
    }
}

/* aud NULL (not a string, or holding a NUL: "RES\u0000x" must not pass as
 * RES) never matches. */
static int audience_ok(const mcpauth_resource *res, const char *aud)
{
    return aud && (strcmp(aud, res->uri) == 0 || mcpauth_strlist_has(&res->audiences, aud));
}

/* aud as string or array of strings; one accepted value is enough (RFC 7519
 * §4.1.3), and the resource URI is compared exactly, never by prefix. */
static int check_audience(const mcpauth_resource *res, json_object *claims)
{
    json_object *v;
    if (!json_object_object_get_ex(claims, "aud", &v))
        return 0;
    if (json_object_is_type(v, json_type_string))
        return audience_ok(res, mcpauth__json_str(v, NULL));
    if (!json_object_is_type(v, json_type_array))
        return 0;
    size_t n = json_object_array_length(v);
    for (size_t i = 0; i < n; i++) {
        if (audience_ok(res, mcpauth__json_str(json_object_array_get_idx(v, i), NULL)))
            return 1;
    }
    return 0;
}

/* Identity and time checks shared by JWT and introspection.  Returns 0 and
 * sets d on failure. */
static int check_claims(mcpauth_validator *v, const mcpauth_resource *res, json_object *claims,
                        int exp_required, time_t now, mcpauth_decision *d)
{
    long long exp = 0, nbf = 0, iat = 0;
    long leeway = v->cfg->clock_leeway;
    int r = claim_time(claims, "exp", &exp);
    if (r < 0 || (r == 0 && exp_required)) {
        set_verdict(d, MCPAUTH_INVALID_TOKEN, MCPAUTH_REFUSAL_MALFORMED,
                    r < 0 ? "exp is not a valid time" : "token has no exp");
        return 0;
    }
    if (r > 0 && now >= exp + leeway) {
        set_verdict(d, MCPAUTH_INVALID_TOKEN, MCPAUTH_REFUSAL_EXPIRED, "token expired");
        return 0;
    }
    d->id.exp = r > 0 ? exp : 0;
    r = claim_time(claims, "nbf", &nbf);
    if (r < 0 || (r > 0 && nbf > now + leeway)) {
        set_verdict(d, MCPAUTH_INVALID_TOKEN, MCPAUTH_REFUSAL_NOT_YET_VALID,
                    "token not valid yet (nbf)");
        return 0;
    }
    r = claim_time(claims, "iat", &iat);
    if (r < 0 || (r > 0 && iat > now + leeway)) {
        set_verdict(d, MCPAUTH_INVALID_TOKEN, MCPAUTH_REFUSAL_NOT_YET_VALID,
                    "token issued in the future (iat)");
        return 0;
    }
    if (!check_audience(res, claims)) {
        set_verdict(d, MCPAUTH_INVALID_TOKEN, MCPAUTH_REFUSAL_AUDIENCE,
                    "token audience does not include this resource");
        return 0;
    }
    if (claim_string(claims, "sub", d->id.subject, sizeof d->id.subject) < 0) {
        set_verdict(d, MCPAUTH_INVALID_TOKEN, MCPAUTH_REFUSAL_MALFORMED,
                    "sub is not a valid string");
        return 0;
    }
    /* client_id (RFC 9068), else azp (OIDC), cid (Okta), appid (Entra v1) */
    static const char *const cid[] = {"client_id", "azp", "cid", "appid"};
    for (int i = 0; i < 4; i++) {
        int c = claim_string(claims, cid[i], d->id.client_id, sizeof d->id.client_id);
        if (c < 0) {
            set_verdict(d, MCPAUTH_INVALID_TOKEN, MCPAUTH_REFUSAL_MALFORMED,
                        "%s is not a valid string", cid[i]);
            return 0;
        }
        if (c > 0)
            break;
    }
    /* Web servers need a user name; a token without sub (client
     * credentials) is its client. */
    if (!d->id.subject[0])
        memcpy(d->id.subject, d->id.client_id, sizeof d->id.subject);
    if (claim_scope(claims, d->id.scope, sizeof d->id.scope) < 0) {
        set_verdict(d, MCPAUTH_INVALID_TOKEN, MCPAUTH_REFUSAL_MALFORMED, "scope is not valid");
        return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------ keys */

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* deadline (monotonic ms, 0: none) bounds a whole key refresh, so that
 * discovery and the key set together never take longer than one
 * http_timeout.  0 when no time is left. */
static int fetch_opts(const mcpauth_validator *v, mcpauth_fetch_opts *o, long long deadline)
{
    memset(o, 0, sizeof *o);
    o->timeout_ms = v->cfg->http_timeout * 1000;
    if (deadline) {
        long long left = deadline - mono_ms();
        if (left <= 0)
            return 0;
        if (left < o->timeout_ms)
            o->timeout_ms = left;
    }
    o->max_bytes = 512 * 1024;
    o->ca_file = v->cfg->ca_file;
    return 1;
}

/* RFC 8414 §3 and OIDC Discovery, in the order MCP clients use; the
 * document's issuer must equal ours byte for byte (RFC 8414 §3.3). */
static char *discover_jwks_uri(mcpauth_validator *v, const char *issuer, long long deadline)
{
    const char *sep = strstr(issuer, "://");
    if (!sep)
        return NULL;
    const char *path = sep + 3 + strcspn(sep + 3, "/");
    size_t olen = (size_t)(path - issuer);
    size_t plen = strlen(path);
    while (plen > 0 && path[plen - 1] == '/')
        plen--;
    char urls[3][2300];
    int n = 0;
    snprintf(urls[n++], sizeof urls[0], "%.*s/.well-known/oauth-authorization-server%.*s",
             (int)olen, issuer, (int)plen, path);
    snprintf(urls[n++], sizeof urls[0], "%.*s/.well-known/openid-configuration%.*s", (int)olen,
             issuer, (int)plen, path);
    if (plen)
        snprintf(urls[n++], sizeof urls[0], "%.*s%.*s/.well-known/openid-configuration", (int)olen,
                 issuer, (int)plen, path);
    mcpauth_fetch_opts o;
    for (int i = 0; i < n && fetch_opts(v, &o, deadline); i++) {
        mcpauth_fetch_result r;
        char err[256];
        if (mcpauth__fetch(urls[i], &o, &r, err, sizeof err) < 0) {
            mcpauth_log(MCPAUTH_LOG_WARN, "discovery_failed", "url", urls[i], "reason", err, NULL);
            continue;
        }
        char *found = NULL;
        json_object *doc = r.status == 200 ? parse_object(r.body, r.len) : NULL;
        const char *di = mcpauth__json_member_str(doc, "issuer", NULL);
        const char *dj = mcpauth__json_member_str(doc, "jwks_uri", NULL);
        if (di && dj && strcmp(di, issuer) == 0)
            found = mcpauth__xstrdup(dj);
        else if (doc)
            mcpauth_log(MCPAUTH_LOG_WARN, "discovery_mismatch", "url", urls[i], "reason",
                        "issuer differs or jwks_uri missing", NULL);
        json_object_put(doc);
        mcpauth__fetch_result_free(&r);
        if (found)
            return found;
    }
    return NULL;
}

/* ------------------------------------------------- keys on disk (shared) */

#define DISK_MAX (2 * 1024 * 1024) /* a fetched set is at most 512 KiB */

/* Writes {"uri", "jwks_uri", "expires", "jwks"} next to is->disk_path and
 * renames it over: readers see the old file or the new one, never part. */
static void disk_write(issuer_rt *is, const char *body, size_t len)
{
    json_object *jwks = parse_object(body, len);
    if (!jwks) /* the parser took it, the strict one not: not worth sharing */
        return;
    json_object *doc = json_object_new_object();
    json_object_object_add(doc, "uri", json_object_new_string(is->disk_key));
    json_object_object_add(doc, "jwks_uri", json_object_new_string(is->jwks_uri));
    json_object_object_add(doc, "expires", json_object_new_int64((int64_t)is->keys_expire));
    json_object_object_add(doc, "fetched", json_object_new_int64((int64_t)is->keys_fetched));
    json_object_object_add(doc, "jwks", jwks);
    size_t n = 0;
    const char *text = json_object_to_json_string_length(doc, JSON_C_TO_STRING_PLAIN, &n);
    unsigned char rnd[8] = {0};
    RAND_bytes(rnd, sizeof rnd);
    size_t tlen = strlen(is->disk_path) + 64;
    char *tmp = mcpauth__xmalloc(tlen);
    snprintf(tmp, tlen, "%s.%ld.%02x%02x%02x%02x%02x%02x%02x%02x.tmp", is->disk_path,
             (long)getpid(), rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    int ok = fd >= 0;
    for (size_t off = 0; ok && off < n;) {
        ssize_t w = write(fd, text + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        ok = w > 0;
        off += ok ? (size_t)w : 0;
    }
    struct stat st;
    ok = ok && fstat(fd, &st) == 0;
    if (fd >= 0 && close(fd) != 0)
        ok = 0;
    if (ok && rename(tmp, is->disk_path) == 0) {
        is->disk_seen = st; /* our own write need not be read back */
    } else {
        if (fd >= 0)
            unlink(tmp);
        mcpauth_log(MCPAUTH_LOG_WARN, "jwks_not_saved", "path", is->disk_path, "reason",
                    strerror(errno), NULL);
    }
    free(tmp);
    json_object_put(doc);
}

/* The only write of is->keys after start-up: the pointer exchange, under
 * the lock; the old set lives on while validations still hold it. */
static void install_keys(issuer_rt *is, mcpauth_jwks *set, time_t expire, time_t fetched)
{
    pthread_mutex_lock(&is->lock);
    mcpauth_jwks *old = is->keys;
    is->keys = set;
    is->keys_expire = expire;
    is->keys_fetched = fetched;
    pthread_mutex_unlock(&is->lock);
    if (old)
        mcpauth__jwks_unref(old);
}

static void set_last_attempt(issuer_rt *is, time_t now)
{
    pthread_mutex_lock(&is->lock);
    is->last_attempt = now;
    pthread_mutex_unlock(&is->lock);
}

/* jwks_min_refresh (at most 10 s while there are no keys) since the last
 * attempt; a last attempt in the future (clock stepped back) does not
 * block. */
static int gap_passed(const mcpauth_validator *v, const issuer_rt *is, time_t now)
{
    long gap = is->keys ? v->cfg->jwks_min_refresh
                        : (v->cfg->jwks_min_refresh < 10 ? v->cfg->jwks_min_refresh : 10);
    return is->last_attempt == 0 || is->last_attempt > now || now - is->last_attempt >= gap;
}

static int same_file(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Takes the key set another process saved, when the file changed since we
 * last saw it and is at least as new as ours.  1 when it was fetched later
 * than ours (perhaps a rotation another process saw: worth a second look).  A file that
 * is not ours, not for this URI or not a key set is ignored (and replaced
 * by the next successful fetch). */
static int disk_read(issuer_rt *is)
{
    int fd = open(is->disk_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return 0;
    struct stat st;
    char why[160];
    int adopted = 0;
    json_object *doc = NULL;
    char *buf = NULL;
    if (mcpauth__shmfile_check(fd, &st, 1, why, sizeof why) != 0) {
        mcpauth_log(MCPAUTH_LOG_WARN, "jwks_file_ignored", "path", is->disk_path, "reason", why,
                    NULL);
        goto out;
    }
    if (same_file(&st, &is->disk_seen) || st.st_size <= 0 || st.st_size > DISK_MAX)
        goto out;
    buf = mcpauth__xmalloc((size_t)st.st_size);
    size_t len = 0;
    while (len < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + len, (size_t)st.st_size - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    is->disk_seen = st;
    json_object *jv, *ev, *fv;
    doc = parse_object(buf, len);
    const char *uri = mcpauth__json_member_str(doc, "uri", NULL);
    const char *ju = mcpauth__json_member_str(doc, "jwks_uri", NULL);
    if (!uri || strcmp(uri, is->disk_key) != 0 || !ju || !*ju ||
        !json_object_object_get_ex(doc, "expires", &ev) || !json_object_is_type(ev, json_type_int) ||
        !json_object_object_get_ex(doc, "fetched", &fv) || !json_object_is_type(fv, json_type_int) ||
        !json_object_object_get_ex(doc, "jwks", &jv) || !json_object_is_type(jv, json_type_object))
        goto out;
    time_t expires = (time_t)json_object_get_int64(ev), fetched = (time_t)json_object_get_int64(fv);
    if (is->keys && fetched < is->keys_fetched)
        goto out;
    size_t jlen = 0;
    const char *jtext = json_object_to_json_string_length(jv, JSON_C_TO_STRING_PLAIN, &jlen);
    char err[256];
    mcpauth_jwks *set = mcpauth__jwks_parse(jtext, jlen, err, sizeof err);
    if (!set)
        goto out;
    adopted = !is->keys || fetched > is->keys_fetched;
    install_keys(is, set, expires, fetched);
    if (!is->jwks_uri)
        is->jwks_uri = mcpauth__xstrdup(ju);
out:
    json_object_put(doc);
    free(buf);
    close(fd);
    return adopted;
}

static time_t stamp_read(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    return (time_t)strtoll(buf, NULL, 10);
}

static void stamp_write(int fd, time_t now)
{
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%lld\n", (long long)now);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)n, 0) != n)
        mcpauth_log(MCPAUTH_LOG_WARN, "jwks_stamp_not_saved", "reason", strerror(errno), NULL);
}

static void refresh_keys(mcpauth_validator *v, issuer_rt *is, time_t now, long long deadline);

/* The fetch rules of get_keys across processes: under the stamp file's
 * flock, keys another process saved are taken first; a fetch happens only
 * when they are still stale (or force and nothing new came), and no
 * process tried within the gap.  The flock is only tried: while another
 * process holds it (it is fetching), this one goes on with the keys it
 * has or the ones saved so far (*elsewhere set), and with none at all
 * waits for that process's file until deadline.  Returns -1 when the
 * stamp file cannot be used (the caller then goes on as without
 * sharing). */
static int shared_refresh(mcpauth_validator *v, issuer_rt *is, int force, time_t now,
                          long long deadline, int *elsewhere)
{
    int fd = open(is->stamp_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK |
                  O_NOCTTY, 0600);
    struct stat st;
    char why[160] = "";
    if (fd < 0)
        snprintf(why, sizeof why, "%s", strerror(errno));
    if (fd < 0 || mcpauth__shmfile_check(fd, &st, 1, why, sizeof why) != 0) {
        mcpauth_log(MCPAUTH_LOG_WARN, "jwks_stamp_unusable", "path", is->stamp_path, "reason", why,
                    NULL);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    for (;;) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno != EWOULDBLOCK) {
            mcpauth_log(MCPAUTH_LOG_WARN, "jwks_stamp_unusable", "path", is->stamp_path,
                        "reason", strerror(errno), NULL);
            close(fd);
            return -1;
        }
        disk_read(is);
        if (is->keys || mono_ms() >= deadline) {
            *elsewhere = 1;
            close(fd);
            return 0;
        }
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    int adopted = disk_read(is);
    int stale = !is->keys || now >= is->keys_expire || (force && !adopted);
    long gap = is->keys ? v->cfg->jwks_min_refresh
                        : (v->cfg->jwks_min_refresh < 10 ? v->cfg->jwks_min_refresh : 10);
    if (stale) {
        /* the host's last attempt; ours only when the stamp is empty */
        time_t last = stamp_read(fd);
        if (last == 0)
            last = is->last_attempt;
        /* a stamp in the future (clock stepped back) does not block */
        if (last == 0 || last > now || now - last >= gap) {
            stamp_write(fd, now);
            refresh_keys(v, is, now, deadline);
        }
    }
    close(fd); /* drops the flock */
    return 0;
}

/* Fetches the key set; on success swaps it in for is->keys.  Called by the
 * one thread that set is->refreshing, without is->lock: the others use the
 * old set meanwhile. */
static void refresh_keys(mcpauth_validator *v, issuer_rt *is, time_t now, long long deadline)
{
    set_last_attempt(is, now);
    if (!is->jwks_uri && is->conf->discovery)
        is->jwks_uri = discover_jwks_uri(v, is->conf->issuer, deadline);
    if (!is->jwks_uri) {
        mcpauth_log(MCPAUTH_LOG_WARN, "jwks_unavailable", "issuer", is->conf->issuer, "reason",
                    "no jwks_uri configured or discovered", NULL);
        return;
    }
    mcpauth_fetch_opts o;
    mcpauth_fetch_result r;
    char err[256];
    if (!fetch_opts(v, &o, deadline)) {
        mcpauth_log(MCPAUTH_LOG_WARN, "jwks_fetch_failed", "url", is->jwks_uri, "reason",
                    "http_timeout spent before the key set could be asked for", NULL);
        return;
    }
    if (mcpauth__fetch(is->jwks_uri, &o, &r, err, sizeof err) < 0 || r.status != 200) {
        if (r.status)
            snprintf(err, sizeof err, "HTTP status %ld", r.status);
        mcpauth_log(MCPAUTH_LOG_WARN, "jwks_fetch_failed", "url", is->jwks_uri, "reason", err,
                    NULL);
        mcpauth__metrics_add(NULL, MCPAUTH_M_JWKS_FAILURES, 1);
        mcpauth__fetch_result_free(&r);
        return; /* the last good set stays in use */
    }
    mcpauth_jwks *set = mcpauth__jwks_parse(r.body, r.len, err, sizeof err);
    long max_age = r.max_age;
    if (!set) {
        mcpauth__fetch_result_free(&r);
        mcpauth_log(MCPAUTH_LOG_WARN, "jwks_invalid", "url", is->jwks_uri, "reason", err, NULL);
        mcpauth__metrics_add(NULL, MCPAUTH_M_JWKS_FAILURES, 1);
        return;
    }
    /* Cache-Control max-age decides, within [jwks_min_refresh, jwks_max_age]. */
    long ttl = max_age < 0 ? v->cfg->jwks_max_age : max_age;
    if (ttl < v->cfg->jwks_min_refresh)
        ttl = v->cfg->jwks_min_refresh;
    if (ttl > v->cfg->jwks_max_age)
        ttl = v->cfg->jwks_max_age;
    install_keys(is, set, now + ttl, now);
    mcpauth__metrics_add(NULL, MCPAUTH_M_JWKS_FETCHES, 1);
    if (is->disk_path)
        disk_write(is, r.body, r.len);
    mcpauth__fetch_result_free(&r);
    char nkeys[16];
    snprintf(nkeys, sizeof nkeys, "%zu", mcpauth__jwks_count(set));
    mcpauth_log(MCPAUTH_LOG_INFO, "jwks_loaded", "issuer", is->conf->issuer, "keys", nkeys, NULL);
}

/* The refresh itself, by the thread that set is->refreshing, within one
 * http_timeout.  1 when another process is fetching (shared_cache). */
static int do_refresh(mcpauth_validator *v, issuer_rt *is, int force, time_t now)
{
    long long deadline = mono_ms() + v->cfg->http_timeout * 1000LL;
    int elsewhere = 0;
    /* shared: another process may have fetched them already */
    if (is->disk_path && shared_refresh(v, is, force, now, deadline, &elsewhere) == 0)
        return elsewhere;
    if (gap_passed(v, is, now))
        refresh_keys(v, is, now, deadline);
    return 0;
}

/* The current key set (a reference the caller drops), refreshed when stale
 * or when force is set, but never more often than jwks_min_refresh.  The
 * caller that finds a refresh due does it; every other one goes on at once
 * with the set in place, except while there is none at all: then it waits
 * for the fetch in flight, at most http_timeout.  *busy: a refresh (here or
 * in another process) is still in flight, so a set without the key the
 * token names is not the last word. */
static mcpauth_jwks *get_keys(mcpauth_validator *v, issuer_rt *is, int force, time_t now,
                              int *busy)
{
    int elsewhere = 0;
    pthread_mutex_lock(&is->lock);
    if (!is->conf->jwks_file) {
        int stale = !is->keys || now >= is->keys_expire || force;
        if (stale && !is->refreshing && (is->disk_path || gap_passed(v, is, now))) {
            is->refreshing = 1;
            pthread_mutex_unlock(&is->lock);
            elsewhere = do_refresh(v, is, force, now);
            pthread_mutex_lock(&is->lock);
            is->refreshing = 0;
            pthread_cond_broadcast(&is->refreshed);
        } else if (!is->keys && is->refreshing) {
            struct timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_sec += v->cfg->http_timeout;
            while (!is->keys && is->refreshing &&
                   pthread_cond_timedwait(&is->refreshed, &is->lock, &until) != ETIMEDOUT)
                ;
        }
    }
    *busy = is->refreshing || elsewhere;
    mcpauth_jwks *set = is->keys ? mcpauth__jwks_ref(is->keys) : NULL;
    pthread_mutex_unlock(&is->lock);
    return set;
}

/* ------------------------------------------------------------------- JWT */

static int validate_jwt(mcpauth_validator *v, const mcpauth_resource *res, const char *token,
                        size_t len, time_t now, mcpauth_decision *d)
{
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (!dot1 || !dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token))) {
        set_verdict(d, MCPAUTH_INVALID_TOKEN, MCPAUTH_REFUSAL_MALFORMED, "malformed token");
        return 0;
    }
    json_object *hdr = decode_part(token, (size_t)(dot1 - token));
    if (!hdr) {
        set_verdict(d, MCPAUTH_INVALID_TOKEN, MCPAUTH_REFUSAL_MALFORMED, "malformed token header");
        return 0;
    }
    json_object *claims = NULL, *jv;
    const mcpauth_jwk *key = NULL;
    mcpauth_jwks *set = NULL;
    int ok = 0;

    mcpauth_alg alg = MCPAUTH_ALG_UNKNOWN;
    const char *alg_name = mcpauth__json_member_str(hdr, "alg", NULL);
    if (alg_name)
        alg = mcpauth__alg_from_name(alg_name);
    /* The allow-list decides, never the token: "none" and HMAC map to
     * UNKNOWN and are refused before any key is touched. */
    if (alg == MCPAUTH_ALG_UNKNOWN || !(v->alg_mask & (1u << alg))) {
        set_verdict(d, MCPAUTH_INVALID_TOKEN, MCPAUTH_REFUSAL_ALGORITHM,
                    "token algorithm not accepted");
        goto out;
    }
    /* We implement no JWS extensions, so any "crit" is unknown (RFC 7515
     * §4.1.11).  jku/x5u/jwk/x5c are ignored: keys come only from the
     * issuer's configured or discovered JWKS. */
    if (json_object_object_get_ex(hdr, "crit", &jv)) {
        set_verdict(d, MCPAUTH_INVALID_TOKEN, MCPAUTH_REFUSAL_MALFORMED,
                    "token has unsupported critical header parameters");
        goto out;
    }
    char kid[257] = "";
    int has_kid = claim_string(hdr, "kid", kid, sizeof kid);
    if (has_kid < 0) {
        set_verdict(d, MCPAUTH_INVALID_TOKEN, MCPAUTH_REFUSAL_MALFORMED, "malformed kid");
        goto out;
    }
    char typ[64] = "";
    if (claim_string(hdr, "typ", typ, sizeof typ) < 0) {
        set_verdict(d, MCPAUTH_INVALID_TOKEN, MCPAUTH_REFUSAL_MALFORMED, "malformed typ");
        goto out;
    }
    claims = decode_part(dot1 + 1, (size_t)(dot2 - dot1 - 1));
    if (!claims) {
        set_verdict(d, MCPAUTH_INVALID_TOKEN, MCPAUTH_REFUSAL_MALFORMED, "malformed token payload");
        goto out;
    }
    /* The issuer picks the keys, so it is checked first (and again as part
     * of the signed claims: it is the same bytes). */
    char iss[512];
    if (claim_string(claims, "iss", iss, sizeof iss) <= 0) {
        set_verdict(d, MCPAUTH_INVALID_TOKEN, MCPAUTH_REFUSAL_ISSUER, "token has no valid iss");
        goto out;
    }
    issuer_rt *is = NULL;
    for (size_t i = 0; i < res->authorization_servers.n && !is; i++)
        if (strcmp(res->authorization_servers.v[i], iss) == 0)
            is = issuer_of(v, res->issuers[i]);
    if (!is) {
        set_verdict(d, MCPAUTH_INVALID_TOKEN, MCPAUTH_REFUSAL_ISSUER,
                    "token issuer is not accepted for this resource");
        goto out;
    }
    if (is->conf->require_typ && strcasecmp(typ, "at+jwt") != 0 &&
        strcasecmp(typ, "application/at+jwt") != 0) {
        set_verdict(d, MCPAUTH_INVALID_TOKEN, MCPAUTH_REFUSAL_MALFORMED,
                    "token typ must be at+jwt");
        goto out;
    }
    int busy = 0;
    set = get_keys(v, is, 0, now, &busy);
    key = set ? mcpauth__jwks_find(set, has_kid > 0 ? kid : NULL, alg) : NULL;
    if (!key && set) {
        /* Unknown kid: the issuer may have rotated.  get_keys limits how
         * often this can reach the AS, whatever tokens arrive. */
        mcpauth__jwks_unref(set);
        set = get_keys(v, is, 1, now, &busy);
        key = set ? mcpauth__jwks_find(set, has_kid > 0 ? kid : NULL, alg) : NULL;
    }
    if (!set) {
        set_verdict(d, MCPAUTH_UNAVAILABLE, MCPAUTH_REFUSAL_UNAVAILABLE,
                    "signing keys of the issuer are unavailable");
        goto out;
    }
    if (!key && busy) {
        /* Another request is fetching the keys: answer now rather than
         * wait (tokens with invented kids must not hold workers while the
         * AS is slow), as an outage, so neither the cache nor the client
         * takes it as final. */
        set_verdict(d, MCPAUTH_UNAVAILABLE, MCPAUTH_REFUSAL_UNAVAILABLE,
                    "signing keys of the issuer are being refreshed");
        goto out;
    }
    if (!key) {
        set_verdict(d, MCPAUTH_INVALID_TOKEN, MCPAUTH_REFUSAL_UNKNOWN_KEY,
                    "no key of the issuer matches the token (kid, alg)");
        goto out;
    }
    unsigned char sig[MCPAUTH_JWS_SIG_MAX];
    ssize_t siglen = mcpauth__b64url_decode(dot2 + 1, len - (size_t)(dot2 + 1 - token), sig,
                                           sizeof sig);
    if (siglen <= 0 ||
        !mcpauth__jws_verify(key, alg, token, (size_t)(dot2 - token), sig, (size_t)siglen)) {
        set_verdict(d, MCPAUTH_INVALID_TOKEN, MCPAUTH_REFUSAL_SIGNATURE,
                    "token signature is invalid");
        goto out;
    }
    /* An OpenID ID token is no access token (RFC 9068 §4): refuse its
     * markers unless the token says at+jwt. */
    if (strcasecmp(typ, "at+jwt") != 0 && strcasecmp(typ, "application/at+jwt") != 0 &&
        (json_object_object_get_ex(claims, "nonce", &jv) ||
         json_object_object_get_ex(claims, "at_hash", &jv))) {
        set_verdict(d, MCPAUTH_INVALID_TOKEN, MCPAUTH_REFUSAL_MALFORMED,
                    "an ID token is not an access token");
        goto out;
    }
    if (!check_claims(v, res, claims, 1, now, d))
        goto out;
    snprintf(d->id.issuer, sizeof d->id.issuer, "%s", iss);
    ok = 1;
out:
    if (set)
        mcpauth__jwks_unref(set);
    json_object_put(claims);
    json_object_put(hdr);
    return ok;
}

/* --------------------------------------------------------- introspection */

/* RFC 7662 at each issuer of the resource that has an endpoint; the first
 * active answer wins.  Returns 1 accepted, 0 refused (d set). */
static int validate_opaque(mcpauth_validator *v, const mcpauth_resource *res, const char *token,
                           time_t now, mcpauth_decision *d)
{
    int tried = 0, unreachable = 0;
    for (size_t i = 0; i < res->authorization_servers.n; i++) {
        const mcpauth_issuer *conf = res->issuers[i];
        if (!conf->introspection_endpoint)
            continue;
        tried++;
        char *enc = mcpauth__check(mcpauth__form_encode(token), "mcpauth__form_encode");
        size_t flen = strlen(enc) + 64;
        char *form = mcpauth__xmalloc(flen);
        snprintf(form, flen, "token=%s&token_type_hint=access_token", enc);
        OPENSSL_cleanse(enc, strlen(enc));
        free(enc);
        mcpauth_fetch_opts o;
        fetch_opts(v, &o, 0);
        o.form = form;
        o.basic_user = conf->introspection_client_id;
        o.basic_pass = conf->introspection_client_secret;
        mcpauth_fetch_result r;
        char err[256];
        int rc = mcpauth__fetch(conf->introspection_endpoint, &o, &r, err, sizeof err);
        OPENSSL_cleanse(form, strlen(form));
        free(form);
        if (rc < 0 || r.status != 200) {
            if (rc == 0)
                snprintf(err, sizeof err, "HTTP status %ld", r.status);
            mcpauth_log(MCPAUTH_LOG_WARN, "introspection_failed", "url",
                        conf->introspection_endpoint, "reason", err, NULL);
            mcpauth__fetch_result_free(&r);
            mcpauth__metrics_add(NULL, MCPAUTH_M_INTROSPECTION_FAILURES, 1);
            unreachable++;
            continue;
        }
        json_object *doc = parse_object(r.body, r.len), *av;
        mcpauth__fetch_result_free(&r);
        if (!doc) { /* not an answer: as good as no answer */
            mcpauth_log(MCPAUTH_LOG_WARN, "introspection_failed", "url",
                        conf->introspection_endpoint, "reason", "response is not a JSON object",
                        NULL);
            mcpauth__metrics_add(NULL, MCPAUTH_M_INTROSPECTION_FAILURES, 1);
            unreachable++;
            continue;
        }
        mcpauth__metrics_add(NULL, MCPAUTH_M_INTROSPECTIONS, 1);
        int active = json_object_object_get_ex(doc, "active", &av) &&
                     json_object_is_type(av, json_type_boolean) && json_object_get_boolean(av);
        /* A refresh token is never a Bearer credential (RFC 6749 §1.5),
         * even if the AS calls it active. */
        char ttype[64];
        if (active && claim_string(doc, "token_type", ttype, sizeof ttype) > 0 &&
            strcasecmp(ttype, "Bearer") != 0 && strcasecmp(ttype, "access_token") != 0)
            active = 0;
        if (!active) {
            json_object_put(doc);
            continue;
        }
        char iss[512];
        int ir = claim_string(doc, "iss", iss, sizeof iss);
        if (ir < 0 || (ir > 0 && strcmp(iss, conf->issuer) != 0)) {
            json_object_put(doc);
            set_verdict(d, MCPAUTH_INVALID_TOKEN, MCPAUTH_REFUSAL_ISSUER,
                        "introspected token has another issuer");
            return 0;
        }
        int ok = check_claims(v, res, doc, 0, now, d);
        json_object_put(doc);
        if (!ok)
            return 0;
        snprintf(d->id.issuer, sizeof d->id.issuer, "%s", conf->issuer);
        return 1;
    }
    /* One issuer down is enough to leave the question open: the token may be
     * its, so "not active" from the others must not be cached as a refusal. */
    if (!tried)
        set_verdict(d, MCPAUTH_INVALID_TOKEN, MCPAUTH_REFUSAL_MALFORMED,
                    "token is not a JWT and no introspection is configured");
    else if (unreachable > 0)
        set_verdict(d, MCPAUTH_UNAVAILABLE, MCPAUTH_REFUSAL_UNAVAILABLE,
                    "token introspection is unavailable");
    else
        set_verdict(d, MCPAUTH_INVALID_TOKEN, MCPAUTH_REFUSAL_INACTIVE, "token is not active");
    return 0;
}

/* ------------------------------------------------------------ public API */

static int is_b64token(const char *t, size_t len)
{
    /* RFC 6750 §2.1: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" */
    size_t i = 0;
    while (i < len && (isalnum((unsigned char)t[i]) || strchr("-._~+/", t[i]) != NULL) && t[i])
        i++;
    if (i == 0)
        return 0;
    while (i < len && t[i] == '=')
        i++;
    return i == len;
}

/* A token of the built-in AS is looked up in the AS's revocation list
 * (key: SHA-256 of the token), after a full check and on every cache hit,
 * so a cached "valid" does not outlive a revocation.  1 when d now holds a
 * refusal. */
static int builtin_refused(mcpauth_validator *v, const unsigned char key[SHA256_DIGEST_LENGTH],
                           time_t now, mcpauth_decision *d)
{
    if (!v->builtin_iss || strcmp(d->id.issuer, v->builtin_iss) != 0)
        return 0;
    int r = mcpauth__revoked_has(v->revoked, key, now);
    if (r == 0)
        return 0;
    if (r > 0)
        set_verdict(d, MCPAUTH_INVALID_TOKEN, MCPAUTH_REFUSAL_REVOKED, "token has been revoked");
    else /* fail closed, but do not make clients throw the token away */
        set_verdict(d, MCPAUTH_UNAVAILABLE, MCPAUTH_REFUSAL_UNAVAILABLE,
                    "the revocation list is unavailable");
    return 1;
}

/* A cached refusal is its code, as one letter ('A' + code), then its
 * description: the cache keeps text, and the code must come back as it
 * was set, not be guessed from the words.  The shared cache's layout
 * version changed with this (cache.c SH_VERSION 2), so no older process
 * shares a file with this one; an entry without the letter is still told
 * apart (descriptions start in lower case) and counts as OTHER. */
static const char *neg_pack(const mcpauth_decision *d, char out[1 + sizeof d->description])
{
    out[0] = (char)('A' + d->refusal);
    memcpy(out + 1, d->description, sizeof d->description); /* NUL-terminated by set_verdict */
    return out;
}

static void neg_unpack(const char *in, mcpauth_decision *d)
{
    int tagged = in[0] > 'A' && in[0] < 'A' + MCPAUTH_REFUSAL_COUNT;
    d->verdict = MCPAUTH_INVALID_TOKEN;
    d->refusal = tagged ? (mcpauth_refusal)(in[0] - 'A') : MCPAUTH_REFUSAL_OTHER;
    const char *text = tagged ? in + 1 : in;
    size_t n = strnlen(text, sizeof d->description - 1);
    memcpy(d->description, text, n);
    d->description[n] = '\0';
}

void mcpauth_validate_token(mcpauth_validator *v, const mcpauth_resource *res, const char *token,
                            size_t len, const char *method, const mcpauth_strlist *extra_scopes,
                            mcpauth_decision *d)
{
    memset(d, 0, sizeof *d);
    int over = needed_scopes(res, method, extra_scopes, d->scope_needed, sizeof d->scope_needed);
    unsigned char key[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)token, len, key);
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 4; i++) {
        d->token_hash[2 * i] = hex[key[i] >> 4];
        d->token_hash[2 * i + 1] = hex[key[i] & 15];
    }
    if (len > (size_t)v->cfg->token_max_bytes) {
        set_verdict(d, MCPAUTH_INVALID_TOKEN, MCPAUTH_REFUSAL_MALFORMED,
                    "token larger than %ld bytes", v->cfg->token_max_bytes);
        return;
    }
    time_t now = mcpauth__now(); /* never back: an expired token stays so */
    unsigned ridx = (unsigned)(res - v->cfg->resources);
    /* shared: the resource as its settings, not its place in this file */
    const unsigned char *ckey = key;
    unsigned char skey[SHA256_DIGEST_LENGTH];
    if (v->res_fp) {
        unsigned char both[2 * SHA256_DIGEST_LENGTH];
        memcpy(both, key, SHA256_DIGEST_LENGTH);
        memcpy(both + SHA256_DIGEST_LENGTH, v->res_fp[ridx], SHA256_DIGEST_LENGTH);
        SHA256(both, sizeof both, skey);
        ckey = skey;
        ridx = 0;
    }
    int positive;
    char neg[1 + sizeof d->description]; /* a refusal as cached: see neg_pack */
    if (mcpauth__cache_get(v->cache, ckey, ridx, now, &positive, &d->id, neg, sizeof neg)) {
        mcpauth__metrics_add(res, MCPAUTH_M_CACHE_HIT, 1);
        d->cached = 1;
        if (!positive) {
            neg_unpack(neg, d);
            return;
        }
        /* expiry is rechecked: an entry never outlives its token */
        if (d->id.exp && now >= d->id.exp + v->cfg->clock_leeway) {
            set_verdict(d, MCPAUTH_INVALID_TOKEN, MCPAUTH_REFUSAL_EXPIRED, "token expired");
            return;
        }
        if (builtin_refused(v, key, now, d))
            return;
    } else {
        if (v->cache)
            mcpauth__metrics_add(res, MCPAUTH_M_CACHE_MISS, 1);
        int dots = 0;
        for (size_t i = 0; i < len; i++)
            dots += token[i] == '.';
        int ok = dots == 2 ? validate_jwt(v, res, token, len, now, d)
                           : validate_opaque(v, res, token, now, d);
        if (ok && builtin_refused(v, key, now, d))
            ok = 0;
        if (ok) {
            time_t until = now + v->cfg->cache_ttl;
            if (d->id.exp && d->id.exp + v->cfg->clock_leeway < until)
                until = (time_t)(d->id.exp + v->cfg->clock_leeway);
            if (mcpauth__cache_put(v->cache, ckey, ridx, until, 1, &d->id, NULL))
                mcpauth__metrics_add(res, MCPAUTH_M_CACHE_EVICTIONS, 1);
        } else {
            /* Outages are not remembered: the next request may succeed. */
            if (d->verdict == MCPAUTH_INVALID_TOKEN && v->cfg->cache_negative_ttl > 0 &&
                mcpauth__cache_put(v->cache, ckey, ridx, now + v->cfg->cache_negative_ttl, 0, NULL,
                                   neg_pack(d, neg)))
                mcpauth__metrics_add(res, MCPAUTH_M_CACHE_EVICTIONS, 1);
            return;
        }
    }
    require_scopes(d, over);
}

static int has_query_token(const char *q)
{
    for (const char *p = q; p && *p;) {
        if (strncmp(p, "access_token=", 13) == 0)
            return 1;
        p = strchr(p, '&');
        if (p)
            p++;
    }
    return 0;
}

static void log_refusal(const mcpauth_decision *d, const mcpauth_resource *res,
                        const mcpauth_request *req)
{
    if (d->verdict != MCPAUTH_ALLOW && d->verdict != MCPAUTH_NO_TOKEN)
        mcpauth_log_security("token_rejected", "reason", d->description, "client",
                             req->remote_addr, "resource", res->name, "token",
                             d->token_hash[0] ? d->token_hash : NULL, "cached",
                             d->cached ? "1" : NULL, NULL);
}

void mcpauth_validate_request(mcpauth_validator *v, const mcpauth_resource *res,
                              const mcpauth_request *req, const mcpauth_strlist *extra_scopes,
                              mcpauth_decision *d)
{
    mcpauth__metrics_attach(v->cfg); /* here, not at start-up: never by a --check run */
    long long t0 = mcpauth__metrics_now();
    const char *h = mcpauth_request_param(req, "HTTP_AUTHORIZATION");
    const char *t = h ? h + 6 : NULL;
    mcpauth_verdict early = MCPAUTH_ALLOW;
    mcpauth_refusal early_r = MCPAUTH_REFUSAL_NONE;
    const char *why = NULL;
    if (has_query_token(req->query)) {
        early = MCPAUTH_BAD_REQUEST;
        early_r = MCPAUTH_REFUSAL_BAD_REQUEST;
        why = "access tokens are accepted only in the Authorization header";
    } else if (!h || strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\0')) {
        /* none, or another scheme: no credentials for us (RFC 6750 §3.1) */
        early = MCPAUTH_NO_TOKEN;
        early_r = MCPAUTH_REFUSAL_NO_TOKEN;
        why = "Bearer token required";
    } else {
        while (*t == ' ')
            t++;
        if (!is_b64token(t, strlen(t))) {
            early = MCPAUTH_BAD_REQUEST;
            early_r = MCPAUTH_REFUSAL_BAD_REQUEST;
            why = *t ? "malformed Authorization header (one Bearer token of RFC 6750 syntax "
                       "expected)"
                     : "empty Bearer token";
        }
    }
    if (early == MCPAUTH_ALLOW) {
        mcpauth_validate_token(v, res, t, strlen(t), req->method, extra_scopes, d);
    } else {
        memset(d, 0, sizeof *d);
        needed_scopes(res, req->method, extra_scopes, d->scope_needed, sizeof d->scope_needed);
        set_verdict(d, early, early_r, "%s", why);
    }
    log_refusal(d, res, req);
    mcpauth__metrics_observe(res, MCPAUTH_H_VALIDATION, mcpauth__metrics_now() - t0);
    mcpauth__metrics_add(res, (mcpauth__metric)(MCPAUTH_M_REQ_ALLOW + d->verdict), 1);
    if (d->verdict != MCPAUTH_ALLOW)
        mcpauth__metrics_add(res, mcpauth__metrics_refused(d->refusal), 1);
}

void mcpauth_validate_scopes(const mcpauth_resource *res, const mcpauth_request *req,
                             const mcpauth_strlist *extra_scopes, mcpauth_decision *d)
{
    int over = needed_scopes(res, req->method, extra_scopes, d->scope_needed,
                             sizeof d->scope_needed);
    require_scopes(d, over);
    log_refusal(d, res, req);
    if (d->verdict != MCPAUTH_ALLOW) /* the decision itself was counted allowed */
        mcpauth__metrics_add(res, mcpauth__metrics_refused(d->refusal), 1);
}

void mcpauth_decision_respond(const mcpauth_decision *d, const mcpauth_resource *res,
                              mcpauth_response *resp)
{
    /* Room for the longest metadata URL the configuration accepts, the
     * description and every scope: a challenge is never cut short. */
    char www[3 * 1024 + sizeof d->description + sizeof d->scope_needed];
    const char *error = NULL;
    switch (d->verdict) {
    case MCPAUTH_BAD_REQUEST: error = "invalid_request"; break;
    case MCPAUTH_INVALID_TOKEN: error = "invalid_token"; break;
    case MCPAUTH_INSUFFICIENT_SCOPE: error = "insufficient_scope"; break;
    case MCPAUTH_UNAVAILABLE: error = "temporarily_unavailable"; break;
    default: break;
    }
    mcpauth__strbuf sb;
    mcpauth__sb_init(&sb, www, sizeof www);
    if (error && d->verdict != MCPAUTH_UNAVAILABLE)
        mcpauth__sb_printf(&sb, "Bearer error=\"%s\", error_description=\"%s\", "
                           "resource_metadata=\"%s\"", error, d->description, res->metadata_url);
    else
        mcpauth__sb_printf(&sb, "Bearer resource_metadata=\"%s\"", res->metadata_url);
    if (d->scope_needed[0])
        mcpauth__sb_printf(&sb, ", scope=\"%s\"", d->scope_needed);
    int status = mcpauth_verdict_status(d->verdict);
    if (!mcpauth__sb_str(&sb)) {
        /* cannot happen with the sizes above; never send part of one */
        mcpauth_log(MCPAUTH_LOG_ERROR, "challenge_too_long", "resource", res->name, NULL);
        mcpauth_response_error(resp, 500, "server_error", NULL);
        return;
    }
    if (status != 503)
        mcpauth_response_header(resp, "WWW-Authenticate", www);
    else /* keys or introspection unavailable: worth asking again soon */
        mcpauth_response_header(resp, "Retry-After", MCPAUTH__RETRY_AFTER_S);
    /* Browser-based MCP clients must be able to read the challenge. */
    mcpauth_response_header(resp, "Access-Control-Allow-Origin", "*");
    mcpauth_response_header(resp, "Access-Control-Expose-Headers", "WWW-Authenticate");
    mcpauth_response_error(resp, status, error ? error : "invalid_token", d->description);
}

/* Adds s and its NUL (or a marker for NULL) to a digest. */
static void fp_add(EVP_MD_CTX *md, const char *s)
{
    if (!s)
        s = "\1";
    mcpauth__check(EVP_DigestUpdate(md, s, strlen(s) + 1) == 1 ? md : NULL, "EVP_DigestUpdate");
}

static void fp_num(EVP_MD_CTX *md, long long n)
{
    char b[32];
    snprintf(b, sizeof b, "%lld", n);
    fp_add(md, b);
}

/* v->res_fp: what decides a token's validity for each resource, so a
 * cache file shared with a program of another configuration never answers
 * for a resource, issuer or rule set the entry was not checked against.
 * Scopes are left out: they are checked after the cache. */
static void resource_fingerprints(mcpauth_validator *v)
{
    const mcpauth_config *cfg = v->cfg;
    v->res_fp = mcpauth__xcalloc(cfg->nresources ? cfg->nresources : 1, sizeof *v->res_fp);
    for (size_t r = 0; r < cfg->nresources; r++) {
        const mcpauth_resource *res = &cfg->resources[r];
        EVP_MD_CTX *sb = mcpauth__check(EVP_MD_CTX_new(), "EVP_MD_CTX_new");
        mcpauth__check(EVP_DigestInit_ex(sb, EVP_sha256(), NULL) == 1 ? sb : NULL,
                       "EVP_DigestInit_ex");
        fp_add(sb, "mcpauth validation cache 1");
        fp_add(sb, res->uri);
        for (size_t i = 0; i < res->audiences.n; i++)
            fp_add(sb, res->audiences.v[i]);
        fp_add(sb, "|");
        for (size_t i = 0; i < cfg->jwt_algorithms.n; i++)
            fp_add(sb, cfg->jwt_algorithms.v[i]);
        fp_add(sb, "|");
        fp_num(sb, cfg->clock_leeway);
        fp_num(sb, cfg->token_max_bytes);
        fp_num(sb, cfg->cache_ttl);
        fp_num(sb, cfg->cache_negative_ttl);
        fp_add(sb, cfg->as ? cfg->as->issuer : NULL);
        for (size_t i = 0; i < res->authorization_servers.n; i++) {
            const mcpauth_issuer *is = res->issuers[i];
            fp_add(sb, res->authorization_servers.v[i]);
            fp_add(sb, is->issuer);
            fp_add(sb, is->jwks_file);
            fp_add(sb, is->jwks_uri);
            fp_num(sb, is->discovery);
            fp_add(sb, is->introspection_endpoint);
            fp_add(sb, is->introspection_client_id);
            fp_num(sb, is->require_typ);
        }
        mcpauth__check(EVP_DigestFinal_ex(sb, v->res_fp[r], NULL) == 1 ? sb : NULL,
                       "EVP_DigestFinal_ex");
        EVP_MD_CTX_free(sb);
    }
}

/* runtime_dir/jwks-<16 hex of SHA-256(disk_key)>.json and .stamp. */
static void disk_names(mcpauth_validator *v, issuer_rt *is)
{
    if (is->conf->jwks_uri) {
        is->disk_key = mcpauth__xstrdup(is->conf->jwks_uri);
    } else {
        size_t n = strlen(is->conf->issuer) + 8;
        is->disk_key = mcpauth__xmalloc(n);
        snprintf(is->disk_key, n, "issuer:%s", is->conf->issuer);
    }
    unsigned char h[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)is->disk_key, strlen(is->disk_key), h);
    char hex[17];
    for (int i = 0; i < 8; i++)
        snprintf(hex + 2 * i, 3, "%02x", h[i]);
    size_t n = strlen(v->cfg->runtime_dir) + 64;
    is->disk_path = mcpauth__xmalloc(n);
    is->stamp_path = mcpauth__xmalloc(n);
    snprintf(is->disk_path, n, "%s/jwks-%s.json", v->cfg->runtime_dir, hex);
    snprintf(is->stamp_path, n, "%s/jwks-%s.stamp", v->cfg->runtime_dir, hex);
}

/* shared_cache = yes: the validation cache in runtime_dir/cache.shm and the
 * remote key sets beside it.  1 when shared; 0 with one warning when
 * runtime_dir cannot hold them (then this process keeps its own, as
 * without shared_cache). */
static int open_shared(mcpauth_validator *v)
{
    const mcpauth_config *cfg = v->cfg;
    char path[4096], why[512] = "";
    if (!cfg->runtime_dir || !*cfg->runtime_dir)
        snprintf(why, sizeof why, "runtime_dir is not set");
    else if ((size_t)snprintf(path, sizeof path, "%s/cache.shm", cfg->runtime_dir) >= sizeof path)
        snprintf(why, sizeof why, "runtime_dir is too long");
    else if (cfg->cache_entries > 0)
        v->cache = mcpauth__cache_open_shared(path, (size_t)cfg->cache_entries, why, sizeof why);
    else if (access(cfg->runtime_dir, W_OK | X_OK) != 0)
        snprintf(why, sizeof why, "%s: %s", cfg->runtime_dir, strerror(errno));
    if (why[0]) {
        mcpauth_log(MCPAUTH_LOG_WARN, "shared_cache_unavailable", "reason", why, "effect",
                    "validation results and keys are kept in this process only", NULL);
        return 0;
    }
    resource_fingerprints(v);
    return 1;
}

/* check: only what mcpauth_validator_check promises (the key files),
 * nothing opened in runtime_dir. */
static mcpauth_validator *validator_build(const mcpauth_config *cfg, int check, char *err,
                                          size_t errlen)
{
    mcpauth_validator *v = mcpauth__xcalloc(1, sizeof *v);
    v->cfg = cfg;
    for (size_t i = 0; i < cfg->jwt_algorithms.n; i++) {
        mcpauth_alg a = mcpauth__alg_from_name(cfg->jwt_algorithms.v[i]);
        if (a != MCPAUTH_ALG_UNKNOWN)
            v->alg_mask |= 1u << a;
    }
    v->issuers = mcpauth__xcalloc(cfg->nissuers ? cfg->nissuers : 1, sizeof *v->issuers);
    int shared = !check && cfg->shared_cache == 1 && open_shared(v);
    if (!v->cache) /* a check validates nothing: no room for results */
        v->cache = mcpauth__check(mcpauth__cache_new(check ? 0 : (size_t)cfg->cache_entries),
                                  "mcpauth__cache_new");
    for (size_t i = 0; i < cfg->nissuers; i++) {
        issuer_rt *is = &v->issuers[v->nissuers++];
        is->conf = cfg->issuers[i];
        pthread_mutex_init(&is->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&is->refreshed, &ca);
        pthread_condattr_destroy(&ca);
        if (is->conf->jwks_uri)
            is->jwks_uri = mcpauth__xstrdup(is->conf->jwks_uri);
        if (shared && !is->conf->jwks_file && (is->conf->jwks_uri || is->conf->discovery))
            disk_names(v, is);
        if (is->conf->jwks_file) {
            /* Local keys are read once here; a bad file stops start-up. */
            FILE *f = fopen(is->conf->jwks_file, "r");
            char buf[256 * 1024];
            size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
            if (f)
                fclose(f);
            char why[256];
            is->keys = f ? mcpauth__jwks_parse(buf, n, why, sizeof why) : NULL;
            if (!is->keys) {
                snprintf(err, errlen, "%s: %s", is->conf->jwks_file,
                         f ? why : strerror(errno));
                mcpauth_validator_free(v);
                return NULL;
            }
        }
    }
    if (!check && cfg->as && cfg->as->issuer) {
        /* Not a start-up failure: the AS creates the file and may start
         * after us.  Until it can be read, the built-in AS's tokens are
         * refused (503), and this line says why. */
        char why[512];
        v->builtin_iss = cfg->as->issuer;
        v->revoked = mcpauth__revoked_open(cfg, 0, why, sizeof why); /* shm or Redis */
        if (why[0])
            mcpauth_log(MCPAUTH_LOG_ERROR, "revocation_list_unavailable", "reason", why, "effect",
                        "tokens of the built-in authorization server are refused until mcpauth-as "
                        "has created it in runtime_dir",
                        NULL);
    }
    return v;
}

mcpauth_validator *mcpauth_validator_new(const mcpauth_config *cfg, char *err, size_t errlen)
{
    return validator_build(cfg, 0, err, errlen);
}

int mcpauth_validator_check(const mcpauth_config *cfg, char *err, size_t errlen)
{
    mcpauth_validator *v = validator_build(cfg, 1, err, errlen);
    if (!v)
        return -1;
    mcpauth_validator_free(v);
    return 0;
}

void mcpauth_validator_free(mcpauth_validator *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->nissuers; i++) {
        if (v->issuers[i].keys)
            mcpauth__jwks_unref(v->issuers[i].keys);
        free(v->issuers[i].jwks_uri);
        free(v->issuers[i].disk_key);
        free(v->issuers[i].disk_path);
        free(v->issuers[i].stamp_path);
        pthread_mutex_destroy(&v->issuers[i].lock);
        pthread_cond_destroy(&v->issuers[i].refreshed);
    }
    free(v->issuers);
    mcpauth__cache_free(v->cache);
    mcpauth__revoked_close(v->revoked);
    free(v->res_fp);
    free(v);
}
