#define _GNU_SOURCE /* memmem */
/* The authorization server's store (lib/store.c): file safety, hashes only
 * on disk, single-use codes and refresh rotation under process races,
 * revocation, consents, registration limits, keys and purge.  The suite
 * runs on SQLite ("core") and again on a private PostgreSQL server that
 * this process starts ("pg", tests/support/pgtest.c; each test its own
 * schema), plus PostgreSQL's own cases: races between connections, the
 * server going away and coming back, the write lock held elsewhere. */
#include "config.h"

#include <check.h>

Suite *store_suite(void);

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include <mcpauth/util.h>

#include "encode.h"

#include "clock.h"
#include "keys.h"
#include "store.h"
#define SCRATCH_NAME "store"
#include "../support/scratchdir.h"
#ifdef HAVE_LIBPQ
#include "../support/pgtest.h"
#endif

static char dbpath[160];
/* The "pg" test case: the store setting for this test's schema. */
static int on_pg;
static char pg_conninfo[256];

static void setup(void)
{
    scratch_setup();
    snprintf(dbpath, sizeof dbpath, "%s/mcpauth.db", dir);
}

static const char *store_setting(void)
{
    return on_pg ? pg_conninfo : NULL;
}

static mcpauth_store *open_ok(void)
{
    char err[256] = "";
    mcpauth_store *s = mcpauth__store_open(dir, store_setting(), err, sizeof err);
    ck_assert_msg(s != NULL, "mcpauth__store_open: %s", err);
    return s;
}

/* A second, raw connection for looking behind the API (on PostgreSQL each
 * raw_int/raw_exec connects by itself: raw_open gives NULL). */
static sqlite3 *raw_open(void)
{
    if (on_pg)
        return NULL;
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

/* The first column of the first row as text, in out. */
static void raw_str(sqlite3 *db, const char *sql, char *out, size_t outlen)
{
#ifdef HAVE_LIBPQ
    if (on_pg) {
        ck_assert_msg(pgtest_sql(pg_conninfo, sql, out, outlen) == 0, "%s", sql);
        return;
    }
#endif
    sqlite3_stmt *st = NULL;
    ck_assert_msg(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK, "%s: %s", sql,
                  sqlite3_errmsg(db));
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    const unsigned char *t = sqlite3_column_text(st, 0);
    snprintf(out, outlen, "%s", t ? (const char *)t : "");
    sqlite3_finalize(st);
}

static long long raw_int(sqlite3 *db, const char *sql)
{
#ifdef HAVE_LIBPQ
    if (on_pg) {
        char v[64];
        raw_str(db, sql, v, sizeof v);
        return atoll(v);
    }
#endif
    sqlite3_stmt *st = NULL;
    ck_assert_msg(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK, "%s: %s", sql,
                  sqlite3_errmsg(db));
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    long long v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void raw_exec(sqlite3 *db, const char *sql)
{
#ifdef HAVE_LIBPQ
    if (on_pg) {
        ck_assert_msg(pgtest_sql(pg_conninfo, sql, NULL, 0) == 0, "%s", sql);
        return;
    }
#endif
    ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK, "%s: %s", sql,
                  sqlite3_errmsg(db));
}

static mcpauth_grant grant(char *family, char *user, char *client, time_t expires)
{
    mcpauth_grant g = {0};
    g.family = family;
    g.user = user;
    g.client_id = client;
    g.resource = "https://mcp.example/";
    g.scope = "read write";
    g.redirect_uri = "https://app.example/cb";
    g.code_challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    g.expires = expires;
    return g;
}

static int file_mode(const char *p)
{
    struct stat st;
    ck_assert_int_eq(lstat(p, &st), 0);
    return (int)(st.st_mode & 07777);
}

/* ------------------------------------------------------------------- open */

START_TEST(open_refusals)
{
    char err[512], p[256];
    snprintf(p, sizeof p, "%s/missing", dir);
    ck_assert_ptr_null(mcpauth__store_open(p, NULL, err, sizeof err));
    ck_assert_msg(strstr(err, p) != NULL, "error does not name the directory: %s", err);
    ck_assert_ptr_null(mcpauth__store_open(NULL, NULL, err, sizeof err));
    ck_assert_ptr_null(mcpauth__store_open("", NULL, NULL, 0));

    /* A file where the directory should be. */
    snprintf(p, sizeof p, "%s/file", dir);
    int fd = open(p, O_WRONLY | O_CREAT, 0600);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_ptr_null(mcpauth__store_open(p, NULL, err, sizeof err));
    ck_assert_msg(strstr(err, p) != NULL, "%s", err);

    /* World-writable state_dir. */
    snprintf(p, sizeof p, "%s/open", dir);
    ck_assert_int_eq(mkdir(p, 0700), 0);
    ck_assert_int_eq(chmod(p, 0777), 0);
    ck_assert_ptr_null(mcpauth__store_open(p, NULL, err, sizeof err));
    ck_assert_msg(strstr(err, "writable") != NULL, "%s", err);

    /* The database a symlink: refused, the target untouched. */
    char target[256];
    snprintf(target, sizeof target, "%s/target", dir);
    fd = open(target, O_WRONLY | O_CREAT, 0644);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(symlink(target, dbpath), 0);
    ck_assert_ptr_null(mcpauth__store_open(dir, NULL, err, sizeof err));
    ck_assert_msg(strstr(err, "symbolic link") != NULL, "%s", err);
    struct stat st;
    ck_assert_int_eq(stat(target, &st), 0);
    ck_assert_int_eq(st.st_size, 0);
    ck_assert_int_eq(st.st_mode & 0777, 0644);
    /* ...also a dangling one (it would create the target). */
    unlink(dbpath);
    snprintf(target, sizeof target, "%s/nowhere", dir);
    ck_assert_int_eq(symlink(target, dbpath), 0);
    ck_assert_ptr_null(mcpauth__store_open(dir, NULL, err, sizeof err));
    ck_assert_int_eq(access(target, F_OK), -1);
    unlink(dbpath);

    /* A directory or FIFO in its place (the FIFO must not hang us). */
    ck_assert_int_eq(mkdir(dbpath, 0700), 0);
    ck_assert_ptr_null(mcpauth__store_open(dir, NULL, err, sizeof err));
    rmdir(dbpath);
    ck_assert_int_eq(mkfifo(dbpath, 0600), 0);
    ck_assert_ptr_null(mcpauth__store_open(dir, NULL, err, sizeof err));
    ck_assert_msg(strstr(err, "regular") != NULL, "%s", err);
    unlink(dbpath);

    /* A planted WAL symlink. */
    char wal[200];
    snprintf(wal, sizeof wal, "%s-wal", dbpath);
    ck_assert_int_eq(symlink(target, wal), 0);
    ck_assert_ptr_null(mcpauth__store_open(dir, NULL, err, sizeof err));
    ck_assert_msg(strstr(err, "-wal") != NULL, "%s", err);
    unlink(wal);
    mcpauth__store_close(open_ok());
}
END_TEST

START_TEST(open_mode_and_pragmas)
{
    /* 0600 whatever the umask: a permissive one... */
    mode_t old = umask(0);
    mcpauth_store *s = open_ok();
    ck_assert_int_eq(file_mode(dbpath), 0600);
    /* SQLite gives the WAL and shm files the database's mode. */
    char side[200];
    snprintf(side, sizeof side, "%s-wal", dbpath);
    if (access(side, F_OK) == 0)
        ck_assert_int_eq(file_mode(side), 0600);
    snprintf(side, sizeof side, "%s-shm", dbpath);
    if (access(side, F_OK) == 0)
        ck_assert_int_eq(file_mode(side), 0600);
    mcpauth__store_close(s);
    /* ...a too strict one... */
    unlink(dbpath);
    umask(0277);
    mcpauth__store_close(open_ok());
    ck_assert_int_eq(file_mode(dbpath), 0600);
    umask(old);
    /* ...and a file someone loosened is tightened again. */
    ck_assert_int_eq(chmod(dbpath, 0644), 0);
    s = open_ok();
    ck_assert_int_eq(file_mode(dbpath), 0600);

    sqlite3 *db = raw_open();
    sqlite3_stmt *st;
    ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    ck_assert_int_eq(raw_int(db, "PRAGMA user_version"), 2);
    ck_assert_int_eq(raw_int(db, "SELECT version FROM schema_version"), 2);
    static const char *const tables[] = {"clients", "codes", "refresh", "families",
                                         "consents", "keys", "registrations"};
    for (size_t i = 0; i < sizeof tables / sizeof *tables; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM sqlite_master WHERE name = '%s'",
                 tables[i]);
        ck_assert_msg(raw_int(db, sql) == 1, "table %s missing", tables[i]);
    }
    mcpauth__store_close(s);

    /* Reopening keeps data; a newer schema is refused. */
    s = open_ok();
    ck_assert_int_eq(mcpauth__store_consent_add(s, "u", "c", "r", "x"), 0);
    mcpauth__store_close(s);
    s = open_ok();
    ck_assert_int_eq(mcpauth__store_consent_has(s, "u", "c", "r", "x"), 1);
    mcpauth__store_close(s);
    raw_exec(db, "PRAGMA user_version = 99");
    sqlite3_close(db);
    char err[512];
    ck_assert_ptr_null(mcpauth__store_open(dir, NULL, err, sizeof err));
    ck_assert_msg(strstr(err, "newer") != NULL, "%s", err);
}
END_TEST

/* A file of schema version 1 (before PostgreSQL support: no keys.pem, no
 * settings, the version only in user_version) is upgraded when opened,
 * keeping its rows. */
START_TEST(upgrade_from_version_1)
{
    mcpauth_store *s = open_ok();
    ck_assert_int_eq(mcpauth__store_consent_add(s, "u", "c", "r", "x"), 0);
    mcpauth__store_close(s);
    sqlite3 *db = raw_open();
    raw_exec(db, "DROP TABLE schema_version; DROP TABLE settings;"
                 " ALTER TABLE keys DROP COLUMN pem; PRAGMA user_version = 1");
    s = open_ok();
    ck_assert_int_eq(mcpauth__store_consent_has(s, "u", "c", "r", "x"), 1);
    mcpauth_keyinfo k = {"kid-1", "ES256", "/x.pem", 100, 0, "PEM TEXT"};
    ck_assert_int_eq(mcpauth__store_key_add(s, &k), 0);
    ck_assert_int_eq(mcpauth__store_setting_add(s, "n", "v"), 1);
    ck_assert_int_eq(mcpauth__store_setting_add(s, "n", "w"), 0);
    char *v = NULL;
    ck_assert_int_eq(mcpauth__store_setting_get(s, "n", &v), 1);
    ck_assert_str_eq(v, "v");
    free(v);
    ck_assert_int_eq(mcpauth__store_setting_get(s, "none", &v), 0);
    ck_assert_ptr_null(v);
    ck_assert_int_eq(mcpauth__store_shared(s), 0);
    mcpauth__store_close(s);
    ck_assert_int_eq(raw_int(db, "PRAGMA user_version"), 2);
    ck_assert_int_eq(raw_int(db, "SELECT version FROM schema_version"), 2);
    ck_assert_int_eq(raw_int(db, "SELECT count(*) FROM keys WHERE pem = 'PEM TEXT'"), 1);
    sqlite3_close(db);
    char err[256];
    int from = -1, to = -1;
    ck_assert_int_eq(mcpauth__store_migrate(dir, "sqlite", &from, &to, err, sizeof err), 0);
    ck_assert_int_eq(from, 2);
    ck_assert_int_eq(to, 2);
}
END_TEST

/* ---------------------------------------------------------------- clients */

static mcpauth_client client(char *id, time_t created)
{
    mcpauth_client c = {0};
    c.client_id = id;
    c.client_name = "Test App";
    c.redirect_uris = "[\"https://app.example/cb\"]";
    c.grant_types = "authorization_code refresh_token";
    c.token_endpoint_auth_method = "client_secret_basic";
    c.kind = "dcr";
    c.registered_by = "192.0.2.1";
    c.created = created;
    return c;
}

START_TEST(clients_basic)
{
    mcpauth_store *s = open_ok();
    mcpauth_client c = client("conf", 100);
    ck_assert_int_eq(mcpauth__store_client_add(s, &c, "s3cret-value"), 0);
    ck_assert_int_eq(mcpauth__store_client_add(s, &c, "other"), -1); /* exists */

    mcpauth_client got;
    ck_assert_int_eq(mcpauth__store_client_get(s, "conf", &got), 1);
    ck_assert_str_eq(got.client_id, "conf");
    ck_assert_str_eq(got.client_name, "Test App");
    ck_assert_str_eq(got.redirect_uris, "[\"https://app.example/cb\"]");
    ck_assert_str_eq(got.grant_types, "authorization_code refresh_token");
    ck_assert_str_eq(got.token_endpoint_auth_method, "client_secret_basic");
    ck_assert_str_eq(got.kind, "dcr");
    ck_assert_str_eq(got.registered_by, "192.0.2.1");
    ck_assert_int_eq(got.created, 100);
    ck_assert_int_eq(got.secret_expires, 0);
    char h[65];
    mcpauth__sha256_hex("s3cret-value", 12, h);
    ck_assert_str_eq(got.secret_hash, h);
    mcpauth__client_free(&got);
    mcpauth__client_free(&got); /* zeroed: fine */
    mcpauth__client_free(NULL);
    ck_assert_int_eq(mcpauth__store_client_get(s, "nope", &got), 0);
    ck_assert_ptr_null(got.client_id);

    /* Secret checks. */
    ck_assert_int_eq(mcpauth__store_client_check_secret(s, "conf", "s3cret-value"), 1);
    ck_assert_int_eq(mcpauth__store_client_check_secret(s, "conf", "s3cret-valuf"), 0);
    ck_assert_int_eq(mcpauth__store_client_check_secret(s, "conf", "s3cret-valu"), 0);
    ck_assert_int_eq(mcpauth__store_client_check_secret(s, "conf", "s3cret-value "), 0);
    ck_assert_int_eq(mcpauth__store_client_check_secret(s, "conf", ""), 0);
    ck_assert_int_eq(mcpauth__store_client_check_secret(s, "conf", NULL), 0);
    ck_assert_int_eq(mcpauth__store_client_check_secret(s, "conf", h), 0); /* not the hash */
    ck_assert_int_eq(mcpauth__store_client_check_secret(s, "nope", "s3cret-value"), 0);

    /* Public client: every optional field NULL. */
    mcpauth_client pub = {0};
    pub.client_id = "pub";
    ck_assert_int_eq(mcpauth__store_client_add(s, &pub, NULL), 0);
    ck_assert_int_eq(mcpauth__store_client_get(s, "pub", &got), 1);
    ck_assert_ptr_null(got.client_name);
    ck_assert_ptr_null(got.redirect_uris);
    ck_assert_ptr_null(got.secret_hash);
    ck_assert_ptr_null(got.kind);
    ck_assert_ptr_null(got.registered_by);
    ck_assert_int_gt(got.created, 0); /* defaulted to now */
    mcpauth__client_free(&got);
    ck_assert_int_eq(mcpauth__store_client_check_secret(s, "pub", ""), 0);
    ck_assert_int_eq(mcpauth__store_client_check_secret(s, "pub", "anything"), 0);

    /* Bad input: no id, empty secret, a "hash" that is not one. */
    mcpauth_client bad = {0};
    ck_assert_int_eq(mcpauth__store_client_add(s, &bad, NULL), -1);
    bad.client_id = "bad";
    ck_assert_int_eq(mcpauth__store_client_add(s, &bad, ""), -1);
    bad.secret_hash = "plain-secret-by-mistake";
    ck_assert_int_eq(mcpauth__store_client_add(s, &bad, NULL), -1);
    ck_assert_int_eq(mcpauth__store_client_get(s, "bad", &got), 0);

    /* A precomputed digest (static clients) is accepted as is. */
    mcpauth_client st = client("static", 50);
    char sh[65];
    mcpauth__sha256_hex("static-secret", 13, sh);
    st.secret_hash = sh;
    st.kind = "static";
    ck_assert_int_eq(mcpauth__store_client_add(s, &st, NULL), 0);
    ck_assert_int_eq(mcpauth__store_client_check_secret(s, "static", "static-secret"), 1);
    ck_assert_int_eq(mcpauth__store_client_check_secret(s, "static", sh), 0);

    /* Expired secrets no longer authenticate. */
    mcpauth_client ex = client("expired", 60);
    ex.secret_expires = time(NULL) - 10;
    ck_assert_int_eq(mcpauth__store_client_add(s, &ex, "old-secret"), 0);
    ck_assert_int_eq(mcpauth__store_client_check_secret(s, "expired", "old-secret"), 0);
    mcpauth_client fut = client("future", 70);
    fut.secret_expires = time(NULL) + 3600;
    ck_assert_int_eq(mcpauth__store_client_add(s, &fut, "new-secret"), 0);
    ck_assert_int_eq(mcpauth__store_client_check_secret(s, "future", "new-secret"), 1);

    ck_assert_int_eq(mcpauth__store_client_delete(s, "conf"), 1);
    ck_assert_int_eq(mcpauth__store_client_delete(s, "conf"), 0);
    ck_assert_int_eq(mcpauth__store_client_get(s, "conf", &got), 0);
    ck_assert_int_eq(mcpauth__store_client_check_secret(s, "conf", "s3cret-value"), 0);
    mcpauth__store_close(s);
}
END_TEST

struct list_acc {
    char ids[8][16];
    int n, stop_after;
};

static int collect_client(const mcpauth_client *c, void *arg)
{
    struct list_acc *a = arg;
    snprintf(a->ids[a->n++], sizeof a->ids[0], "%s", c->client_id);
    return a->stop_after && a->n >= a->stop_after;
}

/* The callback may use the store (no lock is held while it runs). */
static mcpauth_store *list_store;
static int collect_and_get(const mcpauth_client *c, void *arg)
{
    mcpauth_client again;
    ck_assert_int_eq(mcpauth__store_client_get(list_store, c->client_id, &again), 1);
    mcpauth__client_free(&again);
    return collect_client(c, arg);
}

START_TEST(clients_list)
{
    mcpauth_store *s = open_ok();
    mcpauth_client a = client("a", 100), b = client("b", 300), c = client("c", 200);
    ck_assert_int_eq(mcpauth__store_client_add(s, &a, NULL), 0);
    ck_assert_int_eq(mcpauth__store_client_add(s, &b, NULL), 0);
    ck_assert_int_eq(mcpauth__store_client_add(s, &c, NULL), 0);
    struct list_acc acc = {0};
    list_store = s;
    ck_assert_int_eq(mcpauth__store_client_list(s, collect_and_get, &acc), 0);
    ck_assert_int_eq(acc.n, 3);
    ck_assert_str_eq(acc.ids[0], "b");
    ck_assert_str_eq(acc.ids[1], "c");
    ck_assert_str_eq(acc.ids[2], "a");
    memset(&acc, 0, sizeof acc);
    acc.stop_after = 1;
    ck_assert_int_eq(mcpauth__store_client_list(s, collect_client, &acc), 0);
    ck_assert_int_eq(acc.n, 1);
    ck_assert_int_eq(mcpauth__store_client_list(s, NULL, NULL), -1);
    mcpauth__store_close(s);
}
END_TEST

/* --------------------------------------------------------- hashes on disk */

static const char *const plains[] = {
    "PLAIN-client-secret-0123456789", "PLAIN-auth-code-abcdefghij",
    "PLAIN-refresh-one-klmnopqrst", "PLAIN-refresh-two-uvwxyz0123",
    "PLAIN-refresh-three-456789abc",
};
#define NPLAINS (sizeof plains / sizeof *plains)

/* Every text and blob value of every table. */
static void scan_tables(sqlite3 *db, int found[NPLAINS])
{
    sqlite3_stmt *tl;
    ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT name FROM sqlite_master WHERE type = 'table'",
                                        -1, &tl, NULL),
                     SQLITE_OK);
    int tables = 0;
    while (sqlite3_step(tl) == SQLITE_ROW) {
        char sql[128];
        snprintf(sql, sizeof sql, "SELECT * FROM \"%s\"", sqlite3_column_text(tl, 0));
        sqlite3_stmt *st;
        ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        while (sqlite3_step(st) == SQLITE_ROW)
            for (int c = 0; c < sqlite3_column_count(st); c++) {
                const char *v = (const char *)sqlite3_column_blob(st, c);
                int n = sqlite3_column_bytes(st, c);
                if (!v)
                    continue;
                for (size_t i = 0; i < NPLAINS; i++) {
                    char h[65];
                    mcpauth__sha256_hex(plains[i], strlen(plains[i]), h);
                    ck_assert_msg(!memmem(v, (size_t)n, plains[i], strlen(plains[i])),
                                  "plain %s found in %s", plains[i], sql);
                    if (memmem(v, (size_t)n, h, 64))
                        found[i]++;
                }
            }
        sqlite3_finalize(st);
        tables++;
    }
    sqlite3_finalize(tl);
    ck_assert_int_ge(tables, 7);
}

static void scan_file(const char *p, int must_exist, int found[NPLAINS])
{
    FILE *f = fopen(p, "rb");
    if (!f) {
        ck_assert_msg(!must_exist, "%s: %s", p, strerror(errno));
        return;
    }
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    ck_assert_int_lt(n, sizeof buf);
    for (size_t i = 0; i < NPLAINS; i++) {
        char h[65];
        mcpauth__sha256_hex(plains[i], strlen(plains[i]), h);
        ck_assert_msg(!memmem(buf, n, plains[i], strlen(plains[i])), "plain %s in %s", plains[i],
                      p);
        if (memmem(buf, n, h, 64))
            found[i]++;
    }
}

/* Stores each of plains[] the way the AS does. */
static void fill_plains(mcpauth_store *s)
{
    mcpauth_client c = client("app", 100);
    ck_assert_int_eq(mcpauth__store_client_add(s, &c, plains[0]), 0);
    mcpauth_grant g = grant("fam-disk", "alice", "app", 2000);
    ck_assert_int_eq(mcpauth__store_code_add(s, plains[1], &g), 0);
    mcpauth_grant out;
    ck_assert_int_eq(mcpauth__store_code_redeem(s, plains[1], 1000, &out), MCPAUTH_REDEEM_OK);
    mcpauth__grant_free(&out);
    g.expires = 100000;
    ck_assert_int_eq(mcpauth__store_refresh_add(s, plains[2], &g), 0);
    ck_assert_int_eq(
        mcpauth__store_refresh_rotate(s, plains[2], plains[3], 1100, 10, 100000, &out),
        MCPAUTH_ROTATE_OK);
    mcpauth__grant_free(&out);
    ck_assert_int_eq(
        mcpauth__store_refresh_rotate(s, plains[2], plains[4], 1101, 10, 100000, &out),
        MCPAUTH_ROTATE_OK); /* grace */
    mcpauth__grant_free(&out);
}

START_TEST(hashes_only_on_disk)
{
    mcpauth_store *s = open_ok();
    fill_plains(s);

    /* Through SQL, with the store still open (rows may sit in the WAL). */
    int found[NPLAINS] = {0};
    sqlite3 *db = raw_open();
    scan_tables(db, found);
    for (size_t i = 0; i < NPLAINS; i++)
        ck_assert_msg(found[i] > 0, "digest of %s not stored", plains[i]);
    sqlite3_close(db);
    /* And the raw bytes: WAL and db while open, then the db once the last
     * connection has checkpointed. */
    char wal[200];
    snprintf(wal, sizeof wal, "%s-wal", dbpath);
    memset(found, 0, sizeof found);
    scan_file(dbpath, 1, found);
    scan_file(wal, 0, found);
    for (size_t i = 0; i < NPLAINS; i++)
        ck_assert_msg(found[i] > 0, "digest of %s not in the files", plains[i]);
    mcpauth__store_close(s);
    memset(found, 0, sizeof found);
    scan_file(dbpath, 1, found);
    scan_file(wal, 0, found);
    for (size_t i = 0; i < NPLAINS; i++)
        ck_assert_msg(found[i] > 0, "digest of %s not in the checkpointed file", plains[i]);
}
END_TEST

/* ------------------------------------------------------------------ codes */

START_TEST(code_basic)
{
    mcpauth_store *s = open_ok();
    mcpauth_grant g = grant("fam-1", "alice", "app", 2000), out;
    ck_assert_int_eq(mcpauth__store_code_add(s, "code-1", &g), 0);
    /* A code never joins an existing family. */
    ck_assert_int_eq(mcpauth__store_code_add(s, "code-1b", &g), -1);
    ck_assert_int_eq(mcpauth__store_code_redeem(s, "code-1b", 1000, &out), MCPAUTH_REDEEM_UNKNOWN);

    ck_assert_int_eq(mcpauth__store_code_redeem(s, "code-1", 1000, &out), MCPAUTH_REDEEM_OK);
    ck_assert_str_eq(out.client_id, "app");
    ck_assert_str_eq(out.user, "alice");
    ck_assert_str_eq(out.resource, "https://mcp.example/");
    ck_assert_str_eq(out.scope, "read write");
    ck_assert_str_eq(out.redirect_uri, "https://app.example/cb");
    ck_assert_str_eq(out.code_challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    ck_assert_str_eq(out.family, "fam-1");
    ck_assert_int_eq(out.expires, 2000);
    mcpauth__grant_free(&out);
    mcpauth__grant_free(&out);
    mcpauth__grant_free(NULL);
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "fam-1"), 0);
    /* Replay: refused and the family revoked. */
    ck_assert_int_eq(mcpauth__store_code_redeem(s, "code-1", 1001, &out), MCPAUTH_REDEEM_REPLAYED);
    ck_assert_ptr_null(out.client_id);
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "fam-1"), 1);
    ck_assert_int_eq(mcpauth__store_code_redeem(s, "code-1", 1002, NULL), MCPAUTH_REDEEM_REPLAYED);

    /* Expiry: valid strictly before g.expires. */
    mcpauth_grant g2 = grant("fam-2", "alice", "app", 2000);
    g2.resource = g2.scope = g2.redirect_uri = g2.code_challenge = NULL;
    ck_assert_int_eq(mcpauth__store_code_add(s, "code-2", &g2), 0);
    ck_assert_int_eq(mcpauth__store_code_redeem(s, "code-2", 2000, &out), MCPAUTH_REDEEM_UNKNOWN);
    ck_assert_int_eq(mcpauth__store_code_redeem(s, "code-2", 1999, &out), MCPAUTH_REDEEM_OK);
    ck_assert_ptr_null(out.resource); /* NULL optional fields survive */
    ck_assert_ptr_null(out.scope);
    ck_assert_ptr_null(out.code_challenge);
    mcpauth__grant_free(&out);
    ck_assert_int_eq(mcpauth__store_code_redeem(s, "unknown", 1000, &out), MCPAUTH_REDEEM_UNKNOWN);
    ck_assert_int_eq(mcpauth__store_code_redeem(s, NULL, 1000, &out), MCPAUTH_REDEEM_UNKNOWN);

    /* A code whose user was revoked before it came back is dead. */
    mcpauth_grant g3 = grant("fam-3", "bob", "app", 2000);
    ck_assert_int_eq(mcpauth__store_code_add(s, "code-3", &g3), 0);
    ck_assert_int_eq(mcpauth__store_revoke_user(s, "bob"), 1);
    ck_assert_int_eq(mcpauth__store_code_redeem(s, "code-3", 1000, &out), MCPAUTH_REDEEM_UNKNOWN);

    /* Required fields. */
    mcpauth_grant bad = grant(NULL, "alice", "app", 2000);
    ck_assert_int_eq(mcpauth__store_code_add(s, "code-4", &bad), -1);
    bad = grant("fam-4", NULL, "app", 2000);
    ck_assert_int_eq(mcpauth__store_code_add(s, "code-4", &bad), -1);
    bad = grant("fam-4", "alice", NULL, 2000);
    ck_assert_int_eq(mcpauth__store_code_add(s, "code-4", &bad), -1);
    ck_assert_int_eq(mcpauth__store_code_add(s, NULL, &g3), -1);
    ck_assert_int_eq(mcpauth__store_code_add(s, "code-4", NULL), -1);
    mcpauth__store_close(s);
}
END_TEST

START_TEST(code_replay_kills_refresh)
{
    mcpauth_store *s = open_ok();
    mcpauth_grant g = grant("fam-r", "alice", "app", 2000), out;
    ck_assert_int_eq(mcpauth__store_code_add(s, "code-r", &g), 0);
    ck_assert_int_eq(mcpauth__store_code_redeem(s, "code-r", 1000, &out), MCPAUTH_REDEEM_OK);
    out.expires = 50000;
    ck_assert_int_eq(mcpauth__store_refresh_add(s, "rt-1", &out), 0);
    mcpauth__grant_free(&out);
    ck_assert_int_eq(mcpauth__store_refresh_rotate(s, "rt-1", "rt-2", 1100, 0, 50000, &out),
                     MCPAUTH_ROTATE_OK);
    mcpauth__grant_free(&out);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "rt-2", 1100, NULL), 1);
    /* The code comes back (stolen): everything issued from it dies. */
    ck_assert_int_eq(mcpauth__store_code_redeem(s, "code-r", 1200, &out), MCPAUTH_REDEEM_REPLAYED);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "rt-2", 1200, &out), 0);
    ck_assert_int_eq(mcpauth__store_refresh_rotate(s, "rt-2", "rt-3", 1200, 0, 50000, &out),
                     MCPAUTH_ROTATE_UNKNOWN);
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "fam-r"), 1);
    mcpauth__store_close(s);
}
END_TEST

/* NPROC processes redeem one code at once.  Exactly one wins.  The others
 * find it used, which is indistinguishable from a replay by an attacker,
 * so (RFC 6749 §4.1.2, and the contract in store.h) each REPLAYED also
 * revokes the family: the winner's refresh token, added after its OK, is
 * therefore dead too.  That is the intended behaviour, not a flake. */
#define NPROC 8

static void redeem_child(int go, int out)
{
    char c;
    if (read(go, &c, 1) != 0) /* EOF: everyone starts */
        _exit(2);
    char err[256];
    mcpauth_store *s = mcpauth__store_open(dir, store_setting(), err, sizeof err);
    if (!s) {
        fprintf(stderr, "child: %s\n", err);
        _exit(3);
    }
    mcpauth_grant g;
    int r = mcpauth__store_code_redeem(s, "raced-code", 1000, &g);
    if (r == MCPAUTH_REDEEM_OK) {
        g.expires = 90000;
        if (mcpauth__store_refresh_add(s, "winner-rt", &g) != 0)
            r = 100;
        mcpauth__grant_free(&g);
    }
    mcpauth__store_close(s);
    _exit(write(out, &r, sizeof r) == (ssize_t)sizeof r ? 0 : 4);
}

START_TEST(code_race_processes)
{
    mcpauth_store *s = open_ok();
    mcpauth_grant g = grant("fam-race", "alice", "app", 2000);
    ck_assert_int_eq(mcpauth__store_code_add(s, "raced-code", &g), 0);
    int go[2], res[2];
    ck_assert_int_eq(pipe(go), 0);
    ck_assert_int_eq(pipe(res), 0);
    pid_t pids[NPROC];
    for (int i = 0; i < NPROC; i++) {
        pids[i] = fork();
        ck_assert_int_ge(pids[i], 0);
        if (pids[i] == 0) {
            close(go[1]);
            close(res[0]);
            redeem_child(go[0], res[1]);
        }
    }
    close(go[0]);
    close(res[1]);
    close(go[1]);
    int ok = 0, replayed = 0;
    for (int i = 0; i < NPROC; i++) {
        int st, r = -1;
        ck_assert_int_eq(waitpid(pids[i], &st, 0), pids[i]);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d failed (status %d)", i, st);
        ck_assert_int_eq(read(res[0], &r, sizeof r), (ssize_t)sizeof r);
        ck_assert_msg(r == MCPAUTH_REDEEM_OK || r == MCPAUTH_REDEEM_REPLAYED, "child got %d", r);
        ok += r == MCPAUTH_REDEEM_OK;
        replayed += r == MCPAUTH_REDEEM_REPLAYED;
    }
    close(res[0]);
    ck_assert_int_eq(ok, 1);
    ck_assert_int_eq(replayed, NPROC - 1);
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "fam-race"), 1);
    mcpauth_grant out;
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "winner-rt", 1000, &out), 0);
    ck_assert_int_eq(mcpauth__store_refresh_rotate(s, "winner-rt", "next", 1000, 30, 90000, &out),
                     MCPAUTH_ROTATE_UNKNOWN);
    mcpauth__store_close(s);
}
END_TEST

/* --------------------------------------------------------- refresh tokens */

static void add_refresh(mcpauth_store *s, const char *token, char *family, char *user,
                        char *client, time_t expires)
{
    mcpauth_grant g = grant(family, user, client, expires);
    g.redirect_uri = g.code_challenge = NULL;
    ck_assert_int_eq(mcpauth__store_refresh_add(s, token, &g), 0);
}

static mcpauth_rotate rotate(mcpauth_store *s, const char *t, const char *n, time_t now,
                             long grace)
{
    mcpauth_grant g;
    mcpauth_rotate r = mcpauth__store_refresh_rotate(s, t, n, now, grace, now + 5000, &g);
    if (r == MCPAUTH_ROTATE_OK) {
        ck_assert_str_eq(g.user, "alice");
        ck_assert_str_eq(g.client_id, "app");
        ck_assert_str_eq(g.scope, "read write");
        ck_assert_ptr_nonnull(g.family);
    } else {
        ck_assert_ptr_null(g.family);
    }
    mcpauth__grant_free(&g);
    return r;
}

START_TEST(refresh_rotation_reuse)
{
    mcpauth_store *s = open_ok();
    add_refresh(s, "rt-1", "fam", "alice", "app", 10000);
    mcpauth_grant g;
    ck_assert_int_eq(mcpauth__store_refresh_rotate(s, "rt-1", "rt-2", 1000, 10, 7000, &g),
                     MCPAUTH_ROTATE_OK);
    ck_assert_str_eq(g.family, "fam");
    ck_assert_str_eq(g.resource, "https://mcp.example/");
    ck_assert_ptr_null(g.redirect_uri);
    ck_assert_int_eq(g.expires, 7000); /* the new token's */
    mcpauth__grant_free(&g);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "rt-1", 1000, &g), 0); /* retired */
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "rt-2", 1000, &g), 1);
    ck_assert_int_eq(g.expires, 7000);
    ck_assert_str_eq(g.family, "fam");
    mcpauth__grant_free(&g);
    ck_assert_int_eq(rotate(s, "rt-2", "rt-3", 1050, 10), MCPAUTH_ROTATE_OK);
    /* rt-1 comes back long after its grace: theft assumed, family dead. */
    ck_assert_int_eq(rotate(s, "rt-1", "rt-x", 1100, 10), MCPAUTH_ROTATE_REUSED);
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "fam"), 1);
    ck_assert_int_eq(rotate(s, "rt-3", "rt-4", 1101, 10), MCPAUTH_ROTATE_UNKNOWN);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "rt-3", 1101, &g), 0);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "rt-x", 1101, &g), 0);
    ck_assert_int_eq(rotate(s, "rt-1", "rt-y", 1102, 10), MCPAUTH_ROTATE_UNKNOWN);

    /* No grace at all: any reuse is fatal. */
    add_refresh(s, "nog-1", "fam-nog", "alice", "app", 10000);
    ck_assert_int_eq(rotate(s, "nog-1", "nog-2", 1000, 0), MCPAUTH_ROTATE_OK);
    ck_assert_int_eq(rotate(s, "nog-1", "nog-3", 1000, 0), MCPAUTH_ROTATE_REUSED);
    ck_assert_int_eq(rotate(s, "nog-2", "nog-4", 1000, 0), MCPAUTH_ROTATE_UNKNOWN);
    mcpauth__store_close(s);
}
END_TEST

START_TEST(refresh_grace_once)
{
    mcpauth_store *s = open_ok();
    add_refresh(s, "g-1", "fam", "alice", "app", 10000);
    ck_assert_int_eq(rotate(s, "g-1", "g-2", 1000, 10), MCPAUTH_ROTATE_OK);
    /* Within grace: once more, and both new tokens live. */
    ck_assert_int_eq(rotate(s, "g-1", "g-2b", 1009, 10), MCPAUTH_ROTATE_OK);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "g-2", 1009, NULL), 1);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "g-2b", 1009, NULL), 1);
    ck_assert_int_eq(rotate(s, "g-2", "g-3", 1009, 10), MCPAUTH_ROTATE_OK);
    ck_assert_int_eq(rotate(s, "g-2b", "g-3b", 1009, 10), MCPAUTH_ROTATE_OK);
    /* Grace spent: a third use (still inside the window) is reuse. */
    ck_assert_int_eq(rotate(s, "g-1", "g-2c", 1009, 10), MCPAUTH_ROTATE_REUSED);
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "fam"), 1);
    ck_assert_int_eq(rotate(s, "g-3", "g-4", 1010, 10), MCPAUTH_ROTATE_UNKNOWN);
    ck_assert_int_eq(rotate(s, "g-3b", "g-4b", 1010, 10), MCPAUTH_ROTATE_UNKNOWN);

    /* The window is exclusive: exactly `grace` seconds later is too late. */
    add_refresh(s, "w-1", "fam-w", "alice", "app", 10000);
    ck_assert_int_eq(rotate(s, "w-1", "w-2", 1000, 10), MCPAUTH_ROTATE_OK);
    ck_assert_int_eq(rotate(s, "w-1", "w-3", 1010, 10), MCPAUTH_ROTATE_REUSED);
    mcpauth__store_close(s);
}
END_TEST

START_TEST(refresh_misc)
{
    mcpauth_store *s = open_ok();
    mcpauth_grant g;
    /* new_token NULL: no rotation, the token stays active. */
    add_refresh(s, "keep", "fam-k", "alice", "app", 10000);
    ck_assert_int_eq(mcpauth__store_refresh_rotate(s, "keep", NULL, 1000, 10, 99999, &g),
                     MCPAUTH_ROTATE_OK);
    ck_assert_int_eq(g.expires, 10000);
    mcpauth__grant_free(&g);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "keep", 1000, NULL), 1);
    ck_assert_int_eq(rotate(s, "keep", NULL, 2000, 10), MCPAUTH_ROTATE_OK);
    ck_assert_int_eq(rotate(s, "keep", "kept-2", 3000, 10), MCPAUTH_ROTATE_OK);

    /* Expired or unknown. */
    add_refresh(s, "exp", "fam-e", "alice", "app", 1000);
    ck_assert_int_eq(rotate(s, "exp", "exp-2", 1000, 10), MCPAUTH_ROTATE_UNKNOWN);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "exp", 1000, NULL), 0);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "exp", 999, NULL), 1);
    ck_assert_int_eq(rotate(s, "nope", "n-2", 1000, 10), MCPAUTH_ROTATE_UNKNOWN);
    ck_assert_int_eq(rotate(s, NULL, "n-2", 1000, 10), MCPAUTH_ROTATE_UNKNOWN);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, NULL, 1000, NULL), 0);
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "fam-e"), 0); /* not a reuse */

    /* A new token colliding with a stored one: error, nothing changed. */
    add_refresh(s, "c-1", "fam-c", "alice", "app", 10000);
    ck_assert_int_eq(rotate(s, "c-1", "keep", 1000, 10), MCPAUTH_ROTATE_ERROR);
    ck_assert_int_eq(rotate(s, "c-1", "", 1000, 10), MCPAUTH_ROTATE_ERROR);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "c-1", 1000, NULL), 1);

    /* No grafting onto another user's or client's family; no duplicates. */
    mcpauth_grant other = grant("fam-c", "mallory", "app", 10000);
    ck_assert_int_eq(mcpauth__store_refresh_add(s, "graft", &other), -1);
    other = grant("fam-c", "alice", "evil-app", 10000);
    ck_assert_int_eq(mcpauth__store_refresh_add(s, "graft", &other), -1);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "graft", 1000, NULL), 0);
    other = grant("fam-c", "alice", "app", 10000);
    ck_assert_int_eq(mcpauth__store_refresh_add(s, "c-1", &other), -1);
    ck_assert_int_eq(mcpauth__store_refresh_add(s, "", &other), -1);
    ck_assert_int_eq(mcpauth__store_refresh_add(s, NULL, &other), -1);
    /* Same family, same owner: a second member is fine. */
    ck_assert_int_eq(mcpauth__store_refresh_add(s, "c-2", &other), 0);
    mcpauth__store_close(s);
}
END_TEST

/* Two processes refresh the same token at the same moment (a client with
 * two tabs): within grace both must come away with a working token. */
static void rotate_child(int go, int out, const char *new_token)
{
    char c;
    if (read(go, &c, 1) != 0)
        _exit(2);
    char err[256];
    mcpauth_store *s = mcpauth__store_open(dir, store_setting(), err, sizeof err);
    if (!s)
        _exit(3);
    mcpauth_grant g;
    int r = mcpauth__store_refresh_rotate(s, "shared-rt", new_token, 1000, 30, 9000, &g);
    mcpauth__grant_free(&g);
    mcpauth__store_close(s);
    _exit(write(out, &r, sizeof r) == (ssize_t)sizeof r ? 0 : 4);
}

START_TEST(refresh_race_processes)
{
    mcpauth_store *s = open_ok();
    add_refresh(s, "shared-rt", "fam-shared", "alice", "app", 10000);
    static const char *const next[2] = {"next-a", "next-b"};
    int go[2], res[2];
    ck_assert_int_eq(pipe(go), 0);
    ck_assert_int_eq(pipe(res), 0);
    pid_t pids[2];
    for (int i = 0; i < 2; i++) {
        pids[i] = fork();
        ck_assert_int_ge(pids[i], 0);
        if (pids[i] == 0) {
            close(go[1]);
            close(res[0]);
            rotate_child(go[0], res[1], next[i]);
        }
    }
    close(go[0]);
    close(res[1]);
    close(go[1]);
    for (int i = 0; i < 2; i++) {
        int st, r = -1;
        ck_assert_int_eq(waitpid(pids[i], &st, 0), pids[i]);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d status %d", i, st);
        ck_assert_int_eq(read(res[0], &r, sizeof r), (ssize_t)sizeof r);
        ck_assert_int_eq(r, MCPAUTH_ROTATE_OK);
    }
    close(res[0]);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "next-a", 1001, NULL), 1);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "next-b", 1001, NULL), 1);
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "fam-shared"), 0);
    mcpauth__store_close(s);
}
END_TEST

static int accept_all(const char *hash, time_t expires, void *arg)
{
    (void)hash;
    (void)expires;
    (void)arg;
    return 0;
}

/* How many access-token records hold token's digest. */
static long long access_rows(const char *token)
{
    char h[65], sql[160];
    mcpauth__sha256_hex(token, strlen(token), h);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM access WHERE hash = '%s'", h);
    sqlite3 *db = raw_open();
    long long n = raw_int(db, sql);
    sqlite3_close(db);
    return n;
}

/* 1 when token is stored unretired with its grace unspent. */
static int refresh_pristine(const char *token)
{
    char h[65], sql[200];
    mcpauth__sha256_hex(token, strlen(token), h);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM refresh WHERE hash = '%s' AND retired_at IS NULL"
             " AND grace_used = 0",
             h);
    sqlite3 *db = raw_open();
    long long n = raw_int(db, sql);
    sqlite3_close(db);
    return n == 1;
}

/* As the token endpoint does it: a look at the token, then the exchange
 * with an access token minted from that family (client "app" unless
 * told). */
static mcpauth_rotate exchange(mcpauth_store *s, const char *t, const char *n, time_t now,
                               long grace, const char *at, const char *client)
{
    mcpauth_grant peek, g;
    int pk = mcpauth__store_refresh_peek(s, t, now, &peek);
    mcpauth_rotate r = mcpauth__store_refresh_exchange(s, t, n, now, grace, now + 5000, at,
                                                      pk == 1 ? peek.family : NULL, now + 300,
                                                      client ? client : "app", &g);
    if (r == MCPAUTH_ROTATE_OK) {
        ck_assert_str_eq(g.user, "alice");
        ck_assert_str_eq(g.client_id, "app");
        ck_assert_str_eq(g.family, peek.family);
        ck_assert_int_eq(g.expires, n ? now + 5000 : peek.expires);
    } else {
        ck_assert_ptr_null(g.family);
    }
    mcpauth__grant_free(&g);
    if (pk == 1)
        mcpauth__grant_free(&peek);
    return r;
}

/* The refresh grant in one transaction: rotation, new token, access-token
 * record. */
START_TEST(refresh_exchange_basic)
{
    mcpauth_store *s = open_ok();
    add_refresh(s, "x-1", "fam-x", "alice", "app", 10000);
    mcpauth_grant g;
    ck_assert_int_eq(mcpauth__store_refresh_exchange(s, "x-1", "x-2", 1000, 10, 7000, "at-x1",
                                                     "fam-x", 1300, "app", &g),
                     MCPAUTH_ROTATE_OK);
    ck_assert_str_eq(g.family, "fam-x");
    ck_assert_str_eq(g.client_id, "app");
    ck_assert_str_eq(g.scope, "read write");
    ck_assert_int_eq(g.expires, 7000);
    mcpauth__grant_free(&g);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "x-1", 1000, NULL), 0); /* retired */
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "x-2", 1000, &g), 1);
    ck_assert_int_eq(g.expires, 7000);
    mcpauth__grant_free(&g);
    ck_assert_int_eq(access_rows("at-x1"), 1);
    char h[65], sql[160];
    mcpauth__sha256_hex("at-x1", 5, h);
    snprintf(sql, sizeof sql, "SELECT expires FROM access WHERE hash = '%s'", h);
    sqlite3 *db = raw_open();
    ck_assert_int_eq(raw_int(db, sql), 1300);
    sqlite3_close(db);

    /* another family than the one minted from: an error, nothing changed */
    ck_assert_int_eq(mcpauth__store_refresh_exchange(s, "x-2", "x-3", 1001, 10, 7000, "at-x2",
                                                     "fam-other", 1300, "app", &g),
                     MCPAUTH_ROTATE_ERROR);
    ck_assert_ptr_null(g.family);
    ck_assert_ptr_null(mcpauth__store_fault());
    ck_assert(refresh_pristine("x-2"));
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "x-3", 1001, NULL), 0);
    ck_assert_int_eq(access_rows("at-x2"), 0);
    /* an empty access token: refused before anything */
    ck_assert_int_eq(mcpauth__store_refresh_exchange(s, "x-2", "x-3", 1001, 10, 7000, "", NULL,
                                                     1300, NULL, &g),
                     MCPAUTH_ROTATE_ERROR);
    ck_assert(refresh_pristine("x-2"));
    /* no access token, no checks: a plain rotation */
    ck_assert_int_eq(exchange(s, "x-2", "x-3", 1002, 10, NULL, NULL), MCPAUTH_ROTATE_OK);
    ck_assert_int_eq(exchange(s, "x-3", "x-4", 1003, 10, "at-x4", NULL), MCPAUTH_ROTATE_OK);
    ck_assert_int_eq(access_rows("at-x4"), 1);
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "fam-x"), 0);
    ck_assert_int_eq(mcpauth__store_refresh_exchange(NULL, "x-4", "x-5", 1004, 10, 7000,
                                                     "at-x5", "fam-x", 1300, "app", &g),
                     MCPAUTH_ROTATE_ERROR);
    mcpauth__store_close(s);
}
END_TEST

/* A failure after the rotation (here the access token's record cannot be
 * written: its digest is taken) rolls everything back: the old token is
 * neither retired nor its grace spent, no new token is stored. */
START_TEST(refresh_exchange_all_or_nothing)
{
    mcpauth_store *s = open_ok();
    add_refresh(s, "f-1", "fam-f", "alice", "app", 10000);
    ck_assert_int_eq(mcpauth__store_access_add(s, "at-taken", "fam-f", 5000), 1);
    ck_assert_int_eq(exchange(s, "f-1", "f-2", 1000, 10, "at-taken", NULL), MCPAUTH_ROTATE_ERROR);
    ck_assert_ptr_null(mcpauth__store_fault()); /* a refusal, not a fault */
    ck_assert(refresh_pristine("f-1"));
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "f-1", 1000, NULL), 1);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "f-2", 1000, NULL), 0);
    /* the token works, and a failed grace use leaves the grace unspent */
    ck_assert_int_eq(exchange(s, "f-1", "f-2", 1000, 10, "at-f2", NULL), MCPAUTH_ROTATE_OK);
    ck_assert_int_eq(exchange(s, "f-1", "f-3", 1001, 10, "at-taken", NULL), MCPAUTH_ROTATE_ERROR);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "f-3", 1001, NULL), 0);
    sqlite3 *db = raw_open();
    ck_assert_int_eq(raw_int(db, "SELECT count(*) FROM refresh WHERE grace_used <> 0"), 0);
    sqlite3_close(db);
    ck_assert_int_eq(exchange(s, "f-1", "f-3", 1002, 10, "at-f3", NULL), MCPAUTH_ROTATE_OK);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "f-2", 1002, NULL), 1);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "f-3", 1002, NULL), 1);
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "fam-f"), 0);
    mcpauth__store_close(s);
}
END_TEST

/* Reuse detection and the grace window, through the exchange: no access
 * token is recorded for a refused use. */
START_TEST(refresh_exchange_reuse_and_grace)
{
    mcpauth_store *s = open_ok();
    add_refresh(s, "r-1", "fam-r", "alice", "app", 10000);
    ck_assert_int_eq(exchange(s, "r-1", "r-2", 1000, 10, "at-r2", NULL), MCPAUTH_ROTATE_OK);
    /* within grace: once more, and both new tokens live */
    ck_assert_int_eq(exchange(s, "r-1", "r-2b", 1009, 10, "at-r2b", NULL), MCPAUTH_ROTATE_OK);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "r-2", 1009, NULL), 1);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "r-2b", 1009, NULL), 1);
    ck_assert_int_eq(access_rows("at-r2b"), 1);
    /* grace spent: a third use (still inside the window) is reuse */
    ck_assert_int_eq(exchange(s, "r-1", "r-2c", 1009, 10, "at-r2c", NULL), MCPAUTH_ROTATE_REUSED);
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "fam-r"), 1);
    ck_assert_int_eq(access_rows("at-r2c"), 0);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "r-2c", 1009, NULL), 0);
    ck_assert_int_eq(exchange(s, "r-2", "r-3", 1010, 10, "at-r3", NULL), MCPAUTH_ROTATE_UNKNOWN);
    ck_assert_int_eq(access_rows("at-r3"), 0);

    /* no grace: any reuse is fatal; the window is exclusive */
    add_refresh(s, "n-1", "fam-n", "alice", "app", 10000);
    ck_assert_int_eq(exchange(s, "n-1", "n-2", 1000, 0, "at-n2", NULL), MCPAUTH_ROTATE_OK);
    ck_assert_int_eq(exchange(s, "n-1", "n-3", 1000, 0, "at-n3", NULL), MCPAUTH_ROTATE_REUSED);
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "fam-n"), 1);
    add_refresh(s, "w-1", "fam-w", "alice", "app", 10000);
    ck_assert_int_eq(exchange(s, "w-1", "w-2", 1000, 10, "at-w2", NULL), MCPAUTH_ROTATE_OK);
    ck_assert_int_eq(exchange(s, "w-1", "w-3", 1010, 10, "at-w3", NULL), MCPAUTH_ROTATE_REUSED);
    /* expired or unknown: nothing happens */
    add_refresh(s, "e-1", "fam-e", "alice", "app", 1000);
    ck_assert_int_eq(exchange(s, "e-1", "e-2", 1000, 10, "at-e2", NULL), MCPAUTH_ROTATE_UNKNOWN);
    ck_assert_int_eq(exchange(s, "nope", "e-2", 1000, 10, "at-e2", NULL), MCPAUTH_ROTATE_UNKNOWN);
    ck_assert_int_eq(exchange(s, NULL, "e-2", 1000, 10, "at-e2", NULL), MCPAUTH_ROTATE_UNKNOWN);
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "fam-e"), 0);
    ck_assert_int_eq(access_rows("at-e2"), 0);
    mcpauth__store_close(s);
}
END_TEST

/* A token presented by another client than its grant's was stolen: the
 * family dies, nothing is rotated or recorded. */
START_TEST(refresh_exchange_foreign_client)
{
    mcpauth_store *s = open_ok();
    add_refresh(s, "o-1", "fam-o", "alice", "app", 10000);
    ck_assert_int_eq(exchange(s, "o-1", "o-2", 1000, 10, "at-o2", "evil-app"),
                     MCPAUTH_ROTATE_FOREIGN);
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "fam-o"), 1);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "o-2", 1000, NULL), 0);
    ck_assert_int_eq(access_rows("at-o2"), 0);
    ck_assert_int_eq(exchange(s, "o-1", "o-3", 1001, 10, "at-o3", NULL), MCPAUTH_ROTATE_UNKNOWN);
    /* also a token rotated away, within its grace */
    add_refresh(s, "p-1", "fam-p", "alice", "app", 10000);
    ck_assert_int_eq(exchange(s, "p-1", "p-2", 1000, 10, "at-p2", NULL), MCPAUTH_ROTATE_OK);
    ck_assert_int_eq(exchange(s, "p-1", "p-3", 1001, 10, "at-p3", "evil-app"),
                     MCPAUTH_ROTATE_FOREIGN);
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "fam-p"), 1);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "p-2", 1001, NULL), 0);
    ck_assert_int_eq(access_rows("at-p3"), 0);
    /* the revoked family's access tokens are pushed (at-p2) */
    ck_assert_int_eq(mcpauth__store_access_revoked(s, 1001, accept_all, NULL), 1);
    mcpauth__store_close(s);
}
END_TEST

/* Expiry decisions follow the process clock, which never goes back: a
 * clock set back does not revive an expired client secret, and the
 * registration window moves with it. */
START_TEST(expiry_by_process_clock)
{
    mcpauth_store *s = open_ok();
    time_t t0 = time(NULL);
    mcpauth_client c = client("sec-app", t0);
    c.secret_expires = t0 + 600;
    ck_assert_int_eq(mcpauth__store_client_add(s, &c, "s3cret"), 0);
    mcpauth__clock_reset_for_test();
    mcpauth__clock_set_offset_for_test(0);
    ck_assert_int_eq(mcpauth__store_client_check_secret(s, "sec-app", "s3cret"), 1);
    ck_assert_int_eq(mcpauth__store_registration_allowed(s, "198.51.100.7", 1, 60), 1);
    ck_assert_int_eq(mcpauth__store_registration_allowed(s, "198.51.100.7", 1, 60), 0);
    /* an hour later the secret has expired and the window has moved on */
    mcpauth__clock_set_offset_for_test(3600);
    ck_assert_int_eq(mcpauth__store_client_check_secret(s, "sec-app", "s3cret"), 0);
    ck_assert_int_eq(mcpauth__store_registration_allowed(s, "198.51.100.7", 1, 60), 1);
    /* the clock set back by the hour: still expired, still counted */
    mcpauth__clock_set_offset_for_test(0);
    ck_assert_int_eq(mcpauth__store_client_check_secret(s, "sec-app", "s3cret"), 0);
    ck_assert_int_eq(mcpauth__store_registration_allowed(s, "198.51.100.7", 1, 60), 0);
    mcpauth__clock_reset_for_test();
    mcpauth__store_close(s);
}
END_TEST

/* ------------------------------------------------------------- revocation */

START_TEST(revocation)
{
    mcpauth_store *s = open_ok();
    add_refresh(s, "a1", "fa1", "alice", "app", 10000);
    add_refresh(s, "a2", "fa2", "alice", "app", 10000);
    add_refresh(s, "a3", "fa3", "alice", "other", 10000);
    add_refresh(s, "b1", "fb1", "bob", "app", 10000);
    add_refresh(s, "b2", "fb2", "bob", "other", 10000);
    mcpauth_grant cg = grant("fcode", "carol", "app", 2000);
    ck_assert_int_eq(mcpauth__store_code_add(s, "carol-code", &cg), 0);

    /* By token: refresh tokens only, its family only. */
    ck_assert_int_eq(mcpauth__store_revoke_token(s, "carol-code"), 0);
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "fcode"), 0);
    ck_assert_int_eq(mcpauth__store_revoke_token(s, "unknown"), 0);
    ck_assert_int_eq(mcpauth__store_revoke_token(s, NULL), 0);
    ck_assert_int_eq(mcpauth__store_revoke_token(s, "a1"), 1);
    ck_assert_int_eq(mcpauth__store_revoke_token(s, "a1"), 0); /* already */
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "fa1"), 1);
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "fa2"), 0);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "a1", 1000, NULL), 0);

    /* By user: the remaining two of alice's. */
    ck_assert_int_eq(mcpauth__store_revoke_user(s, "alice"), 2);
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "fa3"), 1);
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "fb1"), 0);
    ck_assert_int_eq(mcpauth__store_revoke_user(s, "nobody"), 0);

    /* By client: bob's and carol's (the pending code) under app. */
    ck_assert_int_eq(mcpauth__store_revoke_client(s, "app"), 2);
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "fb1"), 1);
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "fb2"), 0);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "b2", 1000, NULL), 1);
    ck_assert_int_eq(rotate(s, "b1", "b1-2", 1000, 10), MCPAUTH_ROTATE_UNKNOWN);
    ck_assert_int_eq(mcpauth__store_code_redeem(s, "carol-code", 1000, NULL),
                     MCPAUTH_REDEEM_UNKNOWN);

    /* By family id (access tokens carry it). */
    ck_assert_int_eq(mcpauth__store_revoke_family(s, "fb2"), 1);
    ck_assert_int_eq(mcpauth__store_revoke_family(s, "fb2"), 0);
    ck_assert_int_eq(mcpauth__store_revoke_family(s, "never-issued"), 0);
    ck_assert_int_eq(mcpauth__store_revoke_family(s, NULL), -1);
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "fb2"), 1);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "b2", 1000, NULL), 0);

    /* Unknown families read as revoked (fail closed). */
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "never-issued"), 1);
    ck_assert_int_eq(mcpauth__store_family_revoked(s, NULL), 1);
    ck_assert_int_eq(mcpauth__store_revoke_user(s, NULL), -1);
    ck_assert_int_eq(mcpauth__store_revoke_client(s, NULL), -1);
    mcpauth__store_close(s);
}
END_TEST

START_TEST(client_delete_cascade)
{
    mcpauth_store *s = open_ok();
    mcpauth_client c = client("gone", 100), k = client("kept", 100);
    ck_assert_int_eq(mcpauth__store_client_add(s, &c, "sec"), 0);
    ck_assert_int_eq(mcpauth__store_client_add(s, &k, "sec"), 0);
    for (int i = 0; i < 2; i++) {
        char *cl = i ? "kept" : "gone";
        char fam[32], code[32], rt[32];
        snprintf(fam, sizeof fam, "f-%s", cl);
        snprintf(code, sizeof code, "code-%s", cl);
        snprintf(rt, sizeof rt, "rt-%s", cl);
        mcpauth_grant g = grant(fam, "alice", cl, 2000);
        ck_assert_int_eq(mcpauth__store_code_add(s, code, &g), 0);
        add_refresh(s, rt, fam, "alice", cl, 10000);
        ck_assert_int_eq(mcpauth__store_consent_add(s, "alice", cl, "r", "read"), 0);
    }
    ck_assert_int_eq(mcpauth__store_client_delete(s, "gone"), 1);
    sqlite3 *db = raw_open();
    ck_assert_int_eq(raw_int(db, "SELECT count(*) FROM clients WHERE client_id = 'gone'"), 0);
    ck_assert_int_eq(raw_int(db, "SELECT count(*) FROM consents WHERE client_id = 'gone'"), 0);
    ck_assert_int_eq(raw_int(db, "SELECT count(*) FROM codes WHERE client_id = 'gone'"), 0);
    ck_assert_int_eq(raw_int(db, "SELECT count(*) FROM refresh WHERE client_id = 'gone'"), 0);
    ck_assert_int_eq(raw_int(db, "SELECT count(*) FROM families WHERE client_id = 'gone'"), 0);
    ck_assert_int_eq(raw_int(db, "SELECT count(*) FROM codes"), 1);
    ck_assert_int_eq(raw_int(db, "SELECT count(*) FROM refresh"), 1);
    ck_assert_int_eq(raw_int(db, "SELECT count(*) FROM families"), 1);
    ck_assert_int_eq(raw_int(db, "SELECT count(*) FROM consents"), 1);
    sqlite3_close(db);
    ck_assert_int_eq(mcpauth__store_code_redeem(s, "code-gone", 1000, NULL),
                     MCPAUTH_REDEEM_UNKNOWN);
    ck_assert_int_eq(rotate(s, "rt-gone", "x", 1000, 10), MCPAUTH_ROTATE_UNKNOWN);
    ck_assert_int_eq(mcpauth__store_consent_has(s, "alice", "gone", "r", "read"), 0);
    /* Access tokens still carrying the deleted family are refused. */
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "f-gone"), 1);
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "f-kept"), 0);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "rt-kept", 1000, NULL), 1);
    ck_assert_int_eq(mcpauth__store_consent_has(s, "alice", "kept", "r", "read"), 1);
    mcpauth__store_close(s);
}
END_TEST

/* --------------------------------------------------------------- consents */

START_TEST(consents)
{
    mcpauth_store *s = open_ok();
    const char *r = "https://mcp.example/";
    ck_assert_int_eq(mcpauth__store_consent_has(s, "u", "c", r, ""), 0); /* none stored */
    ck_assert_int_eq(mcpauth__store_consent_add(s, "u", "c", r, "read write"), 0);
    ck_assert_int_eq(mcpauth__store_consent_has(s, "u", "c", r, "read write"), 1);
    ck_assert_int_eq(mcpauth__store_consent_has(s, "u", "c", r, "write read"), 1);
    ck_assert_int_eq(mcpauth__store_consent_has(s, "u", "c", r, "  write\tread  read "), 1);
    ck_assert_int_eq(mcpauth__store_consent_has(s, "u", "c", r, "read"), 1);
    ck_assert_int_eq(mcpauth__store_consent_has(s, "u", "c", r, ""), 1);
    ck_assert_int_eq(mcpauth__store_consent_has(s, "u", "c", r, NULL), 1);
    ck_assert_int_eq(mcpauth__store_consent_has(s, "u", "c", r, "read admin"), 0);
    ck_assert_int_eq(mcpauth__store_consent_has(s, "u", "c", r, "rea"), 0);
    ck_assert_int_eq(mcpauth__store_consent_has(s, "u", "c", r, "read write admin"), 0);
    /* Bound to the exact triple. */
    ck_assert_int_eq(mcpauth__store_consent_has(s, "u", "c", "https://other/", "read"), 0);
    ck_assert_int_eq(mcpauth__store_consent_has(s, "u", "c", NULL, "read"), 0);
    ck_assert_int_eq(mcpauth__store_consent_has(s, "u", "c2", r, "read"), 0);
    ck_assert_int_eq(mcpauth__store_consent_has(s, "u2", "c", r, "read"), 0);

    /* Adding stores the union. */
    ck_assert_int_eq(mcpauth__store_consent_add(s, "u", "c", r, "admin  read\twrite admin"), 0);
    ck_assert_int_eq(mcpauth__store_consent_has(s, "u", "c", r, "admin write read"), 1);
    sqlite3 *db = raw_open();
    char scope[128];
    raw_str(db, "SELECT scope FROM consents", scope, sizeof scope);
    ck_assert_str_eq(scope, "read write admin");
    ck_assert_int_eq(raw_int(db, "SELECT count(*) FROM consents"), 1);
    sqlite3_close(db);
    ck_assert_int_eq(mcpauth__store_consent_add(s, "u", "c", r, "read"), 0); /* no loss */
    ck_assert_int_eq(mcpauth__store_consent_has(s, "u", "c", r, "admin"), 1);

    /* An empty consent covers only the empty request; NULL resource works. */
    ck_assert_int_eq(mcpauth__store_consent_add(s, "u", "c", "https://empty/", NULL), 0);
    ck_assert_int_eq(mcpauth__store_consent_has(s, "u", "c", "https://empty/", ""), 1);
    ck_assert_int_eq(mcpauth__store_consent_has(s, "u", "c", "https://empty/", "read"), 0);
    ck_assert_int_eq(mcpauth__store_consent_add(s, "u", "c", NULL, "x"), 0);
    ck_assert_int_eq(mcpauth__store_consent_has(s, "u", "c", NULL, "x"), 1);
    ck_assert_int_eq(mcpauth__store_consent_has(s, NULL, "c", r, "x"), -1);
    ck_assert_int_eq(mcpauth__store_consent_add(s, "u", NULL, r, "x"), -1);
    mcpauth__store_close(s);
}
END_TEST

/* ---------------------------------------------------------- registrations */

START_TEST(registration_limit)
{
    mcpauth_store *s = open_ok();
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(mcpauth__store_registration_allowed(s, "192.0.2.1", 3, 3600), 1);
    ck_assert_int_eq(mcpauth__store_registration_allowed(s, "192.0.2.1", 3, 3600), 0);
    ck_assert_int_eq(mcpauth__store_registration_allowed(s, "192.0.2.1", 3, 3600), 0);
    ck_assert_int_eq(mcpauth__store_registration_allowed(s, "192.0.2.2", 3, 3600), 1);
    ck_assert_int_eq(mcpauth__store_registration_allowed(s, "192.0.2.3", 0, 3600), 0);
    ck_assert_int_eq(mcpauth__store_registration_allowed(s, NULL, 3, 3600), -1);
    /* Refusals are not counted: 3 rows for .1, not 5. */
    sqlite3 *db = raw_open();
    ck_assert_int_eq(raw_int(db, "SELECT count(*) FROM registrations WHERE addr = '192.0.2.1'"),
                     3);
    /* Only the window counts: rows from two minutes ago fall outside 60 s. */
    char sql[160];
    snprintf(sql, sizeof sql,
             "INSERT INTO registrations(addr, time) VALUES('198.51.100.7', %lld),"
             " ('198.51.100.7', %lld)",
             (long long)time(NULL) - 120, (long long)time(NULL) - 119);
    raw_exec(db, sql);
    sqlite3_close(db);
    ck_assert_int_eq(mcpauth__store_registration_allowed(s, "198.51.100.7", 2, 60), 1);
    ck_assert_int_eq(mcpauth__store_registration_allowed(s, "198.51.100.7", 2, 60), 1);
    ck_assert_int_eq(mcpauth__store_registration_allowed(s, "198.51.100.7", 2, 60), 0);
    ck_assert_int_eq(mcpauth__store_registration_allowed(s, "198.51.100.7", 5, 3600), 1);
    ck_assert_int_eq(mcpauth__store_registration_allowed(s, "198.51.100.7", 5, 3600), 0);
    mcpauth__store_close(s);
}
END_TEST

/* ------------------------------------------------------------------- keys */

struct key_acc {
    char kids[8][16];
    time_t retired[8];
    int n;
};

static int collect_key(const mcpauth_keyinfo *k, void *arg)
{
    struct key_acc *a = arg;
    ck_assert_ptr_nonnull(k->alg);
    ck_assert_ptr_nonnull(k->file);
    a->retired[a->n] = k->retired;
    snprintf(a->kids[a->n++], sizeof a->kids[0], "%s", k->kid);
    return 0;
}

static mcpauth_keyinfo key(char *kid, time_t created)
{
    mcpauth_keyinfo k = {0};
    k.kid = kid;
    k.alg = "ES256";
    k.file = "/var/lib/mcpauth/keys/x.pem";
    k.created = created;
    return k;
}

START_TEST(keys)
{
    mcpauth_store *s = open_ok();
    mcpauth_keyinfo k1 = key("k1", 100), k2 = key("k2", 200), k3 = key("k3", 400);
    ck_assert_int_eq(mcpauth__store_key_add(s, &k1), 0);
    ck_assert_int_eq(mcpauth__store_key_add(s, &k1), -1); /* duplicate kid */
    ck_assert_int_eq(mcpauth__store_key_retire_all(s, 150), 1);
    ck_assert_int_eq(mcpauth__store_key_add(s, &k2), 0);
    ck_assert_int_eq(mcpauth__store_key_retire_all(s, 300), 1); /* k1 keeps 150 */
    ck_assert_int_eq(mcpauth__store_key_add(s, &k3), 0);

    struct key_acc acc = {0};
    ck_assert_int_eq(mcpauth__store_key_list(s, 100, collect_key, &acc), 0);
    ck_assert_int_eq(acc.n, 3);
    ck_assert_str_eq(acc.kids[0], "k3");
    ck_assert_int_eq(acc.retired[0], 0);
    ck_assert_str_eq(acc.kids[1], "k2");
    ck_assert_int_eq(acc.retired[1], 300);
    ck_assert_str_eq(acc.kids[2], "k1");
    ck_assert_int_eq(acc.retired[2], 150);
    memset(&acc, 0, sizeof acc);
    ck_assert_int_eq(mcpauth__store_key_list(s, 150, collect_key, &acc), 0);
    ck_assert_int_eq(acc.n, 2); /* retired > since, strictly */
    memset(&acc, 0, sizeof acc);
    ck_assert_int_eq(mcpauth__store_key_list(s, 300, collect_key, &acc), 0);
    ck_assert_int_eq(acc.n, 1);
    ck_assert_str_eq(acc.kids[0], "k3");

    /* Purge drops keys retired before the cutoff, never the current one. */
    ck_assert_int_eq(mcpauth__store_purge(s, 1000, 200), 1);
    memset(&acc, 0, sizeof acc);
    ck_assert_int_eq(mcpauth__store_key_list(s, 0, collect_key, &acc), 0);
    ck_assert_int_eq(acc.n, 2);
    ck_assert_int_eq(mcpauth__store_purge(s, 1000, 100000), 1);
    memset(&acc, 0, sizeof acc);
    ck_assert_int_eq(mcpauth__store_key_list(s, 0, collect_key, &acc), 0);
    ck_assert_int_eq(acc.n, 1);
    ck_assert_str_eq(acc.kids[0], "k3");

    mcpauth_keyinfo bad = key(NULL, 1);
    ck_assert_int_eq(mcpauth__store_key_add(s, &bad), -1);
    ck_assert_int_eq(mcpauth__store_key_add(s, NULL), -1);
    mcpauth_keyinfo z = {0};
    mcpauth__keyinfo_free(&z);
    mcpauth__keyinfo_free(NULL);
    mcpauth__store_close(s);
}
END_TEST

/* Rotation is one transaction: the new key becomes current as the old
 * one retires, and when the add fails (a kid already there) nothing
 * changes: the old key stays current, never "no current key". */
START_TEST(key_rotate_atomic)
{
    mcpauth_store *s = open_ok();
    mcpauth_keyinfo k1 = key("k1", 100), k2 = key("k2", 200);
    ck_assert_int_eq(mcpauth__store_key_add(s, &k1), 0);
    ck_assert_int_eq(mcpauth__store_key_rotate(s, &k2, 200), 0);
    struct key_acc acc = {0};
    ck_assert_int_eq(mcpauth__store_key_list(s, 0, collect_key, &acc), 0);
    ck_assert_int_eq(acc.n, 2);
    ck_assert_str_eq(acc.kids[0], "k2");
    ck_assert_int_eq(acc.retired[0], 0);
    ck_assert_str_eq(acc.kids[1], "k1");
    ck_assert_int_eq(acc.retired[1], 200);
    ck_assert_int_eq(mcpauth__store_key_rotate(s, &k1, 300), -1); /* duplicate kid */
    memset(&acc, 0, sizeof acc);
    ck_assert_int_eq(mcpauth__store_key_list(s, 0, collect_key, &acc), 0);
    ck_assert_int_eq(acc.n, 2);
    ck_assert_str_eq(acc.kids[0], "k2");
    ck_assert_int_eq(acc.retired[0], 0); /* still current: the retire was rolled back */
    ck_assert_int_eq(mcpauth__store_key_rotate(s, NULL, 300), -1);
    mcpauth__store_close(s);
}
END_TEST

/* ----------------------------------------------------------------- purge */

START_TEST(purge_counts)
{
    mcpauth_store *s = open_ok();
    mcpauth_grant ga = grant("FA", "alice", "app", 5000), gb = grant("FB", "alice", "app", 9000),
                  gc = grant("FC", "alice", "app", 300000);
    ck_assert_int_eq(mcpauth__store_code_add(s, "A", &ga), 0);
    ck_assert_int_eq(mcpauth__store_code_add(s, "B", &gb), 0);
    ck_assert_int_eq(mcpauth__store_code_add(s, "C", &gc), 0);
    ck_assert_int_eq(mcpauth__store_code_redeem(s, "B", 8000, NULL), MCPAUTH_REDEEM_OK);
    add_refresh(s, "r1", "FR", "alice", "app", 5000);
    add_refresh(s, "r2", "FR2", "alice", "app", 300000);
    add_refresh(s, "r3", "FL", "alice", "app", 150000);
    mcpauth_keyinfo k1 = key("k1", 100), k2 = key("k2", 200);
    k1.retired = 1000;
    k2.retired = 5000;
    ck_assert_int_eq(mcpauth__store_key_add(s, &k1), 0);
    ck_assert_int_eq(mcpauth__store_key_add(s, &k2), 0);
    mcpauth_keyinfo k3 = key("k3", 300);
    ck_assert_int_eq(mcpauth__store_key_add(s, &k3), 0);

    /* At 8500: code A and token r1 expired; families linger; the used but
     * unexpired code B stays so its replay is still caught. */
    ck_assert_int_eq(mcpauth__store_purge(s, 8500, 0), 2);
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "FA"), 0);
    ck_assert_int_eq(mcpauth__store_code_redeem(s, "B", 8600, NULL), MCPAUTH_REDEEM_REPLAYED);

    sqlite3 *db = raw_open();
    raw_exec(db, "INSERT INTO registrations(addr, time) VALUES('x', 100000), ('x', 150000)");
    sqlite3_close(db);
    /* At 200000: code B, token r3 (2); families FA, FB, FR, unused for over
     * a day, with no tokens left (3); FL was used at 150000 and lingers;
     * the registration from 100000 (1); key k1 retired before 2000 (1). */
    ck_assert_int_eq(mcpauth__store_purge(s, 200000, 2000), 7);
    ck_assert_int_eq(mcpauth__store_purge(s, 200000, 2000), 0);
    db = raw_open();
    ck_assert_int_eq(raw_int(db, "SELECT count(*) FROM codes"), 1);
    ck_assert_int_eq(raw_int(db, "SELECT count(*) FROM refresh"), 1);
    ck_assert_int_eq(raw_int(db, "SELECT count(*) FROM families"), 3);
    ck_assert_int_eq(raw_int(db, "SELECT count(*) FROM registrations"), 1);
    ck_assert_int_eq(raw_int(db, "SELECT count(*) FROM keys"), 2);
    sqlite3_close(db);
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "FC"), 0);
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "FR2"), 0);
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "FL"), 0);
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "FA"), 1); /* gone: fails closed */
    ck_assert_int_eq(mcpauth__store_code_redeem(s, "C", 200000, NULL), MCPAUTH_REDEEM_OK);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "r2", 200000, NULL), 1);
    mcpauth__store_close(s);
}
END_TEST

/* ------------------------------------------------ threads, fork, NULLs */

#define NTHREADS 4
#define PER_THREAD 25

struct thread_arg {
    mcpauth_store *s;
    int id, ok, shared_ok, shared_replayed;
    pthread_barrier_t *barrier;
};

static void *thread_main(void *p)
{
    struct thread_arg *a = p;
    for (int i = 0; i < PER_THREAD; i++) {
        char code[32], fam[32];
        snprintf(code, sizeof code, "t%d-code-%d", a->id, i);
        snprintf(fam, sizeof fam, "t%d-fam-%d", a->id, i);
        mcpauth_grant g = grant(fam, "alice", "app", 2000), out;
        if (mcpauth__store_code_add(a->s, code, &g) == 0 &&
            mcpauth__store_code_redeem(a->s, code, 1000, &out) == MCPAUTH_REDEEM_OK) {
            a->ok += strcmp(out.family, fam) == 0;
            mcpauth__grant_free(&out);
        }
    }
    pthread_barrier_wait(a->barrier);
    mcpauth_redeem r = mcpauth__store_code_redeem(a->s, "thread-shared", 1000, NULL);
    a->shared_ok = r == MCPAUTH_REDEEM_OK;
    a->shared_replayed = r == MCPAUTH_REDEEM_REPLAYED;
    return NULL;
}

START_TEST(threads_shared_handle)
{
    mcpauth_store *s = open_ok();
    mcpauth_grant g = grant("thread-fam", "alice", "app", 2000);
    ck_assert_int_eq(mcpauth__store_code_add(s, "thread-shared", &g), 0);
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, NTHREADS);
    pthread_t t[NTHREADS];
    struct thread_arg args[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        args[i] = (struct thread_arg){.s = s, .id = i, .barrier = &barrier};
        ck_assert_int_eq(pthread_create(&t[i], NULL, thread_main, &args[i]), 0);
    }
    int ok = 0, replayed = 0;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(args[i].ok, PER_THREAD);
        ok += args[i].shared_ok;
        replayed += args[i].shared_replayed;
    }
    pthread_barrier_destroy(&barrier);
    ck_assert_int_eq(ok, 1);
    ck_assert_int_eq(replayed, NTHREADS - 1);
    mcpauth__store_close(s);
}
END_TEST

/* A handle inherited over fork() is refused rather than corrupting the
 * parent's connection. */
START_TEST(fork_guard)
{
    mcpauth_store *s = open_ok();
    mcpauth_grant g = grant("fork-fam", "alice", "app", 2000);
    ck_assert_int_eq(mcpauth__store_code_add(s, "fork-code", &g), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int bad = mcpauth__store_code_redeem(s, "fork-code", 1000, NULL) != MCPAUTH_REDEEM_ERROR ||
                  mcpauth__store_family_revoked(s, "fork-fam") != -1 ||
                  mcpauth__store_purge(s, 1000, 0) != -1;
        mcpauth__store_close(s);
        _exit(bad);
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
    ck_assert_int_eq(mcpauth__store_code_redeem(s, "fork-code", 1000, NULL), MCPAUTH_REDEEM_OK);
    mcpauth__store_close(s);
}
END_TEST

static int never(const mcpauth_client *c, void *arg)
{
    (void)c;
    (void)arg;
    return 1;
}

static int never_key(const mcpauth_keyinfo *k, void *arg)
{
    (void)k;
    (void)arg;
    return 1;
}

START_TEST(null_handle)
{
    mcpauth_client c = client("x", 1);
    mcpauth_grant g = grant("f", "u", "c", 1);
    mcpauth_keyinfo k = key("k", 1);
    ck_assert_int_eq(mcpauth__store_client_add(NULL, &c, NULL), -1);
    ck_assert_int_eq(mcpauth__store_client_get(NULL, "x", &c), -1);
    ck_assert_ptr_null(c.client_id); /* cleared even on error */
    ck_assert_int_eq(mcpauth__store_client_get(NULL, "x", NULL), -1);
    ck_assert_int_eq(mcpauth__store_client_check_secret(NULL, "x", "y"), -1);
    ck_assert_int_eq(mcpauth__store_client_delete(NULL, "x"), -1);
    ck_assert_int_eq(mcpauth__store_client_list(NULL, never, NULL), -1);
    ck_assert_int_eq(mcpauth__store_registration_allowed(NULL, "a", 1, 1), -1);
    ck_assert_int_eq(mcpauth__store_code_add(NULL, "c", &g), -1);
    ck_assert_int_eq(mcpauth__store_code_redeem(NULL, "c", 1, &g), MCPAUTH_REDEEM_ERROR);
    ck_assert_ptr_null(g.family);
    g = grant("f", "u", "c", 1);
    ck_assert_int_eq(mcpauth__store_refresh_add(NULL, "t", &g), -1);
    ck_assert_int_eq(mcpauth__store_refresh_rotate(NULL, "t", "n", 1, 1, 1, &g),
                     MCPAUTH_ROTATE_ERROR);
    ck_assert_int_eq(mcpauth__store_refresh_get(NULL, "t", 1, NULL), -1);
    ck_assert_int_eq(mcpauth__store_revoke_token(NULL, "t"), -1);
    ck_assert_int_eq(mcpauth__store_revoke_user(NULL, "u"), -1);
    ck_assert_int_eq(mcpauth__store_revoke_client(NULL, "c"), -1);
    ck_assert_int_eq(mcpauth__store_revoke_family(NULL, "f"), -1);
    ck_assert_int_eq(mcpauth__store_family_revoked(NULL, "f"), -1);
    ck_assert_int_eq(mcpauth__store_consent_has(NULL, "u", "c", "r", "s"), -1);
    ck_assert_int_eq(mcpauth__store_consent_add(NULL, "u", "c", "r", "s"), -1);
    ck_assert_int_eq(mcpauth__store_key_add(NULL, &k), -1);
    ck_assert_int_eq(mcpauth__store_key_retire_all(NULL, 1), -1);
    ck_assert_int_eq(mcpauth__store_key_list(NULL, 0, never_key, NULL), -1);
    ck_assert_int_eq(mcpauth__store_purge(NULL, 1, 1), -1);
    mcpauth__store_close(NULL);
    mcpauth_client zc = {0};
    mcpauth_grant zg = {0};
    mcpauth__client_free(&zc);
    mcpauth__grant_free(&zg);
}
END_TEST


typedef struct {
    int n;
    char hashes[8][65];
    int refuse;
} pushed;

static int take_access(const char *hash, time_t expires, void *arg)
{
    pushed *p = arg;
    (void)expires;
    if (p->refuse)
        return -1;
    if (p->n < 8)
        snprintf(p->hashes[p->n], sizeof p->hashes[0], "%s", hash);
    p->n++;
    return 0;
}

/* Access tokens are recorded per grant; those of revoked or deleted grants
 * are handed out once (for the shared revocation list), live ones never. */
START_TEST(access_tokens_of_revoked_grants)
{
    mcpauth_store *s = open_ok();
    time_t now = time(NULL);
    mcpauth_client c = client("app", now);
    ck_assert_int_eq(mcpauth__store_client_add(s, &c, NULL), 0);
    mcpauth_grant g = grant("fam1", "alice", "app", now + 600);
    ck_assert_int_eq(mcpauth__store_code_add(s, "code1", &g), 0);
    g = grant("fam2", "alice", "app", now + 600);
    ck_assert_int_eq(mcpauth__store_code_add(s, "code2", &g), 0);
    ck_assert_int_eq(mcpauth__store_access_add(s, "at1", "fam1", now + 300), 1);
    ck_assert_int_eq(mcpauth__store_access_add(s, "at1b", "fam1", now - 1), 1); /* expired */
    ck_assert_int_eq(mcpauth__store_access_add(s, "at2", "fam2", now + 300), 1);
    ck_assert_int_eq(mcpauth__store_access_add(s, "at-x", "no-such-family", now + 300), 0);
    pushed p = {0};
    ck_assert_int_eq(mcpauth__store_access_revoked(s, now, take_access, &p), 0);
    ck_assert_int_eq(p.n, 0);
    ck_assert_int_eq(mcpauth__store_revoke_family(s, "fam1"), 1);
    /* a grant revoked meanwhile gets no more tokens */
    ck_assert_int_eq(mcpauth__store_access_add(s, "at1c", "fam1", now + 300), 0);
    p.refuse = 1; /* not taken: offered again */
    ck_assert_int_eq(mcpauth__store_access_revoked(s, now, take_access, &p), 0);
    p.refuse = 0;
    ck_assert_int_eq(mcpauth__store_access_revoked(s, now, take_access, &p), 1);
    char want[65];
    mcpauth__sha256_hex("at1", 3, want);
    ck_assert_str_eq(p.hashes[0], want);
    ck_assert_int_eq(mcpauth__store_access_revoked(s, now, take_access, &p), 0);
    /* a deleted client's tokens count as revoked */
    ck_assert_int_eq(mcpauth__store_client_delete(s, "app"), 1);
    ck_assert_int_eq(mcpauth__store_access_revoked(s, now, take_access, &p), 1);
    mcpauth__sha256_hex("at2", 3, want);
    ck_assert_str_eq(p.hashes[1], want);
    /* purge drops expired records */
    ck_assert_int_ge(mcpauth__store_purge(s, now + 400, 0), 2);
    ck_assert_int_eq(mcpauth__store_access_revoked(s, now, take_access, &p), 0);
    ck_assert_int_eq(mcpauth__store_access_add(NULL, "t", "f", 1), -1);
    ck_assert_int_eq(mcpauth__store_access_revoked(NULL, 1, take_access, &p), -1);
    mcpauth__store_close(s);
}
END_TEST

/* A consent form is consumed once, also across processes; purged after. */
START_TEST(consent_form_once)
{
    mcpauth_store *s = open_ok();
    time_t now = time(NULL);
    ck_assert_int_eq(mcpauth__store_form_use(s, "csrf-1", now + 600), 1);
    ck_assert_int_eq(mcpauth__store_form_use(s, "csrf-1", now + 600), 0);
    ck_assert_int_eq(mcpauth__store_form_use(s, "csrf-2", now + 600), 1);
    mcpauth_store *o = open_ok(); /* another connection, as another process */
    ck_assert_int_eq(mcpauth__store_form_use(o, "csrf-2", now + 600), 0);
    mcpauth__store_close(o);
    ck_assert_int_eq(mcpauth__store_purge(s, now + 601, 0), 2);
    ck_assert_int_eq(mcpauth__store_form_use(s, "", now), -1);
    ck_assert_int_eq(mcpauth__store_form_use(NULL, "x", now), -1);
    mcpauth__store_close(s);
}
END_TEST

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Bug found by bench/bench_as: with two mcpauth-as processes writing
 * without pause some connection always held a snapshot, SQLite's passive
 * checkpoints never finished, the WAL never started over and grew to
 * 900 MB in 30 s (the store now forces a RESTART checkpoint; bench_as shows
 * the WAL at 16 MiB, which a unit test cannot reproduce reliably).  What
 * is tested here: a reader holds its snapshot while the store writes 20 MB;
 * commits must not wait on it for long (the RESTART gives up after 50 ms,
 * not busy_timeout's 5 s), and once the reader lets go the WAL must start
 * over and be cut back to its 16 MiB limit (journal_size_limit). */
START_TEST(wal_starts_over_after_stuck_reader)
{
    mcpauth_store *s = open_ok();
    sqlite3 *r = raw_open();
    raw_exec(r, "BEGIN");
    ck_assert_int_ge(raw_int(r, "SELECT count(*) FROM consent_forms"), 0); /* the snapshot */
    char id[96], wal[200];
    snprintf(wal, sizeof wal, "%s-wal", dbpath);
    double worst = 0;
    struct stat st;
    int i = 0;
    /* until the WAL is well past 16 MiB */
    for (; i < 200000 && (stat(wal, &st) != 0 || st.st_size < (20 << 20)); i++) {
        snprintf(id, sizeof id, "form-%d-padding-padding-padding-padding-padding", i);
        double t0 = mono_s();
        ck_assert_int_eq(mcpauth__store_form_use(s, id, time(NULL) + 600), 1);
        double t = mono_s() - t0;
        if (t > worst)
            worst = t;
    }
    ck_assert_msg(st.st_size >= (20 << 20), "the WAL did not grow past 20 MiB (%lld)",
                  (long long)st.st_size);
    ck_assert_msg(worst < 1.0, "a commit waited %.2f s on the stuck reader", worst);
    raw_exec(r, "COMMIT");
    sqlite3_close(r);
    for (int k = 0; k < 2000; k++, i++) {
        snprintf(id, sizeof id, "form-%d-padding-padding-padding-padding-padding", i);
        ck_assert_int_eq(mcpauth__store_form_use(s, id, time(NULL) + 600), 1);
    }
    ck_assert_int_eq(stat(wal, &st), 0);
    mcpauth__store_close(s);
    ck_assert_msg(st.st_size <= (16 << 20), "the WAL stayed at %lld bytes", (long long)st.st_size);
}
END_TEST

/* The code exchange is one transaction: a refresh token that cannot be
 * stored leaves the code unused and no access token recorded. */
START_TEST(code_exchange_all_or_nothing)
{
    mcpauth_store *s = open_ok();
    mcpauth_grant g = grant("fam-x", "alice", "app", 2000);
    ck_assert_int_eq(mcpauth__store_code_add(s, "code-x", &g), 0);
    mcpauth_grant other = grant("fam-y", "alice", "app", 100000);
    ck_assert_int_eq(mcpauth__store_refresh_add(s, "rt-taken", &other), 0);
    mcpauth_grant out;
    ck_assert_int_eq(mcpauth__store_code_peek(s, "code-x", 1000, &out), 1);
    ck_assert_str_eq(out.family, "fam-x");
    mcpauth__grant_free(&out);
    /* the refresh token's hash exists: the insert fails, all rolls back */
    ck_assert_int_eq(mcpauth__store_code_exchange(s, "code-x", 1000, "fam-x", "rt-taken", 9000,
                                                  "at-1", 5000, &out),
                     MCPAUTH_REDEEM_ERROR);
    ck_assert_ptr_null(mcpauth__store_fault()); /* a refusal, not a fault */
    ck_assert_int_eq(mcpauth__store_access_add(s, "at-1", "fam-x", 5000), 1); /* not there */
    /* another family than the one looked at: nothing happens */
    ck_assert_int_eq(mcpauth__store_code_exchange(s, "code-x", 1000, "fam-y", NULL, 0, NULL, 0,
                                                  &out),
                     MCPAUTH_REDEEM_ERROR);
    ck_assert_int_eq(mcpauth__store_code_exchange(s, "code-x", 1000, "fam-x", "rt-x", 9000,
                                                  "at-2", 5000, &out),
                     MCPAUTH_REDEEM_OK);
    ck_assert_str_eq(out.user, "alice");
    mcpauth__grant_free(&out);
    ck_assert_int_eq(mcpauth__store_code_peek(s, "code-x", 1000, &out), 0);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "rt-x", 1000, &out), 1);
    mcpauth__grant_free(&out);
    ck_assert_int_eq(mcpauth__store_code_redeem(s, "code-x", 1000, NULL), MCPAUTH_REDEEM_REPLAYED);
    mcpauth__store_close(s);
}
END_TEST

/* Another process holding the write lock: the call fails after the busy
 * timeout, says why, changes nothing, and works once the lock is gone. */
START_TEST(locked_by_other_process)
{
    mcpauth_store *s = open_ok();
    mcpauth__store_set_busy_timeout(s, 50);
    mcpauth_grant g = grant("fam-l", "alice", "app", 2000);
    ck_assert_int_eq(mcpauth__store_code_add(s, "code-l", &g), 0);
    ck_assert_ptr_null(mcpauth__store_fault());
    sqlite3 *db = raw_open();
    ck_assert_int_eq(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    ck_assert_int_eq(mcpauth__store_code_redeem(s, "code-l", 1000, NULL), MCPAUTH_REDEEM_ERROR);
    const char *why = mcpauth__store_fault();
    ck_assert_msg(why && strstr(why, "locked by another process"), "%s", why ? why : "(null)");
    mcpauth_grant out;
    ck_assert_int_eq(mcpauth__store_code_peek(s, "code-l", 1000, &out), 1); /* reads go on */
    mcpauth__grant_free(&out);
    ck_assert_ptr_null(mcpauth__store_fault());
    ck_assert_int_eq(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    ck_assert_int_eq(mcpauth__store_code_redeem(s, "code-l", 1000, NULL), MCPAUTH_REDEEM_OK);
    mcpauth__store_close(s);
}
END_TEST

/* ------------------------------------------------------------ PostgreSQL */

#ifdef HAVE_LIBPQ
#include <libpq-fe.h>

#include "db.h"

static int pg_started;

static void pg_suite_setup(void)
{
    scratch_suite_setup();
    pg_started = pgtest_start() == 0;
}

static void setup_pg(void)
{
    scratch_setup();
    snprintf(dbpath, sizeof dbpath, "%s/mcpauth.db", dir);
    ck_assert_msg(pg_started, "the private PostgreSQL server did not start (see stderr)");
    on_pg = 1;
    /* a fault test that failed half way may have left it stopped */
    if (pgtest_new_schema(pg_conninfo, sizeof pg_conninfo) < 0)
        ck_assert_msg(pgtest_restart() == 0 &&
                          pgtest_new_schema(pg_conninfo, sizeof pg_conninfo) == 0,
                      "no schema on the private PostgreSQL server");
}

/* Every value of every table, as text: secrets only as digests. */
START_TEST(pg_hashes_only_in_tables)
{
    mcpauth_store *s = open_ok();
    fill_plains(s);
    static const char *const tables[] = {"clients", "families", "codes", "refresh",
                                         "consents", "keys", "access", "consent_forms",
                                         "registrations", "settings", "schema_version"};
    static char rows[1 << 16];
    int found[NPLAINS] = {0};
    for (size_t t = 0; t < sizeof tables / sizeof *tables; t++) {
        char sql[160];
        snprintf(sql, sizeof sql, "SELECT coalesce(string_agg(x::text, '|'), '') FROM %s x",
                 tables[t]);
        raw_str(NULL, sql, rows, sizeof rows);
        ck_assert_uint_lt(strlen(rows), sizeof rows - 1);
        for (size_t i = 0; i < NPLAINS; i++) {
            char h[65];
            mcpauth__sha256_hex(plains[i], strlen(plains[i]), h);
            ck_assert_msg(!strstr(rows, plains[i]), "plain %s found in %s", plains[i], tables[t]);
            found[i] += strstr(rows, h) != NULL;
        }
    }
    for (size_t i = 0; i < NPLAINS; i++)
        ck_assert_msg(found[i] > 0, "digest of %s not stored", plains[i]);
    mcpauth__store_close(s);
}
END_TEST

struct race_arg {
    mcpauth_store *s;
    const char *code;
    pthread_barrier_t *barrier;
    int r;
};

static void *race_main(void *p)
{
    struct race_arg *a = p;
    pthread_barrier_wait(a->barrier);
    a->r = mcpauth__store_code_redeem(a->s, a->code, 1000, NULL);
    return NULL;
}

/* Two connections (two hosts, as far as the server can tell) redeem one
 * code at the same moment, many times: exactly one OK each time, and
 * never an error (no serialization failure reaches the caller). */
START_TEST(pg_redeem_race_two_handles)
{
    mcpauth_store *a = open_ok(), *b = open_ok();
    for (int round = 0; round < 30; round++) {
        char code[32], fam[32];
        snprintf(code, sizeof code, "race-code-%d", round);
        snprintf(fam, sizeof fam, "race-fam-%d", round);
        mcpauth_grant g = grant(fam, "alice", "app", 2000);
        ck_assert_int_eq(mcpauth__store_code_add(round % 2 ? a : b, code, &g), 0);
        pthread_barrier_t barrier;
        pthread_barrier_init(&barrier, NULL, 2);
        struct race_arg ra = {a, code, &barrier, -1}, rb = {b, code, &barrier, -1};
        pthread_t ta, tb;
        ck_assert_int_eq(pthread_create(&ta, NULL, race_main, &ra), 0);
        ck_assert_int_eq(pthread_create(&tb, NULL, race_main, &rb), 0);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        pthread_barrier_destroy(&barrier);
        ck_assert_msg((ra.r == MCPAUTH_REDEEM_OK) + (rb.r == MCPAUTH_REDEEM_OK) == 1,
                      "round %d: %d and %d", round, ra.r, rb.r);
        ck_assert_int_eq((ra.r == MCPAUTH_REDEEM_REPLAYED) + (rb.r == MCPAUTH_REDEEM_REPLAYED), 1);
        ck_assert_int_eq(mcpauth__store_family_revoked(a, fam), 1); /* the replay revoked it */
    }
    mcpauth__store_close(a);
    mcpauth__store_close(b);
}
END_TEST

/* A refresh token rotated through one host and replayed at another, late:
 * the family dies for both. */
START_TEST(pg_reuse_across_handles)
{
    mcpauth_store *a = open_ok(), *b = open_ok();
    add_refresh(a, "x-rt1", "x-fam", "alice", "app", 100000);
    ck_assert_int_eq(rotate(a, "x-rt1", "x-rt2", 1000, 10), MCPAUTH_ROTATE_OK);
    ck_assert_int_eq(mcpauth__store_refresh_get(b, "x-rt2", 1001, NULL), 1);
    ck_assert_int_eq(rotate(b, "x-rt1", "x-rt3", 1100, 10), MCPAUTH_ROTATE_REUSED);
    ck_assert_int_eq(mcpauth__store_refresh_get(a, "x-rt2", 1101, NULL), 0);
    ck_assert_int_eq(mcpauth__store_family_revoked(a, "x-fam"), 1);
    ck_assert_int_eq(rotate(a, "x-rt2", "x-rt4", 1102, 10), MCPAUTH_ROTATE_UNKNOWN);
    mcpauth__store_close(a);
    mcpauth__store_close(b);
}
END_TEST

/* Another connection holds the writers' advisory lock: a write fails
 * after the lock timeout as a fault ("busy"), changes nothing, reads go
 * on, and it works once the lock is gone (SQLite: locked_by_other_process). */
START_TEST(pg_write_lock_held_elsewhere)
{
    mcpauth_store *s = open_ok();
    mcpauth__store_set_busy_timeout(s, 50);
    mcpauth_grant g = grant("fam-l", "alice", "app", 2000);
    ck_assert_int_eq(mcpauth__store_code_add(s, "code-l", &g), 0);
    PGconn *c = PQconnectdb(pg_conninfo);
    ck_assert_int_eq(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, "BEGIN; SELECT pg_advisory_xact_lock(30790106784035944)");
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    ck_assert_int_eq(mcpauth__store_code_redeem(s, "code-l", 1000, NULL), MCPAUTH_REDEEM_ERROR);
    const char *why = mcpauth__store_fault();
    ck_assert_msg(why && strstr(why, "busy"), "%s", why ? why : "(null)");
    mcpauth_grant out;
    ck_assert_int_eq(mcpauth__store_code_peek(s, "code-l", 1000, &out), 1);
    mcpauth__grant_free(&out);
    ck_assert_ptr_null(mcpauth__store_fault());
    r = PQexec(c, "COMMIT");
    PQclear(r);
    PQfinish(c);
    ck_assert_int_eq(mcpauth__store_code_redeem(s, "code-l", 1000, NULL), MCPAUTH_REDEEM_OK);
    mcpauth__store_close(s);
}
END_TEST

/* A backend that does not answer (here: waiting on the writers' lock with
 * a lock timeout far beyond it) is cut off by the default
 * statement_timeout, merged into the admin's own options (the test
 * conninfo sets search_path there): the call fails as a fault within the
 * bound instead of holding the store lock, and the next call works. */
START_TEST(pg_statement_timeout_bounds_call)
{
    mcpauth__db_pg_statement_timeout_ms = 500;
    mcpauth_store *s = open_ok();
    mcpauth__db_pg_statement_timeout_ms = 10000;
    mcpauth__store_set_busy_timeout(s, 60000);
    mcpauth_grant g = grant("fam-t", "alice", "app", 2000);
    ck_assert_int_eq(mcpauth__store_code_add(s, "code-t", &g), 0);
    PGconn *c = PQconnectdb(pg_conninfo);
    ck_assert_int_eq(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, "BEGIN; SELECT pg_advisory_xact_lock(30790106784035944)");
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    time_t t0 = time(NULL);
    ck_assert_int_eq(mcpauth__store_code_redeem(s, "code-t", 1000, NULL), MCPAUTH_REDEEM_ERROR);
    ck_assert_int_le(time(NULL) - t0, 5);
    const char *why = mcpauth__store_fault();
    ck_assert_msg(why && strstr(why, "57014"), "%s", why ? why : "(null)");
    r = PQexec(c, "COMMIT");
    PQclear(r);
    PQfinish(c);
    ck_assert_int_eq(mcpauth__store_code_redeem(s, "code-t", 1000, NULL), MCPAUTH_REDEEM_OK);
    mcpauth__store_close(s);
}
END_TEST

/* The runtime role needs DML grants only (no CREATE): once the tables
 * exist, a role with SELECT/INSERT/UPDATE/DELETE and sequence USAGE opens
 * the store and works. */
START_TEST(pg_dml_only_role)
{
    mcpauth__store_close(open_ok()); /* the owner creates the tables */
    const char *sp = strstr(pg_conninfo, "search_path=");
    ck_assert_ptr_nonnull(sp);
    char schema[64];
    snprintf(schema, sizeof schema, "%.*s", (int)strcspn(sp + 12, "'"), sp + 12);
    char role[80], sql[1024];
    snprintf(role, sizeof role, "rt_%s", schema);
    snprintf(sql, sizeof sql,
             "CREATE ROLE %s LOGIN; GRANT USAGE ON SCHEMA %s TO %s;"
             " GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %s TO %s;"
             " GRANT USAGE ON ALL SEQUENCES IN SCHEMA %s TO %s",
             role, schema, role, schema, role, schema, role);
    ck_assert_int_eq(pgtest_sql(pg_conninfo, sql, NULL, 0), 0);
    char rt[400];
    snprintf(rt, sizeof rt, "%s user=%s", pg_conninfo, role);
    char err[256] = "";
    mcpauth_store *s = mcpauth__store_open(dir, rt, err, sizeof err);
    ck_assert_msg(s != NULL, "open as %s: %s", role, err);
    mcpauth_client c = client("c1", 100);
    ck_assert_int_eq(mcpauth__store_client_add(s, &c, "s3cret-value"), 0);
    mcpauth_grant g = grant("fam-r", "alice", "c1", 2000);
    ck_assert_int_eq(mcpauth__store_code_add(s, "code-r", &g), 0);
    ck_assert_int_eq(mcpauth__store_code_redeem(s, "code-r", 1000, NULL), MCPAUTH_REDEEM_OK);
    mcpauth_keyinfo k = key("kr", 100);
    ck_assert_int_eq(mcpauth__store_key_rotate(s, &k, 100), 0);
    mcpauth__store_close(s);
    /* the same role cannot create: proves it is least-privileged */
    snprintf(sql, sizeof sql, "CREATE TABLE %s.x(i int)", schema);
    ck_assert_int_eq(pgtest_sql(rt, sql, NULL, 0), -1);
}
END_TEST

/* COMMIT of an aborted transaction answers OK with the tag ROLLBACK: the
 * engine's commit reports it as a failure, never as stored. */
START_TEST(pg_commit_of_aborted_transaction_fails)
{
    mcpauth__store_close(open_ok());
    char err[256] = "";
    mcpauth_db *db = mcpauth__db_pg_open(pg_conninfo, err, sizeof err);
    ck_assert_msg(db != NULL, "%s", err);
    db->e->call_begin(db);
    ck_assert_int_eq(db->e->begin_write(db), 0);
    ck_assert_int_eq(db->e->exec(db, "INSERT INTO settings(name, value) VALUES('c3', 'v')"), 0);
    ck_assert_int_eq(db->e->exec(db, "SELECT 1/0"), -1); /* aborts the transaction */
    ck_assert_int_eq(db->e->commit(db), -1);
    db->e->call_end(db);
    db->e->close(db, 1);
    char out[16];
    ck_assert_int_eq(pgtest_sql(pg_conninfo, "SELECT count(*) FROM settings WHERE name = 'c3'",
                                out, sizeof out), 0);
    ck_assert_str_eq(out, "0");
}
END_TEST

/* libpq's parse errors quote the setting (a password with a space):
 * open reports a generic phrase instead. */
START_TEST(pg_bad_conninfo_not_echoed)
{
    char err[256] = "";
    mcpauth_store *s = mcpauth__store_open(dir, "host=127.0.0.1 password=half1 half2ofpw", err,
                                           sizeof err);
    ck_assert_ptr_null(s);
    ck_assert_msg(strstr(err, "not a valid libpq connection string") && !strstr(err, "half"),
                  "%s", err);
}
END_TEST

/* The server restarts while the store is idle: the next call finds its
 * connection dead before sending anything, reconnects and succeeds.  The
 * server down: calls fail as faults (503 upstream) and change nothing;
 * once it is back the next call works. */
START_TEST(pg_server_restart)
{
    mcpauth_store *s = open_ok();
    mcpauth_grant g = grant("fam-r", "alice", "app", 2000);
    ck_assert_int_eq(mcpauth__store_code_add(s, "code-r1", &g), 0);
    ck_assert_int_eq(pgtest_stop(), 0);
    ck_assert_int_eq(pgtest_restart(), 0);
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "fam-r"), 0); /* a read */
    ck_assert_ptr_null(mcpauth__store_fault());

    ck_assert_int_eq(pgtest_stop(), 0);
    ck_assert_int_eq(pgtest_restart(), 0);
    mcpauth_grant out;
    ck_assert_int_eq(mcpauth__store_code_redeem(s, "code-r1", 1000, &out), MCPAUTH_REDEEM_OK);
    ck_assert_str_eq(out.user, "alice"); /* a write transaction */
    mcpauth__grant_free(&out);

    g = grant("fam-r2", "alice", "app", 2000);
    ck_assert_int_eq(mcpauth__store_code_add(s, "code-r2", &g), 0);
    ck_assert_int_eq(pgtest_stop(), 0);
    ck_assert_int_eq(mcpauth__store_code_redeem(s, "code-r2", 1000, NULL), MCPAUTH_REDEEM_ERROR);
    const char *why = mcpauth__store_fault();
    ck_assert_msg(why && strstr(why, "PostgreSQL"), "%s", why ? why : "(null)");
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "fam-r2"), -1);
    ck_assert_ptr_nonnull(mcpauth__store_fault());
    ck_assert_int_eq(pgtest_restart(), 0);
    ck_assert_int_eq(mcpauth__store_code_peek(s, "code-r2", 1000, &out), 1); /* unused */
    mcpauth__grant_free(&out);
    ck_assert_ptr_null(mcpauth__store_fault());
    ck_assert_int_eq(mcpauth__store_code_redeem(s, "code-r2", 1000, NULL), MCPAUTH_REDEEM_OK);
    mcpauth__store_close(s);
}
END_TEST

/* schema_version: created at 2; a newer one refused, an older one refused
 * with the way out (PostgreSQL never upgrades on open); migrate reports. */
START_TEST(pg_schema_versions)
{
    char err[512];
    int from = -1, to = -1;
    ck_assert_int_eq(mcpauth__store_migrate(dir, pg_conninfo, &from, &to, err, sizeof err), 0);
    ck_assert_int_eq(from, 0);
    ck_assert_int_eq(to, 2);
    ck_assert_int_eq(mcpauth__store_migrate(dir, pg_conninfo, &from, &to, err, sizeof err), 0);
    ck_assert_int_eq(from, 2);
    ck_assert_int_eq(raw_int(NULL, "SELECT version FROM schema_version"), 2);
    mcpauth_store *s = open_ok();
    ck_assert_int_eq(mcpauth__store_shared(s), 1);
    mcpauth__store_close(s);
    raw_exec(NULL, "UPDATE schema_version SET version = 99");
    ck_assert_ptr_null(mcpauth__store_open(dir, pg_conninfo, err, sizeof err));
    ck_assert_msg(strstr(err, "newer") != NULL, "%s", err);
    raw_exec(NULL, "UPDATE schema_version SET version = 1");
    ck_assert_ptr_null(mcpauth__store_open(dir, pg_conninfo, err, sizeof err));
    ck_assert_msg(strstr(err, "mcpauth migrate") != NULL, "%s", err);
    /* an unreachable server: a clear error, quickly */
    ck_assert_ptr_null(mcpauth__store_open(dir, "host=127.0.0.1 port=25499 user=mcpauth"
                                                " connect_timeout=2",
                                           err, sizeof err));
    ck_assert_msg(strstr(err, "PostgreSQL") != NULL, "%s", err);
}
END_TEST

struct kid_acc {
    char kid[64];
};

static int current_kid(const mcpauth_keyinfo *k, void *arg)
{
    struct kid_acc *a = arg;
    if (k->retired == 0 && !a->kid[0])
        snprintf(a->kid, sizeof a->kid, "%s", k->kid);
    return 0;
}

/* Keys and the server secret live in the database: no files, and every
 * handle (host) signs with the same key and the same secret, also after a
 * rotation made through another one. */
START_TEST(pg_keys_and_secret_shared)
{
    mcpauth_store *a = open_ok(), *b = open_ok();
    char err[512], kid1[64], kid2[64];
    ck_assert_msg(mcpauth__keys_generate(a, NULL, "ES256", time(NULL) - 10, kid1, sizeof kid1,
                                        err, sizeof err) == 0,
                  "%s", err);
    char keysdir[200];
    snprintf(keysdir, sizeof keysdir, "%s/keys", dir);
    ck_assert_int_ne(access(keysdir, F_OK), 0); /* no file anywhere */
    mcpauth_signer *sb = mcpauth__keys_load_current(b, err, sizeof err);
    ck_assert_msg(sb != NULL, "%s", err);
    ck_assert_str_eq(sb->kid, kid1);
    mcpauth__signer_free(sb);
    ck_assert_msg(mcpauth__keys_generate(b, dir, "RS256", time(NULL), kid2, sizeof kid2, err,
                                        sizeof err) == 0,
                  "%s", err);
    mcpauth_signer *sa = mcpauth__keys_load_current(a, err, sizeof err);
    ck_assert_msg(sa != NULL, "%s", err);
    ck_assert_str_eq(sa->kid, kid2);
    ck_assert_str_eq(sa->alg, "RS256");
    mcpauth__signer_free(sa);
    char *ja = mcpauth__keys_jwks(a, time(NULL) - 3600, err, sizeof err);
    char *jb = mcpauth__keys_jwks(b, time(NULL) - 3600, err, sizeof err);
    ck_assert_ptr_nonnull(ja);
    ck_assert_ptr_nonnull(jb);
    ck_assert_str_eq(ja, jb);
    ck_assert_ptr_nonnull(strstr(ja, kid1)); /* the retired key stays published */
    ck_assert_ptr_nonnull(strstr(ja, kid2));
    free(ja);
    free(jb);
    struct kid_acc acc = {""};
    ck_assert_int_eq(mcpauth__store_key_list(a, 0, current_kid, &acc), 0);
    ck_assert_str_eq(acc.kid, kid2);
    ck_assert_int_eq(mcpauth__keys_prune(a, dir, time(NULL) + 3600, err, sizeof err), 0);

    unsigned char s1[MCPAUTH_SECRET_BYTES], s2[MCPAUTH_SECRET_BYTES];
    ck_assert_int_eq(mcpauth__secret_load(a, dir, s1, err, sizeof err), -1); /* none yet */
    ck_assert_msg(strstr(err, "mcpauth init"), "%s", err);
    ck_assert_int_eq(mcpauth__secret_create(a, dir, err, sizeof err), 1);
    ck_assert_int_eq(mcpauth__secret_create(b, dir, err, sizeof err), 0); /* kept */
    ck_assert_int_eq(mcpauth__secret_load(a, dir, s1, err, sizeof err), 0);
    ck_assert_int_eq(mcpauth__secret_load(b, dir, s2, err, sizeof err), 0);
    ck_assert_int_eq(memcmp(s1, s2, sizeof s1), 0);
    char secretfile[200];
    snprintf(secretfile, sizeof secretfile, "%s/secret", dir);
    ck_assert_int_ne(access(secretfile, F_OK), 0);
    raw_exec(NULL, "UPDATE settings SET value = 'zz' WHERE name = 'server_secret'");
    ck_assert_int_eq(mcpauth__secret_load(a, dir, s1, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "malformed"), "%s", err);
    /* the right length, a non-hex digit first: refused before conversion */
    raw_exec(NULL, "UPDATE settings SET value = repeat('g', 64) WHERE name = 'server_secret'");
    ck_assert_int_eq(mcpauth__secret_load(a, dir, s1, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "malformed"), "%s", err);
    mcpauth__store_close(a);
    mcpauth__store_close(b);
}
END_TEST
/* Runs fn(s) in a thread while another session holds a lock on the codes
 * row of code; once the store waits for it, its backend is terminated.
 * fn's result. */
static char lost_fault[256]; /* the thread's mcpauth__store_fault(), "" for none */

struct lost_arg {
    mcpauth_store *s;
    long (*fn)(mcpauth_store *);
    long r;
};

static void *lost_main(void *p)
{
    struct lost_arg *a = p;
    a->r = a->fn(a->s);
    const char *f = mcpauth__store_fault(); /* per thread */
    snprintf(lost_fault, sizeof lost_fault, "%s", f ? f : "");
    return NULL;
}

/* The same while another session holds what hold (SQL: BEGIN and one
 * statement touching one row) locks. */
static long lose_connection_holding(mcpauth_store *s, const char *hold,
                                    long (*fn)(mcpauth_store *))
{
    PGconn *holder = PQconnectdb(pg_conninfo);
    ck_assert_int_eq(PQstatus(holder), CONNECTION_OK);
    PGresult *r = PQexec(holder, hold);
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        ck_assert_int_eq(PQntuples(r), 1);
    else
        ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK && atoi(PQcmdTuples(r)) == 1,
                      "%s: %s", hold, PQresultErrorMessage(r));
    PQclear(r);
    struct lost_arg a = {s, fn, -2};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, lost_main, &a), 0);
    int killed = 0;
    for (int i = 0; i < 200 && !killed; i++) {
        r = PQexec(holder, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                           " WHERE application_name = 'mcpauth' AND wait_event_type = 'Lock'");
        killed = PQresultStatus(r) == PGRES_TUPLES_OK && atoi(PQgetvalue(r, 0, 0)) == 1;
        PQclear(r);
        if (!killed)
            usleep(25000);
    }
    pthread_join(t, NULL);
    r = PQexec(holder, "ROLLBACK");
    PQclear(r);
    PQfinish(holder);
    ck_assert_msg(killed, "the store never waited on the row lock");
    return a.r;
}

static long lose_connection_during(mcpauth_store *s, const char *code,
                                   long (*fn)(mcpauth_store *))
{
    char h[65], sql[256];
    mcpauth__sha256_hex(code, strlen(code), h);
    snprintf(sql, sizeof sql, "BEGIN; SELECT 1 FROM codes WHERE hash = '%s' FOR UPDATE", h);
    return lose_connection_holding(s, sql, fn);
}

static long exchange_t(mcpauth_store *s)
{
    return mcpauth__store_code_exchange(s, "code-t", 1000, "fam-t", "rt-t", 9000, "at-t", 5000,
                                        NULL);
}

static long purge_p(mcpauth_store *s)
{
    return mcpauth__store_purge(s, 2000, 0);
}

/* The connection dies in the middle of a write transaction (its backend
 * is terminated while it waits for a row lock): the call fails as a fault,
 * nothing of it is left (the code unused, no token), the rest of the call
 * does not go on over a new connection (purge would delete on, unlocked
 * and outside its transaction), and the next call works. */
START_TEST(pg_connection_lost_mid_transaction)
{
    mcpauth_store *s = open_ok();
    mcpauth__store_set_busy_timeout(s, 20000);
    mcpauth_grant g = grant("fam-t", "alice", "app", 2000);
    ck_assert_int_eq(mcpauth__store_code_add(s, "code-t", &g), 0);
    ck_assert_int_eq(lose_connection_during(s, "code-t", exchange_t), MCPAUTH_REDEEM_ERROR);
    ck_assert_msg(strstr(lost_fault, "PostgreSQL"), "fault: %s", lost_fault);
    mcpauth_grant out;
    ck_assert_int_eq(mcpauth__store_code_peek(s, "code-t", 1000, &out), 1); /* unused */
    mcpauth__grant_free(&out);
    ck_assert_ptr_null(mcpauth__store_fault());
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "rt-t", 1000, NULL), 0);
    ck_assert_int_eq(raw_int(NULL, "SELECT count(*) FROM access"), 0);
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "fam-t"), 0);
    ck_assert_int_eq(exchange_t(s), MCPAUTH_REDEEM_OK);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "rt-t", 1000, NULL), 1);

    /* purge: its first DELETE waits on the expired code's row */
    g = grant("fam-p", "alice", "app", 1500);
    ck_assert_int_eq(mcpauth__store_code_add(s, "code-p", &g), 0);
    add_refresh(s, "rt-p", "fam-q", "alice", "app", 1500);
    ck_assert_int_eq(lose_connection_during(s, "code-p", purge_p), -1);
    ck_assert_msg(strstr(lost_fault, "PostgreSQL"), "fault: %s", lost_fault);
    ck_assert_int_eq(raw_int(NULL, "SELECT count(*) FROM refresh WHERE expires = 1500"), 1);
    ck_assert_int_eq(raw_int(NULL, "SELECT count(*) FROM codes WHERE expires = 1500"), 1);
    ck_assert_int_eq(purge_p(s), 3); /* code-t too (expires 2000) */
    mcpauth__store_close(s);
}
END_TEST
static long refresh_l(mcpauth_store *s)
{
    return mcpauth__store_refresh_exchange(s, "l-1", "l-2", 1000, 10, 7000, "at-l", "fam-l",
                                          1300, "app", NULL);
}

/* A refresh whose last step waits on another session's row (an
 * uncommitted access record with the same digest) and fails there, as a
 * fault: by lock timeout, then by losing the connection.  Nothing of it
 * is left (the old token unretired, grace unspent, no new token, no
 * record), and the next call works. */
START_TEST(pg_refresh_fault_mid_exchange)
{
    mcpauth_store *s = open_ok();
    add_refresh(s, "l-1", "fam-l", "alice", "app", 10000);
    char h[65], hold[256];
    mcpauth__sha256_hex("at-l", 4, h);
    snprintf(hold, sizeof hold,
             "BEGIN; INSERT INTO access(hash, family, expires) VALUES('%s', 'fam-l', 1)", h);
    PGconn *c = PQconnectdb(pg_conninfo);
    ck_assert_int_eq(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, hold);
    ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    mcpauth__store_set_busy_timeout(s, 100);
    ck_assert_int_eq(refresh_l(s), MCPAUTH_ROTATE_ERROR);
    const char *why = mcpauth__store_fault();
    ck_assert_msg(why && strstr(why, "busy"), "%s", why ? why : "(null)");
    r = PQexec(c, "ROLLBACK");
    PQclear(r);
    PQfinish(c);
    ck_assert(refresh_pristine("l-1"));
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "l-2", 1000, NULL), 0);
    ck_assert_int_eq(access_rows("at-l"), 0);

    mcpauth__store_set_busy_timeout(s, 20000);
    ck_assert_int_eq(lose_connection_holding(s, hold, refresh_l), MCPAUTH_ROTATE_ERROR);
    ck_assert_msg(strstr(lost_fault, "PostgreSQL"), "fault: %s", lost_fault);
    ck_assert(refresh_pristine("l-1"));
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "l-2", 1000, NULL), 0);
    ck_assert_int_eq(access_rows("at-l"), 0);
    ck_assert_int_eq(mcpauth__store_family_revoked(s, "fam-l"), 0);

    ck_assert_int_eq(refresh_l(s), MCPAUTH_ROTATE_OK);
    ck_assert_int_eq(mcpauth__store_refresh_get(s, "l-2", 1000, NULL), 1);
    ck_assert_int_eq(access_rows("at-l"), 1);
    mcpauth__store_close(s);
}
END_TEST
#endif /* HAVE_LIBPQ */

Suite *store_suite(void)
{
    Suite *s = suite_create("store");
    TCase *tc = scratch_tcase("core", setup, 30);
    tcase_add_test(tc, open_refusals);
    tcase_add_test(tc, open_mode_and_pragmas);
    tcase_add_test(tc, upgrade_from_version_1);
    tcase_add_test(tc, clients_basic);
    tcase_add_test(tc, clients_list);
    tcase_add_test(tc, hashes_only_on_disk);
    tcase_add_test(tc, code_basic);
    tcase_add_test(tc, code_exchange_all_or_nothing);
    tcase_add_test(tc, locked_by_other_process);
    tcase_add_test(tc, code_replay_kills_refresh);
    tcase_add_test(tc, code_race_processes);
    tcase_add_test(tc, refresh_rotation_reuse);
    tcase_add_test(tc, refresh_grace_once);
    tcase_add_test(tc, refresh_misc);
    tcase_add_test(tc, refresh_race_processes);
    tcase_add_test(tc, refresh_exchange_basic);
    tcase_add_test(tc, refresh_exchange_all_or_nothing);
    tcase_add_test(tc, refresh_exchange_reuse_and_grace);
    tcase_add_test(tc, refresh_exchange_foreign_client);
    tcase_add_test(tc, expiry_by_process_clock);
    tcase_add_test(tc, revocation);
    tcase_add_test(tc, client_delete_cascade);
    tcase_add_test(tc, consents);
    tcase_add_test(tc, access_tokens_of_revoked_grants);
    tcase_add_test(tc, consent_form_once);
    tcase_add_test(tc, registration_limit);
    tcase_add_test(tc, keys);
    tcase_add_test(tc, key_rotate_atomic);
    tcase_add_test(tc, purge_counts);
    tcase_add_test(tc, threads_shared_handle);
    tcase_add_test(tc, fork_guard);
    tcase_add_test(tc, null_handle);
    tcase_add_test(tc, wal_starts_over_after_stuck_reader);
    suite_add_tcase(s, tc);
#ifdef HAVE_LIBPQ
    /* The same cases on PostgreSQL (not those about SQLite's files). */
    tc = tcase_create("pg");
    tcase_add_unchecked_fixture(tc, pg_suite_setup, scratch_suite_teardown);
    tcase_add_checked_fixture(tc, setup_pg, scratch_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, clients_basic);
    tcase_add_test(tc, clients_list);
    tcase_add_test(tc, code_basic);
    tcase_add_test(tc, code_exchange_all_or_nothing);
    tcase_add_test(tc, code_replay_kills_refresh);
    tcase_add_test(tc, code_race_processes);
    tcase_add_test(tc, refresh_rotation_reuse);
    tcase_add_test(tc, refresh_grace_once);
    tcase_add_test(tc, refresh_misc);
    tcase_add_test(tc, refresh_race_processes);
    tcase_add_test(tc, refresh_exchange_basic);
    tcase_add_test(tc, refresh_exchange_all_or_nothing);
    tcase_add_test(tc, refresh_exchange_reuse_and_grace);
    tcase_add_test(tc, refresh_exchange_foreign_client);
    tcase_add_test(tc, expiry_by_process_clock);
    tcase_add_test(tc, revocation);
    tcase_add_test(tc, client_delete_cascade);
    tcase_add_test(tc, consents);
    tcase_add_test(tc, access_tokens_of_revoked_grants);
    tcase_add_test(tc, consent_form_once);
    tcase_add_test(tc, registration_limit);
    tcase_add_test(tc, keys);
    tcase_add_test(tc, purge_counts);
    tcase_add_test(tc, threads_shared_handle);
    tcase_add_test(tc, fork_guard);
    tcase_add_test(tc, null_handle);
    tcase_add_test(tc, pg_hashes_only_in_tables);
    tcase_add_test(tc, pg_redeem_race_two_handles);
    tcase_add_test(tc, pg_reuse_across_handles);
    tcase_add_test(tc, pg_write_lock_held_elsewhere);
    tcase_add_test(tc, pg_schema_versions);
    tcase_add_test(tc, pg_keys_and_secret_shared);
    tcase_add_test(tc, pg_connection_lost_mid_transaction);
    tcase_add_test(tc, pg_refresh_fault_mid_exchange);
    tcase_add_test(tc, pg_server_restart);
    tcase_add_test(tc, pg_statement_timeout_bounds_call);
    tcase_add_test(tc, pg_dml_only_role);
    tcase_add_test(tc, pg_bad_conninfo_not_echoed);
    tcase_add_test(tc, pg_commit_of_aborted_transaction_fails);
    tcase_add_test(tc, key_rotate_atomic);
    suite_add_tcase(s, tc);
#endif
    return s;
}
