/* Scratch directories for unit tests: removed with everything in them. */
#ifndef MCPAUTH_TEST_SCRATCH_H
#define MCPAUTH_TEST_SCRATCH_H

#include <stdio.h>
#include <stdlib.h>

/* rm -rf of a directory a test made itself (a mkdtemp name: no quotes). */
static inline void remove_tree(const char *d)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    if (system(cmd) != 0)
        fprintf(stderr, "tests: could not remove %s\n", d);
}

#endif
