/* See store.h.  All the logic and every SQL text live here, once, written
 * with `?` placeholders for both engines behind db.h: SQLite in WAL mode
 * under state_dir (db_sqlite.c) or PostgreSQL (db_pg.c).  Each call holds
 * the handle's mutex (a transaction spans several engine calls) and every
 * check-then-write sequence runs inside the engine's write transaction
 * (BEGIN IMMEDIATE; on PostgreSQL, BEGIN plus one advisory lock), so the
 * write lock is taken before the check and racing writers, processes or
 * hosts, queue instead of both seeing the old state.  Single-statement
 * writes take it too, so on PostgreSQL no write slips in between another
 * transaction's check and its write, as on SQLite.  Only SHA-256 digests
 * of secrets, codes and refresh tokens are ever bound into SQL.  The
 * column "user" is quoted everywhere (a reserved word in PostgreSQL). */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <mcpauth/util.h>

#include "encode.h"

#include "alloc.h"
#include "clock.h"
#include "db.h"
#include "store.h"

/* 1: the first schema (SQLite only, in PRAGMA user_version).
 * 2: keys.pem, settings, schema_version (PostgreSQL support). */
#define SCHEMA_VERSION 2
#define STR_(x) #x
#define STR(x) STR_(x)
#define REGISTRATION_KEEP 86400L /* purge: rate counters older than a day */
/* purge: a family without tokens is kept this long after it was last used,
 * because access tokens carrying it outlive the code they came from, and an
 * unknown family reads as revoked. */
#define FAMILY_LINGER 86400L

struct mcpauth_store {
    mcpauth_db *db;
    pthread_mutex_t lock;
    pid_t pid; /* connections must not cross fork() */
};

/* The tables of a fresh SQLite database (version 2). */
static const char schema_sqlite[] =
    "CREATE TABLE IF NOT EXISTS clients("
    " client_id TEXT PRIMARY KEY NOT NULL,"
    " client_name TEXT,"
    " redirect_uris TEXT,"
    " grant_types TEXT,"
    " auth_method TEXT,"
    " secret_hash TEXT,"
    " kind TEXT,"
    " registered_by TEXT,"
    " created INTEGER NOT NULL,"
    " secret_expires INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS families("
    " id TEXT PRIMARY KEY NOT NULL,"
    " revoked INTEGER NOT NULL DEFAULT 0,"
    " user TEXT NOT NULL,"
    " client_id TEXT NOT NULL,"
    " last_used INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS families_user ON families(user);"
    "CREATE INDEX IF NOT EXISTS families_client ON families(client_id);"
    "CREATE TABLE IF NOT EXISTS codes("
    " hash TEXT PRIMARY KEY NOT NULL,"
    " family TEXT NOT NULL REFERENCES families(id) ON DELETE CASCADE,"
    " client_id TEXT NOT NULL,"
    " user TEXT NOT NULL,"
    " resource TEXT,"
    " scope TEXT,"
    " redirect_uri TEXT,"
    " code_challenge TEXT,"
    " expires INTEGER NOT NULL,"
    " used INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS codes_family ON codes(family);"
    "CREATE INDEX IF NOT EXISTS codes_client ON codes(client_id);"
    "CREATE TABLE IF NOT EXISTS refresh("
    " hash TEXT PRIMARY KEY NOT NULL,"
    " family TEXT NOT NULL REFERENCES families(id) ON DELETE CASCADE,"
    " client_id TEXT NOT NULL,"
    " user TEXT NOT NULL,"
    " resource TEXT,"
    " scope TEXT,"
    " expires INTEGER NOT NULL,"
    " retired_at INTEGER,"
    " grace_used INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS refresh_family ON refresh(family);"
    "CREATE INDEX IF NOT EXISTS refresh_client ON refresh(client_id);"
    "CREATE TABLE IF NOT EXISTS consents("
    " user TEXT NOT NULL,"
    " client_id TEXT NOT NULL,"
    " resource TEXT NOT NULL,"
    " scope TEXT NOT NULL,"
    " PRIMARY KEY(user, client_id, resource));"
    "CREATE INDEX IF NOT EXISTS consents_client ON consents(client_id);"
    "CREATE TABLE IF NOT EXISTS keys("
    " kid TEXT PRIMARY KEY NOT NULL,"
    " alg TEXT NOT NULL,"
    " file TEXT NOT NULL,"
    " created INTEGER NOT NULL,"
    " retired INTEGER NOT NULL DEFAULT 0,"
    " pem TEXT);"
    "CREATE TABLE IF NOT EXISTS access("
    " hash TEXT PRIMARY KEY NOT NULL,"
    " family TEXT NOT NULL,"
    " expires INTEGER NOT NULL,"
    " pushed INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS access_family ON access(family);"
    "CREATE INDEX IF NOT EXISTS access_pending ON access(pushed, expires);"
    "CREATE TABLE IF NOT EXISTS consent_forms("
    " hash TEXT PRIMARY KEY NOT NULL,"
    " expires INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS registrations("
    " addr TEXT NOT NULL,"
    " time INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS registrations_addr ON registrations(addr, time);"
    "CREATE TABLE IF NOT EXISTS settings("
    " name TEXT PRIMARY KEY NOT NULL,"
    " value TEXT NOT NULL);";

/* The same on PostgreSQL: times are BIGINT, and the rowid SQLite gives
 * every table is a BIGSERIAL where the SQL orders by it. */
static const char schema_pg[] =
    "CREATE TABLE IF NOT EXISTS clients("
    " client_id TEXT PRIMARY KEY NOT NULL,"
    " client_name TEXT,"
    " redirect_uris TEXT,"
    " grant_types TEXT,"
    " auth_method TEXT,"
    " secret_hash TEXT,"
    " kind TEXT,"
    " registered_by TEXT,"
    " created BIGINT NOT NULL,"
    " secret_expires BIGINT NOT NULL DEFAULT 0,"
    " rowid BIGSERIAL);"
    "CREATE TABLE IF NOT EXISTS families("
    " id TEXT PRIMARY KEY NOT NULL,"
    " revoked INTEGER NOT NULL DEFAULT 0,"
    " \"user\" TEXT NOT NULL,"
    " client_id TEXT NOT NULL,"
    " last_used BIGINT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS families_user ON families(\"user\");"
    "CREATE INDEX IF NOT EXISTS families_client ON families(client_id);"
    "CREATE TABLE IF NOT EXISTS codes("
    " hash TEXT PRIMARY KEY NOT NULL,"
    " family TEXT NOT NULL REFERENCES families(id) ON DELETE CASCADE,"
    " client_id TEXT NOT NULL,"
    " \"user\" TEXT NOT NULL,"
    " resource TEXT,"
    " scope TEXT,"
    " redirect_uri TEXT,"
    " code_challenge TEXT,"
    " expires BIGINT NOT NULL,"
    " used INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS codes_family ON codes(family);"
    "CREATE INDEX IF NOT EXISTS codes_client ON codes(client_id);"
    "CREATE TABLE IF NOT EXISTS refresh("
    " hash TEXT PRIMARY KEY NOT NULL,"
    " family TEXT NOT NULL REFERENCES families(id) ON DELETE CASCADE,"
    " client_id TEXT NOT NULL,"
    " \"user\" TEXT NOT NULL,"
    " resource TEXT,"
    " scope TEXT,"
    " expires BIGINT NOT NULL,"
    " retired_at BIGINT,"
    " grace_used INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS refresh_family ON refresh(family);"
    "CREATE INDEX IF NOT EXISTS refresh_client ON refresh(client_id);"
    "CREATE TABLE IF NOT EXISTS consents("
    " \"user\" TEXT NOT NULL,"
    " client_id TEXT NOT NULL,"
    " resource TEXT NOT NULL,"
    " scope TEXT NOT NULL,"
    " PRIMARY KEY(\"user\", client_id, resource));"
    "CREATE INDEX IF NOT EXISTS consents_client ON consents(client_id);"
    "CREATE TABLE IF NOT EXISTS keys("
    " kid TEXT PRIMARY KEY NOT NULL,"
    " alg TEXT NOT NULL,"
    " file TEXT NOT NULL,"
    " created BIGINT NOT NULL,"
    " retired BIGINT NOT NULL DEFAULT 0,"
    " pem TEXT,"
    " rowid BIGSERIAL);"
    "CREATE TABLE IF NOT EXISTS access("
    " hash TEXT PRIMARY KEY NOT NULL,"
    " family TEXT NOT NULL,"
    " expires BIGINT NOT NULL,"
    " pushed INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS access_family ON access(family);"
    "CREATE INDEX IF NOT EXISTS access_pending ON access(pushed, expires);"
    "CREATE TABLE IF NOT EXISTS consent_forms("
    " hash TEXT PRIMARY KEY NOT NULL,"
    " expires BIGINT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS registrations("
    " addr TEXT NOT NULL,"
    " \"time\" BIGINT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS registrations_addr ON registrations(addr, \"time\");"
    "CREATE TABLE IF NOT EXISTS settings("
    " name TEXT PRIMARY KEY NOT NULL,"
    " value TEXT NOT NULL);";

/* Upgrades, by the version they lead to (index - 2). */
static const char *const upgrade_sql[] = {
    /* 1 → 2 (SQLite only: PostgreSQL starts at 2) */
    "ALTER TABLE keys ADD COLUMN pem TEXT;"
    "CREATE TABLE IF NOT EXISTS settings(name TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);",
};

/* ---------------------------------------------------------------- helpers */

/* Why this thread's last store call failed (see mcpauth__store_fault):
 * written under the lock by leave(). */
static _Thread_local char last_fault[256];
static _Thread_local int have_fault;

static int enter(mcpauth_store *s)
{
    have_fault = 0;
    if (!s || s->pid != getpid())
        return -1;
    pthread_mutex_lock(&s->lock);
    s->db->e->call_begin(s->db);
    return 0;
}

static void leave(mcpauth_store *s)
{
    s->db->e->call_end(s->db);
    have_fault = s->db->e->fault(s->db, last_fault, sizeof last_fault) != NULL;
    pthread_mutex_unlock(&s->lock);
}

static int step(mcpauth_store *s, mcpauth_db_stmt *st)
{
    return s->db->e->step(st);
}

static void done(mcpauth_store *s, mcpauth_db_stmt *st)
{
    s->db->e->done(st);
}

#define DB_ROW MCPAUTH_DB_ROW
#define DB_DONE MCPAUTH_DB_DONE
#define DB_ERROR MCPAUTH_DB_ERROR

/* A prepared, bound statement (see db.h); the bound strings must outlive
 * it.  Give it back with done(). */
static mcpauth_db_stmt *query(mcpauth_store *s, const char *sql, const char *types, ...)
{
    mcpauth_db_stmt *st = s->db->e->prepare(s->db, sql, types);
    if (!st)
        return NULL;
    va_list ap;
    va_start(ap, types);
    int rc = s->db->e->bind(st, types, ap);
    va_end(ap);
    if (rc != 0) {
        done(s, st);
        return NULL;
    }
    return st;
}

/* Runs a statement returning no rows; the number of rows changed, or -1. */
static long run(mcpauth_store *s, const char *sql, const char *types, ...)
{
    mcpauth_db_stmt *st = s->db->e->prepare(s->db, sql, types);
    if (!st)
        return -1;
    va_list ap;
    va_start(ap, types);
    int rc = s->db->e->bind(st, types, ap);
    va_end(ap);
    if (rc == 0)
        while ((rc = step(s, st)) == DB_ROW)
            ;
    done(s, st);
    return rc == DB_DONE ? s->db->e->changes(s->db) : -1;
}

static int begin(mcpauth_store *s)
{
    return s->db->e->begin_write(s->db);
}

static void rollback(mcpauth_store *s)
{
    s->db->e->rollback(s->db);
}

static int commit(mcpauth_store *s)
{
    return s->db->e->commit(s->db);
}

/* One statement in a write transaction of its own (see the top). */
static long run_write(mcpauth_store *s, const char *sql, const char *types, ...)
{
    if (begin(s) != 0)
        return -1;
    mcpauth_db_stmt *st = s->db->e->prepare(s->db, sql, types);
    int rc = -1;
    if (st) {
        va_list ap;
        va_start(ap, types);
        rc = s->db->e->bind(st, types, ap);
        va_end(ap);
        if (rc == 0)
            while ((rc = step(s, st)) == DB_ROW)
                ;
        done(s, st);
    }
    long n = rc == DB_DONE ? s->db->e->changes(s->db) : -1;
    if (n < 0 || commit(s) != 0) {
        rollback(s);
        return -1;
    }
    return n;
}

/* Column getters: every engine's statement starts with its engine. */
#define ENGINE_OF(st) (((const mcpauth_db_stmt_head *)(const void *)(st))->e)

static const char *col_text(mcpauth_db_stmt *st, int i)
{
    return ENGINE_OF(st)->text(st, i);
}

static char *col_dup(mcpauth_db_stmt *st, int i)
{
    const char *t = col_text(st, i);
    return t ? mcpauth__xstrdup(t) : NULL;
}

static long long col_i64(mcpauth_db_stmt *st, int i)
{
    return ENGINE_OF(st)->int64(st, i);
}

static int col_int(mcpauth_db_stmt *st, int i)
{
    return (int)ENGINE_OF(st)->int64(st, i);
}

static int col_null(mcpauth_db_stmt *st, int i)
{
    return ENGINE_OF(st)->is_null(st, i);
}

static void hash_of(const char *secret, char out[65])
{
    mcpauth__sha256_hex(secret, strlen(secret), out);
}

static int is_hex64(const char *h)
{
    if (strlen(h) != 64)
        return 0;
    for (; *h; h++)
        if (!((*h >= '0' && *h <= '9') || (*h >= 'a' && *h <= 'f')))
            return 0;
    return 1;
}

/* ------------------------------------------------------------------- open */

/* The version recorded in the database; 0 when it has no tables yet. */
static int read_version(mcpauth_store *s)
{
    /* PostgreSQL checks the CREATE privilege even when the table exists:
     * look first, so a runtime role with DML grants only can open */
    int exists = 0;
    if (s->db->e->shared) {
        mcpauth_db_stmt *st = query(s, "SELECT to_regclass('schema_version') IS NOT NULL", "");
        int rc = st ? step(s, st) : DB_ERROR;
        const char *t = rc == DB_ROW ? col_text(st, 0) : NULL;
        exists = t && strcmp(t, "t") == 0;
        done(s, st);
        if (rc != DB_ROW)
            return -1;
    }
    if (!exists && s->db->e->exec(s->db, "CREATE TABLE IF NOT EXISTS schema_version("
                                         " version INTEGER NOT NULL)") != 0)
        return -1;
    mcpauth_db_stmt *st = query(s, "SELECT max(version) FROM schema_version", "");
    int v = -1;
    if (st && step(s, st) == DB_ROW)
        v = col_null(st, 0) ? 0 : col_int(st, 0);
    done(s, st);
    /* SQLite's user_version is kept in step with the table: larger, it
     * was written by a newer program (or it is all a version-1 file has) */
    int legacy = v >= 0 ? s->db->e->legacy_version(s->db) : 0;
    return legacy > v ? legacy : v;
}

static int set_version(mcpauth_store *s, int v)
{
    if (run(s, "DELETE FROM schema_version", "") < 0 ||
        run(s, "INSERT INTO schema_version(version) VALUES(?)", "i", v) != 1)
        return -1;
    /* what a program of version 1 reads: it then refuses a newer file */
    if (!s->db->e->shared && s->db->e->exec(s->db, "PRAGMA user_version=" STR(SCHEMA_VERSION)) != 0)
        return -1;
    return 0;
}

/* Creates the tables of an empty database; brings an older one up to
 * date when upgrade is set, else refuses it (PostgreSQL: the hosts of a
 * cluster are upgraded by `mcpauth migrate`, not by whichever starts
 * first).  SQLite upgrades on open, as it always did.  *from: the version
 * found. */
static int init_schema(mcpauth_store *s, int upgrade, int *from, char *err, size_t errlen)
{
    const char *where = s->db->e->name;
    if (begin(s) != 0) {
        char why[256];
        const char *f = s->db->e->fault(s->db, why, sizeof why);
        snprintf(err, errlen, "%s: cannot start a transaction%s%s", where, f ? ": " : "",
                 f ? f : "");
        return -1;
    }
    /* `mcpauth migrate` may rewrite large tables: no statement_timeout
     * (db_pg.c's default bounds what requests run) for this transaction */
    if (s->db->e->shared && upgrade &&
        s->db->e->exec(s->db, "SET LOCAL statement_timeout = 0") != 0) {
        snprintf(err, errlen, "%s: cannot lift the statement timeout", where);
        rollback(s);
        return -1;
    }
    int version = read_version(s);
    if (from)
        *from = version;
    if (version < 0 || version > SCHEMA_VERSION) {
        if (version > SCHEMA_VERSION)
            snprintf(err, errlen, "%s: schema version %d is newer than this program's (%d)",
                     where, version, SCHEMA_VERSION);
        else
            snprintf(err, errlen, "%s: cannot read the schema version", where);
        rollback(s);
        return -1;
    }
    if (version > 0 && version < SCHEMA_VERSION && !upgrade) {
        snprintf(err, errlen, "%s: schema version %d is older than this program's (%d): run"
                 " `mcpauth migrate`", where, version, SCHEMA_VERSION);
        rollback(s);
        return -1;
    }
    int ok = 1;
    if (version == 0)
        ok = s->db->e->exec(s->db, s->db->e->shared ? schema_pg : schema_sqlite) == 0;
    for (int v = version ? version : SCHEMA_VERSION; ok && v < SCHEMA_VERSION; v++)
        ok = s->db->e->exec(s->db, upgrade_sql[v - 1]) == 0;
    if (ok && version < SCHEMA_VERSION)
        ok = set_version(s, SCHEMA_VERSION) == 0;
    if (!ok || commit(s) != 0) {
        snprintf(err, errlen, "%s: creating or upgrading the tables failed", where);
        rollback(s);
        return -1;
    }
    return 0;
}

static mcpauth_store *open_store(const char *state_dir, const char *store, int upgrade,
                                 int *from, char *err, size_t errlen)
{
    char dummy[1];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    mcpauth_db *db = mcpauth__db_is_pg(store) ? mcpauth__db_pg_open(store, err, errlen)
                                              : mcpauth__db_sqlite_open(state_dir, err, errlen);
    if (!db)
        return NULL;
    mcpauth_store *s = mcpauth__xcalloc(1, sizeof *s);
    s->db = db;
    s->pid = getpid();
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_lock(&s->lock);
    db->e->call_begin(db);
    int rc = init_schema(s, upgrade || !db->e->shared, from, err, errlen);
    db->e->call_end(db);
    pthread_mutex_unlock(&s->lock);
    if (rc != 0) {
        mcpauth__store_close(s);
        return NULL;
    }
    return s;
}

mcpauth_store *mcpauth__store_open(const char *state_dir, const char *store, char *err,
                                 size_t errlen)
{
    return open_store(state_dir, store, 0, NULL, err, errlen);
}

int mcpauth__store_migrate(const char *state_dir, const char *store, int *from, int *to,
                          char *err, size_t errlen)
{
    int f = -1;
    mcpauth_store *s = open_store(state_dir, store, 1, &f, err, errlen);
    if (from)
        *from = f;
    if (to)
        *to = SCHEMA_VERSION;
    mcpauth__store_close(s);
    return s ? 0 : -1;
}

void mcpauth__store_close(mcpauth_store *s)
{
    if (!s)
        return;
    int owner = s->pid == getpid();
    s->db->e->close(s->db, owner);
    if (owner)
        pthread_mutex_destroy(&s->lock);
    free(s);
}

int mcpauth__store_shared(const mcpauth_store *s)
{
    return s && s->db->e->shared;
}

const char *mcpauth__store_fault(void)
{
    return have_fault ? last_fault : NULL;
}

void mcpauth__store_set_busy_timeout(mcpauth_store *s, int ms)
{
    if (enter(s) != 0)
        return;
    s->db->e->set_busy_timeout(s->db, ms);
    leave(s);
}

/* ---------------------------------------------------------------- clients */

void mcpauth__client_free(mcpauth_client *c)
{
    if (!c)
        return;
    free(c->client_id);
    free(c->client_name);
    free(c->redirect_uris);
    free(c->grant_types);
    free(c->token_endpoint_auth_method);
    free(c->secret_hash);
    free(c->kind);
    free(c->registered_by);
    memset(c, 0, sizeof *c);
}

#define CLIENT_COLS                                                                            \
    "client_id, client_name, redirect_uris, grant_types, auth_method, secret_hash, kind, "     \
    "registered_by, created, secret_expires"

static int client_from_row(mcpauth_db_stmt *st, mcpauth_client *c)
{
    memset(c, 0, sizeof *c);
    c->client_id = col_dup(st, 0);
    c->client_name = col_dup(st, 1);
    c->redirect_uris = col_dup(st, 2);
    c->grant_types = col_dup(st, 3);
    c->token_endpoint_auth_method = col_dup(st, 4);
    c->secret_hash = col_dup(st, 5);
    c->kind = col_dup(st, 6);
    c->registered_by = col_dup(st, 7);
    c->created = (time_t)col_i64(st, 8);
    c->secret_expires = (time_t)col_i64(st, 9);
    if (!c->client_id) {
        mcpauth__client_free(c);
        return -1;
    }
    return 0;
}

/* A plain secret is hashed; without one, c->secret_hash may carry a digest
 * made elsewhere (static clients), but only a well-formed one, so a plain
 * secret put there by mistake never reaches the disk. */
int mcpauth__store_client_add(mcpauth_store *s, const mcpauth_client *c, const char *secret)
{
    if (!c || !c->client_id || !*c->client_id)
        return -1;
    char h[65];
    const char *stored = NULL;
    if (secret) {
        if (!*secret)
            return -1; /* an empty secret would be guessed */
        hash_of(secret, h);
        stored = h;
    } else if (c->secret_hash) {
        if (!is_hex64(c->secret_hash))
            return -1;
        stored = c->secret_hash;
    }
    if (enter(s) != 0)
        return -1;
    long n = run_write(s,
                 "INSERT INTO clients(" CLIENT_COLS ") VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 "sssssssstt", c->client_id, c->client_name, c->redirect_uris, c->grant_types,
                 c->token_endpoint_auth_method, stored, c->kind, c->registered_by,
                 c->created ? c->created : time(NULL), c->secret_expires);
    leave(s);
    return n == 1 ? 0 : -1;
}

int mcpauth__store_client_get(mcpauth_store *s, const char *client_id, mcpauth_client *c)
{
    if (c)
        memset(c, 0, sizeof *c);
    if (!c || !client_id || enter(s) != 0)
        return -1;
    int r = -1;
    mcpauth_db_stmt *st =
        query(s, "SELECT " CLIENT_COLS " FROM clients WHERE client_id = ?", "s", client_id);
    if (st) {
        int rc = step(s, st);
        if (rc == DB_DONE)
            r = 0;
        else if (rc == DB_ROW)
            r = client_from_row(st, c) == 0 ? 1 : -1;
    }
    done(s, st);
    leave(s);
    return r;
}

/* An expired secret (secret_expires, RFC 7591) no longer authenticates. */
int mcpauth__store_client_check_secret(mcpauth_store *s, const char *client_id, const char *secret)
{
    if (!client_id || enter(s) != 0)
        return -1;
    mcpauth_db_stmt *st = query(
        s, "SELECT secret_hash, secret_expires FROM clients WHERE client_id = ?", "s", client_id);
    int r = -1;
    if (st) {
        int rc = step(s, st);
        if (rc == DB_DONE) {
            r = 0;
        } else if (rc == DB_ROW) {
            const char *stored = (const char *)col_text(st, 0);
            time_t expires = (time_t)col_i64(st, 1);
            char h[65];
            hash_of(secret ? secret : "", h);
            r = secret && *secret && stored && (expires == 0 || expires > mcpauth__now()) &&
                mcpauth__ct_equal(stored, strlen(stored), h, 64);
        }
    }
    done(s, st);
    leave(s);
    return r;
}

int mcpauth__store_client_delete(mcpauth_store *s, const char *client_id)
{
    if (!client_id || enter(s) != 0)
        return -1;
    static const char *const sql[] = {
        "DELETE FROM consents WHERE client_id = ?1",
        "DELETE FROM refresh WHERE client_id = ?1"
        " OR family IN (SELECT id FROM families WHERE client_id = ?1)",
        "DELETE FROM codes WHERE client_id = ?1"
        " OR family IN (SELECT id FROM families WHERE client_id = ?1)",
        "DELETE FROM families WHERE client_id = ?1",
        "DELETE FROM clients WHERE client_id = ?1",
    };
    long n = -1;
    if (begin(s) == 0) {
        for (size_t i = 0; i < sizeof sql / sizeof *sql; i++)
            if ((n = run(s, sql[i], "s", client_id)) < 0)
                break;
        if (n < 0 || commit(s) != 0) {
            rollback(s);
            n = -1;
        }
    }
    leave(s);
    return n < 0 ? -1 : n > 0;
}

/* Rows are copied out first and fn runs without the lock, so it may call
 * the store itself. 0, or -1 on error (fn not called then). */
int mcpauth__store_client_list(mcpauth_store *s, int (*fn)(const mcpauth_client *, void *),
                              void *arg)
{
    if (!fn || enter(s) != 0)
        return -1;
    mcpauth_client *v = NULL;
    size_t n = 0, cap = 0;
    int rc = DB_ERROR;
    mcpauth_db_stmt *st =
        query(s, "SELECT " CLIENT_COLS " FROM clients ORDER BY created DESC, rowid DESC", "");
    while (st && (rc = step(s, st)) == DB_ROW) {
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 16;
            v = mcpauth__xrealloc(v, nc * sizeof *v);
            cap = nc;
        }
        if (client_from_row(st, &v[n]) != 0) {
            rc = DB_ERROR;
            break;
        }
        n++;
    }
    done(s, st);
    leave(s);
    for (size_t i = 0; rc == DB_DONE && i < n; i++)
        if (fn(&v[i], arg))
            break;
    for (size_t i = 0; i < n; i++)
        mcpauth__client_free(&v[i]);
    free(v);
    return rc == DB_DONE ? 0 : -1;
}

int mcpauth__store_registration_allowed(mcpauth_store *s, const char *addr, int limit, long window)
{
    if (!addr || enter(s) != 0)
        return -1;
    time_t now = mcpauth__now();
    int r = -1;
    if (begin(s) == 0) {
        mcpauth_db_stmt *st = query(s, "SELECT count(*) FROM registrations WHERE addr = ? AND \"time\" > ?",
                                 "st", addr, now - (time_t)window);
        if (st && step(s, st) == DB_ROW) {
            long long count = col_i64(st, 0);
            r = count < limit;
        }
        done(s, st);
        if (r == 1 && run(s, "INSERT INTO registrations(addr, \"time\") VALUES(?, ?)", "st", addr,
                          now) != 1)
            r = -1;
        if (r < 0 || commit(s) != 0) {
            rollback(s);
            r = -1;
        }
    }
    leave(s);
    return r;
}

/* ------------------------------------------------------------------ codes */

void mcpauth__grant_free(mcpauth_grant *g)
{
    if (!g)
        return;
    free(g->client_id);
    free(g->user);
    free(g->resource);
    free(g->scope);
    free(g->redirect_uri);
    free(g->code_challenge);
    free(g->family);
    memset(g, 0, sizeof *g);
}

static int grant_ok(const mcpauth_grant *g)
{
    return g && g->client_id && g->user && g->family && *g->family;
}

/* The family must be new: a code never joins (or revives) an existing one. */
int mcpauth__store_code_add(mcpauth_store *s, const char *code, const mcpauth_grant *g)
{
    if (!code || !*code || !grant_ok(g) || enter(s) != 0)
        return -1;
    char h[65];
    hash_of(code, h);
    int r = -1;
    if (begin(s) == 0) {
        if (run(s,
                "INSERT INTO families(id, revoked, \"user\", client_id, last_used)"
                " VALUES(?, 0, ?, ?, ?)",
                "ssst", g->family, g->user, g->client_id, g->expires) == 1 &&
            run(s,
                "INSERT INTO codes(hash, family, client_id, \"user\", resource, scope, redirect_uri,"
                " code_challenge, expires) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)",
                "sssssssst", h, g->family, g->client_id, g->user, g->resource, g->scope,
                g->redirect_uri, g->code_challenge, g->expires) == 1)
            r = commit(s);
        else
            rollback(s);
    }
    leave(s);
    return r;
}

/* Order of checks: expired first (an expired code is simply unknown), then
 * used (replay: revoke), then a family revoked since issue (the user or
 * client was revoked before the code came back).  Inside a transaction;
 * the grant into tmp (freed by the caller in every case). */
static mcpauth_redeem redeem_in(mcpauth_store *s, const char *h, time_t now, mcpauth_grant *tmp)
{
    mcpauth_redeem r = MCPAUTH_REDEEM_ERROR;
    mcpauth_db_stmt *st = query(s,
                             "SELECT c.client_id, c.\"user\", c.resource, c.scope, c.redirect_uri,"
                             " c.code_challenge, c.family, c.expires, c.used, f.revoked"
                             " FROM codes c JOIN families f ON f.id = c.family WHERE c.hash = ?",
                             "s", h);
    int rc = st ? step(s, st) : DB_ERROR;
    if (rc == DB_DONE) {
        r = MCPAUTH_REDEEM_UNKNOWN;
    } else if (rc == DB_ROW) {
        tmp->client_id = col_dup(st, 0);
        tmp->user = col_dup(st, 1);
        tmp->resource = col_dup(st, 2);
        tmp->scope = col_dup(st, 3);
        tmp->redirect_uri = col_dup(st, 4);
        tmp->code_challenge = col_dup(st, 5);
        tmp->family = col_dup(st, 6);
        tmp->expires = (time_t)col_i64(st, 7);
        int used = col_int(st, 8), revoked = col_int(st, 9);
        if (!tmp->family || !tmp->client_id || !tmp->user)
            r = MCPAUTH_REDEEM_ERROR;
        else if (tmp->expires <= now)
            r = MCPAUTH_REDEEM_UNKNOWN;
        else if (used)
            r = run(s, "UPDATE families SET revoked = 1 WHERE id = ?", "s", tmp->family) < 0
                    ? MCPAUTH_REDEEM_ERROR
                    : MCPAUTH_REDEEM_REPLAYED;
        else if (revoked)
            r = MCPAUTH_REDEEM_UNKNOWN;
        else if (run(s, "UPDATE codes SET used = 1 WHERE hash = ?", "s", h) == 1 &&
                 run(s, "UPDATE families SET last_used = CASE WHEN last_used < ?1 THEN ?1 ELSE last_used END"
                     " WHERE id = ?2", "ts",
                     now, tmp->family) == 1)
            r = MCPAUTH_REDEEM_OK;
    }
    done(s, st);
    return r;
}

static long insert_refresh(mcpauth_store *s, const char *hash, const mcpauth_grant *g,
                           time_t expires);

mcpauth_redeem mcpauth__store_code_exchange(mcpauth_store *s, const char *code, time_t now,
                                           const char *family, const char *refresh,
                                           time_t refresh_expires, const char *access,
                                           time_t access_expires, mcpauth_grant *g)
{
    if (g)
        memset(g, 0, sizeof *g);
    if (enter(s) != 0)
        return MCPAUTH_REDEEM_ERROR;
    if (!code) {
        leave(s);
        return MCPAUTH_REDEEM_UNKNOWN;
    }
    char h[65], rh[65], ah[65];
    hash_of(code, h);
    if (refresh)
        hash_of(refresh, rh);
    if (access)
        hash_of(access, ah);
    mcpauth_redeem r = MCPAUTH_REDEEM_ERROR;
    mcpauth_grant tmp = {0};
    if (begin(s) != 0)
        goto out;
    r = redeem_in(s, h, now, &tmp);
    /* what the caller minted from its look at the code must be this grant */
    if (r == MCPAUTH_REDEEM_OK && family && strcmp(family, tmp.family) != 0)
        r = MCPAUTH_REDEEM_ERROR;
    if (r == MCPAUTH_REDEEM_OK && refresh && insert_refresh(s, rh, &tmp, refresh_expires) != 1)
        r = MCPAUTH_REDEEM_ERROR;
    if (r == MCPAUTH_REDEEM_OK && access &&
        run(s, "INSERT INTO access(hash, family, expires) VALUES(?, ?, ?)", "sst", ah, tmp.family,
            access_expires) != 1)
        r = MCPAUTH_REDEEM_ERROR;
    if (r == MCPAUTH_REDEEM_ERROR || commit(s) != 0) {
        rollback(s);
        r = MCPAUTH_REDEEM_ERROR;
    }
out:
    leave(s);
    if (r == MCPAUTH_REDEEM_OK && g)
        *g = tmp;
    else
        mcpauth__grant_free(&tmp);
    return r;
}

mcpauth_redeem mcpauth__store_code_redeem(mcpauth_store *s, const char *code, time_t now,
                                         mcpauth_grant *g)
{
    return mcpauth__store_code_exchange(s, code, now, NULL, NULL, 0, NULL, 0, g);
}

int mcpauth__store_code_peek(mcpauth_store *s, const char *code, time_t now, mcpauth_grant *g)
{
    if (g)
        memset(g, 0, sizeof *g);
    if (!g || enter(s) != 0)
        return -1;
    if (!code) {
        leave(s);
        return 0;
    }
    char h[65];
    hash_of(code, h);
    int r = -1;
    mcpauth_db_stmt *st = query(s,
                             "SELECT c.client_id, c.\"user\", c.resource, c.scope, c.redirect_uri,"
                             " c.code_challenge, c.family, c.expires"
                             " FROM codes c JOIN families f ON f.id = c.family WHERE c.hash = ?"
                             " AND c.used = 0 AND c.expires > ? AND f.revoked = 0",
                             "st", h, now);
    int rc = st ? step(s, st) : DB_ERROR;
    if (rc == DB_DONE) {
        r = 0;
    } else if (rc == DB_ROW) {
        g->client_id = col_dup(st, 0);
        g->user = col_dup(st, 1);
        g->resource = col_dup(st, 2);
        g->scope = col_dup(st, 3);
        g->redirect_uri = col_dup(st, 4);
        g->code_challenge = col_dup(st, 5);
        g->family = col_dup(st, 6);
        g->expires = (time_t)col_i64(st, 7);
        r = g->client_id && g->user && g->family ? 1 : -1;
    }
    done(s, st);
    leave(s);
    if (r != 1)
        mcpauth__grant_free(g);
    return r;
}

/* --------------------------------------------------------- refresh tokens */

static long insert_refresh(mcpauth_store *s, const char *hash, const mcpauth_grant *g,
                           time_t expires)
{
    return run(s,
               "INSERT INTO refresh(hash, family, client_id, \"user\", resource, scope, expires)"
               " VALUES(?, ?, ?, ?, ?, ?, ?)",
               "sssssst", hash, g->family, g->client_id, g->user, g->resource, g->scope, expires);
}

/* The family is created when new; an existing one must belong to the same
 * user and client (no grafting tokens onto someone else's family).  A token
 * added to a revoked family is stored but dead. */
int mcpauth__store_refresh_add(mcpauth_store *s, const char *token, const mcpauth_grant *g)
{
    if (!token || !*token || !grant_ok(g) || enter(s) != 0)
        return -1;
    char h[65];
    hash_of(token, h);
    int r = -1;
    if (begin(s) == 0) {
        int same = 0;
        if (run(s,
                "INSERT INTO families(id, revoked, \"user\", client_id, last_used)"
                " VALUES(?, 0, ?, ?, ?) ON CONFLICT DO NOTHING",
                "ssst", g->family, g->user, g->client_id, g->expires) >= 0) {
            mcpauth_db_stmt *st = query(s,
                                     "SELECT 1 FROM families WHERE id = ? AND \"user\" = ?"
                                     " AND client_id = ?",
                                     "sss", g->family, g->user, g->client_id);
            same = st && step(s, st) == DB_ROW;
            done(s, st);
        }
        if (same && insert_refresh(s, h, g, g->expires) == 1)
            r = commit(s);
        else
            rollback(s);
    }
    leave(s);
    return r;
}

/* Order of checks: unknown, expired or revoked first (nothing happens),
 * then reuse outside the grace window (revokes: theft assumed), then the
 * presenting client (another one revokes too: the token was stolen), and
 * only then the caller's family (a mismatch changes nothing).  The whole
 * exchange is one transaction: a failure anywhere leaves the old token
 * unretired, its grace unspent, and nothing stored. */
mcpauth_rotate mcpauth__store_refresh_exchange(mcpauth_store *s, const char *token,
                                              const char *new_token, time_t now, long grace,
                                              time_t new_expires, const char *access,
                                              const char *family, time_t access_expires,
                                              const char *expect_client, mcpauth_grant *g)
{
    if (g)
        memset(g, 0, sizeof *g);
    if (enter(s) != 0)
        return MCPAUTH_ROTATE_ERROR;
    if (!token || (new_token && !*new_token) || (access && !*access)) {
        leave(s);
        return !token ? MCPAUTH_ROTATE_UNKNOWN : MCPAUTH_ROTATE_ERROR;
    }
    char h[65], nh[65], ah[65];
    hash_of(token, h);
    if (new_token)
        hash_of(new_token, nh);
    if (access)
        hash_of(access, ah);
    mcpauth_rotate r = MCPAUTH_ROTATE_ERROR;
    mcpauth_grant tmp = {0};
    if (begin(s) != 0)
        goto out;
    mcpauth_db_stmt *st = query(s,
                             "SELECT r.family, r.client_id, r.\"user\", r.resource, r.scope,"
                             " r.expires, r.retired_at, r.grace_used, f.revoked"
                             " FROM refresh r JOIN families f ON f.id = r.family"
                             " WHERE r.hash = ?",
                             "s", h);
    int rc = st ? step(s, st) : DB_ERROR;
    if (rc == DB_DONE) {
        r = MCPAUTH_ROTATE_UNKNOWN;
    } else if (rc == DB_ROW) {
        tmp.family = col_dup(st, 0);
        tmp.client_id = col_dup(st, 1);
        tmp.user = col_dup(st, 2);
        tmp.resource = col_dup(st, 3);
        tmp.scope = col_dup(st, 4);
        tmp.expires = (time_t)col_i64(st, 5);
        int retired = !col_null(st, 6);
        time_t retired_at = (time_t)col_i64(st, 6);
        int grace_used = col_int(st, 7), revoked = col_int(st, 8);
        /* Two refreshes raced (or the response was lost): the loser gets
         * its own live token, once; the token's grace is then spent. */
        int in_grace = retired && grace > 0 && now - retired_at < (time_t)grace && !grace_used;
        if (!tmp.family || !tmp.client_id || !tmp.user) {
            r = MCPAUTH_ROTATE_ERROR;
        } else if (revoked || tmp.expires <= now) {
            r = MCPAUTH_ROTATE_UNKNOWN;
        } else if ((retired && !in_grace) ||
                   (expect_client && strcmp(expect_client, tmp.client_id) != 0)) {
            r = run(s, "UPDATE families SET revoked = 1 WHERE id = ?", "s", tmp.family) < 0
                    ? MCPAUTH_ROTATE_ERROR
                    : retired && !in_grace ? MCPAUTH_ROTATE_REUSED : MCPAUTH_ROTATE_FOREIGN;
        } else if (family && strcmp(family, tmp.family) != 0) {
            r = MCPAUTH_ROTATE_ERROR; /* not what the caller minted from */
        } else if (!retired) {
            if (!new_token ||
                (run(s, "UPDATE refresh SET retired_at = ? WHERE hash = ?", "ts", now, h) == 1 &&
                 insert_refresh(s, nh, &tmp, new_expires) == 1))
                r = MCPAUTH_ROTATE_OK;
        } else {
            if (run(s, "UPDATE refresh SET grace_used = 1 WHERE hash = ?", "s", h) == 1 &&
                (!new_token || insert_refresh(s, nh, &tmp, new_expires) == 1))
                r = MCPAUTH_ROTATE_OK;
        }
        if (r == MCPAUTH_ROTATE_OK) {
            if (new_token)
                tmp.expires = new_expires;
            if (run(s, "UPDATE families SET last_used = CASE WHEN last_used < ?1 THEN ?1 ELSE last_used END"
                     " WHERE id = ?2", "ts",
                    now, tmp.family) != 1)
                r = MCPAUTH_ROTATE_ERROR;
        }
        /* the family is alive (checked above, under the write lock) */
        if (r == MCPAUTH_ROTATE_OK && access &&
            run(s, "INSERT INTO access(hash, family, expires) VALUES(?, ?, ?)", "sst", ah,
                tmp.family, access_expires) != 1)
            r = MCPAUTH_ROTATE_ERROR;
    }
    done(s, st);
    if (r == MCPAUTH_ROTATE_ERROR || commit(s) != 0) {
        rollback(s);
        r = MCPAUTH_ROTATE_ERROR;
    }
out:
    leave(s);
    if (r == MCPAUTH_ROTATE_OK && g)
        *g = tmp;
    else
        mcpauth__grant_free(&tmp);
    return r;
}

mcpauth_rotate mcpauth__store_refresh_rotate(mcpauth_store *s, const char *token,
                                            const char *new_token, time_t now, long grace,
                                            time_t new_expires, mcpauth_grant *g)
{
    return mcpauth__store_refresh_exchange(s, token, new_token, now, grace, new_expires, NULL,
                                          NULL, 0, NULL, g);
}

static int refresh_lookup(mcpauth_store *s, const char *token, time_t now, int retired_too,
                          mcpauth_grant *g);

int mcpauth__store_refresh_get(mcpauth_store *s, const char *token, time_t now, mcpauth_grant *g)
{
    return refresh_lookup(s, token, now, 0, g);
}

int mcpauth__store_refresh_peek(mcpauth_store *s, const char *token, time_t now, mcpauth_grant *g)
{
    return refresh_lookup(s, token, now, 1, g);
}

static int refresh_lookup(mcpauth_store *s, const char *token, time_t now, int retired_too,
                          mcpauth_grant *g)
{
    if (g)
        memset(g, 0, sizeof *g);
    if (enter(s) != 0)
        return -1;
    if (!token) {
        leave(s);
        return 0;
    }
    char h[65];
    hash_of(token, h);
    int r = -1;
    /* retired_too: a token rotated away but whose family is alive (for
     * checks that must not depend on which racing refresh came first) */
    mcpauth_db_stmt *st = query(s,
                             retired_too
                                 ? "SELECT r.family, r.client_id, r.\"user\", r.resource, r.scope,"
                                   " r.expires FROM refresh r JOIN families f ON f.id = r.family"
                                   " WHERE r.hash = ? AND r.expires > ? AND f.revoked = 0"
                                 : "SELECT r.family, r.client_id, r.\"user\", r.resource, r.scope,"
                                   " r.expires FROM refresh r JOIN families f ON f.id = r.family"
                                   " WHERE r.hash = ? AND r.retired_at IS NULL AND r.expires > ?"
                                   " AND f.revoked = 0",
                             "st", h, now);
    int rc = st ? step(s, st) : DB_ERROR;
    if (rc == DB_DONE) {
        r = 0;
    } else if (rc == DB_ROW) {
        r = 1;
        if (g) {
            g->family = col_dup(st, 0);
            g->client_id = col_dup(st, 1);
            g->user = col_dup(st, 2);
            g->resource = col_dup(st, 3);
            g->scope = col_dup(st, 4);
            g->expires = (time_t)col_i64(st, 5);
        }
    }
    done(s, st);
    leave(s);
    return r;
}

/* Counts families newly revoked (an already revoked one counts 0).  Only
 * refresh tokens are looked up: a code is not a revocable token (RFC 7009). */
int mcpauth__store_revoke_token(mcpauth_store *s, const char *token)
{
    if (enter(s) != 0)
        return -1;
    if (!token) {
        leave(s);
        return 0;
    }
    char h[65];
    hash_of(token, h);
    long n = run_write(s,
                 "UPDATE families SET revoked = 1 WHERE revoked = 0"
                 " AND id = (SELECT family FROM refresh WHERE hash = ?)",
                 "s", h);
    leave(s);
    return (int)n;
}

int mcpauth__store_revoke_user(mcpauth_store *s, const char *user)
{
    if (!user || enter(s) != 0)
        return -1;
    long n = run_write(s, "UPDATE families SET revoked = 1 WHERE revoked = 0 AND \"user\" = ?", "s", user);
    leave(s);
    return (int)n;
}

int mcpauth__store_revoke_client(mcpauth_store *s, const char *client_id)
{
    if (!client_id || enter(s) != 0)
        return -1;
    long n = run_write(s, "UPDATE families SET revoked = 1 WHERE revoked = 0 AND client_id = ?", "s",
                 client_id);
    leave(s);
    return (int)n;
}

/* By id, as carried in access tokens (their "sid"); unknown → 0. */
int mcpauth__store_revoke_family(mcpauth_store *s, const char *family)
{
    if (!family || enter(s) != 0)
        return -1;
    long n = run_write(s, "UPDATE families SET revoked = 1 WHERE revoked = 0 AND id = ?", "s", family);
    leave(s);
    return (int)n;
}

/* Fails closed: a family the store does not know (its client was deleted,
 * or it was purged long after its last use) counts as revoked. */
int mcpauth__store_family_revoked(mcpauth_store *s, const char *family)
{
    if (enter(s) != 0)
        return -1;
    if (!family) {
        leave(s);
        return 1;
    }
    int r = -1;
    mcpauth_db_stmt *st = query(s, "SELECT revoked FROM families WHERE id = ?", "s", family);
    int rc = st ? step(s, st) : DB_ERROR;
    if (rc == DB_DONE)
        r = 1;
    else if (rc == DB_ROW)
        r = col_int(st, 0) != 0;
    done(s, st);
    leave(s);
    return r;
}

/* ---------------------------------------------------------- access tokens */

/* No foreign key to families: the row must outlive a deleted client's
 * families, so that its tokens are still pushed as revoked. */
int mcpauth__store_access_add(mcpauth_store *s, const char *token, const char *family,
                             time_t expires)
{
    if (!token || !*token || !family || enter(s) != 0)
        return -1;
    char h[65];
    hash_of(token, h);
    int r = -1;
    if (begin(s) == 0) {
        mcpauth_db_stmt *st = query(s, "SELECT revoked FROM families WHERE id = ?", "s", family);
        int rc = st ? step(s, st) : DB_ERROR;
        if (rc == DB_DONE)
            r = 0;
        else if (rc == DB_ROW)
            r = col_int(st, 0) ? 0 : 1;
        done(s, st);
        if (r == 1 && run(s, "INSERT INTO access(hash, family, expires) VALUES(?, ?, ?)", "sst", h,
                          family, expires) != 1)
            r = -1;
        if (r != 1 || commit(s) != 0) {
            rollback(s);
            r = r == 0 ? 0 : -1;
        }
    }
    leave(s);
    return r;
}

typedef struct {
    char hash[65];
    time_t expires;
} access_row;

long mcpauth__store_access_revoked(mcpauth_store *s, time_t now,
                                  int (*fn)(const char *hash_hex, time_t expires, void *),
                                  void *arg)
{
    if (!fn || enter(s) != 0)
        return -1;
    access_row *v = NULL;
    size_t n = 0, cap = 0;
    int rc = DB_ERROR;
    /* revoked, or gone (deleted client, purged): fail closed */
    mcpauth_db_stmt *st = query(s,
                             "SELECT hash, expires FROM access WHERE pushed = 0 AND expires > ?"
                             " AND NOT EXISTS (SELECT 1 FROM families f"
                             "  WHERE f.id = access.family AND f.revoked = 0)",
                             "t", now);
    while (st && (rc = step(s, st)) == DB_ROW) {
        const char *t = col_text(st, 0);
        if (!t || strlen((const char *)t) != 64)
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            v = mcpauth__xrealloc(v, cap * sizeof *v);
        }
        memcpy(v[n].hash, t, 65);
        v[n++].expires = (time_t)col_i64(st, 1);
    }
    done(s, st);
    leave(s);
    long taken = rc == DB_DONE ? 0 : -1;
    size_t nt = 0; /* the rows fn took move to the front */
    for (size_t i = 0; taken >= 0 && i < n; i++)
        if (fn(v[i].hash, v[i].expires, arg) == 0) /* else offered again next time */
            v[nt++] = v[i];
    /* One transaction for them all, not one commit per row; if it fails,
     * they are offered again, and fn takes them again harmlessly. */
    if (taken >= 0 && nt > 0) {
        if (enter(s) != 0) {
            free(v);
            return -1;
        }
        int ok = begin(s) == 0;
        for (size_t i = 0; ok && i < nt; i++)
            ok = run(s, "UPDATE access SET pushed = 1 WHERE hash = ?", "s", v[i].hash) >= 0;
        if (ok && commit(s) == 0) {
            taken = (long)nt;
        } else {
            rollback(s);
            taken = -1;
        }
        leave(s);
    }
    free(v);
    return taken;
}

/* ---------------------------------------------------------- consent forms */

int mcpauth__store_form_use(mcpauth_store *s, const char *form_id, time_t expires)
{
    if (!form_id || !*form_id || enter(s) != 0)
        return -1;
    char h[65];
    hash_of(form_id, h);
    /* the primary key makes the second insert a no-op: of two racing
     * posts exactly one changes a row */
    long n = run_write(s, "INSERT INTO consent_forms(hash, expires) VALUES(?, ?) ON CONFLICT DO NOTHING", "st", h,
                 expires);
    leave(s);
    return n < 0 ? -1 : n == 1;
}

/* --------------------------------------------------------------- consents */

/* A NULL resource or scope is stored and matched as "". */
static const char *or_empty(const char *v)
{
    return v ? v : "";
}

/* Stored scope (NULL when none) for the triple; 0 none, 1 found, -1 error. */
static int consent_scope(mcpauth_store *s, const char *user, const char *client_id,
                         const char *resource, char **scope)
{
    *scope = NULL;
    mcpauth_db_stmt *st = query(s,
                             "SELECT scope FROM consents WHERE \"user\" = ? AND client_id = ?"
                             " AND resource = ?",
                             "sss", user, client_id, or_empty(resource));
    int rc = st ? step(s, st) : DB_ERROR, r = -1;
    if (rc == DB_DONE) {
        r = 0;
    } else if (rc == DB_ROW) {
        *scope = col_dup(st, 0);
        r = 1;
        if (!*scope)
            *scope = mcpauth__xstrdup("");
    }
    done(s, st);
    return r;
}

int mcpauth__store_consent_has(mcpauth_store *s, const char *user, const char *client_id,
                              const char *resource, const char *scope)
{
    if (!user || !client_id || enter(s) != 0)
        return -1;
    char *stored;
    int r = consent_scope(s, user, client_id, resource, &stored);
    leave(s);
    if (r != 1)
        return r;
    mcpauth_strlist have = {0}, want = {0};
    mcpauth_strlist_split(&have, stored); /* cannot fail: allocation aborts */
    mcpauth_strlist_split(&want, or_empty(scope));
    for (size_t i = 0; i < want.n && r == 1; i++)
        r = mcpauth_strlist_has(&have, want.v[i]);
    mcpauth_strlist_free(&have);
    mcpauth_strlist_free(&want);
    free(stored);
    return r;
}

/* old ∪ new, space separated, each scope once, old order kept. */
static char *scope_union(const char *old, const char *add)
{
    mcpauth_strlist a = {0}, b = {0}, seen = {0};
    mcpauth_strlist_split(&a, old); /* cannot fail: allocation aborts */
    mcpauth_strlist_split(&b, add);
    size_t len = 1, pos = 0;
    for (size_t i = 0; i < a.n; i++)
        len += strlen(a.v[i]) + 1;
    for (size_t i = 0; i < b.n; i++)
        len += strlen(b.v[i]) + 1;
    char *out = mcpauth__xmalloc(len);
    out[0] = '\0';
    for (size_t k = 0; k < 2; k++) {
        const mcpauth_strlist *l = k ? &b : &a;
        for (size_t i = 0; i < l->n; i++) {
            if (mcpauth_strlist_has(&seen, l->v[i]))
                continue;
            mcpauth_strlist_split(&seen, l->v[i]);
            pos += (size_t)snprintf(out + pos, len - pos, "%s%s", pos ? " " : "", l->v[i]);
        }
    }
    mcpauth_strlist_free(&seen);
    mcpauth_strlist_free(&a);
    mcpauth_strlist_free(&b);
    return out;
}

int mcpauth__store_consent_add(mcpauth_store *s, const char *user, const char *client_id,
                              const char *resource, const char *scope)
{
    if (!user || !client_id || enter(s) != 0)
        return -1;
    int r = -1;
    if (begin(s) == 0) {
        char *old = NULL, *merged = NULL;
        if (consent_scope(s, user, client_id, resource, &old) >= 0 &&
            (merged = scope_union(or_empty(old), or_empty(scope))) &&
            run(s,
                "INSERT INTO consents(\"user\", client_id, resource, scope) VALUES(?, ?, ?, ?)"
                " ON CONFLICT(\"user\", client_id, resource) DO UPDATE SET scope = excluded.scope",
                "ssss", user, client_id, or_empty(resource), merged) == 1)
            r = commit(s);
        else
            rollback(s);
        free(old);
        free(merged);
    }
    leave(s);
    return r;
}

/* ------------------------------------------------------------------- keys */

void mcpauth__keyinfo_free(mcpauth_keyinfo *k)
{
    if (!k)
        return;
    free(k->kid);
    free(k->alg);
    free(k->file);
    if (k->pem)
        OPENSSL_cleanse(k->pem, strlen(k->pem));
    free(k->pem);
    memset(k, 0, sizeof *k);
}

int mcpauth__store_key_add(mcpauth_store *s, const mcpauth_keyinfo *k)
{
    if (!k || !k->kid || !*k->kid || !k->alg || !k->file || enter(s) != 0)
        return -1;
    long n = run_write(s,
                       "INSERT INTO keys(kid, alg, file, created, retired, pem)"
                       " VALUES(?, ?, ?, ?, ?, ?)",
                       "ssstts", k->kid, k->alg, k->file,
                       k->created ? k->created : time(NULL), k->retired, k->pem);
    leave(s);
    return n == 1 ? 0 : -1;
}

/* Returns how many keys were retired. */
int mcpauth__store_key_retire_all(mcpauth_store *s, time_t now)
{
    if (enter(s) != 0)
        return -1;
    long n = run_write(s, "UPDATE keys SET retired = ? WHERE retired = 0", "t", now);
    leave(s);
    return (int)n;
}

/* One transaction, so no other host ever reads "no current key". */
int mcpauth__store_key_rotate(mcpauth_store *s, const mcpauth_keyinfo *k, time_t now)
{
    if (!k || !k->kid || !*k->kid || !k->alg || !k->file || enter(s) != 0)
        return -1;
    int ok = begin(s) == 0;
    if (ok && (run(s, "UPDATE keys SET retired = ? WHERE retired = 0", "t", now) < 0 ||
               run(s,
                   "INSERT INTO keys(kid, alg, file, created, retired, pem)"
                   " VALUES(?, ?, ?, ?, ?, ?)",
                   "ssstts", k->kid, k->alg, k->file, k->created ? k->created : now,
                   (time_t)0, k->pem) != 1 ||
               commit(s) != 0)) {
        rollback(s);
        ok = 0;
    }
    leave(s);
    return ok ? 0 : -1;
}

/* Like client_list: rows copied out, fn called unlocked; 0 or -1. */
int mcpauth__store_key_list(mcpauth_store *s, time_t since,
                           int (*fn)(const mcpauth_keyinfo *, void *), void *arg)
{
    if (!fn || enter(s) != 0)
        return -1;
    mcpauth_keyinfo *v = NULL;
    size_t n = 0, cap = 0;
    int rc = DB_ERROR;
    mcpauth_db_stmt *st = query(s,
                             "SELECT kid, alg, file, created, retired, pem FROM keys"
                             " WHERE retired = 0 OR retired > ? ORDER BY created DESC, rowid DESC",
                             "t", since);
    while (st && (rc = step(s, st)) == DB_ROW) {
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 8;
            v = mcpauth__xrealloc(v, nc * sizeof *v);
            cap = nc;
        }
        mcpauth_keyinfo *k = &v[n++];
        k->kid = col_dup(st, 0);
        k->alg = col_dup(st, 1);
        k->file = col_dup(st, 2);
        k->created = (time_t)col_i64(st, 3);
        k->retired = (time_t)col_i64(st, 4);
        k->pem = col_dup(st, 5);
    }
    done(s, st);
    leave(s);
    for (size_t i = 0; rc == DB_DONE && i < n; i++)
        if (fn(&v[i], arg))
            break;
    for (size_t i = 0; i < n; i++)
        mcpauth__keyinfo_free(&v[i]);
    free(v);
    return rc == DB_DONE ? 0 : -1;
}

/* ----------------------------------------------------------------- upkeep */

/* Used codes stay until they expire so a replay is still recognised;
 * retired refresh tokens likewise, for reuse detection. */
long mcpauth__store_purge(mcpauth_store *s, time_t now, time_t key_cutoff)
{
    if (enter(s) != 0)
        return -1;
    long total = -1;
    if (begin(s) == 0) {
        long n[7];
        n[0] = run(s, "DELETE FROM codes WHERE expires <= ?", "t", now);
        n[1] = run(s, "DELETE FROM refresh WHERE expires <= ?", "t", now);
        n[2] = run(s, "DELETE FROM access WHERE expires <= ?", "t", now);
        /* a family with live access tokens stays: unknown would read as
         * revoked */
        n[3] = run(s,
                   "DELETE FROM families WHERE last_used <= ?"
                   " AND NOT EXISTS (SELECT 1 FROM codes WHERE family = families.id)"
                   " AND NOT EXISTS (SELECT 1 FROM refresh WHERE family = families.id)"
                   " AND NOT EXISTS (SELECT 1 FROM access WHERE family = families.id)",
                   "t", now - (time_t)FAMILY_LINGER);
        n[4] = run(s, "DELETE FROM registrations WHERE \"time\" <= ?", "t",
                   now - (time_t)REGISTRATION_KEEP);
        n[5] = run(s, "DELETE FROM keys WHERE retired != 0 AND retired < ?", "t", key_cutoff);
        n[6] = run(s, "DELETE FROM consent_forms WHERE expires <= ?", "t", now);
        total = 0;
        for (int i = 0; i < 7 && total >= 0; i++)
            total = n[i] < 0 ? -1 : total + n[i];
        if (total < 0 || commit(s) != 0) {
            rollback(s);
            total = -1;
        }
    }
    leave(s);
    return total;
}

/* --------------------------------------------------------------- settings */

int mcpauth__store_setting_get(mcpauth_store *s, const char *name, char **value)
{
    if (value)
        *value = NULL;
    if (!name || !value || enter(s) != 0)
        return -1;
    mcpauth_db_stmt *st = query(s, "SELECT value FROM settings WHERE name = ?", "s", name);
    int rc = st ? step(s, st) : DB_ERROR, r = -1;
    if (rc == DB_DONE) {
        r = 0;
    } else if (rc == DB_ROW) {
        *value = col_dup(st, 0);
        r = *value ? 1 : -1;
    }
    done(s, st);
    leave(s);
    return r;
}

int mcpauth__store_setting_add(mcpauth_store *s, const char *name, const char *value)
{
    if (!name || !value || enter(s) != 0)
        return -1;
    long n = run_write(s, "INSERT INTO settings(name, value) VALUES(?, ?) ON CONFLICT DO NOTHING",
                       "ss", name, value);
    leave(s);
    return n < 0 ? -1 : n == 1;
}
