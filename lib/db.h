/* The database engines behind the authorization server's store (not
 * installed): SQLite in state_dir (db_sqlite.c) and PostgreSQL through
 * libpq (db_pg.c), one interface, so lib/store.c holds all the logic and
 * every SQL text once.  SQL is written with `?` (or `?N`) placeholders;
 * the PostgreSQL engine rewrites them to `$n` once, when it first prepares
 * a text.  Not thread safe: the store serialises use of a connection. */
#ifndef MCPAUTH_DB_H
#define MCPAUTH_DB_H

#include <stdarg.h>
#include <stddef.h>

typedef struct mcpauth_db mcpauth_db;
typedef struct mcpauth_db_stmt mcpauth_db_stmt;

/* step() results */
#define MCPAUTH_DB_ERROR (-1)
#define MCPAUTH_DB_DONE 0
#define MCPAUTH_DB_ROW 1

typedef struct mcpauth_db_engine {
    const char *name; /* "sqlite" or "postgresql" */
    /* The state is seen by other hosts: keys and the secret live in the
     * database rather than in state_dir. */
    int shared;
    /* Around every store call: call_begin forgets the last call's fault
     * (and may reconnect), call_end ends the call. */
    void (*call_begin)(mcpauth_db *db);
    void (*call_end)(mcpauth_db *db);
    /* A phrase for the first environment fault of the current call
     * (locked, unreachable, read-only, full, damaged) written to buf, or
     * NULL when there was none (a refusal is not a fault). */
    const char *(*fault)(mcpauth_db *db, char *buf, size_t len);
    /* The statement for sql, kept per connection by the text's address
     * (callers pass literals); types is its parameters' type string ("s"
     * text or NULL, "t" time_t, "i" int, "l" long).  NULL on error. */
    mcpauth_db_stmt *(*prepare)(mcpauth_db *db, const char *sql, const char *types);
    /* Binds the va_list per types; the strings must outlive the statement's
     * use.  0 or -1 (a count that does not match the SQL's parameters). */
    int (*bind)(mcpauth_db_stmt *st, const char *types, va_list ap);
    /* MCPAUTH_DB_ROW (columns readable), _DONE or _ERROR. */
    int (*step)(mcpauth_db_stmt *st);
    /* Gives a statement back: reset and unbound (NULL is fine). */
    void (*done)(mcpauth_db_stmt *st);
    int (*is_null)(mcpauth_db_stmt *st, int col);
    /* NULL for SQL NULL; valid until the next step or done. */
    const char *(*text)(mcpauth_db_stmt *st, int col);
    long long (*int64)(mcpauth_db_stmt *st, int col);
    /* Rows changed by the last statement stepped to its end. */
    long (*changes)(mcpauth_db *db);
    /* Runs SQL without parameters or rows (several statements allowed). */
    int (*exec)(mcpauth_db *db, const char *sql);
    /* A transaction that checks and then writes: no other writer, on any
     * host, runs until commit or rollback.  0 or -1. */
    int (*begin_write)(mcpauth_db *db);
    int (*commit)(mcpauth_db *db);     /* 0, or -1 (the transaction is then rolled back) */
    void (*rollback)(mcpauth_db *db);  /* harmless outside a transaction */
    /* How long begin_write waits for another writer. */
    void (*set_busy_timeout)(mcpauth_db *db, int ms);
    /* The schema version an older program recorded its own way (SQLite's
     * user_version), 0 when none. */
    int (*legacy_version)(mcpauth_db *db);
    /* Frees the handle; owner 0 (a forked child): the connection belongs
     * to the parent, release memory only, never talk to the server. */
    void (*close)(mcpauth_db *db, int owner);
} mcpauth_db_engine;

struct mcpauth_db {
    const mcpauth_db_engine *e;
};

/* Every engine's statement starts with its engine, so column getters can
 * be called with the statement alone. */
typedef struct mcpauth_db_stmt_head {
    const mcpauth_db_engine *e;
} mcpauth_db_stmt_head;

/* 1 when the store setting names PostgreSQL (a postgres:// or
 * postgresql:// URI, or a key=value conninfo), 0 for NULL, "" or
 * "sqlite". */
int mcpauth__db_is_pg(const char *store);

/* state_dir/mcpauth.db: created 0600 when absent; symlinks and
 * non-regular files refused; WAL mode.  NULL with err. */
mcpauth_db *mcpauth__db_sqlite_open(const char *state_dir, char *err, size_t errlen);
/* A libpq connection (conninfo as given; what it leaves out defaults to
 * connect_timeout 5 s, tcp_user_timeout 10 s, keepalives 30/5/3 and
 * statement_timeout 10 s, merged into its options).
 * NULL with err when it cannot connect or libpq is not built in. */
mcpauth_db *mcpauth__db_pg_open(const char *conninfo, char *err, size_t errlen);
/* The statement_timeout (ms) connections get when the admin's options
 * do not set one; tests lower it before opening. */
extern int mcpauth__db_pg_statement_timeout_ms;
/* 1 when the server conninfo names does not answer now (PQping, with the
 * defaults of a connection: nothing listens, no reply within the connect
 * timeout, or it refuses connections while starting or stopping), a state
 * that passes by itself; 0 when it answers (a connection that failed then
 * failed on the settings: user, password, database, TLS) or conninfo is
 * unusable. */
int mcpauth__db_pg_unreachable(const char *conninfo);

#endif
