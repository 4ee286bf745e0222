/* See store.h.  One SQLite database in WAL mode shared by every process.
 * Each call holds the handle's mutex (a transaction spans several SQLite
 * calls, which FULLMUTEX alone does not serialise) and every
 * check-then-write sequence runs inside BEGIN IMMEDIATE, so the write lock
 * is taken before the check and racing processes queue on the busy
 * timeout instead of both seeing the old state.  Only SHA-256 digests of
 * secrets, codes and refresh tokens are ever bound into SQL. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <sqlite3.h>

#include <mcpauth/util.h>

#include "encode.h"

#include "alloc.h"
#include "store.h"

#define SCHEMA_VERSION 1
#define STR_(x) #x
#define STR(x) STR_(x)
#define REGISTRATION_KEEP 86400L /* purge: rate counters older than a day */
/* purge: a family without tokens is kept this long after it was last used,
 * because access tokens carrying it outlive the code they came from, and an
 * unknown family reads as revoked. */
#define FAMILY_LINGER 86400L

/* Statements are prepared once per connection and kept: SQLite's parser
 * and planner were a visible share of the token endpoint's time (bench/
 * bench_as).  Keyed by the SQL text's address (every caller passes a
 * literal); used under the store's lock only. */
#define STMT_CACHE 64

struct mcpauth_store {
    sqlite3 *db;
    pthread_mutex_t lock;
    pid_t pid; /* SQLite connections must not cross fork() */
    int restart_tried; /* WAL frames at the last RESTART checkpoint tried */
    int busy_ms;       /* busy timeout (BUSY_TIMEOUT_MS; tests lower it) */
    int fault;         /* first SQLite error of the current call (fault()) */
    struct {
        const char *sql;
        sqlite3_stmt *st;
    } stmts[STMT_CACHE];
};

static const char schema_sql[] =
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
    " retired INTEGER NOT NULL DEFAULT 0);"
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
    "CREATE INDEX IF NOT EXISTS registrations_addr ON registrations(addr, time);";

/* ---------------------------------------------------------------- helpers */

/* The first SQLite error of this thread's last store call (see
 * mcpauth__store_fault): copied out under the lock by leave(). */
static _Thread_local int last_fault;

static int enter(mcpauth_store *s)
{
    last_fault = 0;
    if (!s || s->pid != getpid())
        return -1;
    pthread_mutex_lock(&s->lock);
    s->fault = 0;
    return 0;
}

static void leave(mcpauth_store *s)
{
    /* pages read from a damaged file stay cached while the WAL does not
     * change: drop them, so a repaired file is read afresh */
    int f = s->fault & 0xff;
    if (f == SQLITE_CORRUPT || f == SQLITE_NOTADB || f == SQLITE_IOERR)
        sqlite3_db_release_memory(s->db);
    last_fault = s->fault;
    pthread_mutex_unlock(&s->lock);
}

/* Keeps the first error of the call, so the caller can tell a fault of
 * the environment (locked, read-only, full, damaged) from a refusal. */
static int note(mcpauth_store *s, int rc)
{
    if (rc != SQLITE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE && !s->fault)
        s->fault = rc;
    return rc;
}

static int step(mcpauth_store *s, sqlite3_stmt *st)
{
    return note(s, sqlite3_step(st));
}

/* types: s text (NULL binds NULL), t time_t, i int, l long.  A count that
 * does not match the SQL's parameters is refused (an unbound one is NULL). */
static int bindv(sqlite3_stmt *st, const char *types, va_list ap)
{
    if (strlen(types) != (size_t)sqlite3_bind_parameter_count(st))
        return SQLITE_MISUSE;
    int rc = SQLITE_OK;
    for (int i = 0; types[i] && rc == SQLITE_OK; i++) {
        switch (types[i]) {
        case 's': rc = sqlite3_bind_text(st, i + 1, va_arg(ap, const char *), -1, SQLITE_STATIC); break;
        case 't': rc = sqlite3_bind_int64(st, i + 1, (sqlite3_int64)va_arg(ap, time_t)); break;
        case 'i': rc = sqlite3_bind_int(st, i + 1, va_arg(ap, int)); break;
        case 'l': rc = sqlite3_bind_int64(st, i + 1, (sqlite3_int64)va_arg(ap, long)); break;
        default: rc = SQLITE_MISUSE; break;
        }
    }
    return rc;
}

/* The statement for sql, prepared on first use and kept (see STMT_CACHE);
 * give it back with done().  NULL when SQLite refuses it. */
static sqlite3_stmt *prepared(mcpauth_store *s, const char *sql)
{
    size_t i;
    for (i = 0; i < STMT_CACHE && s->stmts[i].sql; i++)
        if (s->stmts[i].sql == sql)
            return s->stmts[i].st;
    sqlite3_stmt *st = NULL;
    if (note(s, sqlite3_prepare_v3(s->db, sql, -1, i < STMT_CACHE ? SQLITE_PREPARE_PERSISTENT : 0,
                                   &st, NULL)) != SQLITE_OK)
        return NULL;
    if (i < STMT_CACHE) {
        s->stmts[i].sql = sql;
        s->stmts[i].st = st;
    }
    return st;
}

/* Ends a statement from prepared(): reset (which also ends the read
 * transaction a SELECT holds, so the WAL can start over) and unbound, or
 * finalized when the cache was full. */
static void done(mcpauth_store *s, sqlite3_stmt *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < STMT_CACHE && s->stmts[i].sql; i++)
        if (s->stmts[i].st == st) {
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            return;
        }
    sqlite3_finalize(st);
}

/* sqlite3_close refuses a connection with statements left. */
static void close_db(mcpauth_store *s)
{
    for (size_t i = 0; i < STMT_CACHE && s->stmts[i].sql; i++)
        sqlite3_finalize(s->stmts[i].st);
    sqlite3_close(s->db);
}

/* A prepared, bound statement; the bound strings must outlive it.  Give
 * it back with done(). */
static sqlite3_stmt *query(mcpauth_store *s, const char *sql, const char *types, ...)
{
    sqlite3_stmt *st = prepared(s, sql);
    if (!st)
        return NULL;
    va_list ap;
    va_start(ap, types);
    int rc = bindv(st, types, ap);
    va_end(ap);
    if (rc != SQLITE_OK) {
        done(s, st);
        return NULL;
    }
    return st;
}

/* Runs a statement returning no rows; the number of rows changed, or -1. */
static long run(mcpauth_store *s, const char *sql, const char *types, ...)
{
    sqlite3_stmt *st = prepared(s, sql);
    if (!st)
        return -1;
    va_list ap;
    va_start(ap, types);
    int rc = bindv(st, types, ap);
    va_end(ap);
    if (rc == SQLITE_OK)
        while ((rc = step(s, st)) == SQLITE_ROW)
            ;
    done(s, st);
    return rc == SQLITE_DONE ? (long)sqlite3_changes(s->db) : -1;
}

/* IMMEDIATE: take the write lock before reading, so no other process can
 * change what we are about to check. */
static int begin(mcpauth_store *s)
{
    return note(s, sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL)) == SQLITE_OK ? 0 : -1;
}

static void rollback(mcpauth_store *s)
{
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

static int commit(mcpauth_store *s)
{
    if (note(s, sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL)) == SQLITE_OK)
        return 0;
    rollback(s);
    return -1;
}

/* NULL only for SQL NULL: sqlite3_column_text's NULL for anything else
 * is out of memory, which aborts (alloc.h). */
static char *col_dup(sqlite3_stmt *st, int i)
{
    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        return NULL;
    const unsigned char *t = mcpauth__check((void *)sqlite3_column_text(st, i), "sqlite3_column_text");
    return mcpauth__xstrdup((const char *)t);
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

/* Creates the file 0600 ourselves (SQLite would apply the umask), refuses
 * symlinks and non-regular files, and tightens a file left too open.
 * Records its identity in st so the path SQLite opens can be checked. */
static int prepare_file(const char *path, struct stat *st, char *err, size_t errlen)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, 0600);
    if (fd < 0) {
        if (errno == ELOOP)
            snprintf(err, errlen, "%s: is a symbolic link, refusing it", path);
        else
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    int ok = 0;
    if (fstat(fd, st) != 0)
        snprintf(err, errlen, "%s: fstat: %s", path, strerror(errno));
    else if (!S_ISREG(st->st_mode))
        snprintf(err, errlen, "%s: not a regular file", path);
    else if ((st->st_mode & 07777) != 0600 && fchmod(fd, 0600) != 0)
        snprintf(err, errlen, "%s: chmod 0600: %s", path, strerror(errno));
    else
        ok = 1;
    /* Closed before SQLite opens the file: closing a second descriptor
     * later would drop SQLite's POSIX locks. */
    close(fd);
    return ok ? 0 : -1;
}

/* SQLite creates these next to the database; a planted symlink would
 * redirect its writes. */
static int check_side_files(const char *path, char *err, size_t errlen)
{
    static const char *const suffix[] = {"-wal", "-shm", "-journal"};
    for (size_t i = 0; i < sizeof suffix / sizeof *suffix; i++) {
        char p[PATH_MAX];
        struct stat st;
        if ((size_t)snprintf(p, sizeof p, "%s%s", path, suffix[i]) >= sizeof p)
            return -1;
        if (lstat(p, &st) == 0 && !S_ISREG(st.st_mode)) {
            snprintf(err, errlen, "%s: not a regular file, refusing it", p);
            return -1;
        }
    }
    return 0;
}

/* SQLite's own checkpoints are PASSIVE: they copy what they can and never
 * wait.  With two mcpauth-as processes writing without pause, some reader
 * always holds an old snapshot, a checkpoint never completes, the WAL never
 * starts over and grows by tens of MB a second (bench/bench_as measured
 * 900 MB in 30 s).  So past WAL_RESTART_FRAMES the committing connection
 * tries a RESTART checkpoint, which waits for the readers and lets the next
 * writer start the WAL from its beginning; journal_size_limit then cuts the
 * file back.  It waits WAL_RESTART_WAIT_MS at most, and tries again only
 * WAL_RESTART_EVERY frames later, so a reader stuck in a transaction (an
 * admin's shell, a stopped process) costs a commit 50 ms now and then,
 * never busy_timeout each.  Below that, SQLite's default behaviour. */
#define WAL_AUTOCHECKPOINT_FRAMES 1000 /* SQLite's default */
#define WAL_RESTART_FRAMES 4000        /* about 16 MB of 4 KiB pages */
#define WAL_RESTART_EVERY 500
#define WAL_RESTART_WAIT_MS 50
#define WAL_SIZE_LIMIT "16777216"
#define BUSY_TIMEOUT_MS 5000

static int wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
    mcpauth_store *s = arg;
    if (frames < s->restart_tried)
        s->restart_tried = 0; /* the WAL started over */
    if (frames >= WAL_RESTART_FRAMES &&
        (s->restart_tried == 0 || frames >= s->restart_tried + WAL_RESTART_EVERY)) {
        s->restart_tried = frames;
        sqlite3_busy_timeout(db, WAL_RESTART_WAIT_MS);
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_RESTART, NULL, NULL);
        sqlite3_busy_timeout(db, s->busy_ms);
    } else if (frames >= WAL_AUTOCHECKPOINT_FRAMES) {
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    }
    return SQLITE_OK; /* a busy checkpoint is tried again later */
}

static int set_pragmas(mcpauth_store *s, const char *path, char *err, size_t errlen)
{
    /* busy_timeout first: switching to WAL may wait for other openers. */
    static const char *const pragmas[] = {"PRAGMA busy_timeout=" STR(BUSY_TIMEOUT_MS),
                                          "PRAGMA foreign_keys=ON",
                                          "PRAGMA synchronous=NORMAL",
                                          "PRAGMA journal_size_limit=" WAL_SIZE_LIMIT};
    for (size_t i = 0; i < sizeof pragmas / sizeof *pragmas; i++)
        if (sqlite3_exec(s->db, pragmas[i], NULL, NULL, NULL) != SQLITE_OK) {
            snprintf(err, errlen, "%s: %s: %s", path, pragmas[i], sqlite3_errmsg(s->db));
            return -1;
        }
    /* journal_mode reports the mode in effect, which may not be the one
     * asked for (a filesystem without shared memory, say). */
    sqlite3_stmt *st = query(s, "PRAGMA journal_mode=WAL", "");
    int ok = st && step(s, st) == SQLITE_ROW && sqlite3_column_text(st, 0) &&
             strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
    done(s, st);
    if (!ok) {
        snprintf(err, errlen, "%s: cannot use WAL journal mode: %s", path, sqlite3_errmsg(s->db));
        return -1;
    }
    sqlite3_wal_hook(s->db, wal_hook, s); /* replaces the automatic checkpoint */
    return 0;
}

static int init_schema(mcpauth_store *s, const char *path, char *err, size_t errlen)
{
    if (begin(s) != 0) {
        snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(s->db));
        return -1;
    }
    sqlite3_stmt *st = query(s, "PRAGMA user_version", "");
    int version = -1;
    if (st && step(s, st) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    done(s, st);
    if (version < 0 || version > SCHEMA_VERSION) {
        if (version > SCHEMA_VERSION)
            snprintf(err, errlen, "%s: schema version %d is newer than this program's (%d)",
                     path, version, SCHEMA_VERSION);
        else
            snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(s->db));
        rollback(s);
        return -1;
    }
    if (sqlite3_exec(s->db, schema_sql, NULL, NULL, NULL) != SQLITE_OK ||
        (version < SCHEMA_VERSION &&
         sqlite3_exec(s->db, "PRAGMA user_version=" STR(SCHEMA_VERSION), NULL, NULL, NULL) !=
             SQLITE_OK) ||
        commit(s) != 0) {
        snprintf(err, errlen, "%s: creating tables: %s", path, sqlite3_errmsg(s->db));
        rollback(s);
        return -1;
    }
    return 0;
}

mcpauth_store *mcpauth__store_open(const char *state_dir, char *err, size_t errlen)
{
    char dummy[1];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    if (!state_dir || !*state_dir) {
        snprintf(err, errlen, "state_dir is not set");
        return NULL;
    }
    struct stat st;
    if (stat(state_dir, &st) != 0) {
        snprintf(err, errlen, "state_dir %s: %s", state_dir, strerror(errno));
        return NULL;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "state_dir %s: not a directory", state_dir);
        return NULL;
    }
    /* Anyone could swap the database for their own. */
    if (st.st_mode & S_IWOTH) {
        snprintf(err, errlen, "state_dir %s: writable by others, refusing it", state_dir);
        return NULL;
    }
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/mcpauth.db", state_dir) >= sizeof path) {
        snprintf(err, errlen, "state_dir %s: path too long", state_dir);
        return NULL;
    }
    if (prepare_file(path, &st, err, errlen) != 0 || check_side_files(path, err, errlen) != 0)
        return NULL;

    mcpauth_store *s = mcpauth__xcalloc(1, sizeof *s);
    s->pid = getpid();
    s->busy_ms = BUSY_TIMEOUT_MS;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX;
#ifdef SQLITE_OPEN_NOFOLLOW
    flags |= SQLITE_OPEN_NOFOLLOW;
#endif
    int rc = sqlite3_open_v2(path, &s->db, flags, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        goto fail;
    }
    /* The file SQLite opened must be the one checked above. */
    struct stat now;
    if (lstat(path, &now) != 0 || !S_ISREG(now.st_mode) || now.st_dev != st.st_dev ||
        now.st_ino != st.st_ino) {
        snprintf(err, errlen, "%s: replaced while opening", path);
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
#ifdef SQLITE_DBCONFIG_DEFENSIVE
    sqlite3_db_config(s->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
#endif
#ifdef SQLITE_DBCONFIG_TRUSTED_SCHEMA
    sqlite3_db_config(s->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
#endif
    if (set_pragmas(s, path, err, errlen) != 0 || init_schema(s, path, err, errlen) != 0)
        goto fail;
    pthread_mutex_init(&s->lock, NULL);
    return s;
fail:
    close_db(s);
    free(s);
    return NULL;
}

void mcpauth__store_close(mcpauth_store *s)
{
    if (!s)
        return;
    /* In a forked child the connection belongs to the parent: closing it
     * here could checkpoint or delete the WAL under the parent. */
    if (s->pid == getpid()) {
        close_db(s);
        pthread_mutex_destroy(&s->lock);
    }
    free(s);
}

const char *mcpauth__store_fault(void)
{
    static _Thread_local char why[192];
    const char *what;
    switch (last_fault & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED: what = "the database is locked by another process"; break;
    case SQLITE_READONLY:
    case SQLITE_PERM: what = "the database or the state directory is read-only"; break;
    case SQLITE_FULL: what = "the disk holding the state directory is full"; break;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: what = "the database file is damaged"; break;
    case SQLITE_IOERR: what = "the database cannot be read or written (read-only or full disk?)"; break;
    case SQLITE_CANTOPEN: what = "the database files cannot be opened"; break;
    default: return NULL;
    }
    snprintf(why, sizeof why, "%s (%s)", what, sqlite3_errstr(last_fault));
    return why;
}

void mcpauth__store_set_busy_timeout(mcpauth_store *s, int ms)
{
    if (enter(s) != 0)
        return;
    s->busy_ms = ms;
    sqlite3_busy_timeout(s->db, ms);
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

static int client_from_row(sqlite3_stmt *st, mcpauth_client *c)
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
    c->created = (time_t)sqlite3_column_int64(st, 8);
    c->secret_expires = (time_t)sqlite3_column_int64(st, 9);
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
    long n = run(s,
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
    sqlite3_stmt *st =
        query(s, "SELECT " CLIENT_COLS " FROM clients WHERE client_id = ?", "s", client_id);
    if (st) {
        int rc = step(s, st);
        if (rc == SQLITE_DONE)
            r = 0;
        else if (rc == SQLITE_ROW)
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
    sqlite3_stmt *st = query(
        s, "SELECT secret_hash, secret_expires FROM clients WHERE client_id = ?", "s", client_id);
    int r = -1;
    if (st) {
        int rc = step(s, st);
        if (rc == SQLITE_DONE) {
            r = 0;
        } else if (rc == SQLITE_ROW) {
            const char *stored = (const char *)sqlite3_column_text(st, 0);
            time_t expires = (time_t)sqlite3_column_int64(st, 1);
            char h[65];
            hash_of(secret ? secret : "", h);
            r = secret && *secret && stored && (expires == 0 || expires > time(NULL)) &&
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
    int rc = SQLITE_ERROR;
    sqlite3_stmt *st =
        query(s, "SELECT " CLIENT_COLS " FROM clients ORDER BY created DESC, rowid DESC", "");
    while (st && (rc = step(s, st)) == SQLITE_ROW) {
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 16;
            v = mcpauth__xrealloc(v, nc * sizeof *v);
            cap = nc;
        }
        if (client_from_row(st, &v[n]) != 0) {
            rc = SQLITE_NOMEM;
            break;
        }
        n++;
    }
    done(s, st);
    leave(s);
    for (size_t i = 0; rc == SQLITE_DONE && i < n; i++)
        if (fn(&v[i], arg))
            break;
    for (size_t i = 0; i < n; i++)
        mcpauth__client_free(&v[i]);
    free(v);
    return rc == SQLITE_DONE ? 0 : -1;
}

int mcpauth__store_registration_allowed(mcpauth_store *s, const char *addr, int limit, long window)
{
    if (!addr || enter(s) != 0)
        return -1;
    time_t now = time(NULL);
    int r = -1;
    if (begin(s) == 0) {
        sqlite3_stmt *st = query(s, "SELECT count(*) FROM registrations WHERE addr = ? AND time > ?",
                                 "st", addr, now - (time_t)window);
        if (st && step(s, st) == SQLITE_ROW) {
            long long count = sqlite3_column_int64(st, 0);
            r = count < limit;
        }
        done(s, st);
        if (r == 1 && run(s, "INSERT INTO registrations(addr, time) VALUES(?, ?)", "st", addr,
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
                "INSERT INTO families(id, revoked, user, client_id, last_used)"
                " VALUES(?, 0, ?, ?, ?)",
                "ssst", g->family, g->user, g->client_id, g->expires) == 1 &&
            run(s,
                "INSERT INTO codes(hash, family, client_id, user, resource, scope, redirect_uri,"
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
    sqlite3_stmt *st = query(s,
                             "SELECT c.client_id, c.user, c.resource, c.scope, c.redirect_uri,"
                             " c.code_challenge, c.family, c.expires, c.used, f.revoked"
                             " FROM codes c JOIN families f ON f.id = c.family WHERE c.hash = ?",
                             "s", h);
    int rc = st ? step(s, st) : SQLITE_ERROR;
    if (rc == SQLITE_DONE) {
        r = MCPAUTH_REDEEM_UNKNOWN;
    } else if (rc == SQLITE_ROW) {
        tmp->client_id = col_dup(st, 0);
        tmp->user = col_dup(st, 1);
        tmp->resource = col_dup(st, 2);
        tmp->scope = col_dup(st, 3);
        tmp->redirect_uri = col_dup(st, 4);
        tmp->code_challenge = col_dup(st, 5);
        tmp->family = col_dup(st, 6);
        tmp->expires = (time_t)sqlite3_column_int64(st, 7);
        int used = sqlite3_column_int(st, 8), revoked = sqlite3_column_int(st, 9);
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
                 run(s, "UPDATE families SET last_used = max(last_used, ?) WHERE id = ?", "ts",
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
    sqlite3_stmt *st = query(s,
                             "SELECT c.client_id, c.user, c.resource, c.scope, c.redirect_uri,"
                             " c.code_challenge, c.family, c.expires"
                             " FROM codes c JOIN families f ON f.id = c.family WHERE c.hash = ?"
                             " AND c.used = 0 AND c.expires > ? AND f.revoked = 0",
                             "st", h, now);
    int rc = st ? step(s, st) : SQLITE_ERROR;
    if (rc == SQLITE_DONE) {
        r = 0;
    } else if (rc == SQLITE_ROW) {
        g->client_id = col_dup(st, 0);
        g->user = col_dup(st, 1);
        g->resource = col_dup(st, 2);
        g->scope = col_dup(st, 3);
        g->redirect_uri = col_dup(st, 4);
        g->code_challenge = col_dup(st, 5);
        g->family = col_dup(st, 6);
        g->expires = (time_t)sqlite3_column_int64(st, 7);
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
               "INSERT INTO refresh(hash, family, client_id, user, resource, scope, expires)"
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
                "INSERT OR IGNORE INTO families(id, revoked, user, client_id, last_used)"
                " VALUES(?, 0, ?, ?, ?)",
                "ssst", g->family, g->user, g->client_id, g->expires) >= 0) {
            sqlite3_stmt *st = query(s,
                                     "SELECT 1 FROM families WHERE id = ? AND user = ?"
                                     " AND client_id = ?",
                                     "sss", g->family, g->user, g->client_id);
            same = st && step(s, st) == SQLITE_ROW;
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

mcpauth_rotate mcpauth__store_refresh_rotate(mcpauth_store *s, const char *token,
                                            const char *new_token, time_t now, long grace,
                                            time_t new_expires, mcpauth_grant *g)
{
    if (g)
        memset(g, 0, sizeof *g);
    if (enter(s) != 0)
        return MCPAUTH_ROTATE_ERROR;
    if (!token || (new_token && !*new_token)) {
        leave(s);
        return !token ? MCPAUTH_ROTATE_UNKNOWN : MCPAUTH_ROTATE_ERROR;
    }
    char h[65], nh[65];
    hash_of(token, h);
    if (new_token)
        hash_of(new_token, nh);
    mcpauth_rotate r = MCPAUTH_ROTATE_ERROR;
    mcpauth_grant tmp = {0};
    if (begin(s) != 0)
        goto out;
    sqlite3_stmt *st = query(s,
                             "SELECT r.family, r.client_id, r.user, r.resource, r.scope,"
                             " r.expires, r.retired_at, r.grace_used, f.revoked"
                             " FROM refresh r JOIN families f ON f.id = r.family"
                             " WHERE r.hash = ?",
                             "s", h);
    int rc = st ? step(s, st) : SQLITE_ERROR;
    if (rc == SQLITE_DONE) {
        r = MCPAUTH_ROTATE_UNKNOWN;
    } else if (rc == SQLITE_ROW) {
        tmp.family = col_dup(st, 0);
        tmp.client_id = col_dup(st, 1);
        tmp.user = col_dup(st, 2);
        tmp.resource = col_dup(st, 3);
        tmp.scope = col_dup(st, 4);
        tmp.expires = (time_t)sqlite3_column_int64(st, 5);
        int retired = sqlite3_column_type(st, 6) != SQLITE_NULL;
        time_t retired_at = (time_t)sqlite3_column_int64(st, 6);
        int grace_used = sqlite3_column_int(st, 7), revoked = sqlite3_column_int(st, 8);
        if (!tmp.family || !tmp.client_id || !tmp.user) {
            r = MCPAUTH_ROTATE_ERROR;
        } else if (revoked || tmp.expires <= now) {
            r = MCPAUTH_ROTATE_UNKNOWN;
        } else if (!retired) {
            if (!new_token ||
                (run(s, "UPDATE refresh SET retired_at = ? WHERE hash = ?", "ts", now, h) == 1 &&
                 insert_refresh(s, nh, &tmp, new_expires) == 1))
                r = MCPAUTH_ROTATE_OK;
        } else if (grace > 0 && now - retired_at < (time_t)grace && !grace_used) {
            /* Two refreshes raced (or the response was lost): the loser
             * gets its own live token, once; the token's grace is spent. */
            if (run(s, "UPDATE refresh SET grace_used = 1 WHERE hash = ?", "s", h) == 1 &&
                (!new_token || insert_refresh(s, nh, &tmp, new_expires) == 1))
                r = MCPAUTH_ROTATE_OK;
        } else {
            r = run(s, "UPDATE families SET revoked = 1 WHERE id = ?", "s", tmp.family) < 0
                    ? MCPAUTH_ROTATE_ERROR
                    : MCPAUTH_ROTATE_REUSED;
        }
        if (r == MCPAUTH_ROTATE_OK) {
            if (new_token)
                tmp.expires = new_expires;
            if (run(s, "UPDATE families SET last_used = max(last_used, ?) WHERE id = ?", "ts",
                    now, tmp.family) != 1)
                r = MCPAUTH_ROTATE_ERROR;
        }
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
    sqlite3_stmt *st = query(s,
                             retired_too
                                 ? "SELECT r.family, r.client_id, r.user, r.resource, r.scope,"
                                   " r.expires FROM refresh r JOIN families f ON f.id = r.family"
                                   " WHERE r.hash = ? AND r.expires > ? AND f.revoked = 0"
                                 : "SELECT r.family, r.client_id, r.user, r.resource, r.scope,"
                                   " r.expires FROM refresh r JOIN families f ON f.id = r.family"
                                   " WHERE r.hash = ? AND r.retired_at IS NULL AND r.expires > ?"
                                   " AND f.revoked = 0",
                             "st", h, now);
    int rc = st ? step(s, st) : SQLITE_ERROR;
    if (rc == SQLITE_DONE) {
        r = 0;
    } else if (rc == SQLITE_ROW) {
        r = 1;
        if (g) {
            g->family = col_dup(st, 0);
            g->client_id = col_dup(st, 1);
            g->user = col_dup(st, 2);
            g->resource = col_dup(st, 3);
            g->scope = col_dup(st, 4);
            g->expires = (time_t)sqlite3_column_int64(st, 5);
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
    long n = run(s,
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
    long n = run(s, "UPDATE families SET revoked = 1 WHERE revoked = 0 AND user = ?", "s", user);
    leave(s);
    return (int)n;
}

int mcpauth__store_revoke_client(mcpauth_store *s, const char *client_id)
{
    if (!client_id || enter(s) != 0)
        return -1;
    long n = run(s, "UPDATE families SET revoked = 1 WHERE revoked = 0 AND client_id = ?", "s",
                 client_id);
    leave(s);
    return (int)n;
}

/* By id, as carried in access tokens (their "sid"); unknown → 0. */
int mcpauth__store_revoke_family(mcpauth_store *s, const char *family)
{
    if (!family || enter(s) != 0)
        return -1;
    long n = run(s, "UPDATE families SET revoked = 1 WHERE revoked = 0 AND id = ?", "s", family);
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
    sqlite3_stmt *st = query(s, "SELECT revoked FROM families WHERE id = ?", "s", family);
    int rc = st ? step(s, st) : SQLITE_ERROR;
    if (rc == SQLITE_DONE)
        r = 1;
    else if (rc == SQLITE_ROW)
        r = sqlite3_column_int(st, 0) != 0;
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
        sqlite3_stmt *st = query(s, "SELECT revoked FROM families WHERE id = ?", "s", family);
        int rc = st ? step(s, st) : SQLITE_ERROR;
        if (rc == SQLITE_DONE)
            r = 0;
        else if (rc == SQLITE_ROW)
            r = sqlite3_column_int(st, 0) ? 0 : 1;
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
    int rc = SQLITE_ERROR;
    /* revoked, or gone (deleted client, purged): fail closed */
    sqlite3_stmt *st = query(s,
                             "SELECT hash, expires FROM access WHERE pushed = 0 AND expires > ?"
                             " AND NOT EXISTS (SELECT 1 FROM families f"
                             "  WHERE f.id = access.family AND f.revoked = 0)",
                             "t", now);
    while (st && (rc = step(s, st)) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        if (!t || strlen((const char *)t) != 64)
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            v = mcpauth__xrealloc(v, cap * sizeof *v);
        }
        memcpy(v[n].hash, t, 65);
        v[n++].expires = (time_t)sqlite3_column_int64(st, 1);
    }
    done(s, st);
    leave(s);
    long taken = rc == SQLITE_DONE ? 0 : -1;
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
    long n = run(s, "INSERT OR IGNORE INTO consent_forms(hash, expires) VALUES(?, ?)", "st", h,
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
    sqlite3_stmt *st = query(s,
                             "SELECT scope FROM consents WHERE user = ? AND client_id = ?"
                             " AND resource = ?",
                             "sss", user, client_id, or_empty(resource));
    int rc = st ? step(s, st) : SQLITE_ERROR, r = -1;
    if (rc == SQLITE_DONE) {
        r = 0;
    } else if (rc == SQLITE_ROW) {
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
                "INSERT INTO consents(user, client_id, resource, scope) VALUES(?, ?, ?, ?)"
                " ON CONFLICT(user, client_id, resource) DO UPDATE SET scope = excluded.scope",
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
    memset(k, 0, sizeof *k);
}

int mcpauth__store_key_add(mcpauth_store *s, const mcpauth_keyinfo *k)
{
    if (!k || !k->kid || !*k->kid || !k->alg || !k->file || enter(s) != 0)
        return -1;
    long n = run(s, "INSERT INTO keys(kid, alg, file, created, retired) VALUES(?, ?, ?, ?, ?)",
                 "ssstt", k->kid, k->alg, k->file, k->created ? k->created : time(NULL),
                 k->retired);
    leave(s);
    return n == 1 ? 0 : -1;
}

/* Returns how many keys were retired. */
int mcpauth__store_key_retire_all(mcpauth_store *s, time_t now)
{
    if (enter(s) != 0)
        return -1;
    long n = run(s, "UPDATE keys SET retired = ? WHERE retired = 0", "t", now);
    leave(s);
    return (int)n;
}

/* Like client_list: rows copied out, fn called unlocked; 0 or -1. */
int mcpauth__store_key_list(mcpauth_store *s, time_t since,
                           int (*fn)(const mcpauth_keyinfo *, void *), void *arg)
{
    if (!fn || enter(s) != 0)
        return -1;
    mcpauth_keyinfo *v = NULL;
    size_t n = 0, cap = 0;
    int rc = SQLITE_ERROR;
    sqlite3_stmt *st = query(s,
                             "SELECT kid, alg, file, created, retired FROM keys"
                             " WHERE retired = 0 OR retired > ? ORDER BY created DESC, rowid DESC",
                             "t", since);
    while (st && (rc = step(s, st)) == SQLITE_ROW) {
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 8;
            v = mcpauth__xrealloc(v, nc * sizeof *v);
            cap = nc;
        }
        mcpauth_keyinfo *k = &v[n++];
        k->kid = col_dup(st, 0);
        k->alg = col_dup(st, 1);
        k->file = col_dup(st, 2);
        k->created = (time_t)sqlite3_column_int64(st, 3);
        k->retired = (time_t)sqlite3_column_int64(st, 4);
    }
    done(s, st);
    leave(s);
    for (size_t i = 0; rc == SQLITE_DONE && i < n; i++)
        if (fn(&v[i], arg))
            break;
    for (size_t i = 0; i < n; i++)
        mcpauth__keyinfo_free(&v[i]);
    free(v);
    return rc == SQLITE_DONE ? 0 : -1;
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
        n[4] = run(s, "DELETE FROM registrations WHERE time <= ?", "t",
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
