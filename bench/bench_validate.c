/* Token validation benchmark: mcpauth's validator (cache hit, and full
 * verification with the cache off) side by side with libjwt 1.10's
 * jwt_decode() on the same tokens and keys, in one run.  Prints ops/s and
 * ratios; absolute numbers depend on the machine, ratios less so.
 *
 *   bench/bench_validate [seconds-per-case]      (default 1) */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jwt.h>
#include <openssl/sha.h>

#include <mcpauth/config.h>
#include <mcpauth/validate.h>

#include "../tests/support/tokens.h"
#include "revoked.h"

#define ISS "https://as.example.com"
#define AUD "https://mcp.example.com/mcp"
#define NTOK 2000

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* builtin: ISS is the built-in AS's issuer, so every accepted token is also
 * looked up in the revocation list (revoked.shm in dir). */
static mcpauth_config *config(const char *dir, int cache, int builtin)
{
    char text[1024], err[512];
    snprintf(text, sizeof text,
             "cache_entries = %d\nruntime_dir = %s\n[resource r]\nuri = " AUD
             "\nauthorization_servers = " ISS "\n"
             "[issuer i]\nissuer = " ISS "\njwks_file = %s/jwks.json\n%s%s%s",
             cache, dir, dir, builtin ? "[authorization_server]\nissuer = " ISS "\nstate_dir = " : "",
             builtin ? dir : "", builtin ? "\n" : "");
    mcpauth_config *c = mcpauth_config_parse(text, strlen(text), "bench", err, sizeof err);
    if (!c) {
        fprintf(stderr, "bench: %s\n", err);
        exit(1);
    }
    return c;
}

typedef struct {
    const char *name;
    double ops;
} result;

static double run_mcpauth(mcpauth_validator *v, const mcpauth_resource *r, char **toks, int ntok,
                          double secs)
{
    long n = 0;
    double t0 = now_s(), t;
    mcpauth_decision d;
    do {
        for (int i = 0; i < 100; i++, n++) {
            const char *tk = toks[n % ntok];
            mcpauth_validate_token(v, r, tk, strlen(tk), "POST", NULL, &d);
            if (d.verdict != MCPAUTH_ALLOW) {
                fprintf(stderr, "bench: token refused: %s\n", d.description);
                exit(1);
            }
        }
        t = now_s() - t0;
    } while (t < secs);
    return (double)n / t;
}

static double run_libjwt(const tk_key *k, char **toks, int ntok, double secs)
{
    long n = 0;
    double t0 = now_s(), t;
    const unsigned char *pem = (const unsigned char *)k->public_pem;
    int len = (int)strlen(k->public_pem);
    do {
        for (int i = 0; i < 100; i++, n++) {
            jwt_t *j = NULL;
            if (jwt_decode(&j, toks[n % ntok], pem, len) != 0) {
                fprintf(stderr, "bench: libjwt refused a token\n");
                exit(1);
            }
            jwt_free(j);
        }
        t = now_s() - t0;
    } while (t < secs);
    return (double)n / t;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 1.0;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char dir[] = "/tmp/mcpauth-bench-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    tk_key *rsa = tk_key_new("RS256", "rsa", 0), *ec = tk_key_new("ES256", "ec", 0);
    tk_key *keys[] = {rsa, ec};
    char *jwks = tk_jwks(keys, 2), path[128];
    snprintf(path, sizeof path, "%s/jwks.json", dir);
    tk_write(path, jwks);
    free(jwks);

    static char *rs[NTOK], *es[NTOK];
    for (int i = 0; i < NTOK; i++) {
        char *c = tk_claims(ISS, AUD, "read", 3600);
        rs[i] = tk_mint(rsa, c, NULL);
        es[i] = tk_mint(ec, c, NULL);
        free(c);
    }
    char err[256];
    /* A revocation list holding 10,000 other tokens, as a busy AS would. */
    snprintf(path, sizeof path, "%s/" MCPAUTH__REVOKED_FILE, dir);
    mcpauth__revoked *rl = mcpauth__revoked_open_rw(path, MCPAUTH__REVOKED_SLOTS, err, sizeof err);
    if (!rl) {
        fprintf(stderr, "bench: %s\n", err);
        return 1;
    }
    for (unsigned i = 0; i < 10000; i++) {
        unsigned char d[32];
        SHA256((const unsigned char *)&i, sizeof i, d); /* like a token's digest */
        mcpauth__revoked_add(rl, d, time(NULL) + 3600, time(NULL));
    }
    snprintf(path, sizeof path, "%s/jwks.json", dir);
    mcpauth_config *cfg_nc = config(dir, 0, 0), *cfg_c = config(dir, 10000, 0);
    mcpauth_config *cfg_bnc = config(dir, 0, 1), *cfg_bc = config(dir, 10000, 1);
    mcpauth_validator *v_bnc = mcpauth_validator_new(cfg_bnc, err, sizeof err);
    mcpauth_validator *v_bc = mcpauth_validator_new(cfg_bc, err, sizeof err);
    if (!v_bnc || !v_bc) {
        fprintf(stderr, "bench: %s\n", err);
        return 1;
    }
    mcpauth_validator *v_nc = mcpauth_validator_new(cfg_nc, err, sizeof err);
    mcpauth_validator *v_c = mcpauth_validator_new(cfg_c, err, sizeof err);
    const mcpauth_resource *r_nc = &cfg_nc->resources[0], *r_c = &cfg_c->resources[0];

    printf("mcpauth token validation benchmark (%.1f s per case, %d distinct tokens)\n", secs, NTOK);
    double rs_full = run_mcpauth(v_nc, r_nc, rs, NTOK, secs);
    double rs_lib = run_libjwt(rsa, rs, NTOK, secs);
    double es_full = run_mcpauth(v_nc, r_nc, es, NTOK, secs);
    double es_lib = run_libjwt(ec, es, NTOK, secs);
    long rss0 = rss_kib();
    run_mcpauth(v_c, r_c, rs, NTOK, 0.01); /* fill the cache */
    double hit = run_mcpauth(v_c, r_c, rs, NTOK, secs);
    long rss1 = rss_kib();
    /* the same with the revocation lookup (tokens of the built-in AS) */
    double rs_full_b = run_mcpauth(v_bnc, &cfg_bnc->resources[0], rs, NTOK, secs);
    run_mcpauth(v_bc, &cfg_bc->resources[0], rs, NTOK, 0.01);
    double hit_b = run_mcpauth(v_bc, &cfg_bc->resources[0], rs, NTOK, secs);
    printf("%-44s %12s %10s\n", "case", "ops/s", "ratio");
    printf("%-44s %12.0f %10s\n", "libjwt jwt_decode RS256 (peer)", rs_lib, "1.00");
    printf("%-44s %12.0f %9.2fx\n", "mcpauth full check RS256 (cache off)", rs_full, rs_full / rs_lib);
    printf("%-44s %12.0f %10s\n", "libjwt jwt_decode ES256 (peer)", es_lib, "1.00");
    printf("%-44s %12.0f %9.2fx\n", "mcpauth full check ES256 (cache off)", es_full, es_full / es_lib);
    printf("%-44s %12.0f %9.2fx\n", "mcpauth cache hit (vs own RS256 full check)", hit, hit / rs_full);
    printf("%-44s %12.0f %9.2fx\n", "mcpauth cache hit (vs own ES256 full check)", hit, hit / es_full);
    printf("%-44s %12.0f %9.2fx\n", "  + revocation lookup, full RS256 (vs without)", rs_full_b,
           rs_full_b / rs_full);
    printf("%-44s %12.0f %9.2fx\n", "  + revocation lookup, cache hit (vs without)", hit_b,
           hit_b / hit);
    printf("max RSS %ld KiB; growth while caching %d tokens: %ld KiB\n", rss1, NTOK, rss1 - rss0);
    printf("(libjwt checks signature and alg only; mcpauth adds the alg allow-list, key fit,\n"
           " iss/aud/exp/nbf/iat/scope checks, and parses no key per call.)\n");

    mcpauth_validator_free(v_bnc);
    mcpauth_validator_free(v_bc);
    mcpauth_config_free(cfg_bnc);
    mcpauth_config_free(cfg_bc);
    mcpauth__revoked_close(rl);
    snprintf(path, sizeof path, "%s/" MCPAUTH__REVOKED_FILE, dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/jwks.json", dir);
    mcpauth_validator_free(v_nc);
    mcpauth_validator_free(v_c);
    mcpauth_config_free(cfg_nc);
    mcpauth_config_free(cfg_c);
    for (int i = 0; i < NTOK; i++) {
        free(rs[i]);
        free(es[i]);
    }
    unlink(path);
    rmdir(dir);
    tk_key_free(rsa);
    tk_key_free(ec);
    curl_global_cleanup();
    return 0;
}
