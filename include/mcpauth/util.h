/* String lists, the type configuration lists are kept in. */
#ifndef MCPAUTH_UTIL_H
#define MCPAUTH_UTIL_H

#include <stddef.h>

/* A NULL-terminated list of owned strings, used for configuration lists. */
typedef struct mcpauth_strlist {
    size_t n;
    char **v;
} mcpauth_strlist;

/* Appends the words of s (split on ASCII spaces and tabs) to l.  Always
 * returns 0: a failed allocation aborts the process (the library's
 * out-of-memory policy); the int is kept for existing callers. */
int mcpauth_strlist_split(mcpauth_strlist *l, const char *s);
int mcpauth_strlist_has(const mcpauth_strlist *l, const char *s);
void mcpauth_strlist_free(mcpauth_strlist *l);

#endif
