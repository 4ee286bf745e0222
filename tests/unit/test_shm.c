/* Shared state (lib/shm.c): token buckets, session bindings, several
 * processes and threads on one file, the robust mutex, hostile paths. */
#include <check.h>

Suite *shm_suite(void);

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "robust.h"
#include "shm.h"
#define SCRATCH_NAME "shm"
#include "../support/scratchdir.h"

static char path[160];

static void setup(void)
{
    scratch_setup();
    snprintf(path, sizeof path, "%s/state", dir);
}

static mcpauth_shm *open_ok(size_t buckets, size_t sessions)
{
    char err[256] = "";
    mcpauth_shm *s = mcpauth__shm_open(path, buckets, sessions, err, sizeof err);
    ck_assert_msg(s != NULL, "mcpauth__shm_open: %s", err);
    return s;
}

static int take(mcpauth_shm *s, const char *key, double rate, double burst, double now,
                int *retry)
{
    return mcpauth__shm_rate(s, key, strlen(key), rate, burst, now, retry);
}

START_TEST(rate_basic)
{
    mcpauth_shm *s = open_ok(1024, 64);
    int retry = -1;
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(take(s, "10.0.0.1", 1, 3, 1000.0, &retry), 1);
        ck_assert_int_eq(retry, 0);
    }
    ck_assert_int_eq(take(s, "10.0.0.1", 1, 3, 1000.0, &retry), 0);
    ck_assert_int_eq(retry, 1);
    ck_assert_int_eq(take(s, "10.0.0.1", 1, 3, 1000.5, &retry), 0);
    ck_assert_int_eq(retry, 1);
    ck_assert_int_eq(take(s, "10.0.0.1", 1, 3, 1001.0, &retry), 1);
    ck_assert_int_eq(take(s, "10.0.0.1", 1, 3, 1001.0, &retry), 0);

    /* Another key has its own full bucket. */
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(take(s, "10.0.0.2", 1, 3, 1001.0, &retry), 1);
    ck_assert_int_eq(take(s, "10.0.0.2", 1, 3, 1001.0, &retry), 0);

    /* Keys are bytes: embedded NULs, a prefix and the empty key differ. */
    static const char bin1[] = {'k', 0, 1}, bin2[] = {'k', 0, 2};
    ck_assert_int_eq(mcpauth__shm_rate(s, bin1, 3, 1, 1, 1001.0, &retry), 1);
    ck_assert_int_eq(mcpauth__shm_rate(s, bin1, 3, 1, 1, 1001.0, &retry), 0);
    ck_assert_int_eq(mcpauth__shm_rate(s, bin2, 3, 1, 1, 1001.0, &retry), 1);
    ck_assert_int_eq(mcpauth__shm_rate(s, bin1, 1, 1, 1, 1001.0, &retry), 1);
    ck_assert_int_eq(mcpauth__shm_rate(s, "", 0, 1, 1, 1001.0, &retry), 1);
    ck_assert_int_eq(mcpauth__shm_rate(s, NULL, 0, 1, 1, 1001.0, &retry), 0);

    /* rate <= 0: unlimited. */
    for (int i = 0; i < 1000; i++) {
        ck_assert_int_eq(take(s, "10.0.0.1", 0, 3, 1001.0, &retry), 1);
        ck_assert_int_eq(take(s, "10.0.0.1", -1, 3, 1001.0, &retry), 1);
    }
    ck_assert_int_eq(retry, 0);
    /* ...and did not touch the limited bucket. */
    ck_assert_int_eq(take(s, "10.0.0.1", 1, 3, 1001.0, NULL), 0);
    mcpauth__shm_close(s);
}
END_TEST

START_TEST(rate_retry_after)
{
    mcpauth_shm *s = open_ok(64, 8);
    int retry = 0;
    ck_assert_int_eq(take(s, "k", 0.25, 1, 50.0, &retry), 1);
    ck_assert_int_eq(take(s, "k", 0.25, 1, 50.0, &retry), 0);
    ck_assert_int_eq(retry, 4);
    ck_assert_int_eq(take(s, "k", 0.25, 1, 52.0, &retry), 0); /* half a token back */
    ck_assert_int_eq(retry, 2);
    ck_assert_int_eq(take(s, "k", 0.25, 1, 54.0, &retry), 1);
    /* Fast refill: still at least one second. */
    ck_assert_int_eq(take(s, "fast", 1000, 1, 50.0, &retry), 1);
    ck_assert_int_eq(take(s, "fast", 1000, 1, 50.0, &retry), 0);
    ck_assert_int_eq(retry, 1);
    /* A very slow rate does not overflow the int. */
    ck_assert_int_eq(take(s, "slow", 1e-300, 1, 50.0, &retry), 1);
    ck_assert_int_eq(take(s, "slow", 1e-300, 1, 50.0, &retry), 0);
    ck_assert_int_gt(retry, 1000000);
    /* Refill is capped at burst, even after a long idle time. */
    ck_assert_int_eq(take(s, "cap", 1, 2, 100.0, &retry), 1);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(take(s, "cap", 1, 2, 1e6, &retry), 1);
    ck_assert_int_eq(take(s, "cap", 1, 2, 1e6, &retry), 0);
    /* A clock stepped back does not lock the key out until it catches up. */
    ck_assert_int_eq(take(s, "cap", 1, 2, 1e6 - 3600, &retry), 0);
    ck_assert_int_eq(take(s, "cap", 1, 2, 1e6 - 3599, &retry), 1);
    mcpauth__shm_close(s);
}
END_TEST

START_TEST(rate_lru_eviction)
{
    /* Eight buckets: the window is the whole table. */
    mcpauth_shm *s = open_ok(8, 8);
    char key[16];
    int retry;
    for (int i = 0; i < 8; i++) {
        snprintf(key, sizeof key, "key%d", i);
        ck_assert_int_eq(take(s, key, 0.001, 1, 10.0 + i, &retry), 1);
        ck_assert_int_eq(take(s, key, 0.001, 1, 10.0 + i, &retry), 0);
    }
    /* key0 was used least recently; key1 is touched again. */
    ck_assert_int_eq(take(s, "key1", 0.001, 1, 20.0, &retry), 0);
    ck_assert_int_eq(take(s, "newcomer", 0.001, 1, 21.0, &retry), 1);
    for (int i = 1; i < 8; i++) {
        snprintf(key, sizeof key, "key%d", i);
        ck_assert_msg(take(s, key, 0.001, 1, 22.0, &retry) == 0, "%s was evicted", key);
    }
    ck_assert_int_eq(take(s, "key0", 0.001, 1, 23.0, &retry), 1); /* evicted: fresh */
    mcpauth__shm_close(s);
}
END_TEST

/* Children open the file themselves at the same moment (so the creation
 * race is covered too), then take from one key; each writes its count of
 * allowed requests to the pipe. */
#define NPROC 4
#define ATTEMPTS 5000
#define BURST 5000 /* a quarter of all attempts: every process competes */

static void hammer_child(int go, int out, size_t buckets)
{
    char c;
    if (read(go, &c, 1) != 0) /* EOF: everyone starts */
        _exit(2);
    char err[256];
    mcpauth_shm *s = mcpauth__shm_open(path, buckets, 64, err, sizeof err);
    if (!s) {
        fprintf(stderr, "child: %s\n", err);
        _exit(3);
    }
    int allowed = 0;
    for (int i = 0; i < ATTEMPTS; i++)
        allowed += take(s, "shared-key", 1, BURST, 5000.0, NULL);
    mcpauth__shm_close(s);
    _exit(write(out, &allowed, sizeof allowed) == (ssize_t)sizeof allowed ? 0 : 4);
}

/* Total allowed over NPROC processes opening with `buckets`. */
static int hammer(size_t buckets)
{
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
            hammer_child(go[0], res[1], buckets);
        }
    }
    close(go[0]);
    close(res[1]);
    close(go[1]); /* start */
    int total = 0;
    for (int i = 0; i < NPROC; i++) {
        int st, n = -1;
        ck_assert_int_eq(waitpid(pids[i], &st, 0), pids[i]);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d failed (status %d)", i,
                      st);
        ck_assert_int_eq(read(res[0], &n, sizeof n), (ssize_t)sizeof n);
        total += n;
    }
    close(res[0]);
    return total;
}

START_TEST(rate_processes)
{
    /* Fixed `now`: no refill, so exactly the burst gets through. */
    ck_assert_int_eq(hammer(4096), BURST);
    /* And the bucket really is empty for everyone. */
    mcpauth_shm *s = open_ok(4096, 64);
    ck_assert_int_eq(take(s, "shared-key", 1, BURST, 5000.0, NULL), 0);
    mcpauth__shm_close(s);
}
END_TEST

START_TEST(replace_race)
{
    /* All processes arrive with a new table size at once: one replaces the
     * file, the others must notice and use that same new file. */
    mcpauth__shm_close(open_ok(1024, 64));
    ck_assert_int_eq(hammer(2048), BURST);
}
END_TEST

static mcpauth_shm *thread_shm;

static void *hammer_thread(void *arg)
{
    int *allowed = arg;
    for (int i = 0; i < ATTEMPTS; i++)
        *allowed += take(thread_shm, "thread-key", 1, BURST, 5000.0, NULL);
    return NULL;
}

START_TEST(rate_threads)
{
    thread_shm = open_ok(4096, 64);
    pthread_t t[4];
    int allowed[4] = {0};
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, hammer_thread, &allowed[i]), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    ck_assert_int_eq(allowed[0] + allowed[1] + allowed[2] + allowed[3], BURST);
    mcpauth__shm_close(thread_shm);
}
END_TEST

START_TEST(state_survives_reopen)
{
    mcpauth_shm *s = open_ok(256, 32);
    time_t t = time(NULL);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(take(s, "drained", 1, 5, 700.0, NULL), 1);
    ck_assert_int_eq(take(s, "drained", 1, 5, 700.0, NULL), 0);
    ck_assert_int_eq(mcpauth__shm_session_bind(s, "sess", "alice", t + 600), 0);
    mcpauth__shm_close(s);

    /* A worker restart: same file, same sizes. */
    s = open_ok(256, 32);
    ck_assert_int_eq(take(s, "drained", 1, 5, 700.0, NULL), 0);
    ck_assert_int_eq(mcpauth__shm_session_check(s, "sess", "alice", t, 0), MCPAUTH_SESSION_OWNER);
    ck_assert_int_eq(mcpauth__shm_session_bind(s, "sess", "mallory", t + 600), -1);

    /* A new configuration with other sizes starts afresh in a new file,
     * while the worker still on the old one keeps working on it. */
    char err[256];
    mcpauth_shm *n = mcpauth__shm_open(path, 512, 32, err, sizeof err);
    ck_assert_msg(n != NULL, "%s", err);
    ck_assert_int_eq(take(n, "drained", 1, 5, 700.0, NULL), 1);
    ck_assert_int_eq(mcpauth__shm_session_check(n, "sess", "alice", t, 0),
                     MCPAUTH_SESSION_UNKNOWN);
    ck_assert_int_eq(take(s, "drained", 1, 5, 700.0, NULL), 0);
    ck_assert_int_eq(mcpauth__shm_session_check(s, "sess", "alice", t, 0), MCPAUTH_SESSION_OWNER);
    mcpauth__shm_close(s);
    mcpauth__shm_close(n);

    /* The replacement is a proper private file, and no temporary is left. */
    struct stat st;
    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert(S_ISREG(st.st_mode));
    ck_assert_int_eq(st.st_mode & 07777, 0600);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "test $(ls -A '%s' | wc -l) -eq 1", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

static void on_sigbus(int sig)
{
    (void)sig;
    _exit(42);
}

START_TEST(robust_mutex)
{
    /* A worker that dies holding the lock must not wedge the others.  No
     * test hook is needed: the child shrinks the file to its first page,
     * which holds the header and mutex but not the tables, so its next
     * operation takes the lock and then faults on a bucket (SIGBUS), and
     * the handler exits with the lock still held.  The parent then grows
     * the file back and must get the lock (EOWNERDEAD, recovered). */
    mcpauth_shm *s = open_ok(65536, 64);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_gt(st.st_size, 8 * 4096);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        signal(SIGBUS, on_sigbus);
        if (truncate(path, 4096) != 0)
            _exit(2);
        char key[32];
        /* A key whose window lies in the first page just succeeds; one of
         * the next will not (about 60 of 65536 slots are in that page). */
        for (int i = 0; i < 1000; i++) {
            snprintf(key, sizeof key, "victim-%d", i);
            take(s, key, 1, 10, 100.0, NULL);
        }
        _exit(3);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 42,
                  "child did not die inside the lock (status %d)", status);
    ck_assert_int_eq(truncate(path, st.st_size), 0);

    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    /* A non-robust mutex would hang here until Check's timeout. */
    int retry;
    ck_assert_int_eq(take(s, "after", 1, 1, 100.0, &retry), 1);
    ck_assert_int_eq(take(s, "after", 1, 1, 100.0, &retry), 0);
    ck_assert_int_eq(retry, 1);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double took = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    ck_assert_msg(took < 1.0, "recovery took %.3f s", took);

    /* Still consistent afterwards, for this process and a new opener. */
    time_t t = time(NULL);
    ck_assert_int_eq(mcpauth__shm_session_bind(s, "s", "o", t + 60), 0);
    mcpauth_shm *o = open_ok(65536, 64);
    ck_assert_int_eq(mcpauth__shm_session_check(o, "s", "o", t, 0), MCPAUTH_SESSION_OWNER);
    ck_assert_int_eq(take(o, "after", 1, 1, 100.0, NULL), 0);
    mcpauth__shm_close(o);
    mcpauth__shm_close(s);
}
END_TEST

START_TEST(session_basic)
{
    mcpauth_shm *s = open_ok(64, 256);
    time_t t = time(NULL);
    const char *alice = "https://issuer.example\nalice\nclient-1";
    const char *bob = "https://issuer.example\nbob\nclient-1";

    ck_assert_int_eq(mcpauth__shm_session_check(s, "sid-1", alice, t, 0), MCPAUTH_SESSION_UNKNOWN);
    ck_assert_int_eq(mcpauth__shm_session_bind(s, "sid-1", alice, t + 100), 0);
    ck_assert_int_eq(mcpauth__shm_session_check(s, "sid-1", alice, t, 0), MCPAUTH_SESSION_OWNER);
    ck_assert_int_eq(mcpauth__shm_session_check(s, "sid-1", bob, t, 0), MCPAUTH_SESSION_OTHER);
    ck_assert_int_eq(mcpauth__shm_session_check(s, "sid-2", alice, t, 0), MCPAUTH_SESSION_UNKNOWN);

    /* Another owner cannot take a live binding; the owner may renew it. */
    ck_assert_int_eq(mcpauth__shm_session_bind(s, "sid-1", bob, t + 1000), -1);
    ck_assert_int_eq(mcpauth__shm_session_check(s, "sid-1", bob, t, 0), MCPAUTH_SESSION_OTHER);
    ck_assert_int_eq(mcpauth__shm_session_bind(s, "sid-1", alice, t + 200), 0);
    ck_assert_int_eq(mcpauth__shm_session_check(s, "sid-1", alice, t + 150, 0),
                     MCPAUTH_SESSION_OWNER);

    /* Extension: only forwards, and only for the owner. */
    ck_assert_int_eq(mcpauth__shm_session_check(s, "sid-1", bob, t, t + 5000),
                     MCPAUTH_SESSION_OTHER);
    ck_assert_int_eq(mcpauth__shm_session_check(s, "sid-1", alice, t + 199, 0),
                     MCPAUTH_SESSION_OWNER);
    ck_assert_int_eq(mcpauth__shm_session_check(s, "sid-1", alice, t, t + 50),
                     MCPAUTH_SESSION_OWNER);
    ck_assert_int_eq(mcpauth__shm_session_check(s, "sid-1", alice, t + 199, 0),
                     MCPAUTH_SESSION_OWNER);
    ck_assert_int_eq(mcpauth__shm_session_check(s, "sid-1", alice, t + 100, t + 400),
                     MCPAUTH_SESSION_OWNER);
    ck_assert_int_eq(mcpauth__shm_session_check(s, "sid-1", alice, t + 399, 0),
                     MCPAUTH_SESSION_OWNER);

    /* Expiry is exclusive; an expired binding is unknown to everyone. */
    ck_assert_int_eq(mcpauth__shm_session_check(s, "sid-1", alice, t + 400, 0),
                     MCPAUTH_SESSION_UNKNOWN);
    ck_assert_int_eq(mcpauth__shm_session_check(s, "sid-1", bob, t + 400, 0),
                     MCPAUTH_SESSION_UNKNOWN);
    /* ...and can be extended no more. */
    ck_assert_int_eq(mcpauth__shm_session_check(s, "sid-1", alice, t, t + 9999),
                     MCPAUTH_SESSION_UNKNOWN);

    /* Remove. */
    ck_assert_int_eq(mcpauth__shm_session_bind(s, "sid-3", alice, t + 100), 0);
    mcpauth__shm_session_remove(s, "sid-3");
    mcpauth__shm_session_remove(s, "sid-3");
    mcpauth__shm_session_remove(s, "never-bound");
    ck_assert_int_eq(mcpauth__shm_session_check(s, "sid-3", alice, t, 0), MCPAUTH_SESSION_UNKNOWN);
    ck_assert_int_eq(mcpauth__shm_session_bind(s, "sid-3", bob, t + 100), 0);
    ck_assert_int_eq(mcpauth__shm_session_check(s, "sid-3", bob, t, 0), MCPAUTH_SESSION_OWNER);

    /* An expired binding may be taken over by someone else. */
    ck_assert_int_eq(mcpauth__shm_session_bind(s, "sid-4", alice, t - 1), 0);
    ck_assert_int_eq(mcpauth__shm_session_bind(s, "sid-4", bob, t + 100), 0);
    ck_assert_int_eq(mcpauth__shm_session_check(s, "sid-4", bob, t, 0), MCPAUTH_SESSION_OWNER);
    ck_assert_int_eq(mcpauth__shm_session_check(s, "sid-4", alice, t, 0), MCPAUTH_SESSION_OTHER);

    /* Bad arguments never say OWNER. */
    ck_assert_int_eq(mcpauth__shm_session_bind(s, NULL, alice, t + 100), -1);
    ck_assert_int_eq(mcpauth__shm_session_bind(s, "x", NULL, t + 100), -1);
    ck_assert_int_ne(mcpauth__shm_session_check(s, "sid-3", NULL, t, 0), MCPAUTH_SESSION_OWNER);
    ck_assert_int_ne(mcpauth__shm_session_check(NULL, "sid-3", bob, t, 0), MCPAUTH_SESSION_OWNER);
    mcpauth__shm_close(s);
}
END_TEST

START_TEST(session_arbitrary_bytes)
{
    mcpauth_shm *s = open_ok(64, 256);
    time_t t = time(NULL);
    size_t big = 100000;
    char *long_owner = malloc(big + 1), *long_other = malloc(big + 1), *long_id = malloc(big + 1);
    ck_assert_ptr_nonnull(long_owner);
    ck_assert_ptr_nonnull(long_other);
    ck_assert_ptr_nonnull(long_id);
    for (size_t i = 0; i < big; i++) {
        long_owner[i] = (char)(1 + i % 255);
        long_id[i] = (char)(255 - i % 255);
    }
    long_owner[big] = long_id[big] = '\0';
    memcpy(long_other, long_owner, big + 1);
    long_other[big - 1] ^= 1; /* differs in the last byte only */

    ck_assert_int_eq(mcpauth__shm_session_bind(s, long_id, long_owner, t + 60), 0);
    ck_assert_int_eq(mcpauth__shm_session_check(s, long_id, long_owner, t, 0),
                     MCPAUTH_SESSION_OWNER);
    ck_assert_int_eq(mcpauth__shm_session_check(s, long_id, long_other, t, 0),
                     MCPAUTH_SESSION_OTHER);

    /* High bytes, control characters, the empty string, prefixes. */
    ck_assert_int_eq(mcpauth__shm_session_bind(s, "\xff\xfe\x01\x7f", "o\n\x80\xc3", t + 60), 0);
    ck_assert_int_eq(mcpauth__shm_session_check(s, "\xff\xfe\x01\x7f", "o\n\x80\xc3", t, 0),
                     MCPAUTH_SESSION_OWNER);
    ck_assert_int_eq(mcpauth__shm_session_check(s, "\xff\xfe\x01", "o\n\x80\xc3", t, 0),
                     MCPAUTH_SESSION_UNKNOWN);
    ck_assert_int_eq(mcpauth__shm_session_check(s, "\xff\xfe\x01\x7f", "o\n\x80", t, 0),
                     MCPAUTH_SESSION_OTHER);
    ck_assert_int_eq(mcpauth__shm_session_bind(s, "", "", t + 60), 0);
    ck_assert_int_eq(mcpauth__shm_session_check(s, "", "", t, 0), MCPAUTH_SESSION_OWNER);
    ck_assert_int_eq(mcpauth__shm_session_check(s, "", "a", t, 0), MCPAUTH_SESSION_OTHER);
    ck_assert_int_eq(mcpauth__shm_session_bind(s, "iss\nsub", "a", t + 60), 0);
    ck_assert_int_eq(mcpauth__shm_session_check(s, "iss\nsub", "a\n", t, 0),
                     MCPAUTH_SESSION_OTHER);
    free(long_owner);
    free(long_other);
    free(long_id);
    mcpauth__shm_close(s);
}
END_TEST

START_TEST(session_table_full)
{
    /* Eight slots: the window is the whole table. */
    mcpauth_shm *s = open_ok(8, 8);
    time_t t = time(NULL);
    char id[16];
    for (int i = 0; i < 8; i++) {
        snprintf(id, sizeof id, "old%d", i);
        ck_assert_int_eq(mcpauth__shm_session_bind(s, id, "old-owner", t - 10), 0);
    }
    /* Expired bindings make room. */
    for (int i = 0; i < 8; i++) {
        snprintf(id, sizeof id, "new%d", i);
        ck_assert_int_eq(mcpauth__shm_session_bind(s, id, "owner", t + 100 + i), 0);
    }
    for (int i = 0; i < 8; i++) {
        snprintf(id, sizeof id, "new%d", i);
        ck_assert_int_eq(mcpauth__shm_session_check(s, id, "owner", t, 0), MCPAUTH_SESSION_OWNER);
        snprintf(id, sizeof id, "old%d", i);
        ck_assert_int_eq(mcpauth__shm_session_check(s, id, "old-owner", t - 20, 0),
                         MCPAUTH_SESSION_UNKNOWN);
    }
    /* Full of live bindings: the one closest to expiry goes. */
    ck_assert_int_eq(mcpauth__shm_session_bind(s, "ninth", "owner", t + 1000), 0);
    ck_assert_int_eq(mcpauth__shm_session_check(s, "ninth", "owner", t, 0), MCPAUTH_SESSION_OWNER);
    ck_assert_int_eq(mcpauth__shm_session_check(s, "new0", "owner", t, 0), MCPAUTH_SESSION_UNKNOWN);
    for (int i = 1; i < 8; i++) {
        snprintf(id, sizeof id, "new%d", i);
        ck_assert_int_eq(mcpauth__shm_session_check(s, id, "owner", t, 0), MCPAUTH_SESSION_OWNER);
    }
    /* A removed slot is reused before any live binding is evicted. */
    mcpauth__shm_session_remove(s, "new5");
    ck_assert_int_eq(mcpauth__shm_session_bind(s, "tenth", "owner", t + 1000), 0);
    ck_assert_int_eq(mcpauth__shm_session_check(s, "new1", "owner", t, 0), MCPAUTH_SESSION_OWNER);
    mcpauth__shm_close(s);
}
END_TEST

static void open_fails(const char *p, const char *why)
{
    char err[256] = "";
    mcpauth_shm *s = mcpauth__shm_open(p, 64, 64, err, sizeof err);
    if (s)
        mcpauth__shm_close(s);
    ck_assert_msg(s == NULL, "%s was accepted", p);
    ck_assert_msg(strstr(err, why) != NULL, "err \"%s\" does not say \"%s\"", err, why);
}

START_TEST(bad_paths)
{
    char target[160], link[160], sub[160], fifo[160];
    snprintf(target, sizeof target, "%s/target", dir);
    snprintf(link, sizeof link, "%s/link", dir);
    snprintf(sub, sizeof sub, "%s/sub", dir);
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);

    /* A symlink, even to a good file: its target is not ours to pick. */
    snprintf(path, sizeof path, "%s", target);
    mcpauth__shm_close(open_ok(64, 64));
    ck_assert_int_eq(symlink(target, link), 0);
    open_fails(link, "symbolic link");
    snprintf(path, sizeof path, "%s/dangling", dir);
    ck_assert_int_eq(symlink("/nonexistent/nowhere", path), 0);
    open_fails(path, "symbolic link");

    ck_assert_int_eq(mkdir(sub, 0700), 0);
    open_fails(sub, "directory");
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    open_fails(fifo, "not a regular file");
    open_fails("/dev/null", "not a regular file");

    /* Readable or writable by others. */
    ck_assert_int_eq(chmod(target, 0644), 0);
    open_fails(target, "group or others");
    ck_assert_int_eq(chmod(target, 0600), 0);

    /* Owned by someone else. */
    if (geteuid() == 0) {
        ck_assert_int_eq(chown(target, 65534, 65534), 0);
        open_fails(target, "owned by uid 65534");
    } else {
        fprintf(stderr, "test_shm bad_paths: SKIPPED the other-owner check: not running as "
                        "root, so no file owned by another user can be made\n");
    }

    char err[256];
    ck_assert_ptr_null(mcpauth__shm_open(NULL, 64, 64, err, sizeof err));
    ck_assert_ptr_null(mcpauth__shm_open("", 64, 64, err, sizeof err));
    snprintf(path, sizeof path, "%s/sizes", dir);
    ck_assert_ptr_null(mcpauth__shm_open(path, 0, 64, err, sizeof err));
    ck_assert_ptr_null(mcpauth__shm_open(path, 64, 0, err, sizeof err));
    ck_assert_ptr_null(mcpauth__shm_open(path, (size_t)-1, 64, err, sizeof err));
    ck_assert_ptr_null(mcpauth__shm_open(path, 64, (size_t)1 << 40, NULL, 0));
}
END_TEST

START_TEST(garbage_reinitialised)
{
    /* Garbage of the right size and of a wrong size. */
    for (int round = 0; round < 2; round++) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        ck_assert_int_ge(fd, 0);
        char junk[4096];
        for (size_t i = 0; i < sizeof junk; i++)
            junk[i] = (char)(0xa5 ^ i);
        for (int i = 0; i < (round ? 3 : 200); i++)
            ck_assert_int_eq(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
        close(fd);
        mcpauth_shm *s = open_ok(1024, 512);
        int retry;
        ck_assert_int_eq(take(s, "k", 1, 1, 10.0, &retry), 1);
        ck_assert_int_eq(take(s, "k", 1, 1, 10.0, &retry), 0);
        ck_assert_int_eq(mcpauth__shm_session_check(s, "id", "o", time(NULL), 0),
                         MCPAUTH_SESSION_UNKNOWN);
        mcpauth__shm_close(s);
        /* Reopening keeps what was written after the re-initialisation. */
        s = open_ok(1024, 512);
        ck_assert_int_eq(take(s, "k", 1, 1, 10.0, &retry), 0);
        mcpauth__shm_close(s);
        unlink(path);
    }
    /* An empty file (say, left by a crash before the header was written). */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    close(fd);
    mcpauth__shm_close(open_ok(16, 16));
}
END_TEST

/* Regression (issue 12): per-caller concurrency slots, shared by every
 * process on the file, released, and given back when their process dies. */
static int slot_take(mcpauth_shm *s, const char *key, long cap, mcpauth_shm_slot *slot)
{
    return mcpauth__shm_inflight_acquire(s, key, strlen(key), cap, slot);
}

static size_t slot_count(mcpauth_shm *s, const char *key)
{
    return mcpauth__shm_inflight_count(s, key, strlen(key));
}

START_TEST(inflight_acquire_release)
{
    mcpauth_shm *s = open_ok(64, 64);
    mcpauth_shm_slot a1, a2, a3, b1, none;
    ck_assert_int_eq(slot_take(s, "alice", 2, &a1), 1);
    ck_assert_int_eq(slot_take(s, "alice", 2, &a2), 1);
    ck_assert_uint_eq(slot_count(s, "alice"), 2);
    ck_assert_int_eq(slot_take(s, "alice", 2, &a3), 0); /* at the cap */
    ck_assert_uint_eq(a3.index, SIZE_MAX);
    mcpauth__shm_inflight_release(s, &a3); /* holds nothing: a no-op */
    ck_assert_int_eq(slot_take(s, "bob", 2, &b1), 1); /* others unaffected */
    ck_assert_uint_eq(slot_count(s, "bob"), 1);
    /* a key differing only in its last byte is another caller */
    ck_assert_uint_eq(slot_count(s, "alicf"), 0);
    mcpauth__shm_inflight_release(s, &a1);
    mcpauth__shm_inflight_release(s, &a1); /* twice: still one release */
    ck_assert_uint_eq(slot_count(s, "alice"), 1);
    ck_assert_int_eq(slot_take(s, "alice", 2, &a3), 1);
    ck_assert_int_eq(slot_take(s, "alice", 3, &a1), 1); /* the cap is the caller's to pass */
    ck_assert_uint_eq(slot_count(s, "alice"), 3);
    /* cap 0: no cap, nothing held */
    ck_assert_int_eq(slot_take(s, "alice", 0, &none), 1);
    ck_assert_uint_eq(none.index, SIZE_MAX);
    ck_assert_uint_eq(slot_count(s, "alice"), 3);
    mcpauth__shm_inflight_release(s, &a1);
    mcpauth__shm_inflight_release(s, &a2);
    mcpauth__shm_inflight_release(s, &a3);
    mcpauth__shm_inflight_release(s, &b1);
    ck_assert_uint_eq(slot_count(s, "alice"), 0);
    ck_assert_uint_eq(slot_count(s, "bob"), 0);
    /* another process sees (and is capped by) this one's slots */
    ck_assert_int_eq(slot_take(s, "alice", 1, &a1), 1);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        mcpauth_shm *c = mcpauth__shm_open(path, 64, 64, NULL, 0);
        mcpauth_shm_slot x;
        _exit(c && slot_take(c, "alice", 1, &x) == 0 && slot_take(c, "bob", 1, &x) == 1 ? 0 : 1);
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    mcpauth__shm_inflight_release(s, &a1);
    mcpauth__shm_close(s);
}
END_TEST

START_TEST(inflight_dead_process_reclaimed)
{
    mcpauth_shm *s = open_ok(64, 64);
    /* children take alice's two slots and die without releasing them */
    for (int i = 0; i < 2; i++) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            mcpauth_shm *c = mcpauth__shm_open(path, 64, 64, NULL, 0);
            mcpauth_shm_slot x;
            _exit(c && slot_take(c, "alice", 2, &x) == 1 ? 0 : 1);
        }
        int st;
        ck_assert_int_eq(waitpid(pid, &st, 0), pid);
        ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    /* a live child's slot stays counted */
    int go[2];
    ck_assert_int_eq(pipe(go), 0);
    pid_t live = fork();
    ck_assert_int_ge(live, 0);
    if (live == 0) {
        close(go[1]);
        mcpauth_shm *c = mcpauth__shm_open(path, 64, 64, NULL, 0);
        mcpauth_shm_slot x;
        if (!c || slot_take(c, "bob", 1, &x) != 1)
            _exit(1);
        char b;
        (void)read(go[0], &b, 1); /* until the parent is done */
        _exit(0);
    }
    close(go[0]);
    for (int i = 0; i < 200 && slot_count(s, "bob") == 0; i++)
        usleep(10000);
    ck_assert_uint_eq(slot_count(s, "bob"), 1);
    mcpauth_shm_slot a1, a2, a3, b1;
    ck_assert_int_eq(slot_take(s, "bob", 1, &b1), 0);
    /* the dead children's slots do not count: alice gets both back */
    ck_assert_uint_eq(slot_count(s, "alice"), 0);
    ck_assert_int_eq(slot_take(s, "alice", 2, &a1), 1);
    ck_assert_int_eq(slot_take(s, "alice", 2, &a2), 1);
    ck_assert_int_eq(slot_take(s, "alice", 2, &a3), 0);
    close(go[1]);
    int st;
    ck_assert_int_eq(waitpid(live, &st, 0), live);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* bob's holder is gone now */
    ck_assert_int_eq(slot_take(s, "bob", 1, &b1), 1);
    mcpauth__shm_inflight_release(s, &a1);
    mcpauth__shm_inflight_release(s, &a2);
    mcpauth__shm_inflight_release(s, &b1);
    mcpauth__shm_close(s);
}
END_TEST

/* Many processes and threads at once never let more than cap through. */
static mcpauth_shm *race_shm;
static volatile int race_max;
static void *race_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < 200; i++) {
        mcpauth_shm_slot x;
        if (slot_take(race_shm, "carol", 3, &x) == 1) {
            int n = (int)slot_count(race_shm, "carol");
            if (n > race_max)
                race_max = n;
            mcpauth__shm_inflight_release(race_shm, &x);
        }
    }
    return NULL;
}

START_TEST(inflight_threads_never_exceed_cap)
{
    race_shm = open_ok(64, 64);
    race_max = 0;
    pthread_t th[8];
    for (int i = 0; i < 8; i++)
        pthread_create(&th[i], NULL, race_thread, NULL);
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_le(race_max, 3);
    ck_assert_int_ge(race_max, 1);
    ck_assert_uint_eq(slot_count(race_shm, "carol"), 0);
    mcpauth__shm_close(race_shm);
}
END_TEST

/* The slot index is SipHash-2-4 keyed with the file's secret: the
 * reference vectors (key 00..0f, message 00..len-1). */
START_TEST(siphash_vectors)
{
    static const struct {
        size_t len;
        uint64_t want;
    } v[] = {{0, 0x726fdb47dd0e0e31ull},  {1, 0x74f839c593dc67fdull},
             {7, 0xab0200f58b01d137ull},  {8, 0x93f5f5799a932462ull},
             {15, 0xa129ca6149be45e5ull}, {32, 0x7127512f72f27cceull}};
    unsigned char key[MCPAUTH__SIPHASH_KEY_LEN], msg[32];
    for (int i = 0; i < (int)sizeof key; i++)
        key[i] = (unsigned char)i;
    for (int i = 0; i < (int)sizeof msg; i++)
        msg[i] = (unsigned char)i;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        ck_assert_msg(mcpauth__siphash(key, msg, v[i].len) == v[i].want, "length %zu", v[i].len);
    key[15] ^= 1; /* the key matters */
    ck_assert(mcpauth__siphash(key, msg, 15) != 0xa129ca6149be45e5ull);
}
END_TEST

/* 32-byte keys (the proxy passes SHA-256 digests, not hashed again) are
 * whole keys too: differing in their last byte only, or in everything but
 * their first eight, they get buckets and slots of their own. */
START_TEST(digest_keys)
{
    mcpauth_shm *s = open_ok(64, 16);
    unsigned char a[32], b[32];
    memset(a, 0x5a, sizeof a);
    memcpy(b, a, sizeof b);
    b[31] ^= 1;
    int retry;
    ck_assert_int_eq(mcpauth__shm_rate(s, a, sizeof a, 1, 1, 10.0, &retry), 1);
    ck_assert_int_eq(mcpauth__shm_rate(s, a, sizeof a, 1, 1, 10.0, &retry), 0);
    ck_assert_int_eq(mcpauth__shm_rate(s, b, sizeof b, 1, 1, 10.0, &retry), 1);
    memset(b + 8, 0xa5, sizeof b - 8);
    ck_assert_int_eq(mcpauth__shm_rate(s, b, sizeof b, 1, 1, 10.0, &retry), 1);
    mcpauth_shm_slot sa, sb;
    ck_assert_int_eq(mcpauth__shm_inflight_acquire(s, a, sizeof a, 1, &sa), 1);
    ck_assert_int_eq(mcpauth__shm_inflight_acquire(s, b, sizeof b, 1, &sb), 1);
    ck_assert_uint_eq(mcpauth__shm_inflight_count(s, a, sizeof a), 1);
    mcpauth__shm_inflight_release(s, &sa);
    ck_assert_uint_eq(mcpauth__shm_inflight_count(s, a, sizeof a), 0);
    ck_assert_uint_eq(mcpauth__shm_inflight_count(s, b, sizeof b), 1);
    mcpauth__shm_inflight_release(s, &sb);
    mcpauth__shm_close(s);
}
END_TEST

Suite *shm_suite(void)
{
    Suite *s = suite_create("shm");
    TCase *tc = scratch_tcase("core", setup, 30);
    tcase_add_test(tc, rate_basic);
    tcase_add_test(tc, rate_retry_after);
    tcase_add_test(tc, rate_lru_eviction);
    tcase_add_test(tc, rate_processes);
    tcase_add_test(tc, rate_threads);
    tcase_add_test(tc, replace_race);
    tcase_add_test(tc, state_survives_reopen);
    tcase_add_test(tc, robust_mutex);
    tcase_add_test(tc, session_basic);
    tcase_add_test(tc, session_arbitrary_bytes);
    tcase_add_test(tc, session_table_full);
    tcase_add_test(tc, bad_paths);
    tcase_add_test(tc, garbage_reinitialised);
    tcase_add_test(tc, inflight_acquire_release);
    tcase_add_test(tc, inflight_dead_process_reclaimed);
    tcase_add_test(tc, inflight_threads_never_exceed_cap);
    tcase_add_test(tc, siphash_vectors);
    tcase_add_test(tc, digest_keys);
    suite_add_tcase(s, tc);
    return s;
}
