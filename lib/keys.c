/* Signing keys of the built-in authorization server, over OpenSSL 3: PEM
 * files (mode 0600) under state_dir/keys, metadata in the store; the public
 * JWK set; compact JWS signing with the header we choose (RFC 9068 needs
 * typ "at+jwt"); and the server secret file.  With a shared store
 * (PostgreSQL) the PEM and the secret live in the store instead, so every
 * host signs with the same key and `mcpauth rotate-key` on any of them
 * reaches all (each reloads its keys within 30 s, and at once when it sees
 * a token signed with a kid it does not know, lib/as/tokens.c); files are
 * kept for SQLite, where state_dir is the one host's. */
#include "config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include <mcpauth/util.h>

#include "encode.h"

#include "alloc.h"
#include "jose.h"
#include "keys.h"
#include "strbuf.h"

#define KEY_FILE_MAX (64 * 1024)    /* a PEM private key is a few KiB */
#define RSA_BITS 3072
#define RSA_MIN_BITS 2048
#define RSA_MAX_BYTES (16384 / 8)   /* what pub_members can export */
#define EC_COORD 32                 /* P-256 */
#define PRUNE_MIN_AGE 60            /* never delete a file younger than this */
#define B64LEN(n) (4 * (((n) + 2) / 3) + 1)

/* dir/name in out[outlen]; -1 when it does not fit (never a shorter path). */
static int path_join(char *out, size_t outlen, const char *dir, const char *name)
{
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/')
        dl--;
    return mcpauth__fmt(out, outlen, "%.*s/%s", (int)dl, dir, name);
}

static int alg_ok(const char *alg)
{
    return alg && (strcmp(alg, "ES256") == 0 || strcmp(alg, "RS256") == 0);
}

/* ------------------------------------------------------------ public JWK */

typedef struct {
    int ec;                                  /* 1: EC P-256, 0: RSA */
    char x[B64LEN(EC_COORD)], y[B64LEN(EC_COORD)];
    char n[B64LEN(RSA_MAX_BYTES)], e[B64LEN(16)];
} pubjwk;

static int bn_b64(const EVP_PKEY *pkey, const char *param, int pad, size_t max, char *out,
                  size_t outlen)
{
    BIGNUM *bn = NULL;
    unsigned char buf[RSA_MAX_BYTES];
    int ok = -1;
    if (EVP_PKEY_get_bn_param(pkey, param, &bn) != 1 || !bn)
        goto out;
    int len = pad ? BN_bn2binpad(bn, buf, pad) : (BN_num_bytes(bn) <= (int)max ? BN_bn2bin(bn, buf) : -1);
    if (len <= 0 || (size_t)len > max)
        goto out;
    ok = mcpauth__b64url_encode(buf, (size_t)len, out, outlen) < 0 ? -1 : 0;
out:
    BN_free(bn);
    return ok;
}

/* The public members of an EC P-256 or RSA key. */
static int pub_members(const EVP_PKEY *pkey, pubjwk *p)
{
    memset(p, 0, sizeof *p);
    if (!pkey)
        return -1;
    if (EVP_PKEY_is_a(pkey, "EC")) {
        char group[64];
        size_t glen = 0;
        if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                           &glen) != 1 ||
            (strcmp(group, "prime256v1") != 0 && strcmp(group, "P-256") != 0))
            return -1;
        p->ec = 1;
        if (bn_b64(pkey, OSSL_PKEY_PARAM_EC_PUB_X, EC_COORD, EC_COORD, p->x, sizeof p->x) < 0 ||
            bn_b64(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, EC_COORD, EC_COORD, p->y, sizeof p->y) < 0)
            return -1;
        return 0;
    }
    if (EVP_PKEY_is_a(pkey, "RSA")) {
        if (bn_b64(pkey, OSSL_PKEY_PARAM_RSA_N, 0, RSA_MAX_BYTES, p->n, sizeof p->n) < 0 ||
            bn_b64(pkey, OSSL_PKEY_PARAM_RSA_E, 0, 16, p->e, sizeof p->e) < 0)
            return -1;
        return 0;
    }
    return -1;
}

/* RFC 7638 §3.2: required members only, lexicographic order, no spaces.
 * The values are base64url, which needs no escaping. */
static int thumbprint_of(const pubjwk *p, char *out, size_t outlen)
{
    char json[sizeof p->n + sizeof p->e + 64];
    int n = p->ec ? snprintf(json, sizeof json, "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}",
                             p->x, p->y)
                  : snprintf(json, sizeof json, "{\"e\":\"%s\",\"kty\":\"RSA\",\"n\":\"%s\"}", p->e,
                             p->n);
    if (n < 0 || (size_t)n >= sizeof json)
        return -1;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(json, (size_t)n, md, &mdlen, EVP_sha256(), NULL) != 1)
        return -1;
    return mcpauth__b64url_encode(md, mdlen, out, outlen) < 0 ? -1 : 0;
}

int mcpauth__keys_thumbprint(const EVP_PKEY *pkey, char *out, size_t outlen)
{
    pubjwk p;
    if (pub_members(pkey, &p) < 0) {
        ERR_clear_error();
        return -1;
    }
    return thumbprint_of(&p, out, outlen);
}

/* --------------------------------------------------------- private files */

/* Opens a file holding a secret for reading: a regular file, not a
 * symbolic link, that neither group nor others may access. */
static int open_private(const char *path, const char *what, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) < 0) {
        mcpauth__errf(err, errlen, "%s %s: %s", what, path, strerror(errno));
        return -1;
    }
    if (S_ISLNK(st.st_mode)) {
        mcpauth__errf(err, errlen, "%s %s is a symbolic link: refused", what, path);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        mcpauth__errf(err, errlen, "%s %s is not a regular file", what, path);
        return -1;
    }
    if (st.st_mode & 077) {
        mcpauth__errf(err, errlen, "%s %s has mode %04o, readable beyond its owner: refused (chmod 600 it)",
                what, path, (unsigned)(st.st_mode & 07777));
        return -1;
    }
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        if (errno == ELOOP)
            mcpauth__errf(err, errlen, "%s %s is a symbolic link: refused", what, path);
        else
            mcpauth__errf(err, errlen, "%s %s: %s", what, path, strerror(errno));
        return -1;
    }
    /* The file checked is the file opened (no swap in between). */
    struct stat fst;
    if (fstat(fd, &fst) < 0 || fst.st_dev != st.st_dev || fst.st_ino != st.st_ino ||
        !S_ISREG(fst.st_mode) || (fst.st_mode & 077)) {
        mcpauth__errf(err, errlen, "%s %s changed while being opened: refused", what, path);
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads at most max bytes; -1 when the file is larger or unreadable. */
static ssize_t read_all(int fd, unsigned char *buf, size_t max)
{
    size_t got = 0;
    for (;;) {
        if (got == max) {
            unsigned char extra;
            ssize_t r = read(fd, &extra, 1);
            if (r < 0 && errno == EINTR)
                continue;
            return r == 0 ? (ssize_t)got : -1;
        }
        ssize_t r = read(fd, buf + got, max - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            return (ssize_t)got;
        got += (size_t)r;
    }
}

static int write_all(int fd, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Never prompt for a passphrase on the terminal: our keys have none. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

static EVP_PKEY *pem_to_key(const void *pem, size_t n)
{
    BIO *bio = mcpauth__check(BIO_new_mem_buf(pem, (int)n), "BIO");
    EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    ERR_clear_error();
    return pkey;
}

static EVP_PKEY *read_key_file(const char *path, char *err, size_t errlen)
{
    int fd = open_private(path, "key file", err, errlen);
    if (fd < 0)
        return NULL;
    unsigned char *buf = mcpauth__xmalloc(KEY_FILE_MAX);
    ssize_t n = read_all(fd, buf, KEY_FILE_MAX);
    close(fd);
    if (n < 0) {
        mcpauth__errf(err, errlen, "key file %s: cannot read it (or over %d bytes)", path, KEY_FILE_MAX);
        free(buf);
        return NULL;
    }
    EVP_PKEY *pkey = pem_to_key(buf, (size_t)n);
    OPENSSL_cleanse(buf, (size_t)n);
    free(buf);
    if (!pkey)
        mcpauth__errf(err, errlen, "key file %s: not a PEM private key", path);
    return pkey;
}

/* The key in the file must be the one the store describes. */
static int key_matches(EVP_PKEY *pkey, const char *kid, const char *alg, const char *path,
                       pubjwk *p, char *err, size_t errlen)
{
    char tp[64];
    if (!alg_ok(alg)) {
        mcpauth__errf(err, errlen, "key %s: unsupported algorithm \"%s\"", kid, alg ? alg : "");
        return -1;
    }
    if (pub_members(pkey, p) < 0 || p->ec != (strcmp(alg, "ES256") == 0)) {
        ERR_clear_error();
        mcpauth__errf(err, errlen, "key file %s: not an %s key", path, alg);
        return -1;
    }
    if (thumbprint_of(p, tp, sizeof tp) < 0 || strcmp(tp, kid) != 0) {
        mcpauth__errf(err, errlen, "key file %s does not hold key %s", path, kid);
        return -1;
    }
    /* The bounds jose.c puts on every key set: a token signed with a larger
     * key could never be verified, a smaller one is weak. */
    int bits = EVP_PKEY_get_bits(pkey);
    if (!p->ec && (bits < RSA_MIN_BITS || bits > MCPAUTH_RSA_MAX_BITS)) {
        mcpauth__errf(err, errlen, "key %s (%s): RSA key of %d bits, outside %d to %d: refused", kid,
                path, bits, RSA_MIN_BITS, MCPAUTH_RSA_MAX_BITS);
        return -1;
    }
    return 0;
}

/* ----------------------------------------------------------- generation */

/* state_dir/keys as a real directory (0700 when we create it). */
static int keys_dir(const char *state_dir, char *dir, size_t dirlen, char *err, size_t errlen)
{
    if (path_join(dir, dirlen, state_dir, "keys") < 0) {
        mcpauth__errf(err, errlen, "state directory path too long");
        return -1;
    }
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        mcpauth__errf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    struct stat st;
    if (lstat(dir, &st) < 0) {
        mcpauth__errf(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        mcpauth__errf(err, errlen, "%s is not a directory%s", dir,
                S_ISLNK(st.st_mode) ? " (a symbolic link)" : "");
        return -1;
    }
    if (st.st_mode & 077) {
        mcpauth__errf(err, errlen, "%s has mode %04o, open beyond its owner: refused (chmod 700 it)", dir,
                (unsigned)(st.st_mode & 07777));
        return -1;
    }
    return 0;
}

static int write_key_file(const char *path, EVP_PKEY *pkey, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0) {
        mcpauth__errf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    int ok = 0;
    errno = 0;
    BIO *bio = BIO_new_fd(fd, BIO_NOCLOSE);
    if (bio && fchmod(fd, 0600) == 0 &&
        PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) == 1 &&
        BIO_flush(bio) == 1 && fsync(fd) == 0)
        ok = 1;
    int saved = errno;
    BIO_free(bio);
    if (close(fd) < 0)
        ok = 0;
    ERR_clear_error();
    if (!ok) {
        mcpauth__errf(err, errlen, "cannot write %s: %s", path, saved ? strerror(saved) : "OpenSSL error");
        unlink(path);
        return -1;
    }
    return 0;
}

/* The key as PEM text (caller cleanses and frees); NULL on failure. */
static char *key_to_pem(EVP_PKEY *pkey)
{
    BIO *bio = mcpauth__check(BIO_new(BIO_s_mem()), "BIO");
    char *out = NULL;
    if (PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) == 1) {
        char *data;
        long n = BIO_get_mem_data(bio, &data);
        if (n > 0 && n < KEY_FILE_MAX) {
            out = mcpauth__xmalloc((size_t)n + 1);
            memcpy(out, data, (size_t)n);
            out[n] = '\0';
        }
    }
    BIO_free(bio); /* a memory BIO's buffer is cleansed as it is freed */
    ERR_clear_error();
    return out;
}

int mcpauth__keys_generate(mcpauth_store *s, const char *state_dir, const char *alg, time_t now,
                          char *kid_out, size_t kidlen, char *err, size_t errlen)
{
    int shared = mcpauth__store_shared(s);
    if (!s || (!shared && (!state_dir || !*state_dir))) {
        mcpauth__errf(err, errlen, "no store or state directory");
        return -1;
    }
    if (!alg_ok(alg)) {
        mcpauth__errf(err, errlen, "unsupported signing algorithm \"%s\" (ES256 or RS256)",
                alg ? alg : "");
        return -1;
    }
    char dir[PATH_MAX], path[PATH_MAX] = "", name[80], kid[64];
    char *pem = NULL;
    if (!shared && keys_dir(state_dir, dir, sizeof dir, err, errlen) < 0)
        return -1;

    EVP_PKEY *pkey = strcmp(alg, "ES256") == 0 ? EVP_EC_gen("P-256") : EVP_RSA_gen(RSA_BITS);
    if (!pkey) {
        ERR_clear_error();
        mcpauth__errf(err, errlen, "cannot generate an %s key (OpenSSL)", alg);
        return -1;
    }
    int rc = -1;
    if (mcpauth__keys_thumbprint(pkey, kid, sizeof kid) < 0) {
        mcpauth__errf(err, errlen, "cannot compute the key's thumbprint");
        goto out;
    }
    if (kid_out && strlen(kid) >= kidlen) {
        mcpauth__errf(err, errlen, "kid buffer too small");
        goto out;
    }
    if (shared) {
        if (!(pem = key_to_pem(pkey))) {
            mcpauth__errf(err, errlen, "cannot write the %s key as PEM (OpenSSL)", alg);
            goto out;
        }
    } else if (mcpauth__fmt(name, sizeof name, "%s.pem", kid) < 0 ||
               path_join(path, sizeof path, dir, name) < 0) {
        mcpauth__errf(err, errlen, "state directory path too long");
        goto out;
    } else if (write_key_file(path, pkey, err, errlen) < 0) {
        goto out;
    }

    /* One write transaction retires the current key and adds this one:
     * another host reloading never sees no current key. */
    mcpauth_keyinfo ki = {kid, (char *)alg, path, now, 0, pem};
    if (mcpauth__store_key_rotate(s, &ki, now) < 0) {
        mcpauth__errf(err, errlen, "cannot record key %s in the database", kid);
        if (!shared)
            unlink(path);
        goto out;
    }
    if (kid_out)
        snprintf(kid_out, kidlen, "%s", kid);
    rc = 0;
out:
    if (pem) {
        OPENSSL_cleanse(pem, strlen(pem));
        free(pem);
    }
    EVP_PKEY_free(pkey);
    return rc;
}

/* ------------------------------------------------------------- key lists */

typedef struct {
    char *kid, *alg, *file;
    char *pem; /* NULL: in file */
    time_t created, retired;
} keyrec;

typedef struct {
    keyrec *v;
    size_t n, cap;
} keyrecs;

static int collect(const mcpauth_keyinfo *k, void *arg)
{
    keyrecs *l = arg;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 8;
        l->v = mcpauth__xrealloc(l->v, l->cap * sizeof *l->v);
    }
    keyrec *r = &l->v[l->n];
    r->kid = mcpauth__xstrdup(k->kid ? k->kid : "");
    r->alg = mcpauth__xstrdup(k->alg ? k->alg : "");
    r->file = mcpauth__xstrdup(k->file ? k->file : "");
    r->pem = k->pem ? mcpauth__xstrdup(k->pem) : NULL;
    r->created = k->created;
    r->retired = k->retired;
    l->n++;
    return 0;
}

static void keyrecs_free(keyrecs *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].kid);
        free(l->v[i].alg);
        free(l->v[i].file);
        if (l->v[i].pem) {
            OPENSSL_cleanse(l->v[i].pem, strlen(l->v[i].pem));
            free(l->v[i].pem);
        }
    }
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int list_keys(mcpauth_store *s, time_t since, keyrecs *l, char *err, size_t errlen)
{
    memset(l, 0, sizeof *l);
    if (!s) {
        mcpauth__errf(err, errlen, "no store");
        return -1;
    }
    if (mcpauth__store_key_list(s, since, collect, l) < 0) {
        mcpauth__errf(err, errlen, "cannot list signing keys in the database");
        keyrecs_free(l);
        return -1;
    }
    return 0;
}

/* Where the key lives, for messages. */
static const char *key_where(const keyrec *r)
{
    return r->pem ? "(in the database)" : r->file;
}

static EVP_PKEY *read_key(const keyrec *r, char *err, size_t errlen)
{
    if (!r->pem)
        return read_key_file(r->file, err, errlen);
    EVP_PKEY *pkey = pem_to_key(r->pem, strlen(r->pem));
    if (!pkey)
        mcpauth__errf(err, errlen, "key %s in the database: not a PEM private key", r->kid);
    return pkey;
}

mcpauth_signer *mcpauth__keys_load_current(mcpauth_store *s, char *err, size_t errlen)
{
    keyrecs l;
    if (list_keys(s, time(NULL), &l, err, errlen) < 0)
        return NULL;
    const keyrec *cur = NULL;
    for (size_t i = 0; i < l.n && !cur; i++) /* newest first */
        if (l.v[i].retired == 0)
            cur = &l.v[i];
    mcpauth_signer *k = NULL;
    if (!cur) {
        mcpauth__errf(err, errlen, "no current signing key (run `mcpauth init`)");
        goto out;
    }
    if (strlen(cur->kid) >= sizeof k->kid || !alg_ok(cur->alg)) {
        mcpauth__errf(err, errlen, "key %s: unusable record in the database", cur->kid);
        goto out;
    }
    EVP_PKEY *pkey = read_key(cur, err, errlen);
    if (!pkey)
        goto out;
    pubjwk p;
    if (key_matches(pkey, cur->kid, cur->alg, key_where(cur), &p, err, errlen) < 0) {
        EVP_PKEY_free(pkey);
        goto out;
    }
    k = mcpauth__xcalloc(1, sizeof *k);
    snprintf(k->kid, sizeof k->kid, "%s", cur->kid);
    snprintf(k->alg, sizeof k->alg, "%s", cur->alg);
    k->pkey = pkey;
out:
    keyrecs_free(&l);
    return k;
}

void mcpauth__signer_free(mcpauth_signer *k)
{
    if (!k)
        return;
    EVP_PKEY_free(k->pkey);
    free(k);
}

/* A NULL from json-c would publish the member as null. */
static void add_str(json_object *o, const char *name, const char *value)
{
    if (json_object_object_add(o, name, mcpauth__check(json_object_new_string(value), "json")) < 0)
        mcpauth__oom("json");
}

char *mcpauth__keys_jwks(mcpauth_store *s, time_t since, char *err, size_t errlen)
{
    keyrecs l;
    if (list_keys(s, since, &l, err, errlen) < 0)
        return NULL;
    char *out = NULL;
    json_object *doc = mcpauth__check(json_object_new_object(), "json");
    json_object *arr = mcpauth__check(json_object_new_array(), "json");
    if (json_object_object_add(doc, "keys", arr) < 0)
        mcpauth__oom("json");
    for (size_t i = 0; i < l.n; i++) {
        const keyrec *r = &l.v[i];
        if (r->retired != 0 && r->retired <= since)
            continue;
        EVP_PKEY *pkey = read_key(r, err, errlen);
        if (!pkey) {
            /* A retired key whose file is gone (purged) just is not
             * published; anything else is the administrator's to see. */
            if (!r->pem && r->retired != 0 && access(r->file, F_OK) < 0 && errno == ENOENT)
                continue;
            goto done;
        }
        pubjwk p;
        int bad = key_matches(pkey, r->kid, r->alg, key_where(r), &p, err, errlen);
        EVP_PKEY_free(pkey);
        if (bad < 0)
            goto done;
        json_object *jwk = mcpauth__check(json_object_new_object(), "json");
        add_str(jwk, "kid", r->kid);
        add_str(jwk, "kty", p.ec ? "EC" : "RSA");
        add_str(jwk, "alg", r->alg);
        add_str(jwk, "use", "sig");
        if (p.ec) {
            add_str(jwk, "crv", "P-256");
            add_str(jwk, "x", p.x);
            add_str(jwk, "y", p.y);
        } else {
            add_str(jwk, "n", p.n);
            add_str(jwk, "e", p.e);
        }
        if (json_object_array_add(arr, jwk) < 0)
            mcpauth__oom("json");
    }
    const char *text = json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN |
                                                               JSON_C_TO_STRING_NOSLASHESCAPE);
    if (!text)
        mcpauth__oom("json text");
    out = mcpauth__xstrdup(text);
done:
    json_object_put(doc);
    keyrecs_free(&l);
    return out;
}

/* ---------------------------------------------------------------- signing */

static char *b64_dup(const unsigned char *in, size_t len)
{
    size_t cap = B64LEN(len);
    char *out = mcpauth__xmalloc(cap);
    if (mcpauth__b64url_encode(in, len, out, cap) < 0) {
        free(out);
        out = NULL;
    }
    return out;
}

/* DER ECDSA-Sig-Value to the fixed R||S form of RFC 7518 §3.4. */
static int ecdsa_der_to_raw(const unsigned char *der, size_t derlen, unsigned char *raw)
{
    const unsigned char *p = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
    if (!es)
        return -1;
    const BIGNUM *r, *s;
    ECDSA_SIG_get0(es, &r, &s);
    int ok = BN_bn2binpad(r, raw, EC_COORD) == EC_COORD &&
             BN_bn2binpad(s, raw + EC_COORD, EC_COORD) == EC_COORD;
    ECDSA_SIG_free(es);
    return ok ? 0 : -1;
}

char *mcpauth__jws_sign(const mcpauth_signer *k, const char *typ, const char *claims)
{
    if (!k || !k->pkey || !claims || !alg_ok(k->alg))
        return NULL;
    int ec = strcmp(k->alg, "ES256") == 0;
    if (ec != EVP_PKEY_is_a(k->pkey, "EC"))
        return NULL;

    char *result = NULL, *h64 = NULL, *p64 = NULL, *input = NULL, *s64 = NULL;
    unsigned char *sig = NULL;
    EVP_MD_CTX *ctx = NULL;
    json_object *hdr = mcpauth__check(json_object_new_object(), "json");
    /* json-c keeps insertion order: exactly alg, typ, kid. */
    add_str(hdr, "alg", k->alg);
    if (typ)
        add_str(hdr, "typ", typ);
    add_str(hdr, "kid", k->kid);
    const char *htext = json_object_to_json_string_ext(hdr, JSON_C_TO_STRING_PLAIN |
                                                               JSON_C_TO_STRING_NOSLASHESCAPE);
    if (!htext)
        mcpauth__oom("json text");
    if (!(h64 = b64_dup((const unsigned char *)htext, strlen(htext))) ||
        !(p64 = b64_dup((const unsigned char *)claims, strlen(claims))))
        goto out;
    size_t hl = strlen(h64), pl = strlen(p64);
    input = mcpauth__xmalloc(hl + 1 + pl + 1);
    memcpy(input, h64, hl);
    input[hl] = '.';
    memcpy(input + hl + 1, p64, pl + 1);
    size_t inlen = hl + 1 + pl;

    EVP_PKEY_CTX *pctx = NULL;
    size_t siglen = 0;
    ctx = mcpauth__check(EVP_MD_CTX_new(), "EVP_MD_CTX");
    if (EVP_DigestSignInit(ctx, &pctx, EVP_sha256(), NULL, k->pkey) != 1 ||
        (!ec && EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) <= 0) ||
        EVP_DigestSign(ctx, NULL, &siglen, (const unsigned char *)input, inlen) != 1)
        goto out;
    sig = mcpauth__xmalloc(siglen);
    if (EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)input, inlen) != 1)
        goto out;
    if (ec) {
        unsigned char raw[2 * EC_COORD];
        if (ecdsa_der_to_raw(sig, siglen, raw) < 0)
            goto out;
        s64 = b64_dup(raw, sizeof raw);
    } else {
        s64 = b64_dup(sig, siglen);
    }
    if (!s64)
        goto out;
    size_t sl = strlen(s64);
    result = mcpauth__xmalloc(inlen + 1 + sl + 1);
    memcpy(result, input, inlen);
    result[inlen] = '.';
    memcpy(result + inlen + 1, s64, sl + 1);
out:
    ERR_clear_error();
    EVP_MD_CTX_free(ctx);
    json_object_put(hdr);
    free(h64);
    free(p64);
    free(input);
    free(sig);
    free(s64);
    return result;
}

/* ----------------------------------------------------------------- upkeep */

int mcpauth__keys_prune(mcpauth_store *s, const char *state_dir, time_t now, char *err,
                       size_t errlen)
{
    char dir[PATH_MAX];
    if (mcpauth__store_shared(s))
        return 0; /* the keys are rows, deleted by mcpauth__store_purge */
    if (!state_dir || path_join(dir, sizeof dir, state_dir, "keys") < 0) {
        mcpauth__errf(err, errlen, "state directory path too long");
        return -1;
    }
    keyrecs l;
    if (list_keys(s, 0, &l, err, errlen) < 0) /* every key still recorded */
        return -1;
    DIR *d = opendir(dir);
    if (!d) {
        keyrecs_free(&l);
        if (errno == ENOENT)
            return 0;
        mcpauth__errf(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    int deleted = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len <= 4 || strcmp(de->d_name + len - 4, ".pem") != 0)
            continue;
        int known = 0;
        for (size_t i = 0; i < l.n && !known; i++)
            known = strlen(l.v[i].kid) == len - 4 && strncmp(l.v[i].kid, de->d_name, len - 4) == 0;
        if (known)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
            !(S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) || st.st_mtime > now - PRUNE_MIN_AGE)
            continue;
        if (unlinkat(dirfd(d), de->d_name, 0) == 0)
            deleted++;
    }
    closedir(d);
    keyrecs_free(&l);
    return deleted;
}

/* ----------------------------------------------------------------- secret */

/* The secret in a shared store: 64 hex digits in the settings row. */
#define SECRET_SETTING "server_secret"

static int secret_from_store(mcpauth_store *s, unsigned char out[MCPAUTH_SECRET_BYTES],
                             char *err, size_t errlen)
{
    char *hex = NULL;
    int r = mcpauth__store_setting_get(s, SECRET_SETTING, &hex);
    int ok = r == 1 && strlen(hex) == 2 * MCPAUTH_SECRET_BYTES;
    /* every digit checked before any is converted */
    for (size_t i = 0; ok && i < 2 * MCPAUTH_SECRET_BYTES; i++)
        ok = isxdigit((unsigned char)hex[i]) != 0;
    for (size_t i = 0; ok && i < MCPAUTH_SECRET_BYTES; i++) {
        unsigned v = 0;
        ok = sscanf(hex + 2 * i, "%2x", &v) == 1;
        out[i] = (unsigned char)v;
    }
    if (hex) {
        OPENSSL_cleanse(hex, strlen(hex));
        free(hex);
    }
    if (ok)
        return 0;
    OPENSSL_cleanse(out, MCPAUTH_SECRET_BYTES);
    if (r < 0) {
        const char *f = mcpauth__store_fault();
        mcpauth__errf(err, errlen, "server secret: cannot read it from the database%s%s",
                      f ? ": " : "", f ? f : "");
    } else {
        mcpauth__errf(err, errlen, "server secret: %s in the database (run `mcpauth init`)",
                      r == 0 ? "absent" : "malformed");
    }
    return -1;
}

static int secret_create_in_store(mcpauth_store *s, char *err, size_t errlen)
{
    unsigned char buf[MCPAUTH_SECRET_BYTES];
    char hex[2 * MCPAUTH_SECRET_BYTES + 1];
    if (RAND_bytes(buf, sizeof buf) != 1) {
        mcpauth__errf(err, errlen, "server secret: no randomness");
        return -1;
    }
    for (size_t i = 0; i < sizeof buf; i++)
        snprintf(hex + 2 * i, 3, "%02x", buf[i]);
    /* of hosts racing through `mcpauth init`, the first row stays */
    int r = mcpauth__store_setting_add(s, SECRET_SETTING, hex);
    OPENSSL_cleanse(buf, sizeof buf);
    OPENSSL_cleanse(hex, sizeof hex);
    if (r < 0) {
        mcpauth__errf(err, errlen, "server secret: cannot store it in the database");
        return -1;
    }
    if (r == 0 && secret_from_store(s, buf, err, errlen) < 0)
        return -1;
    OPENSSL_cleanse(buf, sizeof buf);
    return r;
}

int mcpauth__secret_load(mcpauth_store *s, const char *state_dir,
                        unsigned char out[MCPAUTH_SECRET_BYTES], char *err, size_t errlen)
{
    if (mcpauth__store_shared(s))
        return secret_from_store(s, out, err, errlen);
    char path[PATH_MAX];
    if (!state_dir || path_join(path, sizeof path, state_dir, "secret") < 0) {
        mcpauth__errf(err, errlen, "state directory path too long");
        return -1;
    }
    int fd = open_private(path, "secret file", err, errlen);
    if (fd < 0)
        return -1;
    ssize_t n = read_all(fd, out, MCPAUTH_SECRET_BYTES);
    close(fd);
    if (n != MCPAUTH_SECRET_BYTES) {
        OPENSSL_cleanse(out, MCPAUTH_SECRET_BYTES);
        mcpauth__errf(err, errlen, "secret file %s: not %d bytes (remove it and run `mcpauth init`)",
                path, MCPAUTH_SECRET_BYTES);
        return -1;
    }
    return 0;
}

int mcpauth__secret_create(mcpauth_store *s, const char *state_dir, char *err, size_t errlen)
{
    if (mcpauth__store_shared(s))
        return secret_create_in_store(s, err, errlen);
    char path[PATH_MAX], tmp[PATH_MAX], name[64];
    unsigned char buf[MCPAUTH_SECRET_BYTES];
    if (!state_dir || path_join(path, sizeof path, state_dir, "secret") < 0 ||
        mcpauth__fmt(name, sizeof name, ".secret.%ld", (long)getpid()) < 0 ||
        path_join(tmp, sizeof tmp, state_dir, name) < 0) {
        mcpauth__errf(err, errlen, "state directory path too long");
        return -1;
    }
    struct stat st;
    if (lstat(path, &st) == 0 || errno != ENOENT) {
        int rc = mcpauth__secret_load(NULL, state_dir, buf, err, errlen);
        OPENSSL_cleanse(buf, sizeof buf);
        return rc < 0 ? -1 : 0;
    }
    /* Written in full under a temporary name, then linked into place: a
     * crash never leaves a short secret, and link(2) never replaces one
     * another process made meanwhile. */
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0) {
        mcpauth__errf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        return -1;
    }
    errno = 0;
    int ok = RAND_bytes(buf, sizeof buf) == 1 && fchmod(fd, 0600) == 0 &&
             write_all(fd, buf, sizeof buf) == 0 && fsync(fd) == 0;
    int saved = errno;
    OPENSSL_cleanse(buf, sizeof buf);
    if (close(fd) < 0)
        ok = 0;
    if (!ok) {
        mcpauth__errf(err, errlen, "cannot write %s: %s", tmp, saved ? strerror(saved) : "no randomness");
        unlink(tmp);
        return -1;
    }
    int rc = 1;
    if (link(tmp, path) < 0) {
        if (errno == EEXIST) {
            rc = 0; /* another process won: theirs is the secret */
        } else {
            mcpauth__errf(err, errlen, "cannot create %s: %s", path, strerror(errno));
            rc = -1;
        }
    }
    unlink(tmp);
    return rc;
}
