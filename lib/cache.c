/* See cache.h.  Sets of WAYS slots; a key maps to one set; a full set
 * evicts its entry closest to expiry.  Each set stripe has its own mutex so
 * threads rarely contend. */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "cache.h"

#define WAYS 8
#define STRIPES 64

typedef struct {
    unsigned char key[32];
    unsigned resource;
    int used;
    int positive;
    time_t expires;
    long long exp;
    char *data; /* "subject\0client_id\0issuer\0scope\0" or the reason */
} slot;

struct mcpauth_cache {
    size_t nsets;
    slot *slots;
    pthread_mutex_t locks[STRIPES];
};

mcpauth_cache *mcpauth__cache_new(size_t entries)
{
    mcpauth_cache *c = mcpauth__xcalloc(1, sizeof *c);
    c->nsets = (entries + WAYS - 1) / WAYS;
    if (c->nsets)
        c->slots = mcpauth__xcalloc(c->nsets * WAYS, sizeof *c->slots);
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&c->locks[i], NULL);
    return c;
}

void mcpauth__cache_free(mcpauth_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nsets * WAYS; i++)
        free(c->slots[i].data);
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&c->locks[i]);
    free(c->slots);
    free(c);
}

/* The key is already a SHA-256: its first bytes are a uniform hash. */
static size_t set_of(const mcpauth_cache *c, const unsigned char key[32], unsigned resource)
{
    unsigned long long h;
    memcpy(&h, key, sizeof h);
    return (size_t)((h ^ (resource * 0x9e3779b97f4a7c15ULL)) % c->nsets);
}

static slot *find(mcpauth_cache *c, size_t set, const unsigned char key[32], unsigned resource)
{
    slot *s = &c->slots[set * WAYS];
    for (int i = 0; i < WAYS; i++)
        if (s[i].used && s[i].resource == resource && memcmp(s[i].key, key, 32) == 0)
            return &s[i];
    return NULL;
}

static void copy_field(char *dst, size_t cap, const char **src)
{
    size_t n = strlen(*src);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, *src, n);
    dst[n] = '\0';
    *src += strlen(*src) + 1;
}

int mcpauth__cache_get(mcpauth_cache *c, const unsigned char key[32], unsigned resource, time_t now,
                      int *positive, mcpauth_identity *id, char *reason, size_t reasonlen)
{
    if (!c || !c->nsets)
        return 0;
    size_t set = set_of(c, key, resource);
    pthread_mutex_t *lock = &c->locks[set % STRIPES];
    pthread_mutex_lock(lock);
    slot *s = find(c, set, key, resource);
    int hit = s && s->expires > now;
    if (hit) {
        *positive = s->positive;
        const char *p = s->data;
        if (s->positive) {
            copy_field(id->subject, sizeof id->subject, &p);
            copy_field(id->client_id, sizeof id->client_id, &p);
            copy_field(id->issuer, sizeof id->issuer, &p);
            copy_field(id->scope, sizeof id->scope, &p);
            id->exp = s->exp;
        } else if (reason && reasonlen) {
            copy_field(reason, reasonlen, &p);
        }
    }
    pthread_mutex_unlock(lock);
    return hit;
}

static char *pack(int positive, const mcpauth_identity *id, const char *reason)
{
    if (!positive) {
        return mcpauth__xstrdup(reason ? reason : "");
    }
    size_t a = strlen(id->subject) + 1, b = strlen(id->client_id) + 1, c = strlen(id->issuer) + 1,
           d = strlen(id->scope) + 1;
    char *p = mcpauth__xmalloc(a + b + c + d);
    memcpy(p, id->subject, a);
    memcpy(p + a, id->client_id, b);
    memcpy(p + a + b, id->issuer, c);
    memcpy(p + a + b + c, id->scope, d);
    return p;
}

void mcpauth__cache_put(mcpauth_cache *c, const unsigned char key[32], unsigned resource,
                       time_t expires, int positive, const mcpauth_identity *id,
                       const char *reason)
{
    if (!c || !c->nsets)
        return;
    char *data = pack(positive, id, reason);
    size_t set = set_of(c, key, resource);
    pthread_mutex_t *lock = &c->locks[set % STRIPES];
    pthread_mutex_lock(lock);
    slot *s = find(c, set, key, resource);
    if (!s) {
        slot *row = &c->slots[set * WAYS];
        s = &row[0];
        for (int i = 0; i < WAYS; i++) {
            if (!row[i].used) {
                s = &row[i];
                break;
            }
            if (row[i].expires < s->expires)
                s = &row[i];
        }
    }
    free(s->data);
    memcpy(s->key, key, 32);
    s->resource = resource;
    s->used = 1;
    s->positive = positive;
    s->expires = expires;
    s->exp = positive ? id->exp : 0;
    s->data = data;
    pthread_mutex_unlock(lock);
}

size_t mcpauth__cache_count(mcpauth_cache *c)
{
    size_t n = 0;
    if (!c)
        return 0;
    for (size_t set = 0; set < c->nsets; set++) {
        pthread_mutex_lock(&c->locks[set % STRIPES]);
        for (int i = 0; i < WAYS; i++)
            n += c->slots[set * WAYS + i].used;
        pthread_mutex_unlock(&c->locks[set % STRIPES]);
    }
    return n;
}
