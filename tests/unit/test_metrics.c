/* Metrics (lib/metrics.c): one file seen by every handle and process, exact
 * sums under concurrent processes, replacement when the resources change,
 * the Prometheus text format checked line by line, refusal reasons, CIDR
 * matching and the configuration keys. */
#include "config.h"

#include <check.h>

Suite *metrics_suite(void);

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mcpauth/config.h>
#include <mcpauth/validate.h>

#include "metrics.h"
#define SCRATCH_NAME "metrics"
#include "../support/scratchdir.h"

static char path[200];

static void setup(void)
{
    scratch_setup();
    snprintf(path, sizeof path, "%s/metrics.shm", dir);
}

#define RES(n) "[resource " n "]\nuri = https://mcp.example.com/" n "\n" \
               "authorization_servers = https://auth.example.com\n"

static mcpauth_config *conf(const char *text)
{
    char err[512] = "";
    mcpauth_config *cfg = mcpauth_config_parse(text, strlen(text), "t.conf", err, sizeof err);
    ck_assert_msg(cfg != NULL, "%s", err);
    return cfg;
}

static mcpauth__metrics *open_ok(const mcpauth_config *cfg)
{
    char err[512] = "";
    mcpauth__metrics *m = mcpauth__metrics_open(path, cfg, err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    return m;
}

START_TEST(two_handles_see_the_same_counters)
{
    mcpauth_config *cfg = conf(RES("a") RES("b"));
    mcpauth__metrics *m1 = open_ok(cfg), *m2 = open_ok(cfg);
    const mcpauth_resource *a = &cfg->resources[0], *b = &cfg->resources[1];
    mcpauth__metrics_add_to(m1, a, MCPAUTH_M_REQ_ALLOW, 2);
    mcpauth__metrics_add_to(m1, b, MCPAUTH_M_REQ_ALLOW, 5);
    mcpauth__metrics_add_to(m2, NULL, MCPAUTH_M_AS_TOKENS, 3);
    mcpauth__metrics_add_to(m2, a, MCPAUTH_M_STREAMS_OPEN, 1);
    mcpauth__metrics_add_to(m1, a, MCPAUTH_M_STREAMS_OPEN, -1);
    ck_assert_int_eq(mcpauth__metrics_get(m2, a, MCPAUTH_M_REQ_ALLOW), 2);
    ck_assert_int_eq(mcpauth__metrics_get(m2, b, MCPAUTH_M_REQ_ALLOW), 5);
    ck_assert_int_eq(mcpauth__metrics_get(m1, NULL, MCPAUTH_M_AS_TOKENS), 3);
    ck_assert_int_eq(mcpauth__metrics_get(m1, a, MCPAUTH_M_STREAMS_OPEN), 0);
    /* a resource of another configuration counts as no resource */
    mcpauth_config *other = conf(RES("a") RES("b"));
    mcpauth__metrics_add_to(m1, &other->resources[0], MCPAUTH_M_REQ_ALLOW, 7);
    ck_assert_int_eq(mcpauth__metrics_get(m2, a, MCPAUTH_M_REQ_ALLOW), 2);
    ck_assert_int_eq(mcpauth__metrics_get(m2, NULL, MCPAUTH_M_REQ_ALLOW), 7);
    mcpauth__metrics_close(m1);
    mcpauth__metrics_close(m2);
    /* reopened later: still there */
    mcpauth__metrics *m3 = open_ok(cfg);
    ck_assert_int_eq(mcpauth__metrics_get(m3, b, MCPAUTH_M_REQ_ALLOW), 5);
    mcpauth__metrics_close(m3);
    mcpauth_config_free(other);
    mcpauth_config_free(cfg);
}
END_TEST

#define NCHILD 4
#define NADD 20000

START_TEST(forked_processes_sum_exactly)
{
    mcpauth_config *cfg = conf(RES("a"));
    mcpauth__metrics *m = open_ok(cfg);
    const mcpauth_resource *a = &cfg->resources[0];
    pid_t pids[NCHILD];
    for (int i = 0; i < NCHILD; i++) {
        pids[i] = fork();
        ck_assert_int_ge(pids[i], 0);
        if (pids[i] == 0) {
            /* half on the inherited map, half on one of their own */
            mcpauth__metrics *own = mcpauth__metrics_open(path, cfg, NULL, 0);
            if (!own)
                _exit(2);
            for (int k = 0; k < NADD; k++) {
                mcpauth__metrics_add_to(k % 2 ? own : m, a, MCPAUTH_M_REQ_INVALID_TOKEN, 1);
                mcpauth__metrics_observe_in(own, a, MCPAUTH_H_VALIDATION, 1000LL * (k % 5000));
                mcpauth__metrics_add_to(m, NULL, MCPAUTH_M_AS_CODES, 3);
            }
            _exit(0);
        }
    }
    for (int i = 0; i < NCHILD; i++) {
        int st;
        ck_assert_int_eq(waitpid(pids[i], &st, 0), pids[i]);
        ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    ck_assert_int_eq(mcpauth__metrics_get(m, a, MCPAUTH_M_REQ_INVALID_TOKEN), NCHILD * NADD);
    ck_assert_int_eq(mcpauth__metrics_get(m, NULL, MCPAUTH_M_AS_CODES), 3 * NCHILD * NADD);
    size_t len;
    char *text = mcpauth__metrics_render(m, &len);
    char want[128];
    snprintf(want, sizeof want, "mcpauth_validation_seconds_count{resource=\"a\"} %d\n",
             NCHILD * NADD);
    ck_assert_msg(strstr(text, want), "%s", text);
    snprintf(want, sizeof want, "mcpauth_validation_seconds_bucket{resource=\"a\",le=\"+Inf\"} %d\n",
             NCHILD * NADD);
    ck_assert_msg(strstr(text, want), "no %s", want);
    free(text);
    mcpauth__metrics_close(m);
    mcpauth_config_free(cfg);
}
END_TEST

START_TEST(other_resources_replace_the_file)
{
    mcpauth_config *ab = conf(RES("a") RES("b")), *ac = conf(RES("a") RES("c"));
    mcpauth__metrics *m1 = open_ok(ab);
    mcpauth__metrics_add_to(m1, &ab->resources[0], MCPAUTH_M_REQ_ALLOW, 4);
    mcpauth__metrics *m2 = open_ok(ac);
    /* a fresh file: b's figures are not shown as c's */
    ck_assert_int_eq(mcpauth__metrics_get(m2, &ac->resources[0], MCPAUTH_M_REQ_ALLOW), 0);
    /* the old map stays whole for the process still using it */
    ck_assert_int_eq(mcpauth__metrics_get(m1, &ab->resources[0], MCPAUTH_M_REQ_ALLOW), 4);
    mcpauth__metrics_close(m1);
    mcpauth__metrics_close(m2);
    mcpauth_config_free(ab);
    mcpauth_config_free(ac);
}
END_TEST

/* The text format 0.0.4, as Prometheus parses it: every line a HELP, a
 * TYPE, or a sample of a family TYPE'd before it, with well-formed labels
 * and a number; histogram buckets cumulative, +Inf equal to _count. */
static void check_format(const char *text)
{
    regex_t help, type, sample;
    ck_assert_int_eq(regcomp(&help, "^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* [^\n]*$", REG_EXTENDED), 0);
    ck_assert_int_eq(regcomp(&type, "^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) "
                                    "(counter|gauge|histogram|summary|untyped)$",
                             REG_EXTENDED), 0);
    ck_assert_int_eq(regcomp(&sample, "^([a-zA-Z_:][a-zA-Z0-9_:]*)"
                                      "(\\{([a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\\n]|\\\\.)*\""
                                      "(,[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\\n]|\\\\.)*\")*)\\})?"
                                      " (-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?|\\+Inf|-Inf|NaN)$",
                             REG_EXTENDED), 0);
    char family[128] = "", ftype[16] = "";
    unsigned long long last_bucket = 0;
    int lines = 0;
    ck_assert_msg(text[0] && text[strlen(text) - 1] == '\n', "must end with a newline");
    char *copy = strdup(text), *save = NULL;
    for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        regmatch_t g[10];
        lines++;
        if (!strncmp(l, "# HELP ", 7)) {
            ck_assert_msg(regexec(&help, l, 0, NULL, 0) == 0, "bad HELP: %s", l);
            continue;
        }
        if (!strncmp(l, "# ", 2)) {
            ck_assert_msg(regexec(&type, l, 3, g, 0) == 0, "bad comment: %s", l);
            snprintf(family, sizeof family, "%.*s", (int)(g[1].rm_eo - g[1].rm_so), l + g[1].rm_so);
            snprintf(ftype, sizeof ftype, "%.*s", (int)(g[2].rm_eo - g[2].rm_so), l + g[2].rm_so);
            last_bucket = 0;
            continue;
        }
        ck_assert_msg(regexec(&sample, l, 10, g, 0) == 0, "bad sample: %s", l);
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(g[1].rm_eo - g[1].rm_so), l + g[1].rm_so);
        size_t fl = strlen(family);
        ck_assert_msg(fl && !strncmp(name, family, fl), "sample %s outside its family %s", name,
                      family);
        if (!strcmp(ftype, "histogram")) {
            const char *suffix = name + fl;
            ck_assert_msg(!strcmp(suffix, "_bucket") || !strcmp(suffix, "_sum") ||
                              !strcmp(suffix, "_count"), "bad histogram sample %s", l);
            unsigned long long v = strtoull(strrchr(l, ' ') + 1, NULL, 10);
            if (!strcmp(suffix, "_bucket")) {
                ck_assert_msg(strstr(l, "le=\""), "bucket without le: %s", l);
                ck_assert_msg(v >= last_bucket, "buckets not cumulative: %s", l);
                last_bucket = v;
            } else if (!strcmp(suffix, "_count")) {
                ck_assert_msg(v == last_bucket, "_count differs from +Inf: %s", l);
                last_bucket = 0;
            }
        } else {
            ck_assert_msg(!strcmp(name, family), "sample %s in family %s", name, family);
        }
        if (!strcmp(ftype, "counter"))
            ck_assert_msg(strchr(l, ' ')[1] != '-' && strrchr(l, ' ')[1] != '-',
                          "negative counter: %s", l);
    }
    ck_assert_int_gt(lines, 50);
    free(copy);
    regfree(&help);
    regfree(&type);
    regfree(&sample);
}

START_TEST(text_format_is_valid)
{
    /* a name needing escapes in a label value */
    mcpauth_config *cfg = conf(RES("a") "[resource b-2]\nuri = https://mcp.example.com/b2\n"
                                        "authorization_servers = https://auth.example.com\n");
    mcpauth__metrics *m = open_ok(cfg);
    mcpauth__metrics_claim(m, "test\"prog");
    const mcpauth_resource *a = &cfg->resources[0];
    mcpauth__metrics_add_to(m, a, MCPAUTH_M_REQ_ALLOW, 2);
    mcpauth__metrics_add_to(m, a, mcpauth__metrics_refused(MCPAUTH_REFUSAL_AUDIENCE), 3);
    mcpauth__metrics_observe_in(m, a, MCPAUTH_H_VALIDATION, 300000);
    mcpauth__metrics_observe_in(m, a, MCPAUTH_H_VALIDATION, 20000000000LL);
    mcpauth__metrics_observe_in(m, &cfg->resources[1], MCPAUTH_H_BACKEND, 1);
    size_t len;
    char *text = mcpauth__metrics_render(m, &len);
    ck_assert_uint_eq(len, strlen(text));
    check_format(text);
    ck_assert_msg(strstr(text, "mcpauth_requests_total{resource=\"a\",verdict=\"allow\"} 2\n"),
                  "%s", text);
    ck_assert(strstr(text, "mcpauth_refusals_total{resource=\"a\",reason=\"audience\"} 3\n"));
    ck_assert(strstr(text, "mcpauth_validation_seconds_bucket{resource=\"a\",le=\"0.0005\"} 1\n"));
    ck_assert(strstr(text, "mcpauth_validation_seconds_bucket{resource=\"a\",le=\"10\"} 1\n"));
    ck_assert(strstr(text, "mcpauth_validation_seconds_count{resource=\"a\"} 2\n"));
    ck_assert(strstr(text, "mcpauth_validation_seconds_sum{resource=\"a\"} 20.000300000\n"));
    /* this process, listed with its program (escaped) and figures */
    char want[128];
    snprintf(want, sizeof want, "mcpauth_process_threads{program=\"test\\\"prog\",pid=\"%ld\"} ",
             (long)getpid());
    ck_assert_msg(strstr(text, want), "no %s in\n%s", want, text);
    ck_assert(strstr(text, "mcpauth_processes{program=\"test\\\"prog\",version=\"" PACKAGE_VERSION
                           "\"} 1\n"));
    free(text);
    /* a process gone: its slot is reaped, not listed */
    pid_t child = fork();
    if (child == 0) {
        mcpauth__metrics *own = mcpauth__metrics_open(path, cfg, NULL, 0);
        mcpauth__metrics_claim(own, "gone");
        _exit(0); /* no close: as if killed */
    }
    waitpid(child, NULL, 0);
    text = mcpauth__metrics_render(m, &len);
    ck_assert_msg(!strstr(text, "\"gone\""), "%s", text);
    check_format(text);
    free(text);
    mcpauth__metrics_close(m);
    mcpauth_config_free(cfg);
}
END_TEST

/* The reason labels are what dashboards query and their order is the
 * layout of the file: exactly these, in this order, one per refusal code,
 * each named as mcpauth_refusal_name says; NONE and codes out of range are
 * counted as "other". */
START_TEST(refusal_reasons_are_a_fixed_set)
{
    static const char *const labels[] = {"no_token", "bad_request", "malformed", "expired",
                                         "not_yet_valid", "audience", "issuer", "algorithm",
                                         "unknown_key", "signature", "revoked", "inactive",
                                         "scope", "unavailable", "other"};
    ck_assert_int_eq(MCPAUTH_REFUSAL_COUNT, 1 + sizeof labels / sizeof labels[0]);
    for (int r = MCPAUTH_REFUSAL_NO_TOKEN; r < MCPAUTH_REFUSAL_COUNT; r++) {
        const char *l = mcpauth__metrics_refusal_label((mcpauth_refusal)r);
        ck_assert_msg(l != NULL, "refusal %d has no label", r);
        ck_assert_str_eq(l, labels[r - 1]);
        ck_assert_str_eq(l, mcpauth_refusal_name((mcpauth_refusal)r));
        ck_assert_int_eq(mcpauth__metrics_refused((mcpauth_refusal)r), MCPAUTH_M_REFUSED + r - 1);
    }
    ck_assert_int_eq(MCPAUTH_REFUSAL_OTHER, MCPAUTH_REFUSAL_COUNT - 1); /* the last counter */
    ck_assert_int_eq(mcpauth__metrics_refused(MCPAUTH_REFUSAL_NONE),
                     mcpauth__metrics_refused(MCPAUTH_REFUSAL_OTHER));
    ck_assert_int_eq(mcpauth__metrics_refused((mcpauth_refusal)MCPAUTH_REFUSAL_COUNT),
                     mcpauth__metrics_refused(MCPAUTH_REFUSAL_OTHER));
    ck_assert_int_eq(mcpauth__metrics_refused((mcpauth_refusal)-1),
                     mcpauth__metrics_refused(MCPAUTH_REFUSAL_OTHER));
    ck_assert_str_eq(mcpauth__metrics_refusal_label((mcpauth_refusal)99), "other");
    ck_assert_str_eq(mcpauth_refusal_name(MCPAUTH_REFUSAL_NONE), "none");
    ck_assert_str_eq(mcpauth_refusal_name((mcpauth_refusal)99), "other");
    ck_assert_int_lt(mcpauth__metrics_refused(MCPAUTH_REFUSAL_OTHER), MCPAUTH_M_CACHE_HIT);

    /* and the text lists every label of every resource, in that order */
    mcpauth_config *cfg = conf(RES("a"));
    mcpauth__metrics *m = open_ok(cfg);
    const mcpauth_resource *a = &cfg->resources[0];
    for (int r = MCPAUTH_REFUSAL_NO_TOKEN; r < MCPAUTH_REFUSAL_COUNT; r++)
        mcpauth__metrics_add_to(m, a, mcpauth__metrics_refused((mcpauth_refusal)r), r);
    size_t len;
    char *text = mcpauth__metrics_render(m, &len);
    const char *at = text;
    for (size_t i = 0; i < sizeof labels / sizeof labels[0]; i++) {
        char want[128];
        snprintf(want, sizeof want, "mcpauth_refusals_total{resource=\"a\",reason=\"%s\"} %zu\n",
                 labels[i], i + 1);
        const char *hit = strstr(at, want);
        ck_assert_msg(hit != NULL, "no %s in order in\n%s", want, text);
        at = hit;
    }
    free(text);
    mcpauth__metrics_close(m);
    mcpauth_config_free(cfg);
}
END_TEST

START_TEST(cidr_matching)
{
    mcpauth_strlist l = {0, NULL};
    mcpauth_strlist_split(&l, "127.0.0.0/8 ::1 10.1.2.128/25 2001:db8::/32");
    ck_assert(mcpauth__cidr_match(&l, "127.0.0.1"));
    ck_assert(mcpauth__cidr_match(&l, "127.255.0.9"));
    ck_assert(mcpauth__cidr_match(&l, "::ffff:127.0.0.1"));
    ck_assert(mcpauth__cidr_match(&l, "::1"));
    ck_assert(mcpauth__cidr_match(&l, "10.1.2.200"));
    ck_assert(!mcpauth__cidr_match(&l, "10.1.2.127"));
    ck_assert(mcpauth__cidr_match(&l, "2001:db8:ffff::1"));
    ck_assert(!mcpauth__cidr_match(&l, "2001:db9::1"));
    ck_assert(!mcpauth__cidr_match(&l, "128.0.0.1"));
    ck_assert(!mcpauth__cidr_match(&l, "::2"));
    ck_assert(!mcpauth__cidr_match(&l, ""));
    ck_assert(!mcpauth__cidr_match(&l, "localhost"));
    mcpauth_strlist_free(&l);
    mcpauth_strlist_split(&l, "0.0.0.0/0");
    ck_assert(mcpauth__cidr_match(&l, "203.0.113.7"));
    ck_assert(!mcpauth__cidr_match(&l, "::1"));
    mcpauth_strlist_free(&l);
    ck_assert(!mcpauth__cidr_valid("127.0.0.1/33"));
    ck_assert(!mcpauth__cidr_valid("127.0.0.1/"));
    ck_assert(!mcpauth__cidr_valid("127.0.0.1/+8"));
    ck_assert(!mcpauth__cidr_valid("::1/129"));
    ck_assert(!mcpauth__cidr_valid("example.com"));
    ck_assert(mcpauth__cidr_valid("fe80::/10"));
}
END_TEST

START_TEST(config_keys)
{
    mcpauth_config *cfg = conf(RES("a"));
    ck_assert_int_eq(cfg->metrics, 1);
    ck_assert_str_eq(cfg->metrics_path, "/mcpauth/metrics");
    ck_assert_int_eq(cfg->metrics_allow.n, 2);
    mcpauth_config_free(cfg);
    cfg = conf("metrics = no\nmetrics_path = /x/stats\nmetrics_allow = 192.0.2.0/24\n" RES("a"));
    ck_assert_int_eq(cfg->metrics, 0);
    ck_assert_str_eq(cfg->metrics_path, "/x/stats");
    ck_assert_int_eq(cfg->metrics_allow.n, 1);
    mcpauth_config_free(cfg);
    cfg = conf("metrics_path = off\n" RES("a"));
    ck_assert_ptr_null(cfg->metrics_path);
    mcpauth_config_free(cfg);
    static const char *const bad[] = {"metrics_path = relative\n", "metrics_path = /a//b\n",
                                      "metrics_path = /a/../b\n", "metrics_path = /a?b\n",
                                      "metrics_allow = 127.0.0.1/40\n", "metrics_allow = host\n",
                                      "metrics = maybe\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[512], err[512] = "";
        snprintf(text, sizeof text, "%s%s", bad[i], RES("a"));
        mcpauth_config *c = mcpauth_config_parse(text, strlen(text), "t.conf", err, sizeof err);
        ck_assert_msg(c == NULL, "accepted: %s", bad[i]);
        ck_assert_msg(strstr(err, "t.conf:1: metrics"), "%s", err);
    }
}
END_TEST

Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = scratch_tcase("metrics", setup, 60);
    tcase_add_test(tc, two_handles_see_the_same_counters);
    tcase_add_test(tc, forked_processes_sum_exactly);
    tcase_add_test(tc, other_resources_replace_the_file);
    tcase_add_test(tc, text_format_is_valid);
    tcase_add_test(tc, refusal_reasons_are_a_fixed_set);
    tcase_add_test(tc, cidr_matching);
    tcase_add_test(tc, config_keys);
    suite_add_tcase(s, tc);
    return s;
}
