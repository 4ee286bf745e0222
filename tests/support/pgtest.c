/* See pgtest.h. */
#include "config.h"

#include "pgtest.h"
#include "freeport.h"

#ifdef HAVE_LIBPQ

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

static pid_t server_pid, owner_pid;
static char base[64], data[128];
static unsigned schema_seq;

/* tests/support/engines.sh: $MCPAUTH_SRCDIR (make check), else next to
 * this file when it was compiled by an absolute path. */
static int engines_sh(char *out, size_t len)
{
    const char *src = getenv("MCPAUTH_SRCDIR");
    if (src && *src) {
        snprintf(out, len, "%s/tests/support/engines.sh", src);
    } else if (__FILE__[0] == '/') {
        snprintf(out, len, "%s", __FILE__);
        char *slash = strrchr(out, '/');
        snprintf(slash + 1, len - (size_t)(slash + 1 - out), "engines.sh");
    } else {
        fprintf(stderr, "pgtest: MCPAUTH_SRCDIR is not set (run through make check)\n");
        return -1;
    }
    if (access(out, R_OK) != 0) {
        fprintf(stderr, "pgtest: %s: %s\n", out, strerror(errno));
        return -1;
    }
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The postmaster's PID from its pid file, or -1. */
static pid_t read_pid(void)
{
    char p[192];
    snprintf(p, sizeof p, "%s/postmaster.pid", data);
    FILE *f = fopen(p, "r");
    long pid = -1;
    if (f) {
        if (fscanf(f, "%ld", &pid) != 1)
            pid = -1;
        fclose(f);
    }
    return (pid_t)pid;
}

static void stop_at_exit(void)
{
    if (getpid() == owner_pid) {
        pgtest_stop();
        char pidfile[192];
        snprintf(pidfile, sizeof pidfile, "%s/postmaster.pid", data);
        for (int i = 0; i < 100 && access(pidfile, F_OK) == 0; i++)
            sleep_ms(50); /* the postmaster removes it last */
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
        if (system(cmd) != 0)
            fprintf(stderr, "pgtest: could not remove %s\n", base);
    }
}

static int run_sh(const char *script)
{
    char sh[1024];
    if (engines_sh(sh, sizeof sh) < 0)
        return -1;
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "sh -c '. \"%s\"; %s'", sh, script);
    int rc = system(cmd);
    if (rc != 0) {
        fprintf(stderr, "pgtest: `%s` failed (status %d)\n", script, rc);
        return -1;
    }
    return 0;
}

static int pg_port;

int pgtest_port(void)
{
    return pg_port;
}

int pgtest_start(void)
{
    if (server_pid > 0)
        return 0;
    if (base[0]) /* started before and stopped since: the same data and port */
        return pgtest_restart();
    if (!pg_port && !(pg_port = ts_free_port())) {
        perror("pgtest: no free port");
        return -1;
    }
    snprintf(base, sizeof base, "/tmp/mcpauth-pg-XXXXXX");
    if (!mkdtemp(base)) {
        perror("pgtest: mkdtemp");
        return -1;
    }
    snprintf(data, sizeof data, "%s/pg/data", base);
    char script[512];
    snprintf(script, sizeof script, "engines_pg_start %s %d >&2", base, pg_port);
    if (run_sh(script) < 0 || (server_pid = read_pid()) <= 0) {
        fprintf(stderr, "pgtest: PostgreSQL did not start on port %d\n", pg_port);
        server_pid = 0;
        return -1;
    }
    owner_pid = getpid();
    atexit(stop_at_exit);
    return 0;
}

/* By the pid file: a test child may have restarted the server since. */
int pgtest_stop(void)
{
    pid_t now = read_pid();
    if (now > 0)
        server_pid = now;
    if (server_pid <= 0)
        return 0;
    kill(server_pid, SIGINT); /* fast shutdown: sessions are ended */
    for (int i = 0; i < 300 && kill(server_pid, 0) == 0; i++)
        sleep_ms(50);
    if (kill(server_pid, 0) == 0) {
        kill(server_pid, SIGKILL);
        sleep_ms(200);
    }
    server_pid = 0;
    return 0;
}

int pgtest_restart(void)
{
    pid_t now = read_pid(); /* by the pid file: a test child may have restarted it */
    if (now > 0 && kill(now, 0) == 0) {
        server_pid = now;
        return 0;
    }
    char script[512];
    snprintf(script, sizeof script,
             "engines_as_pg_user \"$(engines_pg_bin)/pg_ctl\" -D %s -l %s/pg/server.log -w -t 30"
             " start >/dev/null",
             data, base);
    if (run_sh(script) < 0 || (server_pid = read_pid()) <= 0) {
        server_pid = 0;
        return -1;
    }
    return 0;
}

int pgtest_sql(const char *conninfo, const char *sql, char *out, size_t outlen)
{
    PGconn *c = PQconnectdb(conninfo);
    int rc = -1;
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "pgtest: connect: %s", PQerrorMessage(c));
    } else {
        PGresult *r = PQexec(c, sql);
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
            rc = 0;
            if (out && outlen)
                snprintf(out, outlen, "%s",
                         st == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0)
                             ? PQgetvalue(r, 0, 0)
                             : "");
        } else {
            fprintf(stderr, "pgtest: %s: %s", sql, PQerrorMessage(c));
        }
        PQclear(r);
    }
    PQfinish(c);
    return rc;
}

int pgtest_new_schema(char *out, size_t outlen)
{
    char name[64], admin[128], sql[128];
    snprintf(name, sizeof name, "t%ld_%u_%ld", (long)getpid(), ++schema_seq, (long)time(NULL));
    snprintf(admin, sizeof admin, "host=127.0.0.1 port=%d user=mcpauth dbname=mcpauth",
             pg_port);
    snprintf(sql, sizeof sql, "CREATE SCHEMA %s", name);
    if (pgtest_sql(admin, sql, NULL, 0) < 0)
        return -1;
    snprintf(out, outlen, "%s options='-csearch_path=%s'", admin, name);
    return 0;
}

#endif /* HAVE_LIBPQ */
