/* See asflow.h. */
#define _GNU_SOURCE
#include "asflow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

/* snprintf that says whether it fitted: 0, or -1. */
#define FITS(buf, len, ...) (snprintf((buf), (len), __VA_ARGS__) < (int)(len) ? 0 : -1)

void asflow_curl_init(CURL *c, size_t (*on_body)(char *, size_t, size_t, void *),
                      size_t (*on_header)(char *, size_t, size_t, void *), void *ctx,
                      long timeout_s)
{
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, ctx);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, ctx);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    /* threads: no SIGALRM for timeouts */
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_s);
}

size_t asflow_append(char **body, size_t *len, size_t *cap, const char *d, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 8192;
        while (c < *len + n + 1)
            c *= 2;
        char *nb = realloc(*body, c);
        if (!nb)
            return 0;
        *body = nb;
        *cap = c;
    }
    memcpy(*body + *len, d, n);
    *len += n;
    (*body)[*len] = '\0';
    return n;
}

int asflow_header(const char *d, size_t len, const char *name, char *out, size_t outlen)
{
    size_t skip = strlen(name);
    if (len <= skip || strncasecmp(d, name, skip) != 0)
        return 0;
    const char *v = d + skip, *end = d + len;
    while (v < end && *v == ' ')
        v++;
    size_t vl = strcspn(v, "\r\n");
    if (vl > (size_t)(end - v))
        vl = (size_t)(end - v);
    if (vl < outlen) {
        memcpy(out, v, vl);
        out[vl] = '\0';
    }
    return 1;
}

int asflow_as_init(asflow_as *as, const char *who, const char *base, const char *resource)
{
    memset(as, 0, sizeof *as);
    char *er = asflow_enc(resource), *ed = asflow_enc(ASFLOW_REDIRECT);
    int rc = FITS(as->who, sizeof as->who, "%s", who) |
             FITS(as->authz, sizeof as->authz, "%s/oauth2/authorize", base) |
             FITS(as->token, sizeof as->token, "%s/oauth2/token", base) |
             FITS(as->reg, sizeof as->reg, "%s/oauth2/register", base) |
             FITS(as->e_resource, sizeof as->e_resource, "%s", er) |
             FITS(as->e_redirect, sizeof as->e_redirect, "%s", ed);
    free(er);
    free(ed);
    return rc ? -1 : 0;
}

char *asflow_enc(const char *s)
{
    /* a NULL handle: no state shared between threads */
    char *e = curl_easy_escape(NULL, s, 0), *copy = strdup(e ? e : "");
    curl_free(e);
    if (!copy)
        abort();
    return copy;
}

int asflow_json_str(const char *text, const char *name, char *buf, size_t len)
{
    json_object *o = text ? json_tokener_parse(text) : NULL, *v = NULL;
    int ok = o && json_object_object_get_ex(o, name, &v) && json_object_is_type(v, json_type_string) &&
             (size_t)json_object_get_string_len(v) < len;
    if (ok)
        snprintf(buf, len, "%s", json_object_get_string(v));
    json_object_put(o);
    return ok ? 0 : -1;
}

/* base64url without padding; out holds 4 * ceil(n / 3) + 1 bytes. */
static void b64url(const unsigned char *in, size_t n, char *out)
{
    int l = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    while (l > 0 && out[l - 1] == '=')
        l--;
    out[l] = '\0';
    for (int i = 0; i < l; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
}

static const char *or_empty(const char *s)
{
    return s ? s : "";
}

int asflow_register(const asflow_as *as, asflow_http_fn http, void *ctx, int i, asflow_client *c)
{
    char body[512];
    snprintf(body, sizeof body,
             "{\"client_name\":\"%s client %d\",\"redirect_uris\":[\"" ASFLOW_REDIRECT "\"],"
             "\"token_endpoint_auth_method\":\"none\","
             "\"grant_types\":[\"authorization_code\",\"refresh_token\"]}",
             as->who, i);
    const char *h[] = {ASFLOW_JSON_TYPE, NULL};
    asflow_answer a = {0, NULL, NULL};
    http(ctx, as->reg, h, body, &a);
    if (a.status != 201 || asflow_json_str(a.body, "client_id", c->id, sizeof c->id) < 0) {
        fprintf(stderr, "%s: registration: %ld %s\n", as->who, a.status, or_empty(a.body));
        return -1;
    }
    char *e = asflow_enc(c->id);
    int fits = FITS(c->e_id, sizeof c->e_id, "%s", e);
    free(e);
    unsigned char rnd[32], md[32];
    if (fits < 0 || RAND_bytes(rnd, sizeof rnd) != 1)
        return -1;
    b64url(rnd, sizeof rnd, c->verifier); /* 43 characters */
    SHA256((const unsigned char *)c->verifier, strlen(c->verifier), md);
    b64url(md, sizeof md, c->challenge);
    return 0;
}

void asflow_authorize_url(const asflow_as *as, const asflow_client *c, char *buf, size_t len)
{
    snprintf(buf, len,
             "%s?response_type=code&client_id=%s&redirect_uri=%s&code_challenge=%s"
             "&code_challenge_method=S256&resource=%s&scope=files%%3Aread&state=%s",
             as->authz, c->e_id, as->e_redirect, c->challenge, as->e_resource, as->who);
}

/* value="..." of the consent page's hidden input name, HTML-unescaped. */
static int hidden(const char *page, const char *name, char *out, size_t len)
{
    char key[128];
    snprintf(key, sizeof key, "name=\"%s\" value=\"", name);
    const char *p = page ? strstr(page, key) : NULL;
    if (!p)
        return -1;
    p += strlen(key);
    const char *e = strchr(p, '"');
    size_t o = 0;
    static const char *const ent[][2] = {{"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"},
                                         {"&quot;", "\""}, {"&#39;", "'"}};
    while (e && p < e && o + 1 < len) {
        size_t i;
        for (i = 0; i < sizeof ent / sizeof ent[0]; i++)
            if (!strncmp(p, ent[i][0], strlen(ent[i][0])))
                break;
        if (i < sizeof ent / sizeof ent[0]) {
            out[o++] = ent[i][1][0];
            p += strlen(ent[i][0]);
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
    return e && p == e ? 0 : -1;
}

int asflow_consent(const asflow_as *as, asflow_http_fn http, void *ctx, const asflow_client *c)
{
    char url[2048];
    asflow_authorize_url(as, c, url, sizeof url);
    const char *h[] = {ASFLOW_BASIC_LOGIN, NULL};
    asflow_answer a = {0, NULL, NULL};
    http(ctx, url, h, NULL, &a);
    if (a.status != 200) {
        fprintf(stderr, "%s: consent page: %ld %s\n", as->who, a.status, or_empty(a.body));
        return -1;
    }
    static const char *const names[] = {"response_type", "client_id", "redirect_uri", "scope",
                                        "state", "code_challenge", "code_challenge_method",
                                        "resource", "ts", "nonce", "csrf", NULL};
    char *form = NULL;
    size_t flen = 0;
    FILE *m = open_memstream(&form, &flen);
    int ok = m != NULL;
    for (int i = 0; ok && names[i]; i++) {
        char v[2048];
        ok = hidden(a.body, names[i], v, sizeof v) == 0;
        if (ok) {
            char *ev = asflow_enc(v);
            fprintf(m, "%s%s=%s", i ? "&" : "", names[i], ev);
            free(ev);
        } else {
            fprintf(stderr, "%s: no hidden %s in the consent page\n", as->who, names[i]);
        }
    }
    if (m) {
        fputs("&decision=approve&remember=1", m);
        fclose(m);
    }
    if (ok) {
        const char *h2[] = {ASFLOW_BASIC_LOGIN, ASFLOW_FORM_TYPE, NULL};
        http(ctx, as->authz, h2, form, &a);
        ok = a.status == 302 && a.location && strstr(a.location, "code=");
        if (!ok)
            fprintf(stderr, "%s: consent: %ld %s\n", as->who, a.status, or_empty(a.body));
    }
    free(form);
    return ok ? 0 : -1;
}

int asflow_code(const char *location, char *code, size_t len)
{
    const char *p = location ? strstr(location, "?code=") : NULL;
    if (!p)
        return -1;
    p += 6;
    size_t n = strcspn(p, "&");
    if (n == 0 || n >= len)
        return -1;
    memcpy(code, p, n);
    code[n] = '\0';
    return 0;
}

int asflow_exchange_form(const asflow_as *as, const asflow_client *c, const char *code, char *buf,
                         size_t len)
{
    return FITS(buf, len,
                "grant_type=authorization_code&code=%s&code_verifier=%s&redirect_uri=%s"
                "&client_id=%s&resource=%s",
                code, c->verifier, as->e_redirect, c->e_id, as->e_resource);
}

int asflow_refresh_form(const asflow_as *as, const asflow_client *c, const char *refresh_token,
                        char *buf, size_t len)
{
    return FITS(buf, len, "grant_type=refresh_token&refresh_token=%s&client_id=%s&resource=%s",
                refresh_token, c->e_id, as->e_resource);
}
