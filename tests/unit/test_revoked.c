/* The shared revoked-token set (lib/revoked.c): add, lookup, expiry, a
 * full window, readers that map the file read-only, a file that appears
 * late or is replaced, hostile files, and several processes at once. */
#include <check.h>

Suite *revoked_suite(void);

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/sha.h>

#include <mcpauth/log.h>

#include "revoked.h"
#include "../support/scratch.h"

#define SMALL 64 /* two windows: fills quickly */

static char base[64], dir[96], path[160];

static void suite_setup(void)
{
    snprintf(base, sizeof base, "/tmp/mcpauth-rev-XXXXXX");
    if (!mkdtemp(base)) {
        perror("test_revoked: mkdtemp");
        base[0] = '\0';
    }
}

static void suite_teardown(void)
{
    if (base[0])
        remove_tree(base);
}

static void setup(void)
{
    mcpauth_log_set_level(MCPAUTH_LOG_ERROR);
    ck_assert_msg(base[0] != '\0', "no base directory");
    snprintf(dir, sizeof dir, "%s/XXXXXX", base);
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/revoked.shm", dir);
}

static void teardown(void)
{
    remove_tree(dir);
}

static void digest(const char *token, unsigned char d[32])
{
    SHA256((const unsigned char *)token, strlen(token), d);
}

static void digest_n(int n, unsigned char d[32])
{
    char t[32];
    snprintf(t, sizeof t, "token-%d", n);
    digest(t, d);
}

static mcpauth__revoked *rw(size_t slots)
{
    char err[256] = "";
    mcpauth__revoked *r = mcpauth__revoked_open_rw(path, slots, err, sizeof err);
    ck_assert_msg(r != NULL, "open_rw: %s", err);
    return r;
}

static mcpauth__revoked *ro(void)
{
    char err[256] = "x";
    mcpauth__revoked *r = mcpauth__revoked_open_ro(path, err, sizeof err);
    ck_assert_ptr_nonnull(r);
    ck_assert_msg(err[0] == '\0', "open_ro: %s", err);
    return r;
}

START_TEST(add_and_lookup)
{
    time_t now = time(NULL);
    mcpauth__revoked *w = rw(MCPAUTH__REVOKED_SLOTS), *r = ro();
    unsigned char a[32], b[32];
    digest("token-a", a);
    digest("token-b", b);
    ck_assert_int_eq(mcpauth__revoked_has(w, a, now), 0);
    ck_assert_int_eq(mcpauth__revoked_has(r, a, now), 0);
    uint64_t g0 = mcpauth__revoked_generation(r);
    ck_assert_int_eq(mcpauth__revoked_add(w, a, now + 300, now), 0);
    ck_assert_int_eq(mcpauth__revoked_has(w, a, now), 1);
    ck_assert_int_eq(mcpauth__revoked_has(r, a, now), 1); /* another mapping sees it */
    ck_assert_int_eq(mcpauth__revoked_has(r, b, now), 0);
    ck_assert_uint_eq(mcpauth__revoked_generation(r), g0 + 1);
    /* again: idempotent */
    ck_assert_int_eq(mcpauth__revoked_add(w, a, now + 300, now), 0);
    ck_assert_int_eq(mcpauth__revoked_has(r, a, now), 1);
    /* a reader cannot write */
    ck_assert_int_eq(mcpauth__revoked_add(r, b, now + 300, now), -1);
    ck_assert_int_eq(mcpauth__revoked_has(r, b, now), 0);
    /* the file: 0600 */
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    mcpauth__revoked_close(r);
    mcpauth__revoked_close(w);
    /* it survives the writer */
    r = ro();
    ck_assert_int_eq(mcpauth__revoked_has(r, a, now), 1);
    mcpauth__revoked_close(r);
}
END_TEST

/* An entry outlives its token by the largest clock leeway (600 s), since
 * the validator accepts a token that long after exp; then its slot is
 * free again. */
START_TEST(expiry_and_reuse)
{
    time_t now = time(NULL);
    mcpauth__revoked *w = rw(SMALL);
    unsigned char a[32];
    digest("token-a", a);
    ck_assert_int_eq(mcpauth__revoked_add(w, a, now + 10, now), 0);
    ck_assert_int_eq(mcpauth__revoked_has(w, a, now + 10 + 599), 1);
    ck_assert_int_eq(mcpauth__revoked_has(w, a, now + 10 + 600), 0);
    /* batches of SMALL / 4, each expired before the next: slots are
     * reused, no overflow ever */
    for (int i = 0; i < 10 * SMALL / 4; i++) {
        unsigned char d[32];
        digest_n(i, d);
        time_t t = now + 2000 * (i / (SMALL / 4) + 1);
        ck_assert_int_eq(mcpauth__revoked_add(w, d, t, t - 1000), 0);
        ck_assert_int_eq(mcpauth__revoked_has(w, d, t - 1000), 1);
    }
    unsigned char other[32];
    digest("never-added", other);
    ck_assert_int_eq(mcpauth__revoked_has(w, other, now + 2000 * 10 - 1000), 0);
    mcpauth__revoked_close(w);
}
END_TEST

/* More live entries than the slots a key may use: never lose one silently.
 * The set then answers "revoked" for everything until the given-up entry
 * would have expired (fail closed), and recovers afterwards. */
START_TEST(full_table_fails_closed)
{
    time_t now = time(NULL);
    mcpauth__revoked *w = rw(SMALL);
    unsigned char other[32];
    digest("never-added", other);
    int stored = 0;
    /* fill until some key finds its window full (SMALL slots, windows of 32) */
    for (int i = 0; i < SMALL; i++) {
        unsigned char d[32];
        digest_n(i, d);
        ck_assert_int_eq(mcpauth__revoked_add(w, d, now + 100 + i, now), 0);
        if (mcpauth__revoked_has(w, other, now) == 1)
            break;
        stored++;
    }
    for (int i = 0; i < stored; i++) {
        unsigned char d[32];
        digest_n(i, d);
        ck_assert_msg(mcpauth__revoked_has(w, d, now) == 1, "entry %d lost", i);
    }
    for (int i = stored; mcpauth__revoked_has(w, other, now) == 0; i++) {
        unsigned char d[32];
        digest_n(i, d);
        ck_assert_int_lt(i, 10 * SMALL);
        ck_assert_int_eq(mcpauth__revoked_add(w, d, now + 100 + i, now), 0);
    }
    /* fail closed now; everything again after the given-up entry's time */
    ck_assert_int_eq(mcpauth__revoked_has(w, other, now), 1);
    ck_assert_int_eq(mcpauth__revoked_has(w, other, now + 100 + 10 * SMALL + 600), 0);
    mcpauth__revoked_close(w);
}
END_TEST

/* The gate may start before the AS made the file: "cannot tell" (-1, the
 * caller refuses) until it exists, then found at the next lookup. */
START_TEST(reader_before_writer)
{
    time_t now = time(NULL);
    char err[256] = "";
    mcpauth__revoked *r = mcpauth__revoked_open_ro(path, err, sizeof err);
    ck_assert_ptr_nonnull(r);
    ck_assert_msg(strstr(err, "No such file") != NULL, "%s", err);
    unsigned char a[32];
    digest("token-a", a);
    ck_assert_int_eq(mcpauth__revoked_has(r, a, now), -1);
    mcpauth__revoked *w = rw(SMALL);
    ck_assert_int_eq(mcpauth__revoked_add(w, a, now + 300, now), 0);
    int got = -1;
    for (int i = 0; i < 30 && got < 0; i++) {
        got = mcpauth__revoked_has(r, a, time(NULL));
        if (got < 0)
            usleep(100000);
    }
    ck_assert_int_eq(got, 1);
    mcpauth__revoked_close(w);
    mcpauth__revoked_close(r);
    /* no path at all */
    r = mcpauth__revoked_open_ro(NULL, err, sizeof err);
    ck_assert_int_eq(mcpauth__revoked_has(r, a, now), -1);
    mcpauth__revoked_close(r);
}
END_TEST

/* A writer of another layout replaces the file; readers of the old one
 * notice (retired flag) and follow to the new file. */
START_TEST(replaced_file_followed)
{
    time_t now = time(NULL);
    mcpauth__revoked *w = rw(SMALL), *r = ro();
    unsigned char a[32], b[32];
    digest("token-a", a);
    digest("token-b", b);
    ck_assert_int_eq(mcpauth__revoked_add(w, a, now + 300, now), 0);
    ck_assert_int_eq(mcpauth__revoked_has(r, a, now), 1);
    mcpauth__revoked *w2 = rw(2 * SMALL); /* another layout: a fresh file */
    ck_assert_int_eq(mcpauth__revoked_add(w2, b, now + 300, now), 0);
    int got = -1;
    for (int i = 0; i < 30 && got != 1; i++) {
        got = mcpauth__revoked_has(r, b, time(NULL));
        if (got != 1)
            usleep(100000);
    }
    ck_assert_int_eq(got, 1);
    mcpauth__revoked_close(w2);
    mcpauth__revoked_close(w);
    mcpauth__revoked_close(r);
}
END_TEST

START_TEST(hostile_files)
{
    char err[256];
    unsigned char a[32];
    digest("token-a", a);
    mcpauth__revoked_close(rw(SMALL));
    /* writable by others: whoever can write it can un-revoke tokens */
    ck_assert_int_eq(chmod(path, 0666), 0);
    ck_assert_ptr_null(mcpauth__revoked_open_rw(path, SMALL, err, sizeof err));
    ck_assert_msg(strstr(err, "mode 0666") != NULL, "%s", err);
    mcpauth__revoked *r = mcpauth__revoked_open_ro(path, err, sizeof err);
    ck_assert_msg(strstr(err, "mode 0666") != NULL, "%s", err);
    ck_assert_int_eq(mcpauth__revoked_has(r, a, time(NULL)), -1);
    mcpauth__revoked_close(r);
    /* a symlink, a directory */
    char link[200];
    snprintf(link, sizeof link, "%s/link", dir);
    ck_assert_int_eq(symlink(path, link), 0);
    ck_assert_ptr_null(mcpauth__revoked_open_rw(link, SMALL, err, sizeof err));
    ck_assert_msg(strstr(err, "symbolic link") != NULL, "%s", err);
    ck_assert_ptr_null(mcpauth__revoked_open_rw(dir, SMALL, err, sizeof err));
    /* garbage: a reader refuses it, a writer lays it out afresh */
    ck_assert_int_eq(chmod(path, 0600), 0);
    int fd = open(path, O_WRONLY | O_TRUNC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "garbage", 7), 7);
    close(fd);
    r = mcpauth__revoked_open_ro(path, err, sizeof err);
    ck_assert_msg(strstr(err, "not (yet) a revocation list") != NULL, "%s", err);
    ck_assert_int_eq(mcpauth__revoked_has(r, a, time(NULL)), -1);
    mcpauth__revoked_close(r);
    mcpauth__revoked *w = rw(SMALL);
    ck_assert_int_eq(mcpauth__revoked_has(w, a, time(NULL)), 0);
    mcpauth__revoked_close(w);
    /* table sizes */
    ck_assert_ptr_null(mcpauth__revoked_open_rw(path, 3, err, sizeof err));
}
END_TEST

/* Writers in several processes, a reader reading lock-free meanwhile:
 * every entry lands and the reader never sees one that was not added. */
#define PROCS 4
#define PER 200
START_TEST(processes_concurrently)
{
    time_t now = time(NULL);
    mcpauth__revoked_close(rw(MCPAUTH__REVOKED_SLOTS));
    pid_t pids[PROCS + 1];
    for (int p = 0; p < PROCS; p++) {
        pids[p] = fork();
        ck_assert_int_ge(pids[p], 0);
        if (pids[p] == 0) {
            char err[256];
            mcpauth__revoked *w =
                mcpauth__revoked_open_rw(path, MCPAUTH__REVOKED_SLOTS, err, sizeof err);
            int bad = !w;
            for (int i = 0; w && i < PER; i++) {
                unsigned char d[32];
                digest_n(p * PER + i, d);
                bad |= mcpauth__revoked_add(w, d, now + 300, now) != 0;
                bad |= mcpauth__revoked_has(w, d, now) != 1;
            }
            mcpauth__revoked_close(w);
            _exit(bad);
        }
    }
    pids[PROCS] = fork();
    ck_assert_int_ge(pids[PROCS], 0);
    if (pids[PROCS] == 0) {
        char err[256];
        mcpauth__revoked *r = mcpauth__revoked_open_ro(path, err, sizeof err);
        int bad = 0;
        for (int i = 0; i < 20000; i++) {
            unsigned char d[32];
            digest_n(1000000 + i % 5000, d);
            bad |= mcpauth__revoked_has(r, d, now) != 0;
        }
        mcpauth__revoked_close(r);
        _exit(bad);
    }
    for (int p = 0; p <= PROCS; p++) {
        int st;
        ck_assert_int_eq(waitpid(pids[p], &st, 0), pids[p]);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "process %d failed", p);
    }
    mcpauth__revoked *r = ro();
    for (int i = 0; i < PROCS * PER; i++) {
        unsigned char d[32];
        digest_n(i, d);
        ck_assert_msg(mcpauth__revoked_has(r, d, now) == 1, "entry %d missing", i);
    }
    ck_assert_uint_eq(mcpauth__revoked_generation(r), PROCS * PER);
    mcpauth__revoked_close(r);
}
END_TEST

static void on_sigbus(int sig)
{
    (void)sig;
    _exit(42);
}

/* A writer killed while holding the lock does not wedge the others.  As in
 * test_shm: the child shrinks the file to its first page (header and
 * mutex), so an add takes the lock and then faults on a slot. */
START_TEST(writer_dies_holding_lock)
{
    time_t now = time(NULL);
    mcpauth__revoked *w = rw(MCPAUTH__REVOKED_SLOTS);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        signal(SIGBUS, on_sigbus);
        if (truncate(path, 4096) != 0)
            _exit(2);
        for (int i = 0; i < 1000; i++) {
            unsigned char d[32];
            digest_n(i, d);
            mcpauth__revoked_add(w, d, now + 300, now);
        }
        _exit(3);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 42,
                  "child did not die inside the lock (status %d)", status);
    ck_assert_int_eq(truncate(path, st.st_size), 0);
    unsigned char a[32];
    digest("token-a", a);
    /* a non-robust mutex would hang here until Check's timeout */
    ck_assert_int_eq(mcpauth__revoked_add(w, a, now + 300, now), 0);
    ck_assert_int_eq(mcpauth__revoked_has(w, a, now), 1);
    mcpauth__revoked_close(w);
}
END_TEST

Suite *revoked_suite(void)
{
    Suite *s = suite_create("revoked");
    TCase *tc = tcase_create("set");
    tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, add_and_lookup);
    tcase_add_test(tc, expiry_and_reuse);
    tcase_add_test(tc, full_table_fails_closed);
    tcase_add_test(tc, reader_before_writer);
    tcase_add_test(tc, replaced_file_followed);
    tcase_add_test(tc, hostile_files);
    tcase_add_test(tc, processes_concurrently);
    tcase_add_test(tc, writer_dies_holding_lock);
    suite_add_tcase(s, tc);
    return s;
}
