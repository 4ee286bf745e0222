/* SQLite engine of the store (db.h): state_dir/mcpauth.db in WAL mode,
 * shared by every process on the host.  begin_write is BEGIN IMMEDIATE, so
 * the write lock is taken before the check and racing processes queue on
 * the busy timeout instead of both seeing the old state. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <sqlite3.h>

#include "alloc.h"
#include "db.h"

#define STR_(x) #x
#define STR(x) STR_(x)

/* Statements are prepared once per connection and kept: SQLite's parser
 * and planner were a visible share of the token endpoint's time (bench/
 * bench_as).  Keyed by the SQL text's address (every caller passes a
 * literal). */
#define STMT_CACHE 64

typedef struct sq_db sq_db;
static const mcpauth_db_engine sqlite_engine;

struct mcpauth_db_stmt {
    const mcpauth_db_engine *e; /* db.h: first */
    sqlite3_stmt *st;
    sq_db *db;
    int cached;
};

struct sq_db {
    mcpauth_db base;
    sqlite3 *db;
    int restart_tried; /* WAL frames at the last RESTART checkpoint tried */
    int busy_ms;       /* busy timeout (BUSY_TIMEOUT_MS; tests lower it) */
    int fault;         /* first SQLite error of the current call */
    struct {
        const char *sql;
        mcpauth_db_stmt st;
    } stmts[STMT_CACHE];
};

static int note(sq_db *d, int rc)
{
    if (rc != SQLITE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE && !d->fault)
        d->fault = rc;
    return rc;
}

static void sq_call_begin(mcpauth_db *db)
{
    ((sq_db *)db)->fault = 0;
}

static void sq_call_end(mcpauth_db *db)
{
    sq_db *d = (sq_db *)db;
    /* pages read from a damaged file stay cached while the WAL does not
     * change: drop them, so a repaired file is read afresh */
    int f = d->fault & 0xff;
    if (f == SQLITE_CORRUPT || f == SQLITE_NOTADB || f == SQLITE_IOERR)
        sqlite3_db_release_memory(d->db);
}

static const char *sq_fault(mcpauth_db *db, char *buf, size_t len)
{
    int fault = ((sq_db *)db)->fault;
    const char *what;
    switch (fault & 0xff) {
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
    snprintf(buf, len, "%s (%s)", what, sqlite3_errstr(fault));
    return buf;
}

static mcpauth_db_stmt *sq_prepare(mcpauth_db *db, const char *sql, const char *types)
{
    (void)types;
    sq_db *d = (sq_db *)db;
    size_t i;
    for (i = 0; i < STMT_CACHE && d->stmts[i].sql; i++)
        if (d->stmts[i].sql == sql)
            return &d->stmts[i].st;
    sqlite3_stmt *st = NULL;
    if (note(d, sqlite3_prepare_v3(d->db, sql, -1, i < STMT_CACHE ? SQLITE_PREPARE_PERSISTENT : 0,
                                   &st, NULL)) != SQLITE_OK)
        return NULL;
    if (i < STMT_CACHE) {
        d->stmts[i].sql = sql;
        d->stmts[i].st = (mcpauth_db_stmt){&sqlite_engine, st, d, 1};
        return &d->stmts[i].st;
    }
    mcpauth_db_stmt *s = mcpauth__xcalloc(1, sizeof *s);
    *s = (mcpauth_db_stmt){&sqlite_engine, st, d, 0};
    return s;
}

/* A count that does not match the SQL's parameters is refused (an
 * unbound one would be NULL). */
static int sq_bind(mcpauth_db_stmt *s, const char *types, va_list ap)
{
    sqlite3_stmt *st = s->st;
    if (strlen(types) != (size_t)sqlite3_bind_parameter_count(st))
        return -1;
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
    return note(s->db, rc) == SQLITE_OK ? 0 : -1;
}

static int sq_step(mcpauth_db_stmt *s)
{
    int rc = note(s->db, sqlite3_step(s->st));
    return rc == SQLITE_ROW ? MCPAUTH_DB_ROW : rc == SQLITE_DONE ? MCPAUTH_DB_DONE : MCPAUTH_DB_ERROR;
}

/* Reset also ends the read transaction a SELECT holds, so the WAL can
 * start over. */
static void sq_done(mcpauth_db_stmt *s)
{
    if (!s)
        return;
    if (s->cached) {
        sqlite3_reset(s->st);
        sqlite3_clear_bindings(s->st);
        return;
    }
    sqlite3_finalize(s->st);
    free(s);
}

static int sq_is_null(mcpauth_db_stmt *s, int col)
{
    return sqlite3_column_type(s->st, col) == SQLITE_NULL;
}

/* NULL only for SQL NULL: sqlite3_column_text's NULL for anything else
 * is out of memory, which aborts (alloc.h). */
static const char *sq_text(mcpauth_db_stmt *s, int col)
{
    if (sqlite3_column_type(s->st, col) == SQLITE_NULL)
        return NULL;
    return mcpauth__check((void *)sqlite3_column_text(s->st, col), "sqlite3_column_text");
}

static long long sq_int64(mcpauth_db_stmt *s, int col)
{
    return sqlite3_column_int64(s->st, col);
}

static long sq_changes(mcpauth_db *db)
{
    return (long)sqlite3_changes(((sq_db *)db)->db);
}

static int sq_exec(mcpauth_db *db, const char *sql)
{
    sq_db *d = (sq_db *)db;
    return note(d, sqlite3_exec(d->db, sql, NULL, NULL, NULL)) == SQLITE_OK ? 0 : -1;
}

/* IMMEDIATE: take the write lock before reading, so no other process can
 * change what we are about to check. */
static int sq_begin_write(mcpauth_db *db)
{
    return sq_exec(db, "BEGIN IMMEDIATE");
}

static void sq_rollback(mcpauth_db *db)
{
    sq_db *d = (sq_db *)db;
    if (!sqlite3_get_autocommit(d->db))
        sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
}

static int sq_commit(mcpauth_db *db)
{
    if (sq_exec(db, "COMMIT") == 0)
        return 0;
    sq_rollback(db);
    return -1;
}

static void sq_set_busy_timeout(mcpauth_db *db, int ms)
{
    sq_db *d = (sq_db *)db;
    d->busy_ms = ms;
    sqlite3_busy_timeout(d->db, ms);
}

static int sq_legacy_version(mcpauth_db *db)
{
    sq_db *d = (sq_db *)db;
    sqlite3_stmt *st = NULL;
    int v = 0;
    if (sqlite3_prepare_v2(d->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* sqlite3_close refuses a connection with statements left.  In a forked
 * child the connection belongs to the parent: closing it there could
 * checkpoint or delete the WAL under the parent. */
static void sq_close(mcpauth_db *db, int owner)
{
    sq_db *d = (sq_db *)db;
    if (!d)
        return;
    if (owner) {
        for (size_t i = 0; i < STMT_CACHE && d->stmts[i].sql; i++)
            sqlite3_finalize(d->stmts[i].st.st);
        sqlite3_close(d->db);
    }
    free(d);
}

static const mcpauth_db_engine sqlite_engine = {
    "sqlite", 0, sq_call_begin, sq_call_end, sq_fault, sq_prepare, sq_bind, sq_step, sq_done,
    sq_is_null, sq_text, sq_int64, sq_changes, sq_exec, sq_begin_write, sq_commit, sq_rollback,
    sq_set_busy_timeout, sq_legacy_version, sq_close,
};

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
    sq_db *s = arg;
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

static int set_pragmas(sq_db *s, const char *path, char *err, size_t errlen)
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
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode=WAL", -1, &st, NULL) == SQLITE_OK &&
             sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) &&
             strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
    sqlite3_finalize(st);
    if (!ok) {
        snprintf(err, errlen, "%s: cannot use WAL journal mode: %s", path, sqlite3_errmsg(s->db));
        return -1;
    }
    sqlite3_wal_hook(s->db, wal_hook, s); /* replaces the automatic checkpoint */
    return 0;
}

mcpauth_db *mcpauth__db_sqlite_open(const char *state_dir, char *err, size_t errlen)
{
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

    sq_db *s = mcpauth__xcalloc(1, sizeof *s);
    s->base.e = &sqlite_engine;
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
    if (set_pragmas(s, path, err, errlen) != 0)
        goto fail;
    return &s->base;
fail:
    sq_close(&s->base, 1);
    return NULL;
}

int mcpauth__db_is_pg(const char *store)
{
    if (!store || !*store || strcmp(store, "sqlite") == 0)
        return 0;
    return 1; /* config.c accepted it: a URI or a conninfo */
}
