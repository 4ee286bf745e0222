/* A private PostgreSQL server for tests, started once per test process
 * from tests/support/engines.sh (initdb, loopback port, trust auth) and
 * stopped by PID at exit.  No skipping: a server that does not come up
 * fails the caller loudly.  Each test case gets its own schema, so cases
 * never see each other's rows. */
#ifndef MCPAUTH_TEST_PGTEST_H
#define MCPAUTH_TEST_PGTEST_H

#include <stddef.h>
#include <sys/types.h>

/* The server's port: a free one, picked by pgtest_start (0 before). */
int pgtest_port(void);

/* Starts the process's server on the first call (later calls: the same
 * one).  0, or -1 with the reason and the server's log on stderr.  Call it
 * from an unchecked fixture so it starts in the runner itself, not in a
 * forked test child. */
int pgtest_start(void);
/* A fresh schema (created here) and a libpq key=value conninfo whose
 * search_path is that schema, in out.  0 or -1 (reason on stderr). */
int pgtest_new_schema(char *out, size_t outlen);
/* Stops the server by its PID (fast shutdown) and waits for it to go;
 * pgtest_restart starts it again on the same data and port (0 at once
 * when it runs, whoever started it).  For fault tests. 0 or -1. */
int pgtest_stop(void);
int pgtest_restart(void);
/* Runs one SQL text on conninfo outside the store: 0 or -1 (message on
 * stderr); with out, the first column of the first row is copied there
 * ("" for none). */
int pgtest_sql(const char *conninfo, const char *sql, char *out, size_t outlen);

#endif
