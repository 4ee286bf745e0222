/* PostgreSQL engine of the store (db.h), through libpq.  One connection
 * per store handle (the store's mutex serialises it; never used across
 * fork).  Statements are prepared once per connection, their `?`
 * placeholders rewritten to `$n`.
 *
 * Writers: begin_write is BEGIN followed by pg_advisory_xact_lock on one
 * fixed key.  Every transaction that checks and then writes takes it, so
 * they run one after another across all hosts, exactly like SQLite's
 * BEGIN IMMEDIATE on one host: the check always sees what the previous
 * writer committed, READ COMMITTED suffices, and no serialization failure
 * (40001) or deadlock can occur and reach a client.  Reads take no lock.
 * The lock is released by COMMIT or ROLLBACK, or by the server when the
 * connection dies, so a crashed host never holds it.
 *
 * Connection loss: a call that fails on a broken connection reports a
 * fault (503 upstream; its transaction was rolled back by the server) and
 * drops the connection; the next call connects again.  When the very first
 * command of a call meets a dead connection (the server restarted while
 * we were idle), nothing of the call has reached the server, so the call
 * reconnects and goes on: clients see 503 only during the outage. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "db.h"

#ifdef HAVE_LIBPQ

#include <libpq-fe.h>

/* The advisory lock all writers take ("mcpauth" in ASCII, as a bigint). */
#define WRITE_LOCK_KEY "30790106784035944"
#define BUSY_TIMEOUT_MS 5000
#define OID_INT4 23
#define OID_INT8 20
#define OID_TEXT 25
#define MAX_PARAMS 32

typedef struct pg_db pg_db;
static const mcpauth_db_engine pg_engine;

struct mcpauth_db_stmt {
    const mcpauth_db_engine *e; /* db.h: first */
    pg_db *db;
    const char *sql;    /* the caller's text (cache key) */
    char *pgsql;        /* with $n */
    char name[16];
    int nparams;
    Oid oids[MAX_PARAMS];
    unsigned gen;       /* connection generation it was prepared on (0: never) */
    const char *vals[MAX_PARAMS];
    char num[MAX_PARAMS][24];
    PGresult *res;
    int row, nrows;
    int executed;
};

typedef enum { F_NONE = 0, F_CONN, F_STATE } fault_kind;

struct pg_db {
    mcpauth_db base;
    PGconn *conn;
    char *conninfo;
    unsigned gen;       /* bumped on every new connection */
    int sent;           /* commands that reached the server in this call */
    /* The connection failed in this call: every later command of the call
     * fails at once, never on a new connection (which would run the rest
     * of a transaction outside it, unlocked) and never waiting for another
     * connect timeout. */
    int broken;
    int in_tx;
    int busy_ms;
    long changes;
    fault_kind fault;
    char sqlstate[6];
    char msg[200];
    mcpauth_db_stmt **stmts;
    size_t nstmts, cap;
};

/* ---------------------------------------------------------------- faults */

static void first_line(char *out, size_t len, const char *msg)
{
    if (!msg)
        msg = "";
    size_t n = strcspn(msg, "\n");
    snprintf(out, len, "%.*s", (int)n, msg);
}

static void set_conn_fault(pg_db *d, const char *msg)
{
    if (d->fault)
        return;
    d->fault = F_CONN;
    first_line(d->msg, sizeof d->msg, msg);
}

/* SQLSTATE classes of the environment: the server going away or busy,
 * out of resources, read-only, broken. */
static int state_is_fault(const char *s)
{
    static const char *const classes[] = {"08", "53", "54", "57", "58", "XX", "40"};
    for (size_t i = 0; i < sizeof classes / sizeof *classes; i++)
        if (strncmp(s, classes[i], 2) == 0)
            return 1;
    return strcmp(s, "55P03") == 0 || strcmp(s, "25006") == 0;
}

static void note_result(pg_db *d, const PGresult *res)
{
    const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (d->fault || !st || !state_is_fault(st))
        return;
    d->fault = F_STATE;
    snprintf(d->sqlstate, sizeof d->sqlstate, "%s", st);
    first_line(d->msg, sizeof d->msg, PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
}

static const char *pg_fault(mcpauth_db *db, char *buf, size_t len)
{
    pg_db *d = (pg_db *)db;
    const char *what;
    if (d->fault == F_NONE)
        return NULL;
    if (d->fault == F_CONN)
        what = "the PostgreSQL server cannot be reached";
    else if (strcmp(d->sqlstate, "55P03") == 0 || strcmp(d->sqlstate, "57014") == 0 ||
             strncmp(d->sqlstate, "40", 2) == 0)
        what = "the database is busy (lock wait timed out)";
    else if (strcmp(d->sqlstate, "25006") == 0)
        what = "the PostgreSQL server is read-only (a standby?)";
    else if (strncmp(d->sqlstate, "53", 2) == 0 || strncmp(d->sqlstate, "54", 2) == 0)
        what = "the PostgreSQL server is out of resources (disk full, too many connections?)";
    else if (strncmp(d->sqlstate, "57", 2) == 0 || strncmp(d->sqlstate, "08", 2) == 0)
        what = "the PostgreSQL server is shutting down or restarting";
    else if (strncmp(d->sqlstate, "XX", 2) == 0)
        what = "the PostgreSQL database is damaged";
    else
        what = "the PostgreSQL server failed (I/O error?)";
    snprintf(buf, len, "%s (%s%s%s)", what, d->fault == F_STATE ? d->sqlstate : "",
             d->fault == F_STATE ? ": " : "", d->msg);
    return buf;
}

/* ------------------------------------------------------------ connection */

static void drop_conn(pg_db *d)
{
    if (d->conn)
        PQfinish(d->conn);
    d->conn = NULL;
    d->in_tx = 0;
}

static int apply_timeout(pg_db *d)
{
    char sql[64];
    snprintf(sql, sizeof sql, "SET lock_timeout = %d", d->busy_ms);
    PGresult *r = PQexec(d->conn, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok ? 0 : -1;
}

static void quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* Bounds every call, not only the connect (S5: the store lock is held
 * while a call waits): lowered by tests. */
int mcpauth__db_pg_statement_timeout_ms = 10000;

#define CONNINFO_INVALID "the store setting is not a valid libpq connection string"

/* The admin's settings (a URI or key=value text) with our defaults for
 * those it leaves out: a dead host, a hung backend or a network that drops
 * packets silently then fails a call within seconds instead of holding
 * the store lock (and every AS thread) for the kernel's ~15 minutes.
 * libpq's parse errors can quote the text (a password), so they are not
 * passed on.  The connection, or NULL with err. */
static PGconn *connect_params(const char *conninfo, char *err, size_t errlen)
{
    PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
    if (!opts) {
        snprintf(err, errlen, "%s", CONNINFO_INVALID);
        return NULL;
    }
    size_t n = 0;
    for (PQconninfoOption *o = opts; o->keyword; o++)
        n++;
    const char **keys = mcpauth__xcalloc(n + 8, sizeof *keys);
    const char **vals = mcpauth__xcalloc(n + 8, sizeof *vals);
    size_t k = 0;
    int have_connect = getenv("PGCONNECT_TIMEOUT") != NULL, have_app = 0, have_tcp = 0;
    int have_idle = 0, have_intvl = 0, have_count = 0;
    const char *options = NULL;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val)
            continue;
        if (strcmp(o->keyword, "options") == 0) {
            options = o->val; /* merged below */
            continue;
        }
        have_connect |= strcmp(o->keyword, "connect_timeout") == 0;
        have_app |= strcmp(o->keyword, "application_name") == 0;
        have_tcp |= strcmp(o->keyword, "tcp_user_timeout") == 0;
        have_idle |= strcmp(o->keyword, "keepalives_idle") == 0;
        have_intvl |= strcmp(o->keyword, "keepalives_interval") == 0;
        have_count |= strcmp(o->keyword, "keepalives_count") == 0;
        keys[k] = o->keyword;
        vals[k++] = o->val;
    }
#define DEFAULT(have, key, val) \
    do { if (!(have)) { keys[k] = key; vals[k++] = val; } } while (0)
    DEFAULT(have_connect, "connect_timeout", "5");
    DEFAULT(have_app, "application_name", "mcpauth");
    /* unacknowledged data; libpq 12 and later know the setting */
    DEFAULT(have_tcp || PQlibVersion() < 120000, "tcp_user_timeout", "10000");
    DEFAULT(have_idle, "keepalives_idle", "30");
    DEFAULT(have_intvl, "keepalives_interval", "5");
    DEFAULT(have_count, "keepalives_count", "3");
#undef DEFAULT
    /* statement_timeout, unless the admin's options (or PGOPTIONS, which
     * an options setting would otherwise replace) set it */
    if (!options)
        options = getenv("PGOPTIONS");
    char *merged = NULL;
    if (!options || !strstr(options, "statement_timeout")) {
        size_t len = (options ? strlen(options) : 0) + 64;
        merged = mcpauth__xmalloc(len);
        snprintf(merged, len, "%s%s-c statement_timeout=%d", options ? options : "",
                 options && *options ? " " : "", mcpauth__db_pg_statement_timeout_ms);
        options = merged;
    }
    keys[k] = "options";
    vals[k++] = options;
    keys[k] = NULL;
    vals[k] = NULL;
    PGconn *c = PQconnectdbParams(keys, vals, 0);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        /* a connection failure: libpq names host, port, user, never the
         * password */
        char line[200];
        first_line(line, sizeof line, c ? PQerrorMessage(c) : "out of memory");
        snprintf(err, errlen, "%s", line);
        if (c)
            PQfinish(c);
        c = NULL;
    }
    free(merged);
    free(keys);
    free(vals);
    PQconninfoFree(opts);
    return c;
}

static int connect_now(pg_db *d, char *err, size_t errlen)
{
    char line[200];
    PGconn *c = connect_params(d->conninfo, line, sizeof line);
    if (!c) {
        if (err)
            snprintf(err, errlen, "PostgreSQL: %s", line);
        set_conn_fault(d, line);
        return -1;
    }
    PQsetNoticeProcessor(c, quiet, NULL); /* "already exists, skipping" and such */
    d->conn = c;
    d->gen++;
    d->in_tx = 0;
    if (apply_timeout(d) < 0) {
        first_line(line, sizeof line, PQerrorMessage(c));
        if (err)
            snprintf(err, errlen, "PostgreSQL: %s", line);
        set_conn_fault(d, line);
        drop_conn(d);
        return -1;
    }
    return 0;
}

static void pg_call_begin(mcpauth_db *db)
{
    pg_db *d = (pg_db *)db;
    d->fault = F_NONE;
    d->sent = 0;
    d->broken = 0;
    /* libpq noticed the loss on its own: start afresh now */
    if (d->conn && PQstatus(d->conn) != CONNECTION_OK)
        drop_conn(d);
}

static void pg_call_end(mcpauth_db *db)
{
    (void)db;
}

/* One command: a prepared statement (st) or plain SQL.  Reconnects when
 * the connection is gone and nothing of this call has reached the server
 * yet; otherwise a broken connection is a fault and is dropped. */
static PGresult *roundtrip(pg_db *d, mcpauth_db_stmt *st, const char *sql)
{
    for (int attempt = 0;; attempt++) {
        if (d->broken)
            return NULL;
        if (!d->conn && (d->sent > 0 || connect_now(d, NULL, 0) < 0)) {
            d->broken = 1;
            return NULL;
        }
        PGresult *res = NULL;
        if (st && st->gen != d->gen) {
            res = PQprepare(d->conn, st->name, st->pgsql, st->nparams, st->oids);
            if (PQresultStatus(res) == PGRES_COMMAND_OK) {
                st->gen = d->gen;
                PQclear(res);
                res = NULL;
            } else if (!res) {
                /* out of memory or the connection gone: never execute an
                 * unprepared statement */
                res = PQmakeEmptyPGresult(d->conn, PGRES_FATAL_ERROR);
                if (!res) {
                    set_conn_fault(d, "out of memory");
                    d->broken = 1;
                    return NULL;
                }
            }
        }
        if (!res)
            res = st ? PQexecPrepared(d->conn, st->name, st->nparams, st->vals, NULL, NULL, 0)
                     : PQexec(d->conn, sql);
        ExecStatusType s = PQresultStatus(res);
        if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) {
            d->sent++;
            return res;
        }
        if (PQstatus(d->conn) != CONNECTION_OK) {
            char line[200];
            first_line(line, sizeof line, PQerrorMessage(d->conn));
            PQclear(res);
            int fresh = d->sent == 0 && !d->in_tx && attempt == 0;
            drop_conn(d);
            if (fresh)
                continue;
            set_conn_fault(d, line);
            d->broken = 1;
            return NULL;
        }
        note_result(d, res);
        PQclear(res);
        return NULL;
    }
}

/* ------------------------------------------------------------ statements */

/* ?N → $N; each bare ? → the next $n.  Quoted text is copied as it is. */
static int rewrite(const char *sql, char **out, int *nparams)
{
    size_t len = strlen(sql);
    char *o = mcpauth__xmalloc(len * 3 + 1);
    size_t j = 0;
    int next = 0, max = 0;
    char quote = 0;
    for (size_t i = 0; i < len; i++) {
        char c = sql[i];
        if (quote) {
            if (c == quote)
                quote = 0;
            o[j++] = c;
        } else if (c == '\'' || c == '"') {
            quote = c;
            o[j++] = c;
        } else if (c == '?') {
            int num;
            if (sql[i + 1] >= '1' && sql[i + 1] <= '9') {
                num = (int)strtol(sql + i + 1, NULL, 10);
                while (sql[i + 1] >= '0' && sql[i + 1] <= '9')
                    i++;
            } else {
                num = ++next;
            }
            if (num > MAX_PARAMS) {
                free(o);
                return -1;
            }
            if (num > max)
                max = num;
            j += (size_t)sprintf(o + j, "$%d", num);
        } else {
            o[j++] = c;
        }
    }
    o[j] = '\0';
    *out = o;
    *nparams = max;
    return 0;
}

static mcpauth_db_stmt *pg_prepare(mcpauth_db *db, const char *sql, const char *types)
{
    pg_db *d = (pg_db *)db;
    for (size_t i = 0; i < d->nstmts; i++)
        if (d->stmts[i]->sql == sql)
            return d->stmts[i];
    mcpauth_db_stmt *st = mcpauth__xcalloc(1, sizeof *st);
    if (rewrite(sql, &st->pgsql, &st->nparams) < 0 || strlen(types) != (size_t)st->nparams) {
        free(st->pgsql);
        free(st);
        return NULL;
    }
    for (int i = 0; i < st->nparams; i++)
        st->oids[i] = types[i] == 's' ? OID_TEXT : types[i] == 'i' ? OID_INT4 : OID_INT8;
    st->e = &pg_engine;
    st->db = d;
    st->sql = sql;
    snprintf(st->name, sizeof st->name, "m%zu", d->nstmts);
    if (d->nstmts == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 64;
        d->stmts = mcpauth__xrealloc(d->stmts, d->cap * sizeof *d->stmts);
    }
    d->stmts[d->nstmts++] = st;
    return st;
}

static int pg_bind(mcpauth_db_stmt *st, const char *types, va_list ap)
{
    if (strlen(types) != (size_t)st->nparams)
        return -1;
    for (int i = 0; types[i]; i++) {
        switch (types[i]) {
        case 's': st->vals[i] = va_arg(ap, const char *); break;
        case 't': snprintf(st->num[i], sizeof st->num[i], "%lld", (long long)va_arg(ap, time_t)); st->vals[i] = st->num[i]; break;
        case 'i': snprintf(st->num[i], sizeof st->num[i], "%d", va_arg(ap, int)); st->vals[i] = st->num[i]; break;
        case 'l': snprintf(st->num[i], sizeof st->num[i], "%ld", va_arg(ap, long)); st->vals[i] = st->num[i]; break;
        default: return -1;
        }
    }
    return 0;
}

static int pg_step(mcpauth_db_stmt *st)
{
    if (!st->executed) {
        st->executed = 1;
        st->res = roundtrip(st->db, st, NULL);
        if (!st->res)
            return MCPAUTH_DB_ERROR;
        st->nrows = PQntuples(st->res);
        st->row = -1;
        const char *n = PQcmdTuples(st->res);
        st->db->changes = n && *n ? atol(n) : 0;
    }
    if (!st->res)
        return MCPAUTH_DB_ERROR;
    if (st->row + 1 < st->nrows) {
        st->row++;
        return MCPAUTH_DB_ROW;
    }
    st->row = st->nrows;
    return MCPAUTH_DB_DONE;
}

static void pg_done(mcpauth_db_stmt *st)
{
    if (!st)
        return;
    PQclear(st->res);
    st->res = NULL;
    st->executed = 0;
    memset(st->vals, 0, sizeof st->vals);
}

static int pg_is_null(mcpauth_db_stmt *st, int col)
{
    return !st->res || st->row < 0 || st->row >= st->nrows || col >= PQnfields(st->res) ||
           PQgetisnull(st->res, st->row, col);
}

static const char *pg_text(mcpauth_db_stmt *st, int col)
{
    return pg_is_null(st, col) ? NULL : PQgetvalue(st->res, st->row, col);
}

static long long pgc_int64(mcpauth_db_stmt *st, int col)
{
    const char *t = pg_text(st, col);
    return t ? strtoll(t, NULL, 10) : 0;
}

static long pg_changes(mcpauth_db *db)
{
    return ((pg_db *)db)->changes;
}

static int pg_exec(mcpauth_db *db, const char *sql)
{
    PGresult *r = roundtrip((pg_db *)db, NULL, sql);
    PQclear(r);
    return r ? 0 : -1;
}

static void pg_rollback(mcpauth_db *db)
{
    pg_db *d = (pg_db *)db;
    if (d->conn && PQtransactionStatus(d->conn) != PQTRANS_IDLE) {
        PGresult *r = PQexec(d->conn, "ROLLBACK");
        if (PQstatus(d->conn) != CONNECTION_OK)
            drop_conn(d);
        PQclear(r);
    }
    d->in_tx = 0;
}

/* See the top of the file for why one advisory lock. */
static int pg_begin_write(mcpauth_db *db)
{
    pg_db *d = (pg_db *)db;
    /* one round trip; on a lock timeout the transaction is left aborted */
    if (pg_exec(db, "BEGIN; SELECT pg_advisory_xact_lock(" WRITE_LOCK_KEY ")") < 0) {
        pg_rollback(db);
        return -1;
    }
    d->in_tx = 1;
    return 0;
}

static int pg_commit(mcpauth_db *db)
{
    pg_db *d = (pg_db *)db;
    /* COMMIT of an aborted transaction answers OK with the tag ROLLBACK */
    PGresult *r = roundtrip(d, NULL, "COMMIT");
    int rc = r && strcmp(PQcmdStatus(r), "COMMIT") == 0 ? 0 : -1;
    PQclear(r);
    if (rc < 0)
        pg_rollback(db);
    d->in_tx = 0;
    return rc;
}

static void pg_set_busy_timeout(mcpauth_db *db, int ms)
{
    pg_db *d = (pg_db *)db;
    d->busy_ms = ms;
    if (d->conn)
        apply_timeout(d);
}

static int pg_legacy_version(mcpauth_db *db)
{
    (void)db;
    return 0;
}

/* In a forked child the socket is the parent's: PQfinish would end the
 * parent's session, so the child only lets go of the memory it can. */
static void pg_close(mcpauth_db *db, int owner)
{
    pg_db *d = (pg_db *)db;
    if (!d)
        return;
    for (size_t i = 0; i < d->nstmts; i++) {
        if (owner)
            PQclear(d->stmts[i]->res);
        free(d->stmts[i]->pgsql);
        free(d->stmts[i]);
    }
    free(d->stmts);
    if (owner)
        drop_conn(d);
    free(d->conninfo);
    free(d);
}

static const mcpauth_db_engine pg_engine = {
    "postgresql", 1, pg_call_begin, pg_call_end, pg_fault, pg_prepare, pg_bind, pg_step, pg_done,
    pg_is_null, pg_text, pgc_int64, pg_changes, pg_exec, pg_begin_write, pg_commit, pg_rollback,
    pg_set_busy_timeout, pg_legacy_version, pg_close,
};

mcpauth_db *mcpauth__db_pg_open(const char *conninfo, char *err, size_t errlen)
{
    if (!conninfo || !*conninfo) {
        snprintf(err, errlen, "no PostgreSQL connection string");
        return NULL;
    }
    pg_db *d = mcpauth__xcalloc(1, sizeof *d);
    d->base.e = &pg_engine;
    d->conninfo = mcpauth__xstrdup(conninfo);
    d->busy_ms = BUSY_TIMEOUT_MS;
    if (connect_now(d, err, errlen) < 0) {
        pg_close(&d->base, 1);
        return NULL;
    }
    return &d->base;
}

int mcpauth__db_pg_unreachable(const char *conninfo)
{
    if (!conninfo || !*conninfo)
        return 0;
    /* as connect_now, so the answer holds for the connection */
    const char *keys[] = {"connect_timeout", "dbname", NULL};
    const char *vals[] = {"5", conninfo, NULL};
    PGPing p = PQpingParams(getenv("PGCONNECT_TIMEOUT") ? keys + 1 : keys,
                            getenv("PGCONNECT_TIMEOUT") ? vals + 1 : vals, 1);
    return p == PQPING_NO_RESPONSE || p == PQPING_REJECT;
}

#else /* !HAVE_LIBPQ */

int mcpauth__db_pg_statement_timeout_ms = 10000;

mcpauth_db *mcpauth__db_pg_open(const char *conninfo, char *err, size_t errlen)
{
    (void)conninfo;
    snprintf(err, errlen, "store: this build has no PostgreSQL support (configure --with-postgresql)");
    return NULL;
}

int mcpauth__db_pg_unreachable(const char *conninfo)
{
    (void)conninfo;
    return 0;
}

#endif
