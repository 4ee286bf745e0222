/* Private redis-server instances for tests (loopback, no persistence).
 * Started directly (fork + exec of redis-server), stopped by PID.  No
 * skipping: a server that does not come up fails the caller loudly. */
#ifndef MCPAUTH_TEST_REDISTEST_H
#define MCPAUTH_TEST_REDISTEST_H

#include <stddef.h>
#include <sys/types.h>

/* Starts redis-server on 127.0.0.1:port with its files in dir (created)
 * and waits (up to 10 s) until it answers PING.  The PID, or -1 with the
 * reason (and the server's log) on stderr. */
pid_t redistest_spawn(const char *dir, int port);
/* SIGTERM, then SIGKILL after 5 s; waits for it.  Nothing for pid <= 0. */
void redistest_kill(pid_t pid);
/* 1 when something answers PING on 127.0.0.1:port within timeout_ms. */
int redistest_ping(int port, long timeout_ms);
/* A port for the test's own server, picked free once per process and
 * kept (slot 0-7), so a test can stop and restart its server on it. */
int redistest_port(int slot);

/* The process's shared server (on a free port), started at the first call and
 * stopped at exit by the process that started it (not by forked test
 * children).  Its URL (static storage), or NULL when it cannot start.
 * Call it from an unchecked fixture so it starts in the runner itself. */
const char *redistest_shared_url(void);

#endif
