/* Random values, the signing keys, and the access tokens (JWTs) this AS
 * mints and later recognises at introspection and revocation. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include <mcpauth/log.h>

#include "alloc.h"
#include "as_priv.h"
#include "encode.h"

int mcpauth__as_random(char *out, size_t cap, size_t bytes)
{
    unsigned char raw[64];
    if (bytes > sizeof raw || RAND_bytes(raw, (int)bytes) != 1)
        return -1;
    return mcpauth__b64url_encode(raw, bytes, out, cap) < 0 ? -1 : 0;
}

void mcpauth__as_keys_put(mcpauth__as_keys *k)
{
    if (!k || atomic_fetch_sub_explicit(&k->refs, 1, memory_order_acq_rel) != 1)
        return;
    mcpauth__signer_free(k->signer);
    free(k->jwks);
    if (k->verify)
        mcpauth__jwks_unref(k->verify);
    free(k);
}

/* A new snapshot from the store and the key files (I/O: no lock held). */
static mcpauth__as_keys *load_keys(mcpauth_as *as, time_t now, char *err, size_t errlen)
{
    mcpauth_signer *s = mcpauth__keys_load_current(as->store, err, errlen);
    if (!s)
        return NULL;
    char *jwks = mcpauth__keys_jwks(as->store, now - as->ac->access_token_ttl - 60, err, errlen);
    mcpauth_jwks *set = jwks ? mcpauth__jwks_parse(jwks, strlen(jwks), err, errlen) : NULL;
    if (!set) {
        free(jwks);
        mcpauth__signer_free(s);
        return NULL;
    }
    mcpauth__as_keys *k = mcpauth__xcalloc(1, sizeof *k);
    atomic_init(&k->refs, 1);
    k->signer = s;
    k->jwks = jwks;
    k->verify = set;
    return k;
}

/* Swaps k in (NULL: keeps the current set) and ends the reload. */
static void install_keys(mcpauth_as *as, mcpauth__as_keys *k)
{
    pthread_mutex_lock(&as->key_lock);
    mcpauth__as_keys *old = k ? as->keys : NULL;
    if (k)
        as->keys = k;
    as->key_loading = 0;
    pthread_mutex_unlock(&as->key_lock);
    mcpauth__as_keys_put(old);
}

int mcpauth__as_refresh_keys(mcpauth_as *as, time_t now, char *err, size_t errlen)
{
    mcpauth__as_keys *k = load_keys(as, now, err, errlen);
    install_keys(as, k);
    return k ? 0 : -1;
}

/* Reloads when the snapshot is older than max_age seconds. */
static mcpauth__as_keys *keys_get(mcpauth_as *as, time_t now, time_t max_age)
{
    pthread_mutex_lock(&as->key_lock);
    /* a clock stepped back does not postpone the next reload */
    if (!as->key_loading &&
        (!as->keys || now - as->key_checked >= max_age || now < as->key_checked)) {
        as->key_loading = 1;
        as->key_checked = now;
        pthread_mutex_unlock(&as->key_lock);
        char err[256] = "";
        if (mcpauth__as_refresh_keys(as, now, err, sizeof err) < 0)
            mcpauth_log(MCPAUTH_LOG_WARN, "signing_keys_not_reloaded", "reason", err, "effect",
                        "the keys loaded before stay in use", NULL);
        pthread_mutex_lock(&as->key_lock);
    }
    mcpauth__as_keys *k = as->keys;
    if (k)
        atomic_fetch_add_explicit(&k->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&as->key_lock);
    return k;
}

mcpauth__as_keys *mcpauth__as_keys_get(mcpauth_as *as, time_t now)
{
    return keys_get(as, now, 30);
}

/* The signature of token (signing input: the first len bytes) checks out
 * with one of our keys, named by the header's kid and alg. */
static int signed_by_us(mcpauth_as *as, const char *token, size_t len, const char *header,
                        const unsigned char *sig, size_t sl, time_t now)
{
    json_object *h = json_tokener_parse(header);
    const char *alg = mcpauth__json_member_str(h, "alg", NULL);
    const char *kid = mcpauth__json_member_str(h, "kid", NULL);
    mcpauth_alg a = alg ? mcpauth__alg_from_name(alg) : MCPAUTH_ALG_UNKNOWN;
    mcpauth__as_keys *keys = mcpauth__as_keys_get(as, now); /* another process may have rotated */
    const mcpauth_jwk *k = keys && kid && a != MCPAUTH_ALG_UNKNOWN
                               ? mcpauth__jwks_find(keys->verify, kid, a)
                               : NULL;
    if (!k && kid && a != MCPAUTH_ALG_UNKNOWN) {
        /* With a shared store another host may have rotated a moment ago
         * and signed with its new key: look again now rather than in up
         * to 30 s, at most once a second (forged kids cost no more). */
        mcpauth__as_keys_put(keys);
        keys = keys_get(as, now, 1);
        k = keys ? mcpauth__jwks_find(keys->verify, kid, a) : NULL;
    }
    int ok = k && mcpauth__jws_verify(k, a, token, len, sig, sl);
    mcpauth__as_keys_put(keys);
    json_object_put(h);
    return ok;
}

json_object *mcpauth__as_own_claims(mcpauth_as *as, const char *token, time_t now)
{
    const char *d1 = strchr(token, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (!d1 || !d2 || strchr(d2 + 1, '.'))
        return NULL;
    unsigned char hbuf[1024], pbuf[8192], sig[MCPAUTH_JWS_SIG_MAX];
    ssize_t hl = mcpauth__b64url_decode(token, (size_t)(d1 - token), hbuf, sizeof hbuf - 1);
    ssize_t pl = mcpauth__b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), pbuf, sizeof pbuf - 1);
    ssize_t sl = mcpauth__b64url_decode(d2 + 1, strlen(d2 + 1), sig, sizeof sig);
    if (hl <= 0 || pl <= 0 || sl <= 0)
        return NULL;
    hbuf[hl] = '\0';
    pbuf[pl] = '\0';
    if (!signed_by_us(as, token, (size_t)(d2 - token), (const char *)hbuf, sig, (size_t)sl, now))
        return NULL;
    json_object *claims = json_tokener_parse((const char *)pbuf);
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

char *mcpauth__as_mint(mcpauth_as *as, const mcpauth_grant *g, time_t now)
{
    char jti[48];
    if (mcpauth__as_random(jti, sizeof jti, 18) < 0)
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
    mcpauth__as_keys *k = mcpauth__as_keys_get(as, now);
    if (k)
        t = mcpauth__jws_sign(k->signer, "at+jwt",
                             json_object_to_json_string_ext(c, JSON_C_TO_STRING_PLAIN |
                                                                   JSON_C_TO_STRING_NOSLASHESCAPE));
    mcpauth__as_keys_put(k);
    json_object_put(c);
    return t;
}
