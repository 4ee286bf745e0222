/* Scratch directories for suites that write files: a base directory per
 * suite, made and removed by the runner itself (an unchecked fixture), so
 * even a failed test, whose process exits without its teardown, leaves
 * nothing; and a fresh directory in it per test (each test runs in its own
 * process in fork mode).
 *
 * Include once per test file, after defining SCRATCH_NAME ("shm" gives
 * /tmp/mcpauth-shm-XXXXXX).  It defines base and dir, the unchecked
 * fixture scratch_suite_setup/scratch_suite_teardown, the checked one
 * scratch_setup/scratch_teardown, and scratch_tcase, a TCase with both. */
#ifndef MCPAUTH_TEST_SCRATCHDIR_H
#define MCPAUTH_TEST_SCRATCHDIR_H

#include <stdio.h>
#include <stdlib.h>

#include <check.h>

#include "scratch.h"

#ifndef SCRATCH_NAME
#error "define SCRATCH_NAME before including scratchdir.h"
#endif

static char base[64], dir[128];

/* On failure base stays "": every test then fails in scratch_setup. */
static inline void scratch_suite_setup(void)
{
    snprintf(base, sizeof base, "/tmp/mcpauth-" SCRATCH_NAME "-XXXXXX");
    if (!mkdtemp(base)) {
        perror("test_" SCRATCH_NAME ": mkdtemp");
        base[0] = '\0';
    }
}

static inline void scratch_suite_teardown(void)
{
    if (base[0])
        remove_tree(base);
}

static inline void scratch_setup(void)
{
    ck_assert_msg(base[0] != '\0', "no base directory");
    snprintf(dir, sizeof dir, "%s/XXXXXX", base);
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static inline void scratch_teardown(void)
{
    remove_tree(dir);
}

/* setup: the checked setup (it calls scratch_setup first). */
static inline TCase *scratch_tcase(const char *name, void (*setup)(void), double timeout)
{
    TCase *tc = tcase_create(name);
    tcase_add_unchecked_fixture(tc, scratch_suite_setup, scratch_suite_teardown);
    tcase_add_checked_fixture(tc, setup, scratch_teardown);
    tcase_set_timeout(tc, timeout);
    return tc;
}

#endif
