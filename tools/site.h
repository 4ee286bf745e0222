/* mcpauth(8): the shared-hosting commands (tools/site.c) and the little of
 * tools/mcpauth.c they share: the command context, messages, option
 * parsing and a few path helpers. */
#ifndef MCPAUTH_TOOLS_SITE_H
#define MCPAUTH_TOOLS_SITE_H

#include <limits.h>
#include <sys/types.h>

#include <mcpauth/config.h>

#define PROG "mcpauth"
#define EXIT_USAGE 2

typedef struct {
    const char *config_file;    /* --config or $MCPAUTH_CONFIG */
    int config_given;           /* --config on the command line */
    const char *state_dir_opt;  /* --state-dir */
    mcpauth_config *cfg;        /* loaded when needed */
    char state_dir[PATH_MAX];
    int argc;                   /* the command and its arguments */
    char **argv;
} ctx;

/* "mcpauth: " and the message on stderr. */
void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same with a pointer to --help; returns EXIT_USAGE. */
int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Loads c->cfg once (--config, $MCPAUTH_CONFIG or the default); -1 said. */
int load_config(ctx *c);
/* dir/name into out; -1 when it does not fit. */
int path_in(char *out, size_t len, const char *dir, const char *name);
/* mkdir -p with mode for what it creates (*created set when it did). */
int make_dirs(const char *dir, mode_t mode, int *created);
/* "--name VALUE" or "--name=VALUE" at argv[*i]: 1 (value in *out), 0 not
 * this option, -1 value missing. */
int opt_value(char **argv, int argc, int *i, const char *name, const char **out);

/* In a command's argument loop (int i, r): takes option name into var. */
#define OPTION(name, var)                                                                    \
    if ((r = opt_value(c->argv, c->argc, &i, name, &var)) < 0)                               \
        return usage_error("%s needs a value", name);                                        \
    else if (r > 0)                                                                          \
        continue

/* `mcpauth site`: writes the .htaccess kit and wrappers into a docroot. */
int cmd_site(ctx *c);
/* `mcpauth site-check [URL...]`: says what of a deployment works. */
int cmd_site_check(ctx *c);

#endif
