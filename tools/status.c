/* mcpauth status: the figures mcpauth-metadata serves at metrics_path,
 * read from runtime_dir/metrics.shm (read-only: never created here, as
 * root it would get the wrong owner) and laid out for a person: the
 * processes with their versions, then every figure that is not zero. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mcpauth/config.h>
#include <mcpauth/mcpauth.h>

#include "metrics.h"
#include "state.h"
#include "status.h"

/* One line of the text format, "name{labels} value": printed unless it is
 * a comment, a histogram bucket or zero. */
static void figure(const char *line, int *printed)
{
    if (line[0] == '#' || !line[0] || strstr(line, "_bucket{"))
        return;
    const char *sp = strrchr(line, ' ');
    if (!sp || strtod(sp + 1, NULL) == 0)
        return;
    if (!strncmp(line, "mcpauth_info", 12))
        return;
    printf("  %-72.*s %s\n", (int)(sp - line), line, sp + 1);
    (*printed)++;
}

/* Where the shared state is, its policies, and whether Redis answers now
 * (one round trip, bounded by shared_state_timeout).  A password in the
 * address is not printed. */
static void shared_state(const mcpauth_config *cfg)
{
    const char *ss = cfg->shared_state ? cfg->shared_state : "shm";
    if (!strcmp(ss, "shm")) {
        printf("shared_state:  shm (files in runtime_dir, this host only)\n");
        return;
    }
    char shown[300];
    mcpauth__redis_mask(ss, shown, sizeof shown);
    printf("shared_state:  %s", shown);
    printf(" (timeout %ld ms; rate limits fail %s, sessions fail %s)\n", cfg->shared_state_timeout,
           cfg->shared_state_fail_rate ? "closed" : "open",
           cfg->shared_state_fail_sessions ? "closed" : "open");
    char err[512] = "";
    mcpauth__redis *r = mcpauth__redis_open(ss, cfg->shared_state_timeout, err, sizeof err);
    int rc = r ? mcpauth__redis_session_check(r, "mcpauth-status-probe", "-", 1)
               : MCPAUTH__STATE_UNAVAILABLE;
    printf("               %s\n", rc == MCPAUTH__STATE_UNAVAILABLE
                                       ? "NOT REACHABLE now (see the error above or the log)"
                                       : "reachable");
    mcpauth__redis_close(r);
    if (!r)
        fprintf(stderr, "mcpauth: shared_state: %s\n", err);
}

int cmd_status(ctx *c)
{
    if (c->argc > 1)
        return usage_error("status: unknown argument \"%s\"", c->argv[1]);
    if (load_config(c) != 0)
        return 1;
    const mcpauth_config *cfg = c->cfg;
    printf("mcpauth %s\n", MCPAUTH_VERSION);
    printf("configuration: %s\n", cfg->file);
    printf("runtime_dir:   %s\n", cfg->runtime_dir ? cfg->runtime_dir : "-");
    printf("metrics:       %s", cfg->metrics ? "on" : "off (metrics = no)");
    if (cfg->metrics)
        printf(", served at %s to %zu address range%s", cfg->metrics_path ? cfg->metrics_path : "(nowhere)",
               cfg->metrics_allow.n, cfg->metrics_allow.n == 1 ? "" : "s");
    putchar('\n');
    shared_state(cfg);
    int rc = 0;
    char path[4096], err[512];
    mcpauth__metrics *m = NULL;
    if (cfg->metrics && mcpauth__metrics_path(cfg, path, sizeof path) == 0 &&
        !(m = mcpauth__metrics_open_ro(path, cfg, err, sizeof err))) {
        printf("figures:       none (%s; the programs create it at their first request)\n", err);
    }
    if (m) {
        size_t len = 0;
        char *text = mcpauth__metrics_render(m, &len);
        int printed = 0;
        printf("\nprocesses counting (program, version: how many; each one's memory,\n"
               "threads and descriptors are among the figures below):\n");
        /* mcpauth_processes{program="P",version="V"} N, as "P V: N" */
        for (char *l = text, *nl; l && *l; l = nl ? nl + 1 : NULL) {
            nl = strchr(l, '\n');
            if (nl)
                *nl = '\0';
            char prog[64], ver[64];
            long n;
            if (!strncmp(l, "mcpauth_processes{", 18) &&
                sscanf(l + 18, "program=\"%63[^\"]\",version=\"%63[^\"]\"} %ld", prog, ver, &n) == 3)
                printf("  %-18s %-10s %ld\n", prog, ver, n);
            if (nl)
                *nl = '\n';
        }
        printf("\nfigures since the file was made (zeros left out):\n");
        for (char *l = text, *nl; l && *l; l = nl ? nl + 1 : NULL) {
            nl = strchr(l, '\n');
            if (nl)
                *nl = '\0';
            if (strncmp(l, "mcpauth_processes{", 18) != 0)
                figure(l, &printed);
            if (nl)
                *nl = '\n';
        }
        if (!printed)
            printf("  (nothing counted yet)\n");
        free(text);
        mcpauth__metrics_close(m);
    }
    if (cfg->as) {
        printf("\nsigning keys (state_dir %s):\n", cfg->as->state_dir ? cfg->as->state_dir : "-");
        if (status_keys(c) < 0)
            rc = 1;
    } else {
        printf("\nsigning keys: none (no [authorization_server] section)\n");
    }
    return rc;
}
