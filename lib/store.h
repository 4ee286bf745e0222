/* The built-in authorization server's state (not installed): SQLite in WAL
 * mode under state_dir, shared by every mcpauth-as process and the admin
 * tool of one host, or PostgreSQL, shared by several hosts (db.h; the
 * same guarantees on both).  Secrets (client secrets, codes, refresh tokens) are stored only as
 * SHA-256 hex digests; callers pass the plain values and the store hashes.
 * Every function is safe to call from several threads and processes: each
 * call is one transaction with a busy timeout.  Strings returned inside
 * structs are owned by the struct (free with the matching _free). */
#ifndef MCPAUTH_STORE_H
#define MCPAUTH_STORE_H

#include <stddef.h>
#include <time.h>

typedef struct mcpauth_store mcpauth_store;

/* Opens the store: store is the [authorization_server] store setting
 * (NULL or "sqlite": state_dir/mcpauth.db; a postgres(ql):// URI or a
 * libpq key=value string: that database, state_dir unused).  An empty
 * database gets its tables; an older SQLite one is upgraded, an older
 * PostgreSQL one refused (run mcpauth__store_migrate).  The handle is per
 * thread: open one per thread, or serialise use of a shared one (the
 * store locks internally, so sharing is correct, only slower).  Never use
 * it across fork(): calls in the child fail. */
mcpauth_store *mcpauth__store_open(const char *state_dir, const char *store, char *err,
                                 size_t errlen);
void mcpauth__store_close(mcpauth_store *s);
/* Creates or upgrades the tables (`mcpauth migrate`): 0, with the version
 * found (0: none) and the version now in *from and *to, or -1 with err. */
int mcpauth__store_migrate(const char *state_dir, const char *store, int *from, int *to,
                          char *err, size_t errlen);
/* 1 when the store is shared by several hosts (PostgreSQL): signing keys
 * and the server secret then live in it, not in state_dir. */
int mcpauth__store_shared(const mcpauth_store *s);

/* Why this thread's last store call failed, when the cause lies outside
 * the program and may pass by itself or by an admin's hand (the database
 * locked by another process, a read-only or full disk, a damaged file, the
 * PostgreSQL server unreachable or restarting; the next call reconnects): a
 * phrase for the log, valid until the thread's next store call.  NULL after
 * a call that succeeded or failed for another reason (a refusal, a bad
 * argument).  Callers answer 503 for these, not 500. */
const char *mcpauth__store_fault(void);
/* How long a call waits for another process's write lock (default 5 s;
 * PostgreSQL: lock_timeout); for tests. */
void mcpauth__store_set_busy_timeout(mcpauth_store *s, int ms);

/* ---------------------------------------------------------------- clients */

typedef struct mcpauth_client {
    char *client_id;
    char *client_name;          /* may be NULL */
    char *redirect_uris;        /* JSON array text */
    char *grant_types;          /* space separated */
    char *token_endpoint_auth_method; /* "none", "client_secret_basic", "client_secret_post" */
    char *secret_hash;          /* SHA-256 hex of the secret; NULL for public clients */
    char *kind;                 /* "dcr", "cimd" or "static" */
    char *registered_by;        /* client address at registration, may be NULL */
    time_t created;
    time_t secret_expires;      /* 0: never */
} mcpauth_client;

/* Stores a new client (secret: plain text or NULL; hashed here). -1 when
 * the client_id exists or on error.  With secret NULL, c->secret_hash may
 * carry a precomputed digest (64 lowercase hex digits, else -1). */
int mcpauth__store_client_add(mcpauth_store *s, const mcpauth_client *c, const char *secret);
/* 1 found (c filled), 0 absent, -1 error. */
int mcpauth__store_client_get(mcpauth_store *s, const char *client_id, mcpauth_client *c);
/* Checks a presented secret in constant time against the stored hash.
 * 1 ok, 0 wrong or no secret stored (or secret_expires passed), -1 error. */
int mcpauth__store_client_check_secret(mcpauth_store *s, const char *client_id, const char *secret);
/* Deletes the client and everything issued to it. 1 deleted, 0 absent. */
int mcpauth__store_client_delete(mcpauth_store *s, const char *client_id);
/* Calls fn for each client, newest first; fn returns non-zero to stop. */
int mcpauth__store_client_list(mcpauth_store *s, int (*fn)(const mcpauth_client *, void *), void *arg);
void mcpauth__client_free(mcpauth_client *c);

/* Counts registrations from addr within the last `window` seconds and, when
 * under limit, records this one.  1 allowed, 0 over the limit, -1 error. */
int mcpauth__store_registration_allowed(mcpauth_store *s, const char *addr, int limit, long window);

/* ------------------------------------------------------------------ codes */

typedef struct mcpauth_grant {
    char *client_id;
    char *user;
    char *resource;
    char *scope;
    char *redirect_uri;         /* codes only */
    char *code_challenge;       /* codes only, S256 */
    char *family;               /* refresh-token family (codes: the family the
                                   tokens issued from it belong to) */
    time_t expires;
} mcpauth_grant;

/* Stores an authorization code (plain code hashed here) valid until
 * g->expires; g->family must be set (a fresh random id). */
int mcpauth__store_code_add(mcpauth_store *s, const char *code, const mcpauth_grant *g);

typedef enum {
    MCPAUTH_REDEEM_OK = 0,      /* g filled; the code is now used */
    MCPAUTH_REDEEM_UNKNOWN,     /* no such code, or expired */
    MCPAUTH_REDEEM_REPLAYED,    /* already used: everything from its family is now revoked */
    MCPAUTH_REDEEM_ERROR
} mcpauth_redeem;

/* Marks the code used atomically: of two racing calls exactly one gets OK.
 * A used code presented again revokes the family (RFC 6749 §4.1.2). */
mcpauth_redeem mcpauth__store_code_redeem(mcpauth_store *s, const char *code, time_t now,
                                         mcpauth_grant *g);
/* The code's grant without using it: 1 when it is unused, unexpired and
 * its family alive (g filled), 0 otherwise, -1 error. */
int mcpauth__store_code_peek(mcpauth_store *s, const char *code, time_t now, mcpauth_grant *g);
/* The whole code exchange in one transaction, so a failure anywhere
 * leaves the code unused and nothing issued: redeems the code as above,
 * checks its family is `family` (what the caller minted the tokens from,
 * by mcpauth__store_code_peek; NULL: no check), stores the refresh token
 * (NULL: none) and records the access token (NULL: none; see
 * mcpauth__store_access_add). */
mcpauth_redeem mcpauth__store_code_exchange(mcpauth_store *s, const char *code, time_t now,
                                           const char *family, const char *refresh,
                                           time_t refresh_expires, const char *access,
                                           time_t access_expires, mcpauth_grant *g);
void mcpauth__grant_free(mcpauth_grant *g);

/* --------------------------------------------------------- refresh tokens */

/* Stores a refresh token of family g->family until g->expires. */
int mcpauth__store_refresh_add(mcpauth_store *s, const char *token, const mcpauth_grant *g);

typedef enum {
    MCPAUTH_ROTATE_OK = 0,      /* g filled; old token retired, new one stored */
    MCPAUTH_ROTATE_UNKNOWN,     /* no such token, expired, or family revoked */
    MCPAUTH_ROTATE_REUSED,      /* a retired token outside the grace window: family revoked */
    MCPAUTH_ROTATE_ERROR,       /* nothing changed */
    MCPAUTH_ROTATE_FOREIGN      /* presented by another client than the grant's: family revoked */
} mcpauth_rotate;

/* The whole refresh in one transaction, so a failure anywhere (a fault,
 * a refusal) leaves the old token as it was (unretired, its grace unspent)
 * and nothing issued.  Exchanges token for new_token (rotation).  A token
 * retired less than grace seconds ago is accepted once more (concurrent
 * refreshes racing); later reuse revokes the whole family (REUSED).  When
 * new_token is NULL the token is not rotated (confidential clients may
 * keep theirs).  expect_client (NULL: no check): the authenticated client;
 * a token of another client's grant revokes the family (FOREIGN, it was
 * stolen).  family (NULL: no check): the family the caller minted the
 * access token from (by mcpauth__store_refresh_peek); another one is an
 * ERROR, nothing changed.  access (NULL: none): the access token, recorded
 * until access_expires as by mcpauth__store_access_add.  On OK, g gets the
 * grant with the new token's expiry (caller frees); else it is zeroed. */
mcpauth_rotate mcpauth__store_refresh_exchange(mcpauth_store *s, const char *token,
                                              const char *new_token, time_t now, long grace,
                                              time_t new_expires, const char *access,
                                              const char *family, time_t access_expires,
                                              const char *expect_client, mcpauth_grant *g);
/* mcpauth__store_refresh_exchange without the access token and checks. */
mcpauth_rotate mcpauth__store_refresh_rotate(mcpauth_store *s, const char *token,
                                            const char *new_token, time_t now, long grace,
                                            time_t new_expires, mcpauth_grant *g);

/* Looks a refresh token up without changing it (introspection). 1 active. */
int mcpauth__store_refresh_get(mcpauth_store *s, const char *token, time_t now, mcpauth_grant *g);
/* The same, also for a token already rotated away while its family lives
 * (the grant it belongs to, for checks before rotation). */
int mcpauth__store_refresh_peek(mcpauth_store *s, const char *token, time_t now, mcpauth_grant *g);

/* Revocation. Each returns the number of families revoked, -1 on error. */
int mcpauth__store_revoke_token(mcpauth_store *s, const char *token);   /* its family */
int mcpauth__store_revoke_user(mcpauth_store *s, const char *user);
int mcpauth__store_revoke_client(mcpauth_store *s, const char *client_id);
int mcpauth__store_revoke_family(mcpauth_store *s, const char *family);
/* 1 when the family has been revoked (access tokens carry it as a claim so
 * introspection can refuse them).  An unknown family (client deleted, or
 * purged a day after its last use) also gives 1: fail closed. */
int mcpauth__store_family_revoked(mcpauth_store *s, const char *family);

/* ---------------------------------------------------------- access tokens */

/* Records an access token (hashed here) issued from family until expires,
 * so revoking the family later can revoke it at the resource servers too
 * (revoked.h).  In one transaction with a check of the family: 1 recorded,
 * 0 the family is revoked or unknown (do not hand the token out), -1
 * error. */
int mcpauth__store_access_add(mcpauth_store *s, const char *token, const char *family,
                             time_t expires);
/* Calls fn(SHA-256 hex of the token, its expiry) for every access token not
 * yet expired at now whose family is revoked or gone and that fn has not
 * accepted before; fn returns 0 when it took the token (it is then not
 * offered again), non-zero otherwise.  Rows are copied out first; fn runs
 * without the store's lock.  Returns the number taken, -1 on error. */
long mcpauth__store_access_revoked(mcpauth_store *s, time_t now,
                                  int (*fn)(const char *hash_hex, time_t expires, void *),
                                  void *arg);

/* ---------------------------------------------------------- consent forms */

/* Consumes a consent form by its id (hashed here) until expires: 1 the
 * first time, 0 when it was used before (a replayed form), -1 error.
 * Atomic across processes. */
int mcpauth__store_form_use(mcpauth_store *s, const char *form_id, time_t expires);

/* --------------------------------------------------------------- consents */

/* 1 when user already approved client for resource with (a superset of)
 * these scopes. */
int mcpauth__store_consent_has(mcpauth_store *s, const char *user, const char *client_id,
                              const char *resource, const char *scope);
int mcpauth__store_consent_add(mcpauth_store *s, const char *user, const char *client_id,
                              const char *resource, const char *scope);

/* ------------------------------------------------------------------- keys */

typedef struct mcpauth_keyinfo {
    char *kid;
    char *alg;        /* ES256 or RS256 */
    char *file;       /* PEM path, mode 0600 ("" when pem is set) */
    time_t created;
    time_t retired;   /* 0 while current */
    char *pem;        /* the private key itself (shared stores), else NULL */
} mcpauth_keyinfo;

int mcpauth__store_key_add(mcpauth_store *s, const mcpauth_keyinfo *k);
/* Marks every current key retired at now. */
int mcpauth__store_key_retire_all(mcpauth_store *s, time_t now);
/* Retires every current key at now and adds k as the current one, in
 * one write transaction; 0 or -1 (nothing changed). */
int mcpauth__store_key_rotate(mcpauth_store *s, const mcpauth_keyinfo *k, time_t now);
/* Keys still worth publishing: the current one and those retired after
 * `since` (their tokens may still be valid).  fn per key, newest first. */
int mcpauth__store_key_list(mcpauth_store *s, time_t since,
                           int (*fn)(const mcpauth_keyinfo *, void *), void *arg);
void mcpauth__keyinfo_free(mcpauth_keyinfo *k);

/* --------------------------------------------------------------- settings */

/* Named values shared by every host (the server secret on PostgreSQL).
 * _get: 1 found (*value: caller frees), 0 absent, -1 error.  _add stores
 * value unless name is set already: 1 stored, 0 it was there, -1 error. */
int mcpauth__store_setting_get(mcpauth_store *s, const char *name, char **value);
int mcpauth__store_setting_add(mcpauth_store *s, const char *name, const char *value);

/* ----------------------------------------------------------------- upkeep */

/* Deletes expired codes, refresh tokens, access-token records, used
 * consent forms, registration counters, and keys retired before
 * key_cutoff.  Returns rows deleted, -1 on error. */
long mcpauth__store_purge(mcpauth_store *s, time_t now, time_t key_cutoff);

#endif
